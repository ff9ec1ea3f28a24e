/*
 * handoff_bench: the ceiling of synchronous calls on one loop (not a test).
 *
 *   handoff_bench [-T THREADS] [-d SECONDS] [-n MAX_HANDOFFS]
 *
 * THREADS caller threads (default 16) share one rt loop and do, in a loop,
 * what a synchronous call does minus the RPC: take a waiter, post a task
 * to the loop, block; the task wakes the waiter at once. No sockets, no
 * messages. Each thread stops when SECONDS (default 2) have passed or the
 * threads together reached MAX_HANDOFFS (default 20,000,000). Prints:
 *
 *   BENCH impl=handoff threads=T handoffs=N seconds=S per_s=R
 *
 * per_s bounds what THREADS synchronous callers can reach on this machine
 * through one loop, whatever the RPC costs: docs/performance.md compares
 * the mprpc-sync cells with it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "mprpc/loop.h"
#include "mprpc/rt.h"

static double seconds_limit = 2.0;
static long long max_handoffs = 20000000;
static atomic_llong done;
static atomic_int stop;
static atomic_int failed;
static struct timespec t0;
static mprpc_loop_t loop;

static double since(const struct timespec *a) {
  struct timespec b;
  clock_gettime(CLOCK_MONOTONIC, &b);
  return (double)(b.tv_sec - a->tv_sec) + (double)(b.tv_nsec - a->tv_nsec) / 1e9;
}

static void wake(void *w) { loop.vt->waiter_wake(loop.ctx, w); }

static void *caller(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    for (int k = 0; k < 64; k++) {
      void *w = loop.vt->waiter_new(loop.ctx);
      if (!w || mprpc_loop_post(loop, wake, w) != 0) {
        atomic_store(&failed, 1);
        atomic_store(&stop, 1);
        if (w)
          loop.vt->waiter_free(loop.ctx, w);
        return NULL;
      }
      loop.vt->waiter_wait(loop.ctx, w);
      loop.vt->waiter_free(loop.ctx, w);
    }
    long long total = atomic_fetch_add(&done, 64) + 64;
    if (total >= max_handoffs || since(&t0) >= seconds_limit)
      atomic_store(&stop, 1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int threads = 16;
  int opt;
  while ((opt = getopt(argc, argv, "T:d:n:h")) != -1) {
    switch (opt) {
    case 'T':
      threads = atoi(optarg);
      break;
    case 'd':
      seconds_limit = atof(optarg);
      break;
    case 'n':
      max_handoffs = atoll(optarg);
      break;
    default:
      fprintf(stderr, "usage: %s [-T THREADS] [-d SECONDS] [-n MAX_HANDOFFS]\n", argv[0]);
      return opt == 'h' ? 0 : 2;
    }
  }
  if (threads < 1 || threads > 256 || seconds_limit <= 0 || seconds_limit > 600 ||
      max_handoffs <= 0) {
    fprintf(stderr, "handoff_bench: bad arguments\n");
    return 2;
  }
  mprpc_loop_group_t *g;
  if (mprpc_loop_group_new(1, &g) != 0 || mprpc_loop_group_start(g) != 0) {
    fprintf(stderr, "handoff_bench: cannot start a loop\n");
    return 1;
  }
  loop = mprpc_loop_group_loop(g, 0);
  pthread_t th[256];
  int started = 0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (; started < threads; started++)
    if (pthread_create(&th[started], NULL, caller, NULL) != 0) {
      fprintf(stderr, "handoff_bench: pthread_create failed\n");
      atomic_store(&stop, 1);
      atomic_store(&failed, 1);
      break;
    }
  for (int i = 0; i < started; i++)
    pthread_join(th[i], NULL);
  double secs = since(&t0);
  mprpc_loop_group_free(g);
  if (atomic_load(&failed)) {
    fprintf(stderr, "handoff_bench: a post or waiter failed\n");
    return 1;
  }
  long long n = atomic_load(&done);
  printf("BENCH impl=handoff threads=%d handoffs=%lld seconds=%.3f per_s=%.0f\n", threads, n,
         secs, (double)n / secs);
  return 0;
}
