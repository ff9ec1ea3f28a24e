/* Round robin: each pick starts one past the previous one and takes the
 * first eligible node, so eligible nodes share calls evenly. */
#include "core/lb.h"

static long rr_pick(mprpc__lb_t *lb, mprpc_rand_t r, bool has_key, uint64_t key) {
  (void)r;
  (void)has_key;
  (void)key;
  for (size_t i = 0; i < lb->n; i++) {
    size_t idx = (size_t)(lb->pos++ % lb->n);
    if (!lb->nodes[idx].skip)
      return (long)idx;
  }
  return -1;
}

const mprpc__lb_vt_t mprpc__lb_rr_vt = {NULL, rr_pick, NULL};
