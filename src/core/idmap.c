/* Open-addressing id map; see idmap.h. */
#include "core/idmap.h"

#include <stdlib.h>

#include "mprpc/errors.h"

static size_t slot_of(uint64_t key, size_t cap) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdull;
  key ^= key >> 33;
  return (size_t)key & (cap - 1);
}

void mprpc__idmap_init(mprpc__idmap_t *m) {
  m->slots = NULL;
  m->cap = 0;
  m->n = 0;
}

void mprpc__idmap_free(mprpc__idmap_t *m) {
  free(m->slots);
  mprpc__idmap_init(m);
}

static void insert_raw(mprpc__idmap_slot_t *slots, size_t cap, uint64_t key, void *val) {
  size_t i = slot_of(key, cap);
  while (slots[i].key != 0)
    i = (i + 1) & (cap - 1);
  slots[i].key = key;
  slots[i].val = val;
}

static int grow(mprpc__idmap_t *m) {
  size_t ncap = m->cap ? m->cap * 2 : 64;
  mprpc__idmap_slot_t *ns = calloc(ncap, sizeof *ns);
  if (!ns)
    return MPRPC_ENOMEM;
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i].key)
      insert_raw(ns, ncap, m->slots[i].key, m->slots[i].val);
  free(m->slots);
  m->slots = ns;
  m->cap = ncap;
  return 0;
}

int mprpc__idmap_put(mprpc__idmap_t *m, uint64_t key, void *val) {
  if (key == 0)
    return MPRPC_EINVAL;
  if ((m->n + 1) * 4 > m->cap * 3) { /* load factor 3/4 */
    int rc = grow(m);
    if (rc)
      return rc;
  }
  /* One probe both finds a duplicate and the free slot: the probe from the
   * key's home slot ends at the first empty one, and the key, if present,
   * sits before it. */
  size_t mask = m->cap - 1, i = slot_of(key, m->cap);
  for (; m->slots[i].key != 0; i = (i + 1) & mask)
    if (m->slots[i].key == key)
      return MPRPC_EEXIST;
  m->slots[i].key = key;
  m->slots[i].val = val;
  m->n++;
  return 0;
}

void *mprpc__idmap_get(const mprpc__idmap_t *m, uint64_t key) {
  if (m->cap == 0 || key == 0)
    return NULL;
  size_t i = slot_of(key, m->cap);
  for (size_t probes = 0; probes < m->cap; probes++) {
    if (m->slots[i].key == key)
      return m->slots[i].val;
    if (m->slots[i].key == 0)
      return NULL;
    i = (i + 1) & (m->cap - 1);
  }
  return NULL;
}

void *mprpc__idmap_del(mprpc__idmap_t *m, uint64_t key) {
  if (m->cap == 0 || key == 0)
    return NULL;
  size_t mask = m->cap - 1;
  size_t i = slot_of(key, m->cap);
  for (size_t probes = 0;; probes++) {
    if (probes >= m->cap || m->slots[i].key == 0)
      return NULL;
    if (m->slots[i].key == key)
      break;
    i = (i + 1) & mask;
  }
  void *val = m->slots[i].val;
  /* backward shift: pull later entries of the cluster into the hole when
   * their home slot does not lie cyclically in (hole, j]. */
  size_t hole = i, j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (m->slots[j].key == 0)
      break;
    size_t home = slot_of(m->slots[j].key, m->cap);
    int in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!in_range) {
      m->slots[hole] = m->slots[j];
      hole = j;
    }
  }
  m->slots[hole].key = 0;
  m->slots[hole].val = NULL;
  m->n--;
  return val;
}

/* ---- increasing ids ------------------------------------------------------ */

void mprpc__idseq_init(mprpc__idseq_t *t) {
  t->slots = NULL;
  t->cap = t->n = 0;
  t->next = 1;
}

void mprpc__idseq_free(mprpc__idseq_t *t) {
  free(t->slots);
  uint64_t next = t->next; /* ids stay increasing across a reset */
  mprpc__idseq_init(t);
  t->next = next;
}

static int seq_grow(mprpc__idseq_t *t) {
  size_t ncap = t->cap ? t->cap * 2 : 64;
  mprpc__idmap_slot_t *ns = calloc(ncap, sizeof *ns);
  if (!ns)
    return MPRPC_ENOMEM;
  /* Two ids apart in the old table differ in their low bits, so they are
   * apart in the new one too: a plain copy, no probing. */
  for (size_t i = 0; i < t->cap; i++)
    if (t->slots[i].key)
      ns[t->slots[i].key & (ncap - 1)] = t->slots[i];
  free(t->slots);
  t->slots = ns;
  t->cap = ncap;
  return 0;
}

uint64_t mprpc__idseq_add(mprpc__idseq_t *t, void *val) {
  if ((t->n + 1) * 2 > t->cap && seq_grow(t) != 0)
    return 0;
  size_t mask = t->cap - 1;
  /* At most half the slots are held, so this ends within cap tries; in the
   * usual case (ids retire roughly in order) the first slot is free. */
  while (t->slots[t->next & mask].key != 0 || t->next == 0)
    t->next++;
  uint64_t id = t->next++;
  t->slots[id & mask].key = id;
  t->slots[id & mask].val = val;
  t->n++;
  return id;
}
