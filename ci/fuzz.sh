#!/usr/bin/env bash
# `make fuzz`: builds the fuzz harnesses with afl-clang-fast + ASan + UBSan
# (in $BUILD/afl, apart from the normal build) and runs afl-fuzz on them.
#
#   make fuzz FUZZ_TARGET=frame FUZZ_SECONDS=60   one target for 60 s
#   make fuzz                                     every fuzz/fuzz_*.c, 20 s each
#
# Ends with one line per target:
#   FUZZ target=NAME seconds=S execs=N execs_per_s=R paths=P crashes=C hangs=H
# and exits non-zero if any target crashed, hung or could not run. Crashing
# inputs are left in $BUILD/afl/out/NAME/default/crashes/ (add them to
# fuzz/corpus/NAME/ as regressions once fixed). docs/fuzzing.md explains
# long campaigns and the libFuzzer build.
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
OUT=$BUILD/afl
SECS=${FUZZ_SECONDS:-20}
JOBS=${FUZZ_JOBS:-2}
[[ "$SECS" =~ ^[0-9]+$ && "$SECS" -gt 0 ]] || { echo "fuzz: FUZZ_SECONDS must be a positive integer" >&2; exit 2; }

targets=()
if [[ -n "${FUZZ_TARGET:-}" ]]; then
  for t in ${FUZZ_TARGET//,/ }; do
    [[ -f fuzz/fuzz_$t.c ]] || { echo "fuzz: no harness fuzz/fuzz_$t.c" >&2; exit 2; }
    targets+=("$t")
  done
else
  for f in fuzz/fuzz_*.c; do
    [[ -f "$f" ]] || continue
    t=${f#fuzz/fuzz_}; targets+=("${t%.c}")
  done
fi
[[ ${#targets[@]} -gt 0 ]] || { echo "fuzz: no harnesses under fuzz/" >&2; exit 2; }

if ! command -v afl-clang-fast >/dev/null || ! command -v afl-fuzz >/dev/null; then
  bash ci/install-deps.sh || exit 2
fi
CC=afl-clang-fast

# --- build ------------------------------------------------------------------
# Generated protobuf-c code comes from the ordinary Makefile rules.
gen=()
for p in src/proto/*.proto; do [[ -f $p ]] && gen+=("$BUILD/gen/$(basename "${p%.proto}").pb-c.c"); done
for p in examples/*/*.proto; do [[ -f $p ]] && gen+=("$BUILD/gen/${p%.proto}.pb-c.c"); done
for p in tests/proto/*.proto; do [[ -f $p ]] && gen+=("$BUILD/gen/tests/$(basename "${p%.proto}").pb-c.c"); done
if [[ ${#gen[@]} -gt 0 ]]; then
  make -s BUILD="$BUILD" "${gen[@]}" || { echo "fuzz: protobuf generation failed" >&2; exit 2; }
fi

# -I. : harnesses include the shared fakes as "tests/support/fake_env.h".
incs=(-I. -Iinclude -Isrc -I"$BUILD/gen")
for d in "$BUILD"/gen/examples/*/; do [[ -d $d ]] && incs+=(-I"${d%/}"); done
[[ -d $BUILD/gen/tests ]] && incs+=(-I"$BUILD/gen/tests")
# No -Werror here: clang's warning set differs from the release compiler's
# and a warning must not stop a fuzzing campaign.
CFLAGS=(-std=c11 -D_GNU_SOURCE -DTHREADED "${incs[@]}" -g -O1 -pthread
        -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
# The core's and src/util's libraries, and OpenSSL for fuzz_tls (the one
# harness that links src/rt/tls*.c): harnesses never reach the rest of the
# runtime or ZooKeeper.
LIBS=(-lprotobuf-c -lsnappy -lz -lhttp_parser -ljansson -lssl -lcrypto -lpthread -lm)

# Everything a harness may call: the core, src/util, the simulator and the
# fake loop/transport/registry of tests/support (for connection harnesses),
# generated code; of src/rt only the TLS decorator (for fuzz_tls), never
# src/registry. Linked as an archive, so a harness pulls in only what it
# uses.
srcs=()
for f in src/core/*.c src/util/*.c src/rt/tls.c src/rt/tls_ctx.c sim/*.c tests/support/fake_*.c "${gen[@]}"; do
  [[ -f $f && $f != sim/main.c ]] && srcs+=("$f")
done

mkdir -p "$OUT/obj" "$OUT/bin" "$OUT/out"
newest_h=$(find include src fuzz tests/support "$BUILD/gen" -name '*.h' -printf '%T@\n' 2>/dev/null | sort -n | tail -1)
stale=()
objs=()
for s in "${srcs[@]}"; do
  o=$OUT/obj/${s//\//_}.o
  objs+=("$o")
  if [[ ! -f $o || $s -nt $o ]] || awk -v h="${newest_h:-0}" -v t="$(stat -c %Y "$o")" 'BEGIN{exit !(h>t)}'; then
    stale+=("$s")
  fi
done
if [[ ${#stale[@]} -gt 0 ]]; then
  echo "fuzz: compiling ${#stale[@]} files with $CC (ASan+UBSan)"
  export AFL_QUIET=1
  fail=0 running=0
  for s in "${stale[@]}"; do
    o=$OUT/obj/${s//\//_}.o
    "$CC" "${CFLAGS[@]}" -c "$s" -o "$o" &
    running=$((running + 1))
    if [[ $running -ge $JOBS ]]; then wait -n || fail=1; running=$((running - 1)); fi
  done
  while [[ $running -gt 0 ]]; do wait -n || fail=1; running=$((running - 1)); done
  [[ $fail -eq 0 ]] || { echo "fuzz: compilation failed" >&2; exit 2; }
fi
rm -f "$OUT/libmprpc-fuzz.a"
ar rcs "$OUT/libmprpc-fuzz.a" "${objs[@]}" || exit 2

for t in "${targets[@]}"; do
  # afl-clang-fast -fsanitize=fuzzer links AFL++'s libFuzzer-compatible
  # driver (persistent mode, shared-memory test cases).
  AFL_QUIET=1 $CC "${CFLAGS[@]}" -fsanitize=fuzzer "fuzz/fuzz_$t.c" "$OUT/libmprpc-fuzz.a" \
    "${LIBS[@]}" -o "$OUT/bin/fuzz_$t" || { echo "fuzz: building fuzz_$t failed" >&2; exit 2; }
done

# --- run ----------------------------------------------------------------------
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
export AFL_NO_AFFINITY=1 AFL_NO_CRASH_README=1
# afl-fuzz insists on these sanitizer settings; leaks are caught by the
# corpus replay in `make test` instead (persistent mode rarely exits).
export ASAN_OPTIONS=abort_on_error=1:symbolize=0:detect_leaks=0:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:symbolize=0

stat_of() { awk -F' *: *' -v k="$2" '$1 == k {print $2}' "$1"; }

lines=()
bad=0
for t in "${targets[@]}"; do
  outdir=$OUT/out/$t
  rm -rf "$outdir"
  in=fuzz/corpus/$t
  if [[ ! -d $in ]] || [[ -z $(ls -A "$in" 2>/dev/null) ]]; then
    in=$OUT/seed-$t; mkdir -p "$in"; printf 'PRPC\0\0\0\0\0\0\0\0' > "$in/empty_frame"
  fi
  dict=()
  [[ -f fuzz/dict/$t.dict ]] && dict=(-x "fuzz/dict/$t.dict")
  echo "fuzz: $t for ${SECS}s (corpus $in, log $outdir.log)"
  timeout -k 10 $((SECS + 120)) afl-fuzz -V "$SECS" -m none -t 1000 -i "$in" -o "$outdir" \
    "${dict[@]}" -- "$OUT/bin/fuzz_$t" >"$outdir.log" 2>&1
  rc=$?
  st=$outdir/default/fuzzer_stats
  if [[ ! -f $st ]]; then
    echo "fuzz: afl-fuzz did not start for $t (exit $rc); last lines of $outdir.log:" >&2
    tail -n 20 "$outdir.log" >&2
    lines+=("FUZZ target=$t seconds=0 execs=0 execs_per_s=0 paths=0 crashes=0 hangs=0")
    bad=1
    continue
  fi
  secs=$(stat_of "$st" run_time); execs=$(stat_of "$st" execs_done)
  paths=$(stat_of "$st" corpus_count)
  crashes=$(stat_of "$st" saved_crashes); hangs=$(stat_of "$st" saved_hangs)
  [[ -n $secs && $secs -gt 0 ]] || secs=$SECS
  rate=$(awk -v e="${execs:-0}" -v s="$secs" 'BEGIN{printf "%.0f", e / s}')
  lines+=("FUZZ target=$t seconds=$secs execs=${execs:-0} execs_per_s=$rate paths=${paths:-0} crashes=${crashes:-0} hangs=${hangs:-0}")
  if [[ ${crashes:-0} -gt 0 || ${hangs:-0} -gt 0 ]]; then
    bad=1
    echo "fuzz: $t: findings in $outdir/default/{crashes,hangs}/" >&2
  fi
  if [[ $rc -ne 0 ]]; then
    echo "fuzz: afl-fuzz exited $rc for $t; see $outdir.log" >&2
    bad=1
  fi
done

printf '%s\n' "${lines[@]}"
exit $bad
