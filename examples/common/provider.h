/*
 * What the user and friend providers share: the whole life of a provider
 * that publishes one service, configured by the seeds' keys (app.h):
 * mprpc_app_init, mprpc_server_from_config, add_service, run.
 *
 * Header-only (static inline) for the same reason as app.h: the build makes
 * one program of every examples/<dir>/<name>.c.
 */
#ifndef MPRPC_EXAMPLE_PROVIDER_H
#define MPRPC_EXAMPLE_PROVIDER_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "app.h"
#include "reload.h"
#include "mprpc/log.h"
#include "mprpc/server.h"

/* The one server of this program, for the signal handler. */
static mprpc_server_t *app_provider_server;

static inline void app_provider_on_signal(int sig) {
  (void)sig;
  mprpc_server_stop_async(app_provider_server);
}

/* The provider's main(), the seeds' four steps: mprpc_app_init (`-i FILE`),
 * mprpc_server_from_config (listen on rpcserverip:rpcserverport, open the
 * configured registry, which the server owns), add_service, run. Prints
 * "<prog>: <service> on <ip>:<port>" once serving (ci/demo.sh waits for
 * it), then "<prog>: console http://<ip>:<port>/status" unless console=off.
 * SIGHUP reloads the TLS certificate files (tls_cert, tls_key, tls_ca:
 * docs/security.md). SIGTERM or SIGINT stops it gracefully; it then prints
 * "<prog>: <ip>:<port> served N calls". Returns the exit status: 0, or 1
 * when it cannot serve; exits 2 on a bad command line, as app.h does.
 * svc must outlive the call. */
static inline int app_provider_main(const char *prog, int argc, char **argv,
                                    ProtobufCService *svc) {
  app_block_sighup(); /* before any thread (the logger's, the server's) starts */
  mprpc_config_t *cfg = app_init(argc, argv);
  int rc = mprpc_server_from_config(cfg, &app_provider_server);
  if (rc != 0) {
    fprintf(stderr, "%s: %s\n", prog, mprpc_config_error(cfg));
    mprpc_config_free(cfg);
    return 1;
  }
  const char *ip = mprpc_config_get(cfg, "rpcserverip");
  rc = mprpc_server_add_service(app_provider_server, svc);
  if (rc == 0)
    rc = mprpc_server_start(app_provider_server);
  if (rc != 0) {
    fprintf(stderr, "%s: cannot serve on %s: %s\n", prog, ip, mprpc_strerror(rc));
    mprpc_server_destroy(app_provider_server);
    mprpc_config_free(cfg);
    return 1;
  }
  struct sigaction sa = {.sa_handler = app_provider_on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  app_reload_on_sighup(prog, app_provider_server); /* tls_cert/tls_key renewed */
  unsigned bound = mprpc_server_port(app_provider_server);
  printf("%s: %s on %s:%u\n", prog, svc->descriptor->name, ip, bound);
  unsigned cport = mprpc_server_console_port(app_provider_server);
  if (cport) /* the builtin console (docs/console.md): on the service port by default */
    printf("%s: console http://%s:%u/status\n", prog, ip, cport);
  fflush(stdout);

  mprpc_server_run(app_provider_server);

  uint64_t served = 0;
  mprpc_method_stats_t ms;
  for (size_t i = 0; mprpc_server_method_stats_at(app_provider_server, i, &ms) == 0; i++)
    served += ms.completed;
  printf("%s: %s:%u served %llu calls\n", prog, ip, bound, (unsigned long long)served);
  app_reload_stop();
  mprpc_server_destroy(app_provider_server); /* also closes the registry */
  mprpc_config_free(cfg);
  mprpc_log_flush();
  return 0;
}

#endif
