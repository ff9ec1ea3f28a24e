/*
 * A small inline SVG line chart for console pages: one series of up to 60
 * samples (one a second, the newest last, drawn at "now"), a title, the
 * y-axis maximum and x labels -60s, -30s, now. No script, no external font
 * or stylesheet: plain elements with presentation attributes, so the page
 * works offline and under a strict Content-Security-Policy. Text is
 * XML-escaped. Returns 0 or a negative MPRPC_E* code (the builder's error).
 */
#ifndef MPRPC_CORE_SVG_H
#define MPRPC_CORE_SVG_H

#include <stddef.h>

#include "core/textbuf.h"

#define MPRPC__SVG_MAX_POINTS 60

typedef struct mprpc__svg_chart {
  int width, height;     /* pixels; clamped to 120..4000 and 80..4000 */
  const char *title;     /* may be NULL */
  const char *unit;      /* after the y maximum ("/s", " ms"); may be NULL */
  const double *values;  /* oldest first; only the newest 60 are drawn */
  size_t n;              /* may be 0: axes only */
} mprpc__svg_chart_t;

int mprpc__svg_line_chart(mprpc__textbuf_t *out, const mprpc__svg_chart_t *c);

/* Opens a w x h document: the svg element labelled with title (escaped),
 * its <title> and a white background. The caller ends it with </svg>. */
void mprpc__svg_open(mprpc__textbuf_t *tb, int w, int h, const char *title);

/* The axis maximum for a series whose largest value is v: the smallest of
 * 1, 2, 5 x 10^k that is >= v; 1 for v <= 0 or not finite. */
double mprpc__svg_nice_max(double v);

#endif
