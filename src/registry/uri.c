/* Registry URIs: picks the implementation and hands it its options. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "registry/internal.h"

#define MAX_OPTS 16

static int fail(char *errbuf, size_t errlen, int rc, const char *uri, const char *fmt,
                const char *detail) {
  if (errbuf && errlen) {
    char d[512];
    snprintf(d, sizeof d, fmt, detail);
    snprintf(errbuf, errlen, "registry URI '%.200s': %s", uri, d);
  }
  return rc;
}

/* Splits "k=v&k=v" in place. */
static int parse_query(char *q, mprpc__reg_kv_t *kv, size_t *n, const char **bad) {
  *n = 0;
  while (q && *q) {
    char *amp = strchr(q, '&');
    if (amp)
      *amp = '\0';
    if (*q) {
      char *eq = strchr(q, '=');
      if (!eq || eq == q || *n == MAX_OPTS) {
        *bad = q;
        return MPRPC_EINVAL;
      }
      *eq = '\0';
      kv[*n].key = q;
      kv[*n].value = eq + 1;
      (*n)++;
    }
    q = amp ? amp + 1 : NULL;
  }
  return 0;
}

int mprpc_registry_open(const char *uri, mprpc_registry_t *out, char *errbuf, size_t errlen) {
  char dummy[8];
  if (!errbuf || !errlen) {
    errbuf = dummy;
    errlen = sizeof dummy;
  }
  errbuf[0] = '\0';
  if (!out)
    return MPRPC_EINVAL;
  out->vt = NULL;
  out->ctx = NULL;
  if (!uri || !*uri)
    return fail(errbuf, errlen, MPRPC_EINVAL, "", "%sempty (expected zk://, static:// or file://)",
                "");
  const char *sep = strstr(uri, "://");
  if (!sep)
    return fail(errbuf, errlen, MPRPC_EINVAL, uri,
                "%smissing scheme (expected zk://host:port, static://host:port or file:///path)",
                "");
  size_t slen = (size_t)(sep - uri);
  char *rest = strdup(sep + 3);
  if (!rest)
    return MPRPC_ENOMEM;
  mprpc__reg_kv_t kv[MAX_OPTS];
  size_t nkv = 0;
  const char *bad = NULL;
  char *q = strchr(rest, '?');
  int rc;
  if (q) {
    *q++ = '\0';
    if (parse_query(q, kv, &nkv, &bad)) {
      rc = fail(errbuf, errlen, MPRPC_EINVAL, uri,
                "bad option '%s' (expected key=value pairs separated by '&', at most 16)", bad);
      goto done;
    }
  }
  if (slen == 2 && strncmp(uri, "zk", 2) == 0) {
    char *slash = strchr(rest, '/');
    const char *chroot = "";
    if (slash) {
      chroot = strdup(slash);
      *slash = '\0';
      if (!chroot) {
        rc = MPRPC_ENOMEM;
        goto done;
      }
    }
    if (!*rest) {
      rc = fail(errbuf, errlen, MPRPC_EINVAL, uri, "%sno ZooKeeper server (expected zk://host:port)",
                "");
    } else {
      char e[400];
      e[0] = '\0';
      rc = mprpc__zk_open(rest, chroot, kv, nkv, out, e, sizeof e);
      if (rc)
        fail(errbuf, errlen, rc, uri, "%s", e);
    }
    if (slash)
      free((char *)chroot);
  } else if (slen == 6 && strncmp(uri, "static", 6) == 0) {
    char e[400];
    e[0] = '\0';
    rc = mprpc__static_open(rest, kv, nkv, out, e, sizeof e);
    if (rc)
      fail(errbuf, errlen, rc, uri, "%s", e);
  } else if (slen == 4 && strncmp(uri, "file", 4) == 0) {
    if (!*rest) {
      rc = fail(errbuf, errlen, MPRPC_EINVAL, uri, "%sno path (expected file:///path)", "");
    } else {
      char e[400];
      e[0] = '\0';
      rc = mprpc__file_open(rest, kv, nkv, out, e, sizeof e);
      if (rc)
        fail(errbuf, errlen, rc, uri, "%s", e);
    }
  } else {
    char scheme[32];
    snprintf(scheme, sizeof scheme, "%.*s", (int)(slen < 31 ? slen : 31), uri);
    rc = fail(errbuf, errlen, MPRPC_EINVAL, uri,
              "unknown scheme '%s' (expected zk://, static:// or file://)", scheme);
  }
done:
  free(rest);
  return rc;
}

int mprpc_registry_zk_uri(const char *ip, const char *port, char *out, size_t outlen) {
  if (!ip || !*ip || !port || !*port || !out || outlen == 0)
    return MPRPC_EINVAL;
  for (const char *p = port; *p; p++)
    if (*p < '0' || *p > '9')
      return MPRPC_EINVAL;
  long v = strtol(port, NULL, 10);
  if (v <= 0 || v > 65535 || strlen(port) > 5)
    return MPRPC_EINVAL;
  for (const char *p = ip; *p; p++)
    if (*p == '/' || *p == '?' || *p == ',' || *p == ' ' || *p == '\t')
      return MPRPC_EINVAL;
  int n = strchr(ip, ':') && ip[0] != '[' ? snprintf(out, outlen, "zk://[%s]:%ld", ip, v)
                                          : snprintf(out, outlen, "zk://%s:%ld", ip, v);
  if (n < 0 || (size_t)n >= outlen)
    return MPRPC_ENAMETOOLONG;
  return 0;
}
