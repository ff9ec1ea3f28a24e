/*
 * friend_provider: publishes fixbug.friend.FriendServiceRpc (GetFriendsList),
 * the seed projects' friend service.
 *
 *   friend_provider -i friend.conf
 *
 * An unknown user is a business error (ResultCode errcode 1), not a failed
 * call. SIGTERM or SIGINT stops it gracefully; it then prints how many calls
 * it served.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "../common/app.h"
#include "friend.pb-c.h"
#include "mprpc/log.h"
#include "mprpc/server.h"

/* A fixed friend table stands in for the seeds' database. */
static char *k_friends_1[] = {"li si", "wang wu", "zhao liu"};
static char *k_friends_2[] = {"zhang san"};
static char *k_friends_3[] = {"zhang san", "li si"};
static const struct {
  unsigned userid;
  char **friends;
  size_t n;
} k_table[] = {
    {1, k_friends_1, 3},
    {2, k_friends_2, 1},
    {3, k_friends_3, 2},
};

static void friend_get_friends_list(Fixbug__Friend__FriendServiceRpc_Service *svc,
                                    const Fixbug__Friend__GetFriendsListRequest *req,
                                    Fixbug__Friend__GetFriendsListResponse_Closure done,
                                    void *closure_data) {
  (void)svc;
  Fixbug__Friend__ResultCode rc = FIXBUG__FRIEND__RESULT_CODE__INIT;
  Fixbug__Friend__GetFriendsListResponse resp = FIXBUG__FRIEND__GET_FRIENDS_LIST_RESPONSE__INIT;
  resp.result = &rc;
  rc.errcode = 1;
  rc.errmsg = "no such user";
  for (size_t i = 0; i < sizeof k_table / sizeof k_table[0]; i++) {
    if (k_table[i].userid == req->userid) {
      rc.errcode = 0;
      rc.errmsg = "";
      resp.friends = k_table[i].friends;
      resp.n_friends = k_table[i].n;
      break;
    }
  }
  done(&resp, closure_data);
}

static mprpc_server_t *g_server;

static void on_signal(int sig) {
  (void)sig;
  mprpc_server_stop_async(g_server);
}

int main(int argc, char **argv) {
  static Fixbug__Friend__FriendServiceRpc_Service svc =
      FIXBUG__FRIEND__FRIEND_SERVICE_RPC__INIT(friend_);
  mprpc_config_t *cfg = app_init(argc, argv);
  const char *ip = app_str(cfg, "rpcserverip", "127.0.0.1");
  int port = app_int("friend_provider", cfg, "rpcserverport", 0, 0, 65535);
  int threads = app_int("friend_provider", cfg, "threads", 1, 1, 64);
  mprpc_registry_t reg = app_registry("friend_provider", cfg);

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
    fprintf(stderr, "friend_provider: cannot serve on %s:%d: %s\n", ip, port,
            mprpc_strerror(rc));
    mprpc_server_destroy(g_server);
    mprpc_registry_close(reg);
    mprpc_config_free(cfg);
    return 1;
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  unsigned bound = mprpc_server_port(g_server);
  printf("friend_provider: %s on %s:%u\n", fixbug__friend__friend_service_rpc__descriptor.name,
         ip, bound);
  fflush(stdout);

  mprpc_server_run(g_server);

  uint64_t served = 0;
  mprpc_method_stats_t ms;
  for (size_t i = 0; mprpc_server_method_stats_at(g_server, i, &ms) == 0; i++)
    served += ms.completed;
  printf("friend_provider: %s:%u served %llu calls\n", ip, bound, (unsigned long long)served);
  mprpc_server_destroy(g_server);
  mprpc_registry_close(reg);
  mprpc_config_free(cfg);
  mprpc_log_flush();
  return 0;
}
