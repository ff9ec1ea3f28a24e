#!/usr/bin/env bash
# Real ZooKeeper check of the config centre (issue 22, docs/governance.md):
# two echo_servers register in ZooKeeper; an echo_client calls them through
# the registry; `disabled.HOST:PORT=1` is written to
# /mprpc/config/example.EchoService with ZooKeeper's own CLI (zkCli's
# ZooKeeperMain); the client's calls must stop reaching that provider within
# a second (with slack for a loaded machine), and the other provider takes
# them all. Prints the apply latency it measured:
#   GOV apply_latency_ms=N (config written -> channel's view changed)
#   GOV stop_latency_ms=N  (config written -> last call to the provider)
# Usage: tests/test_gov_zk.sh BUILD_DIR   (needs MPRPC_TEST_ZK=host:port)
set -euo pipefail
BUILD=${1:-build}
ZK=${MPRPC_TEST_ZK:?set MPRPC_TEST_ZK (ci/zk.sh start DIR)}
BIN=$BUILD/bin
SLACK_MS=${GOV_SLACK_MS:-2000} # on top of the 1 s requirement: shared, loaded machines
CHROOT=/mprpc-gov-$$
URI="zk://$ZK$CHROOT"
work=$(mktemp -d /tmp/mprpc-gov-zk.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

zkcli() { # zkCli command... (quiet; its output on stdout)
  java -cp '/usr/share/java/*' -Dzookeeper.log.threshold=ERROR -Dlog4j.configuration= \
    org.apache.zookeeper.ZooKeeperMain -server "$ZK" "$@" 2>/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

p1=$(free_port); p2=$(free_port)
"$BIN/echo_server" --listen "127.0.0.1:$p1" --registry "$URI" >"$work/s1.log" 2>&1 &
pids+=($!)
"$BIN/echo_server" --listen "127.0.0.1:$p2" --registry "$URI" >"$work/s2.log" 2>&1 &
pids+=($!)

# both registered?
for _ in $(seq 1 100); do
  n=$(zkcli ls "$CHROOT/mprpc/services/example.EchoService/providers" | grep -o '127.0.0.1:[0-9]*' | sort -u | wc -l || true)
  [[ $n -ge 2 ]] && break
  sleep 0.1
done
[[ ${n:-0} -ge 2 ]] || { echo "providers did not register"; cat "$work"/s*.log; exit 1; }
zkcli create "$CHROOT/mprpc/config" >/dev/null || true

# calls for 6 s, a snapshot of the per-endpoint counts every 50 ms
"$BIN/echo_client" --registry "$URI" --duration-s 6 --concurrency 2 --report-ms 50 \
  --log-level info >"$work/client.out" 2>"$work/client.err" &
cpid=$!
pids+=($cpid)
# zkCli, interactive on a fifo: started now so the JVM is warm and connected
# when the command is written, and the write's time is known to a few ms
mkfifo "$work/zkcli.in"
java -cp '/usr/share/java/*' -Dzookeeper.log.threshold=ERROR \
  org.apache.zookeeper.ZooKeeperMain -server "$ZK" <"$work/zkcli.in" >"$work/zkcli.out" 2>&1 &
pids+=($!)
exec 7>"$work/zkcli.in"
for _ in $(seq 1 100); do
  grep -q SyncConnected "$work/zkcli.out" 2>/dev/null && break
  sleep 0.1
done
grep -q SyncConnected "$work/zkcli.out" || { echo "zkCli did not connect"; cat "$work/zkcli.out"; exit 1; }
sleep 1
t1=$(date +%s%3N)
echo "create $CHROOT/mprpc/config/example.EchoService disabled.127.0.0.1:$p1=1" >&7
echo "quit" >&7
exec 7>&-
wait "$cpid" || { echo "echo_client failed"; cat "$work/client.out"; tail -20 "$work/client.err"; exit 1; }
cat "$work/client.out"

python3 - "$work/client.err" "$work/client.out" "$t1" "$p1" "$p2" "$SLACK_MS" <<'PY'
import re, sys, datetime
err, out, t1, p1, p2, slack = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
dis, other = f"127.0.0.1:{p1}", f"127.0.0.1:{p2}"
snaps = {}   # endpoint -> [(at_ms, calls, disabled)]
applied = None
for line in open(err):
    m = re.match(r"at_ms=(\d+) endpoint (\S+) calls=(\d+) disabled=(\d)", line)
    if m:
        snaps.setdefault(m.group(2), []).append((int(m.group(1)), int(m.group(3)), m.group(4) == "1"))
        continue
    if applied is None and "disabled by the config centre" in line and dis in line:
        ts = line.split()[0].rstrip("Z")
        applied = int(datetime.datetime.fromisoformat(ts).replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
final = dict(re.findall(r"^endpoint (\S+) calls=(\d+)$", open(out).read(), re.M))
ok = True
def fail(msg):
    global ok
    ok = False
    print("FAIL:", msg)
if dis not in final or other not in final:
    fail(f"endpoint lines missing: {final}")
else:
    print(f"GOV final {dis} calls={final[dis]} {other} calls={final[other]}")
s = snaps.get(dis, [])
before = [c for (t, c, d) in s if t <= t1]
if not before or before[-1] == 0:
    fail("the provider got no calls before it was disabled")
# when did its count stop growing?
last_change = None
for (a, b) in zip(s, s[1:]):
    if b[1] != a[1]:
        last_change = b[0]
if last_change is None:
    last_change = s[0][0] if s else t1
stop = last_change - t1
print(f"GOV stop_latency_ms={max(stop, 0)}")
if applied is not None:
    print(f"GOV apply_latency_ms={applied - t1}")
else:
    fail("the channel never logged the provider as disabled")
if stop > 1000 + slack:
    fail(f"calls still reached {dis} {stop} ms after the config was written")
after = [c for (t, c, d) in snaps.get(other, []) if t > t1 + 1000 + slack]
if len(after) >= 2 and after[-1] <= after[0]:
    fail(f"{other} stopped getting calls too")
tail_dis = [c for (t, c, d) in s if t > t1 + 1000 + slack]
if len(tail_dis) >= 2 and tail_dis[-1] != tail_dis[0]:
    fail(f"{dis} got calls after it was disabled: {tail_dis[0]} -> {tail_dis[-1]}")
sys.exit(0 if ok else 1)
PY

# a client started now: the config arrives with (not necessarily before)
# the provider list, so only the total is checked: the other provider serves
"$BIN/echo_client" --registry "$URI" --count 200 >"$work/client2.out" 2>"$work/client2.err"
cat "$work/client2.out"
grep -q "^endpoint 127.0.0.1:$p2 calls=[1-9]" "$work/client2.out" || { echo "FAIL: no calls to 127.0.0.1:$p2"; exit 1; }
zkcli deleteall "$CHROOT" >/dev/null 2>&1 || true
echo "gov zk: ok"
