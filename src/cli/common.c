/*
 * What the verbs of `mprpc` share: options, the target (host list or
 * registry URI), descriptors (reflection or --proto), channels and a
 * blocking call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mprpc/errors.h"
#include "mprpc/json.h"
#include "mprpc/log.h"

const char cli_opts_help[] =
    "  --proto FILE          descriptors from FILE (runs protoc) instead of reflection\n"
    "  --timeout-ms N        deadline of each call (default 3000)\n"
    "  --attachment STR      send STR as the request attachment\n"
    "  --compress none|snappy|gzip|zlib   compress the request payload\n"
    "  --auth TOKEN          authentication data sent with the request\n"
    "  --max-retry N         retries on another provider (default 0)\n"
    "  --pretty              indent the JSON output\n"
    "  --orig-names          .proto field names instead of lowerCamelCase\n"
    "  --emit-defaults       print fields at their default value too\n"
    "  --show-attachment     print the response attachment on a second line\n";

void cli_opts_init(cli_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->timeout_ms = 3000;
  o->compress = MPRPC_COMPRESS_NONE;
}

static bool parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (!*s || *end || errno || v < min || v > max)
    return false;
  *out = v;
  return true;
}

/* "--name=value" or "--name value". */
static const char *opt_value(const char *name, int argc, char **argv, int *i, bool *matched) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  *matched = false;
  if (strncmp(a, name, n) != 0)
    return NULL;
  if (a[n] == '=') {
    *matched = true;
    return a + n + 1;
  }
  if (a[n] != 0)
    return NULL;
  *matched = true;
  if (*i + 1 >= argc) {
    fprintf(stderr, "mprpc: %s needs a value\n", name);
    return NULL;
  }
  return argv[++*i];
}

int cli_opt_parse(cli_opts_t *o, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  if (strcmp(a, "--pretty") == 0)
    return o->json_flags |= MPRPC_JSON_PRETTY, 1;
  if (strcmp(a, "--orig-names") == 0)
    return o->json_flags |= MPRPC_JSON_ORIG_NAMES, 1;
  if (strcmp(a, "--emit-defaults") == 0)
    return o->json_flags |= MPRPC_JSON_EMIT_DEFAULTS, 1;
  if (strcmp(a, "--show-attachment") == 0)
    return o->show_attachment = true, 1;
  static const char *const names[] = {"--proto", "--timeout-ms", "--attachment", "--compress",
                                      "--auth", "--max-retry"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    bool m;
    const char *v = opt_value(names[k], argc, argv, i, &m);
    if (!m)
      continue;
    if (!v)
      return -1;
    int64_t n;
    switch (k) {
    case 0: o->proto = v; break;
    case 1:
      if (!parse_i64(v, 1, 86400000, &n)) {
        fprintf(stderr, "mprpc: --timeout-ms '%s': expected 1..86400000\n", v);
        return -1;
      }
      o->timeout_ms = n;
      break;
    case 2: o->attachment = v; break;
    case 3: {
      static const char *const cn[] = {"none", "snappy", "gzip", "zlib"}; /* brpc's numbers */
      o->compress = -1;
      for (int c = 0; c < 4; c++)
        if (strcmp(v, cn[c]) == 0)
          o->compress = c;
      if (o->compress < 0) {
        fprintf(stderr, "mprpc: --compress '%s': expected none, snappy, gzip or zlib\n", v);
        return -1;
      }
      break;
    }
    case 4: o->auth = v; break;
    case 5:
      if (!parse_i64(v, 0, 100, &n)) {
        fprintf(stderr, "mprpc: --max-retry '%s': expected 0..100\n", v);
        return -1;
      }
      o->max_retry = (int)n;
      break;
    }
    return 1;
  }
  return 0;
}

int cli_call_code(const mprpc_controller_t *c) {
  int code = mprpc_controller_error_code(c);
  if (code == MPRPC_EAPP && mprpc_controller_remote_code(c) > 0)
    code = mprpc_controller_remote_code(c);
  return code;
}

void cli_print_rpc_error(int code, const char *text) {
  if (code == 0)
    code = MPRPC_ERESPONSE;
  fprintf(stderr, "error %d %s: %s\n", mprpc_err_to_wire(code),
          mprpc_err_name(code > 0 ? MPRPC_EAPP : code),
          text && *text ? text : mprpc_strerror(code));
}

char *cli_read_file(const char *path, size_t *len) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 4096, n = 0;
  char *b = malloc(cap + 1);
  while (b) {
    size_t got = fread(b + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
    if (n == cap) {
      char *nb = realloc(b, cap * 2 + 1);
      if (!nb) {
        free(b);
        b = NULL;
        break;
      }
      b = nb;
      cap *= 2;
    }
  }
  if (f != stdin)
    fclose(f);
  if (b) {
    b[n] = 0;
    *len = n;
  }
  return b;
}

char *cli_read_request(const char *arg, size_t *len) {
  if (strcmp(arg, "-") == 0)
    return cli_read_file("-", len);
  if (arg[0] == '@')
    return cli_read_file(arg + 1, len);
  *len = strlen(arg);
  return strdup(arg);
}

/* ---- target ---------------------------------------------------------------- */

int cli_env_open(cli_env_t *e, const char *target) {
  memset(e, 0, sizeof *e);
  e->target = target;
  mprpc_log_set_level(MPRPC_LOG_LEVEL_ERROR);
  if (mprpc_loop_group_new(1, &e->group) != 0 || mprpc_loop_group_start(e->group) != 0) {
    fprintf(stderr, "mprpc: cannot start the event loop\n");
    return CLI_FAIL;
  }
  e->loop = mprpc_loop_group_loop(e->group, 0);
  if (strstr(target, "://")) {
    char err[512] = "";
    int rc = mprpc_registry_open(target, &e->reg, err, sizeof err);
    if (rc != 0) {
      fprintf(stderr, "error %d %s: registry %s: %s\n", mprpc_err_to_wire(rc), mprpc_err_name(rc),
              target, *err ? err : mprpc_strerror(rc));
      return rc == MPRPC_EINVAL ? CLI_USAGE : CLI_FAIL;
    }
  } else {
    e->servers = strdup(target);
    if (!e->servers)
      return CLI_FAIL;
  }
  return CLI_OK;
}

void cli_env_close(cli_env_t *e) {
  if (e->group)
    mprpc_loop_group_free(e->group); /* after every channel is gone */
  e->group = NULL;
  mprpc_registry_close(e->reg);
  e->reg.vt = NULL;
  mprpc_dynpool_free(e->pool);
  e->pool = NULL;
  free(e->servers);
  e->servers = NULL;
}

/* ---- endpoints from a registry ----------------------------------------------- */

typedef struct sub_wait {
  cli_env_t *e;
  const char *service;
  uint64_t id, timer;
  int64_t wait_ms;
  void *waiter;
  bool woke;
  char *list; /* "h:p,h:p" */
  mprpc_instance_t *items; /* copies, when keep_items */
  size_t nitems;
  bool keep_items;
  int health;
  int rc;
} sub_wait_t;

static void wake(sub_wait_t *w) {
  if (!w->woke) {
    w->woke = true;
    w->e->loop.vt->waiter_wake(w->e->loop.ctx, w->waiter);
  }
}

static void free_items(mprpc_instance_t *items, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free((char *)items[i].service);
    free((char *)items[i].host);
    free((char *)items[i].methods);
    free((char *)items[i].version);
  }
  free(items);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void on_watch(void *ud, const mprpc_instance_t *items, size_t n, int health) {
  sub_wait_t *w = ud;
  if (w->woke)
    return;
  free(w->list);
  size_t cap = 1;
  for (size_t i = 0; i < n; i++)
    cap += strlen(items[i].host) + 12;
  w->list = malloc(cap);
  if (w->list) {
    size_t off = 0;
    w->list[0] = 0;
    for (size_t i = 0; i < n; i++)
      off += (size_t)snprintf(w->list + off, cap - off,
                              strchr(items[i].host, ':') ? "%s[%s]:%u" : "%s%s:%u", i ? "," : "",
                              items[i].host, (unsigned)items[i].port);
  }
  if (w->keep_items) {
    free_items(w->items, w->nitems);
    w->items = calloc(n + 1, sizeof *w->items);
    w->nitems = w->items ? n : 0;
    for (size_t i = 0; i < w->nitems; i++) {
      w->items[i] = items[i];
      w->items[i].service = dup_or_null(items[i].service);
      w->items[i].host = dup_or_null(items[i].host);
      w->items[i].methods = dup_or_null(items[i].methods);
      w->items[i].version = dup_or_null(items[i].version);
    }
  }
  w->health = health;
  if (n > 0 || health == MPRPC_REG_HEALTHY)
    wake(w);
}

static void sub_timeout(void *arg) {
  sub_wait_t *w = arg;
  w->timer = 0;
  wake(w);
}

static void sub_start(void *arg) {
  sub_wait_t *w = arg;
  w->timer = mprpc_timer_start(w->e->loop, (uint64_t)w->wait_ms * 1000000u, sub_timeout, w);
  w->rc = mprpc_registry_subscribe(w->e->reg, w->service, w->e->loop, on_watch, w, &w->id);
  if (w->rc != 0)
    wake(w);
}

static void sub_stop(void *arg) {
  sub_wait_t *w = arg;
  if (w->rc == 0)
    mprpc_registry_unsubscribe(w->e->reg, w->id);
  mprpc_timer_cancel(w->e->loop, w->timer);
  w->woke = false;
  wake(w);
}

/* Subscribes to service, waits up to wait_ms for a list (non-empty, or
 * confirmed empty by a healthy registry), unsubscribes. */
static int registry_lookup(cli_env_t *e, const char *service, int64_t wait_ms, bool keep,
                           sub_wait_t *w) {
  memset(w, 0, sizeof *w);
  w->e = e;
  w->service = service;
  w->wait_ms = wait_ms;
  w->keep_items = keep;
  w->health = MPRPC_REG_CONNECTING;
  w->waiter = e->loop.vt->waiter_new(e->loop.ctx);
  if (!w->waiter || mprpc_loop_post(e->loop, sub_start, w) != 0)
    return MPRPC_ENOMEM;
  e->loop.vt->waiter_wait(e->loop.ctx, w->waiter);
  e->loop.vt->waiter_free(e->loop.ctx, w->waiter);
  w->waiter = e->loop.vt->waiter_new(e->loop.ctx);
  if (!w->waiter || mprpc_loop_post(e->loop, sub_stop, w) != 0)
    return MPRPC_ENOMEM;
  e->loop.vt->waiter_wait(e->loop.ctx, w->waiter);
  e->loop.vt->waiter_free(e->loop.ctx, w->waiter);
  return w->rc;
}

int cli_registry_instances(cli_env_t *e, const char *service, int64_t wait_ms,
                           mprpc_instance_t **items, size_t *n, int *health) {
  sub_wait_t w;
  int rc = registry_lookup(e, service, wait_ms, true, &w);
  free(w.list);
  *items = w.items;
  *n = w.nitems;
  *health = w.health;
  return rc;
}

void cli_instances_free(mprpc_instance_t *items, size_t n) { free_items(items, n); }

char *cli_registry_endpoints(cli_env_t *e, const char *service, int64_t wait_ms, int *health) {
  sub_wait_t w;
  int rc = registry_lookup(e, service, wait_ms, false, &w);
  *health = w.health;
  if (rc != 0) {
    free(w.list);
    return NULL;
  }
  return w.list ? w.list : strdup("");
}

/* ---- channels and calls ---------------------------------------------------------- */

int cli_channel(cli_env_t *e, const cli_opts_t *o, const ProtobufCServiceDescriptor *sd,
                mprpc_channel_t **out) {
  mprpc_channel_options_t co;
  mprpc_channel_options_init(&co);
  co.loop = e->loop;
  co.transport = mprpc_tcp_transport();
  if (e->reg.vt)
    co.registry = e->reg;
  else
    co.servers = e->servers;
  co.timeout_ms = o->timeout_ms;
  co.connect_timeout_ms = o->timeout_ms < 500 ? o->timeout_ms : 500;
  co.max_retry = o->max_retry;
  co.compress_type = o->compress;
  if (o->auth) {
    co.auth_data = o->auth;
    co.auth_len = strlen(o->auth);
  }
  int rc = mprpc_channel_new(sd, &co, out);
  if (rc != 0) {
    fprintf(stderr, "error %d %s: channel to %s: %s\n", mprpc_err_to_wire(rc), mprpc_err_name(rc),
            e->target, rc == MPRPC_EADDR ? "bad HOST:PORT list" : mprpc_strerror(rc));
    return rc == MPRPC_EADDR || rc == MPRPC_EINVAL ? CLI_USAGE : CLI_FAIL;
  }
  return CLI_OK;
}

typedef struct sync_call {
  cli_result_t *r;
  int json_flags;
  mprpc_loop_t loop;
  void *waiter;
} sync_call_t;

static void on_sync_done(const ProtobufCMessage *resp, void *arg) {
  sync_call_t *s = arg;
  cli_result_t *r = s->r;
  mprpc_controller_t *c = mprpc_controller_current();
  r->code = cli_call_code(c);
  snprintf(r->text, sizeof r->text, "%s", mprpc_controller_error_text(c));
  r->latency_us = mprpc_controller_latency_us(c);
  size_t alen = 0;
  const void *att = mprpc_controller_response_attachment(c, &alen);
  if (alen && (r->attachment = malloc(alen + 1))) {
    memcpy(r->attachment, att, alen);
    r->attachment[alen] = 0;
    r->attachment_len = alen;
  }
  if (resp && r->code == 0) {
    if (r->want_message) {
      r->message = mprpc_controller_take_response(c);
      if (!r->message)
        r->code = MPRPC_ENOMEM;
    } else {
      int rc = mprpc_message_to_json(resp, s->json_flags, &r->json, NULL);
      if (rc != 0) {
        r->code = MPRPC_ERESPONSE;
        snprintf(r->text, sizeof r->text, "the response does not print as JSON: %s",
                 mprpc_strerror(rc));
      }
    }
  } else if (r->code == 0) {
    r->code = MPRPC_ERESPONSE;
  }
  s->loop.vt->waiter_wake(s->loop.ctx, s->waiter);
}

int cli_call_sync(cli_env_t *e, mprpc_channel_t *ch, unsigned method, const ProtobufCMessage *req,
                  const cli_opts_t *o, cli_result_t *r) {
  sync_call_t s = {r, o->json_flags, e->loop, e->loop.vt->waiter_new(e->loop.ctx)};
  mprpc_controller_t *ctl = mprpc_controller_new();
  if (!ctl || !s.waiter) {
    r->code = MPRPC_ENOMEM;
    mprpc_controller_free(ctl);
    return r->code;
  }
  mprpc_controller_set_timeout_ms(ctl, o->timeout_ms);
  if (o->attachment)
    mprpc_controller_set_request_attachment(ctl, o->attachment, strlen(o->attachment));
  int rc = mprpc_channel_call(ch, method, req, ctl, on_sync_done, &s);
  if (rc != 0) {
    r->code = rc;
    snprintf(r->text, sizeof r->text, "%s",
             rc == MPRPC_EINVAL ? "the request is incomplete (a required field is unset?)"
                                : mprpc_strerror(rc));
  } else {
    e->loop.vt->waiter_wait(e->loop.ctx, s.waiter);
  }
  e->loop.vt->waiter_free(e->loop.ctx, s.waiter);
  mprpc_controller_free(ctl);
  return r->code;
}

/* ---- descriptors ------------------------------------------------------------------- */

static int load_proto(cli_env_t *e, const char *file) {
  struct stat st;
  if (stat(file, &st) != 0) {
    fprintf(stderr, "mprpc: --proto %s: %s\n", file, strerror(errno));
    return CLI_USAGE;
  }
  char out[] = "/tmp/mprpc-cli-XXXXXX";
  int fd = mkstemp(out);
  if (fd < 0) {
    fprintf(stderr, "mprpc: mkstemp(/tmp): %s\n", strerror(errno));
    return CLI_FAIL;
  }
  close(fd);
  char dir[4096], setarg[64], inc[4110];
  snprintf(dir, sizeof dir, "%s", file);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = 0;
  else
    snprintf(dir, sizeof dir, ".");
  snprintf(setarg, sizeof setarg, "--descriptor_set_out=%s", out);
  snprintf(inc, sizeof inc, "-I%s", dir);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(2, 1); /* protoc's messages go to stderr */
    execlp("protoc", "protoc", "--include_imports", setarg, inc, file, (char *)NULL);
    fprintf(stderr, "mprpc: cannot run protoc: %s (install protobuf-compiler)\n", strerror(errno));
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
    unlink(out);
    fprintf(stderr, "mprpc: --proto %s: protoc failed (see above)\n", file);
    return CLI_USAGE;
  }
  size_t n = 0;
  char *b = cli_read_file(out, &n);
  unlink(out);
  if (!b) {
    fprintf(stderr, "mprpc: cannot read protoc's output\n");
    return CLI_FAIL;
  }
  char err[512] = "";
  int rc = mprpc_dynpool_new((const uint8_t *)b, n, &e->pool, err, sizeof err);
  free(b);
  if (rc != 0) {
    fprintf(stderr, "mprpc: --proto %s: %s\n", file, err);
    return CLI_USAGE;
  }
  return CLI_OK;
}

static int load_reflection(cli_env_t *e, const cli_opts_t *o, const char *service) {
  char *servers = NULL;
  if (e->reg.vt) {
    int health;
    servers = cli_registry_endpoints(e, service ? service : "mprpc.Reflection", o->timeout_ms,
                                     &health);
    if (!servers || !*servers) {
      fprintf(stderr, "error %d ENOENDPOINT: no provider of %s in %s (registry %s)\n",
              mprpc_err_to_wire(MPRPC_ENOENDPOINT), service ? service : "mprpc.Reflection",
              e->target, mprpc_registry_health_name(health));
      free(servers);
      return CLI_FAIL;
    }
  }
  cli_env_t re = *e; /* the same loop, a fixed list */
  re.reg.vt = NULL;
  if (servers)
    re.servers = servers;
  cli_opts_t ro = *o;
  ro.attachment = NULL;
  ro.compress = MPRPC_COMPRESS_NONE;
  mprpc_channel_t *ch = NULL;
  const ProtobufCServiceDescriptor *rsd = mprpc_reflection_descriptor();
  int rc = cli_channel(&re, &ro, rsd, &ch);
  if (rc != CLI_OK) {
    free(servers);
    return rc;
  }
  const ProtobufCMethodDescriptor *m =
      protobuf_c_service_descriptor_get_method_by_name(rsd, "GetFileDescriptorSet");
  ProtobufCMessage *req = malloc(m->input->sizeof_message);
  mprpc_dynmsg_init(m->input, req); /* service unset: every service */
  cli_result_t r;
  memset(&r, 0, sizeof r);
  r.want_message = true;
  cli_call_sync(&re, ch, (unsigned)(m - rsd->methods), req, &ro, &r);
  free(req);
  mprpc_channel_destroy(ch);
  free(servers);
  free(r.attachment);
  if (r.code != 0) {
    if (r.code == MPRPC_ENOSERVICE || r.code == MPRPC_ENOMETHOD) {
      char t[700];
      snprintf(t, sizeof t, "%s does not serve mprpc.Reflection (%s); give --proto FILE",
               e->target, r.text);
      cli_print_rpc_error(r.code, t);
    } else {
      char t[700];
      snprintf(t, sizeof t, "reflection from %s: %s", e->target, r.text);
      cli_print_rpc_error(r.code, t);
    }
    return CLI_FAIL;
  }
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field_by_name(r.message->descriptor, "file_descriptor_set");
  const ProtobufCBinaryData *bd = (const void *)((const char *)r.message + f->offset);
  char err[512] = "";
  rc = mprpc_dynpool_new(bd->data, bd->len, &e->pool, err, sizeof err);
  protobuf_c_message_free_unpacked(r.message, NULL);
  if (rc != 0) {
    cli_print_rpc_error(MPRPC_ERESPONSE, err);
    return CLI_FAIL;
  }
  return CLI_OK;
}

int cli_load_descriptors(cli_env_t *e, const cli_opts_t *o, const char *service) {
  return o->proto ? load_proto(e, o->proto) : load_reflection(e, o, service);
}

int cli_resolve_method(cli_env_t *e, const cli_opts_t *o, const char *full,
                       const ProtobufCServiceDescriptor **sd, unsigned *method) {
  const char *dot = strrchr(full, '.');
  if (!dot || dot == full || !dot[1]) {
    fprintf(stderr, "mprpc: '%s': expected SERVICE.METHOD, e.g. example.EchoService.Echo\n", full);
    return CLI_USAGE;
  }
  char *svc = strndup(full, (size_t)(dot - full));
  if (!svc)
    return CLI_FAIL;
  int rc = cli_load_descriptors(e, o, svc);
  if (rc != CLI_OK) {
    free(svc);
    return rc;
  }
  *sd = mprpc_dynpool_service(e->pool, svc);
  if (!*sd) {
    char t[1024];
    size_t off = (size_t)snprintf(t, sizeof t, "no service %s %s", svc,
                                  o->proto ? "in" : "at");
    off += (size_t)snprintf(t + off, sizeof t - off, " %s (", o->proto ? o->proto : e->target);
    for (size_t i = 0; i < mprpc_dynpool_service_count(e->pool) && off < sizeof t - 1; i++)
      off += (size_t)snprintf(t + off, sizeof t - off, "%s%s", i ? ", " : "has: ",
                              mprpc_dynpool_service_at(e->pool, i)->name);
    if (off < sizeof t - 1)
      snprintf(t + off, sizeof t - off, ")");
    free(svc);
    if (o->proto) {
      fprintf(stderr, "mprpc: %s\n", t);
      return CLI_USAGE;
    }
    cli_print_rpc_error(MPRPC_ENOSERVICE, t);
    return CLI_FAIL;
  }
  const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(*sd, dot + 1);
  if (!m) {
    char t[1024];
    size_t off = (size_t)snprintf(t, sizeof t, "service %s has no method %s (", svc, dot + 1);
    for (unsigned i = 0; i < (*sd)->n_methods && off < sizeof t - 1; i++)
      off += (size_t)snprintf(t + off, sizeof t - off, "%s%s", i ? ", " : "methods: ",
                              (*sd)->methods[i].name);
    if (off < sizeof t - 1)
      snprintf(t + off, sizeof t - off, ")");
    free(svc);
    if (o->proto) {
      fprintf(stderr, "mprpc: %s\n", t);
      return CLI_USAGE;
    }
    cli_print_rpc_error(MPRPC_ENOMETHOD, t);
    return CLI_FAIL;
  }
  free(svc);
  *method = (unsigned)(m - (*sd)->methods);
  return CLI_OK;
}
