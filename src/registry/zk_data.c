/*
 * The data of a provider's ZooKeeper node: key=value lines (address,
 * weight, methods, version, start_time_ms, pid, hostname, group, and tls=1 for
 * a provider that speaks TLS only). The format is
 * documented in docs/registry.md for other tools; keep the two in step.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/select.h"
#include "mprpc/log.h"
#include "registry/internal.h"

char *mprpc__zk_data_format(const mprpc_instance_t *inst) {
  char addr[MPRPC__REG_MAX_HOST + 16], hostname[256] = "";
  mprpc__reg_format_hostport(inst->host, inst->port, addr, sizeof addr);
  gethostname(hostname, sizeof hostname - 1);
  const char *group = mprpc__group_of(inst->group);
  size_t n = strlen(addr) + (inst->methods ? strlen(inst->methods) : 0) +
             (inst->version ? strlen(inst->version) : 0) + strlen(group) + strlen(hostname) + 200;
  char *d = malloc(n);
  if (!d)
    return NULL;
  snprintf(d, n,
           "address=%s\nweight=%" PRIu32 "\nmethods=%s\nversion=%s\nstart_time_ms=%" PRIu64
           "\npid=%ld\nhostname=%s\ngroup=%s\n%s",
           addr, inst->weight ? inst->weight : MPRPC_DEFAULT_WEIGHT,
           inst->methods ? inst->methods : "", inst->version ? inst->version : "",
           inst->start_time_ms, (long)getpid(), hostname, group, inst->tls ? "tls=1\n" : "");
  return d;
}

/* Node name is host:port; data is the key=value text above. Also accepts a
 * bare "host:port" (the seeds' style). Unknown keys are ignored so newer
 * writers can add some. */
int mprpc__zk_data_parse(const char *service, const char *child, char *data, mprpc__reg_list_t *out) {
  char host[MPRPC__REG_MAX_HOST], e[200];
  uint16_t port;
  mprpc_instance_t inst = {.service = service, .weight = MPRPC_DEFAULT_WEIGHT};
  bool have_addr = mprpc__reg_parse_hostport(child, strlen(child), host, sizeof host, &port, e,
                                             sizeof e) == 0;
  char *save = NULL;
  for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    size_t ll = strlen(line);
    if (ll && line[ll - 1] == '\r')
      line[--ll] = '\0';
    char *eq = strchr(line, '=');
    if (!eq) {
      if (!have_addr &&
          mprpc__reg_parse_hostport(line, ll, host, sizeof host, &port, e, sizeof e) == 0)
        have_addr = true;
      continue;
    }
    *eq = '\0';
    const char *k = line, *v = eq + 1;
    if (strcmp(k, "address") == 0) {
      if (!have_addr &&
          mprpc__reg_parse_hostport(v, strlen(v), host, sizeof host, &port, e, sizeof e) == 0)
        have_addr = true;
    } else if (strcmp(k, "weight") == 0) {
      char *end;
      unsigned long w = strtoul(v, &end, 10);
      if (*v && !*end && w >= 1 && w <= MPRPC__REG_MAX_WEIGHT)
        inst.weight = (uint32_t)w;
    } else if (strcmp(k, "methods") == 0) {
      inst.methods = *v ? v : NULL;
    } else if (strcmp(k, "version") == 0) {
      inst.version = *v ? v : NULL;
    } else if (strcmp(k, "start_time_ms") == 0) {
      inst.start_time_ms = strtoull(v, NULL, 10);
    } else if (strcmp(k, "group") == 0) {
      /* absent (older writers), empty or unusable: the default group */
      inst.group = *v && mprpc__group_valid(v) ? v : NULL;
    } else if (strcmp(k, "tls") == 0) {
      inst.tls = strcmp(v, "0") != 0; /* anything but 0: do not send plain bytes */
    }
  }
  if (!have_addr) {
    MPRPC_LOG_WARN("registry: %s provider node '%s' has no usable address; ignored", service,
                   child);
    return 0;
  }
  inst.host = host;
  inst.port = port;
  return mprpc__reg_list_add(out, &inst);
}

