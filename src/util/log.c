/*
 * Logger: formatting in the caller's thread, a bounded double buffer, and a
 * background writer thread that writes whole batches to the sink.
 *
 * Three modes:
 * - LAZY  : nothing configured (or after close): each line goes straight to
 *           stderr with write(2), under the lock so lines never interleave.
 * - SYNC  : configured with opts.sync: each line is written to the sink in
 *           the caller's thread, under the lock, in call order (simulator).
 * - ASYNC : producers format into a thread-local buffer, then copy the line
 *           into the front buffer under a short lock. The writer swaps the
 *           front and back buffers and writes the back buffer with the lock
 *           released. A line that does not fit is dropped and counted; the
 *           next line that fits is preceded by a notice with the count.
 *
 * The sink (fd, size, date, rotation) belongs to whoever writes: the caller
 * under the lock in LAZY/SYNC, the writer thread in ASYNC. It is replaced
 * only while no writer thread runs, under ctl_mu.
 */
#include "mprpc/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mprpc/errors.h"

#define LINE_MAX_BYTES 4096
#define DEFAULT_QUEUE_BYTES ((size_t)1 << 20)
#define MIN_QUEUE_BYTES 256
#define DEFAULT_KEEP 5

volatile int mprpc__log_level = MPRPC_LOG_LEVEL_INFO;

enum { MODE_LAZY = 0, MODE_SYNC, MODE_ASYNC };

/* The writer either works, sleeps until the first line arrives (producers
 * must wake it), or lingers a few ms to let a small batch grow (producers
 * wake it only once the batch is worth writing). Fewer wake-ups, fewer
 * write(2) calls; a line reaches the file within BATCH_WAIT_MS anyway. */
enum { WRITER_BUSY = 0, WRITER_IDLE, WRITER_LINGER };
#define BATCH_WAIT_MS 10

typedef struct sink {
  int fd;            /* 2 for stderr */
  bool is_file;      /* regular file we opened: rotation applies */
  char *path;        /* owned; NULL for stderr */
  uint64_t size;     /* bytes in the current file */
  uint64_t max_bytes;
  bool daily;
  int keep;
  bool day_set;
  char day[10];      /* YYYY-MM-DD of the current file */
  bool reported;     /* a fallback to stderr has been reported */
} sink_t;

static struct {
  pthread_mutex_t mu;     /* hot lock: mode, buffers, counters, sink in LAZY/SYNC */
  pthread_cond_t work;    /* writer waits for lines or stop; CLOCK_MONOTONIC,
                             initialized by the first mprpc_log_open */
  pthread_cond_t done;    /* flushers wait for written >= target */
  pthread_mutex_t ctl_mu; /* open/close serialized */
  int mode;
  sink_t sink;
  /* ASYNC */
  char *front, *back;
  size_t front_len, cap;
  int writer_state;       /* WRITER_* below */
  bool flush_req, stopping, running;
  pthread_t writer;
  /* Lines queued / written, monotonic over the process's life (never reset
   * by open/close): a flusher whose target predates a reconfiguration sees
   * it met once the old writer drained, instead of waiting on new lines. */
  uint64_t queued, written;
  uint64_t pending_drops;   /* dropped, not yet reported in the stream */
  atomic_uint_fast64_t dropped;
  bool sync_errors;
  bool atexit_done;
} g = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .ctl_mu = PTHREAD_MUTEX_INITIALIZER,
    .mode = MODE_LAZY,
    .sink = {.fd = 2},
};

static uint64_t (*_Atomic clock_fn)(void *);
static void *_Atomic clock_ctx;

static const char *const names[] = {"trace", "debug", "info", "warn", "error", "fatal", "off"};
static const char *const tags[] = {"TRACE", "DEBUG", "INFO ", "WARN ", "ERROR", "FATAL", "OFF  "};

void mprpc_log_set_level(int level) {
  if (level < MPRPC_LOG_LEVEL_TRACE)
    level = MPRPC_LOG_LEVEL_TRACE;
  if (level > MPRPC_LOG_LEVEL_OFF)
    level = MPRPC_LOG_LEVEL_OFF;
  __atomic_store_n(&mprpc__log_level, level, __ATOMIC_RELAXED);
}
int mprpc_log_get_level(void) { return __atomic_load_n(&mprpc__log_level, __ATOMIC_RELAXED); }
const char *mprpc_log_level_name(int level) {
  return level >= 0 && level <= MPRPC_LOG_LEVEL_OFF ? names[level] : "?";
}
int mprpc_log_level_from_name(const char *name) {
  if (!name)
    return MPRPC_EINVAL;
  for (int i = 0; i <= MPRPC_LOG_LEVEL_OFF; i++)
    if (strcasecmp(name, names[i]) == 0)
      return i;
  if (strcasecmp(name, "warning") == 0)
    return MPRPC_LOG_LEVEL_WARN;
  return MPRPC_EINVAL;
}
void mprpc_log_set_clock(uint64_t (*wall_ns)(void *ctx), void *ctx) {
  atomic_store(&clock_ctx, ctx);
  atomic_store(&clock_fn, wall_ns);
}
uint64_t mprpc_log_dropped(void) { return atomic_load(&g.dropped); }

/* ---- formatting (caller's thread, no lock) ------------------------------ */

static _Thread_local long tl_tid;
static _Thread_local int64_t tl_sec = -1;
static _Thread_local char tl_secbuf[24]; /* "YYYY-MM-DDTHH:MM:SS" */
static _Thread_local char tl_line[LINE_MAX_BYTES];
static _Thread_local char tl_msg[LINE_MAX_BYTES];

static uint64_t now_ns(void) {
  uint64_t (*fn)(void *) = atomic_load(&clock_fn);
  if (fn)
    return fn(atomic_load(&clock_ctx));
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The forking thread goes on as the child's only thread, under a new id:
 * forget the cached one. Registered on the first lookup, so a process that
 * logs to stderr without ever opening the logger is covered too. */
static pthread_once_t tid_once = PTHREAD_ONCE_INIT;
static void tid_fork_child(void) { tl_tid = 0; }
static void tid_init(void) { pthread_atfork(NULL, NULL, tid_fork_child); }

static long thread_id(void) {
  if (!tl_tid) {
    pthread_once(&tid_once, tid_init);
    tl_tid = (long)syscall(SYS_gettid);
  }
  return tl_tid;
}

static void put_digits(char *p, unsigned v, int n) {
  for (int i = n - 1; i >= 0; i--, v /= 10)
    p[i] = (char)('0' + v % 10);
}

/* "YYYY-MM-DD" (10 bytes, no NUL) for broken-down UTC time; years clamp to 0..9999. */
static void put_date(char *p, const struct tm *tm) {
  int y = tm->tm_year + 1900;
  put_digits(p, (unsigned)(y < 0 ? 0 : y > 9999 ? 9999 : y), 4);
  p[4] = '-';
  put_digits(p + 5, (unsigned)(tm->tm_mon + 1), 2);
  p[7] = '-';
  put_digits(p + 8, (unsigned)tm->tm_mday, 2);
}

static void utc(int64_t sec, struct tm *tm) {
  time_t t = (time_t)sec;
  if (!gmtime_r(&t, tm))
    memset(tm, 0, sizeof *tm);
}

/* "YYYY-MM-DDTHH:MM:SS" NUL-terminated. */
static void format_day(int64_t sec, char out[24]) {
  struct tm tm;
  utc(sec, &tm);
  put_date(out, &tm);
  out[10] = 'T';
  put_digits(out + 11, (unsigned)tm.tm_hour, 2);
  out[13] = ':';
  put_digits(out + 14, (unsigned)tm.tm_min, 2);
  out[16] = ':';
  put_digits(out + 17, (unsigned)tm.tm_sec, 2);
  out[19] = 0;
}

static const char *base_name(const char *file) {
  const char *s = file ? strrchr(file, '/') : NULL;
  return s ? s + 1 : (file ? file : "?");
}

static bool needs_escape(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

/* Copies msg into out (capacity cap) escaping bytes that would break the
 * one-record-one-line rule: \n, \r, other control bytes as \xHH. Sets *cut
 * when it ran out of room. Returns bytes written (no NUL). */
static size_t escape_into(char *out, size_t cap, const char *msg, size_t n, bool *cut) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0, i = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && !needs_escape((unsigned char)msg[j]))
      j++;
    size_t run = j - i;
    if (o + run > cap) {
      memcpy(out + o, msg + i, cap - o);
      *cut = true;
      return cap;
    }
    memcpy(out + o, msg + i, run);
    o += run;
    i = j;
    if (i == n)
      break;
    unsigned char c = (unsigned char)msg[i++];
    char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
    size_t el = 4;
    if (c == '\n' || c == '\r') {
      esc[1] = c == '\n' ? 'n' : 'r';
      el = 2;
    }
    if (o + el > cap) {
      *cut = true;
      return o;
    }
    memcpy(out + o, esc, el);
    o += el;
  }
  return o;
}

/* Decimal digits of v at p; returns how many. */
static size_t put_uint(char *p, unsigned long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++)
    p[i] = tmp[n - 1 - i];
  return n;
}

static const char trunc_mark[] = "...(truncated)";

/* Formats one complete line, newline included, into out[LINE_MAX_BYTES].
 * Returns its length. */
static size_t format_line(char *out, uint64_t ns, int level, const char *file, int line,
                          const char *fmt, va_list ap) {
  int64_t sec = (int64_t)(ns / 1000000000ull);
  unsigned usec = (unsigned)(ns % 1000000000ull / 1000u);
  if (sec != tl_sec) {
    format_day(sec, tl_secbuf);
    tl_sec = sec;
  }
  if (level < 0 || level > MPRPC_LOG_LEVEL_OFF)
    level = MPRPC_LOG_LEVEL_OFF;
  /* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ LEVEL tid file:line " by hand: this is the
   * hot path and the pieces are fixed or bounded. */
  char *p = out;
  memcpy(p, tl_secbuf, 19);
  p[19] = '.';
  put_digits(p + 20, usec, 6);
  p[26] = 'Z';
  p[27] = ' ';
  memcpy(p + 28, tags[level], 5);
  p[33] = ' ';
  p += 34;
  p += put_uint(p, (unsigned long)thread_id());
  *p++ = ' ';
  const char *bn = base_name(file);
  size_t bl = strlen(bn);
  if (bl > 256)
    bl = 256;
  memcpy(p, bn, bl);
  p += bl;
  *p++ = ':';
  p += put_uint(p, (unsigned long)(line < 0 ? 0 : line));
  *p++ = ' ';
  size_t hl = (size_t)(p - out);
  size_t room = LINE_MAX_BYTES - 1 - sizeof trunc_mark; /* keep room for mark + '\n' */
  int m = vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
  size_t ml = m < 0 ? 0 : (size_t)m;
  bool cut = ml >= sizeof tl_msg;
  if (cut)
    ml = sizeof tl_msg - 1;
  size_t o = hl + escape_into(out + hl, room - hl, tl_msg, ml, &cut);
  if (cut) {
    memcpy(out + o, trunc_mark, sizeof trunc_mark - 1);
    o += sizeof trunc_mark - 1;
  }
  out[o++] = '\n';
  return o;
}

static size_t format_internal(char *out, int level, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t format_internal(char *out, int level, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t n = format_line(out, now_ns(), level, __FILE__, line, fmt, ap);
  va_end(ap);
  return n;
}

/* ---- sink ---------------------------------------------------------------- */

static int raw_write(int fd, const char *p, size_t n, size_t *done) {
  size_t off = 0;
  int err = 0;
  while (off < n) {
    ssize_t w = write(fd, p + off, n - off);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      err = errno;
      break;
    }
    if (w == 0) {
      err = EIO;
      break;
    }
    off += (size_t)w;
  }
  if (done)
    *done = off;
  return err;
}

static void stderr_write(const char *p, size_t n) { (void)raw_write(2, p, n, NULL); }

/* Switches the sink to stderr after a failure on the file; says so once. */
static void sink_fallback(sink_t *s, const char *what, int err) {
  if (!s->reported) {
    char buf[LINE_MAX_BYTES];
    size_t n = format_internal(buf, MPRPC_LOG_LEVEL_ERROR, __LINE__,
                               "log file '%s': %s: %s; logging to stderr from now on",
                               s->path ? s->path : "?", what, strerror(err));
    stderr_write(buf, n);
    s->reported = true;
  }
  if (s->fd > 2)
    close(s->fd);
  s->fd = 2;
  s->is_file = false;
}

static void sink_put(sink_t *s, const char *p, size_t n) {
  if (n == 0)
    return;
  size_t done = 0;
  int err = raw_write(s->fd, p, n, &done);
  if (err && s->fd != 2) {
    sink_fallback(s, "write", err);
    stderr_write(p + done, n - done);
    return;
  }
  s->size += done;
}

static void day_of_time(time_t t, char day[10]) {
  struct tm tm;
  utc((int64_t)t, &tm);
  put_date(day, &tm);
}

/* Opens s->path for appending. 0 or a negative errno-style MPRPC code; on
 * failure the sink is stderr and the failure was reported. */
static int sink_open_file(sink_t *s, bool truncate) {
  int fd = open(s->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0),
                0644);
  if (fd < 0) {
    int e = errno;
    sink_fallback(s, "open", e);
    return mprpc_err_from_errno(e);
  }
  struct stat st;
  s->fd = fd;
  s->size = 0;
  s->day_set = false;
  s->is_file = false;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    s->is_file = true;
    s->size = (uint64_t)st.st_size;
    if (st.st_size > 0) {
      day_of_time(st.st_mtime, s->day);
      s->day_set = true;
    }
  }
  return 0;
}

static char *numbered(const char *path, int i) {
  size_t n = strlen(path) + 16;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s.%d", path, i);
  return p;
}

/* path.(keep-1) -> path.keep, ..., path -> path.1; then a fresh path. */
static void sink_rotate(sink_t *s) {
  close(s->fd);
  s->fd = 2;
  s->is_file = false;
  if (s->keep > 0) {
    for (int i = s->keep - 1; i >= 1; i--) {
      char *from = numbered(s->path, i), *to = numbered(s->path, i + 1);
      if (from && to)
        (void)rename(from, to); /* missing generations are fine */
      free(from);
      free(to);
    }
    char *to = numbered(s->path, 1);
    if (to && rename(s->path, to) != 0 && errno != ENOENT) {
      int e = errno;
      free(to);
      sink_fallback(s, "rename", e);
      return;
    }
    free(to);
    (void)sink_open_file(s, false);
  } else {
    (void)sink_open_file(s, true);
  }
}

static bool looks_dated(const char *line, size_t n) {
  return n >= 11 && line[4] == '-' && line[7] == '-' && line[10] == 'T';
}

/* Writes whole lines, rotating between lines when the next one would push
 * the file past max_bytes or starts a new UTC day. A line larger than
 * max_bytes on its own still goes into a file by itself. */
static void sink_write(sink_t *s, const char *p, size_t n) {
  if (!s->is_file || (!s->max_bytes && !s->daily)) {
    sink_put(s, p, n);
    return;
  }
  size_t run = 0;
  while (run < n) {
    const char *line = p + run;
    const char *nl = memchr(line, '\n', n - run);
    size_t ll = nl ? (size_t)(nl - line) + 1 : n - run;
    bool dated = s->daily && looks_dated(line, ll);
    bool rotate = false;
    if (dated) {
      if (!s->day_set) {
        memcpy(s->day, line, 10);
        s->day_set = true;
      } else if (memcmp(line, s->day, 10) > 0) {
        /* Only forward: lines from several threads can arrive a few
         * microseconds out of order around midnight, and a late line from
         * yesterday must not start yet another file. */
        rotate = true;
      }
    }
    if (s->max_bytes && s->size + run + ll > s->max_bytes && s->size + run > 0)
      rotate = true;
    if (rotate) {
      sink_put(s, p, run);
      p += run;
      n -= run;
      run = 0;
      if (!s->is_file) { /* the write above failed */
        sink_put(s, p, n);
        return;
      }
      sink_rotate(s);
      if (!s->is_file) {
        sink_put(s, p, n);
        return;
      }
      if (dated) {
        memcpy(s->day, line, 10);
        s->day_set = true;
      }
    }
    run += ll;
  }
  sink_put(s, p, run);
}

static void sink_close(sink_t *s) {
  if (s->fd > 2)
    close(s->fd);
  free(s->path);
  *s = (sink_t){.fd = 2};
}

/* ---- async writer ------------------------------------------------------- */

static void *writer_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g.mu);
  for (;;) {
    while (g.front_len == 0 && !g.stopping) {
      g.writer_state = WRITER_IDLE;
      pthread_cond_wait(&g.work, &g.mu);
      g.writer_state = WRITER_BUSY;
    }
    if (g.front_len == 0 && g.stopping)
      break;
    if (!g.stopping && !g.flush_req && g.front_len < g.cap / 4) {
      struct timespec dl;
      clock_gettime(CLOCK_MONOTONIC, &dl); /* the condition variable's clock */
      dl.tv_nsec += BATCH_WAIT_MS * 1000000L;
      if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
      }
      g.writer_state = WRITER_LINGER;
      pthread_cond_timedwait(&g.work, &g.mu, &dl);
      g.writer_state = WRITER_BUSY;
    }
    g.flush_req = false;
    char *batch = g.front;
    size_t len = g.front_len;
    uint64_t upto = g.queued;
    g.front = g.back;
    g.front_len = 0;
    g.back = batch;
    pthread_mutex_unlock(&g.mu);
    sink_write(&g.sink, batch, len);
    pthread_mutex_lock(&g.mu);
    g.written = upto;
    pthread_cond_broadcast(&g.done);
  }
  g.running = false;
  pthread_cond_broadcast(&g.done);
  pthread_mutex_unlock(&g.mu);
  return NULL;
}

static void flush_locked(void) {
  if (g.mode != MODE_ASYNC || !g.running || pthread_equal(pthread_self(), g.writer))
    return;
  uint64_t target = g.queued;
  while (g.written < target && g.running) {
    g.flush_req = true;
    if (g.writer_state != WRITER_BUSY)
      pthread_cond_signal(&g.work);
    pthread_cond_wait(&g.done, &g.mu);
  }
}

void mprpc_log_flush(void) {
  pthread_mutex_lock(&g.mu);
  flush_locked();
  pthread_mutex_unlock(&g.mu);
}

/* ---- producers ------------------------------------------------------------ */

void mprpc__log_write(int level, const char *file, int line, const char *func, const char *fmt,
                      ...) {
  (void)func;
  int saved_errno = errno; /* callers log errno-based messages; keep errno intact */
  va_list ap;
  va_start(ap, fmt);
  uint64_t ns = now_ns();
  size_t n = format_line(tl_line, ns, level, file, line, fmt, ap);
  va_end(ap);

  pthread_mutex_lock(&g.mu);
  if (g.mode != MODE_ASYNC) {
    if (g.mode == MODE_SYNC)
      sink_write(&g.sink, tl_line, n);
    else
      stderr_write(tl_line, n);
    pthread_mutex_unlock(&g.mu);
    errno = saved_errno;
    return;
  }
  char note[160];
  size_t nl = 0;
  if (g.pending_drops) {
    /* Same timestamp as the line it precedes; formatted by hand so the
     * thread-local line buffer stays untouched. */
    int k = snprintf(note, sizeof note, "%.26sZ %s %ld %s:%d dropped %llu log lines: queue full\n",
                     tl_line, tags[MPRPC_LOG_LEVEL_WARN], thread_id(), base_name(__FILE__),
                     __LINE__, (unsigned long long)g.pending_drops);
    nl = k > 0 && (size_t)k < sizeof note ? (size_t)k : 0;
  }
  if (g.front_len + nl + n > g.cap) {
    g.pending_drops++;
    atomic_fetch_add(&g.dropped, 1);
    pthread_mutex_unlock(&g.mu);
    errno = saved_errno;
    return;
  }
  if (nl) {
    memcpy(g.front + g.front_len, note, nl);
    g.front_len += nl;
    g.pending_drops = 0;
  }
  memcpy(g.front + g.front_len, tl_line, n);
  g.front_len += n;
  g.queued++;
  if (g.writer_state == WRITER_IDLE || (g.writer_state == WRITER_LINGER && g.front_len >= g.cap / 4))
    pthread_cond_signal(&g.work);
  if (g.sync_errors && level >= MPRPC_LOG_LEVEL_ERROR)
    flush_locked();
  pthread_mutex_unlock(&g.mu);
  errno = saved_errno;
}

/* ---- open / close ---------------------------------------------------------- */

/* Stops the writer (after it drained the queue), reports pending drops and
 * returns to LAZY. Caller holds ctl_mu, not mu. */
static void shutdown_locked_ctl(void) {
  pthread_mutex_lock(&g.mu);
  if (g.mode == MODE_ASYNC && g.running) {
    g.stopping = true;
    pthread_cond_signal(&g.work);
    pthread_mutex_unlock(&g.mu);
    pthread_join(g.writer, NULL);
    pthread_mutex_lock(&g.mu);
  }
  if (g.mode == MODE_ASYNC && g.front_len) /* writer never started or died early */
    sink_write(&g.sink, g.front, g.front_len);
  g.front_len = 0;
  g.written = g.queued; /* everything queued has been written */
  pthread_cond_broadcast(&g.done);
  if (g.pending_drops) {
    char buf[LINE_MAX_BYTES];
    size_t n = format_internal(buf, MPRPC_LOG_LEVEL_WARN, __LINE__,
                               "dropped %llu log lines: queue full",
                               (unsigned long long)g.pending_drops);
    sink_write(&g.sink, buf, n);
    g.pending_drops = 0;
  }
  free(g.front);
  free(g.back);
  g.front = g.back = NULL;
  g.front_len = g.cap = 0;
  g.stopping = false;
  g.running = false;
  g.mode = MODE_LAZY;
  sink_close(&g.sink);
  pthread_mutex_unlock(&g.mu);
}

void mprpc_log_close(void) {
  pthread_mutex_lock(&g.ctl_mu);
  shutdown_locked_ctl();
  pthread_mutex_unlock(&g.ctl_mu);
}

static void at_exit_flush(void) { mprpc_log_close(); }

/* Only used in ASYNC mode, so only after mprpc_log_open: a monotonic clock
 * keeps the writer's linger short even if the wall clock jumps back. */
static pthread_once_t work_once = PTHREAD_ONCE_INIT;
static void work_init(void) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&g.work, &a);
  pthread_condattr_destroy(&a);
}

/* fork(): the child has no writer thread. Hold both locks across the fork so
 * the child inherits them in a known state, then turn the child's logger
 * synchronous on the same sink. Lines still queued belong to the parent,
 * whose writer will write them. */
static void fork_prepare(void) {
  pthread_mutex_lock(&g.ctl_mu);
  pthread_mutex_lock(&g.mu);
}
static void fork_parent(void) {
  pthread_mutex_unlock(&g.mu);
  pthread_mutex_unlock(&g.ctl_mu);
}
static void fork_child(void) {
  if (g.mode == MODE_ASYNC) {
    free(g.front);
    free(g.back);
    g.front = g.back = NULL;
    g.front_len = g.cap = 0;
    g.running = false;
    g.stopping = false;
    g.writer_state = WRITER_BUSY;
    g.pending_drops = 0;
    g.mode = MODE_SYNC;
  }
  pthread_mutex_unlock(&g.mu);
  pthread_mutex_unlock(&g.ctl_mu);
}

void mprpc_log_opts_init(mprpc_log_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->level = mprpc_log_get_level();
  o->keep = DEFAULT_KEEP;
  o->queue_bytes = DEFAULT_QUEUE_BYTES;
  o->sync_errors = 1;
}

int mprpc_log_open(const mprpc_log_opts_t *o) {
  if (!o || o->level < MPRPC_LOG_LEVEL_TRACE || o->level > MPRPC_LOG_LEVEL_OFF || o->keep < 0)
    return MPRPC_EINVAL;
  pthread_once(&work_once, work_init);
  pthread_mutex_lock(&g.ctl_mu);
  shutdown_locked_ctl();
  if (!g.atexit_done) {
    atexit(at_exit_flush);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    g.atexit_done = true;
  }
  int rc = 0;
  sink_t s = {.fd = 2, .max_bytes = o->max_file_bytes, .daily = o->rotate_daily != 0,
              .keep = o->keep};
  if (o->path && o->path[0] && strcmp(o->path, "-") != 0) {
    s.path = strdup(o->path);
    if (!s.path)
      rc = MPRPC_ENOMEM;
    else
      rc = sink_open_file(&s, false);
  }
  mprpc_log_set_level(o->level);
  atomic_store(&g.dropped, 0);

  pthread_mutex_lock(&g.mu);
  g.sink = s;
  g.sync_errors = o->sync_errors != 0;
  g.pending_drops = 0;
  if (o->sync) {
    g.mode = MODE_SYNC;
    pthread_mutex_unlock(&g.mu);
    pthread_mutex_unlock(&g.ctl_mu);
    return rc;
  }
  size_t cap = o->queue_bytes ? o->queue_bytes : DEFAULT_QUEUE_BYTES;
  if (cap < MIN_QUEUE_BYTES)
    cap = MIN_QUEUE_BYTES;
  g.front = malloc(cap);
  g.back = malloc(cap);
  g.mode = MODE_SYNC; /* until the writer runs */
  int err = 0;
  if (!g.front || !g.back) {
    err = MPRPC_ENOMEM;
  } else {
    g.cap = cap;
    g.front_len = 0;
    g.stopping = false;
    g.running = true;
    g.mode = MODE_ASYNC;
    /* The writer blocks every signal so that handlers (and sigwait-style
     * designs) only ever see the application's own threads. */
    sigset_t all, prev;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &prev);
    int e = pthread_create(&g.writer, NULL, writer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
    if (e) {
      g.running = false;
      g.mode = MODE_SYNC;
      err = MPRPC_EAGAIN;
    }
  }
  if (err) {
    free(g.front);
    free(g.back);
    g.front = g.back = NULL;
    g.cap = 0;
    if (!rc)
      rc = err;
  }
  pthread_mutex_unlock(&g.mu);
  pthread_mutex_unlock(&g.ctl_mu);
  return rc;
}
