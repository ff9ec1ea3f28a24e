/* JSON <-> protobuf-c (mprpc/json.h, docs/json.md), on the test messages in
 * tests/proto/json2.proto (proto2) and json3.proto (proto3): exact output
 * text, round trips of every field type compared by packed bytes, the input
 * spellings the mapping accepts, every input error with its exact path and
 * text, the depth limit, and allocation failure at every allocation index.
 * Runs under ASan/LSan, so failing paths are checked for leaks too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "json2.pb-c.h"
#include "json3.pb-c.h"
#include "mprpc/errors.h"
#include "mprpc/json.h"

/* ---- helpers -------------------------------------------------------------- */

typedef struct {
  uint8_t *p;
  size_t n;
} packed_t;

static packed_t pack(const ProtobufCMessage *m) {
  packed_t b;
  b.n = protobuf_c_message_get_packed_size(m);
  b.p = malloc(b.n ? b.n : 1);
  assert_non_null(b.p);
  assert_int_equal(protobuf_c_message_pack(m, b.p), b.n);
  return b;
}

static char *to_json(const void *m, int flags) {
  char *s = NULL;
  size_t n = 0;
  assert_int_equal(mprpc_message_to_json(m, flags, &s, &n), 0);
  assert_non_null(s);
  assert_int_equal(strlen(s), n);
  return s;
}

static ProtobufCMessage *from_json(const char *json, const ProtobufCMessageDescriptor *d) {
  ProtobufCMessage *m = NULL;
  char err[256];
  int rc = mprpc_json_to_message(json, strlen(json), d, NULL, &m, err, sizeof err);
  if (rc != 0)
    fail_msg("parse of %s failed: %s (%s)", json, err, mprpc_err_name(rc));
  assert_non_null(m);
  return m;
}

/* m -> JSON -> message: equal packed bytes, and the second message prints
 * the same text. For every flag combination. */
static void roundtrip(const void *msg) {
  const ProtobufCMessage *m = msg;
  packed_t a = pack(m);
  for (int flags = 0; flags < 8; flags++) {
    char *j1 = to_json(m, flags);
    ProtobufCMessage *m2 = from_json(j1, m->descriptor);
    packed_t b = pack(m2);
    if (a.n != b.n || memcmp(a.p, b.p, a.n) != 0)
      fail_msg("round trip with flags %d changed the message: %s", flags, j1);
    char *j2 = to_json(m2, flags);
    assert_string_equal(j1, j2);
    free(j2);
    free(b.p);
    protobuf_c_message_free_unpacked(m2, NULL);
    free(j1);
  }
  free(a.p);
}

static void expect_json(const void *m, int flags, const char *want) {
  char *s = to_json(m, flags);
  assert_string_equal(s, want);
  free(s);
}

/* The exact error text (and MPRPC_EINVAL) for input j against d. */
static void expect_error(const ProtobufCMessageDescriptor *d, const char *j, const char *want) {
  ProtobufCMessage *m = (ProtobufCMessage *)1;
  char err[512];
  int rc = mprpc_json_to_message(j, strlen(j), d, NULL, &m, err, sizeof err);
  if (rc != MPRPC_EINVAL)
    fail_msg("%s: want EINVAL, got %s", j, mprpc_err_name(rc));
  assert_null(m);
  if (strcmp(err, want) != 0)
    fail_msg("%s:\n  want \"%s\"\n  got  \"%s\"", j, want, err);
}

/* The error text starts with want_prefix and contains want_sub (for
 * jansson's texts, whose column numbers are its own business). */
static void expect_error_like(const ProtobufCMessageDescriptor *d, const char *j, size_t len,
                              const char *want_prefix, const char *want_sub) {
  ProtobufCMessage *m = NULL;
  char err[512];
  int rc = mprpc_json_to_message(j, len, d, NULL, &m, err, sizeof err);
  if (rc != MPRPC_EINVAL)
    fail_msg("%s: want EINVAL, got %s", j, mprpc_err_name(rc));
  assert_null(m);
  if (strncmp(err, want_prefix, strlen(want_prefix)) != 0 || !strstr(err, want_sub))
    fail_msg("%s: want \"%s...%s...\", got \"%s\"", j, want_prefix, want_sub, err);
}

#define D2 (&jt2__all__descriptor)
#define D3 (&jt3__all__descriptor)
#define DN (&jt3__node__descriptor)

/* ---- names ------------------------------------------------------------------ */

static void test_json_name_lower_camel(void **state) {
  (void)state;
  char buf[32];
  assert_int_equal(mprpc_json_name("user_id", buf, sizeof buf), 6);
  assert_string_equal(buf, "userId");
  mprpc_json_name("f_int32", buf, sizeof buf);
  assert_string_equal(buf, "fInt32");
  mprpc_json_name("a__b_1c", buf, sizeof buf);
  assert_string_equal(buf, "aB1c");
  mprpc_json_name("_lead", buf, sizeof buf);
  assert_string_equal(buf, "Lead");
  mprpc_json_name("already", buf, sizeof buf);
  assert_string_equal(buf, "already");
  /* Truncates like snprintf. */
  assert_int_equal(mprpc_json_name("long_field_name", buf, 5), 13);
  assert_string_equal(buf, "long");
}

/* ---- exact output ----------------------------------------------------------- */

static void test_json_output_proto3_exact(void **state) {
  (void)state;
  Jt3__All m = JT3__ALL__INIT;
  Jt3__Leaf leaf = JT3__LEAF__INIT;
  leaf.id = 7;
  leaf.name = "x";
  int32_t r[] = {1, -2};
  Jt3__All__MStrIntEntry e1 = JT3__ALL__MSTR_INT_ENTRY__INIT, e2 = JT3__ALL__MSTR_INT_ENTRY__INIT;
  e1.key = "k";
  e1.value = 1;
  e2.key = "";
  e2.value = 0;
  Jt3__All__MStrIntEntry *ents[] = {&e1, &e2};
  m.f_int32 = -5;
  m.f_int64 = 1234567890123;
  m.f_uint64 = UINT64_MAX;
  m.f_float = 0.1f;
  m.f_double = 2.5;
  m.f_bool = 1;
  m.f_string = "a\"b\n\x01\xc3\xa9";
  m.f_bytes.len = 3;
  m.f_bytes.data = (uint8_t *)"abc";
  m.f_kind = JT3__KIND__KIND_B;
  m.f_leaf = &leaf;
  m.n_r_int32 = 2;
  m.r_int32 = r;
  m.value_case = JT3__ALL__VALUE_V_STR;
  m.v_str = "s";
  m.n_m_str_int = 2;
  m.m_str_int = ents;
  expect_json(&m, 0,
              "{\"fInt32\":-5,\"fInt64\":\"1234567890123\",\"fUint64\":\"18446744073709551615\","
              "\"fFloat\":0.1,\"fDouble\":2.5,\"fBool\":true,\"fString\":\"a\\\"b\\n\\u0001\xc3\xa9\","
              "\"fBytes\":\"YWJj\",\"fKind\":\"KIND_B\",\"fLeaf\":{\"id\":7,\"name\":\"x\"},"
              "\"rInt32\":[1,-2],\"vStr\":\"s\",\"mStrInt\":{\"k\":1,\"\":0}}");
  expect_json(&leaf, MPRPC_JSON_PRETTY, "{\n  \"id\": 7,\n  \"name\": \"x\"\n}");
  m.f_string = NULL;
  m.f_bytes.len = 0;
  m.n_m_str_int = 0;
  m.value_case = JT3__ALL__VALUE__NOT_SET;
  m.f_uint64 = 0;
  m.f_int64 = 0;
  m.f_float = 0;
  m.f_double = 0;
  m.f_bool = 0;
  m.f_int32 = 0;
  m.f_kind = 0;
  expect_json(&m, MPRPC_JSON_PRETTY | MPRPC_JSON_ORIG_NAMES,
              "{\n"
              "  \"f_leaf\": {\n"
              "    \"id\": 7,\n"
              "    \"name\": \"x\"\n"
              "  },\n"
              "  \"r_int32\": [\n"
              "    1,\n"
              "    -2\n"
              "  ]\n"
              "}");
  /* An unknown enum number prints as a number; a oneof member at zero is
   * present. */
  m.f_leaf = NULL;
  m.n_r_int32 = 0;
  m.f_kind = 17;
  m.value_case = JT3__ALL__VALUE_V_INT;
  m.v_int = 0;
  expect_json(&m, 0, "{\"fKind\":17,\"vInt\":0}");
}

static void test_json_output_emit_defaults(void **state) {
  (void)state;
  Jt3__Leaf leaf = JT3__LEAF__INIT;
  expect_json(&leaf, 0, "{}");
  expect_json(&leaf, MPRPC_JSON_PRETTY, "{}");
  expect_json(&leaf, MPRPC_JSON_EMIT_DEFAULTS, "{\"id\":0,\"name\":\"\"}");
  Jt3__Node node = JT3__NODE__INIT;
  /* A message field has presence: still absent. */
  expect_json(&node, MPRPC_JSON_EMIT_DEFAULTS, "{\"kids\":[],\"v\":0}");
  Jt3__All all = JT3__ALL__INIT;
  expect_json(&all, MPRPC_JSON_EMIT_DEFAULTS | MPRPC_JSON_ORIG_NAMES,
              "{\"f_int32\":0,\"f_int64\":\"0\",\"f_uint32\":0,\"f_uint64\":\"0\",\"f_sint32\":0,"
              "\"f_sint64\":\"0\",\"f_fixed32\":0,\"f_fixed64\":\"0\",\"f_sfixed32\":0,"
              "\"f_sfixed64\":\"0\",\"f_float\":0,\"f_double\":0,\"f_bool\":false,\"f_string\":\"\","
              "\"f_bytes\":\"\",\"f_kind\":\"KIND_UNSPECIFIED\",\"r_int32\":[],\"r_int64\":[],"
              "\"r_uint64\":[],\"r_float\":[],\"r_double\":[],\"r_bool\":[],\"r_string\":[],"
              "\"r_bytes\":[],\"r_kind\":[],\"r_leaf\":[],\"r_sint32\":[],\"r_fixed64\":[],"
              "\"m_str_int\":{},\"m_int_str\":{},\"m_i64_leaf\":{},\"m_bool_bytes\":{},"
              "\"m_u32_kind\":{},\"m_s64_double\":{},\"m_f32_u64\":{}}");
}

static void test_json_output_proto2_presence(void **state) {
  (void)state;
  Jt2__All m = JT2__ALL__INIT;
  m.req_string = "r";
  /* Required fields always; optional ones only when present, even though
   * init filled in their defaults. */
  expect_json(&m, 0, "{\"reqInt32\":0,\"reqString\":\"r\"}");
  m.has_opt_int32 = 1;
  m.opt_int32 = 42;
  m.has_opt_bool = 1;
  m.opt_bool = 0;
  m.opt_string = "hello"; /* an equal string that is not the default pointer */
  m.has_opt_bytes = 1;
  m.opt_bytes.len = 0;
  m.has_opt_color = 1;
  m.opt_color = JT2__COLOR__RED;
  m.choice_case = JT2__ALL__CHOICE_CH_INT;
  m.ch_int = 3;
  expect_json(&m, MPRPC_JSON_EMIT_DEFAULTS,
              "{\"reqInt32\":0,\"reqString\":\"r\",\"optInt32\":42,\"optBool\":false,"
              "\"optString\":\"hello\",\"optBytes\":\"\",\"optColor\":\"RED\",\"repInt32\":[],"
              "\"repInt64\":[],\"repUint32\":[],\"repUint64\":[],\"repSint32\":[],"
              "\"repSint64\":[],\"repFixed32\":[],\"repFixed64\":[],\"repSfixed32\":[],"
              "\"repSfixed64\":[],\"repFloat\":[],\"repDouble\":[],\"repBool\":[],"
              "\"repString\":[],\"repBytes\":[],\"repColor\":[],\"repSub\":[],\"chInt\":3,"
              "\"counts\":{}}");
}

static void test_json_output_numbers(void **state) {
  (void)state;
  Jt3__All m = JT3__ALL__INIT;
  float fl[] = {1.0f / 3, FLT_MAX, -FLT_MIN, 1e-45f, 16777216.0f, -0.0f, NAN, -INFINITY};
  double db[] = {1.0 / 3, DBL_MAX, 5e-324, 1e21, 123456789012345678.0, -0.0, INFINITY, 0.1};
  m.n_r_float = 8;
  m.r_float = fl;
  m.n_r_double = 8;
  m.r_double = db;
  expect_json(&m, 0,
              "{\"rFloat\":[0.33333334,3.4028235e+38,-1.1754944e-38,1e-45,16777216,-0.0,"
              "\"NaN\",\"-Infinity\"],"
              "\"rDouble\":[0.3333333333333333,1.7976931348623157e+308,5e-324,"
              "1e+21,1.2345678901234568e+17,-0.0,\"Infinity\",0.1]}");
}

static void test_json_output_invalid_utf8_is_einval(void **state) {
  (void)state;
  Jt3__Leaf leaf = JT3__LEAF__INIT;
  const char *bad[] = {"\xff", "a\xc3", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    leaf.name = (char *)bad[i];
    char *s = (char *)1;
    assert_int_equal(mprpc_message_to_json(&leaf.base, 0, &s, NULL), MPRPC_EINVAL);
    assert_null(s);
  }
  leaf.name = "\xf0\x9f\x98\x80 ok";
  expect_json(&leaf, 0, "{\"name\":\"\xf0\x9f\x98\x80 ok\"}");
}

/* ---- round trips -------------------------------------------------------------- */

static void test_json_roundtrip_proto3_every_type(void **state) {
  (void)state;
  Jt3__All m = JT3__ALL__INIT;
  Jt3__Leaf l1 = JT3__LEAF__INIT, l2 = JT3__LEAF__INIT;
  l1.id = INT32_MIN;
  l1.name = "\xe4\xb8\xad\"\\/\t";
  l2.id = 0;
  m.f_int32 = INT32_MIN;
  m.f_int64 = INT64_MIN;
  m.f_uint32 = UINT32_MAX;
  m.f_uint64 = UINT64_MAX;
  m.f_sint32 = INT32_MAX;
  m.f_sint64 = INT64_MAX;
  m.f_fixed32 = 1;
  m.f_fixed64 = (uint64_t)INT64_MAX + 1;
  m.f_sfixed32 = -1;
  m.f_sfixed64 = -1;
  m.f_float = FLT_MAX;
  m.f_double = -DBL_MIN;
  m.f_bool = 1;
  m.f_string = "\x7f\x1f end";
  m.f_bytes.len = 5;
  m.f_bytes.data = (uint8_t *)"\0\xff\xfe\x01\x80";
  m.f_kind = 99; /* unknown number: open enum */
  m.f_leaf = &l2;
  int32_t ri[] = {0, INT32_MAX, INT32_MIN};
  int64_t rl[] = {INT64_MIN, 0, INT64_MAX};
  uint64_t ru[] = {0, UINT64_MAX};
  float rf[] = {0.0f, -0.0f, 1e-45f, FLT_MAX, -FLT_MAX, NAN, INFINITY, -INFINITY, 0.1f, 3.14159f};
  double rd[] = {0.0, -0.0, 5e-324, DBL_MAX, NAN, -INFINITY, 0.1, 1e300, 9007199254740993.0};
  protobuf_c_boolean rb[] = {1, 0, 1};
  char *rs[] = {"", "a", "\xf0\x9f\x98\x80"};
  ProtobufCBinaryData rby[] = {{0, NULL}, {1, (uint8_t *)"a"}, {2, (uint8_t *)"ab"},
                               {3, (uint8_t *)"abc"}, {4, (uint8_t *)"\xff\xff\xff\xff"}};
  Jt3__Kind rk[] = {JT3__KIND__KIND_A, 0, -3, 12345};
  Jt3__Leaf *rl2[] = {&l1, &l2};
  int32_t rs32[] = {-1, 1};
  uint64_t rf64[] = {UINT64_MAX};
  m.n_r_int32 = 3, m.r_int32 = ri;
  m.n_r_int64 = 3, m.r_int64 = rl;
  m.n_r_uint64 = 2, m.r_uint64 = ru;
  m.n_r_float = sizeof rf / sizeof rf[0], m.r_float = rf;
  m.n_r_double = sizeof rd / sizeof rd[0], m.r_double = rd;
  m.n_r_bool = 3, m.r_bool = rb;
  m.n_r_string = 3, m.r_string = rs;
  m.n_r_bytes = 5, m.r_bytes = rby;
  m.n_r_kind = 4, m.r_kind = rk;
  m.n_r_leaf = 2, m.r_leaf = rl2;
  m.n_r_sint32 = 2, m.r_sint32 = rs32;
  m.n_r_fixed64 = 1, m.r_fixed64 = rf64;

  Jt3__All__MStrIntEntry msi[2] = {JT3__ALL__MSTR_INT_ENTRY__INIT, JT3__ALL__MSTR_INT_ENTRY__INIT};
  msi[0].key = "a", msi[0].value = -1;
  msi[1].key = "\"q\"", msi[1].value = 0;
  Jt3__All__MStrIntEntry *pmsi[] = {&msi[0], &msi[1]};
  Jt3__All__MIntStrEntry mis[2] = {JT3__ALL__MINT_STR_ENTRY__INIT, JT3__ALL__MINT_STR_ENTRY__INIT};
  mis[0].key = INT32_MIN, mis[0].value = "min";
  mis[1].key = 0, mis[1].value = "";
  Jt3__All__MIntStrEntry *pmis[] = {&mis[0], &mis[1]};
  Jt3__All__MI64LeafEntry mil = JT3__ALL__MI64_LEAF_ENTRY__INIT;
  mil.key = INT64_MIN, mil.value = &l1;
  Jt3__All__MI64LeafEntry *pmil[] = {&mil};
  Jt3__All__MBoolBytesEntry mbb[2] = {JT3__ALL__MBOOL_BYTES_ENTRY__INIT,
                                      JT3__ALL__MBOOL_BYTES_ENTRY__INIT};
  mbb[0].key = 1, mbb[0].value = rby[4];
  mbb[1].key = 0;
  Jt3__All__MBoolBytesEntry *pmbb[] = {&mbb[0], &mbb[1]};
  Jt3__All__MU32KindEntry muk = JT3__ALL__MU32_KIND_ENTRY__INIT;
  muk.key = UINT32_MAX, muk.value = JT3__KIND__KIND_B;
  Jt3__All__MU32KindEntry *pmuk[] = {&muk};
  Jt3__All__MS64DoubleEntry msd = JT3__ALL__MS64_DOUBLE_ENTRY__INIT;
  msd.key = -5, msd.value = -0.5;
  Jt3__All__MS64DoubleEntry *pmsd[] = {&msd};
  Jt3__All__MF32U64Entry mfu = JT3__ALL__MF32_U64_ENTRY__INIT;
  mfu.key = 7, mfu.value = UINT64_MAX;
  Jt3__All__MF32U64Entry *pmfu[] = {&mfu};
  m.n_m_str_int = 2, m.m_str_int = pmsi;
  m.n_m_int_str = 2, m.m_int_str = pmis;
  m.n_m_i64_leaf = 1, m.m_i64_leaf = pmil;
  m.n_m_bool_bytes = 2, m.m_bool_bytes = pmbb;
  m.n_m_u32_kind = 1, m.m_u32_kind = pmuk;
  m.n_m_s64_double = 1, m.m_s64_double = pmsd;
  m.n_m_f32_u64 = 1, m.m_f32_u64 = pmfu;

  Jt3__Node n3 = JT3__NODE__INIT, n2 = JT3__NODE__INIT, n1 = JT3__NODE__INIT;
  n3.v = 3;
  n2.child = &n3;
  Jt3__Node *kids[] = {&n3, &n2};
  n1.n_kids = 2, n1.kids = kids;
  m.node = &n1;

  /* Each oneof member in turn, zero values included. */
  m.value_case = JT3__ALL__VALUE_V_INT, m.v_int = 0;
  roundtrip(&m);
  m.value_case = JT3__ALL__VALUE_V_STR, m.v_str = "";
  roundtrip(&m);
  m.value_case = JT3__ALL__VALUE_V_LEAF, m.v_leaf = &l2;
  roundtrip(&m);
  m.value_case = JT3__ALL__VALUE_V_BYTES, m.v_bytes = rby[2];
  roundtrip(&m);
  m.value_case = JT3__ALL__VALUE_V_KIND, m.v_kind = 0;
  roundtrip(&m);
  m.value_case = JT3__ALL__VALUE_V_DOUBLE, m.v_double = -0.0;
  roundtrip(&m);
  Jt3__All empty = JT3__ALL__INIT;
  roundtrip(&empty);
}

static void test_json_roundtrip_proto2_every_type(void **state) {
  (void)state;
  Jt2__All m = JT2__ALL__INIT;
  Jt2__Sub s1 = JT2__SUB__INIT, s2 = JT2__SUB__INIT;
  s1.id = -1;
  s1.name = "n";
  s2.id = 2;
  m.req_int32 = INT32_MAX;
  m.req_string = "";
  roundtrip(&m); /* every optional absent, defaults in the struct */
  m.has_opt_int32 = 1, m.opt_int32 = 0;
  m.has_opt_int64 = 1, m.opt_int64 = INT64_MIN;
  m.has_opt_uint32 = 1, m.opt_uint32 = UINT32_MAX;
  m.has_opt_uint64 = 1, m.opt_uint64 = UINT64_MAX;
  m.has_opt_sint32 = 1, m.opt_sint32 = INT32_MIN;
  m.has_opt_sint64 = 1, m.opt_sint64 = INT64_MIN;
  m.has_opt_fixed32 = 1, m.opt_fixed32 = 0;
  m.has_opt_fixed64 = 1, m.opt_fixed64 = UINT64_MAX;
  m.has_opt_sfixed32 = 1, m.opt_sfixed32 = INT32_MIN;
  m.has_opt_sfixed64 = 1, m.opt_sfixed64 = INT64_MAX;
  m.has_opt_float = 1, m.opt_float = -0.0f;
  m.has_opt_double = 1, m.opt_double = NAN;
  m.has_opt_bool = 1, m.opt_bool = 0;
  m.opt_string = "";
  m.has_opt_bytes = 1, m.opt_bytes.len = 0, m.opt_bytes.data = NULL;
  m.has_opt_color = 1, m.opt_color = JT2__COLOR__RED;
  m.opt_sub = &s1;
  m.req_holder = &s2;
  int32_t ri[] = {1, 2, 3};
  int64_t rl[] = {-1};
  uint32_t ru32[] = {UINT32_MAX, 0};
  uint64_t ru64[] = {UINT64_MAX};
  int32_t rs32[] = {INT32_MIN};
  int64_t rs64[] = {INT64_MIN, INT64_MAX};
  uint32_t rf32[] = {5};
  uint64_t rf64[] = {6};
  int32_t rsf32[] = {-7};
  int64_t rsf64[] = {-8};
  float rf[] = {1.5f};
  double rd[] = {-1e-300};
  protobuf_c_boolean rb[] = {0};
  char *rs[] = {"x", ""};
  ProtobufCBinaryData rby[] = {{1, (uint8_t *)"\0"}};
  Jt2__Color rc[] = {JT2__COLOR__BLUE, JT2__COLOR__GREEN};
  Jt2__Sub *rsub[] = {&s2, &s1};
  m.n_rep_int32 = 3, m.rep_int32 = ri;
  m.n_rep_int64 = 1, m.rep_int64 = rl;
  m.n_rep_uint32 = 2, m.rep_uint32 = ru32;
  m.n_rep_uint64 = 1, m.rep_uint64 = ru64;
  m.n_rep_sint32 = 1, m.rep_sint32 = rs32;
  m.n_rep_sint64 = 2, m.rep_sint64 = rs64;
  m.n_rep_fixed32 = 1, m.rep_fixed32 = rf32;
  m.n_rep_fixed64 = 1, m.rep_fixed64 = rf64;
  m.n_rep_sfixed32 = 1, m.rep_sfixed32 = rsf32;
  m.n_rep_sfixed64 = 1, m.rep_sfixed64 = rsf64;
  m.n_rep_float = 1, m.rep_float = rf;
  m.n_rep_double = 1, m.rep_double = rd;
  m.n_rep_bool = 1, m.rep_bool = rb;
  m.n_rep_string = 2, m.rep_string = rs;
  m.n_rep_bytes = 1, m.rep_bytes = rby;
  m.n_rep_color = 2, m.rep_color = rc;
  m.n_rep_sub = 2, m.rep_sub = rsub;
  Jt2__All__CountsEntry ce = JT2__ALL__COUNTS_ENTRY__INIT;
  ce.key = "k", ce.has_value = 1, ce.value = 9;
  Jt2__All__CountsEntry *pce[] = {&ce};
  m.n_counts = 1, m.counts = pce;
  m.choice_case = JT2__ALL__CHOICE_CH_STR, m.ch_str = "c";
  roundtrip(&m);
  m.choice_case = JT2__ALL__CHOICE_CH_SUB, m.ch_sub = &s1;
  roundtrip(&m);
}

/* A message protobuf-c unpacked from the wire prints and reads back too. */
static void test_json_roundtrip_unpacked(void **state) {
  (void)state;
  Jt2__All *m = (Jt2__All *)from_json(
      "{\"reqInt32\":1,\"reqString\":\"r\",\"optString\":\"hello\",\"repString\":[\"a\"],"
      "\"counts\":{\"x\":1},\"chSub\":{\"id\":3}}",
      D2);
  packed_t p = pack(&m->base);
  Jt2__All *u = jt2__all__unpack(NULL, p.n, p.p);
  assert_non_null(u);
  char *a = to_json(m, 0), *b = to_json(u, 0);
  assert_string_equal(a, b);
  assert_string_equal(a, "{\"reqInt32\":1,\"reqString\":\"r\",\"optString\":\"hello\","
                         "\"repString\":[\"a\"],\"chSub\":{\"id\":3},\"counts\":{\"x\":1}}");
  roundtrip(u);
  free(a);
  free(b);
  free(p.p);
  jt2__all__free_unpacked(u, NULL);
  protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* ---- input spellings ------------------------------------------------------------- */

static void test_json_input_accepted_forms(void **state) {
  (void)state;
  Jt3__All *m = (Jt3__All *)from_json(
      "{\"f_int32\":\"-12\",\"fInt64\":9007199254740993,\"f_uint32\":1e3,\"fUint64\":"
      "\"18446744073709551615\",\"fSint32\":-0,\"fSint64\":\"-9223372036854775808\","
      "\"fFixed32\":4294967295,\"fFixed64\":1.0,\"fSfixed32\":\"7\",\"fSfixed64\":-1e2,"
      "\"fFloat\":\"1.5\",\"fDouble\":\"-Infinity\",\"fBool\":true,\"fString\":\"\\u00e9\\ud83d\\ude00\","
      "\"fBytes\":\"-_8\",\"fKind\":2,\"fLeaf\":{\"id\":\"3\"},"
      "\"rFloat\":[\"NaN\",\"Infinity\",1,3.4028235e38],\"rBytes\":[\"YQ\",\"YWI=\",\"+/+/\",\"\"],"
      "\"rKind\":[\"KIND_A\",7,-1],\"mIntStr\":{\"-5\":\"a\",\"0\":\"b\"},"
      "\"mBoolBytes\":{\"true\":\"AA\"},\"vLeaf\":null,\"vKind\":\"KIND_B\",\"node\":null}",
      D3);
  assert_int_equal(m->f_int32, -12);
  assert_int_equal(m->f_int64, 9007199254740993LL);
  assert_int_equal(m->f_uint32, 1000);
  assert_true(m->f_uint64 == UINT64_MAX);
  assert_int_equal(m->f_sint32, 0);
  assert_true(m->f_sint64 == INT64_MIN);
  assert_int_equal(m->f_fixed32, UINT32_MAX);
  assert_int_equal(m->f_fixed64, 1);
  assert_int_equal(m->f_sfixed32, 7);
  assert_int_equal(m->f_sfixed64, -100);
  assert_true(m->f_float == 1.5f);
  assert_true(isinf(m->f_double) && m->f_double < 0);
  assert_true(m->f_bool);
  assert_string_equal(m->f_string, "\xc3\xa9\xf0\x9f\x98\x80");
  assert_int_equal(m->f_bytes.len, 2);
  assert_memory_equal(m->f_bytes.data, "\xfb\xff", 2);
  assert_int_equal(m->f_kind, JT3__KIND__KIND_B);
  assert_int_equal(m->f_leaf->id, 3);
  assert_int_equal(m->n_r_float, 4);
  assert_true(isnan(m->r_float[0]) && isinf(m->r_float[1]) && m->r_float[2] == 1.0f);
  assert_true(m->r_float[3] == FLT_MAX);
  assert_int_equal(m->n_r_bytes, 4);
  assert_int_equal(m->r_bytes[0].len, 1);
  assert_memory_equal(m->r_bytes[1].data, "ab", 2);
  assert_memory_equal(m->r_bytes[2].data, "\xfb\xff\xbf", 3);
  assert_int_equal(m->r_bytes[3].len, 0);
  assert_int_equal(m->n_r_kind, 3);
  assert_int_equal(m->r_kind[1], 7);
  assert_true((int)m->r_kind[2] == -1);
  assert_int_equal(m->n_m_int_str, 2);
  assert_int_equal(m->m_int_str[0]->key, -5);
  assert_string_equal(m->m_int_str[0]->value, "a");
  assert_int_equal(m->n_m_bool_bytes, 1);
  assert_int_equal(m->m_bool_bytes[0]->key, 1);
  assert_int_equal(m->value_case, JT3__ALL__VALUE_V_KIND); /* null member: not set */
  assert_null(m->node);
  protobuf_c_message_free_unpacked(&m->base, NULL);

  /* Whitespace, empty object, an input that is not NUL-terminated. */
  m = (Jt3__All *)from_json(" \n{ } \n", D3);
  protobuf_c_message_free_unpacked(&m->base, NULL);
  const char text[] = "{\"fInt32\":5}garbage";
  ProtobufCMessage *pm = NULL;
  assert_int_equal(mprpc_json_to_message(text, 12, D3, NULL, &pm, NULL, 0), 0);
  assert_int_equal(((Jt3__All *)pm)->f_int32, 5);
  protobuf_c_message_free_unpacked(pm, NULL);
}

static void test_json_input_proto2_defaults(void **state) {
  (void)state;
  Jt2__All *m = (Jt2__All *)from_json("{\"reqInt32\":1,\"reqString\":\"x\",\"optSub\":null}", D2);
  assert_int_equal(m->has_opt_int32, 0);
  assert_int_equal(m->opt_int32, 42);
  assert_int_equal(m->opt_int64, -7);
  assert_true(m->opt_float == 1.5f);
  assert_int_equal(m->opt_bool, 1);
  assert_string_equal(m->opt_string, "hello");
  assert_int_equal(m->has_opt_bytes, 0);
  assert_int_equal(m->opt_bytes.len, 3);
  assert_int_equal(m->opt_color, JT2__COLOR__BLUE);
  assert_null(m->opt_sub);
  /* Only what was given is written back. */
  char *s = to_json(m, 0);
  assert_string_equal(s, "{\"reqInt32\":1,\"reqString\":\"x\"}");
  free(s);
  protobuf_c_message_free_unpacked(&m->base, NULL);

  m = (Jt2__All *)from_json("{\"req_int32\":1,\"req_string\":\"x\",\"opt_int32\":42,"
                            "\"opt_string\":\"hello\",\"opt_bytes\":\"YWJj\"}",
                            D2);
  assert_int_equal(m->has_opt_int32, 1);
  assert_int_equal(m->has_opt_bytes, 1);
  s = to_json(m, MPRPC_JSON_ORIG_NAMES);
  assert_string_equal(s, "{\"req_int32\":1,\"req_string\":\"x\",\"opt_int32\":42,"
                         "\"opt_string\":\"hello\",\"opt_bytes\":\"YWJj\"}");
  free(s);
  protobuf_c_message_free_unpacked(&m->base, NULL);
}

/* Input at the very end of a page, followed by an unreadable page: the
 * parser reads exactly len bytes. */
static void test_json_input_guard_page(void **state) {
  (void)state;
  long pg = sysconf(_SC_PAGESIZE);
  char *map = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(map != MAP_FAILED);
  assert_int_equal(mprotect(map + pg, (size_t)pg, PROT_NONE), 0);
  const char *inputs[] = {"{\"fString\":\"abc\",\"rInt32\":[1,2,3]}", "{\"fInt32\":12",
                          "{\"fBytes\":\"YWJj\"}", "{", "1"};
  for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
    size_t n = strlen(inputs[i]);
    char *p = map + pg - n;
    memcpy(p, inputs[i], n);
    ProtobufCMessage *m = NULL;
    char err[128];
    int rc = mprpc_json_to_message(p, n, D3, NULL, &m, err, sizeof err);
    assert_true(rc == 0 || rc == MPRPC_EINVAL);
    assert_int_equal(rc == 0, i == 0 || i == 2);
    protobuf_c_message_free_unpacked(m, NULL);
  }
  munmap(map, (size_t)pg * 2);
}

/* ---- input errors ------------------------------------------------------------------ */

static void test_json_error_required_missing(void **state) {
  (void)state;
  expect_error(D2, "{}", "req_int32: required field missing");
  expect_error(D2, "{\"reqInt32\":1}", "req_string: required field missing");
  expect_error(D2, "{\"reqInt32\":1,\"reqString\":null}", "req_string: required field missing");
  expect_error(D2, "{\"reqInt32\":1,\"reqString\":\"\",\"optSub\":{}}",
               "optSub.id: required field missing");
  expect_error(D2, "{\"reqInt32\":1,\"reqString\":\"\",\"repSub\":[{\"id\":1},{\"name\":\"x\"}]}",
               "repSub[1].id: required field missing");
  expect_error(D2, "{\"reqInt32\":1,\"reqString\":\"\",\"chSub\":{}}",
               "chSub.id: required field missing");
}

static void test_json_error_wrong_type(void **state) {
  (void)state;
  expect_error(D3, "{\"fInt32\":\"abc\"}", "fInt32: expected integer");
  expect_error(D3, "{\"fInt32\":true}", "fInt32: expected integer");
  expect_error(D3, "{\"fInt32\":1.5}", "fInt32: expected integer");
  expect_error(D3, "{\"fInt64\":\"1.0\"}", "fInt64: expected integer");
  expect_error(D3, "{\"fUint64\":\" 1\"}", "fUint64: expected integer");
  expect_error(D3, "{\"fInt32\":[]}", "fInt32: expected integer");
  expect_error(D3, "{\"fDouble\":\"abc\"}", "fDouble: expected number");
  expect_error(D3, "{\"fDouble\":\"0x10\"}", "fDouble: expected number");
  expect_error(D3, "{\"fFloat\":\"inf\"}", "fFloat: expected number");
  expect_error(D3, "{\"fDouble\":{}}", "fDouble: expected number");
  expect_error(D3, "{\"fBool\":1}", "fBool: expected boolean");
  expect_error(D3, "{\"fBool\":\"true\"}", "fBool: expected boolean");
  expect_error(D3, "{\"fString\":5}", "fString: expected string");
  expect_error(D3, "{\"fBytes\":5}", "fBytes: expected base64 string");
  expect_error(D3, "{\"fKind\":\"KIND_C\"}", "fKind: unknown enum value \"KIND_C\" for jt3.Kind");
  expect_error(D3, "{\"fKind\":true}", "fKind: expected enum name or number");
  expect_error(D3, "{\"fKind\":1.5}", "fKind: expected integer");
  expect_error(D3, "{\"fLeaf\":5}", "fLeaf: expected object");
  expect_error(D3, "{\"fLeaf\":[]}", "fLeaf: expected object");
  expect_error(D3, "{\"rInt32\":5}", "rInt32: expected array");
  expect_error(D3, "{\"rInt32\":{}}", "rInt32: expected array");
  expect_error(D3, "{\"rInt32\":[1,null]}", "rInt32[1]: null in a repeated field");
  expect_error(D3, "{\"rLeaf\":[{},{\"id\":\"x\"}]}", "rLeaf[1].id: expected integer");
  expect_error(D3, "{\"mStrInt\":[]}", "mStrInt: expected object");
  expect_error(D3, "{\"mStrInt\":{\"a\":null}}", "mStrInt[\"a\"]: map value must not be null");
  expect_error(D3, "{\"mStrInt\":{\"a\":\"b\"}}", "mStrInt[\"a\"]: expected integer");
  expect_error(D3, "{\"mIntStr\":{\"x\":\"a\"}}",
               "mIntStr[\"x\"]: map key: expected canonical decimal int32");
  expect_error(D3, "{\"mIntStr\":{\"01\":\"a\"}}",
               "mIntStr[\"01\"]: map key: expected canonical decimal int32");
  expect_error(D3, "{\"mIntStr\":{\"-0\":\"a\"}}",
               "mIntStr[\"-0\"]: map key: expected canonical decimal int32");
  expect_error(D3, "{\"mIntStr\":{\"2147483648\":\"a\"}}",
               "mIntStr[\"2147483648\"]: value out of range for int32");
  expect_error(D3, "{\"mU32Kind\":{\"-1\":\"KIND_A\"}}",
               "mU32Kind[\"-1\"]: value out of range for uint32");
  expect_error(D3, "{\"mBoolBytes\":{\"yes\":\"\"}}",
               "mBoolBytes[\"yes\"]: map key: expected true or false");
  expect_error(D3, "{\"mI64Leaf\":{\"5\":{\"id\":\"x\"}}}", "mI64Leaf[\"5\"].id: expected integer");
  expect_error(D3, "{\"node\":{\"kids\":[{},{\"child\":{\"v\":1.5}}]}}",
               "node.kids[1].child.v: expected integer");
  expect_error(D3, "[]", "expected a JSON object");
  expect_error(D3, "[{}]", "expected a JSON object");
}

static void test_json_error_unknown_field(void **state) {
  (void)state;
  expect_error(D3, "{\"nmae\":1}", "nmae: unknown field");
  expect_error(D3, "{\"fLeaf\":{\"nmae\":\"x\"}}", "fLeaf.nmae: unknown field");
  expect_error(D3, "{\"FInt32\":1}", "FInt32: unknown field");
  expect_error(D3, "{\"f_Int32\":1}", "f_Int32: unknown field");
  expect_error(D3, "{\"rLeaf\":[{\"id\":1,\"x\":null}]}", "rLeaf[0].x: unknown field");
  /* The same field under both of its names. */
  expect_error(D3, "{\"f_int32\":1,\"fInt32\":2}", "fInt32: field given twice");
  expect_error(D3, "{\"f_int32\":null,\"fInt32\":2}", "fInt32: field given twice");
}

static void test_json_error_out_of_range(void **state) {
  (void)state;
  static const struct {
    const char *field, *bad, *type;
  } cases[] = {
      {"fInt32", "2147483648", "int32"},   {"fInt32", "-2147483649", "int32"},
      {"fInt32", "\"2147483648\"", "int32"}, {"fSint32", "2147483648", "sint32"},
      {"fSint32", "-2147483649", "sint32"}, {"fSfixed32", "2147483648", "sfixed32"},
      {"fSfixed32", "-2147483649", "sfixed32"}, {"fUint32", "-1", "uint32"},
      {"fUint32", "4294967296", "uint32"}, {"fUint32", "\"-1\"", "uint32"},
      {"fFixed32", "-1", "fixed32"},       {"fFixed32", "4294967296", "fixed32"},
      {"fInt64", "\"9223372036854775808\"", "int64"},
      {"fInt64", "\"-9223372036854775809\"", "int64"},
      {"fInt64", "9.3e18", "int64"},       {"fInt64", "-9.3e18", "int64"},
      {"fSint64", "\"9223372036854775808\"", "sint64"},
      {"fSfixed64", "\"-9223372036854775809\"", "sfixed64"},
      {"fUint64", "-1", "uint64"},         {"fUint64", "\"-1\"", "uint64"},
      {"fUint64", "\"18446744073709551616\"", "uint64"}, {"fUint64", "1.9e19", "uint64"},
      {"fFixed64", "\"18446744073709551616\"", "fixed64"}, {"fFixed64", "-1", "fixed64"},
      {"fInt64", "\"123456789012345678901234567890\"", "int64"},
      {"fKind", "2147483648", "enum"},     {"fFloat", "3.5e38", "float"},
      {"fFloat", "-1e39", "float"},        {"fFloat", "\"1e39\"", "float"},
      {"fDouble", "\"1e400\"", "double"},  {"fFloat", "\"-1e400\"", "float"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char j[128], want[128];
    snprintf(j, sizeof j, "{\"%s\":%s}", cases[i].field, cases[i].bad);
    snprintf(want, sizeof want, "%s: value out of range for %s", cases[i].field, cases[i].type);
    expect_error(D3, j, want);
  }
  /* The edges themselves are fine. */
  Jt3__All *m = (Jt3__All *)from_json(
      "{\"fInt32\":-2147483648,\"fUint32\":4294967295,\"fInt64\":-9223372036854775808,"
      "\"fUint64\":\"18446744073709551615\",\"fFloat\":-3.4028235e38,\"fDouble\":1e-400}",
      D3);
  assert_int_equal(m->f_int32, INT32_MIN);
  assert_true(m->f_int64 == INT64_MIN);
  assert_true(m->f_float == -FLT_MAX);
  assert_true(m->f_double == 0);
  protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void test_json_error_bad_base64(void **state) {
  (void)state;
  const char *bad[] = {"a", "ab=c", "@@@@", "YQ===", "Y===", "YWJj=", "YQ=", "ab cd", "YWJ\\u0000"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char j[64];
    snprintf(j, sizeof j, "{\"fBytes\":\"%s\"}", bad[i]);
    if (i == 8) /* \u0000 never reaches the decoder: jansson refuses it */
      expect_error_like(D3, j, strlen(j), "line 1 column ", "\\u0000 is not allowed");
    else
      expect_error(D3, j, "fBytes: invalid base64");
  }
  expect_error(D3, "{\"rBytes\":[\"\",\"!\"]}", "rBytes[1]: invalid base64");
}

static void test_json_error_syntax_and_huge_numbers(void **state) {
  (void)state;
  expect_error_like(D3, "{\"fDouble\":1e400}", 17, "line 1 column ", "real number overflow");
  expect_error_like(D3, "{\"fInt64\":123456789012345678901234567890}", 40, "line 1 column ",
                    "too big integer");
  expect_error_like(D3, "{\"fUint64\":18446744073709551615}", 31, "line 1 column ",
                    "too big integer");
  expect_error_like(D3, "{} x", 4, "line 1 column ", "end of file expected");
  expect_error_like(D3, "{}{}", 4, "line 1 column ", "end of file expected");
  expect_error_like(D3, "{\"fInt32\":1", 11, "line 1 column ", "");
  expect_error_like(D3, "", 0, "line 1 column ", "expected");
  expect_error_like(D3, "5", 1, "line 1 column ", "expected");
  expect_error_like(D3, "{\"fInt32\":1,\n\"fInt32\":2}", 24, "line 2 column ",
                    "duplicate object key");
  expect_error_like(D3, "{\"fString\":\"\xff\"}", 15, "line 1 column ", "unable to decode byte");
  expect_error_like(D3, "{\"fString\":\"\xc0\x80\"}", 16, "line 1 column ",
                    "unable to decode byte");
  expect_error_like(D3, "{\"fString\":\"\\ud800\"}", 20, "line 1 column ", "invalid Unicode");
  expect_error_like(D3, "{\"fString\":\"a\0b\"}", 16, "line 1 column ", "");
  expect_error_like(D3, "{\"fInt32\":01}", 13, "line 1 column ", "");
  expect_error_like(D3, "{fInt32:1}", 10, "line 1 column ", "");
}

static void test_json_error_two_oneof_members(void **state) {
  (void)state;
  expect_error(D3, "{\"vInt\":1,\"vStr\":\"x\"}", "vStr: oneof already set by field \"v_int\"");
  expect_error(D3, "{\"vLeaf\":{},\"v_bytes\":\"\"}",
               "v_bytes: oneof already set by field \"v_leaf\"");
  expect_error(D2, "{\"reqInt32\":1,\"reqString\":\"\",\"chStr\":\"a\",\"chSub\":{\"id\":1}}",
               "chSub: oneof already set by field \"ch_str\"");
  /* null does not set a member. */
  Jt3__All *m = (Jt3__All *)from_json("{\"vInt\":null,\"vStr\":\"x\",\"vLeaf\":null}", D3);
  assert_int_equal(m->value_case, JT3__ALL__VALUE_V_STR);
  protobuf_c_message_free_unpacked(&m->base, NULL);
}

static char *nested(int levels, const char *open, const char *leaf, const char *close) {
  size_t n = strlen(open) * (size_t)levels + strlen(leaf) + strlen(close) * (size_t)levels + 1;
  char *s = malloc(n), *p = s;
  assert_non_null(s);
  for (int i = 0; i < levels; i++)
    p += sprintf(p, "%s", open);
  p += sprintf(p, "%s", leaf);
  for (int i = 0; i < levels; i++)
    p += sprintf(p, "%s", close);
  return s;
}

static void test_json_error_depth_65(void **state) {
  (void)state;
  /* 64 objects: the top level and 63 children. */
  char *ok = nested(63, "{\"child\":", "{\"v\":1}", "}");
  ProtobufCMessage *m = from_json(ok, DN);
  char *back = to_json(m, 0);
  assert_string_equal(back, ok);
  free(back);
  roundtrip(m);
  /* One more level below it cannot be printed either. */
  Jt3__Node *deepest = (Jt3__Node *)m;
  while (deepest->child)
    deepest = deepest->child;
  Jt3__Node extra = JT3__NODE__INIT;
  deepest->child = &extra;
  char *s = (char *)1;
  assert_int_equal(mprpc_message_to_json(m, 0, &s, NULL), MPRPC_EINVAL);
  assert_null(s);
  deepest->child = NULL;
  protobuf_c_message_free_unpacked(m, NULL);
  free(ok);

  char *bad = nested(64, "{\"child\":", "{}", "}");
  char want[64 * 6 + 64] = "";
  for (int i = 0; i < 64; i++)
    strcat(want, i ? ".child" : "child");
  strcat(want, ": nesting deeper than 64");
  expect_error(DN, bad, want);
  free(bad);

  /* Arrays count too: {"kids":[ ... ]} is two levels. */
  bad = nested(32, "{\"kids\":[", "{}", "]}");
  want[0] = 0;
  for (int i = 0; i < 32; i++)
    strcat(want, i ? ".kids[0]" : "kids[0]");
  strcat(want, ": nesting deeper than 64");
  expect_error(DN, bad, want);
  free(bad);
  ok = nested(31, "{\"kids\":[", "{\"kids\":[]}", "]}");
  m = from_json(ok, DN);
  protobuf_c_message_free_unpacked(m, NULL);
  free(ok);

  /* Far deeper than anything: jansson's own limit, no stack overflow. */
  bad = nested(100000, "[", "", "]");
  expect_error_like(DN, bad, strlen(bad), "line 1 column ", "maximum parsing depth");
  free(bad);
  bad = nested(1500, "{\"child\":", "{}", "}");
  expect_error_like(DN, bad, strlen(bad), "child.child.child", ": nesting deeper than 64");
  free(bad);
}

static void test_json_error_text_truncated_safely(void **state) {
  (void)state;
  ProtobufCMessage *m = NULL;
  const char *j = "{\"fLeaf\":{\"nmae\":1}}";
  char err[8];
  memset(err, 'x', sizeof err);
  assert_int_equal(mprpc_json_to_message(j, strlen(j), D3, NULL, &m, err, sizeof err),
                   MPRPC_EINVAL);
  assert_string_equal(err, "fLeaf.n");
  assert_int_equal(mprpc_json_to_message(j, strlen(j), D3, NULL, &m, err, 1), MPRPC_EINVAL);
  assert_string_equal(err, "");
  assert_int_equal(mprpc_json_to_message(j, strlen(j), D3, NULL, &m, NULL, 0), MPRPC_EINVAL);
  /* Misuse. */
  assert_int_equal(mprpc_json_to_message(NULL, 1, D3, NULL, &m, NULL, 0), MPRPC_EINVAL);
  assert_int_equal(mprpc_json_to_message("{}", 2, NULL, NULL, &m, NULL, 0), MPRPC_EINVAL);
  assert_int_equal(mprpc_json_to_message("{}", 2, D3, NULL, NULL, NULL, 0), MPRPC_EINVAL);
  char *s;
  assert_int_equal(mprpc_message_to_json(NULL, 0, &s, NULL), MPRPC_EINVAL);
}

/* ---- allocation failure ------------------------------------------------------------ */

typedef struct {
  long calls, fail_at, live;
  size_t bytes, cap;
} counting_t;

static void *count_alloc(void *data, size_t n) {
  counting_t *c = data;
  if (c->calls++ == c->fail_at || c->bytes + n > c->cap)
    return NULL;
  size_t *p = malloc(n + sizeof(size_t) * 2);
  if (!p)
    return NULL;
  p[0] = n;
  c->live++;
  c->bytes += n;
  return p + 2;
}

static void count_free(void *data, void *ptr) {
  counting_t *c = data;
  if (!ptr)
    return;
  size_t *p = (size_t *)ptr - 2;
  c->live--;
  c->bytes -= p[0];
  free(p);
}

static const char rich3[] =
    "{\"fInt32\":1,\"fInt64\":-9223372036854775807,\"fDouble\":1.2345678901234567e-300,"
    "\"fString\":\"a string longer than jansson's first token buffer\",\"fBytes\":\"YWJjZA==\",\"fLeaf\":{\"id\":1,\"name\":\"n\"},"
    "\"rString\":[\"a\",\"bb\",\"\"],\"rBytes\":[\"YQ\",\"\"],\"rLeaf\":[{\"name\":\"x\"},{}],"
    "\"rInt64\":[\"1\",2],\"mStrInt\":{\"a\":1,\"b\":2},\"mIntStr\":{\"3\":\"c\"},"
    "\"mI64Leaf\":{\"4\":{\"name\":\"l\"}},\"mBoolBytes\":{\"false\":\"AA\"},"
    "\"vLeaf\":{\"name\":\"v\"},\"node\":{\"kids\":[{\"child\":{\"v\":1}}]}}";
static const char rich2[] =
    "{\"reqInt32\":1,\"reqString\":\"s\",\"optString\":\"o\",\"optBytes\":\"AA\",\"optSub\":"
    "{\"id\":1,\"name\":\"x\"},\"repString\":[\"a\"],\"repSub\":[{\"id\":2}],\"chStr\":\"c\","
    "\"counts\":{\"k\":1,\"j\":2}}";

static void alloc_failure_sweep(const char *json, const ProtobufCMessageDescriptor *d,
                                int want_rc) {
  long n;
  for (n = 0;; n++) {
    counting_t cnt = {.fail_at = n, .cap = SIZE_MAX};
    ProtobufCAllocator a = {count_alloc, count_free, &cnt};
    ProtobufCMessage *m = (ProtobufCMessage *)1;
    char err[128];
    int rc = mprpc_json_to_message(json, strlen(json), d, &a, &m, err, sizeof err);
    if (cnt.calls <= n) { /* the failure was never reached: done */
      assert_int_equal(rc, want_rc);
      if (rc == 0) {
        assert_non_null(m);
        char *s = to_json(m, 0);
        free(s);
        protobuf_c_message_free_unpacked(m, &a);
      }
      assert_int_equal(cnt.live, 0);
      break;
    }
    if (rc != MPRPC_ENOMEM)
      fail_msg("allocation %ld failing gave %s (%s)", n, mprpc_err_name(rc), err);
    assert_null(m);
    assert_string_equal(err, "out of memory");
    if (cnt.live != 0)
      fail_msg("allocation %ld failing left %ld blocks", n, cnt.live);
  }
  assert_true(n > 10);
}

/* Every index, including those inside jansson: its lexer goes on after a
 * failed append to a token longer than 16 bytes (the long number and string
 * in rich3), which must still be ENOMEM, not a silently shortened value. */
static void test_json_alloc_failure_every_index(void **state) {
  (void)state;
  alloc_failure_sweep(rich3, D3, 0);
  alloc_failure_sweep(rich2, D2, 0);
  /* Failing inputs too: the error path frees what was built. */
  alloc_failure_sweep("{\"rString\":[\"a\",\"b\"],\"mStrInt\":{\"a\":1},\"fLeaf\":{\"x\":1}}", D3,
                      MPRPC_EINVAL);
  alloc_failure_sweep("{\"reqInt32\":1,\"repSub\":[{\"id\":1},{}]}", D2, MPRPC_EINVAL);
}

static void test_json_alloc_cap(void **state) {
  (void)state;
  /* A byte cap instead of a counter: big inputs fail cleanly. */
  counting_t cnt = {.fail_at = -1, .cap = 4096};
  ProtobufCAllocator a = {count_alloc, count_free, &cnt};
  size_t n = 20000;
  char *j = malloc(n * 2 + 32), *p = j;
  p += sprintf(p, "{\"rInt32\":[");
  for (size_t i = 0; i < n; i++)
    p += sprintf(p, i ? ",1" : "1");
  sprintf(p, "]}");
  ProtobufCMessage *m = NULL;
  char err[64];
  assert_int_equal(mprpc_json_to_message(j, strlen(j), D3, &a, &m, err, sizeof err), MPRPC_ENOMEM);
  assert_null(m);
  assert_int_equal(cnt.live, 0);
  free(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_name_lower_camel),
      cmocka_unit_test(test_json_output_proto3_exact),
      cmocka_unit_test(test_json_output_emit_defaults),
      cmocka_unit_test(test_json_output_proto2_presence),
      cmocka_unit_test(test_json_output_numbers),
      cmocka_unit_test(test_json_output_invalid_utf8_is_einval),
      cmocka_unit_test(test_json_roundtrip_proto3_every_type),
      cmocka_unit_test(test_json_roundtrip_proto2_every_type),
      cmocka_unit_test(test_json_roundtrip_unpacked),
      cmocka_unit_test(test_json_input_accepted_forms),
      cmocka_unit_test(test_json_input_proto2_defaults),
      cmocka_unit_test(test_json_input_guard_page),
      cmocka_unit_test(test_json_error_required_missing),
      cmocka_unit_test(test_json_error_wrong_type),
      cmocka_unit_test(test_json_error_unknown_field),
      cmocka_unit_test(test_json_error_out_of_range),
      cmocka_unit_test(test_json_error_bad_base64),
      cmocka_unit_test(test_json_error_syntax_and_huge_numbers),
      cmocka_unit_test(test_json_error_two_oneof_members),
      cmocka_unit_test(test_json_error_depth_65),
      cmocka_unit_test(test_json_error_text_truncated_safely),
      cmocka_unit_test(test_json_alloc_failure_every_index),
      cmocka_unit_test(test_json_alloc_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
