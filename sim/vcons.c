/*
 * The consumer hosts of a run (sim/run.h): two production channels each
 * (one declares Echo idempotent, the other not), calls at random intervals,
 * each closure checked by the shared checker (sim/check.h).
 */
#include "run.h"

#include <stdlib.h>
#include <string.h>

#include "timeline.h"

/* ---- consumer side --------------------------------------------------------------------------- */

static void check_done(const ProtobufCMessage *msg, rec_t *rec) {
  run_t *r = rec->run;
  uint64_t t = now(r);
  mprpc_controller_t *ctl = mprpc_controller_current();
  int err = ctl ? mprpc_controller_error_code(ctl) : 0;
  const Example__EchoResponse *resp = (const Example__EchoResponse *)msg;
  uint32_t got;
  bool own = resp && mprpc__parse_token(resp->message, &got) && got == rec->token;
  if (!msg && !err)
    err = MPRPC_EINTERNAL;
  if (!mprpc_check_done(&r->pol, &rec->c, msg != NULL, own, resp ? resp->message : NULL, err, t,
                        r->tearing_down, mprpc__run_report, r))
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

void mprpc__cons_issue(cons_t *c) {
  run_t *r = c->run;
  rec_t *rec = mprpc__rec_new(r);
  if (!rec)
    return;
  rec->c.consumer = (uint16_t)c->idx;
  rec->c.idem = !mprpc_sim_chance(r->w, r->p.nonidem_frac);
  rec->c.start_ns = now(r);
  r->res->calls++;
  size_t pad = 0;
  if (r->p.big_frac > 0 && mprpc_sim_chance(r->w, r->p.big_frac))
    pad = (size_t)mprpc_sim_rand_range(r->w, 16 * 1024 + 1, r->p.big_max);
  char *msg = mprpc__token_msg(rec->token, pad);
  if (!msg) {
    rec->c.done = 1;
    rec->c.err = MPRPC_ENOMEM;
    r->res->failed++;
    return;
  }
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = msg;
  c->inflight++;
  mprpc_sim_note(r->w, "call", rec->token, (uint64_t)c->idx << 1 | rec->c.idem);
  int rc = mprpc_channel_call(rec->c.idem ? c->ch_idem : c->ch_non, 0, &req.base, NULL, on_done,
                              rec);
  free(msg); /* packed by the call: the request may die now */
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
    mprpc__cons_issue(c);
  uint64_t mean = (uint64_t)(1e9 / r->p.rate);
  c->tick_ev = mprpc_sim_at(r->w, mprpc_sim_rand_range(r->w, 1, 2 * mean), MPRPC_SIM_EV_SCEN,
                            (uint64_t)c->idx, consumer_tick, c);
}

/* GOV_DEGRADE: the consumer's local answer echoes the request. */
static int sim_fallback(void *arg, const ProtobufCMessage *request, ProtobufCMessage *response) {
  cons_t *c = arg;
  const Example__EchoRequest *in = (const Example__EchoRequest *)request;
  uint32_t token;
  rec_t *rec = mprpc__parse_token(in->message, &token) ? mprpc__rec_get(c->run, token) : NULL;
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
  o.lb = mprpc__cons_lb(r, c->idx);
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

int mprpc__cons_lb(const run_t *r, int idx) {
  return (idx + (int)(mprpc_sim_seed(r->w) % 4)) % 4;
}

int mprpc__cons_start(cons_t *c) {
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
