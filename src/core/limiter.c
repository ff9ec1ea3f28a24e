/* Adaptive concurrency limiter; see limiter.h. */
#include "core/limiter.h"

#include <math.h>
#include <string.h>

#define NS_PER_S 1e9

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void mprpc__limiter_init(mprpc__limiter_t *l, const mprpc__limiter_opts_t *o) {
  memset(l, 0, sizeof *l);
  if (o)
    l->o = *o;
  mprpc__limiter_opts_t *p = &l->o;
  if (!p->min_limit)
    p->min_limit = 1;
  if (!p->max_limit)
    p->max_limit = 100000;
  if (p->max_limit < p->min_limit)
    p->max_limit = p->min_limit;
  if (!p->initial_limit)
    p->initial_limit = 16;
  if (p->initial_limit < p->min_limit)
    p->initial_limit = p->min_limit;
  if (p->initial_limit > p->max_limit)
    p->initial_limit = p->max_limit;
  if (!p->window_ns)
    p->window_ns = 1000000000ull;
  if (!p->min_samples)
    p->min_samples = 100;
  if (!p->max_samples)
    p->max_samples = 200;
  if (p->max_samples < p->min_samples)
    p->max_samples = p->min_samples;
  if (!p->remeasure_ns)
    p->remeasure_ns = 30000000000ull;
  if (p->explore_min <= 0)
    p->explore_min = 0.06;
  if (p->explore_max <= 0)
    p->explore_max = 0.3;
  if (p->explore_max < p->explore_min)
    p->explore_max = p->explore_min;
  if (p->ema_alpha <= 0 || p->ema_alpha > 1)
    p->ema_alpha = 0.1;
  if (p->fail_punish <= 0)
    p->fail_punish = 1.0;
  l->limit = p->initial_limit;
  l->explore = p->explore_max;
  l->rng = p->seed;
}

uint32_t mprpc__limiter_limit(const mprpc__limiter_t *l) {
  return __atomic_load_n(&l->limit, __ATOMIC_RELAXED);
}

int32_t mprpc__limiter_inflight(const mprpc__limiter_t *l) {
  return __atomic_load_n(&l->inflight, __ATOMIC_RELAXED);
}

bool mprpc__limiter_on_admit(mprpc__limiter_t *l, uint64_t now_ns) {
  (void)now_ns;
  uint32_t lim = __atomic_load_n(&l->limit, __ATOMIC_RELAXED);
  int32_t prev = __atomic_fetch_add(&l->inflight, 1, __ATOMIC_RELAXED);
  if (prev >= 0 && (uint32_t)prev >= lim) {
    __atomic_fetch_sub(&l->inflight, 1, __ATOMIC_RELAXED);
    return false;
  }
  return true;
}

static void reset_window(mprpc__limiter_t *l, uint64_t now) {
  l->win_open = true;
  l->win_start = now;
  l->succ = l->fail = 0;
  l->succ_lat = l->fail_lat = 0;
}

static uint64_t next_remeasure(mprpc__limiter_t *l, uint64_t now) {
  uint64_t r = l->o.remeasure_ns;
  uint64_t half = r / 2;
  return now + half + (half ? splitmix(&l->rng) % half : 0);
}

static void set_limit(mprpc__limiter_t *l, double v) {
  if (!(v >= l->o.min_limit)) /* also NaN */
    v = l->o.min_limit;
  if (v > l->o.max_limit)
    v = l->o.max_limit;
  __atomic_store_n(&l->limit, (uint32_t)(v + 0.5), __ATOMIC_RELAXED);
}

/* The window is complete: update the estimates and the limit. */
static void end_window(mprpc__limiter_t *l, uint64_t now) {
  uint64_t elapsed = now > l->win_start ? now - l->win_start : 1;
  l->windows++;
  uint32_t cur = __atomic_load_n(&l->limit, __ATOMIC_RELAXED);
  if (l->succ == 0) { /* everything failed: back off hard */
    set_limit(l, cur / 2.0);
    reset_window(l, now);
    return;
  }
  double avg = ((double)l->succ_lat + (double)l->fail_lat * l->o.fail_punish) / l->succ;
  double qps = (double)l->succ * NS_PER_S / (double)elapsed;
  double a = l->o.ema_alpha;
  if (l->remeasuring) {
    l->noload_ns = avg; /* re-learnt, up or down */
    l->remeasuring = false;
    l->next_remeasure = next_remeasure(l, now);
  } else if (l->noload_ns <= 0) {
    l->noload_ns = avg;
    l->next_remeasure = next_remeasure(l, now);
  } else if (avg < l->noload_ns) {
    l->noload_ns = avg * a + l->noload_ns * (1 - a);
  }
  if (qps >= l->max_qps)
    l->max_qps = qps;
  else
    l->max_qps = qps * (a / 10) + l->max_qps * (1 - a / 10);
  double emin = l->o.explore_min;
  if (avg <= l->noload_ns * (1 + emin) || qps <= l->max_qps / (1 + emin))
    l->explore = l->explore + 0.02 < l->o.explore_max ? l->explore + 0.02 : l->o.explore_max;
  else
    l->explore = l->explore - 0.02 > emin ? l->explore - 0.02 : emin;
  /* Latency far above the noload estimate window after window: either the
   * backend got slower (the estimate is stale) or the limit overshoots.
   * Both are settled by measuring again now rather than at the timer. */
  l->high_windows = avg > 2 * l->noload_ns ? l->high_windows + 1 : 0;
  if (now >= l->next_remeasure || l->high_windows >= 3) {
    /* The most recent throughput replaces the decaying maximum (a stale
     * maximum would keep the limit above the new capacity); the limit goes
     * 10 % under what that throughput needs so the queue drains; the next
     * window's latency becomes the noload latency. */
    l->max_qps = qps;
    double need = l->noload_ns * qps / NS_PER_S;
    set_limit(l, (need < cur ? need : cur) * 0.9);
    l->remeasuring = true;
    l->high_windows = 0;
    l->remeasures++;
    l->drain_until = now + (uint64_t)(2 * avg);
  } else {
    /* Little's law gives the mean concurrency at the best throughput; a
     * backend with little concurrency (a serial queue: base about 1) sees
     * arrivals bunch above the mean all the time, so a queue allowance of
     * sqrt(base) (at least one call) goes on top, as in Netflix's
     * Gradient2. It is small beside a large base. */
    double base = l->noload_ns * l->max_qps / NS_PER_S;
    double q = sqrt(base);
    set_limit(l, base * (1 + l->explore) + (q > 1 ? q : 1));
  }
  reset_window(l, now);
}

void mprpc__limiter_on_complete(mprpc__limiter_t *l, uint64_t latency_ns, bool ok,
                                uint64_t now_ns) {
  __atomic_fetch_sub(&l->inflight, 1, __ATOMIC_RELAXED);
  if (__atomic_test_and_set(&l->busy, __ATOMIC_ACQUIRE))
    return; /* another thread is updating the window: drop this sample */
  if (l->remeasuring && now_ns < l->drain_until) {
    reset_window(l, now_ns); /* the queue is still draining */
  } else {
    if (!l->win_open)
      reset_window(l, now_ns);
    if (ok) {
      l->succ++;
      l->succ_lat += latency_ns;
    } else {
      l->fail++;
      l->fail_lat += latency_ns;
    }
    /* another loop's clock may read slightly behind this one */
    uint64_t elapsed = now_ns > l->win_start ? now_ns - l->win_start : 0;
    uint32_t n = l->succ + l->fail;
    if (n >= l->o.max_samples || elapsed >= l->o.window_ns) {
      if (n >= l->o.min_samples)
        end_window(l, now_ns);
      else
        reset_window(l, now_ns); /* too sparse to say anything */
    }
  }
  __atomic_clear(&l->busy, __ATOMIC_RELEASE);
}
