/*
 * TLS over any transport, with OpenSSL memory BIOs: the connections of the
 * decorator (the context, its files and counters are src/rt/tls_ctx.c,
 * the only other file that includes OpenSSL); see include/mprpc/tls.h for
 * the contract.
 *
 * A TLS connection (tconn_t, handed out as an opaque mprpc_conn_t *) owns
 * one inner connection whose handler is ours:
 *
 *   inner on_data: ciphertext lands in tc->raw -> BIO_write(rbio) ->
 *     SSL_do_handshake / SSL_read -> plaintext appended to the outer rbuf
 *     -> outer on_data.
 *   outer writev: plaintext -> the cork (copied, like TCP's coalescing
 *     buffer) -> at the end of the inner callback that wrote it, or from a
 *     zero-delay timer for writes made outside one, SSL_write of all of it
 *     (full 16 KiB records plus one tail record: never one record per
 *     frame, whose fixed cost dominates small calls) -> the records are
 *     drained from wbio into inner writev. Large writes skip the cork.
 *   inner on_close: outer on_close (exactly once, with our reason when TLS
 *     failed), then the SSL and the tconn are freed.
 *
 * Every outer callback runs from inside an inner callback or a loop timer,
 * never from inside a call the user made, so the seam's rules carry over.
 *
 * High-water mark: the decorator enforces the caller's mark on plaintext.
 * The inner connection gets an effectively unlimited one, because records
 * are larger than the bytes they carry; what is "pending" is the plaintext
 * of writes whose records are not all handed to the network yet (a FIFO of
 * marks maps inner out_pending back to plaintext), which is what the
 * channel's "may have run" accounting needs.
 *
 * The SSL_CTX pointer and the client session cache are shared by loops on
 * several threads: both are guarded by ctx->mu; a connection takes its own
 * reference to the SSL_CTX (SSL_new), so a reload never pulls it away.
 * OpenSSL's error queue is per thread: it is cleared before each operation
 * on a connection, so one connection's error never shows up on another.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mprpc/buf.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/tls.h"
#include "rt/tls_internal.h"

#define DEFAULT_HWM ((size_t)64 << 20)
#define INNER_HWM (SIZE_MAX / 4) /* ours is enforced on plaintext */
#define RECORD_MAX (16u * 1024u) /* TLS plaintext per record */
#define DRAIN_CHUNK (64u * 1024u)
#define CORK_MAX (4u * RECORD_MAX) /* plaintext held for one encryption */
#define READ_CHUNK (16u * 1024u)
#define DELIVER_EVERY (64u * 1024u) /* on_data after this much plaintext */
#define TLS_HANDSHAKE_BYTE 0x16

/* ---- connections ------------------------------------------------------------ */

enum tstate {
  T_CONNECTING, /* client: the inner connection is not up yet */
  T_SNIFF,      /* server, OPTIONAL/REQUIRED: waiting for the first byte */
  T_HANDSHAKE,
  T_OPEN,
  T_PLAIN, /* pass-through */
};

typedef struct mark {
  uint64_t wire_end;  /* the write's last record ends here in the stream */
  uint64_t plain_end; /* and its plaintext here */
} mark_t;

typedef struct tconn {
  mprpc_tls_ctx_t *ctx;
  mprpc_transport_t inner_t;
  mprpc_conn_t *inner;
  mprpc_loop_t loop;
  bool server;
  int state;
  bool closing;     /* close() was called or TLS failed: no more writes */
  bool dead;        /* the inner on_close ran */
  bool failed;      /* TLS failed: report fail_reason / MPRPC_ETLS */
  bool connected;   /* client: outer on_connect was called */
  bool has_handler; /* outer handler set (connect, or setup) */
  bool got_bytes;   /* the peer sent at least one byte */
  bool peer_eof;    /* the peer sent close_notify */
  int fail_reason;
  int local_err;    /* closed for a local fault (no memory, inner refused) */
  SSL *ssl;
  BIO *rbio, *wbio; /* owned by ssl */
  mprpc_rbuf_t raw; /* ciphertext from the inner connection */
  mprpc_conn_handler_t h;
  void *ud;
  mprpc_rbuf_t *in;
  mprpc_rbuf_t own_in;
  uint8_t *pre; /* plaintext written before the handshake completed */
  size_t pre_len, pre_cap;
  size_t hwm;
  uint64_t timer;
  uint8_t *cork; /* plaintext written but not encrypted yet (T_OPEN) */
  size_t cork_len, cork_cap;
  uint64_t cork_timer; /* flushes a cork filled outside our callbacks */
  bool in_cb;          /* inside an inner callback: it flushes the cork */
  uint64_t wire_total, plain_total, plain_done;
  mark_t *marks; /* FIFO of writes with records still in the inner backlog */
  size_t mhead, mlen, mcap;
  char *identity;
  char sess_key[160];
  char err[ERRTEXT];
} tconn_t;

typedef struct tlistener {
  mprpc_tls_ctx_t *ctx;
  mprpc_transport_t inner_t;
  mprpc_listener_t *inner;
  mprpc_accept_cb on_accept;
  void *ud;
  size_t hwm;
} tlistener_t;

static mprpc_conn_t *outer_of(tconn_t *tc) { return (mprpc_conn_t *)(void *)tc; }
static tconn_t *tc_of(mprpc_conn_t *c) { return (tconn_t *)(void *)c; }

static const mprpc_conn_handler_t inner_handler;

static _Thread_local uint8_t drain_buf[DRAIN_CHUNK];
static _Thread_local uint8_t gather_buf[RECORD_MAX];

static void tc_free(tconn_t *tc) {
  /* OpenSSL forgets (marks unresumable) the session of an SSL freed
   * without a close_notify sent. A connection that ended without a TLS
   * failure keeps its session for the next connection to resume. */
  if (tc->ssl && tc->state == T_OPEN && !tc->failed)
    SSL_set_shutdown(tc->ssl, SSL_get_shutdown(tc->ssl) | SSL_SENT_SHUTDOWN);
  SSL_free(tc->ssl);
  mprpc_rbuf_free(&tc->raw);
  mprpc_rbuf_free(&tc->own_in);
  free(tc->pre);
  free(tc->cork);
  free(tc->marks);
  free(tc->identity);
  mprpc__tls_ctx_unref(tc->ctx);
  free(tc);
}

static tconn_t *tc_new(mprpc_tls_ctx_t *x, bool server, mprpc_loop_t loop, size_t hwm) {
  tconn_t *tc = calloc(1, sizeof *tc);
  if (!tc)
    return NULL;
  mprpc__tls_ctx_ref(x);
  tc->ctx = x;
  tc->inner_t = x->inner;
  tc->server = server;
  tc->loop = loop;
  tc->hwm = hwm ? hwm : DEFAULT_HWM;
  mprpc_rbuf_init(&tc->raw);
  mprpc_rbuf_init(&tc->own_in);
  return tc;
}

static void cork_drop(tconn_t *tc) {
  tc->cork_len = 0;
  if (tc->cork_timer) {
    mprpc_timer_cancel(tc->loop, tc->cork_timer);
    tc->cork_timer = 0;
  }
}

static const char *peer_of(tconn_t *tc) {
  return tc->inner ? mprpc_conn_peer(tc->inner_t, tc->inner) : "?";
}

/* One WARN line per failure, at most LOG_PER_SEC per context and second;
 * the count of the others is reported with the next line that gets out. */
static void log_failure(tconn_t *tc, const char *fmt, const char *a, const char *b) {
  mprpc_tls_ctx_t *x = tc->ctx;
  uint64_t sec = mprpc_loop_now(tc->loop) / MPRPC_NS_PER_S;
  unsigned dropped = 0;
  bool print;
  pthread_mutex_lock(&x->mu);
  snprintf(x->last_err, sizeof x->last_err, "%s", tc->err);
  if (sec != x->log_window) {
    x->log_window = sec;
    x->log_lines = 0;
  }
  print = x->log_lines < LOG_PER_SEC;
  if (print) {
    x->log_lines++;
    dropped = x->log_dropped;
    x->log_dropped = 0;
  } else {
    x->log_dropped++;
  }
  pthread_mutex_unlock(&x->mu);
  if (!print)
    return;
  char line[ERRTEXT * 2];
  snprintf(line, sizeof line, fmt, a, b);
  if (dropped)
    MPRPC_LOG_WARN("%s (and %u more TLS failures not logged)", line, dropped);
  else
    MPRPC_LOG_WARN("%s", line);
}

/* Ends the connection for a local fault; on_close reports RESET + err. */
static void tc_abort(tconn_t *tc, int err) {
  if (tc->closing || tc->dead)
    return;
  tc->closing = true;
  tc->local_err = err;
  if (tc->timer) {
    mprpc_timer_cancel(tc->loop, tc->timer);
    tc->timer = 0;
  }
  cork_drop(tc);
  mprpc_conn_close(tc->inner_t, tc->inner, false);
}

/* Hands everything in wbio to the inner connection. 0, or the inner
 * writev's error (the stream is then unusable). */
static int drain_wbio(tconn_t *tc) {
  if (!tc->wbio)
    return 0;
  for (;;) {
    size_t pend = BIO_ctrl_pending(tc->wbio);
    if (pend == 0)
      return 0;
    int n = BIO_read(tc->wbio, drain_buf, (int)(pend < DRAIN_CHUNK ? pend : DRAIN_CHUNK));
    if (n <= 0)
      return 0;
    struct iovec v = {drain_buf, (size_t)n};
    int rc = mprpc_conn_writev(tc->inner_t, tc->inner, &v, 1);
    if (rc != 0)
      return rc;
    tc->wire_total += (uint64_t)n;
    atomic_fetch_add(&tc->ctx->wire_out, (uint64_t)n);
  }
}

/* Ends the connection because of a TLS failure: counted, logged once,
 * reported by the inner on_close. Whatever alert OpenSSL queued goes out
 * first (it tells the peer why). */
static void tc_fail(tconn_t *tc, int reason, const char *text) {
  if (tc->closing || tc->dead)
    return;
  tc->closing = true;
  tc->failed = true;
  tc->fail_reason = reason;
  if (text != tc->err)
    snprintf(tc->err, sizeof tc->err, "%s", text);
  if (tc->timer) {
    mprpc_timer_cancel(tc->loop, tc->timer);
    tc->timer = 0;
  }
  atomic_fetch_add(&tc->ctx->failures[reason], 1);
  log_failure(tc,
              tc->state == T_OPEN ? "tls: connection with %s failed: %s"
                                  : "tls: handshake with %s failed: %s",
              peer_of(tc), tc->err);
  bool flush = drain_wbio(tc) == 0;
  mprpc_conn_close(tc->inner_t, tc->inner, flush);
}

/* Classifies the failure OpenSSL just reported and writes its text. */
static int classify(tconn_t *tc, int ssl_err) {
  char why[WHYTEXT];
  unsigned long first = ERR_peek_error();
  int lr = ERR_GET_REASON(first);
  mprpc__tls_ssl_errors(why, sizeof why);
  long v = tc->ssl ? SSL_get_verify_result(tc->ssl) : X509_V_OK;
  if (v != X509_V_OK) {
    snprintf(tc->err, sizeof tc->err, "certificate verify failed: %s (%s)",
             X509_verify_cert_error_string(v), why);
    return MPRPC_TLS_FAIL_VERIFY;
  }
  if (ssl_err == SSL_ERROR_SYSCALL && first == 0)
    snprintf(tc->err, sizeof tc->err, "unexpected end of the TLS stream");
  else
    snprintf(tc->err, sizeof tc->err, "%s", why);
  if (lr == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE || lr == SSL_R_CERTIFICATE_VERIFY_FAILED)
    return MPRPC_TLS_FAIL_VERIFY;
  if (lr >= SSL_AD_REASON_OFFSET && lr < SSL_AD_REASON_OFFSET + 256)
    return MPRPC_TLS_FAIL_PEER_ALERT;
  return MPRPC_TLS_FAIL_PROTOCOL;
}

/* ---- output ------------------------------------------------------------------- */

static int mark_push(tconn_t *tc) {
  if (tc->mlen == tc->mcap) {
    size_t cap = tc->mcap ? tc->mcap * 2 : 16;
    mark_t *m = malloc(cap * sizeof *m);
    if (!m)
      return MPRPC_ENOMEM;
    for (size_t i = 0; i < tc->mlen; i++)
      m[i] = tc->marks[(tc->mhead + i) % tc->mcap];
    free(tc->marks);
    tc->marks = m;
    tc->mcap = cap;
    tc->mhead = 0;
  }
  tc->marks[(tc->mhead + tc->mlen) % tc->mcap] = (mark_t){tc->wire_total, tc->plain_total};
  tc->mlen++;
  return 0;
}

/* Plaintext whose records are not all with the network yet. */
static size_t plain_pending(tconn_t *tc) {
  size_t inner = mprpc_conn_out_pending(tc->inner_t, tc->inner);
  if (inner == 0) {
    tc->mlen = 0;
    tc->plain_done = tc->plain_total;
  } else {
    uint64_t sent = tc->wire_total > inner ? tc->wire_total - inner : 0;
    while (tc->mlen && tc->marks[tc->mhead].wire_end <= sent) {
      tc->plain_done = tc->marks[tc->mhead].plain_end;
      tc->mhead = (tc->mhead + 1) % tc->mcap;
      tc->mlen--;
    }
  }
  return (size_t)(tc->plain_total - tc->plain_done);
}

static int ssl_write_all(tconn_t *tc, const uint8_t *p, size_t n) {
  while (n > 0) {
    int ask = n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
    ERR_clear_error();
    int w = SSL_write(tc->ssl, p, ask);
    if (w <= 0) {
      tc_fail(tc, classify(tc, SSL_get_error(tc->ssl, w)), tc->err);
      return MPRPC_ETLS;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Encrypts iov[] as full records plus one tail record (OpenSSL cuts a long
 * write into 16 KiB records; short pieces are gathered first, so a frame's
 * header and body share a record), then hands the records on. The caller
 * checked the state and the high-water mark. Returns 0 when the bytes were
 * accepted (if TLS or the inner transport failed meanwhile they are dropped
 * and on_close reports it, as TCP does). */
static int write_plain(tconn_t *tc, const struct iovec *iov, int iovcnt, size_t total) {
  size_t g = 0; /* bytes in gather_buf */
  int rc = 0;
  if (iovcnt == 1) { /* contiguous already: OpenSSL cuts the records */
    rc = ssl_write_all(tc, iov[0].iov_base, iov[0].iov_len);
    iovcnt = 0;
  }
  for (int i = 0; i < iovcnt && rc == 0; i++) {
    const uint8_t *p = iov[i].iov_base;
    size_t n = iov[i].iov_len;
    if (g > 0) {
      size_t take = n < RECORD_MAX - g ? n : RECORD_MAX - g;
      memcpy(gather_buf + g, p, take);
      g += take, p += take, n -= take;
      if (g == RECORD_MAX) {
        rc = ssl_write_all(tc, gather_buf, g);
        g = 0;
      }
    }
    if (rc == 0 && n >= RECORD_MAX) {
      size_t whole = n - n % RECORD_MAX;
      rc = ssl_write_all(tc, p, whole);
      p += whole, n -= whole;
    }
    if (rc == 0 && n > 0) {
      memcpy(gather_buf + g, p, n);
      g += n;
    }
  }
  if (rc == 0 && g > 0)
    rc = ssl_write_all(tc, gather_buf, g);
  if (rc != 0)
    return 0; /* failed: tc_fail closed it, on_close follows */
  tc->plain_total += total;
  atomic_fetch_add(&tc->ctx->app_out, total);
  rc = drain_wbio(tc);
  if (rc == 0) {
    if (mprpc_conn_out_pending(tc->inner_t, tc->inner) == 0) {
      tc->mlen = 0; /* everything handed over: nothing to map back */
      tc->plain_done = tc->plain_total;
    } else {
      rc = mark_push(tc);
    }
  }
  if (rc != 0) {
    MPRPC_LOG_ERROR("tls: writev(%s): %s", peer_of(tc), mprpc_strerror(rc));
    tc_abort(tc, rc);
  }
  return 0;
}

/* Encrypts and hands on what the cork holds. A large cork is let go once
 * it drained, so an idle connection keeps no more than a record's worth. */
static void cork_flush(tconn_t *tc) {
  if (tc->cork_timer) {
    mprpc_timer_cancel(tc->loop, tc->cork_timer);
    tc->cork_timer = 0;
  }
  if (tc->cork_len == 0 || tc->state != T_OPEN)
    return;
  struct iovec v = {tc->cork, tc->cork_len};
  size_t n = tc->cork_len;
  tc->cork_len = 0;
  write_plain(tc, &v, 1, n);
  if (tc->cork_cap > RECORD_MAX) {
    free(tc->cork);
    tc->cork = NULL;
    tc->cork_cap = 0;
  }
}

static void on_cork_timer(void *arg) {
  tconn_t *tc = arg;
  tc->cork_timer = 0;
  if (!tc->closing && !tc->dead)
    cork_flush(tc);
}

/* iov[] (total bytes) appended to a growable buffer: the plaintext held
 * before the handshake and the cork. */
static int bytes_append(uint8_t **buf, size_t *len, size_t *cap, const struct iovec *iov,
                        int iovcnt, size_t total) {
  if (*len + total > *cap) {
    size_t c = *cap ? *cap : 4096;
    while (c < *len + total)
      c *= 2;
    uint8_t *p = realloc(*buf, c);
    if (!p)
      return MPRPC_ENOMEM;
    *buf = p;
    *cap = c;
  }
  for (int i = 0; i < iovcnt; i++) {
    if (iov[i].iov_len)
      memcpy(*buf + *len, iov[i].iov_base, iov[i].iov_len);
    *len += iov[i].iov_len;
  }
  return 0;
}

/* Plaintext into the cork (total + cork_len <= CORK_MAX); flushed when the
 * inner callback we are in returns, or by a zero-delay timer. */
static int cork_append(tconn_t *tc, const struct iovec *iov, int iovcnt, size_t total) {
  int rc = bytes_append(&tc->cork, &tc->cork_len, &tc->cork_cap, iov, iovcnt, total);
  if (rc != 0)
    return rc;
  if (!tc->in_cb && !tc->cork_timer) {
    tc->cork_timer = mprpc_timer_start(tc->loop, 0, on_cork_timer, tc);
    if (!tc->cork_timer)
      cork_flush(tc); /* no timer: no coalescing, nothing lost */
  }
  return 0;
}


/* ---- input -------------------------------------------------------------------- */

static void deliver(tconn_t *tc) {
  if (tc->has_handler && tc->h.on_data && !tc->dead)
    tc->h.on_data(outer_of(tc), tc->ud, tc->in);
}

/* The peer sent close_notify: like TCP's EOF, it ends the connection. */
static void peer_closed(tconn_t *tc) {
  if (tc->closing)
    return;
  tc->closing = true;
  tc->peer_eof = true;
  ERR_clear_error();
  SSL_shutdown(tc->ssl); /* our close_notify */
  ERR_clear_error();
  bool flush = drain_wbio(tc) == 0;
  mprpc_conn_close(tc->inner_t, tc->inner, flush);
}

static void read_app(tconn_t *tc) {
  size_t got = 0;
  bool eof = false;
  while (tc->state == T_OPEN && !tc->closing) {
    uint8_t *where;
    int rc = mprpc_rbuf_reserve(tc->in, READ_CHUNK, &where);
    if (rc != 0) {
      MPRPC_LOG_ERROR("tls: read(%s): cannot grow the input buffer: %s", peer_of(tc),
                      mprpc_strerror(rc));
      tc_abort(tc, rc);
      return;
    }
    size_t room = tc->in->cap - tc->in->end;
    ERR_clear_error();
    int n = SSL_read(tc->ssl, where, room > (size_t)INT32_MAX ? INT32_MAX : (int)room);
    if (n > 0) {
      mprpc_rbuf_commit(tc->in, (size_t)n);
      got += (size_t)n;
      if (got >= DELIVER_EVERY) {
        deliver(tc);
        got = 0;
      }
      /* Nothing left to decrypt: skip the SSL_read that would only say
       * WANT_READ (a full pass through OpenSSL for each record read). */
      if (!SSL_has_pending(tc->ssl) && BIO_ctrl_pending(tc->rbio) == 0)
        break;
      continue;
    }
    int e = SSL_get_error(tc->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
      break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      eof = true;
      break;
    }
    int why = classify(tc, e);
    if (got)
      deliver(tc); /* what was decrypted before the bad record is good */
    tc_fail(tc, why, tc->err);
    return;
  }
  /* SSL_read may have queued output (key update, ticket acks). */
  if (!tc->closing) {
    int rc = drain_wbio(tc);
    if (rc != 0)
      tc_abort(tc, rc);
  }
  if (got)
    deliver(tc);
  if (eof)
    peer_closed(tc);
}

static void handshake_done(tconn_t *tc) {
  if (tc->timer) {
    mprpc_timer_cancel(tc->loop, tc->timer);
    tc->timer = 0;
  }
  atomic_fetch_add(&tc->ctx->handshakes, 1);
  if (SSL_session_reused(tc->ssl))
    atomic_fetch_add(&tc->ctx->resumed, 1);
  tc->identity = mprpc__tls_identity(tc->ssl);
  MPRPC_LOG_DEBUG("tls: %s: %s %s%s", peer_of(tc), SSL_get_version(tc->ssl),
                  SSL_get_cipher_name(tc->ssl), SSL_session_reused(tc->ssl) ? " (resumed)" : "");
  tc->state = T_OPEN;
  bool had_pre = tc->pre_len > 0;
  if (had_pre) {
    struct iovec v = {tc->pre, tc->pre_len};
    size_t n = tc->pre_len;
    tc->pre_len = 0;
    write_plain(tc, &v, 1, n);
    free(tc->pre);
    tc->pre = NULL;
    tc->pre_cap = 0;
  }
  if (tc->closing)
    return;
  if (!tc->server && !tc->connected) {
    tc->connected = true;
    if (tc->h.on_connect)
      tc->h.on_connect(outer_of(tc), tc->ud);
  }
  /* The bytes buffered during the handshake were a backlog: say when it
   * drained, as TCP does for writes made while connecting. */
  if (had_pre && !tc->closing && tc->has_handler && tc->h.on_writable &&
      mprpc_conn_out_pending(tc->inner_t, tc->inner) == 0)
    tc->h.on_writable(outer_of(tc), tc->ud);
}

static void handshake_step(tconn_t *tc) {
  ERR_clear_error();
  int r = SSL_do_handshake(tc->ssl);
  int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(tc->ssl, r);
  if (e == SSL_ERROR_NONE || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    int rc = drain_wbio(tc);
    if (rc != 0)
      tc_abort(tc, rc);
    else if (r == 1)
      handshake_done(tc);
    return;
  }
  tc_fail(tc, classify(tc, e), tc->err);
}

static void on_hs_timeout(void *arg) {
  tconn_t *tc = arg;
  tc->timer = 0;
  if (tc->closing || tc->dead || tc->state == T_OPEN || tc->state == T_PLAIN)
    return;
  snprintf(tc->err, sizeof tc->err, "no TLS handshake within %llu ms",
           (unsigned long long)(tc->ctx->hs_timeout_ns / MPRPC_NS_PER_MS));
  tc_fail(tc, MPRPC_TLS_FAIL_TIMEOUT, tc->err);
}

/* Creates the SSL with the context's current SSL_CTX. */
static int make_ssl(tconn_t *tc) {
  mprpc_tls_ctx_t *x = tc->ctx;
  pthread_mutex_lock(&x->mu);
  SSL_CTX *s = x->ssl;
  SSL_CTX_up_ref(s);
  pthread_mutex_unlock(&x->mu);
  ERR_clear_error();
  tc->ssl = SSL_new(s);
  SSL_CTX_free(s); /* the SSL holds its own reference */
  tc->rbio = BIO_new(BIO_s_mem());
  tc->wbio = BIO_new(BIO_s_mem());
  if (!tc->ssl || !tc->rbio || !tc->wbio) {
    BIO_free(tc->rbio);
    BIO_free(tc->wbio);
    tc->rbio = tc->wbio = NULL;
    SSL_free(tc->ssl);
    tc->ssl = NULL;
    ERR_clear_error();
    return MPRPC_ENOMEM;
  }
  /* A drained memory BIO reports "retry", not EOF. */
  BIO_set_mem_eof_return(tc->rbio, -1);
  BIO_set_mem_eof_return(tc->wbio, -1);
  SSL_set_bio(tc->ssl, tc->rbio, tc->wbio);
  SSL_set_ex_data(tc->ssl, mprpc__tls_ex_index, tc);
  return 0;
}

static void start_timer(tconn_t *tc) {
  if (!tc->timer)
    tc->timer = mprpc_timer_start(tc->loop, tc->ctx->hs_timeout_ns, on_hs_timeout, tc);
}

/* ---- inner handler ------------------------------------------------------------ */

static void in_on_connect(mprpc_conn_t *c, void *ud) {
  (void)c;
  tconn_t *tc = ud;
  if (tc->closing)
    return;
  tc->state = T_HANDSHAKE;
  start_timer(tc);
  handshake_step(tc); /* the ClientHello */
}

static void in_data(tconn_t *tc, mprpc_rbuf_t *raw) {
  size_t len = mprpc_rbuf_len(raw);
  if (len == 0)
    return;
  tc->got_bytes = true;
  if (tc->closing) {
    mprpc_rbuf_consume(raw, len);
    return;
  }
  if (tc->state == T_SNIFF) {
    if (mprpc_rbuf_data(raw)[0] == TLS_HANDSHAKE_BYTE) {
      if (make_ssl(tc) != 0) {
        MPRPC_LOG_ERROR("tls: accept(%s): out of memory for the TLS session", peer_of(tc));
        mprpc_rbuf_consume(raw, len);
        tc_abort(tc, MPRPC_ENOMEM);
        return;
      }
      SSL_set_accept_state(tc->ssl);
      tc->state = T_HANDSHAKE;
      start_timer(tc);
    } else if (tc->ctx->mode == MPRPC_TLS_OPTIONAL) {
      tc->state = T_PLAIN;
      atomic_fetch_add(&tc->ctx->plain, 1);
      if (tc->timer) {
        mprpc_timer_cancel(tc->loop, tc->timer);
        tc->timer = 0;
      }
    } else {
      mprpc_rbuf_consume(raw, len);
      tc_fail(tc, MPRPC_TLS_FAIL_PLAIN, "plain (not TLS) bytes on a port that requires TLS");
      return;
    }
  }
  if (tc->state == T_PLAIN) {
    int rc = mprpc_rbuf_append(tc->in, mprpc_rbuf_data(raw), len);
    mprpc_rbuf_consume(raw, len);
    if (rc != 0) {
      MPRPC_LOG_ERROR("tls: read(%s): %s", peer_of(tc), mprpc_strerror(rc));
      tc_abort(tc, rc);
      return;
    }
    deliver(tc);
    return;
  }
  /* A memory BIO takes any amount (it grows); what it holds is decrypted
   * right below, so it stays about one inner read large. */
  const uint8_t *p = mprpc_rbuf_data(raw);
  size_t off = 0;
  while (off < len) {
    size_t n = len - off > (size_t)INT32_MAX ? INT32_MAX : len - off;
    int w = BIO_write(tc->rbio, p + off, (int)n);
    if (w <= 0) {
      mprpc_rbuf_consume(raw, len);
      MPRPC_LOG_ERROR("tls: read(%s): out of memory for TLS input", peer_of(tc));
      tc_abort(tc, MPRPC_ENOMEM);
      return;
    }
    off += (size_t)w;
  }
  mprpc_rbuf_consume(raw, len);
  if (len > 0 && mprpc_rbuf_len(raw) == 0)
    mprpc_rbuf_shrink(raw, 64 * 1024);
  if (tc->state == T_HANDSHAKE)
    handshake_step(tc);
  if (tc->state == T_OPEN && !tc->closing)
    read_app(tc);
}

/* What the outer handler writes from inside the callback (the answers to
 * the requests just read, the calls a completion starts) is encrypted
 * together when it returns. The inner on_close is deferred, so tc lives on
 * until then. */
static bool cb_enter(tconn_t *tc) {
  bool outer = !tc->in_cb;
  tc->in_cb = true;
  return outer;
}

static void cb_leave(tconn_t *tc, bool outer) {
  if (!outer)
    return;
  tc->in_cb = false;
  if (!tc->closing && !tc->dead)
    cork_flush(tc);
}

static void in_on_data(mprpc_conn_t *c, void *ud, mprpc_rbuf_t *raw) {
  (void)c;
  tconn_t *tc = ud;
  bool outer = cb_enter(tc);
  in_data(tc, raw);
  cb_leave(tc, outer);
}

static void in_on_writable(mprpc_conn_t *c, void *ud) {
  (void)c;
  tconn_t *tc = ud;
  if (tc->closing || !tc->has_handler || !tc->h.on_writable)
    return;
  if (tc->state != T_OPEN && tc->state != T_PLAIN)
    return;
  bool outer = cb_enter(tc);
  tc->h.on_writable(outer_of(tc), tc->ud);
  cb_leave(tc, outer);
}

static void in_on_close(mprpc_conn_t *c, void *ud, int reason, int err) {
  (void)c;
  tconn_t *tc = ud;
  tc->dead = true;
  if (tc->timer) {
    mprpc_timer_cancel(tc->loop, tc->timer);
    tc->timer = 0;
  }
  cork_drop(tc);
  bool in_handshake = tc->state == T_HANDSHAKE || tc->state == T_SNIFF;
  if (!tc->failed && !tc->closing && in_handshake &&
      (reason == MPRPC_CLOSE_EOF || reason == MPRPC_CLOSE_RESET) &&
      (tc->got_bytes || !tc->server)) {
    /* The peer hung up on our handshake (a server hanging up on a
     * client usually means it refused it). A server's connection that
     * never sent a byte is a port probe: passed through as is. */
    snprintf(tc->err, sizeof tc->err, "connection %s during the TLS handshake%s%s",
             reason == MPRPC_CLOSE_EOF ? "closed by the peer" : "reset",
             err ? ": " : "", err ? mprpc_err_name(err) : "");
    tc->failed = true;
    tc->fail_reason = MPRPC_TLS_FAIL_CLOSED;
    atomic_fetch_add(&tc->ctx->failures[MPRPC_TLS_FAIL_CLOSED], 1);
    log_failure(tc, "tls: handshake with %s failed: %s", peer_of(tc), tc->err);
  }
  if (tc->failed) {
    reason = !tc->server && !tc->connected ? MPRPC_CLOSE_CONNECT_FAILED : MPRPC_CLOSE_RESET;
    err = MPRPC_ETLS;
  } else if (tc->local_err) {
    reason = MPRPC_CLOSE_RESET;
    err = tc->local_err;
  } else if (tc->peer_eof && reason == MPRPC_CLOSE_LOCAL) {
    reason = MPRPC_CLOSE_EOF; /* we closed because the peer did */
    err = 0;
  }
  if (tc->has_handler && tc->h.on_close)
    tc->h.on_close(outer_of(tc), tc->ud, reason, err);
  tc_free(tc);
}

static const mprpc_conn_handler_t inner_handler = {
    .on_connect = in_on_connect,
    .on_data = in_on_data,
    .on_writable = in_on_writable,
    .on_close = in_on_close,
};

/* ---- session cache (client) ---------------------------------------------------- */

static sess_entry_t *sess_find(mprpc_tls_ctx_t *x, const char *key) {
  for (int i = 0; i < SESS_MAX; i++)
    if (x->sess[i].s && strcmp(x->sess[i].key, key) == 0)
      return &x->sess[i];
  return NULL;
}

/* OpenSSL hands us each new session (TLS 1.3: each ticket); the newest one
 * of a server replaces the previous. Returns 1: we keep the reference. */
int mprpc__tls_on_new_session(SSL *ssl, SSL_SESSION *sess) {
  tconn_t *tc = SSL_get_ex_data(ssl, mprpc__tls_ex_index);
  if (!tc || !tc->sess_key[0])
    return 0;
  mprpc_tls_ctx_t *x = tc->ctx;
  pthread_mutex_lock(&x->mu);
  sess_entry_t *e = sess_find(x, tc->sess_key);
  if (!e) {
    e = &x->sess[0];
    for (int i = 0; i < SESS_MAX; i++) {
      if (!x->sess[i].s) {
        e = &x->sess[i];
        break;
      }
      if (x->sess[i].used < e->used)
        e = &x->sess[i];
    }
    snprintf(e->key, sizeof e->key, "%s", tc->sess_key);
  }
  SSL_SESSION_free(e->s);
  e->s = sess;
  e->used = ++x->sess_tick;
  pthread_mutex_unlock(&x->mu);
  return 1;
}

static void sess_apply(tconn_t *tc) {
  mprpc_tls_ctx_t *x = tc->ctx;
  SSL_SESSION *s = NULL;
  pthread_mutex_lock(&x->mu);
  sess_entry_t *e = sess_find(x, tc->sess_key);
  if (e && SSL_SESSION_is_resumable(e->s)) {
    s = e->s;
    SSL_SESSION_up_ref(s);
    e->used = ++x->sess_tick;
  }
  pthread_mutex_unlock(&x->mu);
  if (s) {
    SSL_set_session(tc->ssl, s);
    SSL_SESSION_free(s);
  }
}

/* ---- seam ops ------------------------------------------------------------------- */

static bool is_ip_literal(const char *h, char *buf, size_t cap) {
  size_t n = strlen(h);
  if (n >= 2 && h[0] == '[' && h[n - 1] == ']' && n - 2 < cap) {
    memcpy(buf, h + 1, n - 2);
    buf[n - 2] = '\0';
  } else {
    snprintf(buf, cap, "%s", h);
  }
  unsigned char a[16];
  return inet_pton(AF_INET, buf, a) == 1 || inet_pton(AF_INET6, buf, a) == 1;
}

static int op_connect(void *ctx, mprpc_loop_t loop, const char *host, uint16_t port,
                      const mprpc_conn_opts_t *o, const mprpc_conn_handler_t *h, void *ud,
                      mprpc_rbuf_t *in, mprpc_conn_t **out) {
  mprpc_tls_ctx_t *x = ctx;
  if (x->role != MPRPC_TLS_CLIENT || !h || !out || !host)
    return MPRPC_EINVAL;
  tconn_t *tc = tc_new(x, false, loop, o ? o->high_water : 0);
  if (!tc)
    return MPRPC_ENOMEM;
  tc->h = *h;
  tc->has_handler = true;
  tc->ud = ud;
  tc->in = in ? in : &tc->own_in;
  tc->state = T_CONNECTING;
  int rc = make_ssl(tc);
  if (rc != 0)
    goto fail;
  SSL_set_connect_state(tc->ssl);
  const char *name = x->server_name ? x->server_name : host;
  char lit[INET6_ADDRSTRLEN + 2];
  ERR_clear_error();
  bool ip = is_ip_literal(name, lit, sizeof lit);
  if (!ip && SSL_set_tlsext_host_name(tc->ssl, name) != 1)
    rc = MPRPC_EINVAL;
  if (rc == 0 && x->verify != MPRPC_TLS_VERIFY_OFF) {
    X509_VERIFY_PARAM *vp = SSL_get0_param(tc->ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, lit) != 1 : SSL_set1_host(tc->ssl, name) != 1)
      rc = MPRPC_EINVAL;
  }
  if (rc != 0) {
    char why[WHYTEXT];
    mprpc__tls_ssl_errors(why, sizeof why);
    MPRPC_LOG_WARN("tls: connect(%s:%u): bad server name \"%s\": %s", host, (unsigned)port, name,
                   why);
    goto fail;
  }
  if (!tc->ctx->no_resumption) { /* else sess_key stays "": nothing is kept */
    snprintf(tc->sess_key, sizeof tc->sess_key, "%s|%s:%u", name, host, (unsigned)port);
    sess_apply(tc);
  }
  mprpc_conn_opts_t io = o ? *o : (mprpc_conn_opts_t){0};
  io.high_water = INNER_HWM;
  rc = mprpc_conn_connect(tc->inner_t, loop, host, port, &io, &inner_handler, tc, &tc->raw,
                          &tc->inner);
  if (rc != 0)
    goto fail;
  *out = outer_of(tc);
  return 0;
fail:
  tc_free(tc);
  return rc;
}

static void tl_accept(void *ud, mprpc_conn_t *ic, mprpc_loop_t loop) {
  tlistener_t *tl = ud;
  tconn_t *tc = tc_new(tl->ctx, true, loop, tl->hwm);
  if (!tc) {
    MPRPC_LOG_ERROR("tls: accept(%s): out of memory", mprpc_conn_peer(tl->inner_t, ic));
    mprpc_conn_close(tl->inner_t, ic, false);
    return;
  }
  tc->inner_t = tl->inner_t;
  tc->inner = ic;
  tc->in = &tc->own_in;
  /* Ours first, so that whatever the outer on_accept does, the inner
   * on_close comes back to us and frees tc. */
  mprpc_conn_setup(tc->inner_t, ic, &inner_handler, tc, &tc->raw);
  if (tl->ctx->mode == MPRPC_TLS_OFF) {
    tc->state = T_PLAIN;
    atomic_fetch_add(&tl->ctx->plain, 1);
  } else {
    tc->state = T_SNIFF;
    /* OPTIONAL: a plain client may connect and think; the server's own
     * idle timeout handles it. REQUIRED: the handshake clock runs now. */
    if (tl->ctx->mode == MPRPC_TLS_REQUIRED)
      start_timer(tc);
  }
  tl->on_accept(tl->ud, outer_of(tc), loop);
  if (!tc->has_handler && !tc->closing) {
    MPRPC_LOG_ERROR("tls: accept(%s): on_accept neither set the connection up nor closed it",
                    peer_of(tc));
    tc_abort(tc, MPRPC_ESTATE);
  }
}

static int op_listen(void *ctx, const mprpc_listen_opts_t *o, mprpc_listener_t **out) {
  mprpc_tls_ctx_t *x = ctx;
  if (x->role != MPRPC_TLS_SERVER || !o || !out || !o->on_accept)
    return MPRPC_EINVAL;
  tlistener_t *tl = calloc(1, sizeof *tl);
  if (!tl)
    return MPRPC_ENOMEM;
  mprpc__tls_ctx_ref(x);
  tl->ctx = x;
  tl->inner_t = x->inner;
  tl->on_accept = o->on_accept;
  tl->ud = o->ud;
  tl->hwm = o->conn.high_water;
  mprpc_listen_opts_t io = *o;
  io.on_accept = tl_accept;
  io.ud = tl;
  io.conn.high_water = INNER_HWM;
  int rc = mprpc_transport_listen(tl->inner_t, &io, &tl->inner);
  if (rc != 0) {
    mprpc__tls_ctx_unref(x);
    free(tl);
    return rc;
  }
  *out = (mprpc_listener_t *)(void *)tl;
  return 0;
}

static uint16_t op_listener_port(void *ctx, mprpc_listener_t *l) {
  (void)ctx;
  tlistener_t *tl = (tlistener_t *)(void *)l;
  return mprpc_listener_port(tl->inner_t, tl->inner);
}

static void op_listener_close(void *ctx, mprpc_listener_t *l) {
  (void)ctx;
  if (!l)
    return;
  tlistener_t *tl = (tlistener_t *)(void *)l;
  mprpc_listener_close(tl->inner_t, tl->inner); /* no tl_accept after this */
  mprpc__tls_ctx_unref(tl->ctx);
  free(tl);
}

static void op_setup(void *ctx, mprpc_conn_t *c, const mprpc_conn_handler_t *h, void *ud,
                     mprpc_rbuf_t *in) {
  (void)ctx;
  tconn_t *tc = tc_of(c);
  if (!h) {
    MPRPC_LOG_ERROR("mprpc_conn_setup(%s): no handler", peer_of(tc));
    return;
  }
  tc->h = *h;
  tc->has_handler = true;
  tc->ud = ud;
  tc->in = in ? in : &tc->own_in;
}

static int op_writev(void *ctx, mprpc_conn_t *c, const struct iovec *iov, int iovcnt) {
  (void)ctx;
  tconn_t *tc = tc_of(c);
  if (tc->closing || tc->dead)
    return MPRPC_ECLOSED;
  if (iovcnt < 0 || (iovcnt > 0 && !iov))
    return MPRPC_EINVAL;
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  if (total == 0)
    return 0;
  if (total > tc->hwm)
    return MPRPC_EHWM;
  switch (tc->state) {
  case T_PLAIN:
    if (mprpc_conn_out_pending(tc->inner_t, tc->inner) > tc->hwm - total)
      return MPRPC_EHWM;
    return mprpc_conn_writev(tc->inner_t, tc->inner, iov, iovcnt);
  case T_OPEN:
    if (plain_pending(tc) + tc->cork_len > tc->hwm - total)
      return MPRPC_EHWM;
    if (tc->cork_len + total > CORK_MAX) {
      cork_flush(tc);
      if (tc->closing)
        return 0; /* TLS failed: on_close reports it */
      if (total > CORK_MAX / 2)
        return write_plain(tc, iov, iovcnt, total);
    }
    return cork_append(tc, iov, iovcnt, total);
  default: /* connecting, sniffing, handshaking */
    if (tc->pre_len > tc->hwm - total)
      return MPRPC_EHWM;
    return bytes_append(&tc->pre, &tc->pre_len, &tc->pre_cap, iov, iovcnt, total);
  }
}

static size_t op_out_pending(void *ctx, mprpc_conn_t *c) {
  (void)ctx;
  tconn_t *tc = tc_of(c);
  if (tc->dead)
    return 0;
  if (tc->state == T_PLAIN)
    return mprpc_conn_out_pending(tc->inner_t, tc->inner);
  return tc->pre_len + (tc->state == T_OPEN ? plain_pending(tc) + tc->cork_len : 0);
}

/* Back-pressure (the provider's memory budget): reading stops below us,
 * on the TCP connection, so ciphertext waits in the kernel; what one read
 * pass already decrypted is still delivered. */
static void op_set_reading(void *ctx, mprpc_conn_t *c, bool on) {
  (void)ctx;
  tconn_t *tc = tc_of(c);
  if (!tc->dead)
    mprpc_conn_set_reading(tc->inner_t, tc->inner, on);
}

static void op_close(void *ctx, mprpc_conn_t *c, bool flush) {
  (void)ctx;
  tconn_t *tc = tc_of(c);
  if (tc->closing || tc->dead)
    return;
  if (flush) {
    cork_flush(tc); /* before the close_notify */
    if (tc->closing)
      return; /* TLS failed meanwhile: the connection is closing already */
  }
  cork_drop(tc);
  tc->closing = true;
  if (tc->timer) {
    mprpc_timer_cancel(tc->loop, tc->timer);
    tc->timer = 0;
  }
  if (flush && tc->state == T_OPEN) {
    ERR_clear_error();
    SSL_shutdown(tc->ssl); /* close_notify */
    ERR_clear_error();
    flush = drain_wbio(tc) == 0;
  } else if (tc->state != T_PLAIN) {
    flush = false; /* bytes written before the handshake are dropped, as TCP
                      drops those written while connecting */
  }
  mprpc_conn_close(tc->inner_t, tc->inner, flush);
}

static const char *op_peer_name(void *ctx, mprpc_conn_t *c) {
  (void)ctx;
  return peer_of(tc_of(c));
}

static const char *op_peer_identity(void *ctx, mprpc_conn_t *c) {
  (void)ctx;
  return tc_of(c)->identity;
}

static const char *op_error_text(void *ctx, mprpc_conn_t *c) {
  (void)ctx;
  tconn_t *tc = tc_of(c);
  return tc->err[0] ? tc->err : NULL;
}

static const mprpc_transport_ops_t tls_ops = {
    .listen = op_listen,
    .listener_port = op_listener_port,
    .listener_close = op_listener_close,
    .connect = op_connect,
    .setup = op_setup,
    .writev = op_writev,
    .out_pending = op_out_pending,
    .set_reading = op_set_reading,
    .close = op_close,
    .peer_name = op_peer_name,
    .peer_identity = op_peer_identity,
    .error_text = op_error_text,
};

mprpc_transport_t mprpc_tls_transport(mprpc_transport_t inner, mprpc_tls_ctx_t *ctx) {
  ctx->inner = inner;
  return (mprpc_transport_t){.vt = &tls_ops, .ctx = ctx};
}
