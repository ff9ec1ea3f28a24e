/*
 * GET /metrics: Prometheus text exposition 0.0.4 (core/prom.h) of the
 * provider's stats (the same counters mprpc_server_stats reads), the
 * process's figures (the procinfo seam) and the process's channels (the
 * channel-list seam; families written by channel_metrics.c).
 *
 * The latency histogram's exposition buckets are fixed bounds in seconds;
 * each counts the internal log-linear buckets whose upper bound is at or
 * below it (so a bound's count may miss observations up to 12.5% under it:
 * a conservative histogram, never one that counts a slower call as faster).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/console_int.h"
#include "core/channel_metrics.h"
#include "core/prom.h"
#include "mprpc/errors.h"

static const double bounds_s[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                  0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                  5,      10};
#define NB (sizeof bounds_s / sizeof bounds_s[0])

/* Exposition buckets from the internal histogram h. */
static void expo_buckets(const uint64_t *h, uint64_t *cum, uint64_t *count) {
  uint64_t acc = 0;
  size_t b = 0;
  for (size_t i = 0; i < MPRPC__HIST_BUCKETS; i++) {
    double up = (double)mprpc__srv_bucket_upper_us(i) / 1e6;
    while (b < NB && up > bounds_s[b])
      cum[b++] = acc;
    acc += h[i];
  }
  while (b < NB)
    cum[b++] = acc;
  *count = acc;
}

typedef struct msum {
  uint64_t ok, sum_us, by_code[MPRPC_SERVER_NCODES], refused[MPRPC__REFUSED_N];
} msum_t;

static void method_sum(const mprpc_server_t *s, const srv_method_t *m, msum_t *o) {
  memset(o, 0, sizeof *o);
  for (size_t l = 0; l < s->nloops; l++) {
    o->ok += MPRPC__ONE_WRITER_READ(&m->st[l].ok);
    o->sum_us += MPRPC__ONE_WRITER_READ(&m->st[l].sum_us);
    for (size_t i = 0; i < MPRPC_SERVER_NCODES; i++)
      o->by_code[i] += MPRPC__ONE_WRITER_READ(&m->st[l].by_code[i]);
    for (size_t i = 0; i < MPRPC__REFUSED_N; i++)
      o->refused[i] += MPRPC__ONE_WRITER_READ(&m->st[l].refused[i]);
  }
}

static void server_families(mprpc__prom_t *w, const mprpc_server_t *s) {
  char code[16];
  msum_t ms;
  uint64_t hist[MPRPC__HIST_BUCKETS];
  const char *rq_help = "Requests answered, by wire error code (0: success; other: an "
                        "application or uncommon code)";
  for (size_t i = 0; i < s->nmethods; i++) {
    const srv_method_t *m = s->methods[i];
    method_sum(s, m, &ms);
    mprpc__prom_label_t lb[3] = {{"service", m->service}, {"method", m->name}, {"code", "0"}};
    mprpc__prom_counter(w, "mprpc_server_requests_total", rq_help, lb, 3, (double)ms.ok);
    for (size_t c = 0; c < MPRPC_SERVER_NCODES; c++) {
      if (!ms.by_code[c]) /* an error code's series starts at its first count */
        continue;
      int e = mprpc_server_stats_code(c);
      if (e)
        snprintf(code, sizeof code, "%d", (int)mprpc_err_to_wire(e));
      else
        snprintf(code, sizeof code, "other");
      lb[2].value = code;
      mprpc__prom_counter(w, "mprpc_server_requests_total", rq_help, lb, 3,
                          (double)ms.by_code[c]);
    }
  }
  for (size_t i = 0; i < s->nmethods; i++) {
    const srv_method_t *m = s->methods[i];
    method_sum(s, m, &ms);
    mprpc__srv_method_hist(s, m, hist);
    uint64_t cum[NB], count;
    expo_buckets(hist, cum, &count);
    mprpc__prom_hist_t h = {bounds_s, cum, NB, (double)ms.sum_us / 1e6, count};
    mprpc__prom_label_t lb[2] = {{"service", m->service}, {"method", m->name}};
    mprpc__prom_histogram(w, "mprpc_server_request_duration_seconds",
                          "Latency of completed calls, arrival to answer", lb, 2, &h);
  }
  static const char *const reasons[MPRPC__REFUSED_N] = {"rate_limit", "max_concurrency"};
  for (size_t i = 0; i < s->nmethods; i++) {
    const srv_method_t *m = s->methods[i];
    method_sum(s, m, &ms);
    for (size_t k = 0; k < MPRPC__REFUSED_N; k++) {
      mprpc__prom_label_t lb[3] = {
          {"service", m->service}, {"method", m->name}, {"reason", reasons[k]}};
      mprpc__prom_counter(w, "mprpc_server_refused_calls_total",
                          "Calls refused with ELIMIT before the handler ran, by the limit that "
                          "refused them",
                          lb, 3, (double)ms.refused[k]);
    }
  }
  for (size_t i = 0; i < s->nmethods; i++) {
    const srv_method_t *m = s->methods[i];
    mprpc__prom_label_t lb[2] = {{"service", m->service}, {"method", m->name}};
    mprpc__prom_gauge(w, "mprpc_server_inflight", "Calls admitted and not yet answered", lb, 2,
                      (double)mprpc__srv_method_inflight(s, m));
  }
  for (size_t i = 0; i < s->nmethods; i++) {
    const srv_method_t *m = s->methods[i];
    mprpc__prom_label_t lb[2] = {{"service", m->service}, {"method", m->name}};
    mprpc__prom_gauge(w, "mprpc_server_max_concurrency", "A method's concurrency limit (0: none)",
                      lb, 2, (double)__atomic_load_n(&m->limit, __ATOMIC_RELAXED));
  }
  mprpc_server_stats_t ss;
  mprpc_server_stats(s, &ss);
  uint64_t bin, bout;
  mprpc__srv_bytes(s, &bin, &bout);
  mprpc__prom_gauge(w, "mprpc_server_connections", "Open connections (baidu_std and HTTP)", NULL,
                    0, (double)ss.connections_open);
  mprpc__prom_counter(w, "mprpc_server_connections_accepted_total", "Connections accepted", NULL,
                      0, (double)ss.connections_accepted);
  mprpc__prom_counter(w, "mprpc_server_received_bytes_total", "Bytes received", NULL, 0,
                      (double)bin);
  mprpc__prom_counter(w, "mprpc_server_sent_bytes_total", "Bytes sent", NULL, 0, (double)bout);
  mprpc__prom_counter(w, "mprpc_server_malformed_total",
                      "Connections closed for a malformed frame or HTTP request", NULL, 0,
                      (double)ss.malformed_frames);
  mprpc__prom_counter(w, "mprpc_server_unknown_service_total", "ENOSERVICE answers", NULL, 0,
                      (double)ss.unknown_service);
  mprpc__prom_counter(w, "mprpc_server_unknown_method_total", "ENOMETHOD answers", NULL, 0,
                      (double)ss.unknown_method);
  mprpc__prom_counter(w, "mprpc_console_requests_total", "HTTP requests to the console", NULL, 0,
                      (double)atomic_load(&((mprpc_server_t *)s)->st_http_requests));
  static const char *const st[6] = {"400", "401", "403", "404", "413", "431"};
  for (size_t i = 0; i < 6; i++) {
    mprpc__prom_label_t lb[1] = {{"status", st[i]}};
    mprpc__prom_counter(w, "mprpc_console_refused_total", "Console requests refused, by status",
                        lb, 1, (double)atomic_load(&((mprpc_server_t *)s)->st_http_refused[i]));
  }
}

static void process_families(mprpc__prom_t *w, const mprpc_server_t *s) {
  mprpc_process_info_t pi;
  if (!s->o.procinfo.vt || s->o.procinfo.vt->read(s->o.procinfo.ctx, &pi) < 0)
    return;
  mprpc__prom_gauge(w, "process_resident_memory_bytes", "Resident memory size in bytes", NULL, 0,
                    pi.resident_memory_bytes);
  mprpc__prom_counter(w, "process_cpu_seconds_total", "User and system CPU time in seconds",
                      NULL, 0, pi.cpu_seconds);
  mprpc__prom_gauge(w, "process_start_time_seconds",
                    "Start time of the process since the Unix epoch in seconds", NULL, 0,
                    pi.start_time_seconds);
  if (pi.open_fds >= 0)
    mprpc__prom_gauge(w, "process_open_fds", "Open file descriptors", NULL, 0, pi.open_fds);
}

int mprpc__cpage_metrics(mprpc__creq_t *rq, mprpc__cresp_t *rs) {
  mprpc__prom_t w;
  mprpc__prom_init(&w, &rs->body);
  server_families(&w, rq->s);
  mprpc__channel_list_metrics(&w, rq->s->o.channels);
  process_families(&w, rq->s);
  if (w.err && !rs->body.err)
    rs->body.err = w.err;
  rs->ctype = MPRPC__PROM_CONTENT_TYPE;
  return 0;
}
