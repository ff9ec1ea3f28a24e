/*
 * Fuzz target "http": the console's request parser (src/core/http.c) fed a
 * connection's bytes in input-chosen pieces must give exactly what feeding
 * the whole stream at once gives, and every request it hands out must be
 * self-contained and within the limits.
 *
 * Input layout:
 *   byte 0       bits 0-3: k, the number of chunk-size bytes that follow
 *                bit 4:    small limits (head 256, body 64, 4 header fields)
 *                bit 5:    chunk sizes count in units of 16 bytes
 *   bytes 1..k   chunk sizes (0 means 1), used cyclically
 *   the rest     the byte stream
 * With k == 0 the stream is fed one byte at a time. FUZZ_VERBOSE=1 prints
 * what the one-shot run saw.
 *
 * Checked for every request: *consumed never exceeds what was passed; the
 * strings and body lie in the connection's storage (mprpc__http_req_in_storage),
 * NUL-terminated, not in the caller's bytes (each piece is overwritten and
 * freed once fed, so a dangling view would read garbage and differ from
 * the one-shot run); header count, head and body sizes within the limits;
 * every header is found again by name; query lookup, negotiation and the
 * response writer accept it. On failure: a documented code with the status
 * that goes with it and a reason, the same code again on the next feed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/http.h"
#include "core/sniff.h"
#include "core/textbuf.h"
#include "mprpc/errors.h"
#include "support/check.h"

static void put_str(mprpc__textbuf_t *log, mprpc__http_str_t s) {
  FUZZ_CHECK(s.ptr != NULL && s.ptr[s.len] == '\0');
  mprpc__textbuf_printf(log, "%zu:", s.len);
  mprpc__textbuf_append(log, s.ptr, s.len);
}

static void check_and_log(const mprpc__http_conn_t *hc, const mprpc__http_limits_t *lim,
                          const uint8_t *piece, size_t piece_len, mprpc__textbuf_t *log) {
  const mprpc__http_req_t *r = mprpc__http_request(hc);
  FUZZ_CHECK(r != NULL);
  FUZZ_CHECK(mprpc__http_req_in_storage(hc));
  FUZZ_CHECK(r->nheaders <= lim->max_headers);
  FUZZ_CHECK(r->body_len <= lim->max_body);
  FUZZ_CHECK(r->version_major == 1 && r->version_minor <= 1);
  FUZZ_CHECK(r->method_name != NULL && r->path.len >= 1);
  size_t stored = r->path.len + r->query.len;
  for (size_t i = 0; i < r->nheaders; i++) {
    stored += r->headers[i].name.len + r->headers[i].value.len;
    /* the first header of that name, so it may be an earlier one */
    FUZZ_CHECK(mprpc__http_header(r, r->headers[i].name.ptr) != NULL ||
               memchr(r->headers[i].name.ptr, '\0', r->headers[i].name.len) != NULL);
  }
  FUZZ_CHECK(stored <= lim->max_head);
  uintptr_t lo = (uintptr_t)piece, hi = lo + piece_len;
  FUZZ_CHECK(!((uintptr_t)r->path.ptr >= lo && (uintptr_t)r->path.ptr < hi));
  FUZZ_CHECK(!(r->body && (uintptr_t)r->body >= lo && (uintptr_t)r->body < hi));

  char v[16];
  size_t vn;
  int q = mprpc__http_query_param(r, "format", v, sizeof v, &vn);
  FUZZ_CHECK(q == 0 || q == MPRPC_ENOTFOUND || q == MPRPC_ERANGE);
  FUZZ_CHECK(q != 0 || strlen(v) <= vn);
  mprpc__http_format_t f = mprpc__http_negotiate(r);
  mprpc__textbuf_t out = MPRPC__TEXTBUF_INIT;
  int wr = mprpc__http_write_response(&out, &(mprpc__http_resp_t){
                                                .status = 200,
                                                .content_type = mprpc__http_format_content_type(f),
                                                .body = r->body,
                                                .body_len = r->body_len,
                                                .keep_alive = r->keep_alive,
                                                .head = r->method == MPRPC__HTTP_HEAD,
                                            });
  FUZZ_CHECK(wr == 0);
  mprpc__textbuf_json(&out, r->path.ptr, r->path.len);
  mprpc__textbuf_free(&out);

  mprpc__textbuf_printf(log, "REQ %d %s ", r->method, r->method_name);
  put_str(log, r->path);
  put_str(log, r->query);
  mprpc__textbuf_printf(log, " %d.%d k%d c%d f%d h%zu\n", r->version_major, r->version_minor,
                        r->keep_alive, r->chunked, f, r->nheaders);
  for (size_t i = 0; i < r->nheaders; i++) {
    put_str(log, r->headers[i].name);
    put_str(log, r->headers[i].value);
  }
  mprpc__textbuf_printf(log, "B%zu:", r->body_len);
  mprpc__textbuf_append(log, r->body, r->body_len);
}

static void log_error(const mprpc__http_conn_t *hc, int rc, mprpc__textbuf_t *log) {
  int st = mprpc__http_error_status(hc);
  switch (rc) {
  case MPRPC_EHTTP:
    FUZZ_CHECK(st == 400);
    break;
  case MPRPC_ETOOBIG:
    FUZZ_CHECK(st == 413 || st == 431);
    break;
  case MPRPC_ENOMEM:
    FUZZ_CHECK(st == 500);
    break;
  case MPRPC_ECLOSED:
    FUZZ_CHECK(st == 0);
    break;
  default:
    FUZZ_CHECK(!"unexpected feed result");
  }
  FUZZ_CHECK(rc == MPRPC_ECLOSED || hc->reason[0] != '\0');
  if (st) {
    mprpc__textbuf_t out = MPRPC__TEXTBUF_INIT;
    FUZZ_CHECK(mprpc__http_write_error(&out, hc) == 0);
    mprpc__textbuf_free(&out);
  }
  mprpc__textbuf_printf(log, "ERR %d %d %s\n", rc, st, hc->reason);
}

/* Feeds one piece (an exact-size copy, wiped and freed afterwards).
 * Returns false once the connection is finished. */
static bool feed_piece(mprpc__http_conn_t *hc, const mprpc__http_limits_t *lim, const uint8_t *src,
                       size_t n, mprpc__textbuf_t *log) {
  uint8_t *buf = malloc(n ? n : 1);
  FUZZ_CHECK(buf != NULL);
  memcpy(buf, src, n);
  const uint8_t *p = buf;
  size_t len = n;
  bool more = true;
  while (len > 0) {
    size_t used = (size_t)-1;
    int rc = mprpc__http_feed(hc, p, len, &used);
    FUZZ_CHECK(used <= len);
    if (rc == MPRPC__HTTP_REQUEST) {
      check_and_log(hc, lim, buf, n, log);
      p += used, len -= used;
      mprpc__http_next(hc);
      FUZZ_CHECK(mprpc__http_request(hc) == NULL);
      continue;
    }
    if (rc < 0) {
      log_error(hc, rc, log);
      size_t again;
      FUZZ_CHECK(mprpc__http_feed(hc, p + used, len - used, &again) == rc && again == 0);
      more = false;
      break;
    }
    FUZZ_CHECK(rc == 0 && used == len);
    break;
  }
  memset(buf, 0xA5, n);
  free(buf);
  return more;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  unsigned flags = data[0];
  size_t k = flags & 15;
  if (size < 1 + k)
    return 0;
  const uint8_t *sizes = data + 1;
  const uint8_t *s = data + 1 + k;
  size_t n = size - 1 - k;
  size_t unit = (flags & 0x20) ? 16 : 1;
  mprpc__http_limits_t lim = {0};
  if (flags & 0x10)
    lim = (mprpc__http_limits_t){.max_head = 256, .max_body = 64, .max_headers = 4};

  mprpc__proto_t proto = mprpc__sniff(s, n);
  FUZZ_CHECK(n < MPRPC__SNIFF_MAX || proto != MPRPC__PROTO_NEED_MORE);

  mprpc__textbuf_t a = MPRPC__TEXTBUF_INIT, b = MPRPC__TEXTBUF_INIT;
  mprpc__http_conn_t hc;
  FUZZ_CHECK(mprpc__http_conn_init(&hc, &lim) == 0);
  mprpc__http_limits_t eff = {lim.max_head ? lim.max_head : MPRPC__HTTP_DEFAULT_MAX_HEAD,
                              lim.max_body ? lim.max_body : MPRPC__HTTP_DEFAULT_MAX_BODY,
                              lim.max_headers ? lim.max_headers : MPRPC__HTTP_DEFAULT_MAX_HEADERS};
  if (n)
    feed_piece(&hc, &eff, s, n, &a);
  mprpc__http_conn_free(&hc);

  FUZZ_CHECK(mprpc__http_conn_init(&hc, &lim) == 0);
  size_t at = 0, ci = 0;
  while (at < n) {
    size_t chunk = k ? sizes[ci++ % k] * unit : 1;
    if (chunk == 0)
      chunk = 1;
    if (chunk > n - at)
      chunk = n - at;
    bool more = feed_piece(&hc, &eff, s + at, chunk, &b);
    at += chunk;
    if (!more)
      break;
  }
  mprpc__http_conn_free(&hc);

  if (getenv("FUZZ_VERBOSE"))
    fprintf(stderr, "%s", mprpc__textbuf_cstr(&a));
  FUZZ_CHECK(a.err == 0 && b.err == 0);
  FUZZ_CHECK(a.len == b.len);
  FUZZ_CHECK(a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
  mprpc__textbuf_free(&a);
  mprpc__textbuf_free(&b);
  return 0;
}
