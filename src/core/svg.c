/* See svg.h. */
#include "svg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define M_LEFT 52
#define M_RIGHT 10
#define M_TOP 22
#define M_BOTTOM 20

double mprpc__svg_nice_max(double v) {
  if (!(v > 0) || !isfinite(v))
    return 1;
  double p = pow(10, floor(log10(v)));
  static const double steps[] = {1, 2, 5, 10};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
    if (steps[i] * p >= v)
      return steps[i] * p;
  return 10 * p;
}

static void put_text(mprpc__textbuf_t *tb, double x, double y, const char *anchor, const char *s,
                     const char *s2) {
  mprpc__textbuf_printf(tb,
                        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-family=\"sans-serif\" "
                        "font-size=\"11\" fill=\"#444\">",
                        x, y, anchor);
  mprpc__textbuf_html(tb, s, strlen(s));
  if (s2)
    mprpc__textbuf_html(tb, s2, strlen(s2));
  mprpc__textbuf_puts(tb, "</text>\n");
}

void mprpc__svg_open(mprpc__textbuf_t *tb, int w, int h, const char *title) {
  mprpc__textbuf_printf(tb,
                        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                        "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"",
                        w, h, w, h);
  mprpc__textbuf_html(tb, title, strlen(title));
  mprpc__textbuf_puts(tb, "\">\n<title>");
  mprpc__textbuf_html(tb, title, strlen(title));
  mprpc__textbuf_printf(tb, "</title>\n<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n",
                        w, h);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

int mprpc__svg_line_chart(mprpc__textbuf_t *tb, const mprpc__svg_chart_t *c) {
  int w = clampi(c->width, 120, 4000), h = clampi(c->height, 80, 4000);
  const char *title = c->title ? c->title : "";
  size_t n = c->values ? c->n : 0;
  const double *v = c->values;
  if (n > MPRPC__SVG_MAX_POINTS) {
    v += n - MPRPC__SVG_MAX_POINTS;
    n = MPRPC__SVG_MAX_POINTS;
  }
  double max = 0;
  for (size_t i = 0; i < n; i++)
    if (isfinite(v[i]) && v[i] > max)
      max = v[i];
  double ymax = mprpc__svg_nice_max(max);
  double x0 = M_LEFT, x1 = w - M_RIGHT, y0 = h - M_BOTTOM, y1 = M_TOP;

  mprpc__svg_open(tb, w, h, title);
  mprpc__textbuf_printf(tb,
                        "<text x=\"%.1f\" y=\"14\" font-family=\"sans-serif\" font-size=\"12\" "
                        "font-weight=\"bold\" fill=\"#222\">",
                        x0);
  mprpc__textbuf_html(tb, title, strlen(title));
  mprpc__textbuf_puts(tb, "</text>\n");
  /* axes and the half-way grid line */
  mprpc__textbuf_printf(tb,
                        "<path d=\"M%.1f %.1fV%.1fH%.1f\" fill=\"none\" stroke=\"#888\" "
                        "stroke-width=\"1\"/>\n",
                        x0, y1, y0, x1);
  mprpc__textbuf_printf(tb,
                        "<path d=\"M%.1f %.1fH%.1f\" fill=\"none\" stroke=\"#ddd\" "
                        "stroke-width=\"1\"/>\n",
                        x0, (y0 + y1) / 2, x1);
  char num[32];
  snprintf(num, sizeof num, "%g", ymax);
  put_text(tb, x0 - 4, y1 + 4, "end", num, c->unit);
  put_text(tb, x0 - 4, y0 + 4, "end", "0", NULL);
  put_text(tb, x0, h - 5, "start", "-60s", NULL);
  put_text(tb, (x0 + x1) / 2, h - 5, "middle", "-30s", NULL);
  put_text(tb, x1, h - 5, "end", "now", NULL);

  if (n > 0) {
    /* slot i of 60 (0 = -59 s, 59 = now); the series ends at now */
    double dx = (x1 - x0) / (MPRPC__SVG_MAX_POINTS - 1);
    size_t first = MPRPC__SVG_MAX_POINTS - n;
    mprpc__textbuf_puts(tb, "<polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"1.5\" points=\"");
    for (size_t i = 0; i < n; i++) {
      double y = isfinite(v[i]) && v[i] > 0 ? v[i] : 0;
      mprpc__textbuf_printf(tb, "%s%.1f,%.1f", i ? " " : "", x0 + dx * (double)(first + i),
                            y0 - (y0 - y1) * y / ymax);
    }
    mprpc__textbuf_puts(tb, "\"/>\n");
  }
  return mprpc__textbuf_puts(tb, "</svg>\n");
}
