/* Version patterns and groups; see select.h. */
#include "core/select.h"

#include <string.h>

static bool comp_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '+' || c == '-';
}

/* One alternative pat[0..n): components, '*' only as the last one. */
static bool alt_valid(const char *p, size_t n) {
  if (n == 0)
    return false;
  size_t comp = 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (c == '.') {
      if (comp == 0)
        return false;
      comp = 0;
    } else if (c == '*') {
      if (comp != 0 || i + 1 != n)
        return false;
      comp = 1;
    } else if (comp_char(c)) {
      comp++;
    } else {
      return false;
    }
  }
  return comp > 0;
}

bool mprpc__version_pattern_valid(const char *pattern) {
  if (!pattern || !*pattern || strlen(pattern) > MPRPC__VERSION_PATTERN_MAX)
    return false;
  const char *p = pattern;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (!alt_valid(p, n))
      return false;
    if (!comma)
      return true;
    p = comma + 1;
  }
}

static bool alt_match(const char *p, size_t n, const char *v) {
  if (n == 1 && p[0] == '*')
    return true;
  if (!v || !*v)
    return false;
  size_t vl = strlen(v);
  if (p[n - 1] == '*') {
    /* "A.B.*": v is "A.B" or starts with "A.B." */
    size_t pre = n - 2; /* without ".*" */
    if (vl < pre || memcmp(v, p, pre) != 0)
      return false;
    return vl == pre || v[pre] == '.';
  }
  return vl == n && memcmp(v, p, n) == 0;
}

bool mprpc__version_match(const char *pattern, const char *version) {
  if (!pattern || !*pattern)
    return true;
  if (!mprpc__version_pattern_valid(pattern))
    return false;
  const char *p = pattern;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (alt_match(p, n, version))
      return true;
    if (!comma)
      return false;
    p = comma + 1;
  }
}

const char *mprpc__group_of(const char *group) {
  return group && *group ? group : MPRPC__DEFAULT_GROUP;
}

bool mprpc__group_match(const char *want, const char *have) {
  return strcmp(mprpc__group_of(want), mprpc__group_of(have)) == 0;
}

bool mprpc__group_valid(const char *g) {
  size_t n = g ? strlen(g) : 0;
  if (n == 0 || n > 64)
    return false;
  for (size_t i = 0; i < n; i++)
    if ((!comp_char(g[i]) && g[i] != '.') || g[i] == '+')
      return false;
  return true;
}

bool mprpc__select_instance(const mprpc__select_t *sel, const mprpc_instance_t *inst) {
  if (!sel)
    return true;
  if (sel->group && !mprpc__group_match(sel->group, inst->group))
    return false;
  return !sel->version || mprpc__version_match(sel->version, inst->version);
}

size_t mprpc__select_filter(const mprpc__select_t *sel, const mprpc_instance_t *items, size_t n,
                            bool *keep) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    keep[i] = mprpc__select_instance(sel, &items[i]);
    k += keep[i];
  }
  return k;
}
