/*
 * Channel: call a remote protobuf-c service as if it were local.
 *
 * A channel serves one service (its ProtobufCServiceDescriptor) over a set of
 * endpoints, given as a fixed list or by a registry subscription. It keeps
 * one multiplexed connection per endpoint, picks an endpoint per attempt
 * through a load balancer, retries or fails over by policy, hedges with
 * backup requests, and isolates bad endpoints (outlier ejection).
 *
 * Every piece of state lives on one loop (the channel's loop); the channel
 * reaches time, sockets, the registry and randomness only through the seams,
 * so it runs unchanged inside the simulator and replays under a seed.
 *
 * Calling:
 * - mprpc_channel_service(ch) is a ProtobufCService whose invoke makes the
 *   call, so protoc-c stubs work unchanged:
 *     example__echo_service__echo(mprpc_channel_service(ch), &req, done, arg);
 *   From a thread that is not the channel's loop (and when the loop can
 *   block), the stub is SYNCHRONOUS: it returns after the call completed and
 *   done ran (on the calling thread). On the loop thread it is ASYNCHRONOUS:
 *   it returns at once and done runs later on the loop.
 * - mprpc_channel_call() is always asynchronous, from any thread; done runs
 *   on the loop.
 * - done runs exactly once per accepted call: done(response, arg) on
 *   success, done(NULL, arg) on failure; the controller
 *   (include/mprpc/controller.h) says why.
 * - The request message is serialized before the call returns: the caller
 *   may free it at once.
 * - The response passed to done belongs to the channel and is freed when
 *   done returns, unless done calls mprpc_controller_take_response().
 *
 * Functions return 0 or a negative MPRPC_E* code.
 */
#ifndef MPRPC_CHANNEL_H
#define MPRPC_CHANNEL_H

#include "mprpc/export.h"
#include "mprpc/console.h"
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprpc/config.h"
#include "mprpc/controller.h"
#include "mprpc/frame.h" /* MPRPC_COMPRESS_*, for compress_type */
#include "mprpc/loop.h"
#include "mprpc/registry.h"
#include "mprpc/transport.h"

MPRPC_BEGIN_DECLS

typedef struct mprpc_channel mprpc_channel_t;

typedef enum mprpc_retry_policy {
  MPRPC_RETRY_FAILOVER = 0, /* retry elsewhere when it is safe (default) */
  MPRPC_RETRY_FAILFAST = 1, /* never retry */
} mprpc_retry_policy_t;

typedef enum mprpc_lb_kind {
  MPRPC_LB_RR = 0,     /* round robin (default) */
  MPRPC_LB_RANDOM = 1, /* random, weighted by instance weight */
  MPRPC_LB_HASH = 2,   /* consistent hashing on the controller's hash key */
  MPRPC_LB_LEAST = 3,  /* fewest calls in flight, ties by latency EWMA */
} mprpc_lb_kind_t;

/* "rr", "random", "hash", "least" -> kind; MPRPC_EINVAL when unknown
 * (before 0.2: -1, which is MPRPC_EPERM). */
int mprpc_lb_from_name(const char *name);
const char *mprpc_lb_name(int kind);

typedef struct mprpc_channel_opts {
  /* Loop and transport; vt == NULL means mprpc_default_loop() and
   * mprpc_tcp_transport() (include/mprpc/rt.h), filled in by
   * mprpc_channel_new. Borrowed: both must outlive the channel. */
  mprpc_loop_t loop;
  mprpc_transport_t transport;

  /* Endpoints: either a fixed list "host:port,host:port" (copied) ... */
  const char *servers;
  /* ... or a registry (vt != NULL; borrowed, must outlive the channel),
   * subscribed to the service's full name. */
  mprpc_registry_t registry;
  /* The channel owns `registry`: mprpc_channel_destroy closes it once the
   * channel has unsubscribed (mprpc_channel_from_config sets this). Not
   * closed when mprpc_channel_new fails: the caller still owns it then. */
  bool own_registry;

  int64_t timeout_ms;         /* whole call, every attempt; 0 = 1000; <0 none */
  int64_t connect_timeout_ms; /* 0 = 500 */
  int64_t attempt_timeout_ms; /* one attempt; 0 = none (only the deadline) */
  int max_retry;              /* retries after the first attempt, backup
                                 requests included; options_init sets 2;
                                 0 or negative: never retry */
  int retry_policy;           /* mprpc_retry_policy_t */
  int lb;                     /* mprpc_lb_kind_t */
  int64_t backup_request_ms;  /* 0 = no backup requests */
  /* Methods that may safely run twice (retried when the outcome of an
   * attempt is unknown; eligible for backup requests): a comma-separated
   * list of method names, or "*" for all. An entry may be qualified,
   * "Service.Method" or "Service.*", with the service's short name
   * (UserServiceRpc) or full name (fixbug.UserServiceRpc); entries qualified
   * with another service are ignored, so one list can serve the channels of
   * several services. An unknown method of this service makes
   * mprpc_channel_new fail with MPRPC_ENOTFOUND and an ERROR log line naming
   * it (mprpc_channel_parse_idempotent). Also mprpc_channel_set_idempotent. */
  const char *idempotent_methods;

  const void *auth_data; /* sent in every request's meta; copied */
  size_t auth_len;
  int compress_type;     /* MPRPC_COMPRESS_{NONE,SNAPPY,GZIP,ZLIB}: of every request payload */
  /* Frame body limit, both ways: a response over it closes the connection;
   * a request over it fails at once with MPRPC_ETOOBIG (never sent, never
   * retried; the text gives both sizes). Set it to the providers'
   * max_body_size. 0 = MPRPC_FRAME_DEFAULT_MAX_BODY (64 MiB), the
   * providers' default. */
  uint32_t max_body;
  /* Response bytes buffered on all the channel's connections and not yet
   * parsed (config key max_buffered_bytes; 0 = 256 MiB, SIZE_MAX =
   * unlimited). Past it, the call whose response is the biggest partial
   * frame fails with MPRPC_ETOOBIG and its connection is replaced. A
   * response declared over max_body fails its own call the same way, and
   * a response still partial when its call ends (a provider trickling it)
   * replaces the connection, which it would otherwise block. Other calls
   * on a replaced connection fail as on any broken connection (retried by
   * the usual rules). */
  size_t max_buffered_bytes;

  /* Provider selection (registry endpoints only; docs/governance.md): only
   * providers of this group ("default" matches providers without one) and
   * whose version matches this pattern ("1.2.3", "1.*", "*", alternatives
   * separated by ',') are called. NULL: any group / any version. The
   * config centre's `group` / `version` keys of the service, when set,
   * take precedence. Copied. A malformed value: MPRPC_EINVAL. */
  const char *group;
  const char *version;

  /* Governance defaults of this process (docs/governance.md, "The local
   * config"): config-centre lines such as "timeout_ms.Echo=200\n
   * degrade.Echo=fail\nweight.10.0.0.1:8000=5", applied from
   * mprpc_channel_new whatever the endpoints' source (a registry, servers=);
   * under a config centre its nodes win key by key. A bad line is logged at
   * WARN as "config NAME:LINE: ..." and ignored (governance_name: the
   * config file; NULL = "local config"). Parsed at _new; NULL = none. */
  const char *governance;
  const char *governance_name;

  /* Outlier ejection (0 = defaults) */
  int eject_conn_failures;     /* consecutive connect failures: 1 */
  int eject_error_percent;     /* error rate over the window: 50 */
  int eject_min_requests;      /* window size before the rate counts: 20 */
  int64_t eject_base_ms;       /* first isolation: 500; doubles per repeat */
  int64_t eject_max_ms;        /* cap: 30000 */
  int64_t reconnect_base_ms;   /* backoff: 50, doubling, equal jitter */
  int64_t reconnect_max_ms;    /* cap: 2000 */
  /* A connection on which this many attempts in a row timed out while
   * nothing at all arrived on it since they were written is closed, and
   * the next attempt re-dials (a fresh SYN goes out at once, while the old
   * TCP connection may sit in retransmission backoff for seconds after a
   * partition healed). 0 = 3; negative = never. Attempt timeouts and call
   * deadlines both count; any byte received starts the count again. */
  int reset_after_timeouts;

  /* The list the console's client metrics read (mprpc/console.h); vt NULL:
   * none. mprpc_channel_new (the facade) joins the process-wide list. */
  mprpc_channel_list_t list;

  /* TLS to the providers (docs/security.md). With tls set,
   * mprpc_channel_new wraps the transport (TCP, or the given one) with the
   * TLS decorator (include/mprpc/tls.h): the provider's certificate is
   * verified against tls_ca (NULL = the system's trust store) and the
   * server name, sessions are resumed on reconnect, and a failed handshake
   * fails the attempt with MPRPC_ETLS and OpenSSL's reason in the
   * controller's error text. Without tls, endpoints that the registry marks
   * tls=1 are skipped (MPRPC_ENOENDPOINT saying so). mprpc_channel_new_in
   * takes the transport as it is and reads only `tls`. Strings are copied
   * when the context is made (mprpc_channel_new). */
  bool tls;
  const char *tls_ca;          /* PEM CAs for the providers' certificates */
  const char *tls_cert;        /* PEM client certificate (mutual TLS) ... */
  const char *tls_key;         /* ... and its key */
  const char *tls_server_name; /* SNI and the name checked; NULL = the
                                  endpoint's host (DNS name or IP SAN) */
  bool tls_no_verify;          /* true: no certificate check at all (config
                                  tls_verify=off; insecure, explicit only) */

  /* Connections to each provider address (1..64; 0 = 1; options_init sets
   * 1). Each is an endpoint of its own for load balancing, ejection and
   * reconnects, so a consumer with heavy traffic lands on several of the
   * provider's loops (a provider serves a connection on one loop); a
   * retry or backup request still goes to another ADDRESS first, not to
   * another connection of the one that failed. Config key
   * connections_per_endpoint. */
  unsigned connections_per_endpoint;
} mprpc_channel_opts_t;

/* The names before 0.2, kept for one release. */
typedef mprpc_channel_opts_t mprpc_channel_options_t;
#define mprpc_channel_options_init mprpc_channel_opts_init
#define mprpc_channel_options_from_config mprpc_channel_opts_from_config

/* Defaults as listed above (servers NULL, no registry, max_retry 2).
 * Always start from this: a zeroed struct means max_retry 0. */
void mprpc_channel_opts_init(mprpc_channel_opts_t *o);

/* Reads consumer options from a config file's keys (docs/config.md):
 * timeout, connect_timeout, attempt_timeout, max_retry, retry_policy
 * (failover|failfast), lb (rr|random|hash|least), backup_request,
 * compress, max_body_size (-> max_body), max_buffered_bytes (0 = unlimited), idempotent_methods, servers,
 * tls (on|off), tls_ca, tls_cert, tls_key, tls_server_name, tls_verify; the governance keys
 * timeout_ms[.METHOD], max_retry.METHOD, degrade[.METHOD], weight.HOST:PORT,
 * disabled.HOST:PORT into o->governance / governance_name (checked by mprpc_channel_new,
 * docs/governance.md). Absent keys leave *o unchanged; strings
 * point into cfg, which must outlive mprpc_channel_new. Errors:
 * MPRPC_ECONFIG with the text in mprpc_config_error(cfg). Defined in
 * src/util/channel_config.c. */
int mprpc_channel_opts_from_config(mprpc_config_t *cfg, mprpc_channel_opts_t *o);

/* Creates a channel for service sd. Any thread. Errors: MPRPC_EINVAL (bad
 * options), MPRPC_EADDR (bad servers list), MPRPC_EUNSUPPORTED (compress_type
 * not one of MPRPC_COMPRESS_*),
 * MPRPC_ENOMEM, or a loop/registry error. sd is borrowed (generated
 * descriptors are static). */
int mprpc_channel_new(const ProtobufCServiceDescriptor *sd, const mprpc_channel_opts_t *o,
                      mprpc_channel_t **out);

/* The core constructor behind mprpc_channel_new (src/rt/defaults.c): o is
 * required and so are o->loop and o->transport; nothing is chosen for the
 * caller. The simulator and the fuzzers, which link libmprpc-core.a only,
 * create channels with it. Same errors. */
int mprpc_channel_new_in(const ProtobufCServiceDescriptor *sd, const mprpc_channel_opts_t *o,
                         mprpc_channel_t **out);

/* Cancels every pending call (each done runs once with NULL and
 * MPRPC_ECANCELED), closes the connections and frees the channel. From a
 * foreign thread it blocks until that has happened (when the loop can
 * block); from the loop thread the memory is released once the last
 * connection reports closed. No call may be started after it. */
void mprpc_channel_destroy(mprpc_channel_t *ch);

/* The service view for protoc-c stubs; owned by the channel.
 * protobuf_c_service_destroy() on it destroys the channel (so use one or
 * the other, not both). */
ProtobufCService *mprpc_channel_service(mprpc_channel_t *ch);

/* Declares a method idempotent (by name) after creation. Before the first
 * call only. MPRPC_ENOTFOUND when the service has no such method. */
int mprpc_channel_set_idempotent(mprpc_channel_t *ch, const char *method, bool idempotent);

/* Parses an idempotent_methods list (syntax above) for service sd without
 * a channel: marks[i] (sd->n_methods entries; may be NULL) is set true for
 * each method the list names for sd. 0, or MPRPC_ENOTFOUND for a method sd
 * does not have, with why (may be NULL) naming it and listing sd's methods:
 * "idempotent_methods: fixbug.UserServiceRpc has no method 'Logn' (it has:
 * Login, Register)". */
int mprpc_channel_parse_idempotent(const ProtobufCServiceDescriptor *sd, const char *list,
                                   bool *marks, char *why, size_t whylen);

/* Asynchronous call of method `method_index` (index in sd->methods), from
 * any thread. input is serialized before returning. ctl may be NULL (see
 * controller.h). 0: done will run exactly once on the loop. An error
 * (MPRPC_EINVAL, MPRPC_ENOMEM, MPRPC_ESTATE when the loop is gone): done
 * never runs; for MPRPC_EINVAL a given ctl's error text says why (e.g.
 * "inv.ReserveRequest.item_id is required"; a stub call hands the same
 * text to done). */
int mprpc_channel_call(mprpc_channel_t *ch, unsigned method_index, const ProtobufCMessage *input,
                       mprpc_controller_t *ctl, ProtobufCClosure done, void *arg);

/* The channel's loop (for posting work next to the calls). */
mprpc_loop_t mprpc_channel_loop(const mprpc_channel_t *ch);

typedef struct mprpc_channel_stats {
  uint64_t calls;          /* calls started */
  uint64_t ok;
  uint64_t failed;
  uint64_t attempts;       /* attempts sent, including retries/backups */
  uint64_t retries;
  uint64_t backups;        /* backup requests sent */
  uint64_t late_responses; /* answers to attempts already given up */
  uint64_t unknown_ids;    /* answers with a correlation id never issued */
  uint64_t ejections;
  uint64_t reconnects;
  uint64_t silent_resets;  /* connections closed by reset_after_timeouts */
  /* Calls answered by degradation instead of a provider (also counted in
   * calls and in ok/failed by their outcome): degrade=fail, degrade=fallback,
   * or the fallback answering because no provider could be used. */
  uint64_t degraded;
  uint64_t fallbacks; /* of those, answered by the method's fallback */
  /* failures by code: the first MPRPC_CHANNEL_MAX_CODES distinct codes */
#define MPRPC_CHANNEL_MAX_CODES 16
  struct {
    int code;
    uint64_t count;
  } by_code[MPRPC_CHANNEL_MAX_CODES];
  size_t ncodes;
} mprpc_channel_stats_t;

/* A snapshot of the counters. Any thread (values read from another thread
 * may lag the loop by a few calls). */
void mprpc_channel_stats(const mprpc_channel_t *ch, mprpc_channel_stats_t *out);

/* A method's local answer when the call cannot or must not reach a
 * provider (docs/governance.md): the breaker has ejected every endpoint, no
 * usable provider is known (none registered, every one disabled or outside
 * the selection, none within the deadline), or the config centre says
 * degrade.METHOD=fallback. Runs on the channel's loop, instead of sending.
 * request is the call's request (decoded again; valid during the call);
 * response is a fresh message of the method's output type to fill in.
 * Pointers stored in response must stay valid until the callback returns
 * control: the channel serialises the response right after (then hands
 * the caller its own copy, as for a provider's answer), and frees only the
 * message struct itself, nothing it points to. Return 0 for a success, or
 * a negative MPRPC_E* code to fail the call with it. */
typedef int (*mprpc_channel_fallback_cb)(void *arg, const ProtobufCMessage *request,
                                         ProtobufCMessage *response);

/* Sets (cb non-NULL) or clears the fallback of a method, by name. Before the
 * first call, like mprpc_channel_set_idempotent. MPRPC_ENOTFOUND when the
 * service has no such method, MPRPC_EINVAL for NULL ch or method. */
int mprpc_channel_set_fallback(mprpc_channel_t *ch, const char *method,
                               mprpc_channel_fallback_cb cb, void *arg);

/* One endpoint as the channel sees it. */
typedef struct mprpc_channel_endpoint_info {
  char name[96];     /* "host:port" ("[v6]:port") */
  uint32_t weight;   /* in effect: the config centre's weight.HOST:PORT or the registered one */
  bool disabled;     /* disabled.HOST:PORT=1 in the config centre */
  bool selected;     /* within the channel's group / version selection */
  uint64_t calls;    /* attempts sent to it (retries and backups included) */
} mprpc_channel_endpoint_info_t;

/* Copies up to max endpoints currently listed into out; returns how many
 * are listed (may be more than max). Any thread: from another thread it
 * runs on the loop and waits (loops that can block), or reads nothing and
 * returns 0. */
size_t mprpc_channel_endpoints(mprpc_channel_t *ch, mprpc_channel_endpoint_info_t *out,
                               size_t max);

/* Number of endpoints currently known (fixed list or registry cache). Loop
 * thread, or any thread for a rough value. */
size_t mprpc_channel_endpoint_count(const mprpc_channel_t *ch);

MPRPC_END_DECLS
#endif
