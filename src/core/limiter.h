/*
 * Adaptive concurrency limiter for one method (`max_concurrency=auto`),
 * internal, pure logic on the caller's clock. After brpc's
 * AutoConcurrencyLimiter, with Netflix's gradient idea behind it: the right
 * number of calls in flight is the no-load latency times the best
 * throughput (Little's law), plus a little headroom to keep probing for
 * more.
 *
 * Completions are sampled in windows (a window ends after max_samples
 * completions, or after window_ns once it has min_samples; a sparser window
 * is dropped). At the end of a window, with avg the window's mean latency
 * (failed calls count fail_punish times their latency, against the
 * successes only) and qps its success rate:
 *   - noload latency: the first window's avg, then moving down towards any
 *     lower avg (EMA, ema_alpha);
 *   - max_qps: jumps up to a higher qps, decays slowly (ema_alpha / 10)
 *     towards a lower one;
 *   - explore ratio: grows by 0.02 (up to explore_max) while avg stays
 *     within explore_min of the noload latency or qps is below max_qps
 *     (there is room), shrinks by 0.02 (down to explore_min) otherwise;
 *   - limit = noload_latency * max_qps * (1 + explore), clamped to
 *     [min_limit, max_limit].
 * Every remeasure_ns (jittered to [1/2, 1) of it, from `seed`), and at
 * once after three windows in a row with latency above twice the noload
 * estimate, the estimates are re-learnt: max_qps becomes the last window's
 * qps, the limit drops to 90 % of noload * qps (or of itself, if lower)
 * for as long as the queue takes to drain (2 x avg), and the next window's
 * avg *replaces* the noload latency. A backend that got slower for good is
 * re-learnt within a few windows instead of being starved by a stale
 * minimum, and a limit that overshoots collapses back to the capacity.
 *
 * Starting from a small initial_limit, the limit grows by (1 + explore)
 * per window while it is below capacity (latency stays at the noload
 * value) and settles just above it, so calls queue only briefly.
 *
 * Threads. on_admit is one atomic load and one atomic add (and a subtract
 * when refused); on_complete an atomic subtract and, for the window, a
 * try-lock: a completion that finds another thread in the window update
 * drops its sample (as brpc does) instead of waiting. With one thread the
 * limiter is deterministic given its inputs.
 */
#ifndef MPRPC_CORE_LIMITER_H
#define MPRPC_CORE_LIMITER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct mprpc__limiter_opts {
  uint32_t initial_limit; /* 0 = 16 */
  uint32_t min_limit;     /* 0 = 1 */
  uint32_t max_limit;     /* 0 = 100000 */
  uint64_t window_ns;     /* 0 = 1 s */
  uint32_t min_samples;   /* 0 = 100 */
  uint32_t max_samples;   /* 0 = 200 */
  uint64_t remeasure_ns;  /* 0 = 30 s */
  double explore_min;     /* 0 = 0.06 */
  double explore_max;     /* 0 = 0.3 */
  double ema_alpha;       /* 0 = 0.1 */
  double fail_punish;     /* 0 = 1.0 */
  uint64_t seed;          /* remeasure jitter; draw it from the loop's rand seam */
} mprpc__limiter_opts_t;

typedef struct mprpc__limiter {
  mprpc__limiter_opts_t o;
  uint32_t limit;   /* atomic */
  int32_t inflight; /* atomic */
  uint8_t busy;     /* atomic flag: the window below is being updated */
  /* window, under busy: */
  bool win_open;
  uint64_t win_start;
  uint32_t succ, fail;
  uint64_t succ_lat, fail_lat;
  double noload_ns, max_qps, explore;
  uint64_t next_remeasure; /* 0: not scheduled yet */
  uint64_t drain_until;    /* remeasuring: samples before this are dropped */
  bool remeasuring;
  uint32_t high_windows; /* consecutive windows with latency > 2 x noload */
  uint64_t rng;
  /* statistics, under busy */
  uint64_t windows, remeasures;
} mprpc__limiter_t;

void mprpc__limiter_init(mprpc__limiter_t *l, const mprpc__limiter_opts_t *o);
/* A call arrives: true when it may run (the caller must then report its
 * completion exactly once), false when the limit is reached (answer
 * ELIMIT). */
bool mprpc__limiter_on_admit(mprpc__limiter_t *l, uint64_t now_ns);
/* An admitted call finished after latency_ns; ok = it succeeded (a
 * business error is ok; a timeout or an internal error is not). */
void mprpc__limiter_on_complete(mprpc__limiter_t *l, uint64_t latency_ns, bool ok,
                                uint64_t now_ns);
uint32_t mprpc__limiter_limit(const mprpc__limiter_t *l);
int32_t mprpc__limiter_inflight(const mprpc__limiter_t *l);

#endif
