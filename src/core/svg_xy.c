/* See svg_xy.h. */
#include "svg_xy.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/svg.h"

#define M_LEFT 58
#define M_RIGHT 12
#define M_TOP 24
#define M_BOTTOM 30
#define LEGEND_W 118

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static bool have(double v) { return isfinite(v) && v >= 0; }

/* An axis value: 2M, 250k, 5000 -> "5k", 0.5. */
static void axis_num(char *buf, size_t cap, double v) {
  if (v >= 1e6)
    snprintf(buf, cap, "%gM", v / 1e6);
  else if (v >= 1e4)
    snprintf(buf, cap, "%gk", v / 1e3);
  else
    snprintf(buf, cap, "%g", v);
}

/* A colour attribute from caller text: '#' and up to 8 hex digits, else grey. */
static const char *safe_color(const char *c, char *buf, size_t cap) {
  size_t n = c ? strlen(c) : 0;
  bool ok = n >= 4 && n <= 9 && n < cap && c[0] == '#';
  for (size_t i = 1; ok && i < n; i++)
    ok = strchr("0123456789abcdefABCDEF", c[i]) != NULL;
  if (!ok)
    return "#777777";
  memcpy(buf, c, n + 1);
  return buf;
}

static void text_at(mprpc__textbuf_t *tb, double x, double y, const char *anchor, int size,
                    const char *weight, const char *s, const char *s2) {
  mprpc__textbuf_printf(tb,
                        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-family=\"sans-serif\" "
                        "font-size=\"%d\" font-weight=\"%s\" fill=\"#333\">",
                        x, y, anchor, size, weight);
  mprpc__textbuf_html(tb, s, strlen(s));
  if (s2)
    mprpc__textbuf_html(tb, s2, strlen(s2));
  mprpc__textbuf_puts(tb, "</text>\n");
}

int mprpc__svg_doc_begin(mprpc__textbuf_t *tb, int width, int height, const char *title) {
  int w = clampi(width, 160, 8000), h = clampi(height, 100, 8000);
  const char *t = title ? title : "";
  mprpc__svg_open(tb, w, h, t);
  text_at(tb, 10, 18, "start", 14, "bold", t, NULL);
  return 0;
}

int mprpc__svg_doc_end(mprpc__textbuf_t *tb) { return mprpc__textbuf_puts(tb, "</svg>\n"); }

int mprpc__svg_xy_panel(mprpc__textbuf_t *tb, const mprpc__svg_xy_t *c) {
  int w = clampi(c->width, 160, 4000), h = clampi(c->height, 100, 4000);
  size_t nx = c->xlabels ? c->nx : 0, ns = c->series ? c->nseries : 0;
  if (nx > MPRPC__SVG_XY_MAX_X)
    nx = MPRPC__SVG_XY_MAX_X;
  if (ns > MPRPC__SVG_XY_MAX_SERIES)
    ns = MPRPC__SVG_XY_MAX_SERIES;
  double max = 0;
  for (size_t s = 0; s < ns; s++)
    for (size_t i = 0; c->series[s].y && i < nx; i++)
      if (have(c->series[s].y[i]) && c->series[s].y[i] > max)
        max = c->series[s].y[i];
  double ymax = mprpc__svg_nice_max(max);
  double x0 = M_LEFT, x1 = w - M_RIGHT - LEGEND_W, y0 = h - M_BOTTOM, y1 = M_TOP;
  const char *title = c->title ? c->title : "";

  mprpc__textbuf_printf(tb, "<g transform=\"translate(%d %d)\">\n", c->x, c->y);
  text_at(tb, x0, 14, "start", 12, "bold", title, NULL);
  mprpc__textbuf_printf(tb,
                        "<path d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" stroke=\"#888\" "
                        "stroke-width=\"1\"/>\n",
                        x0, y1, y0, x1);
  for (int g = 1; g <= 3; g++) /* quarter grid lines */
    mprpc__textbuf_printf(tb,
                          "<path d=\"M%.1f %.1fH%.1f\" fill=\"none\" stroke=\"#e4e4e4\" "
                          "stroke-width=\"1\"/>\n",
                          x0, y0 - (y0 - y1) * g / 4.0, x1);
  char num[40];
  axis_num(num, sizeof num, ymax);
  text_at(tb, x0 - 4, y1 + 4, "end", 11, "normal", num, c->unit);
  axis_num(num, sizeof num, ymax / 2);
  text_at(tb, x0 - 4, (y0 + y1) / 2 + 4, "end", 11, "normal", num, NULL);
  text_at(tb, x0 - 4, y0 + 4, "end", 11, "normal", "0", NULL);
  double dx = nx > 1 ? (x1 - x0 - 20) / (double)(nx - 1) : 0;
  double xs = nx > 1 ? x0 + 10 : (x0 + x1) / 2;
  for (size_t i = 0; i < nx; i++)
    text_at(tb, xs + dx * (double)i, y0 + 14, "middle", 11, "normal",
            c->xlabels[i] ? c->xlabels[i] : "", NULL);

  for (size_t s = 0; s < ns; s++) {
    const mprpc__svg_series_t *se = &c->series[s];
    char cbuf[16];
    const char *col = safe_color(se->color, cbuf, sizeof cbuf);
    const char *dash = se->dashed ? " stroke-dasharray=\"5 3\"" : "";
    /* the line: one polyline through the points there are (a missing
     * value is skipped, not a break: series measured at different x) */
    bool open = false;
    for (size_t i = 0; se->y && i < nx; i++) {
      if (!have(se->y[i]))
        continue;
      if (!open)
        mprpc__textbuf_printf(tb,
                              "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s "
                              "points=\"",
                              col, dash);
      mprpc__textbuf_printf(tb, "%s%.1f,%.1f", open ? " " : "", xs + dx * (double)i,
                            y0 - (y0 - y1) * se->y[i] / ymax);
      open = true;
    }
    if (open)
      mprpc__textbuf_puts(tb, "\"/>\n");
    for (size_t i = 0; se->y && i < nx; i++)
      if (have(se->y[i]))
        mprpc__textbuf_printf(tb, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.2\" fill=\"%s\"/>\n",
                              xs + dx * (double)i, y0 - (y0 - y1) * se->y[i] / ymax, col);
    /* legend entry */
    double ly = y1 + 6 + 15.0 * (double)s, lx = w - M_RIGHT - LEGEND_W + 8;
    mprpc__textbuf_printf(tb,
                          "<path d=\"M%.1f %.1fH%.1f\" fill=\"none\" stroke=\"%s\" "
                          "stroke-width=\"1.6\"%s/>\n",
                          lx, ly, lx + 18, col, dash);
    text_at(tb, lx + 22, ly + 4, "start", 11, "normal", se->name ? se->name : "", NULL);
  }
  return mprpc__textbuf_puts(tb, "</g>\n");
}
