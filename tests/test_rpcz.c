/* Trace ids and /rpcz: ids on the wire, fresh traces, propagation through a
 * two-hop chain consumer -> A -> B (async, handler_threads sync, another
 * thread with a saved context, a call from a closure), a brpc client's ids
 * kept, the ring's wrap at 1,024 and filter, and its three renderings.
 * The chain runs on real loops and loopback TCP (port 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rpcz.h"
#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/controller.h"
#include "mprpc/errors.h"
#include "mprpc/server.h"
#include "mprpc/trace.h"
#include "rpc_meta.pb-c.h"
#include "support/test_client.h"

#define WAIT_MS 10000

/* ---- the ring alone --------------------------------------------------------------- */

static mprpc_rpcz_span_t span(int64_t trace, int64_t id, int64_t parent) {
  mprpc_rpcz_span_t s;
  memset(&s, 0, sizeof s);
  s.start_wall_ns = 1764768002123456000ull; /* 2025-12-03T13:20:02.123456Z */
  s.latency_us = 250;
  s.service = "example.EchoService";
  s.method = "Echo";
  snprintf(s.peer, sizeof s.peer, "127.0.0.1:4000");
  s.trace_id = trace;
  s.span_id = id;
  s.parent_span_id = parent;
  s.request_bytes = 40;
  s.response_bytes = 38;
  return s;
}

static void test_rpcz_ring_wraps_at_1024(void **st) {
  (void)st;
  mprpc__rpcz_t *z = mprpc__rpcz_new();
  assert_non_null(z);
  mprpc_rpcz_span_t *out = calloc(2048, sizeof *out);
  assert_int_equal(mprpc__rpcz_snapshot(z, out, 2048, 0), 0);
  for (int i = 1; i <= 1500; i++) {
    mprpc_rpcz_span_t s = span(7, i, 0);
    mprpc__rpcz_record(z, &s);
  }
  size_t n = mprpc__rpcz_snapshot(z, out, 2048, 0);
  assert_int_equal(n, MPRPC_RPCZ_SPANS);
  assert_int_equal(out[0].span_id, 1500); /* newest first */
  assert_int_equal(out[n - 1].span_id, 1500 - MPRPC_RPCZ_SPANS + 1);
  for (size_t i = 1; i < n; i++)
    assert_int_equal(out[i].span_id, out[i - 1].span_id - 1);
  assert_int_equal(mprpc__rpcz_snapshot(z, out, 10, 0), 10); /* max is kept */
  free(out);
  mprpc__rpcz_free(z);
}

static void test_rpcz_filter_by_trace_id(void **st) {
  (void)st;
  mprpc__rpcz_t *z = mprpc__rpcz_new();
  for (int i = 1; i <= 30; i++) {
    mprpc_rpcz_span_t s = span(i % 3 == 0 ? 0x5eed : 0x77, i, 0);
    mprpc__rpcz_record(z, &s);
  }
  mprpc_rpcz_span_t out[64];
  size_t n = mprpc__rpcz_snapshot(z, out, 64, 0x5eed);
  assert_int_equal(n, 10);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(out[i].trace_id, 0x5eed);
  assert_int_equal(mprpc__rpcz_snapshot(z, out, 64, 0x999), 0);

  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  mprpc__rpcz_render(z, &tb, MPRPC__RPCZ_TEXT, 0x5eed);
  assert_int_equal(tb.err, 0);
  size_t lines = 0;
  for (const char *p = mprpc__textbuf_cstr(&tb); (p = strchr(p, '\n')); p++)
    lines++;
  assert_int_equal(lines, 10);
  assert_null(strstr(mprpc__textbuf_cstr(&tb), "trace_id=0000000000000077"));
  mprpc__textbuf_free(&tb);

  uint64_t id;
  assert_int_equal(mprpc__rpcz_parse_id("0000000000005eed", 16, &id), 0);
  assert_int_equal(id, 0x5eed);
  assert_int_equal(mprpc__rpcz_parse_id("0x5EED", 6, &id), 0);
  assert_int_equal(id, 0x5eed);
  assert_int_equal(mprpc__rpcz_parse_id("ffffffffffffffff", 16, &id), 0);
  assert_true(id == UINT64_MAX);
  assert_int_equal(mprpc__rpcz_parse_id("12g", 3, &id), MPRPC_EINVAL);
  assert_int_equal(mprpc__rpcz_parse_id("", 0, &id), MPRPC_EINVAL);
  assert_int_equal(mprpc__rpcz_parse_id("11111111111111111", 17, &id), MPRPC_EINVAL);
  mprpc__rpcz_free(z);
}

static void test_rpcz_render_outputs(void **st) {
  (void)st;
  mprpc__rpcz_t *z = mprpc__rpcz_new();
  mprpc_rpcz_span_t a = span(0x1234abcd, 0x11, 0), b = span(-2, 0x22, 0x11);
  b.error_code = 1008;
  snprintf(b.peer, sizeof b.peer, "<peer>&\"x\"");
  mprpc__rpcz_record(z, &a);
  mprpc__rpcz_record(z, &b);

  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  mprpc__rpcz_render(z, &tb, MPRPC__RPCZ_TEXT, 0);
  const char *t = mprpc__textbuf_cstr(&tb);
  assert_string_equal(
      t,
      "2025-12-03T13:20:02.123456Z example.EchoService.Echo peer=<peer>&\"x\" "
      "trace_id=fffffffffffffffe span_id=0000000000000022 parent_span_id=0000000000000011 "
      "latency_us=250 error_code=1008 request_bytes=40 response_bytes=38\n"
      "2025-12-03T13:20:02.123456Z example.EchoService.Echo peer=127.0.0.1:4000 "
      "trace_id=000000001234abcd span_id=0000000000000011 parent_span_id=0000000000000000 "
      "latency_us=250 error_code=0 request_bytes=40 response_bytes=38\n");

  mprpc__textbuf_reset(&tb);
  mprpc__rpcz_render(z, &tb, MPRPC__RPCZ_HTML, 0);
  t = mprpc__textbuf_cstr(&tb);
  assert_non_null(strstr(t, "<table class=\"rpcz\">"));
  assert_non_null(strstr(t, "&lt;peer&gt;&amp;"));
  assert_null(strstr(t, "<peer>"));
  assert_non_null(strstr(t, "<a href=\"/rpcz?trace_id=000000001234abcd\">"));
  assert_non_null(strstr(t, "</table>"));

  mprpc__textbuf_reset(&tb);
  mprpc__rpcz_render(z, &tb, MPRPC__RPCZ_JSON, 0);
  json_error_t je;
  json_t *j = json_loads(mprpc__textbuf_cstr(&tb), 0, &je);
  assert_non_null(j);
  json_t *spans = json_object_get(j, "spans");
  assert_int_equal(json_array_size(spans), 2);
  json_t *s0 = json_array_get(spans, 0);
  assert_string_equal(json_string_value(json_object_get(s0, "trace_id")), "fffffffffffffffe");
  assert_string_equal(json_string_value(json_object_get(s0, "parent_span_id")),
                      "0000000000000011");
  assert_string_equal(json_string_value(json_object_get(s0, "peer")), "<peer>&\"x\"");
  assert_string_equal(json_string_value(json_object_get(s0, "method")), "Echo");
  assert_int_equal(json_integer_value(json_object_get(s0, "error_code")), 1008);
  assert_int_equal(json_integer_value(json_object_get(s0, "latency_us")), 250);
  assert_int_equal(json_integer_value(json_object_get(s0, "request_bytes")), 40);
  assert_int_equal(json_integer_value(json_object_get(j, "capacity")), MPRPC_RPCZ_SPANS);
  json_decref(j);

  mprpc__textbuf_reset(&tb);
  mprpc__rpcz_render(NULL, &tb, MPRPC__RPCZ_JSON, 0); /* a server that records none */
  j = json_loads(mprpc__textbuf_cstr(&tb), 0, &je);
  assert_non_null(j);
  assert_int_equal(json_array_size(json_object_get(j, "spans")), 0);
  json_decref(j);
  mprpc__textbuf_free(&tb);
  mprpc__rpcz_free(z);
}

/* ---- the chain: consumer -> A -> B ------------------------------------------------ */

/* B records the ids each request carried on the wire (meta is as sent). */
static struct {
  atomic_int n;
  mprpc_server_call_meta_t last;
} b_seen;

static void b_echo(Example__EchoService_Service *svc, const Example__EchoRequest *req,
                   Example__EchoResponse_Closure done, void *cd) {
  (void)svc;
  const mprpc_server_call_meta_t *m = mprpc_server_call_meta(mprpc_server_call_from(cd));
  b_seen.last = *m;
  atomic_fetch_add(&b_seen.n, 1);
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = (char *)req->message;
  done(&resp, cd);
}

static Example__EchoService_Service b_svc = EXAMPLE__ECHO_SERVICE__INIT(b_);

static mprpc_channel_t *to_b; /* A's channel to B */

/* A's pending answer to its consumer. */
typedef struct a_job {
  Example__EchoResponse_Closure done;
  void *cd;
  int left; /* B calls still to make ("twice") */
} a_job_t;

static void a_answer(a_job_t *j, const char *msg) {
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = (char *)msg;
  j->done(&resp, j->cd);
  free(j);
}

static void a_b_done(const ProtobufCMessage *msg, void *arg) {
  a_job_t *j = arg;
  if (msg && --j->left > 0) {
    /* From the closure of the first call: the second one must still be a
     * child of the handler's span. */
    Example__EchoRequest inner = EXAMPLE__ECHO_REQUEST__INIT;
    inner.message = "second";
    if (mprpc_channel_call(to_b, 0, &inner.base, NULL, a_b_done, j) != 0)
      a_answer(j, "call failed");
    return;
  }
  a_answer(j, msg ? ((const Example__EchoResponse *)msg)->message : "b failed");
}

static void ignore_done(const Example__EchoResponse *resp, void *arg) {
  (void)resp;
  (void)arg;
}

/* The held call of the "later" mode, completed by the test thread. */
static struct {
  atomic_int held;
  mprpc_trace_ctx_t ctx;
  Example__EchoResponse_Closure done;
  void *cd;
} later;

static struct {
  mprpc_trace_ctx_t current, call;
} a_seen;

static void a_echo(Example__EchoService_Service *svc, const Example__EchoRequest *req,
                   Example__EchoResponse_Closure done, void *cd) {
  (void)svc;
  mprpc_server_call_t *call = mprpc_server_call_from(cd);
  a_seen.current = mprpc_trace_current();
  a_seen.call = mprpc_server_call_trace(call);
  Example__EchoRequest inner = EXAMPLE__ECHO_REQUEST__INIT;
  inner.message = "inner";
  if (strcmp(req->message, "async") == 0 || strcmp(req->message, "twice") == 0) {
    a_job_t *j = calloc(1, sizeof *j);
    j->done = done;
    j->cd = cd;
    j->left = strcmp(req->message, "twice") == 0 ? 2 : 1;
    if (mprpc_channel_call(to_b, 0, &inner.base, NULL, a_b_done, j) != 0)
      a_answer(j, "call failed");
  } else if (strcmp(req->message, "sync") == 0) { /* handler_threads */
    mprpc_controller_t *ctl = mprpc_controller_new();
    mprpc_controller_use_next(ctl);
    example__echo_service__echo(mprpc_channel_service(to_b), &inner, ignore_done, NULL);
    Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
    resp.message = mprpc_controller_failed(ctl) ? "b failed" : "synced";
    mprpc_controller_free(ctl);
    done(&resp, cd);
  } else if (strcmp(req->message, "later") == 0) {
    later.ctx = mprpc_server_call_trace(call);
    later.done = done;
    later.cd = cd;
    atomic_store(&later.held, 1);
  } else {
    Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
    resp.message = (char *)req->message;
    done(&resp, cd);
  }
}

static Example__EchoService_Service a_svc = EXAMPLE__ECHO_SERVICE__INIT(a_);

typedef struct chain {
  mprpc_server_t *a, *b;
  mprpc_channel_t *to_a; /* the consumer's */
} chain_t;

static mprpc_server_t *serve(Example__EchoService_Service *svc, size_t handler_threads) {
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = "127.0.0.1";
  o.handler_threads = handler_threads;
  mprpc_server_t *s;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &svc->base), 0);
  assert_int_equal(mprpc_server_start(s), 0);
  return s;
}

static mprpc_channel_t *channel_to(mprpc_server_t *s) {
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)mprpc_server_port(s));
  mprpc_channel_opts_t co;
  mprpc_channel_opts_init(&co);
  co.servers = addr;
  co.timeout_ms = WAIT_MS;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &co, &ch), 0);
  return ch;
}

static void chain_start(chain_t *c, size_t a_threads) {
  memset(&b_seen, 0, sizeof b_seen);
  c->b = serve(&b_svc, 0);
  to_b = channel_to(c->b);
  c->a = serve(&a_svc, a_threads);
  c->to_a = channel_to(c->a);
}

static void chain_stop(chain_t *c) {
  mprpc_channel_destroy(c->to_a);
  mprpc_server_destroy(c->a);
  mprpc_channel_destroy(to_b);
  to_b = NULL;
  mprpc_server_destroy(c->b);
}

/* One synchronous call from the test thread through ctl (reset first). */
static void consumer_call(chain_t *c, mprpc_controller_t *ctl, const char *msg) {
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = (char *)msg;
  mprpc_controller_use_next(ctl);
  example__echo_service__echo(mprpc_channel_service(c->to_a), &req, ignore_done, NULL);
  assert_int_equal(mprpc_controller_error_code(ctl), 0);
}

/* The span server s recorded with this span id; fails when absent. */
static mprpc_rpcz_span_t find_span(mprpc_server_t *s, int64_t span_id) {
  mprpc_rpcz_span_t *all = calloc(MPRPC_RPCZ_SPANS, sizeof *all);
  size_t n = mprpc_server_rpcz_snapshot(s, all, MPRPC_RPCZ_SPANS, 0);
  mprpc_rpcz_span_t got;
  memset(&got, 0, sizeof got);
  for (size_t i = 0; i < n; i++)
    if (all[i].span_id == span_id)
      got = all[i];
  free(all);
  assert_int_equal(got.span_id, span_id);
  return got;
}

/* B's spans of trace t: each must be a child of parent. Returns how many. */
static size_t b_children(mprpc_server_t *b, int64_t t, int64_t parent) {
  mprpc_rpcz_span_t *all = calloc(MPRPC_RPCZ_SPANS, sizeof *all);
  size_t n = mprpc_server_rpcz_snapshot(b, all, MPRPC_RPCZ_SPANS, t);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(all[i].trace_id, t);
    assert_int_equal(all[i].parent_span_id, parent);
    assert_int_not_equal(all[i].span_id, parent);
    assert_int_not_equal(all[i].span_id, 0);
  }
  free(all);
  return n;
}

static void test_rpcz_fresh_trace_and_ids_on_the_wire(void **st) {
  (void)st;
  chain_t c;
  chain_start(&c, 0);
  mprpc_controller_t *ctl = mprpc_controller_new();
  consumer_call(&c, ctl, "plain");
  int64_t t1 = mprpc_controller_trace_id(ctl), s1 = mprpc_controller_span_id(ctl);
  assert_true(t1 > 0);
  assert_true(s1 > 0);
  assert_int_equal(mprpc_controller_parent_span_id(ctl), 0);
  /* A served the call as the span the channel sent. */
  mprpc_rpcz_span_t a = find_span(c.a, s1);
  assert_int_equal(a.trace_id, t1);
  assert_int_equal(a.parent_span_id, 0);
  assert_string_equal(a.service, "example.EchoService");
  assert_string_equal(a.method, "Echo");
  assert_int_equal(a.error_code, 0);
  assert_true(a.request_bytes > 12 && a.response_bytes > 12);
  assert_non_null(strstr(a.peer, "127.0.0.1:"));
  assert_int_equal(a_seen.call.trace_id, t1); /* inside the handler */
  assert_int_equal(a_seen.call.span_id, s1);
  assert_memory_equal(&a_seen.current, &a_seen.call, sizeof a_seen.call);
  /* Another root call: another trace. */
  consumer_call(&c, ctl, "plain");
  assert_int_not_equal(mprpc_controller_trace_id(ctl), t1);
  assert_int_not_equal(mprpc_controller_span_id(ctl), s1);
  /* Outside handlers and closures, no context is left behind. */
  mprpc_trace_ctx_t cur = mprpc_trace_current();
  assert_int_equal(cur.trace_id, 0);
  /* The ids travel in the meta: B saw A's nested call's ids as sent. */
  consumer_call(&c, ctl, "async");
  assert_int_equal(atomic_load(&b_seen.n), 1);
  assert_int_equal(b_seen.last.trace_id, mprpc_controller_trace_id(ctl));
  assert_int_equal(b_seen.last.parent_span_id, mprpc_controller_span_id(ctl));
  assert_true(b_seen.last.span_id > 0);
  mprpc_controller_free(ctl);
  chain_stop(&c);
}

static void test_rpcz_two_hop_async_chain(void **st) {
  (void)st;
  chain_t c;
  chain_start(&c, 0);
  mprpc_controller_t *ctl = mprpc_controller_new();
  consumer_call(&c, ctl, "async");
  int64_t t = mprpc_controller_trace_id(ctl), s = mprpc_controller_span_id(ctl);
  mprpc_rpcz_span_t a = find_span(c.a, s);
  assert_int_equal(a.trace_id, t);
  /* B's /rpcz shows A's span as the parent and the consumer's trace. */
  assert_int_equal(b_children(c.b, t, s), 1);
  /* A call from the closure of A's first call is still A's child. */
  consumer_call(&c, ctl, "twice");
  t = mprpc_controller_trace_id(ctl);
  s = mprpc_controller_span_id(ctl);
  assert_int_equal(b_children(c.b, t, s), 2);
  mprpc_controller_free(ctl);
  chain_stop(&c);
}

static void test_rpcz_handler_threads_sync_nested_call(void **st) {
  (void)st;
  chain_t c;
  chain_start(&c, 2);
  mprpc_controller_t *ctl = mprpc_controller_new();
  consumer_call(&c, ctl, "sync");
  int64_t t = mprpc_controller_trace_id(ctl), s = mprpc_controller_span_id(ctl);
  assert_int_equal(b_children(c.b, t, s), 1);
  assert_int_equal(a_seen.current.trace_id, t); /* on the pool thread */
  assert_int_equal(a_seen.current.span_id, s);
  mprpc_controller_free(ctl);
  chain_stop(&c);
}

typedef struct async_out {
  atomic_int done;
} async_out_t;

static void consumer_async_done(const ProtobufCMessage *msg, void *arg) {
  (void)msg;
  atomic_store(&((async_out_t *)arg)->done, 1);
}

static void wait_flag(atomic_int *f) {
  for (int i = 0; i < WAIT_MS && !atomic_load(f); i++)
    usleep(1000);
  assert_int_equal(atomic_load(f), 1);
}

static void test_rpcz_saved_context_on_another_thread(void **st) {
  (void)st;
  chain_t c;
  chain_start(&c, 0);
  memset(&later, 0, sizeof later);
  mprpc_controller_t *ctl = mprpc_controller_new();
  async_out_t out = {0};
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "later";
  assert_int_equal(mprpc_channel_call(c.to_a, 0, &req.base, ctl, consumer_async_done, &out), 0);
  wait_flag(&later.held);
  /* The handler returned; this (another) thread continues its work with
   * the saved context: once through the controller ... */
  mprpc_controller_t *inner = mprpc_controller_new();
  mprpc_controller_set_trace(inner, later.ctx);
  Example__EchoRequest ireq = EXAMPLE__ECHO_REQUEST__INIT;
  ireq.message = "from another thread";
  mprpc_controller_use_next(inner);
  example__echo_service__echo(mprpc_channel_service(to_b), &ireq, ignore_done, NULL);
  assert_int_equal(mprpc_controller_error_code(inner), 0);
  assert_int_equal(mprpc_controller_trace_id(inner), later.ctx.trace_id);
  assert_int_equal(mprpc_controller_parent_span_id(inner), later.ctx.span_id);
  /* ... and once as the thread's current context. */
  mprpc_trace_ctx_t prev = mprpc_trace_set_current(later.ctx);
  mprpc_controller_reset(inner);
  mprpc_controller_use_next(inner);
  example__echo_service__echo(mprpc_channel_service(to_b), &ireq, ignore_done, NULL);
  mprpc_trace_set_current(prev);
  assert_int_equal(mprpc_controller_error_code(inner), 0);
  assert_int_equal(mprpc_controller_parent_span_id(inner), later.ctx.span_id);
  mprpc_controller_free(inner);
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = "later done";
  later.done(&resp, later.cd);
  wait_flag(&out.done);
  assert_int_equal(mprpc_controller_error_code(ctl), 0);
  int64_t t = mprpc_controller_trace_id(ctl), s = mprpc_controller_span_id(ctl);
  assert_int_equal(later.ctx.trace_id, t);
  assert_int_equal(later.ctx.span_id, s);
  assert_int_equal(b_children(c.b, t, s), 2);
  mprpc_controller_free(ctl);
  chain_stop(&c);
}

/* A request framed by hand from the normative schema (what a brpc client
 * sends), with its own trace ids and nothing else of mprpc's. */
static size_t brpc_frame(uint8_t *buf, size_t cap, int64_t cid, int64_t trace, int64_t span,
                         int64_t parent, const char *msg) {
  Mprpc__Meta__RpcRequestMeta rq = MPRPC__META__RPC_REQUEST_META__INIT;
  rq.service_name = "example.EchoService";
  rq.method_name = "Echo";
  rq.has_trace_id = trace != 0;
  rq.trace_id = trace;
  rq.has_span_id = span != 0;
  rq.span_id = span;
  rq.has_parent_span_id = parent != 0;
  rq.parent_span_id = parent;
  Mprpc__Meta__RpcMeta meta = MPRPC__META__RPC_META__INIT;
  meta.request = &rq;
  meta.has_correlation_id = true;
  meta.correlation_id = cid;
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = (char *)msg;
  size_t ml = mprpc__meta__rpc_meta__get_packed_size(&meta);
  size_t pl = example__echo_request__get_packed_size(&req);
  assert_true(12 + ml + pl <= cap);
  memcpy(buf, "PRPC", 4);
  uint32_t body = htonl((uint32_t)(ml + pl)), msz = htonl((uint32_t)ml);
  memcpy(buf + 4, &body, 4);
  memcpy(buf + 8, &msz, 4);
  mprpc__meta__rpc_meta__pack(&meta, buf + 12);
  example__echo_request__pack(&req, buf + 12 + ml);
  return 12 + ml + pl;
}

static void test_rpcz_brpc_client_ids_are_kept(void **st) {
  (void)st;
  chain_t c;
  chain_start(&c, 0);
  tclient_t tc;
  assert_int_equal(tclient_connect(&tc, mprpc_server_port(c.a)), 0);
  uint8_t buf[512];
  /* brpc's ids are any int64, negative ones included. */
  const int64_t T = (int64_t)0x8badf00ddeadbeefull, S = 0x5151, P = 0x7070;
  size_t n = brpc_frame(buf, sizeof buf, 1, T, S, P, "async");
  assert_int_equal(tclient_send_raw(&tc, buf, n), 0);
  tclient_resp_t r;
  assert_int_equal(tclient_recv(&tc, &r, WAIT_MS), 0);
  assert_int_equal(r.error_code, 0);
  tclient_resp_free(&r);
  mprpc_rpcz_span_t a = find_span(c.a, S);
  assert_int_equal(a.trace_id, T);
  assert_int_equal(a.parent_span_id, P);
  assert_int_equal(b_children(c.b, T, S), 1);
  /* A client that does not trace: A serves it as a fresh root span. */
  n = brpc_frame(buf, sizeof buf, 2, 0, 0, 0, "async");
  assert_int_equal(tclient_send_raw(&tc, buf, n), 0);
  assert_int_equal(tclient_recv(&tc, &r, WAIT_MS), 0);
  assert_int_equal(r.error_code, 0);
  tclient_resp_free(&r);
  mprpc_rpcz_span_t root[1];
  assert_int_equal(mprpc_server_rpcz_snapshot(c.a, root, 1, 0), 1);
  assert_true(root[0].trace_id != 0 && root[0].trace_id != T);
  assert_true(root[0].span_id != 0);
  assert_int_equal(root[0].parent_span_id, 0);
  assert_int_equal(b_children(c.b, root[0].trace_id, root[0].span_id), 1);
  tclient_close(&tc);
  chain_stop(&c);
}

static void test_rpcz_refusals_are_recorded_and_off_means_none(void **st) {
  (void)st;
  /* A method limit of 1 with a held call: the next call is refused
   * (ELIMIT) and still shows up, with its ids. */
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = "127.0.0.1";
  o.max_method_concurrency = 1;
  mprpc_server_t *s;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &a_svc.base), 0);
  assert_int_equal(mprpc_server_start(s), 0);
  memset(&later, 0, sizeof later);
  tclient_t tc;
  assert_int_equal(tclient_connect(&tc, mprpc_server_port(s)), 0);
  uint8_t buf[512];
  size_t n = brpc_frame(buf, sizeof buf, 1, 0x10, 0x11, 0, "later");
  assert_int_equal(tclient_send_raw(&tc, buf, n), 0);
  wait_flag(&later.held);
  n = brpc_frame(buf, sizeof buf, 2, 0x20, 0x21, 0x22, "plain");
  assert_int_equal(tclient_send_raw(&tc, buf, n), 0);
  tclient_resp_t r;
  assert_int_equal(tclient_recv(&tc, &r, WAIT_MS), 0);
  assert_int_equal(r.error_code, 2004); /* ELIMIT */
  tclient_resp_free(&r);
  mprpc_rpcz_span_t got = find_span(s, 0x21);
  assert_int_equal(got.trace_id, 0x20);
  assert_int_equal(got.parent_span_id, 0x22);
  assert_int_equal(got.error_code, 2004);
  assert_true(got.response_bytes > 12);
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = "x";
  later.done(&resp, later.cd);
  assert_int_equal(tclient_recv(&tc, &r, WAIT_MS), 0);
  tclient_resp_free(&r);
  tclient_close(&tc);
  mprpc_server_destroy(s);

  /* rpcz_every = UINT32_MAX: nothing is recorded. */
  o.max_method_concurrency = 0;
  o.rpcz_every = UINT32_MAX;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &a_svc.base), 0);
  assert_int_equal(mprpc_server_start(s), 0);
  assert_int_equal(tclient_connect(&tc, mprpc_server_port(s)), 0);
  n = brpc_frame(buf, sizeof buf, 3, 0x30, 0x31, 0, "plain");
  assert_int_equal(tclient_send_raw(&tc, buf, n), 0);
  assert_int_equal(tclient_recv(&tc, &r, WAIT_MS), 0);
  assert_int_equal(r.error_code, 0);
  tclient_resp_free(&r);
  mprpc_rpcz_span_t none[4];
  assert_int_equal(mprpc_server_rpcz_snapshot(s, none, 4, 0), 0);
  tclient_close(&tc);
  mprpc_server_destroy(s);

  /* rpcz_every = 3: one call in three. */
  o.rpcz_every = 3;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &a_svc.base), 0);
  assert_int_equal(mprpc_server_start(s), 0);
  assert_int_equal(tclient_connect(&tc, mprpc_server_port(s)), 0);
  for (int i = 0; i < 9; i++) {
    n = brpc_frame(buf, sizeof buf, 10 + i, 0x40, 0x41 + i, 0, "plain");
    assert_int_equal(tclient_send_raw(&tc, buf, n), 0);
    assert_int_equal(tclient_recv(&tc, &r, WAIT_MS), 0);
    tclient_resp_free(&r);
  }
  assert_int_equal(mprpc_server_rpcz_snapshot(s, none, 4, 0), 3);
  tclient_close(&tc);
  mprpc_server_destroy(s);
}

/* Calls completing on several loops at once while a reader snapshots: every
 * span read is whole, and every call is there once. */
#define NCALLERS 3
#define PER_CALLER 200

typedef struct caller {
  pthread_t th;
  mprpc_channel_t *ch;
  int failed;
} caller_t;

static void *caller_main(void *arg) {
  caller_t *c = arg;
  mprpc_controller_t *ctl = mprpc_controller_new();
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "plain";
  for (int i = 0; i < PER_CALLER; i++) {
    mprpc_controller_reset(ctl);
    mprpc_controller_use_next(ctl);
    example__echo_service__echo(mprpc_channel_service(c->ch), &req, ignore_done, NULL);
    c->failed += mprpc_controller_failed(ctl);
  }
  mprpc_controller_free(ctl);
  return NULL;
}

static int cmp_span(const void *a, const void *b) {
  int64_t x = ((const mprpc_rpcz_span_t *)a)->span_id, y = ((const mprpc_rpcz_span_t *)b)->span_id;
  return x < y ? -1 : x > y;
}

static void test_rpcz_concurrent_loops_record_whole_spans(void **st) {
  (void)st;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = "127.0.0.1";
  o.threads = NCALLERS;
  mprpc_server_t *s;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &a_svc.base), 0);
  assert_int_equal(mprpc_server_start(s), 0);
  caller_t cs[NCALLERS];
  for (int i = 0; i < NCALLERS; i++) {
    cs[i].ch = channel_to(s);
    cs[i].failed = 0;
    assert_int_equal(pthread_create(&cs[i].th, NULL, caller_main, &cs[i]), 0);
  }
  mprpc_rpcz_span_t *sp = calloc(MPRPC_RPCZ_SPANS, sizeof *sp);
  size_t n = 0;
  for (int round = 0; round < 200 && n < NCALLERS * PER_CALLER; round++) {
    n = mprpc_server_rpcz_snapshot(s, sp, MPRPC_RPCZ_SPANS, 0);
    for (size_t i = 0; i < n; i++) {
      assert_string_equal(sp[i].method, "Echo");
      assert_true(sp[i].span_id != 0 && sp[i].trace_id != 0);
      assert_int_equal(sp[i].parent_span_id, 0);
      assert_non_null(strstr(sp[i].peer, "127.0.0.1:"));
    }
    usleep(1000);
  }
  for (int i = 0; i < NCALLERS; i++) {
    pthread_join(cs[i].th, NULL);
    assert_int_equal(cs[i].failed, 0);
    mprpc_channel_destroy(cs[i].ch);
  }
  n = mprpc_server_rpcz_snapshot(s, sp, MPRPC_RPCZ_SPANS, 0);
  assert_int_equal(n, NCALLERS * PER_CALLER);
  qsort(sp, n, sizeof *sp, cmp_span);
  for (size_t i = 1; i < n; i++)
    assert_true(sp[i].span_id != sp[i - 1].span_id);
  free(sp);
  mprpc_server_destroy(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rpcz_ring_wraps_at_1024),
      cmocka_unit_test(test_rpcz_filter_by_trace_id),
      cmocka_unit_test(test_rpcz_render_outputs),
      cmocka_unit_test(test_rpcz_fresh_trace_and_ids_on_the_wire),
      cmocka_unit_test(test_rpcz_two_hop_async_chain),
      cmocka_unit_test(test_rpcz_handler_threads_sync_nested_call),
      cmocka_unit_test(test_rpcz_saved_context_on_another_thread),
      cmocka_unit_test(test_rpcz_brpc_client_ids_are_kept),
      cmocka_unit_test(test_rpcz_refusals_are_recorded_and_off_means_none),
      cmocka_unit_test(test_rpcz_concurrent_loops_record_whole_spans),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
