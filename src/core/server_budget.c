/*
 * Provider limits against hostile or broken clients (docs/server.md,
 * "Limits and refusals"):
 *
 * - The memory budget (max_buffered_bytes): request bytes received and not
 *   yet handed to a handler (a connection's rbuf at the end of on_data)
 *   plus response bytes written since the connection's backlog was last
 *   known empty, summed over every connection in one atomic counter. Bytes
 *   actually buffered are counted, never declared sizes. Past the budget a
 *   connection holding PAUSE_FLOOR bytes or more has its reads paused
 *   (the transport's set_reading: TCP flow control pushes back); past
 *   budget + budget/16 a connection holding part of a frame of 4 KiB or
 *   more, or one older than a second, is. A
 *   connection's rbuf counts its length, or its capacity once it grew past
 *   64 KiB (what a big partial frame really costs), twice that once less
 *   than a read pass (256 KiB) of room is left, since the next read
 *   doubles it: memory never runs ahead of the count. Each loop with
 *   paused connections ticks every BUDGET_TICK: below the low-water mark
 *   (7/8 of the budget) it resumes them; above it, it closes paused
 *   connections that made no progress (no frame in, no response out, no
 *   backlog drained) for budget_wait, oldest partial frame first and the
 *   big holders before the small ones, until the estimate is under the
 *   low-water mark.
 * - The slow-client clocks: a frame's header must be complete within
 *   header_timeout of its first byte (or of the previous frame's end when
 *   bytes of the next were already there); once it is, the body must bring
 *   min_body_rate bytes in every second after a one-second grace. Time a
 *   connection spends paused by the budget does not count against it. One
 *   lazy timer per connection with a partial frame; a connection whose
 *   frames always arrive whole never arms it.
 * - Connection limits: max_connections and max_connections_per_ip, checked
 *   before a connection is set up; a refused one is closed at once.
 *
 * Every refusal is counted by reason (st_refused, read by
 * mprpc_server_stats) and logged at most once a second per reason.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/server_internal.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"

#define DEFAULT_BUDGET ((uint64_t)256 << 20)
#define DEFAULT_BUDGET_WAIT_MS 2000
#define DEFAULT_HEADER_TIMEOUT_MS 10000
#define DEFAULT_BODY_RATE 16384
#define DEFAULT_IDLE_TIMEOUT_MS (10 * 60 * 1000)
#define BODY_GRACE_NS MPRPC_NS_PER_S
#define BODY_WINDOW_NS MPRPC_NS_PER_S
#define PAUSE_FLOOR ((size_t)64 << 10)
#define HARD_CAP_MIN ((size_t)4 << 10)
#define BUDGET_TICK_NS (100 * MPRPC_NS_PER_MS)
#define CLOSE_PER_TICK 64

#define IPTAB_CAP 16384 /* slots; a power of two */
#define IPTAB_PROBE 32
#define IP_COUNT_BITS 20
#define IP_COUNT_MASK ((1ull << IP_COUNT_BITS) - 1)

static const char *const refuse_names[] = {"budget", "header_timeout", "slow_body",
                                           "max_connections", "per_ip"};

/* ---- set-up --------------------------------------------------------------- */

int mprpc__srv_budget_init(mprpc_server_t *s) {
  mprpc_server_opts_t *o = &s->o;
  s->budget = o->max_buffered_bytes == SIZE_MAX ? UINT64_MAX
              : o->max_buffered_bytes       ? (uint64_t)o->max_buffered_bytes
                                            : DEFAULT_BUDGET;
  uint64_t wait = o->budget_wait_ms ? o->budget_wait_ms : DEFAULT_BUDGET_WAIT_MS;
  s->budget_wait_ns = wait >= UINT64_MAX / MPRPC_NS_PER_MS ? UINT64_MAX : wait * MPRPC_NS_PER_MS;
  uint64_t hdr = o->header_timeout_ms ? o->header_timeout_ms : DEFAULT_HEADER_TIMEOUT_MS;
  s->header_ns = hdr >= UINT64_MAX / MPRPC_NS_PER_MS ? UINT64_MAX : hdr * MPRPC_NS_PER_MS;
  s->body_rate = o->min_body_rate == UINT32_MAX ? 0
                 : o->min_body_rate             ? o->min_body_rate
                                                : DEFAULT_BODY_RATE;
  s->max_conns = o->max_connections == UINT32_MAX ? 0 : o->max_connections;
  s->max_per_ip = o->max_connections_per_ip;
  if (s->max_per_ip > IP_COUNT_MASK)
    s->max_per_ip = (uint32_t)IP_COUNT_MASK;
  /* server_conn.c reads idle_timeout_ms with 0 = never. */
  if (o->idle_timeout_ms == 0)
    o->idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
  else if (o->idle_timeout_ms >= UINT64_MAX / MPRPC_NS_PER_MS)
    o->idle_timeout_ms = 0;
  if (s->max_per_ip) {
    s->iptab = calloc(IPTAB_CAP, sizeof *s->iptab);
    if (!s->iptab)
      return MPRPC_ENOMEM;
    s->iptab_cap = IPTAB_CAP;
  }
  return 0;
}

void mprpc__srv_budget_free(mprpc_server_t *s) {
  free(s->iptab);
  s->iptab = NULL;
}

/* ---- refusals --------------------------------------------------------------- */

static void refuse_log(mprpc_server_t *s, int why, uint64_t now, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Counts the refusal; logs it unless this reason logged less than a second
 * ago (the next line says how many went unlogged). */
static void refuse_log(mprpc_server_t *s, int why, uint64_t now, const char *fmt, ...) {
  atomic_fetch_add(&s->st_refused[why], 1);
  uint64_t unlogged = atomic_fetch_add(&s->refuse_unlogged[why], 1);
  uint64_t last = atomic_load(&s->refuse_last_log[why]);
  if (last && now - last < MPRPC_NS_PER_S)
    return;
  if (!atomic_compare_exchange_strong(&s->refuse_last_log[why], &last, now ? now : 1))
    return;
  atomic_fetch_sub(&s->refuse_unlogged[why], unlogged + 1);
  char text[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  char more[64] = "";
  if (unlogged)
    snprintf(more, sizeof more, " (%llu more since the last line)", (unsigned long long)unlogged);
  MPRPC_LOG_WARN("server: refused (%s): %s%s", refuse_names[why], text, more);
}

/* ---- per-ip counts ------------------------------------------------------------
 * A fixed table of packed words, tag << IP_COUNT_BITS | count, shared by
 * every loop without a lock. A tag is 44 bits of the address's hash
 * (never 0); a word of 0 was never used and ends a probe. A slot whose
 * count fell to 0 may be taken by another address; two loops admitting the
 * same new address at once may give it two slots, so the limit sums every
 * slot with its tag. A crowded table (no slot within IPTAB_PROBE) admits
 * the connection untracked. */

static uint64_t ip_hash(const char *peer) {
  const char *end = strrchr(peer, ':');
  size_t n = end ? (size_t)(end - peer) : strlen(peer);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)peer[i];
    h *= 1099511628211ull;
  }
  return h ^ (h >> 29);
}

/* 0 admitted (*slot set, or -1 untracked), 1 over the limit. */
static int ip_acquire(mprpc_server_t *s, const char *peer, int32_t *slot) {
  uint64_t h = ip_hash(peer);
  uint64_t tag = (h >> IP_COUNT_BITS) | 1;
  size_t mask = s->iptab_cap - 1;
  *slot = -1;
  for (int attempt = 0; attempt < 8; attempt++) {
    uint64_t total = 0;
    long found = -1, spare = -1;
    uint64_t spare_w = 0;
    for (size_t i = 0; i < IPTAB_PROBE; i++) {
      size_t j = (h + i) & mask;
      uint64_t w = atomic_load(&s->iptab[j]);
      if (w == 0) {
        if (spare < 0) {
          spare = (long)j;
          spare_w = 0;
        }
        break;
      }
      if (w >> IP_COUNT_BITS == tag) {
        total += w & IP_COUNT_MASK;
        if (found < 0)
          found = (long)j;
      } else if ((w & IP_COUNT_MASK) == 0 && spare < 0) {
        spare = (long)j;
        spare_w = w;
      }
    }
    if (total >= s->max_per_ip)
      return 1;
    if (found >= 0) {
      uint64_t w = atomic_load(&s->iptab[found]);
      if (w >> IP_COUNT_BITS == tag && (w & IP_COUNT_MASK) < IP_COUNT_MASK &&
          atomic_compare_exchange_strong(&s->iptab[found], &w, w + 1)) {
        *slot = (int32_t)found;
        return 0;
      }
      continue; /* taken over or raced: look again */
    }
    if (spare < 0)
      return 0; /* crowded: untracked */
    uint64_t w = spare_w;
    if (atomic_compare_exchange_strong(&s->iptab[spare], &w, tag << IP_COUNT_BITS | 1)) {
      *slot = (int32_t)spare;
      return 0;
    }
  }
  return 0; /* heavy contention: untracked rather than refused */
}

static void ip_release(mprpc_server_t *s, int32_t slot) {
  if (slot >= 0 && s->iptab)
    atomic_fetch_sub(&s->iptab[slot], 1); /* count > 0: the tag cannot change */
}

int mprpc__srv_admit(mprpc_server_t *s, const char *peer, uint64_t now, int32_t *ip_slot) {
  *ip_slot = -1;
  if (s->max_conns && atomic_load(&s->open_conns) >= s->max_conns) {
    refuse_log(s, MPRPC__REFUSE_MAXCONN, now, "%s: %llu connections open (max_connections=%u)",
               peer, (unsigned long long)atomic_load(&s->open_conns), s->max_conns);
    return 1;
  }
  if (s->max_per_ip && ip_acquire(s, peer, ip_slot) != 0) {
    refuse_log(s, MPRPC__REFUSE_PERIP, now, "%s: max_connections_per_ip=%u reached", peer,
               s->max_per_ip);
    return 1;
  }
  return 0;
}

/* ---- accounting ------------------------------------------------------------------ */

static void account(srv_conn_t *conn) {
  mprpc_server_t *s = conn->s;
  size_t now_held = conn->held_in + conn->held_out;
  if (now_held == conn->held)
    return;
  if (now_held > conn->held) {
    uint64_t v = atomic_fetch_add(&s->buffered, now_held - conn->held) + (now_held - conn->held);
    uint64_t peak = atomic_load_explicit(&s->buffered_peak, memory_order_relaxed);
    while (v > peak && !atomic_compare_exchange_weak(&s->buffered_peak, &peak, v)) {
    }
  } else {
    atomic_fetch_sub(&s->buffered, conn->held - now_held);
  }
  conn->held = now_held;
}

static void budget_tick(void *arg);
static void frame_arm(srv_conn_t *conn, uint64_t now);

static void pause_conn(srv_conn_t *conn, uint64_t now, uint64_t used) {
  mprpc_server_t *s = conn->s;
  if (!mprpc_conn_set_reading(s->t, conn->c, false))
    return; /* the transport cannot pause: the slow-client clocks still apply */
  conn->paused = true;
  conn->paused_at = now;
  srv_loop_t *l = conn->l;
  l->npaused++;
  atomic_fetch_add(&s->npaused, 1);
  atomic_fetch_add(&s->st_paused, 1);
  MPRPC_LOG_DEBUG("server: %llu of %llu budget bytes buffered: pausing reads from %s (holds %zu)",
                  (unsigned long long)used, (unsigned long long)s->budget, conn->peer, conn->held);
  if (!l->budget_timer)
    l->budget_timer = mprpc_timer_start_from(l->loop, now, BUDGET_TICK_NS, budget_tick, l);
}

static void resume_conn(srv_conn_t *conn, uint64_t now) {
  mprpc_server_t *s = conn->s;
  conn->paused = false;
  conn->l->npaused--;
  atomic_fetch_sub(&s->npaused, 1);
  /* Time spent paused is not the client's: shift its clocks. */
  uint64_t d = now - conn->paused_at;
  conn->frame_start += d;
  conn->body_check_at += d;
  if (conn->c)
    mprpc_conn_set_reading(s->t, conn->c, true);
  if (conn->has_frame)
    frame_arm(conn, now);
}

static void maybe_pause(srv_conn_t *conn, uint64_t now) {
  mprpc_server_t *s = conn->s;
  if (conn->paused || conn->held == 0 || conn->closing || s->budget == UINT64_MAX)
    return;
  uint64_t used = atomic_load_explicit(&s->buffered, memory_order_relaxed);
  if (used <= s->budget)
    return;
  /* Far past it (many small holders), a partial frame of 4 KiB or one
   * older than a second pauses too. A young small one - a healthy request
   * split across reads - and a small answer never do. */
  if (conn->held >= PAUSE_FLOOR ||
      (used > s->budget + s->budget / 16 && conn->has_frame &&
       (conn->in_len >= HARD_CAP_MIN || now - conn->frame_start >= MPRPC_NS_PER_S)))
    pause_conn(conn, now, used);
}

void mprpc__srv_budget_wrote(srv_conn_t *conn, size_t base_pending, size_t n, uint64_t now) {
  conn->held_out = base_pending + n;
  account(conn);
  maybe_pause(conn, now);
}

void mprpc__srv_budget_drained(srv_conn_t *conn, uint64_t now) {
  conn->held_out = 0;
  conn->last_active = now; /* progress for budget_wait */
  account(conn);
}

void mprpc__srv_budget_conn_gone(srv_conn_t *conn) {
  mprpc_server_t *s = conn->s;
  conn->in_len = conn->held_in = conn->held_out = 0;
  account(conn);
  if (conn->paused) {
    conn->paused = false;
    conn->l->npaused--;
    atomic_fetch_sub(&s->npaused, 1);
  }
  if (conn->l->npaused == 0) { /* no tick left behind for a freed server */
    mprpc_timer_cancel(conn->l->loop, conn->l->budget_timer);
    conn->l->budget_timer = 0;
  }
  mprpc_timer_cancel(conn->l->loop, conn->frame_timer);
  conn->frame_timer = 0;
  ip_release(s, conn->ip_slot);
  conn->ip_slot = -1;
}

/* ---- slow clients --------------------------------------------------------------- */

static void frame_fire(void *arg);

static uint64_t frame_deadline(const srv_conn_t *conn) {
  const mprpc_server_t *s = conn->s;
  if (conn->frame_len == 0)
    return s->header_ns == UINT64_MAX || conn->frame_start > UINT64_MAX - s->header_ns
               ? UINT64_MAX
               : conn->frame_start + s->header_ns;
  return s->body_rate ? conn->body_check_at : UINT64_MAX;
}

static void frame_arm(srv_conn_t *conn, uint64_t now) {
  uint64_t at = frame_deadline(conn);
  if (at == UINT64_MAX)
    return;
  if (conn->frame_timer) {
    if (conn->frame_timer_at <= at)
      return; /* fires first and re-arms */
    mprpc_timer_cancel(conn->l->loop, conn->frame_timer);
  }
  conn->frame_timer_at = at;
  conn->frame_timer =
      mprpc_timer_start_from(conn->l->loop, now, at > now ? at - now : 0, frame_fire, conn);
}

static void frame_fire(void *arg) {
  srv_conn_t *conn = arg;
  mprpc_server_t *s = conn->s;
  conn->frame_timer = 0;
  if (conn->closing || conn->closed || !conn->has_frame || conn->paused)
    return; /* nothing to time, or resume_conn re-arms */
  uint64_t now = mprpc_loop_now(conn->l->loop);
  if (conn->frame_len == 0) {
    if (now - conn->frame_start >= s->header_ns) {
      refuse_log(s, MPRPC__REFUSE_HEADER, now,
                 "%s: %zu bytes of a frame header in %llu ms (header_timeout=%llu ms)",
                 conn->peer, conn->in_len,
                 (unsigned long long)((now - conn->frame_start) / MPRPC_NS_PER_MS),
                 (unsigned long long)(s->header_ns / MPRPC_NS_PER_MS));
      mprpc__srv_conn_close(conn, false);
      return;
    }
  } else if (s->body_rate && now >= conn->body_check_at) {
    uint64_t got = conn->bytes_in - conn->body_mark_rx;
    if (got < s->body_rate) {
      refuse_log(s, MPRPC__REFUSE_BODY, now,
                 "%s: body at %llu B/s, %zu of %llu bytes in (min_body_rate=%llu B/s)",
                 conn->peer, (unsigned long long)got, conn->in_len,
                 (unsigned long long)conn->frame_len, (unsigned long long)s->body_rate);
      mprpc__srv_conn_close(conn, false);
      return;
    }
    conn->body_mark_rx = conn->bytes_in;
    conn->body_check_at = now + BODY_WINDOW_NS;
  }
  frame_arm(conn, now);
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The end of an on_data pass that left bytes behind or changed what the
 * connection holds (mprpc__srv_budget_read_end's slow path). */
void mprpc__srv_budget_update(srv_conn_t *conn, bool progressed, uint64_t now) {
  account(conn);
  if (conn->in_len == 0) {
    conn->has_frame = false;
  } else if (!conn->has_frame || progressed) {
    /* A new frame: its first byte arrived now, or the previous frame
     * ended now with bytes of this one already there. */
    conn->has_frame = true;
    conn->frame_start = now;
    conn->frame_len = 0;
  }
  if (conn->has_frame && conn->frame_len == 0 && conn->in_len >= MPRPC_FRAME_HEADER_LEN) {
    conn->frame_len = MPRPC_FRAME_HEADER_LEN + (uint64_t)be32(mprpc_rbuf_data(&conn->in) + 4);
    conn->body_mark_rx = conn->bytes_in;
    conn->body_check_at = now + BODY_GRACE_NS + BODY_WINDOW_NS;
  }
  if (conn->has_frame && !conn->paused)
    frame_arm(conn, now);
  maybe_pause(conn, now);
}

/* ---- the budget tick -------------------------------------------------------------- */

/* A stalled paused connection: no progress for budget_wait. */
static bool stalled(const srv_conn_t *conn, uint64_t now, uint64_t wait) {
  if (!conn->paused || conn->closing || conn->closed)
    return false;
  uint64_t since = conn->paused_at > conn->last_active ? conn->paused_at : conn->last_active;
  return now - since >= wait;
}

static void budget_tick(void *arg) {
  srv_loop_t *l = arg;
  mprpc_server_t *s = l->s;
  l->budget_timer = 0;
  if (l->npaused == 0)
    return;
  uint64_t now = mprpc_loop_now(l->loop);
  uint64_t used = atomic_load(&s->buffered);
  uint64_t low = s->budget - s->budget / 8;
  if (used <= low) {
    for (srv_conn_t *c = l->conns; c && l->npaused; c = c->next)
      if (c->paused && !c->closed)
        resume_conn(c, now);
    return;
  }
  /* Over the low-water mark: close stalled ones, oldest partial frame
   * first, big holders before small ones, until the estimate is under. */
  uint64_t est = used;
  for (int n = 0; n < CLOSE_PER_TICK && est > low; n++) {
    srv_conn_t *best = NULL;
    uint64_t best_key = UINT64_MAX;
    bool best_big = false;
    for (srv_conn_t *c = l->conns; c; c = c->next) {
      if (!stalled(c, now, s->budget_wait_ns))
        continue;
      bool big = c->held >= PAUSE_FLOOR;
      uint64_t key = c->has_frame ? c->frame_start : c->paused_at;
      if (!best || (big && !best_big) || (big == best_big && key < best_key)) {
        best = c;
        best_key = key;
        best_big = big;
      }
    }
    if (!best)
      break;
    refuse_log(s, MPRPC__REFUSE_BUDGET, now,
               "%s: holds %zu bytes, no progress for %llu ms at the budget (%llu of "
               "max_buffered_bytes=%llu buffered)",
               best->peer, best->held,
               (unsigned long long)((now - best->paused_at) / MPRPC_NS_PER_MS),
               (unsigned long long)used, (unsigned long long)s->budget);
    est = est > best->held ? est - best->held : 0;
    mprpc__srv_conn_close(best, false);
  }
  if (l->npaused)
    l->budget_timer = mprpc_timer_start_from(l->loop, now, BUDGET_TICK_NS, budget_tick, l);
}
