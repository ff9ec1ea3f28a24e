/* See prom.h. Escaping per the 0.0.4 text format: in HELP, backslash and
 * newline; in label values, backslash, double quote and newline. */
#include "prom.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"

void mprpc__prom_init(mprpc__prom_t *w, mprpc__textbuf_t *out) {
  memset(w, 0, sizeof *w);
  w->out = out;
}

static bool name_ok(const char *s, bool colon) {
  if (!s || !*s)
    return false;
  for (size_t i = 0; s[i]; i++) {
    char c = s[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
      return false;
  }
  return true;
}

static bool labels_ok(const mprpc__prom_label_t *l, size_t n, bool hist) {
  for (size_t i = 0; i < n; i++) {
    if (!name_ok(l[i].name, false) || strncmp(l[i].name, "__", 2) == 0 || !l[i].value)
      return false;
    if (hist && strcmp(l[i].name, "le") == 0)
      return false;
  }
  return true;
}

static int set_err(mprpc__prom_t *w, int err) {
  if (!w->err)
    w->err = err;
  return err;
}

static const char *format_u64(char buf[32], uint64_t u) {
  char tmp[24];
  size_t n = 0;
  do
    tmp[n++] = (char)('0' + u % 10);
  while ((u /= 10) != 0);
  for (size_t i = 0; i < n; i++)
    buf[i] = tmp[n - 1 - i];
  buf[n] = 0;
  return buf;
}

/* " N\n": the end of a sample line with a whole-number value. */
static void put_count(mprpc__textbuf_t *tb, uint64_t v) {
  char num[32];
  mprpc__textbuf_putc(tb, ' ');
  mprpc__textbuf_puts(tb, format_u64(num, v));
  mprpc__textbuf_putc(tb, '\n');
}

const char *mprpc__prom_format_value(char buf[32], double v) {
  if (isnan(v))
    return strcpy(buf, "NaN");
  if (isinf(v))
    return strcpy(buf, v > 0 ? "+Inf" : "-Inf");
  /* Counters and most gauges are whole numbers below 2^53: written by hand,
   * they cost no snprintf/strtod round trip (/metrics writes thousands). */
  if (v >= 0 && v < 9007199254740992.0 && v == (double)(uint64_t)v)
    return format_u64(buf, (uint64_t)v);
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, 32, "%.*g", prec, v);
    if (strtod(buf, NULL) == v)
      break;
  }
  return buf;
}

/* s escaped into the builder; quote: escape '"' too (label values). */
static void put_escaped(mprpc__textbuf_t *tb, const char *s, bool quote) {
  const char *run = s;
  for (; *s; s++) {
    const char *rep = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : quote && *s == '"' ? "\\\"" : NULL;
    if (!rep)
      continue;
    mprpc__textbuf_append(tb, run, (size_t)(s - run));
    mprpc__textbuf_puts(tb, rep);
    run = s + 1;
  }
  mprpc__textbuf_puts(tb, run);
}

int mprpc__prom_family(mprpc__prom_t *w, const char *name, const char *type, const char *help) {
  static const char *types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
  if (w->err)
    return w->err;
  bool type_ok = false;
  for (size_t i = 0; type && i < sizeof types / sizeof types[0]; i++)
    type_ok |= strcmp(type, types[i]) == 0;
  if (!name_ok(name, true) || !type_ok || strlen(name) >= sizeof w->family)
    return MPRPC_EINVAL;
  if (strcmp(w->family, name) == 0)
    return 0;
  mprpc__textbuf_t *tb = w->out;
  mprpc__textbuf_printf(tb, "# HELP %s ", name);
  put_escaped(tb, help ? help : "", false);
  mprpc__textbuf_printf(tb, "\n# TYPE %s %s\n", name, type);
  strcpy(w->family, name);
  if (tb->err)
    return set_err(w, tb->err);
  return 0;
}

/* name{labels[,le="le"]} — the part of a line before the value. */
static void put_series(mprpc__textbuf_t *tb, const char *name, const char *suffix,
                       const mprpc__prom_label_t *l, size_t n, const char *le) {
  mprpc__textbuf_puts(tb, name);
  mprpc__textbuf_puts(tb, suffix);
  if (n == 0 && !le)
    return;
  mprpc__textbuf_putc(tb, '{');
  for (size_t i = 0; i < n; i++) {
    if (i)
      mprpc__textbuf_putc(tb, ',');
    mprpc__textbuf_puts(tb, l[i].name);
    mprpc__textbuf_append(tb, "=\"", 2);
    put_escaped(tb, l[i].value, true);
    mprpc__textbuf_putc(tb, '"');
  }
  if (le) {
    mprpc__textbuf_puts(tb, n ? ",le=\"" : "le=\"");
    mprpc__textbuf_puts(tb, le);
    mprpc__textbuf_putc(tb, '"');
  }
  mprpc__textbuf_putc(tb, '}');
}

int mprpc__prom_sample(mprpc__prom_t *w, const char *name, const mprpc__prom_label_t *labels,
                       size_t nlabels, double value) {
  if (w->err)
    return w->err;
  if (!name_ok(name, true) || !labels_ok(labels, nlabels, false))
    return MPRPC_EINVAL;
  char num[32];
  put_series(w->out, name, "", labels, nlabels, NULL);
  mprpc__textbuf_putc(w->out, ' ');
  mprpc__textbuf_puts(w->out, mprpc__prom_format_value(num, value));
  mprpc__textbuf_putc(w->out, '\n');
  return w->out->err ? set_err(w, w->out->err) : 0;
}

static int typed(mprpc__prom_t *w, const char *type, const char *name, const char *help,
                 const mprpc__prom_label_t *labels, size_t nlabels, double value) {
  if (!name_ok(name, true) || !labels_ok(labels, nlabels, false))
    return MPRPC_EINVAL;
  int rc = mprpc__prom_family(w, name, type, help);
  return rc ? rc : mprpc__prom_sample(w, name, labels, nlabels, value);
}

int mprpc__prom_counter(mprpc__prom_t *w, const char *name, const char *help,
                        const mprpc__prom_label_t *labels, size_t nlabels, double value) {
  return typed(w, "counter", name, help, labels, nlabels, value);
}

int mprpc__prom_gauge(mprpc__prom_t *w, const char *name, const char *help,
                      const mprpc__prom_label_t *labels, size_t nlabels, double value) {
  return typed(w, "gauge", name, help, labels, nlabels, value);
}

int mprpc__prom_histogram(mprpc__prom_t *w, const char *name, const char *help,
                          const mprpc__prom_label_t *labels, size_t nlabels,
                          const mprpc__prom_hist_t *h) {
  if (w->err)
    return w->err;
  if (!name_ok(name, true) || !labels_ok(labels, nlabels, true) || (h->n && (!h->bounds || !h->counts)))
    return MPRPC_EINVAL;
  for (size_t i = 0; i < h->n; i++) {
    if (!isfinite(h->bounds[i]) || (i && !(h->bounds[i] > h->bounds[i - 1])))
      return MPRPC_EINVAL;
    if (h->counts[i] > h->count || (i && h->counts[i] < h->counts[i - 1]))
      return MPRPC_EINVAL;
  }
  int rc = mprpc__prom_family(w, name, "histogram", help);
  if (rc)
    return rc;
  mprpc__textbuf_t *tb = w->out;
  char num[32];
  bool cached = h->n <= MPRPC__PROM_LE_CACHE;
  if (cached && h->n && (h->n != w->le_n || memcmp(h->bounds, w->le_val, h->n * sizeof *h->bounds))) {
    for (size_t i = 0; i < h->n; i++) {
      w->le_val[i] = h->bounds[i];
      mprpc__prom_format_value(w->le_txt[i], h->bounds[i]);
    }
    w->le_n = h->n;
  }
  for (size_t i = 0; i < h->n; i++) {
    const char *le = cached ? w->le_txt[i] : mprpc__prom_format_value(num, h->bounds[i]);
    put_series(tb, name, "_bucket", labels, nlabels, le);
    put_count(tb, h->counts[i]);
  }
  put_series(tb, name, "_bucket", labels, nlabels, "+Inf");
  put_count(tb, h->count);
  put_series(tb, name, "_sum", labels, nlabels, NULL);
  mprpc__textbuf_putc(tb, ' ');
  mprpc__textbuf_puts(tb, mprpc__prom_format_value(num, h->sum));
  mprpc__textbuf_putc(tb, '\n');
  put_series(tb, name, "_count", labels, nlabels, NULL);
  put_count(tb, h->count);
  return tb->err ? set_err(w, tb->err) : 0;
}
