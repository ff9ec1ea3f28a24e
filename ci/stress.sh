#!/usr/bin/env bash
# make stress: hostile load on loopback against a real echo_server started
# with max_buffered_bytes = 128 MiB, one fresh server per attack, while a
# well-behaved echo_client keeps 8 calls in flight beside the attack
# (docs/server.md, "Limits and refusals"). One line per attack:
#
#   STRESS attack=NAME legit_calls=N legit_failed=F legit_p99_us=P server_rss_max_kb=R refused=K
#
# refused is the server's refusal counters summed (budget, header_timeout,
# slow_body, max_connections, per_ip). The run fails when a legitimate call
# fails, when the server's resident memory (VmRSS from /proc, sampled every
# 200 ms) passes the budget + 64 MiB, or when the server dies.
#
#   bash ci/stress.sh [BUILD]            about 15 s per attack
#   STRESS_QUICK=1 bash ci/stress.sh     a few seconds and fewer connections
#                                        per attack (run by make test)
# STRESS_SECONDS overrides the attack length, STRESS_ATTACKS the list
# ("NAME:CONNECTIONS ..."). Every process started here is
# stopped by its PID; everything is bounded in time.
set -uo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
BIN=$BUILD/bin
QUICK=${STRESS_QUICK:-0}
if [[ $QUICK == 1 ]]; then
  SECS=${STRESS_SECONDS:-4}
  ATTACKS="trickle:8 slowloris:400 churn:16 garbage:20 noread:200"
else
  SECS=${STRESS_SECONDS:-15}
  ATTACKS="trickle:40 slowloris:5000 churn:64 garbage:100 noread:2000"
fi
ATTACKS=${STRESS_ATTACKS:-$ATTACKS} # e.g. "trickle:40 noread:2000"
BUDGET_MB=128
LIMIT_KB=$(((BUDGET_MB + 64) * 1024))

for p in echo_server echo_client mprpc-attack; do
  [[ -x $BIN/$p ]] || { echo "stress: $BIN/$p is not built (make stress builds it)" >&2; exit 1; }
done
# 5,000 slowloris connections need descriptors on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d /tmp/mprpc-stress.XXXXXX)
spid="" cpid="" mpid=""
stop_pid() { # pid: TERM, then KILL after 10 s
  local pid=$1
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$cpid"; stop_pid "$mpid"; stop_pid "$spid"
  rm -rf "$work"
}
trap cleanup EXIT

failures=0
for spec in $ATTACKS; do
  name=${spec%%:*} conns=${spec##*:}
  cat >"$work/server.conf" <<EOF
rpcserverip = 127.0.0.1
rpcserverport = 0
max_buffered_bytes = ${BUDGET_MB}MiB
log_level = warn
EOF
  "$BIN/echo_server" -i "$work/server.conf" >"$work/server.out" 2>"$work/server.err" &
  spid=$!
  port=""
  for _ in $(seq 100); do
    port=$(sed -n 's/^echo_server: listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/server.out")
    [[ -n $port ]] && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $port ]]; then
    echo "stress: $name: echo_server did not start: $(tail -n 5 "$work/server.err")" >&2
    failures=$((failures + 1)); stop_pid "$spid"; spid=""; continue
  fi

  # Resident memory of the server, sampled until the stop file appears.
  rm -f "$work/stop"; echo 0 >"$work/rss"
  (
    max=0
    while [[ ! -e $work/stop ]]; do
      v=$(awk '/^VmRSS:/ {print $2}' "/proc/$spid/status" 2>/dev/null)
      if [[ -n $v && $v -gt $max ]]; then max=$v; echo "$max" >"$work/rss"; fi
      sleep 0.2
    done
  ) &
  mpid=$!

  "$BIN/echo_client" --server "127.0.0.1:$port" --duration-s $((SECS + 2)) --concurrency 8 \
    --timeout-ms 5000 >"$work/client.out" 2>&1 &
  cpid=$!
  sleep 1
  timeout $((SECS + 30)) "$BIN/mprpc-attack" --port "$port" --attack "$name" --conns "$conns" \
    --duration-s "$SECS" >"$work/attack.out" 2>&1
  wait "$cpid"; crc=$?; cpid=""
  alive=1; kill -0 "$spid" 2>/dev/null || alive=0
  touch "$work/stop"; wait "$mpid" 2>/dev/null; mpid=""
  stop_pid "$spid"; spid=""

  line=$(grep '^echo_client: calls=' "$work/client.out" | tail -n 1)
  calls=$(sed -n 's/.*calls=\([0-9]*\).*/\1/p' <<<"$line")
  failed=$(sed -n 's/.* failed=\([0-9]*\).*/\1/p' <<<"$line")
  p99=$(sed -n 's/.* p99_us=\([0-9]*\).*/\1/p' <<<"$line")
  rss=$(cat "$work/rss")
  refused=$(sed -n 's/^echo_server: refused //p' "$work/server.out" |
    awk '{ s = 0; for (i = 1; i <= NF; i++) { split($i, kv, "=");
           if (kv[1] ~ /^(budget|header_timeout|slow_body|max_connections|per_ip)$/) s += kv[2] }
           print s }')
  echo "STRESS attack=$name legit_calls=${calls:-0} legit_failed=${failed:-unknown}" \
    "legit_p99_us=${p99:-0} server_rss_max_kb=$rss refused=${refused:-unknown}"
  why=()
  [[ $alive == 1 ]] || why+=("the server died")
  [[ -n $failed && $failed == 0 && $crc == 0 ]] || why+=("legitimate calls failed: $(grep '^error ' "$work/client.out" | tr '\n' ' ')")
  [[ ${calls:-0} -gt 0 ]] || why+=("no legitimate call completed")
  [[ $rss -le $LIMIT_KB ]] || why+=("server RSS ${rss} kB over the budget + 64 MiB (${LIMIT_KB} kB)")
  if [[ ${#why[@]} -gt 0 ]]; then
    failures=$((failures + 1))
    for w in "${why[@]}"; do echo "stress: $name: $w" >&2; done
    echo "stress: $name: $(cat "$work/attack.out")" >&2
    tail -n 5 "$work/server.err" | sed "s/^/stress: $name: server: /" >&2
  fi
done
[[ $failures -eq 0 ]]
