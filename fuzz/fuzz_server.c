/*
 * Fuzz target "server": arbitrary bytes, split arbitrarily, fed to one
 * connection of a provider running on the shared fake loop and transport of
 * tests/support/fake_env.h (the server core needs nothing else). Whatever
 * arrives, the server must not crash or leak, every byte it writes must
 * parse as a sequence of response frames, it never answers more requests
 * than it received, and a graceful shutdown afterwards completes.
 *
 * Input layout:
 *   byte 0   chunk size for feeding (0 = one byte at a time)
 *   byte 1   bit 0: max_body = 256; bit 1: authenticator (accepts "ok");
 *            bit 2: max_concurrency = 2; bit 3: idle timeout 50 ms with
 *            the clock moved 20 ms per chunk; bit 4: stop before the last
 *            chunk (ELOGOFF path)
 *   the rest the byte stream (example.EchoService.Echo is served; a message
 *            starting with 'h' is held and answered after the stream, one
 *            starting with 'n' is answered with NULL, 't' twice)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
#include "support/check.h"
#include "tests/support/fake_env.h"

/* The fake loop and transport of tests/support/fake_env.h; the connection
 * is one the test accepts and plays the peer of. */
static fake_env_t E;

static void settle(void) { fake_loop_run(E.L); }

#define MAXHELD 64
static Example__EchoResponse_Closure held_cl[MAXHELD];
static void *held_data[MAXHELD];
static int nheld, ncalls;

static void h_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                   Example__EchoResponse_Closure done, void *data) {
  (void)svc;
  Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
  out.message = in->message;
  ncalls++;
  FUZZ_CHECK(mprpc_server_call_from(data) != NULL);
  if (in->message[0] == 'h' && nheld < MAXHELD) {
    held_cl[nheld] = done;
    held_data[nheld++] = data;
    return;
  }
  if (in->message[0] == 'n') {
    done(NULL, data);
    return;
  }
  done(&out, data);
  if (in->message[0] == 't')
    done(&out, data);
}

static int auth(void *ud, const uint8_t *d, size_t n, const char *peer) {
  (void)ud, (void)peer;
  return n == 2 && memcmp(d, "ok", 2) == 0 ? 0 : -1;
}

static void sd_done(void *ud) { (*(int *)ud)++; }

/* Counts request frames in the input the way the server sees them. */
static size_t count_requests(const uint8_t *p, size_t n, uint32_t max_body) {
  size_t count = 0;
  for (int guard = 0; guard < 1000000; guard++) {
    mprpc_frame_t f;
    long r = mprpc_frame_parse(p, n, max_body, &f);
    if (r <= 0 || !f.meta.has_request || f.meta.has_response)
      break;
    count++;
    p += r;
    n -= (size_t)r;
  }
  return count;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size < 2)
    return 0;
  mprpc_log_set_level(MPRPC_LOG_LEVEL_OFF);
  size_t chunk = data[0] ? data[0] : 1;
  uint8_t flags = data[1];
  data += 2;
  size -= 2;

  /* As the harness's own fakes were: seed 1, wall = monotonic, 4096 posts,
   * 100,000 steps before "does not settle" is a finding. */
  fake_env_init(&E, &(fake_loop_opts_t){.max_posts = 4096, .max_steps = 100000},
                &(fake_net_opts_t){.listen_port = 1, .accept_peer = "192.0.2.1:1"});
  nheld = ncalls = 0;
  mprpc_loop_t loop = E.loop;
  static Example__EchoService_Service svc = EXAMPLE__ECHO_SERVICE__INIT(h_);

  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = "127.0.0.1";
  o.transport = E.tr;
  o.loops = &loop;
  o.nloops = 1;
  o.max_body = (flags & 1) ? 256 : 0;
  o.authenticate = (flags & 2) ? auth : NULL;
  o.max_concurrency = (flags & 4) ? 2 : 0;
  o.idle_timeout_ms = (flags & 8) ? 50 : 0;
  o.drain_timeout_ms = 100;
  mprpc_server_t *s;
  FUZZ_CHECK(mprpc_server_new_in(&o, (mprpc_loop_owner_t){0}, &s) == 0);
  FUZZ_CHECK(mprpc_server_add_service(s, &svc.base) == 0);
  FUZZ_CHECK(mprpc_server_start(s) == 0);
  settle();

  mprpc_conn_t *c = fake_net_accept(E.net);
  FUZZ_CHECK(fake_conn_set_up(c));
  int done = 0, stopped = 0;
  for (size_t off = 0; off < size && !fake_conn_closing(c);) {
    size_t n = size - off < chunk ? size - off : chunk;
    if ((flags & 16) && off + n >= size && !stopped) {
      FUZZ_CHECK(mprpc_server_shutdown(s, sd_done, &done) == 0);
      stopped = 1;
    }
    fake_conn_deliver(c, data + off, n);
    settle();
    if (flags & 8)
      fake_loop_advance(E.L, 20);
    off += n;
  }
  for (int i = nheld - 1; i >= 0; i--) {
    Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
    out.message = "late";
    held_cl[i](&out, held_data[i]);
  }
  settle();

  /* The output is a clean sequence of responses, no more than requests. */
  size_t requests = count_requests(data, size, o.max_body), responses = 0;
  size_t left;
  const uint8_t *p = fake_conn_unread(c, &left);
  while (left > 0) {
    mprpc_frame_t f;
    long r = mprpc_frame_parse(p, left, 0, &f);
    FUZZ_CHECK(r > 0);
    FUZZ_CHECK(f.meta.has_response && !f.meta.has_request);
    responses++;
    p += r;
    left -= (size_t)r;
  }
  FUZZ_CHECK(responses <= requests);

  if (!stopped)
    FUZZ_CHECK(mprpc_server_shutdown(s, sd_done, &done) == 0);
  fake_loop_advance(E.L, 1000);
  FUZZ_CHECK(done == 1);
  FUZZ_CHECK(fake_conn_closed(c));
  mprpc_server_destroy(s);
  fake_env_free(&E); /* settles first */
  return 0;
}
