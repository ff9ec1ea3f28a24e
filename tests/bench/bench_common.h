/*
 * Pieces shared by the benchmark programs (baseline_echo, mprpc-bench):
 * monotonic clock, a log-linear latency histogram, CPU sampling of a process
 * through /proc/<pid>/stat, size parsing, the command line both take, the
 * measurement window, and the one result line that ci/bench.sh parses.
 * Header-only because the Makefile builds each tests/bench/<name>.c as its
 * own program.
 */
#ifndef MPRPC_BENCH_COMMON_H
#define MPRPC_BENCH_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
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

/* Sleeps until bench_now_ns() >= t. */
static inline void bench_sleep_until(uint64_t t) {
  for (uint64_t now; (now = bench_now_ns()) < t;) {
    uint64_t d = t - now;
    struct timespec ts = {(time_t)(d / 1000000000ull), (long)(d % 1000000000ull)};
    nanosleep(&ts, NULL);
  }
}

/* The request payload both programs send: n bytes of 'a'..'z' repeating. */
static inline void bench_fill_payload(char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    p[i] = (char)('a' + i % 26);
}

/* ------------------------------------------------------------ command line */

typedef struct bench_opts {
  size_t payload;  /* -s */
  int conc;        /* -c: callers in flight */
  int srv_threads; /* -t */
  int cli_threads; /* -T */
  int conns;       /* -n */
  double secs;     /* -d: measurement window */
  double warmup;   /* -w: before the window */
  bool sync;       /* --sync: -T threads each call synchronously (conc = T) */
} bench_opts_t;

enum { BENCH_MODE_BOTH, BENCH_MODE_SERVER, BENCH_MODE_CLIENT, BENCH_MODE_IDLE };

typedef struct bench_cli {
  bench_opts_t o;
  int mode;            /* BENCH_MODE_* */
  int port;            /* -p, server mode */
  int idle;            /* --idle-conns N */
  const char *target;  /* --client HOST:PORT */
  pid_t server_pid;    /* --server-pid, for cpu_pct */
} bench_cli_t;

/* Parses the options both programs share into c, after filling in the
 * defaults. -s may not exceed max_payload; --idle-conns is an option only
 * when allow_idle. Returns 0, or -1 on an unknown option, a missing value
 * or a bad size (the caller prints its usage). Ranges of the other values
 * are the caller's to check. */
static inline int bench_parse_args(int argc, char **argv, long long max_payload, bool allow_idle,
                                   bench_cli_t *c) {
  memset(c, 0, sizeof *c);
  c->o = (bench_opts_t){.payload = 64, .conc = 1, .srv_threads = 1, .cli_threads = 1,
                        .conns = 1, .secs = 3, .warmup = 0.5};
  c->mode = BENCH_MODE_BOTH;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--server")) {
      c->mode = BENCH_MODE_SERVER;
      continue;
    }
    if (!strcmp(a, "--sync")) {
      c->o.sync = true;
      continue;
    }
    if (!v)
      return -1;
    i++;
    if (!strcmp(a, "--client")) {
      c->mode = BENCH_MODE_CLIENT;
      c->target = v;
    } else if (allow_idle && !strcmp(a, "--idle-conns")) {
      c->mode = BENCH_MODE_IDLE;
      c->idle = atoi(v);
    } else if (!strcmp(a, "--server-pid")) {
      c->server_pid = (pid_t)atoi(v);
    } else if (!strcmp(a, "-s")) {
      long long s = bench_parse_size(v);
      if (s < 0 || s > max_payload)
        return -1;
      c->o.payload = (size_t)s;
    } else if (!strcmp(a, "-c")) {
      c->o.conc = atoi(v);
    } else if (!strcmp(a, "-d")) {
      c->o.secs = atof(v);
    } else if (!strcmp(a, "-w")) {
      c->o.warmup = atof(v);
    } else if (!strcmp(a, "-t")) {
      c->o.srv_threads = atoi(v);
    } else if (!strcmp(a, "-T")) {
      c->o.cli_threads = atoi(v);
    } else if (!strcmp(a, "-n")) {
      c->o.conns = atoi(v);
    } else if (!strcmp(a, "-p")) {
      c->port = atoi(v);
    } else {
      return -1;
    }
  }
  if (c->o.sync) /* one synchronous call in flight per thread */
    c->o.conc = c->o.cli_threads < 1 ? 1 : c->o.cli_threads;
  return 0;
}

/* ------------------------------------------------------ measurement window */

/* Calls that complete in [t_start, t_end) are the ones counted; the server's
 * CPU and our own are sampled at the two ends, so both programs measure the
 * same thing the same way. */
typedef struct bench_window {
  uint64_t t_start, t_end;
  pid_t server_pid;             /* <= 0: not known, cpu_pct=-1 */
  long long srv_ticks0, srv_ticks1; /* bench_proc_cpu_ticks of server_pid */
  uint64_t self_cpu0, self_cpu1;    /* bench_self_cpu_ns */
  uint64_t wall0, wall1;            /* bench_now_ns at the samples */
} bench_window_t;

/* The window opens o->warmup seconds from now and lasts o->secs. */
static inline void bench_window_open(bench_window_t *w, const bench_opts_t *o, pid_t server_pid) {
  memset(w, 0, sizeof *w);
  w->server_pid = server_pid;
  uint64_t t0 = bench_now_ns();
  w->t_start = t0 + (uint64_t)(o->warmup * 1e9);
  w->t_end = w->t_start + (uint64_t)(o->secs * 1e9);
}

static inline bool bench_window_has(const bench_window_t *w, uint64_t now) {
  return now >= w->t_start && now < w->t_end;
}

/* Sleeps through the window (the callers run on other threads), sampling
 * CPU at its start and at its end. */
static inline void bench_window_run(bench_window_t *w) {
  bench_sleep_until(w->t_start);
  w->srv_ticks0 = bench_proc_cpu_ticks(w->server_pid);
  w->self_cpu0 = bench_self_cpu_ns();
  w->wall0 = bench_now_ns();
  bench_sleep_until(w->t_end);
  w->srv_ticks1 = bench_proc_cpu_ticks(w->server_pid);
  w->self_cpu1 = bench_self_cpu_ns();
  w->wall1 = bench_now_ns();
}

/* The result of a run: count calls in the window, their latencies in h. */
static inline void bench_window_report(const bench_window_t *w, const char *impl,
                                       const bench_opts_t *o, uint64_t count,
                                       const bench_hist_t *h) {
  double wall = (double)(w->wall1 - w->wall0) / 1e9;
  bench_print_result(impl, o->payload, o->conc, (double)count / o->secs, h,
                     w->server_pid > 0
                         ? bench_cpu_pct(w->srv_ticks0, w->srv_ticks1, w->wall1 - w->wall0)
                         : -1,
                     (double)(w->self_cpu1 - w->self_cpu0) / 1e9 / wall * 100.0);
}

#endif
