/*
 * Growable byte string for tests that build protobuf and frame bytes by
 * hand (test_frame.c, test_fuzz_corpus.c). Header-only: include it after
 * <cmocka.h>; a failed allocation fails the test.
 */
#ifndef MPRPC_TEST_BYTES_H
#define MPRPC_TEST_BYTES_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct bytes {
  uint8_t *p;
  size_t n, cap;
} bytes_t;

static inline void bput(bytes_t *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n)
      cap *= 2;
    b->p = realloc(b->p, cap);
    assert_non_null(b->p);
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->n, p, n);
  b->n += n;
}

static inline void bput_u8(bytes_t *b, uint8_t v) { bput(b, &v, 1); }

static inline void bput_varint(bytes_t *b, uint64_t v) {
  while (v >= 0x80) {
    bput_u8(b, (uint8_t)(v | 0x80));
    v >>= 7;
  }
  bput_u8(b, (uint8_t)v);
}

static inline void bput_tag(bytes_t *b, uint32_t field, uint32_t wt) {
  bput_varint(b, ((uint64_t)field << 3) | wt);
}

/* A length-delimited protobuf field. */
static inline void bput_lenfield(bytes_t *b, uint32_t field, const void *p, size_t n) {
  bput_tag(b, field, 2);
  bput_varint(b, n);
  bput(b, p, n);
}

static inline void bput_be32(bytes_t *b, uint32_t v) {
  uint8_t q[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  bput(b, q, 4);
}

static inline void bfree(bytes_t *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

#endif
