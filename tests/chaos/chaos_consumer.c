/*
 * chaos_consumer: one consumer process of a chaos run (docs/simulator.md,
 * "Chaos runs"). The workload of the simulator's consumers on the
 * production runtime: two channels over one zk:// registry, one declaring
 * Echo idempotent and one not, with the simulator's channel settings; calls
 * at random intervals (mean 1/rate, at most 16 in flight) until a wall-clock
 * end, each request "c<token>". Every call is logged when issued and when
 * its closure runs (support/chaos.h), then the channels' view at the end.
 *
 *   chaos_consumer --registry URI --index I --incarnation K --log FILE --seed S
 *                  --rate R --nonidem-frac F --max-retry N --timeout-ms T
 *                  --lb rr|random|hash|least --end-wall-ns NS
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/controller.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/registry.h"
#include "mprpc/rt.h"
#include "support/chaos.h"

#define MAX_INFLIGHT 16

typedef struct call {
  uint64_t token;
  uint64_t start;
} call_t;

static struct {
  mprpc_loop_t loop;
  mprpc_channel_t *ch_idem, *ch_non;
  mprpc_xoshiro_t x;
  int log;
  uint64_t base, seq, end_wall;
  double rate, nonidem;
  int inflight;
  uint64_t calls;
  atomic_int finished; /* issuing over and nothing in flight */
  atomic_int stop;     /* SIGTERM: stop issuing now */
} g;

static void on_signal(int sig) {
  (void)sig;
  atomic_store(&g.stop, 1);
}

static void tick(void *arg);

static void on_done(const ProtobufCMessage *msg, void *arg) {
  call_t *c = arg;
  mprpc_controller_t *ctl = mprpc_controller_current();
  int err = ctl ? mprpc_controller_error_code(ctl) : 0;
  int own = 0;
  if (msg) {
    const Example__EchoResponse *r = (const Example__EchoResponse *)msg;
    char want[32];
    snprintf(want, sizeof want, "c%" PRIu64, c->token);
    own = r->message && strcmp(r->message, want) == 0;
    err = 0;
  } else if (!err) {
    err = MPRPC_EINTERNAL;
  }
  chaos_log(g.log, "D %" PRIu64 " %d %d %d %" PRIu64 " %" PRIu64 " %d", c->token, msg != NULL, err,
            own, chaos_wall_ns(), ctl ? mprpc_controller_latency_us(ctl) : 0,
            ctl ? mprpc_controller_attempts(ctl) : 0);
  free(c);
  g.inflight--;
}

static void issue(void) {
  call_t *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->token = g.base | g.seq++;
  bool idem = mprpc_rand_double(mprpc_rand_xoshiro(&g.x)) >= g.nonidem;
  char msg[32];
  snprintf(msg, sizeof msg, "c%" PRIu64, c->token);
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = msg;
  chaos_log(g.log, "S %" PRIu64 " %d %" PRIu64, c->token, idem, chaos_wall_ns());
  g.calls++;
  g.inflight++;
  int rc = mprpc_channel_call(idem ? g.ch_idem : g.ch_non, 0, &req.base, NULL, on_done, c);
  if (rc < 0) { /* done never runs */
    chaos_log(g.log, "D %" PRIu64 " 0 %d 0 %" PRIu64 " 0 0", c->token, rc, chaos_wall_ns());
    free(c);
    g.inflight--;
  }
}

static void drain_check(void *arg) {
  (void)arg;
  if (g.inflight == 0) {
    atomic_store(&g.finished, 1);
    return;
  }
  mprpc_timer_start(g.loop, 20 * MPRPC_NS_PER_MS, drain_check, NULL);
}

static void tick(void *arg) {
  (void)arg;
  if (atomic_load(&g.stop) || chaos_wall_ns() >= g.end_wall) {
    drain_check(NULL);
    return;
  }
  if (g.inflight < MAX_INFLIGHT)
    issue();
  uint64_t mean = (uint64_t)(1e9 / g.rate);
  uint64_t d = 1 + mprpc_rand_below(mprpc_rand_xoshiro(&g.x), 2 * mean);
  mprpc_timer_start(g.loop, d, tick, NULL);
}

static void start(void *arg) {
  (void)arg;
  tick(NULL);
}

static int make_channel(mprpc_registry_t reg, bool idem, int lb, int max_retry, int64_t timeout,
                        mprpc_channel_t **out) {
  mprpc_channel_options_t o;
  mprpc_channel_options_init(&o);
  o.loop = g.loop;
  o.registry = reg;
  /* The simulator's settings (sim/vcons.c make_channel). */
  o.timeout_ms = timeout;
  int64_t attempt = timeout / 4;
  if (attempt < 88) /* two worst-case round trips of the simulated net */
    attempt = 88;
  if (attempt > timeout)
    attempt = timeout;
  o.attempt_timeout_ms = attempt;
  o.connect_timeout_ms = 300;
  o.max_retry = max_retry;
  o.lb = lb;
  o.eject_max_ms = 3000;
  o.idempotent_methods = idem ? "Echo" : NULL;
  return mprpc_channel_new(&example__echo_service__descriptor, &o, out);
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"registry", required_argument, 0, 'r'},    {"index", required_argument, 0, 'n'},
      {"incarnation", required_argument, 0, 'k'}, {"log", required_argument, 0, 'o'},
      {"seed", required_argument, 0, 's'},        {"rate", required_argument, 0, 'R'},
      {"nonidem-frac", required_argument, 0, 'f'}, {"max-retry", required_argument, 0, 'm'},
      {"timeout-ms", required_argument, 0, 't'},  {"lb", required_argument, 0, 'b'},
      {"end-wall-ns", required_argument, 0, 'e'}, {0, 0, 0, 0}};
  const char *uri = NULL, *logpath = NULL;
  int index = 0, incarnation = 0, max_retry = 2, lb = 0;
  uint64_t seed = 1;
  int64_t timeout = 1000;
  g.rate = 20;
  g.nonidem = 0.3;
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
    case 'r': uri = optarg; break;
    case 'n': index = atoi(optarg); break;
    case 'k': incarnation = atoi(optarg); break;
    case 'o': logpath = optarg; break;
    case 's': seed = strtoull(optarg, NULL, 10); break;
    case 'R': g.rate = atof(optarg); break;
    case 'f': g.nonidem = atof(optarg); break;
    case 'm': max_retry = atoi(optarg); break;
    case 't': timeout = atoll(optarg); break;
    case 'b': lb = mprpc_lb_from_name(optarg); break;
    case 'e': g.end_wall = strtoull(optarg, NULL, 10); break;
    default: fprintf(stderr, "%s: bad usage (see the header comment)\n", argv[0]); return 2;
    }
  }
  if (!uri || !logpath || !g.end_wall || lb < 0 || g.rate <= 0) {
    fprintf(stderr, "%s: --registry, --log, --end-wall-ns and a valid --lb/--rate are required\n",
            argv[0]);
    return 2;
  }
  g.log = chaos_log_open(logpath);
  g.base = (uint64_t)index << 40 | (uint64_t)(incarnation & 0xff) << 32;
  mprpc_xoshiro_seed(&g.x, seed ^ g.base);
  mprpc_log_set_level(MPRPC_LOG_LEVEL_INFO); /* stderr: the run keeps it per process */
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  mprpc_loop_group_t *grp;
  int rc = mprpc_loop_group_new(1, &grp);
  if (rc == 0)
    rc = mprpc_loop_group_start(grp);
  if (rc < 0) {
    fprintf(stderr, "%s: loop: %s\n", argv[0], mprpc_strerror(rc));
    return 1;
  }
  g.loop = mprpc_loop_group_loop(grp, 0);
  mprpc_registry_t reg = {0};
  char err[256] = "";
  rc = mprpc_registry_open(uri, &reg, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "%s: registry %s: %s %s\n", argv[0], uri, mprpc_strerror(rc), err);
    mprpc_loop_group_free(grp);
    return 1;
  }
  rc = make_channel(reg, true, lb, max_retry, timeout, &g.ch_idem);
  if (rc == 0)
    rc = make_channel(reg, false, lb, max_retry, timeout, &g.ch_non);
  if (rc < 0) {
    fprintf(stderr, "%s: channel: %s\n", argv[0], mprpc_strerror(rc));
    return 1;
  }
  mprpc_loop_post(g.loop, start, NULL);
  /* Bounded: issuing ends at end_wall, the last call by its deadline. */
  uint64_t hard_end = g.end_wall + (uint64_t)(timeout > 0 ? timeout : 1000) * 3 * MPRPC_NS_PER_MS +
                      5 * MPRPC_NS_PER_S;
  while (!atomic_load(&g.finished) && chaos_wall_ns() < hard_end) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  mprpc_channel_stats_t s1, s2;
  mprpc_channel_stats(g.ch_idem, &s1);
  mprpc_channel_stats(g.ch_non, &s2);
  chaos_log(g.log, "E %" PRIu64 " %zu %zu %" PRIu64 " %" PRIu64 " %d", g.calls,
            mprpc_channel_endpoint_count(g.ch_idem), mprpc_channel_endpoint_count(g.ch_non),
            s1.unknown_ids + s2.unknown_ids, chaos_wall_ns(), atomic_load(&g.finished));
  mprpc_channel_destroy(g.ch_idem); /* pending calls (none, unless hung) end ECANCELED */
  mprpc_channel_destroy(g.ch_non);
  mprpc_registry_close(reg);
  mprpc_loop_group_free(grp);
  mprpc_log_flush();
  return 0;
}
