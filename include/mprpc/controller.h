/*
 * Per-call controller: the inputs and outcome of one RPC made through a
 * channel (include/mprpc/channel.h).
 *
 * A controller carries per-call overrides in (timeout, request attachment,
 * log/trace ids, hash key for consistent hashing) and the outcome out
 * (failed or not, MPRPC_E* code, error text, remote endpoint, attempts used,
 * latency, response attachment).
 *
 * How a call gets a controller:
 * - mprpc_channel_call() takes one explicitly (may be NULL).
 * - protoc-c stubs have no controller argument. Before calling a stub,
 *   mprpc_controller_use_next(ctl) hands ctl to the next call this thread
 *   makes through any channel (one-shot). Without it the channel uses a
 *   private controller that lives until the call's closure returns.
 * - Inside a call's closure, mprpc_controller_current() returns that call's
 *   controller (the user's or the private one), for sync and async calls.
 *
 * One controller serves one call at a time: do not reuse it before that
 * call's closure has started. Reusing it for the next call from inside the
 * closure is fine (read its outputs first: the new call clears them).
 * mprpc_controller_reset() also clears the inputs.
 * Functions returning int give 0 or a negative MPRPC_E* code.
 */
#ifndef MPRPC_CONTROLLER_H
#define MPRPC_CONTROLLER_H

#include "mprpc/export.h"
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

MPRPC_BEGIN_DECLS

typedef struct mprpc_controller mprpc_controller_t;

/* Allocates a cleared controller (NULL on out of memory). The caller frees
 * it with mprpc_controller_free, which must not happen while a call using it
 * is pending (cancel it and wait for the closure first). */
mprpc_controller_t *mprpc_controller_new(void);
void mprpc_controller_free(mprpc_controller_t *c);
/* Clears inputs and outputs for reuse (a response taken with
 * mprpc_controller_take_response stays the caller's). Not while a call
 * using it is pending. */
void mprpc_controller_reset(mprpc_controller_t *c);

/* ---- inputs: set before the call ---------------------------------------- */

/* Overall deadline of this call in ms (covers every attempt); 0 = the
 * channel's timeout; negative = no deadline. */
void mprpc_controller_set_timeout_ms(mprpc_controller_t *c, int64_t ms);
/* Raw bytes sent after the request message; copied. */
int mprpc_controller_set_request_attachment(mprpc_controller_t *c, const void *p, size_t n);
void mprpc_controller_set_log_id(mprpc_controller_t *c, int64_t log_id);
void mprpc_controller_set_trace_id(mprpc_controller_t *c, int64_t trace_id, int64_t span_id);
/* Key for the consistent-hashing balancer: calls with the same key go to
 * the same endpoint while it is available. Without a key, "hash" picks at
 * random. */
void mprpc_controller_set_hash_key(mprpc_controller_t *c, uint64_t key);
void mprpc_controller_set_hash_key_str(mprpc_controller_t *c, const char *key);
/* Compression of this call's request payload, MPRPC_COMPRESS_{NONE,SNAPPY,
 * GZIP,ZLIB}, instead of the channel's compress_type (brpc's
 * set_request_compress_type). 0 or MPRPC_EINVAL. */
int mprpc_controller_set_request_compress(mprpc_controller_t *c, int compress_type);

/* ---- outputs: valid once the call's closure runs ------------------------ */

bool mprpc_controller_failed(const mprpc_controller_t *c);
/* 0 on success, else a negative MPRPC_E* code (mprpc_err_name names it).
 * MPRPC_EAPP when the provider's handler failed the call with its own code
 * (mprpc_server_call_set_error with a code outside brpc's framework range
 * 1001..2999): read that code with mprpc_controller_remote_code. */
int mprpc_controller_error_code(const mprpc_controller_t *c);
/* The error_code of the provider's answer that failed the call, exactly as
 * it travelled (positive: 42 stays 42, 2 stays 2, 1001 for ENOSERVICE);
 * 0 when the call succeeded or failed without such an answer (timeout,
 * connection refused, cancel, ...). */
int mprpc_controller_remote_code(const mprpc_controller_t *c);
/* "" on success; never NULL. Owned by the controller. For MPRPC_EAPP it is
 * the handler's text as sent ("application error N" if it sent none). */
const char *mprpc_controller_error_text(const mprpc_controller_t *c);
/* "host:port" of the endpoint that gave the final answer, "" if none. */
const char *mprpc_controller_remote(const mprpc_controller_t *c);
/* Attempts sent (first try + retries + backup requests). */
int mprpc_controller_attempts(const mprpc_controller_t *c);
/* From the call's start to its completion, microseconds. */
uint64_t mprpc_controller_latency_us(const mprpc_controller_t *c);
/* The response attachment; owned by the controller (valid until reset/free).
 * *len is 0 and the result NULL when there was none. */
const void *mprpc_controller_response_attachment(const mprpc_controller_t *c, size_t *len);

/* Only inside the closure: takes ownership of the response message, which
 * the channel would otherwise free as soon as the closure returns. Free it
 * with protobuf_c_message_free_unpacked(msg, NULL). Small responses are
 * decoded into memory inside the call record; for those the result is a
 * copy (the message the closure got stays valid until it returns), so do
 * not compare the two pointers. NULL if the call failed, the response was
 * already taken, or a copy could not be allocated. */
ProtobufCMessage *mprpc_controller_take_response(mprpc_controller_t *c);

/* Cancels the pending call using this controller, from any thread: its
 * closure runs once with NULL and MPRPC_ECANCELED (unless it already
 * completed, then nothing happens). The channel must still exist, and the
 * controller must not be reused for another call at the same time. */
void mprpc_controller_cancel(mprpc_controller_t *c);

/* ---- stub users ------------------------------------------------------- */

/* The next call this thread makes through a channel uses c (one-shot; NULL
 * clears). The call does not own c. */
void mprpc_controller_use_next(mprpc_controller_t *c);
/* The controller of the call whose closure is running on this thread, NULL
 * outside a closure. */
mprpc_controller_t *mprpc_controller_current(void);

MPRPC_END_DECLS
#endif
