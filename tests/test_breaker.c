/* Outlier ejection state machine on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/breaker.h"

#define MS 1000000ull

static mprpc__breaker_t mk(void) {
  mprpc__breaker_opts_t o = {.conn_failures = 2, .error_percent = 50, .min_requests = 10,
                             .base_ns = 100 * MS, .max_ns = 350 * MS};
  mprpc__breaker_t b;
  mprpc__breaker_init(&b, &o);
  return b;
}

static void test_breaker_conn_failures_eject_then_probe_readmits(void **state) {
  (void)state;
  mprpc__breaker_t b = mk();
  uint64_t t = 1000 * MS;
  assert_true(mprpc__breaker_admits(&b, t));
  assert_false(mprpc__breaker_on_conn_failure(&b, t));
  assert_true(mprpc__breaker_admits(&b, t));
  assert_true(mprpc__breaker_on_conn_failure(&b, t));
  assert_false(mprpc__breaker_admits(&b, t));
  assert_false(mprpc__breaker_admits(&b, t + 99 * MS));
  /* isolation over: probing, admitted for a trial */
  assert_true(mprpc__breaker_admits(&b, t + 100 * MS));
  assert_int_equal(b.state, MPRPC__BREAKER_PROBING);
  mprpc__breaker_on_conn_ok(&b, t + 101 * MS); /* successful reconnect */
  assert_int_equal(b.state, MPRPC__BREAKER_CLOSED);
  assert_int_equal(b.ejections, 1);
}

static void test_breaker_period_doubles_and_caps(void **state) {
  (void)state;
  mprpc__breaker_t b = mk();
  uint64_t t = 0;
  uint64_t expect[] = {100 * MS, 200 * MS, 350 * MS, 350 * MS};
  for (int i = 0; i < 4; i++) {
    if (i == 0) {
      mprpc__breaker_on_conn_failure(&b, t);
      assert_true(mprpc__breaker_on_conn_failure(&b, t));
    } else {
      /* a failed probe ejects again at once */
      assert_true(mprpc__breaker_admits(&b, t));
      assert_true(mprpc__breaker_on_conn_failure(&b, t));
    }
    assert_int_equal(b.until_ns - t, expect[i]);
    assert_false(mprpc__breaker_admits(&b, t + expect[i] - 1));
    t += expect[i];
  }
  /* a successful probe then a clean window resets the doubling */
  assert_true(mprpc__breaker_admits(&b, t));
  assert_false(mprpc__breaker_on_success(&b, t));
  assert_int_equal(b.state, MPRPC__BREAKER_CLOSED);
  for (int i = 0; i < 10; i++)
    mprpc__breaker_on_success(&b, t);
  assert_int_equal(b.repeats, 0);
  mprpc__breaker_on_conn_failure(&b, t);
  assert_true(mprpc__breaker_on_conn_failure(&b, t));
  assert_int_equal(b.until_ns - t, 100 * MS);
}

static void test_breaker_error_rate_ejects(void **state) {
  (void)state;
  mprpc__breaker_t b = mk();
  uint64_t t = 5 * MS;
  /* 40% errors over a window: stays */
  for (int i = 0; i < 10; i++)
    assert_false(i % 5 < 2 ? mprpc__breaker_on_error(&b, t) : mprpc__breaker_on_success(&b, t));
  assert_true(mprpc__breaker_admits(&b, t));
  /* 60% errors: ejected when the window fills */
  bool ejected = false;
  for (int i = 0; i < 10; i++)
    ejected |= i < 6 ? mprpc__breaker_on_error(&b, t) : mprpc__breaker_on_success(&b, t);
  assert_true(ejected);
  assert_false(mprpc__breaker_admits(&b, t));
  /* probing: one bad trial ejects again for twice as long */
  t += 100 * MS;
  assert_true(mprpc__breaker_admits(&b, t));
  assert_true(mprpc__breaker_on_error(&b, t));
  assert_int_equal(b.until_ns - t, 200 * MS);
}

static void test_breaker_forced_eject(void **state) {
  (void)state;
  mprpc__breaker_t b = mk();
  assert_true(mprpc__breaker_eject(&b, 0));
  assert_false(mprpc__breaker_eject(&b, 1));
  assert_false(mprpc__breaker_admits(&b, 1));
  assert_true(mprpc__breaker_admits(&b, 100 * MS));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_breaker_conn_failures_eject_then_probe_readmits),
      cmocka_unit_test(test_breaker_period_doubles_and_caps),
      cmocka_unit_test(test_breaker_error_rate_ejects),
      cmocka_unit_test(test_breaker_forced_eject),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
