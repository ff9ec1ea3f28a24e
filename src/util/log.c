/* Minimal synchronous logger; the async logger replaces this file. */
#include "mprpc/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

volatile int mprpc__log_level = MPRPC_LOG_LEVEL_WARN;

static uint64_t (*clock_fn)(void *);
static void *clock_ctx;

static const char *const names[] = {"trace", "debug", "info", "warn", "error", "fatal", "off"};

void mprpc_log_set_level(int level) { mprpc__log_level = level; }
int mprpc_log_get_level(void) { return mprpc__log_level; }
const char *mprpc_log_level_name(int level) {
  return level >= 0 && level <= MPRPC_LOG_LEVEL_OFF ? names[level] : "?";
}
int mprpc_log_level_from_name(const char *name) {
  for (int i = 0; i <= MPRPC_LOG_LEVEL_OFF; i++)
    if (strcasecmp(name, names[i]) == 0)
      return i;
  return -1;
}
void mprpc_log_set_clock(uint64_t (*wall_ns)(void *ctx), void *ctx) {
  clock_fn = wall_ns;
  clock_ctx = ctx;
}
void mprpc_log_flush(void) { fflush(stderr); }

void mprpc__log_write(int level, const char *file, int line, const char *func, const char *fmt,
                      ...) {
  (void)func;
  uint64_t ns;
  if (clock_fn) {
    ns = clock_fn(clock_ctx);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  }
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%llu.%06llu %s %s:%d %s\n", (unsigned long long)(ns / 1000000000ull),
          (unsigned long long)(ns % 1000000000ull / 1000), mprpc_log_level_name(level), file, line,
          msg);
}
