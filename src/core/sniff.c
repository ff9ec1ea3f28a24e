/* See sniff.h. A linear scan over a handful of signatures: the table is
 * tiny and the function runs once per connection. */
#include "sniff.h"

#include <string.h>

typedef struct sig {
  const char *bytes;
  size_t len;
  mprpc__proto_t proto;
} sig_t;

#define SIG(s, proto) {s, sizeof(s) - 1, proto}
static const sig_t sigs[] = {
    SIG("PRPC", MPRPC__PROTO_BAIDU),
    SIG("GET ", MPRPC__PROTO_HTTP),
    SIG("POST ", MPRPC__PROTO_HTTP),
    SIG("PUT ", MPRPC__PROTO_HTTP),
    SIG("DELETE ", MPRPC__PROTO_HTTP),
    SIG("HEAD ", MPRPC__PROTO_HTTP),
    SIG("OPTIONS ", MPRPC__PROTO_HTTP),
    SIG("PATCH ", MPRPC__PROTO_HTTP),
    SIG("\x16\x03", MPRPC__PROTO_TLS),
};
#undef SIG

mprpc__proto_t mprpc__sniff(const uint8_t *p, size_t len) {
  if (len == 0)
    return MPRPC__PROTO_NEED_MORE;
  int maybe = 0;
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    const sig_t *s = &sigs[i];
    size_t n = len < s->len ? len : s->len;
    if (memcmp(p, s->bytes, n) != 0)
      continue;
    if (n == s->len)
      return s->proto; /* signatures are prefix-free, so the first is the one */
    maybe = 1;
  }
  return maybe ? MPRPC__PROTO_NEED_MORE : MPRPC__PROTO_UNKNOWN;
}

const char *mprpc__proto_name(mprpc__proto_t proto) {
  switch (proto) {
  case MPRPC__PROTO_NEED_MORE:
    return "need_more";
  case MPRPC__PROTO_BAIDU:
    return "baidu_std";
  case MPRPC__PROTO_HTTP:
    return "http";
  case MPRPC__PROTO_TLS:
    return "tls";
  case MPRPC__PROTO_UNKNOWN:
    break;
  }
  return "unknown";
}
