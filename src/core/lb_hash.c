/* Consistent hashing on a ring with virtual nodes (Karger et al. 1997).
 *
 * Each node owns vnodes = 160 * weight / 100 points placed at hash(name#i);
 * a key goes to the first point clockwise from hash(key). Removing a node
 * removes only its points, so only the keys that were on it move (about 1/N
 * of them); every other key keeps its node. A skipped node's keys go to the
 * next point of an eligible node, and come back when it is eligible again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/lb.h"
#include "mprpc/errors.h"

#define VNODES_PER_100 160u
#define VNODES_MAX 4096u

typedef struct point {
  uint64_t h;
  uint32_t node;
} point_t;

typedef struct ring {
  point_t *pts;
  size_t n;
} ring_t;

static int cmp_point(const void *a, const void *b) {
  const point_t *x = a, *y = b;
  if (x->h != y->h)
    return x->h < y->h ? -1 : 1;
  return x->node < y->node ? -1 : x->node > y->node; /* stable order for equal hashes */
}

static void hash_free(mprpc__lb_t *lb) {
  ring_t *rg = lb->state;
  if (rg) {
    free(rg->pts);
    free(rg);
  }
  lb->state = NULL;
}

static int hash_rebuild(mprpc__lb_t *lb) {
  hash_free(lb);
  ring_t *rg = calloc(1, sizeof *rg);
  if (!rg)
    return MPRPC_ENOMEM;
  size_t total = 0;
  for (size_t i = 0; i < lb->n; i++) {
    uint64_t v = (uint64_t)mprpc__lb_weight(&lb->nodes[i]) * VNODES_PER_100 / 100u;
    total += v == 0 ? 1 : (v > VNODES_MAX ? VNODES_MAX : v);
  }
  rg->pts = total ? calloc(total, sizeof *rg->pts) : NULL;
  if (total && !rg->pts) {
    free(rg);
    return MPRPC_ENOMEM;
  }
  for (size_t i = 0; i < lb->n; i++) {
    uint64_t v = (uint64_t)mprpc__lb_weight(&lb->nodes[i]) * VNODES_PER_100 / 100u;
    v = v == 0 ? 1 : (v > VNODES_MAX ? VNODES_MAX : v);
    const char *name = lb->nodes[i].name ? lb->nodes[i].name : "";
    for (uint64_t k = 0; k < v; k++) {
      char buf[320];
      int len = snprintf(buf, sizeof buf, "%s#%llu", name, (unsigned long long)k);
      if (len < 0)
        len = 0;
      if ((size_t)len >= sizeof buf)
        len = (int)sizeof buf - 1;
      rg->pts[rg->n].h = mprpc__hash64(buf, (size_t)len, 0);
      rg->pts[rg->n].node = (uint32_t)i;
      rg->n++;
    }
  }
  if (rg->n > 0) /* qsort(NULL, 0, ...) is undefined */
    qsort(rg->pts, rg->n, sizeof *rg->pts, cmp_point);
  lb->state = rg;
  return 0;
}

static long hash_pick(mprpc__lb_t *lb, mprpc_rand_t r, bool has_key, uint64_t key) {
  ring_t *rg = lb->state;
  if (!rg || rg->n == 0)
    return -1;
  uint64_t h = has_key ? mprpc__hash64(&key, sizeof key, 0x9e3779b97f4a7c15ull) : mprpc_rand_u64(r);
  /* first point with hash >= h */
  size_t lo = 0, hi = rg->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (rg->pts[mid].h < h)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (size_t i = 0; i < rg->n; i++) {
    const point_t *p = &rg->pts[(lo + i) % rg->n];
    if (!lb->nodes[p->node].skip)
      return (long)p->node;
  }
  return -1;
}

const mprpc__lb_vt_t mprpc__lb_hash_vt = {hash_rebuild, hash_pick, hash_free};
