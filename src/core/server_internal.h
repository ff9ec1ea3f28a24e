/*
 * Provider internals shared by server.c (construction, method table),
 * server_conn.c (connection I/O), server_dispatch.c (request dispatch),
 * server_call.c (call blocks, closure, completion), server_life.c (start,
 * stop, destroy) and server_stats.c.
 *
 * Threading: a connection and its calls belong to one loop; everything in
 * srv_loop/srv_conn and a call's refs/links is touched on that loop's thread
 * only. Cross-thread state is atomic: the server's state and counters, the
 * per-method stats, and a call's `done` flag (the closure may race).
 */
#ifndef MPRPC__SERVER_INTERNAL_H
#define MPRPC__SERVER_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/arena.h"
#include "core/limiter.h"
#include "core/ratelimit.h"
#include "core/one_writer.h"
#include "mprpc/buf.h"
#include "mprpc/frame.h"
#include "mprpc/loop.h"
#include "mprpc/transport.h"
#include "mprpc/server.h"

#define MPRPC__HIST_BUCKETS 320
#define MPRPC__QUARANTINE 256
/* Calls whose request attachment and request_id fit in this many bytes
 * come from a per-loop pool (after their time in quarantine) and carry an
 * arena in the rest of the block for the decoded request and the packed
 * response, so a small call allocates nothing. */
#define MPRPC__CALL_TAIL 1024
#define MPRPC__CALL_POOL 256

/* A method's counters on one loop. A request is dispatched and completed
 * on its connection's loop, so that loop's thread is the only writer
 * (core/one_writer.h: no locked operation per call); readers sum the loops.
 * Without a method limit, in flight is admitted - completed (see
 * mprpc__srv_method_inflight). */
/* Why dispatch refused a call with ELIMIT (mprpc__mstats_t.refused). */
enum {
  MPRPC__REFUSED_RATE = 0, /* rate_limit (token bucket) */
  MPRPC__REFUSED_CONC = 1, /* max_concurrency: the config centre's N or auto, the server's
                              max_concurrency, max_method_concurrency */
  MPRPC__REFUSED_N
};

typedef struct mprpc__mstats {
  uint64_t requests, errors, completed, admitted, max_us;
  uint64_t ok;     /* answered with error_code 0 */
  uint64_t sum_us; /* latency of completed calls, summed */
  uint64_t slow; /* handlers that held the loop past slow_handler_warn_ms */
  /* Calls refused before the handler, by reason (MPRPC__REFUSED_*): the
   * only count of each; all of them are also in by_code's ELIMIT. */
  uint64_t refused[MPRPC__REFUSED_N];
  uint64_t by_code[MPRPC_SERVER_NCODES];
  uint64_t hist[MPRPC__HIST_BUCKETS];
} mprpc__mstats_t;

/* A method's config-centre limits (server_gov.c). Written by the loop that
 * receives the config (loops[0]), read by every loop: all atomic. A call
 * remembers in its gov_taken bits what it took, so a limit that changes
 * while calls are in flight never unbalances a counter. */
typedef struct srv_gov_method {
  mprpc__ratelimit_t rl;               /* rate_limit.METHOD (0 = unlimited) */
  atomic_uint conc;                    /* max_concurrency.METHOD=N (0 = none) */
  atomic_bool conc_auto;               /* max_concurrency.METHOD=auto */
  atomic_uint_fast64_t conc_inflight;  /* calls holding a `conc` slot */
  atomic_uint_fast64_t refused_log;    /* last refusal log line (loop clock ns) */
  mprpc__limiter_t lim;                /* the adaptive limiter (initialised at start) */
} srv_gov_method_t;

enum { MPRPC__GOV_TOOK_CONC = 1u << 0, MPRPC__GOV_TOOK_AUTO = 1u << 1 };

typedef struct srv_method {
  const char *service; /* descriptor strings: static */
  const char *name;
  size_t service_len, name_len;
  ProtobufCService *svc;
  unsigned index;
  const ProtobufCMethodDescriptor *desc;
  uint32_t limit; /* 0 = unlimited; changed at run time by POST /flags: __atomic */
  /* With a limit, in flight on all loops, counted up and down (the limit
   * is shared, so this one is a locked counter). */
  atomic_uint_fast64_t limit_inflight;
  mprpc__mstats_t *st; /* one per loop (mprpc_server_t.nloops) */
  struct mprpc__mring *ring; /* per-second qps/p99 of the last 60 s (server_stats.c) */
  srv_gov_method_t gov;
} srv_method_t;

typedef struct srv_loop srv_loop_t;
typedef struct srv_conn srv_conn_t;

struct srv_loop {
  mprpc_server_t *s;
  size_t idx; /* in s->sl: selects the per-loop method stats */
  mprpc_loop_t loop;
  srv_conn_t *conns; /* every conn not yet freed, incl. closed with calls */
  mprpc_server_call_t *quarantine[MPRPC__QUARANTINE];
  size_t qpos;
  mprpc_server_call_t *pool; /* out of quarantine, linked through next */
  size_t npool;
  uint64_t bytes_in, bytes_out; /* one writer: this loop's thread */
  /* The loop clock when the last inline handler returned: a request cut
   * from the same read as a slow one starts its watch there, not at the
   * read, so it is not blamed for the other's time (no extra clock read). */
  uint64_t handler_done_ns;
  uint32_t rpcz_tick; /* calls completed here, for rpcz_every sampling */
  size_t npaused;        /* conns of this loop whose reads are paused */
  uint64_t budget_timer; /* runs while npaused > 0 (server_budget.c) */
};

struct srv_conn {
  mprpc_server_t *s;
  srv_loop_t *l;
  mprpc_conn_t *c; /* NULL after on_close */
  mprpc_rbuf_t in;
  srv_conn_t *prev, *next;
  mprpc_server_call_t *calls; /* live calls (not yet freed) */
  size_t ncalls;
  size_t inflight; /* dispatched, not yet completed */
  uint64_t idle_timer;
  uint64_t last_active;
  bool closing, closed, authed;
  bool id_fetched; /* identity read from the transport (first request) */
  bool batching;   /* inside on_data: small responses go to wbuf */
  srv_method_t *last_m; /* the method of the last request (lookup cache) */
  uint8_t *wbuf;   /* responses batched for one writev per on_data */
  size_t wlen, wcap;
  /* The memory budget and the slow-client clocks (server_budget.c). */
  size_t in_len;   /* bytes of `in` at the end of the last on_data */
  size_t held_in;  /* what `in` counts against the budget (see
                      MPRPC__BUDGET_SMALL_RBUF) */
  size_t held_out; /* written since the backlog was last known empty */
  size_t held;     /* held_in + held_out as counted in s->buffered */
  bool has_frame;  /* `in` holds a partial frame */
  bool paused;     /* reads paused by the budget */
  uint64_t frame_start;   /* its first byte (or the previous frame's end) */
  uint64_t frame_len;     /* its length once the header is in, else 0 */
  uint64_t body_check_at; /* next min_body_rate check */
  uint64_t body_mark_rx;  /* bytes_in at the start of the rate window */
  uint64_t frame_timer, frame_timer_at;
  uint64_t paused_at;
  int32_t ip_slot; /* max_connections_per_ip table slot, -1 = none */
  char peer[64];
  /* console (console.c) and /connections */
  uint8_t proto;      /* mprpc__proto_t once the first bytes told; 0 before */
  bool console_only;  /* accepted on console_port: HTTP only */
  int pins;           /* console work in flight referring to the conn */
  struct mprpc__ccon *http; /* HTTP state once proto is HTTP */
  uint64_t created_ns, nrequests, bytes_in, bytes_out;
  size_t in_seen;     /* bytes of `in` already counted in bytes_in */
  char *identity; /* the TLS client certificate's, or NULL (transport.h) */
};

#define MPRPC__CALL_MAGIC 0x6d707263u

struct mprpc_server_call {
  uint32_t magic;
  atomic_int done; /* 0 until the closure's first call */
  int refs;        /* loop thread only: invoke + completion */
  mprpc_server_t *s;
  srv_conn_t *conn;
  srv_method_t *m;
  mprpc_server_call_t *prev, *next;
  mprpc_server_call_meta_t meta;
  uint64_t arrival_ns;
  uint64_t deadline_ns; /* 0 = none */
  ProtobufCMessage *input;
  ProtobufCAllocator alloc;
  size_t alloc_used, alloc_limit;
  bool limited;            /* took a slot of its method's limit */
  bool pooled;             /* a MPRPC__CALL_TAIL block: back to the pool */
  mprpc__arena_t arena;    /* the rest of a pooled block; empty otherwise */
  size_t heap_allocs;      /* unpack allocations that missed the arena */
  const uint8_t *att;
  size_t att_len;
  /* the span this call is served as (mprpc_server_call_trace); the parent
   * is meta.parent_span_id */
  int64_t trace_id, span_id;
  uint64_t req_bytes; /* the request frame, for /rpcz */
  /* response, filled by the handler / closure */
  int32_t err_wire; /* positive wire code, 0 = success */
  char *err_text;
  uint8_t *resp_att;
  size_t resp_att_len;
  uint8_t *payload;
  int compress_type; /* of the response payload: the request's, or set by the handler */
  bool encoded;
  bool completed;
  uint8_t gov_taken; /* MPRPC__GOV_TOOK_* (server_gov.c) */
  /* Last, and not zeroed by mprpc__srv_call_alloc (its inline head is
   * 256 bytes): only read once encode_response has initialised it. */
  mprpc_frame_out_t out;
  /* request attachment and request_id bytes follow the struct */
};

enum { SRV_NEW = 0, SRV_RUNNING, SRV_STOPPING, SRV_STOPPED };

struct mprpc_server {
  mprpc_server_opts_t o;
  char *host, *advertise_host, *version;
  mprpc_transport_t t;
  mprpc_loop_t *loops;
  size_t nloops;
  mprpc_loop_owner_t owner; /* loops the server starts and stops, or none */
  srv_loop_t *sl;            /* one per loop */
  mprpc_listener_t *listener;
  uint16_t port;

  ProtobufCService **services;
  size_t nservices;
  ProtobufCService *builtin; /* made by reflection_factory at start; not registered */
  srv_method_t **methods; /* registration order; pointers stable */
  size_t nmethods;
  uint32_t *stab, *mtab; /* open addressing: index or UINT32_MAX */
  size_t stab_cap, mtab_cap;

  atomic_int state;
  atomic_int stopping; /* new requests get ELOGOFF */
  atomic_int stop_requested;
  atomic_uint_fast64_t inflight;
  atomic_uint_fast64_t open_conns;
  atomic_int closeall_pending;
  atomic_int tasks; /* posted tasks not yet run (see mprpc__srv_post) */
  bool zombie;      /* destroyed while running: freed by the last callback */

  /* shutdown state machine (loops[0]) */
  int sd_phase;
  uint64_t sd_deadline, sd_grace_end, sd_timer;
  mprpc_server_done_cb sd_done;
  void *sd_ud;
  uint64_t stats_timer, run_timer;
  void *run_waiter;
  atomic_int run_woken;

  /* the loop-stall watchdog (server_dispatch.c) */
  uint64_t slow_ns; /* slow_handler_warn_ms in ns */
  atomic_uint_fast64_t slow_last_log, slow_unlogged;

  /* the last calls served (core/rpcz.h); NULL when rpcz_every is
   * UINT32_MAX. Written by every loop, read by /rpcz and the snapshot. */
  struct mprpc__rpcz *rpcz;
  /* the console (console.c) and the per-second ring (server_stats.c) */
  mprpc_listener_t *console_listener;
  uint16_t console_port;
  uint64_t start_wall_ns;
  uint64_t ring_timer;
  uint64_t ring_ticks; /* seconds recorded so far: __atomic, one writer (loops[0]) */
  atomic_uint_fast64_t con_last_log, con_unlogged; /* rate limit of console warnings */
  atomic_uint_fast64_t st_http_requests;
  atomic_uint_fast64_t st_http_refused[6]; /* by status: 400 401 403 404 413 431 */
  struct srv_gov *gov; /* config-centre watches (server_gov.c); NULL: none */
  char *group;          /* published group; NULL = "default" */
  char *gov_text, *gov_name; /* opts.governance / governance_name, copied */
  /* limits (server_budget.c): resolved defaults, shared counters */
  uint64_t budget;          /* max_buffered_bytes; UINT64_MAX = unlimited */
  uint64_t budget_wait_ns, header_ns; /* UINT64_MAX = never */
  uint64_t body_rate;       /* bytes/s; 0 = off */
  uint32_t max_conns, max_per_ip; /* 0 = unlimited / off */
  atomic_uint_fast64_t buffered, buffered_peak, st_paused, npaused;
  atomic_uint_fast64_t st_refused[5]; /* MPRPC__REFUSE_* */
  atomic_uint_fast64_t refuse_last_log[5], refuse_unlogged[5];
  atomic_uint_fast64_t *iptab; /* per-ip counts, packed (server_budget.c) */
  size_t iptab_cap;

  /* server-wide stats */
  atomic_uint_fast64_t st_accepted, st_idle_closed, st_malformed, st_noservice, st_nomethod,
      st_unrouted, st_twice, st_dropped;
};

/* server.c: construction, the method table, posted tasks */
srv_method_t *mprpc__srv_lookup(const mprpc_server_t *s, mprpc_bytes_t svc, mprpc_bytes_t meth,
                                bool *svc_found);
int mprpc__srv_post(mprpc_server_t *s, mprpc_loop_t loop, mprpc_post_cb fn, void *arg);
void mprpc__srv_task_done(mprpc_server_t *s);
/* Frees a server destroyed while running once nothing refers to it. */
void mprpc__srv_maybe_free_zombie(mprpc_server_t *s);

/* Inline: the dispatcher checks the connection's last method per request. */
static inline bool mprpc__srv_method_is(const srv_method_t *m, mprpc_bytes_t svc,
                                        mprpc_bytes_t meth) {
  return svc.len == m->service_len && meth.len == m->name_len &&
         memcmp(svc.ptr, m->service, svc.len) == 0 && memcmp(meth.ptr, m->name, meth.len) == 0;
}

/* server_conn.c: connection I/O */
void mprpc__srv_conn_accepted(mprpc_server_t *s, mprpc_conn_t *c, mprpc_loop_t loop,
                              bool console_only);
void mprpc__srv_on_accept(void *ud, mprpc_conn_t *c, mprpc_loop_t loop);
void mprpc__srv_conn_close(srv_conn_t *conn, bool flush);
/* Copies the transport's peer identity into conn once (loop thread). */
void mprpc__srv_conn_identity(srv_conn_t *conn);
void mprpc__srv_conn_maybe_free(srv_conn_t *conn);
/* The largest frame that is batched (copied into wbuf) inside on_data;
 * larger ones are written from where they are. */
#define MPRPC__SRV_BATCH_MAX_FRAME (16 * 1024)
/* Writes one frame now, or batches it while on_data runs (keeping order). */
void mprpc__srv_write_frame(srv_conn_t *conn, mprpc_frame_out_t *out, uint64_t now);
void mprpc__srv_flush(srv_conn_t *conn);

/* server_dispatch.c: one request frame to its handler, or an error answer */
void mprpc__srv_dispatch(srv_conn_t *conn, const mprpc_frame_t *f, uint64_t arrival);
/* Returns the bytes of the error frame queued (0 if none could be built). */
size_t mprpc__srv_send_error(srv_conn_t *conn, int64_t cid, int err, const char *text);

/* server_call.c: call blocks, the unpack allocator, completion */
mprpc_server_call_t *mprpc__srv_call_alloc(srv_loop_t *l, size_t tail);
void mprpc__srv_pool_free(srv_loop_t *l);
void *mprpc__srv_alloc(void *ad, size_t n);
void mprpc__srv_free(void *ad, void *p);
void mprpc__srv_closure(const ProtobufCMessage *msg, void *closure_data);
void mprpc__srv_call_release(mprpc_server_call_t *call);
void mprpc__srv_call_destroy(mprpc_server_call_t *call);
/* rpcz: whether the call completing now on loop l is sampled, then its
 * record (sp's ids, code and byte counts filled by the caller; the rest
 * here). now is l's clock. */
bool mprpc__srv_rpcz_want(const mprpc_server_t *s, srv_loop_t *l);
void mprpc__srv_rpcz_put(srv_conn_t *conn, const srv_method_t *m, uint64_t arrival, uint64_t now,
                         mprpc_rpcz_span_t *sp);

/* server_life.c: start, stop, destroy */
void mprpc__srv_free_all(mprpc_server_t *s);
void mprpc__srv_stats_tick(void *arg);

/* console.c: the HTTP side of a connection */
/* At the start of on_data while the protocol is not baidu_std: sniffs the
 * first bytes and serves HTTP. true: the bytes were taken (or the
 * connection is closing); false: baidu_std, go on with the frames. */
bool mprpc__console_take(srv_conn_t *conn, mprpc_rbuf_t *in);
/* A frame the dispatcher answered on an HTTP connection (an HTTP/JSON call). */
void mprpc__console_on_frame(srv_conn_t *conn, const mprpc_frame_out_t *out);
void mprpc__console_conn_free(srv_conn_t *conn);
/* The separate console port (console_port != 0): at start, on stop. */
int mprpc__console_listen(mprpc_server_t *s);
void mprpc__console_unlisten(mprpc_server_t *s);
/* server_gov.c: config-centre limits and watches */
/* At start, before listening: initialises the limiters, applies the local
 * governance text (opts.governance) to every service, and watches
 * `_global` and every service's node on loops[0] when the registry has a
 * config centre. 0 or MPRPC_ENOMEM. */
int mprpc__srv_gov_start(mprpc_server_t *s);
/* Ends the watches (on loops[0], or once the loops stopped). Idempotent. */
void mprpc__srv_gov_stop(mprpc_server_t *s);
void mprpc__srv_gov_free(mprpc_server_t *s);
/* Before the handler runs, on the connection's loop: 0 (what was taken is
 * in *taken) or MPRPC_ELIMIT with text saying which limit refused and
 * *reason (MPRPC__REFUSED_*) which kind of limit it is. */
int mprpc__srv_gov_admit(mprpc_server_t *s, srv_method_t *m, uint64_t now, uint8_t *taken,
                         int *reason, char *text, size_t n);
/* Gives back what admit took, once per admitted call. */
void mprpc__srv_gov_release(srv_method_t *m, uint8_t taken, uint64_t latency_ns, bool ok,
                            uint64_t now);
/* Applies a node's text as if the registry had delivered it (on loops[0]);
 * for tests and for static registries. */
void mprpc__srv_gov_config(mprpc_server_t *s, const char *name, const char *text, size_t len);
/* server_budget.c: the memory budget, slow-client timeouts, connection
 * limits. The hooks are on the connection's loop thread. */
enum {
  MPRPC__REFUSE_BUDGET = 0,
  MPRPC__REFUSE_HEADER,
  MPRPC__REFUSE_BODY,
  MPRPC__REFUSE_MAXCONN,
  MPRPC__REFUSE_PERIP,
};
int mprpc__srv_budget_init(mprpc_server_t *s);
void mprpc__srv_budget_free(mprpc_server_t *s);
/* Before a new connection is set up: 0 (admitted; *ip_slot to release
 * later) or 1 (refused, counted and logged: the caller closes it). */
int mprpc__srv_admit(mprpc_server_t *s, const char *peer, uint64_t now, int32_t *ip_slot);
/* on_close: gives back what the connection held and its per-ip slot. */
void mprpc__srv_budget_conn_gone(srv_conn_t *conn);
void mprpc__srv_budget_update(srv_conn_t *conn, bool progressed, uint64_t now);
/* The read path's hooks: a few plain adds unless something is held. */
static inline void mprpc__srv_budget_read_begin(srv_conn_t *conn, const mprpc_rbuf_t *in) {
  (void)in; /* bytes received are counted once, in conn->bytes_in (on_data) */
  if (conn->held_out)
    conn->held_out = mprpc_conn_out_pending(conn->s->t, conn->c);
}
/* A buffer grown past this counts its capacity (what a big partial frame
 * costs after doubling), twice that when the next read pass (rt's
 * READ_BUDGET, the simulator's delivery cap) may double it; a small one
 * counts its length. */
#define MPRPC__BUDGET_SMALL_RBUF ((size_t)64 << 10)
#define MPRPC__BUDGET_READ_PASS ((size_t)256 << 10)
static inline void mprpc__srv_budget_read_end(srv_conn_t *conn, bool progressed, uint64_t now) {
  size_t in = conn->closed ? 0 : mprpc_rbuf_len(&conn->in);
  if (in == 0 && conn->in_len == 0 && !conn->has_frame && conn->held_out == conn->held)
    return; /* a healthy request/response pass: nothing changed */
  conn->in_len = in;
  size_t cap = conn->in.cap;
  conn->held_in = !in || cap <= MPRPC__BUDGET_SMALL_RBUF       ? in
                  : cap - in >= MPRPC__BUDGET_READ_PASS ? cap
                                                        : 2 * cap;
  mprpc__srv_budget_update(conn, progressed, now);
}
/* After a write outside on_data (a handler that answered later). */
void mprpc__srv_budget_wrote(srv_conn_t *conn, size_t base_pending, size_t n, uint64_t now);
/* The backlog drained completely (on_writable). */
void mprpc__srv_budget_drained(srv_conn_t *conn, uint64_t now);

/* server_stats.c */
/* The per-second ring: a tick on loops[0] every second while running. */
int mprpc__srv_ring_alloc(srv_method_t *m);
void mprpc__srv_ring_free(srv_method_t *m);
void mprpc__srv_ring_start(mprpc_server_t *s);
void mprpc__srv_ring_stop(mprpc_server_t *s);
/* The newest n <= 60 seconds of a method, oldest first: requests per
 * second and p99 latency in microseconds. Returns n. */
size_t mprpc__srv_method_series(const mprpc_server_t *s, const srv_method_t *m, double *qps,
                                double *p99_us, size_t max);
/* A method's cumulative latency histogram summed over the loops (counts per
 * bucket, MPRPC__HIST_BUCKETS of them) and the buckets' upper bounds in us. */
void mprpc__srv_method_hist(const mprpc_server_t *s, const srv_method_t *m, uint64_t *hist);
uint64_t mprpc__srv_bucket_upper_us(size_t idx);
/* The upper bound (us) of the bucket holding the p-quantile of h. */
uint64_t mprpc__srv_hist_percentile(const uint64_t *h, double p);
/* Bytes received and sent by the whole server (every loop). */
void mprpc__srv_bytes(const mprpc_server_t *s, uint64_t *in, uint64_t *out);
size_t mprpc__srv_code_slot(int err);
/* Both on the loop thread of the request's connection, with that loop's
 * stats of the method (m->st[loop index]). */
void mprpc__srv_count_error(mprpc__mstats_t *st, int err);
void mprpc__srv_record_latency(mprpc__mstats_t *st, uint64_t ns);
uint64_t mprpc__srv_method_inflight(const mprpc_server_t *s, const srv_method_t *m);
/* Calls in flight in the whole server (for the drain and the stats). */
uint64_t mprpc__srv_inflight(const mprpc_server_t *s);

#endif
