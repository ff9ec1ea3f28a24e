/*
 * Config-centre nodes of the ZooKeeper registry: <chroot>/mprpc/config/<name>,
 * persistent, their data the node's text (docs/governance.md).
 *
 * One mprpc__zk_cfg_t per watched name holds the last text known. A node is
 * marked dirty when its watch fires (a data watch while it exists, an exists
 * watch while it does not, so its creation is seen too) and on every
 * (re)connect, which also covers a new session after an expiry (its watches
 * are gone). The worker then reads it again, re-arming the watch, and hands
 * a changed text to the watchers on their loops. An outage delivers
 * nothing: the last text stays in force.
 *
 * With cache=PATH, each text read is also kept in the directory PATH.config
 * (one file per node, the layout of a file:// registry's config directory);
 * a watcher that starts while ZooKeeper is unreachable gets the cached text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "registry/zk_internal.h"

struct mprpc__zk_cfg {
  mprpc__zk_watched_t w;
  bool fetched;   /* read from ZooKeeper in some session */
  bool from_file; /* the text came from the cache directory */
  bool present;
  char *text;
  size_t len;
  struct mprpc__zk_cfg *next;
};

static mprpc__zk_cfg_t *find_cfg(mprpc__zk_t *z, const char *name) {
  for (mprpc__zk_cfg_t *c = z->cfgs; c; c = c->next)
    if (strcmp(c->w.name, name) == 0)
      return c;
  return NULL;
}

void mprpc__zk_cfgs_mark_all(mprpc__zk_t *z) {
  for (mprpc__zk_cfg_t *c = z->cfgs; c; c = c->next)
    c->w.dirty = true;
}

bool mprpc__zk_cfgs_mark_path(mprpc__zk_t *z, const char *path) {
  for (mprpc__zk_cfg_t *c = z->cfgs; c; c = c->next) {
    if (strcmp(c->w.path, path) == 0) {
      c->w.dirty = true;
      return true;
    }
  }
  return false;
}

/* Worker, mu NOT held. ZOK with *present and *text (malloc'd) / *len. */
static int fetch(mprpc__zk_t *z, zhandle_t *zh, const char *path, bool *present, char **text,
                 size_t *len) {
  *present = false;
  *text = NULL;
  *len = 0;
  for (int attempt = 0; attempt < 5; attempt++) {
    int cap = 4096;
    char *buf = malloc((size_t)cap + 1);
    if (!buf)
      return ZSYSTEMERROR;
    struct Stat st;
    int n = cap;
    int rc = zoo_wget(zh, path, mprpc__zk_watcher, z, buf, &n, &st);
    if (rc == ZOK && st.dataLength > cap) {
      int want = st.dataLength > (int)MPRPC_REGISTRY_CONFIG_MAX ? (int)MPRPC_REGISTRY_CONFIG_MAX
                                                                : st.dataLength;
      char *nb = realloc(buf, (size_t)want + 1);
      if (!nb) {
        free(buf);
        return ZSYSTEMERROR;
      }
      buf = nb;
      n = want;
      rc = zoo_wget(zh, path, mprpc__zk_watcher, z, buf, &n, &st);
      if (rc == ZOK && st.dataLength > want && st.dataLength <= (int)MPRPC_REGISTRY_CONFIG_MAX) {
        free(buf); /* grew again between the two reads */
        continue;
      }
    }
    if (rc == ZOK) {
      if (n < 0)
        n = 0; /* a node without data */
      buf[n] = '\0';
      *present = true;
      *text = buf;
      *len = (size_t)n;
      return ZOK;
    }
    free(buf);
    if (rc != ZNONODE)
      return rc;
    /* not there: watch for its creation */
    rc = zoo_wexists(zh, path, mprpc__zk_watcher, z, &st);
    if (rc == ZNONODE)
      return ZOK;
    if (rc != ZOK)
      return rc;
    /* created between the two calls: read it */
  }
  return ZOPERATIONTIMEOUT;
}

/* One read of a config node, and what is to be copied to the cache
 * directory after it. */
typedef struct {
  bool present;
  char *text; /* malloc'd */
  size_t len;
  char *cache_dir; /* set by cfg_store when the text changed and is cached */
} cfg_read_t;

static mprpc__zk_watched_t *cfg_first(mprpc__zk_t *z) {
  return z->cfgs ? &z->cfgs->w : NULL;
}

static mprpc__zk_watched_t *cfg_next(mprpc__zk_watched_t *w) {
  mprpc__zk_cfg_t *c = ((mprpc__zk_cfg_t *)w)->next;
  return c ? &c->w : NULL;
}

static int cfg_fetch(mprpc__zk_t *z, zhandle_t *zh, const char *name, const char *path,
                     void *res) {
  (void)name;
  cfg_read_t *r = res;
  return fetch(z, zh, path, &r->present, &r->text, &r->len);
}

static void cfg_store(mprpc__zk_t *z, mprpc__zk_watched_t *w, int64_t sid, void *res) {
  (void)sid;
  mprpc__zk_cfg_t *c = (mprpc__zk_cfg_t *)w;
  cfg_read_t *r = res;
  bool save = !c->fetched || c->from_file || r->present != c->present ||
              (r->present && (r->len != c->len || memcmp(r->text, c->text, r->len) != 0));
  free(c->text);
  c->text = r->text;
  c->len = r->len;
  c->present = r->present;
  c->fetched = true;
  c->from_file = false;
  r->text = NULL;
  mprpc__reg_cfgws_deliver(&z->cfgws, c->w.name, 0, c->present ? c->text : NULL, c->len);
  if (save && z->cfg_cache_dir) {
    /* the copy is written by cfg_finish, without mu */
    r->cache_dir = strdup(z->cfg_cache_dir);
    r->text = r->present ? malloc(r->len + 1) : NULL;
    if (r->text)
      memcpy(r->text, c->text, r->len);
    if (r->present && !r->text) {
      free(r->cache_dir);
      r->cache_dir = NULL;
    }
  }
}

static void cfg_finish(mprpc__zk_t *z, const char *name, void *res) {
  (void)z;
  cfg_read_t *r = res;
  if (r->cache_dir) {
    int wrc = mprpc__reg_config_write(r->cache_dir, name, r->text, r->len);
    if (wrc)
      MPRPC_LOG_WARN("registry: cannot write the config cache %s/%s: %s", r->cache_dir, name,
                     mprpc_strerror(wrc));
  }
  free(r->cache_dir);
  free(r->text);
}

static const mprpc__zk_watched_ops_t cfg_ops = {
    .doing = "reading config",
    .first = cfg_first,
    .next = cfg_next,
    .fetch = cfg_fetch,
    .store = cfg_store,
    .finish = cfg_finish,
};

bool mprpc__zk_cfgs_sync(mprpc__zk_t *z, zhandle_t *zh, int64_t sid, uint64_t pass,
                         bool *retry) {
  cfg_read_t r;
  return mprpc__zk_watched_sync(z, zh, sid, pass, retry, &cfg_ops, &r, sizeof r);
}

int mprpc__zk_watch_config(void *ctx, const char *name, mprpc_loop_t loop,
                           mprpc_registry_config_cb cb, void *ud, uint64_t *id) {
  mprpc__zk_t *z = ctx;
  if (!mprpc__reg_config_name_ok(name) || !cb || !id || !loop.vt)
    return MPRPC_EINVAL;
  pthread_mutex_lock(&z->mu);
  int rc = MPRPC_ESTATE;
  if (z->stop)
    goto out;
  mprpc__zk_cfg_t *c = find_cfg(z, name);
  rc = MPRPC_ENOMEM;
  if (!c) {
    size_t n = strlen(z->cfg_base) + strlen(name) + 2;
    if (!(c = calloc(1, sizeof *c)))
      goto out;
    c->w.name = strdup(name);
    c->w.path = malloc(n);
    if (!c->w.name || !c->w.path) {
      free(c->w.name);
      free(c->w.path);
      free(c);
      goto out;
    }
    snprintf(c->w.path, n, "%s/%s", z->cfg_base, name);
    c->next = z->cfgs;
    z->cfgs = c;
    if (z->cfg_cache_dir &&
        mprpc__reg_config_read(z->cfg_cache_dir, name, &c->text, &c->len) == 0) {
      c->present = true;
      c->from_file = true;
    }
  }
  if ((rc = mprpc__reg_cfgws_add(&z->cfgws, name, loop, cb, ud, id)) != 0)
    goto out;
  if (c->fetched || (c->from_file && z->health != MPRPC_REG_HEALTHY)) {
    if (c->from_file)
      MPRPC_LOG_WARN("registry zk://%s: not connected; config %s comes from the cache %s",
                     z->hosts, name, z->cfg_cache_dir);
    mprpc__reg_cfgws_deliver(&z->cfgws, name, *id, c->present ? c->text : NULL, c->len);
  }
  if (!c->fetched) {
    c->w.dirty = true;
    mprpc__zk_wake(z);
  }
out:
  pthread_mutex_unlock(&z->mu);
  return rc;
}

void mprpc__zk_unwatch_config(void *ctx, uint64_t id) {
  mprpc__zk_t *z = ctx;
  mprpc__reg_cfgws_remove(&z->cfgws, id);
}

void mprpc__zk_cfgs_free(mprpc__zk_t *z) {
  while (z->cfgs) {
    mprpc__zk_cfg_t *c = z->cfgs;
    z->cfgs = c->next;
    free(c->w.name);
    free(c->w.path);
    free(c->text);
    free(c);
  }
}
