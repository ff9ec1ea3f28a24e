/* See textbuf.h. */
#include "textbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"

#define TEXTBUF_MIN_CAP 256

void mprpc__textbuf_init(mprpc__textbuf_t *tb) { memset(tb, 0, sizeof *tb); }

void mprpc__textbuf_free(mprpc__textbuf_t *tb) {
  free(tb->data);
  memset(tb, 0, sizeof *tb);
}

void mprpc__textbuf_reset(mprpc__textbuf_t *tb) {
  tb->len = 0;
  tb->err = 0;
  if (tb->data)
    tb->data[0] = '\0';
}

const char *mprpc__textbuf_cstr(const mprpc__textbuf_t *tb) { return tb->data ? tb->data : ""; }

char *mprpc__textbuf_take(mprpc__textbuf_t *tb, size_t *len) {
  char *p = tb->err ? NULL : tb->data;
  if (len)
    *len = p ? tb->len : 0;
  if (!p)
    free(tb->data);
  memset(tb, 0, sizeof *tb);
  return p;
}

int mprpc__textbuf_reserve(mprpc__textbuf_t *tb, size_t n) {
  if (tb->err)
    return tb->err;
  if (tb->cap - tb->len > n) /* > leaves room for the NUL */
    return 0;
  if (n >= SIZE_MAX / 2 - tb->len)
    return tb->err = MPRPC_ENOMEM;
  size_t need = tb->len + n + 1;
  size_t cap = tb->cap ? tb->cap : TEXTBUF_MIN_CAP;
  while (cap < need)
    cap *= 2;
  char *d = realloc(tb->data, cap);
  if (!d)
    return tb->err = MPRPC_ENOMEM;
  if (!tb->data)
    d[0] = '\0';
  tb->data = d;
  tb->cap = cap;
  return 0;
}

int mprpc__textbuf_append(mprpc__textbuf_t *tb, const void *p, size_t n) {
  int rc = mprpc__textbuf_reserve(tb, n);
  if (rc)
    return rc;
  if (n)
    memcpy(tb->data + tb->len, p, n);
  tb->len += n;
  tb->data[tb->len] = '\0';
  return 0;
}

int mprpc__textbuf_puts(mprpc__textbuf_t *tb, const char *s) {
  return mprpc__textbuf_append(tb, s, strlen(s));
}

int mprpc__textbuf_putc(mprpc__textbuf_t *tb, char c) { return mprpc__textbuf_append(tb, &c, 1); }

int mprpc__textbuf_vprintf(mprpc__textbuf_t *tb, const char *fmt, va_list ap) {
  if (tb->err)
    return tb->err;
  /* Straight into the free space; formatted again only when it did not fit. */
  size_t room = tb->cap - tb->len;
  va_list ap2;
  va_copy(ap2, ap);
  char small[1];
  int n = vsnprintf(room ? tb->data + tb->len : small, room ? room : sizeof small, fmt, ap2);
  va_end(ap2);
  if (n < 0) {
    if (tb->data)
      tb->data[tb->len] = '\0';
    return tb->err = MPRPC_EINVAL;
  }
  if ((size_t)n < room) {
    tb->len += (size_t)n;
    return 0;
  }
  int rc = mprpc__textbuf_reserve(tb, (size_t)n);
  if (rc) {
    if (tb->data)
      tb->data[tb->len] = '\0';
    return rc;
  }
  vsnprintf(tb->data + tb->len, (size_t)n + 1, fmt, ap);
  tb->len += (size_t)n;
  return 0;
}

int mprpc__textbuf_printf(mprpc__textbuf_t *tb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = mprpc__textbuf_vprintf(tb, fmt, ap);
  va_end(ap);
  return rc;
}

int mprpc__textbuf_html(mprpc__textbuf_t *tb, const char *s, size_t n) {
  size_t run = 0; /* bytes before s[i] not yet written */
  for (size_t i = 0; i < n; i++) {
    const char *rep;
    switch (s[i]) {
    case '&':
      rep = "&amp;";
      break;
    case '<':
      rep = "&lt;";
      break;
    case '>':
      rep = "&gt;";
      break;
    case '"':
      rep = "&quot;";
      break;
    case '\'':
      rep = "&#39;";
      break;
    default:
      continue;
    }
    mprpc__textbuf_append(tb, s + run, i - run);
    mprpc__textbuf_puts(tb, rep);
    run = i + 1;
  }
  return mprpc__textbuf_append(tb, s + run, n - run);
}

/* Length of the well-formed UTF-8 sequence at s[0..n) (n >= 1, s[0] >=
 * 0x80), or 0: no overlongs, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
  if (c >= 0xC2 && c <= 0xDF)
    len = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else
    return 0;
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xBF)
      return 0;
  return len;
}

int mprpc__textbuf_json(mprpc__textbuf_t *tb, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  mprpc__textbuf_putc(tb, '"');
  size_t run = 0;
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    char esc[8];
    const char *rep = NULL;
    size_t skip = 1;
    if (c == '"')
      rep = "\\\"";
    else if (c == '\\')
      rep = "\\\\";
    else if (c == '\n')
      rep = "\\n";
    else if (c == '\r')
      rep = "\\r";
    else if (c == '\t')
      rep = "\\t";
    else if (c < 0x20 || c == 0x7F) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      rep = esc;
    } else if (c >= 0x80) {
      skip = utf8_seq(s + i, n - i);
      if (skip == 0) {
        rep = "\\ufffd";
        skip = 1;
      }
    }
    if (rep) {
      mprpc__textbuf_append(tb, s + run, i - run);
      mprpc__textbuf_puts(tb, rep);
      run = i + skip;
    }
    i += skip;
  }
  mprpc__textbuf_append(tb, s + run, n - run);
  return mprpc__textbuf_putc(tb, '"');
}
