/*
 * TLS as a transport decorator.
 *
 * mprpc_tls_transport(inner, ctx) returns a transport (include/mprpc/
 * transport.h) that speaks TLS 1.2/1.3 over `inner` (normally
 * mprpc_tcp_transport()): the provider and channel engines run unchanged on
 * top of it and never see the TLS library, which is kept in src/rt/tls*.c.
 *
 * - A server context accepts TLS only (mode REQUIRED), TLS and plain on the
 *   same port told apart by the first byte (OPTIONAL: 0x16 starts a TLS
 *   handshake, anything else is passed through as plain bytes, as brpc
 *   does), or plain only (OFF). It may ask for client certificates (mTLS).
 * - A client context verifies the server's certificate by default, against
 *   the CA file (or the system's trust store) and the server name: the
 *   endpoint's host unless server_name is set; DNS names are also sent as
 *   SNI, IP addresses are checked against IP subjectAltNames.
 * - The handshake happens before any application byte. Bytes written
 *   before it completes are buffered (they count against the high-water
 *   mark); an outgoing connection's on_connect runs once the handshake has
 *   completed. A failed handshake closes that connection only: one WARN
 *   line (rate limited) with the peer and the library's reason, a failure
 *   counted by reason, and on_close(reason, MPRPC_ETLS) to the handler:
 *   MPRPC_CLOSE_CONNECT_FAILED for an outgoing connection that never
 *   reported on_connect, MPRPC_CLOSE_RESET otherwise. The text is then
 *   available from mprpc_conn_error_text() while on_close runs.
 * - After a verified handshake the peer's certificate subject and SANs are
 *   available from mprpc_conn_peer_identity().
 * - Client contexts keep the last session of each server (name, host and
 *   port) and resume it on the next connection; servers issue tickets.
 * - mprpc_tls_ctx_reload() re-reads the files; new connections use them,
 *   established ones keep what they negotiated.
 *
 * Threading: one context may serve connections on any number of loops and
 * threads; new/reload/free/stats may be called from any thread.
 * Functions return 0 or a negative MPRPC_E* code (MPRPC_ETLS for what the
 * TLS library refused; the library's reason is written to err).
 */
#ifndef MPRPC_TLS_H
#define MPRPC_TLS_H

#include "mprpc/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprpc/transport.h"

MPRPC_BEGIN_DECLS

typedef struct mprpc_tls_ctx mprpc_tls_ctx_t;

typedef enum mprpc_tls_role {
  MPRPC_TLS_CLIENT = 0,
  MPRPC_TLS_SERVER = 1,
} mprpc_tls_role_t;

/* Server: which connections must speak TLS. */
typedef enum mprpc_tls_mode {
  MPRPC_TLS_REQUIRED = 0, /* TLS only; plain bytes close the connection */
  MPRPC_TLS_OPTIONAL = 1, /* TLS or plain on the same port (first byte) */
  MPRPC_TLS_OFF = 2,      /* plain only: the decorator passes bytes through */
} mprpc_tls_mode_t;

/* How the peer's certificate is checked. DEFAULT is REQUIRED for a client
 * (the server must present a certificate that verifies) and OFF for a
 * server (no client certificate is asked for). */
typedef enum mprpc_tls_verify {
  MPRPC_TLS_VERIFY_DEFAULT = 0,
  MPRPC_TLS_VERIFY_OFF = 1,      /* no check (a client: insecure, explicit) */
  MPRPC_TLS_VERIFY_OPTIONAL = 2, /* server: a client certificate is asked
                                    for; one that is sent must verify */
  MPRPC_TLS_VERIFY_REQUIRED = 3, /* the peer must send one that verifies */
} mprpc_tls_verify_t;

/* A zeroed struct is a valid start (then set role and files); the strings
 * are copied by mprpc_tls_ctx_new. Files are PEM. The *_pem fields give the
 * PEM text itself instead of a file (for a secret store, or tests); a file
 * wins when both are set. */
typedef struct mprpc_tls_opts {
  int role;                /* MPRPC_TLS_CLIENT or MPRPC_TLS_SERVER */
  const char *cert_file;   /* our certificate chain (server: required) */
  const char *key_file;    /* its private key (unencrypted) */
  const char *ca_file;     /* trusted CAs for the peer's certificate;
                              client: NULL = the system's trust store */
  const char *cert_pem, *key_pem, *ca_pem;
  int mode;                /* server: mprpc_tls_mode_t */
  int verify_peer;         /* mprpc_tls_verify_t */
  const char *server_name; /* client: name to send (SNI) and to check the
                              certificate against; NULL = the host given to
                              connect (a DNS name or an IP address) */
  uint64_t handshake_timeout_ns; /* 0 = 5 s; counted from accept (server)
                                    or from the TCP connect (client) */
  bool no_resumption;      /* client: never resume a session (every
                              connection a full handshake; benchmarks) */
} mprpc_tls_opts_t;

/* Builds a context: loads and checks the certificate, key and CA files now,
 * so that a bad file is reported at start, not at the first connection.
 * MPRPC_ETLS with "cert_file <path>: <library's reason>" in err (err may be
 * NULL) for an unreadable or malformed file or a key that does not match
 * the certificate; MPRPC_EINVAL for bad options. The caller frees *out with
 * mprpc_tls_ctx_free. */
int mprpc_tls_ctx_new(const mprpc_tls_opts_t *opts, mprpc_tls_ctx_t **out, char *err,
                      size_t errlen);

/* Re-reads the files named at creation (PEM text given inline is reused).
 * On success new connections use the new certificate, key and CAs, and a
 * client's cached sessions are dropped; established connections go on
 * with what they have. On failure (MPRPC_ETLS, reason in err) the context
 * keeps the previous ones. Any thread. */
int mprpc_tls_ctx_reload(mprpc_tls_ctx_t *ctx, char *err, size_t errlen);

/* Drops the caller's reference. Connections and listeners still open keep
 * the context alive until they are closed. NULL is a no-op. */
void mprpc_tls_ctx_free(mprpc_tls_ctx_t *ctx);

/* The decorator. A context decorates one inner transport: a later call with
 * another inner replaces it for connections and listeners made afterwards
 * (call it before the transport is in use on other threads).
 * A client context's transport only connects (listen: MPRPC_EINVAL), a
 * server context's only listens (connect: MPRPC_EINVAL). Listeners must be
 * closed with listener_close (the TLS listener is not freed by a loop
 * group's free). */
mprpc_transport_t mprpc_tls_transport(mprpc_transport_t inner, mprpc_tls_ctx_t *ctx);

/* Why connections failed, one counter each. */
typedef enum mprpc_tls_fail {
  MPRPC_TLS_FAIL_PROTOCOL = 0, /* not TLS, bad record, no common version or
                                  cipher, a record failing its check */
  MPRPC_TLS_FAIL_VERIFY,       /* our check of the peer's certificate:
                                  untrusted, expired, wrong name, missing */
  MPRPC_TLS_FAIL_PEER_ALERT,   /* the peer refused us with a fatal alert
                                  (it did not trust our certificate, ...) */
  MPRPC_TLS_FAIL_TIMEOUT,      /* no complete handshake within the timeout */
  MPRPC_TLS_FAIL_PLAIN,        /* plain bytes on a REQUIRED port */
  MPRPC_TLS_FAIL_CLOSED,       /* the peer closed or reset mid-handshake */
  MPRPC_TLS_FAIL_COUNT
} mprpc_tls_fail_t;

/* "protocol", "verify", "peer_alert", "timeout", "plain", "closed";
 * "unknown" otherwise. */
const char *mprpc_tls_fail_name(int reason);

typedef struct mprpc_tls_stats {
  uint64_t handshakes;      /* completed handshakes */
  uint64_t resumed;         /* of which resumed a session (no certificate
                               exchange) */
  uint64_t plain;           /* plain connections accepted (OPTIONAL, OFF) */
  uint64_t failures[MPRPC_TLS_FAIL_COUNT]; /* connections ended by a TLS
                               failure, during or after the handshake */
  uint64_t app_bytes_out;   /* plaintext handed to TLS */
  uint64_t wire_bytes_out;  /* TLS records handed to the inner transport
                               (includes handshakes and alerts) */
  uint64_t reloads;         /* successful mprpc_tls_ctx_reload calls */
} mprpc_tls_stats_t;

/* A snapshot of the context's counters (monotonic since creation). */
void mprpc_tls_stats(const mprpc_tls_ctx_t *ctx, mprpc_tls_stats_t *out);

/* The text of the context's latest failure (a handshake, a reload), "" if
 * none; copied into buf (NUL-terminated, truncated to len). Returns buf. */
char *mprpc_tls_last_error(mprpc_tls_ctx_t *ctx, char *buf, size_t len);

MPRPC_END_DECLS
#endif
