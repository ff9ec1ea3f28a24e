/*
 * The provider hosts of a run (sim/run.h): a production mprpc_server_t per
 * host serving the echo handler, which counts executions per token, with a
 * virtual worker pool; start, crash, restart and graceful stop.
 */
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeline.h"

/* ---- provider side: the echo handler ------------------------------------------------------- */

static void reply(prov_t *p, const Example__EchoRequest *in, Example__EchoResponse_Closure closure,
                  void *cd) {
  const char *msg = in->message ? in->message : "";
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = (char *)msg; /* the whole message back, large ones too */
  char other[32];
  if ((mprpc__sim_bug & MPRPC_SIM_BUG_WRONG_RESPONSE) && p->last[0] &&
      mprpc_sim_chance(p->run->w, 0.05)) {
    memcpy(other, p->last, sizeof other);
    resp.message = other; /* the bug: another call's answer */
  }
  snprintf(p->last, sizeof p->last, "%s", msg);
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

void mprpc__prov_pend_cancel_all(prov_t *p) {
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
  if (mprpc__parse_token(in->message, &token)) {
    rec_t *rec = mprpc__rec_get(r, token);
    if (rec) {
      rec->c.execs++;
      mprpc_sim_note(r->w, "exec", token, (uint64_t)p->idx);
      mprpc_check_exec(&r->pol, &rec->c, mprpc__run_report, r);
      /* the config centre's drain: no call started more than 1 s after the
       * provider was disabled may reach it */
      if (p->disabled_at && rec->c.start_ns > p->disabled_at + SEC)
        mprpc_sim_violate(&r->viol,
                          "call %u started %.3f s after provider %d was disabled reached it", token,
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
      mprpc_sim_violate(&r->viol,
                        "provider %d ran %llu calls in one second under rate_limit.Echo=%u", p->idx,
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

int mprpc__prov_start(prov_t *p) {
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
    mprpc_sim_violate(&p->run->viol,
                      "provider %d saw %llu malformed frames on an uncorrupted network", p->idx,
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
void mprpc__prov_crash(prov_t *p) {
  run_t *r = p->run;
  if (!p->up || p->stopping || p->crashing)
    return;
  mprpc_sim_note(r->w, "prov.crash", (uint64_t)p->idx, 0);
  mprpc__prov_pend_cancel_all(p);
  mprpc_sim_net_crash(r->net, p->host);
  p->up = false;
  p->crashing = true;
  /* After the connections' on_close events (same instant, queued first). */
  mprpc_sim_at(r->w, 0, MPRPC_SIM_EV_SCEN, (uint64_t)p->idx, prov_crash_finish, p);
}

void mprpc__prov_restart(prov_t *p) {
  run_t *r = p->run;
  if (p->up || p->stopping || p->crashing || p->srv)
    return;
  mprpc_sim_net_restart(r->net, p->host);
  int rc = mprpc__prov_start(p);
  if (rc < 0)
    mprpc_sim_violate(&r->viol, "provider %d could not restart: %s", p->idx, mprpc_strerror(rc));
}

void mprpc__prov_restart_ev(void *arg) { mprpc__prov_restart(arg); }

static void prov_sd_finish(void *arg) {
  prov_t *p = arg;
  run_t *r = p->run;
  mprpc__prov_pend_cancel_all(p);
  prov_check_stats(p);
  mprpc_server_destroy(p->srv);
  p->srv = NULL;
  mprpc_registry_close(p->reg);
  p->reg = (mprpc_registry_t){0};
  p->up = false;
  p->stopping = false;
  if (p->restart_after && !r->tearing_down)
    mprpc_sim_at(r->w, p->restart_after, MPRPC_SIM_EV_SCEN, (uint64_t)p->idx,
                 mprpc__prov_restart_ev, p);
}

static void prov_sd_done(void *ud) {
  prov_t *p = ud;
  /* Not from inside the server's own callback: destroy is a control op. */
  mprpc_sim_at(p->run->w, 0, MPRPC_SIM_EV_SCEN, (uint64_t)p->idx, prov_sd_finish, p);
}

void mprpc__prov_graceful(prov_t *p, uint64_t restart_after) {
  if (!p->up || p->stopping || p->crashing)
    return;
  mprpc_sim_note(p->run->w, "prov.stop", (uint64_t)p->idx, restart_after);
  p->stopping = true;
  p->restart_after = restart_after;
  int rc = mprpc_server_shutdown(p->srv, prov_sd_done, p);
  if (rc < 0) {
    mprpc_sim_violate(&p->run->viol, "provider %d: shutdown refused: %s", p->idx,
                      mprpc_strerror(rc));
    prov_sd_done(p);
  }
}

int mprpc__providers_up(const run_t *r) {
  int n = 0;
  for (int i = 0; i < r->p.providers; i++)
    n += r->provs[i].up && !r->provs[i].stopping;
  return n;
}
