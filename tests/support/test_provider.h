/*
 * A provider for the loopback suites: a real mprpc_server_t on 127.0.0.1
 * and a port the kernel picks, serving the given services on the default
 * loops and TCP transport. Knows nothing of cmocka: it returns 0 or the
 * failing call's MPRPC_E* code, so a suite's setup can return -1 and a
 * test can assert.
 */
#ifndef MPRPC_TEST_PROVIDER_H
#define MPRPC_TEST_PROVIDER_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "mprpc/server.h"

/* Starts a server with o (its host and port are set here; every other
 * option, threads included, is the caller's) serving svcs[0..n-1]. On
 * success *out is the started server, which the caller destroys, and addr
 * (when not NULL) holds "127.0.0.1:PORT". On failure nothing is left
 * behind and *out is NULL. */
int test_provider_start(mprpc_server_opts_t *o, ProtobufCService *const *svcs, size_t n,
                        mprpc_server_t **out, char *addr, size_t cap);

#endif
