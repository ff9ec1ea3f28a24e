/*
 * Handler thread pool (internal to src/rt): the executor behind the
 * provider's handler_threads, created by src/rt/defaults.c.
 */
#ifndef MPRPC__RT_POOL_H
#define MPRPC__RT_POOL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct mprpc__pool mprpc__pool_t;

/* n threads, started now. 0, MPRPC_ENOMEM or MPRPC_EAGAIN. */
int mprpc__pool_new(size_t n, mprpc__pool_t **out);
/* The executor seam's submit (ctx is the pool). MPRPC_ESTATE once stopping. */
int mprpc__pool_submit(void *ctx, void (*fn)(void *), void *arg);
/* Runs every queued job, then joins the threads. Idempotent; not from a
 * pool thread. */
void mprpc__pool_stop(mprpc__pool_t *p);
void mprpc__pool_free(mprpc__pool_t *p);

#endif
