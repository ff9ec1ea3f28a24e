/*
 * The console over real TCP against build/bin/echo_server (run as a
 * subprocess, console on its service port by default): /metrics passes
 * `promtool check metrics`; a real Prometheus (loopback, 1 s scrape, its own
 * port and data directory) sees mprpc_server_requests_total reach the calls
 * made; headless Chromium renders /status with the service name and an SVG
 * chart (screenshot under build/); a channel-only process serves the client
 * metrics with mprpc_console_start. Each external program missing is a
 * cmocka skip that says which.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/console.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
#include "support/test_provider.h"

static char g_tmp[64];
static pid_t g_pid;
static unsigned g_port;

static bool have(const char *prog) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
  return system(cmd) == 0;
}

static void slurp(const char *path, char *buf, size_t cap) {
  buf[0] = 0;
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = 0;
  fclose(f);
}

/* One HTTP/1.1 request on a fresh connection; the answer's body in a
 * malloc'd string (caller frees), the status in *status. NULL on failure. */
static char *http(unsigned port, const char *method, const char *path, const char *body,
                  int *status) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return NULL;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return NULL;
  }
  char req[2048];
  int n = snprintf(req, sizeof req,
                   "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   method, path, body ? strlen(body) : 0, body ? body : "");
  if (write(fd, req, (size_t)n) != n) {
    close(fd);
    return NULL;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (len + 4096 > cap)
      buf = realloc(buf, cap *= 2);
    ssize_t r = read(fd, buf + len, cap - len - 1);
    if (r <= 0)
      break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = 0;
  *status = 0;
  sscanf(buf, "HTTP/1.1 %d", status);
  char *b = strstr(buf, "\r\n\r\n");
  char *out = strdup(b ? b + 4 : "");
  free(buf);
  return out;
}

static int setup(void **state) {
  (void)state;
  snprintf(g_tmp, sizeof g_tmp, "/tmp/mprpc_console_XXXXXX");
  assert_non_null(mkdtemp(g_tmp));
  if (access("build/bin/echo_server", X_OK) != 0) {
    fprintf(stderr, "test_console_tcp: build/bin/echo_server missing (make build/bin/echo_server)\n");
    return 0;
  }
  char outp[128];
  snprintf(outp, sizeof outp, "%s/echo_server.out", g_tmp);
  g_pid = fork();
  assert_true(g_pid >= 0);
  if (g_pid == 0) {
    int o = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(o, 2);
    execl("build/bin/echo_server", "echo_server", "--listen", "127.0.0.1:0", (char *)NULL);
    _exit(127);
  }
  char text[1024];
  for (int i = 0; i < 3000 && !g_port; i++) { /* hang guard: 30 s */
    slurp(outp, text, sizeof text);
    const char *p = strstr(text, "listening on 127.0.0.1:");
    if (p)
      g_port = (unsigned)atoi(p + strlen("listening on 127.0.0.1:"));
    else
      usleep(10000);
  }
  assert_int_not_equal(g_port, 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  if (g_pid > 0) {
    kill(g_pid, SIGTERM);
    int st;
    waitpid(g_pid, &st, 0);
  }
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
  if (system(cmd) != 0)
    fprintf(stderr, "test_console_tcp: could not remove %s\n", g_tmp);
  return 0;
}

#define NEED_SERVER()                                                                             \
  do {                                                                                            \
    if (!g_port)                                                                                  \
      skip();                                                                                     \
  } while (0)

static int json_calls(int n) {
  int ok = 0;
  for (int i = 0; i < n; i++) {
    int st;
    char *b = http(g_port, "POST", "/example.EchoService/Echo", "{\"message\":\"m\"}", &st);
    if (b && st == 200 && strcmp(b, "{\"message\":\"m\"}\n") == 0)
      ok++;
    free(b);
  }
  return ok;
}

static void test_console_tcp_pages_and_promtool(void **state) {
  (void)state;
  NEED_SERVER();
  int st;
  char *b = http(g_port, "GET", "/health", NULL, &st);
  assert_int_equal(st, 200);
  assert_string_equal(b, "OK\n");
  free(b);
  assert_int_equal(json_calls(3), 3);
  b = http(g_port, "GET", "/status", NULL, &st);
  assert_int_equal(st, 200);
  assert_non_null(strstr(b, "service example.EchoService"));
  free(b);
  b = http(g_port, "GET", "/metrics", NULL, &st);
  assert_int_equal(st, 200);
  assert_non_null(strstr(b, "process_resident_memory_bytes "));
  assert_non_null(strstr(b, "process_start_time_seconds "));
  if (!have("promtool")) {
    free(b);
    fprintf(stderr, "test_console_tcp: promtool missing (apt-get install prometheus)\n");
    skip();
  }
  char path[128], cmd[256];
  snprintf(path, sizeof path, "%s/metrics.txt", g_tmp);
  FILE *f = fopen(path, "w");
  fputs(b, f);
  fclose(f);
  free(b);
  snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
  assert_int_equal(system(cmd), 0);
}

static unsigned free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
  close(fd);
  return ntohs(a.sin_port);
}

/* The value of the first sample of a Prometheus query answer, -1 if none. */
static double query_value(unsigned port, const char *q) {
  int st;
  char path[512];
  snprintf(path, sizeof path, "/api/v1/query?query=%s", q);
  char *b = http(port, "GET", path, NULL, &st);
  double v = -1;
  const char *p = b ? strstr(b, "\"value\":[") : NULL;
  if (p) {
    p = strchr(p, ',');
    if (p && p[1] == '"')
      v = strtod(p + 2, NULL);
  }
  free(b);
  return v;
}

static void test_console_tcp_prometheus_scrapes(void **state) {
  (void)state;
  NEED_SERVER();
  if (!have("prometheus")) {
    fprintf(stderr, "test_console_tcp: prometheus missing (apt-get install prometheus)\n");
    skip();
  }
  unsigned pport = free_port();
  char cfg[128], data[128], logp[128], listen[64];
  snprintf(cfg, sizeof cfg, "%s/prometheus.yml", g_tmp);
  snprintf(data, sizeof data, "%s/prom-data", g_tmp);
  snprintf(logp, sizeof logp, "%s/prometheus.log", g_tmp);
  snprintf(listen, sizeof listen, "127.0.0.1:%u", pport);
  FILE *f = fopen(cfg, "w");
  fprintf(f,
          "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
          "scrape_configs:\n  - job_name: echo\n    static_configs:\n"
          "      - targets: ['127.0.0.1:%u']\n",
          g_port);
  fclose(f);
  pid_t pp = fork();
  assert_true(pp >= 0);
  if (pp == 0) {
    int o = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(o, 2);
    char a1[160], a2[160], a3[96];
    snprintf(a1, sizeof a1, "--config.file=%s", cfg);
    snprintf(a2, sizeof a2, "--storage.tsdb.path=%s", data);
    snprintf(a3, sizeof a3, "--web.listen-address=%s", listen);
    execlp("prometheus", "prometheus", a1, a2, a3, (char *)NULL);
    _exit(127);
  }
  /* the calls made before this test count too: read the total first */
  int st;
  char *b = http(g_port, "GET", "/status?format=json", NULL, &st);
  assert_non_null(b);
  const char *c = strstr(b, "\"calls\":");
  assert_non_null(c);
  long before = strtol(c + 8, NULL, 10);
  free(b);
  const int N = 25;
  assert_int_equal(json_calls(N), N);
  double got = -1;
  for (int i = 0; i < 600 && got < before + N; i++) { /* hang guard: 60 s */
    usleep(100000);
    got = query_value(pport, "sum(mprpc_server_requests_total%7Bcode%3D%220%22%7D)");
  }
  kill(pp, SIGTERM);
  int pst;
  waitpid(pp, &pst, 0);
  if (got != (double)(before + N)) {
    char log[4096];
    slurp(logp, log, sizeof log);
    fail_msg("prometheus saw %g successful requests, want %ld\n%s", got, before + N, log);
  }
}

static void test_console_tcp_chromium_renders_status(void **state) {
  (void)state;
  NEED_SERVER();
  if (!have("chromium")) {
    fprintf(stderr, "test_console_tcp: chromium missing (apt-get install chromium)\n");
    skip();
  }
  mkdir("build", 0755);
  char cmd[1024], dom[128];
  snprintf(dom, sizeof dom, "%s/status.html", g_tmp);
  const char *flags = "--headless --no-sandbox --disable-gpu --disable-dev-shm-usage "
                      "--no-first-run --user-data-dir=";
  snprintf(cmd, sizeof cmd, "timeout 60 chromium %s%s/chrome --dump-dom "
                            "http://127.0.0.1:%u/status > %s 2>/dev/null",
           flags, g_tmp, g_port, dom);
  assert_int_equal(system(cmd), 0);
  char *text = malloc(1 << 20);
  slurp(dom, text, 1 << 20);
  assert_non_null(strstr(text, "example.EchoService"));
  assert_non_null(strstr(text, "<svg"));
  free(text);
  snprintf(cmd, sizeof cmd, "timeout 60 chromium %s%s/chrome --screenshot=build/console_status.png "
                            "--window-size=1200,900 http://127.0.0.1:%u/status >/dev/null 2>&1",
           flags, g_tmp, g_port);
  assert_int_equal(system(cmd), 0);
  struct stat sb;
  assert_int_equal(stat("build/console_status.png", &sb), 0);
  assert_true(sb.st_size > 1000);
}

static void tcp_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                     Example__EchoResponse_Closure done, void *data) {
  (void)svc;
  Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
  out.message = in->message;
  done(&out, data);
}

static void echo_done(const Example__EchoResponse *r, void *arg) {
  snprintf(arg, 64, "%s", r ? r->message : "(failed)");
}

static void test_console_tcp_client_metrics_without_server(void **state) {
  (void)state;
  NEED_SERVER();
  mprpc_console_t *con;
  assert_int_equal(mprpc_console_start(&(mprpc_console_opts_t){.port = 0}, &con), 0);
  unsigned cport = mprpc_console_port(con);
  assert_int_not_equal(cport, 0);
  char servers[64];
  snprintf(servers, sizeof servers, "127.0.0.1:%u", g_port);
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.servers = servers;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  for (int i = 0; i < 4; i++) { /* from a thread that is no loop: synchronous */
    char got[64] = "";
    Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
    req.message = "c";
    example__echo_service__echo(mprpc_channel_service(ch), &req, echo_done, got);
    assert_string_equal(got, "c");
  }
  int st;
  char *b = http(cport, "GET", "/metrics", NULL, &st);
  assert_int_equal(st, 200);
  if (!strstr(b, "mprpc_client_requests_total{service=\"example.EchoService\",method=\"Echo\","
                 "code=\"0\"} 4\n") ||
      !strstr(b, "mprpc_client_request_duration_seconds_count{service=\"example.EchoService\","
                 "method=\"Echo\"} 4\n") ||
      !strstr(b, "mprpc_client_endpoints{service=\"example.EchoService\",state=\"healthy\"} 1\n") ||
      !strstr(b, "mprpc_client_endpoints{service=\"example.EchoService\",state=\"ejected\"} 0\n"))
    fail_msg("client metrics missing:\n%s", b);
  free(b);
  mprpc_channel_destroy(ch);
  b = http(cport, "GET", "/metrics", NULL, &st);
  assert_null(strstr(b, "mprpc_client_requests_total{"));
  free(b);
  b = http(cport, "GET", "/health", NULL, &st);
  assert_int_equal(st, 200);
  free(b);
  mprpc_console_stop(con);
}

/* Two loops: /connections is gathered from both (each lists its own). */
static void test_console_tcp_connections_of_every_loop(void **state) {
  (void)state;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.threads = 2;
  static Example__EchoService_Service svc = EXAMPLE__ECHO_SERVICE__INIT(tcp_);
  ProtobufCService *served[] = {&svc.base};
  mprpc_server_t *s;
  assert_int_equal(test_provider_start(&o, served, 1, &s, NULL, 0), 0);
  unsigned port = mprpc_server_port(s);
  int fds[4];
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < 4; i++) { /* idle peers, spread over the loops */
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0);
  }
  char *b = NULL;
  int st = 0, rows = 0;
  for (int tries = 0; tries < 100 && rows < 5; tries++) { /* accepts are asynchronous */
    free(b);
    usleep(10000);
    b = http(port, "GET", "/connections", NULL, &st);
    assert_int_equal(st, 200);
    rows = 0;
    for (const char *p = b; (p = strstr(p, " protocol=")); p++)
      rows++;
  }
  if (rows != 5)
    fail_msg("want 4 idle connections and the asking one:\n%s", b);
  assert_non_null(strstr(b, "protocol=unknown")); /* nothing sent yet */
  assert_non_null(strstr(b, "protocol=http"));
  free(b);
  for (int i = 0; i < 4; i++)
    close(fds[i]);
  mprpc_server_destroy(s);
}

/* `mprpc status` and `mprpc metrics` (src/cli/http.c) read the real pages. */
static void test_console_tcp_cli_status_and_metrics(void **state) {
  (void)state;
  NEED_SERVER();
  if (access("build/bin/mprpc", X_OK) != 0) {
    fprintf(stderr, "test_console_tcp: build/bin/mprpc missing (make build/bin/mprpc)\n");
    skip();
  }
  char cmd[256], out[128], text[8192];
  snprintf(out, sizeof out, "%s/cli.out", g_tmp);
  snprintf(cmd, sizeof cmd, "build/bin/mprpc status 127.0.0.1:%u > %s 2>&1", g_port, out);
  assert_int_equal(system(cmd), 0);
  slurp(out, text, sizeof text);
  assert_non_null(strstr(text, "service example.EchoService"));
  snprintf(cmd, sizeof cmd, "build/bin/mprpc metrics 127.0.0.1:%u > %s 2>&1", g_port, out);
  assert_int_equal(system(cmd), 0);
  slurp(out, text, sizeof text);
  assert_non_null(strstr(text, "# TYPE mprpc_server_requests_total counter"));
}

int main(void) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_ERROR);
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_console_tcp_pages_and_promtool),
      cmocka_unit_test(test_console_tcp_prometheus_scrapes),
      cmocka_unit_test(test_console_tcp_chromium_renders_status),
      cmocka_unit_test(test_console_tcp_client_metrics_without_server),
      cmocka_unit_test(test_console_tcp_connections_of_every_loop),
      cmocka_unit_test(test_console_tcp_cli_status_and_metrics),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
