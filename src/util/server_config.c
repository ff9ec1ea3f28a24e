/*
 * Provider options from a config file (docs/config.md, docs/server.md).
 * Kept out of src/core so the server core depends on the seams only.
 */
#include <string.h>

#include "mprpc/addr.h"
#include "mprpc/config.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/server.h"
#include "util/config_int.h"

int mprpc_server_opts_from_config(mprpc_config_t *cfg, mprpc_server_opts_t *o,
                                  mprpc_hostport_t *listen) {
  int64_t v;
  uint64_t sz;
  const char *str;
  int rc;
  if (!cfg || !o || !listen)
    return MPRPC_EINVAL;
  rc = mprpc_config_server_addr(cfg, listen);
  if (rc == 0) {
    o->host = listen->host;
    o->port = listen->port;
  } else if (rc != MPRPC_ENOTFOUND) {
    return rc;
  }
#define GET_INT(key, field, min, max)                                                              \
  do {                                                                                             \
    if ((rc = mprpc_config_get_int(cfg, key, (int64_t)o->field, min, max, &v)) != 0)               \
      return rc;                                                                                   \
    o->field = (__typeof__(o->field))v;                                                            \
  } while (0)
#define GET_MS(key, field)                                                                         \
  do {                                                                                             \
    if ((rc = mprpc_config_get_duration_ms(cfg, key, (int64_t)o->field, &v)) != 0)                 \
      return rc;                                                                                   \
    o->field = (uint64_t)v;                                                                        \
  } while (0)
  GET_INT("threads", threads, 1, 256);
  GET_INT("handler_threads", handler_threads, 0, 1024);
  GET_INT("max_concurrency", max_concurrency, 0, UINT32_MAX);
  GET_INT("max_method_concurrency", max_method_concurrency, 0, UINT32_MAX);
  GET_INT("weight", weight, 0, 1000000);
  GET_MS("idle_timeout", idle_timeout_ms);
  GET_MS("drain_timeout", drain_timeout_ms);
  GET_MS("logoff_grace", logoff_grace_ms);
  GET_MS("stats_period", stats_log_period_ms);
  GET_MS("slow_handler_warn_ms", slow_handler_warn_ms);
#undef GET_INT
#undef GET_MS
  uint64_t def_body = o->max_body ? o->max_body : MPRPC_FRAME_DEFAULT_MAX_BODY;
  if ((rc = mprpc_config_get_size(cfg, "max_body_size", def_body, &sz)) != 0)
    return rc;
  if (sz == 0 || sz > UINT32_MAX)
    return MPRPC_ERANGE; /* 1 B .. 4 GiB - 1: the frame header's u32 */
  o->max_body = (uint32_t)sz;
  if ((rc = mprpc_config_get_string(cfg, "advertise_host", o->advertise_host, &str)) != 0)
    return rc;
  o->advertise_host = str && *str ? str : NULL;
  if ((rc = mprpc_config_get_string(cfg, "version", o->version, &str)) != 0)
    return rc;
  o->version = str && *str ? str : NULL;
  return 0;
}

int mprpc_config_server_addr(mprpc_config_t *cfg, mprpc_hostport_t *out) {
  if (!cfg || !out)
    return MPRPC_EINVAL;
  const char *ip = NULL;
  mprpc_config_get_string(cfg, "rpcserverip", NULL, &ip);
  if (!ip)
    return MPRPC_ENOTFOUND;
  mprpc_hostport_t hp;
  memset(&hp, 0, sizeof hp);
  int rc = mprpc_addr_parse_host(ip, strlen(ip), &hp);
  if (rc)
    return mprpc__config_bad_value(cfg, "rpcserverip", "an IPv4 or IPv6 address or a hostname");
  int64_t port;
  if ((rc = mprpc_config_get_int(cfg, "rpcserverport", 0, 0, 65535, &port)) != 0)
    return rc;
  hp.port = (uint16_t)port;
  *out = hp;
  return 0;
}
