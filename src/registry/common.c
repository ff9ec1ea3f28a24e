/* Shared helpers of the production registries; see internal.h. */
#include "registry/internal.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/select.h"
#include "mprpc/addr.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

const char *mprpc_registry_health_name(int health) {
  switch (health) {
  case MPRPC_REG_HEALTHY: return "HEALTHY";
  case MPRPC_REG_CONNECTING: return "CONNECTING";
  case MPRPC_REG_DISCONNECTED: return "DISCONNECTED";
  case MPRPC_REG_EXPIRED: return "EXPIRED";
  case MPRPC_REG_CLOSED: return "CLOSED";
  default: return "UNKNOWN";
  }
}

/* --- lists -------------------------------------------------------------- */

static char *dup_or_null(const char *s, bool *oom) {
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    *oom = true;
  return d;
}

void mprpc__reg_instance_free(mprpc_instance_t *inst) {
  free((char *)inst->service);
  free((char *)inst->host);
  free((char *)inst->methods);
  free((char *)inst->version);
  free((char *)inst->group);
  memset(inst, 0, sizeof *inst);
}

int mprpc__reg_instance_dup(mprpc_instance_t *dst, const mprpc_instance_t *src) {
  bool oom = false;
  *dst = *src;
  dst->service = dup_or_null(src->service, &oom);
  dst->host = dup_or_null(src->host, &oom);
  dst->methods = dup_or_null(src->methods, &oom);
  dst->version = dup_or_null(src->version, &oom);
  dst->group = src->group && *src->group ? dup_or_null(src->group, &oom) : NULL;
  if (dst->weight == 0)
    dst->weight = MPRPC_DEFAULT_WEIGHT;
  if (oom) {
    mprpc__reg_instance_free(dst);
    return MPRPC_ENOMEM;
  }
  return 0;
}

int mprpc__reg_list_add(mprpc__reg_list_t *l, const mprpc_instance_t *inst) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    mprpc_instance_t *items = realloc(l->items, cap * sizeof *items);
    if (!items)
      return MPRPC_ENOMEM;
    l->items = items;
    l->cap = cap;
  }
  int rc = mprpc__reg_instance_dup(&l->items[l->n], inst);
  if (rc == 0)
    l->n++;
  return rc;
}

void mprpc__reg_list_clear(mprpc__reg_list_t *l) {
  for (size_t i = 0; i < l->n; i++)
    mprpc__reg_instance_free(&l->items[i]);
  free(l->items);
  l->items = NULL;
  l->n = l->cap = 0;
}

int mprpc__reg_list_filter(mprpc__reg_list_t *dst, const mprpc__reg_list_t *src,
                           const char *service) {
  for (size_t i = 0; i < src->n; i++) {
    if (service && strcmp(src->items[i].service ? src->items[i].service : "", service) != 0)
      continue;
    int rc = mprpc__reg_list_add(dst, &src->items[i]);
    if (rc) {
      mprpc__reg_list_clear(dst);
      return rc;
    }
  }
  return 0;
}

int mprpc__reg_list_copy(mprpc__reg_list_t *dst, const mprpc__reg_list_t *src) {
  return mprpc__reg_list_filter(dst, src, NULL);
}

static int strcmp_null(const char *a, const char *b) {
  return strcmp(a ? a : "", b ? b : "");
}

static int inst_cmp(const void *pa, const void *pb) {
  const mprpc_instance_t *a = pa, *b = pb;
  int c = strcmp_null(a->service, b->service);
  if (c == 0)
    c = strcmp_null(a->host, b->host);
  if (c == 0)
    c = (int)a->port - (int)b->port;
  return c;
}

void mprpc__reg_list_sort(mprpc__reg_list_t *l) {
  if (l->n > 1)
    qsort(l->items, l->n, sizeof *l->items, inst_cmp);
}

static bool inst_equal(const mprpc_instance_t *a, const mprpc_instance_t *b) {
  return inst_cmp(a, b) == 0 && a->weight == b->weight &&
         strcmp_null(a->methods, b->methods) == 0 && strcmp_null(a->version, b->version) == 0 &&
         strcmp(mprpc__group_of(a->group), mprpc__group_of(b->group)) == 0 &&
         a->start_time_ms == b->start_time_ms && a->tls == b->tls;
}

bool mprpc__reg_list_equal(const mprpc__reg_list_t *a, const mprpc__reg_list_t *b) {
  if (a->n != b->n)
    return false;
  for (size_t i = 0; i < a->n; i++)
    if (!inst_equal(&a->items[i], &b->items[i]))
      return false;
  return true;
}

/* --- validation and the line format ------------------------------------ */

static char hostname_buf[256];
static void fill_hostname(void) {
  if (gethostname(hostname_buf, sizeof hostname_buf - 1) != 0)
    hostname_buf[0] = '\0';
  for (char *c = hostname_buf; *c; c++)
    if (isspace((unsigned char)*c))
      *c = '_';
}

static bool has_space(const char *s) {
  for (; s && *s; s++)
    if (isspace((unsigned char)*s) || (unsigned char)*s < 0x20 || *s == 0x7f)
      return true;
  return false;
}

int mprpc__reg_instance_check(const mprpc_instance_t *inst, char *err, size_t errlen) {
  if (!inst || !inst->service || !*inst->service) {
    snprintf(err, errlen, "instance has no service name");
    return MPRPC_EINVAL;
  }
  if (strlen(inst->service) >= MPRPC__REG_MAX_NAME || has_space(inst->service) ||
      strchr(inst->service, '/')) {
    snprintf(err, errlen, "bad service name '%.64s' (no '/', spaces, at most %d bytes)",
             inst->service, MPRPC__REG_MAX_NAME - 1);
    return MPRPC_EINVAL;
  }
  if (!inst->host || !*inst->host || strlen(inst->host) >= MPRPC__REG_MAX_HOST ||
      has_space(inst->host) || strchr(inst->host, '/')) {
    snprintf(err, errlen, "service %s: bad host '%.64s'", inst->service,
             inst->host ? inst->host : "(null)");
    return MPRPC_EINVAL;
  }
  if (inst->port == 0) {
    snprintf(err, errlen, "service %s: port 0 cannot be registered", inst->service);
    return MPRPC_EINVAL;
  }
  if (inst->weight > MPRPC__REG_MAX_WEIGHT) {
    snprintf(err, errlen, "service %s: weight %" PRIu32 " above %u", inst->service, inst->weight,
             MPRPC__REG_MAX_WEIGHT);
    return MPRPC_EINVAL;
  }
  if ((inst->methods && (has_space(inst->methods) || strlen(inst->methods) >= MPRPC__REG_MAX_META)) ||
      (inst->version && (has_space(inst->version) || strlen(inst->version) >= MPRPC__REG_MAX_META))) {
    snprintf(err, errlen, "service %s: methods/version may not contain spaces", inst->service);
    return MPRPC_EINVAL;
  }
  if (inst->group && *inst->group && !mprpc__group_valid(inst->group)) {
    snprintf(err, errlen, "service %s: bad group '%.64s' (letters, digits, '_', '.', '-'; at most 64)",
             inst->service, inst->group);
    return MPRPC_EINVAL;
  }
  return 0;
}

int mprpc__reg_parse_hostport(const char *s, size_t len, char *host, size_t hostlen,
                              uint16_t *port, char *err, size_t errlen) {
  mprpc_hostport_t hp;
  if (mprpc_addr_parse(s, len, 0, &hp, err, errlen) != 0)
    return MPRPC_EINVAL;
  size_t n = strlen(hp.host);
  if (n >= hostlen) {
    snprintf(err, errlen, "bad address '%.*s' (host too long)", (int)len, s);
    return MPRPC_EINVAL;
  }
  memcpy(host, hp.host, n + 1);
  *port = hp.port;
  return 0;
}

void mprpc__reg_format_hostport(const char *host, uint16_t port, char *buf, size_t len) {
  mprpc_addr_format(host, port, buf, len);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out) {
  if (!*s)
    return -1;
  uint64_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    unsigned d = (unsigned)(*s - '0');
    if (v > (max - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int mprpc__reg_parse_line(char *line, mprpc_instance_t *out, char *err, size_t errlen) {
  return mprpc__reg_parse_line_ex(line, out, NULL, err, errlen);
}

int mprpc__reg_parse_line_ex(char *line, mprpc_instance_t *out, mprpc__reg_line_extra_t *extra,
                             char *err, size_t errlen) {
  char *tok[64];
  size_t nt = 0;
  char *p = line;
  memset(out, 0, sizeof *out);
  if (extra)
    memset(extra, 0, sizeof *extra);
  for (;;) {
    while (*p && isspace((unsigned char)*p))
      p++;
    if (!*p || *p == '#')
      break;
    if (nt == sizeof tok / sizeof tok[0]) {
      snprintf(err, errlen, "too many fields");
      return MPRPC_EINVAL;
    }
    tok[nt++] = p;
    while (*p && !isspace((unsigned char)*p))
      p++;
    if (*p)
      *p++ = '\0';
  }
  if (nt == 0)
    return 0;
  if (nt < 2) {
    snprintf(err, errlen, "expected 'service host:port [key=value ...]', got only '%.64s'",
             tok[0]);
    return MPRPC_EINVAL;
  }
  if (strlen(tok[0]) >= MPRPC__REG_MAX_NAME || strchr(tok[0], '=') || strchr(tok[0], '/')) {
    snprintf(err, errlen, "bad service name '%.64s'", tok[0]);
    return MPRPC_EINVAL;
  }
  out->service = tok[0];
  /* The host is cut in place: "host:port" -> "host\0port"; brackets dropped. */
  char host[MPRPC__REG_MAX_HOST];
  uint16_t port;
  char e2[160];
  if (mprpc__reg_parse_hostport(tok[1], strlen(tok[1]), host, sizeof host, &port, e2,
                                sizeof e2)) {
    snprintf(err, errlen, "%s", e2);
    return MPRPC_EINVAL;
  }
  memcpy(tok[1], host, strlen(host) + 1); /* host is never longer than the token */
  out->host = tok[1];
  out->port = port;
  out->weight = MPRPC_DEFAULT_WEIGHT;
  for (size_t i = 2; i < nt; i++) {
    char *eq = strchr(tok[i], '=');
    if (!eq || eq == tok[i]) {
      snprintf(err, errlen, "expected key=value, got '%.64s'", tok[i]);
      return MPRPC_EINVAL;
    }
    *eq = '\0';
    const char *k = tok[i], *v = eq + 1;
    uint64_t n;
    if (strcmp(k, "weight") == 0) {
      if (parse_u64(v, MPRPC__REG_MAX_WEIGHT, &n) || n == 0) {
        snprintf(err, errlen, "bad weight '%.32s' (expected 1..%u)", v, MPRPC__REG_MAX_WEIGHT);
        return MPRPC_EINVAL;
      }
      out->weight = (uint32_t)n;
    } else if (strcmp(k, "methods") == 0) {
      out->methods = *v ? v : NULL;
    } else if (strcmp(k, "version") == 0) {
      out->version = *v ? v : NULL;
    } else if (strcmp(k, "group") == 0) {
      if (*v && !mprpc__group_valid(v)) {
        snprintf(err, errlen, "bad group '%.64s' (letters, digits, '_', '.', '-'; at most 64)", v);
        return MPRPC_EINVAL;
      }
      out->group = *v ? v : NULL;
    } else if (strcmp(k, "start_time_ms") == 0) {
      if (parse_u64(v, UINT64_MAX, &n)) {
        snprintf(err, errlen, "bad start_time_ms '%.32s'", v);
        return MPRPC_EINVAL;
      }
      out->start_time_ms = n;
    } else if (strcmp(k, "tls") == 0) {
      if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0) {
        snprintf(err, errlen, "bad tls '%.32s' (expected 0 or 1)", v);
        return MPRPC_EINVAL;
      }
      out->tls = v[0] == '1';
    } else if (strcmp(k, "pid") == 0) {
      if (parse_u64(v, INT32_MAX, &n) || n == 0) {
        snprintf(err, errlen, "bad pid '%.32s'", v);
        return MPRPC_EINVAL;
      }
      if (extra)
        extra->pid = (long)n;
    } else if (strcmp(k, "hostname") == 0) {
      if (extra)
        extra->hostname = v;
    } else {
      snprintf(err, errlen,
               "unknown key '%.32s' (known: weight, methods, version, group, start_time_ms, tls, "
               "pid, hostname)",
               k);
      return MPRPC_EINVAL;
    }
  }
  return 1;
}

int mprpc__reg_format_line(const mprpc_instance_t *inst, char *buf, size_t len) {
  return mprpc__reg_format_line_ex(inst, NULL, buf, len);
}

int mprpc__reg_format_line_ex(const mprpc_instance_t *inst, const mprpc__reg_line_extra_t *extra,
                              char *buf, size_t len) {
  char addr[MPRPC__REG_MAX_HOST + 16];
  mprpc__reg_format_hostport(inst->host, inst->port, addr, sizeof addr);
  int n = snprintf(buf, len, "%s %s weight=%" PRIu32, inst->service, addr,
                   inst->weight ? inst->weight : MPRPC_DEFAULT_WEIGHT);
  size_t used = n > 0 ? (size_t)n : 0;
#define APPEND(...)                                                                                \
  do {                                                                                             \
    int k_ = snprintf(used < len ? buf + used : NULL, used < len ? len - used : 0, __VA_ARGS__);   \
    if (k_ > 0)                                                                                    \
      used += (size_t)k_;                                                                          \
  } while (0)
  if (inst->methods && *inst->methods)
    APPEND(" methods=%s", inst->methods);
  if (inst->version && *inst->version)
    APPEND(" version=%s", inst->version);
  if (inst->group && *inst->group)
    APPEND(" group=%s", inst->group);
  if (inst->start_time_ms)
    APPEND(" start_time_ms=%" PRIu64, inst->start_time_ms);
  if (inst->tls)
    APPEND(" tls=1");
  if (extra && extra->pid > 0)
    APPEND(" pid=%ld", extra->pid);
  if (extra && extra->hostname && *extra->hostname)
    APPEND(" hostname=%s", extra->hostname);
  APPEND("\n");
#undef APPEND
  return (int)used;
}

int mprpc__reg_parse_text(const char *text, const char *what, mprpc__reg_list_t *l, char *err,
                          size_t errlen) {
  return mprpc__reg_parse_text_ex(text, what, l, NULL, err, errlen);
}

const char *mprpc__reg_hostname(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, fill_hostname);
  return hostname_buf;
}

int mprpc__reg_parse_text_ex(const char *text, const char *what, mprpc__reg_list_t *l,
                             long **local_pids, char *err, size_t errlen) {
  const char *p = text;
  size_t pcap = 0;
  if (local_pids)
    *local_pids = NULL;
  int lineno = 0;
  char *line = NULL;
  size_t linecap = 0;
  int rc = 0;
  while (*p) {
    lineno++;
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    if (n + 1 > linecap) {
      char *nb = realloc(line, n + 1);
      if (!nb) {
        rc = MPRPC_ENOMEM;
        break;
      }
      line = nb;
      linecap = n + 1;
    }
    memcpy(line, p, n);
    line[n] = '\0';
    if (n && line[n - 1] == '\r')
      line[n - 1] = '\0';
    mprpc_instance_t inst;
    mprpc__reg_line_extra_t extra;
    char e[200];
    int r = mprpc__reg_parse_line_ex(line, &inst, &extra, e, sizeof e);
    if (r < 0) {
      snprintf(err, errlen, "%s:%d: %s", what, lineno, e);
      rc = r;
      break;
    }
    if (r == 1 && local_pids) {
      if (l->n + 1 > pcap) {
        size_t nc = pcap ? pcap * 2 : 8;
        long *np = realloc(*local_pids, nc * sizeof *np);
        if (!np) {
          rc = MPRPC_ENOMEM;
          break;
        }
        *local_pids = np;
        pcap = nc;
      }
      bool local = extra.pid > 0 && extra.hostname &&
                   strcmp(extra.hostname, mprpc__reg_hostname()) == 0;
      (*local_pids)[l->n] = local ? extra.pid : 0;
    }
    if (r == 1 && (rc = mprpc__reg_list_add(l, &inst)) != 0)
      break;
    p = nl ? nl + 1 : p + n;
  }
  free(line);
  if (rc) {
    mprpc__reg_list_clear(l);
    if (local_pids) {
      free(*local_pids);
      *local_pids = NULL;
    }
  }
  return rc;
}

bool mprpc__reg_pid_dead(long pid) {
  return pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* --- files -------------------------------------------------------------- */

#define MAX_FILE_BYTES (16u << 20)

int mprpc__reg_read_file(const char *path, char **out, size_t *outlen) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? MPRPC_ENOENT : mprpc_err_from_errno(errno);
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  int rc = 0;
  if (!buf) {
    close(fd);
    return MPRPC_ENOMEM;
  }
  for (;;) {
    if (n + 1 >= cap) {
      if (cap >= MAX_FILE_BYTES) {
        rc = MPRPC_ETOOBIG;
        break;
      }
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        rc = MPRPC_ENOMEM;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t k = read(fd, buf + n, cap - n - 1);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      rc = mprpc_err_from_errno(errno);
      break;
    }
    if (k == 0)
      break;
    n += (size_t)k;
  }
  close(fd);
  if (rc) {
    free(buf);
    return rc;
  }
  buf[n] = '\0';
  *out = buf;
  if (outlen)
    *outlen = n;
  return 0;
}

int mprpc__reg_write_file_atomic(const char *path, const char *content, size_t len) {
  static atomic_uint counter;
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 64);
  if (!tmp)
    return MPRPC_ENOMEM;
  snprintf(tmp, plen + 64, "%s.tmp.%ld.%u", path, (long)getpid(),
           atomic_fetch_add(&counter, 1u));
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    int rc = mprpc_err_from_errno(errno);
    MPRPC_LOG_WARN("registry: open(%s): %s", tmp, strerror(errno));
    free(tmp);
    return rc;
  }
  int rc = 0;
  size_t off = 0;
  while (off < len) {
    ssize_t k = write(fd, content + off, len - off);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      rc = mprpc_err_from_errno(errno);
      MPRPC_LOG_WARN("registry: write(%s): %s", tmp, strerror(errno));
      break;
    }
    off += (size_t)k;
  }
  if (close(fd) != 0 && rc == 0)
    rc = mprpc_err_from_errno(errno);
  if (rc == 0 && rename(tmp, path) != 0) {
    rc = mprpc_err_from_errno(errno);
    MPRPC_LOG_WARN("registry: rename(%s, %s): %s", tmp, path, strerror(errno));
  }
  if (rc)
    unlink(tmp);
  free(tmp);
  return rc;
}

int mprpc__reg_opt_uint(const char *uri_kind, const char *key, const char *value, uint64_t lo,
                        uint64_t hi, uint64_t *out, char *err, size_t errlen) {
  uint64_t v;
  if (parse_u64(value, UINT64_MAX, &v) || v < lo || v > hi) {
    snprintf(err, errlen, "%s option %s=%s: expected an integer in %" PRIu64 "..%" PRIu64,
             uri_kind, key, value, lo, hi);
    return MPRPC_EINVAL;
  }
  *out = v;
  return 0;
}

/* --- subscribers -------------------------------------------------------- */

struct mprpc__reg_sub {
  atomic_int refs;
  atomic_bool cancelled;
  uint64_t id;
  char *service;
  mprpc_loop_t loop;
  mprpc_registry_watch_cb cb;
  void *ud;
  mprpc__reg_sub_t *next;
  /* table mutex: what was last handed to post (dedup) */
  mprpc__reg_list_t last;
  int last_health;
  bool have_last;
  /* own mutex: the delivery waiting for the loop */
  pthread_mutex_t mu;
  mprpc__reg_list_t pending;
  int pending_health;
  bool posted;
};

static void sub_unref(mprpc__reg_sub_t *sub) {
  if (atomic_fetch_sub(&sub->refs, 1) != 1)
    return;
  mprpc__reg_list_clear(&sub->last);
  mprpc__reg_list_clear(&sub->pending);
  pthread_mutex_destroy(&sub->mu);
  free(sub->service);
  free(sub);
}

static void sub_run(void *arg) {
  mprpc__reg_sub_t *sub = arg;
  pthread_mutex_lock(&sub->mu);
  mprpc__reg_list_t list = sub->pending;
  int health = sub->pending_health;
  memset(&sub->pending, 0, sizeof sub->pending);
  sub->posted = false;
  pthread_mutex_unlock(&sub->mu);
  if (!atomic_load(&sub->cancelled))
    sub->cb(sub->ud, list.items, list.n, health);
  mprpc__reg_list_clear(&list);
  sub_unref(sub);
}

int mprpc__reg_subs_init(mprpc__reg_subs_t *s) {
  memset(s, 0, sizeof *s);
  s->next_id = 1;
  return pthread_mutex_init(&s->mu, NULL) ? MPRPC_ENOMEM : 0;
}

void mprpc__reg_subs_destroy(mprpc__reg_subs_t *s) {
  pthread_mutex_lock(&s->mu);
  mprpc__reg_sub_t *sub = s->head;
  s->head = NULL;
  pthread_mutex_unlock(&s->mu);
  while (sub) {
    mprpc__reg_sub_t *next = sub->next;
    atomic_store(&sub->cancelled, true);
    sub_unref(sub);
    sub = next;
  }
  pthread_mutex_destroy(&s->mu);
}

int mprpc__reg_subs_add(mprpc__reg_subs_t *s, const char *service, mprpc_loop_t loop,
                        mprpc_registry_watch_cb cb, void *ud, uint64_t *id) {
  mprpc__reg_sub_t *sub = calloc(1, sizeof *sub);
  if (!sub)
    return MPRPC_ENOMEM;
  sub->service = strdup(service);
  if (!sub->service || pthread_mutex_init(&sub->mu, NULL)) {
    free(sub->service);
    free(sub);
    return MPRPC_ENOMEM;
  }
  atomic_init(&sub->refs, 1);
  atomic_init(&sub->cancelled, false);
  sub->loop = loop;
  sub->cb = cb;
  sub->ud = ud;
  pthread_mutex_lock(&s->mu);
  sub->id = s->next_id++;
  sub->next = s->head;
  s->head = sub;
  pthread_mutex_unlock(&s->mu);
  *id = sub->id;
  return 0;
}

void mprpc__reg_subs_remove(mprpc__reg_subs_t *s, uint64_t id) {
  pthread_mutex_lock(&s->mu);
  mprpc__reg_sub_t **pp = &s->head, *sub = NULL;
  for (; *pp; pp = &(*pp)->next) {
    if ((*pp)->id == id) {
      sub = *pp;
      *pp = sub->next;
      break;
    }
  }
  pthread_mutex_unlock(&s->mu);
  if (sub) {
    atomic_store(&sub->cancelled, true);
    sub_unref(sub);
  }
}

/* Table mutex held. */
static void sub_deliver(mprpc__reg_sub_t *sub, const mprpc__reg_list_t *list, bool filter,
                        int health) {
  mprpc__reg_list_t mine = {0};
  if (mprpc__reg_list_filter(&mine, list, filter ? sub->service : NULL)) {
    MPRPC_LOG_ERROR("registry: out of memory delivering %s", sub->service);
    return;
  }
  mprpc__reg_list_sort(&mine);
  if (sub->have_last && sub->last_health == health && mprpc__reg_list_equal(&sub->last, &mine)) {
    mprpc__reg_list_clear(&mine);
    return;
  }
  mprpc__reg_list_t copy = {0};
  if (mprpc__reg_list_copy(&copy, &mine)) {
    mprpc__reg_list_clear(&mine);
    MPRPC_LOG_ERROR("registry: out of memory delivering %s", sub->service);
    return;
  }
  mprpc__reg_list_clear(&sub->last);
  sub->last = mine;
  sub->last_health = health;
  sub->have_last = true;

  pthread_mutex_lock(&sub->mu);
  mprpc__reg_list_clear(&sub->pending);
  sub->pending = copy;
  sub->pending_health = health;
  if (!sub->posted) {
    sub->posted = true;
    atomic_fetch_add(&sub->refs, 1);
    int rc = mprpc_loop_post(sub->loop, sub_run, sub);
    if (rc) {
      sub->posted = false;
      mprpc__reg_list_clear(&sub->pending);
      atomic_fetch_sub(&sub->refs, 1); /* the table still holds one */
      sub->have_last = false;
      MPRPC_LOG_WARN("registry: cannot post the %s list to the subscriber's loop: %s",
                     sub->service, mprpc_strerror(rc));
    }
  }
  pthread_mutex_unlock(&sub->mu);
}

void mprpc__reg_subs_deliver(mprpc__reg_subs_t *s, const char *service,
                             const mprpc__reg_list_t *list, bool filter, int health) {
  pthread_mutex_lock(&s->mu);
  for (mprpc__reg_sub_t *sub = s->head; sub; sub = sub->next)
    if (!service || strcmp(sub->service, service) == 0)
      sub_deliver(sub, list, filter, health);
  pthread_mutex_unlock(&s->mu);
}

void mprpc__reg_subs_deliver_one(mprpc__reg_subs_t *s, uint64_t id, const mprpc__reg_list_t *list,
                                 bool filter, int health) {
  pthread_mutex_lock(&s->mu);
  for (mprpc__reg_sub_t *sub = s->head; sub; sub = sub->next)
    if (sub->id == id)
      sub_deliver(sub, list, filter, health);
  pthread_mutex_unlock(&s->mu);
}

void mprpc_registry_names_free(char **names, size_t n) {
  for (size_t i = 0; names && i < n; i++)
    free(names[i]);
  free(names);
}
