/* Payload compression (core/compress.h): round trips, interop with the
 * standard snappy/gzip/zlib formats (vectors made by other implementations),
 * corrupt and truncated input, output limits and API misuse. Runs under
 * ASan/LSan, so every failing path is also checked for leaks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/compress.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"

#define MIB ((size_t)1 << 20)

/* ---- helpers -------------------------------------------------------------- */

/* Tests that run once per compression type get the type as their state
 * (see PER_TYPE in main). */
static int state_type(void **state) { return *(const int *)*state; }

static uint64_t xorshift64(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)(xorshift64(&s) >> 56);
}

/* Highly repetitive: one short phrase over and over. */
static void fill_pattern(uint8_t *p, size_t n) {
  static const char phrase[] = "mprpc compresses this phrase; ";
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)phrase[i % (sizeof(phrase) - 1)];
}

/* English-like text: words picked by a fixed-seed generator, so it is
 * compressible but not a plain repetition. */
static void fill_text(uint8_t *p, size_t n) {
  static const char *const words[] = {"the",  "quick",   "brown", "fox",   "jumps",  "over",
                                      "lazy", "dog",     "rpc",   "server", "client", "channel",
                                      "call", "payload", "frame", "meta"};
  uint64_t s = 0x9e3779b97f4a7c15ull;
  size_t i = 0;
  while (i < n) {
    const char *w = words[xorshift64(&s) % (sizeof(words) / sizeof(words[0]))];
    for (; *w && i < n; w++)
      p[i++] = (uint8_t)*w;
    if (i < n)
      p[i++] = (xorshift64(&s) % 9 == 0) ? '\n' : ' ';
  }
}

static uint8_t *xmalloc(size_t n) {
  uint8_t *p = malloc(n ? n : 1);
  assert_non_null(p);
  return p;
}

/* Compresses; the call must succeed. */
static uint8_t *compress_ok(int type, const uint8_t *in, size_t n, size_t *clen) {
  uint8_t *c = NULL;
  *clen = SIZE_MAX;
  assert_int_equal(mprpc__compress(type, in, n, &c, clen), 0);
  assert_non_null(c);
  assert_true(*clen != SIZE_MAX);
  return c;
}

/* Decompresses with limit; must give exactly want[0..wn). */
static void decompress_eq(int type, const uint8_t *in, size_t n, size_t limit, const uint8_t *want,
                          size_t wn) {
  uint8_t *out = NULL;
  size_t len = SIZE_MAX;
  assert_int_equal(mprpc__decompress(type, in, n, limit, &out, &len), 0);
  assert_int_equal(len, wn);
  if (wn) {
    assert_non_null(out);
    assert_memory_equal(out, want, wn);
  }
  free(out);
}

/* Decompression must fail with rc, and hand back nothing (*out untouched, so
 * a caller that frees it on error does not double-free; LSan sees any
 * buffer the failing path forgot). */
static void decompress_fails(int type, const uint8_t *in, size_t n, size_t limit, int rc) {
  uint8_t *out = NULL;
  size_t len = 12345;
  assert_int_equal(mprpc__decompress(type, in, n, limit, &out, &len), rc);
  assert_null(out);
}

/* Round trip of in[0..n): exact limit succeeds, one byte less is ERANGE. */
static void roundtrip(int type, const uint8_t *in, size_t n) {
  size_t clen;
  uint8_t *c = compress_ok(type, in, n, &clen);
  assert_true(clen > 0); /* even an empty input has a header */
  decompress_eq(type, c, clen, n, in, n);
  if (n)
    decompress_fails(type, c, clen, n - 1, MPRPC_ERANGE);
  free(c);
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ---- 1. round trips ----------------------------------------------------- */

static void test_compress_roundtrip_small(void **state) {
  int type = state_type(state);
  roundtrip(type, NULL, 0);
  static const uint8_t empty[1];
  roundtrip(type, empty, 0);
  static const uint8_t one[1] = {0xa5};
  roundtrip(type, one, 1);
  uint8_t text[1000];
  fill_text(text, sizeof(text));
  roundtrip(type, text, sizeof(text));
}

static void test_compress_roundtrip_random_1mib(void **state) {
  int type = state_type(state);
  uint8_t *in = xmalloc(MIB);
  fill_random(in, MIB, 0x0123456789abcdefull);
  roundtrip(type, in, MIB);
  free(in);
}

static void test_compress_roundtrip_repetitive_1mib(void **state) {
  int type = state_type(state);
  uint8_t *in = xmalloc(MIB);
  fill_pattern(in, MIB);
  roundtrip(type, in, MIB);
  /* It must actually compress: snappy (copies of at most 64 bytes) reaches
   * ~1/20 here, deflate far better. */
  size_t clen;
  uint8_t *c = compress_ok(type, in, MIB, &clen);
  assert_true(clen < MIB / 16);
  free(c);
  free(in);
}

/* ---- 2. interop with the standard formats ------------------------------- */

static const uint8_t hello[] = "hello, mprpc";
#define HELLO_LEN (sizeof(hello) - 1)

/* python3: gzip.compress(b"hello, mprpc", mtime=0) */
static const uint8_t py_gzip_hello[] = {
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xd7,
    0x51, 0xc8, 0x2d, 0x28, 0x2a, 0x48, 0x06, 0x00, 0x2e, 0x72, 0x92, 0xa5, 0x0c, 0x00, 0x00, 0x00};

/* python3: zlib.compress(b"hello, mprpc") */
static const uint8_t py_zlib_hello[] = {0x78, 0x9c, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0xd7,
                                        0x51, 0xc8, 0x2d, 0x28, 0x2a, 0x48, 0x06, 0x00,
                                        0x1d, 0x2d, 0x04, 0x83};

/* Raw snappy, built by hand from format_description.txt: varint length 5,
 * literal tag ((5-1)<<2 | 00), "hello". */
static const uint8_t sn_hello[] = {0x05, 0x10, 'h', 'e', 'l', 'l', 'o'};

/* "abcabcabcabc" (12): literal "abc" (tag (3-1)<<2), then a copy of 9 bytes
 * at offset 3 -- overlapping, as the format allows. */
static const uint8_t sn_copy1[] = {
    0x0c, 0x08, 'a', 'b', 'c',
    0x15, 0x03, /* copy, 1-byte offset: 01 | (9-4)<<2 | (3>>8)<<5, then 3 & 0xff */
};
static const uint8_t sn_copy2[] = {
    0x0c, 0x08, 'a', 'b', 'c',
    0x22, 0x03, 0x00, /* copy, 2-byte offset: 10 | (9-1)<<2, then 3 little-endian */
};

static void test_compress_decodes_foreign_vectors(void **state) {
  (void)state;
  decompress_eq(MPRPC_COMPRESS_GZIP, py_gzip_hello, sizeof(py_gzip_hello), HELLO_LEN, hello,
                HELLO_LEN);
  decompress_eq(MPRPC_COMPRESS_ZLIB, py_zlib_hello, sizeof(py_zlib_hello), HELLO_LEN, hello,
                HELLO_LEN);
  decompress_eq(MPRPC_COMPRESS_SNAPPY, sn_hello, sizeof(sn_hello), 5, (const uint8_t *)"hello", 5);
  decompress_eq(MPRPC_COMPRESS_SNAPPY, sn_copy1, sizeof(sn_copy1), 12,
                (const uint8_t *)"abcabcabcabc", 12);
  decompress_eq(MPRPC_COMPRESS_SNAPPY, sn_copy2, sizeof(sn_copy2), 12,
                (const uint8_t *)"abcabcabcabc", 12);
  /* The wrappers are not interchangeable: a gzip stream is not zlib, nor
   * the reverse. */
  decompress_fails(MPRPC_COMPRESS_ZLIB, py_gzip_hello, sizeof(py_gzip_hello), MIB,
                   MPRPC_EREQUEST);
  decompress_fails(MPRPC_COMPRESS_GZIP, py_zlib_hello, sizeof(py_zlib_hello), MIB,
                   MPRPC_EREQUEST);
}

/* What we write follows the standard layouts, so other implementations
 * (brpc, python, ...) can read it. */
static void test_compress_output_is_standard(void **state) {
  (void)state;
  uint8_t text[1000];
  fill_text(text, sizeof(text));
  size_t clen;

  /* gzip (RFC 1952): magic 1f 8b, method 8 (deflate); trailer CRC-32 and
   * ISIZE, both little-endian. */
  uint8_t *c = compress_ok(MPRPC_COMPRESS_GZIP, text, sizeof(text), &clen);
  assert_true(clen >= 18);
  assert_int_equal(c[0], 0x1f);
  assert_int_equal(c[1], 0x8b);
  assert_int_equal(c[2], 0x08);
  assert_int_equal(le32(c + clen - 8), (uint32_t)crc32(0, text, sizeof(text)));
  assert_int_equal(le32(c + clen - 4), (uint32_t)sizeof(text));
  free(c);

  /* zlib (RFC 1950): CMF/FLG with method 8 and a header check that is a
   * multiple of 31; trailer Adler-32, big-endian. */
  c = compress_ok(MPRPC_COMPRESS_ZLIB, text, sizeof(text), &clen);
  assert_true(clen >= 6);
  assert_int_equal(c[0] & 0x0f, 8);
  assert_int_equal((c[0] * 256 + c[1]) % 31, 0);
  assert_int_equal(c[1] & 0x20, 0); /* no preset dictionary */
  assert_int_equal(be32(c + clen - 4), (uint32_t)adler32(1, text, sizeof(text)));
  free(c);

  /* Raw snappy: starts with the varint length (1000 = e8 07), no framing
   * (the framed format would start with a ff chunk). */
  c = compress_ok(MPRPC_COMPRESS_SNAPPY, text, sizeof(text), &clen);
  assert_true(clen >= 2);
  assert_int_equal(c[0], 0xe8);
  assert_int_equal(c[1], 0x07);
  free(c);

  /* Empty input: snappy is the single byte 00 (length 0). */
  c = compress_ok(MPRPC_COMPRESS_SNAPPY, NULL, 0, &clen);
  assert_int_equal(clen, 1);
  assert_int_equal(c[0], 0x00);
  free(c);

  /* docs/protocol.md section 6: EchoRequest {message: "hi"} (0a 02 68 69)
   * with snappy is 04 0c 0a 02 68 69 (length 4, one 4-byte literal). */
  static const uint8_t hi[] = {0x0a, 0x02, 0x68, 0x69};
  static const uint8_t hi_snappy[] = {0x04, 0x0c, 0x0a, 0x02, 0x68, 0x69};
  c = compress_ok(MPRPC_COMPRESS_SNAPPY, hi, sizeof hi, &clen);
  assert_int_equal(clen, sizeof hi_snappy);
  assert_memory_equal(c, hi_snappy, sizeof hi_snappy);
  free(c);
}

/* ---- 3. corrupt input --------------------------------------------------- */

/* Every proper prefix of a complete stream is EREQUEST. */
static void all_prefixes_fail(int type, const uint8_t *c, size_t clen) {
  for (size_t k = 0; k < clen; k++)
    decompress_fails(type, k ? c : NULL, k, MIB, MPRPC_EREQUEST);
}

static void test_compress_truncated_is_erequest(void **state) {
  int type = state_type(state);
  /* Our own streams: short and 1000 bytes of text. */
  size_t clen;
  uint8_t *c = compress_ok(type, hello, HELLO_LEN, &clen);
  all_prefixes_fail(type, c, clen);
  free(c);
  uint8_t text[1000];
  fill_text(text, sizeof(text));
  c = compress_ok(type, text, sizeof(text), &clen);
  all_prefixes_fail(type, c, clen);
  free(c);
  /* And the foreign ones. */
  switch (type) {
  case MPRPC_COMPRESS_GZIP:
    all_prefixes_fail(type, py_gzip_hello, sizeof(py_gzip_hello));
    break;
  case MPRPC_COMPRESS_ZLIB:
    all_prefixes_fail(type, py_zlib_hello, sizeof(py_zlib_hello));
    break;
  default:
    all_prefixes_fail(type, sn_hello, sizeof(sn_hello));
    all_prefixes_fail(type, sn_copy1, sizeof(sn_copy1));
    all_prefixes_fail(type, sn_copy2, sizeof(sn_copy2));
    break;
  }
}

/* A complete gzip/zlib stream followed by anything (one byte, a second
 * complete stream) is EREQUEST, not silently truncated. */
static void test_compress_trailing_bytes_are_erequest(void **state) {
  (void)state;
  static const struct {
    int type;
    const uint8_t *v;
    size_t n;
  } vs[] = {
      {MPRPC_COMPRESS_GZIP, py_gzip_hello, sizeof(py_gzip_hello)},
      {MPRPC_COMPRESS_ZLIB, py_zlib_hello, sizeof(py_zlib_hello)},
  };
  for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
    uint8_t buf[2 * sizeof(py_gzip_hello)];
    size_t n = vs[i].n;
    memcpy(buf, vs[i].v, n);
    decompress_eq(vs[i].type, buf, n, MIB, hello, HELLO_LEN); /* the base is valid */
    buf[n] = 0x00;
    decompress_fails(vs[i].type, buf, n + 1, MIB, MPRPC_EREQUEST);
    buf[n] = 0xff;
    decompress_fails(vs[i].type, buf, n + 1, MIB, MPRPC_EREQUEST);
    memcpy(buf + n, vs[i].v, n); /* two members back to back */
    decompress_fails(vs[i].type, buf, 2 * n, MIB, MPRPC_EREQUEST);
  }
}

/* A damaged check value is caught: gzip CRC-32 and ISIZE, zlib Adler-32. */
static void test_compress_bad_checksum_is_erequest(void **state) {
  (void)state;
  uint8_t g[sizeof(py_gzip_hello)];
  size_t n = sizeof(g);
  for (size_t at = n - 8; at < n; at++) { /* CRC-32 then ISIZE */
    memcpy(g, py_gzip_hello, n);
    g[at] ^= 0x01;
    decompress_fails(MPRPC_COMPRESS_GZIP, g, n, MIB, MPRPC_EREQUEST);
  }
  uint8_t z[sizeof(py_zlib_hello)];
  n = sizeof(z);
  for (size_t at = n - 4; at < n; at++) {
    memcpy(z, py_zlib_hello, n);
    z[at] ^= 0x80;
    decompress_fails(MPRPC_COMPRESS_ZLIB, z, n, MIB, MPRPC_EREQUEST);
  }
  /* A flipped bit in the deflate data itself: either the data or the check
   * value no longer agrees. */
  memcpy(g, py_gzip_hello, sizeof(g));
  g[12] ^= 0x04;
  decompress_fails(MPRPC_COMPRESS_GZIP, g, sizeof(g), MIB, MPRPC_EREQUEST);
}

/* Random buffers of many lengths (fixed seed). For gzip/zlib also with a
 * valid header in front, so the garbage reaches the deflate decoder; for
 * snappy the leading varint is kept small (below the limit), so the garbage
 * reaches the tag decoder instead of stopping at the length check. */
static void test_compress_garbage_is_erequest(void **state) {
  int type = state_type(state);
  static const uint8_t gz_head[] = {0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0x00, 0x03};
  static const uint8_t zl_head[] = {0x78, 0x9c};
  uint8_t buf[1024];
  uint64_t s = 0xfeedfacecafebeefull + (uint64_t)type;
  for (int round = 0; round < 400; round++) {
    size_t n = 1 + (size_t)(xorshift64(&s) % (round < 300 ? 64 : sizeof(buf)));
    fill_random(buf, n, xorshift64(&s));
    if (type == MPRPC_COMPRESS_SNAPPY) {
      buf[0] &= 0x7f; /* one-byte varint, < 128 */
      decompress_fails(type, buf, n, MIB, MPRPC_EREQUEST);
      continue;
    }
    decompress_fails(type, buf, n, MIB, MPRPC_EREQUEST);
    const uint8_t *head = type == MPRPC_COMPRESS_GZIP ? gz_head : zl_head;
    size_t hn = type == MPRPC_COMPRESS_GZIP ? sizeof(gz_head) : sizeof(zl_head);
    if (n > hn) {
      memcpy(buf, head, hn);
      decompress_fails(type, buf, n, MIB, MPRPC_EREQUEST);
    }
  }
}

/* Snappy whose declared length disagrees with what the elements produce, or
 * whose elements are themselves invalid. */
static void test_compress_snappy_bad_streams(void **state) {
  (void)state;
  static const uint8_t longer[] = {0x06, 0x10, 'h', 'e', 'l', 'l', 'o'};  /* says 6, has 5 */
  static const uint8_t shorter[] = {0x04, 0x10, 'h', 'e', 'l', 'l', 'o'}; /* says 4, has 5 */
  static const uint8_t extra[] = {0x05, 0x10, 'h', 'e', 'l', 'l', 'o', 0x00, 'x'}; /* 6 bytes */
  static const uint8_t zero_says_one[] = {0x00, 0x00, 'x'}; /* says 0, has 1 */
  static const uint8_t copy_first[] = {0x04, 0x01, 0x01};   /* copy with nothing before it */
  static const uint8_t copy_far[] = {0x0c, 0x08, 'a', 'b', 'c', 0x15, 0x04}; /* offset 4 > 3 */
  static const uint8_t copy_zero[] = {0x0c, 0x08, 'a', 'b', 'c', 0x15, 0x00}; /* offset 0 */
  static const uint8_t varint_6[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};    /* > 5 bytes */
  static const struct {
    const uint8_t *v;
    size_t n;
  } vs[] = {
      {longer, sizeof(longer)},
      {shorter, sizeof(shorter)},
      {extra, sizeof(extra)},
      {zero_says_one, sizeof(zero_says_one)},
      {copy_first, sizeof(copy_first)},
      {copy_far, sizeof(copy_far)},
      {copy_zero, sizeof(copy_zero)},
      {varint_6, sizeof(varint_6)},
  };
  for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++)
    decompress_fails(MPRPC_COMPRESS_SNAPPY, vs[i].v, vs[i].n, MIB, MPRPC_EREQUEST);
}

/* ---- 4. limits ---------------------------------------------------------- */

/* 1 MiB of zeros compresses to a few KiB at most: a small "bomb". The limit
 * holds below the size, and exactly at it the result is whole. */
static void test_compress_limit_on_zeros(void **state) {
  int type = state_type(state);
  uint8_t *zeros = calloc(MIB, 1);
  assert_non_null(zeros);
  size_t clen;
  uint8_t *c = compress_ok(type, zeros, MIB, &clen);
  assert_true(clen < MIB / 16);
  decompress_fails(type, c, clen, 1000, MPRPC_ERANGE);
  decompress_fails(type, c, clen, 0, MPRPC_ERANGE);
  decompress_fails(type, c, clen, MIB - 1, MPRPC_ERANGE);
  decompress_eq(type, c, clen, MIB, zeros, MIB);
  decompress_eq(type, c, clen, SIZE_MAX, zeros, MIB); /* no limit at all */
  free(c);
  free(zeros);
}

/* A snappy header claiming 2^32 - 1 bytes is refused from the header alone:
 * ERANGE, not an attempt at a 4 GiB buffer (nor EREQUEST after one). */
static void test_compress_snappy_huge_declared_length(void **state) {
  (void)state;
  static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x10, 'h', 'e', 'l', 'l', 'o'};
  decompress_fails(MPRPC_COMPRESS_SNAPPY, huge, sizeof(huge), 64 * MIB, MPRPC_ERANGE);
  /* Same for a length just past the limit. */
  static const uint8_t just_over[] = {0x06, 0x10, 'h', 'e', 'l', 'l', 'o'};
  decompress_fails(MPRPC_COMPRESS_SNAPPY, just_over, sizeof(just_over), 5, MPRPC_ERANGE);
  /* An empty result fits a 0 limit. */
  static const uint8_t empty[] = {0x00};
  decompress_eq(MPRPC_COMPRESS_SNAPPY, empty, sizeof(empty), 0, NULL, 0);
}

/* ---- 5. API misuse ------------------------------------------------------ */

static void test_compress_bad_type_is_einval(void **state) {
  (void)state;
  static const int bad[] = {MPRPC_COMPRESS_NONE, 4, -1, 99, INT32_MIN};
  size_t clen;
  uint8_t *c = compress_ok(MPRPC_COMPRESS_ZLIB, hello, HELLO_LEN, &clen);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint8_t *out = NULL;
    size_t len = 7;
    assert_int_equal(mprpc__compress(bad[i], hello, HELLO_LEN, &out, &len), MPRPC_EINVAL);
    assert_null(out);
    assert_int_equal(mprpc__compress(bad[i], NULL, 0, &out, &len), MPRPC_EINVAL);
    assert_null(out);
    /* Even given a valid stream of some type. */
    decompress_fails(bad[i], c, clen, MIB, MPRPC_EINVAL);
    decompress_fails(bad[i], NULL, 0, MIB, MPRPC_EINVAL);
  }
  free(c);
}

static void test_compress_null_arguments(void **state) {
  int type = state_type(state);
  size_t clen;
  uint8_t *c = compress_ok(type, hello, HELLO_LEN, &clen);
  uint8_t *out = NULL;
  size_t len = 0;
  assert_int_equal(mprpc__compress(type, hello, HELLO_LEN, NULL, &len), MPRPC_EINVAL);
  assert_int_equal(mprpc__compress(type, hello, HELLO_LEN, &out, NULL), MPRPC_EINVAL);
  assert_null(out);
  assert_int_equal(mprpc__compress(type, NULL, 1, &out, &len), MPRPC_EINVAL);
  assert_null(out);
  assert_int_equal(mprpc__decompress(type, c, clen, MIB, NULL, &len), MPRPC_EINVAL);
  assert_int_equal(mprpc__decompress(type, c, clen, MIB, &out, NULL), MPRPC_EINVAL);
  assert_null(out);
  decompress_fails(type, NULL, clen, MIB, MPRPC_EINVAL);

  /* NULL input of length 0 is allowed: compresses to a valid empty stream;
   * decompressing nothing is a bad stream (no header), not EINVAL. */
  uint8_t *e = compress_ok(type, NULL, 0, &len);
  decompress_eq(type, e, len, 0, NULL, 0);
  free(e);
  decompress_fails(type, NULL, 0, MIB, MPRPC_EREQUEST);
  free(c);
}

static void test_compress_known(void **state) {
  (void)state;
  for (int t = 0; t <= 3; t++)
    assert_true(mprpc__compress_known(t));
  assert_true(mprpc__compress_known(MPRPC_COMPRESS_NONE));
  assert_true(mprpc__compress_known(MPRPC_COMPRESS_ZLIB));
  assert_false(mprpc__compress_known(4));
  assert_false(mprpc__compress_known(-1));
  assert_false(mprpc__compress_known(99));
  assert_false(mprpc__compress_known(INT32_MIN));
}

/* ---- main --------------------------------------------------------------- */

static const int k_snappy = MPRPC_COMPRESS_SNAPPY;
static const int k_gzip = MPRPC_COMPRESS_GZIP;
static const int k_zlib = MPRPC_COMPRESS_ZLIB;

/* One entry per type, named <test>/<type>. */
#define ONE_TYPE(fn, tname, t) {#fn "/" tname, fn, NULL, NULL, (void *)&(t)}
#define PER_TYPE(fn)                                                                               \
  ONE_TYPE(fn, "snappy", k_snappy), ONE_TYPE(fn, "gzip", k_gzip), ONE_TYPE(fn, "zlib", k_zlib)

int main(void) {
  const struct CMUnitTest tests[] = {
      PER_TYPE(test_compress_roundtrip_small),
      PER_TYPE(test_compress_roundtrip_random_1mib),
      PER_TYPE(test_compress_roundtrip_repetitive_1mib),
      cmocka_unit_test(test_compress_decodes_foreign_vectors),
      cmocka_unit_test(test_compress_output_is_standard),
      PER_TYPE(test_compress_truncated_is_erequest),
      cmocka_unit_test(test_compress_trailing_bytes_are_erequest),
      cmocka_unit_test(test_compress_bad_checksum_is_erequest),
      PER_TYPE(test_compress_garbage_is_erequest),
      cmocka_unit_test(test_compress_snappy_bad_streams),
      PER_TYPE(test_compress_limit_on_zeros),
      cmocka_unit_test(test_compress_snappy_huge_declared_length),
      cmocka_unit_test(test_compress_bad_type_is_einval),
      PER_TYPE(test_compress_null_arguments),
      cmocka_unit_test(test_compress_known),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
