/*
 * Version and group selection of provider instances (internal, pure).
 *
 * A version pattern is one or more alternatives separated by ',':
 *   "1.2.3"  exactly that version (compared component by component, so
 *            "1.2" does not match "1.2.0")
 *   "1.*"    major version 1: "1", "1.0", "1.4.2" (a trailing '*' matches
 *            any number of further components, none included)
 *   "1.2.*"  1.2 and any patch level
 *   "*"      anything, an instance without a version included
 * Components are [A-Za-z0-9_+-]+; '*' may only be a whole last component.
 * An instance without a version matches only "*".
 *
 * Groups are compared exactly; an absent or empty group is "default".
 */
#ifndef MPRPC_CORE_SELECT_H
#define MPRPC_CORE_SELECT_H

#include <stdbool.h>
#include <stddef.h>

#include "mprpc/registry.h"

#define MPRPC__DEFAULT_GROUP "default"
#define MPRPC__VERSION_PATTERN_MAX 256

/* True when pattern is well-formed (see above). */
bool mprpc__version_pattern_valid(const char *pattern);
/* True when version (NULL or "" = none) matches pattern. A malformed
 * pattern matches nothing; NULL or "" pattern matches everything. */
bool mprpc__version_match(const char *pattern, const char *version);
/* The group an instance belongs to: its group, or "default". */
const char *mprpc__group_of(const char *group);
/* want (NULL/"" = "default") equals have (NULL/"" = "default"). */
bool mprpc__group_match(const char *want, const char *have);
/* A name usable as a group: [A-Za-z0-9_.-]{1,64}. */
bool mprpc__group_valid(const char *group);

/* What a consumer selects: NULL fields select everything. */
typedef struct mprpc__select {
  const char *group;   /* NULL: any group; else exact (with "default") */
  const char *version; /* NULL: any version; else a pattern */
} mprpc__select_t;

bool mprpc__select_instance(const mprpc__select_t *sel, const mprpc_instance_t *inst);
/* Marks keep[i] for every instance the selection admits; returns how many. */
size_t mprpc__select_filter(const mprpc__select_t *sel, const mprpc_instance_t *items, size_t n,
                            bool *keep);

#endif
