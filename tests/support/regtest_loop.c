/* See regtest_loop.h. */
#include "regtest_loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct post_item {
  mprpc_post_cb fn;
  void *arg;
  struct post_item *next;
} post_item_t;

struct regtest_loop {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  post_item_t *head, *tail;
  bool stop;
  pthread_t thread;
};

long long regtest_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t l_now(void *ctx) {
  (void)ctx;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * MPRPC_NS_PER_S + (uint64_t)ts.tv_nsec;
}
static uint64_t l_wall(void *ctx) {
  (void)ctx;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * MPRPC_NS_PER_S + (uint64_t)ts.tv_nsec;
}
static uint64_t l_timer_start(void *ctx, uint64_t d, mprpc_timer_cb cb, void *arg) {
  (void)ctx, (void)d, (void)cb, (void)arg;
  return 0;
}
static void l_timer_cancel(void *ctx, uint64_t id) { (void)ctx, (void)id; }
static int l_post(void *ctx, mprpc_post_cb fn, void *arg) {
  regtest_loop_t *l = ctx;
  post_item_t *it = malloc(sizeof *it);
  if (!it)
    return -12;
  it->fn = fn;
  it->arg = arg;
  it->next = NULL;
  pthread_mutex_lock(&l->mu);
  if (l->stop) {
    pthread_mutex_unlock(&l->mu);
    free(it);
    return -3013; /* MPRPC_ESTATE */
  }
  if (l->tail)
    l->tail->next = it;
  else
    l->head = it;
  l->tail = it;
  pthread_cond_signal(&l->cv);
  pthread_mutex_unlock(&l->mu);
  return 0;
}
static bool l_in_loop(void *ctx) {
  regtest_loop_t *l = ctx;
  return pthread_equal(pthread_self(), l->thread);
}
static mprpc_rand_t l_rand(void *ctx) {
  (void)ctx;
  mprpc_rand_t r = {0};
  return r;
}

static const mprpc_loop_ops_t ops = {
    .now_ns = l_now,
    .wall_ns = l_wall,
    .timer_start = l_timer_start,
    .timer_cancel = l_timer_cancel,
    .post = l_post,
    .in_loop = l_in_loop,
    .rand = l_rand,
};

static void *run(void *arg) {
  regtest_loop_t *l = arg;
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->head && !l->stop)
      pthread_cond_wait(&l->cv, &l->mu);
    if (!l->head && l->stop)
      break;
    post_item_t *it = l->head;
    l->head = it->next;
    if (!l->head)
      l->tail = NULL;
    pthread_mutex_unlock(&l->mu);
    it->fn(it->arg);
    free(it);
    pthread_mutex_lock(&l->mu);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

regtest_loop_t *regtest_loop_new(void) {
  regtest_loop_t *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv, NULL);
  if (pthread_create(&l->thread, NULL, run, l)) {
    free(l);
    return NULL;
  }
  return l;
}

mprpc_loop_t regtest_loop(regtest_loop_t *l) {
  mprpc_loop_t r = {&ops, l};
  return r;
}

typedef struct sync_call {
  mprpc_post_cb fn;
  void *arg;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
} sync_call_t;

static void sync_tramp(void *arg) {
  sync_call_t *c = arg;
  c->fn(c->arg);
  pthread_mutex_lock(&c->mu);
  c->done = true;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

void regtest_loop_run(regtest_loop_t *l, mprpc_post_cb fn, void *arg) {
  sync_call_t c = {.fn = fn, .arg = arg};
  pthread_mutex_init(&c.mu, NULL);
  pthread_cond_init(&c.cv, NULL);
  if (l_post(l, sync_tramp, &c) == 0) {
    pthread_mutex_lock(&c.mu);
    while (!c.done)
      pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
  }
  pthread_mutex_destroy(&c.mu);
  pthread_cond_destroy(&c.cv);
}

void regtest_loop_free(regtest_loop_t *l) {
  if (!l)
    return;
  pthread_mutex_lock(&l->mu);
  l->stop = true;
  pthread_cond_signal(&l->cv);
  pthread_mutex_unlock(&l->mu);
  pthread_join(l->thread, NULL);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
  free(l);
}

void regtest_watch_init(regtest_watch_t *w, regtest_loop_t *loop) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->health = -1;
  w->loop = loop;
}

void regtest_watch_destroy(regtest_watch_t *w) {
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void join_sorted(char **s, size_t n, char *out, size_t outlen) {
  qsort(s, n, sizeof *s, cmp_str);
  out[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (i)
      strncat(out, ",", outlen - strlen(out) - 1);
    strncat(out, s[i], outlen - strlen(out) - 1);
  }
}

void regtest_watch_cb(void *ud, const mprpc_instance_t *items, size_t n, int health) {
  regtest_watch_t *w = ud;
  char **s = calloc(n ? n : 1, sizeof *s), **ws = calloc(n ? n : 1, sizeof *ws);
  for (size_t i = 0; i < n; i++) {
    s[i] = malloc(300);
    ws[i] = malloc(320);
    snprintf(s[i], 300, "%s:%u", items[i].host, (unsigned)items[i].port);
    snprintf(ws[i], 320, "%s:%u*%u", items[i].host, (unsigned)items[i].port,
             (unsigned)items[i].weight);
  }
  pthread_mutex_lock(&w->mu);
  join_sorted(s, n, w->list, sizeof w->list);
  join_sorted(ws, n, w->wlist, sizeof w->wlist);
  for (size_t i = 0; i < n; i++) {
    free(s[i]);
    free(ws[i]);
  }
  free(s);
  free(ws);
  w->health = health;
  w->deliveries++;
  if (w->loop && !l_in_loop(w->loop))
    w->wrong_thread = true;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static bool wait_until(regtest_watch_t *w, const char *want, int health, int not_health,
                       int timeout_ms) {
  long long deadline = regtest_now_ms() + timeout_ms;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    bool ok;
    if (want)
      ok = w->deliveries > 0 && strcmp(w->list, want) == 0 && (health < 0 || w->health == health);
    else
      ok = w->deliveries > 0 && w->health != not_health;
    if (ok) {
      pthread_mutex_unlock(&w->mu);
      return true;
    }
    long long now = regtest_now_ms();
    if (now >= deadline)
      break;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long left = deadline - now < 100 ? deadline - now : 100;
    ts.tv_nsec += (long)(left * 1000000);
    ts.tv_sec += ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
  }
  fprintf(stderr, "regtest: timed out waiting; have list='%s' health=%d deliveries=%d\n", w->list,
          w->health, w->deliveries);
  pthread_mutex_unlock(&w->mu);
  return false;
}

bool regtest_watch_wait(regtest_watch_t *w, const char *want, int health, int timeout_ms) {
  return wait_until(w, want, health, 0, timeout_ms);
}

bool regtest_watch_wait_weights(regtest_watch_t *w, const char *want, int timeout_ms) {
  long long deadline = regtest_now_ms() + timeout_ms;
  pthread_mutex_lock(&w->mu);
  while (strcmp(w->wlist, want) != 0 && regtest_now_ms() < deadline) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000;
    ts.tv_sec += ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
  }
  bool ok = strcmp(w->wlist, want) == 0;
  if (!ok)
    fprintf(stderr, "regtest: timed out waiting for '%s'; have '%s'\n", want, w->wlist);
  pthread_mutex_unlock(&w->mu);
  return ok;
}

bool regtest_watch_wait_health_not(regtest_watch_t *w, int not_health, int timeout_ms) {
  return wait_until(w, NULL, 0, not_health, timeout_ms);
}

typedef struct unsub_args {
  mprpc_registry_t r;
  uint64_t id;
} unsub_args_t;

static void do_unsub(void *arg) {
  unsub_args_t *a = arg;
  mprpc_registry_unsubscribe(a->r, a->id);
}

void regtest_unsubscribe(regtest_loop_t *l, mprpc_registry_t r, uint64_t id) {
  unsub_args_t a = {r, id};
  regtest_loop_run(l, do_unsub, &a);
}

void regtest_cfg_init(regtest_cfg_t *c, regtest_loop_t *loop) {
  memset(c, 0, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
  pthread_cond_init(&c->cv, NULL);
  c->loop = loop;
}

void regtest_cfg_destroy(regtest_cfg_t *c) {
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
}

void regtest_cfg_cb(void *ud, const char *name, const char *text, size_t len) {
  regtest_cfg_t *c = ud;
  pthread_mutex_lock(&c->mu);
  if (c->loop && !l_in_loop(c->loop))
    c->wrong_thread = true;
  c->present = text != NULL;
  snprintf(c->text, sizeof c->text, "%.*s", (int)len, text ? text : "");
  snprintf(c->name, sizeof c->name, "%s", name);
  c->deliveries++;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static bool cfg_matches(const regtest_cfg_t *c, const char *want) {
  if (!want)
    return c->deliveries > 0 && !c->present;
  return c->present && strcmp(c->text, want) == 0;
}

bool regtest_cfg_wait(regtest_cfg_t *c, const char *want, int timeout_ms) {
  long long deadline = regtest_now_ms() + timeout_ms;
  pthread_mutex_lock(&c->mu);
  while (!cfg_matches(c, want) && regtest_now_ms() < deadline) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20 * 1000000;
    ts.tv_sec += ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_cond_timedwait(&c->cv, &c->mu, &ts);
  }
  bool ok = cfg_matches(c, want);
  if (!ok)
    fprintf(stderr, "regtest_cfg_wait: want %s%s%s, have %s'%s' after %d deliveries\n",
            want ? "'" : "", want ? want : "absent", want ? "'" : "",
            c->present ? "" : "(absent) ", c->text, c->deliveries);
  pthread_mutex_unlock(&c->mu);
  return ok;
}

typedef struct unwatch_arg {
  mprpc_registry_t r;
  uint64_t id;
} unwatch_arg_t;

static void do_unwatch(void *arg) {
  unwatch_arg_t *u = arg;
  mprpc_registry_unwatch_config(u->r, u->id);
}

void regtest_unwatch_config(regtest_loop_t *l, mprpc_registry_t r, uint64_t id) {
  unwatch_arg_t u = {r, id};
  regtest_loop_run(l, do_unwatch, &u);
}
