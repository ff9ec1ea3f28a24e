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
typedef struct mprpc__mstats {
  uint64_t requests, errors, completed, admitted, max_us;
  uint64_t slow; /* handlers that held the loop past slow_handler_warn_ms */
  uint64_t by_code[MPRPC_SERVER_NCODES];
  uint64_t hist[MPRPC__HIST_BUCKETS];
} mprpc__mstats_t;

typedef struct srv_method {
  const char *service; /* descriptor strings: static */
  const char *name;
  size_t service_len, name_len;
  ProtobufCService *svc;
  unsigned index;
  const ProtobufCMethodDescriptor *desc;
  uint32_t limit; /* 0 = unlimited */
  /* With a limit, in flight on all loops, counted up and down (the limit
   * is shared, so this one is a locked counter). */
  atomic_uint_fast64_t limit_inflight;
  mprpc__mstats_t *st; /* one per loop (mprpc_server_t.nloops) */
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
  /* The loop clock when the last inline handler returned: a request cut
   * from the same read as a slow one starts its watch there, not at the
   * read, so it is not blamed for the other's time (no extra clock read). */
  uint64_t handler_done_ns;
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
  char peer[64];
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
  bool pooled;             /* a MPRPC__CALL_TAIL block: back to the pool */
  mprpc__arena_t arena;    /* the rest of a pooled block; empty otherwise */
  size_t heap_allocs;      /* unpack allocations that missed the arena */
  const uint8_t *att;
  size_t att_len;
  /* response, filled by the handler / closure */
  int32_t err_wire; /* positive wire code, 0 = success */
  char *err_text;
  uint8_t *resp_att;
  size_t resp_att_len;
  uint8_t *payload;
  int compress_type; /* of the response payload: the request's, or set by the handler */
  bool encoded;
  bool completed;
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
void mprpc__srv_on_accept(void *ud, mprpc_conn_t *c, mprpc_loop_t loop);
void mprpc__srv_conn_close(srv_conn_t *conn, bool flush);
/* Copies the transport's peer identity into conn once (loop thread). */
void mprpc__srv_conn_identity(srv_conn_t *conn);
void mprpc__srv_conn_maybe_free(srv_conn_t *conn);
/* Writes one frame now, or batches it while on_data runs (keeping order). */
void mprpc__srv_write_frame(srv_conn_t *conn, mprpc_frame_out_t *out, uint64_t now);
void mprpc__srv_flush(srv_conn_t *conn);

/* server_dispatch.c: one request frame to its handler, or an error answer */
void mprpc__srv_dispatch(srv_conn_t *conn, const mprpc_frame_t *f, uint64_t arrival);
void mprpc__srv_send_error(srv_conn_t *conn, int64_t cid, int err, const char *text);

/* server_call.c: call blocks, the unpack allocator, completion */
mprpc_server_call_t *mprpc__srv_call_alloc(srv_loop_t *l, size_t tail);
void mprpc__srv_pool_free(srv_loop_t *l);
void *mprpc__srv_alloc(void *ad, size_t n);
void mprpc__srv_free(void *ad, void *p);
void mprpc__srv_closure(const ProtobufCMessage *msg, void *closure_data);
void mprpc__srv_call_release(mprpc_server_call_t *call);
void mprpc__srv_call_destroy(mprpc_server_call_t *call);

/* server_life.c: start, stop, destroy */
void mprpc__srv_free_all(mprpc_server_t *s);
void mprpc__srv_stats_tick(void *arg);

/* server_stats.c */
size_t mprpc__srv_code_slot(int err);
/* Both on the loop thread of the request's connection, with that loop's
 * stats of the method (m->st[loop index]). */
void mprpc__srv_count_error(mprpc__mstats_t *st, int err);
void mprpc__srv_record_latency(mprpc__mstats_t *st, uint64_t ns);
uint64_t mprpc__srv_method_inflight(const mprpc_server_t *s, const srv_method_t *m);
/* Calls in flight in the whole server (for the drain and the stats). */
uint64_t mprpc__srv_inflight(const mprpc_server_t *s);

#endif
