/*
 * Console tests on the fake environment (tests/support/fake_env.h): the
 * provider's port told apart by first bytes, every page in its three
 * formats, malformed requests and limits, pipelining, /flags taking effect,
 * authentication, HTTP/JSON calls through the dispatcher, the console's own
 * port, and baidu_std connections undisturbed by all of it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <stdio.h>

#include "echo.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
#include "support/echo_svc.h"
#include "support/test_client.h"
#include "support/test_env.h"

static fake_env_t *g_env;

typedef struct fx {
  fake_env_t *e;
  mprpc_server_t *s;
} fx_t;

static void fx_opts(mprpc_server_opts_t *o) {
  mprpc_server_opts_init(o);
  o->host = "127.0.0.1";
  o->version = "test-1";
}

static void fx_start(fx_t *f, mprpc_server_opts_t *o) {
  memset(f, 0, sizeof *f);
  held_forget();
  f->e = calloc(1, sizeof *f->e);
  assert_non_null(f->e);
  fake_env_init(f->e, &(fake_loop_opts_t){.seed = 7, .wall_offset_ns = FAKE_WALL_2023_NS},
                &(fake_net_opts_t){.listen_port = 4242, .accept_peer = "10.0.0.7:5555"});
  echo_svc_use_clock(f->e->L);
  g_env = f->e;
  o->transport = f->e->tr;
  o->loops = &f->e->loop;
  o->nloops = 1;
  assert_int_equal(mprpc_server_new(o, &f->s), 0);
  assert_int_equal(mprpc_server_add_service(f->s, &echo_svc.base), 0);
  assert_int_equal(mprpc_server_start(f->s), 0);
  fake_loop_run(f->e->L);
}

static void fx_free(fx_t *f) {
  int done = 0;
  if (mprpc_server_shutdown(f->s, done_cb, &done) == 0)
    fake_loop_advance(f->e->L, 10000);
  mprpc_server_destroy(f->s);
  fake_env_free(f->e);
  echo_svc_use_clock(NULL);
  free(f->e);
  g_env = NULL;
}

static mprpc_conn_t *conn_new(void) {
  mprpc_conn_t *c = fake_net_accept(g_env->net);
  assert_true(fake_conn_set_up(c));
  fake_loop_run(g_env->L);
  return c;
}

static void feed(mprpc_conn_t *c, const void *p, size_t n) {
  assert_false(fake_conn_closed(c));
  fake_conn_deliver(c, p, n);
  fake_loop_run(g_env->L);
}

static void feeds(mprpc_conn_t *c, const char *s) { feed(c, s, strlen(s)); }

/* One HTTP response read from what the server wrote. */
typedef struct hresp {
  int status;
  char headers[4096];
  char *body; /* malloc'd, NUL-terminated */
  size_t body_len;
} hresp_t;

static bool hresp_read(mprpc_conn_t *c, hresp_t *r) {
  size_t len;
  const uint8_t *p = fake_conn_unread(c, &len);
  memset(r, 0, sizeof *r);
  const char *end = memmem(p, len, "\r\n\r\n", 4);
  if (!end)
    return false;
  size_t head = (size_t)(end - (const char *)p) + 4;
  assert_true(head < sizeof r->headers);
  memcpy(r->headers, p, head);
  assert_int_equal(sscanf(r->headers, "HTTP/1.1 %d", &r->status), 1);
  const char *cl = strcasestr(r->headers, "\r\nContent-Length: ");
  size_t blen = cl ? strtoul(cl + 18, NULL, 10) : 0;
  if (len < head + blen)
    return false;
  r->body = malloc(blen + 1);
  assert_non_null(r->body);
  memcpy(r->body, p + head, blen);
  r->body[blen] = 0;
  r->body_len = blen;
  fake_conn_consume(c, head + blen);
  return true;
}

static void hresp_free(hresp_t *r) {
  free(r->body);
  r->body = NULL;
}

/* Sends one request and reads its answer (status returned, body kept in r). */
static int get(mprpc_conn_t *c, const char *req, hresp_t *r) {
  feeds(c, req);
  if (!hresp_read(c, r))
    fail_msg("no complete answer to %s", req);
  return r->status;
}

static void expect_body(mprpc_conn_t *c, const char *req, int status, const char *needle) {
  hresp_t r;
  int st = get(c, req, &r);
  if (st != status || (needle && !strstr(r.body, needle)))
    fail_msg("%s: got %d\n%s%s\nwant %d with '%s'", req, st, r.headers, r.body, status,
             needle ? needle : "");
  hresp_free(&r);
}

static void echo_call(mprpc_conn_t *c, int64_t cid, const char *text) {
  Example__EchoRequest m;
  tclient_req_t rq = echo_req(cid, &m, text);
  uint8_t *f;
  size_t n;
  assert_int_equal(tclient_encode(&rq, &f, &n), 0);
  feed(c, f, n);
  free(f);
}

static void echo_expect(mprpc_conn_t *c, int64_t cid, int err) {
  mprpc_frame_t f;
  size_t len;
  const uint8_t *p = fake_conn_unread(c, &len);
  long n = mprpc_frame_parse(p, len, 0, &f);
  assert_true(n > 0);
  tclient_resp_t r;
  tclient_resp_from_frame(&f, &r);
  assert_int_equal(r.cid, cid);
  if (r.error_code != mprpc_err_to_wire(err))
    fail_msg("cid %lld: error %d %s", (long long)cid, r.error_code, r.error_text);
  tclient_resp_free(&r);
  fake_conn_consume(c, (size_t)n);
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: x\r\n\r\n"

/* ---- tests ------------------------------------------------------------------- */

static void test_console_sniff_shares_port_with_baidu_std(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  fx_opts(&o);
  fx_start(&f, &o);
  mprpc_conn_t *rpc = conn_new(), *web = conn_new();
  /* the signature split over deliveries: "PR" then "PC..." */
  Example__EchoRequest m;
  tclient_req_t rq = echo_req(1, &m, "hi");
  uint8_t *fr;
  size_t n;
  assert_int_equal(tclient_encode(&rq, &fr, &n), 0);
  feed(rpc, fr, 2);
  feeds(web, "GE");
  feed(rpc, fr + 2, n - 2);
  free(fr);
  echo_expect(rpc, 1, 0);
  feeds(web, "T /health HTTP/1.1\r\n\r\n");
  hresp_t r;
  assert_true(hresp_read(web, &r));
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "OK\n");
  hresp_free(&r);
  echo_call(rpc, 2, "again");
  echo_expect(rpc, 2, 0);
  /* not a protocol of this port: closed, the others go on */
  mprpc_conn_t *junk = conn_new(), *tls = conn_new();
  feeds(junk, "HELLO WORLD");
  assert_true(fake_conn_closed(junk));
  feed(tls, "\x16\x03\x01\x00\x10", 5);
  assert_true(fake_conn_closed(tls));
  echo_call(rpc, 3, "still");
  echo_expect(rpc, 3, 0);
  expect_body(web, GET("/health"), 200, "OK");
  fx_free(&f);
}

static void test_console_off_means_baidu_std_only(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  fx_opts(&o);
  o.console = false;
  fx_start(&f, &o);
  mprpc_conn_t *web = conn_new();
  feeds(web, GET("/health"));
  assert_true(fake_conn_closed(web));
  size_t len;
  fake_conn_unread(web, &len);
  assert_int_equal(len, 0);
  fx_free(&f);
}

static void test_console_pages_in_three_formats(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  fx_opts(&o);
  fx_start(&f, &o);
  mprpc_conn_t *rpc = conn_new(), *web = conn_new();
  for (int k = 0; k < 5; k++) {
    echo_call(rpc, k, "x");
    echo_expect(rpc, k, 0);
  }
  fake_loop_advance(f.e->L, 2100); /* two seconds of the ring */
  expect_body(web, GET("/"), 200, "/status");
  expect_body(web, GET("/status"), 200, "service example.EchoService\n  method Echo calls=5 ");
  expect_body(web, GET("/status"), 200, "version test-1");
  expect_body(web, GET("/status?format=json"), 200, "\"name\":\"example.EchoService\"");
  expect_body(web, GET("/status?format=json"), 200, "\"qps_series\":[5,0]");
  expect_body(web, "GET /status HTTP/1.1\r\nAccept: text/html,*/*\r\n\r\n", 200, "<svg");
  expect_body(web, "GET /status HTTP/1.1\r\nAccept: text/html\r\n\r\n", 200,
              "example.EchoService.Echo qps");
  expect_body(web, GET("/version"), 200, "version test-1");
  expect_body(web, GET("/version?format=json"), 200, "\"version\":\"test-1\"");
  expect_body(web, GET("/protobufs"), 200,
              "rpc Echo(example.EchoRequest) returns (example.EchoResponse)");
  expect_body(web, GET("/protobufs"), 200, "required string message = 1;");
  expect_body(web, GET("/protobufs?format=json"), 200, "\"input\":\"example.EchoRequest\"");
  expect_body(web, GET("/connections"), 200, "10.0.0.7:5555 protocol=baidu_std");
  expect_body(web, GET("/connections"), 200, "protocol=http");
  expect_body(web, GET("/connections?format=json"), 200, "\"requests\":5,");
  expect_body(web, GET("/rpcz"), 200, "example.EchoService.Echo peer=10.0.0.7:5555 trace_id=");
  expect_body(web, GET("/rpcz?format=json"), 200, "\"spans\":[");
  expect_body(web, GET("/rpcz?trace_id=1"), 200, ""); /* a trace nobody used: empty */
  expect_body(web, GET("/rpcz?trace_id=zz"), 400, "trace_id: expected 1 to 16 hex digits");
  expect_body(web, GET("/nope"), 404, "no page /nope");
  expect_body(web, GET("/static/app.js"), 404, "no page /static/app.js");
  expect_body(web, GET("/example.EchoService/Echo"), 405, "POST");
  expect_body(web, "POST /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, "GET");
  /* HEAD: the headers only */
  hresp_t r;
  feeds(web, "HEAD /health HTTP/1.1\r\n\r\n");
  size_t len;
  const uint8_t *p = fake_conn_unread(web, &len);
  assert_non_null(memmem(p, len, "Content-Length: 3\r\n", 19));
  assert_non_null(memmem(p, len, "\r\n\r\n", 4));
  fake_conn_consume(web, len);
  (void)r;
  fx_free(&f);
}

static void test_console_metrics_names_and_counts(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  fx_opts(&o);
  fx_start(&f, &o);
  mprpc_conn_t *rpc = conn_new(), *web = conn_new();
  for (int k = 0; k < 7; k++) {
    echo_call(rpc, k, "x");
    echo_expect(rpc, k, 0);
  }
  echo_call(rpc, 8, "error");
  echo_expect(rpc, 8, 4242);
  hresp_t r;
  assert_int_equal(get(web, GET("/metrics"), &r), 200);
  assert_non_null(strstr(r.headers, "Content-Type: text/plain; version=0.0.4"));
  const char *want[] = {
      "mprpc_server_requests_total{service=\"example.EchoService\",method=\"Echo\",code=\"0\"} 7\n",
      "mprpc_server_requests_total{service=\"example.EchoService\",method=\"Echo\",code=\"other\"} 1\n",
      "# TYPE mprpc_server_request_duration_seconds histogram\n",
      "mprpc_server_request_duration_seconds_bucket{service=\"example.EchoService\",method=\"Echo\","
      "le=\"+Inf\"} 8\n",
      "mprpc_server_request_duration_seconds_count{service=\"example.EchoService\",method=\"Echo\"} 8\n",
      "mprpc_server_request_duration_seconds_sum{",
      "mprpc_server_inflight{service=\"example.EchoService\",method=\"Echo\"} 0\n",
      "mprpc_server_connections 2\n",
      "mprpc_server_received_bytes_total ",
      "mprpc_server_sent_bytes_total ",
      "process_resident_memory_bytes ",
      "process_cpu_seconds_total ",
      "process_start_time_seconds ",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(r.body, want[i]))
      fail_msg("/metrics lacks %s\n%s", want[i], r.body);
  hresp_free(&r);
  fx_free(&f);
}

/* A rate refusal and a concurrency refusal land in their own series, on
 * /metrics and /status (local governance: no registry, no config centre). */
static void test_console_refusals_by_reason(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  fx_opts(&o);
  o.governance = "max_concurrency.Echo=1\nrate_limit.Echo=2/2\n"; /* the clock stands still */
  fx_start(&f, &o);
  mprpc_conn_t *rpc = conn_new(), *web = conn_new();
  echo_call(rpc, 1, "hold"); /* a token and the one slot */
  echo_call(rpc, 2, "x");    /* the second token; no slot */
  echo_expect(rpc, 2, MPRPC_ELIMIT);
  echo_call(rpc, 3, "x"); /* no token */
  echo_expect(rpc, 3, MPRPC_ELIMIT);
  held_complete(0, "done");
  fake_loop_run(f.e->L);
  echo_expect(rpc, 1, 0);
  hresp_t r;
  assert_int_equal(get(web, GET("/metrics"), &r), 200);
  const char *want[] = {
      "# TYPE mprpc_server_refused_calls_total counter\n",
      "mprpc_server_refused_calls_total{service=\"example.EchoService\",method=\"Echo\","
      "reason=\"rate_limit\"} 1\n",
      "mprpc_server_refused_calls_total{service=\"example.EchoService\",method=\"Echo\","
      "reason=\"max_concurrency\"} 1\n",
      "mprpc_server_requests_total{service=\"example.EchoService\",method=\"Echo\",code=\"2004\"} 2\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(r.body, want[i]))
      fail_msg("/metrics lacks %s\n%s", want[i], r.body);
  hresp_free(&r);
  expect_body(web, GET("/status"), 200, "refused_rate_limit=1 refused_max_concurrency=1\n");
  expect_body(web, GET("/status?format=json"), 200,
              "\"refused_rate_limit\":1,\"refused_max_concurrency\":1");
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats(f.s, "example.EchoService", "Echo", &ms), 0);
  assert_int_equal(ms.refused_rate_limit, 1);
  assert_int_equal(ms.refused_max_concurrency, 1);
  fx_free(&f);
}

static void test_console_malformed_and_limits(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  fx_opts(&o);
  fx_start(&f, &o);
  mprpc_conn_t *rpc = conn_new();
  struct {
    const char *what;
    int status;
  } cases[] = {{"garbage", 400}, {"head", 431}, {"body", 413}, {"chunk", 413}, {"version", 400}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    mprpc_conn_t *c = conn_new();
    if (k == 0) {
      feeds(c, "GET /\x01\x02 junk\r\n\r\n");
    } else if (k == 1) {
      feeds(c, "GET / HTTP/1.1\r\nX-Big: ");
      char *big = malloc(17 * 1024);
      memset(big, 'a', 17 * 1024);
      feed(c, big, 17 * 1024);
      free(big);
    } else if (k == 2) {
      feeds(c, "POST /flags/log_level HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n");
    } else if (k == 3) {
      feeds(c, "POST /x/y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n");
    } else {
      feeds(c, "GET / HTTP/9.9\r\n\r\n");
    }
    hresp_t r;
    if (!hresp_read(c, &r))
      fail_msg("%s: no answer", cases[k].what);
    if (r.status != cases[k].status)
      fail_msg("%s: %d, want %d", cases[k].what, r.status, cases[k].status);
    assert_non_null(strstr(r.headers, "Connection: close"));
    hresp_free(&r);
    fake_loop_advance(f.e->L, 10);
    assert_true(fake_conn_closed(c));
    echo_call(rpc, (int64_t)k, "fine");
    echo_expect(rpc, (int64_t)k, 0);
  }
  mprpc_server_stats_t ss;
  mprpc_server_stats(f.s, &ss);
  assert_int_equal(ss.malformed_frames, 5);
  fx_free(&f);
}

static void test_console_pipelining_keep_alive_and_close(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  fx_opts(&o);
  fx_start(&f, &o);
  mprpc_conn_t *web = conn_new();
  feeds(web, GET("/health") GET("/version") GET("/nope") GET("/health"));
  hresp_t r;
  int want[] = {200, 200, 404, 200};
  for (int i = 0; i < 4; i++) {
    assert_true(hresp_read(web, &r));
    assert_int_equal(r.status, want[i]);
    if (i == 1)
      assert_non_null(strstr(r.body, "mprpc "));
    assert_non_null(strstr(r.headers, "Connection: keep-alive"));
    hresp_free(&r);
  }
  assert_false(fake_conn_closed(web));
  /* byte by byte, then Connection: close */
  const char *req = "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n";
  for (size_t i = 0; req[i]; i++)
    feed(web, req + i, 1);
  assert_true(hresp_read(web, &r));
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.headers, "Connection: close"));
  hresp_free(&r);
  fake_loop_advance(f.e->L, 10);
  assert_true(fake_conn_closed(web));
  /* HTTP/1.0 without keep-alive closes too */
  mprpc_conn_t *old = conn_new();
  feeds(old, "GET /health HTTP/1.0\r\n\r\n");
  assert_true(hresp_read(old, &r));
  assert_int_equal(r.status, 200);
  hresp_free(&r);
  fake_loop_advance(f.e->L, 10);
  assert_true(fake_conn_closed(old));
  fx_free(&f);
}

static void test_console_flags_read_only_by_default(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  fx_opts(&o);
  fx_start(&f, &o);
  mprpc_conn_t *web = conn_new();
  expect_body(web, GET("/flags"), 200, "max_concurrency.example.EchoService.Echo 0\n");
  expect_body(web, GET("/flags"), 200, "log_level ");
  expect_body(web, GET("/flags?format=json"), 200, "\"writable\":false");
  expect_body(web, "POST /flags/log_level?value=debug HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 403,
              "console_write");
  fx_free(&f);
}

static void test_console_flags_take_effect(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  fx_opts(&o);
  o.console_write = true;
  fx_start(&f, &o);
  mprpc_conn_t *rpc = conn_new(), *web = conn_new();
#define POST(path) "POST " path " HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
  expect_body(web, POST("/flags/nope?value=1"), 404, "no flag named nope");
  expect_body(web, POST("/flags/max_concurrency.example.EchoService.Nope?value=1"), 404, "no flag");
  expect_body(web, POST("/flags/log_level?value=loud"), 400, "is not a level");
  expect_body(web, POST("/flags/log_level"), 400, "no value");
  expect_body(web, POST("/flags/stats_period?value=-5"), 400, "not a number");
  expect_body(web, POST("/flags/max_concurrency.example.EchoService.Echo?value=x1"), 400,
              "not a concurrency limit");
  expect_body(web, GET("/flags/log_level?value=info"), 405, "POST");
  /* the limit: one call held, the second refused */
  expect_body(web, POST("/flags/max_concurrency.example.EchoService.Echo?value=1"), 200,
              "max_concurrency.example.EchoService.Echo 1 (was 0)");
  echo_call(rpc, 1, "hold");
  echo_call(rpc, 2, "x");
  echo_expect(rpc, 2, MPRPC_ELIMIT);
  held_complete(0, "done");
  fake_loop_run(f.e->L);
  echo_expect(rpc, 1, 0);
  echo_call(rpc, 3, "x");
  echo_expect(rpc, 3, 0);
  expect_body(web, GET("/status"), 200, "max_concurrency=1");
  /* back to none: two held at once are fine */
  expect_body(web, POST("/flags/max_concurrency.example.EchoService.Echo?value=0"), 200, "(was 1)");
  echo_call(rpc, 4, "hold");
  echo_call(rpc, 5, "hold");
  assert_int_equal(held_count(), 2);
  held_complete(0, "a");
  held_complete(0, "b");
  fake_loop_run(f.e->L);
  echo_expect(rpc, 4, 0);
  echo_expect(rpc, 5, 0);
  /* log level, as JSON; the value may come as the body too */
  int was = mprpc_log_get_level();
  expect_body(web, POST("/flags/log_level?value=error&format=json"), 200, "\"value\":\"error\"");
  assert_int_equal(mprpc_log_get_level(), MPRPC_LOG_LEVEL_ERROR);
  expect_body(web, "POST /flags/log_level HTTP/1.1\r\nContent-Length: 5\r\n\r\ndebug", 200,
              "log_level debug");
  assert_int_equal(mprpc_log_get_level(), MPRPC_LOG_LEVEL_DEBUG);
  mprpc_log_set_level(was);
  /* stats period: the log timer appears */
  size_t timers = fake_loop_timers(f.e->L);
  expect_body(web, POST("/flags/stats_period?value=500"), 200, "stats_period 500");
  fake_loop_run(f.e->L);
  assert_int_equal(fake_loop_timers(f.e->L), timers + 1);
  expect_body(web, POST("/flags/stats_period?value=0"), 200, "(was 500)");
  fake_loop_run(f.e->L);
  assert_int_equal(fake_loop_timers(f.e->L), timers);
  fx_free(&f);
}

static void test_console_authentication(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  int calls = 0;
  fx_opts(&o);
  o.authenticate = auth_cb;
  o.auth_ud = &calls;
  fx_start(&f, &o);
  mprpc_conn_t *web = conn_new();
  hresp_t r;
  assert_int_equal(get(web, GET("/status"), &r), 401);
  assert_non_null(strstr(r.headers, "WWW-Authenticate: Basic"));
  hresp_free(&r);
  expect_body(web, "GET /status HTTP/1.1\r\nAuthorization: wrong\r\n\r\n", 403,
              "authentication failed");
  expect_body(web, "GET /status HTTP/1.1\r\nAuthorization: secret\r\n\r\n", 200,
              "example.EchoService");
  /* every request is checked (no connection-wide pass) */
  expect_body(web, GET("/metrics"), 401, NULL);
  expect_body(web,
              "POST /example.EchoService/Echo HTTP/1.1\r\nAuthorization: secret\r\n"
              "Content-Length: 15\r\n\r\n{\"message\":\"a\"}",
              200, "{\"message\":\"a\"}");
  assert_true(calls >= 3);
  fx_free(&f);
}

static void test_console_json_calls(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  fx_opts(&o);
  fx_start(&f, &o);
  mprpc_conn_t *web = conn_new();
#define CALL(path, body)                                                                         \
  "POST " path " HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n" body
  char req[512];
  snprintf(req, sizeof req, CALL("/example.EchoService/Echo", "{\"message\":\"hi\"}"),
           strlen("{\"message\":\"hi\"}"));
  hresp_t r;
  assert_int_equal(get(web, req, &r), 200);
  assert_non_null(strstr(r.headers, "Content-Type: application/json"));
  assert_string_equal(r.body, "{\"message\":\"hi\"}\n");
  hresp_free(&r);
  snprintf(req, sizeof req, CALL("/example.EchoService/Echo", "{\"message\":5}"),
           strlen("{\"message\":5}"));
  expect_body(web, req, 400, "\"error_name\":\"EREQUEST\"");
  expect_body(web, req, 400, "message");
  snprintf(req, sizeof req, CALL("/example.EchoService/Echo", "{}"), strlen("{}"));
  expect_body(web, req, 400, "message");
  snprintf(req, sizeof req, CALL("/example.Nope/Echo", "{}"), strlen("{}"));
  expect_body(web, req, 404, "{\"error_code\":1001,\"error_name\":\"ENOSERVICE\"");
  snprintf(req, sizeof req, CALL("/example.EchoService/Nope", "{}"), strlen("{}"));
  expect_body(web, req, 404, "\"error_code\":1002");
  snprintf(req, sizeof req, CALL("/example.EchoService/Echo", "{\"message\":\"error\"}"),
           strlen("{\"message\":\"error\"}"));
  expect_body(web, req, 500, "{\"error_code\":4242,\"error_name\":\"EAPP\",\"error_text\":");
  /* a held call answers later; a request pipelined behind it waits its turn */
  char two[768];
  snprintf(req, sizeof req, CALL("/example.EchoService/Echo", "{\"message\":\"hold\"}"),
           strlen("{\"message\":\"hold\"}"));
  snprintf(two, sizeof two, "%s%s", req, GET("/health"));
  feeds(web, two);
  size_t len;
  fake_conn_unread(web, &len);
  assert_int_equal(len, 0);
  assert_int_equal(held_count(), 1);
  held_complete(0, "later");
  fake_loop_run(f.e->L);
  assert_true(hresp_read(web, &r));
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"message\":\"later\"}\n");
  hresp_free(&r);
  assert_true(hresp_read(web, &r));
  assert_string_equal(r.body, "OK\n");
  hresp_free(&r);
  /* the same stats as baidu_std calls */
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats(f.s, "example.EchoService", "Echo", &ms), 0);
  assert_int_equal(ms.requests, 3);
  assert_int_equal(ms.completed, 3);
  fx_free(&f);
}

static void test_console_health_503_while_stopping(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  fx_opts(&o);
  o.logoff_grace_ms = 1000;
  o.drain_timeout_ms = 2000;
  fx_start(&f, &o);
  mprpc_conn_t *rpc = conn_new(), *web = conn_new();
  expect_body(web, GET("/health"), 200, "OK");
  echo_call(rpc, 1, "hold");
  int done = 0;
  assert_int_equal(mprpc_server_shutdown(f.s, done_cb, &done), 0);
  fake_loop_run(f.e->L);
  hresp_t r;
  assert_int_equal(get(web, GET("/health?format=json"), &r), 503);
  assert_string_equal(r.body, "{\"status\":\"stopping\"}\n");
  assert_non_null(strstr(r.headers, "Connection: close"));
  hresp_free(&r);
  held_complete(0, "bye");
  fake_loop_advance(f.e->L, 5000);
  assert_int_equal(done, 1);
  mprpc_server_destroy(f.s);
  f.s = NULL;
  fake_env_free(f.e);
  echo_svc_use_clock(NULL);
  free(f.e);
}

static void test_console_own_port_speaks_only_http(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  fx_t f;
  fx_opts(&o);
  o.console_port = 4243;
  fx_start(&f, &o);
  assert_int_equal(mprpc_server_console_port(f.s), 4242); /* the fake net's listen_port */
  mprpc_conn_t *web = conn_new(); /* the newest listener: the console's */
  expect_body(web, GET("/health"), 200, "OK");
  mprpc_conn_t *rpc = conn_new();
  echo_call(rpc, 1, "x");
  assert_true(fake_conn_closed(rpc));
  fx_free(&f);
}

int main(void) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_console_sniff_shares_port_with_baidu_std),
      cmocka_unit_test(test_console_off_means_baidu_std_only),
      cmocka_unit_test(test_console_pages_in_three_formats),
      cmocka_unit_test(test_console_metrics_names_and_counts),
      cmocka_unit_test(test_console_refusals_by_reason),
      cmocka_unit_test(test_console_malformed_and_limits),
      cmocka_unit_test(test_console_pipelining_keep_alive_and_close),
      cmocka_unit_test(test_console_flags_read_only_by_default),
      cmocka_unit_test(test_console_flags_take_effect),
      cmocka_unit_test(test_console_authentication),
      cmocka_unit_test(test_console_json_calls),
      cmocka_unit_test(test_console_health_503_while_stopping),
      cmocka_unit_test(test_console_own_port_speaks_only_http),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
