/* One fake environment; see fake_env.h. */
#include "fake_env.h"

#include <string.h>

void fake_env_init(fake_env_t *e, const fake_loop_opts_t *lo, const fake_net_opts_t *no) {
  memset(e, 0, sizeof *e);
  e->L = fake_loop_new(lo);
  e->net = fake_net_new(no);
  e->loop = fake_loop_seam(e->L);
  e->tr = fake_net_transport(e->net);
}

void fake_env_free(fake_env_t *e) {
  if (e->L)
    fake_loop_run(e->L);
  fake_net_free(e->net);
  fake_loop_free(e->L);
  memset(e, 0, sizeof *e);
}
