#!/usr/bin/env bash
# netpoll.h compiles cleanly in the languages a user may include it from:
# C99 and C11 with -pedantic, GNU C, C++ (when a C++ compiler is found),
# each with the inline mutex fast paths and with NP_NO_INLINE, which must
# leave np_mutex_lock a plain function.
#   check_header.sh CC INCLUDE_DIRS
# INCLUDE_DIRS: colon-separated (netpoll.h and the generated netpoll_version.h).
set -euo pipefail
cc=$1
incs=()
IFS=: read -ra dirs <<<"$2"
for d in "${dirs[@]}"; do incs+=("-I$d"); done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/probe.c" <<'PROBE'
#include <netpoll.h>
#if defined(NP_NO_INLINE) && defined(np_mutex_lock)
#error "NP_NO_INLINE still inlines np_mutex_lock"
#endif
#if !defined(NP_NO_INLINE) && !defined(np_mutex_lock)
#error "no inline fast path with this compiler"
#endif
static np_mutex mu = NP_MUTEX_INIT;
static np_cond cv = NP_COND_INIT;
static np_waitgroup wg = NP_WAITGROUP_INIT;
int probe(void);
int probe(void)
{
    int (*fn)(np_mutex *) = np_mutex_lock;
    int rc = np_mutex_lock(&mu);
    rc |= np_mutex_unlock(&mu);
    rc |= (np_mutex_lock)(&mu);
    rc |= (np_mutex_unlock)(&mu);
    rc |= np_cond_signal(&cv);
    rc |= np_waitgroup_add(&wg, 0);
    return rc + (fn != 0);
}
PROBE
cp "$tmp/probe.c" "$tmp/probe.cc"
n=0
try() { # compiler file flags...
    local c=$1 f=$2
    shift 2
    "$c" -fsyntax-only -Wall -Wextra -Werror "$@" "${incs[@]}" "$f"
    n=$((n + 1))
}
for std in "-std=c99 -pedantic" "-std=c11 -pedantic" "-std=gnu11"; do
    # shellcheck disable=SC2086
    try "$cc" "$tmp/probe.c" $std
    # shellcheck disable=SC2086
    try "$cc" "$tmp/probe.c" $std -DNP_NO_INLINE
done
cxx=$(command -v c++ || command -v g++ || command -v clang++ || true)
if [ -n "$cxx" ]; then
    try "$cxx" "$tmp/probe.cc" -std=c++11 -pedantic
    try "$cxx" "$tmp/probe.cc" -std=c++17 -pedantic -DNP_NO_INLINE
else
    echo "check_header: no C++ compiler; C++ not checked"
fi
echo "netpoll.h: $n compilations clean"
