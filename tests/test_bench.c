/*
 * The benchmark harness's arithmetic (tests/bench/bench_common.h): the
 * latency histogram must be monotonic and accurate to its stated ~1.5%, and
 * its percentiles right, or every number `make bench` prints is wrong.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "bench/bench_common.h"

static void test_bench_hist_buckets_are_monotonic_and_accurate(void **state) {
  (void)state;
  int prev = -1;
  /* Every value from 0 to 2^40 ns in ~0.3% steps (bounded loop). */
  for (uint64_t v = 0; v < (1ull << 40); v = v < 1000 ? v + 1 : v + v / 300) {
    int b = bench_hist_bucket(v);
    assert_true(b >= prev);
    assert_true(b >= 0 && b < BENCH_HIST_BUCKETS);
    prev = b;
    double mid = bench_hist_value(b);
    double err = v ? (mid > (double)v ? mid - (double)v : (double)v - mid) / (double)v : mid;
    assert_true(err <= (v < 128 ? 0.0 : 0.016));
  }
}

static void test_bench_hist_percentiles(void **state) {
  (void)state;
  bench_hist_t *h = calloc(1, sizeof *h);
  assert_non_null(h);
  assert_true(bench_hist_pct_us(h, 50) == 0);
  /* 1..1000 us, once each: p50 ~ 500 us, p99 ~ 990 us, max ~ 1000 us. */
  for (uint64_t us = 1; us <= 1000; us++)
    bench_hist_add(h, us * 1000);
  assert_int_equal(h->n, 1000);
  assert_true(bench_hist_pct_us(h, 50) > 490 && bench_hist_pct_us(h, 50) < 510);
  assert_true(bench_hist_pct_us(h, 99) > 975 && bench_hist_pct_us(h, 99) < 1005);
  assert_true(bench_hist_pct_us(h, 100) > 985 && bench_hist_pct_us(h, 100) < 1016);

  bench_hist_t *g = calloc(1, sizeof *g);
  assert_non_null(g);
  for (int i = 0; i < 3000; i++)
    bench_hist_add(g, 5000 * 1000); /* 5 ms */
  bench_hist_merge(g, h);
  assert_int_equal(g->n, 4000);
  /* Three quarters of the samples are 5 ms: p50 is there, p10 is not. */
  assert_true(bench_hist_pct_us(g, 50) > 4900 && bench_hist_pct_us(g, 50) < 5100);
  assert_true(bench_hist_pct_us(g, 10) < 1000);
  free(g);
  free(h);
}

static void test_bench_parse_size(void **state) {
  (void)state;
  assert_int_equal(bench_parse_size("64"), 64);
  assert_int_equal(bench_parse_size("4k"), 4096);
  assert_int_equal(bench_parse_size("4KiB"), 4096);
  assert_int_equal(bench_parse_size("64KB"), 65536);
  assert_int_equal(bench_parse_size("1m"), 1 << 20);
  assert_int_equal(bench_parse_size(""), -1);
  assert_int_equal(bench_parse_size("-1"), -1);
  assert_int_equal(bench_parse_size("12x"), -1);
}

/* Both programs take their options through bench_parse_args: ci/bench.sh
 * relies on -s/-c/-d meaning the same in each, and on defaults of a 3 s
 * window after a 0.5 s warmup. */
static void test_bench_parse_args(void **state) {
  (void)state;
  bench_cli_t c;
  char *none[] = {"prog"};
  assert_int_equal(bench_parse_args(1, none, 1 << 20, false, &c), 0);
  assert_int_equal(c.mode, BENCH_MODE_BOTH);
  assert_int_equal(c.o.payload, 64);
  assert_int_equal(c.o.conc, 1);
  assert_true(c.o.secs == 3 && c.o.warmup == 0.5);
  assert_int_equal(c.o.srv_threads, 1);
  assert_int_equal(c.o.cli_threads, 1);
  assert_int_equal(c.o.conns, 1);

  char *client[] = {"prog", "-s", "4k", "-c", "16", "-d", "1.5", "-w", "0",
                    "--client", "127.0.0.1:9", "--server-pid", "42", "-T", "2", "-n", "4"};
  assert_int_equal(bench_parse_args(17, client, 1 << 20, false, &c), 0);
  assert_int_equal(c.mode, BENCH_MODE_CLIENT);
  assert_string_equal(c.target, "127.0.0.1:9");
  assert_int_equal(c.server_pid, 42);
  assert_int_equal(c.o.payload, 4096);
  assert_int_equal(c.o.conc, 16);
  assert_true(c.o.secs == 1.5 && c.o.warmup == 0);
  assert_int_equal(c.o.cli_threads, 2);
  assert_int_equal(c.o.conns, 4);

  char *server[] = {"prog", "--server", "-p", "5", "-t", "3"};
  assert_int_equal(bench_parse_args(6, server, 1 << 20, false, &c), 0);
  assert_int_equal(c.mode, BENCH_MODE_SERVER);
  assert_int_equal(c.port, 5);
  assert_int_equal(c.o.srv_threads, 3);

  char *idle[] = {"prog", "--idle-conns", "10"};
  assert_int_equal(bench_parse_args(3, idle, 1 << 20, false, &c), -1);
  assert_int_equal(bench_parse_args(3, idle, 1 << 20, true, &c), 0);
  assert_int_equal(c.mode, BENCH_MODE_IDLE);
  assert_int_equal(c.idle, 10);

  char *big[] = {"prog", "-s", "2m"};
  assert_int_equal(bench_parse_args(3, big, 1 << 20, false, &c), -1);
  char *missing[] = {"prog", "-c"};
  assert_int_equal(bench_parse_args(2, missing, 1 << 20, false, &c), -1);
  char *unknown[] = {"prog", "-x", "1"};
  assert_int_equal(bench_parse_args(3, unknown, 1 << 20, false, &c), -1);
}

static void test_bench_cpu_ticks_of_self(void **state) {
  (void)state;
  long long t0 = bench_proc_cpu_ticks(getpid());
  assert_true(t0 >= 0);
  /* Burn some CPU (bounded) so the counter can only grow. */
  volatile uint64_t x = 0;
  for (uint64_t i = 0; i < 20000000; i++)
    x += i;
  long long t1 = bench_proc_cpu_ticks(getpid());
  assert_true(t1 >= t0);
  assert_true(bench_proc_cpu_ticks(-1) < 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bench_hist_buckets_are_monotonic_and_accurate),
      cmocka_unit_test(test_bench_hist_percentiles),
      cmocka_unit_test(test_bench_parse_size),
      cmocka_unit_test(test_bench_parse_args),
      cmocka_unit_test(test_bench_cpu_ticks_of_self),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
