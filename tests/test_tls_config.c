/*
 * TLS through the everyday API: provider and channel options and config
 * keys, the facade (src/rt/defaults.c) putting the decorator over TCP, the
 * peer identity reaching handlers and the authenticator, reload, the
 * registry's tls=1 and a consumer without TLS skipping such endpoints,
 * failures seen by the consumer as MPRPC_ETLS with OpenSSL's reason, and
 * session resumption when a channel reconnects. Real loopback sockets;
 * certificates made at start by tests/support/tls_certs.sh (test_tls.c
 * tests the decorator itself).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/config.h"
#include "mprpc/controller.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "mprpc/registry.h"
#include "mprpc/rt.h"
#include "mprpc/server.h"
#include "mprpc/tls.h"
#include "registry/internal.h"

static char g_dir[256];

static const char *path(char *buf, const char *name) {
  snprintf(buf, 512, "%s/%s", g_dir, name);
  return buf;
}

/* ---- the service: echoes, or answers with the caller's TLS identity ----- */

static atomic_int g_auth_calls;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_auth_identity[512]; /* (g_mu) what the authenticator saw */

static void h_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                   Example__EchoResponse_Closure done, void *cd) {
  (void)svc;
  Example__EchoResponse out = EXAMPLE__ECHO_RESPONSE__INIT;
  char buf[600];
  if (strcmp(in->message, "whoami") == 0) {
    const char *id = mprpc_server_call_peer_identity(mprpc_server_call_from(cd));
    snprintf(buf, sizeof buf, "%s", id ? id : "(none)");
    out.message = buf;
  } else {
    out.message = in->message;
  }
  done(&out, cd);
}

static Example__EchoService_Service g_svc = EXAMPLE__ECHO_SERVICE__INIT(h_);

static int auth_tls(void *ud, const uint8_t *data, size_t len, const char *peer,
                    const char *identity) {
  (void)ud, (void)data, (void)len, (void)peer;
  atomic_fetch_add(&g_auth_calls, 1);
  pthread_mutex_lock(&g_mu);
  snprintf(g_auth_identity, sizeof g_auth_identity, "%s", identity ? identity : "(none)");
  pthread_mutex_unlock(&g_mu);
  /* Authorisation by identity: only client1 may call. */
  return identity && strstr(identity, "CN=client1") ? 0 : -1;
}

/* ---- helpers ---------------------------------------------------------------- */

static mprpc_config_t *cfg_of(const char *text) {
  mprpc_config_t *c;
  assert_int_equal(mprpc_config_new(&c), 0);
  assert_int_equal(mprpc_config_load_string(c, text, strlen(text), "test"), 0);
  return c;
}

/* A server on 127.0.0.1 from config text (the %s are g_dir). */
static mprpc_server_t *srv_from(const char *conf, mprpc_config_t **cfg_out) {
  char text[2048];
  snprintf(text, sizeof text, conf, g_dir, g_dir, g_dir, g_dir);
  mprpc_config_t *cfg = cfg_of(text);
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  mprpc_hostport_t hp;
  assert_int_equal(mprpc_server_opts_from_config(cfg, &o, &hp), 0);
  o.host = "127.0.0.1";
  o.port = 0;
  mprpc_server_t *s;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &g_svc.base), 0);
  assert_int_equal(mprpc_server_start(s), 0);
  *cfg_out = cfg;
  return s;
}

static mprpc_channel_t *chan_from(const char *conf, uint16_t port) {
  char text[2048], servers[64];
  snprintf(servers, sizeof servers, "127.0.0.1:%u", (unsigned)port);
  snprintf(text, sizeof text, conf, g_dir, g_dir, g_dir, g_dir);
  mprpc_config_t *cfg = cfg_of(text);
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  assert_int_equal(mprpc_channel_opts_from_config(cfg, &o), 0);
  o.servers = servers;
  o.max_retry = 0;
  o.timeout_ms = 5000;
  mprpc_channel_t *ch;
  int rc = mprpc_channel_new(&example__echo_service__descriptor, &o, &ch);
  mprpc_config_free(cfg); /* the channel copied what it keeps */
  assert_int_equal(rc, 0);
  return ch;
}

typedef struct res {
  int called;
  char msg[600];
} res_t;

static void on_echo(const Example__EchoResponse *r, void *arg) {
  res_t *x = arg;
  x->called++;
  snprintf(x->msg, sizeof x->msg, "%s", r && r->message ? r->message : "");
}

/* One synchronous call; the error code, with the text in why. */
static int call(mprpc_channel_t *ch, const char *msg, char *out, char *why, size_t whylen) {
  mprpc_controller_t *ctl = mprpc_controller_new();
  assert_non_null(ctl);
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = (char *)msg;
  res_t r = {0};
  mprpc_controller_use_next(ctl);
  example__echo_service__echo(mprpc_channel_service(ch), &req, on_echo, &r);
  assert_int_equal(r.called, 1);
  int rc = mprpc_controller_error_code(ctl);
  if (why)
    snprintf(why, whylen, "%s", mprpc_controller_error_text(ctl));
  if (out)
    snprintf(out, 600, "%s", r.msg);
  mprpc_controller_free(ctl);
  return rc;
}

#define SRV_TLS "tls_cert=%s/server.pem\ntls_key=%s/server.key\n"
#define CH_TLS "tls=on\ntls_ca=%s/ca.pem\n"
#define CH_MTLS "tls=on\ntls_ca=%s/ca.pem\ntls_cert=%s/client.pem\ntls_key=%s/client.key\n"

static int raw_connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  return fd;
}

/* The server closes fd within ms: EOF or a reset, not a timeout. */
static bool raw_closed_within(int fd, int ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  char b[256];
  for (;;) {
    int n = poll(&p, 1, ms);
    if (n <= 0)
      return false;
    ssize_t r = recv(fd, b, sizeof b, 0);
    if (r <= 0)
      return true;
  }
}

/* ---- options and keys -------------------------------------------------------- */

static void test_tls_config_keys_read_and_checked(void **state) {
  (void)state;
  mprpc_server_opts_t so;
  mprpc_server_opts_init(&so);
  mprpc_hostport_t hp;
  mprpc_config_t *c = cfg_of("tls_cert=/x/c.pem\ntls_key=/x/k.pem\ntls_ca=/x/ca.pem\n"
                             "tls_mode=optional\ntls_verify_client=required\n"
                             "tls_handshake_timeout=750ms\n");
  assert_int_equal(mprpc_server_opts_from_config(c, &so, &hp), 0);
  assert_string_equal(so.tls_cert, "/x/c.pem");
  assert_string_equal(so.tls_key, "/x/k.pem");
  assert_string_equal(so.tls_ca, "/x/ca.pem");
  assert_int_equal(so.tls_mode, MPRPC_SERVER_TLS_OPTIONAL);
  assert_int_equal(so.tls_verify_client, MPRPC_SERVER_TLS_VERIFY_REQUIRED);
  assert_int_equal(so.tls_handshake_timeout_ms, 750);
  mprpc_config_free(c);

  /* A certificate without a mode means TLS only, not plain. */
  mprpc_server_opts_init(&so);
  c = cfg_of("tls_cert=/x/c.pem\ntls_key=/x/k.pem\n");
  assert_int_equal(mprpc_server_opts_from_config(c, &so, &hp), 0);
  assert_int_equal(so.tls_mode, MPRPC_SERVER_TLS_REQUIRED);
  mprpc_config_free(c);

  static const char *const bad[] = {
      "tls_mode=sometimes\n",                             /* not a mode */
      "tls_mode=required\n",                              /* no certificate */
      "tls_cert=/x/c.pem\ntls_key=/x/k.pem\ntls_verify_client=required\n", /* no CA */
      "tls_cert=/x/c.pem\ntls_key=/x/k.pem\ntls_handshake_timeout=soon\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mprpc_server_opts_init(&so);
    c = cfg_of(bad[i]);
    assert_int_equal(mprpc_server_opts_from_config(c, &so, &hp), MPRPC_ECONFIG);
    assert_non_null(strstr(mprpc_config_error(c), "tls_"));
    mprpc_config_free(c);
  }

  mprpc_channel_opts_t co;
  mprpc_channel_opts_init(&co);
  assert_false(co.tls);
  assert_false(co.tls_no_verify);
  c = cfg_of("tls=on\ntls_ca=/x/ca.pem\ntls_cert=/x/c.pem\ntls_key=/x/k.pem\n"
             "tls_server_name=svc.example\n");
  assert_int_equal(mprpc_channel_opts_from_config(c, &co), 0);
  assert_true(co.tls);
  assert_false(co.tls_no_verify); /* verification stays on */
  assert_string_equal(co.tls_ca, "/x/ca.pem");
  assert_string_equal(co.tls_cert, "/x/c.pem");
  assert_string_equal(co.tls_key, "/x/k.pem");
  assert_string_equal(co.tls_server_name, "svc.example");
  mprpc_config_free(c);
  mprpc_channel_opts_init(&co); /* the strings pointed into the freed config */
  c = cfg_of("tls=on\ntls_verify=off\n");
  assert_int_equal(mprpc_channel_opts_from_config(c, &co), 0);
  assert_true(co.tls_no_verify);
  mprpc_config_free(c);
  mprpc_channel_opts_init(&co);
  c = cfg_of("tls=on\ntls_cert=/x/c.pem\n"); /* a certificate without its key */
  assert_int_equal(mprpc_channel_opts_from_config(c, &co), MPRPC_ECONFIG);
  assert_non_null(strstr(mprpc_config_error(c), "tls_key"));
  mprpc_config_free(c);
  c = cfg_of("tls=maybe\n");
  assert_int_equal(mprpc_channel_opts_from_config(c, &co), MPRPC_ECONFIG);
  mprpc_config_free(c);
  for (const char *const *k = (const char *const[]){"tls", "tls_ca", "tls_cert", "tls_key",
                                                     "tls_mode", "tls_verify_client",
                                                     "tls_handshake_timeout",
                                                     "tls_server_name", "tls_verify", NULL};
       *k; k++)
    assert_true(mprpc_config_key_known(*k));
}

static void test_tls_config_server_refuses_bad_files_at_start(void **state) {
  (void)state;
  char c1[512], k1[512];
  struct {
    const char *cert, *key, *want;
  } cases[] = {
      {"missing.pem", "server.key", "missing.pem"},
      {"server.pem", "client.key", "server.pem"}, /* the key is another's */
      {"ca.key", "server.key", "ca.key"},         /* not a certificate */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mprpc_server_opts_t o;
    mprpc_server_opts_init(&o);
    o.host = "127.0.0.1";
    o.tls_mode = MPRPC_SERVER_TLS_REQUIRED;
    o.tls_cert = path(c1, cases[i].cert);
    o.tls_key = path(k1, cases[i].key);
    mprpc_server_t *s = NULL;
    assert_int_equal(mprpc_server_new(&o, &s), MPRPC_ETLS);
    assert_null(s);
  }
  /* Same through mprpc_tls_ctx_new's text, which the ERROR line carries. */
  mprpc_tls_opts_t t = {.role = MPRPC_TLS_SERVER, .cert_file = path(c1, "server.pem"),
                        .key_file = path(k1, "client.key")};
  mprpc_tls_ctx_t *x;
  char err[512];
  assert_int_equal(mprpc_tls_ctx_new(&t, &x, err, sizeof err), MPRPC_ETLS);
  assert_non_null(strstr(err, "client.key"));
}

/* ---- identity, authentication, failures ------------------------------------ */

static void test_tls_config_mtls_identity_reaches_handler_and_authenticator(void **state) {
  (void)state;
  char text[1024];
  snprintf(text, sizeof text,
           "tls_cert=%s/server.pem\ntls_key=%s/server.key\ntls_ca=%s/ca.pem\n"
           "tls_verify_client=required\n",
           g_dir, g_dir, g_dir);
  mprpc_config_t *cfg = cfg_of(text);
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  mprpc_hostport_t hp;
  assert_int_equal(mprpc_server_opts_from_config(cfg, &o, &hp), 0);
  o.host = "127.0.0.1";
  o.authenticate_tls = auth_tls;
  atomic_store(&g_auth_calls, 0);
  mprpc_server_t *s;
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &g_svc.base), 0);
  assert_int_equal(mprpc_server_start(s), 0);

  mprpc_channel_t *ch = chan_from(CH_MTLS, mprpc_server_port(s));
  char out[600], why[300];
  int rc = call(ch, "whoami", out, why, sizeof why);
  if (rc != 0)
    fail_msg("mTLS call: %s: %s", mprpc_err_name(rc), why);
  assert_non_null(strstr(out, "subject=CN=client1,O=mprpc-test"));
  assert_non_null(strstr(out, "san=DNS:client1"));
  assert_int_equal(call(ch, "hello", out, NULL, 0), 0);
  assert_string_equal(out, "hello");
  assert_int_equal(atomic_load(&g_auth_calls), 1); /* once per connection */
  pthread_mutex_lock(&g_mu);
  assert_non_null(strstr(g_auth_identity, "CN=client1"));
  pthread_mutex_unlock(&g_mu);
  mprpc_channel_destroy(ch);

  /* Without a client certificate: refused in the handshake, and the
   * consumer is told why in OpenSSL's words. */
  ch = chan_from(CH_TLS, mprpc_server_port(s));
  assert_int_equal(call(ch, "hello", NULL, why, sizeof why), MPRPC_ETLS);
  assert_non_null(strstr(why, "certificate"));
  mprpc_channel_destroy(ch);
  mprpc_server_destroy(s);
  mprpc_config_free(cfg);
}

static void expect_channel_fails(const char *conf, const char *srv_conf, const char *reason) {
  mprpc_config_t *cfg;
  mprpc_server_t *s = srv_from(srv_conf, &cfg);
  mprpc_channel_t *ch = chan_from(conf, mprpc_server_port(s));
  char why[300];
  assert_int_equal(call(ch, "hello", NULL, why, sizeof why), MPRPC_ETLS);
  if (!strstr(why, reason))
    fail_msg("error text '%s' lacks '%s'", why, reason);
  mprpc_channel_destroy(ch);
  mprpc_server_destroy(s);
  mprpc_config_free(cfg);
}

static void test_tls_config_wrong_ca_name_expired_fail_with_etls(void **state) {
  (void)state;
  expect_channel_fails("tls=on\ntls_ca=%s/ca2.pem\n", SRV_TLS, "certificate verify failed");
  expect_channel_fails("tls=on\ntls_ca=%s/ca.pem\ntls_server_name=svc.example\n", SRV_TLS,
                       "certificate verify failed");
  expect_channel_fails(CH_TLS, "tls_cert=%s/expired.pem\ntls_key=%s/expired.key\n",
                       "certificate has expired");
  /* other.pem is for 127.0.0.2 and other.example: the endpoint 127.0.0.1
   * is checked against its IP SANs. */
  expect_channel_fails(CH_TLS, "tls_cert=%s/other.pem\ntls_key=%s/other.key\n",
                       "certificate verify failed");
}

static void test_tls_config_ip_san_and_no_verify(void **state) {
  (void)state;
  mprpc_config_t *cfg;
  mprpc_server_t *s = srv_from(SRV_TLS, &cfg);
  char out[600];
  /* The endpoint's host 127.0.0.1 matches server.pem's IP SAN. */
  mprpc_channel_t *ch = chan_from(CH_TLS, mprpc_server_port(s));
  assert_int_equal(call(ch, "ip", out, NULL, 0), 0);
  assert_string_equal(out, "ip");
  mprpc_channel_destroy(ch);
  /* tls_server_name=localhost: the DNS SAN. */
  ch = chan_from("tls=on\ntls_ca=%s/ca.pem\ntls_server_name=localhost\n", mprpc_server_port(s));
  assert_int_equal(call(ch, "dns", out, NULL, 0), 0);
  mprpc_channel_destroy(ch);
  /* Explicitly off: an untrusted certificate is accepted. */
  ch = chan_from("tls=on\ntls_ca=%s/ca2.pem\ntls_verify=off\n", mprpc_server_port(s));
  assert_int_equal(call(ch, "insecure", out, NULL, 0), 0);
  mprpc_channel_destroy(ch);
  mprpc_server_destroy(s);
  mprpc_config_free(cfg);
}

static void test_tls_config_plain_client_on_required_closed_promptly(void **state) {
  (void)state;
  mprpc_config_t *cfg;
  mprpc_server_t *s = srv_from(SRV_TLS "tls_handshake_timeout=20s\n", &cfg);
  int fd = raw_connect(mprpc_server_port(s));
  assert_int_equal(send(fd, "PRPC\0\0\0\0\0\0\0\0", 12, 0), 12);
  /* Closed on the first byte, long before the 20 s handshake timeout. */
  assert_true(raw_closed_within(fd, 3000));
  close(fd);
  /* A plain channel fails too, without a hang. */
  mprpc_channel_t *ch = chan_from("", mprpc_server_port(s));
  assert_int_not_equal(call(ch, "hello", NULL, NULL, 0), 0);
  mprpc_channel_destroy(ch);
  mprpc_server_destroy(s);
  mprpc_config_free(cfg);
}

static void test_tls_config_handshake_timeout_closes_silent_client(void **state) {
  (void)state;
  mprpc_config_t *cfg;
  mprpc_server_t *s = srv_from(SRV_TLS "tls_handshake_timeout=200ms\n", &cfg);
  int fd = raw_connect(mprpc_server_port(s));
  assert_true(raw_closed_within(fd, 10000)); /* says nothing: closed at 200 ms */
  close(fd);
  /* The server serves others as before. */
  mprpc_channel_t *ch = chan_from(CH_TLS, mprpc_server_port(s));
  assert_int_equal(call(ch, "after", NULL, NULL, 0), 0);
  mprpc_channel_destroy(ch);
  mprpc_server_destroy(s);
  mprpc_config_free(cfg);
}

/* Plain and TLS channels calling one optional port at the same time. */
typedef struct par {
  mprpc_channel_t *ch;
  const char *tag;
  int ok;
} par_t;

static void *par_run(void *arg) {
  par_t *p = arg;
  for (int i = 0; i < 50; i++) {
    char msg[32], out[600];
    snprintf(msg, sizeof msg, "%s-%d", p->tag, i);
    if (call(p->ch, msg, out, NULL, 0) == 0 && strcmp(out, msg) == 0)
      p->ok++;
  }
  return NULL;
}

static void test_tls_config_optional_port_serves_both_at_once(void **state) {
  (void)state;
  mprpc_config_t *cfg;
  mprpc_server_t *s = srv_from(SRV_TLS "tls_mode=optional\n", &cfg);
  par_t a = {chan_from(CH_TLS, mprpc_server_port(s)), "tls", 0};
  par_t b = {chan_from("", mprpc_server_port(s)), "plain", 0};
  pthread_t ta, tb;
  assert_int_equal(pthread_create(&ta, NULL, par_run, &a), 0);
  assert_int_equal(pthread_create(&tb, NULL, par_run, &b), 0);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  assert_int_equal(a.ok, 50);
  assert_int_equal(b.ok, 50);
  char out[600];
  assert_int_equal(call(b.ch, "whoami", out, NULL, 0), 0);
  assert_string_equal(out, "(none)");
  mprpc_channel_destroy(a.ch);
  mprpc_channel_destroy(b.ch);
  mprpc_server_destroy(s);
  mprpc_config_free(cfg);
}

typedef struct big_res {
  int called;
  const char *want;
  bool same;
} big_res_t;

static void on_big_echo(const Example__EchoResponse *r, void *arg) {
  big_res_t *x = arg;
  x->called++;
  x->same = r && r->message && strcmp(r->message, x->want) == 0;
}

/* Large answers leave the provider from the handler's message through the
 * TLS layer (src/core/pack_ref.c): whole, on both kinds of connection. */
static void test_tls_config_large_messages_both_kinds(void **state) {
  (void)state;
  mprpc_config_t *cfg;
  mprpc_server_t *s = srv_from(SRV_TLS "tls_mode=optional\n", &cfg);
  mprpc_channel_t *chs[2] = {chan_from(CH_TLS, mprpc_server_port(s)),
                             chan_from("", mprpc_server_port(s))};
  const size_t sizes[] = {20 * 1024, 64 * 1024, 300 * 1024};
  for (int k = 0; k < 2; k++) {
    for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
      char *text = malloc(sizes[j] + 1);
      assert_non_null(text);
      for (size_t i = 0; i < sizes[j]; i++)
        text[i] = (char)('A' + (i * 13 + j) % 26);
      text[sizes[j]] = 0;
      Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
      req.message = text;
      big_res_t r = {.want = text};
      mprpc_controller_t *ctl = mprpc_controller_new();
      assert_non_null(ctl);
      mprpc_controller_use_next(ctl);
      example__echo_service__echo(mprpc_channel_service(chs[k]), &req, on_big_echo, &r);
      if (mprpc_controller_error_code(ctl))
        fail_msg("%s, %zu bytes: %s", k ? "plain" : "tls", sizes[j],
                 mprpc_controller_error_text(ctl));
      mprpc_controller_free(ctl);
      assert_int_equal(r.called, 1);
      assert_true(r.same);
      free(text);
    }
    mprpc_channel_destroy(chs[k]);
  }
  mprpc_server_destroy(s);
  mprpc_config_free(cfg);
}

/* ---- reload ------------------------------------------------------------------- */

static void copy_file(const char *from, const char *to) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s.tmp' && mv '%s.tmp' '%s'", from, to, to, to);
  assert_int_equal(system(cmd), 0);
}

static void test_tls_config_reload_on_call(void **state) {
  (void)state;
  char a[512], b[512], k[512];
  copy_file(path(a, "server.pem"), path(b, "live.pem"));
  copy_file(path(a, "server.key"), path(k, "live.key"));
  mprpc_config_t *cfg;
  mprpc_server_t *s = srv_from("tls_cert=%s/live.pem\ntls_key=%s/live.key\n", &cfg);
  mprpc_channel_t *ch = chan_from(CH_TLS, mprpc_server_port(s));
  assert_int_equal(call(ch, "before", NULL, NULL, 0), 0);
  /* A renewal: new certificate and key, then the call. */
  copy_file(path(a, "renewed.pem"), b);
  copy_file(path(a, "renewed.key"), k);
  char err[512];
  assert_int_equal(mprpc_server_reload_tls(s, err, sizeof err), 0);
  assert_string_equal(err, "");
  mprpc_channel_t *ch2 = chan_from(CH_TLS, mprpc_server_port(s));
  assert_int_equal(call(ch2, "renewed", NULL, NULL, 0), 0);
  /* A broken file: refused with its name, the server keeps the last. */
  FILE *f = fopen(b, "w");
  assert_non_null(f);
  fputs("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", f);
  fclose(f);
  assert_int_equal(mprpc_server_reload_tls(s, err, sizeof err), MPRPC_ETLS);
  assert_non_null(strstr(err, "live.pem"));
  mprpc_channel_t *ch3 = chan_from(CH_TLS, mprpc_server_port(s));
  assert_int_equal(call(ch3, "kept", NULL, NULL, 0), 0);
  assert_int_equal(call(ch, "old connection", NULL, NULL, 0), 0);
  mprpc_channel_destroy(ch);
  mprpc_channel_destroy(ch2);
  mprpc_channel_destroy(ch3);
  mprpc_server_destroy(s);
  mprpc_config_free(cfg);

  /* A server without TLS has nothing to reload. */
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = "127.0.0.1";
  assert_int_equal(mprpc_server_new(&o, &s), 0);
  assert_int_equal(mprpc_server_reload_tls(s, err, sizeof err), MPRPC_EUNSUPPORTED);
  mprpc_server_destroy(s);
}

/* ---- resumption through the channel --------------------------------------- */

static void test_tls_config_channel_resumes_session_on_reconnect(void **state) {
  (void)state;
  mprpc_config_t *cfg;
  /* The provider closes idle connections, so the next call reconnects. */
  mprpc_server_t *s = srv_from(SRV_TLS "idle_timeout=150ms\n", &cfg);
  char ca[512];
  mprpc_tls_opts_t t = {.role = MPRPC_TLS_CLIENT, .ca_file = path(ca, "ca.pem")};
  mprpc_tls_ctx_t *x;
  assert_int_equal(mprpc_tls_ctx_new(&t, &x, NULL, 0), 0);
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  char servers[64];
  snprintf(servers, sizeof servers, "127.0.0.1:%u", (unsigned)mprpc_server_port(s));
  o.servers = servers;
  o.tls = true;
  assert_int_equal(mprpc_default_loop(&o.loop), 0);
  o.transport = mprpc_tls_transport(mprpc_tcp_transport(), x);
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new_in(&example__echo_service__descriptor, &o, &ch), 0);
  assert_int_equal(call(ch, "first", NULL, NULL, 0), 0);
  mprpc_channel_stats_t st;
  mprpc_tls_stats_t ts;
  /* Calls until one went over a new connection (the provider closed the
   * idle one after 150 ms), bounded: 5 tries, 300 ms apart. */
  for (int i = 0; i < 5; i++) {
    usleep(300 * 1000);
    assert_int_equal(call(ch, "again", NULL, NULL, 0), 0);
    mprpc_tls_stats(x, &ts);
    if (ts.handshakes >= 2)
      break;
  }
  mprpc_channel_stats(ch, &st);
  mprpc_tls_stats(x, &ts);
  assert_true(st.reconnects >= 2);
  assert_true(ts.handshakes >= 2);
  assert_true(ts.resumed >= 1);
  mprpc_channel_destroy(ch);
  mprpc_tls_ctx_free(x);
  mprpc_server_destroy(s);
  mprpc_config_free(cfg);
}

/* ---- the registry: tls=1 ---------------------------------------------------- */

static void test_tls_config_registry_tls_only_provider_skipped_by_plain_channel(void **state) {
  (void)state;
  /* The published line and node data carry tls=1, and parse back. */
  mprpc_instance_t in = {.service = "example.EchoService", .host = "127.0.0.1", .port = 7,
                         .tls = true};
  char line[256];
  mprpc__reg_format_line(&in, line, sizeof line);
  assert_non_null(strstr(line, " tls=1"));
  char *zd = mprpc__zk_data_format(&in);
  assert_non_null(zd);
  assert_non_null(strstr(zd, "\ntls=1\n"));
  mprpc__reg_list_t l = {0};
  assert_int_equal(mprpc__zk_data_parse("example.EchoService", "127.0.0.1:7", zd, &l), 0);
  assert_int_equal(l.n, 1);
  assert_true(l.items[0].tls);
  mprpc__reg_list_clear(&l);
  free(zd);

  char file[512], uri[600];
  path(file, "endpoints");
  unlink(file);
  snprintf(uri, sizeof uri, "file://%s?poll_ms=20", file);
  mprpc_registry_t reg;
  char err[200];
  assert_int_equal(mprpc_registry_open(uri, &reg, err, sizeof err), 0);
  char k[512], c[512];
  mprpc_server_opts_t so;
  mprpc_server_opts_init(&so);
  so.host = "127.0.0.1";
  so.registry = reg;
  so.tls_mode = MPRPC_SERVER_TLS_REQUIRED;
  so.tls_cert = path(c, "server.pem");
  so.tls_key = path(k, "server.key");
  mprpc_server_t *s;
  assert_int_equal(mprpc_server_new(&so, &s), 0);
  assert_int_equal(mprpc_server_add_service(s, &g_svc.base), 0);
  assert_int_equal(mprpc_server_start(s), 0);
  FILE *f = fopen(file, "r");
  assert_non_null(f);
  char got[512] = "";
  assert_non_null(fgets(got, sizeof got, f));
  fclose(f);
  assert_non_null(strstr(got, " tls=1"));

  /* A plain consumer: a clear error, at once, no plain bytes sent. */
  mprpc_channel_opts_t o;
  mprpc_channel_opts_init(&o);
  mprpc_registry_t creg;
  assert_int_equal(mprpc_registry_open(uri, &creg, err, sizeof err), 0);
  o.registry = creg;
  o.own_registry = true;
  o.timeout_ms = 3000;
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  char why[300];
  assert_int_equal(call(ch, "plain", NULL, why, sizeof why), MPRPC_ENOENDPOINT);
  if (!strstr(why, "requires TLS"))
    fail_msg("error text '%s' does not say the endpoint requires TLS", why);
  mprpc_channel_destroy(ch);

  /* A TLS consumer of the same registry calls it. */
  mprpc_channel_opts_init(&o);
  assert_int_equal(mprpc_registry_open(uri, &creg, err, sizeof err), 0);
  o.registry = creg;
  o.own_registry = true;
  o.tls = true;
  o.tls_ca = path(c, "ca.pem");
  assert_int_equal(mprpc_channel_new(&example__echo_service__descriptor, &o, &ch), 0);
  char out[600];
  assert_int_equal(call(ch, "over tls", out, NULL, 0), 0);
  assert_string_equal(out, "over tls");
  mprpc_channel_destroy(ch);
  mprpc_server_destroy(s);
  mprpc_registry_close(reg);
}

/* ---- setup -------------------------------------------------------------------- */

static int make_certs(void **state) {
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/mprpc-test-tlsc.XXXXXX");
  if (!mkdtemp(g_dir))
    return -1;
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "sh tests/support/tls_certs.sh '%s'", g_dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "could not make test certificates with: %s\n", cmd);
    return -1;
  }
  return 0;
}

static int remove_certs(void **state) {
  (void)state;
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tls_config_keys_read_and_checked),
      cmocka_unit_test(test_tls_config_server_refuses_bad_files_at_start),
      cmocka_unit_test(test_tls_config_mtls_identity_reaches_handler_and_authenticator),
      cmocka_unit_test(test_tls_config_wrong_ca_name_expired_fail_with_etls),
      cmocka_unit_test(test_tls_config_ip_san_and_no_verify),
      cmocka_unit_test(test_tls_config_plain_client_on_required_closed_promptly),
      cmocka_unit_test(test_tls_config_handshake_timeout_closes_silent_client),
      cmocka_unit_test(test_tls_config_optional_port_serves_both_at_once),
      cmocka_unit_test(test_tls_config_large_messages_both_kinds),
      cmocka_unit_test(test_tls_config_reload_on_call),
      cmocka_unit_test(test_tls_config_channel_resumes_session_on_reconnect),
      cmocka_unit_test(test_tls_config_registry_tls_only_provider_skipped_by_plain_channel),
  };
  return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
