/* Load balancer dispatch and the shared hash function. */
#include "core/lb.h"

#include <stdlib.h>
#include <string.h>

#include "mprpc/channel.h"
#include "mprpc/errors.h"

static const char *const lb_names[] = {"rr", "random", "hash", "least"};

int mprpc_lb_from_name(const char *name) {
  if (!name)
    return MPRPC_EINVAL;
  for (int i = 0; i < 4; i++)
    if (strcmp(name, lb_names[i]) == 0)
      return i;
  return MPRPC_EINVAL;
}

const char *mprpc_lb_name(int kind) {
  return kind >= 0 && kind < 4 ? lb_names[kind] : "unknown";
}

int mprpc__lb_init(mprpc__lb_t *lb, int kind) {
  memset(lb, 0, sizeof *lb);
  switch (kind) {
  case MPRPC_LB_RR: lb->vt = &mprpc__lb_rr_vt; break;
  case MPRPC_LB_RANDOM: lb->vt = &mprpc__lb_random_vt; break;
  case MPRPC_LB_HASH: lb->vt = &mprpc__lb_hash_vt; break;
  case MPRPC_LB_LEAST: lb->vt = &mprpc__lb_least_vt; break;
  default: return MPRPC_EINVAL;
  }
  lb->kind = kind;
  return 0;
}

void mprpc__lb_free(mprpc__lb_t *lb) {
  if (lb->vt && lb->vt->free_state)
    lb->vt->free_state(lb);
  lb->state = NULL;
  lb->nodes = NULL;
  lb->n = 0;
}

int mprpc__lb_rebuild(mprpc__lb_t *lb, const mprpc__lb_node_t *nodes, size_t n) {
  lb->nodes = nodes;
  lb->n = n;
  if (!lb->vt->rebuild)
    return 0;
  int rc = lb->vt->rebuild(lb);
  if (rc != 0) {
    lb->nodes = NULL;
    lb->n = 0;
  }
  return rc;
}

long mprpc__lb_pick(mprpc__lb_t *lb, mprpc_rand_t r, bool has_key, uint64_t key) {
  if (lb->n == 0)
    return -1;
  return lb->vt->pick(lb, r, has_key, key);
}

uint64_t mprpc__hash64(const void *p, size_t n, uint64_t seed) {
  const uint8_t *b = p;
  uint64_t h = 0xcbf29ce484222325ull ^ seed;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  /* FNV alone mixes the last bytes poorly; finish with murmur3's fmix64. */
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}
