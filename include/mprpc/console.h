/*
 * The builtin console (docs/console.md): HTTP/1.1 on the provider's port
 * (or a port of its own) with /health, /status, /metrics, /connections,
 * /flags, /protobufs, /version and HTTP/JSON calls to the services.
 *
 * This header holds the console's seams, filled by the runtime's facade
 * (src/rt/defaults.c) and left empty by the core (the pages that need one
 * then say so), and the entry point for a process that has channels but no
 * server. Functions return 0 or a negative MPRPC_E* code.
 */
#ifndef MPRPC_CONSOLE_H
#define MPRPC_CONSOLE_H

#include "mprpc/export.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

MPRPC_BEGIN_DECLS

typedef struct mprpc_channel mprpc_channel_t;

/* ---- JSON transcoding for HTTP/JSON calls ----------------------------------- */

/* Turns a JSON body into the serialized request of type d, and a serialized
 * response of type d into JSON. Both return 0 or a negative MPRPC_E* code
 * (MPRPC_EINVAL for bad JSON, with err naming the field path); *out is
 * malloc'ed and freed by the caller with free(). Any thread. */
typedef struct mprpc_json_codec_ops {
  int (*json_to_pb)(void *ctx, const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                    uint8_t **out, size_t *out_len, char *err, size_t errlen);
  int (*pb_to_json)(void *ctx, const ProtobufCMessageDescriptor *d, const uint8_t *pb, size_t len,
                    char **out, size_t *out_len, char *err, size_t errlen);
} mprpc_json_codec_ops_t;

typedef struct mprpc_json_codec {
  const mprpc_json_codec_ops_t *vt; /* NULL: HTTP/JSON calls answer 501 */
  void *ctx;
} mprpc_json_codec_t;

/* ---- process figures for /metrics ------------------------------------------- */

typedef struct mprpc_process_info {
  double resident_memory_bytes;
  double cpu_seconds;        /* user + system */
  double start_time_seconds; /* since the Unix epoch */
  double open_fds;           /* < 0: unknown */
} mprpc_process_info_t;

typedef struct mprpc_procinfo_ops {
  /* 0, or an error (the process_* metrics are then left out). Any thread. */
  int (*read)(void *ctx, mprpc_process_info_t *out);
} mprpc_procinfo_ops_t;

typedef struct mprpc_procinfo {
  const mprpc_procinfo_ops_t *vt; /* NULL: no process_* metrics */
  void *ctx;
} mprpc_procinfo_t;

/* ---- the process's channels, for the client metrics --------------------------- */

/* A channel list the console reads /metrics' mprpc_client_* families from.
 * each() calls fn once per live channel and holds whatever keeps those
 * channels alive (the facade's list lock) until it returns, so fn may read
 * the channel's stats. Any thread. */
typedef struct mprpc_channel_list_ops {
  void (*each)(void *ctx, void (*fn)(void *arg, const mprpc_channel_t *ch), void *arg);
  /* A channel joins when made and leaves at the start of its destroy,
   * before anything of it is freed (waiting for a running each()). */
  void (*add)(void *ctx, mprpc_channel_t *ch);
  void (*remove)(void *ctx, mprpc_channel_t *ch);
} mprpc_channel_list_ops_t;

typedef struct mprpc_channel_list {
  const mprpc_channel_list_ops_t *vt; /* NULL: no client metrics */
  void *ctx;
} mprpc_channel_list_t;

/* ---- a console without a server ------------------------------------------------- */

typedef struct mprpc_console mprpc_console_t;

typedef struct mprpc_console_opts {
  const char *host; /* NULL = "127.0.0.1" */
  uint16_t port;    /* 0 = any free port (mprpc_console_port) */
  bool write;       /* POST /flags allowed */
} mprpc_console_opts_t;

/* Serves the console (health, metrics with the process's channels, flags,
 * version) on its own port, on a loop of its own, for a process that has
 * channels and no server. Production runtime only (src/rt). *out is
 * destroyed with mprpc_console_stop. Errors: listen errors
 * (MPRPC_EADDRINUSE), MPRPC_ENOMEM. */
int mprpc_console_start(const mprpc_console_opts_t *opts, mprpc_console_t **out);
uint16_t mprpc_console_port(const mprpc_console_t *c);
void mprpc_console_stop(mprpc_console_t *c);

/* The facade's process-wide channel list (what mprpc_server_new and
 * mprpc_console_start give the console). */
mprpc_channel_list_t mprpc_process_channels(void);

MPRPC_END_DECLS

#endif
