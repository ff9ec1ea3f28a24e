/*
 * JSON <-> protobuf-c messages (include/mprpc/json.h, docs/json.md).
 *
 * The only file that includes <jansson.h>: jansson parses the text into a
 * tree, which is walked against the message descriptor. Output does not use
 * jansson: the writer below owns number formatting (shortest text that reads
 * back to the same float or double, which jansson's fixed precision does not
 * give) and the field order.
 *
 * Memory. Everything a parse allocates, the jansson tree included, goes
 * through the caller's ProtobufCAllocator, so a test's failing allocator
 * reaches every allocation. jansson only has process-wide allocation hooks;
 * the first parse installs hooks that forward to the allocator of the parse
 * running on the calling thread (a thread-local pointer) and otherwise to
 * whatever hooks were installed before, so other jansson users in the
 * process are unaffected.
 */
#include "mprpc/json.h"

#include <float.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"

/* ------------------------------------------------------------------------ */
/* allocation                                                               */

static void *sys_alloc(void *data, size_t n) {
  (void)data;
  return malloc(n);
}

static void sys_free(void *data, void *p) {
  (void)data;
  free(p);
}

/* The same as protobuf-c's own default (malloc/free), which is not exported. */
static ProtobufCAllocator default_alloc = {sys_alloc, sys_free, NULL};

static _Thread_local ProtobufCAllocator *tl_alloc;
static _Thread_local int tl_oom;
static json_malloc_t prev_malloc;
static json_free_t prev_free;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

static void *hook_malloc(size_t n) {
  ProtobufCAllocator *a = tl_alloc;
  if (!a)
    return prev_malloc(n);
  void *p = a->alloc(a->allocator_data, n);
  if (!p)
    tl_oom = 1;
  return p;
}

static void hook_free(void *p) {
  ProtobufCAllocator *a = tl_alloc;
  if (!p)
    return;
  if (a)
    a->free(a->allocator_data, p);
  else
    prev_free(p);
}

static void install_hooks(void) {
  json_get_alloc_funcs(&prev_malloc, &prev_free);
  if (!prev_malloc || !prev_free) {
    prev_malloc = malloc;
    prev_free = free;
  }
  json_set_alloc_funcs(hook_malloc, hook_free);
}

/* ------------------------------------------------------------------------ */
/* descriptor helpers                                                       */

#define MEMBER(msg, off) ((void *)((char *)(msg) + (off)))
#define CMEMBER(msg, off) ((const void *)((const char *)(msg) + (off)))

static size_t elem_size(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    return 4;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    return 8;
  case PROTOBUF_C_TYPE_FLOAT:
    return sizeof(float);
  case PROTOBUF_C_TYPE_DOUBLE:
    return sizeof(double);
  case PROTOBUF_C_TYPE_BOOL:
    return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_ENUM:
    return sizeof(int);
  case PROTOBUF_C_TYPE_STRING:
    return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES:
    return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE:
    return sizeof(ProtobufCMessage *);
  }
  return 0;
}

static const char *type_name(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT32: return "int32";
  case PROTOBUF_C_TYPE_SINT32: return "sint32";
  case PROTOBUF_C_TYPE_SFIXED32: return "sfixed32";
  case PROTOBUF_C_TYPE_UINT32: return "uint32";
  case PROTOBUF_C_TYPE_FIXED32: return "fixed32";
  case PROTOBUF_C_TYPE_INT64: return "int64";
  case PROTOBUF_C_TYPE_SINT64: return "sint64";
  case PROTOBUF_C_TYPE_SFIXED64: return "sfixed64";
  case PROTOBUF_C_TYPE_UINT64: return "uint64";
  case PROTOBUF_C_TYPE_FIXED64: return "fixed64";
  case PROTOBUF_C_TYPE_FLOAT: return "float";
  case PROTOBUF_C_TYPE_DOUBLE: return "double";
  case PROTOBUF_C_TYPE_BOOL: return "bool";
  case PROTOBUF_C_TYPE_ENUM: return "enum";
  case PROTOBUF_C_TYPE_STRING: return "string";
  case PROTOBUF_C_TYPE_BYTES: return "bytes";
  case PROTOBUF_C_TYPE_MESSAGE: return "message";
  }
  return "?";
}

/* Strings and messages mark presence by a non-NULL pointer (protobuf-c has
 * no has_ member for them); every other optional scalar has one. */
static int has_pointer_presence(ProtobufCType t) {
  return t == PROTOBUF_C_TYPE_STRING || t == PROTOBUF_C_TYPE_MESSAGE;
}

/* protobuf-c 1.4 does not flag map entry messages; protoc generates them as
 * a nested `<Name>Entry` with exactly key = 1 and value = 2, and the key is
 * an integer, bool or string. A hand-written message of that exact shape
 * used as a repeated field is read as a map too (docs/json.md). */
static int is_map_field(const ProtobufCFieldDescriptor *f) {
  if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
    return 0;
  const ProtobufCMessageDescriptor *e = f->descriptor;
  if (!e || e->n_fields != 2 || !e->name)
    return 0;
  size_t nl = strlen(e->name);
  if (nl < 5 || strcmp(e->name + nl - 5, "Entry") != 0)
    return 0;
  const ProtobufCFieldDescriptor *k = &e->fields[0], *v = &e->fields[1];
  if (k->id != 1 || v->id != 2 || strcmp(k->name, "key") != 0 || strcmp(v->name, "value") != 0)
    return 0;
  if (k->label == PROTOBUF_C_LABEL_REPEATED || v->label == PROTOBUF_C_LABEL_REPEATED)
    return 0;
  switch (k->type) {
  case PROTOBUF_C_TYPE_FLOAT:
  case PROTOBUF_C_TYPE_DOUBLE:
  case PROTOBUF_C_TYPE_BYTES:
  case PROTOBUF_C_TYPE_ENUM:
  case PROTOBUF_C_TYPE_MESSAGE:
    return 0;
  default:
    return 1;
  }
}

size_t mprpc_json_name(const char *name, char *buf, size_t buflen) {
  size_t n = 0;
  int up = 0;
  for (const char *p = name; *p; p++) {
    if (*p == '_') {
      up = 1;
      continue;
    }
    char ch = *p;
    if (up && ch >= 'a' && ch <= 'z')
      ch = (char)(ch - 'a' + 'A');
    up = 0;
    if (n + 1 < buflen)
      buf[n] = ch;
    n++;
  }
  if (buflen)
    buf[n < buflen ? n : buflen - 1] = 0;
  return n;
}

/* key == the lowerCamelCase form of name, without building it. */
static int camel_eq(const char *name, const char *key) {
  int up = 0;
  for (const char *p = name; *p; p++) {
    if (*p == '_') {
      up = 1;
      continue;
    }
    char ch = *p;
    if (up && ch >= 'a' && ch <= 'z')
      ch = (char)(ch - 'a' + 'A');
    up = 0;
    if (*key++ != ch)
      return 0;
  }
  return *key == 0;
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d,
                                                  const char *key) {
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
  if (f)
    return f;
  for (unsigned i = 0; i < d->n_fields; i++)
    if (camel_eq(d->fields[i].name, key))
      return &d->fields[i];
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* float <-> double, shared by the reader and the writer                    */

/* A double read for a float field: values that round to a finite float are
 * taken (FLT_MAX's shortest text, 3.4028235e38, is itself above FLT_MAX);
 * beyond that it is out of range. Avoids the undefined out-of-range cast. */
static int double_to_float(double d, float *out) {
  if (isnan(d) || isinf(d) || fabs(d) <= FLT_MAX) {
    *out = (float)d;
    return 0;
  }
  if (fabs(d) < (double)FLT_MAX + 0x1p103) {
    *out = d < 0 ? -FLT_MAX : FLT_MAX;
    return 0;
  }
  return -1;
}

/* ------------------------------------------------------------------------ */
/* parsing: context, path and errors                                        */

enum { SEG_FIELD, SEG_INDEX, SEG_KEY };

typedef struct {
  int kind;
  const char *s;
  size_t index;
} seg_t;

#define MAX_SEGS (3 * MPRPC_JSON_MAX_DEPTH + 8)

typedef struct {
  ProtobufCAllocator *a;
  int oom;
  int depth;
  int nseg;
  seg_t seg[MAX_SEGS];
  char *err;
  size_t errlen;
} pctx_t;

static void push(pctx_t *c, int kind, const char *s, size_t index) {
  /* The depth limit keeps nseg far below MAX_SEGS; past it the path is
   * only shortened, never overrun. */
  if (c->nseg < MAX_SEGS)
    c->seg[c->nseg] = (seg_t){kind, s, index};
  c->nseg++;
}

static void pop(pctx_t *c) { c->nseg--; }

static void errcat(pctx_t *c, size_t *off, const char *fmt, ...) {
  if (*off + 1 >= c->errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(c->err + *off, c->errlen - *off, fmt, ap);
  va_end(ap);
  if (n > 0)
    *off += (size_t)n < c->errlen - *off ? (size_t)n : c->errlen - *off - 1;
}

__attribute__((format(printf, 2, 3))) static int fail(pctx_t *c, const char *fmt, ...) {
  if (!c->err || !c->errlen)
    return MPRPC_EINVAL;
  size_t off = 0;
  int n = c->nseg < MAX_SEGS ? c->nseg : MAX_SEGS;
  for (int i = 0; i < n; i++) {
    const seg_t *s = &c->seg[i];
    if (s->kind == SEG_FIELD)
      errcat(c, &off, i ? ".%s" : "%s", s->s);
    else if (s->kind == SEG_INDEX)
      errcat(c, &off, "[%zu]", s->index);
    else
      errcat(c, &off, "[\"%s\"]", s->s);
  }
  if (n)
    errcat(c, &off, ": ");
  va_list ap;
  va_start(ap, fmt);
  if (off + 1 < c->errlen)
    vsnprintf(c->err + off, c->errlen - off, fmt, ap);
  va_end(ap);
  return MPRPC_EINVAL;
}

static void *c_alloc(pctx_t *c, size_t n) {
  void *p = c->a->alloc(c->a->allocator_data, n);
  if (!p)
    c->oom = 1;
  return p;
}

static int nomem(pctx_t *c) {
  c->oom = 1;
  return MPRPC_ENOMEM;
}

/* ------------------------------------------------------------------------ */
/* parsing: scalars                                                         */

/* Decimal integer text: optional '-', at least one digit, nothing else.
 * Returns 0, -1 (not an integer) or -2 (more than 64 bits). */
static int scan_int(const char *s, size_t n, int *neg, uint64_t *mag) {
  size_t i = 0;
  *neg = 0;
  *mag = 0;
  if (i < n && s[i] == '-') {
    *neg = 1;
    i++;
  }
  if (i == n)
    return -1;
  int big = 0;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    unsigned dgt = (unsigned)(s[i] - '0');
    if (*mag > (UINT64_MAX - dgt) / 10)
      big = 1;
    else
      *mag = *mag * 10 + dgt;
  }
  return big ? -2 : 0;
}

/* Any JSON integer form (number, integral real such as 1e3, decimal
 * string) of the field's type, range-checked, as sign and magnitude. */
static int get_integer(pctx_t *c, json_t *v, ProtobufCType t, int *neg, uint64_t *mag) {
  if (json_is_integer(v)) {
    json_int_t x = json_integer_value(v);
    *neg = x < 0;
    *mag = x < 0 ? (uint64_t)(-(x + 1)) + 1 : (uint64_t)x;
  } else if (json_is_real(v)) {
    double d = json_real_value(v);
    if (!isfinite(d) || d != floor(d))
      return fail(c, "expected integer");
    *neg = d < 0;
    double ad = fabs(d);
    if (ad >= 18446744073709551616.0)
      return fail(c, "value out of range for %s", type_name(t));
    *mag = (uint64_t)ad;
  } else if (json_is_string(v)) {
    int r = scan_int(json_string_value(v), json_string_length(v), neg, mag);
    if (r == -1)
      return fail(c, "expected integer");
    if (r == -2)
      return fail(c, "value out of range for %s", type_name(t));
  } else {
    return fail(c, "expected integer");
  }
  uint64_t max_pos, max_neg;
  switch (t) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_ENUM:
    max_pos = INT32_MAX;
    max_neg = (uint64_t)INT32_MAX + 1;
    break;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    max_pos = UINT32_MAX;
    max_neg = 0;
    break;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    max_pos = UINT64_MAX;
    max_neg = 0;
    break;
  default:
    max_pos = INT64_MAX;
    max_neg = (uint64_t)INT64_MAX + 1;
    break;
  }
  if (*mag > (*neg ? max_neg : max_pos))
    return fail(c, "value out of range for %s", type_name(t));
  if (*mag == 0)
    *neg = 0; /* "-0" */
  return 0;
}

static int64_t to_signed(int neg, uint64_t mag) {
  if (!neg)
    return (int64_t)mag;
  return mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
}

/* JSON number grammar, so strtod's extras (hex, "inf", spaces) stay out. */
static int is_json_number(const char *s, size_t n) {
  size_t i = 0;
  if (i < n && s[i] == '-')
    i++;
  if (i == n || s[i] < '0' || s[i] > '9')
    return 0;
  if (s[i] == '0')
    i++;
  else
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
  if (i < n && s[i] == '.') {
    i++;
    if (i == n || s[i] < '0' || s[i] > '9')
      return 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-'))
      i++;
    if (i == n || s[i] < '0' || s[i] > '9')
      return 0;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
  }
  return i == n;
}

static int get_double(pctx_t *c, json_t *v, ProtobufCType t, double *out) {
  if (json_is_integer(v)) {
    *out = (double)json_integer_value(v);
  } else if (json_is_real(v)) {
    *out = json_real_value(v);
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (strcmp(s, "NaN") == 0)
      *out = NAN;
    else if (strcmp(s, "Infinity") == 0)
      *out = INFINITY;
    else if (strcmp(s, "-Infinity") == 0)
      *out = -INFINITY;
    else if (is_json_number(s, n)) {
      *out = strtod(s, NULL);
      if (isinf(*out))
        return fail(c, "value out of range for %s", type_name(t));
    } else
      return fail(c, "expected number");
  } else {
    return fail(c, "expected number");
  }
  return 0;
}

static int b64val(unsigned char ch) {
  if (ch >= 'A' && ch <= 'Z')
    return ch - 'A';
  if (ch >= 'a' && ch <= 'z')
    return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9')
    return ch - '0' + 52;
  if (ch == '+' || ch == '-')
    return 62;
  if (ch == '/' || ch == '_')
    return 63;
  return -1;
}

/* Standard or URL-safe alphabet, padding optional (but if present, it
 * completes the last quantum). */
static int get_bytes(pctx_t *c, json_t *v, ProtobufCBinaryData *out) {
  if (!json_is_string(v))
    return fail(c, "expected base64 string");
  const unsigned char *s = (const unsigned char *)json_string_value(v);
  size_t n = json_string_length(v), pad = 0;
  while (n > 0 && s[n - 1] == '=' && pad < 2) {
    n--;
    pad++;
  }
  if (n % 4 == 1 || (pad && (n + pad) % 4 != 0))
    return fail(c, "invalid base64");
  for (size_t i = 0; i < n; i++)
    if (b64val(s[i]) < 0)
      return fail(c, "invalid base64");
  size_t olen = n / 4 * 3 + (n % 4 == 3 ? 2 : n % 4 == 2 ? 1 : 0);
  out->len = 0;
  out->data = NULL;
  if (olen == 0)
    return 0;
  uint8_t *p = c_alloc(c, olen);
  if (!p)
    return nomem(c);
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    acc = (acc << 6) | (uint32_t)b64val(s[i]);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      p[o++] = (uint8_t)(acc >> bits);
    }
  }
  out->len = o;
  out->data = p;
  return 0;
}

static int get_string(pctx_t *c, const char *s, size_t n, char **out) {
  char *p = c_alloc(c, n + 1);
  if (!p)
    return nomem(c);
  memcpy(p, s, n);
  p[n] = 0;
  *out = p;
  return 0;
}

typedef union {
  int32_t i32;
  uint32_t u32;
  int64_t i64;
  uint64_t u64;
  float f;
  double d;
  protobuf_c_boolean b;
  int e;
  char *s;
  ProtobufCBinaryData bd;
  ProtobufCMessage *m;
} value_t;

static int parse_message(pctx_t *c, json_t *v, const ProtobufCMessageDescriptor *d,
                         ProtobufCMessage **out);

/* One value of type t into *dst. On failure nothing is left allocated. */
static int parse_value(pctx_t *c, const ProtobufCFieldDescriptor *f, json_t *v, value_t *dst) {
  int neg, rc;
  uint64_t mag;
  double d;
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    if ((rc = get_integer(c, v, f->type, &neg, &mag)))
      return rc;
    dst->i32 = (int32_t)to_signed(neg, mag);
    return 0;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    if ((rc = get_integer(c, v, f->type, &neg, &mag)))
      return rc;
    dst->u32 = (uint32_t)mag;
    return 0;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    if ((rc = get_integer(c, v, f->type, &neg, &mag)))
      return rc;
    dst->i64 = to_signed(neg, mag);
    return 0;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    if ((rc = get_integer(c, v, f->type, &neg, &mag)))
      return rc;
    dst->u64 = mag;
    return 0;
  case PROTOBUF_C_TYPE_FLOAT:
    if ((rc = get_double(c, v, f->type, &d)))
      return rc;
    if (double_to_float(d, &dst->f) != 0)
      return fail(c, "value out of range for float");
    return 0;
  case PROTOBUF_C_TYPE_DOUBLE:
    return get_double(c, v, f->type, &dst->d);
  case PROTOBUF_C_TYPE_BOOL:
    if (!json_is_boolean(v))
      return fail(c, "expected boolean");
    dst->b = json_is_true(v);
    return 0;
  case PROTOBUF_C_TYPE_ENUM:
    if (json_is_string(v)) {
      const ProtobufCEnumValue *ev =
          protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, json_string_value(v));
      if (!ev)
        return fail(c, "unknown enum value \"%s\" for %s", json_string_value(v),
                    ((const ProtobufCEnumDescriptor *)f->descriptor)->name);
      dst->e = ev->value;
      return 0;
    }
    if (!json_is_number(v))
      return fail(c, "expected enum name or number");
    if ((rc = get_integer(c, v, f->type, &neg, &mag)))
      return rc;
    dst->e = (int)to_signed(neg, mag);
    return 0;
  case PROTOBUF_C_TYPE_STRING:
    if (!json_is_string(v))
      return fail(c, "expected string");
    return get_string(c, json_string_value(v), json_string_length(v), &dst->s);
  case PROTOBUF_C_TYPE_BYTES:
    return get_bytes(c, v, &dst->bd);
  case PROTOBUF_C_TYPE_MESSAGE:
    return parse_message(c, v, f->descriptor, &dst->m);
  }
  return fail(c, "unsupported field type");
}

/* Moves a parsed value into a singular field and marks it present. */
static void store(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const value_t *v) {
  memcpy(MEMBER(m, f->offset), v, elem_size(f->type));
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
    *(uint32_t *)MEMBER(m, f->quantifier_offset) = f->id;
  else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && !has_pointer_presence(f->type))
    *(protobuf_c_boolean *)MEMBER(m, f->quantifier_offset) = 1;
}

/* ------------------------------------------------------------------------ */
/* parsing: repeated fields, maps, messages                                 */

static int enter(pctx_t *c) {
  if (c->depth >= MPRPC_JSON_MAX_DEPTH)
    return fail(c, "nesting deeper than %d", MPRPC_JSON_MAX_DEPTH);
  c->depth++;
  return 0;
}

static int parse_repeated(pctx_t *c, const ProtobufCFieldDescriptor *f, json_t *v,
                          ProtobufCMessage *m) {
  if (!json_is_array(v))
    return fail(c, "expected array");
  /* An empty array nests nothing, so it does not count towards the depth
   * (nor on output, where EMIT_DEFAULTS adds them at any level). */
  size_t n = json_array_size(v), esz = elem_size(f->type);
  if (n == 0)
    return 0;
  int rc = enter(c);
  if (rc)
    return rc;
  {
    if (n > SIZE_MAX / esz)
      return nomem(c);
    char *arr = c_alloc(c, n * esz);
    if (!arr)
      return nomem(c);
    /* The message owns the array from here, with a count of the elements
     * that are complete, so a failure midway frees exactly those. */
    *(void **)MEMBER(m, f->offset) = arr;
    size_t *cnt = MEMBER(m, f->quantifier_offset);
    *cnt = 0;
    for (size_t i = 0; i < n; i++) {
      json_t *el = json_array_get(v, i);
      push(c, SEG_INDEX, NULL, i);
      if (json_is_null(el))
        return fail(c, "null in a repeated field");
      value_t val;
      if ((rc = parse_value(c, f, el, &val)))
        return rc;
      memcpy(arr + i * esz, &val, esz);
      (*cnt)++;
      pop(c);
    }
  }
  c->depth--;
  return 0;
}

/* A map key, which JSON always spells as a string. Integer keys must be
 * canonical decimal (no leading zeros, no "-0") so that distinct JSON keys
 * are distinct map keys and the output reads back the same. */
static int parse_map_key(pctx_t *c, const ProtobufCFieldDescriptor *kf, const char *k,
                         value_t *dst) {
  size_t n = strlen(k);
  if (kf->type == PROTOBUF_C_TYPE_STRING)
    return get_string(c, k, n, &dst->s);
  if (kf->type == PROTOBUF_C_TYPE_BOOL) {
    if (strcmp(k, "true") == 0)
      dst->b = 1;
    else if (strcmp(k, "false") == 0)
      dst->b = 0;
    else
      return fail(c, "map key: expected true or false");
    return 0;
  }
  int neg;
  uint64_t mag;
  int r = scan_int(k, n, &neg, &mag);
  size_t d0 = neg ? 1 : 0;
  if (r == -1 || (n > d0 + 1 && k[d0] == '0') || (neg && mag == 0))
    return fail(c, "map key: expected canonical decimal %s", type_name(kf->type));
  json_t *tmp = json_stringn(k, n);
  if (!tmp)
    return nomem(c);
  int rc = parse_value(c, kf, tmp, dst);
  json_decref(tmp);
  return rc;
}

static int parse_map(pctx_t *c, const ProtobufCFieldDescriptor *f, json_t *v,
                     ProtobufCMessage *m) {
  if (!json_is_object(v))
    return fail(c, "expected object");
  const ProtobufCMessageDescriptor *ed = f->descriptor;
  const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
  size_t n = json_object_size(v);
  if (n == 0)
    return 0; /* as for arrays: not a level */
  int rc = enter(c);
  if (rc)
    return rc;
  {
    if (n > SIZE_MAX / sizeof(ProtobufCMessage *))
      return nomem(c);
    ProtobufCMessage **arr = c_alloc(c, n * sizeof *arr);
    if (!arr)
      return nomem(c);
    *(void **)MEMBER(m, f->offset) = arr;
    size_t *cnt = MEMBER(m, f->quantifier_offset);
    *cnt = 0;
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
      push(c, SEG_KEY, key, 0);
      if (*cnt == n) /* cannot happen: the object is not modified */
        return fail(c, "map changed while read");
      if (json_is_null(val))
        return fail(c, "map value must not be null");
      /* The entry counts as a message (its value's object is one level
       * deeper), matching the output's nesting. */
      ProtobufCMessage *e = c_alloc(c, ed->sizeof_message);
      if (!e)
        return nomem(c);
      protobuf_c_message_init(ed, e);
      arr[(*cnt)++] = e;
      value_t kv, vv;
      if ((rc = parse_map_key(c, kf, key, &kv)))
        return rc;
      store(e, kf, &kv);
      if ((rc = parse_value(c, vf, val, &vv)))
        return rc;
      store(e, vf, &vv);
      pop(c);
    }
  }
  c->depth--;
  return 0;
}

enum { SEEN_NULL = 1, SEEN_SET = 2 };

static int fill_message(pctx_t *c, json_t *obj, const ProtobufCMessageDescriptor *d,
                        ProtobufCMessage *m, unsigned char *seen) {
  const char *key;
  json_t *val;
  int rc;
  json_object_foreach(obj, key, val) {
    push(c, SEG_FIELD, key, 0);
    const ProtobufCFieldDescriptor *f = find_field(d, key);
    if (!f)
      return fail(c, "unknown field");
    size_t idx = (size_t)(f - d->fields);
    if (seen[idx])
      return fail(c, "field given twice");
    seen[idx] = SEEN_NULL;
    if (json_is_null(val)) {
      pop(c);
      continue;
    }
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      rc = is_map_field(f) ? parse_map(c, f, val, m) : parse_repeated(c, f, val, m);
      if (rc)
        return rc;
    } else {
      if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t cs = *(const uint32_t *)MEMBER(m, f->quantifier_offset);
        if (cs != 0) {
          const ProtobufCFieldDescriptor *o = protobuf_c_message_descriptor_get_field(d, cs);
          return fail(c, "oneof already set by field \"%s\"", o ? o->name : "?");
        }
      }
      value_t v;
      if ((rc = parse_value(c, f, val, &v)))
        return rc;
      store(m, f, &v);
    }
    seen[idx] = SEEN_SET;
    pop(c);
  }
  for (unsigned i = 0; i < d->n_fields; i++) {
    if (d->fields[i].label == PROTOBUF_C_LABEL_REQUIRED && seen[i] != SEEN_SET) {
      push(c, SEG_FIELD, d->fields[i].name, 0);
      return fail(c, "required field missing");
    }
  }
  return 0;
}

static int parse_message(pctx_t *c, json_t *v, const ProtobufCMessageDescriptor *d,
                         ProtobufCMessage **out) {
  if (!json_is_object(v))
    return fail(c, c->nseg ? "expected object" : "expected a JSON object");
  int rc = enter(c);
  if (rc)
    return rc;
  ProtobufCMessage *m = c_alloc(c, d->sizeof_message);
  if (!m)
    return nomem(c);
  protobuf_c_message_init(d, m);
  unsigned char small[64], *seen = small;
  if (d->n_fields > sizeof small) {
    seen = c_alloc(c, d->n_fields);
    if (!seen) {
      protobuf_c_message_free_unpacked(m, c->a);
      return nomem(c);
    }
  }
  memset(seen, 0, d->n_fields);
  rc = fill_message(c, v, d, m, seen);
  if (seen != small)
    c->a->free(c->a->allocator_data, seen);
  if (rc) {
    protobuf_c_message_free_unpacked(m, c->a);
    return rc;
  }
  c->depth--;
  *out = m;
  return 0;
}

int mprpc_json_to_message(const char *json, size_t len, const ProtobufCMessageDescriptor *d,
                          ProtobufCAllocator *alloc, ProtobufCMessage **out, char *err,
                          size_t errlen) {
  if (err && errlen)
    err[0] = 0;
  if (out)
    *out = NULL;
  if (!out || !d || (!json && len)) {
    if (err && errlen)
      snprintf(err, errlen, "invalid argument");
    return MPRPC_EINVAL;
  }
  pthread_once(&hooks_once, install_hooks);

  pctx_t ctx, *c = &ctx;
  memset(c, 0, offsetof(pctx_t, seg));
  c->a = alloc ? alloc : &default_alloc;
  c->err = err;
  c->errlen = err ? errlen : 0;

  ProtobufCAllocator *saved = tl_alloc;
  int saved_oom = tl_oom;
  tl_alloc = c->a;
  tl_oom = 0;

  int rc;
  json_error_t je;
  json_t *root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    rc = json_error_code(&je) == json_error_out_of_memory ? MPRPC_ENOMEM : MPRPC_EINVAL;
    if (c->errlen)
      snprintf(c->err, c->errlen, "line %d column %d: %s", je.line, je.column, je.text);
  } else {
    ProtobufCMessage *m = NULL;
    rc = parse_message(c, root, d, &m);
    json_decref(root);
    if (rc == 0)
      *out = m;
  }
  /* Any failed allocation is ENOMEM, even when the parse went on: jansson's
   * lexer drops a character it cannot append to a token's text (its
   * lex_save ignores strbuffer's failure), which would silently turn
   * "12345678901234567" into a shorter number. */
  if (c->oom || tl_oom) {
    if (rc == 0) {
      protobuf_c_message_free_unpacked(*out, c->a);
      *out = NULL;
    }
    rc = MPRPC_ENOMEM;
    if (c->errlen)
      snprintf(c->err, c->errlen, "out of memory");
  }
  tl_alloc = saved;
  tl_oom = saved_oom;
  return rc;
}

/* ------------------------------------------------------------------------ */
/* output                                                                   */

typedef struct {
  char *p;
  size_t n, cap;
  int err;
  int flags;
  int depth;
} out_t;

static void put(out_t *o, const char *s, size_t n) {
  if (o->err)
    return;
  if (o->cap - o->n < n + 1) {
    size_t cap = o->cap ? o->cap : 256;
    while (cap - o->n < n + 1) {
      if (cap > SIZE_MAX / 2) {
        o->err = MPRPC_ENOMEM;
        return;
      }
      cap *= 2;
    }
    char *np = realloc(o->p, cap);
    if (!np) {
      o->err = MPRPC_ENOMEM;
      return;
    }
    o->p = np;
    o->cap = cap;
  }
  memcpy(o->p + o->n, s, n);
  o->n += n;
}

static void puts_(out_t *o, const char *s) { put(o, s, strlen(s)); }

__attribute__((format(printf, 2, 3))) static void putf(out_t *o, const char *fmt, ...) {
  char buf[64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0)
    put(o, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void newline(out_t *o) {
  if (!(o->flags & MPRPC_JSON_PRETTY))
    return;
  put(o, "\n", 1);
  for (int i = 0; i < o->depth; i++)
    put(o, "  ", 2);
}

static int open_(out_t *o, char ch) {
  if (o->depth >= MPRPC_JSON_MAX_DEPTH) {
    if (!o->err)
      o->err = MPRPC_EINVAL;
    return -1;
  }
  put(o, &ch, 1);
  o->depth++;
  return 0;
}

static void close_(out_t *o, char ch, int any) {
  o->depth--;
  if (any)
    newline(o);
  put(o, &ch, 1);
}

/* Between members / elements: "," unless first, then the pretty newline. */
static void next(out_t *o, int *first) {
  if (!*first)
    put(o, ",", 1);
  *first = 0;
  newline(o);
}

/* Length of the UTF-8 sequence at s (n bytes left), 0 if invalid: the same
 * rules as jansson's reader (no overlongs, no surrogates, <= U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned char b = s[0];
  size_t len;
  uint32_t cp;
  if (b < 0x80)
    return 1;
  if (b >= 0xC2 && b <= 0xDF) {
    len = 2;
    cp = b & 0x1F;
  } else if (b >= 0xE0 && b <= 0xEF) {
    len = 3;
    cp = b & 0x0F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    len = 4;
    cp = b & 0x07;
  } else
    return 0;
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

static void put_string(out_t *o, const char *str) {
  const unsigned char *s = (const unsigned char *)(str ? str : "");
  size_t n = strlen((const char *)s), i = 0, run = 0;
  put(o, "\"", 1);
  while (i < n) {
    unsigned char ch = s[i];
    const char *esc = NULL;
    char ubuf[8];
    if (ch == '"')
      esc = "\\\"";
    else if (ch == '\\')
      esc = "\\\\";
    else if (ch == '\n')
      esc = "\\n";
    else if (ch == '\r')
      esc = "\\r";
    else if (ch == '\t')
      esc = "\\t";
    else if (ch == '\b')
      esc = "\\b";
    else if (ch == '\f')
      esc = "\\f";
    else if (ch < 0x20) {
      snprintf(ubuf, sizeof ubuf, "\\u%04x", ch);
      esc = ubuf;
    }
    if (esc) {
      put(o, (const char *)s + run, i - run);
      puts_(o, esc);
      i++;
      run = i;
      continue;
    }
    size_t l = utf8_len(s + i, n - i);
    if (l == 0) {
      if (!o->err)
        o->err = MPRPC_EINVAL;
      return;
    }
    i += l;
  }
  put(o, (const char *)s + run, i - run);
  put(o, "\"", 1);
}

static void put_base64(out_t *o, const ProtobufCBinaryData *b) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  put(o, "\"", 1);
  char q[4];
  size_t i = 0;
  for (; i + 3 <= b->len; i += 3) {
    uint32_t x = (uint32_t)b->data[i] << 16 | (uint32_t)b->data[i + 1] << 8 | b->data[i + 2];
    q[0] = tab[x >> 18];
    q[1] = tab[(x >> 12) & 63];
    q[2] = tab[(x >> 6) & 63];
    q[3] = tab[x & 63];
    put(o, q, 4);
  }
  size_t r = b->len - i;
  if (r) {
    uint32_t x = (uint32_t)b->data[i] << 16 | (r == 2 ? (uint32_t)b->data[i + 1] << 8 : 0);
    q[0] = tab[x >> 18];
    q[1] = tab[(x >> 12) & 63];
    q[2] = r == 2 ? tab[(x >> 6) & 63] : '=';
    q[3] = '=';
    put(o, q, 4);
  }
  put(o, "\"", 1);
}

/* The shortest %g text that reads back (through the reader's own path:
 * strtod, then double_to_float for floats) to the same value. */
static void put_real(out_t *o, double v, int is_float) {
  if (isnan(v)) {
    puts_(o, "\"NaN\"");
    return;
  }
  if (isinf(v)) {
    puts_(o, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    return;
  }
  if (v == 0) {
    puts_(o, signbit(v) ? "-0.0" : "0");
    return;
  }
  char buf[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, v);
    double back = strtod(buf, NULL);
    if (is_float) {
      float f;
      if (double_to_float(back, &f) == 0 && f == (float)v)
        break;
    } else if (back == v) {
      break;
    }
  }
  puts_(o, buf);
}

static void put_message(out_t *o, const ProtobufCMessage *m);

/* One value of type f->type stored at p. */
static void put_value(out_t *o, const ProtobufCFieldDescriptor *f, const void *p) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    putf(o, "%" PRId32, *(const int32_t *)p);
    break;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    putf(o, "%" PRIu32, *(const uint32_t *)p);
    break;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    putf(o, "\"%" PRId64 "\"", *(const int64_t *)p);
    break;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    putf(o, "\"%" PRIu64 "\"", *(const uint64_t *)p);
    break;
  case PROTOBUF_C_TYPE_FLOAT:
    put_real(o, *(const float *)p, 1);
    break;
  case PROTOBUF_C_TYPE_DOUBLE:
    put_real(o, *(const double *)p, 0);
    break;
  case PROTOBUF_C_TYPE_BOOL:
    puts_(o, *(const protobuf_c_boolean *)p ? "true" : "false");
    break;
  case PROTOBUF_C_TYPE_ENUM: {
    int v = *(const int *)p;
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
    if (ev)
      put_string(o, ev->name);
    else
      putf(o, "%d", v);
    break;
  }
  case PROTOBUF_C_TYPE_STRING:
    put_string(o, *(char *const *)p);
    break;
  case PROTOBUF_C_TYPE_BYTES:
    put_base64(o, p);
    break;
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessage *sm = *(ProtobufCMessage *const *)p;
    if (sm)
      put_message(o, sm);
    else if (open_(o, '{') == 0)
      close_(o, '}', 0);
    break;
  }
  }
}

/* A map key as its JSON object key (always a string). */
static void put_map_key(out_t *o, const ProtobufCFieldDescriptor *kf, const void *p) {
  switch (kf->type) {
  case PROTOBUF_C_TYPE_STRING:
    put_string(o, *(char *const *)p);
    return;
  case PROTOBUF_C_TYPE_BOOL:
    puts_(o, *(const protobuf_c_boolean *)p ? "\"true\"" : "\"false\"");
    return;
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    putf(o, "\"%" PRId32 "\"", *(const int32_t *)p);
    return;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    putf(o, "\"%" PRIu32 "\"", *(const uint32_t *)p);
    return;
  default: /* the 64-bit ones already print as strings */
    put_value(o, kf, p);
    return;
  }
}

static int is_zero(const ProtobufCFieldDescriptor *f, const void *p) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_FLOAT:
    return *(const float *)p == 0; /* -0.0 too, as protobuf-c's packer */
  case PROTOBUF_C_TYPE_DOUBLE:
    return *(const double *)p == 0;
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    return !s || !*s;
  }
  case PROTOBUF_C_TYPE_BYTES:
    return ((const ProtobufCBinaryData *)p)->len == 0;
  case PROTOBUF_C_TYPE_MESSAGE:
    return *(ProtobufCMessage *const *)p == NULL;
  default: {
    size_t n = elem_size(f->type);
    uint64_t x = 0;
    memcpy(&x, p, n);
    return x == 0;
  }
  }
}

/* Whether a field is written, following protobuf-c's packer for presence. */
static int field_present(const out_t *o, const ProtobufCMessage *m,
                         const ProtobufCFieldDescriptor *f) {
  const void *p = CMEMBER(m, f->offset);
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
    if (*(const uint32_t *)CMEMBER(m, f->quantifier_offset) != f->id)
      return 0;
    return !has_pointer_presence(f->type) || *(const void *const *)p != NULL;
  }
  switch (f->label) {
  case PROTOBUF_C_LABEL_REPEATED:
    return *(const size_t *)CMEMBER(m, f->quantifier_offset) > 0 ||
           (o->flags & MPRPC_JSON_EMIT_DEFAULTS);
  case PROTOBUF_C_LABEL_REQUIRED:
    return !has_pointer_presence(f->type) || *(const void *const *)p != NULL;
  case PROTOBUF_C_LABEL_OPTIONAL:
    if (has_pointer_presence(f->type)) {
      const void *ptr = *(const void *const *)p;
      return ptr != NULL && ptr != f->default_value;
    }
    return *(const protobuf_c_boolean *)CMEMBER(m, f->quantifier_offset) != 0;
  case PROTOBUF_C_LABEL_NONE:
  default:
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
      return *(const void *const *)p != NULL;
    return !is_zero(f, p) || (o->flags & MPRPC_JSON_EMIT_DEFAULTS);
  }
}

static void put_field(out_t *o, const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f) {
  const void *p = CMEMBER(m, f->offset);
  if (f->label != PROTOBUF_C_LABEL_REPEATED) {
    put_value(o, f, p);
    return;
  }
  size_t n = *(const size_t *)CMEMBER(m, f->quantifier_offset);
  const char *arr = *(const char *const *)p;
  if (n == 0) { /* not a level, as on input */
    puts_(o, is_map_field(f) ? "{}" : "[]");
    return;
  }
  if (is_map_field(f)) {
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    if (open_(o, '{'))
      return;
    int first = 1;
    for (size_t i = 0; i < n && !o->err; i++) {
      const ProtobufCMessage *e = ((ProtobufCMessage *const *)arr)[i];
      next(o, &first);
      put_map_key(o, kf, CMEMBER(e, kf->offset));
      puts_(o, o->flags & MPRPC_JSON_PRETTY ? ": " : ":");
      put_value(o, vf, CMEMBER(e, vf->offset));
    }
    close_(o, '}', n > 0);
    return;
  }
  if (open_(o, '['))
    return;
  int first = 1;
  size_t esz = elem_size(f->type);
  for (size_t i = 0; i < n && !o->err; i++) {
    next(o, &first);
    put_value(o, f, arr + i * esz);
  }
  close_(o, ']', n > 0);
}

static void put_message(out_t *o, const ProtobufCMessage *m) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  if (open_(o, '{'))
    return;
  int first = 1;
  for (unsigned i = 0; i < d->n_fields && !o->err; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (!field_present(o, m, f))
      continue;
    next(o, &first);
    if (o->flags & MPRPC_JSON_ORIG_NAMES) {
      put_string(o, f->name);
    } else {
      char small[128];
      size_t n = mprpc_json_name(f->name, small, sizeof small);
      if (n < sizeof small) {
        put_string(o, small);
      } else {
        char *big = malloc(n + 1);
        if (!big) {
          o->err = MPRPC_ENOMEM;
          return;
        }
        mprpc_json_name(f->name, big, n + 1);
        put_string(o, big);
        free(big);
      }
    }
    puts_(o, o->flags & MPRPC_JSON_PRETTY ? ": " : ":");
    put_field(o, m, f);
  }
  close_(o, '}', !first);
}

int mprpc_message_to_json(const ProtobufCMessage *msg, int flags, char **out, size_t *outlen) {
  if (!out)
    return MPRPC_EINVAL;
  *out = NULL;
  if (!msg || !msg->descriptor)
    return MPRPC_EINVAL;
  out_t o = {.flags = flags};
  put_message(&o, msg);
  put(&o, "", 0); /* room for the NUL even for an empty buffer */
  if (o.err) {
    free(o.p);
    return o.err;
  }
  o.p[o.n] = 0;
  *out = o.p;
  if (outlen)
    *outlen = o.n;
  return 0;
}
