/*
 * mprpc-attack: hostile clients against a provider on loopback, for
 * `make stress` (ci/stress.sh). One attack per run, bounded in time and in
 * connections; every socket is closed at the end.
 *
 *   mprpc-attack --port P --attack NAME [--conns N] [--duration-s S]
 *
 *   trickle   N connections declare 60 MiB bodies, push 20 MiB as fast as
 *             the provider takes it, then trickle 32 KiB/s
 *   slowloris N connections send one byte a second: half of a frame
 *             header, half of a body after a whole header
 *   churn     connect and close at once, as fast as the machine allows
 *             (N in flight)
 *   garbage   N connections send random bytes (some after a valid magic)
 *   noread    N connections send valid Echo requests and never read
 *
 * A connection the provider closes is opened again 50 ms later. The last
 * line is
 *   attack: NAME opened=N closed_by_peer=C connect_failed=F bytes_sent=B
 * Exit status 0, or 2 for bad usage. No dependency but libc.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { A_TRICKLE, A_SLOWLORIS, A_CHURN, A_GARBAGE, A_NOREAD };
static const char *const names[] = {"trickle", "slowloris", "churn", "garbage", "noread"};

#define MiB (1024u * 1024u)
#define REOPEN_NS (50 * 1000000ull)

typedef struct conn {
  int fd;
  bool connecting;
  uint64_t next_at;   /* next send (or reopen, when fd < 0) */
  uint64_t sent;      /* bytes of this connection's stream */
  uint64_t quota;     /* noread: stop sending after this */
  int kind;           /* slowloris: 0 header trickle, 1 body trickle */
  uint64_t rnd;
} conn_t;

static int g_attack = -1;
static uint16_t g_port;
static int g_ep;
static uint64_t g_opened, g_closed_by_peer, g_connect_failed, g_bytes;
static uint8_t g_req[8192]; /* noread: one valid request frame */
static size_t g_req_len;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

static size_t put_str(uint8_t *p, uint32_t field, const void *s, size_t len) {
  size_t n = put_varint(p, (uint64_t)field << 3 | 2);
  n += put_varint(p + n, len);
  memcpy(p + n, s, len);
  return n + len;
}

/* An example.EchoService.Echo request with a 4 KiB message. */
static void build_request(void) {
  uint8_t req_meta[64], meta[96], payload[4200];
  size_t rm = put_str(req_meta, 1, "example.EchoService", 19);
  rm += put_str(req_meta + rm, 2, "Echo", 4);
  size_t m = put_str(meta, 1, req_meta, rm);
  meta[m++] = 4 << 3; /* correlation_id, varint */
  m += put_varint(meta + m, 1);
  char msg[4096];
  memset(msg, 'x', sizeof msg);
  size_t pl = put_str(payload, 1, msg, sizeof msg);
  memcpy(g_req, "PRPC", 4);
  put_be32(g_req + 4, (uint32_t)(m + pl));
  put_be32(g_req + 8, (uint32_t)m);
  memcpy(g_req + 12, meta, m);
  memcpy(g_req + 12 + m, payload, pl);
  g_req_len = 12 + m + pl;
}

static void conn_close(conn_t *c, uint64_t now) {
  if (c->fd >= 0) {
    epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  c->next_at = now + REOPEN_NS;
}

static void conn_open(conn_t *c, uint64_t now) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    c->next_at = now + REOPEN_NS;
    return;
  }
  if (g_attack == A_NOREAD) {
    int small = 4096; /* keep the unread replies in the provider, not here */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(g_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int r = connect(fd, (struct sockaddr *)&a, sizeof a);
  if (r != 0 && errno != EINPROGRESS) {
    g_connect_failed++;
    close(fd);
    c->next_at = now + REOPEN_NS;
    return;
  }
  c->fd = fd;
  c->connecting = true;
  c->sent = 0;
  c->next_at = now;
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
  epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev);
  g_opened++;
}

/* Sends what this attack sends next; false when the connection died. */
static bool conn_send(conn_t *c, uint64_t now) {
  static uint8_t junk[64 * 1024];
  uint8_t buf[64];
  const uint8_t *p = junk;
  size_t n = 0;
  uint64_t next = now;
  switch (g_attack) {
  case A_TRICKLE:
    if (c->sent == 0) {
      memcpy(buf, "PRPC", 4);
      put_be32(buf + 4, 60 * MiB);
      put_be32(buf + 8, 16);
      p = buf;
      n = 12;
    } else if (c->sent < 20 * MiB) {
      n = sizeof junk;
    } else {
      n = 32 * 1024 / 10; /* 32 KiB/s in ten steps */
      next = now + 100000000ull;
    }
    break;
  case A_SLOWLORIS: {
    static const uint8_t hdr[12] = {'P', 'R', 'P', 'C', 0, 0, 0x40, 0, 0, 0, 0, 16};
    if (c->kind == 1 && c->sent == 0) {
      p = hdr;
      n = 12;
    } else {
      p = c->sent < 12 ? hdr + c->sent : junk;
      n = 1;
    }
    next = now + 1000000000ull;
    break;
  }
  case A_CHURN:
    return false; /* connected: close at once */
  case A_GARBAGE:
    for (size_t i = 0; i < 4096; i++)
      junk[i] = (uint8_t)xorshift(&c->rnd);
    if (xorshift(&c->rnd) % 4 == 0 && c->sent == 0)
      memcpy(junk, "PRPC", 4); /* a valid magic, random sizes after it */
    n = 4096;
    next = now + 10000000ull;
    break;
  case A_NOREAD:
    if (c->sent >= c->quota)
      return true;
    p = g_req + c->sent % g_req_len;
    n = g_req_len - c->sent % g_req_len;
    next = now + 20000000ull;
    break;
  }
  ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    c->next_at = now + 10000000ull;
    return true;
  }
  if (w <= 0)
    return false;
  c->sent += (uint64_t)w;
  g_bytes += (uint64_t)w;
  c->next_at = next;
  return true;
}

static void on_event(conn_t *c, uint32_t events, uint64_t now) {
  if (c->fd < 0)
    return;
  if (c->connecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t sl = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
    if (err) {
      g_connect_failed++;
      conn_close(c, now);
      return;
    }
    c->connecting = false;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
    if (g_attack == A_CHURN) {
      conn_close(c, now);
      c->next_at = now; /* again at once */
      return;
    }
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    if (g_attack == A_NOREAD && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
      return; /* never read the replies */
    char sink[4096];
    ssize_t r = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
        (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
      g_closed_by_peer++;
      conn_close(c, now);
    }
  }
}

static void usage(void) {
  fprintf(stderr, "usage: mprpc-attack --port P --attack trickle|slowloris|churn|garbage|noread "
                  "[--conns N] [--duration-s S]\n");
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"port", required_argument, 0, 'p'},
                                       {"attack", required_argument, 0, 'a'},
                                       {"conns", required_argument, 0, 'n'},
                                       {"duration-s", required_argument, 0, 'd'},
                                       {0, 0, 0, 0}};
  long conns = -1, port = -1;
  double duration = 15;
  int o;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
    case 'p': port = strtol(optarg, NULL, 10); break;
    case 'a':
      for (int i = 0; i < 5; i++)
        if (strcmp(optarg, names[i]) == 0)
          g_attack = i;
      break;
    case 'n': conns = strtol(optarg, NULL, 10); break;
    case 'd': duration = strtod(optarg, NULL); break;
    default: usage(); return 2;
    }
  }
  static const long def_conns[] = {40, 5000, 64, 100, 2000};
  if (g_attack < 0 || port <= 0 || port > 65535 || duration <= 0 || duration > 600) {
    usage();
    return 2;
  }
  if (conns < 0)
    conns = def_conns[g_attack];
  if (conns < 1 || conns > 20000) {
    usage();
    return 2;
  }
  g_port = (uint16_t)port;
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)conns + 64) {
    rl.rlim_cur = rl.rlim_max < (rlim_t)conns + 64 ? rl.rlim_max : (rlim_t)conns + 64;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  build_request();
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  conn_t *cs = calloc((size_t)conns, sizeof *cs);
  if (g_ep < 0 || !cs) {
    fprintf(stderr, "mprpc-attack: out of resources\n");
    return 1;
  }
  uint64_t start = now_ns(), end = start + (uint64_t)(duration * 1e9);
  for (long i = 0; i < conns; i++) {
    cs[i].fd = -1;
    cs[i].kind = (int)(i & 1);
    cs[i].rnd = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    cs[i].quota = 128 * 1024;
    /* Spread the opening over the first second (5,000 at once would only
     * overflow the listen backlog). */
    cs[i].next_at = start + (uint64_t)i * (1000000000ull / (uint64_t)conns);
  }
  struct epoll_event evs[512];
  for (uint64_t now = start; now < end; now = now_ns()) {
    int n = epoll_wait(g_ep, evs, 512, 5);
    now = now_ns();
    for (int i = 0; i < n; i++)
      on_event(evs[i].data.ptr, evs[i].events, now);
    for (long i = 0; i < conns; i++) {
      conn_t *c = &cs[i];
      if (c->next_at > now)
        continue;
      if (c->fd < 0)
        conn_open(c, now);
      else if (!c->connecting && !conn_send(c, now))
        conn_close(c, now);
      else if (c->connecting)
        c->next_at = now + REOPEN_NS;
    }
  }
  for (long i = 0; i < conns; i++)
    if (cs[i].fd >= 0)
      close(cs[i].fd);
  free(cs);
  close(g_ep);
  printf("attack: %s opened=%llu closed_by_peer=%llu connect_failed=%llu bytes_sent=%llu\n",
         names[g_attack], (unsigned long long)g_opened, (unsigned long long)g_closed_by_peer,
         (unsigned long long)g_connect_failed, (unsigned long long)g_bytes);
  return 0;
}
