/*
 * Channel internals shared by channel.c (calls, retries, API),
 * channel_deadline.c (the default-timeout deadline list) and endpoint.c
 * (connections, endpoint list, registry cache).
 *
 * Everything here is touched on the channel's loop thread only, except
 * where a comment says otherwise.
 */
#ifndef MPRPC_CORE_CHANNEL_INT_H
#define MPRPC_CORE_CHANNEL_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/backoff.h"
#include "core/breaker.h"
#include "core/controller_int.h"
#include "core/idmap.h"
#include "core/lb.h"
#include "core/one_writer.h"
#include "mprpc/buf.h"
#include "mprpc/channel.h"

typedef struct mprpc__call mprpc__call_t;
typedef struct mprpc__attempt mprpc__attempt_t;
/* What an address is, for mprpc_client_endpoints{state} (first match):
 * outside the group/version selection, disabled by the config centre,
 * ejected by the breaker (its first connection's, as last seen), else
 * healthy. */
typedef enum mprpc__eps_state {
  MPRPC__EPS_HEALTHY,
  MPRPC__EPS_EJECTED,
  MPRPC__EPS_DISABLED,
  MPRPC__EPS_UNSELECTED,
  MPRPC__EPS_NSTATES
} mprpc__eps_state_t;

typedef struct mprpc__ep mprpc__ep_t;

/* How safe it is to retry after an attempt failed. */
enum {
  MPRPC__RETRY_SAFE = 0,    /* the request surely did not run */
  MPRPC__RETRY_UNKNOWN = 1, /* it may have run: idempotent methods only */
  MPRPC__RETRY_NEVER = 2,   /* an authoritative answer */
};

enum { EP_IDLE = 0, EP_CONNECTING, EP_UP, EP_BACKOFF };

/* Endpoint attempt lists. DYING holds the attempts of a connection that
 * just failed while they are failed one by one (a closure run meanwhile may
 * drop any of them, so they stay on a list the rest of the code knows). */
enum { AL_NONE = 0, AL_QUEUED, AL_SENT, AL_DYING, AL_COUNT };

typedef struct mprpc__alist {
  mprpc__attempt_t *head, *tail;
} mprpc__alist_t;

#define MPRPC__ATT_CACHE 256
#define MPRPC__CALL_CACHE 256
#define MPRPC__CALL_REQ_KEEP 4096 /* larger request buffers are not kept */
#define MPRPC__RESP_ARENA 256     /* inline bytes for the decoded response */

/* What a channel keeps per method of its service. */
typedef struct mprpc__ch_method {
  size_t name_len; /* strlen of the descriptor's name, sent in every request */
  bool idempotent; /* may be resent after an attempt of unknown outcome */
  /* Client metrics (channel_metrics.c); one writer, the channel's loop. */
#define MPRPC__CH_BOUNDS 16
#define MPRPC__CH_CODES 8
  uint64_t ok, sum_us;
  uint64_t hist[MPRPC__CH_BOUNDS + 1]; /* per bound, not cumulative; last: above all */
  struct {
    int code;
    uint64_t count;
  } codes[MPRPC__CH_CODES]; /* the first distinct failure codes; the last slot: any other */
  size_t ncodes;
  mprpc_channel_fallback_cb fallback; /* channel_gov.c; NULL: none */
  void *fallback_arg;
} mprpc__ch_method_t;

/* channel_metrics.c: one finished call of method midx (the channel's loop). */
void mprpc__ch_method_record(mprpc_channel_t *ch, unsigned midx, int err, uint64_t ns);

struct mprpc__attempt {
  mprpc__call_t *call;
  mprpc__ep_t *ep;
  uint64_t cid;
  uint64_t end_off;  /* connection byte offset after this request */
  bool written;      /* accepted by writev */
  int list;          /* which endpoint list holds it (AL_*) */
  bool not_tried;    /* failed without reaching the endpoint: no blame */
  uint64_t sent_ns;
  uint64_t rx_mark;  /* ep->rx_count when written */
  uint64_t timer;    /* attempt timeout */
  mprpc__attempt_t *ep_prev, *ep_next;  /* ep->queued or ep->sent */
  mprpc__attempt_t *call_next;          /* call->att */
};

struct mprpc__ep {
  mprpc_channel_t *ch;
  uint64_t id;   /* unique in the channel; never reused */
  /* The address this is one connection of (connections_per_endpoint): the
   * id of its slot 0, shared by its slots; what retries avoid. */
  uint64_t addr_id;
  unsigned slot;
  size_t idx;    /* position in ch->eps while listed */
  char *host;
  uint16_t port;
  uint32_t weight;     /* in effect (the balancer's): gov override or reg_weight */
  uint32_t reg_weight; /* as registered */
  char *group, *version; /* as registered (NULL: none); fixed lists have none */
  bool from_registry;
  bool gov_disabled;   /* disabled.HOST:PORT=1 */
  bool unselected;     /* outside the group / version selection */
  bool pub_ejected;    /* ejected when eps_by_state was last counted */
  uint64_t calls;      /* attempts sent to it (loop thread) */
  char name[MPRPC__CTL_REMOTE];
  int refs;      /* listed + open connection + attempts */
  bool listed;

  int cstate;
  mprpc_conn_t *conn;
  mprpc_rbuf_t rbuf;
  uint64_t bytes_accepted;
  uint64_t bytes_flushed; /* accepted and known handed to the network */
  /* Lowest end offset of a request answered ELOGOFF on this connection, 0
   * if none. A stopping provider answers everything it reads from then on
   * with ELOGOFF without running it, so a request further along the stream
   * that is unanswered when the connection closes surely did not run. */
  uint64_t logoff_off;
  size_t held; /* rbuf bytes counted in ch->buffered */
  int last_err;
  /* reset_after_timeouts: on_data calls on this connection, and the
   * attempts in a row that timed out with none since they were written */
  uint64_t rx_count;
  int silent_timeouts;
  char last_why[160]; /* the transport's text for last_err ("" = none), e.g. TLS */
  mprpc__backoff_t backoff;
  uint64_t backoff_timer;

  mprpc__alist_t al[AL_COUNT]; /* QUEUED: waiting for the connection;
                                  SENT: written, waiting for the answer */
  uint32_t inflight;
  uint64_t ewma_ns;
  mprpc__breaker_t br;
};

struct mprpc__call {
  mprpc_channel_t *ch;
  uint64_t id;
  unsigned midx;
  const ProtobufCMethodDescriptor *method;
  uint8_t *req;
  size_t req_len, req_cap;
  int compress_type; /* of req: the controller's choice or the channel's */
  mprpc_controller_t *ctl;
  bool own_ctl;              /* ctl is &own: the caller passed none */
  ProtobufCClosure done;
  void *arg;
  bool sync;
  void *waiter;
  bool waiting_eps; /* parked until the registry's first list */
  bool in_map;      /* in ch->calls */
  bool in_dl;       /* in the channel's deadline list */
  mprpc__call_t *dl_prev, *dl_next;
  mprpc__call_t *live_prev, *live_next;
  bool finished;

  uint64_t start_ns, deadline_ns; /* 0 = no deadline */
  uint64_t deadline_timer, backup_timer;
  mprpc__attempt_t *att; /* outstanding attempts */
  int max_retry;  /* the channel's, or the config centre's max_retry.METHOD */
  bool degrading; /* being answered by its fallback (channel_gov.c) */
  int nattempts;  /* attempts that reached an endpoint (or tried to) */
  int nskipped;   /* attempts failed fast on a reconnecting endpoint */
  int outstanding;
  uint64_t tried[8];
  int ntried;

  /* error_code of the answer being handled while mprpc__attempt_failed
   * runs for it, 0 otherwise; becomes the controller's remote_code when
   * that answer ends the call */
  int32_t wire_code;
  /* The call's span (include/mprpc/trace.h): trace and parent taken on the
   * invoking thread (call_new), span_id (and a fresh trace_id when there
   * was none) drawn on the loop (start_call); every attempt sends them. */
  int64_t trace_id, span_id, parent_span_id;
  /* outcome, handed over to the caller's thread for sync calls */
  int err;
  ProtobufCMessage *resp;
  bool resp_taken; /* a copy of resp was taken (mprpc_controller_take_response) */
  mprpc__call_t *wait_next; /* ch->waitq */

  /* Not zeroed when a record is reused (call_new): the controller used when
   * the caller passed none (call_new zeroes its inputs, clear_outputs the
   * rest) and the response arena. The decoded response is allocated from
   * resp_buf while it fits, the rest with malloc (resp_heap counts
   * those); see mprpc__call_unpack. */
  mprpc_controller_t own;
  ProtobufCAllocator resp_alloc;
  mprpc__arena_t resp_arena; /* over resp_buf */
  size_t resp_heap;
  _Alignas(16) uint8_t resp_buf[MPRPC__RESP_ARENA];
};

/* channel.c: decodes a's response into the call's arena. */
ProtobufCMessage *mprpc__call_unpack(mprpc__call_t *c, size_t len, const uint8_t *data);
/* channel.c: frees a response decoded by mprpc__call_unpack. */
void mprpc__call_free_resp(mprpc__call_t *c, ProtobufCMessage *msg);

struct mprpc_channel {
  ProtobufCService service; /* handed to stubs */
  const ProtobufCServiceDescriptor *sd;
  mprpc_loop_t loop;
  mprpc_transport_t tr;
  mprpc_registry_t reg;
  bool own_reg; /* opts.own_registry: destroy closes reg after unsubscribing */
  uint64_t sub_id;
  bool subscribed;
  bool have_list; /* fixed list, or the registry delivered one */
  bool tls;       /* the transport speaks TLS (opts.tls) */
  size_t tls_skipped; /* registry endpoints left out: tls=1 and !tls */
  char tls_skip_name[80]; /* the first of them, for the error text */

  uint64_t timeout_ns, connect_timeout_ns, attempt_timeout_ns, backup_ns;
  bool no_deadline;
  int max_retry;
  int policy;
  mprpc__ch_method_t *minfo; /* one per method of sd */
  mprpc_channel_list_t list; /* joined at creation, left at destroy */
  size_t svc_name_len;       /* strlen(sd->name) */
  uint8_t *auth;
  size_t auth_len;
  uint32_t max_body;
  size_t max_buffered, buffered; /* response bytes buffered, all endpoints */
  int compress_type; /* of every request payload; MPRPC_COMPRESS_* */
  mprpc__breaker_opts_t bopts;
  uint64_t reconnect_base_ns, reconnect_max_ns;
  int reset_after; /* opts.reset_after_timeouts; 0: never */

  mprpc__ep_t **eps;
  mprpc__lb_node_t *nodes;
  size_t neps;       /* connections: addresses x conns_per_ep */
  /* Addresses by mprpc__eps_state_t, as last published (loop writes,
   * the console reads: relaxed atomics). */
  size_t eps_by_state[MPRPC__EPS_NSTATES];
  unsigned conns_per_ep; /* opts.connections_per_endpoint, 1..64 */
  mprpc__lb_t lb;
  uint64_t next_ep_id;
  size_t live_eps; /* allocated endpoints, listed or draining */

  mprpc__idseq_t attempts; /* cid -> attempt; hands out the cids */
  mprpc__idmap_t calls;    /* call id -> call, for calls with a caller's controller (cancel) */
  mprpc__call_t *live;     /* every started, unfinished call (live_prev/live_next) */
  size_t nlive;
  /* Calls with the channel's default timeout, in deadline order (they
   * start on this loop, so appending keeps the order), and ONE loop timer
   * for the earliest: finishing a call is an unlink, not a heap removal. */
  mprpc__call_t *dl_head, *dl_tail;
  uint64_t dl_timer;
  uint64_t next_call_id;   /* atomic: assigned on invoking threads */
  mprpc__call_t *waitq;
  /* Freed attempt records kept for reuse (loop thread only; linked through
   * call_next; at most MPRPC__ATT_CACHE; released in ch_free_mem). */
  mprpc__attempt_t *att_free;
  size_t natt_free;
  /* The same for call records (and their request buffers) of async calls
   * made and finished on the loop thread; at most MPRPC__CALL_CACHE. */
  mprpc__call_t *call_free;
  size_t ncall_free;

  int refs;       /* atomic: posts in flight */
  int cb_depth;   /* user callbacks running */
  int starting;   /* calls being started inside mprpc_channel_call (loop thread) */
  bool destroying;
  mprpc_channel_stats_t st; /* counters: written by the loop thread only */
  struct mprpc__ch_gov *gov; /* channel_gov.c: config centre, selection; NULL: none */
  uint64_t start_now;       /* the clock reading of the call being started, or 0 */
};

/* The loop thread is the only writer of the stats (core/one_writer.h). */
#define MPRPC__STAT_ADD(ch, field, v) MPRPC__ONE_WRITER_ADD(&(ch)->st.field, (v))
#define MPRPC__STAT_INC(ch, field) MPRPC__STAT_ADD(ch, field, 1)

/* endpoint.c */
int mprpc__ep_list_set_fixed(mprpc_channel_t *ch, const char *servers);
void mprpc__ep_registry_cb(void *ud, const mprpc_instance_t *items, size_t n, int health);
/* Queues or writes attempt a on its endpoint (connecting when needed). May
 * fail the attempt synchronously through mprpc__attempt_failed. */
void mprpc__ep_submit(mprpc__ep_t *ep, mprpc__attempt_t *a);
/* Unlinks a from its endpoint's lists and drops the endpoint's reference. */
void mprpc__ep_detach(mprpc__ep_t *ep, mprpc__attempt_t *a);
void mprpc__ep_unref(mprpc__ep_t *ep);
/* An attempt written on ep ended: when its response is still arriving (a
 * partial frame at the front of the connection's input), the connection is
 * replaced, since every response behind it would wait. */
void mprpc__ep_attempt_gone(mprpc__ep_t *ep, uint64_t cid);
void mprpc__ep_shutdown_all(mprpc_channel_t *ch);
/* Attempt a, written on ep's connection, timed out (its own timer or its
 * call's deadline): counts it, and closes the connection once
 * ch->reset_after of them in a row saw nothing arrive. The close is
 * deferred (on_close fails the rest), so a may still be failed after. */
void mprpc__ep_attempt_timed_out(mprpc__ep_t *ep, const mprpc__attempt_t *a);
/* The endpoints' weights changed (config centre): the balancer follows. */
void mprpc__ep_weights_changed(mprpc_channel_t *ch);
/* Recounts the addresses by state into ch->eps_by_state (loop thread):
 * after every change the channel sees (a new list, the config centre, an
 * ejection, a readmission found by a pick). */
void mprpc__ep_publish_states(mprpc_channel_t *ch);
/* An ejection happened: counted, and the states republished. */
void mprpc__ep_ejected(mprpc_channel_t *ch);
/* The LB's eligibility pass, then the least-bad fallback. NULL when empty.
 * exclude_id: an address (addr_id) none of whose connections may be picked
 * while another address exists; 0 = none. */
mprpc__ep_t *mprpc__ep_pick(mprpc_channel_t *ch, mprpc__call_t *c, uint64_t exclude_id);

/* channel.c */
void mprpc__attempt_failed(mprpc__attempt_t *a, int err, const char *text, int retry);
/* now: the loop clock read when the answer arrived (shared with the
 * caller's RTT sample, so one answer costs one clock read). */
void mprpc__attempt_answered(mprpc__attempt_t *a, int err, const char *text,
                             ProtobufCMessage *msg, const uint8_t *att, size_t att_len,
                             uint64_t now);
void mprpc__channel_eps_changed(mprpc_channel_t *ch);
void mprpc__channel_maybe_free(mprpc_channel_t *ch);
/* The deadline of call c (a mprpc__call_t *) has come: fails it. */
void mprpc__call_deadline(void *c);

/* channel.c: ends call c on the loop without a provider's answer (a
 * degraded call): msg (decoded by mprpc__call_unpack) on success. */
void mprpc__call_finish_local(mprpc__call_t *c, int err, const char *text, ProtobufCMessage *msg);

/* channel_gov.c: the config centre on the consumer, selection, fallbacks */
int mprpc__chgov_init(mprpc_channel_t *ch, const mprpc_channel_opts_t *o);
void mprpc__chgov_stop(mprpc_channel_t *ch); /* on the loop: ends the watches */
void mprpc__chgov_free(mprpc_channel_t *ch);
/* An endpoint's instance data arrived (it may be NULL for fixed lists):
 * records it and recomputes weight / disabled / unselected. */
int mprpc__chgov_ep_instance(mprpc_channel_t *ch, mprpc__ep_t *ep, const mprpc_instance_t *it);
void mprpc__chgov_ep_free(mprpc__ep_t *ep);
/* True when ep must get no new call (disabled or outside the selection). */
static inline bool mprpc__chgov_ep_excluded(const mprpc__ep_t *ep) {
  return ep->gov_disabled || ep->unselected;
}
/* At the start of call c: applies timeout_ms / max_retry defaults
 * (*tmo_ns is the default deadline, replaced unless the caller set one)
 * and degrade; true when the call was finished here (degraded). */
bool mprpc__chgov_on_start(mprpc__call_t *c, uint64_t *tmo_ns, bool caller_timeout);
/* No usable provider for c (why says which case): answers it with the
 * method's fallback and returns true, or returns false (no fallback). */
bool mprpc__chgov_fallback(mprpc__call_t *c, const char *why);
/* Call c is about to fail with err: when err says no provider answered it
 * (timeout, connection failure, no endpoint), answers it with its
 * method's fallback and returns true. */
bool mprpc__chgov_fallback_after(mprpc__call_t *c, int err, uint64_t now);
/* True when every listed, usable endpoint is ejected by the breaker. */
bool mprpc__chgov_all_ejected(mprpc_channel_t *ch, uint64_t now);

/* channel_deadline.c: the list of calls with the channel's default timeout */
void mprpc__dl_append(mprpc_channel_t *ch, mprpc__call_t *c, uint64_t now);
void mprpc__dl_unlink(mprpc_channel_t *ch, mprpc__call_t *c);
void mprpc__dl_stop(mprpc_channel_t *ch);

#endif
