/* The provider suites' test service; see echo_svc.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "echo_svc.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/compress.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/server.h"

#define MAX_HELD 8192
static struct {
  pthread_mutex_t mu;
  Example__EchoResponse_Closure cl[MAX_HELD];
  void *data[MAX_HELD];
  int n;
} held = {PTHREAD_MUTEX_INITIALIZER, {0}, {0}, 0};

static fake_loop_t *clock_loop;

void echo_svc_use_clock(fake_loop_t *L) { clock_loop = L; }

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
  if (strncmp(msg, "advance:", 8) == 0 && clock_loop)
    fake_loop_skip(clock_loop, (uint64_t)atoi(msg + 8));
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

Example__EchoService_Service echo_svc = EXAMPLE__ECHO_SERVICE__INIT(svc_);

int held_count(void) {
  pthread_mutex_lock(&held.mu);
  int n = held.n;
  pthread_mutex_unlock(&held.mu);
  return n;
}

void held_take(int i, Example__EchoResponse_Closure *cl, void **data) {
  pthread_mutex_lock(&held.mu);
  assert_true(i < held.n);
  *cl = held.cl[i];
  *data = held.data[i];
  memmove(&held.cl[i], &held.cl[i + 1], (size_t)(held.n - i - 1) * sizeof held.cl[0]);
  memmove(&held.data[i], &held.data[i + 1], (size_t)(held.n - i - 1) * sizeof held.data[0]);
  held.n--;
  pthread_mutex_unlock(&held.mu);
}

void held_complete(int i, const char *msg) {
  Example__EchoResponse_Closure cl;
  void *data;
  held_take(i, &cl, &data);
  Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
  out.message = (char *)msg;
  cl(msg ? &out : NULL, data);
}

void *held_data(int i) {
  pthread_mutex_lock(&held.mu);
  assert_true(i < held.n);
  void *data = held.data[i];
  pthread_mutex_unlock(&held.mu);
  return data;
}

void held_forget(void) {
  pthread_mutex_lock(&held.mu);
  held.n = 0;
  pthread_mutex_unlock(&held.mu);
}

tclient_req_t echo_req(int64_t cid, Example__EchoRequest *m, const char *text) {
  example__echo_request__init(m);
  m->message = (char *)text;
  return (tclient_req_t){.cid = cid, .msg = &m->base};
}

tclient_req_t zecho_req(int64_t cid, int type, const char *text, uint8_t **buf) {
  Example__EchoRequest m = EXAMPLE__ECHO_REQUEST__INIT;
  m.message = (char *)text;
  size_t n;
  assert_int_equal(tclient_pack(&m.base, type, buf, &n), 0);
  return (tclient_req_t){.cid = cid, .raw = *buf, .raw_len = n, .compress_type = type};
}

/* Inflated here rather than by tclient_echo_decode so that the type is
 * checked against the meta. */
void expect_zecho(const tclient_resp_t *r, int64_t cid, int type, const char *want) {
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

int auth_cb(void *ud, const uint8_t *data, size_t len, const char *peer) {
  (*(int *)ud)++;
  assert_non_null(peer);
  return len == 6 && memcmp(data, "secret", 6) == 0 ? 0 : -1;
}

void done_cb(void *ud) { (*(int *)ud)++; }
