#!/usr/bin/env bash
# README's quick example, as a user would build it: `make install` into a
# temporary prefix, the README's greeter.proto and its two programs
# (extracted from README.md's code blocks, so the page cannot drift), built
# with pkg-config against the shared library and, fully static, against
# libmprpc.a (`pkg-config --static`), then a provider on port 0 and a
# consumer against it through the file registry, each bounded by timeout.
# Usage: tests/test_install.sh [BUILD]   (run by ci/run-tests.sh)
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
root=$PWD

tmp=$(mktemp -d /tmp/mprpc-test-install.XXXXXX)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "test_install: FAIL: $*" >&2; exit 1; }

make -s -C "$root" install BUILD="$BUILD" PREFIX="$tmp/usr" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; fail "make install"; }
export PKG_CONFIG_PATH=$tmp/usr/lib/pkgconfig
pkg-config --exists mprpc || fail "pkg-config does not find mprpc.pc"

# The code blocks of "## Write your own service": the .proto, then the
# provider and the consumer.
awk '/^## Write your own service/{on=1} /^## Documentation/{on=0}
     on && /^```proto$/{f="greeter.proto"; next}
     on && /^```c$/{n++; f=(n==1 ? "provider.c" : n==2 ? "consumer.c" : ""); next}
     /^```/{f=""; next}
     f{print > (dir "/" f)}' dir="$tmp" README.md
for f in greeter.proto provider.c consumer.c; do
  [[ -s $tmp/$f ]] || fail "README.md has no $f block"
done
# The build lines README gives, checked to be there as written.
grep -qF 'cc -o provider provider.c greeter.pb-c.c $(pkg-config --cflags --libs mprpc)' README.md ||
  fail "README's shared build line changed; update this test"
grep -qF 'cc -static -o provider provider.c greeter.pb-c.c $(pkg-config --cflags --libs --static mprpc)' README.md ||
  fail "README's static build line changed; update this test"

cd "$tmp"
protoc-c --c_out=. greeter.proto
for p in provider consumer; do
  # shellcheck disable=SC2046
  cc -o "$p" "$p.c" greeter.pb-c.c $(pkg-config --cflags --libs mprpc) 2>"$p.cc.log" ||
    { cat "$p.cc.log"; fail "shared build of $p"; }
  # shellcheck disable=SC2046
  cc -static -o "$p-static" "$p.c" greeter.pb-c.c $(pkg-config --cflags --libs --static mprpc) \
    2>"$p-static.cc.log" || { cat "$p-static.cc.log"; fail "static build of $p"; }
done
ldd ./provider | grep -q "libmprpc.so.0 => $tmp/usr/lib" ||
  LD_LIBRARY_PATH=$tmp/usr/lib ldd ./provider | grep -q "libmprpc.so.0 => $tmp/usr/lib" ||
  fail "the shared provider does not use the installed libmprpc.so"
if ldd ./provider-static >/dev/null 2>&1; then fail "provider-static is not static"; fi

run_pair() { # suffix
  local sfx=$1 reg="$tmp/reg$1"
  printf 'rpcserverip=127.0.0.1\nrpcserverport=0\nregistry=file://%s\n' "$reg" >provider.conf
  printf 'registry=file://%s\ntimeout=5s\n' "$reg" >consumer.conf
  LD_LIBRARY_PATH=$tmp/usr/lib timeout 60 "./provider$sfx" -i provider.conf >"provider$sfx.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    grep -q demo.Greeter "$reg" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "provider$sfx.log"; fail "provider$sfx exited"; }
    sleep 0.05
  done
  grep -q demo.Greeter "$reg" || { cat "provider$sfx.log"; fail "provider$sfx did not register"; }
  out=$(LD_LIBRARY_PATH=$tmp/usr/lib timeout 20 "./consumer$sfx" -i consumer.conf 2>&1) ||
    { echo "$out"; fail "consumer$sfx failed"; }
  grep -qx 'hello, mprpc' <<<"$out" || { echo "$out"; fail "consumer$sfx printed no greeting"; }
  grep -q 'registry: registered demo.Greeter at 127.0.0.1:' "provider$sfx.log" ||
    { cat "provider$sfx.log"; fail "provider$sfx did not log its registration"; }
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  echo "test_install: README's provider and consumer ($([[ -n $sfx ]] && echo static || echo shared)): ok"
}
run_pair ""
run_pair "-static"
