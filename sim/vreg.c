/*
 * Virtual ZooKeeper: the registry seam with ZooKeeper's failure semantics.
 *
 * The ensemble keeps a tree of services, each with ephemeral provider nodes
 * owned by sessions. A handle (one per simulated process) owns a session and
 * heartbeats it every timeout/3 while it can reach the ensemble; the
 * ensemble expires a session not heard from for its timeout and deletes its
 * nodes. A handle that cannot reach the ensemble reports DISCONNECTED, then
 * EXPIRED once the timeout has passed; when it gets through again it opens a
 * new session and re-creates what its owner registered (a stale node of the
 * old session is replaced), as the zk:// registry does.
 *
 * Watches: any change of a service's node set (or of a handle's health)
 * schedules one notification per subscriber after a random watch delay; the
 * notification reads the state at delivery time (a ZooKeeper watch is
 * one-shot and the client re-reads the children when re-arming it), so
 * intermediate states may be skipped but the last one always arrives.
 * While a handle is not HEALTHY its subscribers get an empty list with the
 * health (the consumer's empty protection must keep its cache).
 *
 * During a whole-ensemble outage sessions do not expire; their timers
 * restart when the ensemble is back, as in ZooKeeper.
 *
 * Config nodes (/mprpc/config/<name>): scenarios set or delete them with
 * mprpc_sim_zk_set_config; each watcher is notified after a watch delay and
 * reads the text at delivery time (so it may skip intermediate texts but
 * always gets the last one); a watcher whose handle is cut off gets nothing
 * until it reconnects, then the current text if it changed.
 */
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "sim.h"

typedef struct znode {
  struct znode *next;
  char *host;
  uint16_t port;
  uint32_t weight;
  char *methods, *version, *group;
  uint64_t start_time_ms;
  uint64_t owner; /* session id */
} znode_t;

typedef struct svc {
  struct svc *next;
  char *name;
  znode_t *nodes;
  uint64_t version;
} svc_t;

typedef struct session {
  struct session *next;
  uint64_t id;
  int host;
  uint64_t last_heard;
} session_t;

typedef struct want {
  struct want *next;
  char *service, *host, *methods, *version, *group;
  uint16_t port;
  uint32_t weight;
  uint64_t start_time_ms;
} want_t;

typedef struct handle handle_t;

typedef struct cnode {
  struct cnode *next;
  char *name;
  char *text; /* NULL: deleted */
  size_t len;
} cnode_t;

typedef struct cwatch {
  struct cwatch *next;
  handle_t *h;
  uint64_t id;
  char *name;
  mprpc_registry_config_cb cb;
  void *ud;
  uint64_t ev;
  bool present; /* what was last delivered */
  char *last;
  size_t last_len;
  bool missed;
} cwatch_t;

typedef struct sub {
  struct sub *next;
  handle_t *h;
  uint64_t id;
  char *service;
  mprpc_loop_t loop;
  mprpc_registry_watch_cb cb;
  void *ud;
  uint64_t ev;
  uint64_t seen_version;
  int seen_health;
  bool delivered;
  bool deaf;   /* MPRPC_SIM_BUG_LOST_WATCH */
  bool missed; /* an event came while the client was cut off */
} sub_t;

struct handle {
  mprpc_sim_zk_t *z;
  handle_t *next;
  uint64_t id;
  int host;
  mprpc_loop_t loop;
  uint64_t session; /* 0: none */
  int state;        /* mprpc_registry_health_t */
  uint64_t disconnected_at;
  uint64_t tick_ev;
  want_t *wants;
  sub_t *subs;
  cwatch_t *cws;
};

struct mprpc_sim_zk {
  mprpc_sim_world_t *w;
  mprpc_sim_zk_config_t cfg;
  svc_t *svcs;
  cnode_t *cnodes;
  session_t *sessions;
  handle_t *handles;
  bool down;
  uint8_t *cut;
  int ncut;
  uint64_t next_session, next_handle, next_sub;
  uint64_t tick_ev;
  uint64_t expirations;
};

static char *dupstr(const char *s) { return s ? strdup(s) : NULL; }

static bool reachable(const mprpc_sim_zk_t *z, int host) {
  if (z->down)
    return false;
  return !(host >= 0 && host < z->ncut && z->cut[host]);
}

static svc_t *find_svc(const mprpc_sim_zk_t *z, const char *name) {
  for (svc_t *s = z->svcs; s; s = s->next)
    if (strcmp(s->name, name) == 0)
      return s;
  return NULL;
}

static svc_t *get_svc(mprpc_sim_zk_t *z, const char *name) {
  svc_t *s = find_svc(z, name);
  if (s)
    return s;
  s = calloc(1, sizeof *s);
  if (!s)
    abort();
  s->name = strdup(name);
  if (!s->name)
    abort();
  /* Append: iteration order is creation order, deterministic. */
  svc_t **pp = &z->svcs;
  while (*pp)
    pp = &(*pp)->next;
  *pp = s;
  return s;
}

static session_t *find_session(const mprpc_sim_zk_t *z, uint64_t id) {
  for (session_t *s = z->sessions; s; s = s->next)
    if (s->id == id)
      return s;
  return NULL;
}

static void ev_handle_tick(void *arg);

static void free_node(znode_t *n) {
  free(n->host);
  free(n->methods);
  free(n->version);
  free(n->group);
  free(n);
}

/* ---- notifications ------------------------------------------------------------------- */

static void ev_notify(void *arg) {
  sub_t *s = arg;
  handle_t *h = s->h;
  mprpc_sim_zk_t *z = h->z;
  s->ev = 0;
  if (s->deaf)
    return;
  bool up = reachable(z, h->host);
  if (h->state == MPRPC_REG_HEALTHY && !up) {
    /* The client has not noticed the cut yet and the event cannot reach
     * it: ZooKeeper replays missed watches when the client reconnects. */
    s->missed = true;
    return;
  }
  s->missed = false;
  bool healthy = h->state == MPRPC_REG_HEALTHY;
  int health = h->state;
  svc_t *svc = find_svc(z, s->service);
  uint64_t version = svc ? svc->version : 0;
  if (s->delivered && s->seen_health == health && (!healthy || s->seen_version == version))
    return;
  s->delivered = true;
  s->seen_health = health;
  s->seen_version = version;
  size_t n = 0;
  if (healthy && svc)
    for (znode_t *nd = svc->nodes; nd; nd = nd->next)
      n++;
  mprpc_instance_t stackitems[16];
  mprpc_instance_t *items = n <= 16 ? stackitems : calloc(n, sizeof *items);
  if (!items)
    abort();
  size_t i = 0;
  if (healthy && svc)
    for (znode_t *nd = svc->nodes; nd; nd = nd->next)
      items[i++] = (mprpc_instance_t){.service = svc->name,
                                      .host = nd->host,
                                      .port = nd->port,
                                      .weight = nd->weight,
                                      .methods = nd->methods,
                                      .version = nd->version,
                                      .start_time_ms = nd->start_time_ms,
                                      .group = nd->group};
  mprpc_sim_note(z->w, "reg.notify", s->id, (uint64_t)n << 8 | (uint64_t)health);
  mprpc_registry_watch_cb cb = s->cb;
  void *ud = s->ud;
  /* The callback may unsubscribe or close the handle: touch nothing after. */
  cb(ud, items, n, health);
  if (items != stackitems)
    free(items);
}

static void schedule_notify(sub_t *s, bool delayed) {
  if (s->ev || s->deaf)
    return;
  mprpc_sim_zk_t *z = s->h->z;
  uint64_t d = delayed ? mprpc_sim_rand_range(z->w, z->cfg.watch_delay_min_ns,
                                              z->cfg.watch_delay_max_ns)
                       : 0;
  s->ev = mprpc_sim_at(z->w, d, MPRPC_SIM_EV_REG_WATCH, s->id, ev_notify, s);
}

static void notify_service(mprpc_sim_zk_t *z, const char *service) {
  for (handle_t *h = z->handles; h; h = h->next)
    for (sub_t *s = h->subs; s; s = s->next)
      if (strcmp(s->service, service) == 0)
        schedule_notify(s, true);
}

static void notify_handle(handle_t *h) {
  for (sub_t *s = h->subs; s; s = s->next)
    schedule_notify(s, false);
}

/* ---- config nodes -------------------------------------------------------------------- */

static cnode_t *find_cnode(const mprpc_sim_zk_t *z, const char *name) {
  for (cnode_t *c = z->cnodes; c; c = c->next)
    if (strcmp(c->name, name) == 0)
      return c;
  return NULL;
}

static void ev_cfg_notify(void *arg) {
  cwatch_t *cw = arg;
  handle_t *h = cw->h;
  mprpc_sim_zk_t *z = h->z;
  cw->ev = 0;
  if (h->state != MPRPC_REG_HEALTHY || !reachable(z, h->host)) {
    cw->missed = true; /* read again on reconnect */
    return;
  }
  cw->missed = false;
  cnode_t *c = find_cnode(z, cw->name);
  bool present = c && c->text;
  if (present == cw->present &&
      (!present || (cw->last_len == c->len && memcmp(cw->last, c->text, c->len) == 0)))
    return;
  char *copy = NULL;
  if (present) {
    copy = malloc(c->len + 1);
    if (!copy)
      abort();
    memcpy(copy, c->text, c->len + 1);
  }
  free(cw->last);
  cw->last = NULL;
  cw->last_len = present ? c->len : 0;
  cw->present = present;
  if (present) {
    cw->last = malloc(c->len + 1);
    if (!cw->last)
      abort();
    memcpy(cw->last, c->text, c->len + 1);
  }
  mprpc_sim_note(z->w, "reg.config_notify", cw->id, present ? cw->last_len + 1 : 0);
  /* The callback may unwatch or close the handle: touch nothing after. */
  mprpc_registry_config_cb cb = cw->cb;
  void *ud = cw->ud;
  const char *name = cw->name;
  char namebuf[256];
  snprintf(namebuf, sizeof namebuf, "%s", name);
  cb(ud, namebuf, copy, present ? cw->last_len : 0);
  free(copy);
}

static void schedule_cfg_notify(cwatch_t *cw, bool delayed) {
  if (cw->ev)
    return;
  mprpc_sim_zk_t *z = cw->h->z;
  uint64_t d = delayed ? mprpc_sim_rand_range(z->w, z->cfg.watch_delay_min_ns,
                                              z->cfg.watch_delay_max_ns)
                       : 0;
  cw->ev = mprpc_sim_at(z->w, d, MPRPC_SIM_EV_REG_WATCH, cw->id, ev_cfg_notify, cw);
}

void mprpc_sim_zk_set_config(mprpc_sim_zk_t *z, const char *name, const char *text) {
  cnode_t *c = find_cnode(z, name);
  if (!c) {
    if (!text)
      return;
    c = calloc(1, sizeof *c);
    if (!c || !(c->name = strdup(name)))
      abort();
    cnode_t **pp = &z->cnodes;
    while (*pp)
      pp = &(*pp)->next;
    *pp = c;
  }
  free(c->text);
  c->text = text ? strdup(text) : NULL;
  if (text && !c->text)
    abort();
  c->len = text ? strlen(text) : 0;
  mprpc_sim_note(z->w, "reg.config_set", 0, text ? c->len + 1 : 0);
  for (handle_t *h = z->handles; h; h = h->next)
    for (cwatch_t *cw = h->cws; cw; cw = cw->next)
      if (strcmp(cw->name, name) == 0)
        schedule_cfg_notify(cw, true);
}

static int h_watch_config(void *ctx, const char *name, mprpc_loop_t loop,
                          mprpc_registry_config_cb cb, void *ud, uint64_t *id) {
  handle_t *h = ctx;
  (void)loop; /* every sim loop is the world's scheduler */
  if (!name || !*name || strchr(name, '/') || !cb)
    return MPRPC_EINVAL;
  cwatch_t *cw = calloc(1, sizeof *cw);
  if (!cw || !(cw->name = strdup(name))) {
    free(cw);
    return MPRPC_ENOMEM;
  }
  cw->h = h;
  cw->id = ++h->z->next_sub;
  cw->cb = cb;
  cw->ud = ud;
  cwatch_t **pp = &h->cws;
  while (*pp)
    pp = &(*pp)->next;
  *pp = cw;
  if (id)
    *id = cw->id;
  if (h->state == MPRPC_REG_HEALTHY)
    schedule_cfg_notify(cw, true);
  else
    cw->missed = true;
  return 0;
}

static void free_cwatch(mprpc_sim_zk_t *z, cwatch_t *cw) {
  mprpc_sim_cancel(z->w, cw->ev);
  free(cw->name);
  free(cw->last);
  free(cw);
}

static void h_unwatch_config(void *ctx, uint64_t id) {
  handle_t *h = ctx;
  for (cwatch_t **pp = &h->cws; *pp; pp = &(*pp)->next) {
    if ((*pp)->id == id) {
      cwatch_t *cw = *pp;
      *pp = cw->next;
      free_cwatch(h->z, cw);
      return;
    }
  }
}

/* ---- tree operations ----------------------------------------------------------------- */

static void create_node(mprpc_sim_zk_t *z, uint64_t session, const want_t *wt) {
  svc_t *svc = get_svc(z, wt->service);
  znode_t **pp = &svc->nodes;
  for (; *pp; pp = &(*pp)->next) {
    znode_t *n = *pp;
    if (n->port == wt->port && strcmp(n->host, wt->host) == 0) {
      /* Stale node (older session) or our own: delete and re-create. */
      *pp = n->next;
      free_node(n);
      break;
    }
  }
  znode_t *n = calloc(1, sizeof *n);
  if (!n)
    abort();
  n->host = dupstr(wt->host);
  n->port = wt->port;
  n->weight = wt->weight;
  n->methods = dupstr(wt->methods);
  n->version = dupstr(wt->version);
  n->group = dupstr(wt->group);
  n->start_time_ms = wt->start_time_ms;
  n->owner = session;
  pp = &svc->nodes;
  while (*pp)
    pp = &(*pp)->next;
  *pp = n;
  svc->version++;
  mprpc_sim_note(z->w, "reg.create", session, wt->port);
  notify_service(z, svc->name);
}

static void delete_node(mprpc_sim_zk_t *z, uint64_t session, const char *service,
                        const char *host, uint16_t port) {
  svc_t *svc = find_svc(z, service);
  if (!svc)
    return;
  for (znode_t **pp = &svc->nodes; *pp; pp = &(*pp)->next) {
    znode_t *n = *pp;
    if (n->owner == session && n->port == port && strcmp(n->host, host) == 0) {
      *pp = n->next;
      free_node(n);
      svc->version++;
      mprpc_sim_note(z->w, "reg.delete", session, port);
      notify_service(z, service);
      return;
    }
  }
}

/* Ends a session on the ensemble: its ephemeral nodes go. */
static void end_session(mprpc_sim_zk_t *z, uint64_t id, bool expired) {
  session_t **sp = &z->sessions;
  while (*sp && (*sp)->id != id)
    sp = &(*sp)->next;
  if (!*sp)
    return;
  session_t *s = *sp;
  *sp = s->next;
  free(s);
  if (expired) {
    z->expirations++;
    mprpc_sim_note(z->w, "reg.expire", id, 0);
    /* A client still connected hears SESSION_EXPIRED at once. */
    for (handle_t *h = z->handles; h; h = h->next)
      if (h->session == id && reachable(z, h->host)) {
        mprpc_sim_cancel(z->w, h->tick_ev);
        h->tick_ev = mprpc_sim_at(z->w, mprpc_sim_rand_range(z->w, MPRPC_NS_PER_MS, 20 * MPRPC_NS_PER_MS),
                                  MPRPC_SIM_EV_REG_TICK, h->id, ev_handle_tick, h);
      }
    if (mprpc__sim_bug & MPRPC_SIM_BUG_STALE_NODE)
      return;
  }
  for (svc_t *svc = z->svcs; svc; svc = svc->next) {
    bool changed = false;
    znode_t **pp = &svc->nodes;
    while (*pp) {
      if ((*pp)->owner == id) {
        znode_t *n = *pp;
        *pp = n->next;
        free_node(n);
        changed = true;
      } else {
        pp = &(*pp)->next;
      }
    }
    if (changed) {
      svc->version++;
      notify_service(z, svc->name);
    }
  }
}

static uint64_t open_session(mprpc_sim_zk_t *z, int host) {
  session_t *s = calloc(1, sizeof *s);
  if (!s)
    abort();
  s->id = ++z->next_session;
  s->host = host;
  s->last_heard = mprpc_sim_now(z->w);
  session_t **pp = &z->sessions;
  while (*pp)
    pp = &(*pp)->next;
  *pp = s;
  return s->id;
}

/* ---- ensemble tick: session expiry ------------------------------------------------------ */

#define ZK_TICK_NS (50 * MPRPC_NS_PER_MS)

static void ev_zk_tick(void *arg) {
  mprpc_sim_zk_t *z = arg;
  z->tick_ev = 0;
  uint64_t now = mprpc_sim_now(z->w);
  if (!z->down) {
    session_t *s = z->sessions;
    while (s) {
      session_t *next = s->next;
      if (now - s->last_heard > z->cfg.session_timeout_ns)
        end_session(z, s->id, true);
      s = next;
    }
  }
  if (z->handles || z->sessions)
    z->tick_ev = mprpc_sim_at(z->w, ZK_TICK_NS, MPRPC_SIM_EV_REG_TICK, 0, ev_zk_tick, z);
}

static void ensure_zk_tick(mprpc_sim_zk_t *z) {
  if (!z->tick_ev)
    z->tick_ev = mprpc_sim_at(z->w, ZK_TICK_NS, MPRPC_SIM_EV_REG_TICK, 0, ev_zk_tick, z);
}

/* ---- handle tick: heartbeat, reconnect, re-registration ----------------------------------- */

static void set_state(handle_t *h, int state) {
  if (h->state == state)
    return;
  mprpc_sim_note(h->z->w, "reg.health", h->id, (uint64_t)state);
  if (state == MPRPC_REG_DISCONNECTED)
    h->disconnected_at = mprpc_sim_now(h->z->w);
  h->state = state;
  if ((mprpc__sim_bug & MPRPC_SIM_BUG_LOST_WATCH) && state == MPRPC_REG_DISCONNECTED)
    for (sub_t *s = h->subs; s; s = s->next)
      s->deaf = true;
  notify_handle(h);
}

static void handle_tick(handle_t *h) {
  mprpc_sim_zk_t *z = h->z;
  uint64_t now = mprpc_sim_now(z->w);
  if (reachable(z, h->host)) {
    session_t *s = h->session ? find_session(z, h->session) : NULL;
    if (!s) {
      if (h->session)
        set_state(h, MPRPC_REG_EXPIRED);
      h->session = open_session(z, h->host);
      for (want_t *wt = h->wants; wt; wt = wt->next)
        create_node(z, h->session, wt);
    } else {
      s->last_heard = now;
    }
    set_state(h, MPRPC_REG_HEALTHY);
    for (sub_t *sb = h->subs; sb; sb = sb->next)
      if (sb->missed)
        schedule_notify(sb, false);
    for (cwatch_t *cw = h->cws; cw; cw = cw->next)
      if (cw->missed)
        schedule_cfg_notify(cw, false);
  } else if (h->state == MPRPC_REG_HEALTHY || h->state == MPRPC_REG_CONNECTING) {
    if (h->state == MPRPC_REG_HEALTHY)
      set_state(h, MPRPC_REG_DISCONNECTED);
  } else if (h->state == MPRPC_REG_DISCONNECTED &&
             now - h->disconnected_at > z->cfg.session_timeout_ns) {
    set_state(h, MPRPC_REG_EXPIRED);
  }
}

static void ev_handle_tick(void *arg) {
  handle_t *h = arg;
  h->tick_ev = 0;
  handle_tick(h);
  h->tick_ev = mprpc_sim_at(h->z->w, h->z->cfg.session_timeout_ns / 3, MPRPC_SIM_EV_REG_TICK,
                            h->id, ev_handle_tick, h);
}

/* ---- registry ops --------------------------------------------------------------------------- */

static void free_want(want_t *wt) {
  free(wt->service);
  free(wt->host);
  free(wt->methods);
  free(wt->version);
  free(wt->group);
  free(wt);
}

static int h_register(void *ctx, const mprpc_instance_t *inst) {
  handle_t *h = ctx;
  if (!inst || !inst->service || !inst->host)
    return MPRPC_EINVAL;
  want_t *wt = calloc(1, sizeof *wt);
  if (!wt)
    return MPRPC_ENOMEM;
  wt->service = dupstr(inst->service);
  wt->host = dupstr(inst->host);
  wt->methods = dupstr(inst->methods);
  wt->version = dupstr(inst->version);
  wt->group = inst->group && *inst->group ? dupstr(inst->group) : NULL;
  if (!wt->service || !wt->host || (inst->methods && !wt->methods) ||
      (inst->version && !wt->version) || (inst->group && *inst->group && !wt->group)) {
    free_want(wt);
    return MPRPC_ENOMEM;
  }
  wt->port = inst->port;
  wt->weight = inst->weight ? inst->weight : MPRPC_DEFAULT_WEIGHT;
  wt->start_time_ms = inst->start_time_ms;
  /* Re-registering the same key replaces it. */
  for (want_t **pp = &h->wants; *pp; pp = &(*pp)->next) {
    if ((*pp)->port == wt->port && strcmp((*pp)->host, wt->host) == 0 &&
        strcmp((*pp)->service, wt->service) == 0) {
      want_t *old = *pp;
      *pp = old->next;
      free_want(old);
      break;
    }
  }
  want_t **pp = &h->wants;
  while (*pp)
    pp = &(*pp)->next;
  *pp = wt;
  if (h->session && find_session(h->z, h->session) && reachable(h->z, h->host))
    create_node(h->z, h->session, wt);
  return 0;
}

static int h_unregister(void *ctx, const char *service, const char *host, uint16_t port) {
  handle_t *h = ctx;
  if (!service || !host)
    return MPRPC_EINVAL;
  for (want_t **pp = &h->wants; *pp; pp = &(*pp)->next) {
    want_t *wt = *pp;
    if (wt->port == port && strcmp(wt->host, host) == 0 && strcmp(wt->service, service) == 0) {
      *pp = wt->next;
      free_want(wt);
      if (h->session && reachable(h->z, h->host))
        delete_node(h->z, h->session, service, host, port);
      return 0;
    }
  }
  return MPRPC_ENOTFOUND;
}

static int h_subscribe(void *ctx, const char *service, mprpc_loop_t loop,
                       mprpc_registry_watch_cb cb, void *ud, uint64_t *sub_id) {
  handle_t *h = ctx;
  if (!service || !cb)
    return MPRPC_EINVAL;
  sub_t *s = calloc(1, sizeof *s);
  if (!s)
    return MPRPC_ENOMEM;
  s->service = strdup(service);
  if (!s->service) {
    free(s);
    return MPRPC_ENOMEM;
  }
  s->h = h;
  s->id = ++h->z->next_sub;
  s->loop = loop;
  s->cb = cb;
  s->ud = ud;
  sub_t **pp = &h->subs;
  while (*pp)
    pp = &(*pp)->next;
  *pp = s;
  if (sub_id)
    *sub_id = s->id;
  /* The first list arrives like a watch would: after a delay. */
  if (h->state == MPRPC_REG_HEALTHY)
    schedule_notify(s, true);
  return 0;
}

static void free_sub(mprpc_sim_zk_t *z, sub_t *s) {
  mprpc_sim_cancel(z->w, s->ev);
  free(s->service);
  free(s);
}

static void h_unsubscribe(void *ctx, uint64_t sub_id) {
  handle_t *h = ctx;
  for (sub_t **pp = &h->subs; *pp; pp = &(*pp)->next) {
    if ((*pp)->id == sub_id) {
      sub_t *s = *pp;
      *pp = s->next;
      free_sub(h->z, s);
      return;
    }
  }
}

static int h_health(void *ctx) {
  handle_t *h = ctx;
  return h->state;
}

static void detach(handle_t *h) {
  mprpc_sim_zk_t *z = h->z;
  for (handle_t **pp = &z->handles; *pp; pp = &(*pp)->next) {
    if (*pp == h) {
      *pp = h->next;
      break;
    }
  }
  mprpc_sim_cancel(z->w, h->tick_ev);
  while (h->subs) {
    sub_t *s = h->subs;
    h->subs = s->next;
    free_sub(z, s);
  }
  while (h->cws) {
    cwatch_t *cw = h->cws;
    h->cws = cw->next;
    free_cwatch(z, cw);
  }
  while (h->wants) {
    want_t *wt = h->wants;
    h->wants = wt->next;
    free_want(wt);
  }
  free(h);
}

static void h_close(void *ctx) {
  handle_t *h = ctx;
  mprpc_sim_zk_t *z = h->z;
  /* A reachable ensemble hears the close and drops the session's nodes at
   * once; otherwise they linger until the session expires. */
  if (h->session && reachable(z, h->host))
    end_session(z, h->session, false);
  mprpc_sim_note(z->w, "reg.close", h->id, 0);
  detach(h);
}

static const mprpc_registry_ops_t zk_ops = {
    .register_instance = h_register,
    .unregister_instance = h_unregister,
    .subscribe = h_subscribe,
    .unsubscribe = h_unsubscribe,
    .health = h_health,
    .close = h_close,
    .watch_config = h_watch_config,
    .unwatch_config = h_unwatch_config,
};

/* ---- ensemble object --------------------------------------------------------------------------- */

mprpc_sim_zk_t *mprpc_sim_zk_new(mprpc_sim_world_t *w, const mprpc_sim_zk_config_t *cfg) {
  mprpc_sim_zk_t *z = calloc(1, sizeof *z);
  if (!z)
    return NULL;
  z->w = w;
  if (cfg)
    z->cfg = *cfg;
  if (!z->cfg.session_timeout_ns)
    z->cfg.session_timeout_ns = 4 * MPRPC_NS_PER_S;
  if (!z->cfg.watch_delay_min_ns && !z->cfg.watch_delay_max_ns) {
    z->cfg.watch_delay_min_ns = 1 * MPRPC_NS_PER_MS;
    z->cfg.watch_delay_max_ns = 30 * MPRPC_NS_PER_MS;
  }
  if (z->cfg.watch_delay_max_ns < z->cfg.watch_delay_min_ns)
    z->cfg.watch_delay_max_ns = z->cfg.watch_delay_min_ns;
  if (!z->cfg.connect_delay_ns)
    z->cfg.connect_delay_ns = 5 * MPRPC_NS_PER_MS;
  return z;
}

void mprpc_sim_zk_free(mprpc_sim_zk_t *z) {
  if (!z)
    return;
  while (z->handles)
    detach(z->handles);
  mprpc_sim_cancel(z->w, z->tick_ev);
  while (z->sessions) {
    session_t *s = z->sessions;
    z->sessions = s->next;
    free(s);
  }
  while (z->svcs) {
    svc_t *s = z->svcs;
    z->svcs = s->next;
    while (s->nodes) {
      znode_t *n = s->nodes;
      s->nodes = n->next;
      free_node(n);
    }
    free(s->name);
    free(s);
  }
  while (z->cnodes) {
    cnode_t *c = z->cnodes;
    z->cnodes = c->next;
    free(c->name);
    free(c->text);
    free(c);
  }
  free(z->cut);
  free(z);
}

int mprpc_sim_zk_handle(mprpc_sim_zk_t *z, int host, mprpc_loop_t loop, mprpc_registry_t *out) {
  handle_t *h = calloc(1, sizeof *h);
  if (!h)
    return MPRPC_ENOMEM;
  h->z = z;
  h->id = ++z->next_handle;
  h->host = host;
  h->loop = loop;
  h->state = MPRPC_REG_CONNECTING;
  h->tick_ev = mprpc_sim_at(z->w, z->cfg.connect_delay_ns, MPRPC_SIM_EV_REG_TICK, h->id,
                            ev_handle_tick, h);
  if (!h->tick_ev) {
    free(h);
    return MPRPC_ENOMEM;
  }
  handle_t **pp = &z->handles;
  while (*pp)
    pp = &(*pp)->next;
  *pp = h;
  ensure_zk_tick(z);
  *out = (mprpc_registry_t){.vt = &zk_ops, .ctx = h};
  return 0;
}

void mprpc_sim_zk_crash_handle(mprpc_registry_t r) {
  if (r.vt != &zk_ops)
    return;
  handle_t *h = r.ctx;
  mprpc_sim_note(h->z->w, "reg.crash", h->id, 0);
  detach(h);
}

void mprpc_sim_zk_set_down(mprpc_sim_zk_t *z, bool down) {
  if (z->down == down)
    return;
  z->down = down;
  mprpc_sim_note(z->w, "reg.down", down, 0);
  if (!down) {
    uint64_t now = mprpc_sim_now(z->w);
    for (session_t *s = z->sessions; s; s = s->next)
      s->last_heard = now;
  }
}

void mprpc_sim_zk_partition(mprpc_sim_zk_t *z, int host, bool cut) {
  if (host < 0)
    return;
  if (host >= z->ncut) {
    int n = host + 16;
    uint8_t *c = realloc(z->cut, (size_t)n);
    if (!c)
      abort();
    memset(c + z->ncut, 0, (size_t)(n - z->ncut));
    z->cut = c;
    z->ncut = n;
  }
  z->cut[host] = cut;
  mprpc_sim_note(z->w, "reg.partition", (uint64_t)host, cut);
}

void mprpc_sim_zk_heal_all(mprpc_sim_zk_t *z) {
  if (z->cut)
    memset(z->cut, 0, (size_t)z->ncut);
  mprpc_sim_note(z->w, "reg.heal_all", 0, 0);
}

void mprpc_sim_zk_expire_all(mprpc_sim_zk_t *z) {
  mprpc_sim_note(z->w, "reg.expire_all", 0, 0);
  while (z->sessions)
    end_session(z, z->sessions->id, true);
}

size_t mprpc_sim_zk_count(const mprpc_sim_zk_t *z, const char *service) {
  svc_t *s = find_svc(z, service);
  size_t n = 0;
  if (s)
    for (znode_t *nd = s->nodes; nd; nd = nd->next)
      n++;
  return n;
}

uint64_t mprpc_sim_zk_expirations(const mprpc_sim_zk_t *z) { return z->expirations; }
