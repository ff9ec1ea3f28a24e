/*
 * Production runtime: libev loops on real threads and TCP.
 *
 * A loop group is N loop threads started and stopped together: the
 * one-loop-per-thread model (one acceptor, N I/O loops). Each loop is an
 * mprpc_loop_t for the seam; mprpc_tcp_transport() is the transport seam
 * over non-blocking sockets, usable with any loop of any group.
 *
 * Functions return 0 or a negative MPRPC_E* code.
 */
#ifndef MPRPC_RT_H
#define MPRPC_RT_H

#include "mprpc/export.h"
#include <stddef.h>

#include "mprpc/loop.h"
#include "mprpc/transport.h"

MPRPC_BEGIN_DECLS

typedef struct mprpc_loop_group mprpc_loop_group_t;

/* Creates a group of n loops (n >= 1); threads start with _start. */
int mprpc_loop_group_new(size_t n, mprpc_loop_group_t **out);
int mprpc_loop_group_start(mprpc_loop_group_t *g);
/* Stops every loop: each open connection and listener on them is closed
 * (on_close with MPRPC_CLOSE_SHUTDOWN), pending posts are run, then the
 * threads are joined. Must not be called from one of the group's threads.
 * Idempotent. */
void mprpc_loop_group_stop(mprpc_loop_group_t *g);
/* Stops if needed, then frees. */
void mprpc_loop_group_free(mprpc_loop_group_t *g);
size_t mprpc_loop_group_size(const mprpc_loop_group_t *g);
mprpc_loop_t mprpc_loop_group_loop(mprpc_loop_group_t *g, size_t i);

/* The TCP transport; one process-wide instance, works with any rt loop
 * (ops given a loop that is not an rt loop return MPRPC_EINVAL). Hosts are
 * numeric IPv4/IPv6 or "localhost" (= 127.0.0.1); other names give
 * MPRPC_EADDR, since resolving them would block a loop. Peer EOF closes the
 * connection (MPRPC_CLOSE_EOF); close(flush) lingers at most 5 s; a single
 * writev larger than the high-water mark always fails. listener_close may
 * also be called from other threads (it syncs with loops[0]). A listener's
 * socket is closed when its group stops; the handle stays valid until
 * listener_close or the group's free, whichever comes first, frees it. */
mprpc_transport_t mprpc_tcp_transport(void);

/* A process-wide group of one loop started on first use, for channels that
 * were given no loop; stopped (connections closed, on_close run, thread
 * joined) by an atexit handler, unless exit() is called on that loop's own
 * thread, in which case it is left to the OS. NULL loop on failure. */
int mprpc_default_loop(mprpc_loop_t *out);

MPRPC_END_DECLS
#endif
