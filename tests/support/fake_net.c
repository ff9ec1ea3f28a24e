/* The fake in-memory transport; see fake_net.h. */
#include "fake_net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_check.h"
#include "mprpc/errors.h"

#define DEFAULT_HIGH_WATER (64u << 20) /* the seam's default */
#define MAX_LISTENERS 8

typedef struct bytes {
  uint8_t *p;
  size_t len, cap;
} bytes_t;

static void bytes_put(bytes_t *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
      cap *= 2;
    b->p = realloc(b->p, cap);
    FAKE_CHECK(b->p != NULL);
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->len, p, n);
  b->len += n;
}

struct mprpc_listener {
  fake_net_t *net;
  mprpc_listen_opts_t lo;
  uint16_t port;
  size_t next_loop; /* accepted connections go round robin over lo.loops */
  bool open;
};

struct mprpc_conn {
  fake_net_t *net;
  size_t index;
  mprpc_loop_t loop;
  const mprpc_conn_handler_t *h;
  void *ud;
  mprpc_rbuf_t *in;
  mprpc_rbuf_t own_in; /* when setup/connect passed no rbuf */
  size_t high_water;
  char peer_name[64];
  bool client, connected, eof_after_connect;
  bool refuse_writes;
  bool close_posted, closed;
  int close_reason, close_err;
  uint64_t connect_timer;
  bytes_t out;          /* every byte the code wrote */
  size_t out_read;      /* how much of it the test consumed */
  size_t out_sent;      /* report_pending: how much counts as sent */
  bytes_t rx;           /* every byte delivered to the code */
  /* pairs: the other end, bytes on their way to this end, EOF after them */
  mprpc_conn_t *peer;
  mprpc_listener_t *listener; /* accepted end whose on_accept is posted */
  bytes_t inq;
  size_t inq_off;
  bool deliver_posted, eof_pending;
};

struct fake_net {
  fake_net_opts_t o;
  mprpc_listener_t listeners[MAX_LISTENERS];
  size_t nlisteners;
  bool listener_closed;
  mprpc_conn_t **conns;
  size_t nconns, capconns;
  int refuse_next;
};

/* ---- connections ---- */

static mprpc_conn_t *conn_new(fake_net_t *n, mprpc_loop_t loop) {
  mprpc_conn_t *c = calloc(1, sizeof *c);
  FAKE_CHECK(c != NULL);
  c->net = n;
  c->loop = loop;
  c->index = n->nconns;
  c->high_water = DEFAULT_HIGH_WATER;
  mprpc_rbuf_init(&c->own_in);
  if (n->nconns == n->capconns) {
    n->capconns = n->capconns ? n->capconns * 2 : 16;
    n->conns = realloc(n->conns, n->capconns * sizeof *n->conns);
    FAKE_CHECK(n->conns != NULL);
  }
  n->conns[n->nconns++] = c;
  return c;
}

static void post(mprpc_conn_t *c, mprpc_post_cb fn) {
  FAKE_CHECK(mprpc_loop_post(c->loop, fn, c) == 0);
}

static void post_close(mprpc_conn_t *c, int reason, int err);

static void fire_close(void *arg) {
  mprpc_conn_t *c = arg;
  FAKE_CHECK(!c->closed);
  mprpc_timer_cancel(c->loop, c->connect_timer);
  c->connect_timer = 0;
  mprpc_conn_t *peer = c->peer;
  if (peer) { /* the other end reads EOF once what is on its way arrived */
    c->peer = peer->peer = NULL;
    if (!peer->close_posted) {
      if (peer->deliver_posted)
        peer->eof_pending = true;
      else
        post_close(peer, MPRPC_CLOSE_EOF, 0);
    }
  }
  if (c->h)
    c->h->on_close(c, c->ud, c->close_reason, c->close_err);
  c->closed = true; /* dead for the code from here on */
}

/* Posts on_close once; later requests change nothing. */
static void post_close(mprpc_conn_t *c, int reason, int err) {
  if (c->close_posted)
    return;
  c->close_posted = true;
  c->close_reason = reason;
  c->close_err = err;
  post(c, fire_close);
}

static void fire_connect(void *arg) {
  mprpc_conn_t *c = arg;
  if (c->close_posted)
    return;
  c->connected = true;
  mprpc_timer_cancel(c->loop, c->connect_timer);
  c->connect_timer = 0;
  c->h->on_connect(c, c->ud);
  if (c->eof_after_connect)
    post_close(c, MPRPC_CLOSE_EOF, 0);
}

static void connect_timeout(void *arg) {
  mprpc_conn_t *c = arg;
  c->connect_timer = 0;
  if (!c->connected)
    post_close(c, MPRPC_CLOSE_CONNECT_FAILED, MPRPC_ETIMEDOUT);
}

static void append_in(mprpc_conn_t *c, const void *p, size_t n) {
  bytes_put(&c->rx, p, n);
  FAKE_CHECK(mprpc_rbuf_append(c->in, p, n) == 0);
}

/* Pairs: moves one chunk of what the peer wrote into this end's rbuf. */
static void fire_deliver(void *arg) {
  mprpc_conn_t *c = arg;
  c->deliver_posted = false;
  if (c->close_posted)
    return;
  size_t left = c->inq.len - c->inq_off, n = c->net->o.chunk;
  if (n == 0 || n > left)
    n = left;
  if (n) {
    append_in(c, c->inq.p + c->inq_off, n);
    c->inq_off += n;
    if (c->inq_off == c->inq.len)
      c->inq.len = c->inq_off = 0;
  }
  if (c->inq.len > c->inq_off) {
    c->deliver_posted = true;
    post(c, fire_deliver);
  } else if (c->eof_pending) {
    post_close(c, MPRPC_CLOSE_EOF, 0);
  }
  if (n && c->h && !c->closed)
    c->h->on_data(c, c->ud, c->in);
}

/* Pairs: the accepted end reaches its listener, on the end's own loop as
 * the seam says. A listener closed meanwhile never sees it: the client end
 * reads EOF. */
static void fire_accept(void *arg) {
  mprpc_conn_t *c = arg;
  mprpc_listener_t *l = c->listener;
  c->listener = NULL;
  if (c->close_posted)
    return;
  if (!l->open) {
    post_close(c, MPRPC_CLOSE_SHUTDOWN, 0);
    return;
  }
  l->lo.on_accept(l->lo.ud, c, c->loop);
}

/* ---- the seam ---- */

static int op_listen(void *ctx, const mprpc_listen_opts_t *o, mprpc_listener_t **out) {
  fake_net_t *n = ctx;
  if (n->nlisteners == MAX_LISTENERS || !o->nloops || !o->on_accept)
    return MPRPC_EINVAL;
  mprpc_listener_t *l = &n->listeners[n->nlisteners++];
  *l = (mprpc_listener_t){.net = n, .lo = *o, .open = true};
  l->port = n->o.listen_port    ? n->o.listen_port
            : o->port            ? o->port
                                 : (uint16_t)(40000 + n->nlisteners - 1);
  *out = l;
  return 0;
}

static uint16_t op_listener_port(void *ctx, mprpc_listener_t *l) {
  (void)ctx;
  return l->port;
}

static void op_listener_close(void *ctx, mprpc_listener_t *l) {
  fake_net_t *n = ctx;
  l->open = false;
  n->listener_closed = true;
}

static mprpc_listener_t *listener_on(fake_net_t *n, uint16_t port) {
  for (size_t i = n->nlisteners; i-- > 0;)
    if (n->listeners[i].open && n->listeners[i].port == port)
      return &n->listeners[i];
  return NULL;
}

/* A new accepted end on l: on_accept is called by the caller (tests) or
 * posted on the connection's loop (pairs). */
static mprpc_conn_t *accepted_new(fake_net_t *n, mprpc_listener_t *l) {
  mprpc_loop_t loop = l->lo.loops[l->next_loop++ % l->lo.nloops];
  mprpc_conn_t *c = conn_new(n, loop);
  c->connected = true;
  if (l->lo.conn.high_water)
    c->high_water = l->lo.conn.high_water;
  snprintf(c->peer_name, sizeof c->peer_name, "%s",
           n->o.accept_peer ? n->o.accept_peer : "192.0.2.1:1");
  return c;
}

static int op_connect(void *ctx, mprpc_loop_t loop, const char *host, uint16_t port,
                      const mprpc_conn_opts_t *o, const mprpc_conn_handler_t *h, void *ud,
                      mprpc_rbuf_t *in, mprpc_conn_t **out) {
  fake_net_t *n = ctx;
  size_t max = n->o.max_conns ? n->o.max_conns : 32;
  mprpc_listener_t *l = listener_on(n, port);
  fake_connect_mode_t mode = n->nconns == 0 ? n->o.first_connect : n->o.next_connect;
  if (l)
    mode = FAKE_CONNECT_ACCEPTED;
  if (mode == FAKE_CONNECT_REFUSED_NOW || n->nconns >= max)
    return MPRPC_ECONNREFUSED;
  mprpc_conn_t *c = conn_new(n, loop);
  c->client = true;
  c->h = h;
  c->ud = ud;
  c->in = in ? in : &c->own_in;
  if (o && o->high_water)
    c->high_water = o->high_water;
  snprintf(c->peer_name, sizeof c->peer_name, "%s:%u", host ? host : "", (unsigned)port);
  *out = c;
  if (mode == FAKE_CONNECT_REFUSED) {
    post_close(c, MPRPC_CLOSE_CONNECT_FAILED, MPRPC_ECONNREFUSED);
    return 0;
  }
  /* the connect timeout is the transport's job: honour it */
  uint64_t tmo = o && o->connect_timeout_ns ? o->connect_timeout_ns : 3 * MPRPC_NS_PER_S;
  c->connect_timer = mprpc_timer_start(loop, tmo, connect_timeout, c);
  c->eof_after_connect = mode == FAKE_CONNECT_EOF;
  if (l) {
    mprpc_conn_t *s = accepted_new(n, l);
    snprintf(s->peer_name, sizeof s->peer_name, "127.0.0.1:%u", (unsigned)(50000 + c->index));
    s->peer = c;
    s->listener = l;
    c->peer = s;
    post(s, fire_accept);
  }
  post(c, fire_connect);
  return 0;
}

static void op_setup(void *ctx, mprpc_conn_t *c, const mprpc_conn_handler_t *h, void *ud,
                     mprpc_rbuf_t *in) {
  (void)ctx;
  FAKE_CHECK(!c->client); /* setup is for accepted connections */
  FAKE_CHECK(!c->closed);
  c->h = h;
  c->ud = ud;
  c->in = in ? in : &c->own_in;
}

static size_t pending_of(const mprpc_conn_t *c) {
  return c->net->o.report_pending ? c->out.len - c->out_sent : 0;
}

static int op_writev(void *ctx, mprpc_conn_t *c, const struct iovec *iov, int iovcnt) {
  fake_net_t *n = ctx;
  FAKE_CHECK(!c->closed);
  FAKE_CHECK(c->connected);
  if (c->close_posted)
    return MPRPC_ECLOSED;
  if (iovcnt < 0 || (iovcnt > 0 && !iov))
    return MPRPC_EINVAL;
  if (c->refuse_writes)
    return MPRPC_EHWM;
  if (n->refuse_next > 0) {
    n->refuse_next--;
    return MPRPC_EHWM;
  }
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  if (pending_of(c) + total > c->high_water)
    return MPRPC_EHWM;
  size_t start = c->out.len;
  for (int i = 0; i < iovcnt; i++)
    bytes_put(&c->out, iov[i].iov_base, iov[i].iov_len);
  if (!n->o.report_pending)
    c->out_sent = c->out.len;
  mprpc_conn_t *p = c->peer;
  if (p && total && !p->close_posted) {
    bytes_put(&p->inq, c->out.p + start, total);
    if (!p->deliver_posted) {
      p->deliver_posted = true;
      post(p, fire_deliver);
    }
  }
  return 0;
}

static size_t op_out_pending(void *ctx, mprpc_conn_t *c) {
  (void)ctx;
  FAKE_CHECK(!c->closed);
  return pending_of(c);
}

static void op_close(void *ctx, mprpc_conn_t *c, bool flush) {
  (void)ctx, (void)flush; /* written bytes are "sent" at once: flush has nothing to wait for */
  FAKE_CHECK(!c->closed);
  post_close(c, MPRPC_CLOSE_LOCAL, 0);
}

static const char *op_peer_name(void *ctx, mprpc_conn_t *c) {
  (void)ctx;
  return c->peer_name;
}

static const mprpc_transport_ops_t fake_net_ops = {
    .listen = op_listen,
    .listener_port = op_listener_port,
    .listener_close = op_listener_close,
    .connect = op_connect,
    .setup = op_setup,
    .writev = op_writev,
    .out_pending = op_out_pending,
    .close = op_close,
    .peer_name = op_peer_name,
};

/* ---- the net ---- */

fake_net_t *fake_net_new(const fake_net_opts_t *opts) {
  fake_net_t *n = calloc(1, sizeof *n);
  FAKE_CHECK(n != NULL);
  if (opts)
    n->o = *opts;
  return n;
}

void fake_net_free(fake_net_t *n) {
  if (!n)
    return;
  for (size_t i = 0; i < n->nconns; i++) {
    mprpc_conn_t *c = n->conns[i];
    mprpc_rbuf_free(&c->own_in);
    free(c->out.p);
    free(c->rx.p);
    free(c->inq.p);
    free(c);
  }
  free(n->conns);
  free(n);
}

mprpc_transport_t fake_net_transport(fake_net_t *n) {
  return (mprpc_transport_t){&fake_net_ops, n};
}

fake_conn_t *fake_net_accept(fake_net_t *n) {
  mprpc_listener_t *l = NULL;
  for (size_t i = n->nlisteners; i-- > 0 && !l;)
    if (n->listeners[i].open)
      l = &n->listeners[i];
  FAKE_CHECK(l != NULL);
  mprpc_conn_t *c = accepted_new(n, l);
  l->lo.on_accept(l->lo.ud, c, c->loop);
  return c;
}

bool fake_net_listening(const fake_net_t *n) {
  for (size_t i = 0; i < n->nlisteners; i++)
    if (n->listeners[i].open)
      return true;
  return false;
}

bool fake_net_listener_closed(const fake_net_t *n) { return n->listener_closed; }
void fake_net_refuse_next_writes(fake_net_t *n, int count) { n->refuse_next = count; }
size_t fake_net_conn_count(const fake_net_t *n) { return n->nconns; }

fake_conn_t *fake_net_conn(const fake_net_t *n, size_t i) {
  return i < n->nconns ? n->conns[i] : NULL;
}

/* ---- one connection, from the peer's side ---- */

void fake_conn_deliver(fake_conn_t *c, const void *p, size_t n) {
  FAKE_CHECK(!c->closed);
  FAKE_CHECK(c->h != NULL);
  append_in(c, p, n);
  c->h->on_data(c, c->ud, c->in);
}

void fake_conn_hangup(fake_conn_t *c, int reason, int err) { post_close(c, reason, err); }
void fake_conn_refuse_writes(fake_conn_t *c, bool on) { c->refuse_writes = on; }

void fake_conn_drain(fake_conn_t *c) {
  c->out_sent = c->out.len;
  if (c->h && c->h->on_writable && !c->close_posted)
    c->h->on_writable(c, c->ud);
}

const uint8_t *fake_conn_unread(const fake_conn_t *c, size_t *len) {
  *len = c->out.len - c->out_read;
  return c->out.p ? c->out.p + c->out_read : (const uint8_t *)"";
}

void fake_conn_consume(fake_conn_t *c, size_t n) {
  FAKE_CHECK(n <= c->out.len - c->out_read);
  c->out_read += n;
}

const uint8_t *fake_conn_received(const fake_conn_t *c, size_t *len) {
  *len = c->rx.len;
  return c->rx.p ? c->rx.p : (const uint8_t *)"";
}

bool fake_conn_set_up(const fake_conn_t *c) { return c->h != NULL; }
bool fake_conn_connected(const fake_conn_t *c) { return c->connected; }
bool fake_conn_closing(const fake_conn_t *c) { return c->close_posted; }
bool fake_conn_closed(const fake_conn_t *c) { return c->closed; }
int fake_conn_close_reason(const fake_conn_t *c) { return c->close_posted ? c->close_reason : 0; }
size_t fake_conn_index(const fake_conn_t *c) { return c->index; }
