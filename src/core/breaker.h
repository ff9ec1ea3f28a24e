/*
 * Outlier ejection for one endpoint (internal, pure logic on a caller's
 * clock).
 *
 * An endpoint is ejected (isolated) when
 * - `conn_failures` connection failures happen in a row (failed connects,
 *   connections that broke), or
 * - over a window of `min_requests` attempt outcomes, the failed share
 *   reaches `error_percent` (failures: connection-level errors and attempt
 *   timeouts; business errors are not the endpoint's fault).
 * The isolation lasts base_ns, doubling on each repeat up to max_ns. When
 * it is over the endpoint is *probing*: the channel makes a health probe (a
 * reconnect, or one trial call on a live connection); success re-admits it,
 * failure ejects it again for the doubled period. After a re-admission
 * followed by a full clean window the repeat count resets.
 */
#ifndef MPRPC_CORE_BREAKER_H
#define MPRPC_CORE_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct mprpc__breaker_opts {
  uint32_t conn_failures; /* 0 = 1 */
  uint32_t error_percent; /* 0 = 50 */
  uint32_t min_requests;  /* 0 = 20 */
  uint64_t base_ns;       /* 0 = 500 ms */
  uint64_t max_ns;        /* 0 = 30 s */
} mprpc__breaker_opts_t;

typedef enum mprpc__breaker_state {
  MPRPC__BREAKER_CLOSED = 0, /* admitted */
  MPRPC__BREAKER_EJECTED = 1,
  MPRPC__BREAKER_PROBING = 2, /* isolation over, waiting for a probe */
} mprpc__breaker_state_t;

typedef struct mprpc__breaker {
  mprpc__breaker_opts_t o;
  int state;
  uint32_t consecutive_conn_fail;
  uint32_t win_total, win_err;
  uint32_t repeats;        /* ejections since the last clean window */
  uint64_t until_ns;       /* end of the current isolation */
  uint64_t ejections;      /* lifetime count */
} mprpc__breaker_t;

void mprpc__breaker_init(mprpc__breaker_t *b, const mprpc__breaker_opts_t *o);
/* Outcome of one attempt on this endpoint. Return true when this call
 * ejected the endpoint. */
bool mprpc__breaker_on_success(mprpc__breaker_t *b, uint64_t now_ns);
bool mprpc__breaker_on_error(mprpc__breaker_t *b, uint64_t now_ns);
/* A connect failed or an established connection broke. */
bool mprpc__breaker_on_conn_failure(mprpc__breaker_t *b, uint64_t now_ns);
/* Ejects now whatever the counters say (the provider said ELOGOFF). True
 * when it was not ejected already. */
bool mprpc__breaker_eject(mprpc__breaker_t *b, uint64_t now_ns);
/* A connect succeeded (a health probe when probing). */
void mprpc__breaker_on_conn_ok(mprpc__breaker_t *b, uint64_t now_ns);
/* Advances time: EJECTED -> PROBING once the isolation is over. Returns the
 * state. */
int mprpc__breaker_poll(mprpc__breaker_t *b, uint64_t now_ns);
/* Eligible for ordinary traffic (CLOSED, or PROBING: the trial call). */
bool mprpc__breaker_admits(mprpc__breaker_t *b, uint64_t now_ns);
/* The current isolation period (what the next ejection would last is
 * twice this, capped). */
uint64_t mprpc__breaker_period(const mprpc__breaker_t *b);

#endif
