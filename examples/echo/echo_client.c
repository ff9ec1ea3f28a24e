/*
 * echo_client: calls example.EchoService.Echo through an mprpc channel and
 * reports what happened. Used to try and measure a provider (mprpc's
 * echo_server or brpc's example/echo_c++ server).
 *
 *   echo_client (--server HOST:PORT[,HOST:PORT...] | --registry URI)
 *               [--count N | --duration-s S] [--concurrency C]
 *               [--timeout-ms T] [--max-retry R] [--policy failover|failfast]
 *               [--lb rr|random|hash|least] [--idempotent] [--backup-ms B]
 *               [--message TEXT] [--attachment TEXT] [--report-ms MS]
 *               [--log-level debug|info|warn|error]
 *               [--tls [--tls-ca F] [--tls-cert F --tls-key F]
 *                [--tls-server-name NAME]]
 *
 * --tls speaks TLS to the provider, verifying its certificate against
 * --tls-ca (default: the system's trust store) and the endpoint's host or
 * --tls-server-name; --tls-cert/--tls-key present a client certificate
 * (mutual TLS). docs/security.md.
 *
 * It keeps C calls in flight, asynchronously, on the channel's loop: each
 * closure records the outcome and starts the next call. The last lines are
 *
 *   echo_client: calls=N ok=S failed=F p50_us=.. p99_us=..
 *   error NAME COUNT        (one per error kind that occurred)
 *   first error: TEXT       (the first failure's text, e.g. OpenSSL's reason)
 *   endpoint HOST:PORT calls=N   (one per provider the channel knows at the end;
 *                                 attempts sent to it, retries included)
 *
 * --report-ms MS also writes, every MS ms while running, to stderr:
 *   at_ms=WALL_MS endpoint HOST:PORT calls=N disabled=0|1
 * (scripts use it to see when a provider stopped getting calls).
 *
 * and the exit status is 0 only when no call failed (2 for bad usage).
 */
#include <getopt.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/registry.h"
#include "mprpc/rt.h"

#define MAX_KINDS 32

typedef struct client {
  mprpc_channel_t *ch;
  mprpc_loop_t loop;
  const char *message;
  const char *attachment;
  long long count;       /* calls to make, or -1 with a duration */
  long long duration_s;  /* duration mode, else -1 */
  uint64_t end_ns;       /* duration mode: no new call after this */
  long long issued, finished, ok, failed;
  uint64_t *lat;         /* latency of every finished call, us */
  size_t nlat, caplat;
  int kinds[MAX_KINDS];
  long long kind_count[MAX_KINDS];
  size_t nkinds;
  long inflight;
  char first_err[256];   /* the text of the first failure */
  void *waiter;          /* main thread waits on it */
  bool woke;
  int bad_echo;
  uint64_t report_ns;    /* --report-ms, 0 = off */
  uint64_t report_timer;
  void *stop_waiter;     /* the report timer is cancelled on the loop */
} client_t;

typedef struct slot {
  client_t *cl;
  mprpc_controller_t *ctl;
} slot_t;

static void issue(slot_t *s);

static void record_error(client_t *cl, int err) {
  for (size_t i = 0; i < cl->nkinds; i++)
    if (cl->kinds[i] == err) {
      cl->kind_count[i]++;
      return;
    }
  if (cl->nkinds < MAX_KINDS) {
    cl->kinds[cl->nkinds] = err;
    cl->kind_count[cl->nkinds++] = 1;
  }
}

static void maybe_finish(client_t *cl) {
  if (cl->inflight == 0 && !cl->woke) {
    cl->woke = true;
    cl->loop.vt->waiter_wake(cl->loop.ctx, cl->waiter);
  }
}

/* Runs on the loop: one call finished. */
static void on_echo(const Example__EchoResponse *resp, void *arg) {
  slot_t *s = arg;
  client_t *cl = s->cl;
  cl->inflight--;
  cl->finished++;
  int err = mprpc_controller_error_code(s->ctl);
  if (resp && err == 0) {
    /* an echo server returns the message and the attachment unchanged */
    size_t att_len = 0, want_len = cl->attachment ? strlen(cl->attachment) : 0;
    const void *att = mprpc_controller_response_attachment(s->ctl, &att_len);
    if (strcmp(resp->message, cl->message) != 0 || att_len != want_len ||
        (want_len && memcmp(att, cl->attachment, want_len) != 0))
      cl->bad_echo++;
    cl->ok++;
  } else {
    cl->failed++;
    record_error(cl, err ? err : MPRPC_ERESPONSE);
    if (!cl->first_err[0])
      snprintf(cl->first_err, sizeof cl->first_err, "%s", mprpc_controller_error_text(s->ctl));
  }
  if (cl->nlat == cl->caplat) {
    size_t ncap = cl->caplat ? cl->caplat * 2 : 4096;
    uint64_t *n = realloc(cl->lat, ncap * sizeof *n);
    if (n) {
      cl->lat = n;
      cl->caplat = ncap;
    }
  }
  if (cl->nlat < cl->caplat)
    cl->lat[cl->nlat++] = mprpc_controller_latency_us(s->ctl);
  issue(s); /* the controller may be reused from inside its closure */
  maybe_finish(cl);
}

static void issue(slot_t *s) {
  client_t *cl = s->cl;
  if (cl->count >= 0 ? cl->issued >= cl->count : mprpc_loop_now(cl->loop) >= cl->end_ns)
    return;
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = (char *)cl->message;
  if (cl->attachment)
    mprpc_controller_set_request_attachment(s->ctl, cl->attachment, strlen(cl->attachment));
  cl->issued++;
  cl->inflight++;
  int rc = mprpc_channel_call(cl->ch, 0, &req.base, s->ctl, (ProtobufCClosure)on_echo, s);
  if (rc != 0) {
    cl->inflight--;
    cl->finished++;
    cl->failed++;
    record_error(cl, rc);
  }
}

static void report_fire(void *arg) {
  client_t *cl = arg;
  cl->report_timer = 0;
  mprpc_channel_endpoint_info_t eps[64];
  size_t n = mprpc_channel_endpoints(cl->ch, eps, 64);
  unsigned long long at = (unsigned long long)(mprpc_loop_wall(cl->loop) / MPRPC_NS_PER_MS);
  for (size_t i = 0; i < n && i < 64; i++)
    fprintf(stderr, "at_ms=%llu endpoint %s calls=%llu disabled=%d\n", at, eps[i].name,
            (unsigned long long)eps[i].calls, eps[i].disabled ? 1 : 0);
  if (cl->inflight > 0)
    cl->report_timer = mprpc_timer_start(cl->loop, cl->report_ns, report_fire, cl);
}

typedef struct start_arg {
  slot_t *slots;
  long n;
} start_arg_t;

static void start_on_loop(void *arg) {
  start_arg_t *a = arg;
  client_t *cl = a->slots[0].cl;
  if (cl->duration_s > 0) /* the loop's clock is the one that counts */
    cl->end_ns = mprpc_loop_now(cl->loop) + (uint64_t)cl->duration_s * MPRPC_NS_PER_S;
  cl->inflight++; /* hold: nothing may finish the run before all slots start */
  for (long i = 0; i < a->n; i++)
    issue(&a->slots[i]);
  cl->inflight--;
  if (cl->report_ns)
    cl->report_timer = mprpc_timer_start(cl->loop, cl->report_ns, report_fire, cl);
  maybe_finish(cl);
}

static void stop_report(void *arg) {
  client_t *cl = arg;
  mprpc_timer_cancel(cl->loop, cl->report_timer);
  cl->report_timer = 0;
  cl->report_ns = 0;
  cl->loop.vt->waiter_wake(cl->loop.ctx, cl->stop_waiter);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *v, size_t n, double p) {
  if (n == 0)
    return 0;
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}

static void usage(void) {
  fprintf(stderr,
          "usage: echo_client (--server HOST:PORT[,HOST:PORT...] | --registry URI)\n"
          "                   [--count N | --duration-s S] [--concurrency C] [--timeout-ms T]\n"
          "                   [--max-retry R] [--policy failover|failfast]\n"
          "                   [--lb rr|random|hash|least] [--idempotent] [--backup-ms B]\n"
          "                   [--message TEXT] [--attachment TEXT]\n"
          "                   [--compress none|snappy|gzip|zlib] [--report-ms MS]\n"
          "                   [--log-level debug|info|warn|error]\n"
          "                   [--tls [--tls-ca F] [--tls-cert F --tls-key F]\n"
          "                    [--tls-server-name NAME]]\n");
}

static bool parse_ll(const char *s, long long min, long long *out) {
  char *end;
  long long v = strtoll(s, &end, 10);
  if (!*s || *end || v < min)
    return false;
  *out = v;
  return true;
}

int main(int argc, char **argv) {
  const char *server = NULL, *registry = NULL, *message = "hello world", *attachment = NULL;
  long long count = -1, duration = -1, conc = 1, timeout = 1000, retry = 2, backup = 0;
  long long report_ms = 0;
  int log_level = MPRPC_LOG_LEVEL_WARN;
  int policy = MPRPC_RETRY_FAILOVER, lb = MPRPC_LB_RR, compress = MPRPC_COMPRESS_NONE;
  bool idempotent = false, tls = false;
  const char *tls_ca = NULL, *tls_cert = NULL, *tls_key = NULL, *tls_name = NULL;
  enum { O_SERVER = 1, O_REGISTRY, O_COUNT, O_DURATION, O_CONC, O_TIMEOUT, O_RETRY, O_POLICY,
         O_LB, O_IDEM, O_BACKUP, O_MESSAGE, O_ATT, O_COMPRESS, O_REPORT, O_LOGLEVEL, O_HELP,
         O_TLS, O_TLS_CA, O_TLS_CERT, O_TLS_KEY, O_TLS_NAME };
  static const struct option opts[] = {
      {"server", required_argument, 0, O_SERVER},
      {"registry", required_argument, 0, O_REGISTRY},
      {"count", required_argument, 0, O_COUNT},
      {"duration-s", required_argument, 0, O_DURATION},
      {"concurrency", required_argument, 0, O_CONC},
      {"timeout-ms", required_argument, 0, O_TIMEOUT},
      {"max-retry", required_argument, 0, O_RETRY},
      {"policy", required_argument, 0, O_POLICY},
      {"lb", required_argument, 0, O_LB},
      {"idempotent", no_argument, 0, O_IDEM},
      {"backup-ms", required_argument, 0, O_BACKUP},
      {"message", required_argument, 0, O_MESSAGE},
      {"attachment", required_argument, 0, O_ATT},
      {"compress", required_argument, 0, O_COMPRESS},
      {"report-ms", required_argument, 0, O_REPORT},
      {"log-level", required_argument, 0, O_LOGLEVEL},
      {"help", no_argument, 0, O_HELP},
      {"tls", no_argument, 0, O_TLS},
      {"tls-ca", required_argument, 0, O_TLS_CA},
      {"tls-cert", required_argument, 0, O_TLS_CERT},
      {"tls-key", required_argument, 0, O_TLS_KEY},
      {"tls-server-name", required_argument, 0, O_TLS_NAME},
      {0, 0, 0, 0},
  };
  int c;
  bool ok = true;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case O_SERVER: server = optarg; break;
    case O_REGISTRY: registry = optarg; break;
    case O_COUNT: ok &= parse_ll(optarg, 0, &count); break;
    case O_DURATION: ok &= parse_ll(optarg, 1, &duration); break;
    case O_CONC: ok &= parse_ll(optarg, 1, &conc); break;
    case O_TIMEOUT: ok &= parse_ll(optarg, 1, &timeout); break;
    case O_RETRY: ok &= parse_ll(optarg, 0, &retry); break;
    case O_BACKUP: ok &= parse_ll(optarg, 0, &backup); break;
    case O_POLICY:
      if (strcmp(optarg, "failover") == 0)
        policy = MPRPC_RETRY_FAILOVER;
      else if (strcmp(optarg, "failfast") == 0)
        policy = MPRPC_RETRY_FAILFAST;
      else
        ok = false;
      break;
    case O_LB:
      lb = mprpc_lb_from_name(optarg);
      ok &= lb >= 0;
      break;
    case O_IDEM: idempotent = true; break;
    case O_MESSAGE: message = optarg; break;
    case O_ATT: attachment = optarg; break;
    case O_COMPRESS: {
      static const char *const names[] = {"none", "snappy", "gzip", "zlib"}; /* brpc's numbers */
      compress = -1;
      for (int i = 0; i < 4; i++)
        if (strcmp(optarg, names[i]) == 0)
          compress = i;
      ok &= compress >= 0;
      break;
    }
    case O_REPORT: ok &= parse_ll(optarg, 1, &report_ms); break;
    case O_LOGLEVEL: {
      static const char *const lv[] = {"debug", "info", "warn", "error"};
      static const int lvv[] = {MPRPC_LOG_LEVEL_DEBUG, MPRPC_LOG_LEVEL_INFO, MPRPC_LOG_LEVEL_WARN,
                                MPRPC_LOG_LEVEL_ERROR};
      bool found = false;
      for (int i = 0; i < 4; i++)
        if (strcmp(optarg, lv[i]) == 0) {
          log_level = lvv[i];
          found = true;
        }
      ok &= found;
      break;
    }
    case O_TLS: tls = true; break;
    case O_TLS_CA: tls_ca = optarg; break;
    case O_TLS_CERT: tls_cert = optarg; break;
    case O_TLS_KEY: tls_key = optarg; break;
    case O_TLS_NAME: tls_name = optarg; break;
    case O_HELP: usage(); return 0;
    default: ok = false; break;
    }
  }
  if (!ok || optind != argc || (!server == !registry) || (count >= 0 && duration >= 0) ||
      conc > 100000 || !tls_cert != !tls_key ||
      (!tls && (tls_ca || tls_cert || tls_name))) {
    usage();
    return 2;
  }
  if (count < 0 && duration < 0)
    count = 1;
  mprpc_log_set_level(log_level);

  mprpc_loop_group_t *g = NULL;
  if (mprpc_loop_group_new(1, &g) != 0 || mprpc_loop_group_start(g) != 0) {
    fprintf(stderr, "echo_client: cannot start the event loop\n");
    return 1;
  }
  mprpc_loop_t loop = mprpc_loop_group_loop(g, 0);
  mprpc_registry_t reg = {0};
  if (registry) {
    char err[256] = "";
    int rc = mprpc_registry_open(registry, &reg, err, sizeof err);
    if (rc != 0) {
      fprintf(stderr, "echo_client: registry %s: %s %s\n", registry, mprpc_strerror(rc), err);
      mprpc_loop_group_free(g);
      return 2;
    }
  }
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.loop = loop;
  o.transport = mprpc_tcp_transport();
  o.servers = server;
  o.registry = reg;
  o.timeout_ms = timeout;
  o.max_retry = (int)retry;
  o.retry_policy = policy;
  o.lb = lb;
  o.backup_request_ms = backup;
  o.idempotent_methods = idempotent ? "Echo" : NULL;
  o.compress_type = compress;
  o.tls = tls;
  o.tls_ca = tls_ca;
  o.tls_cert = tls_cert;
  o.tls_key = tls_key;
  o.tls_server_name = tls_name;
  mprpc_channel_t *ch = NULL;
  int rc = mprpc_channel_new(&example__echo_service__descriptor, &o, &ch);
  if (rc != 0) {
    fprintf(stderr, "echo_client: channel: %s\n", mprpc_strerror(rc));
    mprpc_registry_close(reg);
    mprpc_loop_group_free(g);
    return 2;
  }

  client_t cl;
  memset(&cl, 0, sizeof cl);
  cl.ch = ch;
  cl.loop = loop;
  cl.message = message;
  cl.attachment = attachment;
  cl.count = count;
  cl.waiter = loop.vt->waiter_new(loop.ctx);
  slot_t *slots = calloc((size_t)conc, sizeof *slots);
  if (!cl.waiter || !slots) {
    fprintf(stderr, "echo_client: out of memory\n");
    return 1;
  }
  for (long i = 0; i < conc; i++) {
    slots[i].cl = &cl;
    slots[i].ctl = mprpc_controller_new();
    if (!slots[i].ctl) {
      fprintf(stderr, "echo_client: out of memory\n");
      return 1;
    }
  }
  cl.duration_s = duration;
  cl.report_ns = (uint64_t)report_ms * MPRPC_NS_PER_MS;
  start_arg_t sa = {slots, (long)conc};
  if (mprpc_loop_post(loop, start_on_loop, &sa) != 0) {
    fprintf(stderr, "echo_client: cannot post to the loop\n");
    return 1;
  }
  loop.vt->waiter_wait(loop.ctx, cl.waiter);
  loop.vt->waiter_free(loop.ctx, cl.waiter);
  if (cl.report_ns) {
    cl.stop_waiter = loop.vt->waiter_new(loop.ctx);
    if (cl.stop_waiter && mprpc_loop_post(loop, stop_report, &cl) == 0)
      loop.vt->waiter_wait(loop.ctx, cl.stop_waiter);
    if (cl.stop_waiter)
      loop.vt->waiter_free(loop.ctx, cl.stop_waiter);
  }
  /* one line per provider, before the channel (and its view) goes */
  mprpc_channel_endpoint_info_t eps[256];
  size_t neps = mprpc_channel_endpoints(ch, eps, 256);

  mprpc_channel_destroy(ch);
  mprpc_loop_group_free(g);
  mprpc_registry_close(reg);
  for (long i = 0; i < conc; i++)
    mprpc_controller_free(slots[i].ctl);
  free(slots);

  mprpc_log_flush(); /* log lines (stderr) before the summary, not after */
  fflush(stderr);
  qsort(cl.lat, cl.nlat, sizeof *cl.lat, cmp_u64);
  printf("echo_client: calls=%lld ok=%lld failed=%lld p50_us=%llu p99_us=%llu\n", cl.finished,
         cl.ok, cl.failed, (unsigned long long)pct(cl.lat, cl.nlat, 0.50),
         (unsigned long long)pct(cl.lat, cl.nlat, 0.99));
  for (size_t i = 0; i < cl.nkinds; i++)
    printf("error %s %lld\n", mprpc_err_name(cl.kinds[i]), cl.kind_count[i]);
  if (cl.first_err[0])
    printf("first error: %s\n", cl.first_err);
  for (size_t i = 0; i < neps && i < 256; i++)
    printf("endpoint %s calls=%llu\n", eps[i].name, (unsigned long long)eps[i].calls);
  if (cl.bad_echo)
    fprintf(stderr, "echo_client: %d responses did not echo the message and attachment\n",
            cl.bad_echo);
  free(cl.lat);
  return cl.failed == 0 && cl.bad_echo == 0 ? 0 : 1;
}
