/*
 * Fuzz target "descriptor": untrusted bytes as a google.protobuf
 * FileDescriptorSet -> mprpc_dynpool_new -> messages on the descriptors it
 * built (include/mprpc/reflection.h).
 *
 * Checks:
 *  D1  dynpool_new never crashes: 0, or MPRPC_EINVAL with an error text, or
 *      MPRPC_ENOMEM; on error no pool is returned.
 *  D2  Every message type of a pool initializes (protobuf_c_message_init
 *      and mprpc_dynmsg_init agree), packs to its computed size, and a
 *      fresh message survives pack -> unpack -> pack unchanged (when its
 *      required fields let it unpack) and prints as JSON.
 *  D3  Fixed small wire buffers unpack or are refused; what unpacks packs
 *      to a stable form (pack(unpack(pack(m))) == pack(m)) and frees
 *      cleanly.
 *  D4  Every service's methods point at message descriptors of the pool.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/json.h"
#include "mprpc/log.h"
#include "mprpc/reflection.h"
#include "support/check.h"

/* varint 1, len-delimited 2 (empty), a nested field 3, 32-bit 4, 64-bit 5,
 * a packed run at 6, a string at 7 */
static const uint8_t wire_a[] = {0x08, 0x01, 0x12, 0x00, 0x1a, 0x02, 0x08, 0x01,
                                 0x25, 1,    2,    3,    4,    0x29, 1,    2,    3,
                                 4,    5,    6,    7,    8,    0x32, 0x03, 0x01, 0x02,
                                 0x03, 0x3a, 0x02, 'h',  'i'};
static const uint8_t wire_b[] = {0x0a, 0x04, 0x0a, 0x02, 0x08, 0x01, 0x10, 0x7f, 0x18, 0xff,
                                 0xff, 0xff, 0xff, 0x0f, 0x22, 0x01, 0xff};

static void pack_stable(const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *a = malloc(n + 1);
  FUZZ_CHECK(a != NULL);
  FUZZ_CHECK(protobuf_c_message_pack(m, a) == n);
  ProtobufCMessage *again = protobuf_c_message_unpack(m->descriptor, NULL, n, a);
  if (again) {
    size_t n2 = protobuf_c_message_get_packed_size(again);
    uint8_t *b = malloc(n2 + 1);
    FUZZ_CHECK(b != NULL);
    FUZZ_CHECK(protobuf_c_message_pack(again, b) == n2);
    ProtobufCMessage *third = protobuf_c_message_unpack(m->descriptor, NULL, n2, b);
    FUZZ_CHECK(third != NULL);
    size_t n3 = protobuf_c_message_get_packed_size(third);
    FUZZ_CHECK(n3 == n2);
    uint8_t *c = malloc(n3 + 1);
    FUZZ_CHECK(c != NULL);
    protobuf_c_message_pack(third, c);
    FUZZ_CHECK(memcmp(b, c, n2) == 0);
    free(c);
    protobuf_c_message_free_unpacked(third, NULL);
    free(b);
    protobuf_c_message_free_unpacked(again, NULL);
  }
  free(a);
  char *json = NULL;
  int rc = mprpc_message_to_json(m, 0, &json, NULL);
  FUZZ_CHECK(rc == 0 || rc == MPRPC_EINVAL || rc == MPRPC_ENOMEM);
  free(json);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  mprpc_log_set_level(MPRPC_LOG_LEVEL_OFF);
  mprpc_dynpool_t *p = (mprpc_dynpool_t *)&size; /* must be overwritten */
  char err[256] = "";
  int rc = mprpc_dynpool_new(data, size, &p, err, sizeof err);
  FUZZ_CHECK(rc == 0 || rc == MPRPC_EINVAL || rc == MPRPC_ENOMEM);
  if (rc != 0) {
    FUZZ_CHECK(p == NULL);
    FUZZ_CHECK(rc == MPRPC_ENOMEM || err[0] != 0);
    return 0;
  }
  size_t nm = mprpc_dynpool_message_count(p);
  for (size_t i = 0; i < nm && i < 64; i++) {
    const ProtobufCMessageDescriptor *d = mprpc_dynpool_message_at(p, i);
    FUZZ_CHECK(d && d->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
    FUZZ_CHECK(mprpc_dynpool_message(p, d->name) == d);
    FUZZ_CHECK(d->sizeof_message >= sizeof(ProtobufCMessage));
    ProtobufCMessage *m = malloc(d->sizeof_message), *m2 = malloc(d->sizeof_message);
    FUZZ_CHECK(m && m2);
    if (d->message_init)
      protobuf_c_message_init(d, m);
    else
      mprpc_dynmsg_init(d, m);
    mprpc_dynmsg_init(d, m2);
    FUZZ_CHECK(memcmp(m, m2, d->sizeof_message) == 0);
    free(m2);
    pack_stable(m);
    protobuf_c_message_free_unpacked(m, NULL);
    const uint8_t *bufs[] = {wire_a, wire_b};
    const size_t lens[] = {sizeof wire_a, sizeof wire_b};
    for (int k = 0; k < 2; k++) {
      ProtobufCMessage *u = protobuf_c_message_unpack(d, NULL, lens[k], bufs[k]);
      if (u) {
        pack_stable(u);
        protobuf_c_message_free_unpacked(u, NULL);
      }
    }
  }
  for (size_t i = 0; i < mprpc_dynpool_service_count(p); i++) {
    const ProtobufCServiceDescriptor *s = mprpc_dynpool_service_at(p, i);
    FUZZ_CHECK(s && s->magic == PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC);
    for (unsigned k = 0; k < s->n_methods; k++) {
      FUZZ_CHECK(mprpc_dynpool_message(p, s->methods[k].input->name) == s->methods[k].input);
      FUZZ_CHECK(mprpc_dynpool_message(p, s->methods[k].output->name) == s->methods[k].output);
      FUZZ_CHECK(protobuf_c_service_descriptor_get_method_by_name(s, s->methods[k].name) ==
                 &s->methods[k]);
    }
  }
  mprpc_dynpool_free(p);
  return 0;
}
