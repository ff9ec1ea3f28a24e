/*
 * Helpers of the reflection files: the bump pool, a capped allocator for
 * untrusted bytes, type-number mapping, json names and a nesting-depth
 * check run before protobuf-c's recursive unpack (src/util/reflect_int.h).
 */
#include <stdlib.h>
#include <string.h>

#include "util/reflect_int.h"

struct mprpc__mpool_chunk {
  mprpc__mpool_chunk_t *next;
  size_t pad; /* keeps data 16-byte aligned */
  _Alignas(16) unsigned char data[];
};

#define MPOOL_CHUNK 16384

void mprpc__mpool_init(mprpc__mpool_t *p, size_t limit) {
  memset(p, 0, sizeof *p);
  p->limit = limit;
}

void *mprpc__mpool_alloc(mprpc__mpool_t *p, size_t n) {
  if (n > SIZE_MAX / 2)
    return NULL;
  size_t an = n ? (n + 15) & ~(size_t)15 : 16;
  if (!p->head || an > p->room - p->used) {
    size_t cap = an > MPOOL_CHUNK / 4 ? an : MPOOL_CHUNK;
    if (p->limit && (p->total + cap > p->limit || p->total + cap < p->total))
      return NULL;
    mprpc__mpool_chunk_t *c = malloc(sizeof *c + cap);
    if (!c)
      return NULL;
    p->total += cap;
    if (cap > MPOOL_CHUNK && p->head) {
      /* a big piece gets its own chunk behind the head: the head's room
       * stays usable for the small pieces that follow */
      c->next = p->head->next;
      p->head->next = c;
      memset(c->data, 0, an);
      return c->data;
    }
    c->next = p->head;
    p->head = c;
    p->used = 0;
    p->room = cap;
  }
  void *r = p->head->data + p->used;
  p->used += an;
  memset(r, 0, an);
  return r;
}

void *mprpc__mpool_array(mprpc__mpool_t *p, size_t n, size_t sz) {
  if (sz && n > SIZE_MAX / 4 / sz)
    return NULL;
  return mprpc__mpool_alloc(p, n * sz);
}

char *mprpc__mpool_strndup(mprpc__mpool_t *p, const char *s, size_t n) {
  char *r = mprpc__mpool_alloc(p, n + 1);
  if (r) {
    memcpy(r, s, n);
    r[n] = 0;
  }
  return r;
}

char *mprpc__mpool_strdup(mprpc__mpool_t *p, const char *s) {
  return mprpc__mpool_strndup(p, s, strlen(s));
}

void mprpc__mpool_release(mprpc__mpool_t *p) {
  mprpc__mpool_chunk_t *c = p->head;
  while (c) {
    mprpc__mpool_chunk_t *n = c->next;
    free(c);
    c = n;
  }
  memset(p, 0, sizeof *p);
}

/* ---- capped allocator ---------------------------------------------------- */

/* Each block carries its size in front so free can give it back. */
static void *capped_alloc(void *ud, size_t n) {
  mprpc__capped_alloc_t *a = ud;
  if (n > a->limit || a->live > a->limit - n)
    return NULL;
  size_t *b = malloc(n + 16);
  if (!b)
    return NULL;
  b[0] = n;
  a->live += n;
  return (unsigned char *)b + 16;
}

static void capped_free(void *ud, void *ptr) {
  mprpc__capped_alloc_t *a = ud;
  if (!ptr)
    return;
  size_t *b = (size_t *)(void *)((unsigned char *)ptr - 16);
  a->live -= b[0];
  free(b);
}

void mprpc__capped_alloc_init(mprpc__capped_alloc_t *a, size_t limit) {
  a->base.alloc = capped_alloc;
  a->base.free = capped_free;
  a->base.allocator_data = a;
  a->live = 0;
  a->limit = limit;
}

/* ---- types --------------------------------------------------------------- */

/* Indexed by descriptor.proto's number (1..18). */
static const int fdp_to_pbc[19] = {
    -1,
    PROTOBUF_C_TYPE_DOUBLE,   /* 1 */
    PROTOBUF_C_TYPE_FLOAT,    /* 2 */
    PROTOBUF_C_TYPE_INT64,    /* 3 */
    PROTOBUF_C_TYPE_UINT64,   /* 4 */
    PROTOBUF_C_TYPE_INT32,    /* 5 */
    PROTOBUF_C_TYPE_FIXED64,  /* 6 */
    PROTOBUF_C_TYPE_FIXED32,  /* 7 */
    PROTOBUF_C_TYPE_BOOL,     /* 8 */
    PROTOBUF_C_TYPE_STRING,   /* 9 */
    -1,                       /* 10 group */
    PROTOBUF_C_TYPE_MESSAGE,  /* 11 */
    PROTOBUF_C_TYPE_BYTES,    /* 12 */
    PROTOBUF_C_TYPE_UINT32,   /* 13 */
    PROTOBUF_C_TYPE_ENUM,     /* 14 */
    PROTOBUF_C_TYPE_SFIXED32, /* 15 */
    PROTOBUF_C_TYPE_SFIXED64, /* 16 */
    PROTOBUF_C_TYPE_SINT32,   /* 17 */
    PROTOBUF_C_TYPE_SINT64,   /* 18 */
};

int mprpc__pbtype_from_fdp(int fdp_type) {
  return fdp_type >= 1 && fdp_type <= 18 ? fdp_to_pbc[fdp_type] : -1;
}

int mprpc__pbtype_to_fdp(ProtobufCType t) {
  for (int i = 1; i <= 18; i++)
    if (fdp_to_pbc[i] == (int)t)
      return i;
  return -1;
}

const char *mprpc__pbtype_name(ProtobufCType t) {
  static const char *const names[] = {
      "int32",  "sint32", "sfixed32", "int64", "sint64", "sfixed64", "uint32", "fixed32", "uint64",
      "fixed64", "float", "double",   "bool",  "enum",   "string",   "bytes",  "message"};
  return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

void mprpc__json_name(const char *name, char *out, size_t cap) {
  size_t o = 0;
  bool up = false;
  if (!cap)
    return;
  for (const char *s = name; *s && o + 1 < cap; s++) {
    if (*s == '_') {
      up = true;
      continue;
    }
    out[o++] = up && *s >= 'a' && *s <= 'z' ? (char)(*s - 'a' + 'A') : *s;
    up = false;
  }
  out[o] = 0;
}

/* ---- nesting depth --------------------------------------------------------- */

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

/* Returns false only for "too deep"; anything malformed stops the walk of
 * that piece and is left for protobuf-c to report. */
static bool depth_walk(const ProtobufCMessageDescriptor *d, const uint8_t *p, const uint8_t *end,
                       int left) {
  if (left <= 0)
    return false;
  while (p < end) {
    uint64_t key, v;
    if (!varint(&p, end, &key))
      return true;
    switch (key & 7) {
    case 0:
      if (!varint(&p, end, &v))
        return true;
      break;
    case 1:
      if (end - p < 8)
        return true;
      p += 8;
      break;
    case 5:
      if (end - p < 4)
        return true;
      p += 4;
      break;
    case 2: {
      if (!varint(&p, end, &v) || v > (uint64_t)(end - p))
        return true;
      uint64_t tag = key >> 3;
      const ProtobufCFieldDescriptor *f =
          tag <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)tag) : NULL;
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
          !depth_walk(f->descriptor, p, p + v, left - 1))
        return false;
      p += v;
      break;
    }
    default:
      return true; /* groups and bad wire types: unpack rejects them */
    }
  }
  return true;
}

bool mprpc__pb_depth_ok(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                        int max_depth) {
  return depth_walk(d, data, data + len, max_depth);
}
