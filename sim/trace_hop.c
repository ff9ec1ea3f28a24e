/*
 * The trace_hop scenario: consumers -> tier A -> tier B, the production
 * server and channel on virtual loops over the virtual network (latency and
 * chunking drawn from the seed; no faults, so every call must succeed), and
 * the trace invariant checked on every call and over /rpcz's rings:
 *
 * - every B span's parent is an A span of the same trace (checked in B's
 *   handler from the ids as sent, and again over B's rpcz ring at the end);
 * - every span in A's ring is one A's handlers served, with the same trace;
 * - a consumer's call is served by A as the span the consumer sent: the
 *   consumer's trace, its span id, its parent (an upstream trace the
 *   consumer joined, as a brpc process would send, or none).
 *
 * A's handler picks how it calls B from the request: async from the
 * handler, twice (the second from the first one's closure), later from
 * another event with the context saved by value (through a controller, or
 * as the current context), or not at all. Ids come from the loops'
 * randomness seams and are noted into the trace hash, so a seed replays
 * them exactly (--check-determinism).
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
#include "mprpc/trace.h"
#include "scenario.h"
#include "sim.h"

#define MS MPRPC_NS_PER_MS
#define SEC MPRPC_NS_PER_S
#define NA 2
#define NB 2
#define NC 3

typedef struct trun trun_t;

typedef struct tnode {
  Example__EchoService_Service svc; /* first: the handler gets &svc */
  trun_t *run;
  int host;
  mprpc_sim_loop_t *sl[2];
  mprpc_loop_t loops[2];
  mprpc_server_t *srv;
  mprpc_channel_t *to_b; /* tier A only */
} tnode_t;

typedef struct tcons {
  trun_t *run;
  int idx, host;
  mprpc_sim_loop_t *sl;
  mprpc_channel_t *ch;
  uint64_t tick_ev;
} tcons_t;

/* A's spans: span_id -> trace_id (open addressing, 0 = empty). */
typedef struct spanset {
  int64_t *span, *trace;
  size_t cap, n;
} spanset_t;

struct trun {
  const mprpc_sim_opts_t *o;
  mprpc_sim_result_t *res;
  mprpc_sim_world_t *w;
  mprpc_sim_net_t *net;
  mprpc_transport_t tr;
  tnode_t a[NA], b[NB];
  tcons_t c[NC];
  spanset_t aspans;
  uint64_t duration_ns;
  double rate;
  uint64_t b_calls;
  mprpc_sim_violations_t viol;
};

/* A call of the consumer: what it sent, checked when it returns. */
typedef struct tcall {
  trun_t *run;
  int64_t up_trace, up_span; /* the upstream context joined, or 0 */
} tcall_t;

/* A's pending answer. */
typedef struct ajob {
  tnode_t *n;
  Example__EchoResponse_Closure done;
  void *cd;
  mprpc_trace_ctx_t ctx; /* saved by value for "later" */
  int left;              /* B calls still to make */
  int mode;
  mprpc_controller_t *ctl;
} ajob_t;

enum { M_ASYNC = 0, M_TWICE, M_LATER_CTL, M_LATER_CURRENT, M_LEAF, M_COUNT };

static uint64_t now(const trun_t *r) { return mprpc_sim_now(r->w); }

/* ---- the span set ------------------------------------------------------------ */

static size_t slot_of(const spanset_t *s, int64_t span) {
  uint64_t h = (uint64_t)span * 0x9e3779b97f4a7c15ull;
  size_t i = (size_t)(h >> 20) & (s->cap - 1);
  while (s->span[i] && s->span[i] != span)
    i = (i + 1) & (s->cap - 1);
  return i;
}

/* 0 when span is unknown, else its trace. */
static int64_t spanset_get(const spanset_t *s, int64_t span) {
  if (!s->cap || !span)
    return 0;
  size_t i = slot_of(s, span);
  return s->span[i] ? s->trace[i] : 0;
}

static void spanset_put(spanset_t *s, int64_t span, int64_t trace) {
  if (2 * (s->n + 1) > s->cap) {
    spanset_t g = {calloc(s->cap ? 2 * s->cap : 1024, sizeof(int64_t)),
                   calloc(s->cap ? 2 * s->cap : 1024, sizeof(int64_t)), s->cap ? 2 * s->cap : 1024,
                   0};
    if (!g.span || !g.trace)
      abort();
    for (size_t i = 0; i < s->cap; i++)
      if (s->span[i]) {
        size_t j = slot_of(&g, s->span[i]);
        g.span[j] = s->span[i];
        g.trace[j] = s->trace[i];
        g.n++;
      }
    free(s->span);
    free(s->trace);
    *s = g;
  }
  size_t i = slot_of(s, span);
  if (!s->span[i])
    s->n++;
  s->span[i] = span;
  s->trace[i] = trace;
}

/* ---- tier B ---------------------------------------------------------------------- */

static void b_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                   Example__EchoResponse_Closure done, void *cd) {
  tnode_t *n = (tnode_t *)svc;
  trun_t *r = n->run;
  const mprpc_server_call_meta_t *m = mprpc_server_call_meta(mprpc_server_call_from(cd));
  r->res->executions++;
  r->b_calls++;
  mprpc_sim_note(r->w, "b.span", (uint64_t)m->trace_id, (uint64_t)m->parent_span_id);
  int64_t t = spanset_get(&r->aspans, m->parent_span_id);
  if (!t)
    mprpc_sim_violate(&r->viol, "B span %016llx: parent %016llx is no A span",
                      (unsigned long long)m->span_id, (unsigned long long)m->parent_span_id);
  else if (t != m->trace_id)
    mprpc_sim_violate(
        &r->viol, "B span %016llx: trace %016llx, its parent A span is in trace %016llx",
        (unsigned long long)m->span_id, (unsigned long long)m->trace_id, (unsigned long long)t);
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = in->message;
  done(&resp, cd);
}

/* ---- tier A ---------------------------------------------------------------------- */

static void free_ctl(void *arg) { mprpc_controller_free(arg); }

static void a_b_done(const ProtobufCMessage *msg, void *arg);

static void a_call_b(ajob_t *j) {
  Example__EchoRequest inner = EXAMPLE__ECHO_REQUEST__INIT;
  inner.message = "b";
  if (mprpc_channel_call(j->n->to_b, 0, &inner.base, j->ctl, a_b_done, j) != 0) {
    mprpc_sim_violate(&j->n->run->viol, "A could not start its call to B");
    Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
    resp.message = "no call";
    j->done(&resp, j->cd);
    mprpc_controller_free(j->ctl);
    free(j);
  }
}

static void a_b_done(const ProtobufCMessage *msg, void *arg) {
  ajob_t *j = arg;
  trun_t *r = j->n->run;
  if (msg && --j->left > 0) {
    a_call_b(j); /* from the closure: still the handler's child */
    return;
  }
  if (!msg)
    mprpc_sim_violate(&r->viol, "A's call to B failed: %s",
                      mprpc_err_name(mprpc_controller_error_code(mprpc_controller_current())));
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = "ok";
  j->done(&resp, j->cd);
  if (j->ctl) /* not from inside its own call's closure */
    mprpc_sim_at(r->w, 0, MPRPC_SIM_EV_SCEN, 0, free_ctl, j->ctl);
  free(j);
}

/* "Another thread": an event outside the handler, with only the saved
 * context to go on. */
static void a_later(void *arg) {
  ajob_t *j = arg;
  if (mprpc__sim_bug & MPRPC_SIM_BUG_LOST_TRACE) /* the bug: the context stays behind */
    j->ctx = (mprpc_trace_ctx_t){0, 0};
  if (j->mode == M_LATER_CTL) {
    j->ctl = mprpc_controller_new();
    if (!j->ctl)
      abort();
    mprpc_controller_set_trace(j->ctl, j->ctx);
    a_call_b(j);
  } else {
    mprpc_trace_ctx_t prev = mprpc_trace_set_current(j->ctx);
    a_call_b(j);
    mprpc_trace_set_current(prev);
  }
}

static void a_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                   Example__EchoResponse_Closure done, void *cd) {
  tnode_t *n = (tnode_t *)svc;
  trun_t *r = n->run;
  mprpc_server_call_t *call = mprpc_server_call_from(cd);
  mprpc_trace_ctx_t ctx = mprpc_server_call_trace(call);
  const mprpc_server_call_meta_t *m = mprpc_server_call_meta(call);
  r->res->executions++;
  mprpc_sim_note(r->w, "a.span", (uint64_t)ctx.trace_id, (uint64_t)ctx.span_id);
  mprpc_trace_ctx_t cur = mprpc_trace_current();
  if (cur.trace_id != ctx.trace_id || cur.span_id != ctx.span_id)
    mprpc_sim_violate(&r->viol, "A's handler runs outside its call's context");
  if (ctx.trace_id != m->trace_id || ctx.span_id != m->span_id)
    mprpc_sim_violate(&r->viol, "A serves a traced request under other ids than it carried");
  int64_t seen = spanset_get(&r->aspans, ctx.span_id);
  if (seen && seen != ctx.trace_id)
    mprpc_sim_violate(&r->viol, "A span %016llx seen in two traces",
                      (unsigned long long)ctx.span_id);
  spanset_put(&r->aspans, ctx.span_id, ctx.trace_id);
  int mode = in->message && in->message[0] >= '0' ? in->message[0] - '0' : M_LEAF;
  if (mode >= M_COUNT)
    mode = M_LEAF;
  if (mode == M_LEAF) {
    Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
    resp.message = "ok";
    done(&resp, cd);
    return;
  }
  ajob_t *j = calloc(1, sizeof *j);
  if (!j)
    abort();
  *j = (ajob_t){.n = n, .done = done, .cd = cd, .ctx = ctx, .mode = mode,
                .left = mode == M_TWICE ? 2 : 1};
  if (mode == M_LATER_CTL || mode == M_LATER_CURRENT)
    mprpc_sim_at(r->w, mprpc_sim_rand_range(r->w, 0, 5 * MS), MPRPC_SIM_EV_SCEN, 1, a_later, j);
  else
    a_call_b(j);
}

/* ---- consumers ------------------------------------------------------------------- */

static void c_done(const ProtobufCMessage *msg, void *arg) {
  tcall_t *tc = arg;
  trun_t *r = tc->run;
  mprpc_controller_t *ctl = mprpc_controller_current();
  if (!msg) {
    r->res->failed++;
    mprpc_sim_violate(&r->viol, "a consumer call failed with %s in a run without faults",
                      mprpc_err_name(ctl ? mprpc_controller_error_code(ctl) : 0));
    free(tc);
    return;
  }
  r->res->ok++;
  int64_t t = mprpc_controller_trace_id(ctl), s = mprpc_controller_span_id(ctl);
  int64_t p = mprpc_controller_parent_span_id(ctl);
  mprpc_sim_note(r->w, "c.span", (uint64_t)t, (uint64_t)s);
  if (spanset_get(&r->aspans, s) != t)
    mprpc_sim_violate(&r->viol,
                      "the consumer's span %016llx (trace %016llx) is not how A served it",
                      (unsigned long long)s, (unsigned long long)t);
  if (tc->up_trace && (t != tc->up_trace || p != tc->up_span))
    mprpc_sim_violate(
        &r->viol, "a call joining upstream trace %016llx went out as trace %016llx parent %016llx",
        (unsigned long long)tc->up_trace, (unsigned long long)t, (unsigned long long)p);
  if (!tc->up_trace && p != 0)
    mprpc_sim_violate(&r->viol, "a root call went out with parent %016llx", (unsigned long long)p);
  free(tc);
}

static void c_issue(tcons_t *c) {
  trun_t *r = c->run;
  tcall_t *tc = calloc(1, sizeof *tc);
  if (!tc)
    abort();
  tc->run = r;
  char msg[8];
  snprintf(msg, sizeof msg, "%d", (int)mprpc_sim_rand_range(r->w, 0, M_COUNT - 1));
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = msg;
  mprpc_trace_ctx_t prev = {0, 0};
  bool up = mprpc_sim_chance(r->w, 0.25);
  if (up) { /* join an upstream trace, as a brpc caller's context */
    tc->up_trace = (int64_t)mprpc_sim_rand_range(r->w, 1, INT64_MAX);
    tc->up_span = (int64_t)mprpc_sim_rand_range(r->w, 1, INT64_MAX);
    prev = mprpc_trace_set_current((mprpc_trace_ctx_t){tc->up_trace, tc->up_span});
  }
  r->res->calls++;
  int rc = mprpc_channel_call(c->ch, 0, &req.base, NULL, c_done, tc);
  if (up)
    mprpc_trace_set_current(prev);
  if (rc != 0) {
    r->res->failed++;
    mprpc_sim_violate(&r->viol, "a consumer call could not start: %s", mprpc_err_name(rc));
    free(tc);
  }
}

static void c_tick(void *arg) {
  tcons_t *c = arg;
  trun_t *r = c->run;
  c->tick_ev = 0;
  if (now(r) >= r->duration_ns)
    return;
  c_issue(c);
  uint64_t mean = (uint64_t)(1e9 / r->rate);
  c->tick_ev = mprpc_sim_at(r->w, mprpc_sim_rand_range(r->w, 1, 2 * mean), MPRPC_SIM_EV_SCEN,
                            (uint64_t)c->idx, c_tick, c);
}

/* ---- set-up ------------------------------------------------------------------------ */

static int node_start(trun_t *r, tnode_t *n, bool tier_a) {
  n->run = r;
  n->host = mprpc_sim_net_add_host(r->net);
  for (int k = 0; k < 2; k++) {
    if (!(n->sl[k] = mprpc_sim_loop_new(r->w, n->host)))
      return MPRPC_ENOMEM;
    n->loops[k] = mprpc_sim_loop(n->sl[k]);
  }
  n->svc = tier_a ? (Example__EchoService_Service)EXAMPLE__ECHO_SERVICE__INIT(a_)
                  : (Example__EchoService_Service)EXAMPLE__ECHO_SERVICE__INIT(b_);
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = mprpc_sim_net_host_addr(r->net, n->host);
  o.transport = r->tr;
  o.loops = n->loops;
  o.nloops = 2;
  int rc = mprpc_server_new_in(&o, (mprpc_loop_owner_t){0}, &n->srv);
  if (rc == 0)
    rc = mprpc_server_add_service(n->srv, &n->svc.base);
  if (rc == 0)
    rc = mprpc_server_start(n->srv);
  return rc;
}

static int list_of(trun_t *r, const tnode_t *ns, int count, char *out, size_t cap) {
  size_t off = 0;
  for (int i = 0; i < count; i++) {
    int k = snprintf(out + off, cap - off, "%s%s:%u", i ? "," : "",
                     mprpc_sim_net_host_addr(r->net, ns[i].host),
                     (unsigned)mprpc_server_port(ns[i].srv));
    if (k < 0 || (size_t)k >= cap - off)
      return MPRPC_ERANGE;
    off += (size_t)k;
  }
  return 0;
}

static int channel(trun_t *r, mprpc_loop_t loop, const char *servers, mprpc_channel_t **out) {
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.loop = loop;
  o.transport = r->tr;
  o.servers = servers;
  o.timeout_ms = 5000;
  o.lb = (int)(mprpc_sim_seed(r->w) % 4);
  return mprpc_channel_new_in(&example__echo_service__descriptor, &o, out);
}

/* At the end: the rings agree with what the handlers saw. */
static void check_rings(trun_t *r) {
  mprpc_rpcz_span_t *sp = calloc(MPRPC_RPCZ_SPANS, sizeof *sp);
  if (!sp)
    abort();
  size_t nb = 0;
  for (int i = 0; i < NB; i++) {
    size_t n = mprpc_server_rpcz_snapshot(r->b[i].srv, sp, MPRPC_RPCZ_SPANS, 0);
    nb += n;
    for (size_t k = 0; k < n; k++)
      if (spanset_get(&r->aspans, sp[k].parent_span_id) != sp[k].trace_id) {
        mprpc_sim_violate(
            &r->viol, "B's /rpcz: span %016llx's parent %016llx is no A span of trace %016llx",
            (unsigned long long)sp[k].span_id, (unsigned long long)sp[k].parent_span_id,
            (unsigned long long)sp[k].trace_id);
        break;
      }
  }
  for (int i = 0; i < NA; i++) {
    size_t n = mprpc_server_rpcz_snapshot(r->a[i].srv, sp, MPRPC_RPCZ_SPANS, 0);
    for (size_t k = 0; k < n; k++)
      if (spanset_get(&r->aspans, sp[k].span_id) != sp[k].trace_id) {
        mprpc_sim_violate(&r->viol, "A's /rpcz: span %016llx was not served by A's handlers",
                          (unsigned long long)sp[k].span_id);
        break;
      }
  }
  if (r->b_calls == 0 || nb == 0)
    mprpc_sim_violate(&r->viol, "no calls reached tier B");
  free(sp);
}

static uint64_t log_clock(void *ctx) { return MPRPC_SIM_EPOCH_NS + mprpc_sim_now(ctx); }

int mprpc__sim_trace_hop_run(const mprpc_sim_opts_t *o, mprpc_sim_result_t *res) {
  memset(res, 0, sizeof *res);
  trun_t *r = calloc(1, sizeof *r);
  if (!r)
    return MPRPC_ENOMEM;
  int rc = MPRPC_ENOMEM;
  unsigned saved_bugs = mprpc__sim_bug;
  mprpc__sim_bug = o->bugs;
  r->o = o;
  r->res = res;
  r->w = mprpc_sim_world_new(o->seed);
  r->viol = (mprpc_sim_violations_t){.w = r->w, .o = o, .res = res};
  if (!r->w)
    goto out;
  mprpc_sim_set_trace(r->w, o->trace);
  mprpc_log_set_clock(log_clock, r->w);
  r->duration_ns = (o->duration_s ? o->duration_s : 10) * SEC;
  r->rate = o->rate > 0 ? o->rate : 60;
  mprpc_sim_net_config_t ncfg = {
      .chunk_max = o->chunk ? o->chunk : (size_t)mprpc_sim_rand_range(r->w, 0, 64),
      .chunk_fixed = o->chunk_fixed,
      .lat_min_ns = 100 * MPRPC_NS_PER_US,
      .lat_max_ns = o->lat_max_us ? o->lat_max_us * MPRPC_NS_PER_US
                                  : mprpc_sim_rand_range(r->w, 1, 5) * MS,
      .lat_tail_p = 0.01,
      .lat_tail_ns = 20 * MS};
  mprpc_sim_tracef(r->w, "scenario trace_hop seed %llu: %d consumers -> %d A -> %d B, %.0f s",
                   (unsigned long long)o->seed, NC, NA, NB, (double)r->duration_ns / 1e9);
  if (!(r->net = mprpc_sim_net_new(r->w, &ncfg)))
    goto out;
  r->tr = mprpc_sim_net_transport(r->net);
  for (int i = 0; i < NB; i++)
    if ((rc = node_start(r, &r->b[i], false)) < 0)
      goto out;
  char blist[256], alist[256];
  if ((rc = list_of(r, r->b, NB, blist, sizeof blist)) < 0)
    goto out;
  for (int i = 0; i < NA; i++) {
    if ((rc = node_start(r, &r->a[i], true)) < 0)
      goto out;
    if ((rc = channel(r, r->a[i].loops[i % 2], blist, &r->a[i].to_b)) < 0)
      goto out;
  }
  if ((rc = list_of(r, r->a, NA, alist, sizeof alist)) < 0)
    goto out;
  for (int i = 0; i < NC; i++) {
    tcons_t *c = &r->c[i];
    c->run = r;
    c->idx = i;
    c->host = mprpc_sim_net_add_host(r->net);
    rc = MPRPC_ENOMEM;
    if (!(c->sl = mprpc_sim_loop_new(r->w, c->host)))
      goto out;
    if ((rc = channel(r, mprpc_sim_loop(c->sl), alist, &c->ch)) < 0)
      goto out;
    c->tick_ev = mprpc_sim_at(r->w, mprpc_sim_rand_range(r->w, 1, 100 * MS), MPRPC_SIM_EV_SCEN,
                              (uint64_t)i, c_tick, c);
  }
  mprpc_sim_run_until(r->w, r->duration_ns + 8 * SEC); /* the last calls' deadlines */
  if (res->ok + res->failed != res->calls)
    mprpc_sim_violate(&r->viol, "%llu consumer calls never returned",
                      (unsigned long long)(res->calls - res->ok - res->failed));
  check_rings(r);
  rc = 0;
out:
  for (int i = 0; i < NC; i++) {
    if (r->c[i].tick_ev)
      mprpc_sim_cancel(r->w, r->c[i].tick_ev);
    if (r->c[i].ch)
      mprpc_channel_destroy(r->c[i].ch);
  }
  for (int i = 0; i < NA; i++)
    if (r->a[i].to_b)
      mprpc_channel_destroy(r->a[i].to_b);
  if (r->w)
    mprpc_sim_run_until(r->w, now(r) + 1 * SEC);
  for (int i = 0; i < NA; i++)
    mprpc_server_destroy(r->a[i].srv);
  for (int i = 0; i < NB; i++)
    mprpc_server_destroy(r->b[i].srv);
  if (r->w) {
    mprpc_sim_run_until(r->w, now(r) + 1 * SEC);
    res->sim_ns = mprpc_sim_now(r->w);
    res->events = mprpc_sim_events_run(r->w);
    res->hash = mprpc_sim_trace_hash(r->w);
  }
  mprpc_sim_net_free(r->net);
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < NA; i++)
      mprpc_sim_loop_free(r->a[i].sl[k]);
    for (int i = 0; i < NB; i++)
      mprpc_sim_loop_free(r->b[i].sl[k]);
  }
  for (int i = 0; i < NC; i++)
    mprpc_sim_loop_free(r->c[i].sl);
  free(r->aspans.span);
  free(r->aspans.trace);
  mprpc_sim_violations_end(&r->viol);
  mprpc_log_set_clock(NULL, NULL);
  mprpc_sim_world_free(r->w);
  free(r);
  mprpc__sim_bug = saved_bugs;
  return rc;
}
