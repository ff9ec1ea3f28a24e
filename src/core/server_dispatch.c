/*
 * Provider request dispatch: one decoded request frame is checked (stopping,
 * authentication, compression, route, deadline, limits), decoded into its
 * input message and handed to the service's invoke (server_call.c then
 * completes it). Refusals are answered here with an error frame.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/compress.h"
#include "core/server_internal.h"
#include "core/trace.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

static bool try_acquire(atomic_uint_fast64_t *ctr, uint32_t limit) {
  uint64_t n = atomic_fetch_add(ctr, 1) + 1;
  if (limit && n > limit) {
    atomic_fetch_sub(ctr, 1);
    return false;
  }
  return true;
}

/* ---- handlers on a pool (handler_threads) --------------------------------- */

static void invoke_done_task(void *arg) {
  mprpc_server_call_t *call = arg;
  mprpc_server_t *s = call->s;
  mprpc__srv_call_release(call); /* the invoke reference, on the loop */
  mprpc__srv_task_done(s);
}

/* On a pool thread. The call's refs are loop-thread state, so dropping the
 * invoke reference goes back to the connection's loop. If that loop is gone
 * (the server stopped), the call stays on its connection and
 * mprpc_server_destroy frees it. */
static void run_on_pool(void *arg) {
  mprpc_server_call_t *call = arg;
  srv_method_t *m = call->m;
  mprpc_loop_t loop = call->conn->l->loop;
  mprpc_trace_ctx_t tprev = mprpc_trace_set_current(mprpc_server_call_trace(call));
  m->svc->invoke(m->svc, m->index, call->input, mprpc__srv_closure, call);
  mprpc_trace_set_current(tprev);
  if (mprpc__srv_post(call->s, loop, invoke_done_task, call) < 0)
    MPRPC_LOG_DEBUG("server: %s.%s returned after its loop stopped", m->service, m->name);
}

/* ---- the loop-stall watchdog --------------------------------------------- */

/* A handler held its loop for held_ns (until now, a reading of that loop's
 * clock): every other connection of the loop waited. Counted always;
 * logged at most once a second per server, with how many went unlogged. */
static void slow_handler(mprpc_server_t *s, mprpc__mstats_t *st, srv_method_t *m, uint64_t now,
                         uint64_t held_ns) {
  MPRPC__ONE_WRITER_ADD(&st->slow, 1);
  uint64_t unlogged = atomic_fetch_add(&s->slow_unlogged, 1);
  uint64_t last = atomic_load(&s->slow_last_log);
  if (last && now - last < MPRPC_NS_PER_S)
    return;
  if (!atomic_compare_exchange_strong(&s->slow_last_log, &last, now ? now : 1))
    return; /* another loop is logging this second */
  atomic_fetch_sub(&s->slow_unlogged, unlogged + 1);
  char more[64] = "";
  if (unlogged)
    snprintf(more, sizeof more, " (%llu more since the last warning)",
             (unsigned long long)unlogged);
  MPRPC_LOG_WARN("server: handler %s.%s held its event loop for %llu ms (slow_handler_warn_ms="
                 "%llu): the loop's other connections waited; answer asynchronously or set "
                 "handler_threads%s",
                 m->service, m->name, (unsigned long long)(held_ns / MPRPC_NS_PER_MS),
                 (unsigned long long)(s->slow_ns / MPRPC_NS_PER_MS), more);
}

/* Order of checks (the first failing one answers): stopping (ELOGOFF),
 * authentication (ERPCAUTH), compress_type (EREQUEST), service (ENOSERVICE),
 * method (ENOMETHOD), deadline (ERPCTIMEDOUT), config-centre rate limit and
 * concurrency (ELIMIT, server_gov.c), concurrency (ELIMIT), payload
 * decode (EREQUEST). */
void mprpc__srv_dispatch(srv_conn_t *conn, const mprpc_frame_t *f, uint64_t arrival) {
  mprpc_server_t *s = conn->s;
  const mprpc_meta_t *mt = &f->meta;
  char text[256];
  int err = 0;
  /* Clients send the same method over and over: a hit on the last one
   * costs two memcmp instead of two hashes over the names. */
  bool svc_found = true;
  srv_method_t *m = conn->last_m;
  if (!m || !mprpc__srv_method_is(m, mt->service_name, mt->method_name)) {
    m = mprpc__srv_lookup(s, mt->service_name, mt->method_name, &svc_found);
    if (m)
      conn->last_m = m;
  }
  mprpc__mstats_t *st = m ? &m->st[conn->l->idx] : NULL;
  if (st)
    MPRPC__ONE_WRITER_ADD(&st->requests, 1);

  text[0] = 0;
  mprpc__srv_conn_identity(conn); /* once; handlers read it from their call */
  if (atomic_load(&s->stopping)) {
    err = MPRPC_ELOGOFF;
    snprintf(text, sizeof text, "server is stopping");
  } else if ((s->o.authenticate || s->o.authenticate_tls) && !conn->authed) {
    int arc = s->o.authenticate_tls
                  ? s->o.authenticate_tls(s->o.auth_ud, mt->auth_data.ptr, mt->auth_data.len,
                                          conn->peer, conn->identity)
                  : s->o.authenticate(s->o.auth_ud, mt->auth_data.ptr, mt->auth_data.len,
                                      conn->peer);
    if (arc != 0) {
      err = MPRPC_ERPCAUTH;
      snprintf(text, sizeof text, "authentication failed");
    } else {
      conn->authed = true;
    }
  }
  if (!err && !mprpc__compress_known(mt->compress_type)) {
    err = MPRPC_EREQUEST;
    snprintf(text, sizeof text, "compress_type %d is not supported", (int)mt->compress_type);
  }
  if (!err && mt->content_type != 0) { /* brpc's json / proto-text payloads */
    err = MPRPC_EREQUEST;
    snprintf(text, sizeof text, "content_type %d is not supported (protobuf only)",
             (int)mt->content_type);
  }
  if (!err && !m) {
    err = svc_found ? MPRPC_ENOMETHOD : MPRPC_ENOSERVICE;
    if (svc_found)
      snprintf(text, sizeof text, "service %.*s has no method %.*s",
               (int)(mt->service_name.len > 100 ? 100 : mt->service_name.len),
               (const char *)mt->service_name.ptr,
               (int)(mt->method_name.len > 100 ? 100 : mt->method_name.len),
               (const char *)mt->method_name.ptr);
    else
      snprintf(text, sizeof text, "no service named %.*s",
               (int)(mt->service_name.len > 200 ? 200 : mt->service_name.len),
               (const char *)mt->service_name.ptr);
  }
  uint64_t deadline = 0;
  if (!err && mt->timeout_ms > 0) {
    deadline = arrival + (uint64_t)mt->timeout_ms * MPRPC_NS_PER_MS;
    if (mprpc_loop_now(conn->l->loop) >= deadline) {
      err = MPRPC_ERPCTIMEDOUT;
      snprintf(text, sizeof text, "deadline of %d ms passed before dispatch", (int)mt->timeout_ms);
    }
  }
  uint8_t gov_taken = 0; /* config-centre limits, checked first: cheapest refusal */
  int refused = -1;       /* MPRPC__REFUSED_* when a limit refused the call */
  if (!err && (err = mprpc__srv_gov_admit(s, m, arrival, &gov_taken, &refused, text,
                                          sizeof text)) == 0)
    refused = -1;
  bool acquired = false, limited = false;
  /* The limit may change at run time (POST /flags): read it once. */
  uint32_t limit = m ? __atomic_load_n(&m->limit, __ATOMIC_RELAXED) : 0;
  if (!err) {
    if (s->o.max_concurrency && !try_acquire(&s->inflight, s->o.max_concurrency)) {
      err = MPRPC_ELIMIT;
      refused = MPRPC__REFUSED_CONC;
      snprintf(text, sizeof text, "server concurrency limit %u reached", s->o.max_concurrency);
    } else if (limit && !try_acquire(&m->limit_inflight, limit)) {
      if (s->o.max_concurrency)
        atomic_fetch_sub(&s->inflight, 1);
      err = MPRPC_ELIMIT;
      refused = MPRPC__REFUSED_CONC;
      snprintf(text, sizeof text, "concurrency limit %u of %s.%s reached", limit, m->service,
               m->name);
    } else {
      acquired = true;
      limited = limit != 0;
      MPRPC__ONE_WRITER_ADD(&st->admitted, 1);
    }
  }

  mprpc_server_call_t *call = NULL;
  size_t rid = mt->request_id.len;
  const uint8_t *pl = f->payload.ptr; /* the payload, inflated when compressed */
  size_t plen = f->payload.len;
  uint8_t *plain = NULL;
  if (!err) {
    call = mprpc__srv_call_alloc(conn->l, f->attachment.len + rid + 1);
    if (!call) {
      err = MPRPC_EINTERNAL;
      snprintf(text, sizeof text, "out of memory");
    }
  }
  if (call) {
    uint8_t *tail = (uint8_t *)(call + 1);
    call->magic = MPRPC__CALL_MAGIC;
    call->refs = 2; /* invoke + completion */
    call->s = s;
    call->conn = conn;
    call->m = m;
    call->arrival_ns = arrival;
    call->deadline_ns = deadline;
    call->limited = limited;
    if (f->attachment.len)
      memcpy(tail, f->attachment.ptr, f->attachment.len);
    call->att = tail;
    call->att_len = f->attachment.len;
    char *ridp = (char *)tail + f->attachment.len;
    if (rid)
      memcpy(ridp, mt->request_id.ptr, rid);
    ridp[rid] = 0;
    call->meta = (mprpc_server_call_meta_t){
        .correlation_id = mt->correlation_id,
        .log_id = mt->log_id,
        .trace_id = mt->trace_id,
        .span_id = mt->span_id,
        .parent_span_id = mt->parent_span_id,
        .request_id = ridp,
        .timeout_ms = mt->timeout_ms,
        .service = m->service,
        .method = m->name,
        .peer = conn->peer,
    };
    /* The span: the request's ids as sent (a brpc client's are kept), fresh
     * ones from this loop's seam when it carried none. */
    call->trace_id = mt->trace_id;
    call->span_id = mt->span_id;
    if (!call->trace_id || !call->span_id) {
      mprpc_rand_t r = mprpc_loop_rand(conn->l->loop);
      if (!call->trace_id)
        call->trace_id = mprpc__trace_new_id(r);
      if (!call->span_id)
        call->span_id = mprpc__trace_new_id(r);
    }
    call->req_bytes = f->frame_len;
    call->compress_type = mt->compress_type; /* the response uses it too */
    if (mt->compress_type != MPRPC_COMPRESS_NONE) {
      const char *why;
      int zr = mprpc__decompress_payload(mt->compress_type, pl, plen, s->o.max_body, &plain,
                                         &plen, &why);
      if (zr) {
        free(call);
        call = NULL;
        err = zr == MPRPC_ENOMEM ? MPRPC_EINTERNAL : MPRPC_EREQUEST;
        snprintf(text, sizeof text, "request payload (compress_type %d) %s",
                 (int)mt->compress_type, why);
      }
      pl = plain;
    }
  }
  if (call) {
    size_t lim = s->o.max_decode_bytes ? s->o.max_decode_bytes : 16 * plen + 64 * 1024;
    call->alloc_limit = lim;
    call->alloc = (ProtobufCAllocator){mprpc__srv_alloc, mprpc__srv_free, call};
    call->input = protobuf_c_message_unpack(m->desc->input, &call->alloc, plen, pl);
    if (plain) { /* unpack copies what it keeps */
      free(plain);
      plain = NULL;
    }
    if (!call->input) {
      free(call);
      call = NULL;
      err = MPRPC_EREQUEST;
      snprintf(text, sizeof text, "request payload does not decode as %s",
               m->desc->input->name);
    }
  }
  if (err) {
    if (gov_taken)
      mprpc__srv_gov_release(m, gov_taken, 0, false, arrival);
    if (acquired) {
      if (s->o.max_concurrency)
        atomic_fetch_sub(&s->inflight, 1);
      if (limited)
        atomic_fetch_sub(&m->limit_inflight, 1);
      MPRPC__ONE_WRITER_ADD(&st->admitted, (uint64_t)-1);
    }
    if (m) {
      mprpc__srv_count_error(st, err);
      if (refused >= 0)
        MPRPC__ONE_WRITER_ADD(&st->refused[refused], 1);
    } else if (err == MPRPC_ENOSERVICE) {
      atomic_fetch_add(&s->st_noservice, 1);
    } else if (err == MPRPC_ENOMETHOD) {
      atomic_fetch_add(&s->st_nomethod, 1);
    } else {
      atomic_fetch_add(&s->st_unrouted, 1);
    }
    size_t sent = mprpc__srv_send_error(conn, mt->correlation_id, err, text);
    if (m && mprpc__srv_rpcz_want(s, conn->l)) {
      mprpc_rpcz_span_t sp;
      sp.trace_id = mt->trace_id;
      sp.span_id = mt->span_id;
      sp.parent_span_id = mt->parent_span_id;
      sp.error_code = mprpc_err_to_wire(err);
      sp.request_bytes = f->frame_len;
      sp.response_bytes = sent;
      mprpc__srv_rpcz_put(conn, m, arrival, mprpc_loop_now(conn->l->loop), &sp);
    }
    return;
  }
  call->gov_taken = gov_taken; /* given back when the call completes */
  call->next = conn->calls;
  if (conn->calls)
    conn->calls->prev = call;
  conn->calls = call;
  conn->ncalls++;
  conn->inflight++;
  if (s->o.executor.vt && s->o.executor.vt->submit(s->o.executor.ctx, run_on_pool, call) == 0)
    return; /* the invoke reference is released by invoke_done_task */
  srv_loop_t *l = conn->l;
  uint64_t started = l->handler_done_ns > arrival ? l->handler_done_ns : arrival;
  /* Calls the handler makes join its span (include/mprpc/trace.h). */
  mprpc_trace_ctx_t tprev = mprpc_trace_set_current(mprpc_server_call_trace(call));
  m->svc->invoke(m->svc, m->index, call->input, mprpc__srv_closure, call);
  mprpc_trace_set_current(tprev);
  uint64_t done_at = mprpc_loop_now(l->loop);
  l->handler_done_ns = done_at;
  if (done_at > started && done_at - started > s->slow_ns)
    slow_handler(s, st, m, done_at, done_at - started);
  mprpc__srv_call_release(call); /* the invoke reference */
}

size_t mprpc__srv_send_error(srv_conn_t *conn, int64_t cid, int err, const char *text) {
  mprpc_meta_t meta;
  memset(&meta, 0, sizeof meta);
  meta.has_response = true;
  meta.error_code = mprpc_err_to_wire(err);
  meta.error_text = mprpc_bytes_str(text);
  meta.correlation_id = cid;
  mprpc_frame_out_t out;
  size_t sent = 0;
  if (mprpc_frame_encode(&out, &meta, NULL, 0, NULL, 0) == 0) {
    sent = out.total;
    mprpc__srv_write_frame(conn, &out, mprpc_loop_now(conn->l->loop));
  }
  mprpc_frame_out_free(&out);
  return sent;
}
