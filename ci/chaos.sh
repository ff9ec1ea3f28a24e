#!/usr/bin/env bash
# make chaos: runs build/bin/chaos_runner inside a network namespace of its
# own (docs/simulator.md, "Chaos runs").
#
#   CHAOS_SCENARIO=NAME[,NAME..]  only these scenarios (default: all)
#   CHAOS_SEED=N                  the seed (default 1)
#   CHAOS_QUICK=1                 the two-minute subset for CI
#   CHAOS_OUT=DIR                 logs, timelines (default build/chaos)
#   CHAOS_BUG=exec_twice          self-test: providers log every run twice, so
#                                 the checker must report violations (exit 1)
#   CHAOS_SKIP_RC=N               exit status when the machine cannot run it
#                                 (default 0; ci/run-tests.sh sets 77)
#
# Safety: everything happens in namespace mprpc-chaos-$$ (only lo, only
# 127.0.0.x); every rule and qdisc lives there and goes with it. The runner
# is started by PID and stops its own children by PID; on any exit this
# script kills what is still inside the namespace (by PID, from `ip netns
# pids`) and deletes the namespace, then checks that the namespace is gone
# and nothing it started is left (else exit 3). Not root, no ip/nft, or no
# namespace with nftables in it: one "chaos: SKIP: why" line, exit
# CHAOS_SKIP_RC.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${CHAOS_OUT:-$BUILD/chaos}
SEED=${CHAOS_SEED:-1}
[[ -n "$SEED" ]] || SEED=1

SKIP_RC=${CHAOS_SKIP_RC:-0}
skip() { echo "chaos: SKIP: $*"; exit "$SKIP_RC"; }

[[ $(id -u) -eq 0 ]] || skip "needs root for a private network namespace (ip netns); not root here"
for tool in ip nft; do
  command -v "$tool" >/dev/null 2>&1 || skip "no $tool here (bash ci/install-deps.sh installs iproute2 and nftables)"
done
command -v java >/dev/null 2>&1 || { echo "chaos: missing java (bash ci/install-deps.sh)" >&2; exit 2; }

NS=mprpc-chaos-$$
ip netns add "$NS" 2>/dev/null || skip "cannot create a network namespace here (ip netns add failed)"
RUNNER_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$RUNNER_PID" ]] && kill -0 "$RUNNER_PID" 2>/dev/null; then
    kill -TERM "$RUNNER_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$RUNNER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$RUNNER_PID" 2>/dev/null
  fi
  # Whatever still lives in the namespace (it can only be ours), by PID.
  for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  for _ in $(seq 50); do [[ -z "$(ip netns pids "$NS" 2>/dev/null)" ]] && break; sleep 0.1; done
  local left; left=$(ip netns pids "$NS" 2>/dev/null | tr '\n' ' ')
  ip netns del "$NS" 2>/dev/null
  if [[ -n "$left" ]] || ip netns list 2>/dev/null | grep -qw "$NS"; then
    echo "chaos: cleanup FAILED: namespace $NS${left:+ still holds PIDs $left}" >&2
    [[ $rc -eq 0 ]] && rc=3
  elif [[ $STARTED == 1 ]]; then
    echo "chaos: cleanup: namespace $NS removed, no process left in it"
  fi
  exit "$rc"
}
STARTED=0
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# nftables must work inside it (a container may allow netns but not nf_tables).
ip netns exec "$NS" nft list ruleset >/dev/null 2>&1 || skip "nftables does not work in a network namespace here (nft list ruleset failed)"
STARTED=1

ip -n "$NS" link set lo up
for i in $(seq 2 20); do ip -n "$NS" addr add "127.0.0.$i/8" dev lo 2>/dev/null; done

args=(--out "$OUT" --seed "$SEED")
if [[ -n "${CHAOS_SCENARIO:-}" ]]; then
  IFS=, read -ra names <<<"$CHAOS_SCENARIO"
  for n in "${names[@]}"; do args+=(--scenario "$n"); done
elif [[ -n "${CHAOS_QUICK:-}" && "${CHAOS_QUICK}" != 0 ]]; then
  for n in partition provider_crash_restart zk_leader_loss rolling_restart; do args+=(--scenario "$n"); done
fi
[[ -n "${CHAOS_QUICK:-}" && "${CHAOS_QUICK}" != 0 ]] && args+=(--quick)
[[ -n "${CHAOS_BUG:-}" ]] && args+=(--bug "$CHAOS_BUG")

rm -rf "$OUT"; mkdir -p "$OUT"
echo "chaos: namespace $NS, logs in $OUT"
# Bounded: 15 minutes whatever happens.
CHAOS_NETNS=$NS timeout -s TERM 900 ip netns exec "$NS" "$BUILD/bin/chaos_runner" "${args[@]}" &
RUNNER_PID=$!
wait "$RUNNER_PID"
rc=$?
RUNNER_PID=""
exit $rc
