/*
 * baidu_std frame codec and the allocation-free RpcMeta reader/writer.
 *
 * The meta is protobuf wire format, read by hand rather than through
 * protobuf_c_message_unpack because this runs once per RPC in each direction
 * and must not allocate: strings become views into the caller's buffer.
 * Semantics follow the protobuf spec (and thus brpc, which uses Google's
 * runtime): a known field number with an unexpected wire type is treated as
 * an unknown field and skipped; a singular field seen twice keeps the last
 * value; a sub-message seen twice is merged. int32 fields are plain varints
 * (negative values take ten bytes, sign-extended), never zigzag.
 */
#include "mprpc/frame.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"

/* Wire types. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

#define TAG(field, wt) (((uint64_t)(field) << 3) | (uint64_t)(wt))

/* Nesting bound for unknown groups; Google's runtime allows 100 levels of
 * recursion, but no field mprpc understands lives inside a group, so a small
 * bound only limits how much stack a hostile peer can make us use. */
#define MAX_GROUP_DEPTH 32

mprpc_bytes_t mprpc_bytes_str(const char *s) {
  mprpc_bytes_t b = {NULL, 0};
  if (s) {
    b.ptr = (const uint8_t *)s;
    b.len = strlen(s);
  }
  return b;
}

bool mprpc_bytes_eq(mprpc_bytes_t a, const char *s) {
  size_t n = s ? strlen(s) : 0;
  return a.len == n && (n == 0 || memcmp(a.ptr, s, n) == 0);
}

/* ---- reading ------------------------------------------------------------ */

/* Reads a varint of at most 10 bytes; bits beyond 64 in the tenth byte are
 * dropped (as protobuf-c and Google's runtime do). Returns the position after
 * it, or NULL when the input ends first or the varint is longer than 10. */
static inline const uint8_t *get_varint(const uint8_t *p, const uint8_t *end, uint64_t *out) {
  if (p < end && *p < 0x80) { /* one byte: tags and small values */
    *out = *p;
    return p + 1;
  }
  if (end - p >= 2 && p[1] < 0x80) { /* two: timeouts, early correlation ids */
    *out = (uint64_t)(p[0] & 0x7f) | (uint64_t)p[1] << 7;
    return p + 2;
  }
  size_t avail = (size_t)(end - p);
  size_t max = avail < 10 ? avail : 10;
  uint64_t v = 0;
  for (size_t i = 0; i < max; i++) {
    uint64_t b = p[i];
    v |= (b & 0x7f) << (7 * i);
    if (b < 0x80) {
      *out = v;
      return p + i + 1;
    }
  }
  return NULL;
}

/* A field key, (field_number << 3) | wire_type: a varint of at most 5 bytes,
 * so the field number has at most 32 bits (as in protobuf-c and Google's
 * runtime, which both stop at 5 bytes). Field number 0 is not rejected here:
 * it is skipped like any unknown field (protobuf-c does the same for a
 * non-minimally encoded 0), so nothing protobuf-c accepts is refused. */
static inline const uint8_t *get_key(const uint8_t *p, const uint8_t *end, uint64_t *key) {
  const uint8_t *q = get_varint(p, end, key);
  return (q && q - p <= 5) ? q : NULL;
}

/* A length-delimited field's bytes. */
static inline const uint8_t *get_bytes(const uint8_t *p, const uint8_t *end, mprpc_bytes_t *out) {
  uint64_t n;
  p = get_varint(p, end, &n);
  if (!p || n > (uint64_t)(end - p))
    return NULL;
  out->ptr = p;
  out->len = (size_t)n;
  return p + n;
}

/* Skips the value of an unknown field whose tag was just read. For a start
 * group, skips through the matching end group. */
static const uint8_t *skip_field(const uint8_t *p, const uint8_t *end, uint64_t tag, int depth) {
  uint64_t v;
  mprpc_bytes_t b;
  switch (tag & 7) {
  case WT_VARINT:
    return get_varint(p, end, &v);
  case WT_I64:
    return (end - p) >= 8 ? p + 8 : NULL;
  case WT_I32:
    return (end - p) >= 4 ? p + 4 : NULL;
  case WT_LEN:
    return get_bytes(p, end, &b);
  case WT_SGROUP:
    if (depth >= MAX_GROUP_DEPTH)
      return NULL;
    for (;;) {
      uint64_t t;
      p = get_key(p, end, &t);
      if (!p)
        return NULL;
      if ((t & 7) == WT_EGROUP)
        return (t >> 3) == (tag >> 3) ? p : NULL;
      p = skip_field(p, end, t, depth + 1);
      if (!p)
        return NULL;
    }
  default: /* a stray end group, or wire types 6 and 7 */
    return NULL;
  }
}

/* Encoders write fields in number order (protobuf's and ours do), so the
 * readers below first take the fields they expect, in that order, each with
 * a one-byte compare; whatever follows (other orders, repeats, unknown
 * fields) goes through the general loop. Fields are applied in wire order
 * either way, so the result is the same as the loop's alone. */
#define TAKE_BYTES(tag, dst)                                                              \
  if (p < end && *p == (tag) && !(p = get_bytes(p + 1, end, (dst))))                     \
    return MPRPC_EBADMETA;
#define TAKE_VARINT(tag, dst, type, via)                                                  \
  if (p < end && *p == (tag)) {                                                          \
    uint64_t v_;                                                                          \
    if (!(p = get_varint(p + 1, end, &v_)))                                               \
      return MPRPC_EBADMETA;                                                              \
    (dst) = (type)(via)v_;                                                                \
  }
#define TAKE_SUB(tag, has, decode)                                                        \
  if (p < end && *p == (tag)) {                                                          \
    if (!(p = get_bytes(p + 1, end, &sub)))                                               \
      return MPRPC_EBADMETA;                                                              \
    m->has = true;                                                                        \
    if (decode(sub.ptr, sub.ptr + sub.len, m) != 0)                                       \
      return MPRPC_EBADMETA;                                                              \
  }

static int decode_request(const uint8_t *p, const uint8_t *end, mprpc_meta_t *m) {
  TAKE_BYTES(TAG(1, WT_LEN), &m->service_name)
  TAKE_BYTES(TAG(2, WT_LEN), &m->method_name)
  TAKE_VARINT(TAG(3, WT_VARINT), m->log_id, int64_t, uint64_t)
  TAKE_VARINT(TAG(4, WT_VARINT), m->trace_id, int64_t, uint64_t)
  TAKE_VARINT(TAG(5, WT_VARINT), m->span_id, int64_t, uint64_t)
  TAKE_VARINT(TAG(6, WT_VARINT), m->parent_span_id, int64_t, uint64_t)
  TAKE_BYTES(TAG(7, WT_LEN), &m->request_id)
  TAKE_VARINT(TAG(8, WT_VARINT), m->timeout_ms, int32_t, uint32_t)
  while (p < end) {
    uint64_t tag, v;
    p = get_key(p, end, &tag);
    if (!p)
      return MPRPC_EBADMETA;
    switch (tag) {
    case TAG(1, WT_LEN): p = get_bytes(p, end, &m->service_name); break;
    case TAG(2, WT_LEN): p = get_bytes(p, end, &m->method_name); break;
    case TAG(3, WT_VARINT):
      if ((p = get_varint(p, end, &v)))
        m->log_id = (int64_t)v;
      break;
    case TAG(4, WT_VARINT):
      if ((p = get_varint(p, end, &v)))
        m->trace_id = (int64_t)v;
      break;
    case TAG(5, WT_VARINT):
      if ((p = get_varint(p, end, &v)))
        m->span_id = (int64_t)v;
      break;
    case TAG(6, WT_VARINT):
      if ((p = get_varint(p, end, &v)))
        m->parent_span_id = (int64_t)v;
      break;
    case TAG(7, WT_LEN): p = get_bytes(p, end, &m->request_id); break;
    case TAG(8, WT_VARINT):
      if ((p = get_varint(p, end, &v)))
        m->timeout_ms = (int32_t)(uint32_t)v;
      break;
    default: p = skip_field(p, end, tag, 0); break;
    }
    if (!p)
      return MPRPC_EBADMETA;
  }
  return 0;
}

static int decode_response(const uint8_t *p, const uint8_t *end, mprpc_meta_t *m) {
  TAKE_VARINT(TAG(1, WT_VARINT), m->error_code, int32_t, uint32_t)
  TAKE_BYTES(TAG(2, WT_LEN), &m->error_text)
  while (p < end) {
    uint64_t tag, v;
    p = get_key(p, end, &tag);
    if (!p)
      return MPRPC_EBADMETA;
    switch (tag) {
    case TAG(1, WT_VARINT):
      if ((p = get_varint(p, end, &v)))
        m->error_code = (int32_t)(uint32_t)v;
      break;
    case TAG(2, WT_LEN): p = get_bytes(p, end, &m->error_text); break;
    default: p = skip_field(p, end, tag, 0); break;
    }
    if (!p)
      return MPRPC_EBADMETA;
  }
  return 0;
}

int mprpc_meta_decode(const uint8_t *p, size_t n, mprpc_meta_t *m) {
  memset(m, 0, sizeof *m);
  if (n == 0) /* p may be NULL then, and NULL + 0 is undefined */
    return 0;
  const uint8_t *end = p + n;
  mprpc_bytes_t sub;
  TAKE_SUB(TAG(1, WT_LEN), has_request, decode_request)
  TAKE_SUB(TAG(2, WT_LEN), has_response, decode_response)
  TAKE_VARINT(TAG(3, WT_VARINT), m->compress_type, int32_t, uint32_t)
  TAKE_VARINT(TAG(4, WT_VARINT), m->correlation_id, int64_t, uint64_t)
  TAKE_VARINT(TAG(5, WT_VARINT), m->attachment_size, int32_t, uint32_t)
  TAKE_BYTES(TAG(7, WT_LEN), &m->auth_data)
  TAKE_VARINT(TAG(10, WT_VARINT), m->content_type, int32_t, uint32_t)
  while (p < end) {
    uint64_t tag, v;
    int rc = 0;
    p = get_key(p, end, &tag);
    if (!p)
      return MPRPC_EBADMETA;
    switch (tag) {
    case TAG(1, WT_LEN):
      if ((p = get_bytes(p, end, &sub))) {
        m->has_request = true;
        rc = decode_request(sub.ptr, sub.ptr + sub.len, m);
      }
      break;
    case TAG(2, WT_LEN):
      if ((p = get_bytes(p, end, &sub))) {
        m->has_response = true;
        rc = decode_response(sub.ptr, sub.ptr + sub.len, m);
      }
      break;
    case TAG(3, WT_VARINT):
      if ((p = get_varint(p, end, &v)))
        m->compress_type = (int32_t)(uint32_t)v;
      break;
    case TAG(4, WT_VARINT):
      if ((p = get_varint(p, end, &v)))
        m->correlation_id = (int64_t)v;
      break;
    case TAG(5, WT_VARINT):
      if ((p = get_varint(p, end, &v)))
        m->attachment_size = (int32_t)(uint32_t)v;
      break;
    case TAG(7, WT_LEN): p = get_bytes(p, end, &m->auth_data); break;
    case TAG(10, WT_VARINT):
      if ((p = get_varint(p, end, &v)))
        m->content_type = (int32_t)(uint32_t)v;
      break;
    default: p = skip_field(p, end, tag, 0); break;
    }
    if (!p || rc)
      return MPRPC_EBADMETA;
  }
  return 0;
}

/* ---- writing ------------------------------------------------------------ */

static inline size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static inline uint8_t *put_varint(uint8_t *o, uint64_t v) {
  while (v >= 0x80) {
    *o++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *o++ = (uint8_t)v;
  return o;
}

/* int32 is sign-extended to 64 bits before encoding, as protobuf does. */
static inline uint64_t i32w(int32_t v) { return (uint64_t)(int64_t)v; }

/* Size of a field with a one-byte tag (all of ours are). */
static inline size_t vfield_len(uint64_t v) { return 1 + varint_len(v); }
static inline size_t bfield_len(size_t n) { return 1 + varint_len(n) + n; }

static size_t request_len(const mprpc_meta_t *m) {
  /* service_name and method_name are proto2 `required`: always written. */
  size_t n = bfield_len(m->service_name.len) + bfield_len(m->method_name.len);
  if (m->log_id) n += vfield_len((uint64_t)m->log_id);
  if (m->trace_id) n += vfield_len((uint64_t)m->trace_id);
  if (m->span_id) n += vfield_len((uint64_t)m->span_id);
  if (m->parent_span_id) n += vfield_len((uint64_t)m->parent_span_id);
  if (m->request_id.len) n += bfield_len(m->request_id.len);
  if (m->timeout_ms) n += vfield_len(i32w(m->timeout_ms));
  return n;
}

static size_t response_len(const mprpc_meta_t *m) {
  size_t n = 0;
  if (m->error_code) n += vfield_len(i32w(m->error_code));
  if (m->error_text.len) n += bfield_len(m->error_text.len);
  return n;
}

/* The exact size; the encoder does not need it (it writes in one pass), so
 * this serves mprpc_meta_size alone. */
size_t mprpc_meta_size(const mprpc_meta_t *m) {
  size_t n = 0;
  if (m->has_request) n += bfield_len(request_len(m));
  if (m->has_response) n += bfield_len(response_len(m));
  if (m->compress_type) n += vfield_len(i32w(m->compress_type));
  if (m->correlation_id) n += vfield_len((uint64_t)m->correlation_id);
  if (m->attachment_size) n += vfield_len(i32w(m->attachment_size));
  if (m->auth_data.len) n += bfield_len(m->auth_data.len);
  if (m->content_type) n += vfield_len(i32w(m->content_type));
  return n;
}

static inline uint8_t *put_vfield(uint8_t *o, uint32_t field, uint64_t v) {
  *o++ = (uint8_t)TAG(field, WT_VARINT);
  return put_varint(o, v);
}

static inline uint8_t *put_bfield(uint8_t *o, uint32_t field, const void *p, size_t n) {
  *o++ = (uint8_t)TAG(field, WT_LEN);
  o = put_varint(o, n);
  if (n)
    memcpy(o, p, n);
  return o + n;
}

/* A sub-message's length prefix, written after its fields: one byte is
 * reserved for it, which holds any length below 128 (the common case: names
 * and ids); a longer sub-message is moved up to make room. */
static inline uint8_t *close_sub(uint8_t *len_at, uint8_t *o) {
  size_t n = (size_t)(o - (len_at + 1));
  if (n < 0x80) {
    *len_at = (uint8_t)n;
    return o;
  }
  size_t extra = varint_len(n) - 1;
  if (extra) {
    memmove(len_at + 1 + extra, len_at + 1, n);
    o += extra;
  }
  put_varint(len_at, n);
  return o;
}

/* One pass, no sizing: out must hold mprpc_meta_size(m) bytes (or the
 * bound of meta_bound, which is larger). The attachment size is passed
 * apart, so the encoder need not copy the meta to set it. */
static size_t meta_write(const mprpc_meta_t *m, int32_t attachment_size, uint8_t *out) {
  uint8_t *o = out, *len_at;
  if (m->has_request) {
    *o++ = (uint8_t)TAG(1, WT_LEN);
    len_at = o++;
    o = put_bfield(o, 1, m->service_name.ptr, m->service_name.len);
    o = put_bfield(o, 2, m->method_name.ptr, m->method_name.len);
    if (m->log_id) o = put_vfield(o, 3, (uint64_t)m->log_id);
    if (m->trace_id) o = put_vfield(o, 4, (uint64_t)m->trace_id);
    if (m->span_id) o = put_vfield(o, 5, (uint64_t)m->span_id);
    if (m->parent_span_id) o = put_vfield(o, 6, (uint64_t)m->parent_span_id);
    if (m->request_id.len) o = put_bfield(o, 7, m->request_id.ptr, m->request_id.len);
    if (m->timeout_ms) o = put_vfield(o, 8, i32w(m->timeout_ms));
    o = close_sub(len_at, o);
  }
  if (m->has_response) {
    *o++ = (uint8_t)TAG(2, WT_LEN);
    len_at = o++;
    if (m->error_code) o = put_vfield(o, 1, i32w(m->error_code));
    if (m->error_text.len) o = put_bfield(o, 2, m->error_text.ptr, m->error_text.len);
    o = close_sub(len_at, o);
  }
  if (m->compress_type) o = put_vfield(o, 3, i32w(m->compress_type));
  if (m->correlation_id) o = put_vfield(o, 4, (uint64_t)m->correlation_id);
  if (attachment_size) o = put_vfield(o, 5, i32w(attachment_size));
  if (m->auth_data.len) o = put_bfield(o, 7, m->auth_data.ptr, m->auth_data.len);
  if (m->content_type) o = put_vfield(o, 10, i32w(m->content_type));
  return (size_t)(o - out);
}

size_t mprpc_meta_write(const mprpc_meta_t *m, uint8_t *out) {
  return meta_write(m, m->attachment_size, out);
}

/* An upper bound of the meta's size that costs no field walk: every field
 * at its widest (a tag byte and a 10-byte varint; a bytes field's length
 * prefix at most 10 bytes too), plus the bytes themselves. */
#define META_FIXED_BOUND (2 * 11 /* sub-message keys + lengths */ + 15 * 11)
static size_t meta_bound(const mprpc_meta_t *m) {
  return META_FIXED_BOUND + m->service_name.len + m->method_name.len + m->request_id.len +
         m->error_text.len + m->auth_data.len;
}

/* ---- frames ------------------------------------------------------------- */

/* Where the byte order is known: one load or store and a byte swap (GCC
 * did not see through the shift-and-or form here and built each header
 * word byte by byte, ~30 instructions a frame). */
#if defined(__BYTE_ORDER__) && (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ || \
                                __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
static inline uint32_t be32_host(uint32_t v) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return __builtin_bswap32(v);
#else
  return v;
#endif
}

static inline uint32_t get_be32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return be32_host(v);
}

static inline void put_be32(uint8_t *p, uint32_t v) {
  v = be32_host(v);
  memcpy(p, &v, 4);
}
#else
static inline uint32_t get_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
#endif

long mprpc_frame_parse(const uint8_t *buf, size_t len, uint32_t max_body, mprpc_frame_t *f) {
  static const uint8_t magic[4] = {'P', 'R', 'P', 'C'};
  f->frame_len = MPRPC_FRAME_HEADER_LEN;
  /* Reject garbage as soon as it differs from the magic: a prefix with a
   * bad magic can only grow into a frame with a bad magic. */
  if (len < MPRPC_FRAME_HEADER_LEN) {
    for (size_t i = 0; i < len && i < 4; i++)
      if (buf[i] != magic[i])
        return MPRPC_EBADMAGIC;
    return 0;
  }
  if (memcmp(buf, magic, 4) != 0)
    return MPRPC_EBADMAGIC;
  if (max_body == 0)
    max_body = MPRPC_FRAME_DEFAULT_MAX_BODY;
  uint32_t body_size = get_be32(buf + 4);
  uint32_t meta_size = get_be32(buf + 8);
  if (body_size > max_body)
    return MPRPC_ETOOBIG;
  if (meta_size > body_size)
    return MPRPC_EBADSIZE;
  size_t frame_len = (size_t)MPRPC_FRAME_HEADER_LEN + body_size;
#if LONG_MAX == 2147483647L
  if (frame_len > (size_t)LONG_MAX) /* a return value must fit a 32-bit long */
    return MPRPC_ETOOBIG;
#endif
  f->frame_len = frame_len;
  if (len < frame_len)
    return 0;

  const uint8_t *body = buf + MPRPC_FRAME_HEADER_LEN;
  mprpc_meta_t *m = &f->meta;
  if (mprpc_meta_decode(body, meta_size, m) != 0)
    return MPRPC_EBADMETA;
  if (m->has_request && (m->service_name.len == 0 || m->method_name.len == 0))
    return MPRPC_ENONAME;
  uint32_t rest = body_size - meta_size;
  if (m->attachment_size < 0 || (uint32_t)m->attachment_size > rest)
    return MPRPC_EBADATTACH;
  uint32_t att = (uint32_t)m->attachment_size;
  f->payload.ptr = body + meta_size;
  f->payload.len = rest - att;
  f->attachment.ptr = body + meta_size + (rest - att);
  f->attachment.len = att;
  return (long)frame_len;
}

int mprpc_frame_encode(mprpc_frame_out_t *out, const mprpc_meta_t *m, const void *payload,
                       size_t payload_len, const void *attachment, size_t att_len) {
  struct iovec pl = {(void *)(uintptr_t)payload, payload_len};
  return mprpc_frame_encode_iov(out, m, &pl, 1, attachment, att_len);
}

int mprpc_frame_encode_iov(mprpc_frame_out_t *out, const mprpc_meta_t *m,
                           const struct iovec *payload, int payload_cnt, const void *attachment,
                           size_t att_len) {
  out->head = out->inline_head;
  out->iovcnt = 0;
  out->total = 0;
  if (payload_cnt < 0 || payload_cnt > MPRPC_FRAME_MAX_PAYLOAD_IOV || (payload_cnt && !payload))
    return MPRPC_EINVAL;
  size_t payload_len = 0;
  for (int i = 0; i < payload_cnt; i++) {
    if (payload[i].iov_len > UINT32_MAX - payload_len)
      return MPRPC_ETOOBIG;
    payload_len += payload[i].iov_len;
  }
  if (att_len > INT32_MAX)
    return MPRPC_ETOOBIG;
  size_t bound = MPRPC_FRAME_HEADER_LEN + meta_bound(m);
  if (bound - MPRPC_FRAME_HEADER_LEN - META_FIXED_BOUND > UINT32_MAX)
    return MPRPC_ETOOBIG; /* its strings alone are over 4 GiB */
  if (bound > sizeof out->inline_head) {
    out->head = malloc(bound);
    if (!out->head) {
      out->head = out->inline_head;
      return MPRPC_ENOMEM;
    }
  }
  uint8_t *h = out->head;
  size_t meta_len = meta_write(m, (int32_t)att_len, h + MPRPC_FRAME_HEADER_LEN);
  if (meta_len > UINT32_MAX || meta_len + payload_len + att_len > UINT32_MAX) {
    mprpc_frame_out_free(out);
    return MPRPC_ETOOBIG;
  }
  size_t head_len = MPRPC_FRAME_HEADER_LEN + meta_len;
  memcpy(h, "PRPC", 4);
  put_be32(h + 4, (uint32_t)(meta_len + payload_len + att_len));
  put_be32(h + 8, (uint32_t)meta_len);

  out->iov[0].iov_base = h;
  out->iov[0].iov_len = head_len;
  out->iovcnt = 1;
  for (int i = 0; i < payload_cnt; i++)
    if (payload[i].iov_len)
      out->iov[out->iovcnt++] = payload[i];
  if (att_len) {
    out->iov[out->iovcnt].iov_base = (void *)(uintptr_t)attachment;
    out->iov[out->iovcnt].iov_len = att_len;
    out->iovcnt++;
  }
  out->total = head_len + payload_len + att_len;
  return 0;
}

void mprpc_frame_out_free(mprpc_frame_out_t *out) {
  if (out->head && out->head != out->inline_head)
    free(out->head);
  out->head = out->inline_head;
  out->iovcnt = 0;
  out->total = 0;
}
