/*
 * Fuzz target "frame": mprpc_frame_parse on one buffer.
 *
 * The input is treated as the bytes a connection received. Besides "no
 * crash, no over-read, no UB", it checks the parser's contract:
 *  - a parsed frame's length is its header's 12 + body_size, and every view
 *    lies inside that frame, payload and attachment back to back at its end;
 *  - a request meta always has both names, attachment_size matches;
 *  - every strict prefix of a frame is "incomplete" (0), never an error;
 *  - re-encoding the parsed frame with mprpc_frame_encode and parsing the
 *    result gives the same meta, payload and attachment (the encoder and the
 *    decoder agree on everything the decoder can produce);
 *  - the same input with a small max_body is either the same result or
 *    ETOOBIG, decided no later than the 12-byte header.
 * The whole input is also handed to mprpc_meta_decode, with the same
 * write-then-read round trip when it decodes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "support/check.h"

static void check_view_in(mprpc_bytes_t v, const uint8_t *lo, const uint8_t *hi) {
  if (v.len == 0)
    return;
  FUZZ_CHECK(v.ptr >= lo && v.ptr <= hi && v.len <= (size_t)(hi - v.ptr));
}

static bool view_eq(mprpc_bytes_t a, mprpc_bytes_t b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool meta_eq(const mprpc_meta_t *a, const mprpc_meta_t *b) {
  return a->has_request == b->has_request && a->has_response == b->has_response &&
         view_eq(a->service_name, b->service_name) && view_eq(a->method_name, b->method_name) &&
         a->log_id == b->log_id && a->trace_id == b->trace_id && a->span_id == b->span_id &&
         a->parent_span_id == b->parent_span_id && view_eq(a->request_id, b->request_id) &&
         a->timeout_ms == b->timeout_ms && a->error_code == b->error_code &&
         view_eq(a->error_text, b->error_text) && a->compress_type == b->compress_type &&
         a->correlation_id == b->correlation_id && a->attachment_size == b->attachment_size &&
         view_eq(a->auth_data, b->auth_data);
}

/* Encodes f's content again, parses it, compares. */
static void check_reencode(const mprpc_frame_t *f) {
  mprpc_frame_out_t out;
  int rc = mprpc_frame_encode(&out, &f->meta, f->payload.ptr, f->payload.len, f->attachment.ptr,
                              f->attachment.len);
  FUZZ_CHECK(rc == 0);
  uint8_t *flat = malloc(out.total);
  FUZZ_CHECK(flat != NULL);
  size_t at = 0;
  for (int i = 0; i < out.iovcnt; i++) {
    FUZZ_CHECK(out.iov[i].iov_len > 0);
    memcpy(flat + at, out.iov[i].iov_base, out.iov[i].iov_len);
    at += out.iov[i].iov_len;
  }
  FUZZ_CHECK(at == out.total);
  mprpc_frame_t g;
  long n = mprpc_frame_parse(flat, at, UINT32_MAX, &g);
  FUZZ_CHECK(n == (long)at);
  FUZZ_CHECK(meta_eq(&g.meta, &f->meta));
  FUZZ_CHECK(view_eq(g.payload, f->payload));
  FUZZ_CHECK(view_eq(g.attachment, f->attachment));
  free(flat);
  mprpc_frame_out_free(&out);
}

static void check_frame(const uint8_t *fr, long n, const mprpc_frame_t *f) {
  FUZZ_CHECK(n >= MPRPC_FRAME_HEADER_LEN && (size_t)n == f->frame_len);
  uint32_t body = (uint32_t)fr[4] << 24 | (uint32_t)fr[5] << 16 | (uint32_t)fr[6] << 8 | fr[7];
  FUZZ_CHECK((size_t)n == MPRPC_FRAME_HEADER_LEN + (size_t)body);
  const uint8_t *end = fr + n;
  const mprpc_meta_t *m = &f->meta;
  check_view_in(m->service_name, fr, end);
  check_view_in(m->method_name, fr, end);
  check_view_in(m->request_id, fr, end);
  check_view_in(m->error_text, fr, end);
  check_view_in(m->auth_data, fr, end);
  FUZZ_CHECK(f->payload.ptr >= fr + MPRPC_FRAME_HEADER_LEN);
  FUZZ_CHECK(f->payload.ptr + f->payload.len == f->attachment.ptr);
  FUZZ_CHECK(f->attachment.ptr + f->attachment.len == end);
  FUZZ_CHECK(m->attachment_size >= 0 && (size_t)m->attachment_size == f->attachment.len);
  if (m->has_request)
    FUZZ_CHECK(m->service_name.len > 0 && m->method_name.len > 0);
  /* prefixes: incomplete, never an error (a few, to stay fast) */
  mprpc_frame_t p;
  size_t cuts[] = {0, 3, 11, 12, (size_t)n / 2, (size_t)n - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
    if (cuts[i] < (size_t)n)
      FUZZ_CHECK(mprpc_frame_parse(fr, cuts[i], 0, &p) == 0);
  check_reencode(f);
}

static void check_meta(const uint8_t *data, size_t size) {
  mprpc_meta_t m, back;
  if (mprpc_meta_decode(data, size, &m) != 0)
    return;
  size_t n = mprpc_meta_size(&m);
  uint8_t *w = malloc(n ? n : 1);
  FUZZ_CHECK(w != NULL);
  FUZZ_CHECK(mprpc_meta_write(&m, w) == n);
  FUZZ_CHECK(mprpc_meta_decode(w, n, &back) == 0);
  FUZZ_CHECK(meta_eq(&back, &m));
  free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An exact-size copy: ASan then catches any read past the input. */
  uint8_t *buf = malloc(size ? size : 1);
  FUZZ_CHECK(buf != NULL);
  if (size)
    memcpy(buf, data, size);

  size_t off = 0;
  long last = 0;
  for (int guard = 0; guard < 100000 && off <= size; guard++) {
    mprpc_frame_t f;
    long n = mprpc_frame_parse(buf + off, size - off, 0, &f);
    /* a smaller limit gives the same answer, or ETOOBIG once the header is
     * there */
    mprpc_frame_t s;
    long ns = mprpc_frame_parse(buf + off, size - off, 64, &s);
    FUZZ_CHECK(ns == n || (ns == MPRPC_ETOOBIG && size - off >= MPRPC_FRAME_HEADER_LEN));
    if (n == 0)
      FUZZ_CHECK(f.frame_len >= MPRPC_FRAME_HEADER_LEN && f.frame_len > size - off);
    last = n;
    if (n <= 0)
      break;
    check_frame(buf + off, n, &f);
    off += (size_t)n;
  }
  FUZZ_CHECK(last <= 0);
  FUZZ_CHECK(last == 0 || last == MPRPC_EBADMAGIC || last == MPRPC_EBADSIZE ||
             last == MPRPC_ETOOBIG || last == MPRPC_EBADATTACH || last == MPRPC_EBADMETA ||
             last == MPRPC_ENONAME);

  check_meta(buf, size);
  free(buf);
  return 0;
}
