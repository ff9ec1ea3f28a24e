/*
 * Fault plans (sim/plan.h). The schedules follow the simulator scenarios of
 * the same spirit (sim/fault.c: sprinkle = random times with a mean gap),
 * on a shorter timeline: real processes run in real time.
 */
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/rand.h"

typedef struct gen {
  mprpc_plan_t *p;
  mprpc_xoshiro_t x;
} gen_t;

static uint64_t range(gen_t *g, uint64_t lo, uint64_t hi) {
  if (hi <= lo)
    return lo;
  return lo + mprpc_rand_below(mprpc_rand_xoshiro(&g->x), hi - lo + 1);
}

static bool chance(gen_t *g, double p) { return mprpc_rand_double(mprpc_rand_xoshiro(&g->x)) < p; }

static mprpc_plan_fault_t *add(gen_t *g, uint64_t at, int kind, int a, uint64_t dur) {
  mprpc_plan_t *p = g->p;
  if (p->nfaults >= MPRPC_PLAN_MAX_FAULTS)
    return NULL;
  mprpc_plan_fault_t *f = &p->faults[p->nfaults++];
  *f = (mprpc_plan_fault_t){.at_ms = at, .dur_ms = dur, .kind = kind, .a = a};
  return f;
}

/* A random non-empty subset of n hosts, each in with probability q. */
static uint32_t subset(gen_t *g, int n, double q) {
  uint32_t m = 0;
  for (int i = 0; i < n; i++)
    if (chance(g, q))
      m |= 1u << i;
  if (!m)
    m = 1u << range(g, 0, (uint64_t)n - 1);
  return m;
}

/* Faults of `kind` at random times in [from, to) with mean gap `gap`, each
 * lasting [dmin, dmax] but ending by `to` (everything heals at quiet). */
static void sprinkle(gen_t *g, int kind, uint64_t from, uint64_t to, uint64_t gap, uint64_t dmin,
                     uint64_t dmax) {
  mprpc_plan_t *p = g->p;
  for (uint64_t t = from + range(g, 0, gap); t < to; t += range(g, gap / 2, gap + gap / 2)) {
    uint64_t d = range(g, dmin, dmax);
    if (t + d > to)
      d = to - t;
    mprpc_plan_fault_t *f = add(g, t, kind, -1, d);
    if (!f)
      return;
    switch (kind) {
    case MPRPC_PLAN_PARTITION:
    case MPRPC_PLAN_ONEWAY:
      f->cons_mask = subset(g, p->consumers, 0.5);
      f->prov_mask = subset(g, p->providers, 0.6);
      f->dir = kind == MPRPC_PLAN_ONEWAY ? (int)range(g, 0, 1) : 0;
      break;
    case MPRPC_PLAN_NETEM:
      f->cons_mask = subset(g, p->consumers, 0.7);
      f->prov_mask = subset(g, p->providers, 0.5);
      f->delay_ms = (uint32_t)range(g, 10, 60);
      f->jitter_ms = (uint32_t)range(g, 5, f->delay_ms);
      f->loss_pm = (uint32_t)range(g, 10, 50);
      f->dup_pm = (uint32_t)range(g, 0, 20);
      break;
    case MPRPC_PLAN_CRASH_CONSUMER:
      f->a = (int)range(g, 0, (uint64_t)p->consumers - 1);
      break;
    case MPRPC_PLAN_ZK_CUT:
      /* One host, provider or consumer. */
      if (chance(g, 0.6))
        f->prov_mask = 1u << range(g, 0, (uint64_t)p->providers - 1);
      else
        f->cons_mask = 1u << range(g, 0, (uint64_t)p->consumers - 1);
      break;
    default:
      break;
    }
  }
}

static void base(mprpc_plan_t *p, bool quick) {
  p->providers = 3;
  p->consumers = 2;
  p->rate = 25;
  p->nonidem_frac = 0.3;
  p->max_retry = 2;
  p->timeout_ms = 1000;
  p->session_timeout_ms = 4000;
  p->start_ms = 1000;
  p->duration_ms = quick ? 22000 : 36000;
  p->quiet_ms = quick ? 11000 : 20000;
  p->recovery_bound_ms = 10000;
}

#define S 1000u

static void pl_partition(gen_t *g) {
  mprpc_plan_t *p = g->p;
  sprinkle(g, MPRPC_PLAN_PARTITION, 2 * S, p->quiet_ms, 5 * S, 1 * S, 5 * S);
}

static void pl_oneway(gen_t *g) {
  mprpc_plan_t *p = g->p;
  sprinkle(g, MPRPC_PLAN_ONEWAY, 2 * S, p->quiet_ms, 4 * S, 1 * S, 5 * S);
}

static void pl_lossy(gen_t *g) {
  mprpc_plan_t *p = g->p;
  sprinkle(g, MPRPC_PLAN_NETEM, 2 * S, p->quiet_ms, 5 * S, 2 * S, 6 * S);
}

static void pl_crash(gen_t *g) {
  mprpc_plan_t *p = g->p;
  sprinkle(g, MPRPC_PLAN_CRASH, 2 * S, p->quiet_ms, 3 * S, 1 * S, 4 * S);
  /* One consumer dies too (its calls in flight are abandoned, not checked). */
  add(g, range(g, 3 * S, p->quiet_ms / 2), MPRPC_PLAN_CRASH_CONSUMER,
      (int)range(g, 0, (uint64_t)p->consumers - 1), range(g, 1 * S, 3 * S));
}

static void pl_gray(gen_t *g) {
  mprpc_plan_t *p = g->p;
  /* Shorter than the session timeout: the node stays, the process is mute. */
  sprinkle(g, MPRPC_PLAN_STOP, 2 * S, p->quiet_ms, 5 * S, 1 * S, 3 * S);
}

static void pl_zk_leader(gen_t *g) {
  mprpc_plan_t *p = g->p;
  uint64_t q = p->quiet_ms;
  add(g, 3 * S, MPRPC_PLAN_ZK_KILL, -1, range(g, 3 * S, 5 * S));
  add(g, q / 2 + 1 * S, MPRPC_PLAN_ZK_KILL, -1, range(g, 2 * S, 4 * S));
  /* A provider moves while the ensemble is electing. */
  add(g, 3 * S + 500, MPRPC_PLAN_CRASH, -1, range(g, 2 * S, 4 * S));
}

static void pl_expiry(gen_t *g) {
  mprpc_plan_t *p = g->p;
  uint64_t st = p->session_timeout_ms;
  /* Cut longer than the session timeout: the session expires, the node
   * goes, and comes back when the host gets through again. */
  sprinkle(g, MPRPC_PLAN_ZK_CUT, 2 * S, p->quiet_ms, 3 * S, st + 1 * S, st + 3 * S);
  /* A provider stopped past its session timeout: expired while mute. */
  add(g, 4 * S, MPRPC_PLAN_STOP, -1, st + 1500);
}

static void pl_rolling(gen_t *g) {
  mprpc_plan_t *p = g->p;
  p->live_from_ms = 1; /* no idempotent call may fail at all */
  int n = p->quick ? 2 : 3;
  for (int k = 0; k < n; k++)
    add(g, (uint64_t)(3 + 5 * k) * S, MPRPC_PLAN_GRACEFUL, k % p->providers, 1 * S);
}

static void pl_swarm(gen_t *g) {
  mprpc_plan_t *p = g->p;
  p->providers = (int)range(g, 3, 5);
  p->consumers = (int)range(g, 2, 3);
  p->rate = (double)range(g, 10, 40);
  p->nonidem_frac = (double)range(g, 0, 6) / 10.0;
  p->max_retry = (int)range(g, 1, 3);
  uint64_t q = p->quiet_ms;
  bool any = false;
  for (int round = 0; !any && round < 8; round++) {
    if (chance(g, 0.4))
      any = true, sprinkle(g, MPRPC_PLAN_CRASH, 2 * S, q, range(g, 3, 8) * S, 1 * S, 4 * S);
    if (chance(g, 0.3))
      any = true, sprinkle(g, MPRPC_PLAN_GRACEFUL, 2 * S, q, range(g, 4, 8) * S, 500, 2 * S);
    if (chance(g, 0.4))
      any = true, sprinkle(g, MPRPC_PLAN_PARTITION, 2 * S, q, range(g, 4, 8) * S, 1 * S, 4 * S);
    if (chance(g, 0.3))
      any = true, sprinkle(g, MPRPC_PLAN_ONEWAY, 2 * S, q, range(g, 4, 8) * S, 1 * S, 4 * S);
    if (chance(g, 0.3))
      any = true, sprinkle(g, MPRPC_PLAN_NETEM, 2 * S, q, range(g, 4, 8) * S, 1 * S, 4 * S);
    if (chance(g, 0.3))
      any = true, sprinkle(g, MPRPC_PLAN_STOP, 2 * S, q, range(g, 5, 10) * S, 1 * S, 3 * S);
    if (chance(g, 0.2))
      any = true, add(g, range(g, 2 * S, q / 2), MPRPC_PLAN_ZK_KILL, -1, range(g, 2 * S, 4 * S));
    if (chance(g, 0.2))
      any = true, sprinkle(g, MPRPC_PLAN_ZK_CUT, 2 * S, q, range(g, 4, 8) * S,
                           p->session_timeout_ms + 500, p->session_timeout_ms + 2 * S);
    if (chance(g, 0.2))
      any = true, sprinkle(g, MPRPC_PLAN_CRASH_CONSUMER, 2 * S, q, range(g, 6, 10) * S, 1 * S,
                           3 * S);
  }
}

static const struct {
  const char *name, *desc, *twin;
  void (*make)(gen_t *g);
} plans[] = {
    {"partition", "symmetric partitions between random consumer and provider sets", "partition",
     pl_partition},
    {"one_way_partition", "one-way partitions: requests or responses dropped", "oneway", pl_oneway},
    {"lossy_slow", "delay, jitter, loss and duplication between random consumer/provider sets",
     NULL, pl_lossy},
    {"provider_crash_restart", "providers killed (-9) and restarted on a new port; a consumer killed too",
     "crash_restart", pl_crash},
    {"gray_failure", "a provider SIGSTOPped for 1-3 s (shorter than its session), then SIGCONT",
     NULL, pl_gray},
    {"zk_leader_loss", "the ZooKeeper leader killed twice (election), a provider moves meanwhile",
     NULL, pl_zk_leader},
    {"session_expiry_storm", "hosts cut from ZooKeeper past the session timeout; a provider stopped past it",
     "expiry_storm", pl_expiry},
    {"rolling_restart", "providers stop gracefully one after another and come back: no idempotent call fails",
     "rolling_restart", pl_rolling},
    {"swarm", "the seed picks the topology, the workload and which faults are on", "swarm",
     pl_swarm},
};

#define NPLANS (sizeof plans / sizeof plans[0])

size_t mprpc_plan_count(void) { return NPLANS; }
const char *mprpc_plan_name(size_t i) { return i < NPLANS ? plans[i].name : NULL; }
const char *mprpc_plan_desc(size_t i) { return i < NPLANS ? plans[i].desc : NULL; }

const char *mprpc_plan_sim_twin(const char *name) {
  for (size_t i = 0; i < NPLANS; i++)
    if (strcmp(plans[i].name, name) == 0)
      return plans[i].twin;
  return NULL;
}

static int by_time(const void *a, const void *b) {
  const mprpc_plan_fault_t *x = a, *y = b;
  return x->at_ms < y->at_ms ? -1 : x->at_ms > y->at_ms;
}

int mprpc_plan_make(const char *name, uint64_t seed, bool quick, mprpc_plan_t *out) {
  for (size_t i = 0; i < NPLANS; i++) {
    if (strcmp(plans[i].name, name) != 0)
      continue;
    memset(out, 0, sizeof *out);
    snprintf(out->scenario, sizeof out->scenario, "%s", name);
    out->seed = seed;
    out->quick = quick;
    base(out, quick);
    gen_t g = {.p = out};
    /* The name is mixed in so two scenarios with one seed differ. */
    uint64_t h = seed;
    for (const char *c = name; *c; c++)
      h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    mprpc_xoshiro_seed(&g.x, h);
    plans[i].make(&g);
    if (!out->live_from_ms)
      out->live_from_ms = out->quiet_ms + 10000;
    if (out->live_from_ms > out->duration_ms)
      out->live_from_ms = out->duration_ms;
    /* Stable sort by time (insertion order breaks ties). */
    for (size_t k = 0; k < out->nfaults; k++)
      out->faults[k].at_ms = out->faults[k].at_ms * 128 + k;
    qsort(out->faults, out->nfaults, sizeof out->faults[0], by_time);
    for (size_t k = 0; k < out->nfaults; k++)
      out->faults[k].at_ms /= 128;
    return 0;
  }
  return MPRPC_ENOTFOUND;
}

static const char *const kind_names[MPRPC_PLAN__COUNT] = {
    [MPRPC_PLAN_PARTITION] = "partition",    [MPRPC_PLAN_ONEWAY] = "one_way",
    [MPRPC_PLAN_NETEM] = "netem",            [MPRPC_PLAN_CRASH] = "crash",
    [MPRPC_PLAN_CRASH_CONSUMER] = "crash_consumer", [MPRPC_PLAN_STOP] = "sigstop",
    [MPRPC_PLAN_GRACEFUL] = "graceful",      [MPRPC_PLAN_ZK_KILL] = "zk_kill",
    [MPRPC_PLAN_ZK_CUT] = "zk_cut",
};

const char *mprpc_plan_kind_name(int kind) {
  if (kind <= 0 || kind >= MPRPC_PLAN__COUNT)
    return "?";
  return kind_names[kind];
}

static int mask_str(char *buf, size_t n, char tag, uint32_t m) {
  int k = snprintf(buf, n, "%c{", tag);
  bool first = true;
  for (int i = 0; i < 32 && k >= 0 && (size_t)k < n; i++)
    if (m & (1u << i)) {
      k += snprintf(buf + k, n - (size_t)k, "%s%d", first ? "" : ",", i);
      first = false;
    }
  if (k >= 0 && (size_t)k < n)
    k += snprintf(buf + k, n - (size_t)k, "}");
  return k;
}

int mprpc_plan_describe(const mprpc_plan_fault_t *f, char *buf, size_t n) {
  char c[64], p[64];
  mask_str(c, sizeof c, 'c', f->cons_mask);
  mask_str(p, sizeof p, 'p', f->prov_mask);
  const char *k = mprpc_plan_kind_name(f->kind);
  unsigned long long d = (unsigned long long)f->dur_ms;
  switch (f->kind) {
  case MPRPC_PLAN_PARTITION:
    return snprintf(buf, n, "%s %s x %s %llums", k, c, p, d);
  case MPRPC_PLAN_ONEWAY:
    return snprintf(buf, n, "%s %s %s %s %llums", k, f->dir ? p : c, "->", f->dir ? c : p, d);
  case MPRPC_PLAN_NETEM:
    return snprintf(buf, n, "%s %s x %s delay=%ums jitter=%ums loss=%u%% dup=%u%% %llums", k, c,
                    p, f->delay_ms, f->jitter_ms, f->loss_pm / 10, f->dup_pm / 10, d);
  case MPRPC_PLAN_ZK_CUT:
    return snprintf(buf, n, "%s %s%s %llums", k, f->cons_mask ? c : "", f->prov_mask ? p : "", d);
  case MPRPC_PLAN_CRASH_CONSUMER:
    return snprintf(buf, n, "%s c%d %llums", k, f->a, d);
  case MPRPC_PLAN_ZK_KILL:
    if (f->a < 0)
      return snprintf(buf, n, "%s leader %llums", k, d);
    return snprintf(buf, n, "%s zk%d %llums", k, f->a, d);
  default:
    if (f->a < 0)
      return snprintf(buf, n, "%s p? %llums", k, d);
    return snprintf(buf, n, "%s p%d %llums", k, f->a, d);
  }
}
