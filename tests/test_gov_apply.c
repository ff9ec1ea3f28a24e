/*
 * The config centre end to end (issue 22): real providers (src/core/server*)
 * and a real channel on the simulator's loops, network and ZooKeeper;
 * config nodes are set in the virtual ZooKeeper and every key is checked by
 * what the calls do afterwards. Virtual time: no timing assertion depends
 * on the machine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
#include "../sim/sim.h"

#define SVC "example.EchoService"
#define MS 1000000ull
#define SEC 1000000000ull
#define NPROV 2

typedef struct prov {
  Example__EchoService_Service svc; /* first: the handler finds its provider */
  mprpc_sim_loop_t *sl;
  mprpc_loop_t loop;
  mprpc_registry_t reg;
  mprpc_server_t *srv;
  int host;
  uint64_t delay_ns; /* handler answers after this (0: at once) */
  int handled;
  char addr[64]; /* host:port once started */
} prov_t;

typedef struct world {
  mprpc_sim_world_t *w;
  mprpc_sim_net_t *net;
  mprpc_sim_zk_t *zk;
  prov_t p[NPROV];
  mprpc_sim_loop_t *cl;
  mprpc_registry_t creg;
  mprpc_channel_t *ch;
  int ok, failed, by_err[8], errs[8], nerr, fallback_runs;
  int inflight;
} world_t;

typedef struct later {
  Example__EchoResponse_Closure done;
  void *cd;
  char msg[64];
} later_t;

static void answer_later(void *arg) {
  later_t *l = arg;
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = l->msg;
  l->done(&resp, l->cd);
  free(l);
}

static void handler(Example__EchoService_Service *svc, const Example__EchoRequest *req,
                    Example__EchoResponse_Closure done, void *cd) {
  prov_t *p = (prov_t *)svc;
  p->handled++;
  if (p->delay_ns) {
    later_t *l = calloc(1, sizeof *l);
    assert_non_null(l);
    l->done = done;
    l->cd = cd;
    snprintf(l->msg, sizeof l->msg, "%s", req->message);
    mprpc_timer_start(p->loop, p->delay_ns, answer_later, l);
    return;
  }
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = req->message;
  done(&resp, cd);
}

static void handler_echo(Example__EchoService_Service *svc, const Example__EchoRequest *req,
                         Example__EchoResponse_Closure done, void *cd) {
  handler(svc, req, done, cd);
}

/* Provider options the next world_new uses: the local governance text and
 * whether the providers have no registry at all. */
static const char *g_prov_gov;
static bool g_prov_noreg;

static void prov_start(world_t *W, int i, const char *group, const char *version) {
  prov_t *p = &W->p[i];
  p->host = i;
  p->sl = mprpc_sim_loop_new(W->w, i);
  p->loop = mprpc_sim_loop(p->sl);
  assert_int_equal(mprpc_sim_zk_handle(W->zk, i, p->loop, &p->reg), 0);
  const char *addr = mprpc_sim_net_host_addr(W->net, i);
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = addr;
  o.advertise_host = addr;
  o.port = 8000;
  o.transport = mprpc_sim_net_transport(W->net);
  o.loops = &p->loop;
  o.nloops = 1;
  o.registry = g_prov_noreg ? (mprpc_registry_t){0} : p->reg;
  o.governance = g_prov_gov;
  o.governance_name = "provider.conf";
  o.group = group;
  o.version = version;
  o.drain_timeout_ms = 100;
  p->svc = (Example__EchoService_Service)EXAMPLE__ECHO_SERVICE__INIT(handler_);
  assert_int_equal(mprpc_server_new_in(&o, (mprpc_loop_owner_t){0}, &p->srv), 0);
  assert_int_equal(mprpc_server_add_service(p->srv, &p->svc.base), 0);
  assert_int_equal(mprpc_server_start(p->srv), 0);
  snprintf(p->addr, sizeof p->addr, "%s:%u", addr, (unsigned)mprpc_server_port(p->srv));
}


static void run_for(world_t *W, uint64_t ns) { mprpc_sim_run_until(W->w, mprpc_sim_now(W->w) + ns); }

static void world_new(world_t *W, const char *g0, const char *v0, const char *g1, const char *v1) {
  memset(W, 0, sizeof *W);
  W->w = mprpc_sim_world_new(22);
  W->net = mprpc_sim_net_new(W->w, NULL);
  for (int i = 0; i < NPROV + 1; i++)
    mprpc_sim_net_add_host(W->net);
  W->zk = mprpc_sim_zk_new(W->w, NULL);
  prov_start(W, 0, g0, v0);
  prov_start(W, 1, g1, v1);
  W->cl = mprpc_sim_loop_new(W->w, NPROV);
  assert_int_equal(mprpc_sim_zk_handle(W->zk, NPROV, mprpc_sim_loop(W->cl), &W->creg), 0);
}

static void channel_new(world_t *W, int lb, int max_retry, const char *group, const char *version) {
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.loop = mprpc_sim_loop(W->cl);
  o.transport = mprpc_sim_net_transport(W->net);
  o.registry = W->creg;
  o.lb = lb;
  o.max_retry = max_retry;
  o.timeout_ms = 1000;
  o.group = group;
  o.version = version;
  o.eject_base_ms = 200;
  assert_int_equal(mprpc_channel_new_in(&example__echo_service__descriptor, &o, &W->ch), 0);
  run_for(W, 500 * MS); /* providers registered, list and config delivered */
}

/* A channel over a fixed list (servers=, no registry) with local governance. */
static void channel_new_servers(world_t *W, int max_retry, const char *gov) {
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  char servers[160];
  snprintf(servers, sizeof servers, "%s,%s", W->p[0].addr, W->p[1].addr);
  o.loop = mprpc_sim_loop(W->cl);
  o.transport = mprpc_sim_net_transport(W->net);
  o.servers = servers;
  o.max_retry = max_retry;
  o.timeout_ms = 1000;
  o.governance = gov;
  o.governance_name = "consumer.conf";
  assert_int_equal(mprpc_channel_new_in(&example__echo_service__descriptor, &o, &W->ch), 0);
  run_for(W, 100 * MS);
}

/* Refusals of method Echo summed over the providers. */
static void refused(world_t *W, uint64_t *rate, uint64_t *conc) {
  *rate = *conc = 0;
  for (int i = 0; i < NPROV; i++) {
    mprpc_method_stats_t ms;
    assert_int_equal(mprpc_server_method_stats(W->p[i].srv, SVC, "Echo", &ms), 0);
    *rate += ms.refused_rate_limit;
    *conc += ms.refused_max_concurrency;
  }
}

static void world_free(world_t *W) {
  if (W->ch)
    mprpc_channel_destroy(W->ch);
  run_for(W, 100 * MS);
  for (int i = 0; i < NPROV; i++) {
    prov_t *p = &W->p[i];
    if (p->srv) {
      mprpc_server_shutdown(p->srv, NULL, NULL);
      run_for(W, 500 * MS);
      mprpc_server_destroy(p->srv);
    }
  }
  run_for(W, 100 * MS);
  mprpc_registry_close(W->creg);
  for (int i = 0; i < NPROV; i++)
    mprpc_registry_close(W->p[i].reg);
  run_for(W, 100 * MS);
  mprpc_sim_net_free(W->net);
  mprpc_sim_zk_free(W->zk);
  for (int i = 0; i < NPROV; i++)
    mprpc_sim_loop_free(W->p[i].sl);
  mprpc_sim_loop_free(W->cl);
  mprpc_sim_world_free(W->w);
}

typedef struct callrec {
  world_t *W;
  mprpc_controller_t *ctl;
  bool done;
  struct callrec *next;
} callrec_t;

static callrec_t *g_recs;

static void count_err(world_t *W, int err) {
  for (int i = 0; i < W->nerr; i++)
    if (W->errs[i] == err) {
      W->by_err[i]++;
      return;
    }
  if (W->nerr < 8) {
    W->errs[W->nerr] = err;
    W->by_err[W->nerr++] = 1;
  }
}

static int errs_of(const world_t *W, int err) {
  for (int i = 0; i < W->nerr; i++)
    if (W->errs[i] == err)
      return W->by_err[i];
  return 0;
}

static void on_done(const ProtobufCMessage *resp, void *arg) {
  callrec_t *r = arg;
  world_t *W = r->W;
  W->inflight--;
  if (resp)
    W->ok++;
  else {
    W->failed++;
    count_err(W, mprpc_controller_error_code(r->ctl));
  }
  r->done = true; /* freed by calls(): not from inside its own closure */
}

static void call_one(world_t *W) {
  callrec_t *r = calloc(1, sizeof *r);
  assert_non_null(r);
  r->W = W;
  r->ctl = mprpc_controller_new();
  r->next = g_recs;
  g_recs = r;
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "hi";
  W->inflight++;
  assert_int_equal(mprpc_channel_call(W->ch, 0, &req.base, r->ctl, (ProtobufCClosure)on_done, r), 0);
}

/* n calls, one every gap_ns, then the world runs until they are all done. */
static void calls(world_t *W, int n, uint64_t gap_ns) {
  W->ok = W->failed = W->nerr = 0;
  memset(W->by_err, 0, sizeof W->by_err);
  for (int i = 0; i < n; i++) {
    call_one(W);
    if (gap_ns)
      run_for(W, gap_ns);
  }
  for (int i = 0; i < 400 && W->inflight > 0; i++)
    run_for(W, 10 * MS);
  assert_int_equal(W->inflight, 0);
  while (g_recs) {
    callrec_t *r = g_recs;
    g_recs = r->next;
    assert_true(r->done);
    mprpc_controller_free(r->ctl);
    free(r);
  }
}

static uint64_t ep_calls(world_t *W, const char *name) {
  mprpc_channel_endpoint_info_t eps[8];
  size_t n = mprpc_channel_endpoints(W->ch, eps, 8);
  for (size_t i = 0; i < n && i < 8; i++)
    if (strcmp(eps[i].name, name) == 0)
      return eps[i].calls;
  return UINT64_MAX;
}

static void set_config(world_t *W, const char *node, const char *text) {
  mprpc_sim_zk_set_config(W->zk, node, text);
  run_for(W, 1 * SEC); /* the bound: applied within one second */
}

/* ---- consumer keys ------------------------------------------------------- */

static void test_gov_apply_disabled_stops_calls(void **state) {
  (void)state;
  world_t W;
  world_new(&W, NULL, NULL, NULL, NULL);
  channel_new(&W, MPRPC_LB_RR, 2, NULL, NULL);
  calls(&W, 40, 1 * MS);
  assert_int_equal(W.ok, 40);
  assert_true(W.p[0].handled > 0 && W.p[1].handled > 0);
  char text[256];
  snprintf(text, sizeof text, "disabled.%s=1\n", W.p[0].addr);
  set_config(&W, SVC, text);
  int h0 = W.p[0].handled, h1 = W.p[1].handled;
  uint64_t c0 = ep_calls(&W, W.p[0].addr);
  calls(&W, 40, 1 * MS);
  assert_int_equal(W.ok, 40);
  assert_int_equal(W.p[0].handled, h0); /* drained: not one new call */
  assert_int_equal(W.p[1].handled, h1 + 40);
  assert_int_equal(ep_calls(&W, W.p[0].addr), c0);
  /* both disabled: no provider to call, a clear error, nothing sent */
  snprintf(text, sizeof text, "disabled.%s=1\ndisabled.%s=1\n", W.p[0].addr, W.p[1].addr);
  set_config(&W, SVC, text);
  calls(&W, 5, 1 * MS);
  assert_int_equal(W.failed, 5);
  assert_int_equal(errs_of(&W, MPRPC_ENOENDPOINT), 5);
  assert_int_equal(W.p[1].handled, h1 + 40);
  /* the node deleted: both serve again */
  set_config(&W, SVC, NULL);
  calls(&W, 20, 1 * MS);
  assert_int_equal(W.ok, 20);
  assert_true(W.p[0].handled > h0);
  world_free(&W);
}

static void test_gov_apply_weight_shifts_traffic(void **state) {
  (void)state;
  world_t W;
  world_new(&W, NULL, NULL, NULL, NULL);
  channel_new(&W, MPRPC_LB_RANDOM, 2, NULL, NULL);
  char text[256];
  snprintf(text, sizeof text, "weight.%s=900\nweight.%s=100\n", W.p[0].addr, W.p[1].addr);
  set_config(&W, "_global", text);
  calls(&W, 400, 0);
  assert_int_equal(W.ok, 400);
  /* 9:1 expected; anything above 3:1 is far outside chance for 400 calls */
  assert_true(W.p[0].handled > 3 * W.p[1].handled);
  mprpc_channel_endpoint_info_t eps[4];
  size_t n = mprpc_channel_endpoints(W.ch, eps, 4);
  assert_int_equal(n, 2);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(eps[i].weight, strcmp(eps[i].name, W.p[0].addr) == 0 ? 900 : 100);
  world_free(&W);
}

static void test_gov_apply_timeout_and_retry_defaults(void **state) {
  (void)state;
  world_t W;
  world_new(&W, NULL, NULL, NULL, NULL);
  W.p[0].delay_ns = W.p[1].delay_ns = 300 * MS;
  channel_new(&W, MPRPC_LB_RR, 2, NULL, NULL);
  set_config(&W, SVC, "timeout_ms.Echo=50\nmax_retry.Echo=0\n");
  mprpc_channel_stats_t st0, st1;
  mprpc_channel_stats(W.ch, &st0);
  uint64_t t0 = mprpc_sim_now(W.w);
  calls(&W, 1, 0);
  assert_int_equal(W.failed, 1);
  assert_int_equal(errs_of(&W, MPRPC_ERPCTIMEDOUT), 1);
  mprpc_channel_stats(W.ch, &st1);
  assert_int_equal(st1.attempts - st0.attempts, 1); /* max_retry.Echo=0 */
  (void)t0;
  /* a bad value keeps the last good one */
  set_config(&W, SVC, "timeout_ms.Echo=soon\nmax_retry.Echo=0\n");
  W.p[0].delay_ns = W.p[1].delay_ns = 100 * MS;
  calls(&W, 1, 0);
  assert_int_equal(errs_of(&W, MPRPC_ERPCTIMEDOUT), 1); /* still 50 ms, not 1000 */
  /* the key removed: the channel's own timeout (1 s) lets it finish */
  set_config(&W, SVC, "max_retry.Echo=0\n");
  calls(&W, 1, 0);
  assert_int_equal(W.ok, 1);
  world_free(&W);
}

static int fallback_cb(void *arg, const ProtobufCMessage *request, ProtobufCMessage *response) {
  world_t *W = arg;
  W->fallback_runs++;
  const Example__EchoRequest *req = (const Example__EchoRequest *)request;
  assert_string_equal(req->message, "hi");
  ((Example__EchoResponse *)response)->message = "from the fallback";
  return 0;
}

static void test_gov_apply_degrade_fail_and_fallback(void **state) {
  (void)state;
  world_t W;
  world_new(&W, NULL, NULL, NULL, NULL);
  channel_new(&W, MPRPC_LB_RR, 2, NULL, NULL);
  set_config(&W, SVC, "degrade.Echo=fail\n");
  int h = W.p[0].handled + W.p[1].handled;
  calls(&W, 3, 0);
  assert_int_equal(W.failed, 3);
  assert_int_equal(errs_of(&W, MPRPC_EDEGRADED), 3);
  assert_int_equal(W.p[0].handled + W.p[1].handled, h); /* nothing sent */
  mprpc_channel_stats_t st;
  mprpc_channel_stats(W.ch, &st);
  assert_int_equal(st.degraded, 3);
  assert_int_equal(st.fallbacks, 0);
  assert_int_equal(st.attempts, 0);

  /* fallback without a fallback: a clear error too */
  set_config(&W, SVC, "degrade.Echo=fallback\n");
  calls(&W, 1, 0);
  assert_int_equal(errs_of(&W, MPRPC_EDEGRADED), 1);
  assert_int_equal(mprpc_channel_set_fallback(W.ch, "Nope", fallback_cb, &W), MPRPC_ENOTFOUND);
  assert_int_equal(mprpc_channel_set_fallback(W.ch, "Echo", fallback_cb, &W), 0);
  calls(&W, 2, 0);
  assert_int_equal(W.ok, 2);
  assert_int_equal(W.fallback_runs, 2);
  mprpc_channel_stats(W.ch, &st);
  assert_int_equal(st.degraded, 6);
  assert_int_equal(st.fallbacks, 2);
  assert_int_equal(W.p[0].handled + W.p[1].handled, h);

  /* off: providers again */
  set_config(&W, SVC, "degrade.Echo=off\n");
  calls(&W, 4, 0);
  assert_int_equal(W.ok, 4);
  assert_int_equal(W.p[0].handled + W.p[1].handled, h + 4);
  world_free(&W);
}

static void test_gov_apply_fallback_when_providers_unreachable(void **state) {
  (void)state;
  world_t W;
  world_new(&W, NULL, NULL, NULL, NULL);
  channel_new(&W, MPRPC_LB_RR, 2, NULL, NULL);
  assert_int_equal(mprpc_channel_set_fallback(W.ch, "Echo", fallback_cb, &W), 0);
  calls(&W, 4, 0);
  assert_int_equal(W.fallback_runs, 0);
  for (int i = 0; i < NPROV; i++)
    mprpc_sim_net_crash(W.net, i);
  /* the first calls find the connections gone and eject both endpoints;
   * then the fallback answers without trying them */
  calls(&W, 30, 20 * MS);
  assert_true(W.fallback_runs > 0);
  assert_int_equal(W.ok + W.failed, 30);
  mprpc_channel_stats_t st;
  mprpc_channel_stats(W.ch, &st);
  assert_int_equal(st.fallbacks, (uint64_t)W.fallback_runs);
  world_free(&W);
}

/* ---- groups and versions ------------------------------------------------ */

static void test_gov_apply_group_and_version_selection(void **state) {
  (void)state;
  world_t W;
  world_new(&W, "blue", "1.2.0", NULL, "2.0.1");
  channel_new(&W, MPRPC_LB_RR, 2, "blue", NULL);
  calls(&W, 10, 0);
  assert_int_equal(W.ok, 10);
  assert_int_equal(W.p[0].handled, 10);
  assert_int_equal(W.p[1].handled, 0);
  /* the config centre's selection wins over the channel's */
  set_config(&W, SVC, "group=default\nversion=2.*\n");
  calls(&W, 10, 0);
  assert_int_equal(W.p[1].handled, 10);
  assert_int_equal(W.p[0].handled, 10);
  /* nothing matches: not called, a clear error */
  set_config(&W, SVC, "group=blue\nversion=3.*\n");
  calls(&W, 2, 0);
  assert_int_equal(errs_of(&W, MPRPC_ENOENDPOINT), 2);
  assert_int_equal(W.p[0].handled + W.p[1].handled, 20);
  world_free(&W);

  /* a bad pattern is refused at creation */
  world_new(&W, NULL, NULL, NULL, NULL);
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.loop = mprpc_sim_loop(W.cl);
  o.transport = mprpc_sim_net_transport(W.net);
  o.registry = W.creg;
  o.version = "1.*.2";
  mprpc_channel_t *ch = NULL;
  assert_int_equal(mprpc_channel_new_in(&example__echo_service__descriptor, &o, &ch), MPRPC_EINVAL);
  o.version = NULL;
  o.group = "no spaces";
  assert_int_equal(mprpc_channel_new_in(&example__echo_service__descriptor, &o, &ch), MPRPC_EINVAL);
  world_free(&W);
}

/* ---- provider keys ----------------------------------------------------- */

static void test_gov_apply_rate_limit(void **state) {
  (void)state;
  world_t W;
  world_new(&W, NULL, NULL, NULL, NULL);
  channel_new(&W, MPRPC_LB_RR, 0, NULL, NULL);
  set_config(&W, SVC, "rate_limit.Echo=20\n");
  /* 2 s of calls at 200/s; the two providers admit 20/s each plus a burst of 2 */
  int h = W.p[0].handled + W.p[1].handled;
  calls(&W, 400, 5 * MS);
  int admitted = W.p[0].handled + W.p[1].handled - h;
  fprintf(stderr, "rate limit: %d of 400 admitted, %d ELIMIT\n", admitted,
          errs_of(&W, MPRPC_ELIMIT));
  assert_true(admitted <= 2 * (2 + 20 * 2) + 2);
  assert_true(admitted >= 2 * 20 * 2 - 10);
  assert_int_equal(W.ok, admitted);
  assert_int_equal(errs_of(&W, MPRPC_ELIMIT), 400 - admitted);
  /* a bad value keeps the limit */
  set_config(&W, SVC, "rate_limit.Echo=fast\n");
  h = W.p[0].handled + W.p[1].handled;
  calls(&W, 200, 5 * MS);
  assert_true(W.p[0].handled + W.p[1].handled - h <= 2 * (2 + 20) + 4);
  /* lifted */
  set_config(&W, SVC, "rate_limit.Echo=0\n");
  calls(&W, 50, 1 * MS);
  assert_int_equal(W.ok, 50);
  world_free(&W);
}

static void test_gov_apply_elimit_moves_to_another_provider(void **state) {
  (void)state;
  world_t W;
  world_new(&W, NULL, NULL, NULL, NULL);
  W.p[0].delay_ns = W.p[1].delay_ns = 200 * MS;
  channel_new(&W, MPRPC_LB_RR, 2, NULL, NULL);
  set_config(&W, SVC, "max_concurrency.Echo=3\n");
  /* 6 at once: 3 fit on each provider; a refusal (ELIMIT) is retried on the other */
  calls(&W, 6, 0);
  assert_int_equal(W.ok, 6);
  assert_int_equal(W.p[0].handled, 3);
  assert_int_equal(W.p[1].handled, 3);
  /* 10 at once: 4 are refused everywhere */
  calls(&W, 10, 0);
  assert_int_equal(W.ok, 6);
  assert_int_equal(errs_of(&W, MPRPC_ELIMIT), 4);
  world_free(&W);
}

static void test_gov_apply_auto_limiter_sheds_load(void **state) {
  (void)state;
  world_t W;
  world_new(&W, NULL, NULL, NULL, NULL);
  W.p[0].delay_ns = W.p[1].delay_ns = 10 * MS;
  channel_new(&W, MPRPC_LB_RR, 0, NULL, NULL);
  set_config(&W, SVC, "max_concurrency.Echo=auto\n");
  calls(&W, 100, 10 * MS); /* about one call in flight: all served */
  assert_int_equal(W.ok, 100);
  calls(&W, 60, 0); /* 30 at once on each provider: past the limit (it starts at 4) */
  assert_true(W.ok > 0);
  assert_true(errs_of(&W, MPRPC_ELIMIT) > 0);
  assert_int_equal(W.ok + errs_of(&W, MPRPC_ELIMIT), 60);
  world_free(&W);
}

/* ---- the process's own config (no config centre) ------------------------- */

static void test_gov_apply_local_rate_limit_without_registry(void **state) {
  (void)state;
  world_t W;
  g_prov_noreg = true;
  g_prov_gov = "rate_limit.Echo=20\nmax_concurrency.Echo=lots\n"; /* the bad line loses nothing */
  world_new(&W, NULL, NULL, NULL, NULL);
  g_prov_noreg = false;
  g_prov_gov = NULL;
  channel_new_servers(&W, 0, NULL);
  int h = W.p[0].handled + W.p[1].handled;
  calls(&W, 400, 5 * MS); /* 2 s at 200/s, 20/s + a burst of 2 per provider */
  int admitted = W.p[0].handled + W.p[1].handled - h;
  assert_true(admitted <= 2 * (2 + 20 * 2) + 2);
  assert_true(admitted >= 2 * 20 * 2 - 10);
  assert_int_equal(W.ok, admitted);
  assert_int_equal(errs_of(&W, MPRPC_ELIMIT), 400 - admitted);
  uint64_t rate, conc;
  refused(&W, &rate, &conc);
  assert_int_equal(rate, (uint64_t)(400 - admitted));
  assert_int_equal(conc, 0);
  world_free(&W);
}

static void test_gov_apply_local_config_under_the_centre(void **state) {
  (void)state;
  world_t W;
  g_prov_gov = "rate_limit.Echo=20\n";
  world_new(&W, NULL, NULL, NULL, NULL);
  g_prov_gov = NULL;
  channel_new(&W, MPRPC_LB_RR, 0, NULL, NULL);
  calls(&W, 200, 5 * MS); /* the local limit holds with zk:// too */
  assert_true(errs_of(&W, MPRPC_ELIMIT) > 0);
  set_config(&W, SVC, "rate_limit.Echo=off\n"); /* the node wins */
  calls(&W, 100, 1 * MS);
  assert_int_equal(W.ok, 100);
  set_config(&W, SVC, NULL); /* gone: the local default again */
  calls(&W, 200, 5 * MS);
  assert_true(errs_of(&W, MPRPC_ELIMIT) > 0);
  world_free(&W);
}

static void test_gov_apply_refusals_by_reason(void **state) {
  (void)state;
  world_t W;
  world_new(&W, NULL, NULL, NULL, NULL);
  channel_new(&W, MPRPC_LB_RR, 0, NULL, NULL);
  set_config(&W, SVC, "rate_limit.Echo=1/1\n");
  calls(&W, 20, 0); /* one per provider passes */
  int rate_refused = errs_of(&W, MPRPC_ELIMIT);
  assert_int_equal(rate_refused, 18);
  uint64_t rate, conc;
  refused(&W, &rate, &conc);
  assert_int_equal(rate, 18);
  assert_int_equal(conc, 0);
  W.p[0].delay_ns = W.p[1].delay_ns = 100 * MS;
  set_config(&W, SVC, "max_concurrency.Echo=1\n");
  calls(&W, 6, 0); /* one in flight per provider */
  assert_int_equal(W.ok, 2);
  assert_int_equal(errs_of(&W, MPRPC_ELIMIT), 4);
  refused(&W, &rate, &conc);
  assert_int_equal(rate, 18);
  assert_int_equal(conc, 4);
  /* the adaptive limiter's refusals are concurrency refusals too */
  set_config(&W, SVC, "max_concurrency.Echo=auto\n");
  calls(&W, 40, 0);
  int auto_refused = errs_of(&W, MPRPC_ELIMIT);
  assert_true(auto_refused > 0);
  refused(&W, &rate, &conc);
  assert_int_equal(rate, 18);
  assert_int_equal(conc, 4 + (uint64_t)auto_refused);
  world_free(&W);
}

static void test_gov_apply_local_channel_keys_with_servers(void **state) {
  (void)state;
  world_t W;
  world_new(&W, NULL, NULL, NULL, NULL);
  W.p[0].delay_ns = W.p[1].delay_ns = 300 * MS;
  channel_new_servers(&W, 0, "timeout_ms.Echo=50\ntimeout_ms.Nope=x\n");
  int h = W.p[0].handled + W.p[1].handled;
  uint64_t t0 = mprpc_sim_now(W.w);
  calls(&W, 1, 0);
  assert_int_equal(errs_of(&W, MPRPC_ERPCTIMEDOUT), 1); /* 50 ms, not the channel's 1 s */
  assert_true(mprpc_sim_now(W.w) - t0 < 1000 * MS);
  assert_int_equal(W.p[0].handled + W.p[1].handled, h + 1);
  mprpc_channel_destroy(W.ch);
  W.ch = NULL;
  run_for(&W, 500 * MS);
  char gov[256];
  snprintf(gov, sizeof gov, "degrade.Echo=fail\ndisabled.%s=1\n", W.p[0].addr);
  channel_new_servers(&W, 0, gov);
  h = W.p[0].handled + W.p[1].handled;
  calls(&W, 5, 0);
  assert_int_equal(errs_of(&W, MPRPC_EDEGRADED), 5);
  assert_int_equal(W.p[0].handled + W.p[1].handled, h); /* nothing sent */
  mprpc_channel_endpoint_info_t eps[4];
  size_t n = mprpc_channel_endpoints(W.ch, eps, 4);
  assert_int_equal(n, 2);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(eps[i].disabled, strcmp(eps[i].name, W.p[0].addr) == 0);
  world_free(&W);
}

static void test_gov_apply_log_level(void **state) {
  (void)state;
  int before = mprpc__log_level;
  world_t W;
  world_new(&W, NULL, NULL, NULL, NULL);
  channel_new(&W, MPRPC_LB_RR, 0, NULL, NULL);
  set_config(&W, "_global", "log_level=error\n");
  assert_int_equal(mprpc__log_level, MPRPC_LOG_LEVEL_ERROR);
  set_config(&W, "_global", "log_level=loud\n"); /* bad: kept */
  assert_int_equal(mprpc__log_level, MPRPC_LOG_LEVEL_ERROR);
  world_free(&W);
  mprpc_log_set_level(before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gov_apply_disabled_stops_calls),
      cmocka_unit_test(test_gov_apply_weight_shifts_traffic),
      cmocka_unit_test(test_gov_apply_timeout_and_retry_defaults),
      cmocka_unit_test(test_gov_apply_degrade_fail_and_fallback),
      cmocka_unit_test(test_gov_apply_fallback_when_providers_unreachable),
      cmocka_unit_test(test_gov_apply_group_and_version_selection),
      cmocka_unit_test(test_gov_apply_rate_limit),
      cmocka_unit_test(test_gov_apply_elimit_moves_to_another_provider),
      cmocka_unit_test(test_gov_apply_auto_limiter_sheds_load),
      cmocka_unit_test(test_gov_apply_local_rate_limit_without_registry),
      cmocka_unit_test(test_gov_apply_local_config_under_the_centre),
      cmocka_unit_test(test_gov_apply_refusals_by_reason),
      cmocka_unit_test(test_gov_apply_local_channel_keys_with_servers),
      cmocka_unit_test(test_gov_apply_log_level),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
