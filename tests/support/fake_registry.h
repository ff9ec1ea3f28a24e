/*
 * The fake registry: the mprpc_registry_t seam as a plain struct the test
 * reads and writes. It records what a provider registers and unregisters
 * (and can refuse registrations), holds one subscription, and delivers
 * the list in `items`/`n` with `health` to it when the test pushes, on the
 * subscriber's loop as the seam requires. Works with the fake loop (push,
 * then fake_loop_run) and with real loops on other threads
 * (fake_reg_push_wait).
 *
 *   fake_reg_t fr;
 *   fake_reg_init(&fr);
 *   opts.registry = fake_reg(&fr);
 *
 * close() only counts: the struct is the test's, so it outlives whatever
 * closed it.
 */
#ifndef MPRPC_TEST_FAKE_REGISTRY_H
#define MPRPC_TEST_FAKE_REGISTRY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprpc/registry.h"

typedef struct fake_reg {
  /* registrations */
  int fail_after; /* register fails (MPRPC_EREGISTRY) once nreg reaches it; -1: never */
  int nreg, nunreg, ncloses;
  char service[64], host[64], methods[128]; /* the last registration */
  uint16_t port;
  uint32_t weight;
  uint64_t start_ms;
  /* the subscription */
  int subs, unsubs;
  char sub_service[64];
  uint64_t sub_id, unsub_id; /* what subscribe handed out, what unsubscribe got */
  mprpc_registry_watch_cb cb;
  void *ud;
  mprpc_loop_t loop;
  /* what the next push delivers; health is also what health() answers */
  mprpc_instance_t items[4];
  size_t n;
  int health;
  atomic_int pushed; /* deliveries made */
} fake_reg_t;

/* Zeroes r: healthy, registrations accepted, nothing subscribed. */
void fake_reg_init(fake_reg_t *r);
mprpc_registry_t fake_reg(fake_reg_t *r);
/* Posts a delivery of items/n/health to the subscriber's loop: 0, or the
 * post's error. The fake loop delivers it on its next run. */
int fake_reg_push(fake_reg_t *r);
/* Push, then wait until a loop on another thread delivered it (the
 * asserts after a push read what it changed). False when it did not within
 * timeout_ms, a hang guard. */
bool fake_reg_push_wait(fake_reg_t *r, int timeout_ms);

#endif
