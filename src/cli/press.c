/*
 * mprpc press TARGET SERVICE.METHOD [JSON] : a load generator in the
 * manner of brpc's rpc_press (docs/cli.md). Open loop (--qps N: calls
 * started on a 1 ms pacing timer, whatever the answers do) or closed loop
 * (--concurrency C: C calls in flight, each answer starts the next), for
 * --duration S seconds; every call runs on the channel's loop.
 *
 * One line per elapsed second, then a summary:
 *   elapsed=1s sent=N ok=N failed=N qps=N p50_us=N p99_us=N
 *   press total sent=N ok=N failed=N qps=N p50_us=N p99_us=N p999_us=N max_us=N
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "mprpc/controller.h"
#include "mprpc/errors.h"
#include "mprpc/json.h"

/* Log-linear latency buckets: exact below 16 us, then 8 per power of two
 * (an upper bound at most 12.5% over the value). */
#define NBUCKETS 512
typedef struct hist {
  uint64_t b[NBUCKETS];
  uint64_t n, max;
} hist_t;

static unsigned bucket_of(uint64_t v) {
  if (v < 16)
    return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v);
  unsigned sub = (unsigned)(v >> (e - 3)) & 7u;
  return 16 + (e - 4) * 8 + sub;
}

static uint64_t bucket_upper(unsigned i) {
  if (i < 16)
    return i;
  unsigned e = (i - 16) / 8 + 4, sub = (i - 16) % 8;
  if (e >= 63)
    return UINT64_MAX;
  return ((uint64_t)(8 + sub + 1) << (e - 3)) - 1;
}

static void hist_add(hist_t *h, uint64_t v) {
  h->b[bucket_of(v)]++;
  h->n++;
  if (v > h->max)
    h->max = v;
}

static uint64_t hist_pct(const hist_t *h, double p) {
  if (h->n == 0)
    return 0;
  uint64_t rank = (uint64_t)(p * (double)h->n + 0.999999);
  if (rank < 1)
    rank = 1;
  uint64_t cum = 0;
  for (unsigned i = 0; i < NBUCKETS; i++) {
    cum += h->b[i];
    if (cum >= rank) {
      uint64_t u = bucket_upper(i);
      return u < h->max ? u : h->max;
    }
  }
  return h->max;
}

#define MAX_CODES 32

typedef struct press press_t;
typedef struct slot {
  press_t *p;
  mprpc_controller_t *ctl;
  struct slot *next_free;
} slot_t;

struct press {
  cli_env_t *e;
  const cli_opts_t *o;
  mprpc_channel_t *ch;
  unsigned mi;
  ProtobufCMessage **reqs;
  size_t nreq, next_req;
  int64_t qps, conc, duration_s, max_inflight;
  uint64_t start_ns, end_ns;
  int64_t ticks;
  bool stopping, finished;
  uint64_t sent, ok, failed, inflight, paced, window_done;
  hist_t total, window;
  int codes[MAX_CODES];
  uint64_t code_count[MAX_CODES];
  size_t ncodes;
  slot_t *free_slots;
  slot_t **all;
  size_t nall;
  uint64_t tick_timer, pace_timer;
  void *waiter;
};

static void issue(press_t *p, slot_t *s);

static void record_code(press_t *p, int code) {
  for (size_t i = 0; i < p->ncodes; i++)
    if (p->codes[i] == code) {
      p->code_count[i]++;
      return;
    }
  if (p->ncodes < MAX_CODES) {
    p->codes[p->ncodes] = code;
    p->code_count[p->ncodes++] = 1;
  }
}

static void maybe_finish(press_t *p) {
  if (p->stopping && p->inflight == 0 && !p->finished) {
    p->finished = true;
    p->end_ns = mprpc_loop_now(p->e->loop);
    mprpc_timer_cancel(p->e->loop, p->tick_timer);
    mprpc_timer_cancel(p->e->loop, p->pace_timer);
    p->e->loop.vt->waiter_wake(p->e->loop.ctx, p->waiter);
  }
}

static void on_done(const ProtobufCMessage *resp, void *arg) {
  slot_t *s = arg;
  press_t *p = s->p;
  int code = cli_call_code(s->ctl);
  p->inflight--;
  if (resp && code == 0) {
    p->ok++;
  } else {
    p->failed++;
    record_code(p, code ? code : MPRPC_ERESPONSE);
  }
  uint64_t lat = mprpc_controller_latency_us(s->ctl);
  hist_add(&p->total, lat);
  hist_add(&p->window, lat);
  p->window_done++;
  if (!p->stopping && p->qps == 0) {
    issue(p, s); /* closed loop: the controller may be reused from its closure */
  } else {
    s->next_free = p->free_slots;
    p->free_slots = s;
  }
  maybe_finish(p);
}

static void issue(press_t *p, slot_t *s) {
  ProtobufCMessage *req = p->reqs[p->next_req++ % p->nreq];
  mprpc_controller_reset(s->ctl);
  mprpc_controller_set_timeout_ms(s->ctl, p->o->timeout_ms);
  if (p->o->attachment)
    mprpc_controller_set_request_attachment(s->ctl, p->o->attachment, strlen(p->o->attachment));
  p->sent++;
  p->inflight++;
  int rc = mprpc_channel_call(p->ch, p->mi, req, s->ctl, on_done, s);
  if (rc != 0) { /* done never runs */
    p->inflight--;
    p->failed++;
    record_code(p, rc);
    s->next_free = p->free_slots;
    p->free_slots = s;
  }
}

static slot_t *get_slot(press_t *p) {
  slot_t *s = p->free_slots;
  if (s) {
    p->free_slots = s->next_free;
    return s;
  }
  if ((int64_t)p->nall >= p->max_inflight)
    return NULL;
  s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->p = p;
  s->ctl = mprpc_controller_new();
  if (!s->ctl) {
    free(s);
    return NULL;
  }
  p->all[p->nall++] = s;
  return s;
}

static void on_pace(void *arg) {
  press_t *p = arg;
  p->pace_timer = 0;
  if (p->stopping)
    return;
  uint64_t now = mprpc_loop_now(p->e->loop);
  uint64_t due = (uint64_t)((double)p->qps * (double)(now - p->start_ns) / 1e9);
  while (p->paced < due) {
    slot_t *s = get_slot(p);
    if (!s) { /* at --max-inflight: these calls are not sent */
      p->paced = due;
      break;
    }
    p->paced++;
    issue(p, s);
  }
  p->pace_timer = mprpc_timer_start(p->e->loop, 1000000, on_pace, p);
}

static void on_tick(void *arg) {
  press_t *p = arg;
  p->tick_timer = 0;
  p->ticks++;
  printf("elapsed=%llds sent=%llu ok=%llu failed=%llu qps=%llu p50_us=%llu p99_us=%llu\n",
         (long long)p->ticks, (unsigned long long)p->sent, (unsigned long long)p->ok,
         (unsigned long long)p->failed, (unsigned long long)p->window_done,
         (unsigned long long)hist_pct(&p->window, 0.50),
         (unsigned long long)hist_pct(&p->window, 0.99));
  fflush(stdout);
  memset(&p->window, 0, sizeof p->window);
  p->window_done = 0;
  if (p->ticks >= p->duration_s) {
    p->stopping = true;
    mprpc_timer_cancel(p->e->loop, p->pace_timer);
    p->pace_timer = 0;
    maybe_finish(p);
    return;
  }
  /* the next second counted from the start, not from this callback */
  uint64_t next = p->start_ns + (uint64_t)(p->ticks + 1) * 1000000000u;
  uint64_t now = mprpc_loop_now(p->e->loop);
  p->tick_timer = mprpc_timer_start(p->e->loop, next > now ? next - now : 0, on_tick, p);
}

static void on_start(void *arg) {
  press_t *p = arg;
  p->start_ns = mprpc_loop_now(p->e->loop);
  p->tick_timer = mprpc_timer_start(p->e->loop, 1000000000u, on_tick, p);
  if (p->qps > 0) {
    on_pace(p);
  } else {
    for (int64_t i = 0; i < p->conc; i++) {
      slot_t *s = get_slot(p);
      if (s)
        issue(p, s);
    }
  }
}

static void press_usage(FILE *f) {
  fprintf(f,
          "usage: mprpc press TARGET SERVICE.METHOD [JSON|@FILE|-] [--qps N | --concurrency C]\n"
          "                   [--duration S] [--input FILE] [--histogram] [options]\n"
          "Load test: --qps N starts N calls a second (open loop), --concurrency C keeps\n"
          "C calls in flight (closed loop, default 1), for --duration S seconds (default 10).\n"
          "--input FILE: one JSON request per line, used round robin.\n"
          "--max-inflight N: cap on calls in flight with --qps (default 10000).\n"
          "--histogram: print the latency buckets after the summary.\n"
          "Prints each second: elapsed=Ns sent=N ok=N failed=N qps=N p50_us=N p99_us=N\n"
          "and at the end: press total sent=N ok=N failed=N qps=N p50_us=N p99_us=N p999_us=N max_us=N\n"
          "Exit: 0 when no call failed, 1 when some did, 2 bad usage or JSON.\n"
          "options:\n%s",
          cli_opts_help);
}

static bool num_opt(const char *name, int argc, char **argv, int *i, int64_t min, int64_t max,
                    int64_t *out, bool *bad) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0 || (argv[*i][n] != 0 && argv[*i][n] != '='))
    return false;
  const char *v = argv[*i][n] == '=' ? argv[*i] + n + 1 : (*i + 1 < argc ? argv[++*i] : "");
  char *end;
  long long x = strtoll(v, &end, 10);
  if (!*v || *end || x < min || x > max) {
    fprintf(stderr, "mprpc press: %s '%s': expected %lld..%lld\n", name, v, (long long)min,
            (long long)max);
    *bad = true;
  } else {
    *out = x;
  }
  return true;
}

int cli_press(int argc, char **argv) {
  cli_opts_t o;
  cli_opts_init(&o);
  press_t p;
  memset(&p, 0, sizeof p);
  p.o = &o;
  p.duration_s = 10;
  p.max_inflight = 10000;
  int64_t conc = 0;
  const char *input = NULL, *pos[3] = {0};
  int npos = 0;
  bool histogram = false, bad = false;
  for (int i = 1; i < argc && !bad; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      press_usage(stdout);
      return CLI_OK;
    }
    if (strcmp(argv[i], "--histogram") == 0) {
      histogram = true;
      continue;
    }
    if (num_opt("--qps", argc, argv, &i, 1, 10000000, &p.qps, &bad) ||
        num_opt("--concurrency", argc, argv, &i, 1, 100000, &conc, &bad) ||
        num_opt("--duration", argc, argv, &i, 1, 86400, &p.duration_s, &bad) ||
        num_opt("--max-inflight", argc, argv, &i, 1, 1000000, &p.max_inflight, &bad))
      continue;
    if (strncmp(argv[i], "--input", 7) == 0 && (argv[i][7] == 0 || argv[i][7] == '=')) {
      input = argv[i][7] == '=' ? argv[i] + 8 : (i + 1 < argc ? argv[++i] : NULL);
      if (!input) {
        fprintf(stderr, "mprpc press: --input needs a file\n");
        return CLI_USAGE;
      }
      continue;
    }
    int r = cli_opt_parse(&o, argc, argv, &i);
    if (r < 0)
      return CLI_USAGE;
    if (r > 0)
      continue;
    if ((argv[i][0] == '-' && argv[i][1]) || npos == 3) {
      fprintf(stderr, "mprpc press: unexpected argument %s\n", argv[i]);
      press_usage(stderr);
      return CLI_USAGE;
    }
    pos[npos++] = argv[i];
  }
  if (bad)
    return CLI_USAGE;
  if (npos < 2 || (p.qps && conc) || (input && pos[2])) {
    if (p.qps && conc)
      fprintf(stderr, "mprpc press: give --qps or --concurrency, not both\n");
    if (input && pos[2])
      fprintf(stderr, "mprpc press: give a JSON request or --input, not both\n");
    press_usage(stderr);
    return CLI_USAGE;
  }
  p.conc = conc ? conc : 1;
  if (!p.qps && p.conc > p.max_inflight)
    p.max_inflight = p.conc;

  size_t tlen = 0;
  char *text = input ? cli_read_file(input, &tlen) : cli_read_request(pos[2] ? pos[2] : "{}", &tlen);
  if (!text) {
    fprintf(stderr, "mprpc press: cannot read %s\n", input ? input : pos[2]);
    return CLI_USAGE;
  }
  cli_env_t e;
  int rc = cli_env_open(&e, pos[0]);
  p.e = &e;
  const ProtobufCServiceDescriptor *sd = NULL;
  if (rc == CLI_OK)
    rc = cli_resolve_method(&e, &o, pos[1], &sd, &p.mi);
  if (rc == CLI_OK) {
    /* the requests: the whole text, or each non-empty line of --input */
    size_t cap = 16;
    p.reqs = calloc(cap, sizeof *p.reqs);
    char *save = NULL, *line = input ? strtok_r(text, "\n", &save) : text;
    for (size_t lineno = 1; line && rc == CLI_OK;
         line = input ? strtok_r(NULL, "\n", &save) : NULL, lineno++) {
      size_t ll = strlen(line);
      if (input && strspn(line, " \t\r") == ll)
        continue;
      if (p.nreq == cap) {
        ProtobufCMessage **nr = realloc(p.reqs, (cap *= 2) * sizeof *nr);
        if (!nr) {
          rc = CLI_FAIL;
          break;
        }
        p.reqs = nr;
      }
      char err[512] = "";
      ProtobufCMessage *m = NULL;
      if (mprpc_json_to_message(line, ll, sd->methods[p.mi].input, NULL, &m, err, sizeof err) != 0) {
        if (input)
          fprintf(stderr, "mprpc press: %s:%zu: request JSON: %s\n", input, lineno, err);
        else
          fprintf(stderr, "mprpc press: request JSON for %s: %s\n", sd->methods[p.mi].input->name,
                  err);
        rc = CLI_USAGE;
        break;
      }
      p.reqs[p.nreq++] = m;
    }
    if (rc == CLI_OK && p.nreq == 0) {
      fprintf(stderr, "mprpc press: %s holds no request\n", input);
      rc = CLI_USAGE;
    }
  }
  if (rc == CLI_OK)
    rc = cli_channel(&e, &o, sd, &p.ch);
  if (rc == CLI_OK) {
    p.all = calloc((size_t)p.max_inflight + 1, sizeof *p.all);
    p.waiter = e.loop.vt->waiter_new(e.loop.ctx);
    if (!p.all || !p.waiter || mprpc_loop_post(e.loop, on_start, &p) != 0) {
      fprintf(stderr, "mprpc press: out of memory\n");
      rc = CLI_FAIL;
    } else {
      e.loop.vt->waiter_wait(e.loop.ctx, p.waiter);
      double secs = (double)(p.end_ns - p.start_ns) / 1e9;
      uint64_t done = p.ok + p.failed;
      printf("press total sent=%llu ok=%llu failed=%llu qps=%llu p50_us=%llu p99_us=%llu "
             "p999_us=%llu max_us=%llu\n",
             (unsigned long long)p.sent, (unsigned long long)p.ok, (unsigned long long)p.failed,
             (unsigned long long)(secs > 0 ? (double)done / secs + 0.5 : 0),
             (unsigned long long)hist_pct(&p.total, 0.50),
             (unsigned long long)hist_pct(&p.total, 0.99),
             (unsigned long long)hist_pct(&p.total, 0.999), (unsigned long long)p.total.max);
      for (size_t i = 0; i < p.ncodes; i++)
        printf("press error code=%d name=%s count=%llu\n", mprpc_err_to_wire(p.codes[i]),
               mprpc_err_name(p.codes[i] > 0 ? MPRPC_EAPP : p.codes[i]),
               (unsigned long long)p.code_count[i]);
      if (histogram)
        for (unsigned i = 0; i < NBUCKETS; i++)
          if (p.total.b[i])
            printf("press bucket le_us=%llu count=%llu\n", (unsigned long long)bucket_upper(i),
                   (unsigned long long)p.total.b[i]);
      rc = p.failed ? CLI_FAIL : CLI_OK;
    }
    if (p.waiter)
      e.loop.vt->waiter_free(e.loop.ctx, p.waiter);
    mprpc_channel_destroy(p.ch);
  }
  for (size_t i = 0; i < p.nall; i++) {
    mprpc_controller_free(p.all[i]->ctl);
    free(p.all[i]);
  }
  free(p.all);
  for (size_t i = 0; i < p.nreq; i++)
    protobuf_c_message_free_unpacked(p.reqs[i], NULL);
  free(p.reqs);
  free(text);
  cli_env_close(&e);
  fflush(stdout);
  return rc;
}
