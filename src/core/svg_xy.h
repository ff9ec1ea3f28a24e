/*
 * Multi-series line charts against a categorical x axis (e.g. qps against
 * concurrency 1, 16, 64, 256), laid out as panels of one SVG document: the
 * benchmark picture (build/bench/bench.svg). Same rules as svg.h: plain
 * elements with presentation attributes, no script, no external font or
 * stylesheet, text XML-escaped. Functions return 0 or a negative MPRPC_E*
 * code (the builder's error).
 */
#ifndef MPRPC_CORE_SVG_XY_H
#define MPRPC_CORE_SVG_XY_H

#include <stdbool.h>
#include <stddef.h>

#include "core/textbuf.h"

typedef struct mprpc__svg_series {
  const char *name;  /* legend text */
  const char *color; /* "#rrggbb" (only '#' and hex digits are used) */
  bool dashed;
  const double *y; /* one per x label; NaN, infinite or < 0: no point (the line joins its neighbours) */
} mprpc__svg_series_t;

typedef struct mprpc__svg_xy {
  int x, y;          /* top-left corner in the document */
  int width, height; /* clamped to 160..4000 and 100..4000 */
  const char *title; /* may be NULL */
  const char *unit;  /* after the y maximum; may be NULL */
  const char *const *xlabels;
  size_t nx; /* at most MPRPC__SVG_XY_MAX_X are drawn */
  const mprpc__svg_series_t *series;
  size_t nseries; /* at most MPRPC__SVG_XY_MAX_SERIES are drawn */
} mprpc__svg_xy_t;

#define MPRPC__SVG_XY_MAX_X 64
#define MPRPC__SVG_XY_MAX_SERIES 16

/* <svg ...> with a white background and a title line; then panels, then end. */
int mprpc__svg_doc_begin(mprpc__textbuf_t *tb, int width, int height, const char *title);
int mprpc__svg_xy_panel(mprpc__textbuf_t *tb, const mprpc__svg_xy_t *c);
int mprpc__svg_doc_end(mprpc__textbuf_t *tb);

#endif
