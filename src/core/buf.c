/*
 * Reassembly buffer: one contiguous block, live bytes in [start, end).
 *
 * Consuming only moves `start`; the dead prefix is reclaimed lazily by
 * reserve() (compaction before growth), so parsing a burst of small frames
 * costs no memmove per frame.
 */
#include "mprpc/buf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"

/* First allocation: big enough for a typical socket read. */
#define RBUF_MIN_CAP 4096

void mprpc_rbuf_init(mprpc_rbuf_t *b) { memset(b, 0, sizeof *b); }

void mprpc_rbuf_free(mprpc_rbuf_t *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

void mprpc_rbuf_compact(mprpc_rbuf_t *b) {
  if (b->start == 0)
    return;
  size_t n = b->end - b->start;
  if (n)
    memmove(b->data, b->data + b->start, n);
  b->start = 0;
  b->end = n;
}

int mprpc_rbuf_reserve(mprpc_rbuf_t *b, size_t n, uint8_t **where) {
  if (b->cap - b->end < n) {
    size_t live = b->end - b->start;
    if (n > SIZE_MAX - live)
      return MPRPC_ENOMEM;
    size_t need = live + n;
    if (need <= b->cap) {
      mprpc_rbuf_compact(b);
    } else {
      size_t cap = b->cap < RBUF_MIN_CAP ? RBUF_MIN_CAP : b->cap;
      while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
      /* A fresh block and one copy of the live bytes: realloc would also
       * copy the dead prefix. */
      uint8_t *d = malloc(cap);
      if (!d)
        return MPRPC_ENOMEM;
      if (live)
        memcpy(d, b->data + b->start, live);
      free(b->data);
      b->data = d;
      b->cap = cap;
      b->start = 0;
      b->end = live;
    }
  }
  *where = b->data ? b->data + b->end : NULL; /* reserve(0) may not allocate */
  return 0;
}

void mprpc_rbuf_commit(mprpc_rbuf_t *b, size_t n) {
  assert(n <= b->cap - b->end);
  b->end += n;
}

int mprpc_rbuf_append(mprpc_rbuf_t *b, const void *p, size_t n) {
  if (n == 0)
    return 0;
  uint8_t *w;
  int rc = mprpc_rbuf_reserve(b, n, &w);
  if (rc)
    return rc;
  memcpy(w, p, n);
  b->end += n;
  return 0;
}

void mprpc_rbuf_consume(mprpc_rbuf_t *b, size_t n) {
  assert(n <= b->end - b->start);
  b->start += n;
  if (b->start == b->end)
    b->start = b->end = 0;
}

void mprpc_rbuf_shrink(mprpc_rbuf_t *b, size_t keep) {
  size_t live = b->end - b->start;
  if (b->cap <= keep || live > keep / 2)
    return;
  if (keep == 0) { /* live == 0 here */
    mprpc_rbuf_free(b);
    return;
  }
  uint8_t *d = malloc(keep);
  if (!d)
    return; /* keeping the larger block is harmless */
  if (live)
    memcpy(d, b->data + b->start, live);
  free(b->data);
  b->data = d;
  b->cap = keep;
  b->start = 0;
  b->end = live;
}
