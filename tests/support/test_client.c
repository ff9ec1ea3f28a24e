/* Blocking baidu_std test client; see test_client.h. */
#include "test_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/compress.h"
#include "echo.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/frame.h"

int tclient_connect(tclient_t *c, uint16_t port) {
  memset(c, 0, sizeof *c);
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0)
    return mprpc_err_from_errno(errno);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) {
    int e = mprpc_err_from_errno(errno);
    close(c->fd);
    c->fd = -1;
    return e;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return 0;
}

void tclient_close(tclient_t *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  free(c->buf);
  c->buf = NULL;
  c->off = c->len = c->cap = 0;
}

int tclient_encode(const tclient_req_t *r, uint8_t **out, size_t *len) {
  mprpc_meta_t m;
  memset(&m, 0, sizeof m);
  if (r->response_meta) {
    m.has_response = true;
    m.error_code = 0;
  } else if (!r->no_request) {
    m.has_request = true;
    m.service_name = mprpc_bytes_str(r->service ? r->service : "example.EchoService");
    m.method_name = mprpc_bytes_str(r->method ? r->method : "Echo");
    m.log_id = r->log_id;
    m.trace_id = r->trace_id;
    m.span_id = r->span_id;
    m.request_id = mprpc_bytes_str(r->request_id);
    m.timeout_ms = r->timeout_ms;
  }
  m.correlation_id = r->cid;
  m.compress_type = r->compress_type;
  m.content_type = r->content_type;
  m.auth_data = mprpc_bytes_str(r->auth);
  uint8_t *payload = NULL;
  size_t plen = 0;
  const void *pp = r->raw;
  if (r->msg) {
    plen = protobuf_c_message_get_packed_size(r->msg);
    payload = malloc(plen + 1);
    if (!payload)
      return MPRPC_ENOMEM;
    protobuf_c_message_pack(r->msg, payload);
    pp = payload;
  } else {
    plen = r->raw_len;
  }
  mprpc_frame_out_t fo;
  int rc = mprpc_frame_encode(&fo, &m, pp, plen, r->att, r->att_len);
  if (rc == 0) {
    *out = malloc(fo.total ? fo.total : 1);
    if (!*out) {
      rc = MPRPC_ENOMEM;
    } else {
      size_t pos = 0;
      for (int i = 0; i < fo.iovcnt; i++) {
        if (fo.iov[i].iov_len)
          memcpy(*out + pos, fo.iov[i].iov_base, fo.iov[i].iov_len);
        pos += fo.iov[i].iov_len;
      }
      *len = pos;
    }
  }
  mprpc_frame_out_free(&fo);
  free(payload);
  return rc;
}

int tclient_send_raw(tclient_t *c, const void *p, size_t n) {
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return mprpc_err_from_errno(errno);
    }
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

int tclient_send(tclient_t *c, const tclient_req_t *r) {
  uint8_t *f;
  size_t n;
  int rc = tclient_encode(r, &f, &n);
  if (rc < 0)
    return rc;
  rc = tclient_send_raw(c, f, n);
  free(f);
  return rc;
}

/* Reads more bytes; 0, MPRPC_ETIMEDOUT or MPRPC_ECLOSED. */
static int fill(tclient_t *c, int timeout_ms) {
  struct pollfd p = {.fd = c->fd, .events = POLLIN};
  int pr;
  do
    pr = poll(&p, 1, timeout_ms);
  while (pr < 0 && errno == EINTR);
  if (pr == 0)
    return MPRPC_ETIMEDOUT;
  if (c->off > 0 && c->off == c->len) {
    c->off = c->len = 0;
  } else if (c->off > c->cap / 2) {
    memmove(c->buf, c->buf + c->off, c->len - c->off);
    c->len -= c->off;
    c->off = 0;
  }
  if (c->cap - c->len < 65536) {
    size_t nc = c->cap ? c->cap * 2 : 131072;
    uint8_t *nb = realloc(c->buf, nc);
    if (!nb)
      return MPRPC_ENOMEM;
    c->buf = nb;
    c->cap = nc;
  }
  ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
  if (r < 0 && errno == EINTR)
    return 0;
  if (r <= 0)
    return MPRPC_ECLOSED;
  c->len += (size_t)r;
  return 0;
}

static uint8_t *dup_bytes(mprpc_bytes_t b) {
  uint8_t *p = malloc(b.len + 1);
  if (p) {
    if (b.len)
      memcpy(p, b.ptr, b.len);
    p[b.len] = 0;
  }
  return p;
}

void tclient_resp_from_frame(const mprpc_frame_t *f, tclient_resp_t *r) {
  memset(r, 0, sizeof *r);
  r->cid = f->meta.correlation_id;
  r->error_code = f->meta.error_code;
  r->compress_type = f->meta.compress_type;
  snprintf(r->error_text, sizeof r->error_text, "%.*s", (int)f->meta.error_text.len,
           f->meta.error_text.ptr ? (const char *)f->meta.error_text.ptr : "");
  r->payload = dup_bytes(f->payload);
  r->payload_len = f->payload.len;
  r->att = dup_bytes(f->attachment);
  r->att_len = f->attachment.len;
}

int tclient_recv(tclient_t *c, tclient_resp_t *r, int timeout_ms) {
  memset(r, 0, sizeof *r);
  for (int guard = 0; guard < 1000000; guard++) {
    if (c->len > c->off) {
      mprpc_frame_t f;
      long n = mprpc_frame_parse(c->buf + c->off, c->len - c->off, 0, &f);
      if (n < 0)
        return (int)n;
      if (n > 0) {
        tclient_resp_from_frame(&f, r);
        c->off += (size_t)n;
        return 0;
      }
    }
    int rc = fill(c, timeout_ms);
    if (rc < 0)
      return rc;
  }
  return MPRPC_ETIMEDOUT;
}

void tclient_resp_free(tclient_resp_t *r) {
  free(r->payload);
  free(r->att);
  r->payload = r->att = NULL;
}

int tclient_call(tclient_t *c, const tclient_req_t *req, tclient_resp_t *resp, int timeout_ms) {
  int rc = tclient_send(c, req);
  if (rc < 0)
    return rc;
  return tclient_recv(c, resp, timeout_ms);
}

int tclient_wait_closed(tclient_t *c, int timeout_ms) {
  for (int guard = 0; guard < 1000000; guard++) {
    c->off = c->len = 0;
    int rc = fill(c, timeout_ms);
    if (rc == MPRPC_ECLOSED)
      return 0;
    if (rc < 0)
      return rc;
  }
  return MPRPC_ETIMEDOUT;
}

int tclient_pack(const ProtobufCMessage *msg, int compress_type, uint8_t **out, size_t *len) {
  size_t n = protobuf_c_message_get_packed_size(msg);
  uint8_t *p = malloc(n + 1);
  if (!p)
    return MPRPC_ENOMEM;
  protobuf_c_message_pack(msg, p);
  if (compress_type == MPRPC_COMPRESS_NONE) {
    *out = p;
    *len = n;
    return 0;
  }
  int rc = mprpc__compress(compress_type, p, n, out, len);
  free(p);
  return rc;
}

int tclient_echo_decode(const tclient_resp_t *r, char *out, size_t cap) {
  const uint8_t *pl = r->payload ? r->payload : (const uint8_t *)"";
  size_t plen = r->payload_len;
  uint8_t *plain = NULL;
  if (r->compress_type != MPRPC_COMPRESS_NONE) {
    if (mprpc__decompress(r->compress_type, pl, plen, MPRPC_FRAME_DEFAULT_MAX_BODY, &plain,
                          &plen) != 0)
      return MPRPC_ERESPONSE;
    pl = plain ? plain : (const uint8_t *)"";
  }
  Example__EchoResponse *m = example__echo_response__unpack(NULL, plen, pl);
  free(plain);
  if (!m)
    return MPRPC_ERESPONSE;
  snprintf(out, cap, "%s", m->message);
  example__echo_response__free_unpacked(m, NULL);
  return 0;
}
