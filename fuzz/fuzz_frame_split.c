/*
 * Fuzz target "frame_split": the same stream parsed in one piece and fed in
 * chunks through an mprpc_rbuf_t must give exactly the same frames and end
 * the same way (the same error code, or the same number of bytes left over
 * waiting for more).
 *
 * Input layout (so the fuzzer controls the split):
 *   byte 0       bits 0-3: k, the number of chunk-size bytes that follow
 *                bit 4:    feed through reserve/commit instead of append
 *                bit 7:    max_body = 64 instead of the default
 *   bytes 1..k   chunk sizes (0 means 1), used cyclically
 *   the rest     the byte stream
 * With k == 0 the stream is fed one byte at a time.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/buf.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "support/check.h"

/* Parse results, recorded position-independently so that results from
 * different buffers compare with memcmp. */
typedef struct rlog {
  uint8_t *p;
  size_t n, cap;
} rlog_t;

static void put(rlog_t *l, const void *p, size_t n) {
  if (l->n + n > l->cap) {
    size_t cap = l->cap ? l->cap : 1024;
    while (cap < l->n + n)
      cap *= 2;
    l->p = realloc(l->p, cap);
    FUZZ_CHECK(l->p != NULL);
    l->cap = cap;
  }
  memcpy(l->p + l->n, p, n);
  l->n += n;
}

static void put_view(rlog_t *l, const uint8_t *base, mprpc_bytes_t v) {
  int64_t rec[2] = {v.ptr ? (int64_t)(v.ptr - base) : -1, (int64_t)v.len};
  put(l, rec, sizeof rec);
}

static void put_frame(rlog_t *l, const uint8_t *fr, const mprpc_frame_t *f) {
  const mprpc_meta_t *m = &f->meta;
  put(l, &f->frame_len, sizeof f->frame_len);
  put(l, fr, f->frame_len);
  int64_t ints[] = {m->has_request,  m->has_response,  m->log_id,      m->trace_id,
                    m->span_id,      m->parent_span_id, m->timeout_ms, m->error_code,
                    m->compress_type, m->correlation_id, m->attachment_size};
  put(l, ints, sizeof ints);
  put_view(l, fr, m->service_name);
  put_view(l, fr, m->method_name);
  put_view(l, fr, m->request_id);
  put_view(l, fr, m->error_text);
  put_view(l, fr, m->auth_data);
  put_view(l, fr, f->payload);
  put_view(l, fr, f->attachment);
}

static void put_end(rlog_t *l, long rc, size_t left) {
  int64_t rec[2] = {rc, rc == 0 ? (int64_t)left : -1};
  put(l, rec, sizeof rec);
}

/* Parses everything complete at the front of rb; returns 0 or the error. */
static long drain(mprpc_rbuf_t *rb, uint32_t max_body, rlog_t *l) {
  for (;;) {
    mprpc_frame_t f;
    long rc = mprpc_frame_parse(mprpc_rbuf_data(rb), mprpc_rbuf_len(rb), max_body, &f);
    if (rc <= 0)
      return rc;
    put_frame(l, mprpc_rbuf_data(rb), &f);
    mprpc_rbuf_consume(rb, (size_t)rc);
  }
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
  uint32_t max_body = (flags & 0x80) ? 64 : 0;
  bool reserve = (flags & 0x10) != 0;

  /* one shot, from an exact-size copy */
  uint8_t *whole = malloc(n ? n : 1);
  FUZZ_CHECK(whole != NULL);
  if (n)
    memcpy(whole, s, n);
  rlog_t a = {0}, b = {0};
  size_t off = 0;
  long rc;
  for (;;) {
    mprpc_frame_t f;
    rc = mprpc_frame_parse(whole + off, n - off, max_body, &f);
    if (rc <= 0)
      break;
    put_frame(&a, whole + off, &f);
    off += (size_t)rc;
  }
  put_end(&a, rc, n - off);
  free(whole);

  /* in chunks */
  mprpc_rbuf_t rb = MPRPC_RBUF_INIT;
  size_t at = 0, ci = 0;
  rc = 0;
  while (at < n && rc == 0) {
    size_t chunk = k ? sizes[ci++ % k] : 1;
    if (chunk == 0)
      chunk = 1;
    if (chunk > n - at)
      chunk = n - at;
    if (reserve) {
      uint8_t *w;
      FUZZ_CHECK(mprpc_rbuf_reserve(&rb, chunk, &w) == 0);
      memcpy(w, s + at, chunk);
      mprpc_rbuf_commit(&rb, chunk);
    } else {
      FUZZ_CHECK(mprpc_rbuf_append(&rb, s + at, chunk) == 0);
    }
    at += chunk;
    rc = drain(&rb, max_body, &b);
    if (ci % 7 == 0)
      mprpc_rbuf_shrink(&rb, 64); /* exercise shrinking mid-stream */
  }
  if (n == 0)
    rc = drain(&rb, max_body, &b);
  put_end(&b, rc, mprpc_rbuf_len(&rb));
  mprpc_rbuf_free(&rb);

  FUZZ_CHECK(a.n == b.n);
  FUZZ_CHECK(memcmp(a.p, b.p, a.n) == 0);
  free(a.p);
  free(b.p);
  return 0;
}
