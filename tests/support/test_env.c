/* The cmocka side of the shared test environment; see test_env.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_env.h"

static void fail_test(const char *file, int line, const char *what) {
  fail_msg("%s:%d: fake environment check failed: %s", file, line, what);
}

void test_env_checks_fail_tests(void) { fake_set_fail_handler(fail_test); }
