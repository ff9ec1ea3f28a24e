/*
 * Provider tests, in two groups sharing one test service (EchoService whose
 * Echo handler obeys commands in the request message):
 *  - "core": the server core on a tiny fake loop + transport in this file
 *    (single thread, manual clock): proves the core runs without src/rt and
 *    makes deadlines, idle timers and shutdown deterministic.
 *  - "tcp": a real provider on the libev runtime over loopback, driven by
 *    the blocking test client (tests/support/test_client.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/compress.h"
#include "core/timerq.h"
#include "echo.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
#include "support/test_client.h"

#define GUARD_MS 10000

/* ======================================================================
 * Test service. Commands (request message):
 *   "hold"       keep the closure; the test completes it (held_complete)
 *   "null"       closure(NULL)                      -> EINTERNAL
 *   "twice"      closure called twice inline        -> one response "first"
 *   "error"      set_error(4242, "application error")
 *   "meta"       answer with the call's meta fields
 *   "sleep:N"    block N ms, then echo (tcp group)
 *   "zip:N..."   answer with compress_type N (set_response_compress), echo
 *   "advance:N"  move the fake clock N ms, then echo (core group)
 *   anything     echo the message and the attachment back
 * ==================================================================== */

typedef struct fenv fenv_t;
static fenv_t *g_fenv;

#define MAX_HELD 8192
static struct {
  pthread_mutex_t mu;
  Example__EchoResponse_Closure cl[MAX_HELD];
  void *data[MAX_HELD];
  int n;
} held = {PTHREAD_MUTEX_INITIALIZER, {0}, {0}, 0};

static void fenv_advance_now(fenv_t *e, uint64_t ms);

static void svc_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                     Example__EchoResponse_Closure closure, void *data) {
  (void)svc;
  mprpc_server_call_t *call = mprpc_server_call_from(data);
  Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
  const char *msg = in->message;
  char buf[600];
  if (strcmp(msg, "hold") == 0) {
    pthread_mutex_lock(&held.mu);
    if (held.n < MAX_HELD) {
      held.cl[held.n] = closure;
      held.data[held.n] = data;
      held.n++;
    }
    pthread_mutex_unlock(&held.mu);
    return;
  }
  if (strncmp(msg, "sleep:", 6) == 0)
    usleep((useconds_t)atoi(msg + 6) * 1000);
  if (strncmp(msg, "zip:", 4) == 0 &&
      mprpc_server_call_set_response_compress(call, atoi(msg + 4)) != 0) {
    mprpc_server_call_set_error(call, 4243, "bad compress type");
    out.message = "ignored";
    closure(&out, data);
    return;
  }
  if (strncmp(msg, "advance:", 8) == 0 && g_fenv)
    fenv_advance_now(g_fenv, (uint64_t)atoi(msg + 8));
  if (strcmp(msg, "null") == 0) {
    closure(NULL, data);
    return;
  }
  if (strcmp(msg, "twice") == 0) {
    out.message = "first";
    closure(&out, data);
    out.message = "second";
    closure(&out, data);
    return;
  }
  if (strcmp(msg, "error") == 0) {
    mprpc_server_call_set_error(call, 4242, "application error");
    out.message = "ignored";
    closure(&out, data);
    return;
  }
  if (strcmp(msg, "meta") == 0) {
    const mprpc_server_call_meta_t *m = mprpc_server_call_meta(call);
    int64_t rem = mprpc_server_call_remaining_ns(call);
    snprintf(buf, sizeof buf, "log=%lld trace=%lld span=%lld rid=%s timeout=%d %s.%s peer=%s rem=%s",
             (long long)m->log_id, (long long)m->trace_id, (long long)m->span_id, m->request_id,
             (int)m->timeout_ms, m->service, m->method, m->peer[0] ? "set" : "empty",
             rem == INT64_MAX ? "none" : rem > 0 ? "bounded" : "passed");
    out.message = buf;
    closure(&out, data);
    return;
  }
  size_t alen;
  const uint8_t *a = mprpc_server_call_attachment(call, &alen);
  if (alen)
    mprpc_server_call_set_attachment(call, a, alen);
  out.message = (char *)msg;
  closure(&out, data);
}

static Example__EchoService_Service echo_svc = EXAMPLE__ECHO_SERVICE__INIT(svc_);

static int held_count(void) {
  pthread_mutex_lock(&held.mu);
  int n = held.n;
  pthread_mutex_unlock(&held.mu);
  return n;
}

/* Completes held call i (0 = oldest) with message msg, or NULL output. */
static void held_complete(int i, const char *msg) {
  pthread_mutex_lock(&held.mu);
  assert_true(i < held.n);
  Example__EchoResponse_Closure cl = held.cl[i];
  void *data = held.data[i];
  memmove(&held.cl[i], &held.cl[i + 1], (size_t)(held.n - i - 1) * sizeof held.cl[0]);
  memmove(&held.data[i], &held.data[i + 1], (size_t)(held.n - i - 1) * sizeof held.data[0]);
  held.n--;
  pthread_mutex_unlock(&held.mu);
  Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
  out.message = (char *)msg;
  cl(msg ? &out : NULL, data);
}

static void held_forget(void) {
  pthread_mutex_lock(&held.mu);
  held.n = 0;
  pthread_mutex_unlock(&held.mu);
}

static tclient_req_t echo_req(int64_t cid, Example__EchoRequest *m, const char *text) {
  example__echo_request__init(m);
  m->message = (char *)text;
  return (tclient_req_t){.cid = cid, .msg = &m->base};
}

/* An Echo request whose payload is the packed request compressed with type
 * (0: plain); the payload lives in *buf, which the caller frees. */
static tclient_req_t zecho_req(int64_t cid, int type, const char *text, uint8_t **buf) {
  Example__EchoRequest m = EXAMPLE__ECHO_REQUEST__INIT;
  m.message = (char *)text;
  size_t n;
  assert_int_equal(tclient_pack(&m.base, type, buf, &n), 0);
  return (tclient_req_t){.cid = cid, .raw = *buf, .raw_len = n, .compress_type = type};
}

/* Expects a success whose payload is compressed with type (0: plain) and
 * inflates to an EchoResponse carrying want. Inflated here rather than by
 * tclient_echo_decode so that the type is checked against the meta. */
static void expect_zecho(const tclient_resp_t *r, int64_t cid, int type, const char *want) {
  assert_int_equal(r->cid, cid);
  if (r->error_code != 0)
    fail_msg("cid %lld: error %d (%s)", (long long)cid, r->error_code, r->error_text);
  assert_int_equal(r->compress_type, type);
  uint8_t *plain = NULL;
  size_t plen = r->payload_len;
  if (type != MPRPC_COMPRESS_NONE)
    assert_int_equal(mprpc__decompress(type, r->payload, r->payload_len,
                                       MPRPC_FRAME_DEFAULT_MAX_BODY, &plain, &plen),
                     0);
  Example__EchoResponse *e = example__echo_response__unpack(NULL, plen, plain ? plain : r->payload);
  free(plain);
  assert_non_null(e);
  assert_int_equal(strlen(e->message), strlen(want));
  assert_true(strcmp(e->message, want) == 0); /* no 100 KiB dump on failure */
  example__echo_response__free_unpacked(e, NULL);
}

/* ---- fake registry ------------------------------------------------------ */

typedef struct freg {
  int fail_after; /* register fails once nreg reaches it; -1 = never */
  int nreg, nunreg;
  char service[64], host[64], methods[128];
  uint16_t port;
  uint32_t weight;
  uint64_t start_ms;
} freg_t;

static int freg_register(void *ctx, const mprpc_instance_t *i) {
  freg_t *r = ctx;
  if (r->fail_after >= 0 && r->nreg >= r->fail_after)
    return MPRPC_EREGISTRY;
  r->nreg++;
  snprintf(r->service, sizeof r->service, "%s", i->service);
  snprintf(r->host, sizeof r->host, "%s", i->host);
  snprintf(r->methods, sizeof r->methods, "%s", i->methods ? i->methods : "");
  r->port = i->port;
  r->weight = i->weight;
  r->start_ms = i->start_time_ms;
  return 0;
}
static int freg_unregister(void *ctx, const char *service, const char *host, uint16_t port) {
  freg_t *r = ctx;
  (void)service, (void)host, (void)port;
  r->nunreg++;
  return 0;
}
static int freg_subscribe(void *ctx, const char *s, mprpc_loop_t l, mprpc_registry_watch_cb cb,
                          void *ud, uint64_t *id) {
  (void)ctx, (void)s, (void)l, (void)cb, (void)ud, (void)id;
  return MPRPC_EUNSUPPORTED;
}
static void freg_unsubscribe(void *ctx, uint64_t id) { (void)ctx, (void)id; }
static int freg_health(void *ctx) {
  (void)ctx;
  return MPRPC_REG_HEALTHY;
}
static void freg_close(void *ctx) { (void)ctx; }
static const mprpc_registry_ops_t freg_ops = {freg_register, freg_unregister, freg_subscribe,
                                              freg_unsubscribe, freg_health, freg_close};

/* ======================================================================
 * Fake loop + transport: one thread, a manual clock, a timer queue, a post
 * queue; connections are byte sinks the test reads frames from.
 * ==================================================================== */

struct mprpc_conn {
  fenv_t *e;
  const mprpc_conn_handler_t *h;
  void *ud;
  mprpc_rbuf_t *in;
  uint8_t *out;
  size_t olen, ocap, opos;
  int close_posted, closed;
  int refuse_writes; /* writev answers MPRPC_EHWM */
};

#define FPOSTS 65536
struct fenv {
  uint64_t now;
  mprpc__timerq_t tq;
  mprpc_post_cb pfn[FPOSTS];
  void *parg[FPOSTS];
  size_t ph, pt;
  mprpc_xoshiro_t rng;
  mprpc_listen_opts_t lo;
  int listening, listener_closed;
  mprpc_loop_t loop;
  mprpc_transport_t tr;
};

static uint64_t f_now(void *ctx) { return ((fenv_t *)ctx)->now; }
static uint64_t f_wall(void *ctx) { return ((fenv_t *)ctx)->now + 1700000000ull * MPRPC_NS_PER_S; }
static uint64_t f_timer_start(void *ctx, uint64_t d, mprpc_timer_cb cb, void *arg) {
  fenv_t *e = ctx;
  return mprpc__timerq_add(&e->tq, e->now + d, cb, arg);
}
static void f_timer_cancel(void *ctx, uint64_t id) { mprpc__timerq_cancel(&((fenv_t *)ctx)->tq, id); }
static int f_post(void *ctx, mprpc_post_cb fn, void *arg) {
  fenv_t *e = ctx;
  if (e->pt - e->ph >= FPOSTS)
    return MPRPC_ENOMEM;
  e->pfn[e->pt % FPOSTS] = fn;
  e->parg[e->pt % FPOSTS] = arg;
  e->pt++;
  return 0;
}
static bool f_in_loop(void *ctx) {
  (void)ctx;
  return true;
}
static mprpc_rand_t f_rand(void *ctx) { return mprpc_rand_xoshiro(&((fenv_t *)ctx)->rng); }
static const mprpc_loop_ops_t f_loop_ops = {f_now, f_wall, f_timer_start, f_timer_cancel, f_post,
                                            f_in_loop, f_rand, NULL, NULL, NULL, NULL};

static int f_listen(void *ctx, const mprpc_listen_opts_t *o, mprpc_listener_t **out) {
  fenv_t *e = ctx;
  e->lo = *o;
  e->listening = 1;
  *out = (mprpc_listener_t *)e;
  return 0;
}
static uint16_t f_port(void *ctx, mprpc_listener_t *l) {
  (void)ctx, (void)l;
  return 4242;
}
static void f_listener_close(void *ctx, mprpc_listener_t *l) {
  (void)l;
  ((fenv_t *)ctx)->listener_closed = 1;
}
static int f_connect(void *ctx, mprpc_loop_t loop, const char *host, uint16_t port,
                     const mprpc_conn_opts_t *o, const mprpc_conn_handler_t *h, void *ud,
                     mprpc_rbuf_t *in, mprpc_conn_t **out) {
  (void)ctx, (void)loop, (void)host, (void)port, (void)o, (void)h, (void)ud, (void)in, (void)out;
  return MPRPC_EUNSUPPORTED;
}
static void f_setup(void *ctx, mprpc_conn_t *c, const mprpc_conn_handler_t *h, void *ud,
                    mprpc_rbuf_t *in) {
  (void)ctx;
  c->h = h;
  c->ud = ud;
  c->in = in;
}
static int f_writev(void *ctx, mprpc_conn_t *c, const struct iovec *iov, int n) {
  (void)ctx;
  if (c->refuse_writes)
    return MPRPC_EHWM;
  for (int i = 0; i < n; i++) {
    if (c->olen + iov[i].iov_len > c->ocap) {
      size_t nc = (c->ocap ? c->ocap * 2 : 4096) + iov[i].iov_len;
      c->out = realloc(c->out, nc);
      c->ocap = nc;
    }
    if (iov[i].iov_len)
      memcpy(c->out + c->olen, iov[i].iov_base, iov[i].iov_len);
    c->olen += iov[i].iov_len;
  }
  return 0;
}
static size_t f_pending(void *ctx, mprpc_conn_t *c) {
  (void)ctx, (void)c;
  return 0;
}
static void f_fire_close(void *arg) {
  mprpc_conn_t *c = arg;
  c->closed = 1;
  if (c->h)
    c->h->on_close(c, c->ud, MPRPC_CLOSE_LOCAL, 0);
}
static void f_close(void *ctx, mprpc_conn_t *c, bool flush) {
  (void)flush;
  if (c->close_posted)
    return;
  c->close_posted = 1;
  f_post(ctx, f_fire_close, c);
}
static const char *f_peer(void *ctx, mprpc_conn_t *c) {
  (void)ctx, (void)c;
  return "10.0.0.7:5555";
}
static const mprpc_transport_ops_t f_tr_ops = {f_listen, f_port, f_listener_close, f_connect,
                                               f_setup, f_writev, f_pending, f_close, f_peer};

static fenv_t *fenv_new(void) {
  fenv_t *e = calloc(1, sizeof *e);
  mprpc__timerq_init(&e->tq);
  mprpc_xoshiro_seed(&e->rng, 7);
  e->now = 1000 * MPRPC_NS_PER_S;
  e->loop = (mprpc_loop_t){&f_loop_ops, e};
  e->tr = (mprpc_transport_t){&f_tr_ops, e};
  g_fenv = e;
  return e;
}

/* Runs posts and due timers until nothing is left at the current time. */
static void fenv_run(fenv_t *e) {
  for (int guard = 0; guard < 1000000; guard++) {
    if (e->ph != e->pt) {
      mprpc_post_cb fn = e->pfn[e->ph % FPOSTS];
      void *arg = e->parg[e->ph % FPOSTS];
      e->ph++;
      fn(arg);
      continue;
    }
    if (mprpc__timerq_run_due(&e->tq, e->now) == 0)
      return;
  }
  fail_msg("fake loop did not settle");
}

static void fenv_advance_now(fenv_t *e, uint64_t ms) { e->now += ms * MPRPC_NS_PER_MS; }

/* Moves the clock forward, firing timers at their deadlines. */
static void fenv_advance(fenv_t *e, uint64_t ms) {
  uint64_t target = e->now + ms * MPRPC_NS_PER_MS, d;
  fenv_run(e);
  for (int guard = 0; guard < 1000000; guard++) {
    if (!mprpc__timerq_peek(&e->tq, &d) || d > target)
      break;
    if (d > e->now)
      e->now = d;
    fenv_run(e);
  }
  e->now = target;
  fenv_run(e);
}

static void fenv_free(fenv_t *e) {
  fenv_run(e);
  mprpc__timerq_free(&e->tq);
  g_fenv = NULL;
  free(e);
}

static mprpc_conn_t *fconn_new(fenv_t *e) {
  mprpc_conn_t *c = calloc(1, sizeof *c);
  c->e = e;
  e->lo.on_accept(e->lo.ud, c, e->loop);
  assert_non_null(c->h);
  fenv_run(e);
  return c;
}

static void fconn_free(mprpc_conn_t *c) {
  free(c->out);
  free(c);
}

static void fconn_feed(mprpc_conn_t *c, const void *p, size_t n) {
  assert_false(c->closed);
  assert_int_equal(mprpc_rbuf_append(c->in, p, n), 0);
  c->h->on_data(c, c->ud, c->in);
  fenv_run(c->e);
}

static void fconn_send(mprpc_conn_t *c, const tclient_req_t *r) {
  uint8_t *f;
  size_t n;
  assert_int_equal(tclient_encode(r, &f, &n), 0);
  fconn_feed(c, f, n);
  free(f);
}

/* Next response written to the fake connection; false when none yet. */
static bool fconn_resp(mprpc_conn_t *c, tclient_resp_t *r) {
  mprpc_frame_t f;
  memset(r, 0, sizeof *r);
  long n = mprpc_frame_parse(c->out + c->opos, c->olen - c->opos, 0, &f);
  assert_true(n >= 0);
  if (n == 0)
    return false;
  assert_true(f.meta.has_response);
  r->cid = f.meta.correlation_id;
  r->error_code = f.meta.error_code;
  r->compress_type = f.meta.compress_type;
  snprintf(r->error_text, sizeof r->error_text, "%.*s", (int)f.meta.error_text.len,
           f.meta.error_text.len ? (const char *)f.meta.error_text.ptr : "");
  r->payload = malloc(f.payload.len + 1);
  memcpy(r->payload, f.payload.ptr ? f.payload.ptr : (const uint8_t *)"", f.payload.len);
  r->payload_len = f.payload.len;
  r->att = malloc(f.attachment.len + 1);
  memcpy(r->att, f.attachment.ptr ? f.attachment.ptr : (const uint8_t *)"", f.attachment.len);
  r->att_len = f.attachment.len;
  c->opos += (size_t)n;
  return true;
}

/* Expects one response with this cid and error code; returns its message. */
static void fexpect(mprpc_conn_t *c, int64_t cid, int err, char *msg, size_t cap) {
  tclient_resp_t r;
  assert_true(fconn_resp(c, &r));
  assert_int_equal(r.cid, cid);
  if (r.error_code != mprpc_err_to_wire(err))
    fail_msg("cid %lld: got error %d (%s), want %d", (long long)cid, r.error_code, r.error_text,
             mprpc_err_to_wire(err));
  if (msg) {
    msg[0] = 0;
    if (!err)
      assert_int_equal(tclient_echo_decode(&r, msg, cap), 0);
    else
      snprintf(msg, cap, "%s", r.error_text);
  }
  tclient_resp_free(&r);
}

typedef struct fsrv {
  fenv_t *e;
  mprpc_server_t *s;
  freg_t reg;
} fsrv_t;

/* A server with the echo service in a fake env, not started yet. */
static void fsrv_new(fsrv_t *f, mprpc_server_opts_t *o) {
  memset(f, 0, sizeof *f);
  held_forget();
  f->e = fenv_new();
  o->transport = f->e->tr;
  o->loops = &f->e->loop;
  o->nloops = 1;
  assert_int_equal(mprpc_server_new(o, &f->s), 0);
  assert_int_equal(mprpc_server_add_service(f->s, &echo_svc.base), 0);
}

static void fsrv_go(fsrv_t *f) {
  assert_int_equal(mprpc_server_start(f->s), 0);
  fenv_run(f->e);
}

static void fsrv_start(fsrv_t *f, mprpc_server_opts_t *o) {
  fsrv_new(f, o);
  fsrv_go(f);
}

static void fsrv_opts(mprpc_server_opts_t *o) {
  mprpc_server_opts_init(o);
  o->host = "127.0.0.1";
}

static void fsrv_free(fsrv_t *f) {
  mprpc_server_destroy(f->s);
  fenv_free(f->e);
}

static void done_cb(void *ud) { (*(int *)ud)++; }

/* Server shutdown in the fake env, so destroy finds it stopped. */
static void fsrv_shutdown(fsrv_t *f) {
  int done = 0;
  if (mprpc_server_shutdown(f->s, done_cb, &done) == 0) {
    fenv_advance(f->e, 10000);
    assert_int_equal(done, 1);
  }
}

/* ---- core group ------------------------------------------------------------ */

static void test_server_core_echo_and_attachment(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  Example__EchoRequest m;
  tclient_req_t r = echo_req(77, &m, "hello");
  r.att = "ATTACH";
  r.att_len = 6;
  fconn_send(c, &r);
  tclient_resp_t resp;
  assert_true(fconn_resp(c, &resp));
  assert_int_equal(resp.cid, 77);
  assert_int_equal(resp.error_code, 0);
  char text[128];
  assert_int_equal(tclient_echo_decode(&resp, text, sizeof text), 0);
  assert_string_equal(text, "hello");
  assert_int_equal(resp.att_len, 6);
  assert_memory_equal(resp.att, "ATTACH", 6);
  tclient_resp_free(&resp);

  r = echo_req(78, &m, "meta");
  r.log_id = 11;
  r.trace_id = 22;
  r.span_id = 33;
  r.request_id = "rq-1";
  r.timeout_ms = 500;
  fconn_send(c, &r);
  fexpect(c, 78, 0, text, sizeof text);
  assert_string_equal(text, "log=11 trace=22 span=33 rid=rq-1 timeout=500 "
                            "example.EchoService.Echo peer=set rem=bounded");
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(c);
}

static void test_server_core_split_and_coalesced(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  /* three requests in one buffer, fed one byte at a time, then all at once */
  uint8_t all[4096];
  size_t n = 0;
  for (int i = 0; i < 3; i++) {
    Example__EchoRequest m;
    char msg[16];
    snprintf(msg, sizeof msg, "m%d", i);
    tclient_req_t r = echo_req(i + 1, &m, msg);
    r.att = "xy";
    r.att_len = 2;
    uint8_t *fr;
    size_t fl;
    assert_int_equal(tclient_encode(&r, &fr, &fl), 0);
    memcpy(all + n, fr, fl);
    n += fl;
    free(fr);
  }
  for (size_t i = 0; i < n; i++)
    fconn_feed(c, all + i, 1);
  fconn_feed(c, all, n);
  for (int round = 0; round < 2; round++)
    for (int i = 0; i < 3; i++) {
      char text[32], want[16];
      snprintf(want, sizeof want, "m%d", i);
      fexpect(c, i + 1, 0, text, sizeof text);
      assert_string_equal(text, want);
    }
  tclient_resp_t extra;
  assert_false(fconn_resp(c, &extra));
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(c);
}

static void test_server_core_routing_errors_keep_connection(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  Example__EchoRequest m;
  char text[256];
  tclient_req_t r = echo_req(1, &m, "x");
  r.service = "example.NoSuch";
  fconn_send(c, &r);
  fexpect(c, 1, MPRPC_ENOSERVICE, text, sizeof text);
  assert_non_null(strstr(text, "example.NoSuch"));
  /* the short name, as brpc clients without use_fullname send it */
  r = echo_req(21, &m, "short");
  r.service = "EchoService";
  fconn_send(c, &r);
  fexpect(c, 21, 0, text, sizeof text);
  assert_string_equal(text, "short");
  r = echo_req(2, &m, "x");
  r.method = "Nope";
  fconn_send(c, &r);
  fexpect(c, 2, MPRPC_ENOMETHOD, text, sizeof text);
  assert_non_null(strstr(text, "Nope"));
  /* an empty payload lacks the required `message`: does not decode */
  r = (tclient_req_t){.cid = 3, .raw = "\xff\xff", .raw_len = 2};
  fconn_send(c, &r);
  fexpect(c, 3, MPRPC_EREQUEST, NULL, 0);
  r = (tclient_req_t){.cid = 4, .raw = "", .raw_len = 0};
  fconn_send(c, &r);
  fexpect(c, 4, MPRPC_EREQUEST, NULL, 0);
  /* compress types brpc has but we do not (4 = LZ4), and nonsense */
  r = echo_req(5, &m, "x");
  r.compress_type = 4;
  fconn_send(c, &r);
  fexpect(c, 5, MPRPC_EREQUEST, text, sizeof text);
  assert_string_equal(text, "compress_type 4 is not supported");
  r = echo_req(51, &m, "x");
  r.compress_type = 99;
  fconn_send(c, &r);
  fexpect(c, 51, MPRPC_EREQUEST, text, sizeof text);
  assert_string_equal(text, "compress_type 99 is not supported");
  /* brpc clients may send json (content_type 1): refused, connection kept */
  r = echo_req(55, &m, "x");
  r.content_type = 1;
  fconn_send(c, &r);
  fexpect(c, 55, MPRPC_EREQUEST, text, sizeof text);
  assert_non_null(strstr(text, "content_type 1"));
  r = echo_req(6, &m, "null");
  fconn_send(c, &r);
  fexpect(c, 6, MPRPC_EINTERNAL, NULL, 0);
  r = echo_req(7, &m, "error");
  fconn_send(c, &r);
  tclient_resp_t resp;
  assert_true(fconn_resp(c, &resp));
  assert_int_equal(resp.error_code, 4242);
  assert_string_equal(resp.error_text, "application error");
  assert_int_equal(resp.payload_len, 0);
  tclient_resp_free(&resp);
  r = echo_req(8, &m, "still here");
  fconn_send(c, &r);
  fexpect(c, 8, 0, text, sizeof text);
  assert_string_equal(text, "still here");
  assert_false(c->closed);
  mprpc_server_stats_t st;
  mprpc_server_stats(f.s, &st);
  assert_int_equal(st.unknown_service, 1);
  assert_int_equal(st.unknown_method, 1);
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats(f.s, "example.EchoService", "Echo", &ms), 0);
  assert_int_equal(ms.requests, 9);
  assert_int_equal(ms.errors, 7);
  assert_int_equal(ms.errors_by_code[0], 5); /* EREQUEST: 2 payloads, 2 compress, content_type */
  assert_int_equal(mprpc_server_stats_code(0), MPRPC_EREQUEST);
  assert_int_equal(ms.errors_by_code[3], 1); /* EINTERNAL */
  assert_int_equal(ms.errors_by_code[MPRPC_SERVER_NCODES - 1], 1); /* 4242 */
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(c);
}

/* A gzip request is inflated before decoding and answered in gzip. */
static void test_server_core_compressed_echo(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  uint8_t *pl;
  tclient_req_t r = zecho_req(1, MPRPC_COMPRESS_GZIP, "zipped", &pl);
  fconn_send(c, &r);
  free(pl);
  tclient_resp_t resp;
  assert_true(fconn_resp(c, &resp));
  expect_zecho(&resp, 1, MPRPC_COMPRESS_GZIP, "zipped");
  tclient_resp_free(&resp);
  Example__EchoRequest m;
  r = echo_req(2, &m, "plain");
  fconn_send(c, &r);
  assert_true(fconn_resp(c, &resp));
  expect_zecho(&resp, 2, MPRPC_COMPRESS_NONE, "plain");
  tclient_resp_free(&resp);
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(c);
}

static void test_server_core_malformed_closes_only_that_connection(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  o.max_body = 1024;
  fsrv_start(&f, &o);
  mprpc_conn_t *good = fconn_new(f.e);
  Example__EchoRequest m;
  for (int k = 0; k < 4; k++) {
    mprpc_conn_t *bad = fconn_new(f.e);
    if (k == 0) {
      fconn_feed(bad, "GET / HTTP/1.1\r\n\r\n", 18);
    } else if (k == 1) {
      /* header alone claims a body over the limit */
      uint8_t h[12] = {'P', 'R', 'P', 'C', 0, 0, 0x10, 0, 0, 0, 0, 4};
      fconn_feed(bad, h, sizeof h);
    } else {
      tclient_req_t r = echo_req(9, &m, "x");
      if (k == 2)
        r.response_meta = 1;
      else
        r.no_request = 1;
      fconn_send(bad, &r);
    }
    assert_true(bad->closed);
    tclient_resp_t none;
    assert_false(fconn_resp(bad, &none));
    fconn_free(bad);
    tclient_req_t r = echo_req(100 + k, &m, "ok");
    fconn_send(good, &r);
    fexpect(good, 100 + k, 0, NULL, 0);
  }
  mprpc_server_stats_t st;
  mprpc_server_stats(f.s, &st);
  assert_int_equal(st.malformed_frames, 4);
  assert_int_equal(st.connections_open, 1);
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(good);
}

static void test_server_core_deadline_passed_before_dispatch(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  /* A slow inline handler (moves the clock 100 ms) and, in the same bytes,
   * two requests with 50 ms and 500 ms budgets: the first has expired by the
   * time it is dispatched, the second has not. */
  uint8_t all[1024];
  size_t n = 0;
  const char *msgs[3] = {"advance:100", "late", "in time"};
  int32_t tmo[3] = {0, 50, 500};
  for (int i = 0; i < 3; i++) {
    Example__EchoRequest m;
    tclient_req_t r = echo_req(i + 1, &m, msgs[i]);
    r.timeout_ms = tmo[i];
    uint8_t *fr;
    size_t fl;
    assert_int_equal(tclient_encode(&r, &fr, &fl), 0);
    memcpy(all + n, fr, fl);
    n += fl;
    free(fr);
  }
  fconn_feed(c, all, n);
  fexpect(c, 1, 0, NULL, 0);
  fexpect(c, 2, MPRPC_ERPCTIMEDOUT, NULL, 0);
  fexpect(c, 3, 0, NULL, 0);
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats_at(f.s, 0, &ms), 0);
  assert_int_equal(ms.errors_by_code[2], 1);
  assert_int_equal(mprpc_server_stats_code(2), MPRPC_ERPCTIMEDOUT);
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(c);
}

static void test_server_core_limits(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  o.max_concurrency = 3;
  fsrv_new(&f, &o);
  assert_int_equal(mprpc_server_set_method_limit(f.s, "example.EchoService", "Echo", 2), 0);
  assert_int_equal(mprpc_server_set_method_limit(f.s, "example.EchoService", "Nope", 2),
                   MPRPC_ENOTFOUND);
  assert_int_equal(mprpc_server_set_method_limit(NULL, "example.EchoService", "Echo", 2),
                   MPRPC_EINVAL);
  fsrv_go(&f);
  /* In flight is counted differently with and without a limit, so the
   * limit is fixed once the server runs. */
  assert_int_equal(mprpc_server_set_method_limit(f.s, "example.EchoService", "Echo", 0),
                   MPRPC_ESTATE);
  mprpc_conn_t *c = fconn_new(f.e);
  Example__EchoRequest m;
  tclient_req_t r;
  for (int i = 1; i <= 2; i++) {
    r = echo_req(i, &m, "hold");
    fconn_send(c, &r);
  }
  assert_int_equal(held_count(), 2);
  r = echo_req(3, &m, "over");
  fconn_send(c, &r);
  fexpect(c, 3, MPRPC_ELIMIT, NULL, 0);
  assert_int_equal(held_count(), 2); /* handler not run */
  mprpc_method_stats_t ms;
  mprpc_server_method_stats_at(f.s, 0, &ms);
  assert_int_equal(ms.inflight, 2);
  held_complete(1, "b");
  fexpect(c, 2, 0, NULL, 0);
  held_complete(0, "a");
  fexpect(c, 1, 0, NULL, 0);
  r = echo_req(4, &m, "fine");
  fconn_send(c, &r);
  fexpect(c, 4, 0, NULL, 0);
  mprpc_server_method_stats_at(f.s, 0, &ms);
  assert_int_equal(ms.inflight, 0);
  assert_int_equal(ms.errors_by_code[5], 1);
  assert_int_equal(mprpc_server_stats_code(5), MPRPC_ELIMIT);
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(c);
}

static int auth_cb(void *ud, const uint8_t *data, size_t len, const char *peer) {
  (*(int *)ud)++;
  assert_non_null(peer);
  return len == 6 && memcmp(data, "secret", 6) == 0 ? 0 : -1;
}

static void test_server_core_authentication(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  int calls = 0;
  fsrv_opts(&o);
  o.authenticate = auth_cb;
  o.auth_ud = &calls;
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  Example__EchoRequest m;
  tclient_req_t r = echo_req(1, &m, "x");
  fconn_send(c, &r);
  fexpect(c, 1, MPRPC_ERPCAUTH, NULL, 0);
  r = echo_req(2, &m, "x");
  r.auth = "wrong!";
  fconn_send(c, &r);
  fexpect(c, 2, MPRPC_ERPCAUTH, NULL, 0);
  r = echo_req(3, &m, "x");
  r.auth = "secret";
  fconn_send(c, &r);
  fexpect(c, 3, 0, NULL, 0);
  r = echo_req(4, &m, "x"); /* connection is authenticated now */
  fconn_send(c, &r);
  fexpect(c, 4, 0, NULL, 0);
  assert_int_equal(calls, 3);
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(c);
}

static void test_server_core_idle_and_slowloris(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  o.idle_timeout_ms = 200;
  fsrv_start(&f, &o);
  mprpc_conn_t *idle = fconn_new(f.e);
  mprpc_conn_t *slow = fconn_new(f.e);
  mprpc_conn_t *busy = fconn_new(f.e);
  mprpc_conn_t *active = fconn_new(f.e);
  Example__EchoRequest m;
  tclient_req_t r = echo_req(1, &m, "hold");
  fconn_send(busy, &r);
  uint8_t *fr;
  size_t fl;
  r = echo_req(2, &m, "trickle-trickle-trickle-trickle-trickle");
  assert_int_equal(tclient_encode(&r, &fr, &fl), 0);
  fconn_feed(slow, fr, fl / 2);
  for (int t = 0; t < 10; t++) { /* 500 ms: slow trickles a byte, active calls */
    fenv_advance(f.e, 50);
    if (!slow->closed && fl / 2 + (size_t)t + 1 < fl)
      fconn_feed(slow, fr + fl / 2 + (size_t)t, 1);
    r = echo_req(10 + t, &m, "ping");
    fconn_send(active, &r);
    fexpect(active, 10 + t, 0, NULL, 0);
  }
  free(fr);
  assert_true(idle->closed);
  assert_true(slow->closed);
  assert_false(busy->closed); /* a call in flight keeps it open */
  assert_false(active->closed);
  held_complete(0, "done");
  fexpect(busy, 1, 0, NULL, 0);
  fenv_advance(f.e, 300);
  assert_true(busy->closed);
  assert_true(active->closed);
  mprpc_server_stats_t st;
  mprpc_server_stats(f.s, &st);
  assert_int_equal(st.connections_idle_closed, 4);
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(idle);
  fconn_free(slow);
  fconn_free(busy);
  fconn_free(active);
}

static void test_server_core_out_of_order_and_twice(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  Example__EchoRequest m;
  tclient_req_t r;
  for (int i = 1; i <= 3; i++) {
    r = echo_req(i, &m, "hold");
    fconn_send(c, &r);
  }
  held_complete(2, "three");
  held_complete(1, "two");
  held_complete(0, "one");
  char text[32];
  fexpect(c, 3, 0, text, sizeof text);
  assert_string_equal(text, "three");
  fexpect(c, 2, 0, NULL, 0);
  fexpect(c, 1, 0, NULL, 0);
  r = echo_req(4, &m, "twice");
  fconn_send(c, &r);
  fexpect(c, 4, 0, text, sizeof text);
  assert_string_equal(text, "first");
  tclient_resp_t none;
  assert_false(fconn_resp(c, &none));
  mprpc_server_stats_t st;
  mprpc_server_stats(f.s, &st);
  assert_int_equal(st.closures_twice, 1);
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(c);
}

static void test_server_core_closure_after_close_and_never(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  o.drain_timeout_ms = 100;
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  Example__EchoRequest m;
  tclient_req_t r = echo_req(1, &m, "hold");
  fconn_send(c, &r);
  r = echo_req(2, &m, "hold");
  r.att = "keep me";
  r.att_len = 7;
  fconn_send(c, &r);
  /* the peer goes away while both calls are held */
  c->close_posted = 1;
  c->closed = 1;
  c->h->on_close(c, c->ud, MPRPC_CLOSE_EOF, 0);
  /* the handler can still read its context, then answers: dropped */
  pthread_mutex_lock(&held.mu);
  mprpc_server_call_t *call = mprpc_server_call_from(held.data[1]);
  pthread_mutex_unlock(&held.mu);
  size_t alen;
  const uint8_t *a = mprpc_server_call_attachment(call, &alen);
  assert_int_equal(alen, 7);
  assert_memory_equal(a, "keep me", 7);
  held_complete(0, "late");
  fenv_run(f.e);
  mprpc_server_stats_t st;
  mprpc_server_stats(f.s, &st);
  assert_int_equal(st.responses_dropped, 1);
  assert_int_equal(st.inflight, 1);
  /* the other is never answered: drain times out, destroy frees it */
  fsrv_shutdown(&f);
  held_forget();
  fsrv_free(&f); /* ASan: no leak */
  fconn_free(c);
}

static void test_server_core_graceful_stop(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  freg_t *reg = calloc(1, sizeof *reg);
  reg->fail_after = -1;
  o.registry = (mprpc_registry_t){&freg_ops, reg};
  o.advertise_host = "10.1.2.3";
  o.version = "v9";
  o.weight = 7;
  fsrv_start(&f, &o);
  assert_int_equal(reg->nreg, 1);
  assert_string_equal(reg->service, "example.EchoService");
  assert_string_equal(reg->host, "10.1.2.3");
  assert_string_equal(reg->methods, "Echo");
  assert_int_equal(reg->port, 4242);
  assert_int_equal(reg->weight, 7);
  assert_true(reg->start_ms > 0);
  assert_int_equal(mprpc_server_port(f.s), 4242);
  mprpc_conn_t *c = fconn_new(f.e);
  Example__EchoRequest m;
  tclient_req_t r = echo_req(1, &m, "hold");
  fconn_send(c, &r);
  int done = 0;
  assert_int_equal(mprpc_server_shutdown(f.s, done_cb, &done), 0);
  assert_int_equal(mprpc_server_shutdown(f.s, done_cb, &done), MPRPC_ESTATE);
  assert_int_equal(reg->nunreg, 1); /* unregistered first */
  assert_true(f.e->listener_closed);
  r = echo_req(2, &m, "new");
  fconn_send(c, &r);
  fexpect(c, 2, MPRPC_ELOGOFF, NULL, 0);
  fenv_advance(f.e, 50);
  assert_int_equal(done, 0); /* still draining */
  assert_false(c->closed);
  held_complete(0, "finished");
  fexpect(c, 1, 0, NULL, 0);
  fenv_advance(f.e, 50);
  /* nothing in flight, but the logoff grace (200 ms) keeps the connection
   * open so late requests get ELOGOFF rather than a closed connection */
  assert_false(c->closed);
  assert_int_equal(done, 0);
  r = echo_req(3, &m, "late");
  fconn_send(c, &r);
  fexpect(c, 3, MPRPC_ELOGOFF, NULL, 0);
  fenv_advance(f.e, 150);
  assert_true(c->closed);
  assert_int_equal(done, 1);
  fsrv_free(&f);
  fconn_free(c);
  free(reg);
}

static void test_server_core_pipelined_thousands(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  enum { N = 5000 };
  size_t cap = 64 * N, n = 0;
  uint8_t *all = malloc(cap);
  for (int i = 0; i < N; i++) {
    Example__EchoRequest m;
    char msg[16];
    snprintf(msg, sizeof msg, "%d", i);
    tclient_req_t r = echo_req(i, &m, i % 2 ? msg : "hold");
    uint8_t *fr;
    size_t fl;
    assert_int_equal(tclient_encode(&r, &fr, &fl), 0);
    memcpy(all + n, fr, fl);
    n += fl;
    free(fr);
  }
  fconn_feed(c, all, n);
  free(all);
  int seen = 0;
  for (int i = 1; i < N; i += 2) {
    fexpect(c, i, 0, NULL, 0);
    seen++;
  }
  assert_int_equal(held_count(), N / 2);
  /* in flight without limits: admitted - completed, per method and in all */
  mprpc_method_stats_t mid;
  mprpc_server_method_stats_at(f.s, 0, &mid);
  assert_int_equal(mid.inflight, N / 2);
  mprpc_server_stats_t sst;
  mprpc_server_stats(f.s, &sst);
  assert_int_equal(sst.inflight, N / 2);
  for (int i = N / 2 - 1; i >= 0; i--)
    held_complete(i, "late");
  for (int i = N - 2; i >= 0; i -= 2) {
    fexpect(c, i, 0, NULL, 0);
    seen++;
  }
  assert_int_equal(seen, N);
  mprpc_method_stats_t ms;
  mprpc_server_method_stats_at(f.s, 0, &ms);
  assert_int_equal(ms.requests, N);
  assert_int_equal(ms.completed, N);
  assert_int_equal(ms.inflight, 0);
  mprpc_server_stats(f.s, &sst);
  assert_int_equal(sst.inflight, 0);
  assert_true(ms.p50_us <= ms.p99_us && ms.p99_us <= ms.p999_us);
  mprpc_server_log_stats(f.s);
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(c);
}

/* Call blocks are pooled (after quarantine) with an arena for the decoded
 * request and the packed response: requests and attachments on both sides
 * of the arena's size, many times over the pool and quarantine sizes, each
 * answered with exactly its own bytes. */
static void test_server_core_call_blocks_and_arena(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  static const size_t sizes[] = {1, 17, 500, 950, 1100, 3000, 70000};
  enum { N = 1600 }; /* over 3x the quarantine (256) plus the pool (256) */
  char *msg = malloc(70001), *att = malloc(2000), *got = malloc(70001);
  for (int i = 0; i < N; i++) {
    size_t len = sizes[i % 7], alen = (size_t)(i * 37) % 1500;
    for (size_t k = 0; k < len; k++)
      msg[k] = (char)('a' + (i + k) % 26);
    msg[len] = 0;
    for (size_t k = 0; k < alen; k++)
      att[k] = (char)(i + k);
    Example__EchoRequest m;
    tclient_req_t r = echo_req(i, &m, msg);
    char rid[32];
    snprintf(rid, sizeof rid, "rid-%d", i);
    r.request_id = i % 3 ? rid : NULL;
    r.att = att;
    r.att_len = alen;
    fconn_send(c, &r);
    tclient_resp_t resp;
    assert_true(fconn_resp(c, &resp));
    assert_int_equal(resp.cid, i);
    assert_int_equal(resp.error_code, 0);
    assert_int_equal(tclient_echo_decode(&resp, got, 70001), 0);
    assert_int_equal(strlen(got), len);
    assert_memory_equal(got, msg, len);
    assert_int_equal(resp.att_len, alen);
    if (alen)
      assert_memory_equal(resp.att, att, alen);
    tclient_resp_free(&resp);
  }
  free(msg);
  free(att);
  free(got);
  mprpc_method_stats_t ms;
  mprpc_server_method_stats_at(f.s, 0, &ms);
  assert_int_equal(ms.completed, N);
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(c);
}

static void test_server_core_stats_log_timer(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  o.stats_log_period_ms = 100;
  fsrv_start(&f, &o);
  size_t before = mprpc__timerq_len(&f.e->tq);
  assert_int_equal(before, 1);
  fenv_advance(f.e, 350); /* three ticks, re-armed each time */
  assert_int_equal(mprpc__timerq_len(&f.e->tq), 1);
  fsrv_shutdown(&f);
  assert_int_equal(mprpc__timerq_len(&f.e->tq), 0);
  fsrv_free(&f);
}

static void test_server_core_decode_memory_cap_and_hwm(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  o.max_decode_bytes = 64;
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  Example__EchoRequest m;
  char big[200];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = 0;
  tclient_req_t r = echo_req(1, &m, big); /* decoding needs > 64 bytes */
  fconn_send(c, &r);
  fexpect(c, 1, MPRPC_EREQUEST, NULL, 0);
  r = echo_req(2, &m, "small");
  fconn_send(c, &r);
  fexpect(c, 2, 0, NULL, 0);
  /* a peer that does not read: the transport refuses the response */
  c->refuse_writes = 1;
  r = echo_req(3, &m, "x");
  fconn_send(c, &r);
  assert_true(c->closed);
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(c);
}

static void test_server_core_register_failure_fails_start(void **state) {
  (void)state;
  fenv_t *e = fenv_new();
  freg_t reg = {.fail_after = 0};
  mprpc_server_opts_t o;
  fsrv_opts(&o);
  o.transport = e->tr;
  o.loops = &e->loop;
  o.nloops = 1;
  o.registry = (mprpc_registry_t){&freg_ops, &reg};
  mprpc_server_t *s;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &echo_svc.base), 0);
  assert_int_equal(mprpc_server_start(s), MPRPC_EREGISTRY);
  fenv_run(e);
  assert_true(e->listener_closed);
  assert_int_equal(mprpc_server_start(s), MPRPC_ESTATE);
  mprpc_server_destroy(s);
  /* listening on 0.0.0.0 with a registry needs an address to publish */
  o.host = "0.0.0.0";
  reg.fail_after = -1;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_start(s), MPRPC_ECONFIG);
  mprpc_server_destroy(s);
  fenv_free(e);
}

/* Many services with hand-made descriptors (copies of EchoService under other
 * names) all dispatch through the hash tables to the right one. */
#define NSVC 40
static ProtobufCServiceDescriptor svc_desc[NSVC];
static char svc_names[NSVC][32];
static Example__EchoService_Service svc_many[NSVC];
static int svc_hits[NSVC];

static void many_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                      Example__EchoResponse_Closure closure, void *data) {
  svc_hits[svc - svc_many]++;
  Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
  out.message = in->message;
  closure(&out, data);
}

static void test_server_core_many_services(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  fsrv_start(&f, &o); /* EchoService is already added and started: */
  mprpc_server_t *started = f.s;
  for (int i = 0; i < NSVC; i++) {
    snprintf(svc_names[i], sizeof svc_names[i], "pkg%d.Service%d", i % 7, i);
    svc_desc[i] = example__echo_service__descriptor;
    svc_desc[i].name = svc_names[i];
    svc_many[i].base = (ProtobufCService){&svc_desc[i], protobuf_c_service_invoke_internal, NULL};
    svc_many[i].echo = many_echo;
    svc_hits[i] = 0;
  }
  assert_int_equal(mprpc_server_add_service(started, &svc_many[0].base), MPRPC_ESTATE);
  fsrv_shutdown(&f);
  fsrv_free(&f);

  fenv_t *e = fenv_new();
  o.transport = e->tr;
  o.loops = &e->loop;
  o.nloops = 1;
  mprpc_server_t *s;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  for (int i = 0; i < NSVC; i++)
    assert_int_equal(mprpc_server_add_service(s, &svc_many[i].base), 0);
  assert_int_equal(mprpc_server_method_count(s), NSVC);
  assert_int_equal(mprpc_server_start(s), 0);
  fenv_run(e);
  mprpc_conn_t *c = fconn_new(e);
  for (int i = NSVC - 1; i >= 0; i--) {
    Example__EchoRequest m;
    tclient_req_t r = echo_req(i, &m, "x");
    r.service = svc_names[i];
    fconn_send(c, &r);
    fexpect(c, i, 0, NULL, 0);
    assert_int_equal(svc_hits[i], 1);
  }
  Example__EchoRequest m;
  tclient_req_t r = echo_req(99, &m, "x");
  r.service = "pkg1.Service"; /* a prefix of real names */
  fconn_send(c, &r);
  fexpect(c, 99, MPRPC_ENOSERVICE, NULL, 0);
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats_at(s, NSVC - 1, &ms), 0);
  assert_string_equal(ms.service, svc_names[NSVC - 1]);
  assert_int_equal(ms.requests, 1);
  assert_int_equal(mprpc_server_method_stats_at(s, NSVC, &ms), MPRPC_ERANGE);
  int done = 0;
  assert_int_equal(mprpc_server_shutdown(s, done_cb, &done), 0);
  fenv_advance(e, 1000);
  assert_int_equal(done, 1);
  mprpc_server_destroy(s);
  fenv_free(e);
  fconn_free(c);
}


/* Simulator crash: destroy a running server on non-blocking loops. Its
 * connections' on_close events are still queued; they and the posted tasks
 * must find the server alive (ASan), and everything is freed after them. */
static void test_server_core_destroy_while_running(void **state) {
  (void)state;
  for (int variant = 0; variant < 2; variant++) {
    mprpc_server_opts_t o;
    fsrv_t f;
    fsrv_opts(&o);
    o.idle_timeout_ms = 100;
    o.stats_log_period_ms = 10;
    fsrv_start(&f, &o);
    mprpc_conn_t *a = fconn_new(f.e);
    mprpc_conn_t *b = fconn_new(f.e);
    Example__EchoRequest m;
    tclient_req_t r = echo_req(1, &m, "hold");
    fconn_send(a, &r);
    if (variant == 1) { /* stuck in its graceful stop */
      int done = 0;
      assert_int_equal(mprpc_server_shutdown(f.s, done_cb, &done), 0);
      fenv_advance(f.e, 20);
      assert_int_equal(done, 0);
    }
    held_forget(); /* the handler's process "died" too */
    mprpc_server_destroy(f.s);
    assert_true(f.e->listener_closed);
    fenv_advance(f.e, 10000); /* on_close events, no timer of the server left */
    assert_true(a->closed);
    assert_true(b->closed);
    assert_int_equal(mprpc__timerq_len(&f.e->tq), 0);
    fenv_free(f.e);
    fconn_free(a);
    fconn_free(b);
  }
}

static void test_server_core_options_from_config(void **state) {
  (void)state;
  mprpc_config_t *cfg;
  assert_int_equal(mprpc_config_new(&cfg), 0);
  const char *text = "rpcserverip = 10.0.0.9\nrpcserverport = 8123\nthreads = 3\n"
                     "max_body_size = 1MiB\nmax_concurrency = 50\nmax_method_concurrency = 7\n"
                     "idle_timeout = 2s\ndrain_timeout = 250ms\nstats_period = 1m\n"
                     "advertise_host = 192.0.2.5\nweight = 30\nversion = v1.2\n";
  assert_int_equal(mprpc_config_load_string(cfg, text, strlen(text), "t.conf"), 0);
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  mprpc_hostport_t hp;
  assert_int_equal(mprpc_server_opts_from_config(cfg, &o, &hp), 0);
  assert_string_equal(o.host, "10.0.0.9");
  assert_int_equal(o.port, 8123);
  assert_int_equal(o.threads, 3);
  assert_int_equal(o.max_body, 1024 * 1024);
  assert_int_equal(o.max_concurrency, 50);
  assert_int_equal(o.max_method_concurrency, 7);
  assert_int_equal(o.idle_timeout_ms, 2000);
  assert_int_equal(o.drain_timeout_ms, 250);
  assert_int_equal(o.stats_log_period_ms, 60000);
  assert_string_equal(o.advertise_host, "192.0.2.5");
  assert_int_equal(o.weight, 30);
  assert_string_equal(o.version, "v1.2");
  mprpc_config_free(cfg);

  /* absent keys keep what was there; bad values are ECONFIG with a text */
  assert_int_equal(mprpc_config_new(&cfg), 0);
  mprpc_server_opts_init(&o);
  o.host = "keep";
  o.threads = 5;
  assert_int_equal(mprpc_server_opts_from_config(cfg, &o, &hp), 0);
  assert_string_equal(o.host, "keep");
  assert_int_equal(o.threads, 5);
  assert_int_equal(o.drain_timeout_ms, 5000);
  assert_int_equal(mprpc_config_set(cfg, "idle_timeout", "soon"), 0);
  assert_int_equal(mprpc_server_opts_from_config(cfg, &o, &hp), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg), "idle_timeout"));
  mprpc_config_free(cfg);
}

/* Small responses of one read are batched into one write; a large one in
 * between flushes the batch first, so the order on the wire is kept. */
static void test_server_core_batched_responses_keep_order(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  static char big[40000];
  memset(big, 'b', sizeof big - 1);
  const char *msgs[5] = {"s1", "s2", big, "s3", "s4"};
  uint8_t *all = NULL;
  size_t n = 0;
  for (int i = 0; i < 5; i++) {
    Example__EchoRequest m;
    tclient_req_t r = echo_req(i, &m, msgs[i]);
    uint8_t *fr;
    size_t fl;
    assert_int_equal(tclient_encode(&r, &fr, &fl), 0);
    all = realloc(all, n + fl);
    memcpy(all + n, fr, fl);
    n += fl;
    free(fr);
  }
  fconn_feed(c, all, n);
  free(all);
  static char text[41000];
  for (int i = 0; i < 5; i++) {
    fexpect(c, i, 0, text, sizeof text);
    assert_string_equal(text, msgs[i]);
  }
  fsrv_shutdown(&f);
  fsrv_free(&f);
  fconn_free(c);
}

/* ======================================================================
 * tcp group: a real provider on the libev runtime.
 * ==================================================================== */

static mprpc_server_t *tsrv_start(mprpc_server_opts_t *o) {
  mprpc_server_t *s;
  held_forget();
  o->host = "127.0.0.1";
  o->port = 0;
  if (!o->threads)
    o->threads = 2;
  assert_int_equal(mprpc_server_new(o, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &echo_svc.base), 0);
  assert_int_equal(mprpc_server_add_service(s, &echo_svc.base), MPRPC_EEXIST);
  assert_int_equal(mprpc_server_start(s), 0);
  assert_int_not_equal(mprpc_server_port(s), 0);
  return s;
}

static void tcall(tclient_t *c, int64_t cid, const char *msg, int err, char *out, size_t cap) {
  Example__EchoRequest m;
  tclient_req_t r = echo_req(cid, &m, msg);
  tclient_resp_t resp;
  assert_int_equal(tclient_call(c, &r, &resp, GUARD_MS), 0);
  assert_int_equal(resp.cid, cid);
  if (resp.error_code != mprpc_err_to_wire(err))
    fail_msg("cid %lld: error %d (%s), want %d", (long long)cid, resp.error_code,
             resp.error_text, mprpc_err_to_wire(err));
  if (out && !err)
    assert_int_equal(tclient_echo_decode(&resp, out, cap), 0);
  tclient_resp_free(&resp);
}

static void test_server_tcp_echo_attachment_splits(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  mprpc_server_t *s = tsrv_start(&o);
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  char text[64];
  tcall(&c, 1, "hello", 0, text, sizeof text);
  assert_string_equal(text, "hello");
  /* attachment both ways, frame sent one byte per send() */
  Example__EchoRequest m;
  tclient_req_t r = echo_req(2, &m, "with attachment");
  r.att = "0123456789";
  r.att_len = 10;
  uint8_t *fr;
  size_t fl;
  assert_int_equal(tclient_encode(&r, &fr, &fl), 0);
  for (size_t i = 0; i < fl; i++)
    assert_int_equal(tclient_send_raw(&c, fr + i, 1), 0);
  free(fr);
  tclient_resp_t resp;
  assert_int_equal(tclient_recv(&c, &resp, GUARD_MS), 0);
  assert_int_equal(resp.cid, 2);
  assert_int_equal(resp.att_len, 10);
  assert_memory_equal(resp.att, "0123456789", 10);
  tclient_resp_free(&resp);
  /* several requests in one write */
  uint8_t all[2048];
  size_t n = 0;
  for (int i = 0; i < 5; i++) {
    r = echo_req(10 + i, &m, "batch");
    assert_int_equal(tclient_encode(&r, &fr, &fl), 0);
    memcpy(all + n, fr, fl);
    n += fl;
    free(fr);
  }
  assert_int_equal(tclient_send_raw(&c, all, n), 0);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(tclient_recv(&c, &resp, GUARD_MS), 0);
    assert_int_equal(resp.cid, 10 + i); /* inline handlers answer in order */
    assert_int_equal(resp.error_code, 0);
    tclient_resp_free(&resp);
  }
  tclient_close(&c);
  assert_int_equal(mprpc_server_stop(s), 0);
  assert_int_equal(mprpc_server_stop(s), 0);
  mprpc_server_destroy(s);
}

static void test_server_tcp_pipelined_5000(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  mprpc_server_t *s = tsrv_start(&o);
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  enum { N = 5000 };
  uint8_t *all = malloc(64 * N);
  size_t n = 0;
  for (int i = 0; i < N; i++) {
    Example__EchoRequest m;
    tclient_req_t r = echo_req(i, &m, "p");
    uint8_t *fr;
    size_t fl;
    assert_int_equal(tclient_encode(&r, &fr, &fl), 0);
    memcpy(all + n, fr, fl);
    n += fl;
    free(fr);
  }
  assert_int_equal(tclient_send_raw(&c, all, n), 0);
  free(all);
  char *seen = calloc(N, 1);
  for (int i = 0; i < N; i++) {
    tclient_resp_t resp;
    assert_int_equal(tclient_recv(&c, &resp, GUARD_MS), 0);
    assert_true(resp.cid >= 0 && resp.cid < N);
    assert_false(seen[resp.cid]);
    seen[resp.cid] = 1;
    assert_int_equal(resp.error_code, 0);
    tclient_resp_free(&resp);
  }
  free(seen);
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats(s, "example.EchoService", "Echo", &ms), 0);
  assert_int_equal(ms.requests, N);
  tclient_close(&c);
  mprpc_server_destroy(s);
}

/* Method stats are kept per loop and summed when read: with two loops and
 * four connections, every request, completion and error is counted once. */
static void test_server_tcp_stats_sum_over_loops(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.threads = 2;
  mprpc_server_t *s = tsrv_start(&o);
  enum { NC = 4, N = 300 };
  tclient_t c[NC];
  for (int k = 0; k < NC; k++)
    assert_int_equal(tclient_connect(&c[k], mprpc_server_port(s)), 0);
  for (int k = 0; k < NC; k++)
    for (int i = 0; i < N; i++) {
      Example__EchoRequest m;
      tclient_req_t r = echo_req(i, &m, i % 10 == 0 ? "error" : "x");
      assert_int_equal(tclient_send(&c[k], &r), 0);
    }
  for (int k = 0; k < NC; k++)
    for (int i = 0; i < N; i++) {
      tclient_resp_t resp;
      assert_int_equal(tclient_recv(&c[k], &resp, GUARD_MS), 0);
      assert_int_equal(resp.error_code, resp.cid % 10 == 0 ? 4242 : 0);
      tclient_resp_free(&resp);
    }
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats(s, "example.EchoService", "Echo", &ms), 0);
  assert_int_equal(ms.requests, NC * N);
  assert_int_equal(ms.completed, NC * N);
  assert_int_equal(ms.errors, NC * N / 10);
  uint64_t by_code = 0;
  for (size_t i = 0; i < MPRPC_SERVER_NCODES; i++)
    by_code += ms.errors_by_code[i];
  assert_int_equal(by_code, NC * N / 10);
  assert_int_equal(ms.inflight, 0);
  assert_true(ms.p50_us <= ms.p99_us && ms.p99_us <= ms.p999_us);
  assert_true(ms.max_us > 0 || ms.p999_us == 0);
  mprpc_server_stats_t sst;
  mprpc_server_stats(s, &sst);
  assert_int_equal(sst.inflight, 0);
  for (int k = 0; k < NC; k++)
    tclient_close(&c[k]);
  mprpc_server_destroy(s);
}

static void *complete_reverse(void *arg) {
  int n = *(int *)arg;
  for (int i = n - 1; i >= 0; i--) {
    char msg[16];
    snprintf(msg, sizeof msg, "r%d", i);
    held_complete(i, msg);
  }
  return NULL;
}

static void wait_held(int n) {
  for (int i = 0; i < 2000 && held_count() < n; i++)
    usleep(5000);
  assert_int_equal(held_count(), n);
}

static void test_server_tcp_async_out_of_order_and_limit(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.max_concurrency = 4;
  mprpc_server_t *s = tsrv_start(&o);
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  Example__EchoRequest m;
  for (int i = 0; i < 4; i++) {
    tclient_req_t r = echo_req(i, &m, "hold");
    assert_int_equal(tclient_send(&c, &r), 0);
  }
  wait_held(4);
  tcall(&c, 99, "over the limit", MPRPC_ELIMIT, NULL, 0);
  assert_int_equal(held_count(), 4);
  int n = 4;
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, complete_reverse, &n), 0);
  pthread_join(th, NULL);
  for (int i = 3; i >= 0; i--) {
    tclient_resp_t resp;
    char text[16], want[16];
    assert_int_equal(tclient_recv(&c, &resp, GUARD_MS), 0);
    assert_int_equal(resp.cid, i);
    assert_int_equal(tclient_echo_decode(&resp, text, sizeof text), 0);
    snprintf(want, sizeof want, "r%d", i);
    assert_string_equal(text, want);
    tclient_resp_free(&resp);
  }
  tcall(&c, 100, "fine again", 0, NULL, 0);
  tclient_close(&c);
  mprpc_server_destroy(s);
}

static void test_server_tcp_errors_keep_connection(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  int calls = 0;
  mprpc_server_opts_init(&o);
  o.authenticate = auth_cb;
  o.auth_ud = &calls;
  mprpc_server_t *s = tsrv_start(&o);
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  tcall(&c, 1, "no auth", MPRPC_ERPCAUTH, NULL, 0);
  Example__EchoRequest m;
  tclient_req_t r = echo_req(2, &m, "auth");
  r.auth = "secret";
  tclient_resp_t resp;
  assert_int_equal(tclient_call(&c, &r, &resp, GUARD_MS), 0);
  assert_int_equal(resp.error_code, 0);
  tclient_resp_free(&resp);
  r = echo_req(3, &m, "x");
  r.service = "nope.Service";
  assert_int_equal(tclient_call(&c, &r, &resp, GUARD_MS), 0);
  assert_int_equal(resp.error_code, 1001);
  assert_non_null(strstr(resp.error_text, "nope.Service"));
  tclient_resp_free(&resp);
  r = echo_req(4, &m, "x");
  r.method = "Missing";
  assert_int_equal(tclient_call(&c, &r, &resp, GUARD_MS), 0);
  assert_int_equal(resp.error_code, 1002);
  tclient_resp_free(&resp);
  r = (tclient_req_t){.cid = 5, .raw = "\x0a\xff", .raw_len = 2};
  assert_int_equal(tclient_call(&c, &r, &resp, GUARD_MS), 0);
  assert_int_equal(resp.error_code, 1003);
  tclient_resp_free(&resp);
  /* a slow inline handler, then in the same write a request whose 50 ms
   * budget runs out while it waits behind it */
  uint8_t all[512];
  size_t n = 0;
  uint8_t *fr;
  size_t fl;
  r = echo_req(6, &m, "sleep:300");
  assert_int_equal(tclient_encode(&r, &fr, &fl), 0);
  memcpy(all, fr, fl);
  n = fl;
  free(fr);
  r = echo_req(7, &m, "late");
  r.timeout_ms = 50;
  assert_int_equal(tclient_encode(&r, &fr, &fl), 0);
  memcpy(all + n, fr, fl);
  n += fl;
  free(fr);
  assert_int_equal(tclient_send_raw(&c, all, n), 0);
  assert_int_equal(tclient_recv(&c, &resp, GUARD_MS), 0);
  assert_int_equal(resp.cid, 6);
  assert_int_equal(resp.error_code, 0);
  tclient_resp_free(&resp);
  assert_int_equal(tclient_recv(&c, &resp, GUARD_MS), 0);
  assert_int_equal(resp.cid, 7);
  assert_int_equal(resp.error_code, 1008);
  tclient_resp_free(&resp);
  tcall(&c, 8, "twice", 0, NULL, 0);
  tcall(&c, 9, "null", MPRPC_EINTERNAL, NULL, 0);
  char text[32];
  tcall(&c, 10, "still usable", 0, text, sizeof text);
  assert_string_equal(text, "still usable");
  mprpc_server_stats_t st;
  mprpc_server_stats(s, &st);
  assert_int_equal(st.closures_twice, 1);
  tclient_close(&c);
  mprpc_server_destroy(s);
}

static void test_server_tcp_malformed_and_idle(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.max_body = 4096;
  /* Long enough that the good connection, active between the bad cases,
   * never looks idle even when a slow machine stalls one case. */
  o.idle_timeout_ms = 2000;
  mprpc_server_t *s = tsrv_start(&o);
  uint16_t port = mprpc_server_port(s);
  tclient_t good;
  assert_int_equal(tclient_connect(&good, port), 0);
  const char *cases[] = {"bad magic", "too big", "response meta", "no request meta"};
  for (int k = 0; k < 4; k++) {
    tclient_t bad;
    assert_int_equal(tclient_connect(&bad, port), 0);
    Example__EchoRequest m;
    tclient_req_t r = echo_req(1, &m, "x");
    if (k == 0) {
      assert_int_equal(tclient_send_raw(&bad, "XXXX\0\0\0\0\0\0\0\0", 12), 0);
    } else if (k == 1) {
      uint8_t h[12] = {'P', 'R', 'P', 'C', 0, 1, 0, 0, 0, 0, 0, 4};
      assert_int_equal(tclient_send_raw(&bad, h, 12), 0);
    } else {
      r.response_meta = k == 2;
      r.no_request = k == 3;
      assert_int_equal(tclient_send(&bad, &r), 0);
    }
    if (tclient_wait_closed(&bad, GUARD_MS) != 0)
      fail_msg("%s: connection not closed", cases[k]);
    tclient_close(&bad);
    tcall(&good, 10 + k, "ok", 0, NULL, 0);
  }
  /* idle and slowloris (half a frame, then nothing) get closed; the good
   * connection was active until now and is closed later */
  tclient_t idle, slow;
  assert_int_equal(tclient_connect(&idle, port), 0);
  assert_int_equal(tclient_connect(&slow, port), 0);
  Example__EchoRequest m;
  tclient_req_t r = echo_req(1, &m, "slow");
  uint8_t *fr;
  size_t fl;
  assert_int_equal(tclient_encode(&r, &fr, &fl), 0);
  assert_int_equal(tclient_send_raw(&slow, fr, fl / 2), 0);
  free(fr);
  assert_int_equal(tclient_wait_closed(&idle, GUARD_MS), 0);
  assert_int_equal(tclient_wait_closed(&slow, GUARD_MS), 0);
  assert_int_equal(tclient_wait_closed(&good, GUARD_MS), 0);
  tclient_close(&idle);
  tclient_close(&slow);
  tclient_close(&good);
  mprpc_server_stats_t st;
  mprpc_server_stats(s, &st);
  assert_int_equal(st.malformed_frames, 4);
  assert_int_equal(st.connections_idle_closed, 3);
  mprpc_server_destroy(s);
}

/* Each compress type round-trips a short and a 100 KiB message; the
 * attachment is never compressed; a plain request between compressed ones
 * gets a plain answer (the type is per call, not per connection). */
/* The handler chooses the response's compression (brpc's
 * set_response_compress_type): a plain request answered compressed, a
 * compressed one answered plain, and an unknown type refused. */
static void test_server_tcp_handler_sets_response_compress(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  mprpc_server_t *s = tsrv_start(&o);
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  static const struct {
    int req_type;
    const char *msg;
    int resp_type;
  } cases[] = {
      {MPRPC_COMPRESS_NONE, "zip:1", MPRPC_COMPRESS_SNAPPY},
      {MPRPC_COMPRESS_NONE, "zip:2", MPRPC_COMPRESS_GZIP},
      {MPRPC_COMPRESS_SNAPPY, "zip:3", MPRPC_COMPRESS_ZLIB},
      {MPRPC_COMPRESS_GZIP, "zip:0", MPRPC_COMPRESS_NONE},
  };
  for (int k = 0; k < 4; k++) {
    uint8_t *buf;
    tclient_req_t r = zecho_req(k + 1, cases[k].req_type, cases[k].msg, &buf);
    tclient_resp_t resp;
    assert_int_equal(tclient_call(&c, &r, &resp, GUARD_MS), 0);
    expect_zecho(&resp, k + 1, cases[k].resp_type, cases[k].msg);
    tclient_resp_free(&resp);
    free(buf);
  }
  uint8_t *buf;
  tclient_req_t r = zecho_req(9, MPRPC_COMPRESS_NONE, "zip:4", &buf);
  tclient_resp_t resp;
  assert_int_equal(tclient_call(&c, &r, &resp, GUARD_MS), 0);
  assert_int_equal(resp.error_code, 4243); /* set_response_compress refused LZ4 */
  tclient_resp_free(&resp);
  free(buf);
  assert_int_equal(mprpc_server_call_set_response_compress(NULL, 1), MPRPC_EINVAL);
  tclient_close(&c);
  mprpc_server_destroy(s);
}

static void test_server_tcp_compressed_echo(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  mprpc_server_t *s = tsrv_start(&o);
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  const char pattern[] = "compress me, please! ";
  size_t big_n = 100 * 1024;
  char *big = malloc(big_n + 1);
  for (size_t i = 0; i < big_n; i++)
    big[i] = pattern[i % (sizeof pattern - 1)];
  big[big_n] = 0;
  static const int types[] = {MPRPC_COMPRESS_SNAPPY, MPRPC_COMPRESS_GZIP, MPRPC_COMPRESS_ZLIB};
  const char *msgs[] = {"hello compressed", big};
  int64_t cid = 1;
  for (int k = 0; k < 3; k++) {
    for (int j = 0; j < 2; j++) {
      uint8_t *pl;
      tclient_req_t r = zecho_req(cid, types[k], msgs[j], &pl);
      if (j == 0) {
        r.att = "raw attachment";
        r.att_len = 14;
      } else {
        assert_true(r.raw_len < big_n / 4); /* a small frame for a big message */
      }
      tclient_resp_t resp;
      assert_int_equal(tclient_call(&c, &r, &resp, GUARD_MS), 0);
      free(pl);
      expect_zecho(&resp, cid, types[k], msgs[j]);
      if (j == 0) {
        assert_int_equal(resp.att_len, 14);
        assert_memory_equal(resp.att, "raw attachment", 14);
      } else {
        assert_true(resp.payload_len < big_n / 4); /* really compressed */
      }
      /* the test client's transparent path agrees */
      char text[32];
      if (j == 0) {
        assert_int_equal(tclient_echo_decode(&resp, text, sizeof text), 0);
        assert_string_equal(text, "hello compressed");
      }
      tclient_resp_free(&resp);
      cid++;
      Example__EchoRequest m;
      r = echo_req(cid, &m, j ? big : "plain");
      assert_int_equal(tclient_call(&c, &r, &resp, GUARD_MS), 0);
      expect_zecho(&resp, cid, MPRPC_COMPRESS_NONE, j ? big : "plain");
      if (j)
        assert_true(resp.payload_len > big_n); /* sent as is */
      tclient_resp_free(&resp);
      cid++;
    }
  }
  free(big);
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats(s, "example.EchoService", "Echo", &ms), 0);
  assert_int_equal(ms.requests, 12);
  assert_int_equal(ms.errors, 0);
  tclient_close(&c);
  mprpc_server_destroy(s);
}

/* Payloads that are not valid streams of their compress type get EREQUEST;
 * the connection stays usable after each. */
static void test_server_tcp_corrupt_compressed_payload(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  mprpc_server_t *s = tsrv_start(&o);
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  Example__EchoRequest m = EXAMPLE__ECHO_REQUEST__INIT;
  m.message = "a message long enough that half of its compressed stream is cut off";
  uint8_t *sn, *gz, *gzx, *junk;
  size_t snl, gzl, gzxl, junkl;
  assert_int_equal(tclient_pack(&m.base, MPRPC_COMPRESS_SNAPPY, &sn, &snl), 0);
  assert_int_equal(tclient_pack(&m.base, MPRPC_COMPRESS_GZIP, &gz, &gzl), 0);
  /* a whole gzip stream followed by extra bytes */
  gzxl = gzl + 3;
  gzx = malloc(gzxl);
  memcpy(gzx, gz, gzl);
  memcpy(gzx + gzl, "xyz", 3);
  /* a valid stream of bytes that are no EchoRequest */
  assert_int_equal(mprpc__compress(MPRPC_COMPRESS_ZLIB, (const uint8_t *)"\xff\xff", 2, &junk,
                                   &junkl),
                   0);
  static const char bad_stream[] = "is not a valid compressed stream";
  static const char not_gzip[] = "this is not a gzip stream";
  static const char bad_zlib[] = "\x78\x9c garbage after a zlib header";
  const struct {
    int type;
    const void *p;
    size_t n;
    const char *want; /* in the error text */
  } cases[] = {
      {MPRPC_COMPRESS_GZIP, not_gzip, sizeof not_gzip - 1, bad_stream},
      {MPRPC_COMPRESS_SNAPPY, sn, snl / 2, bad_stream},
      {MPRPC_COMPRESS_GZIP, gz, gzl - 4, bad_stream}, /* trailer cut */
      {MPRPC_COMPRESS_ZLIB, bad_zlib, sizeof bad_zlib - 1, bad_stream},
      {MPRPC_COMPRESS_SNAPPY, "", 0, bad_stream},
      {MPRPC_COMPRESS_GZIP, gzx, gzxl, bad_stream},
      {MPRPC_COMPRESS_ZLIB, junk, junkl, "does not decode as"},
  };
  int n = (int)(sizeof cases / sizeof cases[0]);
  for (int k = 0; k < n; k++) {
    tclient_req_t r = {.cid = 10 * k + 1,
                       .raw = cases[k].p,
                       .raw_len = cases[k].n,
                       .compress_type = cases[k].type};
    tclient_resp_t resp;
    assert_int_equal(tclient_call(&c, &r, &resp, GUARD_MS), 0);
    assert_int_equal(resp.cid, 10 * k + 1);
    if (resp.error_code != mprpc_err_to_wire(MPRPC_EREQUEST) ||
        !strstr(resp.error_text, cases[k].want))
      fail_msg("case %d: error %d (%s), want EREQUEST (...%s...)", k, resp.error_code,
               resp.error_text, cases[k].want);
    if (cases[k].want == bad_stream) {
      char tag[32];
      snprintf(tag, sizeof tag, "(compress_type %d)", cases[k].type);
      assert_non_null(strstr(resp.error_text, tag));
    }
    assert_int_equal(resp.payload_len, 0);
    tclient_resp_free(&resp);
    char text[32];
    tcall(&c, 10 * k + 2, "still here", 0, text, sizeof text);
    assert_string_equal(text, "still here");
  }
  free(sn);
  free(gz);
  free(gzx);
  free(junk);
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats(s, "example.EchoService", "Echo", &ms), 0);
  assert_int_equal(ms.requests, 2 * n);
  assert_int_equal(ms.errors, n);
  assert_int_equal(ms.errors_by_code[0], n); /* all EREQUEST */
  tclient_close(&c);
  mprpc_server_destroy(s);
}

/* A small frame may not inflate past max_body (a decompression bomb); an
 * inflated payload of exactly max_body is accepted. */
static void test_server_tcp_compressed_body_limit(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.max_body = 64 * 1024;
  mprpc_server_t *s = tsrv_start(&o);
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  /* 1 MiB of zeros; snappy's ratio is lower, 256 KiB keeps its frame under
   * max_body so that the server does read it */
  size_t zn = 1024 * 1024;
  uint8_t *zeros = calloc(1, zn);
  static const struct {
    int type;
    size_t n;
  } bombs[] = {{MPRPC_COMPRESS_GZIP, 1024 * 1024},
               {MPRPC_COMPRESS_ZLIB, 1024 * 1024},
               {MPRPC_COMPRESS_SNAPPY, 256 * 1024}};
  char text[64];
  int64_t cid = 1;
  for (int k = 0; k < 3; k++) {
    uint8_t *z;
    size_t zl;
    assert_int_equal(mprpc__compress(bombs[k].type, zeros, bombs[k].n, &z, &zl), 0);
    assert_true(zl < o.max_body / 2);
    tclient_req_t r = {.cid = cid, .raw = z, .raw_len = zl, .compress_type = bombs[k].type};
    tclient_resp_t resp;
    assert_int_equal(tclient_call(&c, &r, &resp, GUARD_MS), 0);
    free(z);
    assert_int_equal(resp.cid, cid);
    assert_int_equal(resp.error_code, mprpc_err_to_wire(MPRPC_EREQUEST));
    char want[96];
    snprintf(want, sizeof want,
             "request payload (compress_type %d) inflates past the body limit", bombs[k].type);
    assert_string_equal(resp.error_text, want);
    tclient_resp_free(&resp);
    tcall(&c, cid + 1, "still here", 0, text, sizeof text);
    assert_string_equal(text, "still here");
    cid += 2;
  }
  free(zeros);
  /* An EchoRequest packs as tag, 3-byte length, message: a message of
   * max_body - 4 bytes inflates to exactly max_body, one more passes it. */
  size_t exact = o.max_body - 4;
  char *msg = malloc(exact + 2);
  memset(msg, 'a', exact + 1);
  for (int extra = 0; extra < 2; extra++) {
    msg[exact + (size_t)extra] = 0;
    uint8_t *pl;
    tclient_req_t r = zecho_req(cid, MPRPC_COMPRESS_GZIP, msg, &pl);
    tclient_resp_t resp;
    assert_int_equal(tclient_call(&c, &r, &resp, GUARD_MS), 0);
    free(pl);
    if (!extra) {
      expect_zecho(&resp, cid, MPRPC_COMPRESS_GZIP, msg);
    } else {
      assert_int_equal(resp.error_code, mprpc_err_to_wire(MPRPC_EREQUEST));
      assert_non_null(strstr(resp.error_text, "inflates past the body limit"));
    }
    tclient_resp_free(&resp);
    msg[exact + (size_t)extra] = 'a';
    cid++;
  }
  free(msg);
  tcall(&c, cid, "still here", 0, text, sizeof text);
  assert_string_equal(text, "still here");
  mprpc_server_stats_t st;
  mprpc_server_stats(s, &st);
  assert_int_equal(st.malformed_frames, 0);
  tclient_close(&c);
  mprpc_server_destroy(s);
}

typedef struct stopper {
  mprpc_server_t *s;
  int rc;
} stopper_t;

static void *stop_thread(void *arg) {
  stopper_t *st = arg;
  st->rc = mprpc_server_stop(st->s);
  return NULL;
}

static void test_server_tcp_logoff_during_stop(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  freg_t reg = {.fail_after = -1};
  o.registry = (mprpc_registry_t){&freg_ops, &reg};
  o.drain_timeout_ms = 20000;
  mprpc_server_t *s = tsrv_start(&o);
  assert_int_equal(reg.nreg, 1);
  assert_int_equal(reg.port, mprpc_server_port(s));
  assert_string_equal(reg.host, "127.0.0.1");
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  Example__EchoRequest m;
  tclient_req_t r = echo_req(1, &m, "hold");
  assert_int_equal(tclient_send(&c, &r), 0);
  wait_held(1);
  stopper_t st = {s, -1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, stop_thread, &st), 0);
  int logoff = 0;
  for (int i = 0; i < 2000 && !logoff; i++) {
    tclient_resp_t resp;
    r = echo_req(1000 + i, &m, "new");
    assert_int_equal(tclient_call(&c, &r, &resp, GUARD_MS), 0);
    if (resp.error_code == mprpc_err_to_wire(MPRPC_ELOGOFF)) {
      logoff = 1;
      assert_int_equal(reg.nunreg, 1); /* unregistered before ELOGOFF */
    } else {
      assert_int_equal(resp.error_code, 0);
      usleep(2000);
    }
    tclient_resp_free(&resp);
  }
  assert_true(logoff);
  held_complete(0, "drained");
  tclient_resp_t resp;
  assert_int_equal(tclient_recv(&c, &resp, GUARD_MS), 0);
  assert_int_equal(resp.cid, 1);
  assert_int_equal(resp.error_code, 0);
  tclient_resp_free(&resp);
  assert_int_equal(tclient_wait_closed(&c, GUARD_MS), 0);
  pthread_join(th, NULL);
  assert_int_equal(st.rc, 0);
  tclient_close(&c);
  mprpc_server_destroy(s);
}

static void test_server_tcp_never_called_closure(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.drain_timeout_ms = 50;
  mprpc_server_t *s = tsrv_start(&o);
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  Example__EchoRequest m;
  tclient_req_t r = echo_req(1, &m, "hold");
  r.att = "abc";
  r.att_len = 3;
  assert_int_equal(tclient_send(&c, &r), 0);
  r = echo_req(2, &m, "hold");
  assert_int_equal(tclient_send(&c, &r), 0);
  wait_held(2);
  tclient_close(&c); /* client leaves with both calls pending */
  for (int i = 0; i < 2000; i++) {
    mprpc_server_stats_t st;
    mprpc_server_stats(s, &st);
    if (st.connections_open == 0)
      break;
    usleep(5000);
  }
  held_complete(0, "too late"); /* from this thread, after the close */
  for (int i = 0; i < 2000; i++) {
    mprpc_server_stats_t st;
    mprpc_server_stats(s, &st);
    if (st.responses_dropped == 1)
      break;
    usleep(5000);
  }
  mprpc_server_stats_t st;
  mprpc_server_stats(s, &st);
  assert_int_equal(st.responses_dropped, 1);
  held_forget(); /* the second is never called: destroy frees it */
  mprpc_server_destroy(s);
}

static void *run_thread(void *arg) {
  stopper_t *st = arg;
  st->rc = mprpc_server_run(st->s);
  return NULL;
}

static void test_server_tcp_run_until_stop_async(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.stats_log_period_ms = 50;
  mprpc_server_t *s = tsrv_start(&o);
  stopper_t st = {s, -1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, run_thread, &st), 0);
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  tcall(&c, 1, "before", 0, NULL, 0);
  mprpc_server_stop_async(s);
  assert_int_equal(tclient_wait_closed(&c, GUARD_MS), 0);
  pthread_join(th, NULL);
  assert_int_equal(st.rc, 0);
  tclient_close(&c);
  mprpc_server_destroy(s);
}

typedef struct twice_arg {
  Example__EchoResponse_Closure cl;
  void *data;
} twice_arg_t;

static void *call_twice_thread(void *arg) {
  twice_arg_t *a = arg;
  Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
  out.message = "once";
  a->cl(&out, a->data);
  usleep(20000); /* the first answer has been written and the call released */
  out.message = "twice";
  a->cl(&out, a->data);
  return NULL;
}

static void test_server_tcp_late_second_closure_call(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  mprpc_server_t *s = tsrv_start(&o);
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  Example__EchoRequest m;
  tclient_req_t r = echo_req(1, &m, "hold");
  assert_int_equal(tclient_send(&c, &r), 0);
  wait_held(1);
  pthread_mutex_lock(&held.mu);
  twice_arg_t a = {held.cl[0], held.data[0]};
  held.n = 0;
  pthread_mutex_unlock(&held.mu);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, call_twice_thread, &a), 0);
  pthread_join(th, NULL);
  char text[16];
  tclient_resp_t resp;
  assert_int_equal(tclient_recv(&c, &resp, GUARD_MS), 0);
  assert_int_equal(resp.cid, 1);
  assert_int_equal(tclient_echo_decode(&resp, text, sizeof text), 0);
  assert_string_equal(text, "once");
  tclient_resp_free(&resp);
  tcall(&c, 2, "next", 0, NULL, 0); /* nothing else arrived in between */
  mprpc_server_stats_t st;
  mprpc_server_stats(s, &st);
  assert_int_equal(st.closures_twice, 1);
  tclient_close(&c);
  mprpc_server_destroy(s);
}

/* The example program: serves, answers, and exits 0 after SIGTERM. Skipped
 * when build/bin/echo_server was not built (make test builds it first). */
static void test_server_tcp_echo_server_program(void **state) {
  (void)state;
  const char *bin = "build/bin/echo_server";
  if (access(bin, X_OK) != 0)
    skip();
  int out[2];
  assert_int_equal(pipe(out), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    close(out[1]);
    execl(bin, bin, "--listen", "127.0.0.1:0", "--threads", "2", (char *)NULL);
    _exit(127);
  }
  close(out[1]);
  char line[256] = {0};
  size_t n = 0;
  for (int guard = 0; guard < 1000 && n < sizeof line - 1 && !strchr(line, '\n'); guard++) {
    ssize_t r = read(out[0], line + n, sizeof line - 1 - n);
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  unsigned port = 0;
  const char *p = strstr(line, "127.0.0.1:");
  if (p)
    port = (unsigned)atoi(p + 10);
  if (port == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(out[0]);
    fail_msg("echo_server printed no port: '%s'", line);
  }
  tclient_t c;
  assert_int_equal(tclient_connect(&c, (uint16_t)port), 0);
  Example__EchoRequest m;
  tclient_req_t r = echo_req(5, &m, "from the test");
  r.att = "blob";
  r.att_len = 4;
  tclient_resp_t resp;
  int rc = tclient_call(&c, &r, &resp, GUARD_MS);
  char text[64] = "";
  if (rc == 0)
    tclient_echo_decode(&resp, text, sizeof text);
  kill(pid, SIGTERM);
  int status = 0;
  for (int i = 0; i < 2000; i++) { /* hang guard: 10 s */
    if (waitpid(pid, &status, WNOHANG) == pid)
      break;
    if (i == 1999) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fail_msg("echo_server did not stop on SIGTERM");
    }
    usleep(5000);
  }
  close(out[0]);
  assert_int_equal(rc, 0);
  assert_string_equal(text, "from the test");
  assert_int_equal(resp.att_len, 4);
  assert_memory_equal(resp.att, "blob", 4);
  tclient_resp_free(&resp);
  assert_int_equal(tclient_wait_closed(&c, GUARD_MS), 0);
  tclient_close(&c);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server_core_echo_and_attachment),
      cmocka_unit_test(test_server_core_split_and_coalesced),
      cmocka_unit_test(test_server_core_routing_errors_keep_connection),
      cmocka_unit_test(test_server_core_compressed_echo),
      cmocka_unit_test(test_server_core_malformed_closes_only_that_connection),
      cmocka_unit_test(test_server_core_deadline_passed_before_dispatch),
      cmocka_unit_test(test_server_core_limits),
      cmocka_unit_test(test_server_core_authentication),
      cmocka_unit_test(test_server_core_idle_and_slowloris),
      cmocka_unit_test(test_server_core_out_of_order_and_twice),
      cmocka_unit_test(test_server_core_closure_after_close_and_never),
      cmocka_unit_test(test_server_core_graceful_stop),
      cmocka_unit_test(test_server_core_pipelined_thousands),
      cmocka_unit_test(test_server_core_call_blocks_and_arena),
      cmocka_unit_test(test_server_core_stats_log_timer),
      cmocka_unit_test(test_server_core_decode_memory_cap_and_hwm),
      cmocka_unit_test(test_server_core_register_failure_fails_start),
      cmocka_unit_test(test_server_core_many_services),
      cmocka_unit_test(test_server_core_destroy_while_running),
      cmocka_unit_test(test_server_core_options_from_config),
      cmocka_unit_test(test_server_core_batched_responses_keep_order),
      cmocka_unit_test(test_server_tcp_echo_attachment_splits),
      cmocka_unit_test(test_server_tcp_pipelined_5000),
      cmocka_unit_test(test_server_tcp_stats_sum_over_loops),
      cmocka_unit_test(test_server_tcp_async_out_of_order_and_limit),
      cmocka_unit_test(test_server_tcp_errors_keep_connection),
      cmocka_unit_test(test_server_tcp_malformed_and_idle),
      cmocka_unit_test(test_server_tcp_compressed_echo),
      cmocka_unit_test(test_server_tcp_handler_sets_response_compress),
      cmocka_unit_test(test_server_tcp_corrupt_compressed_payload),
      cmocka_unit_test(test_server_tcp_compressed_body_limit),
      cmocka_unit_test(test_server_tcp_logoff_during_stop),
      cmocka_unit_test(test_server_tcp_never_called_closure),
      cmocka_unit_test(test_server_tcp_run_until_stop_async),
      cmocka_unit_test(test_server_tcp_late_second_closure_call),
      cmocka_unit_test(test_server_tcp_echo_server_program),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
