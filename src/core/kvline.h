/*
 * The key=value line syntax shared by config files (src/util/config.c) and
 * config-centre nodes (src/core/govcfg.c): one splitter, so both read the
 * same text the same way.
 *
 * Syntax: lines end in LF (CRLF fine, last newline optional); a UTF-8 byte
 * order mark at the start is skipped; spaces, tabs and CRs around a line,
 * a key and a value are trimmed; blank lines and lines starting with '#'
 * are skipped; otherwise a line is KEY=VALUE with the first '=' splitting
 * it. Keys are letters, digits, '_', '.', '-' plus the caller's extra key
 * characters. Values are anything but NUL (may be empty).
 *
 * Pure logic, no allocation: entries point into the caller's text.
 */
#ifndef MPRPC_CORE_KVLINE_H
#define MPRPC_CORE_KVLINE_H

#include <stdbool.h>
#include <stddef.h>

/* What mprpc__kv_next found wrong with a line (negative), or 1 / 0. */
enum {
  MPRPC__KV_ENTRY = 1,
  MPRPC__KV_END = 0,
  MPRPC__KV_ENUL = -1,      /* the line contains a NUL byte */
  MPRPC__KV_ENOEQ = -2,     /* no '=' */
  MPRPC__KV_EEMPTYKEY = -3, /* nothing before '=' */
  MPRPC__KV_EBADKEY = -4,   /* a character outside the key set */
};

typedef struct mprpc__kv_iter {
  const char *text;
  size_t len, pos;
  int line;
  const char *extra_key_chars; /* NULL: none */
} mprpc__kv_iter_t;

typedef struct mprpc__kv {
  int line;              /* 1-based line number */
  const char *key;       /* trimmed key (on EBADKEY: the offending key) */
  size_t klen;
  const char *value;     /* trimmed value */
  size_t vlen;
  const char *text;      /* the whole trimmed line (for messages) */
  size_t tlen;
} mprpc__kv_t;

/* text[0..len) need not be NUL-terminated. extra_key_chars (may be NULL)
 * widens the key character set, e.g. ":[]" for host:port keys. */
void mprpc__kv_init(mprpc__kv_iter_t *it, const char *text, size_t len,
                    const char *extra_key_chars);
/* The next entry in *out: MPRPC__KV_ENTRY, MPRPC__KV_END, or a negative
 * MPRPC__KV_E* for a bad line (out->line and out->text name it). The
 * iterator has moved past the bad line, so a caller may go on. */
int mprpc__kv_next(mprpc__kv_iter_t *it, mprpc__kv_t *out);
/* Text for a negative result ("expected key=value", ...). */
const char *mprpc__kv_strerror(int rc);
/* True for a character of the base key set. */
bool mprpc__kv_key_char(char c);

#endif
