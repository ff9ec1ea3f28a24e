/*
 * Provider limits on the fake environment (src/core/server_budget.c): the
 * memory budget (back-pressure, then closing stalled holders), header and
 * body timeouts, the finite idle default, max_connections and
 * max_connections_per_ip, their refusal counters, and their config keys.
 * Each hostile peer runs beside a well-behaved one whose calls must keep
 * succeeding.
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
#include "mprpc/config.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/server.h"
#include "support/echo_svc.h"
#include "support/fake_env.h"
#include "support/test_client.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

typedef struct bsrv {
  fake_env_t e;
  mprpc_server_t *s;
} bsrv_t;

static void opts(mprpc_server_opts_t *o) {
  mprpc_server_opts_init(o);
  o->host = "127.0.0.1";
}

static void start(bsrv_t *b, mprpc_server_opts_t *o, bool report_pending) {
  memset(b, 0, sizeof *b);
  held_forget();
  fake_env_init(&b->e, &(fake_loop_opts_t){.seed = 3},
                &(fake_net_opts_t){.listen_port = 4242,
                                   .accept_peer = "10.0.0.7:5555",
                                   .report_pending = report_pending});
  o->transport = b->e.tr;
  o->loops = &b->e.loop;
  o->nloops = 1;
  assert_int_equal(mprpc_server_new(o, &b->s), 0);
  assert_int_equal(mprpc_server_add_service(b->s, &echo_svc.base), 0);
  assert_int_equal(mprpc_server_start(b->s), 0);
  fake_loop_run(b->e.L);
}


static void stop(bsrv_t *b) {
  int done = 0;
  if (mprpc_server_shutdown(b->s, done_cb, &done) == 0) {
    fake_loop_advance(b->e.L, 10000);
    assert_int_equal(done, 1);
  }
  mprpc_server_destroy(b->s);
  fake_env_free(&b->e);
}

static mprpc_server_stats_t stats(const bsrv_t *b) {
  mprpc_server_stats_t st;
  mprpc_server_stats(b->s, &st);
  return st;
}

static mprpc_conn_t *accept_conn(bsrv_t *b) {
  mprpc_conn_t *c = fake_net_accept(b->e.net);
  fake_loop_run(b->e.L);
  return c;
}

static void feed(bsrv_t *b, mprpc_conn_t *c, const void *p, size_t n) {
  assert_false(fake_conn_closed(c));
  fake_conn_deliver(c, p, n);
  fake_loop_run(b->e.L);
}

/* One echo call on c, answered in full: the well-behaved peer. */
static void echo_ok(bsrv_t *b, mprpc_conn_t *c, int64_t cid, size_t att_len) {
  Example__EchoRequest m;
  tclient_req_t r = echo_req(cid, &m, "hi");
  uint8_t *att = NULL;
  if (att_len) {
    att = malloc(att_len);
    assert_non_null(att);
    memset(att, 'a', att_len);
    r.att = att;
    r.att_len = att_len;
  }
  uint8_t *f;
  size_t n;
  assert_int_equal(tclient_encode(&r, &f, &n), 0);
  feed(b, c, f, n);
  free(f);
  free(att);
  size_t len;
  const uint8_t *p = fake_conn_unread(c, &len);
  mprpc_frame_t fr;
  long used = mprpc_frame_parse(p, len, 0, &fr);
  assert_true(used > 0);
  assert_int_equal(fr.meta.correlation_id, cid);
  assert_int_equal(fr.meta.error_code, 0);
  fake_conn_consume(c, (size_t)used);
}

/* A frame header announcing a body of body_size bytes. */
static void header(uint8_t h[12], uint32_t body_size) {
  memcpy(h, "PRPC", 4);
  uint32_t v[2] = {body_size, 10};
  for (int i = 0; i < 2; i++) {
    h[4 + 4 * i] = (uint8_t)(v[i] >> 24);
    h[5 + 4 * i] = (uint8_t)(v[i] >> 16);
    h[6 + 4 * i] = (uint8_t)(v[i] >> 8);
    h[7 + 4 * i] = (uint8_t)v[i];
  }
}

/* ---- timeouts ------------------------------------------------------------------- */

static void test_server_budget_header_timeout_closes_slowloris(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  opts(&o);
  bsrv_t b;
  start(&b, &o, false);
  mprpc_conn_t *quiet = accept_conn(&b); /* no byte yet: only idle_timeout applies */
  mprpc_conn_t *slow = accept_conn(&b);
  mprpc_conn_t *good = accept_conn(&b);
  for (int i = 0; i < 9; i++) { /* one byte a second: 9 of 12 header bytes */
    feed(&b, slow, "PRPC\0\0\0\0\0" + i, 1);
    fake_loop_advance(b.e.L, 1000);
    echo_ok(&b, good, i + 1, 0);
  }
  assert_false(fake_conn_closing(slow));
  fake_loop_advance(b.e.L, 1100); /* 10 s after its first byte */
  assert_true(fake_conn_closing(slow));
  assert_false(fake_conn_closing(quiet));
  assert_false(fake_conn_closing(good));
  echo_ok(&b, good, 100, 0);
  mprpc_server_stats_t st = stats(&b);
  assert_int_equal(st.refused_header_timeout, 1);
  assert_int_equal(st.refused_slow_body, 0);
  assert_true(st.buffered_bytes < 64); /* the closed one gave its bytes back */
  stop(&b);
}

static void test_server_budget_header_clock_starts_per_frame(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  opts(&o);
  o.header_timeout_ms = 3000;
  bsrv_t b;
  start(&b, &o, false);
  mprpc_conn_t *c = accept_conn(&b);
  /* Frames each taking 2 s to send their header, with quiet gaps between
   * them: each frame has its own header_timeout. */
  for (int i = 0; i < 4; i++) {
    Example__EchoRequest m;
    tclient_req_t r = echo_req(i + 1, &m, "x");
    uint8_t *f;
    size_t n;
    assert_int_equal(tclient_encode(&r, &f, &n), 0);
    feed(&b, c, f, 6);
    fake_loop_advance(b.e.L, 2000);
    feed(&b, c, f + 6, n - 6);
    free(f);
    fake_loop_advance(b.e.L, 5000); /* idle between frames: not a header wait */
    assert_false(fake_conn_closing(c));
  }
  assert_int_equal(stats(&b).refused_header_timeout, 0);
  assert_int_equal(stats(&b).unknown_method + stats(&b).malformed_frames, 0);
  stop(&b);
}

static void test_server_budget_slow_body_closed_fast_body_kept(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  opts(&o);
  bsrv_t b;
  start(&b, &o, false);
  mprpc_conn_t *slow = accept_conn(&b);
  mprpc_conn_t *steady = accept_conn(&b);
  uint8_t h[12];
  header(h, 4 * MiB);
  feed(&b, slow, h, 12);
  feed(&b, steady, h, 12);
  static uint8_t chunk[32 * KiB];
  for (int s = 0; s < 6; s++) {
    if (!fake_conn_closing(slow))
      feed(&b, slow, chunk, 1 * KiB); /* 1 KiB/s: under 16 KiB/s */
    feed(&b, steady, chunk, sizeof chunk);  /* 32 KiB/s: fine */
    fake_loop_advance(b.e.L, 1000);
  }
  assert_true(fake_conn_closing(slow));
  assert_false(fake_conn_closing(steady));
  mprpc_server_stats_t st = stats(&b);
  assert_int_equal(st.refused_slow_body, 1);
  assert_int_equal(st.refused_header_timeout, 0);
  stop(&b);
}

static void test_server_budget_idle_timeout_default_is_finite(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  opts(&o);
  bsrv_t b;
  start(&b, &o, false);
  mprpc_conn_t *c = accept_conn(&b);
  echo_ok(&b, c, 1, 0);
  fake_loop_advance(b.e.L, 9 * 60 * 1000);
  assert_false(fake_conn_closing(c));
  fake_loop_advance(b.e.L, 2 * 60 * 1000);
  assert_true(fake_conn_closing(c));
  stop(&b);

  opts(&o);
  o.idle_timeout_ms = UINT64_MAX; /* never */
  start(&b, &o, false);
  c = accept_conn(&b);
  echo_ok(&b, c, 1, 0);
  fake_loop_advance(b.e.L, 60 * 60 * 1000);
  assert_false(fake_conn_closing(c));
  stop(&b);
}

/* ---- the memory budget ------------------------------------------------------------ */

static void test_server_budget_pauses_then_closes_a_stalled_holder(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  opts(&o);
  o.max_buffered_bytes = 1 * MiB;
  o.min_body_rate = UINT32_MAX; /* this test is about the budget */
  bsrv_t b;
  start(&b, &o, false);
  mprpc_conn_t *hog = accept_conn(&b);
  mprpc_conn_t *good = accept_conn(&b);
  uint8_t h[12];
  header(h, 60 * MiB); /* declared, never reserved */
  feed(&b, hog, h, 12);
  assert_int_equal(stats(&b).buffered_bytes, 12);
  static uint8_t chunk[64 * KiB];
  int fed = 0;
  while (fake_conn_reading(hog) && fed < 32) {
    feed(&b, hog, chunk, sizeof chunk);
    fed++;
  }
  /* At the budget: back-pressure, not an error. A buffer this big counts
   * what it allocated (a 1 MiB block), twice that once its next read may
   * double it: it pauses before that doubling happens. */
  assert_false(fake_conn_reading(hog));
  assert_false(fake_conn_closing(hog));
  assert_int_equal(fed, 12);
  mprpc_server_stats_t st = stats(&b);
  assert_int_equal(st.buffered_bytes, 2 * MiB);
  assert_int_equal(st.max_buffered_bytes, 1 * MiB);
  assert_int_equal(st.connections_paused, 1);
  assert_int_equal(st.reads_paused, 1);
  /* More bytes wait in the network, not in the provider. */
  for (int i = 0; i < 8; i++)
    feed(&b, hog, chunk, sizeof chunk);
  assert_int_equal(fake_conn_waiting(hog), 8 * sizeof chunk);
  assert_int_equal(stats(&b).buffered_bytes, 2 * MiB);
  /* The healthy peer is served meanwhile. */
  echo_ok(&b, good, 1, 0);
  assert_true(fake_conn_reading(good));
  fake_loop_advance(b.e.L, 1500);
  assert_false(fake_conn_closing(hog));
  echo_ok(&b, good, 2, 0);
  fake_loop_advance(b.e.L, 700); /* budget_wait (2 s) without progress */
  assert_true(fake_conn_closing(hog));
  fake_loop_run(b.e.L);
  st = stats(&b);
  assert_int_equal(st.refused_budget, 1);
  assert_int_equal(st.refused_header_timeout + st.refused_slow_body, 0);
  assert_int_equal(st.connections_paused, 0);
  assert_true(st.buffered_bytes < 1 * KiB);
  assert_true(st.buffered_bytes_peak >= 2 * MiB && st.buffered_bytes_peak < 2 * MiB + KiB);
  echo_ok(&b, good, 3, 0);
  stop(&b);
}

static void test_server_budget_unread_responses_pause_then_resume(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  opts(&o);
  o.max_buffered_bytes = 1 * MiB;
  bsrv_t b;
  start(&b, &o, true); /* written bytes stay pending until fake_conn_drain */
  mprpc_conn_t *reader = accept_conn(&b);
  Example__EchoRequest m;
  static uint8_t att[100 * KiB];
  int sent = 0;
  while (fake_conn_reading(reader) && sent < 40) {
    tclient_req_t r = echo_req(++sent, &m, "big");
    r.att = att;
    r.att_len = sizeof att;
    uint8_t *f;
    size_t n;
    assert_int_equal(tclient_encode(&r, &f, &n), 0);
    feed(&b, reader, f, n);
    free(f);
  }
  /* Responses nobody reads count: reads paused once they pass the budget. */
  assert_false(fake_conn_reading(reader));
  assert_true(sent >= 10 && sent <= 12);
  assert_true(stats(&b).buffered_bytes > 1 * MiB);
  /* The peer reads them all: the budget drains and reading resumes. */
  fake_conn_drain(reader);
  fake_loop_advance(b.e.L, 150);
  assert_true(fake_conn_reading(reader));
  assert_false(fake_conn_closing(reader));
  assert_int_equal(stats(&b).refused_budget, 0);
  assert_true(stats(&b).buffered_bytes < 1 * MiB);
  stop(&b);
}

static void test_server_budget_paused_time_is_not_the_clients(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  opts(&o);
  o.max_buffered_bytes = 1 * MiB;
  o.budget_wait_ms = 60000; /* hold the pause long */
  bsrv_t b;
  start(&b, &o, true);
  mprpc_conn_t *big = accept_conn(&b);
  /* Unread responses fill the budget. */
  static uint8_t att[100 * KiB];
  Example__EchoRequest m;
  for (int i = 0; i < 11 && fake_conn_reading(big); i++) {
    tclient_req_t r = echo_req(i + 1, &m, "big");
    r.att = att;
    r.att_len = sizeof att;
    uint8_t *f;
    size_t n;
    assert_int_equal(tclient_encode(&r, &f, &n), 0);
    feed(&b, big, f, n);
    free(f);
  }
  assert_false(fake_conn_reading(big));
  uint8_t h[12];
  header(h, 4 * MiB);
  fake_conn_deliver(big, h, 12); /* waits in the network while paused */
  fake_loop_advance(b.e.L, 20000); /* far past header_timeout and the body rate */
  assert_false(fake_conn_closing(big));
  fake_conn_drain(big);
  fake_loop_advance(b.e.L, 150);
  assert_true(fake_conn_reading(big));
  fake_loop_run(b.e.L);
  assert_false(fake_conn_closing(big));
  /* From here the clocks run: no body follows the header. */
  fake_loop_advance(b.e.L, 2500);
  assert_true(fake_conn_closing(big));
  assert_int_equal(stats(&b).refused_slow_body, 1);
  stop(&b);
}

/* ---- connection limits ------------------------------------------------------------ */

static void test_server_budget_max_connections_refuses_at_once(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  opts(&o);
  o.max_connections = 2;
  bsrv_t b;
  start(&b, &o, false);
  mprpc_conn_t *a = accept_conn(&b);
  mprpc_conn_t *c2 = accept_conn(&b);
  mprpc_conn_t *c3 = accept_conn(&b);
  assert_true(fake_conn_closing(c3)); /* accepted and closed: a refusal, not a hang */
  assert_false(fake_conn_set_up(c3));
  assert_false(fake_conn_closing(a));
  echo_ok(&b, c2, 1, 0);
  mprpc_server_stats_t st = stats(&b);
  assert_int_equal(st.refused_max_connections, 1);
  assert_int_equal(st.connections_open, 2);
  assert_int_equal(st.connections_accepted, 2);
  fake_conn_hangup(a, MPRPC_CLOSE_EOF, 0);
  fake_loop_run(b.e.L);
  mprpc_conn_t *c4 = accept_conn(&b);
  assert_false(fake_conn_closing(c4));
  echo_ok(&b, c4, 2, 0);
  stop(&b);
}

static void test_server_budget_per_ip_limit(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  opts(&o);
  o.max_connections_per_ip = 2;
  bsrv_t b;
  start(&b, &o, false);
  fake_net_set_accept_peer(b.e.net, "10.0.0.7:1000");
  mprpc_conn_t *a1 = accept_conn(&b);
  mprpc_conn_t *a2 = accept_conn(&b);
  mprpc_conn_t *a3 = accept_conn(&b);
  fake_net_set_accept_peer(b.e.net, "[2001:db8::1]:1000");
  mprpc_conn_t *v1 = accept_conn(&b);
  mprpc_conn_t *v2 = accept_conn(&b);
  mprpc_conn_t *v3 = accept_conn(&b);
  fake_net_set_accept_peer(b.e.net, "10.0.0.8:1000");
  mprpc_conn_t *b1 = accept_conn(&b);
  assert_false(fake_conn_closing(a1) || fake_conn_closing(a2) || fake_conn_closing(v1) ||
               fake_conn_closing(v2) || fake_conn_closing(b1));
  assert_true(fake_conn_closing(a3));
  assert_true(fake_conn_closing(v3));
  assert_int_equal(stats(&b).refused_per_ip, 2);
  fake_conn_hangup(a1, MPRPC_CLOSE_EOF, 0);
  fake_loop_run(b.e.L);
  fake_net_set_accept_peer(b.e.net, "10.0.0.7:2000");
  mprpc_conn_t *a4 = accept_conn(&b);
  assert_false(fake_conn_closing(a4));
  echo_ok(&b, a4, 1, 0);
  mprpc_conn_t *a5 = accept_conn(&b);
  assert_true(fake_conn_closing(a5));
  assert_int_equal(stats(&b).refused_per_ip, 3);
  stop(&b);
}

/* ---- options ------------------------------------------------------------------------- */

static void test_server_budget_config_keys(void **state) {
  (void)state;
  mprpc_config_t *cfg;
  assert_int_equal(mprpc_config_new(&cfg), 0);
  const char *text = "max_buffered_bytes = 128MiB\nbudget_wait = 3s\nheader_timeout = 5s\n"
                     "min_body_rate = 8KiB\nmax_connections = 5000\n"
                     "max_connections_per_ip = 10\nidle_timeout = 1m\n";
  assert_int_equal(mprpc_config_load_string(cfg, text, strlen(text), "t.conf"), 0);
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  mprpc_hostport_t hp;
  assert_int_equal(mprpc_server_opts_from_config(cfg, &o, &hp), 0);
  assert_int_equal(o.max_buffered_bytes, 128 * MiB);
  assert_int_equal(o.budget_wait_ms, 3000);
  assert_int_equal(o.header_timeout_ms, 5000);
  assert_int_equal(o.min_body_rate, 8 * KiB);
  assert_int_equal(o.max_connections, 5000);
  assert_int_equal(o.max_connections_per_ip, 10);
  assert_int_equal(o.idle_timeout_ms, 60000);
  mprpc_config_free(cfg);

  /* 0 in a file is "off" */
  assert_int_equal(mprpc_config_new(&cfg), 0);
  text = "max_buffered_bytes = 0\nheader_timeout = 0\nmin_body_rate = 0\n"
         "max_connections = 0\nidle_timeout = 0\n";
  assert_int_equal(mprpc_config_load_string(cfg, text, strlen(text), "t.conf"), 0);
  mprpc_server_opts_init(&o);
  assert_int_equal(mprpc_server_opts_from_config(cfg, &o, &hp), 0);
  assert_true(o.max_buffered_bytes == SIZE_MAX);
  assert_true(o.header_timeout_ms == UINT64_MAX);
  assert_true(o.min_body_rate == UINT32_MAX);
  assert_true(o.max_connections == UINT32_MAX);
  assert_true(o.idle_timeout_ms == UINT64_MAX);
  mprpc_config_free(cfg);

  assert_int_equal(mprpc_config_new(&cfg), 0);
  text = "max_buffered_bytes = lots\n";
  assert_int_equal(mprpc_config_load_string(cfg, text, strlen(text), "t.conf"), 0);
  mprpc_server_opts_init(&o);
  assert_int_equal(mprpc_server_opts_from_config(cfg, &o, &hp), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg), "max_buffered_bytes"));
  mprpc_config_free(cfg);
}

static void test_server_budget_defaults_reported(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  opts(&o);
  bsrv_t b;
  start(&b, &o, false);
  mprpc_server_stats_t st = stats(&b);
  assert_int_equal(st.max_buffered_bytes, 256 * MiB);
  assert_int_equal(st.buffered_bytes, 0);
  mprpc_conn_t *c = accept_conn(&b);
  echo_ok(&b, c, 1, 200 * KiB); /* a big healthy call leaves nothing behind */
  fake_loop_run(b.e.L);
  assert_true(stats(&b).buffered_bytes <= 200 * KiB + 256); /* the response, until drained */
  echo_ok(&b, c, 2, 0);
  assert_true(stats(&b).buffered_bytes < 1 * KiB);
  stop(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server_budget_header_timeout_closes_slowloris),
      cmocka_unit_test(test_server_budget_header_clock_starts_per_frame),
      cmocka_unit_test(test_server_budget_slow_body_closed_fast_body_kept),
      cmocka_unit_test(test_server_budget_idle_timeout_default_is_finite),
      cmocka_unit_test(test_server_budget_pauses_then_closes_a_stalled_holder),
      cmocka_unit_test(test_server_budget_unread_responses_pause_then_resume),
      cmocka_unit_test(test_server_budget_paused_time_is_not_the_clients),
      cmocka_unit_test(test_server_budget_max_connections_refuses_at_once),
      cmocka_unit_test(test_server_budget_per_ip_limit),
      cmocka_unit_test(test_server_budget_config_keys),
      cmocka_unit_test(test_server_budget_defaults_reported),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
