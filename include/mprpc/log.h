/*
 * Logging. The macros cost one predictable branch when their level is off.
 * Lines carry an ISO-8601 timestamp (from the clock seam when one is set, so
 * simulated runs log virtual time), the level, the thread id, file:line and
 * the message:
 *
 *   2026-11-21T23:40:01.123456Z INFO  12345 server.c:120 message
 *
 * Logging works before anything is configured: lines go synchronously to
 * stderr. mprpc_log_open() switches to a file and/or to the asynchronous
 * mode (a bounded queue drained by a background thread; producers never wait
 * for the disk, a full queue drops lines and counts them). Everything queued
 * is written by mprpc_log_flush(), mprpc_log_close() and at normal exit.
 * See docs/logging.md for format, sinks, rotation, drops and the sync mode.
 *
 * Functions return 0 or a negative MPRPC_E* code (include/mprpc/errors.h).
 */
#ifndef MPRPC_LOG_H
#define MPRPC_LOG_H

#include "mprpc/export.h"
#include <stddef.h>
#include <stdint.h>

MPRPC_BEGIN_DECLS

typedef enum mprpc_log_level {
  MPRPC_LOG_LEVEL_TRACE = 0,
  MPRPC_LOG_LEVEL_DEBUG = 1,
  MPRPC_LOG_LEVEL_INFO = 2,
  MPRPC_LOG_LEVEL_WARN = 3,
  MPRPC_LOG_LEVEL_ERROR = 4,
  MPRPC_LOG_LEVEL_FATAL = 5,
  MPRPC_LOG_LEVEL_OFF = 6,
} mprpc_log_level_t;

/* Current threshold; read by the macros (a relaxed atomic load: one plain
 * load on every common CPU). Set it with mprpc_log_set_level. */
extern volatile int mprpc__log_level;

void mprpc__log_write(int level, const char *file, int line, const char *func, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));

#define MPRPC_LOG(level, ...)                                                                      \
  do {                                                                                             \
    if (__builtin_expect((level) >= __atomic_load_n(&mprpc__log_level, __ATOMIC_RELAXED), 0))    \
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
/* "trace".."fatal", "off" (any case; "warning" too); MPRPC_EINVAL when
 * unknown (before 0.2: -1, which is MPRPC_EPERM). */
int mprpc_log_level_from_name(const char *name);
const char *mprpc_log_level_name(int level);

/* Timestamps come from this wall clock (ns since epoch) when set, else from
 * the OS; NULL restores the OS clock. The simulator points it at virtual
 * time. It is called by whichever thread logs: set it before other threads
 * log (fn and ctx are two separate atomics, not one). */
void mprpc_log_set_clock(uint64_t (*wall_ns)(void *ctx), void *ctx);

/* Writes out everything queued so far; returns once it has been handed to
 * the sink (write(2)). A no-op in the synchronous modes. Never blocks on the
 * background thread from the background thread itself. */
void mprpc_log_flush(void);

/* Logger configuration. Start from mprpc_log_opts_init() and change fields;
 * the struct is read during mprpc_log_open() only (path is copied). */
typedef struct mprpc_log_opts {
  const char *path;        /* log file; NULL, "" or "-" = stderr */
  int level;               /* threshold (MPRPC_LOG_LEVEL_*); init: the current one */
  uint64_t max_file_bytes; /* rotate before a file would exceed this; 0 = never */
  int rotate_daily;        /* rotate when the UTC date of the lines advances */
  int keep;                /* old files kept: path.1 (newest) .. path.<keep>; init: 5 */
  size_t queue_bytes;      /* bytes pending before lines are dropped; init: 1 MiB */
  int sync;                /* write in the caller's thread, in order, no thread */
  int sync_errors;         /* async: error/fatal lines wait until written; init: 1 */
} mprpc_log_opts_t;

void mprpc_log_opts_init(mprpc_log_opts_t *opts);

/* (Re)configures the logger: flushes and stops the current configuration,
 * then applies opts. Safe to call again to reconfigure. Registers an atexit
 * flush the first time. If the file cannot be opened the logger still runs
 * with every other option, writing to stderr; one line on stderr says why,
 * and the open error is returned (MPRPC_EACCES, MPRPC_ENOENT, ...).
 * MPRPC_EINVAL for a bad option (level out of range, negative keep),
 * MPRPC_ENOMEM / MPRPC_EAGAIN when the queue or the thread cannot be made
 * (the logger then stays in synchronous mode). After fork() the child's
 * logger is synchronous on the same sink (it has no writer thread). */
int mprpc_log_open(const mprpc_log_opts_t *opts);

/* Writes everything queued, stops the background thread, closes the file
 * and returns to the initial state (synchronous stderr, level kept).
 * Idempotent; logging during and after close is safe (it goes to stderr). */
void mprpc_log_close(void);

/* Lines dropped because the queue was full since the last mprpc_log_open(). */
uint64_t mprpc_log_dropped(void);

MPRPC_END_DECLS
#endif
