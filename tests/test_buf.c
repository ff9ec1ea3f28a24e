#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mprpc/buf.h"
#include "mprpc/errors.h"
#include "mprpc/rand.h"

static void test_buf_append_consume_keeps_bytes_in_order(void **state) {
  (void)state;
  mprpc_rbuf_t b;
  mprpc_rbuf_init(&b);
  assert_int_equal(mprpc_rbuf_len(&b), 0);
  assert_null(mprpc_rbuf_data(&b)); /* never allocated: no NULL + 0 */
  uint8_t *w = (uint8_t *)&b;
  assert_int_equal(mprpc_rbuf_reserve(&b, 0, &w), 0);
  assert_null(w);
  mprpc_rbuf_commit(&b, 0);
  assert_int_equal(mprpc_rbuf_append(&b, "hello ", 6), 0);
  assert_int_equal(mprpc_rbuf_append(&b, "world", 5), 0);
  assert_int_equal(mprpc_rbuf_len(&b), 11);
  assert_memory_equal(mprpc_rbuf_data(&b), "hello world", 11);
  mprpc_rbuf_consume(&b, 6);
  assert_int_equal(mprpc_rbuf_len(&b), 5);
  assert_memory_equal(mprpc_rbuf_data(&b), "world", 5);
  mprpc_rbuf_consume(&b, 5);
  /* empty: back to offset 0, the allocation is kept */
  assert_int_equal(b.start, 0);
  assert_int_equal(b.end, 0);
  assert_non_null(b.data);
  assert_int_equal(mprpc_rbuf_append(&b, NULL, 0), 0);
  assert_int_equal(mprpc_rbuf_len(&b), 0);
  mprpc_rbuf_free(&b);
  assert_null(b.data);
  assert_int_equal(b.cap, 0);
  mprpc_rbuf_free(&b); /* twice is harmless */
}

static void test_buf_reserve_commit(void **state) {
  (void)state;
  mprpc_rbuf_t b = MPRPC_RBUF_INIT;
  uint8_t *w;
  assert_int_equal(mprpc_rbuf_reserve(&b, 100, &w), 0);
  assert_true(b.cap >= 100);
  memcpy(w, "abc", 3);
  mprpc_rbuf_commit(&b, 3); /* fewer than reserved, as a short read */
  assert_int_equal(mprpc_rbuf_len(&b), 3);
  assert_memory_equal(mprpc_rbuf_data(&b), "abc", 3);
  assert_int_equal(mprpc_rbuf_reserve(&b, 0, &w), 0);
  assert_ptr_equal(w, b.data + 3);
  mprpc_rbuf_free(&b);
}

static void test_buf_reserve_compacts_before_growing(void **state) {
  (void)state;
  mprpc_rbuf_t b = MPRPC_RBUF_INIT;
  uint8_t *w;
  assert_int_equal(mprpc_rbuf_reserve(&b, 1, &w), 0);
  size_t cap = b.cap;
  uint8_t fill[8192];
  for (size_t i = 0; i < sizeof fill; i++)
    fill[i] = (uint8_t)i;
  assert_int_equal(mprpc_rbuf_append(&b, fill, cap), 0); /* full */
  mprpc_rbuf_consume(&b, cap - 10);                        /* 10 live at the end */
  uint8_t *old = b.data;
  assert_int_equal(mprpc_rbuf_reserve(&b, cap - 10, &w), 0);
  assert_ptr_equal(b.data, old); /* compacted in place, not grown */
  assert_int_equal(b.cap, cap);
  assert_int_equal(b.start, 0);
  assert_memory_equal(mprpc_rbuf_data(&b), fill + cap - 10, 10);
  assert_ptr_equal(w, b.data + 10);
  /* one more byte than fits: grows, keeping the live bytes */
  assert_int_equal(mprpc_rbuf_reserve(&b, cap - 9, &w), 0);
  assert_true(b.cap >= cap + 1);
  assert_memory_equal(mprpc_rbuf_data(&b), fill + cap - 10, 10);
  mprpc_rbuf_free(&b);
}

static void test_buf_compact_and_shrink(void **state) {
  (void)state;
  mprpc_rbuf_t b = MPRPC_RBUF_INIT;
  static uint8_t big[1 << 20];
  memset(big, 7, sizeof big);
  assert_int_equal(mprpc_rbuf_append(&b, big, sizeof big), 0);
  assert_int_equal(mprpc_rbuf_append(&b, "tail", 4), 0);
  mprpc_rbuf_consume(&b, sizeof big);
  mprpc_rbuf_compact(&b);
  assert_int_equal(b.start, 0);
  assert_memory_equal(mprpc_rbuf_data(&b), "tail", 4);
  size_t cap = b.cap;
  assert_true(cap > (1 << 20));
  mprpc_rbuf_shrink(&b, 4096);
  assert_int_equal(b.cap, 4096);
  assert_memory_equal(mprpc_rbuf_data(&b), "tail", 4);
  /* not shrunk while more than half of `keep` is live */
  mprpc_rbuf_shrink(&b, 6);
  assert_int_equal(b.cap, 4096);
  mprpc_rbuf_consume(&b, 4);
  mprpc_rbuf_shrink(&b, 0); /* empty and keep 0: memory released */
  assert_null(b.data);
  assert_int_equal(b.cap, 0);
  assert_int_equal(mprpc_rbuf_append(&b, "x", 1), 0); /* still usable */
  assert_memory_equal(mprpc_rbuf_data(&b), "x", 1);
  mprpc_rbuf_free(&b);
}

static void test_buf_reserve_overflow_is_enomem(void **state) {
  (void)state;
  mprpc_rbuf_t b = MPRPC_RBUF_INIT;
  uint8_t *w = NULL;
  assert_int_equal(mprpc_rbuf_append(&b, "abc", 3), 0);
  assert_int_equal(mprpc_rbuf_reserve(&b, SIZE_MAX - 1, &w), MPRPC_ENOMEM);
  assert_null(w);
  assert_memory_equal(mprpc_rbuf_data(&b), "abc", 3); /* untouched */
  mprpc_rbuf_free(&b);
}

/* Random operations against a plain model of the byte queue. */
static void test_buf_random_ops_match_model(void **state) {
  (void)state;
  mprpc_xoshiro_t x;
  mprpc_xoshiro_seed(&x, 99);
  mprpc_rand_t r = mprpc_rand_xoshiro(&x);
  static uint8_t model[1 << 18];
  size_t mlen = 0;
  uint8_t next = 0;
  mprpc_rbuf_t b = MPRPC_RBUF_INIT;
  for (int i = 0; i < 20000; i++) {
    uint64_t op = mprpc_rand_below(r, 10);
    if (op < 5) {
      size_t n = mprpc_rand_below(r, mprpc_rand_below(r, 8) == 0 ? 9000 : 100);
      if (mlen + n > sizeof model)
        n = sizeof model - mlen;
      uint8_t tmp[9000];
      for (size_t k = 0; k < n; k++)
        tmp[k] = next++;
      if (op < 3) {
        assert_int_equal(mprpc_rbuf_append(&b, tmp, n), 0);
      } else {
        uint8_t *w;
        assert_int_equal(mprpc_rbuf_reserve(&b, n + 10, &w), 0);
        memcpy(w, tmp, n);
        mprpc_rbuf_commit(&b, n);
      }
      memcpy(model + mlen, tmp, n);
      mlen += n;
    } else if (op < 8) {
      size_t n = mprpc_rand_below(r, mlen + 1);
      mprpc_rbuf_consume(&b, n);
      memmove(model, model + n, mlen - n);
      mlen -= n;
    } else if (op == 8) {
      mprpc_rbuf_compact(&b);
    } else {
      mprpc_rbuf_shrink(&b, 4096);
    }
    assert_int_equal(mprpc_rbuf_len(&b), mlen);
    if (mlen)
      assert_memory_equal(mprpc_rbuf_data(&b), model, mlen);
    assert_true(b.start <= b.end && b.end <= b.cap);
  }
  mprpc_rbuf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_buf_append_consume_keeps_bytes_in_order),
      cmocka_unit_test(test_buf_reserve_commit),
      cmocka_unit_test(test_buf_reserve_compacts_before_growing),
      cmocka_unit_test(test_buf_compact_and_shrink),
      cmocka_unit_test(test_buf_reserve_overflow_is_enomem),
      cmocka_unit_test(test_buf_random_ops_match_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
