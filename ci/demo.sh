#!/usr/bin/env bash
# make demo [REGISTRY=file] [TLS=1]: the seeds' user and friend services, end to end.
#
# TLS=1 runs every connection over mutual TLS: a test CA, a server
# certificate (SAN 127.0.0.1) and a client certificate are made with the
# openssl command into $BUILD/demo-tls/ (tests/support/tls_certs.sh), the
# providers take tls_mode=required and tls_verify_client=required (and so
# publish tls=1), the consumer tls=on with its client certificate.
#
# Starts a registry (a real ZooKeeper on loopback, or the file registry),
# two user providers and one friend provider on free ports, runs the
# consumer's one-round showcase, then runs the consumer in a loop for
# DEMO_SECONDS (default 12), SIGKILLs user provider A a quarter of the way in,
# restarts it on the same port half way through, and checks that no
# call failed and that A served calls again after rejoining. Everything it
# started is stopped (by PID) and its temp dir removed on exit; logs are kept
# when the demo fails or DEMO_KEEP=1.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BUILD:-build}/bin
MODE=${1:-zk}
SECS=${DEMO_SECONDS:-12}
RATE=${DEMO_RATE:-200}
TLS=${TLS:-}
[[ $TLS == 1 ]] || TLS=""

case "$MODE" in zk | file) ;; *) echo "usage: ci/demo.sh [zk|file]" >&2; exit 2 ;; esac
for p in user_provider friend_provider user_consumer; do
  [[ -x $BIN/$p ]] || { echo "demo: $BIN/$p is not built (run make)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/mprpc-demo.XXXXXX)
pids=()
zk_started=0
ok=0
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  ((zk_started)) && bash ci/zk.sh stop "$tmp/zk" >/dev/null 2>&1
  if ((ok)) && [[ -z ${DEMO_KEEP:-} ]]; then
    rm -rf "$tmp"
    echo "  (logs removed; DEMO_KEEP=1 keeps them)"
  else
    echo "logs kept in $tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
t0=$(date +%s.%N)
stamp() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%5.1fs", b - a }'; }
step() { printf '  %s  %s\n' "$(stamp)" "$*"; }
fail() { printf '  %s  FAILED: %s\n' "$(stamp)" "$*"; exit 1; }

tls_srv_conf="" tls_cli_conf=""
if [[ $TLS == 1 ]]; then
  certs=$(cd "${BUILD:-build}" && pwd)/demo-tls
  rm -rf "$certs" && mkdir -p "$certs"
  sh tests/support/tls_certs.sh "$certs" >"$tmp/certs.log" 2>&1 ||
    { cat "$tmp/certs.log" >&2; echo "demo: could not make certificates with openssl" >&2; exit 1; }
  tls_srv_conf="tls_mode=required
tls_cert=$certs/server.pem
tls_key=$certs/server.key
tls_ca=$certs/ca.pem
tls_verify_client=required"
  tls_cli_conf="tls=on
tls_ca=$certs/ca.pem
tls_cert=$certs/client.pem
tls_key=$certs/client.key"
fi

echo "mprpc demo: user and friend services, registry=$MODE${TLS:+, mutual TLS}   (logs: $tmp)"
[[ $TLS == 1 ]] && step "certificates (CA, server for 127.0.0.1, client CN=client1) in $certs"

# --- registry ---------------------------------------------------------------
if [[ $MODE == zk ]]; then
  zk=$(bash ci/zk.sh start "$tmp/zk" 2>"$tmp/zk.err") || fail "ZooKeeper did not start: $(cat "$tmp/zk.err")"
  zk_started=1
  reg_conf="zookeeperip=${zk%:*}
zookeeperport=${zk##*:}"
  step "ZooKeeper up on $zk"
else
  reg_conf="registry=file://$tmp/registry"
  step "file registry at $tmp/registry"
fi

# --- providers --------------------------------------------------------------
declare -A port pid_of
write_conf() { # name port
  printf '# demo config for %s\nrpcserverip=127.0.0.1\nrpcserverport=%s\n%s\n%s\n' "$1" "$2" "$reg_conf" "$tls_srv_conf" >"$tmp/$1.conf"
}
start_provider() { # name program
  local name=$1 prog=$2
  "$BIN/$prog" -i "$tmp/$name.conf" >>"$tmp/$name.out" 2>>"$tmp/$name.log" &
  pid_of[$name]=$!
  pids+=($!)
  for _ in $(seq 100); do
    grep -q " on 127.0.0.1:" "$tmp/$name.out" 2>/dev/null && return 0
    kill -0 "${pid_of[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  fail "$name did not start: $(tail -n 3 "$tmp/$name.log" "$tmp/$name.out" 2>/dev/null)"
}
for name in user-a user-b friend; do
  port[$name]=$(free_port)
  write_conf "$name" "${port[$name]}"
done
start_provider user-a user_provider
start_provider user-b user_provider
start_provider friend friend_provider
for name in user-a user-b friend; do
  step "$(printf '%-7s 127.0.0.1:%-6s pid %s' "$name" "${port[$name]}" "${pid_of[$name]}")"
done
printf '# consumer\n%s\n%s\n' "$reg_conf" "$tls_cli_conf" >"$tmp/consumer.conf"

# --- one round: successes, business errors, a framework error ----------------
echo
echo "one round of calls (business errors travel in ResultCode; framework errors in the controller):"
timeout 30 "$BIN/user_consumer" -i "$tmp/consumer.conf" >"$tmp/showcase.out" 2>>"$tmp/consumer.log" ||
  { sed 's/^/    /' "$tmp/showcase.out"; fail "the showcase round did not behave as expected"; }
sed 's/^/    /' "$tmp/showcase.out"

# --- the failover run ---------------------------------------------------------
echo
quarter=$(awk -v s="$SECS" 'BEGIN { printf "%.1f", s / 4 }')
step "consumer: Login + GetFriendsList, $RATE calls/s for ${SECS}s"
"$BIN/user_consumer" -i "$tmp/consumer.conf" -d "$SECS" -r "$RATE" -m \
  -P "all up,user-a killed,user-a restarted" >"$tmp/run.out" 2>>"$tmp/consumer.log" &
cpid=$!
pids+=($cpid)
sleep "$quarter"
# Braces with stderr redirected keep bash's "Killed" job notice off the screen.
{ kill -KILL "${pid_of[user-a]}"; wait "${pid_of[user-a]}"; } 2>/dev/null
kill -USR1 "$cpid"
step "user-a killed (SIGKILL)"
sleep "$quarter"
: >"$tmp/user-a.out"
# The new phase starts before the provider does: its first calls belong to it.
kill -USR1 "$cpid"
start_provider user-a user_provider
step "user-a restarted on 127.0.0.1:${port[user-a]} (pid ${pid_of[user-a]})"
for _ in $(seq $((SECS * 10 + 300))); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$cpid" 2>/dev/null
wait "$cpid"
crc=$?
step "consumer done"

# The builtin console of each provider, before they stop (docs/console.md).
for name in user-a user-b friend; do
  curl -s --max-time 5 "http://127.0.0.1:${port[$name]}/status" >"$tmp/$name.status" 2>/dev/null || true
done

# The mprpc command against the running demo (docs/cli.md): the registry's
# services and providers, and one call through the registry by reflection.
reg_uri=""
if [[ -z $TLS && -x $BIN/mprpc ]]; then
  if [[ $MODE == zk ]]; then reg_uri="zk://$zk"; else reg_uri="file://$tmp/registry"; fi
  "$BIN/mprpc" list "$reg_uri" >"$tmp/mprpc-list.out" 2>&1 || true
  "$BIN/mprpc" call "$reg_uri" fixbug.UserServiceRpc.Login '{"name":"zhang san","pwd":"123456"}' \
    >"$tmp/mprpc-call.out" 2>&1 || true
fi

# Stop the providers now so they report what they served.
for name in user-a user-b friend; do kill -TERM "${pid_of[$name]}" 2>/dev/null; done
for name in user-a user-b friend; do
  for _ in $(seq 50); do kill -0 "${pid_of[$name]}" 2>/dev/null || break; sleep 0.1; done
done

# --- summary ------------------------------------------------------------------
echo
# Endpoint columns get the provider names, padded to keep the alignment.
sedexpr=()
for name in user-a user-b friend; do
  ep="127.0.0.1:${port[$name]}"
  sedexpr+=(-e "s/ $ep\b/ $(printf "%${#ep}s" "$name")/g")
done
grep -v '^M ' "$tmp/run.out" | sed "${sedexpr[@]}" | sed 's/^./    &/'
echo

failed=$(sed -n 's/^M calls=[0-9]* failed=\([0-9]*\).*/\1/p' "$tmp/run.out")
calls=$(sed -n 's/^M calls=\([0-9]*\).*/\1/p' "$tmp/run.out")
rejoin=$(sed -n "s/^M served phase=3 endpoint=127.0.0.1:${port[user-a]} calls=\([0-9]*\)/\1/p" "$tmp/run.out")
self=$(sed -n 's/.*served \([0-9]*\) calls.*/\1/p' "$tmp/user-a.out" | tail -n 1)
[[ -n $calls && $calls -gt 0 ]] || fail "the consumer made no calls (exit $crc)"
[[ $failed == 0 && $crc == 0 ]] || fail "$failed of $calls calls failed"
[[ -n $rejoin && $rejoin -gt 0 ]] || fail "user-a did not serve calls after it was restarted"
echo "consoles (curl http://HOST:PORT/status, /metrics, /connections, /flags; docs/console.md):"
for name in user-a user-b friend; do
  printf '    %-7s http://127.0.0.1:%s/status\n' "$name" "${port[$name]}"
  grep -E '^(uptime_seconds|  method )' "$tmp/$name.status" 2>/dev/null | head -n 3 | sed 's/^ */        /'
done
echo
if [[ -n $reg_uri ]]; then
  echo "\$ mprpc list $reg_uri"
  sed 's/^/    /' "$tmp/mprpc-list.out"
  echo "\$ mprpc call $reg_uri fixbug.UserServiceRpc.Login '{\"name\":\"zhang san\",\"pwd\":\"123456\"}'"
  sed 's/^/    /' "$tmp/mprpc-call.out"
  echo
fi
printf '  PASS: %s calls, 0 failed; restarted user-a served %s calls after rejoining (its own count: %s)%s\n' \
  "$calls" "$rejoin" "${self:-?}" "${TLS:+, all over mutual TLS}"
ok=1
