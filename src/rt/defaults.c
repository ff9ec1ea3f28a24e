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

static int group_start(void *ctx) { return mprpc_loop_group_start(ctx); }
static void group_stop(void *ctx) { mprpc_loop_group_stop(ctx); }
static void group_free(void *ctx) { mprpc_loop_group_free(ctx); }

static const mprpc_loop_owner_ops_t group_owner = {
    .start = group_start,
    .stop = group_stop,
    .free = group_free,
};

int mprpc_server_new(const mprpc_server_opts_t *opts, mprpc_server_t **out) {
  if (!opts || !out)
    return MPRPC_EINVAL;
  if (opts->transport.vt)
    return mprpc_server_new_in(opts, (mprpc_loop_owner_t){0}, out);
  mprpc_loop_group_t *g;
  int rc = mprpc_loop_group_new(opts->threads ? opts->threads : 1, &g);
  if (rc < 0)
    return rc;
  size_t n = mprpc_loop_group_size(g);
  mprpc_loop_t *loops = calloc(n, sizeof *loops);
  if (!loops) {
    mprpc_loop_group_free(g);
    return MPRPC_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    loops[i] = mprpc_loop_group_loop(g, i);
  mprpc_server_opts_t o = *opts;
  o.transport = mprpc_tcp_transport();
  o.loops = loops;
  o.nloops = n;
  rc = mprpc_server_new_in(&o, (mprpc_loop_owner_t){.vt = &group_owner, .ctx = g}, out);
  free(loops); /* the server copied the array */
  if (rc < 0)
    mprpc_loop_group_free(g);
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
