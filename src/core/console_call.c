/*
 * HTTP/JSON calls: POST /<package.Service>/<Method> with a JSON body. The
 * body becomes the serialized request through the JSON codec seam (the
 * facade plugs in src/util/json.c), then goes through the very dispatcher
 * baidu_std requests go through (server_dispatch.c: stopping, auth with the
 * Authorization header, limits, deadline from X-Timeout-Ms, stats). The
 * answer frame comes back here (server_conn.c hands frames of HTTP
 * connections over) and is turned into JSON.
 *
 * Errors: an HTTP status and {"error_code":N,"error_name":"E...",
 * "error_text":"..."}; bad JSON is 400 with the field path in error_text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/compress.h"
#include "core/console_int.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

static int http_status_of(int err) {
  switch (err) {
  case 0:
    return 200;
  case MPRPC_ENOSERVICE:
  case MPRPC_ENOMETHOD:
    return 404;
  case MPRPC_EREQUEST:
    return 400;
  case MPRPC_ERPCAUTH:
    return 403;
  case MPRPC_ERPCTIMEDOUT:
    return 504;
  case MPRPC_ELIMIT:
  case MPRPC_EOVERCROWDED:
  case MPRPC_ELOGOFF:
    return 503;
  default:
    return 500;
  }
}

/* wire: the code as it travels (an application's own code is kept as is);
 * 0: mprpc_err_to_wire(err). */
static void json_error_wire(mprpc__cresp_t *rs, int err, int32_t wire, const char *text,
                            size_t tlen) {
  rs->status = http_status_of(err);
  rs->ctype = "application/json";
  mprpc__textbuf_reset(&rs->body);
  mprpc__textbuf_printf(&rs->body, "{\"error_code\":%d,\"error_name\":\"%s\",\"error_text\":",
                        (int)(wire ? wire : mprpc_err_to_wire(err)), mprpc_err_name(err));
  mprpc__textbuf_json(&rs->body, text, tlen);
  mprpc__textbuf_puts(&rs->body, "}\n");
}

static void json_error(mprpc__cresp_t *rs, int err, const char *text, size_t tlen) {
  json_error_wire(rs, err, 0, text, tlen);
}

int mprpc__cpage_call(mprpc__creq_t *rq, mprpc__cresp_t *rs) {
  mprpc_server_t *s = rq->s;
  srv_conn_t *conn = rq->conn;
  const mprpc__http_req_t *r = rq->req;
  const char *svc = r->path.ptr + 1;
  const char *slash = memchr(svc, '/', r->path.len - 1);
  mprpc_bytes_t sname = {(const uint8_t *)svc, (size_t)(slash - svc)};
  mprpc_bytes_t mname = {(const uint8_t *)slash + 1, r->path.len - 1 - sname.len - 1};
  bool found;
  srv_method_t *m = mprpc__srv_lookup(s, sname, mname, &found);
  uint8_t *pb = NULL;
  size_t pblen = 0;
  if (m) {
    if (!s->o.json.vt) {
      json_error(rs, MPRPC_EUNSUPPORTED, "no JSON codec in this server",
                 strlen("no JSON codec in this server"));
      rs->status = 501;
      return 0;
    }
    char err[256] = "";
    const char *body = r->body_len ? (const char *)r->body : "{}";
    size_t blen = r->body_len ? r->body_len : 2;
    int rc = s->o.json.vt->json_to_pb(s->o.json.ctx, m->desc->input, body, blen, &pb, &pblen, err,
                                      sizeof err);
    if (rc < 0) {
      char text[400];
      snprintf(text, sizeof text, "request is not a %s: %s", m->desc->input->name,
               err[0] ? err : mprpc_strerror(rc));
      json_error(rs, MPRPC_EREQUEST, text, strlen(text));
      rs->status = rc == MPRPC_ENOMEM ? 500 : 400;
      return 0;
    }
  }
  /* Unknown service or method: the dispatcher answers (and counts) it. */
  mprpc_meta_t meta;
  memset(&meta, 0, sizeof meta);
  meta.has_request = true;
  meta.service_name = sname;
  meta.method_name = mname;
  meta.correlation_id = (int64_t)conn->nrequests;
  const mprpc__http_str_t *a = mprpc__http_header(r, "Authorization");
  if (a)
    meta.auth_data = (mprpc_bytes_t){(const uint8_t *)a->ptr, a->len};
  const mprpc__http_str_t *to = mprpc__http_header(r, "X-Timeout-Ms");
  if (to) {
    long v = strtol(to->ptr, NULL, 10);
    meta.timeout_ms = v > 0 && v < INT32_MAX ? (int32_t)v : 0;
  }
  const mprpc__http_str_t *rid = mprpc__http_header(r, "X-Request-Id");
  if (rid)
    meta.request_id = (mprpc_bytes_t){(const uint8_t *)rid->ptr, rid->len};
  mprpc_frame_t f = {.meta = meta, .payload = {pb, pblen}};
  conn->http->call = m ? m->desc : NULL;
  conn->http->busy = true; /* the answer may come now or later */
  mprpc__srv_dispatch(conn, &f, mprpc_loop_now(conn->l->loop));
  free(pb); /* unpack copied what it keeps */
  return MPRPC__CONSOLE_ASYNC;
}

/* The dispatcher's answer frame for the pending call (now or later, on the
 * connection's loop). */
void mprpc__console_call_answer(srv_conn_t *conn, const mprpc_frame_out_t *out) {
  mprpc__ccon_t *h = conn->http;
  mprpc__cresp_t rs = {.status = 200, .ctype = "application/json"};
  mprpc__textbuf_init(&rs.body);
  if (!h || !h->busy) {
    MPRPC_LOG_ERROR("console: an answer frame for %s with no call waiting", conn->peer);
    return;
  }
  uint8_t *flat = malloc(out->total ? out->total : 1);
  if (!flat) {
    rs.body.err = MPRPC_ENOMEM;
    mprpc__console_done(conn, &rs);
    return;
  }
  size_t pos = 0;
  for (int i = 0; i < out->iovcnt; i++) {
    if (out->iov[i].iov_len)
      memcpy(flat + pos, out->iov[i].iov_base, out->iov[i].iov_len);
    pos += out->iov[i].iov_len;
  }
  mprpc_frame_t f;
  long n = mprpc_frame_parse(flat, pos, UINT32_MAX, &f);
  uint8_t *plain = NULL;
  if (n <= 0) {
    json_error(&rs, MPRPC_EINTERNAL, "answer frame does not parse", 27);
  } else if (f.meta.error_code) {
    /* an application's own code (EAPP) keeps its number */
    int err = mprpc_err_wire_is_app(f.meta.error_code) ? MPRPC_EAPP
                                                       : mprpc_err_from_wire(f.meta.error_code);
    json_error_wire(&rs, err, f.meta.error_code,
                    (const char *)f.meta.error_text.ptr, f.meta.error_text.len);
  } else if (!h->call) {
    json_error(&rs, MPRPC_EINTERNAL, "answer without a method", 23);
  } else {
    const uint8_t *pl = f.payload.ptr;
    size_t plen = f.payload.len;
    const char *why = "";
    int zr = 0;
    if (f.meta.compress_type != MPRPC_COMPRESS_NONE) {
      zr = mprpc__decompress_payload(f.meta.compress_type, pl, plen, UINT32_MAX, &plain, &plen,
                                     &why);
      pl = plain;
    }
    char *json = NULL, err[256] = "";
    size_t jlen = 0;
    int rc = zr ? zr
                : conn->s->o.json.vt->pb_to_json(conn->s->o.json.ctx, h->call->output, pl, plen,
                                                 &json, &jlen, err, sizeof err);
    if (rc < 0) {
      char text[400];
      const char *why_text = zr ? why : err[0] ? err : mprpc_strerror(rc);
      snprintf(text, sizeof text, "response as JSON: %s", why_text);
      json_error(&rs, MPRPC_EINTERNAL, text, strlen(text));
    } else {
      mprpc__textbuf_append(&rs.body, json, jlen);
      mprpc__textbuf_putc(&rs.body, '\n');
    }
    free(json);
  }
  free(plain);
  free(flat);
  h->call = NULL;
  mprpc__console_done(conn, &rs);
}
