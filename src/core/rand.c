#include "mprpc/rand.h"

uint64_t mprpc_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void mprpc_xoshiro_seed(mprpc_xoshiro_t *x, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    x->s[i] = mprpc_splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }

uint64_t mprpc_xoshiro_next(mprpc_xoshiro_t *x) {
  uint64_t *s = x->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

static uint64_t xoshiro_next(void *ctx) { return mprpc_xoshiro_next(ctx); }

static const mprpc_rand_ops_t xoshiro_ops = {.next = xoshiro_next};

mprpc_rand_t mprpc_rand_xoshiro(mprpc_xoshiro_t *x) {
  return (mprpc_rand_t){.vt = &xoshiro_ops, .ctx = x};
}

uint64_t mprpc_rand_below(mprpc_rand_t r, uint64_t n) {
  if (n == 0)
    return 0;
  /* Lemire: multiply-shift with rejection of the biased low region. */
  __uint128_t m = (__uint128_t)mprpc_rand_u64(r) * n;
  uint64_t lo = (uint64_t)m;
  if (lo < n) {
    uint64_t threshold = -n % n;
    while (lo < threshold) {
      m = (__uint128_t)mprpc_rand_u64(r) * n;
      lo = (uint64_t)m;
    }
  }
  return (uint64_t)(m >> 64);
}
