/*
 * Provider: publishes protobuf-c services over baidu_std (docs/server.md).
 *
 * A server owns a listener, the connections it accepts, and the calls in
 * flight on them. Requests are dispatched by the full service name
 * (ProtobufCServiceDescriptor.name, "package.Service") and the method name to
 * the service's protobuf-c `invoke`; handlers keep protobuf-c's signature and
 * may call their closure inline or later from any thread.
 *
 * The server core runs on the seams only (loop, transport, registry), so the
 * same code runs on the libev runtime and in the deterministic simulator:
 * inject `transport` + `loops` in the options, or leave `transport.vt` NULL
 * and mprpc_server_new (the runtime's facade, src/rt/defaults.c) gives the
 * server its own group of `threads` libev loops and TCP. The core itself
 * (libmprpc-core.a) only has mprpc_server_new_in, which takes them.
 *
 * Functions return 0 or a negative MPRPC_E* code.
 *
 * Threading: new/add_service/start/stop/run/destroy are called from one
 * control thread that is not one of the server's loop threads (in the
 * simulator: from outside any loop callback, or from one for the non-blocking
 * mprpc_server_shutdown). The mprpc_server_call_* accessors are called by the
 * handler (any thread) before it calls the closure. Stats getters: any thread.
 */
#ifndef MPRPC_SERVER_H
#define MPRPC_SERVER_H

#include "mprpc/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "mprpc/config.h"
#include "mprpc/console.h"
#include "mprpc/loop.h"
#include "mprpc/registry.h"
#include "mprpc/trace.h"
#include "mprpc/transport.h"

MPRPC_BEGIN_DECLS

typedef struct mprpc_server mprpc_server_t;
typedef struct mprpc_server_call mprpc_server_call_t;

/* Authenticator: runs on the connection's loop thread for the first request
 * of a connection that carries (or lacks) authentication_data; 0 accepts and
 * marks the connection authenticated (later requests are not checked, as in
 * brpc), anything else rejects that request with ERPCAUTH (the connection
 * stays open and the next request is checked again). `data` is not
 * NUL-terminated and is only valid during the call. */
typedef int (*mprpc_server_auth_cb)(void *ud, const uint8_t *data, size_t len, const char *peer);

/* The same with the TLS identity of the connection: identity is the
 * verified client certificate's "subject=<RFC 2253 DN>;san=DNS:a,IP:b,..."
 * (mTLS, docs/security.md), or NULL for a plain connection or one whose
 * client sent no certificate. Set as authenticate_tls; used instead of
 * authenticate when both are set. */
typedef int (*mprpc_server_auth_tls_cb)(void *ud, const uint8_t *data, size_t len,
                                        const char *peer, const char *identity);

/* TLS on the provider's port (config key tls_mode). */
typedef enum mprpc_server_tls_mode {
  MPRPC_SERVER_TLS_OFF = 0,      /* plain baidu_std only (default) */
  MPRPC_SERVER_TLS_OPTIONAL = 1, /* TLS and plain on the same port, by the first byte */
  MPRPC_SERVER_TLS_REQUIRED = 2, /* TLS only; published as tls=1 in the registry */
} mprpc_server_tls_mode_t;

/* Client certificates (config key tls_verify_client). */
typedef enum mprpc_server_tls_verify {
  MPRPC_SERVER_TLS_VERIFY_OFF = 0,      /* none asked for (default) */
  MPRPC_SERVER_TLS_VERIFY_OPTIONAL = 1, /* asked for; one that is sent must verify */
  MPRPC_SERVER_TLS_VERIFY_REQUIRED = 2, /* mutual TLS: a client without one is refused */
} mprpc_server_tls_verify_t;

/* Where handlers run when they are not run on the loop: a pool of threads
 * (handler_threads) in production. submit may be called from a loop
 * thread; fn(arg) then runs on another thread. 0, or an error (the server
 * then runs the handler on the loop). */
typedef struct mprpc_executor_ops {
  int (*submit)(void *ctx, void (*fn)(void *arg), void *arg);
} mprpc_executor_ops_t;

typedef struct mprpc_executor {
  const mprpc_executor_ops_t *vt;
  void *ctx;
} mprpc_executor_t;

/* Makes a builtin service over the server's own services when it starts,
 * and frees it with the server. The facade (mprpc_server_new) supplies the
 * mprpc.Reflection one (src/util/reflection.c); the core has none. */
typedef struct mprpc_service_factory_ops {
  int (*make)(void *ctx, ProtobufCService *const *services, size_t n, ProtobufCService **out);
  void (*destroy)(void *ctx, ProtobufCService *svc);
} mprpc_service_factory_ops_t;

typedef struct mprpc_service_factory {
  const mprpc_service_factory_ops_t *vt;
  void *ctx;
} mprpc_service_factory_t;

/* Called once when a non-blocking shutdown completes (on loops[0]'s thread). */
typedef void (*mprpc_server_done_cb)(void *ud);

typedef struct mprpc_server_opts {
  /* Listen address: numeric host (NULL = "0.0.0.0") and port (0 = any free
   * port; see mprpc_server_port). */
  const char *host;
  uint16_t port;
  /* Production runtime: number of I/O loops (0 = 1) used when transport.vt
   * is NULL. */
  size_t threads;
  /* Handlers run on a pool of this many threads instead of the loop
   * (0 = on the loop, the default; config key handler_threads). Blocking
   * handlers and synchronous calls to other services are fine there; on
   * the loop a blocking handler stalls every connection of its loop, and a
   * synchronous stub call fails at once with MPRPC_EDEADLK. The pool is
   * created by mprpc_server_new (production); with an injected
   * environment, pass `executor` instead. */
  size_t handler_threads;
  mprpc_executor_t executor;  /* injected handler executor (vt NULL = none) */
  /* Injected environment (simulator, tests, or a shared runtime). When
   * transport.vt is non-NULL, loops/nloops must be given and outlive the
   * server; the server never starts or stops them. */
  mprpc_transport_t transport;
  const mprpc_loop_t *loops;
  size_t nloops;
  /* Registry to publish to (vt NULL = none). Not owned: the caller closes it
   * after mprpc_server_destroy ... */
  mprpc_registry_t registry;
  /* ... unless own_registry: then mprpc_server_destroy closes it last (as
   * mprpc_server_from_config sets up). Not closed when mprpc_server_new
   * fails: the caller still owns it then. */
  bool own_registry;
  const char *advertise_host; /* host published; NULL = `host` (must then be
                                 a concrete address, not 0.0.0.0) */
  uint32_t weight;            /* 0 = MPRPC_DEFAULT_WEIGHT */
  const char *version;        /* free-form, may be NULL */
  const char *group;          /* published group ([A-Za-z0-9_.-], 1-64); NULL = "default" */
  /* Governance defaults of this process (docs/governance.md, "The local
   * config"): config-centre lines such as "rate_limit.Echo=100\n
   * max_concurrency.Echo=8", applied to every service at start whatever the
   * registry; under a config centre (zk://, file://) its nodes win key by
   * key. A bad line is logged at WARN as "config NAME:LINE: ..." and
   * ignored. governance_name names the text in those lines (the config
   * file; NULL = "local config"). Both copied; NULL = none. */
  const char *governance;
  const char *governance_name;
  /* Limits. 0 means the default given in brackets. */
  uint32_t max_body;              /* frame body limit [64 MiB] */
  size_t max_decode_bytes;        /* memory one request may allocate while
                                     unpacking [16 * payload + 64 KiB] */
  uint32_t max_concurrency;       /* calls in flight, whole server [unlimited] */
  uint32_t max_method_concurrency;/* calls in flight per method [unlimited] */
  uint64_t idle_timeout_ms;       /* close connections idle this long [10 min];
                                     UINT64_MAX = never */
  uint64_t drain_timeout_ms;      /* graceful stop: wait for in-flight calls [5000] */
  uint64_t logoff_grace_ms;       /* graceful stop: keep connections open answering
                                     ELOGOFF at least this long, so clients that
                                     have not seen the registry change yet fail
                                     over instead of finding the connection
                                     closed; capped by drain_timeout_ms [200] */
  size_t high_water;              /* per-connection outbound buffer [64 MiB] */
  mprpc_server_auth_cb authenticate; /* NULL = no authentication */
  void *auth_ud;
  uint64_t stats_log_period_ms;   /* log per-method stats this often [off] */
  uint64_t slow_handler_warn_ms;  /* a handler holding its loop longer is logged
                                     (WARN, rate limited) and counted [100];
                                     UINT64_MAX = never */
  /* Serve mprpc.Reflection (ListServices, GetFileDescriptorSet) over the
   * added services, so `mprpc describe` and `mprpc call` need no .proto
   * [on]. It is not published to the registry. Made by reflection_factory
   * at start (mprpc_server_new fills it in when vt is NULL); skipped when
   * the program added its own mprpc.Reflection. */
  bool reflection;
  mprpc_service_factory_t reflection_factory;
  uint32_t rpcz_every;            /* /rpcz keeps one call in this many, per
                                     loop [1: every call]; UINT32_MAX = none
                                     (no ring is allocated) */
  /* The builtin console (docs/console.md): HTTP/1.1 on the service port,
   * told apart from baidu_std by a connection's first bytes (config keys
   * console, console_port, console_write). mprpc_server_opts_init turns it
   * on; a zeroed struct has it off. */
  bool console;
  uint16_t console_port; /* serve it on this port instead (same host); 0 = the
                            service port. A port of its own speaks only HTTP */
  bool console_write;    /* POST /flags/NAME allowed [off: 403] */
  /* Seams the console reads from; mprpc_server_new (the facade) fills the
   * ones left empty: JSON for HTTP/JSON calls, process figures and the
   * process's channels for /metrics. */
  mprpc_json_codec_t json;
  mprpc_procinfo_t procinfo;
  mprpc_channel_list_t channels;
  /* Protection against hostile or broken clients (docs/server.md, "Limits
   * and refusals"). Every refusal is counted by reason in
   * mprpc_server_stats and logged at most once a second per reason. */
  size_t max_buffered_bytes;      /* memory budget, whole provider: request bytes
                                     received and not yet handed to a handler
                                     plus response bytes waiting to be written
                                     [256 MiB]; SIZE_MAX = unlimited */
  uint64_t budget_wait_ms;        /* at the budget, a paused connection making
                                     no progress this long is closed [2000] */
  uint64_t header_timeout_ms;     /* a frame header must arrive this long after
                                     the frame's first byte [10000];
                                     UINT64_MAX = never */
  uint32_t min_body_rate;         /* bytes/s a body must keep arriving at,
                                     after a 1 s grace [16384]; UINT32_MAX = off */
  uint32_t max_connections;       /* open connections; more are accepted and
                                     closed at once [mprpc_server_new: from
                                     RLIMIT_NOFILE less a reserve;
                                     mprpc_server_new_in: unlimited];
                                     UINT32_MAX = unlimited */
  uint32_t max_connections_per_ip;/* open connections per client address [off] */
  mprpc_server_auth_tls_cb authenticate_tls; /* NULL = authenticate (uses auth_ud) */
  /* TLS (docs/security.md). mprpc_server_new wraps the transport (TCP, or
   * the injected one) with the TLS decorator (include/mprpc/tls.h) when
   * tls_mode is not OFF; the files are read and checked then, and a file
   * that cannot be read, or a key that does not match its certificate,
   * fails it with MPRPC_ETLS and an ERROR line naming the file.
   * mprpc_server_new_in takes the transport as it is (the caller wraps it)
   * and uses tls_mode only to publish tls=1 when REQUIRED. */
  int tls_mode;                   /* mprpc_server_tls_mode_t */
  const char *tls_cert;           /* PEM certificate chain (required with TLS) */
  const char *tls_key;            /* PEM private key, unencrypted */
  const char *tls_ca;             /* PEM CAs trusted for client certificates */
  int tls_verify_client;          /* mprpc_server_tls_verify_t (needs tls_ca) */
  uint64_t tls_handshake_timeout_ms; /* a handshake not done by then is closed [5000] */
} mprpc_server_opts_t;

/* Fills defaults (all zero except drain_timeout_ms = 5000,
 * logoff_grace_ms = 200, reflection = true and console on). */
void mprpc_server_opts_init(mprpc_server_opts_t *o);

/* Reads provider options from a config file's keys (docs/server.md):
 * rpcserverip/rpcserverport (listen address, parsed into *listen, which
 * o->host then points into), threads, handler_threads, max_body_size, max_concurrency,
 * max_method_concurrency, idle_timeout, drain_timeout, logoff_grace, stats_period, slow_handler_warn_ms,
 * rpcz_every, max_buffered_bytes, budget_wait, header_timeout, min_body_rate, max_connections,
 * max_connections_per_ip (for these limits and idle_timeout, 0 in the file means off),
 * advertise_host, weight, version, reflection (on|off), console, console_port, console_write,
 * tls_mode (off|optional|required), tls_cert, tls_key, tls_ca, tls_verify_client
 * (off|optional|required), tls_handshake_timeout; the governance keys rate_limit[.METHOD]
 * and max_concurrency.METHOD into o->governance / governance_name (checked at start,
 * docs/governance.md). Absent keys leave *o unchanged; string
 * options point into cfg or *listen, which must outlive mprpc_server_new.
 * Errors: MPRPC_ECONFIG (text in mprpc_config_error(cfg)), MPRPC_ERANGE
 * (max_body_size 0 or over 4 GiB - 1). Defined in src/util/server_config.c. */
int mprpc_server_opts_from_config(mprpc_config_t *cfg, mprpc_server_opts_t *o,
                                  mprpc_hostport_t *listen);

/* The provider's listen address: rpcserverip + rpcserverport (the seeds'
 * keys). MPRPC_ENOTFOUND when rpcserverip is absent; port defaults to 0
 * (any free port). Defined in src/util/server_config.c. */
int mprpc_config_server_addr(mprpc_config_t *cfg, mprpc_hostport_t *out);

/* Creates a stopped server. The options are copied (strings included; the
 * loops array too). *out is owned by the caller: mprpc_server_destroy.
 * Errors: MPRPC_EINVAL (transport given without loops), MPRPC_ENOMEM, or the
 * runtime's error when it could not create its loops. */
int mprpc_server_new(const mprpc_server_opts_t *opts, mprpc_server_t **out);

/* Loops a server owns: started by mprpc_server_start, stopped (threads
 * joined) by the graceful stop, freed by mprpc_server_destroy. The facade
 * passes a loop group's hooks here; injected loops have none. */
typedef struct mprpc_loop_owner_ops {
  int (*start)(void *ctx);
  void (*stop)(void *ctx); /* idempotent; not from one of the loops */
  void (*free)(void *ctx); /* stops first if needed */
  /* Optional: re-reads the TLS files of the transport the owner made
   * (mprpc_server_reload_tls); NULL = the server has no TLS of its own. */
  int (*reload_tls)(void *ctx, char *err, size_t errlen);
} mprpc_loop_owner_ops_t;

typedef struct mprpc_loop_owner {
  const mprpc_loop_owner_ops_t *vt; /* NULL: the loops are not the server's */
  void *ctx;
} mprpc_loop_owner_t;

/* The core constructor: like mprpc_server_new, but opts->transport and
 * opts->loops are required (MPRPC_EINVAL otherwise) and nothing is chosen
 * for the caller. On success the server owns `owner` (it calls owner's
 * free in mprpc_server_destroy); on failure the caller keeps it. */
int mprpc_server_new_in(const mprpc_server_opts_t *opts, mprpc_loop_owner_t owner,
                        mprpc_server_t **out);

/* Adds a service before start. The service is borrowed: it must outlive the
 * server (the server never calls service->destroy). Errors: MPRPC_EEXIST
 * (a service with the same full name), MPRPC_ESTATE (already started),
 * MPRPC_EINVAL, MPRPC_ENOMEM. */
int mprpc_server_add_service(mprpc_server_t *s, ProtobufCService *service);

/* Per-method concurrency limit overriding max_method_concurrency (0 =
 * unlimited). Before start: MPRPC_ESTATE after. MPRPC_ENOTFOUND when no
 * such method was added, MPRPC_EINVAL when s is NULL. */
int mprpc_server_set_method_limit(mprpc_server_t *s, const char *service, const char *method,
                                  uint32_t max_concurrency);

/* Starts the loops (production), listens, and registers every service with
 * the registry. Non-blocking. On error nothing is left listening.
 * Errors: MPRPC_ESTATE (started twice), the transport's listen error
 * (e.g. MPRPC_EADDRINUSE), MPRPC_ECONFIG (registry without a concrete host
 * to advertise), the registry's register error. */
int mprpc_server_start(mprpc_server_t *s);

/* Re-reads the certificate, key and CA files of a TLS server made by
 * mprpc_server_new (on a call, or on SIGHUP as the examples do): new
 * connections get the new ones, established ones keep what they have. On
 * failure the server keeps the previous ones; err (may be NULL) names the
 * file and OpenSSL's reason. Any thread. MPRPC_EUNSUPPORTED when the
 * server has no TLS, MPRPC_ETLS when a file is bad. */
int mprpc_server_reload_tls(mprpc_server_t *s, char *err, size_t errlen);

/* The bound port once started (useful with port 0); 0 before start. */
uint16_t mprpc_server_port(const mprpc_server_t *s);
/* The console's port once started: console_port's bound port, or the
 * service port when the console shares it; 0 when the console is off or
 * before start. */
uint16_t mprpc_server_console_port(const mprpc_server_t *s);

/* The seeds' Run: starts if needed, then blocks until
 * mprpc_server_stop_async() (or mprpc_server_stop() from another thread) is
 * called, performs the graceful stop and returns 0. Needs loops that can
 * block (the production runtime); MPRPC_EUNSUPPORTED in the simulator. */
int mprpc_server_run(mprpc_server_t *s);

/* Async-signal-safe: only stores an atomic flag. A thread blocked in
 * mprpc_server_run notices it within ~20 ms and stops gracefully. Safe to call
 * from a signal handler, any thread, any number of times. */
void mprpc_server_stop_async(mprpc_server_t *s);

/* Graceful stop, blocking until done: unregister every service from the
 * registry, stop listening, answer new requests with ELOGOFF, wait for calls
 * in flight up to drain_timeout_ms, flush and close every connection, and
 * (production) stop the server's own loops. Idempotent (0 when already
 * stopped or never started; a call made while another thread is stopping the
 * server returns 0 at once). Must not be called on one of the server's loop
 * threads (MPRPC_ESTATE). Needs blocking loops (MPRPC_EUNSUPPORTED otherwise:
 * use mprpc_server_shutdown). Calls whose handler never called the closure
 * stay allocated until mprpc_server_destroy. */
int mprpc_server_stop(mprpc_server_t *s);

/* The same graceful stop, non-blocking (for the simulator and loop threads):
 * done(ud) runs once on loops[0]'s thread when every connection is closed.
 * MPRPC_ESTATE when not running (done is not called). */
int mprpc_server_shutdown(mprpc_server_t *s, mprpc_server_done_cb done, void *ud);

/* Stops if needed (graceful, with blocking loops), then frees everything,
 * including calls whose handler never called its closure (their closure must
 * not be called afterwards). On non-blocking loops (simulator) a server that
 * is still running is abandoned like a crashed process: no unregister, no
 * drain; the listener and connections are closed and the memory is freed
 * after the last pending on_close / posted task has run on the loops. */
void mprpc_server_destroy(mprpc_server_t *s);

/* ---- per-call context (from a handler's closure_data) ------------------- */

/* The call a closure_data belongs to. Valid until the closure has been called
 * (from then on neither the call nor the input message may be used). */
mprpc_server_call_t *mprpc_server_call_from(void *closure_data);

typedef struct mprpc_server_call_meta {
  int64_t correlation_id;
  int64_t log_id;
  int64_t trace_id;
  int64_t span_id;
  int64_t parent_span_id;
  const char *request_id; /* NUL-terminated copy; "" when absent */
  int32_t timeout_ms;     /* as sent; <= 0 means no deadline */
  const char *service;    /* full name, package.Service */
  const char *method;
  const char *peer;       /* "host:port" of the client */
} mprpc_server_call_meta_t;

/* Pointers inside stay valid as long as the call. The ids are as sent. */
const mprpc_server_call_meta_t *mprpc_server_call_meta(const mprpc_server_call_t *c);
/* The context calls made on behalf of this call should join: {trace_id,
 * span_id} of the span the server serves it as (the request's ids, or
 * fresh ones when the request carried no trace_id / span_id). A plain
 * value: keep it past the closure, hand it to another thread, then pass it
 * to mprpc_controller_set_trace or mprpc_trace_set_current there. Inside
 * the handler itself mprpc_trace_current() already returns it. */
mprpc_trace_ctx_t mprpc_server_call_trace(const mprpc_server_call_t *c);

/* The verified TLS client certificate of the call's connection:
 * "subject=<RFC 2253 DN>;san=DNS:name,IP:addr,URI:...,email:..." (mutual
 * TLS), or NULL (plain connection, no certificate sent, or no TLS). Valid
 * as long as the call. */
const char *mprpc_server_call_peer_identity(const mprpc_server_call_t *c);
/* Request attachment (a copy owned by the call; len 0 when none). */
const uint8_t *mprpc_server_call_attachment(const mprpc_server_call_t *c, size_t *len);
/* Nanoseconds left before the client's deadline (arrival + timeout_ms);
 * INT64_MAX when the request had no timeout; negative once passed. Reads the
 * connection loop's clock: call it on that loop's thread (inline handlers), or
 * from another thread only when the loop's now_ns is thread-safe (rt's is). */
int64_t mprpc_server_call_remaining_ns(const mprpc_server_call_t *c);
/* Fails the call: the response carries `code` (an MPRPC_E* code, negative, or
 * a positive application code) and `text` (copied; may be NULL) and no
 * payload, whatever output the closure gets. 0 or MPRPC_EINVAL (code 0). */
int mprpc_server_call_set_error(mprpc_server_call_t *c, int code, const char *text);
/* Response attachment, copied. Replaces an earlier one. 0 or MPRPC_ENOMEM. */
int mprpc_server_call_set_attachment(mprpc_server_call_t *c, const void *p, size_t len);
/* How the response payload is compressed: MPRPC_COMPRESS_{NONE,SNAPPY,GZIP,
 * ZLIB} (brpc's set_response_compress_type). The default is the request's
 * compress_type. Call it before the closure. 0 or MPRPC_EINVAL. */
int mprpc_server_call_set_response_compress(mprpc_server_call_t *c, int compress_type);

/* ---- stats --------------------------------------------------------------- */

/* Error codes counted per method; slot MPRPC_SERVER_NCODES-1 is "other". */
#define MPRPC_SERVER_NCODES 8
/* The MPRPC_E* code a slot counts (0 for the "other" slot). */
int mprpc_server_stats_code(size_t slot);

typedef struct mprpc_method_stats {
  const char *service; /* static for the server's life */
  const char *method;
  uint64_t requests;   /* requests routed to this method (incl. rejected) */
  uint64_t errors;     /* responses with a non-zero error_code */
  uint64_t errors_by_code[MPRPC_SERVER_NCODES];
  uint64_t inflight;   /* handlers running or not yet completed */
  uint64_t completed;  /* calls whose handler ran and called the closure */
  uint64_t slow_handlers; /* invocations that held their loop past
                             slow_handler_warn_ms (on-loop handlers only) */
  /* Latency of completed calls (arrival to closure), microseconds; upper
   * bounds of log-linear buckets (<= 12.5% over the true value). */
  uint64_t p50_us, p99_us, p999_us, max_us;
  /* Calls refused with ELIMIT before the handler ran, by reason (also in
   * errors_by_code's ELIMIT slot): rate_limit, and max_concurrency (the
   * config centre's N or auto, max_concurrency, max_method_concurrency). */
  uint64_t refused_rate_limit;
  uint64_t refused_max_concurrency;
} mprpc_method_stats_t;

typedef struct mprpc_server_stats {
  uint64_t connections_accepted;
  uint64_t connections_open;
  uint64_t connections_idle_closed;
  uint64_t malformed_frames;   /* connections closed for a bad frame */
  uint64_t unknown_service;    /* ENOSERVICE answers */
  uint64_t unknown_method;     /* ENOMETHOD answers */
  uint64_t rejected_unrouted;  /* ELOGOFF/ERPCAUTH/EREQUEST before routing */
  uint64_t inflight;
  uint64_t closures_twice;     /* second closure calls ignored */
  uint64_t responses_dropped;  /* completed after their connection closed */
  /* Limits (docs/server.md, "Limits and refusals"). refused_* count
   * connections closed or refused, one reason each. */
  uint64_t refused_budget;          /* paused at the budget without progress
                                       for budget_wait_ms, closed */
  uint64_t refused_header_timeout;  /* frame header not complete in time */
  uint64_t refused_slow_body;       /* body below min_body_rate */
  uint64_t refused_max_connections; /* accepted past max_connections, closed */
  uint64_t refused_per_ip;          /* past max_connections_per_ip, closed */
  uint64_t buffered_bytes;          /* counted against max_buffered_bytes now */
  uint64_t buffered_bytes_peak;     /* the most ever counted */
  uint64_t max_buffered_bytes;      /* the budget in force */
  uint64_t reads_paused;            /* times a connection's reads were paused */
  uint64_t connections_paused;      /* connections paused now */
} mprpc_server_stats_t;

void mprpc_server_stats(const mprpc_server_t *s, mprpc_server_stats_t *out);
size_t mprpc_server_method_count(const mprpc_server_t *s);
/* Method i in registration order; MPRPC_ERANGE past the end. */
int mprpc_server_method_stats_at(const mprpc_server_t *s, size_t i, mprpc_method_stats_t *out);
/* By name; MPRPC_ENOTFOUND when not served. */
int mprpc_server_method_stats(const mprpc_server_t *s, const char *service, const char *method,
                              mprpc_method_stats_t *out);
/* Logs one INFO line per method (what the periodic stats log prints). */
void mprpc_server_log_stats(const mprpc_server_t *s);

/* ---- rpcz: the last calls served (docs/console.md, "/rpcz") ------------- */

/* Calls the ring keeps. */
#define MPRPC_RPCZ_SPANS 1024

/* One completed call, recorded on its loop when the response was handed to
 * the connection (refusals after routing, e.g. ELIMIT, included; requests
 * for unknown services or methods are not recorded). */
typedef struct mprpc_rpcz_span {
  uint64_t start_wall_ns;   /* arrival, wall clock, ns since the Unix epoch */
  uint64_t latency_us;      /* arrival to response */
  const char *service;      /* static for the server's life */
  const char *method;
  char peer[64];            /* "host:port" of the client */
  int64_t trace_id, span_id, parent_span_id; /* as served (see
                                                mprpc_server_call_trace) */
  int32_t error_code;       /* as sent: positive wire code, 0 = success */
  uint64_t request_bytes;   /* the request frame, header included */
  uint64_t response_bytes;  /* the response frame, header included */
} mprpc_rpcz_span_t;

/* Copies up to max recorded spans into out, newest first, only those of
 * trace trace_id when it is non-zero; returns how many. Any thread; calls
 * completing meanwhile are either in or not, never torn. 0 when the
 * server records none (rpcz_every = UINT32_MAX). */
size_t mprpc_server_rpcz_snapshot(const mprpc_server_t *s, mprpc_rpcz_span_t *out, size_t max,
                                  int64_t trace_id);

MPRPC_END_DECLS
#endif
