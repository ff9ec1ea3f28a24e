/*
 * user_consumer: calls fixbug.UserServiceRpc and fixbug.friend.FriendServiceRpc
 * through channels that find their providers in the registry.
 *
 *   user_consumer -i consumer.conf
 *       one round of calls, printing each outcome: successes, business errors
 *       (ResultCode.errcode != 0: the call worked, the answer is "no"), and a
 *       framework error (the controller says the call failed).
 *   user_consumer -i consumer.conf -d SECS [-r CALLS_PER_S] [-P "a,b,c"] [-m]
 *       calls Login and GetFriendsList (idempotent, so the channel may fail
 *       over) in a loop for SECS seconds, then prints calls, failures,
 *       latency p50/p99 and which provider served how many calls. SIGUSR1
 *       starts the next phase (labels from -P) so the summary can show what
 *       happened before and after an event; -m adds "M key=value" lines for
 *       scripts.
 *
 * Exit code: 0 when every call behaved as expected (no framework failures in
 * loop mode), 1 otherwise.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/app.h"
#include "examples/friend/friend.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/controller.h"
#include "mprpc/log.h"
#include "user.pb-c.h"

/* ----------------------------------------------------------- one call */

typedef struct outcome {
  int done;         /* closure ran */
  int errcode;      /* ResultCode.errcode (business) */
  char errmsg[128]; /* ResultCode.errmsg */
  int success;
  char friends[256]; /* GetFriendsList: comma-separated */
} outcome_t;

static void copy_result(outcome_t *o, int code, const char *msg) {
  o->errcode = code;
  snprintf(o->errmsg, sizeof o->errmsg, "%s", msg ? msg : "");
}

/* Login and Register answer alike: a ResultCode and a success flag. */
static void user_outcome(outcome_t *o, const Fixbug__ResultCode *rc, bool success) {
  copy_result(o, rc ? rc->errcode : 0, rc ? rc->errmsg : "");
  o->success = success;
}

static void login_done(const Fixbug__LoginResponse *r, void *arg) {
  outcome_t *o = arg;
  o->done = 1;
  if (r)
    user_outcome(o, r->result, r->success);
}

static void register_done(const Fixbug__RegisterResponse *r, void *arg) {
  outcome_t *o = arg;
  o->done = 1;
  if (r)
    user_outcome(o, r->result, r->success);
}

static void friends_done(const Fixbug__Friend__GetFriendsListResponse *r, void *arg) {
  outcome_t *o = arg;
  o->done = 1;
  if (!r)
    return;
  copy_result(o, r->result ? r->result->errcode : 0, r->result ? r->result->errmsg : "");
  o->success = r->result == NULL || r->result->errcode == 0;
  size_t used = 0;
  o->friends[0] = 0;
  for (size_t i = 0; i < r->n_friends && used < sizeof o->friends; i++)
    used += (size_t)snprintf(o->friends + used, sizeof o->friends - used, "%s%s", i ? ", " : "",
                             r->friends[i]);
}

typedef enum { CALL_LOGIN, CALL_LOGIN_BADPWD, CALL_REGISTER, CALL_FRIENDS, CALL_FRIENDS_NOUSER } call_kind_t;

/* Makes one synchronous call (this thread is not the channel's loop, so the
 * stub blocks until the closure ran). ctl holds the framework outcome. */
static void do_call(call_kind_t kind, mprpc_channel_t *user_ch, mprpc_channel_t *friend_ch,
                    mprpc_controller_t *ctl, outcome_t *o) {
  memset(o, 0, sizeof *o);
  mprpc_controller_reset(ctl);
  mprpc_controller_use_next(ctl);
  switch (kind) {
  case CALL_LOGIN:
  case CALL_LOGIN_BADPWD: {
    Fixbug__LoginRequest req = FIXBUG__LOGIN_REQUEST__INIT;
    req.name = "zhang san";
    req.pwd = kind == CALL_LOGIN ? "123456" : "654321";
    fixbug__user_service_rpc__login(mprpc_channel_service(user_ch), &req, login_done, o);
    break;
  }
  case CALL_REGISTER: {
    Fixbug__RegisterRequest req = FIXBUG__REGISTER_REQUEST__INIT;
    req.id = 7;
    req.name = "sun qi";
    req.pwd = "sunqi7";
    fixbug__user_service_rpc__register(mprpc_channel_service(user_ch), &req, register_done, o);
    break;
  }
  case CALL_FRIENDS:
  case CALL_FRIENDS_NOUSER: {
    Fixbug__Friend__GetFriendsListRequest req = FIXBUG__FRIEND__GET_FRIENDS_LIST_REQUEST__INIT;
    req.userid = kind == CALL_FRIENDS ? 1 : 99;
    fixbug__friend__friend_service_rpc__get_friends_list(mprpc_channel_service(friend_ch), &req,
                                                         friends_done, o);
    break;
  }
  }
}

/* ------------------------------------------------------------ channels */

static mprpc_channel_t *open_channel(const ProtobufCServiceDescriptor *sd, mprpc_registry_t reg,
                                     const char *servers, const char *idempotent) {
  mprpc_channel_opts_t co;
  mprpc_channel_opts_init(&co);
  if (servers)
    co.servers = servers;
  else
    co.registry = reg;
  co.idempotent_methods = idempotent;
  mprpc_channel_t *ch = NULL;
  int rc = mprpc_channel_new(sd, &co, &ch);
  if (rc != 0) {
    fprintf(stderr, "user_consumer: channel for %s: %s\n", sd->name, mprpc_strerror(rc));
    exit(1);
  }
  return ch;
}

/* A channel from the config's consumer keys, on the registry both channels
 * share (each mprpc_channel_from_config would open its own). */
static mprpc_channel_t *config_channel(mprpc_config_t *cfg, const ProtobufCServiceDescriptor *sd,
                                       mprpc_registry_t reg) {
  mprpc_channel_t *ch = NULL;
  if (mprpc_channel_from_config_reg(cfg, sd, reg, &ch) != 0) {
    fprintf(stderr, "user_consumer: %s\n", mprpc_config_error(cfg));
    exit(1);
  }
  return ch;
}

/* Waits (bounded) until the registry has delivered at least one provider. */
static int wait_endpoints(mprpc_channel_t *ch, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 20) {
    if (mprpc_channel_endpoint_count(ch) > 0)
      return 0;
    usleep(20 * 1000);
  }
  return -1;
}

/* ------------------------------------------------------------ showcase */

static int showcase(mprpc_channel_t *user_ch, mprpc_channel_t *friend_ch) {
  static const struct {
    call_kind_t kind;
    const char *label;
    int want_errcode;
  } calls[] = {
      {CALL_LOGIN, "Login(zhang san, 123456)", 0},
      {CALL_LOGIN_BADPWD, "Login(zhang san, 654321)", 2},
      {CALL_REGISTER, "Register(7, sun qi, sunqi7)", 0},
      {CALL_FRIENDS, "GetFriendsList(1)", 0},
      {CALL_FRIENDS_NOUSER, "GetFriendsList(99)", 1},
  };
  mprpc_controller_t *ctl = mprpc_controller_new();
  int bad = 0;
  outcome_t o;
  for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
    do_call(calls[i].kind, user_ch, friend_ch, ctl, &o);
    printf("%-28s ", calls[i].label);
    if (mprpc_controller_failed(ctl)) {
      printf("framework error %s: %s\n", mprpc_err_name(mprpc_controller_error_code(ctl)),
             mprpc_controller_error_text(ctl));
      bad++;
      continue;
    }
    char what[300];
    if (o.errcode)
      snprintf(what, sizeof what, "business error %d: %s", o.errcode, o.errmsg);
    else if (calls[i].kind == CALL_FRIENDS)
      snprintf(what, sizeof what, "ok: %s", o.friends);
    else
      snprintf(what, sizeof what, "ok: success=%s", o.success ? "true" : "false");
    printf("%-40s %s  %.2f ms\n", what, mprpc_controller_remote(ctl),
           (double)mprpc_controller_latency_us(ctl) / 1000.0);
    if (o.errcode != calls[i].want_errcode)
      bad++;
  }

  /* A framework error: a provider address where nothing listens. */
  mprpc_channel_t *dead =
      open_channel(&fixbug__user_service_rpc__descriptor, (mprpc_registry_t){0}, "127.0.0.1:1",
                   NULL);
  do_call(CALL_LOGIN, dead, friend_ch, ctl, &o);
  printf("%-28s ", "Login via 127.0.0.1:1");
  if (mprpc_controller_failed(ctl))
    printf("framework error %s: %s\n", mprpc_err_name(mprpc_controller_error_code(ctl)),
           mprpc_controller_error_text(ctl));
  else {
    printf("unexpectedly succeeded\n");
    bad++;
  }
  mprpc_channel_destroy(dead);
  mprpc_controller_free(ctl);
  return bad ? 1 : 0;
}

/* ---------------------------------------------------------- loop mode */

#define MAX_PHASES 8
#define MAX_EPS 16

typedef struct phase {
  char label[48];
  uint64_t calls, failed, business;
  uint64_t served[MAX_EPS];
} phase_t;

static volatile sig_atomic_t g_phase;
static char g_eps[MAX_EPS][64];
static int g_neps;

static void on_usr1(int sig) {
  (void)sig;
  if (g_phase < MAX_PHASES - 1)
    g_phase++;
}

static int ep_index(const char *ep) {
  for (int i = 0; i < g_neps; i++)
    if (strcmp(g_eps[i], ep) == 0)
      return i;
  if (g_neps == MAX_EPS || !*ep)
    return -1;
  snprintf(g_eps[g_neps], sizeof g_eps[0], "%s", ep);
  return g_neps++;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int loop_mode(mprpc_channel_t *user_ch, mprpc_channel_t *friend_ch, double secs,
                     double rate, const char *labels, int machine) {
  static phase_t phases[MAX_PHASES];
  for (int i = 0; i < MAX_PHASES; i++)
    snprintf(phases[i].label, sizeof phases[i].label, "phase %d", i + 1);
  if (labels) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", labels);
    int i = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && i < MAX_PHASES;
         t = strtok_r(NULL, ",", &save))
      snprintf(phases[i++].label, sizeof phases[0].label, "%s", t);
  }
  size_t cap = 1 << 16, n = 0;
  uint32_t *lat = malloc(cap * sizeof *lat);
  mprpc_controller_t *ctl = mprpc_controller_new();
  if (!lat || !ctl)
    return 1;
  uint64_t t0 = now_ms(), end = t0 + (uint64_t)(secs * 1000);
  uint64_t calls = 0, failed = 0, business = 0;
  char last_err[160] = "";
  outcome_t o;
  /* Bounded by time and by count (10 million calls). */
  for (uint64_t i = 0; now_ms() < end && i < 10000000; i++) {
    if (rate > 0) {
      uint64_t due = t0 + (uint64_t)((double)i * 1000.0 / rate);
      uint64_t now = now_ms();
      if (due > now)
        usleep((useconds_t)(due - now) * 1000);
    }
    /* Mostly successful logins and friend lists; every tenth call is a
     * login with a wrong password: a business error, not a failure. */
    call_kind_t kind = i % 10 == 9 ? CALL_LOGIN_BADPWD : i % 2 ? CALL_FRIENDS : CALL_LOGIN;
    /* A call belongs to the phase it started in. */
    phase_t *ph = &phases[g_phase];
    do_call(kind, user_ch, friend_ch, ctl, &o);
    calls++;
    ph->calls++;
    if (mprpc_controller_failed(ctl)) {
      failed++;
      ph->failed++;
      snprintf(last_err, sizeof last_err, "%s: %s", mprpc_err_name(mprpc_controller_error_code(ctl)),
               mprpc_controller_error_text(ctl));
      continue;
    }
    if (o.errcode) {
      business++;
      ph->business++;
    }
    int e = ep_index(mprpc_controller_remote(ctl));
    if (e >= 0)
      ph->served[e]++;
    if (n == cap) {
      uint32_t *p = cap < (1u << 24) ? realloc(lat, 2 * cap * sizeof *lat) : NULL;
      if (p) {
        lat = p;
        cap *= 2;
      }
    }
    if (n < cap)
      lat[n++] = (uint32_t)mprpc_controller_latency_us(ctl);
  }
  mprpc_controller_free(ctl);
  qsort(lat, n, sizeof *lat, cmp_u32);
  double p50 = n ? lat[n / 2] / 1000.0 : 0, p99 = n ? lat[n * 99 / 100] / 1000.0 : 0;
  free(lat);

  int nph = g_phase + 1;
  printf("calls %llu, failed %llu, business errors %llu (wrong password, expected)\n",
         (unsigned long long)calls, (unsigned long long)failed, (unsigned long long)business);
  printf("latency p50 %.2f ms, p99 %.2f ms\n", p50, p99);
  if (failed)
    printf("last failure: %s\n", last_err);
  printf("\n%-22s %7s %7s", "served by", "calls", "failed");
  for (int e = 0; e < g_neps; e++)
    printf(" %16s", g_eps[e]);
  printf("\n");
  for (int p = 0; p < nph; p++) {
    printf("%-22s %7llu %7llu", phases[p].label, (unsigned long long)phases[p].calls,
           (unsigned long long)phases[p].failed);
    for (int e = 0; e < g_neps; e++)
      printf(" %16llu", (unsigned long long)phases[p].served[e]);
    printf("\n");
  }
  if (machine) {
    printf("M calls=%llu failed=%llu business=%llu p50_ms=%.3f p99_ms=%.3f phases=%d\n",
           (unsigned long long)calls, (unsigned long long)failed, (unsigned long long)business,
           p50, p99, nph);
    for (int p = 0; p < nph; p++)
      for (int e = 0; e < g_neps; e++)
        printf("M served phase=%d endpoint=%s calls=%llu\n", p + 1, g_eps[e],
               (unsigned long long)phases[p].served[e]);
  }
  return failed ? 1 : 0;
}

/* ---------------------------------------------------------------- main */

static void usage(void) {
  fprintf(stderr, "usage: user_consumer -i FILE [-d SECS] [-r CALLS_PER_S] [-P labels] [-m]\n");
  exit(2);
}

int main(int argc, char **argv) {
  double secs = 0, rate = 0;
  const char *labels = NULL;
  int machine = 0;
  /* -i FILE is the config's; the rest are ours. */
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-m"))
      machine = 1;
    else if (i + 1 >= argc)
      usage();
    else if (!strcmp(argv[i], "-i"))
      i++;
    else if (!strcmp(argv[i], "-d"))
      secs = atof(argv[++i]);
    else if (!strcmp(argv[i], "-r"))
      rate = atof(argv[++i]);
    else if (!strcmp(argv[i], "-P"))
      labels = argv[++i];
    else
      usage();
  }
  if (secs < 0 || secs > 3600 || rate < 0)
    usage();
  /* Installed first: a script may signal us as soon as we run. */
  struct sigaction sa = {.sa_handler = on_usr1};
  sigaction(SIGUSR1, &sa, NULL);
  char *cfg_argv[3] = {argv[0], "-i", NULL};
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], "-i"))
      cfg_argv[2] = argv[i + 1];
  if (!cfg_argv[2])
    usage();
  mprpc_config_t *cfg = app_init(3, cfg_argv);
  mprpc_registry_t reg = app_registry("user_consumer", cfg);
  /* One list for both channels: each takes the entries of its service.
   * Login and Register give the same answer when repeated, and so does
   * GetFriendsList, so the channels may fail over when a provider dies. */
  if (!mprpc_config_has(cfg, "idempotent_methods"))
    mprpc_config_set(cfg, "idempotent_methods",
                     "UserServiceRpc.Login, UserServiceRpc.Register, FriendServiceRpc.*");
  mprpc_channel_t *user_ch = config_channel(cfg, &fixbug__user_service_rpc__descriptor, reg);
  mprpc_channel_t *friend_ch =
      config_channel(cfg, &fixbug__friend__friend_service_rpc__descriptor, reg);
  int rc = 0;
  if (wait_endpoints(user_ch, 10000) != 0 || wait_endpoints(friend_ch, 10000) != 0) {
    fprintf(stderr, "user_consumer: no provider found in the registry within 10 s\n");
    rc = 1;
  } else if (secs > 0) {
    rc = loop_mode(user_ch, friend_ch, secs, rate, labels, machine);
  } else {
    rc = showcase(user_ch, friend_ch);
  }
  mprpc_channel_destroy(user_ch);
  mprpc_channel_destroy(friend_ch);
  mprpc_registry_close(reg); /* shared, so ours to close, after the channels */
  mprpc_config_free(cfg);
  mprpc_log_flush();
  return rc;
}
