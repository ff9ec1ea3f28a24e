/*
 * The bootstrap (src/app, the key table in src/util/keys.c): unknown keys
 * reported with file, line and the nearest known key; the one table
 * against docs/config.md; the registry keys; one call per side
 * (mprpc_server_from_config, mprpc_channel_from_config) over a real
 * provider on loopback with the file registry, owning its registry; the
 * default log level and the registration log lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "mprpc/mprpc.h"
#include "util/keys.h"

static char tmpdir[64];

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mprpc-test-app.XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text) {
  static char paths[8][300];
  static int next;
  char *p = paths[next++ % 8];
  snprintf(p, 300, "%s/%s", tmpdir, name);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return p;
}

static char *read_file(const char *path) {
  static char buf[1 << 16];
  buf[0] = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return buf;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

static int saved_fd = -1;
static char cap_path[300];

static void capture_stderr(void) {
  snprintf(cap_path, sizeof cap_path, "%s/stderr.XXXXXX", tmpdir);
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
  char *s = read_file(cap_path);
  unlink(cap_path);
  return s;
}

static mprpc_config_t *load(const char *text) {
  mprpc_config_t *cfg;
  assert_int_equal(mprpc_config_new(&cfg), 0);
  assert_int_equal(mprpc_config_load_string(cfg, text, strlen(text), "t.conf"), 0);
  return cfg;
}

/* ---- 8. visible by default ------------------------------------------------ */

static void test_app_default_log_level_is_info(void **state) {
  (void)state;
  assert_int_equal(mprpc_log_get_level(), MPRPC_LOG_LEVEL_INFO); /* nothing set it yet */
}

/* ---- 6. config that catches typos ------------------------------------------ */

static void test_app_edit_distance_and_suggestions(void **state) {
  (void)state;
  assert_int_equal(mprpc__edit_distance("zookeeprip", "zookeeperip", 3), 1);
  assert_int_equal(mprpc__edit_distance("thraeds", "threads", 3), 2);
  assert_int_equal(mprpc__edit_distance("", "lb", 3), 2);
  assert_int_equal(mprpc__edit_distance("abc", "abc", 0), 0);
  assert_int_equal(mprpc__edit_distance("abcdefgh", "zzzzzzzz", 2), 3); /* capped */
  assert_string_equal(mprpc__key_suggest("zookeeprip"), "zookeeperip");
  assert_string_equal(mprpc__key_suggest("thraeds"), "threads");
  assert_string_equal(mprpc__key_suggest("rpcserverpot"), "rpcserverport");
  assert_string_equal(mprpc__key_suggest("timeuot"), "timeout");
  assert_string_equal(mprpc__key_suggest("idempotent_method"), "idempotent_methods");
  assert_null(mprpc__key_suggest("threads"));    /* known */
  assert_null(mprpc__key_suggest("greeting"));   /* nothing close */
  assert_null(mprpc__key_suggest("xy"));
  assert_true(mprpc_config_key_known("zookeeper_wait"));
  assert_false(mprpc_config_key_known("zookeeper-wait"));
}

static void test_app_init_reports_unknown_keys(void **state) {
  (void)state;
  const char *path = write_file("friend.conf", "rpcserverip=127.0.0.1\n"
                                               "rpcserverport=8001\n"
                                               "zookeeprip=127.0.0.1\n"
                                               "greeting=hello\n"
                                               "xyzzy=1\n"
                                               "lb=rr\n");
  static const char *const mine[] = {"greeting", NULL};
  mprpc_app_declare_keys(mine);
  char *argv[] = {"friend_provider", "-i", (char *)path, NULL};
  mprpc_config_t *cfg;
  capture_stderr();
  int rc = mprpc_app_init(3, argv, &cfg);
  char *err = release_stderr();
  mprpc_app_declare_keys(NULL);
  assert_int_equal(rc, 0); /* a warning, not an error */
  char want[400];
  snprintf(want, sizeof want, "%s:3: unknown key 'zookeeprip' (did you mean zookeeperip?)", path);
  assert_non_null(strstr(err, want));
  assert_non_null(strstr(err, " WARN "));
  snprintf(want, sizeof want, "%s:5: unknown key 'xyzzy'\n", path); /* no hint */
  assert_non_null(strstr(err, want));
  assert_null(strstr(err, "greeting")); /* the program's own key */
  assert_null(strstr(err, "'lb'"));      /* a library key */
  assert_null(strstr(err, "rpcserver"));

  /* at the end of setup: not reported twice; library keys left unread */
  int64_t port;
  assert_int_equal(mprpc_config_get_int(cfg, "rpcserverport", 0, 0, 65535, &port), 0);
  mprpc_config_get(cfg, "rpcserverip");
  mprpc_config_get(cfg, "greeting");
  capture_stderr();
  size_t n = mprpc_config_warn_unused(cfg);
  err = release_stderr();
  assert_int_equal(n, 3); /* zookeeprip, xyzzy, lb */
  assert_null(strstr(err, "zookeeprip"));
  assert_null(strstr(err, "xyzzy"));
  snprintf(want, sizeof want, "%s:6: key 'lb' is not used by this program (ignored)", path);
  assert_non_null(strstr(err, want));
  mprpc_config_free(cfg);

  /* warn_unknown on its own, and on keys set in code */
  cfg = load("thraeds=4\n");
  assert_int_equal(mprpc_config_set(cfg, "timeuot", "1s"), 0);
  capture_stderr();
  n = mprpc_config_warn_unknown(cfg, NULL);
  err = release_stderr();
  assert_int_equal(n, 2);
  assert_non_null(strstr(err, "t.conf:1: unknown key 'thraeds' (did you mean threads?)"));
  assert_non_null(strstr(err, "unknown key 'timeuot' (did you mean timeout?)"));
  assert_int_equal(mprpc_config_warn_unknown(cfg, NULL), 0); /* once */
  mprpc_config_free(cfg);
}

/* Every key of the table is described in docs/config.md, and every key a
 * table row of docs/config.md describes is in the table. */
static void test_app_key_table_matches_docs(void **state) {
  (void)state;
  FILE *f = fopen("docs/config.md", "r");
  if (!f) {
    skip(); /* run from the repository root (make test does) */
    return;
  }
  static char doc[1 << 17];
  size_t len = fread(doc, 1, sizeof doc - 1, f);
  doc[len] = 0;
  fclose(f);
  size_t n;
  const mprpc__key_t *keys = mprpc__keys(&n);
  assert_true(n > 30);
  for (size_t i = 0; i < n; i++) {
    char row[96];
    snprintf(row, sizeof row, "| `%s` |", keys[i].name);
    if (!strstr(doc, row)) {
      fprintf(stderr, "docs/config.md has no row for key '%s'\n", keys[i].name);
      fail();
    }
  }
  /* rows of the key tables: "| `name` | ..." under "## Keys" */
  const char *p = strstr(doc, "## Keys");
  assert_non_null(p);
  const char *end = strstr(p, "## The command line");
  assert_non_null(end);
  while ((p = strstr(p, "\n| `")) && p < end) {
    p += 4;
    const char *q = strchr(p, '`');
    assert_non_null(q);
    char key[96];
    snprintf(key, sizeof key, "%.*s", (int)(q - p), p);
    if (!mprpc_config_key_known(key)) {
      fprintf(stderr, "docs/config.md describes '%s', which is not in src/util/keys.c\n", key);
      fail();
    }
  }
}

/* ---- 5/6. the registry keys ------------------------------------------------- */

static void test_app_registry_uri_keys(void **state) {
  (void)state;
  char uri[512];
  mprpc_config_t *cfg = load("rpcserverip=127.0.0.1\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), MPRPC_ENOTFOUND);
  assert_non_null(strstr(mprpc_config_error(cfg), "'registry'"));
  assert_non_null(strstr(mprpc_config_error(cfg), "'zookeeperip'"));
  mprpc_config_free(cfg);

  cfg = load("zookeeperip=127.0.0.1\nzookeeper_wait=off\nzookeeper_session_timeout=10s\n"
             "zookeeper_connect_timeout=250ms\nregistry_cache=/tmp/c\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), 0);
  assert_string_equal(uri, "zk://127.0.0.1:2181?cache=/tmp/c&wait=0&session_timeout=10000"
                           "&connect_timeout=250");
  assert_int_equal(mprpc_config_warn_unused(cfg), 0); /* all read */
  mprpc_config_free(cfg);

  cfg = load("registry=zk://10.0.0.1:2181/prod?x=1\nzookeeper_wait=yes\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), 0);
  assert_string_equal(uri, "zk://10.0.0.1:2181/prod?x=1&wait=1");
  mprpc_config_free(cfg);

  /* other registries have no such options: the keys are read, not added */
  cfg = load("registry=static://127.0.0.1:8000\nzookeeper_wait=0\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), 0);
  assert_string_equal(uri, "static://127.0.0.1:8000");
  mprpc_config_free(cfg);

  cfg = load("zookeeperip=127.0.0.1\nzookeeper_session_timeout=5ms\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg), "t.conf:2: key 'zookeeper_session_timeout'"));
  mprpc_config_free(cfg);
  cfg = load("zookeeperip=127.0.0.1\nzookeeper_wait=maybe\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), MPRPC_ECONFIG);
  mprpc_config_free(cfg);
}

/* ---- 7. one call per side ---------------------------------------------------- */

static void echo_impl(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                      Example__EchoResponse_Closure done, void *data) {
  (void)svc;
  Example__EchoResponse r = EXAMPLE__ECHO_RESPONSE__INIT;
  r.message = in->message;
  done(&r, data);
}
#define echo_echo echo_impl

static void echo_done(const Example__EchoResponse *r, void *arg) {
  snprintf(arg, 64, "%s", r ? r->message : "(failed)");
}

static void wait_endpoints(mprpc_channel_t *ch) {
  for (int i = 0; i < 1000 && mprpc_channel_endpoint_count(ch) == 0; i++)
    usleep(10000); /* hang guard: 10 s */
  assert_int_not_equal(mprpc_channel_endpoint_count(ch), 0);
}

static void test_app_provider_and_consumer_from_config(void **state) {
  (void)state;
  static Example__EchoService_Service svc = EXAMPLE__ECHO_SERVICE__INIT(echo_);
  char text[600], regfile[300];
  snprintf(regfile, sizeof regfile, "%s/registry", tmpdir);
  snprintf(text, sizeof text,
           "rpcserverip=127.0.0.1\nrpcserverport=0\nregistry=file://%s?poll_ms=20\n"
           "timeout=5s\nidempotent_methods=EchoService.Echo,fixbug.UserServiceRpc.Login\n",
           regfile);
  mprpc_config_t *cfg = load(text);
  mprpc_server_t *s;
  capture_stderr();
  int rc = mprpc_server_from_config(cfg, &s);
  if (rc == 0)
    rc = mprpc_server_add_service(s, &svc.base);
  if (rc == 0)
    rc = mprpc_server_start(s);
  char *err = release_stderr();
  if (rc)
    fprintf(stderr, "%s\n", mprpc_config_error(cfg));
  assert_int_equal(rc, 0);
  unsigned port = mprpc_server_port(s);
  char want[400];
  snprintf(want, sizeof want, "registry: registered example.EchoService at 127.0.0.1:%u in file://%s",
           port, regfile);
  assert_non_null(strstr(err, want));
  assert_non_null(strstr(err, "server: listening on 127.0.0.1:")); /* INFO, by default */
  snprintf(want, sizeof want, "example.EchoService 127.0.0.1:%u", port);
  assert_non_null(strstr(read_file(regfile), want));

  /* two channels: one opening its own registry, one borrowing a shared one */
  mprpc_channel_t *a, *b;
  assert_int_equal(mprpc_channel_from_config(cfg, &example__echo_service__descriptor, &a), 0);
  mprpc_registry_t shared;
  assert_int_equal(mprpc_registry_from_config(cfg, &shared), 0);
  assert_int_equal(
      mprpc_channel_from_config_reg(cfg, &example__echo_service__descriptor, shared, &b), 0);
  mprpc_config_free(cfg); /* neither needs it any more */
  wait_endpoints(a);
  wait_endpoints(b);
  char got[64];
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "via a";
  example__echo_service__echo(mprpc_channel_service(a), &req, echo_done, got);
  assert_string_equal(got, "via a");
  req.message = "via b";
  example__echo_service__echo(mprpc_channel_service(b), &req, echo_done, got);
  assert_string_equal(got, "via b");
  mprpc_channel_destroy(a); /* closes the registry it opened */
  mprpc_channel_destroy(b);
  mprpc_registry_close(shared); /* the borrowed one is ours to close */
  mprpc_server_destroy(s); /* unregisters and closes its registry */
  assert_null(strstr(read_file(regfile), want));
}

/* Governance keys in the process's own file: known, collected per side
 * with their line numbers, applied by a static:// provider and a servers=
 * consumer (no config centre), bad values reported with file and line. */
static void test_app_governance_keys_from_config(void **state) {
  (void)state;
  assert_true(mprpc_config_key_known("rate_limit.Echo"));
  assert_true(mprpc_config_key_known("rate_limit"));
  assert_true(mprpc_config_key_known("max_concurrency.Echo"));
  assert_true(mprpc_config_key_known("weight.10.0.0.1:8000"));
  assert_true(mprpc_config_key_known("disabled.[::1]:8000"));
  assert_true(mprpc_config_key_known("degrade"));
  assert_false(mprpc_config_key_known("rate_limit."));
  assert_false(mprpc_config_key_known("colour.Echo"));
  assert_string_equal(mprpc__key_suggest("rate_limt.Echo"), "rate_limit.METHOD");

  static Example__EchoService_Service svc = EXAMPLE__ECHO_SERVICE__INIT(echo_);
  const char *ptext = "rpcserverip=127.0.0.1\n"
                      "rpcserverport=0\n"
                      "registry=static://127.0.0.1:1\n"
                      "# the provider's governance\n"
                      "rate_limit.Echo=1/1\n"
                      "max_concurrency.Echo=lots\n"
                      "timeout_ms.Echo=50\n";
  mprpc_config_t *cfg = load(ptext);
  capture_stderr();
  assert_int_equal(mprpc_config_warn_unknown(cfg, NULL), 0);
  mprpc_server_opts_t so;
  mprpc_server_opts_init(&so);
  mprpc_hostport_t listen;
  assert_int_equal(mprpc_server_opts_from_config(cfg, &so, &listen), 0);
  assert_string_equal(so.governance, "\n\n\n\nrate_limit.Echo=1/1\nmax_concurrency.Echo=lots\n");
  assert_string_equal(so.governance_name, "t.conf");
  mprpc_server_t *s;
  int rc = mprpc_server_from_config(cfg, &s);
  if (rc == 0)
    rc = mprpc_server_add_service(s, &svc.base);
  if (rc == 0)
    rc = mprpc_server_start(s);
  char *err = release_stderr();
  assert_int_equal(rc, 0);
  assert_non_null(strstr(err, "config t.conf:6: bad value 'lots' for max_concurrency.Echo"));
  assert_null(strstr(err, "unknown key"));
  mprpc_config_free(cfg);

  /* a servers= consumer: degrade.Echo=fail answers at once, nothing sent */
  unsigned port = mprpc_server_port(s);
  char ctext[300];
  snprintf(ctext, sizeof ctext, "servers=127.0.0.1:%u\ndegrade.Echo=fail\nrate_limit.Echo=9\n",
           port);
  cfg = load(ctext);
  mprpc_channel_opts_t co;
  mprpc_channel_opts_init(&co);
  assert_int_equal(mprpc_channel_opts_from_config(cfg, &co), 0);
  assert_string_equal(co.governance, "\ndegrade.Echo=fail\n"); /* not the provider's key */
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_from_config(cfg, &example__echo_service__descriptor, &ch), 0);
  mprpc_config_free(cfg);
  char got[64];
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "x";
  example__echo_service__echo(mprpc_channel_service(ch), &req, echo_done, got);
  assert_string_equal(got, "(failed)");
  mprpc_method_stats_t ms;
  assert_int_equal(mprpc_server_method_stats(s, "example.EchoService", "Echo", &ms), 0);
  assert_int_equal(ms.requests, 0);
  mprpc_channel_destroy(ch);

  /* a plain consumer: the provider's rate limit (1/s, burst 1) refuses */
  snprintf(ctext, sizeof ctext, "servers=127.0.0.1:%u\nmax_retry=0\n", port);
  cfg = load(ctext);
  assert_int_equal(mprpc_channel_from_config(cfg, &example__echo_service__descriptor, &ch), 0);
  mprpc_config_free(cfg);
  int failed = 0;
  for (int i = 0; i < 5; i++) {
    example__echo_service__echo(mprpc_channel_service(ch), &req, echo_done, got);
    failed += strcmp(got, "(failed)") == 0;
  }
  assert_int_equal(mprpc_server_method_stats(s, "example.EchoService", "Echo", &ms), 0);
  assert_true(failed >= 1);
  assert_int_equal(ms.refused_rate_limit, (uint64_t)failed);
  assert_int_equal(ms.refused_max_concurrency, 0);
  mprpc_channel_destroy(ch);
  mprpc_server_destroy(s);
}

static void test_app_from_config_errors_name_the_keys(void **state) {
  (void)state;
  mprpc_server_t *s = (mprpc_server_t *)1;
  mprpc_channel_t *ch = (mprpc_channel_t *)1;
  mprpc_config_t *cfg = load("rpcserverport=0\n");
  assert_int_equal(mprpc_server_from_config(cfg, &s), MPRPC_ECONFIG);
  assert_null(s);
  assert_non_null(strstr(mprpc_config_error(cfg), "rpcserverip is not set"));
  assert_int_equal(mprpc_channel_from_config(cfg, &example__echo_service__descriptor, &ch),
                   MPRPC_ECONFIG);
  assert_null(ch);
  assert_non_null(strstr(mprpc_config_error(cfg), "servers="));
  assert_non_null(strstr(mprpc_config_error(cfg), "zookeeperip"));
  assert_int_equal(mprpc_channel_from_config_reg(cfg, &example__echo_service__descriptor,
                                                 (mprpc_registry_t){0}, &ch),
                   MPRPC_ECONFIG);
  mprpc_config_free(cfg);

  cfg = load("rpcserverip=127.0.0.1\nregistry=bogus://x\n");
  assert_int_equal(mprpc_server_from_config(cfg, &s), MPRPC_EINVAL);
  assert_non_null(strstr(mprpc_config_error(cfg), "bogus://x"));
  assert_non_null(strstr(mprpc_config_error(cfg), "unknown scheme"));
  mprpc_config_free(cfg);

  cfg = load("rpcserverip=127.0.0.1\nmax_body_size=0\n");
  assert_int_equal(mprpc_server_from_config(cfg, &s), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg), "t.conf:2: key 'max_body_size'"));
  mprpc_config_free(cfg);

  /* an unknown method is named with the key's file and line */
  cfg = load("servers=127.0.0.1:1\nidempotent_methods=Echo, EchoService.Ecoh\n");
  assert_int_equal(mprpc_channel_from_config(cfg, &example__echo_service__descriptor, &ch),
                   MPRPC_ENOTFOUND);
  assert_null(ch);
  assert_non_null(strstr(mprpc_config_error(cfg),
                         "t.conf:2: key 'idempotent_methods': idempotent_methods: "
                         "example.EchoService has no method 'EchoService.Ecoh'"));
  mprpc_config_free(cfg);

  /* servers= wins over a registry, which is then not opened */
  cfg = load("servers=127.0.0.1:1\nregistry=zk://127.0.0.1:1?wait=1&connect_timeout=1\n");
  assert_int_equal(mprpc_channel_from_config(cfg, &example__echo_service__descriptor, &ch), 0);
  assert_int_equal(mprpc_channel_endpoint_count(ch), 1);
  mprpc_channel_destroy(ch);
  mprpc_config_free(cfg);

  /* a provider without a registry serves without publishing */
  cfg = load("rpcserverip=127.0.0.1\nrpcserverport=0\nthreads=2\n");
  capture_stderr();
  assert_int_equal(mprpc_server_from_config(cfg, &s), 0);
  char *err = release_stderr();
  assert_non_null(strstr(err, "no registry configured"));
  mprpc_server_destroy(s);
  mprpc_config_free(cfg);
}

/* The seeds' ZooKeeper keys, over the test ZooKeeper when there is one. */
static void test_app_provider_from_config_on_zookeeper(void **state) {
  (void)state;
  const char *zk = getenv("MPRPC_TEST_ZK");
  if (!zk || !strchr(zk, ':')) {
    skip();
    return;
  }
  static Example__EchoService_Service svc = EXAMPLE__ECHO_SERVICE__INIT(echo_);
  char text[300];
  snprintf(text, sizeof text,
           "rpcserverip=127.0.0.1\nrpcserverport=0\nzookeeperip=%.*s\nzookeeperport=%s\n"
           "zookeeper_session_timeout=4s\n",
           (int)(strchr(zk, ':') - zk), zk, strchr(zk, ':') + 1);
  mprpc_config_t *cfg = load(text);
  mprpc_server_t *s;
  capture_stderr();
  assert_int_equal(mprpc_server_from_config(cfg, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &svc.base), 0);
  assert_int_equal(mprpc_server_start(s), 0);
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_from_config(cfg, &example__echo_service__descriptor, &ch), 0);
  wait_endpoints(ch);
  char *err = release_stderr();
  char want[200];
  snprintf(want, sizeof want, "registry: registered example.EchoService at 127.0.0.1:%u in zk://%s",
           (unsigned)mprpc_server_port(s), zk);
  assert_non_null(strstr(err, want));
  char got[64];
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "over zk";
  example__echo_service__echo(mprpc_channel_service(ch), &req, echo_done, got);
  assert_string_equal(got, "over zk");
  mprpc_channel_destroy(ch);
  mprpc_server_destroy(s);
  mprpc_config_free(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_app_default_log_level_is_info), /* first: nothing set it */
      cmocka_unit_test(test_app_edit_distance_and_suggestions),
      cmocka_unit_test(test_app_init_reports_unknown_keys),
      cmocka_unit_test(test_app_key_table_matches_docs),
      cmocka_unit_test(test_app_registry_uri_keys),
      cmocka_unit_test(test_app_provider_and_consumer_from_config),
      cmocka_unit_test(test_app_governance_keys_from_config),
      cmocka_unit_test(test_app_from_config_errors_name_the_keys),
      cmocka_unit_test(test_app_provider_from_config_on_zookeeper),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
