/*
 * HTTP/1.1 for the builtin console: an incremental request parser for one
 * connection and a response writer. Pure: bytes in, requests out, response
 * text out; the provider's connection code owns the socket.
 *
 * The parser (node's http_parser underneath; its types stay in http.c) is
 * fed whatever the transport delivered, in any split, and hands out one
 * complete request at a time, pipelined requests included:
 *
 *   mprpc__http_conn_t hc;
 *   mprpc__http_conn_init(&hc, NULL);               // default limits
 *   on data (p, n):
 *     while (n > 0) {
 *       size_t used;
 *       int rc = mprpc__http_feed(&hc, p, n, &used);
 *       p += used, n -= used;
 *       if (rc == MPRPC__HTTP_REQUEST) {
 *         handle(mprpc__http_request(&hc));         // write a response
 *         mprpc__http_next(&hc);                    // then the next one
 *       } else if (rc < 0) {
 *         if (mprpc__http_error_status(&hc))        // 400 / 413 / 431
 *           mprpc__http_write_error(&out, &hc);
 *         close after writing;  break;
 *       }                                           // 0: wait for more bytes
 *     }
 *   mprpc__http_conn_free(&hc);
 *
 * A request's strings and body live in storage the connection owns and stay
 * valid until mprpc__http_next or mprpc__http_conn_free; the caller's bytes
 * are never referenced after feed returns. Every string is NUL-terminated
 * (and may contain NULs of its own when decoded from %00: use the length).
 *
 * Limits (mprpc__http_limits_t, 0 = the default): the request line and
 * headers together at most 16 KiB (the blank line included; 431 past it,
 * also past 100 header fields); a body at most 1 MiB (413, decided from
 * Content-Length before any body byte is read, and for chunked bodies from
 * each chunk's size line before its data). Any other malformed input is a
 * 400. After an error the connection is finished: feed keeps returning the
 * same error, and the caller closes it after the error response.
 */
#ifndef MPRPC_CORE_HTTP_H
#define MPRPC_CORE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/textbuf.h"

#define MPRPC__HTTP_DEFAULT_MAX_HEAD (16u * 1024)
#define MPRPC__HTTP_DEFAULT_MAX_BODY (1024u * 1024)
#define MPRPC__HTTP_DEFAULT_MAX_HEADERS 100u

typedef struct mprpc__http_limits {
  size_t max_head;    /* request line + headers + blank line, bytes */
  size_t max_body;    /* decoded body bytes */
  size_t max_headers; /* header fields */
} mprpc__http_limits_t;

typedef enum mprpc__http_method {
  MPRPC__HTTP_OTHER = 0, /* any other method http_parser knows; see method_name */
  MPRPC__HTTP_GET,
  MPRPC__HTTP_HEAD,
  MPRPC__HTTP_POST,
  MPRPC__HTTP_PUT,
  MPRPC__HTTP_DELETE,
  MPRPC__HTTP_OPTIONS,
  MPRPC__HTTP_PATCH,
} mprpc__http_method_t;

/* A NUL-terminated string of known length. */
typedef struct mprpc__http_str {
  const char *ptr;
  size_t len;
} mprpc__http_str_t;

typedef struct mprpc__http_header {
  mprpc__http_str_t name; /* as sent (case kept) */
  mprpc__http_str_t value;
} mprpc__http_header_t;

typedef struct mprpc__http_req {
  mprpc__http_method_t method;
  const char *method_name; /* "GET", "PROPFIND", ... (static) */
  mprpc__http_str_t path;  /* %XX-decoded, without query or fragment; "/" if absent */
  mprpc__http_str_t query; /* raw, without '?'; "" if none */
  int version_major, version_minor;
  bool keep_alive; /* 1.1: unless Connection: close; 1.0: only with keep-alive */
  bool chunked;    /* the body came with Transfer-Encoding: chunked */
  const mprpc__http_header_t *headers;
  size_t nheaders;
  const uint8_t *body; /* decoded body; NULL when body_len == 0 */
  size_t body_len;
} mprpc__http_req_t;

/* Private to http.c (holds the http_parser state and the storage). */
typedef struct mprpc__http_impl mprpc__http_impl_t;

typedef struct mprpc__http_conn {
  mprpc__http_impl_t *impl;
  mprpc__http_req_t req; /* valid while feed's last result is a request */
  int state;             /* private */
  int err;               /* 0 or the error feed returns */
  int status;            /* HTTP status for err (400, 413, 431), 0 if none is owed */
  char reason[128];      /* short text for err, "" when none */
} mprpc__http_conn_t;

/* feed's result when a request is ready. */
#define MPRPC__HTTP_REQUEST 1

/* Prepares hc (limits may be NULL: the defaults; zero fields too). 0 or
 * MPRPC_ENOMEM. The connection owns its storage: mprpc__http_conn_free. */
int mprpc__http_conn_init(mprpc__http_conn_t *hc, const mprpc__http_limits_t *limits);
void mprpc__http_conn_free(mprpc__http_conn_t *hc);

/* Parses p[0..len). *consumed is always set (<= len):
 *   MPRPC__HTTP_REQUEST  a complete request is in mprpc__http_request(hc);
 *                        bytes after *consumed belong to the next one and
 *                        must be fed again after mprpc__http_next
 *   0                    all bytes taken, the request is not complete yet
 *   MPRPC_EHTTP          malformed request (status 400)
 *   MPRPC_ETOOBIG        head or body over its limit (status 431 / 413)
 *   MPRPC_ENOMEM         no memory for the body (status 500)
 *   MPRPC_ECLOSED        the last request was not keep-alive (status 0:
 *                        send nothing more, close)
 *   MPRPC_ESTATE         a request is still pending: call mprpc__http_next
 * hc->reason says why in a few words. */
int mprpc__http_feed(mprpc__http_conn_t *hc, const uint8_t *p, size_t len, size_t *consumed);

/* The request feed just returned, or NULL if there is none. */
const mprpc__http_req_t *mprpc__http_request(const mprpc__http_conn_t *hc);

/* Drops the current request (its strings become invalid) and resumes for the
 * next pipelined one. After a request that was not keep-alive, feed returns
 * MPRPC_ECLOSED. */
void mprpc__http_next(mprpc__http_conn_t *hc);

/* For tests and the fuzzer: true when a request is pending and every one of
 * its strings (NUL-terminated) and its body lie inside the connection's own
 * storage, within the limits. */
bool mprpc__http_req_in_storage(const mprpc__http_conn_t *hc);

/* HTTP status owed for the connection's error (0 if none). */
static inline int mprpc__http_error_status(const mprpc__http_conn_t *hc) { return hc->status; }

/* ---- request helpers -------------------------------------------------------- */

/* The first header named name (ASCII case-insensitive), or NULL. */
const mprpc__http_str_t *mprpc__http_header(const mprpc__http_req_t *req, const char *name);

/* The first query parameter named name (compared after decoding), decoded
 * (%XX and '+') into out[0..cap) and NUL-terminated; *len (may be NULL)
 * gets the decoded length. A parameter without '=' has the value "".
 * 0; MPRPC_ENOTFOUND; MPRPC_ERANGE when cap <= the decoded length (out is
 * then truncated, still NUL-terminated if cap > 0). */
int mprpc__http_query_param(const mprpc__http_req_t *req, const char *name, char *out, size_t cap,
                            size_t *len);

/* %XX-decodes in[0..n) into out (at least n bytes; may equal in); '+' is a
 * space when plus is true. A '%' not followed by two hex digits is kept as
 * is. Returns the decoded length (<= n). */
size_t mprpc__http_url_decode(const char *in, size_t n, char *out, bool plus);

/* ---- content negotiation ------------------------------------------------------ */

typedef enum mprpc__http_format {
  MPRPC__HTTP_FMT_TEXT = 0,
  MPRPC__HTTP_FMT_HTML,
  MPRPC__HTTP_FMT_JSON,
} mprpc__http_format_t;

/* Accept contains text/html (any case). */
bool mprpc__http_accepts_html(const mprpc__http_req_t *req);
/* ?format=json|html|text wins; else Accept: text/html gives HTML; else
 * plain text (what curl and scripts get). */
mprpc__http_format_t mprpc__http_negotiate(const mprpc__http_req_t *req);
/* "text/plain; charset=utf-8", "text/html; charset=utf-8", "application/json". */
const char *mprpc__http_format_content_type(mprpc__http_format_t fmt);

/* ---- responses ---------------------------------------------------------------- */

/* "OK", "Not Found", ...; "Unknown" for a code not in the table (static). */
const char *mprpc__http_status_reason(int status);

typedef struct mprpc__http_kv {
  const char *name;
  const char *value;
} mprpc__http_kv_t;

typedef struct mprpc__http_resp {
  int status;               /* 100-599 */
  const char *content_type; /* NULL: no Content-Type line */
  const void *body;
  size_t body_len;
  const mprpc__http_kv_t *headers; /* extra header lines, may be NULL */
  size_t nheaders;
  bool keep_alive; /* Connection: keep-alive, else close */
  bool head;       /* answering HEAD: headers (and Content-Length) only */
} mprpc__http_resp_t;

/* Appends the whole response to out: status line, Content-Type,
 * Content-Length, Connection, the extra headers, a blank line, the body.
 * 1xx, 204 and 304 get neither Content-Length nor body. 0; MPRPC_EINVAL (a
 * status outside 100-599, or CR/LF in a header or content type, which would
 * split the response; nothing is appended); MPRPC_ENOMEM (out->err). */
int mprpc__http_write_response(mprpc__textbuf_t *out, const mprpc__http_resp_t *resp);

/* The response owed after feed failed: hc->status with a plain-text body of
 * the reason, Connection: close. MPRPC_EINVAL if no status is owed. */
int mprpc__http_write_error(mprpc__textbuf_t *out, const mprpc__http_conn_t *hc);

#endif
