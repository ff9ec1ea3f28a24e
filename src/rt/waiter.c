/*
 * Waiters: the one-shot binary semaphore a thread blocks on while a loop
 * produces its result (synchronous calls, blocking destroys), behind the
 * loop seam's waiter_* ops.
 *
 * One futex word per waiter: 0 = not woken, 1 = woken, 2 = a thread sleeps
 * on it. wait() returns at once when the wake came first; otherwise it marks
 * the word 2 and sleeps until wake() stores 1. wake() makes the futex system
 * call only when the word was 2, so a wake that beats the wait, or a waiter
 * that has not gone to sleep yet, costs no system call. One wake-up per wait
 * at most, and no mutex for either side to contend on (the pthread
 * mutex+condvar pair this replaces made ~4 futex calls per synchronous call
 * under load).
 *
 * Each thread keeps one waiter for reuse (a synchronous call needs one per
 * call): waiter_new hands out the thread's own unless it is in use (a
 * closure of a synchronous call making another one), waiter_free gives it
 * back. It is freed when the thread exits (pthread key destructor).
 */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <errno.h>

#include "rt/rt_internal.h"

struct mprpc__waiter {
  atomic_int word;   /* 0 not woken, 1 woken, 2 sleeping */
  bool cached;       /* a thread's own: waiter_free only marks it free */
  atomic_bool busy;  /* cached and handed out */
};

static _Thread_local mprpc__waiter_t *tls_own;
static pthread_key_t own_key;
static pthread_once_t own_once = PTHREAD_ONCE_INIT;
static bool own_key_ok;

/* At thread exit, on that thread: later waiter_new calls (from other
 * destructors) allocate instead of reusing the freed one. */
static void own_destroy(void *p) {
  if (tls_own == p)
    tls_own = NULL;
  free(p);
}

static void own_key_init(void) { own_key_ok = pthread_key_create(&own_key, own_destroy) == 0; }

static void futex_wait(atomic_int *w, int val) {
  syscall(SYS_futex, (int *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(atomic_int *w) {
  syscall(SYS_futex, (int *)w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

mprpc__waiter_t *mprpc__waiter_new(void) {
  mprpc__waiter_t *w = tls_own;
  if (w && !atomic_load_explicit(&w->busy, memory_order_acquire)) {
    atomic_store_explicit(&w->busy, true, memory_order_relaxed);
    atomic_store_explicit(&w->word, 0, memory_order_relaxed);
    return w;
  }
  w = malloc(sizeof *w);
  if (!w)
    return NULL;
  atomic_init(&w->word, 0);
  w->cached = false;
  atomic_init(&w->busy, false);
  if (!tls_own) {
    pthread_once(&own_once, own_key_init);
    if (own_key_ok && pthread_setspecific(own_key, w) == 0) {
      w->cached = true;
      atomic_store_explicit(&w->busy, true, memory_order_relaxed);
      tls_own = w;
    }
  }
  return w;
}

void mprpc__waiter_wait(mprpc__waiter_t *w) {
  int v = 0;
  if (atomic_compare_exchange_strong_explicit(&w->word, &v, 2, memory_order_acquire,
                                              memory_order_acquire)) {
    do
      futex_wait(&w->word, 2); /* returns at once if the word is no longer 2 */
    while (atomic_load_explicit(&w->word, memory_order_acquire) == 2);
  }
  /* v was 1 (woken before we waited) or we slept until it became 1 */
  atomic_store_explicit(&w->word, 0, memory_order_relaxed);
}

void mprpc__waiter_wake(mprpc__waiter_t *w) {
  if (atomic_exchange_explicit(&w->word, 1, memory_order_acq_rel) == 2)
    futex_wake(&w->word);
}

void mprpc__waiter_free(mprpc__waiter_t *w) {
  if (!w)
    return;
  if (w->cached)
    atomic_store_explicit(&w->busy, false, memory_order_release);
  else
    free(w);
}
