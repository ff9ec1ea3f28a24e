/*
 * baseline_echo: the machine's limit for mprpc's echo traffic pattern.
 *
 * A length-prefixed echo (4-byte big-endian length, then payload) over raw
 * epoll, with no framework and no protobuf: the server parses frames and
 * writes every complete request straight back from its read buffer; the
 * client keeps C callers in flight over one connection (or several), each
 * sending its next request when its previous reply arrives. One connection
 * delivers replies in order, so a FIFO of send timestamps matches them.
 *
 *   baseline_echo [-s BYTES] [-c CONC] [-d SECS] [-w SECS] [-t SRV_THREADS]
 *                 [-T CLI_THREADS] [-n CONNS]
 *       forks a server on 127.0.0.1 (ephemeral port), runs the client against
 *       it, prints one "BENCH impl=baseline ..." line, stops the server.
 *       --sync: -T threads, each on its own blocking connection, send one
 *       request and wait for its reply in a loop ("BENCH impl=baseline-sync",
 *       concurrency = threads): what mprpc-bench --sync is compared with.
 *   baseline_echo --server [-p PORT] [-t THREADS]       server only
 *   baseline_echo --client HOST:PORT [--server-pid PID] [...] client only
 *
 * cpu_pct is the server process's CPU over the measurement window, from
 * /proc/<pid>/stat (100 = one core busy).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "bench_common.h"

#define MAX_FRAME (64u << 20)
#define READ_CHUNK (256u << 10)
#define MAX_IOV 512

/* ------------------------------------------------------------------ util */

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void set_nonblock_nodelay(int fd) {
  int one = 1;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

typedef struct bytes {
  char *p;
  size_t off, len, cap; /* live data is p[off, off+len) */
} bytes_t;

/* Makes room for at least `need` more bytes after the live data. */
static void bytes_reserve(bytes_t *b, size_t need) {
  if (b->cap - b->off - b->len >= need)
    return;
  if (b->off) {
    memmove(b->p, b->p + b->off, b->len);
    b->off = 0;
    if (b->cap - b->len >= need)
      return;
  }
  size_t cap = b->cap ? b->cap : READ_CHUNK;
  while (cap - b->len < need)
    cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p)
    die("realloc");
  b->p = p;
  b->cap = cap;
}

static void bytes_append(bytes_t *b, const char *src, size_t n) {
  bytes_reserve(b, n);
  memcpy(b->p + b->off + b->len, src, n);
  b->len += n;
}

static void bytes_consume(bytes_t *b, size_t n) {
  b->off += n;
  b->len -= n;
  if (b->len == 0)
    b->off = 0;
}

/* ---------------------------------------------------------------- server */

typedef struct sconn {
  int fd;
  bool want_out;
  bytes_t in, out;
} sconn_t;

typedef struct sworker {
  pthread_t th;
  int ep;
} sworker_t;

static void sconn_close(sworker_t *w, sconn_t *c) {
  epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->in.p);
  free(c->out.p);
  free(c);
}

static void sconn_want_out(sworker_t *w, sconn_t *c, bool on) {
  if (c->want_out == on)
    return;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = on;
}

/* Writes `n` bytes at p, or queues what the socket does not take. */
static int sconn_send(sworker_t *w, sconn_t *c, const char *p, size_t n) {
  if (c->out.len == 0) {
    ssize_t k = write(c->fd, p, n);
    if (k < 0) {
      if (errno != EAGAIN)
        return -1;
      k = 0;
    }
    p += k;
    n -= (size_t)k;
  }
  if (n) {
    bytes_append(&c->out, p, n);
    sconn_want_out(w, c, true);
  }
  return 0;
}

static int sconn_flush(sworker_t *w, sconn_t *c) {
  while (c->out.len) {
    ssize_t k = write(c->fd, c->out.p + c->out.off, c->out.len);
    if (k < 0)
      return errno == EAGAIN ? 0 : -1;
    bytes_consume(&c->out, (size_t)k);
  }
  sconn_want_out(w, c, false);
  return 0;
}

static int sconn_read(sworker_t *w, sconn_t *c) {
  for (int round = 0; round < 16; round++) {
    bytes_reserve(&c->in, READ_CHUNK / 4);
    size_t room = c->in.cap - c->in.off - c->in.len;
    ssize_t n = read(c->fd, c->in.p + c->in.off + c->in.len, room);
    if (n == 0)
      return -1;
    if (n < 0)
      return errno == EAGAIN ? 0 : -1;
    c->in.len += (size_t)n;
    /* Every complete frame is echoed as is: header and payload. */
    size_t done = 0;
    while (c->in.len - done >= 4) {
      uint32_t len;
      memcpy(&len, c->in.p + c->in.off + done, 4);
      len = ntohl(len);
      if (len > MAX_FRAME)
        return -1;
      if (c->in.len - done < 4 + (size_t)len)
        break;
      done += 4 + (size_t)len;
    }
    if (done) {
      if (sconn_send(w, c, c->in.p + c->in.off, done) < 0)
        return -1;
      bytes_consume(&c->in, done);
    }
    if ((size_t)n < room)
      return 0; /* drained; level-triggered epoll tells us about more */
  }
  return 0;
}

static void *sworker_main(void *arg) {
  sworker_t *w = arg;
  struct epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(w->ep, evs, 64, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      sconn_t *c = evs[i].data.ptr;
      int rc = 0;
      if (evs[i].events & EPOLLOUT)
        rc = sconn_flush(w, c);
      if (rc == 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        rc = sconn_read(w, c);
      if (rc < 0)
        sconn_close(w, c);
    }
  }
  return NULL;
}

static int listen_on(const char *host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
    die("bind");
  if (listen(fd, 4096) < 0)
    die("listen");
  return fd;
}

static int bound_port(int fd) {
  struct sockaddr_in a;
  socklen_t al = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &al);
  return ntohs(a.sin_port);
}

/* Accepts forever on the calling thread, handing connections round-robin to
 * `threads` epoll workers. Ends with the process. */
static void server_run(int lfd, int threads) {
  sworker_t *ws = calloc((size_t)threads, sizeof *ws);
  if (!ws)
    die("calloc");
  for (int i = 0; i < threads; i++) {
    ws[i].ep = epoll_create1(EPOLL_CLOEXEC);
    if (ws[i].ep < 0 || pthread_create(&ws[i].th, NULL, sworker_main, &ws[i]) != 0)
      die("worker");
  }
  for (unsigned next = 0;; next++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
        continue;
      die("accept");
    }
    set_nonblock_nodelay(fd);
    sconn_t *c = calloc(1, sizeof *c);
    if (!c)
      die("calloc");
    c->fd = fd;
    sworker_t *w = &ws[next % (unsigned)threads];
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
      die("epoll_ctl");
  }
}

/* ---------------------------------------------------------------- client */

typedef struct cconn {
  int fd;
  int callers;
  bool want_out;
  uint64_t *ts; /* ring of send times of in-flight requests, FIFO */
  int ts_head, ts_n;
  int pending;    /* requests queued but not fully written */
  size_t cur_off; /* bytes of the first pending request already written */
  bytes_t in;
} cconn_t;

typedef struct cworker {
  pthread_t th;
  int ep;
  cconn_t *conns;
  int nconns;
  bench_hist_t hist;
  uint64_t count;
  int error;
} cworker_t;

static struct {
  size_t payload;
  char *body; /* payload bytes */
  uint32_t hdr; /* length prefix, network order */
  bench_window_t win;
} g;

static void cconn_want_out(cworker_t *w, cconn_t *c, bool on) {
  if (c->want_out == on)
    return;
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = on;
}

/* Writes pending requests with writev straight from the shared header and
 * payload: no copies on the client side either. */
static int cconn_flush(cworker_t *w, cconn_t *c) {
  size_t reqsz = 4 + g.payload;
  while (c->pending) {
    struct iovec iov[MAX_IOV];
    int n = 0;
    for (int r = 0; r < c->pending && n + 2 <= MAX_IOV; r++) {
      size_t off = r == 0 ? c->cur_off : 0;
      if (off < 4)
        iov[n++] = (struct iovec){(char *)&g.hdr + off, 4 - off};
      size_t poff = off > 4 ? off - 4 : 0;
      if (g.payload > poff)
        iov[n++] = (struct iovec){g.body + poff, g.payload - poff};
    }
    ssize_t k = writev(c->fd, iov, n);
    if (k < 0) {
      if (errno != EAGAIN)
        return -1;
      cconn_want_out(w, c, true);
      return 0;
    }
    size_t left = (size_t)k;
    while (left) {
      size_t rem = reqsz - c->cur_off;
      if (left >= rem) {
        left -= rem;
        c->pending--;
        c->cur_off = 0;
      } else {
        c->cur_off += left;
        left = 0;
      }
    }
  }
  cconn_want_out(w, c, false);
  return 0;
}

static void cconn_push(cconn_t *c, uint64_t now) {
  c->ts[(c->ts_head + c->ts_n) % c->callers] = now;
  c->ts_n++;
  c->pending++;
}

static int cconn_read(cworker_t *w, cconn_t *c) {
  for (int round = 0; round < 16; round++) {
    bytes_reserve(&c->in, READ_CHUNK / 4);
    size_t room = c->in.cap - c->in.off - c->in.len;
    ssize_t n = read(c->fd, c->in.p + c->in.off + c->in.len, room);
    if (n == 0)
      return -1;
    if (n < 0)
      return errno == EAGAIN ? 0 : -1;
    c->in.len += (size_t)n;
    uint64_t now = bench_now_ns();
    size_t done = 0;
    int replies = 0;
    while (c->in.len - done >= 4) {
      uint32_t len;
      memcpy(&len, c->in.p + c->in.off + done, 4);
      len = ntohl(len);
      if (len != g.payload || c->ts_n == 0) {
        fprintf(stderr, "baseline_echo: bad reply (len %u)\n", len);
        return -1;
      }
      if (c->in.len - done < 4 + (size_t)len)
        break;
      done += 4 + (size_t)len;
      uint64_t sent = c->ts[c->ts_head];
      c->ts_head = (c->ts_head + 1) % c->callers;
      c->ts_n--;
      replies++;
      if (bench_window_has(&g.win, now)) {
        bench_hist_add(&w->hist, now - sent);
        w->count++;
      }
      if (now < g.win.t_end)
        cconn_push(c, now);
    }
    bytes_consume(&c->in, done);
    if (replies && cconn_flush(w, c) < 0)
      return -1;
    if ((size_t)n < room)
      return 0;
  }
  return 0;
}

static void *cworker_main(void *arg) {
  cworker_t *w = arg;
  uint64_t now = bench_now_ns();
  for (int i = 0; i < w->nconns; i++) {
    cconn_t *c = &w->conns[i];
    for (int k = 0; k < c->callers; k++)
      cconn_push(c, now);
    if (cconn_flush(w, c) < 0) {
      w->error = 1;
      return NULL;
    }
  }
  struct epoll_event evs[64];
  while (bench_now_ns() < g.win.t_end) {
    int n = epoll_wait(w->ep, evs, 64, 20);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      w->error = 1;
      break;
    }
    for (int i = 0; i < n; i++) {
      cconn_t *c = evs[i].data.ptr;
      int rc = 0;
      if (evs[i].events & EPOLLOUT)
        rc = cconn_flush(w, c);
      if (rc == 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        rc = cconn_read(w, c);
      if (rc < 0) {
        w->error = 1;
        return NULL;
      }
    }
  }
  return NULL;
}

static int connect_to(const char *host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die("socket");
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "baseline_echo: bad address %s\n", host);
    exit(2);
  }
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
    die("connect");
  set_nonblock_nodelay(fd);
  return fd;
}


/* --sync: T threads, each with its own blocking connection, write one
 * request and read its reply, over and over: the raw-socket limit of T
 * synchronous callers (mprpc-bench --sync shares one channel among them). */
typedef struct sthread {
  pthread_t th;
  int fd;
  bench_hist_t hist;
  uint64_t count;
  int error;
  char *in;
} sthread_t;

static void *sthread_main(void *arg) {
  sthread_t *t = arg;
  size_t reqsz = 4 + g.payload;
  for (uint64_t now = bench_now_ns(); now < g.win.t_end;) {
    uint64_t sent = now;
    struct iovec iov[2] = {{&g.hdr, 4}, {g.body, g.payload}};
    int niov = g.payload ? 2 : 1;
    size_t left = reqsz;
    while (left) {
      ssize_t k = writev(t->fd, iov, niov);
      if (k <= 0) {
        if (k < 0 && errno == EINTR)
          continue;
        t->error = 1;
        return NULL;
      }
      left -= (size_t)k;
      for (int i = 0; i < niov && k > 0; i++) { /* advance past what went out */
        size_t take = (size_t)k < iov[i].iov_len ? (size_t)k : iov[i].iov_len;
        iov[i].iov_base = (char *)iov[i].iov_base + take;
        iov[i].iov_len -= take;
        k -= (ssize_t)take;
      }
    }
    size_t got = 0;
    while (got < reqsz) {
      ssize_t n = read(t->fd, t->in + got, reqsz - got);
      if (n <= 0) {
        if (n < 0 && errno == EINTR)
          continue;
        t->error = 1;
        return NULL;
      }
      got += (size_t)n;
    }
    uint32_t len;
    memcpy(&len, t->in, 4);
    if (ntohl(len) != g.payload) {
      fprintf(stderr, "baseline_echo: bad reply (len %u)\n", ntohl(len));
      t->error = 1;
      return NULL;
    }
    now = bench_now_ns();
    if (bench_window_has(&g.win, now)) {
      bench_hist_add(&t->hist, now - sent);
      t->count++;
    }
  }
  return NULL;
}

static int client_run_sync(const char *host, int port, pid_t server_pid, const bench_opts_t *o) {
  int n = o->conc;
  sthread_t *ts = calloc((size_t)n, sizeof *ts);
  bench_hist_t *h = calloc(1, sizeof *h);
  if (!ts || !h)
    die("calloc");
  for (int i = 0; i < n; i++) {
    ts[i].fd = connect_to(host, port);
    fcntl(ts[i].fd, F_SETFL, fcntl(ts[i].fd, F_GETFL) & ~O_NONBLOCK); /* blocking calls */
    ts[i].in = malloc(4 + g.payload);
    if (!ts[i].in)
      die("malloc");
  }
  bench_window_open(&g.win, o, server_pid);
  for (int i = 0; i < n; i++)
    if (pthread_create(&ts[i].th, NULL, sthread_main, &ts[i]) != 0)
      die("pthread_create");
  bench_window_run(&g.win);
  uint64_t count = 0;
  int err = 0;
  for (int i = 0; i < n; i++) {
    pthread_join(ts[i].th, NULL);
    bench_hist_merge(h, &ts[i].hist);
    count += ts[i].count;
    err |= ts[i].error;
    close(ts[i].fd);
    free(ts[i].in);
  }
  if (err)
    fprintf(stderr, "baseline_echo: connection error during the run\n");
  else
    bench_window_report(&g.win, "baseline-sync", o, count, h);
  free(h);
  free(ts);
  return err;
}

static int client_run(const char *host, int port, pid_t server_pid, const bench_opts_t *o) {
  g.payload = o->payload;
  g.body = malloc(o->payload ? o->payload : 1);
  if (!g.body)
    die("malloc");
  bench_fill_payload(g.body, o->payload);
  g.hdr = htonl((uint32_t)o->payload);
  if (o->sync) {
    int rc = client_run_sync(host, port, server_pid, o);
    free(g.body);
    return rc;
  }

  int nconns = o->conns < 1 ? 1 : o->conns;
  if (nconns > o->conc)
    nconns = o->conc;
  int nthreads = o->cli_threads < 1 ? 1 : o->cli_threads;
  if (nthreads > nconns)
    nthreads = nconns;
  cworker_t *ws = calloc((size_t)nthreads, sizeof *ws);
  if (!ws)
    die("calloc");
  for (int t = 0; t < nthreads; t++) {
    ws[t].ep = epoll_create1(EPOLL_CLOEXEC);
    ws[t].nconns = nconns / nthreads + (t < nconns % nthreads);
    ws[t].conns = calloc((size_t)ws[t].nconns, sizeof(cconn_t));
    if (ws[t].ep < 0 || !ws[t].conns)
      die("client setup");
  }
  for (int i = 0; i < nconns; i++) {
    cworker_t *w = &ws[i % nthreads];
    cconn_t *c = &w->conns[i / nthreads];
    c->fd = connect_to(host, port);
    c->callers = o->conc / nconns + (i < o->conc % nconns);
    c->ts = calloc((size_t)c->callers, sizeof *c->ts);
    if (!c->ts)
      die("calloc");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev);
  }

  bench_window_open(&g.win, o, server_pid);
  for (int t = 0; t < nthreads; t++)
    if (pthread_create(&ws[t].th, NULL, cworker_main, &ws[t]) != 0)
      die("pthread_create");
  bench_window_run(&g.win);

  bench_hist_t *h = calloc(1, sizeof *h);
  if (!h)
    die("calloc");
  uint64_t count = 0;
  int err = 0;
  for (int t = 0; t < nthreads; t++) {
    pthread_join(ws[t].th, NULL);
    bench_hist_merge(h, &ws[t].hist);
    count += ws[t].count;
    err |= ws[t].error;
    for (int i = 0; i < ws[t].nconns; i++) {
      close(ws[t].conns[i].fd);
      free(ws[t].conns[i].ts);
      free(ws[t].conns[i].in.p);
    }
    free(ws[t].conns);
    close(ws[t].ep);
  }
  if (err) {
    fprintf(stderr, "baseline_echo: connection error during the run\n");
    return 1;
  }
  bench_window_report(&g.win, "baseline", o, count, h);
  free(h);
  free(g.body);
  free(ws);
  return 0;
}

/* ------------------------------------------------------------------ main */

static void usage(void) {
  fprintf(stderr,
          "usage: baseline_echo [-s BYTES] [-c CONC] [-d SECS] [-w SECS] [-t SRV_THREADS]\n"
          "                     [-T CLI_THREADS] [-n CONNS] [--sync]\n"
          "       baseline_echo --server [-p PORT] [-t THREADS]\n"
          "       baseline_echo --client HOST:PORT [--server-pid PID] [options]\n");
  exit(2);
}

int main(int argc, char **argv) {
  bench_cli_t cli;
  signal(SIGPIPE, SIG_IGN);
  if (bench_parse_args(argc, argv, (long long)MAX_FRAME, false, &cli) != 0)
    usage();
  const bench_opts_t o = cli.o;
  if (o.conc < 1 || o.secs <= 0 || o.secs > 3600 || o.warmup < 0 || o.srv_threads < 1 ||
      o.srv_threads > 256 || o.cli_threads > 256 || o.conns > 4096)
    usage();

  if (cli.mode == BENCH_MODE_SERVER) {
    int lfd = listen_on("127.0.0.1", cli.port);
    printf("PORT %d\n", bound_port(lfd));
    fflush(stdout);
    server_run(lfd, o.srv_threads);
    return 0;
  }
  if (cli.mode == BENCH_MODE_CLIENT) {
    char host[64];
    const char *colon = strrchr(cli.target, ':');
    if (!colon || (size_t)(colon - cli.target) >= sizeof host)
      usage();
    memcpy(host, cli.target, (size_t)(colon - cli.target));
    host[colon - cli.target] = 0;
    return client_run(host, atoi(colon + 1), cli.server_pid, &o);
  }

  /* Both: the listening socket exists before the fork, so no port race. */
  int lfd = listen_on("127.0.0.1", 0);
  int lport = bound_port(lfd);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0)
    die("fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(1);
    server_run(lfd, o.srv_threads);
    _exit(0);
  }
  close(lfd);
  int rc = client_run("127.0.0.1", lport, pid, &o);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return rc;
}
