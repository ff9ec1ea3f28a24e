/*
 * Fault plans: a topology, a workload and a list of timed faults, drawn from
 * a scenario name and a seed. The same plan runs on real processes in a
 * private network namespace (tests/chaos/, `make chaos`) and on virtual
 * hosts in the simulator (mprpc-sim --plan NAME), so their failure and
 * recovery figures can be put side by side (docs/simulator.md).
 *
 * A plan is plain data: making one draws only from its own xoshiro seeded
 * with the seed, so the same (name, seed, quick) gives the same plan on any
 * machine. Hosts are named by index: providers 0..P-1, consumers 0..C-1,
 * ZooKeeper nodes 0..2.
 */
#ifndef MPRPC_SIM_PLAN_H
#define MPRPC_SIM_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
  MPRPC_PLAN_PARTITION = 1, /* cons_mask x prov_mask cut both ways; every cut heals at at+dur */
  MPRPC_PLAN_ONEWAY,        /* dir 0: consumer->provider packets dropped, 1: provider->consumer */
  MPRPC_PLAN_NETEM,         /* delay/jitter/loss/duplication both ways between the masks */
  MPRPC_PLAN_CRASH,         /* kill -9 provider a (-1: a random running one), back after dur */
  MPRPC_PLAN_CRASH_CONSUMER,/* kill -9 consumer a, back after dur */
  MPRPC_PLAN_STOP,          /* SIGSTOP provider a (-1: random) for dur, then SIGCONT */
  MPRPC_PLAN_GRACEFUL,      /* SIGTERM provider a (-1: random), back after dur */
  MPRPC_PLAN_ZK_KILL,       /* kill -9 ZooKeeper node a (-1: the leader), back after dur */
  MPRPC_PLAN_ZK_CUT,        /* cut hosts in the masks from every ZooKeeper node for dur */
  MPRPC_PLAN__COUNT
};

#define MPRPC_PLAN_MAX_FAULTS 96
#define MPRPC_PLAN_MAX_PROVIDERS 5
#define MPRPC_PLAN_MAX_CONSUMERS 3

typedef struct mprpc_plan_fault {
  uint64_t at_ms, dur_ms;
  int kind;
  int a;              /* the process, for the kinds that name one */
  uint32_t cons_mask; /* bit i: consumer i */
  uint32_t prov_mask; /* bit i: provider i */
  int dir;            /* MPRPC_PLAN_ONEWAY */
  uint32_t delay_ms, jitter_ms; /* MPRPC_PLAN_NETEM, one way */
  uint32_t loss_pm, dup_pm;     /* per mille, each way */
} mprpc_plan_fault_t;

typedef struct mprpc_plan {
  char scenario[32];
  uint64_t seed;
  bool quick;
  int providers, consumers;
  double rate;          /* calls per second per consumer */
  double nonidem_frac;  /* share of calls on the non-idempotent channel */
  int max_retry;
  int64_t timeout_ms;
  uint64_t session_timeout_ms;
  uint64_t duration_ms; /* calls are issued in [start_ms, duration_ms) */
  uint64_t start_ms;
  uint64_t quiet_ms;    /* every fault healed, every process back */
  uint64_t live_from_ms;/* idempotent calls started from here must succeed */
  uint64_t recovery_bound_ms;
  size_t nfaults;
  mprpc_plan_fault_t faults[MPRPC_PLAN_MAX_FAULTS];
} mprpc_plan_t;

size_t mprpc_plan_count(void);
/* Scenario i's name (NULL past the end) and one-line description. */
const char *mprpc_plan_name(size_t i);
const char *mprpc_plan_desc(size_t i);
/* The simulator scenario whose fault schedule this one follows (NULL: none). */
const char *mprpc_plan_sim_twin(const char *name);

/* Fills *out. quick: the short timeline of `make chaos CHAOS_QUICK=1`.
 * 0, or MPRPC_ENOTFOUND for an unknown name. Faults are sorted by time. */
int mprpc_plan_make(const char *name, uint64_t seed, bool quick, mprpc_plan_t *out);

const char *mprpc_plan_kind_name(int kind);
/* "partition c{0,1} x p{2} 3200ms" and the like; returns snprintf's count. */
int mprpc_plan_describe(const mprpc_plan_fault_t *f, char *buf, size_t n);

#endif
