/*
 * Provider tests, core suite: the server core on the shared fake
 * environment (tests/support/fake_env.h: one thread, a manual clock, an
 * in-memory transport whose connections the test plays the peer of).
 * Proves the core runs without src/rt and makes deadlines, idle timers and
 * shutdown deterministic. The same provider over real TCP on the libev
 * runtime is tests/test_server_tcp.c; both use the test service of
 * tests/support/echo_svc.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <stdio.h>

#include "core/compress.h"
#include "echo.pb-c.h"
#include "mprpc/config.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
#include "support/echo_svc.h"
#include "support/test_client.h"
#include "support/test_env.h"

/* ---- the fake environment, as this suite uses it ---------------------------- */

/* The environment of the running test, for the connection helpers (one at a
 * time). */
static fake_env_t *g_env;

static fake_env_t *fenv_new(void) {
  fake_env_t *e = calloc(1, sizeof *e);
  assert_non_null(e);
  fake_env_init(e, &(fake_loop_opts_t){.seed = 7, .wall_offset_ns = FAKE_WALL_2023_NS},
                &(fake_net_opts_t){.listen_port = 4242, .accept_peer = "10.0.0.7:5555"});
  echo_svc_use_clock(e->L); /* "advance:N" */
  g_env = e;
  return e;
}

static void fenv_free(fake_env_t *e) {
  fake_env_free(e); /* runs what is queued first */
  echo_svc_use_clock(NULL);
  g_env = NULL;
  free(e);
}

/* A connection accepted by the server, as a peer that connected. */
static mprpc_conn_t *fconn_new(fake_env_t *e) {
  mprpc_conn_t *c = fake_net_accept(e->net);
  assert_true(fake_conn_set_up(c));
  fake_loop_run(e->L);
  return c;
}

static void fconn_feed(mprpc_conn_t *c, const void *p, size_t n) {
  assert_false(fake_conn_closed(c));
  fake_conn_deliver(c, p, n);
  fake_loop_run(g_env->L);
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
  size_t len;
  const uint8_t *p = fake_conn_unread(c, &len);
  memset(r, 0, sizeof *r);
  long n = mprpc_frame_parse(p, len, 0, &f);
  assert_true(n >= 0);
  if (n == 0)
    return false;
  assert_true(f.meta.has_response);
  tclient_resp_from_frame(&f, r);
  fake_conn_consume(c, (size_t)n);
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
  fake_env_t *e;
  mprpc_server_t *s;
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
  fake_loop_run(f->e->L);
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

/* Server shutdown in the fake env, so destroy finds it stopped. */
static void fsrv_shutdown(fsrv_t *f) {
  int done = 0;
  if (mprpc_server_shutdown(f->s, done_cb, &done) == 0) {
    fake_loop_advance(f->e->L, 10000);
    assert_int_equal(done, 1);
  }
}

/* ---- tests ------------------------------------------------------------------------ */

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
  assert_false(fake_conn_closed(c));
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
    assert_true(fake_conn_closed(bad));
    tclient_resp_t none;
    assert_false(fconn_resp(bad, &none));
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
}

/* The watchdog blames the handler that held the loop, not the request cut
 * from the same read that waited behind it. */
static void test_server_core_slow_handler_blames_only_itself(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  o.slow_handler_warn_ms = 100;
  fsrv_start(&f, &o);
  mprpc_conn_t *c = fconn_new(f.e);
  uint8_t all[1024];
  size_t n = 0;
  const char *msgs[3] = {"advance:150", "fast", "advance:20"};
  for (int i = 0; i < 3; i++) {
    Example__EchoRequest m;
    tclient_req_t r = echo_req(i + 1, &m, msgs[i]);
    uint8_t *fr;
    size_t fl;
    assert_int_equal(tclient_encode(&r, &fr, &fl), 0);
    memcpy(all + n, fr, fl);
    n += fl;
    free(fr);
  }
  fconn_feed(c, all, n);
  for (int i = 1; i <= 3; i++)
    fexpect(c, i, 0, NULL, 0);
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats_at(f.s, 0, &ms), 0);
  assert_int_equal(ms.slow_handlers, 1);
  fsrv_shutdown(&f);
  fsrv_free(&f);
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
    fake_loop_advance(f.e->L, 50);
    if (!fake_conn_closed(slow) && fl / 2 + (size_t)t + 1 < fl)
      fconn_feed(slow, fr + fl / 2 + (size_t)t, 1);
    r = echo_req(10 + t, &m, "ping");
    fconn_send(active, &r);
    fexpect(active, 10 + t, 0, NULL, 0);
  }
  free(fr);
  assert_true(fake_conn_closed(idle));
  assert_true(fake_conn_closed(slow));
  assert_false(fake_conn_closed(busy)); /* a call in flight keeps it open */
  assert_false(fake_conn_closed(active));
  held_complete(0, "done");
  fexpect(busy, 1, 0, NULL, 0);
  fake_loop_advance(f.e->L, 300);
  assert_true(fake_conn_closed(busy));
  assert_true(fake_conn_closed(active));
  mprpc_server_stats_t st;
  mprpc_server_stats(f.s, &st);
  assert_int_equal(st.connections_idle_closed, 4);
  fsrv_shutdown(&f);
  fsrv_free(&f);
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
  fake_conn_hangup(c, MPRPC_CLOSE_EOF, 0);
  fake_loop_run(f.e->L);
  /* the handler can still read its context, then answers: dropped */
  mprpc_server_call_t *call = mprpc_server_call_from(held_data(1));
  size_t alen;
  const uint8_t *a = mprpc_server_call_attachment(call, &alen);
  assert_int_equal(alen, 7);
  assert_memory_equal(a, "keep me", 7);
  held_complete(0, "late");
  fake_loop_run(f.e->L);
  mprpc_server_stats_t st;
  mprpc_server_stats(f.s, &st);
  assert_int_equal(st.responses_dropped, 1);
  assert_int_equal(st.inflight, 1);
  /* the other is never answered: drain times out, naming the method still
   * in flight, and destroy frees it */
  char path[] = "/tmp/mprpc-test-drain.XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  mprpc_log_opts_t lo;
  mprpc_log_opts_init(&lo);
  lo.path = path;
  lo.sync = 1;
  lo.level = MPRPC_LOG_LEVEL_WARN;
  assert_int_equal(mprpc_log_open(&lo), 0);
  fsrv_shutdown(&f);
  mprpc_log_close();
  mprpc_log_set_level(MPRPC_LOG_LEVEL_ERROR);
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  char text[4096];
  size_t n = fread(text, 1, sizeof text - 1, fp);
  text[n] = '\0';
  fclose(fp);
  unlink(path);
  assert_non_null(strstr(text, "drain timeout with 1 call(s) in flight (example.EchoService.Echo x1)"));
  held_forget();
  fsrv_free(&f); /* ASan: no leak */
}

static void test_server_core_graceful_stop(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  fake_reg_t *reg = calloc(1, sizeof *reg);
  fake_reg_init(reg);
  o.registry = fake_reg(reg);
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
  assert_true(fake_net_listener_closed(f.e->net));
  r = echo_req(2, &m, "new");
  fconn_send(c, &r);
  fexpect(c, 2, MPRPC_ELOGOFF, NULL, 0);
  fake_loop_advance(f.e->L, 50);
  assert_int_equal(done, 0); /* still draining */
  assert_false(fake_conn_closed(c));
  held_complete(0, "finished");
  fexpect(c, 1, 0, NULL, 0);
  fake_loop_advance(f.e->L, 50);
  /* nothing in flight, but the logoff grace (200 ms) keeps the connection
   * open so late requests get ELOGOFF rather than a closed connection */
  assert_false(fake_conn_closed(c));
  assert_int_equal(done, 0);
  r = echo_req(3, &m, "late");
  fconn_send(c, &r);
  fexpect(c, 3, MPRPC_ELOGOFF, NULL, 0);
  fake_loop_advance(f.e->L, 150);
  assert_true(fake_conn_closed(c));
  assert_int_equal(done, 1);
  fsrv_free(&f);
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
}

static void test_server_core_stats_log_timer(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fsrv_t f;
  fsrv_opts(&o);
  o.stats_log_period_ms = 100;
  fsrv_start(&f, &o);
  size_t before = fake_loop_timers(f.e->L);
  assert_int_equal(before, 1);
  fake_loop_advance(f.e->L, 350); /* three ticks, re-armed each time */
  assert_int_equal(fake_loop_timers(f.e->L), 1);
  fsrv_shutdown(&f);
  assert_int_equal(fake_loop_timers(f.e->L), 0);
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
  fake_conn_refuse_writes(c, true);
  r = echo_req(3, &m, "x");
  fconn_send(c, &r);
  assert_true(fake_conn_closed(c));
  fsrv_shutdown(&f);
  fsrv_free(&f);
}

static void test_server_core_register_failure_fails_start(void **state) {
  (void)state;
  fake_env_t *e = fenv_new();
  fake_reg_t reg;
  fake_reg_init(&reg);
  reg.fail_after = 0;
  mprpc_server_opts_t o;
  fsrv_opts(&o);
  o.transport = e->tr;
  o.loops = &e->loop;
  o.nloops = 1;
  o.registry = fake_reg(&reg);
  mprpc_server_t *s;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &echo_svc.base), 0);
  assert_int_equal(mprpc_server_start(s), MPRPC_EREGISTRY);
  fake_loop_run(e->L);
  assert_true(fake_net_listener_closed(e->net));
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

  fake_env_t *e = fenv_new();
  o.transport = e->tr;
  o.loops = &e->loop;
  o.nloops = 1;
  mprpc_server_t *s;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  for (int i = 0; i < NSVC; i++)
    assert_int_equal(mprpc_server_add_service(s, &svc_many[i].base), 0);
  assert_int_equal(mprpc_server_method_count(s), NSVC);
  assert_int_equal(mprpc_server_start(s), 0);
  fake_loop_run(e->L);
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
  /* the builtin mprpc.Reflection comes after the program's services */
  assert_int_equal(mprpc_server_method_stats_at(s, NSVC, &ms), 0);
  assert_string_equal(ms.service, "mprpc.Reflection");
  assert_int_equal(mprpc_server_method_stats_at(s, NSVC + 2, &ms), MPRPC_ERANGE);
  int done = 0;
  assert_int_equal(mprpc_server_shutdown(s, done_cb, &done), 0);
  fake_loop_advance(e->L, 1000);
  assert_int_equal(done, 1);
  mprpc_server_destroy(s);
  fenv_free(e);
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
      fake_loop_advance(f.e->L, 20);
      assert_int_equal(done, 0);
    }
    held_forget(); /* the handler's process "died" too */
    mprpc_server_destroy(f.s);
    assert_true(fake_net_listener_closed(f.e->net));
    fake_loop_advance(f.e->L, 10000); /* on_close events, no timer of the server left */
    assert_true(fake_conn_closed(a));
    assert_true(fake_conn_closed(b));
    assert_int_equal(fake_loop_timers(f.e->L), 0);
    fenv_free(f.e);
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
}

int main(void) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_ERROR);
  test_env_checks_fail_tests();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server_core_echo_and_attachment),
      cmocka_unit_test(test_server_core_split_and_coalesced),
      cmocka_unit_test(test_server_core_routing_errors_keep_connection),
      cmocka_unit_test(test_server_core_compressed_echo),
      cmocka_unit_test(test_server_core_malformed_closes_only_that_connection),
      cmocka_unit_test(test_server_core_deadline_passed_before_dispatch),
      cmocka_unit_test(test_server_core_slow_handler_blames_only_itself),
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
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
