/*
 * Config-node watchers shared by the production registries (file, zk), and
 * the config directory format (one file per node) used by file:// and by the
 * ZooKeeper registry's cache. See internal.h.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "registry/internal.h"

typedef struct text {
  bool present;
  char *p; /* NUL-terminated when present */
  size_t n;
} text_t;

struct mprpc__reg_cfgw {
  atomic_int refs;
  atomic_bool cancelled;
  uint64_t id;
  char *name;
  mprpc_loop_t loop;
  mprpc_registry_config_cb cb;
  void *ud;
  mprpc__reg_cfgw_t *next;
  text_t last; /* table mutex: what was last handed to post */
  /* own mutex: the delivery waiting for the loop */
  pthread_mutex_t mu;
  text_t pending;
  bool posted;
};

static void text_clear(text_t *t) {
  free(t->p);
  memset(t, 0, sizeof *t);
}

static int text_set(text_t *t, const char *s, size_t n) {
  text_clear(t);
  if (!s)
    return 0;
  t->p = malloc(n + 1);
  if (!t->p)
    return MPRPC_ENOMEM;
  memcpy(t->p, s, n);
  t->p[n] = '\0';
  t->n = n;
  t->present = true;
  return 0;
}

static bool text_equal(const text_t *t, const char *s, size_t n) {
  if (!s)
    return !t->present;
  return t->present && t->n == n && memcmp(t->p, s, n) == 0;
}

static void cfgw_unref(mprpc__reg_cfgw_t *w) {
  if (atomic_fetch_sub(&w->refs, 1) != 1)
    return;
  text_clear(&w->last);
  text_clear(&w->pending);
  pthread_mutex_destroy(&w->mu);
  free(w->name);
  free(w);
}

static void cfgw_run(void *arg) {
  mprpc__reg_cfgw_t *w = arg;
  pthread_mutex_lock(&w->mu);
  text_t t = w->pending;
  memset(&w->pending, 0, sizeof w->pending);
  w->posted = false;
  pthread_mutex_unlock(&w->mu);
  if (!atomic_load(&w->cancelled))
    w->cb(w->ud, w->name, t.present ? t.p : NULL, t.present ? t.n : 0);
  text_clear(&t);
  cfgw_unref(w);
}

int mprpc__reg_cfgws_init(mprpc__reg_cfgws_t *s) {
  memset(s, 0, sizeof *s);
  s->next_id = 1;
  return pthread_mutex_init(&s->mu, NULL) ? MPRPC_ENOMEM : 0;
}

void mprpc__reg_cfgws_destroy(mprpc__reg_cfgws_t *s) {
  pthread_mutex_lock(&s->mu);
  mprpc__reg_cfgw_t *w = s->head;
  s->head = NULL;
  pthread_mutex_unlock(&s->mu);
  while (w) {
    mprpc__reg_cfgw_t *next = w->next;
    atomic_store(&w->cancelled, true);
    cfgw_unref(w);
    w = next;
  }
  pthread_mutex_destroy(&s->mu);
}

int mprpc__reg_cfgws_add(mprpc__reg_cfgws_t *s, const char *name, mprpc_loop_t loop,
                         mprpc_registry_config_cb cb, void *ud, uint64_t *id) {
  mprpc__reg_cfgw_t *w = calloc(1, sizeof *w);
  if (!w)
    return MPRPC_ENOMEM;
  w->name = strdup(name);
  if (!w->name || pthread_mutex_init(&w->mu, NULL)) {
    free(w->name);
    free(w);
    return MPRPC_ENOMEM;
  }
  atomic_init(&w->refs, 1);
  atomic_init(&w->cancelled, false);
  w->loop = loop;
  w->cb = cb;
  w->ud = ud;
  pthread_mutex_lock(&s->mu);
  w->id = s->next_id++;
  w->next = s->head;
  s->head = w;
  pthread_mutex_unlock(&s->mu);
  *id = w->id;
  return 0;
}

void mprpc__reg_cfgws_remove(mprpc__reg_cfgws_t *s, uint64_t id) {
  pthread_mutex_lock(&s->mu);
  mprpc__reg_cfgw_t **pp = &s->head, *w = NULL;
  for (; *pp; pp = &(*pp)->next) {
    if ((*pp)->id == id) {
      w = *pp;
      *pp = w->next;
      break;
    }
  }
  pthread_mutex_unlock(&s->mu);
  if (w) {
    atomic_store(&w->cancelled, true);
    cfgw_unref(w);
  }
}

/* Table mutex held. */
static void cfgw_deliver(mprpc__reg_cfgw_t *w, const char *text, size_t len) {
  if (text_equal(&w->last, text, len))
    return;
  text_t copy = {0};
  if (text_set(&copy, text, len) || text_set(&w->last, text, len)) {
    text_clear(&copy);
    text_clear(&w->last);
    MPRPC_LOG_ERROR("registry: out of memory delivering config %s", w->name);
    return;
  }
  pthread_mutex_lock(&w->mu);
  text_clear(&w->pending);
  w->pending = copy;
  if (!w->posted) {
    w->posted = true;
    atomic_fetch_add(&w->refs, 1);
    int rc = mprpc_loop_post(w->loop, cfgw_run, w);
    if (rc) {
      w->posted = false;
      text_clear(&w->pending);
      atomic_fetch_sub(&w->refs, 1);
      text_clear(&w->last); /* not delivered: the next delivery must not be deduplicated */
      MPRPC_LOG_WARN("registry: cannot post config %s to the watcher's loop: %s", w->name,
                     mprpc_strerror(rc));
    }
  }
  pthread_mutex_unlock(&w->mu);
}

void mprpc__reg_cfgws_deliver(mprpc__reg_cfgws_t *s, const char *name, uint64_t id,
                              const char *text, size_t len) {
  pthread_mutex_lock(&s->mu);
  for (mprpc__reg_cfgw_t *w = s->head; w; w = w->next)
    if (id ? w->id == id : strcmp(w->name, name) == 0)
      cfgw_deliver(w, text, len);
  pthread_mutex_unlock(&s->mu);
}

bool mprpc__reg_config_name_ok(const char *name) {
  if (!name || !*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    return false;
  size_t n = strlen(name);
  if (n >= MPRPC__REG_MAX_NAME)
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c <= 0x20 || c == 0x7f || c == '/')
      return false;
  }
  return true;
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s/%s", dir, name);
  return p;
}

int mprpc__reg_config_read(const char *dir, const char *name, char **text, size_t *len) {
  *text = NULL;
  *len = 0;
  char *path = join(dir, name);
  if (!path)
    return MPRPC_ENOMEM;
  struct stat st;
  int rc;
  if (stat(path, &st) != 0)
    rc = errno == ENOENT || errno == ENOTDIR ? MPRPC_ENOENT : mprpc_err_from_errno(errno);
  else if (!S_ISREG(st.st_mode))
    rc = MPRPC_ENOENT;
  else if ((uint64_t)st.st_size > MPRPC_REGISTRY_CONFIG_MAX)
    rc = MPRPC_ETOOBIG;
  else
    rc = mprpc__reg_read_file(path, text, len);
  if (rc == 0 && *len > MPRPC_REGISTRY_CONFIG_MAX) {
    free(*text);
    *text = NULL;
    rc = MPRPC_ETOOBIG;
  }
  free(path);
  return rc;
}

int mprpc__reg_config_write(const char *dir, const char *name, const char *text, size_t len) {
  char *path = join(dir, name);
  if (!path)
    return MPRPC_ENOMEM;
  int rc = 0;
  if (!text) {
    if (unlink(path) != 0 && errno != ENOENT)
      rc = mprpc_err_from_errno(errno);
  } else {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
      rc = mprpc_err_from_errno(errno);
    if (rc == 0)
      rc = mprpc__reg_write_file_atomic(path, text, len);
  }
  free(path);
  return rc;
}
