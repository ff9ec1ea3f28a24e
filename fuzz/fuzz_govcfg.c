/*
 * Fuzz target "govcfg": config-centre node text, which arrives from the
 * registry (anyone who can write /mprpc/config/<name> writes it).
 *
 * The input is split at its first NUL byte (if any): the bytes before it are
 * the `_global` node, the bytes after it the service's node.
 *
 * Checks:
 *  G1  mprpc__gov_node_parse never crashes or fails (except ENOMEM); the
 *      problem count equals the reports made, every report names the node
 *      and has a non-empty text.
 *  G2  A layer never holds more than MPRPC__GOV_MAX_KEYS keys.
 *  G3  Re-parsing the same text on top of its own layer (the "keep the last
 *      good value" path) gives the same number of keys and problems.
 *  G4  The merged rule set answers every lookup (methods and endpoints
 *      named in the text, and unknown ones) with values in their ranges:
 *      burst >= 1 when a rate is set, timeouts 1..3600000, retries 0..100,
 *      weights 1..1000000, group and version pattern well-formed.
 *  G5  Rebuilding from the layers gives the same answers (rule sets are a
 *      function of the layers).
 *  G6  The `_global` text read as a process's local config (the third,
 *      lowest layer) passes G1-G5 too, under both nodes, and a local layer
 *      alone never sets group or version.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/govcfg.h"
#include "core/select.h"
#include "mprpc/errors.h"
#include "support/check.h"

typedef struct counter {
  const char *node;
  size_t n;
} counter_t;

static void count_report(void *ud, const char *node, int line, const char *key,
                         const char *problem) {
  counter_t *c = ud;
  FUZZ_CHECK(node && strcmp(node, c->node) == 0);
  FUZZ_CHECK(line >= 0 && key && problem && problem[0]);
  c->n++;
}

static mprpc__gov_node_t *parse(const char *name, const char *text, size_t len,
                                const mprpc__gov_node_t *prev, size_t *np) {
  counter_t c = {.node = name};
  mprpc__gov_node_t *n = NULL;
  int rc = mprpc__gov_node_parse(name, text, len, prev, count_report, &c, &n, np);
  FUZZ_CHECK(rc == 0 || rc == MPRPC_ENOMEM);
  if (rc)
    return NULL;
  FUZZ_CHECK(n && *np == c.n);
  FUZZ_CHECK(mprpc__gov_node_count(n) <= MPRPC__GOV_MAX_KEYS);
  return n;
}

static mprpc__gov_node_t *parse_local(const char *text, size_t len, size_t *np) {
  counter_t c = {.node = "fuzz.conf"};
  mprpc__gov_node_t *n = NULL;
  int rc = mprpc__gov_node_parse_local("fuzz.conf", text, len, NULL, count_report, &c, &n, np);
  FUZZ_CHECK(rc == 0 || rc == MPRPC_ENOMEM);
  if (rc)
    return NULL;
  FUZZ_CHECK(n && *np == c.n);
  FUZZ_CHECK(mprpc__gov_node_count(n) <= MPRPC__GOV_MAX_KEYS);
  return n;
}

static void check_method(const mprpc__gov_method_t *m) {
  FUZZ_CHECK(m != NULL);
  if (m->set & MPRPC__GOV_RATE)
    FUZZ_CHECK(m->rate_qps == 0 || (m->rate_burst >= 1 && m->rate_qps <= 1000000000u));
  if (m->set & MPRPC__GOV_CONC)
    FUZZ_CHECK(m->max_concurrency <= 1000000 && !(m->concurrency_auto && m->max_concurrency));
  if (m->set & MPRPC__GOV_TIMEOUT)
    FUZZ_CHECK(m->timeout_ms >= 1 && m->timeout_ms <= 3600000);
  if (m->set & MPRPC__GOV_RETRY)
    FUZZ_CHECK(m->max_retry <= 100);
  if (m->set & MPRPC__GOV_DEGRADE)
    FUZZ_CHECK(m->degrade >= MPRPC__GOV_DEGRADE_OFF && m->degrade <= MPRPC__GOV_DEGRADE_FALLBACK);
}

/* Looks up every "prefix.TARGET" named in text, as method and endpoint. */
static void lookups(const mprpc__gov_rules_t *r, const mprpc__gov_rules_t *again,
                    const char *text, size_t len) {
  size_t i = 0;
  while (i < len) {
    size_t e = i;
    while (e < len && text[e] != '\n')
      e++;
    const char *dot = memchr(text + i, '.', e - i);
    const char *eq = memchr(text + i, '=', e - i);
    if (dot && eq && dot < eq) {
      char t[300];
      size_t tl = (size_t)(eq - dot - 1);
      while (tl && (dot[tl] == ' ' || dot[tl] == '\t'))
        tl--;
      if (tl < sizeof t) {
        memcpy(t, dot + 1, tl);
        t[tl] = 0;
        const mprpc__gov_method_t *m = mprpc__gov_rules_method(r, t);
        check_method(m);
        FUZZ_CHECK(memcmp(m, mprpc__gov_rules_method(again, t), sizeof *m) == 0);
        char host[300];
        const char *colon = strrchr(t, ':');
        if (colon) {
          size_t hl = (size_t)(colon - t);
          const char *h = t;
          if (hl >= 2 && t[0] == '[' && t[hl - 1] == ']')
            h++, hl -= 2;
          memcpy(host, h, hl);
          host[hl] = 0;
          unsigned port = (unsigned)strtoul(colon + 1, NULL, 10) & 0xffff;
          const mprpc__gov_endpoint_t *ep = mprpc__gov_rules_endpoint(r, host, (uint16_t)port);
          FUZZ_CHECK(ep != NULL);
          if (ep->set & MPRPC__GOV_WEIGHT)
            FUZZ_CHECK(ep->weight >= 1 && ep->weight <= 1000000);
          FUZZ_CHECK(memcmp(ep, mprpc__gov_rules_endpoint(again, host, (uint16_t)port),
                            sizeof *ep) == 0);
        }
      }
    }
    i = e + 1;
  }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  const char *text = (const char *)data;
  const char *nul = memchr(text, '\0', size);
  size_t glen = nul ? (size_t)(nul - text) : size;
  const char *stext = nul ? nul + 1 : "";
  size_t slen = nul ? size - glen - 1 : 0;

  size_t gp, sp, gp2, sp2;
  mprpc__gov_node_t *g = parse(MPRPC__GOV_GLOBAL, text, glen, NULL, &gp);
  mprpc__gov_node_t *s = parse("fuzz.Service", stext, slen, NULL, &sp);
  mprpc__gov_node_t *g2 = g ? parse(MPRPC__GOV_GLOBAL, text, glen, g, &gp2) : NULL;
  mprpc__gov_node_t *s2 = s ? parse("fuzz.Service", stext, slen, s, &sp2) : NULL;
  if (g && g2) {
    FUZZ_CHECK(mprpc__gov_node_count(g2) == mprpc__gov_node_count(g));
    FUZZ_CHECK(gp2 == gp);
  }
  if (s && s2) {
    FUZZ_CHECK(mprpc__gov_node_count(s2) == mprpc__gov_node_count(s));
    FUZZ_CHECK(sp2 == sp);
  }

  mprpc__gov_rules_t *r = NULL, *again = NULL;
  if (mprpc__gov_rules_build("fuzz.Service", g, s, &r) == 0 &&
      mprpc__gov_rules_build("fuzz.Service", g2, s2, &again) == 0) {
    check_method(mprpc__gov_rules_method(r, "NoSuchMethod"));
    check_method(mprpc__gov_rules_method(r, NULL));
    FUZZ_CHECK(mprpc__gov_rules_endpoint(r, NULL, 1)->set == 0);
    const char *grp = mprpc__gov_rules_group(r);
    const char *ver = mprpc__gov_rules_version(r);
    FUZZ_CHECK(!grp || mprpc__group_valid(grp));
    FUZZ_CHECK(!ver || mprpc__version_pattern_valid(ver));
    int lvl = mprpc__gov_rules_log_level(r);
    FUZZ_CHECK(lvl >= -1 && lvl <= 6);
    FUZZ_CHECK(lvl == mprpc__gov_rules_log_level(again));
    lookups(r, again, text, glen);
    lookups(r, again, stext, slen);
    if (ver) {
      (void)mprpc__version_match(ver, "1.2.3");
      (void)mprpc__version_match(ver, NULL);
    }
  }
  /* G6 */
  size_t lp;
  mprpc__gov_node_t *l = parse_local(text, glen, &lp);
  if (l) {
    mprpc__gov_rules_t *r3 = NULL, *r3b = NULL, *lo = NULL;
    const mprpc__gov_node_t *three[3] = {s, g, l}, *only[1] = {l};
    if (mprpc__gov_rules_build_layers("fuzz.Service", three, 3, &r3) == 0 &&
        mprpc__gov_rules_build_layers("fuzz.Service", three, 3, &r3b) == 0) {
      check_method(mprpc__gov_rules_method(r3, "NoSuchMethod"));
      lookups(r3, r3b, text, glen);
      lookups(r3, r3b, stext, slen);
    }
    if (mprpc__gov_rules_build_layers("fuzz.Service", only, 1, &lo) == 0) {
      FUZZ_CHECK(mprpc__gov_rules_group(lo) == NULL && mprpc__gov_rules_version(lo) == NULL);
      check_method(mprpc__gov_rules_method(lo, NULL));
    }
    mprpc__gov_rules_unref(r3);
    mprpc__gov_rules_unref(r3b);
    mprpc__gov_rules_unref(lo);
    mprpc__gov_node_free(l);
  }
  mprpc__gov_rules_unref(r);
  mprpc__gov_rules_unref(again);
  mprpc__gov_node_free(g);
  mprpc__gov_node_free(s);
  mprpc__gov_node_free(g2);
  mprpc__gov_node_free(s2);
  return 0;
}
