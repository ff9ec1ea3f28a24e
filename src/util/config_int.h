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

#endif
