/*
 * What the shared library exports. The library is built with
 * -fvisibility=hidden; every public header wraps its declarations in
 * MPRPC_BEGIN_DECLS / MPRPC_END_DECLS, which make them visible (and
 * extern "C" for C++). Internal mprpc__ functions stay hidden, so
 * `nm -D libmprpc.so` lists the public API only (plus the two mprpc__log_
 * symbols the MPRPC_LOG_* macros expand to).
 */
#ifndef MPRPC_EXPORT_H
#define MPRPC_EXPORT_H

#ifdef __cplusplus
#define MPRPC_BEGIN_DECLS extern "C" { _Pragma("GCC visibility push(default)")
#define MPRPC_END_DECLS _Pragma("GCC visibility pop") }
#else
#define MPRPC_BEGIN_DECLS _Pragma("GCC visibility push(default)")
#define MPRPC_END_DECLS _Pragma("GCC visibility pop")
#endif

#endif
