/*
 * Assertions for fuzz harnesses: a failed check prints where and aborts, so
 * AFL++ and libFuzzer record a crash and the replay driver fails loudly.
 * (assert() would vanish under -DNDEBUG; cmocka is not linked here.)
 */
#ifndef MPRPC_FUZZ_CHECK_H
#define MPRPC_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                    \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#endif
