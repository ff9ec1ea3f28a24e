/*
 * The channel's deadline list: calls made with the channel's default timeout
 * end in start order, so they share one list with one loop timer for its
 * head instead of a timer each (docs/performance.md). A call whose deadline
 * would not keep the list sorted (another timeout) gets its own timer in
 * channel.c instead.
 */
#include "core/channel_int.h"

void mprpc__dl_unlink(mprpc_channel_t *ch, mprpc__call_t *c) {
  if (!c->in_dl)
    return;
  if (c->dl_prev)
    c->dl_prev->dl_next = c->dl_next;
  else
    ch->dl_head = c->dl_next;
  if (c->dl_next)
    c->dl_next->dl_prev = c->dl_prev;
  else
    ch->dl_tail = c->dl_prev;
  c->dl_prev = c->dl_next = NULL;
  c->in_dl = false;
}

static void dl_fire(void *arg);

/* Arms the list's one timer for its head, unless it is armed already. */
static void dl_arm(mprpc_channel_t *ch, uint64_t now) {
  if (!ch->dl_timer)
    ch->dl_timer =
        mprpc_timer_start_from(ch->loop, now, ch->dl_head->deadline_ns - now, dl_fire, ch);
}

/* The deadline list's timer: fails every call whose deadline has come, in
 * order, then re-arms for the new head. Closures run here may start calls;
 * those end up behind `now` and stop the loop. The timer may also fire for
 * a head that already finished: then it only re-arms. */
static void dl_fire(void *arg) {
  mprpc_channel_t *ch = arg;
  ch->dl_timer = 0;
  uint64_t now = mprpc_loop_now(ch->loop);
  ch->cb_depth++; /* keeps ch alive through the closures */
  while (ch->dl_head && ch->dl_head->deadline_ns <= now) {
    mprpc__call_t *c = ch->dl_head;
    mprpc__dl_unlink(ch, c);
    mprpc__call_deadline(c);
  }
  ch->cb_depth--;
  /* A closure above may have started a call that armed the timer again. */
  if (ch->dl_head && !ch->destroying)
    dl_arm(ch, now);
  mprpc__channel_maybe_free(ch);
}

void mprpc__dl_append(mprpc_channel_t *ch, mprpc__call_t *c, uint64_t now) {
  c->in_dl = true;
  c->dl_next = NULL;
  c->dl_prev = ch->dl_tail;
  if (ch->dl_tail)
    ch->dl_tail->dl_next = c;
  else
    ch->dl_head = c;
  ch->dl_tail = c;
  dl_arm(ch, now);
}

void mprpc__dl_stop(mprpc_channel_t *ch) {
  mprpc_timer_cancel(ch->loop, ch->dl_timer);
  ch->dl_timer = 0;
}
