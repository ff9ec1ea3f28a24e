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

static uint64_t bucket_upper(size_t idx) {
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
  if (us > st->max_us) /* this thread is the writer: its own value */
    MPRPC__ONE_WRITER_SET(&st->max_us, us);
}

/* Without a method limit: every loop's completed is read before any
 * admitted. A call admitted and completed on loop i bumps admitted before
 * completed (release stores, read with acquire), so each admitted read is
 * at least the completed read before it: a call in flight at the first
 * read is counted (no false zero for the drain), and one admitted in
 * between only makes the number larger for a moment. */
uint64_t mprpc__srv_method_inflight(const mprpc_server_t *s, const srv_method_t *m) {
  if (m->limit)
    return atomic_load(&((srv_method_t *)m)->limit_inflight);
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
}

void mprpc_server_log_stats(const mprpc_server_t *s) {
  if (!s)
    return;
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
