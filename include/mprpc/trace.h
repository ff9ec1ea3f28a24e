/*
 * Trace context: which trace a call belongs to and which span it is a child
 * of, carried in baidu_std's RpcRequestMeta (trace_id 4, span_id 5,
 * parent_span_id 6), as brpc does, so brpc and mprpc processes join the
 * same traces (docs/client.md, "Tracing").
 *
 * The rules, as in brpc:
 * - Every call made through a channel is one span with a fresh span_id; its
 *   retries and backup requests resend the same ids (one span per call, not
 *   per attempt).
 * - A call made with no trace context starts a trace: a fresh trace_id,
 *   parent_span_id 0. Ids come from the channel loop's randomness seam, so
 *   a simulated run replays them from its seed.
 * - A provider serves a request as the span the request names (trace_id,
 *   span_id, parent_span_id kept exactly as sent; a request without a
 *   trace_id, e.g. from a client that does not trace, gets fresh ones).
 * - While a handler runs, the thread's current context is the call's
 *   {trace_id, span_id}: calls the handler makes (sync or async) join that
 *   trace as children of that span. So do calls made from the closure of
 *   such a child call. Work handed to another thread takes the context
 *   along by value: mprpc_server_call_trace() gives it, and
 *   mprpc_controller_set_trace() or mprpc_trace_set_current() applies it.
 *
 * Ids are int64 as on the wire; mprpc makes them positive (63 random bits)
 * and shows them as 16 hex digits of their 64 bits (/rpcz, logs). 0 means
 * "none" everywhere.
 */
#ifndef MPRPC_TRACE_H
#define MPRPC_TRACE_H

#include "mprpc/export.h"
#include <stdint.h>

MPRPC_BEGIN_DECLS

/* A plain value: copy it anywhere, keep it as long as you like. */
typedef struct mprpc_trace_ctx {
  int64_t trace_id; /* 0: no trace */
  int64_t span_id;  /* the span new calls become children of */
} mprpc_trace_ctx_t;

/* This thread's current context: the running handler's call (set by the
 * server while invoke runs, on the loop or on a handler_threads pool), the
 * parent of the call whose closure is running, or what
 * mprpc_trace_set_current set; {0, 0} otherwise. */
mprpc_trace_ctx_t mprpc_trace_current(void);

/* Makes ctx this thread's current context (calls made through channels on
 * this thread join it) and returns the previous one, which the caller
 * restores when the work is done. {0, 0} clears it. */
mprpc_trace_ctx_t mprpc_trace_set_current(mprpc_trace_ctx_t ctx);

MPRPC_END_DECLS
#endif
