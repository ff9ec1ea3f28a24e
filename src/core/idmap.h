/*
 * uint64 -> pointer hash map (internal): open addressing with linear probing
 * and backward-shift deletion, so lookups stay O(1) with 10,000+ entries and
 * no tombstones accumulate. Key 0 is reserved (never stored).
 */
#ifndef MPRPC_CORE_IDMAP_H
#define MPRPC_CORE_IDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct mprpc__idmap_slot {
  uint64_t key;
  void *val;
} mprpc__idmap_slot_t;

typedef struct mprpc__idmap {
  mprpc__idmap_slot_t *slots;
  size_t cap; /* power of two, or 0 */
  size_t n;
} mprpc__idmap_t;

void mprpc__idmap_init(mprpc__idmap_t *m);
void mprpc__idmap_free(mprpc__idmap_t *m);
/* 0, MPRPC_EEXIST, MPRPC_EINVAL (key 0) or MPRPC_ENOMEM. */
int mprpc__idmap_put(mprpc__idmap_t *m, uint64_t key, void *val);
void *mprpc__idmap_get(const mprpc__idmap_t *m, uint64_t key);
/* Removes and returns the value, NULL when absent. */
void *mprpc__idmap_del(mprpc__idmap_t *m, uint64_t key);

/* Id allocator + map for ids the map itself hands out in increasing order
 * (correlation ids): an id lives in slot id & (cap - 1), so a lookup is one
 * slot and one compare. An id whose slot is still held by an older, live id
 * is skipped (the next id is tried), so ids stay increasing but may have
 * gaps; the table doubles when it is half full, and doubling never makes
 * two live ids share a slot. */
typedef struct mprpc__idseq {
  mprpc__idmap_slot_t *slots;
  size_t cap; /* power of two, or 0 */
  size_t n;
  uint64_t next; /* every id handed out so far is below it; starts at 1 */
} mprpc__idseq_t;

void mprpc__idseq_init(mprpc__idseq_t *t);
void mprpc__idseq_free(mprpc__idseq_t *t);
/* Stores val under a new id and returns the id; 0 when out of memory. */
uint64_t mprpc__idseq_add(mprpc__idseq_t *t, void *val);
static inline void *mprpc__idseq_get(const mprpc__idseq_t *t, uint64_t id) {
  if (t->cap == 0 || id == 0)
    return NULL;
  const mprpc__idmap_slot_t *s = &t->slots[id & (t->cap - 1)];
  return s->key == id ? s->val : NULL;
}
/* Removes and returns the value, NULL when absent. */
static inline void *mprpc__idseq_del(mprpc__idseq_t *t, uint64_t id) {
  if (t->cap == 0 || id == 0)
    return NULL;
  mprpc__idmap_slot_t *s = &t->slots[id & (t->cap - 1)];
  if (s->key != id)
    return NULL;
  void *val = s->val;
  s->key = 0;
  s->val = NULL;
  t->n--;
  return val;
}

#endif
