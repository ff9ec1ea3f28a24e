/*
 * SIGHUP reloads a provider's TLS certificate files (mprpc_server_reload_tls),
 * as operators expect after a renewal: established connections keep going,
 * new ones get the new certificate; a bad file is reported and the old
 * certificate stays. Used by echo_server and the user and friend providers.
 *
 *   app_block_sighup();                  first, before any thread starts
 *   ... mprpc_server_new / _from_config, start ...
 *   app_reload_on_sighup("prog", server);
 *   ... run ...
 *   app_reload_stop();                   before mprpc_server_destroy
 *
 * SIGHUP is blocked in every thread and taken by one thread with sigwait,
 * so the reload runs in ordinary thread context, not in a signal handler.
 * Header-only (static inline), as app.h.
 */
#ifndef MPRPC_EXAMPLE_RELOAD_H
#define MPRPC_EXAMPLE_RELOAD_H

#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include "mprpc/errors.h"
#include "mprpc/server.h"

typedef struct app_hup {
  const char *prog;
  mprpc_server_t *s; /* (mu) NULL once app_reload_stop ran */
} app_hup_t;

static app_hup_t app_hup;
static pthread_mutex_t app_hup_mu = PTHREAD_MUTEX_INITIALIZER;

static inline void app_block_sighup(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static inline void *app_hup_thread(void *arg) {
  app_hup_t *h = arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  for (;;) {
    int sig;
    if (sigwait(&set, &sig) != 0)
      continue;
    char err[512];
    pthread_mutex_lock(&app_hup_mu);
    int rc = h->s ? mprpc_server_reload_tls(h->s, err, sizeof err) : MPRPC_ESTATE;
    pthread_mutex_unlock(&app_hup_mu);
    if (rc == MPRPC_ESTATE)
      continue; /* stopping */
    if (rc == 0)
      printf("%s: SIGHUP: TLS certificate files reloaded\n", h->prog);
    else if (rc == MPRPC_EUNSUPPORTED)
      printf("%s: SIGHUP: no TLS configured, nothing to reload\n", h->prog);
    else
      printf("%s: SIGHUP: reload failed, keeping the previous certificates: %s\n", h->prog,
             err);
    fflush(stdout);
  }
  return NULL;
}

/* Starts the thread that waits for SIGHUP (detached; it ends with the
 * process). */
static inline void app_reload_on_sighup(const char *prog, mprpc_server_t *s) {
  app_hup.prog = prog;
  app_hup.s = s;
  pthread_t t;
  if (pthread_create(&t, NULL, app_hup_thread, &app_hup) == 0)
    pthread_detach(t);
}

/* Before mprpc_server_destroy: a later SIGHUP does nothing. */
static inline void app_reload_stop(void) {
  pthread_mutex_lock(&app_hup_mu);
  app_hup.s = NULL;
  pthread_mutex_unlock(&app_hup_mu);
}

#endif
