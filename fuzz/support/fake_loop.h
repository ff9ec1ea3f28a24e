/*
 * The fake loop under the connection harnesses (fuzz_server, fuzz_client_conn):
 * one thread, virtual time, timers in an mprpc__timerq_t, posts in a
 * bounded FIFO, a PRNG seeded with 1, so one input always runs the same
 * way. Also the byte sink their fake transports' writev appends to.
 *
 * Header-only (static inline) because ci/fuzz.sh and the libFuzzer recipe in
 * docs/fuzzing.md build each harness from its one .c file plus the library.
 *
 *   memset(&E, 0, sizeof E);            (the fuzz_loop_t lives in E)
 *   fuzz_loop_init(&E.loop);
 *   mprpc_loop_t loop = fuzz_loop_seam(&E.loop);
 *   ... feed input, fuzz_loop_settle(&E.loop), fuzz_loop_advance(&E.loop, ms)
 *   fuzz_loop_free(&E.loop);
 */
#ifndef MPRPC_FUZZ_FAKE_LOOP_H
#define MPRPC_FUZZ_FAKE_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "check.h"
#include "core/timerq.h"
#include "mprpc/errors.h"
#include "mprpc/loop.h"
#include "mprpc/rand.h"

#define FUZZ_NPOST 4096

typedef struct fuzz_loop {
  uint64_t now;         /* virtual monotonic clock, ns */
  uint64_t wall_offset; /* wall_ns = now + wall_offset */
  mprpc__timerq_t tq;
  mprpc_post_cb fn[FUZZ_NPOST];
  void *arg[FUZZ_NPOST];
  size_t ph, pt; /* post FIFO: head and tail counters */
  mprpc_xoshiro_t rng;
  /* Optional: runs each time fuzz_loop_settle finds nothing left to do
   * (fuzz_client_conn checks what the channel wrote there). */
  void (*on_settled)(void);
} fuzz_loop_t;

/* The clock starts at 1000 s so that "now - something" never wraps. */
static inline void fuzz_loop_init(fuzz_loop_t *L) {
  L->now = 1000 * MPRPC_NS_PER_S;
  mprpc__timerq_init(&L->tq);
  mprpc_xoshiro_seed(&L->rng, 1);
}

static inline void fuzz_loop_free(fuzz_loop_t *L) { mprpc__timerq_free(&L->tq); }

static inline uint64_t fuzz_loop_timer_start(fuzz_loop_t *L, uint64_t delay_ns, mprpc_timer_cb cb,
                                             void *arg) {
  return mprpc__timerq_add(&L->tq, L->now + delay_ns, cb, arg);
}

static inline int fuzz_loop_post(fuzz_loop_t *L, mprpc_post_cb fn, void *arg) {
  if (L->pt - L->ph >= FUZZ_NPOST)
    return MPRPC_ENOMEM;
  L->fn[L->pt % FUZZ_NPOST] = fn;
  L->arg[L->pt % FUZZ_NPOST] = arg;
  L->pt++;
  return 0;
}

/* Runs posts and due timers until there are none (bounded: a loop that
 * never settles is a finding). */
static inline void fuzz_loop_settle(fuzz_loop_t *L) {
  for (int guard = 0; guard < 100000; guard++) {
    if (L->ph != L->pt) {
      mprpc_post_cb fn = L->fn[L->ph % FUZZ_NPOST];
      void *arg = L->arg[L->ph % FUZZ_NPOST];
      L->ph++;
      fn(arg);
    } else if (mprpc__timerq_run_due(&L->tq, L->now) == 0) {
      if (L->on_settled)
        L->on_settled();
      return;
    }
  }
  FUZZ_CHECK(!"fake loop did not settle");
}

/* Moves the clock ms forward, stopping at every timer deadline on the way. */
static inline void fuzz_loop_advance(fuzz_loop_t *L, uint64_t ms) {
  uint64_t target = L->now + ms * MPRPC_NS_PER_MS, d;
  fuzz_loop_settle(L);
  for (int guard = 0; guard < 100000 && mprpc__timerq_peek(&L->tq, &d) && d <= target; guard++) {
    if (d > L->now)
      L->now = d;
    fuzz_loop_settle(L);
  }
  L->now = target;
  fuzz_loop_settle(L);
}

/* ---- the loop seam over a fuzz_loop_t (ctx) ---- */

static inline uint64_t fuzz_loop__now(void *c) { return ((fuzz_loop_t *)c)->now; }
static inline uint64_t fuzz_loop__wall(void *c) {
  fuzz_loop_t *L = c;
  return L->now + L->wall_offset;
}
static inline uint64_t fuzz_loop__timer_start(void *c, uint64_t d, mprpc_timer_cb cb, void *arg) {
  return fuzz_loop_timer_start(c, d, cb, arg);
}
static inline void fuzz_loop__timer_cancel(void *c, uint64_t id) {
  mprpc__timerq_cancel(&((fuzz_loop_t *)c)->tq, id);
}
static inline int fuzz_loop__post(void *c, mprpc_post_cb fn, void *arg) {
  return fuzz_loop_post(c, fn, arg);
}
static inline bool fuzz_loop__in_loop(void *c) {
  (void)c;
  return true;
}
static inline mprpc_rand_t fuzz_loop__rand(void *c) {
  return mprpc_rand_xoshiro(&((fuzz_loop_t *)c)->rng);
}

/* No waiters: nothing may block on this loop. L must outlive the view. */
static inline mprpc_loop_t fuzz_loop_seam(fuzz_loop_t *L) {
  static const mprpc_loop_ops_t ops = {
      .now_ns = fuzz_loop__now,
      .wall_ns = fuzz_loop__wall,
      .timer_start = fuzz_loop__timer_start,
      .timer_cancel = fuzz_loop__timer_cancel,
      .post = fuzz_loop__post,
      .in_loop = fuzz_loop__in_loop,
      .rand = fuzz_loop__rand,
  };
  return (mprpc_loop_t){&ops, L};
}

/* ---- a growable byte string (what a fake connection wrote or received) ---- */

typedef struct fuzz_bytes {
  uint8_t *p;
  size_t len, cap;
} fuzz_bytes_t;

static inline void fuzz_bytes_put(fuzz_bytes_t *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->p = realloc(b->p, b->cap);
    FUZZ_CHECK(b->p != NULL);
  }
  if (n)
    memcpy(b->p + b->len, p, n);
  b->len += n;
}

static inline void fuzz_bytes_putv(fuzz_bytes_t *b, const struct iovec *iov, int n) {
  for (int i = 0; i < n; i++)
    fuzz_bytes_put(b, iov[i].iov_base, iov[i].iov_len);
}

#endif
