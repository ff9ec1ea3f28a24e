/*
 * Randomness seam.
 *
 * All jitter, load balancing and sampling in mprpc draws from an
 * mprpc_rand_t so that a simulated run replays exactly from its seed. The
 * production runtime seeds one generator per loop from the OS; the simulator
 * seeds them from the scenario seed.
 *
 * The bundled generator is xoshiro256** (Blackman & Vigna, 2018) seeded
 * through splitmix64: 256 bits of state, period 2^256-1, fast, and good
 * enough for everything except cryptography (mprpc never needs that).
 */
#ifndef MPRPC_RAND_H
#define MPRPC_RAND_H

#include "mprpc/export.h"
#include <stdint.h>

MPRPC_BEGIN_DECLS

typedef struct mprpc_rand_ops {
  /* Next 64 uniformly distributed bits. */
  uint64_t (*next)(void *ctx);
} mprpc_rand_ops_t;

typedef struct mprpc_rand {
  const mprpc_rand_ops_t *vt;
  void *ctx;
} mprpc_rand_t;

static inline uint64_t mprpc_rand_u64(mprpc_rand_t r) { return r.vt->next(r.ctx); }

/* Uniform in [0, n); n == 0 gives 0. Unbiased (Lemire's method). */
uint64_t mprpc_rand_below(mprpc_rand_t r, uint64_t n);

/* Uniform in [0, 1). */
static inline double mprpc_rand_double(mprpc_rand_t r) {
  return (double)(mprpc_rand_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* xoshiro256** state; plain data, may live anywhere (stack, struct). */
typedef struct mprpc_xoshiro {
  uint64_t s[4];
} mprpc_xoshiro_t;

/* Seeds the state from one 64-bit value through splitmix64. */
void mprpc_xoshiro_seed(mprpc_xoshiro_t *x, uint64_t seed);
uint64_t mprpc_xoshiro_next(mprpc_xoshiro_t *x);

/* A seam view of a xoshiro state; the state must outlive the view. */
mprpc_rand_t mprpc_rand_xoshiro(mprpc_xoshiro_t *x);

/* splitmix64 step: handy for deriving independent seeds from one seed. */
uint64_t mprpc_splitmix64(uint64_t *state);

MPRPC_END_DECLS
#endif
