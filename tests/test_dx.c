/*
 * What a newcomer meets on the first day (the "errors that name things"
 * issue): application error codes that keep their value across the wire,
 * idempotent lists that name what they do not know, requests too large for
 * the peer refused before sending, unset required fields named by path.
 * Real providers on loopback (TCP, port 0), the default loop for channels.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/msg_check.h"
#include "echo.pb-c.h"
#include "inventory.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/server.h"

/* ---- stderr capture (the logger writes there synchronously) -------------- */

static int saved_fd = -1;
static char cap_path[64];

static void capture_stderr(void) {
  snprintf(cap_path, sizeof cap_path, "/tmp/mprpc-test-dx.XXXXXX");
  int fd = mkstemp(cap_path);
  assert_true(fd >= 0);
  fflush(stderr);
  saved_fd = dup(2);
  dup2(fd, 2);
  close(fd);
}

static char *release_stderr(void) {
  mprpc_log_flush();
  fflush(stderr);
  dup2(saved_fd, 2);
  close(saved_fd);
  FILE *f = fopen(cap_path, "rb");
  assert_non_null(f);
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  unlink(cap_path);
  return buf;
}

/* ---- a provider whose handler fails on request ---------------------------- */

/* "fail CODE TEXT" fails with CODE (positive: the application's) and TEXT
 * ("-" for none); anything else is echoed. */
typedef struct prov {
  Example__EchoService_Service svc; /* first: the handler casts back */
  mprpc_server_t *srv;
  uint16_t port;
  atomic_int execs;
} prov_t;

static void echo_impl(Example__EchoService_Service *service, const Example__EchoRequest *in,
                      Example__EchoResponse_Closure closure, void *data) {
  prov_t *p = (prov_t *)service;
  atomic_fetch_add(&p->execs, 1);
  int code;
  char text[128];
  if (sscanf(in->message, "fail %d %127[^\n]", &code, text) == 2) {
    mprpc_server_call_set_error(mprpc_server_call_from(data), code,
                                strcmp(text, "-") == 0 ? NULL : text);
    closure(NULL, data);
    return;
  }
  Example__EchoResponse r = EXAMPLE__ECHO_RESPONSE__INIT;
  r.message = in->message;
  closure(&r, data);
}
#define echo_echo echo_impl

static void prov_start(prov_t *p) {
  memset(p, 0, sizeof *p);
  Example__EchoService_Service init = EXAMPLE__ECHO_SERVICE__INIT(echo_);
  p->svc = init;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = "127.0.0.1";
  o.port = 0;
  assert_int_equal(mprpc_server_new(&o, &p->srv), 0);
  assert_int_equal(mprpc_server_add_service(p->srv, &p->svc.base), 0);
  assert_int_equal(mprpc_server_start(p->srv), 0);
  p->port = mprpc_server_port(p->srv);
  assert_int_not_equal(p->port, 0);
}

static void prov_stop(prov_t *p) {
  mprpc_server_destroy(p->srv);
  p->srv = NULL;
}

static mprpc_channel_t *channel_to(const ProtobufCServiceDescriptor *sd, const uint16_t *ports,
                                   size_t n, const char *idempotent) {
  static char servers[256];
  size_t off = 0;
  for (size_t i = 0; i < n; i++)
    off += (size_t)snprintf(servers + off, sizeof servers - off, "%s127.0.0.1:%u", i ? "," : "",
                            (unsigned)ports[i]);
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.servers = servers;
  o.timeout_ms = 10000; /* hang guard */
  o.idempotent_methods = idempotent;
  mprpc_channel_t *ch = NULL;
  assert_int_equal(mprpc_channel_new(sd, &o, &ch), 0);
  return ch;
}

typedef struct outcome {
  int called;
  char message[256];
} outcome_t;

static void echo_done(const Example__EchoResponse *r, void *arg) {
  outcome_t *o = arg;
  o->called++;
  snprintf(o->message, sizeof o->message, "%s", r ? r->message : "(failed)");
}

/* A synchronous stub call (this thread is not the channel's loop). */
static void echo_call(mprpc_channel_t *ch, const char *msg, mprpc_controller_t *ctl,
                      outcome_t *o) {
  memset(o, 0, sizeof *o);
  mprpc_controller_reset(ctl);
  mprpc_controller_use_next(ctl);
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = (char *)msg;
  example__echo_service__echo(mprpc_channel_service(ch), &req, echo_done, o);
  assert_int_equal(o->called, 1);
}

/* ---- 4. application error codes keep their value ------------------------ */

static void test_dx_app_codes_keep_their_value(void **state) {
  (void)state;
  prov_t a, b;
  prov_start(&a);
  prov_start(&b);
  uint16_t ports[2] = {a.port, b.port};
  /* idempotent and two providers: an application error is still an
   * answer, never retried */
  mprpc_channel_t *ch = channel_to(&example__echo_service__descriptor, ports, 2, "*");
  mprpc_controller_t *ctl = mprpc_controller_new();
  outcome_t o;
  static const struct {
    int code;
    const char *text;
  } cases[] = {
      {2, "no such file, says the application"}, /* errno ENOENT's number */
      {42, "out of stock"},
      {111, "refused by policy"},                /* ECONNREFUSED's number */
      {3016, "an mprpc-local number"},
      {10001, "the recommended range"},
      {2000000000, "a large code"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char msg[200];
    snprintf(msg, sizeof msg, "fail %d %s", cases[i].code, cases[i].text);
    echo_call(ch, msg, ctl, &o);
    assert_string_equal(o.message, "(failed)");
    assert_true(mprpc_controller_failed(ctl));
    assert_int_equal(mprpc_controller_error_code(ctl), MPRPC_EAPP);
    assert_string_equal(mprpc_err_name(mprpc_controller_error_code(ctl)), "EAPP");
    assert_int_equal(mprpc_controller_remote_code(ctl), cases[i].code);
    assert_string_equal(mprpc_controller_error_text(ctl), cases[i].text);
    assert_int_equal(mprpc_controller_attempts(ctl), 1);
    assert_string_not_equal(mprpc_controller_remote(ctl), "");
  }
  assert_int_equal(atomic_load(&a.execs) + atomic_load(&b.execs), 6);

  /* no text from the handler: the code is named */
  echo_call(ch, "fail 42 -", ctl, &o);
  assert_int_equal(mprpc_controller_error_code(ctl), MPRPC_EAPP);
  assert_string_equal(mprpc_controller_error_text(ctl), "application error 42");

  /* a framework code set by the handler stays a framework code */
  char msg[64];
  snprintf(msg, sizeof msg, "fail %d busy", MPRPC_ELIMIT);
  echo_call(ch, msg, ctl, &o); /* ELIMIT is retried: both providers answer it */
  assert_int_equal(mprpc_controller_error_code(ctl), MPRPC_ELIMIT);
  assert_int_equal(mprpc_controller_remote_code(ctl), 2004);

  /* success: no remote code */
  echo_call(ch, "hello", ctl, &o);
  assert_string_equal(o.message, "hello");
  assert_int_equal(mprpc_controller_error_code(ctl), 0);
  assert_int_equal(mprpc_controller_remote_code(ctl), 0);

  mprpc_channel_stats_t st;
  mprpc_channel_stats(ch, &st);
  bool counted = false;
  for (size_t i = 0; i < st.ncodes; i++)
    if (st.by_code[i].code == MPRPC_EAPP && st.by_code[i].count == 7)
      counted = true;
  assert_true(counted);
  assert_int_equal(st.ejections, 0); /* application errors never eject */
  mprpc_channel_destroy(ch);

  /* a service the provider does not have: brpc's ENOSERVICE, 1001 */
  ch = channel_to(&inv__stock_service__descriptor, ports, 1, NULL);
  Inv__StockRequest sreq = INV__STOCK_REQUEST__INIT;
  sreq.item_id = "apple";
  mprpc_controller_reset(ctl);
  mprpc_controller_use_next(ctl);
  inv__stock_service__take(mprpc_channel_service(ch), &sreq, NULL, NULL);
  assert_int_equal(mprpc_controller_error_code(ctl), MPRPC_ENOSERVICE);
  assert_int_equal(mprpc_controller_remote_code(ctl), 1001);
  mprpc_channel_destroy(ch);

  /* no answer at all: no remote code */
  uint16_t dead = 1;
  ch = channel_to(&example__echo_service__descriptor, &dead, 1, NULL);
  echo_call(ch, "hello", ctl, &o);
  assert_int_equal(mprpc_controller_error_code(ctl), MPRPC_ECONNREFUSED);
  assert_int_equal(mprpc_controller_remote_code(ctl), 0);
  mprpc_channel_destroy(ch);

  mprpc_controller_free(ctl);
  prov_stop(&a);
  prov_stop(&b);
}

static void test_dx_wire_ranges(void **state) {
  (void)state;
  assert_true(mprpc_err_wire_is_app(1));
  assert_true(mprpc_err_wire_is_app(999));
  assert_true(mprpc_err_wire_is_app(1000));
  assert_false(mprpc_err_wire_is_app(1001));
  assert_false(mprpc_err_wire_is_app(2004));
  assert_false(mprpc_err_wire_is_app(2999));
  assert_true(mprpc_err_wire_is_app(3000));
  assert_true(mprpc_err_wire_is_app(10000));
  assert_false(mprpc_err_wire_is_app(0));
  assert_false(mprpc_err_wire_is_app(-5));
  assert_string_equal(mprpc_strerror(MPRPC_EAPP), "application error");
}

/* ---- 5. idempotent lists -------------------------------------------------- */

static void test_dx_idempotent_qualified_names(void **state) {
  (void)state;
  const ProtobufCServiceDescriptor *sd = &example__echo_service__descriptor;
  bool marks[1];
  char why[256];
  static const char *const ok[] = {
      "Echo", "*", "EchoService.Echo", "example.EchoService.Echo", "EchoService.*",
      " Echo , inv.StockService.Take", "OrderService.Reserve,Echo",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    marks[0] = false;
    assert_int_equal(mprpc_channel_parse_idempotent(sd, ok[i], marks, why, sizeof why), 0);
    assert_true(marks[0]);
  }
  /* only other services' names: accepted, nothing marked */
  marks[0] = false;
  assert_int_equal(
      mprpc_channel_parse_idempotent(sd, "inv.StockService.Take,OrderService.*", marks, why,
                                     sizeof why),
      0);
  assert_false(marks[0]);
  /* unknown methods of this service are refused, by name */
  assert_int_equal(mprpc_channel_parse_idempotent(sd, "Echo,Ecoh", marks, why, sizeof why),
                   MPRPC_ENOTFOUND);
  assert_non_null(strstr(why, "example.EchoService has no method 'Ecoh' (it has: Echo)"));
  assert_int_equal(mprpc_channel_parse_idempotent(sd, "EchoService.Ecoh", NULL, why, sizeof why),
                   MPRPC_ENOTFOUND);
  assert_non_null(strstr(why, "'EchoService.Ecoh'"));
  assert_int_equal(mprpc_channel_parse_idempotent(sd, "example.EchoService.Nope", NULL, NULL, 0),
                   MPRPC_ENOTFOUND);

  /* mprpc_channel_new refuses it and logs an ERROR naming service and method */
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.servers = "127.0.0.1:1";
  o.idempotent_methods = "Ecoh";
  mprpc_channel_t *ch = NULL;
  capture_stderr();
  int rc = mprpc_channel_new(sd, &o, &ch);
  char *err = release_stderr();
  assert_int_equal(rc, MPRPC_ENOTFOUND);
  assert_null(ch);
  assert_non_null(strstr(err, "ERROR"));
  assert_non_null(strstr(err, "channel example.EchoService: idempotent_methods: "
                              "example.EchoService has no method 'Ecoh'"));
  /* one list for the channels of two services */
  o.idempotent_methods = "EchoService.Echo, StockService.Take, OrderService.*";
  assert_int_equal(mprpc_channel_new(sd, &o, &ch), 0);
  mprpc_channel_destroy(ch);
  assert_int_equal(mprpc_channel_new(&inv__stock_service__descriptor, &o, &ch), 0);
  mprpc_channel_destroy(ch);
  assert_int_equal(mprpc_channel_new(&inv__order_service__descriptor, &o, &ch), 0);
  mprpc_channel_destroy(ch);
}

/* ---- 5. requests too large for the peer ----------------------------------- */

static void test_dx_request_over_the_body_limit_fails_before_sending(void **state) {
  (void)state;
  prov_t p;
  prov_start(&p);
  mprpc_channel_t *ch = channel_to(&example__echo_service__descriptor, &p.port, 1, "*");
  mprpc_controller_t *ctl = mprpc_controller_new();
  outcome_t o;
  /* over the providers' default 64 MiB: refused here, once, not retried */
  size_t big = ((size_t)64 << 20) + 1;
  char *msg = malloc(big + 1);
  assert_non_null(msg);
  memset(msg, 'x', big);
  msg[big] = 0;
  echo_call(ch, msg, ctl, &o);
  assert_int_equal(mprpc_controller_error_code(ctl), MPRPC_ETOOBIG);
  assert_int_equal(mprpc_controller_attempts(ctl), 0);
  const char *t = mprpc_controller_error_text(ctl);
  assert_non_null(strstr(t, "body limit of 67108864 bytes"));
  assert_non_null(strstr(t, "payload 67108870")); /* 64 MiB + 1 + tag and length */
  assert_non_null(strstr(t, "not sent"));
  assert_int_equal(atomic_load(&p.execs), 0);
  mprpc_channel_stats_t st;
  mprpc_channel_stats(ch, &st);
  assert_int_equal(st.attempts, 0);
  assert_int_equal(st.retries, 0);
  /* the channel is fine afterwards */
  echo_call(ch, "small", ctl, &o);
  assert_string_equal(o.message, "small");
  mprpc_channel_destroy(ch);

  /* the channel's max_body: 1 MiB, with an attachment pushing it over */
  mprpc_channel_opts_t co;
  mprpc_channel_opts_init(&co);
  char servers[32];
  snprintf(servers, sizeof servers, "127.0.0.1:%u", (unsigned)p.port);
  co.servers = servers;
  co.max_body = 1 << 20;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &co, &ch), 0);
  msg[(1 << 20) - 100] = 0;
  mprpc_controller_reset(ctl);
  char *att = calloc(1, 200);
  assert_int_equal(mprpc_controller_set_request_attachment(ctl, att, 200), 0);
  free(att);
  memset(&o, 0, sizeof o);
  mprpc_controller_use_next(ctl);
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = msg;
  example__echo_service__echo(mprpc_channel_service(ch), &req, echo_done, &o);
  assert_int_equal(o.called, 1);
  assert_int_equal(mprpc_controller_error_code(ctl), MPRPC_ETOOBIG);
  assert_non_null(strstr(mprpc_controller_error_text(ctl), "attachment 200"));
  assert_non_null(strstr(mprpc_controller_error_text(ctl), "limit of 1048576 bytes (the channel's max_body)"));
  /* just under the limit goes through */
  msg[(1 << 20) - 400] = 0;
  echo_call(ch, msg, ctl, &o);
  assert_int_equal(mprpc_controller_error_code(ctl), 0);
  assert_int_equal(strlen(o.message) > 0, 1);
  mprpc_channel_destroy(ch);
  free(msg);
  mprpc_controller_free(ctl);
  assert_int_equal(atomic_load(&p.execs), 2);
  prov_stop(&p);
}

/* ---- 5. unset required fields are named ----------------------------------- */

static void test_dx_msg_check_names_the_field(void **state) {
  (void)state;
  char why[256];
  Inv__ReserveRequest r = INV__RESERVE_REQUEST__INIT;
  assert_int_equal(mprpc__msg_check(&r.base, why, sizeof why), MPRPC_EINVAL);
  assert_string_equal(why, "inv.ReserveRequest.item_id is required");
  assert_false(protobuf_c_message_check(&r.base));
  r.item_id = "apple";
  assert_int_equal(mprpc__msg_check(&r.base, why, sizeof why), 0);
  assert_string_equal(why, "");
  assert_true(protobuf_c_message_check(&r.base));

  /* repeated messages: the element and its field */
  Inv__Line l0 = INV__LINE__INIT, l1 = INV__LINE__INIT;
  l0.sku = "pear";
  Inv__Line *lines[2] = {&l0, &l1};
  r.n_extras = 2;
  r.extras = lines;
  assert_int_equal(mprpc__msg_check(&r.base, why, sizeof why), MPRPC_EINVAL);
  assert_string_equal(why, "inv.ReserveRequest.extras[1].sku is required");
  lines[1] = NULL;
  assert_int_equal(mprpc__msg_check(&r.base, why, sizeof why), MPRPC_EINVAL);
  assert_string_equal(why, "inv.ReserveRequest.extras[1] is NULL");
  lines[1] = &l1;
  l1.sku = "plum";
  assert_int_equal(mprpc__msg_check(&r.base, why, sizeof why), 0);

  /* an optional sub-message, once set, is checked */
  Inv__Line gift = INV__LINE__INIT;
  r.gift = &gift;
  assert_int_equal(mprpc__msg_check(&r.base, why, sizeof why), MPRPC_EINVAL);
  assert_string_equal(why, "inv.ReserveRequest.gift.sku is required");
  assert_false(protobuf_c_message_check(&r.base));
  assert_int_equal(mprpc__msg_check(&r.base, NULL, 0), MPRPC_EINVAL);
}

static void reserve_done(const Inv__ReserveResponse *r, void *arg) {
  (void)r;
  (*(int *)arg)++;
}

static void test_dx_unset_required_field_is_named_by_the_channel(void **state) {
  (void)state;
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.servers = "127.0.0.1:1"; /* never reached: the call does not start */
  mprpc_channel_t *ch = NULL;
  assert_int_equal(mprpc_channel_new(&inv__order_service__descriptor, &o, &ch), 0);
  mprpc_controller_t *ctl = mprpc_controller_new();
  Inv__ReserveRequest r = INV__RESERVE_REQUEST__INIT;

  /* a stub: done runs once with the text */
  int called = 0;
  mprpc_controller_use_next(ctl);
  inv__order_service__reserve(mprpc_channel_service(ch), &r, reserve_done, &called);
  assert_int_equal(called, 1);
  assert_int_equal(mprpc_controller_error_code(ctl), MPRPC_EINVAL);
  assert_string_equal(mprpc_controller_error_text(ctl), "inv.ReserveRequest.item_id is required");

  /* mprpc_channel_call: refused, done never runs, the controller says why */
  mprpc_controller_reset(ctl);
  assert_int_equal(mprpc_channel_call(ch, 0, &r.base, ctl, (ProtobufCClosure)reserve_done, &called),
                   MPRPC_EINVAL);
  assert_int_equal(called, 1);
  assert_string_equal(mprpc_controller_error_text(ctl), "inv.ReserveRequest.item_id is required");

  /* the wrong message type is named too */
  Inv__StockRequest s = INV__STOCK_REQUEST__INIT;
  s.item_id = "apple";
  assert_int_equal(mprpc_channel_call(ch, 0, &s.base, ctl, (ProtobufCClosure)reserve_done, &called),
                   MPRPC_EINVAL);
  assert_string_equal(mprpc_controller_error_text(ctl),
                      "inv.OrderService.Reserve takes a inv.ReserveRequest, not a inv.StockRequest");
  assert_int_equal(mprpc_channel_call(ch, 7, &s.base, ctl, (ProtobufCClosure)reserve_done, &called),
                   MPRPC_EINVAL);
  assert_string_equal(mprpc_controller_error_text(ctl), "inv.OrderService has no method 7 (it has 1)");
  assert_int_equal(called, 1);
  mprpc_controller_free(ctl);
  mprpc_channel_destroy(ch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dx_app_codes_keep_their_value),
      cmocka_unit_test(test_dx_wire_ranges),
      cmocka_unit_test(test_dx_idempotent_qualified_names),
      cmocka_unit_test(test_dx_request_over_the_body_limit_fails_before_sending),
      cmocka_unit_test(test_dx_msg_check_names_the_field),
      cmocka_unit_test(test_dx_unset_required_field_is_named_by_the_channel),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
