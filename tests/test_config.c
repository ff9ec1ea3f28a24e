/* Config tests: file syntax, typed getters, seed keys, the command line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mprpc/channel.h"
#include "mprpc/config.h"
#include "mprpc/server.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

/* ---- helpers ------------------------------------------------------------- */

static char tmpdir[64];
static char files[16][300];
static int nfiles;

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mprpc-test-config.XXXXXX");
  nfiles = 0;
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  mprpc_log_close();
  for (int i = 0; i < nfiles; i++)
    unlink(files[i]);
  rmdir(tmpdir);
  return 0;
}

/* Writes len bytes of text to a new file in tmpdir; returns its path. */
static const char *write_file(const char *name, const char *text, size_t len) {
  assert_true(nfiles < 16);
  char *p = files[nfiles++];
  snprintf(p, 300, "%s/%s", tmpdir, name);
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, len, f), len);
  fclose(f);
  return p;
}

static mprpc_config_t *parse_ok(const char *text) {
  mprpc_config_t *cfg;
  assert_int_equal(mprpc_config_new(&cfg), 0);
  int rc = mprpc_config_load_string(cfg, text, strlen(text), NULL);
  if (rc)
    fprintf(stderr, "unexpected error: %s\n", mprpc_config_error(cfg));
  assert_int_equal(rc, 0);
  return cfg;
}

/* Parses text expecting failure; the error must contain every needle. */
static void parse_fails(const char *text, size_t len, const char *needle1, const char *needle2) {
  mprpc_config_t *cfg;
  assert_int_equal(mprpc_config_new(&cfg), 0);
  assert_int_equal(mprpc_config_load_string(cfg, text, len, "t.conf"), MPRPC_ECONFIG);
  const char *e = mprpc_config_error(cfg);
  if ((needle1 && !strstr(e, needle1)) || (needle2 && !strstr(e, needle2))) {
    fprintf(stderr, "error text '%s' lacks '%s' / '%s'\n", e, needle1, needle2 ? needle2 : "");
    fail();
  }
  assert_int_equal(mprpc_config_count(cfg), 0); /* nothing merged */
  mprpc_config_free(cfg);
}

static int saved_fd = -1;
static char cap_path[300];

static void capture_stderr(void) {
  snprintf(cap_path, sizeof cap_path, "%s/stderr.XXXXXX", tmpdir);
  int fd = mkstemp(cap_path);
  assert_true(fd >= 0);
  assert_true(nfiles < 16);
  strcpy(files[nfiles++], cap_path);
  fflush(stderr);
  saved_fd = dup(2);
  dup2(fd, 2);
  close(fd);
}

static char *release_stderr(void) {
  fflush(stderr);
  dup2(saved_fd, 2);
  close(saved_fd);
  FILE *f = fopen(cap_path, "rb");
  assert_non_null(f);
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

/* ---- syntax -------------------------------------------------------------- */

static void test_config_keys_comments_blanks_and_trimming(void **state) {
  (void)state;
  mprpc_config_t *cfg = parse_ok("# the seeds' keys\n"
                                 "\n"
                                 "   \t\n"
                                 "  rpcserverip =  127.0.0.1 \t\n"
                                 "rpcserverport=8000\n"
                                 "\tzookeeperip\t=\t10.0.0.1\n"
                                 "   # an indented comment\n"
                                 "zookeeperport = 2181\n"
                                 "empty =\n"
                                 "uri = zk://a:1/x?k=v#frag\n");
  assert_int_equal(mprpc_config_count(cfg), 6);
  assert_string_equal(mprpc_config_get(cfg, "rpcserverip"), "127.0.0.1");
  assert_string_equal(mprpc_config_get(cfg, "rpcserverport"), "8000");
  assert_string_equal(mprpc_config_get(cfg, "zookeeperip"), "10.0.0.1");
  assert_string_equal(mprpc_config_get(cfg, "zookeeperport"), "2181");
  assert_string_equal(mprpc_config_get(cfg, "empty"), "");
  /* only the first '=' splits; '#' inside a value is part of it */
  assert_string_equal(mprpc_config_get(cfg, "uri"), "zk://a:1/x?k=v#frag");
  assert_null(mprpc_config_get(cfg, "absent"));
  assert_false(mprpc_config_has(cfg, "absent"));
  assert_string_equal(mprpc_config_error(cfg), "");
  mprpc_config_free(cfg);
}

static void test_config_crlf_and_missing_final_newline(void **state) {
  (void)state;
  static const char text[] = "\xEF\xBB\xBF"
                             "a=1\r\nb = two words \r\n\r\n# c\r\nc=3";
  const char *path = write_file("crlf.conf", text, sizeof text - 1);
  mprpc_config_t *cfg;
  assert_int_equal(mprpc_config_new(&cfg), 0);
  assert_int_equal(mprpc_config_load_file(cfg, path), 0);
  assert_int_equal(mprpc_config_count(cfg), 3);
  assert_string_equal(mprpc_config_get(cfg, "a"), "1");
  assert_string_equal(mprpc_config_get(cfg, "b"), "two words");
  assert_string_equal(mprpc_config_get(cfg, "c"), "3");
  assert_int_equal(mprpc_config_load_string(cfg, "d = x\r\r\n", 8, "cr.conf"), 0);
  assert_string_equal(mprpc_config_get(cfg, "d"), "x"); /* a stray CR is trimmed too */
  int64_t v;
  assert_int_equal(mprpc_config_get_int(cfg, "c", 0, 0, 10, &v), 0);
  assert_int_equal(v, 3);
  mprpc_config_free(cfg);
}

static void test_config_very_long_lines(void **state) {
  (void)state;
  const size_t big = 1 << 20;
  char *text = malloc(big + 64);
  assert_non_null(text);
  memcpy(text, "short=1\nlong = ", 15);
  memset(text + 15, 'v', big);
  memcpy(text + 15 + big, "\nafter=2\n", 10);
  const char *path = write_file("long.conf", text, strlen(text));
  mprpc_config_t *cfg;
  assert_int_equal(mprpc_config_new(&cfg), 0);
  assert_int_equal(mprpc_config_load_file(cfg, path), 0);
  const char *v = mprpc_config_get(cfg, "long");
  assert_non_null(v);
  assert_int_equal(strlen(v), big); /* nothing truncated */
  assert_true(v[0] == 'v' && v[big - 1] == 'v');
  assert_string_equal(mprpc_config_get(cfg, "after"), "2");
  /* an error about a huge value quotes only its start */
  int64_t n;
  assert_int_equal(mprpc_config_get_int(cfg, "long", 0, 0, 10, &n), MPRPC_ECONFIG);
  assert_true(strlen(mprpc_config_error(cfg)) < 400);
  assert_non_null(strstr(mprpc_config_error(cfg), ":2: key 'long'"));
  mprpc_config_free(cfg);

  /* a very long line without '=' names its line */
  memset(text, 'x', big);
  memcpy(text + big, "\n", 2);
  char *t2 = malloc(big + 16);
  snprintf(t2, big + 16, "a=1\n%s", text);
  parse_fails(t2, strlen(t2), "t.conf:2:", "expected key=value");
  free(t2);
  free(text);
}

static void test_config_duplicate_overrides_with_warning(void **state) {
  (void)state;
  capture_stderr();
  mprpc_config_t *cfg = parse_ok("a=1\nb=2\na = 3\n");
  char *err = release_stderr();
  assert_string_equal(mprpc_config_get(cfg, "a"), "3");
  assert_int_equal(mprpc_config_count(cfg), 2);
  assert_non_null(strstr(err, "<string>:3: key 'a' set again; overrides <string>:1"));
  /* a second file overrides the first, also with a warning */
  capture_stderr();
  assert_int_equal(mprpc_config_load_string(cfg, "b=9\n", 4, "second.conf"), 0);
  err = release_stderr();
  assert_string_equal(mprpc_config_get(cfg, "b"), "9");
  assert_non_null(strstr(err, "second.conf:1: key 'b' set again; overrides <string>:2"));
  mprpc_config_free(cfg);
}

static void test_config_line_without_equals_names_file_and_line(void **state) {
  (void)state;
  static const char text[] = "a=1\n\n# fine\nnot a pair\nb=2\n";
  const char *path = write_file("bad.conf", text, sizeof text - 1);
  mprpc_config_t *cfg;
  assert_int_equal(mprpc_config_new(&cfg), 0);
  assert_int_equal(mprpc_config_set(cfg, "kept", "yes"), 0);
  assert_int_equal(mprpc_config_load_file(cfg, path), MPRPC_ECONFIG);
  char want[400];
  snprintf(want, sizeof want, "%s:4: expected key=value, got 'not a pair'", path);
  assert_string_equal(mprpc_config_error(cfg), want);
  /* all or nothing: a=1 from the bad file was not merged */
  assert_null(mprpc_config_get(cfg, "a"));
  assert_string_equal(mprpc_config_get(cfg, "kept"), "yes");
  mprpc_config_free(cfg);
}

static void test_config_malformed_lines(void **state) {
  (void)state;
  parse_fails("=value\n", 7, "t.conf:1:", "empty key");
  parse_fails("a=1\n  = x\n", 10, "t.conf:2:", "empty key");
  parse_fails("my key=1\n", 9, "t.conf:1:", "invalid key 'my key'");
  parse_fails("a=1\nb\0=2\n", 9, "t.conf:2:", "NUL");
  parse_fails("a=1\r\nnoequals\r\n", 15, "t.conf:2:", "'noequals'");
  parse_fails("k\xc3\xa9y=1\n", 7, "t.conf:1:", "invalid key");
}

static void test_config_unreadable_file(void **state) {
  (void)state;
  mprpc_config_t *cfg;
  assert_int_equal(mprpc_config_new(&cfg), 0);
  char path[300];
  snprintf(path, sizeof path, "%s/does-not-exist.conf", tmpdir);
  assert_int_equal(mprpc_config_load_file(cfg, path), MPRPC_ENOENT);
  assert_non_null(strstr(mprpc_config_error(cfg), path));
  /* a directory cannot be read as a file */
  assert_true(mprpc_config_load_file(cfg, tmpdir) < 0);
  mprpc_config_free(cfg);
}

static void test_config_set_and_entries(void **state) {
  (void)state;
  mprpc_config_t *cfg = parse_ok("x=1\ny=2\n");
  assert_int_equal(mprpc_config_set(cfg, "x", "10"), 0);
  assert_int_equal(mprpc_config_set(cfg, "z", "3"), 0);
  assert_int_equal(mprpc_config_set(cfg, "bad key", "3"), MPRPC_EINVAL);
  assert_int_equal(mprpc_config_set(cfg, "", "3"), MPRPC_EINVAL);
  assert_int_equal(mprpc_config_count(cfg), 3);
  const char *k, *v;
  assert_int_equal(mprpc_config_entry(cfg, 0, &k, &v), 0);
  assert_string_equal(k, "x");
  assert_string_equal(v, "10");
  assert_int_equal(mprpc_config_entry(cfg, 2, &k, &v), 0);
  assert_string_equal(k, "z");
  assert_int_equal(mprpc_config_entry(cfg, 3, &k, &v), MPRPC_ENOTFOUND);
  /* errors on values set in code carry no file:line */
  assert_int_equal(mprpc_config_set(cfg, "n", "abc"), 0);
  int64_t n;
  assert_int_equal(mprpc_config_get_int(cfg, "n", 0, 0, 9, &n), MPRPC_ECONFIG);
  assert_string_equal(mprpc_config_error(cfg),
                      "key 'n': invalid value 'abc': expected an integer in [0, 9]");
  mprpc_config_free(cfg);
}

/* ---- typed getters ------------------------------------------------------- */

static void test_config_get_string_and_default(void **state) {
  (void)state;
  mprpc_config_t *cfg = parse_ok("name = provider one\n");
  const char *s;
  assert_int_equal(mprpc_config_get_string(cfg, "name", "x", &s), 0);
  assert_string_equal(s, "provider one");
  assert_int_equal(mprpc_config_get_string(cfg, "other", "dflt", &s), 0);
  assert_string_equal(s, "dflt");
  assert_int_equal(mprpc_config_get_string(cfg, "other", NULL, &s), 0);
  assert_null(s);
  mprpc_config_free(cfg);
}

static void test_config_get_int(void **state) {
  (void)state;
  mprpc_config_t *cfg = parse_ok("a=42\nb=-7\nc=+3\nd=0\nbig=9223372036854775807\n"
                                 "threads=0\nx=12abc\ny=0x10\nz=1.5\nw= \nover=99999999999999999999\n"
                                 "neg=-9223372036854775808\n");
  int64_t v = 0;
  assert_int_equal(mprpc_config_get_int(cfg, "a", 0, 0, 100, &v), 0);
  assert_int_equal(v, 42);
  assert_int_equal(mprpc_config_get_int(cfg, "b", 0, -10, 10, &v), 0);
  assert_int_equal(v, -7);
  assert_int_equal(mprpc_config_get_int(cfg, "c", 0, 0, 10, &v), 0);
  assert_int_equal(v, 3);
  assert_int_equal(mprpc_config_get_int(cfg, "big", 0, INT64_MIN, INT64_MAX, &v), 0);
  assert_true(v == INT64_MAX);
  assert_int_equal(mprpc_config_get_int(cfg, "neg", 0, INT64_MIN, INT64_MAX, &v), 0);
  assert_true(v == INT64_MIN);
  assert_int_equal(mprpc_config_get_int(cfg, "absent", 17, 0, 100, &v), 0);
  assert_int_equal(v, 17);

  v = 5;
  assert_int_equal(mprpc_config_get_int(cfg, "threads", 4, 1, 64, &v), MPRPC_ECONFIG);
  assert_int_equal(v, 5); /* untouched on error */
  assert_string_equal(mprpc_config_error(cfg), "<string>:6: key 'threads': invalid value '0': "
                                               "expected an integer in [1, 64]");
  static const char *const bad[] = {"x", "y", "z", "w", "over"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(mprpc_config_get_int(cfg, bad[i], 0, INT64_MIN, INT64_MAX, &v),
                     MPRPC_ECONFIG);
    assert_non_null(strstr(mprpc_config_error(cfg), bad[i]));
  }
  assert_int_equal(mprpc_parse_int("", 0, 10, &v), MPRPC_EINVAL);
  assert_int_equal(mprpc_parse_int(" 1", 0, 10, &v), MPRPC_EINVAL);
  assert_int_equal(mprpc_parse_int("11", 0, 10, &v), MPRPC_ERANGE);
  mprpc_config_free(cfg);
}

static void test_config_get_bool(void **state) {
  (void)state;
  static const char *const yes[] = {"true", "TRUE", "yes", "Yes", "on", "ON", "1"};
  static const char *const no[] = {"false", "False", "no", "NO", "off", "Off", "0"};
  static const char *const bad[] = {"maybe", "2", "", "tru", "y", "n", "yes please"};
  bool b;
  for (size_t i = 0; i < 7; i++) {
    b = false;
    assert_int_equal(mprpc_parse_bool(yes[i], &b), 0);
    assert_true(b);
    assert_int_equal(mprpc_parse_bool(no[i], &b), 0);
    assert_false(b);
    assert_int_equal(mprpc_parse_bool(bad[i], &b), MPRPC_EINVAL);
  }
  mprpc_config_t *cfg = parse_ok("on=on\nbad=maybe\n");
  assert_int_equal(mprpc_config_get_bool(cfg, "on", false, &b), 0);
  assert_true(b);
  assert_int_equal(mprpc_config_get_bool(cfg, "absent", true, &b), 0);
  assert_true(b);
  assert_int_equal(mprpc_config_get_bool(cfg, "bad", false, &b), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg), "<string>:2: key 'bad': invalid value 'maybe'"));
  mprpc_config_free(cfg);
}

static void test_config_get_duration(void **state) {
  (void)state;
  static const struct {
    const char *s;
    int64_t ms;
  } ok[] = {{"250ms", 250},   {"2s", 2000},          {"1m", 60000},     {"1min", 60000},
            {"1h", 3600000},  {"1d", 86400000},      {"15", 15},        {"0", 0},
            {"2 s", 2000},    {"0ms", 0},            {"90s", 90000}};
  static const char *const bad[] = {"2x",   "-1s", "1.5s", "ms", "", "2S", "s2",
                                    "1 m s", "2us", "99999999999999999999h", "1e3"};
  int64_t v;
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    assert_int_equal(mprpc_parse_duration_ms(ok[i].s, &v), 0);
    assert_int_equal(v, ok[i].ms);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (mprpc_parse_duration_ms(bad[i], &v) == 0) {
      fprintf(stderr, "accepted bad duration '%s'\n", bad[i]);
      fail();
    }
  }
  mprpc_config_t *cfg = parse_ok("timeout = 250ms\nidle_timeout = forever\n");
  assert_int_equal(mprpc_config_get_duration_ms(cfg, "timeout", 1000, &v), 0);
  assert_int_equal(v, 250);
  assert_int_equal(mprpc_config_get_duration_ms(cfg, "connect_timeout", 1000, &v), 0);
  assert_int_equal(v, 1000);
  assert_int_equal(mprpc_config_get_duration_ms(cfg, "idle_timeout", 1000, &v), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg),
                         "<string>:2: key 'idle_timeout': invalid value 'forever'"));
  mprpc_config_free(cfg);
}

static void test_config_get_size(void **state) {
  (void)state;
  static const struct {
    const char *s;
    uint64_t v;
  } ok[] = {{"512", 512},
            {"512B", 512},
            {"64KiB", 65536},
            {"64kib", 65536},
            {"1MiB", 1048576},
            {"1GiB", 1073741824ull},
            {"2TiB", 2ull << 40},
            {"1K", 1024},
            {"1M", 1048576},
            {"1G", 1073741824ull},
            {"10KB", 10000},
            {"10MB", 10000000},
            {"1 MiB", 1048576},
            {"0", 0}};
  static const char *const bad[] = {"1.5MiB", "MiB", "-1", "12 parsecs", "", "20000000TiB",
                                    "1 M B", "0x10", "1KiBB"};
  uint64_t v;
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    assert_int_equal(mprpc_parse_size(ok[i].s, &v), 0);
    assert_true(v == ok[i].v);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (mprpc_parse_size(bad[i], &v) == 0) {
      fprintf(stderr, "accepted bad size '%s'\n", bad[i]);
      fail();
    }
  }
  mprpc_config_t *cfg = parse_ok("max_body_size = 64MiB\nlog_max_bytes = lots\n");
  assert_int_equal(mprpc_config_get_size(cfg, "max_body_size", 1, &v), 0);
  assert_true(v == 64ull << 20);
  assert_int_equal(mprpc_config_get_size(cfg, "absent", 77, &v), 0);
  assert_true(v == 77);
  assert_int_equal(mprpc_config_get_size(cfg, "log_max_bytes", 1, &v), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg),
                         "<string>:2: key 'log_max_bytes': invalid value 'lots'"));
  mprpc_config_free(cfg);
}

static void test_config_get_hostport(void **state) {
  (void)state;
  mprpc_hostport_t hp;
  assert_int_equal(mprpc_parse_hostport("127.0.0.1:8000", false, &hp), 0);
  assert_string_equal(hp.host, "127.0.0.1");
  assert_int_equal(hp.port, 8000);
  assert_int_equal(hp.family, 4);
  assert_int_equal(mprpc_parse_hostport("[::1]:9000", false, &hp), 0);
  assert_string_equal(hp.host, "::1");
  assert_int_equal(hp.port, 9000);
  assert_int_equal(hp.family, 6);
  assert_int_equal(mprpc_parse_hostport("[fe80::1:2]:1", false, &hp), 0);
  assert_int_equal(mprpc_parse_hostport("zk-1.example.com:2181", false, &hp), 0);
  assert_string_equal(hp.host, "zk-1.example.com");
  assert_int_equal(hp.family, 0);
  assert_int_equal(mprpc_parse_hostport("localhost:65535", false, &hp), 0);
  assert_int_equal(hp.port, 65535);
  assert_int_equal(mprpc_parse_hostport("localhost:0", true, &hp), 0);
  assert_int_equal(mprpc_parse_hostport("localhost:0", false, &hp), MPRPC_EINVAL);
  static const char *const bad[] = {
      "127.0.0.1",   "::1:80",     "[::1]",     "[::1]80",   "host:65536", "host:-1",
      "host:+1",     ":80",        "256.1.1.1:80", "bad host:80", "[1.2.3.4]:80", "a..b:80",
      "-a.com:1",    "a-.com:1",   "host:",     "host:80x",  "[]:80",     "1.2.3:80",
      "h:80:90",     "[::1]:",     ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (mprpc_parse_hostport(bad[i], true, &hp) == 0) {
      fprintf(stderr, "accepted bad host:port '%s'\n", bad[i]);
      fail();
    }
  }
  mprpc_config_t *cfg = parse_ok("listen = [::]:0\nbad = example.com\n");
  assert_int_equal(mprpc_config_get_hostport(cfg, "listen", NULL, &hp), 0);
  assert_string_equal(hp.host, "::");
  assert_int_equal(mprpc_config_get_hostport(cfg, "absent", NULL, &hp), MPRPC_ENOTFOUND);
  assert_int_equal(mprpc_config_get_hostport(cfg, "absent", "127.0.0.1:1", &hp), 0);
  assert_int_equal(hp.port, 1);
  assert_int_equal(mprpc_config_get_hostport(cfg, "bad", NULL, &hp), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg),
                         "<string>:2: key 'bad': invalid value 'example.com'"));
  mprpc_config_free(cfg);
}

/* ---- seed keys ------------------------------------------------------------ */

static void test_config_registry_uri(void **state) {
  (void)state;
  char uri[128];
  mprpc_config_t *cfg = parse_ok("zookeeperip=127.0.0.1\nzookeeperport=2182\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), 0);
  assert_string_equal(uri, "zk://127.0.0.1:2182");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, 10), MPRPC_ENAMETOOLONG);
  /* registry= wins */
  assert_int_equal(mprpc_config_set(cfg, "registry", "file:///tmp/endpoints"), 0);
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), 0);
  assert_string_equal(uri, "file:///tmp/endpoints");
  mprpc_config_free(cfg);

  cfg = parse_ok("zookeeperip = zk.local\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), 0);
  assert_string_equal(uri, "zk://zk.local:2181"); /* default port */
  mprpc_config_free(cfg);

  cfg = parse_ok("zookeeperip = ::1\nzookeeperport = 2181\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), 0);
  assert_string_equal(uri, "zk://[::1]:2181");
  mprpc_config_free(cfg);

  cfg = parse_ok("zookeeperip = 127.0.0.1\nzookeeperport = 99999\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg), "<string>:2: key 'zookeeperport'"));
  mprpc_config_free(cfg);

  cfg = parse_ok("zookeeperip = not an ip\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), MPRPC_ECONFIG);
  mprpc_config_free(cfg);

  cfg = parse_ok("registry = 127.0.0.1:2181\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), MPRPC_ECONFIG);
  mprpc_config_free(cfg);

  cfg = parse_ok("other=1\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), MPRPC_ENOTFOUND);
  mprpc_config_free(cfg);
}

static void test_config_server_addr(void **state) {
  (void)state;
  mprpc_hostport_t hp;
  mprpc_config_t *cfg = parse_ok("rpcserverip=127.0.0.1\nrpcserverport=8000\n");
  assert_int_equal(mprpc_config_server_addr(cfg, &hp), 0);
  assert_string_equal(hp.host, "127.0.0.1");
  assert_int_equal(hp.port, 8000);
  mprpc_config_free(cfg);
  cfg = parse_ok("rpcserverip=127.0.0.1\n");
  assert_int_equal(mprpc_config_server_addr(cfg, &hp), 0);
  assert_int_equal(hp.port, 0);
  mprpc_config_free(cfg);
  cfg = parse_ok("rpcserverip=127.0.0.1\nrpcserverport=eighty\n");
  assert_int_equal(mprpc_config_server_addr(cfg, &hp), MPRPC_ECONFIG);
  mprpc_config_free(cfg);
  cfg = parse_ok("rpcserverport=80\n");
  assert_int_equal(mprpc_config_server_addr(cfg, &hp), MPRPC_ENOTFOUND);
  mprpc_config_free(cfg);
}

static void test_config_warn_unused(void **state) {
  (void)state;
  mprpc_config_t *cfg = parse_ok("threads=4\nthraeds=8\n");
  int64_t v;
  assert_int_equal(mprpc_config_get_int(cfg, "threads", 1, 1, 64, &v), 0);
  capture_stderr();
  size_t n = mprpc_config_warn_unused(cfg);
  char *err = release_stderr();
  assert_int_equal(n, 1);
  assert_non_null(strstr(err, "<string>:2: unknown key 'thraeds'"));
  mprpc_config_free(cfg);
}

/* ---- mprpc_app_init ------------------------------------------------------- */

static int app_init(char **argv, mprpc_config_t **cfg, char **err_out) {
  int argc = 0;
  while (argv[argc])
    argc++;
  capture_stderr();
  int rc = mprpc_app_init(argc, argv, cfg);
  *err_out = release_stderr();
  return rc;
}

static void test_config_app_init_with_i(void **state) {
  (void)state;
  static const char text[] = "rpcserverip=127.0.0.1\nrpcserverport=8000\n";
  const char *path = write_file("app.conf", text, sizeof text - 1);
  char arg[320];
  mprpc_config_t *cfg;
  char *err;
  char *argv1[] = {"provider", "-i", (char *)path, NULL};
  assert_int_equal(app_init(argv1, &cfg, &err), 0);
  assert_non_null(cfg);
  assert_string_equal(mprpc_config_get(cfg, "rpcserverport"), "8000");
  assert_string_equal(err, "");
  mprpc_config_free(cfg);

  snprintf(arg, sizeof arg, "-i%s", path);
  char *argv2[] = {"provider", arg, NULL};
  assert_int_equal(app_init(argv2, &cfg, &err), 0);
  mprpc_config_free(cfg);

  snprintf(arg, sizeof arg, "--config=%s", path);
  char *argv3[] = {"provider", arg, NULL};
  assert_int_equal(app_init(argv3, &cfg, &err), 0);
  mprpc_config_free(cfg);
}

static void test_config_app_init_without_i(void **state) {
  (void)state;
  mprpc_config_t *cfg = (mprpc_config_t *)1;
  char *err;
  char *argv[] = {"/usr/bin/consumer", NULL};
  assert_int_equal(app_init(argv, &cfg, &err), MPRPC_EINVAL);
  assert_null(cfg);
  assert_non_null(strstr(err, "consumer: error: no config file given"));
  assert_non_null(strstr(err, "usage: consumer -i CONFIG_FILE"));

  char *argv2[] = {"consumer", "-i", NULL};
  assert_int_equal(app_init(argv2, &cfg, &err), MPRPC_EINVAL);
  assert_non_null(strstr(err, "usage:"));

  char *argv3[] = {"consumer", "--frobnicate", NULL};
  assert_int_equal(app_init(argv3, &cfg, &err), MPRPC_EINVAL);
  assert_non_null(strstr(err, "unknown argument '--frobnicate'"));
  assert_non_null(strstr(err, "usage:"));
}

static void test_config_app_init_unreadable_or_bad_file(void **state) {
  (void)state;
  char path[300];
  snprintf(path, sizeof path, "%s/missing.conf", tmpdir);
  mprpc_config_t *cfg;
  char *err;
  char *argv[] = {"provider", "-i", path, NULL};
  assert_int_equal(app_init(argv, &cfg, &err), MPRPC_ENOENT);
  assert_null(cfg);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "usage:"));

  static const char text[] = "rpcserverip=127.0.0.1\nrpcserverport\n";
  const char *bad = write_file("bad.conf", text, sizeof text - 1);
  char *argv2[] = {"provider", "-i", (char *)bad, NULL};
  assert_int_equal(app_init(argv2, &cfg, &err), MPRPC_ECONFIG);
  assert_null(cfg);
  char want[400];
  snprintf(want, sizeof want, "provider: error: %s:2: expected key=value", bad);
  assert_non_null(strstr(err, want));
}

static void test_config_app_init_help(void **state) {
  (void)state;
  mprpc_config_t *cfg;
  char *err;
  char *argv[] = {"provider", "-h", NULL};
  assert_int_equal(app_init(argv, &cfg, &err), MPRPC_ECANCELED);
  assert_null(cfg);
}

static void test_config_app_init_applies_log_keys(void **state) {
  (void)state;
  char logpath[300], text[700];
  snprintf(logpath, sizeof logpath, "%s/app.log", tmpdir);
  strcpy(files[nfiles++], logpath);
  snprintf(text, sizeof text,
           "log_level = info\nlog_file = %s\nlog_max_bytes = 1MiB\nlog_keep = 2\nlog_sync = on\n",
           logpath);
  const char *path = write_file("log.conf", text, strlen(text));
  mprpc_config_t *cfg;
  char *err;
  char *argv[] = {"provider", "-i", (char *)path, NULL};
  assert_int_equal(app_init(argv, &cfg, &err), 0);
  assert_int_equal(mprpc_log_get_level(), MPRPC_LOG_LEVEL_INFO);
  MPRPC_LOG_INFO("configured from %s", "file");
  FILE *f = fopen(logpath, "r");
  assert_non_null(f);
  char line[512] = "";
  assert_non_null(fgets(line, sizeof line, f));
  fclose(f);
  assert_non_null(strstr(line, " INFO  "));
  assert_non_null(strstr(line, "configured from file\n"));
  mprpc_config_free(cfg);
  mprpc_log_close();
  mprpc_log_set_level(MPRPC_LOG_LEVEL_WARN);

  static const char bad[] = "log_level = chatty\n";
  const char *bpath = write_file("badlog.conf", bad, sizeof bad - 1);
  char *argv2[] = {"provider", "-i", (char *)bpath, NULL};
  assert_int_equal(app_init(argv2, &cfg, &err), MPRPC_ECONFIG);
  assert_non_null(strstr(err, ":1: key 'log_level': invalid value 'chatty'"));
}

static void test_config_registry_cache_joins_zk_uri(void **state) {
  (void)state;
  char uri[256];
  mprpc_config_t *cfg = parse_ok("zookeeperip=127.0.0.1\nzookeeperport=2182\n"
                                 "registry_cache=/var/tmp/mprpc.cache\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), 0);
  assert_string_equal(uri, "zk://127.0.0.1:2182?cache=/var/tmp/mprpc.cache");
  mprpc_config_free(cfg);
  cfg = parse_ok("registry=zk://a:1,b:2/chroot?session_timeout=3000\nregistry_cache=/c\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), 0);
  assert_string_equal(uri, "zk://a:1,b:2/chroot?session_timeout=3000&cache=/c");
  mprpc_config_free(cfg);
  /* only ZooKeeper has a cache; other registries are left as written */
  cfg = parse_ok("registry=static://h:1\nregistry_cache=/c\n");
  assert_int_equal(mprpc_config_registry_uri(cfg, uri, sizeof uri), 0);
  assert_string_equal(uri, "static://h:1");
  mprpc_config_free(cfg);
}

static void test_config_get_choice(void **state) {
  (void)state;
  static const char *const names[] = {"red", "green"};
  mprpc_config_t *cfg = parse_ok("a=green\nb=blue\n");
  int v = -1;
  assert_int_equal(mprpc_config_get_choice(cfg, "a", names, 2, &v), 0);
  assert_int_equal(v, 1);
  v = -1;
  assert_int_equal(mprpc_config_get_choice(cfg, "missing", names, 2, &v), 0);
  assert_int_equal(v, -1);
  assert_int_equal(mprpc_config_get_choice(cfg, "b", names, 2, &v), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg), "key 'b': invalid value 'blue': expected one of red|green"));
  mprpc_config_free(cfg);
}

static void test_config_channel_options(void **state) {
  (void)state;
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  mprpc_config_t *cfg = parse_ok("timeout=2s\nconnect_timeout=250ms\nmax_retry=5\n"
                                 "retry_policy=failfast\nlb=least\nbackup_request=30ms\n"
                                 "idempotent_methods=Echo,Get\nservers=127.0.0.1:1,127.0.0.1:2\n"
                                 "compress=gzip\n");
  assert_int_equal(mprpc_channel_opts_from_config(cfg, &o), 0);
  assert_int_equal(o.timeout_ms, 2000);
  assert_int_equal(o.connect_timeout_ms, 250);
  assert_int_equal(o.max_retry, 5);
  assert_int_equal(o.retry_policy, MPRPC_RETRY_FAILFAST);
  assert_int_equal(o.lb, MPRPC_LB_LEAST);
  assert_int_equal(o.backup_request_ms, 30);
  assert_string_equal(o.idempotent_methods, "Echo,Get");
  assert_string_equal(o.servers, "127.0.0.1:1,127.0.0.1:2");
  assert_int_equal(o.compress_type, MPRPC_COMPRESS_GZIP);
  mprpc_config_free(cfg);

  /* absent keys keep the defaults */
  mprpc_channel_opts_t d, e;
  mprpc_channel_opts_init(&d);
  mprpc_channel_opts_init(&e);
  cfg = parse_ok("# nothing for the channel\nrpcserverip=127.0.0.1\n");
  assert_int_equal(mprpc_channel_opts_from_config(cfg, &e), 0);
  assert_memory_equal(&d, &e, sizeof d);
  mprpc_config_free(cfg);

  /* bad values name key, value and line */
  cfg = parse_ok("lb=fastest\n");
  assert_int_equal(mprpc_channel_opts_from_config(cfg, &e), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg), "key 'lb': invalid value 'fastest'"));
  mprpc_config_free(cfg);
  cfg = parse_ok("\nmax_retry=1000\n");
  assert_int_equal(mprpc_channel_opts_from_config(cfg, &e), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg), "max_retry"));
  mprpc_config_free(cfg);
  cfg = parse_ok("compress=lz4\n");
  assert_int_equal(mprpc_channel_opts_from_config(cfg, &e), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(cfg), "key 'compress': invalid value 'lz4'"));
  mprpc_config_free(cfg);
  cfg = parse_ok("timeout=soon\n");
  assert_int_equal(mprpc_channel_opts_from_config(cfg, &e), MPRPC_ECONFIG);
  mprpc_config_free(cfg);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_config_keys_comments_blanks_and_trimming),
      T(test_config_crlf_and_missing_final_newline),
      T(test_config_very_long_lines),
      T(test_config_duplicate_overrides_with_warning),
      T(test_config_line_without_equals_names_file_and_line),
      T(test_config_malformed_lines),
      T(test_config_unreadable_file),
      T(test_config_set_and_entries),
      T(test_config_get_string_and_default),
      T(test_config_get_int),
      T(test_config_get_bool),
      T(test_config_get_duration),
      T(test_config_get_size),
      T(test_config_get_hostport),
      T(test_config_registry_uri),
      T(test_config_server_addr),
      T(test_config_warn_unused),
      T(test_config_app_init_with_i),
      T(test_config_app_init_without_i),
      T(test_config_app_init_unreadable_or_bad_file),
      T(test_config_app_init_help),
      T(test_config_app_init_applies_log_keys),
      T(test_config_registry_cache_joins_zk_uri),
      T(test_config_get_choice),
      T(test_config_channel_options),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
