/*
 * The transport seam over non-blocking TCP sockets driven by libev.
 *
 * Writes are coalesced: a small write (up to CORK_COPY_MAX bytes) made on the
 * connection's loop thread is copied into the connection's output buffer,
 * and the connection goes on its loop's flush list. The list is drained,
 * one sendmsg() per connection, by a lowest-priority watcher that libev
 * runs after every other callback of the iteration, right before it polls
 * again; a connection is also flushed at the end of its own read callback
 * (replies to a batch of requests leave together). A large write, or one
 * that would make the coalesced bytes pass CORK_MAX, goes out at once in
 * one sendmsg() together with the coalesced bytes before it (order kept,
 * the large payload not copied). Only what the socket refuses is kept
 * (the backlog), drained by an ev_io write watcher. Writes made off the
 * loop thread, or while connecting, are never coalesced. Coalesced bytes
 * count against the high-water mark but are not "pending" for
 * out_pending(): like bytes in the kernel's send buffer, they leave without
 * the peer's help before the loop blocks. Reads land directly in the caller's rbuf
 * (reserve/commit), up to READ_BUDGET bytes per wakeup so one busy peer
 * cannot starve the others. on_close is always deferred: close paths stop
 * the watchers, close the fd and queue the connection on its loop's reap
 * list; the reap watcher (fed, never started) runs on_close and frees it.
 *
 * Policy choices, documented in docs/design.md:
 * - EOF from the peer closes the connection (MPRPC_CLOSE_EOF); half-open
 *   connections are not kept.
 * - "localhost" means 127.0.0.1; other host names are refused (no DNS on a
 *   loop thread). IPv6 literals may be written with or without brackets.
 * - close(flush) lingers at most LINGER_NS for the output to drain.
 * - A single writev larger than the high-water mark always fails.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mprpc/buf.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/rt.h"
#include "rt/rt_internal.h"

#define READ_BUDGET (256u * 1024u)
#define READ_CHUNK (16u * 1024u) /* least free room per read; grows with the rbuf */
#define DEFAULT_HWM ((size_t)64 << 20)
#define DEFAULT_CONNECT_TIMEOUT_NS (3 * MPRPC_NS_PER_S)
#define LINGER_NS (5 * MPRPC_NS_PER_S)
#define ACCEPT_BUDGET 64
#define ACCEPT_RETRY_S 0.1
#define OBUF_KEEP (64u * 1024u) /* drained output buffers above this are freed */
#define CORK_COPY_MAX (16u * 1024u) /* larger writes are sent at once, not copied */
#define CORK_MAX (64u * 1024u)      /* coalesced bytes above this are sent at once */
#define COMBINE_IOV 16              /* writes of more iovecs flush separately */

enum conn_state {
  C_CONNECTING, /* outgoing, waiting for the socket to become writable */
  C_OPEN,
  C_LINGER, /* close(flush): draining the output, no more reads or writes */
  C_CLOSED, /* on the reap list, on_close pending */
};

struct mprpc_conn {
  mprpc__evloop_t *loop;
  int fd;
  int state;
  ev_io rio, wio;
  mprpc_conn_handler_t h; /* copied; zeroed until setup for accepted ones */
  bool has_handler;
  void *ud;
  mprpc_rbuf_t *in;
  mprpc_rbuf_t own_in; /* used when the caller passes no rbuf */
  uint8_t *obuf;       /* unsent output: obuf[ohead .. ohead+olen) */
  size_t ohead, olen, ocap;
  size_t high_water;
  uint64_t timer; /* connect timeout or linger timer */
  int close_reason, close_err;
  struct mprpc_conn *prev, *next; /* loop->conns */
  struct mprpc_conn *close_next;  /* loop->close_head list */
  /* On loop->flush_head: obuf holds only coalesced bytes (never a backlog
   * at the same time), the write watcher is stopped, state is C_OPEN. */
  bool corked;
  bool paused; /* set_reading(false): the read watcher stays stopped */
  struct mprpc_conn *fprev, *fnext;
  char peer[64];
};

/* What a listener shares with connections it handed to other loops. No
 * on_accept may start after listener_close returned, so a handoff checks
 * `closed` and calls on_accept under `mu`, and closing sets `closed` under
 * `mu` (recursive: on_accept on loops[0] may close its own listener).
 * Refcounted: the listener holds one reference, each in-flight handoff one. */
typedef struct accept_ctx {
  atomic_int refs;
  pthread_mutex_t mu;
  bool closed; /* (mu) */
  mprpc_accept_cb on_accept;
  void *ud;
  mprpc_conn_opts_t opts;
} accept_ctx_t;

struct mprpc_listener {
  mprpc__evloop_t *loop; /* loops[0], runs the acceptor */
  int fd;
  uint16_t port;
  bool linked;  /* on loop->listeners (from its start on the loop thread
                   until freed) */
  bool start_posted; /* listener_start is queued on the loop */
  bool in_accept;    /* accept_some is running (on_accept may close us) */
  bool orphan;       /* closed while start_posted or in_accept: whoever
                        holds the pointer frees it when done */
  bool dead;    /* fd closed by close or loop shutdown */
  ev_io io;
  ev_timer retry; /* accept paused after EMFILE/ENFILE */
  int spare_fd;   /* given up at EMFILE to accept-and-close one peer */
  uint64_t emfile_refused, emfile_logged_at;
  mprpc_loop_t *loops;
  size_t nloops, rr;
  accept_ctx_t *actx;
  struct mprpc_listener *prev, *next; /* loop->listeners */
};

static const char *errname(int e) { return mprpc_err_name(mprpc_err_from_errno(e)); }

/* ---- addresses --------------------------------------------------------- */

typedef struct addr {
  struct sockaddr_storage ss;
  socklen_t len;
} addr_t;

static int parse_addr(const char *host, uint16_t port, addr_t *a) {
  memset(a, 0, sizeof *a);
  if (!host || !*host)
    host = "0.0.0.0";
  if (strcmp(host, "localhost") == 0)
    host = "127.0.0.1";
  struct sockaddr_in *v4 = (struct sockaddr_in *)&a->ss;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a->len = sizeof *v4;
    return 0;
  }
  char buf[INET6_ADDRSTRLEN + 2];
  size_t n = strlen(host);
  if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
    memcpy(buf, host + 1, n - 2);
    buf[n - 2] = '\0';
    host = buf;
  }
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a->ss;
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a->len = sizeof *v6;
    return 0;
  }
  return MPRPC_EADDR;
}

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip);
    snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(v4->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip);
    snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(v6->sin6_port));
  } else {
    snprintf(out, cap, "?");
  }
}

/* ---- connection bookkeeping -------------------------------------------- */

static void conn_link(mprpc_conn_t *c) {
  mprpc__evloop_t *L = c->loop;
  c->prev = NULL;
  c->next = L->conns;
  if (L->conns)
    L->conns->prev = c;
  L->conns = c;
}

static void conn_unlink(mprpc_conn_t *c) {
  mprpc__evloop_t *L = c->loop;
  if (c->prev)
    c->prev->next = c->next;
  else
    L->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

static void cork_add(mprpc_conn_t *c) {
  mprpc__evloop_t *L = c->loop;
  c->corked = true;
  c->fprev = NULL;
  c->fnext = L->flush_head;
  if (L->flush_head)
    L->flush_head->fprev = c;
  else
    ev_feed_event(L->ev, &L->flushw, EV_CUSTOM); /* runs before the next poll */
  L->flush_head = c;
}

static void cork_remove(mprpc_conn_t *c) {
  mprpc__evloop_t *L = c->loop;
  if (c->fprev)
    c->fprev->fnext = c->fnext;
  else
    L->flush_head = c->fnext;
  if (c->fnext)
    c->fnext->fprev = c->fprev;
  c->fprev = c->fnext = NULL;
  c->corked = false;
}

static ssize_t send_iov(int fd, const struct iovec *iov, int iovcnt);

static void on_read(struct ev_loop *ev, ev_io *w, int revents);
static void on_write(struct ev_loop *ev, ev_io *w, int revents);

static mprpc_conn_t *conn_new(mprpc__evloop_t *L, int fd, const mprpc_conn_opts_t *o) {
  mprpc_conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->loop = L;
  c->fd = fd;
  c->high_water = o && o->high_water ? o->high_water : DEFAULT_HWM;
  mprpc_rbuf_init(&c->own_in);
  ev_io_init(&c->rio, on_read, fd, EV_READ);
  ev_io_init(&c->wio, on_write, fd, EV_WRITE);
  conn_link(c);
  return c;
}

/* The one way a connection ends: everything stops now, on_close runs from
 * the reap watcher. Idempotent. */
static void conn_finish(mprpc_conn_t *c, int reason, int err) {
  if (c->state == C_CLOSED)
    return;
  mprpc__evloop_t *L = c->loop;
  c->state = C_CLOSED;
  c->close_reason = reason;
  c->close_err = err;
  if (c->corked) {
    /* Never touched by a flush again, so the reap may free it. Without the
     * coalescing these bytes would have been handed to the kernel when they
     * were written: do that now, once, unless the socket already failed. */
    cork_remove(c);
    if (reason != MPRPC_CLOSE_RESET && c->fd >= 0)
      (void)send_iov(c->fd, &(struct iovec){c->obuf + c->ohead, c->olen}, 1);
  }
  ev_io_stop(L->ev, &c->rio);
  ev_io_stop(L->ev, &c->wio);
  if (c->timer) {
    mprpc__evloop_timer_cancel(L, c->timer);
    c->timer = 0;
  }
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
  c->olen = 0;
  conn_unlink(c);
  c->close_next = NULL;
  if (L->close_tail)
    L->close_tail->close_next = c;
  else
    L->close_head = c;
  L->close_tail = c;
  ev_feed_event(L->ev, &L->reap, EV_CUSTOM);
}

static void conn_destroy(mprpc_conn_t *c) {
  free(c->obuf);
  mprpc_rbuf_free(&c->own_in);
  free(c);
}

bool mprpc__tcp_loop_reap(mprpc__evloop_t *L) {
  bool any = false;
  while (L->close_head) {
    mprpc_conn_t *c = L->close_head;
    L->close_head = c->close_next;
    if (!L->close_head)
      L->close_tail = NULL;
    any = true;
    if (c->has_handler && c->h.on_close)
      c->h.on_close(c, c->ud, c->close_reason, c->close_err);
    conn_destroy(c);
  }
  return any;
}

static void listener_kill(mprpc_listener_t *l);

void mprpc__tcp_loop_shutdown(mprpc__evloop_t *L) {
  for (mprpc_listener_t *l = L->listeners; l; l = l->next)
    listener_kill(l);
  while (L->conns) {
    mprpc_conn_t *c = L->conns;
    /* A lingering connection was closed by its user: keep that reason. */
    if (c->state == C_LINGER)
      conn_finish(c, MPRPC_CLOSE_LOCAL, 0);
    else
      conn_finish(c, MPRPC_CLOSE_SHUTDOWN, 0);
  }
}

/* ---- output ------------------------------------------------------------ */

static ssize_t send_iov(int fd, const struct iovec *iov, int iovcnt) {
  struct msghdr m = {0};
  m.msg_iov = (struct iovec *)iov;
  m.msg_iovlen = (size_t)iovcnt;
  for (;;) {
    ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (n >= 0 || errno != EINTR)
      return n;
  }
}

static int obuf_reserve(mprpc_conn_t *c, size_t more) {
  if (c->ohead + c->olen + more <= c->ocap)
    return 0;
  if (c->olen + more <= c->ocap) {
    memmove(c->obuf, c->obuf + c->ohead, c->olen);
    c->ohead = 0;
    return 0;
  }
  /* Doubling: 1.5x growth cost a quarter of the qps at 4 KiB x 256 in
   * flight (more regrowth copies of a busy backlog; make bench, session 6). */
  size_t cap = c->ocap ? c->ocap : 4096;
  while (cap < c->olen + more)
    cap *= 2;
  uint8_t *p = malloc(cap);
  if (!p)
    return MPRPC_ENOMEM;
  if (c->olen)
    memcpy(p, c->obuf + c->ohead, c->olen);
  free(c->obuf);
  c->obuf = p;
  c->ocap = cap;
  c->ohead = 0;
  return 0;
}

/* Appends iov[], skipping the first `skip` bytes (already sent). */
static int obuf_append(mprpc_conn_t *c, const struct iovec *iov, int iovcnt, size_t skip,
                       size_t total) {
  int rc = obuf_reserve(c, total - skip);
  if (rc != 0)
    return rc;
  uint8_t *dst = c->obuf + c->ohead + c->olen;
  for (int i = 0; i < iovcnt; i++) {
    size_t len = iov[i].iov_len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    memcpy(dst, (const uint8_t *)iov[i].iov_base + skip, len - skip);
    dst += len - skip;
    c->olen += len - skip;
    skip = 0;
  }
  return 0;
}

static void io_error(mprpc_conn_t *c, const char *op, int e) {
  int err = mprpc_err_from_errno(e);
  MPRPC_LOG_INFO("%s(%s): %s", op, c->peer, errname(e));
  conn_finish(c, c->state == C_LINGER ? MPRPC_CLOSE_LOCAL : MPRPC_CLOSE_RESET, err);
}

/* The output buffer just emptied: a large one is not kept around. */
static void obuf_drained(mprpc_conn_t *c) {
  c->ohead = 0;
  if (c->ocap > OBUF_KEEP) {
    free(c->obuf);
    c->obuf = NULL;
    c->ocap = 0;
  }
}

/* Sends the coalesced bytes of a corked connection with one sendmsg; what
 * the socket refuses becomes the backlog. Calls no user callback. */
static void cork_flush(mprpc_conn_t *c) {
  cork_remove(c);
  ssize_t n = send_iov(c->fd, &(struct iovec){c->obuf + c->ohead, c->olen}, 1);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      io_error(c, "sendmsg", errno);
      return;
    }
    n = 0;
  }
  c->ohead += (size_t)n;
  c->olen -= (size_t)n;
  if (c->olen == 0)
    obuf_drained(c);
  else
    ev_io_start(c->loop->ev, &c->wio);
}

void mprpc__tcp_loop_flush(mprpc__evloop_t *L) {
  /* cork_flush removes the head and calls no user code, so the list only
   * shrinks. */
  while (L->flush_head)
    cork_flush(L->flush_head);
}

/* A write that may not wait in a corked connection's buffer: sends the
 * coalesced bytes and iov[] together in one sendmsg, then keeps what the
 * socket refused as the backlog. The caller checked the high-water mark. */
static int cork_flush_with(mprpc_conn_t *c, const struct iovec *iov, int iovcnt, size_t total) {
  struct iovec v[1 + COMBINE_IOV];
  v[0] = (struct iovec){c->obuf + c->ohead, c->olen};
  memcpy(v + 1, iov, (size_t)iovcnt * sizeof *iov);
  cork_remove(c);
  ssize_t n = send_iov(c->fd, v, 1 + iovcnt);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      /* The bytes are accepted and dropped; on_close reports the error. */
      io_error(c, "sendmsg", errno);
      return 0;
    }
    n = 0;
  }
  size_t sent = (size_t)n, skip = 0;
  if (sent >= c->olen) {
    skip = sent - c->olen;
    c->olen = 0;
    c->ohead = 0;
    if (skip == total) {
      obuf_drained(c);
      return 0;
    }
  } else {
    c->ohead += sent;
    c->olen -= sent;
  }
  int rc = obuf_append(c, iov, iovcnt, skip, total);
  if (rc != 0) {
    MPRPC_LOG_ERROR("writev(%s): %s", c->peer, mprpc_strerror(rc));
    conn_finish(c, MPRPC_CLOSE_RESET, rc);
    return 0;
  }
  ev_io_start(c->loop->ev, &c->wio);
  return 0;
}

static void linger_done(mprpc_conn_t *c) {
  /* Everything went out: send a clean FIN, and drop what the peer sent that
   * we will never read, since closing a socket with unread input sends a
   * RST, which may make the peer discard our last bytes. (Input arriving
   * after this instant still can; a peer writing after our close asked for
   * it.) */
  shutdown(c->fd, SHUT_WR);
  uint8_t sink[4096];
  for (int i = 0; i < 64; i++) {
    ssize_t n = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n <= 0 && !(n < 0 && errno == EINTR))
      break;
  }
  conn_finish(c, MPRPC_CLOSE_LOCAL, 0);
}

static void on_write(struct ev_loop *ev, ev_io *w, int revents);

static void connect_done(mprpc_conn_t *c) {
  mprpc__evloop_t *L = c->loop;
  int soerr = 0;
  socklen_t sl = sizeof soerr;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
    soerr = errno;
  if (soerr == EINPROGRESS || soerr == EALREADY || soerr == EINTR)
    return; /* spurious wakeup */
  if (soerr != 0) {
    MPRPC_LOG_WARN("connect(%s): %s", c->peer, errname(soerr));
    conn_finish(c, MPRPC_CLOSE_CONNECT_FAILED, mprpc_err_from_errno(soerr));
    return;
  }
  mprpc__evloop_timer_cancel(L, c->timer);
  c->timer = 0;
  c->state = C_OPEN;
  if (c->olen == 0)
    ev_io_stop(L->ev, &c->wio);
  if (!c->paused)
    ev_io_start(L->ev, &c->rio);
  if (c->h.on_connect)
    c->h.on_connect(c, c->ud);
}

static void on_write(struct ev_loop *ev, ev_io *w, int revents) {
  (void)revents;
  mprpc_conn_t *c = (mprpc_conn_t *)((char *)w - offsetof(mprpc_conn_t, wio));
  if (c->state == C_CONNECTING) {
    connect_done(c);
    return;
  }
  while (c->olen > 0) {
    struct iovec iov = {c->obuf + c->ohead, c->olen};
    ssize_t n = send_iov(c->fd, &iov, 1);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      io_error(c, "sendmsg", errno);
      return;
    }
    c->ohead += (size_t)n;
    c->olen -= (size_t)n;
  }
  ev_io_stop(ev, &c->wio);
  obuf_drained(c);
  if (c->state == C_LINGER) {
    linger_done(c);
    return;
  }
  if (c->state == C_OPEN && c->h.on_writable)
    c->h.on_writable(c, c->ud);
}

/* ---- input ------------------------------------------------------------- */

static void read_some(mprpc_conn_t *c) {
  size_t budget = READ_BUDGET;
  while (c->state == C_OPEN && !c->paused && budget > 0) {
    uint8_t *where;
    int rc = mprpc_rbuf_reserve(c->in, READ_CHUNK, &where);
    if (rc != 0) {
      MPRPC_LOG_ERROR("read(%s): cannot grow the input buffer: %s", c->peer, mprpc_strerror(rc));
      conn_finish(c, MPRPC_CLOSE_RESET, rc);
      return;
    }
    size_t room = c->in->cap - c->in->end;
    if (room > budget)
      room = budget;
    ssize_t n = read(c->fd, where, room);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      io_error(c, "read", errno);
      return;
    }
    if (n == 0) {
      MPRPC_LOG_DEBUG("read(%s): EOF", c->peer);
      conn_finish(c, MPRPC_CLOSE_EOF, 0);
      return;
    }
    mprpc_rbuf_commit(c->in, (size_t)n);
    budget -= (size_t)n;
    /* The callback may close the connection (state changes, memory stays
     * until the reap), which ends this loop. */
    if (c->h.on_data)
      c->h.on_data(c, c->ud, c->in);
    if ((size_t)n < room)
      return; /* the socket is most likely empty: skip the EAGAIN read */
  }
}

static void on_read(struct ev_loop *ev, ev_io *w, int revents) {
  (void)ev;
  (void)revents;
  mprpc_conn_t *c = (mprpc_conn_t *)((char *)w - offsetof(mprpc_conn_t, rio));
  read_some(c);
  /* The replies to this batch leave now, not after the other connections'
   * callbacks. (c stays allocated until the reap, even if it closed.) */
  if (c->corked)
    cork_flush(c);
}

/* ---- seam ops: connections --------------------------------------------- */

static int set_nodelay(int fd) {
  int one = 1;
  return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void on_connect_timeout(void *arg) {
  mprpc_conn_t *c = arg;
  c->timer = 0;
  if (c->state != C_CONNECTING)
    return;
  MPRPC_LOG_WARN("connect(%s): ETIMEDOUT", c->peer);
  conn_finish(c, MPRPC_CLOSE_CONNECT_FAILED, MPRPC_ETIMEDOUT);
}

static int op_connect(void *ctx, mprpc_loop_t loop, const char *host, uint16_t port,
                      const mprpc_conn_opts_t *o, const mprpc_conn_handler_t *h, void *ud,
                      mprpc_rbuf_t *in, mprpc_conn_t **out) {
  (void)ctx;
  mprpc__evloop_t *L = mprpc__evloop_from(loop);
  if (!L || !h || !out)
    return MPRPC_EINVAL;
  if (L->stopping)
    return MPRPC_ESTATE;
  addr_t a;
  if (parse_addr(host, port, &a) != 0) {
    MPRPC_LOG_WARN("connect(%s:%u): not a numeric address", host ? host : "", (unsigned)port);
    return MPRPC_EADDR;
  }
  int fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    MPRPC_LOG_WARN("socket: %s", errname(e));
    return mprpc_err_from_errno(e);
  }
  set_nodelay(fd);
  mprpc_conn_t *c = conn_new(L, fd, o);
  if (!c) {
    close(fd);
    return MPRPC_ENOMEM;
  }
  format_addr(&a.ss, c->peer, sizeof c->peer);
  c->h = *h;
  c->has_handler = true;
  c->ud = ud;
  c->in = in ? in : &c->own_in;
  c->state = C_CONNECTING;
  uint64_t tmo = o && o->connect_timeout_ns ? o->connect_timeout_ns : DEFAULT_CONNECT_TIMEOUT_NS;
  int r;
  do {
    r = connect(fd, (struct sockaddr *)&a.ss, a.len);
  } while (r != 0 && errno == EINTR);
  if (r != 0 && errno != EINPROGRESS) {
    /* Refused right away (common on loopback): still reported through
     * on_close, deferred, like any other connect failure. */
    int e = errno;
    MPRPC_LOG_WARN("connect(%s): %s", c->peer, errname(e));
    conn_finish(c, MPRPC_CLOSE_CONNECT_FAILED, mprpc_err_from_errno(e));
  } else {
    /* Connected or in progress: either way writability reports it, so
     * on_connect is never called from inside this function. */
    c->timer = mprpc__evloop_timer_start(L, tmo, on_connect_timeout, c);
    ev_io_start(L->ev, &c->wio);
  }
  *out = c;
  return 0;
}

static void op_setup(void *ctx, mprpc_conn_t *c, const mprpc_conn_handler_t *h, void *ud,
                     mprpc_rbuf_t *in) {
  (void)ctx;
  if (!h) {
    MPRPC_LOG_ERROR("mprpc_conn_setup(%s): no handler", c->peer);
    return;
  }
  c->h = *h;
  c->has_handler = true;
  c->ud = ud;
  c->in = in ? in : &c->own_in;
  if (c->state == C_OPEN && !c->paused)
    ev_io_start(c->loop->ev, &c->rio);
}

static void op_set_reading(void *ctx, mprpc_conn_t *c, bool on) {
  (void)ctx;
  c->paused = !on;
  if (c->state != C_OPEN || !c->has_handler)
    return; /* connect_done / setup start the watcher unless paused */
  if (on)
    ev_io_start(c->loop->ev, &c->rio);
  else
    ev_io_stop(c->loop->ev, &c->rio);
}

static int op_writev(void *ctx, mprpc_conn_t *c, const struct iovec *iov, int iovcnt) {
  (void)ctx;
  if (c->state != C_OPEN && c->state != C_CONNECTING)
    return MPRPC_ECLOSED;
  if (iovcnt < 0 || (iovcnt > 0 && !iov))
    return MPRPC_EINVAL;
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  if (total == 0)
    return 0;
  if (total > c->high_water)
    return MPRPC_EHWM;
  if (c->corked) {
    if (total <= CORK_COPY_MAX && c->olen + total <= CORK_MAX &&
        c->olen + total <= c->high_water)
      return obuf_append(c, iov, iovcnt, 0, total); /* all or nothing */
    if (iovcnt <= COMBINE_IOV && c->olen + total <= c->high_water)
      return cork_flush_with(c, iov, iovcnt, total);
    cork_flush(c); /* then as if nothing had been coalesced */
    if (c->state != C_OPEN)
      return 0; /* the send failed: accepted and dropped, on_close follows */
  }
  if (c->olen > c->high_water - total)
    return MPRPC_EHWM;
  size_t sent = 0;
  if (c->olen == 0 && c->state == C_OPEN && total <= CORK_COPY_MAX &&
      mprpc__evloop_in_loop(c->loop) && !c->loop->stopping) {
    int rc = obuf_append(c, iov, iovcnt, 0, total);
    if (rc == 0) {
      cork_add(c);
      return 0;
    }
    /* No memory for the buffer: send directly instead. */
  }
  if (c->olen == 0 && c->state == C_OPEN) {
    /* Fast path: one syscall, no copy. */
    ssize_t n = send_iov(c->fd, iov, iovcnt > IOV_MAX ? IOV_MAX : iovcnt);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        /* The bytes are accepted and dropped; on_close reports the error. */
        io_error(c, "sendmsg", errno);
        return 0;
      }
      n = 0;
    }
    sent = (size_t)n;
    if (sent == total)
      return 0;
  }
  int rc = obuf_append(c, iov, iovcnt, sent, total);
  if (rc != 0) {
    /* Part of the message may be on the wire: the stream is unusable. */
    MPRPC_LOG_ERROR("writev(%s): %s", c->peer, mprpc_strerror(rc));
    conn_finish(c, MPRPC_CLOSE_RESET, rc);
    return 0;
  }
  if (c->state == C_OPEN)
    ev_io_start(c->loop->ev, &c->wio);
  return 0;
}

static size_t op_out_pending(void *ctx, mprpc_conn_t *c) {
  (void)ctx;
  return c->corked ? 0 : c->olen; /* coalesced bytes leave before the loop blocks */
}

static void on_linger_timeout(void *arg) {
  mprpc_conn_t *c = arg;
  c->timer = 0;
  if (c->state != C_LINGER)
    return;
  MPRPC_LOG_WARN("close(%s): %zu bytes still unsent after the linger time; dropped", c->peer,
                 c->olen);
  conn_finish(c, MPRPC_CLOSE_LOCAL, 0);
}

static void op_close(void *ctx, mprpc_conn_t *c, bool flush) {
  (void)ctx;
  if (c->state == C_CLOSED || c->state == C_LINGER)
    return;
  if (!flush || c->state != C_OPEN) {
    conn_finish(c, MPRPC_CLOSE_LOCAL, 0);
    return;
  }
  if (c->corked) {
    cork_flush(c); /* what the socket refuses becomes the backlog to linger on */
    if (c->state != C_OPEN)
      return;
  }
  if (c->olen == 0) {
    linger_done(c);
    return;
  }
  c->state = C_LINGER;
  ev_io_stop(c->loop->ev, &c->rio);
  c->timer = mprpc__evloop_timer_start(c->loop, LINGER_NS, on_linger_timeout, c);
}

static const char *op_peer_name(void *ctx, mprpc_conn_t *c) {
  (void)ctx;
  return c->peer;
}

/* ---- listeners --------------------------------------------------------- */

static void actx_unref(accept_ctx_t *a) {
  if (atomic_fetch_sub(&a->refs, 1) == 1) {
    pthread_mutex_destroy(&a->mu);
    free(a);
  }
}

/* Creates the connection for an accepted fd on its loop and hands it over. */
static void adopt_locked(mprpc__evloop_t *L, accept_ctx_t *a, int fd, const char *peer);

static void adopt(mprpc__evloop_t *L, accept_ctx_t *a, int fd, const char *peer) {
  /* on_accept may close the listener, dropping its reference: hold one. */
  atomic_fetch_add(&a->refs, 1);
  pthread_mutex_lock(&a->mu);
  adopt_locked(L, a, fd, peer);
  pthread_mutex_unlock(&a->mu);
  actx_unref(a);
}

static void adopt_locked(mprpc__evloop_t *L, accept_ctx_t *a, int fd, const char *peer) {
  if (L->stopping || a->closed) {
    close(fd);
    return;
  }
  set_nodelay(fd);
  mprpc_conn_t *c = conn_new(L, fd, &a->opts);
  if (!c) {
    MPRPC_LOG_ERROR("accept(%s): out of memory", peer);
    close(fd);
    return;
  }
  snprintf(c->peer, sizeof c->peer, "%s", peer);
  c->state = C_OPEN;
  a->on_accept(a->ud, c, mprpc__evloop_seam(L));
  if (c->state == C_OPEN && !c->has_handler) {
    MPRPC_LOG_ERROR("accept(%s): on_accept neither set the connection up nor closed it", peer);
    conn_finish(c, MPRPC_CLOSE_LOCAL, 0);
  }
}

typedef struct handoff {
  mprpc__evloop_t *target;
  accept_ctx_t *a;
  int fd;
  char peer[64];
} handoff_t;

static void handoff_run(void *arg) {
  handoff_t *ho = arg;
  adopt(ho->target, ho->a, ho->fd, ho->peer);
  actx_unref(ho->a);
  free(ho);
}

/* Out of descriptors: existing connections keep being served. Waiting
 * peers are refused (accepted with the spare descriptor and closed at once,
 * as nginx and HAProxy do) rather than left hanging in the backlog, and
 * accepting pauses briefly instead of spinning on a readable listener. One
 * log line per second at most. */
static void emfile_refuse(mprpc_listener_t *l, int e) {
  for (int i = 0; i < ACCEPT_BUDGET && l->spare_fd >= 0; i++) {
    close(l->spare_fd);
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
      close(fd);
      l->emfile_refused++;
    }
    l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      break;
  }
  mprpc_loop_t seam = mprpc__evloop_seam(l->loop);
  uint64_t now = mprpc_loop_now(seam);
  if (!l->emfile_logged_at || now - l->emfile_logged_at >= MPRPC_NS_PER_S) {
    l->emfile_logged_at = now;
    MPRPC_LOG_ERROR("accept(port %u): %s: refusing new connections while out of descriptors "
                    "(%llu refused so far); raise RLIMIT_NOFILE or lower max_connections",
                    (unsigned)l->port, errname(e), (unsigned long long)l->emfile_refused);
  }
  ev_io_stop(l->loop->ev, &l->io);
  ev_timer_set(&l->retry, ACCEPT_RETRY_S, 0.0);
  ev_timer_start(l->loop->ev, &l->retry);
}

static void accept_some(mprpc_listener_t *l) {
  for (int i = 0; i < ACCEPT_BUDGET && !l->dead; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == EINTR || e == ECONNABORTED || e == EPROTO)
        continue;
      if (e == EAGAIN || e == EWOULDBLOCK)
        return;
      if (e == EMFILE || e == ENFILE) {
        emfile_refuse(l, e);
        return;
      }
      MPRPC_LOG_ERROR("accept(port %u): %s", (unsigned)l->port, errname(e));
      if (e == ENOBUFS || e == ENOMEM) {
        /* Pause instead of spinning on a readable listener we cannot serve. */
        ev_io_stop(l->loop->ev, &l->io);
        ev_timer_set(&l->retry, ACCEPT_RETRY_S, 0.0);
        ev_timer_start(l->loop->ev, &l->retry);
      }
      return;
    }
    char peer[64];
    format_addr(&ss, peer, sizeof peer);
    mprpc__evloop_t *target = mprpc__evloop_from(l->loops[l->rr]);
    l->rr = (l->rr + 1) % l->nloops;
    if (target == l->loop) {
      adopt(target, l->actx, fd, peer);
      continue;
    }
    handoff_t *ho = malloc(sizeof *ho);
    if (!ho) {
      close(fd);
      continue;
    }
    ho->target = target;
    ho->a = l->actx;
    ho->fd = fd;
    memcpy(ho->peer, peer, sizeof peer);
    atomic_fetch_add(&l->actx->refs, 1);
    if (mprpc__evloop_post(target, handoff_run, ho) != 0) {
      actx_unref(l->actx);
      close(fd);
      free(ho);
    }
  }
}

static void listener_free(mprpc_listener_t *l);

static void on_accept_io(struct ev_loop *ev, ev_io *w, int revents) {
  (void)ev;
  (void)revents;
  mprpc_listener_t *l = (mprpc_listener_t *)((char *)w - offsetof(mprpc_listener_t, io));
  l->in_accept = true;
  accept_some(l);
  l->in_accept = false;
  if (l->orphan)
    listener_free(l);
}

static void on_accept_retry(struct ev_loop *ev, ev_timer *w, int revents) {
  (void)revents;
  mprpc_listener_t *l = (mprpc_listener_t *)((char *)w - offsetof(mprpc_listener_t, retry));
  if (!l->dead)
    ev_io_start(ev, &l->io);
}

/* Stops accepting and closes the fd. The handle stays on its loop's list
 * until listener_close or, failing that, the loop's free. */
static void listener_kill(mprpc_listener_t *l) {
  if (l->dead)
    return;
  mprpc__evloop_t *L = l->loop;
  l->dead = true;
  pthread_mutex_lock(&l->actx->mu);
  l->actx->closed = true;
  pthread_mutex_unlock(&l->actx->mu);
  ev_io_stop(L->ev, &l->io);
  ev_timer_stop(L->ev, &l->retry);
  close(l->fd);
  l->fd = -1;
  if (l->spare_fd >= 0)
    close(l->spare_fd);
  l->spare_fd = -1;
}

static void listener_free(mprpc_listener_t *l) {
  if (l->linked) {
    mprpc__evloop_t *L = l->loop;
    if (l->prev)
      l->prev->next = l->next;
    else
      L->listeners = l->next;
    if (l->next)
      l->next->prev = l->prev;
  }
  actx_unref(l->actx);
  free(l->loops);
  free(l);
}

static void listener_start(void *arg) {
  mprpc_listener_t *l = arg;
  mprpc__evloop_t *L = l->loop;
  l->start_posted = false;
  if (l->orphan) {
    listener_free(l);
    return;
  }
  if (l->linked)
    return;
  l->linked = true;
  l->prev = NULL;
  l->next = L->listeners;
  if (L->listeners)
    L->listeners->prev = l;
  L->listeners = l;
  if (L->stopping)
    listener_kill(l);
  if (!l->dead)
    ev_io_start(L->ev, &l->io);
}

void mprpc__tcp_loop_free(mprpc__evloop_t *L) {
  while (L->listeners) {
    mprpc_listener_t *l = L->listeners;
    listener_kill(l);
    listener_free(l);
  }
}

static int op_listen(void *ctx, const mprpc_listen_opts_t *o, mprpc_listener_t **out) {
  (void)ctx;
  if (!o || !out || !o->loops || o->nloops == 0 || !o->on_accept)
    return MPRPC_EINVAL;
  for (size_t i = 0; i < o->nloops; i++)
    if (!mprpc__evloop_from(o->loops[i]))
      return MPRPC_EINVAL;
  addr_t a;
  if (parse_addr(o->host, o->port, &a) != 0) {
    MPRPC_LOG_ERROR("listen(%s:%u): not a numeric address", o->host, (unsigned)o->port);
    return MPRPC_EADDR;
  }
  char name[80];
  format_addr(&a.ss, name, sizeof name);
  int rc = MPRPC_ENOMEM;
  int fd = -1;
  mprpc_listener_t *l = calloc(1, sizeof *l);
  if (!l)
    goto fail;
  l->spare_fd = -1;
  l->loops = malloc(o->nloops * sizeof *l->loops);
  if (!l->loops)
    goto fail;
  memcpy(l->loops, o->loops, o->nloops * sizeof *l->loops);
  l->nloops = o->nloops;
  l->loop = mprpc__evloop_from(o->loops[0]);
  accept_ctx_t *ac = calloc(1, sizeof *ac);
  if (!ac)
    goto fail;
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
  int mrc = pthread_mutex_init(&ac->mu, &ma);
  pthread_mutexattr_destroy(&ma);
  if (mrc != 0) {
    free(ac);
    goto fail;
  }
  atomic_init(&ac->refs, 1);
  l->actx = ac;
  l->actx->on_accept = o->on_accept;
  l->actx->ud = o->ud;
  l->actx->opts = o->conn;
  const char *op = "socket";
  fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    goto sysfail;
  int one = 1;
  op = "setsockopt(SO_REUSEADDR)";
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
    goto sysfail;
  op = "bind";
  if (bind(fd, (struct sockaddr *)&a.ss, a.len) != 0)
    goto sysfail;
  op = "listen";
  if (listen(fd, SOMAXCONN) != 0)
    goto sysfail;
  struct sockaddr_storage bound;
  socklen_t bl = sizeof bound;
  op = "getsockname";
  if (getsockname(fd, (struct sockaddr *)&bound, &bl) != 0)
    goto sysfail;
  l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                              : ((struct sockaddr_in *)&bound)->sin_port);
  l->fd = fd;
  l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ev_io_init(&l->io, on_accept_io, fd, EV_READ);
  ev_init(&l->retry, on_accept_retry);
  if (mprpc__evloop_in_loop(l->loop) || !atomic_load(&l->loop->threaded)) {
    listener_start(l); /* no thread runs the loop: nothing to race with */
  } else {
    l->start_posted = true;
    rc = mprpc__evloop_post(l->loop, listener_start, l);
    if (rc != 0) {
      MPRPC_LOG_ERROR("listen(%s): the acceptor loop is stopped", name);
      goto fail;
    }
  }
  *out = l;
  return 0;
sysfail:
  rc = mprpc_err_from_errno(errno);
  MPRPC_LOG_ERROR("%s(%s): %s", op, name, mprpc_err_name(rc));
fail:
  if (fd >= 0)
    close(fd);
  if (l) {
    if (l->actx)
      actx_unref(l->actx);
    free(l->loops);
    free(l);
  }
  return rc;
}

static uint16_t op_listener_port(void *ctx, mprpc_listener_t *l) {
  (void)ctx;
  return l->port;
}

typedef struct sync_close {
  mprpc_listener_t *l;
  mprpc_loop_t loop;
  void *waiter;
} sync_close_t;

/* On the loop's thread, or when no thread runs the loop. */
static void listener_release(mprpc_listener_t *l) {
  listener_kill(l);
  if (l->start_posted || l->in_accept) {
    /* Closed on the loop thread before the queued start ran, or from an
     * on_accept: the caller up the stack still holds the pointer and frees
     * it when done. */
    l->orphan = true;
    return;
  }
  listener_free(l);
}

static void close_on_loop(void *arg) {
  sync_close_t *s = arg;
  listener_release(s->l);
  s->loop.vt->waiter_wake(s->loop.ctx, s->waiter);
}

static void op_listener_close(void *ctx, mprpc_listener_t *l) {
  (void)ctx;
  if (!l)
    return;
  mprpc__evloop_t *L = l->loop;
  if (!mprpc__evloop_in_loop(L) && atomic_load(&L->threaded)) {
    /* Off the acceptor thread (allowed for convenience): run the close on
     * the loop and wait for it, so no on_accept starts after we return. */
    mprpc_loop_t loop = mprpc__evloop_seam(L);
    void *w = loop.vt->waiter_new(loop.ctx);
    sync_close_t s = {l, loop, w};
    int rc = w ? mprpc__evloop_post(L, close_on_loop, &s) : MPRPC_ENOMEM;
    if (rc == 0)
      loop.vt->waiter_wait(loop.ctx, w);
    loop.vt->waiter_free(loop.ctx, w);
    if (rc == 0)
      return;
    /* The loop is draining (its group is stopping on another thread): the
     * listener is already dead; wait for the thread to finish with it. */
    for (int i = 0; i < 10000 && atomic_load(&L->threaded); i++)
      usleep(1000);
  }
  listener_release(l);
}

static const mprpc_transport_ops_t tcp_ops = {
    .listen = op_listen,
    .listener_port = op_listener_port,
    .listener_close = op_listener_close,
    .connect = op_connect,
    .setup = op_setup,
    .writev = op_writev,
    .out_pending = op_out_pending,
    .close = op_close,
    .peer_name = op_peer_name,
    .set_reading = op_set_reading,
};

mprpc_transport_t mprpc_tcp_transport(void) {
  return (mprpc_transport_t){.vt = &tcp_ops, .ctx = NULL};
}
