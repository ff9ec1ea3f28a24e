/* Config file loader and typed getters. The programs' bootstrap (the
 * command line, the seeds' keys, the logger keys) is src/app/app.c. */
#include "mprpc/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/kvline.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "util/config_int.h"
#include "util/keys.h"

#define MAX_FILE_BYTES ((size_t)64 << 20)
#define SHOW_MAX 80 /* longest value quoted in an error message */

typedef struct entry {
  char *key;
  char *value;
  char *file; /* NULL when set programmatically */
  int line;
  bool used;
  bool reported; /* named by an unknown-key warning already */
} entry_t;

struct mprpc_config {
  entry_t *v;
  size_t n, cap;
  char **kept; /* strings made from the entries (mprpc__config_collect) */
  size_t nkept;
  char err[1024];
};

static void set_err(mprpc_config_t *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(mprpc_config_t *cfg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cfg->err, sizeof cfg->err, fmt, ap);
  va_end(ap);
}

int mprpc_config_new(mprpc_config_t **out) {
  *out = calloc(1, sizeof **out);
  return *out ? 0 : MPRPC_ENOMEM;
}

static void entry_free(entry_t *e) {
  free(e->key);
  free(e->value);
  free(e->file);
}

void mprpc_config_free(mprpc_config_t *cfg) {
  if (!cfg)
    return;
  for (size_t i = 0; i < cfg->n; i++)
    entry_free(&cfg->v[i]);
  for (size_t i = 0; i < cfg->nkept; i++)
    free(cfg->kept[i]);
  free(cfg->kept);
  free(cfg->v);
  free(cfg);
}

const char *mprpc_config_error(const mprpc_config_t *cfg) { return cfg ? cfg->err : ""; }

static entry_t *find(const mprpc_config_t *cfg, const char *key) {
  for (size_t i = 0; i < cfg->n; i++)
    if (strcmp(cfg->v[i].key, key) == 0)
      return &cfg->v[i];
  return NULL;
}

static int reserve(mprpc_config_t *cfg, size_t extra) {
  if (cfg->n + extra <= cfg->cap)
    return 0;
  size_t cap = cfg->cap ? cfg->cap : 16;
  while (cap < cfg->n + extra)
    cap *= 2;
  entry_t *v = realloc(cfg->v, cap * sizeof *v);
  if (!v)
    return MPRPC_ENOMEM;
  cfg->v = v;
  cfg->cap = cap;
  return 0;
}

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = 0;
  }
  return p;
}

/* ---- parsing ------------------------------------------------------------- */

/* Quotes at most SHOW_MAX bytes of s[0..n) for an error message. */
static const char *show(const char *s, size_t n, char buf[SHOW_MAX + 8]) {
  size_t k = n > SHOW_MAX ? SHOW_MAX : n;
  memcpy(buf, s, k);
  strcpy(buf + k, n > SHOW_MAX ? "..." : "");
  return buf;
}

int mprpc_config_load_string(mprpc_config_t *cfg, const char *text, size_t len, const char *name) {
  if (!cfg || (!text && len))
    return MPRPC_EINVAL;
  if (!name)
    name = "<string>";
  cfg->err[0] = 0;
  entry_t *nv = NULL; /* the new entries, merged only when the whole text parsed */
  size_t nn = 0, ncap = 0;
  int rc = 0;
  char sbuf[SHOW_MAX + 8];
  mprpc__kv_iter_t it;
  mprpc__kv_t kv;
  mprpc__kv_init(&it, text, len, ":[]"); /* governance keys name HOST:PORT */
  while ((rc = mprpc__kv_next(&it, &kv)) != MPRPC__KV_END) {
    int lineno = kv.line;
    const char *ls = kv.text, *vs = kv.value;
    size_t ll = kv.tlen, kl = kv.klen, vl = kv.vlen;
    if (rc == MPRPC__KV_ENUL) {
      set_err(cfg, "%s:%d: line contains a NUL byte", name, lineno);
      rc = MPRPC_ECONFIG;
      goto fail;
    }
    if (rc == MPRPC__KV_ENOEQ) {
      set_err(cfg, "%s:%d: expected key=value, got '%s'", name, lineno, show(ls, ll, sbuf));
      rc = MPRPC_ECONFIG;
      goto fail;
    }
    if (rc == MPRPC__KV_EEMPTYKEY) {
      set_err(cfg, "%s:%d: empty key in '%s'", name, lineno, show(ls, ll, sbuf));
      rc = MPRPC_ECONFIG;
      goto fail;
    }
    if (rc == MPRPC__KV_EBADKEY) {
      set_err(cfg, "%s:%d: invalid key '%s' (letters, digits, '_', '.', '-', ':', '[', ']' only)",
              name, lineno, show(kv.key, kl, sbuf));
      rc = MPRPC_ECONFIG;
      goto fail;
    }
    if (nn == ncap) {
      size_t c = ncap ? ncap * 2 : 16;
      entry_t *v = realloc(nv, c * sizeof *v);
      if (!v) {
        rc = MPRPC_ENOMEM;
        goto fail;
      }
      nv = v;
      ncap = c;
    }
    entry_t *e = &nv[nn];
    *e = (entry_t){.key = dup_n(kv.key, kl), .value = dup_n(vs, vl), .file = strdup(name),
                   .line = lineno};
    nn++;
    if (!e->key || !e->value || !e->file) {
      rc = MPRPC_ENOMEM;
      goto fail;
    }
  }
  if ((rc = reserve(cfg, nn)) != 0)
    goto fail;
  for (size_t i = 0; i < nn; i++) {
    entry_t *old = find(cfg, nv[i].key);
    if (old) {
      if (old->file)
        MPRPC_LOG_WARN("%s:%d: key '%s' set again; overrides %s:%d", nv[i].file, nv[i].line,
                       nv[i].key, old->file, old->line);
      else
        MPRPC_LOG_WARN("%s:%d: key '%s' set again; overrides the earlier value", nv[i].file,
                       nv[i].line, nv[i].key);
      entry_free(old);
      *old = nv[i];
    } else {
      cfg->v[cfg->n++] = nv[i];
    }
  }
  free(nv);
  return 0;
fail:
  if (rc == MPRPC_ENOMEM)
    set_err(cfg, "%s: out of memory", name);
  for (size_t i = 0; i < nn; i++)
    entry_free(&nv[i]);
  free(nv);
  return rc;
}

int mprpc_config_load_file(mprpc_config_t *cfg, const char *path) {
  if (!cfg || !path)
    return MPRPC_EINVAL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    int e = errno;
    set_err(cfg, "%s: cannot open: %s", path, strerror(e));
    return mprpc_err_from_errno(e);
  }
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  int rc = 0;
  if (!buf) {
    rc = MPRPC_ENOMEM;
    set_err(cfg, "%s: out of memory", path);
    goto out;
  }
  for (;;) {
    if (n == cap) {
      if (cap >= MAX_FILE_BYTES) {
        set_err(cfg, "%s: larger than %zu MiB; not a config file?", path, MAX_FILE_BYTES >> 20);
        rc = MPRPC_ECONFIG;
        goto out;
      }
      char *b = realloc(buf, cap * 2);
      if (!b) {
        rc = MPRPC_ENOMEM;
        set_err(cfg, "%s: out of memory", path);
        goto out;
      }
      buf = b;
      cap *= 2;
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) {
      if (ferror(f)) {
        int e = errno ? errno : EIO;
        set_err(cfg, "%s: read: %s", path, strerror(e));
        rc = mprpc_err_from_errno(e);
        goto out;
      }
      break;
    }
  }
  rc = mprpc_config_load_string(cfg, buf, n, path);
out:
  free(buf);
  fclose(f);
  return rc;
}

int mprpc_config_set(mprpc_config_t *cfg, const char *key, const char *value) {
  if (!cfg || !key || !value || !key[0])
    return MPRPC_EINVAL;
  for (const char *p = key; *p; p++)
    if (!mprpc__kv_key_char(*p) && *p != ':' && *p != '[' && *p != ']')
      return MPRPC_EINVAL;
  char *v = strdup(value);
  if (!v)
    return MPRPC_ENOMEM;
  entry_t *e = find(cfg, key);
  if (e) {
    free(e->value);
    free(e->file);
    e->value = v;
    e->file = NULL;
    e->line = 0;
    return 0;
  }
  char *k = strdup(key);
  if (!k || reserve(cfg, 1) != 0) {
    free(k);
    free(v);
    return MPRPC_ENOMEM;
  }
  cfg->v[cfg->n++] = (entry_t){.key = k, .value = v};
  return 0;
}

const char *mprpc_config_get(const mprpc_config_t *cfg, const char *key) {
  entry_t *e = cfg && key ? find(cfg, key) : NULL;
  if (e)
    e->used = true;
  return e ? e->value : NULL;
}

bool mprpc_config_has(const mprpc_config_t *cfg, const char *key) {
  return cfg && key && find(cfg, key) != NULL;
}

size_t mprpc_config_count(const mprpc_config_t *cfg) { return cfg ? cfg->n : 0; }

int mprpc_config_entry(const mprpc_config_t *cfg, size_t i, const char **key, const char **value) {
  if (!cfg || i >= cfg->n)
    return MPRPC_ENOTFOUND;
  if (key)
    *key = cfg->v[i].key;
  if (value)
    *value = cfg->v[i].value;
  return 0;
}

/* " (did you mean K?)" when a known key is close, else "". */
static const char *hint(const char *key, char *buf, size_t n) {
  const char *s = mprpc__key_suggest(key);
  if (s)
    snprintf(buf, n, " (did you mean %s?)", s);
  else
    buf[0] = '\0';
  return buf;
}

static bool in_list(const char *const *list, const char *key) {
  for (; list && *list; list++)
    if (strcmp(*list, key) == 0)
      return true;
  return false;
}

static void warn_key(entry_t *e, const char *what) {
  char h[96];
  e->reported = true;
  if (e->file)
    MPRPC_LOG_WARN("%s:%d: %s '%s'%s", e->file, e->line, what, e->key, hint(e->key, h, sizeof h));
  else
    MPRPC_LOG_WARN("%s '%s'%s", what, e->key, hint(e->key, h, sizeof h));
}

size_t mprpc_config_warn_unknown(mprpc_config_t *cfg, const char *const *extra) {
  size_t k = 0;
  for (size_t i = 0; cfg && i < cfg->n; i++) {
    entry_t *e = &cfg->v[i];
    if (e->reported || e->used || mprpc_config_key_known(e->key) || in_list(extra, e->key))
      continue;
    k++;
    warn_key(e, "unknown key");
  }
  return k;
}

size_t mprpc_config_warn_unused(const mprpc_config_t *cfg) {
  size_t k = 0;
  for (size_t i = 0; cfg && i < cfg->n; i++) {
    entry_t *e = &cfg->v[i];
    if (e->used)
      continue;
    k++;
    if (e->reported) /* an unknown key, named already */
      continue;
    /* A key of the library that this program never read (say, a channel
     * key in a provider's file) is not a typo: said so, without a hint. */
    if (mprpc_config_key_known(e->key)) {
      e->reported = true;
      if (e->file)
        MPRPC_LOG_WARN("%s:%d: key '%s' is not used by this program (ignored)", e->file, e->line,
                       e->key);
      else
        MPRPC_LOG_WARN("key '%s' is not used by this program (ignored)", e->key);
    } else {
      warn_key(e, "unknown key");
    }
  }
  return k;
}

/* ---- value parsers ------------------------------------------------------- */

/* Leading unsigned decimal digits of s into *v; returns chars consumed (0 if
 * none), or -1 on overflow. */
static int parse_digits(const char *s, uint64_t *v) {
  uint64_t x = 0;
  int i = 0;
  for (; s[i] >= '0' && s[i] <= '9'; i++) {
    unsigned d = (unsigned)(s[i] - '0');
    if (x > (UINT64_MAX - d) / 10)
      return -1;
    x = x * 10 + d;
  }
  *v = x;
  return i;
}

int mprpc_parse_int(const char *s, int64_t min, int64_t max, int64_t *out) {
  if (!s)
    return MPRPC_EINVAL;
  bool neg = false;
  const char *p = s;
  if (*p == '+' || *p == '-')
    neg = *p++ == '-';
  uint64_t v;
  int k = parse_digits(p, &v);
  if (k <= 0 || p[k] != 0)
    return MPRPC_EINVAL;
  int64_t x;
  if (neg) {
    if (v > (uint64_t)INT64_MAX + 1)
      return MPRPC_EINVAL;
    x = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
  } else {
    if (v > (uint64_t)INT64_MAX)
      return MPRPC_EINVAL;
    x = (int64_t)v;
  }
  if (x < min || x > max)
    return MPRPC_ERANGE;
  *out = x;
  return 0;
}

int mprpc_parse_bool(const char *s, bool *out) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  if (!s)
    return MPRPC_EINVAL;
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcasecmp(s, no[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  return MPRPC_EINVAL;
}

/* Number, optional spaces, unit from the table (exact match by cmp). */
typedef struct unit {
  const char *name;
  uint64_t mul;
} unit_t;

static int parse_with_unit(const char *s, const unit_t *units, size_t nunits, bool icase,
                           uint64_t *out) {
  if (!s)
    return MPRPC_EINVAL;
  uint64_t v;
  int k = parse_digits(s, &v);
  if (k <= 0)
    return MPRPC_EINVAL;
  const char *u = s + k;
  while (*u == ' ' || *u == '\t')
    u++;
  for (size_t i = 0; i < nunits; i++) {
    if ((icase ? strcasecmp(u, units[i].name) : strcmp(u, units[i].name)) == 0) {
      if (units[i].mul && v > UINT64_MAX / units[i].mul)
        return MPRPC_ERANGE;
      *out = v * units[i].mul;
      return 0;
    }
  }
  return MPRPC_EINVAL;
}

int mprpc_parse_duration_ms(const char *s, int64_t *out_ms) {
  static const unit_t units[] = {{"", 1},          {"ms", 1},         {"s", 1000},
                                 {"m", 60000},     {"min", 60000},    {"h", 3600000},
                                 {"d", 86400000}};
  uint64_t v;
  int rc = parse_with_unit(s, units, sizeof units / sizeof units[0], false, &v);
  if (rc)
    return rc;
  if (v > (uint64_t)INT64_MAX)
    return MPRPC_ERANGE;
  *out_ms = (int64_t)v;
  return 0;
}

int mprpc_parse_size(const char *s, uint64_t *out) {
  static const unit_t units[] = {
      {"", 1},
      {"b", 1},
      {"k", 1ull << 10},
      {"kib", 1ull << 10},
      {"kb", 1000ull},
      {"m", 1ull << 20},
      {"mib", 1ull << 20},
      {"mb", 1000000ull},
      {"g", 1ull << 30},
      {"gib", 1ull << 30},
      {"gb", 1000000000ull},
      {"t", 1ull << 40},
      {"tib", 1ull << 40},
      {"tb", 1000000000000ull},
  };
  return parse_with_unit(s, units, sizeof units / sizeof units[0], true, out);
}

/* ---- typed getters ------------------------------------------------------- */

/* "file:line: " for an entry, "" when it was set in code. */
static const char *where(const entry_t *e, char *buf, size_t n) {
  if (e->file)
    snprintf(buf, n, "%s:%d: ", e->file, e->line);
  else
    buf[0] = 0;
  return buf;
}

static entry_t *lookup(mprpc_config_t *cfg, const char *key) {
  entry_t *e = cfg && key ? find(cfg, key) : NULL;
  if (e)
    e->used = true;
  return e;
}

static int bad_value(mprpc_config_t *cfg, const entry_t *e, const char *expected) {
  char w[512], sbuf[SHOW_MAX + 8];
  set_err(cfg, "%skey '%s': invalid value '%s': expected %s", where(e, w, sizeof w), e->key,
          show(e->value, strlen(e->value), sbuf), expected);
  return MPRPC_ECONFIG;
}

int mprpc_config_get_choice(mprpc_config_t *cfg, const char *key, const char *const *names,
                            size_t n, int *out) {
  entry_t *e = lookup(cfg, key);
  if (!e)
    return 0;
  char expected[256];
  size_t len = 0;
  expected[0] = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(e->value, names[i]) == 0) {
      *out = (int)i;
      return 0;
    }
    int w = snprintf(expected + len, sizeof expected - len, "%s%s", i ? "|" : "one of ", names[i]);
    if (w > 0 && (size_t)w < sizeof expected - len)
      len += (size_t)w;
  }
  return bad_value(cfg, e, expected);
}

int mprpc_config_get_string(mprpc_config_t *cfg, const char *key, const char *def,
                            const char **out) {
  entry_t *e = lookup(cfg, key);
  *out = e ? e->value : def;
  return 0;
}

int mprpc_config_get_int(mprpc_config_t *cfg, const char *key, int64_t def, int64_t min,
                         int64_t max, int64_t *out) {
  entry_t *e = lookup(cfg, key);
  if (!e) {
    *out = def;
    return 0;
  }
  int64_t v;
  int rc = mprpc_parse_int(e->value, min, max, &v);
  if (rc) {
    char exp[128];
    snprintf(exp, sizeof exp, "an integer in [%lld, %lld]", (long long)min, (long long)max);
    return bad_value(cfg, e, exp);
  }
  *out = v;
  return 0;
}

int mprpc_config_get_bool(mprpc_config_t *cfg, const char *key, bool def, bool *out) {
  entry_t *e = lookup(cfg, key);
  if (!e) {
    *out = def;
    return 0;
  }
  bool v;
  if (mprpc_parse_bool(e->value, &v) != 0)
    return bad_value(cfg, e, "true/false, yes/no, on/off or 1/0");
  *out = v;
  return 0;
}

int mprpc_config_get_duration_ms(mprpc_config_t *cfg, const char *key, int64_t def_ms,
                                 int64_t *out_ms) {
  entry_t *e = lookup(cfg, key);
  if (!e) {
    *out_ms = def_ms;
    return 0;
  }
  int64_t v;
  if (mprpc_parse_duration_ms(e->value, &v) != 0)
    return bad_value(cfg, e,
                     "a duration such as 250ms, 2s, 1m, 1h, 1d (a plain number is milliseconds)");
  *out_ms = v;
  return 0;
}

int mprpc_config_get_size(mprpc_config_t *cfg, const char *key, uint64_t def, uint64_t *out) {
  entry_t *e = lookup(cfg, key);
  if (!e) {
    *out = def;
    return 0;
  }
  uint64_t v;
  if (mprpc_parse_size(e->value, &v) != 0)
    return bad_value(cfg, e, "a size such as 512, 64KiB, 1MiB, 1GiB, 10MB");
  *out = v;
  return 0;
}

int mprpc_config_get_hostport(mprpc_config_t *cfg, const char *key, const char *def,
                              mprpc_hostport_t *out) {
  entry_t *e = lookup(cfg, key);
  if (!e) {
    if (!def)
      return MPRPC_ENOTFOUND;
    if (mprpc_parse_hostport(def, true, out) != 0) {
      set_err(cfg, "key '%s': bad default '%s'", key, def);
      return MPRPC_EINVAL;
    }
    return 0;
  }
  if (mprpc_parse_hostport(e->value, true, out) != 0)
    return bad_value(cfg, e, "host:port (IPv4, hostname or [IPv6], port 0-65535)");
  return 0;
}

/* ---- for the bootstrap (util/config_int.h) -------------------------------- */

int mprpc__config_bad_value(mprpc_config_t *cfg, const char *key, const char *expected) {
  entry_t *e = lookup(cfg, key);
  return e ? bad_value(cfg, e, expected) : MPRPC_ECONFIG;
}

void mprpc__config_errorf(mprpc_config_t *cfg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cfg->err, sizeof cfg->err, fmt, ap);
  va_end(ap);
}

int mprpc__config_key_error(mprpc_config_t *cfg, const char *key, const char *text) {
  entry_t *e = lookup(cfg, key);
  char w[512];
  set_err(cfg, "%skey '%s': %s", e ? where(e, w, sizeof w) : "", key, text);
  return MPRPC_ECONFIG;
}

bool mprpc__config_used(const mprpc_config_t *cfg, const char *key) {
  entry_t *e = cfg && key ? find(cfg, key) : NULL;
  return e && e->used;
}

/* Entries by line, for mprpc__config_collect. */
static int by_line(const void *a, const void *b) {
  const entry_t *x = *(const entry_t *const *)a, *y = *(const entry_t *const *)b;
  return (x->line > y->line) - (x->line < y->line);
}

int mprpc__config_collect(mprpc_config_t *cfg, bool (*want)(const char *key), const char **text,
                          const char **name) {
  *text = *name = NULL;
  if (!cfg)
    return 0;
  size_t n = 0, bytes = 0;
  const char *file = NULL;
  bool one_file = true;
  for (size_t i = 0; i < cfg->n; i++) {
    entry_t *e = &cfg->v[i];
    if (!want(e->key))
      continue;
    if (!e->file || (file && strcmp(file, e->file) != 0))
      one_file = false;
    if (!file)
      file = e->file;
    n++;
    bytes += strlen(e->key) + strlen(e->value) + 2 + (e->line > 0 ? (size_t)e->line : 0);
  }
  if (!n)
    return 0;
  entry_t **v = malloc(n * sizeof *v);
  char *out = malloc(bytes + 1);
  char **kept = realloc(cfg->kept, (cfg->nkept + 2) * sizeof *kept);
  if (kept)
    cfg->kept = kept;
  if (!v || !out || !kept) {
    free(v);
    free(out);
    return MPRPC_ENOMEM;
  }
  size_t k = 0;
  for (size_t i = 0; i < cfg->n; i++)
    if (want(cfg->v[i].key)) {
      cfg->v[i].used = true;
      v[k++] = &cfg->v[i];
    }
  /* One file: each entry on its own line number, so a problem reported
   * as "NAME:LINE" points into the file. */
  if (one_file)
    qsort(v, n, sizeof *v, by_line);
  size_t o = 0;
  int line = 1;
  for (size_t i = 0; i < n; i++) {
    for (; one_file && line < v[i]->line; line++)
      out[o++] = '\n';
    size_t kl = strlen(v[i]->key), vl = strlen(v[i]->value);
    memcpy(out + o, v[i]->key, kl);
    o += kl;
    out[o++] = '=';
    for (size_t j = 0; j < vl; j++) /* a value set in code cannot add lines */
      out[o++] = v[i]->value[j] == '\n' || v[i]->value[j] == '\r' ? ' ' : v[i]->value[j];
    out[o++] = '\n';
    line++;
  }
  out[o] = 0;
  free(v);
  cfg->kept[cfg->nkept++] = out;
  *text = out;
  if (one_file) {
    char *nm = strdup(file);
    if (!nm)
      return MPRPC_ENOMEM; /* text stays (reported without the file) */
    cfg->kept[cfg->nkept++] = nm;
    *name = nm;
  }
  return 0;
}
