/*
 * Internals shared by the libev runtime files (loop_ev.c, tcp.c, group.c).
 * Nothing here is public; nothing outside src/rt/ includes it.
 */
#ifndef MPRPC__RT_INTERNAL_H
#define MPRPC__RT_INTERNAL_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/timerq.h"
#include "mprpc/loop.h"
#include "mprpc/rand.h"
#include "mprpc/transport.h"

typedef struct mprpc__post_item mprpc__post_item_t;

/* One libev loop, driven by one thread. Fields marked (mu) are shared with
 * other threads and guarded by `mu`; everything else belongs to the loop
 * thread. */
#define MPRPC__POST_CACHE 256 /* run post items kept for reuse per loop */

typedef struct mprpc__evloop {
  struct ev_loop *ev;
  mprpc__timerq_t tq;
  ev_timer timer;         /* armed at the earliest timerq deadline */
  uint64_t armed;         /* deadline `timer` is armed for; UINT64_MAX = none */
  ev_async async;         /* wakes the loop for posts and stop requests */
  ev_async reap;          /* never started: fed to run deferred closes */
  ev_async flushw;        /* never started, lowest priority: fed to flush the
                             coalesced writes once the iteration's other
                             callbacks ran, before the loop blocks */
  bool in_posts;          /* run_posts is running posts from on_ev_async */
  pthread_mutex_t mu;
  mprpc__post_item_t *post_head, *post_tail; /* (mu) */
  mprpc__post_item_t *post_free; /* (mu) run items kept for reuse */
  size_t npost_free;             /* (mu) at most 2 * MPRPC__POST_CACHE */
  bool stop_req;          /* (mu) the group asked the thread to stop */
  bool stopped;           /* (mu) posts are refused from now on */
  bool stopping;          /* new connections and accepts are refused */
  atomic_bool threaded;   /* a thread runs (or is about to run) the loop;
                             set and cleared by the group around the thread */
  mprpc_xoshiro_t rng;
  /* Transport bookkeeping (tcp.c): every live connection and listener of
   * this loop, for shutdown; and the FIFO of connections whose on_close is
   * due. */
  struct mprpc_conn *conns;
  struct mprpc_listener *listeners;
  struct mprpc_conn *close_head, *close_tail;
  struct mprpc_conn *flush_head; /* connections holding coalesced writes */
} mprpc__evloop_t;

/* Creates a loop (not yet driven by any thread). */
int mprpc__evloop_new(mprpc__evloop_t **out);
/* Runs the loop on the calling thread until a stop is requested, then
 * drains it (see mprpc__evloop_drain). */
void mprpc__evloop_run(mprpc__evloop_t *L);
/* Asks the thread running L to stop; any thread. */
void mprpc__evloop_request_stop(mprpc__evloop_t *L);
/* Shutdown on the calling thread (which becomes "the loop thread" for the
 * duration): closes connections and listeners, runs every deferred close
 * and every post, then refuses posts. Used by run() and for loops whose
 * thread never started. */
void mprpc__evloop_drain(mprpc__evloop_t *L);
/* Frees a drained loop. */
void mprpc__evloop_free(mprpc__evloop_t *L);
mprpc_loop_t mprpc__evloop_seam(mprpc__evloop_t *L);
/* The evloop behind a seam view, or NULL if the view is not an rt loop. */
mprpc__evloop_t *mprpc__evloop_from(mprpc_loop_t l);
/* True when the calling thread is running L. */
bool mprpc__evloop_in_loop(const mprpc__evloop_t *L);
/* True when the calling thread runs any rt loop. */
bool mprpc__evloop_on_any(void);

/* Timer helpers usable from tcp.c (loop thread). */
uint64_t mprpc__evloop_timer_start(mprpc__evloop_t *L, uint64_t delay_ns, mprpc_timer_cb cb,
                                   void *arg);
void mprpc__evloop_timer_cancel(mprpc__evloop_t *L, uint64_t id);
int mprpc__evloop_post(mprpc__evloop_t *L, mprpc_post_cb fn, void *arg);

/* waiter.c: the loop seam's waiters (futex one-shot semaphores, one kept
 * per thread for reuse). */
typedef struct mprpc__waiter mprpc__waiter_t;
mprpc__waiter_t *mprpc__waiter_new(void);
void mprpc__waiter_wait(mprpc__waiter_t *w);
void mprpc__waiter_wake(mprpc__waiter_t *w);
void mprpc__waiter_free(mprpc__waiter_t *w);

/* Provided by tcp.c, called by the loop. */
/* Closes every listener and connection of L (MPRPC_CLOSE_SHUTDOWN). */
void mprpc__tcp_loop_shutdown(mprpc__evloop_t *L);
/* Runs the on_close of every connection whose close is due; returns true
 * when it ran any. */
bool mprpc__tcp_loop_reap(mprpc__evloop_t *L);
/* Frees the listeners still attached to L (their owners never closed them). */
void mprpc__tcp_loop_free(mprpc__evloop_t *L);
/* Sends the coalesced writes of every connection of L (L->flushw's callback). */
void mprpc__tcp_loop_flush(mprpc__evloop_t *L);

/* console_rt.c: fills the console seams a server's options left empty. */
#include "mprpc/server.h"
void mprpc__rt_console_seams(mprpc_server_opts_t *o);

#endif
