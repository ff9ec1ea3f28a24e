/* The rpcz ring and its pages; see core/rpcz.h. */
#include "core/rpcz.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"

#define MASK (MPRPC_RPCZ_SPANS - 1)
_Static_assert((MPRPC_RPCZ_SPANS & MASK) == 0, "the ring size is a power of two");

/* Cache-line aligned: loops completing consecutive tickets write
 * different lines. */
typedef struct slot {
  /* 2t+1 while ticket t writes, 2t+2 once written; 0 never written */
  atomic_uint_fast64_t seq;
  mprpc_rpcz_span_t sp;
} __attribute__((aligned(64))) slot_t;

struct mprpc__rpcz {
  _Alignas(64) atomic_uint_fast64_t head; /* next ticket */
  _Alignas(64) slot_t ring[MPRPC_RPCZ_SPANS];
};

mprpc__rpcz_t *mprpc__rpcz_new(void) {
  mprpc__rpcz_t *z = aligned_alloc(64, sizeof *z);
  if (z)
    memset(z, 0, sizeof *z);
  return z;
}

void mprpc__rpcz_free(mprpc__rpcz_t *z) { free(z); }

void mprpc__rpcz_record(mprpc__rpcz_t *z, const mprpc_rpcz_span_t *sp) {
  uint64_t t = atomic_fetch_add_explicit(&z->head, 1, memory_order_relaxed);
  slot_t *e = &z->ring[t & MASK];
  uint64_t cur = atomic_load_explicit(&e->seq, memory_order_relaxed);
  /* Claim the slot unless a writer is in it or a newer span is there. */
  if ((cur & 1) || cur >= 2 * t + 1 ||
      !atomic_compare_exchange_strong_explicit(&e->seq, &cur, 2 * t + 1, memory_order_relaxed,
                                               memory_order_relaxed))
    return;
  atomic_thread_fence(memory_order_release); /* the odd number before the bytes */
  memcpy(&e->sp, sp, sizeof *sp);
  atomic_store_explicit(&e->seq, 2 * t + 2, memory_order_release);
}

size_t mprpc__rpcz_snapshot(const mprpc__rpcz_t *z, mprpc_rpcz_span_t *out, size_t max,
                            int64_t trace_id) {
  if (!z)
    return 0;
  mprpc__rpcz_t *w = (mprpc__rpcz_t *)z; /* atomics are read, not changed */
  uint64_t h = atomic_load_explicit(&w->head, memory_order_acquire);
  size_t n = 0;
  for (uint64_t t = h; t > 0 && h - t < MPRPC_RPCZ_SPANS && n < max;) {
    t--;
    slot_t *e = &w->ring[t & MASK];
    uint64_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
    if (s1 != 2 * t + 2)
      continue; /* being written, dropped, or already overwritten */
    mprpc_rpcz_span_t tmp;
    memcpy(&tmp, &e->sp, sizeof tmp);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&e->seq, memory_order_relaxed) != s1)
      continue;
    tmp.peer[sizeof tmp.peer - 1] = 0;
    if (trace_id && tmp.trace_id != trace_id)
      continue;
    out[n++] = tmp;
  }
  return n;
}

/* ---- rendering -------------------------------------------------------------- */

/* Days since 1970-01-01 to a civil date (H. Hinnant's algorithm): the
 * core keeps off the C library's time functions. */
static void civil(int64_t days, int *y, unsigned *m, unsigned *d) {
  days += 719468;
  int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  unsigned doe = (unsigned)(days - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* "2026-12-03T13:20:02.123456Z" */
static void put_time(mprpc__textbuf_t *tb, uint64_t wall_ns) {
  uint64_t sec = wall_ns / 1000000000u, us = wall_ns % 1000000000u / 1000u;
  int y;
  unsigned mo, d;
  civil((int64_t)(sec / 86400), &y, &mo, &d);
  unsigned s = (unsigned)(sec % 86400);
  mprpc__textbuf_printf(tb, "%04d-%02u-%02uT%02u:%02u:%02u.%06uZ", y, mo, d, s / 3600,
                        s / 60 % 60, s % 60, (unsigned)us);
}

#define HEX(v) ((unsigned long long)(uint64_t)(v))

static void render_text(mprpc__textbuf_t *tb, const mprpc_rpcz_span_t *sp, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const mprpc_rpcz_span_t *p = &sp[i];
    put_time(tb, p->start_wall_ns);
    mprpc__textbuf_printf(tb,
                          " %s.%s peer=%s trace_id=%016llx span_id=%016llx "
                          "parent_span_id=%016llx latency_us=%" PRIu64 " error_code=%d "
                          "request_bytes=%" PRIu64 " response_bytes=%" PRIu64 "\n",
                          p->service, p->method, p->peer[0] ? p->peer : "-", HEX(p->trace_id),
                          HEX(p->span_id), HEX(p->parent_span_id), p->latency_us,
                          (int)p->error_code, p->request_bytes, p->response_bytes);
  }
}

static void html_id(mprpc__textbuf_t *tb, int64_t id, bool link) {
  if (link && id)
    mprpc__textbuf_printf(tb, "<td><a href=\"/rpcz?trace_id=%016llx\">%016llx</a></td>",
                          HEX(id), HEX(id));
  else
    mprpc__textbuf_printf(tb, "<td>%016llx</td>", HEX(id));
}

static void render_html(mprpc__textbuf_t *tb, const mprpc_rpcz_span_t *sp, size_t n) {
  mprpc__textbuf_puts(tb, "<table class=\"rpcz\">\n<tr><th>time</th><th>method</th><th>peer</th>"
                          "<th>trace_id</th><th>span_id</th><th>parent_span_id</th>"
                          "<th>latency_us</th><th>error_code</th><th>request_bytes</th>"
                          "<th>response_bytes</th></tr>\n");
  for (size_t i = 0; i < n; i++) {
    const mprpc_rpcz_span_t *p = &sp[i];
    mprpc__textbuf_puts(tb, "<tr><td>");
    put_time(tb, p->start_wall_ns);
    mprpc__textbuf_puts(tb, "</td><td>");
    mprpc__textbuf_html(tb, p->service, strlen(p->service));
    mprpc__textbuf_putc(tb, '.');
    mprpc__textbuf_html(tb, p->method, strlen(p->method));
    mprpc__textbuf_puts(tb, "</td><td>");
    mprpc__textbuf_html(tb, p->peer, strlen(p->peer));
    mprpc__textbuf_puts(tb, "</td>");
    html_id(tb, p->trace_id, true);
    html_id(tb, p->span_id, false);
    html_id(tb, p->parent_span_id, false);
    mprpc__textbuf_printf(tb,
                          "<td>%" PRIu64 "</td><td>%d</td><td>%" PRIu64 "</td><td>%" PRIu64
                          "</td></tr>\n",
                          p->latency_us, (int)p->error_code, p->request_bytes, p->response_bytes);
  }
  mprpc__textbuf_puts(tb, "</table>\n");
}

static void render_json(mprpc__textbuf_t *tb, const mprpc_rpcz_span_t *sp, size_t n) {
  mprpc__textbuf_printf(tb, "{\"capacity\":%d,\"spans\":[", MPRPC_RPCZ_SPANS);
  for (size_t i = 0; i < n; i++) {
    const mprpc_rpcz_span_t *p = &sp[i];
    mprpc__textbuf_puts(tb, i ? ",\n{\"time\":\"" : "\n{\"time\":\"");
    put_time(tb, p->start_wall_ns);
    mprpc__textbuf_printf(tb, "\",\"start_unix_us\":%" PRIu64 ",\"service\":",
                          p->start_wall_ns / 1000u);
    mprpc__textbuf_json(tb, p->service, strlen(p->service));
    mprpc__textbuf_puts(tb, ",\"method\":");
    mprpc__textbuf_json(tb, p->method, strlen(p->method));
    mprpc__textbuf_puts(tb, ",\"peer\":");
    mprpc__textbuf_json(tb, p->peer, strlen(p->peer));
    /* Ids as hex strings: JSON numbers lose 64-bit precision in browsers. */
    mprpc__textbuf_printf(tb,
                          ",\"trace_id\":\"%016llx\",\"span_id\":\"%016llx\","
                          "\"parent_span_id\":\"%016llx\",\"latency_us\":%" PRIu64
                          ",\"error_code\":%d,\"request_bytes\":%" PRIu64
                          ",\"response_bytes\":%" PRIu64 "}",
                          HEX(p->trace_id), HEX(p->span_id), HEX(p->parent_span_id),
                          p->latency_us, (int)p->error_code, p->request_bytes, p->response_bytes);
  }
  mprpc__textbuf_puts(tb, "\n]}\n");
}

void mprpc__rpcz_render(const mprpc__rpcz_t *z, mprpc__textbuf_t *out, int format,
                        uint64_t trace_id_filter) {
  mprpc_rpcz_span_t *sp = malloc(MPRPC_RPCZ_SPANS * sizeof *sp);
  if (!sp) {
    if (!out->err)
      out->err = MPRPC_ENOMEM;
    return;
  }
  size_t n = mprpc__rpcz_snapshot(z, sp, MPRPC_RPCZ_SPANS, (int64_t)trace_id_filter);
  switch (format) {
  case MPRPC__RPCZ_HTML: render_html(out, sp, n); break;
  case MPRPC__RPCZ_JSON: render_json(out, sp, n); break;
  default: render_text(out, sp, n); break;
  }
  free(sp);
}

int mprpc__rpcz_parse_id(const char *s, size_t n, uint64_t *out) {
  if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s += 2;
    n -= 2;
  }
  if (n == 0 || n > 16)
    return MPRPC_EINVAL;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    unsigned d;
    if (c >= '0' && c <= '9')
      d = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      d = (unsigned)(c - 'A' + 10);
    else
      return MPRPC_EINVAL;
    v = v << 4 | d;
  }
  *out = v;
  return 0;
}
