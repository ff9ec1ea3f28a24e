/*
 * user_provider: publishes fixbug.UserServiceRpc (Login, Register), the seed
 * projects' user service.
 *
 *   user_provider -i user.conf
 *
 * Business outcomes go into ResultCode (the call succeeds with errcode != 0
 * for a wrong password); only framework failures make a call fail. SIGTERM or
 * SIGINT stops it gracefully; it then prints how many calls it served.
 */
#include <string.h>

#include "../common/provider.h"
#include "user.pb-c.h"

/* A fixed user table stands in for the seeds' database. */
static const struct {
  unsigned id;
  const char *name, *pwd;
} k_users[] = {
    {1, "zhang san", "123456"},
    {2, "li si", "abcdef"},
    {3, "wang wu", "wangwu"},
};

enum { ERR_OK = 0, ERR_NO_USER = 1, ERR_BAD_PASSWORD = 2, ERR_BAD_REQUEST = 3 };

static void user_login(Fixbug__UserServiceRpc_Service *svc, const Fixbug__LoginRequest *req,
                       Fixbug__LoginResponse_Closure done, void *closure_data) {
  (void)svc;
  Fixbug__ResultCode rc = FIXBUG__RESULT_CODE__INIT;
  Fixbug__LoginResponse resp = FIXBUG__LOGIN_RESPONSE__INIT;
  resp.result = &rc;
  rc.errcode = ERR_NO_USER;
  rc.errmsg = "no such user";
  for (size_t i = 0; i < sizeof k_users / sizeof k_users[0]; i++) {
    if (strcmp(k_users[i].name, req->name) != 0)
      continue;
    if (strcmp(k_users[i].pwd, req->pwd) == 0) {
      rc.errcode = ERR_OK;
      rc.errmsg = "";
      resp.success = 1;
    } else {
      rc.errcode = ERR_BAD_PASSWORD;
      rc.errmsg = "wrong password";
    }
    break;
  }
  done(&resp, closure_data);
}

/* Registration is accepted when it is well-formed; registering the same id
 * again gives the same answer, so the method is idempotent. */
static void user_register_(Fixbug__UserServiceRpc_Service *svc,
                           const Fixbug__RegisterRequest *req,
                           Fixbug__RegisterResponse_Closure done, void *closure_data) {
  (void)svc;
  Fixbug__ResultCode rc = FIXBUG__RESULT_CODE__INIT;
  Fixbug__RegisterResponse resp = FIXBUG__REGISTER_RESPONSE__INIT;
  resp.result = &rc;
  if (req->id == 0 || req->name[0] == 0) {
    rc.errcode = ERR_BAD_REQUEST;
    rc.errmsg = "id and name are required";
  } else if (strlen(req->pwd) < 6) {
    rc.errcode = ERR_BAD_REQUEST;
    rc.errmsg = "password shorter than 6 characters";
  } else {
    resp.success = 1;
    rc.errmsg = "";
  }
  done(&resp, closure_data);
}

int main(int argc, char **argv) {
  static Fixbug__UserServiceRpc_Service svc = FIXBUG__USER_SERVICE_RPC__INIT(user_);
  return app_provider_main("user_provider", argc, argv, &svc.base);
}
