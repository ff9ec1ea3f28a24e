/*
 * Provider lifecycle: start (listen, publish), the periodic stats log, the
 * graceful stop state machine (on loops[0]), the blocking stop/run built on
 * it, and destroy (including abandoning a running server on simulated
 * loops). See docs/server.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rpcz.h"
#include "core/server_internal.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

#define SD_TICK_NS (5 * MPRPC_NS_PER_MS)
#define RUN_POLL_NS (20 * MPRPC_NS_PER_MS)

/* ---- start ---------------------------------------------------------------- */

static bool concrete_host(const char *h) {
  return h && *h && strcmp(h, "0.0.0.0") != 0 && strcmp(h, "::") != 0;
}

static void unregister_all(mprpc_server_t *s, size_t n) {
  const char *host = s->advertise_host ? s->advertise_host : s->host;
  for (size_t i = 0; i < n; i++) {
    if (s->services[i] == s->builtin)
      continue;
    int rc = mprpc_registry_unregister(s->o.registry, s->services[i]->descriptor->name, host,
                                       s->port);
    if (rc < 0)
      MPRPC_LOG_WARN("server: unregister %s from the registry: %s",
                     s->services[i]->descriptor->name, mprpc_strerror(rc));
  }
}

static int register_all(mprpc_server_t *s) {
  const char *host = s->advertise_host ? s->advertise_host : s->host;
  uint64_t start_ms = mprpc_loop_wall(s->loops[0]) / MPRPC_NS_PER_MS;
  for (size_t i = 0; i < s->nservices; i++) {
    if (s->services[i] == s->builtin)
      continue;
    const ProtobufCServiceDescriptor *d = s->services[i]->descriptor;
    size_t len = 1;
    for (unsigned k = 0; k < d->n_methods; k++)
      len += strlen(d->methods[k].name) + 1;
    char *methods = malloc(len);
    if (!methods) {
      unregister_all(s, i);
      return MPRPC_ENOMEM;
    }
    methods[0] = 0;
    size_t pos = 0;
    for (unsigned k = 0; k < d->n_methods; k++)
      pos += (size_t)snprintf(methods + pos, len - pos, "%s%s", k ? "," : "", d->methods[k].name);
    mprpc_instance_t inst = {
        .service = d->name,
        .host = host,
        .port = s->port,
        .weight = s->o.weight ? s->o.weight : MPRPC_DEFAULT_WEIGHT,
        .methods = methods,
        .version = s->version,
        .start_time_ms = start_ms,
        .group = s->group,
        .tls = s->o.tls_mode == MPRPC_SERVER_TLS_REQUIRED,
    };
    int rc = mprpc_registry_register(s->o.registry, &inst);
    free(methods);
    if (rc < 0) {
      MPRPC_LOG_ERROR("server: register %s at %s:%u: %s", d->name, host, (unsigned)s->port,
                      mprpc_strerror(rc));
      unregister_all(s, i);
      return rc;
    }
  }
  return 0;
}

static void arm_stats(mprpc_server_t *s) {
  if (atomic_load(&s->state) != SRV_RUNNING)
    return;
  /* stats_period may change at run time (POST /flags/stats_period) */
  uint64_t ms = __atomic_load_n(&s->o.stats_log_period_ms, __ATOMIC_RELAXED);
  if (!ms)
    return;
  s->stats_timer = mprpc_timer_start(s->loops[0], ms * MPRPC_NS_PER_MS,
                                     mprpc__srv_stats_tick, s);
}

void mprpc__srv_stats_tick(void *arg) {
  mprpc_server_t *s = arg;
  s->stats_timer = 0;
  if (atomic_load(&s->state) != SRV_RUNNING)
    return;
  mprpc_server_log_stats(s);
  arm_stats(s);
}

static void arm_stats_task(void *arg) {
  mprpc_server_t *s = arg;
  if (!s->zombie)
    arm_stats(s);
  mprpc__srv_task_done(s);
}

/* Owned loops (the facade's group) are stopped here; injected ones never. */
static void stop_owned_loops(mprpc_server_t *s) {
  if (s->owner.vt)
    s->owner.vt->stop(s->owner.ctx);
}

static void listener_close_now(mprpc_server_t *s) {
  if (s->listener) {
    mprpc_listener_close(s->t, s->listener);
    s->listener = NULL;
  }
  mprpc__console_unlisten(s);
}

static void listener_close_task(void *arg) {
  mprpc_server_t *s = arg;
  listener_close_now(s);
  mprpc__srv_task_done(s);
}

/* mprpc.Reflection over what was added, unless it is off, there is no
 * factory (the simulator), or the program added its own. */
static int add_reflection(mprpc_server_t *s) {
  const mprpc_service_factory_t *f = &s->o.reflection_factory;
  if (!s->o.reflection || !f->vt || s->builtin)
    return 0;
  for (size_t i = 0; i < s->nservices; i++)
    if (strcmp(s->services[i]->descriptor->name, "mprpc.Reflection") == 0)
      return 0;
  ProtobufCService *svc = NULL;
  int rc = f->vt->make(f->ctx, s->services, s->nservices, &svc);
  if (rc == 0 && (rc = mprpc_server_add_service(s, svc)) < 0)
    f->vt->destroy(f->ctx, svc);
  if (rc < 0) {
    MPRPC_LOG_ERROR("server: cannot serve mprpc.Reflection: %s", mprpc_strerror(rc));
    return rc;
  }
  s->builtin = svc;
  return 0;
}

int mprpc_server_start(mprpc_server_t *s) {
  int expect = SRV_NEW, rc;
  if (!s)
    return MPRPC_EINVAL;
  if (s->o.registry.vt && !concrete_host(s->advertise_host ? s->advertise_host : s->host)) {
    MPRPC_LOG_ERROR("server: listening on %s with a registry needs advertise_host", s->host);
    return MPRPC_ECONFIG;
  }
  if (atomic_load(&s->state) != SRV_NEW)
    return MPRPC_ESTATE;
  if ((rc = add_reflection(s)) < 0)
    return rc;
  if (!atomic_compare_exchange_strong(&s->state, &expect, SRV_RUNNING))
    return MPRPC_ESTATE;
  if (s->owner.vt) {
    rc = s->owner.vt->start(s->owner.ctx);
    if (rc < 0)
      goto fail;
  }
  if ((rc = mprpc__srv_gov_start(s)) < 0)
    goto fail;
  mprpc_listen_opts_t lo = {
      .host = s->host,
      .port = s->o.port,
      .loops = s->loops,
      .nloops = s->nloops,
      .on_accept = mprpc__srv_on_accept,
      .ud = s,
      .conn = {.high_water = s->o.high_water},
  };
  rc = mprpc_transport_listen(s->t, &lo, &s->listener);
  if (rc < 0) {
    MPRPC_LOG_ERROR("server: listen on %s:%u: %s", s->host, (unsigned)s->o.port,
                    mprpc_strerror(rc));
    s->listener = NULL;
    goto fail;
  }
  s->port = mprpc_listener_port(s->t, s->listener);
  s->start_wall_ns = mprpc_loop_wall(s->loops[0]);
  if ((rc = mprpc__console_listen(s)) < 0) {
    if (mprpc_loop_in_loop(s->loops[0]))
      listener_close_now(s);
    else if (!s->owner.vt)
      mprpc__srv_post(s, s->loops[0], listener_close_task, s);
    goto fail;
  }
  if (s->o.registry.vt) {
    rc = register_all(s);
    if (rc < 0) {
      if (mprpc_loop_in_loop(s->loops[0]))
        listener_close_now(s);
      else if (!s->owner.vt)
        mprpc__srv_post(s, s->loops[0], listener_close_task, s);
      /* owned loops close the listener when they stop */
      goto fail;
    }
  }
  MPRPC_LOG_INFO("server: listening on %s:%u with %zu loop(s), %zu service(s)", s->host,
                 (unsigned)s->port, s->nloops, s->nservices);
  if (s->o.stats_log_period_ms)
    mprpc__srv_post(s, s->loops[0], arm_stats_task, s);
  mprpc__srv_ring_start(s);
  return 0;
fail:
  stop_owned_loops(s);
  mprpc__srv_gov_stop(s);
  s->port = 0;
  atomic_store(&s->state, SRV_STOPPED);
  return rc;
}

/* ---- graceful stop --------------------------------------------------------- */

enum { SD_DRAIN = 1, SD_CLOSING, SD_DONE };

static void close_all(srv_loop_t *l) {
  for (srv_conn_t *c = l->conns; c; c = c->next)
    mprpc__srv_conn_close(c, true);
  atomic_fetch_sub(&l->s->closeall_pending, 1);
}

static void close_all_task(void *arg) {
  srv_loop_t *l = arg;
  mprpc_server_t *s = l->s;
  if (!s->zombie)
    close_all(l);
  mprpc__srv_task_done(s);
}

/* Names the methods still running when the drain gives up, so the
 * operator knows which handler did not finish: "inv.Stock.Reserve x2". */
static void warn_drain_timeout(const mprpc_server_t *s, uint64_t left) {
  char names[512];
  size_t len = 0, listed = 0;
  names[0] = '\0';
  for (size_t i = 0; i < s->nmethods; i++) {
    const srv_method_t *m = s->methods[i];
    uint64_t n = mprpc__srv_method_inflight(s, m);
    if (n == 0)
      continue;
    int w = snprintf(names + len, sizeof names - len, "%s%s.%s x%llu", listed ? ", " : "",
                     m->service, m->name, (unsigned long long)n);
    if (w < 0 || (size_t)w >= sizeof names - len) {
      names[len] = '\0';
      snprintf(names + len, sizeof names - len, "%s...", listed ? ", " : "");
      break;
    }
    len += (size_t)w;
    listed++;
  }
  MPRPC_LOG_WARN("server: drain timeout with %llu call(s) in flight (%s); closing anyway",
                 (unsigned long long)left, names);
}

static void sd_tick(void *arg) {
  mprpc_server_t *s = arg;
  s->sd_timer = 0;
  if (s->sd_phase == SD_DRAIN) {
    uint64_t left = mprpc__srv_inflight(s);
    uint64_t now = mprpc_loop_now(s->loops[0]);
    if ((left > 0 || now < s->sd_grace_end) && now < s->sd_deadline) {
      s->sd_timer = mprpc_timer_start(s->loops[0], SD_TICK_NS, sd_tick, s);
      return;
    }
    if (left > 0)
      warn_drain_timeout(s, left);
    s->sd_phase = SD_CLOSING;
    atomic_store(&s->closeall_pending, (int)s->nloops);
    for (size_t i = 1; i < s->nloops; i++)
      if (mprpc__srv_post(s, s->loops[i], close_all_task, &s->sl[i]) < 0)
        atomic_fetch_sub(&s->closeall_pending, 1);
    close_all(&s->sl[0]);
  }
  if (s->sd_phase == SD_CLOSING) {
    if (atomic_load(&s->open_conns) > 0 || atomic_load(&s->closeall_pending) > 0) {
      s->sd_timer = mprpc_timer_start(s->loops[0], SD_TICK_NS, sd_tick, s);
      return;
    }
    s->sd_phase = SD_DONE;
    atomic_store(&s->state, SRV_STOPPED);
    MPRPC_LOG_INFO("server: stopped (port %u)", (unsigned)s->port);
    mprpc_server_done_cb done = s->sd_done;
    s->sd_done = NULL;
    if (done)
      done(s->sd_ud);
  }
}

static void sd_begin(mprpc_server_t *s) {
  listener_close_now(s);
  mprpc__srv_gov_stop(s);
  mprpc_timer_cancel(s->loops[0], s->stats_timer);
  s->stats_timer = 0;
  mprpc__srv_ring_stop(s);
  s->sd_phase = SD_DRAIN;
  uint64_t now = mprpc_loop_now(s->loops[0]);
  uint64_t grace = s->o.logoff_grace_ms < s->o.drain_timeout_ms ? s->o.logoff_grace_ms
                                                                 : s->o.drain_timeout_ms;
  s->sd_deadline = now + s->o.drain_timeout_ms * MPRPC_NS_PER_MS;
  /* Requests already on the wire when we unregistered still arrive for a
   * while: answer them ELOGOFF (surely not run, so clients fail over even
   * for non-idempotent methods) rather than close under them. */
  s->sd_grace_end = now + grace * MPRPC_NS_PER_MS;
  sd_tick(s);
}

static void sd_begin_task(void *arg) {
  mprpc_server_t *s = arg;
  if (!s->zombie)
    sd_begin(s);
  mprpc__srv_task_done(s);
}

int mprpc_server_shutdown(mprpc_server_t *s, mprpc_server_done_cb done, void *ud) {
  int expect = SRV_RUNNING;
  if (!s)
    return MPRPC_EINVAL;
  if (!atomic_compare_exchange_strong(&s->state, &expect, SRV_STOPPING))
    return MPRPC_ESTATE;
  MPRPC_LOG_INFO("server: stopping (port %u)", (unsigned)s->port);
  /* Unregister first so consumers stop picking us while we drain. */
  if (s->o.registry.vt)
    unregister_all(s, s->nservices);
  atomic_store(&s->stopping, 1);
  s->sd_done = done;
  s->sd_ud = ud;
  if (mprpc_loop_in_loop(s->loops[0])) {
    sd_begin(s);
    return 0;
  }
  int rc = mprpc__srv_post(s, s->loops[0], sd_begin_task, s);
  if (rc < 0) {
    s->sd_done = NULL;
    atomic_store(&s->state, SRV_STOPPED);
  }
  return rc;
}

static void wake_waiter(void *arg) {
  void **pair = arg; /* {loop ctx-owning server, waiter} */
  mprpc_server_t *s = pair[0];
  s->loops[0].vt->waiter_wake(s->loops[0].ctx, pair[1]);
}

static void wake_run(mprpc_server_t *s) {
  if (s->run_waiter && !atomic_exchange(&s->run_woken, 1))
    s->loops[0].vt->waiter_wake(s->loops[0].ctx, s->run_waiter);
}

int mprpc_server_stop(mprpc_server_t *s) {
  if (!s)
    return MPRPC_EINVAL;
  int st = atomic_load(&s->state);
  if (st == SRV_NEW || st == SRV_STOPPED) {
    wake_run(s);
    return 0;
  }
  if (!mprpc_loop_can_block(s->loops[0]))
    return MPRPC_EUNSUPPORTED;
  for (size_t i = 0; i < s->nloops; i++)
    if (mprpc_loop_in_loop(s->loops[i])) {
      MPRPC_LOG_ERROR("server: mprpc_server_stop called on a loop thread; "
                      "use mprpc_server_shutdown there");
      return MPRPC_ESTATE;
    }
  void *w = s->loops[0].vt->waiter_new(s->loops[0].ctx);
  if (!w)
    return MPRPC_ENOMEM;
  void *pair[2] = {s, w};
  int rc = mprpc_server_shutdown(s, wake_waiter, pair);
  if (rc == 0)
    s->loops[0].vt->waiter_wait(s->loops[0].ctx, w);
  s->loops[0].vt->waiter_free(s->loops[0].ctx, w);
  if (rc == MPRPC_ESTATE)
    return 0; /* another thread is stopping it; that thread finishes the job */
  stop_owned_loops(s);
  wake_run(s);
  return rc;
}

void mprpc_server_stop_async(mprpc_server_t *s) {
  if (s)
    atomic_store(&s->stop_requested, 1);
}

static void run_poll(void *arg) {
  mprpc_server_t *s = arg;
  s->run_timer = 0;
  if (s->zombie)
    return;
  if (atomic_load(&s->run_woken))
    return;
  int st = atomic_load(&s->state);
  /* STOPPED: a stop finished before run() published its waiter. STOPPING by
   * another thread: keep polling, that thread wakes run() when done. */
  if (st == SRV_STOPPED || (st == SRV_RUNNING && atomic_load(&s->stop_requested))) {
    wake_run(s);
    return;
  }
  s->run_timer = mprpc_timer_start(s->loops[0], RUN_POLL_NS, run_poll, s);
}

static void run_poll_task(void *arg) {
  mprpc_server_t *s = arg;
  run_poll(s);
  mprpc__srv_task_done(s);
}

int mprpc_server_run(mprpc_server_t *s) {
  if (!s)
    return MPRPC_EINVAL;
  if (!mprpc_loop_can_block(s->loops[0]))
    return MPRPC_EUNSUPPORTED;
  if (atomic_load(&s->state) == SRV_NEW) {
    int rc = mprpc_server_start(s);
    if (rc < 0)
      return rc;
  }
  if (atomic_load(&s->state) != SRV_RUNNING)
    return MPRPC_ESTATE;
  s->run_waiter = s->loops[0].vt->waiter_new(s->loops[0].ctx);
  if (!s->run_waiter)
    return MPRPC_ENOMEM;
  atomic_store(&s->run_woken, 0);
  int rc = mprpc__srv_post(s, s->loops[0], run_poll_task, s);
  if (rc == 0)
    s->loops[0].vt->waiter_wait(s->loops[0].ctx, s->run_waiter);
  void *w = s->run_waiter;
  s->run_waiter = NULL;
  s->loops[0].vt->waiter_free(s->loops[0].ctx, w);
  if (atomic_load(&s->state) == SRV_RUNNING)
    rc = mprpc_server_stop(s);
  return rc;
}

/* ---- destroy --------------------------------------------------------------- */

/* Non-blocking loops (simulator) and a server still running: the process
 * "dies" without a goodbye (no unregister, no drain): timers are cancelled,
 * the listener and every connection closed, and the memory is freed once the
 * last on_close and posted task have run (at once when none is pending).
 * Single-threaded environments only, which is what non-blocking loops are. */
static void abandon(mprpc_server_t *s) {
  MPRPC_LOG_WARN("server: destroyed while running (port %u): closing without a graceful stop",
                 (unsigned)s->port);
  atomic_store(&s->stopping, 1);
  atomic_store(&s->state, SRV_STOPPED);
  s->sd_done = NULL;
  mprpc_timer_cancel(s->loops[0], s->sd_timer);
  mprpc_timer_cancel(s->loops[0], s->stats_timer);
  mprpc_timer_cancel(s->loops[0], s->run_timer);
  s->sd_timer = s->stats_timer = s->run_timer = 0;
  mprpc__srv_ring_stop(s);
  listener_close_now(s);
  mprpc__srv_gov_stop(s);
  for (size_t i = 0; i < s->nloops; i++)
    for (srv_conn_t *c = s->sl[i].conns; c; c = c->next)
      mprpc__srv_conn_close(c, false);
  if (atomic_load(&s->tasks) > 0 || atomic_load(&s->open_conns) > 0)
    s->zombie = true;
}

static void server_destroy(mprpc_server_t *s) {
  int st = atomic_load(&s->state);
  if (st == SRV_RUNNING || st == SRV_STOPPING) {
    if (mprpc_loop_can_block(s->loops[0])) {
      mprpc_server_stop(s);
    } else {
      abandon(s);
      if (s->zombie)
        return;
    }
  }
  stop_owned_loops(s);
  mprpc__srv_free_all(s);
}

/* opts.own_registry (mprpc_server_from_config): the registry is closed
 * after everything else, once nothing of the server can use it. */
void mprpc_server_destroy(mprpc_server_t *s) {
  if (!s)
    return;
  mprpc_registry_t owned = s->o.own_registry ? s->o.registry : (mprpc_registry_t){0};
  server_destroy(s);
  mprpc_registry_close(owned);
}

void mprpc__srv_free_all(mprpc_server_t *s) {
  /* Also the unwinding path of mprpc_server_new: sl may not exist yet. */
  for (size_t i = 0; s->sl && i < s->nloops; i++) {
    srv_loop_t *l = &s->sl[i];
    srv_conn_t *c = l->conns;
    while (c) {
      srv_conn_t *next = c->next;
      mprpc_server_call_t *call = c->calls;
      while (call) {
        mprpc_server_call_t *cn = call->next;
        mprpc__srv_call_destroy(call);
        call = cn;
      }
      mprpc_rbuf_free(&c->in);
      mprpc__console_conn_free(c);
      free(c->wbuf);
      free(c);
      c = next;
    }
    for (size_t q = 0; q < MPRPC__QUARANTINE; q++)
      free(l->quarantine[q]);
    mprpc__srv_pool_free(l);
  }
  mprpc__srv_budget_free(s);
  if (s->owner.vt)
    s->owner.vt->free(s->owner.ctx);
  for (size_t i = 0; i < s->nmethods; i++) {
    free(s->methods[i]->st);
    mprpc__srv_ring_free(s->methods[i]);
    free(s->methods[i]);
  }
  free(s->methods);
  if (s->builtin)
    s->o.reflection_factory.vt->destroy(s->o.reflection_factory.ctx, s->builtin);
  free(s->services);
  mprpc__rpcz_free(s->rpcz);
  free(s->stab);
  free(s->mtab);
  free(s->sl);
  free(s->loops);
  free(s->host);
  free(s->advertise_host);
  free(s->version);
  mprpc__srv_gov_free(s);
  free(s->group);
  free(s->gov_text);
  free(s->gov_name);
  free(s);
}
