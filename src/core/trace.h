/* Trace ids (include/mprpc/trace.h): id generation for the channel and the
 * server, both on a loop thread with that loop's randomness seam. */
#ifndef MPRPC_CORE_TRACE_H
#define MPRPC_CORE_TRACE_H

#include <stdint.h>

#include "mprpc/rand.h"
#include "mprpc/trace.h"

/* A fresh id: 63 random bits, never 0 (positive, so the varint is at most
 * 9 bytes). */
static inline int64_t mprpc__trace_new_id(mprpc_rand_t r) {
  uint64_t v = mprpc_rand_u64(r) >> 1;
  return (int64_t)(v ? v : 1);
}

#endif
