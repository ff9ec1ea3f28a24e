/*
 * The mprpc.Reflection service (src/proto/reflection.proto): a provider's
 * list of services and their descriptors as FileDescriptorSets.
 *
 * Everything is computed when the service is created (descriptors of
 * compiled services never change), so the handlers only copy pointers: they
 * run on any loop thread at once without locks and cannot fail for lack of
 * memory. A request for an unknown service is answered with EREQUEST and a
 * text naming it; the provider keeps serving.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mprpc/errors.h"
#include "mprpc/reflection.h"
#include "mprpc/server.h"
#include "reflection.pb-c.h"

typedef struct refl {
  Mprpc__Reflection_Service svc; /* first: handlers cast back */
  size_t n;                      /* services, the reflection service included */
  char **names;                  /* sorted full names */
  uint8_t **sets;                /* sets[i] describes names[i] */
  size_t *lens;
  uint8_t *all;                  /* every service */
  size_t all_len;
} refl_t;

static void refl_list_services(Mprpc__Reflection_Service *svc, const Mprpc__ListServicesRequest *in,
                               Mprpc__ListServicesResponse_Closure done, void *data) {
  (void)in;
  refl_t *r = (refl_t *)svc;
  Mprpc__ListServicesResponse resp = MPRPC__LIST_SERVICES_RESPONSE__INIT;
  resp.n_service = r->n;
  resp.service = r->names;
  done(&resp, data);
}

static void refl_get_file_descriptor_set(Mprpc__Reflection_Service *svc, const Mprpc__GetFileDescriptorSetRequest *in,
                     Mprpc__GetFileDescriptorSetResponse_Closure done, void *data) {
  refl_t *r = (refl_t *)svc;
  Mprpc__GetFileDescriptorSetResponse resp = MPRPC__GET_FILE_DESCRIPTOR_SET_RESPONSE__INIT;
  resp.has_file_descriptor_set = 1;
  if (!in->service || !*in->service) {
    resp.file_descriptor_set.data = r->all;
    resp.file_descriptor_set.len = r->all_len;
    done(&resp, data);
    return;
  }
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->names[i], in->service) == 0) {
      resp.file_descriptor_set.data = r->sets[i];
      resp.file_descriptor_set.len = r->lens[i];
      done(&resp, data);
      return;
    }
  mprpc_server_call_t *call = mprpc_server_call_from(data);
  if (!call) {
    done(NULL, data);
    return;
  }
  char text[300];
  snprintf(text, sizeof text, "no service named '%.200s' here (ListServices lists them)",
           in->service);
  mprpc_server_call_set_error(call, MPRPC_EREQUEST, text);
  resp.has_file_descriptor_set = 0;
  done(&resp, data);
}

static void refl_destroy(Mprpc__Reflection_Service *svc) {
  mprpc_reflection_service_free(&svc->base);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int mprpc_reflection_service_new(ProtobufCService *const *services, size_t n,
                                 ProtobufCService **out) {
  if (!out || (n && !services))
    return MPRPC_EINVAL;
  *out = NULL;
  for (size_t i = 0; i < n; i++) {
    if (!services[i] || !services[i]->descriptor ||
        services[i]->descriptor->magic != PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC)
      return MPRPC_EINVAL;
    for (size_t j = 0; j < i; j++)
      if (strcmp(services[j]->descriptor->name, services[i]->descriptor->name) == 0)
        return MPRPC_EINVAL;
  }
  int rc = MPRPC_ENOMEM;
  const ProtobufCServiceDescriptor **sds = calloc(n + 1, sizeof *sds);
  refl_t *r = calloc(1, sizeof *r);
  if (!sds || !r)
    goto fail;
  Mprpc__Reflection_Service init = MPRPC__REFLECTION__INIT(refl_);
  r->svc = init;
  r->svc.base.destroy = (void (*)(ProtobufCService *))refl_destroy;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (services[i]->descriptor != &mprpc__reflection__descriptor)
      sds[k++] = services[i]->descriptor;
  sds[k++] = &mprpc__reflection__descriptor;
  r->n = k;
  r->names = calloc(k, sizeof *r->names);
  r->sets = calloc(k, sizeof *r->sets);
  r->lens = calloc(k, sizeof *r->lens);
  if (!r->names || !r->sets || !r->lens)
    goto fail;
  for (size_t i = 0; i < k; i++)
    if (!(r->names[i] = strdup(sds[i]->name)))
      goto fail;
  qsort(r->names, k, sizeof *r->names, cmp_str);
  for (size_t i = 0; i < k; i++) {
    const ProtobufCServiceDescriptor *one = NULL;
    for (size_t j = 0; j < k; j++)
      if (strcmp(sds[j]->name, r->names[i]) == 0)
        one = sds[j];
    if ((rc = mprpc_descriptor_set_build(&one, 1, &r->sets[i], &r->lens[i])) != 0)
      goto fail;
  }
  if ((rc = mprpc_descriptor_set_build(sds, k, &r->all, &r->all_len)) != 0)
    goto fail;
  free(sds);
  *out = &r->svc.base;
  return 0;
fail:
  free(sds);
  if (r)
    mprpc_reflection_service_free(&r->svc.base);
  return rc;
}

const ProtobufCServiceDescriptor *mprpc_reflection_descriptor(void) {
  return &mprpc__reflection__descriptor;
}

void mprpc_reflection_service_free(ProtobufCService *svc) {
  refl_t *r = (refl_t *)svc;
  if (!r)
    return;
  for (size_t i = 0; i < r->n; i++) {
    if (r->names)
      free(r->names[i]);
    if (r->sets)
      free(r->sets[i]);
  }
  free(r->names);
  free(r->sets);
  free(r->lens);
  free(r->all);
  free(r);
}
