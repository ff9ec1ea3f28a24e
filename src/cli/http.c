/*
 * mprpc status TARGET / mprpc metrics TARGET: a blocking HTTP/1.1 GET of
 * /status or /metrics from the provider's console (on its RPC port),
 * printing the body (docs/cli.md).
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"

static void http_usage(FILE *f, const char *verb, const char *path) {
  fprintf(f,
          "usage: mprpc %s HOST:PORT [--timeout-ms N]\n"
          "GET %s from the provider's console and print the body.\n"
          "Exit: 0 on HTTP 200, 1 on a connection error or another status\n"
          "(stderr: error: ...), 2 bad usage.\n",
          verb, path);
}

/* Splits "host:port" / "[v6]:port" (the first of a comma list). */
static int split_target(const char *t, char *host, size_t cap, char *port, size_t pcap) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", t);
  char *comma = strchr(buf, ',');
  if (comma)
    *comma = 0;
  char *h = buf, *colon;
  if (*h == '[') {
    char *rb = strchr(h, ']');
    if (!rb || rb[1] != ':')
      return -1;
    *rb = 0;
    h++;
    colon = rb + 1;
  } else {
    colon = strrchr(h, ':');
    if (!colon)
      return -1;
    *colon = 0;
  }
  if (!*h || !colon[1] || strlen(h) >= cap || strlen(colon + 1) >= pcap)
    return -1;
  snprintf(host, cap, "%s", h);
  snprintf(port, pcap, "%s", colon + 1);
  return 0;
}

int cli_tcp_connect(const char *host, const char *port, int timeout_ms, char *err,
                      size_t errlen) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  int g = getaddrinfo(host, port, &hints, &res);
  if (g != 0) {
    snprintf(err, errlen, "resolve %s:%s: %s", host, port, gai_strerror(g));
    return -1;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    freeaddrinfo(res);
    return -1;
  }
  int rc = connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (rc != 0 && errno == EINPROGRESS) {
    struct pollfd p = {fd, POLLOUT, 0};
    rc = poll(&p, 1, timeout_ms);
    if (rc == 0) {
      errno = ETIMEDOUT;
      rc = -1;
    } else if (rc > 0) {
      int soerr = 0;
      socklen_t sl = sizeof soerr;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
      errno = soerr;
      rc = soerr ? -1 : 0;
    }
  }
  if (rc != 0) {
    snprintf(err, errlen, "connect(%s:%s): %s", host, port, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

/* Reads everything until EOF or the deadline. */
static char *read_all(int fd, int timeout_ms, size_t *len, char *err, size_t errlen) {
  size_t cap = 8192, n = 0;
  char *b = malloc(cap + 1);
  while (b) {
    struct pollfd p = {fd, POLLIN, 0};
    int rc = poll(&p, 1, timeout_ms);
    if (rc == 0) {
      snprintf(err, errlen, "no complete answer within %d ms", timeout_ms);
      free(b);
      return NULL;
    }
    ssize_t got = read(fd, b + n, cap - n);
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (got < 0) {
      snprintf(err, errlen, "read: %s", strerror(errno));
      free(b);
      return NULL;
    }
    if (got == 0)
      break;
    n += (size_t)got;
    if (n == cap) {
      if (cap > (64u << 20)) {
        snprintf(err, errlen, "answer larger than 64 MiB");
        free(b);
        return NULL;
      }
      char *nb = realloc(b, cap * 2 + 1);
      if (!nb) {
        free(b);
        return NULL;
      }
      b = nb;
      cap *= 2;
    }
  }
  if (b) {
    b[n] = 0;
    *len = n;
  }
  return b;
}

/* Decodes a chunked body in place; length or -1. */
static long dechunk(char *body, size_t len) {
  size_t in = 0, out = 0;
  for (;;) {
    char *end;
    if (in >= len)
      return -1;
    unsigned long sz = strtoul(body + in, &end, 16);
    char *crlf = strstr(body + in, "\r\n");
    if (!crlf || end == body + in)
      return -1;
    in = (size_t)(crlf - body) + 2;
    if (sz == 0)
      return (long)out;
    if (sz > len - in)
      return -1;
    memmove(body + out, body + in, sz);
    out += sz;
    in += sz + 2;
  }
}

int cli_http(int argc, char **argv, const char *path) {
  const char *target = NULL;
  int64_t timeout = 3000;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      http_usage(stdout, argv[0], path);
      return CLI_OK;
    }
    if (strncmp(argv[i], "--timeout-ms", 12) == 0) {
      const char *v = argv[i][12] == '=' ? argv[i] + 13 : (i + 1 < argc ? argv[++i] : "");
      char *end;
      timeout = strtoll(v, &end, 10);
      if (!*v || *end || timeout < 1 || timeout > 86400000) {
        fprintf(stderr, "mprpc %s: --timeout-ms '%s': expected 1..86400000\n", argv[0], v);
        return CLI_USAGE;
      }
      continue;
    }
    if ((argv[i][0] == '-' && argv[i][1]) || target) {
      fprintf(stderr, "mprpc %s: unexpected argument %s\n", argv[0], argv[i]);
      http_usage(stderr, argv[0], path);
      return CLI_USAGE;
    }
    target = argv[i];
  }
  char host[256], port[16];
  if (!target || strstr(target, "://") || split_target(target, host, sizeof host, port, sizeof port)) {
    if (target)
      fprintf(stderr, "mprpc %s: '%s': expected HOST:PORT\n", argv[0], target);
    http_usage(stderr, argv[0], path);
    return CLI_USAGE;
  }
  char err[512] = "";
  int fd = cli_tcp_connect(host, port, (int)timeout, err, sizeof err);
  if (fd < 0) {
    fprintf(stderr, "error: GET %s: %s\n", path, err);
    return CLI_FAIL;
  }
  char req[700];
  int rl = snprintf(req, sizeof req,
                    "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: mprpc-cli\r\nAccept: */*\r\n"
                    "Connection: close\r\n\r\n",
                    path, strchr(host, ':') ? host : host, port);
  for (int off = 0; off < rl;) {
    struct pollfd p = {fd, POLLOUT, 0};
    poll(&p, 1, (int)timeout);
    ssize_t w = write(fd, req + off, (size_t)(rl - off));
    if (w < 0 && (errno == EAGAIN || errno == EINTR))
      continue;
    if (w <= 0) {
      fprintf(stderr, "error: GET %s from %s: write: %s\n", path, target, strerror(errno));
      close(fd);
      return CLI_FAIL;
    }
    off += (int)w;
  }
  size_t n = 0;
  char *resp = read_all(fd, (int)timeout, &n, err, sizeof err);
  close(fd);
  if (!resp) {
    fprintf(stderr, "error: GET %s from %s: %s\n", path, target, err);
    return CLI_FAIL;
  }
  int major = 0, minor = 0, status = 0;
  char *hend = strstr(resp, "\r\n\r\n");
  if (sscanf(resp, "HTTP/%d.%d %d", &major, &minor, &status) != 3 || !hend) {
    fprintf(stderr, "error: GET %s from %s: not an HTTP response\n", path, target);
    free(resp);
    return CLI_FAIL;
  }
  *hend = 0;
  char *body = hend + 4;
  size_t blen = n - (size_t)(body - resp);
  bool chunked = false;
  long clen = -1;
  for (char *line = strstr(resp, "\r\n"); line && *line; line = strstr(line + 2, "\r\n")) {
    char *h = line + 2;
    if (strncasecmp(h, "Transfer-Encoding:", 18) == 0 && strstr(h, "chunked"))
      chunked = true;
    if (strncasecmp(h, "Content-Length:", 15) == 0)
      clen = strtol(h + 15, NULL, 10);
  }
  if (chunked) {
    long d = dechunk(body, blen);
    if (d < 0) {
      fprintf(stderr, "error: GET %s from %s: bad chunked body\n", path, target);
      free(resp);
      return CLI_FAIL;
    }
    blen = (size_t)d;
  } else if (clen >= 0 && (size_t)clen < blen) {
    blen = (size_t)clen;
  }
  if (status != 200) {
    char *eol = strchr(resp, '\r');
    if (eol)
      *eol = 0;
    fprintf(stderr, "error: GET %s from %s: %s\n", path, target, resp);
    free(resp);
    return CLI_FAIL;
  }
  fwrite(body, 1, blen, stdout);
  if (blen && body[blen - 1] != '\n')
    fputc('\n', stdout);
  free(resp);
  return CLI_OK;
}
