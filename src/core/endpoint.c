/*
 * Channel endpoints: the endpoint list (fixed or from the registry), one
 * multiplexed connection per endpoint with reconnect backoff, writing
 * requests, matching responses by correlation id, and endpoint selection
 * (load balancer + outlier ejection).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/channel_int.h"
#include "core/compress.h"
#include "mprpc/addr.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/log.h"

static void ep_connect(mprpc__ep_t *ep);
static bool ep_busy(const mprpc__ep_t *ep);

/* ---- endpoint objects ---------------------------------------------------- */

static mprpc__ep_t *ep_new(mprpc_channel_t *ch, const char *host, uint16_t port, uint32_t weight) {
  mprpc__ep_t *ep = calloc(1, sizeof *ep);
  if (!ep)
    return NULL;
  ep->host = strdup(host);
  if (!ep->host) {
    free(ep);
    return NULL;
  }
  ep->ch = ch;
  ep->id = ++ch->next_ep_id;
  ep->addr_id = ep->id; /* slot 0; other slots take slot 0's (ep_slots) */
  ep->port = port;
  ep->weight = weight ? weight : MPRPC_DEFAULT_WEIGHT;
  ep->reg_weight = ep->weight;
  if (strchr(host, ':'))
    snprintf(ep->name, sizeof ep->name, "[%s]:%u", host, (unsigned)port);
  else
    snprintf(ep->name, sizeof ep->name, "%s:%u", host, (unsigned)port);
  mprpc_rbuf_init(&ep->rbuf);
  mprpc__backoff_init(&ep->backoff, ch->reconnect_base_ns, ch->reconnect_max_ns);
  mprpc__breaker_init(&ep->br, &ch->bopts);
  ep->refs = 1; /* listed */
  ep->listed = true;
  ch->live_eps++;
  return ep;
}

void mprpc__ep_unref(mprpc__ep_t *ep) {
  if (--ep->refs > 0)
    return;
  mprpc_channel_t *ch = ep->ch;
  mprpc_timer_cancel(ch->loop, ep->backoff_timer);
  mprpc_rbuf_free(&ep->rbuf);
  mprpc__chgov_ep_free(ep);
  free(ep->host);
  free(ep);
  ch->live_eps--;
  mprpc__channel_maybe_free(ch);
}

/* An endpoint that left the list closes once nothing runs on it. */
static void ep_maybe_retire(mprpc__ep_t *ep) {
  if (ep->listed || ep->inflight > 0 || ep_busy(ep))
    return;
  mprpc_timer_cancel(ep->ch->loop, ep->backoff_timer);
  ep->backoff_timer = 0;
  if (ep->conn)
    mprpc_conn_close(ep->ch->tr, ep->conn, false);
}

static void list_push(mprpc__ep_t *ep, int which, mprpc__attempt_t *a) {
  mprpc__alist_t *l = &ep->al[which];
  a->list = which;
  a->ep_next = NULL;
  a->ep_prev = l->tail;
  if (l->tail)
    l->tail->ep_next = a;
  else
    l->head = a;
  l->tail = a;
}

static void list_unlink(mprpc__ep_t *ep, mprpc__attempt_t *a) {
  if (a->list == AL_NONE)
    return;
  mprpc__alist_t *l = &ep->al[a->list];
  if (a->ep_prev)
    a->ep_prev->ep_next = a->ep_next;
  else
    l->head = a->ep_next;
  if (a->ep_next)
    a->ep_next->ep_prev = a->ep_prev;
  else
    l->tail = a->ep_prev;
  a->ep_prev = a->ep_next = NULL;
  a->list = AL_NONE;
}

/* Moves every attempt of list `from` to the end of DYING. */
static void list_doom(mprpc__ep_t *ep, int from) {
  mprpc__alist_t *l = &ep->al[from];
  while (l->head) {
    mprpc__attempt_t *a = l->head;
    list_unlink(ep, a);
    list_push(ep, AL_DYING, a);
  }
}

static bool ep_busy(const mprpc__ep_t *ep) {
  for (int i = AL_QUEUED; i < AL_COUNT; i++)
    if (ep->al[i].head)
      return true;
  return false;
}

static void node_sync(mprpc__ep_t *ep) {
  if (ep->listed && ep->idx < ep->ch->neps && ep->ch->eps[ep->idx] == ep) {
    ep->ch->nodes[ep->idx].inflight = ep->inflight;
    ep->ch->nodes[ep->idx].ewma_ns = ep->ewma_ns;
  }
}

void mprpc__ep_detach(mprpc__ep_t *ep, mprpc__attempt_t *a) {
  if (a->written)
    mprpc__ep_attempt_gone(ep, a->cid);
  list_unlink(ep, a);
  if (ep->inflight)
    ep->inflight--;
  node_sync(ep);
  a->ep = NULL;
  ep_maybe_retire(ep);
  mprpc__ep_unref(ep);
}

/* ---- writing requests ----------------------------------------------------- */

static void attempt_write(mprpc__ep_t *ep, mprpc__attempt_t *a) {
  mprpc_channel_t *ch = ep->ch;
  mprpc__call_t *c = a->call;
  mprpc_controller_t *ctl = c->ctl;
  mprpc_meta_t m;
  memset(&m, 0, sizeof m);
  m.has_request = true;
  m.service_name = (mprpc_bytes_t){(const uint8_t *)ch->sd->name, ch->svc_name_len};
  m.method_name = (mprpc_bytes_t){(const uint8_t *)c->method->name, ch->minfo[c->midx].name_len};
  m.correlation_id = (int64_t)a->cid;
  if (ctl)
    m.log_id = ctl->log_id;
  m.trace_id = c->trace_id;
  m.span_id = c->span_id;
  m.parent_span_id = c->parent_span_id;
  /* One clock read per write: the request's remaining time and the RTT
   * sample's start (read before encoding; the difference is the encode). */
  uint64_t now = ch->start_now ? ch->start_now : mprpc_loop_now(ch->loop);
  if (c->deadline_ns) {
    uint64_t left = c->deadline_ns > now ? c->deadline_ns - now : 0;
    uint64_t ms = (left + MPRPC_NS_PER_MS - 1) / MPRPC_NS_PER_MS;
    m.timeout_ms = (int32_t)(ms == 0 ? 1 : (ms > INT32_MAX ? INT32_MAX : ms));
  }
  m.auth_data = (mprpc_bytes_t){ch->auth, ch->auth_len};
  m.compress_type = c->compress_type; /* c->req is compressed already */
  mprpc_frame_out_t out;
  int rc = mprpc_frame_encode(&out, &m, c->req, c->req_len, ctl ? ctl->req_att : NULL,
                              ctl ? ctl->req_att_len : 0);
  if (rc == 0)
    rc = mprpc_conn_writev(ch->tr, ep->conn, out.iov, out.iovcnt);
  size_t total = out.total;
  mprpc_frame_out_free(&out);
  if (rc != 0) {
    /* Nothing of it was accepted: it surely did not run. */
    list_push(ep, AL_QUEUED, a);
    int err = rc == MPRPC_EHWM ? MPRPC_EOVERCROWDED : rc;
    char text[MPRPC__CTL_TEXT];
    snprintf(text, sizeof text, "write to %s: %s", ep->name, mprpc_strerror(rc));
    mprpc__attempt_failed(a, err, text,
                          rc == MPRPC_ETOOBIG || rc == MPRPC_ENOMEM ? MPRPC__RETRY_NEVER
                                                                     : MPRPC__RETRY_SAFE);
    return;
  }
  ep->bytes_accepted += total;
  if (mprpc_conn_out_pending(ch->tr, ep->conn) == 0)
    ep->bytes_flushed = ep->bytes_accepted;
  a->end_off = ep->bytes_accepted;
  a->written = true;
  a->sent_ns = now;
  a->rx_mark = ep->rx_count;
  list_push(ep, AL_SENT, a);
}

/* The endpoint is waiting to reconnect: fail the attempt at once (the
 * reconnect timer keeps probing in the background). It never reached the
 * endpoint, so the breaker does not count it. */
static void fail_fast(mprpc__ep_t *ep, mprpc__attempt_t *a) {
  list_push(ep, AL_QUEUED, a);
  a->not_tried = true;
  char text[MPRPC__CTL_TEXT];
  int err = ep->last_err ? ep->last_err : MPRPC_ECONNREFUSED;
  /* (the text may be cut: the return value is looked at for that) */
  if (snprintf(text, sizeof text, "connect(%s): %s%s%s (reconnecting)", ep->name,
               mprpc_err_name(err), ep->last_why[0] ? ": " : "", ep->last_why) < 0)
    text[0] = '\0';
  mprpc__attempt_failed(a, err, text, MPRPC__RETRY_SAFE);
}

void mprpc__ep_submit(mprpc__ep_t *ep, mprpc__attempt_t *a) {
  a->ep = ep;
  ep->refs++;
  ep->inflight++;
  node_sync(ep);
  switch (ep->cstate) {
  case EP_UP:
    attempt_write(ep, a);
    return;
  case EP_CONNECTING:
    list_push(ep, AL_QUEUED, a);
    return;
  case EP_IDLE:
    list_push(ep, AL_QUEUED, a);
    ep_connect(ep);
    return;
  default: /* EP_BACKOFF */
    if (mprpc__breaker_poll(&ep->br, mprpc_loop_now(ep->ch->loop)) == MPRPC__BREAKER_PROBING) {
      /* isolation is over: this attempt is the health probe, connect now */
      mprpc_timer_cancel(ep->ch->loop, ep->backoff_timer);
      ep->backoff_timer = 0;
      list_push(ep, AL_QUEUED, a);
      ep_connect(ep);
      return;
    }
    fail_fast(ep, a);
    return;
  }
}

/* ---- connection callbacks -------------------------------------------------- */

static void on_connect(mprpc_conn_t *c, void *ud) {
  (void)c;
  mprpc__ep_t *ep = ud;
  mprpc_channel_t *ch = ep->ch;
  ep->cstate = EP_UP;
  ep->bytes_accepted = ep->bytes_flushed = ep->logoff_off = 0;
  ep->last_err = 0;
  ep->silent_timeouts = 0;
  ep->last_why[0] = '\0';
  mprpc__backoff_reset(&ep->backoff);
  mprpc__breaker_on_conn_ok(&ep->br, mprpc_loop_now(ch->loop));
  /* Write what waited for the connection, oldest first. A failed write
   * takes the attempt off the list (and may queue retries at the tail, which
   * are written directly now that the state is UP). */
  ep->refs++;
  while (ep->cstate == EP_UP && ep->al[AL_QUEUED].head) {
    mprpc__attempt_t *a = ep->al[AL_QUEUED].head;
    list_unlink(ep, a);
    attempt_write(ep, a);
  }
  ep_maybe_retire(ep);
  mprpc__ep_unref(ep);
}

static void handle_frame(mprpc__ep_t *ep, const mprpc_frame_t *f) {
  mprpc_channel_t *ch = ep->ch;
  uint64_t cid = (uint64_t)f->meta.correlation_id;
  mprpc__attempt_t *a = mprpc__idseq_get(&ch->attempts, cid);
  if (!a || a->ep != ep || !a->written) {
    if (cid > 0 && cid < ch->attempts.next)
      MPRPC__STAT_INC(ch, late_responses);
    else
      MPRPC__STAT_INC(ch, unknown_ids);
    return;
  }
  uint64_t now = mprpc_loop_now(ch->loop);
  uint64_t lat = now > a->sent_ns ? now - a->sent_ns : 0;
  ep->ewma_ns = ep->ewma_ns ? ep->ewma_ns - ep->ewma_ns / 8 + lat / 8 : lat;
  node_sync(ep);
  if (f->meta.error_code != 0) {
    int32_t wire = f->meta.error_code;
    if (mprpc_err_from_wire(wire) == MPRPC_ELOGOFF &&
        (ep->logoff_off == 0 || a->end_off < ep->logoff_off))
      ep->logoff_off = a->end_off;
    char text[MPRPC__CTL_TEXT];
    int len = f->meta.error_text.len > 200 ? 200 : (int)f->meta.error_text.len;
    const char *et = f->meta.error_text.ptr ? (const char *)f->meta.error_text.ptr : "";
    int err;
    if (mprpc_err_wire_is_app(wire)) {
      /* The handler's own code: its text as it is, its code kept for
       * mprpc_controller_remote_code (not read as an errno or brpc name). */
      err = MPRPC_EAPP;
      if (len)
        snprintf(text, sizeof text, "%.*s", len, et);
      else
        snprintf(text, sizeof text, "application error %d", (int)wire);
    } else {
      err = mprpc_err_from_wire(wire);
      snprintf(text, sizeof text, "%s: %.*s", ep->name, len, et);
    }
    a->call->wire_code = wire;
    mprpc__attempt_answered(a, err, text, NULL, NULL, 0, now);
    return;
  }
  if (!mprpc__compress_known(f->meta.compress_type) || f->meta.content_type != 0) {
    char text[MPRPC__CTL_TEXT];
    if (f->meta.content_type != 0)
      snprintf(text, sizeof text, "%s: non-protobuf content_type %d not supported", ep->name,
               (int)f->meta.content_type);
    else
      snprintf(text, sizeof text, "%s: compress_type %d not supported", ep->name,
               (int)f->meta.compress_type);
    mprpc__attempt_answered(a, MPRPC_ERESPONSE, text, NULL, NULL, 0, now);
    return;
  }
  const uint8_t *pl = f->payload.ptr;
  size_t plen = f->payload.len;
  uint8_t *plain = NULL;
  if (f->meta.compress_type != MPRPC_COMPRESS_NONE) {
    const char *why;
    if (mprpc__decompress_payload(f->meta.compress_type, pl, plen, ch->max_body, &plain, &plen,
                                  &why) != 0) {
      char text[MPRPC__CTL_TEXT];
      snprintf(text, sizeof text, "%s: response payload (compress_type %d) %s", ep->name,
               (int)f->meta.compress_type, why);
      mprpc__attempt_answered(a, MPRPC_ERESPONSE, text, NULL, NULL, 0, now);
      return;
    }
    pl = plain;
  }
  ProtobufCMessage *msg = mprpc__call_unpack(a->call, plen, pl);
  if (plain)
    free(plain); /* unpack copies what it keeps */
  if (!msg) {
    char text[MPRPC__CTL_TEXT];
    snprintf(text, sizeof text, "%s: response does not decode as %s", ep->name,
             a->call->method->output->name);
    mprpc__attempt_answered(a, MPRPC_ERESPONSE, text, NULL, NULL, 0, now);
    return;
  }
  mprpc__attempt_answered(a, 0, "", msg, f->attachment.ptr, f->attachment.len, now);
}

/* ---- bounded response buffering (max_buffered_bytes, max_body) ------------- */

#define META_PEEK_MAX (64u * 1024u) /* larger metas are not waited for */

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The frame at the front of in: 1 when its meta is in (*cid set, *whole
 * says whether the frame is complete), 0 when its meta may still come, -1
 * when it never will be known (not a frame, or a meta too big to wait). */
static int front_cid(const mprpc_rbuf_t *in, uint64_t *cid, bool *whole) {
  size_t len = mprpc_rbuf_len(in);
  const uint8_t *p = mprpc_rbuf_data(in);
  if (len < MPRPC_FRAME_HEADER_LEN)
    return 0;
  uint32_t body = be32(p + 4), meta = be32(p + 8);
  if (memcmp(p, "PRPC", 4) != 0 || meta > body || meta > META_PEEK_MAX)
    return -1;
  if (len < MPRPC_FRAME_HEADER_LEN + (size_t)meta)
    return 0;
  mprpc_meta_t m;
  if (mprpc_meta_decode(p + MPRPC_FRAME_HEADER_LEN, meta, &m) != 0)
    return -1;
  *cid = (uint64_t)m.correlation_id;
  *whole = len >= MPRPC_FRAME_HEADER_LEN + (size_t)body;
  return 1;
}

static void hold(mprpc__ep_t *ep, size_t n) {
  mprpc_channel_t *ch = ep->ch;
  ch->buffered = ch->buffered - ep->held + n;
  ep->held = n;
}

/* Fails the call whose response is the partial frame at the front (if it
 * is one of ours) with MPRPC_ETOOBIG and replaces the connection. */
static void refuse_response(mprpc__ep_t *ep, mprpc_conn_t *c, const char *why) {
  mprpc_channel_t *ch = ep->ch;
  uint64_t cid = 0;
  bool whole;
  mprpc__attempt_t *a = NULL;
  if (front_cid(&ep->rbuf, &cid, &whole) == 1) {
    a = mprpc__idseq_get(&ch->attempts, cid);
    if (a && (a->ep != ep || !a->written))
      a = NULL;
  }
  MPRPC_LOG_WARN("channel %s: %s from %s; replacing the connection", ch->sd->name, why, ep->name);
  ep->last_err = MPRPC_ETOOBIG;
  mprpc_conn_close(ch->tr, c, false);
  if (a) {
    char text[MPRPC__CTL_TEXT];
    snprintf(text, sizeof text, "%s: %s", ep->name, why);
    mprpc__attempt_failed(a, MPRPC_ETOOBIG, text, MPRPC__RETRY_NEVER);
  }
}

void mprpc__ep_attempt_gone(mprpc__ep_t *ep, uint64_t cid) {
  if (!ep->conn || ep->cstate != EP_UP || mprpc_rbuf_len(&ep->rbuf) == 0)
    return;
  uint64_t front;
  bool whole;
  if (front_cid(&ep->rbuf, &front, &whole) != 1 || front != cid || whole)
    return;
  MPRPC_LOG_INFO("channel %s: the answer to an ended call is still arriving from %s (%zu bytes "
                 "so far); replacing the connection",
                 ep->ch->sd->name, ep->name, mprpc_rbuf_len(&ep->rbuf));
  ep->last_err = MPRPC_ERPCTIMEDOUT;
  mprpc_conn_close(ep->ch->tr, ep->conn, false);
}

static void on_data(mprpc_conn_t *c, void *ud, mprpc_rbuf_t *in) {
  mprpc__ep_t *ep = ud;
  mprpc_channel_t *ch = ep->ch;
  if (ep->conn == c) { /* the peer is alive: timeouts in a row count again from 0 */
    ep->rx_count++;
    ep->silent_timeouts = 0;
  }
  /* Bounded: each iteration consumes one whole frame. */
  while (ep->conn == c && ep->cstate == EP_UP && !ch->destroying && mprpc_rbuf_len(in) > 0) {
    mprpc_frame_t f;
    long n = mprpc_frame_parse(mprpc_rbuf_data(in), mprpc_rbuf_len(in), ch->max_body, &f);
    if (n == 0)
      break;
    if (n == MPRPC_ETOOBIG) {
      uint64_t cid;
      bool whole;
      if (front_cid(in, &cid, &whole) == 0)
        return; /* its meta is on the way: then we know whose it is */
      char why[128];
      snprintf(why, sizeof why, "a response declaring %u bytes, over max_body %u",
               (unsigned)be32(mprpc_rbuf_data(in) + 4),
               (unsigned)(ch->max_body ? ch->max_body : MPRPC_FRAME_DEFAULT_MAX_BODY));
      ep->refs++;
      refuse_response(ep, c, why);
      mprpc__ep_unref(ep);
      return;
    }
    if (n < 0) {
      MPRPC_LOG_WARN("channel %s: bad frame from %s: %s; closing", ch->sd->name, ep->name,
                     mprpc_err_name((int)n));
      ep->last_err = (int)n;
      mprpc_conn_close(ch->tr, c, false);
      return;
    }
    if (f.meta.has_request) {
      MPRPC_LOG_WARN("channel %s: request frame from %s; closing", ch->sd->name, ep->name);
      mprpc_conn_close(ch->tr, c, false);
      return;
    }
    ep->refs++; /* a closure may retire the endpoint */
    handle_frame(ep, &f);
    mprpc_rbuf_consume(in, (size_t)n);
    bool gone = ep->refs == 1;
    mprpc__ep_unref(ep);
    if (gone)
      return;
  }
  /* After a huge response passed. 256 KiB is kept so that responses of
   * 64 KiB and a little more do not grow the block (a copy of the live
   * bytes) and shrink it again on every call. */
  if (mprpc_rbuf_len(in) == 0)
    mprpc_rbuf_shrink(in, 256 * 1024);
  if (ep->conn != c)
    return;
  size_t len = mprpc_rbuf_len(in);
  if (len != ep->held)
    hold(ep, len);
  if (len && ch->buffered > ch->max_buffered && ep->cstate == EP_UP) {
    char why[160];
    snprintf(why, sizeof why,
             "%zu response bytes buffered on the channel, over its max_buffered_bytes %zu",
             ch->buffered, ch->max_buffered);
    ep->refs++;
    refuse_response(ep, c, why);
    mprpc__ep_unref(ep);
  }
}

void mprpc__ep_attempt_timed_out(mprpc__ep_t *ep, const mprpc__attempt_t *a) {
  mprpc_channel_t *ch = ep->ch;
  /* Only a connection that is silent since a was written: a provider that
   * answers other calls is slow, not unreachable. */
  if (!ch->reset_after || ep->cstate != EP_UP || !ep->conn || a->rx_mark != ep->rx_count)
    return;
  if (++ep->silent_timeouts < ch->reset_after)
    return;
  MPRPC_LOG_INFO("channel %s: %d attempts in a row to %s timed out with nothing received; "
                 "closing the connection to re-dial",
                 ch->sd->name, ep->silent_timeouts, ep->name);
  MPRPC__STAT_INC(ch, silent_resets);
  ep->silent_timeouts = 0;
  ep->last_err = MPRPC_ERPCTIMEDOUT; /* what on_close reports for the rest */
  mprpc_conn_close(ch->tr, ep->conn, false);
}

static void on_writable(mprpc_conn_t *c, void *ud) {
  (void)c;
  mprpc__ep_t *ep = ud;
  ep->bytes_flushed = ep->bytes_accepted; /* the backlog drained */
}

static void backoff_fire(void *arg) {
  mprpc__ep_t *ep = arg;
  ep->backoff_timer = 0;
  if (ep->cstate != EP_BACKOFF)
    return;
  ep->cstate = EP_IDLE;
  if (ep->listed && !ep->ch->destroying)
    ep_connect(ep); /* the health probe */
}

static void on_close(mprpc_conn_t *c, void *ud, int reason, int err) {
  (void)c;
  mprpc__ep_t *ep = ud;
  mprpc_channel_t *ch = ep->ch;
  uint64_t now = mprpc_loop_now(ch->loop);
  bool connecting = ep->cstate == EP_CONNECTING || reason == MPRPC_CLOSE_CONNECT_FAILED;
  uint64_t pending = mprpc_conn_out_pending(ch->tr, c);
  /* Requests entirely handed to the network may have run; the rest surely
   * did not (a partial frame is never dispatched). */
  uint64_t flushed = ep->bytes_accepted > pending ? ep->bytes_accepted - pending : 0;
  if (pending == 0 && flushed > ep->bytes_flushed)
    flushed = ep->bytes_flushed; /* a closed transport reports 0 pending */
  ep->conn = NULL;
  mprpc_rbuf_consume(&ep->rbuf, mprpc_rbuf_len(&ep->rbuf));
  hold(ep, 0);
  int cerr = err ? err : (connecting ? MPRPC_ECONNREFUSED : MPRPC_EFAILEDSOCKET);
  if (!connecting && ep->last_err && reason == MPRPC_CLOSE_LOCAL)
    cerr = ep->last_err; /* we closed it after a protocol error */
  ep->last_err = cerr;
  /* Why, in the transport's words (a TLS failure: OpenSSL's reason). */
  const char *why = err ? mprpc_conn_error_text(ch->tr, c) : NULL;
  snprintf(ep->last_why, sizeof ep->last_why, "%s", why ? why : "");

  if (ch->destroying || !ep->listed) {
    ep->cstate = EP_IDLE;
  } else if (connecting) {
    if (mprpc__breaker_on_conn_failure(&ep->br, now)) {
      mprpc__ep_ejected(ch);
      MPRPC_LOG_INFO("channel %s: ejected %s for %llu ms (%s)", ch->sd->name, ep->name,
                     (unsigned long long)(mprpc__breaker_period(&ep->br) / MPRPC_NS_PER_MS),
                     mprpc_err_name(cerr));
    }
    ep->cstate = EP_BACKOFF;
    uint64_t d = mprpc__backoff_next(&ep->backoff, mprpc_loop_rand(ch->loop));
    ep->backoff_timer = mprpc_timer_start(ch->loop, d, backoff_fire, ep);
  } else {
    /* An established connection broke: reconnect on the next attempt. */
    ep->cstate = EP_IDLE;
  }

  /* Fail what was on it, at once, one by one from DYING: retries may land
   * on this endpoint again (on QUEUED), closures may drop attempts. */
  list_doom(ep, AL_SENT);
  list_doom(ep, AL_QUEUED);
  ep->refs++;
  while (ep->al[AL_DYING].head) {
    mprpc__attempt_t *a = ep->al[AL_DYING].head;
    list_unlink(ep, a);
    bool ran = a->written && a->end_off <= flushed &&
               !(ep->logoff_off && a->end_off > ep->logoff_off);
    char text[MPRPC__CTL_TEXT];
    const char *sep = ep->last_why[0] ? ": " : "";
    int tn = connecting
                 ? snprintf(text, sizeof text, "connect(%s): %s%s%s", ep->name,
                            mprpc_err_name(cerr), sep, ep->last_why)
                 : snprintf(text, sizeof text, "connection to %s broke (%s, %s%s%s)%s", ep->name,
                            mprpc_close_reason_name(reason), mprpc_err_name(cerr), sep,
                            ep->last_why,
                            ran ? " after the request was sent" : " before the request was sent");
    if (tn < 0)
      text[0] = '\0';
    /* A TLS failure stays one (TLS 1.3: a refused client certificate
     * arrives as an alert after the client finished its handshake). */
    int broke = cerr == MPRPC_ETLS ? MPRPC_ETLS : MPRPC_EFAILEDSOCKET;
    if (ran)
      mprpc__attempt_failed(a, broke, text, MPRPC__RETRY_UNKNOWN);
    else
      mprpc__attempt_failed(a, connecting ? cerr : broke, text, MPRPC__RETRY_SAFE);
  }
  mprpc__ep_unref(ep); /* the temporary reference */
  mprpc__ep_unref(ep); /* the connection's */
}

static const mprpc_conn_handler_t conn_handler = {on_connect, on_data, on_writable, on_close};

static void ep_connect(mprpc__ep_t *ep) {
  mprpc_channel_t *ch = ep->ch;
  mprpc_conn_opts_t o = {0, ch->connect_timeout_ns};
  ep->cstate = EP_CONNECTING;
  MPRPC__STAT_INC(ch, reconnects);
  int rc = mprpc_conn_connect(ch->tr, ch->loop, ep->host, ep->port, &o, &conn_handler, ep,
                              &ep->rbuf, &ep->conn);
  if (rc == 0) {
    ep->refs++; /* the connection's reference, dropped in on_close */
    return;
  }
  ep->conn = NULL;
  ep->cstate = EP_BACKOFF;
  ep->last_err = rc;
  ep->last_why[0] = '\0';
  uint64_t now = mprpc_loop_now(ch->loop);
  if (mprpc__breaker_on_conn_failure(&ep->br, now))
    mprpc__ep_ejected(ch);
  uint64_t d = mprpc__backoff_next(&ep->backoff, mprpc_loop_rand(ch->loop));
  ep->backoff_timer = mprpc_timer_start(ch->loop, d, backoff_fire, ep);
  list_doom(ep, AL_QUEUED);
  ep->refs++;
  while (ep->al[AL_DYING].head) {
    mprpc__attempt_t *a = ep->al[AL_DYING].head;
    list_unlink(ep, a);
    char text[MPRPC__CTL_TEXT];
    snprintf(text, sizeof text, "connect(%s): %s", ep->name, mprpc_strerror(rc));
    mprpc__attempt_failed(a, rc, text, MPRPC__RETRY_SAFE);
  }
  mprpc__ep_unref(ep);
}

/* ---- the endpoint list ---------------------------------------------------- */

/* Local, so the channel does not need the registry module linked in. */
static const char *health_name(int h) {
  static const char *const names[] = {"healthy", "connecting", "disconnected", "expired",
                                      "closed"};
  return h >= 0 && h <= 4 ? names[h] : "unknown";
}

/* Replaces ch's list by `fresh` (ownership of the array moves to ch);
 * endpoints of the old list not in fresh are unlisted and retire. */
static int list_install(mprpc_channel_t *ch, mprpc__ep_t **fresh, size_t n) {
  mprpc__lb_node_t *nodes = n ? calloc(n, sizeof *nodes) : NULL;
  if (n && !nodes)
    return MPRPC_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    fresh[i]->idx = i;
    nodes[i].name = fresh[i]->name;
    nodes[i].weight = fresh[i]->weight;
    nodes[i].inflight = fresh[i]->inflight;
    nodes[i].ewma_ns = fresh[i]->ewma_ns;
  }
  mprpc__ep_t **old = ch->eps;
  size_t nold = ch->neps;
  mprpc__lb_node_t *old_nodes = ch->nodes;
  ch->eps = fresh;
  ch->neps = n;
  ch->nodes = nodes;
  if (mprpc__lb_rebuild(&ch->lb, nodes, n) != 0)
    MPRPC_LOG_ERROR("channel %s: load balancer rebuild failed (out of memory)", ch->sd->name);
  for (size_t i = 0; i < nold; i++) {
    bool kept = false;
    for (size_t j = 0; j < n && !kept; j++)
      kept = fresh[j] == old[i];
    if (!kept) {
      old[i]->listed = false;
      ep_maybe_retire(old[i]);
      mprpc__ep_unref(old[i]);
    }
  }
  free(old);
  free(old_nodes);
  mprpc__ep_publish_states(ch);
  return 0;
}

/* One entry of a servers list; spaces around it are allowed. */
static int parse_hostport(const char *s, size_t len, char *host, size_t hostcap, uint16_t *port) {
  while (len && (*s == ' ' || *s == '\t')) {
    s++;
    len--;
  }
  while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
    len--;
  mprpc_hostport_t hp;
  if (mprpc_addr_parse(s, len, 0, &hp, NULL, 0) != 0 || strlen(hp.host) >= hostcap)
    return MPRPC_EADDR;
  memcpy(host, hp.host, strlen(hp.host) + 1);
  *port = hp.port;
  return 0;
}

/* The connections of one address (connections_per_endpoint) into out[0..N):
 * the listed ones of ch->eps when reuse (matched by host, port and slot),
 * new ones otherwise; all share slot 0's addr_id. Returns how many (N, or
 * fewer when out of memory). */
static size_t ep_slots(mprpc_channel_t *ch, const char *host, uint16_t port, uint32_t weight,
                       bool reuse, mprpc__ep_t **out) {
  size_t got = 0;
  for (unsigned k = 0; k < ch->conns_per_ep; k++) {
    mprpc__ep_t *ep = NULL;
    for (size_t j = 0; reuse && j < ch->neps && !ep; j++)
      if (ch->eps[j]->slot == k && ch->eps[j]->port == port && strcmp(ch->eps[j]->host, host) == 0)
        ep = ch->eps[j];
    if (ep) { /* kept: the list reference carries over */
      ep->weight = weight ? weight : MPRPC_DEFAULT_WEIGHT;
    } else {
      ep = ep_new(ch, host, port, weight);
      if (!ep)
        break;
      ep->slot = k;
    }
    out[got++] = ep;
  }
  for (size_t k = 1; k < got; k++)
    out[k]->addr_id = out[0]->addr_id;
  return got;
}

int mprpc__ep_list_set_fixed(mprpc_channel_t *ch, const char *servers) {
  size_t cap = 1;
  for (const char *p = servers; *p; p++)
    cap += *p == ',';
  cap *= ch->conns_per_ep;
  mprpc__ep_t **eps = calloc(cap, sizeof *eps);
  if (!eps)
    return MPRPC_ENOMEM;
  size_t n = 0;
  int rc = 0;
  const char *p = servers;
  for (;;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    char host[256];
    uint16_t port;
    rc = parse_hostport(p, len, host, sizeof host, &port);
    if (rc != 0)
      break;
    bool dup = false;
    for (size_t i = 0; i < n && !dup; i++)
      dup = eps[i]->port == port && strcmp(eps[i]->host, host) == 0;
    if (!dup) {
      size_t got = ep_slots(ch, host, port, MPRPC_DEFAULT_WEIGHT, false, eps + n);
      n += got;
      if (got < ch->conns_per_ep) {
        rc = MPRPC_ENOMEM;
        break;
      }
      for (size_t k = n - got; k < n; k++)
        mprpc__chgov_ep_instance(ch, eps[k], NULL);
    }
    if (!e)
      break;
    p = e + 1;
  }
  if (rc == 0 && n == 0)
    rc = MPRPC_EADDR;
  if (rc == 0)
    rc = list_install(ch, eps, n);
  if (rc != 0) {
    for (size_t i = 0; i < n; i++)
      mprpc__ep_unref(eps[i]);
    free(eps);
    return rc;
  }
  ch->have_list = true;
  return 0;
}

void mprpc__ep_registry_cb(void *ud, const mprpc_instance_t *items, size_t n, int health) {
  mprpc_channel_t *ch = ud;
  if (ch->destroying)
    return;
  if (n == 0 && health != MPRPC_REG_HEALTHY && ch->neps > 0) {
    MPRPC_LOG_WARN("channel %s: registry %s sent an empty list; keeping %zu cached endpoints",
                   ch->sd->name, health_name(health), ch->neps);
    return;
  }
  mprpc__ep_t **fresh = n ? calloc(n * ch->conns_per_ep, sizeof *fresh) : NULL;
  if (n && !fresh) {
    MPRPC_LOG_ERROR("channel %s: out of memory applying a registry update", ch->sd->name);
    return;
  }
  size_t m = 0, skipped = 0;
  for (size_t i = 0; i < n; i++) {
    const mprpc_instance_t *it = &items[i];
    if (!it->host || !it->port)
      continue;
    if (it->tls && !ch->tls) {
      /* A TLS-only provider: plain bytes would only get the connection
       * closed. Left out, and calls say why (call_try). */
      if (skipped++ == 0)
        snprintf(ch->tls_skip_name, sizeof ch->tls_skip_name,
                 strchr(it->host, ':') ? "[%s]:%u" : "%s:%u", it->host, (unsigned)it->port);
      continue;
    }
    bool dup = false;
    for (size_t j = 0; j < m && !dup; j++)
      dup = fresh[j]->port == it->port && strcmp(fresh[j]->host, it->host) == 0;
    if (dup)
      continue;
    size_t got = ep_slots(ch, it->host, it->port, it->weight, true, fresh + m);
    /* registered weight, group, version; then the config centre's view */
    for (size_t k = m; k < m + got; k++)
      if (mprpc__chgov_ep_instance(ch, fresh[k], it) != 0)
        MPRPC_LOG_ERROR("channel %s: out of memory keeping %s's group and version", ch->sd->name,
                        fresh[k]->name);
    m += got;
  }
  if (list_install(ch, fresh, m) != 0) {
    for (size_t i = 0; i < m; i++) {
      bool old = false;
      for (size_t j = 0; j < ch->neps && !old; j++)
        old = ch->eps[j] == fresh[i];
      if (!old)
        mprpc__ep_unref(fresh[i]);
    }
    free(fresh);
    return;
  }
  ch->have_list = true;
  if (skipped && skipped != ch->tls_skipped)
    MPRPC_LOG_WARN("channel %s: skipping %zu endpoint(s) that require TLS (tls=1 in the "
                   "registry, e.g. %s): this channel has tls off",
                   ch->sd->name, skipped, ch->tls_skip_name);
  ch->tls_skipped = skipped;
  MPRPC_LOG_INFO("channel %s: %zu endpoints (registry %s)", ch->sd->name, m,
                 health_name(health));
  mprpc__channel_eps_changed(ch);
}

void mprpc__ep_weights_changed(mprpc_channel_t *ch) {
  for (size_t i = 0; i < ch->neps; i++)
    ch->nodes[i].weight = ch->eps[i]->weight;
  if (ch->neps && mprpc__lb_rebuild(&ch->lb, ch->nodes, ch->neps) != 0)
    MPRPC_LOG_ERROR("channel %s: load balancer rebuild failed (out of memory)", ch->sd->name);
  mprpc__ep_publish_states(ch); /* disabled / selection may have changed too */
}

void mprpc__ep_publish_states(mprpc_channel_t *ch) {
  size_t n[MPRPC__EPS_NSTATES] = {0};
  for (size_t i = 0; i < ch->neps; i++) {
    mprpc__ep_t *ep = ch->eps[i];
    ep->pub_ejected = ep->br.state == MPRPC__BREAKER_EJECTED;
    if (ep->slot != 0)
      continue; /* an address counts once */
    int st = ep->unselected                          ? MPRPC__EPS_UNSELECTED
             : ep->gov_disabled                      ? MPRPC__EPS_DISABLED
             : ep->br.state == MPRPC__BREAKER_EJECTED ? MPRPC__EPS_EJECTED
                                                     : MPRPC__EPS_HEALTHY;
    n[st]++;
  }
  for (int st = 0; st < MPRPC__EPS_NSTATES; st++)
    __atomic_store_n(&ch->eps_by_state[st], n[st], __ATOMIC_RELAXED);
}

void mprpc__ep_ejected(mprpc_channel_t *ch) {
  MPRPC__STAT_INC(ch, ejections);
  mprpc__ep_publish_states(ch);
}

void mprpc__ep_shutdown_all(mprpc_channel_t *ch) {
  mprpc__ep_t **old = ch->eps;
  size_t n = ch->neps;
  ch->eps = NULL;
  ch->neps = 0;
  mprpc__lb_rebuild(&ch->lb, NULL, 0);
  free(ch->nodes);
  ch->nodes = NULL;
  for (size_t i = 0; i < n; i++) {
    mprpc__ep_t *ep = old[i];
    ep->listed = false;
    mprpc_timer_cancel(ch->loop, ep->backoff_timer);
    ep->backoff_timer = 0;
    if (ep->conn)
      mprpc_conn_close(ch->tr, ep->conn, false);
    mprpc__ep_unref(ep);
  }
  free(old);
}

/* ---- selection ------------------------------------------------------------ */

/* id: an address (ep->addr_id); every connection of a tried address is tried. */
static bool tried(const mprpc__call_t *c, uint64_t id) {
  for (int i = 0; i < c->ntried; i++)
    if (c->tried[i] == id)
      return true;
  return false;
}

static mprpc__ep_t *pick(mprpc_channel_t *ch, mprpc__call_t *c, uint64_t exclude_id,
                         bool *readmitted) {
  uint64_t now = 0; /* read only when an endpoint is ejected */
  mprpc_rand_t r = mprpc_loop_rand(ch->loop);
  bool has_key = c->ctl && c->ctl->has_hash_key;
  uint64_t key = has_key ? c->ctl->hash_key : 0;
  /* pass 1: admitted and untried; pass 2: admitted (a retry may go back) */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < ch->neps; i++) {
      mprpc__ep_t *ep = ch->eps[i];
      bool admitted = ep->br.state != MPRPC__BREAKER_EJECTED;
      if (!admitted) {
        if (!now)
          now = mprpc_loop_now(ch->loop);
        admitted = mprpc__breaker_admits(&ep->br, now);
      }
      /* here or elsewhere (a reconnect's probe that succeeded, say) */
      *readmitted |= admitted && ep->pub_ejected;
      ch->nodes[i].skip = !admitted || ep->addr_id == exclude_id ||
                          (pass == 0 && tried(c, ep->addr_id)) || mprpc__chgov_ep_excluded(ep);
    }
    long idx = mprpc__lb_pick(&ch->lb, r, has_key, key);
    if (idx >= 0)
      return ch->eps[idx];
  }
  /* Everything is isolated: the least bad one (untried first, then the
   * isolation that ends soonest). */
  mprpc__ep_t *best = NULL;
  for (size_t i = 0; i < ch->neps; i++) {
    mprpc__ep_t *ep = ch->eps[i];
    if (ep->addr_id == exclude_id && ch->neps > ch->conns_per_ep) /* another address exists */
      continue;
    if (mprpc__chgov_ep_excluded(ep))
      continue; /* a disabled or unselected provider is never called */
    if (!best) {
      best = ep;
      continue;
    }
    bool bt = tried(c, best->addr_id), et = tried(c, ep->addr_id);
    if ((bt && !et) || (bt == et && ep->br.until_ns < best->br.until_ns))
      best = ep;
  }
  return best;
}

mprpc__ep_t *mprpc__ep_pick(mprpc_channel_t *ch, mprpc__call_t *c, uint64_t exclude_id) {
  if (ch->neps == 0)
    return NULL;
  bool readmitted = false;
  mprpc__ep_t *ep = pick(ch, c, exclude_id, &readmitted);
  if (readmitted)
    mprpc__ep_publish_states(ch);
  return ep;
}
