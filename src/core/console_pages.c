/*
 * Console pages: / (index), /health, /status (with inline SVG charts of the
 * last 60 s), /version, /protobufs (from the protobuf-c descriptors) and
 * /connections (one row per connection, gathered from every loop). Each in
 * plain text, HTML or JSON (core/http.h's negotiation). Figures come from
 * the provider's stats (server_stats.c), never from a counter of their own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/console_int.h"
#include "core/sniff.h"
#include "core/svg.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/mprpc.h"

#define TB mprpc__textbuf_printf

static void jstr(mprpc__textbuf_t *b, const char *s) { mprpc__textbuf_json(b, s, strlen(s)); }
static void hstr(mprpc__textbuf_t *b, const char *s) { mprpc__textbuf_html(b, s, strlen(s)); }

/* ---- / ------------------------------------------------------------------------ */

int mprpc__cpage_index(mprpc__creq_t *rq, mprpc__cresp_t *rs) {
  static const char *const pages[] = {"/health", "/status", "/metrics", "/connections",
                                      "/flags",  "/protobufs", "/version", "/rpcz"};
  mprpc__textbuf_t *b = &rs->body;
  size_t n = sizeof pages / sizeof pages[0];
  if (rq->fmt == MPRPC__HTTP_FMT_JSON) {
    mprpc__textbuf_puts(b, "{\"pages\":[");
    for (size_t i = 0; i < n; i++)
      TB(b, "%s\"%s\"", i ? "," : "", pages[i]);
    mprpc__textbuf_puts(b, "]}\n");
  } else if (rq->fmt == MPRPC__HTTP_FMT_HTML) {
    mprpc__console_html_head(b, "mprpc console");
    mprpc__textbuf_puts(b, "<ul>\n");
    for (size_t i = 0; i < n; i++)
      TB(b, "<li><a href=\"%s\">%s</a></li>\n", pages[i], pages[i]);
    mprpc__textbuf_puts(b, "</ul>\n");
    mprpc__console_html_tail(b);
  } else {
    for (size_t i = 0; i < n; i++)
      TB(b, "%s\n", pages[i]);
  }
  return 0;
}

/* ---- /health ---------------------------------------------------------------------- */

int mprpc__cpage_health(mprpc__creq_t *rq, mprpc__cresp_t *rs) {
  bool ok = !atomic_load(&rq->s->stopping) && atomic_load(&rq->s->state) == SRV_RUNNING;
  rs->status = ok ? 200 : 503;
  const char *word = ok ? "OK" : "stopping";
  if (rq->fmt == MPRPC__HTTP_FMT_JSON)
    TB(&rs->body, "{\"status\":\"%s\"}\n", word);
  else if (rq->fmt == MPRPC__HTTP_FMT_HTML)
    TB(&rs->body, "<!DOCTYPE html>\n<html><body><p>%s</p></body></html>\n", word);
  else
    TB(&rs->body, "%s\n", word);
  return 0;
}

/* ---- /version -------------------------------------------------------------------- */

int mprpc__cpage_version(mprpc__creq_t *rq, mprpc__cresp_t *rs) {
  const char *v = rq->s->version ? rq->s->version : "";
  mprpc__textbuf_t *b = &rs->body;
  if (rq->fmt == MPRPC__HTTP_FMT_JSON) {
    mprpc__textbuf_puts(b, "{\"mprpc\":\"" MPRPC_VERSION "\",\"version\":");
    jstr(b, v);
    mprpc__textbuf_puts(b, "}\n");
  } else if (rq->fmt == MPRPC__HTTP_FMT_HTML) {
    mprpc__console_html_head(b, "version");
    mprpc__textbuf_puts(b, "<p>mprpc " MPRPC_VERSION "</p><p>version: ");
    hstr(b, v);
    mprpc__textbuf_puts(b, "</p>\n");
    mprpc__console_html_tail(b);
  } else {
    TB(b, "mprpc %s\nversion %s\n", MPRPC_VERSION, v);
  }
  return 0;
}

/* ---- /status ------------------------------------------------------------------------ */

typedef struct mrow {
  const srv_method_t *m;
  mprpc_method_stats_t st;
  uint64_t p50, p90, p99, p999;
  double qps1, qps60;
  double qps[60], p99s[60];
  size_t n;
  uint32_t limit;
} mrow_t;

static void method_row(const mprpc_server_t *s, size_t i, mrow_t *r, uint64_t *hist) {
  const srv_method_t *m = s->methods[i];
  memset(r, 0, sizeof *r);
  r->m = m;
  mprpc_server_method_stats_at(s, i, &r->st);
  mprpc__srv_method_hist(s, m, hist);
  r->p50 = mprpc__srv_hist_percentile(hist, 0.50);
  r->p90 = mprpc__srv_hist_percentile(hist, 0.90);
  r->p99 = mprpc__srv_hist_percentile(hist, 0.99);
  r->p999 = mprpc__srv_hist_percentile(hist, 0.999);
  /* a bucket's upper bound may pass the slowest call seen: never show more */
  uint64_t *ps[4] = {&r->p50, &r->p90, &r->p99, &r->p999};
  for (size_t k = 0; k < 4; k++)
    if (*ps[k] > r->st.max_us)
      *ps[k] = r->st.max_us;
  r->n = mprpc__srv_method_series(s, m, r->qps, r->p99s, 60);
  double sum = 0;
  for (size_t k = 0; k < r->n; k++)
    sum += r->qps[k];
  r->qps1 = r->n ? r->qps[r->n - 1] : 0;
  r->qps60 = r->n ? sum / (double)r->n : 0;
  r->limit = __atomic_load_n(&m->limit, __ATOMIC_RELAXED);
}

static void status_text(mprpc__textbuf_t *b, const mrow_t *r) {
  TB(b,
     "  method %s calls=%llu errors=%llu qps_1s=%.0f qps_60s=%.1f p50_us=%llu p90_us=%llu "
     "p99_us=%llu p999_us=%llu max_us=%llu inflight=%llu max_concurrency=%u "
     "refused_rate_limit=%llu refused_max_concurrency=%llu\n",
     r->m->name, (unsigned long long)r->st.requests, (unsigned long long)r->st.errors, r->qps1,
     r->qps60, (unsigned long long)r->p50, (unsigned long long)r->p90,
     (unsigned long long)r->p99, (unsigned long long)r->p999, (unsigned long long)r->st.max_us,
     (unsigned long long)r->st.inflight, (unsigned)r->limit,
     (unsigned long long)r->st.refused_rate_limit,
     (unsigned long long)r->st.refused_max_concurrency);
}

static void status_json(mprpc__textbuf_t *b, const mrow_t *r) {
  mprpc__textbuf_puts(b, "{\"name\":");
  jstr(b, r->m->name);
  TB(b,
     ",\"calls\":%llu,\"errors\":%llu,\"qps_1s\":%.0f,\"qps_60s\":%.1f,\"p50_us\":%llu,"
     "\"p90_us\":%llu,\"p99_us\":%llu,\"p999_us\":%llu,\"max_us\":%llu,\"inflight\":%llu,"
     "\"max_concurrency\":%u,\"refused_rate_limit\":%llu,\"refused_max_concurrency\":%llu,"
     "\"qps_series\":[",
     (unsigned long long)r->st.requests, (unsigned long long)r->st.errors, r->qps1, r->qps60,
     (unsigned long long)r->p50, (unsigned long long)r->p90, (unsigned long long)r->p99,
     (unsigned long long)r->p999, (unsigned long long)r->st.max_us,
     (unsigned long long)r->st.inflight, (unsigned)r->limit,
     (unsigned long long)r->st.refused_rate_limit,
     (unsigned long long)r->st.refused_max_concurrency);
  for (size_t i = 0; i < r->n; i++)
    TB(b, "%s%.0f", i ? "," : "", r->qps[i]);
  mprpc__textbuf_puts(b, "],\"p99_us_series\":[");
  for (size_t i = 0; i < r->n; i++)
    TB(b, "%s%.0f", i ? "," : "", r->p99s[i]);
  mprpc__textbuf_puts(b, "]}");
}

static void status_html(mprpc__textbuf_t *b, const mrow_t *r) {
  mprpc__textbuf_puts(b, "<tr><td>");
  hstr(b, r->m->name);
  TB(b,
     "</td><td>%llu</td><td>%llu</td><td>%.0f</td><td>%.1f</td><td>%llu</td><td>%llu</td>"
     "<td>%llu</td><td>%llu</td><td>%llu</td><td>%llu</td><td>%u</td><td>%llu</td>"
     "<td>%llu</td></tr>\n",
     (unsigned long long)r->st.requests, (unsigned long long)r->st.errors, r->qps1, r->qps60,
     (unsigned long long)r->p50, (unsigned long long)r->p90, (unsigned long long)r->p99,
     (unsigned long long)r->p999, (unsigned long long)r->st.max_us,
     (unsigned long long)r->st.inflight, (unsigned)r->limit,
     (unsigned long long)r->st.refused_rate_limit,
     (unsigned long long)r->st.refused_max_concurrency);
}

static void status_charts(mprpc__textbuf_t *b, const mrow_t *r) {
  double ms[60];
  char t1[256], t2[256];
  for (size_t i = 0; i < r->n; i++)
    ms[i] = r->p99s[i] / 1000.0;
  snprintf(t1, sizeof t1, "%s.%s qps", r->m->service, r->m->name);
  snprintf(t2, sizeof t2, "%s.%s p99", r->m->service, r->m->name);
  mprpc__textbuf_puts(b, "<div>");
  mprpc__svg_line_chart(b, &(mprpc__svg_chart_t){.width = 360, .height = 140, .title = t1,
                                                 .unit = "/s", .values = r->qps, .n = r->n});
  mprpc__svg_line_chart(b, &(mprpc__svg_chart_t){.width = 360, .height = 140, .title = t2,
                                                 .unit = " ms", .values = ms, .n = r->n});
  mprpc__textbuf_puts(b, "</div>\n");
}

int mprpc__cpage_status(mprpc__creq_t *rq, mprpc__cresp_t *rs) {
  mprpc_server_t *s = rq->s;
  mprpc__textbuf_t *b = &rs->body;
  mprpc_server_stats_t ss;
  mprpc_server_stats(s, &ss);
  uint64_t now = mprpc_loop_wall(rq->conn->l->loop);
  double up = now > s->start_wall_ns ? (double)(now - s->start_wall_ns) / 1e9 : 0;
  const char *v = s->version ? s->version : "";
  mrow_t *r = malloc(sizeof *r);
  uint64_t *hist = malloc(MPRPC__HIST_BUCKETS * sizeof *hist);
  if (!r || !hist) {
    free(r);
    free(hist);
    b->err = MPRPC_ENOMEM;
    return 0;
  }
  if (rq->fmt == MPRPC__HTTP_FMT_JSON) {
    mprpc__textbuf_puts(b, "{\"mprpc\":\"" MPRPC_VERSION "\",\"version\":");
    jstr(b, v);
    TB(b, ",\"uptime_seconds\":%.0f,\"connections\":%llu,\"inflight\":%llu,\"services\":[", up,
       (unsigned long long)ss.connections_open, (unsigned long long)ss.inflight);
  } else if (rq->fmt == MPRPC__HTTP_FMT_HTML) {
    mprpc__console_html_head(b, "status");
    mprpc__textbuf_puts(b, "<p>mprpc " MPRPC_VERSION ", version ");
    hstr(b, v);
    TB(b, ", up %.0f s, %llu connection(s), %llu call(s) in flight</p>\n", up,
       (unsigned long long)ss.connections_open, (unsigned long long)ss.inflight);
  } else {
    TB(b, "mprpc %s\nversion %s\nuptime_seconds %.0f\nconnections %llu\ninflight %llu\n",
       MPRPC_VERSION, v, up, (unsigned long long)ss.connections_open,
       (unsigned long long)ss.inflight);
  }
  size_t mi = 0;
  for (size_t si = 0; si < s->nservices; si++) {
    const ProtobufCServiceDescriptor *d = s->services[si]->descriptor;
    if (rq->fmt == MPRPC__HTTP_FMT_JSON) {
      mprpc__textbuf_puts(b, si ? ",{\"name\":" : "{\"name\":");
      jstr(b, d->name);
      mprpc__textbuf_puts(b, ",\"methods\":[");
    } else if (rq->fmt == MPRPC__HTTP_FMT_HTML) {
      mprpc__textbuf_puts(b, "<h2>");
      hstr(b, d->name);
      mprpc__textbuf_puts(b, "</h2>\n<table><tr><th>method</th><th>calls</th><th>errors</th>"
                             "<th>qps 1s</th><th>qps 60s</th><th>p50 us</th><th>p90 us</th>"
                             "<th>p99 us</th><th>p999 us</th><th>max us</th><th>in flight</th>"
                             "<th>limit</th><th>refused: rate</th><th>refused: concurrency</th>"
                             "</tr>\n");
    } else {
      TB(b, "service %s\n", d->name);
    }
    size_t first = mi;
    for (unsigned k = 0; k < d->n_methods && mi < s->nmethods; k++, mi++) {
      method_row(s, mi, r, hist);
      if (rq->fmt == MPRPC__HTTP_FMT_JSON) {
        if (k)
          mprpc__textbuf_putc(b, ',');
        status_json(b, r);
      } else if (rq->fmt == MPRPC__HTTP_FMT_HTML) {
        status_html(b, r);
      } else {
        status_text(b, r);
      }
    }
    if (rq->fmt == MPRPC__HTTP_FMT_JSON) {
      mprpc__textbuf_puts(b, "]}");
    } else if (rq->fmt == MPRPC__HTTP_FMT_HTML) {
      mprpc__textbuf_puts(b, "</table>\n");
      for (size_t j = first; j < mi; j++) {
        method_row(s, j, r, hist);
        status_charts(b, r);
      }
    }
  }
  if (rq->fmt == MPRPC__HTTP_FMT_JSON)
    mprpc__textbuf_puts(b, "]}\n");
  else if (rq->fmt == MPRPC__HTTP_FMT_HTML)
    mprpc__console_html_tail(b);
  free(r);
  free(hist);
  return 0;
}

/* ---- /protobufs ------------------------------------------------------------------- */

static const char *label_name(ProtobufCLabel l) {
  switch (l) {
  case PROTOBUF_C_LABEL_REQUIRED:
    return "required";
  case PROTOBUF_C_LABEL_REPEATED:
    return "repeated";
  case PROTOBUF_C_LABEL_NONE:
    return "";
  default:
    return "optional";
  }
}

static const char *type_name(const ProtobufCFieldDescriptor *f) {
  static const char *const names[] = {"int32",  "sint32", "sfixed32", "int64",  "sint64",
                                      "sfixed64", "uint32", "fixed32", "uint64", "fixed64",
                                      "float",  "double", "bool",     "enum",   "string",
                                      "bytes",  "message"};
  if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->descriptor)
    return ((const ProtobufCMessageDescriptor *)f->descriptor)->name;
  if (f->type == PROTOBUF_C_TYPE_ENUM && f->descriptor)
    return ((const ProtobufCEnumDescriptor *)f->descriptor)->name;
  return (unsigned)f->type < sizeof names / sizeof names[0] ? names[f->type] : "?";
}

#define MAX_MSGS 256

/* The messages the services use, nested ones included, each once. */
static size_t collect(const ProtobufCMessageDescriptor *d, const ProtobufCMessageDescriptor **seen,
                      size_t n) {
  for (size_t i = 0; i < n; i++)
    if (seen[i] == d)
      return n;
  if (n == MAX_MSGS)
    return n;
  seen[n++] = d;
  for (unsigned i = 0; i < d->n_fields; i++)
    if (d->fields[i].type == PROTOBUF_C_TYPE_MESSAGE && d->fields[i].descriptor)
      n = collect(d->fields[i].descriptor, seen, n);
  return n;
}

static void message_out(mprpc__textbuf_t *b, mprpc__http_format_t fmt,
                        const ProtobufCMessageDescriptor *d, bool first) {
  if (fmt == MPRPC__HTTP_FMT_JSON) {
    mprpc__textbuf_puts(b, first ? "{\"name\":" : ",{\"name\":");
    jstr(b, d->name);
    mprpc__textbuf_puts(b, ",\"fields\":[");
  } else if (fmt == MPRPC__HTTP_FMT_HTML) {
    mprpc__textbuf_puts(b, "<h3>message ");
    hstr(b, d->name);
    mprpc__textbuf_puts(b, "</h3>\n<pre>");
  } else {
    TB(b, "message %s\n", d->name);
  }
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    const char *lab = label_name(f->label);
    if (fmt == MPRPC__HTTP_FMT_JSON) {
      TB(b, "%s{\"name\":", i ? "," : "");
      jstr(b, f->name);
      TB(b, ",\"number\":%u,\"label\":\"%s\",\"type\":", f->id, *lab ? lab : "singular");
      jstr(b, type_name(f));
      mprpc__textbuf_putc(b, '}');
    } else {
      char line[512];
      snprintf(line, sizeof line, "  %s%s%s %s = %u;\n", lab, *lab ? " " : "", type_name(f),
               f->name, f->id);
      if (fmt == MPRPC__HTTP_FMT_HTML)
        hstr(b, line);
      else
        mprpc__textbuf_puts(b, line);
    }
  }
  if (fmt == MPRPC__HTTP_FMT_JSON)
    mprpc__textbuf_puts(b, "]}");
  else if (fmt == MPRPC__HTTP_FMT_HTML)
    mprpc__textbuf_puts(b, "</pre>\n");
}

int mprpc__cpage_protobufs(mprpc__creq_t *rq, mprpc__cresp_t *rs) {
  mprpc_server_t *s = rq->s;
  mprpc__textbuf_t *b = &rs->body;
  mprpc__http_format_t fmt = rq->fmt;
  const ProtobufCMessageDescriptor **seen = malloc(MAX_MSGS * sizeof *seen);
  size_t nseen = 0;
  if (!seen) {
    b->err = MPRPC_ENOMEM;
    return 0;
  }
  if (fmt == MPRPC__HTTP_FMT_JSON)
    mprpc__textbuf_puts(b, "{\"services\":[");
  else if (fmt == MPRPC__HTTP_FMT_HTML)
    mprpc__console_html_head(b, "protobufs");
  for (size_t si = 0; si < s->nservices; si++) {
    const ProtobufCServiceDescriptor *d = s->services[si]->descriptor;
    if (fmt == MPRPC__HTTP_FMT_JSON) {
      mprpc__textbuf_puts(b, si ? ",{\"name\":" : "{\"name\":");
      jstr(b, d->name);
      mprpc__textbuf_puts(b, ",\"methods\":[");
    } else if (fmt == MPRPC__HTTP_FMT_HTML) {
      mprpc__textbuf_puts(b, "<h2>service ");
      hstr(b, d->name);
      mprpc__textbuf_puts(b, "</h2>\n<ul>\n");
    } else {
      TB(b, "service %s\n", d->name);
    }
    for (unsigned k = 0; k < d->n_methods; k++) {
      const ProtobufCMethodDescriptor *md = &d->methods[k];
      nseen = collect(md->input, seen, nseen);
      nseen = collect(md->output, seen, nseen);
      if (fmt == MPRPC__HTTP_FMT_JSON) {
        mprpc__textbuf_puts(b, k ? ",{\"name\":" : "{\"name\":");
        jstr(b, md->name);
        mprpc__textbuf_puts(b, ",\"input\":");
        jstr(b, md->input->name);
        mprpc__textbuf_puts(b, ",\"output\":");
        jstr(b, md->output->name);
        mprpc__textbuf_putc(b, '}');
      } else {
        char line[512];
        snprintf(line, sizeof line, "rpc %s(%s) returns (%s)", md->name, md->input->name,
                 md->output->name);
        if (fmt == MPRPC__HTTP_FMT_HTML) {
          mprpc__textbuf_puts(b, "<li>");
          hstr(b, line);
          mprpc__textbuf_puts(b, "</li>\n");
        } else {
          TB(b, "  %s\n", line);
        }
      }
    }
    if (fmt == MPRPC__HTTP_FMT_JSON)
      mprpc__textbuf_puts(b, "]}");
    else if (fmt == MPRPC__HTTP_FMT_HTML)
      mprpc__textbuf_puts(b, "</ul>\n");
  }
  if (fmt == MPRPC__HTTP_FMT_JSON)
    mprpc__textbuf_puts(b, "],\"messages\":[");
  for (size_t i = 0; i < nseen; i++)
    message_out(b, fmt, seen[i], i == 0);
  if (fmt == MPRPC__HTTP_FMT_JSON)
    mprpc__textbuf_puts(b, "]}\n");
  else if (fmt == MPRPC__HTTP_FMT_HTML)
    mprpc__console_html_tail(b);
  free(seen);
  return 0;
}

/* ---- /connections ------------------------------------------------------------------
 *
 * A loop's connections are that loop's alone, so the page is gathered: a
 * task on every loop writes its rows into its own buffer, and the last one
 * to finish posts the answer back to the asking connection's loop. The
 * asking connection is pinned meanwhile (it is not freed if it closes). */

typedef struct gather {
  mprpc_server_t *s;
  srv_conn_t *origin;
  mprpc__http_format_t fmt;
  atomic_size_t left;
  mprpc__textbuf_t *rows; /* one per loop */
} gather_t;

static void conn_row(mprpc__textbuf_t *b, mprpc__http_format_t fmt, srv_conn_t *c, uint64_t now,
                     bool *first) {
  double age = now > c->created_ns ? (double)(now - c->created_ns) / 1e9 : 0;
  size_t pending = c->c && !c->closing ? mprpc_conn_out_pending(c->s->t, c->c) : 0;
  const char *proto = c->proto == MPRPC__PROTO_HTTP    ? "http"
                      : c->proto == MPRPC__PROTO_BAIDU ? "baidu_std"
                                                       : "unknown";
  if (fmt == MPRPC__HTTP_FMT_JSON) {
    mprpc__textbuf_puts(b, *first ? "{\"peer\":" : ",{\"peer\":");
    jstr(b, c->peer);
    TB(b,
       ",\"protocol\":\"%s\",\"age_seconds\":%.0f,\"requests\":%llu,\"bytes_in\":%llu,"
       "\"bytes_out\":%llu,\"out_pending\":%zu,\"inflight\":%zu}",
       proto, age, (unsigned long long)c->nrequests, (unsigned long long)c->bytes_in,
       (unsigned long long)c->bytes_out, pending, c->inflight);
  } else if (fmt == MPRPC__HTTP_FMT_HTML) {
    mprpc__textbuf_puts(b, "<tr><td>");
    hstr(b, c->peer);
    TB(b,
       "</td><td>%s</td><td>%.0f</td><td>%llu</td><td>%llu</td><td>%llu</td><td>%zu</td>"
       "<td>%zu</td></tr>\n",
       proto, age, (unsigned long long)c->nrequests, (unsigned long long)c->bytes_in,
       (unsigned long long)c->bytes_out, pending, c->inflight);
  } else {
    TB(b,
       "%s protocol=%s age_seconds=%.0f requests=%llu bytes_in=%llu bytes_out=%llu "
       "out_pending=%zu inflight=%zu\n",
       c->peer, proto, age, (unsigned long long)c->nrequests, (unsigned long long)c->bytes_in,
       (unsigned long long)c->bytes_out, pending, c->inflight);
  }
  *first = false;
}

static void gather_finish(void *arg) {
  gather_t *g = arg;
  mprpc_server_t *s = g->s;
  srv_conn_t *conn = g->origin;
  mprpc__cresp_t rs = {.status = 200};
  mprpc__textbuf_init(&rs.body);
  mprpc__textbuf_t *b = &rs.body;
  if (g->fmt == MPRPC__HTTP_FMT_JSON) {
    mprpc__textbuf_puts(b, "{\"connections\":[");
  } else if (g->fmt == MPRPC__HTTP_FMT_HTML) {
    mprpc__console_html_head(b, "connections");
    mprpc__textbuf_puts(b, "<table><tr><th>peer</th><th>protocol</th><th>age s</th>"
                           "<th>requests</th><th>bytes in</th><th>bytes out</th>"
                           "<th>out pending</th><th>in flight</th></tr>\n");
  }
  bool any = false;
  for (size_t i = 0; i < s->nloops; i++) {
    if (g->fmt == MPRPC__HTTP_FMT_JSON && any && g->rows[i].len)
      mprpc__textbuf_putc(b, ',');
    if (g->rows[i].len)
      any = true;
    mprpc__textbuf_append(b, mprpc__textbuf_cstr(&g->rows[i]), g->rows[i].len);
    if (g->rows[i].err)
      b->err = g->rows[i].err;
    mprpc__textbuf_free(&g->rows[i]);
  }
  if (g->fmt == MPRPC__HTTP_FMT_JSON)
    mprpc__textbuf_puts(b, "]}\n");
  else if (g->fmt == MPRPC__HTTP_FMT_HTML) {
    mprpc__textbuf_puts(b, "</table>\n");
    mprpc__console_html_tail(b);
  }
  free(g->rows);
  free(g);
  conn->pins--;
  mprpc__console_done(conn, &rs);
  mprpc__srv_conn_maybe_free(conn);
  mprpc__srv_task_done(s);
}

static void gather_finish_later(gather_t *g);

static void gather_loop(void *arg) {
  void **pair = arg;
  gather_t *g = pair[0];
  srv_loop_t *l = pair[1];
  free(pair);
  mprpc_server_t *s = g->s;
  uint64_t now = mprpc_loop_now(l->loop);
  bool first = true;
  for (srv_conn_t *c = l->conns; c; c = c->next)
    if (!c->closed)
      conn_row(&g->rows[l->idx], g->fmt, c, now, &first);
  if (atomic_fetch_sub(&g->left, 1) == 1)
    gather_finish_later(g); /* if the asking loop is gone, nobody is answered */
  mprpc__srv_task_done(s);
}

static void gather_finish_later(gather_t *g) {
  if (mprpc__srv_post(g->s, g->origin->l->loop, gather_finish, g) == 0)
    return;
  for (size_t i = 0; i < g->s->nloops; i++)
    mprpc__textbuf_free(&g->rows[i]);
  g->origin->pins--;
  free(g->rows);
  free(g);
}

int mprpc__cpage_connections(mprpc__creq_t *rq, mprpc__cresp_t *rs) {
  mprpc_server_t *s = rq->s;
  gather_t *g = calloc(1, sizeof *g);
  if (!g || !(g->rows = calloc(s->nloops, sizeof *g->rows))) {
    free(g);
    rs->body.err = MPRPC_ENOMEM;
    return 0;
  }
  g->s = s;
  g->origin = rq->conn;
  g->fmt = rq->fmt;
  atomic_init(&g->left, s->nloops);
  rq->conn->pins++;
  rq->conn->http->busy = true;
  size_t posted = 0;
  for (size_t i = 0; i < s->nloops; i++) {
    void **pair = malloc(2 * sizeof *pair);
    if (pair) {
      pair[0] = g;
      pair[1] = &s->sl[i];
    }
    if (!pair || mprpc__srv_post(s, s->loops[i], gather_loop, pair) < 0) {
      free(pair);
      if (atomic_fetch_sub(&g->left, 1) != 1)
        continue;
      if (posted == 0) {
        rq->conn->pins--;
        rq->conn->http->busy = false;
        free(g->rows);
        free(g);
        mprpc__console_error(rq, rs, 503, "cannot reach the loops");
        return 0;
      }
      gather_finish_later(g); /* the loops that ran answered already */
      continue;
    }
    posted++;
  }
  return MPRPC__CONSOLE_ASYNC;
}
