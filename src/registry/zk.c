/*
 * zk://host:port[,host:port...][/chroot][?options]: ZooKeeper registry, the
 * registry object and its ZooKeeper session (zk_internal.h lists the other
 * files: registrations in zk_provider.c, subscriptions in zk_consumer.c).
 *
 * Layout (docs/registry.md): persistent <chroot>/mprpc/services/<service>/
 * providers, one EPHEMERAL child per instance named host:port whose data is
 * key=value lines (address, weight, methods, version, start_time_ms, pid,
 * hostname).
 *
 * Threads. ZooKeeper's own threads (I/O and completion) only run
 * mprpc__zk_watcher(), which records what happened under the registry
 * mutex, posts cached lists to subscribers when health drops, and wakes the
 * worker. One worker thread per registry does every ZooKeeper call with the
 * synchronous API: it (re)creates this registry's ephemeral nodes,
 * refreshes the lists of subscribed services (re-arming the watches each
 * time), and opens a new session when the old one expired. User callbacks
 * only ever run on the subscriber's loop (posted through the subscriber
 * table), never on a ZooKeeper thread or on the worker. The mutex is never
 * held across a ZooKeeper call, so the watcher can always make progress.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zookeeper/zookeeper.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "registry/internal.h"
#include "registry/zk_internal.h"

#define ZK_DEFAULT_SESSION_MS 10000
#define ZK_DEFAULT_CONNECT_MS 5000
#define ZK_RETRY_MS 250

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void abs_deadline(struct timespec *ts, long ms) {
  clock_gettime(CLOCK_REALTIME, ts);
  uint64_t ns = (uint64_t)ts->tv_nsec + (uint64_t)ms * MPRPC_NS_PER_MS;
  ts->tv_sec += (time_t)(ns / MPRPC_NS_PER_S);
  ts->tv_nsec = (long)(ns % MPRPC_NS_PER_S);
}

static void zk_log_cb(const char *message) { MPRPC_LOG_DEBUG("zookeeper: %s", message); }

static pthread_once_t zk_log_once = PTHREAD_ONCE_INIT;
static void zk_log_setup(void) {
  /* ZooKeeper's client logs every failed connect at ERROR; those go to our
   * log at DEBUG through zk_log_cb. */
  zoo_set_debug_level(ZOO_LOG_LEVEL_WARN);
}

/* --- health ------------------------------------------------------------- */

/* mu held. */
static int compute_health(const mprpc__zk_t *z) {
  if (z->stop)
    return MPRPC_REG_CLOSED;
  if (z->zstate == ZOO_CONNECTED_STATE)
    return MPRPC_REG_HEALTHY;
  if (z->expired)
    return MPRPC_REG_EXPIRED;
  return z->ever_connected ? MPRPC_REG_DISCONNECTED : MPRPC_REG_CONNECTING;
}

/* mu held. When health drops, every subscriber is handed its cached list
 * again with the new health, so consumers know the list may be stale (and
 * keep it: an empty list is never pushed here unless the cache is empty). */
static void update_health(mprpc__zk_t *z) {
  int h = compute_health(z);
  if (h == z->health)
    return;
  MPRPC_LOG_INFO("registry zk://%s: %s -> %s", z->hosts, mprpc_registry_health_name(z->health),
                 mprpc_registry_health_name(h));
  z->health = h;
  if (h == MPRPC_REG_HEALTHY || h == MPRPC_REG_CLOSED)
    return; /* fresh lists follow from the refresh */
  mprpc__zk_svcs_redeliver(z, h);
}

/* Runs on ZooKeeper's threads: record, wake the worker, nothing else. */
void mprpc__zk_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
  mprpc__zk_t *z = ctx;
  pthread_mutex_lock(&z->mu);
  if (zh != z->zh || z->stop)
    goto out;
  if (type == ZOO_SESSION_EVENT) {
    z->zstate = state;
    if (state == ZOO_CONNECTED_STATE) {
      const clientid_t *cid = zoo_client_id(zh);
      if (cid && cid->client_id != z->session_id)
        MPRPC_LOG_INFO("registry zk://%s: session 0x%" PRIx64 " established", z->hosts,
                       (uint64_t)cid->client_id);
      z->session_id = cid ? cid->client_id : 0;
      z->ever_connected = true;
      z->expired = false;
      /* Re-verify everything on every (re)connect: watches may have been
       * missed and a create's reply may have been lost. */
      mprpc__zk_svcs_mark_all(z);
      mprpc__zk_regs_unverify(z);
    } else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
      MPRPC_LOG_WARN("registry zk://%s: session 0x%" PRIx64 " %s; opening a new one", z->hosts,
                     (uint64_t)z->session_id,
                     state == ZOO_AUTH_FAILED_STATE ? "failed authentication" : "expired");
      z->expired = true;
    }
  } else if (path) {
    mprpc__zk_svcs_mark_path(z, path);
  }
  update_health(z);
  mprpc__zk_wake(z);
out:
  pthread_mutex_unlock(&z->mu);
}

void mprpc__zk_wake(mprpc__zk_t *z) {
  z->kick = true;
  pthread_cond_broadcast(&z->cv);
}

/* --- ZooKeeper operations shared by both sides (worker, mu NOT held) ----- */

int mprpc__zk_ensure_path(zhandle_t *zh, const char *path) {
  struct Stat st;
  int rc = zoo_exists(zh, path, 0, &st);
  if (rc == ZOK)
    return ZOK;
  if (rc != ZNONODE)
    return rc;
  char *tmp = strdup(path);
  if (!tmp)
    return ZSYSTEMERROR;
  for (char *p = tmp + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      rc = zoo_create(zh, tmp, "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
      *p = c;
      if (rc != ZOK && rc != ZNODEEXISTS)
        break;
      rc = ZOK;
      if (!c)
        break;
    }
  }
  free(tmp);
  return rc;
}

bool mprpc__zk_conn_error(int rc) {
  return rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT || rc == ZSESSIONEXPIRED ||
         rc == ZSESSIONMOVED || rc == ZCLOSING || rc == ZINVALIDSTATE;
}

/* --- the worker --------------------------------------------------------- */

static zhandle_t *new_handle(mprpc__zk_t *z, bool quiet) {
  /* mu held: the first events wait until z->zh is set. */
  errno = 0;
  zhandle_t *zh = zookeeper_init2(z->zk_hosts, mprpc__zk_watcher, z->session_ms, NULL, z, 0, zk_log_cb);
  if (!zh && !quiet) {
    long long now = mono_ms();
    if (now - z->last_init_error_ms > 10000) {
      z->last_init_error_ms = now;
      MPRPC_LOG_ERROR("registry: zookeeper_init(%s) failed: cannot resolve or use the server "
                      "list (%s); retrying",
                      z->hosts, errno ? strerror(errno) : "unknown error");
    }
  }
  return zh;
}

/* "[v6]:port,host:port" -> "v6:port,host:port" (the C client splits host and
 * port at the last ':' and does not understand brackets). */
static char *client_hosts(const char *hosts) {
  char *out = malloc(strlen(hosts) + 1), *o = out;
  if (!out)
    return NULL;
  for (const char *p = hosts; *p; p++)
    if (*p != '[' && *p != ']')
      *o++ = *p;
  *o = '\0';
  return out;
}

static void reopen(mprpc__zk_t *z) {
  pthread_mutex_lock(&z->mu);
  zhandle_t *old = z->zh;
  z->zh = NULL;
  z->zstate = 0;
  pthread_mutex_unlock(&z->mu);
  if (old)
    zookeeper_close(old); /* never under mu: its threads may be in mprpc__zk_watcher() */
  pthread_mutex_lock(&z->mu);
  if (!z->stop)
    z->zh = new_handle(z, false);
  update_health(z);
  pthread_mutex_unlock(&z->mu);
}

/* One pass over pending work while connected. Returns true if something
 * failed and the pass should be retried soon. */
static bool work(mprpc__zk_t *z) {
  zhandle_t *zh = z->zh;
  bool retry = false;
  pthread_mutex_lock(&z->mu);
  int64_t sid = z->session_id;
  pthread_mutex_unlock(&z->mu);
  uint64_t pass = ++z->pass;
  /* unregisters and registrations, then the lists. A pass that stops early
   * (the session changed, the connection is gone) leaves the cache file to
   * the next pass or to close. */
  if (!mprpc__zk_regs_sync(z, zh, sid, pass, &retry) ||
      !mprpc__zk_svcs_sync(z, zh, sid, pass, &retry))
    return true;
  mprpc__zk_cache_save(z);
  return retry;
}

/* A list_services request, on the worker (mu NOT held): the children of
 * <chroot>/mprpc/services. */
static void answer_list(mprpc__zk_t *z) {
  struct String_vector sv = {0};
  char **names = NULL;
  size_t n = 0;
  int zrc = zoo_get_children(z->zh, z->base, 0, &sv);
  int rc = 0;
  if (zrc == ZNONODE) {
    rc = 0; /* nothing registered yet */
  } else if (zrc != ZOK) {
    MPRPC_LOG_WARN("registry: list %s: %s", z->base, zerror(zrc));
    rc = MPRPC_EREGISTRY;
  } else if (sv.count > 0) {
    names = calloc((size_t)sv.count, sizeof *names);
    for (int i = 0; names && i < sv.count; i++) {
      if (!(names[n] = strdup(sv.data[i]))) {
        rc = MPRPC_ENOMEM;
        break;
      }
      n++;
    }
    if (!names)
      rc = MPRPC_ENOMEM;
  }
  if (zrc == ZOK)
    deallocate_String_vector(&sv);
  pthread_mutex_lock(&z->mu);
  if (z->list.abandoned || rc < 0) {
    mprpc_registry_names_free(names, n);
    names = NULL;
    n = 0;
  }
  z->list.rc = rc;
  z->list.names = names;
  z->list.n = n;
  z->list.done = true;
  pthread_cond_broadcast(&z->cv);
  pthread_mutex_unlock(&z->mu);
}

static void *worker_main(void *arg) {
  mprpc__zk_t *z = arg;
  bool retry = false;
  pthread_mutex_lock(&z->mu);
  for (;;) {
    if (!z->kick && !z->stop) {
      struct timespec ts;
      abs_deadline(&ts, retry ? ZK_RETRY_MS : 1000);
      pthread_cond_timedwait(&z->cv, &z->mu, &ts);
    }
    if (z->stop)
      break;
    z->kick = false;
    bool need_reopen = z->expired || !z->zh;
    bool connected = z->zstate == ZOO_CONNECTED_STATE;
    bool list = z->list.busy && !z->list.done;
    pthread_mutex_unlock(&z->mu);
    retry = false;
    if (need_reopen) {
      reopen(z);
      retry = true;
    } else if (connected) {
      retry = work(z);
      if (list)
        answer_list(z);
    }
    pthread_mutex_lock(&z->mu);
  }
  pthread_mutex_unlock(&z->mu);
  return NULL;
}

/* --- ops ---------------------------------------------------------------- */

static int zr_health(void *ctx) {
  mprpc__zk_t *z = ctx;
  pthread_mutex_lock(&z->mu);
  int h = z->health;
  pthread_mutex_unlock(&z->mu);
  return h;
}

static void zk_free(mprpc__zk_t *z) {
  mprpc__reg_subs_destroy(&z->subs);
  mprpc__zk_regs_free(z);
  mprpc__zk_svcs_free(z);
  pthread_cond_destroy(&z->cv);
  pthread_mutex_destroy(&z->mu);
  free(z->hosts);
  free(z->zk_hosts);
  free(z->base);
  free(z->cache_path);
  free(z);
}

static void zr_close(void *ctx) {
  mprpc__zk_t *z = ctx;
  if (!z)
    return;
  pthread_mutex_lock(&z->mu);
  z->stop = true;
  z->health = MPRPC_REG_CLOSED;
  pthread_cond_broadcast(&z->cv);
  pthread_mutex_unlock(&z->mu);
  if (z->worker_started)
    pthread_join(z->worker, NULL);
  pthread_mutex_lock(&z->mu);
  zhandle_t *zh = z->zh;
  z->zh = NULL;
  pthread_mutex_unlock(&z->mu);
  /* Closing the session removes every ephemeral node it owns at once:
   * that is the unregister-everything of close(). */
  if (zh)
    zookeeper_close(zh);
  mprpc__zk_cache_save(z);
  zk_free(z);
}

/* Asks the worker (the only thread that uses the handle without mu) and
 * waits for its answer up to the connect timeout (at least 1 s). */
static int zr_list_services(void *ctx, char ***names, size_t *n) {
  mprpc__zk_t *z = ctx;
  int rc = MPRPC_EREGISTRY;
  struct timespec ts;
  abs_deadline(&ts, z->connect_ms > 1000 ? z->connect_ms : 1000);
  pthread_mutex_lock(&z->mu);
  while (z->list.busy && !z->stop)
    if (pthread_cond_timedwait(&z->cv, &z->mu, &ts) != 0)
      goto out;
  if (z->stop)
    goto out;
  z->list.busy = true;
  z->list.done = z->list.abandoned = false;
  mprpc__zk_wake(z);
  while (!z->list.done && !z->stop)
    if (pthread_cond_timedwait(&z->cv, &z->mu, &ts) != 0)
      break;
  if (z->list.done) {
    rc = z->list.rc;
    *names = z->list.names;
    *n = z->list.n;
    z->list.names = NULL;
    z->list.n = 0;
    z->list.busy = false;
  } else {
    /* a late answer is freed by the worker, or taken by the next request
     * (it is as fresh as any) */
    z->list.abandoned = true;
    z->list.busy = false;
  }
  pthread_cond_broadcast(&z->cv);
out:
  pthread_mutex_unlock(&z->mu);
  return rc;
}

static const mprpc_registry_ops_t zk_ops = {
    .register_instance = mprpc__zk_register,
    .unregister_instance = mprpc__zk_unregister,
    .subscribe = mprpc__zk_subscribe,
    .unsubscribe = mprpc__zk_unsubscribe,
    .health = zr_health,
    .close = zr_close,
    .list_services = zr_list_services,
};

int mprpc__zk_session(mprpc_registry_t r, int64_t *session_id, char passwd[16]) {
  if (r.vt != &zk_ops)
    return MPRPC_EINVAL;
  mprpc__zk_t *z = r.ctx;
  int rc = MPRPC_ENOTCONN;
  pthread_mutex_lock(&z->mu);
  if (z->zh && z->zstate == ZOO_CONNECTED_STATE) {
    const clientid_t *cid = zoo_client_id(z->zh);
    *session_id = cid->client_id;
    memcpy(passwd, cid->passwd, 16);
    rc = 0;
  }
  pthread_mutex_unlock(&z->mu);
  return rc;
}

/* --- open --------------------------------------------------------------- */

static int check_hosts(const char *hosts, char *err, size_t errlen) {
  const char *p = hosts;
  int idx = 0;
  for (;;) {
    idx++;
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    char host[MPRPC__REG_MAX_HOST], e[200];
    uint16_t port;
    if (n == 0) {
      snprintf(err, errlen, "ZooKeeper server %d is empty", idx);
      return MPRPC_EINVAL;
    }
    if (mprpc__reg_parse_hostport(p, n, host, sizeof host, &port, e, sizeof e)) {
      snprintf(err, errlen, "ZooKeeper server %d: %s", idx, e);
      return MPRPC_EINVAL;
    }
    if (!comma)
      return 0;
    p = comma + 1;
  }
}

int mprpc__zk_open(const char *hosts, const char *chroot, const mprpc__reg_kv_t *opts,
                   size_t nopts, mprpc_registry_t *out, char *err, size_t errlen) {
  uint64_t session_ms = ZK_DEFAULT_SESSION_MS, connect_ms = ZK_DEFAULT_CONNECT_MS, wait = 1;
  const char *cache = NULL;
  for (size_t i = 0; i < nopts; i++) {
    const char *k = opts[i].key, *v = opts[i].value;
    int rc = 0;
    if (strcmp(k, "session_timeout") == 0 || strcmp(k, "session_timeout_ms") == 0)
      rc = mprpc__reg_opt_uint("zk://", k, v, 1000, 600000, &session_ms, err, errlen);
    else if (strcmp(k, "connect_timeout") == 0 || strcmp(k, "connect_timeout_ms") == 0)
      rc = mprpc__reg_opt_uint("zk://", k, v, 0, 600000, &connect_ms, err, errlen);
    else if (strcmp(k, "wait") == 0)
      rc = mprpc__reg_opt_uint("zk://", k, v, 0, 1, &wait, err, errlen);
    else if (strcmp(k, "cache") == 0 || strcmp(k, "registry_cache") == 0) {
      if (!*v) {
        snprintf(err, errlen, "zk:// option %s needs a path", k);
        return MPRPC_EINVAL;
      }
      cache = v;
    } else {
      snprintf(err, errlen,
               "unknown zk:// option '%s' (known: session_timeout, connect_timeout, wait, cache)",
               k);
      return MPRPC_EINVAL;
    }
    if (rc)
      return rc;
  }
  int rc = check_hosts(hosts, err, errlen);
  if (rc)
    return rc;
  size_t cl = strlen(chroot);
  while (cl > 0 && chroot[cl - 1] == '/')
    cl--;
  if (cl > 0 && (strstr(chroot, "//") || chroot[0] != '/')) {
    snprintf(err, errlen, "bad chroot '%s'", chroot);
    return MPRPC_EINVAL;
  }
  pthread_once(&zk_log_once, zk_log_setup);

  mprpc__zk_t *z = calloc(1, sizeof *z);
  if (!z)
    return MPRPC_ENOMEM;
  z->hosts = strdup(hosts);
  z->zk_hosts = client_hosts(hosts);
  z->base = malloc(cl + 32);
  z->cache_path = cache ? strdup(cache) : NULL;
  z->session_ms = (int)session_ms;
  z->connect_ms = (int)connect_ms;
  z->wait = wait != 0;
  z->health = MPRPC_REG_CONNECTING;
  pthread_mutex_init(&z->mu, NULL);
  pthread_cond_init(&z->cv, NULL);
  if (!z->hosts || !z->zk_hosts || !z->base || (cache && !z->cache_path) ||
      mprpc__reg_subs_init(&z->subs)) {
    free(z->hosts);
    free(z->zk_hosts);
    free(z->base);
    free(z->cache_path);
    pthread_cond_destroy(&z->cv);
    pthread_mutex_destroy(&z->mu);
    free(z);
    return MPRPC_ENOMEM;
  }
  snprintf(z->base, cl + 32, "%.*s/mprpc/services", (int)cl, chroot);
  if (z->cache_path)
    mprpc__zk_cache_load(z);

  pthread_mutex_lock(&z->mu);
  z->zh = new_handle(z, true);
  if (!z->zh) {
    int e = errno;
    pthread_mutex_unlock(&z->mu);
    snprintf(err, errlen, "zookeeper_init(%s) failed: cannot resolve or use the server list (%s)",
             hosts, e ? strerror(e) : "unknown error");
    rc = MPRPC_EREGISTRY;
    goto fail;
  }
  if (z->wait && z->connect_ms > 0) {
    struct timespec ts;
    abs_deadline(&ts, z->connect_ms);
    while (z->zstate != ZOO_CONNECTED_STATE && !z->expired) {
      if (pthread_cond_timedwait(&z->cv, &z->mu, &ts) != 0)
        break;
    }
    if (z->zstate != ZOO_CONNECTED_STATE) {
      if (!mprpc__zk_cache_loaded(z)) {
        pthread_mutex_unlock(&z->mu);
        snprintf(err, errlen,
                 "no ZooKeeper session within %d ms from %s (is ZooKeeper running there? "
                 "add ?wait=0 to start anyway and register once it is reachable)",
                 z->connect_ms, hosts);
        rc = MPRPC_EREGISTRY;
        goto fail;
      }
      MPRPC_LOG_WARN("registry zk://%s: ZooKeeper unreachable after %d ms; starting from the "
                     "cache file %s (lists may be stale)",
                     hosts, z->connect_ms, z->cache_path);
    }
  }
  pthread_mutex_unlock(&z->mu);
  if (pthread_create(&z->worker, NULL, worker_main, z)) {
    snprintf(err, errlen, "cannot start the ZooKeeper worker thread");
    rc = MPRPC_EREGISTRY;
    goto fail;
  }
  z->worker_started = true;
  out->vt = &zk_ops;
  out->ctx = z;
  return 0;
fail:
  pthread_mutex_lock(&z->mu);
  zhandle_t *zh = z->zh;
  z->zh = NULL;
  z->stop = true;
  pthread_mutex_unlock(&z->mu);
  if (zh)
    zookeeper_close(zh);
  zk_free(z);
  return rc;
}
