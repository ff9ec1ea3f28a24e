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

#endif
