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
 * A lone waiter spins first. When no other thread of the process is waiting,
 * wait() polls the word for up to SPIN_NS before it sleeps: a synchronous
 * caller on its own (one thread calling a stub in a loop) then sees the
 * loop's wake as a store, not as a futex wake-up of a sleeping thread, which
 * on the 2-vCPU bench VM took a fifth to a third off 1 sync caller's p50 in
 * every interleaved round (docs/performance.md). With other waiters about,
 * or on one CPU, nobody spins: 16 callers spinning would take the cores the
 * loop and the provider need (spinning at 16 threads halved their qps).
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
#include <time.h>
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

enum { SPIN_NS = 50000, SPIN_CHECK_EVERY = 32 };

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

static atomic_int waiting; /* threads inside mprpc__waiter_wait */
static bool spin_ok;       /* more than one CPU */
static pthread_once_t spin_once = PTHREAD_ONCE_INIT;

static void spin_init(void) { spin_ok = sysconf(_SC_NPROCESSORS_ONLN) > 1; }

static uint64_t mono_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* True once the word is 1 (woken) within SPIN_NS. */
static bool spin_for_wake(atomic_int *word) {
  uint64_t until = mono_ns() + SPIN_NS;
  for (;;) {
    for (int i = 0; i < SPIN_CHECK_EVERY; i++) {
      if (atomic_load_explicit(word, memory_order_acquire) == 1)
        return true;
      cpu_relax();
    }
    if (mono_ns() >= until)
      return false;
  }
}

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
  pthread_once(&spin_once, spin_init);
  bool alone = atomic_fetch_add_explicit(&waiting, 1, memory_order_relaxed) == 0;
  int v = 0;
  if ((!alone || !spin_ok || !spin_for_wake(&w->word)) &&
      atomic_compare_exchange_strong_explicit(&w->word, &v, 2, memory_order_acquire,
                                              memory_order_acquire)) {
    do
      futex_wait(&w->word, 2); /* returns at once if the word is no longer 2 */
    while (atomic_load_explicit(&w->word, memory_order_acquire) == 2);
  }
  /* woken while spinning, before we waited, or we slept until the word was 1 */
  atomic_store_explicit(&w->word, 0, memory_order_relaxed);
  atomic_fetch_sub_explicit(&waiting, 1, memory_order_relaxed);
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
