/*
 * mprpc error codes.
 *
 * Every function in mprpc that can fail returns 0 on success or one of the
 * negative MPRPC_E* codes below. The table is the single source of truth: the
 * enum, mprpc_strerror() and mprpc_err_name() are all generated from it.
 *
 * Codes that travel in a response's error_code use brpc's numbers, so a brpc
 * peer understands them: on the wire the code is positive (ENOSERVICE is
 * 1001), in the API it is negative (MPRPC_ENOSERVICE == -1001). Socket-level
 * codes reuse Linux errno numbers, as brpc does. Codes local to mprpc live in
 * the -3000 range and never cross the wire. (brpc's ESSL, 1016, is kept for
 * peers that send it; mprpc's own TLS failures are MPRPC_ETLS, which is a
 * connection-level error reported by the transport, never a response code.)
 *
 * A handler's own (application) error code travels as it is; the consumer
 * sees MPRPC_EAPP and reads the code with mprpc_controller_remote_code().
 * On the wire, brpc's framework range 1001..2999 means a framework error;
 * every other positive code is the application's (mprpc_err_wire_is_app).
 * Applications should use codes >= 10000 (docs/server.md, "Error codes").
 */
#ifndef MPRPC_ERRORS_H
#define MPRPC_ERRORS_H

#include "mprpc/export.h"

MPRPC_BEGIN_DECLS

/* X(name, value, text) */
#define MPRPC_ERRNO_MAP(X)                                                     \
  /* operating system / socket level (Linux errno numbers) */                  \
  X(EPERM, -1, "operation not permitted")                                      \
  X(ENOENT, -2, "no such file or directory")                                   \
  X(EINTR, -4, "interrupted system call")                                      \
  X(EIO, -5, "i/o error")                                                      \
  X(EAGAIN, -11, "resource temporarily unavailable")                           \
  X(ENOMEM, -12, "out of memory")                                              \
  X(EACCES, -13, "permission denied")                                          \
  X(EBUSY, -16, "resource busy")                                               \
  X(EEXIST, -17, "already exists")                                             \
  X(EINVAL, -22, "invalid argument")                                           \
  X(EMFILE, -24, "too many open files")                                        \
  X(EPIPE, -32, "broken pipe")                                                 \
  X(ERANGE, -34, "value out of range")                                         \
  X(EDEADLK, -35, "the call would deadlock")                                   \
  X(ENAMETOOLONG, -36, "name too long")                                        \
  X(EADDRINUSE, -98, "address already in use")                                 \
  X(EADDRNOTAVAIL, -99, "address not available")                               \
  X(ENETUNREACH, -101, "network is unreachable")                               \
  X(ECONNABORTED, -103, "connection aborted")                                  \
  X(ECONNRESET, -104, "connection reset by peer")                              \
  X(ENOTCONN, -107, "socket is not connected")                                 \
  X(ETIMEDOUT, -110, "connection timed out")                                   \
  X(ECONNREFUSED, -111, "connection refused")                                  \
  X(EHOSTUNREACH, -113, "host is unreachable")                                 \
  X(ECANCELED, -125, "operation canceled")                                     \
  /* brpc's codes: these cross the wire in RpcResponseMeta.error_code */       \
  X(ENOSERVICE, -1001, "no such service")                                      \
  X(ENOMETHOD, -1002, "no such method")                                        \
  X(EREQUEST, -1003, "bad request")                                            \
  X(ERPCAUTH, -1004, "authentication failed")                                  \
  X(ETOOMANYFAILS, -1005, "too many sub-call failures")                        \
  X(EPCHANFINISH, -1006, "parallel channel finished")                          \
  X(EBACKUPREQUEST, -1007, "backup request sent")                              \
  X(ERPCTIMEDOUT, -1008, "rpc timed out")                                      \
  X(EFAILEDSOCKET, -1009, "connection broke during the rpc")                   \
  X(EHTTP, -1010, "bad http call")                                             \
  X(EOVERCROWDED, -1011, "too many buffered bytes on the connection")          \
  X(ERTMPPUBLISHABLE, -1012, "rtmp publishable")                               \
  X(ERTMPCREATESTREAM, -1013, "rtmp create stream failed")                     \
  X(EEOF, -1014, "got eof")                                                    \
  X(EUNUSED, -1015, "socket was not needed")                                   \
  X(ESSL, -1016, "ssl error")                                                  \
  X(EH2RUNOUTSTREAMS, -1017, "http/2 streams exhausted")                       \
  X(EREJECT, -1018, "rejected by the server")                                  \
  X(EINTERNAL, -2001, "internal server error")                                 \
  X(ERESPONSE, -2002, "bad response")                                          \
  X(ELOGOFF, -2003, "server is stopping")                                      \
  X(ELIMIT, -2004, "server concurrency limit reached")                         \
  X(ECLOSE, -2005, "close socket initiatively")                                \
  X(EITP, -2006, "bad itp response")                                           \
  /* mprpc local codes: never sent on the wire */                              \
  X(EBADMAGIC, -3001, "frame does not start with PRPC")                        \
  X(EBADSIZE, -3002, "frame meta_size exceeds body_size")                      \
  X(ETOOBIG, -3003, "frame body exceeds the size limit")                       \
  X(EBADATTACH, -3004, "frame attachment_size exceeds the body")               \
  X(EBADMETA, -3005, "frame meta does not decode")                             \
  X(ENONAME, -3006, "request meta lacks service or method name")              \
  X(EHWM, -3010, "write buffer above its high-water mark")                     \
  X(ECLOSED, -3011, "connection closed")                                       \
  X(ENOENDPOINT, -3012, "no endpoint available")                               \
  X(ESTATE, -3013, "operation not allowed in this state")                      \
  X(EADDR, -3014, "bad address")                                               \
  X(ECONFIG, -3015, "bad configuration")                                       \
  X(ENOTFOUND, -3016, "not found")                                             \
  X(EREGISTRY, -3017, "registry error")                                        \
  X(ESESSION, -3018, "registry session expired")                               \
  X(EUNSUPPORTED, -3019, "not supported")                                      \
  X(ESYNCLOOP, -3020, "synchronous call from the channel's own loop thread")  \
  X(EDEGRADED, -3021, "call degraded by the config centre (not sent)")         \
  /* -3040..-3049: TLS (src/rt/tls.c); the text of the failure is kept by */  \
  /* the connection (mprpc_conn_error_text) and the TLS context */            \
  X(ETLS, -3040, "tls handshake or record failed")                            \
  /* the provider's handler failed the call with its own code: */              \
  /* mprpc_controller_remote_code() gives that code (docs/client.md) */        \
  X(EAPP, -3050, "application error")

typedef enum mprpc_errno {
#define MPRPC__ERR_ENUM(name, value, text) MPRPC_##name = (value),
  MPRPC_ERRNO_MAP(MPRPC__ERR_ENUM)
#undef MPRPC__ERR_ENUM
} mprpc_errno_t;

/* Human-readable text for an MPRPC_E* code; "unknown error" for others.
 * Never NULL; the string is static. 0 gives "success". */
const char *mprpc_strerror(int err);

/* The symbolic name without prefix ("ENOSERVICE"); "UNKNOWN" for others,
 * "OK" for 0. Never NULL; the string is static. */
const char *mprpc_err_name(int err);

/* Map a positive errno value (as from a failed syscall) to an MPRPC_E* code.
 * Errno values absent from the table map to MPRPC_EIO. */
int mprpc_err_from_errno(int errno_value);

/* Wire conversion: error_code on the wire is positive (brpc's numbers). An
 * unknown positive wire code is kept as its negation so it still reads back
 * as a failure. */
static inline int mprpc_err_to_wire(int err) { return err < 0 ? -err : err; }
static inline int mprpc_err_from_wire(int code) { return code > 0 ? -code : code; }

/* brpc's framework codes on the wire: ENOSERVICE (1001) .. the 2xxx server
 * codes. A positive wire code outside it (1..1000, 3000 and up) is an
 * application's code: the channel reports it as MPRPC_EAPP. */
#define MPRPC_WIRE_FRAMEWORK_MIN 1001
#define MPRPC_WIRE_FRAMEWORK_MAX 2999
static inline int mprpc_err_wire_is_app(int code) {
  return code > 0 && (code < MPRPC_WIRE_FRAMEWORK_MIN || code > MPRPC_WIRE_FRAMEWORK_MAX);
}

MPRPC_END_DECLS
#endif
