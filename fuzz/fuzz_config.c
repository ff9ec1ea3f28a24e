/*
 * Fuzz target "config": the key=value parser and the value parsers.
 *
 * Checks:
 *  C1  load_string never crashes; it returns 0 or MPRPC_ECONFIG (or ENOMEM),
 *      and a rejected text leaves a fresh config empty with an error text.
 *  C2  Every accepted entry has a non-empty key of [A-Za-z0-9_.-] and a value
 *      without newline and without spaces, tabs or CRs at either end.
 *  C3  Round trip: writing the entries back as "key=value\n" and parsing
 *      that gives the same entries in the same order.
 *  C4  Every typed parser runs on every value; an accepted host:port prints
 *      back ("host:port" or "[host]:port") to the same parse.
 *  C5  registry_uri and server_addr never write past their buffers and end
 *      them with a NUL.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/config.h"
#include "mprpc/server.h"
#include "mprpc/errors.h"
#include "mprpc/log.h"
#include "support/check.h"

static bool key_ok(const char *k) {
  if (!*k)
    return false;
  for (; *k; k++) {
    char c = *k;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '_' || c == '.' || c == '-'))
      return false;
  }
  return true;
}

static bool edge_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

static void check_values(mprpc_config_t *cfg, const char *v) {
  int64_t i;
  bool b;
  uint64_t sz;
  mprpc_hostport_t hp, hp2;
  (void)mprpc_parse_int(v, INT64_MIN, INT64_MAX, &i);
  (void)mprpc_parse_bool(v, &b);
  if (mprpc_parse_duration_ms(v, &i) == 0)
    FUZZ_CHECK(i >= 0);
  (void)mprpc_parse_size(v, &sz);
  if (mprpc_parse_hostport(v, true, &hp) == 0) {
    FUZZ_CHECK(hp.host[0] && (hp.family == 0 || hp.family == 4 || hp.family == 6));
    char back[300];
    snprintf(back, sizeof back, hp.family == 6 ? "[%s]:%u" : "%s:%u", hp.host, (unsigned)hp.port);
    FUZZ_CHECK(mprpc_parse_hostport(back, true, &hp2) == 0);
    FUZZ_CHECK(strcmp(hp.host, hp2.host) == 0 && hp.port == hp2.port && hp.family == hp2.family);
  }
  (void)cfg;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_OFF); /* duplicate-key warnings */
  mprpc_config_t *cfg;
  FUZZ_CHECK(mprpc_config_new(&cfg) == 0);
  int rc = mprpc_config_load_string(cfg, (const char *)data, size, "fuzz");
  FUZZ_CHECK(rc == 0 || rc == MPRPC_ECONFIG || rc == MPRPC_ENOMEM);
  if (rc != 0) {
    FUZZ_CHECK(mprpc_config_count(cfg) == 0);
    FUZZ_CHECK(mprpc_config_error(cfg)[0] != 0);
    mprpc_config_free(cfg);
    return 0;
  }

  size_t n = mprpc_config_count(cfg), cap = 1;
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    FUZZ_CHECK(mprpc_config_entry(cfg, i, &k, &v) == 0);
    FUZZ_CHECK(key_ok(k));
    FUZZ_CHECK(strchr(v, '\n') == NULL);
    size_t vl = strlen(v);
    FUZZ_CHECK(vl == 0 || (!edge_space(v[0]) && !edge_space(v[vl - 1])));
    cap += strlen(k) + vl + 2;
    check_values(cfg, v);
  }

  char *text = malloc(cap);
  FUZZ_CHECK(text != NULL);
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    mprpc_config_entry(cfg, i, &k, &v);
    off += (size_t)sprintf(text + off, "%s=%s\n", k, v);
  }
  mprpc_config_t *again;
  FUZZ_CHECK(mprpc_config_new(&again) == 0);
  FUZZ_CHECK(mprpc_config_load_string(again, text, off, "again") == 0);
  FUZZ_CHECK(mprpc_config_count(again) == n);
  for (size_t i = 0; i < n; i++) {
    const char *k1, *v1, *k2, *v2;
    mprpc_config_entry(cfg, i, &k1, &v1);
    mprpc_config_entry(again, i, &k2, &v2);
    FUZZ_CHECK(strcmp(k1, k2) == 0 && strcmp(v1, v2) == 0);
  }
  mprpc_config_free(again);
  free(text);

  char small[24];
  memset(small, 'x', sizeof small);
  rc = mprpc_config_registry_uri(cfg, small, sizeof small);
  if (rc == 0 || rc == MPRPC_ENAMETOOLONG)
    FUZZ_CHECK(memchr(small, 0, sizeof small) != NULL);
  mprpc_hostport_t hp;
  (void)mprpc_config_server_addr(cfg, &hp);
  mprpc_config_free(cfg);
  return 0;
}
