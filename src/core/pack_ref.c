/* Packing with large fields referenced: see pack_ref.h. */
#include "core/pack_ref.h"

#include <stdbool.h>
#include <string.h>

#include "mprpc/errors.h"

typedef struct {
  ProtobufCBuffer base; /* first: append gets a pointer to it */
  uint8_t *scratch;
  size_t cap, used;   /* scratch bytes */
  size_t total;       /* every byte appended */
  struct iovec *iov;
  int n;
  bool overflow;      /* appended past cap: the size was wrong */
} pack_buf_t;

static void copy_in(pack_buf_t *b, size_t len, const uint8_t *data) {
  if (len > b->cap - b->used) {
    b->overflow = true;
    return;
  }
  uint8_t *dst = b->scratch + b->used;
  memcpy(dst, data, len);
  b->used += len;
  struct iovec *last = b->n ? &b->iov[b->n - 1] : NULL;
  if (last && (uint8_t *)last->iov_base + last->iov_len == dst) {
    last->iov_len += len; /* the scratch segment grows */
  } else if (b->n < MPRPC__PACK_MAX_SEG) {
    b->iov[b->n].iov_base = dst;
    b->iov[b->n].iov_len = len;
    b->n++;
  } else {
    /* Unreachable: a reference is taken only with two segments free, and
     * the last copy segment always ends where the next copy goes. */
    b->overflow = true;
  }
}

static void pack_append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data) {
  pack_buf_t *b = (pack_buf_t *)buffer;
  if (len == 0 || b->overflow)
    return;
  b->total += len;
  /* A reference needs its own segment and, unless it ends the message, one
   * for the copies after it: keep two free. */
  if (len >= MPRPC__PACK_REF_MIN && b->n + 2 <= MPRPC__PACK_MAX_SEG) {
    b->iov[b->n].iov_base = (void *)(uintptr_t)data;
    b->iov[b->n].iov_len = len;
    b->n++;
    return;
  }
  copy_in(b, len, data);
}

int mprpc__pack_ref(const ProtobufCMessage *m, size_t plen, uint8_t *scratch,
                    struct iovec iov[MPRPC__PACK_MAX_SEG], int *iovcnt) {
  pack_buf_t b = {.base = {.append = pack_append},
                  .scratch = scratch,
                  .cap = plen,
                  .iov = iov};
  protobuf_c_message_pack_to_buffer(m, &b.base);
  *iovcnt = b.n;
  if (b.overflow || b.total != plen)
    return MPRPC_EINTERNAL;
  return 0;
}
