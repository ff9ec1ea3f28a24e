/*
 * Names what makes a message unpackable: the first required string, bytes
 * or message field that is unset, walking set sub-messages and repeated
 * messages. It follows protobuf_c_message_check (protobuf-c 1.4) rule for
 * rule, so the channel can say "inv.ReserveRequest.item_id is required"
 * where that function only says no.
 */
#include <stdio.h>
#include <string.h>

#include "core/msg_check.h"
#include "mprpc/errors.h"

#define MAX_DEPTH 64 /* deeper trees are reported, not walked */

/* The member of message m that field f describes. */
static void *member(const ProtobufCMessage *m, unsigned offset) {
  return (char *)m + offset;
}

/* path[0..len) is "pkg.Type.field.sub"; returns false with why set at the
 * first problem. */
static bool walk(const ProtobufCMessage *m, char *path, size_t len, size_t cap, int depth,
                 char *why, size_t whylen);

static bool report(char *why, size_t whylen, const char *path, const char *what) {
  snprintf(why, whylen, "%s %s", path, what);
  return false;
}

/* Appends ".name" or "[i]" to path[0..len); the new length (unchanged
 * when it does not fit: the report then names the enclosing field). */
static size_t grown(char *path, size_t len, size_t cap, int n) {
  if (n < 0 || (size_t)n >= cap - len) {
    path[len] = '\0';
    return len;
  }
  return len + (size_t)n;
}

static size_t push_name(char *path, size_t len, size_t cap, const char *name) {
  return grown(path, len, cap, snprintf(path + len, cap - len, ".%s", name));
}

static size_t push_index(char *path, size_t len, size_t cap, size_t idx) {
  return grown(path, len, cap, snprintf(path + len, cap - len, "[%zu]", idx));
}

static bool sub(const ProtobufCMessage *m, char *path, size_t len, size_t cap, int depth,
                char *why, size_t whylen) {
  if (depth >= MAX_DEPTH)
    return report(why, whylen, path, "nests deeper than 64 messages");
  return walk(m, path, len, cap, depth + 1, why, whylen);
}

static bool walk(const ProtobufCMessage *m, char *path, size_t len, size_t cap, int depth,
                 char *why, size_t whylen) {
  if (!m || !m->descriptor || m->descriptor->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
    return report(why, whylen, path, "is not a protobuf-c message");
  const ProtobufCMessageDescriptor *d = m->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    void *field = member(m, f->offset);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      const uint32_t *which = member(m, f->quantifier_offset);
      if (*which != f->id)
        continue;
    }
    size_t flen = push_name(path, len, cap, f->name);
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)member(m, f->quantifier_offset);
      if (n > 0 && *(void **)field == NULL)
        return report(why, whylen, path, "has a count but no array");
      for (size_t j = 0; j < n; j++) {
        size_t elen = push_index(path, flen, cap, j);
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
          ProtobufCMessage *e = (*(ProtobufCMessage ***)field)[j];
          if (!e)
            return report(why, whylen, path, "is NULL");
          if (!sub(e, path, elen, cap, depth, why, whylen))
            return false;
        } else if (f->type == PROTOBUF_C_TYPE_STRING) {
          if (!(*(char ***)field)[j])
            return report(why, whylen, path, "is NULL");
        } else if (f->type == PROTOBUF_C_TYPE_BYTES) {
          const ProtobufCBinaryData *bd = &(*(ProtobufCBinaryData **)field)[j];
          if (bd->len > 0 && !bd->data)
            return report(why, whylen, path, "has a length but no data");
        }
      }
      path[flen] = '\0';
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
      const ProtobufCMessage *s = *(ProtobufCMessage **)field;
      if (!s && f->label == PROTOBUF_C_LABEL_REQUIRED)
        return report(why, whylen, path, "is required");
      if (s && !sub(s, path, flen, cap, depth, why, whylen))
        return false;
    } else if (f->type == PROTOBUF_C_TYPE_STRING) {
      if (f->label == PROTOBUF_C_LABEL_REQUIRED && !*(char **)field)
        return report(why, whylen, path, "is required");
    } else if (f->type == PROTOBUF_C_TYPE_BYTES) {
      const ProtobufCBinaryData *bd = field;
      bool has = f->label != PROTOBUF_C_LABEL_OPTIONAL ||
                 *(const protobuf_c_boolean *)member(m, f->quantifier_offset);
      if (has && bd->len > 0 && !bd->data)
        return report(why, whylen, path, "has a length but no data");
    }
    path[len] = '\0';
  }
  return true;
}

int mprpc__msg_check(const ProtobufCMessage *m, char *why, size_t whylen) {
  char path[256];
  char dummy[1];
  if (!why || !whylen) {
    why = dummy;
    whylen = sizeof dummy;
  }
  why[0] = '\0';
  if (!m || !m->descriptor) {
    snprintf(why, whylen, "no message");
    return MPRPC_EINVAL;
  }
  snprintf(path, sizeof path, "%s", m->descriptor->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC
                                        ? m->descriptor->name
                                        : "message");
  if (walk(m, path, strlen(path), sizeof path, 0, why, whylen))
    return 0;
  return MPRPC_EINVAL;
}
