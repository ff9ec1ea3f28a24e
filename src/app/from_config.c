/*
 * One call to set up each side from a config file: the provider
 * (mprpc_server_from_config) and a channel (mprpc_channel_from_config),
 * each owning the registry it opened. Declared in include/mprpc/app.h.
 * Every error leaves its text in mprpc_config_error(cfg).
 */
#include <stdio.h>
#include <string.h>

#include "mprpc/app.h"
#include "mprpc/channel.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/registry.h"
#include "mprpc/server.h"
#include "util/config_int.h"

/* The logger keys, unless mprpc_app_init (or anyone) applied them already:
 * a program that loads its config by hand still gets its logging, and one
 * that used mprpc_app_init does not reopen the log file. */
static int apply_log_once(mprpc_config_t *cfg) {
  static const char *const keys[] = {"log_level", "log_file", "log_max_bytes",
                                     "log_rotate_daily", "log_keep", "log_queue_bytes",
                                     "log_sync"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (mprpc_config_has(cfg, keys[i]) && !mprpc__config_used(cfg, keys[i]))
      return mprpc_config_apply_log(cfg);
  return 0;
}

int mprpc_registry_from_config(mprpc_config_t *cfg, mprpc_registry_t *out) {
  if (!cfg || !out)
    return MPRPC_EINVAL;
  *out = (mprpc_registry_t){0};
  char uri[1024], err[512] = "";
  int rc = mprpc_config_registry_uri(cfg, uri, sizeof uri);
  if (rc)
    return rc; /* the text names the keys or the bad value */
  rc = mprpc_registry_open(uri, out, err, sizeof err);
  if (rc) {
    mprpc__config_errorf(cfg, "registry %s: %s%s%s", uri, mprpc_strerror(rc), *err ? ": " : "",
                         err);
    *out = (mprpc_registry_t){0};
  }
  return rc;
}

int mprpc_server_from_config(mprpc_config_t *cfg, mprpc_server_t **out) {
  if (out)
    *out = NULL;
  if (!cfg || !out)
    return MPRPC_EINVAL;
  int rc = apply_log_once(cfg);
  if (rc)
    return rc;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  mprpc_hostport_t listen;
  memset(&listen, 0, sizeof listen);
  rc = mprpc_server_opts_from_config(cfg, &o, &listen);
  if (rc == MPRPC_ERANGE)
    rc = mprpc__config_bad_value(cfg, "max_body_size", "a size from 1 byte to 4GiB - 1");
  if (rc)
    return rc;
  if (!mprpc_config_has(cfg, "rpcserverip")) {
    mprpc__config_errorf(cfg, "rpcserverip is not set: the address the provider listens on "
                              "(and publishes, unless advertise_host says otherwise)");
    return MPRPC_ECONFIG;
  }
  mprpc_registry_t reg;
  rc = mprpc_registry_from_config(cfg, &reg);
  if (rc == MPRPC_ENOTFOUND) {
    MPRPC_LOG_INFO("server: no registry configured (registry=, zookeeperip=): serving on "
                   "%s:%u without publishing", listen.host, (unsigned)listen.port);
    rc = 0;
  }
  if (rc)
    return rc;
  o.registry = reg;
  o.own_registry = reg.vt != NULL;
  rc = mprpc_server_new(&o, out);
  if (rc) {
    mprpc__config_errorf(cfg, "server on %s:%u: %s", listen.host, (unsigned)listen.port,
                         mprpc_strerror(rc));
    mprpc_registry_close(reg);
    *out = NULL;
  }
  return rc;
}

/* The channel for sd from cfg's keys, on reg (which it owns when own). */
static int channel_new(mprpc_config_t *cfg, const ProtobufCServiceDescriptor *sd,
                       mprpc_registry_t reg, bool own, mprpc_channel_t **out) {
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  int rc = mprpc_channel_opts_from_config(cfg, &o);
  if (rc)
    return rc;
  if (o.idempotent_methods) {
    char why[256];
    rc = mprpc_channel_parse_idempotent(sd, o.idempotent_methods, NULL, why, sizeof why);
    if (rc) {
      mprpc__config_key_error(cfg, "idempotent_methods", why);
      return rc;
    }
  }
  if (!o.servers) {
    o.registry = reg;
    o.own_registry = own;
  }
  rc = mprpc_channel_new(sd, &o, out);
  if (rc) {
    mprpc__config_errorf(cfg, "channel for %s: %s", sd->name, mprpc_strerror(rc));
    *out = NULL;
  }
  return rc;
}

int mprpc_channel_from_config_reg(mprpc_config_t *cfg, const ProtobufCServiceDescriptor *sd,
                                  mprpc_registry_t reg, mprpc_channel_t **out) {
  if (out)
    *out = NULL;
  if (!cfg || !sd || !out)
    return MPRPC_EINVAL;
  int rc = apply_log_once(cfg);
  if (rc)
    return rc;
  if (!reg.vt && !mprpc_config_has(cfg, "servers")) {
    mprpc__config_errorf(cfg, "channel for %s: no registry given and no servers= key", sd->name);
    return MPRPC_ECONFIG;
  }
  return channel_new(cfg, sd, reg, false, out);
}

int mprpc_channel_from_config(mprpc_config_t *cfg, const ProtobufCServiceDescriptor *sd,
                              mprpc_channel_t **out) {
  if (out)
    *out = NULL;
  if (!cfg || !sd || !out)
    return MPRPC_EINVAL;
  int rc = apply_log_once(cfg);
  if (rc)
    return rc;
  const char *servers = NULL;
  mprpc_config_get_string(cfg, "servers", NULL, &servers);
  if (servers && *servers) /* a fixed list: no registry */
    return channel_new(cfg, sd, (mprpc_registry_t){0}, false, out);
  mprpc_registry_t reg;
  rc = mprpc_registry_from_config(cfg, &reg);
  if (rc == MPRPC_ENOTFOUND) {
    mprpc__config_errorf(cfg, "channel for %s: no providers configured: set servers=host:port,... "
                              "or a registry (registry=URI, or zookeeperip and zookeeperport)",
                         sd->name);
    return MPRPC_ECONFIG;
  }
  if (rc)
    return rc;
  rc = channel_new(cfg, sd, reg, true, out);
  if (rc)
    mprpc_registry_close(reg);
  return rc;
}
