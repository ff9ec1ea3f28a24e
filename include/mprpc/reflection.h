/*
 * Reflection: protobuf-c descriptors as data, and back.
 *
 * Three pieces let a program call a service it was not compiled with
 * (the `mprpc` command, docs/cli.md):
 *
 * - mprpc_descriptor_set_build() turns compiled protobuf-c service
 *   descriptors into a serialized google.protobuf.FileDescriptorSet: the
 *   services, every message and enum type their methods use (transitively),
 *   one FileDescriptorProto per package and syntax.
 * - A dynamic pool (mprpc_dynpool_t) is the reverse: it parses a
 *   FileDescriptorSet (from reflection, or from `protoc --descriptor_set_out`)
 *   and builds ProtobufCMessageDescriptor, ProtobufCEnumDescriptor and
 *   ProtobufCServiceDescriptor structures at run time, laid out so that
 *   protobuf_c_message_pack/unpack/free_unpacked, protobuf_c_message_init
 *   and the JSON module work on them exactly as on generated ones.
 * - The mprpc.Reflection service (src/proto/reflection.proto) serves a
 *   provider's descriptors: ListServices and GetFileDescriptorSet.
 *
 * Descriptor sets are untrusted input: every function validates what it is
 * given and names the offending file, type or field in the error text
 * (`err`, NUL-terminated, may be NULL). Functions return 0 or a negative
 * MPRPC_E* code: MPRPC_EINVAL for a descriptor set that is malformed or
 * that mprpc cannot represent (groups, extensions are ignored), MPRPC_ENOMEM,
 * MPRPC_ENOTFOUND for a name that is not there.
 */
#ifndef MPRPC_REFLECTION_H
#define MPRPC_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "mprpc/export.h"

MPRPC_BEGIN_DECLS

/* Largest serialized FileDescriptorSet a pool accepts (bytes). */
#define MPRPC_DYNPOOL_MAX_BYTES (16u << 20)

/* ---- compiled descriptors -> FileDescriptorSet ------------------------- */

/* Serializes services[0..n) and every type reachable from their methods
 * into a FileDescriptorSet. *out is malloc'ed and owned by the caller
 * (free()); *outlen its size. Descriptors are only read. Errors:
 * MPRPC_EINVAL (n == 0, a NULL or non-service descriptor), MPRPC_ENOMEM. */
int mprpc_descriptor_set_build(const ProtobufCServiceDescriptor *const *services, size_t n,
                               uint8_t **out, size_t *outlen);

/* ---- FileDescriptorSet -> dynamic descriptors -------------------------- */

typedef struct mprpc_dynpool mprpc_dynpool_t;

/* Parses fds[0..len) and builds descriptors for every message, enum and
 * service in it. The bytes are only read (the pool copies what it keeps).
 * *out is owned by the caller: mprpc_dynpool_free releases every descriptor
 * of the pool at once, so no message built on them may outlive it.
 * Errors: MPRPC_EINVAL with the reason in err (bytes that do not parse, a
 * bad or duplicate name, an unresolved type name, a duplicate field number,
 * limits exceeded, ...), MPRPC_ENOMEM. */
int mprpc_dynpool_new(const uint8_t *fds, size_t len, mprpc_dynpool_t **out, char *err,
                      size_t errlen);
void mprpc_dynpool_free(mprpc_dynpool_t *p);

/* Lookups by full name ("package.Name", a leading '.' is accepted); NULL
 * when absent. The descriptors belong to the pool. */
const ProtobufCMessageDescriptor *mprpc_dynpool_message(const mprpc_dynpool_t *p,
                                                        const char *name);
const ProtobufCEnumDescriptor *mprpc_dynpool_enum(const mprpc_dynpool_t *p, const char *name);
const ProtobufCServiceDescriptor *mprpc_dynpool_service(const mprpc_dynpool_t *p,
                                                        const char *name);
/* Enumeration in the order of the set (nested types after their parent). */
size_t mprpc_dynpool_message_count(const mprpc_dynpool_t *p);
const ProtobufCMessageDescriptor *mprpc_dynpool_message_at(const mprpc_dynpool_t *p, size_t i);
size_t mprpc_dynpool_service_count(const mprpc_dynpool_t *p);
const ProtobufCServiceDescriptor *mprpc_dynpool_service_at(const mprpc_dynpool_t *p, size_t i);
/* The syntax of the file that declared a message: 2 or 3 (0 if d is not
 * from this pool). */
int mprpc_dynpool_syntax(const mprpc_dynpool_t *p, const ProtobufCMessageDescriptor *d);

/* Initializes a message of any descriptor (generated or dynamic): zeroes
 * sizeof_message bytes, sets the descriptor and applies default values.
 * Same as protobuf_c_message_init, which also works on pool descriptors
 * while the process has fewer than MPRPC_DYNPOOL_INIT_SLOTS pool message
 * types alive; beyond that a pool descriptor's message_init is NULL and
 * only this function (and unpack) initialize it. */
#define MPRPC_DYNPOOL_INIT_SLOTS 1024
void mprpc_dynmsg_init(const ProtobufCMessageDescriptor *d, ProtobufCMessage *msg);

/* ---- the mprpc.Reflection service -------------------------------------- */

/* Creates the mprpc.Reflection service over services[0..n) (n may be 0):
 * ListServices answers their full names plus "mprpc.Reflection", sorted;
 * GetFileDescriptorSet(service) the descriptors of one of them (or of all,
 * when service is empty); an unknown name is answered with EREQUEST and a
 * text naming it. The descriptor sets are built here, once; the services
 * are only read here (they need not outlive the reflection service).
 * *out is owned by the caller: mprpc_reflection_service_free (also what
 * protobuf_c_service_destroy(*out) does). Add it to a server with
 * mprpc_server_add_service; it must outlive the server. Errors:
 * MPRPC_EINVAL (a NULL service, two with the same name), MPRPC_ENOMEM. */
/* The compiled descriptor of mprpc.Reflection (static), for clients that
 * create a channel to it (the `mprpc` command does). */
const ProtobufCServiceDescriptor *mprpc_reflection_descriptor(void);

int mprpc_reflection_service_new(ProtobufCService *const *services, size_t n,
                                 ProtobufCService **out);
void mprpc_reflection_service_free(ProtobufCService *svc);

MPRPC_END_DECLS
#endif
