/*
 * Provider calls: the per-call context handlers see, the closure protobuf-c
 * handlers call (inline or from any thread), and completion on the
 * connection's loop.
 *
 * A call holds two references, both dropped on the connection's loop thread:
 * one for the running invoke() and one for the completion. So a closure
 * called twice inline is always detected. After both are gone the call's
 * buffers are freed and the small struct sits in a per-loop quarantine ring
 * (MPRPC__QUARANTINE entries) before it is freed, so a late second call from
 * another thread is usually detected too; past that window a second call is
 * undefined, as it is in protobuf-c's own RPC and in brpc.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/compress.h"
#include "core/pack_ref.h"
#include "core/rpcz.h"
#include "core/server_internal.h"
#include "core/sniff.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

/* ---- call blocks and the unpack allocator ------------------------------ */

#define HDR 16 /* keeps max_align_t alignment */
#define ALIGN16(n) (((n) + 15) & ~(size_t)15)

/* A call with `tail` bytes after the struct (request attachment and
 * request_id). Small ones come from the loop's pool with the rest of their
 * MPRPC__CALL_TAIL bytes as an arena. Only the struct is zeroed. */
mprpc_server_call_t *mprpc__srv_call_alloc(srv_loop_t *l, size_t tail) {
  mprpc_server_call_t *call;
  bool pooled = tail <= MPRPC__CALL_TAIL - 64;
  if (pooled && l->pool) {
    call = l->pool;
    l->pool = call->next;
    l->npool--;
  } else {
    call = malloc(sizeof *call + (pooled ? MPRPC__CALL_TAIL : tail));
    if (!call)
      return NULL;
  }
  memset(call, 0, offsetof(mprpc_server_call_t, out));
  call->pooled = pooled;
  if (pooled) {
    uintptr_t base = (uintptr_t)(call + 1), end = base + MPRPC__CALL_TAIL;
    uintptr_t a = ALIGN16(base + tail);
    mprpc__arena_init(&call->arena, (uint8_t *)a, a < end ? end - a : 0);
  }
  return call;
}

/* Frees a call block that left quarantine (or never ran): pooled blocks are
 * kept for the next call. */
static void call_block_done(srv_loop_t *l, mprpc_server_call_t *call) {
  if (!call)
    return;
  if (call->pooled && l->npool < MPRPC__CALL_POOL) {
    call->magic = 0;
    call->next = l->pool;
    l->pool = call;
    l->npool++;
    return;
  }
  free(call);
}

void mprpc__srv_pool_free(srv_loop_t *l) {
  while (l->pool) {
    mprpc_server_call_t *n = l->pool->next;
    free(l->pool);
    l->pool = n;
  }
  l->npool = 0;
}

/* Bump allocation from the call's arena, else malloc; either way capped
 * at alloc_limit bytes for the whole request. */
void *mprpc__srv_alloc(void *ad, size_t n) {
  mprpc_server_call_t *call = ad;
  if (n > call->alloc_limit - call->alloc_used)
    return NULL;
  void *a = mprpc__arena_alloc(&call->arena, n);
  if (a) {
    call->alloc_used += n;
    return a;
  }
  uint8_t *p = malloc(n + HDR);
  if (!p)
    return NULL;
  memcpy(p, &n, sizeof n);
  call->alloc_used += n;
  call->heap_allocs++;
  return p + HDR;
}

void mprpc__srv_free(void *ad, void *ptr) {
  mprpc_server_call_t *call = ad;
  if (!ptr || mprpc__arena_owns(&call->arena, ptr))
    return; /* arena bytes go with the call */
  uint8_t *p = (uint8_t *)ptr - HDR;
  size_t n;
  memcpy(&n, p, sizeof n);
  call->alloc_used -= n;
  call->heap_allocs--;
  free(p);
}

static void free_payload(mprpc_server_call_t *call) {
  if (!mprpc__arena_owns(&call->arena, call->payload))
    free(call->payload);
  call->payload = NULL;
}

/* Builds the response frame; runs on the thread that called the closure, so
 * the handler's output message may die as soon as the closure returns.
 * by_ref: the frame is written before the closure returns, so large string
 * and bytes fields may be referenced in msg instead of copied (pack_ref.h);
 * worth it only for a frame too large to be batched (copied) anyway. */
static void encode_response(mprpc_server_call_t *call, const ProtobufCMessage *msg, bool by_ref) {
  mprpc_meta_t meta;
  size_t plen = 0;
  struct iovec pl[MPRPC__PACK_MAX_SEG];
  int plcnt = 0;
  memset(&meta, 0, sizeof meta);
  if (!call->err_wire && !msg) {
    call->err_wire = mprpc_err_to_wire(MPRPC_EINTERNAL);
    if (!call->err_text)
      call->err_text = strdup("handler returned no response");
  }
  if (!call->err_wire) {
    plen = protobuf_c_message_get_packed_size(msg);
    call->payload = plen ? mprpc__arena_alloc(&call->arena, plen) : NULL;
    if (!call->payload)
      call->payload = malloc(plen ? plen : 1);
    by_ref = by_ref && plen > MPRPC__SRV_BATCH_MAX_FRAME &&
             call->compress_type == MPRPC_COMPRESS_NONE;
    if (!call->payload) {
      call->err_wire = mprpc_err_to_wire(MPRPC_EINTERNAL);
    } else if (by_ref) {
      if (mprpc__pack_ref(msg, plen, call->payload, pl, &plcnt) != 0)
        call->err_wire = mprpc_err_to_wire(MPRPC_EINTERNAL);
    } else {
      size_t got = protobuf_c_message_pack(msg, call->payload);
      if (got != plen)
        call->err_wire = mprpc_err_to_wire(MPRPC_EINTERNAL);
      pl[0].iov_base = call->payload;
      pl[0].iov_len = plen;
      plcnt = 1;
    }
  }
  if (!call->err_wire && call->compress_type != MPRPC_COMPRESS_NONE) {
    /* A caller that compressed its request reads compressed answers. If
     * compressing fails (memory), the plain payload is as valid an answer. */
    uint8_t *z;
    size_t zlen;
    if (mprpc__compress(call->compress_type, call->payload, plen, &z, &zlen) == 0) {
      free_payload(call);
      call->payload = z;
      pl[0].iov_base = z;
      pl[0].iov_len = zlen;
      plcnt = 1;
      meta.compress_type = call->compress_type;
    }
  }
  meta.has_response = true;
  meta.correlation_id = call->meta.correlation_id;
  meta.error_code = call->err_wire;
  meta.error_text = mprpc_bytes_str(call->err_text);
  int rc;
  if (call->err_wire)
    rc = mprpc_frame_encode(&call->out, &meta, NULL, 0, call->resp_att, call->resp_att_len);
  else
    rc = mprpc_frame_encode_iov(&call->out, &meta, pl, plcnt, call->resp_att, call->resp_att_len);
  if (rc < 0) {
    mprpc_frame_out_free(&call->out);
    meta.error_code = call->err_wire = mprpc_err_to_wire(MPRPC_EINTERNAL);
    meta.error_text = mprpc_bytes_str("response could not be encoded");
    rc = mprpc_frame_encode(&call->out, &meta, NULL, 0, NULL, 0);
  }
  call->encoded = rc == 0;
}

/* On the connection's loop thread. */
static void complete_now(mprpc_server_call_t *call);

/* Posted from another thread. */
static void complete_task(void *arg) {
  mprpc_server_call_t *call = arg;
  mprpc_server_t *s = call->s;
  complete_now(call);
  mprpc__srv_task_done(s);
}

static void complete_now(mprpc_server_call_t *call) {
  srv_conn_t *conn = call->conn;
  mprpc_server_t *s = conn->s;
  srv_method_t *m = call->m;
  uint64_t now = mprpc_loop_now(conn->l->loop);
  mprpc__mstats_t *st = &m->st[conn->l->idx];
  mprpc__srv_record_latency(st, now > call->arrival_ns ? now - call->arrival_ns : 0);
  if (call->err_wire)
    mprpc__srv_count_error(st, mprpc_err_from_wire(call->err_wire));
  else
    MPRPC__ONE_WRITER_ADD(&st->ok, 1);
  if (call->limited)
    atomic_fetch_sub(&m->limit_inflight, 1);
  if (call->gov_taken)
    mprpc__srv_gov_release(m, call->gov_taken, now > call->arrival_ns ? now - call->arrival_ns : 0,
                           call->err_wire == 0, now);
  call->gov_taken = 0;
  MPRPC__ONE_WRITER_ADD(&st->completed, 1);
  if (s->o.max_concurrency)
    atomic_fetch_sub(&s->inflight, 1);
  conn->inflight--;
  call->completed = true;
  if (mprpc__srv_rpcz_want(s, conn->l)) {
    mprpc_rpcz_span_t sp;
    sp.trace_id = call->trace_id;
    sp.span_id = call->span_id;
    sp.parent_span_id = call->meta.parent_span_id;
    sp.error_code = call->err_wire;
    sp.request_bytes = call->req_bytes;
    sp.response_bytes = call->encoded ? call->out.total : 0;
    mprpc__srv_rpcz_put(conn, m, call->arrival_ns, now, &sp);
  }
  if (call->encoded)
    mprpc__srv_write_frame(conn, &call->out, now);
  mprpc_frame_out_free(&call->out);
  call->encoded = false;
  free_payload(call);
  mprpc__srv_call_release(call);
}

void mprpc__srv_closure(const ProtobufCMessage *msg, void *closure_data) {
  mprpc_server_call_t *call = closure_data;
  if (!call || call->magic != MPRPC__CALL_MAGIC) {
    MPRPC_LOG_ERROR("server: closure called with a bad closure_data %p", closure_data);
    return;
  }
  if (atomic_exchange(&call->done, 1)) {
    /* The call may already be answered and released: read nothing but
     * fields that stay valid in quarantine. */
    MPRPC_LOG_WARN("server: closure of %s.%s (correlation_id %lld) called twice; ignored",
                   call->m->service, call->m->name, (long long)call->meta.correlation_id);
    atomic_fetch_add(&call->s->st_twice, 1);
    return;
  }
  mprpc_loop_t loop = call->conn->l->loop;
  bool in_loop = mprpc_loop_in_loop(loop);
  /* On the loop, complete_now writes the frame before this returns. An
   * HTTP/JSON call's answer is read back from the frame instead. */
  encode_response(call, msg, in_loop && call->conn->proto != MPRPC__PROTO_HTTP);
  if (in_loop) {
    complete_now(call);
    return;
  }
  int rc = mprpc__srv_post(call->s, loop, complete_task, call);
  if (rc < 0)
    /* The loop is gone (server stopped): the response is dropped and the
     * call is freed by mprpc_server_destroy. */
    MPRPC_LOG_WARN("server: response of %s.%s dropped: %s", call->m->service, call->m->name,
                   mprpc_strerror(rc));
}

/* Frees what the call owns except the struct itself. */
static void call_free_parts(mprpc_server_call_t *call) {
  if (call->input && call->heap_allocs) /* else all of it is in the arena */
    protobuf_c_message_free_unpacked(call->input, &call->alloc);
  call->input = NULL;
  if (call->encoded)
    mprpc_frame_out_free(&call->out);
  call->encoded = false;
  free_payload(call);
  free(call->err_text);
  free(call->resp_att);
  call->payload = NULL;
  call->err_text = NULL;
  call->resp_att = NULL;
}

static void unlink_call(mprpc_server_call_t *call) {
  srv_conn_t *conn = call->conn;
  if (call->prev)
    call->prev->next = call->next;
  else
    conn->calls = call->next;
  if (call->next)
    call->next->prev = call->prev;
  call->prev = call->next = NULL;
  conn->ncalls--;
}

void mprpc__srv_call_release(mprpc_server_call_t *call) {
  if (--call->refs > 0)
    return;
  srv_conn_t *conn = call->conn;
  srv_loop_t *l = conn->l;
  call_free_parts(call);
  unlink_call(call);
  mprpc_server_call_t *old = l->quarantine[l->qpos];
  l->quarantine[l->qpos] = call;
  l->qpos = (l->qpos + 1) % MPRPC__QUARANTINE;
  call_block_done(l, old);
  /* The conn may go now; a quarantined call's twice-called path reads only
   * call->m, call->meta and call->s, which outlive it. */
  call->conn = NULL;
  mprpc__srv_conn_maybe_free(conn);
}

/* Server destroy: a call whose handler never called the closure. */
void mprpc__srv_call_destroy(mprpc_server_call_t *call) {
  call_free_parts(call);
  free(call);
}

/* ---- rpcz ----------------------------------------------------------------- */

bool mprpc__srv_rpcz_want(const mprpc_server_t *s, srv_loop_t *l) {
  if (!s->rpcz)
    return false;
  uint32_t every = s->o.rpcz_every;
  return every <= 1 || ++l->rpcz_tick % every == 0;
}

void mprpc__srv_rpcz_put(srv_conn_t *conn, const srv_method_t *m, uint64_t arrival, uint64_t now,
                         mprpc_rpcz_span_t *sp) {
  uint64_t lat = now > arrival ? now - arrival : 0;
  sp->latency_us = lat / MPRPC_NS_PER_US;
  uint64_t wall = mprpc_loop_wall(conn->l->loop);
  sp->start_wall_ns = wall > lat ? wall - lat : 0;
  sp->service = m->service;
  sp->method = m->name;
  size_t n = strnlen(conn->peer, sizeof sp->peer - 1);
  memcpy(sp->peer, conn->peer, n);
  sp->peer[n] = 0;
  mprpc__rpcz_record(conn->s->rpcz, sp);
}

size_t mprpc_server_rpcz_snapshot(const mprpc_server_t *s, mprpc_rpcz_span_t *out, size_t max,
                                  int64_t trace_id) {
  if (!s || !out)
    return 0;
  return mprpc__rpcz_snapshot(s->rpcz, out, max, trace_id);
}

/* ---- call context API ------------------------------------------------------ */

mprpc_server_call_t *mprpc_server_call_from(void *closure_data) {
  mprpc_server_call_t *c = closure_data;
  return c && c->magic == MPRPC__CALL_MAGIC ? c : NULL;
}

const mprpc_server_call_meta_t *mprpc_server_call_meta(const mprpc_server_call_t *c) {
  return c ? &c->meta : NULL;
}

mprpc_trace_ctx_t mprpc_server_call_trace(const mprpc_server_call_t *c) {
  return c ? (mprpc_trace_ctx_t){c->trace_id, c->span_id} : (mprpc_trace_ctx_t){0, 0};
}

const char *mprpc_server_call_peer_identity(const mprpc_server_call_t *c) {
  return c && c->conn ? c->conn->identity : NULL;
}

const uint8_t *mprpc_server_call_attachment(const mprpc_server_call_t *c, size_t *len) {
  if (len)
    *len = c ? c->att_len : 0;
  return c ? c->att : NULL;
}

int64_t mprpc_server_call_remaining_ns(const mprpc_server_call_t *c) {
  if (!c || !c->deadline_ns)
    return INT64_MAX;
  uint64_t now = mprpc_loop_now(c->conn->l->loop);
  return (int64_t)(c->deadline_ns - now);
}

int mprpc_server_call_set_error(mprpc_server_call_t *c, int code, const char *text) {
  if (!c || code == 0)
    return MPRPC_EINVAL;
  char *t = NULL;
  if (text && !(t = strdup(text)))
    return MPRPC_ENOMEM;
  free(c->err_text);
  c->err_text = t;
  c->err_wire = mprpc_err_to_wire(code);
  return 0;
}

int mprpc_server_call_set_response_compress(mprpc_server_call_t *c, int compress_type) {
  if (!c || !mprpc__compress_known(compress_type))
    return MPRPC_EINVAL;
  c->compress_type = compress_type;
  return 0;
}

int mprpc_server_call_set_attachment(mprpc_server_call_t *c, const void *p, size_t len) {
  if (!c || (len && !p))
    return MPRPC_EINVAL;
  uint8_t *n = NULL;
  if (len) {
    n = malloc(len);
    if (!n)
      return MPRPC_ENOMEM;
    memcpy(n, p, len);
  }
  free(c->resp_att);
  c->resp_att = n;
  c->resp_att_len = len;
  return 0;
}
