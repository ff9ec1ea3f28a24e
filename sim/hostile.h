/*
 * Hostile virtual clients for the simulator's "hostile" scenario: raw
 * connections through the transport seam that misbehave against a
 * provider's limits (src/core/server_budget.c) while normal consumers call
 * it. Each client reconnects 50 ms after the provider closes it, until
 * mprpc_sim_hostile_stop.
 *
 *   TRICKLE   declares a 60 MiB body, sends 768 KiB of it fast, then 1 KiB/s
 *   NOREAD    sends 256 KiB of valid Echo requests and pauses its own reading
 *   SLOWLORIS one byte of a frame header a second
 */
#ifndef MPRPC_SIM_HOSTILE_H
#define MPRPC_SIM_HOSTILE_H

#include <stdint.h>

#include "mprpc/transport.h"
#include "sim.h"

enum { MPRPC_SIM_HOSTILE_TRICKLE, MPRPC_SIM_HOSTILE_NOREAD, MPRPC_SIM_HOSTILE_SLOWLORIS };

typedef struct mprpc_sim_hostile mprpc_sim_hostile_t;

/* Clients on a new virtual host of `net`. NULL on ENOMEM. */
mprpc_sim_hostile_t *mprpc_sim_hostile_new(mprpc_sim_world_t *w, mprpc_sim_net_t *net,
                                           mprpc_transport_t tr);
/* One more client of `kind` against host:port (host: a virtual address). */
int mprpc_sim_hostile_add(mprpc_sim_hostile_t *h, int kind, const char *host, uint16_t port);
/* Connections the provider closed so far (refusals as the clients saw them). */
uint64_t mprpc_sim_hostile_closed(const mprpc_sim_hostile_t *h);
/* Closes every client and stops reconnecting; run the world a little after
 * it (on_close), then free. */
void mprpc_sim_hostile_stop(mprpc_sim_hostile_t *h);
void mprpc_sim_hostile_free(mprpc_sim_hostile_t *h);

#endif
