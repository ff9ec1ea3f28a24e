/*
 * Loop groups: N libev loops, each on its own thread, started and stopped
 * together; and the process-wide default loop.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/rt.h"
#include "rt/rt_internal.h"

enum { G_NEW, G_RUNNING, G_STOPPED };

struct mprpc_loop_group {
  size_t n;
  mprpc__evloop_t **loops;
  pthread_t *threads;
  size_t nthreads; /* threads actually started */
  pthread_mutex_t mu; /* serialises start/stop */
  int state;
};

int mprpc_loop_group_new(size_t n, mprpc_loop_group_t **out) {
  if (n == 0 || !out)
    return MPRPC_EINVAL;
  mprpc_loop_group_t *g = calloc(1, sizeof *g);
  if (!g)
    return MPRPC_ENOMEM;
  int rc = MPRPC_ENOMEM;
  g->loops = calloc(n, sizeof *g->loops);
  g->threads = calloc(n, sizeof *g->threads);
  if (!g->loops || !g->threads)
    goto fail;
  for (size_t i = 0; i < n; i++) {
    rc = mprpc__evloop_new(&g->loops[i]);
    if (rc != 0)
      goto fail;
    g->n = i + 1;
  }
  if (pthread_mutex_init(&g->mu, NULL) != 0) {
    rc = MPRPC_ENOMEM;
    goto fail;
  }
  g->state = G_NEW;
  *out = g;
  return 0;
fail:
  for (size_t i = 0; i < g->n; i++)
    mprpc__evloop_free(g->loops[i]);
  free(g->loops);
  free(g->threads);
  free(g);
  return rc;
}

static void *thread_main(void *arg) {
  mprpc__evloop_run(arg);
  return NULL;
}

int mprpc_loop_group_start(mprpc_loop_group_t *g) {
  pthread_mutex_lock(&g->mu);
  int rc = 0;
  if (g->state != G_NEW) {
    rc = MPRPC_ESTATE;
    goto out;
  }
  for (size_t i = 0; i < g->n; i++) {
    atomic_store(&g->loops[i]->threaded, true);
    int e = pthread_create(&g->threads[i], NULL, thread_main, g->loops[i]);
    if (e != 0) {
      MPRPC_LOG_ERROR("pthread_create: %s", mprpc_err_name(mprpc_err_from_errno(e)));
      rc = mprpc_err_from_errno(e);
      atomic_store(&g->loops[i]->threaded, false);
      break;
    }
    g->nthreads++;
  }
  g->state = G_RUNNING;
out:
  pthread_mutex_unlock(&g->mu);
  if (rc != 0 && g->nthreads > 0)
    mprpc_loop_group_stop(g); /* the group is unusable: unwind what started */
  return rc;
}

void mprpc_loop_group_stop(mprpc_loop_group_t *g) {
  if (!g)
    return;
  for (size_t i = 0; i < g->n; i++) {
    if (mprpc__evloop_in_loop(g->loops[i])) {
      MPRPC_LOG_ERROR("mprpc_loop_group_stop called from the group's own thread; ignored");
      return;
    }
  }
  pthread_mutex_lock(&g->mu);
  if (g->state == G_STOPPED) {
    pthread_mutex_unlock(&g->mu);
    return;
  }
  for (size_t i = 0; i < g->nthreads; i++)
    mprpc__evloop_request_stop(g->loops[i]);
  for (size_t i = 0; i < g->nthreads; i++) {
    pthread_join(g->threads[i], NULL);
    atomic_store(&g->loops[i]->threaded, false);
  }
  /* Loops whose thread never ran are drained here, on this thread. */
  for (size_t i = g->nthreads; i < g->n; i++)
    mprpc__evloop_drain(g->loops[i]);
  g->state = G_STOPPED;
  pthread_mutex_unlock(&g->mu);
}

void mprpc_loop_group_free(mprpc_loop_group_t *g) {
  if (!g)
    return;
  mprpc_loop_group_stop(g);
  for (size_t i = 0; i < g->n; i++)
    mprpc__evloop_free(g->loops[i]);
  pthread_mutex_destroy(&g->mu);
  free(g->loops);
  free(g->threads);
  free(g);
}

size_t mprpc_loop_group_size(const mprpc_loop_group_t *g) { return g->n; }

mprpc_loop_t mprpc_loop_group_loop(mprpc_loop_group_t *g, size_t i) {
  if (!g || i >= g->n)
    return (mprpc_loop_t){0};
  return mprpc__evloop_seam(g->loops[i]);
}

/* ---- the default loop -------------------------------------------------- */

/* Started on first use and stopped by an atexit handler, so that pending
 * on_close callbacks still run and leak checkers see a clean exit. When
 * exit() is called from the default loop's own thread the handler cannot
 * join that thread; it then leaves the loop to the OS. */
static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static mprpc_loop_group_t *default_group;
static int default_err;

static void default_stop(void) {
  mprpc_loop_group_t *g = default_group;
  if (!g || mprpc__evloop_in_loop(g->loops[0]))
    return;
  default_group = NULL;
  mprpc_loop_group_free(g);
}

static void default_init(void) {
  mprpc_loop_group_t *g = NULL;
  int rc = mprpc_loop_group_new(1, &g);
  if (rc == 0)
    rc = mprpc_loop_group_start(g);
  if (rc != 0) {
    MPRPC_LOG_ERROR("default loop: %s", mprpc_strerror(rc));
    mprpc_loop_group_free(g);
    default_err = rc;
    return;
  }
  default_group = g;
  atexit(default_stop);
}

int mprpc_default_loop(mprpc_loop_t *out) {
  pthread_once(&default_once, default_init);
  if (!default_group) {
    *out = (mprpc_loop_t){0};
    return default_err ? default_err : MPRPC_ESTATE;
  }
  *out = mprpc_loop_group_loop(default_group, 0);
  return 0;
}
