/*
 * Addresses: the one parser of "host:port" that channels, registries, config
 * files and command lines share, so each accepts the same forms with the
 * same error texts.
 *
 * Accepted: `host:port` where host is an IPv4 address (1.2.3.4) or a
 * hostname (letters, digits, '-', '_', dots; not all digits), and
 * `[v6]:port` with an IPv6 address in brackets. A bare IPv6 address with a
 * port (`::1:8000`) is ambiguous and refused ("put an IPv6 host in
 * brackets"). Ports are decimal 1..65535 (0 too with MPRPC_ADDR_PORT0).
 * Pure: no resolver, no sockets (it lives in the core).
 *
 * Functions return 0 or a negative MPRPC_E* code.
 */
#ifndef MPRPC_ADDR_H
#define MPRPC_ADDR_H

#include "mprpc/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

MPRPC_BEGIN_DECLS

/* host:port with host an IPv4 address, a hostname, or [IPv6]. */
typedef struct mprpc_hostport {
  char host[256]; /* without brackets */
  uint16_t port;
  int family;     /* 4, 6, or 0 for a hostname */
} mprpc_hostport_t;

#define MPRPC_ADDR_PORT0 1 /* accept port 0 (listen addresses: any free port) */

/* Parses s[0..len) (no surrounding spaces) into *out. MPRPC_EADDR with a
 * reason in err (may be NULL) naming the address, e.g.
 * "bad address '::1:80' (put an IPv6 host in brackets)". */
int mprpc_addr_parse(const char *s, size_t len, int flags, mprpc_hostport_t *out, char *err,
                     size_t errlen);

/* A host alone: h[0..n), bracketed or not; a bare IPv6 address is accepted
 * here since no port follows. 0 or MPRPC_EADDR. */
int mprpc_addr_parse_host(const char *h, size_t n, mprpc_hostport_t *out);

/* "host:port", or "[v6]:port" when host contains ':'. Truncates to len. */
void mprpc_addr_format(const char *host, uint16_t port, char *buf, size_t len);

/* The parser on a NUL-terminated string; MPRPC_EINVAL when malformed
 * (kept for the config getters' callers). */
int mprpc_parse_hostport(const char *s, bool allow_port0, mprpc_hostport_t *out);

MPRPC_END_DECLS
#endif
