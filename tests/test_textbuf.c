/* The core's string builder (core/textbuf.h): growth, printf, escaping for
 * HTML and JSON, hand-over, sticky errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/textbuf.h"
#include "mprpc/errors.h"

static void test_textbuf_grows_and_prints(void **state) {
  (void)state;
  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  assert_string_equal(mprpc__textbuf_cstr(&tb), "");
  assert_int_equal(mprpc__textbuf_printf(&tb, "%d-%s", 42, "x"), 0);
  assert_string_equal(tb.data, "42-x");
  char big[3000];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(mprpc__textbuf_printf(&tb, "[%s]", big), 0); /* past the 256-byte fast path */
  assert_int_equal(tb.len, 4 + 2 + sizeof big - 1);
  assert_int_equal(tb.data[tb.len], '\0');
  assert_int_equal(tb.data[tb.len - 1], ']');
  assert_int_equal(mprpc__textbuf_append(&tb, "ab\0c", 4), 0);
  assert_int_equal(tb.len, 4 + 2 + sizeof big - 1 + 4);
  mprpc__textbuf_reset(&tb);
  assert_string_equal(mprpc__textbuf_cstr(&tb), "");
  mprpc__textbuf_puts(&tb, "keep");
  size_t n;
  char *s = mprpc__textbuf_take(&tb, &n);
  assert_string_equal(s, "keep");
  assert_int_equal(n, 4);
  free(s);
  assert_null(tb.data);
  assert_null(mprpc__textbuf_take(&tb, &n));
  assert_int_equal(n, 0);
  mprpc__textbuf_free(&tb);
}

static void test_textbuf_html_escape(void **state) {
  (void)state;
  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  static const char in[] = "<a href=\"x\">Tom & 'Jerry'</a>";
  mprpc__textbuf_html(&tb, in, sizeof in - 1);
  assert_string_equal(tb.data, "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;");
  mprpc__textbuf_reset(&tb);
  mprpc__textbuf_html(&tb, "plain", 5);
  mprpc__textbuf_html(&tb, "", 0);
  assert_string_equal(tb.data, "plain");
  mprpc__textbuf_free(&tb);
}

static void test_textbuf_json_escape(void **state) {
  (void)state;
  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  static const char in[] = "q\"b\\n\n\r\t\x01\x1f\x7f </script> \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
  mprpc__textbuf_json(&tb, in, sizeof in - 1);
  assert_string_equal(tb.data, "\"q\\\"b\\\\n\\n\\r\\t\\u0001\\u001f\\u007f </script> \xc3\xa9 "
                               "\xe2\x82\xac \xf0\x9f\x98\x80\"");
  /* invalid UTF-8 never reaches the output: lone continuation, truncated
   * sequence, overlong, surrogate, above U+10FFFF */
  mprpc__textbuf_reset(&tb);
  static const char bad[] = "\x80|\xc3|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82";
  mprpc__textbuf_json(&tb, bad, sizeof bad - 1);
  assert_string_equal(tb.data, "\"\\ufffd|\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
                               "\\ufffd\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\"");
  mprpc__textbuf_reset(&tb);
  mprpc__textbuf_json(&tb, "a\0b", 3);
  assert_string_equal(tb.data, "\"a\\u0000b\"");
  mprpc__textbuf_reset(&tb);
  mprpc__textbuf_json(&tb, NULL, 0);
  assert_string_equal(tb.data, "\"\"");
  mprpc__textbuf_free(&tb);
}

static void test_textbuf_errors_are_sticky(void **state) {
  (void)state;
  mprpc__textbuf_t tb = MPRPC__TEXTBUF_INIT;
  mprpc__textbuf_puts(&tb, "x");
  assert_int_equal(mprpc__textbuf_reserve(&tb, SIZE_MAX - 8), MPRPC_ENOMEM);
  assert_int_equal(mprpc__textbuf_puts(&tb, "y"), MPRPC_ENOMEM);
  assert_string_equal(tb.data, "x");
  assert_null(mprpc__textbuf_take(&tb, NULL)); /* frees */
  mprpc__textbuf_free(&tb);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_textbuf_grows_and_prints),
      cmocka_unit_test(test_textbuf_html_escape),
      cmocka_unit_test(test_textbuf_json_escape),
      cmocka_unit_test(test_textbuf_errors_are_sticky),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
