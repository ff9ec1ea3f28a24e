#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "../sim/scenario.h"
#include "../sim/sim.h"

static void rbuf_release(mprpc_rbuf_t *b) { mprpc_rbuf_free(b); }

/* ---- scheduler ----------------------------------------------------------------------- */

typedef struct order_rec {
  int seen[16];
  int n;
} order_rec_t;

typedef struct order_ev {
  order_rec_t *r;
  int tag;
} order_ev_t;

static void order_fire(void *arg) {
  order_ev_t *e = arg;
  e->r->seen[e->r->n++] = e->tag;
}

static void test_sim_scheduler_orders_by_time_then_insertion(void **state) {
  (void)state;
  mprpc_sim_world_t *w = mprpc_sim_world_new(1);
  assert_non_null(w);
  order_rec_t r = {0};
  order_ev_t ev[6];
  uint64_t delays[6] = {30, 10, 10, 0, 30, 10};
  for (int i = 0; i < 6; i++) {
    ev[i] = (order_ev_t){&r, i};
    assert_int_not_equal(mprpc_sim_at(w, delays[i], MPRPC_SIM_EV_SCEN, (uint64_t)i, order_fire,
                                      &ev[i]),
                         0);
  }
  uint64_t cancel = mprpc_sim_at(w, 5, MPRPC_SIM_EV_SCEN, 99, order_fire, &ev[0]);
  assert_true(mprpc_sim_cancel(w, cancel));
  assert_false(mprpc_sim_cancel(w, cancel));
  assert_int_equal(mprpc_sim_run_idle(w, 100), 6);
  int want[6] = {3, 1, 2, 5, 0, 4};
  assert_int_equal(r.n, 6);
  assert_memory_equal(r.seen, want, sizeof want);
  assert_int_equal(mprpc_sim_now(w), 30);
  mprpc_sim_world_free(w);
}

static void test_sim_loop_seam(void **state) {
  (void)state;
  mprpc_sim_world_t *w = mprpc_sim_world_new(7);
  mprpc_sim_loop_t *sl = mprpc_sim_loop_new(w, 0);
  mprpc_loop_t l = mprpc_sim_loop(sl);
  assert_ptr_equal(mprpc_sim_loop_from(l), sl);
  assert_true(mprpc_loop_in_loop(l));
  assert_false(mprpc_loop_can_block(l));
  order_rec_t r = {0};
  order_ev_t a = {&r, 1}, b = {&r, 2}, c = {&r, 3};
  uint64_t t = mprpc_timer_start(l, 5 * MPRPC_NS_PER_MS, order_fire, &a);
  assert_int_not_equal(t, 0);
  assert_int_equal(mprpc_loop_post(l, order_fire, &b), 0);
  assert_int_equal(mprpc_loop_post(l, order_fire, &c), 0);
  mprpc_sim_run_until(w, 10 * MPRPC_NS_PER_MS);
  int want[3] = {2, 3, 1};
  assert_int_equal(r.n, 3);
  assert_memory_equal(r.seen, want, sizeof want);
  mprpc_timer_cancel(l, t); /* already fired: no-op */
  assert_int_equal(mprpc_loop_now(l), 10 * MPRPC_NS_PER_MS);
  assert_int_equal(mprpc_loop_wall(l), MPRPC_SIM_EPOCH_NS + 10 * MPRPC_NS_PER_MS);
  mprpc_sim_loop_stop(sl, true);
  assert_int_equal(mprpc_loop_post(l, order_fire, &a), MPRPC_ESTATE);
  mprpc_sim_loop_free(sl);
  mprpc_sim_world_free(w);
}

/* ---- a small byte-stream workload on the virtual network ------------------------------------ */

typedef struct end {
  mprpc_conn_t *c;
  mprpc_rbuf_t in;
  int connects, closes, close_reason, close_err;
  size_t received;
  bool bad_byte;
  uint64_t pattern_seed;
  struct stream *s;
} end_t;

typedef struct stream {
  mprpc_sim_world_t *w;
  mprpc_sim_net_t *n;
  mprpc_transport_t t;
  mprpc_sim_loop_t *cl, *sl;
  mprpc_listener_t *lst;
  end_t client, server;
  int accepts;
  size_t sent;
  size_t total;
  int writes_refused, writable;
} stream_t;

static uint8_t pattern(size_t i) { return (uint8_t)((i * 131u + (i >> 8) * 7u) & 0xff); }

static void e_connect(mprpc_conn_t *c, void *ud) {
  end_t *e = ud;
  (void)c;
  e->connects++;
}

static void e_data(mprpc_conn_t *c, void *ud, mprpc_rbuf_t *in) {
  end_t *e = ud;
  (void)c;
  const uint8_t *p = mprpc_rbuf_data(in);
  size_t n = mprpc_rbuf_len(in);
  for (size_t i = 0; i < n; i++)
    if (p[i] != pattern(e->received + i))
      e->bad_byte = true;
  e->received += n;
  mprpc_rbuf_consume(in, n);
}

static void e_writable(mprpc_conn_t *c, void *ud) {
  end_t *e = ud;
  (void)c;
  e->s->writable++;
}

static void e_close(mprpc_conn_t *c, void *ud, int reason, int err) {
  end_t *e = ud;
  (void)c;
  e->closes++;
  e->close_reason = reason;
  e->close_err = err;
  e->c = NULL;
}

static const mprpc_conn_handler_t e_handler = {
    .on_connect = e_connect, .on_data = e_data, .on_writable = e_writable, .on_close = e_close};

static void s_accept(void *ud, mprpc_conn_t *c, mprpc_loop_t loop) {
  stream_t *s = ud;
  (void)loop;
  s->accepts++;
  s->server.c = c;
  mprpc_conn_setup(s->t, c, &e_handler, &s->server, &s->server.in);
}

static void stream_open(stream_t *s, uint64_t seed, const mprpc_sim_net_config_t *cfg) {
  memset(s, 0, sizeof *s);
  s->w = mprpc_sim_world_new(seed);
  s->n = mprpc_sim_net_new(s->w, cfg);
  s->t = mprpc_sim_net_transport(s->n);
  assert_int_equal(mprpc_sim_net_add_host(s->n), 0);
  assert_int_equal(mprpc_sim_net_add_host(s->n), 1);
  s->cl = mprpc_sim_loop_new(s->w, 0);
  s->sl = mprpc_sim_loop_new(s->w, 1);
  s->client.s = s->server.s = s;
  mprpc_loop_t sl = mprpc_sim_loop(s->sl);
  mprpc_listen_opts_t lo = {.port = 9000, .loops = &sl, .nloops = 1, .on_accept = s_accept,
                            .ud = s};
  assert_int_equal(mprpc_transport_listen(s->t, &lo, &s->lst), 0);
  assert_int_equal(mprpc_listener_port(s->t, s->lst), 9000);
}

static int stream_connect(stream_t *s, uint16_t port) {
  return mprpc_conn_connect(s->t, mprpc_sim_loop(s->cl), "10.0.0.2", port, NULL, &e_handler,
                            &s->client, &s->client.in, &s->client.c);
}

static void stream_close(stream_t *s) {
  if (s->lst)
    mprpc_listener_close(s->t, s->lst);
  mprpc_sim_net_free(s->n);
  mprpc_sim_loop_free(s->cl);
  mprpc_sim_loop_free(s->sl);
  mprpc_sim_world_free(s->w);
  rbuf_release(&s->client.in);
  rbuf_release(&s->server.in);
}

/* Writes the pattern in random-sized writes, one batch per 1 ms tick. */
static void pump_writes(void *arg) {
  stream_t *s = arg;
  if (!s->client.c)
    return;
  for (int k = 0; k < 4 && s->sent < s->total; k++) {
    size_t len = (size_t)mprpc_sim_rand_range(s->w, 1, 3000);
    if (len > s->total - s->sent)
      len = s->total - s->sent;
    uint8_t buf[3000];
    for (size_t i = 0; i < len; i++)
      buf[i] = pattern(s->sent + i);
    struct iovec iov[2] = {{buf, len / 2}, {buf + len / 2, len - len / 2}};
    int rc = mprpc_conn_writev(s->t, s->client.c, iov, 2);
    if (rc == MPRPC_EHWM) {
      s->writes_refused++;
      break;
    }
    assert_int_equal(rc, 0);
    s->sent += len;
  }
  if (s->sent < s->total)
    mprpc_sim_at(s->w, MPRPC_NS_PER_MS, MPRPC_SIM_EV_SCEN, 1, pump_writes, s);
}

static uint64_t run_stream(uint64_t seed, size_t chunk, size_t total, size_t *received,
                           bool *bad) {
  stream_t s;
  mprpc_sim_net_config_t cfg = {.chunk_max = chunk, .lat_min_ns = 100000, .lat_max_ns = 3000000,
                                .lat_tail_p = 0.05, .lat_tail_ns = 30000000};
  stream_open(&s, seed, &cfg);
  s.total = total;
  assert_int_equal(stream_connect(&s, 9000), 0);
  mprpc_sim_run_until(s.w, 50 * MPRPC_NS_PER_MS);
  assert_int_equal(s.client.connects, 1);
  assert_int_equal(s.accepts, 1);
  pump_writes(&s);
  mprpc_sim_run_until(s.w, 60 * MPRPC_NS_PER_S);
  *received = s.server.received;
  *bad = s.server.bad_byte;
  mprpc_conn_close(s.t, s.client.c, true);
  mprpc_sim_run_until(s.w, 61 * MPRPC_NS_PER_S);
  assert_int_equal(s.client.closes, 1);
  assert_int_equal(s.client.close_reason, MPRPC_CLOSE_LOCAL);
  assert_int_equal(s.server.closes, 1);
  assert_int_equal(s.server.close_reason, MPRPC_CLOSE_EOF);
  uint64_t h = mprpc_sim_trace_hash(s.w);
  stream_close(&s);
  return h;
}

static void test_sim_net_delivers_exact_bytes_in_order(void **state) {
  (void)state;
  for (uint64_t seed = 1; seed <= 6; seed++) {
    size_t got;
    bool bad;
    run_stream(seed, 0, 200000, &got, &bad);
    assert_int_equal(got, 200000);
    assert_false(bad);
  }
}

static void test_sim_net_one_byte_chunks(void **state) {
  (void)state;
  size_t got;
  bool bad;
  run_stream(3, 1, 20000, &got, &bad);
  assert_int_equal(got, 20000);
  assert_false(bad);
}

static void test_sim_same_seed_same_trace_hash(void **state) {
  (void)state;
  size_t got;
  bool bad;
  uint64_t a = run_stream(42, 0, 50000, &got, &bad);
  uint64_t b = run_stream(42, 0, 50000, &got, &bad);
  uint64_t c = run_stream(43, 0, 50000, &got, &bad);
  assert_int_equal(a, b);
  assert_int_not_equal(a, c);
}

static void test_sim_net_connect_refused_and_timeout(void **state) {
  (void)state;
  stream_t s;
  stream_open(&s, 5, NULL);
  /* No listener on that port: refused. */
  assert_int_equal(stream_connect(&s, 9001), 0);
  mprpc_sim_run_until(s.w, MPRPC_NS_PER_S);
  assert_int_equal(s.client.connects, 0);
  assert_int_equal(s.client.closes, 1);
  assert_int_equal(s.client.close_reason, MPRPC_CLOSE_CONNECT_FAILED);
  assert_int_equal(s.client.close_err, MPRPC_ECONNREFUSED);
  /* SYN into a partition: times out after the connect timeout (3 s). */
  s.client.closes = 0;
  mprpc_sim_net_partition(s.n, 0, 1, false);
  assert_int_equal(stream_connect(&s, 9000), 0);
  mprpc_sim_run_until(s.w, 3 * MPRPC_NS_PER_S);
  assert_int_equal(s.client.closes, 0);
  mprpc_sim_run_until(s.w, 5 * MPRPC_NS_PER_S);
  assert_int_equal(s.client.closes, 1);
  assert_int_equal(s.client.close_reason, MPRPC_CLOSE_CONNECT_FAILED);
  assert_int_equal(s.client.close_err, MPRPC_ETIMEDOUT);
  assert_int_equal(s.accepts, 0);
  stream_close(&s);
}

static void test_sim_net_partition_blocks_and_heals(void **state) {
  (void)state;
  stream_t s;
  stream_open(&s, 9, NULL);
  s.total = 10000;
  assert_int_equal(stream_connect(&s, 9000), 0);
  mprpc_sim_run_until(s.w, 100 * MPRPC_NS_PER_MS);
  assert_int_equal(s.client.connects, 1);
  mprpc_sim_net_partition(s.n, 0, 1, true); /* one way: client -> server */
  pump_writes(&s);
  mprpc_sim_run_until(s.w, 10 * MPRPC_NS_PER_S);
  assert_int_equal(s.sent, 10000);
  assert_int_equal(s.server.received, 0);
  assert_int_equal(s.client.closes, 0);
  assert_int_equal(s.server.closes, 0);
  mprpc_sim_net_heal(s.n, 0, 1, true);
  mprpc_sim_run_until(s.w, 11 * MPRPC_NS_PER_S);
  assert_int_equal(s.server.received, 10000);
  assert_false(s.server.bad_byte);
  /* Stall: nothing for the stall's length, then everything. */
  s.total = 20000;
  mprpc_sim_net_stall(s.n, 0, 1, 5 * MPRPC_NS_PER_S);
  pump_writes(&s);
  mprpc_sim_run_until(s.w, 15 * MPRPC_NS_PER_S);
  assert_int_equal(s.server.received, 10000);
  mprpc_sim_run_until(s.w, 17 * MPRPC_NS_PER_S);
  assert_int_equal(s.server.received, 20000);
  assert_false(s.server.bad_byte);
  stream_close(&s);
  /* The connections were still open: net_free told both ends, once. */
  assert_int_equal(s.client.closes, 1);
  assert_int_equal(s.server.closes, 1);
  assert_int_equal(s.client.close_reason, MPRPC_CLOSE_SHUTDOWN);
}

static void test_sim_net_crash_resets_with_on_close_once(void **state) {
  (void)state;
  stream_t s;
  stream_open(&s, 11, NULL);
  assert_int_equal(stream_connect(&s, 9000), 0);
  mprpc_sim_run_until(s.w, 100 * MPRPC_NS_PER_MS);
  assert_int_equal(s.accepts, 1);
  mprpc_conn_t *server_c = s.server.c;
  mprpc_sim_net_crash(s.n, 1);
  /* Deferred: nothing has been called yet. */
  assert_int_equal(s.server.closes, 0);
  /* Closing after the crash is a harmless no-op (the owner frees its state). */
  mprpc_conn_close(s.t, server_c, false);
  mprpc_sim_run_until(s.w, MPRPC_NS_PER_S);
  assert_int_equal(s.server.closes, 1);
  assert_int_equal(s.client.closes, 1);
  assert_int_equal(s.client.close_reason, MPRPC_CLOSE_RESET);
  assert_int_equal(s.client.close_err, MPRPC_ECONNRESET);
  /* While down: refused. After restart with no listener: still refused. */
  mprpc_listener_close(s.t, s.lst);
  s.lst = NULL;
  s.client.closes = 0;
  assert_int_equal(stream_connect(&s, 9000), 0);
  mprpc_sim_run_until(s.w, 2 * MPRPC_NS_PER_S);
  assert_int_equal(s.client.close_err, MPRPC_ECONNREFUSED);
  mprpc_sim_net_restart(s.n, 1);
  mprpc_loop_t sl = mprpc_sim_loop(s.sl);
  mprpc_listen_opts_t lo = {.port = 9000, .loops = &sl, .nloops = 1, .on_accept = s_accept,
                            .ud = &s};
  assert_int_equal(mprpc_transport_listen(s.t, &lo, &s.lst), 0);
  s.client.closes = 0;
  assert_int_equal(stream_connect(&s, 9000), 0);
  mprpc_sim_run_until(s.w, 3 * MPRPC_NS_PER_S);
  assert_int_equal(s.client.connects, 2);
  assert_int_equal(s.accepts, 2);
  assert_int_equal(s.client.closes, 0);
  stream_close(&s);
  assert_int_equal(s.server.closes, 2);
}

static void test_sim_net_high_water_mark(void **state) {
  (void)state;
  stream_t s;
  mprpc_sim_net_config_t cfg = {.ns_per_byte = 1000}; /* 1 MB/s */
  stream_open(&s, 13, &cfg);
  mprpc_conn_opts_t o = {.high_water = 4096};
  assert_int_equal(mprpc_conn_connect(s.t, mprpc_sim_loop(s.cl), "10.0.0.2", 9000, &o,
                                      &e_handler, &s.client, &s.client.in, &s.client.c),
                   0);
  mprpc_sim_run_until(s.w, 100 * MPRPC_NS_PER_MS);
  uint8_t buf[3000];
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = pattern(i);
  struct iovec iov = {buf, sizeof buf};
  assert_int_equal(mprpc_conn_writev(s.t, s.client.c, &iov, 1), 0);
  assert_int_equal(mprpc_conn_out_pending(s.t, s.client.c), 3000);
  iov.iov_base = buf; /* a second write would pass 4096: refused whole */
  assert_int_equal(mprpc_conn_writev(s.t, s.client.c, &iov, 1), MPRPC_EHWM);
  assert_int_equal(mprpc_conn_out_pending(s.t, s.client.c), 3000);
  mprpc_sim_run_until(s.w, 200 * MPRPC_NS_PER_MS);
  assert_int_equal(mprpc_conn_out_pending(s.t, s.client.c), 0);
  assert_int_equal(s.writable, 1);
  assert_int_equal(s.server.received, 3000);
  stream_close(&s);
}

/* ---- registry ------------------------------------------------------------------------------ */

typedef struct watch_rec {
  int calls;
  size_t last_n;
  int last_health;
  uint16_t last_port;
} watch_rec_t;

static void on_watch(void *ud, const mprpc_instance_t *items, size_t n, int health) {
  watch_rec_t *r = ud;
  r->calls++;
  r->last_n = n;
  r->last_health = health;
  r->last_port = n ? items[0].port : 0;
}

static void test_sim_registry_expiry_removes_ephemeral_and_notifies(void **state) {
  (void)state;
  mprpc_sim_world_t *w = mprpc_sim_world_new(21);
  mprpc_sim_loop_t *pl = mprpc_sim_loop_new(w, 0), *cl = mprpc_sim_loop_new(w, 1);
  mprpc_sim_zk_config_t cfg = {.session_timeout_ns = 2 * MPRPC_NS_PER_S};
  mprpc_sim_zk_t *z = mprpc_sim_zk_new(w, &cfg);
  mprpc_registry_t prov, cons;
  assert_int_equal(mprpc_sim_zk_handle(z, 0, mprpc_sim_loop(pl), &prov), 0);
  assert_int_equal(mprpc_sim_zk_handle(z, 1, mprpc_sim_loop(cl), &cons), 0);
  mprpc_instance_t inst = {.service = "example.EchoService", .host = "10.0.0.1", .port = 8000};
  assert_int_equal(mprpc_registry_register(prov, &inst), 0);
  watch_rec_t r = {0};
  uint64_t sub;
  assert_int_equal(mprpc_registry_subscribe(cons, "example.EchoService", mprpc_sim_loop(cl),
                                            on_watch, &r, &sub),
                   0);
  mprpc_sim_run_until(w, MPRPC_NS_PER_S);
  assert_int_equal(mprpc_registry_health(prov), MPRPC_REG_HEALTHY);
  assert_int_equal(mprpc_sim_zk_count(z, "example.EchoService"), 1);
  assert_int_equal(r.last_n, 1);
  assert_int_equal(r.last_port, 8000);
  assert_int_equal(r.last_health, MPRPC_REG_HEALTHY);

  /* Provider cut off from the ensemble: DISCONNECTED, its node survives
   * until the session times out, then the consumer hears it is gone. */
  mprpc_sim_zk_partition(z, 0, true);
  mprpc_sim_run_until(w, 2 * MPRPC_NS_PER_S);
  assert_int_equal(mprpc_registry_health(prov), MPRPC_REG_DISCONNECTED);
  assert_int_equal(mprpc_sim_zk_count(z, "example.EchoService"), 1);
  mprpc_sim_run_until(w, 5 * MPRPC_NS_PER_S);
  assert_int_equal(mprpc_sim_zk_count(z, "example.EchoService"), 0);
  assert_int_equal(mprpc_registry_health(prov), MPRPC_REG_EXPIRED);
  assert_int_equal(r.last_n, 0);
  assert_int_equal(r.last_health, MPRPC_REG_HEALTHY);
  assert_true(mprpc_sim_zk_expirations(z) >= 1);

  /* Healed: a new session, the node re-created, the consumer told. */
  mprpc_sim_zk_partition(z, 0, false);
  mprpc_sim_run_until(w, 7 * MPRPC_NS_PER_S);
  assert_int_equal(mprpc_registry_health(prov), MPRPC_REG_HEALTHY);
  assert_int_equal(mprpc_sim_zk_count(z, "example.EchoService"), 1);
  assert_int_equal(r.last_n, 1);

  /* Consumer side outage: it hears DISCONNECTED (with an empty list). */
  int calls = r.calls;
  mprpc_sim_zk_set_down(z, true);
  mprpc_sim_run_until(w, 20 * MPRPC_NS_PER_S);
  assert_true(r.calls > calls);
  assert_int_not_equal(r.last_health, MPRPC_REG_HEALTHY);
  assert_int_equal(mprpc_sim_zk_count(z, "example.EchoService"), 1); /* no expiry while down */
  mprpc_sim_zk_set_down(z, false);
  mprpc_sim_run_until(w, 23 * MPRPC_NS_PER_S);
  assert_int_equal(r.last_health, MPRPC_REG_HEALTHY);
  assert_int_equal(r.last_n, 1);

  /* A crashed provider's node lingers until its session expires. */
  mprpc_sim_zk_crash_handle(prov);
  mprpc_sim_run_until(w, 24 * MPRPC_NS_PER_S);
  assert_int_equal(mprpc_sim_zk_count(z, "example.EchoService"), 1);
  mprpc_sim_run_until(w, 27 * MPRPC_NS_PER_S);
  assert_int_equal(mprpc_sim_zk_count(z, "example.EchoService"), 0);
  assert_int_equal(r.last_n, 0);

  mprpc_registry_unsubscribe(cons, sub);
  mprpc_registry_close(cons);
  mprpc_sim_zk_free(z);
  mprpc_sim_loop_free(pl);
  mprpc_sim_loop_free(cl);
  mprpc_sim_world_free(w);
}

/* ---- scenarios: production server + channel on the virtual world ------------------------- */

static mprpc_sim_result_t run_scenario(const char *name, uint64_t seed, unsigned bugs,
                                       uint64_t duration_s) {
  const mprpc_sim_scenario_t *sc = mprpc_sim_scenario_find(name);
  assert_non_null(sc);
  mprpc_sim_opts_t o = {.seed = seed, .bugs = bugs, .duration_s = duration_s, .max_retry = -1};
  mprpc_sim_result_t r;
  assert_int_equal(mprpc_sim_run(sc, &o, &r), 0);
  return r;
}

static void test_sim_scenario_same_seed_same_trace_hash(void **state) {
  (void)state;
  mprpc_sim_result_t a = run_scenario("swarm", 3, 0, 15);
  mprpc_sim_result_t b = run_scenario("swarm", 3, 0, 15);
  mprpc_sim_result_t c = run_scenario("swarm", 4, 0, 15);
  assert_true(a.calls > 0);
  assert_int_equal(a.hash, b.hash);
  assert_int_equal(a.calls, b.calls);
  assert_int_equal(a.ok, b.ok);
  assert_int_equal(a.events, b.events);
  assert_int_not_equal(a.hash, c.hash);
}

static void test_sim_scenario_steady_load_all_calls_succeed(void **state) {
  (void)state;
  mprpc_sim_result_t r = run_scenario("steady", 1, 0, 10);
  assert_true(r.calls > 1000);
  assert_int_equal(r.ok, r.calls);
  assert_int_equal(r.violations, 0);
  assert_int_equal(r.executions, r.calls);
}

/* Each injected bug must be caught within a few seeds: the checker cannot
 * silently go blind. */
typedef struct bug_case {
  unsigned bug;
  const char *scenario;
  uint64_t duration_s; /* 0: the scenario's own */
} bug_case_t;

static void expect_caught(const bug_case_t *bc) {
  uint64_t viol = 0;
  for (uint64_t seed = 1; seed <= 4 && viol == 0; seed++)
    viol += run_scenario(bc->scenario, seed, bc->bug, bc->duration_s).violations;
  if (viol == 0)
    fail_msg("bug 0x%x in scenario %s was not caught", bc->bug, bc->scenario);
}

static void test_sim_catches_double_closure(void **state) {
  (void)state;
  expect_caught(&(bug_case_t){MPRPC_SIM_BUG_DOUBLE_CLOSURE, "steady", 5});
}

static void test_sim_catches_lost_closure(void **state) {
  (void)state;
  expect_caught(&(bug_case_t){MPRPC_SIM_BUG_LOST_CLOSURE, "steady", 5});
}

static void test_sim_catches_wrong_response(void **state) {
  (void)state;
  expect_caught(&(bug_case_t){MPRPC_SIM_BUG_WRONG_RESPONSE, "steady", 5});
}

static void test_sim_catches_missed_deadline(void **state) {
  (void)state;
  expect_caught(&(bug_case_t){MPRPC_SIM_BUG_NO_DEADLINE, "slow_provider", 0});
}

static void test_sim_catches_nonidempotent_retry(void **state) {
  (void)state;
  expect_caught(&(bug_case_t){MPRPC_SIM_BUG_RETRY_NONIDEM, "slow_provider", 0});
}

static void test_sim_catches_extra_retries(void **state) {
  (void)state;
  expect_caught(&(bug_case_t){MPRPC_SIM_BUG_EXTRA_RETRIES, "slow_provider", 0});
}

static void test_sim_catches_stale_registry_node(void **state) {
  (void)state;
  expect_caught(&(bug_case_t){MPRPC_SIM_BUG_STALE_NODE, "crash_restart", 0});
}

static void test_sim_catches_lost_watch(void **state) {
  (void)state;
  expect_caught(&(bug_case_t){MPRPC_SIM_BUG_LOST_WATCH, "expiry_storm", 0});
}

static void test_sim_catches_unhealed_partition(void **state) {
  (void)state;
  expect_caught(&(bug_case_t){MPRPC_SIM_BUG_NO_HEAL, "partition", 0});
}

static void test_sim_catches_run_then_logoff(void **state) {
  (void)state;
  expect_caught(&(bug_case_t){MPRPC_SIM_BUG_LYING_LOGOFF, "steady", 5});
}

static void test_sim_catches_lost_trace(void **state) {
  (void)state;
  expect_caught(&(bug_case_t){MPRPC_SIM_BUG_LOST_TRACE, "trace_hop", 3});
}

int main(void) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_OFF); /* faults make the stack chatty */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sim_scheduler_orders_by_time_then_insertion),
      cmocka_unit_test(test_sim_loop_seam),
      cmocka_unit_test(test_sim_net_delivers_exact_bytes_in_order),
      cmocka_unit_test(test_sim_net_one_byte_chunks),
      cmocka_unit_test(test_sim_same_seed_same_trace_hash),
      cmocka_unit_test(test_sim_net_connect_refused_and_timeout),
      cmocka_unit_test(test_sim_net_partition_blocks_and_heals),
      cmocka_unit_test(test_sim_net_crash_resets_with_on_close_once),
      cmocka_unit_test(test_sim_net_high_water_mark),
      cmocka_unit_test(test_sim_registry_expiry_removes_ephemeral_and_notifies),
      cmocka_unit_test(test_sim_scenario_same_seed_same_trace_hash),
      cmocka_unit_test(test_sim_scenario_steady_load_all_calls_succeed),
      cmocka_unit_test(test_sim_catches_double_closure),
      cmocka_unit_test(test_sim_catches_lost_closure),
      cmocka_unit_test(test_sim_catches_lost_trace),
      cmocka_unit_test(test_sim_catches_wrong_response),
      cmocka_unit_test(test_sim_catches_missed_deadline),
      cmocka_unit_test(test_sim_catches_nonidempotent_retry),
      cmocka_unit_test(test_sim_catches_extra_retries),
      cmocka_unit_test(test_sim_catches_stale_registry_node),
      cmocka_unit_test(test_sim_catches_lost_watch),
      cmocka_unit_test(test_sim_catches_unhealed_partition),
      cmocka_unit_test(test_sim_catches_run_then_logoff),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
