/*
 * The console's HTTP side of a provider connection: the first bytes decide
 * the protocol (core/sniff.h), HTTP requests are parsed incrementally
 * (core/http.h), authenticated, routed to a page and answered in order
 * (keep-alive and pipelining). Also the console's own port (console_port).
 * Runs on the connection's loop thread, through the transport seam only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/console_int.h"
#include "core/rpcz.h"
#include "core/sniff.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

/* ---- warnings, refusals ---------------------------------------------------- */

void mprpc__console_warn(mprpc_server_t *s, const char *fmt, ...) {
  uint64_t now = mprpc_loop_now(s->loops[0]);
  uint64_t unlogged = atomic_fetch_add(&s->con_unlogged, 1);
  uint64_t last = atomic_load(&s->con_last_log);
  if (last && now - last < MPRPC_NS_PER_S)
    return;
  if (!atomic_compare_exchange_strong(&s->con_last_log, &last, now ? now : 1))
    return;
  atomic_fetch_sub(&s->con_unlogged, unlogged + 1);
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (unlogged)
    MPRPC_LOG_WARN("console: %s (%llu more since the last warning)", msg,
                   (unsigned long long)unlogged);
  else
    MPRPC_LOG_WARN("console: %s", msg);
}

static void count_refusal(mprpc_server_t *s, int status) {
  static const int statuses[6] = {400, 401, 403, 404, 413, 431};
  for (size_t i = 0; i < 6; i++)
    if (statuses[i] == status)
      atomic_fetch_add(&s->st_http_refused[i], 1);
}

/* ---- page helpers ------------------------------------------------------------- */

void mprpc__console_html_head(mprpc__textbuf_t *b, const char *title) {
  mprpc__textbuf_puts(b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
  mprpc__textbuf_html(b, title, strlen(title));
  mprpc__textbuf_puts(b, "</title><style>body{font-family:sans-serif;margin:1em}"
                         "table{border-collapse:collapse}td,th{border:1px solid #ccc;"
                         "padding:2px 6px;text-align:right}th{background:#eee}"
                         "td:first-child,th:first-child{text-align:left}</style></head><body>\n"
                         "<p><a href=\"/status\">status</a> | <a href=\"/connections\">"
                         "connections</a> | <a href=\"/flags\">flags</a> | <a href=\"/protobufs\">"
                         "protobufs</a> | <a href=\"/metrics\">metrics</a> | <a href=\"/version\">"
                         "version</a></p>\n<h1>");
  mprpc__textbuf_html(b, title, strlen(title));
  mprpc__textbuf_puts(b, "</h1>\n");
}

void mprpc__console_html_tail(mprpc__textbuf_t *b) { mprpc__textbuf_puts(b, "</body></html>\n"); }

void mprpc__console_error(const mprpc__creq_t *rq, mprpc__cresp_t *rs, int status,
                          const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  rs->status = status;
  mprpc__textbuf_reset(&rs->body);
  const char *reason = mprpc__http_status_reason(status);
  switch (rq->fmt) {
  case MPRPC__HTTP_FMT_JSON:
    mprpc__textbuf_printf(&rs->body, "{\"status\":%d,\"error\":", status);
    mprpc__textbuf_json(&rs->body, text, strlen(text));
    mprpc__textbuf_puts(&rs->body, "}\n");
    break;
  case MPRPC__HTTP_FMT_HTML:
    mprpc__console_html_head(&rs->body, reason);
    mprpc__textbuf_puts(&rs->body, "<p>");
    mprpc__textbuf_html(&rs->body, text, strlen(text));
    mprpc__textbuf_puts(&rs->body, "</p>\n");
    mprpc__console_html_tail(&rs->body);
    break;
  default:
    mprpc__textbuf_printf(&rs->body, "%d %s: %s\n", status, reason, text);
  }
  count_refusal(rq->s, status);
}

/* ---- authentication and routing --------------------------------------------- */

/* The server's authenticator sees the Authorization header's value, as it
 * sees a baidu_std request's authentication_data. */
static bool authorized(const mprpc__creq_t *rq, mprpc__cresp_t *rs) {
  mprpc_server_t *s = rq->s;
  if (!s->o.authenticate)
    return true;
  const mprpc__http_str_t *a = mprpc__http_header(rq->req, "Authorization");
  if (!a) {
    mprpc__console_error(rq, rs, 401, "this console needs an Authorization header");
    rs->hdr[rs->nhdr++] = (mprpc__http_kv_t){"WWW-Authenticate", "Basic realm=\"mprpc\""};
    mprpc__console_warn(s, "%s: request without Authorization refused (401)", rq->conn->peer);
    return false;
  }
  if (s->o.authenticate(s->o.auth_ud, (const uint8_t *)a->ptr, a->len, rq->conn->peer) != 0) {
    mprpc__console_error(rq, rs, 403, "authentication failed");
    mprpc__console_warn(s, "%s: authentication failed (403)", rq->conn->peer);
    return false;
  }
  return true;
}

static bool path_is(const mprpc__http_req_t *r, const char *p) {
  size_t n = strlen(p);
  return r->path.len == n && memcmp(r->path.ptr, p, n) == 0;
}

static bool is_get(const mprpc__http_req_t *r) {
  return r->method == MPRPC__HTTP_GET || r->method == MPRPC__HTTP_HEAD;
}

/* GET /rpcz[?trace_id=X]: the last sampled calls (core/rpcz.h). */
static int page_rpcz(mprpc__creq_t *rq, mprpc__cresp_t *rs) {
  char idtext[40];
  size_t n = 0;
  uint64_t trace_id = 0;
  int qr = mprpc__http_query_param(rq->req, "trace_id", idtext, sizeof idtext, &n);
  if (qr == 0 && mprpc__rpcz_parse_id(idtext, n, &trace_id) < 0)
    qr = MPRPC_EINVAL;
  if (qr != 0 && qr != MPRPC_ENOTFOUND) {
    mprpc__console_error(rq, rs, 400, "trace_id: expected 1 to 16 hex digits");
    return 0;
  }
  int fmt = rq->fmt == MPRPC__HTTP_FMT_JSON   ? MPRPC__RPCZ_JSON
            : rq->fmt == MPRPC__HTTP_FMT_HTML ? MPRPC__RPCZ_HTML
                                              : MPRPC__RPCZ_TEXT;
  if (fmt == MPRPC__RPCZ_HTML)
    mprpc__console_html_head(&rs->body, "rpcz");
  mprpc__rpcz_render(rq->s->rpcz, &rs->body, fmt, trace_id);
  if (fmt == MPRPC__RPCZ_HTML)
    mprpc__console_html_tail(&rs->body);
  return 0;
}

typedef int (*page_fn)(mprpc__creq_t *, mprpc__cresp_t *);

static const struct {
  const char *path;
  page_fn fn;
} get_pages[] = {
    {"/", mprpc__cpage_index},
    {"/health", mprpc__cpage_health},
    {"/status", mprpc__cpage_status},
    {"/metrics", mprpc__cpage_metrics},
    {"/connections", mprpc__cpage_connections},
    {"/flags", mprpc__cpage_flags},
    {"/protobufs", mprpc__cpage_protobufs},
    {"/version", mprpc__cpage_version},
    {"/rpcz", page_rpcz},
};

static int route(mprpc__creq_t *rq, mprpc__cresp_t *rs) {
  const mprpc__http_req_t *r = rq->req;
  if (!authorized(rq, rs))
    return 0;
  for (size_t i = 0; i < sizeof get_pages / sizeof get_pages[0]; i++)
    if (path_is(r, get_pages[i].path)) {
      if (is_get(r))
        return get_pages[i].fn(rq, rs);
      mprpc__console_error(rq, rs, 405, "%s answers GET", get_pages[i].path);
      rs->hdr[rs->nhdr++] = (mprpc__http_kv_t){"Allow", "GET, HEAD"};
      return 0;
    }
  if (r->path.len > 7 && memcmp(r->path.ptr, "/flags/", 7) == 0) {
    if (r->method != MPRPC__HTTP_POST && r->method != MPRPC__HTTP_PUT) {
      mprpc__console_error(rq, rs, 405, "set a flag with POST /flags/NAME?value=V");
      rs->hdr[rs->nhdr++] = (mprpc__http_kv_t){"Allow", "POST"};
      return 0;
    }
    return mprpc__cpage_flag_set(rq, rs, r->path.ptr + 7);
  }
  /* /package.Service/Method */
  int shown = (int)(r->path.len > 200 ? 200 : r->path.len);
  const char *slash = r->path.len > 1 ? memchr(r->path.ptr + 1, '/', r->path.len - 1) : NULL;
  size_t rest = slash ? r->path.len - (size_t)(slash + 1 - r->path.ptr) : 0;
  if (slash && slash[1] && !memchr(slash + 1, '/', rest)) {
    bool svc_found = false;
    mprpc_bytes_t svc = {(const uint8_t *)r->path.ptr + 1, (size_t)(slash - r->path.ptr - 1)};
    mprpc__srv_lookup(rq->s, svc, mprpc_bytes_str(slash + 1), &svc_found);
    if (r->method != MPRPC__HTTP_POST && !svc_found) {
      mprpc__console_error(rq, rs, 404, "no page %.*s (see /)", shown, r->path.ptr);
      return 0;
    }
    if (r->method != MPRPC__HTTP_POST) {
      mprpc__console_error(rq, rs, 405, "call a method with POST and a JSON body");
      rs->hdr[rs->nhdr++] = (mprpc__http_kv_t){"Allow", "POST"};
      return 0;
    }
    return mprpc__cpage_call(rq, rs);
  }
  mprpc__console_error(rq, rs, 404, "no page %.*s (see /)", shown, r->path.ptr);
  return 0;
}

/* ---- the connection ---------------------------------------------------------- */

static void feed(srv_conn_t *conn);

static void conn_write(srv_conn_t *conn, const char *p, size_t n) {
  if (conn->closing || conn->closed)
    return;
  struct iovec iov = {(void *)p, n};
  int rc = mprpc_conn_writev(conn->s->t, conn->c, &iov, 1);
  if (rc < 0) {
    mprpc__console_warn(conn->s, "closing %s: write: %s", conn->peer, mprpc_strerror(rc));
    mprpc__srv_conn_close(conn, false);
    return;
  }
  conn->bytes_out += n;
  MPRPC__ONE_WRITER_ADD(&conn->l->bytes_out, n);
}

/* Writes the answer to the pending request, then moves to the next one. */
static void answer(srv_conn_t *conn, mprpc__cresp_t *rs) {
  mprpc__ccon_t *h = conn->http;
  const mprpc__http_req_t *r = mprpc__http_request(&h->hc);
  mprpc__textbuf_t out = MPRPC__TEXTBUF_INIT;
  mprpc__http_format_t fmt = mprpc__http_negotiate(r);
  bool keep = r->keep_alive && !atomic_load(&conn->s->stopping);
  if (rs->body.err) {
    rs->status = 500;
    mprpc__textbuf_free(&rs->body);
    mprpc__textbuf_init(&rs->body);
    mprpc__textbuf_puts(&rs->body, "500 Internal Server Error: out of memory\n");
    rs->ctype = "text/plain; charset=utf-8";
  }
  mprpc__http_resp_t resp = {
      .status = rs->status ? rs->status : 200,
      .content_type = rs->ctype ? rs->ctype : mprpc__http_format_content_type(fmt),
      .body = mprpc__textbuf_cstr(&rs->body),
      .body_len = rs->body.len,
      .headers = rs->hdr,
      .nheaders = rs->nhdr,
      .keep_alive = keep,
      .head = r->method == MPRPC__HTTP_HEAD,
  };
  if (mprpc__http_write_response(&out, &resp) == 0)
    conn_write(conn, mprpc__textbuf_cstr(&out), out.len);
  else
    mprpc__srv_conn_close(conn, false);
  mprpc__textbuf_free(&out);
  mprpc__textbuf_free(&rs->body);
  conn->last_active = mprpc_loop_now(conn->l->loop);
  mprpc__http_next(&h->hc);
  if (!keep)
    mprpc__srv_conn_close(conn, true);
}

static void handle(srv_conn_t *conn) {
  mprpc__ccon_t *h = conn->http;
  const mprpc__http_req_t *r = mprpc__http_request(&h->hc);
  mprpc__creq_t rq = {conn->s, conn, r, mprpc__http_negotiate(r)};
  mprpc__cresp_t rs = {.status = 200};
  mprpc__textbuf_init(&rs.body);
  atomic_fetch_add(&conn->s->st_http_requests, 1);
  conn->nrequests++;
  /* An async page set h->busy itself, and may even have been answered
   * already (an inline handler's frame comes back before dispatch returns). */
  if (route(&rq, &rs) == MPRPC__CONSOLE_ASYNC) {
    mprpc__textbuf_free(&rs.body);
    return;
  }
  answer(conn, &rs);
}

void mprpc__console_done(srv_conn_t *conn, mprpc__cresp_t *rs) {
  mprpc__ccon_t *h = conn->http;
  h->busy = false;
  if (conn->closing || conn->closed) {
    mprpc__textbuf_free(&rs->body);
    return;
  }
  answer(conn, rs);
  feed(conn); /* requests pipelined behind this one */
}

static void feed(srv_conn_t *conn) {
  mprpc__ccon_t *h = conn->http;
  if (h->feeding)
    return;
  h->feeding = true;
  mprpc_rbuf_t *in = &conn->in;
  while (!h->busy && !conn->closing && !conn->closed) {
    size_t len = mprpc_rbuf_len(in), used = 0;
    if (len == 0)
      break;
    int rc = mprpc__http_feed(&h->hc, mprpc_rbuf_data(in), len, &used);
    mprpc_rbuf_consume(in, used);
    if (rc == MPRPC__HTTP_REQUEST) {
      handle(conn);
      continue;
    }
    if (rc == 0)
      break;
    if (rc == MPRPC_ECLOSED) { /* bytes after a request that closes */
      mprpc__srv_conn_close(conn, true);
      break;
    }
    int status = mprpc__http_error_status(&h->hc);
    mprpc__console_warn(conn->s, "closing %s: bad HTTP request (%d): %s", conn->peer, status,
                        h->hc.reason);
    atomic_fetch_add(&conn->s->st_malformed, 1);
    if (status) {
      count_refusal(conn->s, status);
      mprpc__textbuf_t out = MPRPC__TEXTBUF_INIT;
      if (mprpc__http_write_error(&out, &h->hc) == 0)
        conn_write(conn, mprpc__textbuf_cstr(&out), out.len);
      mprpc__textbuf_free(&out);
    }
    mprpc__srv_conn_close(conn, true);
    break;
  }
  h->feeding = false;
  if (!conn->closed)
    conn->in_seen = mprpc_rbuf_len(in);
}

bool mprpc__console_take(srv_conn_t *conn, mprpc_rbuf_t *in) {
  if (conn->proto == MPRPC__PROTO_NEED_MORE) {
    mprpc__proto_t p = mprpc__sniff(mprpc_rbuf_data(in), mprpc_rbuf_len(in));
    if (p == MPRPC__PROTO_NEED_MORE)
      return true;
    if (p == MPRPC__PROTO_BAIDU && !conn->console_only) {
      conn->proto = MPRPC__PROTO_BAIDU;
      return false;
    }
    if (p != MPRPC__PROTO_HTTP) {
      mprpc__console_warn(conn->s, "closing %s: it speaks %s, which this port does not serve",
                          conn->peer, p == MPRPC__PROTO_BAIDU ? "baidu_std" : mprpc__proto_name(p));
      atomic_fetch_add(&conn->s->st_malformed, 1);
      mprpc__srv_conn_close(conn, false);
      return true;
    }
    conn->http = calloc(1, sizeof *conn->http);
    if (!conn->http || mprpc__http_conn_init(&conn->http->hc, NULL) < 0) {
      free(conn->http);
      conn->http = NULL;
      mprpc__srv_conn_close(conn, false);
      return true;
    }
    conn->proto = MPRPC__PROTO_HTTP;
  }
  if (conn->http)
    feed(conn);
  return true;
}

void mprpc__console_on_frame(srv_conn_t *conn, const mprpc_frame_out_t *out) {
  mprpc__console_call_answer(conn, out);
}

void mprpc__console_conn_free(srv_conn_t *conn) {
  if (!conn->http)
    return;
  mprpc__http_conn_free(&conn->http->hc);
  free(conn->http);
  conn->http = NULL;
}

/* ---- the console's own port ---------------------------------------------------- */

static void console_on_accept(void *ud, mprpc_conn_t *c, mprpc_loop_t loop) {
  mprpc__srv_conn_accepted(ud, c, loop, true);
}

int mprpc__console_listen(mprpc_server_t *s) {
  if (!s->o.console || !s->o.console_port)
    return 0;
  mprpc_listen_opts_t lo = {
      .host = s->host,
      .port = s->o.console_port,
      .loops = s->loops,
      .nloops = s->nloops,
      .on_accept = console_on_accept,
      .ud = s,
      .conn = {.high_water = s->o.high_water},
  };
  int rc = mprpc_transport_listen(s->t, &lo, &s->console_listener);
  if (rc < 0) {
    MPRPC_LOG_ERROR("server: console listen on %s:%u: %s", s->host, (unsigned)s->o.console_port,
                    mprpc_strerror(rc));
    s->console_listener = NULL;
    return rc;
  }
  s->console_port = mprpc_listener_port(s->t, s->console_listener);
  MPRPC_LOG_INFO("server: console on http://%s:%u/", s->host, (unsigned)s->console_port);
  return 0;
}

void mprpc__console_unlisten(mprpc_server_t *s) {
  if (s->console_listener) {
    mprpc_listener_close(s->t, s->console_listener);
    s->console_listener = NULL;
  }
}
