/*
 * The internals of a simulator run, shared by the files that make one up
 * (not an interface: sim/scenario.h is). The files:
 *
 *   run.c       a run: the world, hosts and faults set up, run, checked at
 *               the end and torn down; the call records.
 *   scenario.c  the scenario table: each scenario's parameters and faults.
 *   vprov.c     the provider hosts: the echo handler, its worker pool,
 *               start, crash, restart and graceful stop.
 *   vcons.c     the consumer hosts: channels, calls, their checks.
 *   fault.c     faults on the world's clock, hostile clients, the config
 *               centre's changes and fault plans (sim/plan.h).
 *
 * Scenarios and the invariant checker.
 *
 * A run builds P provider hosts (each a production mprpc_server_t on two
 * virtual loops, publishing example.EchoService through its own virtual
 * ZooKeeper handle) and C consumer hosts (each with two production channels
 * subscribed through its own handle: one declares Echo idempotent, the other
 * does not, so the same method is exercised both ways). Consumers issue calls
 * at random intervals; each request carries a unique token ("c<token>") that
 * the echo handler sends back, and that the provider counts executions by.
 * A scenario schedules faults on the world's clock; at `quiet_after` every
 * fault is healed and every provider is back, and from `live_from` on every
 * idempotent call must succeed (liveness).
 *
 * Checked on every run (a violation is counted and described):
 *  - each accepted call's closure runs exactly once (twice: at once; never:
 *    at the end, after the channels were destroyed);
 *  - a successful call carries the response to its own request (token);
 *  - no call completes later than its deadline plus a small slack;
 *  - a non-idempotent call executes at most once, an idempotent one at most
 *    1 + max_retry times (counted in the handler);
 *  - liveness after the faults healed (see above), and convergence at the
 *    end: the registry holds exactly the running providers and every channel
 *    knows exactly those.
 *  - memory: the sim build runs under ASan/LSan in `make test`.
 */
#ifndef MPRPC_SIM_RUN_H
#define MPRPC_SIM_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/controller.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
#include "check.h"
#include "hostile.h"
#include "plan.h"
#include "scenario.h"
#include "sim.h"

#define MS MPRPC_NS_PER_MS
#define SEC MPRPC_NS_PER_S
#define SERVICE "example.EchoService"
#define REC_BLOCK 4096
#define MAX_BLOCKS 4096
#define DEADLINE_SLACK_NS (20 * MS)
#define LIVE_GRACE_NS (10 * SEC)

typedef struct run run_t;

typedef struct rec {
  run_t *run;
  uint32_t token;
  mprpc_check_call_t c; /* what the shared checker (sim/check.c) reads */
} rec_t;

typedef struct pend {
  struct pend *next;
  struct prov *p;
  uint64_t timer;
  const Example__EchoRequest *in;
  Example__EchoResponse_Closure closure;
  void *closure_data;
} pend_t;

#define MAX_WORKERS 8
#define SLOW_WARN_MS 100

/* A handler-pool job on a virtual worker thread (one sim loop each). */
typedef struct job {
  struct job *next;
  struct prov *p;
  void (*fn)(void *);
  void *arg;
} job_t;

typedef struct worker_arg {
  struct prov *p;
  int k;
} worker_arg_t;

typedef struct prov {
  Example__EchoService_Service svc; /* first: the handler gets &svc */
  run_t *run;
  int idx, host;
  mprpc_sim_loop_t *sl[2];
  mprpc_loop_t loops[2];
  mprpc_server_t *srv;
  mprpc_registry_t reg;
  bool up, stopping, crashing;
  uint64_t restart_after;
  pend_t *pending;
  struct job *jobs, *jobs_tail; /* handler-pool queue */
  mprpc_sim_loop_t *wk[MAX_WORKERS];
  uint64_t wk_ev[MAX_WORKERS]; /* a worker's pending take (0: idle) */
  worker_arg_t wk_arg[MAX_WORKERS];
  uint64_t slow_expected, slow_counted; /* loop holds past the watchdog's threshold */
  char last[32];
  /* governance scenarios */
  uint64_t disabled_at;       /* disabled.HOST:PORT=1 written at (0: not disabled) */
  uint64_t sec, sec_execs;    /* executions in the current virtual second */
  bool sec_flagged;
  uint64_t phase_execs[4];
  uint64_t busy_until;        /* GOV_OVERLOAD: the single-server queue */
} prov_t;

typedef struct cons {
  run_t *run;
  int idx, host;
  mprpc_sim_loop_t *sl;
  mprpc_registry_t reg;
  mprpc_channel_t *ch_idem, *ch_non;
  int inflight;
  uint64_t tick_ev;
} cons_t;

typedef struct params {
  int consumers, providers;
  uint64_t duration_ns; /* calls are issued in [start_ns, duration_ns) */
  uint64_t start_ns;
  double rate;          /* per consumer per second */
  int max_inflight;
  int64_t timeout_ms;
  int max_retry;
  double nonidem_frac;
  uint64_t work_max_ns; /* slow handlers: virtual work in [0, work_max] */
  double slow_frac;
  uint64_t slow_until_ns;
  uint64_t block_max_ns; /* blocking handlers: hold their thread up to this */
  double block_frac;
  int handler_threads; /* virtual handler pool per provider (0 = on the loop) */
  int64_t backup_ms;          /* backup requests on the idempotent channel */
  uint32_t server_max_conc;   /* provider concurrency limit (ELIMIT) */
  size_t server_budget;       /* providers' max_buffered_bytes (0 = default) */
  bool hostile;               /* hostile clients beside the consumers */
  bool no_failures;           /* no faults at all: every call must succeed */
  size_t chunk;
  bool chunk_fixed;
  bool compress; /* consumers compress requests: none/snappy/gzip/zlib by index */
  double big_frac; /* share of calls whose message is padded to (16 KiB, big_max] */
  size_t big_max;
  uint64_t lat_max_ns;
  uint64_t session_timeout_ns;
  uint64_t quiet_after_ns; /* faults end; everything healed */
  int gov;                 /* GOV_*: a governance scenario (config centre) */
  uint32_t gov_rate;       /* GOV_RATE: rate_limit.Echo */
  const char *gov_limit;   /* GOV_OVERLOAD: max_concurrency.Echo value, NULL = none */
  uint64_t live_from_ns;   /* idempotent calls must succeed from here */
  double fault_scale;
  bool rto_backoff; /* TCP's retransmission backoff on the virtual links (plan runs too) */
} params_t;

typedef struct fault {
  struct fault *next;
  run_t *run;
  int kind;
  int a, b;
  uint64_t d;
  const mprpc_plan_fault_t *pf; /* F_PLAN, F_PLAN_END */
} fault_t;

#define PLAN_HOSTS 16

struct run {
  const mprpc_sim_opts_t *o;
  params_t p;
  mprpc_sim_world_t *w;
  mprpc_sim_net_t *net;
  mprpc_transport_t tr;
  mprpc_sim_zk_t *zk;
  prov_t *provs;
  cons_t *cons;
  rec_t *blocks[MAX_BLOCKS];
  uint32_t ncalls;
  fault_t *faults;
  mprpc_sim_result_t *res;
  mprpc_check_policy_t pol;
  mprpc_sim_violations_t viol;
  bool tearing_down;
  uint64_t *first_exec_after_quiet; /* per provider */
  /* Plan runs: how many active faults cut each direction / each host. */
  uint8_t cut[PLAN_HOSTS][PLAN_HOSTS];
  uint8_t zkcut[PLAN_HOSTS];
  /* governance scenarios */
  int gov_phase;
  uint64_t deg_from, deg_to, deg_calls, deg_ok;
  uint64_t ol_from, ol_ok;     /* GOV_OVERLOAD: goodput window start, calls ok in it */
  uint64_t *ol_lat;            /* latencies of admitted calls in the window (ns) */
  size_t ol_n, ol_cap;
  mprpc_sim_hostile_t *hostile;
  bool over_budget_flagged;
};

enum { GOV_NONE = 0, GOV_SHIFT, GOV_RATE, GOV_DEGRADE, GOV_OVERLOAD };
#define GOV_SERVICE_NS (5 * MS) /* GOV_OVERLOAD: one provider serves 200 calls/s */

struct mprpc_sim_scenario {
  const char *name;
  const char *desc;
  void (*setup)(run_t *r);
  /* A scenario with a topology of its own runs here instead (setup NULL). */
  int (*run)(const mprpc_sim_opts_t *o, mprpc_sim_result_t *r);
};


/* Fault kinds (fault_t.kind). */
enum {
  F_CRASH = 1,     /* a = provider (-1 random up), d = downtime */
  F_GRACEFUL,      /* a = provider (-1 random up), d = downtime */
  F_PARTITION,     /* b = 0 symmetric, 1 consumer->provider, 2 provider->consumer; d */
  F_HEAL_NET,
  F_STALL,         /* random consumer/provider pair, random direction, d */
  F_RESET,         /* a random connection */
  F_ZK_DOWN,       /* d */
  F_ZK_UP,
  F_ZK_CUT,        /* a = host (-1 random), d */
  F_ZK_HEAL,
  F_ZK_EXPIRE_ALL,
  F_QUIET,         /* heal everything, restart every provider */
  F_PLAN,          /* a fault of a plan (mprpc_sim_run_plan): pf */
  F_PLAN_END,      /* its end (links and registry cuts only) */
  F_ZK_UP_PLAN,    /* the ensemble serves again after an election */
  F_CUT_CONSUMERS, /* consumers 0..a-1 cut from every provider, both ways, for d */
  F_GOV,           /* the config centre: a = GOVF_* */
  F_HOSTILE_START, /* hostile clients against every provider */
  F_HOSTILE_STOP,
  F_BUDGET_CHECK,  /* every 50 ms: buffered bytes within the budget */
};

/* F_GOV: what the config centre changes (fault_t.a). */
enum { GOVF_DISABLE0 = 0, GOVF_WEIGHT1, GOVF_CLEAR, GOVF_RATE, GOVF_CUT_ALL, GOVF_HEAL_ALL,
       GOVF_LIMIT };

static inline uint64_t now(const run_t *r) { return mprpc_sim_now(r->w); }

/* --- run.c: a run and its call records ---------------------------------------- */

/* The record of call token, NULL when there is none. */
rec_t *mprpc__rec_get(run_t *r, uint32_t token);
/* A new call record (the next token), NULL when the table is full. */
rec_t *mprpc__rec_new(run_t *r);
/* A call's message: "c<token>", or with pad > 0 "c<token>.<pad>:" then
 * pad bytes that follow from the token (large messages). NULL without memory;
 * the caller frees it. */
char *mprpc__token_msg(uint32_t token, size_t pad);
/* The token of a message made so; false if it is not one, padding included. */
bool mprpc__parse_token(const char *m, uint32_t *t);
/* The shared checker's report callback (ud: the run_t). */
void mprpc__run_report(void *ud, const char *msg);

/* --- scenario.c: the scenarios ------------------------------------------------ */

/* The parameters every scenario starts from. */
void mprpc__base_params(params_t *p);
/* End of a governance scenario: its own checks. */
void mprpc__check_gov(run_t *r);

/* --- vprov.c: the provider hosts ------------------------------------------- */

/* Starts provider p's server and registers it. 0 or an MPRPC_E* code. */
int mprpc__prov_start(prov_t *p);
/* The crash of p (its restart follows if p->restart_after). */
void mprpc__prov_crash(prov_t *p);
void mprpc__prov_restart(prov_t *p);
/* mprpc__prov_restart as a world event (arg: the prov_t). */
void mprpc__prov_restart_ev(void *arg);
/* A graceful stop of p, up again restart_after ns later (0: stays down). */
void mprpc__prov_graceful(prov_t *p, uint64_t restart_after);
/* Drops p's pending (delayed) answers. */
void mprpc__prov_pend_cancel_all(prov_t *p);
int mprpc__providers_up(const run_t *r);

/* --- vcons.c: the consumer hosts ------------------------------------------- */

/* Opens c's two channels and schedules its first call. 0 or MPRPC_E*. */
int mprpc__cons_start(cons_t *c);
/* Consumer idx's balancer (an mprpc_lb_t): the four kinds in turn, from an
 * offset the seed picks. */
int mprpc__cons_lb(const run_t *r, int idx);
/* c issues one call now. */
void mprpc__cons_issue(cons_t *c);

/* --- fault.c: faults on the world's clock ------------------------------------- */

/* Schedules a fault of kind (F_*) at t; NULL when out of memory. */
fault_t *mprpc__fault_at(run_t *r, uint64_t t, int kind, int a, int b, uint64_t d);
/* A timeline span of d ns from now on lane. */
void mprpc__fault_span(run_t *r, uint64_t d, int lane, const char *label);
/* Schedules kind at random times in [from, to) with mean gap gap (shortened
 * by the fault scale), each lasting [dmin, dmax]. */
void mprpc__fault_sprinkle(run_t *r, int kind, uint64_t from, uint64_t to, uint64_t gap, int b,
                           uint64_t dmin, uint64_t dmax);

#endif
