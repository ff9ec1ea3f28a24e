/*
 * A growable, always NUL-terminated string builder for text the core writes
 * itself: HTTP responses, console pages (HTML, JSON, plain text), /metrics.
 *
 * Errors are sticky: the first failed allocation is kept in tb->err and
 * every later append returns it without writing, so a page is written with
 * a run of appends and checked once at the end. Functions return 0 or a
 * negative MPRPC_E* code (MPRPC_ENOMEM). The builder owns its memory:
 * mprpc__textbuf_free releases it, mprpc__textbuf_take hands it over.
 */
#ifndef MPRPC_CORE_TEXTBUF_H
#define MPRPC_CORE_TEXTBUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct mprpc__textbuf {
  char *data; /* NULL until the first append; then NUL-terminated */
  size_t len; /* bytes before the terminating NUL */
  size_t cap;
  int err; /* 0 or the first error */
} mprpc__textbuf_t;

#define MPRPC__TEXTBUF_INIT {0}

void mprpc__textbuf_init(mprpc__textbuf_t *tb);
void mprpc__textbuf_free(mprpc__textbuf_t *tb);
/* Empties the text (and clears err), keeping the allocation. */
void mprpc__textbuf_reset(mprpc__textbuf_t *tb);
/* The text; "" (static) for a builder that never allocated. */
const char *mprpc__textbuf_cstr(const mprpc__textbuf_t *tb);
/* Hands the malloc'd, NUL-terminated text to the caller (who frees it) and
 * leaves tb empty; NULL for a builder with nothing in it or in error. */
char *mprpc__textbuf_take(mprpc__textbuf_t *tb, size_t *len);

/* Makes room for n more bytes (plus the NUL). */
int mprpc__textbuf_reserve(mprpc__textbuf_t *tb, size_t n);
int mprpc__textbuf_append(mprpc__textbuf_t *tb, const void *p, size_t n);
int mprpc__textbuf_puts(mprpc__textbuf_t *tb, const char *s);
int mprpc__textbuf_putc(mprpc__textbuf_t *tb, char c);
int mprpc__textbuf_printf(mprpc__textbuf_t *tb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int mprpc__textbuf_vprintf(mprpc__textbuf_t *tb, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* s[0..n) escaped for HTML text and attribute values (& < > " '). Safe for
 * SVG/XML too. */
int mprpc__textbuf_html(mprpc__textbuf_t *tb, const char *s, size_t n);
/* s[0..n) as a JSON string, quotes included: " \ and control characters
 * escaped; invalid UTF-8 replaced by U+FFFD, so the output is always valid
 * JSON whatever bytes came in. */
int mprpc__textbuf_json(mprpc__textbuf_t *tb, const char *s, size_t n);

#endif
