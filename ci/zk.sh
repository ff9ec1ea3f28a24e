#!/usr/bin/env bash
# Runs a real ZooKeeper server on loopback for tests and the demo.
#   ci/zk.sh start DIR     start one server; prints "127.0.0.1:PORT" (also in DIR/connect)
#   ci/zk.sh stop DIR      stop it (only the server this script started, by PID) and remove DIR
#   ci/zk.sh pause DIR     kill the server(s) of DIR (SIGKILL, like a crash) but keep DIR
#                          (config, data, port)
#   ci/zk.sh resume DIR    start the paused server again on the same port and data
#   ci/zk.sh address DIR   print the connection string of DIR
#   ci/zk.sh start-ensemble DIR [N]  start an N-node (default 3) ensemble on loopback; prints
#                          the connection string "127.0.0.1:P1,127.0.0.1:P2,..."
#   ci/zk.sh kill-one DIR [I]        SIGKILL node I (1-based) of an ensemble
#   ci/zk.sh leader DIR [S]  print the index I of the ensemble's current leader (asks each
#                          node with `srvr`, retrying up to S seconds, default 20)
# DIR is created if missing; it holds zoo.cfg, data, the log and the pid file
# (an ensemble keeps one subdirectory node<I> per server).
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

four() { # port word: prints the answer of a four-letter-word command
  local ans=""
  if { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
    printf '%s' "$2" >&3
    ans=$(timeout 5 cat <&3 || true)
    exec 3>&- 3<&- || true
  fi
  printf '%s' "$ans"
}

wait_mode() { # port timeout_s: until the server is serving as leader/follower/standalone
  local deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    if four "$1" srvr | grep -qE '^Mode: (leader|follower|standalone)'; then return 0; fi
    sleep 0.3
  done
  return 1
}

cfg_port() { sed -n 's/^clientPort=//p' "$1/zoo.cfg"; }

launch() { # dir: start java on an existing config
  local dir=$1
  # The server must not inherit the caller's descriptors (a test's client
  # sockets or pipes would stay open in it), so close everything above 2.
  (for fd in /proc/$BASHPID/fd/*; do
     fd=${fd##*/}; [[ $fd -gt 2 ]] && eval "exec $fd>&-" 2>/dev/null
   done
   cd "$dir" && exec java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
      -Dzookeeper.log.dir="$dir" -Dzookeeper.root.logger=INFO,CONSOLE \
      -cp '/usr/share/java/*' org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
      >>"$dir/server.log" 2>&1 </dev/null) &
  echo $! >"$dir/pid"
}

stop_pidfiles() { # signal pidfile...: signal every server first, then wait for all
  local sig=$1; shift
  local pids=() f
  for f in "$@"; do
    [[ -f "$f" ]] || continue
    pids+=("$(cat "$f")")
    kill "-$sig" "${pids[-1]}" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    local alive=0 p
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -f "$@"
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
  launch "$dir"
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
      if ! wait_mode "$p" 90; then
        echo "zk.sh: ensemble node on $p not serving (logs: $dir/node*/server.log)" >&2
        stop_pidfiles TERM "$dir"/node*/pid
        exit 1
      fi
      conn="${conn:+$conn,}127.0.0.1:$p"
    done
    echo "$conn" | tee "$dir/connect"
    ;;
  stop)
    stop_pidfiles TERM "$dir"/pid "$dir"/node*/pid
    rm -rf "$dir"
    ;;
  pause) # crash-stop (SIGKILL): ZooKeeper has synced its log before acknowledging writes
    compgen -G "$dir/pid" >/dev/null || compgen -G "$dir/node*/pid" >/dev/null ||
      { echo "zk.sh: nothing running in $dir" >&2; exit 1; }
    stop_pidfiles KILL "$dir"/pid "$dir"/node*/pid
    ;;
  resume)
    [[ -f "$dir/zoo.cfg" ]] || { echo "zk.sh: $dir has no zoo.cfg (use start)" >&2; exit 1; }
    [[ ! -f "$dir/pid" ]] || { echo "zk.sh: $dir is already running" >&2; exit 1; }
    port=$(cfg_port "$dir")
    launch "$dir"
    if ! wait_ready "$port" 30; then
      echo "zk.sh: ZooKeeper did not come back on 127.0.0.1:$port (log: $dir/server.log)" >&2
      exit 1
    fi
    echo "127.0.0.1:$port"
    ;;
  address) # the connection string of DIR
    cat "$dir/connect"
    ;;
  kill-one) # SIGKILL node I of an ensemble (default 1), by its recorded PID
    pidf="$dir/node${3:-1}/pid"
    [[ -f "$pidf" ]] || { echo "zk.sh: no node ${3:-1} in $dir" >&2; exit 1; }
    pid=$(cat "$pidf"); kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pidf"
    ;;
  leader) # asks every running node with `srvr`; retries while an election runs
    deadline=$((SECONDS + ${3:-20}))
    while ((SECONDS < deadline)); do
      for nd in "$dir"/node*; do
        [[ -f "$nd/pid" ]] || continue
        if four "$(cfg_port "$nd")" srvr | grep -q '^Mode: leader'; then echo "${nd##*/node}"; exit 0; fi
      done
      sleep 0.3
    done
    echo "zk.sh: no leader in $dir" >&2; exit 1
    ;;
  *) echo "zk.sh: unknown command $cmd" >&2; exit 2 ;;
esac
