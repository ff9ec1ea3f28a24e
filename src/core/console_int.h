/*
 * Console internals shared by console.c (HTTP connections, the router,
 * authentication, the console port), console_pages.c (/health, /status,
 * /version, /protobufs, /connections), console_metrics.c (/metrics),
 * console_flags.c (/flags) and console_call.c (HTTP/JSON calls).
 *
 * A page is a function from a request to a response, on the loop thread of
 * the request's connection. One that cannot answer at once returns
 * MPRPC__CONSOLE_ASYNC and later calls mprpc__console_done on that loop;
 * until then the connection reads no further request (pipelined requests
 * are answered in order).
 */
#ifndef MPRPC_CORE_CONSOLE_INT_H
#define MPRPC_CORE_CONSOLE_INT_H

#include "core/http.h"
#include "core/server_internal.h"
#include "core/textbuf.h"

#define MPRPC__CONSOLE_ASYNC 1

typedef struct mprpc__ccon {
  mprpc__http_conn_t hc;
  bool busy;    /* a page answers later */
  bool feeding; /* inside the feed loop */
  /* the HTTP/JSON call waiting for its answer frame (console_call.c) */
  const ProtobufCMethodDescriptor *call;
} mprpc__ccon_t;

typedef struct mprpc__creq {
  mprpc_server_t *s;
  srv_conn_t *conn;
  const mprpc__http_req_t *req;
  mprpc__http_format_t fmt;
} mprpc__creq_t;

typedef struct mprpc__cresp {
  int status;
  const char *ctype; /* NULL: the negotiated format's */
  mprpc__textbuf_t body;
  mprpc__http_kv_t hdr[2];
  size_t nhdr;
} mprpc__cresp_t;

/* console.c */
void mprpc__console_done(srv_conn_t *conn, mprpc__cresp_t *rs);
/* An error answer in the request's format: text "status reason: text\n",
 * JSON {"error":..}, HTML a short page. */
void mprpc__console_error(const mprpc__creq_t *rq, mprpc__cresp_t *rs, int status,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Counted and logged at most once a second per server. */
void mprpc__console_warn(mprpc_server_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* HTML page head (title escaped) and tail. */
void mprpc__console_html_head(mprpc__textbuf_t *b, const char *title);
void mprpc__console_html_tail(mprpc__textbuf_t *b);

/* console_pages.c */
int mprpc__cpage_index(mprpc__creq_t *rq, mprpc__cresp_t *rs);
int mprpc__cpage_health(mprpc__creq_t *rq, mprpc__cresp_t *rs);
int mprpc__cpage_status(mprpc__creq_t *rq, mprpc__cresp_t *rs);
int mprpc__cpage_version(mprpc__creq_t *rq, mprpc__cresp_t *rs);
int mprpc__cpage_protobufs(mprpc__creq_t *rq, mprpc__cresp_t *rs);
int mprpc__cpage_connections(mprpc__creq_t *rq, mprpc__cresp_t *rs);

/* console_metrics.c */
int mprpc__cpage_metrics(mprpc__creq_t *rq, mprpc__cresp_t *rs);

/* console_flags.c */
int mprpc__cpage_flags(mprpc__creq_t *rq, mprpc__cresp_t *rs);
int mprpc__cpage_flag_set(mprpc__creq_t *rq, mprpc__cresp_t *rs, const char *name);

/* console_call.c: POST /package.Service/Method */
int mprpc__cpage_call(mprpc__creq_t *rq, mprpc__cresp_t *rs);
void mprpc__console_call_answer(srv_conn_t *conn, const mprpc_frame_out_t *out);

#endif
