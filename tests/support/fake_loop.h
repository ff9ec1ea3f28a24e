/*
 * The deterministic fake loop: one thread (the caller's), a virtual clock
 * that moves only when told, timers in an mprpc__timerq_t (deadline order,
 * equal deadlines in start order), posts in a bounded FIFO and a seeded
 * PRNG, so the same calls always run the same way. It is the loop of the
 * core test suites (tests/test_server.c) and of the connection fuzz
 * harnesses (fuzz/fuzz_server.c, fuzz/fuzz_client_conn.c); the fake
 * transport (fake_net.h) and registry (fake_registry.h) post onto it.
 *
 *   fake_loop_t *L = fake_loop_new(&(fake_loop_opts_t){.seed = 7});
 *   mprpc_loop_t loop = fake_loop_seam(L);
 *   ... fake_loop_run(L);            everything due now, until idle
 *   ... fake_loop_advance(L, 50);    50 ms on, firing timers on the way
 *   fake_loop_free(L);
 *
 * Nothing here blocks, so the seam has no waiters: synchronous calls are
 * refused by the core on this loop (mprpc_loop_can_block is false).
 */
#ifndef MPRPC_TEST_FAKE_LOOP_H
#define MPRPC_TEST_FAKE_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include "mprpc/loop.h"

/* A plausible wall clock (2023-11-14) for tests that print or publish it. */
#define FAKE_WALL_2023_NS (1700000000ull * MPRPC_NS_PER_S)

typedef struct fake_loop_opts {
  uint64_t seed;           /* the loop's PRNG; 0 = 1 */
  uint64_t start_ns;       /* the clock's first reading; 0 = 1000 s, so now - x never wraps */
  uint64_t wall_offset_ns; /* wall_ns() = now_ns() + this (0: wall = monotonic) */
  size_t max_posts;        /* queued posts before post() says ENOMEM; 0 = 65536 */
  long max_steps;          /* posts + timer rounds one run may take before the loop
                            * counts as never settling (a check failure); 0 = 1,000,000 */
} fake_loop_opts_t;

typedef struct fake_loop fake_loop_t;

/* NULL opts: all defaults. Never NULL (allocation failure is a check). */
fake_loop_t *fake_loop_new(const fake_loop_opts_t *opts);
/* Frees the loop and any timers or posts still queued, without running
 * them (run it first when their callbacks free something). */
void fake_loop_free(fake_loop_t *L);
/* The seam view; valid while L lives. */
mprpc_loop_t fake_loop_seam(fake_loop_t *L);

/* Runs posts and due timers until none is left at the current time. */
void fake_loop_run(fake_loop_t *L);
/* Moves the clock ms forward, stopping at every timer deadline on the way
 * (so each timer sees now == its deadline), and runs what is due. */
void fake_loop_advance(fake_loop_t *L, uint64_t ms);
/* Moves the clock without running anything: a handler that takes ms. */
void fake_loop_skip(fake_loop_t *L, uint64_t ms);

uint64_t fake_loop_now(const fake_loop_t *L);
size_t fake_loop_timers(const fake_loop_t *L); /* armed timers */
size_t fake_loop_posts(const fake_loop_t *L);  /* queued posts */

/* The seam's operations, for callers that hold the fake_loop_t. */
uint64_t fake_loop_timer_start(fake_loop_t *L, uint64_t delay_ns, mprpc_timer_cb cb, void *arg);
void fake_loop_timer_cancel(fake_loop_t *L, uint64_t id);
int fake_loop_post(fake_loop_t *L, mprpc_post_cb fn, void *arg);

/* fn(arg) runs each time fake_loop_run finds nothing left to do (a harness
 * checking what was written so far); NULL to stop. */
void fake_loop_on_idle(fake_loop_t *L, void (*fn)(void *arg), void *arg);

#endif
