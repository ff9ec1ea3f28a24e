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
    if (!ip) {
      mprpc__config_errorf(cfg, "no registry configured: looked for the keys 'registry' "
                                "(a URI) and 'zookeeperip' (with 'zookeeperport')");
      return MPRPC_ENOTFOUND;
    }
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
  /* registry_cache=PATH and the zookeeper_* keys become zk:// options. */
  bool zk = strncmp(out, "zk://", 5) == 0;
  const char *cache = take(cfg, "registry_cache");
  if (len >= 0 && (size_t)len < n && cache && cache[0] && zk)
    len += snprintf(out + len, n - (size_t)len, "%ccache=%s", strchr(out, '?') ? '&' : '?', cache);
  bool wait;
  int64_t ms;
  int rc;
  if (mprpc_config_has(cfg, "zookeeper_wait")) {
    if ((rc = mprpc_config_get_bool(cfg, "zookeeper_wait", true, &wait)) != 0)
      return rc;
    if (zk && len >= 0 && (size_t)len < n)
      len += snprintf(out + len, n - (size_t)len, "%cwait=%d", strchr(out, '?') ? '&' : '?',
                      wait ? 1 : 0);
  }
  static const struct {
    const char *key, *opt;
    int64_t min, max;
  } durations[] = {{"zookeeper_session_timeout", "session_timeout", 1000, 600000},
                   {"zookeeper_connect_timeout", "connect_timeout", 0, 600000}};
  for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
    if (!mprpc_config_has(cfg, durations[i].key))
      continue;
    if ((rc = mprpc_config_get_duration_ms(cfg, durations[i].key, 0, &ms)) != 0)
      return rc;
    if (ms < durations[i].min || ms > durations[i].max) {
      char exp[96];
      snprintf(exp, sizeof exp, "a duration from %lldms to %llds", (long long)durations[i].min,
               (long long)durations[i].max / 1000);
      return mprpc__config_bad_value(cfg, durations[i].key, exp);
    }
    if (zk && len >= 0 && (size_t)len < n)
      len += snprintf(out + len, n - (size_t)len, "%c%s=%lld", strchr(out, '?') ? '&' : '?',
                      durations[i].opt, (long long)ms);
  }
  if (len < 0 || (size_t)len >= n) {
    mprpc__config_errorf(cfg, "registry URI longer than %zu bytes", n - 1);
    return MPRPC_ENAMETOOLONG;
  }
  return 0;
}

