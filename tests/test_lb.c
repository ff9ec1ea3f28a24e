/* Load balancer distribution tests: pure logic with a seeded PRNG. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/backoff.h"
#include "core/idmap.h"
#include "core/lb.h"
#include "mprpc/channel.h"
#include "mprpc/errors.h"

#define MAXN 16

typedef struct fixture {
  mprpc__lb_node_t nodes[MAXN];
  char names[MAXN][48];
  size_t n;
  mprpc_xoshiro_t x;
  mprpc_rand_t r;
} fixture_t;

static void fx_init(fixture_t *f, size_t n, uint64_t seed) {
  memset(f, 0, sizeof *f);
  f->n = n;
  for (size_t i = 0; i < n; i++) {
    snprintf(f->names[i], sizeof f->names[i], "10.0.0.%zu:8000", i + 1);
    f->nodes[i].name = f->names[i];
    f->nodes[i].weight = 100;
  }
  mprpc_xoshiro_seed(&f->x, seed);
  f->r = mprpc_rand_xoshiro(&f->x);
}

static void test_lb_names_round_trip(void **state) {
  (void)state;
  assert_int_equal(mprpc_lb_from_name("rr"), MPRPC_LB_RR);
  assert_int_equal(mprpc_lb_from_name("random"), MPRPC_LB_RANDOM);
  assert_int_equal(mprpc_lb_from_name("hash"), MPRPC_LB_HASH);
  assert_int_equal(mprpc_lb_from_name("least"), MPRPC_LB_LEAST);
  assert_int_equal(mprpc_lb_from_name("nope"), MPRPC_EINVAL);
  assert_string_equal(mprpc_lb_name(MPRPC_LB_LEAST), "least");
  mprpc__lb_t lb;
  assert_int_equal(mprpc__lb_init(&lb, 42), MPRPC_EINVAL);
}

static void test_lb_rr_is_even_and_skips(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f, 4, 1);
  mprpc__lb_t lb;
  assert_int_equal(mprpc__lb_init(&lb, MPRPC_LB_RR), 0);
  assert_int_equal(mprpc__lb_rebuild(&lb, f.nodes, f.n), 0);
  int count[MAXN] = {0};
  for (int i = 0; i < 4000; i++) {
    long k = mprpc__lb_pick(&lb, f.r, false, 0);
    assert_true(k >= 0 && k < 4);
    count[k]++;
  }
  for (int i = 0; i < 4; i++)
    assert_int_equal(count[i], 1000);
  f.nodes[2].skip = true;
  memset(count, 0, sizeof count);
  for (int i = 0; i < 3000; i++)
    count[mprpc__lb_pick(&lb, f.r, false, 0)]++;
  assert_int_equal(count[2], 0);
  for (int i = 0; i < 4; i++)
    if (i != 2)
      assert_in_range(count[i], 900, 1100);
  for (int i = 0; i < 4; i++)
    f.nodes[i].skip = true;
  assert_int_equal(mprpc__lb_pick(&lb, f.r, false, 0), -1);
  mprpc__lb_free(&lb);
}

static void test_lb_random_is_weighted(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f, 3, 7);
  f.nodes[0].weight = 100;
  f.nodes[1].weight = 200;
  f.nodes[2].weight = 700;
  mprpc__lb_t lb;
  assert_int_equal(mprpc__lb_init(&lb, MPRPC_LB_RANDOM), 0);
  assert_int_equal(mprpc__lb_rebuild(&lb, f.nodes, f.n), 0);
  int count[MAXN] = {0};
  const int N = 100000;
  for (int i = 0; i < N; i++)
    count[mprpc__lb_pick(&lb, f.r, false, 0)]++;
  /* expected 10% / 20% / 70%, within 1.5 percentage points */
  assert_in_range(count[0], 8500, 11500);
  assert_in_range(count[1], 18500, 21500);
  assert_in_range(count[2], 68500, 71500);
  mprpc__lb_free(&lb);
}

static void test_lb_random_replays_under_seed(void **state) {
  (void)state;
  fixture_t a, b;
  fx_init(&a, 5, 99);
  fx_init(&b, 5, 99);
  mprpc__lb_t la, lb2;
  mprpc__lb_init(&la, MPRPC_LB_RANDOM);
  mprpc__lb_init(&lb2, MPRPC_LB_RANDOM);
  mprpc__lb_rebuild(&la, a.nodes, a.n);
  mprpc__lb_rebuild(&lb2, b.nodes, b.n);
  for (int i = 0; i < 1000; i++)
    assert_int_equal(mprpc__lb_pick(&la, a.r, false, 0), mprpc__lb_pick(&lb2, b.r, false, 0));
  mprpc__lb_free(&la);
  mprpc__lb_free(&lb2);
}

static void test_lb_hash_same_key_same_node(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f, 5, 3);
  mprpc__lb_t lb;
  assert_int_equal(mprpc__lb_init(&lb, MPRPC_LB_HASH), 0);
  assert_int_equal(mprpc__lb_rebuild(&lb, f.nodes, f.n), 0);
  int count[MAXN] = {0};
  for (uint64_t k = 0; k < 10000; k++) {
    long a = mprpc__lb_pick(&lb, f.r, true, k);
    long b = mprpc__lb_pick(&lb, f.r, true, k);
    assert_true(a >= 0);
    assert_int_equal(a, b);
    count[a]++;
  }
  /* virtual nodes spread keys roughly evenly (2000 each) */
  for (size_t i = 0; i < f.n; i++)
    assert_in_range(count[i], 1300, 2700);
  mprpc__lb_free(&lb);
}

static void test_lb_hash_removal_moves_only_its_keys(void **state) {
  (void)state;
  enum { KEYS = 20000 };
  static long before[KEYS];
  fixture_t f;
  fx_init(&f, 5, 3);
  mprpc__lb_t lb;
  assert_int_equal(mprpc__lb_init(&lb, MPRPC_LB_HASH), 0);
  assert_int_equal(mprpc__lb_rebuild(&lb, f.nodes, f.n), 0);
  for (uint64_t k = 0; k < KEYS; k++)
    before[k] = mprpc__lb_pick(&lb, f.r, true, k * 7919);
  /* remove node 2: a new array without it, as the channel would build */
  fixture_t g;
  fx_init(&g, 4, 3);
  const char *keep[4] = {f.names[0], f.names[1], f.names[3], f.names[4]};
  long map_back[4] = {0, 1, 3, 4};
  for (int i = 0; i < 4; i++)
    g.nodes[i].name = keep[i];
  assert_int_equal(mprpc__lb_rebuild(&lb, g.nodes, 4), 0);
  int moved = 0, on_removed = 0;
  for (uint64_t k = 0; k < KEYS; k++) {
    long now = map_back[mprpc__lb_pick(&lb, g.r, true, k * 7919)];
    if (before[k] == 2)
      on_removed++;
    else if (now != before[k])
      moved++;
  }
  assert_int_equal(moved, 0);                       /* only the removed node's keys move */
  assert_in_range(on_removed, KEYS / 5 - 1500, KEYS / 5 + 1500); /* ~1/N of them */
  /* skipping (ejection) behaves the same without a rebuild */
  assert_int_equal(mprpc__lb_rebuild(&lb, f.nodes, f.n), 0);
  f.nodes[2].skip = true;
  for (uint64_t k = 0; k < KEYS; k++) {
    long now = mprpc__lb_pick(&lb, f.r, true, k * 7919);
    assert_int_not_equal(now, 2);
    if (before[k] != 2)
      assert_int_equal(now, before[k]);
  }
  mprpc__lb_free(&lb);
}

static void test_lb_least_picks_fewest_inflight(void **state) {
  (void)state;
  fixture_t f;
  fx_init(&f, 4, 5);
  mprpc__lb_t lb;
  assert_int_equal(mprpc__lb_init(&lb, MPRPC_LB_LEAST), 0);
  assert_int_equal(mprpc__lb_rebuild(&lb, f.nodes, f.n), 0);
  f.nodes[0].inflight = 5;
  f.nodes[1].inflight = 2;
  f.nodes[2].inflight = 7;
  f.nodes[3].inflight = 2;
  f.nodes[1].ewma_ns = 900;
  f.nodes[3].ewma_ns = 300;
  for (int i = 0; i < 100; i++)
    assert_int_equal(mprpc__lb_pick(&lb, f.r, false, 0), 3); /* tie -> lower latency */
  f.nodes[3].skip = true;
  assert_int_equal(mprpc__lb_pick(&lb, f.r, false, 0), 1);
  /* simulate load: each pick adds one in flight: the spread stays level */
  for (size_t i = 0; i < f.n; i++) {
    f.nodes[i].inflight = 0;
    f.nodes[i].ewma_ns = 0;
    f.nodes[i].skip = false;
  }
  for (int i = 0; i < 400; i++)
    f.nodes[mprpc__lb_pick(&lb, f.r, false, 0)].inflight++;
  for (size_t i = 0; i < f.n; i++)
    assert_int_equal(f.nodes[i].inflight, 100);
  mprpc__lb_free(&lb);
}

static void test_lb_backoff_grows_with_jitter_and_caps(void **state) {
  (void)state;
  mprpc_xoshiro_t x;
  mprpc_xoshiro_seed(&x, 11);
  mprpc_rand_t r = mprpc_rand_xoshiro(&x);
  mprpc__backoff_t b;
  mprpc__backoff_init(&b, 100, 1000);
  uint64_t caps[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
    uint64_t d = mprpc__backoff_next(&b, r);
    assert_true(d >= caps[i] / 2 && d < caps[i]);
  }
  mprpc__backoff_reset(&b);
  uint64_t d = mprpc__backoff_next(&b, r);
  assert_true(d >= 50 && d < 100);
}

static void test_lb_idmap_many_ids(void **state) {
  (void)state;
  mprpc__idmap_t m;
  mprpc__idmap_init(&m);
  static int vals[20000];
  for (uint64_t i = 1; i <= 20000; i++)
    assert_int_equal(mprpc__idmap_put(&m, i * 3, &vals[i - 1]), 0);
  assert_int_equal(mprpc__idmap_put(&m, 3, &vals[0]), MPRPC_EEXIST);
  assert_int_equal(mprpc__idmap_put(&m, 0, &vals[0]), MPRPC_EINVAL);
  assert_int_equal(m.n, 20000);
  for (uint64_t i = 1; i <= 20000; i += 2)
    assert_ptr_equal(mprpc__idmap_del(&m, i * 3), &vals[i - 1]);
  for (uint64_t i = 1; i <= 20000; i++) {
    void *v = mprpc__idmap_get(&m, i * 3);
    if (i % 2)
      assert_null(v);
    else
      assert_ptr_equal(v, &vals[i - 1]);
  }
  assert_null(mprpc__idmap_get(&m, 1));
  assert_null(mprpc__idmap_del(&m, 1));
  assert_int_equal(m.n, 10000);
  mprpc__idmap_free(&m);
}

/* Correlation ids: increasing, one slot per lookup, a long-lived id is
 * skipped over rather than overwritten, and growth keeps every live id. */
static void test_lb_idseq_ids_increase_and_skip_live_slots(void **state) {
  (void)state;
  mprpc__idseq_t t;
  mprpc__idseq_init(&t);
  static int vals[5000];
  assert_null(mprpc__idseq_get(&t, 1));
  uint64_t old = mprpc__idseq_add(&t, &vals[0]); /* lives through everything */
  assert_int_equal(old, 1);
  uint64_t prev = old;
  /* many short-lived ids, a few in flight at a time: the table stays small
   * and the old id's slot comes round again and again */
  for (int i = 1; i < 5000; i++) {
    uint64_t id = mprpc__idseq_add(&t, &vals[i]);
    assert_true(id > prev);
    assert_true((id & (t.cap - 1)) != (old & (t.cap - 1)));
    assert_ptr_equal(mprpc__idseq_get(&t, id), &vals[i]);
    assert_ptr_equal(mprpc__idseq_del(&t, id), &vals[i]);
    assert_null(mprpc__idseq_get(&t, id));
    assert_null(mprpc__idseq_del(&t, id));
    prev = id;
  }
  assert_int_equal(t.cap, 64);
  assert_true(prev > 5000); /* the old slot was skipped each time round */
  assert_ptr_equal(mprpc__idseq_get(&t, old), &vals[0]);
  /* fill past several doublings: every id stays reachable */
  uint64_t ids[3000];
  for (int i = 0; i < 3000; i++) {
    ids[i] = mprpc__idseq_add(&t, &vals[i]);
    assert_true(ids[i] > prev);
    prev = ids[i];
  }
  assert_true(t.cap >= 2 * 3001);
  for (int i = 0; i < 3000; i++)
    assert_ptr_equal(mprpc__idseq_get(&t, ids[i]), &vals[i]);
  assert_ptr_equal(mprpc__idseq_get(&t, old), &vals[0]);
  /* an id that was never handed out, or is aliased onto a live slot */
  assert_null(mprpc__idseq_get(&t, prev + 1));
  assert_null(mprpc__idseq_get(&t, ids[0] + t.cap));
  assert_null(mprpc__idseq_get(&t, 0));
  assert_int_equal(t.n, 3001);
  mprpc__idseq_free(&t);
  assert_true(t.next > prev); /* still increasing after a reset */
  assert_null(mprpc__idseq_get(&t, ids[0]));
  mprpc__idseq_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lb_names_round_trip),
      cmocka_unit_test(test_lb_idseq_ids_increase_and_skip_live_slots),
      cmocka_unit_test(test_lb_rr_is_even_and_skips),
      cmocka_unit_test(test_lb_random_is_weighted),
      cmocka_unit_test(test_lb_random_replays_under_seed),
      cmocka_unit_test(test_lb_hash_same_key_same_node),
      cmocka_unit_test(test_lb_hash_removal_moves_only_its_keys),
      cmocka_unit_test(test_lb_least_picks_fewest_inflight),
      cmocka_unit_test(test_lb_backoff_grows_with_jitter_and_caps),
      cmocka_unit_test(test_lb_idmap_many_ids),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
