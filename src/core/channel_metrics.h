/*
 * The client side of /metrics: the mprpc_client_* families of every channel
 * in a channel list (mprpc/console.h), written with core/prom.h.
 */
#ifndef MPRPC_CORE_CHANNEL_METRICS_H
#define MPRPC_CORE_CHANNEL_METRICS_H

#include "core/prom.h"
#include "mprpc/console.h"

void mprpc__channel_list_metrics(mprpc__prom_t *w, mprpc_channel_list_t list);

#endif
