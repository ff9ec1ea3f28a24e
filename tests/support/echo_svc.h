/*
 * The provider suites' test service (tests/test_server.c on the fake
 * environment, tests/test_server_tcp.c on loopback): example.EchoService
 * whose Echo handler obeys commands in the request message.
 *
 *   "hold"       keep the closure; the test completes it (held_complete)
 *   "null"       closure(NULL)                      -> EINTERNAL
 *   "twice"      closure called twice inline        -> one response "first"
 *   "error"      set_error(4242, "application error")
 *   "meta"       answer with the call's meta fields
 *   "sleep:N"    block N ms, then echo (real loops only)
 *   "zip:N..."   answer with compress_type N (set_response_compress), echo
 *   "advance:N"  move the fake clock N ms (echo_svc_use_clock), then echo
 *   anything     echo the message and the attachment back
 *
 * Held calls may be completed from any thread. cmocka helpers: include
 * after <cmocka.h>'s prerequisites; failures fail the running test.
 */
#ifndef MPRPC_TEST_ECHO_SVC_H
#define MPRPC_TEST_ECHO_SVC_H

#include <stdint.h>

#include "echo.pb-c.h"
#include "fake_loop.h"
#include "test_client.h"

#define GUARD_MS 10000 /* hang guard for waits on real loops */

extern Example__EchoService_Service echo_svc;

/* "advance:N" moves this loop's clock (NULL: the command only echoes). */
void echo_svc_use_clock(fake_loop_t *L);

int held_count(void);
/* Completes held call i (0 = oldest) with message msg, or NULL output. */
void held_complete(int i, const char *msg);
/* The closure data of held call i (to read its context), still held. */
void *held_data(int i);
/* Removes held call i without completing it: the caller now owns it. */
void held_take(int i, Example__EchoResponse_Closure *cl, void **data);
/* Forgets every held call (a handler that "died" with them). */
void held_forget(void);

/* An Echo request carrying text; m must outlive the request. */
tclient_req_t echo_req(int64_t cid, Example__EchoRequest *m, const char *text);
/* An Echo request whose payload is the packed request compressed with type
 * (0: plain); the payload lives in *buf, which the caller frees. */
tclient_req_t zecho_req(int64_t cid, int type, const char *text, uint8_t **buf);
/* Expects a success whose payload is compressed with type (0: plain) and
 * inflates to an EchoResponse carrying want. */
void expect_zecho(const tclient_resp_t *r, int64_t cid, int type, const char *want);

/* An authenticator accepting "secret"; counts its calls in *(int *)ud. */
int auth_cb(void *ud, const uint8_t *data, size_t len, const char *peer);
/* A completion callback counting in *(int *)ud (shutdown, stop). */
void done_cb(void *ud);

#endif
