/*
 * Channel tests on the shared fake environment (tests/support/fake_env.h):
 * the channel's connection to a provider that has gone silent.
 *
 * After a partition heals, a TCP connection that carried requests into it
 * may stay in retransmission backoff for seconds (make chaos, partition
 * seed 2; the simulator's stuck_conn scenario). The channel closes a
 * connection on which reset_after_timeouts attempts in a row timed out
 * while nothing at all arrived, and the next attempt dials a new one. A
 * connection that delivers anything in between is slow, not stuck, and is
 * kept. Here the test plays the provider: it reads what the channel writes
 * and answers (or not) by hand, on a virtual clock.
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

#define ATTEMPT_MS 100

typedef struct outcome {
  int ran; /* closure runs */
} outcome_t;

typedef struct t {
  fake_env_t env;
  mprpc_channel_t *ch;
  mprpc_controller_t *ctl[32];
  outcome_t out[32];
  int ncalls;
} t_t;

static void on_done(const ProtobufCMessage *msg, void *arg) {
  outcome_t *o = arg;
  (void)msg;
  o->ran++;
}

static void setup_channel(t_t *t, int reset_after) {
  memset(t, 0, sizeof *t);
  /* Every connect is accepted, and the test is the peer. */
  fake_env_init(&t->env, &(fake_loop_opts_t){.seed = 3},
                &(fake_net_opts_t){.first_connect = FAKE_CONNECT_ACCEPTED,
                                   .next_connect = FAKE_CONNECT_ACCEPTED});
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.loop = t->env.loop;
  o.transport = t->env.tr;
  o.servers = "127.0.0.1:9000";
  o.timeout_ms = 1000;
  o.attempt_timeout_ms = ATTEMPT_MS;
  o.max_retry = 0; /* one attempt per call: one timeout per call */
  o.reset_after_timeouts = reset_after;
  assert_int_equal(mprpc_channel_new_in(&example__echo_service__descriptor, &o, &t->ch), 0);
}

static void teardown_channel(t_t *t) {
  mprpc_channel_destroy(t->ch);
  fake_loop_run(t->env.L);
  for (int i = 0; i < t->ncalls; i++)
    mprpc_controller_free(t->ctl[i]);
  fake_env_free(&t->env);
}

/* Starts call k ("m<k>") and runs the loop: its request is written. */
static int call(t_t *t) {
  int k = t->ncalls++;
  assert_true(k < 32);
  char text[16];
  snprintf(text, sizeof text, "m%d", k);
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = text;
  t->ctl[k] = mprpc_controller_new();
  assert_non_null(t->ctl[k]);
  assert_int_equal(mprpc_channel_call(t->ch, 0, &req.base, t->ctl[k], on_done, &t->out[k]), 0);
  fake_loop_run(t->env.L);
  return k;
}

static mprpc_conn_t *conn(t_t *t, size_t i) {
  assert_true(fake_net_conn_count(t->env.net) > i);
  return fake_net_conn(t->env.net, i);
}

/* The correlation id of the next request the channel wrote on c. */
static int64_t next_request(mprpc_conn_t *c) {
  size_t len;
  const uint8_t *p = fake_conn_unread(c, &len);
  mprpc_frame_t f;
  long n = mprpc_frame_parse(p, len, 0, &f);
  assert_true(n > 0);
  assert_true(f.meta.has_request);
  int64_t cid = f.meta.correlation_id;
  fake_conn_consume(c, (size_t)n);
  return cid;
}

/* The provider answers request cid on c with "ok". */
static void answer(t_t *t, mprpc_conn_t *c, int64_t cid) {
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = "ok";
  uint8_t payload[64];
  size_t plen = example__echo_response__pack(&resp, payload);
  mprpc_meta_t m;
  memset(&m, 0, sizeof m);
  m.has_response = true;
  m.correlation_id = cid;
  mprpc_frame_out_t out;
  assert_int_equal(mprpc_frame_encode(&out, &m, payload, plen, NULL, 0), 0);
  uint8_t frame[512];
  size_t off = 0;
  for (int i = 0; i < out.iovcnt; i++) {
    assert_true(off + out.iov[i].iov_len <= sizeof frame);
    memcpy(frame + off, out.iov[i].iov_base, out.iov[i].iov_len);
    off += out.iov[i].iov_len;
  }
  mprpc_frame_out_free(&out);
  fake_conn_deliver(c, frame, off);
  fake_loop_run(t->env.L);
}

static uint64_t resets(const t_t *t) {
  mprpc_channel_stats_t st;
  mprpc_channel_stats(t->ch, &st);
  return st.silent_resets;
}

/* A call whose request goes out on c and times out unanswered. */
static void silent_timeout(t_t *t, mprpc_conn_t *c) {
  int k = call(t);
  next_request(c);
  fake_loop_advance(t->env.L, ATTEMPT_MS);
  assert_int_equal(t->out[k].ran, 1);
  assert_int_equal(mprpc_controller_error_code(t->ctl[k]), MPRPC_ERPCTIMEDOUT);
}

static void test_channel_silent_connection_reset_and_redialled(void **state) {
  (void)state;
  t_t t;
  setup_channel(&t, 0); /* the default: 3 */
  int k = call(&t);
  mprpc_conn_t *c0 = conn(&t, 0);
  answer(&t, c0, next_request(c0)); /* the connection works ... */
  assert_int_equal(t.out[k].ran, 1);
  assert_int_equal(mprpc_controller_error_code(t.ctl[k]), 0);

  /* ... then goes silent: two timeouts keep it, the third closes it. */
  silent_timeout(&t, c0);
  silent_timeout(&t, c0);
  assert_false(fake_conn_closing(c0));
  assert_int_equal(resets(&t), 0);
  silent_timeout(&t, c0);
  assert_true(fake_conn_closing(c0));
  fake_loop_run(t.env.L);
  assert_true(fake_conn_closed(c0));
  assert_int_equal(resets(&t), 1);

  /* The next call dials a new connection, and is answered on it. */
  k = call(&t);
  assert_int_equal(fake_net_conn_count(t.env.net), 2);
  mprpc_conn_t *c1 = conn(&t, 1);
  answer(&t, c1, next_request(c1));
  assert_int_equal(t.out[k].ran, 1);
  assert_int_equal(mprpc_controller_error_code(t.ctl[k]), 0);
  teardown_channel(&t);
}

/* Anything received in between means the provider is alive: the count of
 * timeouts in a row starts again, and the connection stays. */
static void test_channel_slow_connection_kept(void **state) {
  (void)state;
  t_t t;
  setup_channel(&t, 3);
  int slow = call(&t);
  mprpc_conn_t *c0 = conn(&t, 0);
  int64_t slow_cid = next_request(c0);
  silent_timeout(&t, c0); /* the slow call and this one: two in a row */
  assert_false(fake_conn_closing(c0));
  /* A late answer to an attempt that already gave up still proves life. */
  answer(&t, c0, slow_cid);
  assert_int_equal(t.out[slow].ran, 1); /* it had timed out first */
  silent_timeout(&t, c0);
  silent_timeout(&t, c0);
  assert_false(fake_conn_closing(c0));
  silent_timeout(&t, c0); /* the third in a row since the answer */
  assert_true(fake_conn_closing(c0));
  teardown_channel(&t);
}

/* A request written after the last byte received is what counts: an
 * attempt that saw data arrive while it waited does not add to the count. */
static void test_channel_reset_counts_only_silent_attempts(void **state) {
  (void)state;
  t_t t;
  setup_channel(&t, 2);
  int a = call(&t);
  mprpc_conn_t *c0 = conn(&t, 0);
  next_request(c0);
  int b = call(&t);
  int64_t b_cid = next_request(c0);
  answer(&t, c0, b_cid); /* b answered while a waits */
  assert_int_equal(t.out[b].ran, 1);
  fake_loop_advance(t.env.L, ATTEMPT_MS); /* a times out, not silently */
  assert_int_equal(t.out[a].ran, 1);
  assert_int_equal(mprpc_controller_error_code(t.ctl[a]), MPRPC_ERPCTIMEDOUT);
  silent_timeout(&t, c0); /* one silent */
  assert_false(fake_conn_closing(c0));
  silent_timeout(&t, c0); /* two: reset */
  assert_true(fake_conn_closing(c0));
  teardown_channel(&t);
}

static void test_channel_reset_disabled(void **state) {
  (void)state;
  t_t t;
  setup_channel(&t, -1);
  call(&t);
  mprpc_conn_t *c0 = conn(&t, 0);
  next_request(c0);
  fake_loop_advance(t.env.L, ATTEMPT_MS);
  for (int i = 0; i < 12; i++)
    silent_timeout(&t, c0);
  assert_false(fake_conn_closing(c0));
  assert_int_equal(fake_net_conn_count(t.env.net), 1);
  assert_int_equal(resets(&t), 0);
  teardown_channel(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_channel_silent_connection_reset_and_redialled),
      cmocka_unit_test(test_channel_slow_connection_kept),
      cmocka_unit_test(test_channel_reset_counts_only_silent_attempts),
      cmocka_unit_test(test_channel_reset_disabled),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
