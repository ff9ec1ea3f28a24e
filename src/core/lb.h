/*
 * Load balancers (internal). Pure logic: a balancer sees an array of nodes
 * owned by the caller and picks one index per call; randomness comes from
 * the caller's mprpc_rand_t so picks replay under a seed.
 *
 * The caller owns the node array. It stays valid (same address, same
 * length) until the next mprpc__lb_rebuild; the caller may update the
 * mutable fields (inflight, ewma_ns, skip) in place between picks.
 */
#ifndef MPRPC_CORE_LB_H
#define MPRPC_CORE_LB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprpc/rand.h"

typedef struct mprpc__lb_node {
  const char *name;  /* identity for hashing, "host:port"; borrowed */
  uint32_t weight;   /* 0 = MPRPC_DEFAULT_WEIGHT */
  uint32_t inflight; /* calls in flight (least) */
  uint64_t ewma_ns;  /* recent latency (least tie-break) */
  bool skip;         /* set by the caller before a pick: not eligible */
} mprpc__lb_node_t;

typedef struct mprpc__lb mprpc__lb_t;

typedef struct mprpc__lb_vt {
  int (*rebuild)(mprpc__lb_t *lb);
  /* Index of an eligible node, or -1 when every node is skipped. */
  long (*pick)(mprpc__lb_t *lb, mprpc_rand_t r, bool has_key, uint64_t key);
  void (*free_state)(mprpc__lb_t *lb);
} mprpc__lb_vt_t;

struct mprpc__lb {
  const mprpc__lb_vt_t *vt;
  int kind;
  const mprpc__lb_node_t *nodes;
  size_t n;
  void *state;  /* balancer-specific */
  uint64_t pos; /* round robin cursor */
};

extern const mprpc__lb_vt_t mprpc__lb_rr_vt;
extern const mprpc__lb_vt_t mprpc__lb_random_vt;
extern const mprpc__lb_vt_t mprpc__lb_hash_vt;
extern const mprpc__lb_vt_t mprpc__lb_least_vt;

/* kind is an mprpc_lb_kind_t. 0 or MPRPC_EINVAL. */
int mprpc__lb_init(mprpc__lb_t *lb, int kind);
void mprpc__lb_free(mprpc__lb_t *lb);
/* Points the balancer at a new node array. 0 or MPRPC_ENOMEM (the balancer
 * then has no nodes). */
int mprpc__lb_rebuild(mprpc__lb_t *lb, const mprpc__lb_node_t *nodes, size_t n);
long mprpc__lb_pick(mprpc__lb_t *lb, mprpc_rand_t r, bool has_key, uint64_t key);

/* 64-bit hash of bytes (FNV-1a followed by a murmur finalizer). */
uint64_t mprpc__hash64(const void *p, size_t n, uint64_t seed);

static inline uint32_t mprpc__lb_weight(const mprpc__lb_node_t *nd) {
  return nd->weight ? nd->weight : 100u;
}

#endif
