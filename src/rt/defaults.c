/*
 * The runtime's defaults for the core's constructors.
 *
 * The provider and channel engines (src/core, libmprpc-core.a) take their
 * environment: loops, a transport and, for a server, hooks for loops it owns.
 * This facade keeps the everyday API what it always was: a server given no
 * transport gets a group of `threads` libev loops and TCP, a channel given no
 * loop gets the process-wide default loop and given no transport gets TCP.
 * It is the only place that picks them (the lint keeps rt names out of
 * src/core).
 */
#include <stdlib.h>

#include "mprpc/channel.h"
#include "mprpc/errors.h"
#include "mprpc/rt.h"
#include "mprpc/server.h"
#include "rt/pool.h"

/* What a server made here owns: its loop group (unless the caller injected
 * loops) and its handler pool (handler_threads). Stopped in that order: the
 * loops first, so no new handler is submitted, then the pool, which runs
 * what is queued and joins its threads before the server frees anything. */
typedef struct owned {
  mprpc_loop_group_t *g;
  mprpc__pool_t *pool;
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
  free(o);
}

static const mprpc_loop_owner_ops_t owned_ops = {
    .start = owned_start,
    .stop = owned_stop,
    .free = owned_free,
};

static const mprpc_executor_ops_t pool_ops = {.submit = mprpc__pool_submit};

int mprpc_server_new(const mprpc_server_opts_t *opts, mprpc_server_t **out) {
  if (!opts || !out)
    return MPRPC_EINVAL;
  bool want_pool = opts->handler_threads > 0 && !opts->executor.vt;
  if (opts->transport.vt && !want_pool)
    return mprpc_server_new_in(opts, (mprpc_loop_owner_t){0}, out);
  mprpc_server_opts_t o = *opts;
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
  }
  rc = mprpc_server_new_in(&o, (mprpc_loop_owner_t){.vt = &owned_ops, .ctx = own}, out);
fail:
  free(loops); /* the server copied the array */
  if (rc < 0)
    owned_free(own); /* a server that failed to build did not take it */
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
  return mprpc_channel_new_in(sd, &o, out);
}
