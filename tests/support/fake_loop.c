/* The deterministic fake loop; see fake_loop.h. */
#include "fake_loop.h"

#include <stdbool.h>
#include <stdlib.h>

#include "core/timerq.h"
#include "fake_check.h"
#include "mprpc/errors.h"
#include "mprpc/rand.h"

typedef struct post_item {
  mprpc_post_cb fn;
  void *arg;
} post_item_t;

struct fake_loop {
  uint64_t now; /* virtual monotonic clock, ns */
  uint64_t wall_offset;
  mprpc__timerq_t tq;
  post_item_t *posts; /* ring of max_posts */
  size_t max_posts;
  size_t ph, pt; /* head and tail counters */
  long max_steps;
  mprpc_xoshiro_t rng;
  void (*on_idle)(void *arg);
  void *idle_arg;
};

fake_loop_t *fake_loop_new(const fake_loop_opts_t *opts) {
  static const fake_loop_opts_t defaults = {0};
  if (!opts)
    opts = &defaults;
  fake_loop_t *L = calloc(1, sizeof *L);
  FAKE_CHECK(L != NULL);
  L->now = opts->start_ns ? opts->start_ns : 1000 * MPRPC_NS_PER_S;
  L->wall_offset = opts->wall_offset_ns;
  L->max_posts = opts->max_posts ? opts->max_posts : 65536;
  L->max_steps = opts->max_steps ? opts->max_steps : 1000000;
  L->posts = calloc(L->max_posts, sizeof *L->posts);
  FAKE_CHECK(L->posts != NULL);
  mprpc__timerq_init(&L->tq);
  mprpc_xoshiro_seed(&L->rng, opts->seed ? opts->seed : 1);
  return L;
}

void fake_loop_free(fake_loop_t *L) {
  if (!L)
    return;
  mprpc__timerq_free(&L->tq);
  free(L->posts);
  free(L);
}

uint64_t fake_loop_timer_start(fake_loop_t *L, uint64_t delay_ns, mprpc_timer_cb cb, void *arg) {
  return mprpc__timerq_add(&L->tq, L->now + delay_ns, cb, arg);
}

void fake_loop_timer_cancel(fake_loop_t *L, uint64_t id) { mprpc__timerq_cancel(&L->tq, id); }

int fake_loop_post(fake_loop_t *L, mprpc_post_cb fn, void *arg) {
  if (L->pt - L->ph >= L->max_posts)
    return MPRPC_ENOMEM;
  L->posts[L->pt % L->max_posts] = (post_item_t){fn, arg};
  L->pt++;
  return 0;
}

void fake_loop_run(fake_loop_t *L) {
  for (long step = 0; step < L->max_steps; step++) {
    if (L->ph != L->pt) {
      post_item_t it = L->posts[L->ph % L->max_posts];
      L->ph++;
      it.fn(it.arg);
    } else if (mprpc__timerq_run_due(&L->tq, L->now) == 0) {
      if (L->on_idle)
        L->on_idle(L->idle_arg);
      return;
    }
  }
  FAKE_CHECK(!"fake loop did not settle");
}

void fake_loop_advance(fake_loop_t *L, uint64_t ms) {
  uint64_t target = L->now + ms * MPRPC_NS_PER_MS, d;
  fake_loop_run(L);
  for (long step = 0; step < L->max_steps && mprpc__timerq_peek(&L->tq, &d) && d <= target;
       step++) {
    if (d > L->now)
      L->now = d;
    fake_loop_run(L);
  }
  L->now = target;
  fake_loop_run(L);
}

void fake_loop_skip(fake_loop_t *L, uint64_t ms) { L->now += ms * MPRPC_NS_PER_MS; }

uint64_t fake_loop_now(const fake_loop_t *L) { return L->now; }
size_t fake_loop_timers(const fake_loop_t *L) { return mprpc__timerq_len(&L->tq); }
size_t fake_loop_posts(const fake_loop_t *L) { return L->pt - L->ph; }

void fake_loop_on_idle(fake_loop_t *L, void (*fn)(void *arg), void *arg) {
  L->on_idle = fn;
  L->idle_arg = arg;
}

/* ---- the seam ---- */

static uint64_t op_now(void *ctx) { return ((fake_loop_t *)ctx)->now; }
static uint64_t op_wall(void *ctx) {
  fake_loop_t *L = ctx;
  return L->now + L->wall_offset;
}
static uint64_t op_timer_start(void *ctx, uint64_t delay_ns, mprpc_timer_cb cb, void *arg) {
  return fake_loop_timer_start(ctx, delay_ns, cb, arg);
}
static void op_timer_cancel(void *ctx, uint64_t id) { fake_loop_timer_cancel(ctx, id); }
static int op_post(void *ctx, mprpc_post_cb fn, void *arg) { return fake_loop_post(ctx, fn, arg); }
static bool op_in_loop(void *ctx) {
  (void)ctx;
  return true; /* there is only the caller's thread */
}
static mprpc_rand_t op_rand(void *ctx) { return mprpc_rand_xoshiro(&((fake_loop_t *)ctx)->rng); }

/* No waiters (nothing may block here) and no timer_start_at: the core's
 * fallback to timer_start keeps each timer at now + delay of the clock as
 * it reads when the timer is started, which is what the suites assert. */
static const mprpc_loop_ops_t fake_loop_ops = {
    .now_ns = op_now,
    .wall_ns = op_wall,
    .timer_start = op_timer_start,
    .timer_cancel = op_timer_cancel,
    .post = op_post,
    .in_loop = op_in_loop,
    .rand = op_rand,
};

mprpc_loop_t fake_loop_seam(fake_loop_t *L) { return (mprpc_loop_t){&fake_loop_ops, L}; }
