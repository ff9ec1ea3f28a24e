/*
 * chaos_runner: the real runtime under real network faults, checked by the
 * simulator's invariants (docs/simulator.md, "Chaos runs"; `make chaos`).
 *
 * Runs inside a private network namespace that ci/chaos.sh created (it
 * refuses to run in the namespace of PID 1). Each virtual host is a real
 * process on its own 127.0.0.x: a 3-node ZooKeeper ensemble on .2-.4,
 * providers on .5-.9 (chaos_provider), consumers on .11-.13
 * (chaos_consumer). A scenario's fault plan (sim/plan.c, from the seed) is
 * played in real time: partitions and ZooKeeper cuts as nftables drops in
 * the namespace's input hook, loss (numgen) and duplication (dup) as
 * nftables rules, delay and jitter through an NFQUEUE rule and the
 * userspace netem thread (support/netem.c), kill -9 / SIGSTOP / SIGTERM of
 * processes by PID, the ZooKeeper leader found with `srvr`. Afterwards the
 * logs are fed to the shared checker (sim/check.c), the registry is read
 * with the ZooKeeper C client, the same plan runs in the simulator, and a
 * timeline SVG is written (sim/timeline.c).
 *
 *   chaos_runner --out DIR [--scenario NAME]... [--seed N] [--quick] [--bin DIR]
 *                [--bug exec_twice]   (self-test: providers log each run twice,
 *                                      so the checker must report at-most-once)
 *
 * Prints per scenario
 *   CHAOS scenario=NAME seed=S calls=N ok=K failed=F violations=V recovery_ms=R
 * then the model-vs-reality table. Exit status: 0 when no invariant broke,
 * 1 on a violation, 2 on a usage or setup error. Every process it starts is
 * tracked by PID and killed by PID on every way out.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <zookeeper/zookeeper.h>

#include "../../sim/check.h"
#include "../../sim/plan.h"
#include "../../sim/scenario.h"
#include "../../sim/timeline.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/rand.h"
#include "support/chaos.h"

#define MS UINT64_C(1000000)
#define ZK_N 3
#define QUEUE_NUM 7
#define SERVICE "example.EchoService"
#define SLACK_MS 250 /* real processes on a shared machine: scheduling hiccups */
#define MAX_CALLS (1u << 16)
#define MAX_VIOL 64

enum { K_ZK, K_PROV, K_CONS };

typedef struct proc {
  int kind, idx;
  pid_t pid;       /* 0: not running */
  int incarnation; /* providers: port 7000 + n; consumers: token bits */
  bool stopped;    /* SIGSTOPped */
  bool expect_exit;
  bool restart_on_exit;
  uint64_t restart_delay_ms;
  uint64_t down_since_ms;
  uint32_t killed_incs; /* consumers: incarnations killed with -9 */
  int unexpected;       /* exits nobody asked for */
  char addr[16];
} proc_t;

enum { A_FAULT = 1, A_END, A_RESTART_PROV, A_RESTART_CONS, A_CONT, A_ZK_RESTART, A_QUIET };

typedef struct act {
  uint64_t at_ms;
  int type, arg;
  bool done;
} act_t;

typedef struct active {
  const mprpc_plan_fault_t *f;
  uint64_t until_ms;
} active_t;

typedef struct call {
  mprpc_check_call_t c;
  uint64_t end_ns;
  uint64_t lat_us;
  bool seen_start;
} call_t;

typedef struct span {
  uint64_t from, to;
  int lane;
  char label[48];
} span_t;

typedef struct result {
  char name[32];
  uint64_t seed;
  uint64_t calls, ok, failed, abandoned, viol;
  uint64_t recovery_ms;
  bool have_sim;
  mprpc_sim_result_t sim;
  uint64_t sim_recovery_ms;
} result_t;

static struct {
  const char *bin, *out;
  bool quick;
  const char *bug; /* --bug: a deliberate fault in the providers (self-test) */
  bool have_iptables;
  proc_t zk[ZK_N];
  char zk_dir[PATH_MAX];
  volatile sig_atomic_t interrupted;
} G;

typedef struct run {
  mprpc_plan_t plan;
  char dir[PATH_MAX];
  char uri[512], zk_hosts[256], chroot[96];
  uint64_t t0_wall, t0_mono;
  proc_t prov[MPRPC_PLAN_MAX_PROVIDERS], cons[MPRPC_PLAN_MAX_CONSUMERS];
  act_t acts[1024];
  size_t nacts;
  active_t active[MPRPC_PLAN_MAX_FAULTS];
  size_t nactive;
  span_t spans[256];
  size_t nspans;
  mprpc_xoshiro_t x;
  char viol[MAX_VIOL][256];
  uint64_t nviol;
  call_t *calls;
  uint32_t ncalls;
  int32_t *slot; /* token hash -> index + 1 */
  uint64_t first_exec_after_quiet[MPRPC_PLAN_MAX_PROVIDERS];
  mprpc_timeline_t *tl;
} run_t;

/* ---- small helpers --------------------------------------------------------------------------- */

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rel_ms(const run_t *r) { return (mono_ns() - r->t0_mono) / MS; }

static void sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !G.interrupted) {
  }
}

static void report(void *ud, const char *msg) {
  run_t *r = ud;
  if (r->nviol < MAX_VIOL)
    snprintf(r->viol[r->nviol], sizeof r->viol[0], "%s", msg);
  r->nviol++;
}

static void violate(run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violate(run_t *r, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  report(r, msg);
}

static void note(run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(run_t *r, const char *fmt, ...) {
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/events.log", r->dir);
  FILE *f = fopen(path, "a");
  if (!f)
    return;
  fprintf(f, "%7.3f ", (double)(mono_ns() - r->t0_mono) / 1e9);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
  fclose(f);
}

static void span_add(run_t *r, uint64_t from_ms, uint64_t to_ms, int lane, const char *label) {
  if (r->nspans >= sizeof r->spans / sizeof r->spans[0])
    return;
  span_t *s = &r->spans[r->nspans++];
  s->from = from_ms;
  s->to = to_ms;
  s->lane = lane;
  snprintf(s->label, sizeof s->label, "%.47s", label);
}

/* fork + exec with stdout/stderr appended to `log` (NULL: /dev/null) and
 * stdin from `in` (NULL: /dev/null); the child gets its own process group so
 * a terminal's ^C reaches only the runner, which stops everyone by PID. */
static pid_t spawn(char *const argv[], const char *log, const char *in, const char *cwd,
                   const char *src_addr) {
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    setpgid(0, 0);
    int fi = open(in ? in : "/dev/null", O_RDONLY);
    int fo = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fi >= 0)
      dup2(fi, 0);
    if (fo >= 0) {
      dup2(fo, 1);
      dup2(fo, 2);
    }
    for (int fd = 3; fd < 1024; fd++)
      close(fd);
    if (cwd && chdir(cwd) != 0)
      _exit(126);
    if (src_addr)
      setenv("CHAOS_SRC_ADDR", src_addr, 1);
    else
      unsetenv("CHAOS_SRC_ADDR");
    signal(SIGPIPE, SIG_DFL);
    execv(argv[0], argv);
    _exit(127);
  }
  return pid;
}

/* Runs a command to completion (bounded: 20 s, then SIGKILL). Exit code or -1. */
static int run_cmd(char *const argv[], const char *in, const char *log) {
  pid_t pid = spawn(argv, log, in, NULL, NULL);
  if (pid < 0)
    return -1;
  uint64_t end = mono_ns() + 20000 * MS;
  int st;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid)
      break;
    if (mono_ns() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return -1;
    }
    sleep_ms(2);
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *find_tool(const char *name) {
  static char buf[4][64];
  static int k;
  const char *dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};
  for (size_t i = 0; i < 4; i++) {
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dirs[i], name);
    if (access(b, X_OK) == 0)
      return b;
  }
  return NULL;
}

/* ---- processes ------------------------------------------------------------------------------------- */

static void proc_kill(proc_t *p, int sig) {
  if (p->pid > 0)
    kill(p->pid, sig);
}

/* Reaps every exited child; marks its record. */
static void reap(run_t *r) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    proc_t *all[ZK_N + MPRPC_PLAN_MAX_PROVIDERS + MPRPC_PLAN_MAX_CONSUMERS];
    size_t n = 0;
    for (int i = 0; i < ZK_N; i++)
      all[n++] = &G.zk[i];
    if (r) {
      for (int i = 0; i < MPRPC_PLAN_MAX_PROVIDERS; i++)
        all[n++] = &r->prov[i];
      for (int i = 0; i < MPRPC_PLAN_MAX_CONSUMERS; i++)
        all[n++] = &r->cons[i];
    }
    for (size_t i = 0; i < n; i++) {
      proc_t *p = all[i];
      if (p->pid != pid)
        continue;
      p->pid = 0;
      p->stopped = false;
      if (r)
        p->down_since_ms = rel_ms(r);
      bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
      if (!p->expect_exit && !(p->kind == K_CONS && clean)) {
        p->unexpected++;
        if (r) {
          const char *k = p->kind == K_ZK ? "zookeeper" : p->kind == K_PROV ? "provider" : "consumer";
          if (WIFSIGNALED(st))
            violate(r, "%s %d exited by itself (signal %d)", k, p->idx, WTERMSIG(st));
          else
            violate(r, "%s %d exited by itself (status %d)", k, p->idx, WEXITSTATUS(st));
        }
      }
      if (r && p->restart_on_exit) {
        p->restart_on_exit = false;
        uint64_t at = rel_ms(r) + p->restart_delay_ms;
        if (r->nacts < sizeof r->acts / sizeof r->acts[0])
          r->acts[r->nacts++] = (act_t){.at_ms = at, .type = A_RESTART_PROV, .arg = p->idx};
      }
      p->expect_exit = false;
    }
  }
}

/* Stops a process: sig, wait up to ms, then SIGKILL. True if it went by sig. */
static bool proc_stop(run_t *r, proc_t *p, int sig, uint64_t ms) {
  if (p->pid <= 0)
    return true;
  p->expect_exit = true;
  if (p->stopped)
    kill(p->pid, SIGCONT);
  kill(p->pid, sig);
  uint64_t end = mono_ns() + ms * MS;
  while (p->pid > 0 && mono_ns() < end) {
    reap(r);
    if (p->pid > 0)
      sleep_ms(5);
  }
  if (p->pid <= 0)
    return true;
  p->expect_exit = true;
  kill(p->pid, SIGKILL);
  while (p->pid > 0) {
    reap(r);
    if (p->pid > 0)
      sleep_ms(5);
  }
  return false;
}

/* ---- ZooKeeper ensemble ------------------------------------------------------------------------------ */

static const char *zk_addr(int i) {
  static char a[ZK_N][16];
  snprintf(a[i], sizeof a[i], "127.0.0.%d", 2 + i);
  return a[i];
}

/* Four-letter word over TCP; the answer in buf. */
static int zk_four(int i, const char *word, char *buf, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(2181)};
  inet_pton(AF_INET, zk_addr(i), &a.sin_addr);
  size_t n = 0;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && write(fd, word, 4) == 4) {
    ssize_t k;
    while (n + 1 < cap && (k = read(fd, buf + n, cap - 1 - n)) > 0)
      n += (size_t)k;
  }
  buf[n] = 0;
  close(fd);
  return (int)n;
}

static int zk_mode(int i) { /* 0 none, 1 follower, 2 leader */
  char buf[2048];
  if (G.zk[i].pid <= 0 || zk_four(i, "srvr", buf, sizeof buf) <= 0)
    return 0;
  if (strstr(buf, "Mode: leader"))
    return 2;
  if (strstr(buf, "Mode: follower"))
    return 1;
  return 0;
}

static int zk_start_node(int i) {
  char dir[PATH_MAX + 16], cfg[PATH_MAX + 32], log[PATH_MAX + 32];
  snprintf(dir, sizeof dir, "%s/node%d", G.zk_dir, i + 1);
  snprintf(cfg, sizeof cfg, "%s/zoo.cfg", dir);
  snprintf(log, sizeof log, "%s/server.log", dir);
  char *argv[] = {(char *)"/usr/bin/java", (char *)"-Xmx192m", (char *)"-XX:+UseSerialGC",
                  (char *)"-XX:TieredStopAtLevel=1", (char *)"-Xshare:auto",
                  (char *)"-Dzookeeper.root.logger=INFO,CONSOLE", (char *)"-cp",
                  (char *)"/usr/share/java/*",
                  (char *)"org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg, NULL};
  pid_t pid = spawn(argv, log, NULL, dir, NULL);
  if (pid < 0)
    return -1;
  G.zk[i].pid = pid;
  G.zk[i].expect_exit = false;
  return 0;
}

static int zk_ensemble_start(void) {
  snprintf(G.zk_dir, sizeof G.zk_dir, "%s/zk", G.out);
  for (int i = 0; i < ZK_N; i++) {
    char dir[PATH_MAX + 32], path[PATH_MAX + 48];
    snprintf(dir, sizeof dir, "%s/node%d/data", G.zk_dir, i + 1);
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "%s/node%d", G.zk_dir, i + 1);
    mkdir(G.zk_dir, 0755);
    mkdir(cmd, 0755);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/myid", dir);
    FILE *f = fopen(path, "w");
    if (!f)
      return -1;
    fprintf(f, "%d\n", i + 1);
    fclose(f);
    snprintf(path, sizeof path, "%s/node%d/zoo.cfg", G.zk_dir, i + 1);
    f = fopen(path, "w");
    if (!f)
      return -1;
    /* Each node on its own address, same ports; tickTime 500 ms as ci/zk.sh. */
    fprintf(f,
            "tickTime=500\ninitLimit=20\nsyncLimit=4\ndataDir=%s\nclientPort=2181\n"
            "clientPortAddress=%s\nadmin.enableServer=false\n4lw.commands.whitelist=*\n"
            "maxSessionTimeout=60000\nminSessionTimeout=1000\n",
            dir, zk_addr(i));
    for (int k = 0; k < ZK_N; k++)
      fprintf(f, "server.%d=%s:2888:3888\n", k + 1, zk_addr(k));
    fclose(f);
    G.zk[i] = (proc_t){.kind = K_ZK, .idx = i};
    snprintf(G.zk[i].addr, sizeof G.zk[i].addr, "%s", zk_addr(i));
  }
  for (int i = 0; i < ZK_N; i++)
    if (zk_start_node(i) < 0)
      return -1;
  /* Bounded: 120 s for three JVMs on a busy 2-core machine. */
  uint64_t end = mono_ns() + 120000 * MS;
  while (mono_ns() < end && !G.interrupted) {
    reap(NULL);
    int up = 0, leaders = 0;
    for (int i = 0; i < ZK_N; i++) {
      int m = zk_mode(i);
      up += m > 0;
      leaders += m == 2;
    }
    if (up == ZK_N && leaders == 1)
      return 0;
    for (int i = 0; i < ZK_N; i++)
      if (G.zk[i].pid <= 0)
        return -1;
    sleep_ms(300);
  }
  return -1;
}

/* Waits (bounded) for a quorum to serve again, so a scenario starts clean. */
static bool zk_wait_serving(uint64_t ms) {
  uint64_t end = mono_ns() + ms * MS;
  while (mono_ns() < end && !G.interrupted) {
    int up = 0, leaders = 0;
    for (int i = 0; i < ZK_N; i++) {
      int m = zk_mode(i);
      up += m > 0;
      leaders += m == 2;
    }
    if (up == ZK_N && leaders == 1)
      return true;
    sleep_ms(200);
  }
  return false;
}

/* Children of the service's providers node under the run's chroot. -1 when
 * ZooKeeper could not be asked. names gets a comma-separated list. */
static int zk_list(const run_t *r, char *names, size_t cap) {
  char hosts[512];
  snprintf(hosts, sizeof hosts, "%s%s", r->zk_hosts, r->chroot);
  zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
  zhandle_t *zh = zookeeper_init(hosts, NULL, 10000, NULL, NULL, 0);
  if (!zh)
    return -1;
  uint64_t end = mono_ns() + 10000 * MS;
  while (zoo_state(zh) != ZOO_CONNECTED_STATE && mono_ns() < end)
    sleep_ms(20);
  int n = -1;
  struct String_vector v = {0};
  int rc = zoo_get_children(zh, "/mprpc/services/" SERVICE "/providers", 0, &v);
  names[0] = 0;
  if (rc == ZOK) {
    n = v.count;
    size_t k = 0;
    for (int i = 0; i < v.count; i++)
      k += (size_t)snprintf(names + k, k < cap ? cap - k : 0, "%s%s", i ? "," : "", v.data[i]);
    deallocate_String_vector(&v);
  } else if (rc == ZNONODE) {
    n = 0;
  }
  zookeeper_close(zh);
  return n;
}

/* ---- network rules ------------------------------------------------------------------------------------ */

static int prov_host(int i) { return 5 + i; }
static int cons_host(int i) { return 11 + i; }
static int zk_host(int i) { return 2 + i; }

static int nft_script(const char *dir, const char *text) {
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/net.nft", dir);
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fputs(text, f);
  fclose(f);
  const char *nft = find_tool("nft");
  if (!nft)
    return -1;
  char *argv[] = {(char *)nft, (char *)"-f", path, NULL};
  char log[PATH_MAX + 16];
  snprintf(log, sizeof log, "%s/net.log", dir);
  return run_cmd(argv, NULL, log);
}

static int net_setup(const char *dir) {
  int rc = nft_script(dir,
                      "table ip mprpc_chaos {\n"
                      "  chain in { type filter hook input priority -10; policy accept; }\n"
                      "  chain out { type filter hook output priority -10; policy accept; }\n"
                      "}\n");
  if (rc != 0)
    return -1;
  const char *ipt = find_tool("iptables");
  G.have_iptables = false;
  if (ipt) {
    char *a1[] = {(char *)ipt, (char *)"-w", (char *)"-N", (char *)"CHAOS", NULL};
    char *a2[] = {(char *)ipt, (char *)"-w", (char *)"-I", (char *)"INPUT", (char *)"-j",
                  (char *)"CHAOS", NULL};
    char log[PATH_MAX + 16];
    snprintf(log, sizeof log, "%s/net.log", dir);
    if (run_cmd(a1, NULL, log) == 0 && run_cmd(a2, NULL, log) == 0 &&
        chaos_netem_start(QUEUE_NUM, 1) == 0)
      G.have_iptables = true;
  }
  return 0;
}

typedef struct sbuf {
  char *p;
  size_t n, cap;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < b->cap - b->n) {
      b->n += (size_t)k;
      return;
    }
    size_t nc = b->cap * 2 + (size_t)(k > 0 ? k : 256);
    char *np = realloc(b->p, nc);
    if (!np)
      return;
    b->p = np;
    b->cap = nc;
  }
}

static void drop_rule(sbuf_t *b, int from, int to) {
  sb_printf(b, "add rule ip mprpc_chaos in ip saddr 127.0.0.%d ip daddr 127.0.0.%d drop\n", from,
            to);
}

/* Rebuilds every rule from the faults active now. */
static void net_apply(run_t *r) {
  sbuf_t b = {malloc(4096), 0, 4096};
  sbuf_t ipt = {malloc(4096), 0, 4096};
  if (!b.p || !ipt.p) {
    free(b.p);
    free(ipt.p);
    return;
  }
  b.p[0] = ipt.p[0] = 0;
  sb_printf(&b, "flush chain ip mprpc_chaos in\nflush chain ip mprpc_chaos out\n");
  sb_printf(&ipt, "*filter\n:CHAOS - [0:0]\n");
  chaos_netem_clear();
  const mprpc_plan_t *pl = &r->plan;
  for (size_t k = 0; k < r->nactive; k++) {
    const mprpc_plan_fault_t *f = r->active[k].f;
    for (int c = 0; c < pl->consumers; c++) {
      for (int p = 0; p < pl->providers; p++) {
        if (!(f->cons_mask & (1u << c)) || !(f->prov_mask & (1u << p)))
          continue;
        int ch = cons_host(c), ph = prov_host(p);
        if (f->kind == MPRPC_PLAN_PARTITION) {
          drop_rule(&b, ch, ph);
          drop_rule(&b, ph, ch);
        } else if (f->kind == MPRPC_PLAN_ONEWAY) {
          if (f->dir == 0)
            drop_rule(&b, ch, ph);
          else
            drop_rule(&b, ph, ch);
        } else if (f->kind == MPRPC_PLAN_NETEM) {
          int ends[2][2] = {{ch, ph}, {ph, ch}};
          for (int d = 0; d < 2; d++) {
            int a = ends[d][0], z = ends[d][1];
            if (f->loss_pm)
              sb_printf(&b,
                        "add rule ip mprpc_chaos in ip saddr 127.0.0.%d ip daddr 127.0.0.%d "
                        "numgen random mod 1000 < %u drop\n",
                        a, z, f->loss_pm);
            if (f->dup_pm)
              sb_printf(&b,
                        "add rule ip mprpc_chaos out ip saddr 127.0.0.%d ip daddr 127.0.0.%d "
                        "numgen random mod 1000 < %u dup to 127.0.0.%d\n",
                        a, z, f->dup_pm, z);
            if (G.have_iptables && (f->delay_ms || f->jitter_ms)) {
              chaos_netem_set(a, z, f->delay_ms, f->jitter_ms);
              sb_printf(&ipt,
                        "-A CHAOS -s 127.0.0.%d/32 -d 127.0.0.%d/32 -j NFQUEUE --queue-num %d "
                        "--queue-bypass\n",
                        a, z, QUEUE_NUM);
            }
          }
        }
      }
    }
    if (f->kind == MPRPC_PLAN_ZK_CUT) {
      for (int i = 0; i < pl->providers + pl->consumers; i++) {
        bool prov = i < pl->providers;
        int idx = prov ? i : i - pl->providers;
        if (!((prov ? f->prov_mask : f->cons_mask) & (1u << idx)))
          continue;
        int h = prov ? prov_host(idx) : cons_host(idx);
        for (int z = 0; z < ZK_N; z++) {
          drop_rule(&b, h, zk_host(z));
          drop_rule(&b, zk_host(z), h);
        }
      }
    }
  }
  if (nft_script(r->dir, b.p) != 0)
    violate(r, "harness: nft rejected the rules (see %s/net.log)", r->dir);
  if (G.have_iptables) {
    sb_printf(&ipt, "COMMIT\n");
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/net.ipt", r->dir);
    FILE *f = fopen(path, "w");
    if (f) {
      fputs(ipt.p, f);
      fclose(f);
      const char *res = find_tool("iptables-restore");
      char log[PATH_MAX + 16];
      snprintf(log, sizeof log, "%s/net.log", r->dir);
      char *argv[] = {(char *)res, (char *)"-w", (char *)"--noflush", NULL};
      if (!res || run_cmd(argv, path, log) != 0)
        violate(r, "harness: iptables-restore rejected the rules (see %s/net.log)", r->dir);
    }
  }
  free(b.p);
  free(ipt.p);
}

/* ---- the run ---------------------------------------------------------------------------------------------- */

static void act_at(run_t *r, uint64_t at, int type, int arg) {
  if (r->nacts < sizeof r->acts / sizeof r->acts[0])
    r->acts[r->nacts++] = (act_t){.at_ms = at, .type = type, .arg = arg};
}

static int prov_spawn(run_t *r, int i) {
  proc_t *p = &r->prov[i];
  char listen[48], idx[16], log[PATH_MAX + 16], err[PATH_MAX + 16];
  snprintf(listen, sizeof listen, "%s:%d", p->addr, 7000 + p->incarnation);
  snprintf(idx, sizeof idx, "%d", i);
  snprintf(log, sizeof log, "%s/p%d.log", r->dir, i);
  snprintf(err, sizeof err, "%s/p%d.err", r->dir, i);
  char prog[PATH_MAX];
  snprintf(prog, sizeof prog, "%s/chaos_provider", G.bin);
  char *argv[] = {prog, (char *)"--listen", listen, (char *)"--registry", r->uri,
                  (char *)"--index", idx, (char *)"--log", log, NULL, NULL, NULL};
  if (G.bug) {
    argv[9] = (char *)"--bug";
    argv[10] = (char *)G.bug;
  }
  pid_t pid = spawn(argv, err, NULL, NULL, p->addr);
  if (pid < 0)
    return -1;
  p->pid = pid;
  p->expect_exit = false;
  note(r, "start provider %d pid %d on %s", i, (int)pid, listen);
  return 0;
}

static int cons_spawn(run_t *r, int i) {
  proc_t *p = &r->cons[i];
  const mprpc_plan_t *pl = &r->plan;
  char idx[16], inc[16], seed[32], rate[32], nonidem[32], mr[16], to[32], end[32];
  char log[PATH_MAX + 16], err[PATH_MAX + 16], prog[PATH_MAX], uri[600];
  snprintf(idx, sizeof idx, "%d", i);
  snprintf(inc, sizeof inc, "%d", p->incarnation);
  snprintf(seed, sizeof seed, "%" PRIu64, pl->seed);
  snprintf(rate, sizeof rate, "%g", pl->rate);
  snprintf(nonidem, sizeof nonidem, "%g", pl->nonidem_frac);
  snprintf(mr, sizeof mr, "%d", pl->max_retry);
  snprintf(to, sizeof to, "%" PRId64, pl->timeout_ms);
  snprintf(end, sizeof end, "%" PRIu64, r->t0_wall + pl->duration_ms * MS);
  snprintf(log, sizeof log, "%s/c%d.log", r->dir, i);
  snprintf(err, sizeof err, "%s/c%d.err", r->dir, i);
  snprintf(prog, sizeof prog, "%s/chaos_consumer", G.bin);
  /* wait=0: a consumer restarted while ZooKeeper is unreachable still starts. */
  snprintf(uri, sizeof uri, "%s&wait=0", r->uri);
  static const char *const lbs[] = {"rr", "random", "hash", "least"};
  char *argv[] = {prog, (char *)"--registry", uri, (char *)"--index", idx, (char *)"--incarnation",
                  inc, (char *)"--log", log, (char *)"--seed", seed, (char *)"--rate", rate,
                  (char *)"--nonidem-frac", nonidem, (char *)"--max-retry", mr,
                  (char *)"--timeout-ms", to, (char *)"--lb",
                  (char *)lbs[(i + (int)(pl->seed % 4)) % 4], (char *)"--end-wall-ns", end, NULL};
  pid_t pid = spawn(argv, err, NULL, NULL, p->addr);
  if (pid < 0)
    return -1;
  p->pid = pid;
  p->expect_exit = false;
  note(r, "start consumer %d.%d pid %d", i, p->incarnation, (int)pid);
  return 0;
}

static int running_providers(const run_t *r) {
  int n = 0;
  for (int i = 0; i < r->plan.providers; i++)
    n += r->prov[i].pid > 0 && !r->prov[i].restart_on_exit;
  return n;
}

static int pick_provider(run_t *r, int a) {
  if (a >= 0)
    return a < r->plan.providers && r->prov[a].pid > 0 && !r->prov[a].stopped &&
                   !r->prov[a].restart_on_exit
               ? a
               : -1;
  int cand[MPRPC_PLAN_MAX_PROVIDERS], n = 0;
  for (int i = 0; i < r->plan.providers; i++)
    if (r->prov[i].pid > 0 && !r->prov[i].stopped && !r->prov[i].restart_on_exit)
      cand[n++] = i;
  if (n <= 1) /* keep one provider serving, as the simulator does */
    return -1;
  return cand[mprpc_rand_below(mprpc_rand_xoshiro(&r->x), (uint64_t)n)];
}

static void fault_start(run_t *r, const mprpc_plan_fault_t *f) {
  uint64_t t = rel_ms(r);
  char d[160];
  mprpc_plan_describe(f, d, sizeof d);
  if (t >= r->plan.quiet_ms)
    return;
  switch (f->kind) {
  case MPRPC_PLAN_PARTITION:
  case MPRPC_PLAN_ONEWAY:
  case MPRPC_PLAN_NETEM:
  case MPRPC_PLAN_ZK_CUT:
    if (r->nactive < MPRPC_PLAN_MAX_FAULTS) {
      r->active[r->nactive++] = (active_t){f, t + f->dur_ms};
      net_apply(r);
      act_at(r, t + f->dur_ms, A_END, (int)(f - r->plan.faults));
      span_add(r, t, t + f->dur_ms, -1, d);
      note(r, "fault %s", d);
    }
    break;
  case MPRPC_PLAN_CRASH: {
    int i = pick_provider(r, f->a);
    if (i < 0)
      break;
    proc_t *p = &r->prov[i];
    p->expect_exit = true;
    proc_kill(p, SIGKILL);
    act_at(r, t + f->dur_ms, A_RESTART_PROV, i);
    span_add(r, t, t + f->dur_ms, i, "kill -9");
    note(r, "fault kill -9 provider %d", i);
    break;
  }
  case MPRPC_PLAN_CRASH_CONSUMER: {
    proc_t *p = &r->cons[f->a];
    if (p->pid <= 0)
      break;
    p->expect_exit = true;
    p->killed_incs |= 1u << p->incarnation;
    proc_kill(p, SIGKILL);
    act_at(r, t + f->dur_ms, A_RESTART_CONS, f->a);
    span_add(r, t, t + f->dur_ms, -1, d);
    note(r, "fault kill -9 consumer %d.%d", f->a, p->incarnation);
    break;
  }
  case MPRPC_PLAN_STOP: {
    int i = pick_provider(r, f->a);
    if (i < 0)
      break;
    proc_kill(&r->prov[i], SIGSTOP);
    r->prov[i].stopped = true;
    act_at(r, t + f->dur_ms, A_CONT, i);
    span_add(r, t, t + f->dur_ms, i, "SIGSTOP");
    note(r, "fault SIGSTOP provider %d for %" PRIu64 " ms", i, f->dur_ms);
    break;
  }
  case MPRPC_PLAN_GRACEFUL: {
    int i = pick_provider(r, f->a);
    if (i < 0)
      break;
    proc_t *p = &r->prov[i];
    p->expect_exit = true;
    p->restart_on_exit = true;
    p->restart_delay_ms = f->dur_ms;
    proc_kill(p, SIGTERM);
    span_add(r, t, t + f->dur_ms + 200, i, "SIGTERM");
    note(r, "fault SIGTERM provider %d", i);
    break;
  }
  case MPRPC_PLAN_ZK_KILL: {
    int z = f->a;
    if (z < 0) {
      for (int i = 0; i < ZK_N && z < 0; i++)
        if (zk_mode(i) == 2)
          z = i;
    }
    if (z < 0 || G.zk[z].pid <= 0) {
      note(r, "fault zk_kill: no leader found");
      break;
    }
    G.zk[z].expect_exit = true;
    proc_kill(&G.zk[z], SIGKILL);
    act_at(r, t + f->dur_ms, A_ZK_RESTART, z);
    char lab[48];
    snprintf(lab, sizeof lab, "kill -9 zk%d (leader)", z);
    span_add(r, t, t + f->dur_ms, -1, lab);
    note(r, "fault kill -9 zookeeper %d", z);
    break;
  }
  }
}

static void act_run(run_t *r, act_t *a) {
  uint64_t t = rel_ms(r);
  switch (a->type) {
  case A_FAULT:
    fault_start(r, &r->plan.faults[a->arg]);
    break;
  case A_END: {
    const mprpc_plan_fault_t *f = &r->plan.faults[a->arg];
    for (size_t k = 0; k < r->nactive; k++)
      if (r->active[k].f == f) {
        r->active[k] = r->active[--r->nactive];
        net_apply(r);
        note(r, "heal %s", mprpc_plan_kind_name(f->kind));
        break;
      }
    break;
  }
  case A_RESTART_PROV: {
    proc_t *p = &r->prov[a->arg];
    reap(r);
    if (p->pid > 0)
      break;
    p->incarnation++;
    prov_spawn(r, a->arg);
    break;
  }
  case A_RESTART_CONS: {
    proc_t *p = &r->cons[a->arg];
    reap(r);
    if (p->pid > 0 || t + 1000 >= r->plan.duration_ms)
      break;
    p->incarnation++;
    cons_spawn(r, a->arg);
    break;
  }
  case A_CONT:
    if (r->prov[a->arg].stopped) {
      proc_kill(&r->prov[a->arg], SIGCONT);
      r->prov[a->arg].stopped = false;
      note(r, "SIGCONT provider %d", a->arg);
    }
    break;
  case A_ZK_RESTART:
    if (G.zk[a->arg].pid <= 0) {
      zk_start_node(a->arg);
      note(r, "restart zookeeper %d", a->arg);
    }
    break;
  case A_QUIET:
    r->nactive = 0;
    net_apply(r);
    for (int i = 0; i < r->plan.providers; i++) {
      proc_t *p = &r->prov[i];
      if (p->stopped) {
        proc_kill(p, SIGCONT);
        p->stopped = false;
      }
      if (p->restart_on_exit)
        p->restart_delay_ms = 0;
      else if (p->pid <= 0)
        act_run(r, &(act_t){.type = A_RESTART_PROV, .arg = i});
    }
    for (int i = 0; i < r->plan.consumers; i++)
      if (r->cons[i].pid <= 0)
        act_run(r, &(act_t){.type = A_RESTART_CONS, .arg = i});
    for (int z = 0; z < ZK_N; z++)
      if (G.zk[z].pid <= 0)
        zk_start_node(z);
    note(r, "quiet: everything healed");
    break;
  }
}

/* ---- reading the logs ------------------------------------------------------------------------------ */

static uint32_t hslot(uint64_t token) {
  uint64_t h = token * 0x9e3779b97f4a7c15ull;
  return (uint32_t)(h >> 47) & (2 * MAX_CALLS - 1);
}

static call_t *call_find(run_t *r, uint64_t token, bool create) {
  for (uint32_t s = hslot(token);; s = (s + 1) & (2 * MAX_CALLS - 1)) {
    if (!r->slot[s]) {
      if (!create || r->ncalls >= MAX_CALLS)
        return NULL;
      r->slot[s] = (int32_t)++r->ncalls;
      call_t *c = &r->calls[r->ncalls - 1];
      memset(c, 0, sizeof *c);
      c->c.id = token;
      return c;
    }
    call_t *c = &r->calls[r->slot[s] - 1];
    if (c->c.id == token)
      return c;
  }
}

static mprpc_check_call_t *call_at(void *ud, size_t i) { return &((run_t *)ud)->calls[i].c; }

static uint64_t rel_ns(const run_t *r, uint64_t wall) {
  return wall > r->t0_wall ? wall - r->t0_wall : 0;
}

typedef struct endrec {
  bool have;
  unsigned long long calls, ep_idem, ep_non, unknown, wall;
  int finished;
} endrec_t;

static void read_logs(run_t *r, const mprpc_check_policy_t *pol, endrec_t *ends) {
  char path[PATH_MAX + 16], line[512];
  /* Starts first, so that executions find their call. */
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < r->plan.consumers; i++) {
      snprintf(path, sizeof path, "%s/c%d.log", r->dir, i);
      FILE *f = fopen(path, "r");
      if (!f)
        continue;
      while (fgets(line, sizeof line, f)) {
        unsigned long long tok, wall, lat;
        int a, b, cc, att;
        if (pass == 0 && sscanf(line, "S %llu %d %llu", &tok, &a, &wall) == 3) {
          call_t *c = call_find(r, tok, true);
          if (!c)
            continue;
          c->seen_start = true;
          c->c.idem = (uint8_t)a;
          c->c.consumer = (uint16_t)(tok >> 40);
          c->c.start_ns = rel_ns(r, wall);
          int inc = (int)((tok >> 32) & 0xff);
          if (r->cons[i].killed_incs & (1u << inc))
            c->c.abandoned = 1;
        } else if (pass == 1 &&
                   sscanf(line, "D %llu %d %d %d %llu %llu %d", &tok, &a, &b, &cc, &wall, &lat,
                          &att) == 7) {
          call_t *c = call_find(r, tok, false);
          if (!c) {
            violate(r, "consumer %d finished call %llu it never started", i, tok);
            continue;
          }
          uint64_t now = rel_ns(r, wall);
          char txt[32];
          snprintf(txt, sizeof txt, "(not c%llu)", tok);
          bool was_done = c->c.done;
          /* A result line of a killed incarnation still counts: it happened. */
          c->c.abandoned = 0;
          if (mprpc_check_done(pol, &c->c, a != 0, cc != 0, txt, b, now, false, report, r) &&
              !was_done) {
            c->end_ns = now;
            c->lat_us = lat;
            mprpc_timeline_call(r->tl, now, a != 0, lat);
          }
        } else if (pass == 1 && line[0] == 'E') {
          endrec_t e = {.have = true};
          if (sscanf(line, "E %llu %llu %llu %llu %llu %d", &e.calls, &e.ep_idem, &e.ep_non,
                     &e.unknown, &e.wall, &e.finished) == 6)
            ends[i] = e;
        }
      }
      fclose(f);
    }
    if (pass == 1)
      break;
    for (int p = 0; p < r->plan.providers; p++) {
      snprintf(path, sizeof path, "%s/p%d.log", r->dir, p);
      FILE *f = fopen(path, "r");
      if (!f)
        continue;
      while (fgets(line, sizeof line, f)) {
        unsigned long long tok, wall;
        int idx;
        if (sscanf(line, "X c%llu %d %llu", &tok, &idx, &wall) != 3)
          continue;
        uint64_t t = rel_ns(r, wall);
        mprpc_timeline_exec(r->tl, t, p);
        if (t >= r->plan.quiet_ms * MS && t < r->first_exec_after_quiet[p])
          r->first_exec_after_quiet[p] = t;
        call_t *c = call_find(r, tok, false);
        if (!c) {
          violate(r, "provider %d executed call %llu that no consumer issued", p, tok);
          continue;
        }
        c->c.execs++;
        mprpc_check_exec(pol, &c->c, report, r);
      }
      fclose(f);
    }
  }
}

/* ---- one scenario ------------------------------------------------------------------------------------ */

static void cleanup_procs(run_t *r) {
  for (int i = 0; r && i < MPRPC_PLAN_MAX_CONSUMERS; i++)
    proc_stop(r, &r->cons[i], SIGKILL, 100);
  for (int i = 0; r && i < MPRPC_PLAN_MAX_PROVIDERS; i++)
    proc_stop(r, &r->prov[i], SIGKILL, 100);
}

/* The timeline's SVG text into path (sim/timeline.c renders, we write). */
static void write_svg(const mprpc_timeline_t *tl, const char *path, const char *title) {
  char *svg = NULL;
  size_t len = 0;
  FILE *f = NULL;
  if (mprpc_timeline_svg(tl, title, &svg, &len) < 0 || !(f = fopen(path, "w")) ||
      fwrite(svg, 1, len, f) != len)
    fprintf(stderr, "chaos: cannot write %s\n", path);
  if (f && fclose(f) != 0)
    fprintf(stderr, "chaos: cannot write %s\n", path);
  free(svg);
}

static int run_scenario(const char *name, uint64_t seed, result_t *res) {
  run_t *r = calloc(1, sizeof *r);
  if (!r)
    return -1;
  r->calls = calloc(MAX_CALLS, sizeof *r->calls);
  r->slot = calloc(2 * MAX_CALLS, sizeof *r->slot);
  if (!r->calls || !r->slot || mprpc_plan_make(name, seed, G.quick, &r->plan) < 0) {
    free(r->calls);
    free(r->slot);
    free(r);
    return -1;
  }
  mprpc_plan_t *pl = &r->plan;
  mprpc_xoshiro_seed(&r->x, seed * 31 + 7);
  snprintf(r->dir, sizeof r->dir, "%s/%s-%" PRIu64, G.out, name, seed);
  mkdir(r->dir, 0755);
  snprintf(r->zk_hosts, sizeof r->zk_hosts, "%s:2181,%s:2181,%s:2181", zk_addr(0), zk_addr(1),
           zk_addr(2));
  snprintf(r->chroot, sizeof r->chroot, "/chaos-%s-%" PRIu64 "-%d", name, seed, (int)getpid());
  snprintf(r->uri, sizeof r->uri, "zk://%s%s?session_timeout=%" PRIu64, r->zk_hosts, r->chroot,
           pl->session_timeout_ms);
  for (int i = 0; i < MPRPC_PLAN_MAX_PROVIDERS; i++) {
    r->prov[i] = (proc_t){.kind = K_PROV, .idx = i};
    snprintf(r->prov[i].addr, sizeof r->prov[i].addr, "127.0.0.%d", prov_host(i));
    r->first_exec_after_quiet[i] = UINT64_MAX;
  }
  for (int i = 0; i < MPRPC_PLAN_MAX_CONSUMERS; i++) {
    r->cons[i] = (proc_t){.kind = K_CONS, .idx = i};
    snprintf(r->cons[i].addr, sizeof r->cons[i].addr, "127.0.0.%d", cons_host(i));
  }
  uint64_t end_ms = pl->duration_ms + (uint64_t)pl->timeout_ms + 1000;
  r->tl = mprpc_timeline_new(end_ms * MS, pl->providers);
  {
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/plan.txt", r->dir);
    FILE *f = fopen(path, "w");
    if (f) {
      fprintf(f, "scenario %s seed %" PRIu64 ": %d providers, %d consumers, %.0f calls/s each, "
                 "quiet at %" PRIu64 " ms, liveness from %" PRIu64 " ms, end %" PRIu64 " ms\n",
              name, seed, pl->providers, pl->consumers, pl->rate, pl->quiet_ms, pl->live_from_ms,
              pl->duration_ms);
      for (size_t k = 0; k < pl->nfaults; k++) {
        char d[160];
        mprpc_plan_describe(&pl->faults[k], d, sizeof d);
        fprintf(f, "%6" PRIu64 " ms  %s\n", pl->faults[k].at_ms, d);
      }
      fclose(f);
    }
  }
  if (!zk_wait_serving(60000))
    violate(r, "harness: the ZooKeeper ensemble was not serving at the start");

  r->t0_mono = mono_ns();
  r->t0_wall = chaos_wall_ns();
  for (int i = 0; i < pl->providers; i++)
    prov_spawn(r, i);
  for (size_t k = 0; k < pl->nfaults; k++)
    act_at(r, pl->faults[k].at_ms, A_FAULT, (int)k);
  act_at(r, pl->quiet_ms, A_QUIET, 0);
  bool consumers_started = false;
  /* The timeline, in real time; bounded by end_ms (+ the consumers' own bound). */
  while (!G.interrupted) {
    uint64_t t = rel_ms(r);
    reap(r);
    if (!consumers_started && t >= pl->start_ms) {
      for (int i = 0; i < pl->consumers; i++)
        cons_spawn(r, i);
      consumers_started = true;
    }
    /* Due actions in time order (restarts queued by reap included). */
    for (;;) {
      act_t *best = NULL;
      for (size_t k = 0; k < r->nacts; k++)
        if (!r->acts[k].done && r->acts[k].at_ms <= t && (!best || r->acts[k].at_ms < best->at_ms))
          best = &r->acts[k];
      if (!best)
        break;
      best->done = true;
      act_run(r, best);
    }
    bool cons_alive = false;
    for (int i = 0; i < pl->consumers; i++)
      cons_alive |= r->cons[i].pid > 0;
    if (consumers_started && t > pl->duration_ms && !cons_alive)
      break;
    if (t > end_ms + 10000) {
      for (int i = 0; i < pl->consumers; i++)
        if (r->cons[i].pid > 0) {
          violate(r, "consumer %d did not finish (its calls did not end by their deadlines)", i);
          proc_stop(r, &r->cons[i], SIGKILL, 100);
        }
      break;
    }
    sleep_ms(5);
  }
  if (G.interrupted) {
    cleanup_procs(r);
    mprpc_timeline_free(r->tl);
    free(r->calls);
    free(r->slot);
    free(r);
    return -1;
  }
  uint64_t t_end = rel_ms(r);
  /* Convergence: the registry holds exactly the providers running now. */
  int up = running_providers(r);
  char names[1024];
  int nodes = zk_list(r, names, sizeof names);
  if (nodes < 0)
    violate(r, "registry: could not read the providers' nodes from ZooKeeper");
  else {
    mprpc_check_registry((size_t)nodes, up, report, r);
    for (int i = 0; i < pl->providers; i++) {
      char want[48];
      snprintf(want, sizeof want, "%s:%d", r->prov[i].addr, 7000 + r->prov[i].incarnation);
      if (r->prov[i].pid > 0 && !strstr(names, want))
        violate(r, "registry: running provider %d (%s) has no node (nodes: %s)", i, want, names);
    }
  }
  note(r, "registry at the end: %d nodes [%s], %d running", nodes, names, up);
  /* Graceful stop of every provider: sessions end, so no node may stay. */
  for (int i = 0; i < pl->providers; i++) {
    if (r->prov[i].pid > 0 && !proc_stop(r, &r->prov[i], SIGTERM, 8000))
      violate(r, "provider %d did not finish its graceful stop", i);
  }
  nodes = zk_list(r, names, sizeof names);
  if (nodes > 0)
    violate(r, "registry: %d stale nodes after every provider's session ended: %s", nodes, names);
  note(r, "registry after the providers stopped: %d nodes", nodes);

  /* The shared checker over what the processes logged. */
  mprpc_check_policy_t pol = {
      .max_retry = pl->max_retry,
      .timeout_ms = pl->timeout_ms,
      .deadline_slack_ns = SLACK_MS * MS,
      .quiet_after_ns = pl->quiet_ms * MS,
      .live_from_ns = pl->live_from_ms * MS,
      .recovery_bound_ns = pl->recovery_bound_ms * MS,
  };
  endrec_t ends[MPRPC_PLAN_MAX_CONSUMERS] = {{0}};
  read_logs(r, &pol, ends);
  mprpc_check_final(&pol, call_at, r, r->ncalls, report, r);
  for (int i = 0; i < pl->consumers; i++) {
    if (!ends[i].have) {
      violate(r, "consumer %d left no end record", i);
      continue;
    }
    mprpc_check_unknown_ids(i, ends[i].unknown, report, r);
    mprpc_check_consumer_endpoints(i, ends[i].ep_idem, ends[i].ep_non, up, report, r);
  }
  uint64_t rec = 0;
  for (int i = 0; i < pl->providers; i++) {
    uint64_t d = mprpc_check_recovery(&pol, i, pl->quiet_ms * MS, r->first_exec_after_quiet[i],
                                      report, r);
    if (d != UINT64_MAX && d / MS > rec)
      rec = d / MS;
    else if (d == UINT64_MAX)
      rec = UINT64_MAX / MS;
  }
  res->recovery_ms = rec;
  for (uint32_t k = 0; k < r->ncalls; k++) {
    const call_t *c = &r->calls[k];
    res->calls += c->seen_start;
    if (c->c.done)
      res->ok += c->c.ok, res->failed += !c->c.ok;
    else
      res->abandoned++;
  }
  res->viol = r->nviol;
  snprintf(res->name, sizeof res->name, "%s", name);
  res->seed = seed;

  /* Timeline picture. */
  for (size_t k = 0; k < r->nspans; k++)
    mprpc_timeline_fault(r->tl, r->spans[k].from * MS, r->spans[k].to * MS, r->spans[k].lane,
                         r->spans[k].label);
  mprpc_timeline_marks(r->tl, pl->quiet_ms * MS, pl->live_from_ms * MS);
  char svg[PATH_MAX + 32], title[160];
  snprintf(svg, sizeof svg, "%s/timeline.svg", r->dir);
  snprintf(title, sizeof title, "chaos %s seed %" PRIu64 ": %d providers, %d consumers (real processes)",
           name, seed, pl->providers, pl->consumers);
  write_svg(r->tl, svg, title);

  (void)t_end;
  {
    uint64_t held, passed;
    chaos_netem_stats(&held, &passed);
    note(r, "netem so far: %" PRIu64 " packets delayed, %" PRIu64 " passed at once", held, passed);
  }
  /* The same plan in the simulator, for the model-vs-reality table. */
  {
    mprpc_timeline_t *stl = mprpc_timeline_new(end_ms * MS + 10000 * MS, pl->providers);
    mprpc_sim_opts_t so = {.seed = seed, .max_retry = -1, .timeline = stl};
    if (mprpc_sim_run_plan(pl, &so, &res->sim) == 0) {
      res->have_sim = true;
      res->sim_recovery_ms =
          res->sim.recovery_ns == UINT64_MAX ? UINT64_MAX : res->sim.recovery_ns / MS;
      snprintf(svg, sizeof svg, "%s/timeline-sim.svg", r->dir);
      snprintf(title, sizeof title, "mprpc-sim --plan %s --seed %" PRIu64 "%s (simulated)", name,
               seed, G.quick ? " --quick" : "");
      mprpc_timeline_set_duration(stl, end_ms * MS);
      write_svg(stl, svg, title);
    }
    mprpc_timeline_free(stl);
  }
  printf("CHAOS scenario=%s seed=%" PRIu64 " calls=%" PRIu64 " ok=%" PRIu64 " failed=%" PRIu64
         " violations=%" PRIu64 " recovery_ms=%" PRIu64 "\n",
         name, seed, res->calls, res->ok, res->failed, res->viol,
         rec == UINT64_MAX / MS ? (uint64_t)0 : rec);
  for (uint64_t k = 0; k < r->nviol && k < MAX_VIOL; k++)
    printf("  violation: %s\n", r->viol[k]);
  if (r->nviol > MAX_VIOL)
    printf("  ... and %" PRIu64 " more\n", r->nviol - MAX_VIOL);
  if (res->have_sim && res->sim.violations)
    printf("  simulator twin: %" PRIu64 " violations (%s); replay: build/bin/mprpc-sim --plan %s "
           "--seed %" PRIu64 "%s\n",
           res->sim.violations, res->sim.first_violation, name, seed, G.quick ? " --quick" : "");
  if (r->nviol)
    printf("  rerun: make chaos CHAOS_SCENARIO=%s CHAOS_SEED=%" PRIu64 "%s%s%s   (logs: %s)\n",
           name, seed, G.quick ? " CHAOS_QUICK=1" : "", G.bug ? " CHAOS_BUG=" : "",
           G.bug ? G.bug : "", r->dir);
  fflush(stdout);
  mprpc_timeline_free(r->tl);
  free(r->calls);
  free(r->slot);
  free(r);
  return 0;
}

/* ---- main ------------------------------------------------------------------------------------------- */

/* Failure share in percent of the calls that ended. */
static double fail_pct(uint64_t ok, uint64_t failed) {
  return ok + failed ? 100.0 * (double)failed / (double)(ok + failed) : 0;
}

/* Bands (docs/simulator.md): failure shares agree within 2 points or a
 * factor 1.5, recovery within 1 s or a factor 1.5. */
static bool within(double a, double b, double abs_band) {
  double d = a > b ? a - b : b - a, hi = a > b ? a : b;
  return d <= abs_band || d <= hi / 3;
}

static void print_table(const result_t *res, size_t n) {
  printf("\nmodel vs reality (same plan, same seed; real = this run, sim = mprpc-sim --plan):\n");
  printf("%-24s %8s %8s %9s %9s %12s %12s  %s\n", "scenario", "calls", "sim", "fail%", "sim%",
         "recovery_ms", "sim_rec_ms", "verdict");
  for (size_t i = 0; i < n; i++) {
    const result_t *r = &res[i];
    if (!r->have_sim)
      continue;
    double fr = fail_pct(r->ok, r->failed), fs = fail_pct(r->sim.ok, r->sim.failed);
    double rr = (double)r->recovery_ms, rs = r->sim_recovery_ms == UINT64_MAX ? 1e9 : (double)r->sim_recovery_ms;
    bool ok_fail = within(fr, fs, 2.0), ok_rec = within(rr, rs, 1000.0);
    printf("%-24s %8" PRIu64 " %8" PRIu64 " %9.2f %9.2f %12" PRIu64 " %12.0f  %s\n", r->name,
           r->calls, r->sim.calls, fr, fs, r->recovery_ms, rs,
           ok_fail && ok_rec ? "within band" : !ok_fail && !ok_rec ? "DIFFERS (failures, recovery)"
                                             : !ok_fail ? "DIFFERS (failures)" : "DIFFERS (recovery)");
    printf("MODEL scenario=%s seed=%" PRIu64 " real_fail_pct=%.2f sim_fail_pct=%.2f "
           "real_recovery_ms=%" PRIu64 " sim_recovery_ms=%.0f within_band=%d\n",
           r->name, r->seed, fr, fs, r->recovery_ms, rs, ok_fail && ok_rec);
  }
  fflush(stdout);
}

static void on_signal(int sig) {
  (void)sig;
  G.interrupted = 1;
}

/* True only inside the namespace ci/chaos.sh made: CHAOS_NETNS names it,
 * /run/netns/NAME is the namespace this process is in, and (where PID 1's
 * is visible) it is not PID 1's. */
static bool private_netns(void) {
  const char *ns = getenv("CHAOS_NETNS");
  if (!ns || strncmp(ns, "mprpc-chaos-", 12) != 0 || strchr(ns, '/'))
    return false;
  char path[PATH_MAX];
  snprintf(path, sizeof path, "/run/netns/%s", ns);
  struct stat self, named, init;
  if (stat("/proc/self/ns/net", &self) != 0 || stat(path, &named) != 0)
    return false;
  if (self.st_ino != named.st_ino || self.st_dev != named.st_dev)
    return false;
  if (stat("/proc/1/ns/net", &init) == 0 && init.st_ino == self.st_ino &&
      init.st_dev == self.st_dev)
    return false;
  return true;
}

static void usage(FILE *f) {
  fprintf(f, "usage: chaos_runner --out DIR [--scenario NAME]... [--seed N] [--quick] [--bin DIR]\n"
             "                    [--bug exec_twice]\n"
             "       chaos_runner --list\n");
}

int main(int argc, char **argv) {
  const char *names[32];
  size_t nnames = 0;
  uint64_t seed = 1;
  bool list = false;
  static char bindir[PATH_MAX];
  snprintf(bindir, sizeof bindir, "%s", argv[0]);
  char *slash = strrchr(bindir, '/');
  if (slash)
    *slash = 0;
  else
    snprintf(bindir, sizeof bindir, ".");
  G.bin = bindir;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--out") == 0 && v)
      G.out = v, i++;
    else if (strcmp(a, "--scenario") == 0 && v && nnames < 32)
      names[nnames++] = v, i++;
    else if (strcmp(a, "--seed") == 0 && v)
      seed = strtoull(v, NULL, 10), i++;
    else if (strcmp(a, "--quick") == 0)
      G.quick = true;
    else if (strcmp(a, "--bin") == 0 && v)
      G.bin = v, i++;
    else if (strcmp(a, "--list") == 0)
      list = true;
    else if (strcmp(a, "--bug") == 0 && v && strcmp(v, "exec_twice") == 0)
      G.bug = v, i++;
    else {
      usage(stderr);
      return 2;
    }
  }
  if (list) {
    for (size_t i = 0; i < mprpc_plan_count(); i++)
      printf("%s  %s\n", mprpc_plan_name(i), mprpc_plan_desc(i));
    return 0;
  }
  if (!G.out) {
    usage(stderr);
    return 2;
  }
  for (size_t i = 0; i < nnames; i++) {
    mprpc_plan_t tmp;
    if (mprpc_plan_make(names[i], seed, G.quick, &tmp) < 0) {
      fprintf(stderr, "chaos_runner: no scenario %s (see --list)\n", names[i]);
      return 2;
    }
  }
  if (!nnames)
    for (size_t i = 0; i < mprpc_plan_count(); i++)
      names[nnames++] = mprpc_plan_name(i);
  if (!private_netns()) {
    fprintf(stderr, "chaos_runner: refusing to run in the host's network namespace "
                    "(use make chaos / ci/chaos.sh)\n");
    return 2;
  }
  mprpc_log_set_level(MPRPC_LOG_LEVEL_OFF); /* the simulator twin runs in this process */
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGHUP, on_signal);
  signal(SIGPIPE, SIG_IGN);
  mkdir(G.out, 0755);
  static char outabs[PATH_MAX], binabs[PATH_MAX];
  if (!realpath(G.out, outabs) || !realpath(G.bin, binabs)) {
    fprintf(stderr, "chaos_runner: %s: %s\n", G.out, strerror(errno));
    return 2;
  }
  G.out = outabs; /* ZooKeeper runs in its own directory: absolute paths */
  G.bin = binabs;
  if (net_setup(G.out) < 0) {
    fprintf(stderr, "chaos_runner: cannot set up nftables in the namespace\n");
    return 2;
  }
  if (!G.have_iptables)
    printf("chaos: no iptables NFQUEUE: lossy_slow runs with loss and duplication but no delay\n");
  uint64_t t0 = mono_ns();
  if (zk_ensemble_start() < 0) {
    fprintf(stderr, "chaos_runner: the ZooKeeper ensemble did not come up (logs: %s/zk)\n", G.out);
    for (int i = 0; i < ZK_N; i++)
      proc_stop(NULL, &G.zk[i], SIGKILL, 100);
    chaos_netem_stop();
    return 2;
  }
  printf("chaos: ZooKeeper ensemble on %s, %s, %s serving after %.1f s\n", zk_addr(0), zk_addr(1),
         zk_addr(2), (double)(mono_ns() - t0) / 1e9);
  fflush(stdout);
  result_t *res = calloc(nnames, sizeof *res);
  int status = 0;
  size_t ndone = 0;
  for (size_t i = 0; i < nnames && !G.interrupted && res; i++) {
    if (run_scenario(names[i], seed, &res[i]) < 0) {
      status = 2;
      break;
    }
    ndone++;
    if (res[i].viol)
      status = 1;
  }
  for (int i = 0; i < ZK_N; i++)
    proc_stop(NULL, &G.zk[i], SIGTERM, 3000);
  chaos_netem_stop();
  if (res && ndone)
    print_table(res, ndone);
  free(res);
  if (G.interrupted) {
    fprintf(stderr, "chaos_runner: interrupted\n");
    return 2;
  }
  printf("chaos: %zu scenarios in %.0f s\n", ndone, (double)(mono_ns() - t0) / 1e9);
  return status;
}
