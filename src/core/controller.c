/* Per-call controller; see include/mprpc/controller.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/compress.h"
#include "core/controller_int.h"
#include "core/lb.h"
#include "mprpc/errors.h"

static _Thread_local mprpc_controller_t *tls_next;
static _Thread_local mprpc_controller_t *tls_current;

mprpc_controller_t *mprpc_controller_new(void) { return calloc(1, sizeof(mprpc_controller_t)); }

void mprpc__controller_clear_outputs(mprpc_controller_t *c) {
  c->error_code = 0;
  c->remote_code = 0;
  c->error_text[0] = '\0';
  c->remote[0] = '\0';
  c->attempts = 0;
  c->latency_us = 0;
  free(c->resp_att);
  c->resp_att = NULL;
  c->resp_att_len = 0;
  c->resp_call = NULL;
}

void mprpc__controller_release(mprpc_controller_t *c) {
  if (tls_next == c)
    tls_next = NULL;
  free(c->req_att);
  free(c->resp_att);
  c->req_att = c->resp_att = NULL;
}

void mprpc_controller_free(mprpc_controller_t *c) {
  if (!c)
    return;
  mprpc__controller_release(c);
  free(c);
}

void mprpc_controller_reset(mprpc_controller_t *c) {
  free(c->req_att);
  free(c->resp_att);
  memset(c, 0, sizeof *c);
}

void mprpc_controller_set_timeout_ms(mprpc_controller_t *c, int64_t ms) { c->timeout_ms = ms; }

int mprpc_controller_set_request_compress(mprpc_controller_t *c, int compress_type) {
  if (!c || !mprpc__compress_known(compress_type))
    return MPRPC_EINVAL;
  c->req_compress = compress_type + 1;
  return 0;
}

int mprpc_controller_set_request_attachment(mprpc_controller_t *c, const void *p, size_t n) {
  uint8_t *copy = NULL;
  if (n) {
    if (!p)
      return MPRPC_EINVAL;
    copy = malloc(n);
    if (!copy)
      return MPRPC_ENOMEM;
    memcpy(copy, p, n);
  }
  free(c->req_att);
  c->req_att = copy;
  c->req_att_len = n;
  return 0;
}

void mprpc_controller_set_log_id(mprpc_controller_t *c, int64_t log_id) { c->log_id = log_id; }

void mprpc_controller_set_trace_id(mprpc_controller_t *c, int64_t trace_id, int64_t span_id) {
  c->trace_id = trace_id;
  c->span_id = span_id;
}

void mprpc_controller_set_hash_key(mprpc_controller_t *c, uint64_t key) {
  c->has_hash_key = true;
  c->hash_key = key;
}

void mprpc_controller_set_hash_key_str(mprpc_controller_t *c, const char *key) {
  mprpc_controller_set_hash_key(c, mprpc__hash64(key ? key : "", key ? strlen(key) : 0, 0));
}

bool mprpc_controller_failed(const mprpc_controller_t *c) { return c->error_code != 0; }
int mprpc_controller_error_code(const mprpc_controller_t *c) { return c->error_code; }
int mprpc_controller_remote_code(const mprpc_controller_t *c) { return c->remote_code; }
const char *mprpc_controller_error_text(const mprpc_controller_t *c) { return c->error_text; }
const char *mprpc_controller_remote(const mprpc_controller_t *c) { return c->remote; }
int mprpc_controller_attempts(const mprpc_controller_t *c) { return c->attempts; }
uint64_t mprpc_controller_latency_us(const mprpc_controller_t *c) { return c->latency_us; }

const void *mprpc_controller_response_attachment(const mprpc_controller_t *c, size_t *len) {
  if (len)
    *len = c->resp_att_len;
  return c->resp_att_len ? c->resp_att : NULL;
}

ProtobufCMessage *mprpc_controller_take_response(mprpc_controller_t *c) {
  if (!c->resp_call)
    return NULL;
  return mprpc__call_take_response(c->resp_call);
}

void mprpc_controller_cancel(mprpc_controller_t *c) {
  if (c && c->ch && c->call_id)
    mprpc__channel_cancel(c->ch, c->call_id);
}

void mprpc_controller_use_next(mprpc_controller_t *c) { tls_next = c; }

mprpc_controller_t *mprpc_controller_current(void) { return tls_current; }

mprpc_controller_t *mprpc__controller_take_next(void) {
  mprpc_controller_t *c = tls_next;
  tls_next = NULL;
  return c;
}

mprpc_controller_t *mprpc__controller_set_current(mprpc_controller_t *c) {
  mprpc_controller_t *old = tls_current;
  tls_current = c;
  return old;
}
