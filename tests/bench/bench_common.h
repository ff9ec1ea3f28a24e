/*
 * Pieces shared by the benchmark programs (baseline_echo, mprpc-bench):
 * monotonic clock, a log-linear latency histogram, CPU sampling of a process
 * through /proc/<pid>/stat, size parsing, and the one result line that
 * ci/bench.sh parses. Header-only because the Makefile builds each
 * tests/bench/<name>.c as its own program.
 */
#ifndef MPRPC_BENCH_COMMON_H
#define MPRPC_BENCH_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Log-linear histogram of nanosecond values: exact below 128 ns, then 64
 * sub-buckets per power of two (about 1.5% relative error). Recording is a
 * couple of instructions, so it does not disturb what it measures. */
#define BENCH_HIST_SUB 64
#define BENCH_HIST_BUCKETS (2 * BENCH_HIST_SUB + 58 * BENCH_HIST_SUB)

typedef struct bench_hist {
  uint64_t n;
  uint64_t counts[BENCH_HIST_BUCKETS];
} bench_hist_t;

static inline int bench_hist_bucket(uint64_t v) {
  if (v < 2 * BENCH_HIST_SUB)
    return (int)v;
  int msb = 63 - __builtin_clzll(v);
  int sh = msb - 6; /* v >> sh is in [64, 127] */
  int b = 2 * BENCH_HIST_SUB + (sh - 1) * BENCH_HIST_SUB + (int)((v >> sh) & (BENCH_HIST_SUB - 1));
  return b < BENCH_HIST_BUCKETS ? b : BENCH_HIST_BUCKETS - 1;
}

/* Midpoint of a bucket, in ns. */
static inline double bench_hist_value(int b) {
  if (b < 2 * BENCH_HIST_SUB)
    return (double)b;
  int sh = (b - 2 * BENCH_HIST_SUB) / BENCH_HIST_SUB + 1;
  uint64_t lo = (uint64_t)(BENCH_HIST_SUB + (b - 2 * BENCH_HIST_SUB) % BENCH_HIST_SUB) << sh;
  return (double)lo + (double)(1ull << sh) / 2.0;
}

static inline void bench_hist_add(bench_hist_t *h, uint64_t ns) {
  h->counts[bench_hist_bucket(ns)]++;
  h->n++;
}

static inline void bench_hist_merge(bench_hist_t *into, const bench_hist_t *from) {
  for (int i = 0; i < BENCH_HIST_BUCKETS; i++)
    into->counts[i] += from->counts[i];
  into->n += from->n;
}

/* p in [0, 100]; returns microseconds, 0 when empty. */
static inline double bench_hist_pct_us(const bench_hist_t *h, double p) {
  if (h->n == 0)
    return 0;
  uint64_t want = (uint64_t)((double)h->n * p / 100.0);
  if (want >= h->n)
    want = h->n - 1;
  uint64_t seen = 0;
  for (int i = 0; i < BENCH_HIST_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen > want)
      return bench_hist_value(i) / 1000.0;
  }
  return 0;
}

/* utime + stime of a process in clock ticks, -1 when unreadable. */
static inline long long bench_proc_cpu_ticks(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = 0;
  /* The command name may contain spaces: fields are counted after ')'. */
  char *p = strrchr(buf, ')');
  if (!p)
    return -1;
  p++;
  unsigned long long ut = 0, st = 0;
  /* after ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
  if (sscanf(p, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return (long long)(ut + st);
}

/* CPU% of pid between two tick samples taken wall_ns apart (100 = one core). */
static inline double bench_cpu_pct(long long t0, long long t1, uint64_t wall_ns) {
  if (t0 < 0 || t1 < 0 || wall_ns == 0)
    return -1;
  double hz = (double)sysconf(_SC_CLK_TCK);
  return (double)(t1 - t0) / hz / ((double)wall_ns / 1e9) * 100.0;
}

static inline uint64_t bench_self_cpu_ns(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
         (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

/* "64", "4k", "4KiB", "1m": bytes; -1 on error. */
static inline long long bench_parse_size(const char *s) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v < 0)
    return -1;
  if (*end == 'k' || *end == 'K')
    v *= 1024, end++;
  else if (*end == 'm' || *end == 'M')
    v *= 1024 * 1024, end++;
  if (*end == 'i' || *end == 'I')
    end++;
  if (*end == 'b' || *end == 'B')
    end++;
  return *end ? -1 : v;
}

static inline void bench_print_result(const char *impl, size_t payload, int concurrency,
                                      double qps, const bench_hist_t *h, double cpu_pct,
                                      double client_cpu_pct) {
  printf("BENCH impl=%s payload=%zu concurrency=%d qps=%.0f p50_us=%.1f p99_us=%.1f "
         "cpu_pct=%.1f\n",
         impl, payload, concurrency, qps, bench_hist_pct_us(h, 50), bench_hist_pct_us(h, 99),
         cpu_pct);
  printf("# %s: calls=%llu client_cpu_pct=%.1f p999_us=%.1f max_us=%.1f\n", impl,
         (unsigned long long)h->n, client_cpu_pct, bench_hist_pct_us(h, 99.9),
         bench_hist_pct_us(h, 100));
  fflush(stdout);
}

#endif
