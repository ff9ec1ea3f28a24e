/* A provider on an ephemeral loopback port (test_provider.h). */
#include "test_provider.h"

#include <stdio.h>

#include "mprpc/errors.h"

int test_provider_start(mprpc_server_opts_t *o, ProtobufCService *const *svcs, size_t n,
                        mprpc_server_t **out, char *addr, size_t cap) {
  mprpc_server_t *s = NULL;
  *out = NULL;
  o->host = "127.0.0.1";
  o->port = 0;
  int rc = mprpc_server_new(o, &s);
  if (rc)
    return rc;
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = mprpc_server_add_service(s, svcs[i]);
  if (rc == 0)
    rc = mprpc_server_start(s);
  if (rc == 0 && mprpc_server_port(s) == 0)
    rc = MPRPC_ESTATE;
  if (rc) {
    mprpc_server_destroy(s);
    return rc;
  }
  if (addr)
    snprintf(addr, cap, "127.0.0.1:%u", (unsigned)mprpc_server_port(s));
  *out = s;
  return 0;
}
