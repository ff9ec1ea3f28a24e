/*
 * Payload compression of baidu_std (meta field compress_type): snappy (1),
 * gzip (2) and zlib (3), byte-compatible with brpc's. Pure computation, no
 * OS: callable from the core on any thread.
 */
#ifndef MPRPC_CORE_COMPRESS_H
#define MPRPC_CORE_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "mprpc/frame.h" /* MPRPC_COMPRESS_* */

/* True for MPRPC_COMPRESS_{NONE,SNAPPY,GZIP,ZLIB} (inline: every frame asks). */
static inline int mprpc__compress_known(int type) {
  return type >= MPRPC_COMPRESS_NONE && type <= MPRPC_COMPRESS_ZLIB;
}

/* Compresses in[0..n) with type (not NONE) into a malloc'd *out (caller
 * frees; n == 0 gives a valid empty stream). 0, MPRPC_EINVAL (type) or
 * MPRPC_ENOMEM. */
int mprpc__compress(int type, const uint8_t *in, size_t n, uint8_t **out, size_t *out_len);

/* Decompresses in[0..n) of type (not NONE) into a malloc'd *out of at most
 * limit bytes (caller frees; *out may be non-NULL for a 0-byte result).
 * 0; MPRPC_EINVAL (type); MPRPC_ENOMEM; MPRPC_ERANGE (the result would pass
 * limit: checked before and while inflating, so a small bomb cannot make a
 * big allocation); MPRPC_EREQUEST (not a valid stream of that type, or bytes
 * after its end). */
int mprpc__decompress(int type, const uint8_t *in, size_t n, size_t limit, uint8_t **out,
                      size_t *out_len);

/* A frame's payload, for the provider and the channel alike: mprpc__decompress
 * limited to the frame body limit max_body (0 = MPRPC_FRAME_DEFAULT_MAX_BODY),
 * since a compressed payload may not carry more than a plain one could. On
 * failure *why completes "payload (compress_type N) ..." for the error text. */
int mprpc__decompress_payload(int type, const uint8_t *in, size_t n, uint32_t max_body,
                              uint8_t **out, size_t *out_len, const char **why);

#endif
