/*
 * The re-read loop shared by the ZooKeeper registry's watched nodes: the
 * subscribed services (zk_consumer.c) and the config-centre nodes
 * (zk_config.c). Each item is marked dirty when one of its watches fires or
 * the session (re)connects; one work pass reads every dirty item once
 * (re-arming its watches), stores what it read, and keeps a failed item
 * dirty for the next pass. What an item holds, how it is read and what is
 * done with the result are the caller's, through mprpc__zk_watched_ops_t.
 */
#include <stdlib.h>
#include <string.h>

#include "mprpc/log.h"
#include "registry/zk_internal.h"

bool mprpc__zk_watched_sync(mprpc__zk_t *z, zhandle_t *zh, int64_t sid, uint64_t pass,
                            bool *retry, const mprpc__zk_watched_ops_t *ops, void *res,
                            size_t res_size) {
  for (int guard = 0; guard < 100000; guard++) {
    pthread_mutex_lock(&z->mu);
    if (z->session_id != sid || z->zstate != ZOO_CONNECTED_STATE || z->stop) {
      pthread_mutex_unlock(&z->mu);
      *retry = true;
      return false;
    }
    mprpc__zk_watched_t *w = ops->first(z);
    while (w && (!w->dirty || w->tried == pass))
      w = ops->next(w);
    char *name = w ? strdup(w->name) : NULL;
    char *path = w ? strdup(w->path) : NULL;
    if (w) {
      w->dirty = false; /* a watch firing from here on marks it again */
      w->tried = pass;
    }
    pthread_mutex_unlock(&z->mu);
    if (!w)
      break;
    memset(res, 0, res_size);
    int rc = name && path ? ops->fetch(z, zh, name, path, res) : ZSYSTEMERROR;
    bool log_failure = false;
    pthread_mutex_lock(&z->mu);
    /* the item may be gone: look it up again by name */
    for (w = ops->first(z); w && strcmp(w->name, name ? name : "") != 0; w = ops->next(w))
      ;
    if (rc == ZOK && w) {
      w->last_rc = ZOK;
      ops->store(z, w, sid, res);
    } else if (w) {
      w->dirty = true;
      log_failure = rc != w->last_rc;
      w->last_rc = rc;
    }
    pthread_mutex_unlock(&z->mu);
    ops->finish(z, name, res);
    if (rc != ZOK && log_failure)
      MPRPC_LOG_WARN("registry zk://%s: %s %s: %s (will retry)", z->hosts, ops->doing,
                     path ? path : "?", zerror(rc));
    free(name);
    free(path);
    if (rc != ZOK) {
      *retry = true;
      if (mprpc__zk_conn_error(rc))
        return false;
    }
  }
  return true;
}
