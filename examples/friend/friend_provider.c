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
#include <string.h>

#include "../common/provider.h"
#include "friend.pb-c.h"

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

int main(int argc, char **argv) {
  static Fixbug__Friend__FriendServiceRpc_Service svc =
      FIXBUG__FRIEND__FRIEND_SERVICE_RPC__INIT(friend_);
  return app_provider_main("friend_provider", argc, argv, &svc.base);
}
