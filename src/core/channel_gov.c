/*
 * Channel governance (docs/governance.md): the config centre on the
 * consumer (weight.HOST:PORT, disabled.HOST:PORT, timeout_ms.METHOD,
 * max_retry.METHOD, degrade.METHOD, group, version, log_level), group and
 * version selection of registry endpoints, and per-method fallbacks.
 *
 * Everything runs on the channel's loop: the registry delivers config nodes
 * there (watch_config with the channel's loop), so the layers and the rule
 * set are plain loop-thread state like the endpoint list.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/channel_int.h"
#include "core/compress.h"
#include "core/govcfg.h"
#include "core/select.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

struct mprpc__ch_gov {
  mprpc__gov_state_t st;
  mprpc_registry_t reg; /* the one watched (vt NULL: none) */
  uint64_t gid, sid;
  bool gwatching, swatching;
  char *opt_group, *opt_version; /* the channel's options (copied) */
};

static char *dup_or_null(const char *s) { return s && *s ? strdup(s) : NULL; }

/* ---- selection and endpoint view ----------------------------------------- */

static mprpc__select_t selection(const mprpc_channel_t *ch) {
  const struct mprpc__ch_gov *g = ch->gov;
  mprpc__select_t sel = {NULL, NULL};
  if (!g)
    return sel;
  const char *rg = mprpc__gov_rules_group(g->st.rules);
  const char *rv = mprpc__gov_rules_version(g->st.rules);
  sel.group = rg ? rg : g->opt_group;
  sel.version = rv ? rv : g->opt_version;
  return sel;
}

static void ep_refresh(mprpc_channel_t *ch, mprpc__ep_t *ep) {
  const mprpc__gov_rules_t *r = ch->gov ? ch->gov->st.rules : NULL;
  const mprpc__gov_endpoint_t *e = mprpc__gov_rules_endpoint(r, ep->host, ep->port);
  ep->weight = (e->set & MPRPC__GOV_WEIGHT) ? e->weight : ep->reg_weight;
  ep->gov_disabled = (e->set & MPRPC__GOV_DISABLED) && e->disabled;
  ep->unselected = false;
  if (ep->from_registry) {
    mprpc__select_t sel = selection(ch);
    mprpc_instance_t inst = {.version = ep->version, .group = ep->group};
    ep->unselected = !mprpc__select_instance(&sel, &inst);
  }
}

int mprpc__chgov_ep_instance(mprpc_channel_t *ch, mprpc__ep_t *ep, const mprpc_instance_t *it) {
  int rc = 0;
  if (it) {
    ep->from_registry = true;
    ep->reg_weight = it->weight ? it->weight : MPRPC_DEFAULT_WEIGHT;
    const char *g = it->group, *v = it->version;
    if (!(g ? ep->group && strcmp(g, ep->group) == 0 : !ep->group)) {
      free(ep->group);
      ep->group = dup_or_null(g);
      if (g && *g && !ep->group)
        rc = MPRPC_ENOMEM;
    }
    if (!(v ? ep->version && strcmp(v, ep->version) == 0 : !ep->version)) {
      free(ep->version);
      ep->version = dup_or_null(v);
      if (v && *v && !ep->version)
        rc = MPRPC_ENOMEM;
    }
  }
  ep_refresh(ch, ep);
  return rc;
}

void mprpc__chgov_ep_free(mprpc__ep_t *ep) {
  free(ep->group);
  free(ep->version);
  ep->group = ep->version = NULL;
}

/* ---- config deliveries ------------------------------------------------- */

static void apply_log_level(const mprpc__gov_rules_t *r) {
  int lv = mprpc__gov_rules_log_level(r);
  if (lv >= 0 && lv != __atomic_load_n(&mprpc__log_level, __ATOMIC_RELAXED)) {
    MPRPC_LOG_INFO("config centre: log_level changes to %d", lv);
    mprpc_log_set_level(lv);
  }
}

static void apply_rules(mprpc_channel_t *ch) {
  size_t disabled = 0, unselected = 0;
  for (size_t i = 0; i < ch->neps; i++) {
    mprpc__ep_t *ep = ch->eps[i];
    bool was = ep->gov_disabled;
    ep_refresh(ch, ep);
    if (ep->gov_disabled != was)
      MPRPC_LOG_INFO("channel %s: endpoint %s %s by the config centre", ch->sd->name, ep->name,
                     ep->gov_disabled ? "disabled" : "enabled again");
    disabled += ep->gov_disabled;
    unselected += ep->unselected;
  }
  mprpc__ep_weights_changed(ch);
  apply_log_level(ch->gov->st.rules);
  MPRPC_LOG_INFO("channel %s: config applied: %zu endpoints, %zu disabled, %zu outside the "
                 "selection", ch->sd->name, ch->neps, disabled, unselected);
  /* calls parked for endpoints may have one now (or a fallback) */
  mprpc__channel_eps_changed(ch);
}

static void on_config(void *ud, const char *name, const char *text, size_t len) {
  mprpc_channel_t *ch = ud;
  if (ch->destroying || !ch->gov)
    return;
  size_t np = 0;
  int rc = mprpc__gov_state_update(&ch->gov->st, name, text, len, mprpc__gov_report_log, NULL, &np);
  if (rc < 0) {
    MPRPC_LOG_ERROR("channel %s: config node %s not applied: %s (the last values stay)",
                    ch->sd->name, name, mprpc_strerror(rc));
    return;
  }
  apply_rules(ch);
}

/* ---- lifetime --------------------------------------------------------------- */

int mprpc__chgov_init(mprpc_channel_t *ch, const mprpc_channel_opts_t *o) {
  if (o->group && *o->group && !mprpc__group_valid(o->group)) {
    MPRPC_LOG_ERROR("channel %s: group '%s' is not usable ([A-Za-z0-9_.-], 1 to 64 characters)",
                    ch->sd->name, o->group);
    return MPRPC_EINVAL;
  }
  if (o->version && *o->version && !mprpc__version_pattern_valid(o->version)) {
    MPRPC_LOG_ERROR("channel %s: version pattern '%s' is malformed (e.g. 1.2.3, 1.*, *)",
                    ch->sd->name, o->version);
    return MPRPC_EINVAL;
  }
  struct mprpc__ch_gov *g = calloc(1, sizeof *g);
  if (!g)
    return MPRPC_ENOMEM;
  if (mprpc__gov_state_init(&g->st, ch->sd->name) != 0)
    goto fail;
  g->opt_group = dup_or_null(o->group);
  g->opt_version = dup_or_null(o->version);
  if ((o->group && *o->group && !g->opt_group) || (o->version && *o->version && !g->opt_version))
    goto fail;
  ch->gov = g;
  if (o->governance) {
    /* the process's own governance: the only source with servers= or a
     * registry without a config centre, the defaults under one */
    const char *name = o->governance_name && *o->governance_name ? o->governance_name
                                                                 : MPRPC__GOV_LOCAL;
    size_t np = 0;
    int rc = mprpc__gov_state_set_local(&g->st, name, o->governance, strlen(o->governance),
                                        mprpc__gov_report_log, NULL, &np);
    if (rc < 0) {
      ch->gov = NULL;
      goto fail;
    }
    apply_log_level(g->st.rules);
    MPRPC_LOG_INFO("channel %s: governance from %s applied (%zu problem%s)", ch->sd->name, name,
                   np, np == 1 ? "" : "s");
  }
  if (o->registry.vt && !o->servers) {
    g->reg = o->registry;
    int rc = mprpc_registry_watch_config(o->registry, MPRPC__GOV_GLOBAL, o->loop, on_config, ch,
                                         &g->gid);
    if (rc == 0)
      g->gwatching = true;
    if (rc == 0 || rc != MPRPC_EUNSUPPORTED) {
      int r2 = mprpc_registry_watch_config(o->registry, ch->sd->name, o->loop, on_config, ch,
                                           &g->sid);
      if (r2 == 0)
        g->swatching = true;
      if (rc != 0 || r2 != 0)
        MPRPC_LOG_WARN("channel %s: watching the config centre: %s", ch->sd->name,
                       mprpc_strerror(rc ? rc : r2));
    }
  }
  return 0;
fail:
  mprpc__gov_state_destroy(&g->st);
  free(g->opt_group);
  free(g->opt_version);
  free(g);
  return MPRPC_ENOMEM;
}

void mprpc__chgov_stop(mprpc_channel_t *ch) {
  struct mprpc__ch_gov *g = ch->gov;
  if (!g)
    return;
  if (g->gwatching)
    mprpc_registry_unwatch_config(g->reg, g->gid);
  if (g->swatching)
    mprpc_registry_unwatch_config(g->reg, g->sid);
  g->gwatching = g->swatching = false;
}

void mprpc__chgov_free(mprpc_channel_t *ch) {
  struct mprpc__ch_gov *g = ch->gov;
  if (!g)
    return;
  mprpc__gov_state_destroy(&g->st);
  free(g->opt_group);
  free(g->opt_version);
  free(g);
  ch->gov = NULL;
}

/* ---- calls ------------------------------------------------------------------ */

bool mprpc__chgov_all_ejected(mprpc_channel_t *ch, uint64_t now) {
  size_t usable = 0;
  for (size_t i = 0; i < ch->neps; i++) {
    mprpc__ep_t *ep = ch->eps[i];
    if (mprpc__chgov_ep_excluded(ep))
      continue;
    usable++;
    if (ep->br.state != MPRPC__BREAKER_EJECTED || mprpc__breaker_admits(&ep->br, now))
      return false;
  }
  return usable > 0;
}

/* Runs the fallback of c's method: 0 and *out (decoded like an answer), or
 * the callback's error. */
static int run_fallback(mprpc__call_t *c, ProtobufCMessage **out, char *text, size_t n) {
  mprpc_channel_t *ch = c->ch;
  const mprpc__ch_method_t *mi = &ch->minfo[c->midx];
  const ProtobufCMethodDescriptor *md = c->method;
  *out = NULL;
  const uint8_t *req = c->req;
  size_t req_len = c->req_len;
  uint8_t *plain = NULL;
  if (c->compress_type != MPRPC_COMPRESS_NONE) {
    const char *why = "";
    if (mprpc__decompress_payload(c->compress_type, req, req_len, UINT32_MAX, &plain, &req_len,
                                  &why) != 0) {
      snprintf(text, n, "fallback of %s: the request does not decompress (%s)", md->name, why);
      return MPRPC_EINTERNAL;
    }
    req = plain;
  }
  ProtobufCMessage *in = protobuf_c_message_unpack(md->input, NULL, req_len, req);
  free(plain);
  ProtobufCMessage *resp = calloc(1, md->output->sizeof_message);
  int rc = MPRPC_ENOMEM;
  if (!in || !resp) {
    snprintf(text, n, "fallback of %s: out of memory", md->name);
    goto done;
  }
  protobuf_c_message_init(md->output, resp);
  ch->cb_depth++;
  rc = mi->fallback(mi->fallback_arg, in, resp);
  ch->cb_depth--;
  if (rc > 0)
    rc = MPRPC_EINTERNAL;
  if (rc < 0) {
    snprintf(text, n, "fallback of %s.%s failed: %s", ch->sd->name, md->name, mprpc_strerror(rc));
    goto done;
  }
  if (!protobuf_c_message_check(resp)) {
    rc = MPRPC_ERESPONSE;
    snprintf(text, n, "fallback of %s.%s: its %s does not pass protobuf_c_message_check",
             ch->sd->name, md->name, md->output->name);
    goto done;
  }
  size_t len = protobuf_c_message_get_packed_size(resp);
  uint8_t *buf = malloc(len ? len : 1);
  rc = MPRPC_ENOMEM;
  if (!buf) {
    snprintf(text, n, "fallback of %s: out of memory", md->name);
    goto done;
  }
  protobuf_c_message_pack(resp, buf);
  *out = mprpc__call_unpack(c, len, buf);
  free(buf);
  rc = *out ? 0 : MPRPC_ENOMEM;
  if (rc)
    snprintf(text, n, "fallback of %s: out of memory", md->name);
done:
  if (in)
    protobuf_c_message_free_unpacked(in, NULL);
  free(resp); /* only the struct: what it points to is the callback's */
  return rc;
}

static void degrade(mprpc__call_t *c, const char *why) {
  mprpc_channel_t *ch = c->ch;
  c->degrading = true;
  char text[MPRPC__CTL_TEXT];
  ProtobufCMessage *msg = NULL;
  int rc = run_fallback(c, &msg, text, sizeof text);
  MPRPC__STAT_INC(ch, degraded);
  MPRPC__STAT_INC(ch, fallbacks);
  MPRPC_LOG_DEBUG("channel %s: %s answered by its fallback: %s", ch->sd->name, c->method->name,
                  why);
  mprpc__call_finish_local(c, rc, rc ? text : NULL, msg);
}

bool mprpc__chgov_fallback(mprpc__call_t *c, const char *why) {
  if (!c->ch->minfo[c->midx].fallback || c->finished)
    return false;
  degrade(c, why);
  return true;
}

bool mprpc__chgov_fallback_after(mprpc__call_t *c, int err, uint64_t now) {
  (void)now;
  switch (err) {
  case MPRPC_ERPCTIMEDOUT:
  case MPRPC_EFAILEDSOCKET:
  case MPRPC_ECONNREFUSED:
  case MPRPC_ECONNRESET:
  case MPRPC_ETIMEDOUT:
  case MPRPC_EHOSTUNREACH:
  case MPRPC_ENETUNREACH:
  case MPRPC_ENOENDPOINT:
    break;
  default:
    return false; /* a provider's answer, a cancel, a bad request: not degradation */
  }
  /* No provider answered this call: unreachable, cut off, or too slow for
   * its deadline. The breaker takes a window of failures to eject an
   * endpoint that merely went silent (a partition), and probes it again
   * later; the calls failing meanwhile are exactly the ones a fallback is
   * for. (A timed-out attempt may have run on the provider: a method whose
   * fallback must not hide that should not have one.) */
  if (c->ch->destroying)
    return false;
  degrade(c, mprpc_err_name(err));
  return true;
}

bool mprpc__chgov_on_start(mprpc__call_t *c, uint64_t *tmo_ns, bool caller_timeout) {
  mprpc_channel_t *ch = c->ch;
  const mprpc__gov_rules_t *r = ch->gov->st.rules;
  if (!r)
    return false;
  const mprpc__gov_method_t *m = mprpc__gov_rules_method(r, c->method->name);
  if (!m->set)
    return false;
  if ((m->set & MPRPC__GOV_TIMEOUT) && !caller_timeout)
    *tmo_ns = (uint64_t)m->timeout_ms * MPRPC_NS_PER_MS;
  if (m->set & MPRPC__GOV_RETRY)
    c->max_retry = (int)m->max_retry;
  if (!(m->set & MPRPC__GOV_DEGRADE) || m->degrade == MPRPC__GOV_DEGRADE_OFF)
    return false;
  char text[MPRPC__CTL_TEXT];
  if (m->degrade == MPRPC__GOV_DEGRADE_FALLBACK && ch->minfo[c->midx].fallback) {
    degrade(c, "degrade=fallback");
    return true;
  }
  if (m->degrade == MPRPC__GOV_DEGRADE_FALLBACK)
    snprintf(text, sizeof text, "%s.%s is degraded (degrade.%s=fallback in the config centre) "
             "but has no fallback; not sent", ch->sd->name, c->method->name, c->method->name);
  else
    snprintf(text, sizeof text, "%s.%s is degraded (degrade.%s=fail in the config centre); not "
             "sent", ch->sd->name, c->method->name, c->method->name);
  MPRPC__STAT_INC(ch, degraded);
  mprpc__call_finish_local(c, MPRPC_EDEGRADED, text, NULL);
  return true;
}

/* ---- public API --------------------------------------------------------------- */

int mprpc_channel_set_fallback(mprpc_channel_t *ch, const char *method,
                               mprpc_channel_fallback_cb cb, void *arg) {
  if (!ch || !method)
    return MPRPC_EINVAL;
  for (unsigned i = 0; i < ch->sd->n_methods; i++) {
    if (strcmp(ch->sd->methods[i].name, method) == 0) {
      ch->minfo[i].fallback = cb;
      ch->minfo[i].fallback_arg = cb ? arg : NULL;
      return 0;
    }
  }
  return MPRPC_ENOTFOUND;
}

typedef struct eps_msg {
  mprpc_channel_t *ch;
  mprpc_channel_endpoint_info_t *out;
  size_t max, n;
  void *waiter;
} eps_msg_t;

static void eps_copy(eps_msg_t *m) {
  mprpc_channel_t *ch = m->ch;
  m->n = ch->neps;
  for (size_t i = 0; i < ch->neps && i < m->max; i++) {
    const mprpc__ep_t *ep = ch->eps[i];
    mprpc_channel_endpoint_info_t *o = &m->out[i];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", ep->name);
    o->weight = ep->weight;
    o->disabled = ep->gov_disabled;
    o->selected = !ep->unselected;
    o->calls = ep->calls;
  }
}

static void eps_task(void *arg) {
  eps_msg_t *m = arg;
  eps_copy(m);
  m->ch->loop.vt->waiter_wake(m->ch->loop.ctx, m->waiter);
}

size_t mprpc_channel_endpoints(mprpc_channel_t *ch, mprpc_channel_endpoint_info_t *out,
                               size_t max) {
  if (!ch || (max && !out))
    return 0;
  eps_msg_t m = {.ch = ch, .out = out, .max = max};
  if (mprpc_loop_in_loop(ch->loop)) {
    eps_copy(&m);
    return m.n;
  }
  if (!mprpc_loop_can_block(ch->loop))
    return 0;
  mprpc_loop_t loop = ch->loop;
  m.waiter = loop.vt->waiter_new(loop.ctx);
  if (!m.waiter)
    return 0;
  if (mprpc_loop_post(loop, eps_task, &m) == 0)
    loop.vt->waiter_wait(loop.ctx, m.waiter);
  loop.vt->waiter_free(loop.ctx, m.waiter);
  return m.n;
}
