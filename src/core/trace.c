/* The thread's current trace context (include/mprpc/trace.h). A thread-local
 * is no OS call: the server sets it around invoke, the channel around a
 * traced call's closure, users around work they moved to another thread. */
#include "mprpc/trace.h"

static _Thread_local mprpc_trace_ctx_t tls_ctx;

mprpc_trace_ctx_t mprpc_trace_current(void) { return tls_ctx; }

mprpc_trace_ctx_t mprpc_trace_set_current(mprpc_trace_ctx_t ctx) {
  mprpc_trace_ctx_t old = tls_ctx;
  tls_ctx = ctx.trace_id ? ctx : (mprpc_trace_ctx_t){0, 0};
  return old;
}
