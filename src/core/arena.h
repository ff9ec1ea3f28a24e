/*
 * A bump arena over memory its owner provides (the tail of a provider's
 * call block, a consumer's call record): 16-byte aligned pieces, all freed
 * together when the owner resets or reuses the memory. Used as the fast
 * path of protobuf-c allocators that fall back to malloc (internal).
 */
#ifndef MPRPC_CORE_ARENA_H
#define MPRPC_CORE_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mprpc__arena {
  uint8_t *base; /* 16-byte aligned */
  size_t len, used;
} mprpc__arena_t;

static inline void mprpc__arena_init(mprpc__arena_t *a, void *base, size_t len) {
  a->base = base;
  a->len = len;
  a->used = 0;
}

/* n bytes, or NULL when they do not fit (n == 0 still takes 16). */
static inline void *mprpc__arena_alloc(mprpc__arena_t *a, size_t n) {
  size_t room = a->len - a->used;
  if (n > room)
    return NULL;
  size_t an = n ? (n + 15) & ~(size_t)15 : 16;
  if (an > room)
    return NULL;
  void *p = a->base + a->used;
  a->used += an;
  return p;
}

static inline bool mprpc__arena_owns(const mprpc__arena_t *a, const void *p) {
  uintptr_t u = (uintptr_t)p, b = (uintptr_t)a->base;
  return a->len && u >= b && u < b + a->len;
}

#endif
