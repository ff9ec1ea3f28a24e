/*
 * Provider stats: per-method counters and a log-linear latency histogram.
 *
 * Buckets (microseconds): values 0..7 get one bucket each; above that each
 * power of two is split into 8 equal buckets, so a percentile read from the
 * bucket's upper bound is at most 12.5% above the true value. All counters
 * are relaxed atomics: recorded on loop threads, read from any thread.
 */
#include <stdio.h>
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

void mprpc__srv_count_error(mprpc_server_t *s, srv_method_t *m, int err) {
  (void)s;
  atomic_fetch_add_explicit(&m->st.errors, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->st.by_code[mprpc__srv_code_slot(err)], 1, memory_order_relaxed);
}

static size_t bucket_of(uint64_t us) {
  if (us < 8)
    return (size_t)us;
  int e = 63 - __builtin_clzll(us); /* >= 3 */
  size_t sub = (size_t)((us >> (e - 3)) & 7);
  size_t idx = 8 + (size_t)(e - 3) * 8 + sub;
  return idx < MPRPC__HIST_BUCKETS ? idx : MPRPC__HIST_BUCKETS - 1;
}

static uint64_t bucket_upper(size_t idx) {
  if (idx < 8)
    return idx;
  int e = (int)((idx - 8) / 8) + 3;
  uint64_t sub = (idx - 8) % 8;
  uint64_t lower = (8 + sub) << (e - 3);
  return lower + (1ull << (e - 3)) - 1;
}

void mprpc__srv_record_latency(srv_method_t *m, uint64_t ns) {
  uint64_t us = ns / 1000;
  atomic_fetch_add_explicit(&m->st.hist[bucket_of(us)], 1, memory_order_relaxed);
  uint64_t cur = atomic_load_explicit(&m->st.max_us, memory_order_relaxed);
  while (us > cur &&
         !atomic_compare_exchange_weak_explicit(&m->st.max_us, &cur, us, memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

/* Without a method limit: completed is read before admitted, so a call in
 * flight at the first read is counted (no false zero for the drain); one
 * admitted in between only makes the number larger for a moment. */
uint64_t mprpc__srv_method_inflight(const srv_method_t *m) {
  mprpc__mstats_t *st = (mprpc__mstats_t *)&m->st;
  if (m->limit)
    return atomic_load(&st->inflight);
  uint64_t done = atomic_load(&st->completed);
  uint64_t in = atomic_load(&st->admitted);
  return in > done ? in - done : 0;
}

uint64_t mprpc__srv_inflight(const mprpc_server_t *s) {
  mprpc_server_t *w = (mprpc_server_t *)s;
  if (s->o.max_concurrency)
    return atomic_load(&w->inflight);
  uint64_t n = 0;
  for (size_t i = 0; i < s->nmethods; i++)
    n += mprpc__srv_method_inflight(s->methods[i]);
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

static void fill(const srv_method_t *m, mprpc_method_stats_t *out) {
  uint64_t hist[MPRPC__HIST_BUCKETS];
  uint64_t total = 0;
  memset(out, 0, sizeof *out);
  out->service = m->service;
  out->method = m->name;
  mprpc__mstats_t *st = (mprpc__mstats_t *)&m->st;
  out->requests = atomic_load_explicit(&st->requests, memory_order_relaxed);
  out->errors = atomic_load_explicit(&st->errors, memory_order_relaxed);
  out->inflight = mprpc__srv_method_inflight(m);
  out->completed = atomic_load_explicit(&st->completed, memory_order_relaxed);
  out->max_us = atomic_load_explicit(&st->max_us, memory_order_relaxed);
  for (size_t i = 0; i < MPRPC_SERVER_NCODES; i++)
    out->errors_by_code[i] = atomic_load_explicit(&st->by_code[i], memory_order_relaxed);
  for (size_t i = 0; i < MPRPC__HIST_BUCKETS; i++) {
    hist[i] = atomic_load_explicit(&st->hist[i], memory_order_relaxed);
    total += hist[i];
  }
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
  fill(s->methods[i], out);
  return 0;
}

int mprpc_server_method_stats(const mprpc_server_t *s, const char *service, const char *method,
                              mprpc_method_stats_t *out) {
  if (!s || !service || !method || !out)
    return MPRPC_EINVAL;
  for (size_t i = 0; i < s->nmethods; i++)
    if (strcmp(s->methods[i]->service, service) == 0 && strcmp(s->methods[i]->name, method) == 0) {
      fill(s->methods[i], out);
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
}

void mprpc_server_log_stats(const mprpc_server_t *s) {
  if (!s)
    return;
  for (size_t i = 0; i < s->nmethods; i++) {
    mprpc_method_stats_t st;
    fill(s->methods[i], &st);
    MPRPC_LOG_INFO("server stats: %s.%s requests=%llu errors=%llu inflight=%llu p50=%lluus "
                   "p99=%lluus p999=%lluus max=%lluus",
                   st.service, st.method, (unsigned long long)st.requests,
                   (unsigned long long)st.errors, (unsigned long long)st.inflight,
                   (unsigned long long)st.p50_us, (unsigned long long)st.p99_us,
                   (unsigned long long)st.p999_us, (unsigned long long)st.max_us);
  }
}
