/*
 * JSON <-> protobuf-c messages, by protobuf's canonical proto3 JSON mapping.
 *
 * Works on any protobuf-c message descriptor (generated or built at run
 * time), so the HTTP/JSON gateway and the `mprpc` command can turn text into
 * a request and a response into text. The rules as implemented, the error
 * text format and the limits are in docs/json.md. In short: field names are
 * lowerCamelCase on output (MPRPC_JSON_ORIG_NAMES: the .proto names), either
 * spelling is accepted on input; 64-bit integers are strings on output;
 * bytes are base64; enums are names; map fields are JSON objects; `null` is
 * an absent field; unknown fields, out-of-range numbers, a second member of
 * one oneof and a missing proto2 required field are errors.
 *
 * Both functions return 0 or a negative MPRPC_E* code (mprpc/errors.h) and
 * keep no state between calls; they may be called from any thread.
 */
#ifndef MPRPC_JSON_H
#define MPRPC_JSON_H

#include "mprpc/export.h"
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

MPRPC_BEGIN_DECLS

enum {
  MPRPC_JSON_PRETTY = 1,        /* two-space indent, one member per line */
  MPRPC_JSON_ORIG_NAMES = 2,    /* proto field names instead of lowerCamelCase */
  MPRPC_JSON_EMIT_DEFAULTS = 4, /* also fields without presence at their zero value, empty repeated */
};

/* Objects and arrays nested deeper than this are an error, on input and output. */
#define MPRPC_JSON_MAX_DEPTH 64

/* Parses JSON text (len bytes, need not be NUL-terminated) into a new message of type d,
 * allocated with `alloc` (NULL = protobuf-c's default allocator); free it with
 * protobuf_c_message_free_unpacked(msg, alloc). On error returns a negative MPRPC_E* code
 * (MPRPC_EINVAL for bad JSON or mapping errors, MPRPC_ENOMEM), leaves *out NULL, and
 * writes a message naming the field path into err (errlen bytes, always NUL-terminated
 * when errlen > 0; err may be NULL), e.g. "user.friends[2].id: expected integer",
 * "line 1 column 7: ...". The path of a top-level field is just its name; a message
 * without a path is about the text as a whole. The temporary JSON tree is allocated
 * through `alloc` too, so a failing allocator gives MPRPC_ENOMEM and no leak. */
int mprpc_json_to_message(const char *json, size_t len, const ProtobufCMessageDescriptor *d,
                          ProtobufCAllocator *alloc, ProtobufCMessage **out, char *err, size_t errlen);

/* Writes msg as JSON (flags: MPRPC_JSON_*); *out is malloc'ed, NUL-terminated, caller
 * frees with free(); *outlen (if outlen is not NULL) gets its length without the NUL.
 * No trailing newline. Errors: MPRPC_ENOMEM; MPRPC_EINVAL for a string field that is
 * not valid UTF-8 or nesting deeper than MPRPC_JSON_MAX_DEPTH. On error *out is NULL. */
int mprpc_message_to_json(const ProtobufCMessage *msg, int flags, char **out, size_t *outlen);

/* The lowerCamelCase JSON name of a proto field name ("user_id" -> "userId"), as
 * protobuf computes it: '_' dropped, the letter after it upper-cased. Writes at
 * most buflen bytes including the NUL; returns the full length (like snprintf). */
size_t mprpc_json_name(const char *proto_name, char *buf, size_t buflen);

MPRPC_END_DECLS
#endif
