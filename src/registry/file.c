/*
 * file:///path: the embedded registry that needs no server.
 *
 * The file holds one instance per line in the shared line format
 * ("service host:port [weight=N] [methods=a,b] [version=V]
 * [start_time_ms=T] [pid=P] [hostname=H]", '#' comments). A background
 * thread polls the file's identity (inode, size, mtime) every poll_ms and,
 * when it changed, re-reads it and delivers each subscriber its service's
 * list on the subscriber's loop. A file that fails to parse is logged with
 * file:line and ignored: subscribers keep the last good content.
 *
 * Providers registering into the file edit it under an exclusive flock on
 * PATH.lock: read, drop the line with the same service and address, append
 * the new line, write a temp file, rename it over PATH. Readers therefore
 * always see a whole file, and concurrent writers in different processes
 * never lose each other's lines. close() removes this registry's lines.
 *
 * Liveness (on unless ?liveness=0): lines written by this code carry
 * pid=P hostname=H. A line whose hostname is this host's and whose process
 * no longer exists is not delivered, and the next edit of the file drops
 * it, so a provider killed with SIGKILL disappears from consumers on the
 * same host within one poll period. Lines of other hosts are trusted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "registry/internal.h"

typedef struct file_id {
  bool exists;
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec mtime;
} file_id_t;

typedef struct file_reg {
  char *path;
  char *lock_path;
  unsigned poll_ms;
  mprpc__reg_subs_t subs;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* mu: */
  mprpc__reg_list_t content; /* last good parse, every service */
  long *local_pids;          /* parallel to content: pid of a line of this host, or 0 */
  bool liveness;
  mprpc__reg_list_t regs;    /* what this registry registered */
  bool stop, kick;
  /* poller thread only: */
  file_id_t seen;
  bool thread_started;
  pthread_t thread;
} file_reg_t;

static file_id_t file_identity(const char *path) {
  file_id_t id = {0};
  struct stat st;
  if (stat(path, &st) == 0) {
    id.exists = true;
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    id.size = st.st_size;
    id.mtime = st.st_mtim;
  }
  return id;
}

static bool id_equal(const file_id_t *a, const file_id_t *b) {
  if (a->exists != b->exists)
    return false;
  if (!a->exists)
    return true;
  return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
         a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Reads and parses the file. A missing file is an empty list. With
 * liveness, lines of dead local processes are left out. */
static int load(const char *path, bool liveness, mprpc__reg_list_t *out, long **pids, char *err,
                size_t errlen) {
  char *text = NULL;
  *pids = NULL;
  int rc = mprpc__reg_read_file(path, &text, NULL);
  if (rc == MPRPC_ENOENT)
    return 0;
  if (rc) {
    snprintf(err, errlen, "%s: cannot read: %s", path, mprpc_strerror(rc));
    return rc;
  }
  mprpc__reg_list_t all = {0};
  rc = mprpc__reg_parse_text_ex(text, path, &all, pids, err, errlen);
  free(text);
  if (rc)
    return rc;
  size_t kept = 0;
  for (size_t i = 0; i < all.n; i++) {
    if (liveness && *pids && mprpc__reg_pid_dead((*pids)[i])) {
      MPRPC_LOG_DEBUG("registry %s: skipping %s of dead process %ld", path, all.items[i].service,
                      (*pids)[i]);
      continue;
    }
    if ((rc = mprpc__reg_list_add(out, &all.items[i])) != 0)
      break;
    if (*pids)
      (*pids)[kept] = (*pids)[i];
    kept++;
  }
  mprpc__reg_list_clear(&all);
  if (rc) {
    mprpc__reg_list_clear(out);
    free(*pids);
    *pids = NULL;
  }
  return rc;
}

static bool any_local_dead(const file_reg_t *f) {
  if (!f->liveness || !f->local_pids)
    return false;
  for (size_t i = 0; i < f->content.n; i++)
    if (mprpc__reg_pid_dead(f->local_pids[i]))
      return true;
  return false;
}

static bool same_key(const mprpc_instance_t *a, const char *service, const char *host,
                     uint16_t port) {
  return a->port == port && strcmp(a->service, service) == 0 && strcmp(a->host, host) == 0;
}

/* Rewrites the file under the cross-process lock: drops every line whose key
 * is in drop[0..ndrop) (and add's key), then appends add. Lines this code
 * cannot parse are kept as they are. */
static int file_edit(file_reg_t *f, const mprpc_instance_t *drop, size_t ndrop,
                     const mprpc_instance_t *add) {
  int lfd = open(f->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lfd < 0) {
    int e = errno;
    MPRPC_LOG_ERROR("registry: open(%s): %s", f->lock_path, strerror(e));
    return mprpc_err_from_errno(e);
  }
  while (flock(lfd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      int e = errno;
      MPRPC_LOG_ERROR("registry: flock(%s): %s", f->lock_path, strerror(e));
      close(lfd);
      return mprpc_err_from_errno(e);
    }
  }
  char *text = NULL, *out = NULL, *line = NULL;
  size_t tlen = 0, olen = 0;
  int rc = mprpc__reg_read_file(f->path, &text, &tlen);
  if (rc == MPRPC_ENOENT) {
    text = strdup("");
    rc = text ? 0 : MPRPC_ENOMEM;
  }
  if (rc)
    goto done;
  char addline[MPRPC__REG_MAX_META * 3];
  int alen = 0;
  if (add) {
    mprpc__reg_line_extra_t owner = {(long)getpid(), mprpc__reg_hostname()};
    alen = mprpc__reg_format_line_ex(add, &owner, addline, sizeof addline);
    if (alen < 0 || (size_t)alen >= sizeof addline) {
      rc = MPRPC_ETOOBIG;
      goto done;
    }
  }
  out = malloc(tlen + (size_t)alen + 2);
  line = malloc(tlen + 1);
  if (!out || !line) {
    rc = MPRPC_ENOMEM;
    goto done;
  }
  for (const char *p = text; *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) + 1 : strlen(p);
    memcpy(line, p, n);
    line[n] = '\0';
    mprpc_instance_t inst;
    mprpc__reg_line_extra_t ex;
    char e[200];
    bool keep = true;
    if (mprpc__reg_parse_line_ex(line, &inst, &ex, e, sizeof e) == 1) {
      if (f->liveness && ex.pid > 0 && ex.hostname &&
          strcmp(ex.hostname, mprpc__reg_hostname()) == 0 && mprpc__reg_pid_dead(ex.pid)) {
        MPRPC_LOG_INFO("registry %s: dropping %s %s:%u of dead process %ld", f->path,
                       inst.service, inst.host, (unsigned)inst.port, ex.pid);
        keep = false;
      }
      for (size_t i = 0; i < ndrop && keep; i++)
        keep = !same_key(&inst, drop[i].service, drop[i].host, drop[i].port);
      if (keep && add)
        keep = !same_key(&inst, add->service, add->host, add->port);
    }
    if (keep) {
      memcpy(out + olen, p, n);
      olen += n;
      if (!nl)
        out[olen++] = '\n';
    }
    p += n;
  }
  if (add) {
    memcpy(out + olen, addline, (size_t)alen);
    olen += (size_t)alen;
  }
  rc = mprpc__reg_write_file_atomic(f->path, out, olen);
done:
  flock(lfd, LOCK_UN);
  close(lfd);
  free(text);
  free(out);
  free(line);
  return rc;
}

static void kick_locked(file_reg_t *f) {
  f->kick = true;
  pthread_cond_signal(&f->cv);
}

static int fr_register(void *ctx, const mprpc_instance_t *inst) {
  file_reg_t *f = ctx;
  char e[200];
  int rc = mprpc__reg_instance_check(inst, e, sizeof e);
  if (rc) {
    MPRPC_LOG_WARN("registry %s: register: %s", f->path, e);
    return rc;
  }
  mprpc_instance_t line = *inst;
  if (line.weight == 0)
    line.weight = MPRPC_DEFAULT_WEIGHT;
  pthread_mutex_lock(&f->mu);
  rc = file_edit(f, NULL, 0, &line);
  if (rc == 0) {
    for (size_t i = 0; i < f->regs.n; i++) {
      if (same_key(&f->regs.items[i], inst->service, inst->host, inst->port)) {
        mprpc__reg_instance_free(&f->regs.items[i]);
        f->regs.items[i] = f->regs.items[--f->regs.n];
        break;
      }
    }
    rc = mprpc__reg_list_add(&f->regs, &line);
    kick_locked(f);
    char addr[MPRPC__REG_MAX_HOST + 16];
    mprpc__reg_format_hostport(inst->host, inst->port, addr, sizeof addr);
    MPRPC_LOG_INFO("registry: registered %s at %s in file://%s", inst->service, addr, f->path);
  } else {
    MPRPC_LOG_ERROR("registry %s: register %s failed: %s", f->path, inst->service,
                    mprpc_strerror(rc));
  }
  pthread_mutex_unlock(&f->mu);
  return rc;
}

static int fr_unregister(void *ctx, const char *service, const char *host, uint16_t port) {
  file_reg_t *f = ctx;
  if (!service || !host)
    return MPRPC_EINVAL;
  mprpc_instance_t key = {.service = service, .host = host, .port = port};
  pthread_mutex_lock(&f->mu);
  int rc = file_edit(f, &key, 1, NULL);
  for (size_t i = 0; i < f->regs.n; i++) {
    if (same_key(&f->regs.items[i], service, host, port)) {
      mprpc__reg_instance_free(&f->regs.items[i]);
      f->regs.items[i] = f->regs.items[--f->regs.n];
      break;
    }
  }
  kick_locked(f);
  pthread_mutex_unlock(&f->mu);
  if (rc)
    MPRPC_LOG_ERROR("registry %s: unregister %s failed: %s", f->path, service,
                    mprpc_strerror(rc));
  return rc;
}

static int fr_subscribe(void *ctx, const char *service, mprpc_loop_t loop,
                        mprpc_registry_watch_cb cb, void *ud, uint64_t *sub_id) {
  file_reg_t *f = ctx;
  if (!service || !*service || !cb || !sub_id || !loop.vt)
    return MPRPC_EINVAL;
  pthread_mutex_lock(&f->mu);
  int rc = mprpc__reg_subs_add(&f->subs, service, loop, cb, ud, sub_id);
  if (rc == 0)
    mprpc__reg_subs_deliver_one(&f->subs, *sub_id, &f->content, true, MPRPC_REG_HEALTHY);
  pthread_mutex_unlock(&f->mu);
  return rc;
}

static void fr_unsubscribe(void *ctx, uint64_t id) {
  file_reg_t *f = ctx;
  mprpc__reg_subs_remove(&f->subs, id);
}

static int fr_health(void *ctx) {
  (void)ctx;
  return MPRPC_REG_HEALTHY;
}

static void *poller(void *arg) {
  file_reg_t *f = arg;
  pthread_mutex_lock(&f->mu);
  while (!f->stop) {
    if (!f->kick) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)f->poll_ms * MPRPC_NS_PER_MS;
      ts.tv_sec += (time_t)(ns / MPRPC_NS_PER_S);
      ts.tv_nsec = (long)(ns % MPRPC_NS_PER_S);
      pthread_cond_timedwait(&f->cv, &f->mu, &ts);
    }
    f->kick = false;
    if (f->stop)
      break;
    pthread_mutex_unlock(&f->mu);
    file_id_t id = file_identity(f->path);
    bool changed = !id_equal(&id, &f->seen);
    pthread_mutex_lock(&f->mu);
    changed = changed || any_local_dead(f);
    pthread_mutex_unlock(&f->mu);
    mprpc__reg_list_t fresh = {0};
    long *pids = NULL;
    int rc = 0;
    if (changed) {
      char err[400];
      rc = load(f->path, f->liveness, &fresh, &pids, err, sizeof err);
      if (rc)
        MPRPC_LOG_ERROR("registry: %s (keeping the previous endpoint lists)", err);
      f->seen = id;
    }
    pthread_mutex_lock(&f->mu);
    if (changed && rc == 0) {
      mprpc__reg_list_clear(&f->content);
      free(f->local_pids);
      f->content = fresh;
      f->local_pids = pids;
      mprpc__reg_subs_deliver(&f->subs, NULL, &f->content, true, MPRPC_REG_HEALTHY);
    }
  }
  pthread_mutex_unlock(&f->mu);
  return NULL;
}

static void fr_close(void *ctx) {
  file_reg_t *f = ctx;
  if (!f)
    return;
  if (f->thread_started) {
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
  }
  if (f->regs.n) {
    int rc = file_edit(f, f->regs.items, f->regs.n, NULL);
    if (rc)
      MPRPC_LOG_ERROR("registry %s: removing this process's lines failed: %s", f->path,
                      mprpc_strerror(rc));
  }
  mprpc__reg_subs_destroy(&f->subs);
  mprpc__reg_list_clear(&f->content);
  free(f->local_pids);
  mprpc__reg_list_clear(&f->regs);
  pthread_cond_destroy(&f->cv);
  pthread_mutex_destroy(&f->mu);
  free(f->path);
  free(f->lock_path);
  free(f);
}

static const mprpc_registry_ops_t file_ops = {
    .register_instance = fr_register,
    .unregister_instance = fr_unregister,
    .subscribe = fr_subscribe,
    .unsubscribe = fr_unsubscribe,
    .health = fr_health,
    .close = fr_close,
};

int mprpc__file_open(const char *path, const mprpc__reg_kv_t *opts, size_t nopts,
                     mprpc_registry_t *out, char *err, size_t errlen) {
  uint64_t poll_ms = 250, liveness = 1;
  for (size_t i = 0; i < nopts; i++) {
    if (strcmp(opts[i].key, "poll_ms") == 0) {
      if (mprpc__reg_opt_uint("file://", "poll_ms", opts[i].value, 10, 60000, &poll_ms, err,
                              errlen))
        return MPRPC_EINVAL;
    } else if (strcmp(opts[i].key, "liveness") == 0) {
      if (mprpc__reg_opt_uint("file://", "liveness", opts[i].value, 0, 1, &liveness, err, errlen))
        return MPRPC_EINVAL;
    } else {
      snprintf(err, errlen, "unknown file:// option '%s' (known: poll_ms, liveness)",
               opts[i].key);
      return MPRPC_EINVAL;
    }
  }
  file_reg_t *f = calloc(1, sizeof *f);
  if (!f)
    return MPRPC_ENOMEM;
  int rc = MPRPC_ENOMEM;
  bool mu = false, cv = false, subs = false;
  f->poll_ms = (unsigned)poll_ms;
  f->liveness = liveness != 0;
  f->path = strdup(path);
  f->lock_path = malloc(strlen(path) + 6);
  if (!f->path || !f->lock_path)
    goto fail;
  sprintf(f->lock_path, "%s.lock", path);
  if (pthread_mutex_init(&f->mu, NULL))
    goto fail;
  mu = true;
  if (pthread_cond_init(&f->cv, NULL))
    goto fail;
  cv = true;
  if (mprpc__reg_subs_init(&f->subs))
    goto fail;
  subs = true;
  f->seen = file_identity(path);
  if ((rc = load(path, f->liveness, &f->content, &f->local_pids, err, errlen)) != 0)
    goto fail;
  if (pthread_create(&f->thread, NULL, poller, f)) {
    rc = MPRPC_EREGISTRY;
    snprintf(err, errlen, "cannot start the file watcher thread");
    goto fail;
  }
  f->thread_started = true;
  out->vt = &file_ops;
  out->ctx = f;
  return 0;
fail:
  mprpc__reg_list_clear(&f->content);
  free(f->local_pids);
  if (subs)
    mprpc__reg_subs_destroy(&f->subs);
  if (cv)
    pthread_cond_destroy(&f->cv);
  if (mu)
    pthread_mutex_destroy(&f->mu);
  free(f->path);
  free(f->lock_path);
  free(f);
  return rc;
}
