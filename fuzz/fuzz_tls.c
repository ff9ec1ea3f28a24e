/*
 * Fuzz target "tls": arbitrary bytes, split arbitrarily, arrive as the
 * inbound stream of one accepted connection of a TLS server (src/rt/tls.c)
 * over the fake in-memory transport and fake loop of
 * tests/support/fake_env.h. The server's certificate is a self-signed P-256 one
 * made once, in memory, with the OpenSSL API (no files).
 *
 * Whatever arrives, the decorator must not crash or leak; on_close reaches
 * the server's handler exactly once; without a completed handshake (which
 * random bytes cannot make: the server's random differs every run) no
 * plaintext reaches the handler on a REQUIRED port; on an OPTIONAL port a
 * stream not starting with 0x16 reaches it unchanged.
 *
 * Input layout:
 *   byte 0   bits 0-1: 0 REQUIRED, 1 OPTIONAL, 2 REQUIRED + client
 *            certificates required, 3 OPTIONAL + client certificates
 *            optional; bit 2: the handler closes (flush) after the stream;
 *            bit 3: move the clock past the handshake timeout at the end
 *   byte 1   chunk size for feeding (0 = one byte at a time)
 *   the rest the byte stream
 *
 * Seeds in fuzz/corpus/tls/: real ClientHellos (TLS 1.3 and 1.2) captured
 * from `openssl s_client -connect 127.0.0.1:PORT -servername localhost
 * [-tls1_2]` by a listener that saved the first record, each behind two
 * layout bytes; a truncated one; plain baidu_std bytes for both modes; a
 * handshake record header with garbage behind it; an alert as first record.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/tls.h"
#include "support/check.h"
#include "tests/support/fake_env.h"

/* The inner transport: the fake in-memory one of tests/support/fake_env.h,
 * on its fake loop; the harness plays the client through it. */
static fake_env_t E;

/* ---- the server's handler ---- */

static struct {
  mprpc_transport_t tp;
  mprpc_conn_t *c; /* the TLS connection */
  mprpc_rbuf_t in;
  size_t got;
  const uint8_t *expect; /* OPTIONAL + plain: the bytes must match */
  size_t expect_len;
  int closes, reason, err;
} H;

static void h_on_data(mprpc_conn_t *c, void *ud, mprpc_rbuf_t *in) {
  (void)ud;
  FUZZ_CHECK(c == H.c && H.closes == 0);
  size_t n = mprpc_rbuf_len(in);
  const uint8_t *p = mprpc_rbuf_data(in);
  if (H.expect) {
    FUZZ_CHECK(H.got + n <= H.expect_len);
    FUZZ_CHECK(memcmp(p, H.expect + H.got, n) == 0);
  }
  H.got += n;
  /* Echo a little: the write path runs too. */
  struct iovec v = {(void *)p, n < 64 ? n : 64};
  (void)mprpc_conn_writev(H.tp, c, &v, 1);
  mprpc_rbuf_consume(in, n);
}

static void h_on_close(mprpc_conn_t *c, void *ud, int reason, int err) {
  (void)ud;
  FUZZ_CHECK(c == H.c);
  H.closes++;
  H.reason = reason;
  H.err = err;
  (void)mprpc_conn_error_text(H.tp, c);
  (void)mprpc_conn_peer_identity(H.tp, c);
}

static const mprpc_conn_handler_t h_handler = {.on_data = h_on_data, .on_close = h_on_close};

static void h_on_accept(void *ud, mprpc_conn_t *c, mprpc_loop_t loop) {
  (void)ud, (void)loop;
  H.c = c;
  mprpc_conn_setup(H.tp, c, &h_handler, NULL, &H.in);
}

/* ---- contexts, made once ---- */

static char *pem_of(int (*w)(BIO *, void *), void *obj) {
  BIO *b = BIO_new(BIO_s_mem());
  FUZZ_CHECK(b && w(b, obj) == 1);
  char *p;
  long n = BIO_get_mem_data(b, &p);
  char *s = malloc((size_t)n + 1);
  FUZZ_CHECK(s);
  memcpy(s, p, (size_t)n);
  s[n] = '\0';
  BIO_free(b);
  return s;
}
static int w_cert(BIO *b, void *x) { return PEM_write_bio_X509(b, x); }
static int w_key(BIO *b, void *k) { return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL); }

static mprpc_tls_ctx_t *ctxs[4];

static void make_ctxs(void) {
  EVP_PKEY *k = EVP_EC_gen("P-256");
  FUZZ_CHECK(k);
  X509 *x = X509_new();
  FUZZ_CHECK(x);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
  X509_set_pubkey(x, k);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, n);
  FUZZ_CHECK(X509_sign(x, k, EVP_sha256()) > 0);
  char *cert = pem_of(w_cert, x), *key = pem_of(w_key, k);
  static const int modes[4] = {MPRPC_TLS_REQUIRED, MPRPC_TLS_OPTIONAL, MPRPC_TLS_REQUIRED,
                               MPRPC_TLS_OPTIONAL};
  static const int verify[4] = {MPRPC_TLS_VERIFY_OFF, MPRPC_TLS_VERIFY_OFF,
                                MPRPC_TLS_VERIFY_REQUIRED, MPRPC_TLS_VERIFY_OPTIONAL};
  for (int i = 0; i < 4; i++) {
    mprpc_tls_opts_t o = {.role = MPRPC_TLS_SERVER, .cert_pem = cert, .key_pem = key};
    o.ca_pem = cert; /* trusts itself as a client's CA */
    o.mode = modes[i];
    o.verify_peer = verify[i];
    o.handshake_timeout_ns = 5 * MPRPC_NS_PER_S;
    char err[256];
    int rc = mprpc_tls_ctx_new(&o, &ctxs[i], err, sizeof err);
    if (rc != 0)
      fprintf(stderr, "fuzz_tls: %s\n", err);
    FUZZ_CHECK(rc == 0);
  }
  free(cert);
  free(key);
  X509_free(x);
  EVP_PKEY_free(k);
}

static void free_ctxs(void) {
  for (int i = 0; i < 4; i++)
    mprpc_tls_ctx_free(ctxs[i]);
}

static void init_once(void) {
  static int made;
  if (!made) {
    made = 1;
    mprpc_log_set_level(MPRPC_LOG_LEVEL_OFF);
    make_ctxs();
    atexit(free_ctxs); /* the replay's leak check sees a clean exit */
  }
}

/* AFL++'s driver and libFuzzer call this once before the fork server
 * starts, so the key generation and the four contexts are not redone in
 * every forked child (which made each dry run time out under load). The
 * corpus replay does not call it: init_once runs from the first input. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  init_once();
  return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size < 2)
    return 0;
  init_once();
  uint8_t flags = data[0];
  size_t chunk = data[1] ? data[1] : 1;
  data += 2;
  size -= 2;
  int which = flags & 3;
  bool optional = which & 1;

  fake_env_init(&E, &(fake_loop_opts_t){.max_posts = 4096, .max_steps = 100000},
                &(fake_net_opts_t){.listen_port = 1, .accept_peer = "192.0.2.1:1"});
  mprpc_loop_t loop = E.loop;
  memset(&H, 0, sizeof H);
  mprpc_rbuf_init(&H.in);
  H.tp = mprpc_tls_transport(E.tr, ctxs[which]);
  if (optional && size > 0 && data[0] != 0x16) {
    H.expect = data;
    H.expect_len = size;
  }

  mprpc_listen_opts_t lo = {.loops = &loop, .nloops = 1, .on_accept = h_on_accept};
  mprpc_listener_t *l;
  FUZZ_CHECK(mprpc_transport_listen(H.tp, &lo, &l) == 0);
  fake_loop_run(E.L);
  fake_conn_t *ic = fake_net_accept(E.net);
  fake_loop_run(E.L);
  FUZZ_CHECK(H.c != NULL && fake_conn_set_up(ic));

  for (size_t off = 0; off < size && !fake_conn_closing(ic);) {
    size_t n = size - off < chunk ? size - off : chunk;
    fake_conn_deliver(ic, data + off, n);
    fake_loop_run(E.L);
    off += n;
  }
  if (!optional || !H.expect)
    FUZZ_CHECK(H.got == 0); /* no handshake, no plaintext */
  if ((flags & 4) && H.closes == 0)
    mprpc_conn_close(H.tp, H.c, true);
  if (flags & 8)
    fake_loop_advance(E.L, 6000);
  fake_loop_run(E.L);
  if (H.closes == 0 && !fake_conn_closing(ic))
    mprpc_conn_close(H.tp, H.c, false); /* still in the handshake, or plain */
  fake_loop_run(E.L);
  FUZZ_CHECK(H.closes == 1);
  FUZZ_CHECK(fake_conn_closed(ic));
  if (H.err)
    FUZZ_CHECK(H.err == MPRPC_ETLS || H.err == MPRPC_ENOMEM);
  mprpc_listener_close(H.tp, l);
  fake_env_free(&E); /* settles first */
  mprpc_rbuf_free(&H.in);
  return 0;
}
