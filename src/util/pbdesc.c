/*
 * Compiled protobuf-c descriptors -> a serialized FileDescriptorSet
 * (mprpc_descriptor_set_build, include/mprpc/reflection.h).
 *
 * protobuf-c keeps less than descriptor.proto says, so a few things are
 * reconstructed:
 * - syntax: a message with a field of label NONE comes from a proto3 file;
 *   a tree of nested messages takes proto3 if any member does; everything
 *   else is written as proto2 (which expresses every protobuf-c label).
 *   Top-level enums used by a proto3 message that have a value 0 go with
 *   it. Types are grouped into one file per (package, syntax).
 * - oneof names are not kept by protobuf-c: a oneof is named after its
 *   first member, "<member>_oneof"; a proto3 `optional` field gets the
 *   synthetic oneof "_<field>" as protoc writes it.
 * - json_name is computed as protoc does; packed is written explicitly.
 * - a nested type whose parent is not reachable from any method is
 *   nested in an empty placeholder message of the parent's name, so every
 *   full name stays what it was.
 * - map entries (a nested "XxxEntry" with key = 1 and value = 2 used by a
 *   repeated field xxx) get options.map_entry.
 * Cross-file references produce dependency entries; a cycle between
 * packages produces a cycle of imports (protobuf-c does not say which file
 * a type came from), which mprpc's own reader accepts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/reflection.h"
#include "pbdescriptor.pb-c.h"
#include "util/reflect_int.h"

typedef Google__Protobuf__FileDescriptorProto FileP;
typedef Google__Protobuf__DescriptorProto MsgP;
typedef Google__Protobuf__FieldDescriptorProto FieldP;
typedef Google__Protobuf__EnumDescriptorProto EnumP;
typedef Google__Protobuf__EnumValueDescriptorProto EnumValP;
typedef Google__Protobuf__ServiceDescriptorProto SvcP;
typedef Google__Protobuf__MethodDescriptorProto MethP;
typedef Google__Protobuf__OneofDescriptorProto OneofP;

/* One message (or placeholder) or enum of the output. */
typedef struct node {
  const char *full;  /* full name */
  const char *pkg;   /* "" for none */
  const char *short_name;
  const ProtobufCMessageDescriptor *md; /* NULL for enums and placeholders */
  const ProtobufCEnumDescriptor *ed;    /* enums */
  int parent;  /* index of the enclosing message node, -1 top level */
  int syntax;  /* 2 or 3 */
  int file;    /* index into files */
  MsgP *mp;    /* built message (messages and placeholders) */
  EnumP *ep;   /* built enum */
} node_t;

typedef struct file {
  const char *pkg;
  int syntax;
  FileP *fp;
  size_t nmsg, nenum, nsvc, ndep;
  size_t capmsg, capenum, capsvc, capdep;
} file_t;

typedef struct builder {
  mprpc__mpool_t pool;
  node_t *nodes;
  size_t n, cap;
  file_t *files;
  size_t nfiles, capfiles;
  int err;
} builder_t;

static void *grow(builder_t *b, void *arr, size_t *cap, size_t need, size_t sz) {
  if (need <= *cap)
    return arr;
  size_t ncap = *cap ? *cap * 2 : 8;
  while (ncap < need)
    ncap *= 2;
  void *n = mprpc__mpool_array(&b->pool, ncap, sz);
  if (!n) {
    b->err = MPRPC_ENOMEM;
    return NULL;
  }
  if (arr)
    memcpy(n, arr, *cap * sz);
  *cap = ncap;
  return n;
}

static int find_node(const builder_t *b, const char *full) {
  for (size_t i = 0; i < b->n; i++)
    if (strcmp(b->nodes[i].full, full) == 0)
      return (int)i;
  return -1;
}

static int add_node(builder_t *b, const char *full, const char *pkg, const char *short_name) {
  node_t *nn = grow(b, b->nodes, &b->cap, b->n + 1, sizeof *nn);
  if (!nn)
    return -1;
  b->nodes = nn;
  node_t *x = &b->nodes[b->n];
  memset(x, 0, sizeof *x);
  x->full = full;
  x->pkg = pkg ? pkg : "";
  x->short_name = short_name;
  x->parent = -1;
  x->syntax = 2;
  x->file = -1;
  return (int)b->n++;
}

/* Breadth-first over the types reachable from m. */
static void collect_message(builder_t *b, const ProtobufCMessageDescriptor *m);

static void collect_enum(builder_t *b, const ProtobufCEnumDescriptor *e) {
  if (!e || e->magic != PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC || find_node(b, e->name) >= 0)
    return;
  int i = add_node(b, e->name, e->package_name, e->short_name);
  if (i >= 0)
    b->nodes[i].ed = e;
}

static void collect_message(builder_t *b, const ProtobufCMessageDescriptor *m) {
  if (!m || m->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || find_node(b, m->name) >= 0)
    return;
  int i = add_node(b, m->name, m->package_name, m->short_name);
  if (i < 0)
    return;
  b->nodes[i].md = m;
  for (unsigned f = 0; f < m->n_fields; f++) {
    if (m->fields[f].label == PROTOBUF_C_LABEL_NONE)
      b->nodes[i].syntax = 3;
    if (m->fields[f].type == PROTOBUF_C_TYPE_MESSAGE)
      collect_message(b, m->fields[f].descriptor);
    else if (m->fields[f].type == PROTOBUF_C_TYPE_ENUM)
      collect_enum(b, m->fields[f].descriptor);
  }
}

/* The enclosing message's full name of a nested type, or NULL at top
 * level: "pkg.Outer.Inner" in package "pkg" -> "pkg.Outer". */
static char *parent_name(builder_t *b, const char *full, const char *pkg, const char *short_name) {
  size_t fl = strlen(full), pl = strlen(pkg), sl = strlen(short_name);
  size_t rel = pl ? pl + 1 : 0;
  if (fl <= rel || fl < sl + 1 || fl - sl - 1 <= rel || full[fl - sl - 1] != '.' ||
      strcmp(full + fl - sl, short_name) != 0)
    return NULL;
  return mprpc__mpool_strndup(&b->pool, full, fl - sl - 1);
}

/* Links every node to its parent, creating placeholders. */
static void link_parents(builder_t *b) {
  for (size_t i = 0; i < b->n && !b->err; i++) {
    char *pn = parent_name(b, b->nodes[i].full, b->nodes[i].pkg, b->nodes[i].short_name);
    if (!pn)
      continue;
    int p = find_node(b, pn);
    if (p < 0) {
      const char *dot = strrchr(pn, '.');
      const char *pkg = b->nodes[i].pkg;
      p = add_node(b, pn, mprpc__mpool_strdup(&b->pool, pkg), dot ? dot + 1 : pn);
      if (p < 0)
        return;
    } else if (!b->nodes[p].md && b->nodes[p].ed) {
      continue; /* a type "inside" an enum cannot be: keep it top level */
    }
    b->nodes[i].parent = p;
  }
}

static int root_of(const builder_t *b, int i) {
  for (size_t guard = 0; b->nodes[i].parent >= 0 && guard <= b->n; guard++)
    i = b->nodes[i].parent;
  return i;
}

static int file_for(builder_t *b, const char *pkg, int syntax) {
  for (size_t i = 0; i < b->nfiles; i++)
    if (b->files[i].syntax == syntax && strcmp(b->files[i].pkg, pkg) == 0)
      return (int)i;
  file_t *nf = grow(b, b->files, &b->capfiles, b->nfiles + 1, sizeof *nf);
  if (!nf)
    return -1;
  b->files = nf;
  file_t *f = &b->files[b->nfiles];
  memset(f, 0, sizeof *f);
  f->pkg = pkg;
  f->syntax = syntax;
  f->fp = mprpc__mpool_alloc(&b->pool, sizeof *f->fp);
  if (!f->fp) {
    b->err = MPRPC_ENOMEM;
    return -1;
  }
  google__protobuf__file_descriptor_proto__init(f->fp);
  char name[600];
  snprintf(name, sizeof name, "mprpc-reflection/%.500s%s.proto", *pkg ? pkg : "_",
           syntax == 3 ? ".proto3" : "");
  f->fp->name = mprpc__mpool_strdup(&b->pool, name);
  f->fp->package = *pkg ? (char *)pkg : NULL;
  f->fp->syntax = syntax == 3 ? "proto3" : "proto2";
  return (int)b->nfiles++;
}

static void assign_syntax_and_files(builder_t *b) {
  /* a nested tree is one file: proto3 if any member is */
  for (size_t i = 0; i < b->n; i++)
    if (b->nodes[i].md && b->nodes[i].syntax == 3)
      b->nodes[root_of(b, (int)i)].syntax = 3;
  /* top-level enums used by a proto3 message that can be proto3 enums */
  for (size_t i = 0; i < b->n; i++) {
    const ProtobufCMessageDescriptor *m = b->nodes[i].md;
    if (!m || b->nodes[root_of(b, (int)i)].syntax != 3)
      continue;
    for (unsigned f = 0; f < m->n_fields; f++) {
      if (m->fields[f].type != PROTOBUF_C_TYPE_ENUM)
        continue;
      int e = find_node(b, ((const ProtobufCEnumDescriptor *)m->fields[f].descriptor)->name);
      if (e >= 0 && b->nodes[e].parent < 0 &&
          protobuf_c_enum_descriptor_get_value(b->nodes[e].ed, 0))
        b->nodes[e].syntax = 3;
    }
  }
  for (size_t i = 0; i < b->n && !b->err; i++) {
    int r = root_of(b, (int)i);
    b->nodes[i].syntax = b->nodes[r].syntax;
    b->nodes[i].file = file_for(b, b->nodes[r].pkg, b->nodes[r].syntax);
  }
}

static void add_dep(builder_t *b, int from, int to) {
  if (from == to || from < 0 || to < 0)
    return;
  file_t *f = &b->files[from];
  const char *name = b->files[to].fp->name;
  for (size_t i = 0; i < f->ndep; i++)
    if (strcmp(f->fp->dependency[i], name) == 0)
      return;
  char **nd = grow(b, f->fp->dependency, &f->capdep, f->ndep + 1, sizeof *nd);
  if (!nd)
    return;
  f->fp->dependency = nd;
  f->fp->dependency[f->ndep++] = (char *)name;
  f->fp->n_dependency = f->ndep;
}

static char *dotted(builder_t *b, const char *full) {
  size_t n = strlen(full);
  char *r = mprpc__mpool_alloc(&b->pool, n + 2);
  if (!r) {
    b->err = MPRPC_ENOMEM;
    return NULL;
  }
  r[0] = '.';
  memcpy(r + 1, full, n + 1);
  return r;
}

/* protoc's CEscape, for bytes defaults. */
static char *c_escape(builder_t *b, const uint8_t *p, size_t n) {
  char *r = mprpc__mpool_array(&b->pool, n + 1, 4);
  if (!r) {
    b->err = MPRPC_ENOMEM;
    return NULL;
  }
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    switch (c) {
    case '\n': r[o++] = '\\'; r[o++] = 'n'; break;
    case '\r': r[o++] = '\\'; r[o++] = 'r'; break;
    case '\t': r[o++] = '\\'; r[o++] = 't'; break;
    case '\\': case '\'': case '"': r[o++] = '\\'; r[o++] = (char)c; break;
    default:
      if (c >= 0x20 && c < 0x7f)
        r[o++] = (char)c;
      else
        o += (size_t)sprintf(r + o, "\\%03o", c);
    }
  }
  r[o] = 0;
  return r;
}

static char *fmt_double(builder_t *b, double v, int prec) {
  char buf[64];
  if (isinf(v))
    snprintf(buf, sizeof buf, v < 0 ? "-inf" : "inf");
  else if (isnan(v))
    snprintf(buf, sizeof buf, "nan");
  else {
    /* the shortest form that reads back to the same value */
    for (int p = prec == 9 ? 6 : 15; p <= prec; p++) {
      snprintf(buf, sizeof buf, "%.*g", p, v);
      if (prec == 9 ? (float)strtod(buf, NULL) == (float)v : strtod(buf, NULL) == v)
        break;
    }
  }
  return mprpc__mpool_strdup(&b->pool, buf);
}

static char *default_text(builder_t *b, const ProtobufCFieldDescriptor *f) {
  const void *dv = f->default_value;
  char buf[64];
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    snprintf(buf, sizeof buf, "%d", *(const int32_t *)dv);
    break;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    snprintf(buf, sizeof buf, "%u", *(const uint32_t *)dv);
    break;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    snprintf(buf, sizeof buf, "%lld", (long long)*(const int64_t *)dv);
    break;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)*(const uint64_t *)dv);
    break;
  case PROTOBUF_C_TYPE_FLOAT: return fmt_double(b, *(const float *)dv, 9);
  case PROTOBUF_C_TYPE_DOUBLE: return fmt_double(b, *(const double *)dv, 17);
  case PROTOBUF_C_TYPE_BOOL:
    snprintf(buf, sizeof buf, "%s", *(const protobuf_c_boolean *)dv ? "true" : "false");
    break;
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)dv);
    if (!ev)
      return NULL;
    return (char *)ev->name;
  }
  case PROTOBUF_C_TYPE_STRING: return (char *)dv;
  case PROTOBUF_C_TYPE_BYTES: {
    const ProtobufCBinaryData *bd = dv;
    return c_escape(b, bd->data, bd->len);
  }
  default: return NULL;
  }
  return mprpc__mpool_strdup(&b->pool, buf);
}

static bool packable(ProtobufCType t) {
  return t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES &&
         t != PROTOBUF_C_TYPE_MESSAGE;
}

/* "map_field" -> "MapFieldEntry" (protoc's name of a map's entry type). */
static bool is_entry_name_of(const char *field, const char *entry) {
  char buf[300];
  size_t o = 0;
  bool up = true;
  for (const char *s = field; *s && o + 6 < sizeof buf; s++) {
    if (*s == '_') {
      up = true;
      continue;
    }
    buf[o++] = up && *s >= 'a' && *s <= 'z' ? (char)(*s - 'a' + 'A') : *s;
    up = false;
  }
  memcpy(buf + o, "Entry", 6);
  return strcmp(buf, entry) == 0;
}

static bool is_map_entry(const builder_t *b, const node_t *x) {
  const ProtobufCMessageDescriptor *m = x->md;
  if (!m || x->parent < 0 || !b->nodes[x->parent].md || m->n_fields != 2 ||
      m->fields[0].id != 1 || strcmp(m->fields[0].name, "key") != 0 || m->fields[1].id != 2 ||
      strcmp(m->fields[1].name, "value") != 0)
    return false;
  const ProtobufCMessageDescriptor *p = b->nodes[x->parent].md;
  for (unsigned i = 0; i < p->n_fields; i++)
    if (p->fields[i].label == PROTOBUF_C_LABEL_REPEATED &&
        p->fields[i].type == PROTOBUF_C_TYPE_MESSAGE && p->fields[i].descriptor == m &&
        is_entry_name_of(p->fields[i].name, m->short_name))
      return true;
  return false;
}

static void build_field(builder_t *b, node_t *x, const ProtobufCFieldDescriptor *f, FieldP *fp,
                        int oneof_index) {
  google__protobuf__field_descriptor_proto__init(fp);
  fp->name = (char *)f->name;
  fp->has_number = 1;
  fp->number = (int32_t)f->id;
  fp->has_label = 1;
  fp->label = f->label == PROTOBUF_C_LABEL_REQUIRED   ? GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED
              : f->label == PROTOBUF_C_LABEL_REPEATED ? GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED
                                                      : GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL;
  fp->has_type = 1;
  fp->type = (Google__Protobuf__FieldDescriptorProto__Type)mprpc__pbtype_to_fdp(f->type);
  if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_ENUM) {
    const char *tn = f->type == PROTOBUF_C_TYPE_MESSAGE
                         ? ((const ProtobufCMessageDescriptor *)f->descriptor)->name
                         : ((const ProtobufCEnumDescriptor *)f->descriptor)->name;
    fp->type_name = dotted(b, tn);
    int t = find_node(b, tn);
    if (t >= 0)
      add_dep(b, x->file, b->nodes[t].file);
  }
  if (x->syntax == 2 && f->default_value && f->label != PROTOBUF_C_LABEL_REPEATED &&
      f->type != PROTOBUF_C_TYPE_MESSAGE)
    fp->default_value = default_text(b, f);
  if (oneof_index >= 0) {
    fp->has_oneof_index = 1;
    fp->oneof_index = oneof_index;
  }
  if (x->syntax == 3 && f->label == PROTOBUF_C_LABEL_OPTIONAL &&
      !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) {
    fp->has_proto3_optional = 1;
    fp->proto3_optional = 1;
  }
  char jn[256];
  mprpc__json_name(f->name, jn, sizeof jn);
  fp->json_name = mprpc__mpool_strdup(&b->pool, jn);
  bool packed = (f->flags & PROTOBUF_C_FIELD_FLAG_PACKED) != 0;
  bool want_packed_opt = f->label == PROTOBUF_C_LABEL_REPEATED && packable(f->type) &&
                         (x->syntax == 2 ? packed : !packed);
  bool deprecated = (f->flags & PROTOBUF_C_FIELD_FLAG_DEPRECATED) != 0;
  if (want_packed_opt || deprecated) {
    fp->options = mprpc__mpool_alloc(&b->pool, sizeof *fp->options);
    if (!fp->options) {
      b->err = MPRPC_ENOMEM;
      return;
    }
    google__protobuf__field_options__init(fp->options);
    if (want_packed_opt) {
      fp->options->has_packed = 1;
      fp->options->packed = packed;
    }
    if (deprecated) {
      fp->options->has_deprecated = 1;
      fp->options->deprecated = 1;
    }
  }
}

static OneofP *new_oneof(builder_t *b, const char *prefix, const char *name, const char *suffix) {
  OneofP *o = mprpc__mpool_alloc(&b->pool, sizeof *o);
  size_t n = strlen(prefix) + strlen(name) + strlen(suffix) + 1;
  char *s = mprpc__mpool_alloc(&b->pool, n);
  if (!o || !s) {
    b->err = MPRPC_ENOMEM;
    return NULL;
  }
  google__protobuf__oneof_descriptor_proto__init(o);
  snprintf(s, n, "%s%s%s", prefix, name, suffix);
  o->name = s;
  return o;
}

static void build_message(builder_t *b, node_t *x) {
  MsgP *mp = x->mp;
  mp->name = (char *)x->short_name;
  const ProtobufCMessageDescriptor *m = x->md;
  if (!m)
    return; /* placeholder: name and nested types only */
  unsigned nf = m->n_fields;
  mp->field = mprpc__mpool_array(&b->pool, nf, sizeof *mp->field);
  FieldP *fields = mprpc__mpool_array(&b->pool, nf, sizeof *fields);
  /* at most one oneof per field, plus one synthetic per proto3 optional */
  unsigned *qoff = mprpc__mpool_array(&b->pool, nf + 1, sizeof *qoff);
  mp->oneof_decl = mprpc__mpool_array(&b->pool, nf + 1, sizeof *mp->oneof_decl);
  if ((nf && (!mp->field || !fields)) || !qoff || !mp->oneof_decl) {
    b->err = MPRPC_ENOMEM;
    return;
  }
  size_t nreal = 0;
  for (unsigned i = 0; i < nf; i++) {
    const ProtobufCFieldDescriptor *f = &m->fields[i];
    if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
      continue;
    size_t k = 0;
    while (k < nreal && qoff[k] != f->quantifier_offset)
      k++;
    if (k == nreal) {
      qoff[nreal] = f->quantifier_offset;
      mp->oneof_decl[nreal++] = new_oneof(b, "", f->name, "_oneof");
    }
  }
  size_t nsyn = nreal;
  for (unsigned i = 0; i < nf && !b->err; i++) {
    const ProtobufCFieldDescriptor *f = &m->fields[i];
    int oi = -1;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      for (size_t k = 0; k < nreal; k++)
        if (qoff[k] == f->quantifier_offset)
          oi = (int)k;
    } else if (x->syntax == 3 && f->label == PROTOBUF_C_LABEL_OPTIONAL) {
      oi = (int)nsyn;
      mp->oneof_decl[nsyn++] = new_oneof(b, "_", f->name, "");
    }
    build_field(b, x, f, &fields[i], oi);
    mp->field[i] = &fields[i];
  }
  mp->n_field = nf;
  mp->n_oneof_decl = nsyn;
  if (is_map_entry(b, x)) {
    mp->options = mprpc__mpool_alloc(&b->pool, sizeof *mp->options);
    if (!mp->options) {
      b->err = MPRPC_ENOMEM;
      return;
    }
    google__protobuf__message_options__init(mp->options);
    mp->options->has_map_entry = 1;
    mp->options->map_entry = 1;
  }
}

static void build_enum(builder_t *b, node_t *x) {
  const ProtobufCEnumDescriptor *e = x->ed;
  EnumP *ep = x->ep;
  google__protobuf__enum_descriptor_proto__init(ep);
  ep->name = (char *)x->short_name;
  /* every name (aliases too), in value order: values_by_name points into
   * values, which protobuf-c sorts by number */
  unsigned n = e->n_value_names;
  ep->value = mprpc__mpool_array(&b->pool, n, sizeof *ep->value);
  EnumValP *vals = mprpc__mpool_array(&b->pool, n, sizeof *vals);
  if (n && (!ep->value || !vals)) {
    b->err = MPRPC_ENOMEM;
    return;
  }
  size_t o = 0;
  for (unsigned v = 0; v < e->n_values; v++)
    for (unsigned k = 0; k < n; k++)
      if (e->values_by_name[k].index == v) {
        google__protobuf__enum_value_descriptor_proto__init(&vals[o]);
        vals[o].name = (char *)e->values_by_name[k].name;
        vals[o].has_number = 1;
        vals[o].number = e->values[v].value;
        ep->value[o] = &vals[o];
        o++;
      }
  if (o == 0 && e->n_values) { /* no name index: the values themselves */
    for (unsigned v = 0; v < e->n_values && v < n; v++) {
      google__protobuf__enum_value_descriptor_proto__init(&vals[o]);
      vals[o].name = (char *)e->values[v].name;
      vals[o].has_number = 1;
      vals[o].number = e->values[v].value;
      ep->value[o] = &vals[o];
      o++;
    }
  }
  ep->n_value = o;
}

/* Appends child to the right list: its parent's nested lists or its
 * file's top-level lists. */
static void attach(builder_t *b, node_t *x) {
  if (x->parent >= 0) {
    MsgP *pm = b->nodes[x->parent].mp;
    if (x->ep) {
      EnumP **n = mprpc__mpool_array(&b->pool, pm->n_enum_type + 1, sizeof *n);
      if (!n) {
        b->err = MPRPC_ENOMEM;
        return;
      }
      if (pm->n_enum_type)
        memcpy(n, pm->enum_type, pm->n_enum_type * sizeof *n);
      n[pm->n_enum_type++] = x->ep;
      pm->enum_type = n;
    } else {
      MsgP **n = mprpc__mpool_array(&b->pool, pm->n_nested_type + 1, sizeof *n);
      if (!n) {
        b->err = MPRPC_ENOMEM;
        return;
      }
      if (pm->n_nested_type)
        memcpy(n, pm->nested_type, pm->n_nested_type * sizeof *n);
      n[pm->n_nested_type++] = x->mp;
      pm->nested_type = n;
    }
    return;
  }
  file_t *f = &b->files[x->file];
  if (x->ep) {
    EnumP **n = grow(b, f->fp->enum_type, &f->capenum, f->nenum + 1, sizeof *n);
    if (!n)
      return;
    f->fp->enum_type = n;
    n[f->nenum++] = x->ep;
    f->fp->n_enum_type = f->nenum;
  } else {
    MsgP **n = grow(b, f->fp->message_type, &f->capmsg, f->nmsg + 1, sizeof *n);
    if (!n)
      return;
    f->fp->message_type = n;
    n[f->nmsg++] = x->mp;
    f->fp->n_message_type = f->nmsg;
  }
}

static void build_service(builder_t *b, const ProtobufCServiceDescriptor *sd) {
  const char *pkg = sd->package ? sd->package : "";
  int syntax = 2;
  if (sd->n_methods) {
    int in = find_node(b, sd->methods[0].input->name);
    if (in >= 0 && strcmp(b->nodes[in].pkg, pkg) == 0)
      syntax = b->nodes[in].syntax;
  }
  int fi = file_for(b, pkg, syntax);
  if (fi < 0)
    return;
  SvcP *sp = mprpc__mpool_alloc(&b->pool, sizeof *sp);
  MethP *ms = mprpc__mpool_array(&b->pool, sd->n_methods + 1, sizeof *ms);
  MethP **mps = mprpc__mpool_array(&b->pool, sd->n_methods + 1, sizeof *mps);
  if (!sp || !ms || !mps) {
    b->err = MPRPC_ENOMEM;
    return;
  }
  google__protobuf__service_descriptor_proto__init(sp);
  sp->name = (char *)sd->short_name;
  for (unsigned i = 0; i < sd->n_methods; i++) {
    google__protobuf__method_descriptor_proto__init(&ms[i]);
    ms[i].name = (char *)sd->methods[i].name;
    ms[i].input_type = dotted(b, sd->methods[i].input->name);
    ms[i].output_type = dotted(b, sd->methods[i].output->name);
    add_dep(b, fi, b->nodes[find_node(b, sd->methods[i].input->name)].file);
    add_dep(b, fi, b->nodes[find_node(b, sd->methods[i].output->name)].file);
    mps[i] = &ms[i];
  }
  sp->method = mps;
  sp->n_method = sd->n_methods;
  file_t *f = &b->files[fi];
  SvcP **n = grow(b, f->fp->service, &f->capsvc, f->nsvc + 1, sizeof *n);
  if (!n)
    return;
  f->fp->service = n;
  n[f->nsvc++] = sp;
  f->fp->n_service = f->nsvc;
}

int mprpc_descriptor_set_build(const ProtobufCServiceDescriptor *const *services, size_t n,
                               uint8_t **out, size_t *outlen) {
  if (!out || !outlen || !services || n == 0)
    return MPRPC_EINVAL;
  *out = NULL;
  *outlen = 0;
  for (size_t i = 0; i < n; i++) {
    if (!services[i] || services[i]->magic != PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC)
      return MPRPC_EINVAL;
    for (unsigned m = 0; m < services[i]->n_methods; m++)
      if (!services[i]->methods[m].input || !services[i]->methods[m].output)
        return MPRPC_EINVAL;
  }
  builder_t b;
  memset(&b, 0, sizeof b);
  mprpc__mpool_init(&b.pool, 0);
  for (size_t i = 0; i < n; i++)
    for (unsigned m = 0; m < services[i]->n_methods; m++) {
      collect_message(&b, services[i]->methods[m].input);
      collect_message(&b, services[i]->methods[m].output);
    }
  if (!b.err)
    link_parents(&b);
  if (!b.err)
    assign_syntax_and_files(&b);
  for (size_t i = 0; i < b.n && !b.err; i++) {
    node_t *x = &b.nodes[i];
    if (x->ed) {
      x->ep = mprpc__mpool_alloc(&b.pool, sizeof *x->ep);
    } else {
      x->mp = mprpc__mpool_alloc(&b.pool, sizeof *x->mp);
      if (x->mp)
        google__protobuf__descriptor_proto__init(x->mp);
    }
    if (!x->ep && !x->mp)
      b.err = MPRPC_ENOMEM;
  }
  for (size_t i = 0; i < b.n && !b.err; i++) {
    if (b.nodes[i].ed)
      build_enum(&b, &b.nodes[i]);
    else
      build_message(&b, &b.nodes[i]);
  }
  for (size_t i = 0; i < b.n && !b.err; i++)
    attach(&b, &b.nodes[i]);
  for (size_t i = 0; i < n && !b.err; i++) {
    bool dup = false;
    for (size_t j = 0; j < i; j++)
      dup |= strcmp(services[j]->name, services[i]->name) == 0;
    if (!dup)
      build_service(&b, services[i]);
  }
  int rc = b.err;
  if (rc == 0) {
    Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    FileP **files = mprpc__mpool_array(&b.pool, b.nfiles + 1, sizeof *files);
    if (!files) {
      rc = MPRPC_ENOMEM;
    } else {
      for (size_t i = 0; i < b.nfiles; i++)
        files[i] = b.files[i].fp;
      set.file = files;
      set.n_file = b.nfiles;
      size_t len = google__protobuf__file_descriptor_set__get_packed_size(&set);
      uint8_t *buf = malloc(len ? len : 1);
      if (!buf) {
        rc = MPRPC_ENOMEM;
      } else {
        google__protobuf__file_descriptor_set__pack(&set, buf);
        *out = buf;
        *outlen = len;
      }
    }
  }
  mprpc__mpool_release(&b.pool);
  return rc;
}
