/*
 * The fake in-memory transport: the mprpc_transport_t seam without
 * sockets, for the core suites and the connection fuzz harnesses. Every
 * event is posted onto the connection's loop (a fake_loop in practice), so
 * nothing happens inside a call the code under test made, as the seam's
 * contract demands; fake_loop_run() makes it happen.
 *
 * A connection is one of:
 * - accepted by the test: fake_net_accept() hands a new connection to the
 *   listener's on_accept; the test plays the peer: fake_conn_deliver()
 *   feeds it bytes, fake_conn_unread()/fake_conn_consume() read what the
 *   code wrote, fake_conn_hangup() ends it from the peer's side;
 * - connected by the code to a port a fake listener listens on: a pair;
 *   the accepted end goes to that listener's on_accept, and the bytes each
 *   end writes arrive in the other's rbuf, in chunks of opts.chunk bytes;
 * - connected anywhere else: what happens follows opts.first_connect for
 *   the first connect of the net and opts.next_connect for later ones
 *   (fake_connect_mode_t); an accepted one has the test as its peer, as
 *   above.
 *
 * The fake checks the seam's contract on the code's behalf (FAKE_CHECK):
 * no write, out_pending or close after on_close, no setup on a client
 * connection. writev after close() answers MPRPC_ECLOSED, as TCP does.
 *
 * The net owns every connection it made; they stay readable after on_close
 * (closed flags, bytes) until fake_net_free. Free the net after the code
 * under test is gone and its loops have run.
 */
#ifndef MPRPC_TEST_FAKE_NET_H
#define MPRPC_TEST_FAKE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprpc/transport.h"

/* What a connect to a port no fake listener has turns into. The numbers
 * are part of the interface: fuzz_client_conn maps input bits onto them. */
typedef enum fake_connect_mode {
  FAKE_CONNECT_REFUSED = 0,   /* on_close(CONNECT_FAILED, ECONNREFUSED), posted */
  FAKE_CONNECT_ACCEPTED = 1,  /* on_connect, posted; the test is the peer */
  FAKE_CONNECT_REFUSED_NOW = 2, /* connect() itself returns MPRPC_ECONNREFUSED */
  FAKE_CONNECT_EOF = 3,       /* on_connect, then at once on_close(EOF) */
} fake_connect_mode_t;

typedef struct fake_net_opts {
  fake_connect_mode_t first_connect; /* the net's first connect */
  fake_connect_mode_t next_connect;  /* every later one */
  size_t max_conns;         /* connects past this many connections: refused now; 0 = 32 */
  uint16_t listen_port;     /* what listener_port says; 0: the port asked for, or 40000 + n */
  const char *accept_peer;  /* peer_name of accepted connections; NULL = "192.0.2.1:1" */
  size_t chunk;             /* pairs: bytes per on_data; 0 = each writev whole */
  bool report_pending;      /* writes stay "unsent" (out_pending) until fake_conn_drain */
} fake_net_opts_t;

typedef struct fake_net fake_net_t;
typedef struct mprpc_conn fake_conn_t;

fake_net_t *fake_net_new(const fake_net_opts_t *opts); /* NULL: defaults */
void fake_net_free(fake_net_t *n);
mprpc_transport_t fake_net_transport(fake_net_t *n);

/* The newest listener that is still open: a connection for its on_accept,
 * called here on the listener's first loop. The test is the peer. */
fake_conn_t *fake_net_accept(fake_net_t *n);
bool fake_net_listening(const fake_net_t *n);      /* a listener is open */
bool fake_net_listener_closed(const fake_net_t *n); /* one was closed */
/* The next `count` writev calls, on any connection, answer MPRPC_EHWM. */
void fake_net_refuse_next_writes(fake_net_t *n, int count);
size_t fake_net_conn_count(const fake_net_t *n);
fake_conn_t *fake_net_conn(const fake_net_t *n, size_t i); /* in creation order */

/* ---- one connection, from the test's (the peer's) side ---- */

/* Appends p to the connection's rbuf and runs on_data now (the test stands
 * for the loop's read event). Also recorded in fake_conn_received. */
void fake_conn_deliver(fake_conn_t *c, const void *p, size_t n);
/* The peer ends the connection: on_close(reason, err), posted. */
void fake_conn_hangup(fake_conn_t *c, int reason, int err);
/* Every writev answers MPRPC_EHWM while on (a peer that does not read). */
void fake_conn_refuse_writes(fake_conn_t *c, bool on);
/* report_pending: the backlog is sent; on_writable runs now if set. */
void fake_conn_drain(fake_conn_t *c);

/* What the code wrote and the test has not consumed yet. */
const uint8_t *fake_conn_unread(const fake_conn_t *c, size_t *len);
void fake_conn_consume(fake_conn_t *c, size_t n);
/* Everything delivered to the code on this connection so far. */
const uint8_t *fake_conn_received(const fake_conn_t *c, size_t *len);

bool fake_conn_set_up(const fake_conn_t *c);  /* has a handler (setup or connect) */
bool fake_conn_connected(const fake_conn_t *c); /* established (accepted ones always) */
bool fake_conn_closing(const fake_conn_t *c); /* on_close is on its way (or ran) */
bool fake_conn_closed(const fake_conn_t *c);  /* on_close ran */
int fake_conn_close_reason(const fake_conn_t *c); /* 0 until closing */
size_t fake_conn_index(const fake_conn_t *c); /* position in fake_net_conn */

#endif
