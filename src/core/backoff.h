/*
 * Reconnect backoff (internal): exponential with "equal jitter": the n-th
 * delay is d/2 + U[0, d/2) with d = min(base * 2^n, max), drawn from the
 * caller's seeded PRNG so a simulated run replays exactly.
 */
#ifndef MPRPC_CORE_BACKOFF_H
#define MPRPC_CORE_BACKOFF_H

#include <stdint.h>

#include "mprpc/rand.h"

typedef struct mprpc__backoff {
  uint64_t base_ns, max_ns;
  uint32_t n; /* failures in a row */
} mprpc__backoff_t;

void mprpc__backoff_init(mprpc__backoff_t *b, uint64_t base_ns, uint64_t max_ns);
uint64_t mprpc__backoff_next(mprpc__backoff_t *b, mprpc_rand_t r);
static inline void mprpc__backoff_reset(mprpc__backoff_t *b) { b->n = 0; }

#endif
