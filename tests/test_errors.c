#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mprpc/errors.h"

static void test_errors_every_code_has_name_and_text(void **state) {
  (void)state;
  static const int codes[] = {
#define X(name, value, text) value,
      MPRPC_ERRNO_MAP(X)
#undef X
  };
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    assert_true(codes[i] < 0);
    assert_string_not_equal(mprpc_err_name(codes[i]), "UNKNOWN");
    assert_string_not_equal(mprpc_strerror(codes[i]), "unknown error");
    for (size_t j = i + 1; j < sizeof codes / sizeof codes[0]; j++)
      assert_int_not_equal(codes[i], codes[j]);
  }
}

static void test_errors_brpc_numbers(void **state) {
  (void)state;
  assert_int_equal(mprpc_err_to_wire(MPRPC_ENOSERVICE), 1001);
  assert_int_equal(mprpc_err_to_wire(MPRPC_ENOMETHOD), 1002);
  assert_int_equal(mprpc_err_to_wire(MPRPC_EREQUEST), 1003);
  assert_int_equal(mprpc_err_to_wire(MPRPC_ERPCAUTH), 1004);
  assert_int_equal(mprpc_err_to_wire(MPRPC_ERPCTIMEDOUT), 1008);
  assert_int_equal(mprpc_err_to_wire(MPRPC_EFAILEDSOCKET), 1009);
  assert_int_equal(mprpc_err_to_wire(MPRPC_EOVERCROWDED), 1011);
  assert_int_equal(mprpc_err_to_wire(MPRPC_EINTERNAL), 2001);
  assert_int_equal(mprpc_err_to_wire(MPRPC_ERESPONSE), 2002);
  assert_int_equal(mprpc_err_to_wire(MPRPC_ELOGOFF), 2003);
  assert_int_equal(mprpc_err_to_wire(MPRPC_ELIMIT), 2004);
  assert_int_equal(mprpc_err_from_wire(1008), MPRPC_ERPCTIMEDOUT);
  assert_string_equal(mprpc_err_name(mprpc_err_from_wire(2003)), "ELOGOFF");
}

static void test_errors_unknown_and_success(void **state) {
  (void)state;
  assert_string_equal(mprpc_err_name(0), "OK");
  assert_string_equal(mprpc_strerror(0), "success");
  assert_string_equal(mprpc_err_name(-987654), "UNKNOWN");
  assert_string_equal(mprpc_strerror(-987654), "unknown error");
  /* unknown wire codes still read back as failures */
  assert_true(mprpc_err_from_wire(4242) < 0);
}

static void test_errors_from_errno(void **state) {
  (void)state;
  assert_int_equal(mprpc_err_from_errno(111), MPRPC_ECONNREFUSED);
  assert_int_equal(mprpc_err_from_errno(104), MPRPC_ECONNRESET);
  assert_int_equal(mprpc_err_from_errno(110), MPRPC_ETIMEDOUT);
  /* errno values that collide with nothing map to EIO, never to brpc codes */
  assert_int_equal(mprpc_err_from_errno(1001), MPRPC_EIO);
  assert_int_equal(mprpc_err_from_errno(9999), MPRPC_EIO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_errors_every_code_has_name_and_text),
      cmocka_unit_test(test_errors_brpc_numbers),
      cmocka_unit_test(test_errors_unknown_and_success),
      cmocka_unit_test(test_errors_from_errno),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
