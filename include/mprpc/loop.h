/*
 * Loop / clock seam.
 *
 * Everything in mprpc that has logic in it runs on a loop: a single thread
 * that owns a set of connections and timers. The seam hides whether the loop
 * is a libev loop on a real thread (src/rt/) or a view onto the simulator's
 * discrete-event scheduler on virtual time (sim/).
 *
 * Rules every implementation keeps:
 * - Timer ids are never 0 and never reused within a loop's life; cancelling
 *   an id that already fired, was cancelled, or never existed is a no-op, so
 *   it is safe from inside the timer's own callback or any other callback.
 * - Timers with equal deadlines fire in the order they were started.
 * - post() may be called from any thread; fn runs on the loop's thread, in
 *   post order, exactly once while the loop is alive. Posts that arrive after
 *   the loop stopped return MPRPC_ESTATE (the caller keeps ownership of arg).
 * - Every other op may only be called on the loop's own thread.
 */
#ifndef MPRPC_LOOP_H
#define MPRPC_LOOP_H

#include "mprpc/export.h"
#include <stdbool.h>
#include <stdint.h>

#include "mprpc/rand.h"

MPRPC_BEGIN_DECLS

typedef void (*mprpc_timer_cb)(void *arg);
typedef void (*mprpc_post_cb)(void *arg);

typedef struct mprpc_loop_ops {
  /* Monotonic time in nanoseconds (arbitrary origin). */
  uint64_t (*now_ns)(void *ctx);
  /* Wall-clock time in nanoseconds since the Unix epoch. */
  uint64_t (*wall_ns)(void *ctx);
  /* One-shot timer firing after delay_ns; returns its id, or 0 on ENOMEM. */
  uint64_t (*timer_start)(void *ctx, uint64_t delay_ns, mprpc_timer_cb cb, void *arg);
  void (*timer_cancel)(void *ctx, uint64_t id);
  /* Run fn(arg) on the loop thread; any thread. 0 or MPRPC_ESTATE/ENOMEM. */
  int (*post)(void *ctx, mprpc_post_cb fn, void *arg);
  /* True when called on this loop's thread. */
  bool (*in_loop)(void *ctx);
  /* This loop's PRNG (one per loop, loop thread only). */
  mprpc_rand_t (*rand)(void *ctx);

  /* Blocking support for callers on other threads (synchronous calls).
   * Optional: NULL in the simulator, where nothing ever blocks. A waiter is
   * a one-shot binary semaphore: wake() may come before or after wait(). */
  void *(*waiter_new)(void *ctx);
  void (*waiter_wait)(void *ctx, void *waiter);
  void (*waiter_wake)(void *ctx, void *waiter);
  void (*waiter_free)(void *ctx, void *waiter);

  /* Optional (NULL: timer_start is used instead): a one-shot timer firing
   * once now_ns() >= deadline_ns (at once if that has passed). Lets a caller
   * that already read the clock for this event skip another read; see
   * mprpc_timer_start_from. */
  uint64_t (*timer_start_at)(void *ctx, uint64_t deadline_ns, mprpc_timer_cb cb, void *arg);

  /* Optional (NULL: false): true when the calling thread runs any loop of
   * this loop's runtime, not only this one. A synchronous call made there
   * would block a loop that may be the one that has to answer it, so the
   * channel refuses it (MPRPC_EDEADLK) instead of deadlocking. */
  bool (*on_a_loop)(void *ctx);
} mprpc_loop_ops_t;

typedef struct mprpc_loop {
  const mprpc_loop_ops_t *vt;
  void *ctx;
} mprpc_loop_t;

static inline uint64_t mprpc_loop_now(mprpc_loop_t l) { return l.vt->now_ns(l.ctx); }
static inline uint64_t mprpc_loop_wall(mprpc_loop_t l) { return l.vt->wall_ns(l.ctx); }
static inline uint64_t mprpc_timer_start(mprpc_loop_t l, uint64_t delay_ns, mprpc_timer_cb cb,
                                         void *arg) {
  return l.vt->timer_start(l.ctx, delay_ns, cb, arg);
}
/* mprpc_timer_start measured from now, a reading of mprpc_loop_now taken
 * by the caller during the current event: the timer fires at now + delay_ns
 * (no later than mprpc_timer_start would). */
static inline uint64_t mprpc_timer_start_from(mprpc_loop_t l, uint64_t now, uint64_t delay_ns,
                                              mprpc_timer_cb cb, void *arg) {
  if (!l.vt->timer_start_at)
    return l.vt->timer_start(l.ctx, delay_ns, cb, arg);
  uint64_t at = delay_ns > UINT64_MAX - 1 - now ? UINT64_MAX - 1 : now + delay_ns;
  return l.vt->timer_start_at(l.ctx, at, cb, arg);
}
static inline void mprpc_timer_cancel(mprpc_loop_t l, uint64_t id) {
  if (id)
    l.vt->timer_cancel(l.ctx, id);
}
static inline int mprpc_loop_post(mprpc_loop_t l, mprpc_post_cb fn, void *arg) {
  return l.vt->post(l.ctx, fn, arg);
}
static inline bool mprpc_loop_in_loop(mprpc_loop_t l) { return l.vt->in_loop(l.ctx); }
static inline mprpc_rand_t mprpc_loop_rand(mprpc_loop_t l) { return l.vt->rand(l.ctx); }
static inline bool mprpc_loop_can_block(mprpc_loop_t l) { return l.vt->waiter_new != 0; }
static inline bool mprpc_loop_on_a_loop(mprpc_loop_t l) {
  return l.vt->on_a_loop && l.vt->on_a_loop(l.ctx);
}

#define MPRPC_NS_PER_MS 1000000ull
#define MPRPC_NS_PER_US 1000ull
#define MPRPC_NS_PER_S 1000000000ull

MPRPC_END_DECLS
#endif
