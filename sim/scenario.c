/*
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
#include "scenario.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/controller.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
#include "check.h"
#include "plan.h"
#include "hostile.h"
#include "sim.h"
#include "timeline.h"

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
  int nviol_printed;
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

/* ---- helpers ----------------------------------------------------------------------- */

static uint64_t now(const run_t *r) { return mprpc_sim_now(r->w); }

static void violate(run_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void violate(run_t *r, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (r->res->violations++ == 0)
    snprintf(r->res->first_violation, sizeof r->res->first_violation, "t=%.3fs %.200s",
             (double)now(r) / 1e9, msg);
  if (r->o->violations && r->nviol_printed < 5) {
    r->nviol_printed++;
    fprintf(r->o->violations, "  violation seed=%llu t=%.3fs: %s\n",
            (unsigned long long)r->o->seed, (double)now(r) / 1e9, msg);
  }
  mprpc_sim_tracef(r->w, "VIOLATION %s", msg);
  mprpc_sim_note(r->w, "violation", r->res->violations, 0);
}

static rec_t *rec_get(run_t *r, uint32_t token) {
  if (token >= r->ncalls)
    return NULL;
  return &r->blocks[token / REC_BLOCK][token % REC_BLOCK];
}

static rec_t *rec_new(run_t *r) {
  uint32_t t = r->ncalls;
  if (t / REC_BLOCK >= MAX_BLOCKS)
    return NULL;
  if (!r->blocks[t / REC_BLOCK]) {
    r->blocks[t / REC_BLOCK] = calloc(REC_BLOCK, sizeof(rec_t));
    if (!r->blocks[t / REC_BLOCK])
      return NULL;
  }
  r->ncalls++;
  rec_t *rec = &r->blocks[t / REC_BLOCK][t % REC_BLOCK];
  rec->run = r;
  rec->token = t;
  rec->c.id = t;
  return rec;
}

static bool parse_token(const char *m, uint32_t *t) {
  if (!m || m[0] != 'c' || !m[1])
    return false;
  char *end;
  unsigned long v = strtoul(m + 1, &end, 10);
  if (*end || v > UINT32_MAX)
    return false;
  *t = (uint32_t)v;
  return true;
}

/* The shared checker reports through this. */
static void report(void *ud, const char *msg) { violate(ud, "%s", msg); }

/* ---- provider side: the echo handler ------------------------------------------------------- */

static void reply(prov_t *p, const Example__EchoRequest *in, Example__EchoResponse_Closure closure,
                  void *cd) {
  char msg[32];
  snprintf(msg, sizeof msg, "%s", in->message ? in->message : "");
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = msg;
  char other[32];
  if ((mprpc__sim_bug & MPRPC_SIM_BUG_WRONG_RESPONSE) && p->last[0] &&
      mprpc_sim_chance(p->run->w, 0.05)) {
    memcpy(other, p->last, sizeof other);
    resp.message = other; /* the bug: another call's answer */
  }
  memcpy(p->last, msg, sizeof p->last);
  if ((mprpc__sim_bug & MPRPC_SIM_BUG_LYING_LOGOFF) && mprpc_sim_chance(p->run->w, 0.05))
    mprpc_server_call_set_error(mprpc_server_call_from(cd), MPRPC_ELOGOFF, "ran, then lied");
  closure(&resp, cd);
}

static void pend_unlink(prov_t *p, pend_t *pd) {
  for (pend_t **pp = &p->pending; *pp; pp = &(*pp)->next)
    if (*pp == pd) {
      *pp = pd->next;
      return;
    }
}

static void pend_fire(void *arg) {
  pend_t *pd = arg;
  prov_t *p = pd->p;
  pend_unlink(p, pd);
  reply(p, pd->in, pd->closure, pd->closure_data);
  free(pd);
}

static void pend_cancel_all(prov_t *p) {
  while (p->pending) {
    pend_t *pd = p->pending;
    p->pending = pd->next;
    mprpc_timer_cancel(p->loops[0], pd->timer);
    free(pd);
  }
  /* Jobs the pool never started die with the process; the server frees
   * their calls with their connections. */
  while (p->jobs) {
    job_t *j = p->jobs;
    p->jobs = j->next;
    free(j);
  }
  p->jobs_tail = NULL;
  for (int k = 0; k < MAX_WORKERS; k++)
    if (p->wk_ev[k]) {
      mprpc_sim_cancel(p->run->w, p->wk_ev[k]);
      p->wk_ev[k] = 0;
    }
}

/* The handler answers after `work` of virtual time. */
static void pend_add(prov_t *p, const Example__EchoRequest *in,
                     Example__EchoResponse_Closure closure, void *closure_data, uint64_t work) {
  pend_t *pd = calloc(1, sizeof *pd);
  if (!pd)
    abort();
  pd->p = p;
  pd->in = in;
  pd->closure = closure;
  pd->closure_data = closure_data;
  pd->timer = mprpc_timer_start(p->loops[0], work, pend_fire, pd);
  pd->next = p->pending;
  p->pending = pd;
}

/* The virtual handler pool: one shared FIFO, MAX_WORKERS worker threads
 * (sim loops). A worker takes the next job, runs it (a blocking handler
 * holds the worker), and takes the next one when it is free again. */
static void worker_take(void *arg);

static void worker_wake(prov_t *p, int k) {
  p->wk_ev[k] = mprpc_sim_at_on(p->run->w, p->wk[k], 0, MPRPC_SIM_EV_POST, (uint64_t)p->host,
                                worker_take, &p->wk_arg[k]);
  if (!p->wk_ev[k])
    abort(); /* out of memory in the simulator itself */
}

static void worker_take(void *arg) {
  worker_arg_t *wa = arg;
  prov_t *p = wa->p;
  int k = wa->k;
  p->wk_ev[k] = 0;
  job_t *j = p->jobs;
  if (!j)
    return; /* idle until the next submit */
  p->jobs = j->next;
  if (!p->jobs)
    p->jobs_tail = NULL;
  void (*fn)(void *) = j->fn;
  void *fn_arg = j->arg;
  free(j);
  fn(fn_arg);
  worker_wake(p, k); /* runs once this worker is no longer held */
}

static int pool_submit(void *ctx, void (*fn)(void *arg), void *arg) {
  prov_t *p = ctx;
  run_t *r = p->run;
  job_t *j = calloc(1, sizeof *j);
  if (!j)
    return MPRPC_ENOMEM;
  *j = (job_t){.p = p, .fn = fn, .arg = arg};
  if (p->jobs_tail)
    p->jobs_tail->next = j;
  else
    p->jobs = j;
  p->jobs_tail = j;
  for (int k = 0; k < r->p.handler_threads && k < MAX_WORKERS; k++)
    if (!p->wk_ev[k] && !mprpc_sim_loop_busy(p->wk[k])) {
      worker_wake(p, k);
      break;
    }
  return 0;
}

static const mprpc_executor_ops_t pool_ops = {.submit = pool_submit};

static void sim_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                     Example__EchoResponse_Closure closure, void *closure_data) {
  prov_t *p = (prov_t *)svc;
  run_t *r = p->run;
  uint32_t token;
  r->res->executions++;
  if (r->first_exec_after_quiet && r->p.quiet_after_ns && now(r) >= r->p.quiet_after_ns &&
      now(r) < r->first_exec_after_quiet[p->idx])
    r->first_exec_after_quiet[p->idx] = now(r);
  mprpc_timeline_exec(r->o->timeline, now(r), p->idx);
  if (parse_token(in->message, &token)) {
    rec_t *rec = rec_get(r, token);
    if (rec) {
      rec->c.execs++;
      mprpc_sim_note(r->w, "exec", token, (uint64_t)p->idx);
      mprpc_check_exec(&r->pol, &rec->c, report, r);
      /* the config centre's drain: no call started more than 1 s after the
       * provider was disabled may reach it */
      if (p->disabled_at && rec->c.start_ns > p->disabled_at + SEC)
        violate(r, "call %u started %.3f s after provider %d was disabled reached it", token,
                (double)(rec->c.start_ns - p->disabled_at) / 1e9, p->idx);
    }
  }
  if (r->p.gov) {
    p->phase_execs[r->gov_phase]++;
    uint64_t sec = now(r) / SEC;
    if (sec != p->sec) {
      p->sec = sec;
      p->sec_execs = 0;
      p->sec_flagged = false;
    }
    p->sec_execs++;
    /* GCRA: at most burst + qps in any aligned second (burst = qps / 10) */
    uint64_t cap = r->p.gov_rate + (r->p.gov_rate / 10 ? r->p.gov_rate / 10 : 1);
    if (r->p.gov == GOV_RATE && now(r) >= 2 * SEC && p->sec_execs > cap && !p->sec_flagged) {
      p->sec_flagged = true;
      violate(r, "provider %d ran %llu calls in one second under rate_limit.Echo=%u", p->idx,
              (unsigned long long)p->sec_execs, r->p.gov_rate);
    }
  }
  if (r->p.gov == GOV_OVERLOAD) { /* one call at a time, GOV_SERVICE_NS each */
    uint64_t start = p->busy_until > now(r) ? p->busy_until : now(r);
    p->busy_until = start + GOV_SERVICE_NS;
    pend_add(p, in, closure, closure_data, p->busy_until - now(r));
    return;
  }
  uint64_t work = 0;
  mprpc_loop_t on = p->loops[0];
  if (r->p.block_max_ns && (!r->p.quiet_after_ns || now(r) < r->p.quiet_after_ns) &&
      mprpc_sim_chance(r->w, r->p.block_frac)) {
    /* Blocking work: the thread running the handler (its connection's loop,
     * or a pool worker) is held, and the answer goes out when it ends. */
    mprpc_sim_loop_t *self = mprpc_sim_running_loop(r->w);
    work = mprpc_sim_rand_range(r->w, 1, r->p.block_max_ns);
    mprpc_sim_loop_hold(self, work);
    on = mprpc_sim_loop(self);
    if (r->p.handler_threads == 0 && work > SLOW_WARN_MS * MS)
      p->slow_expected++;
  } else if (r->p.work_max_ns && now(r) < r->p.slow_until_ns &&
             mprpc_sim_chance(r->w, r->p.slow_frac)) {
    work = mprpc_sim_rand_range(r->w, 1, r->p.work_max_ns);
  }
  if (!work) {
    reply(p, in, closure, closure_data);
    return;
  }
  pend_t *pd = calloc(1, sizeof *pd);
  if (!pd)
    abort();
  pd->p = p;
  pd->in = in;
  pd->closure = closure;
  pd->closure_data = closure_data;
  pd->timer = mprpc_timer_start(on, work, pend_fire, pd);
  pd->next = p->pending;
  p->pending = pd;
}

static int prov_start(prov_t *p) {
  run_t *r = p->run;
  int rc = mprpc_sim_zk_handle(r->zk, p->host, p->loops[0], &p->reg);
  if (rc < 0)
    return rc;
  const char *addr = mprpc_sim_net_host_addr(r->net, p->host);
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = addr;
  o.port = 0; /* a fresh port per instance: consumers must learn it */
  o.transport = r->tr;
  o.loops = p->loops;
  o.nloops = 2;
  o.registry = p->reg;
  o.advertise_host = addr;
  o.drain_timeout_ms = 3000;
  o.max_concurrency = r->p.server_max_conc;
  o.slow_handler_warn_ms = SLOW_WARN_MS;
  if (r->p.handler_threads > 0)
    o.executor = (mprpc_executor_t){.vt = &pool_ops, .ctx = p};
  o.max_buffered_bytes = r->p.server_budget;
  p->svc = (Example__EchoService_Service)EXAMPLE__ECHO_SERVICE__INIT(sim_);
  rc = mprpc_server_new_in(&o, (mprpc_loop_owner_t){0}, &p->srv);
  if (rc < 0)
    goto fail;
  rc = mprpc_server_add_service(p->srv, &p->svc.base);
  if (rc < 0)
    goto fail;
  rc = mprpc_server_start(p->srv);
  if (rc < 0)
    goto fail;
  p->up = true;
  p->last[0] = 0;
  mprpc_sim_note(r->w, "prov.start", (uint64_t)p->idx, mprpc_server_port(p->srv));
  return 0;
fail:
  mprpc_server_destroy(p->srv);
  p->srv = NULL;
  mprpc_registry_close(p->reg);
  p->reg = (mprpc_registry_t){0};
  return rc;
}

/* The network never corrupts bytes: a malformed frame means the codec lost
 * track of framing under some split or merge of the stream. */
static void prov_check_stats(prov_t *p) {
  if (!p->srv)
    return;
  mprpc_server_stats_t st;
  mprpc_server_stats(p->srv, &st);
  if (st.malformed_frames)
    violate(p->run, "provider %d saw %llu malformed frames on an uncorrupted network", p->idx,
            (unsigned long long)st.malformed_frames);
  mprpc_method_stats_t ms;
  if (mprpc_server_method_stats(p->srv, SERVICE, "Echo", &ms) == 0)
    p->slow_counted += ms.slow_handlers;
}

static void prov_crash_finish(void *arg) {
  prov_t *p = arg;
  prov_check_stats(p);
  mprpc_server_destroy(p->srv);
  p->srv = NULL;
  mprpc_sim_zk_crash_handle(p->reg);
  p->reg = (mprpc_registry_t){0};
  p->crashing = false;
}

/* A crash: connections dropped by the network, the process state freed
 * without a goodbye (its registry session lingers until it expires). */
static void prov_crash(prov_t *p) {
  run_t *r = p->run;
  if (!p->up || p->stopping || p->crashing)
    return;
  mprpc_sim_note(r->w, "prov.crash", (uint64_t)p->idx, 0);
  pend_cancel_all(p);
  mprpc_sim_net_crash(r->net, p->host);
  p->up = false;
  p->crashing = true;
  /* After the connections' on_close events (same instant, queued first). */
  mprpc_sim_at(r->w, 0, MPRPC_SIM_EV_SCEN, (uint64_t)p->idx, prov_crash_finish, p);
}

static void prov_restart(prov_t *p) {
  run_t *r = p->run;
  if (p->up || p->stopping || p->crashing || p->srv)
    return;
  mprpc_sim_net_restart(r->net, p->host);
  int rc = prov_start(p);
  if (rc < 0)
    violate(r, "provider %d could not restart: %s", p->idx, mprpc_strerror(rc));
}

static void prov_restart_ev(void *arg) { prov_restart(arg); }

static void prov_sd_finish(void *arg) {
  prov_t *p = arg;
  run_t *r = p->run;
  pend_cancel_all(p);
  prov_check_stats(p);
  mprpc_server_destroy(p->srv);
  p->srv = NULL;
  mprpc_registry_close(p->reg);
  p->reg = (mprpc_registry_t){0};
  p->up = false;
  p->stopping = false;
  if (p->restart_after && !r->tearing_down)
    mprpc_sim_at(r->w, p->restart_after, MPRPC_SIM_EV_SCEN, (uint64_t)p->idx, prov_restart_ev, p);
}

static void prov_sd_done(void *ud) {
  prov_t *p = ud;
  /* Not from inside the server's own callback: destroy is a control op. */
  mprpc_sim_at(p->run->w, 0, MPRPC_SIM_EV_SCEN, (uint64_t)p->idx, prov_sd_finish, p);
}

static void prov_graceful(prov_t *p, uint64_t restart_after) {
  if (!p->up || p->stopping || p->crashing)
    return;
  mprpc_sim_note(p->run->w, "prov.stop", (uint64_t)p->idx, restart_after);
  p->stopping = true;
  p->restart_after = restart_after;
  int rc = mprpc_server_shutdown(p->srv, prov_sd_done, p);
  if (rc < 0) {
    violate(p->run, "provider %d: shutdown refused: %s", p->idx, mprpc_strerror(rc));
    prov_sd_done(p);
  }
}

static int providers_up(const run_t *r) {
  int n = 0;
  for (int i = 0; i < r->p.providers; i++)
    n += r->provs[i].up && !r->provs[i].stopping;
  return n;
}

/* ---- consumer side --------------------------------------------------------------------------- */

static void check_done(const ProtobufCMessage *msg, rec_t *rec) {
  run_t *r = rec->run;
  uint64_t t = now(r);
  mprpc_controller_t *ctl = mprpc_controller_current();
  int err = ctl ? mprpc_controller_error_code(ctl) : 0;
  const Example__EchoResponse *resp = (const Example__EchoResponse *)msg;
  uint32_t got;
  bool own = resp && parse_token(resp->message, &got) && got == rec->token;
  if (!msg && !err)
    err = MPRPC_EINTERNAL;
  if (!mprpc_check_done(&r->pol, &rec->c, msg != NULL, own, resp ? resp->message : NULL, err, t,
                        r->tearing_down, report, r))
    return;
  r->cons[rec->c.consumer].inflight--;
  mprpc_timeline_call(r->o->timeline, t, msg != NULL, (t - rec->c.start_ns) / MPRPC_NS_PER_US);
  if (msg) {
    r->res->ok++;
  } else {
    r->res->failed++;
    for (size_t i = 0; i < sizeof r->res->fails / sizeof r->res->fails[0]; i++) {
      if (r->res->fails[i].code == err || r->res->fails[i].count == 0) {
        r->res->fails[i].code = err;
        r->res->fails[i].count++;
        break;
      }
    }
  }
  if (r->p.gov == GOV_DEGRADE && rec->c.start_ns >= r->deg_from && rec->c.start_ns < r->deg_to) {
    r->deg_calls++;
    r->deg_ok += msg != NULL;
  }
  /* admitted calls (all but refusals): their latency, a timeout included */
  if (r->p.gov == GOV_OVERLOAD && err != MPRPC_ELIMIT && rec->c.start_ns >= r->ol_from && r->ol_from) {
    r->ol_ok += msg != NULL;
    if (r->ol_n == r->ol_cap) {
      size_t nc = r->ol_cap ? 2 * r->ol_cap : 4096;
      uint64_t *nl = realloc(r->ol_lat, nc * sizeof *nl);
      if (nl) {
        r->ol_lat = nl;
        r->ol_cap = nc;
      }
    }
    if (r->ol_n < r->ol_cap)
      r->ol_lat[r->ol_n++] = t - rec->c.start_ns;
  }
  mprpc_sim_note(r->w, "call.done", rec->token, (uint64_t)(uint32_t)(-err));
}

static void on_done(const ProtobufCMessage *msg, void *arg) {
  rec_t *rec = arg;
  bool picked = rec->token % 97 == 13;
  if ((mprpc__sim_bug & MPRPC_SIM_BUG_LOST_CLOSURE) && picked)
    return;
  check_done(msg, rec);
  if ((mprpc__sim_bug & MPRPC_SIM_BUG_DOUBLE_CLOSURE) && picked)
    check_done(msg, rec);
}

static void issue(cons_t *c) {
  run_t *r = c->run;
  rec_t *rec = rec_new(r);
  if (!rec)
    return;
  rec->c.consumer = (uint16_t)c->idx;
  rec->c.idem = !mprpc_sim_chance(r->w, r->p.nonidem_frac);
  rec->c.start_ns = now(r);
  r->res->calls++;
  char msg[24];
  snprintf(msg, sizeof msg, "c%u", rec->token);
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = msg;
  c->inflight++;
  mprpc_sim_note(r->w, "call", rec->token, (uint64_t)c->idx << 1 | rec->c.idem);
  int rc = mprpc_channel_call(rec->c.idem ? c->ch_idem : c->ch_non, 0, &req.base, NULL, on_done,
                              rec);
  if (rc < 0) {
    c->inflight--;
    rec->c.done = 1;
    rec->c.err = rc;
    r->res->failed++;
  }
}

static void consumer_tick(void *arg) {
  cons_t *c = arg;
  run_t *r = c->run;
  c->tick_ev = 0;
  if (now(r) >= r->p.duration_ns)
    return;
  if (c->inflight < r->p.max_inflight)
    issue(c);
  uint64_t mean = (uint64_t)(1e9 / r->p.rate);
  c->tick_ev = mprpc_sim_at(r->w, mprpc_sim_rand_range(r->w, 1, 2 * mean), MPRPC_SIM_EV_SCEN,
                            (uint64_t)c->idx, consumer_tick, c);
}

/* GOV_DEGRADE: the consumer's local answer echoes the request. */
static int sim_fallback(void *arg, const ProtobufCMessage *request, ProtobufCMessage *response) {
  cons_t *c = arg;
  const Example__EchoRequest *in = (const Example__EchoRequest *)request;
  uint32_t token;
  rec_t *rec = parse_token(in->message, &token) ? rec_get(c->run, token) : NULL;
  if (rec)
    rec->c.local = 1; /* answered here: no provider need have run it */
  ((Example__EchoResponse *)response)->message = in->message;
  return 0;
}

static int make_channel(cons_t *c, bool idem, mprpc_channel_t **out) {
  run_t *r = c->run;
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.loop = mprpc_sim_loop(c->sl);
  o.transport = r->tr;
  o.registry = c->reg;
  o.timeout_ms = r->p.timeout_ms;
  /* A quarter of the deadline, but never below two worst-case round trips
   * (with --lat-max-us large, a shorter attempt could never succeed). */
  int64_t rtt_ms = (int64_t)((r->p.lat_max_ns ? r->p.lat_max_ns : 2 * MS) + 20 * MS) * 2 / (int64_t)MS;
  int64_t attempt = r->p.timeout_ms / 4;
  if (attempt < 2 * rtt_ms)
    attempt = 2 * rtt_ms;
  if (attempt > r->p.timeout_ms)
    attempt = r->p.timeout_ms;
  o.attempt_timeout_ms = r->p.timeout_ms > 0 ? attempt : 0;
  if (mprpc__sim_bug & MPRPC_SIM_BUG_NO_DEADLINE) {
    o.timeout_ms = -1; /* the bug: every deadline check is skipped */
    o.attempt_timeout_ms = 0;
  }
  o.connect_timeout_ms = 300;
  o.max_retry = r->p.max_retry;
  if (idem && (mprpc__sim_bug & MPRPC_SIM_BUG_EXTRA_RETRIES))
    o.max_retry = r->p.max_retry + 3;
  o.lb = (c->idx + (int)(mprpc_sim_seed(r->w) % 4)) % 4;
  o.eject_max_ms = 3000;
  if (idem)
    o.backup_request_ms = r->p.backup_ms;
  o.idempotent_methods = idem || (mprpc__sim_bug & MPRPC_SIM_BUG_RETRY_NONIDEM) ? "Echo" : NULL;
  if (r->p.compress) /* providers answer in kind, so both directions run compressed */
    o.compress_type = c->idx % 4;
  int rc = mprpc_channel_new_in(&example__echo_service__descriptor, &o, out);
  if (rc == 0 && r->p.gov == GOV_DEGRADE)
    rc = mprpc_channel_set_fallback(*out, "Echo", sim_fallback, c);
  return rc;
}

static int cons_start(cons_t *c) {
  run_t *r = c->run;
  int rc = mprpc_sim_zk_handle(r->zk, c->host, mprpc_sim_loop(c->sl), &c->reg);
  if (rc < 0)
    return rc;
  if ((rc = make_channel(c, true, &c->ch_idem)) < 0)
    return rc;
  if ((rc = make_channel(c, false, &c->ch_non)) < 0)
    return rc;
  c->tick_ev = mprpc_sim_at(r->w, r->p.start_ns + mprpc_sim_rand_range(r->w, 0, 100 * MS),
                            MPRPC_SIM_EV_SCEN, (uint64_t)c->idx, consumer_tick, c);
  return 0;
}

/* ---- faults -------------------------------------------------------------------------------- */

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

/* The count includes the doubling reserved for a big buffer close to full
 * (which pauses before that doubling would pass the budget), so the count
 * may pass the budget by one such buffer - no bigger than the budget - and
 * by a read pass (256 KiB here) of small holders; the memory behind it
 * stays within the budget plus those read passes. */
#define BUDGET_SLACK(budget) ((uint64_t)(budget) + (256u << 10))

/* which 0: slowloris clients; 1: trickling and never-reading ones. */
static void hostile_start(run_t *r, int which) {
  if (!r->hostile)
    r->hostile = mprpc_sim_hostile_new(r->w, r->net, r->tr);
  if (!r->hostile)
    abort();
  static const int slow[] = {MPRPC_SIM_HOSTILE_SLOWLORIS, MPRPC_SIM_HOSTILE_SLOWLORIS,
                             MPRPC_SIM_HOSTILE_SLOWLORIS};
  static const int heavy[] = {MPRPC_SIM_HOSTILE_TRICKLE, MPRPC_SIM_HOSTILE_TRICKLE,
                              MPRPC_SIM_HOSTILE_TRICKLE, MPRPC_SIM_HOSTILE_NOREAD,
                              MPRPC_SIM_HOSTILE_NOREAD};
  const int *mix = which ? heavy : slow;
  size_t nmix = which ? 5 : 3;
  for (int i = 0; i < r->p.providers; i++) {
    prov_t *p = &r->provs[i];
    if (!p->up || !p->srv)
      continue;
    for (size_t k = 0; k < nmix; k++)
      if (mprpc_sim_hostile_add(r->hostile, mix[k], mprpc_sim_net_host_addr(r->net, p->host),
                                mprpc_server_port(p->srv)) != 0)
        abort();
  }
}

static void budget_check(run_t *r) {
  for (int i = 0; i < r->p.providers; i++) {
    prov_t *p = &r->provs[i];
    if (!p->srv)
      continue;
    mprpc_server_stats_t st;
    mprpc_server_stats(p->srv, &st);
    if (st.buffered_bytes > st.max_buffered_bytes + BUDGET_SLACK(st.max_buffered_bytes) &&
        !r->over_budget_flagged) {
      r->over_budget_flagged = true;
      violate(r, "provider %d buffers %llu bytes, over its budget %llu + %llu", i,
              (unsigned long long)st.buffered_bytes, (unsigned long long)st.max_buffered_bytes,
              (unsigned long long)BUDGET_SLACK(st.max_buffered_bytes));
    }
  }
}

/* The hostile clients must have been refused: a limit that never fires
 * would pass the other checks too. */
static void hostile_stop(run_t *r) {
  if (!r->hostile)
    return;
  mprpc_sim_hostile_stop(r->hostile);
  uint64_t refused = 0;
  for (int i = 0; i < r->p.providers; i++) {
    if (!r->provs[i].srv)
      continue;
    mprpc_server_stats_t st;
    mprpc_server_stats(r->provs[i].srv, &st);
    refused += st.refused_budget + st.refused_header_timeout + st.refused_slow_body;
    if (st.refused_header_timeout == 0 || st.refused_budget == 0)
      violate(r, "provider %d: hostile clients not refused (budget %llu, header %llu, body %llu)",
              i, (unsigned long long)st.refused_budget,
              (unsigned long long)st.refused_header_timeout,
              (unsigned long long)st.refused_slow_body);
  }
  mprpc_sim_note(r->w, "hostile.refused", refused, mprpc_sim_hostile_closed(r->hostile));
}


enum { GOVF_DISABLE0 = 0, GOVF_WEIGHT1, GOVF_CLEAR, GOVF_RATE, GOVF_CUT_ALL, GOVF_HEAL_ALL,
       GOVF_LIMIT };

static void prov_addr(const prov_t *p, char *buf, size_t n) {
  snprintf(buf, n, "%s:%u", mprpc_sim_net_host_addr(p->run->net, p->host),
           p->srv ? (unsigned)mprpc_server_port(p->srv) : 0u);
}

static void gov_fire(run_t *r, int what) {
  char text[512], a0[64], a1[64];
  prov_addr(&r->provs[0], a0, sizeof a0);
  prov_addr(&r->provs[1 % r->p.providers], a1, sizeof a1);
  switch (what) {
  case GOVF_DISABLE0:
    snprintf(text, sizeof text, "disabled.%s=1\n", a0);
    mprpc_sim_zk_set_config(r->zk, SERVICE, text);
    r->provs[0].disabled_at = now(r);
    r->gov_phase = 1;
    break;
  case GOVF_WEIGHT1: /* provider 1 gets 10x the others' weight */
    snprintf(text, sizeof text, "weight.%s=1000\n", a1);
    mprpc_sim_zk_set_config(r->zk, SERVICE, text);
    r->provs[0].disabled_at = 0;
    r->gov_phase = 2;
    break;
  case GOVF_CLEAR:
    mprpc_sim_zk_set_config(r->zk, SERVICE, NULL);
    r->gov_phase = 3;
    break;
  case GOVF_RATE:
    snprintf(text, sizeof text, "rate_limit.Echo=%u\n", r->p.gov_rate);
    mprpc_sim_zk_set_config(r->zk, SERVICE, text);
    break;
  case GOVF_LIMIT:
    if (!r->p.gov_limit)
      break; /* the unlimited comparison run */
    snprintf(text, sizeof text, "max_concurrency.Echo=%s\n", r->p.gov_limit);
    mprpc_sim_zk_set_config(r->zk, SERVICE, text);
    break;
  case GOVF_CUT_ALL:
  case GOVF_HEAL_ALL:
    for (int i = 0; i < r->p.consumers; i++)
      for (int j = 0; j < r->p.providers; j++)
        if (what == GOVF_CUT_ALL)
          mprpc_sim_net_partition(r->net, r->cons[i].host, r->provs[j].host, false);
        else
          mprpc_sim_net_heal(r->net, r->cons[i].host, r->provs[j].host, false);
    break;
  }
}

static void fault_fire(void *arg);

static fault_t *fault_at(run_t *r, uint64_t t, int kind, int a, int b, uint64_t d) {
  if (t < now(r))
    t = now(r);
  fault_t *f = calloc(1, sizeof *f);
  if (!f)
    abort();
  *f = (fault_t){.next = r->faults, .run = r, .kind = kind, .a = a, .b = b, .d = d};
  r->faults = f;
  mprpc_sim_at(r->w, t - now(r), MPRPC_SIM_EV_SCEN, (uint64_t)kind, fault_fire, f);
  return f;
}

/* A fault span on the picture (mprpc-sim --svg); draws nothing random. */
static void span(run_t *r, uint64_t d, int lane, const char *label) {
  if (r->o->timeline)
    mprpc_timeline_fault(r->o->timeline, now(r), now(r) + d, lane, label);
}

static void plan_fault(run_t *r, const mprpc_plan_fault_t *pf);
static void plan_heal(run_t *r, const mprpc_plan_fault_t *pf);

static prov_t *random_up_provider(run_t *r, int keep) {
  int up = providers_up(r);
  if (up <= keep)
    return NULL;
  int pick = (int)mprpc_sim_rand_range(r->w, 0, (uint64_t)up - 1);
  for (int i = 0; i < r->p.providers; i++)
    if (r->provs[i].up && !r->provs[i].stopping && pick-- == 0)
      return &r->provs[i];
  return NULL;
}

static void fault_fire(void *arg) {
  fault_t *f = arg;
  run_t *r = f->run;
  if (r->tearing_down)
    return;
  uint64_t t = now(r);
  bool in_window = t < r->p.quiet_after_ns;
  switch (f->kind) {
  case F_CRASH:
  case F_GRACEFUL: {
    if (!in_window)
      break;
    prov_t *p = f->a >= 0 ? &r->provs[f->a] : random_up_provider(r, 1);
    if (!p)
      break;
    span(r, f->d, p->idx, f->kind == F_CRASH ? "crash" : "graceful");
    if (f->kind == F_CRASH) {
      prov_crash(p);
      if (f->d && t + f->d < r->p.quiet_after_ns)
        mprpc_sim_at(r->w, f->d, MPRPC_SIM_EV_SCEN, (uint64_t)p->idx, prov_restart_ev, p);
    } else {
      prov_graceful(p, f->d);
    }
    break;
  }
  case F_PARTITION: {
    if (!in_window)
      break;
    /* A random set of consumers against a random set of providers. */
    int pc = r->p.consumers, pp = r->p.providers;
    for (int i = 0; i < pc; i++) {
      if (!mprpc_sim_chance(r->w, 0.5))
        continue;
      for (int j = 0; j < pp; j++) {
        if (!mprpc_sim_chance(r->w, 0.6))
          continue;
        int ch = r->cons[i].host, ph = r->provs[j].host;
        if (f->b == 0)
          mprpc_sim_net_partition(r->net, ch, ph, false);
        else if (f->b == 1)
          mprpc_sim_net_partition(r->net, ch, ph, true);
        else
          mprpc_sim_net_partition(r->net, ph, ch, true);
      }
    }
    fault_at(r, t + f->d, F_HEAL_NET, 0, 0, 0);
    span(r, f->d, -1, f->b == 0 ? "partition" : "one-way partition");
    break;
  }
  case F_HEAL_NET:
    mprpc_sim_net_heal_all(r->net);
    break;
  case F_STALL: {
    if (!in_window)
      break;
    int ch = r->cons[mprpc_sim_rand_range(r->w, 0, (uint64_t)r->p.consumers - 1)].host;
    int ph = r->provs[mprpc_sim_rand_range(r->w, 0, (uint64_t)r->p.providers - 1)].host;
    if (mprpc_sim_chance(r->w, 0.5))
      mprpc_sim_net_stall(r->net, ch, ph, f->d);
    else
      mprpc_sim_net_stall(r->net, ph, ch, f->d);
    break;
  }
  case F_RESET:
    if (in_window)
      mprpc_sim_net_reset_random(r->net, -1);
    break;
  case F_ZK_DOWN:
    if (!in_window)
      break;
    mprpc_sim_zk_set_down(r->zk, true);
    fault_at(r, t + f->d, F_ZK_UP, 0, 0, 0);
    span(r, f->d, -1, "zookeeper down");
    break;
  case F_ZK_UP:
    mprpc_sim_zk_set_down(r->zk, false);
    break;
  case F_ZK_CUT: {
    if (!in_window)
      break;
    int nh = r->p.consumers + r->p.providers;
    int h = f->a >= 0 ? f->a : (int)mprpc_sim_rand_range(r->w, 0, (uint64_t)nh - 1);
    mprpc_sim_zk_partition(r->zk, h, true);
    fault_at(r, t + f->d, F_ZK_HEAL, h, 0, 0);
    span(r, f->d, -1, "zk cut");
    break;
  }
  case F_ZK_HEAL:
    mprpc_sim_zk_partition(r->zk, f->a, false);
    break;
  case F_ZK_EXPIRE_ALL:
    if (in_window) {
      mprpc_sim_zk_expire_all(r->zk);
      span(r, 50 * MS, -1, "expire all");
    }
    break;
  case F_PLAN:
    if (in_window)
      plan_fault(r, f->pf);
    break;
  case F_PLAN_END:
    plan_heal(r, f->pf);
    break;
  case F_ZK_UP_PLAN:
    mprpc_sim_zk_set_down(r->zk, false);
    break;
  case F_CUT_CONSUMERS:
    if (!in_window)
      break;
    for (int i = 0; i < f->a && i < r->p.consumers; i++)
      for (int j = 0; j < r->p.providers; j++)
        mprpc_sim_net_partition(r->net, r->cons[i].host, r->provs[j].host, false);
    fault_at(r, t + f->d, F_HEAL_NET, 0, 0, 0);
    span(r, f->d, -1, "consumers cut");
    break;
  case F_GOV:
    gov_fire(r, f->a);
    break;
  case F_HOSTILE_START:
    hostile_start(r, f->a);
    break;
  case F_HOSTILE_STOP:
    hostile_stop(r);
    break;
  case F_BUDGET_CHECK:
    budget_check(r);
    if (t < r->p.duration_ns)
      fault_at(r, t + 50 * MS, F_BUDGET_CHECK, 0, 0, 0);
    break;
  case F_QUIET:
    memset(r->cut, 0, sizeof r->cut);
    memset(r->zkcut, 0, sizeof r->zkcut);
    mprpc_sim_net_heal_all(r->net);
    mprpc_sim_zk_heal_all(r->zk);
    mprpc_sim_zk_set_down(r->zk, false);
    for (int i = 0; i < r->p.providers; i++) {
      prov_t *p = &r->provs[i];
      if (!p->up && !p->stopping && !p->crashing)
        prov_restart(p);
      else if (p->stopping)
        p->restart_after = 1; /* comes back right after its stop */
      else if (p->crashing)
        mprpc_sim_at(r->w, 1, MPRPC_SIM_EV_SCEN, (uint64_t)p->idx, prov_restart_ev, p);
    }
    break;
  }
}

/* Schedules `kind` at random times in [from, to) with mean gap `gap`. */
static void sprinkle(run_t *r, int kind, uint64_t from, uint64_t to, uint64_t gap, int b,
                     uint64_t dmin, uint64_t dmax) {
  double scale = r->p.fault_scale > 0 ? r->p.fault_scale : 1.0;
  uint64_t g = (uint64_t)((double)gap / scale);
  if (g < 10 * MS)
    g = 10 * MS;
  for (uint64_t t = from + mprpc_sim_rand_range(r->w, 0, g); t < to;
       t += mprpc_sim_rand_range(r->w, g / 2, g + g / 2))
    fault_at(r, t, kind, -1, b, mprpc_sim_rand_range(r->w, dmin, dmax));
}

/* ---- fault plans (sim/plan.h): the chaos harness's scenarios on virtual hosts ---------------- */

/* A ZooKeeper leader election, as measured by make chaos on the real
 * ensemble (3 nodes, tickTime 500 ms): every client of the ensemble went
 * DISCONNECTED -> HEALTHY in 0.43-0.47 s. */
#define PLAN_ELECTION_NS (500 * MS)

static void plan_cut(run_t *r, int from, int to, int delta) {
  if (from >= PLAN_HOSTS || to >= PLAN_HOSTS)
    return;
  uint8_t *c = &r->cut[from][to];
  if (delta > 0 && (*c)++ == 0)
    mprpc_sim_net_partition(r->net, from, to, true);
  else if (delta < 0 && *c && --(*c) == 0)
    mprpc_sim_net_heal(r->net, from, to, true);
}

static void plan_zkcut(run_t *r, int host, int delta) {
  if (host >= PLAN_HOSTS)
    return;
  uint8_t *c = &r->zkcut[host];
  if (delta > 0 && (*c)++ == 0)
    mprpc_sim_zk_partition(r->zk, host, true);
  else if (delta < 0 && *c && --(*c) == 0)
    mprpc_sim_zk_partition(r->zk, host, false);
}

/* Applies (delta 1) or lifts (delta -1) a plan fault that acts on links. */
static void plan_links(run_t *r, const mprpc_plan_fault_t *pf, int delta) {
  for (int c = 0; c < r->p.consumers; c++)
    for (int p = 0; p < r->p.providers; p++) {
      if (!(pf->cons_mask & (1u << c)) || !(pf->prov_mask & (1u << p)))
        continue;
      int ch = r->cons[c].host, ph = r->provs[p].host;
      if (pf->kind == MPRPC_PLAN_PARTITION) {
        plan_cut(r, ch, ph, delta);
        plan_cut(r, ph, ch, delta);
      } else if (pf->kind == MPRPC_PLAN_ONEWAY) {
        if (pf->dir == 0)
          plan_cut(r, ch, ph, delta);
        else
          plan_cut(r, ph, ch, delta);
      } else if (pf->kind == MPRPC_PLAN_NETEM) {
        uint64_t dl = delta > 0 ? pf->delay_ms * MS : 0, jt = delta > 0 ? pf->jitter_ms * MS : 0;
        double loss = delta > 0 ? pf->loss_pm / 1000.0 : 0;
        mprpc_sim_net_impair(r->net, ch, ph, dl, jt, loss);
        mprpc_sim_net_impair(r->net, ph, ch, dl, jt, loss);
      }
    }
  if (pf->kind == MPRPC_PLAN_ZK_CUT) {
    for (int p = 0; p < r->p.providers; p++)
      if (pf->prov_mask & (1u << p))
        plan_zkcut(r, r->provs[p].host, delta);
    for (int c = 0; c < r->p.consumers; c++)
      if (pf->cons_mask & (1u << c))
        plan_zkcut(r, r->cons[c].host, delta);
  }
}

static prov_t *plan_provider(run_t *r, int a) {
  if (a >= 0)
    return a < r->p.providers && r->provs[a].up && !r->provs[a].stopping ? &r->provs[a] : NULL;
  return random_up_provider(r, 1);
}

static void plan_fault(run_t *r, const mprpc_plan_fault_t *pf) {
  uint64_t t = now(r), d = pf->dur_ms * MS;
  char label[96];
  mprpc_plan_describe(pf, label, sizeof label);
  switch (pf->kind) {
  case MPRPC_PLAN_PARTITION:
  case MPRPC_PLAN_ONEWAY:
  case MPRPC_PLAN_NETEM:
  case MPRPC_PLAN_ZK_CUT:
    plan_links(r, pf, 1);
    fault_at(r, t + d, F_PLAN_END, 0, 0, 0)->pf = pf;
    span(r, d, -1, label);
    break;
  case MPRPC_PLAN_CRASH: {
    prov_t *p = plan_provider(r, pf->a);
    if (!p)
      break;
    span(r, d, p->idx, "kill -9");
    prov_crash(p);
    if (t + d < r->p.quiet_after_ns)
      mprpc_sim_at(r->w, d, MPRPC_SIM_EV_SCEN, (uint64_t)p->idx, prov_restart_ev, p);
    break;
  }
  case MPRPC_PLAN_GRACEFUL: {
    prov_t *p = plan_provider(r, pf->a);
    if (!p)
      break;
    span(r, d, p->idx, "SIGTERM");
    prov_graceful(p, d);
    break;
  }
  case MPRPC_PLAN_STOP: {
    /* A stopped process: its connections deliver nothing either way until
     * SIGCONT, and it does not heartbeat (a stop past the session timeout
     * expires its session). */
    prov_t *p = plan_provider(r, pf->a);
    if (!p)
      break;
    span(r, d, p->idx, "SIGSTOP");
    for (int c = 0; c < r->p.consumers; c++) {
      mprpc_sim_net_stall(r->net, r->cons[c].host, p->host, d);
      mprpc_sim_net_stall(r->net, p->host, r->cons[c].host, d);
    }
    mprpc_sim_zk_partition(r->zk, p->host, true);
    fault_t *e = fault_at(r, t + d, F_ZK_HEAL, p->host, 0, 0);
    (void)e;
    break;
  }
  case MPRPC_PLAN_ZK_KILL:
    /* The ensemble survives (2 of 3); every client waits out the election. */
    span(r, PLAN_ELECTION_NS, -1, label);
    mprpc_sim_zk_set_down(r->zk, true);
    fault_at(r, t + PLAN_ELECTION_NS, F_ZK_UP_PLAN, 0, 0, 0);
    break;
  case MPRPC_PLAN_CRASH_CONSUMER:
  default:
    /* Not modelled: the simulator's consumers do not crash. */
    mprpc_sim_tracef(r->w, "plan fault %s not modelled", label);
    break;
  }
}

static void plan_heal(run_t *r, const mprpc_plan_fault_t *pf) { plan_links(r, pf, -1); }

static void sc_plan(run_t *r) {
  const mprpc_plan_t *pl = r->o->plan;
  r->p.consumers = pl->consumers;
  r->p.providers = pl->providers;
  r->p.rate = pl->rate;
  r->p.nonidem_frac = pl->nonidem_frac;
  r->p.max_retry = pl->max_retry;
  r->p.timeout_ms = pl->timeout_ms;
  r->p.session_timeout_ns = pl->session_timeout_ms * MS;
  r->p.start_ns = pl->start_ms * MS;
  r->p.duration_ns = pl->duration_ms * MS;
  r->p.quiet_after_ns = pl->quiet_ms * MS;
  r->p.live_from_ns = pl->live_from_ms * MS;
  for (size_t k = 0; k < pl->nfaults; k++)
    fault_at(r, pl->faults[k].at_ms * MS, F_PLAN, 0, 0, 0)->pf = &pl->faults[k];
}

static const mprpc_sim_scenario_t plan_scenario = {"plan", "a fault plan (sim/plan.h)", sc_plan};

int mprpc_sim_run_plan(const mprpc_plan_t *plan, const mprpc_sim_opts_t *o,
                       mprpc_sim_result_t *r) {
  mprpc_sim_opts_t po = *o;
  po.plan = plan;
  return mprpc_sim_run(&plan_scenario, &po, r);
}

/* ---- scenarios ------------------------------------------------------------------------------ */

static void base_params(params_t *p) {
  *p = (params_t){
      .consumers = 10,
      .providers = 3,
      .duration_ns = 45 * SEC,
      .start_ns = 1 * SEC,
      .rate = 20,
      .max_inflight = 16,
      .timeout_ms = 1000,
      .max_retry = 2,
      .nonidem_frac = 0.3,
      .session_timeout_ns = 4 * SEC,
      .quiet_after_ns = 30 * SEC,
  };
}

static void sc_steady(run_t *r) {
  r->p.no_failures = true;
  r->p.duration_ns = 60 * SEC;
  r->p.quiet_after_ns = 0;
}

static void sc_crash_restart(run_t *r) {
  sprinkle(r, F_CRASH, 3 * SEC, r->p.quiet_after_ns, 4 * SEC, 0, 1 * SEC, 5 * SEC);
}

static void sc_partition(run_t *r) {
  sprinkle(r, F_PARTITION, 3 * SEC, r->p.quiet_after_ns, 6 * SEC, 0, 1 * SEC, 6 * SEC);
}

static void sc_oneway(run_t *r) {
  sprinkle(r, F_PARTITION, 3 * SEC, r->p.quiet_after_ns, 6 * SEC, 1, 1 * SEC, 6 * SEC);
  sprinkle(r, F_PARTITION, 4 * SEC, r->p.quiet_after_ns, 6 * SEC, 2, 1 * SEC, 6 * SEC);
}

static void sc_registry_outage(run_t *r) {
  fault_at(r, 5 * SEC, F_ZK_DOWN, 0, 0, 8 * SEC);
  fault_at(r, 8 * SEC, F_CRASH, -1, 0, 10 * SEC);
  fault_at(r, 20 * SEC, F_ZK_DOWN, 0, 0, 3 * SEC);
  sprinkle(r, F_ZK_CUT, 3 * SEC, r->p.quiet_after_ns, 3 * SEC, 0, 500 * MS, 8 * SEC);
}

static void sc_expiry_storm(run_t *r) {
  sprinkle(r, F_ZK_EXPIRE_ALL, 3 * SEC, r->p.quiet_after_ns, 5 * SEC, 0, 0, 0);
  sprinkle(r, F_ZK_CUT, 3 * SEC, r->p.quiet_after_ns, 1 * SEC, 0, 3 * SEC, 7 * SEC);
}

static void sc_slow(run_t *r) {
  r->p.backup_ms = 100; /* hedge the idempotent calls */
  r->p.work_max_ns = 1500 * MS;
  r->p.slow_frac = 0.3;
  r->p.slow_until_ns = r->p.quiet_after_ns;
}

/* Handlers that block their thread (sleep, disk, a synchronous call) on a
 * virtual pool of 4 workers per provider: the loops stay free, nothing
 * times out, and the watchdog never fires. */
static void sc_blocking_pool(run_t *r) {
  r->p.no_failures = true;
  r->p.quiet_after_ns = 0;
  r->p.handler_threads = 4;
  r->p.block_max_ns = 120 * MS; /* past the watchdog's 100 ms, within an attempt (250 ms) */
  r->p.block_frac = 0.15;
}

/* The same handlers on the loop: every other connection of that loop waits
 * (calls may time out), and the watchdog counts exactly the holds past
 * slow_handler_warn_ms. Blocking stops at quiet_after; then liveness. */
static void sc_blocking_loop(run_t *r) {
  r->p.block_max_ns = 400 * MS;
  r->p.block_frac = 0.05;
}

static void sc_one_byte(run_t *r) {
  r->p.no_failures = true;
  r->p.chunk = 1;
  r->p.chunk_fixed = true;
  r->p.compress = true; /* compressed frames split byte by byte too */
  r->p.consumers = 5;
  r->p.duration_ns = 20 * SEC;
  r->p.quiet_after_ns = 0;
}

static void sc_rolling(run_t *r) {
  r->p.live_from_ns = 1; /* no idempotent call may fail at all */
  for (int k = 0; k < 4; k++)
    fault_at(r, (uint64_t)(4 + 6 * k) * SEC, F_GRACEFUL, k % r->p.providers, 0, 1 * SEC);
}

/* A long partition with TCP's retransmission backoff: a connection that
 * carried requests into it retransmits at 0.2, 0.6, 1.4, ... 25.4, 51 s,
 * so after the heal (30 s in) it stays silent for another ~20 s unless the
 * channel gives up on it (reset_after_timeouts) and dials a new one, whose
 * SYN goes out at once. Calls of the cut consumers must succeed again
 * 5 s after the heal (reconnect backoff and ejection are capped at 2 s and
 * 3 s). Found by make chaos: partition seed 2, ~3 s of timeouts after the
 * heal (docs/simulator.md). */
static void sc_stuck_conn(run_t *r) {
  r->p.consumers = 4;
  r->p.rto_backoff = true;
  r->p.quiet_after_ns = 33 * SEC;
  r->p.live_from_ns = r->p.quiet_after_ns + 5 * SEC;
  r->p.duration_ns = 48 * SEC;
  fault_at(r, 3 * SEC, F_CUT_CONSUMERS, 2, 0, 30 * SEC);
}

static void sc_churn(run_t *r) {
  r->p.consumers = 50;
  r->p.providers = 10;
  r->p.rate = 4;
  r->p.duration_ns = 40 * SEC;
  r->p.quiet_after_ns = 25 * SEC;
  sprinkle(r, F_CRASH, 2 * SEC, r->p.quiet_after_ns, 2 * SEC, 0, 500 * MS, 4 * SEC);
  sprinkle(r, F_GRACEFUL, 3 * SEC, r->p.quiet_after_ns, 3 * SEC, 0, 500 * MS, 3 * SEC);
  sprinkle(r, F_RESET, 2 * SEC, r->p.quiet_after_ns, 500 * MS, 0, 0, 0);
  sprinkle(r, F_STALL, 2 * SEC, r->p.quiet_after_ns, 2 * SEC, 0, 100 * MS, 2 * SEC);
}

static void sc_swarm(run_t *r) {
  /* The seed picks which faults are on and how often. */
  mprpc_sim_world_t *w = r->w;
  r->p.consumers = (int)mprpc_sim_rand_range(w, 2, 20);
  r->p.providers = (int)mprpc_sim_rand_range(w, 2, 6);
  r->p.rate = (double)mprpc_sim_rand_range(w, 5, 40);
  r->p.nonidem_frac = (double)mprpc_sim_rand_range(w, 0, 10) / 10.0;
  r->p.max_retry = (int)mprpc_sim_rand_range(w, 0, 4);
  if (mprpc_sim_chance(w, 0.3))
    r->p.backup_ms = (int64_t)mprpc_sim_rand_range(w, 20, 300);
  if (mprpc_sim_chance(w, 0.2))
    r->p.server_max_conc = (uint32_t)mprpc_sim_rand_range(w, 2, 32);
  if (mprpc_sim_chance(w, 0.3))
    r->p.chunk = (size_t)mprpc_sim_rand_range(w, 1, 64);
  if (mprpc_sim_chance(w, 0.3)) {
    r->p.work_max_ns = mprpc_sim_rand_range(w, 10, 2000) * MS;
    r->p.slow_frac = (double)mprpc_sim_rand_range(w, 1, 5) / 10.0;
    r->p.slow_until_ns = r->p.quiet_after_ns;
  }
  uint64_t q = r->p.quiet_after_ns;
  if (mprpc_sim_chance(w, 0.5))
    sprinkle(r, F_CRASH, 2 * SEC, q, mprpc_sim_rand_range(w, 1, 10) * SEC, 0, 200 * MS, 6 * SEC);
  if (mprpc_sim_chance(w, 0.4))
    sprinkle(r, F_GRACEFUL, 2 * SEC, q, mprpc_sim_rand_range(w, 2, 10) * SEC, 0, 200 * MS,
             3 * SEC);
  if (mprpc_sim_chance(w, 0.5))
    sprinkle(r, F_PARTITION, 2 * SEC, q, mprpc_sim_rand_range(w, 2, 12) * SEC,
             (int)mprpc_sim_rand_range(w, 0, 2), 200 * MS, 8 * SEC);
  if (mprpc_sim_chance(w, 0.5))
    sprinkle(r, F_RESET, 2 * SEC, q, mprpc_sim_rand_range(w, 100, 3000) * MS, 0, 0, 0);
  if (mprpc_sim_chance(w, 0.5))
    sprinkle(r, F_STALL, 2 * SEC, q, mprpc_sim_rand_range(w, 1, 5) * SEC, 0, 50 * MS, 3 * SEC);
  if (mprpc_sim_chance(w, 0.3))
    sprinkle(r, F_ZK_DOWN, 2 * SEC, q, mprpc_sim_rand_range(w, 8, 20) * SEC, 0, 1 * SEC, 9 * SEC);
  if (mprpc_sim_chance(w, 0.3))
    sprinkle(r, F_ZK_CUT, 2 * SEC, q, mprpc_sim_rand_range(w, 1, 5) * SEC, 0, 1 * SEC, 8 * SEC);
  if (mprpc_sim_chance(w, 0.2))
    sprinkle(r, F_ZK_EXPIRE_ALL, 2 * SEC, q, mprpc_sim_rand_range(w, 3, 10) * SEC, 0, 0, 0);
}

/* ---- governance: the config centre mid-run (issue 22) ---- */

static void gov_base(run_t *r, int kind) {
  r->p.gov = kind;
  r->p.consumers = 6;
  r->p.duration_ns = 24 * SEC;
  r->p.quiet_after_ns = 0;
}

static void sc_gov_shift(run_t *r) {
  gov_base(r, GOV_SHIFT);
  r->p.no_failures = true; /* one provider of three is drained at a time */
  fault_at(r, 5 * SEC, F_GOV, GOVF_DISABLE0, 0, 0);
  fault_at(r, 11 * SEC, F_GOV, GOVF_WEIGHT1, 0, 0);
  fault_at(r, 17 * SEC, F_GOV, GOVF_CLEAR, 0, 0);
}

static void sc_gov_rate(run_t *r) {
  gov_base(r, GOV_RATE);
  r->p.gov_rate = 25; /* 6 x 20/s over 3 providers offer 40/s each */
  r->p.live_from_ns = UINT64_MAX; /* refused calls (ELIMIT) may fail */
  fault_at(r, 500 * MS, F_GOV, GOVF_RATE, 0, 0);
}

static void sc_gov_degrade(run_t *r) {
  gov_base(r, GOV_DEGRADE);
  r->p.live_from_ns = UINT64_MAX;
  r->deg_from = 10 * SEC; /* cut at 6 s: the breakers eject within 4 s */
  r->deg_to = 14 * SEC;
  fault_at(r, 6 * SEC, F_GOV, GOVF_CUT_ALL, 0, 0);
  fault_at(r, 14 * SEC, F_GOV, GOVF_HEAL_ALL, 0, 0);
}

static void sc_gov_overload(run_t *r) {
  gov_base(r, GOV_OVERLOAD);
  r->p.providers = 2;           /* capacity 2 x 200 calls/s */
  r->p.consumers = 8;
  r->p.rate = 100;              /* offered: 800 calls/s, twice the capacity */
  r->p.max_inflight = 400;
  r->p.max_retry = 0;
  r->p.nonidem_frac = 1.0;
  r->p.duration_ns = 30 * SEC;
  r->p.live_from_ns = UINT64_MAX;
  r->p.gov_limit = "auto";
  fault_at(r, 500 * MS, F_GOV, GOVF_LIMIT, 0, 0);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void check_gov(run_t *r) {
  if (r->p.gov == GOV_SHIFT) {
    uint64_t tot = 0;
    for (int i = 0; i < r->p.providers; i++)
      tot += r->provs[i].phase_execs[2];
    /* weight 1000 against 100 + 100 (83 %) under the weighted balancers;
     * round robin and least loaded ignore weights (33 %): about half */
    if (tot && r->provs[1].phase_execs[2] * 100 < tot * 45)
      violate(r, "weight.%s=1000 gave provider 1 only %llu of %llu calls", "P1",
              (unsigned long long)r->provs[1].phase_execs[2], (unsigned long long)tot);
    if (!r->provs[0].phase_execs[3])
      violate(r, "provider 0 got no calls once enabled again");
  }
  if (r->p.gov == GOV_DEGRADE) {
    uint64_t fb = 0;
    for (int i = 0; i < r->p.consumers; i++) {
      mprpc_channel_stats_t st;
      mprpc_channel_stats(r->cons[i].ch_idem, &st);
      fb += st.fallbacks;
      mprpc_channel_stats(r->cons[i].ch_non, &st);
      fb += st.fallbacks;
    }
    if (!fb || r->deg_ok * 100 < r->deg_calls * 95)
      violate(r, "degradation: %llu of %llu calls answered while every provider was cut off "
              "(%llu fallbacks)", (unsigned long long)r->deg_ok,
              (unsigned long long)r->deg_calls, (unsigned long long)fb);
  }
  if (r->p.gov == GOV_OVERLOAD && r->ol_n) {
    double secs = (double)(r->p.duration_ns - r->ol_from) / 1e9;
    double goodput = (double)r->ol_ok / secs, cap = r->p.providers * (double)SEC / GOV_SERVICE_NS;
    qsort(r->ol_lat, r->ol_n, sizeof *r->ol_lat, cmp_u64);
    uint64_t p99 = r->ol_lat[(size_t)((double)(r->ol_n - 1) * 0.99)];
    mprpc_sim_tracef(r->w, "overload: goodput %.0f/s of %.0f/s, p99 %.1f ms", goodput, cap,
                     (double)p99 / 1e6);
    r->res->gov_goodput = goodput;
    r->res->gov_capacity = cap;
    r->res->gov_p99_ns = p99;
    /* the issue's targets: 90 % of the peak, p99 within 3x of unloaded
     * (this scenario at 2 calls/s per consumer: p99 24.4 ms, the network's
     * 1 % tail of up to 20 ms per leg included; 25 ms below) */
    if (r->p.gov_limit && goodput < 0.9 * cap)
      violate(r, "overload: goodput %.0f/s is below 90%% of the capacity %.0f/s", goodput, cap);
    if (r->p.gov_limit && p99 > 3 * 25 * MS)
      violate(r, "overload: p99 of admitted calls %.1f ms", (double)p99 / 1e6);
  }
  free(r->ol_lat);
  r->ol_lat = NULL;
}

/* Hostile clients (trickle, never read, slowloris) against every provider
 * beside the normal consumers, whose calls must all succeed, while the
 * providers' buffered bytes stay within their (small) budget. */
static void sc_hostile(run_t *r) {
  r->p.no_failures = true;
  r->p.quiet_after_ns = 0;
  r->p.consumers = 5;
  r->p.providers = 2;
  r->p.duration_ns = 20 * SEC;
  r->p.server_budget = 1u << 20;
  r->p.hostile = true;
  fault_at(r, 2 * SEC, F_HOSTILE_START, 0, 0, 0);  /* slowloris first ... */
  fault_at(r, 12 * SEC, F_HOSTILE_START, 1, 0, 0); /* ... then the budget's turn */
  fault_at(r, 2 * SEC, F_BUDGET_CHECK, 0, 0, 0);
  fault_at(r, r->p.duration_ns - 1, F_HOSTILE_STOP, 0, 0, 0);
}

static const mprpc_sim_scenario_t scenarios[] = {
    {"steady", "steady load, 10 consumers x 3 providers for 60 s, no faults: every call succeeds",
     sc_steady},
    {"crash_restart", "providers crash (state lost, registry session lingers) and restart on a new port",
     sc_crash_restart},
    {"partition", "symmetric partitions between consumer and provider sets, healed later",
     sc_partition},
    {"oneway", "one-way partitions (requests or responses black-holed), healed later", sc_oneway},
    {"registry_outage", "ZooKeeper down (longer than the session timeout) and host-registry cuts; a provider moves meanwhile",
     sc_registry_outage},
    {"expiry_storm", "every session expires repeatedly; providers re-register, consumers re-learn",
     sc_expiry_storm},
    {"slow_provider", "handlers take virtual work time up to 1.5 s against a 1 s deadline",
     sc_slow},
    {"blocking_pool", "handlers block up to 120 ms on a 4-thread handler pool: nothing fails, no loop is held",
     sc_blocking_pool},
    {"blocking_loop", "handlers block up to 400 ms on the loop: the watchdog counts each hold past 100 ms",
     sc_blocking_loop},
    {"one_byte", "every connection delivers 1-byte chunks; consumers use each compress type",
     sc_one_byte},
    {"rolling_restart", "providers stop gracefully one after another and come back: no idempotent call fails",
     sc_rolling},
    {"churn", "50 consumers x 10 providers under crashes, graceful restarts, resets and stalls",
     sc_churn},
    {"stuck_conn", "two consumers cut from every provider for 30 s under TCP's retransmission backoff: calls succeed 5 s after the heal",
     sc_stuck_conn},
    {"swarm", "the seed picks the topology, which faults are on and their rates", sc_swarm},
    {"trace_hop", "consumers -> A -> B over a jittery, chunking network: every B span's parent is an "
                  "A span of the same trace (handlers, closures, saved contexts, /rpcz rings)",
     NULL, mprpc__sim_trace_hop_run},
    {"gov_shift", "the config centre disables a provider, then reweights: no new call reaches a "
     "disabled provider 1 s after the change; weights shift traffic", sc_gov_shift},
    {"gov_rate", "rate_limit.Echo set mid-run: no provider runs more than its rate + burst per second",
     sc_gov_rate},
    {"gov_degrade", "every provider cut off from every consumer: the fallbacks answer", sc_gov_degrade},
    {"gov_local", "no config centre: providers' local rate_limit.Echo holds, refusals counted by reason", NULL, mprpc__sim_gov_local_run},
    {"gov_overload", "twice the providers' capacity with max_concurrency.Echo=auto: goodput >= 90 %, "
     "bounded p99", sc_gov_overload},
    {"hostile", "trickling, never-reading and slowloris clients beside normal consumers: every "
                "normal call succeeds, buffered bytes stay within the budget",
     sc_hostile},
};

#define NSCEN (sizeof scenarios / sizeof scenarios[0])

size_t mprpc_sim_scenario_count(void) { return NSCEN; }
const mprpc_sim_scenario_t *mprpc_sim_scenario_at(size_t i) {
  return i < NSCEN ? &scenarios[i] : NULL;
}
const mprpc_sim_scenario_t *mprpc_sim_scenario_find(const char *name) {
  for (size_t i = 0; i < NSCEN; i++)
    if (strcmp(scenarios[i].name, name) == 0)
      return &scenarios[i];
  return NULL;
}
const char *mprpc_sim_scenario_name(const mprpc_sim_scenario_t *sc) { return sc->name; }
const char *mprpc_sim_scenario_desc(const mprpc_sim_scenario_t *sc) { return sc->desc; }

/* ---- a run ------------------------------------------------------------------------------------ */

static void apply_knobs(run_t *r) {
  const mprpc_sim_opts_t *o = r->o;
  if (o->chunk)
    r->p.chunk = o->chunk, r->p.chunk_fixed = o->chunk_fixed;
  if (o->lat_max_us)
    r->p.lat_max_ns = o->lat_max_us * MPRPC_NS_PER_US;
  if (o->consumers > 0)
    r->p.consumers = o->consumers;
  if (o->providers > 0)
    r->p.providers = o->providers;
  if (o->rate > 0)
    r->p.rate = o->rate;
  if (o->timeout_ms > 0)
    r->p.timeout_ms = o->timeout_ms;
  if (o->max_retry >= 0)
    r->p.max_retry = o->max_retry;
  if (o->fault_scale > 0)
    r->p.fault_scale = o->fault_scale;
  if (o->gov_limit)
    r->p.gov_limit = strcmp(o->gov_limit, "none") == 0 ? NULL : o->gov_limit;
  if (o->duration_s) {
    /* Stretch the timeline: faults until 2/3, quiet after. */
    uint64_t d = o->duration_s * SEC;
    if (r->p.quiet_after_ns)
      r->p.quiet_after_ns = d * 2 / 3;
    r->p.duration_ns = d;
  }
  if (r->p.quiet_after_ns && r->p.quiet_after_ns >= r->p.duration_ns)
    r->p.quiet_after_ns = r->p.duration_ns / 2;
  if (!r->p.live_from_ns)
    r->p.live_from_ns = r->p.quiet_after_ns ? r->p.quiet_after_ns + LIVE_GRACE_NS : 1;
  if (r->p.slow_until_ns > r->p.quiet_after_ns)
    r->p.slow_until_ns = r->p.quiet_after_ns;
  if (r->p.gov == GOV_OVERLOAD) /* measured in the second half: the limiter has learnt */
    r->ol_from = r->p.duration_ns / 2;
}

static void run_for(run_t *r, uint64_t dur) { mprpc_sim_run_until(r->w, now(r) + dur); }

static void check_convergence(run_t *r) {
  int up = providers_up(r);
  size_t reg = mprpc_sim_zk_count(r->zk, SERVICE);
  mprpc_check_registry(reg, up, report, r);
  for (int i = 0; i < r->p.consumers; i++) {
    cons_t *c = &r->cons[i];
    mprpc_channel_t *chs[2] = {c->ch_idem, c->ch_non};
    for (int k = 0; k < 2; k++) {
      mprpc_channel_stats_t st;
      if (!chs[k])
        continue;
      mprpc_channel_stats(chs[k], &st);
      mprpc_check_unknown_ids(i, st.unknown_ids, report, r);
    }
  }
  for (int i = 0; i < r->p.consumers; i++) {
    cons_t *c = &r->cons[i];
    size_t n1 = c->ch_idem ? mprpc_channel_endpoint_count(c->ch_idem) : reg;
    size_t n2 = c->ch_non ? mprpc_channel_endpoint_count(c->ch_non) : reg;
    if (!mprpc_check_consumer_endpoints(i, n1, n2, up, report, r))
      break;
  }
}

static mprpc_check_call_t *call_at(void *ud, size_t i) { return &rec_get(ud, (uint32_t)i)->c; }

/* The loop-stall watchdog against the handlers' own account: on the loop,
 * every hold past the threshold is counted once (and no other call is
 * blamed for it); on the pool, no loop is ever held. */
static void check_watchdog(run_t *r) {
  for (int i = 0; i < r->p.providers; i++) {
    const prov_t *p = &r->provs[i];
    if (p->slow_counted != p->slow_expected)
      violate(r, "provider %d: the watchdog counted %llu slow handlers, the handlers held the loop "
                 "past %d ms %llu times",
              i, (unsigned long long)p->slow_counted, SLOW_WARN_MS,
              (unsigned long long)p->slow_expected);
  }
}

static void teardown(run_t *r) {
  r->tearing_down = true;
  /* Channels: pending calls end with ECANCELED (and are checked). */
  for (int i = 0; i < r->p.consumers; i++) {
    cons_t *c = &r->cons[i];
    mprpc_sim_cancel(r->w, c->tick_ev);
    c->tick_ev = 0;
    if (c->ch_idem)
      mprpc_channel_destroy(c->ch_idem);
    if (c->ch_non)
      mprpc_channel_destroy(c->ch_non);
    c->ch_idem = c->ch_non = NULL;
  }
  run_for(r, 2 * SEC);
  for (int i = 0; i < r->p.providers; i++) {
    prov_t *p = &r->provs[i];
    p->restart_after = 0;
    if (p->up && !p->stopping)
      prov_graceful(p, 0);
  }
  for (int k = 0; k < 100; k++) {
    bool busy = false;
    for (int i = 0; i < r->p.providers; i++)
      busy |= r->provs[i].stopping || r->provs[i].crashing;
    if (!busy)
      break;
    run_for(r, 100 * MS);
  }
  for (int i = 0; i < r->p.providers; i++) {
    prov_t *p = &r->provs[i];
    if (p->srv) { /* stuck in shutdown: count it, free anyway */
      violate(r, "provider %d did not finish its graceful stop", i);
      pend_cancel_all(p);
      mprpc_server_destroy(p->srv);
      p->srv = NULL;
    }
    if (p->reg.vt)
      mprpc_registry_close(p->reg);
    p->reg = (mprpc_registry_t){0};
  }
  for (int i = 0; i < r->p.consumers; i++) {
    if (r->cons[i].reg.vt)
      mprpc_registry_close(r->cons[i].reg);
    r->cons[i].reg = (mprpc_registry_t){0};
  }
  run_for(r, 1 * SEC);
  mprpc_check_final(&r->pol, call_at, r, r->ncalls, report, r);
}

static uint64_t log_clock(void *ctx) { return MPRPC_SIM_EPOCH_NS + mprpc_sim_now(ctx); }

int mprpc_sim_run(const mprpc_sim_scenario_t *sc, const mprpc_sim_opts_t *o,
                  mprpc_sim_result_t *res) {
  if (sc->run)
    return sc->run(o, res);
  memset(res, 0, sizeof *res);
  run_t *r = calloc(1, sizeof *r);
  if (!r)
    return MPRPC_ENOMEM;
  int rc = MPRPC_ENOMEM;
  unsigned saved_bugs = mprpc__sim_bug;
  mprpc__sim_bug = o->bugs;
  r->o = o;
  r->res = res;
  base_params(&r->p);
  r->w = mprpc_sim_world_new(o->seed);
  if (!r->w)
    goto out;
  mprpc_sim_set_trace(r->w, o->trace);
  mprpc_log_set_clock(log_clock, r->w);
  sc->setup(r); /* may draw from the world PRNG (swarm) before anything else */
  apply_knobs(r);
  r->pol = (mprpc_check_policy_t){
      .max_retry = r->p.max_retry < 0 ? 0 : r->p.max_retry,
      .timeout_ms = r->p.timeout_ms,
      .deadline_slack_ns = DEADLINE_SLACK_NS,
      .quiet_after_ns = r->p.quiet_after_ns,
      .live_from_ns = r->p.live_from_ns,
      .no_failures = r->p.no_failures,
      .recovery_bound_ns = o->plan ? o->plan->recovery_bound_ms * MS : 0,
  };
  mprpc_sim_tracef(r->w, "scenario %s seed %llu: %d consumers, %d providers, %.0f s", sc->name,
                   (unsigned long long)o->seed, r->p.consumers, r->p.providers,
                   (double)r->p.duration_ns / 1e9);
  mprpc_sim_net_config_t ncfg = {.chunk_max = r->p.chunk, .chunk_fixed = r->p.chunk_fixed,
                                 .lat_min_ns = 100 * MPRPC_NS_PER_US,
                                 .lat_max_ns = r->p.lat_max_ns ? r->p.lat_max_ns : 2 * MS,
                                 .lat_tail_p = 0.01, .lat_tail_ns = 20 * MS,
                                 .rto_backoff = o->plan != NULL || r->p.rto_backoff};
  r->net = mprpc_sim_net_new(r->w, &ncfg);
  mprpc_sim_zk_config_t zcfg = {.session_timeout_ns = r->p.session_timeout_ns};
  r->zk = mprpc_sim_zk_new(r->w, &zcfg);
  r->provs = calloc((size_t)r->p.providers, sizeof *r->provs);
  r->cons = calloc((size_t)r->p.consumers, sizeof *r->cons);
  r->first_exec_after_quiet = calloc((size_t)r->p.providers, sizeof *r->first_exec_after_quiet);
  if (!r->net || !r->zk || !r->provs || !r->cons || !r->first_exec_after_quiet)
    goto out;
  for (int i = 0; i < r->p.providers; i++)
    r->first_exec_after_quiet[i] = UINT64_MAX;
  r->tr = mprpc_sim_net_transport(r->net);
  for (int i = 0; i < r->p.providers; i++) {
    prov_t *p = &r->provs[i];
    p->run = r;
    p->idx = i;
    p->host = mprpc_sim_net_add_host(r->net);
    for (int k = 0; k < 2; k++) {
      p->sl[k] = mprpc_sim_loop_new(r->w, p->host);
      if (!p->sl[k])
        goto out;
      p->loops[k] = mprpc_sim_loop(p->sl[k]);
    }
    for (int k = 0; k < r->p.handler_threads && k < MAX_WORKERS; k++) {
      if (!(p->wk[k] = mprpc_sim_loop_new(r->w, p->host)))
        goto out;
      p->wk_arg[k] = (worker_arg_t){.p = p, .k = k};
    }
  }
  for (int i = 0; i < r->p.consumers; i++) {
    cons_t *c = &r->cons[i];
    c->run = r;
    c->idx = i;
    c->host = mprpc_sim_net_add_host(r->net);
    c->sl = mprpc_sim_loop_new(r->w, c->host);
    if (!c->sl)
      goto out;
  }
  for (int i = 0; i < r->p.providers; i++)
    if ((rc = prov_start(&r->provs[i])) < 0)
      goto out;
  for (int i = 0; i < r->p.consumers; i++)
    if ((rc = cons_start(&r->cons[i])) < 0)
      goto out;
  if (r->p.quiet_after_ns)
    fault_at(r, r->p.quiet_after_ns, F_QUIET, 0, 0, 0);

  /* Calls are issued until duration; the last ones get their deadline. */
  mprpc_sim_run_until(r->w, r->p.duration_ns);
  mprpc_sim_run_until(r->w, r->p.duration_ns + (uint64_t)r->p.timeout_ms * MS + 2 * SEC);
  check_convergence(r);
  if (r->p.quiet_after_ns) {
    /* Recovery: every running provider is called again after the heal. */
    for (int i = 0; i < r->p.providers; i++) {
      if (!r->provs[i].up)
        continue;
      uint64_t d = mprpc_check_recovery(&r->pol, i, r->p.quiet_after_ns,
                                        r->first_exec_after_quiet[i], report, r);
      if (d > res->recovery_ns)
        res->recovery_ns = d;
    }
  }
  if (o->timeline)
    mprpc_timeline_marks(o->timeline, r->p.quiet_after_ns, r->p.live_from_ns);
  check_gov(r);
  teardown(r);
  check_watchdog(r);
  rc = 0;
out:
  if (rc < 0)
    r->tearing_down = true;
  if (r->w) {
    res->sim_ns = mprpc_sim_now(r->w);
    res->events = mprpc_sim_events_run(r->w);
    res->hash = mprpc_sim_trace_hash(r->w);
  }
  /* Whatever is left (setup failures): free in dependency order. */
  if (r->cons)
    for (int i = 0; i < r->p.consumers; i++) {
      cons_t *c = &r->cons[i];
      if (c->ch_idem)
        mprpc_channel_destroy(c->ch_idem);
      if (c->ch_non)
        mprpc_channel_destroy(c->ch_non);
      if (c->reg.vt)
        mprpc_registry_close(c->reg);
    }
  if (r->provs)
    for (int i = 0; i < r->p.providers; i++) {
      prov_t *p = &r->provs[i];
      pend_cancel_all(p);
      if (p->srv)
        mprpc_server_destroy(p->srv);
      if (p->reg.vt)
        mprpc_registry_close(p->reg);
    }
  mprpc_sim_net_free(r->net);
  mprpc_sim_zk_free(r->zk);
  mprpc_sim_hostile_free(r->hostile);
  if (r->provs)
    for (int i = 0; i < r->p.providers; i++) {
      for (int k = 0; k < 2; k++)
        mprpc_sim_loop_free(r->provs[i].sl[k]);
      for (int k = 0; k < MAX_WORKERS; k++)
        mprpc_sim_loop_free(r->provs[i].wk[k]);
    }
  if (r->cons)
    for (int i = 0; i < r->p.consumers; i++)
      mprpc_sim_loop_free(r->cons[i].sl);
  while (r->faults) {
    fault_t *f = r->faults;
    r->faults = f->next;
    free(f);
  }
  for (size_t b = 0; b < MAX_BLOCKS && r->blocks[b]; b++)
    free(r->blocks[b]);
  free(r->provs);
  free(r->cons);
  free(r->first_exec_after_quiet);
  if (o->violations && res->violations > (uint64_t)r->nviol_printed)
    fprintf(o->violations, "  ... and %llu more violations with seed %llu\n",
            (unsigned long long)(res->violations - (uint64_t)r->nviol_printed),
            (unsigned long long)o->seed);
  mprpc_log_set_clock(NULL, NULL);
  mprpc_sim_world_free(r->w);
  free(r);
  mprpc__sim_bug = saved_bugs;
  return rc;
}

