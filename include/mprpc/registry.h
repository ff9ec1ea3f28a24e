/*
 * Registry seam: service discovery.
 *
 * A provider registers one instance (host:port plus metadata) per service it
 * publishes; a consumer subscribes to a service and is handed the full list
 * of instances on its own loop whenever the list or the registry's health
 * changes. Implementations: ZooKeeper (zk://), a fixed list (static://), a
 * watched file (file://) in src/registry/, and the simulator's virtual
 * ZooKeeper in sim/.
 *
 * Conventions:
 * - register/unregister return once the request is accepted; the registry
 *   keeps the registration alive itself (re-creating it after a ZooKeeper
 *   session expiry, for instance). Failures after acceptance are logged and
 *   reflected in mprpc_registry_health().
 * - Watch callbacks run on the loop given to subscribe, never on a registry
 *   thread. The items array and its strings are valid only during the call.
 * - unsubscribe is called on the subscriber's loop thread; once it returns
 *   the callback never runs again.
 * - An implementation delivers what it knows; the consumer side applies
 *   empty protection: an empty list while health != MPRPC_REG_HEALTHY must
 *   not wipe a non-empty cache.
 * - Config-centre nodes (optional, docs/governance.md): watch_config hands
 *   a node's full text to the callback on the given loop once at the start
 *   if the node exists, then on every change; text NULL means the node was
 *   deleted. Deliveries coalesce like list deliveries and an unchanged text
 *   is not delivered again. An outage delivers nothing: the last text
 *   stays the one to apply. unwatch_config follows unsubscribe's rules.
 */
#ifndef MPRPC_REGISTRY_H
#define MPRPC_REGISTRY_H

#include "mprpc/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprpc/config.h"
#include "mprpc/errors.h"
#include "mprpc/loop.h"

MPRPC_BEGIN_DECLS

#define MPRPC_DEFAULT_WEIGHT 100

/* One provider instance of one service. All strings are owned by whoever
 * built the struct; registries copy what they keep. */
typedef struct mprpc_instance {
  const char *service; /* full name, package.Service */
  const char *host;    /* numeric address or name the consumer can connect to */
  uint16_t port;
  uint32_t weight;     /* relative share for weighted balancers; 0 = default */
  const char *methods; /* comma-separated method names; may be NULL */
  const char *version; /* free-form; may be NULL */
  uint64_t start_time_ms; /* wall clock, ms since the epoch */
  const char *group;   /* provider group ([A-Za-z0-9_.-], at most 64); NULL or "" = "default" */
  bool tls;            /* the provider speaks TLS only (tls_mode=required):
                          published as tls=1; a channel without TLS skips it */
} mprpc_instance_t;

typedef enum mprpc_registry_health {
  MPRPC_REG_HEALTHY = 0,      /* connected; lists are authoritative */
  MPRPC_REG_CONNECTING = 1,   /* never connected yet, or reconnecting */
  MPRPC_REG_DISCONNECTED = 2, /* connection lost; lists may be stale */
  MPRPC_REG_EXPIRED = 3,      /* session expired; a new one is being opened */
  MPRPC_REG_CLOSED = 4,
} mprpc_registry_health_t;

const char *mprpc_registry_health_name(int health);

typedef void (*mprpc_registry_watch_cb)(void *ud, const mprpc_instance_t *items, size_t n,
                                        int health);

/* A config node's text (NUL-terminated, len bytes), valid during the call;
 * text NULL: the node does not exist (any more). name is the watched name. */
typedef void (*mprpc_registry_config_cb)(void *ud, const char *name, const char *text,
                                         size_t len);

/* Longest config node text a registry delivers (ZooKeeper's default limit). */
#define MPRPC_REGISTRY_CONFIG_MAX (1u << 20)

typedef struct mprpc_registry_ops {
  int (*register_instance)(void *ctx, const mprpc_instance_t *inst);
  int (*unregister_instance)(void *ctx, const char *service, const char *host, uint16_t port);
  int (*subscribe)(void *ctx, const char *service, mprpc_loop_t loop, mprpc_registry_watch_cb cb,
                   void *ud, uint64_t *sub_id);
  void (*unsubscribe)(void *ctx, uint64_t sub_id);
  int (*health)(void *ctx);
  /* Unregisters everything still registered and frees the registry. */
  void (*close)(void *ctx);
  /* Optional (NULL: the registry has no config centre). name is "_global"
   * or a service's full name. */
  int (*watch_config)(void *ctx, const char *name, mprpc_loop_t loop, mprpc_registry_config_cb cb,
                      void *ud, uint64_t *id);
  void (*unwatch_config)(void *ctx, uint64_t id);
  /* Optional (NULL = cannot enumerate): the names of the services the
   * registry knows now, as a malloc'ed array of malloc'ed strings the
   * caller frees with mprpc_registry_names_free. May block the calling
   * thread (never call it on a loop). */
  int (*list_services)(void *ctx, char ***names, size_t *n);
} mprpc_registry_ops_t;

typedef struct mprpc_registry {
  const mprpc_registry_ops_t *vt;
  void *ctx;
} mprpc_registry_t;

static inline int mprpc_registry_register(mprpc_registry_t r, const mprpc_instance_t *inst) {
  return r.vt->register_instance(r.ctx, inst);
}
static inline int mprpc_registry_unregister(mprpc_registry_t r, const char *service,
                                            const char *host, uint16_t port) {
  return r.vt->unregister_instance(r.ctx, service, host, port);
}
static inline int mprpc_registry_subscribe(mprpc_registry_t r, const char *service,
                                           mprpc_loop_t loop, mprpc_registry_watch_cb cb, void *ud,
                                           uint64_t *sub_id) {
  return r.vt->subscribe(r.ctx, service, loop, cb, ud, sub_id);
}
static inline void mprpc_registry_unsubscribe(mprpc_registry_t r, uint64_t sub_id) {
  r.vt->unsubscribe(r.ctx, sub_id);
}
static inline int mprpc_registry_health(mprpc_registry_t r) { return r.vt->health(r.ctx); }
/* MPRPC_EUNSUPPORTED when the registry has no config centre (static://);
 * MPRPC_EINVAL for a bad name (empty, '/', spaces, 256 bytes or more). */
static inline int mprpc_registry_watch_config(mprpc_registry_t r, const char *name,
                                              mprpc_loop_t loop, mprpc_registry_config_cb cb,
                                              void *ud, uint64_t *id) {
  if (!r.vt->watch_config)
    return MPRPC_EUNSUPPORTED;
  return r.vt->watch_config(r.ctx, name, loop, cb, ud, id);
}
/* On the watcher's loop; once it returns the callback never runs again. */
static inline void mprpc_registry_unwatch_config(mprpc_registry_t r, uint64_t id) {
  if (r.vt->unwatch_config)
    r.vt->unwatch_config(r.ctx, id);
}
/* The services the registry knows (zk://: the children of
 * <chroot>/mprpc/services). MPRPC_EUNSUPPORTED when it cannot enumerate
 * them; the registry's error (MPRPC_EREGISTRY, ...) when it cannot now. */
static inline int mprpc_registry_list_services(mprpc_registry_t r, char ***names, size_t *n) {
  *names = NULL;
  *n = 0;
  return r.vt->list_services ? r.vt->list_services(r.ctx, names, n) : MPRPC_EUNSUPPORTED;
}
void mprpc_registry_names_free(char **names, size_t n);
static inline void mprpc_registry_close(mprpc_registry_t r) {
  if (r.vt)
    r.vt->close(r.ctx);
}

/* Opens a registry from a URI: zk://host:port[,host:port...][/chroot],
 * static://host:port[,host:port...], file:///path. Defined in
 * src/registry/. Errors: MPRPC_EINVAL (bad URI, with text in errbuf),
 * MPRPC_EREGISTRY (could not start). */
int mprpc_registry_open(const char *uri, mprpc_registry_t *out, char *errbuf, size_t errlen);

/* Builds "zk://ip:port" from the seeds' config keys zookeeperip and
 * zookeeperport (an IPv6 ip is bracketed). MPRPC_EINVAL for an empty ip or a
 * port outside 1..65535, MPRPC_ENAMETOOLONG when out is too small. Options
 * and their meaning: docs/registry.md. */
int mprpc_registry_zk_uri(const char *ip, const char *port, char *out, size_t outlen);

/* The registry URI: `registry` when set, else zk://<zookeeperip>:<zookeeperport>
 * (port 2181 when only the ip is given; IPv6 in brackets). For a zk:// URI
 * the keys registry_cache, zookeeper_wait (bool), zookeeper_session_timeout
 * and zookeeper_connect_timeout (durations) become its options cache=,
 * wait=, session_timeout=, connect_timeout= (docs/config.md). Written into
 * out[n] NUL-terminated. MPRPC_ENOTFOUND when neither is configured (the
 * config's error text names the keys looked for), MPRPC_ECONFIG for a bad
 * value, MPRPC_ENAMETOOLONG when out is too small. Defined in
 * src/util/registry_config.c. */
int mprpc_config_registry_uri(mprpc_config_t *cfg, char *out, size_t n);

MPRPC_END_DECLS
#endif
