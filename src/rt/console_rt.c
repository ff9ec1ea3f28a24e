/*
 * The console's production seams (mprpc/console.h): the JSON codec over
 * src/util/json.c, the process figures from /proc/self, the process-wide
 * list of channels (a mutex: channels come and go on any thread while a
 * console reads /metrics), and mprpc_console_start for a process that has
 * channels but no server (a server without services on a loop of its own).
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mprpc/channel.h"
#include "mprpc/console.h"
#include "mprpc/errors.h"
#include "mprpc/json.h"
#include "mprpc/server.h"
#include "rt/rt_internal.h"

/* ---- JSON --------------------------------------------------------------------- */

static int json_to_pb(void *ctx, const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                      uint8_t **out, size_t *out_len, char *err, size_t errlen) {
  (void)ctx;
  ProtobufCMessage *m = NULL;
  int rc = mprpc_json_to_message(json, len, d, NULL, &m, err, errlen);
  if (rc < 0)
    return rc;
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *p = malloc(n ? n : 1);
  if (!p) {
    protobuf_c_message_free_unpacked(m, NULL);
    return MPRPC_ENOMEM;
  }
  protobuf_c_message_pack(m, p);
  protobuf_c_message_free_unpacked(m, NULL);
  *out = p;
  *out_len = n;
  return 0;
}

static int pb_to_json(void *ctx, const ProtobufCMessageDescriptor *d, const uint8_t *pb, size_t len,
                      char **out, size_t *out_len, char *err, size_t errlen) {
  (void)ctx;
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, pb);
  if (!m) {
    snprintf(err, errlen, "response does not decode as %s", d->name);
    return MPRPC_EINVAL;
  }
  int rc = mprpc_message_to_json(m, 0, out, out_len);
  protobuf_c_message_free_unpacked(m, NULL);
  if (rc < 0)
    snprintf(err, errlen, "%s", mprpc_strerror(rc));
  return rc;
}

static const mprpc_json_codec_ops_t json_ops = {json_to_pb, pb_to_json};

/* ---- /proc/self ------------------------------------------------------------------- */

static int proc_read(void *ctx, mprpc_process_info_t *o) {
  (void)ctx;
  memset(o, 0, sizeof *o);
  o->open_fds = -1;
  long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  if (!f)
    return MPRPC_ENOTFOUND;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  if (!p || tck <= 0)
    return MPRPC_EINVAL;
  unsigned long utime = 0, stime = 0;
  unsigned long long start = 0;
  long rss = 0;
  /* fields 3.. after the name: state ppid pgrp session tty tpgid flags minflt cminflt
   * majflt cmajflt utime stime cutime cstime priority nice threads itreal starttime vsize rss */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
                    "%llu %*u %ld",
             &utime, &stime, &start, &rss) != 4)
    return MPRPC_EINVAL;
  o->cpu_seconds = (double)(utime + stime) / (double)tck;
  o->resident_memory_bytes = (double)rss * (double)page;
  /* start: clock ticks after boot; boot time from /proc/stat's btime */
  f = fopen("/proc/stat", "r");
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f)) {
      unsigned long long bt;
      if (sscanf(line, "btime %llu", &bt) == 1) {
        o->start_time_seconds = (double)bt + (double)start / (double)tck;
        break;
      }
    }
    fclose(f);
  }
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    double fds = 0;
    for (struct dirent *e; (e = readdir(d));)
      if (e->d_name[0] != '.')
        fds++;
    closedir(d);
    o->open_fds = fds - 1; /* the directory's own descriptor */
  }
  return 0;
}

static const mprpc_procinfo_ops_t proc_ops = {proc_read};

/* ---- the process's channels ---------------------------------------------------------- */

static pthread_mutex_t ch_mu = PTHREAD_MUTEX_INITIALIZER;
static mprpc_channel_t **ch_v;
static size_t ch_n, ch_cap;

static void ch_each(void *ctx, void (*fn)(void *arg, const mprpc_channel_t *ch), void *arg) {
  (void)ctx;
  pthread_mutex_lock(&ch_mu);
  for (size_t i = 0; i < ch_n; i++)
    fn(arg, ch_v[i]);
  pthread_mutex_unlock(&ch_mu);
}

static void ch_add(void *ctx, mprpc_channel_t *ch) {
  (void)ctx;
  pthread_mutex_lock(&ch_mu);
  if (ch_n == ch_cap) {
    size_t cap = ch_cap ? ch_cap * 2 : 16;
    mprpc_channel_t **v = realloc(ch_v, cap * sizeof *v);
    if (v) {
      ch_v = v;
      ch_cap = cap;
    }
  }
  if (ch_n < ch_cap) /* out of memory: the channel just goes uncounted */
    ch_v[ch_n++] = ch;
  pthread_mutex_unlock(&ch_mu);
}

static void ch_remove(void *ctx, mprpc_channel_t *ch) {
  (void)ctx;
  pthread_mutex_lock(&ch_mu);
  for (size_t i = 0; i < ch_n; i++)
    if (ch_v[i] == ch) {
      ch_v[i] = ch_v[--ch_n];
      break;
    }
  if (ch_n == 0) {
    free(ch_v);
    ch_v = NULL;
    ch_cap = 0;
  }
  pthread_mutex_unlock(&ch_mu);
}

static const mprpc_channel_list_ops_t list_ops = {ch_each, ch_add, ch_remove};

mprpc_channel_list_t mprpc_process_channels(void) {
  return (mprpc_channel_list_t){.vt = &list_ops, .ctx = NULL};
}

void mprpc__rt_console_seams(mprpc_server_opts_t *o) {
  if (!o->json.vt)
    o->json = (mprpc_json_codec_t){.vt = &json_ops, .ctx = NULL};
  if (!o->procinfo.vt)
    o->procinfo = (mprpc_procinfo_t){.vt = &proc_ops, .ctx = NULL};
  if (!o->channels.vt)
    o->channels = mprpc_process_channels();
}

/* ---- a console without a server ---------------------------------------------------------- */

struct mprpc_console {
  mprpc_server_t *s;
};

int mprpc_console_start(const mprpc_console_opts_t *opts, mprpc_console_t **out) {
  if (!opts || !out)
    return MPRPC_EINVAL;
  mprpc_console_t *c = calloc(1, sizeof *c);
  if (!c)
    return MPRPC_ENOMEM;
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.host = opts->host ? opts->host : "127.0.0.1";
  o.port = opts->port;
  o.console = true;
  o.console_write = opts->write;
  o.reflection = false; /* no services to describe */
  o.drain_timeout_ms = 100;
  o.logoff_grace_ms = 0;
  int rc = mprpc_server_new(&o, &c->s);
  if (rc < 0)
    goto fail;
  if ((rc = mprpc_server_start(c->s)) < 0)
    goto fail;
  *out = c;
  return 0;
fail:
  mprpc_server_destroy(c->s);
  free(c);
  return rc;
}

uint16_t mprpc_console_port(const mprpc_console_t *c) { return c ? mprpc_server_port(c->s) : 0; }

void mprpc_console_stop(mprpc_console_t *c) {
  if (!c)
    return;
  mprpc_server_destroy(c->s);
  free(c);
}
