/*
 * Protocol sniffing: which protocol a new connection speaks, from its first
 * bytes, so one port can serve baidu_std, the HTTP console and (later) TLS.
 *
 * Pure: bytes in, protocol out. A protocol is named once its whole signature
 * is present ("PRPC"; an HTTP method token and its space; the TLS record
 * type 0x16 and major version 0x03); MPRPC__PROTO_UNKNOWN as soon as no
 * signature can match any more, MPRPC__PROTO_NEED_MORE while one still can.
 * Never reads past p[len - 1] nor past the longest signature (8 bytes), so
 * the caller may pass everything it has.
 */
#ifndef MPRPC_CORE_SNIFF_H
#define MPRPC_CORE_SNIFF_H

#include <stddef.h>
#include <stdint.h>

typedef enum mprpc__proto {
  MPRPC__PROTO_NEED_MORE = 0,
  MPRPC__PROTO_BAIDU,   /* baidu_std: "PRPC" */
  MPRPC__PROTO_HTTP,    /* GET/POST/PUT/DELETE/HEAD/OPTIONS/PATCH + ' ' */
  MPRPC__PROTO_TLS,     /* handshake record: 0x16 0x03 */
  MPRPC__PROTO_UNKNOWN, /* none of the above: close the connection */
} mprpc__proto_t;

/* The longest signature: "OPTIONS " (8 bytes). Once a connection has sent
 * this many bytes the answer is never NEED_MORE. */
#define MPRPC__SNIFF_MAX 8

mprpc__proto_t mprpc__sniff(const uint8_t *p, size_t len);

/* "need_more", "baidu_std", "http", "tls", "unknown" (static). */
const char *mprpc__proto_name(mprpc__proto_t proto);

#endif
