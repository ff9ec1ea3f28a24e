/* Outlier ejection state machine; see breaker.h. */
#include "core/breaker.h"

#include <string.h>

#define MS 1000000ull

void mprpc__breaker_init(mprpc__breaker_t *b, const mprpc__breaker_opts_t *o) {
  memset(b, 0, sizeof *b);
  if (o)
    b->o = *o;
  if (!b->o.conn_failures)
    b->o.conn_failures = 1;
  if (!b->o.error_percent)
    b->o.error_percent = 50;
  if (!b->o.min_requests)
    b->o.min_requests = 20;
  if (!b->o.base_ns)
    b->o.base_ns = 500 * MS;
  if (!b->o.max_ns)
    b->o.max_ns = 30000 * MS;
  if (b->o.max_ns < b->o.base_ns)
    b->o.max_ns = b->o.base_ns;
}

uint64_t mprpc__breaker_period(const mprpc__breaker_t *b) {
  uint64_t p = b->o.base_ns;
  for (uint32_t i = 1; i < b->repeats && p < b->o.max_ns; i++)
    p *= 2;
  return p > b->o.max_ns ? b->o.max_ns : p;
}

static bool eject(mprpc__breaker_t *b, uint64_t now_ns) {
  b->repeats++;
  b->state = MPRPC__BREAKER_EJECTED;
  b->until_ns = now_ns + mprpc__breaker_period(b);
  b->ejections++;
  b->win_total = b->win_err = 0;
  b->consecutive_conn_fail = 0;
  return true;
}

int mprpc__breaker_poll(mprpc__breaker_t *b, uint64_t now_ns) {
  if (b->state == MPRPC__BREAKER_EJECTED && now_ns >= b->until_ns)
    b->state = MPRPC__BREAKER_PROBING;
  return b->state;
}

bool mprpc__breaker_admits(mprpc__breaker_t *b, uint64_t now_ns) {
  return mprpc__breaker_poll(b, now_ns) != MPRPC__BREAKER_EJECTED;
}

static void admit(mprpc__breaker_t *b) {
  b->state = MPRPC__BREAKER_CLOSED;
  b->win_total = b->win_err = 0;
  b->consecutive_conn_fail = 0;
}

/* Once the window holds min_requests outcomes: eject when the failed share
 * reaches error_percent, else start a new window (a clean one forgives
 * earlier ejections). */
static bool window_check(mprpc__breaker_t *b, uint64_t now_ns) {
  if (b->win_total < b->o.min_requests)
    return false;
  if ((uint64_t)b->win_err * 100u >= (uint64_t)b->o.error_percent * b->win_total)
    return eject(b, now_ns);
  if (b->win_err == 0)
    b->repeats = 0;
  b->win_total = b->win_err = 0;
  return false;
}

bool mprpc__breaker_on_success(mprpc__breaker_t *b, uint64_t now_ns) {
  int st = mprpc__breaker_poll(b, now_ns);
  if (st == MPRPC__BREAKER_PROBING) {
    admit(b);
    return false;
  }
  if (st == MPRPC__BREAKER_EJECTED)
    return false; /* a late answer from before the ejection */
  b->consecutive_conn_fail = 0;
  b->win_total++;
  return window_check(b, now_ns);
}

bool mprpc__breaker_on_error(mprpc__breaker_t *b, uint64_t now_ns) {
  int st = mprpc__breaker_poll(b, now_ns);
  if (st == MPRPC__BREAKER_PROBING)
    return eject(b, now_ns);
  if (st == MPRPC__BREAKER_EJECTED)
    return false;
  b->win_total++;
  b->win_err++;
  return window_check(b, now_ns);
}

bool mprpc__breaker_on_conn_failure(mprpc__breaker_t *b, uint64_t now_ns) {
  int st = mprpc__breaker_poll(b, now_ns);
  if (st == MPRPC__BREAKER_PROBING)
    return eject(b, now_ns);
  if (st == MPRPC__BREAKER_EJECTED)
    return false;
  if (++b->consecutive_conn_fail >= b->o.conn_failures)
    return eject(b, now_ns);
  return false;
}

void mprpc__breaker_on_conn_ok(mprpc__breaker_t *b, uint64_t now_ns) {
  int st = mprpc__breaker_poll(b, now_ns);
  if (st == MPRPC__BREAKER_PROBING)
    admit(b);
  else if (st == MPRPC__BREAKER_CLOSED)
    b->consecutive_conn_fail = 0;
}

bool mprpc__breaker_eject(mprpc__breaker_t *b, uint64_t now_ns) {
  if (mprpc__breaker_poll(b, now_ns) == MPRPC__BREAKER_EJECTED)
    return false;
  return eject(b, now_ns);
}
