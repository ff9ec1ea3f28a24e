/*
 * The consumer side of the ZooKeeper registry: subscriptions.
 *
 * One mprpc__zk_svc_t per subscribed service holds the last list read from
 * ZooKeeper (or loaded from the cache file). A service is marked dirty when
 * one of its watches fires (the providers children, or one provider node's
 * data) and on every (re)connect; the worker then reads it again, re-arming
 * the watches, and hands the list to the service's subscribers on their
 * loops through the subscriber table. When health drops, the cached lists
 * are handed out again with the new health and kept: an outage never turns
 * into an empty list (docs/registry.md, "empty protection").
 *
 * With cache=PATH every list read from ZooKeeper is also written to PATH,
 * and a registry that cannot reach ZooKeeper starts from it.
 *
 * subscribe/unsubscribe run on the caller's thread; mprpc__zk_svcs_sync does
 * the ZooKeeper calls on the worker (zk_internal.h has the threading rules).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "registry/zk_internal.h"

struct mprpc__zk_svc {
  mprpc__zk_watched_t w; /* name is the service's, path its .../providers */
  bool fetched;   /* cache came from ZooKeeper (some session) */
  bool from_file; /* cache came from the cache file and was not refreshed yet */
  mprpc__reg_list_t cache;
  struct mprpc__zk_svc *next;
};

static mprpc__zk_svc_t *find_svc_by_path(mprpc__zk_t *z, const char *path) {
  for (mprpc__zk_svc_t *s = z->svcs; s; s = s->next)
    if (strcmp(s->w.path, path) == 0)
      return s;
  return NULL;
}

static mprpc__zk_svc_t *find_svc(mprpc__zk_t *z, const char *name) {
  for (mprpc__zk_svc_t *s = z->svcs; s; s = s->next)
    if (strcmp(s->w.name, name) == 0)
      return s;
  return NULL;
}

static mprpc__zk_svc_t *add_svc(mprpc__zk_t *z, const char *name) {
  mprpc__zk_svc_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  size_t n = strlen(z->base) + strlen(name) + 16;
  s->w.name = strdup(name);
  s->w.path = malloc(n);
  if (!s->w.name || !s->w.path) {
    free(s->w.name);
    free(s->w.path);
    free(s);
    return NULL;
  }
  snprintf(s->w.path, n, "%s/%s/providers", z->base, name);
  s->next = z->svcs;
  z->svcs = s;
  return s;
}

/* --- what the watcher records (mu held) ---------------------------------- */

void mprpc__zk_svcs_mark_all(mprpc__zk_t *z) {
  for (mprpc__zk_svc_t *s = z->svcs; s; s = s->next)
    s->w.dirty = true;
}

void mprpc__zk_svcs_mark_path(mprpc__zk_t *z, const char *path) {
  /* a children event names .../providers; a data or deletion event of
   * one provider names .../providers/<host:port> */
  mprpc__zk_svc_t *s = find_svc_by_path(z, path);
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
    s->w.dirty = true;
}

void mprpc__zk_svcs_redeliver(mprpc__zk_t *z, int h) {
  for (mprpc__zk_svc_t *s = z->svcs; s; s = s->next)
    if (s->fetched || s->from_file)
      mprpc__reg_subs_deliver(&z->subs, s->w.name, &s->cache, false, h);
}

/* --- reading a list (worker thread, mu NOT held) ------------------------- */

static int fetch_list(mprpc__zk_t *z, zhandle_t *zh, const char *service, const char *path,
                      mprpc__reg_list_t *out) {
  struct String_vector ch = {0, NULL};
  int rc = zoo_wget_children(zh, path, mprpc__zk_watcher, z, &ch);
  if (rc == ZNONODE) {
    rc = mprpc__zk_ensure_path(zh, path);
    if (rc == ZOK)
      rc = zoo_wget_children(zh, path, mprpc__zk_watcher, z, &ch);
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
    rc = zoo_wget(zh, cp, mprpc__zk_watcher, z, buf, &len, &st);
    if (rc == ZOK && st.dataLength > cap && st.dataLength <= 1 << 20) {
      char *nb = realloc(buf, (size_t)st.dataLength + 1);
      if (!nb) {
        rc = ZSYSTEMERROR;
        goto done;
      }
      buf = nb;
      cap = st.dataLength;
      len = cap;
      rc = zoo_wget(zh, cp, mprpc__zk_watcher, z, buf, &len, &st);
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

/* --- the worker's pass ---------------------------------------------------- */

static mprpc__zk_watched_t *svc_first(mprpc__zk_t *z) {
  return z->svcs ? &z->svcs->w : NULL;
}

static mprpc__zk_watched_t *svc_next(mprpc__zk_watched_t *w) {
  mprpc__zk_svc_t *s = ((mprpc__zk_svc_t *)w)->next;
  return s ? &s->w : NULL;
}

static int svc_fetch(mprpc__zk_t *z, zhandle_t *zh, const char *name, const char *path,
                     void *res) {
  return fetch_list(z, zh, name, path, res);
}

static void svc_store(mprpc__zk_t *z, mprpc__zk_watched_t *w, int64_t sid, void *res) {
  mprpc__zk_svc_t *s = (mprpc__zk_svc_t *)w;
  mprpc__reg_list_t *list = res;
  bool changed = !s->fetched || s->from_file || !mprpc__reg_list_equal(&s->cache, list);
  mprpc__reg_list_clear(&s->cache);
  s->cache = *list;
  *list = (mprpc__reg_list_t){0};
  s->fetched = true;
  s->from_file = false;
  if (changed)
    z->cache_dirty = true;
  /* Authoritative only if the session is still up. */
  mprpc__reg_subs_deliver(&z->subs, s->w.name, &s->cache, false,
                          z->zstate == ZOO_CONNECTED_STATE && z->session_id == sid
                              ? MPRPC_REG_HEALTHY
                              : z->health);
}

static void svc_finish(mprpc__zk_t *z, const char *name, void *res) {
  (void)z;
  (void)name;
  mprpc__reg_list_clear(res);
}

static const mprpc__zk_watched_ops_t svc_ops = {
    .doing = "listing",
    .first = svc_first,
    .next = svc_next,
    .fetch = svc_fetch,
    .store = svc_store,
    .finish = svc_finish,
};

bool mprpc__zk_svcs_sync(mprpc__zk_t *z, zhandle_t *zh, int64_t sid, uint64_t pass,
                         bool *retry) {
  /* subscribed services whose list may have changed, each tried once per
   * pass */
  mprpc__reg_list_t list;
  return mprpc__zk_watched_sync(z, zh, sid, pass, retry, &svc_ops, &list, sizeof list);
}

/* --- the cache file ----------------------------------------------------- */

void mprpc__zk_cache_save(mprpc__zk_t *z) {
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
  for (mprpc__zk_svc_t *s = z->svcs; s && !oom; s = s->next) {
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

void mprpc__zk_cache_load(mprpc__zk_t *z) {
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
    mprpc__zk_svc_t *s = find_svc(z, all.items[i].service);
    if (!s && !(s = add_svc(z, all.items[i].service)))
      break;
    s->from_file = true;
    mprpc__reg_list_add(&s->cache, &all.items[i]);
  }
  mprpc__reg_list_clear(&all);
}

bool mprpc__zk_cache_loaded(const mprpc__zk_t *z) {
  bool cached = false;
  for (const mprpc__zk_svc_t *s = z->svcs; s; s = s->next)
    cached |= s->from_file;
  return cached;
}

/* --- ops ---------------------------------------------------------------- */

int mprpc__zk_subscribe(void *ctx, const char *service, mprpc_loop_t loop,
                        mprpc_registry_watch_cb cb, void *ud, uint64_t *sub_id) {
  mprpc__zk_t *z = ctx;
  if (!service || !*service || !cb || !sub_id || !loop.vt || strchr(service, '/') ||
      strlen(service) >= MPRPC__REG_MAX_NAME)
    return MPRPC_EINVAL;
  pthread_mutex_lock(&z->mu);
  int rc = MPRPC_ESTATE;
  if (z->stop)
    goto out;
  mprpc__zk_svc_t *s = find_svc(z, service);
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
    s->w.dirty = true;
    mprpc__zk_wake(z);
  }
out:
  pthread_mutex_unlock(&z->mu);
  return rc;
}

void mprpc__zk_unsubscribe(void *ctx, uint64_t id) {
  mprpc__zk_t *z = ctx;
  mprpc__reg_subs_remove(&z->subs, id);
}

void mprpc__zk_svcs_free(mprpc__zk_t *z) {
  while (z->svcs) {
    mprpc__zk_svc_t *s = z->svcs;
    z->svcs = s->next;
    mprpc__reg_list_clear(&s->cache);
    free(s->w.name);
    free(s->w.path);
    free(s);
  }
}
