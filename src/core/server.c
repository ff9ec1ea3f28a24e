/*
 * Provider: construction, services and the method table, posted tasks.
 * Connections are server_conn.c, request dispatch server_dispatch.c, call
 * blocks and completion server_call.c, the life cycle server_life.c. See
 * docs/server.md for the behaviour and server_internal.h for the threading
 * rules.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rpcz.h"
#include "core/select.h"
#include "core/server_internal.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

static char *dupstr(const char *s) {
  if (!s)
    return NULL;
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p)
    memcpy(p, s, n);
  return p;
}

/* ---- method table -------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}
#define FNV0 1469598103934665603ull

static uint64_t svc_hash(mprpc_bytes_t svc) { return fnv(FNV0, svc.ptr, svc.len); }
static uint64_t meth_hash(uint64_t sh, mprpc_bytes_t m) {
  uint8_t sep = 0xff; /* never inside a name */
  return fnv(fnv(sh, &sep, 1), m.ptr, m.len);
}

static int rebuild_tables(mprpc_server_t *s) {
  size_t scap = 8, mcap = 8;
  while (scap < s->nservices * 2)
    scap *= 2;
  while (mcap < s->nmethods * 2)
    mcap *= 2;
  uint32_t *st = malloc(scap * sizeof *st), *mt = malloc(mcap * sizeof *mt);
  if (!st || !mt) {
    free(st);
    free(mt);
    return MPRPC_ENOMEM;
  }
  memset(st, 0xff, scap * sizeof *st);
  memset(mt, 0xff, mcap * sizeof *mt);
  for (size_t i = 0; i < s->nservices; i++) {
    size_t j = svc_hash(mprpc_bytes_str(s->services[i]->descriptor->name)) & (scap - 1);
    while (st[j] != UINT32_MAX)
      j = (j + 1) & (scap - 1);
    st[j] = (uint32_t)i;
  }
  for (size_t i = 0; i < s->nmethods; i++) {
    srv_method_t *m = s->methods[i];
    uint64_t h = meth_hash(svc_hash(mprpc_bytes_str(m->service)), mprpc_bytes_str(m->name));
    size_t j = h & (mcap - 1);
    while (mt[j] != UINT32_MAX)
      j = (j + 1) & (mcap - 1);
    mt[j] = (uint32_t)i;
  }
  free(s->stab);
  free(s->mtab);
  s->stab = st;
  s->mtab = mt;
  s->stab_cap = scap;
  s->mtab_cap = mcap;
  return 0;
}

static bool name_eq(mprpc_bytes_t b, const char *s) {
  size_t n = strlen(s);
  return b.len == n && (n == 0 || memcmp(b.ptr, s, n) == 0);
}

/* brpc clients run with -baidu_protocol_use_fullname=false send the short
 * name ("EchoService"); brpc servers accept it, so do we when exactly one
 * registered service has that short name. Rare path: a linear scan. */
static const char *full_name_of_short(const mprpc_server_t *s, mprpc_bytes_t svc) {
  if (svc.len == 0 || memchr(svc.ptr, '.', svc.len))
    return NULL;
  const char *hit = NULL;
  for (size_t i = 0; i < s->nservices; i++)
    if (name_eq(svc, s->services[i]->descriptor->short_name)) {
      if (hit)
        return NULL; /* ambiguous */
      hit = s->services[i]->descriptor->name;
    }
  return hit;
}

/* O(1) expected: one hash over the names, short linear probes. */
srv_method_t *mprpc__srv_lookup(const mprpc_server_t *s, mprpc_bytes_t svc, mprpc_bytes_t meth,
                            bool *svc_found) {
  *svc_found = false;
  if (!s->stab)
    return NULL;
  uint64_t sh = svc_hash(svc);
  for (size_t j = sh & (s->stab_cap - 1); s->stab[j] != UINT32_MAX; j = (j + 1) & (s->stab_cap - 1))
    if (name_eq(svc, s->services[s->stab[j]]->descriptor->name)) {
      *svc_found = true;
      break;
    }
  if (!*svc_found) {
    const char *full = full_name_of_short(s, svc);
    return full ? mprpc__srv_lookup(s, mprpc_bytes_str(full), meth, svc_found) : NULL;
  }
  uint64_t mh = meth_hash(sh, meth);
  for (size_t j = mh & (s->mtab_cap - 1); s->mtab[j] != UINT32_MAX;
       j = (j + 1) & (s->mtab_cap - 1)) {
    srv_method_t *m = s->methods[s->mtab[j]];
    if (mprpc__srv_method_is(m, svc, meth))
      return m;
  }
  return NULL;
}

static srv_method_t *lookup_str(const mprpc_server_t *s, const char *svc, const char *meth) {
  bool found;
  if (!svc || !meth)
    return NULL;
  return mprpc__srv_lookup(s, mprpc_bytes_str(svc), mprpc_bytes_str(meth), &found);
}

/* ---- options, new, add_service ------------------------------------------- */

void mprpc_server_opts_init(mprpc_server_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->drain_timeout_ms = 5000;
  o->logoff_grace_ms = 200;
  o->console = true;
  o->reflection = true;
}

int mprpc_server_new_in(const mprpc_server_opts_t *opts, mprpc_loop_owner_t owner,
                        mprpc_server_t **out) {
  int rc = MPRPC_ENOMEM;
  mprpc_server_t *s = NULL;
  if (!opts || !out || !opts->transport.vt || !opts->loops || opts->nloops == 0)
    return MPRPC_EINVAL;
  s = calloc(1, sizeof *s);
  if (!s)
    goto fail;
  s->o = *opts;
  s->host = dupstr(opts->host ? opts->host : "0.0.0.0");
  s->advertise_host = dupstr(opts->advertise_host);
  s->version = dupstr(opts->version);
  s->group = dupstr(opts->group);
  s->gov_text = dupstr(opts->governance);
  s->gov_name = dupstr(opts->governance_name);
  if (!s->host || (opts->advertise_host && !s->advertise_host) || (opts->version && !s->version) ||
      (opts->group && !s->group) || (opts->governance && !s->gov_text) ||
      (opts->governance_name && !s->gov_name))
    goto fail;
  if (opts->group && !mprpc__group_valid(opts->group)) {
    MPRPC_LOG_ERROR("server: group '%s' is not usable ([A-Za-z0-9_.-], 1 to 64 characters)",
                    opts->group);
    rc = MPRPC_EINVAL;
    goto fail;
  }
  s->o.host = s->host;
  s->o.advertise_host = s->advertise_host;
  s->o.version = s->version;
  s->o.group = s->group;
  s->o.governance = s->gov_text;
  s->o.governance_name = s->gov_name;
  /* The facade read the TLS files; only the mode is the core's business. */
  s->o.tls_cert = s->o.tls_key = s->o.tls_ca = NULL;
  s->t = opts->transport;
  s->nloops = opts->nloops;
  s->loops = calloc(s->nloops, sizeof *s->loops);
  if (!s->loops)
    goto fail;
  memcpy(s->loops, opts->loops, s->nloops * sizeof *s->loops);
  s->o.loops = s->loops;
  s->sl = calloc(s->nloops, sizeof *s->sl);
  if (!s->sl)
    goto fail;
  for (size_t i = 0; i < s->nloops; i++) {
    s->sl[i].s = s;
    s->sl[i].idx = i;
    s->sl[i].loop = s->loops[i];
  }
  if (opts->rpcz_every != UINT32_MAX && !(s->rpcz = mprpc__rpcz_new()))
    goto fail;
  s->slow_ns = opts->slow_handler_warn_ms == UINT64_MAX ? UINT64_MAX
               : (opts->slow_handler_warn_ms ? opts->slow_handler_warn_ms : 100) * MPRPC_NS_PER_MS;
  if ((rc = mprpc__srv_budget_init(s)) < 0)
    goto fail;
  s->owner = owner;
  *out = s;
  return 0;
fail:
  if (s)
    mprpc__srv_free_all(s); /* s->owner is still empty: the caller keeps it */
  return rc;
}

int mprpc_server_add_service(mprpc_server_t *s, ProtobufCService *service) {
  if (!s || !service || !service->descriptor || !service->descriptor->name || !service->invoke)
    return MPRPC_EINVAL;
  if (atomic_load(&s->state) != SRV_NEW)
    return MPRPC_ESTATE;
  const ProtobufCServiceDescriptor *d = service->descriptor;
  for (size_t i = 0; i < s->nservices; i++)
    if (strcmp(s->services[i]->descriptor->name, d->name) == 0)
      return MPRPC_EEXIST;
  ProtobufCService **sv = realloc(s->services, (s->nservices + 1) * sizeof *sv);
  if (!sv)
    return MPRPC_ENOMEM;
  s->services = sv;
  srv_method_t **mv = realloc(s->methods, (s->nmethods + d->n_methods) * sizeof *mv);
  if (!mv)
    return MPRPC_ENOMEM;
  s->methods = mv;
  size_t added = 0;
  for (unsigned i = 0; i < d->n_methods; i++) {
    srv_method_t *m = calloc(1, sizeof *m);
    if (!m)
      goto fail;
    m->service = d->name;
    m->name = d->methods[i].name;
    m->service_len = strlen(m->service);
    m->name_len = strlen(m->name);
    m->svc = service;
    m->index = i;
    m->desc = &d->methods[i];
    m->limit = s->o.max_method_concurrency;
    m->st = calloc(s->nloops, sizeof *m->st);
    if (!m->st || mprpc__srv_ring_alloc(m) < 0) {
      free(m->st);
      free(m);
      goto fail;
    }
    s->methods[s->nmethods + added++] = m;
  }
  s->services[s->nservices++] = service;
  s->nmethods += added;
  if (rebuild_tables(s) < 0) {
    s->nservices--;
    s->nmethods -= added;
    goto fail;
  }
  return 0;
fail:
  for (size_t i = 0; i < added; i++) {
    free(s->methods[s->nmethods + i]->st);
    mprpc__srv_ring_free(s->methods[s->nmethods + i]);
    free(s->methods[s->nmethods + i]);
  }
  return MPRPC_ENOMEM;
}

int mprpc_server_set_method_limit(mprpc_server_t *s, const char *service, const char *method,
                                  uint32_t max_concurrency) {
  if (!s)
    return MPRPC_EINVAL;
  if (atomic_load(&s->state) != SRV_NEW)
    return MPRPC_ESTATE; /* calls in flight are counted by whether there is a limit */
  srv_method_t *m = lookup_str(s, service, method);
  if (!m)
    return MPRPC_ENOTFOUND;
  __atomic_store_n(&m->limit, max_concurrency, __ATOMIC_RELAXED);
  return 0;
}

uint16_t mprpc_server_port(const mprpc_server_t *s) { return s ? s->port : 0; }

uint16_t mprpc_server_console_port(const mprpc_server_t *s) {
  if (!s || !s->o.console || !s->port)
    return 0;
  return s->o.console_port ? s->console_port : s->port;
}

int mprpc_server_reload_tls(mprpc_server_t *s, char *err, size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  if (!s)
    return MPRPC_EINVAL;
  if (!s->owner.vt || !s->owner.vt->reload_tls)
    return MPRPC_EUNSUPPORTED;
  return s->owner.vt->reload_tls(s->owner.ctx, err, errlen);
}

/* ---- posted tasks ----------------------------------------------------------- */

/* Every task the server posts is counted, so a server destroyed while its
 * loops keep running (simulator) is freed only after the last one ran. */
int mprpc__srv_post(mprpc_server_t *s, mprpc_loop_t loop, mprpc_post_cb fn, void *arg) {
  atomic_fetch_add(&s->tasks, 1);
  int rc = mprpc_loop_post(loop, fn, arg);
  if (rc < 0)
    atomic_fetch_sub(&s->tasks, 1);
  return rc;
}

void mprpc__srv_maybe_free_zombie(mprpc_server_t *s) {
  if (s->zombie && atomic_load(&s->tasks) == 0 && atomic_load(&s->open_conns) == 0)
    mprpc__srv_free_all(s);
}

void mprpc__srv_task_done(mprpc_server_t *s) {
  atomic_fetch_sub(&s->tasks, 1);
  mprpc__srv_maybe_free_zombie(s);
}
