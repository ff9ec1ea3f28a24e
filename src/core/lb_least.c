/* Least loaded: fewest calls in flight; ties go to the lower latency EWMA,
 * remaining ties to a random one of them (so equal nodes share load). */
#include "core/lb.h"

static long least_pick(mprpc__lb_t *lb, mprpc_rand_t r, bool has_key, uint64_t key) {
  (void)has_key;
  (void)key;
  long best = -1;
  uint64_t ties = 0;
  for (size_t i = 0; i < lb->n; i++) {
    const mprpc__lb_node_t *nd = &lb->nodes[i];
    if (nd->skip)
      continue;
    if (best < 0) {
      best = (long)i;
      ties = 1;
      continue;
    }
    const mprpc__lb_node_t *b = &lb->nodes[best];
    if (nd->inflight < b->inflight ||
        (nd->inflight == b->inflight && nd->ewma_ns < b->ewma_ns)) {
      best = (long)i;
      ties = 1;
    } else if (nd->inflight == b->inflight && nd->ewma_ns == b->ewma_ns) {
      /* reservoir sampling among exact ties */
      ties++;
      if (mprpc_rand_below(r, ties) == 0)
        best = (long)i;
    }
  }
  return best;
}

const mprpc__lb_vt_t mprpc__lb_least_vt = {NULL, least_pick, NULL};
