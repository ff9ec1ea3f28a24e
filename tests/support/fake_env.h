/*
 * One fake environment: a fake loop and a fake transport on it, the pair
 * every core suite and connection fuzz harness starts from.
 *
 *   fake_env_t e;
 *   fake_env_init(&e, &(fake_loop_opts_t){.seed = 7}, NULL);
 *   opts.loops = &e.loop; opts.nloops = 1; opts.transport = e.tr;
 *   ...
 *   fake_env_free(&e);
 */
#ifndef MPRPC_TEST_FAKE_ENV_H
#define MPRPC_TEST_FAKE_ENV_H

#include "fake_check.h"
#include "fake_loop.h"
#include "fake_net.h"
#include "fake_registry.h"

typedef struct fake_env {
  fake_loop_t *L;
  fake_net_t *net;
  mprpc_loop_t loop;    /* fake_loop_seam(L) */
  mprpc_transport_t tr; /* fake_net_transport(net) */
} fake_env_t;

/* NULL opts: defaults (fake_loop_opts_t, fake_net_opts_t). */
void fake_env_init(fake_env_t *e, const fake_loop_opts_t *lo, const fake_net_opts_t *no);
/* Runs what is still queued (on_close events), then frees the transport
 * with its connections, then the loop. The code under test must be gone. */
void fake_env_free(fake_env_t *e);

#endif
