/*
 * Transport seam: byte streams between endpoints.
 *
 * The production implementation is non-blocking TCP driven by libev
 * (src/rt/tcp.c); the simulator's is an in-memory network with latency,
 * chunking, stalls, resets and partitions (sim/). Protocol code (provider,
 * channel) only ever talks to this seam.
 *
 * Lifetime and threading, for every implementation:
 * - A connection belongs to one loop; every op on it and every callback for
 *   it happens on that loop's thread.
 * - The transport owns mprpc_conn_t. It stays valid until its handler's
 *   on_close has returned; on_close is called exactly once per connection,
 *   whatever ended it (peer EOF, reset, failed connect, local close, loop
 *   shutdown), and never from inside a call the user made (it is deferred to
 *   the loop), so it is always safe to call close() from any callback.
 *   After on_close returns the pointer is dead; no callback follows.
 * - Inbound bytes are appended to the caller's mprpc_rbuf_t, then on_data
 *   runs; the caller consumes what it parsed. The rbuf stays the caller's.
 * - writev() either accepts all the bytes (sending now or buffering them;
 *   the iovecs may be reused as soon as it returns) or, when the buffered
 *   amount would pass the high-water mark, accepts none and returns
 *   MPRPC_EHWM. on_writable fires when a backlog drains completely.
 */
#ifndef MPRPC_TRANSPORT_H
#define MPRPC_TRANSPORT_H

#include "mprpc/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "mprpc/buf.h"
#include "mprpc/loop.h"

MPRPC_BEGIN_DECLS

typedef struct mprpc_conn mprpc_conn_t;
typedef struct mprpc_listener mprpc_listener_t;

typedef enum mprpc_close_reason {
  MPRPC_CLOSE_EOF = 1,        /* peer closed its sending side */
  MPRPC_CLOSE_RESET,          /* reset or I/O error (err says which) */
  MPRPC_CLOSE_CONNECT_FAILED, /* outgoing connect refused/timed out (err) */
  MPRPC_CLOSE_LOCAL,          /* close() was called */
  MPRPC_CLOSE_SHUTDOWN,       /* the loop or transport is shutting down */
} mprpc_close_reason_t;

const char *mprpc_close_reason_name(int reason);

typedef struct mprpc_conn_handler {
  /* Outgoing connections only: the connection is established. */
  void (*on_connect)(mprpc_conn_t *c, void *ud);
  /* New bytes were appended to the connection's rbuf. */
  void (*on_data)(mprpc_conn_t *c, void *ud, mprpc_rbuf_t *in);
  /* The write backlog drained completely (optional). */
  void (*on_writable)(mprpc_conn_t *c, void *ud);
  /* Terminal, exactly once. err is 0 for EOF/LOCAL/SHUTDOWN, else MPRPC_E*. */
  void (*on_close)(mprpc_conn_t *c, void *ud, int reason, int err);
} mprpc_conn_handler_t;

typedef struct mprpc_conn_opts {
  size_t high_water;          /* max buffered outbound bytes; 0 = 64 MiB */
  uint64_t connect_timeout_ns; /* 0 = 3 s */
} mprpc_conn_opts_t;

/* Called on `loop` (the connection's loop) for each accepted connection. The
 * callee must call mprpc_conn_setup() before returning, or close it. */
typedef void (*mprpc_accept_cb)(void *ud, mprpc_conn_t *c, mprpc_loop_t loop);

typedef struct mprpc_listen_opts {
  const char *host; /* numeric IPv4/IPv6 or "localhost"; NULL = 0.0.0.0 */
  uint16_t port;    /* 0 picks a free port (see listener_port) */
  const mprpc_loop_t *loops; /* accepted connections are spread over these */
  size_t nloops;             /* round robin; loops[0] runs the acceptor */
  mprpc_accept_cb on_accept;
  void *ud;
  mprpc_conn_opts_t conn;
} mprpc_listen_opts_t;

typedef struct mprpc_transport_ops {
  int (*listen)(void *ctx, const mprpc_listen_opts_t *opts, mprpc_listener_t **out);
  uint16_t (*listener_port)(void *ctx, mprpc_listener_t *l);
  /* On loops[0]'s thread. No on_accept after it returns; accepted
   * connections are not affected. Frees the listener. */
  void (*listener_close)(void *ctx, mprpc_listener_t *l);
  /* On `loop`'s thread. 0 means on_connect or on_close will follow; an error
   * return means no callback will ever run and *out is untouched. */
  int (*connect)(void *ctx, mprpc_loop_t loop, const char *host, uint16_t port,
                 const mprpc_conn_opts_t *opts, const mprpc_conn_handler_t *h, void *ud,
                 mprpc_rbuf_t *in, mprpc_conn_t **out);
  void (*setup)(void *ctx, mprpc_conn_t *c, const mprpc_conn_handler_t *h, void *ud,
                mprpc_rbuf_t *in);
  int (*writev)(void *ctx, mprpc_conn_t *c, const struct iovec *iov, int iovcnt);
  size_t (*out_pending)(void *ctx, mprpc_conn_t *c);
  /* Idempotent. flush: send what is buffered first (bounded by the
   * implementation's linger time), then close. on_close follows. */
  void (*close)(void *ctx, mprpc_conn_t *c, bool flush);
  /* "host:port" of the peer; static storage owned by the connection. */
  const char *(*peer_name)(void *ctx, mprpc_conn_t *c);
  /* Optional (NULL: reading cannot be paused). on = false stops reading
   * from c: no on_data runs until reading is resumed with on = true, and
   * the peer's further bytes wait in the network (TCP's flow control then
   * pushes back on the sender). Back-pressure for the provider's memory
   * budget. On c's loop thread; idempotent; ignored once c is closing. */
  void (*set_reading)(void *ctx, mprpc_conn_t *c, bool on);

  /* Optional ops (NULL in transports without them: TCP, the simulator);
   * call them through the wrappers below, which return NULL for NULL ops. */
  /* The peer's authenticated identity, or NULL when it has none (plain
   * connection, no certificate, not verified). For TLS (src/rt/tls.c):
   * "subject=<RFC 2253 DN, in certificate order>;san=<DNS:x,IP:y,...>".
   * Owned by the connection, stable from the first on_data (or on_connect)
   * until on_close has returned. */
  const char *(*peer_identity)(void *ctx, mprpc_conn_t *c);
  /* Why the connection failed, in words (with the library's own text, e.g.
   * OpenSSL's reason), or NULL when there is nothing to add to the error
   * code. Owned by the connection; meant to be read in on_close. */
  const char *(*error_text)(void *ctx, mprpc_conn_t *c);
} mprpc_transport_ops_t;

typedef struct mprpc_transport {
  const mprpc_transport_ops_t *vt;
  void *ctx;
} mprpc_transport_t;

static inline int mprpc_transport_listen(mprpc_transport_t t, const mprpc_listen_opts_t *o,
                                         mprpc_listener_t **out) {
  return t.vt->listen(t.ctx, o, out);
}
static inline uint16_t mprpc_listener_port(mprpc_transport_t t, mprpc_listener_t *l) {
  return t.vt->listener_port(t.ctx, l);
}
static inline void mprpc_listener_close(mprpc_transport_t t, mprpc_listener_t *l) {
  t.vt->listener_close(t.ctx, l);
}
static inline int mprpc_conn_connect(mprpc_transport_t t, mprpc_loop_t loop, const char *host,
                                     uint16_t port, const mprpc_conn_opts_t *o,
                                     const mprpc_conn_handler_t *h, void *ud, mprpc_rbuf_t *in,
                                     mprpc_conn_t **out) {
  return t.vt->connect(t.ctx, loop, host, port, o, h, ud, in, out);
}
static inline void mprpc_conn_setup(mprpc_transport_t t, mprpc_conn_t *c,
                                    const mprpc_conn_handler_t *h, void *ud, mprpc_rbuf_t *in) {
  t.vt->setup(t.ctx, c, h, ud, in);
}
static inline int mprpc_conn_writev(mprpc_transport_t t, mprpc_conn_t *c, const struct iovec *iov,
                                    int iovcnt) {
  return t.vt->writev(t.ctx, c, iov, iovcnt);
}
static inline size_t mprpc_conn_out_pending(mprpc_transport_t t, mprpc_conn_t *c) {
  return t.vt->out_pending(t.ctx, c);
}
static inline void mprpc_conn_close(mprpc_transport_t t, mprpc_conn_t *c, bool flush) {
  t.vt->close(t.ctx, c, flush);
}
/* false when the transport cannot pause reading (nothing was done). */
static inline bool mprpc_conn_set_reading(mprpc_transport_t t, mprpc_conn_t *c, bool on) {
  if (!t.vt->set_reading)
    return false;
  t.vt->set_reading(t.ctx, c, on);
  return true;
}
static inline const char *mprpc_conn_peer(mprpc_transport_t t, mprpc_conn_t *c) {
  return t.vt->peer_name(t.ctx, c);
}
static inline const char *mprpc_conn_peer_identity(mprpc_transport_t t, mprpc_conn_t *c) {
  return t.vt->peer_identity ? t.vt->peer_identity(t.ctx, c) : NULL;
}
static inline const char *mprpc_conn_error_text(mprpc_transport_t t, mprpc_conn_t *c) {
  return t.vt->error_text ? t.vt->error_text(t.ctx, c) : NULL;
}

MPRPC_END_DECLS
#endif
