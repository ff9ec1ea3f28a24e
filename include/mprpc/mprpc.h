/*
 * mprpc umbrella header: everything a provider or consumer program needs.
 * See README.md for a ten-line provider and consumer, docs/ for the rest.
 * Every function returns 0 or a negative MPRPC_E* code (mprpc/errors.h)
 * unless its comment says otherwise.
 */
#ifndef MPRPC_MPRPC_H
#define MPRPC_MPRPC_H

#include "mprpc/errors.h"
#include "mprpc/rand.h"
#include "mprpc/loop.h"
#include "mprpc/buf.h"
#include "mprpc/transport.h"
#include "mprpc/registry.h"
#include "mprpc/frame.h"
#include "mprpc/rt.h"
#include "mprpc/tls.h"
#include "mprpc/log.h"
#include "mprpc/config.h"
#include "mprpc/server.h"
#include "mprpc/trace.h"
#include "mprpc/controller.h"
#include "mprpc/channel.h"
#include "mprpc/json.h"
#include "mprpc/app.h"

#define MPRPC_VERSION "0.1.0"

#endif
