/* mprpc__pack_ref: large string/bytes fields referenced, the rest copied,
 * the pieces together exactly protobuf_c_message_pack's bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/pack_ref.h"
#include "json2.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"

/* Packs m both ways; checks the pieces join to pack's bytes and returns
 * the number of pieces (iov filled in, scratch in *scratch_out). */
static int pack_both(const ProtobufCMessage *m, struct iovec *iov, uint8_t **scratch_out) {
  size_t plen = protobuf_c_message_get_packed_size(m);
  uint8_t *want = malloc(plen + 1);
  uint8_t *scratch = malloc(plen + 1);
  assert_non_null(want);
  assert_non_null(scratch);
  assert_int_equal(protobuf_c_message_pack(m, want), plen);
  int n = -1;
  assert_int_equal(mprpc__pack_ref(m, plen, scratch, iov, &n), 0);
  assert_true(n >= 1 && n <= MPRPC__PACK_MAX_SEG);
  size_t pos = 0;
  for (int i = 0; i < n; i++) {
    assert_true(iov[i].iov_len > 0);
    assert_true(pos + iov[i].iov_len <= plen);
    assert_memory_equal(want + pos, iov[i].iov_base, iov[i].iov_len);
    pos += iov[i].iov_len;
  }
  assert_int_equal(pos, plen);
  free(want);
  *scratch_out = scratch;
  return n;
}

static bool in_block(const void *p, const uint8_t *block, size_t len) {
  const uint8_t *q = p;
  return q >= block && q < block + len;
}

static void test_pack_ref_small_message_is_one_copy(void **state) {
  (void)state;
  Jt2__All m = JT2__ALL__INIT;
  m.req_string = "hello";
  m.opt_bytes.data = (uint8_t *)"abc";
  m.opt_bytes.len = 3;
  m.has_opt_bytes = true;
  struct iovec iov[MPRPC__PACK_MAX_SEG];
  uint8_t *scratch;
  assert_int_equal(pack_both(&m.base, iov, &scratch), 1);
  assert_ptr_equal(iov[0].iov_base, scratch);
  free(scratch);
}

static void test_pack_ref_large_bytes_field_is_referenced(void **state) {
  (void)state;
  size_t big = 64 * 1024;
  uint8_t *data = malloc(big);
  assert_non_null(data);
  for (size_t i = 0; i < big; i++)
    data[i] = (uint8_t)(i * 7 + 3);
  Jt2__All m = JT2__ALL__INIT;
  m.req_int32 = 9;
  m.req_string = "x";
  m.opt_bytes.data = data;
  m.opt_bytes.len = big;
  m.has_opt_bytes = true;
  m.opt_string = "after the bytes";
  m.opt_int64 = 77;
  m.has_opt_int64 = true;
  struct iovec iov[MPRPC__PACK_MAX_SEG];
  uint8_t *scratch;
  int n = pack_both(&m.base, iov, &scratch);
  int refs = 0;
  for (int i = 0; i < n; i++) {
    if (iov[i].iov_base == data) {
      assert_int_equal(iov[i].iov_len, big);
      refs++;
    } else {
      assert_true(in_block(iov[i].iov_base, scratch, protobuf_c_message_get_packed_size(&m.base)));
    }
  }
  assert_int_equal(refs, 1);
  /* The copied pieces are small: only the field's bytes were left out. */
  size_t copied = 0;
  for (int i = 0; i < n; i++)
    if (iov[i].iov_base != data)
      copied += iov[i].iov_len;
  assert_true(copied < 64);
  free(scratch);
  free(data);
}

static void test_pack_ref_many_large_fields_stay_within_the_segments(void **state) {
  (void)state;
  enum { N = 12 };
  size_t each = MPRPC__PACK_REF_MIN + 100;
  ProtobufCBinaryData items[N];
  uint8_t *blocks[N];
  for (int i = 0; i < N; i++) {
    blocks[i] = malloc(each);
    assert_non_null(blocks[i]);
    memset(blocks[i], 'a' + i, each);
    items[i].data = blocks[i];
    items[i].len = each;
  }
  Jt2__Sub sub = JT2__SUB__INIT;
  char *long_name = malloc(each + 1);
  assert_non_null(long_name);
  memset(long_name, 'n', each);
  long_name[each] = '\0';
  sub.id = 1;
  sub.name = long_name; /* a large string inside a sub-message */
  Jt2__All m = JT2__ALL__INIT;
  m.req_string = "r";
  m.n_rep_bytes = N;
  m.rep_bytes = items;
  m.opt_sub = &sub;
  struct iovec iov[MPRPC__PACK_MAX_SEG];
  uint8_t *scratch;
  int n = pack_both(&m.base, iov, &scratch);
  /* copies, the sub-message's name, copies, rep_bytes[0], then everything
   * copied: a reference is taken only while two segments are free. */
  assert_int_equal(n, MPRPC__PACK_MAX_SEG - 1);
  assert_ptr_equal(iov[1].iov_base, long_name);
  assert_ptr_equal(iov[3].iov_base, blocks[0]);
  for (int i = 0; i < n; i++)
    for (int k = 1; k < N; k++)
      assert_ptr_not_equal(iov[i].iov_base, blocks[k]);
  free(scratch);
  free(long_name);
  for (int i = 0; i < N; i++)
    free(blocks[i]);
}

static void test_pack_ref_wrong_size_is_an_error_not_an_overrun(void **state) {
  (void)state;
  Jt2__All m = JT2__ALL__INIT;
  m.req_string = "a string longer than the size we claim";
  size_t plen = protobuf_c_message_get_packed_size(&m.base);
  /* The scratch is exactly as short as the claimed size: ASan catches a
   * write past it. */
  uint8_t *scratch = malloc(plen - 10);
  assert_non_null(scratch);
  struct iovec iov[MPRPC__PACK_MAX_SEG];
  int n;
  assert_int_equal(mprpc__pack_ref(&m.base, plen - 10, scratch, iov, &n), MPRPC_EINTERNAL);
  free(scratch);
  /* A claimed size above the real one is an error as well. */
  scratch = malloc(plen + 10);
  assert_non_null(scratch);
  assert_int_equal(mprpc__pack_ref(&m.base, plen + 10, scratch, iov, &n), MPRPC_EINTERNAL);
  free(scratch);
}

/* The pieces make a frame that parses back to the message. */
static void test_pack_ref_frame_from_pieces_round_trips(void **state) {
  (void)state;
  size_t big = 40000;
  uint8_t *data = malloc(big);
  assert_non_null(data);
  memset(data, 0x5a, big);
  Jt2__All m = JT2__ALL__INIT;
  m.req_string = "frame";
  m.opt_bytes.data = data;
  m.opt_bytes.len = big;
  m.has_opt_bytes = true;
  struct iovec iov[MPRPC__PACK_MAX_SEG];
  uint8_t *scratch;
  int n = pack_both(&m.base, iov, &scratch);
  mprpc_meta_t meta;
  memset(&meta, 0, sizeof meta);
  meta.has_response = true;
  meta.correlation_id = 5;
  mprpc_frame_out_t out;
  static const char att[] = "attached";
  assert_int_equal(mprpc_frame_encode_iov(&out, &meta, iov, n, att, sizeof att - 1), 0);
  uint8_t *flat = malloc(out.total);
  assert_non_null(flat);
  size_t pos = 0;
  for (int i = 0; i < out.iovcnt; i++) {
    memcpy(flat + pos, out.iov[i].iov_base, out.iov[i].iov_len);
    pos += out.iov[i].iov_len;
  }
  assert_int_equal(pos, out.total);
  mprpc_frame_t f;
  assert_int_equal(mprpc_frame_parse(flat, pos, 0, &f), (long)pos);
  assert_int_equal(f.meta.correlation_id, 5);
  assert_int_equal(f.attachment.len, sizeof att - 1);
  assert_memory_equal(f.attachment.ptr, att, sizeof att - 1);
  Jt2__All *back = jt2__all__unpack(NULL, f.payload.len, f.payload.ptr);
  assert_non_null(back);
  assert_string_equal(back->req_string, "frame");
  assert_int_equal(back->opt_bytes.len, big);
  assert_memory_equal(back->opt_bytes.data, data, big);
  jt2__all__free_unpacked(back, NULL);
  mprpc_frame_out_free(&out);
  free(flat);
  free(scratch);
  free(data);
}

static void test_frame_encode_iov_refuses_too_many_pieces(void **state) {
  (void)state;
  mprpc_meta_t meta;
  memset(&meta, 0, sizeof meta);
  meta.has_response = true;
  struct iovec iov[MPRPC_FRAME_MAX_PAYLOAD_IOV + 1];
  static uint8_t byte = 1;
  for (int i = 0; i <= MPRPC_FRAME_MAX_PAYLOAD_IOV; i++) {
    iov[i].iov_base = &byte;
    iov[i].iov_len = 1;
  }
  mprpc_frame_out_t out;
  assert_int_equal(mprpc_frame_encode_iov(&out, &meta, iov, MPRPC_FRAME_MAX_PAYLOAD_IOV + 1, NULL, 0),
                   MPRPC_EINVAL);
  mprpc_frame_out_free(&out);
  assert_int_equal(mprpc_frame_encode_iov(&out, &meta, NULL, 1, NULL, 0), MPRPC_EINVAL);
  mprpc_frame_out_free(&out);
  assert_int_equal(mprpc_frame_encode_iov(&out, &meta, iov, -1, NULL, 0), MPRPC_EINVAL);
  mprpc_frame_out_free(&out);
  /* The most pieces allowed, some empty: the empty ones are left out. */
  iov[2].iov_len = 0;
  assert_int_equal(mprpc_frame_encode_iov(&out, &meta, iov, MPRPC_FRAME_MAX_PAYLOAD_IOV, NULL, 0), 0);
  assert_int_equal(out.iovcnt, MPRPC_FRAME_MAX_PAYLOAD_IOV); /* head + 5 non-empty */
  mprpc_frame_out_free(&out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pack_ref_small_message_is_one_copy),
      cmocka_unit_test(test_pack_ref_large_bytes_field_is_referenced),
      cmocka_unit_test(test_pack_ref_many_large_fields_stay_within_the_segments),
      cmocka_unit_test(test_pack_ref_wrong_size_is_an_error_not_an_overrun),
      cmocka_unit_test(test_pack_ref_frame_from_pieces_round_trips),
      cmocka_unit_test(test_frame_encode_iov_refuses_too_many_pieces),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
