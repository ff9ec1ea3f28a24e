/* The libev loop behind the loop/clock seam (src/rt/loop_ev.c, group.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/loop.h"
#include "mprpc/rt.h"

/* ---- helpers ----------------------------------------------------------- */

typedef struct fixture {
  mprpc_loop_group_t *g;
  mprpc_loop_t loop;
  void *done; /* waiter woken by the test's last callback */
} fixture_t;

static fixture_t *fixture_new(size_t n) {
  fixture_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(mprpc_loop_group_new(n, &f->g), 0);
  assert_int_equal(mprpc_loop_group_start(f->g), 0);
  f->loop = mprpc_loop_group_loop(f->g, 0);
  assert_true(mprpc_loop_can_block(f->loop));
  f->done = f->loop.vt->waiter_new(f->loop.ctx);
  assert_non_null(f->done);
  return f;
}

static void fixture_free(fixture_t *f) {
  mprpc_loop_group_free(f->g);
  f->loop.vt->waiter_free(f->loop.ctx, f->done);
  free(f);
}

static void wake(fixture_t *f) { f->loop.vt->waiter_wake(f->loop.ctx, f->done); }
static void wait_done(fixture_t *f) { f->loop.vt->waiter_wait(f->loop.ctx, f->done); }

/* Runs fn(arg) on the loop thread and returns after it ran. */
typedef struct sync_call {
  fixture_t *f;
  void (*fn)(void *);
  void *arg;
  void *w;
} sync_call_t;

static void sync_trampoline(void *p) {
  sync_call_t *s = p;
  s->fn(s->arg);
  s->f->loop.vt->waiter_wake(s->f->loop.ctx, s->w);
}

static void run_on_loop(fixture_t *f, void (*fn)(void *), void *arg) {
  sync_call_t s = {f, fn, arg, f->loop.vt->waiter_new(f->loop.ctx)};
  assert_non_null(s.w);
  assert_int_equal(mprpc_loop_post(f->loop, sync_trampoline, &s), 0);
  f->loop.vt->waiter_wait(f->loop.ctx, s.w);
  f->loop.vt->waiter_free(f->loop.ctx, s.w);
}

/* ---- timers ------------------------------------------------------------ */

typedef struct tctx {
  fixture_t *f;
  int order[16];
  int n;
  int expect;
  uint64_t ids[16];
  bool fired[16];
  int stray;
  int bad; /* checks made on the loop thread (cmocka asserts only on main) */
} tctx_t;

typedef struct targ {
  tctx_t *t;
  int tag;
} targ_t;

static void record(void *p) {
  targ_t *a = p;
  tctx_t *t = a->t;
  if (!mprpc_loop_in_loop(t->f->loop))
    t->bad++;
  t->fired[a->tag] = true;
  t->order[t->n++] = a->tag;
  if (t->n == t->expect)
    wake(t->f);
}

static targ_t targs[16];

static void start_ordered(void *p) {
  tctx_t *t = p;
  /* Started longest first, all from one reading of the clock, so the order
   * does not depend on how long the loop thread takes between two starts:
   * equal deadlines fire in the order they were started. */
  static const uint64_t ms[] = {400, 300, 200, 100, 0, 0, 0};
  uint64_t now = mprpc_loop_now(t->f->loop);
  for (int i = 0; i < 7; i++) {
    targs[i] = (targ_t){t, i};
    t->ids[i] =
        mprpc_timer_start_from(t->f->loop, now, ms[i] * MPRPC_NS_PER_MS, record, &targs[i]);
    if (t->ids[i] == 0)
      t->bad++;
    for (int j = 0; j < i; j++)
      if (t->ids[i] == t->ids[j])
        t->bad++;
  }
}

static void test_loop_timers_fire_in_deadline_order(void **state) {
  (void)state;
  fixture_t *f = fixture_new(1);
  tctx_t t = {.f = f, .expect = 7};
  run_on_loop(f, start_ordered, &t);
  wait_done(f);
  int want[] = {4, 5, 6, 3, 2, 1, 0};
  assert_int_equal(t.n, 7);
  assert_memory_equal(t.order, want, sizeof want);
  assert_int_equal(t.bad, 0);
  fixture_free(f);
}

/* Timer 0 (delay 0) cancels timer 1 (later), itself (already fired) and an
 * id that never existed; timer 2 (latest) cancels timer 0 again, starts a
 * fresh timer 3 whose id must differ from every earlier one, and timer 3
 * ends the test. */
static void cancel_from_timer(void *p) {
  targ_t *a = p;
  tctx_t *t = a->t;
  t->fired[a->tag] = true;
  t->order[t->n++] = a->tag;
  if (a->tag == 0) {
    mprpc_timer_cancel(t->f->loop, t->ids[1]);
    mprpc_timer_cancel(t->f->loop, t->ids[0]);
    mprpc_timer_cancel(t->f->loop, 0x7777777700000042ull);
  } else if (a->tag == 2) {
    mprpc_timer_cancel(t->f->loop, t->ids[0]);
    mprpc_timer_cancel(t->f->loop, t->ids[1]);
    targs[3] = (targ_t){t, 3};
    t->ids[3] = mprpc_timer_start(t->f->loop, MPRPC_NS_PER_MS, cancel_from_timer, &targs[3]);
    if (t->ids[3] == 0)
      t->bad++;
    for (int j = 0; j < 3; j++)
      if (t->ids[3] == t->ids[j])
        t->bad++;
  } else if (a->tag == 3) {
    wake(t->f);
  }
}

static void stray(void *p) {
  tctx_t *t = p;
  t->stray++;
}

static void start_cancels(void *p) {
  tctx_t *t = p;
  for (int i = 0; i < 3; i++)
    targs[i] = (targ_t){t, i};
  t->ids[0] = mprpc_timer_start(t->f->loop, 0, cancel_from_timer, &targs[0]);
  t->ids[1] = mprpc_timer_start(t->f->loop, 200 * MPRPC_NS_PER_MS, cancel_from_timer, &targs[1]);
  t->ids[2] = mprpc_timer_start(t->f->loop, 400 * MPRPC_NS_PER_MS, cancel_from_timer, &targs[2]);
  /* Cancelled before it could fire, from outside any timer. */
  uint64_t gone = mprpc_timer_start(t->f->loop, 0, stray, t);
  if (gone == 0)
    t->bad++;
  mprpc_timer_cancel(t->f->loop, gone);
  mprpc_timer_cancel(t->f->loop, gone);
}

static void test_loop_timer_cancel_inside_timer_and_after_fire(void **state) {
  (void)state;
  fixture_t *f = fixture_new(1);
  tctx_t t = {.f = f};
  run_on_loop(f, start_cancels, &t);
  wait_done(f);
  assert_int_equal(t.n, 3);
  int want[] = {0, 2, 3};
  assert_memory_equal(t.order, want, sizeof want);
  assert_false(t.fired[1]);
  assert_int_equal(t.stray, 0);
  assert_int_equal(t.bad, 0);
  fixture_free(f);
}

/* ---- posts ------------------------------------------------------------- */

#define PRODUCERS 8
#define PER_PRODUCER 10000

typedef struct pctx {
  fixture_t *f;
  uint8_t seen[PRODUCERS * PER_PRODUCER];
  int last[PRODUCERS]; /* last index per producer: posts keep their order */
  long count;
  int off_loop;
  int out_of_order;
} pctx_t;

static pctx_t *pc;

static void on_post(void *arg) {
  uintptr_t v = (uintptr_t)arg - 1;
  int prod = (int)(v / PER_PRODUCER), idx = (int)(v % PER_PRODUCER);
  if (!mprpc_loop_in_loop(pc->f->loop))
    pc->off_loop++;
  if (idx <= pc->last[prod])
    pc->out_of_order++;
  pc->last[prod] = idx;
  pc->seen[v]++;
  pc->count++;
}

static void *producer(void *arg) {
  int prod = (int)(uintptr_t)arg;
  for (int i = 0; i < PER_PRODUCER; i++) {
    uintptr_t v = (uintptr_t)prod * PER_PRODUCER + (uintptr_t)i + 1;
    if (mprpc_loop_post(pc->f->loop, on_post, (void *)v) != 0)
      return (void *)1;
  }
  return NULL;
}

static void finish(void *arg) { wake(arg); }

static void test_loop_post_from_many_threads_runs_each_once_on_loop(void **state) {
  (void)state;
  fixture_t *f = fixture_new(1);
  pc = calloc(1, sizeof *pc);
  assert_non_null(pc);
  pc->f = f;
  for (int i = 0; i < PRODUCERS; i++)
    pc->last[i] = -1;
  assert_false(mprpc_loop_in_loop(f->loop));
  pthread_t th[PRODUCERS];
  for (int i = 0; i < PRODUCERS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, producer, (void *)(uintptr_t)i), 0);
  for (int i = 0; i < PRODUCERS; i++) {
    void *rv;
    pthread_join(th[i], &rv);
    assert_null(rv);
  }
  /* Posts run in order, so this one runs after all of the above. */
  assert_int_equal(mprpc_loop_post(f->loop, finish, f), 0);
  wait_done(f);
  assert_int_equal(pc->count, PRODUCERS * PER_PRODUCER);
  assert_int_equal(pc->off_loop, 0);
  assert_int_equal(pc->out_of_order, 0);
  for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++)
    assert_int_equal(pc->seen[i], 1);
  fixture_free(f);
  free(pc);
  pc = NULL;
}

/* A post made on the loop's own thread, from a callback that is not itself
 * a post, runs after that callback returned, in post order. */
typedef struct selfpost {
  fixture_t *f;
  int order[3];
  int n;
  bool caller_returned;
  int bad;
} selfpost_t;

static selfpost_t sp;

static void sp_record(void *arg) {
  int tag = (int)(uintptr_t)arg;
  if (!mprpc_loop_in_loop(sp.f->loop) || !sp.caller_returned)
    sp.bad++;
  if (sp.n < 3)
    sp.order[sp.n] = tag;
  if (++sp.n == 3)
    wake(sp.f);
}

static void sp_timer(void *arg) {
  (void)arg;
  for (uintptr_t i = 0; i < 3; i++)
    if (mprpc_loop_post(sp.f->loop, sp_record, (void *)i) != 0)
      sp.bad++;
  if (sp.n != 0) /* never run inside post() */
    sp.bad++;
  sp.caller_returned = true;
}

static void sp_start(void *arg) {
  (void)arg;
  if (mprpc_timer_start(sp.f->loop, 0, sp_timer, NULL) == 0)
    sp.bad++;
}

static void test_loop_post_from_loop_thread_runs_after_caller_in_order(void **state) {
  (void)state;
  fixture_t *f = fixture_new(1);
  memset(&sp, 0, sizeof sp);
  sp.f = f;
  run_on_loop(f, sp_start, NULL);
  wait_done(f);
  assert_int_equal(sp.n, 3);
  int want[] = {0, 1, 2};
  assert_memory_equal(sp.order, want, sizeof want);
  assert_int_equal(sp.bad, 0);
  fixture_free(f);
}

/* A post that re-posts itself must not keep the loop from polling: a timer
 * due meanwhile still fires. */
#define SPIN_BOUND 1000000

typedef struct spin {
  fixture_t *f;
  long spins;
  bool timer_fired;
  bool woke;
} spin_t;

static spin_t spn;

static void spin_post(void *arg) {
  (void)arg;
  spn.spins++;
  if (spn.timer_fired || spn.spins >= SPIN_BOUND) {
    spn.woke = true;
    wake(spn.f);
    return;
  }
  if (mprpc_loop_post(spn.f->loop, spin_post, NULL) != 0) {
    spn.woke = true;
    wake(spn.f);
  }
}

static void spin_timer(void *arg) {
  (void)arg;
  spn.timer_fired = true;
}

static void spin_kick(void *arg) {
  (void)arg;
  /* From a timer callback, so the first post takes the in-loop path. */
  mprpc_timer_start(spn.f->loop, MPRPC_NS_PER_MS, spin_timer, NULL);
  mprpc_loop_post(spn.f->loop, spin_post, NULL);
}

static void spin_start(void *arg) {
  (void)arg;
  mprpc_timer_start(spn.f->loop, 0, spin_kick, NULL);
}

static void test_loop_self_reposting_post_does_not_starve_timers(void **state) {
  (void)state;
  fixture_t *f = fixture_new(1);
  memset(&spn, 0, sizeof spn);
  spn.f = f;
  run_on_loop(f, spin_start, NULL);
  wait_done(f);
  assert_true(spn.woke);
  assert_true(spn.timer_fired);
  assert_true(spn.spins < SPIN_BOUND);
  fixture_free(f);
}

static int ran_on_drain;
static bool drain_in_loop;
static mprpc_loop_t drain_loop;

static void count_drain(void *arg) {
  (void)arg;
  ran_on_drain++;
  drain_in_loop = mprpc_loop_in_loop(drain_loop);
}

static void test_loop_stop_runs_pending_posts_then_refuses(void **state) {
  (void)state;
  mprpc_loop_group_t *g;
  assert_int_equal(mprpc_loop_group_new(2, &g), 0);
  drain_loop = mprpc_loop_group_loop(g, 1);
  ran_on_drain = 0;
  /* Never started: the posts are still run, exactly once, by stop. */
  for (int i = 0; i < 3; i++)
    assert_int_equal(mprpc_loop_post(drain_loop, count_drain, NULL), 0);
  mprpc_loop_group_stop(g);
  assert_int_equal(ran_on_drain, 3);
  assert_true(drain_in_loop);
  assert_false(mprpc_loop_in_loop(drain_loop));
  assert_int_equal(mprpc_loop_post(drain_loop, count_drain, NULL), MPRPC_ESTATE);
  mprpc_loop_group_stop(g); /* idempotent */
  assert_int_equal(mprpc_loop_group_start(g), MPRPC_ESTATE);
  mprpc_loop_group_free(g);
  assert_int_equal(ran_on_drain, 3);
}

static void test_loop_group_new_rejects_zero(void **state) {
  (void)state;
  mprpc_loop_group_t *g = NULL;
  assert_int_equal(mprpc_loop_group_new(0, &g), MPRPC_EINVAL);
  assert_null(g);
}

/* ---- clock, randomness, waiters, default loop --------------------------- */

static uint64_t drawn[3];

static void draw(void *arg) {
  fixture_t *f = arg;
  mprpc_rand_t r = mprpc_loop_rand(f->loop);
  drawn[0] = mprpc_rand_u64(r);
  drawn[1] = mprpc_rand_u64(r);
  drawn[2] = mprpc_rand_below(r, 10);
}

static void test_loop_clock_and_rand(void **state) {
  (void)state;
  fixture_t *f = fixture_new(2);
  uint64_t t0 = mprpc_loop_now(f->loop), t1 = mprpc_loop_now(f->loop);
  assert_true(t1 >= t0);
  /* Wall time is after 2020-01-01. */
  assert_true(mprpc_loop_wall(f->loop) > 1577836800ull * MPRPC_NS_PER_S);
  run_on_loop(f, draw, f);
  assert_int_not_equal(drawn[0], drawn[1]);
  assert_true(drawn[2] < 10);
  /* Two loops, two different generators. */
  mprpc_loop_t l1 = mprpc_loop_group_loop(f->g, 1);
  assert_ptr_not_equal(l1.ctx, f->loop.ctx);
  assert_int_equal(mprpc_loop_group_size(f->g), 2);
  fixture_free(f);
}

static void test_loop_waiter_wake_before_wait(void **state) {
  (void)state;
  fixture_t *f = fixture_new(1);
  void *w = f->loop.vt->waiter_new(f->loop.ctx);
  assert_non_null(w);
  f->loop.vt->waiter_wake(f->loop.ctx, w);
  f->loop.vt->waiter_wait(f->loop.ctx, w); /* must not block */
  f->loop.vt->waiter_free(f->loop.ctx, w);
  fixture_free(f);
}

/* A thread's waiter is reused (waiter.c): a second one taken while the
 * first is in use is a different one, a reused one starts unwoken, and
 * many rounds of wake-from-the-loop / wait on one thread each wake once. */
static void wake_arg(void *arg) {
  void **wp = arg;
  mprpc_loop_t *l = wp[0];
  l->vt->waiter_wake(l->ctx, wp[1]);
}

static void test_loop_waiter_reused_nested_and_woken_once_per_wait(void **state) {
  (void)state;
  fixture_t *f = fixture_new(1);
  void *a = f->loop.vt->waiter_new(f->loop.ctx);
  void *b = f->loop.vt->waiter_new(f->loop.ctx);
  assert_non_null(a);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  f->loop.vt->waiter_wake(f->loop.ctx, b);
  f->loop.vt->waiter_free(f->loop.ctx, b);
  f->loop.vt->waiter_free(f->loop.ctx, a);
  for (int i = 0; i < 2000; i++) {
    void *w = f->loop.vt->waiter_new(f->loop.ctx);
    assert_non_null(w);
    void *args[2] = {&f->loop, w};
    assert_int_equal(mprpc_loop_post(f->loop, wake_arg, args), 0);
    f->loop.vt->waiter_wait(f->loop.ctx, w);
    f->loop.vt->waiter_free(f->loop.ctx, w);
  }
  fixture_free(f);
}

typedef struct dctx {
  mprpc_loop_t loop;
  void *w;
  bool in_loop;
} dctx_t;

static void on_default(void *arg) {
  dctx_t *d = arg;
  d->in_loop = mprpc_loop_in_loop(d->loop);
  d->loop.vt->waiter_wake(d->loop.ctx, d->w);
}

static void test_loop_default_loop_runs_posts(void **state) {
  (void)state;
  dctx_t d = {0};
  assert_int_equal(mprpc_default_loop(&d.loop), 0);
  mprpc_loop_t again;
  assert_int_equal(mprpc_default_loop(&again), 0);
  assert_ptr_equal(again.ctx, d.loop.ctx);
  d.w = d.loop.vt->waiter_new(d.loop.ctx);
  assert_int_equal(mprpc_loop_post(d.loop, on_default, &d), 0);
  d.loop.vt->waiter_wait(d.loop.ctx, d.w);
  d.loop.vt->waiter_free(d.loop.ctx, d.w);
  assert_true(d.in_loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_loop_timers_fire_in_deadline_order),
      cmocka_unit_test(test_loop_timer_cancel_inside_timer_and_after_fire),
      cmocka_unit_test(test_loop_post_from_many_threads_runs_each_once_on_loop),
      cmocka_unit_test(test_loop_post_from_loop_thread_runs_after_caller_in_order),
      cmocka_unit_test(test_loop_self_reposting_post_does_not_starve_timers),
      cmocka_unit_test(test_loop_stop_runs_pending_posts_then_refuses),
      cmocka_unit_test(test_loop_group_new_rejects_zero),
      cmocka_unit_test(test_loop_clock_and_rand),
      cmocka_unit_test(test_loop_waiter_wake_before_wait),
      cmocka_unit_test(test_loop_waiter_reused_nested_and_woken_once_per_wait),
      cmocka_unit_test(test_loop_default_loop_runs_posts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
