/*
 * echo_async_client: the smallest complete asynchronous consumer.
 *
 * It keeps WINDOW calls in flight on one channel: every closure runs on the
 * channel's loop, prints nothing but counts, and starts the next call, so the
 * loop thread is never blocked. The main thread only waits for the end.
 *
 *   echo_async_client HOST:PORT [TOTAL]
 */
#include <stdio.h>
#include <stdlib.h>

#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/errors.h"
#include "mprpc/rt.h"

#define WINDOW 64

typedef struct run {
  mprpc_channel_t *ch;
  mprpc_loop_t loop;
  void *done_waiter; /* the main thread sleeps on it */
  long total, started, finished, failed;
} run_t;

static void start_one(run_t *r);

/* On the loop thread. The response belongs to the channel: it is freed when
 * this returns (mprpc_controller_take_response would keep it). */
static void on_reply(const Example__EchoResponse *resp, void *arg) {
  run_t *r = arg;
  r->finished++;
  if (!resp) {
    mprpc_controller_t *ctl = mprpc_controller_current();
    if (r->failed++ == 0)
      fprintf(stderr, "first failure: %s (%s)\n", mprpc_err_name(mprpc_controller_error_code(ctl)),
              mprpc_controller_error_text(ctl));
  }
  start_one(r); /* keep the window full */
  if (r->finished == r->total)
    r->loop.vt->waiter_wake(r->loop.ctx, r->done_waiter);
}

static void start_one(run_t *r) {
  if (r->started == r->total)
    return;
  r->started++;
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "hello"; /* serialized before the call returns */
  /* From the loop thread the generated stub is asynchronous: it returns at
   * once and on_reply runs later, exactly once. */
  example__echo_service__echo(mprpc_channel_service(r->ch), &req, on_reply, r);
}

static void kick_off(void *arg) {
  run_t *r = arg;
  for (int i = 0; i < WINDOW; i++)
    start_one(r);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s HOST:PORT [TOTAL]\n", argv[0]);
    return 2;
  }
  run_t r = {.total = argc > 2 ? atol(argv[2]) : 10000};
  if (r.total <= 0)
    return 2;
  mprpc_loop_group_t *g;
  if (mprpc_loop_group_new(1, &g) != 0 || mprpc_loop_group_start(g) != 0)
    return 1;
  r.loop = mprpc_loop_group_loop(g, 0);

  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  o.loop = r.loop;
  o.transport = mprpc_tcp_transport();
  o.servers = argv[1];
  int rc = mprpc_channel_new(&example__echo_service__descriptor, &o, &r.ch);
  if (rc != 0) {
    fprintf(stderr, "channel: %s\n", mprpc_strerror(rc));
    return 1;
  }
  r.done_waiter = r.loop.vt->waiter_new(r.loop.ctx);
  mprpc_loop_post(r.loop, kick_off, &r); /* start on the loop thread */
  r.loop.vt->waiter_wait(r.loop.ctx, r.done_waiter);
  r.loop.vt->waiter_free(r.loop.ctx, r.done_waiter);

  printf("echo_async_client: calls=%ld failed=%ld\n", r.finished, r.failed);
  mprpc_channel_destroy(r.ch);
  mprpc_loop_group_free(g);
  return r.failed == 0 ? 0 : 1;
}
