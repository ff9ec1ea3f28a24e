/* Which field keeps a message from being sent (msg_check.c). */
#ifndef MPRPC_CORE_MSG_CHECK_H
#define MPRPC_CORE_MSG_CHECK_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

/* 0 when m passes protobuf_c_message_check's rules; else MPRPC_EINVAL and
 * why[0..whylen) names the first offending field by its path from the top
 * message, e.g. "inv.ReserveRequest.item_id is required",
 * "inv.ReserveRequest.extras[1].sku is required". why may be NULL. */
int mprpc__msg_check(const ProtobufCMessage *m, char *why, size_t whylen);

#endif
