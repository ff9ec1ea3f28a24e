/*
 * The provider side of the ZooKeeper registry: registrations.
 *
 * Each registration is "desired state": the worker makes the node exist,
 * with our data, owned by the current session (stat's ephemeralOwner == our
 * session id). On every (re)connect every registration is re-verified, which
 * resolves a create whose reply was lost (the node is found, and it is
 * ours) and replaces a node left by an older session of the same address
 * (deleted, then created again). An unregister queues a delete that only
 * removes the node if this session still owns it.
 *
 * register/unregister run on the caller's thread and only record the
 * request under z->mu; mprpc__zk_regs_sync does the ZooKeeper calls on the
 * worker (zk_internal.h has the threading rules).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "registry/zk_internal.h"

struct mprpc__zk_entry {
  mprpc_instance_t inst; /* owned */
  char *path;
  char *data;
  uint64_t gen;   /* bumped when the data changes */
  bool ok;        /* verified present and ours in the current session */
  uint64_t tried; /* the work pass that last tried it */
  int last_rc;    /* last failure, to log a failure once, not every retry */
  unsigned times; /* successful (re)creations, for the log line */
  struct mprpc__zk_entry *next;
};

struct mprpc__zk_del {
  char *path;
  struct mprpc__zk_del *next;
};

static void entry_free(mprpc__zk_entry_t *e) {
  mprpc__reg_instance_free(&e->inst);
  free(e->path);
  free(e->data);
  free(e);
}

/* --- ZooKeeper operations (worker thread, mu NOT held) ------------------ */

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
static int ensure_node(mprpc__zk_t *z, zhandle_t *zh, const char *path, const char *data,
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
    if (parent_of(path, parent, sizeof parent) == 0 &&
        (rc = mprpc__zk_ensure_path(zh, parent)) != ZOK)
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

/* --- the worker's pass ---------------------------------------------------- */

bool mprpc__zk_regs_sync(mprpc__zk_t *z, zhandle_t *zh, int64_t sid, uint64_t pass,
                         bool *retry) {
  pthread_mutex_lock(&z->mu);
  mprpc__zk_del_t *dels = z->dels;
  z->dels = NULL;
  pthread_mutex_unlock(&z->mu);

  /* 1. graceful unregisters */
  while (dels) {
    mprpc__zk_del_t *d = dels;
    dels = d->next;
    int rc = delete_if_ours(zh, d->path, sid);
    if (rc == ZOK) {
      MPRPC_LOG_INFO("registry zk://%s: removed %s", z->hosts, d->path);
      free(d->path);
      free(d);
    } else {
      *retry = true;
      pthread_mutex_lock(&z->mu);
      d->next = z->dels;
      z->dels = d;
      pthread_mutex_unlock(&z->mu);
    }
  }

  /* 2. registrations not yet verified in this session; each is tried once
   * per pass, so one that keeps failing (say, no permission on its path)
   * does not hold up the others or the subscriptions */
  for (int guard = 0; guard < 100000; guard++) {
    pthread_mutex_lock(&z->mu);
    if (z->session_id != sid || z->zstate != ZOO_CONNECTED_STATE || z->stop) {
      pthread_mutex_unlock(&z->mu);
      *retry = true;
      return false;
    }
    mprpc__zk_entry_t *e = z->regs;
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
    unsigned times = 0;
    pthread_mutex_lock(&z->mu);
    /* found again by generation: the entry may have been replaced or
     * unregistered while the lock was dropped */
    for (mprpc__zk_entry_t *x = z->regs; x; x = x->next) {
      if (x->gen != gen)
        continue;
      if (rc == ZOK && z->session_id == sid) {
        x->ok = true;
        times = ++x->times;
      }
      log_failure = rc != ZOK && rc != x->last_rc;
      x->last_rc = rc;
    }
    pthread_mutex_unlock(&z->mu);
    if (rc == ZOK && times) {
      /* <base>/<service>/providers/<host:port>: one line an operator greps */
      const char *addr = strrchr(path, '/');
      const char *svc = path + strlen(z->base) + 1;
      const char *svc_end = strstr(svc, "/providers/");
      MPRPC_LOG_INFO("registry: %s %.*s at %s in zk://%s (session 0x%" PRIx64 ")",
                     times > 1 ? "re-registered" : "registered",
                     svc_end ? (int)(svc_end - svc) : 0, svc, addr ? addr + 1 : path, z->hosts,
                     (uint64_t)sid);
    }
    else if (log_failure)
      MPRPC_LOG_WARN("registry zk://%s: registering %s: %s (will retry)", z->hosts, path,
                     zerror(rc));
    free(path);
    free(data);
    if (rc != ZOK) {
      *retry = true;
      if (mprpc__zk_conn_error(rc))
        return false;
    }
  }
  return true;
}

void mprpc__zk_regs_unverify(mprpc__zk_t *z) {
  for (mprpc__zk_entry_t *e = z->regs; e; e = e->next)
    e->ok = false;
}

/* --- ops ---------------------------------------------------------------- */

int mprpc__zk_register(void *ctx, const mprpc_instance_t *inst) {
  mprpc__zk_t *z = ctx;
  char e[200];
  int rc = mprpc__reg_instance_check(inst, e, sizeof e);
  if (rc) {
    MPRPC_LOG_WARN("registry zk://%s: register: %s", z->hosts, e);
    return rc;
  }
  char addr[MPRPC__REG_MAX_HOST + 16];
  mprpc__reg_format_hostport(inst->host, inst->port, addr, sizeof addr);
  size_t plen = strlen(z->base) + strlen(inst->service) + strlen(addr) + 32;
  mprpc__zk_entry_t *n = calloc(1, sizeof *n);
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
    entry_free(n);
    return MPRPC_ESTATE;
  }
  n->gen = ++z->next_gen;
  /* replace an existing registration of the same address */
  for (mprpc__zk_entry_t **pp = &z->regs; *pp; pp = &(*pp)->next) {
    if (strcmp((*pp)->path, n->path) == 0) {
      mprpc__zk_entry_t *old = *pp;
      *pp = old->next;
      entry_free(old);
      break;
    }
  }
  /* and cancel a pending delete of it */
  for (mprpc__zk_del_t **pp = &z->dels; *pp;) {
    if (strcmp((*pp)->path, n->path) == 0) {
      mprpc__zk_del_t *d = *pp;
      *pp = d->next;
      free(d->path);
      free(d);
    } else {
      pp = &(*pp)->next;
    }
  }
  n->next = z->regs;
  z->regs = n;
  mprpc__zk_wake(z);
  pthread_mutex_unlock(&z->mu);
  return 0;
}

int mprpc__zk_unregister(void *ctx, const char *service, const char *host, uint16_t port) {
  mprpc__zk_t *z = ctx;
  if (!service || !host)
    return MPRPC_EINVAL;
  char addr[MPRPC__REG_MAX_HOST + 16];
  mprpc__reg_format_hostport(host, port, addr, sizeof addr);
  int rc = MPRPC_ENOTFOUND;
  pthread_mutex_lock(&z->mu);
  for (mprpc__zk_entry_t **pp = &z->regs; *pp; pp = &(*pp)->next) {
    mprpc__zk_entry_t *e = *pp;
    if (e->inst.port == port && strcmp(e->inst.service, service) == 0 &&
        strcmp(e->inst.host, host) == 0) {
      *pp = e->next;
      mprpc__zk_del_t *d = calloc(1, sizeof *d);
      if (d) {
        d->path = e->path;
        e->path = NULL;
        d->next = z->dels;
        z->dels = d;
      }
      entry_free(e);
      rc = d ? 0 : MPRPC_ENOMEM;
      break;
    }
  }
  mprpc__zk_wake(z);
  pthread_mutex_unlock(&z->mu);
  return rc;
}

void mprpc__zk_regs_free(mprpc__zk_t *z) {
  while (z->regs) {
    mprpc__zk_entry_t *e = z->regs;
    z->regs = e->next;
    entry_free(e);
  }
  while (z->dels) {
    mprpc__zk_del_t *d = z->dels;
    z->dels = d->next;
    free(d->path);
    free(d);
  }
}
