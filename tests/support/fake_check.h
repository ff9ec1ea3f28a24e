/*
 * Checks inside the fake test environment (fake_loop, fake_net,
 * fake_registry). These files are linked into cmocka tests and into the
 * fuzz harnesses alike, so they cannot call cmocka: a failed check calls
 * the handler a test installed with fake_set_fail_handler (the cmocka
 * suites make it a test failure), or prints where and aborts, which AFL++,
 * libFuzzer and the corpus replay all record as a crash.
 *
 * A check failing here means the code under test broke a seam contract
 * (a write after on_close, a loop that never settles), never that a test's
 * expectation was wrong: those stay in the tests.
 */
#ifndef MPRPC_TEST_FAKE_CHECK_H
#define MPRPC_TEST_FAKE_CHECK_H

typedef void (*fake_fail_fn)(const char *file, int line, const char *what);

/* NULL restores print-and-abort. The handler must not return (cmocka's
 * fail_msg longjmps); if it does, the process aborts anyway. */
void fake_set_fail_handler(fake_fail_fn fn);
void fake__fail(const char *file, int line, const char *what);

#define FAKE_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      fake__fail(__FILE__, __LINE__, #cond);                                                       \
  } while (0)

#endif
