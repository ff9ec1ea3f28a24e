/*
 * Writer for the Prometheus text exposition format, version 0.0.4 (what
 * /metrics serves, Content-Type MPRPC__PROM_CONTENT_TYPE).
 *
 * One writer per page, over a text builder. Each family gets its "# HELP"
 * and "# TYPE" lines once, before its first sample; samples of one family
 * must be written one after the other (the format requires it), e.g. every
 * method's counter, then every method's histogram. Label values and help
 * text are escaped here; metric and label names are checked, never
 * escaped (a bad name is a bug in the caller: MPRPC_EINVAL, nothing
 * written). Functions return 0 or a negative MPRPC_E* code; errors are
 * sticky in w->err like the builder's.
 */
#ifndef MPRPC_CORE_PROM_H
#define MPRPC_CORE_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "core/textbuf.h"

#define MPRPC__PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct mprpc__prom_label {
  const char *name; /* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" */
  const char *value; /* any UTF-8; escaped */
} mprpc__prom_label_t;

#define MPRPC__PROM_LE_CACHE 48 /* histogram bounds kept formatted */

typedef struct mprpc__prom {
  mprpc__textbuf_t *out;
  char family[128]; /* the family whose HELP/TYPE were written last */
  int err;
  /* The last histogram's bounds, formatted: every method's histogram has
   * the same ones, and a double costs a printf and a strtod to format. */
  size_t le_n;
  double le_val[MPRPC__PROM_LE_CACHE];
  char le_txt[MPRPC__PROM_LE_CACHE][32];
} mprpc__prom_t;

/* A histogram's state as the exposition wants it: n finite upper bounds in
 * seconds (or whatever the name's unit is), strictly increasing, with the
 * cumulative count of observations <= each; the +Inf bucket is `count`. */
typedef struct mprpc__prom_hist {
  const double *bounds;
  const uint64_t *counts; /* cumulative: non-decreasing, each <= count */
  size_t n;
  double sum;
  uint64_t count;
} mprpc__prom_hist_t;

void mprpc__prom_init(mprpc__prom_t *w, mprpc__textbuf_t *out);

/* Writes "# HELP name help" and "# TYPE name type" unless name is the
 * family written last. type: counter, gauge, histogram, summary, untyped. */
int mprpc__prom_family(mprpc__prom_t *w, const char *name, const char *type, const char *help);

/* One sample line `name{labels} value` (no family lines). */
int mprpc__prom_sample(mprpc__prom_t *w, const char *name, const mprpc__prom_label_t *labels,
                       size_t nlabels, double value);

/* Family lines when needed, then one sample. A counter's name should end
 * in _total (promtool's lint says so). */
int mprpc__prom_counter(mprpc__prom_t *w, const char *name, const char *help,
                        const mprpc__prom_label_t *labels, size_t nlabels, double value);
int mprpc__prom_gauge(mprpc__prom_t *w, const char *name, const char *help,
                      const mprpc__prom_label_t *labels, size_t nlabels, double value);

/* Family lines when needed, then name_bucket{labels,le="..."} for every
 * bound and le="+Inf", name_sum and name_count. labels may not use "le". */
int mprpc__prom_histogram(mprpc__prom_t *w, const char *name, const char *help,
                          const mprpc__prom_label_t *labels, size_t nlabels,
                          const mprpc__prom_hist_t *h);

/* A sample value as Prometheus parses it: the shortest %g that reads back
 * exactly, "+Inf", "-Inf" or "NaN". buf needs 32 bytes. Returns buf. */
const char *mprpc__prom_format_value(char buf[32], double v);

#endif
