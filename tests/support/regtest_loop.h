/*
 * A tiny thread-backed loop for registry tests: post() and in_loop() are
 * real (one thread runs posted functions in order); timers are not
 * supported (timer_start returns 0). Also a collector that records the
 * latest registry delivery so a test thread can wait for a condition.
 */
#ifndef MPRPC_TESTS_REGTEST_LOOP_H
#define MPRPC_TESTS_REGTEST_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprpc/loop.h"
#include "mprpc/registry.h"

typedef struct regtest_loop regtest_loop_t;

regtest_loop_t *regtest_loop_new(void);
mprpc_loop_t regtest_loop(regtest_loop_t *l);
/* Runs fn(arg) on the loop thread and waits for it. */
void regtest_loop_run(regtest_loop_t *l, mprpc_post_cb fn, void *arg);
/* Runs what is queued, stops the thread, frees. */
void regtest_loop_free(regtest_loop_t *l);

/* Records deliveries: "host:port,host:port" sorted, plus health. */
typedef struct regtest_watch {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char list[4096];
  char wlist[4096]; /* "host:port*weight,..." sorted */
  int health;
  int deliveries;
  bool wrong_thread;
  regtest_loop_t *loop;
} regtest_watch_t;

void regtest_watch_init(regtest_watch_t *w, regtest_loop_t *loop);
void regtest_watch_destroy(regtest_watch_t *w);
void regtest_watch_cb(void *ud, const mprpc_instance_t *items, size_t n, int health);
/* Waits (up to timeout_ms, a hang guard) until the list equals want
 * (health ignored when health < 0). Returns true when it did. */
bool regtest_watch_wait(regtest_watch_t *w, const char *want, int health, int timeout_ms);
/* Waits until the list with weights ("host:port*weight,...") equals want. */
bool regtest_watch_wait_weights(regtest_watch_t *w, const char *want, int timeout_ms);
/* Waits until health differs from not_health. */
bool regtest_watch_wait_health_not(regtest_watch_t *w, int not_health, int timeout_ms);
/* Unsubscribes on the loop thread, as the contract requires. */
void regtest_unsubscribe(regtest_loop_t *l, mprpc_registry_t r, uint64_t id);
/* Records config-node deliveries (mprpc_registry_watch_config). */
typedef struct regtest_cfg {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char text[8192];
  bool present;
  int deliveries;
  bool wrong_thread;
  char name[256];
  regtest_loop_t *loop;
} regtest_cfg_t;

void regtest_cfg_init(regtest_cfg_t *c, regtest_loop_t *loop);
void regtest_cfg_destroy(regtest_cfg_t *c);
void regtest_cfg_cb(void *ud, const char *name, const char *text, size_t len);
/* Waits until the last delivery is want (NULL: the node is absent, after
 * at least one delivery). */
bool regtest_cfg_wait(regtest_cfg_t *c, const char *want, int timeout_ms);
/* Unwatches on the loop thread. */
void regtest_unwatch_config(regtest_loop_t *l, mprpc_registry_t r, uint64_t id);

/* Milliseconds on a monotonic clock, for hang guards. */
long long regtest_now_ms(void);

#endif
