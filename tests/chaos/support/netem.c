/*
 * A userspace netem for the chaos runner (support/chaos.h).
 *
 * The kernel of the machines this runs on has no sch_netem (nor sch_prio),
 * so delay and jitter between two 127.0.0.x hosts are made here: an
 * iptables NFQUEUE rule in the namespace hands the packets of an impaired
 * pair to this thread, which holds each one for delay +- jitter before it
 * says ACCEPT. Verdicts go out in due order, not arrival order, so jitter
 * reorders packets as netem does. Loss and duplication stay in the kernel
 * (nft numgen + dup, see chaos_runner.c). A packet of a pair that is no
 * longer impaired, or that finds the hold queue full, is accepted at once;
 * with --queue-bypass the kernel accepts packets itself when no one listens.
 *
 * Raw nfnetlink, no library: bind queue, copy 40 bytes (the IPv4 header),
 * read packets, write verdicts.
 */
/* glibc first: it tells the kernel headers not to redefine struct in_addr & co */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "chaos.h"

#define HOLD_MAX 65536

typedef struct held {
  uint64_t due;
  uint32_t id; /* network order, as received */
} held_t;

static struct {
  int fd;
  uint16_t queue;
  pthread_t thr;
  atomic_int stop;
  atomic_uint_least64_t link[CHAOS_NETEM_HOSTS][CHAOS_NETEM_HOSTS]; /* delay_us << 32 | jitter_us */
  held_t heap[HOLD_MAX];
  size_t n;
  uint64_t rng;
  atomic_uint_least64_t held_total, passed_total;
} ne = {.fd = -1};

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(void) { /* splitmix64: jitter only, need not replay */
  uint64_t z = (ne.rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void heap_push(held_t h) {
  size_t i = ne.n++;
  ne.heap[i] = h;
  while (i && ne.heap[(i - 1) / 2].due > ne.heap[i].due) {
    held_t t = ne.heap[i];
    ne.heap[i] = ne.heap[(i - 1) / 2];
    ne.heap[(i - 1) / 2] = t;
    i = (i - 1) / 2;
  }
}

static held_t heap_pop(void) {
  held_t top = ne.heap[0];
  ne.heap[0] = ne.heap[--ne.n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < ne.n && ne.heap[l].due < ne.heap[m].due)
      m = l;
    if (r < ne.n && ne.heap[r].due < ne.heap[m].due)
      m = r;
    if (m == i)
      break;
    held_t t = ne.heap[i];
    ne.heap[i] = ne.heap[m];
    ne.heap[m] = t;
    i = m;
  }
  return top;
}

/* One nfnetlink message: header, nfgenmsg, then attributes. */
typedef struct msg {
  char buf[256] __attribute__((aligned(4)));
  size_t len;
} msg_t;

static void msg_init(msg_t *m, uint16_t type, uint16_t flags) {
  memset(m, 0, sizeof *m);
  struct nlmsghdr *h = (struct nlmsghdr *)m->buf;
  h->nlmsg_type = (uint16_t)(NFNL_SUBSYS_QUEUE << 8 | type);
  h->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
  struct nfgenmsg *g = (struct nfgenmsg *)(m->buf + NLMSG_HDRLEN);
  g->nfgen_family = AF_UNSPEC;
  g->version = NFNETLINK_V0;
  g->res_id = htons(ne.queue);
  m->len = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof *g);
}

static void msg_attr(msg_t *m, uint16_t type, const void *data, size_t len) {
  struct nlattr *a = (struct nlattr *)(m->buf + m->len);
  a->nla_type = type;
  a->nla_len = (uint16_t)(NLA_HDRLEN + len);
  memcpy(m->buf + m->len + NLA_HDRLEN, data, len);
  m->len += NLA_ALIGN(NLA_HDRLEN + len);
}

static int msg_send(msg_t *m) {
  struct nlmsghdr *h = (struct nlmsghdr *)m->buf;
  h->nlmsg_len = (uint32_t)m->len;
  struct sockaddr_nl to = {.nl_family = AF_NETLINK};
  return sendto(ne.fd, m->buf, m->len, 0, (struct sockaddr *)&to, sizeof to) < 0 ? -errno : 0;
}

static void verdict(uint32_t id_be, uint32_t v) {
  msg_t m;
  msg_init(&m, NFQNL_MSG_VERDICT, 0);
  struct nfqnl_msg_verdict_hdr vh = {.verdict = htonl(v), .id = id_be};
  msg_attr(&m, NFQA_VERDICT_HDR, &vh, sizeof vh);
  msg_send(&m);
}

static void on_packet(struct nlmsghdr *h) {
  size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
  uint32_t id = 0;
  bool have_id = false;
  const uint8_t *ip = NULL;
  size_t iplen = 0;
  while (off + NLA_HDRLEN <= h->nlmsg_len) {
    struct nlattr *a = (struct nlattr *)((char *)h + off);
    if (a->nla_len < NLA_HDRLEN || off + a->nla_len > h->nlmsg_len)
      break;
    const uint8_t *d = (const uint8_t *)a + NLA_HDRLEN;
    size_t dl = a->nla_len - NLA_HDRLEN;
    switch (a->nla_type & NLA_TYPE_MASK) {
    case NFQA_PACKET_HDR:
      if (dl >= sizeof(struct nfqnl_msg_packet_hdr)) {
        memcpy(&id, d, 4);
        have_id = true;
      }
      break;
    case NFQA_PAYLOAD:
      ip = d;
      iplen = dl;
      break;
    }
    off += NLA_ALIGN(a->nla_len);
  }
  if (!have_id)
    return;
  uint64_t l = 0;
  if (ip && iplen >= 20 && ip[12] == 127 && ip[16] == 127 && ip[15] < CHAOS_NETEM_HOSTS &&
      ip[19] < CHAOS_NETEM_HOSTS && ip[13] == 0 && ip[14] == 0 && ip[17] == 0 && ip[18] == 0)
    l = atomic_load(&ne.link[ip[15]][ip[19]]);
  uint64_t delay = (l >> 32) * 1000, jitter = (l & 0xffffffffu) * 1000;
  if (!l || ne.n >= HOLD_MAX) {
    verdict(id, NF_ACCEPT);
    atomic_fetch_add(&ne.passed_total, 1);
    return;
  }
  int64_t d = (int64_t)delay;
  if (jitter)
    d += (int64_t)(rnd() % (2 * jitter + 1)) - (int64_t)jitter;
  if (d < 0)
    d = 0;
  heap_push((held_t){.due = mono_ns() + (uint64_t)d, .id = id});
  atomic_fetch_add(&ne.held_total, 1);
}

static void *netem_main(void *arg) {
  (void)arg;
  static char buf[1 << 16] __attribute__((aligned(4)));
  while (!atomic_load(&ne.stop)) {
    uint64_t now = mono_ns();
    while (ne.n && ne.heap[0].due <= now)
      verdict(heap_pop().id, NF_ACCEPT);
    int timeout = 50;
    if (ne.n) {
      uint64_t wait = (ne.heap[0].due - now) / 1000000;
      timeout = wait < 50 ? (int)wait : 50;
    }
    struct pollfd p = {.fd = ne.fd, .events = POLLIN};
    if (poll(&p, 1, timeout) <= 0)
      continue;
    ssize_t n = recv(ne.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0)
      continue; /* ENOBUFS: the kernel dropped some; TCP retransmits them */
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
         h = NLMSG_NEXT(h, n)) {
      if ((h->nlmsg_type & 0xff) == NFQNL_MSG_PACKET && (h->nlmsg_type >> 8) == NFNL_SUBSYS_QUEUE)
        on_packet(h);
    }
  }
  while (ne.n) /* let everything held go */
    verdict(heap_pop().id, NF_ACCEPT);
  return NULL;
}

int chaos_netem_start(uint16_t queue, uint64_t seed) {
  ne.queue = queue;
  ne.rng = seed;
  ne.fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (ne.fd < 0)
    return -errno;
  int sz = 8 << 20;
  setsockopt(ne.fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz);
  struct sockaddr_nl me = {.nl_family = AF_NETLINK};
  if (bind(ne.fd, (struct sockaddr *)&me, sizeof me) < 0)
    goto fail;
  msg_t m;
  msg_init(&m, NFQNL_MSG_CONFIG, 0);
  struct nfqnl_msg_config_cmd cmd = {.command = NFQNL_CFG_CMD_BIND, .pf = htons(AF_INET)};
  msg_attr(&m, NFQA_CFG_CMD, &cmd, sizeof cmd);
  if (msg_send(&m) < 0)
    goto fail;
  msg_init(&m, NFQNL_MSG_CONFIG, 0);
  struct nfqnl_msg_config_params prm = {.copy_range = htonl(40), .copy_mode = NFQNL_COPY_PACKET};
  msg_attr(&m, NFQA_CFG_PARAMS, &prm, sizeof prm);
  uint32_t maxlen = htonl(HOLD_MAX);
  msg_attr(&m, NFQA_CFG_QUEUE_MAXLEN, &maxlen, sizeof maxlen);
  uint32_t flags = htonl(NFQA_CFG_F_FAIL_OPEN);
  msg_attr(&m, NFQA_CFG_FLAGS, &flags, sizeof flags);
  msg_attr(&m, NFQA_CFG_MASK, &flags, sizeof flags);
  if (msg_send(&m) < 0)
    goto fail;
  if (pthread_create(&ne.thr, NULL, netem_main, NULL) != 0)
    goto fail;
  return 0;
fail:;
  int e = -errno;
  close(ne.fd);
  ne.fd = -1;
  return e ? e : -1;
}

void chaos_netem_set(int from, int to, uint32_t delay_ms, uint32_t jitter_ms) {
  if (from < 0 || to < 0 || from >= CHAOS_NETEM_HOSTS || to >= CHAOS_NETEM_HOSTS)
    return;
  uint64_t v = delay_ms || jitter_ms ? (uint64_t)delay_ms * 1000 << 32 | (uint64_t)jitter_ms * 1000 : 0;
  atomic_store(&ne.link[from][to], v);
}

void chaos_netem_clear(void) {
  for (int i = 0; i < CHAOS_NETEM_HOSTS; i++)
    for (int j = 0; j < CHAOS_NETEM_HOSTS; j++)
      atomic_store(&ne.link[i][j], 0);
}

void chaos_netem_stats(uint64_t *held, uint64_t *passed) {
  *held = atomic_load(&ne.held_total);
  *passed = atomic_load(&ne.passed_total);
}

void chaos_netem_stop(void) {
  if (ne.fd < 0)
    return;
  atomic_store(&ne.stop, 1);
  pthread_join(ne.thr, NULL);
  close(ne.fd);
  ne.fd = -1;
}
