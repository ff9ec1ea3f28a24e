/*
 * Packing a message for writev without copying its large fields.
 *
 * protobuf_c_message_pack_to_buffer hands a string or bytes field's data to
 * the buffer's append as it is, so a buffer that records large appends as
 * references instead of copying them lets a 64 KiB field go from the
 * handler's message to the socket with no user-space copy. Small appends
 * (tags, lengths, scalars, short strings) are copied into the caller's
 * scratch block, which must hold the message's packed size (the worst
 * case: nothing referenced). Adjacent copies share one segment; past
 * MPRPC__PACK_MAX_SEG segments every append is copied.
 *
 * The iovecs point into the message and into the scratch block: both must
 * stay alive, unchanged, until the iovecs are written.
 */
#ifndef MPRPC_CORE_PACK_REF_H
#define MPRPC_CORE_PACK_REF_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <sys/uio.h>

#include "mprpc/frame.h"

/* An append of at least this many bytes is referenced, not copied. */
#define MPRPC__PACK_REF_MIN 4096
#define MPRPC__PACK_MAX_SEG MPRPC_FRAME_MAX_PAYLOAD_IOV

/* Packs m (packed size plen, from protobuf_c_message_get_packed_size) into
 * iov[0..*iovcnt) using scratch (plen bytes). Returns 0, or MPRPC_EINTERNAL
 * when the message packed to a size other than plen. */
int mprpc__pack_ref(const ProtobufCMessage *m, size_t plen, uint8_t *scratch,
                    struct iovec iov[MPRPC__PACK_MAX_SEG], int *iovcnt);

#endif
