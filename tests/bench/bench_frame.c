/*
 * bench_frame: throughput of the baidu_std codec on one core.
 *
 *   build/bin/bench_frame [iterations]
 *
 * Encodes a typical echo request (and response) and parses it back, the
 * way a connection does: mprpc_frame_encode into iovecs, then
 * mprpc_frame_parse on the flattened bytes; and, for reference, unpacks the
 * same meta with protobuf-c. Prints CPU ns per operation. A
 * benchmark, not a test: the numbers depend on the machine and its load.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mprpc/frame.h"
#include "rpc_meta.pb-c.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: the machine is shared */
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static size_t flatten(const mprpc_frame_out_t *o, uint8_t *buf) {
  size_t n = 0;
  for (int i = 0; i < o->iovcnt; i++) {
    memcpy(buf + n, o->iov[i].iov_base, o->iov[i].iov_len);
    n += o->iov[i].iov_len;
  }
  return n;
}

int main(int argc, char **argv) {
  long iters = argc > 1 ? atol(argv[1]) : 5000000;
  if (iters <= 0)
    iters = 1;
  mprpc_meta_t m;
  memset(&m, 0, sizeof m);
  m.has_request = true;
  m.service_name = MPRPC_BYTES("example.EchoService");
  m.method_name = MPRPC_BYTES("Echo");
  m.correlation_id = 123456789;
  m.timeout_ms = 500;
  m.log_id = 42;
  static const char payload[] = "\x0a\x0bhello world";
  uint8_t buf[512];

  volatile size_t sink = 0;
  double t0 = now_s();
  for (long i = 0; i < iters; i++) {
    mprpc_frame_out_t o;
    m.correlation_id = i;
    if (mprpc_frame_encode(&o, &m, payload, sizeof payload - 1, NULL, 0) != 0)
      return 1;
    sink += o.total;
    mprpc_frame_out_free(&o);
  }
  double t_enc = now_s() - t0;

  mprpc_frame_out_t o;
  if (mprpc_frame_encode(&o, &m, payload, sizeof payload - 1, NULL, 0) != 0)
    return 1;
  size_t n = flatten(&o, buf);
  mprpc_frame_out_free(&o);
  t0 = now_s();
  for (long i = 0; i < iters; i++) {
    mprpc_frame_t f;
    long rc = mprpc_frame_parse(buf, n, 0, &f);
    if (rc != (long)n)
      return 1;
    sink += (size_t)f.meta.correlation_id;
  }
  double t_req = now_s() - t0;

  /* reference: protobuf-c's generic unpacker on the same request meta */
  size_t meta_len = mprpc_meta_size(&m);
  uint8_t meta_buf[256];
  mprpc_meta_write(&m, meta_buf);
  long pc_iters = iters / 4 + 1;
  t0 = now_s();
  for (long i = 0; i < pc_iters; i++) {
    Mprpc__Meta__RpcMeta *u = mprpc__meta__rpc_meta__unpack(NULL, meta_len, meta_buf);
    if (!u)
      return 1;
    sink += (size_t)u->correlation_id;
    mprpc__meta__rpc_meta__free_unpacked(u, NULL);
  }
  double t_pc = now_s() - t0;

  mprpc_meta_t r;
  memset(&r, 0, sizeof r);
  r.has_response = true;
  r.correlation_id = 123456789;
  if (mprpc_frame_encode(&o, &r, payload, sizeof payload - 1, NULL, 0) != 0)
    return 1;
  n = flatten(&o, buf);
  mprpc_frame_out_free(&o);
  t0 = now_s();
  for (long i = 0; i < iters; i++) {
    mprpc_frame_t f;
    if (mprpc_frame_parse(buf, n, 0, &f) != (long)n)
      return 1;
    sink += (size_t)f.meta.correlation_id;
  }
  double t_resp = now_s() - t0;

  printf("bench_frame: %ld iterations\n", iters);
  printf("  encode request  %7.1f ns/frame\n", t_enc * 1e9 / (double)iters);
  printf("  parse request   %7.1f ns/frame\n", t_req * 1e9 / (double)iters);
  printf("  parse response  %7.1f ns/frame\n", t_resp * 1e9 / (double)iters);
  printf("  protobuf-c unpack of the request meta alone (reference) %7.1f ns\n",
         t_pc * 1e9 / (double)pc_iters);
  (void)sink;
  return 0;
}
