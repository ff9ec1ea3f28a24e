/*
 * The invariant checker shared by the simulator and the chaos harness
 * (sim/check.c): each rule fires on a record that breaks it, and stays
 * silent on one that does not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../sim/check.h"
#include "../sim/plan.h"
#include "mprpc/errors.h"

typedef struct got {
  int n;
  char last[256];
} got_t;

static void collect(void *ud, const char *msg) {
  got_t *g = ud;
  g->n++;
  strncpy(g->last, msg, sizeof g->last - 1);
}

static const mprpc_check_policy_t pol = {
    .max_retry = 2,
    .timeout_ms = 1000,
    .deadline_slack_ns = 20000000,
    .quiet_after_ns = 10000000000ull,
    .live_from_ns = 20000000000ull,
    .recovery_bound_ns = 10000000000ull,
};

static void test_check_exec_limits(void **state) {
  (void)state;
  got_t g = {0};
  mprpc_check_call_t c = {.id = 7, .idem = 0};
  c.execs = 1;
  mprpc_check_exec(&pol, &c, collect, &g);
  assert_int_equal(g.n, 0);
  c.execs = 2;
  mprpc_check_exec(&pol, &c, collect, &g);
  c.execs = 3;
  mprpc_check_exec(&pol, &c, collect, &g); /* reported once per call */
  assert_int_equal(g.n, 1);
  assert_string_equal(g.last, "non-idempotent call 7 executed 2 times (limit 1)");
  mprpc_check_call_t i = {.id = 8, .idem = 1, .execs = 3};
  mprpc_check_exec(&pol, &i, collect, &g);
  assert_int_equal(g.n, 1);
  i.execs = 4;
  mprpc_check_exec(&pol, &i, collect, &g);
  assert_int_equal(g.n, 2);
}

static void test_check_done_rules(void **state) {
  (void)state;
  got_t g = {0};
  mprpc_check_call_t c = {.id = 1, .idem = 1, .start_ns = 1000000000};
  assert_true(mprpc_check_done(&pol, &c, true, true, "c1", 0, 1100000000, false, collect, &g));
  assert_int_equal(g.n, 0);
  assert_false(mprpc_check_done(&pol, &c, true, true, "c1", 0, 1200000000, false, collect, &g));
  assert_string_equal(g.last, "call 1: closure ran a second time");
  mprpc_check_call_t w = {.id = 2, .start_ns = 0};
  mprpc_check_done(&pol, &w, true, false, "c3", 0, 100, false, collect, &g);
  assert_string_equal(g.last, "call 2 got the response of another request (\"c3\")");
  mprpc_check_call_t late = {.id = 3, .start_ns = 0};
  mprpc_check_done(&pol, &late, false, false, NULL, MPRPC_ERPCTIMEDOUT, 1500000000, false,
                   collect, &g);
  assert_string_equal(g.last, "call 3 completed 0.500 s after its deadline (ERPCTIMEDOUT)");
  int before = g.n;
  mprpc_check_call_t live = {.id = 4, .idem = 1, .start_ns = 21000000000ull};
  mprpc_check_done(&pol, &live, false, false, NULL, MPRPC_EFAILEDSOCKET, 21100000000ull, false,
                   collect, &g);
  assert_int_equal(g.n, before + 1);
  assert_non_null(strstr(g.last, "liveness: idempotent call 4 failed with EFAILEDSOCKET"));
  /* Before the liveness window, or non-idempotent: a failure is legitimate. */
  mprpc_check_call_t early = {.id = 5, .idem = 1, .start_ns = 15000000000ull};
  mprpc_check_done(&pol, &early, false, false, NULL, MPRPC_ERPCTIMEDOUT, 15100000000ull, false,
                   collect, &g);
  mprpc_check_call_t non = {.id = 6, .idem = 0, .start_ns = 21000000000ull};
  mprpc_check_done(&pol, &non, false, false, NULL, MPRPC_ERPCTIMEDOUT, 21100000000ull, false,
                   collect, &g);
  assert_int_equal(g.n, before + 1);
}

static mprpc_check_call_t *at(void *ud, size_t i) { return &((mprpc_check_call_t *)ud)[i]; }

static void test_check_final_rules(void **state) {
  (void)state;
  got_t g = {0};
  mprpc_check_call_t calls[4] = {
      {.id = 10, .done = 1, .ok = 1, .execs = 1},
      {.id = 11, .abandoned = 1},                      /* consumer killed: not checked */
      {.id = 12, .done = 1, .err = MPRPC_ECONNREFUSED}, /* failed, did not run: fine */
      {.id = 13, .done = 1, .ok = 1, .execs = 1, .idem = 1},
  };
  mprpc_check_final(&pol, at, calls, 4, collect, &g);
  assert_int_equal(g.n, 0);
  calls[1].abandoned = 0; /* a clean consumer lost a closure */
  calls[2].execs = 1;     /* "did not run" but it ran */
  calls[3].execs = 0;     /* ok, yet nobody executed it */
  mprpc_check_final(&pol, at, calls, 4, collect, &g);
  assert_int_equal(g.n, 3);
  assert_string_equal(g.last, "1 calls reported ok that no provider executed (first: call 13)");
}

static void test_check_convergence_and_recovery(void **state) {
  (void)state;
  got_t g = {0};
  mprpc_check_registry(3, 3, collect, &g);
  assert_true(mprpc_check_consumer_endpoints(0, 3, 3, 3, collect, &g));
  mprpc_check_unknown_ids(0, 0, collect, &g);
  assert_int_equal(g.n, 0);
  mprpc_check_registry(4, 3, collect, &g);
  assert_string_equal(g.last, "registry did not converge: 4 nodes for 3 running providers");
  assert_false(mprpc_check_consumer_endpoints(1, 3, 2, 3, collect, &g));
  assert_int_equal(mprpc_check_recovery(&pol, 0, 10, 510, collect, &g), 500);
  assert_int_equal(g.n, 2);
  assert_int_equal(mprpc_check_recovery(&pol, 1, 10, UINT64_MAX, collect, &g), UINT64_MAX);
  assert_string_equal(g.last, "recovery: provider 1 got no call after the faults healed");
}

static void test_check_plans_replay(void **state) {
  (void)state;
  for (size_t i = 0; i < mprpc_plan_count(); i++) {
    mprpc_plan_t a, b;
    assert_int_equal(mprpc_plan_make(mprpc_plan_name(i), 3, false, &a), 0);
    assert_int_equal(mprpc_plan_make(mprpc_plan_name(i), 3, false, &b), 0);
    assert_memory_equal(&a, &b, sizeof a);
    assert_true(a.nfaults > 0);
    for (size_t k = 0; k < a.nfaults; k++) {
      assert_true(a.faults[k].at_ms < a.quiet_ms);
      if (k)
        assert_true(a.faults[k - 1].at_ms <= a.faults[k].at_ms);
    }
  }
  mprpc_plan_t p;
  assert_int_equal(mprpc_plan_make("no_such_plan", 1, false, &p), MPRPC_ENOTFOUND);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_check_exec_limits),
      cmocka_unit_test(test_check_done_rules),
      cmocka_unit_test(test_check_final_rules),
      cmocka_unit_test(test_check_convergence_and_recovery),
      cmocka_unit_test(test_check_plans_replay),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
