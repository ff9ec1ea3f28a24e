/*
 * Fuzz target "server": arbitrary bytes, split arbitrarily, fed to one
 * connection of a provider running on a tiny single-threaded fake loop and
 * transport (the server core needs nothing else). Whatever arrives, the
 * server must not crash or leak, every byte it writes must parse as a
 * sequence of response frames, it never answers more requests than it
 * received, and a graceful shutdown afterwards completes.
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

#include "core/timerq.h"
#include "echo.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
#include "support/check.h"

struct mprpc_conn {
  const mprpc_conn_handler_t *h;
  void *ud;
  mprpc_rbuf_t *in;
  uint8_t *out;
  size_t olen, ocap;
  int close_posted, closed;
};

#define NPOST 4096
static struct {
  uint64_t now;
  mprpc__timerq_t tq;
  mprpc_post_cb fn[NPOST];
  void *arg[NPOST];
  size_t ph, pt;
  mprpc_xoshiro_t rng;
  mprpc_listen_opts_t lo;
} E;

static uint64_t f_now(void *c) {
  (void)c;
  return E.now;
}
static uint64_t f_timer_start(void *c, uint64_t d, mprpc_timer_cb cb, void *arg) {
  (void)c;
  return mprpc__timerq_add(&E.tq, E.now + d, cb, arg);
}
static void f_timer_cancel(void *c, uint64_t id) {
  (void)c;
  mprpc__timerq_cancel(&E.tq, id);
}
static int f_post(void *c, mprpc_post_cb fn, void *arg) {
  (void)c;
  if (E.pt - E.ph >= NPOST)
    return MPRPC_ENOMEM;
  E.fn[E.pt % NPOST] = fn;
  E.arg[E.pt % NPOST] = arg;
  E.pt++;
  return 0;
}
static bool f_in_loop(void *c) {
  (void)c;
  return true;
}
static mprpc_rand_t f_rand(void *c) {
  (void)c;
  return mprpc_rand_xoshiro(&E.rng);
}
static const mprpc_loop_ops_t loop_ops = {f_now, f_now, f_timer_start, f_timer_cancel, f_post,
                                          f_in_loop, f_rand, NULL, NULL, NULL, NULL};

static int f_listen(void *c, const mprpc_listen_opts_t *o, mprpc_listener_t **out) {
  (void)c;
  E.lo = *o;
  *out = (mprpc_listener_t *)&E;
  return 0;
}
static uint16_t f_port(void *c, mprpc_listener_t *l) {
  (void)c, (void)l;
  return 1;
}
static void f_lclose(void *c, mprpc_listener_t *l) { (void)c, (void)l; }
static int f_connect(void *c, mprpc_loop_t l, const char *h, uint16_t p, const mprpc_conn_opts_t *o,
                     const mprpc_conn_handler_t *hd, void *ud, mprpc_rbuf_t *in,
                     mprpc_conn_t **out) {
  (void)c, (void)l, (void)h, (void)p, (void)o, (void)hd, (void)ud, (void)in, (void)out;
  return MPRPC_EUNSUPPORTED;
}
static void f_setup(void *c, mprpc_conn_t *cn, const mprpc_conn_handler_t *h, void *ud,
                    mprpc_rbuf_t *in) {
  (void)c;
  cn->h = h;
  cn->ud = ud;
  cn->in = in;
}
static int f_writev(void *c, mprpc_conn_t *cn, const struct iovec *iov, int n) {
  (void)c;
  FUZZ_CHECK(!cn->closed);
  for (int i = 0; i < n; i++) {
    if (cn->olen + iov[i].iov_len > cn->ocap) {
      cn->ocap = (cn->ocap + iov[i].iov_len) * 2;
      cn->out = realloc(cn->out, cn->ocap);
      FUZZ_CHECK(cn->out != NULL);
    }
    if (iov[i].iov_len)
      memcpy(cn->out + cn->olen, iov[i].iov_base, iov[i].iov_len);
    cn->olen += iov[i].iov_len;
  }
  return 0;
}
static size_t f_pending(void *c, mprpc_conn_t *cn) {
  (void)c, (void)cn;
  return 0;
}
static void fire_close(void *arg) {
  mprpc_conn_t *cn = arg;
  cn->closed = 1;
  cn->h->on_close(cn, cn->ud, MPRPC_CLOSE_LOCAL, 0);
}
static void f_close(void *c, mprpc_conn_t *cn, bool flush) {
  (void)c, (void)flush;
  if (!cn->close_posted) {
    cn->close_posted = 1;
    f_post(NULL, fire_close, cn);
  }
}
static const char *f_peer(void *c, mprpc_conn_t *cn) {
  (void)c, (void)cn;
  return "192.0.2.1:1";
}
static const mprpc_transport_ops_t tr_ops = {f_listen, f_port,    f_lclose, f_connect, f_setup,
                                             f_writev, f_pending, f_close,  f_peer};

static void settle(void) {
  for (int guard = 0; guard < 100000; guard++) {
    if (E.ph != E.pt) {
      mprpc_post_cb fn = E.fn[E.ph % NPOST];
      void *arg = E.arg[E.ph % NPOST];
      E.ph++;
      fn(arg);
    } else if (mprpc__timerq_run_due(&E.tq, E.now) == 0) {
      return;
    }
  }
  FUZZ_CHECK(!"fake loop did not settle");
}

static void advance(uint64_t ms) {
  uint64_t target = E.now + ms * MPRPC_NS_PER_MS, d;
  settle();
  while (mprpc__timerq_peek(&E.tq, &d) && d <= target) {
    if (d > E.now)
      E.now = d;
    settle();
  }
  E.now = target;
  settle();
}

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

  memset(&E, 0, sizeof E);
  E.now = 1000 * MPRPC_NS_PER_S;
  mprpc__timerq_init(&E.tq);
  mprpc_xoshiro_seed(&E.rng, 1);
  nheld = ncalls = 0;
  mprpc_loop_t loop = {&loop_ops, NULL};
  static Example__EchoService_Service svc = EXAMPLE__ECHO_SERVICE__INIT(h_);

  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = "127.0.0.1";
  o.transport = (mprpc_transport_t){&tr_ops, NULL};
  o.loops = &loop;
  o.nloops = 1;
  o.max_body = (flags & 1) ? 256 : 0;
  o.authenticate = (flags & 2) ? auth : NULL;
  o.max_concurrency = (flags & 4) ? 2 : 0;
  o.idle_timeout_ms = (flags & 8) ? 50 : 0;
  o.drain_timeout_ms = 100;
  mprpc_server_t *s;
  FUZZ_CHECK(mprpc_server_new(&o, &s) == 0);
  FUZZ_CHECK(mprpc_server_add_service(s, &svc.base) == 0);
  FUZZ_CHECK(mprpc_server_start(s) == 0);
  settle();

  mprpc_conn_t *c = calloc(1, sizeof *c);
  FUZZ_CHECK(c != NULL);
  E.lo.on_accept(E.lo.ud, c, loop);
  FUZZ_CHECK(c->h != NULL);
  int done = 0, stopped = 0;
  for (size_t off = 0; off < size && !c->close_posted;) {
    size_t n = size - off < chunk ? size - off : chunk;
    if ((flags & 16) && off + n >= size && !stopped) {
      FUZZ_CHECK(mprpc_server_shutdown(s, sd_done, &done) == 0);
      stopped = 1;
    }
    FUZZ_CHECK(mprpc_rbuf_append(c->in, data + off, n) == 0);
    c->h->on_data(c, c->ud, c->in);
    settle();
    if (flags & 8)
      advance(20);
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
  const uint8_t *p = c->out;
  size_t left = c->olen;
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
  advance(1000);
  FUZZ_CHECK(done == 1);
  FUZZ_CHECK(c->closed);
  mprpc_server_destroy(s);
  settle();
  mprpc__timerq_free(&E.tq);
  free(c->out);
  free(c);
  return 0;
}
