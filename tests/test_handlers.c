/* Where handlers run: on the loop (the default), where a synchronous call
 * fails at once instead of deadlocking and a slow handler is counted, or on
 * a pool (handler_threads), where blocking and nested synchronous calls are
 * fine. Real TCP, port 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/controller.h"
#include "mprpc/errors.h"
#include "mprpc/server.h"

/* The channel the handler uses to call its own provider ("nested"). */
static mprpc_channel_t *nested_ch;
static int nested_rc;
static char nested_text[256];

static void nested_done(const Example__EchoResponse *resp, void *arg) {
  (void)arg;
  (void)resp;
}

static void echo_nested_echo(Example__EchoService_Service *svc, const Example__EchoRequest *req,
                        Example__EchoResponse_Closure done, void *cd) {
  (void)svc;
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  if (strcmp(req->message, "nest") == 0) {
    /* A synchronous stub call from inside a handler, to this provider. */
    Example__EchoRequest inner = EXAMPLE__ECHO_REQUEST__INIT;
    inner.message = "inner";
    mprpc_controller_t *ctl;
    ctl = mprpc_controller_new();
    mprpc_controller_use_next(ctl);
    example__echo_service__echo(mprpc_channel_service(nested_ch), &inner, nested_done, NULL);
    nested_rc = mprpc_controller_error_code(ctl);
    snprintf(nested_text, sizeof nested_text, "%s", mprpc_controller_error_text(ctl));
    mprpc_controller_free(ctl);
  } else if (strcmp(req->message, "slow") == 0) {
    usleep(150 * 1000);
  }
  resp.message = (char *)req->message;
  done(&resp, cd);
}

static Example__EchoService_Service service = EXAMPLE__ECHO_SERVICE__INIT(echo_nested_);

static mprpc_server_t *start(size_t handler_threads, uint64_t slow_ms) {
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = "127.0.0.1";
  o.handler_threads = handler_threads;
  o.slow_handler_warn_ms = slow_ms;
  mprpc_server_t *s;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &service.base), 0);
  assert_int_equal(mprpc_server_start(s), 0);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)mprpc_server_port(s));
  mprpc_channel_opts_t co;
  mprpc_channel_opts_init(&co);
  co.servers = addr;
  co.timeout_ms = 5000;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &co, &nested_ch), 0);
  return s;
}

static void stop(mprpc_server_t *s) {
  mprpc_channel_destroy(nested_ch);
  nested_ch = NULL;
  mprpc_server_destroy(s);
}

/* One synchronous call from the test thread; returns its error code. */
static int call(const char *msg, char *got, size_t n) {
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = (char *)msg;
  (void)got;
  (void)n;
  mprpc_controller_t *ctl;
  ctl = mprpc_controller_new();
  mprpc_controller_use_next(ctl);
  example__echo_service__echo(mprpc_channel_service(nested_ch), &req, nested_done, NULL);
  int rc = mprpc_controller_error_code(ctl);
  mprpc_controller_free(ctl);
  return rc;
}

static void test_handlers_sync_call_on_the_loop_fails_at_once(void **st) {
  (void)st;
  mprpc_server_t *s = start(0, 0);
  nested_rc = 1;
  assert_int_equal(call("nest", NULL, 0), 0);
  assert_int_equal(nested_rc, MPRPC_EDEADLK);
  assert_non_null(strstr(nested_text, "handler_threads"));
  assert_non_null(strstr(nested_text, "example.EchoService.Echo"));
  stop(s);
}

static void test_handlers_on_a_pool_may_call_synchronously(void **st) {
  (void)st;
  mprpc_server_t *s = start(2, 0);
  nested_rc = 1;
  assert_int_equal(call("nest", NULL, 0), 0);
  assert_int_equal(nested_rc, 0);
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats(s, "example.EchoService", "Echo", &ms), 0);
  assert_int_equal(ms.completed, 2);
  assert_int_equal(ms.slow_handlers, 0); /* the pool never holds a loop */
  stop(s);
}

static void test_handlers_slow_on_the_loop_are_counted(void **st) {
  (void)st;
  mprpc_server_t *s = start(0, 20);
  assert_int_equal(call("slow", NULL, 0), 0);
  assert_int_equal(call("fast", NULL, 0), 0);
  assert_int_equal(call("slow", NULL, 0), 0);
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats(s, "example.EchoService", "Echo", &ms), 0);
  assert_int_equal(ms.slow_handlers, 2);
  stop(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handlers_sync_call_on_the_loop_fails_at_once),
      cmocka_unit_test(test_handlers_on_a_pool_may_call_synchronously),
      cmocka_unit_test(test_handlers_slow_on_the_loop_are_counted),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
