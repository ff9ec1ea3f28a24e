/*
 * Client metrics: per method of a channel, calls by outcome code and a
 * latency histogram with the exposition's bounds, counted when a call
 * finishes (on the channel's loop, the one writer) and written to /metrics
 * as mprpc_client_requests_total{service,method,code},
 * mprpc_client_request_duration_seconds{service,method} and
 * mprpc_client_endpoints{service,state} for every channel of a list (the
 * states are published by the channel's loop, endpoint.c).
 */
#include <stdio.h>
#include <string.h>

#include "core/channel_int.h"
#include "core/channel_metrics.h"
#include "core/one_writer.h"
#include "mprpc/errors.h"

static const double bounds_s[MPRPC__CH_BOUNDS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                  0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                  1,      2.5,     5,      10};

void mprpc__ch_method_record(mprpc_channel_t *ch, unsigned midx, int err, uint64_t ns) {
  if (midx >= ch->sd->n_methods)
    return;
  mprpc__ch_method_t *m = &ch->minfo[midx];
  uint64_t us = ns / 1000;
  MPRPC__ONE_WRITER_ADD(&m->sum_us, us);
  size_t b = 0;
  while (b < MPRPC__CH_BOUNDS && (double)ns / 1e9 > bounds_s[b])
    b++;
  MPRPC__ONE_WRITER_ADD(&m->hist[b], 1);
  if (err == 0) {
    MPRPC__ONE_WRITER_ADD(&m->ok, 1);
    return;
  }
  size_t n = __atomic_load_n(&m->ncodes, __ATOMIC_ACQUIRE);
  for (size_t i = 0; i < n; i++)
    if (m->codes[i].code == err) {
      MPRPC__ONE_WRITER_ADD(&m->codes[i].count, 1);
      return;
    }
  if (n < MPRPC__CH_CODES) {
    m->codes[n].code = n + 1 == MPRPC__CH_CODES ? 0 : err; /* 0: "other" */
    m->codes[n].count = 1;
    __atomic_store_n(&m->ncodes, n + 1, __ATOMIC_RELEASE);
    return;
  }
  MPRPC__ONE_WRITER_ADD(&m->codes[MPRPC__CH_CODES - 1].count, 1);
}

typedef struct walk {
  mprpc__prom_t *w;
  int family;
} walk_t;

static void one_channel(void *arg, const mprpc_channel_t *ch) {
  walk_t *k = arg;
  mprpc__prom_t *w = k->w;
  const char *svc = ch->sd->name;
  char code[16];
  if (k->family == 2) {
    static const char *const states[MPRPC__EPS_NSTATES] = {"healthy", "ejected", "disabled",
                                                           "unselected"};
    for (int st = 0; st < MPRPC__EPS_NSTATES; st++) {
      mprpc__prom_label_t lb[2] = {{"service", svc}, {"state", states[st]}};
      mprpc__prom_gauge(w, "mprpc_client_endpoints",
                        "Provider addresses a channel knows, by state as the channel last saw "
                        "it (unselected: outside its group/version selection; disabled: by the "
                        "config centre; ejected: by its breaker)",
                        lb, 2, (double)__atomic_load_n(&ch->eps_by_state[st], __ATOMIC_RELAXED));
    }
    return;
  }
  for (unsigned i = 0; i < ch->sd->n_methods; i++) {
    const mprpc__ch_method_t *m = &ch->minfo[i];
    const char *meth = ch->sd->methods[i].name;
    if (k->family == 0) {
      const char *help = "Calls finished, by outcome code (0: success; wire code of a failure; "
                         "other: past the first distinct codes)";
      mprpc__prom_label_t lb[3] = {{"service", svc}, {"method", meth}, {"code", "0"}};
      mprpc__prom_counter(w, "mprpc_client_requests_total", help, lb, 3,
                          (double)MPRPC__ONE_WRITER_READ(&m->ok));
      size_t n = __atomic_load_n(&m->ncodes, __ATOMIC_ACQUIRE);
      for (size_t c = 0; c < n; c++) {
        if (m->codes[c].code)
          snprintf(code, sizeof code, "%d", (int)mprpc_err_to_wire(m->codes[c].code));
        else
          snprintf(code, sizeof code, "other");
        lb[2].value = code;
        mprpc__prom_counter(w, "mprpc_client_requests_total", help, lb, 3,
                            (double)MPRPC__ONE_WRITER_READ(&m->codes[c].count));
      }
    } else {
      uint64_t cum[MPRPC__CH_BOUNDS], acc = 0;
      for (size_t b = 0; b < MPRPC__CH_BOUNDS; b++) {
        acc += MPRPC__ONE_WRITER_READ(&m->hist[b]);
        cum[b] = acc;
      }
      acc += MPRPC__ONE_WRITER_READ(&m->hist[MPRPC__CH_BOUNDS]);
      mprpc__prom_hist_t h = {bounds_s, cum, MPRPC__CH_BOUNDS,
                              (double)MPRPC__ONE_WRITER_READ(&m->sum_us) / 1e6, acc};
      mprpc__prom_label_t lb[2] = {{"service", svc}, {"method", meth}};
      mprpc__prom_histogram(w, "mprpc_client_request_duration_seconds",
                            "Latency of finished calls, retries included", lb, 2, &h);
    }
  }
}

void mprpc__channel_list_metrics(mprpc__prom_t *w, mprpc_channel_list_t list) {
  if (!list.vt || !list.vt->each)
    return;
  for (int f = 0; f < 3; f++) {
    walk_t k = {w, f};
    list.vt->each(list.ctx, one_channel, &k);
  }
}
