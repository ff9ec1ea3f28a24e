/*
 * Virtual network: the transport seam over in-memory TCP between virtual
 * hosts, on the world's virtual time.
 *
 * A connection is a pipe with two endpoints (mprpc_conn_t, side 0 = the
 * connecting client, side 1 = the accepted end) and two directions. Writes
 * land in the sender's pending buffer (what out_pending reports and the
 * high-water mark bounds); a pump event cuts it into chunks of random size
 * (down to 1 byte, and across write boundaries: sticky packets) at the
 * configured bandwidth, stamping each with a delivery time of now + a random
 * latency, never earlier than the previous chunk's (TCP keeps order). A
 * deliver event hands every chunk that is due to the receiver at once
 * (coalescing), so one on_data may carry parts of several writes.
 *
 * Control packets travel in the same ordered stream: the SYN-ACK is the first
 * chunk of the accepted->client direction (so data never overtakes the
 * connect), a FIN follows the last data byte. A RST is out of band and kills
 * both directions. Partitions hold packets back (retransmitted every rto)
 * rather than dropping them; a RST that meets a partition is lost, and a
 * later data packet to a dead endpoint draws a new RST, as in TCP.
 *
 * on_close is always a separate zero-delay event, exactly once per endpoint.
 */
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "sim.h"

enum { CH_DATA, CH_SYNACK, CH_FIN };
enum { EP_NONE, EP_CONNECTING, EP_OPEN, EP_CLOSING, EP_DEAD };

typedef struct chunk {
  struct chunk *next;
  uint64_t at;
  int type;
  size_t len;
  uint8_t data[];
} chunk_t;

typedef struct pipe pipe_t;

typedef struct dir {
  pipe_t *p;
  int from_side; /* sender endpoint index; receiver is 1 - from_side */
  uint8_t *pend;
  size_t pend_off, pend_len, pend_cap;
  chunk_t *head, *tail;
  uint64_t last_at;
  uint64_t pump_ev, deliver_ev;
  uint64_t stall_until;
  size_t chunk_max;
  bool chunk_fixed;
  bool fin_queued, fin_sent;
  bool want_writable;
  size_t frozen_pending; /* unsent bytes when the connection died */
} dir_t;

struct mprpc_conn {
  pipe_t *p;
  int side;
  int state;
  int host;
  mprpc_loop_t loop;
  mprpc_conn_handler_t h;
  bool has_handler;
  void *ud;
  mprpc_rbuf_t *in;
  size_t high_water;
  uint16_t port;
  char peer[64];
  uint64_t close_ev, rst_ev;
  int close_reason, close_err;
};

struct pipe {
  mprpc_sim_net_t *n;
  uint64_t id;
  pipe_t *prev, *next;
  mprpc_conn_t ends[2];
  dir_t dirs[2]; /* dirs[s] carries bytes sent by ends[s] */
  uint64_t syn_ev, tmo_ev;
  uint64_t connect_timeout;
  mprpc_listener_t *target; /* resolved at SYN time */
  uint16_t dst_port;
  bool in_event; /* an event of this pipe is running: defer free */
};

/* Bytes and closes reach the application on the connection's loop: they
 * wait while that loop is held (a blocking handler). */
static mprpc_sim_loop_t *conn_loop(const mprpc_conn_t *c) {
  return c->loop.vt ? mprpc_sim_loop_from(c->loop) : NULL;
}

struct mprpc_listener {
  mprpc_sim_net_t *n;
  mprpc_listener_t *next;
  int host;
  uint16_t port;
  bool dead;
  mprpc_loop_t *loops;
  size_t nloops, rr;
  mprpc_accept_cb on_accept;
  void *ud;
  mprpc_conn_opts_t conn;
};

typedef struct host {
  char addr[32];
  bool up;
  uint16_t next_eph;
  uint16_t next_port;
} host_t;

struct mprpc_sim_net {
  mprpc_sim_world_t *w;
  mprpc_sim_net_config_t cfg;
  host_t *hosts;
  int nhosts, cap_hosts;
  uint8_t *blocked; /* blocked[from * cap + to] */
  int cap_blocked;
  pipe_t *pipes; /* doubly linked, insertion order */
  pipe_t *pipes_tail;
  size_t npipes;
  mprpc_listener_t *listeners;
  uint64_t next_pipe_id;
  mprpc_sim_net_stats_t st;
};

/* ---- helpers ------------------------------------------------------------------ */

static uint64_t latency(mprpc_sim_net_t *n) {
  mprpc_sim_world_t *w = n->w;
  uint64_t lat = mprpc_sim_rand_range(w, n->cfg.lat_min_ns, n->cfg.lat_max_ns);
  if (n->cfg.lat_tail_ns && mprpc_sim_chance(w, n->cfg.lat_tail_p))
    lat += mprpc_sim_rand_range(w, 0, n->cfg.lat_tail_ns);
  return lat;
}

static bool host_ok(const mprpc_sim_net_t *n, int h) { return h >= 0 && h < n->nhosts; }

bool mprpc_sim_net_blocked(const mprpc_sim_net_t *n, int from, int to) {
  if (!host_ok(n, from) || !host_ok(n, to))
    return false;
  return n->blocked[from * n->cap_blocked + to] != 0;
}

static uint64_t conn_trace_id(const mprpc_conn_t *c) { return c->p->id * 2 + (uint64_t)c->side; }

static mprpc_conn_t *peer_of(mprpc_conn_t *c) { return &c->p->ends[1 - c->side]; }

static bool ep_live(const mprpc_conn_t *c) {
  return c->state == EP_CONNECTING || c->state == EP_OPEN;
}

static void pipe_maybe_free(pipe_t *p);

static void dir_clear(dir_t *d) {
  mprpc_sim_world_t *w = d->p->n->w;
  mprpc_sim_cancel(w, d->pump_ev);
  mprpc_sim_cancel(w, d->deliver_ev);
  d->pump_ev = d->deliver_ev = 0;
  chunk_t *c = d->head;
  while (c) {
    chunk_t *next = c->next;
    free(c);
    c = next;
  }
  d->head = d->tail = NULL;
  d->frozen_pending += d->pend_len;
  d->pend_off = d->pend_len = 0;
  d->fin_queued = false;
  d->want_writable = false;
}

/* ---- on_close: one deferred event per endpoint ---------------------------------- */

static void ev_close(void *arg) {
  mprpc_conn_t *c = arg;
  pipe_t *p = c->p;
  c->close_ev = 0;
  c->state = EP_DEAD;
  p->in_event = true;
  if (c->has_handler && c->h.on_close)
    c->h.on_close(c, c->ud, c->close_reason, c->close_err);
  p->in_event = false;
  pipe_maybe_free(p);
}

static void ep_close(mprpc_conn_t *c, int reason, int err) {
  if (!ep_live(c))
    return;
  c->state = EP_CLOSING;
  c->close_reason = reason;
  c->close_err = err;
  c->close_ev = mprpc_sim_at_on(c->p->n->w, conn_loop(c), 0, MPRPC_SIM_EV_NET_CLOSE, conn_trace_id(c),
                                ev_close, c);
  if (!c->close_ev) { /* out of memory in the simulator itself: give up loudly */
    abort();
  }
}

/* A RST travels from the peer of c to c (lost if a partition is in the way). */
static void ev_rst(void *arg) {
  mprpc_conn_t *c = arg;
  pipe_t *p = c->p;
  c->rst_ev = 0;
  mprpc_conn_t *from = peer_of(c);
  if (ep_live(c) && !mprpc_sim_net_blocked(p->n, from->host, c->host)) {
    bool refused = c->state == EP_CONNECTING;
    dir_clear(&p->dirs[0]);
    dir_clear(&p->dirs[1]);
    if (refused) {
      p->n->st.refused++;
      ep_close(c, MPRPC_CLOSE_CONNECT_FAILED, MPRPC_ECONNREFUSED);
    } else {
      p->n->st.resets++;
      ep_close(c, MPRPC_CLOSE_RESET, MPRPC_ECONNRESET);
    }
  }
  pipe_maybe_free(p);
}

static void send_rst(mprpc_conn_t *to) {
  if (!ep_live(to) || to->rst_ev)
    return;
  pipe_t *p = to->p;
  to->rst_ev = mprpc_sim_at(p->n->w, latency(p->n), MPRPC_SIM_EV_NET_RST, conn_trace_id(to), ev_rst,
                            to);
}

/* ---- byte pump and delivery ------------------------------------------------------ */

static void ev_deliver(void *arg);
static void ev_pump(void *arg);

static void schedule_deliver(dir_t *d) {
  if (d->deliver_ev || !d->head)
    return;
  mprpc_sim_world_t *w = d->p->n->w;
  uint64_t now = mprpc_sim_now(w);
  uint64_t at = d->head->at > now ? d->head->at : now;
  d->deliver_ev = mprpc_sim_at_on(w, conn_loop(&d->p->ends[1 - d->from_side]), at - now,
                                  MPRPC_SIM_EV_NET_DELIVER, d->p->id * 2 + (uint64_t)d->from_side,
                                  ev_deliver, d);
}

static void push_chunk(dir_t *d, int type, const uint8_t *data, size_t len) {
  mprpc_sim_net_t *n = d->p->n;
  chunk_t *c = malloc(sizeof *c + len);
  if (!c)
    abort();
  c->next = NULL;
  c->type = type;
  c->len = len;
  if (len)
    memcpy(c->data, data, len);
  uint64_t at = mprpc_sim_now(n->w) + latency(n);
  if (at < d->last_at)
    at = d->last_at;
  d->last_at = at;
  c->at = at;
  if (d->tail)
    d->tail->next = c;
  else
    d->head = c;
  d->tail = c;
  n->st.chunks++;
  schedule_deliver(d);
}

static size_t chunk_size(dir_t *d) {
  size_t max = d->chunk_max ? d->chunk_max : 65536;
  if (d->chunk_fixed)
    return max;
  return (size_t)mprpc_sim_rand_range(d->p->n->w, 1, max);
}

static void schedule_pump(dir_t *d, uint64_t delay) {
  if (d->pump_ev)
    return;
  d->pump_ev = mprpc_sim_at(d->p->n->w, delay, MPRPC_SIM_EV_NET_PUMP,
                            d->p->id * 2 + (uint64_t)d->from_side, ev_pump, d);
}

static void ev_pump(void *arg) {
  dir_t *d = arg;
  pipe_t *p = d->p;
  mprpc_sim_net_t *n = p->n;
  d->pump_ev = 0;
  if (d->pend_len > 0) {
    size_t len = chunk_size(d);
    if (len > d->pend_len)
      len = d->pend_len;
    push_chunk(d, CH_DATA, d->pend + d->pend_off, len);
    n->st.bytes += len;
    d->pend_off += len;
    d->pend_len -= len;
    if (d->pend_len == 0)
      d->pend_off = 0;
    uint64_t wire = (uint64_t)len * n->cfg.ns_per_byte;
    if (d->pend_len > 0) {
      schedule_pump(d, wire);
    } else {
      if (d->fin_queued) {
        d->fin_queued = false;
        d->fin_sent = true;
        push_chunk(d, CH_FIN, NULL, 0);
      }
      /* Every write is a backlog here (bytes wait for the pump), so the
       * drain is reported each time, not only after an EHWM refusal:
       * callers learn that their bytes left the machine. */
      mprpc_conn_t *s = &p->ends[d->from_side];
      if (s->state == EP_OPEN) {
        d->want_writable = false;
        if (s->has_handler && s->h.on_writable) {
          p->in_event = true;
          s->h.on_writable(s, s->ud);
          p->in_event = false;
        }
      }
    }
  } else if (d->fin_queued) {
    d->fin_queued = false;
    d->fin_sent = true;
    push_chunk(d, CH_FIN, NULL, 0);
  }
  pipe_maybe_free(p);
}

static void deliver_data(mprpc_conn_t *r, const uint8_t *data, size_t len) {
  if (r->state != EP_OPEN || !r->in)
    return;
  if (mprpc_rbuf_append(r->in, data, len) != 0)
    abort();
  r->p->n->st.deliveries++;
  if (r->has_handler && r->h.on_data)
    r->h.on_data(r, r->ud, r->in);
}

static void ev_deliver(void *arg) {
  dir_t *d = arg;
  pipe_t *p = d->p;
  mprpc_sim_net_t *n = p->n;
  mprpc_sim_world_t *w = n->w;
  uint64_t now = mprpc_sim_now(w);
  d->deliver_ev = 0;
  mprpc_conn_t *s = &p->ends[d->from_side];
  mprpc_conn_t *r = &p->ends[1 - d->from_side];
  if (d->stall_until > now) {
    d->deliver_ev = mprpc_sim_at_on(w, conn_loop(r), d->stall_until - now, MPRPC_SIM_EV_NET_DELIVER,
                                    p->id * 2 + (uint64_t)d->from_side, ev_deliver, d);
    return;
  }
  if (mprpc_sim_net_blocked(n, s->host, r->host)) {
    d->deliver_ev = mprpc_sim_at_on(w, conn_loop(r), n->cfg.rto_ns, MPRPC_SIM_EV_NET_DELIVER,
                                    p->id * 2 + (uint64_t)d->from_side, ev_deliver, d);
    return;
  }
  p->in_event = true;
  /* Coalesce consecutive due data chunks into one on_data. */
  uint8_t stackbuf[2048];
  uint8_t *acc = stackbuf;
  size_t acc_len = 0, acc_cap = sizeof stackbuf;
  while (d->head && d->head->at <= now) {
    chunk_t *c = d->head;
    d->head = c->next;
    if (!d->head)
      d->tail = NULL;
    if (c->type == CH_DATA) {
      if (r->state != EP_OPEN) {
        /* Data for a closed or vanished endpoint: the receiver answers
         * with a RST (a crashed host has no socket left either). */
        if (r->state == EP_CLOSING || r->state == EP_DEAD || !mprpc_sim_net_host_up(n, r->host))
          send_rst(s);
      } else {
        if (acc_len + c->len > acc_cap) {
          size_t cap = acc_cap * 2;
          while (cap < acc_len + c->len)
            cap *= 2;
          uint8_t *nb = acc == stackbuf ? malloc(cap) : realloc(acc, cap);
          if (!nb)
            abort();
          if (acc == stackbuf)
            memcpy(nb, stackbuf, acc_len);
          acc = nb;
          acc_cap = cap;
        }
        memcpy(acc + acc_len, c->data, c->len);
        acc_len += c->len;
      }
      free(c);
      continue;
    }
    if (acc_len) {
      deliver_data(r, acc, acc_len);
      acc_len = 0;
    }
    if (c->type == CH_SYNACK) {
      if (r->state == EP_CONNECTING) {
        r->state = EP_OPEN;
        mprpc_sim_cancel(w, p->tmo_ev);
        p->tmo_ev = 0;
        n->st.conns++;
        if (r->h.on_connect)
          r->h.on_connect(r, r->ud);
        /* Bytes written while connecting start flowing now. */
        if (r->state == EP_OPEN && p->dirs[r->side].pend_len > 0)
          schedule_pump(&p->dirs[r->side], 0);
      } else if (r->state != EP_OPEN) {
        send_rst(s);
      }
    } else if (c->type == CH_FIN) {
      if (r->state == EP_OPEN) {
        /* The contract has no half-close: EOF ends the endpoint. What it
         * had not sent yet is dropped, and it answers with its own FIN. */
        dir_t *back = &p->dirs[r->side];
        back->frozen_pending += back->pend_len;
        back->pend_off = back->pend_len = 0;
        back->want_writable = false;
        if (!back->fin_sent) {
          back->fin_queued = true;
          schedule_pump(back, 0);
        }
        ep_close(r, MPRPC_CLOSE_EOF, 0);
      }
    }
    free(c);
  }
  if (acc_len)
    deliver_data(r, acc, acc_len);
  if (acc != stackbuf)
    free(acc);
  p->in_event = false;
  schedule_deliver(d);
  pipe_maybe_free(p);
}

/* ---- pipes --------------------------------------------------------------------- */

static void init_dir(mprpc_sim_net_t *n, pipe_t *p, int side) {
  dir_t *d = &p->dirs[side];
  d->p = p;
  d->from_side = side;
  if (n->cfg.chunk_max) {
    d->chunk_max = n->cfg.chunk_max;
    d->chunk_fixed = n->cfg.chunk_fixed;
  } else {
    static const size_t maxes[] = {1, 3, 17, 100, 1460, 8192, 65536, 65536};
    d->chunk_max = maxes[mprpc_sim_rand_range(n->w, 0, sizeof maxes / sizeof maxes[0] - 1)];
  }
}

static void pipe_unlink_free(pipe_t *p) {
  mprpc_sim_net_t *n = p->n;
  for (int i = 0; i < 2; i++) {
    dir_clear(&p->dirs[i]);
    free(p->dirs[i].pend);
    mprpc_sim_cancel(n->w, p->ends[i].close_ev);
    mprpc_sim_cancel(n->w, p->ends[i].rst_ev);
  }
  mprpc_sim_cancel(n->w, p->syn_ev);
  mprpc_sim_cancel(n->w, p->tmo_ev);
  if (p->prev)
    p->prev->next = p->next;
  else
    n->pipes = p->next;
  if (p->next)
    p->next->prev = p->prev;
  else
    n->pipes_tail = p->prev;
  n->npipes--;
  free(p);
}

static bool ep_done(const mprpc_conn_t *c) { return c->state == EP_NONE || c->state == EP_DEAD; }

static void pipe_maybe_free(pipe_t *p) {
  if (p->in_event)
    return;
  if (ep_done(&p->ends[0]) && ep_done(&p->ends[1]))
    pipe_unlink_free(p);
}

/* ---- transport ops -------------------------------------------------------------- */

static int net_listen(void *ctx, const mprpc_listen_opts_t *o, mprpc_listener_t **out) {
  mprpc_sim_net_t *n = ctx;
  if (!o || !o->loops || o->nloops == 0 || !o->on_accept)
    return MPRPC_EINVAL;
  mprpc_sim_loop_t *sl = mprpc_sim_loop_from(o->loops[0]);
  if (!sl)
    return MPRPC_EINVAL;
  int host = mprpc_sim_loop_host(sl);
  if (!host_ok(n, host))
    return MPRPC_EADDRNOTAVAIL;
  if (o->host && strcmp(o->host, "0.0.0.0") != 0 && strcmp(o->host, "localhost") != 0 &&
      strcmp(o->host, n->hosts[host].addr) != 0)
    return MPRPC_EADDRNOTAVAIL;
  uint16_t port = o->port;
  if (port == 0)
    port = n->hosts[host].next_port++;
  for (mprpc_listener_t *l = n->listeners; l; l = l->next)
    if (l->host == host && l->port == port)
      return MPRPC_EADDRINUSE;
  mprpc_listener_t *l = calloc(1, sizeof *l);
  if (!l)
    goto fail;
  l->loops = calloc(o->nloops, sizeof *l->loops);
  if (!l->loops)
    goto fail;
  memcpy(l->loops, o->loops, o->nloops * sizeof *l->loops);
  l->n = n;
  l->host = host;
  l->port = port;
  l->nloops = o->nloops;
  l->on_accept = o->on_accept;
  l->ud = o->ud;
  l->conn = o->conn;
  l->next = n->listeners;
  n->listeners = l;
  *out = l;
  mprpc_sim_note(n->w, "net.listen", (uint64_t)host, port);
  return 0;
fail:
  if (l)
    free(l->loops);
  free(l);
  return MPRPC_ENOMEM;
}

static uint16_t net_listener_port(void *ctx, mprpc_listener_t *l) {
  (void)ctx;
  return l->port;
}

static void net_listener_close(void *ctx, mprpc_listener_t *l) {
  mprpc_sim_net_t *n = ctx;
  for (mprpc_listener_t **pp = &n->listeners; *pp; pp = &(*pp)->next) {
    if (*pp == l) {
      *pp = l->next;
      break;
    }
  }
  free(l->loops);
  free(l);
}

static mprpc_listener_t *find_listener(mprpc_sim_net_t *n, int host, uint16_t port) {
  for (mprpc_listener_t *l = n->listeners; l; l = l->next)
    if (l->host == host && l->port == port && !l->dead)
      return l;
  return NULL;
}

static void ev_conn_timeout(void *arg) {
  pipe_t *p = arg;
  p->tmo_ev = 0;
  mprpc_conn_t *c = &p->ends[0];
  if (c->state == EP_CONNECTING) {
    p->n->st.connect_timeouts++;
    mprpc_sim_cancel(p->n->w, p->syn_ev);
    p->syn_ev = 0;
    dir_clear(&p->dirs[0]);
    dir_clear(&p->dirs[1]);
    ep_close(c, MPRPC_CLOSE_CONNECT_FAILED, MPRPC_ETIMEDOUT);
    send_rst(&p->ends[1]);
  }
  pipe_maybe_free(p);
}

static void ev_syn(void *arg) {
  pipe_t *p = arg;
  mprpc_sim_net_t *n = p->n;
  p->syn_ev = 0;
  mprpc_conn_t *c = &p->ends[0];
  if (c->state != EP_CONNECTING)
    goto out;
  int dst = p->ends[1].host;
  if (!host_ok(n, dst)) {
    /* Nobody answers for an unknown address: the connect times out. */
    goto out;
  }
  if (mprpc_sim_net_blocked(n, c->host, dst)) {
    p->syn_ev = mprpc_sim_at(n->w, n->cfg.rto_ns, MPRPC_SIM_EV_NET_SYN, p->id * 2, ev_syn, p);
    goto out;
  }
  mprpc_listener_t *l = n->hosts[dst].up ? find_listener(n, dst, p->dst_port) : NULL;
  if (!l) {
    /* The peer's kernel answers with a RST: connection refused. */
    send_rst(c);
    goto out;
  }
  mprpc_conn_t *s = &p->ends[1];
  s->state = EP_OPEN;
  s->high_water = l->conn.high_water ? l->conn.high_water : 64u << 20;
  s->loop = l->loops[l->rr++ % l->nloops];
  snprintf(s->peer, sizeof s->peer, "%.31s:%u", n->hosts[c->host].addr, (unsigned)c->port);
  n->st.accepted++;
  /* The SYN-ACK leads the accepted->client stream. */
  push_chunk(&p->dirs[1], CH_SYNACK, NULL, 0);
  p->in_event = true;
  l->on_accept(l->ud, s, s->loop);
  p->in_event = false;
  if (s->state == EP_OPEN && !s->has_handler) {
    /* The callee broke the accept contract; do not leave a zombie. */
    s->state = EP_DEAD;
    send_rst(c);
  }
  if (s->state == EP_OPEN && s->p->dirs[1].pend_len > 0)
    schedule_pump(&p->dirs[1], 0);
out:
  pipe_maybe_free(p);
}

static int parse_host(mprpc_sim_net_t *n, const char *host) {
  if (!host)
    return -1;
  if (strcmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0)
    return -2;
  return mprpc_sim_net_host_by_addr(n, host);
}

static int net_connect(void *ctx, mprpc_loop_t loop, const char *host, uint16_t port,
                       const mprpc_conn_opts_t *opts, const mprpc_conn_handler_t *h, void *ud,
                       mprpc_rbuf_t *in, mprpc_conn_t **out) {
  mprpc_sim_net_t *n = ctx;
  mprpc_sim_loop_t *sl = mprpc_sim_loop_from(loop);
  if (!sl || !h || !in || !host)
    return MPRPC_EINVAL;
  int src = mprpc_sim_loop_host(sl);
  if (!host_ok(n, src))
    return MPRPC_EINVAL;
  if (!n->hosts[src].up)
    return MPRPC_ENETUNREACH;
  int dst = parse_host(n, host);
  if (dst == -2)
    dst = src;
  if (port == 0)
    return MPRPC_EADDR;
  pipe_t *p = calloc(1, sizeof *p);
  if (!p)
    return MPRPC_ENOMEM;
  p->n = n;
  p->id = ++n->next_pipe_id;
  p->dst_port = port;
  for (int i = 0; i < 2; i++) {
    p->ends[i].p = p;
    p->ends[i].side = i;
    init_dir(n, p, i);
  }
  mprpc_conn_t *c = &p->ends[0];
  c->state = EP_CONNECTING;
  c->host = src;
  c->loop = loop;
  c->h = *h;
  c->has_handler = true;
  c->ud = ud;
  c->in = in;
  c->high_water = opts && opts->high_water ? opts->high_water : 64u << 20;
  c->port = n->hosts[src].next_eph++;
  if (n->hosts[src].next_eph < 32768)
    n->hosts[src].next_eph = 32768;
  snprintf(c->peer, sizeof c->peer, "%.40s:%u", host, (unsigned)port);
  p->ends[1].host = dst; /* may be -1: unknown address */
  p->ends[1].port = port;
  p->connect_timeout = opts && opts->connect_timeout_ns ? opts->connect_timeout_ns
                                                         : 3 * MPRPC_NS_PER_S;
  p->syn_ev = mprpc_sim_at(n->w, latency(n), MPRPC_SIM_EV_NET_SYN, p->id * 2, ev_syn, p);
  p->tmo_ev = mprpc_sim_at(n->w, p->connect_timeout, MPRPC_SIM_EV_NET_CONNTMO, p->id * 2,
                           ev_conn_timeout, p);
  if (!p->syn_ev || !p->tmo_ev) {
    mprpc_sim_cancel(n->w, p->syn_ev);
    mprpc_sim_cancel(n->w, p->tmo_ev);
    free(p);
    return MPRPC_ENOMEM;
  }
  p->prev = n->pipes_tail;
  if (n->pipes_tail)
    n->pipes_tail->next = p;
  else
    n->pipes = p;
  n->pipes_tail = p;
  n->npipes++;
  *out = c;
  mprpc_sim_note(n->w, "net.connect", p->id, (uint64_t)(dst < 0 ? 0xffff : dst) << 16 | port);
  return 0;
}

static void net_setup(void *ctx, mprpc_conn_t *c, const mprpc_conn_handler_t *h, void *ud,
                      mprpc_rbuf_t *in) {
  (void)ctx;
  c->h = *h;
  c->has_handler = true;
  c->ud = ud;
  c->in = in;
}

static int net_writev(void *ctx, mprpc_conn_t *c, const struct iovec *iov, int iovcnt) {
  (void)ctx;
  if (!ep_live(c))
    return MPRPC_ECLOSED;
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  dir_t *d = &c->p->dirs[c->side];
  /* As src/rt/tcp.c: a write that would take the backlog past the mark is
   * refused whole (even into an empty backlog, when it alone is larger). */
  if (total > c->high_water || d->pend_len > c->high_water - total) {
    d->want_writable = true;
    return MPRPC_EHWM;
  }
  if (total == 0)
    return 0;
  if (d->pend_off + d->pend_len + total > d->pend_cap) {
    if (d->pend_off) {
      memmove(d->pend, d->pend + d->pend_off, d->pend_len);
      d->pend_off = 0;
    }
    if (d->pend_len + total > d->pend_cap) {
      size_t cap = d->pend_cap ? d->pend_cap : 1024;
      while (cap < d->pend_len + total)
        cap *= 2;
      uint8_t *np = realloc(d->pend, cap);
      if (!np)
        return MPRPC_ENOMEM;
      d->pend = np;
      d->pend_cap = cap;
    }
  }
  uint8_t *dst = d->pend + d->pend_off + d->pend_len;
  for (int i = 0; i < iovcnt; i++) {
    if (iov[i].iov_len)
      memcpy(dst, iov[i].iov_base, iov[i].iov_len);
    dst += iov[i].iov_len;
  }
  d->pend_len += total;
  if (c->state == EP_OPEN)
    schedule_pump(d, 0);
  return 0;
}

/* After the connection died this keeps reporting what had not been sent
 * then (those bytes surely never reached the peer). */
static size_t net_out_pending(void *ctx, mprpc_conn_t *c) {
  (void)ctx;
  const dir_t *d = &c->p->dirs[c->side];
  return ep_live(c) ? d->pend_len : d->pend_len + d->frozen_pending;
}

static void net_close(void *ctx, mprpc_conn_t *c, bool flush) {
  (void)ctx;
  if (!ep_live(c))
    return;
  pipe_t *p = c->p;
  dir_t *d = &p->dirs[c->side];
  if (c->state == EP_CONNECTING) {
    mprpc_sim_cancel(p->n->w, p->syn_ev);
    p->syn_ev = 0;
    mprpc_sim_cancel(p->n->w, p->tmo_ev);
    p->tmo_ev = 0;
    dir_clear(d);
    send_rst(peer_of(c));
    ep_close(c, MPRPC_CLOSE_LOCAL, 0);
    return;
  }
  if (!flush) {
    d->frozen_pending += d->pend_len;
    d->pend_off = d->pend_len = 0;
  }
  d->want_writable = false;
  if (!d->fin_sent) {
    d->fin_queued = true;
    schedule_pump(d, 0);
  }
  ep_close(c, MPRPC_CLOSE_LOCAL, 0);
}

static const char *net_peer_name(void *ctx, mprpc_conn_t *c) {
  (void)ctx;
  return c->peer;
}

static const mprpc_transport_ops_t net_ops = {
    .listen = net_listen,
    .listener_port = net_listener_port,
    .listener_close = net_listener_close,
    .connect = net_connect,
    .setup = net_setup,
    .writev = net_writev,
    .out_pending = net_out_pending,
    .close = net_close,
    .peer_name = net_peer_name,
};

/* ---- net object and faults ---------------------------------------------------------- */

mprpc_sim_net_t *mprpc_sim_net_new(mprpc_sim_world_t *w, const mprpc_sim_net_config_t *cfg) {
  mprpc_sim_net_t *n = calloc(1, sizeof *n);
  if (!n)
    return NULL;
  n->w = w;
  if (cfg)
    n->cfg = *cfg;
  if (!n->cfg.lat_min_ns && !n->cfg.lat_max_ns) {
    n->cfg.lat_min_ns = 200 * MPRPC_NS_PER_US;
    n->cfg.lat_max_ns = 2 * MPRPC_NS_PER_MS;
  }
  if (n->cfg.lat_max_ns < n->cfg.lat_min_ns)
    n->cfg.lat_max_ns = n->cfg.lat_min_ns;
  if (!cfg) {
    n->cfg.lat_tail_p = 0.01;
    n->cfg.lat_tail_ns = 20 * MPRPC_NS_PER_MS;
  }
  if (!n->cfg.ns_per_byte)
    n->cfg.ns_per_byte = 1;
  if (!n->cfg.rto_ns)
    n->cfg.rto_ns = 200 * MPRPC_NS_PER_MS;
  return n;
}

void mprpc_sim_net_free(mprpc_sim_net_t *n) {
  if (!n)
    return;
  /* Contract: every connection still open hears on_close(SHUTDOWN). */
  for (pipe_t *p = n->pipes; p; p = p->next) {
    for (int i = 0; i < 2; i++) {
      mprpc_conn_t *c = &p->ends[i];
      if (c->state == EP_CONNECTING || c->state == EP_OPEN || c->state == EP_CLOSING) {
        int reason = c->state == EP_CLOSING ? c->close_reason : MPRPC_CLOSE_SHUTDOWN;
        int err = c->state == EP_CLOSING ? c->close_err : 0;
        c->state = EP_DEAD;
        p->in_event = true;
        if (c->has_handler && c->h.on_close)
          c->h.on_close(c, c->ud, reason, err);
        p->in_event = false;
      }
    }
  }
  while (n->pipes)
    pipe_unlink_free(n->pipes);
  while (n->listeners) {
    mprpc_listener_t *l = n->listeners;
    n->listeners = l->next;
    free(l->loops);
    free(l);
  }
  free(n->hosts);
  free(n->blocked);
  free(n);
}

mprpc_transport_t mprpc_sim_net_transport(mprpc_sim_net_t *n) {
  return (mprpc_transport_t){.vt = &net_ops, .ctx = n};
}

int mprpc_sim_net_add_host(mprpc_sim_net_t *n) {
  if (n->nhosts == n->cap_hosts) {
    int cap = n->cap_hosts ? n->cap_hosts * 2 : 16;
    host_t *h = realloc(n->hosts, (size_t)cap * sizeof *h);
    if (!h)
      return MPRPC_ENOMEM;
    n->hosts = h;
    uint8_t *b = calloc((size_t)cap * (size_t)cap, 1);
    if (!b)
      return MPRPC_ENOMEM;
    for (int i = 0; i < n->cap_blocked; i++)
      memcpy(b + (size_t)i * (size_t)cap, n->blocked + (size_t)i * (size_t)n->cap_blocked,
             (size_t)n->cap_blocked);
    free(n->blocked);
    n->blocked = b;
    n->cap_blocked = cap;
    n->cap_hosts = cap;
  }
  int id = n->nhosts++;
  host_t *h = &n->hosts[id];
  memset(h, 0, sizeof *h);
  snprintf(h->addr, sizeof h->addr, "10.0.%d.%d", ((id + 1) / 256) & 255, (id + 1) % 256);
  h->up = true;
  h->next_eph = 32768;
  h->next_port = 8000;
  return id;
}

const char *mprpc_sim_net_host_addr(const mprpc_sim_net_t *n, int host) {
  return host_ok(n, host) ? n->hosts[host].addr : "0.0.0.0";
}

int mprpc_sim_net_host_by_addr(const mprpc_sim_net_t *n, const char *addr) {
  for (int i = 0; i < n->nhosts; i++)
    if (strcmp(n->hosts[i].addr, addr) == 0)
      return i;
  return -1;
}

int mprpc_sim_net_nhosts(const mprpc_sim_net_t *n) { return n->nhosts; }

static void set_block(mprpc_sim_net_t *n, int from, int to, bool one_way, uint8_t v) {
  if (!host_ok(n, from) || !host_ok(n, to))
    return;
  n->blocked[from * n->cap_blocked + to] = v;
  if (!one_way)
    n->blocked[to * n->cap_blocked + from] = v;
}

void mprpc_sim_net_partition(mprpc_sim_net_t *n, int from, int to, bool one_way) {
  set_block(n, from, to, one_way, 1);
  mprpc_sim_note(n->w, one_way ? "net.partition1" : "net.partition", (uint64_t)from, (uint64_t)to);
}

void mprpc_sim_net_heal(mprpc_sim_net_t *n, int from, int to, bool one_way) {
  if (mprpc__sim_bug & MPRPC_SIM_BUG_NO_HEAL)
    return;
  set_block(n, from, to, one_way, 0);
  mprpc_sim_note(n->w, "net.heal", (uint64_t)from, (uint64_t)to);
}

void mprpc_sim_net_heal_all(mprpc_sim_net_t *n) {
  if (mprpc__sim_bug & MPRPC_SIM_BUG_NO_HEAL)
    return;
  memset(n->blocked, 0, (size_t)n->cap_blocked * (size_t)n->cap_blocked);
  mprpc_sim_note(n->w, "net.heal_all", 0, 0);
}

void mprpc_sim_net_stall(mprpc_sim_net_t *n, int from, int to, uint64_t dur_ns) {
  uint64_t until = mprpc_sim_now(n->w) + dur_ns;
  for (pipe_t *p = n->pipes; p; p = p->next)
    for (int i = 0; i < 2; i++) {
      dir_t *d = &p->dirs[i];
      if (p->ends[i].host == from && p->ends[1 - i].host == to && d->stall_until < until)
        d->stall_until = until;
    }
  mprpc_sim_note(n->w, "net.stall", (uint64_t)from << 32 | (uint32_t)to, dur_ns);
}

static void reset_pipe(pipe_t *p, int local_side) {
  mprpc_conn_t *a = &p->ends[local_side];
  mprpc_conn_t *b = &p->ends[1 - local_side];
  dir_clear(&p->dirs[0]);
  dir_clear(&p->dirs[1]);
  p->n->st.resets++;
  bool a_connecting = a->state == EP_CONNECTING;
  if (a_connecting) {
    mprpc_sim_cancel(p->n->w, p->syn_ev);
    p->syn_ev = 0;
    mprpc_sim_cancel(p->n->w, p->tmo_ev);
    p->tmo_ev = 0;
  }
  ep_close(a, a_connecting ? MPRPC_CLOSE_CONNECT_FAILED : MPRPC_CLOSE_RESET, MPRPC_ECONNRESET);
  send_rst(b);
}

bool mprpc_sim_net_reset_random(mprpc_sim_net_t *n, int host) {
  size_t cand = 0;
  for (pipe_t *p = n->pipes; p; p = p->next)
    if (p->ends[0].state == EP_OPEN && p->ends[1].state == EP_OPEN &&
        (host < 0 || p->ends[0].host == host || p->ends[1].host == host))
      cand++;
  if (!cand)
    return false;
  size_t pick = (size_t)mprpc_sim_rand_range(n->w, 0, cand - 1);
  for (pipe_t *p = n->pipes; p; p = p->next) {
    if (p->ends[0].state == EP_OPEN && p->ends[1].state == EP_OPEN &&
        (host < 0 || p->ends[0].host == host || p->ends[1].host == host)) {
      if (pick-- == 0) {
        int side = host >= 0 ? (p->ends[0].host == host ? 0 : 1)
                             : (int)mprpc_sim_rand_range(n->w, 0, 1);
        mprpc_sim_note(n->w, "net.reset", p->id, (uint64_t)side);
        reset_pipe(p, side);
        return true;
      }
    }
  }
  return false;
}

void mprpc_sim_net_crash(mprpc_sim_net_t *n, int host) {
  if (!host_ok(n, host))
    return;
  n->hosts[host].up = false;
  mprpc_sim_note(n->w, "net.crash", (uint64_t)host, 0);
  for (mprpc_listener_t *l = n->listeners; l; l = l->next)
    if (l->host == host)
      l->dead = true;
  for (pipe_t *p = n->pipes; p; p = p->next) {
    for (int i = 0; i < 2; i++) {
      mprpc_conn_t *c = &p->ends[i];
      if (c->host != host || !ep_live(c))
        continue;
      mprpc_conn_t *peer = &p->ends[1 - i];
      dir_clear(&p->dirs[0]);
      dir_clear(&p->dirs[1]);
      if (c->state == EP_CONNECTING) {
        mprpc_sim_cancel(n->w, p->syn_ev);
        p->syn_ev = 0;
        mprpc_sim_cancel(n->w, p->tmo_ev);
        p->tmo_ev = 0;
      }
      /* The process is gone; its owner frees its objects, which still hear
       * on_close exactly once. The peer's kernel hears of it by RST. */
      ep_close(c, MPRPC_CLOSE_SHUTDOWN, 0);
      if (peer->host != host)
        send_rst(peer);
    }
  }
}

void mprpc_sim_net_restart(mprpc_sim_net_t *n, int host) {
  if (!host_ok(n, host))
    return;
  n->hosts[host].up = true;
  mprpc_sim_note(n->w, "net.restart", (uint64_t)host, 0);
}

bool mprpc_sim_net_host_up(const mprpc_sim_net_t *n, int host) {
  return host_ok(n, host) && n->hosts[host].up;
}

void mprpc_sim_net_set_chunk(mprpc_sim_net_t *n, size_t chunk_max, bool fixed) {
  n->cfg.chunk_max = chunk_max;
  n->cfg.chunk_fixed = fixed;
}

mprpc_sim_net_stats_t mprpc_sim_net_stats(const mprpc_sim_net_t *n) { return n->st; }

size_t mprpc_sim_net_live_conns(const mprpc_sim_net_t *n) { return n->npipes; }
