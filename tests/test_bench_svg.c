/*
 * The benchmark picture (tests/bench/bench_chart.h over core/svg_xy.h):
 * sample BENCH lines give one row of panels per payload with one series per
 * impl, concurrency sorted on the x axis, text escaped, and a document that
 * an XML parser accepts (python3's xml.etree when installed, and checked by
 * hand here).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "bench/bench_chart.h"

#define PYTHON3 "/usr/bin/python3"

static const char sample[] =
    "bench: 2 cores, 0.2s x 1 per cell\n"
    "BENCH impl=baseline payload=64 concurrency=16 qps=200000 p50_us=70.0 p99_us=150.0 cpu_pct=90.0\n"
    "BENCH impl=mprpc payload=64 concurrency=16 qps=150000 p50_us=90.0 p99_us=210.0 cpu_pct=95.0\n"
    "BENCH impl=baseline payload=64 concurrency=1 qps=30000 p50_us=30.0 p99_us=50.0 cpu_pct=40.0\n"
    "BENCH impl=mprpc payload=64 concurrency=1 qps=20000 p50_us=45.0 p99_us=80.0 cpu_pct=45.0\n"
    "# mprpc: calls=1 client_cpu_pct=1\n"
    "BENCH impl=baseline-sync payload=4096 concurrency=64 qps=90000 p50_us=600 p99_us=1500 cpu_pct=99\n"
    "BENCH impl=mprpc-sync payload=4096 concurrency=64 qps=70000 p50_us=800 p99_us=2500 cpu_pct=99\n"
    "BENCH impl=mprpc-sync payload=4096 concurrency=4 qps=40000 p50_us=90 p99_us=300 cpu_pct=80\n"
    "BENCH impl=broken payload=64\n"
    "RATIO payload=64 concurrency=16 qps_ratio=0.750 p50_ratio=1.286\n";

static size_t count(const char *s, const char *needle) {
  size_t n = 0;
  for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* Start and end tags balance, in order: a tiny stack check of the
 * elements this writer emits (no attributes contain '<' or '>'). */
static void check_nesting(const char *s) {
  char stack[64][16];
  int depth = 0;
  for (const char *p = s; (p = strchr(p, '<')) != NULL; p++) {
    const char *e = strchr(p, '>');
    assert_non_null(e);
    char name[16] = {0};
    bool closing = p[1] == '/', empty = e[-1] == '/';
    const char *n = p + 1 + closing;
    size_t k = 0;
    while (n[k] && n[k] != ' ' && n[k] != '>' && n[k] != '/' && k < sizeof name - 1)
      name[k] = n[k], k++;
    if (closing) {
      assert_true(depth > 0);
      assert_string_equal(stack[depth - 1], name);
      depth--;
    } else if (!empty) {
      assert_true(depth < 64);
      strcpy(stack[depth++], name);
    }
    p = e;
  }
  assert_int_equal(depth, 0);
}

static char *render(const char *text, const char *title, bench_chart_t *c) {
  bench_chart_init(c);
  bench_chart_parse(c, text, strlen(text));
  mprpc__textbuf_t tb;
  mprpc__textbuf_init(&tb);
  assert_int_equal(bench_chart_svg(c, title, &tb), 0);
  size_t len;
  char *s = mprpc__textbuf_take(&tb, &len);
  assert_non_null(s);
  return s;
}

static void test_bench_svg_parses_bench_lines_into_cells(void **state) {
  (void)state;
  bench_chart_t *c = malloc(sizeof *c);
  assert_non_null(c);
  char *svg = render(sample, "smoke", c);
  assert_int_equal(c->lines, 7); /* the broken line and the others are ignored */
  assert_int_equal(c->nimpl, 4);
  assert_int_equal(c->npayload, 2);
  assert_int_equal(c->nconc, 4);
  unsigned long want[] = {1, 4, 16, 64}; /* sorted, whatever the input order */
  for (int i = 0; i < 4; i++)
    assert_int_equal(c->conc[i], want[i]);
  /* baseline, 64 B: at 1 and 16, nothing at 4 (inserted later) or 64 */
  assert_true(c->qps[0][0][0] == 30000 && c->qps[0][0][2] == 200000);
  assert_true(isnan(c->qps[0][0][1]) && isnan(c->qps[0][0][3]));
  assert_true(c->p99[1][3][3] == 2500); /* mprpc-sync, 4 KiB, 64 threads */
  free(svg);
  free(c);
}

static void test_bench_svg_is_well_formed_with_panels_and_series(void **state) {
  (void)state;
  bench_chart_t *c = malloc(sizeof *c);
  assert_non_null(c);
  char *svg = render(sample, "smoke run <not a measurement> & co", c);
  assert_true(strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39) == 0);
  size_t n = strlen(svg);
  assert_true(strcmp(svg + n - 7, "</svg>\n") == 0);
  assert_null(strstr(svg, "<script"));
  assert_non_null(strstr(svg, "smoke run &lt;not a measurement&gt; &amp; co"));
  check_nesting(svg);
  assert_int_equal(count(svg, "<g transform="), 4); /* 2 payloads x (qps, p99) */
  /* 64 B: baseline and mprpc have points; 4 KiB: baseline-sync, mprpc-sync */
  assert_int_equal(count(svg, "<polyline"), 8);
  /* dashed: the 2 sync series' lines in the 2 4 KiB panels, their legend entries in all 4 */
  assert_int_equal(count(svg, "stroke-dasharray"), 2 * 2 + 2 * 4);
  assert_non_null(strstr(svg, "4 KiB: calls/s against concurrency"));
  assert_non_null(strstr(svg, ">mprpc-sync</text>"));
  if (access(PYTHON3, X_OK) == 0) {
    char path[] = "/tmp/mprpc-bench-svg.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, svg, n), (ssize_t)n);
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             PYTHON3 " -c \"import sys, xml.etree.ElementTree as E; "
                     "r = E.parse(sys.argv[1]).getroot(); "
                     "sys.exit(0 if r.tag == '{http://www.w3.org/2000/svg}svg' and "
                     "len(list(r.iter('{http://www.w3.org/2000/svg}polyline'))) == 8 else 3)\" %s",
             path);
    int st = system(cmd);
    unlink(path);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
  }
  free(svg);
  free(c);
}

static void test_bench_svg_without_bench_lines_is_an_empty_document(void **state) {
  (void)state;
  bench_chart_t *c = malloc(sizeof *c);
  assert_non_null(c);
  char *svg = render("no results\n", NULL, c);
  assert_int_equal(c->lines, 0);
  check_nesting(svg);
  assert_int_equal(count(svg, "<polyline"), 0);
  free(svg);
  free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bench_svg_parses_bench_lines_into_cells),
      cmocka_unit_test(test_bench_svg_is_well_formed_with_panels_and_series),
      cmocka_unit_test(test_bench_svg_without_bench_lines_is_an_empty_document),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
