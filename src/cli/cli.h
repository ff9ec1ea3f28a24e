/*
 * The `mprpc` command (docs/cli.md): shared pieces of its verbs. A client
 * of the public API only (the headers in include/mprpc).
 *
 * Exit codes: 0 success, 1 a framework or connection error (printed as
 * `error CODE NAME: text`, or `error: text` for HTTP), 2 bad usage or bad
 * JSON / descriptors given by the user.
 */
#ifndef MPRPC_CLI_H
#define MPRPC_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mprpc/channel.h"
#include "mprpc/reflection.h"
#include "mprpc/registry.h"
#include "mprpc/rt.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Options shared by call, describe and press. */
typedef struct cli_opts {
  const char *proto;       /* --proto FILE, or NULL: reflection */
  int64_t timeout_ms;      /* --timeout-ms, default 3000 */
  const char *attachment;  /* --attachment STR */
  int compress;            /* --compress */
  const char *auth;        /* --auth TOKEN */
  int max_retry;           /* --max-retry, default 0 */
  int json_flags;          /* --pretty, --orig-names, --emit-defaults */
  bool show_attachment;    /* --show-attachment */
} cli_opts_t;

/* The running environment of a verb: one loop, the registry when the
 * target is a URI, and the descriptors. */
typedef struct cli_env {
  mprpc_loop_group_t *group;
  mprpc_loop_t loop;
  const char *target;
  mprpc_registry_t reg; /* vt NULL for a host list */
  char *servers;        /* host list (given, or resolved from the registry) */
  mprpc_dynpool_t *pool;
} cli_env_t;

void cli_opts_init(cli_opts_t *o);
/* Parses one shared option at argv[*i] (advancing *i past its value).
 * 1 when it was one, 0 when not, -1 (message printed) when its value is bad. */
int cli_opt_parse(cli_opts_t *o, int argc, char **argv, int *i);
extern const char cli_opts_help[];

/* Starts the loop and opens the target (URI or host list). CLI_OK or an
 * exit code (message printed). */
int cli_env_open(cli_env_t *e, const char *target);
void cli_env_close(cli_env_t *e);

/* Loads descriptors into e->pool: from --proto (protoc) or by reflection
 * from the target's providers of `service` (NULL: any provider). */
int cli_load_descriptors(cli_env_t *e, const cli_opts_t *o, const char *service);

/* A channel for sd on the target with the options. */
int cli_channel(cli_env_t *e, const cli_opts_t *o, const ProtobufCServiceDescriptor *sd,
                mprpc_channel_t **out);

/* "pkg.Service.Method" -> the service and method of the pool, or an exit
 * code with `error 1001 ENOSERVICE: ...` / `error 1002 ENOMETHOD: ...`
 * (or a usage error) printed. */
int cli_resolve_method(cli_env_t *e, const cli_opts_t *o, const char *full,
                       const ProtobufCServiceDescriptor **sd, unsigned *method);

/* Reads the request text: literal JSON, @FILE, or - (stdin). malloc'ed. */
char *cli_read_request(const char *arg, size_t *len);
char *cli_read_file(const char *path, size_t *len);

/* `error CODE NAME: text` on stderr. */
void cli_print_rpc_error(int code, const char *text);
/* The call's error code: an MPRPC_E* code (negative), or for an
 * application error (MPRPC_EAPP) the handler's own code, positive, so it
 * prints as its wire number and is named as MPRPC_EAPP. */
int cli_call_code(const mprpc_controller_t *c);

/* Blocking synchronous call on the env's loop: the response as JSON
 * (malloc'ed) or NULL with *code / *text set. */
typedef struct cli_result {
  bool want_message;        /* in: keep the response message instead of JSON */
  ProtobufCMessage *message; /* out (want_message): free_unpacked(.., NULL) */
  int code;
  char text[512];
  char *json;
  char *attachment;
  size_t attachment_len;
  uint64_t latency_us;
} cli_result_t;
int cli_call_sync(cli_env_t *e, mprpc_channel_t *ch, unsigned method, const ProtobufCMessage *req,
                  const cli_opts_t *o, cli_result_t *r);

/* Registry lookups (e->reg must be open): the providers of service within
 * wait_ms. endpoints: "h:p,h:p" malloc'ed ("" none; NULL on error);
 * instances: copies freed with cli_instances_free. */
char *cli_registry_endpoints(cli_env_t *e, const char *service, int64_t wait_ms, int *health);
int cli_registry_instances(cli_env_t *e, const char *service, int64_t wait_ms,
                           mprpc_instance_t **items, size_t *n, int *health);
void cli_instances_free(mprpc_instance_t *items, size_t n);

/* Blocking TCP connect within timeout_ms: the fd, or -1 with err set. */
int cli_tcp_connect(const char *host, const char *port, int timeout_ms, char *err, size_t errlen);

/* The verbs. argv[0] is the verb. */
int cli_call(int argc, char **argv);
int cli_describe(int argc, char **argv);
int cli_press(int argc, char **argv);
int cli_list(int argc, char **argv);
int cli_http(int argc, char **argv, const char *path);

#endif
