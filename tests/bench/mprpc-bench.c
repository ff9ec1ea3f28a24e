/*
 * mprpc-bench: echo benchmark of mprpc, provider and consumer in separate
 * processes on loopback, with the same closed-loop pattern as baseline_echo.
 *
 *   mprpc-bench [-s BYTES] [-c CONC] [-d SECS] [-w SECS] [-t PROVIDER_THREADS]
 *               [-T CONSUMER_THREADS] [-n CONNS]
 *       execs itself as the provider (127.0.0.1, ephemeral port), runs C
 *       concurrent callers through the asynchronous channel API (each sends
 *       its next call when its previous one completed) over CONNS channels,
 *       one multiplexed connection each, spread over CONSUMER_THREADS loops;
 *       prints one "BENCH impl=mprpc ..." line and stops the provider.
 *   mprpc-bench --sync -T THREADS [-n CONNS] [options]
 *       THREADS threads each call the generated Echo stub synchronously in
 *       a loop through ONE shared channel (CONNS connections to the
 *       provider, connections_per_endpoint); "BENCH impl=mprpc-sync ...",
 *       concurrency = THREADS.
 *   mprpc-bench --server [-p PORT] [-t THREADS]   provider only ("PORT n")
 *   mprpc-bench --client HOST:PORT [--server-pid PID] [options]
 *   mprpc-bench --idle-conns N [-t THREADS]
 *       opens N idle TCP connections to a fresh provider and prints its RSS
 *       growth per connection (from /proc/<pid>/status).
 *   --tls DIR (with any of the above)
 *       the provider serves TLS only (DIR/server.pem, DIR/server.key) and
 *       the consumer verifies it (DIR/ca.pem): "BENCH impl=mprpc-tls ...".
 *   mprpc-bench --tls DIR --tls-handshakes N
 *       N new TLS connections one after another to a fresh provider, each
 *       closed once its handshake is done, first with session resumption
 *       off, then on: "HANDSHAKE impl=mprpc-tls resumption=0|1 conns=N
 *       seconds=S conns_per_s=R resumed=K".
 *
 * cpu_pct is the provider's CPU over the measurement window (100 = one core).
 * MPRPC_BENCH_CONSOLE=off in the environment turns the provider's builtin
 * console off (for the console's cost check: interleave runs on and off).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "bench_common.h"
#include "examples/echo/echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/controller.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/rt.h"
#include "mprpc/server.h"
#include "mprpc/tls.h"

/* --tls DIR: certificates made by tests/support/tls_certs.sh (ci/bench.sh). */
static const char *g_tls_dir;
static char g_tls_cert[512], g_tls_key[512], g_tls_ca[512];

static void tls_paths(void) {
  snprintf(g_tls_cert, sizeof g_tls_cert, "%s/server.pem", g_tls_dir);
  snprintf(g_tls_key, sizeof g_tls_key, "%s/server.key", g_tls_dir);
  snprintf(g_tls_ca, sizeof g_tls_ca, "%s/ca.pem", g_tls_dir);
}

static void die(const char *what, int rc) {
  if (rc)
    fprintf(stderr, "mprpc-bench: %s: %s\n", what, mprpc_strerror(rc));
  else
    perror(what);
  exit(1);
}

/* --------------------------------------------------------------- provider */

static mprpc_server_t *g_server;

static void on_term(int sig) {
  (void)sig;
  if (g_server)
    mprpc_server_stop_async(g_server);
}

static void bench_echo(Example__EchoService_Service *svc, const Example__EchoRequest *req,
                      Example__EchoResponse_Closure done, void *closure_data) {
  (void)svc;
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = req->message;
  done(&resp, closure_data);
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static int server_main(int port, int threads) {
  static Example__EchoService_Service svc = EXAMPLE__ECHO_SERVICE__INIT(bench_);
  raise_nofile();
  mprpc_log_set_level(MPRPC_LOG_LEVEL_WARN);
  mprpc_server_opts_t so;
  mprpc_server_opts_init(&so);
  so.host = "127.0.0.1";
  so.port = (uint16_t)port;
  so.threads = (size_t)threads;
  /* MPRPC_BENCH_CONSOLE=off: the console's cost check (issue 18) compares
   * interleaved runs with it on (the default) and off. */
  const char *con = getenv("MPRPC_BENCH_CONSOLE");
  so.console = !(con && strcmp(con, "off") == 0);
  if (g_tls_dir) {
    so.tls_mode = MPRPC_SERVER_TLS_REQUIRED;
    so.tls_cert = g_tls_cert;
    so.tls_key = g_tls_key;
  }
  int rc = mprpc_server_new(&so, &g_server);
  if (rc)
    die("mprpc_server_new", rc);
  if ((rc = mprpc_server_add_service(g_server, &svc.base)) != 0)
    die("mprpc_server_add_service", rc);
  if ((rc = mprpc_server_start(g_server)) != 0)
    die("mprpc_server_start", rc);
  struct sigaction sa = {.sa_handler = on_term};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  printf("PORT %u\n", (unsigned)mprpc_server_port(g_server));
  fflush(stdout);
  rc = mprpc_server_run(g_server);
  mprpc_server_destroy(g_server);
  return rc ? 1 : 0;
}

/* Starts `self --server -t N` with its stdout on a pipe and reads its port. */
static pid_t spawn_server(int threads, int *port) {
  int pfd[2];
  if (pipe(pfd) < 0)
    die("pipe", 0);
  pid_t pid = fork();
  if (pid < 0)
    die("fork", 0);
  if (pid == 0) {
    char tbuf[16];
    snprintf(tbuf, sizeof tbuf, "%d", threads);
    dup2(pfd[1], 1);
    close(pfd[0]);
    close(pfd[1]);
    if (g_tls_dir)
      execl("/proc/self/exe", "mprpc-bench", "--server", "-t", tbuf, "--tls", g_tls_dir,
            (char *)NULL);
    else
      execl("/proc/self/exe", "mprpc-bench", "--server", "-t", tbuf, (char *)NULL);
    _exit(127);
  }
  close(pfd[1]);
  char line[64] = {0};
  size_t got = 0;
  struct pollfd p = {.fd = pfd[0], .events = POLLIN};
  uint64_t deadline = bench_now_ns() + 10ull * 1000000000ull;
  while (got < sizeof line - 1 && !strchr(line, '\n') && bench_now_ns() < deadline) {
    if (poll(&p, 1, 200) <= 0)
      continue;
    ssize_t n = read(pfd[0], line + got, sizeof line - 1 - got);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(pfd[0]);
  if (sscanf(line, "PORT %d", port) != 1 || *port <= 0) {
    fprintf(stderr, "mprpc-bench: provider did not start\n");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    exit(1);
  }
  return pid;
}

static void stop_server(pid_t pid) {
  kill(pid, SIGTERM);
  for (int i = 0; i < 100; i++) {
    if (waitpid(pid, NULL, WNOHANG) == pid)
      return;
    usleep(50 * 1000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

/* --------------------------------------------------------------- consumer */

typedef struct worker worker_t;

typedef struct caller {
  worker_t *w;
  mprpc_channel_t *ch;
  uint64_t sent;
} caller_t;

struct worker {
  bench_hist_t hist;
  uint64_t count;
  uint64_t failures;
  int last_error;
  atomic_int inflight;
};

static struct {
  Example__EchoRequest req;
  size_t req_len; /* strlen(req.message), for checking echoes */
  bench_window_t win;
} g;

static void call_done(const ProtobufCMessage *resp, void *arg);

static void start_call(caller_t *c) {
  c->sent = bench_now_ns();
  atomic_fetch_add(&c->w->inflight, 1);
  int rc = mprpc_channel_call(c->ch, 0, &g.req.base, NULL, call_done, c);
  if (rc) {
    atomic_fetch_sub(&c->w->inflight, 1);
    c->w->failures++;
    c->w->last_error = rc;
  }
}

static void call_done(const ProtobufCMessage *resp, void *arg) {
  caller_t *c = arg;
  worker_t *w = c->w;
  uint64_t now = bench_now_ns();
  if (!resp) {
    w->failures++;
    mprpc_controller_t *ctl = mprpc_controller_current();
    w->last_error = ctl ? mprpc_controller_error_code(ctl) : MPRPC_EINTERNAL;
  } else if (bench_window_has(&g.win, now)) {
    const Example__EchoResponse *r = (const Example__EchoResponse *)resp;
    if (strlen(r->message) != g.req_len) {
      w->failures++;
      w->last_error = MPRPC_ERESPONSE;
    } else {
      bench_hist_add(&w->hist, now - c->sent);
      w->count++;
    }
  }
  atomic_fetch_sub(&w->inflight, 1);
  if (now < g.win.t_end)
    start_call(c);
}

static void post_start(void *arg) { start_call(arg); }


/* --sync: T threads call the generated Echo stub synchronously in a loop,
 * all through one channel on one consumer loop (the seeds' "like a local
 * function" usage). The closure runs on the caller's thread before the stub
 * returns. */
typedef struct sync_caller {
  pthread_t th;
  mprpc_channel_t *ch;
  bench_hist_t hist;
  uint64_t count, failures;
  int last_error;
  bool ok; /* set by the closure */
} sync_caller_t;

static void sync_done(const Example__EchoResponse *r, void *arg) {
  sync_caller_t *c = arg;
  if (!r) {
    mprpc_controller_t *ctl = mprpc_controller_current();
    c->last_error = ctl ? mprpc_controller_error_code(ctl) : MPRPC_EINTERNAL;
    c->ok = false;
  } else {
    c->ok = strlen(r->message) == g.req_len;
    if (!c->ok)
      c->last_error = MPRPC_ERESPONSE;
  }
}

static void *sync_main(void *arg) {
  sync_caller_t *c = arg;
  ProtobufCService *svc = mprpc_channel_service(c->ch);
  for (uint64_t now = bench_now_ns(); now < g.win.t_end;) {
    uint64_t sent = now;
    c->ok = false;
    example__echo_service__echo(svc, &g.req, sync_done, c);
    now = bench_now_ns();
    if (!c->ok)
      c->failures++;
    else if (bench_window_has(&g.win, now)) {
      bench_hist_add(&c->hist, now - sent);
      c->count++;
    }
  }
  return NULL;
}

static int sync_client(const char *target, pid_t server_pid, const bench_opts_t *o) {
  mprpc_loop_group_t *grp;
  int rc = mprpc_loop_group_new(1, &grp);
  if (rc || (rc = mprpc_loop_group_start(grp)) != 0)
    die("loop group", rc);
  mprpc_channel_opts_t co;
  mprpc_channel_opts_init(&co);
  co.loop = mprpc_loop_group_loop(grp, 0);
  co.transport = mprpc_tcp_transport();
  co.servers = target;
  co.timeout_ms = 10000;
  co.connections_per_endpoint = (unsigned)(o->conns < 1 ? 1 : o->conns);
  mprpc_channel_t *ch;
  if ((rc = mprpc_channel_new(&example__echo_service__descriptor, &co, &ch)) != 0)
    die("mprpc_channel_new", rc);
  int n = o->conc;
  sync_caller_t *cs = calloc((size_t)n, sizeof *cs);
  bench_hist_t *h = calloc(1, sizeof *h);
  if (!cs || !h)
    die("calloc", 0);
  bench_window_open(&g.win, o, server_pid);
  for (int i = 0; i < n; i++) {
    cs[i].ch = ch;
    if (pthread_create(&cs[i].th, NULL, sync_main, &cs[i]) != 0)
      die("pthread_create", 0);
  }
  bench_window_run(&g.win);
  uint64_t count = 0, failures = 0;
  int last_error = 0;
  for (int i = 0; i < n; i++) {
    pthread_join(cs[i].th, NULL);
    bench_hist_merge(h, &cs[i].hist);
    count += cs[i].count;
    failures += cs[i].failures;
    if (cs[i].last_error)
      last_error = cs[i].last_error;
  }
  mprpc_channel_destroy(ch);
  mprpc_loop_group_free(grp);
  bench_window_report(&g.win, "mprpc-sync", o, count, h);
  if (failures)
    fprintf(stderr, "mprpc-bench: %llu failed calls (last: %s)\n", (unsigned long long)failures,
            mprpc_err_name(last_error));
  free(h);
  free(cs);
  return failures && !count ? 1 : 0;
}

static int client_main(const char *target, pid_t server_pid, const bench_opts_t *o) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_WARN);
  char *body = malloc(o->payload + 1);
  if (!body)
    die("malloc", 0);
  bench_fill_payload(body, o->payload);
  body[o->payload] = 0;
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = body;
  g.req = req;
  g.req_len = o->payload;
  if (o->sync) {
    int rc = sync_client(target, server_pid, o);
    free(body);
    return rc;
  }

  int nthreads = o->cli_threads < 1 ? 1 : o->cli_threads;
  int nch = o->conns < nthreads ? nthreads : o->conns;
  if (nch > o->conc)
    nch = o->conc;
  if (nthreads > nch)
    nthreads = nch;

  mprpc_loop_group_t *grp;
  int rc = mprpc_loop_group_new((size_t)nthreads, &grp);
  if (rc || (rc = mprpc_loop_group_start(grp)) != 0)
    die("loop group", rc);
  worker_t *ws = calloc((size_t)nthreads, sizeof *ws);
  mprpc_channel_t **chs = calloc((size_t)nch, sizeof *chs);
  caller_t *callers = calloc((size_t)o->conc, sizeof *callers);
  bench_hist_t *h = calloc(1, sizeof *h);
  if (!ws || !chs || !callers || !h)
    die("calloc", 0);
  for (int i = 0; i < nch; i++) {
    mprpc_channel_opts_t co;
    mprpc_channel_opts_init(&co);
    co.loop = mprpc_loop_group_loop(grp, (size_t)(i % nthreads));
    co.transport = mprpc_tcp_transport();
    co.servers = target;
    co.timeout_ms = 10000;
    if (g_tls_dir) {
      co.tls = true;
      co.tls_ca = g_tls_ca;
    }
    if ((rc = mprpc_channel_new(&example__echo_service__descriptor, &co, &chs[i])) != 0)
      die("mprpc_channel_new", rc);
  }
  for (int k = 0; k < o->conc; k++) {
    int ci = k % nch;
    callers[k].ch = chs[ci];
    callers[k].w = &ws[ci % nthreads];
  }

  bench_window_open(&g.win, o, server_pid);
  for (int k = 0; k < o->conc; k++) {
    caller_t *c = &callers[k];
    if ((rc = mprpc_loop_post(mprpc_channel_loop(c->ch), post_start, c)) != 0)
      die("mprpc_loop_post", rc);
  }

  bench_window_run(&g.win);

  /* Let the calls in flight finish (bounded), then tear down. */
  for (int i = 0; i < 500; i++) {
    int left = 0;
    for (int t = 0; t < nthreads; t++)
      left += atomic_load(&ws[t].inflight);
    if (!left)
      break;
    usleep(10 * 1000);
  }
  for (int i = 0; i < nch; i++)
    mprpc_channel_destroy(chs[i]);
  mprpc_loop_group_free(grp);

  uint64_t count = 0, failures = 0;
  int last_error = 0;
  for (int t = 0; t < nthreads; t++) {
    bench_hist_merge(h, &ws[t].hist);
    count += ws[t].count;
    failures += ws[t].failures;
    if (ws[t].last_error)
      last_error = ws[t].last_error;
  }
  bench_window_report(&g.win, g_tls_dir ? "mprpc-tls" : "mprpc", o, count, h);
  if (failures)
    fprintf(stderr, "mprpc-bench: %llu failed calls (last: %s)\n", (unsigned long long)failures,
            mprpc_err_name(last_error));
  free(h);
  free(callers);
  free(chs);
  free(ws);
  free(body);
  return failures && !count ? 1 : 0;
}

/* ----------------------------------------------------------- idle memory */

static long proc_rss_kb(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

static int proc_fd_count(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
  DIR *d = opendir(path);
  if (!d)
    return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

static int idle_main(int nconns, int threads) {
  raise_nofile();
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if ((long long)rl.rlim_cur < (long long)nconns + 64) {
    fprintf(stderr, "mprpc-bench: RLIMIT_NOFILE %llu too low for %d connections\n",
            (unsigned long long)rl.rlim_cur, nconns);
    return 1;
  }
  int port;
  pid_t pid = spawn_server(threads, &port);
  usleep(200 * 1000);
  long rss0 = proc_rss_kb(pid);
  int fd0 = proc_fd_count(pid);
  int *fds = calloc((size_t)nconns, sizeof *fds);
  if (!fds)
    die("calloc", 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  int opened = 0;
  uint64_t deadline = bench_now_ns() + 30ull * 1000000000ull;
  for (; opened < nconns && bench_now_ns() < deadline; opened++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
      perror("mprpc-bench: connect");
      if (fd >= 0)
        close(fd);
      break;
    }
    fds[opened] = fd;
  }
  /* Wait (bounded) until the provider has accepted them all. */
  int fdn = fd0;
  for (int i = 0; i < 100 && fdn < fd0 + opened; i++) {
    usleep(100 * 1000);
    fdn = proc_fd_count(pid);
  }
  usleep(300 * 1000);
  long rss1 = proc_rss_kb(pid);
  int accepted = fdn - fd0;
  printf("IDLE impl=mprpc conns=%d accepted=%d rss_before_kb=%ld rss_after_kb=%ld "
         "bytes_per_conn=%.0f\n",
         opened, accepted, rss0, rss1,
         accepted > 0 ? (double)(rss1 - rss0) * 1024.0 / accepted : 0.0);
  fflush(stdout);
  for (int i = 0; i < opened; i++)
    close(fds[i]);
  free(fds);
  stop_server(pid);
  return opened == nconns && accepted >= opened ? 0 : 1;
}

/* ------------------------------------------------------ TLS handshakes */

typedef struct hs_run {
  mprpc_transport_t tp;
  mprpc_loop_t loop;
  uint16_t port;
  int left, done, failed, closed, started;
  mprpc_conn_t *prev; /* kept open until the next one is up (see hs_on_connect) */
  mprpc_rbuf_t in[2];
  void *waiter;
} hs_run_t;

static void hs_next(hs_run_t *r);

static void hs_maybe_wake(hs_run_t *r) {
  if (r->closed == r->started && (r->left == 0 || r->failed > 10))
    r->loop.vt->waiter_wake(r->loop.ctx, r->waiter);
}

/* One connection is kept open while the next one shakes hands: a TLS 1.3
 * session ticket arrives just after the client's handshake is done, so a
 * connection closed at once would leave nothing to resume. */
static void hs_on_connect(mprpc_conn_t *c, void *ud) {
  hs_run_t *r = ud;
  r->done++;
  if (r->prev)
    mprpc_conn_close(r->tp, r->prev, false);
  r->prev = c;
  if (r->left == 0) {
    mprpc_conn_close(r->tp, c, false);
    r->prev = NULL;
  } else {
    hs_next(r);
  }
}
static void hs_on_data(mprpc_conn_t *c, void *ud, mprpc_rbuf_t *in) {
  (void)c, (void)ud;
  mprpc_rbuf_consume(in, mprpc_rbuf_len(in));
}
static void hs_on_close(mprpc_conn_t *c, void *ud, int reason, int err) {
  (void)reason;
  hs_run_t *r = ud;
  r->closed++;
  if (r->prev == c)
    r->prev = NULL;
  if (err) {
    if (r->failed++ == 0)
      fprintf(stderr, "mprpc-bench: handshake failed: %s\n", mprpc_err_name(err));
    if (!r->prev)
      hs_next(r); /* nothing else is shaking hands: go on */
  }
  hs_maybe_wake(r);
}
static const mprpc_conn_handler_t hs_handler = {
    .on_connect = hs_on_connect, .on_data = hs_on_data, .on_close = hs_on_close};

static void hs_next(hs_run_t *r) {
  if (r->left == 0 || r->failed > 10) {
    hs_maybe_wake(r);
    return;
  }
  r->left--;
  mprpc_conn_opts_t co = {0, 5000ull * 1000000ull};
  mprpc_conn_t *c;
  mprpc_rbuf_t *in = &r->in[r->started & 1]; /* at most two are open */
  mprpc_rbuf_consume(in, mprpc_rbuf_len(in));
  int rc = mprpc_conn_connect(r->tp, r->loop, "127.0.0.1", r->port, &co, &hs_handler, r, in, &c);
  if (rc != 0) {
    r->failed = 11;
    hs_maybe_wake(r);
    return;
  }
  r->started++;
}
static void hs_start(void *arg) { hs_next(arg); }

static int handshakes_main(int n, int threads) {
  int port;
  pid_t pid = spawn_server(threads, &port);
  mprpc_loop_group_t *grp;
  int rc = mprpc_loop_group_new(1, &grp);
  if (rc || (rc = mprpc_loop_group_start(grp)) != 0)
    die("loop group", rc);
  int status = 0;
  for (int resume = 0; resume <= 1; resume++) {
    mprpc_tls_opts_t t = {.role = MPRPC_TLS_CLIENT, .ca_file = g_tls_ca,
                          .no_resumption = !resume};
    mprpc_tls_ctx_t *x;
    char err[512];
    if ((rc = mprpc_tls_ctx_new(&t, &x, err, sizeof err)) != 0) {
      fprintf(stderr, "mprpc-bench: %s\n", err);
      die("mprpc_tls_ctx_new", rc);
    }
    hs_run_t r = {.tp = mprpc_tls_transport(mprpc_tcp_transport(), x),
                  .loop = mprpc_loop_group_loop(grp, 0), .port = (uint16_t)port, .left = n};
    mprpc_rbuf_init(&r.in[0]);
    mprpc_rbuf_init(&r.in[1]);
    r.waiter = r.loop.vt->waiter_new(r.loop.ctx);
    if (!r.waiter)
      die("waiter", MPRPC_ENOMEM);
    uint64_t t0 = bench_now_ns();
    if ((rc = mprpc_loop_post(r.loop, hs_start, &r)) != 0)
      die("mprpc_loop_post", rc);
    r.loop.vt->waiter_wait(r.loop.ctx, r.waiter);
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    r.loop.vt->waiter_free(r.loop.ctx, r.waiter);
    usleep(50 * 1000); /* the last on_close has run */
    mprpc_tls_stats_t st;
    mprpc_tls_stats(x, &st);
    printf("HANDSHAKE impl=mprpc-tls resumption=%d conns=%d seconds=%.3f conns_per_s=%.0f "
           "resumed=%llu\n",
           resume, r.done, secs, secs > 0 ? r.done / secs : 0.0, (unsigned long long)st.resumed);
    fflush(stdout);
    if (r.failed || r.done != n)
      status = 1;
    mprpc_rbuf_free(&r.in[0]);
    mprpc_rbuf_free(&r.in[1]);
    mprpc_tls_ctx_free(x);
  }
  mprpc_loop_group_free(grp);
  stop_server(pid);
  return status;
}

/* ------------------------------------------------------------------ main */

static void usage(void) {
  fprintf(stderr,
          "usage: mprpc-bench [-s BYTES] [-c CONC] [-d SECS] [-w SECS] [-t PROVIDER_THREADS]\n"
          "                   [-T CONSUMER_THREADS] [-n CONNS] [--sync]\n"
          "       mprpc-bench --server [-p PORT] [-t THREADS]\n"
          "       mprpc-bench --client HOST:PORT [--server-pid PID] [options]\n"
          "       mprpc-bench --idle-conns N [-t THREADS]\n"
          "       --tls DIR with any of them; mprpc-bench --tls DIR --tls-handshakes N\n");
  exit(2);
}

int main(int argc, char **argv) {
  bench_cli_t cli;
  signal(SIGPIPE, SIG_IGN);
  /* --tls DIR and --tls-handshakes N are this program's own: taken out
   * before the shared parser sees the rest. */
  long handshakes = 0;
  int kept = 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--tls") == 0 && i + 1 < argc) {
      g_tls_dir = argv[++i];
    } else if (strcmp(argv[i], "--tls-handshakes") == 0 && i + 1 < argc) {
      handshakes = strtol(argv[++i], NULL, 10);
      if (handshakes < 1 || handshakes > 1000000)
        usage();
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  if (g_tls_dir)
    tls_paths();
  else if (handshakes)
    usage();
  if (bench_parse_args(argc, argv, 32ll << 20, true, &cli) != 0)
    usage();
  const bench_opts_t o = cli.o;
  if (o.conc < 1 || o.conc > 100000 || o.secs <= 0 || o.secs > 3600 || o.warmup < 0 ||
      o.srv_threads < 1 || o.srv_threads > 256 || o.cli_threads > 256 || o.conns > 4096)
    usage();

  if (handshakes)
    return handshakes_main((int)handshakes, o.srv_threads);
  switch (cli.mode) {
  case BENCH_MODE_SERVER:
    return server_main(cli.port, o.srv_threads);
  case BENCH_MODE_CLIENT:
    return client_main(cli.target, cli.server_pid, &o);
  case BENCH_MODE_IDLE:
    if (cli.idle < 1 || cli.idle > 1000000)
      usage();
    return idle_main(cli.idle, o.srv_threads);
  default: {
    int sport;
    pid_t pid = spawn_server(o.srv_threads, &sport);
    char tgt[64];
    snprintf(tgt, sizeof tgt, "127.0.0.1:%d", sport);
    int rc = client_main(tgt, pid, &o);
    stop_server(pid);
    return rc;
  }
  }
}
