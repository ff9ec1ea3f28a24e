/*
 * inventory_provider: one provider, two services, one calling the other.
 *
 *   inventory_provider -i inventory.conf
 *
 * inv.StockService.Take keeps stock levels; inv.OrderService.Reserve
 * reserves items by calling StockService.Take through a channel,
 * ASYNCHRONOUSLY, and answers its own caller from that call's closure
 * (docs/server.md, "Calling another service from a handler"). A handler
 * runs on the provider's loop thread, where a synchronous stub call would
 * stall every connection of that loop; mprpc_channel_call returns at once,
 * and the closure runs on the channel's loop, from where the handler's own
 * closure may be called (closures may be called from any thread).
 *
 * "Out of stock" is an application error, code 10001, set by Take and
 * passed through by Reserve: the consumer reads MPRPC_EAPP and
 * mprpc_controller_remote_code() == 10001 (docs/client.md).
 *
 * The channel finds StockService in the configured registry, that is, in
 * this same process once it has registered; without a registry it is
 * pointed at this provider's own address. SIGTERM or SIGINT stops it.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inventory.pb-c.h"
#include "mprpc/mprpc.h"

#define ERR_OUT_OF_STOCK 10001 /* application codes: 10000 and up */
#define ERR_NO_STOCK_SERVICE 10002

/* ---- StockService ------------------------------------------------------- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  const char *item;
  unsigned count;
} g_stock[] = {{"apple", 5}, {"pear", 1}};

static void stock_take(Inv__StockService_Service *svc, const Inv__StockRequest *req,
                       Inv__StockResponse_Closure done, void *closure_data) {
  (void)svc;
  mprpc_server_call_t *call = mprpc_server_call_from(closure_data);
  char text[128];
  pthread_mutex_lock(&g_mu);
  for (size_t i = 0; i < sizeof g_stock / sizeof g_stock[0]; i++) {
    if (strcmp(g_stock[i].item, req->item_id) != 0)
      continue;
    if (g_stock[i].count < req->take) {
      snprintf(text, sizeof text, "out of stock: %u %s left, %u asked", g_stock[i].count,
               req->item_id, req->take);
      pthread_mutex_unlock(&g_mu);
      mprpc_server_call_set_error(call, ERR_OUT_OF_STOCK, text);
      done(NULL, closure_data);
      return;
    }
    g_stock[i].count -= req->take;
    Inv__StockResponse resp = INV__STOCK_RESPONSE__INIT;
    resp.count = g_stock[i].count;
    pthread_mutex_unlock(&g_mu);
    done(&resp, closure_data);
    return;
  }
  pthread_mutex_unlock(&g_mu);
  snprintf(text, sizeof text, "no item '%s'", req->item_id);
  mprpc_server_call_set_error(call, ERR_OUT_OF_STOCK, text);
  done(NULL, closure_data);
}

/* ---- OrderService: a nested asynchronous call --------------------------- */

static mprpc_channel_t *g_stock_ch; /* OrderService's channel to StockService */

/* What Reserve must remember until Take answers. */
typedef struct pending {
  Inv__ReserveResponse_Closure done;
  void *closure_data; /* valid until done is called */
  unsigned count;
} pending_t;

/* Runs on the channel's loop when Take answered (or failed). */
static void take_done(const ProtobufCMessage *msg, void *arg) {
  pending_t *p = arg;
  const Inv__StockResponse *resp = (const Inv__StockResponse *)msg;
  mprpc_server_call_t *call = mprpc_server_call_from(p->closure_data);
  if (!resp) {
    mprpc_controller_t *ctl = mprpc_controller_current();
    if (mprpc_controller_error_code(ctl) == MPRPC_EAPP) /* pass the answer on as it is */
      mprpc_server_call_set_error(call, mprpc_controller_remote_code(ctl),
                                  mprpc_controller_error_text(ctl));
    else { /* the stock service could not be reached: say so, with why */
      char text[320];
      snprintf(text, sizeof text, "stock service: %s: %s",
               mprpc_err_name(mprpc_controller_error_code(ctl)), mprpc_controller_error_text(ctl));
      mprpc_server_call_set_error(call, ERR_NO_STOCK_SERVICE, text);
    }
    p->done(NULL, p->closure_data);
  } else {
    Inv__ReserveResponse r = INV__RESERVE_RESPONSE__INIT;
    r.reserved = p->count;
    r.left = resp->count;
    p->done(&r, p->closure_data);
  }
  free(p);
}

static void order_reserve(Inv__OrderService_Service *svc, const Inv__ReserveRequest *req,
                          Inv__ReserveResponse_Closure done, void *closure_data) {
  (void)svc;
  pending_t *p = malloc(sizeof *p);
  if (!p) {
    done(NULL, closure_data); /* EINTERNAL */
    return;
  }
  *p = (pending_t){done, closure_data, req->count};
  Inv__StockRequest sreq = INV__STOCK_REQUEST__INIT;
  sreq.item_id = req->item_id; /* serialized before mprpc_channel_call returns */
  sreq.take = req->count;
  int rc = mprpc_channel_call(g_stock_ch, 0 /* Take */, &sreq.base, NULL, take_done, p);
  if (rc != 0) { /* not started: take_done never runs */
    mprpc_server_call_set_error(mprpc_server_call_from(closure_data), ERR_NO_STOCK_SERVICE,
                                mprpc_strerror(rc));
    done(NULL, closure_data);
    free(p);
  }
}

/* ---- main ---------------------------------------------------------------- */

static mprpc_server_t *g_server;

static void on_signal(int sig) {
  (void)sig;
  mprpc_server_stop_async(g_server);
}

int main(int argc, char **argv) {
  static Inv__StockService_Service stock = INV__STOCK_SERVICE__INIT(stock_);
  static Inv__OrderService_Service order = INV__ORDER_SERVICE__INIT(order_);
  mprpc_config_t *cfg;
  int rc = mprpc_app_init(argc, argv, &cfg);
  if (rc == MPRPC_ECANCELED)
    return 0;
  if (rc)
    return 2;
  if (mprpc_server_from_config(cfg, &g_server) != 0) {
    fprintf(stderr, "inventory_provider: %s\n", mprpc_config_error(cfg));
    mprpc_config_free(cfg);
    return 1;
  }
  if ((rc = mprpc_server_add_service(g_server, &stock.base)) != 0 ||
      (rc = mprpc_server_add_service(g_server, &order.base)) != 0 ||
      (rc = mprpc_server_start(g_server)) != 0) {
    fprintf(stderr, "inventory_provider: cannot serve: %s\n", mprpc_strerror(rc));
    mprpc_server_destroy(g_server);
    mprpc_config_free(cfg);
    return 1;
  }
  char self[64];
  if (!mprpc_config_has(cfg, "registry") && !mprpc_config_has(cfg, "zookeeperip") &&
      !mprpc_config_has(cfg, "servers")) {
    snprintf(self, sizeof self, "%s:%u", mprpc_config_get(cfg, "rpcserverip"),
             (unsigned)mprpc_server_port(g_server));
    mprpc_config_set(cfg, "servers", self);
  }
  if (mprpc_channel_from_config(cfg, &inv__stock_service__descriptor, &g_stock_ch) != 0) {
    fprintf(stderr, "inventory_provider: %s\n", mprpc_config_error(cfg));
    mprpc_server_destroy(g_server);
    mprpc_config_free(cfg);
    return 1;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  printf("inventory_provider: inv.StockService, inv.OrderService on %s:%u\n",
         mprpc_config_get(cfg, "rpcserverip"), (unsigned)mprpc_server_port(g_server));
  fflush(stdout);

  mprpc_server_run(g_server); /* until SIGTERM / SIGINT */
  /* The drain is over: no handler waits for a Take any more. */
  mprpc_channel_destroy(g_stock_ch);
  mprpc_server_destroy(g_server); /* also closes the registry it opened */
  mprpc_config_free(cfg);
  mprpc_log_flush();
  return 0;
}
