/* Service governance: config-centre values (core/govcfg), the token bucket
 * (core/ratelimit), the adaptive concurrency limiter (core/limiter) and
 * version/group selection (core/select). Every clock here is virtual. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/govcfg.h"
#include "core/limiter.h"
#include "core/ratelimit.h"
#include "core/select.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "../sim/sim.h"

#define SVC "example.EchoService"
#define MS 1000000ull
#define SEC 1000000000ull

/* --- report collector ------------------------------------------------- */

typedef struct problems {
  int n;
  char text[32][600];
} problems_t;

static void collect(void *ud, const char *node, int line, const char *key, const char *problem) {
  problems_t *p = ud;
  if (p->n < 32)
    snprintf(p->text[p->n], sizeof p->text[0], "%s:%d: [%s] %s", node, line, key, problem);
  p->n++;
}

static bool has_problem(const problems_t *p, const char *needle) {
  for (int i = 0; i < p->n && i < 32; i++)
    if (strstr(p->text[i], needle))
      return true;
  return false;
}

static void dump(const problems_t *p) {
  for (int i = 0; i < p->n && i < 32; i++)
    fprintf(stderr, "  problem: %s\n", p->text[i]);
}

static mprpc__gov_node_t *parse(const char *name, const char *text, const mprpc__gov_node_t *prev,
                                problems_t *p) {
  mprpc__gov_node_t *n;
  size_t np;
  assert_int_equal(mprpc__gov_node_parse(name, text, strlen(text), prev, collect, p, &n, &np), 0);
  assert_int_equal((int)np, p->n);
  return n;
}

static mprpc__gov_rules_t *build(const mprpc__gov_node_t *g, const mprpc__gov_node_t *s) {
  mprpc__gov_rules_t *r;
  assert_int_equal(mprpc__gov_rules_build(SVC, g, s, &r), 0);
  return r;
}

/* --- config-centre values --------------------------------------------- */

static void test_gov_every_key(void **state) {
  (void)state;
  problems_t p = {0};
  mprpc__gov_node_t *g = parse(MPRPC__GOV_GLOBAL,
                               "\xEF\xBB\xBF# platform defaults\r\n"
                               "log_level = debug\r\n"
                               "\n"
                               "  timeout_ms=800  \n"
                               "disabled.10.0.0.9:8000=yes\n",
                               NULL, &p);
  mprpc__gov_node_t *s = parse(SVC,
                               "rate_limit.Echo=500\n"
                               "rate_limit.Ping=100/7\n"
                               "rate_limit.Off=off\n"
                               "max_concurrency.Echo=auto\n"
                               "max_concurrency.Ping=64\n"
                               "max_concurrency.Off=0\n"
                               "timeout_ms.Echo=250\n"
                               "max_retry.Echo=2\n"
                               "max_retry=0\n"
                               "degrade.Ping=fallback\n"
                               "degrade.Off=FAIL\n"
                               "weight.10.0.0.1:8000=300\n"
                               "weight.[::1]:8001=5\n"
                               "disabled.10.0.0.2:8000=1\n"
                               "disabled.10.0.0.3:8000=off\n"
                               "group=canary\n"
                               "version=1.2.*,2.*\n",
                               NULL, &p);
  if (p.n)
    dump(&p);
  assert_int_equal(p.n, 0);
  assert_int_equal(mprpc__gov_node_count(g), 3);
  assert_int_equal(mprpc__gov_node_count(s), 17);
  mprpc__gov_rules_t *r = build(g, s);

  const mprpc__gov_method_t *m = mprpc__gov_rules_method(r, "Echo");
  assert_true(m->set & MPRPC__GOV_RATE);
  assert_int_equal(m->rate_qps, 500);
  assert_int_equal(m->rate_burst, 50); /* default: 100 ms worth */
  assert_true(m->set & MPRPC__GOV_CONC);
  assert_true(m->concurrency_auto);
  assert_int_equal(m->timeout_ms, 250);
  assert_int_equal(m->max_retry, 2);
  assert_false(m->set & MPRPC__GOV_DEGRADE);

  m = mprpc__gov_rules_method(r, "Ping");
  assert_int_equal(m->rate_qps, 100);
  assert_int_equal(m->rate_burst, 7);
  assert_false(m->concurrency_auto);
  assert_int_equal(m->max_concurrency, 64);
  assert_int_equal(m->timeout_ms, 800); /* _global's service-wide value */
  assert_true(m->set & MPRPC__GOV_RETRY);
  assert_int_equal(m->max_retry, 0); /* the service's `max_retry` */
  assert_int_equal(m->degrade, MPRPC__GOV_DEGRADE_FALLBACK);

  m = mprpc__gov_rules_method(r, "Off");
  assert_true(m->set & MPRPC__GOV_RATE);
  assert_int_equal(m->rate_qps, 0);
  assert_true(m->set & MPRPC__GOV_CONC);
  assert_int_equal(m->max_concurrency, 0);
  assert_false(m->concurrency_auto);
  assert_int_equal(m->degrade, MPRPC__GOV_DEGRADE_FAIL);

  /* a method no key names: the service-wide values */
  m = mprpc__gov_rules_method(r, "Other");
  assert_int_equal(m->set, MPRPC__GOV_TIMEOUT | MPRPC__GOV_RETRY);
  assert_int_equal(m->timeout_ms, 800);

  const mprpc__gov_endpoint_t *e = mprpc__gov_rules_endpoint(r, "10.0.0.1", 8000);
  assert_int_equal(e->set, MPRPC__GOV_WEIGHT);
  assert_int_equal(e->weight, 300);
  e = mprpc__gov_rules_endpoint(r, "::1", 8001);
  assert_int_equal(e->weight, 5);
  assert_true(mprpc__gov_rules_endpoint(r, "10.0.0.2", 8000)->disabled);
  e = mprpc__gov_rules_endpoint(r, "10.0.0.3", 8000);
  assert_true(e->set & MPRPC__GOV_DISABLED);
  assert_false(e->disabled);
  assert_true(mprpc__gov_rules_endpoint(r, "10.0.0.9", 8000)->disabled); /* from _global */
  assert_int_equal(mprpc__gov_rules_endpoint(r, "10.0.0.1", 8001)->set, 0);
  assert_int_equal(mprpc__gov_rules_log_level(r), MPRPC_LOG_LEVEL_DEBUG);
  assert_string_equal(mprpc__gov_rules_group(r), "canary");
  assert_string_equal(mprpc__gov_rules_version(r), "1.2.*,2.*");
  assert_string_equal(mprpc__gov_rules_service(r), SVC);

  /* no rules at all: nothing set, never NULL */
  assert_int_equal(mprpc__gov_rules_method(NULL, "Echo")->set, 0);
  assert_int_equal(mprpc__gov_rules_endpoint(NULL, "h", 1)->set, 0);
  assert_int_equal(mprpc__gov_rules_log_level(NULL), -1);

  mprpc__gov_rules_unref(r);
  mprpc__gov_node_free(g);
  mprpc__gov_node_free(s);
}

static void test_gov_bad_values_keep_last_good(void **state) {
  (void)state;
  problems_t p = {0};
  mprpc__gov_node_t *v1 = parse(SVC,
                                "timeout_ms.Echo=250\n"
                                "rate_limit.Echo=100/10\n"
                                "weight.10.0.0.1:8000=3\n"
                                "degrade.Echo=fail\n"
                                "group=blue\n",
                                NULL, &p);
  assert_int_equal(p.n, 0);
  mprpc__gov_node_t *v2 = parse(SVC,
                                "# an operator's bad edit\n"
                                "timeout_ms.Echo=25O\n"       /* line 2: letter O */
                                "rate_limit.Echo=lots\n"      /* line 3 */
                                "weight.10.0.0.1:8000=-1\n"   /* line 4 */
                                "degrade.Echo=fallback\n"     /* line 5: good, replaces */
                                "max_retry.Echo=101\n"        /* line 6: no previous value */
                                "group=no spaces\n"           /* line 7 */
                                "colour=blue\n"               /* line 8 */
                                "just text\n"                 /* line 9 */
                                "log_level=info\n"            /* line 10: _global only */
                                "timeout_ms.Echo.x=1\n"       /* line 11: bad method */
                                "weight.10.0.0.1=5\n"         /* line 12: no port */
                                "=1\n"                        /* line 13 */
                                "timeout_ms.Ping=10\n"        /* line 14 */
                                "timeout_ms.Ping=20\n",       /* line 15: again */
                                v1, &p);
  assert_true(has_problem(&p, SVC ":2: [timeout_ms.Echo] bad value '25O'"));
  assert_true(has_problem(&p, "keeping 250"));
  assert_true(has_problem(&p, SVC ":3: [rate_limit.Echo] bad value 'lots'"));
  assert_true(has_problem(&p, "keeping 100/10"));
  assert_true(has_problem(&p, SVC ":4: [weight.10.0.0.1:8000] bad value '-1'"));
  assert_true(has_problem(&p, SVC ":6: [max_retry.Echo] bad value '101'"));
  assert_true(has_problem(&p, "expected an integer 0..100); key ignored"));
  assert_true(has_problem(&p, SVC ":7: [group]"));
  assert_true(has_problem(&p, SVC ":8: [colour] unknown key 'colour'"));
  assert_true(has_problem(&p, SVC ":9: [] 'just text': expected key=value"));
  assert_true(has_problem(&p, SVC ":10: [log_level] log_level is read from _global only"));
  assert_true(has_problem(&p, SVC ":11: [timeout_ms.Echo.x] bad method name"));
  assert_true(has_problem(&p, SVC ":12: [weight.10.0.0.1] bad key"));
  assert_true(has_problem(&p, SVC ":13: [] '=1': empty key"));
  assert_true(has_problem(&p, SVC ":15: [timeout_ms.Ping] timeout_ms.Ping set again (line 14)"));
  assert_int_equal(p.n, 12);

  mprpc__gov_rules_t *r = build(NULL, v2);
  const mprpc__gov_method_t *m = mprpc__gov_rules_method(r, "Echo");
  assert_int_equal(m->timeout_ms, 250);
  assert_int_equal(m->rate_qps, 100);
  assert_int_equal(m->rate_burst, 10);
  assert_int_equal(m->degrade, MPRPC__GOV_DEGRADE_FALLBACK);
  assert_false(m->set & MPRPC__GOV_RETRY);
  assert_int_equal(mprpc__gov_rules_method(r, "Ping")->timeout_ms, 20);
  assert_int_equal(mprpc__gov_rules_endpoint(r, "10.0.0.1", 8000)->weight, 3);
  assert_string_equal(mprpc__gov_rules_group(r), "blue");
  mprpc__gov_rules_unref(r);

  /* the kept values carry over once more; a key that is gone is gone */
  problems_t p3 = {0};
  mprpc__gov_node_t *v3 = parse(SVC, "timeout_ms.Echo=oops\n", v2, &p3);
  assert_int_equal(p3.n, 1);
  assert_true(has_problem(&p3, SVC ":1: [timeout_ms.Echo]"));
  r = build(NULL, v3);
  assert_int_equal(mprpc__gov_rules_method(r, "Echo")->timeout_ms, 250);
  assert_false(mprpc__gov_rules_method(r, "Echo")->set & MPRPC__GOV_RATE);
  assert_null(mprpc__gov_rules_group(r));
  mprpc__gov_rules_unref(r);

  /* a bad line later in the same text keeps that text's earlier value */
  problems_t p4 = {0};
  mprpc__gov_node_t *v4 = parse(SVC, "timeout_ms=5\ntimeout_ms=x\n", NULL, &p4);
  assert_true(has_problem(&p4, ":2: [timeout_ms] bad value 'x'"));
  assert_true(has_problem(&p4, "keeping 5"));
  r = build(NULL, v4);
  assert_int_equal(mprpc__gov_rules_method(r, "Any")->timeout_ms, 5);
  mprpc__gov_rules_unref(r);

  /* a bad line kept from the previous layer, then a good line: one
   * problem, no "set again" (found by fuzz_govcfg) */
  problems_t p5 = {0};
  mprpc__gov_node_t *v5 = parse(SVC, "timeout_ms=7\n", NULL, &p5);
  mprpc__gov_node_t *v6 = parse(SVC, "timeout_ms=x\ntimeout_ms=8\n", v5, &p5);
  assert_int_equal(p5.n, 1);
  r = build(NULL, v6);
  assert_int_equal(mprpc__gov_rules_method(r, "Any")->timeout_ms, 8);
  mprpc__gov_rules_unref(r);

  mprpc__gov_node_free(v1);
  mprpc__gov_node_free(v2);
  mprpc__gov_node_free(v3);
  mprpc__gov_node_free(v4);
  mprpc__gov_node_free(v5);
  mprpc__gov_node_free(v6);
}

static void test_gov_value_edges(void **state) {
  (void)state;
  static const struct {
    const char *line;
    bool ok;
  } cases[] = {
      {"rate_limit=1", true},           {"rate_limit=1000000000", true},
      {"rate_limit=1000000001", false}, {"rate_limit=10/0", false},
      {"rate_limit=/5", false},         {"rate_limit=5/", false},
      {"rate_limit=0", true},           {"rate_limit=+5", false},
      {"max_concurrency=1000000", true}, {"max_concurrency=1000001", false},
      {"max_concurrency=Auto", true},   {"timeout_ms=0", false},
      {"timeout_ms=3600000", true},     {"timeout_ms=3600001", false},
      {"timeout_ms=99999999999999999999999", false},
      {"max_retry=0", true},            {"degrade=maybe", false},
      {"weight.h:1=0", false},          {"weight.h:1=1000000", true},
      {"weight.h:0=1", false},          {"weight.h:65536=1", false},
      {"weight.[::1:1=1", false},       {"weight.[zz]:1=1", false},
      {"disabled.h:1=2", false},        {"version=1.*.2", false},
      {"version=1.2.3", true},          {"version=*", true},
      {"version=", false},              {"group=", false},
      {"group=a.b-c_d", true},          {"max_retry.9bad=1", false},
      {"degrade.Echo_2=off", true},     {"timeout_ms=", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    problems_t p = {0};
    mprpc__gov_node_t *n = parse(SVC, cases[i].line, NULL, &p);
    if ((p.n == 0) != cases[i].ok) {
      fprintf(stderr, "case '%s': %d problems\n", cases[i].line, p.n);
      dump(&p);
    }
    assert_int_equal(p.n == 0, cases[i].ok);
    assert_int_equal(mprpc__gov_node_count(n), cases[i].ok ? 1 : 0);
    mprpc__gov_node_free(n);
  }
}

static void test_gov_merge_order(void **state) {
  (void)state;
  problems_t p = {0};
  mprpc__gov_node_t *g = parse(MPRPC__GOV_GLOBAL,
                               "timeout_ms=1000\n"
                               "timeout_ms.Echo=100\n"
                               "max_retry=3\n"
                               "rate_limit.Echo=50\n"
                               "weight.10.0.0.1:1=7\n"
                               "disabled.10.0.0.1:1=1\n"
                               "group=g1\n"
                               "version=1.*\n",
                               NULL, &p);
  mprpc__gov_node_t *s = parse(SVC,
                               "timeout_ms=500\n"
                               "max_retry.Ping=1\n"
                               "weight.10.0.0.1:1=9\n"
                               "version=2.*\n",
                               NULL, &p);
  assert_int_equal(p.n, 0);
  mprpc__gov_rules_t *r = build(g, s);
  /* service.method > service > _global.method > _global */
  const mprpc__gov_method_t *echo = mprpc__gov_rules_method(r, "Echo");
  assert_int_equal(echo->timeout_ms, 500); /* the service's own default beats _global.Echo */
  assert_int_equal(echo->rate_qps, 50);    /* only _global sets it */
  assert_int_equal(echo->max_retry, 3);
  const mprpc__gov_method_t *ping = mprpc__gov_rules_method(r, "Ping");
  assert_int_equal(ping->max_retry, 1);
  assert_int_equal(ping->timeout_ms, 500);
  assert_false(ping->set & MPRPC__GOV_RATE);
  const mprpc__gov_endpoint_t *e = mprpc__gov_rules_endpoint(r, "10.0.0.1", 1);
  assert_int_equal(e->weight, 9);  /* service */
  assert_true(e->disabled);        /* _global, field by field */
  assert_string_equal(mprpc__gov_rules_group(r), "g1");
  assert_string_equal(mprpc__gov_rules_version(r), "2.*");
  mprpc__gov_rules_unref(r);
  /* _global alone */
  r = build(g, NULL);
  assert_int_equal(mprpc__gov_rules_method(r, "Echo")->timeout_ms, 100);
  assert_int_equal(mprpc__gov_rules_method(r, "Ping")->timeout_ms, 1000);
  assert_int_equal(mprpc__gov_rules_endpoint(r, "10.0.0.1", 1)->weight, 7);
  mprpc__gov_rules_unref(r);
  mprpc__gov_node_free(g);
  mprpc__gov_node_free(s);
}

static void test_gov_state_updates_and_cells(void **state) {
  (void)state;
  mprpc__gov_state_t st;
  assert_int_equal(mprpc__gov_state_init(&st, SVC), 0);
  assert_int_equal(mprpc__gov_rules_method(st.rules, "Echo")->set, 0);
  problems_t p = {0};
  const char *t1 = "timeout_ms=100\n";
  assert_int_equal(mprpc__gov_state_update(&st, SVC, t1, strlen(t1), collect, &p, NULL), 0);
  const char *tg = "timeout_ms=900\nmax_retry=4\n";
  assert_int_equal(mprpc__gov_state_update(&st, "_global", tg, strlen(tg), collect, &p, NULL), 0);
  assert_int_equal(mprpc__gov_state_update(&st, "other.Svc", tg, strlen(tg), collect, &p, NULL),
                   MPRPC_EINVAL);
  assert_int_equal(mprpc__gov_rules_method(st.rules, "Echo")->timeout_ms, 100);
  assert_int_equal(mprpc__gov_rules_method(st.rules, "Echo")->max_retry, 4);

  /* publish to two loops of a simulated world: each loop's cell swaps on
   * that loop; the old set lives until the last cell lets go */
  mprpc_sim_world_t *w = mprpc_sim_world_new(1);
  mprpc_sim_loop_t *l1 = mprpc_sim_loop_new(w, 0), *l2 = mprpc_sim_loop_new(w, 0);
  mprpc__gov_cell_t c1 = {0}, c2 = {0};
  const mprpc__gov_rules_t *first = st.rules;
  uint64_t gen1 = mprpc__gov_rules_generation(first);
  assert_int_equal(mprpc__gov_cell_publish(&c1, mprpc_sim_loop(l1), st.rules), 0);
  assert_int_equal(mprpc__gov_cell_publish(&c2, mprpc_sim_loop(l2), st.rules), 0);
  assert_null(c1.rules); /* not before the loop ran the post */
  mprpc_sim_run_idle(w, 100);
  assert_ptr_equal(c1.rules, first);
  assert_ptr_equal(c2.rules, first);

  /* the node is deleted: its keys go, _global's stay */
  assert_int_equal(mprpc__gov_state_update(&st, SVC, NULL, 0, collect, &p, NULL), 0);
  assert_int_equal(mprpc__gov_rules_method(st.rules, "Echo")->timeout_ms, 900);
  assert_true(mprpc__gov_rules_generation(st.rules) > gen1);
  assert_int_equal(mprpc__gov_cell_publish(&c1, mprpc_sim_loop(l1), st.rules), 0);
  mprpc_sim_run_idle(w, 100);
  /* c2 still reads the first set: alive although the state dropped it */
  assert_int_equal(mprpc__gov_rules_method(c2.rules, "Echo")->timeout_ms, 100);
  assert_int_equal(mprpc__gov_rules_method(c1.rules, "Echo")->timeout_ms, 900);
  assert_int_equal(p.n, 0);

  mprpc__gov_cell_clear(&c1);
  mprpc__gov_cell_clear(&c2); /* frees the first set (ASan checks) */
  mprpc__gov_state_destroy(&st);
  mprpc_sim_loop_free(l1);
  mprpc_sim_loop_free(l2);
  mprpc_sim_world_free(w);
}

/* The local config is the third layer: under _global and the service's
 * node, field by field; its own problems name its file and line. */
static void test_gov_local_layer_precedence(void **state) {
  (void)state;
  mprpc__gov_state_t st;
  assert_int_equal(mprpc__gov_state_init(&st, SVC), 0);
  problems_t p = {0};
  const char *loc = "rate_limit.Echo=100\n"
                    "timeout_ms=50\n"
                    "max_retry.Echo=1\n"
                    "degrade.Echo=fail\n"
                    "weight.10.0.0.1:8000=7\n"
                    "log_level=warn\n";
  assert_int_equal(mprpc__gov_state_set_local(&st, "p.conf", loc, strlen(loc), collect, &p, NULL),
                   0);
  assert_int_equal(p.n, 0);
  const mprpc__gov_method_t *m = mprpc__gov_rules_method(st.rules, "Echo");
  assert_int_equal(m->rate_qps, 100);
  assert_int_equal(m->timeout_ms, 50);
  assert_int_equal(m->max_retry, 1);
  assert_int_equal(m->degrade, MPRPC__GOV_DEGRADE_FAIL);
  assert_int_equal(mprpc__gov_rules_method(st.rules, "Other")->timeout_ms, 50);
  assert_int_equal(mprpc__gov_rules_endpoint(st.rules, "10.0.0.1", 8000)->weight, 7);
  assert_int_equal(mprpc__gov_rules_log_level(st.rules), MPRPC_LOG_LEVEL_WARN);

  /* _global over local, the service's node over both; untouched fields
   * keep the local value */
  const char *g = "timeout_ms=300\nlog_level=error\nweight.10.0.0.1:8000=9\n";
  assert_int_equal(mprpc__gov_state_update(&st, "_global", g, strlen(g), collect, &p, NULL), 0);
  const char *sv = "rate_limit=20\n";
  assert_int_equal(mprpc__gov_state_update(&st, SVC, sv, strlen(sv), collect, &p, NULL), 0);
  m = mprpc__gov_rules_method(st.rules, "Echo");
  assert_int_equal(m->rate_qps, 20);     /* service KEY beats local KEY.METHOD */
  assert_int_equal(m->timeout_ms, 300);  /* _global */
  assert_int_equal(m->max_retry, 1);     /* local */
  assert_int_equal(m->degrade, MPRPC__GOV_DEGRADE_FAIL);
  assert_int_equal(mprpc__gov_rules_endpoint(st.rules, "10.0.0.1", 8000)->weight, 9);
  assert_int_equal(mprpc__gov_rules_log_level(st.rules), MPRPC_LOG_LEVEL_ERROR);
  /* the nodes go: the local values come back */
  assert_int_equal(mprpc__gov_state_update(&st, SVC, NULL, 0, collect, &p, NULL), 0);
  assert_int_equal(mprpc__gov_state_update(&st, "_global", NULL, 0, collect, &p, NULL), 0);
  m = mprpc__gov_rules_method(st.rules, "Echo");
  assert_int_equal(m->rate_qps, 100);
  assert_int_equal(m->timeout_ms, 50);
  assert_int_equal(mprpc__gov_rules_log_level(st.rules), MPRPC_LOG_LEVEL_WARN);
  assert_int_equal(p.n, 0);

  /* bad local values: reported with the file and line, the key keeps the
   * last good value, nothing else is lost; group/version are not local */
  const char *bad = "\n\nrate_limit.Echo=lots\n"
                    "timeout_ms=50\n"
                    "degrade.Echo=maybe\n"
                    "max_concurrency.Echo=8\n"
                    "group=blue\n";
  size_t np = 0;
  assert_int_equal(mprpc__gov_state_set_local(&st, "p.conf", bad, strlen(bad), collect, &p, &np),
                   0);
  if (p.n != 3)
    dump(&p);
  assert_int_equal(p.n, 3);
  assert_int_equal((int)np, 3);
  assert_true(has_problem(&p, "p.conf:3: [rate_limit.Echo] bad value 'lots'"));
  assert_true(has_problem(&p, "keeping 100"));
  assert_true(has_problem(&p, "p.conf:5: [degrade.Echo] bad value 'maybe'"));
  assert_true(has_problem(&p, "p.conf:7: [group]"));
  m = mprpc__gov_rules_method(st.rules, "Echo");
  assert_int_equal(m->rate_qps, 100);
  assert_int_equal(m->degrade, MPRPC__GOV_DEGRADE_FAIL);
  assert_int_equal(m->max_concurrency, 8);
  assert_int_equal(m->timeout_ms, 50);
  assert_false(m->set & MPRPC__GOV_RETRY); /* gone from the new text */
  assert_null(mprpc__gov_rules_group(st.rules));
  assert_int_equal(mprpc__gov_rules_log_level(st.rules), -1);
  /* cleared */
  assert_int_equal(mprpc__gov_state_set_local(&st, NULL, NULL, 0, collect, &p, NULL), 0);
  assert_int_equal(mprpc__gov_rules_method(st.rules, "Echo")->set, 0);
  mprpc__gov_state_destroy(&st);
}

/* --- token bucket ------------------------------------------------------- */

static void test_gov_ratelimit_rate_and_burst(void **state) {
  (void)state;
  mprpc__ratelimit_t rl;
  mprpc__ratelimit_init(&rl, 100, 10);
  uint64_t t0 = 5 * SEC;
  /* from idle: exactly the burst at one instant */
  int ok = 0;
  for (int i = 0; i < 50; i++)
    ok += mprpc__ratelimit_take(&rl, t0);
  assert_int_equal(ok, 10);
  /* then one per 10 ms */
  assert_false(mprpc__ratelimit_take(&rl, t0 + 9 * MS));
  assert_true(mprpc__ratelimit_take(&rl, t0 + 10 * MS));
  assert_false(mprpc__ratelimit_take(&rl, t0 + 10 * MS));
  /* sustained: a caller offering 1000/s for 10 s gets 100/s (+ burst) */
  mprpc__ratelimit_init(&rl, 100, 10);
  ok = 0;
  for (uint64_t t = 0; t < 10 * SEC; t += MS)
    ok += mprpc__ratelimit_take(&rl, t0 + t);
  assert_true(ok >= 1000 && ok <= 1010);
  /* any window of T seconds admits at most burst + qps * T */
  mprpc__ratelimit_init(&rl, 1000, 1);
  ok = 0;
  for (uint64_t t = 0; t < SEC; t += 100000) /* 10000/s offered */
    ok += mprpc__ratelimit_take(&rl, t);
  assert_true(ok >= 999 && ok <= 1001);
  /* an idle bucket refills to the burst, not beyond */
  mprpc__ratelimit_init(&rl, 10, 3);
  ok = 0;
  for (int i = 0; i < 10; i++)
    ok += mprpc__ratelimit_take(&rl, 100 * SEC);
  assert_int_equal(ok, 3);
  /* default burst: 100 ms worth */
  mprpc__ratelimit_init(&rl, 2000, 0);
  uint32_t q, b;
  mprpc__ratelimit_get(&rl, &q, &b);
  assert_int_equal(q, 2000);
  assert_int_equal(b, 200);
  /* unlimited, and a rate change keeps the bucket's level */
  mprpc__ratelimit_init(&rl, 0, 0);
  for (int i = 0; i < 1000; i++)
    assert_true(mprpc__ratelimit_take(&rl, 0));
  mprpc__ratelimit_init(&rl, 10, 1);
  assert_true(mprpc__ratelimit_take(&rl, SEC));
  assert_false(mprpc__ratelimit_take(&rl, SEC));
  mprpc__ratelimit_set(&rl, 1000, 1);
  assert_false(mprpc__ratelimit_take(&rl, SEC + 50 * MS)); /* still the old 100 ms spacing */
  assert_true(mprpc__ratelimit_take(&rl, SEC + 100 * MS));
  assert_true(mprpc__ratelimit_take(&rl, SEC + 101 * MS));
  /* 3 QPS: the interval rounds up, never more than asked; polled every
   * 10 ms, a burst of 2 absorbs the polling grid */
  mprpc__ratelimit_init(&rl, 3, 2);
  ok = 0;
  for (uint64_t t = 0; t < 100 * SEC; t += 10 * MS)
    ok += mprpc__ratelimit_take(&rl, t);
  assert_true(ok >= 299 && ok <= 302);
}

typedef struct rl_thread {
  mprpc__ratelimit_t *rl;
  int admitted;
} rl_thread_t;

static void *rl_hammer(void *arg) {
  rl_thread_t *t = arg;
  for (int i = 0; i < 200000; i++)
    t->admitted += mprpc__ratelimit_take(t->rl, 7 * SEC);
  return NULL;
}

/* Four threads at the same virtual instant: together exactly the burst. */
static void test_gov_ratelimit_threads_share_one_bucket(void **state) {
  (void)state;
  mprpc__ratelimit_t rl;
  mprpc__ratelimit_init(&rl, 1000000, 5000);
  pthread_t th[4];
  rl_thread_t a[4];
  for (int i = 0; i < 4; i++) {
    a[i] = (rl_thread_t){.rl = &rl};
    assert_int_equal(pthread_create(&th[i], NULL, rl_hammer, &a[i]), 0);
  }
  int total = 0;
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    total += a[i].admitted;
  }
  assert_int_equal(total, 5000);
}

/* --- adaptive limiter against a queueing model -------------------------- */

/* A virtual server: `workers` workers, FIFO queue without bound, service
 * time base * U(0.9, 1.1): capacity about workers / base calls per second.
 * Calls arrive every `gap` ns for `dur` ns. */
typedef struct model {
  int workers;
  uint64_t base, gap, dur;
  uint64_t t0; /* virtual time of the first arrival */
  mprpc__limiter_t *lim; /* NULL: admit everything */
  /* results */
  uint64_t offered, admitted, completed;
  uint64_t *lat; /* latency of every admitted call, in arrival order */
  uint64_t *arrive;
  size_t nlat;
} model_t;

typedef struct done {
  uint64_t at, lat;
} done_t;

static void heap_push(done_t *h, size_t *n, done_t d) {
  size_t i = (*n)++;
  h[i] = d;
  while (i > 0 && h[(i - 1) / 2].at > h[i].at) {
    done_t t = h[i];
    h[i] = h[(i - 1) / 2];
    h[(i - 1) / 2] = t;
    i = (i - 1) / 2;
  }
}

static done_t heap_pop(done_t *h, size_t *n) {
  done_t top = h[0];
  h[0] = h[--*n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < *n && h[l].at < h[m].at)
      m = l;
    if (r < *n && h[r].at < h[m].at)
      m = r;
    if (m == i)
      break;
    done_t t = h[i];
    h[i] = h[m];
    h[m] = t;
    i = m;
  }
  return top;
}

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void run_model(model_t *m) {
  size_t max = (size_t)(m->dur / m->gap) + 1;
  done_t *heap = calloc(max, sizeof *heap);
  uint64_t *free_at = calloc((size_t)m->workers, sizeof *free_at);
  m->lat = calloc(max, sizeof *m->lat);
  m->arrive = calloc(max, sizeof *m->arrive);
  assert_true(heap && free_at && m->lat && m->arrive);
  size_t nh = 0;
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  for (uint64_t t = m->t0; t < m->t0 + m->dur; t += m->gap) {
    while (nh && heap[0].at <= t) {
      done_t d = heap_pop(heap, &nh);
      m->completed++;
      if (m->lim)
        mprpc__limiter_on_complete(m->lim, d.lat, true, d.at);
    }
    m->offered++;
    if (m->lim && !mprpc__limiter_on_admit(m->lim, t))
      continue;
    m->admitted++;
    int w = 0;
    for (int i = 1; i < m->workers; i++)
      if (free_at[i] < free_at[w])
        w = i;
    uint64_t start = free_at[w] > t ? free_at[w] : t;
    uint64_t svc = m->base * 9 / 10 + rng_next(&seed) % (m->base / 5 + 1);
    free_at[w] = start + svc;
    heap_push(heap, &nh, (done_t){start + svc, start + svc - t});
    m->arrive[m->nlat] = t - m->t0;
    m->lat[m->nlat++] = start + svc - t;
  }
  free(heap);
  free(free_at);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* p99 of the latencies of calls that arrived in [from, to). */
static uint64_t p99(const model_t *m, uint64_t from, uint64_t to) {
  uint64_t *v = malloc((m->nlat + 1) * sizeof *v);
  size_t n = 0;
  for (size_t i = 0; i < m->nlat; i++)
    if (m->arrive[i] >= from && m->arrive[i] < to)
      v[n++] = m->lat[i];
  assert_true(n > 0);
  qsort(v, n, sizeof *v, cmp_u64);
  uint64_t r = v[(n * 99) / 100];
  free(v);
  return r;
}

static void model_free(model_t *m) {
  free(m->lat);
  free(m->arrive);
}

static void test_gov_limiter_holds_goodput_and_latency(void **state) {
  (void)state;
  const int workers = 20;
  const uint64_t base = 10 * MS;                /* capacity C = 2000 calls/s */
  const double capacity = workers * (double)SEC / (double)base;
  const uint64_t dur = 60 * SEC;

  /* unloaded: offered C/2 */
  model_t idle = {.workers = workers, .base = base, .gap = 1000 * 1000, .dur = 10 * SEC};
  run_model(&idle);
  uint64_t idle_p99 = p99(&idle, 0, idle.dur);
  assert_true(idle_p99 >= base && idle_p99 <= base * 12 / 10);

  /* no limit, offered 2C: the queue and the latency grow without bound */
  model_t open = {.workers = workers, .base = base, .gap = 250 * 1000, .dur = dur};
  run_model(&open);
  uint64_t p_early = p99(&open, 5 * SEC, 10 * SEC), p_late = p99(&open, 50 * SEC, 60 * SEC);
  fprintf(stderr, "no limit: p99 %.1f ms at 5-10 s, %.1f ms at 50-60 s (unloaded %.1f ms)\n",
          p_early / 1e6, p_late / 1e6, idle_p99 / 1e6);
  assert_true(p_late > 100 * idle_p99);
  assert_true(p_late > 4 * p_early);

  /* adaptive limit, offered 2C */
  mprpc__limiter_t lim;
  mprpc__limiter_opts_t o = {.remeasure_ns = 5 * SEC, .seed = 42};
  mprpc__limiter_init(&lim, &o);
  model_t lm = {.workers = workers, .base = base, .gap = 250 * 1000, .dur = dur, .lim = &lim};
  run_model(&lm);
  uint64_t lp99 = p99(&lm, 0, dur);
  double goodput = (double)lm.completed / ((double)dur / SEC);
  fprintf(stderr,
          "auto limit: goodput %.0f/s of capacity %.0f/s (%.1f%%), admitted %.1f%% of offered, "
          "p99 %.2f ms (%.2fx unloaded), final limit %u, %llu windows, %llu remeasures, "
          "noload %.2f ms\n",
          goodput, capacity, 100 * goodput / capacity, 100.0 * lm.admitted / lm.offered,
          lp99 / 1e6, (double)lp99 / idle_p99, mprpc__limiter_limit(&lim),
          (unsigned long long)lim.windows, (unsigned long long)lim.remeasures, lim.noload_ns / 1e6);
  assert_true(goodput >= 0.9 * capacity);
  assert_true(lp99 <= 3 * idle_p99);
  assert_true(lim.remeasures >= 5);
  /* every admitted call completed or is in flight at the end */
  assert_int_equal((int64_t)lm.admitted - (int64_t)lm.completed, mprpc__limiter_inflight(&lim));

  /* the same inputs give the same run */
  mprpc__limiter_t lim2;
  mprpc__limiter_init(&lim2, &o);
  model_t lm2 = {.workers = workers, .base = base, .gap = 250 * 1000, .dur = dur, .lim = &lim2};
  run_model(&lm2);
  assert_int_equal(lm2.admitted, lm.admitted);
  assert_int_equal(mprpc__limiter_limit(&lim2), mprpc__limiter_limit(&lim));
  model_free(&idle);
  model_free(&open);
  model_free(&lm);
  model_free(&lm2);
}

/* The backend gets three times slower for good: the re-measured noload
 * latency follows it up and goodput recovers to the new capacity. */
static void test_gov_limiter_relearns_slower_backend(void **state) {
  (void)state;
  mprpc__limiter_t lim;
  mprpc__limiter_opts_t o = {.remeasure_ns = 4 * SEC, .seed = 7};
  mprpc__limiter_init(&lim, &o);
  model_t a = {.workers = 20, .base = 10 * MS, .gap = 250 * 1000, .dur = 20 * SEC, .lim = &lim};
  run_model(&a);
  double noload_fast = lim.noload_ns;
  /* same limiter, new model with a 30 ms backend; the in-flight calls of
   * the first run are completed first */
  while (mprpc__limiter_inflight(&lim) > 0)
    mprpc__limiter_on_complete(&lim, 10 * MS, true, 20 * SEC);
  model_t b = {.workers = 20, .base = 30 * MS, .gap = 750 * 1000, .dur = 40 * SEC,
               .t0 = 20 * SEC, .lim = &lim};
  run_model(&b);
  double cap_b = 20 * (double)SEC / (30 * MS);
  double goodput_b = (double)b.completed / 40.0;
  fprintf(stderr, "slower backend: noload %.1f -> %.1f ms, goodput %.0f/s of %.0f/s\n",
          noload_fast / 1e6, lim.noload_ns / 1e6, goodput_b, cap_b);
  assert_true(lim.noload_ns > 2 * noload_fast);
  assert_true(goodput_b >= 0.85 * cap_b);
  /* once re-learnt, latency is back near the new unloaded value (33 ms) */
  uint64_t late = p99(&b, 10 * SEC, 40 * SEC);
  fprintf(stderr, "slower backend: p99 %.1f ms after 10 s\n", late / 1e6);
  assert_true(late <= 3 * 33 * MS);
  model_free(&a);
  model_free(&b);
}


/* --- the simulator's virtual registry drives rule changes mid-run ------- */

typedef struct sim_gov {
  mprpc__gov_state_t st;
  problems_t p;
  int updates;
} sim_gov_t;

static void sim_cfg_cb(void *ud, const char *name, const char *text, size_t len) {
  sim_gov_t *g = ud;
  g->updates++;
  assert_int_equal(mprpc__gov_state_update(&g->st, name, text, len, collect, &g->p, NULL), 0);
}

static void test_gov_sim_config_changes_mid_run(void **state) {
  (void)state;
  mprpc_sim_world_t *w = mprpc_sim_world_new(3);
  mprpc_sim_zk_t *z = mprpc_sim_zk_new(w, NULL);
  mprpc_sim_loop_t *l = mprpc_sim_loop_new(w, 0);
  mprpc_registry_t r;
  assert_int_equal(mprpc_sim_zk_handle(z, 0, mprpc_sim_loop(l), &r), 0);
  sim_gov_t g = {0};
  assert_int_equal(mprpc__gov_state_init(&g.st, SVC), 0);
  mprpc_sim_zk_set_config(z, "_global", "timeout_ms=100\n");
  uint64_t gid, sid;
  assert_int_equal(mprpc_registry_watch_config(r, "_global", mprpc_sim_loop(l), sim_cfg_cb, &g,
                                               &gid),
                   0);
  assert_int_equal(mprpc_registry_watch_config(r, SVC, mprpc_sim_loop(l), sim_cfg_cb, &g, &sid),
                   0);
  mprpc_sim_run_until(w, 1 * SEC);
  assert_int_equal(g.updates, 1); /* _global only: the service's node does not exist */
  assert_int_equal(mprpc__gov_rules_method(g.st.rules, "Echo")->timeout_ms, 100);

  mprpc_sim_zk_set_config(z, SVC, "timeout_ms.Echo=20\nrate_limit.Echo=oops\n");
  mprpc_sim_run_until(w, 2 * SEC);
  assert_int_equal(mprpc__gov_rules_method(g.st.rules, "Echo")->timeout_ms, 20);
  assert_true(has_problem(&g.p, SVC ":2: [rate_limit.Echo] bad value 'oops'"));

  /* cut off: changes wait for the reconnect, and only the last one lands */
  mprpc_sim_zk_partition(z, 0, true);
  mprpc_sim_run_until(w, 4 * SEC);
  int before = g.updates;
  mprpc_sim_zk_set_config(z, SVC, "timeout_ms.Echo=30\n");
  mprpc_sim_zk_set_config(z, SVC, "timeout_ms.Echo=40\n");
  mprpc_sim_run_until(w, 5 * SEC);
  assert_int_equal(g.updates, before);
  mprpc_sim_zk_partition(z, 0, false);
  mprpc_sim_run_until(w, 8 * SEC);
  assert_int_equal(g.updates, before + 1);
  assert_int_equal(mprpc__gov_rules_method(g.st.rules, "Echo")->timeout_ms, 40);

  /* deleted: the service's keys go */
  mprpc_sim_zk_set_config(z, SVC, NULL);
  mprpc_sim_run_until(w, 9 * SEC);
  assert_int_equal(mprpc__gov_rules_method(g.st.rules, "Echo")->timeout_ms, 100);

  mprpc_registry_unwatch_config(r, gid);
  mprpc_registry_unwatch_config(r, sid);
  before = g.updates;
  mprpc_sim_zk_set_config(z, "_global", "timeout_ms=1\n");
  mprpc_sim_run_until(w, 10 * SEC);
  assert_int_equal(g.updates, before);
  mprpc__gov_state_destroy(&g.st);
  mprpc_registry_close(r);
  mprpc_sim_zk_free(z);
  mprpc_sim_loop_free(l);
  mprpc_sim_world_free(w);
}

/* --- version / group selection ------------------------------------------ */

static void test_gov_version_patterns(void **state) {
  (void)state;
  static const struct {
    const char *pat, *ver;
    bool match;
  } cases[] = {
      {"1.2.3", "1.2.3", true},  {"1.2.3", "1.2.4", false}, {"1.2.3", "1.2.3.1", false},
      {"1.2", "1.2.0", false},   {"1.*", "1", true},        {"1.*", "1.0", true},
      {"1.*", "1.4.2", true},    {"1.*", "10.0", false},    {"1.*", "2.1", false},
      {"1.2.*", "1.2", true},    {"1.2.*", "1.2.9", true},  {"1.2.*", "1.3.0", false},
      {"1.2.*", "1.20", false},  {"*", "anything", true},   {"*", NULL, true},
      {"*", "", true},           {"1.*", NULL, false},      {"1.*", "", false},
      {"1.*,2.*", "2.5", true},  {"1.*,2.*", "3.0", false}, {"", "x", true},
      {NULL, NULL, true},        {"1.*.3", "1.2.3", false}, {"1*", "1", false},
      {"v2-rc1", "v2-rc1", true}, {"1..2", "1..2", false},  {",", "", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    bool got = mprpc__version_match(cases[i].pat, cases[i].ver);
    if (got != cases[i].match)
      fprintf(stderr, "pattern '%s' version '%s': got %d\n", cases[i].pat ? cases[i].pat : "(null)",
              cases[i].ver ? cases[i].ver : "(null)", got);
    assert_int_equal(got, cases[i].match);
  }
  assert_true(mprpc__version_pattern_valid("1.2.*"));
  assert_false(mprpc__version_pattern_valid("1.2.*,"));
  assert_false(mprpc__version_pattern_valid("1 .2"));
  assert_false(mprpc__version_pattern_valid("**"));

  assert_true(mprpc__group_match(NULL, "default"));
  assert_true(mprpc__group_match("", NULL));
  assert_true(mprpc__group_match("canary", "canary"));
  assert_false(mprpc__group_match("canary", NULL));
  assert_false(mprpc__group_valid("a b"));
  assert_false(mprpc__group_valid("a+b"));

  mprpc_instance_t items[] = {
      {.service = SVC, .host = "h", .port = 1, .version = "1.2.0"},
      {.service = SVC, .host = "h", .port = 2, .version = "1.3.0", .group = "canary"},
      {.service = SVC, .host = "h", .port = 3, .version = "2.0", .group = "default"},
      {.service = SVC, .host = "h", .port = 4},
  };
  bool keep[4];
  mprpc__select_t sel = {.group = "default", .version = "1.*"};
  assert_int_equal(mprpc__select_filter(&sel, items, 4, keep), 1);
  assert_true(keep[0]);
  sel = (mprpc__select_t){.group = "canary"};
  assert_int_equal(mprpc__select_filter(&sel, items, 4, keep), 1);
  assert_true(keep[1]);
  sel = (mprpc__select_t){.version = "1.*,2.*"};
  assert_int_equal(mprpc__select_filter(&sel, items, 4, keep), 3);
  assert_false(keep[3]);
  assert_int_equal(mprpc__select_filter(NULL, items, 4, keep), 4);
}

int main(void) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gov_every_key),
      cmocka_unit_test(test_gov_bad_values_keep_last_good),
      cmocka_unit_test(test_gov_value_edges),
      cmocka_unit_test(test_gov_merge_order),
      cmocka_unit_test(test_gov_state_updates_and_cells),
      cmocka_unit_test(test_gov_local_layer_precedence),
      cmocka_unit_test(test_gov_ratelimit_rate_and_burst),
      cmocka_unit_test(test_gov_ratelimit_threads_share_one_bucket),
      cmocka_unit_test(test_gov_limiter_holds_goodput_and_latency),
      cmocka_unit_test(test_gov_limiter_relearns_slower_backend),
      cmocka_unit_test(test_gov_version_patterns),
      cmocka_unit_test(test_gov_sim_config_changes_mid_run),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
