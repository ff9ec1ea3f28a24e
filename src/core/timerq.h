/*
 * Timer queue: a min-heap of one-shot timers ordered by (deadline, start
 * order), with generation-checked ids so that cancelling a fired or unknown
 * id is a harmless no-op. Shared by the libev loop (which arms one ev_timer
 * for the earliest deadline) and the simulator's scheduler. Not thread-safe:
 * it belongs to one loop.
 */
#ifndef MPRPC__TIMERQ_H
#define MPRPC__TIMERQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprpc/loop.h"

typedef struct mprpc__timer_slot {
  uint64_t deadline;
  uint64_t seq;
  mprpc_timer_cb cb;
  void *arg;
  uint32_t gen;
  uint32_t heap_idx; /* MPRPC__TQ_FREE when the slot is not armed */
} mprpc__timer_slot_t;

typedef struct mprpc__timerq {
  mprpc__timer_slot_t *slots;
  uint32_t nslots, cap_slots;
  uint32_t *free_list; /* stack of free slot indexes */
  uint32_t nfree;
  uint32_t *heap; /* slot indexes */
  uint32_t nheap, cap_heap;
  uint64_t seq;
} mprpc__timerq_t;

void mprpc__timerq_init(mprpc__timerq_t *q);
void mprpc__timerq_free(mprpc__timerq_t *q);
/* Returns the timer id (never 0) or 0 when out of memory. */
uint64_t mprpc__timerq_add(mprpc__timerq_t *q, uint64_t deadline, mprpc_timer_cb cb, void *arg);
/* True when id was armed (and is now cancelled). */
bool mprpc__timerq_cancel(mprpc__timerq_t *q, uint64_t id);
/* Earliest deadline; false when empty. */
bool mprpc__timerq_peek(const mprpc__timerq_t *q, uint64_t *deadline);
/* Pops the earliest timer if its deadline <= now; returns false otherwise.
 * The slot is released before the caller runs cb. */
bool mprpc__timerq_pop_due(mprpc__timerq_t *q, uint64_t now, mprpc_timer_cb *cb, void **arg);
/* The earliest timer's arg (NULL when empty), and moving the earliest timer
 * to a later deadline, as if started now, its id still valid (the
 * simulator holds a busy loop's events this way). */
void *mprpc__timerq_top_arg(const mprpc__timerq_t *q);
void mprpc__timerq_defer_top(mprpc__timerq_t *q, uint64_t deadline);
/* Runs every timer due at `now` that was started before this call (timers
 * started by the callbacks wait for the next call). Returns how many ran. */
size_t mprpc__timerq_run_due(mprpc__timerq_t *q, uint64_t now);
static inline size_t mprpc__timerq_len(const mprpc__timerq_t *q) { return q->nheap; }

#endif
