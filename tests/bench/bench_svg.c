/*
 * bench_svg: BENCH lines on stdin (ci/bench.sh's results), the benchmark
 * picture on stdout (tests/bench/bench_chart.h).
 *
 *   bench_svg [TITLE] < bench.txt > bench.svg
 *
 * Exits 1 when stdin holds no BENCH line, 2 on a usage or output error.
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench_chart.h"

int main(int argc, char **argv) {
  if (argc > 2) {
    fprintf(stderr, "usage: bench_svg [TITLE] < bench.txt > bench.svg\n");
    return 2;
  }
  size_t cap = 1 << 16, len = 0;
  char *text = malloc(cap);
  for (size_t n; text && (n = fread(text + len, 1, cap - len, stdin)) > 0;) {
    len += n;
    if (len == cap && cap < (64u << 20)) {
      char *t = realloc(text, cap *= 2);
      if (!t) {
        free(text);
        text = NULL;
      } else {
        text = t;
      }
    }
  }
  bench_chart_t *c = malloc(sizeof *c);
  if (!text || !c) {
    fprintf(stderr, "bench_svg: out of memory\n");
    return 2;
  }
  bench_chart_init(c);
  if (bench_chart_parse(c, text, len) == 0) {
    fprintf(stderr, "bench_svg: no BENCH lines on stdin\n");
    return 1;
  }
  mprpc__textbuf_t tb;
  mprpc__textbuf_init(&tb);
  int rc = bench_chart_svg(c, argc > 1 ? argv[1] : "mprpc bench", &tb);
  size_t n = 0;
  const char *s = mprpc__textbuf_cstr(&tb);
  n = s ? strlen(s) : 0;
  if (rc != 0 || fwrite(s, 1, n, stdout) != n || fflush(stdout) != 0) {
    fprintf(stderr, "bench_svg: could not write the picture\n");
    return 2;
  }
  mprpc__textbuf_free(&tb);
  free(c);
  free(text);
  return 0;
}
