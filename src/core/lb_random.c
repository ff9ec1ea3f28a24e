/* Weighted random: P(node) = weight / sum of eligible weights. A linear scan
 * over the eligible nodes; endpoint lists are small (tens). */
#include "core/lb.h"

static long random_pick(mprpc__lb_t *lb, mprpc_rand_t r, bool has_key, uint64_t key) {
  (void)has_key;
  (void)key;
  uint64_t total = 0;
  for (size_t i = 0; i < lb->n; i++)
    if (!lb->nodes[i].skip)
      total += mprpc__lb_weight(&lb->nodes[i]);
  if (total == 0)
    return -1;
  uint64_t x = mprpc_rand_below(r, total);
  for (size_t i = 0; i < lb->n; i++) {
    if (lb->nodes[i].skip)
      continue;
    uint64_t w = mprpc__lb_weight(&lb->nodes[i]);
    if (x < w)
      return (long)i;
    x -= w;
  }
  return -1; /* not reached */
}

const mprpc__lb_vt_t mprpc__lb_random_vt = {NULL, random_pick, NULL};
