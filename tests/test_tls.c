/* The TLS transport decorator (src/rt/tls.c) over the real TCP runtime on
 * loopback, with certificates made by tests/support/tls_certs.sh (the
 * openssl command) into a temporary directory. Server and clients run on
 * separate loop groups; checks made on loop threads are recorded and
 * asserted on the main thread. Waits are hang guards only: nothing asserts
 * on how long anything took. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mprpc/buf.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/rt.h"
#include "mprpc/tls.h"
#include "mprpc/transport.h"

#define KIB 1024u
#define MIB (1024u * 1024u)
#define HANG_GUARD_S 30

static char g_dir[256];

static const char *path(char *buf, const char *name) {
  snprintf(buf, 512, "%s/%s", g_dir, name);
  return buf;
}

/* ---- a countdown with a hang guard -------------------------------------- */

typedef struct done {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int n;
} done_t;

static void done_init(done_t *d) {
  pthread_mutex_init(&d->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&d->cv, &ca);
  pthread_condattr_destroy(&ca);
  d->n = 0;
}

static void done_destroy(done_t *d) {
  pthread_cond_destroy(&d->cv);
  pthread_mutex_destroy(&d->mu);
}

static void done_signal(done_t *d) {
  pthread_mutex_lock(&d->mu);
  d->n++;
  pthread_cond_broadcast(&d->cv);
  pthread_mutex_unlock(&d->mu);
}

static bool done_wait(done_t *d, int n) {
  struct timespec dl;
  clock_gettime(CLOCK_MONOTONIC, &dl);
  dl.tv_sec += HANG_GUARD_S;
  pthread_mutex_lock(&d->mu);
  int rc = 0;
  while (d->n < n && rc == 0)
    rc = pthread_cond_timedwait(&d->cv, &d->mu, &dl);
  bool ok = d->n >= n;
  pthread_mutex_unlock(&d->mu);
  return ok;
}

/* Polls a counter another thread updates, within the hang guard. */
static bool eventually(const atomic_int *v, int want) {
  for (int i = 0; i < HANG_GUARD_S * 100; i++) {
    if (atomic_load(v) >= want)
      return true;
    usleep(10 * 1000);
  }
  return false;
}

static bool eventually_stat(mprpc_tls_ctx_t *x, int fail, uint64_t want) {
  for (int i = 0; i < HANG_GUARD_S * 100; i++) {
    mprpc_tls_stats_t st;
    mprpc_tls_stats(x, &st);
    if (st.failures[fail] >= want)
      return true;
    usleep(10 * 1000);
  }
  return false;
}

static uint8_t pattern(size_t i) { return (uint8_t)((i * 131u + (i >> 9) * 7u + 3u) & 0xffu); }

static uint8_t *make_payload(size_t len) {
  uint8_t *p = malloc(len);
  assert_non_null(p);
  for (size_t i = 0; i < len; i++)
    p[i] = pattern(i);
  return p;
}

/* Runs fn(arg) on `loop` and waits for it. */
typedef struct sync_on_ctx {
  void (*fn)(void *);
  void *arg;
  done_t d;
} sync_on_ctx_t;

static void sync_on_run(void *p) {
  sync_on_ctx_t *s = p;
  s->fn(s->arg);
  done_signal(&s->d);
}

static void sync_on(mprpc_loop_t loop, void (*fn)(void *), void *arg) {
  sync_on_ctx_t s = {.fn = fn, .arg = arg};
  done_init(&s.d);
  assert_int_equal(mprpc_loop_post(loop, sync_on_run, &s), 0);
  assert_true(done_wait(&s.d, 1));
  done_destroy(&s.d);
}

/* ---- an echo server over TLS -------------------------------------------- */

typedef struct srv {
  mprpc_loop_group_t *g;
  mprpc_tls_ctx_t *ctx;
  mprpc_transport_t tp;
  mprpc_listener_t *l;
  uint16_t port;
  atomic_int accepted, closed, bad, with_identity, without_identity;
  pthread_mutex_t mu;
  char identity[512]; /* (mu) the last one seen */
} srv_t;

typedef struct sconn {
  srv_t *s;
  mprpc_rbuf_t in;
  bool seen;
} sconn_t;

static void s_on_data(mprpc_conn_t *c, void *ud, mprpc_rbuf_t *in) {
  sconn_t *e = ud;
  if (!e->seen) {
    e->seen = true;
    const char *id = mprpc_conn_peer_identity(e->s->tp, c);
    if (id) {
      pthread_mutex_lock(&e->s->mu);
      snprintf(e->s->identity, sizeof e->s->identity, "%s", id);
      pthread_mutex_unlock(&e->s->mu);
      atomic_fetch_add(&e->s->with_identity, 1);
    } else {
      atomic_fetch_add(&e->s->without_identity, 1);
    }
  }
  struct iovec iov = {(void *)mprpc_rbuf_data(in), mprpc_rbuf_len(in)};
  if (mprpc_conn_writev(e->s->tp, c, &iov, 1) != 0)
    atomic_fetch_add(&e->s->bad, 1);
  mprpc_rbuf_consume(in, iov.iov_len);
}

static void s_on_close(mprpc_conn_t *c, void *ud, int reason, int err) {
  (void)c, (void)reason, (void)err;
  sconn_t *e = ud;
  atomic_fetch_add(&e->s->closed, 1);
  mprpc_rbuf_free(&e->in);
  free(e);
}

static const mprpc_conn_handler_t s_handler = {.on_data = s_on_data, .on_close = s_on_close};

static void s_on_accept(void *ud, mprpc_conn_t *c, mprpc_loop_t loop) {
  (void)loop;
  srv_t *s = ud;
  sconn_t *e = calloc(1, sizeof *e);
  if (!e) {
    mprpc_conn_close(s->tp, c, false);
    return;
  }
  e->s = s;
  mprpc_rbuf_init(&e->in);
  mprpc_conn_setup(s->tp, c, &s_handler, e, &e->in);
  atomic_fetch_add(&s->accepted, 1);
}

static void srv_opts(mprpc_tls_opts_t *o, char bufs[3][512], const char *cert) {
  memset(o, 0, sizeof *o);
  o->role = MPRPC_TLS_SERVER;
  char n[64];
  snprintf(n, sizeof n, "%s.pem", cert);
  o->cert_file = path(bufs[0], n);
  snprintf(n, sizeof n, "%s.key", cert);
  o->key_file = path(bufs[1], n);
  o->ca_file = path(bufs[2], "ca.pem");
}

static void srv_start(srv_t *s, const mprpc_tls_opts_t *o) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  char err[512];
  int rc = mprpc_tls_ctx_new(o, &s->ctx, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "server ctx: %s\n", err);
  assert_int_equal(rc, 0);
  s->tp = mprpc_tls_transport(mprpc_tcp_transport(), s->ctx);
  assert_int_equal(mprpc_loop_group_new(1, &s->g), 0);
  assert_int_equal(mprpc_loop_group_start(s->g), 0);
  mprpc_loop_t loop = mprpc_loop_group_loop(s->g, 0);
  mprpc_listen_opts_t lo = {
      .host = "127.0.0.1", .loops = &loop, .nloops = 1, .on_accept = s_on_accept, .ud = s};
  assert_int_equal(mprpc_transport_listen(s->tp, &lo, &s->l), 0);
  s->port = mprpc_listener_port(s->tp, s->l);
}

static void srv_stop(srv_t *s) {
  mprpc_listener_close(s->tp, s->l);
  mprpc_loop_group_free(s->g);
  assert_int_equal(atomic_load(&s->bad), 0);
  assert_int_equal(atomic_load(&s->closed), atomic_load(&s->accepted));
  mprpc_tls_ctx_free(s->ctx);
  pthread_mutex_destroy(&s->mu);
}

/* ---- a client: writes a payload in chunks, checks the echo --------------- */

typedef struct cl {
  mprpc_transport_t tp;
  mprpc_loop_t loop;
  const char *host;
  uint16_t port;
  mprpc_conn_opts_t opts;
  const uint8_t *payload;
  size_t len, chunk, sent_mark; /* echo wanted up to len */
  bool keep_open;               /* do not close once echoed */
  bool manual;                  /* on_connect writes nothing */
  int small_writes;             /* on_connect: this many 3-iovec writes */
  mprpc_tls_ctx_t *measure;     /* wire bytes of those writes */
  uint64_t small_wire, small_app;
  mprpc_conn_t *c;
  mprpc_rbuf_t in;
  done_t *done, *echoed_done, *connected_done;
  int connect_rc, connected, closes, reason, err, writable, hwm_hits, bad;
  size_t written, echoed;
  int mismatch;
  char identity[512];
  char errtext[512];
} cl_t;

static void pump(cl_t *k) {
  while (k->written < k->len) {
    size_t n = k->len - k->written < k->chunk ? k->len - k->written : k->chunk;
    struct iovec iov = {(void *)(k->payload + k->written), n};
    int rc = mprpc_conn_writev(k->tp, k->c, &iov, 1);
    if (rc == MPRPC_EHWM) {
      k->hwm_hits++;
      return; /* on_writable resumes */
    }
    if (rc != 0) {
      k->bad++;
      return;
    }
    k->written += n;
  }
}

static void k_on_connect(mprpc_conn_t *c, void *ud) {
  cl_t *k = ud;
  if (c != k->c || !mprpc_loop_in_loop(k->loop))
    k->bad++;
  k->connected++;
  const char *id = mprpc_conn_peer_identity(k->tp, c);
  snprintf(k->identity, sizeof k->identity, "%s", id ? id : "");
  if (k->small_writes) {
    mprpc_tls_stats_t a, b;
    mprpc_tls_stats(k->measure, &a);
    for (int i = 0; i < k->small_writes; i++) {
      struct iovec v[3] = {{(void *)k->payload, 12}, {(void *)(k->payload + 12), 40},
                           {(void *)(k->payload + 52), 20}};
      if (mprpc_conn_writev(k->tp, c, v, 3) != 0)
        k->bad++;
    }
    mprpc_conn_close(k->tp, c, true); /* encrypts what is corked, then close_notify */
    mprpc_tls_stats(k->measure, &b);
    k->small_wire = b.wire_bytes_out - a.wire_bytes_out;
    k->small_app = b.app_bytes_out - a.app_bytes_out;
  }
  if (k->connected_done)
    done_signal(k->connected_done);
  if (!k->manual)
    pump(k);
}

static void k_on_data(mprpc_conn_t *c, void *ud, mprpc_rbuf_t *in) {
  cl_t *k = ud;
  size_t n = mprpc_rbuf_len(in);
  const uint8_t *p = mprpc_rbuf_data(in);
  for (size_t i = 0; i < n; i++)
    if (k->echoed + i >= k->len || p[i] != k->payload[k->echoed + i])
      k->mismatch++;
  k->echoed += n;
  mprpc_rbuf_consume(in, n);
  if (k->echoed == k->len && n > 0) {
    if (k->echoed_done)
      done_signal(k->echoed_done);
    if (!k->keep_open)
      mprpc_conn_close(k->tp, c, false);
  }
}

static void k_on_writable(mprpc_conn_t *c, void *ud) {
  cl_t *k = ud;
  k->writable++;
  if (mprpc_conn_out_pending(k->tp, c) != 0)
    k->bad++;
  if (!k->manual)
    pump(k);
}

static void k_on_close(mprpc_conn_t *c, void *ud, int reason, int err) {
  cl_t *k = ud;
  if (c != k->c)
    k->bad++;
  k->closes++;
  k->reason = reason;
  k->err = err;
  const char *t = mprpc_conn_error_text(k->tp, c);
  snprintf(k->errtext, sizeof k->errtext, "%s", t ? t : "");
  k->c = NULL;
  done_signal(k->done);
}

static const mprpc_conn_handler_t k_handler = {k_on_connect, k_on_data, k_on_writable,
                                               k_on_close};

static void k_start(void *arg) {
  cl_t *k = arg;
  k->connect_rc = mprpc_conn_connect(k->tp, k->loop, k->host, k->port, &k->opts, &k_handler, k,
                                     &k->in, &k->c);
  if (k->connect_rc != 0)
    done_signal(k->done);
}

typedef struct crig {
  mprpc_loop_group_t *g;
  mprpc_loop_t loop;
  done_t done;
} crig_t;

static void crig_init(crig_t *r) {
  assert_int_equal(mprpc_loop_group_new(1, &r->g), 0);
  assert_int_equal(mprpc_loop_group_start(r->g), 0);
  r->loop = mprpc_loop_group_loop(r->g, 0);
  done_init(&r->done);
}

static void crig_free(crig_t *r) {
  mprpc_loop_group_free(r->g);
  done_destroy(&r->done);
}

static void cl_init(cl_t *k, crig_t *r, mprpc_transport_t tp, uint16_t port, const uint8_t *pl,
                    size_t len) {
  memset(k, 0, sizeof *k);
  k->tp = tp;
  k->loop = r->loop;
  k->host = "127.0.0.1";
  k->port = port;
  k->payload = pl;
  k->len = len;
  k->chunk = 7000;
  k->done = &r->done;
  mprpc_rbuf_init(&k->in);
}

static mprpc_tls_ctx_t *client_ctx(const char *ca, const char *cert, const char *server_name) {
  char b[3][512], err[512];
  mprpc_tls_opts_t o = {.role = MPRPC_TLS_CLIENT};
  o.ca_file = ca ? path(b[0], ca) : NULL;
  if (cert) {
    char n[64];
    snprintf(n, sizeof n, "%s.pem", cert);
    o.cert_file = path(b[1], n);
    snprintf(n, sizeof n, "%s.key", cert);
    o.key_file = path(b[2], n);
  }
  o.server_name = server_name;
  mprpc_tls_ctx_t *x;
  int rc = mprpc_tls_ctx_new(&o, &x, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "client ctx: %s\n", err);
  assert_int_equal(rc, 0);
  return x;
}

/* One client connection through ctx, run to its close. */
static void run_one(cl_t *k, mprpc_tls_ctx_t *x, uint16_t port, const uint8_t *pl, size_t len) {
  crig_t r;
  crig_init(&r);
  cl_init(k, &r, mprpc_tls_transport(mprpc_tcp_transport(), x), port, pl, len);
  assert_int_equal(mprpc_loop_post(r.loop, k_start, k), 0);
  bool ok = done_wait(&r.done, 1);
  crig_free(&r);
  mprpc_rbuf_free(&k->in);
  assert_true(ok);
  assert_int_equal(k->connect_rc, 0);
  assert_int_equal(k->closes, 1);
  assert_int_equal(k->bad, 0);
}

/* ---- raw sockets for misbehaving peers ---------------------------------- */

static int raw_connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  return fd;
}

/* True once the server closed fd (EOF or reset), within the hang guard. */
static bool raw_closed(int fd) {
  uint8_t buf[4096];
  for (int i = 0; i < HANG_GUARD_S * 10; i++) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 100) <= 0)
      continue;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno == ECONNRESET))
      return true;
  }
  return false;
}

static void raw_send(int fd, const void *p, size_t n) {
  assert_int_equal(write(fd, p, n), (ssize_t)n);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_tls_echo_with_verified_server(void **state) {
  (void)state;
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "server");
  srv_t s;
  srv_start(&s, &so);
  mprpc_tls_ctx_t *cx = client_ctx("ca.pem", NULL, NULL);
  uint8_t *pl = make_payload(100 * KIB);
  cl_t k;
  run_one(&k, cx, s.port, pl, 100 * KIB);
  assert_int_equal(k.connected, 1);
  assert_int_equal(k.echoed, 100 * KIB);
  assert_int_equal(k.mismatch, 0);
  assert_int_equal(k.reason, MPRPC_CLOSE_LOCAL);
  assert_int_equal(k.err, 0);
  assert_string_equal(k.identity, "subject=CN=localhost,O=gen1;san=DNS:localhost,IP:127.0.0.1");
  assert_string_equal(k.errtext, "");
  assert_true(eventually(&s.closed, 1));
  /* No client certificate was asked for: no identity on the server. */
  assert_int_equal(atomic_load(&s.without_identity), 1);
  assert_int_equal(atomic_load(&s.with_identity), 0);
  mprpc_tls_stats_t cs, ss;
  mprpc_tls_stats(cx, &cs);
  mprpc_tls_stats(s.ctx, &ss);
  assert_int_equal(cs.handshakes, 1);
  assert_int_equal(ss.handshakes, 1);
  for (int i = 0; i < MPRPC_TLS_FAIL_COUNT; i++)
    assert_int_equal(cs.failures[i] + ss.failures[i], 0);
  assert_true(cs.app_bytes_out == 100 * KIB);
  assert_true(cs.wire_bytes_out > cs.app_bytes_out);
  srv_stop(&s);
  mprpc_tls_ctx_free(cx);
  free(pl);
}

static void test_tls_mtls_client_certificate_accepted(void **state) {
  (void)state;
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "server");
  so.verify_peer = MPRPC_TLS_VERIFY_REQUIRED;
  srv_t s;
  srv_start(&s, &so);
  mprpc_tls_ctx_t *cx = client_ctx("ca.pem", "client", NULL);
  uint8_t *pl = make_payload(10 * KIB);
  cl_t k;
  run_one(&k, cx, s.port, pl, 10 * KIB);
  assert_int_equal(k.echoed, 10 * KIB);
  assert_int_equal(k.mismatch, 0);
  assert_int_equal(k.err, 0);
  assert_true(eventually(&s.with_identity, 1));
  pthread_mutex_lock(&s.mu);
  assert_string_equal(s.identity, "subject=CN=client1,O=mprpc-test;san=DNS:client1");
  pthread_mutex_unlock(&s.mu);
  srv_stop(&s);
  mprpc_tls_ctx_free(cx);
  free(pl);
}

static void test_tls_mtls_client_without_certificate_rejected(void **state) {
  (void)state;
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "server");
  so.verify_peer = MPRPC_TLS_VERIFY_REQUIRED;
  srv_t s;
  srv_start(&s, &so);
  mprpc_tls_ctx_t *cx = client_ctx("ca.pem", NULL, NULL);
  uint8_t *pl = make_payload(10 * KIB);
  cl_t k;
  run_one(&k, cx, s.port, pl, 10 * KIB);
  assert_int_equal(k.echoed, 0);
  assert_int_equal(k.err, MPRPC_ETLS);
  /* TLS 1.3: the client's side of the handshake completes before the
   * server has looked at its (missing) certificate, so the refusal may
   * arrive after on_connect. */
  assert_true(k.reason == MPRPC_CLOSE_CONNECT_FAILED || k.reason == MPRPC_CLOSE_RESET);
  assert_non_null(strstr(k.errtext, "certificate required"));
  assert_true(eventually_stat(s.ctx, MPRPC_TLS_FAIL_VERIFY, 1));
  assert_true(eventually(&s.closed, 1));
  assert_int_equal(atomic_load(&s.with_identity) + atomic_load(&s.without_identity), 0);
  char last[512];
  assert_non_null(strstr(mprpc_tls_last_error(s.ctx, last, sizeof last), "certificate"));
  srv_stop(&s);
  mprpc_tls_ctx_free(cx);
  free(pl);
}

/* A client rejects the server's certificate: connect fails with ETLS and
 * OpenSSL's reason, the server counts the client's alert. */
static void expect_rejected(const char *server_cert, const char *client_ca, const char *name,
                            const char *why, const char *or_why) {
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, server_cert);
  srv_t s;
  srv_start(&s, &so);
  mprpc_tls_ctx_t *cx = client_ctx(client_ca, NULL, name);
  uint8_t *pl = make_payload(KIB);
  cl_t k;
  run_one(&k, cx, s.port, pl, KIB);
  assert_int_equal(k.connected, 0);
  assert_int_equal(k.reason, MPRPC_CLOSE_CONNECT_FAILED);
  assert_int_equal(k.err, MPRPC_ETLS);
  bool found = strstr(k.errtext, why) || (or_why && strstr(k.errtext, or_why));
  if (!found)
    fprintf(stderr, "error text: %s\n", k.errtext);
  assert_non_null(strstr(k.errtext, "certificate verify failed"));
  assert_true(found);
  mprpc_tls_stats_t cs;
  mprpc_tls_stats(cx, &cs);
  assert_int_equal(cs.failures[MPRPC_TLS_FAIL_VERIFY], 1);
  assert_int_equal(cs.handshakes, 0);
  assert_true(eventually_stat(s.ctx, MPRPC_TLS_FAIL_PEER_ALERT, 1));
  assert_true(eventually(&s.closed, 1));
  srv_stop(&s);
  mprpc_tls_ctx_free(cx);
  free(pl);
}

static void test_tls_untrusted_ca_rejected(void **state) {
  (void)state;
  /* The server sends its CA along (OpenSSL completes the chain from its
   * trust store): the chain then ends in a root the client does not know. */
  expect_rejected("server", "ca2.pem", NULL, "unable to get local issuer certificate",
                  "self-signed certificate in certificate chain");
}

static void test_tls_wrong_ip_rejected(void **state) {
  (void)state;
  expect_rejected("other", "ca.pem", NULL, "IP address mismatch", NULL);
}

static void test_tls_wrong_name_rejected(void **state) {
  (void)state;
  expect_rejected("other", "ca.pem", "localhost", "hostname mismatch", NULL);
}

static void test_tls_expired_certificate_rejected(void **state) {
  (void)state;
  expect_rejected("expired", "ca.pem", NULL, "certificate has expired", NULL);
}

static void test_tls_plain_client_on_required_port_closed(void **state) {
  (void)state;
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "server");
  srv_t s;
  srv_start(&s, &so);
  int fd = raw_connect(s.port);
  raw_send(fd, "PRPC\0\0\0\0\0\0\0\0", 12);
  assert_true(raw_closed(fd));
  close(fd);
  assert_true(eventually_stat(s.ctx, MPRPC_TLS_FAIL_PLAIN, 1));
  assert_true(eventually(&s.closed, 1));
  char last[512];
  assert_non_null(strstr(mprpc_tls_last_error(s.ctx, last, sizeof last), "plain"));
  srv_stop(&s);
}

static void test_tls_optional_port_serves_plain_and_tls_at_once(void **state) {
  (void)state;
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "server");
  so.mode = MPRPC_TLS_OPTIONAL;
  srv_t s;
  srv_start(&s, &so);
  mprpc_tls_ctx_t *cx = client_ctx("ca.pem", NULL, NULL);
  uint8_t *pl = make_payload(300 * KIB);
  crig_t r;
  crig_init(&r);
  cl_t t, p;
  cl_init(&t, &r, mprpc_tls_transport(mprpc_tcp_transport(), cx), s.port, pl, 300 * KIB);
  cl_init(&p, &r, mprpc_tcp_transport(), s.port, pl, 300 * KIB);
  assert_int_equal(mprpc_loop_post(r.loop, k_start, &t), 0);
  assert_int_equal(mprpc_loop_post(r.loop, k_start, &p), 0);
  bool ok = done_wait(&r.done, 2);
  crig_free(&r);
  assert_true(ok);
  for (cl_t *k = &t; k; k = k == &t ? &p : NULL) {
    assert_int_equal(k->connected, 1);
    assert_int_equal(k->echoed, 300 * KIB);
    assert_int_equal(k->mismatch, 0);
    assert_int_equal(k->err, 0);
    assert_int_equal(k->bad, 0);
    mprpc_rbuf_free(&k->in);
  }
  assert_string_equal(p.identity, ""); /* TCP has no identity op */
  assert_true(eventually(&s.closed, 2));
  mprpc_tls_stats_t ss;
  mprpc_tls_stats(s.ctx, &ss);
  assert_int_equal(ss.plain, 1);
  assert_int_equal(ss.handshakes, 1);
  srv_stop(&s);
  mprpc_tls_ctx_free(cx);
  free(pl);
}

static void test_tls_session_resumed_on_reconnect(void **state) {
  (void)state;
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "server");
  srv_t s;
  srv_start(&s, &so);
  mprpc_tls_ctx_t *cx = client_ctx("ca.pem", NULL, NULL);
  uint8_t *pl = make_payload(KIB);
  cl_t k1, k2;
  run_one(&k1, cx, s.port, pl, KIB);
  run_one(&k2, cx, s.port, pl, KIB);
  assert_int_equal(k1.echoed, KIB);
  assert_int_equal(k2.echoed, KIB);
  mprpc_tls_stats_t cs, ss;
  mprpc_tls_stats(cx, &cs);
  mprpc_tls_stats(s.ctx, &ss);
  assert_int_equal(cs.handshakes, 2);
  assert_int_equal(cs.resumed, 1);
  assert_int_equal(ss.resumed, 1);
  /* The resumed session still carries the verified server identity. */
  assert_string_equal(k2.identity, k1.identity);
  srv_stop(&s);
  mprpc_tls_ctx_free(cx);
  free(pl);
}

static void copy_file(const char *from, const char *to) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s.tmp' && mv '%s.tmp' '%s'", from, to, to, to);
  assert_int_equal(system(cmd), 0);
}

static void more_echo(void *arg) {
  cl_t *k = arg;
  k->len += 2 * KIB; /* the payload buffer holds that much more */
  pump(k);
}

static void test_tls_reload_serves_renewed_certificate(void **state) {
  (void)state;
  char b[8][512];
  copy_file(path(b[0], "server.pem"), path(b[1], "cur.pem"));
  copy_file(path(b[0], "server.key"), path(b[2], "cur.key"));
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "cur");
  srv_t s;
  srv_start(&s, &so);
  mprpc_tls_ctx_t *cx = client_ctx("ca.pem", NULL, NULL);
  uint8_t *pl = make_payload(8 * KIB);

  /* A connection made before the reload, kept open across it. */
  crig_t r;
  crig_init(&r);
  done_t echoed;
  done_init(&echoed);
  cl_t old;
  cl_init(&old, &r, mprpc_tls_transport(mprpc_tcp_transport(), cx), s.port, pl, 2 * KIB);
  old.keep_open = true;
  old.echoed_done = &echoed;
  assert_int_equal(mprpc_loop_post(r.loop, k_start, &old), 0);
  assert_true(done_wait(&echoed, 1));
  assert_non_null(strstr(old.identity, "O=gen1"));

  copy_file(path(b[3], "renewed.pem"), path(b[1], "cur.pem"));
  copy_file(path(b[3], "renewed.key"), path(b[2], "cur.key"));
  char err[512];
  assert_int_equal(mprpc_tls_ctx_reload(s.ctx, err, sizeof err), 0);
  cl_t k;
  run_one(&k, cx, s.port, pl, KIB);
  assert_int_equal(k.echoed, KIB);
  assert_non_null(strstr(k.identity, "subject=CN=localhost,O=gen2"));

  /* A broken file: refused with its name, the renewed one stays. */
  FILE *f = fopen(path(b[1], "cur.pem"), "w");
  assert_non_null(f);
  fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
  fclose(f);
  assert_int_equal(mprpc_tls_ctx_reload(s.ctx, err, sizeof err), MPRPC_ETLS);
  assert_non_null(strstr(err, "cur.pem"));
  cl_t k3;
  run_one(&k3, cx, s.port, pl, KIB);
  assert_int_equal(k3.echoed, KIB);
  assert_non_null(strstr(k3.identity, "O=gen2"));

  /* The old connection kept going on what it negotiated. */
  sync_on(r.loop, more_echo, &old);
  assert_true(done_wait(&echoed, 2));
  assert_int_equal(old.echoed, 4 * KIB);
  assert_int_equal(old.mismatch, 0);
  assert_int_equal(old.closes, 0);
  crig_free(&r); /* closes it: SHUTDOWN */
  assert_int_equal(old.closes, 1);
  assert_int_equal(old.reason, MPRPC_CLOSE_SHUTDOWN);
  assert_int_equal(old.bad, 0);
  mprpc_rbuf_free(&old.in);
  done_destroy(&echoed);
  mprpc_tls_stats_t ss;
  mprpc_tls_stats(s.ctx, &ss);
  assert_int_equal(ss.reloads, 1);
  srv_stop(&s);
  mprpc_tls_ctx_free(cx);
  free(pl);
}

static void test_tls_ctx_new_refuses_bad_files(void **state) {
  (void)state;
  char b[4][512], err[512];
  mprpc_tls_ctx_t *x = NULL;
  mprpc_tls_opts_t o = {.role = MPRPC_TLS_SERVER};
  o.cert_file = path(b[0], "missing.pem");
  o.key_file = path(b[1], "server.key");
  assert_int_equal(mprpc_tls_ctx_new(&o, &x, err, sizeof err), MPRPC_ETLS);
  assert_null(x);
  assert_non_null(strstr(err, "missing.pem"));
  assert_non_null(strstr(err, "No such file"));
  /* A key that is not the certificate's. */
  o.cert_file = path(b[0], "server.pem");
  o.key_file = path(b[1], "client.key");
  assert_int_equal(mprpc_tls_ctx_new(&o, &x, err, sizeof err), MPRPC_ETLS);
  assert_non_null(strstr(err, "client.key"));
  assert_non_null(strstr(err, "mismatch"));
  o.key_file = path(b[1], "server.key");
  o.ca_file = path(b[2], "nope-ca.pem");
  assert_int_equal(mprpc_tls_ctx_new(&o, &x, err, sizeof err), MPRPC_ETLS);
  assert_non_null(strstr(err, "nope-ca.pem"));
  /* A server needs a certificate; bad enums are refused. */
  mprpc_tls_opts_t none = {.role = MPRPC_TLS_SERVER};
  assert_int_equal(mprpc_tls_ctx_new(&none, &x, err, sizeof err), MPRPC_EINVAL);
  mprpc_tls_opts_t bad = {.role = 7};
  assert_int_equal(mprpc_tls_ctx_new(&bad, &x, err, sizeof err), MPRPC_EINVAL);
  /* A client context cannot listen, a server context cannot connect. */
  o.ca_file = NULL;
  assert_int_equal(mprpc_tls_ctx_new(&o, &x, err, sizeof err), 0);
  mprpc_transport_t t = mprpc_tls_transport(mprpc_tcp_transport(), x);
  mprpc_conn_t *c;
  mprpc_loop_t nl = {0};
  assert_int_equal(mprpc_conn_connect(t, nl, "127.0.0.1", 1, NULL, &k_handler, NULL, NULL, &c),
                   MPRPC_EINVAL);
  mprpc_tls_ctx_free(x);
  assert_string_equal(mprpc_tls_fail_name(MPRPC_TLS_FAIL_VERIFY), "verify");
  assert_string_equal(mprpc_tls_fail_name(99), "unknown");
  assert_string_equal(mprpc_err_name(MPRPC_ETLS), "ETLS");
}

static void test_tls_garbage_handshake_closes_only_that_connection(void **state) {
  (void)state;
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "server");
  srv_t s;
  srv_start(&s, &so);
  mprpc_tls_ctx_t *cx = client_ctx("ca.pem", NULL, NULL);
  uint8_t *pl = make_payload(8 * KIB);
  crig_t r;
  crig_init(&r);
  done_t echoed;
  done_init(&echoed);
  cl_t good;
  cl_init(&good, &r, mprpc_tls_transport(mprpc_tcp_transport(), cx), s.port, pl, 2 * KIB);
  good.keep_open = true;
  good.echoed_done = &echoed;
  assert_int_equal(mprpc_loop_post(r.loop, k_start, &good), 0);
  assert_true(done_wait(&echoed, 1));

  /* Looks like a handshake record for five bytes, then is not. */
  int fd = raw_connect(s.port);
  raw_send(fd, "\x16\x03\x01\x00\x20garbage garbage garbage garbage!", 37);
  assert_true(raw_closed(fd));
  close(fd);
  assert_true(eventually_stat(s.ctx, MPRPC_TLS_FAIL_PROTOCOL, 1));

  sync_on(r.loop, more_echo, &good);
  assert_true(done_wait(&echoed, 2));
  assert_int_equal(good.echoed, 4 * KIB);
  assert_int_equal(good.mismatch, 0);
  assert_int_equal(good.closes, 0);
  crig_free(&r);
  assert_int_equal(good.bad, 0);
  mprpc_rbuf_free(&good.in);
  done_destroy(&echoed);
  srv_stop(&s);
  mprpc_tls_ctx_free(cx);
  free(pl);
}

static void test_tls_handshake_timeout_closes_silent_client(void **state) {
  (void)state;
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "server");
  so.handshake_timeout_ns = 300 * MPRPC_NS_PER_MS;
  srv_t s;
  srv_start(&s, &so);
  int fd = raw_connect(s.port);
  assert_true(raw_closed(fd)); /* sent nothing, closed by the server */
  close(fd);
  assert_true(eventually_stat(s.ctx, MPRPC_TLS_FAIL_TIMEOUT, 1));
  assert_true(eventually(&s.closed, 1));
  srv_stop(&s);
}

static void test_tls_8mib_both_directions_in_many_writes(void **state) {
  (void)state;
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "server");
  srv_t s;
  srv_start(&s, &so);
  mprpc_tls_ctx_t *cx = client_ctx("ca.pem", NULL, NULL);
  size_t len = 8 * MIB;
  uint8_t *pl = make_payload(len);
  crig_t r;
  crig_init(&r);
  cl_t k;
  cl_init(&k, &r, mprpc_tls_transport(mprpc_tcp_transport(), cx), s.port, pl, len);
  k.chunk = 65521; /* not a multiple of the record size */
  k.opts.high_water = MIB;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(mprpc_loop_post(r.loop, k_start, &k), 0);
  bool ok = done_wait(&r.done, 1);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  crig_free(&r);
  mprpc_rbuf_free(&k.in);
  assert_true(ok);
  assert_int_equal(k.written, len);
  assert_int_equal(k.echoed, len);
  assert_int_equal(k.mismatch, 0);
  assert_int_equal(k.reason, MPRPC_CLOSE_LOCAL);
  assert_int_equal(k.bad, 0);
  /* Every refused write was followed by on_writable (or the pump would
   * have stalled and the hang guard fired). */
  assert_true(k.writable >= k.hwm_hits);
  mprpc_tls_stats_t cs;
  mprpc_tls_stats(cx, &cs);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("TLS-MEASURE echo_bytes=%zu seconds=%.3f app_bytes_out=%llu wire_bytes_out=%llu "
         "hwm_refusals=%d (ASan build; informational)\n",
         len, secs, (unsigned long long)cs.app_bytes_out, (unsigned long long)cs.wire_bytes_out,
         k.hwm_hits);
  srv_stop(&s);
  mprpc_tls_ctx_free(cx);
  free(pl);
}

/* Frame-like 3-iovec writes made in one callback share records: they are
 * encrypted together when it returns (or when 64 KiB are corked), not one
 * record per write and never one per iovec. */
static void test_tls_small_writes_share_records(void **state) {
  (void)state;
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "server");
  srv_t s;
  srv_start(&s, &so);
  mprpc_tls_ctx_t *cx = client_ctx("ca.pem", NULL, NULL);
  uint8_t *pl = make_payload(KIB);
  crig_t r;
  crig_init(&r);
  cl_t k;
  cl_init(&k, &r, mprpc_tls_transport(mprpc_tcp_transport(), cx), s.port, pl, 0);
  k.small_writes = 1000;
  k.measure = cx;
  k.manual = true;
  assert_int_equal(mprpc_loop_post(r.loop, k_start, &k), 0);
  bool ok = done_wait(&r.done, 1);
  crig_free(&r);
  mprpc_rbuf_free(&k.in);
  assert_true(ok);
  assert_int_equal(k.bad, 0);
  assert_int_equal(k.small_app, 1000 * 72);
  double per = (double)(k.small_wire - k.small_app) / 1000.0;
  printf("TLS-MEASURE writev_iovecs=3 plain_bytes=72 overhead_bytes_per_writev=%.1f "
         "(a record per write would be 22 with TLS 1.3 AES-GCM, one per iovec 66)\n",
         per);
  assert_true(per < 2.0); /* 1000 writes: a few 16 KiB records and the close_notify */
  srv_stop(&s);
  mprpc_tls_ctx_free(cx);
  free(pl);
}

/* ---- high-water mark with the server's loop held ------------------------- */

typedef struct hold {
  done_t release;
} hold_t;

static void hold_loop(void *arg) {
  hold_t *h = arg;
  (void)done_wait(&h->release, 1);
}

typedef struct fill {
  cl_t *k;
  int rc, writes;
  size_t pending;
} fill_t;

static void fill_until_hwm(void *arg) {
  fill_t *f = arg;
  cl_t *k = f->k;
  f->rc = 0;
  for (int i = 0; i < 100000 && f->rc == 0; i++) {
    size_t n = 64 * KIB;
    if (k->written + n > k->len - 64 * KIB) {
      f->rc = -1; /* the payload ran out before the mark: fails below */
      break;
    }
    struct iovec iov = {(void *)(k->payload + k->written), n};
    f->rc = mprpc_conn_writev(k->tp, k->c, &iov, 1);
    if (f->rc == 0) {
      k->written += n;
      f->writes++;
    }
  }
  f->pending = mprpc_conn_out_pending(k->tp, k->c);
  k->len = k->written; /* echo wanted for what was accepted */
  k->manual = false;   /* on_writable may pump (nothing is left to write) */
}

static void test_tls_high_water_mark_respected(void **state) {
  (void)state;
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "server");
  srv_t s;
  srv_start(&s, &so);
  mprpc_tls_ctx_t *cx = client_ctx("ca.pem", NULL, NULL);
  size_t cap = 64 * MIB;
  uint8_t *pl = make_payload(cap);
  crig_t r;
  crig_init(&r);
  done_t connected;
  done_init(&connected);
  cl_t k;
  cl_init(&k, &r, mprpc_tls_transport(mprpc_tcp_transport(), cx), s.port, pl, cap);
  k.manual = true;
  k.opts.high_water = 256 * KIB;
  k.connected_done = &connected;
  assert_int_equal(mprpc_loop_post(r.loop, k_start, &k), 0);
  assert_true(done_wait(&connected, 1));
  /* The server stops reading: its loop is held. */
  hold_t h;
  done_init(&h.release);
  assert_int_equal(mprpc_loop_post(mprpc_loop_group_loop(s.g, 0), hold_loop, &h), 0);
  fill_t f = {.k = &k};
  sync_on(r.loop, fill_until_hwm, &f);
  done_signal(&h.release);
  bool ok = done_wait(&r.done, 1);
  crig_free(&r);
  mprpc_rbuf_free(&k.in);
  assert_true(ok);
  assert_int_equal(f.rc, MPRPC_EHWM);
  assert_true(f.writes > 0);
  assert_true(f.pending <= 256 * KIB);
  assert_true(f.pending + 64 * KIB > 256 * KIB);
  assert_true(k.writable >= 1); /* the backlog drained once the server read */
  assert_int_equal(k.echoed, k.written);
  assert_int_equal(k.mismatch, 0);
  assert_int_equal(k.bad, 0);
  done_destroy(&connected);
  done_destroy(&h.release);
  srv_stop(&s);
  mprpc_tls_ctx_free(cx);
  free(pl);
}

/* A write made outside the connection's callbacks (here from a loop post)
 * is corked, counted as pending, and encrypted by the cork's timer: the
 * echo comes back though nothing else happens on the connection. */
typedef struct late_write {
  cl_t *k;
  int rc;
  size_t pending;
} late_write_t;

static void write_late(void *arg) {
  late_write_t *w = arg;
  struct iovec v = {(void *)w->k->payload, w->k->len};
  w->rc = mprpc_conn_writev(w->k->tp, w->k->c, &v, 1);
  w->pending = mprpc_conn_out_pending(w->k->tp, w->k->c);
  w->k->written = w->k->len;
}

static void test_tls_write_outside_callbacks_flushed_by_timer(void **state) {
  (void)state;
  char b[3][512];
  mprpc_tls_opts_t so;
  srv_opts(&so, b, "server");
  srv_t s;
  srv_start(&s, &so);
  mprpc_tls_ctx_t *cx = client_ctx("ca.pem", NULL, NULL);
  uint8_t *pl = make_payload(300);
  crig_t r;
  crig_init(&r);
  done_t connected;
  done_init(&connected);
  cl_t k;
  cl_init(&k, &r, mprpc_tls_transport(mprpc_tcp_transport(), cx), s.port, pl, 300);
  k.manual = true;
  k.connected_done = &connected;
  assert_int_equal(mprpc_loop_post(r.loop, k_start, &k), 0);
  assert_true(done_wait(&connected, 1));
  late_write_t w = {.k = &k};
  sync_on(r.loop, write_late, &w);
  bool ok = done_wait(&r.done, 1); /* closed once the echo is complete */
  crig_free(&r);
  mprpc_rbuf_free(&k.in);
  assert_true(ok);
  assert_int_equal(w.rc, 0);
  assert_int_equal(w.pending, 300); /* corked: not encrypted yet */
  assert_int_equal(k.echoed, 300);
  assert_int_equal(k.mismatch, 0);
  assert_int_equal(k.bad, 0);
  done_destroy(&connected);
  srv_stop(&s);
  mprpc_tls_ctx_free(cx);
  free(pl);
}

/* ---- setup ------------------------------------------------------------------ */

static int make_certs(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/mprpc-test-tls.XXXXXX");
  if (!mkdtemp(g_dir))
    return -1;
  char script[512] = "tests/support/tls_certs.sh";
  if (access(script, R_OK) != 0) {
    /* Run from elsewhere: next to this file. */
    snprintf(script, sizeof script, "%s", __FILE__);
    char *slash = strrchr(script, '/');
    snprintf(slash ? slash + 1 : script, sizeof script - (size_t)(slash ? slash + 1 - script : 0),
             "support/tls_certs.sh");
  }
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "sh '%s' '%s'", script, g_dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "could not make test certificates with: %s\n", cmd);
    return -1;
  }
  return 0;
}

static int remove_certs(void **state) {
  (void)state;
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tls_echo_with_verified_server),
      cmocka_unit_test(test_tls_mtls_client_certificate_accepted),
      cmocka_unit_test(test_tls_mtls_client_without_certificate_rejected),
      cmocka_unit_test(test_tls_untrusted_ca_rejected),
      cmocka_unit_test(test_tls_wrong_ip_rejected),
      cmocka_unit_test(test_tls_wrong_name_rejected),
      cmocka_unit_test(test_tls_expired_certificate_rejected),
      cmocka_unit_test(test_tls_plain_client_on_required_port_closed),
      cmocka_unit_test(test_tls_optional_port_serves_plain_and_tls_at_once),
      cmocka_unit_test(test_tls_session_resumed_on_reconnect),
      cmocka_unit_test(test_tls_reload_serves_renewed_certificate),
      cmocka_unit_test(test_tls_ctx_new_refuses_bad_files),
      cmocka_unit_test(test_tls_garbage_handshake_closes_only_that_connection),
      cmocka_unit_test(test_tls_handshake_timeout_closes_silent_client),
      cmocka_unit_test(test_tls_8mib_both_directions_in_many_writes),
      cmocka_unit_test(test_tls_small_writes_share_records),
      cmocka_unit_test(test_tls_write_outside_callbacks_flushed_by_timer),
      cmocka_unit_test(test_tls_high_water_mark_respected),
  };
  return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
