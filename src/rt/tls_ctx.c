/*
 * The TLS context of include/mprpc/tls.h: options, the certificate, key and
 * CA files (read and checked at creation, re-read by reload), the SSL_CTX
 * that new connections use, counters, and the peer identity text. The
 * connections themselves are src/rt/tls.c; these two files are the only
 * ones that include OpenSSL.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/tls.h"
#include "rt/tls_internal.h"

int mprpc__tls_ex_index = -1; /* SSL ex_data slot holding the tconn */
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ex_init(void) {
  mprpc__tls_ex_index = SSL_get_ex_new_index(0, "mprpc tconn", NULL, NULL, NULL);
}

void mprpc__tls_ctx_ref(mprpc_tls_ctx_t *x) { atomic_fetch_add(&x->refs, 1); }

void mprpc__tls_ctx_unref(mprpc_tls_ctx_t *x) {
  if (!x || atomic_fetch_sub(&x->refs, 1) != 1)
    return;
  SSL_CTX_free(x->ssl);
  for (int i = 0; i < SESS_MAX; i++)
    SSL_SESSION_free(x->sess[i].s);
  pthread_mutex_destroy(&x->mu);
  free(x->cert_file);
  free(x->key_file);
  free(x->ca_file);
  free(x->cert_pem);
  free(x->key_pem);
  free(x->ca_pem);
  free(x->server_name);
  free(x);
}

/* Drains OpenSSL's error queue of this thread into "lib: reason; ..." (at
 * most three entries, the first ones being the root causes). */
void mprpc__tls_ssl_errors(char *buf, size_t len) {
  size_t used = 0;
  int n = 0;
  unsigned long e;
  const char *data;
  int flags;
  if (len)
    buf[0] = '\0';
  while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
    if (n++ >= 3 || used + 1 >= len)
      continue;
    const char *lib = ERR_lib_error_string(e);
    const char *why = ERR_reason_error_string(e);
    char code[64];
    if (ERR_SYSTEM_ERROR(e)) {
      why = strerror_r(ERR_GET_REASON(e), code, sizeof code); /* OpenSSL 3 gives NULL */
    } else if (!why) {
      snprintf(code, sizeof code, "error %08lx", e);
      why = code;
    }
    int w = snprintf(buf + used, len - used, "%s%s%s%s%s%s%s", n > 1 ? "; " : "", lib ? lib : "",
                     lib ? ": " : "", why, (flags & ERR_TXT_STRING) && data && *data ? " (" : "",
                     (flags & ERR_TXT_STRING) && data && *data ? data : "",
                     (flags & ERR_TXT_STRING) && data && *data ? ")" : "");
    if (w > 0)
      used += (size_t)w < len - used ? (size_t)w : len - used - 1;
  }
  if (n == 0 && len)
    snprintf(buf, len, "no reason given by the TLS library");
}

static void mprpc__tls_put_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void mprpc__tls_put_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static int no_password(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return 0; /* never prompt on a terminal: an encrypted key fails to load */
}


/* Loads PEM text or a file into s; `what` names it in the error text. */
static int load_cert(SSL_CTX *s, const char *file, const char *pem) {
  if (file)
    return SSL_CTX_use_certificate_chain_file(s, file) == 1;
  BIO *b = BIO_new_mem_buf(pem, -1);
  if (!b)
    return 0;
  X509 *x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
  int ok = x && SSL_CTX_use_certificate(s, x) == 1;
  X509_free(x);
  while (ok) { /* the rest of the chain */
    X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (!ca) {
      ERR_clear_error(); /* the end of the text */
      break;
    }
    if (SSL_CTX_add0_chain_cert(s, ca) != 1) {
      X509_free(ca);
      ok = 0;
    }
  }
  BIO_free(b);
  return ok;
}

static int load_key(SSL_CTX *s, const char *file, const char *pem) {
  if (file)
    return SSL_CTX_use_PrivateKey_file(s, file, SSL_FILETYPE_PEM) == 1;
  BIO *b = BIO_new_mem_buf(pem, -1);
  if (!b)
    return 0;
  EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, no_password, NULL);
  int ok = k && SSL_CTX_use_PrivateKey(s, k) == 1;
  EVP_PKEY_free(k);
  BIO_free(b);
  return ok;
}

static int load_ca(SSL_CTX *s, const char *file, const char *pem, bool server) {
  if (file) {
    if (SSL_CTX_load_verify_locations(s, file, NULL) != 1)
      return 0;
    if (server) {
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(file);
      if (names)
        SSL_CTX_set_client_CA_list(s, names); /* tells clients which CAs we take */
    }
    return 1;
  }
  BIO *b = BIO_new_mem_buf(pem, -1);
  if (!b)
    return 0;
  X509_STORE *st = SSL_CTX_get_cert_store(s);
  int n = 0;
  for (;;) {
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (!x)
      break;
    if (X509_STORE_add_cert(st, x) == 1) {
      n++;
      if (server)
        SSL_CTX_add_client_CA(s, x);
    }
    X509_free(x);
  }
  BIO_free(b);
  if (n > 0)
    ERR_clear_error(); /* the PEM end-of-text "error" */
  return n > 0;
}

/* A new SSL_CTX from the context's options. Called with no lock held; reads
 * only fields that never change after creation. */
static int build_ssl_ctx(mprpc_tls_ctx_t *x, SSL_CTX **out, char *err, size_t errlen) {
  char why[WHYTEXT];
  bool server = x->role == MPRPC_TLS_SERVER;
  ERR_clear_error();
  SSL_CTX *s = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!s) {
    mprpc__tls_ssl_errors(why, sizeof why);
    mprpc__tls_put_err(err, errlen, "SSL_CTX_new: %s", why);
    return MPRPC_ETLS;
  }
  SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
  /* Client-initiated renegotiation (TLS 1.2) only costs the server CPU. */
  SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_default_passwd_cb(s, no_password);
  const char *what = NULL, *name = NULL;
  if (x->cert_file || x->cert_pem) {
    what = "cert_file", name = x->cert_file ? x->cert_file : "(inline PEM)";
    if (!load_cert(s, x->cert_file, x->cert_pem))
      goto fail;
    what = "key_file", name = x->key_file ? x->key_file : "(inline PEM)";
    if (!x->key_file && !x->key_pem) {
      mprpc__tls_put_err(err, errlen, "cert_file %s: no key_file given for it", name);
      SSL_CTX_free(s);
      return MPRPC_EINVAL;
    }
    if (!load_key(s, x->key_file, x->key_pem))
      goto fail;
    /* Also done by the key load in OpenSSL 3; kept for clarity of the
     * error: the key must belong to the certificate. */
    if (SSL_CTX_check_private_key(s) != 1)
      goto fail;
  }
  if (x->ca_file || x->ca_pem) {
    what = "ca_file", name = x->ca_file ? x->ca_file : "(inline PEM)";
    if (!load_ca(s, x->ca_file, x->ca_pem, server))
      goto fail;
  } else if (!server && x->verify != MPRPC_TLS_VERIFY_OFF) {
    SSL_CTX_set_default_verify_paths(s);
  }
  int vmode = SSL_VERIFY_NONE;
  if (server) {
    if (x->verify == MPRPC_TLS_VERIFY_OPTIONAL)
      vmode = SSL_VERIFY_PEER;
    else if (x->verify == MPRPC_TLS_VERIFY_REQUIRED)
      vmode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    /* Needed for resumption once client certificates are asked for. */
    static const unsigned char sid[] = "mprpc";
    SSL_CTX_set_session_id_context(s, sid, sizeof sid - 1);
  } else {
    if (x->verify != MPRPC_TLS_VERIFY_OFF)
      vmode = SSL_VERIFY_PEER;
    /* Sessions come to us through the callback (TLS 1.3 tickets arrive
     * after the handshake); the cache keyed by server lives in the ctx. */
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(s, mprpc__tls_on_new_session);
  }
  SSL_CTX_set_verify(s, vmode, NULL);
  *out = s;
  return 0;
fail:
  mprpc__tls_ssl_errors(why, sizeof why);
  if (err && errlen)
    snprintf(err, errlen, "%s %s: %s", what, name, why);
  SSL_CTX_free(s);
  return MPRPC_ETLS;
}

static char *dup_or_null(const char *s, bool *oom) {
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    *oom = true;
  return d;
}

int mprpc_tls_ctx_new(const mprpc_tls_opts_t *o, mprpc_tls_ctx_t **out, char *err,
                      size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  if (!o || !out || (o->role != MPRPC_TLS_CLIENT && o->role != MPRPC_TLS_SERVER) ||
      o->mode < MPRPC_TLS_REQUIRED || o->mode > MPRPC_TLS_OFF ||
      o->verify_peer < MPRPC_TLS_VERIFY_DEFAULT || o->verify_peer > MPRPC_TLS_VERIFY_REQUIRED) {
    mprpc__tls_put_err(err, errlen, "tls: bad options");
    return MPRPC_EINVAL;
  }
  bool server = o->role == MPRPC_TLS_SERVER;
  if (server && o->mode != MPRPC_TLS_OFF && !(o->cert_file || o->cert_pem)) {
    mprpc__tls_put_err(err, errlen, "tls: a server needs cert_file and key_file");
    return MPRPC_EINVAL;
  }
  pthread_once(&ex_once, ex_init);
  mprpc_tls_ctx_t *x = calloc(1, sizeof *x);
  if (!x)
    return MPRPC_ENOMEM;
  atomic_init(&x->refs, 1);
  x->role = o->role;
  x->mode = server ? o->mode : MPRPC_TLS_REQUIRED;
  x->verify = o->verify_peer;
  if (x->verify == MPRPC_TLS_VERIFY_DEFAULT)
    x->verify = server ? MPRPC_TLS_VERIFY_OFF : MPRPC_TLS_VERIFY_REQUIRED;
  x->hs_timeout_ns = o->handshake_timeout_ns ? o->handshake_timeout_ns : DEFAULT_HS_TIMEOUT_NS;
  x->no_resumption = !server && o->no_resumption;
  bool oom = false;
  x->cert_file = dup_or_null(o->cert_file, &oom);
  x->key_file = dup_or_null(o->key_file, &oom);
  x->ca_file = dup_or_null(o->ca_file, &oom);
  x->cert_pem = o->cert_file ? NULL : dup_or_null(o->cert_pem, &oom);
  x->key_pem = o->key_file ? NULL : dup_or_null(o->key_pem, &oom);
  x->ca_pem = o->ca_file ? NULL : dup_or_null(o->ca_pem, &oom);
  x->server_name = dup_or_null(o->server_name, &oom);
  if (pthread_mutex_init(&x->mu, NULL) != 0) {
    oom = true;
    x->role = -1; /* mutex not made: do not destroy it */
  }
  int rc = oom ? MPRPC_ENOMEM : build_ssl_ctx(x, &x->ssl, err, errlen);
  if (rc != 0) {
    if (x->role == -1) {
      /* mprpc__tls_ctx_unref would destroy the mutex: free by hand. */
      free(x->cert_file), free(x->key_file), free(x->ca_file);
      free(x->cert_pem), free(x->key_pem), free(x->ca_pem), free(x->server_name);
      free(x);
    } else {
      mprpc__tls_ctx_unref(x);
    }
    return rc;
  }
  *out = x;
  return 0;
}

int mprpc_tls_ctx_reload(mprpc_tls_ctx_t *x, char *err, size_t errlen) {
  if (!x)
    return MPRPC_EINVAL;
  if (err && errlen)
    err[0] = '\0';
  char why[WHYTEXT] = "";
  SSL_CTX *s = NULL;
  int rc = build_ssl_ctx(x, &s, why, sizeof why);
  pthread_mutex_lock(&x->mu);
  SSL_CTX *old = NULL;
  if (rc == 0) {
    old = x->ssl;
    x->ssl = s;
    /* Sessions were checked against the old trust: start afresh. */
    for (int i = 0; i < SESS_MAX; i++) {
      SSL_SESSION_free(x->sess[i].s);
      x->sess[i].s = NULL;
      x->sess[i].key[0] = '\0';
    }
  } else {
    snprintf(x->last_err, sizeof x->last_err, "reload: %s", why);
  }
  pthread_mutex_unlock(&x->mu);
  SSL_CTX_free(old); /* connections made with it hold their own reference */
  if (rc == 0) {
    atomic_fetch_add(&x->reloads, 1);
    MPRPC_LOG_INFO("tls: reloaded %s%s%s", x->cert_file ? x->cert_file : "",
                   x->cert_file && x->ca_file ? ", " : "", x->ca_file ? x->ca_file : "");
  } else {
    MPRPC_LOG_WARN("tls: reload failed, keeping the previous certificates: %s", why);
    if (err && errlen)
      snprintf(err, errlen, "%s", why);
  }
  return rc;
}

void mprpc_tls_ctx_free(mprpc_tls_ctx_t *x) { mprpc__tls_ctx_unref(x); }

void mprpc_tls_stats(const mprpc_tls_ctx_t *cx, mprpc_tls_stats_t *out) {
  mprpc_tls_ctx_t *x = (mprpc_tls_ctx_t *)cx; /* atomics are read only */
  memset(out, 0, sizeof *out);
  out->handshakes = atomic_load(&x->handshakes);
  out->resumed = atomic_load(&x->resumed);
  out->plain = atomic_load(&x->plain);
  out->reloads = atomic_load(&x->reloads);
  for (int i = 0; i < MPRPC_TLS_FAIL_COUNT; i++)
    out->failures[i] = atomic_load(&x->failures[i]);
  out->app_bytes_out = atomic_load(&x->app_out);
  out->wire_bytes_out = atomic_load(&x->wire_out);
}

char *mprpc_tls_last_error(mprpc_tls_ctx_t *x, char *buf, size_t len) {
  if (!len)
    return buf;
  pthread_mutex_lock(&x->mu);
  snprintf(buf, len, "%s", x->last_err);
  pthread_mutex_unlock(&x->mu);
  return buf;
}

const char *mprpc_tls_fail_name(int reason) {
  static const char *const names[MPRPC_TLS_FAIL_COUNT] = {
      "protocol", "verify", "peer_alert", "timeout", "plain", "closed"};
  return reason >= 0 && reason < MPRPC_TLS_FAIL_COUNT ? names[reason] : "unknown";
}


/* ---- peer identity ------------------------------------------------------------- */

/* "subject=...;san=..." of a verified peer, or NULL. */
char *mprpc__tls_identity(SSL *ssl) {
  if (SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE || SSL_get_verify_result(ssl) != X509_V_OK)
    return NULL;
  X509 *cert = SSL_get0_peer_certificate(ssl);
  if (!cert)
    return NULL;
  BIO *b = BIO_new(BIO_s_mem());
  if (!b)
    return NULL;
  BIO_puts(b, "subject=");
  X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253 & ~XN_FLAG_DN_REV);
  BIO_puts(b, ";san=");
  GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
  int n = gens ? sk_GENERAL_NAME_num(gens) : 0, out = 0;
  for (int i = 0; i < n; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
    const char *tag = NULL;
    char ip[INET6_ADDRSTRLEN] = "";
    const ASN1_STRING *s = NULL;
    if (g->type == GEN_DNS)
      tag = "DNS", s = g->d.dNSName;
    else if (g->type == GEN_URI)
      tag = "URI", s = g->d.uniformResourceIdentifier;
    else if (g->type == GEN_EMAIL)
      tag = "email", s = g->d.rfc822Name;
    else if (g->type == GEN_IPADD) {
      tag = "IP";
      const ASN1_OCTET_STRING *a = g->d.iPAddress;
      if (a->length == 4)
        inet_ntop(AF_INET, a->data, ip, sizeof ip);
      else if (a->length == 16)
        inet_ntop(AF_INET6, a->data, ip, sizeof ip);
      else
        continue;
    }
    if (!tag)
      continue;
    BIO_printf(b, "%s%s:", out++ ? "," : "", tag);
    if (s) {
      /* Printable ASCII only: the string goes to logs and authenticators. */
      const unsigned char *d = ASN1_STRING_get0_data(s);
      for (int k = 0; k < ASN1_STRING_length(s); k++)
        BIO_printf(b, "%c", d[k] >= 0x20 && d[k] < 0x7f && d[k] != ';' && d[k] != ',' ? d[k] : '?');
    } else {
      BIO_puts(b, ip);
    }
  }
  GENERAL_NAMES_free(gens);
  char *p;
  long len = BIO_get_mem_data(b, &p);
  char *id = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (id) {
    memcpy(id, p, (size_t)len);
    id[len] = '\0';
  }
  BIO_free(b);
  return id;
}

