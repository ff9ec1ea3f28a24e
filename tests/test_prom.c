/* Prometheus text exposition (core/prom.h): escaping, family lines once,
 * histogram layout, value formatting, refused names; and a whole page
 * checked by the real `promtool check metrics` (which also lints). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/prom.h"
#include "core/textbuf.h"
#include "mprpc/errors.h"

#define PROMTOOL "/usr/bin/promtool"

static void test_prom_label_and_help_escaping(void **state) {
  (void)state;
  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  mprpc__prom_t w;
  mprpc__prom_init(&w, &tb);
  mprpc__prom_label_t l[] = {{"method", "a\\b\"c\nd"}, {"code", "0"}};
  assert_int_equal(mprpc__prom_counter(&w, "mprpc_calls_total", "Calls \"served\"\\ by\nmethod.", l,
                                       2, 3),
                   0);
  assert_string_equal(tb.data, "# HELP mprpc_calls_total Calls \"served\"\\\\ by\\nmethod.\n"
                               "# TYPE mprpc_calls_total counter\n"
                               "mprpc_calls_total{method=\"a\\\\b\\\"c\\nd\",code=\"0\"} 3\n");
  mprpc__textbuf_free(&tb);
}

static void test_prom_family_lines_once(void **state) {
  (void)state;
  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  mprpc__prom_t w;
  mprpc__prom_init(&w, &tb);
  mprpc__prom_label_t a[] = {{"m", "a"}}, b[] = {{"m", "b"}};
  mprpc__prom_counter(&w, "x_total", "X.", a, 1, 1);
  mprpc__prom_counter(&w, "x_total", "X.", b, 1, 2);
  mprpc__prom_gauge(&w, "y", "Y.", NULL, 0, 0.5);
  assert_int_equal(w.err, 0);
  assert_string_equal(tb.data, "# HELP x_total X.\n# TYPE x_total counter\n"
                               "x_total{m=\"a\"} 1\nx_total{m=\"b\"} 2\n"
                               "# HELP y Y.\n# TYPE y gauge\ny 0.5\n");
  mprpc__textbuf_free(&tb);
}

static void test_prom_histogram_format(void **state) {
  (void)state;
  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  mprpc__prom_t w;
  mprpc__prom_init(&w, &tb);
  const double bounds[] = {0.001, 0.01, 0.1, 1};
  const uint64_t counts[] = {2, 5, 5, 9};
  mprpc__prom_hist_t h = {bounds, counts, 4, 3.25, 10};
  mprpc__prom_label_t l[] = {{"method", "Echo"}};
  assert_int_equal(mprpc__prom_histogram(&w, "mprpc_latency_seconds", "Latency.", l, 1, &h), 0);
  assert_string_equal(tb.data,
                      "# HELP mprpc_latency_seconds Latency.\n"
                      "# TYPE mprpc_latency_seconds histogram\n"
                      "mprpc_latency_seconds_bucket{method=\"Echo\",le=\"0.001\"} 2\n"
                      "mprpc_latency_seconds_bucket{method=\"Echo\",le=\"0.01\"} 5\n"
                      "mprpc_latency_seconds_bucket{method=\"Echo\",le=\"0.1\"} 5\n"
                      "mprpc_latency_seconds_bucket{method=\"Echo\",le=\"1\"} 9\n"
                      "mprpc_latency_seconds_bucket{method=\"Echo\",le=\"+Inf\"} 10\n"
                      "mprpc_latency_seconds_sum{method=\"Echo\"} 3.25\n"
                      "mprpc_latency_seconds_count{method=\"Echo\"} 10\n");
  /* without labels and without buckets: only +Inf */
  mprpc__textbuf_reset(&tb);
  mprpc__prom_init(&w, &tb);
  mprpc__prom_hist_t empty = {NULL, NULL, 0, 0, 0};
  assert_int_equal(mprpc__prom_histogram(&w, "h_seconds", "H.", NULL, 0, &empty), 0);
  assert_string_equal(tb.data, "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
                               "h_seconds_bucket{le=\"+Inf\"} 0\nh_seconds_sum 0\nh_seconds_count 0\n");
  /* the writer keeps the last bounds formatted: other bounds (same count,
   * then the first ones again) are formatted afresh */
  mprpc__textbuf_reset(&tb);
  mprpc__prom_init(&w, &tb);
  const double other[] = {0.5, 2, 4, 8};
  mprpc__prom_hist_t h2 = {other, counts, 4, 1, 10};
  assert_int_equal(mprpc__prom_histogram(&w, "a_seconds", "A.", NULL, 0, &h), 0);
  assert_int_equal(mprpc__prom_histogram(&w, "b_seconds", "B.", NULL, 0, &h2), 0);
  assert_int_equal(mprpc__prom_histogram(&w, "c_seconds", "C.", NULL, 0, &h), 0);
  assert_non_null(strstr(tb.data, "a_seconds_bucket{le=\"0.001\"} 2\n"));
  assert_non_null(strstr(tb.data, "b_seconds_bucket{le=\"0.5\"} 2\n"));
  assert_non_null(strstr(tb.data, "b_seconds_bucket{le=\"8\"} 9\n"));
  assert_null(strstr(tb.data, "b_seconds_bucket{le=\"0.001\"}"));
  assert_non_null(strstr(tb.data, "c_seconds_bucket{le=\"0.1\"} 5\n"));
  mprpc__textbuf_free(&tb);
}

static void test_prom_value_format(void **state) {
  (void)state;
  char b[32];
  assert_string_equal(mprpc__prom_format_value(b, 0), "0");
  assert_string_equal(mprpc__prom_format_value(b, 1), "1");
  assert_string_equal(mprpc__prom_format_value(b, -2.5), "-2.5");
  assert_string_equal(mprpc__prom_format_value(b, 0.1), "0.1");
  assert_string_equal(mprpc__prom_format_value(b, 1e-9), "1e-09");
  assert_string_equal(mprpc__prom_format_value(b, 9007199254740993.0), "9007199254740992");
  assert_string_equal(mprpc__prom_format_value(b, 18446744073709551615.0), "1.8446744073709552e+19");
  assert_string_equal(mprpc__prom_format_value(b, INFINITY), "+Inf");
  assert_string_equal(mprpc__prom_format_value(b, -INFINITY), "-Inf");
  assert_string_equal(mprpc__prom_format_value(b, NAN), "NaN");
  /* every value reads back exactly */
  const double vs[] = {1.0 / 3, 2.0 / 3, 0.1 + 0.2, 123456.789e-300, 5e-324, 1.7976931348623157e308};
  for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++)
    assert_true(strtod(mprpc__prom_format_value(b, vs[i]), NULL) == vs[i]);
}

static void test_prom_bad_names_refused(void **state) {
  (void)state;
  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  mprpc__prom_t w;
  mprpc__prom_init(&w, &tb);
  mprpc__prom_label_t bad1[] = {{"1x", "v"}}, bad2[] = {{"__x", "v"}}, bad3[] = {{"a-b", "v"}},
                      le[] = {{"le", "1"}}, nullv[] = {{"a", NULL}};
  assert_int_equal(mprpc__prom_counter(&w, "9x_total", "", NULL, 0, 1), MPRPC_EINVAL);
  assert_int_equal(mprpc__prom_counter(&w, "a b", "", NULL, 0, 1), MPRPC_EINVAL);
  assert_int_equal(mprpc__prom_counter(&w, "", "", NULL, 0, 1), MPRPC_EINVAL);
  assert_int_equal(mprpc__prom_counter(&w, "x_total", "", bad1, 1, 1), MPRPC_EINVAL);
  assert_int_equal(mprpc__prom_counter(&w, "x_total", "", bad2, 1, 1), MPRPC_EINVAL);
  assert_int_equal(mprpc__prom_counter(&w, "x_total", "", bad3, 1, 1), MPRPC_EINVAL);
  assert_int_equal(mprpc__prom_counter(&w, "x_total", "", nullv, 1, 1), MPRPC_EINVAL);
  assert_int_equal(mprpc__prom_family(&w, "x", "countr", ""), MPRPC_EINVAL);
  const double bounds[] = {0.1, 0.1}, nanb[] = {NAN}, infb[] = {INFINITY};
  const uint64_t counts[] = {1, 2}, down[] = {2, 1}, one[] = {1};
  mprpc__prom_hist_t dup = {bounds, counts, 2, 0, 2};
  mprpc__prom_hist_t dec = {(const double[]){0.1, 0.2}, down, 2, 0, 2};
  mprpc__prom_hist_t over = {(const double[]){0.1, 0.2}, counts, 2, 0, 1};
  mprpc__prom_hist_t hn = {nanb, one, 1, 0, 1}, hi = {infb, one, 1, 0, 1};
  mprpc__prom_hist_t ok = {(const double[]){0.1, 0.2}, counts, 2, 0, 2};
  assert_int_equal(mprpc__prom_histogram(&w, "h", "", NULL, 0, &dup), MPRPC_EINVAL);
  assert_int_equal(mprpc__prom_histogram(&w, "h", "", NULL, 0, &dec), MPRPC_EINVAL);
  assert_int_equal(mprpc__prom_histogram(&w, "h", "", NULL, 0, &over), MPRPC_EINVAL);
  assert_int_equal(mprpc__prom_histogram(&w, "h", "", NULL, 0, &hn), MPRPC_EINVAL);
  assert_int_equal(mprpc__prom_histogram(&w, "h", "", NULL, 0, &hi), MPRPC_EINVAL);
  assert_int_equal(mprpc__prom_histogram(&w, "h", "", le, 1, &ok), MPRPC_EINVAL);
  assert_int_equal(tb.len, 0); /* nothing written for any of them */
  assert_int_equal(w.err, 0);  /* and the writer still works */
  assert_int_equal(mprpc__prom_histogram(&w, "h", "", NULL, 0, &ok), 0);
  mprpc__textbuf_free(&tb);
}

/* Runs `promtool check metrics` on text; returns its exit status, and its
 * output in out. */
static int promtool(const char *text, char *out, size_t cap) {
  char in_path[] = "/tmp/mprpc-prom-in.XXXXXX", out_path[] = "/tmp/mprpc-prom-out.XXXXXX";
  int fd = mkstemp(in_path), ofd = mkstemp(out_path);
  assert_true(fd >= 0 && ofd >= 0);
  size_t n = strlen(text);
  assert_int_equal(write(fd, text, n), (ssize_t)n);
  close(fd);
  close(ofd);
  char cmd[256];
  snprintf(cmd, sizeof cmd, PROMTOOL " check metrics <%s >%s 2>&1", in_path, out_path);
  int st = system(cmd);
  FILE *f = fopen(out_path, "r");
  size_t got = f ? fread(out, 1, cap - 1, f) : 0;
  out[got] = '\0';
  if (f)
    fclose(f);
  unlink(in_path);
  unlink(out_path);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_prom_promtool_accepts_page(void **state) {
  (void)state;
  if (access(PROMTOOL, X_OK) != 0) {
    print_message("promtool not installed (Debian package prometheus): format not cross-checked\n");
    skip();
  }
  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  mprpc__prom_t w;
  mprpc__prom_init(&w, &tb);
  const char *methods[] = {"echo.EchoService.Echo", "weird \"name\"\\\nwith\tall"};
  for (int i = 0; i < 2; i++) {
    mprpc__prom_label_t l[] = {{"method", methods[i]}};
    mprpc__prom_counter(&w, "mprpc_server_requests_total", "Requests served, by method.", l, 1,
                        1234567.0 * (i + 1));
  }
  mprpc__prom_gauge(&w, "mprpc_server_connections", "Open connections.", NULL, 0, 3);
  mprpc__prom_gauge(&w, "mprpc_odd_values", "Values \"quoted\" \\ and\nsplit.",
                    (mprpc__prom_label_t[]){{"k", "nan"}}, 1, NAN);
  mprpc__prom_gauge(&w, "mprpc_odd_values", "", (mprpc__prom_label_t[]){{"k", "inf"}}, 1, INFINITY);
  mprpc__prom_gauge(&w, "mprpc_odd_values", "", (mprpc__prom_label_t[]){{"k", "tiny"}}, 1, 5e-324);
  const double bounds[] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};
  const uint64_t counts[] = {1, 10, 100, 200, 300, 310, 311, 311, 312, 312};
  for (int i = 0; i < 2; i++) {
    mprpc__prom_label_t l[] = {{"method", methods[i]}};
    mprpc__prom_hist_t h = {bounds, counts, 10, 1.0 / 3, 313};
    mprpc__prom_histogram(&w, "mprpc_server_latency_seconds", "Latency of served calls.", l, 1, &h);
  }
  assert_int_equal(w.err, 0);
  char out[4096];
  int st = promtool(tb.data, out, sizeof out);
  if (st != 0)
    fail_msg("promtool check metrics exited %d:\n%s\non:\n%s", st, out, tb.data);

  /* the check is real: promtool refuses what the writer would never write */
  st = promtool("x{a=\"b} 1\n", out, sizeof out);
  assert_int_not_equal(st, 0);
  mprpc__textbuf_free(&tb);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prom_label_and_help_escaping),
      cmocka_unit_test(test_prom_family_lines_once),
      cmocka_unit_test(test_prom_histogram_format),
      cmocka_unit_test(test_prom_value_format),
      cmocka_unit_test(test_prom_bad_names_refused),
      cmocka_unit_test(test_prom_promtool_accepts_page),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
