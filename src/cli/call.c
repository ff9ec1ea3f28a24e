/*
 * mprpc call TARGET SERVICE.METHOD [JSON|@FILE|-]  and
 * mprpc describe TARGET [SERVICE]                  (docs/cli.md)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "mprpc/errors.h"
#include "mprpc/json.h"

static void call_usage(FILE *f) {
  fprintf(f,
          "usage: mprpc call TARGET SERVICE.METHOD [JSON|@FILE|-] [options]\n"
          "Calls one method and prints the response as JSON on stdout.\n"
          "TARGET is HOST:PORT, a comma-separated list, or a registry URI\n"
          "(zk://..., file://..., static://...). The request defaults to {}.\n"
          "Exit: 0 ok, 1 the call failed (stderr: error CODE NAME: text), 2 bad usage or JSON.\n"
          "options:\n%s  --help                this text\n",
          cli_opts_help);
}

int cli_call(int argc, char **argv) {
  cli_opts_t o;
  cli_opts_init(&o);
  const char *pos[3] = {0};
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      call_usage(stdout);
      return CLI_OK;
    }
    int r = cli_opt_parse(&o, argc, argv, &i);
    if (r < 0)
      return CLI_USAGE;
    if (r > 0)
      continue;
    if (argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "mprpc call: unknown option %s\n", argv[i]);
      call_usage(stderr);
      return CLI_USAGE;
    }
    if (npos == 3) {
      fprintf(stderr, "mprpc call: too many arguments ('%s')\n", argv[i]);
      return CLI_USAGE;
    }
    pos[npos++] = argv[i];
  }
  if (npos < 2) {
    call_usage(stderr);
    return CLI_USAGE;
  }
  size_t jlen = 0;
  char *json = cli_read_request(pos[2] ? pos[2] : "{}", &jlen);
  if (!json) {
    fprintf(stderr, "mprpc call: cannot read the request %s\n", pos[2]);
    return CLI_USAGE;
  }
  cli_env_t e;
  int rc = cli_env_open(&e, pos[0]);
  const ProtobufCServiceDescriptor *sd = NULL;
  unsigned mi = 0;
  if (rc == CLI_OK)
    rc = cli_resolve_method(&e, &o, pos[1], &sd, &mi);
  ProtobufCMessage *req = NULL;
  if (rc == CLI_OK) {
    char err[512] = "";
    int jrc = mprpc_json_to_message(json, jlen, sd->methods[mi].input, NULL, &req, err, sizeof err);
    if (jrc != 0) {
      fprintf(stderr, "mprpc call: request JSON for %s: %s\n", sd->methods[mi].input->name,
              *err ? err : mprpc_strerror(jrc));
      rc = CLI_USAGE;
    }
  }
  mprpc_channel_t *ch = NULL;
  if (rc == CLI_OK)
    rc = cli_channel(&e, &o, sd, &ch);
  if (rc == CLI_OK) {
    cli_result_t r;
    memset(&r, 0, sizeof r);
    cli_call_sync(&e, ch, mi, req, &o, &r);
    if (r.code != 0) {
      cli_print_rpc_error(r.code, r.text);
      rc = CLI_FAIL;
    } else {
      printf("%s\n", r.json);
      if (o.show_attachment) {
        fwrite(r.attachment ? r.attachment : "", 1, r.attachment_len, stdout);
        printf("\n");
      }
    }
    free(r.json);
    free(r.attachment);
    mprpc_channel_destroy(ch);
  }
  if (req)
    protobuf_c_message_free_unpacked(req, NULL);
  free(json);
  cli_env_close(&e);
  fflush(stdout);
  return rc;
}

/* ---- describe ----------------------------------------------------------------------- */

typedef struct seen {
  const void **p;
  size_t n, cap;
} seen_t;

static bool seen_add(seen_t *s, const void *p) {
  for (size_t i = 0; i < s->n; i++)
    if (s->p[i] == p)
      return false;
  if (s->n == s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 32;
    const void **np = realloc(s->p, nc * sizeof *np);
    if (!np)
      return false;
    s->p = np;
    s->cap = nc;
  }
  s->p[s->n++] = p;
  return true;
}

static const char *scalar_name(ProtobufCType t) {
  static const char *const n[] = {"int32",  "sint32",  "sfixed32", "int64",  "sint64", "sfixed64",
                                  "uint32", "fixed32", "uint64",   "fixed64", "float", "double",
                                  "bool",   "enum",    "string",   "bytes",   "message"};
  return (unsigned)t < sizeof n / sizeof n[0] ? n[t] : "?";
}

static void describe_enum(const ProtobufCEnumDescriptor *d) {
  printf("enum %s\n", d->name);
  for (unsigned i = 0; i < d->n_value_names; i++)
    printf("  %s = %d;\n", d->values_by_name[i].name, d->values[d->values_by_name[i].index].value);
}

/* Prints m, then every message and enum it uses, each once. */
static void describe_message(const ProtobufCMessageDescriptor *m, seen_t *s) {
  if (!seen_add(s, m))
    return;
  printf("message %s\n", m->name);
  for (unsigned i = 0; i < m->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &m->fields[i];
    const char *label = f->label == PROTOBUF_C_LABEL_REQUIRED   ? "required "
                        : f->label == PROTOBUF_C_LABEL_REPEATED ? "repeated "
                        : f->label == PROTOBUF_C_LABEL_OPTIONAL ? "optional "
                                                                : "";
    const char *type = f->type == PROTOBUF_C_TYPE_MESSAGE
                           ? ((const ProtobufCMessageDescriptor *)f->descriptor)->name
                       : f->type == PROTOBUF_C_TYPE_ENUM
                           ? ((const ProtobufCEnumDescriptor *)f->descriptor)->name
                           : scalar_name(f->type);
    printf("  %s%s %s = %u;%s%s\n", label, type, f->name, f->id,
           f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF ? " // oneof" : "",
           f->flags & PROTOBUF_C_FIELD_FLAG_PACKED ? " // packed" : "");
  }
  for (unsigned i = 0; i < m->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &m->fields[i];
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
      describe_message(f->descriptor, s);
    else if (f->type == PROTOBUF_C_TYPE_ENUM && seen_add(s, f->descriptor))
      describe_enum(f->descriptor);
  }
}

static void describe_service(const ProtobufCServiceDescriptor *sd, seen_t *s) {
  printf("service %s\n", sd->name);
  for (unsigned i = 0; i < sd->n_methods; i++)
    printf("  rpc %s(%s) returns (%s);\n", sd->methods[i].name, sd->methods[i].input->name,
           sd->methods[i].output->name);
  for (unsigned i = 0; i < sd->n_methods; i++) {
    describe_message(sd->methods[i].input, s);
    describe_message(sd->methods[i].output, s);
  }
}

static void describe_usage(FILE *f) {
  fprintf(f,
          "usage: mprpc describe TARGET [SERVICE] [--proto FILE] [--timeout-ms N]\n"
          "Prints the services (all, or SERVICE), their methods and every message and\n"
          "enum they use, from the provider's reflection service or from --proto FILE.\n"
          "Exit: 0 ok, 1 the provider could not be asked, 2 bad usage.\n");
}

int cli_describe(int argc, char **argv) {
  cli_opts_t o;
  cli_opts_init(&o);
  const char *pos[2] = {0};
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      describe_usage(stdout);
      return CLI_OK;
    }
    int r = cli_opt_parse(&o, argc, argv, &i);
    if (r < 0)
      return CLI_USAGE;
    if (r > 0)
      continue;
    if ((argv[i][0] == '-' && argv[i][1]) || npos == 2) {
      fprintf(stderr, "mprpc describe: unexpected argument %s\n", argv[i]);
      describe_usage(stderr);
      return CLI_USAGE;
    }
    pos[npos++] = argv[i];
  }
  if (npos < 1) {
    describe_usage(stderr);
    return CLI_USAGE;
  }
  cli_env_t e;
  int rc = cli_env_open(&e, pos[0]);
  if (rc == CLI_OK)
    rc = cli_load_descriptors(&e, &o, pos[1]);
  if (rc == CLI_OK) {
    seen_t s = {0};
    if (pos[1]) {
      const ProtobufCServiceDescriptor *sd = mprpc_dynpool_service(e.pool, pos[1]);
      if (!sd) {
        char t[512];
        snprintf(t, sizeof t, "no service %s at %s", pos[1], o.proto ? o.proto : pos[0]);
        if (o.proto) {
          fprintf(stderr, "mprpc describe: %s\n", t);
          rc = CLI_USAGE;
        } else {
          cli_print_rpc_error(MPRPC_ENOSERVICE, t);
          rc = CLI_FAIL;
        }
      } else {
        describe_service(sd, &s);
      }
    } else {
      for (size_t i = 0; i < mprpc_dynpool_service_count(e.pool); i++)
        describe_service(mprpc_dynpool_service_at(e.pool, i), &s);
    }
    free(s.p);
  }
  cli_env_close(&e);
  fflush(stdout);
  return rc;
}
