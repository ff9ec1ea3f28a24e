/*
 * mprpc list URI [SERVICE...]: the services of a registry and, for each,
 * its providers with weight, version and a connect probe (docs/cli.md).
 *
 * The registry interface subscribes to named services; it cannot list
 * them. Without SERVICE names: static:// (or a plain HOST:PORT list) asks
 * each endpoint's mprpc.Reflection which services it serves; file:// takes
 * the names from the file's first column (the format of docs/registry.md);
 * zk:// lists the children of <chroot>/mprpc/services.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "mprpc/errors.h"

static void list_usage(FILE *f) {
  fprintf(f,
          "usage: mprpc list URI [SERVICE...] [--wait-ms N] [--no-probe]\n"
          "Lists services and their providers: address, weight, version, health.\n"
          "URI: zk://HOST:PORT[/chroot], file:///PATH,\n"
          "static://HOST:PORT[,...] or a plain HOST:PORT[,...] list.\n"
          "  --wait-ms N   how long to wait for the registry's lists (default 3000)\n"
          "  --no-probe    do not try to connect to each provider (health=unknown)\n"
          "Exit: 0 ok, 1 the registry or a provider could not be asked, 2 bad usage.\n");
}

typedef struct names {
  char **v;
  size_t n, cap;
} names_t;

static void names_add(names_t *s, const char *name) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], name) == 0)
      return;
  if (s->n == s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 16;
    char **nv = realloc(s->v, nc * sizeof *nv);
    if (!nv)
      return;
    s->v = nv;
    s->cap = nc;
  }
  s->v[s->n] = strdup(name);
  if (s->v[s->n])
    s->n++;
}

static void names_free(names_t *s) {
  for (size_t i = 0; i < s->n; i++)
    free(s->v[i]);
  free(s->v);
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* mprpc.Reflection.ListServices of one endpoint into out. */
static int ask_services(cli_env_t *e, const char *endpoint, int64_t timeout_ms, names_t *out) {
  cli_env_t re = *e;
  re.reg.vt = NULL;
  re.servers = (char *)endpoint;
  cli_opts_t o;
  cli_opts_init(&o);
  o.timeout_ms = timeout_ms;
  const ProtobufCServiceDescriptor *rsd = mprpc_reflection_descriptor();
  mprpc_channel_t *ch;
  if (cli_channel(&re, &o, rsd, &ch) != CLI_OK)
    return CLI_FAIL;
  const ProtobufCMethodDescriptor *m =
      protobuf_c_service_descriptor_get_method_by_name(rsd, "ListServices");
  ProtobufCMessage *req = malloc(m->input->sizeof_message);
  mprpc_dynmsg_init(m->input, req);
  cli_result_t r;
  memset(&r, 0, sizeof r);
  r.want_message = true;
  cli_call_sync(&re, ch, (unsigned)(m - rsd->methods), req, &o, &r);
  free(req);
  mprpc_channel_destroy(ch);
  free(r.attachment);
  if (r.code != 0) {
    char t[700];
    snprintf(t, sizeof t, "ListServices of %s: %s", endpoint, r.text);
    cli_print_rpc_error(r.code, t);
    return CLI_FAIL;
  }
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field_by_name(r.message->descriptor, "service");
  size_t n = *(const size_t *)(const void *)((const char *)r.message + f->quantifier_offset);
  char **v = *(char **const *)(const void *)((const char *)r.message + f->offset);
  for (size_t i = 0; i < n; i++)
    names_add(out, v[i]);
  protobuf_c_message_free_unpacked(r.message, NULL);
  return CLI_OK;
}

/* file:///path?opts -> the service names of its lines. */
static int file_names(const char *uri, names_t *out) {
  const char *p = uri + strlen("file://");
  char path[4096];
  snprintf(path, sizeof path, "%s", p);
  char *q = strchr(path, '?');
  if (q)
    *q = 0;
  size_t len;
  char *text = cli_read_file(path, &len);
  if (!text)
    return CLI_OK; /* a missing file is an empty registry */
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    line += strspn(line, " \t");
    if (*line == '#' || !*line)
      continue;
    size_t k = strcspn(line, " \t\r");
    line[k] = 0;
    names_add(out, line);
  }
  free(text);
  return CLI_OK;
}

static const char *probe(const mprpc_instance_t *it, bool do_probe) {
  if (!do_probe)
    return "unknown";
  char port[16], err[300];
  snprintf(port, sizeof port, "%u", (unsigned)it->port);
  int fd = cli_tcp_connect(it->host, port, 1000, err, sizeof err);
  if (fd < 0)
    return "down";
  close(fd);
  return "up";
}

int cli_list(int argc, char **argv) {
  const char *uri = NULL;
  names_t want = {0};
  int64_t wait_ms = 3000;
  bool do_probe = true;
  int rc = CLI_OK;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      list_usage(stdout);
      names_free(&want);
      return CLI_OK;
    }
    if (strcmp(argv[i], "--no-probe") == 0) {
      do_probe = false;
      continue;
    }
    if (strncmp(argv[i], "--wait-ms", 9) == 0 && (argv[i][9] == 0 || argv[i][9] == '=')) {
      const char *v = argv[i][9] == '=' ? argv[i] + 10 : (i + 1 < argc ? argv[++i] : "");
      char *end;
      wait_ms = strtoll(v, &end, 10);
      if (!*v || *end || wait_ms < 1 || wait_ms > 600000) {
        fprintf(stderr, "mprpc list: --wait-ms '%s': expected 1..600000\n", v);
        names_free(&want);
        return CLI_USAGE;
      }
      continue;
    }
    if (argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "mprpc list: unknown option %s\n", argv[i]);
      list_usage(stderr);
      names_free(&want);
      return CLI_USAGE;
    }
    if (!uri)
      uri = argv[i];
    else
      names_add(&want, argv[i]);
  }
  if (!uri) {
    list_usage(stderr);
    return CLI_USAGE;
  }
  char *owned = NULL;
  if (!strstr(uri, "://")) { /* a plain host list is a static registry */
    owned = malloc(strlen(uri) + 10);
    if (!owned)
      return CLI_FAIL;
    sprintf(owned, "static://%s", uri);
    uri = owned;
  }
  bool is_static = strncmp(uri, "static://", 9) == 0, is_file = strncmp(uri, "file://", 7) == 0;
  cli_env_t e;
  rc = cli_env_open(&e, uri);
  bool env_ok = rc == CLI_OK;
  if (rc == CLI_OK && want.n == 0 && !is_static && !is_file) {
    /* zk://: the registry enumerates its services */
    char **names;
    size_t nn;
    int lrc = mprpc_registry_list_services(e.reg, &names, &nn);
    if (lrc == MPRPC_EUNSUPPORTED) {
      fprintf(stderr, "mprpc list: %s cannot enumerate its services: name them "
                      "(mprpc list URI SERVICE...)\n", uri);
      rc = CLI_USAGE;
      env_ok = false;
    } else if (lrc < 0) {
      cli_print_rpc_error(lrc, "listing the services failed");
      rc = CLI_FAIL;
      env_ok = false;
    }
    for (size_t i = 0; i < nn; i++)
      names_add(&want, names[i]);
    mprpc_registry_names_free(names, nn);
  }
  /* static without names: each endpoint says what it serves */
  names_t eps = {0};
  names_t *served = NULL; /* served[i]: what eps.v[i] serves */
  if (rc == CLI_OK && want.n == 0 && is_static) {
    int health;
    char *list = cli_registry_endpoints(&e, "mprpc.Reflection", wait_ms, &health);
    char *save = NULL;
    for (char *t = list ? strtok_r(list, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
      names_add(&eps, t);
    free(list);
    served = calloc(eps.n + 1, sizeof *served);
    for (size_t i = 0; served && i < eps.n; i++) {
      if (ask_services(&e, eps.v[i], wait_ms, &served[i]) != CLI_OK) {
        rc = CLI_FAIL;
        continue;
      }
      for (size_t k = 0; k < served[i].n; k++)
        names_add(&want, served[i].v[k]);
    }
  } else if (rc == CLI_OK && want.n == 0 && is_file) {
    rc = file_names(uri, &want);
  }
  if (want.n)
    qsort(want.v, want.n, sizeof *want.v, cmp_names);
  for (size_t s = 0; s < want.n && env_ok; s++) {
    mprpc_instance_t *items = NULL;
    size_t n = 0;
    int health = MPRPC_REG_CONNECTING;
    int lrc = cli_registry_instances(&e, want.v[s], wait_ms, &items, &n, &health);
    if (lrc != 0) {
      cli_print_rpc_error(lrc, "subscribe failed");
      rc = CLI_FAIL;
      continue;
    }
    size_t shown = 0;
    for (size_t i = 0; i < n; i++) {
      char ep[300];
      snprintf(ep, sizeof ep, strchr(items[i].host, ':') ? "[%s]:%u" : "%s:%u", items[i].host,
               (unsigned)items[i].port);
      bool keep = true;
      if (served) { /* static: only endpoints that said they serve it */
        keep = false;
        for (size_t k = 0; k < eps.n; k++)
          if (strcmp(eps.v[k], ep) == 0)
            for (size_t j = 0; j < served[k].n; j++)
              keep |= strcmp(served[k].v[j], want.v[s]) == 0;
      }
      shown += keep;
    }
    printf("service %s providers=%zu registry=%s\n", want.v[s], shown,
           mprpc_registry_health_name(health));
    for (size_t i = 0; i < n; i++) {
      char ep[300];
      snprintf(ep, sizeof ep, strchr(items[i].host, ':') ? "[%s]:%u" : "%s:%u", items[i].host,
               (unsigned)items[i].port);
      bool keep = true;
      if (served) {
        keep = false;
        for (size_t k = 0; k < eps.n; k++)
          if (strcmp(eps.v[k], ep) == 0)
            for (size_t j = 0; j < served[k].n; j++)
              keep |= strcmp(served[k].v[j], want.v[s]) == 0;
      }
      if (!keep)
        continue;
      printf("  provider %s weight=%u version=%s health=%s\n", ep,
             items[i].weight ? items[i].weight : MPRPC_DEFAULT_WEIGHT,
             items[i].version && *items[i].version ? items[i].version : "-",
             probe(&items[i], do_probe));
    }
    cli_instances_free(items, n);
  }
  for (size_t i = 0; served && i < eps.n; i++)
    names_free(&served[i]);
  free(served);
  names_free(&eps);
  names_free(&want);
  cli_env_close(&e);
  free(owned);
  fflush(stdout);
  return rc;
}
