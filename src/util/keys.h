/*
 * Every config key the library reads, in one table (keys.c): what the
 * unknown-key report of mprpc_app_init and mprpc_config_warn_unknown /
 * mprpc_config_warn_unused compare a file's keys against, and what
 * docs/config.md must describe (tests/test_app.c checks both ways).
 */
#ifndef MPRPC_UTIL_KEYS_H
#define MPRPC_UTIL_KEYS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct mprpc__key {
  const char *name;
  const char *part; /* who reads it: "server", "channel", "registry", "log", ... */
} mprpc__key_t;

/* The table and its length. */
const mprpc__key_t *mprpc__keys(size_t *n);
/* The known key nearest to key by edit distance when it is close enough
 * to be a typo (distance 1 for keys up to 4 characters, 2 up to 11, 3
 * beyond); NULL otherwise or when key is itself known. */
const char *mprpc__key_suggest(const char *key);
/* Keys collected into the governance text of a provider / a consumer
 * (rate_limit[.M], max_concurrency.M / timeout_ms[.M], max_retry.M,
 * degrade[.M], weight.HOST:PORT, disabled.HOST:PORT). */
bool mprpc__key_gov_server(const char *key);
bool mprpc__key_gov_channel(const char *key);
/* Levenshtein distance, capped: returns cap + 1 when it is larger. */
size_t mprpc__edit_distance(const char *a, const char *b, size_t cap);

#endif
