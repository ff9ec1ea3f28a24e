/*
 * The simulator's world: one discrete-event scheduler on virtual time, the
 * world PRNG, the trace hash, and the virtual loops that sit on top.
 *
 * Events live in src/core/timerq (ordered by time, then insertion); each
 * carries a small record (callback, kind, id) from a free-list pool so the
 * trace can hash what fired without an allocation per event.
 */
#include "sim.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/timerq.h"
#include "mprpc/errors.h"

unsigned mprpc__sim_bug;

typedef struct sim_ev {
  mprpc_timer_cb cb;
  void *arg;
  uint32_t kind;
  uint64_t id;
  mprpc_sim_loop_t *owner; /* the loop that runs it (NULL: the world) */
  struct sim_ev *next_free;
} sim_ev_t;

#define EV_BLOCK 512

typedef struct ev_block {
  struct ev_block *next;
  sim_ev_t evs[EV_BLOCK];
} ev_block_t;

struct mprpc_sim_world {
  mprpc__timerq_t q;
  uint64_t now;
  uint64_t seed;
  uint64_t derive_state;
  mprpc_xoshiro_t x;
  uint64_t hash;
  uint64_t events_run;
  FILE *trace;
  sim_ev_t *free_evs;
  ev_block_t *blocks;
  mprpc_sim_loop_t *running; /* owner of the event being run */
};

/* A loop is one thread: while a callback on it holds it (a blocking
 * handler, mprpc_sim_loop_hold), its clock runs on and every other event
 * of that loop waits until the hold ends, in its order. */
struct mprpc_sim_loop {
  mprpc_sim_world_t *w;
  int host;
  bool stopped;
  mprpc_xoshiro_t x;
  uint64_t held_ns;    /* held by the callback now running */
  uint64_t busy_until; /* events of this loop wait until then */
};

static const char *const kind_names[MPRPC_SIM_EV__COUNT] = {
    [MPRPC_SIM_EV_TIMER] = "timer",         [MPRPC_SIM_EV_POST] = "post",
    [MPRPC_SIM_EV_NET_PUMP] = "net.pump",   [MPRPC_SIM_EV_NET_DELIVER] = "net.deliver",
    [MPRPC_SIM_EV_NET_SYN] = "net.syn",     [MPRPC_SIM_EV_NET_CLOSE] = "net.close",
    [MPRPC_SIM_EV_NET_RST] = "net.rst",     [MPRPC_SIM_EV_NET_CONNTMO] = "net.conn_timeout",
    [MPRPC_SIM_EV_REG_TICK] = "reg.tick",   [MPRPC_SIM_EV_REG_WATCH] = "reg.watch",
    [MPRPC_SIM_EV_REG_OP] = "reg.op",       [MPRPC_SIM_EV_SCEN] = "scenario",
    [MPRPC_SIM_EV_NOTE] = "note",
};

const char *mprpc_sim_kind_name(int kind) {
  if (kind <= 0 || kind >= MPRPC_SIM_EV__COUNT || !kind_names[kind])
    return "?";
  return kind_names[kind];
}

/* FNV-1a style, a word at a time (byte-wise FNV cost 10% of a run). */
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static void hash_u64(uint64_t *h, uint64_t v) {
  *h ^= v;
  *h *= FNV_PRIME;
  *h ^= *h >> 29;
}

static void hash_str(uint64_t *h, const char *s) {
  for (; *s; s++) {
    *h ^= (uint8_t)*s;
    *h *= FNV_PRIME;
  }
  *h ^= 0;
  *h *= FNV_PRIME;
}

mprpc_sim_world_t *mprpc_sim_world_new(uint64_t seed) {
  mprpc_sim_world_t *w = calloc(1, sizeof *w);
  if (!w)
    return NULL;
  mprpc__timerq_init(&w->q);
  w->seed = seed;
  w->derive_state = seed ^ 0x5deece66dull;
  mprpc_xoshiro_seed(&w->x, seed);
  w->hash = FNV_OFFSET;
  hash_u64(&w->hash, seed);
  return w;
}

void mprpc_sim_world_free(mprpc_sim_world_t *w) {
  if (!w)
    return;
  mprpc__timerq_free(&w->q);
  ev_block_t *b = w->blocks;
  while (b) {
    ev_block_t *next = b->next;
    free(b);
    b = next;
  }
  free(w);
}

uint64_t mprpc_sim_now(const mprpc_sim_world_t *w) { return w->now; }
uint64_t mprpc_sim_seed(const mprpc_sim_world_t *w) { return w->seed; }
mprpc_rand_t mprpc_sim_rand(mprpc_sim_world_t *w) { return mprpc_rand_xoshiro(&w->x); }

uint64_t mprpc_sim_rand_range(mprpc_sim_world_t *w, uint64_t lo, uint64_t hi) {
  if (hi <= lo)
    return lo;
  uint64_t span = hi - lo + 1;
  if (span == 0) /* full 64-bit range */
    return mprpc_xoshiro_next(&w->x);
  return lo + mprpc_rand_below(mprpc_rand_xoshiro(&w->x), span);
}

bool mprpc_sim_chance(mprpc_sim_world_t *w, double p) {
  if (p <= 0)
    return false;
  return mprpc_rand_double(mprpc_rand_xoshiro(&w->x)) < p;
}

uint64_t mprpc_sim_derive_seed(mprpc_sim_world_t *w) { return mprpc_splitmix64(&w->derive_state); }

static sim_ev_t *ev_alloc(mprpc_sim_world_t *w) {
  if (!w->free_evs) {
    ev_block_t *b = malloc(sizeof *b);
    if (!b)
      return NULL;
    b->next = w->blocks;
    w->blocks = b;
    for (int i = EV_BLOCK - 1; i >= 0; i--) {
      b->evs[i].next_free = w->free_evs;
      w->free_evs = &b->evs[i];
    }
  }
  sim_ev_t *e = w->free_evs;
  w->free_evs = e->next_free;
  return e;
}

static void ev_release(mprpc_sim_world_t *w, sim_ev_t *e) {
  e->next_free = w->free_evs;
  w->free_evs = e;
}

/* Never called: events are popped with pop_due and dispatched by step(). */
static void ev_dummy(void *arg) { (void)arg; }

uint64_t mprpc_sim_at_on(mprpc_sim_world_t *w, mprpc_sim_loop_t *owner, uint64_t delay_ns, int kind,
                         uint64_t id, mprpc_timer_cb cb, void *arg) {
  sim_ev_t *e = ev_alloc(w);
  if (!e)
    return 0;
  e->cb = cb;
  e->arg = arg;
  e->kind = (uint32_t)kind;
  e->id = id;
  e->owner = owner;
  uint64_t deadline = w->now + delay_ns;
  if (deadline < w->now)
    deadline = UINT64_MAX;
  uint64_t tid = mprpc__timerq_add(&w->q, deadline, ev_dummy, e);
  if (!tid) {
    ev_release(w, e);
    return 0;
  }
  return tid;
}

uint64_t mprpc_sim_at(mprpc_sim_world_t *w, uint64_t delay_ns, int kind, uint64_t id,
                      mprpc_timer_cb cb, void *arg) {
  return mprpc_sim_at_on(w, NULL, delay_ns, kind, id, cb, arg);
}

bool mprpc_sim_cancel(mprpc_sim_world_t *w, uint64_t ev) {
  uint32_t slot = (uint32_t)(ev & 0xffffffffu);
  if (slot == 0 || slot > w->q.nslots)
    return false;
  sim_ev_t *e = w->q.slots[slot - 1].arg;
  if (!mprpc__timerq_cancel(&w->q, ev))
    return false;
  ev_release(w, e);
  return true;
}

bool mprpc_sim_step(mprpc_sim_world_t *w) {
  uint64_t t;
  if (!mprpc__timerq_peek(&w->q, &t))
    return false;
  if (t > w->now)
    w->now = t;
  /* An event of a held loop waits until the hold ends, keeping its id (so
   * the code can still cancel it), behind everything already waiting. */
  const sim_ev_t *top = mprpc__timerq_top_arg(&w->q);
  if (top->owner && top->owner->busy_until > w->now) {
    mprpc__timerq_defer_top(&w->q, top->owner->busy_until);
    return true;
  }
  mprpc_timer_cb dummy;
  void *arg;
  if (!mprpc__timerq_pop_due(&w->q, w->now, &dummy, &arg))
    return false;
  sim_ev_t *e = arg;
  mprpc_sim_loop_t *owner = e->owner;
  mprpc_timer_cb cb = e->cb;
  void *cb_arg = e->arg;
  uint32_t kind = e->kind;
  uint64_t id = e->id;
  ev_release(w, e);
  hash_u64(&w->hash, w->now);
  hash_u64(&w->hash, kind);
  hash_u64(&w->hash, id);
  w->events_run++;
  if (w->trace)
    fprintf(w->trace, "%llu.%09llu %s %llu\n", (unsigned long long)(w->now / MPRPC_NS_PER_S),
            (unsigned long long)(w->now % MPRPC_NS_PER_S), mprpc_sim_kind_name((int)kind),
            (unsigned long long)id);
  w->running = owner;
  cb(cb_arg);
  w->running = NULL;
  if (owner && owner->held_ns) {
    owner->busy_until = w->now + owner->held_ns;
    owner->held_ns = 0;
  }
  return true;
}

void mprpc_sim_run_until(mprpc_sim_world_t *w, uint64_t t) {
  uint64_t next;
  while (mprpc__timerq_peek(&w->q, &next) && next <= t)
    mprpc_sim_step(w);
  if (t > w->now)
    w->now = t;
}

uint64_t mprpc_sim_run_idle(mprpc_sim_world_t *w, uint64_t max_events) {
  uint64_t n = 0;
  while (n < max_events && mprpc_sim_step(w))
    n++;
  return n;
}

size_t mprpc_sim_pending(const mprpc_sim_world_t *w) { return mprpc__timerq_len(&w->q); }
uint64_t mprpc_sim_events_run(const mprpc_sim_world_t *w) { return w->events_run; }
uint64_t mprpc_sim_trace_hash(const mprpc_sim_world_t *w) { return w->hash; }
void mprpc_sim_set_trace(mprpc_sim_world_t *w, FILE *f) { w->trace = f; }
bool mprpc_sim_tracing(const mprpc_sim_world_t *w) { return w->trace != NULL; }

void mprpc_sim_note(mprpc_sim_world_t *w, const char *tag, uint64_t a, uint64_t b) {
  hash_u64(&w->hash, w->now);
  hash_u64(&w->hash, MPRPC_SIM_EV_NOTE);
  hash_str(&w->hash, tag);
  hash_u64(&w->hash, a);
  hash_u64(&w->hash, b);
  if (w->trace)
    fprintf(w->trace, "%llu.%09llu note %s %llu %llu\n",
            (unsigned long long)(w->now / MPRPC_NS_PER_S),
            (unsigned long long)(w->now % MPRPC_NS_PER_S), tag, (unsigned long long)a,
            (unsigned long long)b);
}

void mprpc_sim_tracef(mprpc_sim_world_t *w, const char *fmt, ...) {
  if (!w->trace)
    return;
  fprintf(w->trace, "%llu.%09llu ", (unsigned long long)(w->now / MPRPC_NS_PER_S),
          (unsigned long long)(w->now % MPRPC_NS_PER_S));
  va_list ap;
  va_start(ap, fmt);
  vfprintf(w->trace, fmt, ap);
  va_end(ap);
  fputc('\n', w->trace);
}

/* ---- virtual loops -------------------------------------------------------- */

static uint64_t loop_now(void *ctx) {
  mprpc_sim_loop_t *l = ctx;
  return l->w->now + l->held_ns;
}

static uint64_t loop_wall(void *ctx) {
  mprpc_sim_loop_t *l = ctx;
  return MPRPC_SIM_EPOCH_NS + l->w->now + l->held_ns;
}

static uint64_t loop_timer_start(void *ctx, uint64_t delay_ns, mprpc_timer_cb cb, void *arg) {
  mprpc_sim_loop_t *l = ctx;
  if (l->stopped)
    return 0;
  return mprpc_sim_at_on(l->w, l, delay_ns, MPRPC_SIM_EV_TIMER, (uint64_t)l->host, cb, arg);
}

static void loop_timer_cancel(void *ctx, uint64_t id) {
  mprpc_sim_loop_t *l = ctx;
  mprpc_sim_cancel(l->w, id);
}

static int loop_post(void *ctx, mprpc_post_cb fn, void *arg) {
  mprpc_sim_loop_t *l = ctx;
  if (l->stopped)
    return MPRPC_ESTATE;
  return mprpc_sim_at_on(l->w, l, 0, MPRPC_SIM_EV_POST, (uint64_t)l->host, fn, arg) ? 0
                                                                             : MPRPC_ENOMEM;
}

static bool loop_in_loop(void *ctx) {
  (void)ctx;
  return true;
}

static mprpc_rand_t loop_rand(void *ctx) {
  mprpc_sim_loop_t *l = ctx;
  return mprpc_rand_xoshiro(&l->x);
}

static const mprpc_loop_ops_t sim_loop_ops = {
    .now_ns = loop_now,
    .wall_ns = loop_wall,
    .timer_start = loop_timer_start,
    .timer_cancel = loop_timer_cancel,
    .post = loop_post,
    .in_loop = loop_in_loop,
    .rand = loop_rand,
};

mprpc_sim_loop_t *mprpc_sim_loop_new(mprpc_sim_world_t *w, int host) {
  mprpc_sim_loop_t *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  l->w = w;
  l->host = host;
  mprpc_xoshiro_seed(&l->x, mprpc_sim_derive_seed(w));
  return l;
}

void mprpc_sim_loop_free(mprpc_sim_loop_t *l) { free(l); }

mprpc_loop_t mprpc_sim_loop(mprpc_sim_loop_t *l) {
  return (mprpc_loop_t){.vt = &sim_loop_ops, .ctx = l};
}

mprpc_sim_loop_t *mprpc_sim_loop_from(mprpc_loop_t l) {
  return l.vt == &sim_loop_ops ? l.ctx : NULL;
}

int mprpc_sim_loop_host(const mprpc_sim_loop_t *l) { return l->host; }
mprpc_sim_world_t *mprpc_sim_loop_world(const mprpc_sim_loop_t *l) { return l->w; }
void mprpc_sim_loop_stop(mprpc_sim_loop_t *l, bool stopped) { l->stopped = stopped; }

mprpc_sim_loop_t *mprpc_sim_running_loop(const mprpc_sim_world_t *w) { return w->running; }

void mprpc_sim_loop_hold(mprpc_sim_loop_t *l, uint64_t ns) { l->held_ns += ns; }

bool mprpc_sim_loop_busy(const mprpc_sim_loop_t *l) {
  return l->held_ns > 0 || l->busy_until > l->w->now;
}
