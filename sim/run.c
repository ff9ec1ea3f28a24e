/*
 * One run of a scenario for one seed (sim/scenario.h, sim/run.h): the
 * world, the hosts and the faults set up, run on virtual time, checked at
 * the end (convergence, the shared checker's final rules) and torn down.
 */
#include "run.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeline.h"

rec_t *mprpc__rec_get(run_t *r, uint32_t token) {
  if (token >= r->ncalls)
    return NULL;
  return &r->blocks[token / REC_BLOCK][token % REC_BLOCK];
}

rec_t *mprpc__rec_new(run_t *r) {
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

static char pad_char(uint32_t token, size_t i) {
  return (char)('a' + (token * 31u + i * 7u + i / 4093u) % 26u);
}

char *mprpc__token_msg(uint32_t token, size_t pad) {
  char *m = malloc(40 + pad);
  if (!m)
    return NULL;
  if (!pad) {
    snprintf(m, 40, "c%u", token);
    return m;
  }
  int n = snprintf(m, 40, "c%u.%zu:", token, pad);
  for (size_t i = 0; i < pad; i++)
    m[(size_t)n + i] = pad_char(token, i);
  m[(size_t)n + pad] = '\0';
  return m;
}

bool mprpc__parse_token(const char *m, uint32_t *t) {
  if (!m || m[0] != 'c' || !m[1])
    return false;
  char *end;
  unsigned long v = strtoul(m + 1, &end, 10);
  if ((*end && *end != '.') || v > UINT32_MAX)
    return false;
  if (*end == '.') { /* ".<pad>:" and exactly pad bytes of the token's padding */
    unsigned long pad = strtoul(end + 1, &end, 10);
    if (*end != ':' || pad == 0)
      return false;
    const char *p = end + 1;
    for (size_t i = 0; i < pad; i++)
      if (p[i] != pad_char((uint32_t)v, i))
        return false; /* a wrong byte, or the end too early */
    if (p[pad])
      return false;
  }
  *t = (uint32_t)v;
  return true;
}

/* The shared checker reports through this. */
void mprpc__run_report(void *ud, const char *msg) {
  run_t *r = ud;
  mprpc_sim_violate(&r->viol, "%s", msg);
}

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
  int up = mprpc__providers_up(r);
  size_t reg = mprpc_sim_zk_count(r->zk, SERVICE);
  mprpc_check_registry(reg, up, mprpc__run_report, r);
  for (int i = 0; i < r->p.consumers; i++) {
    cons_t *c = &r->cons[i];
    mprpc_channel_t *chs[2] = {c->ch_idem, c->ch_non};
    for (int k = 0; k < 2; k++) {
      mprpc_channel_stats_t st;
      if (!chs[k])
        continue;
      mprpc_channel_stats(chs[k], &st);
      mprpc_check_unknown_ids(i, st.unknown_ids, mprpc__run_report, r);
    }
  }
  for (int i = 0; i < r->p.consumers; i++) {
    cons_t *c = &r->cons[i];
    size_t n1 = c->ch_idem ? mprpc_channel_endpoint_count(c->ch_idem) : reg;
    size_t n2 = c->ch_non ? mprpc_channel_endpoint_count(c->ch_non) : reg;
    if (!mprpc_check_consumer_endpoints(i, n1, n2, up, mprpc__run_report, r))
      break;
  }
}

static mprpc_check_call_t *call_at(void *ud, size_t i) {
  return &mprpc__rec_get(ud, (uint32_t)i)->c;
}

/* The loop-stall watchdog against the handlers' own account: on the loop,
 * every hold past the threshold is counted once (and no other call is
 * blamed for it); on the pool, no loop is ever held. */
static void check_watchdog(run_t *r) {
  for (int i = 0; i < r->p.providers; i++) {
    const prov_t *p = &r->provs[i];
    if (p->slow_counted != p->slow_expected)
      mprpc_sim_violate(
          &r->viol,
          "provider %d: the watchdog counted %llu slow handlers, the handlers held the loop "
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
      mprpc__prov_graceful(p, 0);
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
      mprpc_sim_violate(&r->viol, "provider %d did not finish its graceful stop", i);
      mprpc__prov_pend_cancel_all(p);
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
  mprpc_check_final(&r->pol, call_at, r, r->ncalls, mprpc__run_report, r);
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
  mprpc__base_params(&r->p);
  r->w = mprpc_sim_world_new(o->seed);
  r->viol = (mprpc_sim_violations_t){.w = r->w, .o = o, .res = res};
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
    if ((rc = mprpc__prov_start(&r->provs[i])) < 0)
      goto out;
  for (int i = 0; i < r->p.consumers; i++)
    if ((rc = mprpc__cons_start(&r->cons[i])) < 0)
      goto out;
  if (r->p.quiet_after_ns)
    mprpc__fault_at(r, r->p.quiet_after_ns, F_QUIET, 0, 0, 0);

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
                                        r->first_exec_after_quiet[i], mprpc__run_report, r);
      if (d > res->recovery_ns)
        res->recovery_ns = d;
    }
  }
  if (o->timeline)
    mprpc_timeline_marks(o->timeline, r->p.quiet_after_ns, r->p.live_from_ns);
  mprpc__check_gov(r);
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
      mprpc__prov_pend_cancel_all(p);
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
  mprpc_sim_violations_end(&r->viol);
  mprpc_log_set_clock(NULL, NULL);
  mprpc_sim_world_free(r->w);
  free(r);
  mprpc__sim_bug = saved_bugs;
  return rc;
}


