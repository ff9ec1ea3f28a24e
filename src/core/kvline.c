/* The key=value line splitter; see kvline.h. */
#include "core/kvline.h"

#include <string.h>

/* '\r' too: a stray CR before the line end (or a CR CR LF file) must not
 * end up inside a value. */
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

bool mprpc__kv_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

void mprpc__kv_init(mprpc__kv_iter_t *it, const char *text, size_t len,
                    const char *extra_key_chars) {
  it->text = text;
  it->len = text ? len : 0;
  it->pos = 0;
  it->line = 0;
  it->extra_key_chars = extra_key_chars;
  if (it->len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) /* UTF-8 byte order mark */
    it->pos = 3;
}

int mprpc__kv_next(mprpc__kv_iter_t *it, mprpc__kv_t *out) {
  while (it->pos < it->len) {
    it->line++;
    const char *ls = it->text + it->pos;
    const char *nl = memchr(ls, '\n', it->len - it->pos);
    size_t ll = nl ? (size_t)(nl - ls) : it->len - it->pos;
    it->pos += ll + (nl ? 1 : 0);
    memset(out, 0, sizeof *out);
    out->line = it->line;
    if (memchr(ls, '\0', ll)) {
      out->text = "";
      return MPRPC__KV_ENUL;
    }
    while (ll && is_space(*ls))
      ls++, ll--;
    while (ll && is_space(ls[ll - 1]))
      ll--;
    out->text = ls;
    out->tlen = ll;
    if (ll == 0 || ls[0] == '#')
      continue;
    const char *eq = memchr(ls, '=', ll);
    if (!eq)
      return MPRPC__KV_ENOEQ;
    size_t kl = (size_t)(eq - ls);
    while (kl && is_space(ls[kl - 1]))
      kl--;
    const char *vs = eq + 1;
    size_t vl = ll - (size_t)(vs - ls);
    while (vl && is_space(*vs))
      vs++, vl--;
    out->key = ls;
    out->klen = kl;
    out->value = vs;
    out->vlen = vl;
    if (kl == 0)
      return MPRPC__KV_EEMPTYKEY;
    for (size_t i = 0; i < kl; i++)
      if (!mprpc__kv_key_char(ls[i]) &&
          !(it->extra_key_chars && strchr(it->extra_key_chars, ls[i])))
        return MPRPC__KV_EBADKEY;
    return MPRPC__KV_ENTRY;
  }
  return MPRPC__KV_END;
}

const char *mprpc__kv_strerror(int rc) {
  switch (rc) {
  case MPRPC__KV_ENUL: return "line contains a NUL byte";
  case MPRPC__KV_ENOEQ: return "expected key=value";
  case MPRPC__KV_EEMPTYKEY: return "empty key";
  case MPRPC__KV_EBADKEY: return "invalid key";
  default: return "ok";
  }
}
