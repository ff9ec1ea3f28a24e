/*
 * Fuzz target "compress": mprpc__decompress (src/core/compress.c) on a
 * stream a peer chose. A frame's meta picks compress_type and its payload is
 * the stream, so both come from the network.
 *
 * Input layout:
 *   byte 0   type: byte % 4 (0 NONE, 1 snappy, 2 gzip, 3 zlib)
 *   byte 1   limit: s = byte % 22; 1 << s (1 B .. 1 MiB) for s <= 20, 0 for 21
 *   rest     the compressed stream (an empty one is passed as NULL + 0)
 * Missing header bytes read as 0.
 *
 * Checks (docs/fuzzing.md):
 *  C1  The result is 0, MPRPC_EREQUEST, MPRPC_ERANGE, MPRPC_ENOMEM or
 *      MPRPC_EINVAL; EINVAL exactly for NONE (and unknown types, which are
 *      tried alongside it), never for snappy/gzip/zlib.
 *  C2  On failure nothing is returned: *out stays NULL and *out_len keeps
 *      its sentinel. On success *out_len <= limit and *out holds *out_len
 *      readable bytes (NULL only for 0 bytes).
 *  C3  A reference decoder in this file (zlib's inflate into one 1 MiB + 1
 *      buffer with the same window bits; snappy's own length header and
 *      uncompress) decides what the answer must be:
 *        valid, n <= limit                  -> 0 and the same n bytes
 *        valid, n > limit                   -> ERANGE
 *        more than 1 MiB out, no error yet  -> ERANGE
 *        invalid (corrupt, truncated, bytes after the end), having produced
 *        p bytes before it went wrong       -> EREQUEST if p <= limit,
 *                                              EREQUEST or ERANGE if p > limit
 *      For snappy, p is the length its header declares (compress.c compares
 *      that with the limit before it validates). So ERANGE is reported only
 *      when the output really passes the limit: an invalid stream may get
 *      ERANGE only once it has produced (or, snappy, declared) more than
 *      limit bytes, since a bounded inflater cannot see what comes after.
 *  C4  The same input with the largest limit (1 MiB): success stays success
 *      with the same bytes; ERANGE becomes success only with more than limit
 *      bytes (or stays ERANGE, or is EREQUEST as C3 allows); EREQUEST stays
 *      EREQUEST.
 *  C5  Round trip: a successful output compressed again with the same type
 *      is a standard stream (the reference gives back the same bytes), it
 *      decompresses with limit = its length to the same bytes, and with one
 *      byte less to ERANGE.
 * ENOMEM is allowed (C1) but, with limits of at most 1 MiB, skips the
 * rest of the checks for that call.
 */
#include <limits.h>
#include <snappy-c.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/compress.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "support/check.h"

#define MAX_LIMIT ((size_t)1 << 20)

/* A value no call may write to *out_len on failure. */
#define LEN_SENTINEL ((size_t)0x5a5a5a5a)

/* ---- reference decoder ---------------------------------------------------- */

typedef enum ref_state {
  REF_VALID,   /* a whole stream, nothing after it: len bytes */
  REF_BIG,     /* more than MAX_LIMIT bytes, no error seen up to there */
  REF_INVALID, /* not a valid stream; len bytes came out before that showed */
} ref_state_t;

typedef struct ref {
  ref_state_t state;
  size_t len;
} ref_t;

static uint8_t ref_buf[MAX_LIMIT + 1];

/* Decodes in[0..n) of type into ref_buf, independently of compress.c's
 * growing buffer: zlib gets the whole room in one Z_FINISH call. */
static ref_t reference(int type, const uint8_t *in, size_t n) {
  if (type == MPRPC_COMPRESS_SNAPPY) {
    size_t len;
    if (snappy_uncompressed_length((const char *)in, n, &len) != SNAPPY_OK)
      return (ref_t){REF_INVALID, 0};
    if (len > MAX_LIMIT)
      return (ref_t){REF_BIG, len};
    size_t got = len;
    if (snappy_uncompress((const char *)in, n, (char *)ref_buf, &got) != SNAPPY_OK || got != len)
      return (ref_t){REF_INVALID, len};
    return (ref_t){REF_VALID, len};
  }
  FUZZ_CHECK(n <= UINT_MAX);
  z_stream z = {0};
  FUZZ_CHECK(inflateInit2(&z, type == MPRPC_COMPRESS_GZIP ? 15 + 16 : 15) == Z_OK);
  z.next_in = (Bytef *)(uintptr_t)in;
  z.avail_in = (uInt)n;
  z.next_out = ref_buf;
  z.avail_out = (uInt)sizeof ref_buf;
  int zr = inflate(&z, Z_FINISH);
  size_t len = (size_t)z.total_out;
  uInt left_in = z.avail_in, left_out = z.avail_out;
  inflateEnd(&z);
  FUZZ_CHECK(zr != Z_MEM_ERROR && zr != Z_STREAM_ERROR);
  if (zr == Z_STREAM_END)
    return (ref_t){left_in == 0 ? REF_VALID : REF_INVALID, len}; /* bytes after its end */
  if (zr == Z_BUF_ERROR && left_out == 0)
    return (ref_t){REF_BIG, len};
  return (ref_t){REF_INVALID, len}; /* corrupt, or the input ended first */
}

/* ---- checks --------------------------------------------------------------- */

typedef struct result {
  int rc;
  uint8_t *out;
  size_t len;
} result_t;

/* One decompress call with C1 and C2 applied. */
static result_t decompress(int type, const uint8_t *in, size_t n, size_t limit) {
  result_t r = {0, NULL, LEN_SENTINEL};
  r.rc = mprpc__decompress(type, in, n, limit, &r.out, &r.len);
  FUZZ_CHECK(r.rc == 0 || r.rc == MPRPC_EREQUEST || r.rc == MPRPC_ERANGE ||
             r.rc == MPRPC_ENOMEM || r.rc == MPRPC_EINVAL);
  if (r.rc != 0) {
    FUZZ_CHECK(r.out == NULL && r.len == LEN_SENTINEL);
    return r;
  }
  FUZZ_CHECK(r.len <= limit);
  FUZZ_CHECK(r.out != NULL || r.len == 0);
  return r;
}

static bool same(const result_t *r, const uint8_t *p, size_t n) {
  return r->len == n && (n == 0 || memcmp(r->out, p, n) == 0);
}

/* C3: r is what decompress gave with limit; ref what the stream is. */
static void check_against_reference(const result_t *r, const ref_t *ref, size_t limit) {
  if (r->rc == MPRPC_ENOMEM)
    return;
  switch (ref->state) {
  case REF_VALID:
    if (ref->len <= limit) {
      FUZZ_CHECK(r->rc == 0);
      FUZZ_CHECK(same(r, ref_buf, ref->len));
    } else {
      FUZZ_CHECK(r->rc == MPRPC_ERANGE);
    }
    break;
  case REF_BIG:
    FUZZ_CHECK(r->rc == MPRPC_ERANGE);
    break;
  case REF_INVALID:
    if (ref->len <= limit)
      FUZZ_CHECK(r->rc == MPRPC_EREQUEST);
    else
      FUZZ_CHECK(r->rc == MPRPC_EREQUEST || r->rc == MPRPC_ERANGE);
    break;
  }
}

/* C5 for a successful output. */
static void check_round_trip(int type, const result_t *r) {
  uint8_t *z = NULL;
  size_t zlen = LEN_SENTINEL;
  int rc = mprpc__compress(type, r->out, r->len, &z, &zlen);
  FUZZ_CHECK(rc == 0 || rc == MPRPC_ENOMEM);
  if (rc != 0) {
    FUZZ_CHECK(z == NULL && zlen == LEN_SENTINEL);
    return;
  }
  FUZZ_CHECK(z != NULL);
  /* a standard stream: the reference reads it back */
  ref_t ref = reference(type, z, zlen);
  FUZZ_CHECK(ref.state == REF_VALID && ref.len == r->len);
  FUZZ_CHECK(r->len == 0 || memcmp(ref_buf, r->out, r->len) == 0);
  /* exactly at the limit: the same bytes; one byte less: ERANGE */
  result_t back = decompress(type, z, zlen, r->len);
  if (back.rc != MPRPC_ENOMEM) {
    FUZZ_CHECK(back.rc == 0);
    FUZZ_CHECK(same(&back, r->out, r->len));
  }
  free(back.out);
  if (r->len > 0) {
    result_t under = decompress(type, z, zlen, r->len - 1);
    FUZZ_CHECK(under.rc == MPRPC_ERANGE || under.rc == MPRPC_ENOMEM);
  }
  free(z);
}

/* C1 for NONE and types nobody knows: EINVAL, nothing returned, both ways. */
static void check_not_a_type(int type, const uint8_t *in, size_t n, size_t limit) {
  FUZZ_CHECK(mprpc__compress_known(type) == (type == MPRPC_COMPRESS_NONE));
  result_t r = decompress(type, in, n, limit);
  FUZZ_CHECK(r.rc == MPRPC_EINVAL);
  uint8_t *z = NULL;
  size_t zlen = LEN_SENTINEL;
  FUZZ_CHECK(mprpc__compress(type, in, n, &z, &zlen) == MPRPC_EINVAL);
  FUZZ_CHECK(z == NULL && zlen == LEN_SENTINEL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t tsel = size > 0 ? data[0] : 0;
  uint8_t lsel = size > 1 ? data[1] : 0;
  int type = tsel % 4;
  size_t limit = lsel % 22 <= 20 ? (size_t)1 << (lsel % 22) : 0;

  /* An exact-size copy of the stream: ASan then catches any read past it. */
  size_t n = size > 2 ? size - 2 : 0;
  uint8_t *in = NULL;
  if (n) {
    in = malloc(n);
    FUZZ_CHECK(in != NULL);
    memcpy(in, data + 2, n);
  }

  if (type == MPRPC_COMPRESS_NONE) {
    check_not_a_type(MPRPC_COMPRESS_NONE, in, n, limit);
    check_not_a_type(4 + tsel / 4, in, n, limit); /* 4..67 */
    check_not_a_type(-1 - tsel, in, n, limit);
    free(in);
    return 0;
  }
  FUZZ_CHECK(mprpc__compress_known(type));

  ref_t ref = reference(type, in, n);
  result_t r = decompress(type, in, n, limit);
  FUZZ_CHECK(r.rc != MPRPC_EINVAL);
  check_against_reference(&r, &ref, limit);

  /* C4: the largest limit */
  result_t big = decompress(type, in, n, MAX_LIMIT);
  FUZZ_CHECK(big.rc != MPRPC_EINVAL);
  check_against_reference(&big, &ref, MAX_LIMIT);
  if (big.rc != MPRPC_ENOMEM) {
    if (r.rc == 0) {
      FUZZ_CHECK(big.rc == 0);
      FUZZ_CHECK(same(&big, r.out, r.len));
    } else if (r.rc == MPRPC_ERANGE) {
      FUZZ_CHECK(big.rc == MPRPC_ERANGE || big.rc == MPRPC_EREQUEST ||
                 (big.rc == 0 && big.len > limit));
    } else if (r.rc == MPRPC_EREQUEST) {
      FUZZ_CHECK(big.rc == MPRPC_EREQUEST);
    }
  }
  free(big.out);

  if (r.rc == 0)
    check_round_trip(type, &r);
  free(r.out);
  free(in);
  return 0;
}
