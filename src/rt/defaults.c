/*
 * The runtime's defaults for the core's constructors.
 *
 * The provider and channel engines (src/core, libmprpc-core.a) take their
 * environment: loops, a transport and, for a server, hooks for loops it owns.
 * This facade keeps the everyday API what it always was: a server given no
 * transport gets a group of `threads` libev loops and TCP, a channel given no
 * loop gets the process-wide default loop and given no transport gets TCP.
 * It is the only place that picks them (the lint keeps rt names out of
 * src/core). It also puts the TLS decorator (src/rt/tls.c) over the
 * transport when the options ask for TLS.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <string.h>

#include "mprpc/channel.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/reflection.h"
#include "mprpc/rt.h"
#include "mprpc/server.h"
#include "mprpc/tls.h"
#include "rt/pool.h"
#include "rt/rt_internal.h"

/* What a server made here owns: its loop group (unless the caller injected
 * loops) and its handler pool (handler_threads). Stopped in that order: the
 * loops first, so no new handler is submitted, then the pool, which runs
 * what is queued and joins its threads before the server frees anything. */
typedef struct owned {
  mprpc_loop_group_t *g;
  mprpc__pool_t *pool;
  mprpc_tls_ctx_t *tls; /* the server's TLS context (tls_mode != OFF) */
} owned_t;

static int owned_start(void *ctx) {
  owned_t *o = ctx;
  return o->g ? mprpc_loop_group_start(o->g) : 0;
}
static void owned_stop(void *ctx) {
  owned_t *o = ctx;
  if (o->g)
    mprpc_loop_group_stop(o->g);
  if (o->pool)
    mprpc__pool_stop(o->pool);
}
static void owned_free(void *ctx) {
  owned_t *o = ctx;
  if (o->g)
    mprpc_loop_group_free(o->g);
  mprpc__pool_free(o->pool);
  mprpc_tls_ctx_free(o->tls); /* connections still open keep it alive */
  free(o);
}

static int owned_reload_tls(void *ctx, char *err, size_t errlen) {
  owned_t *o = ctx;
  if (!o->tls)
    return MPRPC_EUNSUPPORTED;
  return mprpc_tls_ctx_reload(o->tls, err, errlen);
}

static const mprpc_loop_owner_ops_t owned_ops = {
    .start = owned_start,
    .stop = owned_stop,
    .free = owned_free,
    .reload_tls = owned_reload_tls,
};

/* max_connections when the caller left it 0 and TCP is ours: the soft
 * RLIMIT_NOFILE less a reserve (an eighth, at least 64) for the listener,
 * the logger, the registry and the handlers' own connections, so the limit
 * is met before accept fails with EMFILE. */
static uint32_t default_max_connections(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
    return UINT32_MAX; /* unlimited */
  rlim_t cur = rl.rlim_cur, reserve = cur / 8 < 64 ? 64 : cur / 8;
  if (cur <= reserve + 16)
    return 16;
  cur -= reserve;
  return cur >= UINT32_MAX ? UINT32_MAX - 1 : (uint32_t)cur;
}

/* The provider's TLS context from its options; the files are read now, so
 * a bad one fails mprpc_server_new with its name in the log. */
static int server_tls_ctx(const mprpc_server_opts_t *so, mprpc_tls_ctx_t **out) {
  static const int modes[] = {MPRPC_TLS_OFF, MPRPC_TLS_OPTIONAL, MPRPC_TLS_REQUIRED};
  static const int verify[] = {MPRPC_TLS_VERIFY_OFF, MPRPC_TLS_VERIFY_OPTIONAL,
                               MPRPC_TLS_VERIFY_REQUIRED};
  if (so->tls_mode < 0 || so->tls_mode > 2 || so->tls_verify_client < 0 ||
      so->tls_verify_client > 2 || !so->tls_cert || !so->tls_key) {
    MPRPC_LOG_ERROR("server: tls_mode %d needs tls_cert and tls_key (and tls_verify_client "
                    "0..2, got %d)",
                    so->tls_mode, so->tls_verify_client);
    return MPRPC_EINVAL;
  }
  mprpc_tls_opts_t t = {
      .role = MPRPC_TLS_SERVER,
      .cert_file = so->tls_cert,
      .key_file = so->tls_key,
      .ca_file = so->tls_ca,
      .mode = modes[so->tls_mode],
      .verify_peer = verify[so->tls_verify_client],
      .handshake_timeout_ns = so->tls_handshake_timeout_ms * MPRPC_NS_PER_MS,
  };
  char err[512];
  int rc = mprpc_tls_ctx_new(&t, out, err, sizeof err);
  if (rc < 0)
    MPRPC_LOG_ERROR("server: tls: %s", err);
  return rc;
}

static const mprpc_executor_ops_t pool_ops = {.submit = mprpc__pool_submit};

/* mprpc.Reflection (src/util/reflection.c) as the server's builtin. */
static int reflection_make(void *ctx, ProtobufCService *const *services, size_t n,
                           ProtobufCService **out) {
  (void)ctx;
  return mprpc_reflection_service_new(services, n, out);
}
static void reflection_destroy(void *ctx, ProtobufCService *svc) {
  (void)ctx;
  mprpc_reflection_service_free(svc);
}
static const mprpc_service_factory_ops_t reflection_ops = {
    .make = reflection_make,
    .destroy = reflection_destroy,
};

int mprpc_server_new(const mprpc_server_opts_t *opts, mprpc_server_t **out) {
  if (!opts || !out)
    return MPRPC_EINVAL;
  mprpc_server_opts_t o = *opts;
  mprpc__rt_console_seams(&o); /* JSON, /proc, the process's channels */
  if (!o.reflection_factory.vt)
    o.reflection_factory = (mprpc_service_factory_t){.vt = &reflection_ops};
  bool want_pool = opts->handler_threads > 0 && !opts->executor.vt;
  bool want_tls = opts->tls_mode != MPRPC_SERVER_TLS_OFF;
  if (opts->transport.vt && !want_pool && !want_tls)
    return mprpc_server_new_in(&o, (mprpc_loop_owner_t){0}, out);
  mprpc_loop_t *loops = NULL;
  int rc = MPRPC_ENOMEM;
  owned_t *own = calloc(1, sizeof *own);
  if (!own)
    return MPRPC_ENOMEM;
  if (want_pool) {
    if ((rc = mprpc__pool_new(opts->handler_threads, &own->pool)) < 0)
      goto fail;
    o.executor = (mprpc_executor_t){.vt = &pool_ops, .ctx = own->pool};
  }
  if (!opts->transport.vt) {
    if ((rc = mprpc_loop_group_new(opts->threads ? opts->threads : 1, &own->g)) < 0)
      goto fail;
    size_t n = mprpc_loop_group_size(own->g);
    rc = MPRPC_ENOMEM;
    if (!(loops = calloc(n, sizeof *loops)))
      goto fail;
    for (size_t i = 0; i < n; i++)
      loops[i] = mprpc_loop_group_loop(own->g, i);
    o.transport = mprpc_tcp_transport();
    o.loops = loops;
    o.nloops = n;
    if (o.max_connections == 0)
      o.max_connections = default_max_connections();
  }
  if (want_tls) {
    if ((rc = server_tls_ctx(opts, &own->tls)) < 0)
      goto fail;
    o.transport = mprpc_tls_transport(o.transport, own->tls);
  }
  rc = mprpc_server_new_in(&o, (mprpc_loop_owner_t){.vt = &owned_ops, .ctx = own}, out);
fail:
  free(loops); /* the server copied the array */
  if (rc < 0)
    owned_free(own); /* a server that failed to build did not take it */
  return rc;
}

/* Client TLS contexts, one per distinct configuration and inner
 * transport, shared by every channel made with it (so sessions resume
 * across channels too) and kept for the life of the process: a channel
 * has no hook to release one, and there are as many as configurations. */
typedef struct client_tls {
  struct client_tls *next;
  char *key; /* ca\ncert\nkey\nserver_name\nverify */
  mprpc_transport_t inner;
  mprpc_tls_ctx_t *ctx;
} client_tls_t;

static pthread_mutex_t ctls_mu = PTHREAD_MUTEX_INITIALIZER;
static client_tls_t *ctls_head;

static int client_tls_transport(const mprpc_channel_opts_t *o, mprpc_transport_t inner,
                                mprpc_transport_t *out) {
  char *key = NULL;
  int rc = MPRPC_ENOMEM;
  int n = snprintf(NULL, 0, "%s\n%s\n%s\n%s\n%d", o->tls_ca ? o->tls_ca : "",
                   o->tls_cert ? o->tls_cert : "", o->tls_key ? o->tls_key : "",
                   o->tls_server_name ? o->tls_server_name : "", o->tls_no_verify);
  if (n < 0 || !(key = malloc((size_t)n + 1)))
    return MPRPC_ENOMEM;
  snprintf(key, (size_t)n + 1, "%s\n%s\n%s\n%s\n%d", o->tls_ca ? o->tls_ca : "",
           o->tls_cert ? o->tls_cert : "", o->tls_key ? o->tls_key : "",
           o->tls_server_name ? o->tls_server_name : "", o->tls_no_verify);
  pthread_mutex_lock(&ctls_mu);
  client_tls_t *e = ctls_head;
  while (e && !(strcmp(e->key, key) == 0 && e->inner.vt == inner.vt && e->inner.ctx == inner.ctx))
    e = e->next;
  if (!e) {
    mprpc_tls_opts_t t = {
        .role = MPRPC_TLS_CLIENT,
        .ca_file = o->tls_ca,
        .cert_file = o->tls_cert,
        .key_file = o->tls_key,
        .server_name = o->tls_server_name,
        .verify_peer = o->tls_no_verify ? MPRPC_TLS_VERIFY_OFF : MPRPC_TLS_VERIFY_REQUIRED,
    };
    char err[512];
    mprpc_tls_ctx_t *ctx = NULL;
    if ((rc = mprpc_tls_ctx_new(&t, &ctx, err, sizeof err)) < 0) {
      MPRPC_LOG_ERROR("channel: tls: %s", err);
      goto out;
    }
    if (!(e = calloc(1, sizeof *e))) {
      mprpc_tls_ctx_free(ctx);
      rc = MPRPC_ENOMEM;
      goto out;
    }
    e->key = key;
    key = NULL;
    e->inner = inner;
    e->ctx = ctx;
    e->next = ctls_head;
    ctls_head = e;
  }
  *out = mprpc_tls_transport(e->inner, e->ctx); /* always the same inner */
  rc = 0;
out:
  pthread_mutex_unlock(&ctls_mu);
  free(key);
  return rc;
}

int mprpc_channel_new(const ProtobufCServiceDescriptor *sd, const mprpc_channel_opts_t *opts,
                      mprpc_channel_t **out) {
  mprpc_channel_opts_t o;
  if (!sd || !out)
    return MPRPC_EINVAL;
  if (opts)
    o = *opts;
  else
    mprpc_channel_opts_init(&o);
  if (!o.loop.vt) {
    int rc = mprpc_default_loop(&o.loop);
    if (rc != 0)
      return rc;
  }
  if (!o.transport.vt)
    o.transport = mprpc_tcp_transport();
  if (!o.list.vt)
    o.list = mprpc_process_channels(); /* for the console's client metrics */
  if (o.tls) {
    int rc = client_tls_transport(&o, o.transport, &o.transport);
    if (rc != 0)
      return rc;
  }
  return mprpc_channel_new_in(sd, &o, out);
}
