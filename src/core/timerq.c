#include "timerq.h"

#include <stdlib.h>

#define MPRPC__TQ_FREE UINT32_MAX

void mprpc__timerq_init(mprpc__timerq_t *q) { *q = (mprpc__timerq_t){0}; }

void mprpc__timerq_free(mprpc__timerq_t *q) {
  free(q->slots);
  free(q->free_list);
  free(q->heap);
  *q = (mprpc__timerq_t){0};
}

static bool before(const mprpc__timerq_t *q, uint32_t a, uint32_t b) {
  const mprpc__timer_slot_t *x = &q->slots[a], *y = &q->slots[b];
  return x->deadline < y->deadline || (x->deadline == y->deadline && x->seq < y->seq);
}

static void place(mprpc__timerq_t *q, uint32_t pos, uint32_t slot) {
  q->heap[pos] = slot;
  q->slots[slot].heap_idx = pos;
}

static void sift_up(mprpc__timerq_t *q, uint32_t pos) {
  uint32_t slot = q->heap[pos];
  while (pos > 0) {
    uint32_t parent = (pos - 1) / 2;
    if (!before(q, slot, q->heap[parent]))
      break;
    place(q, pos, q->heap[parent]);
    pos = parent;
  }
  place(q, pos, slot);
}

static void sift_down(mprpc__timerq_t *q, uint32_t pos) {
  uint32_t slot = q->heap[pos];
  for (;;) {
    uint32_t child = 2 * pos + 1;
    if (child >= q->nheap)
      break;
    if (child + 1 < q->nheap && before(q, q->heap[child + 1], q->heap[child]))
      child++;
    if (!before(q, q->heap[child], slot))
      break;
    place(q, pos, q->heap[child]);
    pos = child;
  }
  place(q, pos, slot);
}

static void heap_remove(mprpc__timerq_t *q, uint32_t pos) {
  uint32_t slot = q->heap[pos];
  q->nheap--;
  if (pos != q->nheap) {
    uint32_t moved = q->heap[q->nheap];
    place(q, pos, moved);
    sift_down(q, pos);
    if (q->slots[moved].heap_idx == pos)
      sift_up(q, pos);
  }
  q->slots[slot].heap_idx = MPRPC__TQ_FREE;
  q->slots[slot].gen++;
  q->free_list[q->nfree++] = slot;
}

static bool grow(mprpc__timerq_t *q) {
  uint32_t cap = q->cap_slots ? q->cap_slots * 2 : 64;
  mprpc__timer_slot_t *slots = realloc(q->slots, cap * sizeof *slots);
  if (!slots)
    return false;
  q->slots = slots;
  uint32_t *fl = realloc(q->free_list, cap * sizeof *fl);
  if (!fl)
    return false;
  q->free_list = fl;
  uint32_t *heap = realloc(q->heap, cap * sizeof *heap);
  if (!heap)
    return false;
  q->heap = heap;
  q->cap_slots = q->cap_heap = cap;
  return true;
}

uint64_t mprpc__timerq_add(mprpc__timerq_t *q, uint64_t deadline, mprpc_timer_cb cb, void *arg) {
  uint32_t slot;
  if (q->nfree > 0) {
    slot = q->free_list[--q->nfree];
  } else {
    if (q->nslots == q->cap_slots && !grow(q))
      return 0;
    slot = q->nslots++;
    q->slots[slot].gen = 1;
  }
  mprpc__timer_slot_t *s = &q->slots[slot];
  s->deadline = deadline;
  s->seq = q->seq++;
  s->cb = cb;
  s->arg = arg;
  q->heap[q->nheap] = slot;
  s->heap_idx = q->nheap++;
  sift_up(q, s->heap_idx);
  return ((uint64_t)s->gen << 32) | (uint64_t)(slot + 1);
}

bool mprpc__timerq_cancel(mprpc__timerq_t *q, uint64_t id) {
  uint32_t slot = (uint32_t)(id & 0xffffffffu);
  uint32_t gen = (uint32_t)(id >> 32);
  if (slot == 0 || slot > q->nslots)
    return false;
  slot--;
  mprpc__timer_slot_t *s = &q->slots[slot];
  if (s->gen != gen || s->heap_idx == MPRPC__TQ_FREE)
    return false;
  heap_remove(q, s->heap_idx);
  return true;
}

bool mprpc__timerq_peek(const mprpc__timerq_t *q, uint64_t *deadline) {
  if (q->nheap == 0)
    return false;
  *deadline = q->slots[q->heap[0]].deadline;
  return true;
}

bool mprpc__timerq_pop_due(mprpc__timerq_t *q, uint64_t now, mprpc_timer_cb *cb, void **arg) {
  if (q->nheap == 0)
    return false;
  mprpc__timer_slot_t *s = &q->slots[q->heap[0]];
  if (s->deadline > now)
    return false;
  *cb = s->cb;
  *arg = s->arg;
  heap_remove(q, 0);
  return true;
}

void *mprpc__timerq_top_arg(const mprpc__timerq_t *q) {
  return q->nheap ? q->slots[q->heap[0]].arg : NULL;
}

void mprpc__timerq_defer_top(mprpc__timerq_t *q, uint64_t deadline) {
  if (q->nheap == 0)
    return;
  mprpc__timer_slot_t *s = &q->slots[q->heap[0]];
  if (deadline <= s->deadline)
    return;
  s->deadline = deadline;
  s->seq = q->seq++;
  sift_down(q, 0);
}

size_t mprpc__timerq_run_due(mprpc__timerq_t *q, uint64_t now) {
  uint64_t limit = q->seq;
  size_t ran = 0;
  while (q->nheap > 0) {
    mprpc__timer_slot_t *s = &q->slots[q->heap[0]];
    if (s->deadline > now || s->seq >= limit)
      break;
    mprpc_timer_cb cb = s->cb;
    void *arg = s->arg;
    heap_remove(q, 0);
    cb(arg);
    ran++;
  }
  return ran;
}
