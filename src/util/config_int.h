/*
 * What the programs' bootstrap (src/app/app.c) needs of the config loader
 * beyond the public getters: errors that name the file and line of a key.
 */
#ifndef MPRPC__CONFIG_INT_H
#define MPRPC__CONFIG_INT_H

#include "mprpc/config.h"

/* Sets the config's error text to "FILE:LINE: key 'K': invalid value 'V':
 * expected EXPECTED" (marking the key used) and returns MPRPC_ECONFIG. */
int mprpc__config_bad_value(mprpc_config_t *cfg, const char *key, const char *expected);
void mprpc__config_errorf(mprpc_config_t *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Sets the error text to "FILE:LINE: key 'K': TEXT" (marking the key used)
 * and returns MPRPC_ECONFIG. */
int mprpc__config_key_error(mprpc_config_t *cfg, const char *key, const char *text);
/* Whether a getter has read key (false when absent). */
bool mprpc__config_used(const mprpc_config_t *cfg, const char *key);

/* The entries whose key `want` accepts, as one key=value text (marking
 * them used), for mprpc_*_opts_t.governance. When they all come from one
 * file, each is on its line of that file (blank lines between) and *name
 * is the file; otherwise they follow each other and *name is NULL. Both
 * live as long as cfg; NULL when no entry matched. 0 or MPRPC_ENOMEM. */
int mprpc__config_collect(mprpc_config_t *cfg, bool (*want)(const char *key), const char **text,
                          const char **name);

#endif
