/*
 * chaos_provider: one provider process of a chaos run (docs/simulator.md,
 * "Chaos runs"). Serves example.EchoService on HOST:PORT with the
 * production runtime, publishes it in the registry, and logs every handler
 * run ("X <token> <provider> <wall_ns>", support/chaos.h) before answering,
 * so an answered call is always in the log, even after a kill -9.
 * SIGTERM/SIGINT stop it gracefully (unregister, ELOGOFF, drain).
 *
 *   chaos_provider --listen HOST:PORT --registry URI --index N --log FILE
 */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/registry.h"
#include "mprpc/server.h"
#include "support/chaos.h"

static mprpc_server_t *g_server;
static int g_log = -1;
static int g_index;
static bool g_exec_twice; /* --bug exec_twice: the runner's self-test */

static void on_signal(int sig) {
  (void)sig;
  mprpc_server_stop_async(g_server);
}

static void echo(Example__EchoService_Service *svc, const Example__EchoRequest *req,
                 Example__EchoResponse_Closure done, void *closure_data) {
  (void)svc;
  const char *m = req->message ? req->message : "";
  chaos_log(g_log, "X %.40s %d %llu", m[0] ? m : "-", g_index,
            (unsigned long long)chaos_wall_ns());
  if (g_exec_twice) /* the bug: the log says it ran twice */
    chaos_log(g_log, "X %.40s %d %llu", m[0] ? m : "-", g_index,
              (unsigned long long)chaos_wall_ns());
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = req->message;
  done(&resp, closure_data);
}

static Example__EchoService_Service echo_service = EXAMPLE__ECHO_SERVICE__INIT();

int main(int argc, char **argv) {
  static const struct option longopts[] = {{"listen", required_argument, 0, 'l'},
                                           {"registry", required_argument, 0, 'r'},
                                           {"index", required_argument, 0, 'n'},
                                           {"log", required_argument, 0, 'o'},
                                           {"bug", required_argument, 0, 'b'},
                                           {0, 0, 0, 0}};
  const char *listen = NULL, *uri = NULL, *logpath = NULL;
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'l': listen = optarg; break;
    case 'r': uri = optarg; break;
    case 'n': g_index = atoi(optarg); break;
    case 'o': logpath = optarg; break;
    case 'b': g_exec_twice = strcmp(optarg, "exec_twice") == 0; break;
    default:
      fprintf(stderr, "usage: %s --listen HOST:PORT --registry URI --index N --log FILE\n",
              argv[0]);
      return 2;
    }
  }
  const char *colon = listen ? strrchr(listen, ':') : NULL;
  if (!colon || !uri || !logpath) {
    fprintf(stderr, "%s: --listen HOST:PORT, --registry and --log are required\n", argv[0]);
    return 2;
  }
  char host[64];
  snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
  g_log = chaos_log_open(logpath);
  mprpc_log_set_level(MPRPC_LOG_LEVEL_INFO); /* stderr: the run keeps it per process */

  mprpc_registry_t reg = {0};
  char err[256] = "";
  int rc = mprpc_registry_open(uri, &reg, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "%s: registry %s: %s %s\n", argv[0], uri, mprpc_strerror(rc), err);
    return 1;
  }
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = host;
  o.port = (uint16_t)atoi(colon + 1);
  o.threads = 2;
  o.registry = reg;
  o.drain_timeout_ms = 3000; /* as the simulator's providers */
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
  rc = mprpc_server_run(g_server);
  mprpc_server_destroy(g_server);
  mprpc_registry_close(reg);
  mprpc_log_flush();
  return rc < 0 ? 1 : 0;
}
