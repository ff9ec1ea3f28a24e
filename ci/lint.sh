#!/usr/bin/env bash
# The layering rules (docs/design.md, "Source map"):
# 1. src/core and the simulator's library files (sim/*.c but main.c) never
#    touch the OS: no OS headers, no OS calls. They reach time, timers,
#    sockets, threads and randomness only through the seams in
#    include/mprpc/{loop,transport,registry,rand}.h.
# 2. src/core never picks the runtime: no mprpc/rt.h, no default loop, TCP
#    transport or loop group (src/rt/defaults.c fills those in), and no
#    fopen, getenv or exit.
# 3. Every source file is listed in docs/design.md's source map, and every
#    #include between src/ directories (and from sim/) follows the edges
#    that page allows.
set -uo pipefail
cd "$(dirname "$0")/.."

fail=0
core=$(ls src/core/*.c src/core/*.h 2>/dev/null)
[[ -n "$core" ]] || { echo "lint: no files under src/core"; exit 1; }
simlib=$(ls sim/*.c sim/*.h 2>/dev/null | grep -v '^sim/main\.c$')

# Strip comments and string literals so prose does not trip the checks.
strip() {
  perl -0pe 's{("(?:\\.|[^"\\\n])*")|(/\*.*?\*/)|(//[^\n]*)}{defined $1 ? q("") : defined $2 ? ("\n" x ($2 =~ tr/\n//)) : ""}gse' "$1"
}
# Comments only (include paths are string literals and must survive).
strip_comments() {
  perl -0pe 's{("(?:\\.|[^"\\\n])*")|(/\*.*?\*/)|(//[^\n]*)}{defined $1 ? $1 : defined $2 ? ("\n" x ($2 =~ tr/\n//)) : ""}gse' "$1"
}

report() { # file kind <matches
  local f=$1 kind=$2 line
  while IFS= read -r line; do
    echo "lint: $f: $kind: $line"
    fail=1
  done
}

bad_includes='#[[:space:]]*include[[:space:]]*<(ev\.h|zookeeper/[^>]*|sys/socket\.h|pthread\.h|netinet/[^>]*|arpa/[^>]*|netdb\.h|sys/epoll\.h|openssl/[^>]*)>'
os_calls='clock_gettime|gettimeofday|time|rand|random|srand|srandom|rand_r|drand48|socket|connect|accept|accept4|bind|listen|read|write|readv|writev|send|recv|sendmsg|recvmsg|close|pthread_[a-z_]+|sleep|usleep|nanosleep|getrandom|fopen|getenv|exit'
# A call is forbidden unless it is a member access (ops->read(...)).
bad_calls="(^|[^A-Za-z0-9_.>])($os_calls)[[:space:]]*\\("
rt_names='(^|[^A-Za-z0-9_])mprpc_(default_loop|tcp_transport|loop_group_[a-z_]*)([^A-Za-z0-9_]|$)'

for f in $core $simlib; do
  body=$(strip "$f")
  grep -nE "$bad_includes" <<<"$body" | report "$f" "forbidden include"
  grep -nE "$bad_calls" <<<"$body" | report "$f" "forbidden OS call"
done
for f in $core; do
  grep -nE "$rt_names" <<<"$(strip "$f")" | report "$f" "runtime name in the core"
  grep -nE '#[[:space:]]*include[[:space:]]*"mprpc/(rt|app)\.h"' <<<"$(strip_comments "$f")" |
    report "$f" "runtime header in the core"
done
# (The third-party libraries are in the OS list above for the core because
# they belong in the one module that wraps each; see STYLE.md.)

# --- the source map and its dependency edges -------------------------------
map=docs/design.md
deps=$(awk '/^```deps$/{on=1; next} /^```$/{on=0} on' "$map")
[[ -n "$deps" ]] || { echo "lint: $map has no \`\`\`deps block"; fail=1; }
allowed() { # from to
  local line
  line=$(grep -E "^$1:" <<<"$deps") || return 1
  [[ " ${line#*:} " == *" $2 "* || "$1" == "$2" ]]
}
dir_of() { # path -> layer name
  case $1 in
    src/*/*) local d=${1#src/}; echo "${d%%/*}" ;;
    sim/*) echo sim ;;
    *) echo "" ;;
  esac
}

sources=$(ls src/*/*.c src/*/*.h sim/*.c sim/*.h include/mprpc/*.h 2>/dev/null)
for f in $sources; do
  grep -qF "\`$f\`" "$map" || { echo "lint: $f: not in the source map of $map"; fail=1; }
done
for f in $(grep -oE '`(src|sim|include)/[^`]+\.[ch]`' "$map" | tr -d '`' | sort -u); do
  [[ -f $f ]] || { echo "lint: $map: lists $f, which does not exist"; fail=1; }
done

for f in $(ls src/*/*.c src/*/*.h sim/*.c sim/*.h 2>/dev/null); do
  from=$(dir_of "$f")
  while IFS= read -r inc; do
    [[ -n $inc ]] || continue
    case $inc in
      core/* | rt/* | registry/* | util/* | app/* | cli/*) to=${inc%%/*} ;;
      mprpc/rt.h) to=rt ;;
      mprpc/app.h) to=app ;;
      *) continue ;;
    esac
    [[ $from == sim && $to == sim ]] && continue
    allowed "$from" "$to" || { echo "lint: $f: includes \"$inc\": $from may not depend on $to ($map)"; fail=1; }
  done < <(strip_comments "$f" | sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/p')
done

if [[ $fail -ne 0 ]]; then
  echo "lint: the layering rules of docs/design.md are broken (see above)"
  exit 1
fi
echo "lint: ok ($(wc -w <<<"$core") core files, $(wc -w <<<"$simlib") simulator files, $(wc -w <<<"$sources") files in the source map)"
