/*
 * The registry URI from a config file: `registry`, or the seeds' keys
 * zookeeperip/zookeeperport (docs/config.md). Declared in mprpc/registry.h.
 */
#include <stdio.h>
#include <string.h>

#include "mprpc/addr.h"
#include "mprpc/config.h"
#include "mprpc/errors.h"
#include "mprpc/registry.h"
#include "util/config_int.h"

/* A key's value, marking it used (for the unknown-key report). */
static const char *take(mprpc_config_t *cfg, const char *key) {
  const char *v = NULL;
  mprpc_config_get_string(cfg, key, NULL, &v);
  return v;
}

int mprpc_config_registry_uri(mprpc_config_t *cfg, char *out, size_t n) {
  if (!cfg || !out || n == 0)
    return MPRPC_EINVAL;
  const char *r = take(cfg, "registry");
  int len;
  if (r && r[0]) {
    if (!strstr(r, "://"))
      return mprpc__config_bad_value(cfg, "registry",
                                     "a registry URI: zk://host:port, static://host:port, file:///path");
    len = snprintf(out, n, "%s", r);
  } else {
    const char *ip = take(cfg, "zookeeperip");
    if (!ip)
      return MPRPC_ENOTFOUND;
    mprpc_hostport_t hp;
    int rc = mprpc_addr_parse_host(ip, strlen(ip), &hp);
    if (rc)
      return mprpc__config_bad_value(cfg, "zookeeperip", "an IPv4 or IPv6 address or a hostname");
    int64_t port;
    if ((rc = mprpc_config_get_int(cfg, "zookeeperport", 2181, 1, 65535, &port)) != 0)
      return rc;
    len = hp.family == 6 ? snprintf(out, n, "zk://[%s]:%d", hp.host, (int)port)
                         : snprintf(out, n, "zk://%s:%d", hp.host, (int)port);
  }
  /* registry_cache=PATH becomes the zk registry's cache option. */
  const char *cache = take(cfg, "registry_cache");
  if (len >= 0 && (size_t)len < n && cache && cache[0] && strncmp(out, "zk://", 5) == 0)
    len += snprintf(out + len, n - (size_t)len, "%ccache=%s", strchr(out, '?') ? '&' : '?', cache);
  if (len < 0 || (size_t)len >= n) {
    mprpc__config_errorf(cfg, "registry URI longer than %zu bytes", n - 1);
    return MPRPC_ENAMETOOLONG;
  }
  return 0;
}

