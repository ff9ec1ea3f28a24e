/*
 * zk://host:port[,host:port...][/chroot][?options]: ZooKeeper registry.
 *
 * Layout (docs/registry.md): persistent <chroot>/mprpc/services/<service>/
 * providers, one EPHEMERAL child per instance named host:port whose data is
 * key=value lines (address, weight, methods, version, start_time_ms, pid,
 * hostname).
 *
 * Threads. ZooKeeper's own threads (I/O and completion) only run watcher(),
 * which records what happened under the registry mutex, posts cached lists
 * to subscribers when health drops, and wakes the worker. One worker thread
 * per registry does every ZooKeeper call with the synchronous API: it
 * (re)creates this registry's ephemeral nodes, refreshes the lists of
 * subscribed services (re-arming the children watch each time), and opens a
 * new session when the old one expired. User callbacks only ever run on the
 * subscriber's loop (posted through the subscriber table), never on a
 * ZooKeeper thread or on the worker. The mutex is never held across a
 * ZooKeeper call, so watcher() can always make progress.
 *
 * Registrations. Each registration is "desired state": the worker makes the
 * node exist, with our data, owned by the current session (stat's
 * ephemeralOwner == our session id). On every (re)connect every
 * registration is re-verified, which resolves a create whose reply was lost
 * (the node is found, and it is ours) and replaces a node left by an older
 * session of the same address (deleted, then created again).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "registry/internal.h"
#include "registry/zk_internal.h"

#define ZK_DEFAULT_SESSION_MS 10000
#define ZK_DEFAULT_CONNECT_MS 5000
#define ZK_RETRY_MS 250

typedef struct zk_entry {
  mprpc_instance_t inst; /* owned */
  char *path;
  char *data;
  uint64_t gen; /* bumped when the data changes */
  bool ok;      /* verified present and ours in the current session */
  uint64_t tried; /* the work pass that last tried it */
  int last_rc;    /* last failure, to log a failure once, not every retry */
  struct zk_entry *next;
} zk_entry_t;

typedef struct zk_del {
  char *path;
  struct zk_del *next;
} zk_del_t;

typedef struct zk_svc {
  char *name;
  char *path; /* .../providers */
  bool dirty;
  bool fetched;    /* cache came from ZooKeeper (some session) */
  bool from_file;  /* cache came from the cache file and was not refreshed yet */
  uint64_t tried;
  int last_rc;
  mprpc__reg_list_t cache;
  struct zk_svc *next;
} zk_svc_t;

typedef struct zk_reg {
  char *hosts;    /* as in the URI, for messages */
  char *zk_hosts; /* as the C client wants it: IPv6 without brackets */
  char *base; /* <chroot>/mprpc/services */
  int session_ms;
  int connect_ms;
  bool wait;
  char *cache_path;
  mprpc__reg_subs_t subs;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* mu: */
  zhandle_t *zh; /* written under mu by open/worker; the worker reads it freely */
  int zstate;    /* last session state from the watcher; 0 before any */
  bool expired;  /* the session expired; cleared when a new one connects */
  bool ever_connected;
  int64_t session_id;
  int health;
  bool stop, kick;
  uint64_t next_gen;
  zk_entry_t *regs;
  zk_del_t *dels;
  zk_svc_t *svcs;
  bool cache_dirty;
  /* worker: */
  uint64_t pass;
  bool worker_started;
  pthread_t worker;
  long long last_init_error_ms;
} zk_reg_t;

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
static int compute_health(const zk_reg_t *z) {
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
static void update_health(zk_reg_t *z) {
  int h = compute_health(z);
  if (h == z->health)
    return;
  MPRPC_LOG_INFO("registry zk://%s: %s -> %s", z->hosts, mprpc_registry_health_name(z->health),
                 mprpc_registry_health_name(h));
  z->health = h;
  if (h == MPRPC_REG_HEALTHY || h == MPRPC_REG_CLOSED)
    return; /* fresh lists follow from the refresh */
  for (zk_svc_t *s = z->svcs; s; s = s->next)
    if (s->fetched || s->from_file)
      mprpc__reg_subs_deliver(&z->subs, s->name, &s->cache, false, h);
}

static zk_svc_t *find_svc_by_path(zk_reg_t *z, const char *path) {
  for (zk_svc_t *s = z->svcs; s; s = s->next)
    if (strcmp(s->path, path) == 0)
      return s;
  return NULL;
}

static zk_svc_t *find_svc(zk_reg_t *z, const char *name) {
  for (zk_svc_t *s = z->svcs; s; s = s->next)
    if (strcmp(s->name, name) == 0)
      return s;
  return NULL;
}

static zk_svc_t *add_svc(zk_reg_t *z, const char *name) {
  zk_svc_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  size_t n = strlen(z->base) + strlen(name) + 16;
  s->name = strdup(name);
  s->path = malloc(n);
  if (!s->name || !s->path) {
    free(s->name);
    free(s->path);
    free(s);
    return NULL;
  }
  snprintf(s->path, n, "%s/%s/providers", z->base, name);
  s->next = z->svcs;
  z->svcs = s;
  return s;
}

/* Runs on ZooKeeper's threads: record, wake the worker, nothing else. */
static void watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
  zk_reg_t *z = ctx;
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
      for (zk_svc_t *s = z->svcs; s; s = s->next)
        s->dirty = true;
      for (zk_entry_t *e = z->regs; e; e = e->next)
        e->ok = false;
    } else if (state == ZOO_EXPIRED_SESSION_STATE || state == ZOO_AUTH_FAILED_STATE) {
      MPRPC_LOG_WARN("registry zk://%s: session 0x%" PRIx64 " %s; opening a new one", z->hosts,
                     (uint64_t)z->session_id,
                     state == ZOO_AUTH_FAILED_STATE ? "failed authentication" : "expired");
      z->expired = true;
    }
  } else if (path) {
    /* a children event names .../providers; a data or deletion event of
     * one provider names .../providers/<host:port> */
    zk_svc_t *s = find_svc_by_path(z, path);
    const char *slash = strrchr(path, '/');
    if (!s && slash && slash != path) {
      char parent[1024];
      size_t n = (size_t)(slash - path);
      if (n < sizeof parent) {
        memcpy(parent, path, n);
        parent[n] = '\0';
        s = find_svc_by_path(z, parent);
      }
    }
    if (s)
      s->dirty = true;
  }
  update_health(z);
  z->kick = true;
  pthread_cond_broadcast(&z->cv);
out:
  pthread_mutex_unlock(&z->mu);
}

/* --- ZooKeeper operations (worker thread, mu NOT held) ------------------ */

/* Creates path and its ancestors as persistent nodes. */
static int ensure_path(zhandle_t *zh, const char *path) {
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

static int parent_of(const char *path, char *out, size_t len) {
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path || (size_t)(slash - path) >= len)
    return -1;
  memcpy(out, path, (size_t)(slash - path));
  out[slash - path] = '\0';
  return 0;
}

/* Rewrites a node's data only when it differs: every write fires the data
 * watches of every consumer. */
static int set_if_different(zhandle_t *zh, const char *path, const char *data, int len) {
  char *cur = malloc((size_t)len + 2);
  if (!cur)
    return ZSYSTEMERROR;
  int clen = len + 1;
  struct Stat st;
  int rc = zoo_get(zh, path, 0, cur, &clen, &st);
  bool same = rc == ZOK && clen == len && memcmp(cur, data, (size_t)len) == 0;
  free(cur);
  if (rc != ZOK)
    return rc;
  return same ? ZOK : zoo_set(zh, path, data, len, st.version);
}

/* Makes `path` exist with `data`, owned by session sid. */
static int ensure_node(zk_reg_t *z, zhandle_t *zh, const char *path, const char *data,
                       int64_t sid) {
  int len = (int)strlen(data);
  int rc = ZNODEEXISTS;
  for (int attempt = 0; attempt < 4; attempt++) {
    struct Stat st;
    rc = zoo_exists(zh, path, 0, &st);
    if (rc == ZOK) {
      if (st.ephemeralOwner == sid)
        return set_if_different(zh, path, data, len); /* ours (maybe from a lost reply) */
      MPRPC_LOG_WARN("registry zk://%s: %s is owned by session 0x%" PRIx64
                     " (ours 0x%" PRIx64 "): deleting and re-creating it",
                     z->hosts, path, (uint64_t)st.ephemeralOwner, (uint64_t)sid);
      rc = zoo_delete(zh, path, st.version);
      if (rc != ZOK && rc != ZNONODE && rc != ZBADVERSION)
        return rc;
      continue;
    }
    if (rc != ZNONODE)
      return rc;
    char parent[1024];
    if (parent_of(path, parent, sizeof parent) == 0 && (rc = ensure_path(zh, parent)) != ZOK)
      return rc;
    rc = zoo_create(zh, path, data, len, &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL, NULL, 0);
    if (rc == ZOK)
      return ZOK;
    if (rc != ZNODEEXISTS)
      return rc; /* e.g. connection loss: the next pass checks exists + owner */
  }
  return rc;
}

/* Deletes path if this session owns it. */
static int delete_if_ours(zhandle_t *zh, const char *path, int64_t sid) {
  struct Stat st;
  int rc = zoo_exists(zh, path, 0, &st);
  if (rc == ZNONODE)
    return ZOK;
  if (rc != ZOK)
    return rc;
  if (st.ephemeralOwner != sid)
    return ZOK; /* someone else's now: leave it */
  rc = zoo_delete(zh, path, st.version);
  return rc == ZNONODE || rc == ZBADVERSION ? ZOK : rc;
}

static int fetch_list(zk_reg_t *z, zhandle_t *zh, const char *service, const char *path,
                      mprpc__reg_list_t *out) {
  struct String_vector ch = {0, NULL};
  int rc = zoo_wget_children(zh, path, watcher, z, &ch);
  if (rc == ZNONODE) {
    rc = ensure_path(zh, path);
    if (rc == ZOK)
      rc = zoo_wget_children(zh, path, watcher, z, &ch);
  }
  if (rc != ZOK)
    return rc;
  int cap = 1024;
  char *buf = malloc((size_t)cap + 1);
  char *cp = malloc(strlen(path) + 512);
  if (!buf || !cp) {
    rc = ZSYSTEMERROR;
    goto done;
  }
  for (int32_t i = 0; i < ch.count; i++) {
    if (strlen(ch.data[i]) > 400)
      continue;
    sprintf(cp, "%s/%s", path, ch.data[i]);
    struct Stat st;
    int len = cap;
    /* a data watch too: a provider re-registering with a new weight or
     * version changes the data, not the children */
    rc = zoo_wget(zh, cp, watcher, z, buf, &len, &st);
    if (rc == ZOK && st.dataLength > cap && st.dataLength <= 1 << 20) {
      char *nb = realloc(buf, (size_t)st.dataLength + 1);
      if (!nb) {
        rc = ZSYSTEMERROR;
        goto done;
      }
      buf = nb;
      cap = st.dataLength;
      len = cap;
      rc = zoo_wget(zh, cp, watcher, z, buf, &len, &st);
    }
    if (rc == ZNONODE) {
      rc = ZOK; /* gone between the listing and the read; the watch will tell */
      continue;
    }
    if (rc != ZOK)
      goto done;
    buf[len > 0 ? len : 0] = '\0';
    if (mprpc__zk_data_parse(service, ch.data[i], buf, out)) {
      rc = ZSYSTEMERROR;
      goto done;
    }
  }
  mprpc__reg_list_sort(out);
done:
  free(buf);
  free(cp);
  deallocate_String_vector(&ch);
  if (rc != ZOK)
    mprpc__reg_list_clear(out);
  return rc;
}

/* --- the cache file ----------------------------------------------------- */

static void save_cache(zk_reg_t *z) {
  pthread_mutex_lock(&z->mu);
  if (!z->cache_path || !z->cache_dirty) {
    pthread_mutex_unlock(&z->mu);
    return;
  }
  z->cache_dirty = false;
  size_t cap = 256, n = 0;
  char *text = malloc(cap);
  char line[MPRPC__REG_MAX_META * 3];
  int hn = text ? snprintf(text, cap, "# mprpc ZooKeeper consumer cache for zk://%s\n",
                           z->hosts)
                : -1;
  bool oom = !text || hn < 0 || (size_t)hn >= cap;
  if (!oom)
    n = (size_t)hn;
  for (zk_svc_t *s = z->svcs; s && !oom; s = s->next) {
    if (!s->fetched && !s->from_file)
      continue;
    for (size_t i = 0; i < s->cache.n && !oom; i++) {
      int k = mprpc__reg_format_line(&s->cache.items[i], line, sizeof line);
      if (k < 0 || (size_t)k >= sizeof line)
        continue;
      if (n + (size_t)k + 1 > cap) {
        size_t nc = (cap + (size_t)k) * 2;
        char *nt = realloc(text, nc);
        if (!nt) {
          oom = true;
          break;
        }
        text = nt;
        cap = nc;
      }
      memcpy(text + n, line, (size_t)k);
      n += (size_t)k;
    }
  }
  char *path = oom ? NULL : strdup(z->cache_path);
  pthread_mutex_unlock(&z->mu);
  if (path) {
    int rc = mprpc__reg_write_file_atomic(path, text, n);
    if (rc)
      MPRPC_LOG_WARN("registry: cannot write the cache file %s: %s", path, mprpc_strerror(rc));
  }
  free(path);
  free(text);
}

static void load_cache(zk_reg_t *z) {
  char *text = NULL, err[400];
  int rc = mprpc__reg_read_file(z->cache_path, &text, NULL);
  if (rc == MPRPC_ENOENT)
    return;
  if (rc) {
    MPRPC_LOG_WARN("registry: cannot read the cache file %s: %s", z->cache_path,
                   mprpc_strerror(rc));
    return;
  }
  mprpc__reg_list_t all = {0};
  rc = mprpc__reg_parse_text(text, z->cache_path, &all, err, sizeof err);
  free(text);
  if (rc) {
    MPRPC_LOG_WARN("registry: ignoring the cache file: %s", err);
    return;
  }
  for (size_t i = 0; i < all.n; i++) {
    zk_svc_t *s = find_svc(z, all.items[i].service);
    if (!s && !(s = add_svc(z, all.items[i].service)))
      break;
    s->from_file = true;
    mprpc__reg_list_add(&s->cache, &all.items[i]);
  }
  mprpc__reg_list_clear(&all);
}

/* --- the worker --------------------------------------------------------- */

static zhandle_t *new_handle(zk_reg_t *z, bool quiet) {
  /* mu held: the first events wait until z->zh is set. */
  errno = 0;
  zhandle_t *zh = zookeeper_init2(z->zk_hosts, watcher, z->session_ms, NULL, z, 0, zk_log_cb);
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

static void reopen(zk_reg_t *z) {
  pthread_mutex_lock(&z->mu);
  zhandle_t *old = z->zh;
  z->zh = NULL;
  z->zstate = 0;
  pthread_mutex_unlock(&z->mu);
  if (old)
    zookeeper_close(old); /* never under mu: its threads may be in watcher() */
  pthread_mutex_lock(&z->mu);
  if (!z->stop)
    z->zh = new_handle(z, false);
  update_health(z);
  pthread_mutex_unlock(&z->mu);
}

/* Errors after which nothing else can work in this pass. */
static bool conn_error(int rc) {
  return rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT || rc == ZSESSIONEXPIRED ||
         rc == ZSESSIONMOVED || rc == ZCLOSING || rc == ZINVALIDSTATE;
}

/* One pass over pending work while connected. Returns true if something
 * failed and the pass should be retried soon. */
static bool work(zk_reg_t *z) {
  zhandle_t *zh = z->zh;
  bool retry = false;
  pthread_mutex_lock(&z->mu);
  int64_t sid = z->session_id;
  zk_del_t *dels = z->dels;
  z->dels = NULL;
  pthread_mutex_unlock(&z->mu);

  /* 1. graceful unregisters */
  while (dels) {
    zk_del_t *d = dels;
    dels = d->next;
    int rc = delete_if_ours(zh, d->path, sid);
    if (rc == ZOK) {
      MPRPC_LOG_INFO("registry zk://%s: removed %s", z->hosts, d->path);
      free(d->path);
      free(d);
    } else {
      retry = true;
      pthread_mutex_lock(&z->mu);
      d->next = z->dels;
      z->dels = d;
      pthread_mutex_unlock(&z->mu);
    }
  }

  /* 2. registrations not yet verified in this session; each is tried once
   * per pass, so one that keeps failing (say, no permission on its path)
   * does not hold up the others or the subscriptions */
  uint64_t pass = ++z->pass;
  for (int guard = 0; guard < 100000; guard++) {
    pthread_mutex_lock(&z->mu);
    if (z->session_id != sid || z->zstate != ZOO_CONNECTED_STATE || z->stop) {
      pthread_mutex_unlock(&z->mu);
      return true;
    }
    zk_entry_t *e = z->regs;
    while (e && (e->ok || e->tried == pass))
      e = e->next;
    if (e)
      e->tried = pass;
    char *path = e ? strdup(e->path) : NULL;
    char *data = e ? strdup(e->data) : NULL;
    uint64_t gen = e ? e->gen : 0;
    pthread_mutex_unlock(&z->mu);
    if (!e)
      break;
    int rc = path && data ? ensure_node(z, zh, path, data, sid) : ZSYSTEMERROR;
    bool log_failure = false;
    pthread_mutex_lock(&z->mu);
    for (zk_entry_t *x = z->regs; x; x = x->next) {
      if (x->gen != gen)
        continue;
      if (rc == ZOK && z->session_id == sid)
        x->ok = true;
      log_failure = rc != ZOK && rc != x->last_rc;
      x->last_rc = rc;
    }
    pthread_mutex_unlock(&z->mu);
    if (rc == ZOK)
      MPRPC_LOG_INFO("registry zk://%s: registered %s", z->hosts, path);
    else if (log_failure)
      MPRPC_LOG_WARN("registry zk://%s: registering %s: %s (will retry)", z->hosts, path,
                     zerror(rc));
    free(path);
    free(data);
    if (rc != ZOK) {
      retry = true;
      if (conn_error(rc))
        return true;
    }
  }

  /* 3. subscribed services whose list may have changed */
  for (int guard = 0; guard < 100000; guard++) {
    pthread_mutex_lock(&z->mu);
    if (z->session_id != sid || z->zstate != ZOO_CONNECTED_STATE || z->stop) {
      pthread_mutex_unlock(&z->mu);
      return true;
    }
    zk_svc_t *s = z->svcs;
    while (s && (!s->dirty || s->tried == pass))
      s = s->next;
    char *name = s ? strdup(s->name) : NULL;
    char *path = s ? strdup(s->path) : NULL;
    if (s) {
      s->dirty = false; /* a watch firing from here on marks it again */
      s->tried = pass;
    }
    pthread_mutex_unlock(&z->mu);
    if (!s)
      break;
    mprpc__reg_list_t list = {0};
    int rc = name && path ? fetch_list(z, zh, name, path, &list) : ZSYSTEMERROR;
    bool log_failure = false;
    pthread_mutex_lock(&z->mu);
    s = find_svc(z, name ? name : "");
    if (rc == ZOK && s) {
      bool changed = !s->fetched || s->from_file || !mprpc__reg_list_equal(&s->cache, &list);
      mprpc__reg_list_clear(&s->cache);
      s->cache = list;
      s->fetched = true;
      s->from_file = false;
      s->last_rc = ZOK;
      if (changed)
        z->cache_dirty = true;
      /* Authoritative only if the session is still up. */
      mprpc__reg_subs_deliver(&z->subs, s->name, &s->cache, false,
                              z->zstate == ZOO_CONNECTED_STATE && z->session_id == sid
                                  ? MPRPC_REG_HEALTHY
                                  : z->health);
    } else {
      mprpc__reg_list_clear(&list);
      if (s) {
        s->dirty = true;
        log_failure = rc != s->last_rc;
        s->last_rc = rc;
      }
    }
    pthread_mutex_unlock(&z->mu);
    if (rc != ZOK && log_failure)
      MPRPC_LOG_WARN("registry zk://%s: listing %s: %s (will retry)", z->hosts,
                     path ? path : "?", zerror(rc));
    free(name);
    free(path);
    if (rc != ZOK) {
      retry = true;
      if (conn_error(rc))
        return true;
    }
  }
  save_cache(z);
  return retry;
}

static void *worker_main(void *arg) {
  zk_reg_t *z = arg;
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
    pthread_mutex_unlock(&z->mu);
    retry = false;
    if (need_reopen) {
      reopen(z);
      retry = true;
    } else if (connected) {
      retry = work(z);
    }
    pthread_mutex_lock(&z->mu);
  }
  pthread_mutex_unlock(&z->mu);
  return NULL;
}

/* --- ops ---------------------------------------------------------------- */

static int zr_register(void *ctx, const mprpc_instance_t *inst) {
  zk_reg_t *z = ctx;
  char e[200];
  int rc = mprpc__reg_instance_check(inst, e, sizeof e);
  if (rc) {
    MPRPC_LOG_WARN("registry zk://%s: register: %s", z->hosts, e);
    return rc;
  }
  char addr[MPRPC__REG_MAX_HOST + 16];
  mprpc__reg_format_hostport(inst->host, inst->port, addr, sizeof addr);
  size_t plen = strlen(z->base) + strlen(inst->service) + strlen(addr) + 32;
  zk_entry_t *n = calloc(1, sizeof *n);
  if (!n)
    return MPRPC_ENOMEM;
  n->path = malloc(plen);
  n->data = mprpc__zk_data_format(inst);
  if (!n->path || !n->data || mprpc__reg_instance_dup(&n->inst, inst)) {
    free(n->path);
    free(n->data);
    free(n);
    return MPRPC_ENOMEM;
  }
  snprintf(n->path, plen, "%s/%s/providers/%s", z->base, inst->service, addr);
  pthread_mutex_lock(&z->mu);
  if (z->stop) {
    pthread_mutex_unlock(&z->mu);
    mprpc__reg_instance_free(&n->inst);
    free(n->path);
    free(n->data);
    free(n);
    return MPRPC_ESTATE;
  }
  n->gen = ++z->next_gen;
  /* replace an existing registration of the same address */
  for (zk_entry_t **pp = &z->regs; *pp; pp = &(*pp)->next) {
    if (strcmp((*pp)->path, n->path) == 0) {
      zk_entry_t *old = *pp;
      *pp = old->next;
      mprpc__reg_instance_free(&old->inst);
      free(old->path);
      free(old->data);
      free(old);
      break;
    }
  }
  /* and cancel a pending delete of it */
  for (zk_del_t **pp = &z->dels; *pp;) {
    if (strcmp((*pp)->path, n->path) == 0) {
      zk_del_t *d = *pp;
      *pp = d->next;
      free(d->path);
      free(d);
    } else {
      pp = &(*pp)->next;
    }
  }
  n->next = z->regs;
  z->regs = n;
  z->kick = true;
  pthread_cond_broadcast(&z->cv);
  pthread_mutex_unlock(&z->mu);
  return 0;
}

static int zr_unregister(void *ctx, const char *service, const char *host, uint16_t port) {
  zk_reg_t *z = ctx;
  if (!service || !host)
    return MPRPC_EINVAL;
  char addr[MPRPC__REG_MAX_HOST + 16];
  mprpc__reg_format_hostport(host, port, addr, sizeof addr);
  int rc = MPRPC_ENOTFOUND;
  pthread_mutex_lock(&z->mu);
  for (zk_entry_t **pp = &z->regs; *pp; pp = &(*pp)->next) {
    zk_entry_t *e = *pp;
    if (e->inst.port == port && strcmp(e->inst.service, service) == 0 &&
        strcmp(e->inst.host, host) == 0) {
      *pp = e->next;
      zk_del_t *d = calloc(1, sizeof *d);
      if (d) {
        d->path = e->path;
        e->path = NULL;
        d->next = z->dels;
        z->dels = d;
      }
      mprpc__reg_instance_free(&e->inst);
      free(e->path);
      free(e->data);
      free(e);
      rc = d ? 0 : MPRPC_ENOMEM;
      break;
    }
  }
  z->kick = true;
  pthread_cond_broadcast(&z->cv);
  pthread_mutex_unlock(&z->mu);
  return rc;
}

static int zr_subscribe(void *ctx, const char *service, mprpc_loop_t loop,
                        mprpc_registry_watch_cb cb, void *ud, uint64_t *sub_id) {
  zk_reg_t *z = ctx;
  if (!service || !*service || !cb || !sub_id || !loop.vt || strchr(service, '/') ||
      strlen(service) >= MPRPC__REG_MAX_NAME)
    return MPRPC_EINVAL;
  pthread_mutex_lock(&z->mu);
  int rc = MPRPC_ESTATE;
  if (z->stop)
    goto out;
  zk_svc_t *s = find_svc(z, service);
  rc = MPRPC_ENOMEM;
  if (!s && !(s = add_svc(z, service)))
    goto out;
  if ((rc = mprpc__reg_subs_add(&z->subs, service, loop, cb, ud, sub_id)) != 0)
    goto out;
  if (s->fetched) {
    mprpc__reg_subs_deliver_one(&z->subs, *sub_id, &s->cache, false, z->health);
  } else if (s->from_file && z->health != MPRPC_REG_HEALTHY) {
    MPRPC_LOG_WARN("registry zk://%s: not connected; serving %zu cached endpoint(s) of %s from "
                   "the cache file %s",
                   z->hosts, s->cache.n, service, z->cache_path);
    mprpc__reg_subs_deliver_one(&z->subs, *sub_id, &s->cache, false, z->health);
  }
  if (!s->fetched || s->from_file) {
    s->dirty = true;
    z->kick = true;
    pthread_cond_broadcast(&z->cv);
  }
out:
  pthread_mutex_unlock(&z->mu);
  return rc;
}

static void zr_unsubscribe(void *ctx, uint64_t id) {
  zk_reg_t *z = ctx;
  mprpc__reg_subs_remove(&z->subs, id);
}

static int zr_health(void *ctx) {
  zk_reg_t *z = ctx;
  pthread_mutex_lock(&z->mu);
  int h = z->health;
  pthread_mutex_unlock(&z->mu);
  return h;
}

static void zk_free(zk_reg_t *z) {
  mprpc__reg_subs_destroy(&z->subs);
  while (z->regs) {
    zk_entry_t *e = z->regs;
    z->regs = e->next;
    mprpc__reg_instance_free(&e->inst);
    free(e->path);
    free(e->data);
    free(e);
  }
  while (z->dels) {
    zk_del_t *d = z->dels;
    z->dels = d->next;
    free(d->path);
    free(d);
  }
  while (z->svcs) {
    zk_svc_t *s = z->svcs;
    z->svcs = s->next;
    mprpc__reg_list_clear(&s->cache);
    free(s->name);
    free(s->path);
    free(s);
  }
  pthread_cond_destroy(&z->cv);
  pthread_mutex_destroy(&z->mu);
  free(z->hosts);
  free(z->zk_hosts);
  free(z->base);
  free(z->cache_path);
  free(z);
}

static void zr_close(void *ctx) {
  zk_reg_t *z = ctx;
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
  save_cache(z);
  zk_free(z);
}

static const mprpc_registry_ops_t zk_ops = {
    .register_instance = zr_register,
    .unregister_instance = zr_unregister,
    .subscribe = zr_subscribe,
    .unsubscribe = zr_unsubscribe,
    .health = zr_health,
    .close = zr_close,
};

int mprpc__zk_session(mprpc_registry_t r, int64_t *session_id, char passwd[16]) {
  if (r.vt != &zk_ops)
    return MPRPC_EINVAL;
  zk_reg_t *z = r.ctx;
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

  zk_reg_t *z = calloc(1, sizeof *z);
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
    load_cache(z);

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
      bool cached = false;
      for (zk_svc_t *s = z->svcs; s; s = s->next)
        cached |= s->from_file;
      if (!cached) {
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
