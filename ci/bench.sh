#!/usr/bin/env bash
# make bench: mprpc against the raw-epoll baseline, interleaved cell by cell.
#
#   BENCH_SECONDS=3      measurement window per cell (after a 0.5 s warmup)
#   BENCH_PAYLOADS="64 4096 65536"  BENCH_CONCURRENCY="1 16 64 256"
#   BENCH_IDLE_CONNS=10000          idle connections for the memory probe (0 = skip)
#   BENCH_ARGS="-t 1 -T 1 -n 1"     extra arguments for both programs
#   BENCH_REPEAT=1       runs per cell and impl; the median-qps run is reported
#   BENCH_OVERLOAD_S=30  the overload cell's simulated seconds (0 = skip)
#   BENCH_TLS=1          also the TLS rows (0 = skip): impl=mprpc-tls against
#                        impl=mprpc, both on ONE connection (-n 1 -T 1), payloads
#                        {BENCH_TLS_PAYLOADS:-64 4096} x concurrency
#                        {BENCH_TLS_CONCURRENCY:-1 64}, then new TLS connections
#                        per second without and with session resumption
#                        (BENCH_TLS_HANDSHAKES=2000 each); certificates are made
#                        with openssl into $BUILD/bench-tls
#   BENCH_SYNC_PAYLOADS="64 4096"  BENCH_SYNC_THREADS="1 16 64"  (empty = skip)
#       synchronous cells: mprpc-bench --sync -T N (N threads calling the stub
#       on one shared channel) against baseline_echo --sync -T N (N blocking
#       raw-socket callers)
#   BENCH_CONNS_CELLS=1  also the sync cells with connections_per_endpoint=2
#       against a 2-thread provider (impl=mprpc-sync-c2 / baseline-sync-c2; 0 = skip)
#
# Prints one machine-readable line per run:
#   BENCH impl=mprpc payload=64 concurrency=16 qps=... p50_us=... p99_us=... cpu_pct=...
#   BENCH impl=mprpc-sync payload=64 concurrency=16 ...   (concurrency = threads)
# then a table, RATIO lines (each mprpc impl over its baseline, plus sync over
# async at the same payload and concurrency), build/bench/bench.svg (qps and
# p99 against concurrency) with the BENCH lines in build/bench/bench.txt, the
# provider's memory per idle connection, HANDOFF lines (the sync ceiling:
# threads blocking on one loop with no RPC, beside the 64 B cells) and the
# async logger's lines/s.
# Everything runs on 127.0.0.1; each program is bounded by `timeout` and stops
# the servers it started.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD:-build}/bin
SECS=${BENCH_SECONDS:-3}
PAYLOADS=${BENCH_PAYLOADS:-64 4096 65536}
CONCS=${BENCH_CONCURRENCY:-1 16 64 256}
IDLE=${BENCH_IDLE_CONNS:-10000}
ARGS=${BENCH_ARGS:-}
REPEAT=${BENCH_REPEAT:-1}
SYNC_PAYLOADS=${BENCH_SYNC_PAYLOADS-64 4096}
SYNC_THREADS=${BENCH_SYNC_THREADS-1 16 64}
CONNS_CELLS=${BENCH_CONNS_CELLS:-1}
OUT=${BUILD:-build}/bench
LIMIT=$(awk -v s="$SECS" 'BEGIN { printf "%d", s + 30 }')

have_mprpc=1
[[ -x $BIN/mprpc-bench ]] || { have_mprpc=0; echo "bench: $BIN/mprpc-bench not built; baseline only"; }
[[ -x $BIN/baseline_echo ]] || { echo "bench: $BIN/baseline_echo missing (run make)"; exit 1; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
echo "bench: $(nproc) cores, ${SECS}s x $REPEAT per cell and impl, payloads {$PAYLOADS} x concurrency {$CONCS}, load average $(loadavg)"
results=$(mktemp /tmp/mprpc-bench.XXXXXX)
trap 'rm -f "$results"' EXIT

# impl payload conc [extra args] -> one BENCH line on stdout. impl names the cell:
# mprpc / baseline (async, -c conc), mprpc-sync / baseline-sync (--sync -T
# conc), mprpc-sync-c2 / baseline-sync-c2 (the same against a 2-thread
# provider, mprpc with 2 connections per endpoint). The line's impl= is the
# cell's name.
run_once() {
  local impl=$1 prog=$BIN/baseline_echo extra=${4:-}
  [[ $impl == mprpc* ]] && prog=$BIN/mprpc-bench
  local -a cell
  case $impl in
  mprpc | mprpc-tls | baseline) cell=(-c "$3") ;;
  mprpc-sync | baseline-sync) cell=(--sync -T "$3") ;;
  mprpc-sync-c2) cell=(--sync -T "$3" -t 2 -n 2) ;;
  baseline-sync-c2) cell=(--sync -T "$3" -t 2) ;;
  esac
  local out
  # shellcheck disable=SC2086
  out=$(timeout "$LIMIT" "$prog" -s "$2" "${cell[@]}" -d "$SECS" $ARGS $extra 2>&1)
  local line; line=$(grep '^BENCH ' <<<"$out" | sed -E "s/^BENCH impl=[^ ]+/BENCH impl=$impl/")
  if [[ -z $line ]]; then
    line="BENCH impl=$impl payload=$2 concurrency=$3 qps=0 p50_us=0 p99_us=0 cpu_pct=0"
    echo "bench: $impl payload=$2 concurrency=$3 failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')" >&2
  fi
  echo "$line"
}

# The run with the median qps of REPEAT runs per impl (REPEAT=1: the run).
median() { awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^qps=/) { split($i, a, "="); print a[2], $0 } }' |
  sort -n | awk '{ l[NR] = $0 } END { m = l[int((NR + 1) / 2)]; sub(/^[^ ]* /, "", m); print m }'; }

cell() { # mode payload conc: baseline and mprpc runs of one cell, interleaved
  local sfx=$1 base_runs="" mprpc_runs=""
  for _ in $(seq "$REPEAT"); do # interleaved: both see the same minute
    base_runs+=$(run_once "baseline$sfx" "$2" "$3")$'\n'
    ((have_mprpc)) && mprpc_runs+=$(run_once "mprpc$sfx" "$2" "$3")$'\n'
  done
  median <<<"${base_runs%$'\n'}" | tee -a "$results"
  ((have_mprpc)) && median <<<"${mprpc_runs%$'\n'}" | tee -a "$results"
}

for p in $PAYLOADS; do
  for c in $CONCS; do
    cell "" "$p" "$c"
  done
done
for p in $SYNC_PAYLOADS; do
  for c in $SYNC_THREADS; do
    cell -sync "$p" "$c"
    ((CONNS_CELLS)) && cell -sync-c2 "$p" "$c"
  done
done

echo
echo "bench: load average at the end $(loadavg) (other processes share these cores; compare ratios)"
awk '
function kv(line, key,   i, n, f, a) {
  n = split(line, f, " ")
  for (i = 1; i <= n; i++) { split(f[i], a, "="); if (a[1] == key) return a[2] }
  return ""
}
# Each cell pairs mprpc<sfx> with baseline<sfx>: sfx "" (async), "-sync", "-sync-c2".
/^BENCH / {
  impl = kv($0, "impl"); sfx = impl; sub(/^(mprpc|baseline)/, "", sfx)
  side = impl ~ /^baseline/ ? "b" : "m"
  k = sfx " " kv($0, "payload") " " kv($0, "concurrency")
  if (!(k in seen)) { seen[k] = 1; order[++n] = k }
  qps[side, k] = kv($0, "qps"); p50[side, k] = kv($0, "p50_us")
  p99[side, k] = kv($0, "p99_us"); cpu[side, k] = kv($0, "cpu_pct")
}
END {
  printf "%-13s %7s %5s | %9s %8s %8s %5s | %9s %8s %8s %5s | %6s %6s\n", "impl", "payload", "conc",
    "base qps", "p50 us", "p99 us", "cpu%", "mprpc qps", "p50 us", "p99 us", "cpu%", "qps x", "p50 x"
  for (i = 1; i <= n; i++) {
    k = order[i]; split(k, pc, " ")
    if (k ~ /^ /) { sfx = ""; pl = pc[1]; cc = pc[2] } else { sfx = pc[1]; pl = pc[2]; cc = pc[3] }
    bq = qps["b", k] + 0; mq = qps["m", k] + 0
    bl = p50["b", k] + 0; ml = p50["m", k] + 0
    qr = bq > 0 ? mq / bq : 0; lr = bl > 0 ? ml / bl : 0
    printf "%-13s %7s %5s | %9.0f %8.1f %8.1f %5.0f | %9.0f %8.1f %8.1f %5.0f | %6.2f %6.2f\n",
      "mprpc" sfx, pl, cc, bq, bl, p99["b", k], cpu["b", k],
      mq, ml, p99["m", k], cpu["m", k], qr, lr
    if (sfx == "")
      ratios = ratios sprintf("RATIO payload=%s concurrency=%s qps_ratio=%.3f p50_ratio=%.3f\n", pl, cc, qr, lr)
    else
      ratios = ratios sprintf("RATIO impl=mprpc%s payload=%s concurrency=%s qps_ratio=%.3f p50_ratio=%.3f\n", sfx, pl, cc, qr, lr)
    a = " " pl " " cc  # the async cell with the same payload and concurrency
    if (sfx != "" && (a in seen) && qps["m", a] + 0 > 0 && p50["m", a] + 0 > 0)
      ratios = ratios sprintf("RATIO sync_vs_async impl=mprpc%s payload=%s concurrency=%s qps_ratio=%.3f p50_ratio=%.3f\n",
        sfx, pl, cc, mq / qps["m", a], ml / p50["m", a])
  }
  printf "\n%s", ratios
}' "$results"

# --- TLS: the decorator's cost on one connection, and handshakes -------------
if ((have_mprpc)) && [[ ${BENCH_TLS:-1} != 0 ]]; then
  certs=$(cd "${BUILD:-build}" && pwd)/bench-tls
  rm -rf "$certs" && mkdir -p "$certs"
  if sh tests/support/tls_certs.sh "$certs" >/dev/null 2>&1; then
    echo
    echo "bench: TLS rows (one connection each; certificates in $certs)"
    tls_results=$(mktemp /tmp/mprpc-bench-tls.XXXXXX)
    for p in ${BENCH_TLS_PAYLOADS:-64 4096}; do
      for c in ${BENCH_TLS_CONCURRENCY:-1 64}; do
        plain_runs=""; tls_runs=""
        for _ in $(seq "$REPEAT"); do
          plain_runs+=$(run_once mprpc "$p" "$c" "-n 1 -T 1")$'\n'
          tls_runs+=$(run_once mprpc-tls "$p" "$c" "-n 1 -T 1 --tls $certs")$'\n'
        done
        median <<<"${plain_runs%$'\n'}" | sed 's/impl=mprpc /impl=mprpc-1conn /' | tee -a "$tls_results"
        median <<<"${tls_runs%$'\n'}" | tee -a "$tls_results"
      done
    done
    # TLSRATIO: mprpc-tls / mprpc on one connection (goals: qps >= 0.6 at
    # 64 B x 64, >= 0.5 at 4 KiB x 64; p50 <= 1.3 at concurrency 1).
    awk '
    function kv(line, key,   i, n, f, a) {
      n = split(line, f, " ")
      for (i = 1; i <= n; i++) { split(f[i], a, "="); if (a[1] == key) return a[2] }
      return ""
    }
    /^BENCH / { k = kv($0, "payload") " " kv($0, "concurrency"); i = kv($0, "impl")
                if (!(k in seen)) { seen[k] = 1; order[++n] = k }
                q[i, k] = kv($0, "qps") + 0; l[i, k] = kv($0, "p50_us") + 0 }
    END { for (j = 1; j <= n; j++) { k = order[j]; split(k, pc, " ")
            pq = q["mprpc-1conn", k]; pl = l["mprpc-1conn", k]
            qr = 0; if (pq > 0) qr = q["mprpc-tls", k] / pq
            lr = 0; if (pl > 0) lr = l["mprpc-tls", k] / pl
            printf "TLSRATIO payload=%s concurrency=%s qps_ratio=%.3f p50_ratio=%.3f\n", pc[1], pc[2], qr, lr } }' "$tls_results"
    rm -f "$tls_results"
    timeout 120 "$BIN/mprpc-bench" --tls "$certs" --tls-handshakes "${BENCH_TLS_HANDSHAKES:-2000}" 2>&1 |
      grep -E '^(HANDSHAKE|mprpc-bench)' || echo "bench: TLS handshake probe failed"
  else
    echo "bench: openssl could not make certificates; TLS rows skipped"
  fi
fi

mkdir -p "$OUT"
cp "$results" "$OUT/bench.txt"
if [[ -x $BIN/bench_svg ]]; then
  if "$BIN/bench_svg" "Echo: mprpc and the raw-socket baseline, $(nproc) cores, ${SECS}s per cell, $(date -u +%Y-%m-%d)" \
    <"$results" >"$OUT/bench.svg"; then
    echo "bench: wrote $OUT/bench.svg and $OUT/bench.txt"
  else
    echo "bench: bench_svg failed"
  fi
else
  echo "bench: $BIN/bench_svg not built; no picture"
fi

if ((have_mprpc)) && [[ $IDLE -gt 0 ]]; then
  echo
  timeout 90 "$BIN/mprpc-bench" --idle-conns "$IDLE" 2>&1 | grep -E '^(IDLE|mprpc-bench)' ||
    echo "bench: idle-connection probe failed"
fi

# The overload cell (docs/governance.md): two serial providers of 200
# calls/s offered twice that, max_concurrency.Echo=auto against no limit.
# It runs in the simulator's virtual time, so the figures do not depend on
# this machine's load: goodput and p99 of admitted calls, side by side.
OVERLOAD_S=${BENCH_OVERLOAD_S:-30}
if [[ $OVERLOAD_S -gt 0 && -x $BIN/mprpc-sim ]]; then
  echo
  for lim in auto none; do
    timeout 600 "$BIN/mprpc-sim" --scenario gov_overload --seed 1 --duration-s "$OVERLOAD_S" \
      --gov-limit "$lim" 2>&1 | grep '^OVERLOAD ' || echo "bench: overload cell ($lim) failed"
  done | tee "$results.ol"
  awk '/^OVERLOAD / { for (i = 1; i <= NF; i++) { split($i, a, "="); v[a[1]] = a[2] }
         printf "overload 2x capacity: limit=%-4s goodput %6s/s of %s/s (%5s%%)  p99 %8s ms\n",
           v["limit"], v["goodput_per_s"], v["capacity_per_s"], v["goodput_pct"], v["p99_ms"] }' "$results.ol"
  rm -f "$results.ol"
fi

# The hand-off ceiling: N threads posting to one loop and blocking, with no
# RPC at all (tests/bench/handoff_bench.c). HANDOFF lines put it beside the
# 64 B async cell at the same concurrency from this run: the most N sync
# callers could reach here if the call itself cost nothing.
if [[ -x $BIN/handoff_bench && -n $SYNC_THREADS ]]; then
  echo
  for t in $SYNC_THREADS; do
    timeout 60 "$BIN/handoff_bench" -T "$t" -d "$SECS" 2>&1 | grep -E '^(BENCH|handoff_bench)' ||
      echo "bench: handoff_bench -T $t failed"
  done | tee "$results.ho"
  awk 'function kv(line, key,   i, n, f, a) {
         n = split(line, f, " ")
         for (i = 1; i <= n; i++) { split(f[i], a, "="); if (a[1] == key) return a[2] }
         return "" }
       FNR == NR { if (kv($0, "impl") == "mprpc" && kv($0, "payload") == 64)
                     q[kv($0, "concurrency")] = kv($0, "qps") + 0
                   if (kv($0, "impl") == "mprpc-sync" && kv($0, "payload") == 64)
                     s[kv($0, "concurrency")] = kv($0, "qps") + 0
                   next }
       /^BENCH impl=handoff/ { t = kv($0, "threads"); h = kv($0, "per_s") + 0
         printf "HANDOFF threads=%s per_s=%.0f us_each=%.1f of_async_64=%.3f sync_64_of_ceiling=%.3f\n", t, h, (h > 0 ? t * 1e6 / h : 0),
           (q[t] > 0 ? h / q[t] : 0), (h > 0 ? s[t] / h : 0) }' "$results" "$results.ho"
  rm -f "$results.ho"
fi

if [[ -x $BIN/log_bench ]]; then
  echo
  timeout 60 "$BIN/log_bench" 2>&1 | tail -n 5 || echo "bench: log_bench failed"
else
  echo "bench: $BIN/log_bench not built; logger lines/s skipped"
fi
