/*
 * The consumer's side of the limits (src/core/endpoint.c): a provider that
 * declares a huge response, buffers more than the channel's
 * max_buffered_bytes, or trickles a response past its call's deadline costs
 * that call only - it fails with a clear error and the connection is
 * replaced - while the channel keeps working. On the fake environment, the
 * test playing the provider.
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
#include "mprpc/channel.h"
#include "mprpc/controller.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "support/fake_env.h"

#define KiB 1024u

typedef struct call {
  mprpc_controller_t *ctl;
  Example__EchoResponse resp;
  bool done;
} call_t;

static fake_env_t g_env;
static mprpc_channel_t *g_ch;
static call_t g_calls[4];

static void on_done(ProtobufCMessage *msg, void *arg) {
  (void)msg;
  ((call_t *)arg)->done = true;
}

static void setup(size_t max_buffered, uint32_t max_body, int64_t timeout_ms) {
  memset(g_calls, 0, sizeof g_calls);
  fake_env_init(&g_env, &(fake_loop_opts_t){.seed = 5},
                &(fake_net_opts_t){.first_connect = FAKE_CONNECT_ACCEPTED,
                                   .next_connect = FAKE_CONNECT_ACCEPTED});
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.loop = g_env.loop;
  o.transport = g_env.tr;
  o.servers = "192.0.2.1:8000";
  o.idempotent_methods = "*"; /* the other calls are retried elsewhere */
  o.max_retry = 2;
  o.max_buffered_bytes = max_buffered;
  o.max_body = max_body;
  o.timeout_ms = timeout_ms;
  assert_int_equal(mprpc_channel_new_in(&example__echo_service__descriptor, &o, &g_ch), 0);
}

static void teardown(void) {
  mprpc_channel_destroy(g_ch);
  fake_loop_run(g_env.L);
  for (int i = 0; i < 4; i++)
    if (g_calls[i].ctl)
      mprpc_controller_free(g_calls[i].ctl);
  fake_env_free(&g_env);
}

static void start(int k) {
  static char msg[4][8];
  snprintf(msg[k], sizeof msg[k], "call%d", k);
  Example__EchoRequest rq = EXAMPLE__ECHO_REQUEST__INIT;
  rq.message = msg[k];
  g_calls[k].ctl = mprpc_controller_new();
  g_calls[k].resp = (Example__EchoResponse)EXAMPLE__ECHO_RESPONSE__INIT;
  assert_int_equal(mprpc_channel_call(g_ch, 0, &rq.base, g_calls[k].ctl,
                                      (ProtobufCClosure)on_done, &g_calls[k]),
                   0);
}

/* The correlation id of the k-th request written on connection ci. */
static uint64_t written_cid(size_t ci, int k) {
  mprpc_conn_t *c = fake_net_conn(g_env.net, ci);
  size_t len;
  const uint8_t *p = fake_conn_unread(c, &len);
  for (int i = 0;; i++) {
    mprpc_frame_t f;
    long n = mprpc_frame_parse(p, len, 0, &f);
    assert_true(n > 0);
    if (i == k)
      return (uint64_t)f.meta.correlation_id;
    p += n;
    len -= (size_t)n;
  }
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

/* A response frame's first bytes: header declaring body_size, then the
 * meta (cid); *n = header + meta. */
static void response_head(uint8_t *out, size_t *n, uint64_t cid, uint32_t body_extra) {
  uint8_t meta[16];
  size_t m = 0;
  meta[m++] = 0x12; /* response meta, empty */
  meta[m++] = 0;
  meta[m++] = 0x20; /* correlation_id */
  m += put_varint(meta + m, cid);
  uint32_t body = (uint32_t)m + body_extra;
  memcpy(out, "PRPC", 4);
  uint32_t v[2] = {body, (uint32_t)m};
  for (int i = 0; i < 2; i++)
    for (int b = 0; b < 4; b++)
      out[4 + 4 * i + b] = (uint8_t)(v[i] >> (24 - 8 * b));
  memcpy(out + 12, meta, m);
  *n = 12 + m;
}

/* A whole success response "pong" for cid. */
static void deliver_ok(mprpc_conn_t *c, uint64_t cid) {
  uint8_t f[64];
  size_t n;
  static const uint8_t payload[] = {0x0a, 4, 'p', 'o', 'n', 'g'};
  response_head(f, &n, cid, sizeof payload);
  memcpy(f + n, payload, sizeof payload);
  fake_conn_deliver(c, f, n + sizeof payload);
  fake_loop_run(g_env.L);
}

static void test_channel_budget_huge_declared_response_fails_its_call(void **state) {
  (void)state;
  setup(0, 1024, 5000);
  start(0);
  start(1);
  fake_loop_run(g_env.L);
  mprpc_conn_t *c0 = fake_net_conn(g_env.net, 0);
  uint64_t cid0 = written_cid(0, 0);
  uint8_t f[64];
  size_t n;
  response_head(f, &n, cid0, 60u << 20); /* 60 MiB, over max_body 1 KiB */
  fake_conn_deliver(c0, f, 12); /* the header alone: whose is it? */
  fake_loop_run(g_env.L);
  assert_false(g_calls[0].done);
  fake_conn_deliver(c0, f + 12, n - 12);
  fake_loop_run(g_env.L);
  assert_true(g_calls[0].done);
  assert_int_equal(mprpc_controller_error_code(g_calls[0].ctl), MPRPC_ETOOBIG);
  assert_non_null(strstr(mprpc_controller_error_text(g_calls[0].ctl), "max_body"));
  assert_true(fake_conn_closing(c0)); /* replaced */
  /* The other call goes to the new connection and succeeds there. */
  assert_false(g_calls[1].done);
  assert_int_equal(fake_net_conn_count(g_env.net), 2);
  deliver_ok(fake_net_conn(g_env.net, 1), written_cid(1, 0));
  assert_true(g_calls[1].done);
  assert_false(mprpc_controller_failed(g_calls[1].ctl));
  teardown();
}

static void test_channel_budget_buffered_bytes_bounded(void **state) {
  (void)state;
  setup(16 * KiB, 0, 5000);
  start(0);
  start(1);
  fake_loop_run(g_env.L);
  mprpc_conn_t *c0 = fake_net_conn(g_env.net, 0);
  uint8_t f[64];
  size_t n;
  response_head(f, &n, written_cid(0, 1), 1u << 20); /* call 1's: 1 MiB declared */
  fake_conn_deliver(c0, f, n);
  static uint8_t body[8 * KiB];
  for (int i = 0; i < 3 && !fake_conn_closing(c0); i++) {
    fake_conn_deliver(c0, body, sizeof body);
    fake_loop_run(g_env.L);
  }
  assert_true(fake_conn_closing(c0));
  assert_true(g_calls[1].done);
  assert_int_equal(mprpc_controller_error_code(g_calls[1].ctl), MPRPC_ETOOBIG);
  assert_non_null(strstr(mprpc_controller_error_text(g_calls[1].ctl), "max_buffered_bytes"));
  assert_false(g_calls[0].done); /* retried on the new connection */
  deliver_ok(fake_net_conn(g_env.net, 1), written_cid(1, 0));
  assert_true(g_calls[0].done);
  assert_false(mprpc_controller_failed(g_calls[0].ctl));
  teardown();
}

static void test_channel_budget_trickled_response_replaces_connection(void **state) {
  (void)state;
  setup(0, 0, 300);
  start(0);
  fake_loop_run(g_env.L);
  mprpc_conn_t *c0 = fake_net_conn(g_env.net, 0);
  uint8_t f[64];
  size_t n;
  response_head(f, &n, written_cid(0, 0), 100 * KiB);
  fake_conn_deliver(c0, f, n);
  for (int i = 0; i < 5 && !fake_conn_closing(c0); i++) { /* 10 bytes every 100 ms */
    fake_conn_deliver(c0, "0123456789", 10);
    fake_loop_advance(g_env.L, 100);
  }
  assert_true(g_calls[0].done);
  assert_int_equal(mprpc_controller_error_code(g_calls[0].ctl), MPRPC_ERPCTIMEDOUT);
  assert_true(fake_conn_closing(c0)); /* it would block every answer behind it */
  /* The next call gets a fresh connection. */
  start(1);
  fake_loop_run(g_env.L);
  assert_int_equal(fake_net_conn_count(g_env.net), 2);
  deliver_ok(fake_net_conn(g_env.net, 1), written_cid(1, 0));
  assert_true(g_calls[1].done);
  assert_false(mprpc_controller_failed(g_calls[1].ctl));
  teardown();
}

static void test_channel_budget_healthy_responses_keep_the_connection(void **state) {
  (void)state;
  setup(16 * KiB, 0, 5000);
  for (int k = 0; k < 3; k++) {
    start(k);
    fake_loop_run(g_env.L);
    mprpc_conn_t *c0 = fake_net_conn(g_env.net, 0);
    uint64_t cid = written_cid(0, 0);
    size_t l;
    fake_conn_unread(c0, &l);
    fake_conn_consume(c0, l); /* the next request is the first unread one */
    deliver_ok(c0, cid);
    assert_true(g_calls[k].done);
    assert_false(mprpc_controller_failed(g_calls[k].ctl));
  }
  assert_int_equal(fake_net_conn_count(g_env.net), 1);
  teardown();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_channel_budget_huge_declared_response_fails_its_call),
      cmocka_unit_test(test_channel_budget_buffered_bytes_bounded),
      cmocka_unit_test(test_channel_budget_trickled_response_replaces_connection),
      cmocka_unit_test(test_channel_budget_healthy_responses_keep_the_connection),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
