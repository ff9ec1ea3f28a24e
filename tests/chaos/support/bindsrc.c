/*
 * Source-address pinning for the chaos programs (support/chaos.h).
 *
 * Inside the harness's network namespace every virtual host owns one
 * 127.0.0.x; a process listens on its own address, but an unbound socket
 * connecting to 127.0.0.y leaves from 127.0.0.1, so a rule "drop host A ->
 * host B" could not tell who is talking. This definition of connect(2)
 * interposes the C library's for the whole program, the ZooKeeper C client
 * included (the executable's symbol comes first in the dynamic lookup): an
 * AF_INET socket that is not bound yet is bound to CHAOS_SRC_ADDR:0 first.
 * Without CHAOS_SRC_ADDR it is a plain connect.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int connect(int fd, const struct sockaddr *sa, socklen_t len);

int connect(int fd, const struct sockaddr *sa, socklen_t len) {
  static struct in_addr src;
  static int state; /* 0 unknown, 1 pin, 2 off; racing threads compute the same */
  if (state == 0) {
    const char *s = getenv("CHAOS_SRC_ADDR");
    state = s && inet_pton(AF_INET, s, &src) == 1 ? 1 : 2;
  }
  if (state == 1 && sa && sa->sa_family == AF_INET) {
    struct sockaddr_in cur;
    socklen_t cl = sizeof cur;
    if (getsockname(fd, (struct sockaddr *)&cur, &cl) == 0 && cur.sin_family == AF_INET &&
        cur.sin_port == 0 && cur.sin_addr.s_addr == htonl(INADDR_ANY)) {
      struct sockaddr_in b;
      memset(&b, 0, sizeof b);
      b.sin_family = AF_INET;
      b.sin_addr = src;
      (void)bind(fd, (struct sockaddr *)&b, sizeof b); /* on failure: connect as is */
    }
  }
  return (int)syscall(SYS_connect, fd, sa, len);
}
