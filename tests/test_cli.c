/*
 * The `mprpc` command (build/bin/mprpc) run as a subprocess against real
 * providers: one in this process (echo + mprpc.Reflection on a free
 * port), build/bin/echo_server (no reflection: the --proto path), and a
 * canned HTTP server for status/metrics. Checks what scripts rely on:
 * stdout, the stderr error line and the exit code (docs/cli.md).
 *
 * Needs `make build/bin/mprpc build/bin/echo_server` (make test builds
 * them) and protoc. No assertion depends on timing; waits are hang guards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/reflection.h"
#include "mprpc/server.h"
#include "support/test_provider.h"

#ifndef MPRPC_BIN
#define MPRPC_BIN "build/bin/mprpc"
#endif

static char g_tmp[64];
static char g_addr[64]; /* the in-process provider */
static mprpc_server_t *g_srv;
static ProtobufCService *g_refl;

static void echo_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                      Example__EchoResponse_Closure done, void *data) {
  (void)svc;
  mprpc_server_call_t *call = mprpc_server_call_from(data);
  size_t alen = 0;
  const uint8_t *att = mprpc_server_call_attachment(call, &alen);
  if (alen)
    mprpc_server_call_set_attachment(call, att, alen);
  if (strcmp(in->message, "fail") == 0)
    mprpc_server_call_set_error(call, 5000, "asked to fail");
  if (strcmp(in->message, "fail3012") == 0) /* mprpc's ENOENDPOINT as a local code */
    mprpc_server_call_set_error(call, 3012, "asked to fail");
  Example__EchoResponse r = EXAMPLE__ECHO_RESPONSE__INIT;
  r.message = in->message;
  done(&r, data);
}
static Example__EchoService_Service g_echo = EXAMPLE__ECHO_SERVICE__INIT(echo_);

static int setup(void **state) {
  (void)state;
  mprpc_log_set_level(MPRPC_LOG_LEVEL_WARN);
  if (access(MPRPC_BIN, X_OK) != 0) {
    fprintf(stderr, "test_cli: %s missing (make build/bin/mprpc)\n", MPRPC_BIN);
    return -1;
  }
  snprintf(g_tmp, sizeof g_tmp, "/tmp/test_cli.%d", (int)getpid());
  char cmd[128];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", g_tmp);
  if (system(cmd) != 0)
    return -1;
  ProtobufCService *svcs[] = {&g_echo.base};
  if (mprpc_reflection_service_new(svcs, 1, &g_refl) != 0)
    return -1;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.threads = 1;
  ProtobufCService *served[] = {&g_echo.base, g_refl};
  return test_provider_start(&o, served, 2, &g_srv, g_addr, sizeof g_addr) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  mprpc_server_destroy(g_srv);
  protobuf_c_service_destroy(g_refl);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
  return system(cmd) == 0 ? 0 : -1;
}

typedef struct run {
  int rc;
  char out[65536];
  char err[8192];
} run_t;

static void slurp(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
  buf[n] = 0;
  if (f)
    fclose(f);
}

/* Runs mprpc with args (NULL-terminated), stdin from in_text when given. */
static void run_mprpc(run_t *r, const char *in_text, ...) {
  const char *argv[40];
  int argc = 0;
  argv[argc++] = MPRPC_BIN;
  va_list ap;
  va_start(ap, in_text);
  const char *a;
  while ((a = va_arg(ap, const char *)) && argc < 39)
    argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;
  char outp[128], errp[128], inp[128];
  snprintf(outp, sizeof outp, "%s/out", g_tmp);
  snprintf(errp, sizeof errp, "%s/err", g_tmp);
  snprintf(inp, sizeof inp, "%s/in", g_tmp);
  if (in_text) {
    FILE *f = fopen(inp, "wb");
    fputs(in_text, f);
    fclose(f);
  }
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int i = open(in_text ? inp : "/dev/null", O_RDONLY);
    dup2(o, 1);
    dup2(e, 2);
    dup2(i, 0);
    execv(MPRPC_BIN, (char *const *)argv);
    _exit(127);
  }
  int status = 0;
  for (int waited = 0;; waited++) { /* hang guard: 120 s */
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid)
      break;
    if (waited > 12000) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fail_msg("mprpc %s did not finish", argv[1]);
    }
    usleep(10000);
  }
  r->rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  slurp(outp, r->out, sizeof r->out);
  slurp(errp, r->err, sizeof r->err);
}

static void expect(const run_t *r, int rc, const char *out_has, const char *err_has) {
  if (r->rc != rc || (out_has && !strstr(r->out, out_has)) || (err_has && !strstr(r->err, err_has)))
    fprintf(stderr, "rc=%d\nstdout:\n%s\nstderr:\n%s\n", r->rc, r->out, r->err);
  assert_int_equal(r->rc, rc);
  if (out_has)
    assert_non_null(strstr(r->out, out_has));
  if (err_has)
    assert_non_null(strstr(r->err, err_has));
}

/* ---- call ------------------------------------------------------------------ */

static void test_cli_call_prints_json(void **state) {
  (void)state;
  run_t *r = malloc(sizeof *r);
  run_mprpc(r, NULL, "call", g_addr, "example.EchoService.Echo", "{\"message\":\"hello\"}", NULL);
  expect(r, 0, NULL, NULL);
  assert_string_equal(r->out, "{\"message\":\"hello\"}\n");
  assert_string_equal(r->err, "");
  /* request from a file, from stdin; pretty output; attachment echoed */
  char path[128];
  snprintf(path, sizeof path, "%s/req.json", g_tmp);
  FILE *f = fopen(path, "w");
  fputs("{\"message\": \"from file\"}\n", f);
  fclose(f);
  char at[140];
  snprintf(at, sizeof at, "@%s", path);
  run_mprpc(r, NULL, "call", g_addr, "example.EchoService.Echo", at, NULL);
  expect(r, 0, "{\"message\":\"from file\"}", NULL);
  run_mprpc(r, "{\"message\":\"stdin\"}", "call", "--pretty", g_addr, "example.EchoService.Echo",
            "-", NULL);
  expect(r, 0, "{\n  \"message\": \"stdin\"\n}\n", NULL);
  run_mprpc(r, NULL, "call", g_addr, "example.EchoService.Echo", "{\"message\":\"a\"}",
            "--attachment", "ATT", "--show-attachment", "--compress", "gzip", "--timeout-ms",
            "5000", "--max-retry", "1", NULL);
  expect(r, 0, NULL, NULL);
  assert_string_equal(r->out, "{\"message\":\"a\"}\nATT\n");
  /* the reflection service calls itself */
  run_mprpc(r, NULL, "call", g_addr, "mprpc.Reflection.ListServices", NULL);
  expect(r, 0, "{\"service\":[\"example.EchoService\",\"mprpc.Reflection\"]}", NULL);
  free(r);
}

static void test_cli_call_framework_errors_exit_1(void **state) {
  (void)state;
  run_t *r = malloc(sizeof *r);
  run_mprpc(r, NULL, "call", g_addr, "no.Such.Echo", "{}", NULL);
  expect(r, 1, NULL, "error 1001 ENOSERVICE: no service no.Such at ");
  assert_string_equal(r->out, "");
  run_mprpc(r, NULL, "call", g_addr, "example.EchoService.Nope", "{}", NULL);
  expect(r, 1, NULL, "error 1002 ENOMETHOD: service example.EchoService has no method Nope");
  /* an application error code from the handler */
  run_mprpc(r, NULL, "call", g_addr, "example.EchoService.Echo", "{\"message\":\"fail\"}", NULL);
  expect(r, 1, NULL, "error 5000 EAPP: ");
  assert_non_null(strstr(r->err, "asked to fail"));
  /* one whose number is also one of mprpc's local codes is still the
   * application's */
  run_mprpc(r, NULL, "call", g_addr, "example.EchoService.Echo", "{\"message\":\"fail3012\"}",
            NULL);
  expect(r, 1, NULL, "error 3012 EAPP: ");
  /* nothing listens there */
  run_mprpc(r, NULL, "call", "127.0.0.1:1", "example.EchoService.Echo", "{\"message\":\"x\"}", "--proto",
            "examples/echo/echo.proto", "--timeout-ms", "2000", NULL);
  expect(r, 1, NULL, "error ");
  assert_int_equal(strncmp(r->err, "error ", 6), 0);
  free(r);
}

static void test_cli_call_usage_and_json_errors_exit_2(void **state) {
  (void)state;
  run_t *r = malloc(sizeof *r);
  run_mprpc(r, NULL, NULL);
  expect(r, 2, NULL, "usage: mprpc VERB");
  run_mprpc(r, NULL, "frobnicate", NULL);
  expect(r, 2, NULL, "unknown verb 'frobnicate'");
  run_mprpc(r, NULL, "call", g_addr, NULL);
  expect(r, 2, NULL, "usage: mprpc call");
  run_mprpc(r, NULL, "call", g_addr, "Echo", "{}", NULL);
  expect(r, 2, NULL, "expected SERVICE.METHOD");
  run_mprpc(r, NULL, "call", g_addr, "example.EchoService.Echo", "{\"mesage\":\"x\"}", NULL);
  expect(r, 2, NULL, "request JSON for example.EchoRequest: mesage");
  run_mprpc(r, NULL, "call", g_addr, "example.EchoService.Echo", "{\"message\":", NULL);
  expect(r, 2, NULL, "request JSON for example.EchoRequest");
  run_mprpc(r, NULL, "call", g_addr, "example.EchoService.Echo", "{}", NULL);
  expect(r, 2, NULL, "message"); /* the required field is named */
  run_mprpc(r, NULL, "call", g_addr, "example.EchoService.Echo", "{}", "--timeout-ms", "soon",
            NULL);
  expect(r, 2, NULL, "--timeout-ms 'soon'");
  run_mprpc(r, NULL, "call", g_addr, "example.EchoService.Echo", "{}", "--compress", "lz4", NULL);
  expect(r, 2, NULL, "--compress 'lz4'");
  run_mprpc(r, NULL, "call", g_addr, "example.EchoService.Echo", "{}", "--proto", "/no/such.proto",
            NULL);
  expect(r, 2, NULL, "--proto /no/such.proto");
  run_mprpc(r, NULL, "call", "zk://", "example.EchoService.Echo", "{}", NULL);
  expect(r, 2, NULL, "registry zk://");
  free(r);
}

static void test_cli_help_for_every_verb(void **state) {
  (void)state;
  run_t *r = malloc(sizeof *r);
  const char *verbs[] = {"call", "describe", "list", "press", "status", "metrics"};
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
    run_mprpc(r, NULL, verbs[i], "--help", NULL);
    expect(r, 0, "usage: mprpc ", NULL);
  }
  run_mprpc(r, NULL, "--help", NULL);
  expect(r, 0, "usage: mprpc VERB", NULL);
  free(r);
}

/* echo_server has no reflection: --proto supplies the descriptors, and a
 * service the provider lacks gets the provider's own ENOSERVICE. */
/* Starts build/bin/echo_server (with -i cfg when cfg is not NULL) and
 * returns its port; *pid is the child to kill. */
static unsigned start_echo_server(const char *cfg, pid_t *pid) {
  char outp[128];
  snprintf(outp, sizeof outp, "%s/echo_server.out", g_tmp);
  unlink(outp);
  *pid = fork();
  assert_true(*pid >= 0);
  if (*pid == 0) {
    int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(o, 2);
    if (cfg)
      execl("build/bin/echo_server", "echo_server", "--listen", "127.0.0.1:0", "-i", cfg,
            (char *)NULL);
    else
      execl("build/bin/echo_server", "echo_server", "--listen", "127.0.0.1:0", (char *)NULL);
    _exit(127);
  }
  char text[512] = "";
  unsigned port = 0;
  for (int i = 0; i < 3000 && !port; i++) { /* hang guard: 30 s */
    slurp(outp, text, sizeof text);
    const char *p = strstr(text, "listening on 127.0.0.1:");
    if (p)
      port = (unsigned)atoi(p + strlen("listening on 127.0.0.1:"));
    else
      usleep(10000);
  }
  assert_int_not_equal(port, 0);
  return port;
}

static void stop_echo_server(pid_t pid) {
  kill(pid, SIGTERM);
  int st;
  waitpid(pid, &st, 0);
}

static void test_cli_call_proto_path(void **state) {
  (void)state;
  /* a provider with reflection turned off: only --proto can call it */
  char cfg[128];
  snprintf(cfg, sizeof cfg, "%s/noreflect.conf", g_tmp);
  FILE *cf = fopen(cfg, "w");
  assert_non_null(cf);
  fputs("reflection = off\n", cf);
  fclose(cf);
  pid_t pid;
  unsigned port = start_echo_server(cfg, &pid);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
  run_t *r = malloc(sizeof *r);
  run_mprpc(r, NULL, "call", addr, "example.EchoService.Echo", "{\"message\":\"p\"}", "--proto",
            "examples/echo/echo.proto", NULL);
  expect(r, 0, NULL, NULL);
  assert_string_equal(r->out, "{\"message\":\"p\"}\n");
  /* without --proto: no reflection there */
  run_mprpc(r, NULL, "call", addr, "example.EchoService.Echo", "{\"message\":\"p\"}", NULL);
  expect(r, 1, NULL, "error 1001 ENOSERVICE: ");
  assert_non_null(strstr(r->err, "give --proto FILE"));
  /* a proto of a service the provider does not have */
  char proto[128];
  snprintf(proto, sizeof proto, "%s/other.proto", g_tmp);
  FILE *f = fopen(proto, "w");
  fputs("syntax = \"proto3\";\npackage other;\nmessage Q { string s = 1; }\n"
        "service Missing { rpc Ask(Q) returns (Q); }\n",
        f);
  fclose(f);
  run_mprpc(r, NULL, "call", addr, "other.Missing.Ask", "{\"s\":\"x\"}", "--proto", proto, NULL);
  expect(r, 1, NULL, "error 1001 ENOSERVICE: ");
  run_mprpc(r, NULL, "call", addr, "other.Missing.Nope", "{}", "--proto", proto, NULL);
  expect(r, 2, NULL, "service other.Missing has no method Nope");
  run_mprpc(r, NULL, "describe", addr, "--proto", "examples/echo/echo.proto", NULL);
  expect(r, 0, "service example.EchoService\n", NULL);
  stop_echo_server(pid);
  /* by default a provider serves reflection: no --proto needed */
  port = start_echo_server(NULL, &pid);
  snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
  run_mprpc(r, NULL, "call", addr, "example.EchoService.Echo", "{\"message\":\"r\"}", NULL);
  expect(r, 0, NULL, NULL);
  assert_string_equal(r->out, "{\"message\":\"r\"}\n");
  run_mprpc(r, NULL, "describe", addr, NULL);
  expect(r, 0, "service example.EchoService\n", NULL);
  free(r);
  stop_echo_server(pid);
}

/* ---- describe, list ---------------------------------------------------------- */

static void test_cli_describe(void **state) {
  (void)state;
  run_t *r = malloc(sizeof *r);
  run_mprpc(r, NULL, "describe", g_addr, "example.EchoService", NULL);
  expect(r, 0, NULL, NULL);
  assert_string_equal(r->out, "service example.EchoService\n"
                              "  rpc Echo(example.EchoRequest) returns (example.EchoResponse);\n"
                              "message example.EchoRequest\n"
                              "  required string message = 1;\n"
                              "message example.EchoResponse\n"
                              "  required string message = 1;\n");
  run_mprpc(r, NULL, "describe", g_addr, NULL);
  expect(r, 0, "service mprpc.Reflection\n  rpc ListServices(mprpc.ListServicesRequest) returns "
               "(mprpc.ListServicesResponse);\n",
         NULL);
  assert_non_null(strstr(r->out, "  repeated string service = 1;\n"));
  run_mprpc(r, NULL, "describe", g_addr, "no.Such", NULL);
  expect(r, 1, NULL, "error 1001 ENOSERVICE: no service no.Such");
  free(r);
}

static void test_cli_list_static(void **state) {
  (void)state;
  run_t *r = malloc(sizeof *r);
  char uri[96], want[400];
  snprintf(uri, sizeof uri, "static://%s", g_addr);
  run_mprpc(r, NULL, "list", uri, NULL);
  snprintf(want, sizeof want,
           "service example.EchoService providers=1 registry=HEALTHY\n"
           "  provider %s weight=100 version=- health=up\n"
           "service mprpc.Reflection providers=1 registry=HEALTHY\n"
           "  provider %s weight=100 version=- health=up\n",
           g_addr, g_addr);
  expect(r, 0, NULL, NULL);
  assert_string_equal(r->out, want);
  /* named services, weights from the URI, no probe */
  snprintf(uri, sizeof uri, "static://%s*7", g_addr);
  run_mprpc(r, NULL, "list", uri, "example.EchoService", "--no-probe", NULL);
  snprintf(want, sizeof want,
           "service example.EchoService providers=1 registry=HEALTHY\n"
           "  provider %s weight=7 version=- health=unknown\n",
           g_addr);
  expect(r, 0, NULL, NULL);
  assert_string_equal(r->out, want);
  /* zk:// without names: the registry's services (needs a ZooKeeper) */
  const char *zk = getenv("MPRPC_TEST_ZK");
  if (zk && *zk) {
    char chroot_uri[256];
    snprintf(chroot_uri, sizeof chroot_uri, "zk://%s/mprpc-cli-list-%ld", zk, (long)getpid());
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      execl("build/bin/echo_server", "echo_server", "--listen", "127.0.0.1:0", "--registry",
            chroot_uri, (char *)NULL);
      _exit(127);
    }
    bool listed = false;
    for (int i = 0; i < 100 && !listed; i++) { /* hang guard: 10 s */
      run_mprpc(r, NULL, "list", chroot_uri, "--no-probe", NULL);
      listed = r->rc == 0 && strstr(r->out, "service example.EchoService providers=1 ");
      if (!listed)
        usleep(100000);
    }
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    assert_true(listed);
    assert_null(strstr(r->out, "mprpc.Reflection")); /* the builtin is never registered */
  }
  run_mprpc(r, NULL, "list", "zk://127.0.0.1:1?connect_timeout=200", NULL);
  expect(r, 1, NULL, NULL);
  free(r);
}

static void test_cli_list_file(void **state) {
  (void)state;
  char path[128], uri[160];
  snprintf(path, sizeof path, "%s/endpoints.txt", g_tmp);
  FILE *f = fopen(path, "w");
  fprintf(f, "# a comment\nexample.EchoService %s weight=50 version=2.1\n"
             "example.Other 127.0.0.1:1 weight=1\n",
          g_addr);
  fclose(f);
  snprintf(uri, sizeof uri, "file://%s", path);
  run_t *r = malloc(sizeof *r);
  run_mprpc(r, NULL, "list", uri, NULL);
  char want[500];
  snprintf(want, sizeof want,
           "service example.EchoService providers=1 registry=HEALTHY\n"
           "  provider %s weight=50 version=2.1 health=up\n"
           "service example.Other providers=1 registry=HEALTHY\n"
           "  provider 127.0.0.1:1 weight=1 version=- health=down\n",
           g_addr);
  expect(r, 0, NULL, NULL);
  assert_string_equal(r->out, want);
  /* call through the registry: the channel's balancer */
  run_mprpc(r, NULL, "call", uri, "example.EchoService.Echo", "{\"message\":\"via file\"}", NULL);
  expect(r, 0, "{\"message\":\"via file\"}\n", NULL);
  free(r);
}

/* ---- press --------------------------------------------------------------------- */

static void check_press_output(const char *out, long seconds) {
  const char *line = out;
  for (long s = 1; s <= seconds; s++) {
    unsigned long long sent, ok, failed, qps, p50, p99;
    long el;
    int n = sscanf(line, "elapsed=%lds sent=%llu ok=%llu failed=%llu qps=%llu p50_us=%llu p99_us=%llu\n",
                   &el, &sent, &ok, &failed, &qps, &p50, &p99);
    if (n != 7)
      fprintf(stderr, "bad progress line: %s\n", line);
    assert_int_equal(n, 7);
    assert_int_equal(el, s);
    assert_int_equal(failed, 0);
    line = strchr(line, '\n');
    assert_non_null(line);
    line++;
  }
  unsigned long long sent, ok, failed, qps, p50, p99, p999, max;
  int n = sscanf(line,
                 "press total sent=%llu ok=%llu failed=%llu qps=%llu p50_us=%llu p99_us=%llu "
                 "p999_us=%llu max_us=%llu\n",
                 &sent, &ok, &failed, &qps, &p50, &p99, &p999, &max);
  if (n != 8)
    fprintf(stderr, "bad summary: %s\n", line);
  assert_int_equal(n, 8);
  assert_true(sent > 0);
  assert_int_equal(sent, ok);
  assert_int_equal(failed, 0);
  assert_true(p50 <= p99 && p99 <= p999 && p999 <= max);
}

static void test_cli_press_lines(void **state) {
  (void)state;
  run_t *r = malloc(sizeof *r);
  run_mprpc(r, NULL, "press", g_addr, "example.EchoService.Echo", "{\"message\":\"x\"}",
            "--duration", "1", "--concurrency", "2", NULL);
  expect(r, 0, NULL, NULL);
  check_press_output(r->out, 1);
  /* open loop, requests from a file round robin, histogram */
  char path[128];
  snprintf(path, sizeof path, "%s/reqs.jsonl", g_tmp);
  FILE *f = fopen(path, "w");
  fputs("{\"message\":\"one\"}\n\n{\"message\":\"two\"}\n", f);
  fclose(f);
  run_mprpc(r, NULL, "press", g_addr, "example.EchoService.Echo", "--input", path, "--qps", "50",
            "--duration", "2", "--histogram", NULL);
  expect(r, 0, "press bucket le_us=", NULL);
  check_press_output(r->out, 2);
  /* bad line in the input names it */
  f = fopen(path, "w");
  fputs("{\"message\":\"one\"}\n{\"nope\":1}\n", f);
  fclose(f);
  run_mprpc(r, NULL, "press", g_addr, "example.EchoService.Echo", "--input", path, "--duration",
            "1", NULL);
  expect(r, 2, NULL, ":2: request JSON");
  run_mprpc(r, NULL, "press", g_addr, "example.EchoService.Echo", "{\"message\":\"x\"}", "--qps",
            "5", "--concurrency", "2", NULL);
  expect(r, 2, NULL, "not both");
  run_mprpc(r, NULL, "press", g_addr, "example.EchoService.Echo", "{\"message\":\"x\"}",
            "--duration", "0", NULL);
  expect(r, 2, NULL, "--duration '0'");
  /* every call fails: counted by code, exit 1 */
  run_mprpc(r, NULL, "press", g_addr, "example.EchoService.Echo", "{\"message\":\"fail\"}",
            "--duration", "1", NULL);
  expect(r, 1, "press error code=5000 name=EAPP count=", NULL);
  free(r);
}

/* ---- status, metrics ---------------------------------------------------------- */

typedef struct canned {
  int fd;
  const char *answer;
} canned_t;

static void *canned_thread(void *arg) {
  canned_t *c = arg;
  int s = accept(c->fd, NULL, NULL);
  if (s >= 0) {
    char buf[2048];
    size_t n = 0;
    while (n < sizeof buf - 1) { /* until the end of the request head */
      ssize_t got = read(s, buf + n, sizeof buf - 1 - n);
      if (got <= 0)
        break;
      n += (size_t)got;
      buf[n] = 0;
      if (strstr(buf, "\r\n\r\n"))
        break;
    }
    if (write(s, c->answer, strlen(c->answer)) < 0)
      perror("write");
    close(s);
  }
  return NULL;
}

static int canned_server(uint16_t *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 4), 0);
  socklen_t l = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &l);
  *port = ntohs(a.sin_port);
  return fd;
}

static void test_cli_status_and_metrics(void **state) {
  (void)state;
  run_t *r = malloc(sizeof *r);
  uint16_t port;
  char addr[64];
  canned_t c;
  pthread_t th;
  c.fd = canned_server(&port);
  snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
  c.answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
             "6\r\nuptime\r\n4\r\n=42\n\r\n0\r\n\r\n";
  pthread_create(&th, NULL, canned_thread, &c);
  run_mprpc(r, NULL, "status", addr, NULL);
  pthread_join(th, NULL);
  expect(r, 0, NULL, NULL);
  assert_string_equal(r->out, "uptime=42\n");
  c.answer = "HTTP/1.1 200 OK\r\nContent-Length: 22\r\n\r\nmprpc_calls_total 7\nxtrailing";
  pthread_create(&th, NULL, canned_thread, &c);
  run_mprpc(r, NULL, "metrics", addr, NULL);
  pthread_join(th, NULL);
  expect(r, 0, NULL, NULL);
  assert_string_equal(r->out, "mprpc_calls_total 7\nxt\n");
  c.answer = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  pthread_create(&th, NULL, canned_thread, &c);
  run_mprpc(r, NULL, "metrics", addr, NULL);
  pthread_join(th, NULL);
  expect(r, 1, NULL, "error: GET /metrics from ");
  assert_non_null(strstr(r->err, "HTTP/1.1 404 Not Found"));
  assert_string_equal(r->out, "");
  close(c.fd);
  run_mprpc(r, NULL, "status", "127.0.0.1:1", NULL);
  expect(r, 1, NULL, "error: GET /status: connect(127.0.0.1:1): ");
  run_mprpc(r, NULL, "status", "nonsense", NULL);
  expect(r, 2, NULL, "expected HOST:PORT");
  free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cli_call_prints_json),
      cmocka_unit_test(test_cli_call_framework_errors_exit_1),
      cmocka_unit_test(test_cli_call_usage_and_json_errors_exit_2),
      cmocka_unit_test(test_cli_help_for_every_verb),
      cmocka_unit_test(test_cli_call_proto_path),
      cmocka_unit_test(test_cli_describe),
      cmocka_unit_test(test_cli_list_static),
      cmocka_unit_test(test_cli_list_file),
      cmocka_unit_test(test_cli_press_lines),
      cmocka_unit_test(test_cli_status_and_metrics),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
