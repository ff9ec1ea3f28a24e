/*
 * What the user/friend example programs share: the seeds' command line
 * (`prog -i FILE`), the seeds' config keys, and turning them into a registry.
 *
 *   rpcserverip=127.0.0.1      provider: address to listen on and publish
 *   rpcserverport=8000         provider: port (0 = any free port)
 *   zookeeperip=127.0.0.1      ZooKeeper, as in the seeds ...
 *   zookeeperport=2181
 *   registry=file:///tmp/reg   ... or any registry URI (zk://, file://,
 *                              static://); wins over zookeeperip/port
 *   threads=1                  provider I/O threads
 *
 * Header-only (static inline) because the build makes one program of every
 * examples/<dir>/<name>.c.
 */
#ifndef MPRPC_EXAMPLE_APP_H
#define MPRPC_EXAMPLE_APP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/app.h"
#include "mprpc/config.h"
#include "mprpc/errors.h"
#include "mprpc/registry.h"

/* Loads `-i FILE` (exits with the usage text on error, as the seeds do;
 * -h prints it and exits 0). */
static inline mprpc_config_t *app_init(int argc, char **argv) {
  mprpc_config_t *cfg = NULL;
  int rc = mprpc_app_init(argc, argv, &cfg);
  if (rc == MPRPC_ECANCELED)
    exit(0);
  if (rc != 0 || !cfg)
    exit(2);
  return cfg;
}

/* Opens the configured registry or exits with a message naming it: for a
 * program whose channels share one registry (mprpc_channel_from_config_reg). */
static inline mprpc_registry_t app_registry(const char *prog, mprpc_config_t *cfg) {
  mprpc_registry_t reg = {0};
  int rc = mprpc_registry_from_config(cfg, &reg);
  if (rc != 0) {
    fprintf(stderr, "%s: %s\n", prog, mprpc_config_error(cfg));
    exit(rc == MPRPC_ENOTFOUND ? 2 : 1);
  }
  return reg;
}

#endif
