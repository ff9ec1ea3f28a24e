#!/usr/bin/env bash
# The seam rule: protocol and policy logic under src/core/ never touches the
# OS directly. It reaches time, timers, sockets, threads and randomness only
# through the seams in include/mprpc/{loop,transport,registry,rand}.h.
set -uo pipefail
cd "$(dirname "$0")/.."

fail=0
files=$(ls src/core/*.c src/core/*.h 2>/dev/null)
[[ -n "$files" ]] || { echo "lint: no files under src/core"; exit 1; }

# Strip comments and string literals so prose does not trip the checks.
strip() {
  perl -0pe 's{("(?:\\.|[^"\\\n])*")|(/\*.*?\*/)|(//[^\n]*)}{defined $1 ? q("") : defined $2 ? ("\n" x ($2 =~ tr/\n//)) : ""}gse' "$1"
}

bad_includes='#[[:space:]]*include[[:space:]]*<(ev\.h|zookeeper/[^>]*|sys/socket\.h|pthread\.h|netinet/[^>]*|arpa/[^>]*|netdb\.h|sys/epoll\.h)>'
bad_calls='(^|[^A-Za-z0-9_.>])(clock_gettime|gettimeofday|time|rand|random|srand|srandom|rand_r|drand48|socket|connect|accept|accept4|bind|listen|read|write|readv|writev|send|recv|sendmsg|recvmsg|close|pthread_[a-z_]+|sleep|usleep|nanosleep|getrandom)[[:space:]]*\('

for f in $files; do
  body=$(strip "$f")
  if grep -nE "$bad_includes" <<<"$body" >/tmp/lint.$$ 2>/dev/null; then
    sed "s|^|lint: $f: forbidden include: |" /tmp/lint.$$; fail=1
  fi
  # A call is forbidden unless it is a member access (ops->read(...)) or a
  # definition/use of an mprpc_ name.
  if grep -nE "$bad_calls" <<<"$body" >/tmp/lint.$$ 2>/dev/null; then
    sed "s|^|lint: $f: forbidden OS call: |" /tmp/lint.$$; fail=1
  fi
done
rm -f /tmp/lint.$$

if [[ $fail -ne 0 ]]; then
  echo "lint: src/core must reach the OS only through the seams (see docs/design.md)"
  exit 1
fi
echo "lint: ok ($(wc -w <<<"$files") files under src/core)"
