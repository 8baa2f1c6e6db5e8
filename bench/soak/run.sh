#!/usr/bin/env bash
# The long soak: 10 minutes at 15,000 connections (tests/soak/soak.h says
# what is checked). One server process holds every connection; the clients
# share them, CONNS_PER_PROC at most each, so every process stays well below
# the machine's per-process descriptor cap (20,000 here).
#
# Builds the release preset's np_soak if it is not built yet (or always,
# with REBUILD=1). Environment:
#   CONNS           connections held open at once (15000)
#   DURATION        seconds of traffic (600)
#   PROCS           client processes (default: CONNS / CONNS_PER_PROC, rounded up)
#   CONNS_PER_PROC  most connections per client process (5000)
#   WORKERS         worker threads per process (2)
# Extra arguments go to np_soak as they are (e.g. -s SEED, -g 20).
# Prints np_soak's progress and summary, keeps them in
# bench/results/soak.txt, and exits with np_soak's status.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
CONNS=${CONNS:-15000}
DURATION=${DURATION:-600}
CONNS_PER_PROC=${CONNS_PER_PROC:-5000}
PROCS=${PROCS:-$(((CONNS + CONNS_PER_PROC - 1) / CONNS_PER_PROC))}
WORKERS=${WORKERS:-2}
bin=$root/build/release/tests/soak/np_soak

if [ "${REBUILD:-0}" = 1 ] || [ ! -x "$bin" ]; then
    command -v cmake >/dev/null || { echo "soak: cmake is not installed" >&2; exit 1; }
    echo "soak: building np_soak (release preset)" >&2
    (cd "$root" && cmake --preset release >/dev/null && cmake --build build/release -j"$(nproc)" --target np_soak >/dev/null)
fi

# The server holds CONNS descriptors (plus a few): say so now rather than
# failing with -EMFILE ten minutes in. np_soak checks it too.
limit=$(ulimit -n)
if [ "$limit" != unlimited ] && [ $((CONNS + 256)) -gt "$limit" ]; then
    echo "soak: $CONNS connections need more than 'ulimit -n' = $limit descriptors in the server" >&2
    exit 1
fi

mkdir -p "$root/bench/results"
out=$root/bench/results/soak.txt
echo "soak: $CONNS connections, $DURATION s, $PROCS client processes; log in $out" >&2
rc=0
"$bin" -c "$CONNS" -d "$DURATION" -p "$PROCS" -w "$WORKERS" -v "$@" 2>&1 | tee "$out" || rc=${PIPESTATUS[0]}
exit "$rc"
