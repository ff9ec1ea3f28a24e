/*
 * Token bucket for one method's QPS limit (internal, pure logic on the
 * caller's clock).
 *
 * It is GCRA, the "virtual scheduling" form of a token bucket: the whole
 * state is one 64-bit word, the theoretical arrival time (TAT) of the next
 * call at the configured rate. A call at now conforms when TAT <= now +
 * (burst - 1) * interval; taking it moves TAT to max(TAT, now) + interval.
 * That admits `burst` calls at once from idle and `qps` calls per second
 * sustained: over any window of T seconds at most burst + qps * T.
 *
 * Threads. Several loops share one bucket per method: take() is one atomic
 * load and, for an admitted call, one compare-and-swap (retried only when
 * another loop admitted a call in between); a refused call writes nothing,
 * so an overloaded method costs loads only. Per-loop shares of the rate
 * were the alternative: no shared write at all, but a loop that gets more
 * than its share of the traffic refuses calls while the others' tokens go
 * unused, and the limit becomes wrong whenever load is uneven. Time comes
 * from the caller (mprpc_loop_now), so the simulator's virtual clock drives
 * it; a loop whose clock reading is slightly behind another's is fine
 * (max(TAT, now)).
 *
 * set() may run concurrently with take(): a take sees the old or the new
 * parameters, never a mixture that admits more than the larger of the two.
 */
#ifndef MPRPC_CORE_RATELIMIT_H
#define MPRPC_CORE_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct mprpc__ratelimit {
  uint64_t tat;    /* atomic: theoretical arrival time, ns on the caller's clock */
  uint64_t params; /* atomic: interval_ns << 32 | (burst - 1); 0 = unlimited. One word,
                      so a take never mixes an old interval with a new burst. */
} mprpc__ratelimit_t;

/* qps 0 = unlimited (take always true); burst 0 = max(1, qps / 10). */
void mprpc__ratelimit_init(mprpc__ratelimit_t *rl, uint32_t qps, uint32_t burst);
/* Changes the rate (any thread); the bucket's level carries over. */
void mprpc__ratelimit_set(mprpc__ratelimit_t *rl, uint32_t qps, uint32_t burst);
/* True when a call at now_ns may run (it is counted against the rate).
 * The caller counts refusals (its per-loop counters; a shared counter here
 * would put a write back on the refusal path). */
bool mprpc__ratelimit_take(mprpc__ratelimit_t *rl, uint64_t now_ns);
/* The current parameters (qps 0 = unlimited). */
void mprpc__ratelimit_get(const mprpc__ratelimit_t *rl, uint32_t *qps, uint32_t *burst);

#endif
