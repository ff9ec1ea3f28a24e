/*
 * connections_per_endpoint on the fake environment (one thread, manual
 * clock, in-memory transport): a channel opens N connections to each
 * provider address and spreads its calls over all of them; a retry after a
 * broken connection goes to another ADDRESS, not to the other connection of
 * the one that failed; a refused connect ejects that connection only.
 * White-box: the endpoints are read from the channel's internals
 * (core/channel_int.h) to map fake connections to addresses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/channel_int.h"
#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/controller.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "support/fake_env.h"

typedef struct done_count {
  int runs, failed;
} done_count_t;

static void on_done(const ProtobufCMessage *resp, void *arg) {
  done_count_t *d = arg;
  d->runs++;
  d->failed += resp == NULL;
}

static mprpc_channel_t *chan_new(fake_env_t *e, const char *servers, unsigned conns,
                                 int eject_conn_failures) {
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.loop = e->loop;
  o.transport = e->tr;
  o.servers = servers;
  o.connections_per_endpoint = conns;
  o.idempotent_methods = "*";
  o.timeout_ms = 5000;
  o.eject_conn_failures = eject_conn_failures;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new_in(&example__echo_service__descriptor, &o, &ch), 0);
  return ch;
}

static void call(mprpc_channel_t *ch, done_count_t *d) {
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "hi";
  assert_int_equal(mprpc_channel_call(ch, 0, &req.base, NULL, on_done, d), 0);
}

/* The endpoint whose connection is c, NULL if none. */
static mprpc__ep_t *ep_of(mprpc_channel_t *ch, const fake_conn_t *c) {
  for (size_t i = 0; i < ch->neps; i++)
    if (ch->eps[i]->conn == c)
      return ch->eps[i];
  return NULL;
}

static size_t unread(const fake_conn_t *c) {
  size_t n = 0;
  fake_conn_unread(c, &n);
  return n;
}

static void env_init(fake_env_t *e, fake_connect_mode_t first) {
  fake_env_init(e, &(fake_loop_opts_t){.seed = 3},
                &(fake_net_opts_t){.first_connect = first, .next_connect = FAKE_CONNECT_ACCEPTED});
}

static void test_channel_conns_spread_calls_over_every_connection(void **state) {
  (void)state;
  fake_env_t e;
  env_init(&e, FAKE_CONNECT_ACCEPTED);
  mprpc_channel_t *ch = chan_new(&e, "10.0.0.1:7001,10.0.0.2:7002", 2, 0);
  assert_int_equal(ch->neps, 4);
  /* two slots per address, sharing the address id; the addresses differ */
  assert_int_equal(ch->eps[0]->addr_id, ch->eps[1]->addr_id);
  assert_int_equal(ch->eps[2]->addr_id, ch->eps[3]->addr_id);
  assert_true(ch->eps[0]->addr_id != ch->eps[2]->addr_id);
  assert_int_equal(ch->eps[0]->slot + ch->eps[1]->slot, 1);
  done_count_t d = {0};
  for (int i = 0; i < 8; i++)
    call(ch, &d);
  fake_loop_run(e.L);
  assert_int_equal(fake_net_conn_count(e.net), 4);
  for (size_t k = 0; k < 4; k++) {
    fake_conn_t *c = fake_net_conn(e.net, k);
    assert_non_null(ep_of(ch, c));
    assert_true(unread(c) > 0); /* each connection carries requests */
  }
  assert_int_equal(d.runs, 0);
  mprpc_channel_destroy(ch);
  fake_loop_run(e.L);
  assert_int_equal(d.runs, 8); /* every closure once, cancelled */
  assert_int_equal(d.failed, 8);
  fake_env_free(&e);
}

static void test_channel_conns_retry_goes_to_another_address(void **state) {
  (void)state;
  fake_env_t e;
  env_init(&e, FAKE_CONNECT_ACCEPTED);
  mprpc_channel_t *ch = chan_new(&e, "10.0.0.1:7001,10.0.0.2:7002", 2, 0);
  done_count_t d = {0};
  call(ch, &d);
  fake_loop_run(e.L);
  assert_int_equal(fake_net_conn_count(e.net), 1);
  fake_conn_t *first = fake_net_conn(e.net, 0);
  mprpc__ep_t *x = ep_of(ch, first);
  assert_non_null(x);
  uint64_t addr = x->addr_id;
  assert_true(unread(first) > 0);
  fake_conn_hangup(first, MPRPC_CLOSE_RESET, MPRPC_ECONNRESET); /* outcome unknown */
  fake_loop_run(e.L);
  assert_int_equal(d.runs, 0); /* retried (idempotent), not failed */
  assert_int_equal(fake_net_conn_count(e.net), 2);
  fake_conn_t *second = fake_net_conn(e.net, 1);
  mprpc__ep_t *y = ep_of(ch, second);
  assert_non_null(y);
  assert_true(unread(second) > 0);
  assert_true(y->addr_id != addr); /* not the other connection of the same provider */
  assert_true(strcmp(y->host, x->host) != 0);
  mprpc_channel_destroy(ch);
  fake_loop_run(e.L);
  assert_int_equal(d.runs, 1);
  fake_env_free(&e);
}

static void test_channel_conns_refused_connect_ejects_that_connection_only(void **state) {
  (void)state;
  fake_env_t e;
  env_init(&e, FAKE_CONNECT_REFUSED);
  mprpc_channel_t *ch = chan_new(&e, "10.0.0.1:7001,10.0.0.2:7002", 2, 1);
  done_count_t d = {0};
  call(ch, &d);
  fake_loop_run(e.L);
  /* the refused slot is ejected, its sibling on the same address is not */
  mprpc__ep_t *refused = NULL;
  for (size_t i = 0; i < ch->neps; i++)
    if (ch->eps[i]->br.state == MPRPC__BREAKER_EJECTED) {
      assert_null(refused);
      refused = ch->eps[i];
    }
  assert_non_null(refused);
  for (size_t i = 0; i < ch->neps; i++)
    if (ch->eps[i] != refused && ch->eps[i]->addr_id == refused->addr_id)
      assert_true(ch->eps[i]->br.state != MPRPC__BREAKER_EJECTED);
  /* the call went on to the other address (a refused connect is safe) */
  assert_int_equal(d.runs, 0);
  bool sent_elsewhere = false;
  for (size_t k = 0; k < fake_net_conn_count(e.net); k++) {
    fake_conn_t *c = fake_net_conn(e.net, k);
    mprpc__ep_t *ep = ep_of(ch, c);
    if (ep && unread(c) > 0) {
      assert_true(ep->addr_id != refused->addr_id);
      sent_elsewhere = true;
    }
  }
  assert_true(sent_elsewhere);
  mprpc_channel_destroy(ch);
  fake_loop_run(e.L);
  assert_int_equal(d.runs, 1);
  fake_env_free(&e);
}

static void test_channel_conns_default_is_one_connection_per_address(void **state) {
  (void)state;
  fake_env_t e;
  env_init(&e, FAKE_CONNECT_ACCEPTED);
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  assert_int_equal(o.connections_per_endpoint, 1);
  mprpc_channel_t *ch = chan_new(&e, "10.0.0.1:7001,10.0.0.2:7002,10.0.0.1:7001", 0, 0);
  assert_int_equal(ch->neps, 2); /* 0 means 1; the duplicate is dropped */
  mprpc_channel_destroy(ch);
  fake_loop_run(e.L);
  fake_env_free(&e);
}

int main(void) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_channel_conns_spread_calls_over_every_connection),
      cmocka_unit_test(test_channel_conns_retry_goes_to_another_address),
      cmocka_unit_test(test_channel_conns_refused_connect_ejects_that_connection_only),
      cmocka_unit_test(test_channel_conns_default_is_one_connection_per_address),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
