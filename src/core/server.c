/*
 * Provider: construction, the method table, connections and request
 * dispatch (lifecycle is in server_life.c). See docs/server.md for the
 * behaviour and server_internal.h for the threading rules.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/compress.h"
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

static bool method_is(const srv_method_t *m, mprpc_bytes_t svc, mprpc_bytes_t meth) {
  return svc.len == m->service_len && meth.len == m->name_len &&
         memcmp(svc.ptr, m->service, svc.len) == 0 && memcmp(meth.ptr, m->name, meth.len) == 0;
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
static srv_method_t *lookup(const mprpc_server_t *s, mprpc_bytes_t svc, mprpc_bytes_t meth,
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
    return full ? lookup(s, mprpc_bytes_str(full), meth, svc_found) : NULL;
  }
  uint64_t mh = meth_hash(sh, meth);
  for (size_t j = mh & (s->mtab_cap - 1); s->mtab[j] != UINT32_MAX;
       j = (j + 1) & (s->mtab_cap - 1)) {
    srv_method_t *m = s->methods[s->mtab[j]];
    if (method_is(m, svc, meth))
      return m;
  }
  return NULL;
}

static srv_method_t *lookup_str(const mprpc_server_t *s, const char *svc, const char *meth) {
  bool found;
  if (!svc || !meth)
    return NULL;
  return lookup(s, mprpc_bytes_str(svc), mprpc_bytes_str(meth), &found);
}

/* ---- options, new, add_service ------------------------------------------- */

void mprpc_server_opts_init(mprpc_server_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->drain_timeout_ms = 5000;
  o->logoff_grace_ms = 200;
}

int mprpc_server_new(const mprpc_server_opts_t *opts, mprpc_server_t **out) {
  int rc = MPRPC_ENOMEM;
  mprpc_server_t *s = NULL;
  if (!opts || !out)
    return MPRPC_EINVAL;
  if (opts->transport.vt && (!opts->loops || opts->nloops == 0))
    return MPRPC_EINVAL;
  s = calloc(1, sizeof *s);
  if (!s)
    goto fail;
  s->o = *opts;
  s->host = dupstr(opts->host ? opts->host : "0.0.0.0");
  s->advertise_host = dupstr(opts->advertise_host);
  s->version = dupstr(opts->version);
  if (!s->host || (opts->advertise_host && !s->advertise_host) || (opts->version && !s->version))
    goto fail;
  s->o.host = s->host;
  s->o.advertise_host = s->advertise_host;
  s->o.version = s->version;
  if (opts->transport.vt) {
    s->t = opts->transport;
    s->nloops = opts->nloops;
    s->loops = calloc(s->nloops, sizeof *s->loops);
    if (!s->loops)
      goto fail;
    memcpy(s->loops, opts->loops, s->nloops * sizeof *s->loops);
  } else {
    size_t n = opts->threads ? opts->threads : 1;
    rc = mprpc_loop_group_new(n, &s->group);
    if (rc < 0) {
      s->group = NULL;
      goto fail;
    }
    rc = MPRPC_ENOMEM;
    s->t = mprpc_tcp_transport();
    s->nloops = mprpc_loop_group_size(s->group);
    s->loops = calloc(s->nloops, sizeof *s->loops);
    if (!s->loops)
      goto fail;
    for (size_t i = 0; i < s->nloops; i++)
      s->loops[i] = mprpc_loop_group_loop(s->group, i);
  }
  s->o.loops = s->loops;
  s->sl = calloc(s->nloops, sizeof *s->sl);
  if (!s->sl)
    goto fail;
  for (size_t i = 0; i < s->nloops; i++) {
    s->sl[i].s = s;
    s->sl[i].idx = i;
    s->sl[i].loop = s->loops[i];
  }
  *out = s;
  return 0;
fail:
  if (s)
    mprpc__srv_free_all(s);
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
    if (!m->st) {
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
  m->limit = max_concurrency;
  return 0;
}

uint16_t mprpc_server_port(const mprpc_server_t *s) { return s ? s->port : 0; }

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

static void maybe_free_zombie(mprpc_server_t *s) {
  if (s->zombie && atomic_load(&s->tasks) == 0 && atomic_load(&s->open_conns) == 0)
    mprpc__srv_free_all(s);
}

void mprpc__srv_task_done(mprpc_server_t *s) {
  atomic_fetch_sub(&s->tasks, 1);
  maybe_free_zombie(s);
}

/* ---- connections -------------------------------------------------------- */

static void conn_idle_fire(void *arg);

static void conn_arm_idle(srv_conn_t *conn, uint64_t delay_ns) {
  conn->idle_timer = mprpc_timer_start(conn->l->loop, delay_ns, conn_idle_fire, conn);
}

/* Idle = no complete frame received and no response sent for idle_timeout,
 * while no call is in flight. Partial frames do not count as activity, so a
 * slowloris peer (half a frame, then a trickle or a stall) is closed. */
static void conn_idle_fire(void *arg) {
  srv_conn_t *conn = arg;
  mprpc_server_t *s = conn->s;
  uint64_t idle = s->o.idle_timeout_ms * MPRPC_NS_PER_MS;
  conn->idle_timer = 0;
  if (conn->closing || conn->closed)
    return;
  if (conn->inflight > 0) {
    conn_arm_idle(conn, idle);
    return;
  }
  uint64_t now = mprpc_loop_now(conn->l->loop);
  uint64_t since = now - conn->last_active;
  if (since < idle) {
    conn_arm_idle(conn, idle - since);
    return;
  }
  MPRPC_LOG_INFO("server: closing idle connection from %s (%zu bytes of an incomplete frame)",
                 conn->peer, mprpc_rbuf_len(&conn->in));
  atomic_fetch_add(&s->st_idle_closed, 1);
  mprpc__srv_conn_close(conn, true);
}

void mprpc__srv_conn_close(srv_conn_t *conn, bool flush) {
  if (conn->closing || conn->closed)
    return;
  conn->closing = true;
  mprpc_conn_close(conn->s->t, conn->c, flush);
}

void mprpc__srv_conn_maybe_free(srv_conn_t *conn) {
  if (!conn->closed || conn->ncalls > 0)
    return;
  srv_loop_t *l = conn->l;
  if (conn->prev)
    conn->prev->next = conn->next;
  else
    l->conns = conn->next;
  if (conn->next)
    conn->next->prev = conn->prev;
  mprpc_rbuf_free(&conn->in);
  free(conn->wbuf);
  free(conn);
}

static void malformed(srv_conn_t *conn, int err, const char *what) {
  MPRPC_LOG_WARN("server: closing %s: %s: %s", conn->peer, mprpc_err_name(err),
                 what ? what : mprpc_strerror(err));
  atomic_fetch_add(&conn->s->st_malformed, 1);
  mprpc__srv_conn_close(conn, false);
}

static bool try_acquire(atomic_uint_fast64_t *ctr, uint32_t limit) {
  uint64_t n = atomic_fetch_add(ctr, 1) + 1;
  if (limit && n > limit) {
    atomic_fetch_sub(ctr, 1);
    return false;
  }
  return true;
}

/* Order of checks (the first failing one answers): stopping (ELOGOFF),
 * authentication (ERPCAUTH), compress_type (EREQUEST), service (ENOSERVICE),
 * method (ENOMETHOD), deadline (ERPCTIMEDOUT), concurrency (ELIMIT), payload
 * decode (EREQUEST). */
static void handle_request(srv_conn_t *conn, const mprpc_frame_t *f, uint64_t arrival) {
  mprpc_server_t *s = conn->s;
  const mprpc_meta_t *mt = &f->meta;
  char text[256];
  int err = 0;
  /* Clients send the same method over and over: a hit on the last one
   * costs two memcmp instead of two hashes over the names. */
  bool svc_found = true;
  srv_method_t *m = conn->last_m;
  if (!m || !method_is(m, mt->service_name, mt->method_name)) {
    m = lookup(s, mt->service_name, mt->method_name, &svc_found);
    if (m)
      conn->last_m = m;
  }
  mprpc__mstats_t *st = m ? &m->st[conn->l->idx] : NULL;
  if (st)
    MPRPC__ONE_WRITER_ADD(&st->requests, 1);

  text[0] = 0;
  if (atomic_load(&s->stopping)) {
    err = MPRPC_ELOGOFF;
    snprintf(text, sizeof text, "server is stopping");
  } else if (s->o.authenticate && !conn->authed) {
    if (s->o.authenticate(s->o.auth_ud, mt->auth_data.ptr, mt->auth_data.len, conn->peer) != 0) {
      err = MPRPC_ERPCAUTH;
      snprintf(text, sizeof text, "authentication failed");
    } else {
      conn->authed = true;
    }
  }
  if (!err && !mprpc__compress_known(mt->compress_type)) {
    err = MPRPC_EREQUEST;
    snprintf(text, sizeof text, "compress_type %d is not supported", (int)mt->compress_type);
  }
  if (!err && mt->content_type != 0) { /* brpc's json / proto-text payloads */
    err = MPRPC_EREQUEST;
    snprintf(text, sizeof text, "content_type %d is not supported (protobuf only)",
             (int)mt->content_type);
  }
  if (!err && !m) {
    err = svc_found ? MPRPC_ENOMETHOD : MPRPC_ENOSERVICE;
    if (svc_found)
      snprintf(text, sizeof text, "service %.*s has no method %.*s",
               (int)(mt->service_name.len > 100 ? 100 : mt->service_name.len),
               (const char *)mt->service_name.ptr,
               (int)(mt->method_name.len > 100 ? 100 : mt->method_name.len),
               (const char *)mt->method_name.ptr);
    else
      snprintf(text, sizeof text, "no service named %.*s",
               (int)(mt->service_name.len > 200 ? 200 : mt->service_name.len),
               (const char *)mt->service_name.ptr);
  }
  uint64_t deadline = 0;
  if (!err && mt->timeout_ms > 0) {
    deadline = arrival + (uint64_t)mt->timeout_ms * MPRPC_NS_PER_MS;
    if (mprpc_loop_now(conn->l->loop) >= deadline) {
      err = MPRPC_ERPCTIMEDOUT;
      snprintf(text, sizeof text, "deadline of %d ms passed before dispatch", (int)mt->timeout_ms);
    }
  }
  bool acquired = false;
  if (!err) {
    if (s->o.max_concurrency && !try_acquire(&s->inflight, s->o.max_concurrency)) {
      err = MPRPC_ELIMIT;
      snprintf(text, sizeof text, "server concurrency limit %u reached", s->o.max_concurrency);
    } else if (m->limit && !try_acquire(&m->limit_inflight, m->limit)) {
      if (s->o.max_concurrency)
        atomic_fetch_sub(&s->inflight, 1);
      err = MPRPC_ELIMIT;
      snprintf(text, sizeof text, "concurrency limit %u of %s.%s reached", m->limit, m->service,
               m->name);
    } else {
      acquired = true;
      if (!m->limit)
        MPRPC__ONE_WRITER_ADD(&st->admitted, 1);
    }
  }

  mprpc_server_call_t *call = NULL;
  size_t rid = mt->request_id.len;
  const uint8_t *pl = f->payload.ptr; /* the payload, inflated when compressed */
  size_t plen = f->payload.len;
  uint8_t *plain = NULL;
  if (!err) {
    call = mprpc__srv_call_alloc(conn->l, f->attachment.len + rid + 1);
    if (!call) {
      err = MPRPC_EINTERNAL;
      snprintf(text, sizeof text, "out of memory");
    }
  }
  if (call) {
    uint8_t *tail = (uint8_t *)(call + 1);
    call->magic = MPRPC__CALL_MAGIC;
    call->refs = 2; /* invoke + completion */
    call->s = s;
    call->conn = conn;
    call->m = m;
    call->arrival_ns = arrival;
    call->deadline_ns = deadline;
    if (f->attachment.len)
      memcpy(tail, f->attachment.ptr, f->attachment.len);
    call->att = tail;
    call->att_len = f->attachment.len;
    char *ridp = (char *)tail + f->attachment.len;
    if (rid)
      memcpy(ridp, mt->request_id.ptr, rid);
    ridp[rid] = 0;
    call->meta = (mprpc_server_call_meta_t){
        .correlation_id = mt->correlation_id,
        .log_id = mt->log_id,
        .trace_id = mt->trace_id,
        .span_id = mt->span_id,
        .parent_span_id = mt->parent_span_id,
        .request_id = ridp,
        .timeout_ms = mt->timeout_ms,
        .service = m->service,
        .method = m->name,
        .peer = conn->peer,
    };
    call->compress_type = mt->compress_type; /* the response uses it too */
    if (mt->compress_type != MPRPC_COMPRESS_NONE) {
      const char *why;
      int zr = mprpc__decompress_payload(mt->compress_type, pl, plen, s->o.max_body, &plain,
                                         &plen, &why);
      if (zr) {
        free(call);
        call = NULL;
        err = zr == MPRPC_ENOMEM ? MPRPC_EINTERNAL : MPRPC_EREQUEST;
        snprintf(text, sizeof text, "request payload (compress_type %d) %s",
                 (int)mt->compress_type, why);
      }
      pl = plain;
    }
  }
  if (call) {
    size_t lim = s->o.max_decode_bytes ? s->o.max_decode_bytes : 16 * plen + 64 * 1024;
    call->alloc_limit = lim;
    call->alloc = (ProtobufCAllocator){mprpc__srv_alloc, mprpc__srv_free, call};
    call->input = protobuf_c_message_unpack(m->desc->input, &call->alloc, plen, pl);
    if (plain) { /* unpack copies what it keeps */
      free(plain);
      plain = NULL;
    }
    if (!call->input) {
      free(call);
      call = NULL;
      err = MPRPC_EREQUEST;
      snprintf(text, sizeof text, "request payload does not decode as %s",
               m->desc->input->name);
    }
  }
  if (err) {
    if (acquired) {
      if (s->o.max_concurrency)
        atomic_fetch_sub(&s->inflight, 1);
      if (m->limit)
        atomic_fetch_sub(&m->limit_inflight, 1);
      else
        MPRPC__ONE_WRITER_ADD(&st->admitted, (uint64_t)-1);
    }
    if (m) {
      mprpc__srv_count_error(st, err);
    } else if (err == MPRPC_ENOSERVICE) {
      atomic_fetch_add(&s->st_noservice, 1);
    } else if (err == MPRPC_ENOMETHOD) {
      atomic_fetch_add(&s->st_nomethod, 1);
    } else {
      atomic_fetch_add(&s->st_unrouted, 1);
    }
    mprpc__srv_send_error(conn, mt->correlation_id, err, text);
    return;
  }
  call->next = conn->calls;
  if (conn->calls)
    conn->calls->prev = call;
  conn->calls = call;
  conn->ncalls++;
  conn->inflight++;
  m->svc->invoke(m->svc, m->index, call->input, mprpc__srv_closure, call);
  mprpc__srv_call_release(call); /* the invoke reference */
}

static void conn_on_data(mprpc_conn_t *c, void *ud, mprpc_rbuf_t *in) {
  srv_conn_t *conn = ud;
  mprpc_server_t *s = conn->s;
  (void)c;
  /* Every frame completed by these bytes arrived now; a frame that waits
   * behind a slow inline handler keeps this arrival time, so its deadline
   * can pass before it is dispatched. */
  uint64_t arrival = mprpc_loop_now(conn->l->loop);
  conn->batching = true;
  for (int guard = 0; guard < 1 << 30 && !conn->closing && !conn->closed; guard++) {
    size_t len = mprpc_rbuf_len(in);
    if (len == 0)
      break;
    mprpc_frame_t f;
    long n = mprpc_frame_parse(mprpc_rbuf_data(in), len, s->o.max_body, &f);
    if (n == 0)
      break;
    if (n < 0) {
      malformed(conn, (int)n, NULL);
      break;
    }
    if (f.meta.has_response) {
      malformed(conn, MPRPC_EBADMETA, "response meta sent to a server");
      break;
    }
    if (!f.meta.has_request) {
      malformed(conn, MPRPC_EBADMETA, "frame without request meta");
      break;
    }
    conn->last_active = arrival;
    handle_request(conn, &f, arrival);
    mprpc_rbuf_consume(in, (size_t)n);
  }
  conn->batching = false;
  mprpc__srv_flush(conn); /* a no-op (bytes dropped) once closing */
  if (!conn->closed && mprpc_rbuf_len(in) == 0)
    mprpc_rbuf_shrink(in, 64 * 1024);
}

static void conn_on_close(mprpc_conn_t *c, void *ud, int reason, int err) {
  srv_conn_t *conn = ud;
  (void)c;
  if (reason == MPRPC_CLOSE_RESET)
    MPRPC_LOG_DEBUG("server: connection from %s reset: %s", conn->peer, mprpc_strerror(err));
  conn->closed = true;
  conn->closing = true;
  conn->c = NULL;
  mprpc_timer_cancel(conn->l->loop, conn->idle_timer);
  conn->idle_timer = 0;
  mprpc_rbuf_free(&conn->in);
  mprpc_server_t *s = conn->s;
  atomic_fetch_sub(&s->open_conns, 1);
  mprpc__srv_conn_maybe_free(conn);
  maybe_free_zombie(s);
}

static const mprpc_conn_handler_t conn_handler = {
    .on_data = conn_on_data,
    .on_close = conn_on_close,
};

void mprpc__srv_on_accept(void *ud, mprpc_conn_t *c, mprpc_loop_t loop) {
  mprpc_server_t *s = ud;
  srv_loop_t *l = &s->sl[0];
  for (size_t i = 0; i < s->nloops; i++)
    if (s->loops[i].ctx == loop.ctx) {
      l = &s->sl[i];
      break;
    }
  srv_conn_t *conn = NULL;
  if (!atomic_load(&s->stopping))
    conn = calloc(1, sizeof *conn);
  if (!conn) {
    mprpc_conn_close(s->t, c, false);
    return;
  }
  conn->s = s;
  conn->l = l;
  conn->c = c;
  mprpc_rbuf_init(&conn->in);
  snprintf(conn->peer, sizeof conn->peer, "%s", mprpc_conn_peer(s->t, c));
  conn->next = l->conns;
  if (l->conns)
    l->conns->prev = conn;
  l->conns = conn;
  atomic_fetch_add(&s->st_accepted, 1);
  atomic_fetch_add(&s->open_conns, 1);
  conn->last_active = mprpc_loop_now(l->loop);
  mprpc_conn_setup(s->t, c, &conn_handler, conn, &conn->in);
  if (s->o.idle_timeout_ms)
    conn_arm_idle(conn, s->o.idle_timeout_ms * MPRPC_NS_PER_MS);
}
