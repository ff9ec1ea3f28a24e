/* Test hook of the ZooKeeper registry (not part of the public API). */
#ifndef MPRPC_REGISTRY_ZK_INTERNAL_H
#define MPRPC_REGISTRY_ZK_INTERNAL_H

#include <stdint.h>

#include "mprpc/registry.h"

/* The current session's id and password (16 bytes), for tests that force a
 * session expiry. MPRPC_EINVAL when r is not a zk:// registry,
 * MPRPC_ENOTCONN when not connected. */
int mprpc__zk_session(mprpc_registry_t r, int64_t *session_id, char passwd[16]);

#endif
