/*
 * Consumer options from a config file (docs/config.md, docs/client.md).
 * Kept out of src/core so the channel core depends on the seams only.
 */
#include <stdint.h>
#include <string.h>

#include "mprpc/channel.h"
#include "mprpc/config.h"
#include "mprpc/errors.h"
#include "util/config_int.h"
#include "util/keys.h"

/* A duration key into an int64 ms field; absent keys keep the field. */
static int get_ms(mprpc_config_t *cfg, const char *key, int64_t *field) {
  int64_t v;
  int rc = mprpc_config_get_duration_ms(cfg, key, *field, &v);
  if (rc == 0)
    *field = v;
  return rc;
}

int mprpc_channel_opts_from_config(mprpc_config_t *cfg, mprpc_channel_opts_t *o) {
  static const char *const policies[] = {"failover", "failfast"};
  static const char *const lbs[] = {"rr", "random", "hash", "least"};
  /* indexed by MPRPC_COMPRESS_*, brpc's numbering */
  static const char *const compressions[] = {"none", "snappy", "gzip", "zlib"};
  int64_t v;
  const char *s;
  int rc;
  if (!cfg || !o)
    return MPRPC_EINVAL;
  if ((rc = get_ms(cfg, "timeout", &o->timeout_ms)) != 0 ||
      (rc = get_ms(cfg, "connect_timeout", &o->connect_timeout_ms)) != 0 ||
      (rc = get_ms(cfg, "attempt_timeout", &o->attempt_timeout_ms)) != 0 ||
      (rc = get_ms(cfg, "backup_request", &o->backup_request_ms)) != 0)
    return rc;
  if ((rc = mprpc_config_get_int(cfg, "max_retry", o->max_retry, 0, 100, &v)) != 0)
    return rc;
  o->max_retry = (int)v;
  if ((rc = mprpc_config_get_int(cfg, "connections_per_endpoint",
                                 o->connections_per_endpoint ? o->connections_per_endpoint : 1, 1,
                                 64, &v)) != 0)
    return rc;
  o->connections_per_endpoint = (unsigned)v;
  if ((rc = mprpc_config_get_choice(cfg, "retry_policy", policies, 2, &o->retry_policy)) != 0 ||
      (rc = mprpc_config_get_choice(cfg, "lb", lbs, 4, &o->lb)) != 0 ||
      (rc = mprpc_config_get_choice(cfg, "compress", compressions, 4, &o->compress_type)) != 0)
    return rc;
  /* The providers' body limit, which requests must stay under too. */
  uint64_t body;
  if ((rc = mprpc_config_get_size(cfg, "max_body_size", o->max_body, &body)) != 0)
    return rc;
  if (body > UINT32_MAX)
    return mprpc__config_bad_value(cfg, "max_body_size", "a size up to 4GiB - 1");
  o->max_body = (uint32_t)body;
  if (mprpc_config_has(cfg, "max_buffered_bytes")) { /* 0 in a file: unlimited */
    if ((rc = mprpc_config_get_size(cfg, "max_buffered_bytes", 0, &body)) != 0)
      return rc;
    o->max_buffered_bytes = body == 0 || body > SIZE_MAX ? SIZE_MAX : (size_t)body;
  }
  if ((rc = mprpc_config_get_string(cfg, "idempotent_methods", o->idempotent_methods, &s)) != 0)
    return rc;
  o->idempotent_methods = s;
  if ((rc = mprpc_config_get_string(cfg, "select_group", o->group, &s)) != 0)
    return rc;
  o->group = s && *s ? s : NULL;
  if ((rc = mprpc_config_get_string(cfg, "select_version", o->version, &s)) != 0)
    return rc;
  o->version = s && *s ? s : NULL;
  if ((rc = mprpc_config_get_string(cfg, "servers", o->servers, &s)) != 0)
    return rc;
  o->servers = s && *s ? s : NULL;
  bool on;
  if ((rc = mprpc_config_get_bool(cfg, "tls", o->tls, &on)) != 0)
    return rc;
  o->tls = on;
  if ((rc = mprpc_config_get_bool(cfg, "tls_verify", !o->tls_no_verify, &on)) != 0)
    return rc;
  o->tls_no_verify = !on;
  const char **strs[] = {&o->tls_ca, &o->tls_cert, &o->tls_key, &o->tls_server_name};
  static const char *const keys[] = {"tls_ca", "tls_cert", "tls_key", "tls_server_name"};
  for (size_t i = 0; i < 4; i++) {
    if ((rc = mprpc_config_get_string(cfg, keys[i], *strs[i], &s)) != 0)
      return rc;
    *strs[i] = s && *s ? s : NULL;
  }
  /* Governance keys (rate_limit.Echo=100): the process's own layer under
   * the config centre's nodes, checked when applied (reported with the
   * file and line, never fatal). */
  const char *gtext, *gname;
  if ((rc = mprpc__config_collect(cfg, mprpc__key_gov_channel, &gtext, &gname)) != 0)
    return rc;
  if (gtext) {
    o->governance = gtext;
    o->governance_name = gname;
  }
  if (!o->tls_cert != !o->tls_key)
    return mprpc__config_key_error(cfg, o->tls_cert ? "tls_key" : "tls_cert",
                                   "tls_cert and tls_key go together (a client certificate and "
                                   "its key)");
  return 0;
}
