/* Hostile virtual clients; see hostile.h. */
#include "hostile.h"

#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"

#define MS MPRPC_NS_PER_MS
#define SEC MPRPC_NS_PER_S
#define MiB (1024u * 1024u)
#define REOPEN_NS (50 * MS)

typedef struct hc {
  mprpc_sim_hostile_t *h;
  int kind;
  char host[32];
  uint16_t port;
  mprpc_conn_t *c; /* NULL between connections */
  mprpc_rbuf_t in;
  uint64_t timer;
  uint64_t sent;
  bool up;
} hc_t;

struct mprpc_sim_hostile {
  mprpc_sim_world_t *w;
  mprpc_transport_t tr;
  mprpc_sim_loop_t *sl;
  mprpc_loop_t loop;
  hc_t **cs;
  size_t n, cap;
  uint64_t closed;
  bool stopped;
  uint8_t req[16 * 1024 + 64]; /* NOREAD: one valid request frame */
  size_t req_len;
};

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

static size_t put_str(uint8_t *p, uint32_t field, const void *s, size_t len) {
  size_t n = put_varint(p, (uint64_t)field << 3 | 2);
  n += put_varint(p + n, len);
  memcpy(p + n, s, len);
  return n + len;
}

/* example.EchoService.Echo with a 16 KiB message the scenario's handler
 * does not know (no token): it echoes it. */
static void build_request(mprpc_sim_hostile_t *h) {
  uint8_t rm[64], meta[96];
  size_t rn = put_str(rm, 1, "example.EchoService", 19);
  rn += put_str(rm + rn, 2, "Echo", 4);
  size_t m = put_str(meta, 1, rm, rn);
  meta[m++] = 4 << 3;
  m += put_varint(meta + m, 7);
  static char msg[16 * 1024];
  memset(msg, 'h', sizeof msg);
  uint8_t *body = h->req + 12;
  memcpy(body, meta, m);
  size_t pl = put_str(body + m, 1, msg, sizeof msg);
  memcpy(h->req, "PRPC", 4);
  put_be32(h->req + 4, (uint32_t)(m + pl));
  put_be32(h->req + 8, (uint32_t)m);
  h->req_len = 12 + m + pl;
}

static void hc_connect(hc_t *hc);

static void reopen_fire(void *arg) {
  hc_t *hc = arg;
  hc->timer = 0;
  if (!hc->h->stopped)
    hc_connect(hc);
}

static void send_fire(void *arg);

static void arm(hc_t *hc, uint64_t delay, mprpc_timer_cb cb) {
  hc->timer = mprpc_timer_start(hc->h->loop, delay, cb, hc);
}

static void hc_write(hc_t *hc, const void *p, size_t n) {
  struct iovec iov = {(void *)p, n};
  if (mprpc_conn_writev(hc->h->tr, hc->c, &iov, 1) == 0)
    hc->sent += n;
}

static void send_fire(void *arg) {
  static uint8_t junk[64 * 1024];
  hc_t *hc = arg;
  mprpc_sim_hostile_t *h = hc->h;
  hc->timer = 0;
  if (!hc->up || h->stopped)
    return;
  switch (hc->kind) {
  case MPRPC_SIM_HOSTILE_TRICKLE:
    if (hc->sent == 0) {
      uint8_t hdr[12] = {'P', 'R', 'P', 'C'};
      put_be32(hdr + 4, 60 * MiB);
      put_be32(hdr + 8, 16);
      hc_write(hc, hdr, sizeof hdr);
      arm(hc, 1 * MS, send_fire);
    } else if (hc->sent < 768 * 1024) {
      hc_write(hc, junk, sizeof junk);
      arm(hc, 5 * MS, send_fire);
    } else {
      hc_write(hc, junk, 1024);
      arm(hc, 1 * SEC, send_fire);
    }
    break;
  case MPRPC_SIM_HOSTILE_NOREAD:
    if (hc->sent < 256 * 1024) {
      hc_write(hc, h->req, h->req_len);
      arm(hc, 10 * MS, send_fire);
    }
    break;
  case MPRPC_SIM_HOSTILE_SLOWLORIS: {
    static const uint8_t hdr[12] = {'P', 'R', 'P', 'C', 0, 0, 0x10, 0, 0, 0, 0, 16};
    hc_write(hc, hc->sent < 12 ? hdr + hc->sent : junk, 1);
    arm(hc, 1 * SEC, send_fire);
    break;
  }
  }
}

static void on_connect(mprpc_conn_t *c, void *ud) {
  hc_t *hc = ud;
  hc->up = true;
  if (hc->kind == MPRPC_SIM_HOSTILE_NOREAD)
    mprpc_conn_set_reading(hc->h->tr, c, false); /* the answers pile up unread */
  arm(hc, 0, send_fire);
}

static void on_data(mprpc_conn_t *c, void *ud, mprpc_rbuf_t *in) {
  (void)c;
  (void)ud;
  mprpc_rbuf_consume(in, mprpc_rbuf_len(in)); /* answers (ELOGOFF, ...) are dropped */
}

static void on_close(mprpc_conn_t *c, void *ud, int reason, int err) {
  (void)c;
  (void)err;
  hc_t *hc = ud;
  mprpc_sim_hostile_t *h = hc->h;
  if (hc->up && reason != MPRPC_CLOSE_LOCAL)
    h->closed++;
  hc->up = false;
  hc->c = NULL;
  mprpc_timer_cancel(h->loop, hc->timer);
  hc->timer = 0;
  mprpc_rbuf_consume(&hc->in, mprpc_rbuf_len(&hc->in));
  if (!h->stopped)
    arm(hc, REOPEN_NS, reopen_fire);
}

static const mprpc_conn_handler_t handler = {on_connect, on_data, NULL, on_close};

static void hc_connect(hc_t *hc) {
  hc->sent = 0;
  mprpc_conn_t *c = NULL;
  int rc = mprpc_conn_connect(hc->h->tr, hc->h->loop, hc->host, hc->port, NULL, &handler, hc,
                              &hc->in, &c);
  if (rc != 0) {
    arm(hc, REOPEN_NS, reopen_fire);
    return;
  }
  hc->c = c;
}

mprpc_sim_hostile_t *mprpc_sim_hostile_new(mprpc_sim_world_t *w, mprpc_sim_net_t *net,
                                           mprpc_transport_t tr) {
  mprpc_sim_hostile_t *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  h->w = w;
  h->tr = tr;
  h->sl = mprpc_sim_loop_new(w, mprpc_sim_net_add_host(net));
  if (!h->sl) {
    free(h);
    return NULL;
  }
  h->loop = mprpc_sim_loop(h->sl);
  build_request(h);
  return h;
}

int mprpc_sim_hostile_add(mprpc_sim_hostile_t *h, int kind, const char *host, uint16_t port) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 16;
    hc_t **cs = realloc(h->cs, cap * sizeof *cs);
    if (!cs)
      return MPRPC_ENOMEM;
    h->cs = cs;
    h->cap = cap;
  }
  hc_t *hc = calloc(1, sizeof *hc);
  if (!hc)
    return MPRPC_ENOMEM;
  hc->h = h;
  hc->kind = kind;
  strncpy(hc->host, host, sizeof hc->host - 1);
  hc->port = port;
  mprpc_rbuf_init(&hc->in);
  h->cs[h->n++] = hc;
  hc_connect(hc);
  return 0;
}

uint64_t mprpc_sim_hostile_closed(const mprpc_sim_hostile_t *h) { return h->closed; }

void mprpc_sim_hostile_stop(mprpc_sim_hostile_t *h) {
  h->stopped = true;
  for (size_t i = 0; i < h->n; i++) {
    hc_t *hc = h->cs[i];
    mprpc_timer_cancel(h->loop, hc->timer);
    hc->timer = 0;
    if (hc->c)
      mprpc_conn_close(h->tr, hc->c, false);
  }
}

void mprpc_sim_hostile_free(mprpc_sim_hostile_t *h) {
  if (!h)
    return;
  for (size_t i = 0; i < h->n; i++) {
    mprpc_rbuf_free(&h->cs[i]->in);
    free(h->cs[i]);
  }
  free(h->cs);
  mprpc_sim_loop_free(h->sl);
  free(h);
}
