/* GCRA token bucket; see ratelimit.h. */
#include "core/ratelimit.h"

#define NS_PER_S 1000000000ull

static uint64_t pack(uint32_t qps, uint32_t burst) {
  if (qps == 0)
    return 0;
  if (qps > NS_PER_S)
    qps = (uint32_t)NS_PER_S;
  if (burst == 0)
    burst = qps / 10 ? qps / 10 : 1;
  /* rounded up: the sustained rate never exceeds qps */
  uint64_t interval = (NS_PER_S + qps - 1) / qps; /* 1 .. 1e9 < 2^30 */
  return interval << 32 | (uint64_t)(burst - 1);
}

void mprpc__ratelimit_init(mprpc__ratelimit_t *rl, uint32_t qps, uint32_t burst) {
  __atomic_store_n(&rl->tat, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&rl->params, pack(qps, burst), __ATOMIC_RELAXED);
}

void mprpc__ratelimit_set(mprpc__ratelimit_t *rl, uint32_t qps, uint32_t burst) {
  __atomic_store_n(&rl->params, pack(qps, burst), __ATOMIC_RELAXED);
}

void mprpc__ratelimit_get(const mprpc__ratelimit_t *rl, uint32_t *qps, uint32_t *burst) {
  uint64_t p = __atomic_load_n(&rl->params, __ATOMIC_RELAXED);
  uint64_t interval = p >> 32;
  *qps = interval ? (uint32_t)(NS_PER_S / interval) : 0;
  *burst = interval ? (uint32_t)(p & 0xffffffffu) + 1 : 0;
}

bool mprpc__ratelimit_take(mprpc__ratelimit_t *rl, uint64_t now_ns) {
  uint64_t p = __atomic_load_n(&rl->params, __ATOMIC_RELAXED);
  uint64_t interval = p >> 32;
  if (!interval)
    return true;
  uint64_t tolerance = (p & 0xffffffffu) * interval; /* < 2^60 */
  uint64_t limit = now_ns > UINT64_MAX - tolerance ? UINT64_MAX : now_ns + tolerance;
  uint64_t tat = __atomic_load_n(&rl->tat, __ATOMIC_RELAXED);
  for (;;) {
    if (tat > limit)
      return false;
    uint64_t base = tat > now_ns ? tat : now_ns;
    uint64_t next = base > UINT64_MAX - interval ? UINT64_MAX : base + interval;
    /* relaxed is enough: the bucket guards a count, not other memory */
    if (__atomic_compare_exchange_n(&rl->tat, &tat, next, true, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
      return true;
  }
}
