/*
 * rpcz: a server's ring of the last MPRPC_RPCZ_SPANS calls it served and
 * their trace ids (include/mprpc/trace.h), read by GET /rpcz and
 * mprpc_server_rpcz_snapshot.
 *
 * Recording is cheap and lock-light: calls complete on several loop
 * threads, and each one costs one atomic ticket (fetch_add) plus a copy of
 * the span into a preallocated slot guarded by a per-slot sequence number
 * (a seqlock); nothing is allocated per call. Readers copy slots and keep
 * only those whose sequence number did not move meanwhile, so they never
 * see a half-written span and never stop a writer. A writer that finds its
 * slot busy (another writer 1,024 tickets ahead, which needs 1,024
 * completions during one copy) drops its span.
 */
#ifndef MPRPC_CORE_RPCZ_H
#define MPRPC_CORE_RPCZ_H

#include <stddef.h>
#include <stdint.h>

#include "core/textbuf.h"
#include "mprpc/server.h"

/* Render formats: one line per span (curl), an HTML <table> fragment (the
 * console wraps it in its page), a JSON object. */
enum {
  MPRPC__RPCZ_TEXT = 0,
  MPRPC__RPCZ_HTML = 1,
  MPRPC__RPCZ_JSON = 2,
};

typedef struct mprpc__rpcz mprpc__rpcz_t;

/* A cleared ring (NULL on out of memory); freed with mprpc__rpcz_free. */
mprpc__rpcz_t *mprpc__rpcz_new(void);
void mprpc__rpcz_free(mprpc__rpcz_t *z);

/* Any thread. sp is copied. */
void mprpc__rpcz_record(mprpc__rpcz_t *z, const mprpc_rpcz_span_t *sp);

/* See mprpc_server_rpcz_snapshot (z may be NULL: 0). */
size_t mprpc__rpcz_snapshot(const mprpc__rpcz_t *z, mprpc_rpcz_span_t *out, size_t max,
                            int64_t trace_id);

/* Writes the spans, newest first, of trace trace_id_filter only when it is
 * non-zero, in format MPRPC__RPCZ_*; z NULL renders an empty list. Errors
 * stay in out->err (textbuf's sticky error). */
void mprpc__rpcz_render(const mprpc__rpcz_t *z, mprpc__textbuf_t *out, int format,
                        uint64_t trace_id_filter);

/* Parses a trace id as /rpcz prints it: 1 to 16 hex digits, with or
 * without 0x (s need not be NUL-terminated). 0 or MPRPC_EINVAL. */
int mprpc__rpcz_parse_id(const char *s, size_t n, uint64_t *out);

#endif
