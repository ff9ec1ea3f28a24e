#!/usr/bin/env bash
# Runs a real ZooKeeper server on loopback for tests and the demo.
#   ci/zk.sh start DIR     start one server; prints "127.0.0.1:PORT" (also in DIR/connect)
#   ci/zk.sh stop DIR      stop it (only the server this script started, by PID) and remove DIR
# DIR is created if missing; it holds zoo.cfg, data, the log and the pid file.
set -euo pipefail

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

wait_ready() { # port timeout_s
  local port=$1 deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
      printf 'ruok' >&3
      local ans; ans=$(timeout 1 cat <&3 || true)
      exec 3>&- 3<&- || true
      [[ "$ans" == imok ]] && return 0
    fi
    sleep 0.2
  done
  return 1
}

start_one() { # dir port [myid peers...]
  local dir=$1 port=$2
  mkdir -p "$dir/data"
  cat >"$dir/zoo.cfg" <<CFG
tickTime=500
initLimit=20
syncLimit=10
dataDir=$dir/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
maxSessionTimeout=60000
minSessionTimeout=1000
CFG
  shift 2
  if [[ $# -gt 0 ]]; then
    echo "$1" >"$dir/data/myid"; shift
    for peer in "$@"; do echo "$peer" >>"$dir/zoo.cfg"; done
  fi
  (cd "$dir" && exec java -Xmx256m -Dzookeeper.log.dir="$dir" -Dzookeeper.root.logger=INFO,CONSOLE \
      -cp '/usr/share/java/*' org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
      >"$dir/server.log" 2>&1 </dev/null) &
  echo $! >"$dir/pid"
}

cmd=${1:-}; dir=${2:-}
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 start|stop|start-ensemble|kill-one DIR [N]" >&2; exit 2; }
case "$cmd" in
  start)
    port=$(free_port)
    start_one "$dir" "$port"
    if ! wait_ready "$port" 30; then
      echo "zk.sh: ZooKeeper did not come up on 127.0.0.1:$port (log: $dir/server.log)" >&2
      kill "$(cat "$dir/pid")" 2>/dev/null || true
      exit 1
    fi
    echo "127.0.0.1:$port" | tee "$dir/connect"
    ;;
  start-ensemble)
    n=${3:-3}; peers=(); ports=()
    for i in $(seq 1 "$n"); do
      ports+=("$(free_port)")
      peers+=("server.$i=127.0.0.1:$(free_port):$(free_port)")
    done
    for i in $(seq 1 "$n"); do start_one "$dir/node$i" "${ports[$((i-1))]}" "$i" "${peers[@]}"; done
    conn=""
    for p in "${ports[@]}"; do
      wait_ready "$p" 60 || { echo "zk.sh: ensemble node on $p not ready" >&2; exit 1; }
      conn="${conn:+$conn,}127.0.0.1:$p"
    done
    echo "$conn" | tee "$dir/connect"
    ;;
  stop)
    for pidf in "$dir"/pid "$dir"/node*/pid; do
      [[ -f "$pidf" ]] || continue
      pid=$(cat "$pidf")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
    ;;
  kill-one) # kill node N of an ensemble (default 1)
    pidf="$dir/node${3:-1}/pid"; kill -9 "$(cat "$pidf")" 2>/dev/null || true
    ;;
  *) echo "zk.sh: unknown command $cmd" >&2; exit 2 ;;
esac
