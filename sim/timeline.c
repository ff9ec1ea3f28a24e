/*
 * Timeline SVG writer (sim/timeline.h). Plain SVG 1.1, no script, no
 * external resources: it renders the same in a browser and on GitHub.
 */
#include "timeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/textbuf.h"
#include "mprpc/errors.h"

#define BUCKET_NS 100000000ull /* 100 ms */
#define MAX_LANES 16
#define MAX_FAULTS 256
#define LAT_BINS 40 /* log2-spaced latency bins per bucket, 1 us .. ~1e12 us */

typedef struct fault_span {
  uint64_t from, to;
  int lane;
  char label[48];
} fault_span_t;

typedef struct bucket {
  uint32_t ok, failed;
  uint32_t lat[LAT_BINS];
  uint32_t exec[MAX_LANES];
} bucket_t;

struct mprpc_timeline {
  uint64_t duration;
  int lanes;
  size_t nb;
  bucket_t *b;
  fault_span_t faults[MAX_FAULTS];
  size_t nfaults;
  uint64_t quiet, live_from;
};

mprpc_timeline_t *mprpc_timeline_new(uint64_t duration_ns, int providers) {
  mprpc_timeline_t *tl = calloc(1, sizeof *tl);
  if (!tl)
    return NULL;
  tl->duration = duration_ns ? duration_ns : BUCKET_NS;
  tl->lanes = providers < 0 ? 0 : providers > MAX_LANES ? MAX_LANES : providers;
  tl->nb = (size_t)((tl->duration + BUCKET_NS - 1) / BUCKET_NS);
  tl->b = calloc(tl->nb, sizeof *tl->b);
  if (!tl->b) {
    free(tl);
    return NULL;
  }
  return tl;
}

void mprpc_timeline_free(mprpc_timeline_t *tl) {
  if (!tl)
    return;
  free(tl->b);
  free(tl);
}

static bucket_t *at(mprpc_timeline_t *tl, uint64_t t) {
  size_t i = (size_t)(t / BUCKET_NS);
  return i < tl->nb ? &tl->b[i] : NULL;
}

static int lat_bin(uint64_t us) {
  int k = 0;
  while (us > 1 && k < LAT_BINS - 1) {
    us >>= 1;
    k++;
  }
  return k;
}

void mprpc_timeline_call(mprpc_timeline_t *tl, uint64_t end_ns, bool ok, uint64_t latency_us) {
  bucket_t *b = tl ? at(tl, end_ns) : NULL;
  if (!b)
    return;
  if (ok)
    b->ok++;
  else
    b->failed++;
  b->lat[lat_bin(latency_us)]++;
}

void mprpc_timeline_exec(mprpc_timeline_t *tl, uint64_t t_ns, int provider) {
  bucket_t *b = tl ? at(tl, t_ns) : NULL;
  if (b && provider >= 0 && provider < tl->lanes)
    b->exec[provider]++;
}

void mprpc_timeline_fault(mprpc_timeline_t *tl, uint64_t from_ns, uint64_t to_ns, int lane,
                          const char *label) {
  if (!tl || tl->nfaults >= MAX_FAULTS)
    return;
  fault_span_t *f = &tl->faults[tl->nfaults++];
  f->from = from_ns;
  f->to = to_ns > from_ns ? to_ns : from_ns;
  f->lane = lane;
  snprintf(f->label, sizeof f->label, "%s", label ? label : "");
}

void mprpc_timeline_set_duration(mprpc_timeline_t *tl, uint64_t duration_ns) {
  if (!tl || !duration_ns || duration_ns >= tl->duration)
    return;
  tl->duration = duration_ns;
  tl->nb = (size_t)((duration_ns + BUCKET_NS - 1) / BUCKET_NS);
}

void mprpc_timeline_marks(mprpc_timeline_t *tl, uint64_t quiet_ns, uint64_t live_from_ns) {
  if (!tl)
    return;
  tl->quiet = quiet_ns;
  tl->live_from = live_from_ns;
}

/* The upper bound (us) of the bin holding the 99th percentile. */
static uint64_t p99_us(const bucket_t *b) {
  uint64_t n = 0;
  for (int k = 0; k < LAT_BINS; k++)
    n += b->lat[k];
  if (!n)
    return 0;
  uint64_t want = n - n / 100, seen = 0;
  for (int k = 0; k < LAT_BINS; k++) {
    seen += b->lat[k];
    if (seen >= want)
      return 1ull << k;
  }
  return 1ull << (LAT_BINS - 1);
}

static void esc(mprpc__textbuf_t *f, const char *s) {
  mprpc__textbuf_html(f, s, strlen(s));
}

int mprpc_timeline_svg(const mprpc_timeline_t *tl, const char *title, char **out, size_t *len) {
  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  mprpc__textbuf_t *f = &tb;
  const double L = 60, R = 60, W = 1000; /* plot area x: L .. L+W */
  const double top = 34, calls_h = 180, lat_h = 90, lane_h = 16, gap = 14;
  double lat_top = top + calls_h + gap, lanes_top = lat_top + lat_h + gap;
  double H = lanes_top + tl->lanes * (lane_h + 3) + 40;
  double px_per_ns = W / (double)tl->duration;
  uint32_t maxc = 1;
  uint32_t maxe = 1;
  for (size_t i = 0; i < tl->nb; i++) {
    uint32_t c = tl->b[i].ok + tl->b[i].failed;
    if (c > maxc)
      maxc = c;
    for (int l = 0; l < tl->lanes; l++)
      if (tl->b[i].exec[l] > maxe)
        maxe = tl->b[i].exec[l];
  }
  mprpc__textbuf_printf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
          "font-family=\"monospace\" font-size=\"11\">\n",
          L + W + R, H);
  mprpc__textbuf_printf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
  mprpc__textbuf_printf(f, "<text x=\"%.0f\" y=\"18\" font-size=\"13\">", L);
  esc(f, title ? title : "");
  mprpc__textbuf_printf(f, "</text>\n");
  /* Fault spans: global ones across the calls and latency panels. */
  for (size_t i = 0; i < tl->nfaults; i++) {
    const fault_span_t *s = &tl->faults[i];
    double x = L + (double)s->from * px_per_ns, w = (double)(s->to - s->from) * px_per_ns;
    if (w < 1)
      w = 1;
    if (s->lane < 0) {
      mprpc__textbuf_printf(f,
              "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\" fill=\"#f4a742\" "
              "fill-opacity=\"0.18\"><title>",
              x, top, w, lanes_top - top - gap);
      esc(f, s->label);
      mprpc__textbuf_printf(f, "</title></rect>\n");
      mprpc__textbuf_printf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"9\" fill=\"#a05a00\">", x + 1,
              top + 10 + (double)(i % 6) * 10);
      esc(f, s->label);
      mprpc__textbuf_printf(f, "</text>\n");
    } else if (s->lane < tl->lanes) {
      double y = lanes_top + s->lane * (lane_h + 3);
      mprpc__textbuf_printf(f,
              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\" fill=\"#d62728\" "
              "fill-opacity=\"0.35\"><title>",
              x, y, w, lane_h);
      esc(f, s->label);
      mprpc__textbuf_printf(f, "</title></rect>\n");
    }
  }
  /* Calls per bucket: ok (green) under failed (red). */
  double bw = W / (double)tl->nb;
  for (size_t i = 0; i < tl->nb; i++) {
    const bucket_t *b = &tl->b[i];
    double x = L + (double)i * bw;
    double hok = calls_h * b->ok / maxc, hf = calls_h * b->failed / maxc;
    if (b->ok)
      mprpc__textbuf_printf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"#2ca02c\"/>\n",
              x, top + calls_h - hok, bw, hok);
    if (b->failed)
      mprpc__textbuf_printf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"#d62728\"/>\n",
              x, top + calls_h - hok - hf, bw, hf);
  }
  mprpc__textbuf_printf(f, "<text x=\"4\" y=\"%.0f\">%u/100ms</text>\n", top + 10, maxc);
  mprpc__textbuf_printf(f, "<text x=\"4\" y=\"%.0f\">calls</text>\n", top + calls_h / 2);
  mprpc__textbuf_printf(f, "<text x=\"%.0f\" y=\"%.0f\" fill=\"#2ca02c\">ok</text>", L + W + 6, top + 12);
  mprpc__textbuf_printf(f, "<text x=\"%.0f\" y=\"%.0f\" fill=\"#d62728\">failed</text>\n", L + W + 6, top + 26);
  /* p99 latency, log2 scale 64 us .. 4 s. */
  mprpc__textbuf_printf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#ccc\"/>\n",
          L, lat_top, W, lat_h);
  const int lo = 6, hi = 22;
  mprpc__textbuf_printf(f, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.2\" points=\"");
  for (size_t i = 0; i < tl->nb; i++) {
    uint64_t p = p99_us(&tl->b[i]);
    if (!p)
      continue;
    int k = lat_bin(p);
    if (k < lo)
      k = lo;
    if (k > hi)
      k = hi;
    double y = lat_top + lat_h - lat_h * (double)(k - lo) / (double)(hi - lo);
    mprpc__textbuf_printf(f, "%.1f,%.1f ", L + ((double)i + 0.5) * bw, y);
  }
  mprpc__textbuf_printf(f, "\"/>\n");
  mprpc__textbuf_printf(f, "<text x=\"4\" y=\"%.0f\">p99</text>\n", lat_top + lat_h / 2);
  mprpc__textbuf_printf(f, "<text x=\"4\" y=\"%.0f\" font-size=\"9\">4 s</text>\n", lat_top + 8);
  mprpc__textbuf_printf(f, "<text x=\"4\" y=\"%.0f\" font-size=\"9\">64 us</text>\n", lat_top + lat_h);
  mprpc__textbuf_printf(f, "<text x=\"4\" y=\"%.0f\" font-size=\"9\">1 ms</text>\n",
          lat_top + lat_h - lat_h * (10.0 - lo) / (hi - lo) + 3);
  /* Provider lanes: shade = handler runs per bucket. */
  for (int l = 0; l < tl->lanes; l++) {
    double y = lanes_top + l * (lane_h + 3);
    mprpc__textbuf_printf(f, "<text x=\"4\" y=\"%.0f\">p%d</text>\n", y + 12, l);
    mprpc__textbuf_printf(f, "<rect x=\"%.0f\" y=\"%.1f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#ddd\"/>\n",
            L, y, W, lane_h);
    for (size_t i = 0; i < tl->nb; i++) {
      uint32_t e = tl->b[i].exec[l];
      if (!e)
        continue;
      double op = 0.15 + 0.85 * (double)e / maxe;
      mprpc__textbuf_printf(f,
              "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" height=\"%.0f\" fill=\"#555\" "
              "fill-opacity=\"%.2f\"/>\n",
              L + (double)i * bw, y, bw, lane_h, op);
    }
  }
  /* Heal and liveness marks, time axis. */
  double bottom = lanes_top + tl->lanes * (lane_h + 3);
  if (tl->quiet) {
    double x = L + (double)tl->quiet * px_per_ns;
    mprpc__textbuf_printf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#000\" stroke-dasharray=\"4,3\"/>\n",
            x, top, x, bottom);
    mprpc__textbuf_printf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"9\">healed</text>\n", x + 2, bottom + 10);
  }
  if (tl->live_from && tl->live_from != tl->quiet) {
    double x = L + (double)tl->live_from * px_per_ns;
    mprpc__textbuf_printf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#888\" stroke-dasharray=\"2,3\"/>\n",
            x, top, x, bottom);
    mprpc__textbuf_printf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"9\">liveness</text>\n", x + 2,
            bottom + 10);
  }
  uint64_t step = tl->duration > 60ull * 1000000000ull ? 10000000000ull : 5000000000ull;
  for (uint64_t t = 0; t <= tl->duration; t += step) {
    double x = L + (double)t * px_per_ns;
    mprpc__textbuf_printf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#000\"/>\n", x,
            bottom + 14, x, bottom + 18);
    mprpc__textbuf_printf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%llus</text>\n", x, bottom + 30,
            (unsigned long long)(t / 1000000000ull));
  }
  mprpc__textbuf_printf(f, "</svg>\n");
  /* Errors are sticky: one check covers every append above. */
  int rc = tb.err;
  *out = rc == 0 ? mprpc__textbuf_take(&tb, len) : NULL;
  mprpc__textbuf_free(&tb);
  return rc == 0 && !*out ? MPRPC_ENOMEM : rc;
}
