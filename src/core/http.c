/*
 * See http.h. The one file that knows node's http_parser.
 *
 * How the pieces fit:
 * - Every data callback appends what it is given to one fixed block, `head`,
 *   sized max_head at init. What is stored (URL, names, values, one NUL
 *   each) is never more than the request line and headers on the wire
 *   (each NUL takes the place of a ' ', ':' or CR), and feed never lets the
 *   head pass max_head bytes on the wire, so the block never grows and its
 *   pointers stay put. The limit is enforced by handing the parser at most
 *   the bytes the head may still use: headers still incomplete at the limit
 *   are a 431.
 * - The parser is paused in on_headers_complete (the limits of the body are
 *   decided there, before any body byte is read) and in
 *   on_message_complete, so feed returns exactly at the end of one request
 *   and a pipelined request behind it stays in the caller's bytes.
 * - Callbacks report our own failures through fail(), which records the
 *   status and reason and makes the callback return nonzero; http_parser's
 *   own errors are translated into a 400 with its errno name and text.
 *   Only the notify callbacks (headers complete, chunk header, message
 *   complete) may refuse a request: they run at a fixed byte of the stream,
 *   while a data callback runs wherever the caller's bytes happen to end,
 *   so a refusal there would make the outcome depend on the split (the
 *   fuzzer found this: one header too many seen early as a 431, or as the
 *   400 of a bad byte after it when fed at once). Too many header fields
 *   are therefore counted while reading and refused at the end of the head.
 */
#include "http.h"

#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"

enum { ST_IDLE, ST_REQUEST, ST_ERROR, ST_CLOSED };
enum { PHASE_HEAD, PHASE_BODY };
/* PIECE_SKIP_*: a header past max_headers, read but not kept. */
enum { PIECE_NONE, PIECE_URL, PIECE_FIELD, PIECE_VALUE, PIECE_SKIP_FIELD, PIECE_SKIP_VALUE };

/* The strings a request may hold that are not in its storage. */
static const char empty_str[] = "";
static const char root_path[] = "/";

/* A body that grew past this is given back between requests. */
#define BODY_KEEP (64u * 1024)

struct mprpc__http_impl {
  http_parser parser;
  mprpc__http_conn_t *hc;
  mprpc__http_limits_t lim;
  int phase;
  int piece;        /* what the last data callback appended */
  int complete;     /* on_message_complete ran */
  int skipped_headers; /* more than max_headers fields came */
  size_t head_wire; /* wire bytes of this request's head so far */
  size_t body_wire; /* wire bytes after the head: data, chunk framing, trailers */

  char *head; /* URL, header names and values, NUL after each */
  size_t head_len, head_cap;
  size_t url_off, url_len;
  mprpc__http_header_t *headers;
  size_t nheaders;
  mprpc__http_str_t path, query;

  uint8_t *body;
  size_t body_len, body_cap;
};

/* ---- errors ------------------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static int fail(mprpc__http_conn_t *hc, int err, int status,
                                                      const char *fmt, ...) {
  if (hc->err)
    return -1; /* keep the first reason */
  hc->err = err;
  hc->status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(hc->reason, sizeof hc->reason, fmt, ap);
  va_end(ap);
  hc->state = ST_ERROR;
  return -1;
}

static mprpc__http_impl_t *impl_of(http_parser *p) { return p->data; }

/* ---- head storage ------------------------------------------------------------- */

static int head_put(mprpc__http_impl_t *im, const char *at, size_t n) {
  /* Cannot happen while the storage argument above holds; kept so that a
   * mistake there is a 431, not an overflow. */
  if (n >= im->head_cap - im->head_len)
    return fail(im->hc, MPRPC_ETOOBIG, 431, "request head exceeds its storage");
  memcpy(im->head + im->head_len, at, n);
  im->head_len += n;
  return 0;
}

/* Ends the string the last data callback was appending with a NUL. */
static int end_piece(mprpc__http_impl_t *im) {
  int piece = im->piece;
  im->piece = PIECE_NONE;
  if (piece == PIECE_NONE || piece == PIECE_SKIP_FIELD || piece == PIECE_SKIP_VALUE)
    return 0;
  if (im->head_len >= im->head_cap)
    return fail(im->hc, MPRPC_ETOOBIG, 431, "request head exceeds its storage");
  im->head[im->head_len++] = '\0';
  return 0;
}

/* ---- http_parser callbacks ---------------------------------------------------- */

static int on_url(http_parser *p, const char *at, size_t n) {
  mprpc__http_impl_t *im = impl_of(p);
  if (im->piece != PIECE_URL) {
    im->piece = PIECE_URL;
    im->url_off = im->head_len;
  }
  im->url_len += n;
  return head_put(im, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  mprpc__http_impl_t *im = impl_of(p);
  if (im->phase == PHASE_BODY || im->piece == PIECE_SKIP_FIELD)
    return 0; /* a chunked body's trailer, or a header past the limit */
  if (im->piece != PIECE_FIELD) {
    if (end_piece(im))
      return -1;
    if (im->nheaders == im->lim.max_headers) {
      im->skipped_headers = 1; /* refused in on_headers_complete */
      im->piece = PIECE_SKIP_FIELD;
      return 0;
    }
    mprpc__http_header_t *h = &im->headers[im->nheaders++];
    h->name = (mprpc__http_str_t){im->head + im->head_len, 0};
    h->value = (mprpc__http_str_t){empty_str, 0};
    im->piece = PIECE_FIELD;
  }
  im->headers[im->nheaders - 1].name.len += n;
  return head_put(im, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  mprpc__http_impl_t *im = impl_of(p);
  if (im->phase == PHASE_BODY || im->nheaders == 0)
    return 0; /* (http_parser never sends a value first; be safe anyway) */
  if (im->piece == PIECE_SKIP_FIELD || im->piece == PIECE_SKIP_VALUE) {
    im->piece = PIECE_SKIP_VALUE;
    return 0;
  }
  mprpc__http_header_t *h = &im->headers[im->nheaders - 1];
  if (im->piece != PIECE_VALUE) {
    if (end_piece(im))
      return -1;
    h->value = (mprpc__http_str_t){im->head + im->head_len, 0};
    im->piece = PIECE_VALUE;
  }
  h->value.len += n;
  return head_put(im, at, n);
}

/* Splits the stored URL into a decoded path and the raw query, in place:
 * decoding only shrinks, and the NULs written land on the '?' / '#' that
 * end each part (or on the URL's own NUL). */
static int split_url(mprpc__http_impl_t *im) {
  char *url = im->head + im->url_off;
  struct http_parser_url u;
  http_parser_url_init(&u);
  if (im->url_len == 0 || http_parser_parse_url(url, im->url_len, im->parser.method == HTTP_CONNECT, &u))
    return fail(im->hc, MPRPC_EHTTP, 400, "bad request target");
  if (u.field_set & (1u << UF_QUERY)) {
    char *q = url + u.field_data[UF_QUERY].off;
    size_t qn = u.field_data[UF_QUERY].len;
    q[qn] = '\0';
    im->query = (mprpc__http_str_t){q, qn};
  } else {
    im->query = (mprpc__http_str_t){empty_str, 0};
  }
  if (u.field_set & (1u << UF_PATH)) {
    char *s = url + u.field_data[UF_PATH].off;
    size_t n = mprpc__http_url_decode(s, u.field_data[UF_PATH].len, s, false);
    s[n] = '\0';
    im->path = (mprpc__http_str_t){s, n};
  } else {
    im->path = (mprpc__http_str_t){root_path, 1};
  }
  return 0;
}

static int on_headers_complete(http_parser *p) {
  mprpc__http_impl_t *im = impl_of(p);
  if (end_piece(im))
    return -1;
  if (im->skipped_headers)
    return fail(im->hc, MPRPC_ETOOBIG, 431, "more than %zu header fields", im->lim.max_headers);
  if (split_url(im))
    return -1;
  /* Debian's libhttp_parser is built with HTTP_PARSER_STRICT=0 and lets
   * HTTP/0.9 and 2.x request lines through: the console speaks 1.0/1.1. */
  if (p->http_major != 1 || p->http_minor > 1)
    return fail(im->hc, MPRPC_EHTTP, 400, "unsupported HTTP version %u.%u", p->http_major,
                p->http_minor);
  size_t max = im->lim.max_body;
  if (!(p->flags & F_CHUNKED) && p->content_length != UINT64_MAX && p->content_length > 0) {
    if (p->content_length > max)
      return fail(im->hc, MPRPC_ETOOBIG, 413, "body of %llu bytes exceeds the limit of %zu",
                  (unsigned long long)p->content_length, max);
    size_t want = (size_t)p->content_length;
    if (want > im->body_cap) {
      uint8_t *b = realloc(im->body, want);
      if (!b)
        return fail(im->hc, MPRPC_ENOMEM, 500, "no memory for a %zu-byte body", want);
      im->body = b;
      im->body_cap = want;
    }
  }
  im->phase = PHASE_BODY;
  http_parser_pause(p, 1);
  return 0;
}

static int on_chunk_header(http_parser *p) {
  mprpc__http_impl_t *im = impl_of(p);
  if (p->content_length > im->lim.max_body - im->body_len)
    return fail(im->hc, MPRPC_ETOOBIG, 413, "chunked body exceeds the limit of %zu",
                im->lim.max_body);
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  mprpc__http_impl_t *im = impl_of(p);
  size_t max = im->lim.max_body;
  if (n > max - im->body_len)
    return fail(im->hc, MPRPC_ETOOBIG, 413, "body exceeds the limit of %zu", max);
  if (n > im->body_cap - im->body_len) {
    size_t cap = im->body_cap < 4096 ? 4096 : im->body_cap;
    while (cap < im->body_len + n)
      cap *= 2;
    if (cap > max)
      cap = max;
    uint8_t *b = realloc(im->body, cap);
    if (!b)
      return fail(im->hc, MPRPC_ENOMEM, 500, "no memory for the body");
    im->body = b;
    im->body_cap = cap;
  }
  memcpy(im->body + im->body_len, at, n);
  im->body_len += n;
  return 0;
}

static mprpc__http_method_t method_of(unsigned m) {
  switch (m) {
  case HTTP_GET:
    return MPRPC__HTTP_GET;
  case HTTP_HEAD:
    return MPRPC__HTTP_HEAD;
  case HTTP_POST:
    return MPRPC__HTTP_POST;
  case HTTP_PUT:
    return MPRPC__HTTP_PUT;
  case HTTP_DELETE:
    return MPRPC__HTTP_DELETE;
  case HTTP_OPTIONS:
    return MPRPC__HTTP_OPTIONS;
  case HTTP_PATCH:
    return MPRPC__HTTP_PATCH;
  default:
    return MPRPC__HTTP_OTHER;
  }
}

static int on_message_complete(http_parser *p) {
  mprpc__http_impl_t *im = impl_of(p);
  mprpc__http_req_t *r = &im->hc->req;
  r->method = method_of(p->method);
  r->method_name = http_method_str((enum http_method)p->method);
  r->path = im->path;
  r->query = im->query;
  r->version_major = p->http_major;
  r->version_minor = p->http_minor;
  /* After an Upgrade (or CONNECT) the bytes that follow are another
   * protocol, which the console does not speak: answer, then close. */
  r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
  r->chunked = (p->flags & F_CHUNKED) != 0;
  r->headers = im->headers;
  r->nheaders = im->nheaders;
  r->body = im->body_len ? im->body : NULL;
  r->body_len = im->body_len;
  im->complete = 1;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

/* ---- connection ------------------------------------------------------------ */

static void reset_request(mprpc__http_impl_t *im) {
  im->phase = PHASE_HEAD;
  im->piece = PIECE_NONE;
  im->complete = 0;
  im->skipped_headers = 0;
  im->head_wire = im->body_wire = 0;
  im->head_len = im->url_off = im->url_len = 0;
  im->nheaders = 0;
  im->path = im->query = (mprpc__http_str_t){empty_str, 0};
  im->body_len = 0;
  if (im->body_cap > BODY_KEEP) {
    free(im->body);
    im->body = NULL;
    im->body_cap = 0;
  }
  memset(&im->hc->req, 0, sizeof im->hc->req);
}

int mprpc__http_conn_init(mprpc__http_conn_t *hc, const mprpc__http_limits_t *limits) {
  memset(hc, 0, sizeof *hc);
  mprpc__http_limits_t lim = limits ? *limits : (mprpc__http_limits_t){0};
  if (!lim.max_head)
    lim.max_head = MPRPC__HTTP_DEFAULT_MAX_HEAD;
  if (!lim.max_body)
    lim.max_body = MPRPC__HTTP_DEFAULT_MAX_BODY;
  if (!lim.max_headers)
    lim.max_headers = MPRPC__HTTP_DEFAULT_MAX_HEADERS;
  if (lim.max_head > SIZE_MAX / 4 || lim.max_body > SIZE_MAX / 4 ||
      lim.max_headers > SIZE_MAX / sizeof(mprpc__http_header_t))
    return MPRPC_EINVAL;

  mprpc__http_impl_t *im = calloc(1, sizeof *im);
  if (!im)
    goto fail;
  im->hc = hc;
  im->lim = lim;
  im->head_cap = lim.max_head + 1;
  im->head = malloc(im->head_cap);
  im->headers = malloc(lim.max_headers * sizeof *im->headers);
  if (!im->head || !im->headers)
    goto fail;
  http_parser_init(&im->parser, HTTP_REQUEST);
  im->parser.data = im;
  hc->impl = im;
  reset_request(im);
  return 0;

fail:
  if (im) {
    free(im->head);
    free(im->headers);
    free(im);
  }
  return MPRPC_ENOMEM;
}

void mprpc__http_conn_free(mprpc__http_conn_t *hc) {
  mprpc__http_impl_t *im = hc->impl;
  if (im) {
    free(im->head);
    free(im->headers);
    free(im->body);
    free(im);
  }
  memset(hc, 0, sizeof *hc);
}

/* Chunk framing and trailers may add this much to a chunked body on the
 * wire; past it the request is a 413 even if its data is within max_body. */
static size_t body_wire_limit(const mprpc__http_limits_t *lim) {
  return 2 * lim->max_body + lim->max_head;
}

int mprpc__http_feed(mprpc__http_conn_t *hc, const uint8_t *p, size_t len, size_t *consumed) {
  *consumed = 0;
  mprpc__http_impl_t *im = hc->impl;
  if (!im)
    return MPRPC_ESTATE;
  switch (hc->state) {
  case ST_ERROR:
    return hc->err;
  case ST_REQUEST:
    return MPRPC_ESTATE;
  case ST_CLOSED:
    return MPRPC_ECLOSED;
  default:
    break;
  }
  size_t off = 0;
  while (off < len) { /* never len 0: http_parser reads that as EOF */
    /* Hand the parser no more than the head (or body) may still use, so a
     * limit is hit at the same byte whatever the split. */
    size_t n = len - off;
    int phase = im->phase;
    size_t room = phase == PHASE_HEAD ? im->lim.max_head - im->head_wire
                                      : body_wire_limit(&im->lim) - im->body_wire;
    if (n > room)
      n = room;
    size_t got = http_parser_execute(&im->parser, &settings, (const char *)p + off, n);
    if (got > n)
      got = n;
    off += got;
    *consumed = off;
    if (phase == PHASE_HEAD)
      im->head_wire += got; /* the pause after the head stops right there */
    else
      im->body_wire += got;
    enum http_errno e = HTTP_PARSER_ERRNO(&im->parser);
    if (hc->err)
      return hc->err;
    if (e == HPE_PAUSED) {
      if (im->complete) {
        hc->state = ST_REQUEST;
        return MPRPC__HTTP_REQUEST;
      }
      http_parser_pause(&im->parser, 0); /* head done: on with the body */
      continue;
    }
    if (e != HPE_OK) {
      fail(hc, MPRPC_EHTTP, 400, "%s: %s", http_errno_name(e), http_errno_description(e));
      return hc->err;
    }
    if (im->phase == PHASE_HEAD && im->head_wire >= im->lim.max_head) {
      fail(hc, MPRPC_ETOOBIG, 431, "request line and headers exceed %zu bytes", im->lim.max_head);
      return hc->err;
    }
    if (im->phase == PHASE_BODY && im->body_wire >= body_wire_limit(&im->lim)) {
      fail(hc, MPRPC_ETOOBIG, 413, "chunked body exceeds %zu bytes on the wire",
           body_wire_limit(&im->lim));
      return hc->err;
    }
    if (got < n) { /* no error, no pause, bytes left: http_parser never does this */
      fail(hc, MPRPC_EHTTP, 400, "parser stopped early");
      return hc->err;
    }
  }
  return 0;
}

const mprpc__http_req_t *mprpc__http_request(const mprpc__http_conn_t *hc) {
  return hc->state == ST_REQUEST ? &hc->req : NULL;
}

void mprpc__http_next(mprpc__http_conn_t *hc) {
  mprpc__http_impl_t *im = hc->impl;
  if (!im || hc->state != ST_REQUEST)
    return;
  int keep = hc->req.keep_alive;
  reset_request(im);
  if (!keep) {
    hc->state = ST_CLOSED;
    return;
  }
  http_parser_pause(&im->parser, 0);
  hc->state = ST_IDLE;
}

static bool str_owned(const mprpc__http_impl_t *im, mprpc__http_str_t s) {
  if (s.ptr == empty_str || s.ptr == root_path)
    return s.len == strlen(s.ptr);
  uintptr_t p = (uintptr_t)s.ptr, b = (uintptr_t)im->head;
  return p >= b && s.len < im->head_cap && p - b < im->head_cap - s.len && s.ptr[s.len] == '\0';
}

bool mprpc__http_req_in_storage(const mprpc__http_conn_t *hc) {
  const mprpc__http_impl_t *im = hc->impl;
  const mprpc__http_req_t *r = mprpc__http_request(hc);
  if (!im || !r)
    return false;
  if (!str_owned(im, r->path) || !str_owned(im, r->query) || r->headers != im->headers ||
      r->nheaders > im->lim.max_headers || r->body_len > im->lim.max_body)
    return false;
  for (size_t i = 0; i < r->nheaders; i++)
    if (!str_owned(im, r->headers[i].name) || !str_owned(im, r->headers[i].value))
      return false;
  if (r->body_len && (r->body != im->body || r->body_len > im->body_cap || im->body_len != r->body_len))
    return false;
  return true;
}

/* ---- request helpers ---------------------------------------------------------- */

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static bool ieq(const char *a, size_t an, const char *b) {
  size_t i = 0;
  for (; i < an && b[i]; i++)
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
      return false;
  return i == an && b[i] == '\0';
}

const mprpc__http_str_t *mprpc__http_header(const mprpc__http_req_t *req, const char *name) {
  for (size_t i = 0; i < req->nheaders; i++)
    if (ieq(req->headers[i].name.ptr, req->headers[i].name.len, name))
      return &req->headers[i].value;
  return NULL;
}

static int unhex(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = lower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The byte that s[*i..n) decodes to first; advances *i past it. */
static unsigned char decode_at(const char *s, size_t n, size_t *i, bool plus) {
  unsigned char c = (unsigned char)s[*i];
  if (c == '%' && n - *i >= 3) {
    int h = unhex((unsigned char)s[*i + 1]), l = unhex((unsigned char)s[*i + 2]);
    if (h >= 0 && l >= 0) {
      *i += 3;
      return (unsigned char)(h * 16 + l);
    }
  }
  *i += 1;
  return plus && c == '+' ? ' ' : c;
}

size_t mprpc__http_url_decode(const char *in, size_t n, char *out, bool plus) {
  size_t i = 0, o = 0;
  while (i < n)
    out[o++] = (char)decode_at(in, n, &i, plus); /* o <= i: safe in place */
  return o;
}

static bool key_is(const char *k, size_t kn, const char *name) {
  size_t i = 0, j = 0;
  while (i < kn) {
    if (name[j] == '\0' || decode_at(k, kn, &i, true) != (unsigned char)name[j])
      return false;
    j++;
  }
  return name[j] == '\0';
}

int mprpc__http_query_param(const mprpc__http_req_t *req, const char *name, char *out, size_t cap,
                            size_t *len) {
  const char *q = req->query.ptr;
  size_t qn = q ? req->query.len : 0;
  for (size_t at = 0; at <= qn && qn;) {
    const char *amp = memchr(q + at, '&', qn - at);
    size_t end = amp ? (size_t)(amp - q) : qn;
    const char *pair = q + at;
    size_t pn = end - at;
    const char *eq = memchr(pair, '=', pn);
    size_t kn = eq ? (size_t)(eq - pair) : pn;
    if (key_is(pair, kn, name)) {
      const char *v = eq ? eq + 1 : pair + pn;
      size_t vn = (size_t)(pair + pn - v), i = 0, o = 0;
      while (i < vn) {
        unsigned char c = decode_at(v, vn, &i, true);
        if (o + 1 < cap)
          out[o] = (char)c;
        o++;
      }
      if (cap)
        out[o < cap ? o : cap - 1] = '\0';
      if (len)
        *len = o;
      return o < cap ? 0 : MPRPC_ERANGE;
    }
    at = end + 1;
  }
  return MPRPC_ENOTFOUND;
}

/* ---- content negotiation ------------------------------------------------------ */

bool mprpc__http_accepts_html(const mprpc__http_req_t *req) {
  const mprpc__http_str_t *a = mprpc__http_header(req, "Accept");
  static const char want[] = "text/html";
  size_t wn = sizeof want - 1;
  if (!a || a->len < wn)
    return false;
  for (size_t i = 0; i + wn <= a->len; i++) {
    size_t j = 0;
    while (j < wn && lower((unsigned char)a->ptr[i + j]) == want[j])
      j++;
    if (j == wn)
      return true;
  }
  return false;
}

mprpc__http_format_t mprpc__http_negotiate(const mprpc__http_req_t *req) {
  char f[8];
  if (mprpc__http_query_param(req, "format", f, sizeof f, NULL) == 0) {
    if (ieq(f, strlen(f), "json"))
      return MPRPC__HTTP_FMT_JSON;
    if (ieq(f, strlen(f), "html"))
      return MPRPC__HTTP_FMT_HTML;
    if (ieq(f, strlen(f), "text"))
      return MPRPC__HTTP_FMT_TEXT;
  }
  return mprpc__http_accepts_html(req) ? MPRPC__HTTP_FMT_HTML : MPRPC__HTTP_FMT_TEXT;
}

const char *mprpc__http_format_content_type(mprpc__http_format_t fmt) {
  switch (fmt) {
  case MPRPC__HTTP_FMT_HTML:
    return "text/html; charset=utf-8";
  case MPRPC__HTTP_FMT_JSON:
    return "application/json";
  case MPRPC__HTTP_FMT_TEXT:
    break;
  }
  return "text/plain; charset=utf-8";
}

/* ---- responses ---------------------------------------------------------------- */

static const struct {
  int code;
  const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {411, "Length Required"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *mprpc__http_status_reason(int status) {
  for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
    if (reasons[i].code == status)
      return reasons[i].reason;
  return "Unknown";
}

/* A header name: an RFC 9110 token. */
static bool is_token(const char *s) {
  if (!s || !*s)
    return false;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c <= 32 || c >= 127 || strchr("\"(),/:;<=>?@[\\]{}", c))
      return false;
  }
  return true;
}

/* A header value or content type: no CR, LF (response splitting) or other
 * control characters but tab. */
static bool is_field_value(const char *s) {
  if (!s)
    return false;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c < 32 && c != '\t') || c == 127)
      return false;
  }
  return true;
}

int mprpc__http_write_response(mprpc__textbuf_t *out, const mprpc__http_resp_t *r) {
  if (r->status < 100 || r->status > 599)
    return MPRPC_EINVAL;
  if (r->content_type && !is_field_value(r->content_type))
    return MPRPC_EINVAL;
  for (size_t i = 0; i < r->nheaders; i++)
    if (!is_token(r->headers[i].name) || !is_field_value(r->headers[i].value))
      return MPRPC_EINVAL;
  /* RFC 9110 8.6 / 15.3.5: no Content-Length (and never a body) on these. */
  bool bodyless = r->status < 200 || r->status == 204 || r->status == 304;
  mprpc__textbuf_printf(out, "HTTP/1.1 %d %s\r\n", r->status, mprpc__http_status_reason(r->status));
  if (r->content_type)
    mprpc__textbuf_printf(out, "Content-Type: %s\r\n", r->content_type);
  if (!bodyless)
    mprpc__textbuf_printf(out, "Content-Length: %zu\r\n", r->body_len);
  mprpc__textbuf_puts(out, r->keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
  for (size_t i = 0; i < r->nheaders; i++)
    mprpc__textbuf_printf(out, "%s: %s\r\n", r->headers[i].name, r->headers[i].value);
  mprpc__textbuf_puts(out, "\r\n");
  if (!bodyless && !r->head && r->body_len)
    mprpc__textbuf_append(out, r->body, r->body_len);
  return out->err;
}

int mprpc__http_write_error(mprpc__textbuf_t *out, const mprpc__http_conn_t *hc) {
  if (hc->status < 400 || hc->status > 599)
    return MPRPC_EINVAL;
  char body[sizeof hc->reason + 64];
  int n = snprintf(body, sizeof body, "%d %s: %s\n", hc->status,
                   mprpc__http_status_reason(hc->status), hc->reason);
  if (n < 0)
    return MPRPC_EINVAL;
  size_t bn = (size_t)n < sizeof body ? (size_t)n : sizeof body - 1;
  return mprpc__http_write_response(out, &(mprpc__http_resp_t){
                                             .status = hc->status,
                                             .content_type = "text/plain; charset=utf-8",
                                             .body = body,
                                             .body_len = bn,
                                             .keep_alive = false,
                                         });
}
