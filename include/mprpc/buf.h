/*
 * Reassembly buffer for a connection's inbound bytes.
 *
 * The transport appends what it reads (reserve + commit, so a socket read
 * lands directly in it); the protocol layer parses frames from the front and
 * consumes them. Parsed frame views point into the buffer and stay valid
 * until the next reserve/append/compact. Functions return 0 or a negative
 * MPRPC_E* code; the buffer owns its memory (mprpc_rbuf_free releases it).
 */
#ifndef MPRPC_BUF_H
#define MPRPC_BUF_H

#include "mprpc/export.h"
#include <stddef.h>
#include <stdint.h>

MPRPC_BEGIN_DECLS

typedef struct mprpc_rbuf {
  uint8_t *data;
  size_t start; /* first unconsumed byte */
  size_t end;   /* one past the last byte */
  size_t cap;
} mprpc_rbuf_t;

#define MPRPC_RBUF_INIT {0}

void mprpc_rbuf_init(mprpc_rbuf_t *b);
void mprpc_rbuf_free(mprpc_rbuf_t *b);

/* NULL for a buffer that never allocated (NULL + 0 is undefined in C). */
static inline const uint8_t *mprpc_rbuf_data(const mprpc_rbuf_t *b) {
  return b->data ? b->data + b->start : NULL;
}
static inline size_t mprpc_rbuf_len(const mprpc_rbuf_t *b) { return b->end - b->start; }

/* Makes room for at least n more bytes at the end (compacting or growing)
 * and returns where they go. Pair with mprpc_rbuf_commit. */
int mprpc_rbuf_reserve(mprpc_rbuf_t *b, size_t n, uint8_t **where);
/* Declares n bytes written after a reserve. */
void mprpc_rbuf_commit(mprpc_rbuf_t *b, size_t n);
int mprpc_rbuf_append(mprpc_rbuf_t *b, const void *p, size_t n);
/* Drops n bytes from the front (n <= len). Resets to offset 0 when empty. */
void mprpc_rbuf_consume(mprpc_rbuf_t *b, size_t n);
/* Moves unconsumed bytes to the front of the allocation. */
void mprpc_rbuf_compact(mprpc_rbuf_t *b);
/* Gives back memory above `keep` bytes of capacity when the buffer is
 * nearly empty (after a huge frame passed through). */
void mprpc_rbuf_shrink(mprpc_rbuf_t *b, size_t keep);

MPRPC_END_DECLS
#endif
