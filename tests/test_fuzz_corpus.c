/*
 * The seed corpora of the frame, frame_split, meta, client_conn and
 * compress fuzz targets are generated here, from the encoder, from
 * hand-assembled protobuf and from the compressors, so no binary in
 * fuzz/corpus/ is made by hand. Each frame/meta/compress seed states what it
 * is meant to be (a valid stream of N frames, or a stream ending in error E;
 * a compressed stream that decompresses to given bytes, or fails with E
 * under its limit) and the test checks the parser / mprpc__decompress
 * agrees, so a seed cannot silently rot. client_conn seeds are inputs in the
 * layout fuzz/fuzz_client_conn.c describes; that harness checks its own
 * outcomes when `make test` replays them.
 *
 * The compress seeds are made with the zlib and snappy that the build links
 * (ci/install-deps.sh's Debian packages): another deflate implementation
 * (zlib-ng, say) may produce other bytes for the same input, and this test
 * then asks for a regeneration.
 *
 * The test compares fuzz/corpus/ (relative to the repository root, where
 * `make test` runs) with what it generates. To (re)write the files:
 *   MPRPC_REGEN_CORPUS=1 ./build/asan/tests/test_fuzz_corpus
 * Other files in the corpus directories (inputs found by fuzzing, crash
 * regressions) are left alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <zlib.h>

#include "core/compress.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "support/bytes.h"

static void encode(bytes_t *b, const mprpc_meta_t *m, const void *pl, size_t pn, const void *att,
                   size_t an) {
  mprpc_frame_out_t out;
  assert_int_equal(mprpc_frame_encode(&out, m, pl, pn, att, an), 0);
  for (int i = 0; i < out.iovcnt; i++)
    bput(b, out.iov[i].iov_base, out.iov[i].iov_len);
  mprpc_frame_out_free(&out);
}

/* A frame around a raw meta and `rest` bytes of payload/attachment. */
static void raw_frame(bytes_t *b, const bytes_t *meta, size_t rest) {
  bput(b, "PRPC", 4);
  bput_be32(b, (uint32_t)(meta->n + rest));
  bput_be32(b, (uint32_t)meta->n);
  bput(b, meta->p, meta->n);
  for (size_t i = 0; i < rest; i++)
    bput_u8(b, (uint8_t)('a' + i % 26));
}

static mprpc_meta_t req(const char *svc, const char *method, int64_t cid) {
  mprpc_meta_t m;
  memset(&m, 0, sizeof m);
  m.has_request = true;
  m.service_name = mprpc_bytes_str(svc);
  m.method_name = mprpc_bytes_str(method);
  m.correlation_id = cid;
  return m;
}

static mprpc_meta_t resp(int64_t cid, int32_t code, const char *text) {
  mprpc_meta_t m;
  memset(&m, 0, sizeof m);
  m.has_response = true;
  m.correlation_id = cid;
  m.error_code = code;
  m.error_text = mprpc_bytes_str(text);
  return m;
}

/* ---- writing / checking the files ------------------------------------------ */

static int regen(void) {
  const char *e = getenv("MPRPC_REGEN_CORPUS");
  return e && *e && strcmp(e, "0") != 0;
}

static void seed(const char *target, const char *name, const bytes_t *b) {
  char path[512];
  snprintf(path, sizeof path, "fuzz/corpus/%s/%s", target, name);
  if (regen()) {
    char dir[512];
    snprintf(dir, sizeof dir, "fuzz/corpus/%s", target);
    mkdir("fuzz", 0777);
    mkdir("fuzz/corpus", 0777);
    mkdir(dir, 0777);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (b->n)
      assert_int_equal(fwrite(b->p, 1, b->n, f), b->n);
    assert_int_equal(fclose(f), 0);
    return;
  }
  FILE *f = fopen(path, "rb");
  if (!f)
    fail_msg("%s is missing: run MPRPC_REGEN_CORPUS=1 %s from the repository root", path,
             "build/asan/tests/test_fuzz_corpus");
  uint8_t *got = malloc(b->n + 1);
  assert_non_null(got);
  size_t n = fread(got, 1, b->n + 1, f);
  fclose(f);
  if (n != b->n || (n && memcmp(got, b->p, n) != 0))
    fail_msg("%s differs from the generator: regenerate it (MPRPC_REGEN_CORPUS=1)", path);
  free(got);
}

/* Parses a whole stream; returns the number of frames and sets *end to the
 * result that stopped it (0 = clean end or incomplete tail). */
static int parse_all(const bytes_t *b, long *end, size_t *left) {
  size_t off = 0;
  int frames = 0;
  const uint8_t *p = b->p ? b->p : (const uint8_t *)""; /* no NULL + 0 */
  for (;;) {
    mprpc_frame_t f;
    long rc = mprpc_frame_parse(p + off, b->n - off, 0, &f);
    if (rc <= 0) {
      *end = rc;
      *left = b->n - off;
      return frames;
    }
    frames++;
    off += (size_t)rc;
  }
}

/* A frame-target seed and what parsing it must give. */
static void frame_seed(const char *name, bytes_t *b, int frames, long end) {
  long got_end;
  size_t left;
  int got = parse_all(b, &got_end, &left);
  if (got != frames || got_end != end)
    fail_msg("seed %s: %d frames, end %ld (%s); expected %d, %ld (%s)", name, got, got_end,
             mprpc_err_name((int)got_end), frames, end, mprpc_err_name((int)end));
  seed("frame", name, b);
  /* frame_split: the same stream behind a split header; the pattern is
   * chosen by the name so every seed gets a different one */
  static const uint8_t patterns[][5] = {
      {0x00},                   /* byte at a time */
      {0x03, 1, 5, 17},         /* k = 3 */
      {0x12, 7, 200},           /* reserve/commit, k = 2 */
      {0x81, 13},               /* max_body 64, k = 1 */
      {0x04, 12, 1, 0, 255},    /* header-sized, then tiny, then large */
  };
  static const size_t plen[] = {1, 4, 3, 2, 5};
  size_t h = 0;
  for (const char *c = name; *c; c++)
    h = h * 31 + (unsigned char)*c;
  size_t pi = h % 5;
  bytes_t s = {0};
  bput(&s, patterns[pi], plen[pi]);
  bput(&s, b->p, b->n);
  char sname[256];
  snprintf(sname, sizeof sname, "%s.split%zu", name, pi);
  seed("frame_split", sname, &s);
  bfree(&s);
  bfree(b);
}

static void meta_seed(const char *name, bytes_t *b, int want) {
  mprpc_meta_t m;
  int rc = mprpc_meta_decode(b->p, b->n, &m);
  if (rc != want)
    fail_msg("meta seed %s: %s, expected %s", name, mprpc_err_name(rc), mprpc_err_name(want));
  seed("meta", name, b);
  bfree(b);
}

/* Every unknown wire type: fields 6, 8-13 as brpc has them, plus a group. */
static void put_unknowns(bytes_t *b) {
  bput_tag(b, 6, 2); /* brpc: chunk_info */
  bput_varint(b, 4);
  bput(b, "\x08\x01\x10\x02", 4);
  bput_tag(b, 8, 0); /* stream_settings as a varint */
  bput_varint(b, 123456789);
  bput_tag(b, 9, 5);
  bput(b, "\x01\x02\x03\x04", 4);
  bput_tag(b, 10, 1);
  bput(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
  bput_lenfield(b, 11, "user_fields", 11);
  bput_tag(b, 12, 3); /* a group with a nested group */
  bput_tag(b, 1, 0);
  bput_varint(b, 1);
  bput_tag(b, 2, 3);
  bput_lenfield(b, 1, "x", 1);
  bput_tag(b, 2, 4);
  bput_tag(b, 12, 4);
  bput_tag(b, 13, 0);
  bput_varint(b, UINT64_MAX);
}

static void gen_frames(void) {
  bytes_t b = {0}, m = {0};
  mprpc_meta_t x;

  x = req("example.EchoService", "Echo", 1);
  x.timeout_ms = 500;
  encode(&b, &x, "\x0a\x05hello", 7, NULL, 0);
  frame_seed("valid_request_echo", &b, 1, 0);

  x = req("example.EchoService", "Echo", INT64_MAX);
  x.log_id = INT64_MIN;
  x.trace_id = 1;
  x.span_id = 2;
  x.parent_span_id = -1;
  x.request_id = MPRPC_BYTES("req-42");
  x.timeout_ms = -1;
  x.compress_type = MPRPC_COMPRESS_NONE;
  x.auth_data = MPRPC_BYTES("token");
  encode(&b, &x, "\x0a\x02hi", 4, "ATTACHMENT", 10);
  frame_seed("valid_request_all_fields", &b, 1, 0);

  x = resp(1, 0, NULL);
  encode(&b, &x, "\x0a\x05hello", 7, NULL, 0);
  frame_seed("valid_response_ok", &b, 1, 0);

  x = resp(2, 1002, "no method");
  encode(&b, &x, NULL, 0, NULL, 0);
  frame_seed("valid_response_error", &b, 1, 0);

  x = resp(3, 0, NULL);
  encode(&b, &x, NULL, 0, "only-attachment", 15);
  frame_seed("valid_response_attachment_only", &b, 1, 0);

  x = req("a.B", "c", 0);
  encode(&b, &x, NULL, 0, NULL, 0);
  frame_seed("valid_empty_payload", &b, 1, 0);

  bput(&b, "PRPC\0\0\0\0\0\0\0\0", 12); /* no meta at all: a valid frame */
  frame_seed("valid_empty_body", &b, 1, 0);

  x = req("example.EchoService", "Echo", 9);
  char big[300];
  memset(big, 'k', sizeof big);
  x.auth_data.ptr = (const uint8_t *)big;
  x.auth_data.len = sizeof big;
  encode(&b, &x, "p", 1, NULL, 0);
  frame_seed("valid_meta_over_256", &b, 1, 0);

  put_unknowns(&m);
  bput_lenfield(&m, 1, "\x0a\x03" "a.B" "\x12\x01" "c", 8);
  put_unknowns(&m);
  bput_tag(&m, 4, 0);
  bput_varint(&m, 7);
  raw_frame(&b, &m, 3);
  bfree(&m);
  frame_seed("valid_unknown_fields", &b, 1, 0);

  /* sticky streams */
  x = req("example.EchoService", "Echo", 1);
  encode(&b, &x, "\x0a\x01" "a", 3, NULL, 0);
  x = resp(1, 0, NULL);
  encode(&b, &x, "\x0a\x01" "a", 3, "att", 3);
  x = req("example.EchoService", "Echo", 2);
  encode(&b, &x, NULL, 0, NULL, 0);
  frame_seed("sticky_3_frames", &b, 3, 0);

  for (int i = 0; i < 6; i++) {
    x = i % 2 ? resp(i, i == 3 ? 1008 : 0, i == 3 ? "timed out" : NULL)
              : req("example.EchoService", "Echo", i);
    encode(&b, &x, "\x0a\x03xyz", 5, i == 4 ? "A" : NULL, i == 4 ? 1 : 0);
  }
  frame_seed("sticky_6_frames", &b, 6, 0);

  x = req("example.EchoService", "Echo", 1);
  encode(&b, &x, "\x0a\x01" "a", 3, NULL, 0);
  encode(&b, &x, "\x0a\x01" "a", 3, NULL, 0);
  size_t cut = b.n;
  encode(&b, &x, "\x0a\x01" "a", 3, NULL, 0);
  b.n = cut + 20; /* the third frame cut short */
  frame_seed("sticky_partial_tail", &b, 2, 0);

  x = req("example.EchoService", "Echo", 1);
  encode(&b, &x, "\x0a\x01" "a", 3, NULL, 0);
  bput(&b, "GET / HTTP/1.1\r\n\r\n", 18);
  frame_seed("sticky_then_garbage", &b, 1, MPRPC_EBADMAGIC);

  x = req("example.EchoService", "Echo", 1);
  encode(&b, &x, "\x0a\x01" "a", 3, NULL, 0);
  bput_tag(&m, 5, 0);
  bput_varint(&m, 50);
  raw_frame(&b, &m, 4);
  bfree(&m);
  frame_seed("sticky_then_bad_attachment", &b, 1, MPRPC_EBADATTACH);

  /* edges */
  x = resp(1, 0, NULL);
  encode(&b, &x, "0123456789", 10, NULL, 0);
  b.n = 12;
  frame_seed("edge_header_only", &b, 0, 0);
  bput(&b, "PRPC\0\0\0\x10\0\0\0", 11);
  frame_seed("edge_11_bytes", &b, 0, 0);
  x = resp(1, 0, NULL);
  encode(&b, &x, big, 64 - 4, NULL, 0); /* body exactly 64 */
  frame_seed("edge_body_64", &b, 1, 0);
  encode(&b, &x, big, 65 - 4, NULL, 0);
  frame_seed("edge_body_65", &b, 1, 0);
  x = resp(1, 0, NULL);
  x.attachment_size = 0;
  encode(&b, &x, NULL, 0, big, 100); /* attachment is the whole rest */
  frame_seed("edge_attachment_whole_rest", &b, 1, 0);

  /* nothing at all (for frame_split: a split header and no stream, which
   * found a NULL + 0 in mprpc_rbuf_data under clang's UBSan) */
  frame_seed("edge_empty_stream", &b, 0, 0);

  /* every error */
  bput(&b, "PRPD\0\0\0\0\0\0\0\0", 12);
  frame_seed("err_bad_magic", &b, 0, MPRPC_EBADMAGIC);
  bput(&b, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
  frame_seed("err_http_request", &b, 0, MPRPC_EBADMAGIC);
  bput(&b, "PRPC", 4);
  bput_be32(&b, 4);
  bput_be32(&b, 5);
  frame_seed("err_meta_size_over_body", &b, 0, MPRPC_EBADSIZE);
  bput(&b, "PRPC", 4);
  bput_be32(&b, MPRPC_FRAME_DEFAULT_MAX_BODY + 1);
  bput_be32(&b, 0);
  frame_seed("err_too_big", &b, 0, MPRPC_ETOOBIG);
  bput(&b, "PRPC\xff\xff\xff\xff\0\0\0\0", 12);
  frame_seed("err_too_big_max", &b, 0, MPRPC_ETOOBIG);
  bput_tag(&m, 5, 0);
  bput_varint(&m, (uint64_t)(int64_t)-1);
  raw_frame(&b, &m, 5);
  bfree(&m);
  frame_seed("err_attachment_negative", &b, 0, MPRPC_EBADATTACH);
  bput_tag(&m, 5, 0);
  bput_varint(&m, 6);
  raw_frame(&b, &m, 5);
  bfree(&m);
  frame_seed("err_attachment_over_rest", &b, 0, MPRPC_EBADATTACH);
  bput(&m, "\x20\x80", 2);
  raw_frame(&b, &m, 3);
  bfree(&m);
  frame_seed("err_meta_truncated_varint", &b, 0, MPRPC_EBADMETA);
  bput(&m, "\x0a\x10\x0a\x03" "a.B", 7);
  raw_frame(&b, &m, 0);
  bfree(&m);
  frame_seed("err_meta_length_overrun", &b, 0, MPRPC_EBADMETA);
  bput(&m, "\x0f\x01", 2);
  raw_frame(&b, &m, 0);
  bfree(&m);
  frame_seed("err_meta_wire_type_7", &b, 0, MPRPC_EBADMETA);
  for (int i = 0; i < 40; i++)
    bput_tag(&m, 9, 3);
  for (int i = 0; i < 40; i++)
    bput_tag(&m, 9, 4);
  raw_frame(&b, &m, 0);
  bfree(&m);
  frame_seed("err_meta_groups_too_deep", &b, 0, MPRPC_EBADMETA);
  x = req("", "Echo", 1);
  encode(&b, &x, NULL, 0, NULL, 0);
  frame_seed("err_no_service_name", &b, 0, MPRPC_ENONAME);
  x = req("example.EchoService", "", 1);
  encode(&b, &x, NULL, 0, NULL, 0);
  frame_seed("err_no_method_name", &b, 0, MPRPC_ENONAME);
  bput(&m, "\x0a\x00\x20\x01", 4);
  raw_frame(&b, &m, 0);
  bfree(&m);
  frame_seed("err_request_names_absent", &b, 0, MPRPC_ENONAME);
}

static void gen_metas(void) {
  bytes_t b = {0};
  mprpc_meta_t x;
  uint8_t w[1024];

  x = req("example.EchoService", "Echo", 1);
  x.log_id = 5;
  x.trace_id = INT64_MAX;
  x.span_id = INT64_MIN;
  x.parent_span_id = -2;
  x.request_id = MPRPC_BYTES("rid");
  x.timeout_ms = INT32_MIN;
  x.compress_type = 3;
  x.attachment_size = 12;
  x.auth_data = MPRPC_BYTES("auth\0data");
  bput(&b, w, mprpc_meta_write(&x, w));
  meta_seed("request_all_fields", &b, 0);

  x = resp(-7, 2001, "handler failed");
  bput(&b, w, mprpc_meta_write(&x, w));
  meta_seed("response_error", &b, 0);

  x = resp(1, 0, NULL);
  bput(&b, w, mprpc_meta_write(&x, w));
  meta_seed("response_ok", &b, 0);
  bput(&b, "\x12\x02\x08\x00\x20\x01", 6); /* brpc's explicit error_code 0 */
  meta_seed("response_ok_brpc", &b, 0);

  meta_seed("empty", &b, 0);

  put_unknowns(&b);
  bput_lenfield(&b, 1, "\x0a\x03" "a.B" "\x12\x01" "c" "\x48\x05", 10); /* field 9 inside request */
  put_unknowns(&b);
  meta_seed("unknown_fields", &b, 0);

  bput_lenfield(&b, 1, "\x0a\x03" "a.B" "\x12\x01" "c" "\x18\x01", 10);
  bput_lenfield(&b, 1, "\x0a\x03" "a.C" "\x12\x01" "d" "\x20\x02", 10);
  bput(&b, "\x20\x01\x20\x02", 4);
  meta_seed("repeated_fields_merge", &b, 0);

  bput(&b, "\x20\x05", 2);
  bput_lenfield(&b, 4, "xx", 2); /* known number, wrong wire type */
  meta_seed("wrong_wire_type", &b, 0);

  bput(&b, "\x00\x01\x80\x00\x02\x20\x03", 7); /* field 0, minimal and not */
  meta_seed("field_zero", &b, 0);

  bput_lenfield(&b, 1, "\x18\x01", 2);
  meta_seed("request_without_names", &b, 0);

  bput(&b, "\x28\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
  bput(&b, "\x18\x80\x80\x80\x80\x80\x80\x80\x80\x80\x7f", 11); /* 10th byte overflows */
  meta_seed("ten_byte_varints", &b, 0);

  bput(&b, "\x20\x80", 2);
  meta_seed("bad_truncated_varint", &b, MPRPC_EBADMETA);
  bput(&b, "\x20\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 12);
  meta_seed("bad_eleven_byte_varint", &b, MPRPC_EBADMETA);
  bput(&b, "\x3a\x05" "ab", 4);
  meta_seed("bad_length_overrun", &b, MPRPC_EBADMETA);
  bput(&b, "\x4c", 1);
  meta_seed("bad_stray_end_group", &b, MPRPC_EBADMETA);
  bput(&b, "\x4b\x08\x01", 3);
  meta_seed("bad_unterminated_group", &b, MPRPC_EBADMETA);
  bput(&b, "\x80\x80\x80\x80\x80\x00", 6);
  meta_seed("bad_six_byte_key", &b, MPRPC_EBADMETA);
  bput(&b, "\x0a\x02\x08\x80", 4);
  meta_seed("bad_inside_request", &b, MPRPC_EBADMETA);
}

/* ---- client_conn: inputs in fuzz/fuzz_client_conn.c's layout ----------------- */

/* Header: flags0, flags1, chunk sizes. */
static void cc_head(bytes_t *b, uint8_t f0, uint8_t f1, const uint8_t *chunks, uint8_t k) {
  bput_u8(b, f0);
  bput_u8(b, f1);
  bput_u8(b, k);
  bput(b, chunks, k);
}

/* One response record; the extra bytes its flags ask for come from the
 * arguments in the harness's reading order. */
typedef struct cc_resp {
  uint8_t tag;   /* 0: once, 1: twice */
  uint8_t sel;   /* request index, or >= 0xF0 for cid */
  uint64_t cid;
  uint8_t code;  /* index in the harness's table, or a wire code >= 16 */
  uint8_t flags;
  const char *text;
  const char *msg; /* payload: the message, or raw bytes with flags & 4 */
  uint8_t att, fill, patch, keep;
} cc_resp_t;

static void cc_put(bytes_t *b, const cc_resp_t *r) {
  bput_u8(b, r->tag);
  bput_u8(b, r->sel);
  if (r->sel >= 0xF0)
    for (int i = 0; i < 8; i++)
      bput_u8(b, (uint8_t)(r->cid >> (8 * i)));
  bput_u8(b, r->code);
  bput_u8(b, r->flags);
  if (r->flags & 2) {
    bput_u8(b, (uint8_t)strlen(r->text));
    bput(b, r->text, strlen(r->text));
  }
  const char *m = r->msg ? r->msg : "";
  bput_u8(b, (uint8_t)strlen(m));
  bput(b, m, strlen(m));
  if (r->flags & 8) {
    bput_u8(b, r->att);
    bput_u8(b, r->fill);
  }
  if (r->flags & 0x20)
    bput_u8(b, r->patch);
  if (r->flags & 0x10)
    bput_u8(b, r->keep);
}

/* Success answers for calls 0..n-1, in order. */
static void cc_answers(bytes_t *b, int n) {
  static const char *const msgs[] = {"a", "bb", "", "dddd"};
  for (int i = 0; i < n; i++)
    cc_put(b, &(cc_resp_t){.sel = (uint8_t)i, .msg = msgs[i]});
}

static void cc_seed(const char *name, bytes_t *b) {
  seed("client_conn", name, b);
  bfree(b);
}

static void gen_client_conn(void) {
  bytes_t b = {0};
  static const uint8_t one[] = {1}, all[] = {255}, mixed[] = {5, 1, 17, 3, 64};
  enum { CALLS4 = 3, FAILFAST = 4, SMALL = 8, IDEM = 0x10, RESET = 0x20, OPEN = 0x40,
         DESTROY = 0x60, ATT_TMO = 0x80 };
  enum { RC_ASYNC = 0, RC_SILENT = 1, RC_SYNC = 2, RC_EOF = 3, HWM = 4, REQ_ATT = 8,
         CANCEL0 = 0x10, TICK = 0x20, PENDING = 0x40, BACKUP = 0x80 };

  cc_head(&b, 0, 0, NULL, 0);
  cc_answers(&b, 1);
  cc_seed("ok_one_call", &b);

  cc_head(&b, CALLS4, 0, all, 1);
  cc_answers(&b, 4);
  cc_seed("ok_four_sticky", &b);

  cc_head(&b, CALLS4, REQ_ATT, one, 1);
  cc_answers(&b, 4);
  cc_seed("ok_four_one_byte_chunks", &b);

  cc_head(&b, CALLS4 | RESET, TICK, mixed, 5);
  for (int i = 3; i >= 0; i--) /* answers out of order */
    cc_put(&b, &(cc_resp_t){.sel = (uint8_t)i, .msg = "out of order"});
  cc_seed("ok_reverse_order_mixed_chunks", &b);

  /* attachments: 0, 1, 63 bytes, then 255, 256, 4095, 64 KiB, 1 MiB */
  static const uint8_t att[] = {0, 1, 63, 65, 66, 67, 68, 69};
  for (size_t i = 0; i < sizeof att; i++) {
    char name[64];
    cc_head(&b, CALLS4, 0, all, 1);
    cc_put(&b, &(cc_resp_t){.sel = 0, .flags = 8, .msg = "att", .att = att[i], .fill = 'x'});
    cc_put(&b, &(cc_resp_t){.sel = 1, .flags = 8, .msg = "att", .att = att[i], .fill = 0});
    snprintf(name, sizeof name, "attachment_%u", (unsigned)att[i]);
    cc_seed(name, &b);
  }
  cc_head(&b, SMALL, 0, NULL, 0);
  cc_put(&b, &(cc_resp_t){.sel = 0, .flags = 8, .msg = "m", .att = 65, .fill = 1});
  cc_seed("attachment_over_max_body", &b);

  /* every error code of the table, failover and failfast */
  for (uint8_t code = 1; code < 16; code++) {
    char name[64];
    cc_head(&b, CALLS4, 0, all, 1);
    cc_put(&b, &(cc_resp_t){.sel = 0, .code = code, .flags = 2, .text = "handler said no"});
    cc_put(&b, &(cc_resp_t){.sel = 1, .code = code});
    cc_answers(&b, 4); /* retries (when any) got new ids: answer by index */
    snprintf(name, sizeof name, "error_code_%u", (unsigned)code);
    cc_seed(name, &b);
  }
  cc_head(&b, FAILFAST, 0, NULL, 0);
  cc_put(&b, &(cc_resp_t){.sel = 0, .code = 1});
  cc_seed("error_logoff_failfast", &b);
  cc_head(&b, CALLS4, 0, one, 1);
  cc_put(&b, &(cc_resp_t){.sel = 0, .code = 200, .flags = 2, .text = "unknown code"});
  cc_seed("error_code_unknown", &b);

  /* ids nobody issued, negative ids, duplicates */
  static const uint64_t bogus[] = {0, 99, (uint64_t)INT64_MAX, (uint64_t)-1};
  cc_head(&b, 1, 0, all, 1);
  for (size_t i = 0; i < 4; i++)
    cc_put(&b, &(cc_resp_t){.sel = 0xF0, .cid = bogus[i], .msg = "who?"});
  cc_put(&b, &(cc_resp_t){.sel = 0, .flags = 0x80, .msg = "negated"});
  cc_answers(&b, 2);
  cc_seed("unknown_ids", &b);

  cc_head(&b, 1, 0, mixed, 5);
  cc_put(&b, &(cc_resp_t){.tag = 1, .sel = 0, .msg = "twice"});
  cc_put(&b, &(cc_resp_t){.tag = 1, .sel = 1, .code = 4});
  cc_seed("duplicate_answers", &b);

  /* bad metas and payloads */
  cc_head(&b, CALLS4, 0, all, 1);
  cc_put(&b, &(cc_resp_t){.sel = 0, .flags = 1, .msg = "compressed"});
  cc_put(&b, &(cc_resp_t){.sel = 1, .flags = 4, .msg = "\x0a\x05" "ab"}); /* overrun */
  cc_put(&b, &(cc_resp_t){.sel = 2, .flags = 4, .msg = ""}); /* required field absent */
  cc_put(&b, &(cc_resp_t){.sel = 3, .flags = 4, .msg = "\x0a\x02hi\x10\x01"});
  cc_seed("bad_payloads", &b);
  cc_head(&b, 1, 0, NULL, 0);
  cc_put(&b, &(cc_resp_t){.sel = 0, .flags = 0x40, .msg = "request too"});
  cc_answers(&b, 2);
  cc_seed("bad_request_in_response", &b);

  /* patched sizes: huge, off by one, meta bigger than body */
  for (uint8_t p = 0; p < 7; p++) {
    char name[64];
    cc_head(&b, CALLS4, 0, mixed, 5);
    cc_answers(&b, 1);
    cc_put(&b, &(cc_resp_t){.sel = 1, .flags = 0x20, .msg = "patched", .patch = p});
    cc_answers(&b, 4);
    snprintf(name, sizeof name, "size_patch_%u", (unsigned)p);
    cc_seed(name, &b);
  }
  cc_head(&b, CALLS4 | SMALL, 0, NULL, 0);
  cc_put(&b, &(cc_resp_t){.sel = 0, .flags = 0x20, .msg = "x", .patch = 2});
  cc_seed("size_over_small_max_body", &b);

  /* truncated frames, at several points, then the connection ends */
  static const uint8_t keep[] = {0, 16, 40, 128, 250};
  for (size_t i = 0; i < sizeof keep; i++) {
    char name[64];
    cc_head(&b, 1 | (i & 1 ? RESET : 0), 0, NULL, 0);
    cc_answers(&b, 1);
    cc_put(&b, &(cc_resp_t){.sel = 1, .flags = 0x18, .msg = "cut", .att = 20, .keep = keep[i]});
    snprintf(name, sizeof name, "truncated_%u", (unsigned)keep[i]);
    cc_seed(name, &b);
  }

  /* garbage, raw bytes, control records */
  cc_head(&b, 1, 0, NULL, 0);
  cc_answers(&b, 1);
  bput(&b, "\x02\x08" "GARBAGE!", 10);
  cc_answers(&b, 2);
  cc_seed("garbage_after_frame", &b);
  cc_head(&b, 0, 0, one, 1);
  bput(&b, "\x02\x0c" "PRPC\0\0\0\0\0\0\0\0", 14); /* empty meta: cid 0 */
  bput(&b, "\x02\x04" "PRPX", 6);
  cc_seed("raw_empty_frame_then_bad_magic", &b);

  /* the end of the connection and what the channel does after it */
  cc_head(&b, CALLS4 | OPEN, 0, NULL, 0);
  cc_answers(&b, 2);
  cc_seed("end_stay_open_deadline", &b);
  cc_head(&b, CALLS4 | DESTROY, 0, NULL, 0);
  cc_answers(&b, 2);
  cc_seed("end_destroy_pending", &b);
  for (uint8_t rc = 0; rc < 4; rc++) {
    char name[64];
    cc_head(&b, CALLS4 | IDEM | (rc & 1 ? RESET : 0), rc, NULL, 0);
    cc_put(&b, &(cc_resp_t){.sel = 0, .code = 2}); /* ELIMIT: retried at once */
    cc_answers(&b, 1);
    snprintf(name, sizeof name, "reconnect_mode_%u", (unsigned)rc);
    cc_seed(name, &b);
  }
  cc_head(&b, CALLS4, HWM | PENDING, NULL, 0);
  cc_answers(&b, 2);
  bput_u8(&b, 0x0f); /* writable */
  cc_answers(&b, 4);
  cc_seed("hwm_and_pending_writes", &b);
  cc_head(&b, CALLS4 | IDEM | ATT_TMO, BACKUP | TICK | CANCEL0, one, 1);
  bput(&b, "\x07\x14", 2); /* deliver, advance 20 ms */
  cc_answers(&b, 4);
  bput(&b, "\x0b\x01", 2); /* cancel call 1 */
  bput(&b, "\x07\x50", 2); /* advance 80 ms */
  cc_answers(&b, 4);
  cc_seed("timeouts_backups_cancel", &b);

  /* the first closure destroys the channel / starts a fifth call */
  static const uint8_t four[] = {4};
  cc_head(&b, CALLS4, 0, NULL, 0);
  b.p[2] = 0x08;
  cc_answers(&b, 4);
  cc_seed("closure_destroys_channel", &b);
  cc_head(&b, CALLS4, 0, four, 1);
  b.p[2] |= 0x10;
  cc_answers(&b, 4);
  cc_put(&b, &(cc_resp_t){.sel = 4, .msg = "fifth"});
  cc_seed("closure_starts_call", &b);
  cc_head(&b, CALLS4, 0, four, 1);
  b.p[2] |= 0x30; /* the same through the protoc-c stub */
  cc_answers(&b, 4);
  cc_put(&b, &(cc_resp_t){.sel = 4, .msg = "fifth"});
  cc_seed("stub_calls", &b);
  cc_head(&b, 1 | OPEN, 0, NULL, 0);
  b.p[2] = 0x18;
  cc_answers(&b, 1);
  cc_seed("closure_starts_call_then_destroys", &b);

  /* the provider drops the connection midway; retries go to a new one */
  cc_head(&b, CALLS4 | IDEM, RC_SILENT, NULL, 0);
  cc_answers(&b, 1);
  bput_u8(&b, 0x13); /* deliver, then EOF */
  for (uint8_t i = 4; i < 7; i++)
    cc_put(&b, &(cc_resp_t){.sel = i, .msg = "second connection"});
  cc_seed("midway_eof_retries_answered", &b);
  cc_head(&b, CALLS4, RC_SILENT | PENDING, all, 1);
  bput_u8(&b, 0x23); /* reset while nothing was flushed: safe to retry */
  for (uint8_t i = 0; i < 8; i++)
    cc_put(&b, &(cc_resp_t){.sel = i, .msg = "after reset"});
  cc_seed("midway_reset_unflushed_retried", &b);
}

/* ---- compress: inputs in fuzz/fuzz_compress.c's layout ---------------------- */

/* Limit selectors (byte 1): the harness takes 1 << (byte % 22), or 0 for 21. */
enum { LIM_0 = 21, LIM_64 = 6, LIM_2K = 11, LIM_4K = 12, LIM_1M = 20 };

static size_t lim_of(uint8_t sel) { return sel % 22 <= 20 ? (size_t)1 << (sel % 22) : 0; }

/* A compress seed: type, limit selector, stream, and what mprpc__decompress
 * must give under that limit: want (0 or an error), and for 0 the bytes. */
static void compress_seed(const char *name, int type, uint8_t lsel, const bytes_t *z, int want,
                          const void *plain, size_t plain_n) {
  uint8_t *out = NULL;
  size_t len = 0;
  int rc = mprpc__decompress(type, z->p, z->n, lim_of(lsel), &out, &len);
  if (rc != want)
    fail_msg("compress seed %s: %s, expected %s", name, mprpc_err_name(rc), mprpc_err_name(want));
  if (rc == 0 && (len != plain_n || (len && memcmp(out, plain, len) != 0)))
    fail_msg("compress seed %s: decompresses to other bytes", name);
  free(out);
  bytes_t b = {0};
  bput_u8(&b, (uint8_t)type);
  bput_u8(&b, lsel);
  bput(&b, z->p, z->n);
  seed("compress", name, &b);
  bfree(&b);
}

/* z = in[0..n) compressed with mprpc__compress. */
static void zput(bytes_t *z, int type, const void *in, size_t n) {
  uint8_t *c = NULL;
  size_t cn = 0;
  assert_int_equal(mprpc__compress(type, in, n, &c, &cn), 0);
  bput(z, c, cn);
  free(c);
}

/* A zlib/gzip stream made with zlib directly: a level, a gzip header with
 * every optional field, or a preset dictionary (zlib's FDICT). */
static void zput_custom(bytes_t *z, int type, int level, bool header, const char *dict,
                        const void *in, size_t n) {
  z_stream s;
  memset(&s, 0, sizeof s);
  assert_int_equal(deflateInit2(&s, level, Z_DEFLATED, type == MPRPC_COMPRESS_GZIP ? 31 : 15, 8,
                                Z_DEFAULT_STRATEGY),
                   Z_OK);
  gz_header h;
  memset(&h, 0, sizeof h);
  if (header) {
    h.text = 1;
    h.time = 0x5f5e1000;
    h.os = 3;
    h.extra = (Bytef *)"XYZ\x02\x00ok";
    h.extra_len = 7;
    h.name = (Bytef *)"seed.txt";
    h.comment = (Bytef *)"a gzip header with every optional field";
    h.hcrc = 1;
    assert_int_equal(deflateSetHeader(&s, &h), Z_OK);
  }
  if (dict)
    assert_int_equal(deflateSetDictionary(&s, (const Bytef *)dict, (uInt)strlen(dict)), Z_OK);
  uint8_t out[8192];
  s.next_in = (Bytef *)(uintptr_t)in;
  s.avail_in = (uInt)n;
  s.next_out = out;
  s.avail_out = sizeof out;
  assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
  bput(z, out, s.total_out);
  deflateEnd(&s);
}

static void gen_compress(void) {
  static const int types[] = {MPRPC_COMPRESS_SNAPPY, MPRPC_COMPRESS_GZIP, MPRPC_COMPRESS_ZLIB};
  static const char *const tname[] = {"snappy", "gzip", "zlib"};
  static const char text[] = "hello, compressed world";
  static const char phrase[] = "mprpc compresses this phrase; ";
  uint8_t rep[4096];
  for (size_t i = 0; i < sizeof rep; i++)
    rep[i] = (uint8_t)phrase[i % (sizeof phrase - 1)];
  size_t bomb_n = ((size_t)1 << 20) + 1;
  uint8_t *zeros = calloc(bomb_n, 1);
  assert_non_null(zeros);
  bytes_t z = {0};
  char name[64];

  for (int t = 0; t < 3; t++) {
    int ty = types[t];
    const char *tn = tname[t];
#define SEED(what, lsel, want, plain, plain_n)                                                     \
  do {                                                                                             \
    snprintf(name, sizeof name, "%s_%s", tn, what);                                                \
    compress_seed(name, ty, lsel, &z, want, plain, plain_n);                                       \
    bfree(&z);                                                                                     \
  } while (0)

    zput(&z, ty, NULL, 0);
    SEED("valid_empty_limit_0", LIM_0, 0, NULL, 0);
    zput(&z, ty, text, strlen(text));
    SEED("valid_short_text", LIM_64, 0, text, strlen(text));
    zput(&z, ty, rep, sizeof rep);
    SEED("valid_4k_text_at_limit", LIM_4K, 0, rep, sizeof rep);
    zput(&z, ty, rep, sizeof rep);
    SEED("over_limit_4k_in_2k", LIM_2K, MPRPC_ERANGE, NULL, 0);
    zput(&z, ty, rep, sizeof rep);
    z.n /= 2;
    SEED("truncated_half", LIM_1M, MPRPC_EREQUEST, NULL, 0);
    zput(&z, ty, text, strlen(text));
    bput(&z, "TRAILING", 8);
    SEED("trailing_bytes", LIM_1M, MPRPC_EREQUEST, NULL, 0);

    if (ty == MPRPC_COMPRESS_SNAPPY) {
      /* a header declaring 2^32-1 bytes and nothing after it */
      bput(&z, "\xff\xff\xff\xff\x0f", 5);
      SEED("declares_4gib", LIM_1M, MPRPC_ERANGE, NULL, 0);
      /* the header says one byte more than the body makes */
      bput_varint(&z, strlen(text) + 1);
      bytes_t body = {0};
      zput(&body, ty, text, strlen(text));
      size_t skip = 1; /* the real header: strlen(text) < 128, one byte */
      bput(&z, body.p + skip, body.n - skip);
      bfree(&body);
      SEED("length_mismatch", LIM_1M, MPRPC_EREQUEST, NULL, 0);
    } else {
      /* 1 MiB + 1 zero bytes in about a kilobyte: one byte over the limit */
      zput(&z, ty, zeros, bomb_n);
      SEED("bomb_1mib_plus_1", LIM_1M, MPRPC_ERANGE, NULL, 0);
      zput(&z, ty, text, strlen(text));
      z.p[z.n - (ty == MPRPC_COMPRESS_GZIP ? 5 : 1)] ^= 0x01; /* CRC-32 / Adler-32 */
      SEED("bad_checksum", LIM_1M, MPRPC_EREQUEST, NULL, 0);
      zput_custom(&z, ty, 0, false, NULL, text, strlen(text));
      SEED("valid_stored_block", LIM_64, 0, text, strlen(text));
      zput_custom(&z, ty, 9, false, NULL, rep, sizeof rep);
      SEED("valid_level_9", LIM_1M, 0, rep, sizeof rep);
    }
#undef SEED
  }
  zput_custom(&z, MPRPC_COMPRESS_GZIP, Z_DEFAULT_COMPRESSION, true, NULL, text, strlen(text));
  compress_seed("gzip_valid_header_fields", MPRPC_COMPRESS_GZIP, LIM_64, &z, 0, text, strlen(text));
  bfree(&z);
  zput_custom(&z, MPRPC_COMPRESS_ZLIB, Z_DEFAULT_COMPRESSION, false, "hello, world", text,
              strlen(text));
  compress_seed("zlib_needs_dictionary", MPRPC_COMPRESS_ZLIB, LIM_1M, &z, MPRPC_EREQUEST, NULL, 0);
  bfree(&z);

  /* NONE is not a compression: EINVAL whatever follows */
  bput(&z, text, strlen(text));
  compress_seed("none_rejected", MPRPC_COMPRESS_NONE, LIM_1M, &z, MPRPC_EINVAL, NULL, 0);
  bfree(&z);
  free(zeros);
}

static void test_fuzz_corpus_matches_generator(void **state) {
  (void)state;
  gen_frames();
  gen_metas();
  gen_client_conn();
  gen_compress();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fuzz_corpus_matches_generator),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
