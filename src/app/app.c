/*
 * The programs' bootstrap, in the seeds' shape: `prog -i FILE` and the
 * logger keys. Declared in include/mprpc/app.h. The seeds' address keys
 * are read where their options are (src/util/{server,registry}_config.c).
 */
#include "mprpc/app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "util/config_int.h"

/* ---- logger keys and the command line ----------------------------------- */

static const char *const *g_program_keys; /* mprpc_app_declare_keys */

void mprpc_app_declare_keys(const char *const *keys) { g_program_keys = keys; }

int mprpc_config_apply_log(mprpc_config_t *cfg) {
  static const char *const keys[] = {"log_level", "log_file", "log_max_bytes",
                                     "log_rotate_daily", "log_keep", "log_queue_bytes",
                                     "log_sync"};
  bool any = false;
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    any = any || mprpc_config_has(cfg, keys[i]);
  if (!any)
    return 0;
  mprpc_log_opts_t o;
  mprpc_log_opts_init(&o);
  const char *lvl = NULL;
  int64_t keep;
  uint64_t qb;
  bool daily, sync;
  int rc;
  mprpc_config_get_string(cfg, "log_level", NULL, &lvl);
  if (lvl) {
    int l = mprpc_log_level_from_name(lvl);
    if (l < 0)
      return mprpc__config_bad_value(cfg, "log_level",
                                     "trace, debug, info, warn, error, fatal or off");
    o.level = l;
  }
  mprpc_config_get_string(cfg, "log_file", NULL, &o.path);
  if ((rc = mprpc_config_get_size(cfg, "log_max_bytes", 0, &o.max_file_bytes)) ||
      (rc = mprpc_config_get_bool(cfg, "log_rotate_daily", false, &daily)) ||
      (rc = mprpc_config_get_int(cfg, "log_keep", o.keep, 0, 1000, &keep)) ||
      (rc = mprpc_config_get_size(cfg, "log_queue_bytes", o.queue_bytes, &qb)) ||
      (rc = mprpc_config_get_bool(cfg, "log_sync", false, &sync)))
    return rc;
  if (qb > ((uint64_t)1 << 32))
    return mprpc__config_bad_value(cfg, "log_queue_bytes", "a size up to 4GiB");
  o.rotate_daily = daily;
  o.keep = (int)keep;
  o.queue_bytes = (size_t)qb;
  o.sync = sync;
  rc = mprpc_log_open(&o);
  if (rc) {
    mprpc__config_errorf(cfg, "log_file '%s': cannot open: %s", o.path ? o.path : "-",
                         mprpc_strerror(rc));
    return rc;
  }
  return 0;
}

static const char *prog_name(char **argv) {
  const char *p = argv && argv[0] ? argv[0] : "mprpc";
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

static void usage(FILE *f, const char *prog) {
  fprintf(f,
          "usage: %s -i CONFIG_FILE\n"
          "  -i FILE, --config FILE   load key=value settings from FILE (see docs/config.md)\n"
          "  -h, --help               show this help\n",
          prog);
}

int mprpc_app_init(int argc, char **argv, mprpc_config_t **cfg_out) {
  const char *prog = prog_name(argv);
  const char *path = NULL;
  if (cfg_out)
    *cfg_out = NULL;
  if (!cfg_out)
    return MPRPC_EINVAL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout, prog);
      return MPRPC_ECANCELED;
    }
    if (strcmp(a, "-i") == 0 || strcmp(a, "--config") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "%s: error: %s needs a file name\n", prog, a);
        usage(stderr, prog);
        return MPRPC_EINVAL;
      }
      path = argv[++i];
    } else if (strncmp(a, "-i", 2) == 0) {
      path = a + 2;
    } else if (strncmp(a, "--config=", 9) == 0) {
      path = a + 9;
    } else {
      fprintf(stderr, "%s: error: unknown argument '%s'\n", prog, a);
      usage(stderr, prog);
      return MPRPC_EINVAL;
    }
  }
  if (!path || !path[0]) {
    fprintf(stderr, "%s: error: no config file given (-i FILE)\n", prog);
    usage(stderr, prog);
    return MPRPC_EINVAL;
  }
  mprpc_config_t *cfg;
  int rc = mprpc_config_new(&cfg);
  if (rc) {
    fprintf(stderr, "%s: error: out of memory\n", prog);
    return rc;
  }
  rc = mprpc_config_load_file(cfg, path);
  if (rc == 0)
    rc = mprpc_config_apply_log(cfg);
  if (rc == 0) /* after the log keys: the lines go where they configure */
    mprpc_config_warn_unknown(cfg, g_program_keys);
  if (rc) {
    fprintf(stderr, "%s: error: %s\n", prog, mprpc_config_error(cfg));
    if (rc != MPRPC_ECONFIG)
      usage(stderr, prog);
    mprpc_config_free(cfg);
    return rc;
  }
  *cfg_out = cfg;
  return 0;
}
