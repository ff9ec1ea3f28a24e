/*
 * Internals of the ZooKeeper registry (zk://), shared by zk.c,
 * zk_provider.c and zk_consumer.c; not part of the public API. The files:
 *
 *   zk.c           the registry object and its session: open and close, the
 *                  ZooKeeper handle, the watcher, health, session expiry and
 *                  the worker thread that runs every ZooKeeper call.
 *   zk_provider.c  what this process publishes: registrations kept as
 *                  desired state (ephemeral nodes made to exist, owned by
 *                  the current session) and pending unregisters.
 *   zk_consumer.c  what this process watches: subscribed services, their
 *                  lists read from ZooKeeper with watches, the lists handed
 *                  to subscribers, and the consumer cache file.
 *   zk_data.c      the text inside a provider's node (declared in
 *                  registry/internal.h, which the unit tests use).
 *
 * Threads and locking (the same rules in every file). ZooKeeper's own
 * threads only run mprpc__zk_watcher(), which records what happened under
 * z->mu and wakes the worker. The worker makes every ZooKeeper call, with the
 * synchronous API and with z->mu NOT held, so the watcher can always make
 * progress. Functions below say "mu held" when the caller holds z->mu and
 * "worker" when they run on the worker thread without it.
 */
#ifndef MPRPC_REGISTRY_ZK_INTERNAL_H
#define MPRPC_REGISTRY_ZK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <zookeeper/zookeeper.h>

#include "mprpc/registry.h"
#include "registry/internal.h"

/* One registration (zk_provider.c). */
typedef struct mprpc__zk_entry mprpc__zk_entry_t;
/* A node to delete after an unregister (zk_provider.c). */
typedef struct mprpc__zk_del mprpc__zk_del_t;
/* One subscribed service (zk_consumer.c). */
typedef struct mprpc__zk_svc mprpc__zk_svc_t;

typedef struct mprpc__zk {
  char *hosts;    /* as in the URI, for messages */
  char *zk_hosts; /* as the C client wants it: IPv6 without brackets */
  char *base;     /* <chroot>/mprpc/services */
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
  uint64_t next_gen;      /* zk_provider.c: data generations */
  mprpc__zk_entry_t *regs; /* zk_provider.c */
  mprpc__zk_del_t *dels;   /* zk_provider.c */
  mprpc__zk_svc_t *svcs;   /* zk_consumer.c */
  bool cache_dirty;        /* zk_consumer.c: the cache file is behind */
  /* mu: one mprpc_registry_list_services at a time, answered by the worker */
  struct {
    bool busy, done, abandoned;
    int rc;
    char **names;
    size_t n;
  } list;
  /* worker: */
  uint64_t pass; /* numbers work passes: each item is tried once per pass */
  bool worker_started;
  pthread_t worker;
  long long last_init_error_ms;
} mprpc__zk_t;

/* --- zk.c: the session ---------------------------------------------------- */

/* The watcher of the session and of every watch the registry sets. Runs on
 * ZooKeeper's threads; ctx is the mprpc__zk_t. */
void mprpc__zk_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx);
/* mu held. Wakes the worker for a work pass. */
void mprpc__zk_wake(mprpc__zk_t *z);
/* Worker. Creates path and its ancestors as persistent nodes. A ZooKeeper
 * code (ZOK, ...). */
int mprpc__zk_ensure_path(zhandle_t *zh, const char *path);
/* Errors after which nothing else can work in this pass. */
bool mprpc__zk_conn_error(int rc);

/* --- zk_provider.c: registrations ---------------------------------------- */

/* The registry ops register_instance and unregister_instance. */
int mprpc__zk_register(void *ctx, const mprpc_instance_t *inst);
int mprpc__zk_unregister(void *ctx, const char *service, const char *host, uint16_t port);
/* mu held. A session (re)connected: every registration is verified again. */
void mprpc__zk_regs_unverify(mprpc__zk_t *z);
/* Worker, one work pass in session sid: pending unregisters, then the
 * registrations not yet verified in this session. Sets *retry when
 * something failed; returns false when the pass must stop (the session
 * changed or the connection is gone). */
bool mprpc__zk_regs_sync(mprpc__zk_t *z, zhandle_t *zh, int64_t sid, uint64_t pass,
                         bool *retry);
/* Frees every registration and pending unregister (closing registry). */
void mprpc__zk_regs_free(mprpc__zk_t *z);

/* --- zk_consumer.c: subscriptions and the cache file ---------------------- */

/* The registry ops subscribe and unsubscribe. */
int mprpc__zk_subscribe(void *ctx, const char *service, mprpc_loop_t loop,
                        mprpc_registry_watch_cb cb, void *ud, uint64_t *sub_id);
void mprpc__zk_unsubscribe(void *ctx, uint64_t id);
/* mu held. A session (re)connected: every list is read again. */
void mprpc__zk_svcs_mark_all(mprpc__zk_t *z);
/* mu held. A watch fired on path (a providers node or one provider's node):
 * its service's list is read again. */
void mprpc__zk_svcs_mark_path(mprpc__zk_t *z, const char *path);
/* mu held. Health dropped to h: every subscriber gets its cached list again
 * with h. */
void mprpc__zk_svcs_redeliver(mprpc__zk_t *z, int h);
/* Worker, one work pass in session sid: reads the lists whose watches
 * fired and delivers them. Same result convention as mprpc__zk_regs_sync. */
bool mprpc__zk_svcs_sync(mprpc__zk_t *z, zhandle_t *zh, int64_t sid, uint64_t pass,
                         bool *retry);
/* Frees every subscribed service (closing registry). */
void mprpc__zk_svcs_free(mprpc__zk_t *z);
/* Loads z->cache_path into the services' lists (before the worker starts). */
void mprpc__zk_cache_load(mprpc__zk_t *z);
/* mu held. True when some service holds a list from the cache file. */
bool mprpc__zk_cache_loaded(const mprpc__zk_t *z);
/* Writes the cache file if it is behind. Takes mu itself. */
void mprpc__zk_cache_save(mprpc__zk_t *z);

/* --- test hook ------------------------------------------------------------ */

/* The current session's id and password (16 bytes), for tests that force a
 * session expiry. MPRPC_EINVAL when r is not a zk:// registry,
 * MPRPC_ENOTCONN when not connected. */
int mprpc__zk_session(mprpc_registry_t r, int64_t *session_id, char passwd[16]);

#endif
