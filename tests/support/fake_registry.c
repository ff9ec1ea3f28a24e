/* The fake registry; see fake_registry.h. */
#include "fake_registry.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mprpc/errors.h"

static int op_register(void *ctx, const mprpc_instance_t *i) {
  fake_reg_t *r = ctx;
  if (r->fail_after >= 0 && r->nreg >= r->fail_after)
    return MPRPC_EREGISTRY;
  r->nreg++;
  snprintf(r->service, sizeof r->service, "%s", i->service);
  snprintf(r->host, sizeof r->host, "%s", i->host);
  snprintf(r->methods, sizeof r->methods, "%s", i->methods ? i->methods : "");
  r->port = i->port;
  r->weight = i->weight;
  r->start_ms = i->start_time_ms;
  return 0;
}

static int op_unregister(void *ctx, const char *service, const char *host, uint16_t port) {
  fake_reg_t *r = ctx;
  (void)service, (void)host, (void)port;
  r->nunreg++;
  return 0;
}

static int op_subscribe(void *ctx, const char *service, mprpc_loop_t loop,
                        mprpc_registry_watch_cb cb, void *ud, uint64_t *sub_id) {
  fake_reg_t *r = ctx;
  snprintf(r->sub_service, sizeof r->sub_service, "%s", service);
  r->cb = cb;
  r->ud = ud;
  r->loop = loop;
  r->subs++;
  *sub_id = r->sub_id = (uint64_t)r->subs;
  return 0;
}

static void op_unsubscribe(void *ctx, uint64_t id) {
  fake_reg_t *r = ctx;
  r->unsub_id = id;
  r->unsubs++;
}

static int op_health(void *ctx) { return ((fake_reg_t *)ctx)->health; }

static void op_close(void *ctx) { ((fake_reg_t *)ctx)->ncloses++; }

static const mprpc_registry_ops_t fake_reg_ops = {
    .register_instance = op_register,
    .unregister_instance = op_unregister,
    .subscribe = op_subscribe,
    .unsubscribe = op_unsubscribe,
    .health = op_health,
    .close = op_close,
};

void fake_reg_init(fake_reg_t *r) {
  memset(r, 0, sizeof *r);
  r->fail_after = -1;
  r->health = MPRPC_REG_HEALTHY;
}

mprpc_registry_t fake_reg(fake_reg_t *r) { return (mprpc_registry_t){&fake_reg_ops, r}; }

static void deliver(void *arg) {
  fake_reg_t *r = arg;
  r->cb(r->ud, r->items, r->n, r->health);
  atomic_fetch_add(&r->pushed, 1);
}

int fake_reg_push(fake_reg_t *r) {
  if (!r->cb)
    return MPRPC_ESTATE;
  return mprpc_loop_post(r->loop, deliver, r);
}

bool fake_reg_push_wait(fake_reg_t *r, int timeout_ms) {
  int before = atomic_load(&r->pushed);
  if (fake_reg_push(r) != 0)
    return false;
  for (int i = 0; i < timeout_ms && atomic_load(&r->pushed) == before; i++)
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  return atomic_load(&r->pushed) != before;
}
