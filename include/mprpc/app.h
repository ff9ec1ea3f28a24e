/*
 * Program bootstrap, in the seeds' shape (MprpcApplication::Init): the
 * command line `prog -i FILE`, the seeds' config keys and the logger keys.
 * Defined in src/app/app.c, the one part of the library that knows every
 * other part (config, logger, registries).
 *
 * Functions return 0 or a negative MPRPC_E* code.
 */
#ifndef MPRPC_APP_H
#define MPRPC_APP_H

#include "mprpc/export.h"
#include <stddef.h>

#include "mprpc/addr.h"
#include "mprpc/config.h"

MPRPC_BEGIN_DECLS

/* The programs' command line, as in the seeds: `prog -i FILE`.
 * Also accepted: `-iFILE`, `--config FILE`, `--config=FILE`, `-h`/`--help`.
 * Loads FILE into a new config stored in *cfg_out (caller frees with
 * mprpc_config_free), then applies the log_* keys to the logger (see
 * docs/config.md). Never exits. Errors, with a message and the usage text
 * on stderr: missing -i, unknown argument (MPRPC_EINVAL), unreadable file
 * (MPRPC_ENOENT, MPRPC_EACCES, ...), bad syntax or bad log_* value
 * (MPRPC_ECONFIG). For -h the usage goes to stdout and MPRPC_ECANCELED is
 * returned (the caller exits 0). *cfg_out is NULL on any error. */
int mprpc_app_init(int argc, char **argv, mprpc_config_t **cfg_out);

/* Applies log_level, log_file, log_max_bytes, log_rotate_daily, log_keep,
 * log_queue_bytes, log_sync to the logger (mprpc_log_open). Keys that are
 * absent keep the logger's defaults. */
int mprpc_config_apply_log(mprpc_config_t *cfg);

MPRPC_END_DECLS
#endif
