/* ZooKeeper registry (placeholder until the implementation lands). */
#include <stdio.h>

#include "mprpc/errors.h"
#include "registry/internal.h"

int mprpc__zk_open(const char *hosts, const char *chroot, const mprpc__reg_kv_t *opts,
                   size_t nopts, mprpc_registry_t *out, char *err, size_t errlen) {
  (void)hosts;
  (void)chroot;
  (void)opts;
  (void)nopts;
  (void)out;
  snprintf(err, errlen, "zk:// is not built yet");
  return MPRPC_EUNSUPPORTED;
}
