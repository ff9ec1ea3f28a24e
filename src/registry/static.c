/*
 * static://host:port[*weight][,host:port[*weight]...]: a fixed endpoint list.
 *
 * The list serves every service name: whatever a consumer subscribes to, it
 * is handed the whole list once, with health HEALTHY. register/unregister are
 * accepted no-ops (there is nobody to tell), so a provider configured with a
 * static registry starts normally.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "registry/internal.h"

typedef struct static_reg {
  mprpc__reg_list_t list; /* service "" in every item; renamed per subscriber */
  mprpc__reg_subs_t subs;
  pthread_mutex_t mu;
} static_reg_t;

static int st_register(void *ctx, const mprpc_instance_t *inst) {
  (void)ctx;
  char e[200];
  int rc = mprpc__reg_instance_check(inst, e, sizeof e);
  if (rc == 0) {
    char addr[MPRPC__REG_MAX_HOST + 16];
    mprpc__reg_format_hostport(inst->host, inst->port, addr, sizeof addr);
    MPRPC_LOG_INFO("registry: registered %s at %s in static:// (a fixed list: nothing is "
                   "published, consumers use their own list)",
                   inst->service, addr);
  }
  return rc;
}

static int st_unregister(void *ctx, const char *service, const char *host, uint16_t port) {
  (void)ctx;
  (void)port;
  return service && host ? 0 : MPRPC_EINVAL;
}

static int st_subscribe(void *ctx, const char *service, mprpc_loop_t loop,
                        mprpc_registry_watch_cb cb, void *ud, uint64_t *sub_id) {
  static_reg_t *s = ctx;
  if (!service || !*service || !cb || !sub_id || !loop.vt)
    return MPRPC_EINVAL;
  mprpc__reg_list_t named = {0};
  int rc = mprpc__reg_list_copy(&named, &s->list);
  if (rc)
    return rc;
  for (size_t i = 0; i < named.n; i++) {
    free((char *)named.items[i].service);
    named.items[i].service = strdup(service);
    if (!named.items[i].service) {
      mprpc__reg_list_clear(&named);
      return MPRPC_ENOMEM;
    }
  }
  pthread_mutex_lock(&s->mu);
  rc = mprpc__reg_subs_add(&s->subs, service, loop, cb, ud, sub_id);
  if (rc == 0)
    mprpc__reg_subs_deliver_one(&s->subs, *sub_id, &named, false, MPRPC_REG_HEALTHY);
  pthread_mutex_unlock(&s->mu);
  mprpc__reg_list_clear(&named);
  return rc;
}

static void st_unsubscribe(void *ctx, uint64_t id) {
  static_reg_t *s = ctx;
  mprpc__reg_subs_remove(&s->subs, id);
}

static int st_health(void *ctx) {
  (void)ctx;
  return MPRPC_REG_HEALTHY;
}

static void st_close(void *ctx) {
  static_reg_t *s = ctx;
  if (!s)
    return;
  mprpc__reg_subs_destroy(&s->subs);
  mprpc__reg_list_clear(&s->list);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

static const mprpc_registry_ops_t static_ops = {
    .register_instance = st_register,
    .unregister_instance = st_unregister,
    .subscribe = st_subscribe,
    .unsubscribe = st_unsubscribe,
    .health = st_health,
    .close = st_close,
};

int mprpc__static_open(const char *list, const mprpc__reg_kv_t *opts, size_t nopts,
                       mprpc_registry_t *out, char *err, size_t errlen) {
  if (nopts > 0) {
    snprintf(err, errlen, "static:// takes no options (got '%s')", opts[0].key);
    return MPRPC_EINVAL;
  }
  if (!*list) {
    snprintf(err, errlen, "empty endpoint list (expected static://host:port[,host:port...])");
    return MPRPC_EINVAL;
  }
  static_reg_t *s = calloc(1, sizeof *s);
  if (!s)
    return MPRPC_ENOMEM;
  int rc = MPRPC_ENOMEM;
  if (mprpc__reg_subs_init(&s->subs)) {
    free(s);
    return MPRPC_ENOMEM;
  }
  if (pthread_mutex_init(&s->mu, NULL)) {
    mprpc__reg_subs_destroy(&s->subs);
    free(s);
    return MPRPC_ENOMEM;
  }
  const char *p = list;
  int idx = 0;
  while (*p) {
    idx++;
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    const char *star = memchr(p, '*', n);
    size_t alen = star ? (size_t)(star - p) : n;
    mprpc_instance_t inst = {.service = "", .weight = MPRPC_DEFAULT_WEIGHT};
    char host[MPRPC__REG_MAX_HOST], e[200];
    if (n == 0) {
      snprintf(err, errlen, "endpoint %d is empty", idx);
      rc = MPRPC_EINVAL;
      goto fail;
    }
    if (mprpc__reg_parse_hostport(p, alen, host, sizeof host, &inst.port, e, sizeof e)) {
      snprintf(err, errlen, "endpoint %d: %s", idx, e);
      rc = MPRPC_EINVAL;
      goto fail;
    }
    if (star) {
      char w[16];
      size_t wl = n - alen - 1;
      uint64_t v;
      snprintf(w, sizeof w, "%.*s", (int)(wl < 15 ? wl : 15), star + 1);
      if (wl == 0 || wl > 7 ||
          mprpc__reg_opt_uint("static://", "weight", w, 1, MPRPC__REG_MAX_WEIGHT, &v, e,
                              sizeof e)) {
        snprintf(err, errlen, "endpoint %d: bad weight '%.*s' (expected host:port*1..%u)", idx,
                 (int)wl, star + 1, MPRPC__REG_MAX_WEIGHT);
        rc = MPRPC_EINVAL;
        goto fail;
      }
      inst.weight = (uint32_t)v;
    }
    inst.host = host;
    if ((rc = mprpc__reg_list_add(&s->list, &inst)) != 0)
      goto fail;
    if (!comma)
      break;
    p = comma + 1;
    if (!*p) {
      snprintf(err, errlen, "trailing ',' after endpoint %d", idx);
      rc = MPRPC_EINVAL;
      goto fail;
    }
  }
  out->vt = &static_ops;
  out->ctx = s;
  return 0;
fail:
  st_close(s);
  return rc;
}
