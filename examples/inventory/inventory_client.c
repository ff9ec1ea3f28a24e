/*
 * inventory_client: reserves apples through inv.OrderService until they
 * run out, printing each outcome.
 *
 *   inventory_client -i inventory.conf
 *
 * Each Reserve makes the provider call its StockService (see
 * inventory_provider.c). Once the stock is gone the call fails with the
 * application's own code, as the handler set it: MPRPC_EAPP, and
 * mprpc_controller_remote_code() == 10001. Exit code 0 when the calls
 * went as expected (some reserved, then out of stock), 1 otherwise.
 */
#include <stdio.h>
#include <unistd.h>

#include "inventory.pb-c.h"
#include "mprpc/mprpc.h"

typedef struct outcome {
  int called;
  unsigned reserved, left;
} outcome_t;

static void reserve_done(const Inv__ReserveResponse *r, void *arg) {
  outcome_t *o = arg;
  o->called = 1;
  if (r) {
    o->reserved = r->reserved;
    o->left = r->left;
  }
}

int main(int argc, char **argv) {
  mprpc_config_t *cfg;
  int rc = mprpc_app_init(argc, argv, &cfg);
  if (rc == MPRPC_ECANCELED)
    return 0;
  if (rc)
    return 2;
  mprpc_channel_t *ch;
  if (mprpc_channel_from_config(cfg, &inv__order_service__descriptor, &ch) != 0) {
    fprintf(stderr, "inventory_client: %s\n", mprpc_config_error(cfg));
    mprpc_config_free(cfg);
    return 1;
  }
  for (int i = 0; i < 500 && mprpc_channel_endpoint_count(ch) == 0; i++)
    usleep(20 * 1000); /* the registry's first list, at most 10 s */
  mprpc_controller_t *ctl = mprpc_controller_new();
  int ok = 0, out_of_stock = 0, other = 0;
  for (int i = 0; i < 4; i++) {
    Inv__ReserveRequest req = INV__RESERVE_REQUEST__INIT;
    req.item_id = "apple";
    req.count = 2;
    outcome_t o = {0};
    mprpc_controller_reset(ctl);
    mprpc_controller_use_next(ctl);
    inv__order_service__reserve(mprpc_channel_service(ch), &req, reserve_done, &o);
    if (!mprpc_controller_failed(ctl)) {
      printf("Reserve(apple, 2): reserved %u, %u left\n", o.reserved, o.left);
      ok++;
    } else if (mprpc_controller_error_code(ctl) == MPRPC_EAPP) {
      printf("Reserve(apple, 2): application error %d: %s\n", mprpc_controller_remote_code(ctl),
             mprpc_controller_error_text(ctl));
      out_of_stock += mprpc_controller_remote_code(ctl) == 10001;
    } else {
      printf("Reserve(apple, 2): failed: %s: %s\n",
             mprpc_err_name(mprpc_controller_error_code(ctl)), mprpc_controller_error_text(ctl));
      other++;
    }
  }
  mprpc_controller_free(ctl);
  mprpc_channel_destroy(ch); /* also closes the registry it opened */
  mprpc_config_free(cfg);
  return ok > 0 && out_of_stock > 0 && other == 0 ? 0 : 1;
}
