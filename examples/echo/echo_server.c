/*
 * echo_server: brpc's example echo server on mprpc. Echoes the request's
 * message and attachment back. Runs until SIGINT/SIGTERM, then stops
 * gracefully (unregister, drain, close). See examples/echo/README.md.
 *
 *   echo_server --listen 127.0.0.1:8000 [--threads N] [--registry URI]
 *               [--advertise HOST] [--idle-timeout MS] [-i FILE]
 *               [--tls-cert F --tls-key F [--tls-ca F]
 *                [--tls-mode optional|required]
 *                [--tls-verify-client optional|required]]
 *
 * --tls-cert/--tls-key serve TLS (required unless --tls-mode optional,
 * which serves plain baidu_std on the same port too); --tls-verify-client
 * asks clients for certificates issued by --tls-ca (mutual TLS). SIGHUP
 * reloads the certificate files. docs/security.md.
 *
 * -i FILE reads the seeds' keys (rpcserverip, rpcserverport, zookeeperip,
 * zookeeperport or registry) and the provider keys of docs/server.md
 * (threads, idle_timeout, max_concurrency, ...) plus log_*; options given on
 * the command line win over the file.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/reload.h"
#include "echo.pb-c.h"
#include "mprpc/config.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/registry.h"
#include "mprpc/server.h"

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
          "          [--idle-timeout MS] [-i FILE]\n"
          "          [--tls-cert F --tls-key F [--tls-ca F] [--tls-mode optional|required]\n"
          "           [--tls-verify-client optional|required]]\n",
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
      {"listen", required_argument, 0, 'l'},       {"threads", required_argument, 0, 't'},
      {"registry", required_argument, 0, 'r'},     {"advertise", required_argument, 0, 'a'},
      {"idle-timeout", required_argument, 0, 'I'}, {"config", required_argument, 0, 'i'},
      {"help", no_argument, 0, 'h'},               {"tls-cert", required_argument, 0, 'C'},
      {"tls-key", required_argument, 0, 'K'},      {"tls-ca", required_argument, 0, 'A'},
      {"tls-mode", required_argument, 0, 'M'},     {"tls-verify-client", required_argument, 0, 'V'},
      {0, 0, 0, 0}};
  const char *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL;
  int tls_mode = -1, tls_verify = -1;
  bool bad = false;
  const char *listen = NULL, *registry_uri = NULL, *advertise = NULL, *config = NULL;
  long threads = 0, idle_ms = -1;
  int c;
  while ((c = getopt_long(argc, argv, "i:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'l': listen = optarg; break;
    case 't': threads = strtol(optarg, NULL, 10); break;
    case 'r': registry_uri = optarg; break;
    case 'a': advertise = optarg; break;
    case 'I': idle_ms = strtol(optarg, NULL, 10); break;
    case 'i': config = optarg; break;
    case 'C': tls_cert = optarg; break;
    case 'K': tls_key = optarg; break;
    case 'A': tls_ca = optarg; break;
    case 'M':
      tls_mode = strcmp(optarg, "optional") == 0   ? MPRPC_SERVER_TLS_OPTIONAL
                 : strcmp(optarg, "required") == 0 ? MPRPC_SERVER_TLS_REQUIRED
                                                   : (bad = true, -1);
      break;
    case 'V':
      tls_verify = strcmp(optarg, "optional") == 0   ? MPRPC_SERVER_TLS_VERIFY_OPTIONAL
                   : strcmp(optarg, "required") == 0 ? MPRPC_SERVER_TLS_VERIFY_REQUIRED
                                                     : (bad = true, -1);
      break;
    case 'h': usage(argv[0]); return 0;
    default: usage(argv[0]); return 2;
    }
  }
  if (optind < argc || (threads && (threads < 1 || threads > 256)) || idle_ms < -1 || bad ||
      !tls_cert != !tls_key || (!tls_cert && (tls_mode >= 0 || tls_verify >= 0 || tls_ca)) ||
      (tls_verify >= 0 && !tls_ca)) {
    usage(argv[0]);
    return 2;
  }

  app_block_sighup(); /* before any thread starts: SIGHUP reloads TLS files */
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.threads = 1;
  o.stats_log_period_ms = 60000;
  mprpc_config_t *cfg = NULL;
  mprpc_hostport_t cfg_listen;
  char uri_buf[1024];
  int rc;
  if (config) {
    rc = mprpc_config_new(&cfg);
    if (rc == 0)
      rc = mprpc_config_load_file(cfg, config);
    if (rc == 0)
      rc = mprpc_config_apply_log(cfg);
    if (rc == 0)
      rc = mprpc_server_opts_from_config(cfg, &o, &cfg_listen);
    if (rc == 0 && !registry_uri) {
      rc = mprpc_config_registry_uri(cfg, uri_buf, sizeof uri_buf);
      if (rc == 0)
        registry_uri = uri_buf;
      else if (rc == MPRPC_ENOTFOUND)
        rc = 0;
    }
    if (rc < 0) {
      fprintf(stderr, "%s: -i %s: %s\n", argv[0], config,
              cfg && *mprpc_config_error(cfg) ? mprpc_config_error(cfg) : mprpc_strerror(rc));
      mprpc_config_free(cfg);
      return 2;
    }
    mprpc_config_warn_unused(cfg);
  }
  char host[256];
  uint16_t port;
  if (listen) {
    if (split_hostport(listen, host, sizeof host, &port) < 0) {
      usage(argv[0]);
      mprpc_config_free(cfg);
      return 2;
    }
    o.host = host;
    o.port = port;
  } else if (!o.host) {
    fprintf(stderr, "%s: give --listen HOST:PORT or rpcserverip in -i FILE\n", argv[0]);
    usage(argv[0]);
    mprpc_config_free(cfg);
    return 2;
  }
  if (threads)
    o.threads = (size_t)threads;
  if (idle_ms >= 0)
    o.idle_timeout_ms = (uint64_t)idle_ms;
  if (advertise)
    o.advertise_host = advertise;
  if (tls_cert) {
    o.tls_cert = tls_cert;
    o.tls_key = tls_key;
    o.tls_mode = tls_mode >= 0 ? tls_mode : MPRPC_SERVER_TLS_REQUIRED;
  }
  if (tls_ca)
    o.tls_ca = tls_ca;
  if (tls_verify >= 0)
    o.tls_verify_client = tls_verify;

  mprpc_registry_t reg = {0};
  char err[256] = "";
  if (registry_uri) {
    rc = mprpc_registry_open(registry_uri, &reg, err, sizeof err);
    if (rc < 0) {
      fprintf(stderr, "%s: registry %s: %s %s\n", argv[0], registry_uri, mprpc_strerror(rc), err);
      mprpc_config_free(cfg);
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
    fprintf(stderr, "%s: cannot serve on %s:%u: %s\n", argv[0], o.host, (unsigned)o.port,
            mprpc_strerror(rc));
    mprpc_server_destroy(g_server);
    mprpc_registry_close(reg);
    mprpc_config_free(cfg);
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  app_reload_on_sighup("echo_server", g_server);
  static const char *const modes[] = {"", " (tls optional)", " (tls required)"};
  printf("echo_server: listening on %s:%u%s\n", o.host, (unsigned)mprpc_server_port(g_server),
         o.tls_mode >= 0 && o.tls_mode <= 2 ? modes[o.tls_mode] : "");
  if (mprpc_server_console_port(g_server))
    printf("echo_server: console http://%s:%u/status\n", o.host,
           (unsigned)mprpc_server_console_port(g_server));
  fflush(stdout);
  rc = mprpc_server_run(g_server);
  app_reload_stop();
  /* What the limits refused (docs/server.md, "Limits and refusals"): read
   * by ci/stress.sh. */
  mprpc_server_stats_t st;
  mprpc_server_stats(g_server, &st);
  printf("echo_server: refused budget=%llu header_timeout=%llu slow_body=%llu "
         "max_connections=%llu per_ip=%llu malformed=%llu buffered_peak_bytes=%llu\n",
         (unsigned long long)st.refused_budget, (unsigned long long)st.refused_header_timeout,
         (unsigned long long)st.refused_slow_body, (unsigned long long)st.refused_max_connections,
         (unsigned long long)st.refused_per_ip, (unsigned long long)st.malformed_frames,
         (unsigned long long)st.buffered_bytes_peak);
  mprpc_server_destroy(g_server);
  mprpc_registry_close(reg);
  mprpc_config_free(cfg); /* after destroy: o's strings may point into it */
  printf("echo_server: stopped\n");
  mprpc_log_flush();
  return rc < 0 ? 1 : 0;
}
