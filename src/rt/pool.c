/*
 * A pool of handler threads (the provider's handler_threads): the
 * executor seam of include/mprpc/server.h over pthreads. Jobs run in
 * submission order on whichever thread is free; the queue is unbounded
 * (the provider's concurrency limits bound what reaches it).
 */
#include "rt/pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"

typedef struct job {
  void (*fn)(void *);
  void *arg;
  struct job *next;
} job_t;

struct mprpc__pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job_t *head, *tail;
  bool stopping;
  size_t n, started;
  pthread_t *threads;
};

static void *worker(void *arg) {
  mprpc__pool_t *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->head && !p->stopping)
      pthread_cond_wait(&p->cv, &p->mu);
    job_t *j = p->head;
    if (!j)
      break; /* stopping and drained */
    p->head = j->next;
    if (!p->head)
      p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    j->fn(j->arg);
    free(j);
    pthread_mutex_lock(&p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int mprpc__pool_new(size_t n, mprpc__pool_t **out) {
  mprpc__pool_t *p = calloc(1, sizeof *p);
  if (!p)
    return MPRPC_ENOMEM;
  p->threads = calloc(n, sizeof *p->threads);
  if (!p->threads) {
    free(p);
    return MPRPC_ENOMEM;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  p->n = n;
  for (; p->started < n; p->started++) {
    if (pthread_create(&p->threads[p->started], NULL, worker, p) != 0) {
      MPRPC_LOG_ERROR("server: handler pool: pthread_create failed after %zu of %zu threads",
                      p->started, n);
      mprpc__pool_free(p);
      return MPRPC_EAGAIN;
    }
    char name[16];
    snprintf(name, sizeof name, "mprpc-handler%zu", p->started);
    pthread_setname_np(p->threads[p->started], name);
  }
  *out = p;
  return 0;
}

int mprpc__pool_submit(void *ctx, void (*fn)(void *), void *arg) {
  mprpc__pool_t *p = ctx;
  job_t *j = malloc(sizeof *j);
  if (!j)
    return MPRPC_ENOMEM;
  j->fn = fn;
  j->arg = arg;
  j->next = NULL;
  pthread_mutex_lock(&p->mu);
  if (p->stopping) {
    pthread_mutex_unlock(&p->mu);
    free(j);
    return MPRPC_ESTATE;
  }
  if (p->tail)
    p->tail->next = j;
  else
    p->head = j;
  p->tail = j;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

void mprpc__pool_stop(mprpc__pool_t *p) {
  pthread_mutex_lock(&p->mu);
  bool first = !p->stopping;
  p->stopping = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (!first)
    return;
  for (size_t i = 0; i < p->started; i++)
    pthread_join(p->threads[i], NULL);
  p->started = 0;
}

void mprpc__pool_free(mprpc__pool_t *p) {
  if (!p)
    return;
  mprpc__pool_stop(p);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->threads);
  free(p);
}
