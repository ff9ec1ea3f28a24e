/*
 * Channel against real providers on loopback (mprpc_server + libev runtime).
 *
 * Every call's closure is counted: each must run exactly once. Most
 * timeouts in the tests are hang guards (seconds). The few checks that need
 * one step to happen before a deadline (deadline order, slow handler) leave
 * it a second or more, several times what a loaded machine under ASan needs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "core/channel_int.h"
#include "core/compress.h"
#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/log.h"
#include "mprpc/rt.h"
#include "mprpc/server.h"
#include "support/fake_registry.h"

/* ---- a test provider ------------------------------------------------------ */

enum { MODE_ECHO = 0, MODE_SLOW, MODE_HOLD, MODE_LOGOFF, MODE_BIZERR };

typedef struct held {
  Example__EchoResponse_Closure closure;
  void *data;
  const char *message;
} held_t;

typedef struct prov {
  Example__EchoService_Service svc; /* first: the handler casts back */
  mprpc_server_t *srv;
  uint16_t port;
  atomic_int execs;
  int mode;
  int slow_ms;
  pthread_mutex_t mu;
  held_t *held;
  size_t nheld, capheld;
  size_t hold_until; /* MODE_HOLD: release everything once this many wait */
  bool is_child;
  /* what the last request's meta carried */
  atomic_llong last_log_id, last_trace_id;
  atomic_int last_timeout_ms;
  atomic_int slow_live; /* MODE_SLOW handler threads that have not answered */
} prov_t;

static void reply(Example__EchoResponse_Closure closure, void *data, const char *msg) {
  Example__EchoResponse r = EXAMPLE__ECHO_RESPONSE__INIT;
  r.message = (char *)msg;
  closure(&r, data);
}

static void release_held(prov_t *p) {
  pthread_mutex_lock(&p->mu);
  held_t *h = p->held;
  size_t n = p->nheld;
  p->held = NULL;
  p->nheld = p->capheld = 0;
  pthread_mutex_unlock(&p->mu);
  for (size_t i = 0; i < n; i++)
    reply(h[i].closure, h[i].data, h[i].message);
  free(h);
}

typedef struct slow_job {
  Example__EchoResponse_Closure closure;
  void *data;
  int ms;
  char msg[64];
  atomic_int *live; /* the provider's slow_live */
} slow_job_t;

static void *slow_thread(void *arg) {
  slow_job_t *j = arg;
  atomic_int *live = j->live;
  usleep((useconds_t)j->ms * 1000);
  reply(j->closure, j->data, j->msg);
  free(j);
  /* last: from here on this thread no longer touches the server */
  atomic_fetch_sub(live, 1);
  return NULL;
}

static void echo_impl(Example__EchoService_Service *service, const Example__EchoRequest *in,
                      Example__EchoResponse_Closure closure, void *data) {
  prov_t *p = (prov_t *)service;
  atomic_fetch_add(&p->execs, 1);
  mprpc_server_call_t *call = mprpc_server_call_from(data);
  size_t alen = 0;
  const uint8_t *att = mprpc_server_call_attachment(call, &alen);
  if (alen)
    mprpc_server_call_set_attachment(call, att, alen);
  if (p->is_child && strcmp(in->message, "exit") == 0)
    _exit(0); /* dies holding the request: the connection breaks after it */
  const mprpc_server_call_meta_t *meta = mprpc_server_call_meta(call);
  atomic_store(&p->last_log_id, meta->log_id);
  atomic_store(&p->last_trace_id, meta->trace_id);
  atomic_store(&p->last_timeout_ms, meta->timeout_ms);
  if (p->mode == MODE_BIZERR) { /* an application error: never retried */
    mprpc_server_call_set_error(call, 5000, "no such user");
    reply(closure, data, in->message);
    return;
  }
  if (p->mode == MODE_LOGOFF) { /* answers like a provider that is stopping */
    mprpc_server_call_set_error(call, MPRPC_ELOGOFF, "stopping");
    reply(closure, data, in->message);
    return;
  }
  if (p->mode == MODE_SLOW) {
    slow_job_t *j = calloc(1, sizeof *j);
    j->closure = closure;
    j->data = data;
    j->ms = p->slow_ms;
    j->live = &p->slow_live;
    snprintf(j->msg, sizeof j->msg, "%s", in->message);
    atomic_fetch_add(&p->slow_live, 1); /* before the thread can end */
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    assert_int_equal(pthread_create(&t, &a, slow_thread, j), 0);
    pthread_attr_destroy(&a);
    return;
  }
  if (p->mode == MODE_HOLD) {
    pthread_mutex_lock(&p->mu);
    if (p->nheld == p->capheld) {
      p->capheld = p->capheld ? p->capheld * 2 : 64;
      p->held = realloc(p->held, p->capheld * sizeof *p->held);
    }
    p->held[p->nheld++] = (held_t){closure, data, in->message};
    bool go = p->hold_until && p->nheld >= p->hold_until;
    pthread_mutex_unlock(&p->mu);
    if (go)
      release_held(p);
    return;
  }
  reply(closure, data, in->message);
}

/* EXAMPLE__ECHO_SERVICE__INIT(echo_) wants a function named echo_echo. */
#define echo_echo echo_impl

static int check_auth(void *ud, const uint8_t *data, size_t len, const char *peer) {
  (void)ud;
  (void)peer;
  return len == 6 && memcmp(data, "secret", 6) == 0 ? 0 : MPRPC_ERPCAUTH;
}

static bool g_need_auth; /* the next prov_start installs the authenticator */

static void prov_start(prov_t *p, int mode, uint16_t port) {
  memset(p, 0, sizeof *p);
  Example__EchoService_Service init = EXAMPLE__ECHO_SERVICE__INIT(echo_);
  p->svc = init;
  p->mode = mode;
  pthread_mutex_init(&p->mu, NULL);
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = "127.0.0.1";
  o.port = port;
  o.threads = 1;
  o.drain_timeout_ms = 2000;
  if (g_need_auth)
    o.authenticate = check_auth;
  g_need_auth = false;
  assert_int_equal(mprpc_server_new(&o, &p->srv), 0);
  assert_int_equal(mprpc_server_add_service(p->srv, &p->svc.base), 0);
  assert_int_equal(mprpc_server_start(p->srv), 0);
  p->port = mprpc_server_port(p->srv);
  assert_int_not_equal(p->port, 0);
}

static void prov_stop(prov_t *p) {
  if (!p->srv)
    return;
  /* A detached MODE_SLOW thread that has yet to answer would reply into the
   * destroyed server (use after free): wait for them all, however slow the
   * machine, rather than sleeping for a guessed while. */
  for (int i = 0; i < 3000 && atomic_load(&p->slow_live) > 0; i++)
    usleep(10000);
  assert_int_equal(atomic_load(&p->slow_live), 0);
  release_held(p);
  mprpc_server_destroy(p->srv);
  p->srv = NULL;
  release_held(p);
  pthread_mutex_destroy(&p->mu);
}

/* A provider in a child process, so it can be killed for real. */
static pid_t child_provider(uint16_t *port) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    static prov_t p;
    prov_start(&p, MODE_ECHO, 0);
    p.is_child = true;
    if (write(fds[1], &p.port, sizeof p.port) != (ssize_t)sizeof p.port)
      _exit(3);
    for (;;)
      pause();
  }
  close(fds[1]);
  ssize_t n = read(fds[0], port, sizeof *port);
  close(fds[0]);
  assert_int_equal(n, (ssize_t)sizeof *port);
  return pid;
}

static void child_kill(pid_t pid) {
  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
}

/* A socket bound to a free loopback port, not listening. */
static int bound_socket(uint16_t *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t l = sizeof a;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

/* A port nobody listens on (bound, then closed). */
static uint16_t dead_port(void) {
  uint16_t port;
  close(bound_socket(&port));
  return port;
}

/* n distinct dead ports. Calling dead_port() n times may return the same
 * port twice (each one is free again once closed), so all n stay bound
 * until the last one is picked. */
static void dead_ports(uint16_t *ports, size_t n) {
  int fds[8];
  assert_true(n <= sizeof fds / sizeof fds[0]);
  for (size_t i = 0; i < n; i++)
    fds[i] = bound_socket(&ports[i]);
  for (size_t i = 0; i < n; i++)
    close(fds[i]);
}

/* ---- client side ------------------------------------------------------------- */

typedef struct env {
  mprpc_loop_group_t *g;
  mprpc_loop_t loop;
} env_t;

static void env_start(env_t *e) {
  assert_int_equal(mprpc_loop_group_new(1, &e->g), 0);
  assert_int_equal(mprpc_loop_group_start(e->g), 0);
  e->loop = mprpc_loop_group_loop(e->g, 0);
}

static void env_stop(env_t *e) { mprpc_loop_group_free(e->g); }

static void opts_for(mprpc_channel_opts_t *o, env_t *e, const char *servers) {
  mprpc_channel_opts_init(o);
  o->loop = e->loop;
  o->transport = mprpc_tcp_transport();
  o->servers = servers;
  o->timeout_ms = 10000; /* hang guard */
}

static char *servers_str(const uint16_t *ports, size_t n) {
  static char buf[512];
  size_t off = 0;
  for (size_t i = 0; i < n; i++)
    off += (size_t)snprintf(buf + off, sizeof buf - off, "%s127.0.0.1:%u", i ? "," : "",
                            (unsigned)ports[i]);
  return buf;
}

/* One provider in `mode`, a loop, and channel options pointing at it (the
 * caller may adjust them before channel_for). */
static void one_provider_setup(prov_t *p, int mode, env_t *e, mprpc_channel_opts_t *o) {
  prov_start(p, mode, 0);
  env_start(e);
  opts_for(o, e, servers_str(&p->port, 1));
}

static mprpc_channel_t *channel_for(const mprpc_channel_opts_t *o) {
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, o, &ch), 0);
  return ch;
}

/* One async call's record. */
typedef struct rec {
  atomic_int called;
  int err;
  int attempts;
  char remote[96];
  char msg[64];
  size_t msg_len; /* the whole echoed message's, msg may hold a prefix */
  char att[64];
  struct tally *t;
} rec_t;

typedef struct tally {
  atomic_int done;
  atomic_int ok;
  atomic_int failed;
  atomic_int err_count[8];
  int errs[8]; /* codes counted in err_count */
} tally_t;

static void tally_err(tally_t *t, int err) {
  for (int i = 0; i < 8; i++) {
    if (t->errs[i] == err) {
      atomic_fetch_add(&t->err_count[i], 1);
      return;
    }
  }
}

static void on_done(const ProtobufCMessage *msg, void *arg) {
  rec_t *r = arg;
  atomic_fetch_add(&r->called, 1);
  mprpc_controller_t *ctl = mprpc_controller_current();
  assert_non_null(ctl);
  r->err = mprpc_controller_error_code(ctl);
  r->attempts = mprpc_controller_attempts(ctl);
  snprintf(r->remote, sizeof r->remote, "%s", mprpc_controller_remote(ctl));
  assert_true((msg != NULL) == (r->err == 0));
  if (msg) {
    const Example__EchoResponse *resp = (const Example__EchoResponse *)msg;
    snprintf(r->msg, sizeof r->msg, "%s", resp->message);
    r->msg_len = strlen(resp->message);
    size_t alen = 0;
    const void *a = mprpc_controller_response_attachment(ctl, &alen);
    if (alen)
      snprintf(r->att, sizeof r->att, "%.*s", (int)alen, (const char *)a);
  }
  if (r->t) {
    if (r->err == 0)
      atomic_fetch_add(&r->t->ok, 1);
    else {
      atomic_fetch_add(&r->t->failed, 1);
      tally_err(r->t, r->err);
    }
    atomic_fetch_add(&r->t->done, 1);
  }
}

static void print_failures(mprpc_channel_t *ch) {
  mprpc_channel_stats_t st;
  mprpc_channel_stats(ch, &st);
  if (st.failed == 0)
    return;
  for (size_t i = 0; i < st.ncodes; i++)
    fprintf(stderr, "  failures %s: %llu\n", mprpc_err_name(st.by_code[i].code),
            (unsigned long long)st.by_code[i].count);
}

static void wait_done(tally_t *t, int n, int seconds) {
  for (int i = 0; i < seconds * 200 && atomic_load(&t->done) < n; i++)
    usleep(5000);
  assert_int_equal(atomic_load(&t->done), n);
}

static void call_async(mprpc_channel_t *ch, const char *text, mprpc_controller_t *ctl, rec_t *r) {
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = (char *)text;
  assert_int_equal(mprpc_channel_call(ch, 0, &req.base, ctl, on_done, r), 0);
}

static void assert_once(rec_t *recs, int n) {
  for (int i = 0; i < n; i++)
    assert_int_equal(atomic_load(&recs[i].called), 1);
}

/* ---- tests -------------------------------------------------------------------- */

static void test_channel_async_and_sync_basic(void **state) {
  (void)state;
  prov_t p;
  env_t e;
  mprpc_channel_opts_t o;
  one_provider_setup(&p, MODE_ECHO, &e, &o);
  mprpc_channel_t *ch = channel_for(&o);

  /* async with an explicit controller and attachments */
  mprpc_controller_t *ctl = mprpc_controller_new();
  assert_int_equal(mprpc_controller_set_request_attachment(ctl, "att!", 4), 0);
  rec_t r = {0};
  tally_t t = {0};
  r.t = &t;
  call_async(ch, "hello", ctl, &r);
  wait_done(&t, 1, 10);
  assert_int_equal(r.err, 0);
  assert_string_equal(r.msg, "hello");
  assert_string_equal(r.att, "att!");
  assert_int_equal(r.attempts, 1);
  assert_false(mprpc_controller_failed(ctl));
  char expect_remote[64];
  snprintf(expect_remote, sizeof expect_remote, "127.0.0.1:%u", (unsigned)p.port);
  assert_string_equal(mprpc_controller_remote(ctl), expect_remote);

  /* sync through the generated stub: done has run when the stub returns */
  rec_t s = {0};
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "sync";
  example__echo_service__echo(mprpc_channel_service(ch), &req,
                              (Example__EchoResponse_Closure)on_done, &s);
  assert_int_equal(atomic_load(&s.called), 1);
  assert_int_equal(s.err, 0);
  assert_string_equal(s.msg, "sync");

  /* stub user with a controller handed over for the next call */
  mprpc_controller_reset(ctl);
  mprpc_controller_use_next(ctl);
  rec_t s2 = {0};
  req.message = "next";
  example__echo_service__echo(mprpc_channel_service(ch), &req,
                              (Example__EchoResponse_Closure)on_done, &s2);
  assert_int_equal(atomic_load(&s2.called), 1);
  assert_int_equal(mprpc_controller_attempts(ctl), 1);
  assert_true(mprpc_controller_latency_us(ctl) > 0);

  mprpc_channel_stats_t st;
  mprpc_channel_stats(ch, &st);
  assert_int_equal(st.calls, 3);
  assert_int_equal(st.ok, 3);
  assert_int_equal(st.failed, 0);
  mprpc_channel_destroy(ch);
  mprpc_controller_free(ctl);
  env_stop(&e);
  prov_stop(&p);
  assert_int_equal(atomic_load(&r.called), 1);
}

/* Responses are decoded into an arena inside the call record when they fit:
 * mprpc_controller_take_response must still hand out a message the caller
 * frees with protobuf_c_message_free_unpacked(m, NULL), whatever its size,
 * for sync calls (foreign thread) and for chained async calls on the loop
 * (recycled call records). */
enum { TAKE_N = 600 };
static const size_t take_sizes[] = {0, 5, 200, 240, 300, 5000};

static void take_fill(char *buf, size_t len, int i) {
  for (size_t k = 0; k < len; k++)
    buf[k] = (char)('A' + (i + k) % 26);
  buf[len] = 0;
}

typedef struct take_chain {
  mprpc_channel_t *ch;
  int next;
  atomic_int done;
  int bad;
  ProtobufCMessage *taken[TAKE_N];
  char buf[5001];
} take_chain_t;

static void take_issue(take_chain_t *tc);

static void take_done(const ProtobufCMessage *msg, void *arg) {
  take_chain_t *tc = arg;
  int i = tc->next - 1;
  char want[5001];
  take_fill(want, take_sizes[i % 6], i);
  const Example__EchoResponse *r = (const Example__EchoResponse *)msg;
  if (!r || strcmp(r->message, want) != 0)
    tc->bad++;
  if (i % 2 == 0) {
    mprpc_controller_t *ctl = mprpc_controller_current();
    tc->taken[i] = mprpc_controller_take_response(ctl);
    if (!tc->taken[i] || mprpc_controller_take_response(ctl) != NULL)
      tc->bad++;
  }
  if (tc->next < TAKE_N)
    take_issue(tc);
  else
    atomic_store(&tc->done, 1);
}

static void take_issue(take_chain_t *tc) {
  int i = tc->next++;
  take_fill(tc->buf, take_sizes[i % 6], i);
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = tc->buf;
  if (mprpc_channel_call(tc->ch, 0, &req.base, NULL, take_done, tc) != 0)
    tc->bad++;
}

static void take_start_on_loop(void *arg) { take_issue(arg); }

static void take_sync_cb(const ProtobufCMessage *msg, void *arg) {
  (void)msg;
  *(ProtobufCMessage **)arg = mprpc_controller_take_response(mprpc_controller_current());
}

static void test_channel_take_response_from_arena_and_heap(void **state) {
  (void)state;
  prov_t p;
  env_t e;
  mprpc_channel_opts_t o;
  one_provider_setup(&p, MODE_ECHO, &e, &o);
  mprpc_channel_t *ch = channel_for(&o);

  char buf[5001];
  for (int i = 0; i < 12; i++) { /* sync, from this thread */
    take_fill(buf, take_sizes[i % 6], i);
    Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
    req.message = buf;
    ProtobufCMessage *m = NULL;
    example__echo_service__echo(mprpc_channel_service(ch), &req,
                                (Example__EchoResponse_Closure)take_sync_cb, &m);
    assert_non_null(m);
    assert_string_equal(((Example__EchoResponse *)m)->message, buf);
    protobuf_c_message_free_unpacked(m, NULL);
  }

  take_chain_t *tc = calloc(1, sizeof *tc);
  tc->ch = ch;
  assert_int_equal(mprpc_loop_post(e.loop, take_start_on_loop, tc), 0);
  for (int k = 0; k < 2000 && !atomic_load(&tc->done); k++)
    usleep(5000);
  assert_int_equal(atomic_load(&tc->done), 1);
  assert_int_equal(tc->bad, 0);
  for (int i = 0; i < TAKE_N; i += 2) {
    take_fill(buf, take_sizes[i % 6], i);
    assert_non_null(tc->taken[i]);
    assert_string_equal(((Example__EchoResponse *)tc->taken[i])->message, buf);
    protobuf_c_message_free_unpacked(tc->taken[i], NULL);
  }
  free(tc);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  prov_stop(&p);
}

/* Calls with the channel's default timeout share one deadline list and one
 * timer; others keep their own timer. Against a provider that never
 * answers, every call still times out, never early, in deadline order
 * across both kinds; calls answered in time never fire; destroying the
 * channel with calls on the list leaves no timer behind (ASan). */
typedef struct dl_rec {
  atomic_int *seq;
  int order;  /* completion order, 1-based */
  int err;
  uint64_t latency_us;
  atomic_int done; /* times the closure ran: a second run shows */
} dl_rec_t;

static void dl_done(const ProtobufCMessage *msg, void *arg) {
  (void)msg;
  dl_rec_t *r = arg;
  mprpc_controller_t *ctl = mprpc_controller_current();
  r->err = mprpc_controller_error_code(ctl);
  r->latency_us = mprpc_controller_latency_us(ctl);
  r->order = atomic_fetch_add(r->seq, 1) + 1;
  atomic_fetch_add(&r->done, 1);
}

static void dl_call(mprpc_channel_t *ch, dl_rec_t *r, atomic_int *seq, int64_t timeout_ms,
                    mprpc_controller_t **ctl) {
  r->seq = seq;
  *ctl = NULL;
  if (timeout_ms) {
    *ctl = mprpc_controller_new();
    mprpc_controller_set_timeout_ms(*ctl, timeout_ms);
  }
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "held";
  assert_int_equal(mprpc_channel_call(ch, 0, &req.base, *ctl, dl_done, r), 0);
}

static void dl_wait(dl_rec_t *r, int n) {
  for (int k = 0; k < 6000; k++) {
    int d = 0;
    for (int i = 0; i < n; i++)
      d += atomic_load(&r[i].done) != 0;
    if (d == n)
      return;
    usleep(5000);
  }
  fail_msg("calls did not complete");
}

/* A timed-out call whose closure starts the next call (which arms the list
 * timer from inside the list timer's own callback). */
typedef struct dl_chain {
  mprpc_channel_t *ch;
  dl_rec_t first, second;
  atomic_int *seq;
} dl_chain_t;

static void dl_chain_first(const ProtobufCMessage *msg, void *arg) {
  dl_chain_t *dc = arg;
  dl_done(msg, &dc->first);
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "held";
  dc->second.seq = dc->seq;
  mprpc_channel_call(dc->ch, 0, &req.base, NULL, dl_done, &dc->second);
}

static void dl_chain_start(void *arg) {
  dl_chain_t *dc = arg;
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "held";
  dc->first.seq = dc->seq;
  mprpc_channel_call(dc->ch, 0, &req.base, NULL, dl_chain_first, dc);
}

static void test_channel_deadline_list_order_and_destroy(void **state) {
  (void)state;
  /* The orders asserted below hold when the calls are started well within
   * the gaps between these deadlines (the first A calls within
   * TMO - SHORT_TMO, the pause and the last C calls within
   * LONG_TMO - TMO), the answered calls are answered within TMO and the
   * destroys come within TMO: a second or more each (4-5x what the checks
   * once had), which a slow, loaded machine under ASan still meets, while
   * the test stays a few seconds long. PAST_MS waits out TMO. */
  enum { TMO = 1200, SHORT_TMO = 200, LONG_TMO = 2500, PAUSE_MS = 100, PAST_MS = TMO + 300 };
  prov_t p;
  env_t e;
  mprpc_channel_opts_t o;
  one_provider_setup(&p, MODE_HOLD, &e, &o);
  o.timeout_ms = TMO;
  /* The provider holds every request: after three deadlines the channel
   * would close the silent connection (test_channel_reset.c) and fail the
   * rest early; this test is about the deadline list alone. */
  o.reset_after_timeouts = -1;
  mprpc_channel_t *ch = channel_for(&o);

  enum { A = 20, C = 20, N = A + 2 + C };
  dl_rec_t r[N];
  mprpc_controller_t *ctl[N];
  memset(r, 0, sizeof r);
  atomic_int seq = 0;
  for (int i = 0; i < A; i++)
    dl_call(ch, &r[i], &seq, 0, &ctl[i]);
  dl_call(ch, &r[A], &seq, SHORT_TMO, &ctl[A]);    /* before the list's head */
  dl_call(ch, &r[A + 1], &seq, LONG_TMO, &ctl[A + 1]); /* after its tail */
  usleep(PAUSE_MS * 1000);
  for (int i = A + 2; i < N; i++)
    dl_call(ch, &r[i], &seq, 0, &ctl[i]);
  dl_wait(r, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(atomic_load(&r[i].done), 1);
    assert_int_equal(r[i].err, MPRPC_ERPCTIMEDOUT);
    uint64_t tmo = i == A ? SHORT_TMO : i == A + 1 ? LONG_TMO : TMO;
    assert_true(r[i].latency_us >= tmo * 1000); /* never early */
    mprpc_controller_free(ctl[i]);
  }
  assert_int_equal(r[A].order, 1);
  assert_int_equal(r[A + 1].order, N);
  for (int i = 0; i < A; i++)
    for (int j = A + 2; j < N; j++)
      assert_true(r[i].order < r[j].order);

  /* answered in time: no late fire, the list empties */
  dl_rec_t ok[5];
  mprpc_controller_t *okc[5];
  memset(ok, 0, sizeof ok);
  for (int i = 0; i < 5; i++)
    dl_call(ch, &ok[i], &seq, 0, &okc[i]);
  size_t held = 0;
  for (int k = 0; k < 2000 && held < N + 5; k++) {
    pthread_mutex_lock(&p.mu);
    held = p.nheld;
    pthread_mutex_unlock(&p.mu);
    if (held < N + 5)
      usleep(5000);
  }
  assert_int_equal(held, N + 5); /* all five reached the provider */
  release_held(&p);
  dl_wait(ok, 5);
  for (int i = 0; i < 5; i++)
    assert_int_equal(ok[i].err, 0);
  usleep(PAST_MS * 1000); /* past their deadlines: nothing fires twice */
  for (int i = 0; i < 5; i++)
    assert_int_equal(atomic_load(&ok[i].done), 1);

  /* destroyed with calls on the list */
  dl_rec_t d[5];
  mprpc_controller_t *dc[5];
  memset(d, 0, sizeof d);
  for (int i = 0; i < 5; i++)
    dl_call(ch, &d[i], &seq, 0, &dc[i]);
  mprpc_channel_destroy(ch);
  dl_wait(d, 5);
  for (int i = 0; i < 5; i++)
    assert_int_equal(d[i].err, MPRPC_ECANCELED);
  usleep(PAST_MS * 1000); /* past the list timer's deadline */
  for (int i = 0; i < 5; i++)
    assert_int_equal(atomic_load(&d[i].done), 1);

  /* the list timer re-armed from its own callback, then destroy: exactly
   * one timer is left to cancel (a second one would fire into freed
   * memory below) */
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  dl_chain_t *dcn = calloc(1, sizeof *dcn);
  dcn->ch = ch;
  dcn->seq = &seq;
  assert_int_equal(mprpc_loop_post(e.loop, dl_chain_start, dcn), 0);
  dl_wait(&dcn->first, 1);
  assert_int_equal(dcn->first.err, MPRPC_ERPCTIMEDOUT);
  mprpc_channel_destroy(ch);
  dl_wait(&dcn->second, 1);
  assert_int_equal(dcn->second.err, MPRPC_ECANCELED);
  usleep(PAST_MS * 1000);
  assert_int_equal(atomic_load(&dcn->first.done), 1);
  assert_int_equal(atomic_load(&dcn->second.done), 1);
  free(dcn);
  env_stop(&e);
  release_held(&p);
  prov_stop(&p);
}

/* A call made on the loop thread (from a closure) starts inside
 * mprpc_channel_call; when it fails right there (the endpoint refuses and
 * is backing off, the channel is being destroyed) its closure must still
 * run later, once, and never inside mprpc_channel_call. */
enum { INLOOP_N = 30 };
typedef struct inloop {
  mprpc_channel_t *ch;
  int in_call; /* inside mprpc_channel_call */
  int next, inside, ran[INLOOP_N + 1], errs;
  atomic_int finished;
  bool destroy_at_half, stopped;
} inloop_t;

static void inloop_done(const ProtobufCMessage *msg, void *arg);

static void inloop_issue(inloop_t *t) {
  int k = t->next++;
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "x";
  t->in_call = 1;
  int rc = mprpc_channel_call(t->ch, 0, &req.base, NULL, inloop_done, (void *)(intptr_t)t);
  t->in_call = 0;
  if (rc != 0)
    atomic_store(&t->finished, 1);
  (void)k;
}

static void inloop_done(const ProtobufCMessage *msg, void *arg) {
  inloop_t *t = (inloop_t *)arg;
  if (t->in_call)
    t->inside++;
  if (msg)
    t->errs++; /* nothing listens: every call must fail */
  t->ran[t->next - 1 < INLOOP_N ? t->next - 1 : INLOOP_N]++;
  if (t->stopped) {
    atomic_store(&t->finished, 1);
    return;
  }
  if (t->destroy_at_half && t->next == INLOOP_N / 2) {
    t->stopped = true;
    mprpc_channel_destroy(t->ch); /* from the loop: asynchronous */
    inloop_issue(t);              /* refused at start: ECANCELED */
    return;
  }
  if (t->next < INLOOP_N)
    inloop_issue(t);
  else
    atomic_store(&t->finished, 1);
}

static void inloop_start(void *arg) { inloop_issue(arg); }

static void test_channel_inloop_call_never_calls_back_inside(void **state) {
  (void)state;
  env_t e;
  env_start(&e);
  for (int round = 0; round < 2; round++) {
    uint16_t port = dead_port();
    mprpc_channel_opts_t o;
    opts_for(&o, &e, servers_str(&port, 1));
    o.max_retry = 0;
    mprpc_channel_t *ch;
    assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
    inloop_t *t = calloc(1, sizeof *t);
    t->ch = ch;
    t->destroy_at_half = round == 1;
    assert_int_equal(mprpc_loop_post(e.loop, inloop_start, t), 0);
    for (int k = 0; k < 2000 && !atomic_load(&t->finished); k++)
      usleep(5000);
    assert_int_equal(atomic_load(&t->finished), 1);
    usleep(100 * 1000); /* deferred closures, if any, have run */
    assert_int_equal(t->inside, 0);
    assert_int_equal(t->errs, 0);
    int issued = round == 0 ? INLOOP_N : INLOOP_N / 2 + 1;
    for (int k = 0; k < issued; k++)
      assert_int_equal(t->ran[k], 1);
    if (round == 0)
      mprpc_channel_destroy(ch);
    usleep(50 * 1000);
    free(t);
  }
  env_stop(&e);
}

typedef struct thr_arg {
  mprpc_channel_t *ch;
  int n;
  int failures;
  tally_t *t;
  rec_t *recs;
} thr_arg_t;

static void *sync_thread(void *arg) {
  thr_arg_t *a = arg;
  for (int i = 0; i < a->n; i++) {
    char text[32];
    snprintf(text, sizeof text, "s%d", i);
    /* an async call too, interleaved with the sync ones */
    call_async(a->ch, "async", NULL, &a->recs[i]);
    rec_t r = {0};
    Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
    req.message = text;
    example__echo_service__echo(mprpc_channel_service(a->ch), &req,
                                (Example__EchoResponse_Closure)on_done, &r);
    if (atomic_load(&r.called) != 1 || r.err != 0 || strcmp(r.msg, text) != 0)
      a->failures++;
  }
  return NULL;
}

static void test_channel_many_threads_sync_and_async(void **state) {
  (void)state;
  prov_t p;
  env_t e;
  mprpc_channel_opts_t o;
  one_provider_setup(&p, MODE_ECHO, &e, &o);
  mprpc_channel_t *ch = channel_for(&o);
  enum { T = 4, N = 150 };
  static rec_t recs[T][N];
  memset(recs, 0, sizeof recs);
  tally_t t = {0};
  thr_arg_t args[T];
  pthread_t th[T];
  for (int i = 0; i < T; i++) {
    for (int j = 0; j < N; j++)
      recs[i][j].t = &t;
    args[i] = (thr_arg_t){ch, N, 0, &t, recs[i]};
    assert_int_equal(pthread_create(&th[i], NULL, sync_thread, &args[i]), 0);
  }
  for (int i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(args[i].failures, 0);
  }
  wait_done(&t, T * N, 30);
  assert_int_equal(atomic_load(&t.ok), T * N);
  for (int i = 0; i < T; i++)
    assert_once(recs[i], N);
  assert_int_equal(atomic_load(&p.execs), 2 * T * N);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  prov_stop(&p);
}

static void test_channel_ten_thousand_in_flight_one_connection(void **state) {
  (void)state;
  enum { N = 10000 };
  prov_t p;
  prov_start(&p, MODE_HOLD, 0);
  p.hold_until = N; /* nothing is answered until all N are in flight */
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(&p.port, 1));
  o.timeout_ms = 60000;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  rec_t *recs = calloc(N, sizeof *recs);
  tally_t t = {0};
  for (int i = 0; i < N; i++) {
    recs[i].t = &t;
    call_async(ch, "x", NULL, &recs[i]);
  }
  wait_done(&t, N, 120);
  assert_int_equal(atomic_load(&t.ok), N);
  assert_once(recs, N);
  mprpc_server_stats_t ss;
  mprpc_server_stats(p.srv, &ss);
  assert_int_equal(ss.connections_accepted, 1);
  mprpc_channel_stats_t st;
  mprpc_channel_stats(ch, &st);
  assert_int_equal(st.unknown_ids, 0);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  prov_stop(&p);
  free(recs);
}

static void test_channel_timeout_slow_handler_not_retried(void **state) {
  (void)state;
  /* Each request must reach the slow provider (connect, write) within its
   * budget, else it is not run there (execs, late answers) or, never sent,
   * may be retried: a budget a loaded machine meets, and an answer well
   * after it. */
  enum { BUDGET_MS = 500, SLOW_MS = 2000 };
  prov_t slow, fast;
  prov_start(&slow, MODE_SLOW, 0);
  slow.slow_ms = SLOW_MS;
  prov_start(&fast, MODE_ECHO, 0);
  env_t e;
  env_start(&e);
  uint16_t ports[2] = {slow.port, fast.port};
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(ports, 2));
  o.timeout_ms = BUDGET_MS;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  rec_t r = {0};
  tally_t t = {0};
  r.t = &t;
  call_async(ch, "slow", NULL, &r); /* rr: first endpoint is the slow one */
  wait_done(&t, 1, 10);
  assert_int_equal(r.err, MPRPC_ERPCTIMEDOUT);
  /* an attempt timeout, non-idempotent: the outcome is unknown, no retry */
  mprpc_channel_opts_t o2;
  opts_for(&o2, &e, servers_str(ports, 2));
  o2.attempt_timeout_ms = BUDGET_MS;
  mprpc_channel_t *ch2;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o2, &ch2), 0);
  rec_t r2 = {0};
  tally_t t2 = {0};
  r2.t = &t2;
  call_async(ch2, "slow2", NULL, &r2);
  wait_done(&t2, 1, 10);
  assert_int_equal(r2.err, MPRPC_ERPCTIMEDOUT);
  assert_int_equal(r2.attempts, 1);
  assert_int_equal(atomic_load(&fast.execs), 0); /* never sent twice */
  /* the same attempt timeout on an idempotent method moves on */
  mprpc_channel_t *ch3;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o2, &ch3), 0);
  assert_int_equal(mprpc_channel_set_idempotent(ch3, "Echo", true), 0);
  rec_t r3 = {0};
  tally_t t3 = {0};
  r3.t = &t3;
  call_async(ch3, "slow3", NULL, &r3); /* rr: the slow endpoint first */
  wait_done(&t3, 1, 10);
  assert_int_equal(r3.err, 0);
  assert_int_equal(r3.attempts, 2);
  /* the late answers get discarded and counted */
  mprpc_channel_stats_t st;
  for (int i = 0; i < 1000; i++) {
    mprpc_channel_stats(ch, &st);
    if (st.late_responses >= 1)
      break;
    usleep(10000);
  }
  assert_int_equal(st.late_responses, 1);
  assert_int_equal(atomic_load(&slow.execs), 3);
  mprpc_channel_destroy(ch);
  mprpc_channel_destroy(ch2);
  mprpc_channel_destroy(ch3);
  env_stop(&e);
  prov_stop(&slow); /* waits for the slow handler threads to answer */
  prov_stop(&fast);
  assert_int_equal(atomic_load(&r.called), 1);
  assert_int_equal(atomic_load(&r2.called), 1);
  assert_int_equal(atomic_load(&r3.called), 1);
}

typedef struct load {
  mprpc_channel_t *ch;
  tally_t t;
  rec_t *recs;
  int total;
  atomic_int next;
  mprpc_loop_t loop;
} load_t;

static void load_done(const ProtobufCMessage *msg, void *arg);

static void load_issue(load_t *l) {
  int i = atomic_fetch_add(&l->next, 1);
  if (i >= l->total)
    return;
  l->recs[i].t = &l->t;
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "load";
  /* stash the load in the record's message buffer slot via a side table */
  assert_int_equal(mprpc_channel_call(l->ch, 0, &req.base, NULL, load_done, &l->recs[i]), 0);
}

static load_t *g_load;

static void load_done(const ProtobufCMessage *msg, void *arg) {
  on_done(msg, arg);
  load_issue(g_load); /* keep the concurrency up, from the loop */
}

static void load_start(load_t *l, mprpc_channel_t *ch, int total, int conc) {
  memset(l, 0, sizeof *l);
  l->ch = ch;
  l->total = total;
  l->recs = calloc((size_t)total, sizeof *l->recs);
  g_load = l;
  for (int i = 0; i < conc; i++)
    load_issue(l);
}

static void test_channel_failover_when_provider_killed(void **state) {
  (void)state;
  uint16_t ports[3];
  pid_t child = child_provider(&ports[0]);
  prov_t a, b;
  prov_start(&a, MODE_ECHO, 0);
  prov_start(&b, MODE_ECHO, 0);
  ports[1] = a.port;
  ports[2] = b.port;
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(ports, 3));
  o.idempotent_methods = "Echo";
  o.max_retry = 3;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  load_t l;
  load_start(&l, ch, 3000, 32);
  for (int i = 0; i < 2000 && atomic_load(&l.t.done) < 600; i++)
    usleep(5000);
  child_kill(child);
  wait_done(&l.t, 3000, 60);
  assert_int_equal(atomic_load(&l.t.failed), 0);
  assert_int_equal(atomic_load(&l.t.ok), 3000);
  assert_once(l.recs, 3000);
  mprpc_channel_stats_t st;
  mprpc_channel_stats(ch, &st);
  assert_true(st.ejections >= 1);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  prov_stop(&a);
  prov_stop(&b);
  free(l.recs);
}

static void test_channel_failfast_reports_error(void **state) {
  (void)state;
  prov_t a;
  prov_start(&a, MODE_ECHO, 0);
  uint16_t ports[2] = {dead_port(), a.port};
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(ports, 2));
  o.retry_policy = MPRPC_RETRY_FAILFAST;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  rec_t r = {0};
  tally_t t = {0};
  r.t = &t;
  call_async(ch, "ff", NULL, &r); /* rr: the dead one first */
  wait_done(&t, 1, 10);
  assert_int_equal(r.err, MPRPC_ECONNREFUSED);
  assert_int_equal(r.attempts, 1);
  mprpc_channel_destroy(ch);

  /* failover on the same pair: the call succeeds on the live endpoint */
  o.retry_policy = MPRPC_RETRY_FAILOVER;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  rec_t r2 = {0};
  tally_t t2 = {0};
  r2.t = &t2;
  call_async(ch, "fo", NULL, &r2);
  wait_done(&t2, 1, 10);
  assert_int_equal(r2.err, 0);
  assert_int_equal(r2.attempts, 2);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  prov_stop(&a);
  assert_int_equal(atomic_load(&r.called), 1);
  assert_int_equal(atomic_load(&r2.called), 1);
}

static void test_channel_non_idempotent_not_resent_after_break(void **state) {
  (void)state;
  uint16_t ports[2];
  pid_t child = child_provider(&ports[0]);
  prov_t a;
  prov_start(&a, MODE_ECHO, 0);
  ports[1] = a.port;
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(ports, 2));
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  rec_t r = {0};
  tally_t t = {0};
  r.t = &t;
  call_async(ch, "exit", NULL, &r); /* rr: to the child, which dies running it */
  wait_done(&t, 1, 10);
  assert_int_equal(r.err, MPRPC_EFAILEDSOCKET);
  assert_int_equal(r.attempts, 1);
  assert_int_equal(atomic_load(&a.execs), 0);
  int st;
  assert_int_equal(waitpid(child, &st, 0), child);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  prov_stop(&a);
}

static void *stopper(void *arg) {
  prov_t *p = arg;
  mprpc_server_stop(p->srv);
  return NULL;
}

static void test_channel_logoff_moves_callers(void **state) {
  (void)state;
  /* 1. ELOGOFF means "not run": even a non-idempotent call moves on, and
   * the stopping endpoint is isolated at once. */
  prov_t off, on;
  prov_start(&off, MODE_LOGOFF, 0);
  prov_start(&on, MODE_ECHO, 0);
  uint16_t p2[2] = {off.port, on.port};
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(p2, 2));
  /* isolated for the whole part: with the default 500 ms a slow machine
   * could still be running the calls below when the isolation ends, and the
   * probe call would run on `off` a second time */
  o.eject_base_ms = 60000;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  enum { N = 20 };
  rec_t recs[N];
  memset(recs, 0, sizeof recs);
  tally_t t = {0};
  for (int i = 0; i < N; i++) {
    recs[i].t = &t;
    call_async(ch, "lo", NULL, &recs[i]);
    wait_done(&t, i + 1, 10);
  }
  assert_int_equal(atomic_load(&t.failed), 0);
  assert_once(recs, N);
  assert_int_equal(recs[0].attempts, 2);
  assert_int_equal(atomic_load(&off.execs), 1); /* isolated after one ELOGOFF */
  mprpc_channel_destroy(ch);
  prov_stop(&off);
  prov_stop(&on);

  /* 2. A real graceful stop under load. The provider closes its
   * connections as soon as its calls drained, so requests still on the
   * wire then see the connection break: only idempotent calls may be
   * retried after that, hence Echo is declared idempotent here. */
  prov_t a, b;
  prov_start(&a, MODE_ECHO, 0);
  prov_start(&b, MODE_ECHO, 0);
  uint16_t ports[2] = {a.port, b.port};
  opts_for(&o, &e, servers_str(ports, 2));
  o.idempotent_methods = "Echo";
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  load_t l;
  load_start(&l, ch, 3000, 16);
  for (int i = 0; i < 2000 && atomic_load(&l.t.done) < 500; i++)
    usleep(5000);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, stopper, &a), 0);
  wait_done(&l.t, 3000, 60);
  pthread_join(th, NULL);
  print_failures(ch);
  assert_int_equal(atomic_load(&l.t.failed), 0);
  assert_once(l.recs, 3000);
  assert_true(atomic_load(&b.execs) > 0);
  mprpc_channel_stats_t st;
  mprpc_channel_stats(ch, &st);
  assert_true(st.ejections >= 1);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  prov_stop(&a);
  prov_stop(&b);
  free(l.recs);
}

static void test_channel_backup_request_wins(void **state) {
  (void)state;
  prov_t stall, good;
  prov_start(&stall, MODE_HOLD, 0);
  prov_start(&good, MODE_ECHO, 0);
  uint16_t ports[2] = {stall.port, good.port};
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(ports, 2));
  o.idempotent_methods = "*";
  o.backup_request_ms = 50;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  rec_t r = {0};
  tally_t t = {0};
  r.t = &t;
  call_async(ch, "hedge", NULL, &r);
  wait_done(&t, 1, 10);
  assert_int_equal(r.err, 0);
  assert_int_equal(r.attempts, 2);
  char expect_remote[64];
  snprintf(expect_remote, sizeof expect_remote, "127.0.0.1:%u", (unsigned)good.port);
  assert_string_equal(r.remote, expect_remote);
  mprpc_channel_stats_t st;
  mprpc_channel_stats(ch, &st);
  assert_int_equal(st.backups, 1);
  /* the stalled first attempt answers now: discarded, counted */
  release_held(&stall);
  for (int i = 0; i < 400; i++) {
    mprpc_channel_stats(ch, &st);
    if (st.late_responses >= 1)
      break;
    usleep(10000);
  }
  assert_int_equal(st.late_responses, 1);
  assert_int_equal(atomic_load(&r.called), 1);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  prov_stop(&stall);
  prov_stop(&good);
}

static void test_channel_cancel_and_destroy_with_pending(void **state) {
  (void)state;
  prov_t stall;
  prov_start(&stall, MODE_HOLD, 0);
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(&stall.port, 1));
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  mprpc_controller_t *ctl = mprpc_controller_new();
  rec_t r = {0};
  tally_t t = {0};
  r.t = &t;
  call_async(ch, "c", ctl, &r);
  for (int i = 0; i < 1000 && atomic_load(&stall.execs) < 1; i++)
    usleep(5000);
  mprpc_controller_cancel(ctl);
  wait_done(&t, 1, 10);
  assert_int_equal(r.err, MPRPC_ECANCELED);
  mprpc_controller_cancel(ctl); /* after completion: nothing happens */

  enum { N = 100 };
  rec_t recs[N];
  memset(recs, 0, sizeof recs);
  tally_t t2 = {0};
  for (int i = 0; i < N; i++) {
    recs[i].t = &t2;
    call_async(ch, "p", NULL, &recs[i]);
  }
  for (int i = 0; i < 1000 && atomic_load(&stall.execs) < 1 + N; i++)
    usleep(5000);
  mprpc_channel_destroy(ch); /* blocks until every closure ran */
  assert_int_equal(atomic_load(&t2.done), N);
  for (int i = 0; i < N; i++)
    assert_int_equal(recs[i].err, MPRPC_ECANCELED);
  assert_once(recs, N);
  usleep(50000);
  assert_int_equal(atomic_load(&r.called), 1);
  mprpc_controller_free(ctl);
  env_stop(&e);
  prov_stop(&stall);
}

/* A live provider and a dead port (returned) for one channel's options:
 * the ejection tests' setup. The options still need their timings. */
static uint16_t live_and_dead_setup(prov_t *a, env_t *e, mprpc_channel_opts_t *o) {
  prov_start(a, MODE_ECHO, 0);
  uint16_t dport = dead_port();
  uint16_t ports[2] = {dport, a->port};
  env_start(e);
  opts_for(o, e, servers_str(ports, 2));
  return dport;
}

static void test_channel_ejection_and_readmission(void **state) {
  (void)state;
  prov_t a;
  env_t e;
  mprpc_channel_opts_t o;
  uint16_t dport = live_and_dead_setup(&a, &e, &o);
  o.eject_base_ms = 100;
  o.reconnect_base_ms = 20;
  o.reconnect_max_ms = 50;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  enum { N = 50 };
  rec_t recs[N];
  memset(recs, 0, sizeof recs);
  tally_t t = {0};
  int extra_attempts = 0;
  bool seen_ejected = false;
  for (int i = 0; i < N; i++) { /* one at a time, so ejection shows */
    recs[i].t = &t;
    call_async(ch, "e", NULL, &recs[i]);
    wait_done(&t, i + 1, 10);
    assert_int_equal(recs[i].err, 0);
    extra_attempts += recs[i].attempts - 1;
    mprpc_channel_stats_t s1;
    mprpc_channel_stats(ch, &s1);
    if (s1.ejections >= 1 && !seen_ejected) {
      /* published at the ejection; only a later pick readmits */
      seen_ejected = true;
      assert_int_equal(__atomic_load_n(&ch->eps_by_state[MPRPC__EPS_EJECTED], __ATOMIC_RELAXED), 1);
      assert_int_equal(__atomic_load_n(&ch->eps_by_state[MPRPC__EPS_HEALTHY], __ATOMIC_RELAXED), 1);
    }
  }
  assert_true(seen_ejected);
  assert_once(recs, N);
  /* isolated: the dead endpoint cost one retry at first, then few */
  assert_true(extra_attempts < N / 2);
  mprpc_channel_stats_t st;
  mprpc_channel_stats(ch, &st);
  assert_true(st.ejections >= 1);
  /* bring the endpoint back: after a good reconnect it gets traffic again */
  prov_t back;
  prov_start(&back, MODE_ECHO, dport);
  tally_t t2 = {0};
  static rec_t more[2000];
  memset(more, 0, sizeof more);
  int i = 0;
  for (; i < 2000 && atomic_load(&back.execs) == 0; i++) {
    more[i].t = &t2;
    call_async(ch, "r", NULL, &more[i]);
    wait_done(&t2, i + 1, 10);
    usleep(2000);
  }
  assert_true(atomic_load(&back.execs) > 0);
  assert_int_equal(atomic_load(&t2.failed), 0);
  assert_once(more, i);
  /* the pick that readmitted it republished: both healthy again */
  assert_int_equal(__atomic_load_n(&ch->eps_by_state[MPRPC__EPS_HEALTHY], __ATOMIC_RELAXED), 2);
  assert_int_equal(__atomic_load_n(&ch->eps_by_state[MPRPC__EPS_EJECTED], __ATOMIC_RELAXED), 0);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  prov_stop(&a);
  prov_stop(&back);
}

/* The reconnect timer's probe, not a pick, can end an isolation: the
 * provider is back, the probe connects and readmits with no call in
 * flight. The next pick still republishes, so the endpoints gauge does not
 * keep saying "ejected" about an endpoint that takes traffic. */
static void test_channel_probe_readmission_republished(void **state) {
  (void)state;
  prov_t a;
  env_t e;
  mprpc_channel_opts_t o;
  uint16_t dport = live_and_dead_setup(&a, &e, &o);
  o.eject_base_ms = o.eject_max_ms = 30; /* over before the probe connects */
  o.reconnect_base_ms = o.reconnect_max_ms = 150;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  enum { N = 50 };
  rec_t recs[N];
  memset(recs, 0, sizeof recs);
  tally_t t = {0};
  mprpc_channel_stats_t st = {0};
  int n = 0;
  for (; n < N && st.ejections == 0; n++) {
    recs[n].t = &t;
    call_async(ch, "e", NULL, &recs[n]);
    wait_done(&t, n + 1, 10);
    mprpc_channel_stats(ch, &st);
  }
  assert_true(st.ejections >= 1);
  assert_int_equal(__atomic_load_n(&ch->eps_by_state[MPRPC__EPS_EJECTED], __ATOMIC_RELAXED), 1);
  prov_t back;
  prov_start(&back, MODE_ECHO, dport);
  usleep(400 * 1000); /* the isolation ends and a probe connects; no calls */
  rec_t one = {.t = &t};
  call_async(ch, "p", NULL, &one);
  wait_done(&t, n + 1, 10);
  assert_int_equal(one.err, 0);
  assert_int_equal(__atomic_load_n(&ch->eps_by_state[MPRPC__EPS_HEALTHY], __ATOMIC_RELAXED), 2);
  assert_int_equal(__atomic_load_n(&ch->eps_by_state[MPRPC__EPS_EJECTED], __ATOMIC_RELAXED), 0);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  prov_stop(&a);
  prov_stop(&back);
}

/* ---- registry subscription through a fake registry ---------------------- */

/* Delivers the list on the loop and waits until it has been: the asserts
 * after a push read what it changed. A stalled loop fails here, clearly,
 * rather than as a wrong endpoint count further on. */
static void fr_push(fake_reg_t *r) {
  if (!fake_reg_push_wait(r, 10000))
    fail_msg("the loop did not run the registry push within 10 s");
}

static void test_channel_registry_list_and_empty_protection(void **state) {
  (void)state;
  prov_t a, b;
  prov_start(&a, MODE_ECHO, 0);
  prov_start(&b, MODE_ECHO, 0);
  env_t e;
  env_start(&e);
  fake_reg_t fr;
  fake_reg_init(&fr);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, NULL);
  o.registry = fake_reg(&fr);
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  assert_string_equal(fr.sub_service, "example.EchoService");
  assert_int_equal(fr.subs, 1);
  /* a call before the first list waits for it */
  rec_t r0 = {0};
  tally_t t0 = {0};
  r0.t = &t0;
  call_async(ch, "early", NULL, &r0);
  usleep(20000);
  assert_int_equal(atomic_load(&t0.done), 0);
  fr.items[0] = (mprpc_instance_t){.service = "example.EchoService", .host = "127.0.0.1",
                                   .port = a.port};
  fr.n = 1;
  fr.health = MPRPC_REG_HEALTHY;
  fr_push(&fr);
  wait_done(&t0, 1, 10);
  assert_int_equal(r0.err, 0);
  assert_int_equal(mprpc_channel_endpoint_count(ch), 1);
  /* empty list while disconnected: the cache stays */
  fr.n = 0;
  fr.health = MPRPC_REG_DISCONNECTED;
  fr_push(&fr);
  assert_int_equal(mprpc_channel_endpoint_count(ch), 1);
  rec_t r1 = {0};
  tally_t t1 = {0};
  r1.t = &t1;
  call_async(ch, "cached", NULL, &r1);
  wait_done(&t1, 1, 10);
  assert_int_equal(r1.err, 0);
  /* a new list moves calls to b */
  fr.items[0].port = b.port;
  fr.n = 1;
  fr.health = MPRPC_REG_HEALTHY;
  fr_push(&fr);
  int before_b = atomic_load(&b.execs);
  rec_t r2 = {0};
  tally_t t2 = {0};
  r2.t = &t2;
  call_async(ch, "moved", NULL, &r2);
  wait_done(&t2, 1, 10);
  assert_int_equal(r2.err, 0);
  assert_int_equal(atomic_load(&b.execs), before_b + 1);
  /* an empty list from a healthy registry is believed: calls wait for a
   * provider within their deadline, then fail with ENOENDPOINT */
  fr.n = 0;
  fr_push(&fr);
  assert_int_equal(mprpc_channel_endpoint_count(ch), 0);
  mprpc_controller_t *ctl = mprpc_controller_new();
  mprpc_controller_set_timeout_ms(ctl, 100);
  rec_t r3 = {0};
  tally_t t3 = {0};
  r3.t = &t3;
  call_async(ch, "none", ctl, &r3);
  wait_done(&t3, 1, 10);
  assert_int_equal(r3.err, MPRPC_ENOENDPOINT);
  /* ... and a provider that comes back in time serves the waiting call */
  rec_t r4 = {0};
  tally_t t4 = {0};
  r4.t = &t4;
  call_async(ch, "back", NULL, &r4);
  usleep(20000);
  fr.n = 0;
  fr_push(&fr); /* another empty list while a call waits: it keeps waiting */
  assert_int_equal(atomic_load(&t4.done), 0);
  fr.items[0].port = a.port;
  fr.n = 1;
  fr_push(&fr);
  wait_done(&t4, 1, 10);
  assert_int_equal(r4.err, 0);
  mprpc_controller_free(ctl);
  mprpc_channel_destroy(ch);
  assert_int_equal(fr.unsub_id, fr.sub_id);
  assert_int_equal(fr.unsubs, 1);
  env_stop(&e);
  prov_stop(&a);
  prov_stop(&b);
}

static void test_channel_bad_input_never_calls_back(void **state) {
  (void)state;
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, "nonsense");
  mprpc_channel_t *ch = NULL;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), MPRPC_EADDR);
  o.servers = "127.0.0.1:1";
  o.compress_type = 4; /* brpc's LZ4: not implemented */
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch),
                   MPRPC_EUNSUPPORTED);
  o.compress_type = -1;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch),
                   MPRPC_EUNSUPPORTED);
  o.compress_type = 0;
  o.lb = 9;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), MPRPC_EINVAL);
  o.lb = MPRPC_LB_RR;
  o.idempotent_methods = "NoSuchMethod";
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch),
                   MPRPC_ENOTFOUND);
  o.idempotent_methods = NULL;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  rec_t r = {0};
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "x";
  assert_int_equal(mprpc_channel_call(ch, 5, &req.base, NULL, on_done, &r), MPRPC_EINVAL);
  Example__EchoResponse wrong = EXAMPLE__ECHO_RESPONSE__INIT;
  wrong.message = "x";
  assert_int_equal(mprpc_channel_call(ch, 0, &wrong.base, NULL, on_done, &r), MPRPC_EINVAL);
  Example__EchoRequest missing = EXAMPLE__ECHO_REQUEST__INIT; /* required field unset */
  assert_int_equal(mprpc_channel_call(ch, 0, &missing.base, NULL, on_done, &r), MPRPC_EINVAL);
  assert_int_equal(atomic_load(&r.called), 0);
  mprpc_channel_destroy(ch);
  env_stop(&e);
}

/* ---- a raw provider that answers with a wrong correlation id first ------- */

enum {
  RAW_BOGUS_THEN_RIGHT, /* an answer with an id never issued, then the right one */
  RAW_GZIP,             /* the right answer, gzip-compressed */
  RAW_BAD_GZIP,         /* compress_type gzip over bytes that are not gzip */
  RAW_LZ4,              /* compress_type 4, which mprpc does not implement */
};

typedef struct raw_srv {
  int lfd;
  uint16_t port;
  pthread_t th;
  int mode;                /* RAW_* */
  atomic_int req_compress; /* the last request's compress_type */
  atomic_int nreq;
} raw_srv_t;

static bool read_full(int fd, uint8_t *p, size_t n) {
  for (size_t got = 0; got < n;) {
    ssize_t r = read(fd, p + got, n - got);
    if (r <= 0)
      return false;
    got += (size_t)r;
  }
  return true;
}

static void send_response(int fd, int64_t cid, const char *text, int mode) {
  Example__EchoResponse resp = EXAMPLE__ECHO_RESPONSE__INIT;
  resp.message = (char *)text;
  uint8_t pl[128];
  size_t pn = protobuf_c_message_pack(&resp.base, pl);
  uint8_t *z = NULL;
  size_t zn = 0;
  mprpc_meta_t m;
  memset(&m, 0, sizeof m);
  m.has_response = true;
  m.correlation_id = cid;
  if (mode == RAW_GZIP) {
    assert_int_equal(mprpc__compress(MPRPC_COMPRESS_GZIP, pl, pn, &z, &zn), 0);
    m.compress_type = MPRPC_COMPRESS_GZIP;
  } else if (mode == RAW_BAD_GZIP) {
    m.compress_type = MPRPC_COMPRESS_GZIP; /* pl stays a plain EchoResponse */
  } else if (mode == RAW_LZ4) {
    m.compress_type = 4;
  }
  mprpc_frame_out_t out;
  assert_int_equal(mprpc_frame_encode(&out, &m, z ? z : pl, z ? zn : pn, NULL, 0), 0);
  for (int i = 0; i < out.iovcnt; i++)
    if (out.iov[i].iov_len)
      assert_int_equal(write(fd, out.iov[i].iov_base, out.iov[i].iov_len),
                       (ssize_t)out.iov[i].iov_len);
  mprpc_frame_out_free(&out);
  free(z); /* after the write: the frame points into it */
}

/* Serves one connection: for each request, first an answer with an id that
 * was never issued, then the right one. */
static void *raw_thread(void *arg) {
  raw_srv_t *r = arg;
  int fd = accept(r->lfd, NULL, NULL);
  if (fd < 0)
    return NULL;
  for (;;) {
    uint8_t hdr[12];
    if (!read_full(fd, hdr, 12))
      break;
    uint32_t body = ((uint32_t)hdr[4] << 24) | ((uint32_t)hdr[5] << 16) | ((uint32_t)hdr[6] << 8) | hdr[7];
    uint8_t *buf = malloc(12 + body);
    memcpy(buf, hdr, 12);
    if (!read_full(fd, buf + 12, body)) {
      free(buf);
      break;
    }
    mprpc_frame_t f;
    long n = mprpc_frame_parse(buf, 12 + body, 0, &f);
    assert_true(n > 0);
    atomic_store(&r->req_compress, f.meta.compress_type);
    atomic_fetch_add(&r->nreq, 1);
    if (r->mode == RAW_BOGUS_THEN_RIGHT)
      send_response(fd, f.meta.correlation_id + 1000000, "bogus", r->mode);
    send_response(fd, f.meta.correlation_id, "right", r->mode);
    free(buf);
  }
  close(fd);
  return NULL;
}

static void raw_start(raw_srv_t *r) {
  r->lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(r->lfd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(r->lfd, 4), 0);
  socklen_t l = sizeof a;
  getsockname(r->lfd, (struct sockaddr *)&a, &l);
  r->port = ntohs(a.sin_port);
  assert_int_equal(pthread_create(&r->th, NULL, raw_thread, r), 0);
}

/* Destroys the channel, which closes its connection so the raw thread
 * ends, then stops the raw provider and the environment. */
static void raw_stop(raw_srv_t *r, mprpc_channel_t *ch, env_t *e) {
  mprpc_channel_destroy(ch);
  pthread_join(r->th, NULL);
  close(r->lfd);
  env_stop(e);
}

static void test_channel_unknown_ids_ignored_and_counted(void **state) {
  (void)state;
  raw_srv_t rs = {.mode = RAW_BOGUS_THEN_RIGHT};
  raw_start(&rs);
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(&rs.port, 1));
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  enum { N = 5 };
  rec_t recs[N];
  memset(recs, 0, sizeof recs);
  tally_t t = {0};
  for (int i = 0; i < N; i++) {
    recs[i].t = &t;
    call_async(ch, "q", NULL, &recs[i]);
    wait_done(&t, i + 1, 10);
    assert_int_equal(recs[i].err, 0);
    assert_string_equal(recs[i].msg, "right");
  }
  assert_once(recs, N);
  mprpc_channel_stats_t st;
  mprpc_channel_stats(ch, &st);
  assert_int_equal(st.unknown_ids, N);
  assert_int_equal(st.late_responses, 0);
  raw_stop(&rs, ch, &e);
}

/* Every compress type, both ways: the channel compresses each request, the
 * provider answers in kind, and the channel inflates the answer. */
static void test_channel_compressed_calls(void **state) {
  (void)state;
  static const int types[] = {MPRPC_COMPRESS_SNAPPY, MPRPC_COMPRESS_GZIP, MPRPC_COMPRESS_ZLIB};
  prov_t p;
  env_t e;
  mprpc_channel_opts_t o;
  one_provider_setup(&p, MODE_ECHO, &e, &o);
  enum { BIG = 100 * 1024 };
  char *big = malloc(BIG + 1);
  assert_non_null(big);
  for (size_t i = 0; i < BIG; i++)
    big[i] = (char)('a' + i % 26);
  big[BIG] = 0;
  for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
    o.compress_type = types[k];
    mprpc_channel_t *ch = channel_for(&o);
    tally_t t = {0};
    rec_t small = {.t = &t}, large = {.t = &t};
    call_async(ch, "hello", NULL, &small);
    call_async(ch, big, NULL, &large);
    wait_done(&t, 2, 10);
    assert_int_equal(small.err, 0);
    assert_string_equal(small.msg, "hello");
    assert_int_equal(large.err, 0);
    assert_int_equal(large.msg_len, BIG);
    assert_memory_equal(large.msg, big, sizeof large.msg - 1);
    mprpc_channel_destroy(ch);
  }
  free(big);
  env_stop(&e);
  assert_int_equal(atomic_load(&p.execs), 6);
  prov_stop(&p);
}

/* Answers the channel cannot read fail that call with ERESPONSE, a clear
 * text, and nothing else: the next call on the same connection works. */
static void test_channel_compressed_response_errors(void **state) {
  (void)state;
  static const struct {
    int mode;
    int err;
    const char *text;
  } cases[] = {
      {RAW_GZIP, 0, NULL},
      {RAW_BAD_GZIP, MPRPC_ERESPONSE, "not a valid compressed stream"},
      {RAW_LZ4, MPRPC_ERESPONSE, "compress_type 4 not supported"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    raw_srv_t rs = {.mode = cases[k].mode};
    raw_start(&rs);
    env_t e;
    env_start(&e);
    mprpc_channel_opts_t o;
    opts_for(&o, &e, servers_str(&rs.port, 1));
    o.max_retry = 0;
    mprpc_channel_t *ch;
    assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
    for (int i = 0; i < 2; i++) {
      mprpc_controller_t *ctl = mprpc_controller_new();
      tally_t t = {0};
      rec_t r = {.t = &t};
      call_async(ch, "q", ctl, &r);
      wait_done(&t, 1, 10);
      assert_int_equal(r.err, cases[k].err);
      if (cases[k].err == 0)
        assert_string_equal(r.msg, "right");
      else
        assert_non_null(strstr(mprpc_controller_error_text(ctl), cases[k].text));
      mprpc_controller_free(ctl);
    }
    mprpc_channel_stats_t st;
    mprpc_channel_stats(ch, &st);
    assert_int_equal(st.calls, 2);
    raw_stop(&rs, ch, &e);
  }
}

/* The controller overrides the channel's compress_type for one call (brpc's
 * set_request_compress_type), both ways; the raw provider sees the meta. */
static void test_channel_controller_request_compress(void **state) {
  (void)state;
  raw_srv_t rs = {.mode = RAW_GZIP};
  raw_start(&rs);
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(&rs.port, 1));
  o.compress_type = MPRPC_COMPRESS_SNAPPY;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  static const struct {
    int set; /* -1: leave the controller alone */
    int want;
  } cases[] = {
      {-1, MPRPC_COMPRESS_SNAPPY},
      {MPRPC_COMPRESS_ZLIB, MPRPC_COMPRESS_ZLIB},
      {MPRPC_COMPRESS_NONE, MPRPC_COMPRESS_NONE},
      {-1, MPRPC_COMPRESS_SNAPPY}, /* a fresh controller: the channel's again */
  };
  for (int k = 0; k < 4; k++) {
    mprpc_controller_t *ctl = mprpc_controller_new();
    if (cases[k].set >= 0)
      assert_int_equal(mprpc_controller_set_request_compress(ctl, cases[k].set), 0);
    tally_t t = {0};
    rec_t r = {.t = &t};
    call_async(ch, "q", ctl, &r);
    wait_done(&t, 1, 10);
    assert_int_equal(r.err, 0);
    assert_string_equal(r.msg, "right");
    assert_int_equal(atomic_load(&rs.nreq), k + 1);
    assert_int_equal(atomic_load(&rs.req_compress), cases[k].want);
    mprpc_controller_free(ctl);
  }
  mprpc_controller_t *ctl = mprpc_controller_new();
  assert_int_equal(mprpc_controller_set_request_compress(ctl, 4), MPRPC_EINVAL);
  assert_int_equal(mprpc_controller_set_request_compress(ctl, -1), MPRPC_EINVAL);
  mprpc_controller_free(ctl);
  raw_stop(&rs, ch, &e);
}

static void test_channel_all_isolated_still_tried(void **state) {
  (void)state;
  uint16_t ports[2];
  dead_ports(ports, 2); /* two endpoints, not one listed twice */
  assert_int_not_equal(ports[0], ports[1]);
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(ports, 2));
  o.max_retry = 3;
  o.eject_base_ms = 60000; /* isolated for the whole test */
  o.reconnect_base_ms = 20;
  o.reconnect_max_ms = 40;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  rec_t r[3];
  memset(r, 0, sizeof r);
  tally_t t = {0};
  for (int i = 0; i < 3; i++) {
    r[i].t = &t;
    call_async(ch, "dead", NULL, &r[i]);
    wait_done(&t, i + 1, 10);
    /* every endpoint is isolated, yet calls go to them (not ENOENDPOINT) */
    assert_int_equal(r[i].err, MPRPC_ECONNREFUSED);
  }
  assert_int_equal(r[0].attempts, 2); /* both endpoints were really tried */
  assert_once(r, 3);
  mprpc_channel_stats_t st;
  mprpc_channel_stats(ch, &st);
  assert_int_equal(st.ejections, 2);
  /* one comes back: its background reconnect succeeds and, though still
   * isolated, it is the least bad endpoint and serves the calls */
  prov_t back;
  prov_start(&back, MODE_ECHO, ports[1]);
  tally_t t2 = {0};
  static rec_t more[1000];
  memset(more, 0, sizeof more);
  int i = 0;
  for (; i < 1000; i++) {
    more[i].t = &t2;
    call_async(ch, "again", NULL, &more[i]);
    wait_done(&t2, i + 1, 10);
    if (more[i].err == 0)
      break;
    usleep(5000);
  }
  assert_true(i < 1000);
  assert_int_equal(more[i].err, 0);
  assert_once(more, i + 1);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  prov_stop(&back);
}

static void test_channel_default_loop_and_transport(void **state) {
  (void)state;
  prov_t p;
  prov_start(&p, MODE_ECHO, 0);
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o); /* no loop, no transport: the defaults */
  o.servers = servers_str(&p.port, 1);
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  rec_t s = {0};
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "default";
  example__echo_service__echo(mprpc_channel_service(ch), &req,
                              (Example__EchoResponse_Closure)on_done, &s);
  assert_int_equal(atomic_load(&s.called), 1);
  assert_int_equal(s.err, 0);
  assert_string_equal(s.msg, "default");
  protobuf_c_service_destroy(mprpc_channel_service(ch)); /* = mprpc_channel_destroy */
  prov_stop(&p);
}

static void test_channel_meta_auth_and_errors_not_retried(void **state) {
  (void)state;
  g_need_auth = true;
  prov_t a;
  prov_start(&a, MODE_ECHO, 0);
  prov_t b;
  prov_start(&b, MODE_ECHO, 0);
  uint16_t ports[2] = {a.port, b.port};
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(ports, 2));
  o.idempotent_methods = "*"; /* even idempotent: ERPCAUTH is never retried */
  o.auth_data = "wrong!";
  o.auth_len = 6;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  rec_t r = {0};
  tally_t t = {0};
  r.t = &t;
  call_async(ch, "a", NULL, &r); /* rr: to the authenticating provider */
  wait_done(&t, 1, 10);
  assert_int_equal(r.err, MPRPC_ERPCAUTH);
  assert_int_equal(r.attempts, 1);
  assert_int_equal(atomic_load(&b.execs), 0);
  mprpc_channel_destroy(ch);

  o.auth_data = "secret";
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  mprpc_controller_t *ctl = mprpc_controller_new();
  mprpc_controller_set_log_id(ctl, 4242);
  mprpc_controller_set_trace_id(ctl, 77, 1);
  mprpc_controller_set_timeout_ms(ctl, 5000);
  rec_t r2 = {0};
  tally_t t2 = {0};
  r2.t = &t2;
  call_async(ch, "b", ctl, &r2);
  wait_done(&t2, 1, 10);
  assert_int_equal(r2.err, 0);
  assert_int_equal(atomic_load(&a.last_log_id), 4242);
  assert_int_equal(atomic_load(&a.last_trace_id), 77);
  int tmo = atomic_load(&a.last_timeout_ms); /* the remaining time, <= 5000 */
  assert_true(tmo > 0 && tmo <= 5000);
  mprpc_controller_free(ctl);
  mprpc_channel_destroy(ch);
  prov_stop(&a);
  prov_stop(&b);

  /* a business error is an answer: never retried */
  prov_t biz, ok;
  prov_start(&biz, MODE_BIZERR, 0);
  prov_start(&ok, MODE_ECHO, 0);
  uint16_t p2[2] = {biz.port, ok.port};
  opts_for(&o, &e, servers_str(p2, 2));
  o.idempotent_methods = "*";
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  rec_t r3 = {0};
  tally_t t3 = {0};
  r3.t = &t3;
  call_async(ch, "c", NULL, &r3);
  wait_done(&t3, 1, 10);
  assert_int_equal(r3.err, MPRPC_EAPP); /* 5000: the application's code */
  assert_int_equal(r3.attempts, 1);
  assert_int_equal(atomic_load(&ok.execs), 0);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  prov_stop(&biz);
  prov_stop(&ok);
}

static void test_channel_lb_hash_key_sticks_and_random_spreads(void **state) {
  (void)state;
  prov_t p[3];
  uint16_t ports[3];
  for (int i = 0; i < 3; i++) {
    prov_start(&p[i], MODE_ECHO, 0);
    ports[i] = p[i].port;
  }
  env_t e;
  env_start(&e);
  mprpc_channel_opts_t o;
  opts_for(&o, &e, servers_str(ports, 3));
  o.lb = MPRPC_LB_HASH;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  mprpc_controller_t *ctl = mprpc_controller_new();
  enum { N = 30 };
  rec_t recs[N];
  memset(recs, 0, sizeof recs);
  tally_t t = {0};
  for (int i = 0; i < N; i++) {
    mprpc_controller_set_hash_key_str(ctl, i < N / 2 ? "user-42" : "user-43");
    recs[i].t = &t;
    call_async(ch, "h", ctl, &recs[i]);
    wait_done(&t, i + 1, 10);
    assert_int_equal(recs[i].err, 0);
    /* the same key always lands on the same provider */
    if (i != 0 && i != N / 2)
      assert_string_equal(recs[i].remote, recs[i - 1].remote);
  }
  assert_once(recs, N);
  mprpc_channel_destroy(ch);
  mprpc_controller_free(ctl);

  o.lb = MPRPC_LB_RANDOM;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  enum { M = 300 };
  rec_t *more = calloc(M, sizeof *more);
  tally_t t2 = {0};
  int before[3];
  for (int i = 0; i < 3; i++)
    before[i] = atomic_load(&p[i].execs);
  for (int i = 0; i < M; i++) {
    more[i].t = &t2;
    call_async(ch, "r", NULL, &more[i]);
  }
  wait_done(&t2, M, 30);
  assert_int_equal(atomic_load(&t2.ok), M);
  assert_once(more, M);
  for (int i = 0; i < 3; i++) /* expected 100 each; a loose bound */
    assert_true(atomic_load(&p[i].execs) - before[i] > 30);
  free(more);
  mprpc_channel_destroy(ch);
  env_stop(&e);
  for (int i = 0; i < 3; i++)
    prov_stop(&p[i]);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  mprpc_log_set_level(MPRPC_LOG_LEVEL_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_channel_bad_input_never_calls_back),
      cmocka_unit_test(test_channel_async_and_sync_basic),
      cmocka_unit_test(test_channel_take_response_from_arena_and_heap),
      cmocka_unit_test(test_channel_deadline_list_order_and_destroy),
      cmocka_unit_test(test_channel_inloop_call_never_calls_back_inside),
      cmocka_unit_test(test_channel_many_threads_sync_and_async),
      cmocka_unit_test(test_channel_ten_thousand_in_flight_one_connection),
      cmocka_unit_test(test_channel_timeout_slow_handler_not_retried),
      cmocka_unit_test(test_channel_failover_when_provider_killed),
      cmocka_unit_test(test_channel_failfast_reports_error),
      cmocka_unit_test(test_channel_non_idempotent_not_resent_after_break),
      cmocka_unit_test(test_channel_logoff_moves_callers),
      cmocka_unit_test(test_channel_backup_request_wins),
      cmocka_unit_test(test_channel_cancel_and_destroy_with_pending),
      cmocka_unit_test(test_channel_ejection_and_readmission),
      cmocka_unit_test(test_channel_probe_readmission_republished),
      cmocka_unit_test(test_channel_registry_list_and_empty_protection),
      cmocka_unit_test(test_channel_lb_hash_key_sticks_and_random_spreads),
      cmocka_unit_test(test_channel_unknown_ids_ignored_and_counted),
      cmocka_unit_test(test_channel_meta_auth_and_errors_not_retried),
      cmocka_unit_test(test_channel_compressed_calls),
      cmocka_unit_test(test_channel_compressed_response_errors),
      cmocka_unit_test(test_channel_controller_request_compress),
      cmocka_unit_test(test_channel_all_isolated_still_tried),
      /* last: it starts the process-wide default loop, which stays */
      cmocka_unit_test(test_channel_default_loop_and_transport),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
