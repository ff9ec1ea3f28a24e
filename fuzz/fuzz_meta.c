/*
 * Fuzz target "meta": differential test of mprpc's hand-written RpcMeta
 * reader (mprpc_meta_decode) against protobuf-c's generic unpacker on the
 * normative schema (src/proto/rpc_meta.proto), which allocates through a
 * capped allocator.
 *
 * Agreement rule (docs/fuzzing.md):
 *  R1  If protobuf-c accepts the input, mprpc must accept it and agree on
 *      every field: request/response present alike; every integer equal
 *      (protobuf-c's value, or 0 when its has_ flag is clear); every string
 *      and bytes field the same bytes (protobuf-c's NULL = our empty view).
 *      protobuf-c accepts a request sub-message only with both required
 *      names, so this covers "a request with both names" of the spec.
 *  R2  If protobuf-c rejects it, mprpc may accept or reject. mprpc is
 *      deliberately more lenient, as Google's runtime (brpc's) is, in
 *      exactly these ways: a request without service_name/method_name (the
 *      frame parser reports that as ENONAME), groups (skipped), a known
 *      field number with an unexpected wire type (skipped as unknown), a key
 *      whose first byte is 0x00-0x07 (field 0: skipped), length prefixes of
 *      more than 5 bytes, and more fields than protobuf-c's scanner takes.
 *      protobuf-c also rejects when the allocator cap is reached.
 *  R3  Whenever mprpc accepts, writing the decoded meta with
 *      mprpc_meta_write (exactly mprpc_meta_size bytes) and decoding it
 *      again gives the same fields, and protobuf-c accepts that canonical
 *      encoding (the writer always emits both required names) and agrees
 *      with it by R1.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "rpc_meta.pb-c.h"
#include "support/check.h"

/* protobuf-c allocations fail once this many bytes are outstanding in one
 * unpack: a hostile length prefix cannot make it allocate much. */
#define ALLOC_CAP (1u << 20)

typedef struct capped {
  size_t used;
} capped_t;

static void *capped_alloc(void *ctx, size_t n) {
  capped_t *c = ctx;
  if (n > ALLOC_CAP - c->used)
    return NULL;
  size_t *p = malloc(sizeof(size_t) * 2 + n); /* keep max_align for the caller */
  if (!p)
    return NULL;
  p[0] = n;
  c->used += n;
  return p + 2;
}

static void capped_free(void *ctx, void *ptr) {
  capped_t *c = ctx;
  if (!ptr)
    return;
  size_t *p = (size_t *)ptr - 2;
  c->used -= p[0];
  free(p);
}

static void check_str(const char *s, mprpc_bytes_t v) {
  if (!s) {
    FUZZ_CHECK(v.len == 0);
    return;
  }
  /* protobuf-c copies the bytes and adds a NUL; strings may hold NULs */
  FUZZ_CHECK(v.len == 0 || memcmp(s, v.ptr, v.len) == 0);
  FUZZ_CHECK(s[v.len] == 0);
}

static void check_bin(protobuf_c_boolean has, ProtobufCBinaryData b, mprpc_bytes_t v) {
  if (!has) {
    FUZZ_CHECK(v.len == 0);
    return;
  }
  FUZZ_CHECK(b.len == v.len);
  FUZZ_CHECK(v.len == 0 || memcmp(b.data, v.ptr, v.len) == 0);
}

#define CHECK_INT(has, val, ours) FUZZ_CHECK((has) ? (int64_t)(val) == (int64_t)(ours) : (ours) == 0)

/* R1 for one input; returns whether protobuf-c accepted it. */
static bool differential(const uint8_t *data, size_t size, const mprpc_meta_t *ours, int our_rc) {
  capped_t cap = {0};
  ProtobufCAllocator alloc = {capped_alloc, capped_free, &cap};
  Mprpc__Meta__RpcMeta *pc = mprpc__meta__rpc_meta__unpack(&alloc, size, data);
  if (!pc) {
    FUZZ_CHECK(cap.used == 0); /* protobuf-c cleaned up after itself */
    return false;
  }
  FUZZ_CHECK(our_rc == 0);
  FUZZ_CHECK(ours->has_request == (pc->request != NULL));
  FUZZ_CHECK(ours->has_response == (pc->response != NULL));
  if (pc->request) {
    const Mprpc__Meta__RpcRequestMeta *r = pc->request;
    FUZZ_CHECK(r->service_name && r->method_name);
    check_str(r->service_name, ours->service_name);
    check_str(r->method_name, ours->method_name);
    CHECK_INT(r->has_log_id, r->log_id, ours->log_id);
    CHECK_INT(r->has_trace_id, r->trace_id, ours->trace_id);
    CHECK_INT(r->has_span_id, r->span_id, ours->span_id);
    CHECK_INT(r->has_parent_span_id, r->parent_span_id, ours->parent_span_id);
    check_str(r->request_id, ours->request_id);
    CHECK_INT(r->has_timeout_ms, r->timeout_ms, ours->timeout_ms);
  } else {
    FUZZ_CHECK(ours->service_name.len == 0 && ours->method_name.len == 0);
    FUZZ_CHECK(ours->log_id == 0 && ours->timeout_ms == 0 && ours->request_id.len == 0);
  }
  if (pc->response) {
    CHECK_INT(pc->response->has_error_code, pc->response->error_code, ours->error_code);
    check_str(pc->response->error_text, ours->error_text);
  } else {
    FUZZ_CHECK(ours->error_code == 0 && ours->error_text.len == 0);
  }
  CHECK_INT(pc->has_compress_type, pc->compress_type, ours->compress_type);
  CHECK_INT(pc->has_content_type, pc->content_type, ours->content_type);
  CHECK_INT(pc->has_correlation_id, pc->correlation_id, ours->correlation_id);
  CHECK_INT(pc->has_attachment_size, pc->attachment_size, ours->attachment_size);
  check_bin(pc->has_authentication_data, pc->authentication_data, ours->auth_data);
  mprpc__meta__rpc_meta__free_unpacked(pc, &alloc);
  FUZZ_CHECK(cap.used == 0);
  return true;
}

static bool view_eq(mprpc_bytes_t a, mprpc_bytes_t b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = malloc(size ? size : 1); /* exact size: over-reads trap */
  FUZZ_CHECK(buf != NULL);
  if (size)
    memcpy(buf, data, size);

  mprpc_meta_t m;
  int rc = mprpc_meta_decode(buf, size, &m);
  FUZZ_CHECK(rc == 0 || rc == MPRPC_EBADMETA);
  differential(buf, size, &m, rc);

  if (rc == 0) { /* R3 */
    size_t n = mprpc_meta_size(&m);
    uint8_t *w = malloc(n ? n : 1);
    FUZZ_CHECK(w != NULL);
    FUZZ_CHECK(mprpc_meta_write(&m, w) == n);
    mprpc_meta_t back;
    FUZZ_CHECK(mprpc_meta_decode(w, n, &back) == 0);
    FUZZ_CHECK(back.has_request == m.has_request && back.has_response == m.has_response);
    FUZZ_CHECK(view_eq(back.service_name, m.service_name) && view_eq(back.method_name, m.method_name));
    FUZZ_CHECK(back.log_id == m.log_id && back.trace_id == m.trace_id && back.span_id == m.span_id);
    FUZZ_CHECK(back.parent_span_id == m.parent_span_id && back.timeout_ms == m.timeout_ms);
    FUZZ_CHECK(view_eq(back.request_id, m.request_id) && view_eq(back.error_text, m.error_text));
    FUZZ_CHECK(back.error_code == m.error_code && back.compress_type == m.compress_type);
    FUZZ_CHECK(back.correlation_id == m.correlation_id);
    FUZZ_CHECK(back.attachment_size == m.attachment_size && view_eq(back.auth_data, m.auth_data));
    /* our writer always emits both names, so protobuf-c must take it */
    bool accepted = differential(w, n, &back, 0);
    FUZZ_CHECK(accepted);
    free(w);
  }
  free(buf);
  return 0;
}
