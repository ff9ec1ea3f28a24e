#!/usr/bin/env bash
# Runs every test binary (cmocka, ASan+UBSan), the fuzz corpora replays and
# the simulator's quick sweep, with a real ZooKeeper on loopback for the
# registry tests. Ends with one line "tests: N passed, N failed".
set -uo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

zkdir=$(mktemp -d /tmp/mprpc-test-zk.XXXXXX)
cleanup() { bash ci/zk.sh stop "$zkdir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
if MPRPC_TEST_ZK=$(bash ci/zk.sh start "$zkdir" 2>"$zkdir.err"); then
  export MPRPC_TEST_ZK
  echo "tests: ZooKeeper on $MPRPC_TEST_ZK"
else
  echo "tests: could not start ZooKeeper: $(cat "$zkdir.err")" >&2
  echo "tests: 0 passed, 1 failed"
  exit 1
fi
rm -f "$zkdir.err"

passed=0; failed=0; failed_names=()
run() { # name cmd...
  local name=$1; shift
  local log; log=$(mktemp)
  local t0=$SECONDS
  if timeout "${TEST_TIMEOUT:-600}" "$@" >"$log" 2>&1; then
    passed=$((passed + 1)); echo "PASS $name ($((SECONDS - t0))s)"
    grep -E '^\[  (PASSED|FAILED|  SKIP)' "$log" | sed 's/^/     /'
  else
    failed=$((failed + 1)); failed_names+=("$name"); echo "FAIL $name"
    tail -n 60 "$log" | sed 's/^/     /'
  fi
  rm -f "$log"
}

for t in "$BUILD"/asan/tests/test_*; do
  [[ -x "$t" ]] || continue
  run "$(basename "$t")" "$t"
done

for h in "$BUILD"/asan/fuzz/fuzz_*; do
  [[ -x "$h" ]] || continue
  target=${h##*/fuzz_}
  run "replay fuzz/corpus/$target" "$h" "fuzz/corpus/$target"
done

# The shared library exports the public API only (docs/design.md).
if [[ -f "$BUILD/libmprpc.so" ]]; then
  run "exports of libmprpc.so are the public API" bash -c \
    "nm -D --defined-only '$BUILD/libmprpc.so' | awk '{print \$3}' | grep -vxE 'mprpc_[a-z0-9_]+|mprpc__log_(level|write)' | sed 's/^/not public: /' | { ! grep .; }"
fi

# README's example, built by a user after make install: pkg-config, shared
# and static (tests/test_install.sh).
if [[ -f "$BUILD/libmprpc.so" && -f "$BUILD/libmprpc.a" ]]; then
  run "install: README's programs via pkg-config, shared and static" bash tests/test_install.sh "$BUILD"
fi

# docs/protocol.md, as read by a client that knows nothing else, against
# the real provider.
if [[ -x "$BUILD/bin/echo_server" ]] && command -v python3 >/dev/null; then
  run "protocol check (docs/protocol.md vs echo_server)" \
    python3 ci/protocol_check.py --spawn "$BUILD/bin/echo_server"
fi

if [[ -f sim/main.c ]]; then
  run "sim quick sweep" "$BUILD"/asan/bin/mprpc-sim --all --seeds "${SIM_TEST_SEEDS:-5}"
fi

echo
if [[ $failed -gt 0 ]]; then echo "failed: ${failed_names[*]}"; fi
echo "tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
