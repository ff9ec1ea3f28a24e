/*
 * The loop/clock seam over libev: one ev_loop per thread.
 *
 * Timers live in a core/timerq heap (generation-checked ids, so cancelling a
 * fired or unknown id is a no-op) and ONE ev_timer is armed for the earliest
 * deadline. post() appends to a mutex-protected FIFO and wakes the loop with
 * ev_async. in_loop() compares a thread-local "current loop" pointer, which
 * needs no synchronisation. A post made on the loop's own thread feeds the
 * async event instead (no wake-up needed). Each loop has its own
 * xoshiro256** seeded once from getrandom().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "rt/rt_internal.h"

struct mprpc__post_item {
  mprpc_post_cb fn;
  void *arg;
  mprpc__post_item_t *next;
};

/* The loop the calling thread is running (or draining), if any. */
static _Thread_local mprpc__evloop_t *tls_loop;

static const mprpc_loop_ops_t evloop_ops;

static uint64_t clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * MPRPC_NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* ---- timers ------------------------------------------------------------ */

static void rearm(mprpc__evloop_t *L) {
  uint64_t deadline;
  if (!mprpc__timerq_peek(&L->tq, &deadline)) {
    if (L->armed != UINT64_MAX) {
      ev_timer_stop(L->ev, &L->timer);
      L->armed = UINT64_MAX;
    }
    return;
  }
  if (deadline == L->armed)
    return;
  uint64_t now = clock_ns(CLOCK_MONOTONIC);
  double after = deadline > now ? (double)(deadline - now) / 1e9 : 0.0;
  /* libev measures from its cached iteration time; refresh it so the timer
   * does not fire early by the time spent in this iteration's callbacks
   * (an early fire would only cost a re-arm, but it is a wasted wakeup). */
  ev_now_update(L->ev);
  ev_timer_stop(L->ev, &L->timer);
  ev_timer_set(&L->timer, after, 0.0);
  ev_timer_start(L->ev, &L->timer);
  L->armed = deadline;
}

static void on_ev_timer(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)ev;
  (void)revents;
  mprpc__evloop_t *L = (mprpc__evloop_t *)((char *)w - offsetof(mprpc__evloop_t, timer));
  L->armed = UINT64_MAX; /* a fired one-shot ev_timer is inactive */
  mprpc__timerq_run_due(&L->tq, clock_ns(CLOCK_MONOTONIC));
  rearm(L);
}

static uint64_t timer_at(mprpc__evloop_t *L, uint64_t deadline, mprpc_timer_cb cb, void *arg) {
  uint64_t id = mprpc__timerq_add(&L->tq, deadline, cb, arg);
  if (id && deadline < L->armed)
    rearm(L);
  return id;
}

uint64_t mprpc__evloop_timer_start(mprpc__evloop_t *L, uint64_t delay_ns, mprpc_timer_cb cb,
                                   void *arg) {
  uint64_t now = clock_ns(CLOCK_MONOTONIC);
  uint64_t deadline = delay_ns > UINT64_MAX - now ? UINT64_MAX - 1 : now + delay_ns;
  return timer_at(L, deadline, cb, arg);
}

/* The ev_timer is left armed even when the queue empties: an early or
 * spurious fire only runs nothing and re-arms, while stopping it here and
 * starting it again for the next timer costs two clock reads and two libev
 * heap operations per call on a loop doing one call at a time. */
void mprpc__evloop_timer_cancel(mprpc__evloop_t *L, uint64_t id) {
  mprpc__timerq_cancel(&L->tq, id);
}

/* ---- posts ------------------------------------------------------------- */

int mprpc__evloop_post(mprpc__evloop_t *L, mprpc_post_cb fn, void *arg) {
  pthread_mutex_lock(&L->mu);
  if (L->stopped) {
    pthread_mutex_unlock(&L->mu);
    return MPRPC_ESTATE;
  }
  /* Reuse an item run earlier (the lock is held anyway) instead of a
   * malloc/free pair per post. */
  mprpc__post_item_t *it = L->post_free;
  if (it) {
    L->post_free = it->next;
    L->npost_free--;
  } else {
    pthread_mutex_unlock(&L->mu);
    it = malloc(sizeof *it);
    if (!it)
      return MPRPC_ENOMEM;
    pthread_mutex_lock(&L->mu);
    if (L->stopped) {
      pthread_mutex_unlock(&L->mu);
      free(it);
      return MPRPC_ESTATE;
    }
  }
  it->fn = fn;
  it->arg = arg;
  it->next = NULL;
  if (L->post_tail)
    L->post_tail->next = it;
  else
    L->post_head = it;
  L->post_tail = it;
  pthread_mutex_unlock(&L->mu);
  if (tls_loop == L && !L->stopping && !L->in_posts) {
    /* Posted from the loop's own thread, inside one of its callbacks: feed
     * the event so the post runs in this iteration, after the current
     * callback, without an eventfd write and an extra epoll_wait. Posts made
     * by posts still wait for the next iteration (ev_async_send), so a post
     * that re-posts itself cannot keep the loop from polling. */
    ev_feed_event(L->ev, &L->async, EV_ASYNC);
  } else {
    ev_async_send(L->ev, &L->async);
  }
  return 0;
}

/* Runs the posts queued so far (not those they post); true if any ran. */
static bool run_posts(mprpc__evloop_t *L) {
  pthread_mutex_lock(&L->mu);
  mprpc__post_item_t *it = L->post_head;
  L->post_head = L->post_tail = NULL;
  pthread_mutex_unlock(&L->mu);
  bool ran = it != NULL;
  mprpc__post_item_t *done = NULL, *done_tail = NULL;
  size_t ndone = 0;
  while (it) {
    mprpc__post_item_t *next = it->next;
    mprpc_post_cb fn = it->fn;
    void *arg = it->arg;
    if (ndone < MPRPC__POST_CACHE) {
      it->next = done;
      done = it;
      if (!done_tail)
        done_tail = it;
      ndone++;
    } else {
      free(it);
    }
    fn(arg);
    it = next;
  }
  if (done) {
    /* Give the items back for reuse, keeping at most MPRPC__POST_CACHE. */
    pthread_mutex_lock(&L->mu);
    if (L->npost_free < MPRPC__POST_CACHE) {
      done_tail->next = L->post_free;
      L->post_free = done;
      L->npost_free += ndone;
      done = NULL;
    }
    pthread_mutex_unlock(&L->mu);
    while (done) {
      mprpc__post_item_t *n = done->next;
      free(done);
      done = n;
    }
  }
  return ran;
}

static void on_ev_async(struct ev_loop *ev, ev_async *w, int revents) {
  (void)revents;
  mprpc__evloop_t *L = (mprpc__evloop_t *)((char *)w - offsetof(mprpc__evloop_t, async));
  L->in_posts = true;
  run_posts(L);
  L->in_posts = false;
  pthread_mutex_lock(&L->mu);
  bool stop = L->stop_req;
  pthread_mutex_unlock(&L->mu);
  if (stop)
    ev_break(ev, EVBREAK_ALL);
}

static void on_ev_reap(struct ev_loop *ev, ev_async *w, int revents) {
  (void)ev;
  (void)revents;
  mprpc__evloop_t *L = (mprpc__evloop_t *)((char *)w - offsetof(mprpc__evloop_t, reap));
  mprpc__tcp_loop_reap(L);
}

static void on_ev_flush(struct ev_loop *ev, ev_async *w, int revents) {
  (void)ev;
  (void)revents;
  mprpc__evloop_t *L = (mprpc__evloop_t *)((char *)w - offsetof(mprpc__evloop_t, flushw));
  mprpc__tcp_loop_flush(L);
}

/* ---- lifecycle --------------------------------------------------------- */

static uint64_t os_seed(const void *salt) {
  uint64_t seed = 0;
  ssize_t n = getrandom(&seed, sizeof seed, GRND_NONBLOCK);
  if (n != (ssize_t)sizeof seed) {
    /* No entropy yet (very early boot): mix what differs between loops. */
    seed = clock_ns(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)salt;
  }
  return seed;
}

int mprpc__evloop_new(mprpc__evloop_t **out) {
  mprpc__evloop_t *L = calloc(1, sizeof *L);
  if (!L)
    return MPRPC_ENOMEM;
  bool mu_ok = false;
  L->ev = ev_loop_new(EVFLAG_AUTO);
  if (!L->ev) {
    MPRPC_LOG_ERROR("ev_loop_new: failed");
    goto fail;
  }
  if (pthread_mutex_init(&L->mu, NULL) != 0)
    goto fail;
  mu_ok = true;
  mprpc__timerq_init(&L->tq);
  L->armed = UINT64_MAX;
  ev_timer_init(&L->timer, on_ev_timer, 0.0, 0.0);
  ev_async_init(&L->async, on_ev_async);
  ev_async_start(L->ev, &L->async);
  ev_async_init(&L->reap, on_ev_reap);
  /* Lowest priority: libev invokes it after every other pending callback,
   * including those fed while it waited, and before it polls again. */
  ev_async_init(&L->flushw, on_ev_flush);
  ev_set_priority(&L->flushw, EV_MINPRI);
  mprpc_xoshiro_seed(&L->rng, os_seed(L));
  *out = L;
  return 0;
fail:
  if (mu_ok)
    pthread_mutex_destroy(&L->mu);
  if (L->ev)
    ev_loop_destroy(L->ev);
  free(L);
  return MPRPC_ENOMEM;
}

void mprpc__evloop_run(mprpc__evloop_t *L) {
  tls_loop = L;
  ev_run(L->ev, 0);
  mprpc__evloop_drain(L);
  tls_loop = NULL;
}

void mprpc__evloop_request_stop(mprpc__evloop_t *L) {
  pthread_mutex_lock(&L->mu);
  L->stop_req = true;
  pthread_mutex_unlock(&L->mu);
  ev_async_send(L->ev, &L->async);
}

void mprpc__evloop_drain(mprpc__evloop_t *L) {
  mprpc__evloop_t *prev = tls_loop;
  tls_loop = L;
  L->stopping = true;
  mprpc__tcp_loop_shutdown(L);
  /* Closes and posts may beget each other; give them a bounded number of
   * rounds, then refuse new posts and run what was accepted before. */
  for (int round = 0; round < 1000; round++) {
    bool any = mprpc__tcp_loop_reap(L);
    any |= run_posts(L);
    if (!any)
      break;
  }
  pthread_mutex_lock(&L->mu);
  L->stopped = true;
  pthread_mutex_unlock(&L->mu);
  while (run_posts(L) || mprpc__tcp_loop_reap(L)) {
    /* posts now fail with ESTATE, so this terminates: the queue only
     * shrinks, and closes only touch existing connections */
  }
  tls_loop = prev;
}

void mprpc__evloop_free(mprpc__evloop_t *L) {
  if (!L)
    return;
  if (!L->stopped)
    mprpc__evloop_drain(L);
  mprpc__tcp_loop_free(L);
  ev_timer_stop(L->ev, &L->timer);
  ev_async_stop(L->ev, &L->async);
  ev_loop_destroy(L->ev);
  mprpc__timerq_free(&L->tq);
  while (L->post_free) {
    mprpc__post_item_t *n = L->post_free->next;
    free(L->post_free);
    L->post_free = n;
  }
  pthread_mutex_destroy(&L->mu);
  free(L);
}

bool mprpc__evloop_in_loop(const mprpc__evloop_t *L) { return tls_loop == L; }
bool mprpc__evloop_on_any(void) { return tls_loop != NULL; }

/* ---- the seam ---------------------------------------------------------- */

static uint64_t op_now(void *ctx) {
  (void)ctx;
  return clock_ns(CLOCK_MONOTONIC);
}

static uint64_t op_wall(void *ctx) {
  (void)ctx;
  return clock_ns(CLOCK_REALTIME);
}

static uint64_t op_timer_start(void *ctx, uint64_t delay_ns, mprpc_timer_cb cb, void *arg) {
  return mprpc__evloop_timer_start(ctx, delay_ns, cb, arg);
}

/* deadline_ns is on op_now's clock (CLOCK_MONOTONIC). */
static uint64_t op_timer_start_at(void *ctx, uint64_t deadline_ns, mprpc_timer_cb cb, void *arg) {
  return timer_at(ctx, deadline_ns, cb, arg);
}

static void op_timer_cancel(void *ctx, uint64_t id) { mprpc__evloop_timer_cancel(ctx, id); }

static int op_post(void *ctx, mprpc_post_cb fn, void *arg) {
  return mprpc__evloop_post(ctx, fn, arg);
}

static bool op_in_loop(void *ctx) { return mprpc__evloop_in_loop(ctx); }
static bool op_on_a_loop(void *ctx) {
  (void)ctx;
  return tls_loop != NULL;
}

static mprpc_rand_t op_rand(void *ctx) {
  mprpc__evloop_t *L = ctx;
  return mprpc_rand_xoshiro(&L->rng);
}

/* Waiters (synchronous calls): see waiter.c. */
static void *op_waiter_new(void *ctx) {
  (void)ctx;
  return mprpc__waiter_new();
}

static void op_waiter_wait(void *ctx, void *w) {
  (void)ctx;
  mprpc__waiter_wait(w);
}

static void op_waiter_wake(void *ctx, void *w) {
  (void)ctx;
  mprpc__waiter_wake(w);
}

static void op_waiter_free(void *ctx, void *w) {
  (void)ctx;
  mprpc__waiter_free(w);
}

static const mprpc_loop_ops_t evloop_ops = {
    .now_ns = op_now,
    .wall_ns = op_wall,
    .timer_start = op_timer_start,
    .timer_cancel = op_timer_cancel,
    .timer_start_at = op_timer_start_at,
    .post = op_post,
    .in_loop = op_in_loop,
    .on_a_loop = op_on_a_loop,
    .rand = op_rand,
    .waiter_new = op_waiter_new,
    .waiter_wait = op_waiter_wait,
    .waiter_wake = op_waiter_wake,
    .waiter_free = op_waiter_free,
};

mprpc_loop_t mprpc__evloop_seam(mprpc__evloop_t *L) {
  return (mprpc_loop_t){.vt = &evloop_ops, .ctx = L};
}

mprpc__evloop_t *mprpc__evloop_from(mprpc_loop_t l) {
  return l.vt == &evloop_ops ? l.ctx : NULL;
}
