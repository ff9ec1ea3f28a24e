#include "mprpc/transport.h"

const char *mprpc_close_reason_name(int reason) {
  switch (reason) {
  case MPRPC_CLOSE_EOF:
    return "eof";
  case MPRPC_CLOSE_RESET:
    return "reset";
  case MPRPC_CLOSE_CONNECT_FAILED:
    return "connect_failed";
  case MPRPC_CLOSE_LOCAL:
    return "local";
  case MPRPC_CLOSE_SHUTDOWN:
    return "shutdown";
  }
  return "unknown";
}
