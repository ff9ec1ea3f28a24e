/* Failure reporting for the fake test environment; see fake_check.h. */
#include "fake_check.h"

#include <stdio.h>
#include <stdlib.h>

static fake_fail_fn fail_handler;

void fake_set_fail_handler(fake_fail_fn fn) { fail_handler = fn; }

void fake__fail(const char *file, int line, const char *what) {
  if (fail_handler)
    fail_handler(file, line, what);
  fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
  abort();
}
