/*
 * console-bench: how long the builtin console takes to answer GET /metrics
 * (and /status) for a provider with many methods, over loopback TCP on one
 * keep-alive connection. The provider serves one generated service of
 * METHODS methods (all EchoRequest -> EchoResponse), each called once so
 * every family has samples. Prints, per page:
 *
 *   BENCH console page=/metrics methods=100 requests=200 bytes=123456 p50_us=... p99_us=... max_us=...
 *
 *   console-bench [-m METHODS] [-n REQUESTS]
 *
 * A measurement, not a test: nothing is asserted (issue 18 wants /metrics
 * under 5 ms for 100 methods; read it on an unloaded machine).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "bench_common.h"
#include "examples/echo/echo.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/server.h"

static void invoke(ProtobufCService *svc, unsigned idx, const ProtobufCMessage *in,
                   ProtobufCClosure done, void *data) {
  (void)svc, (void)idx;
  const Example__EchoRequest *rq = (const Example__EchoRequest *)in;
  Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
  out.message = rq->message;
  done(&out.base, data);
}

static int conn_to(unsigned port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    perror("connect");
    exit(1);
  }
  return fd;
}

/* One request on fd; returns the answer's body length. */
static size_t roundtrip(int fd, const char *req, char *buf, size_t cap) {
  size_t n = strlen(req);
  if (write(fd, req, n) != (ssize_t)n) {
    perror("write");
    exit(1);
  }
  size_t len = 0, want = 0, head = 0;
  for (;;) {
    ssize_t r = read(fd, buf + len, cap - len - 1);
    if (r <= 0) {
      fprintf(stderr, "console-bench: connection closed\n");
      exit(1);
    }
    len += (size_t)r;
    buf[len] = 0;
    if (!head) {
      char *e = strstr(buf, "\r\n\r\n");
      if (!e)
        continue;
      head = (size_t)(e - buf) + 4;
      char *cl = strstr(buf, "Content-Length: ");
      want = cl ? strtoul(cl + 16, NULL, 10) : 0;
    }
    if (len >= head + want)
      return want;
  }
}

int main(int argc, char **argv) {
  int methods = 100, requests = 200, c;
  while ((c = getopt(argc, argv, "m:n:")) != -1) {
    if (c == 'm')
      methods = atoi(optarg);
    else if (c == 'n')
      requests = atoi(optarg);
    else {
      fprintf(stderr, "usage: console-bench [-m METHODS] [-n REQUESTS]\n");
      return 2;
    }
  }
  if (methods < 1 || methods > 10000 || requests < 1)
    return 2;
  mprpc_log_set_level(MPRPC_LOG_LEVEL_WARN);
  ProtobufCMethodDescriptor *md = calloc((size_t)methods, sizeof *md);
  unsigned *idx = calloc((size_t)methods, sizeof *idx);
  char (*names)[16] = calloc((size_t)methods, sizeof *names);
  for (int i = 0; i < methods; i++) {
    snprintf(names[i], sizeof names[i], "M%05d", i); /* sorted as generated */
    md[i] = (ProtobufCMethodDescriptor){names[i], &example__echo_request__descriptor,
                                        &example__echo_response__descriptor};
    idx[i] = (unsigned)i;
  }
  ProtobufCServiceDescriptor sd = {PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC,
                                   "bench.Wide", "Wide", "Bench__Wide", "bench",
                                   (unsigned)methods, md, idx};
  ProtobufCService svc = {&sd, invoke, NULL};
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = "127.0.0.1";
  mprpc_server_t *s;
  int rc = mprpc_server_new(&o, &s);
  if (rc == 0)
    rc = mprpc_server_add_service(s, &svc);
  if (rc == 0)
    rc = mprpc_server_start(s);
  if (rc) {
    fprintf(stderr, "console-bench: %s\n", mprpc_strerror(rc));
    return 1;
  }
  unsigned port = mprpc_server_port(s);
  int fd = conn_to(port);
  size_t cap = 64 << 20;
  char *buf = malloc(cap), req[256];
  for (int i = 0; i < methods; i++) { /* one call each, over HTTP/JSON */
    snprintf(req, sizeof req,
             "POST /bench.Wide/%s HTTP/1.1\r\nContent-Length: 15\r\n\r\n{\"message\":\"x\"}",
             names[i]);
    roundtrip(fd, req, buf, cap);
  }
  const char *pages[] = {"/metrics", "/status"};
  for (size_t p = 0; p < 2; p++) {
    bench_hist_t *h = calloc(1, sizeof *h);
    size_t bytes = 0;
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", pages[p]);
    for (int i = 0; i < requests; i++) {
      uint64_t t0 = bench_now_ns();
      bytes = roundtrip(fd, req, buf, cap);
      bench_hist_add(h, bench_now_ns() - t0);
    }
    printf("BENCH console page=%s methods=%d requests=%d bytes=%zu p50_us=%.0f p99_us=%.0f "
           "max_us=%.0f\n",
           pages[p], methods, requests, bytes, bench_hist_pct_us(h, 50),
           bench_hist_pct_us(h, 99), bench_hist_pct_us(h, 100));
    free(h);
  }
  close(fd);
  mprpc_server_destroy(s);
  free(buf);
  free(md);
  free(idx);
  free(names);
  return 0;
}
