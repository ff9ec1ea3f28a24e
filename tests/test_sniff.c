/* Protocol sniffing (core/sniff.h): each signature is named once complete,
 * every strict prefix asks for more, anything else is unknown as early as
 * possible, and nothing past the given bytes is read (each input sits at
 * the end of a page followed by a PROT_NONE page). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/sniff.h"

static uint8_t *page;
static size_t pagesz;

static int setup(void **state) {
  (void)state;
  pagesz = (size_t)sysconf(_SC_PAGESIZE);
  page = mmap(NULL, 2 * pagesz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(page != MAP_FAILED);
  assert_int_equal(mprotect(page + pagesz, pagesz, PROT_NONE), 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  munmap(page, 2 * pagesz);
  return 0;
}

/* Sniffs s[0..n) placed right before the guard page. */
static mprpc__proto_t sniff(const void *s, size_t n) {
  uint8_t *p = page + pagesz - n;
  memcpy(p, s, n);
  return mprpc__sniff(p, n);
}

static const struct {
  const char *sig;
  size_t len;
  mprpc__proto_t proto;
} sigs[] = {
    {"PRPC", 4, MPRPC__PROTO_BAIDU},    {"GET ", 4, MPRPC__PROTO_HTTP},
    {"POST ", 5, MPRPC__PROTO_HTTP},    {"PUT ", 4, MPRPC__PROTO_HTTP},
    {"DELETE ", 7, MPRPC__PROTO_HTTP},  {"HEAD ", 5, MPRPC__PROTO_HTTP},
    {"OPTIONS ", 8, MPRPC__PROTO_HTTP}, {"PATCH ", 6, MPRPC__PROTO_HTTP},
    {"\x16\x03", 2, MPRPC__PROTO_TLS},
};

static void test_sniff_signatures_and_prefixes(void **state) {
  (void)state;
  assert_int_equal(mprpc__sniff(NULL, 0), MPRPC__PROTO_NEED_MORE);
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    for (size_t n = 1; n < sigs[i].len; n++)
      assert_int_equal(sniff(sigs[i].sig, n), MPRPC__PROTO_NEED_MORE);
    assert_int_equal(sniff(sigs[i].sig, sigs[i].len), sigs[i].proto);
    /* more bytes behind the signature change nothing */
    char buf[32];
    memcpy(buf, sigs[i].sig, sigs[i].len);
    memcpy(buf + sigs[i].len, "/x HTTP/1.1\r\n", 13);
    assert_int_equal(sniff(buf, sigs[i].len + 13), sigs[i].proto);
  }
  assert_true(MPRPC__SNIFF_MAX >= 8);
}

static void test_sniff_unknown_early(void **state) {
  (void)state;
  assert_int_equal(sniff("X", 1), MPRPC__PROTO_UNKNOWN);
  assert_int_equal(sniff("\x00", 1), MPRPC__PROTO_UNKNOWN);
  assert_int_equal(sniff("PX", 2), MPRPC__PROTO_UNKNOWN); /* neither PRPC nor P(OST|UT|ATCH) */
  assert_int_equal(sniff("PRPX", 4), MPRPC__PROTO_UNKNOWN);
  assert_int_equal(sniff("get ", 4), MPRPC__PROTO_UNKNOWN); /* methods are case-sensitive */
  assert_int_equal(sniff("GET/", 4), MPRPC__PROTO_UNKNOWN); /* the space is required */
  assert_int_equal(sniff("GETS", 4), MPRPC__PROTO_UNKNOWN);
  assert_int_equal(sniff("CONNECT ", 8), MPRPC__PROTO_UNKNOWN);
  assert_int_equal(sniff("\x16\x02", 2), MPRPC__PROTO_UNKNOWN);
  assert_int_equal(sniff("\x16", 1), MPRPC__PROTO_NEED_MORE);
  /* P could still be PRPC, POST, PUT or PATCH; PA only PATCH */
  assert_int_equal(sniff("P", 1), MPRPC__PROTO_NEED_MORE);
  assert_int_equal(sniff("PA", 2), MPRPC__PROTO_NEED_MORE);
  assert_int_equal(sniff("PAT", 3), MPRPC__PROTO_NEED_MORE);
  assert_int_equal(sniff("PATH", 4), MPRPC__PROTO_UNKNOWN);
}

static void test_sniff_every_byte_pair_decides_or_waits(void **state) {
  (void)state;
  /* no input of up to two bytes crashes, and a first byte that starts no
   * signature is unknown at once */
  for (int a = 0; a < 256; a++) {
    uint8_t one = (uint8_t)a;
    mprpc__proto_t r1 = sniff(&one, 1);
    int starts = strchr("PGDHO\x16", a) != NULL && a != 0;
    assert_int_equal(r1, starts ? MPRPC__PROTO_NEED_MORE : MPRPC__PROTO_UNKNOWN);
    for (int b = 0; b < 256; b++) {
      uint8_t two[2] = {(uint8_t)a, (uint8_t)b};
      mprpc__proto_t r2 = sniff(two, 2);
      assert_true(r2 == MPRPC__PROTO_NEED_MORE || r2 == MPRPC__PROTO_UNKNOWN ||
                  (r2 == MPRPC__PROTO_TLS && a == 0x16 && b == 3));
    }
  }
}

static void test_sniff_names(void **state) {
  (void)state;
  assert_string_equal(mprpc__proto_name(MPRPC__PROTO_BAIDU), "baidu_std");
  assert_string_equal(mprpc__proto_name(MPRPC__PROTO_HTTP), "http");
  assert_string_equal(mprpc__proto_name(MPRPC__PROTO_TLS), "tls");
  assert_string_equal(mprpc__proto_name(MPRPC__PROTO_NEED_MORE), "need_more");
  assert_string_equal(mprpc__proto_name(MPRPC__PROTO_UNKNOWN), "unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sniff_signatures_and_prefixes),
      cmocka_unit_test(test_sniff_unknown_early),
      cmocka_unit_test(test_sniff_every_byte_pair_decides_or_waits),
      cmocka_unit_test(test_sniff_names),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
