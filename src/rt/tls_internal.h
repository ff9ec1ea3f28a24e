/*
 * Internals shared by the TLS context (src/rt/tls_ctx.c: options, files,
 * the SSL_CTX, reload, counters, peer identity) and the TLS connections
 * (src/rt/tls.c: the transport decorator). Nothing here is public.
 */
#ifndef MPRPC_RT_TLS_INTERNAL_H
#define MPRPC_RT_TLS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "mprpc/tls.h"

#define DEFAULT_HS_TIMEOUT_NS (5 * MPRPC_NS_PER_S)
#define SESS_MAX 64                 /* cached client sessions (servers) */
#define LOG_PER_SEC 20              /* WARN lines per context per second */
#define ERRTEXT 320 /* a connection's or the context's error text */
#define WHYTEXT 200 /* OpenSSL's reasons, as part of the above */

typedef struct sess_entry {
  char key[160];
  SSL_SESSION *s;
  uint64_t used; /* LRU tick */
} sess_entry_t;

struct mprpc_tls_ctx {
  atomic_int refs;
  int role, mode, verify;
  char *cert_file, *key_file, *ca_file;
  char *cert_pem, *key_pem, *ca_pem;
  char *server_name;
  uint64_t hs_timeout_ns;
  bool no_resumption; /* client: never offer a cached session */
  mprpc_transport_t inner;

  pthread_mutex_t mu;
  SSL_CTX *ssl; /* (mu) what new connections use */
  sess_entry_t sess[SESS_MAX]; /* (mu) */
  uint64_t sess_tick;          /* (mu) */
  char last_err[ERRTEXT];      /* (mu) */
  uint64_t log_window;         /* (mu) second of the current log window */
  unsigned log_lines, log_dropped; /* (mu) */

  atomic_uint_fast64_t handshakes, resumed, plain, reloads;
  atomic_uint_fast64_t failures[MPRPC_TLS_FAIL_COUNT];
  atomic_uint_fast64_t app_out, wire_out;
};

/* The SSL ex_data slot holding a connection's tconn (set once by
 * mprpc_tls_ctx_new). */
extern int mprpc__tls_ex_index;

void mprpc__tls_ctx_ref(mprpc_tls_ctx_t *x);
void mprpc__tls_ctx_unref(mprpc_tls_ctx_t *x);
/* Drains this thread's OpenSSL error queue into "lib: reason; ..." (at
 * most three entries, the root causes first). */
void mprpc__tls_ssl_errors(char *buf, size_t len);
/* "subject=...;san=..." of a verified peer (malloc'd), or NULL. */
char *mprpc__tls_identity(SSL *ssl);
/* OpenSSL's new-session callback of client contexts (src/rt/tls.c). */
int mprpc__tls_on_new_session(SSL *ssl, SSL_SESSION *sess);

#endif
