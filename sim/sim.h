/*
 * Deterministic simulator runtime.
 *
 * One process, one thread, virtual time. A world owns a discrete-event
 * scheduler (src/core/timerq: events ordered by virtual nanoseconds, then by
 * insertion), a PRNG seeded from the scenario seed, and a running 64-bit
 * FNV-style hash over every fired event (time, kind, id): two runs of the same
 * seed must produce the same hash, which is how determinism is checked.
 *
 * On top of the world:
 * - virtual loops (mprpc_loop_t): one or more per virtual host, all views on
 *   the same scheduler; in_loop is always true, post is a zero-delay event,
 *   no waiters (nothing blocks), a per-loop xoshiro derived from the seed,
 *   wall clock = a fixed epoch + virtual time;
 * - a virtual network (mprpc_transport_t): in-memory TCP between virtual
 *   hosts "10.0.0.N", with latency, chunk splitting and coalescing, stalls,
 *   resets, partitions, host crash/restart (sim/net.c);
 * - a virtual ZooKeeper (mprpc_registry_t per host): sessions, ephemeral
 *   nodes, expiry, delayed watches, outages and partitions (sim/vreg.c).
 *
 * Functions return 0 or a negative MPRPC_E* code unless said otherwise.
 * Nothing here is thread-safe; nothing here blocks.
 */
#ifndef MPRPC_SIM_H
#define MPRPC_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mprpc/loop.h"
#include "mprpc/rand.h"
#include "mprpc/registry.h"
#include "mprpc/transport.h"

/* ---- world: scheduler, PRNG, trace ------------------------------------ */

/* Event kinds (hashed into the trace; names in mprpc_sim_kind_name). */
enum {
  MPRPC_SIM_EV_TIMER = 1, /* a loop timer (id = host) */
  MPRPC_SIM_EV_POST,      /* a loop post (id = host) */
  MPRPC_SIM_EV_NET_PUMP,  /* a connection direction sends a chunk (id = conn) */
  MPRPC_SIM_EV_NET_DELIVER,
  MPRPC_SIM_EV_NET_SYN,
  MPRPC_SIM_EV_NET_CLOSE, /* on_close callback (id = conn endpoint) */
  MPRPC_SIM_EV_NET_RST,
  MPRPC_SIM_EV_NET_CONNTMO,
  MPRPC_SIM_EV_REG_TICK,  /* registry heartbeat / expiry check */
  MPRPC_SIM_EV_REG_WATCH, /* watch notification (id = subscription) */
  MPRPC_SIM_EV_REG_OP,    /* delayed registry operation */
  MPRPC_SIM_EV_SCEN,      /* scenario action */
  MPRPC_SIM_EV_NOTE,      /* mprpc_sim_note: not an event, a hashed fact */
  MPRPC_SIM_EV__COUNT
};

const char *mprpc_sim_kind_name(int kind);

typedef struct mprpc_sim_world mprpc_sim_world_t;

/* Allocates a world at virtual time 0. NULL on ENOMEM. Owner frees it with
 * mprpc_sim_world_free after every loop/net/registry built on it is freed. */
mprpc_sim_world_t *mprpc_sim_world_new(uint64_t seed);
/* Drops pending events without running them. */
void mprpc_sim_world_free(mprpc_sim_world_t *w);

uint64_t mprpc_sim_now(const mprpc_sim_world_t *w);
uint64_t mprpc_sim_seed(const mprpc_sim_world_t *w);
/* The world PRNG: faults, latencies, chunk sizes. */
mprpc_rand_t mprpc_sim_rand(mprpc_sim_world_t *w);
/* Uniform in [lo, hi] (inclusive). */
uint64_t mprpc_sim_rand_range(mprpc_sim_world_t *w, uint64_t lo, uint64_t hi);
/* True with probability p. */
bool mprpc_sim_chance(mprpc_sim_world_t *w, double p);
typedef struct mprpc_sim_loop mprpc_sim_loop_t;

/* A fresh seed derived from the world seed (for per-loop PRNGs). */
uint64_t mprpc_sim_derive_seed(mprpc_sim_world_t *w);

/* Schedules cb(arg) after delay_ns. Returns the event id (never 0), or 0 on
 * ENOMEM (cb never runs). kind/id go into the trace hash. */
uint64_t mprpc_sim_at(mprpc_sim_world_t *w, uint64_t delay_ns, int kind, uint64_t id,
                      mprpc_timer_cb cb, void *arg);
/* The same, run by loop `owner` (NULL = the world): while that loop is held
 * (mprpc_sim_loop_hold), the event waits for it. */
uint64_t mprpc_sim_at_on(mprpc_sim_world_t *w, mprpc_sim_loop_t *owner, uint64_t delay_ns, int kind,
                         uint64_t id, mprpc_timer_cb cb, void *arg);
/* No-op for fired, cancelled or unknown ids. Returns true if it cancelled. */
bool mprpc_sim_cancel(mprpc_sim_world_t *w, uint64_t ev);
/* Runs the earliest event; false when none is pending. */
bool mprpc_sim_step(mprpc_sim_world_t *w);
/* Runs every event with time <= t, then sets now = t (if t is later). */
void mprpc_sim_run_until(mprpc_sim_world_t *w, uint64_t t);
/* Runs until no event is pending or max_events ran; returns events run. */
uint64_t mprpc_sim_run_idle(mprpc_sim_world_t *w, uint64_t max_events);
size_t mprpc_sim_pending(const mprpc_sim_world_t *w);
uint64_t mprpc_sim_events_run(const mprpc_sim_world_t *w);

/* Trace: the hash covers every fired event and every note; the readable
 * log (if a FILE is set) prints the same plus free-text lines. Nothing in a
 * trace line may depend on addresses or real time. */
uint64_t mprpc_sim_trace_hash(const mprpc_sim_world_t *w);
void mprpc_sim_set_trace(mprpc_sim_world_t *w, FILE *f);
bool mprpc_sim_tracing(const mprpc_sim_world_t *w);
/* Hashes (now, MPRPC_SIM_EV_NOTE, tag, a, b) and logs it when tracing. */
void mprpc_sim_note(mprpc_sim_world_t *w, const char *tag, uint64_t a, uint64_t b);
/* Free text into the readable trace only (not hashed). */
void mprpc_sim_tracef(mprpc_sim_world_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- virtual loops ------------------------------------------------------ */


/* A loop on virtual host `host`. Its PRNG derives from the world seed and
 * creation order. Free it after everything running on it is gone. */
mprpc_sim_loop_t *mprpc_sim_loop_new(mprpc_sim_world_t *w, int host);
void mprpc_sim_loop_free(mprpc_sim_loop_t *l);
mprpc_loop_t mprpc_sim_loop(mprpc_sim_loop_t *l);
/* The sim loop behind a seam loop, or NULL when it is not a sim loop. */
mprpc_sim_loop_t *mprpc_sim_loop_from(mprpc_loop_t l);
int mprpc_sim_loop_host(const mprpc_sim_loop_t *l);
mprpc_sim_world_t *mprpc_sim_loop_world(const mprpc_sim_loop_t *l);
/* After stop, post() returns MPRPC_ESTATE and new timers are refused. */
void mprpc_sim_loop_stop(mprpc_sim_loop_t *l, bool stopped);
/* A callback that blocks its thread for ns (a handler doing blocking work):
 * the loop's clock moves on by ns during the callback, and the loop's other
 * events (timers, posts, bytes arriving) wait until the hold ends. */
void mprpc_sim_loop_hold(mprpc_sim_loop_t *l, uint64_t ns);
/* True while the loop is held (by the running callback or until its hold ends). */
bool mprpc_sim_loop_busy(const mprpc_sim_loop_t *l);
/* The loop whose event is running (NULL: a world event). */
mprpc_sim_loop_t *mprpc_sim_running_loop(const mprpc_sim_world_t *w);

#define MPRPC_SIM_EPOCH_NS (1767225600ull * MPRPC_NS_PER_S) /* 2026-01-01T00:00:00Z */

/* ---- virtual network ---------------------------------------------------- */

typedef struct mprpc_sim_net mprpc_sim_net_t;

typedef struct mprpc_sim_net_config {
  uint64_t lat_min_ns;   /* one-way latency lower bound; default 200 us */
  uint64_t lat_max_ns;   /* upper bound of the common case; default 2 ms */
  double lat_tail_p;     /* probability of a tail sample; default 0.01 */
  uint64_t lat_tail_ns;  /* tail samples add up to this much; default 20 ms */
  size_t chunk_max;      /* 0: each direction draws its own max chunk size
                            (1 byte .. 64 KiB); N: chunks of 1..N bytes */
  bool chunk_fixed;      /* with chunk_max: always exactly chunk_max bytes */
  uint64_t ns_per_byte;  /* serialisation cost; default 1 (1 GB/s) */
  uint64_t rto_ns;       /* retransmit interval while partitioned; 200 ms */
} mprpc_sim_net_config_t;

typedef struct mprpc_sim_net_stats {
  uint64_t conns, accepted, refused, connect_timeouts, resets, bytes, chunks, deliveries;
} mprpc_sim_net_stats_t;

/* cfg may be NULL (defaults). The net draws from the world PRNG. */
mprpc_sim_net_t *mprpc_sim_net_new(mprpc_sim_world_t *w, const mprpc_sim_net_config_t *cfg);
/* Every connection still open gets on_close(SHUTDOWN) now, then all is freed.
 * Listeners not closed by their owners are freed too. */
void mprpc_sim_net_free(mprpc_sim_net_t *n);
mprpc_transport_t mprpc_sim_net_transport(mprpc_sim_net_t *n);
/* Hosts are numbered 0.. in creation order; host i has address 10.0.x.y
 * with i+1 = x*256+y (so host 0 is "10.0.0.1"). Returns the host id. */
int mprpc_sim_net_add_host(mprpc_sim_net_t *n);
const char *mprpc_sim_net_host_addr(const mprpc_sim_net_t *n, int host);
int mprpc_sim_net_host_by_addr(const mprpc_sim_net_t *n, const char *addr);
int mprpc_sim_net_nhosts(const mprpc_sim_net_t *n);

/* Blocks packets from -> to (and to -> from unless one_way). Bytes and
 * SYNs wait (retransmitted every rto) rather than vanish; a connect whose
 * SYN never gets through fails with ETIMEDOUT after its connect timeout. */
void mprpc_sim_net_partition(mprpc_sim_net_t *n, int from, int to, bool one_way);
void mprpc_sim_net_heal(mprpc_sim_net_t *n, int from, int to, bool one_way);
void mprpc_sim_net_heal_all(mprpc_sim_net_t *n);
bool mprpc_sim_net_blocked(const mprpc_sim_net_t *n, int from, int to);
/* Every connection direction from -> to stops delivering for dur_ns. */
void mprpc_sim_net_stall(mprpc_sim_net_t *n, int from, int to, uint64_t dur_ns);
/* Resets one random established connection touching host (-1: any host).
 * Returns true if one was reset. */
bool mprpc_sim_net_reset_random(mprpc_sim_net_t *n, int host);
/* Host crash: its connections are dropped (local ends get on_close(RESET,
 * ECONNRESET), peers get a RST after latency), its listeners stop
 * accepting, in-flight bytes vanish, connects to it are refused. The owner
 * then frees the host's objects (closes are no-ops by then). */
void mprpc_sim_net_crash(mprpc_sim_net_t *n, int host);
void mprpc_sim_net_restart(mprpc_sim_net_t *n, int host);
bool mprpc_sim_net_host_up(const mprpc_sim_net_t *n, int host);
/* Per-write chunking knob (0 = configured behaviour). */
void mprpc_sim_net_set_chunk(mprpc_sim_net_t *n, size_t chunk_max, bool fixed);
mprpc_sim_net_stats_t mprpc_sim_net_stats(const mprpc_sim_net_t *n);
/* Connections whose endpoints have not both been closed yet. */
size_t mprpc_sim_net_live_conns(const mprpc_sim_net_t *n);

/* ---- virtual registry (ZooKeeper semantics) ------------------------------ */

typedef struct mprpc_sim_zk mprpc_sim_zk_t;

typedef struct mprpc_sim_zk_config {
  uint64_t session_timeout_ns; /* default 4 s */
  uint64_t watch_delay_min_ns; /* default 1 ms */
  uint64_t watch_delay_max_ns; /* default 30 ms */
  uint64_t connect_delay_ns;   /* first connect of a new handle; default 5 ms */
} mprpc_sim_zk_config_t;

mprpc_sim_zk_t *mprpc_sim_zk_new(mprpc_sim_world_t *w, const mprpc_sim_zk_config_t *cfg);
/* Every handle must have been closed first. */
void mprpc_sim_zk_free(mprpc_sim_zk_t *z);
/* A registry handle for a process on host `host`, with its own session.
 * `loop` is the handle's own loop (for its heartbeat timer). The caller owns
 * it and ends it with mprpc_registry_close(). 0 or MPRPC_ENOMEM. */
int mprpc_sim_zk_handle(mprpc_sim_zk_t *z, int host, mprpc_loop_t loop, mprpc_registry_t *out);
/* Drops a handle as a crashed process would: no unregister, no session
 * close (its ephemeral nodes stay until the session expires). */
void mprpc_sim_zk_crash_handle(mprpc_registry_t r);
/* Whole-ensemble outage: no requests served, sessions do not expire (as in
 * ZooKeeper, session timers restart when the ensemble is back). */
void mprpc_sim_zk_set_down(mprpc_sim_zk_t *z, bool down);
/* Partition between a host and the ensemble. */
void mprpc_sim_zk_partition(mprpc_sim_zk_t *z, int host, bool cut);
void mprpc_sim_zk_heal_all(mprpc_sim_zk_t *z);
/* Expires every session now (session-expiry storm). */
void mprpc_sim_zk_expire_all(mprpc_sim_zk_t *z);
/* Current number of nodes under service (ground truth, for checks). */
size_t mprpc_sim_zk_count(const mprpc_sim_zk_t *z, const char *service);
uint64_t mprpc_sim_zk_expirations(const mprpc_sim_zk_t *z);

/* ---- injected bugs (sim-only, off by default) ----------------------------- */

/* Bit flags; each one makes one component misbehave so tests can prove the
 * checker catches it. Read by sim/ code only, never by the library. */
enum {
  MPRPC_SIM_BUG_DOUBLE_CLOSURE = 1u << 0, /* a call's closure runs twice */
  MPRPC_SIM_BUG_WRONG_RESPONSE = 1u << 1, /* handler answers with another call's token */
  MPRPC_SIM_BUG_NO_DEADLINE = 1u << 2,    /* call wrapper drops the deadline */
  MPRPC_SIM_BUG_RETRY_NONIDEM = 1u << 3,  /* non-idempotent calls marked retryable */
  MPRPC_SIM_BUG_EXTRA_RETRIES = 1u << 4,  /* channel gets more retries than checked */
  MPRPC_SIM_BUG_STALE_NODE = 1u << 5,     /* registry never removes expired nodes */
  MPRPC_SIM_BUG_LOST_WATCH = 1u << 6,     /* registry drops watches after an outage */
  MPRPC_SIM_BUG_NO_HEAL = 1u << 7,        /* partitions are never healed */
  MPRPC_SIM_BUG_LOST_CLOSURE = 1u << 8,   /* a call's closure never runs */
  MPRPC_SIM_BUG_LYING_LOGOFF = 1u << 9,   /* handler runs, then answers ELOGOFF */
};
extern unsigned mprpc__sim_bug;

#endif
