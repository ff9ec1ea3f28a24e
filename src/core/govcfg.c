/* Config-centre values: node layers, rule sets, publishing; see govcfg.h. */
#include "core/govcfg.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kvline.h"
#include "core/select.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

#define MAX_VALUE 1024
#define MAX_METHOD 128

/* What a key sets. The order is that of the per-method fields. */
enum kind {
  K_RATE,
  K_CONC,
  K_TIMEOUT,
  K_RETRY,
  K_DEGRADE,
  K_WEIGHT,
  K_DISABLED,
  K_LOG_LEVEL,
  K_GROUP,
  K_VERSION,
  K__COUNT
};

typedef struct key_spec {
  const char *prefix;
  int target; /* 0: none, 1: optional method, 2: required host:port */
  const char *expected;
} key_spec_t;

static const key_spec_t specs[K__COUNT] = {
    [K_RATE] = {"rate_limit", 1, "QPS or QPS/BURST (1..1000000000), or off"},
    [K_CONC] = {"max_concurrency", 1, "an integer 1..1000000, auto, or off"},
    [K_TIMEOUT] = {"timeout_ms", 1, "an integer 1..3600000 (milliseconds)"},
    [K_RETRY] = {"max_retry", 1, "an integer 0..100"},
    [K_DEGRADE] = {"degrade", 1, "off, fail or fallback"},
    [K_WEIGHT] = {"weight", 2, "an integer 1..1000000"},
    [K_DISABLED] = {"disabled", 2, "1 or 0 (true/false, yes/no, on/off)"},
    [K_LOG_LEVEL] = {"log_level", 0, "trace, debug, info, warn, error, fatal or off"},
    [K_GROUP] = {"group", 0, "a group name: letters, digits, '_', '.', '-' (at most 64)"},
    [K_VERSION] = {"version", 0, "a version pattern such as 1.2.3, 1.*, 1.2.*, * or 1.*,2.*"},
};

typedef struct entry {
  char *key;   /* full key */
  char *raw;   /* the value as written */
  char *target; /* method ("" = every method) or endpoint host; NULL for scalars */
  uint32_t hash;
  int line;
  int kind;
  uint16_t port;
  uint32_t a, b; /* numbers; meaning per kind */
  bool flag;
  bool kept; /* carried over from the previous layer for a bad value */
  char *str; /* group, version */
} entry_t;

struct mprpc__gov_node {
  char *name;
  int scope; /* SCOPE_* */
  entry_t *v;
  size_t n, cap;
  uint32_t *idx; /* open addressing: entry index + 1, 0 = empty */
  size_t icap;   /* power of two, > 2n */
};

typedef struct mslot {
  char *name; /* NULL: empty */
  uint32_t hash;
  mprpc__gov_method_t m;
} mslot_t;

typedef struct eslot {
  char *host; /* NULL: empty */
  uint16_t port;
  uint32_t hash;
  mprpc__gov_endpoint_t e;
} eslot_t;

struct mprpc__gov_rules {
  int refs; /* atomic */
  uint64_t gen;
  char *service;
  mprpc__gov_method_t defaults;
  mslot_t *methods;
  size_t mcap; /* power of two or 0 */
  eslot_t *eps;
  size_t ecap;
  int log_level;
  char *group, *version;
};

/* What a layer is: it decides which scalar keys it may hold. */
enum { SCOPE_GLOBAL, SCOPE_SERVICE, SCOPE_LOCAL };

static uint64_t generation_counter; /* atomic */

static const mprpc__gov_method_t nothing_method;
static const mprpc__gov_endpoint_t nothing_endpoint;

/* ---- small helpers --------------------------------------------------- */

static uint32_t fnv(const char *s, size_t n, uint32_t h) {
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 16777619u;
  }
  return h;
}
#define FNV_INIT 2166136261u

static uint32_t hash_str(const char *s) { return fnv(s, strlen(s), FNV_INIT); }

static uint32_t hash_ep(const char *host, uint16_t port) {
  uint32_t h = hash_str(host);
  unsigned char p[2] = {(unsigned char)(port >> 8), (unsigned char)port};
  return fnv((const char *)p, 2, h);
}

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = 0;
  }
  return p;
}

static char *dup_s(const char *s) { return s ? dup_n(s, strlen(s)) : NULL; }

/* Unsigned decimal in [lo, hi], whole string. */
static bool parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
  if (!*s)
    return false;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return false;
    v = v * 10 + (uint64_t)(*s - '0');
    if (v > hi)
      return false;
  }
  if (v < lo)
    return false;
  *out = (uint32_t)v;
  return true;
}

static bool ieq(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    char x = *a, y = *b;
    if (x >= 'A' && x <= 'Z')
      x = (char)(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z')
      y = (char)(y - 'A' + 'a');
    if (x != y)
      return false;
  }
  return *a == *b;
}

static bool parse_bool(const char *s, bool *out) {
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  for (int i = 0; i < 4; i++) {
    if (ieq(s, yes[i])) {
      *out = true;
      return true;
    }
    if (ieq(s, no[i])) {
      *out = false;
      return true;
    }
  }
  return false;
}

static bool method_name_ok(const char *s, size_t n) {
  if (n == 0 || n > MAX_METHOD)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
      return false;
  }
  return true;
}

/* "host:port" or "[v6]:port" -> host (without brackets, malloc'd), port. */
static bool parse_target_ep(const char *s, size_t n, char **host, uint16_t *port) {
  const char *hs, *he, *ps;
  if (n > 0 && s[0] == '[') {
    const char *rb = memchr(s, ']', n);
    if (!rb || (size_t)(rb - s) + 1 >= n || rb[1] != ':')
      return false;
    hs = s + 1;
    he = rb;
    ps = rb + 2;
    for (const char *p = hs; p < he; p++) {
      char c = *p;
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
            c == ':' || c == '.'))
        return false;
    }
  } else {
    const char *colon = memchr(s, ':', n);
    if (!colon)
      return false;
    hs = s;
    he = colon;
    ps = colon + 1;
    for (const char *p = hs; p < he; p++) {
      char c = *p;
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            c == '.' || c == '-' || c == '_'))
        return false;
    }
  }
  size_t hl = (size_t)(he - hs), pl = n - (size_t)(ps - s);
  char pbuf[8];
  uint32_t p;
  if (hl == 0 || hl > 255 || pl == 0 || pl >= sizeof pbuf)
    return false;
  memcpy(pbuf, ps, pl);
  pbuf[pl] = 0;
  if (!parse_u32(pbuf, 1, 65535, &p))
    return false;
  *host = dup_n(hs, hl);
  *port = (uint16_t)p;
  return *host != NULL;
}

/* ---- node layers ----------------------------------------------------- */

static void entry_free(entry_t *e) {
  free(e->key);
  free(e->raw);
  free(e->target);
  free(e->str);
  memset(e, 0, sizeof *e);
}

void mprpc__gov_node_free(mprpc__gov_node_t *n) {
  if (!n)
    return;
  for (size_t i = 0; i < n->n; i++)
    entry_free(&n->v[i]);
  free(n->v);
  free(n->idx);
  free(n->name);
  free(n);
}

const char *mprpc__gov_node_name(const mprpc__gov_node_t *n) { return n ? n->name : NULL; }
size_t mprpc__gov_node_count(const mprpc__gov_node_t *n) { return n ? n->n : 0; }

static entry_t *node_find(const mprpc__gov_node_t *n, const char *key, uint32_t h) {
  if (!n || !n->icap)
    return NULL;
  for (size_t i = h & (n->icap - 1);; i = (i + 1) & (n->icap - 1)) {
    uint32_t k = n->idx[i];
    if (!k)
      return NULL;
    entry_t *e = &n->v[k - 1];
    if (e->hash == h && strcmp(e->key, key) == 0)
      return e;
  }
}

static int node_reindex(mprpc__gov_node_t *n, size_t icap) {
  uint32_t *idx = calloc(icap, sizeof *idx);
  if (!idx)
    return MPRPC_ENOMEM;
  for (size_t j = 0; j < n->n; j++) {
    size_t i = n->v[j].hash & (icap - 1);
    while (idx[i])
      i = (i + 1) & (icap - 1);
    idx[i] = (uint32_t)j + 1;
  }
  free(n->idx);
  n->idx = idx;
  n->icap = icap;
  return 0;
}

/* Appends e (taking its strings) to the layer. */
static int node_add(mprpc__gov_node_t *n, entry_t *e) {
  if (n->n == n->cap) {
    size_t cap = n->cap ? n->cap * 2 : 16;
    entry_t *v = realloc(n->v, cap * sizeof *v);
    if (!v)
      return MPRPC_ENOMEM;
    n->v = v;
    n->cap = cap;
  }
  n->v[n->n++] = *e;
  memset(e, 0, sizeof *e);
  if (n->icap < 2 * n->n + 2)
    return node_reindex(n, n->icap ? n->icap * 4 : 64);
  entry_t *last = &n->v[n->n - 1];
  size_t i = last->hash & (n->icap - 1);
  while (n->idx[i])
    i = (i + 1) & (n->icap - 1);
  n->idx[i] = (uint32_t)n->n;
  return 0;
}

static int entry_copy(entry_t *dst, const entry_t *src) {
  *dst = *src;
  dst->key = dup_s(src->key);
  dst->raw = dup_s(src->raw);
  dst->target = dup_s(src->target);
  dst->str = dup_s(src->str);
  if (!dst->key || !dst->raw || (src->target && !dst->target) || (src->str && !dst->str)) {
    entry_free(dst);
    return MPRPC_ENOMEM;
  }
  return 0;
}

typedef struct parse_ctx {
  const char *node;
  mprpc__gov_report_cb report;
  void *ud;
  size_t problems;
} parse_ctx_t;

static void report(parse_ctx_t *c, int line, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void report(parse_ctx_t *c, int line, const char *key, const char *fmt, ...) {
  c->problems++;
  if (!c->report)
    return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->report(c->ud, c->node, line, key ? key : "", msg);
}

/* Quotes at most 64 bytes of s for a message. */
static const char *show(const char *s, size_t n, char buf[80]) {
  size_t k = n > 64 ? 64 : n;
  size_t o = 0;
  for (size_t i = 0; i < k; i++)
    buf[o++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
  strcpy(buf + o, n > 64 ? "..." : "");
  return buf;
}

/* Key -> kind and target; false (with a report) for an unknown key. */
static bool parse_key(parse_ctx_t *c, int line, const char *key, entry_t *e) {
  const char *dot = strchr(key, '.');
  size_t pl = dot ? (size_t)(dot - key) : strlen(key);
  for (int k = 0; k < K__COUNT; k++) {
    if (strlen(specs[k].prefix) != pl || memcmp(specs[k].prefix, key, pl) != 0)
      continue;
    const char *t = dot ? dot + 1 : NULL;
    if (specs[k].target == 0 && t) {
      report(c, line, key, "unknown key '%s' (%s takes no '.suffix')", key, specs[k].prefix);
      return false;
    }
    if (specs[k].target == 1) {
      if (t && !method_name_ok(t, strlen(t))) {
        report(c, line, key, "bad method name in key '%s' (a method of the service, like Echo)",
               key);
        return false;
      }
      if (!(e->target = dup_s(t ? t : ""))) {
        report(c, line, key, "out of memory");
        return false;
      }
    }
    if (specs[k].target == 2) {
      if (!t || !parse_target_ep(t, strlen(t), &e->target, &e->port)) {
        report(c, line, key, "bad key '%s' (expected %s.HOST:PORT, IPv6 in brackets)", key,
               specs[k].prefix);
        return false;
      }
    }
    e->kind = k;
    return true;
  }
  report(c, line, key,
         "unknown key '%s' (known: rate_limit, max_concurrency, timeout_ms, max_retry, degrade, "
         "weight.HOST:PORT, disabled.HOST:PORT, log_level, group, version)",
         key);
  return false;
}

/* Value -> e's fields; false when it does not parse. */
static bool parse_value(const char *v, entry_t *e) {
  switch (e->kind) {
  case K_RATE: {
    if (ieq(v, "off") || strcmp(v, "0") == 0) {
      e->a = e->b = 0;
      return true;
    }
    const char *slash = strchr(v, '/');
    char q[16];
    size_t ql = slash ? (size_t)(slash - v) : strlen(v);
    if (ql == 0 || ql >= sizeof q)
      return false;
    memcpy(q, v, ql);
    q[ql] = 0;
    if (!parse_u32(q, 1, 1000000000u, &e->a))
      return false;
    if (slash)
      return parse_u32(slash + 1, 1, 1000000000u, &e->b);
    e->b = e->a / 10 ? e->a / 10 : 1; /* 100 ms worth of calls */
    return true;
  }
  case K_CONC:
    if (ieq(v, "auto")) {
      e->flag = true;
      e->a = 0;
      return true;
    }
    e->flag = false;
    if (ieq(v, "off") || strcmp(v, "0") == 0) {
      e->a = 0;
      return true;
    }
    return parse_u32(v, 1, 1000000, &e->a);
  case K_TIMEOUT: return parse_u32(v, 1, 3600000, &e->a);
  case K_RETRY: return parse_u32(v, 0, 100, &e->a);
  case K_DEGRADE:
    if (ieq(v, "off"))
      e->a = MPRPC__GOV_DEGRADE_OFF;
    else if (ieq(v, "fail"))
      e->a = MPRPC__GOV_DEGRADE_FAIL;
    else if (ieq(v, "fallback"))
      e->a = MPRPC__GOV_DEGRADE_FALLBACK;
    else
      return false;
    return true;
  case K_WEIGHT: return parse_u32(v, 1, 1000000, &e->a);
  case K_DISABLED: return parse_bool(v, &e->flag);
  case K_LOG_LEVEL: {
    int l = mprpc_log_level_from_name(v);
    if (l < 0)
      return false;
    e->a = (uint32_t)l;
    return true;
  }
  case K_GROUP:
    if (!mprpc__group_valid(v))
      return false;
    return (e->str = dup_s(v)) != NULL;
  case K_VERSION:
    if (!mprpc__version_pattern_valid(v))
      return false;
    return (e->str = dup_s(v)) != NULL;
  default: return false;
  }
}

static const char *kv_problem(int rc) {
  switch (rc) {
  case MPRPC__KV_ENUL: return "line contains a NUL byte; ignored";
  case MPRPC__KV_ENOEQ: return "expected key=value; line ignored";
  case MPRPC__KV_EEMPTYKEY: return "empty key; line ignored";
  default: return "invalid key (letters, digits, '_', '.', '-', ':', '[', ']'); line ignored";
  }
}

static int node_parse(const char *name, int scope, const char *text, size_t len,
                      const mprpc__gov_node_t *prev, mprpc__gov_report_cb report_cb, void *ud,
                      mprpc__gov_node_t **out, size_t *nproblems) {
  *out = NULL;
  if (nproblems)
    *nproblems = 0;
  if (!name || !*name || (!text && len))
    return MPRPC_EINVAL;
  parse_ctx_t c = {.node = name, .report = report_cb, .ud = ud};
  mprpc__gov_node_t *n = calloc(1, sizeof *n);
  if (!n || !(n->name = dup_s(name))) {
    free(n);
    return MPRPC_ENOMEM;
  }
  n->scope = scope;
  if (len > MPRPC__GOV_MAX_TEXT) {
    report(&c, 0, "", "text is %zu bytes; only the first %u are read", len, MPRPC__GOV_MAX_TEXT);
    len = MPRPC__GOV_MAX_TEXT;
  }
  mprpc__kv_iter_t it;
  mprpc__kv_t kv;
  int rc;
  char sbuf[80];
  mprpc__kv_init(&it, text, len, ":[]");
  while ((rc = mprpc__kv_next(&it, &kv)) != MPRPC__KV_END) {
    if (rc < 0) {
      report(&c, kv.line, "", "'%s': %s", show(kv.text, kv.tlen, sbuf), kv_problem(rc));
      continue;
    }
    entry_t e = {0};
    e.line = kv.line;
    if (!(e.key = dup_n(kv.key, kv.klen)))
      goto oom;
    if (kv.klen > 512 || !parse_key(&c, kv.line, e.key, &e)) {
      if (kv.klen > 512)
        report(&c, kv.line, "", "key of %zu bytes; ignored", kv.klen);
      entry_free(&e);
      continue;
    }
    if (e.kind == K_LOG_LEVEL && scope == SCOPE_SERVICE) {
      report(&c, kv.line, e.key, "log_level is read from %s only; ignored", MPRPC__GOV_GLOBAL);
      entry_free(&e);
      continue;
    }
    if ((e.kind == K_GROUP || e.kind == K_VERSION) && scope == SCOPE_LOCAL) {
      /* a provider's group/version keys publish its own; a consumer
       * selects with select_group / select_version (docs/config.md) */
      report(&c, kv.line, e.key,
             "%s is not a governance key of the local config (a consumer selects with "
             "select_group / select_version); ignored",
             e.key);
      entry_free(&e);
      continue;
    }
    e.hash = hash_str(e.key);
    entry_t *dup = node_find(n, e.key, e.hash);
    bool ok = kv.vlen <= MAX_VALUE && (e.raw = dup_n(kv.value, kv.vlen)) != NULL &&
              memchr(e.raw, '\0', kv.vlen) == NULL && parse_value(e.raw, &e);
    if (!ok) {
      /* keep the last good value: this text's earlier line, else the
       * previous layer's */
      const entry_t *keep = dup ? dup : node_find(prev, e.key, e.hash);
      if (keep)
        report(&c, kv.line, e.key, "bad value '%s' for %s (expected %s); keeping %s",
               show(kv.value, kv.vlen, sbuf), e.key, specs[e.kind].expected, keep->raw);
      else
        report(&c, kv.line, e.key, "bad value '%s' for %s (expected %s); key ignored",
               show(kv.value, kv.vlen, sbuf), e.key, specs[e.kind].expected);
      if (keep && !dup) {
        entry_t k2;
        if (entry_copy(&k2, keep) != 0) {
          entry_free(&e);
          goto oom;
        }
        k2.line = kv.line;
        k2.kept = true;
        if (n->n >= MPRPC__GOV_MAX_KEYS) {
          entry_free(&k2);
        } else if (node_add(n, &k2) != 0) {
          entry_free(&k2);
          entry_free(&e);
          goto oom;
        }
      }
      entry_free(&e);
      continue;
    }
    if (dup) {
      /* a value kept for a bad line was not set by this text: no report */
      if (!dup->kept)
        report(&c, kv.line, e.key, "%s set again (line %d); line %d wins", e.key, dup->line,
               kv.line);
      uint32_t h = dup->hash;
      entry_free(dup);
      *dup = e;
      dup->hash = h;
      continue;
    }
    if (n->n >= MPRPC__GOV_MAX_KEYS) {
      report(&c, kv.line, e.key, "more than %d keys; ignored", MPRPC__GOV_MAX_KEYS);
      entry_free(&e);
      continue;
    }
    if (node_add(n, &e) != 0) {
      entry_free(&e);
      goto oom;
    }
  }
  if (nproblems)
    *nproblems = c.problems;
  *out = n;
  return 0;
oom:
  mprpc__gov_node_free(n);
  return MPRPC_ENOMEM;
}

int mprpc__gov_node_parse(const char *name, const char *text, size_t len,
                          const mprpc__gov_node_t *prev, mprpc__gov_report_cb report_cb,
                          void *ud, mprpc__gov_node_t **out, size_t *nproblems) {
  int scope = name && strcmp(name, MPRPC__GOV_GLOBAL) == 0 ? SCOPE_GLOBAL : SCOPE_SERVICE;
  return node_parse(name, scope, text, len, prev, report_cb, ud, out, nproblems);
}

int mprpc__gov_node_parse_local(const char *name, const char *text, size_t len,
                                const mprpc__gov_node_t *prev, mprpc__gov_report_cb report_cb,
                                void *ud, mprpc__gov_node_t **out, size_t *nproblems) {
  return node_parse(name, SCOPE_LOCAL, text, len, prev, report_cb, ud, out, nproblems);
}

/* ---- rule sets ------------------------------------------------------- */

/* Sets the fields of m not set yet from node's key "<prefix>[.target]". */
static void fill_method(mprpc__gov_method_t *m, const mprpc__gov_node_t *node,
                        const char *target) {
  if (!node)
    return;
  char key[MAX_METHOD + 32];
  for (int k = K_RATE; k <= K_DEGRADE; k++) {
    uint32_t bit = 1u << k;
    if (m->set & bit)
      continue;
    if (*target)
      snprintf(key, sizeof key, "%s.%s", specs[k].prefix, target);
    else
      snprintf(key, sizeof key, "%s", specs[k].prefix);
    const entry_t *e = node_find(node, key, hash_str(key));
    if (!e)
      continue;
    m->set |= bit;
    switch (k) {
    case K_RATE:
      m->rate_qps = e->a;
      m->rate_burst = e->b;
      break;
    case K_CONC:
      m->max_concurrency = e->a;
      m->concurrency_auto = e->flag;
      break;
    case K_TIMEOUT: m->timeout_ms = e->a; break;
    case K_RETRY: m->max_retry = e->a; break;
    case K_DEGRADE: m->degrade = (int)e->a; break;
    }
  }
}

static size_t pow2_at_least(size_t n) {
  size_t c = 8;
  while (c < n)
    c *= 2;
  return c;
}

static mslot_t *mslot_find(mslot_t *t, size_t cap, const char *name, uint32_t h, bool insert) {
  if (!cap)
    return NULL;
  for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
    if (!t[i].name)
      return insert ? &t[i] : NULL;
    if (t[i].hash == h && strcmp(t[i].name, name) == 0)
      return &t[i];
  }
}

static eslot_t *eslot_find(eslot_t *t, size_t cap, const char *host, uint16_t port, uint32_t h,
                           bool insert) {
  if (!cap)
    return NULL;
  for (size_t i = h & (cap - 1);; i = (i + 1) & (cap - 1)) {
    if (!t[i].host)
      return insert ? &t[i] : NULL;
    if (t[i].hash == h && t[i].port == port && strcmp(t[i].host, host) == 0)
      return &t[i];
  }
}

static void rules_free(mprpc__gov_rules_t *r) {
  for (size_t i = 0; i < r->mcap; i++)
    free(r->methods[i].name);
  for (size_t i = 0; i < r->ecap; i++)
    free(r->eps[i].host);
  free(r->methods);
  free(r->eps);
  free(r->service);
  free(r->group);
  free(r->version);
  free(r);
}

static size_t count_kind(const mprpc__gov_node_t *n, int lo, int hi, bool need_target) {
  size_t k = 0;
  for (size_t i = 0; n && i < n->n; i++)
    if (n->v[i].kind >= lo && n->v[i].kind <= hi && (!need_target || *n->v[i].target))
      k++;
  return k;
}

/* The first layer's value of a scalar key (layers in precedence order). */
static const entry_t *scalar(const mprpc__gov_node_t *const *layers, size_t nl, int kind) {
  const char *key = specs[kind].prefix;
  uint32_t h = hash_str(key);
  for (size_t l = 0; l < nl; l++) {
    const entry_t *e = node_find(layers[l], key, h);
    if (e)
      return e;
  }
  return NULL;
}

static int add_endpoints(mprpc__gov_rules_t *r, const mprpc__gov_node_t *n) {
  for (size_t i = 0; n && i < n->n; i++) {
    const entry_t *e = &n->v[i];
    if (e->kind != K_WEIGHT && e->kind != K_DISABLED)
      continue;
    uint32_t h = hash_ep(e->target, e->port);
    eslot_t *s = eslot_find(r->eps, r->ecap, e->target, e->port, h, true);
    if (!s->host) {
      if (!(s->host = dup_s(e->target)))
        return MPRPC_ENOMEM;
      s->port = e->port;
      s->hash = h;
    }
    uint32_t bit = e->kind == K_WEIGHT ? MPRPC__GOV_WEIGHT : MPRPC__GOV_DISABLED;
    if (s->e.set & bit)
      continue; /* a layer of higher precedence came first */
    s->e.set |= bit;
    if (e->kind == K_WEIGHT)
      s->e.weight = e->a;
    else
      s->e.disabled = e->flag;
  }
  return 0;
}

int mprpc__gov_rules_build_layers(const char *service, const mprpc__gov_node_t *const *layers,
                                  size_t nl, mprpc__gov_rules_t **out) {
  *out = NULL;
  mprpc__gov_rules_t *r = calloc(1, sizeof *r);
  if (!r)
    return MPRPC_ENOMEM;
  r->refs = 1;
  r->gen = __atomic_add_fetch(&generation_counter, 1, __ATOMIC_RELAXED);
  r->log_level = -1;
  if (service && !(r->service = dup_s(service)))
    goto oom;
  /* service-wide defaults: each layer's KEY, in precedence order */
  for (size_t l = 0; l < nl; l++)
    fill_method(&r->defaults, layers[l], "");
  /* methods named in any layer: per layer KEY.METHOD, then KEY */
  size_t nm = 0, ne = 0;
  for (size_t l = 0; l < nl; l++) {
    nm += count_kind(layers[l], K_RATE, K_DEGRADE, true);
    ne += count_kind(layers[l], K_WEIGHT, K_DISABLED, false);
  }
  if (nm) {
    r->mcap = pow2_at_least(nm * 2);
    if (!(r->methods = calloc(r->mcap, sizeof *r->methods)))
      goto oom;
    for (size_t l = 0; l < nl; l++) {
      for (size_t i = 0; layers[l] && i < layers[l]->n; i++) {
        const entry_t *e = &layers[l]->v[i];
        if (e->kind > K_DEGRADE || !*e->target)
          continue;
        uint32_t h = hash_str(e->target);
        mslot_t *s = mslot_find(r->methods, r->mcap, e->target, h, true);
        if (s->name)
          continue;
        if (!(s->name = dup_s(e->target)))
          goto oom;
        s->hash = h;
        for (size_t k = 0; k < nl; k++) {
          fill_method(&s->m, layers[k], s->name);
          fill_method(&s->m, layers[k], "");
        }
      }
    }
  }
  if (ne) {
    r->ecap = pow2_at_least(ne * 2);
    if (!(r->eps = calloc(r->ecap, sizeof *r->eps)))
      goto oom;
    for (size_t l = 0; l < nl; l++)
      if (add_endpoints(r, layers[l]))
        goto oom;
  }
  /* a service's layer never holds log_level, a local one never group or
   * version (the parser drops them) */
  const entry_t *e = scalar(layers, nl, K_LOG_LEVEL);
  if (e)
    r->log_level = (int)e->a;
  if ((e = scalar(layers, nl, K_GROUP)) && !(r->group = dup_s(e->str)))
    goto oom;
  if ((e = scalar(layers, nl, K_VERSION)) && !(r->version = dup_s(e->str)))
    goto oom;
  *out = r;
  return 0;
oom:
  rules_free(r);
  return MPRPC_ENOMEM;
}

int mprpc__gov_rules_build(const char *service, const mprpc__gov_node_t *global,
                           const mprpc__gov_node_t *svc, mprpc__gov_rules_t **out) {
  const mprpc__gov_node_t *layers[2] = {svc, global};
  return mprpc__gov_rules_build_layers(service, layers, 2, out);
}

const mprpc__gov_rules_t *mprpc__gov_rules_ref(const mprpc__gov_rules_t *r) {
  if (r)
    __atomic_add_fetch(&((mprpc__gov_rules_t *)r)->refs, 1, __ATOMIC_RELAXED);
  return r;
}

void mprpc__gov_rules_unref(const mprpc__gov_rules_t *r) {
  if (r && __atomic_sub_fetch(&((mprpc__gov_rules_t *)r)->refs, 1, __ATOMIC_ACQ_REL) == 0)
    rules_free((mprpc__gov_rules_t *)r);
}

const mprpc__gov_method_t *mprpc__gov_rules_method(const mprpc__gov_rules_t *r,
                                                    const char *method) {
  if (!r)
    return &nothing_method;
  if (method && r->mcap) {
    const mslot_t *s = mslot_find(r->methods, r->mcap, method, hash_str(method), false);
    if (s)
      return &s->m;
  }
  return &r->defaults;
}

const mprpc__gov_endpoint_t *mprpc__gov_rules_endpoint(const mprpc__gov_rules_t *r,
                                                        const char *host, uint16_t port) {
  if (!r || !r->ecap || !host)
    return &nothing_endpoint;
  const eslot_t *s = eslot_find(r->eps, r->ecap, host, port, hash_ep(host, port), false);
  return s ? &s->e : &nothing_endpoint;
}

int mprpc__gov_rules_log_level(const mprpc__gov_rules_t *r) { return r ? r->log_level : -1; }
const char *mprpc__gov_rules_group(const mprpc__gov_rules_t *r) { return r ? r->group : NULL; }
const char *mprpc__gov_rules_version(const mprpc__gov_rules_t *r) { return r ? r->version : NULL; }
const char *mprpc__gov_rules_service(const mprpc__gov_rules_t *r) { return r ? r->service : NULL; }
uint64_t mprpc__gov_rules_generation(const mprpc__gov_rules_t *r) { return r ? r->gen : 0; }

/* ---- state: the layers of one service ---------------------------------- */

int mprpc__gov_state_init(mprpc__gov_state_t *st, const char *service) {
  memset(st, 0, sizeof *st);
  if (!service || !*service)
    return MPRPC_EINVAL;
  if (!(st->service = dup_s(service)))
    return MPRPC_ENOMEM;
  int rc = mprpc__gov_rules_build_layers(service, NULL, 0, &st->rules);
  if (rc) {
    free(st->service);
    st->service = NULL;
  }
  return rc;
}

void mprpc__gov_state_destroy(mprpc__gov_state_t *st) {
  for (size_t l = 0; l < MPRPC__GOV_NLAYERS; l++)
    mprpc__gov_node_free(st->layer[l]);
  mprpc__gov_rules_unref(st->rules);
  free(st->service);
  memset(st, 0, sizeof *st);
}

/* Replaces layer `which` by fresh (may be NULL) and rebuilds the rules;
 * on failure st is unchanged and fresh freed. */
static int state_swap(mprpc__gov_state_t *st, int which, mprpc__gov_node_t *fresh) {
  const mprpc__gov_node_t *layers[MPRPC__GOV_NLAYERS];
  for (int l = 0; l < MPRPC__GOV_NLAYERS; l++)
    layers[l] = l == which ? fresh : st->layer[l];
  mprpc__gov_rules_t *r;
  int rc = mprpc__gov_rules_build_layers(st->service, layers, MPRPC__GOV_NLAYERS, &r);
  if (rc) {
    mprpc__gov_node_free(fresh);
    return rc;
  }
  mprpc__gov_node_free(st->layer[which]);
  st->layer[which] = fresh;
  mprpc__gov_rules_unref(st->rules);
  st->rules = r;
  return 0;
}

int mprpc__gov_state_update(mprpc__gov_state_t *st, const char *name, const char *text,
                            size_t len, mprpc__gov_report_cb report_cb, void *ud,
                            size_t *nproblems) {
  if (nproblems)
    *nproblems = 0;
  if (!name || !st->service)
    return MPRPC_EINVAL;
  int which;
  if (strcmp(name, MPRPC__GOV_GLOBAL) == 0)
    which = MPRPC__GOV_LAYER_GLOBAL;
  else if (strcmp(name, st->service) == 0)
    which = MPRPC__GOV_LAYER_SVC;
  else
    return MPRPC_EINVAL;
  mprpc__gov_node_t *fresh = NULL;
  if (text) {
    int rc = mprpc__gov_node_parse(name, text, len, st->layer[which], report_cb, ud, &fresh,
                                   nproblems);
    if (rc)
      return rc;
  }
  return state_swap(st, which, fresh);
}

int mprpc__gov_state_set_local(mprpc__gov_state_t *st, const char *name, const char *text,
                               size_t len, mprpc__gov_report_cb report_cb, void *ud,
                               size_t *nproblems) {
  if (nproblems)
    *nproblems = 0;
  if (!st->service)
    return MPRPC_EINVAL;
  mprpc__gov_node_t *fresh = NULL;
  if (text) {
    int rc = mprpc__gov_node_parse_local(name && *name ? name : MPRPC__GOV_LOCAL, text, len,
                                         st->layer[MPRPC__GOV_LAYER_LOCAL], report_cb, ud, &fresh,
                                         nproblems);
    if (rc)
      return rc;
  }
  return state_swap(st, MPRPC__GOV_LAYER_LOCAL, fresh);
}

/* ---- cells ------------------------------------------------------------ */

typedef struct cell_job {
  mprpc__gov_cell_t *cell;
  const mprpc__gov_rules_t *rules;
} cell_job_t;

static void cell_swap(void *arg) {
  cell_job_t *j = arg;
  const mprpc__gov_rules_t *old = j->cell->rules;
  j->cell->rules = j->rules;
  mprpc__gov_rules_unref(old);
  free(j);
}

int mprpc__gov_cell_publish(mprpc__gov_cell_t *cell, mprpc_loop_t loop,
                            const mprpc__gov_rules_t *r) {
  cell_job_t *j = malloc(sizeof *j);
  if (!j)
    return MPRPC_ENOMEM;
  j->cell = cell;
  j->rules = mprpc__gov_rules_ref(r);
  int rc = mprpc_loop_post(loop, cell_swap, j);
  if (rc) {
    mprpc__gov_rules_unref(j->rules);
    free(j);
  }
  return rc;
}

void mprpc__gov_cell_clear(mprpc__gov_cell_t *cell) {
  mprpc__gov_rules_unref(cell->rules);
  cell->rules = NULL;
}

void mprpc__gov_report_log(void *ud, const char *node, int line, const char *key,
                           const char *problem) {
  (void)ud;
  (void)key;
  if (line > 0)
    MPRPC_LOG_WARN("config %s:%d: %s", node, line, problem);
  else
    MPRPC_LOG_WARN("config %s: %s", node, problem);
}
