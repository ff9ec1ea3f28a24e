/* ZooKeeper registry against a real server (MPRPC_TEST_ZK=127.0.0.1:port,
 * exported by `make test`); tests that need their own server or ensemble
 * start it with ci/zk.sh in a temp dir and stop only that one. Every wait
 * below is a hang guard, not a timing assertion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/errors.h"
#include "mprpc/registry.h"
#include "mprpc/server.h"
#include "registry/zk_internal.h"
#include "support/regtest_loop.h"

static pid_t child_pid; /* a forked provider, killed by the teardown */

#define SVC "example.EchoService"

static int chroot_seq;

static const char *test_zk(void) {
  const char *zk = getenv("MPRPC_TEST_ZK");
  return zk && *zk ? zk : NULL;
}

#define NEED_ZK(hosts)                                                                             \
  const char *hosts = test_zk();                                                                   \
  if (!hosts) {                                                                                    \
    fprintf(stderr, "MPRPC_TEST_ZK is not set: skipping\n");                                      \
    skip();                                                                                        \
  }

static void new_chroot(char *out, size_t len) {
  snprintf(out, len, "/mprpc-test-%ld-%d", (long)getpid(), ++chroot_seq);
}

static mprpc_registry_t open_zk(const char *hosts, const char *chroot, const char *opts) {
  char uri[1024], err[512];
  snprintf(uri, sizeof uri, "zk://%s%s?%s", hosts, chroot, opts ? opts : "session_timeout=4000");
  mprpc_registry_t r = {0};
  int rc = mprpc_registry_open(uri, &r, err, sizeof err);
  if (rc)
    fprintf(stderr, "open %s: %s\n", uri, err);
  assert_int_equal(rc, 0);
  return r;
}

static void reg(mprpc_registry_t r, uint16_t port) {
  mprpc_instance_t inst = {.service = SVC, .host = "127.0.0.1", .port = port, .weight = 10,
                           .methods = "Echo", .version = "1.2", .start_time_ms = 42};
  assert_int_equal(mprpc_registry_register(r, &inst), 0);
}

/* --- a raw ZooKeeper client to look at the tree ------------------------- */

static void raw_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
  (void)zh, (void)path;
  if (type == ZOO_SESSION_EVENT && state == ZOO_CONNECTED_STATE)
    atomic_store((atomic_int *)ctx, 1);
}

static atomic_int raw_connected;

static zhandle_t *raw_connect(const char *hosts, const clientid_t *cid) {
  atomic_store(&raw_connected, 0);
  zhandle_t *zh = zookeeper_init(hosts, raw_watcher, 6000, cid, &raw_connected, 0);
  assert_non_null(zh);
  long long deadline = regtest_now_ms() + 20000;
  while (!atomic_load(&raw_connected) && regtest_now_ms() < deadline)
    usleep(20 * 1000);
  assert_true(atomic_load(&raw_connected));
  return zh;
}

/* Ends r's ZooKeeper session from outside: a second handle takes the
 * session over and closes it, so the server expires it. On a loaded machine
 * r's own reconnect can win the session back before the thief's close
 * reaches the server (the close then ends nothing), so the takeover is tried
 * again, up to three times. Returns r's new session id (old one in *old),
 * or the old one if every attempt failed; *t0 is when the last close was
 * sent. */
static int64_t expire_session(const char *hosts, mprpc_registry_t r, int64_t *old,
                              long long *t0) {
  clientid_t cid;
  assert_int_equal(mprpc__zk_session(r, old, cid.passwd), 0);
  cid.client_id = *old;
  int64_t now_sid = *old;
  for (int attempt = 0; attempt < 3 && now_sid == *old; attempt++) {
    zhandle_t *thief = raw_connect(hosts, &cid);
    zookeeper_close(thief);
    *t0 = regtest_now_ms();
    /* hang guard well above a 2000 ms session timeout + reconnect */
    long long deadline = *t0 + 8000;
    char pw[16];
    while ((mprpc__zk_session(r, &now_sid, pw) != 0 || now_sid == *old) &&
           regtest_now_ms() < deadline)
      usleep(20 * 1000);
    if (mprpc__zk_session(r, &now_sid, pw) != 0)
      now_sid = *old;
    if (now_sid == *old)
      fprintf(stderr, "session takeover %d lost to the reconnect: again\n", attempt + 1);
  }
  return now_sid;
}

static void node_path(char *out, size_t len, const char *chroot, uint16_t port) {
  snprintf(out, len, "%s/mprpc/services/" SVC "/providers/127.0.0.1:%u", chroot, (unsigned)port);
}

/* Waits until the node exists (want_owner != 0: owned by that session;
 * want_owner == -1: any owner) or is absent (want_owner == 0). */
static bool wait_node(zhandle_t *zh, const char *path, int64_t want_owner, int timeout_ms,
                      int64_t *owner) {
  long long deadline = regtest_now_ms() + timeout_ms;
  for (;;) {
    struct Stat st;
    int rc = zoo_exists(zh, path, 0, &st);
    if (want_owner == 0 && rc == ZNONODE)
      return true;
    if (want_owner != 0 && rc == ZOK && (want_owner == -1 || st.ephemeralOwner == want_owner)) {
      if (owner)
        *owner = st.ephemeralOwner;
      return true;
    }
    if (regtest_now_ms() > deadline) {
      fprintf(stderr, "wait_node %s: rc=%s owner=0x%llx\n", path, zerror(rc),
              rc == ZOK ? (unsigned long long)st.ephemeralOwner : 0ull);
      return false;
    }
    usleep(50 * 1000);
  }
}

/* --- ci/zk.sh ----------------------------------------------------------- */

static bool have_zk_sh(void) { return access("ci/zk.sh", R_OK) == 0; }

/* Runs ci/zk.sh CMD DIR [ARG]; returns its first output line in out. */
static int zk_sh(const char *cmd, const char *dir, const char *arg, char *out, size_t outlen) {
  char line[1024];
  snprintf(line, sizeof line, "bash ci/zk.sh %s %s %s", cmd, dir, arg ? arg : "");
  FILE *p = popen(line, "r");
  if (!p)
    return -1;
  char buf[1024] = "";
  if (!fgets(buf, sizeof buf, p))
    buf[0] = '\0';
  int st = pclose(p);
  buf[strcspn(buf, "\n")] = '\0';
  if (out)
    snprintf(out, outlen, "%s", buf);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void tmpdir(char *out, size_t len, const char *tag) {
  snprintf(out, len, "/tmp/mprpc-zktest-%ld-%s", (long)getpid(), tag);
}

/* A server of this test binary's own (shared by the tests that stop and
 * restart ZooKeeper): started on first use, resumed if a failed test left it
 * paused, stopped by the group teardown. */
static void own_server(char *hosts, size_t len) {
  char dir[256], path[300];
  tmpdir(dir, sizeof dir, "own");
  snprintf(path, sizeof path, "%s/connect", dir);
  if (access(path, F_OK) != 0) {
    zk_sh("stop", dir, NULL, NULL, 0);
    assert_int_equal(zk_sh("start", dir, NULL, hosts, len), 0);
    return;
  }
  snprintf(path, sizeof path, "%s/pid", dir);
  if (access(path, F_OK) != 0)
    assert_int_equal(zk_sh("resume", dir, NULL, hosts, len), 0);
  else
    assert_int_equal(zk_sh("address", dir, NULL, hosts, len), 0);
}

static int stop_own_server(void **state) {
  (void)state;
  char dir[256];
  tmpdir(dir, sizeof dir, "own");
  if (access(dir, F_OK) == 0)
    zk_sh("stop", dir, NULL, NULL, 0);
  return 0;
}

/* Teardown: a failed assertion skips the rest of a test, so the servers a
 * test started are stopped here too (zk.sh stop kills only their PIDs). */
static int stop_ensemble(void **state) {
  (void)state;
  char dir[256];
  tmpdir(dir, sizeof dir, "ensemble");
  if (access(dir, F_OK) == 0)
    zk_sh("stop", dir, NULL, NULL, 0);
  return 0;
}

/* --- tests -------------------------------------------------------------- */

static void test_zk_unreachable_gives_clear_error(void **state) {
  (void)state;
  mprpc_registry_t r;
  char err[512] = "";
  int rc = mprpc_registry_open("zk://127.0.0.1:1?connect_timeout=300", &r, err, sizeof err);
  assert_int_equal(rc, MPRPC_EREGISTRY);
  assert_non_null(strstr(err, "no ZooKeeper session within 300 ms from 127.0.0.1:1"));
  /* wait=0: a provider can start anyway */
  assert_int_equal(mprpc_registry_open("zk://127.0.0.1:1?wait=0", &r, err, sizeof err), 0);
  assert_int_equal(mprpc_registry_health(r), MPRPC_REG_CONNECTING);
  reg(r, 7000);
  mprpc_registry_close(r);
  rc = mprpc_registry_open("zk://127.0.0.1:1?colour=blue", &r, err, sizeof err);
  assert_int_equal(rc, MPRPC_EINVAL);
  assert_non_null(strstr(err, "unknown zk:// option 'colour'"));
  rc = mprpc_registry_open("zk://127.0.0.1:1,127.0.0.1?wait=0", &r, err, sizeof err);
  assert_int_equal(rc, MPRPC_EINVAL);
  assert_non_null(strstr(err, "ZooKeeper server 2"));
  rc = mprpc_registry_open("zk://127.0.0.1:1?session_timeout=10", &r, err, sizeof err);
  assert_int_equal(rc, MPRPC_EINVAL);
  assert_non_null(strstr(err, "session_timeout=10"));
}

static bool names_have(char **names, size_t n, const char *want) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(names[i], want) == 0)
      return true;
  return false;
}

/* mprpc list zk:// without names: the registry enumerates its services. */
static void test_zk_lists_services(void **state) {
  (void)state;
  NEED_ZK(hosts);
  char chroot[128];
  new_chroot(chroot, sizeof chroot);
  mprpc_registry_t p = open_zk(hosts, chroot, "session_timeout=30000");
  mprpc_registry_t c = open_zk(hosts, chroot, NULL);
  char **names;
  size_t n;
  assert_int_equal(mprpc_registry_list_services(c, &names, &n), 0);
  assert_int_equal(n, 0); /* nothing registered under this chroot yet */
  mprpc_registry_names_free(names, n);
  reg(p, 8001);
  mprpc_instance_t other = {.service = "inv.Stock", .host = "127.0.0.1", .port = 8002,
                            .methods = "Reserve"};
  assert_int_equal(mprpc_registry_register(p, &other), 0);
  bool both = false;
  for (int i = 0; i < 1000 && !both; i++) { /* hang guard: 10 s */
    assert_int_equal(mprpc_registry_list_services(c, &names, &n), 0);
    both = n == 2 && names_have(names, n, SVC) && names_have(names, n, "inv.Stock");
    mprpc_registry_names_free(names, n);
    if (!both)
      usleep(10000);
  }
  assert_true(both);
  mprpc_registry_close(p);
  mprpc_registry_close(c);
  /* static:// cannot enumerate: the caller is told so */
  char err[256];
  mprpc_registry_t s;
  assert_int_equal(mprpc_registry_open("static://127.0.0.1:1", &s, err, sizeof err), 0);
  assert_int_equal(mprpc_registry_list_services(s, &names, &n), MPRPC_EUNSUPPORTED);
  assert_null(names);
  mprpc_registry_close(s);
}

static void test_zk_register_discover_unregister(void **state) {
  (void)state;
  NEED_ZK(hosts);
  char chroot[128], path[512];
  new_chroot(chroot, sizeof chroot);
  /* long sessions: a node that goes within the hang guards below was removed
   * by unregister/close, not by a session expiring */
  mprpc_registry_t p1 = open_zk(hosts, chroot, "session_timeout=30000"),
                   p2 = open_zk(hosts, chroot, "session_timeout=30000");
  mprpc_registry_t c = open_zk(hosts, chroot, NULL);
  assert_int_equal(mprpc_registry_health(c), MPRPC_REG_HEALTHY);
  regtest_loop_t *loop = regtest_loop_new();
  regtest_watch_t w;
  regtest_watch_init(&w, loop);
  uint64_t id;
  assert_int_equal(
      mprpc_registry_subscribe(c, SVC, regtest_loop(loop), regtest_watch_cb, &w, &id), 0);
  assert_true(regtest_watch_wait(&w, "", MPRPC_REG_HEALTHY, 10000));
  reg(p1, 8001);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8001", MPRPC_REG_HEALTHY, 10000));
  reg(p2, 8002);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8001,127.0.0.1:8002", MPRPC_REG_HEALTHY, 10000));
  assert_false(w.wrong_thread);

  /* the node and its documented data format */
  zhandle_t *zh = raw_connect(hosts, NULL);
  node_path(path, sizeof path, chroot, 8001);
  char buf[1024];
  int len = sizeof buf - 1;
  struct Stat st;
  assert_int_equal(zoo_get(zh, path, 0, buf, &len, &st), ZOK);
  buf[len] = '\0';
  assert_true(st.ephemeralOwner != 0);
  assert_non_null(strstr(buf, "address=127.0.0.1:8001\n"));
  assert_non_null(strstr(buf, "weight=10\n"));
  assert_non_null(strstr(buf, "methods=Echo\n"));
  assert_non_null(strstr(buf, "version=1.2\n"));
  assert_non_null(strstr(buf, "start_time_ms=42\n"));
  assert_non_null(strstr(buf, "pid="));

  /* re-registering with new data reaches consumers (data watch), and an
   * unchanged re-registration does not rewrite the node */
  int32_t version = st.version;
  reg(p1, 8001);
  usleep(300 * 1000);
  assert_int_equal(zoo_exists(zh, path, 0, &st), ZOK);
  assert_int_equal(st.version, version);
  mprpc_instance_t heavier = {.service = SVC, .host = "127.0.0.1", .port = 8002, .weight = 77};
  assert_int_equal(mprpc_registry_register(p2, &heavier), 0);
  assert_true(regtest_watch_wait_weights(&w, "127.0.0.1:8001*10,127.0.0.1:8002*77", 10000));

  /* graceful unregister removes the node at once (no session timeout) */
  assert_int_equal(mprpc_registry_unregister(p1, SVC, "127.0.0.1", 8001), 0);
  assert_true(wait_node(zh, path, 0, 15000, NULL));
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8002", MPRPC_REG_HEALTHY, 10000));
  assert_int_equal(mprpc_registry_unregister(p1, SVC, "127.0.0.1", 8001), MPRPC_ENOTFOUND);
  /* close of a provider removes its nodes at once too */
  mprpc_registry_close(p2);
  assert_true(regtest_watch_wait(&w, "", MPRPC_REG_HEALTHY, 15000));
  regtest_unsubscribe(loop, c, id);
  zookeeper_close(zh);
  mprpc_registry_close(p1);
  mprpc_registry_close(c);
  regtest_loop_free(loop);
  regtest_watch_destroy(&w);
}

static void test_zk_killed_provider_disappears(void **state) {
  (void)state;
  NEED_ZK(hosts);
  char chroot[128];
  new_chroot(chroot, sizeof chroot);
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  pid_t pid = fork(); /* before this test starts any thread of its own */
  assert_true(pid >= 0);
  child_pid = pid;
  if (pid == 0) {
    close(pfd[0]);
    char uri[512], err[256];
    snprintf(uri, sizeof uri, "zk://%s%s?session_timeout=2000", hosts, chroot);
    mprpc_registry_t r;
    if (mprpc_registry_open(uri, &r, err, sizeof err))
      _exit(2);
    mprpc_instance_t inst = {.service = SVC, .host = "127.0.0.1", .port = 9001};
    if (mprpc_registry_register(r, &inst))
      _exit(3);
    if (write(pfd[1], "x", 1) != 1)
      _exit(4);
    for (int i = 0; i < 600; i++)
      sleep(1); /* until SIGKILL */
    _exit(5);
  }
  close(pfd[1]);
  char x;
  assert_int_equal(read(pfd[0], &x, 1), 1);
  close(pfd[0]);
  mprpc_registry_t p = open_zk(hosts, chroot, NULL);
  reg(p, 9002);
  mprpc_registry_t c = open_zk(hosts, chroot, NULL);
  regtest_loop_t *loop = regtest_loop_new();
  regtest_watch_t w;
  regtest_watch_init(&w, loop);
  uint64_t id;
  assert_int_equal(
      mprpc_registry_subscribe(c, SVC, regtest_loop(loop), regtest_watch_cb, &w, &id), 0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:9001,127.0.0.1:9002", MPRPC_REG_HEALTHY, 10000));
  assert_int_equal(kill(pid, SIGKILL), 0);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  child_pid = 0;
  long long t0 = regtest_now_ms();
  /* session timeout 2000 ms: the server expires the session, the node goes */
  assert_true(regtest_watch_wait(&w, "127.0.0.1:9002", MPRPC_REG_HEALTHY, 20000));
  fprintf(stderr, "killed provider's node gone after %lld ms\n", regtest_now_ms() - t0);
  regtest_unsubscribe(loop, c, id);
  mprpc_registry_close(c);
  mprpc_registry_close(p);
  regtest_loop_free(loop);
  regtest_watch_destroy(&w);
}

static void test_zk_session_expiry_reregisters(void **state) {
  (void)state;
  NEED_ZK(hosts);
  char chroot[128], path[512];
  new_chroot(chroot, sizeof chroot);
  mprpc_registry_t p = open_zk(hosts, chroot, "session_timeout=2000");
  reg(p, 8101);
  mprpc_registry_t c = open_zk(hosts, chroot, NULL);
  regtest_loop_t *loop = regtest_loop_new();
  regtest_watch_t w;
  regtest_watch_init(&w, loop);
  uint64_t id;
  assert_int_equal(
      mprpc_registry_subscribe(c, SVC, regtest_loop(loop), regtest_watch_cb, &w, &id), 0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8101", MPRPC_REG_HEALTHY, 10000));

  zhandle_t *zh = raw_connect(hosts, NULL);
  node_path(path, sizeof path, chroot, 8101);
  int64_t old_sid, owner = 0;
  char pw[16];
  assert_int_equal(mprpc__zk_session(p, &old_sid, pw), 0);
  assert_true(wait_node(zh, path, old_sid, 10000, NULL));

  /* The session ends: the server deletes its ephemeral node and the
   * provider re-registers under its new session. */
  long long t0 = 0;
  int64_t new_sid = expire_session(hosts, p, &old_sid, &t0);
  assert_true(new_sid != old_sid);
  assert_true(wait_node(zh, path, new_sid, 10000, &owner));
  fprintf(stderr, "re-registered after %lld ms (session timeout 2000 ms)\n",
          regtest_now_ms() - t0);
  assert_true(owner == new_sid); /* no stale node: the one node is the new session's */
  struct String_vector ch = {0, NULL};
  char parent[512];
  snprintf(parent, sizeof parent, "%s/mprpc/services/" SVC "/providers", chroot);
  assert_int_equal(zoo_get_children(zh, parent, 0, &ch), ZOK);
  assert_int_equal(ch.count, 1);
  deallocate_String_vector(&ch);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8101", MPRPC_REG_HEALTHY, 10000));
  assert_int_equal(mprpc_registry_health(p), MPRPC_REG_HEALTHY);

  regtest_unsubscribe(loop, c, id);
  zookeeper_close(zh);
  mprpc_registry_close(c);
  mprpc_registry_close(p);
  regtest_loop_free(loop);
  regtest_watch_destroy(&w);
}

static void test_zk_stale_node_of_other_session_replaced(void **state) {
  (void)state;
  NEED_ZK(hosts);
  char chroot[128], path[512], parent[512];
  new_chroot(chroot, sizeof chroot);
  zhandle_t *zh = raw_connect(hosts, NULL);
  snprintf(parent, sizeof parent, "%s/mprpc/services/" SVC "/providers", chroot);
  /* build the parents by hand, then an ephemeral node owned by zh's session */
  char part[512];
  for (char *s = parent + 1;; s++) {
    if (*s == '/' || !*s) {
      snprintf(part, sizeof part, "%.*s", (int)(s - parent), parent);
      int rc = zoo_create(zh, part, "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
      assert_true(rc == ZOK || rc == ZNODEEXISTS);
      if (!*s)
        break;
    }
  }
  node_path(path, sizeof path, chroot, 8201);
  assert_int_equal(zoo_create(zh, path, "address=127.0.0.1:8201\n", 23, &ZOO_OPEN_ACL_UNSAFE,
                              ZOO_EPHEMERAL, NULL, 0),
                   ZOK);
  mprpc_registry_t p = open_zk(hosts, chroot, NULL);
  reg(p, 8201);
  int64_t sid;
  char pw[16];
  assert_int_equal(mprpc__zk_session(p, &sid, pw), 0);
  assert_true(wait_node(zh, path, sid, 10000, NULL));
  zookeeper_close(zh);
  mprpc_registry_close(p);
}

/* A registration that can never succeed (its parent is read-only) must not
 * hold up the registry's other registrations or its subscriptions. */
static void test_zk_failing_registration_does_not_block_others(void **state) {
  (void)state;
  NEED_ZK(hosts);
  char chroot[128], path[512], part[512];
  new_chroot(chroot, sizeof chroot);
  zhandle_t *zh = raw_connect(hosts, NULL);
  snprintf(path, sizeof path, "%s/mprpc/services/locked.S/providers", chroot);
  for (char *s = path + 1;; s++) {
    if (*s == '/' || !*s) {
      snprintf(part, sizeof part, "%.*s", (int)(s - path), path);
      int rc = zoo_create(zh, part, "", 0, *s ? &ZOO_OPEN_ACL_UNSAFE : &ZOO_READ_ACL_UNSAFE, 0,
                          NULL, 0);
      assert_true(rc == ZOK || rc == ZNODEEXISTS);
      if (!*s)
        break;
    }
  }
  /* one registry does it all: the doomed registration is the newest, so it
   * is the first the worker meets */
  mprpc_registry_t p = open_zk(hosts, chroot, NULL), c = p;
  reg(p, 8502);
  mprpc_instance_t locked = {.service = "locked.S", .host = "127.0.0.1", .port = 8501};
  assert_int_equal(mprpc_registry_register(p, &locked), 0); /* accepted; fails in the worker */
  regtest_loop_t *loop = regtest_loop_new();
  regtest_watch_t w;
  regtest_watch_init(&w, loop);
  uint64_t id;
  assert_int_equal(
      mprpc_registry_subscribe(c, SVC, regtest_loop(loop), regtest_watch_cb, &w, &id), 0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8502", MPRPC_REG_HEALTHY, 10000));
  node_path(path, sizeof path, chroot, 8502);
  assert_true(wait_node(zh, path, -1, 10000, NULL));
  regtest_unsubscribe(loop, c, id);
  zookeeper_close(zh);
  mprpc_registry_close(p);
  regtest_loop_free(loop);
  regtest_watch_destroy(&w);
}

static void test_zk_outage_keeps_cache_and_reconverges(void **state) {
  (void)state;
  if (!test_zk() || !have_zk_sh()) {
    fprintf(stderr, "needs MPRPC_TEST_ZK and ci/zk.sh (run from the repo root): skipping\n");
    skip();
  }
  char dir[256], hosts[128], cache[300], chroot[128];
  tmpdir(dir, sizeof dir, "own");
  snprintf(cache, sizeof cache, "%s.cache", dir);
  unlink(cache);
  own_server(hosts, sizeof hosts);
  new_chroot(chroot, sizeof chroot);
  char opts[512];
  snprintf(opts, sizeof opts, "session_timeout=4000&cache=%s", cache);
  mprpc_registry_t p = open_zk(hosts, chroot, "session_timeout=4000");
  reg(p, 8301);
  mprpc_registry_t c = open_zk(hosts, chroot, opts);
  regtest_loop_t *loop = regtest_loop_new();
  regtest_watch_t w;
  regtest_watch_init(&w, loop);
  uint64_t id;
  assert_int_equal(
      mprpc_registry_subscribe(c, SVC, regtest_loop(loop), regtest_watch_cb, &w, &id), 0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8301", MPRPC_REG_HEALTHY, 10000));

  /* ZooKeeper goes away: the consumer keeps its list, marked not healthy */
  assert_int_equal(zk_sh("pause", dir, NULL, NULL, 0), 0);
  assert_true(regtest_watch_wait_health_not(&w, MPRPC_REG_HEALTHY, 20000));
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8301", -1, 1000));
  assert_int_not_equal(mprpc_registry_health(c), MPRPC_REG_HEALTHY);

  /* without a cache, waiting for a session fails with a clear error ... */
  char uri[1024], err[512];
  snprintf(uri, sizeof uri, "zk://%s%s?connect_timeout=500", hosts, chroot);
  mprpc_registry_t r;
  assert_int_equal(mprpc_registry_open(uri, &r, err, sizeof err), MPRPC_EREGISTRY);
  assert_non_null(strstr(err, "no ZooKeeper session within 500 ms"));
  /* ... a provider with wait=0 starts anyway and registers later ... */
  snprintf(opts, sizeof opts, "wait=0&session_timeout=4000");
  mprpc_registry_t p2 = open_zk(hosts, chroot, opts);
  reg(p2, 8302);
  /* ... and a consumer with the cache file starts from it */
  snprintf(opts, sizeof opts, "connect_timeout=500&cache=%s", cache);
  mprpc_registry_t c2 = open_zk(hosts, chroot, opts);
  regtest_watch_t w2;
  regtest_watch_init(&w2, loop);
  uint64_t id2;
  assert_int_equal(
      mprpc_registry_subscribe(c2, SVC, regtest_loop(loop), regtest_watch_cb, &w2, &id2), 0);
  assert_true(regtest_watch_wait(&w2, "127.0.0.1:8301", MPRPC_REG_CONNECTING, 5000));

  /* ZooKeeper comes back (same port, same data): everything reconverges */
  assert_int_equal(zk_sh("resume", dir, NULL, NULL, 0), 0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8301,127.0.0.1:8302", MPRPC_REG_HEALTHY, 30000));
  assert_true(regtest_watch_wait(&w2, "127.0.0.1:8301,127.0.0.1:8302", MPRPC_REG_HEALTHY, 30000));
  assert_false(w.wrong_thread || w2.wrong_thread);

  regtest_unsubscribe(loop, c, id);
  regtest_unsubscribe(loop, c2, id2);
  mprpc_registry_close(c2);
  mprpc_registry_close(c);
  mprpc_registry_close(p2);
  mprpc_registry_close(p);
  regtest_loop_free(loop);
  regtest_watch_destroy(&w);
  regtest_watch_destroy(&w2);
  unlink(cache);
}


/* --- config-centre nodes ------------------------------------------------ */

/* Writes (text) or deletes (NULL) <chroot>/mprpc/config/<name> with a raw
 * client, creating the parents. */
static void raw_config(zhandle_t *zh, const char *chroot, const char *name, const char *text) {
  char path[512], part[512];
  snprintf(path, sizeof path, "%s/mprpc/config/%s", chroot, name);
  if (!text) {
    assert_int_equal(zoo_delete(zh, path, -1), ZOK);
    return;
  }
  for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
    snprintf(part, sizeof part, "%.*s", (int)(p - path), path);
    int rc = zoo_create(zh, part, "", 0, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    assert_true(rc == ZOK || rc == ZNODEEXISTS);
  }
  int rc = zoo_create(zh, path, text, (int)strlen(text), &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
  if (rc == ZNODEEXISTS)
    rc = zoo_set(zh, path, text, (int)strlen(text), -1);
  assert_int_equal(rc, ZOK);
}

static bool file_has(const char *path, const char *want) {
  FILE *f = fopen(path, "r");
  if (!f)
    return false;
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return strcmp(buf, want) == 0;
}

static void test_zk_config_watch(void **state) {
  (void)state;
  NEED_ZK(hosts);
  char chroot[128], cache[256], opts[512], cached[300];
  new_chroot(chroot, sizeof chroot);
  snprintf(cache, sizeof cache, "/tmp/mprpc-zktest-%ld-cfg.cache", (long)getpid());
  snprintf(cached, sizeof cached, "%s.config/_global", cache);
  unlink(cached);
  snprintf(opts, sizeof opts, "session_timeout=2000&cache=%s", cache);
  mprpc_registry_t c = open_zk(hosts, chroot, opts);
  zhandle_t *zh = raw_connect(hosts, NULL);
  raw_config(zh, chroot, SVC, "timeout_ms.Echo=250\n");
  regtest_loop_t *loop = regtest_loop_new();
  regtest_cfg_t g, s;
  regtest_cfg_init(&g, loop);
  regtest_cfg_init(&s, loop);
  uint64_t gid, sid, bad;
  assert_int_equal(mprpc_registry_watch_config(c, "x/y", regtest_loop(loop), regtest_cfg_cb, &g,
                                               &bad),
                   MPRPC_EINVAL);
  assert_int_equal(
      mprpc_registry_watch_config(c, "_global", regtest_loop(loop), regtest_cfg_cb, &g, &gid), 0);
  assert_int_equal(
      mprpc_registry_watch_config(c, SVC, regtest_loop(loop), regtest_cfg_cb, &s, &sid), 0);
  /* an existing node: delivered at the start */
  assert_true(regtest_cfg_wait(&s, "timeout_ms.Echo=250\n", 10000));
  /* a node created later (exists watch), changed, deleted, created again */
  raw_config(zh, chroot, "_global", "log_level=debug\n");
  assert_true(regtest_cfg_wait(&g, "log_level=debug\n", 10000));
  assert_int_equal(g.deliveries, 1);
  raw_config(zh, chroot, "_global", "log_level=info\nmax_retry=1\n");
  assert_true(regtest_cfg_wait(&g, "log_level=info\nmax_retry=1\n", 10000));
  long long deadline = regtest_now_ms() + 10000; /* the cache directory follows */
  while (!file_has(cached, "log_level=info\nmax_retry=1\n") && regtest_now_ms() < deadline)
    usleep(20 * 1000);
  assert_true(file_has(cached, "log_level=info\nmax_retry=1\n"));
  raw_config(zh, chroot, "_global", NULL);
  assert_true(regtest_cfg_wait(&g, NULL, 10000));
  raw_config(zh, chroot, "_global", "max_retry=2\n");
  assert_true(regtest_cfg_wait(&g, "max_retry=2\n", 10000));

  /* the session expires (taken over and closed by another handle): the
   * new session's watches see the next change */
  int64_t old_sid;
  long long t0;
  assert_true(expire_session(hosts, c, &old_sid, &t0) != old_sid);
  raw_config(zh, chroot, "_global", "max_retry=3\n");
  assert_true(regtest_cfg_wait(&g, "max_retry=3\n", 10000));
  raw_config(zh, chroot, SVC, "timeout_ms.Echo=300\n");
  assert_true(regtest_cfg_wait(&s, "timeout_ms.Echo=300\n", 10000));
  assert_false(g.wrong_thread || s.wrong_thread);

  /* unwatched: no more deliveries */
  regtest_unwatch_config(loop, c, sid);
  int before = s.deliveries;
  raw_config(zh, chroot, SVC, "timeout_ms.Echo=400\n");
  raw_config(zh, chroot, "_global", "max_retry=4\n");
  assert_true(regtest_cfg_wait(&g, "max_retry=4\n", 10000));
  regtest_loop_run(loop, free, NULL);
  assert_int_equal(s.deliveries, before);

  regtest_unwatch_config(loop, c, gid);
  zookeeper_close(zh);
  mprpc_registry_close(c);
  regtest_loop_free(loop);
  regtest_cfg_destroy(&g);
  regtest_cfg_destroy(&s);
  unlink(cached);
  char d[300];
  snprintf(d, sizeof d, "%s.config/" SVC, cache);
  unlink(d);
  snprintf(d, sizeof d, "%s.config", cache);
  rmdir(d);
  unlink(cache);
}

/* ZooKeeper stops and comes back: watchers keep the last text during the
 * outage, a watcher started during it gets the cached text, and both see
 * the change made after the restart. */
static void test_zk_config_survives_restart(void **state) {
  (void)state;
  if (!test_zk() || !have_zk_sh()) {
    fprintf(stderr, "needs MPRPC_TEST_ZK and ci/zk.sh (run from the repo root): skipping\n");
    skip();
  }
  char dir[256], hosts[128], cache[300], chroot[128], opts[512], d[400];
  tmpdir(dir, sizeof dir, "own");
  snprintf(cache, sizeof cache, "%s.cfgcache", dir);
  own_server(hosts, sizeof hosts);
  new_chroot(chroot, sizeof chroot);
  snprintf(opts, sizeof opts, "session_timeout=4000&cache=%s", cache);
  mprpc_registry_t c = open_zk(hosts, chroot, opts);
  zhandle_t *zh = raw_connect(hosts, NULL);
  raw_config(zh, chroot, "_global", "timeout_ms=100\n");
  regtest_loop_t *loop = regtest_loop_new();
  regtest_cfg_t g, g2;
  regtest_cfg_init(&g, loop);
  regtest_cfg_init(&g2, loop);
  uint64_t gid, gid2;
  assert_int_equal(
      mprpc_registry_watch_config(c, "_global", regtest_loop(loop), regtest_cfg_cb, &g, &gid), 0);
  assert_true(regtest_cfg_wait(&g, "timeout_ms=100\n", 10000));
  snprintf(d, sizeof d, "%s.config/_global", cache);
  long long deadline = regtest_now_ms() + 10000;
  while (!file_has(d, "timeout_ms=100\n") && regtest_now_ms() < deadline)
    usleep(20 * 1000);
  assert_true(file_has(d, "timeout_ms=100\n"));
  zookeeper_close(zh);

  assert_int_equal(zk_sh("pause", dir, NULL, NULL, 0), 0);
  deadline = regtest_now_ms() + 20000;
  while (mprpc_registry_health(c) == MPRPC_REG_HEALTHY && regtest_now_ms() < deadline)
    usleep(20 * 1000);
  assert_int_not_equal(mprpc_registry_health(c), MPRPC_REG_HEALTHY);
  int before = g.deliveries;
  /* a process starting now: the cache's text */
  snprintf(opts, sizeof opts, "connect_timeout=300&wait=0&cache=%s", cache);
  mprpc_registry_t c2 = open_zk(hosts, chroot, opts);
  assert_int_equal(
      mprpc_registry_watch_config(c2, "_global", regtest_loop(loop), regtest_cfg_cb, &g2, &gid2),
      0);
  assert_true(regtest_cfg_wait(&g2, "timeout_ms=100\n", 5000));
  regtest_loop_run(loop, free, NULL);
  assert_int_equal(g.deliveries, before); /* the outage delivered nothing */

  assert_int_equal(zk_sh("resume", dir, NULL, NULL, 0), 0);
  zh = raw_connect(hosts, NULL);
  raw_config(zh, chroot, "_global", "timeout_ms=200\n");
  assert_true(regtest_cfg_wait(&g, "timeout_ms=200\n", 30000));
  assert_true(regtest_cfg_wait(&g2, "timeout_ms=200\n", 30000));

  regtest_unwatch_config(loop, c, gid);
  regtest_unwatch_config(loop, c2, gid2);
  zookeeper_close(zh);
  mprpc_registry_close(c2);
  mprpc_registry_close(c);
  regtest_loop_free(loop);
  regtest_cfg_destroy(&g);
  regtest_cfg_destroy(&g2);
  unlink(d);
  snprintf(d, sizeof d, "%s.config", cache);
  rmdir(d);
  unlink(cache);
}

/* --- end to end: provider + channel over ZooKeeper ---------------------- */

static void e2e_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                     Example__EchoResponse_Closure closure, void *data) {
  (void)svc;
  Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
  out.message = in->message;
  closure(&out, data);
}
static Example__EchoService_Service e2e_svc = EXAMPLE__ECHO_SERVICE__INIT(e2e_);

typedef struct e2e_result {
  bool ok;
  char msg[64];
} e2e_result_t;

static void e2e_done(const Example__EchoResponse *resp, void *arg) {
  e2e_result_t *r = arg;
  r->ok = resp != NULL;
  if (resp)
    snprintf(r->msg, sizeof r->msg, "%s", resp->message);
}

/* One synchronous call through the generated stub. */
static bool e2e_call(mprpc_channel_t *ch, const char *text) {
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = (char *)text;
  e2e_result_t r = {0};
  example__echo_service__echo(mprpc_channel_service(ch), &req, e2e_done, &r);
  return r.ok && strcmp(r.msg, text) == 0;
}

static mprpc_server_t *e2e_server(mprpc_registry_t reg) {
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = "127.0.0.1";
  o.port = 0;
  o.threads = 1;
  o.registry = reg;
  mprpc_server_t *s;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &e2e_svc.base), 0);
  assert_int_equal(mprpc_server_start(s), 0);
  return s;
}

/* ZooKeeper stops while calls run: calls keep succeeding on the cached
 * endpoints; ZooKeeper comes back: a provider that started during the
 * outage shows up and is called. */
static void test_zk_calls_survive_outage(void **state) {
  (void)state;
  if (!test_zk() || !have_zk_sh()) {
    fprintf(stderr, "needs MPRPC_TEST_ZK and ci/zk.sh (run from the repo root): skipping\n");
    skip();
  }
  char dir[256], hosts[128], chroot[128];
  tmpdir(dir, sizeof dir, "own");
  own_server(hosts, sizeof hosts);
  new_chroot(chroot, sizeof chroot);
  mprpc_registry_t preg = open_zk(hosts, chroot, "session_timeout=4000");
  mprpc_registry_t creg = open_zk(hosts, chroot, "session_timeout=4000");
  mprpc_server_t *s1 = e2e_server(preg);

  mprpc_channel_opts_t co;
  mprpc_channel_opts_init(&co);
  co.registry = creg;
  co.timeout_ms = 3000;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &co, &ch), 0);
  long long deadline = regtest_now_ms() + 15000;
  while (!e2e_call(ch, "warm-up") && regtest_now_ms() < deadline)
    usleep(100 * 1000);
  assert_true(e2e_call(ch, "before"));

  assert_int_equal(zk_sh("pause", dir, NULL, NULL, 0), 0);
  deadline = regtest_now_ms() + 20000;
  while (mprpc_registry_health(creg) == MPRPC_REG_HEALTHY && regtest_now_ms() < deadline)
    usleep(50 * 1000);
  assert_int_not_equal(mprpc_registry_health(creg), MPRPC_REG_HEALTHY);
  for (int i = 0; i < 20; i++)
    assert_true(e2e_call(ch, "during-outage"));
  assert_int_equal(mprpc_channel_endpoint_count(ch), 1);

  /* a second provider starts while ZooKeeper is down (wait=0) */
  mprpc_registry_t preg2 = open_zk(hosts, chroot, "session_timeout=4000&wait=0");
  mprpc_server_t *s2 = e2e_server(preg2);

  assert_int_equal(zk_sh("resume", dir, NULL, NULL, 0), 0);
  deadline = regtest_now_ms() + 30000;
  while (mprpc_channel_endpoint_count(ch) != 2 && regtest_now_ms() < deadline) {
    assert_true(e2e_call(ch, "reconverging"));
    usleep(100 * 1000);
  }
  assert_int_equal(mprpc_channel_endpoint_count(ch), 2);
  assert_int_equal(mprpc_registry_health(creg), MPRPC_REG_HEALTHY);
  for (int i = 0; i < 10; i++)
    assert_true(e2e_call(ch, "after"));

  mprpc_channel_destroy(ch);
  mprpc_server_destroy(s2);
  mprpc_server_destroy(s1);
  mprpc_registry_close(preg2);
  mprpc_registry_close(preg);
  mprpc_registry_close(creg);
}

static void test_zk_ensemble_leader_killed(void **state) {
  (void)state;
  if (!test_zk() || !have_zk_sh()) {
    fprintf(stderr, "needs MPRPC_TEST_ZK and ci/zk.sh (run from the repo root): skipping\n");
    skip();
  }
  char dir[256], hosts[512], leader[16], chroot[128];
  tmpdir(dir, sizeof dir, "ensemble");
  zk_sh("stop", dir, NULL, NULL, 0);
  assert_int_equal(zk_sh("start-ensemble", dir, "3", hosts, sizeof hosts), 0);
  new_chroot(chroot, sizeof chroot);
  const char *opts = "session_timeout=8000&connect_timeout=20000";
  mprpc_registry_t p = open_zk(hosts, chroot, opts);
  mprpc_registry_t c = open_zk(hosts, chroot, opts);
  reg(p, 8401);
  regtest_loop_t *loop = regtest_loop_new();
  regtest_watch_t w;
  regtest_watch_init(&w, loop);
  uint64_t id;
  assert_int_equal(
      mprpc_registry_subscribe(c, SVC, regtest_loop(loop), regtest_watch_cb, &w, &id), 0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8401", MPRPC_REG_HEALTHY, 15000));

  assert_int_equal(zk_sh("leader", dir, NULL, leader, sizeof leader), 0);
  assert_int_equal(zk_sh("kill-one", dir, leader, NULL, 0), 0);
  fprintf(stderr, "killed ensemble leader node%s\n", leader);

  /* the remaining two elect a new leader; registration and discovery go on */
  mprpc_registry_t p2 = open_zk(hosts, chroot, opts);
  reg(p2, 8402);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8401,127.0.0.1:8402", MPRPC_REG_HEALTHY, 30000));
  assert_int_equal(mprpc_registry_unregister(p, SVC, "127.0.0.1", 8401), 0);
  assert_true(regtest_watch_wait(&w, "127.0.0.1:8402", MPRPC_REG_HEALTHY, 30000));

  regtest_unsubscribe(loop, c, id);
  mprpc_registry_close(p2);
  mprpc_registry_close(c);
  mprpc_registry_close(p);
  regtest_loop_free(loop);
  regtest_watch_destroy(&w);
  zk_sh("stop", dir, NULL, NULL, 0);
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

int main(void) {
  zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_zk_unreachable_gives_clear_error),
      cmocka_unit_test_teardown(test_zk_killed_provider_disappears, kill_child),
      cmocka_unit_test(test_zk_lists_services),
      cmocka_unit_test(test_zk_register_discover_unregister),
      cmocka_unit_test(test_zk_session_expiry_reregisters),
      cmocka_unit_test(test_zk_stale_node_of_other_session_replaced),
      cmocka_unit_test(test_zk_failing_registration_does_not_block_others),
      cmocka_unit_test(test_zk_outage_keeps_cache_and_reconverges),
      cmocka_unit_test(test_zk_calls_survive_outage),
      cmocka_unit_test(test_zk_config_watch),
      cmocka_unit_test(test_zk_config_survives_restart),
      cmocka_unit_test_teardown(test_zk_ensemble_leader_killed, stop_ensemble),
  };
  return cmocka_run_group_tests(tests, NULL, stop_own_server);
}
