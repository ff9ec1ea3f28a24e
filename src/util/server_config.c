/*
 * Provider options from a config file (docs/config.md, docs/server.md).
 * Kept out of src/core so the server core depends on the seams only.
 */
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "mprpc/addr.h"
#include "mprpc/config.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"
#include "mprpc/server.h"
#include "util/config_int.h"
#include "util/keys.h"

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
  /* Limits whose 0 in a file means "off" (in the options, 0 is the
   * default and the all-ones value is off). */
#define GET_MS_OFF(key, field)                                                                     \
  do {                                                                                             \
    if (mprpc_config_has(cfg, key)) {                                                              \
      if ((rc = mprpc_config_get_duration_ms(cfg, key, 0, &v)) != 0)                               \
        return rc;                                                                                 \
      o->field = v == 0 ? UINT64_MAX : (uint64_t)v;                                                \
    }                                                                                              \
  } while (0)
  GET_MS_OFF("idle_timeout", idle_timeout_ms);
  GET_MS_OFF("header_timeout", header_timeout_ms);
  GET_MS("budget_wait", budget_wait_ms);
  if (mprpc_config_has(cfg, "max_buffered_bytes")) {
    if ((rc = mprpc_config_get_size(cfg, "max_buffered_bytes", 0, &sz)) != 0)
      return rc;
    o->max_buffered_bytes = sz == 0 || sz > SIZE_MAX ? SIZE_MAX : (size_t)sz;
  }
  if (mprpc_config_has(cfg, "min_body_rate")) {
    if ((rc = mprpc_config_get_size(cfg, "min_body_rate", 0, &sz)) != 0)
      return rc;
    o->min_body_rate = sz == 0 || sz >= UINT32_MAX ? UINT32_MAX : (uint32_t)sz;
  }
  if (mprpc_config_has(cfg, "max_connections")) {
    if ((rc = mprpc_config_get_int(cfg, "max_connections", 0, 0, UINT32_MAX, &v)) != 0)
      return rc;
    o->max_connections = v == 0 ? UINT32_MAX : (uint32_t)v;
  }
  GET_INT("max_connections_per_ip", max_connections_per_ip, 0, 1000000);
#undef GET_MS_OFF
  GET_MS("drain_timeout", drain_timeout_ms);
  GET_MS("logoff_grace", logoff_grace_ms);
  GET_MS("stats_period", stats_log_period_ms);
  GET_MS("slow_handler_warn_ms", slow_handler_warn_ms);
  GET_INT("rpcz_every", rpcz_every, 0, UINT32_MAX);
  GET_INT("console_port", console_port, 0, 65535);
  bool b;
  if ((rc = mprpc_config_get_bool(cfg, "console", o->console, &b)) != 0)
    return rc;
  o->console = b;
  if ((rc = mprpc_config_get_bool(cfg, "console_write", o->console_write, &b)) != 0)
    return rc;
  o->console_write = b;
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
  if ((rc = mprpc_config_get_string(cfg, "group", o->group, &str)) != 0)
    return rc;
  o->group = str && *str ? str : NULL;
  if ((rc = mprpc_config_get_bool(cfg, "reflection", o->reflection, &o->reflection)) != 0)
    return rc;
  static const char *const tls_modes[] = {"off", "optional", "required"}; /* MPRPC_SERVER_TLS_* */
  if ((rc = mprpc_config_get_choice(cfg, "tls_mode", tls_modes, 3, &o->tls_mode)) != 0 ||
      (rc = mprpc_config_get_choice(cfg, "tls_verify_client", tls_modes, 3,
                                    &o->tls_verify_client)) != 0)
    return rc;
  if ((rc = mprpc_config_get_duration_ms(cfg, "tls_handshake_timeout",
                                         (int64_t)o->tls_handshake_timeout_ms, &v)) != 0)
    return rc;
  o->tls_handshake_timeout_ms = (uint64_t)v;
  static const struct {
    const char *key;
    size_t off;
  } files[] = {{"tls_cert", offsetof(mprpc_server_opts_t, tls_cert)},
               {"tls_key", offsetof(mprpc_server_opts_t, tls_key)},
               {"tls_ca", offsetof(mprpc_server_opts_t, tls_ca)}};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    const char **f = (const char **)(void *)((char *)o + files[i].off);
    if ((rc = mprpc_config_get_string(cfg, files[i].key, *f, &str)) != 0)
      return rc;
    *f = str && *str ? str : NULL;
  }
  /* Governance keys (rate_limit.Echo=100): the process's own layer under
   * the config centre's nodes, checked when applied (reported with the
   * file and line, never fatal). */
  const char *gtext, *gname;
  if ((rc = mprpc__config_collect(cfg, mprpc__key_gov_server, &gtext, &gname)) != 0)
    return rc;
  if (gtext) {
    o->governance = gtext;
    o->governance_name = gname;
  }
  /* A certificate without a mode means TLS was wanted: required, not off. */
  if (o->tls_mode == MPRPC_SERVER_TLS_OFF && !mprpc_config_has(cfg, "tls_mode") && o->tls_cert)
    o->tls_mode = MPRPC_SERVER_TLS_REQUIRED;
  if (o->tls_mode != MPRPC_SERVER_TLS_OFF && (!o->tls_cert || !o->tls_key))
    return mprpc__config_key_error(cfg, "tls_mode", "TLS needs tls_cert and tls_key");
  if (o->tls_verify_client != MPRPC_SERVER_TLS_VERIFY_OFF && !o->tls_ca)
    return mprpc__config_key_error(cfg, "tls_verify_client",
                                   "client certificates need tls_ca (the CAs that issue them)");
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
