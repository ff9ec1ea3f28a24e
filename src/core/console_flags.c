/*
 * GET /flags and POST /flags/NAME?value=V: settings changeable at run time.
 *
 *   log_level                          trace|debug|info|warn|error|fatal|off
 *   stats_period                       ms between stats log lines, 0 = off
 *   max_concurrency.<Service>.<Method> a method's concurrency limit, 0 = none
 *
 * Writes need console_write (403 otherwise); an unknown name is 404, a bad
 * value 400 with the reason; every change is logged at WARN with the peer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/console_int.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

#define TB mprpc__textbuf_printf

typedef struct flag_row {
  char name[300];
  char value[64];
  const char *help;
} flag_row_t;

static void row_out(mprpc__textbuf_t *b, mprpc__http_format_t fmt, const flag_row_t *r,
                    bool first) {
  if (fmt == MPRPC__HTTP_FMT_JSON) {
    mprpc__textbuf_puts(b, first ? "{\"name\":" : ",{\"name\":");
    mprpc__textbuf_json(b, r->name, strlen(r->name));
    mprpc__textbuf_puts(b, ",\"value\":");
    mprpc__textbuf_json(b, r->value, strlen(r->value));
    mprpc__textbuf_puts(b, ",\"help\":");
    mprpc__textbuf_json(b, r->help, strlen(r->help));
    mprpc__textbuf_putc(b, '}');
  } else if (fmt == MPRPC__HTTP_FMT_HTML) {
    mprpc__textbuf_puts(b, "<tr><td>");
    mprpc__textbuf_html(b, r->name, strlen(r->name));
    mprpc__textbuf_puts(b, "</td><td>");
    mprpc__textbuf_html(b, r->value, strlen(r->value));
    mprpc__textbuf_puts(b, "</td><td>");
    mprpc__textbuf_html(b, r->help, strlen(r->help));
    mprpc__textbuf_puts(b, "</td></tr>\n");
  } else {
    TB(b, "%s %s\n", r->name, r->value);
  }
}

int mprpc__cpage_flags(mprpc__creq_t *rq, mprpc__cresp_t *rs) {
  mprpc_server_t *s = rq->s;
  mprpc__textbuf_t *b = &rs->body;
  flag_row_t r;
  if (rq->fmt == MPRPC__HTTP_FMT_JSON) {
    TB(b, "{\"writable\":%s,\"flags\":[", s->o.console_write ? "true" : "false");
  } else if (rq->fmt == MPRPC__HTTP_FMT_HTML) {
    mprpc__console_html_head(b, "flags");
    TB(b, "<p>%s</p>\n<table><tr><th>name</th><th>value</th><th>what</th></tr>\n",
       s->o.console_write ? "Change one with POST /flags/NAME?value=V."
                          : "Read only (console_write is off).");
  }
  snprintf(r.name, sizeof r.name, "log_level");
  snprintf(r.value, sizeof r.value, "%s", mprpc_log_level_name(mprpc_log_get_level()));
  r.help = "trace, debug, info, warn, error, fatal or off";
  row_out(b, rq->fmt, &r, true);
  snprintf(r.name, sizeof r.name, "stats_period");
  snprintf(r.value, sizeof r.value, "%llu",
           (unsigned long long)__atomic_load_n(&s->o.stats_log_period_ms, __ATOMIC_RELAXED));
  r.help = "milliseconds between stats log lines; 0 = off";
  row_out(b, rq->fmt, &r, false);
  for (size_t i = 0; i < s->nmethods; i++) {
    const srv_method_t *m = s->methods[i];
    snprintf(r.name, sizeof r.name, "max_concurrency.%s.%s", m->service, m->name);
    snprintf(r.value, sizeof r.value, "%u", (unsigned)__atomic_load_n(&m->limit, __ATOMIC_RELAXED));
    r.help = "calls of this method in flight at most; 0 = unlimited";
    row_out(b, rq->fmt, &r, false);
  }
  if (rq->fmt == MPRPC__HTTP_FMT_JSON)
    mprpc__textbuf_puts(b, "]}\n");
  else if (rq->fmt == MPRPC__HTTP_FMT_HTML) {
    mprpc__textbuf_puts(b, "</table>\n");
    mprpc__console_html_tail(b);
  }
  return 0;
}

/* A decimal without sign, spaces or junk, at most max. */
static bool parse_u64(const char *v, uint64_t max, uint64_t *out) {
  if (!*v || *v < '0' || *v > '9')
    return false;
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (errno || *end || n > max)
    return false;
  *out = n;
  return true;
}

/* stats_period: the timer lives on loops[0]; it is re-armed there. */
static void stats_rearm_task(void *arg) {
  mprpc_server_t *s = arg;
  if (!s->zombie && atomic_load(&s->state) == SRV_RUNNING) {
    if (s->stats_timer)
      mprpc_timer_cancel(s->loops[0], s->stats_timer);
    s->stats_timer = 0;
    uint64_t ms = __atomic_load_n(&s->o.stats_log_period_ms, __ATOMIC_RELAXED);
    if (ms)
      s->stats_timer =
          mprpc_timer_start(s->loops[0], ms * MPRPC_NS_PER_MS, mprpc__srv_stats_tick, s);
  }
  mprpc__srv_task_done(s);
}

int mprpc__cpage_flag_set(mprpc__creq_t *rq, mprpc__cresp_t *rs, const char *name) {
  mprpc_server_t *s = rq->s;
  char value[128];
  size_t vlen = 0;
  int qr = mprpc__http_query_param(rq->req, "value", value, sizeof value, &vlen);
  if (!s->o.console_write) {
    mprpc__console_error(rq, rs, 403, "flags are read only here (console_write is off)");
    mprpc__console_warn(s, "%s: refused to set flag %s (console_write is off)", rq->conn->peer,
                        name);
    return 0;
  }
  /* the value may also come as the body (curl -d 5) */
  if (qr == MPRPC_ENOTFOUND && rq->req->body_len > 0 && rq->req->body_len < sizeof value) {
    memcpy(value, rq->req->body, rq->req->body_len);
    vlen = rq->req->body_len;
    value[vlen] = 0;
    while (vlen && (value[vlen - 1] == '\n' || value[vlen - 1] == '\r'))
      value[--vlen] = 0;
    qr = 0;
  }
  bool known = strcmp(name, "log_level") == 0 || strcmp(name, "stats_period") == 0;
  srv_method_t *m = NULL;
  if (!known && strncmp(name, "max_concurrency.", 16) == 0) {
    const char *full = name + 16, *dot = strrchr(full, '.');
    if (dot && dot > full)
      for (size_t i = 0; i < s->nmethods; i++)
        if (strlen(s->methods[i]->service) == (size_t)(dot - full) &&
            memcmp(s->methods[i]->service, full, (size_t)(dot - full)) == 0 &&
            strcmp(s->methods[i]->name, dot + 1) == 0)
          m = s->methods[i];
    known = m != NULL;
  }
  if (!known) {
    mprpc__console_error(rq, rs, 404, "no flag named %.200s (see GET /flags)", name);
    return 0;
  }
  if (qr == MPRPC_ENOTFOUND) {
    mprpc__console_error(rq, rs, 400, "%.200s: no value (POST /flags/%.200s?value=V)", name, name);
    return 0;
  }
  if (qr < 0 || strlen(value) != vlen) {
    mprpc__console_error(rq, rs, 400, "%.200s: value too long or not text", name);
    return 0;
  }
  char old[64];
  uint64_t n;
  if (strcmp(name, "log_level") == 0) {
    int lv = mprpc_log_level_from_name(value);
    if (lv < 0) {
      mprpc__console_error(rq, rs, 400,
                           "log_level: '%.64s' is not a level (trace, debug, info, warn, error, "
                           "fatal, off)",
                           value);
      return 0;
    }
    snprintf(old, sizeof old, "%s", mprpc_log_level_name(mprpc_log_get_level()));
    mprpc_log_set_level(lv);
  } else if (strcmp(name, "stats_period") == 0) {
    if (!parse_u64(value, 86400000ull, &n)) {
      mprpc__console_error(rq, rs, 400,
                           "stats_period: '%.64s' is not a number of milliseconds (0-86400000)",
                           value);
      return 0;
    }
    snprintf(old, sizeof old, "%llu",
             (unsigned long long)__atomic_load_n(&s->o.stats_log_period_ms, __ATOMIC_RELAXED));
    __atomic_store_n(&s->o.stats_log_period_ms, n, __ATOMIC_RELAXED);
    mprpc__srv_post(s, s->loops[0], stats_rearm_task, s);
  } else {
    if (!parse_u64(value, UINT32_MAX, &n)) {
      mprpc__console_error(rq, rs, 400,
                           "%.200s: '%.64s' is not a concurrency limit (0-4294967295, 0 = none)",
                           name, value);
      return 0;
    }
    snprintf(old, sizeof old, "%u", (unsigned)__atomic_load_n(&m->limit, __ATOMIC_RELAXED));
    __atomic_store_n(&m->limit, (uint32_t)n, __ATOMIC_RELAXED);
  }
  MPRPC_LOG_WARN("console: flag %s changed from %s to %s by %s", name, old, value,
                 rq->conn->peer);
  if (rq->fmt == MPRPC__HTTP_FMT_JSON) {
    mprpc__textbuf_puts(&rs->body, "{\"name\":");
    mprpc__textbuf_json(&rs->body, name, strlen(name));
    mprpc__textbuf_puts(&rs->body, ",\"old\":");
    mprpc__textbuf_json(&rs->body, old, strlen(old));
    mprpc__textbuf_puts(&rs->body, ",\"value\":");
    mprpc__textbuf_json(&rs->body, value, strlen(value));
    mprpc__textbuf_puts(&rs->body, "}\n");
  } else {
    rs->ctype = "text/plain; charset=utf-8";
    TB(&rs->body, "%s %s (was %s)\n", name, value, old);
  }
  return 0;
}
