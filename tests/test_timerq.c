#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/timerq.h"
#include "mprpc/rand.h"

typedef struct rec {
  int order[64];
  int n;
  mprpc__timerq_t *q;
  uint64_t cancel_id;
} rec_t;

typedef struct tcb {
  rec_t *r;
  int tag;
} tcb_t;

static void fire(void *arg) {
  tcb_t *t = arg;
  t->r->order[t->r->n++] = t->tag;
  if (t->r->cancel_id)
    mprpc__timerq_cancel(t->r->q, t->r->cancel_id);
}

static void test_timerq_fires_in_deadline_then_start_order(void **state) {
  (void)state;
  mprpc__timerq_t q;
  mprpc__timerq_init(&q);
  rec_t r = {.q = &q};
  tcb_t t[5];
  uint64_t deadlines[5] = {30, 10, 20, 10, 5};
  for (int i = 0; i < 5; i++) {
    t[i] = (tcb_t){&r, i};
    assert_int_not_equal(mprpc__timerq_add(&q, deadlines[i], fire, &t[i]), 0);
  }
  assert_int_equal(mprpc__timerq_run_due(&q, 9), 1);
  assert_int_equal(mprpc__timerq_run_due(&q, 100), 4);
  int want[] = {4, 1, 3, 2, 0};
  assert_memory_equal(r.order, want, sizeof want);
  mprpc__timerq_free(&q);
}

/* The simulator holds a busy loop's events by deferring the earliest one:
 * it moves behind everything due by then, and its id stays valid. */
static void test_timerq_defer_top_keeps_the_id(void **state) {
  (void)state;
  mprpc__timerq_t q;
  mprpc__timerq_init(&q);
  rec_t r = {.q = &q};
  tcb_t t[3] = {{&r, 0}, {&r, 1}, {&r, 2}};
  uint64_t id0 = mprpc__timerq_add(&q, 10, fire, &t[0]);
  assert_int_not_equal(mprpc__timerq_add(&q, 50, fire, &t[1]), 0);
  uint64_t id2 = mprpc__timerq_add(&q, 20, fire, &t[2]);
  assert_ptr_equal(mprpc__timerq_top_arg(&q), &t[0]);
  mprpc__timerq_defer_top(&q, 50); /* after t1, which was due at 50 first */
  assert_ptr_equal(mprpc__timerq_top_arg(&q), &t[2]);
  mprpc__timerq_defer_top(&q, 5); /* never earlier: no change */
  assert_ptr_equal(mprpc__timerq_top_arg(&q), &t[2]);
  assert_true(mprpc__timerq_cancel(&q, id2));
  assert_int_equal(mprpc__timerq_run_due(&q, 100), 2);
  int want[] = {1, 0};
  assert_memory_equal(r.order, want, sizeof want);
  assert_false(mprpc__timerq_cancel(&q, id0)); /* fired */
  assert_null(mprpc__timerq_top_arg(&q));
  mprpc__timerq_free(&q);
}

static void test_timerq_cancel_is_safe_after_fire_and_from_callback(void **state) {
  (void)state;
  mprpc__timerq_t q;
  mprpc__timerq_init(&q);
  rec_t r = {.q = &q};
  tcb_t a = {&r, 1}, b = {&r, 2};
  uint64_t ida = mprpc__timerq_add(&q, 1, fire, &a);
  uint64_t idb = mprpc__timerq_add(&q, 2, fire, &b);
  r.cancel_id = idb; /* a's callback cancels b */
  mprpc__timerq_run_due(&q, 10);
  assert_int_equal(r.n, 1);
  assert_false(mprpc__timerq_cancel(&q, ida)); /* already fired */
  assert_false(mprpc__timerq_cancel(&q, idb)); /* already cancelled */
  assert_false(mprpc__timerq_cancel(&q, 0));
  assert_false(mprpc__timerq_cancel(&q, 0xdeadbeef00000007ull));
  /* a reused slot gets a new generation: the stale id cannot cancel it */
  r.cancel_id = 0;
  uint64_t idc = mprpc__timerq_add(&q, 5, fire, &a);
  assert_int_not_equal(idc, ida);
  assert_false(mprpc__timerq_cancel(&q, ida));
  assert_int_equal(mprpc__timerq_len(&q), 1);
  mprpc__timerq_free(&q);
}

static void test_timerq_random_ops_match_model(void **state) {
  (void)state;
  enum { N = 4000 };
  static uint64_t ids[N], dl[N];
  static bool live[N];
  mprpc__timerq_t q;
  mprpc__timerq_init(&q);
  mprpc_xoshiro_t x;
  mprpc_xoshiro_seed(&x, 42);
  mprpc_rand_t rnd = mprpc_rand_xoshiro(&x);
  for (int i = 0; i < N; i++) {
    dl[i] = mprpc_rand_below(rnd, 1000);
    ids[i] = mprpc__timerq_add(&q, dl[i], fire, NULL);
    live[i] = true;
    if (i > 0 && mprpc_rand_below(rnd, 3) == 0) {
      int k = (int)mprpc_rand_below(rnd, (uint64_t)i);
      assert_int_equal(mprpc__timerq_cancel(&q, ids[k]), live[k]);
      live[k] = false;
    }
  }
  uint64_t last = 0;
  mprpc_timer_cb cb;
  void *arg;
  size_t popped = 0, expect = 0;
  for (int i = 0; i < N; i++)
    expect += live[i];
  uint64_t d;
  while (mprpc__timerq_peek(&q, &d)) {
    assert_true(mprpc__timerq_pop_due(&q, d, &cb, &arg));
    assert_true(d >= last);
    last = d;
    popped++;
  }
  assert_int_equal(popped, expect);
  mprpc__timerq_free(&q);
}

static void test_rand_is_reproducible_and_bounded(void **state) {
  (void)state;
  mprpc_xoshiro_t a, b;
  mprpc_xoshiro_seed(&a, 7);
  mprpc_xoshiro_seed(&b, 7);
  for (int i = 0; i < 1000; i++)
    assert_int_equal(mprpc_xoshiro_next(&a), mprpc_xoshiro_next(&b));
  mprpc_rand_t r = mprpc_rand_xoshiro(&a);
  int hist[10] = {0};
  for (int i = 0; i < 100000; i++) {
    uint64_t v = mprpc_rand_below(r, 10);
    assert_true(v < 10);
    hist[v]++;
  }
  for (int i = 0; i < 10; i++)
    assert_in_range(hist[i], 9000, 11000);
  assert_int_equal(mprpc_rand_below(r, 0), 0);
  double dd = mprpc_rand_double(r);
  assert_true(dd >= 0.0 && dd < 1.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_timerq_fires_in_deadline_then_start_order),
      cmocka_unit_test(test_timerq_defer_top_keeps_the_id),
      cmocka_unit_test(test_timerq_cancel_is_safe_after_fire_and_from_callback),
      cmocka_unit_test(test_timerq_random_ops_match_model),
      cmocka_unit_test(test_rand_is_reproducible_and_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
