/*
 * The shared test environment, for cmocka suites: the fake loop, transport
 * and registry (fake_env.h; those files are linked into the fuzz harnesses
 * too, so they know nothing of cmocka) plus what only cmocka tests need.
 */
#ifndef MPRPC_TEST_ENV_H
#define MPRPC_TEST_ENV_H

#include "fake_env.h"

/* Makes a failed check inside the fakes (a broken seam contract, a loop
 * that never settles) fail the running cmocka test, with its text, instead
 * of aborting the whole binary. Call once from main. */
void test_env_checks_fail_tests(void);

#endif
