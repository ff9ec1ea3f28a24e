/*
 * Provider connections: accept, inbound bytes cut into frames, the idle
 * timer, and outbound frames (batched into one writev per on_data pass).
 * Each frame is handed to server_dispatch.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/server_internal.h"
#include "core/sniff.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

/* ---- connections -------------------------------------------------------- */

static void conn_idle_fire(void *arg);

static void conn_arm_idle(srv_conn_t *conn, uint64_t delay_ns) {
  conn->idle_timer = mprpc_timer_start(conn->l->loop, delay_ns, conn_idle_fire, conn);
}

/* Idle = no complete frame received and no response sent for idle_timeout,
 * while no call is in flight. Partial frames do not count as activity, so a
 * slowloris peer (half a frame, then a trickle or a stall) is closed. */
static void conn_idle_fire(void *arg) {
  srv_conn_t *conn = arg;
  mprpc_server_t *s = conn->s;
  uint64_t idle = s->o.idle_timeout_ms * MPRPC_NS_PER_MS;
  conn->idle_timer = 0;
  if (conn->closing || conn->closed)
    return;
  if (conn->inflight > 0) {
    conn_arm_idle(conn, idle);
    return;
  }
  uint64_t now = mprpc_loop_now(conn->l->loop);
  uint64_t since = now - conn->last_active;
  if (since < idle) {
    conn_arm_idle(conn, idle - since);
    return;
  }
  MPRPC_LOG_INFO("server: closing idle connection from %s (%zu bytes of an incomplete frame)",
                 conn->peer, mprpc_rbuf_len(&conn->in));
  atomic_fetch_add(&s->st_idle_closed, 1);
  mprpc__srv_conn_close(conn, true);
}

void mprpc__srv_conn_close(srv_conn_t *conn, bool flush) {
  if (conn->closing || conn->closed)
    return;
  conn->closing = true;
  mprpc_conn_close(conn->s->t, conn->c, flush);
}

void mprpc__srv_conn_identity(srv_conn_t *conn) {
  if (conn->id_fetched || !conn->c)
    return;
  conn->id_fetched = true;
  const char *id = mprpc_conn_peer_identity(conn->s->t, conn->c);
  if (id && !(conn->identity = strdup(id)))
    conn->id_fetched = false; /* out of memory: try again on the next request */
}

void mprpc__srv_conn_maybe_free(srv_conn_t *conn) {
  if (!conn->closed || conn->ncalls > 0 || conn->pins > 0)
    return;
  srv_loop_t *l = conn->l;
  if (conn->prev)
    conn->prev->next = conn->next;
  else
    l->conns = conn->next;
  if (conn->next)
    conn->next->prev = conn->prev;
  mprpc_rbuf_free(&conn->in);
  mprpc__console_conn_free(conn);
  free(conn->wbuf);
  free(conn->identity);
  free(conn);
}

/* ---- outbound frames ------------------------------------------------------ */

/* Frames up to MPRPC__SRV_BATCH_MAX_FRAME answered while a connection's
 * on_data runs are copied into one buffer and written with one writev at the
 * end of the pass: a pipelined batch costs one syscall instead of one per
 * response. */
#define BATCH_MAX_BYTES (256 * 1024)

static void conn_count_out(srv_conn_t *conn, size_t n) {
  conn->bytes_out += n;
  MPRPC__ONE_WRITER_ADD(&conn->l->bytes_out, n);
}

static void write_failed(srv_conn_t *conn, int rc) {
  MPRPC_LOG_WARN("server: closing connection from %s: write: %s", conn->peer, mprpc_strerror(rc));
  mprpc__srv_conn_close(conn, false);
}

void mprpc__srv_flush(srv_conn_t *conn) {
  if (conn->wlen == 0)
    return;
  size_t n = conn->wlen;
  conn->wlen = 0;
  if (conn->closing || conn->closed)
    return;
  struct iovec iov = {conn->wbuf, n};
  int rc = mprpc_conn_writev(conn->s->t, conn->c, &iov, 1);
  if (rc < 0)
    write_failed(conn, rc);
  else {
    conn_count_out(conn, n);
    conn->held_out += n; /* counted against the budget at the end of on_data */
  }
}

static bool batch_append(srv_conn_t *conn, const mprpc_frame_out_t *out) {
  if (conn->proto == MPRPC__PROTO_HTTP)
    return false; /* an HTTP/JSON call's answer: console.c writes it */
  if (!conn->batching || out->total > MPRPC__SRV_BATCH_MAX_FRAME)
    return false;
  if (conn->wlen + out->total > BATCH_MAX_BYTES)
    mprpc__srv_flush(conn);
  if (conn->wlen + out->total > conn->wcap) {
    size_t cap = conn->wcap ? conn->wcap : 16 * 1024;
    while (cap < conn->wlen + out->total)
      cap *= 2;
    uint8_t *nb = realloc(conn->wbuf, cap);
    if (!nb)
      return false;
    conn->wbuf = nb;
    conn->wcap = cap;
  }
  for (int i = 0; i < out->iovcnt; i++) {
    if (out->iov[i].iov_len)
      memcpy(conn->wbuf + conn->wlen, out->iov[i].iov_base, out->iov[i].iov_len);
    conn->wlen += out->iov[i].iov_len;
  }
  return true;
}

/* now: the loop clock, read by the caller (one read per completed call). */
void mprpc__srv_write_frame(srv_conn_t *conn, mprpc_frame_out_t *out, uint64_t now) {
  if (conn->closing || conn->closed) {
    atomic_fetch_add(&conn->s->st_dropped, 1);
    return;
  }
  conn->last_active = now;
  if (batch_append(conn, out))
    return;
  mprpc__srv_flush(conn); /* keep responses in order */
  if (conn->closing)
    return;
  if (conn->proto == MPRPC__PROTO_HTTP) {
    mprpc__console_on_frame(conn, out);
    return;
  }
  /* Outside on_data (a handler that answered later) the budget is told
   * now; inside, once at the end of the pass. */
  size_t base = conn->batching ? 0 : mprpc_conn_out_pending(conn->s->t, conn->c);
  int rc = mprpc_conn_writev(conn->s->t, conn->c, out->iov, out->iovcnt);
  if (rc < 0) {
    write_failed(conn, rc);
    return;
  }
  conn_count_out(conn, out->total);
  conn->held_out += out->total;
  if (!conn->batching)
    mprpc__srv_budget_wrote(conn, base, out->total, now);
}

/* ---- inbound frames ------------------------------------------------------- */

static void malformed(srv_conn_t *conn, int err, const char *what) {
  MPRPC_LOG_WARN("server: closing %s: %s: %s", conn->peer, mprpc_err_name(err),
                 what ? what : mprpc_strerror(err));
  atomic_fetch_add(&conn->s->st_malformed, 1);
  mprpc__srv_conn_close(conn, false);
}

static void conn_on_data(mprpc_conn_t *c, void *ud, mprpc_rbuf_t *in) {
  srv_conn_t *conn = ud;
  mprpc_server_t *s = conn->s;
  (void)c;
  size_t have = mprpc_rbuf_len(in);
  if (have > conn->in_seen) {
    conn->bytes_in += have - conn->in_seen;
    MPRPC__ONE_WRITER_ADD(&conn->l->bytes_in, have - conn->in_seen);
  }
  if (conn->proto != MPRPC__PROTO_BAIDU && mprpc__console_take(conn, in)) {
    if (conn->proto == MPRPC__PROTO_NEED_MORE && !conn->closing && !conn->closed) {
      /* Too few bytes to tell the protocol: the header clock runs from the
       * first byte all the same (a slowloris client starts with one). */
      mprpc__srv_budget_read_begin(conn, in);
      mprpc__srv_budget_read_end(conn, false, mprpc_loop_now(conn->l->loop));
    }
    conn->in_seen = conn->closed ? 0 : mprpc_rbuf_len(in);
    return; /* HTTP (console.c), or not yet told, or closing */
  }
  /* Every frame completed by these bytes arrived now; a frame that waits
   * behind a slow inline handler keeps this arrival time, so its deadline
   * can pass before it is dispatched. */
  uint64_t arrival = mprpc_loop_now(conn->l->loop);
  mprpc__srv_budget_read_begin(conn, in);
  bool progressed = false;
  conn->batching = true;
  for (int guard = 0; guard < 1 << 30 && !conn->closing && !conn->closed; guard++) {
    size_t len = mprpc_rbuf_len(in);
    if (len == 0)
      break;
    mprpc_frame_t f;
    long n = mprpc_frame_parse(mprpc_rbuf_data(in), len, s->o.max_body, &f);
    if (n == 0)
      break;
    if (n < 0) {
      malformed(conn, (int)n, NULL);
      break;
    }
    if (f.meta.has_response) {
      malformed(conn, MPRPC_EBADMETA, "response meta sent to a server");
      break;
    }
    if (!f.meta.has_request) {
      malformed(conn, MPRPC_EBADMETA, "frame without request meta");
      break;
    }
    conn->last_active = arrival;
    conn->nrequests++;
    mprpc__srv_dispatch(conn, &f, arrival);
    mprpc_rbuf_consume(in, (size_t)n);
    progressed = true;
  }
  conn->batching = false;
  mprpc__srv_flush(conn); /* a no-op (bytes dropped) once closing */
  mprpc__srv_budget_read_end(conn, progressed, arrival);
  /* 64 KiB kept: what an idle connection holds outside the memory budget
   * (a provider has many connections; a channel keeps 256 KiB, endpoint.c).
   * A request just over it regrows the block: the price at 64 KiB. */
  if (!conn->closed && mprpc_rbuf_len(in) == 0)
    mprpc_rbuf_shrink(in, 64 * 1024);
  conn->in_seen = conn->closed ? 0 : mprpc_rbuf_len(in);
}

static void conn_on_close(mprpc_conn_t *c, void *ud, int reason, int err) {
  srv_conn_t *conn = ud;
  (void)c;
  if (reason == MPRPC_CLOSE_RESET)
    MPRPC_LOG_DEBUG("server: connection from %s reset: %s", conn->peer, mprpc_strerror(err));
  conn->closed = true;
  conn->closing = true;
  conn->c = NULL;
  mprpc_timer_cancel(conn->l->loop, conn->idle_timer);
  conn->idle_timer = 0;
  mprpc__srv_budget_conn_gone(conn);
  mprpc_rbuf_free(&conn->in);
  mprpc_server_t *s = conn->s;
  atomic_fetch_sub(&s->open_conns, 1);
  mprpc__srv_conn_maybe_free(conn);
  mprpc__srv_maybe_free_zombie(s);
}

static void conn_on_writable(mprpc_conn_t *c, void *ud) {
  srv_conn_t *conn = ud;
  (void)c;
  mprpc__srv_budget_drained(conn, mprpc_loop_now(conn->l->loop));
}

static const mprpc_conn_handler_t conn_handler = {
    .on_data = conn_on_data,
    .on_writable = conn_on_writable,
    .on_close = conn_on_close,
};

void mprpc__srv_on_accept(void *ud, mprpc_conn_t *c, mprpc_loop_t loop) {
  mprpc__srv_conn_accepted(ud, c, loop, false);
}

/* console_only: accepted on the console's own port (console.c). */
void mprpc__srv_conn_accepted(mprpc_server_t *s, mprpc_conn_t *c, mprpc_loop_t loop,
                              bool console_only) {
  srv_loop_t *l = &s->sl[0];
  for (size_t i = 0; i < s->nloops; i++)
    if (s->loops[i].ctx == loop.ctx) {
      l = &s->sl[i];
      break;
    }
  srv_conn_t *conn = NULL;
  if (!atomic_load(&s->stopping))
    conn = calloc(1, sizeof *conn);
  int32_t ip_slot = -1;
  if (conn && mprpc__srv_admit(s, mprpc_conn_peer(s->t, c), mprpc_loop_now(l->loop), &ip_slot)) {
    free(conn); /* refused: accepted and closed at once, so the client sees it */
    conn = NULL;
  }
  if (!conn) {
    mprpc_conn_close(s->t, c, false);
    return;
  }
  conn->ip_slot = ip_slot;
  conn->s = s;
  conn->l = l;
  conn->c = c;
  conn->console_only = console_only;
  if (!s->o.console) /* no sniffing: every connection speaks baidu_std */
    conn->proto = MPRPC__PROTO_BAIDU;
  mprpc_rbuf_init(&conn->in);
  snprintf(conn->peer, sizeof conn->peer, "%s", mprpc_conn_peer(s->t, c));
  conn->next = l->conns;
  if (l->conns)
    l->conns->prev = conn;
  l->conns = conn;
  atomic_fetch_add(&s->st_accepted, 1);
  atomic_fetch_add(&s->open_conns, 1);
  conn->last_active = conn->created_ns = mprpc_loop_now(l->loop);
  mprpc_conn_setup(s->t, c, &conn_handler, conn, &conn->in);
  if (s->o.idle_timeout_ms)
    conn_arm_idle(conn, s->o.idle_timeout_ms * MPRPC_NS_PER_MS);
}
