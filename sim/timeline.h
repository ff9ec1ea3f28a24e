/*
 * Timeline pictures: one SVG format for a simulated run (mprpc-sim --svg)
 * and a chaos run (tests/chaos/chaos_runner.c), so the two can be laid side
 * by side (docs/simulator.md).
 *
 * Fed with call completions, handler runs and fault spans on the run's own
 * clock (ns since its start); draws, per 100 ms bucket: ok and failed calls
 * (stacked bars), the p99 latency of the calls completed in it (a line, log
 * scale), faults as shaded spans with their labels, and one lane per provider
 * whose shade is the handler runs it did. Recording never draws randomness
 * and never schedules anything, so it cannot change a simulated run.
 */
#ifndef MPRPC_SIM_TIMELINE_H
#define MPRPC_SIM_TIMELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mprpc_timeline mprpc_timeline_t;

/* NULL on ENOMEM. providers: lanes (at most 16). */
mprpc_timeline_t *mprpc_timeline_new(uint64_t duration_ns, int providers);
void mprpc_timeline_free(mprpc_timeline_t *tl);

void mprpc_timeline_call(mprpc_timeline_t *tl, uint64_t end_ns, bool ok, uint64_t latency_us);
void mprpc_timeline_exec(mprpc_timeline_t *tl, uint64_t t_ns, int provider);
/* lane: a provider (its lane is shaded), or -1 for the whole picture. The
 * label is copied (first 47 bytes). */
void mprpc_timeline_fault(mprpc_timeline_t *tl, uint64_t from_ns, uint64_t to_ns, int lane,
                          const char *label);
/* Shortens the picture to duration_ns (no longer than it was created):
 * for runs whose length is known only afterwards. */
void mprpc_timeline_set_duration(mprpc_timeline_t *tl, uint64_t duration_ns);
/* Vertical marks: the heal (quiet) time and the start of the liveness window. */
void mprpc_timeline_marks(mprpc_timeline_t *tl, uint64_t quiet_ns, uint64_t live_from_ns);

/* The picture as SVG text: 0 and *out (malloc'd, NUL-terminated, *len bytes
 * before the NUL; the caller frees it), or MPRPC_ENOMEM and *out NULL. The
 * simulator's library makes no OS calls: the caller writes the file. */
int mprpc_timeline_svg(const mprpc_timeline_t *tl, const char *title, char **out, size_t *len);

#endif
