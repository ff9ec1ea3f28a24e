/*
 * echo_server: brpc's example echo server on mprpc. Echoes the request's
 * message and attachment back. Runs until SIGINT/SIGTERM, then stops
 * gracefully (unregister, drain, close). See examples/echo/README.md.
 *
 *   echo_server --listen 127.0.0.1:8000 [--threads N] [--registry URI]
 *               [--advertise HOST] [--idle-timeout MS] [-i FILE]
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/registry.h"
#include "mprpc/server.h"

/* TODO(provider): drop once src/registry/ (mprpc_registry_open) is on main;
 * until then --registry is refused so the program links. */
#if !__has_include("registry/internal.h")
#define MPRPC_ECHO_NO_REGISTRY 1
#endif

static mprpc_server_t *g_server;

static void on_signal(int sig) {
  (void)sig;
  mprpc_server_stop_async(g_server); /* async-signal-safe: one atomic store */
}

static void echo(Example__EchoService_Service *svc, const Example__EchoRequest *req,
                 Example__EchoResponse_Closure done, void *closure_data) {
  (void)svc;
  mprpc_server_call_t *call = mprpc_server_call_from(closure_data);
  size_t att_len;
  const uint8_t *att = mprpc_server_call_attachment(call, &att_len);
  if (att_len && mprpc_server_call_set_attachment(call, att, att_len) < 0) {
    done(NULL, closure_data); /* EINTERNAL */
    return;
  }
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = req->message;
  done(&resp, closure_data);
}

static Example__EchoService_Service echo_service = EXAMPLE__ECHO_SERVICE__INIT();

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s --listen HOST:PORT [--threads N] [--registry URI] [--advertise HOST]\n"
          "          [--idle-timeout MS] [-i FILE]\n",
          argv0);
}

/* "host:port" -> host (copied into buf) and port. */
static int split_hostport(const char *s, char *host, size_t cap, uint16_t *port) {
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s || (size_t)(colon - s) >= cap)
    return -1;
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p < 0 || p > 65535)
    return -1;
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = 0;
  *port = (uint16_t)p;
  return 0;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"listen", required_argument, 0, 'l'},   {"threads", required_argument, 0, 't'},
      {"registry", required_argument, 0, 'r'}, {"advertise", required_argument, 0, 'a'},
      {"idle-timeout", required_argument, 0, 'I'}, {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  const char *listen = NULL, *registry_uri = NULL, *advertise = NULL, *config = NULL;
  long threads = 1, idle_ms = 0;
  int c;
  while ((c = getopt_long(argc, argv, "i:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'l': listen = optarg; break;
    case 't': threads = strtol(optarg, NULL, 10); break;
    case 'r': registry_uri = optarg; break;
    case 'a': advertise = optarg; break;
    case 'I': idle_ms = strtol(optarg, NULL, 10); break;
    case 'i': config = optarg; break;
    default: usage(argv[0]); return c == 'h' ? 0 : 2;
    }
  }
  if (config) {
    /* TODO: load rpcserverip/rpcserverport/zookeeperip/zookeeperport through
     * include/mprpc/config.h once the util module lands. */
    fprintf(stderr, "%s: -i %s: config files are not supported by this build yet\n", argv[0],
            config);
    return 2;
  }
  char host[256];
  uint16_t port;
  if (!listen || split_hostport(listen, host, sizeof host, &port) < 0 || threads < 1 ||
      threads > 256 || idle_ms < 0) {
    usage(argv[0]);
    return 2;
  }

  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = host;
  o.port = port;
  o.threads = (size_t)threads;
  o.idle_timeout_ms = (uint64_t)idle_ms;
  o.advertise_host = advertise;
  o.stats_log_period_ms = 60000;
  mprpc_registry_t reg = {0};
  char err[256] = "";
  int rc;
  if (registry_uri) {
#if MPRPC_ECHO_NO_REGISTRY
    rc = MPRPC_EUNSUPPORTED;
    snprintf(err, sizeof err, "(this build has no registry module)");
#else
    rc = mprpc_registry_open(registry_uri, &reg, err, sizeof err);
#endif
    if (rc < 0) {
      fprintf(stderr, "%s: --registry %s: %s %s\n", argv[0], registry_uri, mprpc_strerror(rc),
              err);
      return 1;
    }
    o.registry = reg;
  }
  rc = mprpc_server_new(&o, &g_server);
  if (rc == 0)
    rc = mprpc_server_add_service(g_server, &echo_service.base);
  if (rc == 0)
    rc = mprpc_server_start(g_server);
  if (rc < 0) {
    fprintf(stderr, "%s: cannot serve on %s: %s\n", argv[0], listen, mprpc_strerror(rc));
    mprpc_server_destroy(g_server);
    mprpc_registry_close(reg);
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  printf("echo_server: listening on %s:%u\n", host, (unsigned)mprpc_server_port(g_server));
  fflush(stdout);
  rc = mprpc_server_run(g_server);
  mprpc_server_destroy(g_server);
  mprpc_registry_close(reg);
  printf("echo_server: stopped\n");
  mprpc_log_flush();
  return rc < 0 ? 1 : 0;
}
