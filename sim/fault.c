/*
 * Faults of a run (sim/run.h) on the world's clock: crashes, partitions,
 * stalls, registry outages and expiries, hostile clients, the config
 * centre's changes, and fault plans (sim/plan.h) replayed on virtual hosts.
 */
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeline.h"

/* ---- faults -------------------------------------------------------------------------------- */


/* What docs/server.md promises: the count may pass the budget by one
 * buffer's reserved doubling (no bigger than the budget) plus one read pass
 * (256 KiB here) per open connection before the pause; the memory behind
 * it stays within the budget plus those read passes. */
#define BUDGET_SLACK(budget, conns) ((uint64_t)(budget) + (uint64_t)(conns) * (256u << 10))

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
    uint64_t slack = BUDGET_SLACK(st.max_buffered_bytes, st.connections_open);
    if (st.buffered_bytes > st.max_buffered_bytes + slack &&
        !r->over_budget_flagged) {
      r->over_budget_flagged = true;
      mprpc_sim_violate(&r->viol, "provider %d buffers %llu bytes, over its budget %llu + %llu", i,
                        (unsigned long long)st.buffered_bytes,
                        (unsigned long long)st.max_buffered_bytes,
                        (unsigned long long)slack);
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
      mprpc_sim_violate(
          &r->viol,
          "provider %d: hostile clients not refused (budget %llu, header %llu, body %llu)", i,
          (unsigned long long)st.refused_budget, (unsigned long long)st.refused_header_timeout,
          (unsigned long long)st.refused_slow_body);
  }
  mprpc_sim_note(r->w, "hostile.refused", refused, mprpc_sim_hostile_closed(r->hostile));
}



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

fault_t *mprpc__fault_at(run_t *r, uint64_t t, int kind, int a, int b, uint64_t d) {
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
void mprpc__fault_span(run_t *r, uint64_t d, int lane, const char *label) {
  if (r->o->timeline)
    mprpc_timeline_fault(r->o->timeline, now(r), now(r) + d, lane, label);
}

static void plan_fault(run_t *r, const mprpc_plan_fault_t *pf);
static void plan_heal(run_t *r, const mprpc_plan_fault_t *pf);

static prov_t *random_up_provider(run_t *r, int keep) {
  int up = mprpc__providers_up(r);
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
    mprpc__fault_span(r, f->d, p->idx, f->kind == F_CRASH ? "crash" : "graceful");
    if (f->kind == F_CRASH) {
      mprpc__prov_crash(p);
      if (f->d && t + f->d < r->p.quiet_after_ns)
        mprpc_sim_at(r->w, f->d, MPRPC_SIM_EV_SCEN, (uint64_t)p->idx, mprpc__prov_restart_ev, p);
    } else {
      mprpc__prov_graceful(p, f->d);
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
    mprpc__fault_at(r, t + f->d, F_HEAL_NET, 0, 0, 0);
    mprpc__fault_span(r, f->d, -1, f->b == 0 ? "partition" : "one-way partition");
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
    mprpc__fault_at(r, t + f->d, F_ZK_UP, 0, 0, 0);
    mprpc__fault_span(r, f->d, -1, "zookeeper down");
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
    mprpc__fault_at(r, t + f->d, F_ZK_HEAL, h, 0, 0);
    mprpc__fault_span(r, f->d, -1, "zk cut");
    break;
  }
  case F_ZK_HEAL:
    mprpc_sim_zk_partition(r->zk, f->a, false);
    break;
  case F_ZK_EXPIRE_ALL:
    if (in_window) {
      mprpc_sim_zk_expire_all(r->zk);
      mprpc__fault_span(r, 50 * MS, -1, "expire all");
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
    mprpc__fault_at(r, t + f->d, F_HEAL_NET, 0, 0, 0);
    mprpc__fault_span(r, f->d, -1, "consumers cut");
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
      mprpc__fault_at(r, t + 50 * MS, F_BUDGET_CHECK, 0, 0, 0);
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
        mprpc__prov_restart(p);
      else if (p->stopping)
        p->restart_after = 1; /* comes back right after its stop */
      else if (p->crashing)
        mprpc_sim_at(r->w, 1, MPRPC_SIM_EV_SCEN, (uint64_t)p->idx, mprpc__prov_restart_ev, p);
    }
    break;
  }
}

/* Schedules `kind` at random times in [from, to) with mean gap `gap`. */
void mprpc__fault_sprinkle(run_t *r, int kind, uint64_t from, uint64_t to, uint64_t gap, int b,
                           uint64_t dmin, uint64_t dmax) {
  double scale = r->p.fault_scale > 0 ? r->p.fault_scale : 1.0;
  uint64_t g = (uint64_t)((double)gap / scale);
  if (g < 10 * MS)
    g = 10 * MS;
  for (uint64_t t = from + mprpc_sim_rand_range(r->w, 0, g); t < to;
       t += mprpc_sim_rand_range(r->w, g / 2, g + g / 2))
    mprpc__fault_at(r, t, kind, -1, b, mprpc_sim_rand_range(r->w, dmin, dmax));
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
    mprpc__fault_at(r, t + d, F_PLAN_END, 0, 0, 0)->pf = pf;
    mprpc__fault_span(r, d, -1, label);
    break;
  case MPRPC_PLAN_CRASH: {
    prov_t *p = plan_provider(r, pf->a);
    if (!p)
      break;
    mprpc__fault_span(r, d, p->idx, "kill -9");
    mprpc__prov_crash(p);
    if (t + d < r->p.quiet_after_ns)
      mprpc_sim_at(r->w, d, MPRPC_SIM_EV_SCEN, (uint64_t)p->idx, mprpc__prov_restart_ev, p);
    break;
  }
  case MPRPC_PLAN_GRACEFUL: {
    prov_t *p = plan_provider(r, pf->a);
    if (!p)
      break;
    mprpc__fault_span(r, d, p->idx, "SIGTERM");
    mprpc__prov_graceful(p, d);
    break;
  }
  case MPRPC_PLAN_STOP: {
    /* A stopped process: its connections deliver nothing either way until
     * SIGCONT, and it does not heartbeat (a stop past the session timeout
     * expires its session). */
    prov_t *p = plan_provider(r, pf->a);
    if (!p)
      break;
    mprpc__fault_span(r, d, p->idx, "SIGSTOP");
    for (int c = 0; c < r->p.consumers; c++) {
      mprpc_sim_net_stall(r->net, r->cons[c].host, p->host, d);
      mprpc_sim_net_stall(r->net, p->host, r->cons[c].host, d);
    }
    mprpc_sim_zk_partition(r->zk, p->host, true);
    fault_t *e = mprpc__fault_at(r, t + d, F_ZK_HEAL, p->host, 0, 0);
    (void)e;
    break;
  }
  case MPRPC_PLAN_ZK_KILL:
    /* The ensemble survives (2 of 3); every client waits out the election. */
    mprpc__fault_span(r, PLAN_ELECTION_NS, -1, label);
    mprpc_sim_zk_set_down(r->zk, true);
    mprpc__fault_at(r, t + PLAN_ELECTION_NS, F_ZK_UP_PLAN, 0, 0, 0);
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
    mprpc__fault_at(r, pl->faults[k].at_ms * MS, F_PLAN, 0, 0, 0)->pf = &pl->faults[k];
}

static const mprpc_sim_scenario_t plan_scenario = {"plan", "a fault plan (sim/plan.h)", sc_plan};

int mprpc_sim_run_plan(const mprpc_plan_t *plan, const mprpc_sim_opts_t *o,
                       mprpc_sim_result_t *r) {
  mprpc_sim_opts_t po = *o;
  po.plan = plan;
  return mprpc_sim_run(&plan_scenario, &po, r);
}

