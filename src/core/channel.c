/*
 * Channel: the call state machine (attempts, retries, failover, deadline,
 * backup requests), the ProtobufCService view and the public API. The
 * connections and the endpoint list live in endpoint.c.
 *
 * Threading: invoke/call/cancel/destroy may come from any thread; they post
 * to the channel's loop (holding a channel reference for the post), and
 * everything else runs there.
 */
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/channel_int.h"
#include "core/compress.h"
#include "core/msg_check.h"
#include "core/trace.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

/* call_finish copies an endpoint's name into the controller whole. */
_Static_assert(sizeof(((mprpc__ep_t *)0)->name) == sizeof(((mprpc_controller_t *)0)->remote),
               "endpoint name and controller remote differ in size");

static void call_try(mprpc__call_t *c);
static void call_finish(mprpc__call_t *c, int err, const char *text, ProtobufCMessage *msg,
                        mprpc__ep_t *from, const uint8_t *att, size_t att_len, uint64_t now);

/* ---- options -------------------------------------------------------------- */

void mprpc_channel_opts_init(mprpc_channel_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->timeout_ms = 1000;
  o->connect_timeout_ms = 500;
  o->max_retry = 2;
  o->retry_policy = MPRPC_RETRY_FAILOVER;
  o->lb = MPRPC_LB_RR;
  o->connections_per_endpoint = 1;
}

static uint64_t ms_or(int64_t ms, uint64_t dflt_ms) {
  return (ms > 0 ? (uint64_t)ms : dflt_ms) * MPRPC_NS_PER_MS;
}

/* ---- references and freeing ------------------------------------------------ */

static void ch_ref(mprpc_channel_t *ch) { __atomic_fetch_add(&ch->refs, 1, __ATOMIC_ACQ_REL); }

static void ch_unref(mprpc_channel_t *ch) {
  __atomic_fetch_sub(&ch->refs, 1, __ATOMIC_ACQ_REL);
  mprpc__channel_maybe_free(ch);
}

static void ch_free_mem(mprpc_channel_t *ch) {
  while (ch->call_free) {
    mprpc__call_t *c = ch->call_free;
    ch->call_free = c->wait_next;
    free(c->req);
    free(c);
  }
  while (ch->att_free) {
    mprpc__attempt_t *a = ch->att_free;
    ch->att_free = a->call_next;
    free(a);
  }
  mprpc__lb_free(&ch->lb);
  mprpc__idseq_free(&ch->attempts);
  mprpc__idmap_free(&ch->calls);
  free(ch->eps);
  free(ch->nodes);
  free(ch->minfo);
  free(ch->auth);
  mprpc__chgov_free(ch);
  free(ch);
}

void mprpc__channel_maybe_free(mprpc_channel_t *ch) {
  if (ch->destroying && ch->live_eps == 0 && ch->cb_depth == 0 &&
      __atomic_load_n(&ch->refs, __ATOMIC_ACQUIRE) == 0 && ch->nlive == 0)
    ch_free_mem(ch);
}

/* ---- calls ---------------------------------------------------------------- */

static void call_free(mprpc__call_t *c) {
  if (c->own_ctl)
    mprpc__controller_release(&c->own);
  free(c->req);
  free(c);
}

/* call_free for the loop thread while ch is alive: keeps the record and its
 * request buffer for the next call made on this thread (see call_new). */
static void call_recycle(mprpc_channel_t *ch, mprpc__call_t *c) {
  if (ch->ncall_free >= MPRPC__CALL_CACHE) {
    call_free(c);
    return;
  }
  if (c->own_ctl)
    mprpc__controller_release(&c->own);
  if (c->req_cap > MPRPC__CALL_REQ_KEEP) { /* keep only small buffers */
    free(c->req);
    c->req = NULL;
    c->req_cap = 0;
  }
  c->wait_next = ch->call_free;
  ch->call_free = c;
  ch->ncall_free++;
}

static bool call_idempotent(const mprpc__call_t *c) { return c->ch->minfo[c->midx].idempotent; }

static void stat_failure(mprpc_channel_t *ch, int err) {
  MPRPC__STAT_INC(ch, failed);
  mprpc_channel_stats_t *st = &ch->st;
  size_t n = __atomic_load_n(&st->ncodes, __ATOMIC_ACQUIRE);
  for (size_t i = 0; i < n; i++)
    if (st->by_code[i].code == err) {
      MPRPC__ONE_WRITER_ADD(&st->by_code[i].count, 1);
      return;
    }
  if (n < MPRPC_CHANNEL_MAX_CODES) {
    st->by_code[n].code = err;
    st->by_code[n].count = 1;
    __atomic_store_n(&st->ncodes, n + 1, __ATOMIC_RELEASE);
  }
}

/* ---- the response arena ------------------------------------------------ */

static void *resp_alloc(void *ad, size_t n) {
  mprpc__call_t *c = ad;
  void *p = mprpc__arena_alloc(&c->resp_arena, n);
  if (p)
    return p;
  p = malloc(n ? n : 1);
  if (p)
    c->resp_heap++;
  return p;
}

static void resp_free(void *ad, void *p) {
  mprpc__call_t *c = ad;
  if (!p || mprpc__arena_owns(&c->resp_arena, p))
    return;
  c->resp_heap--;
  free(p);
}

/* One response per call is ever decoded (the attempt that answers first
 * finishes the call), so the arena starts empty each time. */
ProtobufCMessage *mprpc__call_unpack(mprpc__call_t *c, size_t len, const uint8_t *data) {
  mprpc__arena_init(&c->resp_arena, c->resp_buf, sizeof c->resp_buf);
  c->resp_heap = 0; /* the last one was freed or taken */
  c->resp_alloc = (ProtobufCAllocator){resp_alloc, resp_free, c};
  return protobuf_c_message_unpack(c->method->output, &c->resp_alloc, len, data);
}

void mprpc__call_free_resp(mprpc__call_t *c, ProtobufCMessage *msg) {
  if (msg && c->resp_heap) /* else nothing of it is on the heap */
    protobuf_c_message_free_unpacked(msg, &c->resp_alloc);
}

/* A message wholly on the heap is handed over as is. One partly in the
 * arena is copied out (pack, unpack with the default allocator) and the
 * original, which the closure is still looking at, is freed after the
 * closure as if it had not been taken. */
ProtobufCMessage *mprpc__call_take_response(mprpc__call_t *c) {
  ProtobufCMessage *m = c->resp;
  if (!m || c->resp_taken)
    return NULL;
  if (c->resp_arena.used) {
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
      return NULL;
    protobuf_c_message_pack(m, buf);
    ProtobufCMessage *copy = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    free(buf);
    if (copy)
      c->resp_taken = true;
    return copy;
  }
  c->resp = NULL;
  c->resp_heap = 0; /* what was on the heap is the caller's now */
  return m;
}

/* A closure continues the work of whoever made the call: a call made from
 * a handler (it has a parent span) runs its closure in that handler's
 * context, so the handler's next calls join the same trace. A root call's
 * closure gets no context: a client's closed loop (the next call from the
 * previous one's closure) starts a new trace per call, not one endless
 * trace. Returns the context to restore. */
static mprpc_trace_ctx_t closure_trace_enter(const mprpc__call_t *c) {
  mprpc_trace_ctx_t t = {0, 0};
  if (c->parent_span_id)
    t = (mprpc_trace_ctx_t){c->trace_id, c->parent_span_id};
  return mprpc_trace_set_current(t);
}

/* Runs the user's closure for an async call (on the loop) and frees. */
static void deliver(mprpc__call_t *c) {
  mprpc_channel_t *ch = c->ch;
  mprpc_controller_t *ctl = c->ctl;
  ctl->resp_call = c;
  ch->cb_depth++;
  mprpc_controller_t *prev = mprpc__controller_set_current(ctl);
  mprpc_trace_ctx_t tprev = closure_trace_enter(c);
  if (c->done)
    c->done(c->resp, c->arg);
  mprpc_trace_set_current(tprev);
  mprpc__controller_set_current(prev);
  ch->cb_depth--;
  if (ctl->resp_call == c)
    ctl->resp_call = NULL;
  mprpc__call_free_resp(c, c->resp);
  call_recycle(ch, c);
}

static void deliver_posted(void *arg) {
  mprpc__call_t *c = arg;
  mprpc_channel_t *ch = c->ch;
  deliver(c);
  ch_unref(ch);
}

/* The same for a sync call, on the caller's thread once woken. */
static void deliver_sync(mprpc__call_t *c) {
  mprpc_controller_t *ctl = c->ctl;
  ctl->resp_call = c;
  mprpc_controller_t *prev = mprpc__controller_set_current(ctl);
  mprpc_trace_ctx_t tprev = closure_trace_enter(c);
  if (c->done)
    c->done(c->resp, c->arg);
  mprpc_trace_set_current(tprev);
  mprpc__controller_set_current(prev);
  if (ctl->resp_call == c)
    ctl->resp_call = NULL;
  mprpc__call_free_resp(c, c->resp);
  call_free(c);
}

/* Attempt records: reused through the channel's bounded free list (loop
 * thread only) instead of a calloc/free pair per attempt. */
static mprpc__attempt_t *att_alloc(mprpc_channel_t *ch) {
  mprpc__attempt_t *a = ch->att_free;
  if (!a)
    return calloc(1, sizeof *a);
  ch->att_free = a->call_next;
  ch->natt_free--;
  memset(a, 0, sizeof *a);
  return a;
}

static void att_release(mprpc_channel_t *ch, mprpc__attempt_t *a) {
  if (ch->natt_free >= MPRPC__ATT_CACHE) {
    free(a);
    return;
  }
  a->call_next = ch->att_free;
  ch->att_free = a;
  ch->natt_free++;
}

/* Drops every outstanding attempt of c: their answers, if any come, are
 * counted as late. */
static void call_drop_attempts(mprpc__call_t *c) {
  mprpc_channel_t *ch = c->ch;
  mprpc__attempt_t *a = c->att;
  c->att = NULL;
  while (a) {
    mprpc__attempt_t *n = a->call_next;
    mprpc__idseq_del(&ch->attempts, a->cid);
    mprpc_timer_cancel(ch->loop, a->timer);
    if (a->ep)
      mprpc__ep_detach(a->ep, a);
    att_release(ch, a);
    a = n;
  }
  c->outstanding = 0;
}

/* Started calls are on ch->live (destroy fails them all); the ones a
 * caller holds a controller for are also in ch->calls, where a cancel finds
 * them by id. A call without one cannot be cancelled and skips the map. */
static int live_link(mprpc_channel_t *ch, mprpc__call_t *c) {
  c->live_prev = NULL;
  c->live_next = ch->live;
  if (ch->live)
    ch->live->live_prev = c;
  ch->live = c;
  ch->nlive++;
  if (c->own_ctl)
    return 0;
  int rc = mprpc__idmap_put(&ch->calls, c->id, c);
  c->in_map = rc == 0;
  return rc;
}

static void live_unlink(mprpc_channel_t *ch, mprpc__call_t *c) {
  if (c->live_prev)
    c->live_prev->live_next = c->live_next;
  else if (ch->live == c)
    ch->live = c->live_next;
  else
    return; /* never linked */
  if (c->live_next)
    c->live_next->live_prev = c->live_prev;
  c->live_prev = c->live_next = NULL;
  ch->nlive--;
  if (c->in_map)
    mprpc__idmap_del(&ch->calls, c->id);
  c->in_map = false;
}

/* snprintf("%s") without the format machinery: this runs for every call. */
static void copy_text(char *dst, size_t cap, const char *src) {
  size_t n = strnlen(src, cap - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* now: the loop's clock, read by the caller (one read less per call). */
static void call_finish(mprpc__call_t *c, int err, const char *text, ProtobufCMessage *msg,
                        mprpc__ep_t *from, const uint8_t *att, size_t att_len, uint64_t now) {
  mprpc_channel_t *ch = c->ch;
  if (c->finished) { /* cannot happen; keep the exactly-once promise anyway */
    mprpc__call_free_resp(c, msg);
    return;
  }
  /* A call failing because no provider can be reached ends with its
   * method's fallback, if it has one (channel_gov.c). */
  if (err && !msg && !c->degrading && ch->minfo[c->midx].fallback &&
      mprpc__chgov_fallback_after(c, err, now))
    return;
  c->finished = true;
  mprpc_controller_t *ctl = c->ctl;
  mprpc__controller_clear_outputs(ctl);
  if (from) /* copied first: dropping the attempts may release the endpoint;
                whole (a fixed-size copy), both arrays are MPRPC__CTL_REMOTE */
    memcpy(ctl->remote, from->name, sizeof ctl->remote);
  mprpc_timer_cancel(ch->loop, c->deadline_timer);
  mprpc_timer_cancel(ch->loop, c->backup_timer);
  c->deadline_timer = c->backup_timer = 0;
  mprpc__dl_unlink(ch, c);
  call_drop_attempts(c);
  live_unlink(ch, c);
  if (c->waiting_eps) {
    for (mprpc__call_t **pp = &ch->waitq; *pp; pp = &(*pp)->wait_next)
      if (*pp == c) {
        *pp = c->wait_next;
        break;
      }
    c->waiting_eps = false;
  }

  ctl->error_code = err;
  ctl->remote_code = err ? c->wire_code : 0;
  c->wire_code = 0;
  copy_text(ctl->error_text, sizeof ctl->error_text,
            err ? (text && *text ? text : mprpc_strerror(err)) : "");
  ctl->attempts = c->nattempts;
  ctl->latency_us = (now > c->start_ns ? now - c->start_ns : 0) / MPRPC_NS_PER_US;
  ctl->out_trace_id = c->trace_id;
  ctl->out_span_id = c->span_id;
  ctl->out_parent_span_id = c->parent_span_id;
  if (err == 0 && att_len) {
    ctl->resp_att = malloc(att_len);
    if (ctl->resp_att) {
      memcpy(ctl->resp_att, att, att_len);
      ctl->resp_att_len = att_len;
    }
  }
  if (err == 0)
    MPRPC__STAT_INC(ch, ok);
  else
    stat_failure(ch, err);
  mprpc__ch_method_record(ch, c->midx, err, now > c->start_ns ? now - c->start_ns : 0);
  c->err = err;
  c->resp = msg;
  if (c->sync) {
    /* The caller's thread runs the closure; c is its from here on. */
    void *w = c->waiter;
    ch->loop.vt->waiter_wake(ch->loop.ctx, w);
  } else if (ch->starting) {
    /* Finished inside mprpc_channel_call (see call_post): the closure runs
     * from the loop once that returned. */
    ch_ref(ch);
    if (mprpc_loop_post(ch->loop, deliver_posted, c) != 0) {
      __atomic_fetch_sub(&ch->refs, 1, __ATOMIC_ACQ_REL);
      deliver(c); /* the loop refuses posts: it is stopping */
    }
  } else {
    deliver(c);
  }
  mprpc__channel_maybe_free(ch);
}

static void call_fail(mprpc__call_t *c, int err, const char *text, mprpc__ep_t *from) {
  call_finish(c, err, text, NULL, from, NULL, 0, mprpc_loop_now(c->ch->loop));
}

void mprpc__call_finish_local(mprpc__call_t *c, int err, const char *text, ProtobufCMessage *msg) {
  call_finish(c, err, text, msg, NULL, NULL, 0, mprpc_loop_now(c->ch->loop));
}

void mprpc__call_deadline(void *arg) {
  mprpc__call_t *c = arg;
  c->deadline_timer = 0;
  char text[MPRPC__CTL_TEXT];
  if (c->waiting_eps) {
    snprintf(text, sizeof text, "no endpoint for %s within the deadline", c->ch->sd->name);
    if (!mprpc__chgov_fallback(c, text))
      call_fail(c, MPRPC_ENOENDPOINT, text, NULL);
    return;
  }
  snprintf(text, sizeof text, "deadline of %llu ms exceeded after %d attempt(s)",
           (unsigned long long)((c->deadline_ns - c->start_ns) / MPRPC_NS_PER_MS), c->nattempts);
  for (mprpc__attempt_t *a = c->att; a; a = a->call_next)
    if (a->ep && a->written)
      mprpc__ep_attempt_timed_out(a->ep, a);
  call_fail(c, MPRPC_ERPCTIMEDOUT, text, c->att ? c->att->ep : NULL);
}

static void attempt_timeout_fire(void *arg) {
  mprpc__attempt_t *a = arg;
  a->timer = 0;
  char text[MPRPC__CTL_TEXT];
  snprintf(text, sizeof text, "attempt to %s timed out", a->ep ? a->ep->name : "?");
  if (a->ep && a->written)
    mprpc__ep_attempt_timed_out(a->ep, a);
  /* Still waiting for its connection: it never left, so it surely did not
   * run; once written, its outcome is unknown. */
  mprpc__attempt_failed(a, MPRPC_ERPCTIMEDOUT, text,
                        a->written ? MPRPC__RETRY_UNKNOWN : MPRPC__RETRY_SAFE);
}

static void attempt_start(mprpc__call_t *c, mprpc__ep_t *ep) {
  mprpc_channel_t *ch = c->ch;
  mprpc__attempt_t *a = att_alloc(ch);
  if (!a) {
    call_fail(c, MPRPC_ENOMEM, "out of memory starting an attempt", NULL);
    return;
  }
  a->call = c;
  a->cid = mprpc__idseq_add(&ch->attempts, a);
  if (a->cid == 0) {
    att_release(ch, a);
    call_fail(c, MPRPC_ENOMEM, "out of memory starting an attempt", NULL);
    return;
  }
  a->call_next = c->att;
  c->att = a;
  c->outstanding++;
  c->nattempts++;
  if (c->ntried < (int)(sizeof c->tried / sizeof c->tried[0]))
    c->tried[c->ntried++] = ep->addr_id; /* the address: all its connections */
  MPRPC__STAT_INC(ch, attempts);
  MPRPC__ONE_WRITER_ADD(&ep->calls, 1);
  if (ch->attempt_timeout_ns)
    a->timer = mprpc_timer_start(ch->loop, ch->attempt_timeout_ns, attempt_timeout_fire, a);
  mprpc__ep_submit(ep, a); /* may fail it (and retry) right here */
}

/* Starts the next attempt, or fails the call. */
/* The text of a call that found no endpoint because every provider the
 * registry lists requires TLS and this channel has none. */
static void fail_tls_only(mprpc__call_t *c) {
  mprpc_channel_t *ch = c->ch;
  char text[MPRPC__CTL_TEXT];
  snprintf(text, sizeof text,
           "every endpoint of %s requires TLS (%zu with tls=1 in the registry, e.g. %s); "
           "this channel has tls off (config key tls=on)",
           ch->sd->name, ch->tls_skipped, ch->tls_skip_name);
  call_fail(c, MPRPC_ENOENDPOINT, text, NULL);
}

static void call_try(mprpc__call_t *c) {
  mprpc_channel_t *ch = c->ch;
  if (ch->neps == 0 && ch->tls_skipped > 0) {
    fail_tls_only(c);
    return;
  }
  if (ch->neps == 0) {
    /* Registry: no provider right now (or no list yet). Wait, within the
     * deadline, for one to (re)appear: a rolling restart or a session
     * expiry briefly empties the list. */
    if (ch->reg.vt && !ch->destroying) {
      /* With a fallback, a list that says "nobody" is answered at once;
       * before the first list the call waits as any other. */
      if (ch->have_list && mprpc__chgov_fallback(c, "no provider is registered"))
        return;
      if (!c->waiting_eps) {
        c->waiting_eps = true;
        c->wait_next = ch->waitq;
        ch->waitq = c;
      }
      return;
    }
    call_fail(c, MPRPC_ENOENDPOINT, "no endpoint for the service", NULL);
    return;
  }
  if (c->nattempts == 0 && ch->minfo[c->midx].fallback &&
      mprpc__chgov_all_ejected(ch, mprpc_loop_now(ch->loop)) &&
      mprpc__chgov_fallback(c, "every endpoint is ejected"))
    return;
  mprpc__ep_t *ep = mprpc__ep_pick(ch, c, 0);
  if (!ep) {
    if (!mprpc__chgov_fallback(c, "no usable endpoint (disabled or outside the selection)"))
      call_fail(c, MPRPC_ENOENDPOINT, "no usable endpoint for the service (disabled or outside "
                "the selection)", NULL);
    return;
  }
  attempt_start(c, ep);
}

static void backup_fire(void *arg) {
  mprpc__call_t *c = arg;
  mprpc_channel_t *ch = c->ch;
  c->backup_timer = 0;
  if (c->finished || c->outstanding != 1 || c->nattempts >= 1 + c->max_retry)
    return;
  if (c->deadline_ns && mprpc_loop_now(ch->loop) >= c->deadline_ns)
    return;
  uint64_t busy = c->att && c->att->ep ? c->att->ep->addr_id : 0;
  mprpc__ep_t *ep = mprpc__ep_pick(ch, c, busy);
  if (!ep || ep->addr_id == busy)
    return;
  MPRPC__STAT_INC(ch, backups);
  attempt_start(c, ep);
}

void mprpc__channel_eps_changed(mprpc_channel_t *ch) {
  /* One at a time from the channel's queue: a closure run by call_try may
   * destroy the channel and fail the others. */
  mprpc__call_t *q;
  if (ch->neps == 0 && ch->tls_skipped == 0)
    return; /* still nothing: they keep waiting (call_try would park them) */
  while ((q = ch->waitq) != NULL) {
    ch->waitq = q->wait_next;
    q->waiting_eps = false;
    call_try(q);
  }
}

/* ---- attempt outcomes --------------------------------------------------------- */

static void attempt_unlink(mprpc__attempt_t *a) {
  mprpc__call_t *c = a->call;
  mprpc_channel_t *ch = c->ch;
  for (mprpc__attempt_t **pp = &c->att; *pp; pp = &(*pp)->call_next)
    if (*pp == a) {
      *pp = a->call_next;
      break;
    }
  c->outstanding--;
  mprpc__idseq_del(&ch->attempts, a->cid);
  mprpc_timer_cancel(ch->loop, a->timer);
  a->timer = 0;
}

/* ELIMIT is not among them: a provider refusing by its limits (rate_limit,
 * max_concurrency) is healthy and at capacity; ejecting it would cut the
 * service below the capacity the operator configured. Its calls are still
 * retried elsewhere (RETRY_SAFE: a refused call never ran). */
static bool endpoint_fault(int err) {
  switch (err) {
  case MPRPC_EFAILEDSOCKET:
  case MPRPC_ERPCTIMEDOUT:
  case MPRPC_ECONNREFUSED:
  case MPRPC_ECONNRESET:
  case MPRPC_ETIMEDOUT:
  case MPRPC_EOVERCROWDED:
  case MPRPC_EINTERNAL:
  case MPRPC_ERESPONSE:
    return true;
  default:
    return false;
  }
}

void mprpc__attempt_failed(mprpc__attempt_t *a, int err, const char *text, int retry) {
  mprpc__call_t *c = a->call;
  mprpc_channel_t *ch = c->ch;
  mprpc__ep_t *ep = a->ep;
  uint64_t now = mprpc_loop_now(ch->loop);
  bool a_not_tried = a->not_tried;
  int32_t wire = c->wire_code; /* this answer's code, if an answer failed it */
  c->wire_code = 0;
  attempt_unlink(a);
  if (ep) {
    ep->refs++;
    if (a_not_tried) {
      /* the endpoint was not reached: nothing to blame it for */
    } else if (err == MPRPC_ELOGOFF) {
      /* The provider is stopping: stop sending to it right away. */
      if (mprpc__breaker_eject(&ep->br, now))
        mprpc__ep_ejected(ch);
    } else if (endpoint_fault(err) && retry != MPRPC__RETRY_NEVER) {
      if (mprpc__breaker_on_error(&ep->br, now))
        mprpc__ep_ejected(ch);
    }
    mprpc__ep_detach(ep, a);
  }
  att_release(ch, a);
  if (c->finished) {
    if (ep)
      mprpc__ep_unref(ep);
    return;
  }
  bool may = ch->policy == MPRPC_RETRY_FAILOVER &&
             (retry == MPRPC__RETRY_SAFE || (retry == MPRPC__RETRY_UNKNOWN && call_idempotent(c)));
  if (a_not_tried) {
    /* It never left: it does not use the retry budget, but bound how often
     * that can happen so a channel whose endpoints all wait to reconnect
     * still gives up. */
    c->nattempts--;
    c->nskipped++;
  }
  bool budget = c->nattempts < 1 + c->max_retry && c->nskipped <= (int)ch->neps;
  bool time_left = !c->deadline_ns || now < c->deadline_ns;
  if (may && budget && time_left && !ch->destroying) {
    MPRPC__STAT_INC(ch, retries);
    if (ep)
      mprpc__ep_unref(ep);
    call_try(c);
    return;
  }
  if (c->outstanding > 0 && retry != MPRPC__RETRY_NEVER) {
    /* a backup attempt is still out: let it answer */
    if (ep)
      mprpc__ep_unref(ep);
    return;
  }
  c->wire_code = wire; /* the answer ends the call: remote_code */
  call_fail(c, err, text, ep);
  if (ep)
    mprpc__ep_unref(ep);
}

void mprpc__attempt_answered(mprpc__attempt_t *a, int err, const char *text,
                             ProtobufCMessage *msg, const uint8_t *att, size_t att_len,
                             uint64_t now) {
  mprpc__call_t *c = a->call;
  mprpc_channel_t *ch = c->ch;
  mprpc__ep_t *ep = a->ep;
  if (err != 0) {
    int retry = (err == MPRPC_ELOGOFF || err == MPRPC_ELIMIT || err == MPRPC_EOVERCROWDED)
                    ? MPRPC__RETRY_SAFE
                    : MPRPC__RETRY_NEVER;
    mprpc__attempt_failed(a, err, text, retry);
    return;
  }
  if (mprpc__breaker_on_success(&ep->br, now)) /* the window's share still failed */
    mprpc__ep_ejected(ch);
  ep->refs++;
  attempt_unlink(a);
  mprpc__ep_detach(ep, a);
  att_release(ch, a);
  call_finish(c, 0, "", msg, ep, att, att_len, now);
  mprpc__ep_unref(ep);
}

/* ---- starting calls ------------------------------------------------------------ */

/* A request whose frame body would exceed the peer's limit is refused by
 * the peer by closing the connection (or, past 64 MiB, by the write buffer
 * as EOVERCROWDED, retried twice): refuse it here, before anything is sent.
 * The limit is the channel's max_body, else the providers' default. The
 * meta is sized for the largest ids and timeout a request can carry, so
 * the check never depends on the attempt. false with text set when too big. */
static bool request_fits(const mprpc__call_t *c, char *text, size_t n) {
  const mprpc_channel_t *ch = c->ch;
  const mprpc_controller_t *ctl = c->ctl;
  uint64_t limit = ch->max_body ? ch->max_body : MPRPC_FRAME_DEFAULT_MAX_BODY;
  uint64_t data = (uint64_t)c->req_len + ctl->req_att_len;
  if (data + 4096 <= limit) /* the meta is far smaller: no need to size it */
    return true;
  mprpc_meta_t m;
  memset(&m, 0, sizeof m);
  m.has_request = true;
  m.service_name = (mprpc_bytes_t){(const uint8_t *)ch->sd->name, ch->svc_name_len};
  m.method_name = (mprpc_bytes_t){(const uint8_t *)c->method->name, ch->minfo[c->midx].name_len};
  m.correlation_id = INT64_MAX;
  m.log_id = ctl->log_id ? INT64_MIN : 0; /* negative: the longest varint */
  m.trace_id = m.span_id = m.parent_span_id = INT64_MIN;
  m.timeout_ms = INT32_MAX;
  m.auth_data = (mprpc_bytes_t){ch->auth, ch->auth_len};
  m.compress_type = c->compress_type;
  m.attachment_size = ctl->req_att_len ? INT32_MAX : 0;
  uint64_t body = data + mprpc_meta_size(&m);
  if (body <= limit)
    return true;
  snprintf(text, n,
           "request of %llu bytes (payload %zu, attachment %zu, meta) is larger than the "
           "body limit of %llu bytes (%s); not sent",
           (unsigned long long)body, c->req_len, ctl->req_att_len, (unsigned long long)limit,
           ch->max_body ? "the channel's max_body" : "the providers' default max_body_size");
  return false;
}

/* On the loop thread; the caller keeps ch alive. */
static void start_call(mprpc__call_t *c) {
  mprpc_channel_t *ch = c->ch;
  uint64_t now = mprpc_loop_now(ch->loop);
  c->start_ns = now;
  MPRPC__STAT_INC(ch, calls);
  /* One span per call, as brpc: retries and backups resend these ids. */
  mprpc_rand_t r = mprpc_loop_rand(ch->loop);
  if (!c->trace_id)
    c->trace_id = mprpc__trace_new_id(r);
  c->span_id = mprpc__trace_new_id(r);
  if (ch->destroying) {
    call_fail(c, MPRPC_ECANCELED, "channel destroyed", NULL);
    return;
  }
  if (live_link(ch, c) != 0) {
    call_fail(c, MPRPC_ENOMEM, "out of memory", NULL);
    return;
  }
  char big[MPRPC__CTL_TEXT];
  if (!request_fits(c, big, sizeof big)) {
    call_fail(c, MPRPC_ETOOBIG, big, NULL);
    return;
  }
  int64_t tmo = c->ctl->timeout_ms;
  uint64_t tmo_ns = tmo > 0 ? (uint64_t)tmo * MPRPC_NS_PER_MS : tmo < 0 ? 0 : ch->timeout_ns;
  if (tmo == 0 && ch->no_deadline)
    tmo_ns = 0;
  c->max_retry = ch->max_retry;
  if (ch->gov && mprpc__chgov_on_start(c, &tmo_ns, tmo != 0))
    return; /* degraded: answered here, nothing sent */
  if (tmo_ns) {
    c->deadline_ns = now + tmo_ns;
    if (tmo_ns == ch->timeout_ns && (!ch->dl_tail || ch->dl_tail->deadline_ns <= c->deadline_ns))
      mprpc__dl_append(ch, c, now);
    else
      c->deadline_timer = mprpc_timer_start_from(ch->loop, now, tmo_ns, mprpc__call_deadline, c);
  }
  if (ch->backup_ns && call_idempotent(c) && c->max_retry > 0)
    c->backup_timer = mprpc_timer_start_from(ch->loop, now, ch->backup_ns, backup_fire, c);
  ch->start_now = now; /* the first attempt's write reuses this reading */
  call_try(c);
  ch->start_now = 0;
}

static void start_on_loop(void *arg) {
  mprpc__call_t *c = arg;
  mprpc_channel_t *ch = c->ch;
  start_call(c);
  ch_unref(ch);
}

/* Why input cannot be sent as method md's request, into why. */
static int bad_input(const mprpc_channel_t *ch, const ProtobufCMethodDescriptor *md,
                     const ProtobufCMessage *input, char *why) {
  if (!input || !input->descriptor)
    snprintf(why, MPRPC__CTL_TEXT, "%s.%s: no request message", ch->sd->name, md->name);
  else if (input->descriptor != md->input)
    snprintf(why, MPRPC__CTL_TEXT, "%s.%s takes a %s, not a %s", ch->sd->name, md->name,
             md->input->name, input->descriptor->name);
  else if (mprpc__msg_check(input, why, MPRPC__CTL_TEXT) == 0)
    snprintf(why, MPRPC__CTL_TEXT, "%s does not pass protobuf_c_message_check",
             md->input->name);
  return MPRPC_EINVAL;
}

/* Builds a call (any thread). On MPRPC_EINVAL, why (MPRPC__CTL_TEXT bytes)
 * says what is wrong with the arguments. */
static int call_new(mprpc_channel_t *ch, unsigned midx, const ProtobufCMessage *input,
                    mprpc_controller_t *ctl, ProtobufCClosure done, void *arg,
                    mprpc__call_t **out, char *why) {
  if (midx >= ch->sd->n_methods) {
    snprintf(why, MPRPC__CTL_TEXT, "%s has no method %u (it has %u)", ch->sd->name, midx,
             ch->sd->n_methods);
    return MPRPC_EINVAL;
  }
  const ProtobufCMethodDescriptor *md = &ch->sd->methods[midx];
  if (!input || input->descriptor != md->input || !protobuf_c_message_check(input))
    return bad_input(ch, md, input, why);
  mprpc__call_t *c = NULL;
  if (mprpc_loop_in_loop(ch->loop) && ch->call_free) {
    /* the free list belongs to the loop thread */
    c = ch->call_free;
    ch->call_free = c->wait_next;
    ch->ncall_free--;
    uint8_t *req = c->req;
    size_t cap = c->req_cap;
    memset(c, 0, offsetof(mprpc__call_t, own)); /* see the struct */
    c->req = req;
    c->req_cap = cap;
  } else {
    c = calloc(1, sizeof *c);
    if (!c)
      return MPRPC_ENOMEM;
  }
  size_t len = protobuf_c_message_get_packed_size(input);
  if (c->req_cap < (len ? len : 1)) {
    free(c->req);
    c->req_cap = len ? len : 1;
    c->req = malloc(c->req_cap);
    if (!c->req)
      goto fail;
  }
  c->req_len = protobuf_c_message_pack(input, c->req);
  c->compress_type = ctl && ctl->req_compress ? ctl->req_compress - 1 : ch->compress_type;
  if (c->compress_type != MPRPC_COMPRESS_NONE) {
    /* Compressed once: retries and backups resend the same bytes. */
    uint8_t *z;
    size_t zlen;
    if (mprpc__compress(c->compress_type, c->req, c->req_len, &z, &zlen) != 0)
      goto fail;
    free(c->req);
    c->req = z;
    c->req_cap = zlen ? zlen : 1;
    c->req_len = zlen;
  }
  if (!ctl) {
    ctl = &c->own;
    memset(ctl, 0, offsetof(mprpc_controller_t, error_code)); /* the inputs */
    c->own_ctl = true;
  }
  c->ch = ch;
  c->midx = midx;
  c->method = md;
  c->ctl = ctl;
  c->done = done;
  c->arg = arg;
  c->id = __atomic_add_fetch(&ch->next_call_id, 1, __ATOMIC_RELAXED);
  /* The parent: the controller's explicit one, else this thread's context
   * (a handler's call, or a traced call's closure); none starts a trace. */
  mprpc_trace_ctx_t parent = mprpc_trace_current();
  if (ctl->trace_id)
    parent = (mprpc_trace_ctx_t){ctl->trace_id, ctl->parent_span_id};
  c->trace_id = parent.trace_id;
  c->parent_span_id = parent.trace_id ? parent.span_id : 0;
  mprpc__controller_clear_outputs(ctl);
  ctl->ch = ch;
  ctl->call_id = c->id;
  *out = c;
  return 0;
fail:
  free(c->req);
  free(c);
  return MPRPC_ENOMEM;
}

/* An async call made on the channel's loop thread (the closed-loop pattern:
 * the next call from the previous one's closure) starts right here instead
 * of through a post. A call that finishes while starting has its closure
 * posted (call_finish looks at ch->starting), so it never runs inside
 * mprpc_channel_call. Other calls are posted to the loop. */
static int call_post(mprpc__call_t *c) {
  mprpc_channel_t *ch = c->ch;
  if (!c->sync && mprpc_loop_in_loop(ch->loop)) {
    ch->starting++;
    ch->cb_depth++; /* keeps ch alive, as the post's reference would */
    start_call(c);
    ch->cb_depth--;
    ch->starting--;
    mprpc__channel_maybe_free(ch);
    return 0;
  }
  ch_ref(ch);
  int rc = mprpc_loop_post(ch->loop, start_on_loop, c);
  if (rc != 0)
    __atomic_fetch_sub(&ch->refs, 1, __ATOMIC_ACQ_REL);
  return rc;
}

int mprpc_channel_call(mprpc_channel_t *ch, unsigned method_index, const ProtobufCMessage *input,
                       mprpc_controller_t *ctl, ProtobufCClosure done, void *arg) {
  if (!ch)
    return MPRPC_EINVAL;
  mprpc__call_t *c;
  char why[MPRPC__CTL_TEXT] = "";
  int rc = call_new(ch, method_index, input, ctl, done, arg, &c, why);
  if (rc != 0) {
    if (ctl && why[0]) { /* done never runs; the controller says why */
      mprpc__controller_clear_outputs(ctl);
      ctl->error_code = rc;
      copy_text(ctl->error_text, sizeof ctl->error_text, why);
    }
    return rc;
  }
  rc = call_post(c);
  if (rc != 0) {
    if (c->ctl)
      c->ctl->call_id = 0;
    call_free(c);
  }
  return rc;
}

/* Reports a call that could not start to a stub user: the closure still
 * runs exactly once. why: the text, or NULL for "call not started: ...". */
static void invoke_error(mprpc_controller_t *ctl, int err, const char *why, ProtobufCClosure done,
                         void *arg) {
  mprpc_controller_t tmp;
  mprpc_controller_t *use = ctl;
  if (!use) {
    memset(&tmp, 0, sizeof tmp);
    use = &tmp;
  }
  mprpc__controller_clear_outputs(use);
  use->error_code = err;
  if (why && why[0])
    copy_text(use->error_text, sizeof use->error_text, why);
  else
    snprintf(use->error_text, sizeof use->error_text, "call not started: %s",
             mprpc_strerror(err));
  mprpc_controller_t *prev = mprpc__controller_set_current(use);
  if (done)
    done(NULL, arg);
  mprpc__controller_set_current(prev);
  if (use == &tmp)
    mprpc__controller_clear_outputs(&tmp);
}


static void channel_invoke(ProtobufCService *service, unsigned method_index,
                           const ProtobufCMessage *input, ProtobufCClosure closure,
                           void *closure_data) {
  mprpc_channel_t *ch = (mprpc_channel_t *)service;
  mprpc_controller_t *ctl = mprpc__controller_take_next();
  bool sync = mprpc_loop_can_block(ch->loop) && !mprpc_loop_in_loop(ch->loop);
  if (sync && mprpc_loop_on_a_loop(ch->loop)) {
    /* A handler running on a provider loop: blocking here would stall that
     * loop, and the answer may need it (nested call to the same process). */
    char text[MPRPC__CTL_TEXT];
    snprintf(text, sizeof text,
             "synchronous call of %s.%s from an event-loop thread would block that loop: "
             "call it asynchronously (mprpc_channel_call, answer from its callback) or run "
             "handlers on a pool (handler_threads)",
             ch->sd->name, method_index < ch->sd->n_methods ? ch->sd->methods[method_index].name : "?");
    static atomic_int warned; /* once per process: the error itself says it all */
    if (!atomic_exchange(&warned, 1))
      MPRPC_LOG_WARN("channel: %s", text);
    invoke_error(ctl, MPRPC_EDEADLK, text, closure, closure_data);
    return;
  }
  mprpc__call_t *c;
  char why[MPRPC__CTL_TEXT] = "";
  int rc = call_new(ch, method_index, input, ctl, closure, closure_data, &c, why);
  if (rc != 0) {
    invoke_error(ctl, rc, why, closure, closure_data);
    return;
  }
  if (sync) {
    c->sync = true;
    c->waiter = ch->loop.vt->waiter_new(ch->loop.ctx);
    if (!c->waiter) {
      call_free(c);
      invoke_error(ctl, MPRPC_ENOMEM, NULL, closure, closure_data);
      return;
    }
  }
  void *w = c->waiter;
  mprpc_loop_t loop = ch->loop;
  rc = call_post(c);
  if (rc != 0) {
    if (w)
      ch->loop.vt->waiter_free(ch->loop.ctx, w);
    if (ctl)
      ctl->call_id = 0;
    call_free(c);
    invoke_error(ctl, rc, NULL, closure, closure_data);
    return;
  }
  if (!sync)
    return;
  loop.vt->waiter_wait(loop.ctx, w);
  /* The loop is done with c: finish on this thread. */
  deliver_sync(c);
  loop.vt->waiter_free(loop.ctx, w);
}

static void channel_service_destroy(ProtobufCService *service) {
  mprpc_channel_destroy((mprpc_channel_t *)service);
}

ProtobufCService *mprpc_channel_service(mprpc_channel_t *ch) { return &ch->service; }

mprpc_loop_t mprpc_channel_loop(const mprpc_channel_t *ch) { return ch->loop; }

/* ---- cancel ---------------------------------------------------------------------- */

typedef struct cancel_msg {
  mprpc_channel_t *ch;
  uint64_t call_id;
} cancel_msg_t;

static void cancel_on_loop(void *arg) {
  cancel_msg_t *m = arg;
  mprpc_channel_t *ch = m->ch;
  mprpc__call_t *c = mprpc__idmap_get(&ch->calls, m->call_id);
  free(m);
  if (c && !c->finished)
    call_fail(c, MPRPC_ECANCELED, "canceled by the caller", NULL);
  ch_unref(ch);
}

void mprpc__channel_cancel(mprpc_channel_t *ch, uint64_t call_id) {
  cancel_msg_t *m = malloc(sizeof *m);
  if (!m)
    return;
  m->ch = ch;
  m->call_id = call_id;
  ch_ref(ch);
  if (mprpc_loop_post(ch->loop, cancel_on_loop, m) != 0) {
    __atomic_fetch_sub(&ch->refs, 1, __ATOMIC_ACQ_REL);
    free(m);
  }
}

/* ---- create / destroy ------------------------------------------------------------- */

/* Whether q[0..n) names service sd: its full name or its short name. */
static bool names_service(const ProtobufCServiceDescriptor *sd, const char *q, size_t n) {
  return (strlen(sd->name) == n && memcmp(sd->name, q, n) == 0) ||
         (sd->short_name && strlen(sd->short_name) == n && memcmp(sd->short_name, q, n) == 0);
}

/* "Login, Register" (a, b, c) as "Login, Register" into buf, for messages. */
static void method_names(const ProtobufCServiceDescriptor *sd, char *buf, size_t n) {
  size_t off = 0;
  buf[0] = '\0';
  for (unsigned i = 0; i < sd->n_methods && off < n; i++) {
    int w = snprintf(buf + off, n - off, "%s%s", i ? ", " : "", sd->methods[i].name);
    if (w < 0)
      break;
    off += (size_t)w;
  }
}

int mprpc_channel_parse_idempotent(const ProtobufCServiceDescriptor *sd, const char *list,
                                   bool *marks, char *why, size_t whylen) {
  char dummy[1];
  if (!why || !whylen) {
    why = dummy;
    whylen = sizeof dummy;
  }
  why[0] = '\0';
  if (!sd)
    return MPRPC_EINVAL;
  if (!list)
    return 0;
  const char *p = list;
  for (;;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    while (len && (*p == ' ' || *p == '\t')) {
      p++;
      len--;
    }
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
      len--;
    /* "Service.Method": the method name follows the last dot (method names
     * have none); a qualifier naming another service skips the entry, so
     * one list can serve the channels of several services. */
    const char *name = p;
    size_t nlen = len;
    const char *dot = len ? memrchr(p, '.', len) : NULL;
    bool ours = true;
    if (dot) {
      name = dot + 1;
      nlen = len - (size_t)(name - p);
      ours = names_service(sd, p, (size_t)(dot - p));
    }
    if (len && ours) {
      bool found = false;
      for (unsigned i = 0; i < sd->n_methods; i++)
        if ((nlen == 1 && name[0] == '*') ||
            (strlen(sd->methods[i].name) == nlen && memcmp(sd->methods[i].name, name, nlen) == 0)) {
          if (marks)
            marks[i] = true;
          found = true;
        }
      if (!found && !(nlen == 1 && name[0] == '*')) {
        char have[256];
        method_names(sd, have, sizeof have);
        snprintf(why, whylen, "idempotent_methods: %s has no method '%.*s' (it has: %s)",
                 sd->name, (int)(len > 100 ? 100 : len), p, have);
        return MPRPC_ENOTFOUND;
      }
    }
    if (!e)
      return 0;
    p = e + 1;
  }
}

static int set_idempotent_list(mprpc_channel_t *ch, const char *list) {
  if (!list || !*list)
    return 0;
  bool *marks = calloc(ch->sd->n_methods ? ch->sd->n_methods : 1, sizeof *marks);
  if (!marks)
    return MPRPC_ENOMEM;
  char why[MPRPC__CTL_TEXT];
  int rc = mprpc_channel_parse_idempotent(ch->sd, list, marks, why, sizeof why);
  if (rc == 0) {
    for (unsigned i = 0; i < ch->sd->n_methods; i++)
      if (marks[i])
        ch->minfo[i].idempotent = true;
  } else {
    MPRPC_LOG_ERROR("channel %s: %s", ch->sd->name, why);
  }
  free(marks);
  return rc;
}

int mprpc_channel_set_idempotent(mprpc_channel_t *ch, const char *method, bool idempotent) {
  if (!ch || !method)
    return MPRPC_EINVAL;
  for (unsigned i = 0; i < ch->sd->n_methods; i++)
    if (strcmp(ch->sd->methods[i].name, method) == 0) {
      ch->minfo[i].idempotent = idempotent;
      return 0;
    }
  return MPRPC_ENOTFOUND;
}

int mprpc_channel_new_in(const ProtobufCServiceDescriptor *sd, const mprpc_channel_opts_t *o,
                         mprpc_channel_t **out) {
  if (!sd || !out || !o || !o->loop.vt || !o->transport.vt || (!o->servers && !o->registry.vt) ||
      (o->servers && o->registry.vt))
    return MPRPC_EINVAL;
  if (!mprpc__compress_known(o->compress_type))
    return MPRPC_EUNSUPPORTED;
  if (o->retry_policy != MPRPC_RETRY_FAILOVER && o->retry_policy != MPRPC_RETRY_FAILFAST)
    return MPRPC_EINVAL;
  int rc = MPRPC_ENOMEM;
  mprpc_channel_t *ch = calloc(1, sizeof *ch);
  if (!ch)
    return MPRPC_ENOMEM;
  ch->service.descriptor = sd;
  ch->service.invoke = channel_invoke;
  ch->service.destroy = channel_service_destroy;
  ch->sd = sd;
  mprpc__idseq_init(&ch->attempts);
  mprpc__idmap_init(&ch->calls);
  if ((rc = mprpc__lb_init(&ch->lb, o->lb)) != 0)
    goto fail;
  rc = MPRPC_ENOMEM;
  ch->minfo = calloc(sd->n_methods ? sd->n_methods : 1, sizeof *ch->minfo);
  if (!ch->minfo)
    goto fail;
  ch->svc_name_len = strlen(sd->name);
  for (unsigned i = 0; i < sd->n_methods; i++)
    ch->minfo[i].name_len = strlen(sd->methods[i].name);
  if ((rc = set_idempotent_list(ch, o->idempotent_methods)) != 0)
    goto fail;
  if (o->auth_len) {
    rc = MPRPC_ENOMEM;
    ch->auth = malloc(o->auth_len);
    if (!ch->auth)
      goto fail;
    memcpy(ch->auth, o->auth_data, o->auth_len);
    ch->auth_len = o->auth_len;
  }
  ch->loop = o->loop;
  ch->tr = o->transport;
  ch->tls = o->tls;
  ch->own_reg = o->registry.vt && o->own_registry;
  ch->timeout_ns = ms_or(o->timeout_ms, 1000);
  ch->no_deadline = o->timeout_ms < 0;
  ch->connect_timeout_ns = ms_or(o->connect_timeout_ms, 500);
  ch->attempt_timeout_ns = o->attempt_timeout_ms > 0 ? (uint64_t)o->attempt_timeout_ms * MPRPC_NS_PER_MS : 0;
  ch->backup_ns = o->backup_request_ms > 0 ? (uint64_t)o->backup_request_ms * MPRPC_NS_PER_MS : 0;
  ch->max_retry = o->max_retry > 0 ? o->max_retry : 0;
  ch->conns_per_ep = o->connections_per_endpoint < 1    ? 1
                     : o->connections_per_endpoint > 64 ? 64
                                                        : o->connections_per_endpoint;
  ch->policy = o->retry_policy;
  ch->max_body = o->max_body;
  ch->max_buffered = o->max_buffered_bytes ? o->max_buffered_bytes : (size_t)256 << 20;
  ch->compress_type = o->compress_type;
  ch->bopts.conn_failures = o->eject_conn_failures > 0 ? (uint32_t)o->eject_conn_failures : 0;
  ch->bopts.error_percent = o->eject_error_percent > 0 ? (uint32_t)o->eject_error_percent : 0;
  ch->bopts.min_requests = o->eject_min_requests > 0 ? (uint32_t)o->eject_min_requests : 0;
  ch->bopts.base_ns = ms_or(o->eject_base_ms, 500);
  ch->bopts.max_ns = ms_or(o->eject_max_ms, 30000);
  ch->reconnect_base_ns = ms_or(o->reconnect_base_ms, 50);
  ch->reconnect_max_ns = ms_or(o->reconnect_max_ms, 2000);
  ch->reset_after = o->reset_after_timeouts < 0 ? 0 : o->reset_after_timeouts ? o->reset_after_timeouts : 3;
  if ((rc = mprpc__chgov_init(ch, o)) != 0) /* selection first: the first list obeys it */
    goto fail;
  if (o->servers) {
    if ((rc = mprpc__ep_list_set_fixed(ch, o->servers)) != 0)
      goto fail;
  } else {
    ch->reg = o->registry;
    rc = mprpc_registry_subscribe(ch->reg, sd->name, ch->loop, mprpc__ep_registry_cb, ch,
                                  &ch->sub_id);
    if (rc != 0)
      goto fail;
    ch->subscribed = true;
  }
  ch->list = o->list;
  if (ch->list.vt && ch->list.vt->add)
    ch->list.vt->add(ch->list.ctx, ch);
  *out = ch;
  return 0;
fail:
  if (ch->gov)
    mprpc__chgov_stop(ch);
  mprpc__chgov_free(ch);
  free(ch->minfo);
  free(ch->auth);
  mprpc__lb_free(&ch->lb); /* safe on a zeroed balancer */
  free(ch);
  return rc;
}

typedef struct destroy_msg {
  mprpc_channel_t *ch;
  void *waiter;
  mprpc_registry_t owned; /* closed by the post when nobody waits for it */
} destroy_msg_t;

static void destroy_on_loop(mprpc_channel_t *ch) {
  ch->destroying = true;
  if (ch->subscribed) {
    mprpc_registry_unsubscribe(ch->reg, ch->sub_id);
    ch->subscribed = false;
  }
  mprpc__chgov_stop(ch);
  /* Cancel every pending call; closures may start new calls, which the
   * start handler cancels in turn. Bounded: no new call enters the list. */
  ch->cb_depth++;
  while (ch->live)
    call_fail(ch->live, MPRPC_ECANCELED, "channel destroyed", NULL);
  mprpc__dl_stop(ch); /* the list is empty now */
  mprpc__ep_shutdown_all(ch);
  ch->cb_depth--;
}

static void destroy_post_cb(void *arg) {
  destroy_msg_t *m = arg;
  mprpc_channel_t *ch = m->ch;
  void *w = m->waiter;
  mprpc_registry_t owned = m->owned;
  destroy_on_loop(ch);
  if (w)
    ch->loop.vt->waiter_wake(ch->loop.ctx, w);
  else
    free(m);
  ch_unref(ch);
  mprpc_registry_close(owned); /* own_registry, unsubscribed above */
}

void mprpc_channel_destroy(mprpc_channel_t *ch) {
  if (!ch)
    return;
  if (ch->list.vt && ch->list.vt->remove) /* no /metrics reads it from here on */
    ch->list.vt->remove(ch->list.ctx, ch);
  /* own_registry: closed once the channel has unsubscribed from it, on the
   * destroying thread when it waits for that, else right after on the loop. */
  mprpc_registry_t owned = ch->own_reg ? ch->reg : (mprpc_registry_t){0};
  if (mprpc_loop_in_loop(ch->loop)) {
    ch_ref(ch);
    destroy_on_loop(ch);
    ch_unref(ch);
    mprpc_registry_close(owned);
    return;
  }
  mprpc_loop_t loop = ch->loop;
  bool can_block = mprpc_loop_can_block(loop);
  destroy_msg_t *m = calloc(1, sizeof *m);
  if (!m)
    return; /* leak rather than race */
  m->ch = ch;
  if (can_block) {
    m->waiter = loop.vt->waiter_new(loop.ctx);
    if (!m->waiter)
      can_block = false;
  }
  if (!can_block)
    m->owned = owned;
  ch_ref(ch);
  if (mprpc_loop_post(loop, destroy_post_cb, m) != 0) {
    /* The loop is gone: nothing runs there any more; tear down here. */
    __atomic_fetch_sub(&ch->refs, 1, __ATOMIC_ACQ_REL);
    if (m->waiter)
      loop.vt->waiter_free(loop.ctx, m->waiter);
    free(m);
    destroy_on_loop(ch);
    mprpc__channel_maybe_free(ch);
    mprpc_registry_close(owned);
    return;
  }
  if (can_block) {
    void *w = m->waiter;
    loop.vt->waiter_wait(loop.ctx, w);
    loop.vt->waiter_free(loop.ctx, w);
    free(m);
    mprpc_registry_close(owned);
  }
}

/* ---- stats ------------------------------------------------------------------------ */

void mprpc_channel_stats(const mprpc_channel_t *ch, mprpc_channel_stats_t *out) {
  memset(out, 0, sizeof *out);
  const mprpc_channel_stats_t *s = &ch->st;
#define LD(f) out->f = __atomic_load_n(&s->f, __ATOMIC_RELAXED)
  LD(calls);
  LD(ok);
  LD(failed);
  LD(attempts);
  LD(retries);
  LD(backups);
  LD(late_responses);
  LD(unknown_ids);
  LD(ejections);
  LD(reconnects);
  LD(silent_resets);
  LD(degraded);
  LD(fallbacks);
#undef LD
  size_t n = __atomic_load_n(&s->ncodes, __ATOMIC_ACQUIRE);
  for (size_t i = 0; i < n; i++) {
    out->by_code[i].code = s->by_code[i].code;
    out->by_code[i].count = __atomic_load_n(&s->by_code[i].count, __ATOMIC_RELAXED);
  }
  out->ncodes = n;
}

size_t mprpc_channel_endpoint_count(const mprpc_channel_t *ch) {
  return __atomic_load_n(&ch->neps, __ATOMIC_RELAXED);
}
