/*
 * Config files and the programs' command line.
 *
 * A config file is `key = value` lines: `#` starts a comment line, blank
 * lines are ignored, spaces and tabs around keys and values are trimmed,
 * CRLF line ends and a missing final newline are fine, lines may be of any
 * length. A key may appear again later: the later value wins and a warning
 * is logged. Keys are letters, digits, '_', '.', '-', ':', '[', ']'. The full
 * syntax and every key the framework reads are in docs/config.md.
 *
 * Values are kept as text and converted by typed getters that validate
 * them. A getter given a key that is absent stores the default and returns
 * 0. Every function returns 0 or a negative MPRPC_E* code (MPRPC_ECONFIG for
 * bad input); the text of the last error, naming file, line, key and value,
 * is kept in the config object and read with mprpc_config_error().
 *
 * A config object is not thread-safe; read it from one thread (or only read
 * it after loading has finished).
 */
#ifndef MPRPC_CONFIG_H
#define MPRPC_CONFIG_H

#include "mprpc/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprpc/addr.h"

MPRPC_BEGIN_DECLS

typedef struct mprpc_config mprpc_config_t;

/* A new empty config in *out, freed with mprpc_config_free. MPRPC_ENOMEM. */
int mprpc_config_new(mprpc_config_t **out);
void mprpc_config_free(mprpc_config_t *cfg);

/* Reads path and merges its keys into cfg (later keys override earlier
 * ones, with a warning). All or nothing: on error cfg keeps the keys it had.
 * Errors: MPRPC_ENOENT / MPRPC_EACCES / MPRPC_EIO when the file cannot be
 * read, MPRPC_ECONFIG for a syntax error (text names file and line). Files
 * over 64 MiB are refused (MPRPC_ECONFIG). */
int mprpc_config_load_file(mprpc_config_t *cfg, const char *path);

/* Same as load_file on text[0..len) (need not be NUL-terminated); name is
 * used in messages (NULL = "<string>"). */
int mprpc_config_load_string(mprpc_config_t *cfg, const char *text, size_t len, const char *name);

/* Sets key to value (copied) as if from a later line; no warning. */
int mprpc_config_set(mprpc_config_t *cfg, const char *key, const char *value);

/* Text of the last error on cfg; "" when none. Valid until the next call. */
const char *mprpc_config_error(const mprpc_config_t *cfg);

/* Raw value or NULL; the string is owned by cfg (valid until it changes).
 * Like every getter, marks the key as used (see mprpc_config_warn_unused). */
const char *mprpc_config_get(const mprpc_config_t *cfg, const char *key);
bool mprpc_config_has(const mprpc_config_t *cfg, const char *key);
/* Number of keys; key i (0-based, in first-seen order) and its value. */
size_t mprpc_config_count(const mprpc_config_t *cfg);
int mprpc_config_entry(const mprpc_config_t *cfg, size_t i, const char **key, const char **value);

/* Typed getters. Absent key: *out = def, return 0. Present but invalid:
 * MPRPC_ECONFIG, *out untouched, error text set. */
int mprpc_config_get_string(mprpc_config_t *cfg, const char *key, const char *def,
                            const char **out);
/* One of n names (exact match); *out gets its index, untouched when the
 * key is absent. A value outside the list is MPRPC_ECONFIG naming them. */
int mprpc_config_get_choice(mprpc_config_t *cfg, const char *key, const char *const *names,
                            size_t n, int *out);
/* Decimal integer, optional sign, within [min, max]. */
int mprpc_config_get_int(mprpc_config_t *cfg, const char *key, int64_t def, int64_t min,
                         int64_t max, int64_t *out);
/* true/false, yes/no, on/off, 1/0 (any case). */
int mprpc_config_get_bool(mprpc_config_t *cfg, const char *key, bool def, bool *out);
/* Duration in milliseconds: "250ms", "2s", "1m", "1h", "1d"; a plain number
 * means milliseconds. Non-negative integers only. */
int mprpc_config_get_duration_ms(mprpc_config_t *cfg, const char *key, int64_t def_ms,
                                 int64_t *out_ms);
/* Size in bytes: "512", "512B", "64KiB", "1MiB", "1GiB", "1TiB" (powers of
 * 1024), "64K"/"1M"/"1G" (same as KiB/MiB/GiB), "64KB"/"1MB"/"1GB" (powers
 * of 1000). Units are case-insensitive. */
int mprpc_config_get_size(mprpc_config_t *cfg, const char *key, uint64_t def, uint64_t *out);

/* def may be NULL: then an absent key is MPRPC_ENOTFOUND (no error text). */
int mprpc_config_get_hostport(mprpc_config_t *cfg, const char *key, const char *def,
                              mprpc_hostport_t *out);

/* The parsers behind the getters, usable on any string (no spaces around).
 * 0, MPRPC_EINVAL (malformed) or MPRPC_ERANGE (out of range / overflow). */
int mprpc_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);
int mprpc_parse_bool(const char *s, bool *out);
int mprpc_parse_duration_ms(const char *s, int64_t *out_ms);
int mprpc_parse_size(const char *s, uint64_t *out);
/* mprpc_parse_hostport (host:port, [v6]:port) is in mprpc/addr.h. */

/* Whether the library reads key (one table of every key, src/util/keys.c,
 * listed in docs/config.md). */
bool mprpc_config_key_known(const char *key);

/* Logs one WARN line per key that the library does not know, that no
 * getter has read and that is not in extra (a NULL-terminated list of the
 * program's own keys; may be NULL), naming file and line and, when a known
 * key is close, suggesting it:
 *   friend.conf:3: unknown key 'zookeeprip' (did you mean zookeeperip?)
 * Returns how many. mprpc_app_init calls it after loading (with the keys
 * of mprpc_app_declare_keys). Each key is reported once per config, by this
 * function or by mprpc_config_warn_unused. */
size_t mprpc_config_warn_unknown(mprpc_config_t *cfg, const char *const *extra);

/* At the end of a program's setup: logs one WARN line per key no getter
 * has read; an unknown key gets the same line (and suggestion) as from
 * mprpc_config_warn_unknown unless it was reported already, a key the
 * library knows but this program did not read gets "key 'K' is not used by
 * this program (ignored)". Returns how many keys were unread. */
size_t mprpc_config_warn_unused(const mprpc_config_t *cfg);

MPRPC_END_DECLS

/* The bootstrap functions were declared here before 0.2. */
#include "mprpc/app.h"
#endif
