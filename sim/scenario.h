/*
 * Simulated scenarios: the production provider (src/core/server.c) and
 * channel (src/core/channel.c) on virtual loops, the virtual network and the
 * virtual ZooKeeper, driven through faults by a seed, with invariants checked
 * on every call (docs/simulator.md lists them).
 *
 * mprpc_sim_run() runs one scenario for one seed, single-threaded, and fills
 * a result; identical options give identical results and trace hashes.
 */
#ifndef MPRPC_SIM_SCENARIO_H
#define MPRPC_SIM_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct mprpc_plan;     /* sim/plan.h */
struct mprpc_timeline; /* sim/timeline.h */

typedef struct mprpc_sim_opts {
  uint64_t seed;
  FILE *trace;       /* readable trace, or NULL */
  unsigned bugs;     /* MPRPC_SIM_BUG_* flags (sim/sim.h) */
  /* Fault knobs; 0 / negative keeps the scenario's own value. */
  size_t chunk;      /* max chunk size in bytes (1 = 1-byte chunks) */
  bool chunk_fixed;  /* every chunk exactly `chunk` bytes */
  uint64_t lat_max_us; /* one-way latency upper bound */
  int consumers;
  int providers;
  uint64_t duration_s; /* how long calls are issued */
  double rate;       /* calls per second per consumer */
  double fault_scale; /* multiplies fault rates (swarm, churn); 0 = 1 */
  int64_t timeout_ms;
  int max_retry;     /* -1 = scenario default */
  FILE *violations;  /* one line per violation (first 20), or NULL */
  /* Recorded into when set (mprpc-sim --svg); recording changes nothing. */
  struct mprpc_timeline *timeline;
  /* Internal: set by mprpc_sim_run_plan. */
  const struct mprpc_plan *plan;
  const char *gov_limit; /* gov_overload: max_concurrency.Echo ("auto", "N", "none"); NULL = the scenario's */
} mprpc_sim_opts_t;

typedef struct mprpc_sim_result {
  uint64_t calls, ok, failed, violations;
  uint64_t executions; /* handler runs seen by providers */
  uint64_t sim_ns;
  uint64_t events;
  uint64_t hash;
  /* After the faults healed, the longest a running provider waited for its
   * first call (ns); UINT64_MAX: one never got one; 0 without faults. */
  uint64_t recovery_ns;
  /* gov_overload: goodput over the measured window, the providers'
   * capacity (calls/s) and the p99 latency of the calls that succeeded */
  double gov_goodput, gov_capacity;
  uint64_t gov_p99_ns;
  char first_violation[256];
  struct {
    int code;
    uint64_t count;
  } fails[8]; /* failed calls by error code (first 8 codes seen) */
} mprpc_sim_result_t;

typedef struct mprpc_sim_scenario mprpc_sim_scenario_t;

size_t mprpc_sim_scenario_count(void);
const mprpc_sim_scenario_t *mprpc_sim_scenario_at(size_t i);
const mprpc_sim_scenario_t *mprpc_sim_scenario_find(const char *name);
const char *mprpc_sim_scenario_name(const mprpc_sim_scenario_t *sc);
const char *mprpc_sim_scenario_desc(const mprpc_sim_scenario_t *sc);

/* Runs one seed. Returns 0 (the result says whether invariants held) or a
 * negative MPRPC_E* code when the run could not be set up. */
int mprpc_sim_run(const mprpc_sim_scenario_t *sc, const mprpc_sim_opts_t *o,
                  mprpc_sim_result_t *r);

/* Scenarios with their own topology (registered in scenario.c's table):
 * trace_hop, in sim/trace_hop.c. */
int mprpc__sim_trace_hop_run(const mprpc_sim_opts_t *o, mprpc_sim_result_t *r);
/* gov_local, in sim/gov_local.c: governance from the processes' own text. */
int mprpc__sim_gov_local_run(const mprpc_sim_opts_t *o, mprpc_sim_result_t *r);

/* Runs a fault plan (sim/plan.h, the chaos harness's scenarios) on virtual
 * hosts: the plan's topology, workload and faults, mapped onto the virtual
 * network and ZooKeeper as docs/simulator.md ("Model against reality")
 * describes. The recovery bound of the plan is enforced. o->plan is
 * ignored; the other options apply as in mprpc_sim_run. */
int mprpc_sim_run_plan(const struct mprpc_plan *plan, const mprpc_sim_opts_t *o,
                       mprpc_sim_result_t *r);

#endif
