/*
 * Shared pieces of the production registries (static, file, zk):
 * owned instance lists, the one-instance-per-line text format (used by the
 * file registry and by the ZooKeeper consumer cache file), address parsing,
 * and the subscriber table that posts deliveries onto subscribers' loops.
 *
 * Subscriber deliveries coalesce: if a newer list arrives before the loop
 * ran the previous delivery, only the newest is delivered. A delivery equal
 * to the last one delivered to that subscriber (same list, same health) is
 * dropped.
 *
 * Lock order (outermost first): a registry's own mutex, the subscriber
 * table's mutex, one subscriber's mutex. Deliveries are made with the
 * registry's mutex held so that a subscribe's first delivery and a watcher's
 * update can never be reordered.
 */
#ifndef MPRPC_REGISTRY_INTERNAL_H
#define MPRPC_REGISTRY_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprpc/registry.h"

/* Bounds on what a registry accepts (names, addresses, metadata). */
#define MPRPC__REG_MAX_NAME 256
#define MPRPC__REG_MAX_HOST 256
#define MPRPC__REG_MAX_META 4096
#define MPRPC__REG_MAX_WEIGHT 1000000u

typedef struct mprpc__reg_list {
  mprpc_instance_t *items; /* strings owned by the list */
  size_t n, cap;
} mprpc__reg_list_t;

/* Appends a deep copy of inst. 0 or MPRPC_ENOMEM. */
int mprpc__reg_list_add(mprpc__reg_list_t *l, const mprpc_instance_t *inst);
void mprpc__reg_list_clear(mprpc__reg_list_t *l);
int mprpc__reg_list_copy(mprpc__reg_list_t *dst, const mprpc__reg_list_t *src);
/* Copies only the instances of one service. */
int mprpc__reg_list_filter(mprpc__reg_list_t *dst, const mprpc__reg_list_t *src,
                           const char *service);
/* Sorts by (service, host, port) so lists compare independent of order. */
void mprpc__reg_list_sort(mprpc__reg_list_t *l);
bool mprpc__reg_list_equal(const mprpc__reg_list_t *a, const mprpc__reg_list_t *b);
void mprpc__reg_instance_free(mprpc_instance_t *inst);
int mprpc__reg_instance_dup(mprpc_instance_t *dst, const mprpc_instance_t *src);

/* Validates what a provider passes to register: service name, host, port,
 * weight bound, no whitespace or newlines in any field. MPRPC_EINVAL with
 * text in err. */
int mprpc__reg_instance_check(const mprpc_instance_t *inst, char *err, size_t errlen);

/* "host:port", "[v6]:port". host receives the host without brackets. */
int mprpc__reg_parse_hostport(const char *s, size_t len, char *host, size_t hostlen,
                              uint16_t *port, char *err, size_t errlen);
/* Formats host:port (brackets around a host containing ':'). */
void mprpc__reg_format_hostport(const char *host, uint16_t port, char *buf, size_t len);

/* The line format: "service host:port [key=value ...]". line is modified
 * (tokens are cut in place) and out's strings point into it. Returns 1 for
 * an instance, 0 for a blank or comment line, MPRPC_EINVAL with text. */
int mprpc__reg_parse_line(char *line, mprpc_instance_t *out, char *err, size_t errlen);
/* Formats one instance as a line (with '\n'); the number of bytes that the
 * full line needs, like snprintf. */
int mprpc__reg_format_line(const mprpc_instance_t *inst, char *buf, size_t len);
/* Parses a whole text (file content, NUL-terminated) into l; errors name
 * "<what>:<line>". */
int mprpc__reg_parse_text(const char *text, const char *what, mprpc__reg_list_t *l, char *err,
                          size_t errlen);

/* The optional owner fields of a line: pid=P hostname=H. */
typedef struct mprpc__reg_line_extra {
  long pid;             /* 0: none */
  const char *hostname; /* NULL: none */
} mprpc__reg_line_extra_t;
int mprpc__reg_parse_line_ex(char *line, mprpc_instance_t *out, mprpc__reg_line_extra_t *extra,
                             char *err, size_t errlen);
int mprpc__reg_format_line_ex(const mprpc_instance_t *inst, const mprpc__reg_line_extra_t *extra,
                              char *buf, size_t len);
/* As parse_text; when local_pids is set, *local_pids receives a malloc'd
 * array parallel to l: the line's pid when its hostname is this host's,
 * else 0. */
int mprpc__reg_parse_text_ex(const char *text, const char *what, mprpc__reg_list_t *l,
                             long **local_pids, char *err, size_t errlen);
/* This host's name (spaces replaced), cached. */
const char *mprpc__reg_hostname(void);
/* True when no process with this pid exists on this host. */
bool mprpc__reg_pid_dead(long pid);

/* Reads a whole file into a NUL-terminated malloc'd buffer. MPRPC_ENOENT
 * when it does not exist, other MPRPC_E* from errno. */
int mprpc__reg_read_file(const char *path, char **out, size_t *outlen);
/* Writes content to path atomically (temp file in the same directory, then
 * rename). */
int mprpc__reg_write_file_atomic(const char *path, const char *content, size_t len);

/* --- subscriber table --------------------------------------------------- */

typedef struct mprpc__reg_sub mprpc__reg_sub_t;

typedef struct mprpc__reg_subs {
  pthread_mutex_t mu;
  mprpc__reg_sub_t *head;
  uint64_t next_id;
} mprpc__reg_subs_t;

int mprpc__reg_subs_init(mprpc__reg_subs_t *s);
/* Cancels every remaining subscriber (their callbacks never run again) and
 * frees the table. Deliveries already posted free themselves when run. */
void mprpc__reg_subs_destroy(mprpc__reg_subs_t *s);
int mprpc__reg_subs_add(mprpc__reg_subs_t *s, const char *service, mprpc_loop_t loop,
                        mprpc_registry_watch_cb cb, void *ud, uint64_t *id);
/* Must run on the subscriber's loop (registry.h); a no-op for unknown ids. */
void mprpc__reg_subs_remove(mprpc__reg_subs_t *s, uint64_t id);
/* Delivers list (only the items of the subscriber's service when filter is
 * set, else list as is) to every subscriber of service (NULL: every
 * subscriber). */
void mprpc__reg_subs_deliver(mprpc__reg_subs_t *s, const char *service,
                             const mprpc__reg_list_t *list, bool filter, int health);
/* Delivers to one subscriber by id. */
void mprpc__reg_subs_deliver_one(mprpc__reg_subs_t *s, uint64_t id, const mprpc__reg_list_t *list,
                                 bool filter, int health);

/* --- config watchers (cfgwatch.c) ---------------------------------------- */

/* Watchers of config nodes, like the subscriber table: deliveries are
 * posted to each watcher's loop, coalesce, and a text equal to the last one
 * handed to that watcher (or "absent" before the first) is dropped. Same
 * lock order as the subscriber table. */
typedef struct mprpc__reg_cfgw mprpc__reg_cfgw_t;

typedef struct mprpc__reg_cfgws {
  pthread_mutex_t mu;
  mprpc__reg_cfgw_t *head;
  uint64_t next_id;
} mprpc__reg_cfgws_t;

int mprpc__reg_cfgws_init(mprpc__reg_cfgws_t *s);
void mprpc__reg_cfgws_destroy(mprpc__reg_cfgws_t *s);
int mprpc__reg_cfgws_add(mprpc__reg_cfgws_t *s, const char *name, mprpc_loop_t loop,
                         mprpc_registry_config_cb cb, void *ud, uint64_t *id);
void mprpc__reg_cfgws_remove(mprpc__reg_cfgws_t *s, uint64_t id);
/* text NULL: absent. To every watcher of name (id 0) or to one watcher. */
void mprpc__reg_cfgws_deliver(mprpc__reg_cfgws_t *s, const char *name, uint64_t id,
                              const char *text, size_t len);
/* A usable config node name: "_global" or a service name (non-empty, no
 * '/', no spaces or control bytes, not "." or "..", under 256 bytes). */
bool mprpc__reg_config_name_ok(const char *name);
/* Reads DIR/NAME (a config directory: one file per node, its content the
 * node's text). 0 with *text malloc'd (NUL-terminated), MPRPC_ENOENT when
 * absent, other MPRPC_E* codes; files over MPRPC_REGISTRY_CONFIG_MAX are
 * MPRPC_ETOOBIG. */
int mprpc__reg_config_read(const char *dir, const char *name, char **text, size_t *len);
/* Writes (text != NULL) or removes (text NULL) DIR/NAME, creating DIR. */
int mprpc__reg_config_write(const char *dir, const char *name, const char *text, size_t len);

/* --- per-implementation constructors (uri.c dispatches) ---------------- */

typedef struct mprpc__reg_kv {
  const char *key;
  const char *value;
} mprpc__reg_kv_t;

int mprpc__static_open(const char *list, const mprpc__reg_kv_t *opts, size_t nopts,
                       mprpc_registry_t *out, char *err, size_t errlen);
int mprpc__file_open(const char *path, const mprpc__reg_kv_t *opts, size_t nopts,
                     mprpc_registry_t *out, char *err, size_t errlen);
int mprpc__zk_open(const char *hosts, const char *chroot, const mprpc__reg_kv_t *opts,
                   size_t nopts, mprpc_registry_t *out, char *err, size_t errlen);

/* ZooKeeper node data (zk_data.c). _format returns a malloc'd text (NULL on
 * ENOMEM). _parse appends the instance described by node `child` (host:port)
 * with `data` (modified in place) to out; a node without a usable address
 * is logged and skipped (returns 0). */
char *mprpc__zk_data_format(const mprpc_instance_t *inst);
int mprpc__zk_data_parse(const char *service, const char *child, char *data,
                         mprpc__reg_list_t *out);

/* Parses an unsigned decimal option value in [lo, hi]. */
int mprpc__reg_opt_uint(const char *uri_kind, const char *key, const char *value, uint64_t lo,
                        uint64_t hi, uint64_t *out, char *err, size_t errlen);

#endif
