/* The console's HTTP layer (core/http.h): the incremental request parser
 * under every split, pipelining, keep-alive, the head and body limits,
 * chunked bodies, bad input, query and header helpers, content negotiation
 * and the response writer. Input is fed from the end of a page followed by
 * a PROT_NONE page, so any read past what was handed in faults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/http.h"
#include "core/textbuf.h"
#include "mprpc/errors.h"

/* ---- helpers -------------------------------------------------------------- */

typedef struct guarded {
  uint8_t *map;
  size_t maplen, room;
} guarded_t;

/* room bytes of writable memory right before a PROT_NONE page. */
static void guard_init(guarded_t *g, size_t room) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  size_t pages = room ? (room + pg - 1) / pg : 1;
  g->maplen = (pages + 1) * pg;
  g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(g->map != MAP_FAILED);
  assert_int_equal(mprotect(g->map + pages * pg, pg, PROT_NONE), 0);
  g->room = pages * pg;
}

/* Copies n bytes so that they end at the guard page. */
static const uint8_t *guard_put(guarded_t *g, const void *src, size_t n) {
  assert_true(n <= g->room);
  uint8_t *p = g->map + g->room - n;
  if (n)
    memcpy(p, src, n);
  return p;
}

static void guard_free(guarded_t *g) { munmap(g->map, g->maplen); }

static void log_str(mprpc__textbuf_t *log, mprpc__http_str_t s) {
  assert_non_null(s.ptr);
  assert_int_equal(s.ptr[s.len], '\0'); /* every string is NUL-terminated */
  mprpc__textbuf_json(log, s.ptr, s.len);
}

static void log_req(mprpc__textbuf_t *log, const mprpc__http_req_t *r) {
  mprpc__textbuf_printf(log, "%s ", r->method_name);
  log_str(log, r->path);
  mprpc__textbuf_puts(log, " ?");
  log_str(log, r->query);
  mprpc__textbuf_printf(log, " HTTP/%d.%d keep=%d chunked=%d\n", r->version_major,
                        r->version_minor, r->keep_alive, r->chunked);
  for (size_t i = 0; i < r->nheaders; i++) {
    mprpc__textbuf_puts(log, "  ");
    log_str(log, r->headers[i].name);
    mprpc__textbuf_puts(log, ": ");
    log_str(log, r->headers[i].value);
    mprpc__textbuf_puts(log, "\n");
  }
  assert_true((r->body == NULL) == (r->body_len == 0));
  mprpc__textbuf_printf(log, "  body[%zu] ", r->body_len);
  mprpc__textbuf_json(log, (const char *)r->body, r->body_len);
  mprpc__textbuf_puts(log, "\n");
}

/* Feeds in[0..n) the way a connection would, in pieces of `chunk` bytes
 * (0: all at once), each piece at the end of a guarded page; logs every
 * request and how it ended. Returns the last feed result. */
static int drive(const void *in, size_t n, size_t chunk, const mprpc__http_limits_t *lim,
                 mprpc__textbuf_t *log) {
  mprpc__http_conn_t hc;
  assert_int_equal(mprpc__http_conn_init(&hc, lim), 0);
  guarded_t g;
  guard_init(&g, chunk ? chunk : n);
  int rc = 0;
  for (size_t at = 0; at < n && rc >= 0;) {
    size_t len = chunk && chunk < n - at ? chunk : n - at;
    const uint8_t *p = guard_put(&g, (const uint8_t *)in + at, len);
    at += len;
    while (len > 0) {
      size_t used = 12345;
      rc = mprpc__http_feed(&hc, p, len, &used);
      assert_true(used <= len);
      p += used;
      len -= used;
      if (rc == MPRPC__HTTP_REQUEST) {
        const mprpc__http_req_t *r = mprpc__http_request(&hc);
        assert_non_null(r);
        assert_true(mprpc__http_req_in_storage(&hc));
        log_req(log, r);
        mprpc__http_next(&hc);
        assert_null(mprpc__http_request(&hc));
        continue;
      }
      if (rc < 0) {
        mprpc__textbuf_printf(log, "ERR %s %d %s\n", mprpc_err_name(rc), hc.status, hc.reason);
        size_t again;
        assert_int_equal(mprpc__http_feed(&hc, p, len, &again), rc); /* sticky */
        assert_int_equal(again, 0);
        break;
      }
      assert_int_equal(rc, 0);
      assert_int_equal(len, 0); /* "need more" took everything */
    }
  }
  if (rc == MPRPC__HTTP_REQUEST)
    rc = 0;
  if (rc >= 0)
    mprpc__textbuf_puts(log, "END\n");
  guard_free(&g);
  mprpc__http_conn_free(&hc);
  return rc;
}

/* The log of one-shot parsing; checks every split gives the same one. */
static char *drive_all_splits(const char *in, size_t n, const mprpc__http_limits_t *lim) {
  mprpc__textbuf_t want = MPRPC__TEXTBUF_INIT;
  drive(in, n, 0, lim, &want);
  static const size_t chunks[] = {1, 2, 3, 5, 7, 13, 64, 1000};
  for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
    mprpc__textbuf_t got = MPRPC__TEXTBUF_INIT;
    drive(in, n, chunks[i], lim, &got);
    if (strcmp(mprpc__textbuf_cstr(&got), mprpc__textbuf_cstr(&want)) != 0)
      fail_msg("chunk %zu:\n%s\nvs one shot:\n%s", chunks[i], mprpc__textbuf_cstr(&got),
               mprpc__textbuf_cstr(&want));
    mprpc__textbuf_free(&got);
  }
  /* and every two-piece split */
  for (size_t cut = 1; cut < n && n < 2000; cut++) {
    mprpc__textbuf_t got = MPRPC__TEXTBUF_INIT;
    mprpc__http_conn_t hc;
    assert_int_equal(mprpc__http_conn_init(&hc, lim), 0);
    const char *parts[2] = {in, in + cut};
    size_t lens[2] = {cut, n - cut};
    int rc = 0;
    for (int k = 0; k < 2 && rc >= 0; k++) {
      const uint8_t *p = (const uint8_t *)parts[k];
      size_t len = lens[k];
      while (len > 0) {
        size_t used;
        rc = mprpc__http_feed(&hc, p, len, &used);
        p += used, len -= used;
        if (rc == MPRPC__HTTP_REQUEST) {
          log_req(&got, mprpc__http_request(&hc));
          mprpc__http_next(&hc);
        } else {
          if (rc < 0)
            mprpc__textbuf_printf(&got, "ERR %s %d %s\n", mprpc_err_name(rc), hc.status, hc.reason);
          break;
        }
      }
    }
    if (rc >= 0)
      mprpc__textbuf_puts(&got, "END\n");
    mprpc__http_conn_free(&hc);
    if (strcmp(mprpc__textbuf_cstr(&got), mprpc__textbuf_cstr(&want)) != 0)
      fail_msg("cut at %zu:\n%s\nvs one shot:\n%s", cut, mprpc__textbuf_cstr(&got),
               mprpc__textbuf_cstr(&want));
    mprpc__textbuf_free(&got);
  }
  return mprpc__textbuf_take(&want, NULL);
}

#define S(lit) lit, sizeof(lit) - 1

static void expect_log(const char *in, size_t n, const char *want) {
  char *got = drive_all_splits(in, n, NULL);
  assert_string_equal(got, want);
  free(got);
}

/* One request fed at once; the caller frees with mprpc__http_conn_free. */
static const mprpc__http_req_t *parse1(mprpc__http_conn_t *hc, const char *in, size_t n) {
  assert_int_equal(mprpc__http_conn_init(hc, NULL), 0);
  size_t used;
  int rc = mprpc__http_feed(hc, (const uint8_t *)in, n, &used);
  if (rc != MPRPC__HTTP_REQUEST)
    fail_msg("feed: %d (%s)", rc, hc->reason);
  assert_int_equal(used, n);
  return mprpc__http_request(hc);
}

/* ---- parser ----------------------------------------------------------------- */

static void test_http_get_every_split(void **state) {
  (void)state;
  expect_log(S("GET /status?x=1 HTTP/1.1\r\nHost: a:8000\r\nAccept: */*\r\n\r\n"),
             "GET \"/status\" ?\"x=1\" HTTP/1.1 keep=1 chunked=0\n"
             "  \"Host\": \"a:8000\"\n"
             "  \"Accept\": \"*/*\"\n"
             "  body[0] \"\"\n"
             "END\n");
}

static void test_http_post_body_every_split(void **state) {
  (void)state;
  expect_log(S("POST /rpc/Echo HTTP/1.1\r\nContent-Type: application/json\r\n"
               "Content-Length: 13\r\n\r\n{\"msg\":\"hi\"}\n"),
             "POST \"/rpc/Echo\" ?\"\" HTTP/1.1 keep=1 chunked=0\n"
             "  \"Content-Type\": \"application/json\"\n"
             "  \"Content-Length\": \"13\"\n"
             "  body[13] \"{\\\"msg\\\":\\\"hi\\\"}\\n\"\n"
             "END\n");
}

static void test_http_pipelined_one_at_a_time(void **state) {
  (void)state;
  static const char in[] = "GET /a HTTP/1.1\r\n\r\n"
                           "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                           "GET /c HTTP/1.1\r\nConnection: close\r\n\r\n"
                           "GET /d HTTP/1.1\r\n\r\n";
  mprpc__http_conn_t hc;
  assert_int_equal(mprpc__http_conn_init(&hc, NULL), 0);
  const uint8_t *p = (const uint8_t *)in;
  size_t len = sizeof in - 1, used;
  assert_int_equal(mprpc__http_feed(&hc, p, len, &used), MPRPC__HTTP_REQUEST);
  assert_int_equal(used, strlen("GET /a HTTP/1.1\r\n\r\n"));
  assert_string_equal(mprpc__http_request(&hc)->path.ptr, "/a");
  /* the next request waits until this one is done */
  size_t u2;
  assert_int_equal(mprpc__http_feed(&hc, p + used, len - used, &u2), MPRPC_ESTATE);
  assert_int_equal(u2, 0);
  mprpc__http_next(&hc);
  p += used, len -= used;
  assert_int_equal(mprpc__http_feed(&hc, p, len, &used), MPRPC__HTTP_REQUEST);
  const mprpc__http_req_t *r = mprpc__http_request(&hc);
  assert_int_equal(r->method, MPRPC__HTTP_POST);
  assert_int_equal(r->body_len, 3);
  assert_memory_equal(r->body, "xyz", 3);
  mprpc__http_next(&hc);
  p += used, len -= used;
  assert_int_equal(mprpc__http_feed(&hc, p, len, &used), MPRPC__HTTP_REQUEST);
  assert_string_equal(mprpc__http_request(&hc)->path.ptr, "/c");
  assert_false(mprpc__http_request(&hc)->keep_alive);
  mprpc__http_next(&hc);
  p += used, len -= used;
  /* after Connection: close nothing more is parsed, and no response is owed */
  assert_int_equal(mprpc__http_feed(&hc, p, len, &used), MPRPC_ECLOSED);
  assert_int_equal(used, 0);
  assert_int_equal(mprpc__http_error_status(&hc), 0);
  mprpc__http_conn_free(&hc);

  char *log = drive_all_splits(in, sizeof in - 1, NULL);
  assert_non_null(strstr(log, "ERR ECLOSED 0"));
  free(log);
}

static int keep_alive_of(const char *in) {
  mprpc__http_conn_t hc;
  int keep = parse1(&hc, in, strlen(in))->keep_alive;
  mprpc__http_conn_free(&hc);
  return keep;
}

static void test_http_keep_alive_rules(void **state) {
  (void)state;
  assert_true(keep_alive_of("GET / HTTP/1.1\r\n\r\n"));
  assert_false(keep_alive_of("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
  assert_false(keep_alive_of("GET / HTTP/1.1\r\nconnection: Close\r\n\r\n"));
  assert_false(keep_alive_of("GET / HTTP/1.0\r\n\r\n"));
  assert_true(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  assert_true(keep_alive_of("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
  /* an upgrade is answered, then the connection closes */
  assert_false(keep_alive_of("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"));
}

/* "GET / HTTP/1.1\r\n" + "X-Pad: ..." + "\r\n\r\n", exactly total bytes. */
static char *head_of_size(size_t total) {
  static const char start[] = "GET / HTTP/1.1\r\nX-Pad: ";
  size_t fixed = sizeof start - 1 + 4;
  assert_true(total > fixed);
  char *s = malloc(total + 1);
  assert_non_null(s);
  memcpy(s, start, sizeof start - 1);
  memset(s + sizeof start - 1, 'a', total - fixed);
  memcpy(s + total - 4, "\r\n\r\n", 5);
  assert_int_equal(strlen(s), total);
  return s;
}

static void test_http_head_limit_exact(void **state) {
  (void)state;
  size_t lim = MPRPC__HTTP_DEFAULT_MAX_HEAD;
  char *ok = head_of_size(lim);
  mprpc__textbuf_t log = MPRPC__TEXTBUF_INIT;
  for (size_t chunk = 0; chunk <= 1; chunk++) {
    mprpc__textbuf_reset(&log);
    assert_int_equal(drive(ok, lim, chunk, NULL, &log), 0);
    assert_non_null(strstr(mprpc__textbuf_cstr(&log), "GET \"/\""));
    assert_non_null(strstr(mprpc__textbuf_cstr(&log), "END"));
  }
  char *over = head_of_size(lim + 1);
  for (size_t chunk = 0; chunk <= 1; chunk++) {
    mprpc__textbuf_reset(&log);
    assert_int_equal(drive(over, lim + 1, chunk, NULL, &log), MPRPC_ETOOBIG);
    assert_non_null(strstr(mprpc__textbuf_cstr(&log), "ERR ETOOBIG 431"));
  }
  /* 431 as soon as the limit is reached, without waiting for the rest */
  mprpc__http_conn_t hc;
  assert_int_equal(mprpc__http_conn_init(&hc, NULL), 0);
  size_t used;
  assert_int_equal(mprpc__http_feed(&hc, (const uint8_t *)over, lim, &used), MPRPC_ETOOBIG);
  assert_int_equal(mprpc__http_error_status(&hc), 431);
  assert_true(used <= lim);
  mprpc__http_conn_free(&hc);
  free(ok);
  free(over);

  /* a smaller configured limit, and too many header fields */
  mprpc__http_limits_t small = {.max_head = 64, .max_headers = 2};
  mprpc__textbuf_reset(&log);
  assert_int_equal(drive(S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n"), 0, &small, &log), 0);
  mprpc__textbuf_reset(&log);
  assert_int_equal(drive(S("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), 1, &small, &log),
                   MPRPC_ETOOBIG);
  assert_non_null(strstr(mprpc__textbuf_cstr(&log), "431 more than 2 header fields"));
  mprpc__textbuf_free(&log);
}

static void test_http_body_limit_before_body(void **state) {
  (void)state;
  size_t max = MPRPC__HTTP_DEFAULT_MAX_BODY;
  mprpc__textbuf_t req = MPRPC__TEXTBUF_INIT;
  mprpc__textbuf_printf(&req, "PUT /x HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", max);
  size_t head = req.len;
  mprpc__textbuf_reserve(&req, max);
  memset(req.data + req.len, 'b', max);
  req.len += max;
  mprpc__http_conn_t hc;
  const mprpc__http_req_t *r = parse1(&hc, req.data, req.len);
  assert_int_equal(r->body_len, max);
  assert_int_equal(r->body[max - 1], 'b');
  mprpc__http_conn_free(&hc);

  /* one byte more: 413 from the header alone, no body sent */
  mprpc__textbuf_reset(&req);
  mprpc__textbuf_printf(&req, "PUT /x HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", max + 1);
  assert_int_equal(mprpc__http_conn_init(&hc, NULL), 0);
  size_t used;
  assert_int_equal(mprpc__http_feed(&hc, (const uint8_t *)req.data, req.len, &used), MPRPC_ETOOBIG);
  assert_int_equal(mprpc__http_error_status(&hc), 413);
  assert_non_null(strstr(hc.reason, "1048577"));
  mprpc__textbuf_t out = MPRPC__TEXTBUF_INIT;
  assert_int_equal(mprpc__http_write_error(&out, &hc), 0);
  assert_true(strncmp(out.data, "HTTP/1.1 413 Payload Too Large\r\n", 32) == 0);
  assert_non_null(strstr(out.data, "Connection: close\r\n"));
  mprpc__textbuf_free(&out);
  mprpc__http_conn_free(&hc);
  (void)head;

  /* chunked: the chunk size line that would pass the limit is the 413 */
  mprpc__textbuf_t log = MPRPC__TEXTBUF_INIT;
  static const char chunked[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "8\r\n12345678\r\n9\r\n";
  mprpc__http_limits_t sixteen = {.max_body = 16};
  assert_int_equal(drive(S(chunked), 1, &sixteen, &log), MPRPC_ETOOBIG);
  assert_non_null(strstr(mprpc__textbuf_cstr(&log), "ERR ETOOBIG 413"));
  mprpc__textbuf_reset(&log);
  static const char chunked_ok[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   "8\r\n12345678\r\n8\r\nabcdefgh\r\n0\r\n\r\n";
  assert_int_equal(drive(S(chunked_ok), 1, &sixteen, &log), 0);
  assert_non_null(strstr(mprpc__textbuf_cstr(&log), "body[16]"));
  mprpc__textbuf_free(&log);

  /* framing counts too: 2 x max_body + max_head on the wire at most, at
   * the same byte whatever the split */
  mprpc__http_limits_t tiny = {.max_head = 64, .max_body = 16};
  mprpc__textbuf_t wire = MPRPC__TEXTBUF_INIT;
  mprpc__textbuf_puts(&wire, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 8; i++)
    mprpc__textbuf_puts(&wire, "2\r\nxx\r\n");
  mprpc__textbuf_puts(&wire, "0\r\n\r\n");
  char *got = drive_all_splits(wire.data, wire.len, &tiny);
  assert_non_null(strstr(got, "body[16]"));
  free(got);
  mprpc__textbuf_reset(&wire);
  mprpc__textbuf_puts(&wire, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 16; i++)
    mprpc__textbuf_puts(&wire, "1;e\r\nx\r\n");
  mprpc__textbuf_puts(&wire, "0\r\n\r\n");
  got = drive_all_splits(wire.data, wire.len, &tiny);
  assert_non_null(strstr(got, "ERR ETOOBIG 413 chunked body exceeds 96 bytes on the wire"));
  free(got);
  mprpc__textbuf_free(&wire);
  mprpc__textbuf_free(&req);
}

static void test_http_chunked_body(void **state) {
  (void)state;
  expect_log(S("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5;ext=1\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
               "GET /after HTTP/1.1\r\n\r\n"),
             "POST \"/c\" ?\"\" HTTP/1.1 keep=1 chunked=1\n"
             "  \"Transfer-Encoding\": \"chunked\"\n"
             "  body[12] \"hello, world\"\n"
             "GET \"/after\" ?\"\" HTTP/1.1 keep=1 chunked=0\n"
             "  body[0] \"\"\n"
             "END\n");
}

static void expect_400(const char *in, size_t n) {
  mprpc__textbuf_t log = MPRPC__TEXTBUF_INIT;
  int rc = drive(in, n, 0, NULL, &log);
  if (rc != MPRPC_EHTTP)
    fail_msg("%s -> %s", in, mprpc__textbuf_cstr(&log));
  assert_non_null(strstr(mprpc__textbuf_cstr(&log), "ERR EHTTP 400 "));
  mprpc__textbuf_free(&log);
  char *all = drive_all_splits(in, n, NULL);
  free(all);
}

static void test_http_garbage_is_400(void **state) {
  (void)state;
  expect_400(S("\x00\x01\x02\x03"));
  expect_400(S("PRPC\0\0\0\0"));
  expect_400(S("GET / HTTP/2.0\r\n\r\n"));
  expect_400(S("GET /\r\n\r\n")); /* HTTP/0.9 */
  expect_400(S("GET /a b HTTP/1.1\r\n\r\n"));
  expect_400(S("GET ? HTTP/1.1\r\n\r\n"));
  expect_400(S("GET / HTTP/1.1\r\nBad Header\r\n\r\n"));
  expect_400(S("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"));
  expect_400(S("POST / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n"));
  expect_400(S("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"));
  expect_400(S("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"));
  expect_400(S("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
  expect_400(S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
  expect_400(S("GET / HTTP/1.1\r\n\r\n\x16\x03\x01"));
  /* the reason names http_parser's error */
  mprpc__textbuf_t log = MPRPC__TEXTBUF_INIT;
  drive(S("GETT / HTTP/1.1\r\n\r\n"), 0, NULL, &log);
  assert_non_null(strstr(mprpc__textbuf_cstr(&log), "HPE_INVALID_METHOD"));
  mprpc__textbuf_free(&log);
}

static void test_http_guard_page_every_byte(void **state) {
  (void)state;
  /* each feed's last byte is the last readable byte: drive() puts every
   * piece at the end of a page, and the 1-byte split feeds each byte so */
  static const char in[] = "GET /%41?q=%4 HTTP/1.1\r\nAccept: text/html\r\n\r\n"
                           "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
  mprpc__textbuf_t a = MPRPC__TEXTBUF_INIT, b = MPRPC__TEXTBUF_INIT;
  assert_int_equal(drive(S(in), 0, NULL, &a), 0);
  assert_int_equal(drive(S(in), 1, NULL, &b), 0);
  assert_string_equal(mprpc__textbuf_cstr(&a), mprpc__textbuf_cstr(&b));
  assert_non_null(strstr(mprpc__textbuf_cstr(&a), "GET \"/A\" ?\"q=%4\""));
  /* every prefix is "need more" or a request, never an error */
  for (size_t n = 1; n < sizeof in - 1; n++) {
    mprpc__textbuf_reset(&a);
    assert_true(drive(in, n, 0, NULL, &a) >= 0);
  }
  mprpc__textbuf_free(&a);
  mprpc__textbuf_free(&b);
}

/* ---- request helpers ---------------------------------------------------------- */

static void test_http_query_decoding(void **state) {
  (void)state;
  static const char in[] = "GET /a%20b/c%2Fd+e?x=1&name=J%C3%B6rg+M&empty&eq=&plus=a%2Bb"
                           "&bad=%zz%4&n%61me2=v&x=2#frag HTTP/1.1\r\n\r\n";
  mprpc__http_conn_t hc;
  const mprpc__http_req_t *r = parse1(&hc, S(in));
  assert_string_equal(r->path.ptr, "/a b/c/d+e"); /* '+' is literal in a path */
  assert_int_equal(r->path.len, strlen("/a b/c/d+e"));
  assert_string_equal(r->query.ptr, "x=1&name=J%C3%B6rg+M&empty&eq=&plus=a%2Bb&bad=%zz%4&n%61me2=v&x=2");
  char v[64];
  size_t n;
  assert_int_equal(mprpc__http_query_param(r, "x", v, sizeof v, &n), 0);
  assert_string_equal(v, "1"); /* the first one */
  assert_int_equal(mprpc__http_query_param(r, "name", v, sizeof v, &n), 0);
  assert_string_equal(v, "J\xc3\xb6rg M");
  assert_int_equal(n, 7);
  assert_int_equal(mprpc__http_query_param(r, "empty", v, sizeof v, &n), 0);
  assert_string_equal(v, "");
  assert_int_equal(mprpc__http_query_param(r, "eq", v, sizeof v, &n), 0);
  assert_string_equal(v, "");
  assert_int_equal(mprpc__http_query_param(r, "plus", v, sizeof v, NULL), 0);
  assert_string_equal(v, "a+b");
  assert_int_equal(mprpc__http_query_param(r, "bad", v, sizeof v, NULL), 0);
  assert_string_equal(v, "%zz%4");
  assert_int_equal(mprpc__http_query_param(r, "name2", v, sizeof v, NULL), 0); /* key decoded */
  assert_string_equal(v, "v");
  assert_int_equal(mprpc__http_query_param(r, "nam", v, sizeof v, NULL), MPRPC_ENOTFOUND);
  assert_int_equal(mprpc__http_query_param(r, "frag", v, sizeof v, NULL), MPRPC_ENOTFOUND);
  /* too small: truncated, terminated, full length reported */
  assert_int_equal(mprpc__http_query_param(r, "name", v, 4, &n), MPRPC_ERANGE);
  assert_string_equal(v, "J\xc3\xb6");
  assert_int_equal(n, 7);
  assert_int_equal(mprpc__http_query_param(r, "name", v, 7, &n), MPRPC_ERANGE);
  assert_int_equal(mprpc__http_query_param(r, "name", v, 8, &n), 0);
  assert_int_equal(mprpc__http_query_param(r, "name", NULL, 0, &n), MPRPC_ERANGE);
  mprpc__http_conn_free(&hc);

  /* %00 decodes to a NUL inside the path: the length tells */
  r = parse1(&hc, S("GET /a%00b HTTP/1.1\r\n\r\n"));
  assert_int_equal(r->path.len, 4);
  assert_memory_equal(r->path.ptr, "/a\0b", 5);
  assert_string_equal(r->query.ptr, "");
  mprpc__http_conn_free(&hc);

  /* absolute form and no query */
  r = parse1(&hc, S("GET http://h:1/x/y HTTP/1.1\r\n\r\n"));
  assert_string_equal(r->path.ptr, "/x/y");
  mprpc__http_conn_free(&hc);

  char buf[16];
  assert_int_equal(mprpc__http_url_decode("a+%41%g1%", 9, buf, true), 7);
  assert_memory_equal(buf, "a A%g1%", 7);
}

static void test_http_headers_case_insensitive(void **state) {
  (void)state;
  mprpc__http_conn_t hc;
  const mprpc__http_req_t *r =
      parse1(&hc, S("GET /vars HTTP/1.1\r\naccept: application/xhtml+xml, TEXT/HTML;q=0.9\r\n"
                    "AUTHORIZATION: Basic eA==\r\ncontent-type: text/plain\r\nHOST: h\r\n"
                    "X-Empty:\r\nX-Multi: a\r\nx-multi: b\r\n\r\n"));
  assert_string_equal(mprpc__http_header(r, "Authorization")->ptr, "Basic eA==");
  assert_string_equal(mprpc__http_header(r, "Content-Type")->ptr, "text/plain");
  assert_string_equal(mprpc__http_header(r, "host")->ptr, "h");
  assert_string_equal(mprpc__http_header(r, "x-empty")->ptr, "");
  assert_string_equal(mprpc__http_header(r, "X-MULTI")->ptr, "a");
  assert_null(mprpc__http_header(r, "Content-Length"));
  assert_null(mprpc__http_header(r, "Hos"));
  assert_string_equal(r->headers[0].name.ptr, "accept"); /* case kept */
  assert_true(mprpc__http_accepts_html(r));
  assert_int_equal(mprpc__http_negotiate(r), MPRPC__HTTP_FMT_HTML);
  mprpc__http_conn_free(&hc);

  r = parse1(&hc, S("GET /vars?format=json HTTP/1.1\r\nAccept: text/html\r\n\r\n"));
  assert_int_equal(mprpc__http_negotiate(r), MPRPC__HTTP_FMT_JSON);
  assert_string_equal(mprpc__http_format_content_type(MPRPC__HTTP_FMT_JSON), "application/json");
  mprpc__http_conn_free(&hc);
  r = parse1(&hc, S("GET /vars?format=text HTTP/1.1\r\nAccept: text/html\r\n\r\n"));
  assert_int_equal(mprpc__http_negotiate(r), MPRPC__HTTP_FMT_TEXT);
  mprpc__http_conn_free(&hc);
  r = parse1(&hc, S("GET /vars HTTP/1.1\r\nAccept: */*\r\n\r\n"));
  assert_false(mprpc__http_accepts_html(r));
  assert_int_equal(mprpc__http_negotiate(r), MPRPC__HTTP_FMT_TEXT);
  mprpc__http_conn_free(&hc);
  r = parse1(&hc, S("DELETE / HTTP/1.1\r\n\r\n"));
  assert_int_equal(mprpc__http_negotiate(r), MPRPC__HTTP_FMT_TEXT);
  assert_int_equal(r->method, MPRPC__HTTP_DELETE);
  mprpc__http_conn_free(&hc);
  r = parse1(&hc, S("PROPFIND / HTTP/1.1\r\n\r\n"));
  assert_int_equal(r->method, MPRPC__HTTP_OTHER);
  assert_string_equal(r->method_name, "PROPFIND");
  mprpc__http_conn_free(&hc);
}

/* ---- responses ------------------------------------------------------------------ */

static void test_http_response_format(void **state) {
  (void)state;
  mprpc__textbuf_t out = MPRPC__TEXTBUF_INIT;
  mprpc__http_kv_t extra[] = {{"Cache-Control", "no-store"}, {"X-Mprpc", "1"}};
  assert_int_equal(mprpc__http_write_response(&out, &(mprpc__http_resp_t){
                                                        .status = 200,
                                                        .content_type = "text/plain",
                                                        .body = "hello\n",
                                                        .body_len = 6,
                                                        .headers = extra,
                                                        .nheaders = 2,
                                                        .keep_alive = true,
                                                    }),
                   0);
  assert_string_equal(out.data, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                "Content-Length: 6\r\nConnection: keep-alive\r\n"
                                "Cache-Control: no-store\r\nX-Mprpc: 1\r\n\r\nhello\n");
  /* HEAD: the same headers, no body */
  mprpc__textbuf_reset(&out);
  assert_int_equal(mprpc__http_write_response(&out, &(mprpc__http_resp_t){.status = 404,
                                                                          .content_type = "text/plain",
                                                                          .body = "nope",
                                                                          .body_len = 4,
                                                                          .head = true}),
                   0);
  assert_string_equal(out.data, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                                "Content-Length: 4\r\nConnection: close\r\n\r\n");
  /* 204: neither Content-Length nor body */
  mprpc__textbuf_reset(&out);
  assert_int_equal(mprpc__http_write_response(
                       &out, &(mprpc__http_resp_t){.status = 204, .body = "x", .body_len = 1}),
                   0);
  assert_string_equal(out.data, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
  /* response splitting is refused and nothing is written */
  mprpc__textbuf_reset(&out);
  mprpc__http_kv_t bad[] = {{"X-A", "1\r\nSet-Cookie: x"}};
  assert_int_equal(mprpc__http_write_response(
                       &out, &(mprpc__http_resp_t){.status = 200, .headers = bad, .nheaders = 1}),
                   MPRPC_EINVAL);
  mprpc__http_kv_t bad_name[] = {{"X A", "1"}};
  assert_int_equal(mprpc__http_write_response(
                       &out, &(mprpc__http_resp_t){.status = 200, .headers = bad_name, .nheaders = 1}),
                   MPRPC_EINVAL);
  assert_int_equal(mprpc__http_write_response(
                       &out, &(mprpc__http_resp_t){.status = 200, .content_type = "a\nb"}),
                   MPRPC_EINVAL);
  assert_int_equal(mprpc__http_write_response(&out, &(mprpc__http_resp_t){.status = 99}),
                   MPRPC_EINVAL);
  assert_int_equal(out.len, 0);

  static const struct {
    int code;
    const char *reason;
  } table[] = {{200, "OK"},
               {204, "No Content"},
               {400, "Bad Request"},
               {401, "Unauthorized"},
               {403, "Forbidden"},
               {404, "Not Found"},
               {405, "Method Not Allowed"},
               {413, "Payload Too Large"},
               {431, "Request Header Fields Too Large"},
               {500, "Internal Server Error"},
               {503, "Service Unavailable"},
               {299, "Unknown"}};
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    assert_string_equal(mprpc__http_status_reason(table[i].code), table[i].reason);

  /* the error response for a fresh connection: none owed */
  mprpc__http_conn_t hc;
  assert_int_equal(mprpc__http_conn_init(&hc, NULL), 0);
  assert_int_equal(mprpc__http_write_error(&out, &hc), MPRPC_EINVAL);
  size_t used;
  assert_int_equal(mprpc__http_feed(&hc, (const uint8_t *)"BREW / HTCPCP/1.0\r\n", 19, &used),
                   MPRPC_EHTTP);
  assert_int_equal(mprpc__http_write_error(&out, &hc), 0);
  assert_true(strncmp(out.data, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
  assert_non_null(strstr(out.data, "Connection: close\r\n"));
  assert_non_null(strstr(out.data, "\r\n\r\n400 Bad Request: HPE_"));
  mprpc__http_conn_free(&hc);
  mprpc__textbuf_free(&out);
}

static void test_http_misuse_is_an_error(void **state) {
  (void)state;
  mprpc__http_conn_t hc;
  assert_int_equal(mprpc__http_conn_init(&hc, NULL), 0);
  size_t used = 7;
  assert_int_equal(mprpc__http_feed(&hc, NULL, 0, &used), 0); /* nothing is not EOF */
  assert_int_equal(used, 0);
  assert_null(mprpc__http_request(&hc));
  mprpc__http_next(&hc); /* no request: nothing happens */
  assert_int_equal(mprpc__http_feed(&hc, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18, &used),
                   MPRPC__HTTP_REQUEST);
  mprpc__http_conn_free(&hc); /* with a request pending: no leak */
  mprpc__http_conn_free(&hc); /* twice is harmless */
  assert_int_equal(mprpc__http_feed(&hc, (const uint8_t *)"G", 1, &used), MPRPC_ESTATE);
  mprpc__http_limits_t huge = {.max_body = SIZE_MAX};
  assert_int_equal(mprpc__http_conn_init(&hc, &huge), MPRPC_EINVAL);
}

/* ---- the fuzz seeds ------------------------------------------------------------- */

/* fuzz/corpus/http/ is written by hand (readable HTTP); each seed's name
 * says what it is, checked here so a seed cannot silently stop meaning it.
 * Layout of fuzz/fuzz_http.c: byte 0 holds k (bits 0-3) and "small limits"
 * (bit 4), then k chunk sizes, then the stream. Paths are relative to the
 * repository root, where `make test` runs. */
static void test_http_fuzz_seeds_mean_what_they_say(void **state) {
  (void)state;
  static const struct {
    const char *name, *want;
    bool absent; /* want must not be in the log */
  } seeds[] = {
      {"get_bytewise", "GET \"/\" ?\"\" HTTP/1.1 keep=1"},
      {"get_query_split", "GET \"/status\" ?\"format=json&x=%41+b\""},
      {"pipelined_then_close", "GET \"/d\"", true}, /* after Connection: close */
      {"pipelined_then_close", "ERR ECLOSED 0"},
      {"chunked_post", "body[12] \"hello, world\""},
      {"http10_close", "HTTP/1.0 keep=0"},
      {"http10_keepalive_head", "HEAD \"/x\" ?\"\" HTTP/1.1 keep=1"},
      {"body_over_limit_small", "ERR ETOOBIG 413 body of 65 bytes"},
      {"chunked_over_limit_small", "ERR ETOOBIG 413 chunked body"},
      {"too_many_headers_small", "ERR ETOOBIG 431 more than 4"},
      {"head_over_16k", "ERR ETOOBIG 431 request line and headers exceed 16384"},
      {"garbage_tls", "ERR EHTTP 400 HPE_INVALID_METHOD"},
      {"garbage_baidu", "ERR EHTTP 400 HPE_INVALID_METHOD"},
      {"http09", "ERR EHTTP 400 unsupported HTTP version 0.9"},
      {"http20", "ERR EHTTP 400 unsupported HTTP version 2.0"},
      {"upgrade", "GET \"/ws\" ?\"\" HTTP/1.1 keep=0"},
      {"cl_and_chunked", "ERR EHTTP 400 HPE_UNEXPECTED_CONTENT_LENGTH"},
      {"nul_in_path", "GET \"/a\\u0000b\" ?\"%zz=1&q\""},
  };
  for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
    char path[128];
    snprintf(path, sizeof path, "fuzz/corpus/http/%s", seeds[i].name);
    FILE *f = fopen(path, "rb");
    if (!f)
      fail_msg("%s: missing (run from the repository root)", path);
    static uint8_t buf[32768];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(n >= 1 && n < sizeof buf);
    size_t k = buf[0] & 15u;
    assert_true(n >= 1 + k);
    mprpc__http_limits_t small = {.max_head = 256, .max_body = 64, .max_headers = 4};
    mprpc__textbuf_t log = MPRPC__TEXTBUF_INIT;
    drive(buf + 1 + k, n - 1 - k, 0, (buf[0] & 0x10) ? &small : NULL, &log);
    bool found = strstr(mprpc__textbuf_cstr(&log), seeds[i].want) != NULL;
    if (found == seeds[i].absent)
      fail_msg("%s: %s \"%s\" in:\n%s", seeds[i].name, found ? "unexpected" : "no", seeds[i].want,
               mprpc__textbuf_cstr(&log));
    mprpc__textbuf_free(&log);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_http_get_every_split),
      cmocka_unit_test(test_http_post_body_every_split),
      cmocka_unit_test(test_http_pipelined_one_at_a_time),
      cmocka_unit_test(test_http_keep_alive_rules),
      cmocka_unit_test(test_http_head_limit_exact),
      cmocka_unit_test(test_http_body_limit_before_body),
      cmocka_unit_test(test_http_chunked_body),
      cmocka_unit_test(test_http_garbage_is_400),
      cmocka_unit_test(test_http_guard_page_every_byte),
      cmocka_unit_test(test_http_query_decoding),
      cmocka_unit_test(test_http_headers_case_insensitive),
      cmocka_unit_test(test_http_response_format),
      cmocka_unit_test(test_http_misuse_is_an_error),
      cmocka_unit_test(test_http_fuzz_seeds_mean_what_they_say),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
