/* The one address parser (include/mprpc/addr.h), and that channels,
 * registries and config files all go through it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "mprpc/addr.h"
#include "mprpc/channel.h"
#include "mprpc/config.h"
#include "mprpc/errors.h"
#include "mprpc/registry.h"
#include "echo.pb-c.h"

static int parse(const char *s, int flags, mprpc_hostport_t *hp, char *err, size_t n) {
  return mprpc_addr_parse(s, strlen(s), flags, hp, err, n);
}

static void test_addr_accepts_the_three_forms(void **st) {
  (void)st;
  mprpc_hostport_t hp;
  char err[128];
  assert_int_equal(parse("10.0.0.1:8000", 0, &hp, err, sizeof err), 0);
  assert_string_equal(hp.host, "10.0.0.1");
  assert_int_equal(hp.port, 8000);
  assert_int_equal(hp.family, 4);
  assert_int_equal(parse("[::1]:8000", 0, &hp, err, sizeof err), 0);
  assert_string_equal(hp.host, "::1");
  assert_int_equal(hp.family, 6);
  assert_int_equal(parse("[2001:db8::ffff:1.2.3.4]:1", 0, &hp, err, sizeof err), 0);
  assert_int_equal(parse("[1:2:3:4:5:6:7:8]:65535", 0, &hp, err, sizeof err), 0);
  assert_int_equal(hp.port, 65535);
  assert_int_equal(parse("db-1.prod_eu.example:2181", 0, &hp, err, sizeof err), 0);
  assert_int_equal(hp.family, 0);
  assert_int_equal(parse("localhost:0", MPRPC_ADDR_PORT0, &hp, err, sizeof err), 0);
  assert_int_equal(hp.port, 0);
}

static void test_addr_refuses_with_a_reason(void **st) {
  (void)st;
  static const struct {
    const char *in, *why;
  } bad[] = {
      {"::1:8000", "put an IPv6 host in brackets"},
      {"10.0.0.1", "expected host:port"},
      {"[::1]8000", "expected [v6addr]:port"},
      {"[10.0.0.1]:80", "not an IPv6 address"},
      {"[1:2:3:4:5:6:7:8:9]:80", "not an IPv6 address"},
      {"[1::2::3]:80", "not an IPv6 address"},
      {"1.2.3.999:80", "not an IPv4 address or hostname"},
      {"a b:80", "not an IPv4 address or hostname"},
      {"-host:80", "not an IPv4 address or hostname"},
      {":80", "empty host"},
      {"host:", "missing port"},
      {"host:0", "expected 1..65535"},
      {"host:65536", "expected 1..65535"},
      {"host:8o", "expected 1..65535"},
      {"host:99999999999999999999", "expected 1..65535"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mprpc_hostport_t hp;
    char err[160] = "";
    int rc = parse(bad[i].in, 0, &hp, err, sizeof err);
    if (rc != MPRPC_EADDR || !strstr(err, bad[i].why) || !strstr(err, bad[i].in))
      fail_msg("'%s': rc %d, err '%s' (wanted '%s')", bad[i].in, rc, err, bad[i].why);
  }
}

static void test_addr_host_alone(void **st) {
  (void)st;
  mprpc_hostport_t hp;
  assert_int_equal(mprpc_addr_parse_host("::1", 3, &hp), 0);
  assert_int_equal(hp.family, 6);
  assert_int_equal(mprpc_addr_parse_host("[fe80::1]", 9, &hp), 0);
  assert_string_equal(hp.host, "fe80::1");
  assert_int_equal(mprpc_addr_parse_host("zk1", 3, &hp), 0);
  assert_int_equal(mprpc_addr_parse_host("zk 1", 4, &hp), MPRPC_EADDR);
  assert_int_equal(mprpc_addr_parse_host("", 0, &hp), MPRPC_EADDR);
}

static void test_addr_format_brackets_v6(void **st) {
  (void)st;
  char buf[64];
  mprpc_addr_format("::1", 80, buf, sizeof buf);
  assert_string_equal(buf, "[::1]:80");
  mprpc_addr_format("10.0.0.1", 80, buf, sizeof buf);
  assert_string_equal(buf, "10.0.0.1:80");
}

/* Channels, registries and config: the same forms, the same refusals. */
static void test_addr_every_reader_agrees(void **st) {
  (void)st;
  static const char *const forms[] = {"127.0.0.1:7001", "[::1]:7001", "localhost:7001"};
  static const char *const refused[] = {"::1:7001", "1.2.3.999:7001", "h:65536"};
  for (int ok = 1; ok >= 0; ok--) {
    const char *const *v = ok ? forms : refused;
    for (size_t i = 0; i < 3; i++) {
      mprpc_channel_opts_t o;
      mprpc_channel_opts_init(&o);
      o.servers = v[i];
      mprpc_channel_t *ch = NULL;
      int rc = mprpc_channel_new(&example__echo_service__descriptor, &o, &ch);
      if ((rc == 0) != ok)
        fail_msg("channel, '%s': %s", v[i], mprpc_err_name(rc));
      if (ch)
        mprpc_channel_destroy(ch);

      char uri[128], err[256] = "";
      snprintf(uri, sizeof uri, "static://%s", v[i]);
      mprpc_registry_t r;
      rc = mprpc_registry_open(uri, &r, err, sizeof err);
      if ((rc == 0) != ok)
        fail_msg("registry, '%s': %s %s", uri, mprpc_err_name(rc), err);
      if (rc == 0)
        mprpc_registry_close(r);

      mprpc_config_t *cfg;
      assert_int_equal(mprpc_config_new(&cfg), 0);
      assert_int_equal(mprpc_config_set(cfg, "listen", v[i]), 0);
      mprpc_hostport_t hp;
      rc = mprpc_config_get_hostport(cfg, "listen", NULL, &hp);
      if ((rc == 0) != ok)
        fail_msg("config, '%s': %s %s", v[i], mprpc_err_name(rc), mprpc_config_error(cfg));
      mprpc_config_free(cfg);
    }
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_addr_accepts_the_three_forms),
      cmocka_unit_test(test_addr_refuses_with_a_reason),
      cmocka_unit_test(test_addr_host_alone),
      cmocka_unit_test(test_addr_format_brackets_v6),
      cmocka_unit_test(test_addr_every_reader_agrees),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
