/* Controller internals shared by controller.c and channel.c. */
#ifndef MPRPC_CORE_CONTROLLER_INT_H
#define MPRPC_CORE_CONTROLLER_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "mprpc/controller.h"

struct mprpc_channel;

#define MPRPC__CTL_TEXT 256
#define MPRPC__CTL_REMOTE 96

struct mprpc_controller {
  /* inputs */
  int64_t timeout_ms; /* 0 = channel default */
  uint8_t *req_att;
  size_t req_att_len;
  int64_t log_id, trace_id, span_id;
  bool has_hash_key;
  uint64_t hash_key;
  int req_compress; /* MPRPC_COMPRESS_* + 1; 0 = the channel's compress_type */
  /* outputs */
  int error_code;
  int remote_code; /* error_code of the answer that failed the call, as sent */
  char error_text[MPRPC__CTL_TEXT];
  char remote[MPRPC__CTL_REMOTE];
  int attempts;
  uint64_t latency_us;
  uint8_t *resp_att;
  size_t resp_att_len;
  /* During the closure: the call whose response take_response hands over.
   * The call keeps its response, so reusing the controller for a new call
   * inside the closure neither leaks nor double-frees it. */
  struct mprpc__call *resp_call;
  /* link to the pending call, for cancel (set by the invoking thread) */
  struct mprpc_channel *ch;
  uint64_t call_id;
};

void mprpc__controller_clear_outputs(mprpc_controller_t *c);
/* mprpc_controller_free for a controller embedded in a call record: frees
 * what it owns, not the struct. */
void mprpc__controller_release(mprpc_controller_t *c);
/* Thread-local hand-off for stub users. */
mprpc_controller_t *mprpc__controller_take_next(void);
mprpc_controller_t *mprpc__controller_set_current(mprpc_controller_t *c);
/* Defined in channel.c: hands call's response over as a
 * message the caller frees with protobuf_c_message_free_unpacked(m, NULL). */
ProtobufCMessage *mprpc__call_take_response(struct mprpc__call *call);
/* Defined in channel.c: posts a cancel of call_id to ch's loop. */
void mprpc__channel_cancel(struct mprpc_channel *ch, uint64_t call_id);

#endif
