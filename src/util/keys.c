/*
 * The one table of the library's config keys. A module that reads a new
 * key adds one row here, in its part's block, and a row to docs/config.md;
 * tests/test_app.c fails until both are there.
 */
#include "util/keys.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mprpc/config.h"

static const mprpc__key_t k_keys[] = {
    /* provider: mprpc_server_opts_from_config, mprpc_config_server_addr */
    {"rpcserverip", "server"},
    {"rpcserverport", "server"},
    {"threads", "server"},
    {"max_concurrency", "server"},
    {"max_method_concurrency", "server"},
    {"weight", "server"},
    {"idle_timeout", "server"},
    {"max_buffered_bytes", "server, channel"},
    {"budget_wait", "server"},
    {"header_timeout", "server"},
    {"min_body_rate", "server"},
    {"max_connections", "server"},
    {"max_connections_per_ip", "server"},
    {"drain_timeout", "server"},
    {"logoff_grace", "server"},
    {"stats_period", "server"},
    {"rpcz_every", "server"},
    {"advertise_host", "server"},
    {"version", "server"},
    {"group", "server"},
    {"handler_threads", "server"},
    {"slow_handler_warn_ms", "server"},
    {"reflection", "server"},
    {"console", "server"},
    {"console_port", "server"},
    {"console_write", "server"},
    {"tls_mode", "server"},
    {"tls_verify_client", "server"},
    {"tls_handshake_timeout", "server"},
    /* both sides: TLS files (server: its certificate; channel: a client one) */
    {"tls_cert", "server, channel"},
    {"tls_key", "server, channel"},
    {"tls_ca", "server, channel"},
    /* both sides: the frame body limit */
    {"max_body_size", "server, channel"},
    /* registry: mprpc_config_registry_uri */
    {"registry", "registry"},
    {"zookeeperip", "registry"},
    {"zookeeperport", "registry"},
    {"zookeeper_wait", "registry"},
    {"zookeeper_session_timeout", "registry"},
    {"zookeeper_connect_timeout", "registry"},
    {"registry_cache", "registry"},
    /* consumer: mprpc_channel_opts_from_config */
    {"servers", "channel"},
    {"timeout", "channel"},
    {"connect_timeout", "channel"},
    {"attempt_timeout", "channel"},
    {"backup_request", "channel"},
    {"max_retry", "channel"},
    {"connections_per_endpoint", "channel"},
    {"retry_policy", "channel"},
    {"lb", "channel"},
    {"compress", "channel"},
    {"idempotent_methods", "channel"},
    {"select_group", "channel"},
    {"select_version", "channel"},
    {"tls", "channel"},
    {"tls_server_name", "channel"},
    {"tls_verify", "channel"},
    /* governance (docs/governance.md, "The local config"): collected into
     * mprpc_server_opts_t / mprpc_channel_opts_t .governance. A row whose
     * name has a placeholder suffix (.METHOD, .HOST:PORT) stands for every
     * key "PREFIX.anything" (the governance parser checks the suffix). */
    {"rate_limit", "server"},
    {"rate_limit.METHOD", "server"},
    {"max_concurrency.METHOD", "server"},
    {"timeout_ms", "channel"},
    {"timeout_ms.METHOD", "channel"},
    {"max_retry.METHOD", "channel"},
    {"degrade", "channel"},
    {"degrade.METHOD", "channel"},
    {"weight.HOST:PORT", "channel"},
    {"disabled.HOST:PORT", "channel"},
    /* logger: mprpc_config_apply_log */
    {"log_level", "log"},
    {"log_file", "log"},
    {"log_max_bytes", "log"},
    {"log_rotate_daily", "log"},
    {"log_keep", "log"},
    {"log_queue_bytes", "log"},
    {"log_sync", "log"},
};

const mprpc__key_t *mprpc__keys(size_t *n) {
  *n = sizeof k_keys / sizeof k_keys[0];
  return k_keys;
}

/* The length of a row's prefix when its name ends in a placeholder
 * suffix (".METHOD", ".HOST:PORT"), else 0. */
static size_t pattern_prefix(const char *name) {
  const char *dot = strchr(name, '.');
  if (!dot || (strcmp(dot, ".METHOD") != 0 && strcmp(dot, ".HOST:PORT") != 0))
    return 0;
  return (size_t)(dot - name);
}

/* key is the row's name, or matches its pattern: "PREFIX." and a suffix. */
static bool row_matches(const mprpc__key_t *row, const char *key) {
  if (strcmp(row->name, key) == 0)
    return true;
  size_t pl = pattern_prefix(row->name);
  return pl && strncmp(row->name, key, pl) == 0 && key[pl] == '.' && key[pl + 1];
}

bool mprpc_config_key_known(const char *key) {
  if (!key)
    return false;
  for (size_t i = 0; i < sizeof k_keys / sizeof k_keys[0]; i++)
    if (row_matches(&k_keys[i], key))
      return true;
  return false;
}

/* A governance key of `part`: a row of the governance block. */
static bool gov_key(const char *key, const char *part) {
  static const char *const plain[] = {"rate_limit", "timeout_ms", "degrade"};
  for (size_t i = 0; i < sizeof k_keys / sizeof k_keys[0]; i++) {
    const mprpc__key_t *row = &k_keys[i];
    if (strcmp(row->part, part) != 0 || !row_matches(row, key))
      continue;
    if (pattern_prefix(row->name))
      return true;
    for (size_t j = 0; j < sizeof plain / sizeof plain[0]; j++)
      if (strcmp(row->name, plain[j]) == 0)
        return true;
  }
  return false;
}

bool mprpc__key_gov_server(const char *key) { return gov_key(key, "server"); }
bool mprpc__key_gov_channel(const char *key) { return gov_key(key, "channel"); }

#define MAX_KEY 64 /* longer names are never a typo of a known key */

size_t mprpc__edit_distance(const char *a, const char *b, size_t cap) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > MAX_KEY || lb > MAX_KEY || (la > lb ? la - lb : lb - la) > cap)
    return cap + 1;
  size_t row[MAX_KEY + 1];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0], best = i;
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t v = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < v)
        v = up + 1;
      if (row[j - 1] + 1 < v)
        v = row[j - 1] + 1;
      row[j] = v;
      diag = up;
      if (v < best)
        best = v;
    }
    if (best > cap)
      return cap + 1;
  }
  return row[lb] > cap ? cap + 1 : row[lb];
}

const char *mprpc__key_suggest(const char *key) {
  if (!key || mprpc_config_key_known(key))
    return NULL;
  size_t len = strlen(key);
  size_t cap = len <= 4 ? 1 : len <= 11 ? 2 : 3;
  const char *best = NULL;
  size_t bd = cap + 1;
  /* "rate_limt.Echo": its prefix against the patterned rows' prefixes */
  const char *dot = strchr(key, '.');
  char pre[MAX_KEY + 1];
  size_t kl = dot ? (size_t)(dot - key) : 0;
  if (kl && kl <= MAX_KEY) {
    memcpy(pre, key, kl);
    pre[kl] = 0;
  }
  size_t pcap = kl <= 4 ? 1 : kl <= 11 ? 2 : 3;
  for (size_t i = 0; i < sizeof k_keys / sizeof k_keys[0]; i++) {
    size_t pl = pattern_prefix(k_keys[i].name);
    size_t d;
    if (pl && kl && kl <= MAX_KEY) {
      char rp[MAX_KEY + 1];
      snprintf(rp, sizeof rp, "%.*s", (int)pl, k_keys[i].name);
      d = mprpc__edit_distance(pre, rp, pcap);
      if (d > pcap)
        continue;
    } else {
      d = mprpc__edit_distance(key, k_keys[i].name, cap);
    }
    if (d < bd) {
      bd = d;
      best = k_keys[i].name;
    }
  }
  return best;
}
