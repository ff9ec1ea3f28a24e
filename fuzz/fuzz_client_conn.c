/*
 * Fuzz target "client_conn": a production channel (src/core/channel.c,
 * endpoint.c) for example.EchoService whose connection to its one provider
 * is fed bytes built from the input, as if the provider sent them:
 * responses to the calls really in flight (the input picks "the id of the
 * k-th request the channel wrote"), unknown and negative ids, error codes,
 * bad metas, compressed bodies, payloads that do not decode, attachments of
 * every size, patched sizes, truncated frames, raw garbage, all delivered
 * in chunks whose sizes come from the input (sticky and split frames).
 * Then the connection ends (EOF, reset, or stays open until the deadline
 * fires, or the channel is destroyed with calls pending) and the virtual
 * clock runs until everything is quiet. The input may also end the
 * connection midway; retries then reconnect, and the rest of the input
 * goes to the new connection (or the connect fails, as the input says).
 *
 * It runs on the shared fake loop and transport of tests/support/fake_env.h
 * (those of fuzz/fuzz_server.c and the core test suites): no sockets, no
 * threads, virtual time, so an execution is deterministic and fast.
 *
 * Checked besides "no crash / leak / UB / hang":
 * - every request the channel writes is a well-formed Echo request frame
 *   carrying one of our calls' messages;
 * - every call's closure runs exactly once, all of them before the virtual
 *   clock passes the deadline by a margin;
 * - a closure sees success only if a well-formed success response for one
 *   of that call's correlation ids was delivered, and the message and the
 *   response attachment are those of such a response; a failure has a
 *   negative code, a text and no message;
 * - the channel's stats count as many successes and failures as the
 *   closures saw;
 * - after mprpc_channel_destroy every connection got its on_close and the
 *   loop holds no timer and no post (the channel is gone: ASan's leak check
 *   in the replay run confirms it freed everything).
 *
 * Input layout (all optional past byte 2; missing bytes read as 0):
 *   byte 0  bits 0-1: calls - 1 (1..4); bit 2: FAILFAST (else failover,
 *           max_retry 2); bit 3: max_body 256; bit 4: every method
 *           idempotent; bits 5-6: the end (0 EOF, 1 reset, 2 stay open,
 *           3 destroy the channel with the calls pending); bit 7: attempt
 *           timeout 30 ms
 *   byte 1  bits 0-1: later connects (0 refused async, 1 accepted and
 *           silent, 2 refused synchronously, 3 accepted then EOF); bit 2:
 *           the first writev fails with EHWM; bit 3: request attachments;
 *           bit 4: cancel call 0 after the first chunk; bit 5: the clock
 *           moves 10 ms per chunk; bit 6: the transport reports written
 *           bytes as pending until a "writable" record; bit 7: backup
 *           requests after 5 ms
 *   byte 2  bits 0-2: k, number of chunk-size bytes that follow (0: chunks
 *           of 7); those bytes are used cyclically (0 means 1; after 4096
 *           chunks, at least 4 KiB, to bound an execution); bit 3: the
 *           first closure to run destroys the channel; bit 4: it starts one
 *           more call (a fifth, "call4") first; bit 5: calls go through
 *           the protoc-c stub (mprpc_controller_use_next + the service view)
 *   then records, each starting with a tag byte t:
 *     t%4 == 0 or 1: a response frame (t%4 == 1 sends it twice):
 *       sel   < 0xF0: cid of the (sel % n)-th request written (sel itself
 *             when none yet); >= 0xF0: the next 8 bytes, little endian
 *       code  0: success; 1-15 a table of interesting codes; else the
 *             byte itself as a wire code
 *       flags bit 0: compress_type 1; bit 1: error text (len byte + bytes);
 *             bit 2: raw payload (len byte + bytes) instead of an
 *             EchoResponse (len byte + message bytes); bit 3: attachment
 *             (size byte: < 64 that size, else 255/256/4095/65536/1 MiB,
 *             then a fill byte); bit 4: truncate (byte: keep len*b/256);
 *             bit 5: patch a size (byte picks which); bit 6: a request
 *             sub-message too; bit 7: negate the cid. The extra bytes
 *             come in this order: text, payload, attachment, patch, cut.
 *     t%4 == 2: raw bytes: len byte, then that many bytes
 *     t%4 == 3: control, by (t >> 2) % 4: 0 deliver everything built now,
 *             then with bit 4 or 5 end the connection (EOF, bit 5: reset):
 *             later bytes go to the connection the channel makes next;
 *             1 advance the clock by the next byte in ms; 2 cancel call
 *             (next byte % calls); 3 the write backlog drains (on_writable)
 *
 * FUZZ_VERBOSE=1 prints each call's outcome. Seeds: tests/test_fuzz_corpus.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/log.h"
#include "support/check.h"
#include "tests/support/fake_env.h"

#define MAXCALLS 5 /* 4 from the start, one more from a closure */
#define MAXCONNS 32
#define MAXWRITTEN 256

/* The stream built for the provider's side. */
typedef struct bytes {
  uint8_t *p;
  size_t len, cap;
} bytes_t;

static void bytes_put(bytes_t *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->p = realloc(b->p, b->cap);
    FUZZ_CHECK(b->p != NULL);
  }
  if (n)
    memcpy(b->p + b->len, p, n);
  b->len += n;
}

static struct {
  fake_env_t env; /* the channel's connections are fake_net's */
  uint32_t max_body;

  /* requests the channel wrote, in order */
  uint64_t wcid[MAXWRITTEN];
  int wcall[MAXWRITTEN];
  int nwritten;

  /* the stream for connection 0: built, and how much was delivered */
  bytes_t s;
  size_t sdelivered;

  int ncalls;
  int ran[MAXCALLS];
  int nok, nfailed;
  mprpc_controller_t *ctl[MAXCALLS];
  mprpc_channel_t *ch;
  bool destroyed;      /* mprpc_channel_destroy was called */
  bool destroy_in_cb;  /* ... by the first closure that runs */
  bool call_in_cb;     /* the first closure starts one more call */
  bool first_done;
  bool use_stub; /* calls go through the protoc-c stub, not mprpc_channel_call */
} E;

static void settle(void) { fake_loop_run(E.env.L); }
static void advance(uint64_t ms) { fake_loop_advance(E.env.L, ms); }

/* Every request the channel writes must be a well-formed Echo request of
 * one of our calls; remember its correlation id. */
static void scan_output(void) {
  for (size_t i = 0; i < fake_net_conn_count(E.env.net); i++) {
    mprpc_conn_t *cn = fake_net_conn(E.env.net, i);
    size_t left;
    for (const uint8_t *p = fake_conn_unread(cn, &left); left > 0;
         p = fake_conn_unread(cn, &left)) {
      mprpc_frame_t f;
      long r = mprpc_frame_parse(p, left, 0, &f);
      FUZZ_CHECK(r > 0); /* writev takes whole frames */
      FUZZ_CHECK(f.meta.has_request && !f.meta.has_response);
      FUZZ_CHECK(mprpc_bytes_eq(f.meta.service_name, "example.EchoService"));
      FUZZ_CHECK(mprpc_bytes_eq(f.meta.method_name, "Echo"));
      FUZZ_CHECK(f.meta.correlation_id > 0);
      Example__EchoRequest *rq = example__echo_request__unpack(NULL, f.payload.len, f.payload.ptr);
      FUZZ_CHECK(rq != NULL);
      FUZZ_CHECK(strlen(rq->message) == 5 && memcmp(rq->message, "call", 4) == 0);
      int k = rq->message[4] - '0';
      FUZZ_CHECK(k >= 0 && k < E.ncalls);
      example__echo_request__free_unpacked(rq, NULL);
      for (int j = 0; j < E.nwritten; j++)
        FUZZ_CHECK(E.wcid[j] != (uint64_t)f.meta.correlation_id);
      if (E.nwritten < MAXWRITTEN) {
        E.wcid[E.nwritten] = (uint64_t)f.meta.correlation_id;
        E.wcall[E.nwritten++] = k;
      }
      fake_conn_consume(cn, (size_t)r);
    }
  }
}

static void scan_output_cb(void *arg) {
  (void)arg;
  scan_output();
}

/* ---- closures ------------------------------------------------------------------- */

static int call_of_cid(uint64_t cid) {
  for (int j = 0; j < E.nwritten; j++)
    if (E.wcid[j] == cid)
      return E.wcall[j];
  return -1;
}

/* Was a well-formed success for call k with this message and attachment
 * delivered on connection cn? Parses the delivered bytes the way the
 * channel does: frame by frame until the first bad or request frame. */
static bool success_on(const mprpc_conn_t *cn, int k, const char *msg, const void *att,
                       size_t att_len) {
  size_t off = 0, len;
  const uint8_t *rx = fake_conn_received(cn, &len);
  for (int guard = 0; guard < 1000000 && off < len; guard++) {
    mprpc_frame_t f;
    long r = mprpc_frame_parse(rx + off, len - off, E.max_body, &f);
    if (r <= 0 || f.meta.has_request)
      return false;
    off += (size_t)r;
    if (f.meta.error_code != 0 || f.meta.compress_type != 0 ||
        call_of_cid((uint64_t)f.meta.correlation_id) != k)
      continue;
    Example__EchoResponse *rs = example__echo_response__unpack(NULL, f.payload.len, f.payload.ptr);
    if (!rs)
      continue;
    bool same = strcmp(rs->message, msg) == 0 && f.attachment.len == att_len &&
                (att_len == 0 || memcmp(f.attachment.ptr, att, att_len) == 0);
    example__echo_response__free_unpacked(rs, NULL);
    if (same)
      return true;
  }
  return false;
}

static bool success_delivered(int k, const char *msg, const void *att, size_t att_len) {
  scan_output(); /* a retry may have been written during this very on_data */
  for (size_t i = 0; i < fake_net_conn_count(E.env.net); i++)
    if (success_on(fake_net_conn(E.env.net, i), k, msg, att, att_len))
      return true;
  return false;
}

/* FUZZ_VERBOSE=1 in the environment prints each call's outcome. */
static bool verbose;

static void done(const ProtobufCMessage *m, void *arg);

static void stub_done(const Example__EchoResponse *m, void *arg) {
  done(m ? &m->base : NULL, arg);
}

static void start_call(int k) {
  char msg[8] = {'c', 'a', 'l', 'l', (char)('0' + k), 0};
  Example__EchoRequest rq = EXAMPLE__ECHO_REQUEST__INIT;
  rq.message = msg;
  if (E.use_stub) { /* on the loop thread the stub is asynchronous */
    mprpc_controller_use_next(E.ctl[k]);
    example__echo_service__echo(mprpc_channel_service(E.ch), &rq, stub_done,
                                (void *)(intptr_t)k);
    return;
  }
  FUZZ_CHECK(mprpc_channel_call(E.ch, 0, &rq.base, E.ctl[k], done, (void *)(intptr_t)k) == 0);
}

static void done(const ProtobufCMessage *m, void *arg) {
  int k = (int)(intptr_t)arg;
  FUZZ_CHECK(k >= 0 && k < E.ncalls);
  FUZZ_CHECK(E.ran[k] == 0);
  E.ran[k]++;
  mprpc_controller_t *ctl = mprpc_controller_current();
  FUZZ_CHECK(ctl == E.ctl[k]);
  if (m) {
    E.nok++;
    FUZZ_CHECK(!mprpc_controller_failed(ctl));
    FUZZ_CHECK(mprpc_controller_error_code(ctl) == 0);
    FUZZ_CHECK(m->descriptor == &example__echo_response__descriptor);
    size_t alen;
    const void *att = mprpc_controller_response_attachment(ctl, &alen);
    const Example__EchoResponse *rs = (const Example__EchoResponse *)m;
    FUZZ_CHECK(success_delivered(k, rs->message, att, alen));
    if (verbose)
      fprintf(stderr, "call %d: ok \"%s\" attachment %zu bytes, %d attempt(s)\n", k, rs->message,
              alen, mprpc_controller_attempts(ctl));
    if (k & 1) { /* odd calls keep the response: ownership moves to us */
      ProtobufCMessage *own = mprpc_controller_take_response(ctl);
      FUZZ_CHECK(own != NULL && own->descriptor == m->descriptor);
      FUZZ_CHECK(!strcmp(((const Example__EchoResponse *)own)->message, rs->message));
      FUZZ_CHECK(mprpc_controller_take_response(ctl) == NULL);
      protobuf_c_message_free_unpacked(own, NULL);
    }
  } else {
    E.nfailed++;
    FUZZ_CHECK(mprpc_controller_failed(ctl));
    FUZZ_CHECK(mprpc_controller_error_code(ctl) < 0);
    FUZZ_CHECK(mprpc_controller_error_text(ctl)[0] != '\0');
    FUZZ_CHECK(mprpc_controller_take_response(ctl) == NULL);
    if (verbose)
      fprintf(stderr, "call %d: %s (%s), %d attempt(s)\n", k,
              mprpc_err_name(mprpc_controller_error_code(ctl)), mprpc_controller_error_text(ctl),
              mprpc_controller_attempts(ctl));
  }
  if (!E.first_done) {
    E.first_done = true;
    if (E.call_in_cb && !E.destroyed) {
      E.ctl[E.ncalls] = mprpc_controller_new();
      FUZZ_CHECK(E.ctl[E.ncalls] != NULL);
      start_call(E.ncalls++);
    }
    if (E.destroy_in_cb && !E.destroyed) {
      E.destroyed = true;
      mprpc_channel_destroy(E.ch); /* from inside its own closure */
    }
  }
}

/* ---- building the provider's bytes --------------------------------------------- */

typedef struct reader {
  const uint8_t *p;
  size_t n, off;
} reader_t;

static uint8_t rd(reader_t *r) { return r->off < r->n ? r->p[r->off++] : 0; }

/* Up to len bytes of the input (fewer at its end). */
static const uint8_t *rd_bytes(reader_t *r, size_t *len) {
  const uint8_t *p = r->p + r->off;
  if (*len > r->n - r->off)
    *len = r->n - r->off;
  r->off += *len;
  return p;
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static const int32_t wire_codes[16] = {
    0,
    2003,        /* ELOGOFF: retried */
    2004,        /* ELIMIT: retried */
    1011,        /* EOVERCROWDED: retried */
    2001,        /* EINTERNAL */
    1001,        /* ENOSERVICE */
    1002,        /* ENOMETHOD */
    1003,        /* EREQUEST */
    1008,        /* ERPCTIMEDOUT */
    2002,        /* ERESPONSE */
    -5,          /* a negative code on the wire */
    INT32_MAX,
    INT32_MIN,
    1,
    3001,        /* a local code someone sent anyway */
    -3011,
};

static void build_response(reader_t *r, bool twice) {
  uint8_t sel = rd(r);
  uint64_t cid = sel;
  if (sel >= 0xF0) {
    cid = 0;
    for (int i = 0; i < 8; i++)
      cid |= (uint64_t)rd(r) << (8 * i);
  } else if (E.nwritten > 0) {
    cid = E.wcid[sel % E.nwritten];
  }
  uint8_t code = rd(r), flags = rd(r);
  mprpc_meta_t m;
  memset(&m, 0, sizeof m);
  m.has_response = true;
  m.correlation_id = (int64_t)((flags & 0x80) ? 0 - cid : cid); /* wraps, no UB */
  m.error_code = code < 16 ? wire_codes[code] : code;
  m.compress_type = (flags & 1) ? 1 : 0;
  if (flags & 2) {
    size_t tl = rd(r);
    m.error_text.ptr = rd_bytes(r, &tl);
    m.error_text.len = tl;
  }
  if (flags & 0x40) {
    m.has_request = true;
    m.service_name = MPRPC_BYTES("example.EchoService");
    m.method_name = MPRPC_BYTES("Echo");
  }
  uint8_t pbuf[512];
  const void *payload;
  size_t plen = rd(r);
  const uint8_t *pb = rd_bytes(r, &plen);
  if (flags & 4) {
    payload = pb;
  } else {
    char msg[256];
    memcpy(msg, pb, plen);
    msg[plen] = '\0';
    Example__EchoResponse rs = EXAMPLE__ECHO_RESPONSE__INIT;
    rs.message = msg;
    FUZZ_CHECK(example__echo_response__get_packed_size(&rs) <= sizeof pbuf);
    plen = example__echo_response__pack(&rs, pbuf);
    payload = pbuf;
  }
  uint8_t *att = NULL;
  size_t alen = 0;
  if (flags & 8) {
    static const size_t big[] = {255, 256, 4095, 65536, 1u << 20};
    uint8_t a = rd(r);
    alen = a < 64 ? a : big[a % 5];
    att = malloc(alen ? alen : 1);
    FUZZ_CHECK(att != NULL);
    memset(att, rd(r), alen);
  }
  mprpc_frame_out_t out;
  FUZZ_CHECK(mprpc_frame_encode(&out, &m, payload, plen, att, alen) == 0);
  size_t start = E.s.len;
  for (int i = 0; i < out.iovcnt; i++)
    bytes_put(&E.s, out.iov[i].iov_base, out.iov[i].iov_len);
  mprpc_frame_out_free(&out);
  free(att);
  size_t flen = E.s.len - start;
  uint8_t *fr = E.s.p + start;
  if (flags & 0x20) {
    uint32_t body = (uint32_t)(flen - MPRPC_FRAME_HEADER_LEN);
    uint32_t meta = (uint32_t)(fr[8] << 24 | fr[9] << 16 | fr[10] << 8 | fr[11]);
    switch (rd(r) % 7) {
    case 0: put_be32(fr + 4, 0xFFFFFFFFu); break;
    case 1: put_be32(fr + 4, MPRPC_FRAME_DEFAULT_MAX_BODY + 1); break;
    case 2: put_be32(fr + 4, MPRPC_FRAME_DEFAULT_MAX_BODY); break;
    case 3: put_be32(fr + 4, body + 1); break;
    case 4: put_be32(fr + 4, body ? body - 1 : 0); break;
    case 5: put_be32(fr + 8, body + 1); break;
    default: put_be32(fr + 8, meta ? meta - 1 : 0); break;
    }
  }
  if (flags & 0x10) {
    E.s.len = start + flen * rd(r) / 256;
    return; /* a truncated frame is not repeated */
  }
  if (twice) {
    uint8_t *copy = malloc(flen);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, E.s.p + start, flen);
    bytes_put(&E.s, copy, flen);
    free(copy);
  }
}

/* ---- delivering ----------------------------------------------------------------- */

/* The provider's side talks on the newest connection while it is up. */
static mprpc_conn_t *current_conn(void) {
  size_t n = fake_net_conn_count(E.env.net);
  mprpc_conn_t *cn = n ? fake_net_conn(E.env.net, n - 1) : NULL;
  return cn && fake_conn_connected(cn) && !fake_conn_closing(cn) ? cn : NULL;
}

static const uint8_t *chunks;
static size_t nchunks, chunk_i;
static bool advance_per_chunk, cancel_after_first;
static int nchunks_delivered;

static size_t next_chunk(void) {
  size_t n = 7;
  if (nchunks > 0) {
    uint8_t v = chunks[chunk_i % nchunks];
    n = v ? v : 1;
  }
  /* Bound the work of one execution: a 1 MiB attachment sent twice in
   * one-byte chunks would take seconds (and look like a hang to AFL++);
   * past 4096 chunks they grow to 4 KiB. */
  if (nchunks_delivered >= 4096 && n < 4096)
    n = 4096;
  return n;
}

/* Delivers the built bytes in chunks; with all == false only while a whole
 * chunk is there, so chunks span records (sticky and split frames). */
static void deliver(bool all) {
  for (int guard = 0; guard < 1000000 && E.sdelivered < E.s.len; guard++) {
    size_t n = next_chunk(), left = E.s.len - E.sdelivered;
    if (n > left) {
      if (!all)
        return;
      n = left;
    }
    mprpc_conn_t *cn = current_conn();
    if (!cn) {
      E.sdelivered = E.s.len; /* the provider's bytes go nowhere now */
      return;
    }
    chunk_i++;
    size_t at = E.sdelivered;
    E.sdelivered += n;
    fake_conn_deliver(cn, E.s.p + at, n);
    settle();
    if (advance_per_chunk)
      advance(10);
    if (cancel_after_first && nchunks_delivered == 0 && !E.destroyed)
      mprpc_controller_cancel(E.ctl[0]);
    nchunks_delivered++;
    settle();
  }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_OFF);
  const char *v = getenv("FUZZ_VERBOSE");
  verbose = v && *v && *v != '0';
  reader_t r = {data, size, 0};
  uint8_t f0 = rd(&r), f1 = rd(&r), f2 = rd(&r);

  memset(&E, 0, sizeof E);
  /* The first connect is accepted (the input is its provider); later ones
   * do what byte 1 says. Seed 1, 4096 posts and 100,000 steps, as this
   * harness's own fakes had. */
  fake_env_init(&E.env,
                &(fake_loop_opts_t){.wall_offset_ns = FAKE_WALL_2023_NS,
                                    .max_posts = 4096,
                                    .max_steps = 100000},
                &(fake_net_opts_t){.first_connect = FAKE_CONNECT_ACCEPTED,
                                   .next_connect = (fake_connect_mode_t)(f1 & 3),
                                   .max_conns = MAXCONNS,
                                   .report_pending = (f1 & 0x40) != 0});
  fake_loop_on_idle(E.env.L, scan_output_cb, NULL);
  if (f1 & 4)
    fake_net_refuse_next_writes(E.env.net, 1);
  E.ncalls = (f0 & 3) + 1;
  E.max_body = (f0 & 8) ? 256 : 0;
  nchunks = f2 & 7;
  chunks = rd_bytes(&r, &nchunks);
  chunk_i = 0;
  nchunks_delivered = 0;
  advance_per_chunk = (f1 & 0x20) != 0;
  cancel_after_first = (f1 & 0x10) != 0;
  int end = (f0 >> 5) & 3;

  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.loop = E.env.loop;
  o.transport = E.env.tr;
  o.servers = "192.0.2.1:8000";
  o.retry_policy = (f0 & 4) ? MPRPC_RETRY_FAILFAST : MPRPC_RETRY_FAILOVER;
  o.max_body = E.max_body;
  o.idempotent_methods = (f0 & 0x10) ? "*" : NULL;
  o.attempt_timeout_ms = (f0 & 0x80) ? 30 : 0;
  o.backup_request_ms = (f1 & 0x80) ? 5 : 0;
  o.auth_data = "secret";
  o.auth_len = 6;
  FUZZ_CHECK(mprpc_channel_new_in(&example__echo_service__descriptor, &o, &E.ch) == 0);
  E.destroy_in_cb = (f2 & 8) != 0;
  E.call_in_cb = (f2 & 0x10) != 0;
  E.use_stub = (f2 & 0x20) != 0;

  static const char fill[400];
  for (int k = 0; k < E.ncalls; k++) {
    E.ctl[k] = mprpc_controller_new();
    FUZZ_CHECK(E.ctl[k] != NULL);
    if (f1 & 8)
      FUZZ_CHECK(mprpc_controller_set_request_attachment(E.ctl[k], fill, (size_t)k * 100) == 0);
    start_call(k);
  }
  settle();

  for (int guard = 0; guard < 100000 && r.off < r.n; guard++) {
    uint8_t t = rd(&r);
    switch (t & 3) {
    case 0:
    case 1:
      build_response(&r, (t & 3) == 1);
      break;
    case 2: {
      size_t n = rd(&r);
      const uint8_t *p = rd_bytes(&r, &n);
      bytes_put(&E.s, p, n);
      break;
    }
    default:
      switch ((t >> 2) & 3) {
      case 0:
        deliver(true);
        if ((t & 0x30) && current_conn()) { /* the provider ends this connection */
          fake_conn_hangup(current_conn(), (t & 0x20) ? MPRPC_CLOSE_RESET : MPRPC_CLOSE_EOF,
                           (t & 0x20) ? MPRPC_ECONNRESET : 0);
          E.sdelivered = E.s.len;
          settle();
        }
        break;
      case 1:
        deliver(true);
        advance(rd(&r));
        break;
      case 2:
        if (!E.destroyed)
          mprpc_controller_cancel(E.ctl[rd(&r) % E.ncalls]);
        settle();
        break;
      default:
        for (size_t i = 0; i < fake_net_conn_count(E.env.net); i++) {
          mprpc_conn_t *cn = fake_net_conn(E.env.net, i);
          if (fake_conn_connected(cn) && !fake_conn_closing(cn))
            fake_conn_drain(cn);
        }
        settle();
        break;
      }
      break;
    }
    deliver(false);
  }
  deliver(true);

  if (end <= 1 && current_conn())
    fake_conn_hangup(current_conn(), end == 0 ? MPRPC_CLOSE_EOF : MPRPC_CLOSE_RESET,
                     end == 0 ? 0 : MPRPC_ECONNRESET);
  if (end == 3 && !E.destroyed) {
    E.destroyed = true;
    mprpc_channel_destroy(E.ch);
  }
  settle();
  /* The default deadline is 1 s; every call ends well within 5 s. */
  advance(5000);
  for (int k = 0; k < E.ncalls; k++)
    FUZZ_CHECK(E.ran[k] == 1);
  if (!E.destroyed) {
    mprpc_channel_stats_t st;
    mprpc_channel_stats(E.ch, &st);
    FUZZ_CHECK(st.calls == (uint64_t)E.ncalls);
    FUZZ_CHECK(st.ok == (uint64_t)E.nok && st.failed == (uint64_t)E.nfailed);
    mprpc_channel_destroy(E.ch);
  }
  settle();
  for (size_t i = 0; i < fake_net_conn_count(E.env.net); i++)
    FUZZ_CHECK(fake_conn_closed(fake_net_conn(E.env.net, i)));
  FUZZ_CHECK(fake_loop_posts(E.env.L) == 0);
  FUZZ_CHECK(fake_loop_timers(E.env.L) == 0); /* the channel left no timer armed */

  for (int k = 0; k < E.ncalls; k++)
    mprpc_controller_free(E.ctl[k]);
  fake_loop_on_idle(E.env.L, NULL, NULL);
  fake_env_free(&E.env);
  free(E.s.p);
  return 0;
}
