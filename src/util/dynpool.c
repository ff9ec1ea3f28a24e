/*
 * FileDescriptorSet -> protobuf-c descriptors built at run time
 * (mprpc_dynpool_*, include/mprpc/reflection.h).
 *
 * The descriptors are laid out the way protoc-c lays out generated code,
 * because protobuf-c's pack/unpack/free read the C structure through them:
 * - a message struct is ProtobufCMessage, then per field in declaration
 *   order its quantifier (size_t n_ for repeated; protobuf_c_boolean has_
 *   for optional scalars and bytes; none for strings, messages, required
 *   and proto3 fields) and its member; then per oneof a uint32 case and a
 *   union of its members (they must share one offset: protobuf-c frees the
 *   previous member of a oneof through the new member's slot);
 * - fields sorted by number, field_ranges runs of consecutive numbers plus
 *   a sentinel, fields_sorted_by_name; enum values unique by number and
 *   sorted, every name (aliases too) in values_by_name;
 * - message_init: protobuf_c_message_init calls it with the message only,
 *   so the descriptor cannot be passed; each pool message type claims one
 *   of MPRPC_DYNPOOL_INIT_SLOTS static trampolines bound to it (released
 *   by mprpc_dynpool_free). Past that, message_init is NULL, which
 *   protobuf-c's unpack handles and mprpc_dynmsg_init always does.
 *
 * Input is untrusted: bytes are checked for nesting depth before
 * protobuf-c's recursive unpack, unpack runs under a memory cap, and every
 * name, number, label, type and reference is validated with an error text
 * that names the file, type and field.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/reflection.h"
#include "pbdescriptor.pb-c.h"
#include "util/reflect_int.h"

#define MAX_DEPTH 48          /* nesting of messages in the set's bytes */
#define MAX_TYPES 100000      /* messages + enums in one set */
#define MAX_FIELDS 10000      /* fields of one message */
#define MAX_VALUES 100000     /* values of one enum */
#define MAX_METHODS 10000     /* methods of one service */
#define MAX_NAME 1024         /* one identifier or full name */
#define MAX_FIELD_NUMBER 536870911

typedef Google__Protobuf__FileDescriptorSet SetP;
typedef Google__Protobuf__FileDescriptorProto FileP;
typedef Google__Protobuf__DescriptorProto MsgP;
typedef Google__Protobuf__FieldDescriptorProto FieldP;
typedef Google__Protobuf__EnumDescriptorProto EnumP;
typedef Google__Protobuf__ServiceDescriptorProto SvcP;

enum { K_MSG = 1, K_ENUM = 2 };

typedef struct type_ent {
  const char *name; /* full, in the pool */
  int kind;
  int syntax;
  const char *file; /* for messages naming the file */
  const MsgP *mp;
  const EnumP *ep;
  ProtobufCMessageDescriptor *md;
  ProtobufCEnumDescriptor *ed;
} type_ent_t;

struct mprpc_dynpool {
  mprpc__mpool_t pool;
  type_ent_t *types; /* sorted by name after registration */
  size_t ntypes, captypes;
  ProtobufCMessageDescriptor **msgs; /* set order */
  size_t nmsgs;
  ProtobufCServiceDescriptor **svcs; /* set order */
  size_t nsvcs;
  int *slots; /* claimed init slots, -1 for none; one per message */
  char *err;
  size_t errlen;
};

/* Marks descriptors built here (reserved1 is unused by protobuf-c). */
static const char dyn_marker = 'D';

static int fail(mprpc_dynpool_t *p, int rc, const char *fmt, ...) {
  if (p->err && p->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
  }
  return rc;
}

#define NOMEM(p) fail((p), MPRPC_ENOMEM, "out of memory building descriptors")

/* ---- init trampolines ------------------------------------------------------ */

static _Atomic(const ProtobufCMessageDescriptor *) g_slot[MPRPC_DYNPOOL_INIT_SLOTS];
static pthread_mutex_t g_slot_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned g_slot_hint;

static void slot_init(unsigned i, ProtobufCMessage *m) {
  mprpc_dynmsg_init(atomic_load_explicit(&g_slot[i], memory_order_acquire), m);
}

#define TR(a, b, c, d)                                                                             \
  static void tr_##a##_##b##_##c##_##d(ProtobufCMessage *m) {                                     \
    slot_init((a)*512 + (b)*64 + (c)*8 + (d), m);                                                  \
  }
#define TR8(a, b, c) TR(a, b, c, 0) TR(a, b, c, 1) TR(a, b, c, 2) TR(a, b, c, 3) \
  TR(a, b, c, 4) TR(a, b, c, 5) TR(a, b, c, 6) TR(a, b, c, 7)
#define TR64(a, b) TR8(a, b, 0) TR8(a, b, 1) TR8(a, b, 2) TR8(a, b, 3) \
  TR8(a, b, 4) TR8(a, b, 5) TR8(a, b, 6) TR8(a, b, 7)
#define TR512(a) TR64(a, 0) TR64(a, 1) TR64(a, 2) TR64(a, 3) \
  TR64(a, 4) TR64(a, 5) TR64(a, 6) TR64(a, 7)
TR512(0)
TR512(1)
#define TP(a, b, c, d) tr_##a##_##b##_##c##_##d,
#define TP8(a, b, c) TP(a, b, c, 0) TP(a, b, c, 1) TP(a, b, c, 2) TP(a, b, c, 3) \
  TP(a, b, c, 4) TP(a, b, c, 5) TP(a, b, c, 6) TP(a, b, c, 7)
#define TP64(a, b) TP8(a, b, 0) TP8(a, b, 1) TP8(a, b, 2) TP8(a, b, 3) \
  TP8(a, b, 4) TP8(a, b, 5) TP8(a, b, 6) TP8(a, b, 7)
#define TP512(a) TP64(a, 0) TP64(a, 1) TP64(a, 2) TP64(a, 3) \
  TP64(a, 4) TP64(a, 5) TP64(a, 6) TP64(a, 7)
static const ProtobufCMessageInit g_tramp[MPRPC_DYNPOOL_INIT_SLOTS] = {TP512(0) TP512(1)};

static int slot_claim(const ProtobufCMessageDescriptor *d) {
  int got = -1;
  pthread_mutex_lock(&g_slot_mu);
  for (unsigned k = 0; k < MPRPC_DYNPOOL_INIT_SLOTS; k++) {
    unsigned i = (g_slot_hint + k) % MPRPC_DYNPOOL_INIT_SLOTS;
    if (!atomic_load_explicit(&g_slot[i], memory_order_relaxed)) {
      atomic_store_explicit(&g_slot[i], d, memory_order_release);
      g_slot_hint = i + 1;
      got = (int)i;
      break;
    }
  }
  pthread_mutex_unlock(&g_slot_mu);
  return got;
}

static void slot_release(int i) {
  if (i < 0)
    return;
  pthread_mutex_lock(&g_slot_mu);
  atomic_store_explicit(&g_slot[i], NULL, memory_order_release);
  pthread_mutex_unlock(&g_slot_mu);
}

static bool is_dynamic(const ProtobufCMessageDescriptor *d) {
  return d->reserved1 == (void *)&dyn_marker;
}

void mprpc_dynmsg_init(const ProtobufCMessageDescriptor *d, ProtobufCMessage *msg) {
  if (!is_dynamic(d) && d->message_init) {
    d->message_init(msg);
    return;
  }
  memset(msg, 0, d->sizeof_message);
  msg->descriptor = d;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (!f->default_value || f->label == PROTOBUF_C_LABEL_REPEATED)
      continue;
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
      continue; /* a oneof starts unset; its members share one slot */
    void *m = (char *)msg + f->offset;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: memcpy(m, f->default_value, 8); break;
    case PROTOBUF_C_TYPE_BOOL: memcpy(m, f->default_value, sizeof(protobuf_c_boolean)); break;
    case PROTOBUF_C_TYPE_BYTES: memcpy(m, f->default_value, sizeof(ProtobufCBinaryData)); break;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE: *(const void **)m = f->default_value; break;
    default: memcpy(m, f->default_value, 4); break;
    }
  }
}

/* ---- names ------------------------------------------------------------------ */

static bool ident_ok(const char *s) {
  if (!s || !*s || strlen(s) > MAX_NAME)
    return false;
  if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
    return false;
  for (s++; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_'))
      return false;
  return true;
}

/* A package: dot-separated identifiers (or empty). */
static bool package_ok(const char *s) {
  if (!*s)
    return true;
  if (strlen(s) > MAX_NAME)
    return false;
  char buf[MAX_NAME + 1];
  strcpy(buf, s);
  char *save = NULL;
  size_t parts = 0;
  if (buf[0] == '.' || buf[strlen(buf) - 1] == '.' || strstr(buf, ".."))
    return false;
  for (char *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save), parts++)
    if (!ident_ok(t))
      return false;
  return parts > 0;
}

/* Printable for error texts: at most 80 chars of s, non-printables as '?'. */
static const char *shown(const char *s, char *buf, size_t cap) {
  size_t o = 0;
  if (!s)
    return "(none)";
  for (; *s && o + 4 < cap && o < 80; s++)
    buf[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
  if (*s && o + 4 < cap) {
    memcpy(buf + o, "...", 3);
    o += 3;
  }
  buf[o] = 0;
  return buf;
}

static char *join(mprpc_dynpool_t *p, const char *scope, const char *name) {
  size_t sl = strlen(scope), nl = strlen(name);
  char *r = mprpc__mpool_alloc(&p->pool, sl + nl + 2);
  if (!r)
    return NULL;
  if (sl) {
    memcpy(r, scope, sl);
    r[sl] = '.';
    memcpy(r + sl + 1, name, nl + 1);
  } else {
    memcpy(r, name, nl + 1);
  }
  return r;
}

/* "a.b.C" -> "a_b_C", as a C-ish name protobuf-c prints in messages. */
static char *c_name(mprpc_dynpool_t *p, const char *full) {
  char *r = mprpc__mpool_strdup(&p->pool, full);
  if (r)
    for (char *s = r; *s; s++)
      if (*s == '.')
        *s = '_';
  return r;
}

/* ---- registration ------------------------------------------------------------ */

static int add_type(mprpc_dynpool_t *p, const char *full, int kind, int syntax, const char *file,
                    const MsgP *mp, const EnumP *ep) {
  if (p->ntypes >= MAX_TYPES)
    return fail(p, MPRPC_EINVAL, "more than %d message and enum types", MAX_TYPES);
  if (p->ntypes == p->captypes) {
    size_t ncap = p->captypes ? p->captypes * 2 : 64;
    type_ent_t *n = mprpc__mpool_array(&p->pool, ncap, sizeof *n);
    if (!n)
      return NOMEM(p);
    if (p->ntypes)
      memcpy(n, p->types, p->ntypes * sizeof *n);
    p->types = n;
    p->captypes = ncap;
  }
  type_ent_t *t = &p->types[p->ntypes++];
  t->name = full;
  t->kind = kind;
  t->syntax = syntax;
  t->file = file;
  t->mp = mp;
  t->ep = ep;
  return 0;
}

static int register_enum(mprpc_dynpool_t *p, const char *scope, const EnumP *e, int syntax,
                         const char *file) {
  char b1[100];
  if (!ident_ok(e->name))
    return fail(p, MPRPC_EINVAL, "file %s: enum in %s has a bad name '%s'", file,
                *scope ? scope : "the file", shown(e->name, b1, sizeof b1));
  char *full = join(p, scope, e->name);
  if (!full)
    return NOMEM(p);
  if (strlen(full) > MAX_NAME)
    return fail(p, MPRPC_EINVAL, "file %s: enum name %.80s... is longer than %d", file, full,
                MAX_NAME);
  return add_type(p, full, K_ENUM, syntax, file, NULL, e);
}

static int register_message(mprpc_dynpool_t *p, const char *scope, const MsgP *m, int syntax,
                            const char *file) {
  char b1[100];
  if (!ident_ok(m->name))
    return fail(p, MPRPC_EINVAL, "file %s: message in %s has a bad name '%s'", file,
                *scope ? scope : "the file", shown(m->name, b1, sizeof b1));
  char *full = join(p, scope, m->name);
  if (!full)
    return NOMEM(p);
  if (strlen(full) > MAX_NAME)
    return fail(p, MPRPC_EINVAL, "file %s: message name %.80s... is longer than %d", file, full,
                MAX_NAME);
  int rc = add_type(p, full, K_MSG, syntax, file, m, NULL);
  for (size_t i = 0; rc == 0 && i < m->n_nested_type; i++)
    rc = register_message(p, full, m->nested_type[i], syntax, file);
  for (size_t i = 0; rc == 0 && i < m->n_enum_type; i++)
    rc = register_enum(p, full, m->enum_type[i], syntax, file);
  return rc;
}

static int cmp_type(const void *a, const void *b) {
  return strcmp(((const type_ent_t *)a)->name, ((const type_ent_t *)b)->name);
}

static type_ent_t *find_type(const mprpc_dynpool_t *p, const char *name) {
  if (name && name[0] == '.')
    name++;
  if (!name || !p->types)
    return NULL;
  type_ent_t key = {.name = name};
  return bsearch(&key, p->types, p->ntypes, sizeof key, cmp_type);
}

/* protoc's scoping: a relative name is looked up from the innermost scope
 * outwards; a leading '.' means fully qualified. */
static type_ent_t *resolve(mprpc_dynpool_t *p, const char *scope, const char *name) {
  if (!name || !*name)
    return NULL;
  if (name[0] == '.')
    return find_type(p, name + 1);
  size_t sl = strlen(scope), nl = strlen(name);
  if (sl + nl + 2 > 2 * MAX_NAME + 2)
    return NULL;
  char buf[2 * MAX_NAME + 2];
  for (;;) {
    if (sl) {
      memcpy(buf, scope, sl);
      buf[sl] = '.';
      memcpy(buf + sl + 1, name, nl + 1);
    } else {
      memcpy(buf, name, nl + 1);
    }
    type_ent_t *t = find_type(p, buf);
    if (t || sl == 0)
      return t;
    while (sl > 0 && scope[sl - 1] != '.')
      sl--;
    if (sl > 0)
      sl--; /* drop the dot */
  }
}

/* ---- enums -------------------------------------------------------------------- */

typedef struct ev {
  const char *name;
  int value;
  unsigned order;
} ev_t;

static int cmp_ev_value(const void *a, const void *b) {
  const ev_t *x = a, *y = b;
  if (x->value != y->value)
    return x->value < y->value ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}
static int cmp_ev_name(const void *a, const void *b) {
  return strcmp(((const ev_t *)a)->name, ((const ev_t *)b)->name);
}
static int cmp_index_name(const void *a, const void *b) {
  return strcmp(((const ProtobufCEnumValueIndex *)a)->name,
                ((const ProtobufCEnumValueIndex *)b)->name);
}

static int build_enum(mprpc_dynpool_t *p, type_ent_t *t) {
  const EnumP *e = t->ep;
  ProtobufCEnumDescriptor *d = t->ed;
  char b1[100];
  if (e->n_value == 0)
    return fail(p, MPRPC_EINVAL, "file %s: enum %s has no values", t->file, t->name);
  if (e->n_value > MAX_VALUES)
    return fail(p, MPRPC_EINVAL, "file %s: enum %s has more than %d values", t->file, t->name,
                MAX_VALUES);
  size_t n = e->n_value;
  ev_t *v = mprpc__mpool_array(&p->pool, n, sizeof *v);
  if (!v)
    return NOMEM(p);
  for (size_t i = 0; i < n; i++) {
    if (!ident_ok(e->value[i]->name))
      return fail(p, MPRPC_EINVAL, "file %s: enum %s: value %zu has a bad name '%s'", t->file,
                  t->name, i, shown(e->value[i]->name, b1, sizeof b1));
    v[i].name = mprpc__mpool_strdup(&p->pool, e->value[i]->name);
    if (!v[i].name)
      return NOMEM(p);
    v[i].value = e->value[i]->has_number ? e->value[i]->number : 0;
    v[i].order = (unsigned)i;
  }
  if (t->syntax == 3 && v[0].value != 0)
    return fail(p, MPRPC_EINVAL, "file %s: proto3 enum %s: the first value must be 0", t->file,
                t->name);
  int first_value = v[0].value;
  qsort(v, n, sizeof *v, cmp_ev_name);
  for (size_t i = 1; i < n; i++)
    if (strcmp(v[i - 1].name, v[i].name) == 0)
      return fail(p, MPRPC_EINVAL, "file %s: enum %s: value name %s appears twice", t->file,
                  t->name, v[i].name);
  qsort(v, n, sizeof *v, cmp_ev_value);
  /* values: unique numbers, the first declared name of each */
  ProtobufCEnumValue *vals = mprpc__mpool_array(&p->pool, n, sizeof *vals);
  ProtobufCEnumValueIndex *byname = mprpc__mpool_array(&p->pool, n, sizeof *byname);
  ProtobufCIntRange *ranges = mprpc__mpool_array(&p->pool, n + 1, sizeof *ranges);
  if (!vals || !byname || !ranges)
    return NOMEM(p);
  unsigned nv = 0, nr = 0;
  for (size_t i = 0; i < n; i++) {
    if (nv == 0 || vals[nv - 1].value != v[i].value) {
      vals[nv].name = v[i].name;
      vals[nv].c_name = v[i].name;
      vals[nv].value = v[i].value;
      /* a new range unless this value continues the previous one */
      if (nv == 0 || (int64_t)vals[nv - 1].value + 1 != (int64_t)v[i].value) {
        ranges[nr].start_value = v[i].value;
        ranges[nr].orig_index = nv;
        nr++;
      }
      nv++;
    }
    byname[i].name = v[i].name;
    byname[i].index = nv - 1;
  }
  ranges[nr].start_value = 0;
  ranges[nr].orig_index = nv;
  qsort(byname, n, sizeof *byname, cmp_index_name);
  d->magic = PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC;
  d->name = t->name;
  const char *dot = strrchr(t->name, '.');
  d->short_name = dot ? dot + 1 : t->name;
  d->c_name = c_name(p, t->name);
  d->n_values = nv;
  d->values = vals;
  d->n_value_names = (unsigned)n;
  d->values_by_name = byname;
  d->n_value_ranges = nr;
  d->value_ranges = ranges;
  /* the first declared value: proto2's default for fields of this type */
  int *fv = mprpc__mpool_alloc(&p->pool, sizeof *fv);
  if (!fv || !d->c_name)
    return NOMEM(p);
  *fv = first_value;
  d->reserved1 = fv;
  return 0;
}

/* ---- messages ------------------------------------------------------------------- */

static size_t type_size(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
  case PROTOBUF_C_TYPE_DOUBLE: return 8;
  case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING:
  case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
  case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
  default: return 4;
  }
}

static size_t align_up(size_t off, size_t a) { return (off + a - 1) & ~(a - 1); }

static int unescape_bytes(mprpc_dynpool_t *p, const char *s, ProtobufCBinaryData *out) {
  size_t n = strlen(s);
  uint8_t *r = mprpc__mpool_alloc(&p->pool, n + 1);
  if (!r)
    return MPRPC_ENOMEM;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '\\') {
      r[o++] = (uint8_t)s[i];
      continue;
    }
    if (++i >= n)
      return MPRPC_EINVAL;
    char c = s[i];
    switch (c) {
    case 'n': r[o++] = '\n'; break;
    case 'r': r[o++] = '\r'; break;
    case 't': r[o++] = '\t'; break;
    case 'a': r[o++] = '\a'; break;
    case 'b': r[o++] = '\b'; break;
    case 'f': r[o++] = '\f'; break;
    case 'v': r[o++] = '\v'; break;
    case '\\': case '\'': case '"': case '?': r[o++] = (uint8_t)c; break;
    case 'x': case 'X': {
      unsigned v = 0, k = 0;
      while (k < 2 && i + 1 < n && strchr("0123456789abcdefABCDEF", s[i + 1]) && s[i + 1]) {
        char h = s[++i];
        v = v * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
        k++;
      }
      if (!k)
        return MPRPC_EINVAL;
      r[o++] = (uint8_t)v;
      break;
    }
    default:
      if (c >= '0' && c <= '7') {
        unsigned v = (unsigned)(c - '0'), k = 1;
        while (k < 3 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7') {
          v = v * 8 + (unsigned)(s[++i] - '0');
          k++;
        }
        if (v > 255)
          return MPRPC_EINVAL;
        r[o++] = (uint8_t)v;
        break;
      }
      return MPRPC_EINVAL;
    }
  }
  out->data = r;
  out->len = o;
  return 0;
}

/* Parses a proto2 default_value for field f into pool memory. */
static int parse_default(mprpc_dynpool_t *p, const ProtobufCFieldDescriptor *f, const char *s,
                         const void **out) {
  char *end = NULL;
  errno = 0;
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64: {
    long long v = strtoll(s, &end, 0);
    if (!*s || *end || errno)
      return MPRPC_EINVAL;
    bool is64 = type_size(f->type) == 8;
    if (!is64 && (v < INT32_MIN || v > INT32_MAX))
      return MPRPC_EINVAL;
    void *m = mprpc__mpool_alloc(&p->pool, 8);
    if (!m)
      return MPRPC_ENOMEM;
    if (is64)
      *(int64_t *)m = v;
    else
      *(int32_t *)m = (int32_t)v;
    *out = m;
    return 0;
  }
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: {
    if (*s == '-')
      return MPRPC_EINVAL;
    unsigned long long v = strtoull(s, &end, 0);
    if (!*s || *end || errno)
      return MPRPC_EINVAL;
    bool is64 = type_size(f->type) == 8;
    if (!is64 && v > UINT32_MAX)
      return MPRPC_EINVAL;
    void *m = mprpc__mpool_alloc(&p->pool, 8);
    if (!m)
      return MPRPC_ENOMEM;
    if (is64)
      *(uint64_t *)m = v;
    else
      *(uint32_t *)m = (uint32_t)v;
    *out = m;
    return 0;
  }
  case PROTOBUF_C_TYPE_FLOAT:
  case PROTOBUF_C_TYPE_DOUBLE: {
    double v;
    if (strcmp(s, "inf") == 0)
      v = INFINITY;
    else if (strcmp(s, "-inf") == 0)
      v = -INFINITY;
    else if (strcmp(s, "nan") == 0)
      v = NAN;
    else {
      v = strtod(s, &end);
      if (!*s || *end)
        return MPRPC_EINVAL;
    }
    void *m = mprpc__mpool_alloc(&p->pool, 8);
    if (!m)
      return MPRPC_ENOMEM;
    if (f->type == PROTOBUF_C_TYPE_FLOAT)
      *(float *)m = (float)v;
    else
      *(double *)m = v;
    *out = m;
    return 0;
  }
  case PROTOBUF_C_TYPE_BOOL: {
    protobuf_c_boolean *m = mprpc__mpool_alloc(&p->pool, sizeof *m);
    if (!m)
      return MPRPC_ENOMEM;
    if (strcmp(s, "true") == 0)
      *m = 1;
    else if (strcmp(s, "false") == 0)
      *m = 0;
    else
      return MPRPC_EINVAL;
    *out = m;
    return 0;
  }
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, s);
    if (!ev)
      return MPRPC_EINVAL;
    *out = &ev->value;
    return 0;
  }
  case PROTOBUF_C_TYPE_STRING: {
    char *m = mprpc__mpool_strdup(&p->pool, s);
    if (!m)
      return MPRPC_ENOMEM;
    *out = m;
    return 0;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    ProtobufCBinaryData *m = mprpc__mpool_alloc(&p->pool, sizeof *m);
    if (!m)
      return MPRPC_ENOMEM;
    int rc = unescape_bytes(p, s, m);
    if (rc)
      return rc;
    *out = m;
    return 0;
  }
  default: return MPRPC_EINVAL;
  }
}

static int cmp_field_id(const void *a, const void *b) {
  uint32_t x = ((const ProtobufCFieldDescriptor *)a)->id, y = ((const ProtobufCFieldDescriptor *)b)->id;
  return x < y ? -1 : x > y;
}

typedef struct name_sort {
  const ProtobufCFieldDescriptor *fields;
  unsigned idx;
} name_sort_t;
static int cmp_name_idx(const void *a, const void *b) {
  const name_sort_t *x = a, *y = b;
  return strcmp(x->fields[x->idx].name, y->fields[y->idx].name);
}

static bool packable(ProtobufCType t) {
  return t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES &&
         t != PROTOBUF_C_TYPE_MESSAGE;
}

/* Per field, what layout needs beyond the ProtobufCFieldDescriptor. */
typedef struct fmeta {
  int oneof;     /* real oneof index, -1 none */
  size_t decl;   /* declaration order */
} fmeta_t;

static int build_message(mprpc_dynpool_t *p, type_ent_t *t) {
  const MsgP *m = t->mp;
  ProtobufCMessageDescriptor *d = t->md;
  const char *tn = t->name, *file = t->file;
  char b1[100], b2[100];
  size_t nf = m->n_field;
  if (nf > MAX_FIELDS)
    return fail(p, MPRPC_EINVAL, "file %s: message %s has more than %d fields", file, tn,
                MAX_FIELDS);
  if (m->n_oneof_decl > nf + 1)
    return fail(p, MPRPC_EINVAL, "file %s: message %s declares %zu oneofs for %zu fields", file,
                tn, m->n_oneof_decl, nf);
  for (size_t i = 0; i < m->n_oneof_decl; i++)
    if (!ident_ok(m->oneof_decl[i]->name))
      return fail(p, MPRPC_EINVAL, "file %s: message %s: oneof %zu has a bad name '%s'", file, tn,
                  i, shown(m->oneof_decl[i]->name, b1, sizeof b1));
  ProtobufCFieldDescriptor *fs = mprpc__mpool_array(&p->pool, nf + 1, sizeof *fs);
  fmeta_t *meta = mprpc__mpool_array(&p->pool, nf + 1, sizeof *meta);
  bool *oneof_real = mprpc__mpool_array(&p->pool, m->n_oneof_decl + 1, sizeof *oneof_real);
  if (!fs || !meta || !oneof_real)
    return NOMEM(p);

  for (size_t i = 0; i < nf; i++) {
    const FieldP *fp = m->field[i];
    ProtobufCFieldDescriptor *f = &fs[i];
    if (!ident_ok(fp->name))
      return fail(p, MPRPC_EINVAL, "file %s: message %s: field %zu has a bad name '%s'", file, tn,
                  i, shown(fp->name, b1, sizeof b1));
    const char *fn = fp->name;
    f->name = mprpc__mpool_strdup(&p->pool, fn);
    if (!f->name)
      return NOMEM(p);
    if (!fp->has_number || fp->number < 1 || fp->number > MAX_FIELD_NUMBER)
      return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: number %d is outside 1..%d", file, tn,
                  fn, fp->has_number ? fp->number : 0, MAX_FIELD_NUMBER);
    f->id = (uint32_t)fp->number;
    int label = fp->has_label ? (int)fp->label : 1;
    if (label < 1 || label > 3)
      return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: unknown label %d", file, tn, fn, label);
    /* type: given, or implied by what type_name names */
    type_ent_t *ref = NULL;
    if (fp->type_name) {
      ref = resolve(p, tn, fp->type_name);
      if (!ref)
        return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: unknown type '%s'", file, tn, fn,
                    shown(fp->type_name, b1, sizeof b1));
    }
    int fdp_type = fp->has_type ? (int)fp->type : 0;
    if (!fp->has_type) {
      if (!ref)
        return fail(p, MPRPC_EINVAL, "file %s: field %s.%s has neither type nor type_name", file,
                    tn, fn);
      fdp_type = ref->kind == K_MSG ? 11 : 14;
    }
    if (fdp_type == 10)
      return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: groups are not supported", file, tn, fn);
    int pt = mprpc__pbtype_from_fdp(fdp_type);
    if (pt < 0)
      return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: unknown type %d", file, tn, fn,
                  fdp_type);
    f->type = (ProtobufCType)pt;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_ENUM) {
      if (!ref)
        return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: %s field without type_name", file, tn,
                    fn, mprpc__pbtype_name(f->type));
      if ((f->type == PROTOBUF_C_TYPE_MESSAGE) != (ref->kind == K_MSG))
        return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: type_name %s is %s, type says %s", file,
                    tn, fn, ref->name, ref->kind == K_MSG ? "a message" : "an enum",
                    mprpc__pbtype_name(f->type));
      f->descriptor = ref->kind == K_MSG ? (const void *)ref->md : (const void *)ref->ed;
    } else if (ref) {
      return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: type %s takes no type_name (got %s)",
                  file, tn, fn, mprpc__pbtype_name(f->type), shown(fp->type_name, b1, sizeof b1));
    }
    meta[i].decl = i;
    meta[i].oneof = -1;
    bool p3opt = fp->has_proto3_optional && fp->proto3_optional;
    if (fp->has_oneof_index) {
      if (fp->oneof_index < 0 || (size_t)fp->oneof_index >= m->n_oneof_decl)
        return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: oneof_index %d out of range (%zu oneofs)",
                    file, tn, fn, fp->oneof_index, m->n_oneof_decl);
      if (label != 1)
        return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: a oneof member must be optional",
                    file, tn, fn);
      if (!p3opt) {
        meta[i].oneof = fp->oneof_index;
        oneof_real[fp->oneof_index] = true;
      }
    } else if (p3opt) {
      return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: proto3_optional without its oneof", file,
                  tn, fn);
    }
    if (t->syntax == 3 && label == 2)
      return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: proto3 has no required fields", file, tn,
                  fn);
    if (label == 2)
      f->label = PROTOBUF_C_LABEL_REQUIRED;
    else if (label == 3)
      f->label = PROTOBUF_C_LABEL_REPEATED;
    else if (t->syntax == 3 && !p3opt)
      f->label = PROTOBUF_C_LABEL_NONE;
    else
      f->label = PROTOBUF_C_LABEL_OPTIONAL;
    if (meta[i].oneof >= 0)
      f->flags |= PROTOBUF_C_FIELD_FLAG_ONEOF;
    if (fp->options && fp->options->has_deprecated && fp->options->deprecated)
      f->flags |= PROTOBUF_C_FIELD_FLAG_DEPRECATED;
    if (f->label == PROTOBUF_C_LABEL_REPEATED && packable(f->type)) {
      bool has = fp->options && fp->options->has_packed;
      if (has ? fp->options->packed : t->syntax == 3)
        f->flags |= PROTOBUF_C_FIELD_FLAG_PACKED;
    }
    if (fp->json_name && (strlen(fp->json_name) > MAX_NAME || !*fp->json_name))
      return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: bad json_name", file, tn, fn);
    /* defaults */
    if (fp->default_value) {
      if (t->syntax == 3)
        return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: proto3 fields have no defaults", file,
                    tn, fn);
      if (f->label == PROTOBUF_C_LABEL_REPEATED || f->type == PROTOBUF_C_TYPE_MESSAGE)
        return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: a %s field takes no default", file, tn,
                    fn, f->label == PROTOBUF_C_LABEL_REPEATED ? "repeated" : "message");
      int rc = parse_default(p, f, fp->default_value, &f->default_value);
      if (rc == MPRPC_ENOMEM)
        return NOMEM(p);
      if (rc)
        return fail(p, MPRPC_EINVAL, "file %s: field %s.%s: bad %s default '%s'", file, tn, fn,
                    mprpc__pbtype_name(f->type), shown(fp->default_value, b2, sizeof b2));
    } else if (f->type == PROTOBUF_C_TYPE_STRING && f->label == PROTOBUF_C_LABEL_NONE) {
      f->default_value = protobuf_c_empty_string; /* as protoc-c writes proto3 strings */
    } else if (f->type == PROTOBUF_C_TYPE_ENUM && t->syntax == 2 &&
               f->label != PROTOBUF_C_LABEL_REPEATED && meta[i].oneof < 0) {
      f->default_value = ((const ProtobufCEnumDescriptor *)f->descriptor)->reserved1;
    }
  }

  /* layout, in declaration order: plain fields, then each oneof */
  size_t off = sizeof(ProtobufCMessage);
  for (size_t i = 0; i < nf; i++) {
    ProtobufCFieldDescriptor *f = &fs[i];
    if (meta[i].oneof >= 0)
      continue;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      off = align_up(off, sizeof(size_t));
      f->quantifier_offset = (unsigned)off;
      off += sizeof(size_t);
      off = align_up(off, sizeof(void *));
      f->offset = (unsigned)off;
      off += sizeof(void *);
      continue;
    }
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
        f->type != PROTOBUF_C_TYPE_MESSAGE) {
      off = align_up(off, sizeof(protobuf_c_boolean));
      f->quantifier_offset = (unsigned)off;
      off += sizeof(protobuf_c_boolean);
    }
    size_t sz = type_size(f->type);
    off = align_up(off, sz >= 8 ? 8 : sz);
    f->offset = (unsigned)off;
    off += sz;
  }
  for (size_t o = 0; o < m->n_oneof_decl; o++) {
    if (!oneof_real[o])
      continue;
    off = align_up(off, 4);
    size_t case_off = off;
    off += 4;
    off = align_up(off, 8);
    size_t uoff = off;
    off += sizeof(ProtobufCBinaryData); /* the largest member */
    for (size_t i = 0; i < nf; i++)
      if (meta[i].oneof == (int)o) {
        fs[i].quantifier_offset = (unsigned)case_off;
        fs[i].offset = (unsigned)uoff;
      }
  }
  off = align_up(off, 8);

  /* by number: duplicates are errors; then ranges and the name index */
  qsort(fs, nf, sizeof *fs, cmp_field_id);
  for (size_t i = 1; i < nf; i++)
    if (fs[i - 1].id == fs[i].id)
      return fail(p, MPRPC_EINVAL, "file %s: message %s: fields %s and %s both have number %u",
                  file, tn, fs[i - 1].name, fs[i].name, fs[i].id);
  ProtobufCIntRange *ranges = mprpc__mpool_array(&p->pool, nf + 1, sizeof *ranges);
  name_sort_t *ns = mprpc__mpool_array(&p->pool, nf + 1, sizeof *ns);
  unsigned *byname = mprpc__mpool_array(&p->pool, nf + 1, sizeof *byname);
  if (!ranges || !ns || !byname)
    return NOMEM(p);
  unsigned nr = 0;
  for (size_t i = 0; i < nf; i++)
    if (i == 0 || fs[i - 1].id + 1 != fs[i].id) {
      ranges[nr].start_value = (int)fs[i].id;
      ranges[nr].orig_index = (unsigned)i;
      nr++;
    }
  ranges[nr].start_value = 0;
  ranges[nr].orig_index = (unsigned)nf;
  for (size_t i = 0; i < nf; i++) {
    ns[i].fields = fs;
    ns[i].idx = (unsigned)i;
  }
  qsort(ns, nf, sizeof *ns, cmp_name_idx);
  for (size_t i = 0; i < nf; i++) {
    if (i && strcmp(fs[ns[i - 1].idx].name, fs[ns[i].idx].name) == 0)
      return fail(p, MPRPC_EINVAL, "file %s: message %s: field name %s appears twice", file, tn,
                  fs[ns[i].idx].name);
    byname[i] = ns[i].idx;
  }

  d->magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC;
  d->name = tn;
  const char *dot = strrchr(tn, '.');
  d->short_name = dot ? dot + 1 : tn;
  d->c_name = c_name(p, tn);
  d->sizeof_message = off;
  d->n_fields = (unsigned)nf;
  d->fields = fs;
  d->fields_sorted_by_name = byname;
  d->n_field_ranges = nr;
  d->field_ranges = ranges;
  d->reserved1 = (void *)&dyn_marker;
  d->reserved2 = p;
  d->reserved3 = (void *)(intptr_t)t->syntax;
  if (!d->c_name)
    return NOMEM(p);
  return 0;
}

/* ---- services --------------------------------------------------------------------- */

static int cmp_method_name(const void *a, const void *b, void *ctx) {
  const ProtobufCMethodDescriptor *ms = ctx;
  return strcmp(ms[*(const unsigned *)a].name, ms[*(const unsigned *)b].name);
}

static int build_service(mprpc_dynpool_t *p, const char *pkg, const SvcP *s, const char *file) {
  char b1[100], b2[100];
  if (!ident_ok(s->name))
    return fail(p, MPRPC_EINVAL, "file %s: service with a bad name '%s'", file,
                shown(s->name, b1, sizeof b1));
  char *full = join(p, pkg, s->name);
  if (!full)
    return NOMEM(p);
  for (size_t i = 0; i < p->nsvcs; i++)
    if (strcmp(p->svcs[i]->name, full) == 0)
      return fail(p, MPRPC_EINVAL, "file %s: service %s is declared twice", file, full);
  if (s->n_method > MAX_METHODS)
    return fail(p, MPRPC_EINVAL, "file %s: service %s has more than %d methods", file, full,
                MAX_METHODS);
  size_t nm = s->n_method;
  ProtobufCServiceDescriptor *d = mprpc__mpool_alloc(&p->pool, sizeof *d);
  ProtobufCMethodDescriptor *ms = mprpc__mpool_array(&p->pool, nm + 1, sizeof *ms);
  unsigned *idx = mprpc__mpool_array(&p->pool, nm + 1, sizeof *idx);
  if (!d || !ms || !idx)
    return NOMEM(p);
  for (size_t i = 0; i < nm; i++) {
    const Google__Protobuf__MethodDescriptorProto *mp = s->method[i];
    if (!ident_ok(mp->name))
      return fail(p, MPRPC_EINVAL, "file %s: service %s: method %zu has a bad name '%s'", file,
                  full, i, shown(mp->name, b1, sizeof b1));
    ms[i].name = mprpc__mpool_strdup(&p->pool, mp->name);
    if (!ms[i].name)
      return NOMEM(p);
    type_ent_t *in = resolve(p, pkg, mp->input_type), *out = resolve(p, pkg, mp->output_type);
    if (!in || in->kind != K_MSG)
      return fail(p, MPRPC_EINVAL, "file %s: method %s.%s: input type '%s' is not a known message",
                  file, full, mp->name, shown(mp->input_type, b2, sizeof b2));
    if (!out || out->kind != K_MSG)
      return fail(p, MPRPC_EINVAL, "file %s: method %s.%s: output type '%s' is not a known message",
                  file, full, mp->name, shown(mp->output_type, b2, sizeof b2));
    ms[i].input = in->md;
    ms[i].output = out->md;
    idx[i] = (unsigned)i;
  }
  qsort_r(idx, nm, sizeof *idx, cmp_method_name, ms);
  for (size_t i = 1; i < nm; i++)
    if (strcmp(ms[idx[i - 1]].name, ms[idx[i]].name) == 0)
      return fail(p, MPRPC_EINVAL, "file %s: service %s: method %s appears twice", file, full,
                  ms[idx[i]].name);
  d->magic = PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC;
  d->name = full;
  d->short_name = full + (strlen(full) - strlen(s->name));
  d->c_name = c_name(p, full);
  d->package = mprpc__mpool_strdup(&p->pool, pkg);
  d->n_methods = (unsigned)nm;
  d->methods = ms;
  d->method_indices_by_name = idx;
  if (!d->c_name || !d->package)
    return NOMEM(p);
  p->svcs[p->nsvcs++] = d;
  return 0;
}

/* ---- the pool ---------------------------------------------------------------------- */

static int file_syntax(mprpc_dynpool_t *p, const FileP *f, const char *fname, int *out) {
  char b1[100];
  if (!f->syntax || !*f->syntax || strcmp(f->syntax, "proto2") == 0)
    *out = 2;
  else if (strcmp(f->syntax, "proto3") == 0)
    *out = 3;
  else
    return fail(p, MPRPC_EINVAL, "file %s: syntax '%s' is not supported (proto2 or proto3)", fname,
                shown(f->syntax, b1, sizeof b1));
  return 0;
}

static const char *file_name(mprpc_dynpool_t *p, const FileP *f, size_t i) {
  char b1[100], tmp[64];
  if (f->name && *f->name)
    return mprpc__mpool_strdup(&p->pool, shown(f->name, b1, sizeof b1));
  snprintf(tmp, sizeof tmp, "#%zu", i);
  return mprpc__mpool_strdup(&p->pool, tmp);
}

static int build(mprpc_dynpool_t *p, const SetP *set) {
  int rc = 0;
  char b1[100];
  const char **fnames = mprpc__mpool_array(&p->pool, set->n_file + 1, sizeof *fnames);
  int *fsyn = mprpc__mpool_array(&p->pool, set->n_file + 1, sizeof *fsyn);
  if (!fnames || !fsyn)
    return NOMEM(p);
  size_t nsvc = 0;
  for (size_t i = 0; i < set->n_file && rc == 0; i++) {
    const FileP *f = set->file[i];
    fnames[i] = file_name(p, f, i);
    if (!fnames[i])
      return NOMEM(p);
    const char *pkg = f->package ? f->package : "";
    if (!package_ok(pkg))
      return fail(p, MPRPC_EINVAL, "file %s: bad package name '%s'", fnames[i],
                  shown(pkg, b1, sizeof b1));
    rc = file_syntax(p, f, fnames[i], &fsyn[i]);
    for (size_t k = 0; rc == 0 && k < f->n_message_type; k++)
      rc = register_message(p, pkg, f->message_type[k], fsyn[i], fnames[i]);
    for (size_t k = 0; rc == 0 && k < f->n_enum_type; k++)
      rc = register_enum(p, pkg, f->enum_type[k], fsyn[i], fnames[i]);
    nsvc += f->n_service;
  }
  if (rc)
    return rc;
  /* set order, for enumeration, before sorting by name */
  p->msgs = mprpc__mpool_array(&p->pool, p->ntypes + 1, sizeof *p->msgs);
  p->slots = mprpc__mpool_array(&p->pool, p->ntypes + 1, sizeof *p->slots);
  p->svcs = mprpc__mpool_array(&p->pool, nsvc + 1, sizeof *p->svcs);
  if (!p->msgs || !p->slots || !p->svcs)
    return NOMEM(p);
  for (size_t i = 0; i < p->ntypes; i++) {
    type_ent_t *t = &p->types[i];
    if (t->kind == K_MSG) {
      t->md = mprpc__mpool_alloc(&p->pool, sizeof *t->md);
      if (!t->md)
        return NOMEM(p);
      p->slots[p->nmsgs] = -1;
      p->msgs[p->nmsgs++] = t->md;
    } else {
      t->ed = mprpc__mpool_alloc(&p->pool, sizeof *t->ed);
      if (!t->ed)
        return NOMEM(p);
    }
  }
  if (p->ntypes)
    qsort(p->types, p->ntypes, sizeof *p->types, cmp_type);
  for (size_t i = 1; i < p->ntypes; i++)
    if (strcmp(p->types[i - 1].name, p->types[i].name) == 0)
      return fail(p, MPRPC_EINVAL, "type %s is declared twice (files %s and %s)", p->types[i].name,
                  p->types[i - 1].file, p->types[i].file);
  for (size_t i = 0; i < p->ntypes && rc == 0; i++)
    if (p->types[i].kind == K_ENUM)
      rc = build_enum(p, &p->types[i]);
  for (size_t i = 0; i < p->ntypes && rc == 0; i++)
    if (p->types[i].kind == K_MSG)
      rc = build_message(p, &p->types[i]);
  for (size_t i = 0; i < set->n_file && rc == 0; i++) {
    const FileP *f = set->file[i];
    for (size_t k = 0; rc == 0 && k < f->n_service; k++)
      rc = build_service(p, f->package ? f->package : "", f->service[k], fnames[i]);
  }
  if (rc)
    return rc;
  for (size_t i = 0; i < p->nmsgs; i++) {
    p->slots[i] = slot_claim(p->msgs[i]);
    p->msgs[i]->message_init = p->slots[i] >= 0 ? g_tramp[p->slots[i]] : NULL;
  }
  return 0;
}

int mprpc_dynpool_new(const uint8_t *fds, size_t len, mprpc_dynpool_t **out, char *err,
                      size_t errlen) {
  if (err && errlen)
    err[0] = 0;
  if (!out || (!fds && len))
    return MPRPC_EINVAL;
  *out = NULL;
  mprpc_dynpool_t *p = calloc(1, sizeof *p);
  if (!p)
    return MPRPC_ENOMEM;
  p->err = err;
  p->errlen = errlen;
  mprpc__mpool_init(&p->pool, 0);
  int rc;
  SetP *set = NULL;
  mprpc__capped_alloc_t ca;
  mprpc__capped_alloc_init(&ca, 128 * (size_t)len + (1u << 20));
  if (len > MPRPC_DYNPOOL_MAX_BYTES) {
    rc = fail(p, MPRPC_EINVAL, "descriptor set of %zu bytes is over the %u byte limit", len,
              MPRPC_DYNPOOL_MAX_BYTES);
    goto fail;
  }
  if (!mprpc__pb_depth_ok(&google__protobuf__file_descriptor_set__descriptor, fds, len,
                          MAX_DEPTH)) {
    rc = fail(p, MPRPC_EINVAL, "descriptor set nests messages more than %d deep", MAX_DEPTH);
    goto fail;
  }
  set = google__protobuf__file_descriptor_set__unpack(&ca.base, len, fds);
  if (!set) {
    rc = fail(p, MPRPC_EINVAL,
              "%zu bytes do not parse as a google.protobuf.FileDescriptorSet", len);
    goto fail;
  }
  rc = build(p, set);
  if (rc)
    goto fail;
  google__protobuf__file_descriptor_set__free_unpacked(set, &ca.base);
  p->err = NULL;
  p->errlen = 0;
  *out = p;
  return 0;
fail:
  if (set)
    google__protobuf__file_descriptor_set__free_unpacked(set, &ca.base);
  mprpc_dynpool_free(p);
  return rc;
}

void mprpc_dynpool_free(mprpc_dynpool_t *p) {
  if (!p)
    return;
  for (size_t i = 0; p->slots && i < p->nmsgs; i++)
    slot_release(p->slots[i]);
  mprpc__mpool_release(&p->pool);
  free(p);
}

const ProtobufCMessageDescriptor *mprpc_dynpool_message(const mprpc_dynpool_t *p,
                                                        const char *name) {
  const type_ent_t *t = p ? find_type(p, name) : NULL;
  return t && t->kind == K_MSG ? t->md : NULL;
}

const ProtobufCEnumDescriptor *mprpc_dynpool_enum(const mprpc_dynpool_t *p, const char *name) {
  const type_ent_t *t = p ? find_type(p, name) : NULL;
  return t && t->kind == K_ENUM ? t->ed : NULL;
}

const ProtobufCServiceDescriptor *mprpc_dynpool_service(const mprpc_dynpool_t *p,
                                                        const char *name) {
  if (!p || !name)
    return NULL;
  if (name[0] == '.')
    name++;
  for (size_t i = 0; i < p->nsvcs; i++)
    if (strcmp(p->svcs[i]->name, name) == 0)
      return p->svcs[i];
  return NULL;
}

size_t mprpc_dynpool_message_count(const mprpc_dynpool_t *p) { return p ? p->nmsgs : 0; }

const ProtobufCMessageDescriptor *mprpc_dynpool_message_at(const mprpc_dynpool_t *p, size_t i) {
  return p && i < p->nmsgs ? p->msgs[i] : NULL;
}

size_t mprpc_dynpool_service_count(const mprpc_dynpool_t *p) { return p ? p->nsvcs : 0; }

const ProtobufCServiceDescriptor *mprpc_dynpool_service_at(const mprpc_dynpool_t *p, size_t i) {
  return p && i < p->nsvcs ? p->svcs[i] : NULL;
}

int mprpc_dynpool_syntax(const mprpc_dynpool_t *p, const ProtobufCMessageDescriptor *d) {
  if (!p || !d || !is_dynamic(d) || d->reserved2 != (const void *)p)
    return 0;
  return (int)(intptr_t)d->reserved3;
}
