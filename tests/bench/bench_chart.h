/*
 * The benchmark picture: BENCH lines (ci/bench.sh, bench_common.h's
 * bench_print_result) in, one SVG out, drawn with core/svg_xy.h. One row of
 * panels per payload: qps against concurrency on the left, p99 latency on
 * the right; one series per impl (mprpc, baseline, mprpc-sync,
 * baseline-sync, ...), mprpc in colour and the baselines in grey, the
 * synchronous cells dashed. Header-only like bench_common.h, so that
 * tests/test_bench_svg.c can include it; tests/bench/bench_svg.c is the
 * program.
 */
#ifndef MPRPC_BENCH_CHART_H
#define MPRPC_BENCH_CHART_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/svg_xy.h"
#include "core/textbuf.h"

#define BCH_MAX_IMPL 12
#define BCH_MAX_PAYLOAD 8
#define BCH_MAX_CONC 16

typedef struct bench_chart {
  char impl[BCH_MAX_IMPL][32];
  size_t nimpl;
  unsigned long payload[BCH_MAX_PAYLOAD];
  size_t npayload;
  unsigned long conc[BCH_MAX_CONC]; /* sorted */
  size_t nconc;
  double qps[BCH_MAX_PAYLOAD][BCH_MAX_IMPL][BCH_MAX_CONC]; /* NAN = no cell */
  double p99[BCH_MAX_PAYLOAD][BCH_MAX_IMPL][BCH_MAX_CONC];
  size_t lines; /* BENCH lines taken */
} bench_chart_t;

/* The value of key= in one line (up to its end at eol), copied into out. */
static inline int bch_field(const char *line, const char *eol, const char *key, char *out,
                            size_t cap) {
  size_t kl = strlen(key);
  for (const char *p = line; p + kl < eol; p++) {
    if ((p == line || p[-1] == ' ') && strncmp(p, key, kl) == 0 && p[kl] == '=') {
      const char *v = p + kl + 1, *e = v;
      while (e < eol && *e != ' ')
        e++;
      if ((size_t)(e - v) >= cap || e == v)
        return -1;
      memcpy(out, v, (size_t)(e - v));
      out[e - v] = 0;
      return 0;
    }
  }
  return -1;
}

static inline size_t bch_index(unsigned long *arr, size_t *n, size_t max, unsigned long v,
                               bool sorted) {
  for (size_t i = 0; i < *n; i++)
    if (arr[i] == v)
      return i;
  if (*n == max)
    return max;
  size_t at = *n;
  if (sorted)
    while (at > 0 && arr[at - 1] > v)
      at--;
  memmove(arr + at + 1, arr + at, (*n - at) * sizeof *arr);
  arr[at] = v;
  (*n)++;
  return at;
}

/* Inserting a concurrency value in the middle shifts the columns after it. */
static inline void bch_shift_conc(bench_chart_t *c, size_t at) {
  for (size_t p = 0; p < BCH_MAX_PAYLOAD; p++)
    for (size_t i = 0; i < BCH_MAX_IMPL; i++) {
      memmove(&c->qps[p][i][at + 1], &c->qps[p][i][at], (BCH_MAX_CONC - at - 1) * sizeof(double));
      memmove(&c->p99[p][i][at + 1], &c->p99[p][i][at], (BCH_MAX_CONC - at - 1) * sizeof(double));
      c->qps[p][i][at] = c->p99[p][i][at] = NAN;
    }
}

static inline void bench_chart_init(bench_chart_t *c) {
  memset(c, 0, sizeof *c);
  for (size_t p = 0; p < BCH_MAX_PAYLOAD; p++)
    for (size_t i = 0; i < BCH_MAX_IMPL; i++)
      for (size_t k = 0; k < BCH_MAX_CONC; k++)
        c->qps[p][i][k] = c->p99[p][i][k] = NAN;
}

/* Takes every "BENCH " line of text; other lines are ignored, and so are
 * lines without impl, payload, concurrency and qps, and cells beyond the
 * limits above. Returns the number of BENCH lines taken. */
static inline size_t bench_chart_parse(bench_chart_t *c, const char *text, size_t len) {
  const char *end = text + len;
  for (const char *line = text; line < end;) {
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    if (!eol)
      eol = end;
    char impl[32], pay[24], conc[24], qps[32], p99[32] = "";
    if (eol - line > 6 && strncmp(line, "BENCH ", 6) == 0 &&
        bch_field(line, eol, "impl", impl, sizeof impl) == 0 &&
        bch_field(line, eol, "payload", pay, sizeof pay) == 0 &&
        bch_field(line, eol, "concurrency", conc, sizeof conc) == 0 &&
        bch_field(line, eol, "qps", qps, sizeof qps) == 0) {
      bch_field(line, eol, "p99_us", p99, sizeof p99);
      size_t ii = c->nimpl;
      for (size_t i = 0; i < c->nimpl; i++)
        if (strcmp(c->impl[i], impl) == 0)
          ii = i;
      if (ii == c->nimpl && c->nimpl < BCH_MAX_IMPL)
        snprintf(c->impl[c->nimpl++], sizeof c->impl[0], "%s", impl);
      unsigned long pv = strtoul(pay, NULL, 10), cv = strtoul(conc, NULL, 10);
      size_t pi = bch_index(c->payload, &c->npayload, BCH_MAX_PAYLOAD, pv, false);
      size_t before = c->nconc;
      size_t ci = bch_index(c->conc, &c->nconc, BCH_MAX_CONC, cv, true);
      if (c->nconc > before && ci + 1 < c->nconc)
        bch_shift_conc(c, ci);
      if (ii < BCH_MAX_IMPL && pi < BCH_MAX_PAYLOAD && ci < BCH_MAX_CONC) {
        c->qps[pi][ii][ci] = strtod(qps, NULL);
        c->p99[pi][ii][ci] = p99[0] ? strtod(p99, NULL) : NAN;
        c->lines++;
      }
    }
    line = eol + 1;
  }
  return c->lines;
}

static inline const char *bch_color(const char *impl) {
  bool base = strncmp(impl, "baseline", 8) == 0;
  bool c2 = strstr(impl, "-c2") != NULL;
  if (base)
    return c2 ? "#b0b0b0" : "#6e6e6e";
  return c2 ? "#d9822b" : "#1f6feb";
}

static inline void bch_size(char *buf, size_t cap, unsigned long b) {
  if (b >= 1024 && b % 1024 == 0)
    snprintf(buf, cap, "%lu KiB", b / 1024);
  else
    snprintf(buf, cap, "%lu B", b);
}

/* The whole picture into tb. 0 or a negative MPRPC_E*. */
static inline int bench_chart_svg(const bench_chart_t *c, const char *title, mprpc__textbuf_t *tb) {
  const int pw = 470, ph = 230, top = 30;
  size_t rows = c->npayload ? c->npayload : 1;
  mprpc__svg_doc_begin(tb, 2 * pw + 20, top + (int)rows * (ph + 10), title);
  char xl[BCH_MAX_CONC][24];
  const char *xls[BCH_MAX_CONC];
  for (size_t k = 0; k < c->nconc; k++) {
    snprintf(xl[k], sizeof xl[k], "%lu", c->conc[k]);
    xls[k] = xl[k];
  }
  for (size_t p = 0; p < c->npayload; p++) {
    mprpc__svg_series_t sq[BCH_MAX_IMPL], sp[BCH_MAX_IMPL];
    for (size_t i = 0; i < c->nimpl; i++) {
      sq[i] = (mprpc__svg_series_t){c->impl[i], bch_color(c->impl[i]),
                                    strstr(c->impl[i], "sync") != NULL, c->qps[p][i]};
      sp[i] = sq[i];
      sp[i].y = c->p99[p][i];
    }
    char sz[32], t1[96], t2[96];
    bch_size(sz, sizeof sz, c->payload[p]);
    snprintf(t1, sizeof t1, "%s: calls/s against concurrency", sz);
    snprintf(t2, sizeof t2, "%s: p99 latency (us) against concurrency", sz);
    int y = top + (int)p * (ph + 10);
    mprpc__svg_xy_t q = {10, y, pw, ph, t1, "/s", xls, c->nconc, sq, c->nimpl};
    mprpc__svg_xy_t l = {10 + pw, y, pw, ph, t2, " us", xls, c->nconc, sp, c->nimpl};
    mprpc__svg_xy_panel(tb, &q);
    mprpc__svg_xy_panel(tb, &l);
  }
  return mprpc__svg_doc_end(tb);
}

#endif
