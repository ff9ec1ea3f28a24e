/*
 * Counters with one writer thread (internal): the writer adds with a plain
 * load and a release store, no locked read-modify-write; readers on other
 * threads load with acquire and never see a torn value. A reader that sees
 * a store also sees everything the writer did before it (the provider's
 * in-flight count relies on this: see mprpc__srv_method_inflight).
 */
#ifndef MPRPC_CORE_ONE_WRITER_H
#define MPRPC_CORE_ONE_WRITER_H

#define MPRPC__ONE_WRITER_ADD(p, v)                                                     \
  __atomic_store_n((p), __atomic_load_n((p), __ATOMIC_RELAXED) + (v), __ATOMIC_RELEASE)
#define MPRPC__ONE_WRITER_SET(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define MPRPC__ONE_WRITER_READ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

#endif
