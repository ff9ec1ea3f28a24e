/*
 * Program bootstrap, in the seeds' shape (MprpcApplication::Init): the
 * command line `prog -i FILE`, the seeds' config keys and the logger keys,
 * and one call to set up each side from the config:
 *
 *   provider:  mprpc_app_init, mprpc_server_from_config,
 *              mprpc_server_add_service, mprpc_server_run
 *   consumer:  mprpc_app_init, mprpc_channel_from_config, stub calls
 *
 * Defined in src/app/ (app.c, from_config.c), the one part of the library
 * that knows every other part (config, logger, registries, runtime).
 *
 * Functions return 0 or a negative MPRPC_E* code; the *_from_config ones
 * leave the error's text in mprpc_config_error(cfg).
 */
#ifndef MPRPC_APP_H
#define MPRPC_APP_H

#include "mprpc/export.h"
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "mprpc/addr.h"
#include "mprpc/config.h"

MPRPC_BEGIN_DECLS

/* Declared, not included: config.h includes this header, and server.h,
 * channel.h and registry.h include config.h (mprpc/mprpc.h has them all). */
typedef struct mprpc_server mprpc_server_t;
typedef struct mprpc_channel mprpc_channel_t;
typedef struct mprpc_registry mprpc_registry_t;

/* The programs' command line, as in the seeds: `prog -i FILE`.
 * Also accepted: `-iFILE`, `--config FILE`, `--config=FILE`, `-h`/`--help`.
 * Loads FILE into a new config stored in *cfg_out (caller frees with
 * mprpc_config_free), then applies the log_* keys to the logger (see
 * docs/config.md). Never exits. Errors, with a message and the usage text
 * on stderr: missing -i, unknown argument (MPRPC_EINVAL), unreadable file
 * (MPRPC_ENOENT, MPRPC_EACCES, ...), bad syntax or bad log_* value
 * (MPRPC_ECONFIG). For -h the usage goes to stdout and MPRPC_ECANCELED is
 * returned (the caller exits 0). *cfg_out is NULL on any error.
 * After loading, every key the library does not know (and the program did
 * not declare with mprpc_app_declare_keys) is reported with a WARN line
 * naming file, line and the nearest known key (mprpc_config_warn_unknown);
 * it is not an error. */
int mprpc_app_init(int argc, char **argv, mprpc_config_t **cfg_out);

/* The program's own config keys, so mprpc_app_init does not report them as
 * unknown: a NULL-terminated array that must stay valid (a static array);
 * NULL forgets them. Call it before mprpc_app_init, from one thread. */
void mprpc_app_declare_keys(const char *const *keys);

/* ---- one call per side ---------------------------------------------------- */

/* A stopped provider configured from cfg: listen address from rpcserverip
 * (required) and rpcserverport, the limits and options of
 * mprpc_server_opts_from_config, the log_* keys unless already applied,
 * and the registry from `registry` or zookeeperip/zookeeperport (with the
 * zookeeper_* keys), opened here and OWNED by the server: it is closed by
 * mprpc_server_destroy. Without a registry key the provider serves without
 * publishing (an INFO line says so). Then: mprpc_server_add_service,
 * mprpc_server_run (or start), mprpc_server_destroy. cfg may be freed once
 * this returns. Errors: MPRPC_ECONFIG (missing rpcserverip, bad value),
 * the registry's (MPRPC_EINVAL, MPRPC_EREGISTRY: cannot reach ZooKeeper),
 * mprpc_server_new's; the text is in mprpc_config_error(cfg); *out is NULL
 * and nothing stays open. */
int mprpc_server_from_config(mprpc_config_t *cfg, mprpc_server_t **out);

/* A channel for service sd configured from cfg: the consumer keys of
 * mprpc_channel_opts_from_config (timeouts, retries, balancer,
 * idempotent_methods, max_body_size, ...), and its providers from
 * `servers` (a fixed list; wins) or else from the registry, which this
 * opens and the channel OWNS (closed by mprpc_channel_destroy). Each call
 * opens its own registry (for ZooKeeper: its own session); to share one
 * between the channels of several services, open it with
 * mprpc_registry_from_config and use mprpc_channel_from_config_reg. Errors
 * as above; MPRPC_ECONFIG naming the keys when neither servers nor a
 * registry is configured; MPRPC_ENOTFOUND for an unknown method in
 * idempotent_methods (the text names it). */
int mprpc_channel_from_config(mprpc_config_t *cfg, const ProtobufCServiceDescriptor *sd,
                              mprpc_channel_t **out);

/* The same on a registry the caller opened and keeps (borrowed: close it
 * after destroying every channel on it); reg may be {0} when cfg has
 * `servers`. */
int mprpc_channel_from_config_reg(mprpc_config_t *cfg, const ProtobufCServiceDescriptor *sd,
                                  mprpc_registry_t reg, mprpc_channel_t **out);

/* Opens the registry cfg configures (mprpc_config_registry_uri, then
 * mprpc_registry_open). MPRPC_ENOTFOUND when none is; other errors with
 * the URI and the reason in mprpc_config_error(cfg). The caller closes it
 * with mprpc_registry_close. */
int mprpc_registry_from_config(mprpc_config_t *cfg, mprpc_registry_t *out);

/* Applies log_level, log_file, log_max_bytes, log_rotate_daily, log_keep,
 * log_queue_bytes, log_sync to the logger (mprpc_log_open). Keys that are
 * absent keep the logger's defaults. */
int mprpc_config_apply_log(mprpc_config_t *cfg);

MPRPC_END_DECLS
#endif
