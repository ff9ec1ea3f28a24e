/* See compress.h. gzip and zlib are zlib's deflate with a gzip or zlib
 * wrapper (brpc's gzip/zlib compress types); snappy is the raw snappy
 * format (no framing), as brpc writes it. */
#include "compress.h"

#include <limits.h>
#include <stdbool.h>
#include <snappy-c.h>
#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

#include "mprpc/errors.h"
#include "mprpc/frame.h"

/* zlib's window bits: 15 with a zlib header, +16 for a gzip one. */
static int window_bits(int type) { return type == MPRPC_COMPRESS_GZIP ? 15 + 16 : 15; }

static int deflate_all(int type, const uint8_t *in, size_t n, uint8_t **out, size_t *out_len) {
  if (n > UINT_MAX)
    return MPRPC_EINVAL;
  z_stream z = {0};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits(type), 8,
                   Z_DEFAULT_STRATEGY) != Z_OK)
    return MPRPC_ENOMEM;
  /* deflateBound is exact enough for one Z_FINISH call with a gzip header
   * of no name/comment/extra (zlib's default). */
  uLong cap = deflateBound(&z, (uLong)n);
  uint8_t *buf = malloc(cap ? cap : 1);
  if (!buf) {
    deflateEnd(&z);
    return MPRPC_ENOMEM;
  }
  z.next_in = (Bytef *)(uintptr_t)in;
  z.avail_in = (uInt)n;
  z.next_out = buf;
  z.avail_out = (uInt)cap;
  int zr = deflate(&z, Z_FINISH);
  size_t len = (size_t)z.total_out;
  deflateEnd(&z);
  if (zr != Z_STREAM_END) {
    free(buf);
    return MPRPC_ENOMEM;
  }
  *out = buf;
  *out_len = len;
  return 0;
}

static int inflate_all(int type, const uint8_t *in, size_t n, size_t limit, uint8_t **out,
                       size_t *out_len) {
  if (n > UINT_MAX)
    return MPRPC_ERANGE;
  if (limit > SIZE_MAX / 4)
    limit = SIZE_MAX / 4; /* so that limit + 1 and the doubling cannot wrap */
  z_stream z = {0};
  if (inflateInit2(&z, window_bits(type)) != Z_OK)
    return MPRPC_ENOMEM;
  /* Start near the input's size and double, never past limit (+1 to tell
   * "exactly limit" from "more"). */
  size_t cap = n < 64 ? 256 : n * 4;
  if (cap > limit + 1)
    cap = limit + 1;
  uint8_t *buf = malloc(cap);
  if (!buf) {
    inflateEnd(&z);
    return MPRPC_ENOMEM;
  }
  z.next_in = (Bytef *)(uintptr_t)in;
  z.avail_in = (uInt)n;
  size_t len = 0;
  int rc = 0;
  for (;;) {
    if (len == cap) {
      if (cap > limit) {
        rc = MPRPC_ERANGE;
        break;
      }
      size_t ncap = cap * 2 > limit + 1 ? limit + 1 : cap * 2;
      uint8_t *nb = realloc(buf, ncap);
      if (!nb) {
        rc = MPRPC_ENOMEM;
        break;
      }
      buf = nb;
      cap = ncap;
    }
    size_t room = cap - len;
    z.next_out = buf + len;
    z.avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
    uInt before = z.avail_out;
    int zr = inflate(&z, Z_NO_FLUSH);
    len += before - z.avail_out;
    if (zr == Z_STREAM_END) {
      if (len > limit)
        rc = MPRPC_ERANGE;
      else if (z.avail_in != 0)
        rc = MPRPC_EREQUEST; /* bytes after the stream */
      break;
    }
    if (zr == Z_MEM_ERROR) {
      rc = MPRPC_ENOMEM;
      break;
    }
    if (zr != Z_OK && zr != Z_BUF_ERROR) {
      rc = MPRPC_EREQUEST;
      break;
    }
    if (zr == Z_BUF_ERROR && z.avail_out != 0) {
      rc = MPRPC_EREQUEST; /* input ended before the stream did */
      break;
    }
  }
  inflateEnd(&z);
  if (rc) {
    free(buf);
    return rc;
  }
  *out = buf;
  *out_len = len;
  return 0;
}

/* The checks both directions make; a NULL input of length 0 reads as empty. */
static bool args_ok(const uint8_t **in, size_t n, uint8_t **out, size_t *out_len) {
  static const uint8_t none[1];
  if (!out || !out_len || (n && !*in))
    return false;
  if (!*in)
    *in = none;
  return true;
}

int mprpc__compress(int type, const uint8_t *in, size_t n, uint8_t **out, size_t *out_len) {
  if (!args_ok(&in, n, out, out_len))
    return MPRPC_EINVAL;
  switch (type) {
  case MPRPC_COMPRESS_GZIP:
  case MPRPC_COMPRESS_ZLIB:
    return deflate_all(type, in, n, out, out_len);
  case MPRPC_COMPRESS_SNAPPY: {
    if (n > UINT32_MAX) /* snappy's length header is 32 bits */
      return MPRPC_EINVAL;
    size_t cap = snappy_max_compressed_length(n);
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf)
      return MPRPC_ENOMEM;
    size_t len = cap;
    if (snappy_compress((const char *)in, n, (char *)buf, &len) != SNAPPY_OK) {
      free(buf);
      return MPRPC_ENOMEM;
    }
    *out = buf;
    *out_len = len;
    return 0;
  }
  default:
    return MPRPC_EINVAL;
  }
}

int mprpc__decompress(int type, const uint8_t *in, size_t n, size_t limit, uint8_t **out,
                      size_t *out_len) {
  if (!args_ok(&in, n, out, out_len))
    return MPRPC_EINVAL;
  switch (type) {
  case MPRPC_COMPRESS_GZIP:
  case MPRPC_COMPRESS_ZLIB:
    return inflate_all(type, in, n, limit, out, out_len);
  case MPRPC_COMPRESS_SNAPPY: {
    size_t len;
    if (snappy_uncompressed_length((const char *)in, n, &len) != SNAPPY_OK)
      return MPRPC_EREQUEST;
    if (len > limit)
      return MPRPC_ERANGE;
    /* Checked before allocating: a few bytes declaring a length just under
     * the limit must not reserve that much. One pass, no allocation. */
    if (snappy_validate_compressed_buffer((const char *)in, n) != SNAPPY_OK)
      return MPRPC_EREQUEST;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
      return MPRPC_ENOMEM;
    size_t got = len;
    if (snappy_uncompress((const char *)in, n, (char *)buf, &got) != SNAPPY_OK || got != len) {
      free(buf);
      return MPRPC_EREQUEST;
    }
    *out = buf;
    *out_len = len;
    return 0;
  }
  default:
    return MPRPC_EINVAL;
  }
}

int mprpc__decompress_payload(int type, const uint8_t *in, size_t n, uint32_t max_body,
                              uint8_t **out, size_t *out_len, const char **why) {
  int rc = mprpc__decompress(type, in, n, max_body ? max_body : MPRPC_FRAME_DEFAULT_MAX_BODY, out,
                             out_len);
  *why = rc == 0               ? ""
         : rc == MPRPC_ERANGE  ? "inflates past the body limit"
         : rc == MPRPC_ENOMEM ? "could not be inflated: out of memory"
                               : "is not a valid compressed stream";
  return rc;
}
