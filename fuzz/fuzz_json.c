/*
 * Fuzz target "json": the input as JSON text for mprpc_json_to_message,
 * against each of the test messages jt3.All (proto3: every scalar type,
 * oneof, maps of every key kind, nested and repeated messages), jt2.All
 * (proto2: required, defaults, presence, oneof, map) and jt3.Node (a
 * recursive message, for the depth limit), from tests/proto/.
 *
 * Checks, for each descriptor:
 *  J1  The result is 0, MPRPC_EINVAL or MPRPC_ENOMEM (the allocator caps
 *      live bytes at 16 MiB); on failure *out is NULL and the error text is
 *      not empty; after the message is freed nothing allocated is live.
 *  J2  Round trip: an accepted message printed (flags 0, and PRETTY |
 *      ORIG_NAMES | EMIT_DEFAULTS) always prints, and that text parses to a
 *      message with the same packed bytes that prints the same text again.
 *  J3  protobuf-c's own unpack of those packed bytes prints the same text:
 *      the JSON view of a message depends only on its wire form.
 *  J4  The same input with allocation k failing (k chosen from the input
 *      among the allocations the successful parse made) gives MPRPC_ENOMEM
 *      and leaks nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json2.pb-c.h"
#include "json3.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/json.h"
#include "support/check.h"

typedef struct {
  long calls, fail_at, live;
  size_t bytes, cap;
} counting_t;

static void *count_alloc(void *data, size_t n) {
  counting_t *c = data;
  if (c->calls++ == c->fail_at || n > c->cap - c->bytes)
    return NULL;
  size_t *p = malloc(n + 2 * sizeof(size_t));
  if (!p)
    return NULL;
  p[0] = n;
  c->live++;
  c->bytes += n;
  return p + 2;
}

static void count_free(void *data, void *ptr) {
  counting_t *c = data;
  if (!ptr)
    return;
  size_t *p = (size_t *)ptr - 2;
  c->live--;
  c->bytes -= p[0];
  free(p);
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *n) {
  *n = protobuf_c_message_get_packed_size(m);
  uint8_t *p = malloc(*n ? *n : 1);
  FUZZ_CHECK(p != NULL);
  FUZZ_CHECK(protobuf_c_message_pack(m, p) == *n);
  return p;
}

static void one(const char *data, size_t size, const ProtobufCMessageDescriptor *d) {
  counting_t cnt = {.fail_at = -1, .cap = (size_t)16 << 20};
  ProtobufCAllocator a = {count_alloc, count_free, &cnt};
  ProtobufCMessage *m = (ProtobufCMessage *)1;
  char err[256];
  err[0] = 0;
  int rc = mprpc_json_to_message(data, size, d, &a, &m, err, sizeof err);
  FUZZ_CHECK(rc == 0 || rc == MPRPC_EINVAL || rc == MPRPC_ENOMEM);
  if (rc != 0) {
    FUZZ_CHECK(m == NULL);
    FUZZ_CHECK(err[0] != 0);
    FUZZ_CHECK(cnt.live == 0);
    return;
  }
  FUZZ_CHECK(m != NULL && m->descriptor == d);
  long calls = cnt.calls;

  size_t n1;
  uint8_t *p1 = pack(m, &n1);
  static const int flag_sets[] = {0, MPRPC_JSON_PRETTY | MPRPC_JSON_ORIG_NAMES |
                                         MPRPC_JSON_EMIT_DEFAULTS};
  char *j0 = NULL;
  for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
    char *j1 = NULL, *j2 = NULL;
    size_t l1;
    FUZZ_CHECK(mprpc_message_to_json(m, flag_sets[i], &j1, &l1) == 0);
    FUZZ_CHECK(strlen(j1) == l1);
    ProtobufCMessage *m2 = NULL;
    rc = mprpc_json_to_message(j1, l1, d, NULL, &m2, err, sizeof err);
    if (rc != 0) {
      fprintf(stderr, "reparse failed: %s\n%s\n", err, j1);
      FUZZ_CHECK(rc == 0);
    }
    size_t n2;
    uint8_t *p2 = pack(m2, &n2);
    FUZZ_CHECK(n1 == n2 && memcmp(p1, p2, n1) == 0);
    FUZZ_CHECK(mprpc_message_to_json(m2, flag_sets[i], &j2, NULL) == 0);
    if (strcmp(j1, j2) != 0) {
      fprintf(stderr, "second print differs:\n%s\n%s\n", j1, j2);
      FUZZ_CHECK(0);
    }
    free(j2);
    free(p2);
    protobuf_c_message_free_unpacked(m2, NULL);
    if (i == 0)
      j0 = j1;
    else
      free(j1);
  }

  ProtobufCMessage *u = protobuf_c_message_unpack(d, NULL, n1, p1);
  FUZZ_CHECK(u != NULL);
  char *ju = NULL;
  FUZZ_CHECK(mprpc_message_to_json(u, 0, &ju, NULL) == 0);
  if (strcmp(j0, ju) != 0) {
    fprintf(stderr, "unpacked prints differently:\n%s\n%s\n", j0, ju);
    FUZZ_CHECK(0);
  }
  free(ju);
  protobuf_c_message_free_unpacked(u, NULL);
  free(j0);
  free(p1);
  protobuf_c_message_free_unpacked(m, &a);
  FUZZ_CHECK(cnt.live == 0);

  /* J4 */
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < size; i++)
    h = (h ^ (uint8_t)data[i]) * 16777619u;
  counting_t fc = {.fail_at = (long)(h % (uint32_t)calls), .cap = (size_t)16 << 20};
  ProtobufCAllocator fa = {count_alloc, count_free, &fc};
  m = NULL;
  rc = mprpc_json_to_message(data, size, d, &fa, &m, err, sizeof err);
  if (rc != MPRPC_ENOMEM)
    fprintf(stderr, "J4: allocation %ld of %ld failing gave %d (%s)\n", fc.fail_at, calls, rc, err);
  FUZZ_CHECK(rc == MPRPC_ENOMEM && m == NULL && fc.live == 0);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  one((const char *)data, size, &jt3__all__descriptor);
  one((const char *)data, size, &jt2__all__descriptor);
  one((const char *)data, size, &jt3__node__descriptor);
  return 0;
}
