/*
 * The shared invariant checker (sim/check.h). The messages are part of the
 * simulator's and the chaos harness's output: keep them stable.
 */
#include "check.h"

#include <stdarg.h>
#include <stdio.h>

#include "mprpc/errors.h"
#include "scenario.h"
#include "sim.h"

static void say(mprpc_check_report_cb report, void *ud, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(mprpc_check_report_cb report, void *ud, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  report(ud, msg);
}

static unsigned long long ull(uint64_t v) { return (unsigned long long)v; }

uint32_t mprpc_check_exec_limit(const mprpc_check_policy_t *p, bool idem) {
  int retries = p->max_retry < 0 ? 0 : p->max_retry;
  return idem ? 1u + (uint32_t)retries : 1u;
}

void mprpc_check_exec(const mprpc_check_policy_t *p, mprpc_check_call_t *c,
                      mprpc_check_report_cb report, void *ud) {
  uint32_t limit = mprpc_check_exec_limit(p, c->idem);
  if (c->execs > limit && !c->exec_flagged) {
    c->exec_flagged = 1;
    say(report, ud, "%s call %llu executed %u times (limit %u)",
        c->idem ? "idempotent" : "non-idempotent", ull(c->id), c->execs, limit);
  }
}

bool mprpc_check_done(const mprpc_check_policy_t *p, mprpc_check_call_t *c, bool ok,
                      bool own_response, const char *resp_text, int err, uint64_t now_ns,
                      bool tearing_down, mprpc_check_report_cb report, void *ud) {
  if (c->done) {
    say(report, ud, "call %llu: closure ran a second time", ull(c->id));
    return false;
  }
  c->done = 1;
  c->ok = ok;
  if (ok) {
    if (!own_response)
      say(report, ud, "call %llu got the response of another request (\"%.20s\")", ull(c->id),
          resp_text ? resp_text : "(null)");
  } else {
    c->err = err;
    if (p->no_failures && !tearing_down)
      say(report, ud, "call %llu failed with %s in a run without faults", ull(c->id),
          mprpc_err_name(err));
    else if (c->idem && now_ns >= p->live_from_ns && c->start_ns >= p->live_from_ns &&
             !tearing_down)
      say(report, ud, "liveness: idempotent call %llu failed with %s %.1f s after the faults healed",
          ull(c->id), mprpc_err_name(err), (double)(c->start_ns - p->quiet_after_ns) / 1e9);
  }
  uint64_t deadline = c->start_ns + (uint64_t)p->timeout_ms * 1000000u;
  if (p->timeout_ms > 0 && now_ns > deadline + p->deadline_slack_ns)
    say(report, ud, "call %llu completed %.3f s after its deadline (%s)", ull(c->id),
        (double)(now_ns - deadline) / 1e9, ok ? "ok" : mprpc_err_name(err));
  return true;
}

bool mprpc_check_surely_not_run(int err) {
  switch (err) {
  case MPRPC_ECONNREFUSED:
  case MPRPC_ETIMEDOUT: /* connect timeout (an RPC timeout is ERPCTIMEDOUT) */
  case MPRPC_ENOENDPOINT:
  case MPRPC_ELOGOFF:
  case MPRPC_ELIMIT:
  case MPRPC_EOVERCROWDED:
    return true;
  default:
    return false;
  }
}

void mprpc_check_final(const mprpc_check_policy_t *p,
                       mprpc_check_call_t *(*get)(void *ud_calls, size_t i), void *ud_calls,
                       size_t n, mprpc_check_report_cb report, void *ud) {
  (void)p;
  /* Exactly once: every accepted call has completed by now. */
  uint64_t lost = 0, first = 0;
  for (size_t i = 0; i < n; i++) {
    const mprpc_check_call_t *c = get(ud_calls, i);
    if (!c->done && !c->abandoned && lost++ == 0)
      first = c->id;
  }
  if (lost)
    say(report, ud, "%llu calls never ran their closure (first: call %llu)", ull(lost), ull(first));
  /* Truthful errors: a non-idempotent call is only retried after attempts
   * that surely did not run, so when its final error also says "did not
   * run", it must not have executed anywhere. */
  for (size_t i = 0; i < n; i++) {
    const mprpc_check_call_t *c = get(ud_calls, i);
    if (!c->idem && c->execs > 0 && mprpc_check_surely_not_run(c->err)) {
      say(report, ud, "non-idempotent call %llu failed with %s (did not run) but executed %u times",
          ull(c->id), mprpc_err_name(c->err), c->execs);
      break;
    }
  }
  /* A response comes from a handler: an ok call executed somewhere. */
  uint64_t phantom = 0;
  for (size_t i = 0; i < n; i++) {
    const mprpc_check_call_t *c = get(ud_calls, i);
    if (c->done && c->ok && c->execs == 0 && !c->local && phantom++ == 0)
      first = c->id;
  }
  if (phantom)
    say(report, ud, "%llu calls reported ok that no provider executed (first: call %llu)",
        ull(phantom), ull(first));
}

void mprpc_check_registry(size_t nodes, int running, mprpc_check_report_cb report, void *ud) {
  if (nodes != (size_t)running)
    say(report, ud, "registry did not converge: %zu nodes for %d running providers", nodes,
        running);
}

bool mprpc_check_consumer_endpoints(int consumer, size_t n_idem, size_t n_non, int running,
                                    mprpc_check_report_cb report, void *ud) {
  if (n_idem == (size_t)running && n_non == (size_t)running)
    return true;
  say(report, ud, "consumer %d did not converge: channels know %zu/%zu endpoints, %d running",
      consumer, n_idem, n_non, running);
  return false;
}

void mprpc_check_unknown_ids(int consumer, uint64_t unknown, mprpc_check_report_cb report,
                             void *ud) {
  if (unknown)
    say(report, ud, "consumer %d got %llu responses with correlation ids it never issued",
        consumer, ull(unknown));
}

uint64_t mprpc_check_recovery(const mprpc_check_policy_t *p, int provider, uint64_t heal_ns,
                              uint64_t first_ns, mprpc_check_report_cb report, void *ud) {
  uint64_t d = first_ns == UINT64_MAX ? UINT64_MAX : (first_ns > heal_ns ? first_ns - heal_ns : 0);
  if (p->recovery_bound_ns && d > p->recovery_bound_ns) {
    if (d == UINT64_MAX)
      say(report, ud, "recovery: provider %d got no call after the faults healed", provider);
    else
      say(report, ud, "recovery: provider %d got its first call %.1f s after the faults healed (bound %.1f s)",
          provider, (double)d / 1e9, (double)p->recovery_bound_ns / 1e9);
  }
  return d;
}

/* --- the simulator's sink for violations ----------------------------------- */

void mprpc_sim_violate(mprpc_sim_violations_t *v, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  uint64_t now = mprpc_sim_now(v->w);
  if (v->res->violations++ == 0)
    snprintf(v->res->first_violation, sizeof v->res->first_violation, "t=%.3fs %.200s",
             (double)now / 1e9, msg);
  if (v->o->violations && v->printed < 5) {
    v->printed++;
    fprintf(v->o->violations, "  violation seed=%llu t=%.3fs: %s\n",
            (unsigned long long)v->o->seed, (double)now / 1e9, msg);
  }
  mprpc_sim_tracef(v->w, "VIOLATION %s", msg);
  mprpc_sim_note(v->w, "violation", v->res->violations, 0);
}

void mprpc_sim_violations_end(const mprpc_sim_violations_t *v) {
  if (v->o->violations && v->res->violations > (uint64_t)v->printed)
    fprintf(v->o->violations, "  ... and %llu more violations with seed %llu\n",
            (unsigned long long)(v->res->violations - (uint64_t)v->printed),
            (unsigned long long)v->o->seed);
}
