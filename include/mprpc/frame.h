/*
 * baidu_std frame codec (brpc-compatible). docs/protocol.md is normative.
 *
 *   "PRPC" | body_size (u32 BE) | meta_size (u32 BE) | meta | payload | attachment
 *
 * body_size counts meta + payload + attachment; meta_size counts the meta;
 * the attachment is the last RpcMeta.attachment_size bytes of the body.
 *
 * The decoder is incremental and allocation-free (picohttpparser style):
 * mprpc_frame_parse() returns the number of bytes one complete frame used, 0
 * when more bytes are needed, or a negative MPRPC_E* code. Views in the
 * parsed frame point into the caller's buffer. The size limit is checked on
 * the 12-byte header, before any body is awaited. Feeding a stream in any
 * split gives the same frames as feeding it at once.
 *
 * The RpcMeta is decoded by a small hand-written protobuf reader (no
 * allocation; unknown fields, including brpc's 6 and 8-13, are skipped). The
 * normative schema is src/proto/rpc_meta.proto; the tests check both agree.
 */
#ifndef MPRPC_FRAME_H
#define MPRPC_FRAME_H

#include "mprpc/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

MPRPC_BEGIN_DECLS

#define MPRPC_FRAME_HEADER_LEN 12
#define MPRPC_FRAME_DEFAULT_MAX_BODY (64u * 1024u * 1024u)

/* A view of bytes owned by someone else (not NUL-terminated). */
typedef struct mprpc_bytes {
  const uint8_t *ptr;
  size_t len;
} mprpc_bytes_t;

#define MPRPC_BYTES(str) ((mprpc_bytes_t){(const uint8_t *)(str), sizeof(str) - 1})
mprpc_bytes_t mprpc_bytes_str(const char *s); /* NULL gives {NULL, 0} */
bool mprpc_bytes_eq(mprpc_bytes_t a, const char *s);

enum {
  MPRPC_COMPRESS_NONE = 0,
  MPRPC_COMPRESS_SNAPPY = 1,
  MPRPC_COMPRESS_GZIP = 2,
  MPRPC_COMPRESS_ZLIB = 3,
};

/* RpcMeta, flattened. has_request / has_response say which sub-message was
 * present; fields of an absent sub-message are zero. */
typedef struct mprpc_meta {
  bool has_request;
  bool has_response;
  /* RpcRequestMeta */
  mprpc_bytes_t service_name; /* 1, package.Service */
  mprpc_bytes_t method_name;  /* 2 */
  int64_t log_id;             /* 3 */
  int64_t trace_id;           /* 4 */
  int64_t span_id;            /* 5 */
  int64_t parent_span_id;     /* 6 */
  mprpc_bytes_t request_id;   /* 7 */
  int32_t timeout_ms;         /* 8; 0 when absent */
  /* RpcResponseMeta */
  int32_t error_code;         /* 1, positive brpc code on the wire */
  mprpc_bytes_t error_text;   /* 2 */
  /* RpcMeta */
  int32_t compress_type;      /* 3 */
  int64_t correlation_id;     /* 4 */
  int32_t attachment_size;    /* 5 */
  mprpc_bytes_t auth_data;    /* 7 */
  int32_t content_type;       /* 10, brpc: 0 protobuf, 1 json, 2 proto-json,
                                 3 proto-text; mprpc serves only 0 */
} mprpc_meta_t;

typedef struct mprpc_frame {
  mprpc_meta_t meta;
  mprpc_bytes_t payload;
  mprpc_bytes_t attachment;
  size_t frame_len; /* header + body: bytes this frame occupies */
} mprpc_frame_t;

/* Parses one frame from the front of buf.
 *  > 0  a complete frame of that many bytes; *f describes it.
 *  0    incomplete. f->frame_len is the full frame's length once the header
 *       is complete (so the caller can reserve), else MPRPC_FRAME_HEADER_LEN.
 *  < 0  MPRPC_EBADMAGIC, MPRPC_EBADSIZE (meta_size > body_size),
 *       MPRPC_ETOOBIG (body_size > max_body), MPRPC_EBADATTACH
 *       (attachment_size negative or larger than what follows the meta),
 *       MPRPC_EBADMETA (meta does not decode), MPRPC_ENONAME (request meta
 *       with service_name or method_name absent or empty). The stream
 *       cannot be resynced. Checked in this order: magic (on whatever
 *       prefix is there), ETOOBIG, EBADSIZE, then once the frame is
 *       complete EBADMETA, ENONAME, EBADATTACH.
 * max_body == 0 means MPRPC_FRAME_DEFAULT_MAX_BODY. */
long mprpc_frame_parse(const uint8_t *buf, size_t len, uint32_t max_body, mprpc_frame_t *f);

/* Decodes a serialized RpcMeta into views over p. 0 or MPRPC_EBADMETA. */
int mprpc_meta_decode(const uint8_t *p, size_t n, mprpc_meta_t *m);
/* Exact serialized size of m, and serialization into out (which must hold
 * that many bytes). Zero-valued optional fields are omitted; a request
 * sub-message is written when has_request, likewise for has_response. */
size_t mprpc_meta_size(const mprpc_meta_t *m);
size_t mprpc_meta_write(const mprpc_meta_t *m, uint8_t *out);

/* Encoder: header + meta in one buffer, then payload and attachment as
 * separate iovecs so a transport can writev them without copying. */
#define MPRPC_FRAME_INLINE_HEAD 256
#define MPRPC_FRAME_MAX_PAYLOAD_IOV 6
typedef struct mprpc_frame_out {
  struct iovec iov[2 + MPRPC_FRAME_MAX_PAYLOAD_IOV];
  int iovcnt;
  size_t total;
  uint8_t *head; /* points at inline or at a heap block */
  uint8_t inline_head[MPRPC_FRAME_INLINE_HEAD];
} mprpc_frame_out_t;

/* Builds the frame for meta m (its attachment_size is set from att_len).
 * payload/attachment are referenced, not copied: keep them alive until the
 * iovecs are written. Returns 0, MPRPC_ETOOBIG (body over 4 GiB - 1) or
 * MPRPC_ENOMEM. Call mprpc_frame_out_free after use, even on error. */
int mprpc_frame_encode(mprpc_frame_out_t *out, const mprpc_meta_t *m, const void *payload,
                       size_t payload_len, const void *attachment, size_t att_len);
/* The same with the payload in pieces (at most MPRPC_FRAME_MAX_PAYLOAD_IOV,
 * else MPRPC_EINVAL), referenced in order. */
int mprpc_frame_encode_iov(mprpc_frame_out_t *out, const mprpc_meta_t *m,
                           const struct iovec *payload, int payload_cnt, const void *attachment,
                           size_t att_len);
void mprpc_frame_out_free(mprpc_frame_out_t *out);

MPRPC_END_DECLS
#endif
