/*
 * The gov_local scenario: governance from the processes' own config text,
 * without any config centre. Three providers without a registry carry
 * `rate_limit.Echo=RATE` (and a bad line, which must cost nothing else) in
 * mprpc_server_opts_t.governance; four consumers over a fixed servers=
 * list carry `max_retry.Echo=0` in mprpc_channel_opts_t.governance, and
 * offer about twice what the providers admit. The network's latency and
 * chunking come from the seed; there are no faults.
 *
 * Invariants:
 * - no provider runs more than RATE + burst calls in any aligned second
 *   (the local limit holds from the start, on both of its loops);
 * - every failed call failed with ELIMIT (nothing else can fail here), and
 *   was not retried (the consumers' local max_retry.Echo=0);
 * - the providers' refused_rate_limit counters add up to the consumers'
 *   ELIMIT answers, refused_max_concurrency stays 0 (one count per
 *   refusal, in the right series);
 * - the limit acts: some calls are refused, and some succeed every second.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/controller.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
#include "scenario.h"
#include "sim.h"

#define MS MPRPC_NS_PER_MS
#define SEC MPRPC_NS_PER_S
#define NP 3
#define NC 4
#define RATE 25u /* per provider; burst RATE / 10 */

typedef struct lrun lrun_t;

typedef struct lprov {
  Example__EchoService_Service svc; /* first: the handler gets &svc */
  lrun_t *run;
  int idx, host;
  mprpc_sim_loop_t *sl[2];
  mprpc_loop_t loops[2];
  mprpc_server_t *srv;
  uint64_t sec, sec_execs;
  bool flagged;
} lprov_t;

typedef struct lcons {
  lrun_t *run;
  int idx, host;
  mprpc_sim_loop_t *sl;
  mprpc_channel_t *ch;
  uint64_t tick_ev;
} lcons_t;

struct lrun {
  const mprpc_sim_opts_t *o;
  mprpc_sim_result_t *res;
  mprpc_sim_world_t *w;
  mprpc_sim_net_t *net;
  mprpc_transport_t tr;
  lprov_t p[NP];
  lcons_t c[NC];
  uint64_t duration_ns;
  double rate;
  uint64_t elimit;
  mprpc_sim_violations_t viol;
};

static uint64_t now(const lrun_t *r) { return mprpc_sim_now(r->w); }

static void count_fail(mprpc_sim_result_t *res, int code) {
  for (size_t i = 0; i < sizeof res->fails / sizeof res->fails[0]; i++) {
    if (res->fails[i].count && res->fails[i].code != code)
      continue;
    res->fails[i].code = code;
    res->fails[i].count++;
    return;
  }
}

static void p_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                   Example__EchoResponse_Closure done, void *cd) {
  lprov_t *p = (lprov_t *)svc;
  lrun_t *r = p->run;
  r->res->executions++;
  uint64_t sec = now(r) / SEC;
  if (sec != p->sec) {
    p->sec = sec;
    p->sec_execs = 0;
    p->flagged = false;
  }
  p->sec_execs++;
  /* GCRA: at most qps + burst in any aligned second */
  if (p->sec_execs > RATE + RATE / 10 && !p->flagged) {
    p->flagged = true;
    mprpc_sim_violate(&r->viol, "provider %d ran %llu calls in one second under its local rate_limit.Echo=%u",
            p->idx, (unsigned long long)p->sec_execs, RATE);
  }
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = in->message;
  done(&resp, cd);
}

static void c_done(const ProtobufCMessage *msg, void *arg) {
  lrun_t *r = arg;
  mprpc_controller_t *ctl = mprpc_controller_current();
  if (msg) {
    r->res->ok++;
    return;
  }
  r->res->failed++;
  int code = ctl ? mprpc_controller_error_code(ctl) : 0;
  count_fail(r->res, code);
  if (code == MPRPC_ELIMIT)
    r->elimit++;
  else
    mprpc_sim_violate(&r->viol, "a call failed with %s; only ELIMIT may fail here", mprpc_err_name(code));
}

static void c_tick(void *arg) {
  lcons_t *c = arg;
  lrun_t *r = c->run;
  c->tick_ev = 0;
  if (now(r) >= r->duration_ns)
    return;
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "local";
  r->res->calls++;
  int rc = mprpc_channel_call(c->ch, 0, &req.base, NULL, c_done, r);
  if (rc != 0) {
    r->res->failed++;
    mprpc_sim_violate(&r->viol, "a call could not start: %s", mprpc_err_name(rc));
  }
  uint64_t mean = (uint64_t)(1e9 / r->rate);
  c->tick_ev = mprpc_sim_at(r->w, mprpc_sim_rand_range(r->w, 1, 2 * mean), MPRPC_SIM_EV_SCEN,
                            (uint64_t)c->idx, c_tick, c);
}

static int prov_start(lrun_t *r, lprov_t *p) {
  p->run = r;
  p->host = mprpc_sim_net_add_host(r->net);
  for (int k = 0; k < 2; k++) {
    if (!(p->sl[k] = mprpc_sim_loop_new(r->w, p->host)))
      return MPRPC_ENOMEM;
    p->loops[k] = mprpc_sim_loop(p->sl[k]);
  }
  p->svc = (Example__EchoService_Service)EXAMPLE__ECHO_SERVICE__INIT(p_);
  char gov[128];
  snprintf(gov, sizeof gov, "# local governance\nrate_limit.Echo=%u\nmax_concurrency.Echo=lots\n",
           RATE);
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = mprpc_sim_net_host_addr(r->net, p->host);
  o.transport = r->tr;
  o.loops = p->loops;
  o.nloops = 2;
  o.governance = gov; /* copied */
  o.governance_name = "provider.conf";
  int rc = mprpc_server_new_in(&o, (mprpc_loop_owner_t){0}, &p->srv);
  if (rc == 0)
    rc = mprpc_server_add_service(p->srv, &p->svc.base);
  if (rc == 0)
    rc = mprpc_server_start(p->srv);
  return rc;
}

static void check_counters(lrun_t *r) {
  uint64_t rate = 0, conc = 0;
  for (int i = 0; i < NP; i++) {
    mprpc_method_stats_t ms;
    if (mprpc_server_method_stats(r->p[i].srv, "example.EchoService", "Echo", &ms) != 0) {
      mprpc_sim_violate(&r->viol, "provider %d has no stats for Echo", i);
      return;
    }
    rate += ms.refused_rate_limit;
    conc += ms.refused_max_concurrency;
  }
  if (rate != r->elimit)
    mprpc_sim_violate(&r->viol, "providers counted %llu rate refusals, consumers got %llu ELIMIT answers",
            (unsigned long long)rate, (unsigned long long)r->elimit);
  if (conc)
    mprpc_sim_violate(&r->viol, "%llu concurrency refusals without a concurrency limit", (unsigned long long)conc);
  if (r->elimit == 0 || r->res->ok == 0)
    mprpc_sim_violate(&r->viol, "the local limit did not act (%llu ok, %llu ELIMIT)",
            (unsigned long long)r->res->ok, (unsigned long long)r->elimit);
}

static uint64_t log_clock(void *ctx) { return MPRPC_SIM_EPOCH_NS + mprpc_sim_now(ctx); }

int mprpc__sim_gov_local_run(const mprpc_sim_opts_t *o, mprpc_sim_result_t *res) {
  memset(res, 0, sizeof *res);
  lrun_t *r = calloc(1, sizeof *r);
  if (!r)
    return MPRPC_ENOMEM;
  int rc = MPRPC_ENOMEM;
  r->o = o;
  r->res = res;
  r->w = mprpc_sim_world_new(o->seed);
  r->viol = (mprpc_sim_violations_t){.w = r->w, .o = o, .res = res};
  if (!r->w)
    goto out;
  mprpc_sim_set_trace(r->w, o->trace);
  mprpc_log_set_clock(log_clock, r->w);
  r->duration_ns = (o->duration_s ? o->duration_s : 10) * SEC;
  r->rate = o->rate > 0 ? o->rate : 2.0 * NP * RATE / NC; /* twice the admitted rate */
  mprpc_sim_net_config_t ncfg = {
      .chunk_max = o->chunk ? o->chunk : (size_t)mprpc_sim_rand_range(r->w, 0, 64),
      .chunk_fixed = o->chunk_fixed,
      .lat_min_ns = 100 * MPRPC_NS_PER_US,
      .lat_max_ns = o->lat_max_us ? o->lat_max_us * MPRPC_NS_PER_US
                                  : mprpc_sim_rand_range(r->w, 1, 5) * MS,
      .lat_tail_p = 0.01,
      .lat_tail_ns = 20 * MS};
  mprpc_sim_tracef(r->w, "scenario gov_local seed %llu: %d consumers -> %d providers, local "
                   "rate_limit.Echo=%u, %.0f s", (unsigned long long)o->seed, NC, NP, RATE,
                   (double)r->duration_ns / 1e9);
  if (!(r->net = mprpc_sim_net_new(r->w, &ncfg)))
    goto out;
  r->tr = mprpc_sim_net_transport(r->net);
  char list[256];
  size_t off = 0;
  for (int i = 0; i < NP; i++) {
    r->p[i].idx = i;
    if ((rc = prov_start(r, &r->p[i])) < 0)
      goto out;
    int k = snprintf(list + off, sizeof list - off, "%s%s:%u", i ? "," : "",
                     mprpc_sim_net_host_addr(r->net, r->p[i].host),
                     (unsigned)mprpc_server_port(r->p[i].srv));
    if (k < 0 || (size_t)k >= sizeof list - off) {
      rc = MPRPC_ERANGE;
      goto out;
    }
    off += (size_t)k;
  }
  for (int i = 0; i < NC; i++) {
    lcons_t *c = &r->c[i];
    c->run = r;
    c->idx = i;
    c->host = mprpc_sim_net_add_host(r->net);
    rc = MPRPC_ENOMEM;
    if (!(c->sl = mprpc_sim_loop_new(r->w, c->host)))
      goto out;
    mprpc_channel_opts_t co;
    mprpc_channel_opts_init(&co);
    co.loop = mprpc_sim_loop(c->sl);
    co.transport = r->tr;
    co.servers = list;
    co.timeout_ms = 5000;
    co.max_retry = 3; /* the local max_retry.Echo=0 wins: a refusal is final */
    co.lb = (int)(mprpc_sim_seed(r->w) % 4);
    co.governance = "max_retry.Echo=0\n";
    co.governance_name = "consumer.conf";
    if ((rc = mprpc_channel_new_in(&example__echo_service__descriptor, &co, &c->ch)) < 0)
      goto out;
    c->tick_ev = mprpc_sim_at(r->w, mprpc_sim_rand_range(r->w, 1, 100 * MS), MPRPC_SIM_EV_SCEN,
                              (uint64_t)i, c_tick, c);
  }
  mprpc_sim_run_until(r->w, r->duration_ns + 8 * SEC); /* the last calls' deadlines */
  if (res->ok + res->failed != res->calls)
    mprpc_sim_violate(&r->viol, "%llu calls never returned",
            (unsigned long long)(res->calls - res->ok - res->failed));
  check_counters(r);
  rc = 0;
out:
  for (int i = 0; i < NC; i++) {
    if (r->c[i].tick_ev)
      mprpc_sim_cancel(r->w, r->c[i].tick_ev);
    if (r->c[i].ch)
      mprpc_channel_destroy(r->c[i].ch);
  }
  if (r->w)
    mprpc_sim_run_until(r->w, now(r) + 1 * SEC);
  for (int i = 0; i < NP; i++)
    mprpc_server_destroy(r->p[i].srv);
  if (r->w) {
    mprpc_sim_run_until(r->w, now(r) + 1 * SEC);
    res->sim_ns = mprpc_sim_now(r->w);
    res->events = mprpc_sim_events_run(r->w);
    res->hash = mprpc_sim_trace_hash(r->w);
  }
  mprpc_sim_net_free(r->net);
  for (int i = 0; i < NP; i++)
    for (int k = 0; k < 2; k++)
      mprpc_sim_loop_free(r->p[i].sl[k]);
  for (int i = 0; i < NC; i++)
    mprpc_sim_loop_free(r->c[i].sl);
  mprpc_sim_violations_end(&r->viol);
  mprpc_log_set_clock(NULL, NULL);
  mprpc_sim_world_free(r->w);
  free(r);
  return rc;
}
