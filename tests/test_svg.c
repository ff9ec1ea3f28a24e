/* The console's inline chart (core/svg.h): well-formed XML (checked by
 * xmllint when installed, and by hand), escaped text, no script, points
 * right-aligned at "now", the y maximum rounded up. */
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

#include "core/svg.h"
#include "core/textbuf.h"
#include "mprpc/errors.h"

#define XMLLINT "/usr/bin/xmllint"

static size_t count(const char *s, const char *needle) {
  size_t n = 0;
  for (const char *p = s; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* The points attribute's number of x,y pairs; -1 without a polyline. */
static int npoints(const char *svg) {
  const char *p = strstr(svg, "points=\"");
  if (!p)
    return -1;
  p += 8;
  const char *end = strchr(p, '"');
  assert_non_null(end);
  int n = 0;
  for (; p < end; p++)
    n += *p == ',';
  return n;
}

static void check_well_formed(const char *svg) {
  assert_true(strncmp(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39) == 0);
  size_t n = strlen(svg);
  assert_true(n > 7 && strcmp(svg + n - 7, "</svg>\n") == 0);
  assert_null(strstr(svg, "<script"));
  assert_null(strstr(svg, "href"));
  assert_null(strstr(svg, "@import"));
  assert_int_equal(count(svg, "<text"), count(svg, "</text>"));
  if (access(XMLLINT, X_OK) != 0)
    return;
  char path[] = "/tmp/mprpc-svg.XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, svg, n), (ssize_t)n);
  close(fd);
  char cmd[128];
  snprintf(cmd, sizeof cmd, XMLLINT " --noout %s 2>/dev/null", path);
  int st = system(cmd);
  unlink(path);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail_msg("xmllint rejects:\n%s", svg);
}

static void test_svg_chart_well_formed_and_escaped(void **state) {
  (void)state;
  double v[60];
  for (int i = 0; i < 60; i++)
    v[i] = i * 0.7;
  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  assert_int_equal(mprpc__svg_line_chart(&tb, &(mprpc__svg_chart_t){.width = 320,
                                                                     .height = 120,
                                                                     .title = "<b>qps</b> & \"more\"",
                                                                     .unit = "/s <x>",
                                                                     .values = v,
                                                                     .n = 60}),
                   0);
  const char *s = tb.data;
  check_well_formed(s);
  assert_non_null(strstr(s, "width=\"320\" height=\"120\""));
  assert_non_null(strstr(s, "<title>&lt;b&gt;qps&lt;/b&gt; &amp; &quot;more&quot;</title>"));
  assert_null(strstr(s, "<b>"));
  assert_non_null(strstr(s, ">50/s &lt;x&gt;</text>")); /* max 41.3 -> axis 50 */
  assert_non_null(strstr(s, ">-60s</text>"));
  assert_non_null(strstr(s, ">-30s</text>"));
  assert_non_null(strstr(s, ">now</text>"));
  assert_int_equal(npoints(s), 60);
  mprpc__textbuf_free(&tb);
}

static void test_svg_chart_edge_series(void **state) {
  (void)state;
  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  /* no values: axes only */
  assert_int_equal(mprpc__svg_line_chart(&tb, &(mprpc__svg_chart_t){.width = 1, .height = 1}), 0);
  check_well_formed(tb.data);
  assert_int_equal(npoints(tb.data), -1);
  assert_non_null(strstr(tb.data, "width=\"120\" height=\"80\"")); /* clamped */
  assert_non_null(strstr(tb.data, ">1</text>"));
  /* more than 60: the newest 60; NaN, inf and negatives drawn at 0 */
  double v[100];
  for (int i = 0; i < 100; i++)
    v[i] = i;
  v[99] = NAN;
  v[98] = -5;
  v[97] = INFINITY;
  mprpc__textbuf_reset(&tb);
  assert_int_equal(mprpc__svg_line_chart(&tb, &(mprpc__svg_chart_t){.width = 200,
                                                                     .height = 100,
                                                                     .values = v,
                                                                     .n = 100}),
                   0);
  check_well_formed(tb.data);
  assert_int_equal(npoints(tb.data), 60);
  assert_null(strstr(tb.data, "nan"));
  assert_null(strstr(tb.data, "inf"));
  assert_non_null(strstr(tb.data, ">100</text>")); /* max 96 */
  /* one value sits at "now", the right edge */
  mprpc__textbuf_reset(&tb);
  double one = 3;
  mprpc__svg_line_chart(&tb, &(mprpc__svg_chart_t){.width = 200, .height = 100, .values = &one, .n = 1});
  check_well_formed(tb.data);
  assert_non_null(strstr(tb.data, "points=\"190.0,"));
  mprpc__textbuf_free(&tb);
}

static void test_svg_nice_max(void **state) {
  (void)state;
  const double in[] = {0, -1, NAN, INFINITY, 0.3, 1, 1.01, 2, 3, 7, 10, 11, 0.0042, 123456};
  const double want[] = {1, 1, 1, 1, 0.5, 1, 2, 2, 5, 10, 10, 20, 0.005, 200000};
  for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
    double got = mprpc__svg_nice_max(in[i]);
    if (fabs(got - want[i]) > 1e-12 * want[i])
      fail_msg("nice_max(%g) = %g, want %g", in[i], got, want[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_svg_chart_well_formed_and_escaped),
      cmocka_unit_test(test_svg_chart_edge_series),
      cmocka_unit_test(test_svg_nice_max),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
