/*
 * Provider governance: the config centre's per-method limits
 * (rate_limit.METHOD, max_concurrency.METHOD=N|auto) applied before a
 * handler runs, and log_level, from `_global` and each service's node
 * (docs/governance.md), over the process's own text (opts.governance, the
 * local layer: applied at start, the only source without a config centre).
 *
 * Threads. The registry delivers every node on loops[0]; only that loop
 * parses, keeps the layers (one mprpc__gov_state_t per service) and writes
 * the limits. Dispatch on any loop reads them: the token bucket is built for
 * that (ratelimit.h), the concurrency limit and the auto flag are atomics,
 * and a call records what it took (gov_taken) so it gives back exactly that
 * even when the limits change under it. A change is in force for the next
 * request on every loop once loops[0] has run the delivery: no post per
 * loop, no rule set shared across threads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/govcfg.h"
#include "core/server_internal.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

typedef struct srv_gov_svc {
  mprpc__gov_state_t st;
  uint64_t wid;
  bool watching;
} srv_gov_svc_t;

struct srv_gov {
  mprpc_server_t *s;
  uint64_t gid;
  bool gwatching;
  srv_gov_svc_t *svcs; /* one per s->services[i] */
  size_t nsvcs;
  uint64_t applied; /* deliveries applied (loops[0]) */
};

/* ---- applying a rule set ------------------------------------------------- */

static void apply_method(srv_method_t *m, const mprpc__gov_rules_t *r) {
  const mprpc__gov_method_t *g = mprpc__gov_rules_method(r, m->name);
  uint32_t qps = 0, burst = 0, oq, ob;
  if (g->set & MPRPC__GOV_RATE) {
    qps = g->rate_qps;
    burst = g->rate_burst;
  }
  mprpc__ratelimit_get(&m->gov.rl, &oq, &ob);
  if (oq != qps || (qps && ob != burst))
    mprpc__ratelimit_set(&m->gov.rl, qps, burst);
  uint32_t conc = 0;
  bool autoc = false;
  if (g->set & MPRPC__GOV_CONC) {
    conc = g->max_concurrency;
    autoc = g->concurrency_auto;
  }
  atomic_store(&m->gov.conc, conc);
  atomic_store(&m->gov.conc_auto, autoc);
  MPRPC_LOG_DEBUG("server: %s.%s rate_limit=%u burst=%u max_concurrency=%s%u", m->service,
                  m->name, qps, burst, autoc ? "auto " : "", conc);
}

static void apply_service(mprpc_server_t *s, srv_gov_svc_t *sv) {
  for (size_t i = 0; i < s->nmethods; i++) {
    srv_method_t *m = s->methods[i];
    if (strcmp(m->service, sv->st.service) == 0)
      apply_method(m, sv->st.rules);
  }
}

static void apply_log_level(const mprpc__gov_rules_t *r) {
  int lv = mprpc__gov_rules_log_level(r);
  if (lv >= 0 && lv != __atomic_load_n(&mprpc__log_level, __ATOMIC_RELAXED)) {
    MPRPC_LOG_INFO("config centre: log_level changes to %d", lv);
    mprpc_log_set_level(lv);
  }
}

void mprpc__srv_gov_config(mprpc_server_t *s, const char *name, const char *text, size_t len) {
  struct srv_gov *g = s->gov;
  if (!g)
    return;
  bool global = strcmp(name, MPRPC__GOV_GLOBAL) == 0;
  for (size_t i = 0; i < g->nsvcs; i++) {
    srv_gov_svc_t *sv = &g->svcs[i];
    if (!global && strcmp(name, sv->st.service) != 0)
      continue;
    size_t np = 0;
    /* Each problem is reported once per node: by the first service only. */
    int rc = mprpc__gov_state_update(&sv->st, name, text, len,
                                     (!global || i == 0) ? mprpc__gov_report_log : NULL, NULL, &np);
    if (rc < 0) {
      MPRPC_LOG_ERROR("config centre: node %s not applied for %s: %s (the last values stay)",
                      name, sv->st.service, mprpc_strerror(rc));
      continue;
    }
    apply_service(s, sv);
    if (i == 0 || !global)
      apply_log_level(sv->st.rules);
  }
  g->applied++;
  MPRPC_LOG_INFO("config centre: provider applied node %s (%zu bytes%s)", name,
                 text ? len : 0, text ? "" : ", deleted");
}

/* The process's own governance text (opts.governance), into every
 * service's local layer; its problems are reported once (first service). */
static void apply_local(mprpc_server_t *s, struct srv_gov *g) {
  const char *name = s->gov_name ? s->gov_name : MPRPC__GOV_LOCAL;
  size_t np = 0;
  for (size_t i = 0; i < g->nsvcs; i++) {
    srv_gov_svc_t *sv = &g->svcs[i];
    int rc = mprpc__gov_state_set_local(&sv->st, name, s->gov_text, strlen(s->gov_text),
                                        i == 0 ? mprpc__gov_report_log : NULL, NULL,
                                        i == 0 ? &np : NULL);
    if (rc < 0) {
      MPRPC_LOG_ERROR("server: governance of %s not applied for %s: %s", name, sv->st.service,
                      mprpc_strerror(rc));
      continue;
    }
    apply_service(s, sv);
    if (i == 0)
      apply_log_level(sv->st.rules);
  }
  MPRPC_LOG_INFO("server: governance from %s applied (%zu problem%s)", name, np,
                 np == 1 ? "" : "s");
}

static void on_config(void *ud, const char *name, const char *text, size_t len) {
  mprpc_server_t *s = ud;
  mprpc__srv_gov_config(s, name, text, len);
}

/* ---- start / stop ------------------------------------------------------ */

int mprpc__srv_gov_start(mprpc_server_t *s) {
  for (size_t i = 0; i < s->nmethods; i++) {
    srv_method_t *m = s->methods[i];
    mprpc__limiter_opts_t lo = {0};
    /* Small: the first window's latency is the noload estimate, which a
     * queue built by a large first limit would inflate for good. */
    lo.initial_limit = 4;
    lo.seed = mprpc_rand_u64(mprpc_loop_rand(s->loops[0])) ^ (uint64_t)i;
    mprpc__limiter_init(&m->gov.lim, &lo);
    mprpc__ratelimit_init(&m->gov.rl, 0, 0);
  }
  bool watch = s->o.registry.vt && s->o.registry.vt->watch_config;
  if ((!watch && !s->gov_text) || s->gov)
    return 0;
  struct srv_gov *g = calloc(1, sizeof *g);
  if (!g)
    return MPRPC_ENOMEM;
  g->s = s;
  g->svcs = calloc(s->nservices ? s->nservices : 1, sizeof *g->svcs);
  if (!g->svcs)
    goto fail;
  for (size_t i = 0; i < s->nservices; i++, g->nsvcs++)
    if (mprpc__gov_state_init(&g->svcs[i].st, s->services[i]->descriptor->name) != 0)
      goto fail;
  s->gov = g;
  /* The local layer first: the whole of governance without a config
   * centre (static://, none), its defaults with one. */
  if (s->gov_text)
    apply_local(s, g);
  if (!watch)
    return 0;
  /* Deliveries run on loops[0]; the server is started, so they may come
   * at once. A watch that fails leaves the provider with its own limits:
   * logged, not fatal (a config centre must never stop a provider). */
  mprpc_loop_t l0 = s->loops[0];
  int rc = mprpc_registry_watch_config(s->o.registry, MPRPC__GOV_GLOBAL, l0, on_config, s, &g->gid);
  if (rc == 0)
    g->gwatching = true;
  else if (rc != MPRPC_EUNSUPPORTED)
    MPRPC_LOG_WARN("server: watching config node _global: %s", mprpc_strerror(rc));
  for (size_t i = 0; i < g->nsvcs && rc != MPRPC_EUNSUPPORTED; i++) {
    srv_gov_svc_t *sv = &g->svcs[i];
    int r2 = mprpc_registry_watch_config(s->o.registry, sv->st.service, l0, on_config, s, &sv->wid);
    if (r2 == 0)
      sv->watching = true;
    else
      MPRPC_LOG_WARN("server: watching config node %s: %s", sv->st.service, mprpc_strerror(r2));
  }
  return 0;
fail:
  for (size_t i = 0; g->svcs && i < g->nsvcs; i++)
    mprpc__gov_state_destroy(&g->svcs[i].st);
  free(g->svcs);
  free(g);
  s->gov = NULL;
  return MPRPC_ENOMEM;
}

void mprpc__srv_gov_stop(mprpc_server_t *s) {
  struct srv_gov *g = s->gov;
  if (!g)
    return;
  if (g->gwatching)
    mprpc_registry_unwatch_config(s->o.registry, g->gid);
  g->gwatching = false;
  for (size_t i = 0; i < g->nsvcs; i++) {
    if (g->svcs[i].watching)
      mprpc_registry_unwatch_config(s->o.registry, g->svcs[i].wid);
    g->svcs[i].watching = false;
  }
}

void mprpc__srv_gov_free(mprpc_server_t *s) {
  struct srv_gov *g = s->gov;
  if (!g)
    return;
  mprpc__srv_gov_stop(s);
  for (size_t i = 0; i < g->nsvcs; i++)
    mprpc__gov_state_destroy(&g->svcs[i].st);
  free(g->svcs);
  free(g);
  s->gov = NULL;
}

/* ---- the hot path ------------------------------------------------------- */

/* A refusal is answered every time but logged at most once a second per
 * method (the answer's text and the ELIMIT count say the rest). */
static void log_refusal(srv_method_t *m, uint64_t now, const char *text) {
  uint64_t last = atomic_load_explicit(&m->gov.refused_log, memory_order_relaxed);
  if (last && now - last < MPRPC_NS_PER_S)
    return;
  if (atomic_compare_exchange_strong(&m->gov.refused_log, &last, now ? now : 1))
    MPRPC_LOG_WARN("server: %s (logged once a second)", text);
}

int mprpc__srv_gov_admit(mprpc_server_t *s, srv_method_t *m, uint64_t now, uint8_t *taken,
                         int *reason, char *text, size_t n) {
  (void)s;
  *taken = 0;
  *reason = MPRPC__REFUSED_RATE;
  srv_gov_method_t *g = &m->gov;
  if (!mprpc__ratelimit_take(&g->rl, now)) {
    uint32_t qps, burst;
    mprpc__ratelimit_get(&g->rl, &qps, &burst);
    snprintf(text, n, "rate limit of %s.%s reached (rate_limit=%u/s, burst %u)", m->service,
             m->name, qps, burst);
    log_refusal(m, now, text);
    return MPRPC_ELIMIT;
  }
  *reason = MPRPC__REFUSED_CONC; /* from here on, every refusal is a concurrency one */
  uint32_t conc = atomic_load_explicit(&g->conc, memory_order_relaxed);
  if (conc) {
    uint64_t v = atomic_fetch_add(&g->conc_inflight, 1) + 1;
    if (v > conc) {
      atomic_fetch_sub(&g->conc_inflight, 1);
      snprintf(text, n, "concurrency limit of %s.%s reached (max_concurrency=%u)", m->service,
               m->name, conc);
      log_refusal(m, now, text);
      return MPRPC_ELIMIT;
    }
    *taken |= MPRPC__GOV_TOOK_CONC;
  }
  if (atomic_load_explicit(&g->conc_auto, memory_order_relaxed)) {
    if (!mprpc__limiter_on_admit(&g->lim, now)) {
      if (*taken & MPRPC__GOV_TOOK_CONC)
        atomic_fetch_sub(&g->conc_inflight, 1);
      *taken = 0;
      snprintf(text, n, "adaptive concurrency limit of %s.%s reached (max_concurrency=auto, "
               "limit %u)", m->service, m->name, mprpc__limiter_limit(&g->lim));
      log_refusal(m, now, text);
      return MPRPC_ELIMIT;
    }
    *taken |= MPRPC__GOV_TOOK_AUTO;
  }
  return 0;
}

void mprpc__srv_gov_release(srv_method_t *m, uint8_t taken, uint64_t latency_ns, bool ok,
                            uint64_t now) {
  if (taken & MPRPC__GOV_TOOK_CONC)
    atomic_fetch_sub(&m->gov.conc_inflight, 1);
  if (taken & MPRPC__GOV_TOOK_AUTO)
    mprpc__limiter_on_complete(&m->gov.lim, latency_ns, ok, now);
}
