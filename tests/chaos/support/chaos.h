/*
 * Support shared by the chaos programs (tests/chaos/, docs/simulator.md
 * "Chaos runs"): log lines written with one write(2) each, so a process
 * killed with SIGKILL loses nothing it logged, and the wall clock every
 * process of a run stamps them with.
 *
 * Log line formats (space separated, one fact per line):
 *   provider:  X <token> <provider> <wall_ns>            one handler run
 *   consumer:  S <token> <idem 0|1> <wall_ns>            call issued
 *              D <token> <ok 0|1> <err> <own 0|1> <wall_ns> <latency_us> <attempts>
 *              E <calls> <endpoints_idem> <endpoints_non> <unknown_ids> <wall_ns>   clean end
 * A token is (consumer << 40) | (incarnation << 32) | sequence, unique per run.
 */
#ifndef MPRPC_CHAOS_H
#define MPRPC_CHAOS_H

#include <stdint.h>

uint64_t chaos_wall_ns(void);
/* Opens (creates, appends) a log file; exits with a message on failure. */
int chaos_log_open(const char *path);
/* Formats one line (a '\n' is added) and writes it with one write(2). */
void chaos_log(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* CHAOS_SRC_ADDR (an IPv4 address) makes every outgoing IPv4 connection of
 * the process leave from that address, so that the harness's per-host
 * firewall and delay rules see who is talking (support/bindsrc.c). */

/* Userspace delay/jitter for packets an iptables NFQUEUE rule hands over
 * (support/netem.c). Hosts are the last octet of 127.0.0.x, below
 * CHAOS_NETEM_HOSTS. start: 0 or -errno. */
#define CHAOS_NETEM_HOSTS 32
int chaos_netem_start(uint16_t queue, uint64_t seed);
/* One direction, from -> to; 0/0 lifts it. Any thread. */
void chaos_netem_set(int from, int to, uint32_t delay_ms, uint32_t jitter_ms);
void chaos_netem_clear(void);
void chaos_netem_stats(uint64_t *held, uint64_t *passed);
/* Lets every held packet go and joins the thread. */
void chaos_netem_stop(void);

#endif
