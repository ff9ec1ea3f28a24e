/*
 * Provider stats: per-method counters and a log-linear latency histogram.
 *
 * Buckets (microseconds): values 0..7 get one bucket each; above that each
 * power of two is split into 8 equal buckets, so a percentile read from the
 * bucket's upper bound is at most 12.5% above the true value. Each loop
 * has its own copy of a method's counters with that loop's thread as the
 * only writer (core/one_writer.h: a release store, no locked operation);
 * readers on any thread load with acquire and sum the loops.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/server_internal.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

static const int slot_codes[MPRPC_SERVER_NCODES] = {
    MPRPC_EREQUEST, MPRPC_ERPCAUTH, MPRPC_ERPCTIMEDOUT, MPRPC_EINTERNAL,
    MPRPC_ELOGOFF,  MPRPC_ELIMIT,   MPRPC_EREJECT,      0 /* other */,
};

int mprpc_server_stats_code(size_t slot) {
  return slot < MPRPC_SERVER_NCODES ? slot_codes[slot] : 0;
}

size_t mprpc__srv_code_slot(int err) {
  for (size_t i = 0; i + 1 < MPRPC_SERVER_NCODES; i++)
    if (slot_codes[i] == err)
      return i;
  return MPRPC_SERVER_NCODES - 1;
}

void mprpc__srv_count_error(mprpc__mstats_t *st, int err) {
  MPRPC__ONE_WRITER_ADD(&st->errors, 1);
  MPRPC__ONE_WRITER_ADD(&st->by_code[mprpc__srv_code_slot(err)], 1);
}

static size_t bucket_of(uint64_t us) {
  if (us < 8)
    return (size_t)us;
  int e = 63 - __builtin_clzll(us); /* >= 3 */
  size_t sub = (size_t)((us >> (e - 3)) & 7);
  size_t idx = 8 + (size_t)(e - 3) * 8 + sub;
  return idx < MPRPC__HIST_BUCKETS ? idx : MPRPC__HIST_BUCKETS - 1;
}

uint64_t mprpc__srv_bucket_upper_us(size_t idx);
static uint64_t bucket_upper(size_t idx) { return mprpc__srv_bucket_upper_us(idx); }

uint64_t mprpc__srv_bucket_upper_us(size_t idx) {
  if (idx < 8)
    return idx;
  int e = (int)((idx - 8) / 8) + 3;
  uint64_t sub = (idx - 8) % 8;
  uint64_t lower = (8 + sub) << (e - 3);
  return lower + (1ull << (e - 3)) - 1;
}

void mprpc__srv_record_latency(mprpc__mstats_t *st, uint64_t ns) {
  uint64_t us = ns / 1000;
  MPRPC__ONE_WRITER_ADD(&st->hist[bucket_of(us)], 1);
  MPRPC__ONE_WRITER_ADD(&st->sum_us, us);
  if (us > st->max_us) /* this thread is the writer: its own value */
    MPRPC__ONE_WRITER_SET(&st->max_us, us);
}

/* Every loop's completed is read before any admitted (every admitted
 * call is counted in `admitted`, with or without a limit, so the limit may
 * change at run time). A call admitted and completed on loop i bumps
 * admitted before completed (release stores, read with acquire), so each
 * admitted read is at least the completed read before it: a call in flight
 * at the first read is counted (no false zero for the drain), and one
 * admitted in between only makes the number larger for a moment. */
uint64_t mprpc__srv_method_inflight(const mprpc_server_t *s, const srv_method_t *m) {
  uint64_t done = 0, in = 0;
  for (size_t i = 0; i < s->nloops; i++)
    done += MPRPC__ONE_WRITER_READ(&m->st[i].completed);
  for (size_t i = 0; i < s->nloops; i++)
    in += MPRPC__ONE_WRITER_READ(&m->st[i].admitted);
  return in > done ? in - done : 0;
}

uint64_t mprpc__srv_inflight(const mprpc_server_t *s) {
  mprpc_server_t *w = (mprpc_server_t *)s;
  if (s->o.max_concurrency)
    return atomic_load(&w->inflight);
  uint64_t n = 0;
  for (size_t i = 0; i < s->nmethods; i++)
    n += mprpc__srv_method_inflight(s, s->methods[i]);
  return n;
}

static uint64_t percentile(const uint64_t *h, uint64_t total, double p) {
  if (total == 0)
    return 0;
  uint64_t rank = (uint64_t)(p * (double)total);
  if ((double)rank < p * (double)total)
    rank++;
  if (rank == 0)
    rank = 1;
  uint64_t acc = 0;
  for (size_t i = 0; i < MPRPC__HIST_BUCKETS; i++) {
    acc += h[i];
    if (acc >= rank)
      return bucket_upper(i);
  }
  return bucket_upper(MPRPC__HIST_BUCKETS - 1);
}

uint64_t mprpc__srv_hist_percentile(const uint64_t *h, double p) {
  uint64_t total = 0;
  for (size_t i = 0; i < MPRPC__HIST_BUCKETS; i++)
    total += h[i];
  return percentile(h, total, p);
}

/* Sums the loops' counters (each read once; the loops keep counting). */
static void fill(const mprpc_server_t *s, const srv_method_t *m, mprpc_method_stats_t *out) {
  uint64_t hist[MPRPC__HIST_BUCKETS] = {0};
  uint64_t total = 0;
  memset(out, 0, sizeof *out);
  out->service = m->service;
  out->method = m->name;
  out->inflight = mprpc__srv_method_inflight(s, m);
  for (size_t l = 0; l < s->nloops; l++) {
    const mprpc__mstats_t *st = &m->st[l];
    out->requests += MPRPC__ONE_WRITER_READ(&st->requests);
    out->errors += MPRPC__ONE_WRITER_READ(&st->errors);
    out->completed += MPRPC__ONE_WRITER_READ(&st->completed);
    out->slow_handlers += MPRPC__ONE_WRITER_READ(&st->slow);
    out->refused_rate_limit += MPRPC__ONE_WRITER_READ(&st->refused[MPRPC__REFUSED_RATE]);
    out->refused_max_concurrency += MPRPC__ONE_WRITER_READ(&st->refused[MPRPC__REFUSED_CONC]);
    uint64_t mx = MPRPC__ONE_WRITER_READ(&st->max_us);
    if (mx > out->max_us)
      out->max_us = mx;
    for (size_t i = 0; i < MPRPC_SERVER_NCODES; i++)
      out->errors_by_code[i] += MPRPC__ONE_WRITER_READ(&st->by_code[i]);
    for (size_t i = 0; i < MPRPC__HIST_BUCKETS; i++)
      hist[i] += MPRPC__ONE_WRITER_READ(&st->hist[i]);
  }
  for (size_t i = 0; i < MPRPC__HIST_BUCKETS; i++)
    total += hist[i];
  out->p50_us = percentile(hist, total, 0.50);
  out->p99_us = percentile(hist, total, 0.99);
  out->p999_us = percentile(hist, total, 0.999);
}

size_t mprpc_server_method_count(const mprpc_server_t *s) { return s ? s->nmethods : 0; }

int mprpc_server_method_stats_at(const mprpc_server_t *s, size_t i, mprpc_method_stats_t *out) {
  if (!s || !out)
    return MPRPC_EINVAL;
  if (i >= s->nmethods)
    return MPRPC_ERANGE;
  fill(s, s->methods[i], out);
  return 0;
}

int mprpc_server_method_stats(const mprpc_server_t *s, const char *service, const char *method,
                              mprpc_method_stats_t *out) {
  if (!s || !service || !method || !out)
    return MPRPC_EINVAL;
  for (size_t i = 0; i < s->nmethods; i++)
    if (strcmp(s->methods[i]->service, service) == 0 && strcmp(s->methods[i]->name, method) == 0) {
      fill(s, s->methods[i], out);
      return 0;
    }
  return MPRPC_ENOTFOUND;
}

void mprpc_server_stats(const mprpc_server_t *s, mprpc_server_stats_t *out) {
  memset(out, 0, sizeof *out);
  if (!s)
    return;
  mprpc_server_t *w = (mprpc_server_t *)s;
  out->connections_accepted = atomic_load(&w->st_accepted);
  out->connections_open = atomic_load(&w->open_conns);
  out->connections_idle_closed = atomic_load(&w->st_idle_closed);
  out->malformed_frames = atomic_load(&w->st_malformed);
  out->unknown_service = atomic_load(&w->st_noservice);
  out->unknown_method = atomic_load(&w->st_nomethod);
  out->rejected_unrouted = atomic_load(&w->st_unrouted);
  out->inflight = mprpc__srv_inflight(s);
  out->closures_twice = atomic_load(&w->st_twice);
  out->responses_dropped = atomic_load(&w->st_dropped);
  out->refused_budget = atomic_load(&w->st_refused[MPRPC__REFUSE_BUDGET]);
  out->refused_header_timeout = atomic_load(&w->st_refused[MPRPC__REFUSE_HEADER]);
  out->refused_slow_body = atomic_load(&w->st_refused[MPRPC__REFUSE_BODY]);
  out->refused_max_connections = atomic_load(&w->st_refused[MPRPC__REFUSE_MAXCONN]);
  out->refused_per_ip = atomic_load(&w->st_refused[MPRPC__REFUSE_PERIP]);
  out->buffered_bytes = atomic_load(&w->buffered);
  out->buffered_bytes_peak = atomic_load(&w->buffered_peak);
  out->max_buffered_bytes = s->budget;
  out->reads_paused = atomic_load(&w->st_paused);
  out->connections_paused = atomic_load(&w->npaused);
}

void mprpc_server_log_stats(const mprpc_server_t *s) {
  if (!s)
    return;
  mprpc_server_stats_t ss;
  mprpc_server_stats(s, &ss);
  MPRPC_LOG_INFO("server limits: buffered_bytes=%llu peak=%llu budget=%llu paused=%llu "
                 "refused_budget=%llu refused_header_timeout=%llu refused_slow_body=%llu "
                 "refused_max_connections=%llu refused_per_ip=%llu",
                 (unsigned long long)ss.buffered_bytes, (unsigned long long)ss.buffered_bytes_peak,
                 (unsigned long long)ss.max_buffered_bytes,
                 (unsigned long long)ss.connections_paused, (unsigned long long)ss.refused_budget,
                 (unsigned long long)ss.refused_header_timeout,
                 (unsigned long long)ss.refused_slow_body,
                 (unsigned long long)ss.refused_max_connections,
                 (unsigned long long)ss.refused_per_ip);
  for (size_t i = 0; i < s->nmethods; i++) {
    mprpc_method_stats_t st;
    fill(s, s->methods[i], &st);
    MPRPC_LOG_INFO("server stats: %s.%s requests=%llu errors=%llu inflight=%llu p50=%lluus "
                   "p99=%lluus p999=%lluus max=%lluus",
                   st.service, st.method, (unsigned long long)st.requests,
                   (unsigned long long)st.errors, (unsigned long long)st.inflight,
                   (unsigned long long)st.p50_us, (unsigned long long)st.p99_us,
                   (unsigned long long)st.p999_us, (unsigned long long)st.max_us);
  }
}

void mprpc__srv_method_hist(const mprpc_server_t *s, const srv_method_t *m, uint64_t *hist) {
  memset(hist, 0, MPRPC__HIST_BUCKETS * sizeof *hist);
  for (size_t l = 0; l < s->nloops; l++)
    for (size_t i = 0; i < MPRPC__HIST_BUCKETS; i++)
      hist[i] += MPRPC__ONE_WRITER_READ(&m->st[l].hist[i]);
}

void mprpc__srv_bytes(const mprpc_server_t *s, uint64_t *in, uint64_t *out) {
  *in = *out = 0;
  for (size_t i = 0; i < s->nloops; i++) {
    *in += MPRPC__ONE_WRITER_READ(&s->sl[i].bytes_in);
    *out += MPRPC__ONE_WRITER_READ(&s->sl[i].bytes_out);
  }
}

/* ---- the per-second ring ----------------------------------------------------
 *
 * Once a second loops[0] reads every method's cumulative request count and
 * histogram (the same counters as everything else), and stores the
 * differences to the last second: requests in that second and its p99.
 * One writer (loops[0]); readers on any thread load entries with acquire and
 * may see a second being written as the older value: a chart one second
 * behind, never a torn number. */

#define RING 60

typedef struct mprpc__mring {
  uint64_t last_requests;
  uint64_t last_hist[MPRPC__HIST_BUCKETS];
  uint64_t qps[RING];
  uint64_t p99_us[RING];
} mprpc__mring_t;

int mprpc__srv_ring_alloc(srv_method_t *m) {
  m->ring = calloc(1, sizeof *m->ring);
  return m->ring ? 0 : MPRPC_ENOMEM;
}

void mprpc__srv_ring_free(srv_method_t *m) {
  free(m->ring);
  m->ring = NULL;
}

static void ring_tick(void *arg) {
  mprpc_server_t *s = arg;
  s->ring_timer = 0;
  if (atomic_load(&s->state) != SRV_RUNNING)
    return;
  uint64_t t = __atomic_load_n(&s->ring_ticks, __ATOMIC_RELAXED);
  size_t slot = (size_t)(t % RING);
  uint64_t hist[MPRPC__HIST_BUCKETS];
  for (size_t i = 0; i < s->nmethods; i++) {
    srv_method_t *m = s->methods[i];
    mprpc__mring_t *r = m->ring;
    uint64_t req = 0;
    for (size_t l = 0; l < s->nloops; l++)
      req += MPRPC__ONE_WRITER_READ(&m->st[l].requests);
    mprpc__srv_method_hist(s, m, hist);
    uint64_t total = 0;
    for (size_t b = 0; b < MPRPC__HIST_BUCKETS; b++) {
      uint64_t d = hist[b] - r->last_hist[b];
      r->last_hist[b] = hist[b];
      hist[b] = d;
      total += d;
    }
    MPRPC__ONE_WRITER_SET(&r->qps[slot], req - r->last_requests);
    MPRPC__ONE_WRITER_SET(&r->p99_us[slot], percentile(hist, total, 0.99));
    r->last_requests = req;
  }
  __atomic_store_n(&s->ring_ticks, t + 1, __ATOMIC_RELEASE);
  s->ring_timer = mprpc_timer_start(s->loops[0], MPRPC_NS_PER_S, ring_tick, s);
}

static void ring_start_task(void *arg) {
  mprpc_server_t *s = arg;
  if (!s->zombie && atomic_load(&s->state) == SRV_RUNNING && !s->ring_timer) {
    /* the baseline: counts before the first second are not that second's */
    for (size_t i = 0; i < s->nmethods; i++) {
      srv_method_t *m = s->methods[i];
      m->ring->last_requests = 0;
      for (size_t l = 0; l < s->nloops; l++)
        m->ring->last_requests += MPRPC__ONE_WRITER_READ(&m->st[l].requests);
      mprpc__srv_method_hist(s, m, m->ring->last_hist);
    }
    s->ring_timer = mprpc_timer_start(s->loops[0], MPRPC_NS_PER_S, ring_tick, s);
  }
  mprpc__srv_task_done(s);
}

/* From start (control thread): the ticker is armed on loops[0]. */
void mprpc__srv_ring_start(mprpc_server_t *s) {
  if (s->o.console)
    mprpc__srv_post(s, s->loops[0], ring_start_task, s);
}

/* On loops[0] (the shutdown state machine, or destroy). */
void mprpc__srv_ring_stop(mprpc_server_t *s) {
  if (s->ring_timer)
    mprpc_timer_cancel(s->loops[0], s->ring_timer);
  s->ring_timer = 0;
}

size_t mprpc__srv_method_series(const mprpc_server_t *s, const srv_method_t *m, double *qps,
                                double *p99_us, size_t max) {
  uint64_t t = __atomic_load_n(&s->ring_ticks, __ATOMIC_ACQUIRE);
  size_t n = t < RING ? (size_t)t : RING;
  if (n > max)
    n = max;
  if (!m->ring)
    return 0;
  for (size_t i = 0; i < n; i++) {
    size_t slot = (size_t)((t - n + i) % RING);
    qps[i] = (double)MPRPC__ONE_WRITER_READ(&m->ring->qps[slot]);
    p99_us[i] = (double)MPRPC__ONE_WRITER_READ(&m->ring->p99_us[slot]);
  }
  return n;
}
