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
 *   zk_config.c    config-centre nodes (/mprpc/config/<name>) watched for
 *                  their text, and their copies next to the cache file.
 *   zk_watched.c   the re-read loop the last two share: each dirty watched
 *                  item read once per work pass, failures kept dirty.
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
#include <stddef.h>
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
/* One watched config node (zk_config.c). */
typedef struct mprpc__zk_cfg mprpc__zk_cfg_t;

typedef struct mprpc__zk {
  char *hosts;    /* as in the URI, for messages */
  char *zk_hosts; /* as the C client wants it: IPv6 without brackets */
  char *base;     /* <chroot>/mprpc/services */
  char *cfg_base; /* <chroot>/mprpc/config */
  char *cfg_cache_dir; /* <cache>.config, or NULL */
  mprpc__reg_cfgws_t cfgws;
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
  mprpc__zk_cfg_t *cfgs;   /* zk_config.c */
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

/* --- zk_watched.c: the re-read loop of watched items ---------------------- */

/* What every watched item keeps: the first member of a subscribed service
 * (zk_consumer.c) and of a config node (zk_config.c). mu. */
typedef struct mprpc__zk_watched {
  char *name;
  char *path;
  bool dirty;     /* a watch fired or the session changed: read it again */
  uint64_t tried; /* the work pass that last read it */
  int last_rc;    /* ZooKeeper code of the last read; a new failure is logged */
} mprpc__zk_watched_t;

/* How one kind of watched item is walked, read and stored. */
typedef struct mprpc__zk_watched_ops {
  const char *doing; /* "listing": the failure line reads "<doing> <path>: ..." */
  /* mu held. The list of items and its order. */
  mprpc__zk_watched_t *(*first)(mprpc__zk_t *z);
  mprpc__zk_watched_t *(*next)(mprpc__zk_watched_t *w);
  /* Worker. Reads the item's node(s), re-arming the watches, into res
   * (zeroed before the call). A ZooKeeper code. */
  int (*fetch)(mprpc__zk_t *z, zhandle_t *zh, const char *name, const char *path, void *res);
  /* mu held, after a read that returned ZOK in session sid: keeps res in w
   * (taking what it takes from res) and delivers it. */
  void (*store)(mprpc__zk_t *z, mprpc__zk_watched_t *w, int64_t sid, void *res);
  /* Worker, after every read, stored or not: frees what is left in res. */
  void (*finish)(mprpc__zk_t *z, const char *name, void *res);
} mprpc__zk_watched_ops_t;

/* Worker, one work pass in session sid over ops' items: each dirty item is
 * read once, with res (res_size bytes) as the read's scratch result. Same
 * result convention as mprpc__zk_regs_sync. */
bool mprpc__zk_watched_sync(mprpc__zk_t *z, zhandle_t *zh, int64_t sid, uint64_t pass,
                            bool *retry, const mprpc__zk_watched_ops_t *ops, void *res,
                            size_t res_size);

/* --- zk_config.c: config-centre nodes ------------------------------------- */

/* The registry ops watch_config and unwatch_config. */
int mprpc__zk_watch_config(void *ctx, const char *name, mprpc_loop_t loop,
                           mprpc_registry_config_cb cb, void *ud, uint64_t *id);
void mprpc__zk_unwatch_config(void *ctx, uint64_t id);
/* mu held. A session (re)connected: every watched node is read again. */
void mprpc__zk_cfgs_mark_all(mprpc__zk_t *z);
/* mu held. A watch fired on path: true when it was a config node's. */
bool mprpc__zk_cfgs_mark_path(mprpc__zk_t *z, const char *path);
/* Worker, one work pass: reads the nodes whose watches fired (re-arming a
 * data watch, or an exists watch for a node not created yet), delivers what
 * changed, and copies it to the cache directory. Same result convention as
 * mprpc__zk_regs_sync. */
bool mprpc__zk_cfgs_sync(mprpc__zk_t *z, zhandle_t *zh, int64_t sid, uint64_t pass,
                         bool *retry);
void mprpc__zk_cfgs_free(mprpc__zk_t *z);

/* --- test hook ------------------------------------------------------------ */

/* The current session's id and password (16 bytes), for tests that force a
 * session expiry. MPRPC_EINVAL when r is not a zk:// registry,
 * MPRPC_ENOTCONN when not connected. */
int mprpc__zk_session(mprpc_registry_t r, int64_t *session_id, char passwd[16]);

#endif
