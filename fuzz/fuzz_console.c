/*
 * Fuzz target "console": arbitrary bytes, split arbitrarily, fed to one
 * connection of a provider with the console on (the fake loop and transport
 * of tests/support/fake_env.h), so the sniff hand-off, the HTTP parser, the
 * router, every page, POST /flags and HTTP/JSON calls through the
 * dispatcher (with the JSON codec of src/util/json.c) all see the input.
 * Whatever arrives: no crash or leak; what the server writes on that
 * connection is baidu_std frames or a sequence of complete HTTP/1.1
 * responses (status line, Content-Length, that many body bytes); a
 * baidu_std connection opened next to it is still answered; a graceful
 * shutdown completes.
 *
 * Input layout:
 *   byte 0   chunk size for feeding (0 = one byte at a time)
 *   byte 1   bit 0: console_write; bit 1: authenticator (accepts "ok");
 *            bit 2: max_method_concurrency = 1; bit 3: move the clock 700 ms
 *            per chunk (the per-second ring fills)
 *   the rest the byte stream (example.EchoService.Echo is served; a message
 *            starting with 'h' is held and answered after the stream)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/json.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
#include "support/check.h"
#include "tests/support/fake_env.h"

static fake_env_t E;

static void settle(void) { fake_loop_run(E.L); }

#define MAXHELD 64
static Example__EchoResponse_Closure held_cl[MAXHELD];
static void *held_data[MAXHELD];
static int nheld;

static void h_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                   Example__EchoResponse_Closure done, void *data) {
  (void)svc;
  Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
  out.message = in->message;
  if (in->message[0] == 'h' && nheld < MAXHELD) {
    held_cl[nheld] = done;
    held_data[nheld++] = data;
    return;
  }
  done(&out, data);
}

static int auth(void *ud, const uint8_t *d, size_t n, const char *peer) {
  (void)ud, (void)peer;
  return n == 2 && memcmp(d, "ok", 2) == 0 ? 0 : -1;
}

static void sd_done(void *ud) { (*(int *)ud)++; }

/* The JSON codec the facade installs in production, over src/util/json.c. */
static int j2pb(void *ctx, const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                uint8_t **out, size_t *out_len, char *err, size_t errlen) {
  (void)ctx;
  ProtobufCMessage *m = NULL;
  int rc = mprpc_json_to_message(json, len, d, NULL, &m, err, errlen);
  if (rc < 0)
    return rc;
  size_t n = protobuf_c_message_get_packed_size(m);
  *out = malloc(n ? n : 1);
  FUZZ_CHECK(*out != NULL);
  protobuf_c_message_pack(m, *out);
  *out_len = n;
  protobuf_c_message_free_unpacked(m, NULL);
  return 0;
}

static int pb2j(void *ctx, const ProtobufCMessageDescriptor *d, const uint8_t *pb, size_t len,
                char **out, size_t *out_len, char *err, size_t errlen) {
  (void)ctx, (void)err, (void)errlen;
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, pb);
  if (!m)
    return MPRPC_EINVAL;
  int rc = mprpc_message_to_json(m, 0, out, out_len);
  protobuf_c_message_free_unpacked(m, NULL);
  return rc;
}

static const mprpc_json_codec_ops_t codec = {j2pb, pb2j};

/* What the server wrote: frames (a baidu_std connection) or responses. */
static void check_output(const uint8_t *p, size_t left) {
  if (left >= 4 && memcmp(p, "PRPC", 4) == 0) {
    while (left > 0) {
      mprpc_frame_t f;
      long r = mprpc_frame_parse(p, left, 0, &f);
      FUZZ_CHECK(r > 0 && f.meta.has_response);
      p += r;
      left -= (size_t)r;
    }
    return;
  }
  while (left > 0) {
    FUZZ_CHECK(left > 12 && memcmp(p, "HTTP/1.1 ", 9) == 0);
    const uint8_t *end = NULL;
    for (size_t i = 0; i + 3 < left; i++)
      if (memcmp(p + i, "\r\n\r\n", 4) == 0) {
        end = p + i + 4;
        break;
      }
    FUZZ_CHECK(end != NULL);
    size_t head = (size_t)(end - p), body = 0;
    char hbuf[8192];
    FUZZ_CHECK(head < sizeof hbuf);
    memcpy(hbuf, p, head);
    hbuf[head] = 0;
    int status = atoi(hbuf + 9);
    FUZZ_CHECK(status >= 200 && status <= 599);
    const char *cl = strstr(hbuf, "\r\nContent-Length: ");
    FUZZ_CHECK(cl != NULL);
    body = strtoul(cl + 18, NULL, 10);
    /* A HEAD answer carries the length, not the body: the next response
     * follows its blank line at once (no page body starts like one). */
    bool head_only = left - head >= 9 && memcmp(end, "HTTP/1.1 ", 9) == 0;
    size_t take = head_only ? head : head + body;
    FUZZ_CHECK(take <= left);
    p += take;
    left -= take;
  }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size < 2)
    return 0;
  mprpc_log_set_level(MPRPC_LOG_LEVEL_OFF);
  size_t chunk = data[0] ? data[0] : 1;
  uint8_t flags = data[1];
  data += 2;
  size -= 2;
  fake_env_init(&E, &(fake_loop_opts_t){.max_posts = 4096, .max_steps = 100000},
                &(fake_net_opts_t){.listen_port = 1, .accept_peer = "192.0.2.1:1"});
  nheld = 0;
  mprpc_loop_t loop = E.loop;
  static Example__EchoService_Service svc = EXAMPLE__ECHO_SERVICE__INIT(h_);
  int level = mprpc_log_get_level();

  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = "127.0.0.1";
  o.version = "fuzz";
  o.transport = E.tr;
  o.loops = &loop;
  o.nloops = 1;
  o.console_write = flags & 1;
  o.authenticate = (flags & 2) ? auth : NULL;
  o.max_method_concurrency = (flags & 4) ? 1 : 0;
  o.drain_timeout_ms = 100;
  o.json = (mprpc_json_codec_t){&codec, NULL};
  mprpc_server_t *s;
  FUZZ_CHECK(mprpc_server_new_in(&o, (mprpc_loop_owner_t){0}, &s) == 0);
  FUZZ_CHECK(mprpc_server_add_service(s, &svc.base) == 0);
  FUZZ_CHECK(mprpc_server_start(s) == 0);
  settle();

  mprpc_conn_t *c = fake_net_accept(E.net);
  FUZZ_CHECK(fake_conn_set_up(c));
  for (size_t off = 0; off < size && !fake_conn_closing(c);) {
    size_t n = size - off < chunk ? size - off : chunk;
    fake_conn_deliver(c, data + off, n);
    settle();
    if (flags & 8)
      fake_loop_advance(E.L, 700);
    off += n;
  }
  for (int i = nheld - 1; i >= 0; i--) {
    Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
    out.message = "late";
    held_cl[i](&out, held_data[i]);
  }
  settle();
  mprpc_log_set_level(MPRPC_LOG_LEVEL_OFF); /* POST /flags/log_level may have changed it */
  size_t left;
  const uint8_t *p = fake_conn_unread(c, &left);
  check_output(p, left);

  /* a baidu_std neighbour is undisturbed */
  if (!(flags & 2)) {
    mprpc_conn_t *rpc = fake_net_accept(E.net);
    Example__EchoRequest rq = EXAMPLE__ECHO_REQUEST__INIT;
    rq.message = "n";
    uint8_t pl[16];
    size_t pn = protobuf_c_message_pack(&rq.base, pl);
    mprpc_meta_t meta;
    memset(&meta, 0, sizeof meta);
    meta.has_request = true;
    meta.service_name = MPRPC_BYTES("example.EchoService");
    meta.method_name = MPRPC_BYTES("Echo");
    meta.correlation_id = 7;
    mprpc_frame_out_t out;
    FUZZ_CHECK(mprpc_frame_encode(&out, &meta, pl, pn, NULL, 0) == 0);
    for (int i = 0; i < out.iovcnt; i++)
      fake_conn_deliver(rpc, out.iov[i].iov_base, out.iov[i].iov_len);
    mprpc_frame_out_free(&out);
    settle();
    const uint8_t *q = fake_conn_unread(rpc, &left);
    mprpc_frame_t f;
    FUZZ_CHECK(mprpc_frame_parse(q, left, 0, &f) > 0);
    FUZZ_CHECK(f.meta.correlation_id == 7);
    /* ELIMIT only when a held call took the one slot (all were released) */
    FUZZ_CHECK(f.meta.error_code == 0);
  }

  int done = 0;
  FUZZ_CHECK(mprpc_server_shutdown(s, sd_done, &done) == 0);
  fake_loop_advance(E.L, 1000);
  FUZZ_CHECK(done == 1);
  FUZZ_CHECK(fake_conn_closed(c));
  mprpc_server_destroy(s);
  fake_env_free(&E);
  mprpc_log_set_level(level);
  return 0;
}
