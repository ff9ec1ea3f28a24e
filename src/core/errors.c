#include "mprpc/errors.h"

#include <stddef.h>

const char *mprpc_strerror(int err) {
  if (err == 0)
    return "success";
  switch (err) {
#define MPRPC__ERR_TEXT(name, value, text)                                      \
  case (value):                                                                \
    return text;
    MPRPC_ERRNO_MAP(MPRPC__ERR_TEXT)
#undef MPRPC__ERR_TEXT
  }
  return "unknown error";
}

const char *mprpc_err_name(int err) {
  if (err == 0)
    return "OK";
  switch (err) {
#define MPRPC__ERR_NAME(name, value, text)                                      \
  case (value):                                                                \
    return #name;
    MPRPC_ERRNO_MAP(MPRPC__ERR_NAME)
#undef MPRPC__ERR_NAME
  }
  return "UNKNOWN";
}

int mprpc_err_from_errno(int errno_value) {
  switch (-errno_value) {
#define MPRPC__ERR_ERRNO(name, value, text)                                     \
  case (value):                                                                \
    return (value) > -1000 ? (value) : MPRPC_EIO;
    MPRPC_ERRNO_MAP(MPRPC__ERR_ERRNO)
#undef MPRPC__ERR_ERRNO
  }
  return MPRPC_EIO;
}
