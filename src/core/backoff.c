/* Exponential reconnect backoff with jitter; see backoff.h. */
#include "core/backoff.h"

void mprpc__backoff_init(mprpc__backoff_t *b, uint64_t base_ns, uint64_t max_ns) {
  b->base_ns = base_ns ? base_ns : 1;
  b->max_ns = max_ns < b->base_ns ? b->base_ns : max_ns;
  b->n = 0;
}

uint64_t mprpc__backoff_next(mprpc__backoff_t *b, mprpc_rand_t r) {
  uint64_t d = b->base_ns;
  for (uint32_t i = 0; i < b->n && d < b->max_ns; i++)
    d *= 2;
  if (d > b->max_ns)
    d = b->max_ns;
  if (b->n < 64)
    b->n++;
  uint64_t half = d / 2;
  return half + mprpc_rand_below(r, d - half);
}
