/* static:// and file:// registries, URI parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mprpc/errors.h"
#include "mprpc/registry.h"
#include "mprpc/rt.h"
#include "registry/internal.h"
#include "support/regtest_loop.h"

static pid_t child_pid; /* a forked provider, killed by the teardown */

static void write_file(const char *path, const char *text) {
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.t", path);
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(rename(tmp, path), 0);
}

static char *read_all(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return strdup("");
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return strdup(buf);
}

static void tmp_path(char *out, size_t len, const char *name) {
  const char *dir = getenv("TMPDIR");
  snprintf(out, len, "%s/mprpc-regtest-%ld-%s", dir ? dir : "/tmp", (long)getpid(), name);
  unlink(out);
}

static void cleanup_file(const char *path) {
  char lock[600];
  snprintf(lock, sizeof lock, "%s.lock", path);
  unlink(path);
  unlink(lock);
}

static void expect_uri_error(const char *uri, const char *needle) {
  mprpc_registry_t r;
  char err[512] = "";
  int rc = mprpc_registry_open(uri, &r, err, sizeof err);
  if (rc != MPRPC_EINVAL || !strstr(err, needle))
    fprintf(stderr, "uri '%s': rc=%d err='%s' (wanted '%s')\n", uri, rc, err, needle);
  assert_int_equal(rc, MPRPC_EINVAL);
  assert_non_null(strstr(err, needle));
}

static void test_registry_uri_errors(void **state) {
  (void)state;
  expect_uri_error("", "empty");
  expect_uri_error("127.0.0.1:2181", "missing scheme");
  expect_uri_error("http://x:1", "unknown scheme 'http'");
  expect_uri_error("static://", "empty endpoint list");
  expect_uri_error("static://127.0.0.1", "expected host:port");
  expect_uri_error("static://127.0.0.1:99999", "bad port '99999'");
  expect_uri_error("static://127.0.0.1:80,", "trailing ','");
  expect_uri_error("static://127.0.0.1:80,,h:1", "endpoint 2 is empty");
  expect_uri_error("static://127.0.0.1:80*x", "bad weight");
  expect_uri_error("static://h:1?x=1", "takes no options");
  expect_uri_error("zk://", "no ZooKeeper server");
  expect_uri_error("zk://h:1?session_timeout", "bad option 'session_timeout'");
  expect_uri_error("file://", "no path");
  expect_uri_error("file:///tmp/x?bogus=1", "unknown file:// option 'bogus'");
  expect_uri_error("file:///tmp/x?poll_ms=abc", "poll_ms=abc");
  expect_uri_error("file:///tmp/x?liveness=2", "liveness=2");
}

static void test_registry_zk_uri_from_seed_keys(void **state) {
  (void)state;
  char buf[128];
  assert_int_equal(mprpc_registry_zk_uri("127.0.0.1", "2181", buf, sizeof buf), 0);
  assert_string_equal(buf, "zk://127.0.0.1:2181");
  assert_int_equal(mprpc_registry_zk_uri("::1", "2181", buf, sizeof buf), 0);
  assert_string_equal(buf, "zk://[::1]:2181");
  assert_int_equal(mprpc_registry_zk_uri("127.0.0.1", "0", buf, sizeof buf), MPRPC_EINVAL);
  assert_int_equal(mprpc_registry_zk_uri("127.0.0.1", "21x", buf, sizeof buf), MPRPC_EINVAL);
  assert_int_equal(mprpc_registry_zk_uri("", "2181", buf, sizeof buf), MPRPC_EINVAL);
  assert_int_equal(mprpc_registry_zk_uri("127.0.0.1", "2181", buf, 8), MPRPC_ENAMETOOLONG);
}

typedef struct weights {
  pthread_mutex_t mu;
  uint32_t w[4];
  char service[64];
  size_t n;
} weights_t;

static void weights_cb(void *ud, const mprpc_instance_t *items, size_t n, int health) {
  weights_t *w = ud;
  (void)health;
  pthread_mutex_lock(&w->mu);
  w->n = n;
  for (size_t i = 0; i < n && i < 4; i++)
    w->w[i] = items[i].weight;
  if (n)
    snprintf(w->service, sizeof w->service, "%s", items[0].service);
  pthread_mutex_unlock(&w->mu);
}

static void test_registry_static_delivers_list(void **state) {
  (void)state;
  regtest_loop_t *loop = regtest_loop_new();
  mprpc_registry_t r;
  char err[256];
  assert_int_equal(mprpc_registry_open("static://127.0.0.1:8001*5,127.0.0.1:8000", &r, err,
                                       sizeof err),
                   0);
  assert_int_equal(mprpc_registry_health(r), MPRPC_REG_HEALTHY);
  mprpc_instance_t inst = {.service = "example.EchoService", .host = "127.0.0.1", .port = 9};
  assert_int_equal(mprpc_registry_register(r, &inst), 0); /* accepted no-op */
  regtest_watch_t w;
  regtest_watch_init(&w, loop);
  uint64_t id;
  assert_int_equal(
      mprpc_registry_subscribe(r, "example.EchoService", regtest_loop(loop), regtest_watch_cb, &w,
                               &id),
      0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8000,127.0.0.1:8001", MPRPC_REG_HEALTHY, 5000));
  assert_false(w.wrong_thread);
  weights_t ws = {.mu = PTHREAD_MUTEX_INITIALIZER};
  uint64_t id2;
  assert_int_equal(mprpc_registry_subscribe(r, "x.Y", regtest_loop(loop), weights_cb, &ws, &id2),
                   0);
  regtest_loop_run(loop, free, NULL); /* barrier */
  pthread_mutex_lock(&ws.mu);
  assert_int_equal(ws.n, 2);
  assert_int_equal(ws.w[0], MPRPC_DEFAULT_WEIGHT); /* sorted: 8000 first */
  assert_int_equal(ws.w[1], 5);
  assert_string_equal(ws.service, "x.Y");
  pthread_mutex_unlock(&ws.mu);
  regtest_unsubscribe(loop, r, id);
  regtest_unsubscribe(loop, r, id2);
  mprpc_registry_close(r);
  regtest_loop_free(loop);
  regtest_watch_destroy(&w);
}

static void test_registry_file_parse_error_names_line(void **state) {
  (void)state;
  char path[512], uri[600], err[512];
  tmp_path(path, sizeof path, "bad.txt");
  write_file(path, "# endpoints\n"
                   "example.EchoService 127.0.0.1:8000 weight=10\n"
                   "\n"
                   "example.EchoService 127.0.0.1:80x0\n");
  snprintf(uri, sizeof uri, "file://%s", path);
  mprpc_registry_t r;
  assert_int_equal(mprpc_registry_open(uri, &r, err, sizeof err), MPRPC_EINVAL);
  char want[600];
  snprintf(want, sizeof want, "%s:4:", path);
  assert_non_null(strstr(err, want));
  assert_non_null(strstr(err, "80x0"));

  write_file(path, "example.EchoService 127.0.0.1:8000 colour=blue\n");
  assert_int_equal(mprpc_registry_open(uri, &r, err, sizeof err), MPRPC_EINVAL);
  snprintf(want, sizeof want, "%s:1:", path);
  assert_non_null(strstr(err, want));
  assert_non_null(strstr(err, "unknown key 'colour'"));

  write_file(path, "a.B 127.0.0.1:1\nexample.EchoService\n");
  assert_int_equal(mprpc_registry_open(uri, &r, err, sizeof err), MPRPC_EINVAL);
  snprintf(want, sizeof want, "%s:2:", path);
  assert_non_null(strstr(err, want));

  write_file(path, "a.B 127.0.0.1:1 weight=0\n");
  assert_int_equal(mprpc_registry_open(uri, &r, err, sizeof err), MPRPC_EINVAL);
  assert_non_null(strstr(err, "bad weight"));
  cleanup_file(path);
}

static void test_registry_file_notices_edits(void **state) {
  (void)state;
  char path[512], uri[600], err[512];
  tmp_path(path, sizeof path, "edits.txt");
  write_file(path, "example.EchoService 127.0.0.1:8000\nother.S 127.0.0.1:7000\n");
  snprintf(uri, sizeof uri, "file://%s?poll_ms=50", path);
  mprpc_registry_t r;
  assert_int_equal(mprpc_registry_open(uri, &r, err, sizeof err), 0);
  regtest_loop_t *loop = regtest_loop_new();
  regtest_watch_t w;
  regtest_watch_init(&w, loop);
  uint64_t id;
  assert_int_equal(mprpc_registry_subscribe(r, "example.EchoService", regtest_loop(loop),
                                            regtest_watch_cb, &w, &id),
                   0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8000", MPRPC_REG_HEALTHY, 5000));

  write_file(path, "example.EchoService 127.0.0.1:8000\n"
                   "example.EchoService 127.0.0.1:8001 weight=3 version=2\n");
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8000,127.0.0.1:8001", MPRPC_REG_HEALTHY, 5000));

  /* A broken edit is ignored (logged with file:line); the last good list stays. */
  write_file(path, "example.EchoService 127.0.0.1:8000\nexample.EchoService nonsense\n");
  usleep(300 * 1000);
  write_file(path, "example.EchoService 127.0.0.1:8002\n");
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8002", MPRPC_REG_HEALTHY, 5000));

  /* Removing the file empties the list. */
  unlink(path);
  assert_true(regtest_watch_wait(&w, "", MPRPC_REG_HEALTHY, 5000));
  assert_false(w.wrong_thread);
  regtest_unsubscribe(loop, r, id);
  mprpc_registry_close(r);
  regtest_loop_free(loop);
  regtest_watch_destroy(&w);
  cleanup_file(path);
}

static void test_registry_file_register_unregister(void **state) {
  (void)state;
  char path[512], uri[600], err[512];
  tmp_path(path, sizeof path, "reg.txt");
  write_file(path, "# shared endpoint file\nother.S 127.0.0.1:7000\n");
  snprintf(uri, sizeof uri, "file://%s?poll_ms=50", path);
  mprpc_registry_t prov, cons;
  assert_int_equal(mprpc_registry_open(uri, &prov, err, sizeof err), 0);
  assert_int_equal(mprpc_registry_open(uri, &cons, err, sizeof err), 0);
  regtest_loop_t *loop = regtest_loop_new();
  regtest_watch_t w;
  regtest_watch_init(&w, loop);
  uint64_t id;
  assert_int_equal(mprpc_registry_subscribe(cons, "example.EchoService", regtest_loop(loop),
                                            regtest_watch_cb, &w, &id),
                   0);
  assert_true(regtest_watch_wait(&w, "", MPRPC_REG_HEALTHY, 5000));
  mprpc_instance_t a = {.service = "example.EchoService", .host = "127.0.0.1", .port = 8000,
                        .weight = 7, .methods = "Echo", .version = "1.0",
                        .start_time_ms = 1234};
  mprpc_instance_t b = a;
  b.port = 8001;
  assert_int_equal(mprpc_registry_register(prov, &a), 0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8000", MPRPC_REG_HEALTHY, 5000));
  assert_int_equal(mprpc_registry_register(prov, &b), 0);
  assert_int_equal(mprpc_registry_register(prov, &b), 0); /* again: replaced, not duplicated */
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8000,127.0.0.1:8001", MPRPC_REG_HEALTHY, 5000));
  char *text = read_all(path);
  assert_non_null(strstr(text, "# shared endpoint file\n"));
  assert_non_null(strstr(text, "other.S 127.0.0.1:7000\n"));
  assert_non_null(strstr(text, "example.EchoService 127.0.0.1:8000 weight=7 methods=Echo "
                               "version=1.0 start_time_ms=1234 pid="));
  char *first = strstr(text, "127.0.0.1:8001");
  assert_non_null(first);
  assert_null(strstr(first + 1, "127.0.0.1:8001")); /* once */
  free(text);
  assert_int_equal(mprpc_registry_unregister(prov, "example.EchoService", "127.0.0.1", 8000), 0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8001", MPRPC_REG_HEALTHY, 5000));
  /* close removes what is left of this registry's lines, nothing else */
  mprpc_registry_close(prov);
  assert_true(regtest_watch_wait(&w, "", MPRPC_REG_HEALTHY, 5000));
  text = read_all(path);
  assert_non_null(strstr(text, "other.S 127.0.0.1:7000\n"));
  free(text);
  mprpc_instance_t bad = {.service = "x y", .host = "127.0.0.1", .port = 1};
  assert_int_equal(mprpc_registry_register(cons, &bad), MPRPC_EINVAL);
  regtest_unsubscribe(loop, cons, id);
  mprpc_registry_close(cons);
  regtest_loop_free(loop);
  regtest_watch_destroy(&w);
  cleanup_file(path);
}

typedef struct reg_thread {
  mprpc_registry_t r;
  uint16_t base;
  int n;
  int rc;
} reg_thread_t;

static void *reg_many(void *arg) {
  reg_thread_t *t = arg;
  for (int i = 0; i < t->n; i++) {
    mprpc_instance_t inst = {.service = "example.EchoService", .host = "127.0.0.1",
                             .port = (uint16_t)(t->base + i)};
    int rc = mprpc_registry_register(t->r, &inst);
    if (rc)
      t->rc = rc;
  }
  return NULL;
}

static void test_registry_file_concurrent_register_keeps_both(void **state) {
  (void)state;
  char path[512], uri[600], err[512];
  tmp_path(path, sizeof path, "conc.txt");
  snprintf(uri, sizeof uri, "file://%s", path);
  /* A second process writes at the same time. It is forked before this
   * process starts any thread, so it inherits no lock held by one. */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    mprpc_registry_t r;
    if (mprpc_registry_open(uri, &r, err, sizeof err))
      _exit(2);
    reg_thread_t c = {.r = r, .base = 30000, .n = 25};
    reg_many(&c);
    _exit(c.rc ? 1 : 0); /* no close: its lines stay while it lives */
  }
  child_pid = pid;
  reg_thread_t t[2] = {{.base = 10000, .n = 25}, {.base = 20000, .n = 25}};
  assert_int_equal(mprpc_registry_open(uri, &t[0].r, err, sizeof err), 0);
  assert_int_equal(mprpc_registry_open(uri, &t[1].r, err, sizeof err), 0);
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, reg_many, &t[i]), 0);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  child_pid = 0;
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(t[0].rc, 0);
  assert_int_equal(t[1].rc, 0);
  char *text = read_all(path);
  int lines = 0;
  for (char *p = text; *p; p++)
    lines += *p == '\n';
  assert_int_equal(lines, 75);
  for (int base = 10000; base <= 30000; base += 10000)
    for (int i = 0; i < 25; i++) {
      char needle[64];
      snprintf(needle, sizeof needle, "127.0.0.1:%d ", base + i);
      assert_non_null(strstr(text, needle));
    }
  free(text);
  mprpc_registry_close(t[0].r);
  mprpc_registry_close(t[1].r);
  text = read_all(path);
  lines = 0;
  for (char *p = text; *p; p++)
    lines += *p == '\n';
  /* the child exited without close: its lines (pid=child) were pruned by the
   * next edit, because that process no longer exists on this host */
  assert_int_equal(lines, 0);
  free(text);
  cleanup_file(path);
}

static void test_registry_file_dead_provider_dropped(void **state) {
  (void)state;
  char path[512], uri[600], err[512];
  tmp_path(path, sizeof path, "dead.txt");
  snprintf(uri, sizeof uri, "file://%s?poll_ms=50", path);
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  child_pid = pid;
  if (pid == 0) {
    close(pfd[0]);
    mprpc_registry_t r;
    if (mprpc_registry_open(uri, &r, err, sizeof err))
      _exit(2);
    mprpc_instance_t inst = {.service = "a.S", .host = "127.0.0.1", .port = 5001};
    if (mprpc_registry_register(r, &inst) || write(pfd[1], "x", 1) != 1)
      _exit(3);
    for (int i = 0; i < 600; i++)
      sleep(1); /* until SIGKILL */
    _exit(4);
  }
  close(pfd[1]);
  char x;
  assert_int_equal(read(pfd[0], &x, 1), 1);
  close(pfd[0]);
  mprpc_registry_t cons, keep;
  assert_int_equal(mprpc_registry_open(uri, &cons, err, sizeof err), 0);
  char uri2[700];
  snprintf(uri2, sizeof uri2, "%s&liveness=0", uri);
  assert_int_equal(mprpc_registry_open(uri2, &keep, err, sizeof err), 0);
  regtest_loop_t *loop = regtest_loop_new();
  regtest_watch_t w, wk;
  regtest_watch_init(&w, loop);
  regtest_watch_init(&wk, loop);
  uint64_t id, idk;
  assert_int_equal(
      mprpc_registry_subscribe(cons, "a.S", regtest_loop(loop), regtest_watch_cb, &w, &id), 0);
  assert_int_equal(
      mprpc_registry_subscribe(keep, "a.S", regtest_loop(loop), regtest_watch_cb, &wk, &idk), 0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:5001", MPRPC_REG_HEALTHY, 5000));
  assert_true(regtest_watch_wait(&wk, "127.0.0.1:5001", MPRPC_REG_HEALTHY, 5000));
  char *text = read_all(path);
  char want[64];
  snprintf(want, sizeof want, " pid=%ld hostname=", (long)pid);
  assert_non_null(strstr(text, want));
  free(text);
  assert_int_equal(kill(pid, SIGKILL), 0);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  child_pid = 0;
  /* the consumer stops seeing the dead process's line without any edit */
  assert_true(regtest_watch_wait(&w, "", MPRPC_REG_HEALTHY, 5000));
  /* with liveness=0 the line is trusted until someone removes it */
  usleep(200 * 1000);
  assert_true(regtest_watch_wait(&wk, "127.0.0.1:5001", MPRPC_REG_HEALTHY, 100));
  regtest_unsubscribe(loop, cons, id);
  regtest_unsubscribe(loop, keep, idk);
  mprpc_registry_close(cons);
  mprpc_registry_close(keep);
  regtest_loop_free(loop);
  regtest_watch_destroy(&w);
  regtest_watch_destroy(&wk);
  cleanup_file(path);
}

static void test_registry_unsubscribe_stops_callbacks(void **state) {
  (void)state;
  char path[512], uri[600], err[512];
  tmp_path(path, sizeof path, "unsub.txt");
  write_file(path, "a.S 127.0.0.1:1\n");
  snprintf(uri, sizeof uri, "file://%s?poll_ms=20", path);
  mprpc_registry_t r;
  assert_int_equal(mprpc_registry_open(uri, &r, err, sizeof err), 0);
  regtest_loop_t *loop = regtest_loop_new();
  regtest_watch_t w;
  regtest_watch_init(&w, loop);
  uint64_t id;
  assert_int_equal(
      mprpc_registry_subscribe(r, "a.S", regtest_loop(loop), regtest_watch_cb, &w, &id), 0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:1", MPRPC_REG_HEALTHY, 5000));
  regtest_unsubscribe(loop, r, id);
  int before = w.deliveries;
  write_file(path, "a.S 127.0.0.1:2\n");
  usleep(200 * 1000);
  regtest_loop_run(loop, free, NULL);
  assert_int_equal(w.deliveries, before);
  mprpc_registry_close(r);
  regtest_loop_free(loop);
  regtest_watch_destroy(&w);
  cleanup_file(path);
}

static void test_registry_zk_node_data_round_trip(void **state) {
  (void)state;
  mprpc_instance_t inst = {.service = "a.S", .host = "10.0.0.1", .port = 8000, .weight = 7,
                           .methods = "Echo,Ping", .version = "2.1", .start_time_ms = 99};
  char *d = mprpc__zk_data_format(&inst);
  assert_non_null(d);
  assert_true(strncmp(d, "address=10.0.0.1:8000\nweight=7\nmethods=Echo,Ping\nversion=2.1\n"
                         "start_time_ms=99\npid=",
                      strlen("address=10.0.0.1:8000\nweight=7\nmethods=Echo,Ping\nversion=2.1\n"
                             "start_time_ms=99\npid=")) == 0);
  mprpc__reg_list_t l = {0};
  assert_int_equal(mprpc__zk_data_parse("a.S", "10.0.0.1:8000", d, &l), 0);
  assert_int_equal(l.n, 1);
  assert_string_equal(l.items[0].host, "10.0.0.1");
  assert_int_equal(l.items[0].port, 8000);
  assert_int_equal(l.items[0].weight, 7);
  assert_string_equal(l.items[0].methods, "Echo,Ping");
  assert_string_equal(l.items[0].version, "2.1");
  assert_int_equal(l.items[0].start_time_ms, 99);
  free(d);
  /* the seeds wrote a bare host:port; unknown keys are ignored; bad weight -> default */
  char seed[] = "127.0.0.1:9000";
  assert_int_equal(mprpc__zk_data_parse("a.S", "whatever", seed, &l), 0);
  char newer[] = "zone=eu\r\nweight=abc\r\n";
  assert_int_equal(mprpc__zk_data_parse("a.S", "[::1]:9001", newer, &l), 0);
  char none[] = "weight=5\n";
  assert_int_equal(mprpc__zk_data_parse("a.S", "no-address", none, &l), 0); /* skipped */
  assert_int_equal(l.n, 3);
  assert_string_equal(l.items[1].host, "127.0.0.1");
  assert_int_equal(l.items[1].port, 9000);
  assert_string_equal(l.items[2].host, "::1");
  assert_int_equal(l.items[2].weight, MPRPC_DEFAULT_WEIGHT);
  mprpc__reg_list_clear(&l);
}

static void test_registry_line_format_round_trip(void **state) {
  (void)state;
  mprpc_instance_t inst = {.service = "a.S", .host = "::1", .port = 80, .weight = 3,
                           .version = "v1"};
  char line[256];
  int n = mprpc__reg_format_line(&inst, line, sizeof line);
  assert_string_equal(line, "a.S [::1]:80 weight=3 version=v1\n");
  assert_int_equal(n, (int)strlen(line));
  mprpc__reg_list_t l = {0};
  char err[200];
  assert_int_equal(mprpc__reg_parse_text("# c\r\n\n  a.S [::1]:80 weight=3 version=v1 # tail\r\n",
                                         "x", &l, err, sizeof err),
                   0);
  assert_int_equal(l.n, 1);
  assert_string_equal(l.items[0].host, "::1");
  assert_string_equal(l.items[0].version, "v1");
  mprpc__reg_list_clear(&l);
  assert_int_equal(mprpc__reg_parse_text("a.S ::1:80\n", "f", &l, err, sizeof err), MPRPC_EINVAL);
  assert_non_null(strstr(err, "f:1: "));
  assert_non_null(strstr(err, "brackets"));
  /* a line too small for the buffer reports the size it needs */
  assert_int_equal(mprpc__reg_format_line(&inst, line, 8), n);
}


static void write_node(const char *dir, const char *name, const char *text) {
  char path[700];
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/%s", dir, name);
  write_file(path, text);
}

static void remove_node(const char *dir, const char *name) {
  char path[700];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  unlink(path);
}

/* file://: config node NAME is the file PATH.config/NAME. */
static void test_registry_file_config_watch(void **state) {
  (void)state;
  char path[512], dir[600], uri[1400], err[512];
  tmp_path(path, sizeof path, "cfg.txt");
  snprintf(dir, sizeof dir, "%s.config", path);
  write_file(path, "");
  write_node(dir, "_global", "timeout_ms=800\n");
  snprintf(uri, sizeof uri, "file://%s?poll_ms=20", path);
  mprpc_registry_t r;
  assert_int_equal(mprpc_registry_open(uri, &r, err, sizeof err), 0);
  regtest_loop_t *loop = regtest_loop_new();
  regtest_cfg_t g, s;
  regtest_cfg_init(&g, loop);
  regtest_cfg_init(&s, loop);
  uint64_t gid, sid, bad;
  assert_int_equal(mprpc_registry_watch_config(r, "a/b", regtest_loop(loop), regtest_cfg_cb, &g,
                                               &bad),
                   MPRPC_EINVAL);
  assert_int_equal(mprpc_registry_watch_config(r, "", regtest_loop(loop), regtest_cfg_cb, &g,
                                               &bad),
                   MPRPC_EINVAL);
  assert_int_equal(mprpc_registry_watch_config(r, "_global", regtest_loop(loop), regtest_cfg_cb,
                                               &g, &gid),
                   0);
  assert_int_equal(mprpc_registry_watch_config(r, "example.EchoService", regtest_loop(loop),
                                               regtest_cfg_cb, &s, &sid),
                   0);
  /* present at the start: delivered once; absent: nothing */
  assert_true(regtest_cfg_wait(&g, "timeout_ms=800\n", 5000));
  assert_string_equal(g.name, "_global");
  regtest_loop_run(loop, free, NULL);
  assert_int_equal(s.deliveries, 0);
  /* created, changed, deleted, created again */
  write_node(dir, "example.EchoService", "max_retry=1\n");
  assert_true(regtest_cfg_wait(&s, "max_retry=1\n", 5000));
  write_node(dir, "example.EchoService", "max_retry=2\ndegrade=fail\n");
  assert_true(regtest_cfg_wait(&s, "max_retry=2\ndegrade=fail\n", 5000));
  remove_node(dir, "example.EchoService");
  assert_true(regtest_cfg_wait(&s, NULL, 5000));
  write_node(dir, "example.EchoService", "");
  assert_true(regtest_cfg_wait(&s, "", 5000));
  /* a second watcher of a known node gets its text at once */
  regtest_cfg_t g2;
  regtest_cfg_init(&g2, loop);
  uint64_t gid2;
  assert_int_equal(mprpc_registry_watch_config(r, "_global", regtest_loop(loop), regtest_cfg_cb,
                                               &g2, &gid2),
                   0);
  assert_true(regtest_cfg_wait(&g2, "timeout_ms=800\n", 5000));
  int before = g.deliveries;
  assert_int_equal(before, 1);
  /* unwatched: no more callbacks */
  regtest_unwatch_config(loop, r, gid);
  write_node(dir, "_global", "timeout_ms=900\n");
  assert_true(regtest_cfg_wait(&g2, "timeout_ms=900\n", 5000));
  regtest_loop_run(loop, free, NULL);
  assert_int_equal(g.deliveries, before);
  assert_false(g.wrong_thread || s.wrong_thread || g2.wrong_thread);
  regtest_unwatch_config(loop, r, sid);
  regtest_unwatch_config(loop, r, gid2);
  mprpc_registry_close(r);

  /* ?config_dir=DIR */
  char dir2[600];
  snprintf(dir2, sizeof dir2, "%s.other", path);
  write_node(dir2, "_global", "log_level=warn\n");
  snprintf(uri, sizeof uri, "file://%s?poll_ms=20&config_dir=%s", path, dir2);
  assert_int_equal(mprpc_registry_open(uri, &r, err, sizeof err), 0);
  regtest_cfg_t g3;
  regtest_cfg_init(&g3, loop);
  assert_int_equal(mprpc_registry_watch_config(r, "_global", regtest_loop(loop), regtest_cfg_cb,
                                               &g3, &gid),
                   0);
  assert_true(regtest_cfg_wait(&g3, "log_level=warn\n", 5000));
  regtest_unwatch_config(loop, r, gid);
  mprpc_registry_close(r);
  regtest_loop_free(loop);
  regtest_cfg_destroy(&g);
  regtest_cfg_destroy(&g2);
  regtest_cfg_destroy(&g3);
  regtest_cfg_destroy(&s);
  remove_node(dir, "_global");
  remove_node(dir, "example.EchoService");
  remove_node(dir2, "_global");
  rmdir(dir);
  rmdir(dir2);
  cleanup_file(path);
}

static void test_registry_static_has_no_config(void **state) {
  (void)state;
  mprpc_registry_t r;
  char err[256];
  assert_int_equal(mprpc_registry_open("static://127.0.0.1:1", &r, err, sizeof err), 0);
  regtest_loop_t *loop = regtest_loop_new();
  uint64_t id;
  assert_int_equal(mprpc_registry_watch_config(r, "_global", regtest_loop(loop), regtest_cfg_cb,
                                               NULL, &id),
                   MPRPC_EUNSUPPORTED);
  mprpc_registry_unwatch_config(r, 1); /* a no-op */
  mprpc_registry_close(r);
  regtest_loop_free(loop);
}

static void test_registry_group_round_trips(void **state) {
  (void)state;
  mprpc_instance_t inst = {.service = "a.S", .host = "10.0.0.1", .port = 80, .weight = 3,
                           .group = "canary"};
  char line[256], err[200];
  mprpc__reg_format_line(&inst, line, sizeof line);
  assert_string_equal(line, "a.S 10.0.0.1:80 weight=3 group=canary\n");
  mprpc__reg_list_t l = {0};
  assert_int_equal(mprpc__reg_parse_text(line, "x", &l, err, sizeof err), 0);
  assert_string_equal(l.items[0].group, "canary");
  mprpc__reg_list_t bad = {0};
  assert_int_equal(mprpc__reg_parse_text("a.S 10.0.0.1:80 group=a+b\n", "x", &bad, err,
                                         sizeof err),
                   MPRPC_EINVAL);
  assert_non_null(strstr(err, "bad group"));
  /* ZooKeeper node data: written explicitly, "default" when none */
  char *d = mprpc__zk_data_format(&inst);
  assert_non_null(strstr(d, "\ngroup=canary\n"));
  assert_int_equal(mprpc__zk_data_parse("a.S", "10.0.0.1:80", d, &l), 0);
  assert_string_equal(l.items[1].group, "canary");
  free(d);
  inst.group = NULL;
  d = mprpc__zk_data_format(&inst);
  assert_non_null(strstr(d, "\ngroup=default\n"));
  free(d);
  /* an older node without group=: the default group */
  char old[] = "address=10.0.0.1:81\nweight=5\n";
  assert_int_equal(mprpc__zk_data_parse("a.S", "10.0.0.1:81", old, &l), 0);
  assert_null(l.items[2].group);
  /* list equality treats absent and "default" alike */
  mprpc__reg_list_t a = {0}, b = {0};
  mprpc_instance_t x = {.service = "a.S", .host = "h", .port = 1};
  mprpc__reg_list_add(&a, &x);
  x.group = "default";
  mprpc__reg_list_add(&b, &x);
  assert_true(mprpc__reg_list_equal(&a, &b));
  x.group = "blue";
  mprpc__reg_list_clear(&b);
  mprpc__reg_list_add(&b, &x);
  assert_false(mprpc__reg_list_equal(&a, &b));
  char e[200];
  assert_int_equal(mprpc__reg_instance_check(&x, e, sizeof e), 0);
  x.group = "no spaces";
  assert_int_equal(mprpc__reg_instance_check(&x, e, sizeof e), MPRPC_EINVAL);
  mprpc__reg_list_clear(&a);
  mprpc__reg_list_clear(&b);
  mprpc__reg_list_clear(&l);
}

/* Teardown: a failed assertion must not leave the forked provider running. */
static int kill_child(void **state) {
  (void)state;
  if (child_pid > 0) {
    kill(child_pid, SIGKILL);
    waitpid(child_pid, NULL, 0);
    child_pid = 0;
  }
  return 0;
}

/* With the production libev loop: deliveries run on that loop's thread. */
typedef struct rt_watch {
  mprpc_loop_t loop;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t n;
  int calls;
  bool in_loop;
  mprpc_registry_t reg;
  uint64_t id;
  bool unsubscribed;
} rt_watch_t;

static void rt_cb(void *ud, const mprpc_instance_t *items, size_t n, int health) {
  (void)items, (void)health;
  rt_watch_t *w = ud;
  pthread_mutex_lock(&w->mu);
  w->n = n;
  w->calls++;
  w->in_loop = mprpc_loop_in_loop(w->loop);
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static void rt_unsub(void *arg) {
  rt_watch_t *w = arg;
  mprpc_registry_unsubscribe(w->reg, w->id);
  pthread_mutex_lock(&w->mu);
  w->unsubscribed = true;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static bool rt_wait(rt_watch_t *w, bool (*pred)(rt_watch_t *)) {
  long long deadline = regtest_now_ms() + 5000;
  pthread_mutex_lock(&w->mu);
  while (!pred(w) && regtest_now_ms() < deadline) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000;
    ts.tv_sec += ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
  }
  bool ok = pred(w);
  pthread_mutex_unlock(&w->mu);
  return ok;
}
static bool got_two(rt_watch_t *w) { return w->calls > 0 && w->n == 2; }
static bool got_unsub(rt_watch_t *w) { return w->unsubscribed; }

static void test_registry_delivers_on_rt_loop(void **state) {
  (void)state;
  mprpc_loop_group_t *g;
  assert_int_equal(mprpc_loop_group_new(1, &g), 0);
  assert_int_equal(mprpc_loop_group_start(g), 0);
  rt_watch_t w = {.loop = mprpc_loop_group_loop(g, 0)};
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  char err[256];
  assert_int_equal(mprpc_registry_open("static://127.0.0.1:1,127.0.0.1:2", &w.reg, err, sizeof err),
                   0);
  assert_int_equal(mprpc_registry_subscribe(w.reg, "a.S", w.loop, rt_cb, &w, &w.id), 0);
  assert_true(rt_wait(&w, got_two));
  assert_true(w.in_loop);
  assert_int_equal(mprpc_loop_post(w.loop, rt_unsub, &w), 0);
  assert_true(rt_wait(&w, got_unsub));
  mprpc_registry_close(w.reg);
  mprpc_loop_group_free(g);
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry_uri_errors),
      cmocka_unit_test(test_registry_zk_uri_from_seed_keys),
      cmocka_unit_test(test_registry_static_delivers_list),
      cmocka_unit_test(test_registry_file_parse_error_names_line),
      cmocka_unit_test(test_registry_file_notices_edits),
      cmocka_unit_test(test_registry_file_register_unregister),
      cmocka_unit_test_teardown(test_registry_file_concurrent_register_keeps_both, kill_child),
      cmocka_unit_test_teardown(test_registry_file_dead_provider_dropped, kill_child),
      cmocka_unit_test(test_registry_unsubscribe_stops_callbacks),
      cmocka_unit_test(test_registry_delivers_on_rt_loop),
      cmocka_unit_test(test_registry_zk_node_data_round_trip),
      cmocka_unit_test(test_registry_line_format_round_trip),
      cmocka_unit_test(test_registry_file_config_watch),
      cmocka_unit_test(test_registry_static_has_no_config),
      cmocka_unit_test(test_registry_group_round_trips),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
