/*
 * The invariant checker shared by the simulator (sim/vprov.c, sim/vcons.c
 * and sim/run.c, which feed it as events happen on virtual time) and the
 * chaos harness (tests/chaos/, which feeds it afterwards from the consumers' and the
 * providers' log files of real processes). One set of rules, one set of
 * messages: docs/simulator.md lists them.
 *
 * Input is a call record per call (what the consumer saw) with the number of
 * executions the providers logged for it, plus a few whole-run facts
 * (registry nodes, endpoints each consumer knows, first execution per
 * provider after the faults healed). Every broken rule is reported through a
 * callback with a one-line message; nothing here allocates or keeps state
 * beyond the records it is given.
 *
 * In the simulator those messages end in mprpc_sim_violate(), which every
 * scenario uses for its own checks too.
 */
#ifndef MPRPC_SIM_CHECK_H
#define MPRPC_SIM_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The rules of one run. Times are nanoseconds on the run's own clock (virtual
 * time in the simulator, time since the scenario started in the chaos run). */
typedef struct mprpc_check_policy {
  int max_retry;              /* retries after the first attempt (>= 0) */
  int64_t timeout_ms;         /* whole-call deadline; <= 0: none */
  uint64_t deadline_slack_ns; /* a completion may be this late */
  uint64_t quiet_after_ns;    /* every fault healed from here (0: no faults) */
  uint64_t live_from_ns;      /* idempotent calls started from here must succeed */
  bool no_failures;           /* a run without faults: no call may fail */
  uint64_t recovery_bound_ns; /* providers get traffic within this after the heal; 0: not enforced */
} mprpc_check_policy_t;

/* One call. The checker reads every field and writes `done` and
 * `exec_flagged`. */
typedef struct mprpc_check_call {
  uint64_t id;        /* the request's token */
  uint64_t start_ns;
  uint32_t execs;     /* handler runs the providers saw for it */
  int err;            /* final error (0 when ok or not finished) */
  uint16_t consumer;
  uint8_t idem;
  uint8_t done;       /* the closure ran (0 or 1) */
  uint8_t ok;         /* it ran with a response */
  uint8_t exec_flagged;
  uint8_t abandoned;  /* its consumer was killed: outcome unknown, not checked */
  uint8_t local;      /* answered by the consumer itself (a fallback): ok without an execution */
} mprpc_check_call_t;

typedef void (*mprpc_check_report_cb)(void *ud, const char *msg);

/* Executions a call may have: 1 for a non-idempotent call, 1 + max_retry for
 * an idempotent one. */
uint32_t mprpc_check_exec_limit(const mprpc_check_policy_t *p, bool idem);

/* After c->execs was incremented: at most once / bounded retries (reported
 * once per call). */
void mprpc_check_exec(const mprpc_check_policy_t *p, mprpc_check_call_t *c,
                      mprpc_check_report_cb report, void *ud);

/* The call's closure ran at now_ns. ok: with a response whose text is
 * resp_text (own_response: it carries this call's token); else failed with
 * err (non-zero). tearing_down: the run is being torn down (cancellations
 * are expected then). Checks, in this order: exactly once, own response,
 * no failure in a fault-free run, liveness, deadline (completion no later
 * than start + timeout + slack). Returns false, after reporting it, when the
 * closure had run already (the caller must not count it again). */
bool mprpc_check_done(const mprpc_check_policy_t *p, mprpc_check_call_t *c, bool ok,
                      bool own_response, const char *resp_text, int err, uint64_t now_ns,
                      bool tearing_down, mprpc_check_report_cb report, void *ud);

/* The error codes that mean "this attempt surely did not run". */
bool mprpc_check_surely_not_run(int err);

/* End of run, over every call (get(ud_calls, i) for i < n): every accepted
 * call ran its closure; a non-idempotent call that failed with "did not run"
 * did not execute; a call reported ok executed at least once. */
void mprpc_check_final(const mprpc_check_policy_t *p,
                       mprpc_check_call_t *(*get)(void *ud_calls, size_t i), void *ud_calls,
                       size_t n, mprpc_check_report_cb report, void *ud);

/* Convergence: the registry holds exactly the running providers. */
void mprpc_check_registry(size_t nodes, int running, mprpc_check_report_cb report, void *ud);
/* A consumer's two channels know exactly the running providers. Returns
 * false when it reported (the simulator stops at the first). */
bool mprpc_check_consumer_endpoints(int consumer, size_t n_idem, size_t n_non, int running,
                                    mprpc_check_report_cb report, void *ud);
/* Clean wire: a channel never sees a correlation id it did not issue. */
void mprpc_check_unknown_ids(int consumer, uint64_t unknown, mprpc_check_report_cb report,
                             void *ud);

/* Recovery: provider `provider`, up after the heal at heal_ns, executed its
 * first call after the heal at first_ns (UINT64_MAX: never). Returns the
 * delay in ns (UINT64_MAX when none); reports when the policy bounds it and
 * the bound was exceeded. */
uint64_t mprpc_check_recovery(const mprpc_check_policy_t *p, int provider, uint64_t heal_ns,
                              uint64_t first_ns, mprpc_check_report_cb report, void *ud);

/* --- the simulator's sink for violations ----------------------------------- */

struct mprpc_sim_world;
struct mprpc_sim_opts;
struct mprpc_sim_result;

/* Where one simulator run's violations go. */
typedef struct mprpc_sim_violations {
  struct mprpc_sim_world *w;
  const struct mprpc_sim_opts *o;
  struct mprpc_sim_result *res;
  int printed; /* lines written to o->violations so far */
} mprpc_sim_violations_t;

/* A broken rule at the world's current time: counted in res (the first one
 * kept in res->first_violation), the run's first five printed to
 * o->violations, each traced and hashed into the run. */
void mprpc_sim_violate(mprpc_sim_violations_t *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* End of the run: says how many violations were not printed. */
void mprpc_sim_violations_end(const mprpc_sim_violations_t *v);

#endif
