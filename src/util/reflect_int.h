/*
 * Internal pieces shared by the reflection files (pbdesc.c, dynpool.c,
 * reflection.c): a chunked bump pool whose memory is released at once, and
 * the mapping between protobuf-c's and descriptor.proto's type numbers.
 */
#ifndef MPRPC_UTIL_REFLECT_INT_H
#define MPRPC_UTIL_REFLECT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

typedef struct mprpc__mpool_chunk mprpc__mpool_chunk_t;

/* Every piece is 16-byte aligned and zeroed; nothing is freed before
 * mprpc__mpool_release. `limit` (0 = none) caps the bytes taken. */
typedef struct mprpc__mpool {
  mprpc__mpool_chunk_t *head;
  size_t used, room; /* in head */
  size_t total, limit;
} mprpc__mpool_t;

void mprpc__mpool_init(mprpc__mpool_t *p, size_t limit);
void *mprpc__mpool_alloc(mprpc__mpool_t *p, size_t n);
/* n elements of size sz, NULL on overflow or out of memory. */
void *mprpc__mpool_array(mprpc__mpool_t *p, size_t n, size_t sz);
char *mprpc__mpool_strdup(mprpc__mpool_t *p, const char *s);
char *mprpc__mpool_strndup(mprpc__mpool_t *p, const char *s, size_t n);
void mprpc__mpool_release(mprpc__mpool_t *p);

/* A protobuf-c allocator over malloc that fails once `limit` bytes are
 * live (for unpacking untrusted descriptor sets). */
typedef struct mprpc__capped_alloc {
  ProtobufCAllocator base;
  size_t live, limit;
} mprpc__capped_alloc_t;
void mprpc__capped_alloc_init(mprpc__capped_alloc_t *a, size_t limit);

/* descriptor.proto FieldDescriptorProto.Type (1..18) <-> ProtobufCType;
 * -1 when there is no counterpart (TYPE_GROUP, out of range). */
int mprpc__pbtype_from_fdp(int fdp_type);
int mprpc__pbtype_to_fdp(ProtobufCType t);
/* "int32", "string", ... for ProtobufCType. */
const char *mprpc__pbtype_name(ProtobufCType t);

/* protoc's json_name: "foo_bar_baz" -> "fooBarBaz". Written into out[cap]
 * (truncated, always NUL-terminated). */
void mprpc__json_name(const char *name, char *out, size_t cap);

/* Checks that every length-delimited field that the descriptor d says is a
 * message nests at most max_depth deep (protobuf-c unpacks recursively, so
 * unbounded nesting in untrusted bytes would exhaust the stack). false
 * when too deep; malformed bytes are left for unpack to reject. */
bool mprpc__pb_depth_ok(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                        int max_depth);

#endif
