/*
 * mprpc-sim: runs the deterministic simulator's scenarios over seeds.
 * See docs/simulator.md. Exit status: 0 when every invariant held, 1 on a
 * violation, 2 on a usage error.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "plan.h"
#include "scenario.h"
#include "sim.h"
#include "timeline.h"

static const struct {
  const char *name;
  unsigned flag;
} bug_names[] = {
    {"double_closure", MPRPC_SIM_BUG_DOUBLE_CLOSURE},
    {"lost_closure", MPRPC_SIM_BUG_LOST_CLOSURE},
    {"wrong_response", MPRPC_SIM_BUG_WRONG_RESPONSE},
    {"no_deadline", MPRPC_SIM_BUG_NO_DEADLINE},
    {"retry_nonidem", MPRPC_SIM_BUG_RETRY_NONIDEM},
    {"extra_retries", MPRPC_SIM_BUG_EXTRA_RETRIES},
    {"stale_node", MPRPC_SIM_BUG_STALE_NODE},
    {"lost_watch", MPRPC_SIM_BUG_LOST_WATCH},
    {"no_heal", MPRPC_SIM_BUG_NO_HEAL},
    {"lying_logoff", MPRPC_SIM_BUG_LYING_LOGOFF},
    {"lost_trace", MPRPC_SIM_BUG_LOST_TRACE},
};

/* What is running now, so that a crash (an ASan report, an abort) still
 * names the seed to replay. */
/* The timeline's SVG text into path; the library renders, the command writes. */
static void write_svg(const mprpc_timeline_t *tl, const char *path, const char *title) {
  char *svg = NULL;
  size_t len = 0;
  FILE *f = NULL;
  if (mprpc_timeline_svg(tl, title, &svg, &len) < 0 || !(f = fopen(path, "w")) ||
      fwrite(svg, 1, len, f) != len) {
    fprintf(stderr, "mprpc-sim: cannot write %s\n", path);
  }
  if (f && fclose(f) != 0)
    fprintf(stderr, "mprpc-sim: cannot write %s\n", path);
  free(svg);
}

static char current_run[512];
static size_t current_len;

static void say_current(void) {
  if (current_len) {
    ssize_t rc = write(2, current_run, current_len);
    (void)rc;
  }
}

static void on_fatal_signal(int sig) {
  say_current();
  signal(sig, SIG_DFL);
  raise(sig);
}

static void set_current(const char *argv0, const char *name, uint64_t seed, const char *knobs) {
  int n = snprintf(current_run, sizeof current_run,
                   "mprpc-sim: crashed; replay: %s --scenario %s --seed %" PRIu64 "%s\n", argv0,
                   name, seed, knobs);
  current_len = n < 0 ? 0 : ((size_t)n < sizeof current_run ? (size_t)n : sizeof current_run - 1);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: mprpc-sim [--list] [--all | --scenario NAME ...] [--seed N] [--seeds K]\n"
          "                 [--trace] [--check-determinism] [--verbose] [--log LEVEL]\n"
          "                 [--svg FILE] (one scenario, one seed: its timeline)\n"
          "       mprpc-sim --plan NAME [--quick] ...  a chaos plan (make chaos) on virtual hosts\n"
          "  fault knobs: --chunk N [--chunk-fixed] --lat-max-us US --consumers N\n"
          "               --providers N --duration-s S --rate CALLS_PER_S --fault-scale X\n"
          "               --timeout-ms MS --max-retry N --gov-limit auto|N|none (gov_overload)\n"
          "  self-test:   --bug NAME (");
  for (size_t i = 0; i < sizeof bug_names / sizeof bug_names[0]; i++)
    fprintf(f, "%s%s", i ? "|" : "", bug_names[i].name);
  fprintf(f, ")\n");
}

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool parse_u64(const char *s, uint64_t *out) {
  if (!s || !*s)
    return false;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end)
    return false;
  *out = v;
  return true;
}

int main(int argc, char **argv) {
  mprpc_sim_opts_t o = {.max_retry = -1, .violations = stdout};
  const char *names[64];
  size_t nnames = 0;
  bool all = false, list = false, check_det = false, verbose = false, quick = false;
  const char *svg = NULL, *plan_name = NULL;
  uint64_t seed = 1, seeds = 1;
  char knobs[512] = "";
  size_t kl = 0;
  int log_level = MPRPC_LOG_LEVEL_OFF;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    uint64_t u;
#define NEED_U64()                                                                                 \
  do {                                                                                             \
    if (!parse_u64(v, &u)) {                                                                       \
      fprintf(stderr, "mprpc-sim: %s needs a number\n", a);                                       \
      return 2;                                                                                    \
    }                                                                                              \
    i++;                                                                                           \
  } while (0)
#define KNOB()                                                                                     \
  do {                                                                                             \
    if (kl < sizeof knobs)                                                                         \
      kl += (size_t)snprintf(knobs + kl, sizeof knobs - kl, " %s %s", a, v);                      \
  } while (0)
    if (strcmp(a, "--list") == 0) {
      list = true;
    } else if (strcmp(a, "--all") == 0) {
      all = true;
    } else if (strcmp(a, "--scenario") == 0 && v) {
      if (nnames < sizeof names / sizeof names[0])
        names[nnames++] = v;
      i++;
    } else if (strcmp(a, "--seed") == 0) {
      NEED_U64();
      seed = u;
    } else if (strcmp(a, "--seeds") == 0) {
      NEED_U64();
      seeds = u ? u : 1;
    } else if (strcmp(a, "--trace") == 0) {
      o.trace = stdout;
    } else if (strcmp(a, "--check-determinism") == 0) {
      check_det = true;
    } else if (strcmp(a, "--verbose") == 0) {
      verbose = true;
    } else if (strcmp(a, "--log") == 0 && v) {
      log_level = mprpc_log_level_from_name(v);
      if (log_level < 0) {
        fprintf(stderr, "mprpc-sim: unknown log level %s\n", v);
        return 2;
      }
      i++;
    } else if (strcmp(a, "--chunk") == 0) {
      NEED_U64();
      o.chunk = (size_t)u;
      KNOB();
    } else if (strcmp(a, "--chunk-fixed") == 0) {
      o.chunk_fixed = true;
      kl += (size_t)snprintf(knobs + kl, sizeof knobs - kl, " --chunk-fixed");
    } else if (strcmp(a, "--lat-max-us") == 0) {
      NEED_U64();
      o.lat_max_us = u;
      KNOB();
    } else if (strcmp(a, "--consumers") == 0) {
      NEED_U64();
      o.consumers = (int)u;
      KNOB();
    } else if (strcmp(a, "--providers") == 0) {
      NEED_U64();
      o.providers = (int)u;
      KNOB();
    } else if (strcmp(a, "--duration-s") == 0) {
      NEED_U64();
      o.duration_s = u;
      KNOB();
    } else if (strcmp(a, "--rate") == 0 && v) {
      o.rate = atof(v);
      KNOB();
      i++;
    } else if (strcmp(a, "--fault-scale") == 0 && v) {
      o.fault_scale = atof(v);
      KNOB();
      i++;
    } else if (strcmp(a, "--timeout-ms") == 0) {
      NEED_U64();
      o.timeout_ms = (int64_t)u;
      KNOB();
    } else if (strcmp(a, "--gov-limit") == 0 && i + 1 < argc) {
      o.gov_limit = argv[++i];
    } else if (strcmp(a, "--max-retry") == 0) {
      NEED_U64();
      o.max_retry = (int)u;
      KNOB();
    } else if (strcmp(a, "--bug") == 0 && v) {
      bool found = false;
      for (size_t b = 0; b < sizeof bug_names / sizeof bug_names[0]; b++)
        if (strcmp(v, bug_names[b].name) == 0) {
          o.bugs |= bug_names[b].flag;
          found = true;
        }
      if (!found) {
        fprintf(stderr, "mprpc-sim: unknown bug %s\n", v);
        usage(stderr);
        return 2;
      }
      KNOB();
      i++;
    } else if (strcmp(a, "--svg") == 0 && v) {
      svg = v;
      i++;
    } else if (strcmp(a, "--plan") == 0 && v) {
      plan_name = v;
      i++;
    } else if (strcmp(a, "--quick") == 0) {
      quick = true;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "mprpc-sim: unknown or incomplete option %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (kl >= sizeof knobs)
    knobs[sizeof knobs - 1] = 0;

  if (list) {
    for (size_t i = 0; i < mprpc_sim_scenario_count(); i++) {
      const mprpc_sim_scenario_t *sc = mprpc_sim_scenario_at(i);
      printf("%s  %s\n", mprpc_sim_scenario_name(sc), mprpc_sim_scenario_desc(sc));
    }
    for (size_t i = 0; i < mprpc_plan_count(); i++)
      printf("--plan %s  %s\n", mprpc_plan_name(i), mprpc_plan_desc(i));
    return 0;
  }
  mprpc_timeline_t *tl = NULL;
  if (svg) {
    if ((all || nnames + (plan_name != NULL) != 1) || seeds != 1) {
      fprintf(stderr, "mprpc-sim: --svg needs one scenario (or --plan) and one seed\n");
      return 2;
    }
    tl = mprpc_timeline_new(600 * MPRPC_NS_PER_S, 16);
    if (!tl)
      return 2;
    o.timeline = tl;
  }
  if (plan_name) {
    /* A chaos plan on virtual hosts (docs/simulator.md, "Model against reality"). */
    mprpc_log_set_level(log_level);
    mprpc_sim_result_t sum = {0};
    uint64_t viol = 0, rec_max = 0;
    double t0 = wall_now();
    for (uint64_t k = 0; k < seeds; k++) {
      mprpc_plan_t pl;
      if (mprpc_plan_make(plan_name, seed + k, quick, &pl) < 0) {
        fprintf(stderr, "mprpc-sim: no plan %s (see --list)\n", plan_name);
        return 2;
      }
      mprpc_sim_result_t res;
      o.seed = seed + k;
      if (mprpc_sim_run_plan(&pl, &o, &res) < 0)
        res.violations++;
      sum.calls += res.calls, sum.ok += res.ok, sum.failed += res.failed;
      sum.sim_ns += res.sim_ns;
      viol += res.violations;
      if (res.recovery_ns > rec_max)
        rec_max = res.recovery_ns;
      if (verbose) {
        printf("  seed=%" PRIu64 " calls=%" PRIu64 " ok=%" PRIu64 " failed=%" PRIu64
               " violations=%" PRIu64 " recovery_ms=%" PRIu64 " hash=%016" PRIx64 "\n",
               o.seed, res.calls, res.ok, res.failed, res.violations,
               res.recovery_ns == UINT64_MAX ? (uint64_t)0 : (uint64_t)(res.recovery_ns / MPRPC_NS_PER_MS),
               res.hash);
        for (size_t f = 0; f < sizeof res.fails / sizeof res.fails[0] && res.fails[f].count; f++)
          printf("    failed %s %" PRIu64 "\n", mprpc_err_name(res.fails[f].code), res.fails[f].count);
      }
      if (res.violations)
        printf("  replay: %s --plan %s --seed %" PRIu64 "%s\n", argv[0], plan_name, seed + k,
               quick ? " --quick" : "");
      if (tl) {
        mprpc_timeline_set_duration(tl, res.sim_ns);
        char title[160];
        snprintf(title, sizeof title, "mprpc-sim --plan %s --seed %" PRIu64 ": %d providers, %d consumers (simulated)",
                 plan_name, seed + k, pl.providers, pl.consumers);
        write_svg(tl, svg, title);
      }
    }
    printf("SIM scenario=plan:%s seeds=%" PRIu64 " calls=%" PRIu64 " ok=%" PRIu64 " failed=%" PRIu64
           " violations=%" PRIu64 " recovery_ms=%" PRIu64 " sim_seconds=%.1f wall_seconds=%.3f\n",
           plan_name, seeds, sum.calls, sum.ok, sum.failed, viol,
           rec_max == UINT64_MAX ? (uint64_t)0 : (uint64_t)(rec_max / MPRPC_NS_PER_MS), (double)sum.sim_ns / 1e9,
           wall_now() - t0);
    mprpc_timeline_free(tl);
    return viol ? 1 : 0;
  }
  const mprpc_sim_scenario_t *run_list[64];
  size_t nrun = 0;
  if (all) {
    for (size_t i = 0; i < mprpc_sim_scenario_count() && nrun < 64; i++)
      run_list[nrun++] = mprpc_sim_scenario_at(i);
  }
  for (size_t i = 0; i < nnames; i++) {
    const mprpc_sim_scenario_t *sc = mprpc_sim_scenario_find(names[i]);
    if (!sc) {
      fprintf(stderr, "mprpc-sim: no scenario %s (see --list)\n", names[i]);
      return 2;
    }
    if (nrun < 64)
      run_list[nrun++] = sc;
  }
  if (nrun == 0) {
    usage(stderr);
    return 2;
  }
  mprpc_log_set_level(log_level);
  signal(SIGSEGV, on_fatal_signal);
  signal(SIGABRT, on_fatal_signal);
  signal(SIGBUS, on_fatal_signal);
  signal(SIGFPE, on_fatal_signal);
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_set_death_callback(say_current);
#endif

  int status = 0;
  for (size_t s = 0; s < nrun; s++) {
    const mprpc_sim_scenario_t *sc = run_list[s];
    const char *name = mprpc_sim_scenario_name(sc);
    uint64_t calls = 0, ok = 0, failed = 0, viol = 0, sim_ns = 0, events = 0;
    uint64_t bad_seeds[8];
    size_t nbad = 0;
    double t0 = wall_now();
    for (uint64_t k = 0; k < seeds; k++) {
      mprpc_sim_result_t res;
      o.seed = seed + k;
      set_current(argv[0], name, o.seed, knobs);
      int rc = mprpc_sim_run(sc, &o, &res);
      if (rc < 0) {
        fprintf(stderr, "mprpc-sim: %s seed %" PRIu64 ": setup failed (%d)\n", name, o.seed, rc);
        res.violations++;
      }
      /* Determinism self-check: the first seed always, every seed on request. */
      if (rc == 0 && (k == 0 || check_det) && !o.trace) {
        mprpc_sim_result_t again;
        mprpc_sim_opts_t o2 = o;
        o2.violations = NULL;
        o2.timeline = NULL; /* recorded once */
        if (mprpc_sim_run(sc, &o2, &again) == 0 && again.hash != res.hash) {
          printf("  violation seed=%" PRIu64 ": nondeterminism: trace hash %016" PRIx64
                 " then %016" PRIx64 "\n",
                 o.seed, res.hash, again.hash);
          res.violations++;
        }
      }
      if (res.gov_capacity > 0)
        printf("OVERLOAD scenario=%s seed=%" PRIu64 " limit=%s goodput_per_s=%.0f capacity_per_s=%.0f "
               "goodput_pct=%.1f p99_ms=%.1f\n",
               mprpc_sim_scenario_name(sc), o.seed, o.gov_limit ? o.gov_limit : "auto",
               res.gov_goodput, res.gov_capacity, 100.0 * res.gov_goodput / res.gov_capacity,
               (double)res.gov_p99_ns / 1e6);
      calls += res.calls;
      ok += res.ok;
      failed += res.failed;
      viol += res.violations;
      sim_ns += res.sim_ns;
      events += res.events;
      if (verbose)
        printf("  seed=%" PRIu64 " calls=%" PRIu64 " ok=%" PRIu64 " failed=%" PRIu64
               " executions=%" PRIu64 " violations=%" PRIu64 " events=%" PRIu64
               " hash=%016" PRIx64 "\n",
               o.seed, res.calls, res.ok, res.failed, res.executions, res.violations, res.events,
               res.hash);
      if (verbose)
        for (size_t f = 0; f < sizeof res.fails / sizeof res.fails[0] && res.fails[f].count; f++)
          printf("    failed %s %" PRIu64 "\n", mprpc_err_name(res.fails[f].code),
                 res.fails[f].count);
      if (res.violations && nbad < sizeof bad_seeds / sizeof bad_seeds[0])
        bad_seeds[nbad++] = o.seed;
      if (tl) {
        mprpc_timeline_set_duration(tl, res.sim_ns);
        char title[160];
        snprintf(title, sizeof title, "mprpc-sim --scenario %s --seed %" PRIu64 " (simulated)", name,
                 o.seed);
        write_svg(tl, svg, title);
      }
    }
    current_len = 0;
    double wall = wall_now() - t0;
    printf("SIM scenario=%s seeds=%" PRIu64 " calls=%" PRIu64 " ok=%" PRIu64 " failed=%" PRIu64
           " violations=%" PRIu64 " sim_seconds=%.1f wall_seconds=%.3f\n",
           name, seeds, calls, ok, failed, viol, (double)sim_ns / 1e9, wall);
    if (verbose && wall > 0)
      printf("  speed: %.0f simulated seconds per wall second, %.2f M events/s\n",
             (double)sim_ns / 1e9 / wall, (double)events / 1e6 / wall);
    for (size_t b = 0; b < nbad; b++)
      printf("  replay: %s --scenario %s --seed %" PRIu64 "%s\n", argv[0], name,
             bad_seeds[b], knobs);
    if (viol)
      status = 1;
    fflush(stdout);
  }
  mprpc_timeline_free(tl);
  return status;
}
