/*
 * log_bench: throughput of the async logger (not a test).
 *
 *   log_bench [-t THREADS] [-d SECONDS] [-n MAX_LINES] [-q QUEUE_BYTES]
 *
 * THREADS producers (default 2) log INFO lines of ~100 bytes into a
 * temporary file through the background writer, until SECONDS (default 2)
 * have passed or MAX_LINES (default 50,000,000) lines were submitted. The
 * clock stops after mprpc_log_close() has written everything. Prints:
 *
 *   BENCH impl=logger threads=2 lines=N seconds=S lines_per_s=R dropped=D
 *
 * lines = submitted, dropped = refused because the queue was full,
 * lines_per_s = (lines - dropped) / seconds, i.e. lines that reached the file.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mprpc/log.h"

static double seconds_limit = 2.0;
static long long max_lines = 50000000;
static atomic_llong submitted;
static atomic_int stop;
static struct timespec t0;

static double since(const struct timespec *a) {
  struct timespec b;
  clock_gettime(CLOCK_MONOTONIC, &b);
  return (double)(b.tv_sec - a->tv_sec) + (double)(b.tv_nsec - a->tv_nsec) / 1e9;
}

static void *producer(void *arg) {
  long id = (long)arg;
  long long i = 0;
  while (!atomic_load(&stop)) {
    for (int k = 0; k < 256; k++, i++)
      MPRPC_LOG_INFO("bench t=%ld i=%lld payload=abcdefghijklmnopqrstuvwxyz0123456789", id, i);
    long long total = atomic_fetch_add(&submitted, 256) + 256;
    if (total >= max_lines || since(&t0) >= seconds_limit)
      atomic_store(&stop, 1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int threads = 2;
  size_t queue = 0;
  int opt;
  while ((opt = getopt(argc, argv, "t:d:n:q:h")) != -1) {
    switch (opt) {
    case 't':
      threads = atoi(optarg);
      break;
    case 'd':
      seconds_limit = atof(optarg);
      break;
    case 'n':
      max_lines = atoll(optarg);
      break;
    case 'q':
      queue = (size_t)atoll(optarg);
      break;
    default:
      fprintf(stderr, "usage: %s [-t THREADS] [-d SECONDS] [-n MAX_LINES] [-q QUEUE_BYTES]\n",
              argv[0]);
      return opt == 'h' ? 0 : 2;
    }
  }
  if (threads < 1 || threads > 64 || seconds_limit <= 0 || max_lines <= 0) {
    fprintf(stderr, "log_bench: bad arguments\n");
    return 2;
  }
  char path[] = "/tmp/mprpc-log-bench.XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) {
    perror("log_bench: mkstemp");
    return 1;
  }
  close(fd);
  mprpc_log_opts_t o;
  mprpc_log_opts_init(&o);
  o.path = path;
  o.level = MPRPC_LOG_LEVEL_INFO;
  if (queue)
    o.queue_bytes = queue;
  if (mprpc_log_open(&o) != 0) {
    fprintf(stderr, "log_bench: cannot open %s\n", path);
    unlink(path);
    return 1;
  }
  pthread_t th[64];
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < threads; i++)
    if (pthread_create(&th[i], NULL, producer, (void *)i) != 0) {
      fprintf(stderr, "log_bench: pthread_create failed\n");
      return 1;
    }
  for (int i = 0; i < threads; i++)
    pthread_join(th[i], NULL);
  unsigned long long dropped = mprpc_log_dropped();
  mprpc_log_close();
  double secs = since(&t0);
  long long lines = atomic_load(&submitted);
  unlink(path);
  printf("BENCH impl=logger threads=%d lines=%lld seconds=%.3f lines_per_s=%.0f dropped=%llu\n",
         threads, lines, secs, (double)(lines - (long long)dropped) / secs, dropped);
  return 0;
}
