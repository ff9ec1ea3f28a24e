/*
 * Config-centre values (internal, pure logic): the text of a config node
 * (`_global` or a service's full name, /mprpc/config/<name> in ZooKeeper)
 * parsed into typed, immutable rule sets. docs/governance.md lists every
 * key for users; this header is for the code that applies them.
 *
 * Three steps:
 * 1. mprpc__gov_node_parse: one node's text -> a node layer. The text is
 *    untrusted (it comes from the registry): every problem is reported
 *    through the callback with the node's name, the line and the key, and
 *    a key whose value does not parse keeps the value it had in the
 *    previous layer of the same node (or stays absent if it had none).
 *    Keys missing from the new text are gone: a node's text is complete.
 * 2. mprpc__gov_rules_build_layers: layers in precedence order (the
 *    service's node, `_global`, the process's local config) -> one rule
 *    set. Per field, the first of: the first layer's key for the method
 *    (`timeout_ms.Echo`), its key for all methods (`timeout_ms`), then the
 *    next layer's the same way. Endpoint keys: the first layer that has
 *    them. The local layer (mprpc__gov_node_parse_local) is the process's
 *    own governance text (mprpc_server_opts_t / mprpc_channel_opts_t
 *    .governance, from its config file): the defaults under the config
 *    centre's nodes, or the only source without one.
 * 3. Hot paths read the rule set: mprpc__gov_rules_method and
 *    mprpc__gov_rules_endpoint are a hash and a compare, never allocate,
 *    and always return a struct (with nothing set when nothing applies).
 *
 * Sharing between threads. A rule set never changes once built; it is
 * reference-counted (atomic). The writer (whoever receives the config
 * callback) builds a new set and hands one reference to each reader; the
 * reader swaps its own pointer and drops the old reference. For readers
 * that are loops, mprpc__gov_cell_publish does this with a loop post, so a
 * loop reads its cell with a plain load and no atomics at all (RCU with the
 * loop's post queue as the grace period): the old set is freed by the last
 * loop that lets go of it, never while a loop is reading it.
 *
 * Functions return 0 or a negative MPRPC_E* code.
 */
#ifndef MPRPC_CORE_GOVCFG_H
#define MPRPC_CORE_GOVCFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprpc/loop.h"

#define MPRPC__GOV_GLOBAL "_global"
#define MPRPC__GOV_LOCAL "local config" /* the local layer's name when none is given */
#define MPRPC__GOV_MAX_KEYS 4096      /* keys kept per node; more are reported and ignored */
#define MPRPC__GOV_MAX_TEXT (1u << 20) /* bytes of node text looked at */

/* Bits of mprpc__gov_method_t.set / mprpc__gov_endpoint_t.set. */
enum {
  MPRPC__GOV_RATE = 1u << 0,    /* rate_qps, rate_burst */
  MPRPC__GOV_CONC = 1u << 1,    /* max_concurrency, concurrency_auto */
  MPRPC__GOV_TIMEOUT = 1u << 2, /* timeout_ms */
  MPRPC__GOV_RETRY = 1u << 3,   /* max_retry */
  MPRPC__GOV_DEGRADE = 1u << 4, /* degrade */
  MPRPC__GOV_WEIGHT = 1u << 8,  /* endpoint weight */
  MPRPC__GOV_DISABLED = 1u << 9 /* endpoint disabled */
};

typedef enum mprpc__gov_degrade {
  MPRPC__GOV_DEGRADE_OFF = 0,      /* call normally */
  MPRPC__GOV_DEGRADE_FAIL = 1,     /* fail at once on the consumer, nothing is sent */
  MPRPC__GOV_DEGRADE_FALLBACK = 2, /* run the consumer's fallback instead of calling */
} mprpc__gov_degrade_t;

/* What applies to one method. A field means something only when its bit
 * is in `set`; "off" values (rate_qps 0, max_concurrency 0 without auto)
 * are set and mean "no limit" (they override a broader scope's limit). */
typedef struct mprpc__gov_method {
  uint32_t set;
  uint32_t rate_qps;        /* calls per second, 0 = unlimited */
  uint32_t rate_burst;      /* bucket size (calls); >= 1 when rate_qps > 0 */
  uint32_t max_concurrency; /* 0 = unlimited (or auto) */
  bool concurrency_auto;    /* adaptive limiter (core/limiter.h) */
  uint32_t timeout_ms;      /* >= 1 */
  uint32_t max_retry;       /* 0..100 */
  int degrade;              /* mprpc__gov_degrade_t */
} mprpc__gov_method_t;

typedef struct mprpc__gov_endpoint {
  uint32_t set;
  uint32_t weight; /* 1..1000000, replaces the registered weight */
  bool disabled;   /* consumers send this endpoint nothing */
} mprpc__gov_endpoint_t;

/* A problem in a node's text. key is "" when the line had none; problem
 * is a sentence such as "bad value 'x' for timeout_ms.Echo (expected an
 * integer 1..3600000); keeping 250". Strings valid during the call. */
typedef void (*mprpc__gov_report_cb)(void *ud, const char *node, int line, const char *key,
                                     const char *problem);

typedef struct mprpc__gov_node mprpc__gov_node_t;
typedef struct mprpc__gov_rules mprpc__gov_rules_t;

/* Parses text[0..len) of node `name` ("_global" or a service). prev (may
 * be NULL) is the node's previous layer: bad values keep its values.
 * report may be NULL. *out is a new layer (free with _node_free) even when
 * there were problems; *nproblems (may be NULL) counts them. Errors:
 * MPRPC_EINVAL (no name), MPRPC_ENOMEM. */
int mprpc__gov_node_parse(const char *name, const char *text, size_t len,
                          const mprpc__gov_node_t *prev, mprpc__gov_report_cb report, void *ud,
                          mprpc__gov_node_t **out, size_t *nproblems);
/* The same for the process's local governance text, reported under
 * `name` (the config file's path, lines as in the file): like `_global`
 * (log_level allowed) but without group / version, which a process sets
 * through its own options. */
int mprpc__gov_node_parse_local(const char *name, const char *text, size_t len,
                                const mprpc__gov_node_t *prev, mprpc__gov_report_cb report,
                                void *ud, mprpc__gov_node_t **out, size_t *nproblems);
void mprpc__gov_node_free(mprpc__gov_node_t *n);
const char *mprpc__gov_node_name(const mprpc__gov_node_t *n);
/* Number of keys the layer holds (parsed or kept). */
size_t mprpc__gov_node_count(const mprpc__gov_node_t *n);

/* Merges layers[0..n) (highest precedence first; any may be NULL) into a
 * new rule set with one reference, for `service` (may be NULL). */
int mprpc__gov_rules_build_layers(const char *service, const mprpc__gov_node_t *const *layers,
                                  size_t n, mprpc__gov_rules_t **out);
/* The same for {svc, global}. */
int mprpc__gov_rules_build(const char *service, const mprpc__gov_node_t *global,
                           const mprpc__gov_node_t *svc, mprpc__gov_rules_t **out);
/* Takes / drops a reference (any thread). NULL is fine for both. */
const mprpc__gov_rules_t *mprpc__gov_rules_ref(const mprpc__gov_rules_t *r);
void mprpc__gov_rules_unref(const mprpc__gov_rules_t *r);

/* The values for a method of the rule set's service (method without the
 * service: "Echo"). r may be NULL (nothing set). The pointer lives as long
 * as the caller's reference to r. */
const mprpc__gov_method_t *mprpc__gov_rules_method(const mprpc__gov_rules_t *r,
                                                    const char *method);
/* The values for one provider address (host without brackets). */
const mprpc__gov_endpoint_t *mprpc__gov_rules_endpoint(const mprpc__gov_rules_t *r,
                                                        const char *host, uint16_t port);
/* log_level from _global (an MPRPC_LOG_LEVEL_*), or -1 when not set. */
int mprpc__gov_rules_log_level(const mprpc__gov_rules_t *r);
/* group / version selection for consumers; NULL when not set. */
const char *mprpc__gov_rules_group(const mprpc__gov_rules_t *r);
const char *mprpc__gov_rules_version(const mprpc__gov_rules_t *r);
const char *mprpc__gov_rules_service(const mprpc__gov_rules_t *r);
/* Counts rule sets built so far in this process: a cheap "did it change"
 * stamp for readers that cache lookups. Unique per set. */
uint64_t mprpc__gov_rules_generation(const mprpc__gov_rules_t *r);

/* --- the layers of one service, kept together ---------------------------- */

/* Layers of a state, in precedence order. */
enum { MPRPC__GOV_LAYER_SVC, MPRPC__GOV_LAYER_GLOBAL, MPRPC__GOV_LAYER_LOCAL, MPRPC__GOV_NLAYERS };

/* What a consumer or provider of one service keeps: the last layers of
 * the service's node, `_global` and the local config, and the rule set
 * built from them. Used on one thread (the one that receives the config
 * callbacks). */
typedef struct mprpc__gov_state {
  char *service;
  mprpc__gov_node_t *layer[MPRPC__GOV_NLAYERS]; /* NULL: none */
  mprpc__gov_rules_t *rules; /* one reference, owned by the state */
} mprpc__gov_state_t;

int mprpc__gov_state_init(mprpc__gov_state_t *st, const char *service);
void mprpc__gov_state_destroy(mprpc__gov_state_t *st);
/* Node `name` (must be "_global" or st's service) now has text (NULL: the
 * node was deleted). Re-parses it on top of its previous layer and
 * rebuilds st->rules. Errors: MPRPC_EINVAL (another name), MPRPC_ENOMEM
 * (st unchanged). */
int mprpc__gov_state_update(mprpc__gov_state_t *st, const char *name, const char *text,
                            size_t len, mprpc__gov_report_cb report, void *ud,
                            size_t *nproblems);

/* The local layer is now text (NULL: none), reported under name (NULL:
 * MPRPC__GOV_LOCAL); bad values keep the previous local layer's. Errors:
 * MPRPC_ENOMEM (st unchanged). */
int mprpc__gov_state_set_local(mprpc__gov_state_t *st, const char *name, const char *text,
                               size_t len, mprpc__gov_report_cb report, void *ud,
                               size_t *nproblems);

/* --- publishing to loops ------------------------------------------------ */

/* A loop's view of the current rule set: read `rules` on that loop only,
 * with a plain load (NULL: none yet). */
typedef struct mprpc__gov_cell {
  const mprpc__gov_rules_t *rules;
} mprpc__gov_cell_t;

/* Any thread: posts to `loop` a swap of cell->rules to r (a new reference
 * is taken; NULL clears), releasing the old set there. Publishes to one
 * cell are applied in call order. The cell must outlive the loop's queue
 * (free it after the loop stopped). MPRPC_ESTATE / MPRPC_ENOMEM: nothing
 * was posted and no reference kept. */
int mprpc__gov_cell_publish(mprpc__gov_cell_t *cell, mprpc_loop_t loop,
                            const mprpc__gov_rules_t *r);
/* On the cell's loop (or after it stopped): drops the cell's reference. */
void mprpc__gov_cell_clear(mprpc__gov_cell_t *cell);

/* A report callback that logs each problem at WARN. */
void mprpc__gov_report_log(void *ud, const char *node, int line, const char *key,
                           const char *problem);

#endif
