/*
 * Reflection: compiled descriptors -> FileDescriptorSet -> dynamic
 * descriptors, checked against the compiled ones and against protoc; bad
 * descriptor sets; the mprpc.Reflection service on a real provider.
 *
 * Needs protoc on PATH (Debian's protobuf-compiler). Sets are read back
 * with `protoc --decode_raw`, with src/proto/pbdescriptor.proto (the
 * subset of descriptor.proto mprpc declares) and, independently, by
 * protoc's own descriptor pool (--descriptor_set_in), which validates
 * every name, import and reference. Runs from the repository root like
 * every test (ci/run-tests.sh).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "mprpc/channel.h"
#include "mprpc/controller.h"
#include "mprpc/errors.h"
#include "mprpc/json.h"
#include "mprpc/log.h"
#include "mprpc/reflection.h"
#include "mprpc/rt.h"
#include "mprpc/server.h"
#include "support/test_provider.h"
#include "pbdescriptor.pb-c.h"
#include "reflect2.pb-c.h"
#include "reflect3.pb-c.h"
#include "reflection.pb-c.h"

typedef Google__Protobuf__FileDescriptorSet SetP;
typedef Google__Protobuf__DescriptorProto MsgP;
typedef Google__Protobuf__FieldDescriptorProto FieldP;

static char g_tmp[64];

static int setup(void **state) {
  (void)state;
  mprpc_log_set_level(MPRPC_LOG_LEVEL_WARN);
  snprintf(g_tmp, sizeof g_tmp, "/tmp/test_reflect.%d", (int)getpid());
  char cmd[128];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", g_tmp);
  return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
  return system(cmd) == 0 ? 0 : -1;
}

static uint8_t *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 4096, n = 0;
  uint8_t *b = malloc(cap);
  size_t got;
  while (b && (got = fread(b + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      uint8_t *nb = realloc(b, cap *= 2);
      if (!nb) {
        free(b);
        b = NULL;
      }
      b = nb;
    }
  }
  fclose(f);
  *len = n;
  return b;
}

static void write_all(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(p, 1, n, f), n);
  fclose(f);
}

/* protoc --descriptor_set_out of dir/file (with imports). */
static uint8_t *protoc_set(const char *dir, const char *file, size_t *len) {
  char out[128], cmd[512];
  snprintf(out, sizeof out, "%s/protoc.pb", g_tmp);
  snprintf(cmd, sizeof cmd, "protoc --include_imports --descriptor_set_out=%s -I%s %s/%s", out,
           dir, dir, file);
  assert_int_equal(system(cmd), 0);
  uint8_t *b = read_all(out, len);
  assert_non_null(b);
  return b;
}

static mprpc_dynpool_t *pool_of(const uint8_t *b, size_t n) {
  mprpc_dynpool_t *p = NULL;
  char err[256];
  int rc = mprpc_dynpool_new(b, n, &p, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "dynpool: %s\n", err);
  assert_int_equal(rc, 0);
  return p;
}

static uint8_t *our_set(const ProtobufCServiceDescriptor *const *sds, size_t n, size_t *len) {
  uint8_t *b = NULL;
  assert_int_equal(mprpc_descriptor_set_build(sds, n, &b, len), 0);
  return b;
}

/* Same names, numbers, labels, types, flags and referenced type names,
 * recursively (each message once). */
static void same_message(const ProtobufCMessageDescriptor *c, const ProtobufCMessageDescriptor *d,
                         int depth) {
  assert_non_null(d);
  assert_string_equal(c->name, d->name);
  assert_string_equal(c->short_name, d->short_name);
  assert_int_equal(c->n_fields, d->n_fields);
  assert_int_equal(c->n_field_ranges, d->n_field_ranges);
  for (unsigned i = 0; i < c->n_fields; i++) {
    const ProtobufCFieldDescriptor *a = &c->fields[i], *b = &d->fields[i];
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->id, b->id);
    assert_int_equal(a->label, b->label);
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->flags, b->flags);
    /* protoc-c leaves an enum field without [default] at NULL (its INIT
     * macro sets the first value); the pool points it at the first value,
     * so that unpack's generic init gives the same */
    if (a->type != PROTOBUF_C_TYPE_ENUM)
      assert_int_equal(a->default_value != NULL, b->default_value != NULL);
    assert_int_equal(c->fields_sorted_by_name[i], d->fields_sorted_by_name[i]);
    assert_ptr_equal(protobuf_c_message_descriptor_get_field_by_name(d, a->name), b);
    assert_ptr_equal(protobuf_c_message_descriptor_get_field(d, a->id), b);
    if (a->type == PROTOBUF_C_TYPE_ENUM) {
      const ProtobufCEnumDescriptor *x = a->descriptor, *y = b->descriptor;
      assert_string_equal(x->name, y->name);
      assert_int_equal(x->n_values, y->n_values);
      assert_int_equal(x->n_value_names, y->n_value_names);
      for (unsigned k = 0; k < x->n_values; k++) {
        assert_string_equal(x->values[k].name, y->values[k].name);
        assert_int_equal(x->values[k].value, y->values[k].value);
        assert_non_null(protobuf_c_enum_descriptor_get_value(y, x->values[k].value));
        assert_non_null(protobuf_c_enum_descriptor_get_value_by_name(y, x->values[k].name));
      }
    } else if (a->type == PROTOBUF_C_TYPE_MESSAGE && depth < 4 && a->descriptor != c) {
      same_message(a->descriptor, b->descriptor, depth + 1);
    }
  }
}

static void same_service(const ProtobufCServiceDescriptor *c, const ProtobufCServiceDescriptor *d) {
  assert_non_null(d);
  assert_string_equal(c->name, d->name);
  assert_int_equal(c->n_methods, d->n_methods);
  for (unsigned i = 0; i < c->n_methods; i++) {
    assert_string_equal(c->methods[i].name, d->methods[i].name);
    assert_int_equal(c->method_indices_by_name[i], d->method_indices_by_name[i]);
    same_message(c->methods[i].input, d->methods[i].input, 0);
    same_message(c->methods[i].output, d->methods[i].output, 0);
  }
}

/* pack with the compiled descriptor, unpack with the dynamic one, pack again */
static void same_bytes(const ProtobufCMessage *compiled, const ProtobufCMessageDescriptor *dyn) {
  size_t n = protobuf_c_message_get_packed_size(compiled);
  uint8_t *a = malloc(n + 1), *b = malloc(n + 1);
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(protobuf_c_message_pack(compiled, a), n);
  ProtobufCMessage *m = protobuf_c_message_unpack(dyn, NULL, n, a);
  assert_non_null(m);
  assert_ptr_equal(m->descriptor, dyn);
  assert_int_equal(protobuf_c_message_get_packed_size(m), n);
  assert_int_equal(protobuf_c_message_pack(m, b), n);
  assert_memory_equal(a, b, n);
  assert_int_equal(m->n_unknown_fields, 0);
  protobuf_c_message_free_unpacked(m, NULL);
  free(a);
  free(b);
}

/* ---- round trips ------------------------------------------------------------ */

static void test_reflect_echo_round_trip(void **state) {
  (void)state;
  const ProtobufCServiceDescriptor *sds[] = {&example__echo_service__descriptor};
  size_t n;
  uint8_t *set = our_set(sds, 1, &n);
  mprpc_dynpool_t *p = pool_of(set, n);
  assert_int_equal(mprpc_dynpool_service_count(p), 1);
  same_service(&example__echo_service__descriptor, mprpc_dynpool_service(p, "example.EchoService"));
  assert_ptr_equal(mprpc_dynpool_service(p, ".example.EchoService"),
                   mprpc_dynpool_service_at(p, 0));
  assert_null(mprpc_dynpool_service(p, "example.Nope"));
  assert_int_equal(mprpc_dynpool_syntax(p, mprpc_dynpool_message(p, "example.EchoRequest")), 2);
  Example__EchoRequest req = EXAMPLE__ECHO_REQUEST__INIT;
  req.message = "hello";
  same_bytes(&req.base, mprpc_dynpool_message(p, "example.EchoRequest"));
  /* the same set, built twice, is the same bytes */
  size_t n2;
  uint8_t *set2 = our_set(sds, 1, &n2);
  assert_int_equal(n, n2);
  assert_memory_equal(set, set2, n);
  free(set2);
  mprpc_dynpool_free(p);
  free(set);
}

static void fill_tree(Rtest__Tree *t, Rtest__Tree__Node *root, Rtest__Tree__Node *kids,
                      Rtest__Tree__Node **kidp, Rtest__Scalars *sc) {
  static int32_t ints[] = {1, -2, 300000};
  static char *names[] = {"a", "", "ccc"};
  static Rtest__Color colors[] = {RTEST__COLOR__NEG, RTEST__COLOR__BLUE};
  static Rtest__Tree__CountsEntry e1 = RTEST__TREE__COUNTS_ENTRY__INIT, e2 = RTEST__TREE__COUNTS_ENTRY__INIT;
  static Rtest__Tree__CountsEntry *ents[] = {&e1, &e2};
  e1.key = "x";
  e1.has_value = 1;
  e1.value = 5;
  e2.key = "y";
  rtest__tree__init(t);
  rtest__tree__node__init(root);
  for (int i = 0; i < 2; i++) {
    rtest__tree__node__init(&kids[i]);
    kids[i].label = i ? "right" : "left";
    kids[i].has_kind = 1;
    kids[i].kind = RTEST__TREE__NODE__KIND__INNER;
    kidp[i] = &kids[i];
  }
  root->label = "root";
  root->n_children = 2;
  root->children = kidp;
  t->root = root;
  t->n_packed_ints = 3;
  t->packed_ints = ints;
  t->n_loose_ints = 3;
  t->loose_ints = ints;
  t->n_names = 3;
  t->names = names;
  t->choice_case = RTEST__TREE__CHOICE_NUMBER;
  t->number = -77;
  t->n_counts = 2;
  t->counts = ents;
  t->n_colors = 2;
  t->colors = colors;
  rtest__scalars__init(sc);
  sc->req = "required";
  sc->has_i32 = 1;
  sc->i32 = 0;
  sc->has_u64 = 1;
  sc->u64 = UINT64_MAX;
  sc->has_s64 = 1;
  sc->s64 = INT64_MIN;
  sc->has_db = 1;
  sc->db = 3.5;
  sc->has_by = 1;
  sc->by.data = (uint8_t *)"\0\1\2";
  sc->by.len = 3;
  sc->has_color2 = 1;
  sc->color2 = RTEST__COLOR__NEG;
  t->scalars = sc;
}

static void check_rtest_pool(mprpc_dynpool_t *p) {
  same_service(&rtest__tree_service__descriptor, mprpc_dynpool_service(p, "rtest.TreeService"));
  const ProtobufCMessageDescriptor *dt = mprpc_dynpool_message(p, "rtest.Tree");
  Rtest__Tree t;
  Rtest__Tree__Node root, kids[2], *kidp[2];
  Rtest__Scalars sc;
  fill_tree(&t, &root, kids, kidp, &sc);
  same_bytes(&t.base, dt);
  /* every oneof member, one at a time */
  t.choice_case = RTEST__TREE__CHOICE_TEXT;
  t.text = "some text";
  same_bytes(&t.base, dt);
  t.choice_case = RTEST__TREE__CHOICE_NODE;
  t.node = &kids[0];
  same_bytes(&t.base, dt);
  t.choice_case = RTEST__TREE__CHOICE_BLOB;
  t.blob.data = (uint8_t *)"zz";
  t.blob.len = 2;
  same_bytes(&t.base, dt);
  same_bytes(&sc.base, mprpc_dynpool_message(p, "rtest.Scalars"));
}

static void test_reflect_proto2_types_round_trip(void **state) {
  (void)state;
  const ProtobufCServiceDescriptor *sds[] = {&rtest__tree_service__descriptor,
                                             &example__echo_service__descriptor};
  size_t n;
  uint8_t *set = our_set(sds, 2, &n);
  mprpc_dynpool_t *p = pool_of(set, n);
  check_rtest_pool(p);
  mprpc_dynpool_free(p);
  free(set);
  /* and from protoc's own descriptor set of the same file */
  set = protoc_set("tests/proto", "reflect2.proto", &n);
  p = pool_of(set, n);
  check_rtest_pool(p);
  mprpc_dynpool_free(p);
  free(set);
}

static void check_store_pool(mprpc_dynpool_t *p) {
  same_service(&rtest3__store__descriptor, mprpc_dynpool_service(p, "rtest3.Store"));
  assert_int_equal(mprpc_dynpool_syntax(p, mprpc_dynpool_message(p, "rtest3.Item")), 3);
  Rtest3__Item it = RTEST3__ITEM__INIT, child = RTEST3__ITEM__INIT;
  int64_t vals[] = {1, -1, INT64_MAX};
  double w[] = {0.5, -0.0};
  Rtest3__Item__MoreEntry me = RTEST3__ITEM__MORE_ENTRY__INIT, *mep[] = {&me};
  it.name = "item";
  it.count = 3;
  it.n_values = 3;
  it.values = vals;
  it.n_weights = 2;
  it.weights = w;
  it.level = RTEST3__LEVEL__LEVEL_HIGH;
  child.name = "";
  child.flag = 1;
  it.child = &child;
  it.pick_case = RTEST3__ITEM__PICK_NUM;
  it.num = 0; /* a oneof member set to zero is still sent */
  me.key = "k";
  me.value = &child;
  it.n_more = 1;
  it.more = mep;
  it.data.data = (uint8_t *)"d";
  it.data.len = 1;
  same_bytes(&it.base, mprpc_dynpool_message(p, "rtest3.Item"));
  Rtest3__Batch b = RTEST3__BATCH__INIT;
  Rtest3__Item *items[] = {&it, &child};
  b.n_items = 2;
  b.items = items;
  same_bytes(&b.base, mprpc_dynpool_message(p, "rtest3.Batch"));
}

static void test_reflect_proto3_types_round_trip(void **state) {
  (void)state;
  const ProtobufCServiceDescriptor *sds[] = {&rtest3__store__descriptor};
  size_t n;
  uint8_t *set = our_set(sds, 1, &n);
  mprpc_dynpool_t *p = pool_of(set, n);
  check_store_pool(p);
  mprpc_dynpool_free(p);
  free(set);
  set = protoc_set("tests/proto", "reflect3.proto", &n);
  p = pool_of(set, n);
  check_store_pool(p);
  mprpc_dynpool_free(p);
  free(set);
}

/* protoc itself accepts our set as descriptors (names, imports, syntax,
 * oneofs, map entries all valid) and decodes a message with it. */
static void test_reflect_protoc_accepts_set(void **state) {
  (void)state;
  const ProtobufCServiceDescriptor *sds[] = {&rtest__tree_service__descriptor,
                                             &rtest3__store__descriptor,
                                             &example__echo_service__descriptor};
  size_t n;
  uint8_t *set = our_set(sds, 3, &n);
  char path[128], msgpath[128], outpath[128], cmd[1024];
  snprintf(path, sizeof path, "%s/ours.pb", g_tmp);
  snprintf(msgpath, sizeof msgpath, "%s/tree.bin", g_tmp);
  snprintf(outpath, sizeof outpath, "%s/decoded.txt", g_tmp);
  write_all(path, set, n);
  /* the raw structure, as descriptor.proto reads it */
  snprintf(cmd, sizeof cmd,
           "protoc --decode_raw < %s > /dev/null && "
           "protoc --decode=google.protobuf.FileDescriptorSet -Isrc/proto "
           "src/proto/pbdescriptor.proto < %s > %s",
           path, path, outpath);
  assert_int_equal(system(cmd), 0);
  size_t tl;
  char *text = (char *)read_all(outpath, &tl);
  assert_non_null(text);
  text = realloc(text, tl + 1);
  text[tl] = 0;
  const char *want[] = {"name: \"mprpc-reflection/rtest.proto\"", "package: \"rtest\"",
                        "syntax: \"proto3\"",
                        "type_name: \".rtest.Tree.Node\"", "name: \"text_oneof\"",
                        "map_entry: true", "default_value: \"-7\"",
                        "default_value: \"hi \\\"there\\\"\"", "default_value: \"BLUE\"",
                        "default_value: \"1e+300\"", "json_name: \"packedInts\"", "packed: true",
                        "input_type: \".rtest.Tree\"", "output_type: \".rtest.Tree.Node\"",
                        "name: \"EchoService\""};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    if (!strstr(text, want[i]))
      fprintf(stderr, "missing: %s\n%s\n", want[i], text);
    assert_non_null(strstr(text, want[i]));
  }
  free(text);
  /* protoc builds descriptors from it and decodes a Tree */
  Rtest__Tree t;
  Rtest__Tree__Node root, kids[2], *kidp[2];
  Rtest__Scalars sc;
  fill_tree(&t, &root, kids, kidp, &sc);
  size_t tn = rtest__tree__get_packed_size(&t);
  uint8_t *tb = malloc(tn);
  rtest__tree__pack(&t, tb);
  write_all(msgpath, tb, tn);
  free(tb);
  snprintf(cmd, sizeof cmd,
           "protoc --descriptor_set_in=%s --decode=rtest.Tree mprpc-reflection/rtest.proto < %s > %s",
           path, msgpath, outpath);
  assert_int_equal(system(cmd), 0);
  text = (char *)read_all(outpath, &tl);
  text = realloc(text, tl + 1);
  text[tl] = 0;
  assert_non_null(strstr(text, "label: \"root\""));
  assert_non_null(strstr(text, "number: -77"));
  assert_non_null(strstr(text, "key: \"x\""));
  assert_non_null(strstr(text, "colors: NEG"));
  free(text);
  free(set);
}

/* protobuf_c_message_init on a pool descriptor applies the same defaults
 * as the generated init. */
static void test_reflect_defaults(void **state) {
  (void)state;
  size_t n;
  uint8_t *set = protoc_set("tests/proto", "reflect2.proto", &n);
  mprpc_dynpool_t *p = pool_of(set, n);
  const ProtobufCMessageDescriptor *d = mprpc_dynpool_message(p, "rtest.Scalars");
  assert_non_null(d->message_init);
  ProtobufCMessage *m = malloc(d->sizeof_message);
  protobuf_c_message_init(d, m);
  Rtest__Scalars c = RTEST__SCALARS__INIT;
  const ProtobufCMessageDescriptor *cd = &rtest__scalars__descriptor;
  for (unsigned i = 0; i < cd->n_fields; i++) {
    const ProtobufCFieldDescriptor *cf = &cd->fields[i], *df = &d->fields[i];
    const char *cv = (const char *)&c + cf->offset, *dv = (const char *)m + df->offset;
    switch (cf->type) {
    case PROTOBUF_C_TYPE_STRING:
      if (*(char *const *)cv)
        assert_string_equal(*(char *const *)cv, *(char *const *)dv);
      else
        assert_null(*(char *const *)dv);
      break;
    case PROTOBUF_C_TYPE_BYTES: {
      const ProtobufCBinaryData *x = (const void *)cv, *y = (const void *)dv;
      assert_int_equal(x->len, y->len);
      if (x->len)
        assert_memory_equal(x->data, y->data, x->len);
      break;
    }
    case PROTOBUF_C_TYPE_DOUBLE:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64: assert_memory_equal(cv, dv, 8); break;
    default: assert_memory_equal(cv, dv, 4); break;
    }
  }
  assert_int_equal(*(int32_t *)((char *)m + d->fields[0].offset), -7);
  /* unpack of nothing gives the defaults too; required req is missing */
  assert_null(protobuf_c_message_unpack(d, NULL, 0, (const uint8_t *)""));
  free(m);
  mprpc_dynpool_free(p);
  free(set);
}

static void test_reflect_proto3_optional(void **state) {
  (void)state;
  char proto[128];
  snprintf(proto, sizeof proto, "%s/opt3.proto", g_tmp);
  const char *text = "syntax = \"proto3\";\npackage o;\n"
                     "message M { optional int32 x = 1; int32 y = 2; optional string s = 3; }\n";
  write_all(proto, text, strlen(text));
  size_t n;
  uint8_t *set = protoc_set(g_tmp, "opt3.proto", &n);
  mprpc_dynpool_t *p = pool_of(set, n);
  const ProtobufCMessageDescriptor *d = mprpc_dynpool_message(p, "o.M");
  assert_non_null(d);
  assert_int_equal(d->fields[0].label, PROTOBUF_C_LABEL_OPTIONAL);
  assert_int_equal(d->fields[1].label, PROTOBUF_C_LABEL_NONE);
  assert_int_equal(d->fields[0].flags & PROTOBUF_C_FIELD_FLAG_ONEOF, 0);
  ProtobufCMessage *m = malloc(d->sizeof_message);
  mprpc_dynmsg_init(d, m);
  /* x present with value 0 is sent; y == 0 is not */
  *(protobuf_c_boolean *)((char *)m + d->fields[0].quantifier_offset) = 1;
  uint8_t out[16];
  assert_int_equal(protobuf_c_message_pack(m, out), 2);
  assert_int_equal(out[0], 0x08);
  assert_int_equal(out[1], 0x00);
  free(m);
  mprpc_dynpool_free(p);
  free(set);
}

/* A recursive type, nested three deep, and protobuf-c's unpack of bytes
 * that were never produced by compiled code. */
static void test_reflect_recursive_type(void **state) {
  (void)state;
  size_t n;
  uint8_t *set = protoc_set("tests/proto", "reflect2.proto", &n);
  mprpc_dynpool_t *p = pool_of(set, n);
  const ProtobufCMessageDescriptor *d = mprpc_dynpool_message(p, "rtest.Tree.Node");
  /* Node{label "a", children [Node{children [Node{label "c"}]}]} */
  const uint8_t bytes[] = {0x0a, 0x01, 'a', 0x12, 0x05, 0x12, 0x03, 0x0a, 0x01, 'c'};
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, sizeof bytes, bytes);
  assert_non_null(m);
  const ProtobufCFieldDescriptor *kids = protobuf_c_message_descriptor_get_field_by_name(d, "children");
  assert_int_equal(*(size_t *)((char *)m + kids->quantifier_offset), 1);
  ProtobufCMessage *k = (*(ProtobufCMessage ***)((char *)m + kids->offset))[0];
  assert_ptr_equal(k->descriptor, d);
  uint8_t out[sizeof bytes];
  assert_int_equal(protobuf_c_message_get_packed_size(m), sizeof bytes);
  protobuf_c_message_pack(m, out);
  assert_memory_equal(out, bytes, sizeof bytes);
  protobuf_c_message_free_unpacked(m, NULL);
  mprpc_dynpool_free(p);
  free(set);
}

/* The JSON module on pool descriptors gives what it gives on compiled ones,
 * both ways (it initializes messages with protobuf_c_message_init). */
static void json_same(const ProtobufCMessage *compiled, const ProtobufCMessageDescriptor *dyn) {
  size_t n = protobuf_c_message_get_packed_size(compiled);
  uint8_t *a = malloc(n + 1), *b = malloc(n + 1);
  protobuf_c_message_pack(compiled, a);
  ProtobufCMessage *m = protobuf_c_message_unpack(dyn, NULL, n, a);
  assert_non_null(m);
  char *ja = NULL, *jb = NULL;
  assert_int_equal(mprpc_message_to_json(compiled, 0, &ja, NULL), 0);
  assert_int_equal(mprpc_message_to_json(m, 0, &jb, NULL), 0);
  assert_string_equal(ja, jb);
  /* JSON -> message on both: the same bytes (not always the original's:
   * a map entry without value comes back with the value present) */
  ProtobufCMessage *back = NULL, *cback = NULL;
  char err[200];
  assert_int_equal(mprpc_json_to_message(jb, strlen(jb), dyn, NULL, &back, err, sizeof err), 0);
  assert_int_equal(mprpc_json_to_message(ja, strlen(ja), compiled->descriptor, NULL, &cback, err,
                                         sizeof err),
                   0);
  size_t nb = protobuf_c_message_get_packed_size(cback);
  assert_int_equal(protobuf_c_message_get_packed_size(back), nb);
  free(a);
  free(b);
  a = malloc(nb + 1);
  b = malloc(nb + 1);
  protobuf_c_message_pack(cback, a);
  protobuf_c_message_pack(back, b);
  assert_memory_equal(a, b, nb);
  protobuf_c_message_free_unpacked(back, NULL);
  protobuf_c_message_free_unpacked(cback, NULL);
  protobuf_c_message_free_unpacked(m, NULL);
  free(ja);
  free(jb);
  free(a);
  free(b);
}

static void test_reflect_json_on_pool(void **state) {
  (void)state;
  const ProtobufCServiceDescriptor *sds[] = {&rtest__tree_service__descriptor,
                                             &rtest3__store__descriptor};
  size_t n;
  uint8_t *set = our_set(sds, 2, &n);
  mprpc_dynpool_t *p = pool_of(set, n);
  Rtest__Tree t;
  Rtest__Tree__Node root, kids[2], *kidp[2];
  Rtest__Scalars sc;
  fill_tree(&t, &root, kids, kidp, &sc);
  json_same(&t.base, mprpc_dynpool_message(p, "rtest.Tree"));
  Rtest3__Item it = RTEST3__ITEM__INIT, child = RTEST3__ITEM__INIT;
  Rtest3__Item__MoreEntry me = RTEST3__ITEM__MORE_ENTRY__INIT, *mep[] = {&me};
  it.name = "x";
  it.level = RTEST3__LEVEL__LEVEL_LOW;
  it.pick_case = RTEST3__ITEM__PICK_WORD;
  it.word = "w";
  me.key = "k";
  me.value = &child;
  it.n_more = 1;
  it.more = mep;
  json_same(&it.base, mprpc_dynpool_message(p, "rtest3.Item"));
  /* a bad request names the field */
  ProtobufCMessage *m = NULL;
  char err[200];
  const char *bad = "{\"root\": {\"kind\": \"NOPE\"}}";
  assert_int_equal(mprpc_json_to_message(bad, strlen(bad), mprpc_dynpool_message(p, "rtest.Tree"),
                                         NULL, &m, err, sizeof err),
                   MPRPC_EINVAL);
  assert_non_null(strstr(err, "root.kind"));
  mprpc_dynpool_free(p);
  free(set);
}

/* ---- bad sets ---------------------------------------------------------------- */

static MsgP *msg_named(SetP *s, const char *name) {
  for (size_t f = 0; f < s->n_file; f++)
    for (size_t i = 0; i < s->file[f]->n_message_type; i++)
      if (strcmp(s->file[f]->message_type[i]->name, name) == 0)
        return s->file[f]->message_type[i];
  fail_msg("no message %s", name);
  return NULL;
}

static FieldP *field_named(MsgP *m, const char *name) {
  for (size_t i = 0; i < m->n_field; i++)
    if (strcmp(m->field[i]->name, name) == 0)
      return m->field[i];
  fail_msg("no field %s", name);
  return NULL;
}

/* Packs s and expects the pool to refuse it with a text containing want. */
static void expect_bad(const SetP *s, const char *want) {
  size_t n = google__protobuf__file_descriptor_set__get_packed_size(s);
  uint8_t *b = malloc(n + 1);
  google__protobuf__file_descriptor_set__pack(s, b);
  mprpc_dynpool_t *p = (mprpc_dynpool_t *)1;
  char err[300] = "";
  int rc = mprpc_dynpool_new(b, n, &p, err, sizeof err);
  if (rc != MPRPC_EINVAL || !strstr(err, want))
    fprintf(stderr, "want '%s', got rc %d: %s\n", want, rc, err);
  assert_int_equal(rc, MPRPC_EINVAL);
  assert_null(p);
  assert_non_null(strstr(err, want));
  free(b);
}

static void test_reflect_bad_sets(void **state) {
  (void)state;
  size_t n;
  uint8_t *raw = protoc_set("tests/proto", "reflect2.proto", &n);
  SetP *s = google__protobuf__file_descriptor_set__unpack(NULL, n, raw);
  assert_non_null(s);
  MsgP *sc = msg_named(s, "Scalars"), *tree = msg_named(s, "Tree");
  FieldP *i32 = field_named(sc, "i32"), *root = field_named(tree, "root");

  char *save = root->type_name;
  root->type_name = ".rtest.Nope";
  expect_bad(s, "field rtest.Tree.root: unknown type '.rtest.Nope'");
  root->type_name = ".rtest.Color";
  expect_bad(s, "type_name rtest.Color is an enum, type says message");
  root->type_name = save;

  int32_t num = i32->number;
  i32->number = 2;
  expect_bad(s, "both have number 2");
  i32->number = 0;
  expect_bad(s, "field rtest.Scalars.i32: number 0 is outside 1..536870911");
  i32->number = num;

  save = i32->name;
  i32->name = "i64";
  expect_bad(s, "field name i64 appears twice");
  i32->name = "1bad";
  expect_bad(s, "message rtest.Scalars: field 0 has a bad name '1bad'");
  i32->name = save;

  save = sc->name;
  sc->name = "Tree";
  expect_bad(s, "type rtest.Tree is declared twice");
  sc->name = "a.b";
  expect_bad(s, "has a bad name 'a.b'");
  sc->name = save;

  Google__Protobuf__FieldDescriptorProto__Type ty = i32->type;
  i32->type = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP;
  expect_bad(s, "groups are not supported");
  i32->type = (Google__Protobuf__FieldDescriptorProto__Type)99;
  expect_bad(s, "unknown type 99");
  i32->type = ty;

  save = i32->default_value;
  i32->default_value = "seven";
  expect_bad(s, "field rtest.Scalars.i32: bad int32 default 'seven'");
  i32->default_value = "4294967296";
  expect_bad(s, "bad int32 default");
  i32->default_value = save;

  FieldP *num_f = field_named(tree, "number");
  int32_t oi = num_f->oneof_index;
  num_f->oneof_index = 3;
  expect_bad(s, "oneof_index 3 out of range (1 oneofs)");
  num_f->oneof_index = oi;

  char *syn = s->file[0]->syntax;
  s->file[0]->syntax = "editions";
  expect_bad(s, "syntax 'editions' is not supported");
  s->file[0]->syntax = "proto3"; /* proto2's required and defaults are refused */
  expect_bad(s, "proto3");
  s->file[0]->syntax = syn;

  Google__Protobuf__EnumDescriptorProto *color = s->file[0]->enum_type[0];
  size_t nv = color->n_value;
  color->n_value = 0;
  expect_bad(s, "enum rtest.Color has no values");
  color->n_value = nv;

  Google__Protobuf__MethodDescriptorProto *grow = s->file[0]->service[0]->method[0];
  save = grow->input_type;
  grow->input_type = ".rtest.Missing";
  expect_bad(s, "method rtest.TreeService.Grow: input type '.rtest.Missing' is not a known message");
  grow->input_type = save;

  /* absurd counts: a message of 10001 fields */
  FieldP **many = calloc(10001, sizeof *many);
  FieldP *fs = calloc(10001, sizeof *fs);
  char (*names)[16] = calloc(10001, sizeof *names);
  for (int i = 0; i < 10001; i++) {
    google__protobuf__field_descriptor_proto__init(&fs[i]);
    snprintf(names[i], sizeof names[i], "f%d", i);
    fs[i].name = names[i];
    fs[i].has_number = 1;
    fs[i].number = i + 1;
    fs[i].has_type = 1;
    fs[i].type = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT32;
    many[i] = &fs[i];
  }
  size_t nf = sc->n_field;
  FieldP **ofs = sc->field;
  sc->field = many;
  sc->n_field = 10001;
  expect_bad(s, "message rtest.Scalars has more than 10000 fields");
  sc->field = ofs;
  sc->n_field = nf;
  free(many);
  free(fs);
  free(names);

  google__protobuf__file_descriptor_set__free_unpacked(s, NULL);
  free(raw);

  /* bytes that are no FileDescriptorSet at all */
  mprpc_dynpool_t *p = NULL;
  char err[200];
  assert_int_equal(mprpc_dynpool_new((const uint8_t *)"\xff\xff\xff", 3, &p, err, sizeof err),
                   MPRPC_EINVAL);
  assert_non_null(strstr(err, "3 bytes do not parse as a google.protobuf.FileDescriptorSet"));
  /* nesting 2000 deep: refused before protobuf-c's recursive unpack */
  size_t depth = 2000, cap = depth * 8 + 16;
  uint8_t *deep = malloc(cap);
  size_t len = 0;
  /* built inside out: DescriptorProto{nested_type(3): ...} */
  uint8_t *tmp = malloc(cap);
  for (size_t i = 0; i < depth; i++) {
    size_t k = 0;
    tmp[k++] = 0x1a; /* field 3, length-delimited */
    size_t v = len;
    do {
      tmp[k++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
      v >>= 7;
    } while (v);
    memmove(deep + k, deep, len);
    memcpy(deep, tmp, k);
    len += k;
  }
  /* wrap: FileDescriptorProto{message_type(4)} in FileDescriptorSet{file(1)} */
  uint8_t *full = malloc(len + 32);
  size_t o = 0;
  full[o++] = 0x0a;
  size_t inner = len + 1 + (len > 0x7f ? (len > 0x3fff ? 3 : 2) : 1);
  for (size_t v = inner;;) {
    full[o++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    if (!(v >>= 7))
      break;
  }
  full[o++] = 0x22;
  for (size_t v = len;;) {
    full[o++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    if (!(v >>= 7))
      break;
  }
  memcpy(full + o, deep, len);
  o += len;
  assert_int_equal(mprpc_dynpool_new(full, o, &p, err, sizeof err), MPRPC_EINVAL);
  assert_non_null(strstr(err, "nests messages more than 48 deep"));
  free(full);
  free(tmp);
  free(deep);
  /* an empty set is a valid, empty pool */
  assert_int_equal(mprpc_dynpool_new(NULL, 0, &p, err, sizeof err), 0);
  assert_int_equal(mprpc_dynpool_message_count(p), 0);
  mprpc_dynpool_free(p);
}

/* More pool message types than init trampolines: the rest get a NULL
 * message_init and still work; freed slots are reused. */
static void test_reflect_init_slots(void **state) {
  (void)state;
  size_t nm = MPRPC_DYNPOOL_INIT_SLOTS + 10;
  MsgP *ms = calloc(nm, sizeof *ms);
  MsgP **mp = calloc(nm, sizeof *mp);
  char (*names)[16] = calloc(nm, sizeof *names);
  for (size_t i = 0; i < nm; i++) {
    google__protobuf__descriptor_proto__init(&ms[i]);
    snprintf(names[i], sizeof names[i], "M%zu", i);
    ms[i].name = names[i];
    mp[i] = &ms[i];
  }
  Google__Protobuf__FileDescriptorProto f = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
  f.name = "many.proto";
  f.n_message_type = nm;
  f.message_type = mp;
  Google__Protobuf__FileDescriptorProto *fp = &f;
  SetP s = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
  s.n_file = 1;
  s.file = &fp;
  size_t n = google__protobuf__file_descriptor_set__get_packed_size(&s);
  uint8_t *b = malloc(n);
  google__protobuf__file_descriptor_set__pack(&s, b);
  mprpc_dynpool_t *p = pool_of(b, n), *q;
  size_t with = 0;
  for (size_t i = 0; i < nm; i++) {
    const ProtobufCMessageDescriptor *d = mprpc_dynpool_message_at(p, i);
    with += d->message_init != NULL;
    ProtobufCMessage m;
    mprpc_dynmsg_init(d, &m);
    assert_ptr_equal(m.descriptor, d);
  }
  assert_true(with <= MPRPC_DYNPOOL_INIT_SLOTS);
  assert_true(with >= MPRPC_DYNPOOL_INIT_SLOTS - 64); /* other tests' pools are freed */
  mprpc_dynpool_free(p);
  q = pool_of(b, n);
  assert_non_null(mprpc_dynpool_message_at(q, 0)->message_init);
  mprpc_dynpool_free(q);
  free(b);
  free(ms);
  free(mp);
  free(names);
}

/* ---- the service on a provider --------------------------------------------------- */

typedef struct got {
  int err;
  char text[256];
  uint8_t *set;
  size_t len;
  char **names;
  size_t n;
} got_t;

static void on_set(const Mprpc__GetFileDescriptorSetResponse *r, void *arg) {
  got_t *g = arg;
  mprpc_controller_t *c = mprpc_controller_current();
  g->err = mprpc_controller_error_code(c);
  snprintf(g->text, sizeof g->text, "%s", mprpc_controller_error_text(c));
  if (r && r->has_file_descriptor_set) {
    g->set = malloc(r->file_descriptor_set.len + 1);
    memcpy(g->set, r->file_descriptor_set.data, r->file_descriptor_set.len);
    g->len = r->file_descriptor_set.len;
  }
}

static void on_list(const Mprpc__ListServicesResponse *r, void *arg) {
  got_t *g = arg;
  g->err = mprpc_controller_error_code(mprpc_controller_current());
  if (r) {
    g->n = r->n_service;
    g->names = calloc(r->n_service + 1, sizeof *g->names);
    for (size_t i = 0; i < r->n_service; i++)
      g->names[i] = strdup(r->service[i]);
  }
}

static void echo_echo(Example__EchoService_Service *svc, const Example__EchoRequest *in,
                  Example__EchoResponse_Closure done, void *data) {
  (void)svc;
  Example__EchoResponse r = EXAMPLE__ECHO_RESPONSE__INIT;
  r.message = in->message;
  done(&r, data);
}

static void test_reflect_service_on_provider(void **state) {
  (void)state;
  Example__EchoService_Service echo = EXAMPLE__ECHO_SERVICE__INIT(echo_);
  ProtobufCService *svcs[] = {&echo.base}, *refl = NULL;
  assert_int_equal(mprpc_reflection_service_new(svcs, 1, &refl), 0);
  mprpc_server_opts_t o;
  mprpc_server_opts_init(&o);
  o.threads = 1;
  mprpc_server_t *srv;
  char addr[64];
  ProtobufCService *served[] = {&echo.base, refl};
  assert_int_equal(test_provider_start(&o, served, 2, &srv, addr, sizeof addr), 0);

  mprpc_channel_options_t co;
  mprpc_channel_options_init(&co);
  co.servers = addr;
  co.timeout_ms = 10000; /* hang guard */
  mprpc_channel_t *ch;
  assert_int_equal(mprpc_channel_new(&mprpc__reflection__descriptor, &co, &ch), 0);
  ProtobufCService *stub = mprpc_channel_service(ch);

  got_t g;
  memset(&g, 0, sizeof g);
  Mprpc__ListServicesRequest lr = MPRPC__LIST_SERVICES_REQUEST__INIT;
  mprpc__reflection__list_services(stub, &lr, on_list, &g); /* synchronous here */
  assert_int_equal(g.err, 0);
  assert_int_equal(g.n, 2);
  assert_string_equal(g.names[0], "example.EchoService");
  assert_string_equal(g.names[1], "mprpc.Reflection");
  for (size_t i = 0; i < g.n; i++)
    free(g.names[i]);
  free(g.names);

  /* one service: the same bytes mprpc_descriptor_set_build gives */
  memset(&g, 0, sizeof g);
  Mprpc__GetFileDescriptorSetRequest gr = MPRPC__GET_FILE_DESCRIPTOR_SET_REQUEST__INIT;
  gr.service = "example.EchoService";
  mprpc__reflection__get_file_descriptor_set(stub, &gr, on_set, &g);
  assert_int_equal(g.err, 0);
  const ProtobufCServiceDescriptor *sds[] = {&example__echo_service__descriptor};
  size_t n;
  uint8_t *want = our_set(sds, 1, &n);
  assert_int_equal(g.len, n);
  assert_memory_equal(g.set, want, n);
  free(want);
  mprpc_dynpool_t *p = pool_of(g.set, g.len);
  same_service(&example__echo_service__descriptor, mprpc_dynpool_service(p, "example.EchoService"));
  mprpc_dynpool_free(p);
  /* protoc reads it */
  char path[128], cmd[512];
  snprintf(path, sizeof path, "%s/remote.pb", g_tmp);
  write_all(path, g.set, g.len);
  snprintf(cmd, sizeof cmd,
           "protoc --decode_raw < %s > /dev/null && "
           "protoc --decode=google.protobuf.FileDescriptorSet -Isrc/proto "
           "src/proto/pbdescriptor.proto < %s | grep -q 'input_type: \".example.EchoRequest\"'",
           path, path);
  assert_int_equal(system(cmd), 0);
  free(g.set);

  /* every service: includes mprpc.Reflection's own types */
  memset(&g, 0, sizeof g);
  gr.service = NULL;
  mprpc__reflection__get_file_descriptor_set(stub, &gr, on_set, &g);
  assert_int_equal(g.err, 0);
  p = pool_of(g.set, g.len);
  assert_int_equal(mprpc_dynpool_service_count(p), 2);
  same_service(&mprpc__reflection__descriptor, mprpc_dynpool_service(p, "mprpc.Reflection"));
  mprpc_dynpool_free(p);
  free(g.set);

  /* an unknown name: EREQUEST naming it, and the provider keeps serving */
  memset(&g, 0, sizeof g);
  gr.service = "no.Such";
  mprpc__reflection__get_file_descriptor_set(stub, &gr, on_set, &g);
  assert_int_equal(g.err, MPRPC_EREQUEST);
  assert_non_null(strstr(g.text, "no service named 'no.Such'"));
  assert_null(g.set);
  memset(&g, 0, sizeof g);
  gr.service = "mprpc.Reflection";
  mprpc__reflection__get_file_descriptor_set(stub, &gr, on_set, &g);
  assert_int_equal(g.err, 0);
  assert_true(g.len > 0);
  free(g.set);

  mprpc_channel_destroy(ch);
  mprpc_server_destroy(srv);
  protobuf_c_service_destroy(refl);
}

static void test_reflect_service_bad_args(void **state) {
  (void)state;
  Example__EchoService_Service echo = EXAMPLE__ECHO_SERVICE__INIT(echo_);
  ProtobufCService *two[] = {&echo.base, &echo.base}, *nul[] = {NULL}, *out = NULL;
  assert_int_equal(mprpc_reflection_service_new(two, 2, &out), MPRPC_EINVAL);
  assert_int_equal(mprpc_reflection_service_new(nul, 1, &out), MPRPC_EINVAL);
  assert_null(out);
  assert_int_equal(mprpc_reflection_service_new(NULL, 0, &out), 0);
  mprpc_reflection_service_free(out);
  uint8_t *b;
  size_t n;
  assert_int_equal(mprpc_descriptor_set_build(NULL, 0, &b, &n), MPRPC_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reflect_echo_round_trip),
      cmocka_unit_test(test_reflect_proto2_types_round_trip),
      cmocka_unit_test(test_reflect_proto3_types_round_trip),
      cmocka_unit_test(test_reflect_protoc_accepts_set),
      cmocka_unit_test(test_reflect_defaults),
      cmocka_unit_test(test_reflect_proto3_optional),
      cmocka_unit_test(test_reflect_recursive_type),
      cmocka_unit_test(test_reflect_json_on_pool),
      cmocka_unit_test(test_reflect_bad_sets),
      cmocka_unit_test(test_reflect_init_slots),
      cmocka_unit_test(test_reflect_service_on_provider),
      cmocka_unit_test(test_reflect_service_bad_args),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
