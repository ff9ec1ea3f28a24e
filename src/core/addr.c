/*
 * The address parser (include/mprpc/addr.h). IPv4 and IPv6 literals are
 * checked here by hand rather than with inet_pton, so the core stays free of
 * <arpa/inet.h>; the grammar is the textual one of RFC 4291 section 2.2
 * (no zone ids).
 */
#include "mprpc/addr.h"

#include <stdio.h>
#include <string.h>

#include "mprpc/errors.h"

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Dotted quad, each part 0..255 without leading zeros beyond "0". */
static bool is_ipv4(const char *s, size_t n) {
  size_t i = 0;
  for (int part = 0; part < 4; part++) {
    if (part > 0) {
      if (i >= n || s[i] != '.')
        return false;
      i++;
    }
    size_t start = i;
    unsigned v = 0;
    while (i < n && is_digit(s[i]) && i - start < 3)
      v = v * 10 + (unsigned)(s[i++] - '0');
    if (i == start || v > 255 || (i - start > 1 && s[start] == '0'))
      return false;
  }
  return i == n;
}

/* Eight groups of 1-4 hex digits, one "::" standing for one or more zero
 * groups, the last 32 bits optionally as a dotted quad. */
static bool is_ipv6(const char *s, size_t n) {
  if (n < 2 || n > 45)
    return false;
  int groups = 0;
  bool gap = false;
  size_t i = 0;
  if (s[0] == ':') {
    if (s[1] != ':')
      return false;
    gap = true;
    i = 2;
    if (i == n)
      return true; /* "::" */
  }
  while (i < n) {
    size_t start = i;
    while (i < n && is_hex(s[i]) && i - start < 5)
      i++;
    if (i < n && s[i] == '.') { /* embedded IPv4: the last 2 groups */
      if (!is_ipv4(s + start, n - start))
        return false;
      groups += 2;
      i = n;
      break;
    }
    if (i == start || i - start > 4)
      return false;
    groups++;
    if (i == n)
      break;
    if (s[i] != ':')
      return false;
    i++;
    if (i < n && s[i] == ':') {
      if (gap)
        return false;
      gap = true;
      i++;
      if (i == n)
        break;
    } else if (i == n) {
      return false; /* trailing single ':' */
    }
  }
  return gap ? groups < 8 : groups == 8;
}

static bool is_hostname(const char *h, size_t n) {
  if (n == 0 || n > 253)
    return false;
  size_t label = 0;
  bool all_numeric = true;
  for (size_t i = 0; i < n; i++) {
    char c = h[i];
    if (c == '.') {
      if (label == 0 || h[i - 1] == '-')
        return false;
      label = 0;
      continue;
    }
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c);
    if (!alnum && c != '-' && c != '_')
      return false;
    if (c == '-' && label == 0)
      return false;
    if (!is_digit(c))
      all_numeric = false;
    if (++label > 63)
      return false;
  }
  if (h[n - 1] == '-')
    return false;
  /* "1.2.3.999" is a broken IPv4 address, not a hostname */
  return !all_numeric;
}

static int check_host(const char *h, size_t n, bool v6, mprpc_hostport_t *out) {
  if (n == 0 || n >= sizeof out->host)
    return MPRPC_EADDR;
  int family;
  if (v6)
    family = is_ipv6(h, n) ? 6 : -1;
  else if (is_ipv4(h, n))
    family = 4;
  else
    family = is_hostname(h, n) ? 0 : -1;
  if (family < 0)
    return MPRPC_EADDR;
  memcpy(out->host, h, n);
  out->host[n] = '\0';
  out->family = family;
  return 0;
}

int mprpc_addr_parse_host(const char *h, size_t n, mprpc_hostport_t *out) {
  if (!h || !out)
    return MPRPC_EINVAL;
  if (n >= 2 && h[0] == '[' && h[n - 1] == ']')
    return check_host(h + 1, n - 2, true, out);
  if (check_host(h, n, false, out) == 0)
    return 0;
  return check_host(h, n, true, out); /* a bare IPv6 address */
}

#define BAD(...)                                                                                  \
  do {                                                                                            \
    if (err && errlen)                                                                            \
      snprintf(err, errlen, __VA_ARGS__);                                                         \
    return MPRPC_EADDR;                                                                           \
  } while (0)

int mprpc_addr_parse(const char *s, size_t len, int flags, mprpc_hostport_t *out, char *err,
                     size_t errlen) {
  if (!s || !out)
    return MPRPC_EINVAL;
  int show = len > 200 ? 200 : (int)len;
  const char *end = s + len, *colon;
  const char *h = s, *he;
  bool v6 = false;
  if (len > 0 && s[0] == '[') {
    const char *rb = memchr(s, ']', len);
    if (!rb || rb + 1 >= end || rb[1] != ':')
      BAD("bad address '%.*s' (expected [v6addr]:port)", show, s);
    h = s + 1;
    he = rb;
    colon = rb + 1;
    v6 = true;
  } else {
    colon = memchr(s, ':', len);
    if (!colon)
      BAD("bad address '%.*s' (expected host:port)", show, s);
    if (memchr(colon + 1, ':', (size_t)(end - colon - 1)))
      BAD("bad address '%.*s' (put an IPv6 host in brackets)", show, s);
    he = colon;
  }
  mprpc_hostport_t hp;
  memset(&hp, 0, sizeof hp);
  if (he == h)
    BAD("bad address '%.*s' (empty host)", show, s);
  if (check_host(h, (size_t)(he - h), v6, &hp) != 0)
    BAD(v6 ? "bad address '%.*s' (not an IPv6 address)"
           : "bad address '%.*s' (not an IPv4 address or hostname)",
        show, s);
  const char *ps = colon + 1;
  unsigned long v = 0;
  if (ps >= end)
    BAD("bad address '%.*s' (missing port)", show, s);
  for (const char *p = ps; p < end; p++) {
    if (!is_digit(*p) || v > 65535)
      BAD("bad port '%.*s' in '%.*s' (expected %s..65535)", (int)(end - ps), ps, show, s,
          flags & MPRPC_ADDR_PORT0 ? "0" : "1");
    v = v * 10 + (unsigned long)(*p - '0');
  }
  if ((v == 0 && !(flags & MPRPC_ADDR_PORT0)) || v > 65535)
    BAD("bad port '%.*s' in '%.*s' (expected %s..65535)", (int)(end - ps), ps, show, s,
        flags & MPRPC_ADDR_PORT0 ? "0" : "1");
  hp.port = (uint16_t)v;
  *out = hp;
  return 0;
}

int mprpc_parse_hostport(const char *s, bool allow_port0, mprpc_hostport_t *out) {
  if (!s || !out)
    return MPRPC_EINVAL;
  return mprpc_addr_parse(s, strlen(s), allow_port0 ? MPRPC_ADDR_PORT0 : 0, out, NULL, 0) == 0
             ? 0
             : MPRPC_EINVAL;
}

void mprpc_addr_format(const char *host, uint16_t port, char *buf, size_t len) {
  if (strchr(host, ':'))
    snprintf(buf, len, "[%s]:%u", host, (unsigned)port);
  else
    snprintf(buf, len, "%s:%u", host, (unsigned)port);
}
