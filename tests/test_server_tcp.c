/*
 * Provider tests, TCP suite: a real provider on the libev runtime over
 * loopback, driven by the blocking test client (tests/support/test_client.h)
 * and by threads completing held calls, plus the echo_server example
 * program. The same provider on the fake environment, deterministic, is
 * tests/test_server.c; both use the test service of
 * tests/support/echo_svc.h.
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/compress.h"
#include "echo.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
#include "support/echo_svc.h"
#include "support/fake_registry.h"
#include "support/test_client.h"
#include "support/test_provider.h"

static mprpc_server_t *tsrv_start(mprpc_server_opts_t *o) {
  mprpc_server_t *s;
  held_forget();
  if (!o->threads)
    o->threads = 2;
  ProtobufCService *svcs[] = {&echo_svc.base};
  assert_int_equal(test_provider_start(o, svcs, 1, &s, NULL, 0), 0);
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
  /* a service added twice is refused, and nothing is left behind */
  ProtobufCService *twice[] = {&echo_svc.base, &echo_svc.base};
  mprpc_server_t *s;
  assert_int_equal(test_provider_start(&o, twice, 2, &s, NULL, 0), MPRPC_EEXIST);
  assert_null(s);
  s = tsrv_start(&o);
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

static char *text_of(size_t n, char seed) {
  char *t = malloc(n + 1);
  assert_non_null(t);
  for (size_t i = 0; i < n; i++)
    t[i] = (char)('a' + (seed + i * 7 + i / 251) % 26);
  t[n] = 0;
  return t;
}

static void expect_echo_text(tclient_t *c, int64_t cid, const char *want) {
  tclient_resp_t resp;
  assert_int_equal(tclient_recv(c, &resp, GUARD_MS), 0);
  assert_int_equal(resp.cid, cid);
  assert_int_equal(resp.error_code, 0);
  size_t n = strlen(want);
  char *got = malloc(n + 2);
  assert_non_null(got);
  assert_int_equal(tclient_echo_decode(&resp, got, n + 2), 0);
  assert_string_equal(got, want);
  free(got);
  tclient_resp_free(&resp);
}

/* Large answers are written from the handler's message (src/core/pack_ref.c)
 * while small ones are batched: pipelined, they still come back in order
 * and whole; a large answer from another thread (copied) as well. */
static void test_server_tcp_large_answers_keep_order(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  mprpc_server_t *s = tsrv_start(&o);
  tclient_t c;
  assert_int_equal(tclient_connect(&c, mprpc_server_port(s)), 0);
  const size_t sizes[] = {3, 100 * 1024, 5, 30 * 1024, 17 * 1024, 4, 256 * 1024, 2};
  enum { N = sizeof sizes / sizeof sizes[0] };
  char *texts[N];
  Example__EchoRequest m[N];
  for (int i = 0; i < N; i++) {
    texts[i] = text_of(sizes[i], (char)i);
    tclient_req_t r = echo_req(i + 1, &m[i], texts[i]);
    assert_int_equal(tclient_send(&c, &r), 0);
  }
  for (int i = 0; i < N; i++)
    expect_echo_text(&c, i + 1, texts[i]);
  /* Twice on a warm connection (the provider's buffers sized already). */
  for (int i = 0; i < N; i++) {
    tclient_req_t r = echo_req(100 + i, &m[i], texts[i]);
    assert_int_equal(tclient_send(&c, &r), 0);
  }
  for (int i = 0; i < N; i++)
    expect_echo_text(&c, 100 + i, texts[i]);
  Example__EchoRequest hm;
  tclient_req_t r = echo_req(500, &hm, "hold");
  assert_int_equal(tclient_send(&c, &r), 0);
  wait_held(1);
  held_complete(0, texts[1]);
  expect_echo_text(&c, 500, texts[1]);
  for (int i = 0; i < N; i++)
    free(texts[i]);
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
  fake_reg_t reg;
  fake_reg_init(&reg);
  o.registry = fake_reg(&reg);
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
  twice_arg_t a;
  held_take(0, &a.cl, &a.data);
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

/* ---- limits against hostile clients (src/core/server_budget.c) ------------------ */

/* Pushes up to `max` body bytes without blocking, until the socket stays
 * full for a while (the provider stopped reading): bytes written. */
static size_t push_until_full(int fd, size_t max) {
  static uint8_t chunk[64 * 1024];
  size_t sent = 0;
  int stuck = 0;
  while (sent < max && stuck < 40) {
    ssize_t n = send(fd, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += (size_t)n;
      stuck = 0;
    } else {
      stuck++;
      usleep(5000);
    }
  }
  return sent;
}

static void test_server_tcp_budget_and_slow_clients(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.max_buffered_bytes = 1u << 20;
  o.budget_wait_ms = 300;
  o.header_timeout_ms = 300;
  o.min_body_rate = UINT32_MAX; /* the hog is judged by the budget here */
  mprpc_server_t *s = tsrv_start(&o);
  uint16_t port = mprpc_server_port(s);
  tclient_t good, hog, slow;
  assert_int_equal(tclient_connect(&good, port), 0);
  assert_int_equal(tclient_connect(&hog, port), 0);
  assert_int_equal(tclient_connect(&slow, port), 0);
  tcall(&good, 1, "before", 0, NULL, 0);
  /* A header declaring 60 MiB, then as much of the body as goes in. */
  uint8_t h[12] = {'P', 'R', 'P', 'C', 0x03, 0xc0, 0, 0, 0, 0, 0, 10};
  assert_int_equal(tclient_send_raw(&hog, h, 12), 0);
  size_t pushed = push_until_full(hog.fd, 32u << 20);
  assert_true(pushed > (1u << 20)); /* past the budget: the rest waits in the kernel */
  assert_true(pushed < (32u << 20));
  mprpc_server_stats_t st;
  mprpc_server_stats(s, &st);
  assert_true(st.reads_paused >= 1);
  tcall(&good, 2, "while paused", 0, NULL, 0);
  /* Three header bytes, then nothing: header_timeout. */
  assert_int_equal(tclient_send_raw(&slow, "PRP", 3), 0);
  assert_int_equal(tclient_wait_closed(&slow, GUARD_MS), 0);
  /* No progress past budget_wait: the hog is closed. */
  assert_int_equal(tclient_wait_closed(&hog, GUARD_MS), 0);
  tcall(&good, 3, "after", 0, NULL, 0);
  mprpc_server_stats(s, &st);
  assert_int_equal(st.refused_budget, 1);
  assert_int_equal(st.refused_header_timeout, 1);
  assert_int_equal(st.malformed_frames, 0);
  /* The budget, plus the doubling a big buffer reserves (at most the budget
   * again), plus a read pass per loop (docs/server.md). */
  assert_true(st.buffered_bytes_peak <= 2 * (1u << 20) + 2 * 256 * 1024 + 4096);
  tclient_close(&good);
  tclient_close(&hog);
  tclient_close(&slow);
  mprpc_server_destroy(s);
}

static void test_server_tcp_max_connections_refused_at_once(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.max_connections = 1;
  o.threads = 1;
  mprpc_server_t *s = tsrv_start(&o);
  uint16_t port = mprpc_server_port(s);
  tclient_t a, b;
  assert_int_equal(tclient_connect(&a, port), 0);
  tcall(&a, 1, "first", 0, NULL, 0);
  assert_int_equal(tclient_connect(&b, port), 0); /* the kernel completes it */
  assert_int_equal(tclient_wait_closed(&b, GUARD_MS), 0); /* then the provider refuses */
  tcall(&a, 2, "still served", 0, NULL, 0);
  mprpc_server_stats_t st;
  mprpc_server_stats(s, &st);
  assert_int_equal(st.refused_max_connections, 1);
  assert_int_equal(st.connections_open, 1);
  tclient_close(&a);
  tclient_close(&b);
  mprpc_server_destroy(s);
}

int main(void) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server_tcp_echo_attachment_splits),
      cmocka_unit_test(test_server_tcp_pipelined_5000),
      cmocka_unit_test(test_server_tcp_stats_sum_over_loops),
      cmocka_unit_test(test_server_tcp_async_out_of_order_and_limit),
      cmocka_unit_test(test_server_tcp_errors_keep_connection),
      cmocka_unit_test(test_server_tcp_malformed_and_idle),
      cmocka_unit_test(test_server_tcp_compressed_echo),
      cmocka_unit_test(test_server_tcp_large_answers_keep_order),
      cmocka_unit_test(test_server_tcp_handler_sets_response_compress),
      cmocka_unit_test(test_server_tcp_corrupt_compressed_payload),
      cmocka_unit_test(test_server_tcp_compressed_body_limit),
      cmocka_unit_test(test_server_tcp_logoff_during_stop),
      cmocka_unit_test(test_server_tcp_never_called_closure),
      cmocka_unit_test(test_server_tcp_run_until_stop_async),
      cmocka_unit_test(test_server_tcp_late_second_closure_call),
      cmocka_unit_test(test_server_tcp_echo_server_program),
      cmocka_unit_test(test_server_tcp_budget_and_slow_clients),
      cmocka_unit_test(test_server_tcp_max_connections_refused_at_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
