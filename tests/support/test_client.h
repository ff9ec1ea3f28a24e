/*
 * A small blocking baidu_std client for tests: plain sockets on 127.0.0.1
 * plus the frame codec. It sends requests built from a tclient_req_t (or raw
 * bytes, for malformed-input tests) and reads response frames one at a time.
 * Every wait takes a timeout in milliseconds that only guards against hangs.
 * Functions return 0 or a negative MPRPC_E* code (MPRPC_ETIMEDOUT when the
 * guard expires, MPRPC_ECLOSED when the server closed the connection).
 */
#ifndef MPRPC_TEST_CLIENT_H
#define MPRPC_TEST_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "mprpc/frame.h"

typedef struct tclient {
  int fd;
  uint8_t *buf; /* received bytes; [off, len) not yet parsed */
  size_t off, len, cap;
} tclient_t;

typedef struct tclient_req {
  const char *service; /* NULL = "example.EchoService" */
  const char *method;  /* NULL = "Echo" */
  int64_t cid;
  const ProtobufCMessage *msg; /* packed as the payload; or raw below */
  const void *raw;
  size_t raw_len;
  const void *att;
  size_t att_len;
  int32_t timeout_ms;
  int32_t compress_type;
  int32_t content_type;
  const char *auth;   /* authentication_data, NULL = none */
  int64_t log_id, trace_id, span_id;
  const char *request_id;
  int response_meta;  /* 1: send a response meta instead (malformed) */
  int no_request;     /* 1: send neither request nor response meta */
} tclient_req_t;

typedef struct tclient_resp {
  int64_t cid;
  int32_t error_code;    /* positive wire code, 0 = success */
  int32_t compress_type; /* of the payload, from the response meta */
  char error_text[512];
  uint8_t *payload;
  size_t payload_len;
  uint8_t *att;
  size_t att_len;
} tclient_resp_t;

int tclient_connect(tclient_t *c, uint16_t port);
void tclient_close(tclient_t *c);
/* Encodes a whole frame into a malloc'd buffer (caller frees). */
int tclient_encode(const tclient_req_t *r, uint8_t **out, size_t *len);
int tclient_send_raw(tclient_t *c, const void *p, size_t n);
int tclient_send(tclient_t *c, const tclient_req_t *r);
/* Reads one response frame. Free with tclient_resp_free. */
int tclient_recv(tclient_t *c, tclient_resp_t *r, int timeout_ms);
void tclient_resp_free(tclient_resp_t *r);
/* Fills r from a parsed response frame (copies; free with tclient_resp_free):
 * how responses read from a fake connection become tclient_resp_t too. */
void tclient_resp_from_frame(const mprpc_frame_t *f, tclient_resp_t *r);
/* send + recv. */
int tclient_call(tclient_t *c, const tclient_req_t *req, tclient_resp_t *resp, int timeout_ms);
/* Waits until the server closes the connection (EOF or reset), discarding
 * what arrives: 0, or MPRPC_ETIMEDOUT. */
int tclient_wait_closed(tclient_t *c, int timeout_ms);
/* Packs msg into a malloc'd *out (caller frees), compressed with
 * compress_type unless it is 0: a payload for tclient_req_t.raw. */
int tclient_pack(const ProtobufCMessage *msg, int compress_type, uint8_t **out, size_t *len);
/* Echo helpers: request with `message`; response's message copied into out
 * (the payload is inflated first when the response is compressed). */
int tclient_echo_decode(const tclient_resp_t *r, char *out, size_t cap);

#endif
