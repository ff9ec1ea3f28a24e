#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "support/bytes.h"
#include "mprpc/buf.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/rand.h"
#include "rpc_meta.pb-c.h"

/* ---- helpers -------------------------------------------------------------- */

/* Input placed so that its last byte is the last byte before a PROT_NONE
 * page: reading one byte too far faults. */
typedef struct guarded {
  uint8_t *map;
  size_t maplen;
  uint8_t *p;
} guarded_t;

static const uint8_t *guard_put(guarded_t *g, const void *src, size_t n) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  size_t pages = n ? (n + pg - 1) / pg : 1;
  g->maplen = (pages + 1) * pg;
  g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(g->map != MAP_FAILED);
  assert_int_equal(mprotect(g->map + pages * pg, pg, PROT_NONE), 0);
  g->p = g->map + pages * pg - n;
  if (n)
    memcpy(g->p, src, n);
  return g->p;
}

static void guard_free(guarded_t *g) { munmap(g->map, g->maplen); }

/* Encodes a frame and flattens its iovecs. */
static void encode_to(bytes_t *b, const mprpc_meta_t *m, const void *pl, size_t pn, const void *att,
                      size_t an) {
  mprpc_frame_out_t out;
  assert_int_equal(mprpc_frame_encode(&out, m, pl, pn, att, an), 0);
  size_t total = 0;
  for (int i = 0; i < out.iovcnt; i++) {
    assert_true(out.iov[i].iov_len > 0);
    bput(b, out.iov[i].iov_base, out.iov[i].iov_len);
    total += out.iov[i].iov_len;
  }
  assert_int_equal(total, out.total);
  mprpc_frame_out_free(&out);
}

static void assert_view_eq(mprpc_bytes_t a, mprpc_bytes_t b) {
  assert_int_equal(a.len, b.len);
  if (a.len)
    assert_memory_equal(a.ptr, b.ptr, a.len);
}

static void assert_meta_eq(const mprpc_meta_t *a, const mprpc_meta_t *b) {
  assert_int_equal(a->has_request, b->has_request);
  assert_int_equal(a->has_response, b->has_response);
  assert_view_eq(a->service_name, b->service_name);
  assert_view_eq(a->method_name, b->method_name);
  assert_true(a->log_id == b->log_id);
  assert_true(a->trace_id == b->trace_id);
  assert_true(a->span_id == b->span_id);
  assert_true(a->parent_span_id == b->parent_span_id);
  assert_view_eq(a->request_id, b->request_id);
  assert_int_equal(a->timeout_ms, b->timeout_ms);
  assert_int_equal(a->error_code, b->error_code);
  assert_view_eq(a->error_text, b->error_text);
  assert_int_equal(a->compress_type, b->compress_type);
  assert_true(a->correlation_id == b->correlation_id);
  assert_int_equal(a->attachment_size, b->attachment_size);
  assert_view_eq(a->auth_data, b->auth_data);
  assert_int_equal(a->content_type, b->content_type);
}

static mprpc_meta_t request_meta(const char *svc, const char *method, int64_t cid) {
  mprpc_meta_t m;
  memset(&m, 0, sizeof m);
  m.has_request = true;
  m.service_name = mprpc_bytes_str(svc);
  m.method_name = mprpc_bytes_str(method);
  m.correlation_id = cid;
  return m;
}

static mprpc_meta_t response_meta(int64_t cid, int32_t code, const char *text) {
  mprpc_meta_t m;
  memset(&m, 0, sizeof m);
  m.has_response = true;
  m.error_code = code;
  m.error_text = mprpc_bytes_str(text);
  m.correlation_id = cid;
  return m;
}

/* Encodes, places before a guard page, parses; checks every field. */
static void roundtrip(const mprpc_meta_t *m, const void *pl, size_t pn, const void *att, size_t an) {
  bytes_t b = {0};
  encode_to(&b, m, pl, pn, att, an);
  guarded_t g;
  const uint8_t *in = guard_put(&g, b.p, b.n);
  mprpc_frame_t f;
  assert_int_equal(mprpc_frame_parse(in, b.n, 0, &f), (long)b.n);
  assert_int_equal(f.frame_len, b.n);
  mprpc_meta_t want = *m;
  want.attachment_size = (int32_t)an;
  assert_meta_eq(&f.meta, &want);
  assert_int_equal(f.payload.len, pn);
  if (pn)
    assert_memory_equal(f.payload.ptr, pl, pn);
  assert_int_equal(f.attachment.len, an);
  if (an)
    assert_memory_equal(f.attachment.ptr, att, an);
  guard_free(&g);
  /* every strict prefix is "incomplete", never an error or an over-read */
  for (size_t i = 0; i < b.n; i++) {
    const uint8_t *pre = guard_put(&g, b.p, i);
    assert_int_equal(mprpc_frame_parse(pre, i, 0, &f), 0);
    guard_free(&g);
  }
  bfree(&b);
}

/* ---- round trips ------------------------------------------------------------ */

static void test_frame_request_roundtrip(void **state) {
  (void)state;
  mprpc_meta_t m = request_meta("example.EchoService", "Echo", 1);
  roundtrip(&m, "hello", 5, NULL, 0);
  roundtrip(&m, "hello", 5, "ATTACH", 6);
  roundtrip(&m, NULL, 0, NULL, 0);    /* empty payload */
  roundtrip(&m, NULL, 0, "att", 3);   /* attachment only */
  m.log_id = 77;
  m.trace_id = 1234567890123;
  m.span_id = 5;
  m.parent_span_id = 4;
  m.request_id = MPRPC_BYTES("req-1");
  m.timeout_ms = 1500;
  m.compress_type = MPRPC_COMPRESS_GZIP;
  m.auth_data = MPRPC_BYTES("secret\0token");
  roundtrip(&m, "\x00\x01\x02", 3, "\xff", 1);
}

static void test_frame_response_roundtrip(void **state) {
  (void)state;
  mprpc_meta_t m = response_meta(42, 0, NULL);
  roundtrip(&m, "ok", 2, NULL, 0);
  roundtrip(&m, NULL, 0, NULL, 0);
  m = response_meta(43, 1001, "no such service: x.Y");
  roundtrip(&m, NULL, 0, NULL, 0);
  roundtrip(&m, "p", 1, "attachment bytes", 16);
  /* a meta with neither sub-message is a valid frame (the provider decides) */
  mprpc_meta_t bare;
  memset(&bare, 0, sizeof bare);
  roundtrip(&bare, NULL, 0, NULL, 0);
}

static void test_frame_large_ids_and_negative_values(void **state) {
  (void)state;
  static const int64_t ids[] = {INT64_MIN, INT64_MIN + 1, -1, 0, 1, 127, 128, INT32_MAX,
                                (int64_t)INT32_MAX + 1, INT64_MAX - 1, INT64_MAX};
  static const int32_t i32s[] = {INT32_MIN, -1, 0, 1, 300, INT32_MAX};
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
    mprpc_meta_t m = request_meta("a.B", "c", ids[i]);
    m.log_id = ids[i];
    m.trace_id = ids[(i + 1) % 11];
    m.span_id = ids[(i + 2) % 11];
    m.parent_span_id = ids[(i + 3) % 11];
    m.timeout_ms = i32s[i % 6];
    m.compress_type = i32s[(i + 1) % 6];
    roundtrip(&m, "x", 1, NULL, 0);
    mprpc_meta_t r = response_meta(ids[i], i32s[i % 6], "t");
    roundtrip(&r, NULL, 0, "a", 1);
  }
  /* a negative int32 takes ten bytes on the wire, like protobuf */
  mprpc_meta_t m;
  memset(&m, 0, sizeof m);
  m.compress_type = -1;
  assert_int_equal(mprpc_meta_size(&m), 11);
  uint8_t out[16];
  assert_int_equal(mprpc_meta_write(&m, out), 11);
  assert_memory_equal(out, "\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
}

static void test_frame_encode_iovecs(void **state) {
  (void)state;
  mprpc_meta_t m = request_meta("s.S", "m", 9);
  const char payload[] = "payload", att[] = "att";
  mprpc_frame_out_t out;
  assert_int_equal(mprpc_frame_encode(&out, &m, payload, 7, att, 3), 0);
  assert_int_equal(out.iovcnt, 3);
  assert_ptr_equal(out.iov[0].iov_base, out.inline_head);
  assert_ptr_equal(out.iov[1].iov_base, payload); /* referenced, not copied */
  assert_ptr_equal(out.iov[2].iov_base, att);
  const uint8_t *h = out.iov[0].iov_base;
  assert_memory_equal(h, "PRPC", 4);
  uint32_t body = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
  uint32_t meta = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 | h[11];
  assert_int_equal(out.iov[0].iov_len, 12 + meta);
  assert_int_equal(body, meta + 7 + 3);
  mprpc_frame_out_free(&out);

  assert_int_equal(mprpc_frame_encode(&out, &m, NULL, 0, NULL, 0), 0);
  assert_int_equal(out.iovcnt, 1); /* empty parts are omitted */
  mprpc_frame_out_free(&out);
  assert_int_equal(mprpc_frame_encode(&out, &m, NULL, 0, att, 3), 0);
  assert_int_equal(out.iovcnt, 2);
  assert_ptr_equal(out.iov[1].iov_base, att);
  mprpc_frame_out_free(&out);

  /* a meta larger than the inline head goes to the heap */
  char big[1000];
  memset(big, 'n', sizeof big);
  m.auth_data.ptr = (const uint8_t *)big;
  m.auth_data.len = sizeof big;
  assert_int_equal(mprpc_frame_encode(&out, &m, payload, 7, NULL, 0), 0);
  assert_ptr_not_equal(out.head, out.inline_head);
  mprpc_frame_out_free(&out);
  roundtrip(&m, payload, 7, att, 3);

  /* over 4 GiB - 1 of body cannot be framed (nothing is read from the
   * pointers: the size check comes first) */
  assert_int_equal(mprpc_frame_encode(&out, &m, payload, (size_t)UINT32_MAX, NULL, 0), MPRPC_ETOOBIG);
  mprpc_frame_out_free(&out);
  assert_int_equal(mprpc_frame_encode(&out, &m, payload, 1, att, (size_t)INT32_MAX + 1), MPRPC_ETOOBIG);
  mprpc_frame_out_free(&out);
}

static void test_frame_bytes_helpers(void **state) {
  (void)state;
  mprpc_bytes_t b = mprpc_bytes_str(NULL);
  assert_null(b.ptr);
  assert_int_equal(b.len, 0);
  assert_true(mprpc_bytes_eq(b, ""));
  assert_true(mprpc_bytes_eq(b, NULL));
  b = mprpc_bytes_str("abc");
  assert_int_equal(b.len, 3);
  assert_true(mprpc_bytes_eq(b, "abc"));
  assert_false(mprpc_bytes_eq(b, "abcd"));
  assert_false(mprpc_bytes_eq(b, "abd"));
  assert_false(mprpc_bytes_eq(b, ""));
  assert_true(mprpc_bytes_eq(MPRPC_BYTES("x.Y"), "x.Y"));
}

/* ---- cross-check against protobuf-c ----------------------------------------- */

static int64_t rand_i64(mprpc_rand_t r) {
  switch (mprpc_rand_below(r, 6)) {
  case 0: return 0;
  case 1: return (int64_t)mprpc_rand_below(r, 200);
  case 2: return -(int64_t)mprpc_rand_below(r, 200) - 1;
  case 3: return mprpc_rand_below(r, 2) ? INT64_MIN : INT64_MAX;
  default: return (int64_t)mprpc_rand_u64(r);
  }
}

static int32_t rand_i32(mprpc_rand_t r) {
  switch (mprpc_rand_below(r, 6)) {
  case 0: return 0;
  case 1: return (int32_t)mprpc_rand_below(r, 200);
  case 2: return -(int32_t)mprpc_rand_below(r, 200) - 1;
  case 3: return mprpc_rand_below(r, 2) ? INT32_MIN : INT32_MAX;
  default: return (int32_t)(uint32_t)mprpc_rand_u64(r);
  }
}

/* A random NUL-free string of 0..maxlen bytes (protobuf-c strings are C
 * strings). Sometimes long enough that its length prefix takes 2 bytes. */
static char *rand_str(mprpc_rand_t r, char *buf, size_t maxlen) {
  size_t n = mprpc_rand_below(r, 4) == 0 ? mprpc_rand_below(r, maxlen + 1) : mprpc_rand_below(r, 12);
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)(1 + mprpc_rand_below(r, 255));
  buf[n] = 0;
  return buf;
}

typedef struct pcmeta {
  Mprpc__Meta__RpcMeta m;
  Mprpc__Meta__RpcRequestMeta req;
  Mprpc__Meta__RpcResponseMeta resp;
  char svc[300], method[300], reqid[300], text[300], auth[300];
} pcmeta_t;

/* Fills a protobuf-c meta and our meta with the same random content. With
 * `canonical`, has_x is set exactly when x != 0 (our writer omits zeros), so
 * both serializations must be byte-identical. */
static void rand_meta(mprpc_rand_t r, pcmeta_t *pc, mprpc_meta_t *m, bool canonical) {
  mprpc__meta__rpc_meta__init(&pc->m);
  mprpc__meta__rpc_request_meta__init(&pc->req);
  mprpc__meta__rpc_response_meta__init(&pc->resp);
  memset(m, 0, sizeof *m);
#define HAS(v) (canonical ? (v) != 0 : ((v) != 0 || mprpc_rand_below(r, 2)))
  if (mprpc_rand_below(r, 3) != 0) {
    pc->m.request = &pc->req;
    m->has_request = true;
    pc->req.service_name = rand_str(r, pc->svc, 290);
    pc->req.method_name = rand_str(r, pc->method, 40);
    m->service_name = mprpc_bytes_str(pc->svc);
    m->method_name = mprpc_bytes_str(pc->method);
    m->log_id = pc->req.log_id = rand_i64(r);
    pc->req.has_log_id = HAS(m->log_id);
    m->trace_id = pc->req.trace_id = rand_i64(r);
    pc->req.has_trace_id = HAS(m->trace_id);
    m->span_id = pc->req.span_id = rand_i64(r);
    pc->req.has_span_id = HAS(m->span_id);
    m->parent_span_id = pc->req.parent_span_id = rand_i64(r);
    pc->req.has_parent_span_id = HAS(m->parent_span_id);
    m->timeout_ms = pc->req.timeout_ms = rand_i32(r);
    pc->req.has_timeout_ms = HAS(m->timeout_ms);
    rand_str(r, pc->reqid, 20);
    m->request_id = mprpc_bytes_str(pc->reqid);
    pc->req.request_id = (pc->reqid[0] || !canonical) ? pc->reqid : NULL;
  }
  if (mprpc_rand_below(r, 3) == 0) {
    pc->m.response = &pc->resp;
    m->has_response = true;
    m->error_code = pc->resp.error_code = rand_i32(r);
    pc->resp.has_error_code = HAS(m->error_code);
    rand_str(r, pc->text, 200);
    m->error_text = mprpc_bytes_str(pc->text);
    pc->resp.error_text = (pc->text[0] || !canonical) ? pc->text : NULL;
  }
  m->compress_type = pc->m.compress_type = rand_i32(r);
  pc->m.has_compress_type = HAS(m->compress_type);
  m->content_type = pc->m.content_type = rand_i32(r);
  pc->m.has_content_type = HAS(m->content_type);
  m->correlation_id = pc->m.correlation_id = rand_i64(r);
  pc->m.has_correlation_id = HAS(m->correlation_id);
  m->attachment_size = pc->m.attachment_size = rand_i32(r);
  pc->m.has_attachment_size = HAS(m->attachment_size);
  rand_str(r, pc->auth, 290);
  m->auth_data = mprpc_bytes_str(pc->auth);
  pc->m.authentication_data.data = (uint8_t *)pc->auth;
  pc->m.authentication_data.len = strlen(pc->auth);
  pc->m.has_authentication_data = HAS(pc->m.authentication_data.len);
#undef HAS
}

static void assert_pc_view(const char *s, mprpc_bytes_t v) {
  if (!s) {
    assert_int_equal(v.len, 0);
    return;
  }
  assert_int_equal(strlen(s), v.len);
  assert_memory_equal(s, v.ptr, v.len);
}

static void test_frame_meta_matches_protobuf_c(void **state) {
  (void)state;
  mprpc_xoshiro_t x;
  mprpc_xoshiro_seed(&x, 20261121);
  mprpc_rand_t r = mprpc_rand_xoshiro(&x);
  static pcmeta_t pc;
  uint8_t ours[4096], theirs[4096];
  for (int iter = 0; iter < 3000; iter++) {
    bool canonical = iter % 2 == 0;
    mprpc_meta_t m, back;
    rand_meta(r, &pc, &m, canonical);

    /* ours -> bytes -> protobuf-c */
    size_t n = mprpc_meta_size(&m);
    assert_true(n <= sizeof ours);
    assert_int_equal(mprpc_meta_write(&m, ours), n);
    Mprpc__Meta__RpcMeta *u = mprpc__meta__rpc_meta__unpack(NULL, n, ours);
    assert_non_null(u);
    assert_int_equal(u->request != NULL, m.has_request);
    assert_int_equal(u->response != NULL, m.has_response);
    if (u->request) {
      assert_pc_view(u->request->service_name, m.service_name);
      assert_pc_view(u->request->method_name, m.method_name);
      assert_true(u->request->log_id == m.log_id);
      assert_true(u->request->trace_id == m.trace_id);
      assert_true(u->request->span_id == m.span_id);
      assert_true(u->request->parent_span_id == m.parent_span_id);
      assert_pc_view(u->request->request_id, m.request_id);
      assert_int_equal(u->request->timeout_ms, m.timeout_ms);
    }
    if (u->response) {
      assert_int_equal(u->response->error_code, m.error_code);
      assert_pc_view(u->response->error_text, m.error_text);
    }
    assert_int_equal(u->compress_type, m.compress_type);
    assert_int_equal(u->content_type, m.content_type);
    assert_true(u->correlation_id == m.correlation_id);
    assert_int_equal(u->attachment_size, m.attachment_size);
    assert_int_equal(u->authentication_data.len, m.auth_data.len);
    if (m.auth_data.len)
      assert_memory_equal(u->authentication_data.data, m.auth_data.ptr, m.auth_data.len);
    mprpc__meta__rpc_meta__free_unpacked(u, NULL);

    /* protobuf-c -> bytes -> ours */
    size_t pn = mprpc__meta__rpc_meta__get_packed_size(&pc.m);
    assert_true(pn <= sizeof theirs);
    assert_int_equal(mprpc__meta__rpc_meta__pack(&pc.m, theirs), pn);
    guarded_t g;
    const uint8_t *in = guard_put(&g, theirs, pn);
    assert_int_equal(mprpc_meta_decode(in, pn, &back), 0);
    assert_meta_eq(&back, &m);
    guard_free(&g);
    if (canonical) { /* same field order, same omissions: same bytes */
      assert_int_equal(pn, n);
      assert_memory_equal(theirs, ours, n);
    }
  }
}

/* ---- unknown and malformed fields ------------------------------------------ */

/* Appends one unknown field of the given wire type. */
static void put_unknown(bytes_t *b, uint32_t field, int wt) {
  switch (wt) {
  case 0:
    bput_tag(b, field, 0);
    bput_varint(b, UINT64_MAX);
    break;
  case 1:
    bput_tag(b, field, 1);
    bput(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    break;
  case 2: bput_lenfield(b, field, "unknown\x80\x80", 9); break;
  case 5:
    bput_tag(b, field, 5);
    bput(b, "\xff\xff\xff\xff", 4);
    break;
  case 3: /* a group holding every wire type, and a nested group */
    bput_tag(b, field, 3);
    bput_tag(b, 1, 0);
    bput_varint(b, 5);
    bput_lenfield(b, 2, "x", 1);
    bput_tag(b, 3, 5);
    bput(b, "abcd", 4);
    bput_tag(b, 4, 1);
    bput(b, "abcdefgh", 8);
    bput_tag(b, 7, 3);
    bput_tag(b, 1, 0);
    bput_varint(b, 1);
    bput_tag(b, 7, 4);
    bput_tag(b, field, 4);
    break;
  }
}

static void put_request_sub(bytes_t *b, bool with_unknown) {
  bytes_t s = {0};
  if (with_unknown)
    put_unknown(&s, 100, 3);
  bput_lenfield(&s, 1, "a.Svc", 5);
  if (with_unknown)
    put_unknown(&s, 9, 0);
  bput_lenfield(&s, 2, "Do", 2);
  bput_tag(&s, 8, 0);
  bput_varint(&s, 250);
  if (with_unknown) {
    put_unknown(&s, 536870911, 2); /* the largest field number */
    put_unknown(&s, 3, 2);         /* known number, wrong wire type */
  }
  bput_lenfield(b, 1, s.p, s.n);
  bfree(&s);
}

static void test_frame_meta_skips_unknown_fields(void **state) {
  (void)state;
  static const int wts[] = {0, 1, 2, 5, 3};
  bytes_t plain = {0};
  put_request_sub(&plain, false);
  bput_tag(&plain, 4, 0);
  bput_varint(&plain, 99);
  mprpc_meta_t want;
  assert_int_equal(mprpc_meta_decode(plain.p, plain.n, &want), 0);
  assert_true(mprpc_bytes_eq(want.service_name, "a.Svc"));
  assert_int_equal(want.timeout_ms, 250);

  static const uint32_t fields[] = {6, 8, 9, 11, 12, 13, 1000};
  for (size_t fi = 0; fi < sizeof fields / sizeof fields[0]; fi++) {
    for (size_t wi = 0; wi < sizeof wts / sizeof wts[0]; wi++) {
      bytes_t b = {0};
      put_unknown(&b, fields[fi], wts[wi]);
      put_request_sub(&b, true);
      put_unknown(&b, fields[fi], wts[wi]);
      bput_tag(&b, 4, 0);
      bput_varint(&b, 99);
      put_unknown(&b, fields[fi], wts[(wi + 1) % 5]);
      guarded_t g;
      const uint8_t *in = guard_put(&g, b.p, b.n);
      mprpc_meta_t got;
      assert_int_equal(mprpc_meta_decode(in, b.n, &got), 0);
      assert_meta_eq(&got, &want);
      /* the same through a whole frame */
      bytes_t fr = {0};
      uint8_t hdr[12] = {'P', 'R', 'P', 'C', 0, 0, 0, (uint8_t)(b.n + 2), 0, 0, 0, (uint8_t)b.n};
      assert_true(b.n + 2 < 256);
      bput(&fr, hdr, 12);
      bput(&fr, b.p, b.n);
      bput(&fr, "pl", 2);
      guard_free(&g);
      in = guard_put(&g, fr.p, fr.n);
      mprpc_frame_t f;
      assert_int_equal(mprpc_frame_parse(in, fr.n, 0, &f), (long)fr.n);
      assert_meta_eq(&f.meta, &want);
      assert_true(mprpc_bytes_eq(f.payload, "pl"));
      guard_free(&g);
      bfree(&fr);
      bfree(&b);
    }
  }
  bfree(&plain);
}

/* brpc always writes content_type (10), checksum_type (11) and
 * checksum_value (12); a brpc response meta looks like this capture. */
static void test_frame_meta_brpc_response_and_content_type(void **state) {
  (void)state;
  static const uint8_t brpc_resp[] = {0x12, 0x02, 0x08, 0x00, 0x18, 0x00, 0x20, 0x01,
                                      0x28, 0x03, 0x50, 0x00, 0x58, 0x00, 0x62, 0x00};
  guarded_t g;
  const uint8_t *in = guard_put(&g, brpc_resp, sizeof brpc_resp);
  mprpc_meta_t m;
  assert_int_equal(mprpc_meta_decode(in, sizeof brpc_resp, &m), 0);
  assert_true(m.has_response);
  assert_int_equal(m.error_code, 0);
  assert_true(m.correlation_id == 1);
  assert_int_equal(m.attachment_size, 3);
  assert_int_equal(m.content_type, 0);
  guard_free(&g);
  /* a json request (content_type 1) decodes; the provider refuses it */
  static const uint8_t json_ct[] = {0x50, 0x01};
  in = guard_put(&g, json_ct, sizeof json_ct);
  assert_int_equal(mprpc_meta_decode(in, sizeof json_ct, &m), 0);
  assert_int_equal(m.content_type, 1);
  guard_free(&g);
  /* and it round-trips through the writer */
  uint8_t out[16];
  assert_int_equal(mprpc_meta_size(&m), 2);
  assert_int_equal(mprpc_meta_write(&m, out), 2);
  assert_memory_equal(out, json_ct, 2);
}

static void test_frame_meta_last_value_wins_and_merges(void **state) {
  (void)state;
  bytes_t b = {0};
  bput_tag(&b, 4, 0);
  bput_varint(&b, 1);
  bytes_t s = {0};
  bput_lenfield(&s, 1, "x.A", 3);
  bput_lenfield(&s, 2, "m1", 2);
  bput_tag(&s, 4, 0);
  bput_varint(&s, 3);
  bput_lenfield(&b, 1, s.p, s.n);
  bfree(&s);
  /* a second request sub-message merges into the first (protobuf-c checks
   * required fields per sub-message, so it carries both names) */
  bput_lenfield(&s, 1, "x.B", 3);
  bput_lenfield(&s, 2, "m2", 2);
  bput_tag(&s, 3, 0);
  bput_varint(&s, 7);
  bput_lenfield(&b, 1, s.p, s.n);
  bput_tag(&b, 4, 0);
  bput_varint(&b, 2);
  mprpc_meta_t m;
  assert_int_equal(mprpc_meta_decode(b.p, b.n, &m), 0);
  assert_true(m.correlation_id == 2);
  assert_true(mprpc_bytes_eq(m.service_name, "x.B"));
  assert_true(mprpc_bytes_eq(m.method_name, "m2"));
  assert_true(m.log_id == 7);
  assert_true(m.trace_id == 3);
  /* protobuf-c agrees */
  Mprpc__Meta__RpcMeta *u = mprpc__meta__rpc_meta__unpack(NULL, b.n, b.p);
  assert_non_null(u);
  assert_string_equal(u->request->service_name, "x.B");
  assert_string_equal(u->request->method_name, "m2");
  assert_true(u->request->log_id == 7 && u->correlation_id == 2);
  assert_true(u->request->has_trace_id && u->request->trace_id == 3);
  mprpc__meta__rpc_meta__free_unpacked(u, NULL);
  bfree(&s);
  bfree(&b);
}

static void expect_bad_meta(const void *p, size_t n) {
  guarded_t g;
  const uint8_t *in = guard_put(&g, p, n);
  mprpc_meta_t m;
  assert_int_equal(mprpc_meta_decode(in, n, &m), MPRPC_EBADMETA);
  guard_free(&g);
}

static void test_frame_meta_rejects_invalid(void **state) {
  (void)state;
  expect_bad_meta("\x20", 1);                      /* varint value missing */
  expect_bad_meta("\x20\x80", 2);                  /* varint truncated */
  expect_bad_meta("\x20\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 12); /* 11 bytes */
  expect_bad_meta("\x0a\x05" "ab", 4);             /* length beyond the end */
  expect_bad_meta("\x0a\xff\xff\xff\xff\x0f", 6);   /* huge length */
  expect_bad_meta("\x0a", 1);                      /* length missing */
  expect_bad_meta("\x06\x01", 2);                  /* wire type 6 */
  expect_bad_meta("\x07\x01", 2);                  /* wire type 7 */
  expect_bad_meta("\x4c", 1);                      /* stray end group (field 9) */
  expect_bad_meta("\x4b\x08\x01", 3);              /* unterminated group */
  expect_bad_meta("\x4b\x54", 2);                  /* group ended by another number */
  expect_bad_meta("\x49\x01\x02\x03", 4);          /* fixed64 truncated */
  expect_bad_meta("\x4d\x01\x02\x03", 4);          /* fixed32 truncated */
  expect_bad_meta("\x80", 1);                      /* tag truncated */
  expect_bad_meta("\xf8\xff\xff\xff\xff\x01\x00", 7); /* key longer than 5 bytes */
  expect_bad_meta("\x80\x80\x80\x80\x80\x00", 6);     /* key longer than 5 bytes */
  expect_bad_meta("\x0a\x02\x08\x80", 4);          /* bad field inside request */
  expect_bad_meta("\x12\x02\x08\x80", 4);          /* bad field inside response */
  expect_bad_meta("\x0a\x01\x0c", 3);              /* stray end group inside request */
  /* groups nested past the bound */
  bytes_t b = {0};
  for (int i = 0; i < 40; i++)
    bput_tag(&b, 9, 3);
  for (int i = 0; i < 40; i++)
    bput_tag(&b, 9, 4);
  expect_bad_meta(b.p, b.n);
  bfree(&b);
  for (int i = 0; i < 20; i++) /* within the bound: fine */
    bput_tag(&b, 9, 3);
  for (int i = 0; i < 20; i++)
    bput_tag(&b, 9, 4);
  mprpc_meta_t m;
  assert_int_equal(mprpc_meta_decode(b.p, b.n, &m), 0);
  bfree(&b);
  /* field number 0 and 32-bit field numbers are skipped like any unknown
   * field (protobuf-c accepts both) */
  assert_int_equal(mprpc_meta_decode((const uint8_t *)"\x00\x01\x20\x05", 4, &m), 0);
  assert_true(m.correlation_id == 5);
  assert_int_equal(mprpc_meta_decode((const uint8_t *)"\x80\x00\x01", 3, &m), 0);
  assert_int_equal(mprpc_meta_decode((const uint8_t *)"\xf8\xff\xff\xff\x7f\x01", 6, &m), 0);
  assert_int_equal(mprpc_meta_decode((const uint8_t *)"\xa0\x80\x80\x80\x10\x07", 6, &m), 0);
  assert_true(m.correlation_id == 0); /* field 4 + 2^32 is not field 4 */

  /* every prefix of a valid meta either decodes or is EBADMETA, and never
   * reads past its end */
  mprpc_meta_t full = request_meta("pkg.Service", "Method", INT64_MIN);
  full.timeout_ms = -5;
  full.has_response = true;
  full.error_text = MPRPC_BYTES("text");
  full.auth_data = MPRPC_BYTES("auth");
  uint8_t buf[256];
  size_t n = mprpc_meta_write(&full, buf);
  for (size_t i = 0; i <= n; i++) {
    guarded_t g;
    const uint8_t *in = guard_put(&g, buf, i);
    int rc = mprpc_meta_decode(in, i, &m);
    assert_true(rc == 0 || rc == MPRPC_EBADMETA);
    if (i == n)
      assert_int_equal(rc, 0);
    guard_free(&g);
  }
  assert_int_equal(mprpc_meta_decode(buf, n - 1, &m), MPRPC_EBADMETA); /* cut inside "auth" */
}

/* ---- frame errors ----------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* A frame with a raw meta: header computed from the parts. */
static void raw_frame(bytes_t *b, const void *meta, size_t mn, size_t rest) {
  uint8_t h[12];
  memcpy(h, "PRPC", 4);
  put_be32(h + 4, (uint32_t)(mn + rest));
  put_be32(h + 8, (uint32_t)mn);
  bput(b, h, 12);
  bput(b, meta, mn);
  for (size_t i = 0; i < rest; i++)
    bput_u8(b, (uint8_t)i);
}

/* The input as a whole gives `want`; every prefix gives 0 or `want`. */
static void expect_parse(const void *p, size_t n, uint32_t max_body, long want) {
  for (size_t i = 0; i <= n; i++) {
    guarded_t g;
    const uint8_t *in = guard_put(&g, p, i);
    mprpc_frame_t f;
    long rc = mprpc_frame_parse(in, i, max_body, &f);
    if (i == n)
      assert_int_equal(rc, want);
    else
      assert_true(rc == 0 || rc == want);
    guard_free(&g);
  }
}

static void test_frame_error_bad_magic(void **state) {
  (void)state;
  bytes_t b = {0};
  mprpc_meta_t m = request_meta("a.B", "c", 1);
  encode_to(&b, &m, "x", 1, NULL, 0);
  b.p[3] = 'D'; /* PRPD */
  expect_parse(b.p, b.n, 0, MPRPC_EBADMAGIC);
  expect_parse("GET / HTTP/1.1\r\n", 16, 0, MPRPC_EBADMAGIC);
  /* detected from the first differing byte, before a header is complete */
  mprpc_frame_t f;
  assert_int_equal(mprpc_frame_parse((const uint8_t *)"G", 1, 0, &f), MPRPC_EBADMAGIC);
  assert_int_equal(mprpc_frame_parse((const uint8_t *)"PRP", 3, 0, &f), 0);
  bfree(&b);
}

static void test_frame_error_meta_size_over_body(void **state) {
  (void)state;
  uint8_t h[12];
  memcpy(h, "PRPC", 4);
  put_be32(h + 4, 10);
  put_be32(h + 8, 11);
  expect_parse(h, 12, 0, MPRPC_EBADSIZE);
  put_be32(h + 8, UINT32_MAX);
  expect_parse(h, 12, 0, MPRPC_EBADSIZE);
}

static void test_frame_error_too_big_from_header_alone(void **state) {
  (void)state;
  uint8_t h[12];
  memcpy(h, "PRPC", 4);
  put_be32(h + 4, MPRPC_FRAME_DEFAULT_MAX_BODY + 1);
  put_be32(h + 8, 0);
  /* rejected after exactly 12 bytes: no body is awaited */
  expect_parse(h, 12, 0, MPRPC_ETOOBIG);
  mprpc_frame_t f;
  assert_int_equal(mprpc_frame_parse(h, 11, 0, &f), 0);
  put_be32(h + 4, UINT32_MAX);
  expect_parse(h, 12, 0, MPRPC_ETOOBIG);
  /* a custom limit; a body exactly at the limit is fine */
  bytes_t b = {0};
  mprpc_meta_t m = response_meta(5, 0, NULL);
  encode_to(&b, &m, "0123456789", 10, NULL, 0);
  uint32_t body = (uint32_t)b.n - 12;
  expect_parse(b.p, b.n, body, (long)b.n);
  expect_parse(b.p, b.n, body - 1, MPRPC_ETOOBIG);
  assert_int_equal(mprpc_frame_parse(b.p, 12, body - 1, &f), MPRPC_ETOOBIG);
  /* the incomplete answer tells how long the frame will be */
  assert_int_equal(mprpc_frame_parse(b.p, 5, 0, &f), 0);
  assert_int_equal(f.frame_len, MPRPC_FRAME_HEADER_LEN);
  assert_int_equal(mprpc_frame_parse(b.p, 12, 0, &f), 0);
  assert_int_equal(f.frame_len, b.n);
  bfree(&b);
}

static void test_frame_error_bad_attachment(void **state) {
  (void)state;
  uint8_t meta[32];
  mprpc_meta_t m = response_meta(1, 0, NULL);
  /* attachment larger than what follows the meta */
  m.attachment_size = 5;
  size_t mn = mprpc_meta_write(&m, meta);
  bytes_t b = {0};
  raw_frame(&b, meta, mn, 4);
  expect_parse(b.p, b.n, 0, MPRPC_EBADATTACH);
  bfree(&b);
  raw_frame(&b, meta, mn, 5); /* exactly the rest: fine, empty payload */
  expect_parse(b.p, b.n, 0, (long)b.n);
  bfree(&b);
  /* negative */
  m.attachment_size = -1;
  mn = mprpc_meta_write(&m, meta);
  raw_frame(&b, meta, mn, 4);
  expect_parse(b.p, b.n, 0, MPRPC_EBADATTACH);
  bfree(&b);
  m.attachment_size = INT32_MIN;
  mn = mprpc_meta_write(&m, meta);
  raw_frame(&b, meta, mn, 0);
  expect_parse(b.p, b.n, 0, MPRPC_EBADATTACH);
  bfree(&b);
}

static void test_frame_error_bad_meta(void **state) {
  (void)state;
  bytes_t b = {0};
  raw_frame(&b, "\x0a\x05" "ab", 4, 3); /* sub-message longer than the meta */
  expect_parse(b.p, b.n, 0, MPRPC_EBADMETA);
  bfree(&b);
  /* the meta ends mid-varint even though payload bytes follow: the meta is
   * decoded only within meta_size */
  raw_frame(&b, "\x20\x80", 2, 3);
  expect_parse(b.p, b.n, 0, MPRPC_EBADMETA);
  bfree(&b);
  raw_frame(&b, "\x07", 1, 0);
  expect_parse(b.p, b.n, 0, MPRPC_EBADMETA);
  bfree(&b);
}

static void test_frame_error_request_without_names(void **state) {
  (void)state;
  uint8_t meta[64];
  bytes_t b = {0};
  mprpc_meta_t m = request_meta("", "Echo", 1);
  size_t mn = mprpc_meta_write(&m, meta);
  raw_frame(&b, meta, mn, 2);
  expect_parse(b.p, b.n, 0, MPRPC_ENONAME);
  bfree(&b);
  m = request_meta("a.B", "", 1);
  mn = mprpc_meta_write(&m, meta);
  raw_frame(&b, meta, mn, 2);
  expect_parse(b.p, b.n, 0, MPRPC_ENONAME);
  bfree(&b);
  /* fields absent altogether (brpc would not send this: they are required) */
  raw_frame(&b, "\x0a\x00\x20\x01", 4, 0);
  expect_parse(b.p, b.n, 0, MPRPC_ENONAME);
  bfree(&b);
  raw_frame(&b, "\x0a\x05\x0a\x03" "a.B", 7, 0);
  expect_parse(b.p, b.n, 0, MPRPC_ENONAME);
  bfree(&b);
}

/* ---- sticky packets ------------------------------------------------------- */

/* A record of parse results, content-addressed so that results from
 * different buffers compare with memcmp. */
static void log_view(bytes_t *log, const uint8_t *base, mprpc_bytes_t v) {
  int64_t off = v.ptr ? (int64_t)(v.ptr - base) : -1;
  bput(log, &off, sizeof off);
  bput(log, &v.len, sizeof v.len);
}

static void log_frame(bytes_t *log, const uint8_t *fr, const mprpc_frame_t *f) {
  const mprpc_meta_t *m = &f->meta;
  bput(log, &f->frame_len, sizeof f->frame_len);
  bput(log, fr, f->frame_len);
  uint8_t flags[2] = {m->has_request, m->has_response};
  bput(log, flags, 2);
  int64_t ints[] = {m->log_id, m->trace_id, m->span_id, m->parent_span_id, m->timeout_ms,
                    m->error_code, m->compress_type, m->correlation_id, m->attachment_size};
  bput(log, ints, sizeof ints);
  log_view(log, fr, m->service_name);
  log_view(log, fr, m->method_name);
  log_view(log, fr, m->request_id);
  log_view(log, fr, m->error_text);
  log_view(log, fr, m->auth_data);
  log_view(log, fr, f->payload);
  log_view(log, fr, f->attachment);
}

/* Parses what the buffer holds; returns the error that ended it, if any. */
static long drain(mprpc_rbuf_t *rb, bytes_t *log) {
  for (int guard = 0; guard < 100000; guard++) {
    mprpc_frame_t f;
    long rc = mprpc_frame_parse(mprpc_rbuf_data(rb), mprpc_rbuf_len(rb), 0, &f);
    if (rc <= 0)
      return rc;
    log_frame(log, mprpc_rbuf_data(rb), &f);
    mprpc_rbuf_consume(rb, (size_t)rc);
  }
  fail_msg("drain did not terminate");
  return 0;
}

/* Feeds the stream in the chunks given by cuts (sorted positions). */
static void feed(const uint8_t *s, size_t n, const size_t *cuts, size_t ncuts, bytes_t *log) {
  mprpc_rbuf_t rb = MPRPC_RBUF_INIT;
  size_t at = 0;
  long rc = 0;
  for (size_t i = 0; i <= ncuts && rc == 0; i++) {
    size_t to = i < ncuts ? cuts[i] : n;
    /* half the chunks go through reserve/commit, as a socket read would */
    if (i % 2) {
      assert_int_equal(mprpc_rbuf_append(&rb, s + at, to - at), 0);
    } else {
      uint8_t *w;
      assert_int_equal(mprpc_rbuf_reserve(&rb, to - at, &w), 0);
      if (to > at)
        memcpy(w, s + at, to - at);
      mprpc_rbuf_commit(&rb, to - at);
    }
    at = to;
    rc = drain(&rb, log);
  }
  int64_t tail[2] = {rc, rc == 0 ? (int64_t)mprpc_rbuf_len(&rb) : -1};
  bput(log, tail, sizeof tail);
  mprpc_rbuf_free(&rb);
}

static void build_stream(bytes_t *s, size_t big) {
  mprpc_meta_t m = request_meta("example.EchoService", "Echo", 1);
  encode_to(s, &m, "hello", 5, NULL, 0);
  m = response_meta(1, 0, NULL);
  encode_to(s, &m, "hello", 5, "att", 3);
  m = request_meta("a.B", "c", INT64_MAX);
  m.timeout_ms = -1;
  encode_to(s, &m, NULL, 0, NULL, 0);
  m = response_meta(INT64_MIN, 2001, "handler failed");
  encode_to(s, &m, NULL, 0, NULL, 0);
  uint8_t *bigp = malloc(big ? big : 1);
  assert_non_null(bigp);
  for (size_t i = 0; i < big; i++)
    bigp[i] = (uint8_t)(i * 31);
  m = request_meta("x.Y", "Big", 77);
  encode_to(s, &m, bigp, big, bigp, big / 3);
  free(bigp);
  m = request_meta("x.Y", "Last", 78);
  encode_to(s, &m, "z", 1, NULL, 0);
}

static void check_splits(const uint8_t *s, size_t n, uint64_t seed) {
  bytes_t whole = {0};
  feed(s, n, NULL, 0, &whole);
  /* every single split point */
  for (size_t cut = 0; cut <= n; cut++) {
    bytes_t log = {0};
    feed(s, n, &cut, 1, &log);
    assert_int_equal(log.n, whole.n);
    assert_memory_equal(log.p, whole.p, whole.n);
    bfree(&log);
  }
  /* random chunk sizes, including many tiny ones */
  mprpc_xoshiro_t x;
  mprpc_xoshiro_seed(&x, seed);
  mprpc_rand_t r = mprpc_rand_xoshiro(&x);
  size_t *cuts = malloc(sizeof *cuts * (n + 1));
  assert_non_null(cuts);
  for (int iter = 0; iter < 200; iter++) {
    size_t nc = 0, at = 0;
    uint64_t maxchunk = iter % 3 == 0 ? 4 : iter % 3 == 1 ? 64 : n + 1;
    while (at < n) {
      at += 1 + mprpc_rand_below(r, maxchunk);
      if (at > n)
        at = n;
      cuts[nc++] = at;
    }
    bytes_t log = {0};
    feed(s, n, cuts, nc, &log);
    assert_int_equal(log.n, whole.n);
    assert_memory_equal(log.p, whole.p, whole.n);
    bfree(&log);
  }
  free(cuts);
  bfree(&whole);
}

static void test_frame_sticky_packets_any_split(void **state) {
  (void)state;
  bytes_t s = {0};
  build_stream(&s, 5000); /* larger than the buffer's first allocation */
  check_splits(s.p, s.n, 1);
  /* one byte at a time */
  size_t *cuts = malloc(sizeof *cuts * s.n);
  assert_non_null(cuts);
  for (size_t i = 0; i < s.n; i++)
    cuts[i] = i + 1;
  bytes_t whole = {0}, log = {0};
  feed(s.p, s.n, NULL, 0, &whole);
  feed(s.p, s.n, cuts, s.n, &log);
  assert_int_equal(log.n, whole.n);
  assert_memory_equal(log.p, whole.p, whole.n);
  free(cuts);
  bfree(&whole);
  bfree(&log);
  bfree(&s);
}

static void test_frame_sticky_packets_ending_in_error(void **state) {
  (void)state;
  /* valid frames then a bad one: every split yields the same frames and
   * the same error */
  bytes_t s = {0};
  build_stream(&s, 100);
  size_t good = s.n;
  uint8_t meta[64];
  mprpc_meta_t m = response_meta(3, 0, NULL);
  m.attachment_size = 99;
  size_t mn = mprpc_meta_write(&m, meta);
  raw_frame(&s, meta, mn, 4);
  check_splits(s.p, s.n, 2);
  /* and with garbage after valid frames */
  s.n = good;
  bput(&s, "PRPX", 4);
  check_splits(s.p, s.n, 3);
  bfree(&s);
}

/* ---- the examples in docs/protocol.md ------------------------------------ */

/* The bytes of the first ``` block after `heading` in docs/protocol.md
 * (the test runs from the repository root, as `make test` does). */
static size_t doc_hex(const char *doc, const char *heading, uint8_t *out, size_t cap) {
  const char *h = strstr(doc, heading);
  if (!h)
    fail_msg("docs/protocol.md: no heading \"%s\"", heading);
  const char *b = strstr(h, "```");
  assert_non_null(b);
  b = strchr(b, '\n');
  assert_non_null(b);
  const char *e = strstr(b, "```");
  assert_non_null(e);
  size_t n = 0;
  for (const char *p = b; p + 1 < e; p++) {
    unsigned v;
    if (p[0] == ' ' || p[0] == '\n')
      continue;
    if (sscanf(p, "%2x", &v) != 1)
      fail_msg("docs/protocol.md: \"%s\": not hex at \"%.8s\"", heading, p);
    assert_true(n < cap);
    out[n++] = (uint8_t)v;
    p++;
  }
  return n;
}

static void expect_doc_example(const char *doc, const char *heading, const mprpc_meta_t *m,
                               const void *pl, size_t pn, const void *att, size_t an) {
  uint8_t want[512];
  size_t n = doc_hex(doc, heading, want, sizeof want);
  bytes_t b = {0};
  encode_to(&b, m, pl, pn, att, an);
  assert_int_equal(b.n, n);
  assert_memory_equal(b.p, want, n);
  mprpc_frame_t f;
  assert_int_equal(mprpc_frame_parse(want, n, 0, &f), (long)n);
  bfree(&b);
}

static void test_frame_protocol_doc_examples_match_encoder(void **state) {
  (void)state;
  FILE *fp = fopen("docs/protocol.md", "rb");
  if (!fp)
    fail_msg("docs/protocol.md not found: run from the repository root");
  static char doc[1 << 17];
  size_t n = fread(doc, 1, sizeof doc - 1, fp);
  fclose(fp);
  doc[n] = 0;
  mprpc_meta_t m = request_meta("example.EchoService", "Echo", 1);
  m.timeout_ms = 500;
  expect_doc_example(doc, "### Example: a request\n", &m, "\x0a\x05hello", 7, NULL, 0);
  m = response_meta(1, 0, NULL);
  expect_doc_example(doc, "### Example: the response", &m, "\x0a\x05hello", 7, NULL, 0);
  m = response_meta(2, 1002, "no method");
  expect_doc_example(doc, "### Example: an error response", &m, NULL, 0, NULL, 0);
  m = request_meta("example.EchoService", "Echo", 3);
  expect_doc_example(doc, "### Example: a request with an attachment", &m, "\x0a\x02hi", 4, "RAW",
                     3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_frame_request_roundtrip),
      cmocka_unit_test(test_frame_response_roundtrip),
      cmocka_unit_test(test_frame_large_ids_and_negative_values),
      cmocka_unit_test(test_frame_encode_iovecs),
      cmocka_unit_test(test_frame_bytes_helpers),
      cmocka_unit_test(test_frame_meta_matches_protobuf_c),
      cmocka_unit_test(test_frame_meta_skips_unknown_fields),
      cmocka_unit_test(test_frame_meta_brpc_response_and_content_type),
      cmocka_unit_test(test_frame_meta_last_value_wins_and_merges),
      cmocka_unit_test(test_frame_meta_rejects_invalid),
      cmocka_unit_test(test_frame_error_bad_magic),
      cmocka_unit_test(test_frame_error_meta_size_over_body),
      cmocka_unit_test(test_frame_error_too_big_from_header_alone),
      cmocka_unit_test(test_frame_error_bad_attachment),
      cmocka_unit_test(test_frame_error_bad_meta),
      cmocka_unit_test(test_frame_error_request_without_names),
      cmocka_unit_test(test_frame_sticky_packets_any_split),
      cmocka_unit_test(test_frame_sticky_packets_ending_in_error),
      cmocka_unit_test(test_frame_protocol_doc_examples_match_encoder),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
