/*
 * Logging. The macros cost one predictable branch when their level is off.
 * Lines carry an ISO-8601 timestamp (from the clock seam when one is set, so
 * simulated runs log virtual time), the level, the thread id, file:line and
 * the message. See src/util/log.c for sinks, queueing and rotation.
 */
#ifndef MPRPC_LOG_H
#define MPRPC_LOG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mprpc_log_level {
  MPRPC_LOG_LEVEL_TRACE = 0,
  MPRPC_LOG_LEVEL_DEBUG = 1,
  MPRPC_LOG_LEVEL_INFO = 2,
  MPRPC_LOG_LEVEL_WARN = 3,
  MPRPC_LOG_LEVEL_ERROR = 4,
  MPRPC_LOG_LEVEL_FATAL = 5,
  MPRPC_LOG_LEVEL_OFF = 6,
} mprpc_log_level_t;

/* Current threshold; read by the macros. Set it with mprpc_log_set_level. */
extern volatile int mprpc__log_level;

void mprpc__log_write(int level, const char *file, int line, const char *func, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));

#define MPRPC_LOG(level, ...)                                                                      \
  do {                                                                                             \
    if (__builtin_expect((level) >= mprpc__log_level, 0))                                          \
      mprpc__log_write((level), __FILE__, __LINE__, __func__, __VA_ARGS__);                        \
  } while (0)

#define MPRPC_LOG_TRACE(...) MPRPC_LOG(MPRPC_LOG_LEVEL_TRACE, __VA_ARGS__)
#define MPRPC_LOG_DEBUG(...) MPRPC_LOG(MPRPC_LOG_LEVEL_DEBUG, __VA_ARGS__)
#define MPRPC_LOG_INFO(...) MPRPC_LOG(MPRPC_LOG_LEVEL_INFO, __VA_ARGS__)
#define MPRPC_LOG_WARN(...) MPRPC_LOG(MPRPC_LOG_LEVEL_WARN, __VA_ARGS__)
#define MPRPC_LOG_ERROR(...) MPRPC_LOG(MPRPC_LOG_LEVEL_ERROR, __VA_ARGS__)
#define MPRPC_LOG_FATAL(...) MPRPC_LOG(MPRPC_LOG_LEVEL_FATAL, __VA_ARGS__)

void mprpc_log_set_level(int level);
int mprpc_log_get_level(void);
/* "trace".."fatal", "off"; -1 when unknown. */
int mprpc_log_level_from_name(const char *name);
const char *mprpc_log_level_name(int level);

/* Timestamps come from this wall clock (ns since epoch) when set, else from
 * the OS. The simulator points it at virtual time. */
void mprpc_log_set_clock(uint64_t (*wall_ns)(void *ctx), void *ctx);

/* Writes out everything queued so far. */
void mprpc_log_flush(void);

#ifdef __cplusplus
}
#endif
#endif
