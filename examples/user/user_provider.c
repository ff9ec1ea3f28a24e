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
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "../common/app.h"
#include "mprpc/log.h"
#include "mprpc/server.h"
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

static mprpc_server_t *g_server;

static void on_signal(int sig) {
  (void)sig;
  mprpc_server_stop_async(g_server);
}

int main(int argc, char **argv) {
  static Fixbug__UserServiceRpc_Service svc = FIXBUG__USER_SERVICE_RPC__INIT(user_);
  mprpc_config_t *cfg = app_init(argc, argv);
  const char *ip = app_str(cfg, "rpcserverip", "127.0.0.1");
  int port = app_int("user_provider", cfg, "rpcserverport", 0, 0, 65535);
  int threads = app_int("user_provider", cfg, "threads", 1, 1, 64);
  mprpc_registry_t reg = app_registry("user_provider", cfg);

  mprpc_server_opts_t so;
  mprpc_server_opts_init(&so);
  so.host = ip;
  so.port = (uint16_t)port;
  so.threads = (size_t)threads;
  so.registry = reg;
  so.advertise_host = ip;
  int rc = mprpc_server_new(&so, &g_server);
  if (rc == 0)
    rc = mprpc_server_add_service(g_server, &svc.base);
  if (rc == 0)
    rc = mprpc_server_start(g_server);
  if (rc != 0) {
    fprintf(stderr, "user_provider: cannot serve on %s:%d: %s\n", ip, port, mprpc_strerror(rc));
    mprpc_server_destroy(g_server);
    mprpc_registry_close(reg);
    mprpc_config_free(cfg);
    return 1;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  unsigned bound = mprpc_server_port(g_server);
  printf("user_provider: %s on %s:%u\n", fixbug__user_service_rpc__descriptor.name, ip, bound);
  fflush(stdout);

  mprpc_server_run(g_server);

  uint64_t served = 0;
  mprpc_method_stats_t ms;
  for (size_t i = 0; mprpc_server_method_stats_at(g_server, i, &ms) == 0; i++)
    served += ms.completed;
  printf("user_provider: %s:%u served %llu calls\n", ip, bound, (unsigned long long)served);
  mprpc_server_destroy(g_server);
  mprpc_registry_close(reg);
  mprpc_config_free(cfg);
  mprpc_log_flush();
  return 0;
}
