#!/usr/bin/env bash
# The demo: builds netpoll and its echo example (the demo preset), starts the echo server on a free
# loopback port, and runs the bundled load generator against it: a live
# progress line, then a summary (connections, round trips per second, p50
# and p99 latency). Needs only cmake and a C compiler; works from any
# directory.
#
#   examples/demo.sh [CONNECTIONS [SECONDS]]
#
# Environment overrides: CONNECTIONS (default 100), DURATION in seconds (5),
# MSG_SIZE in bytes (512), SERVER_WORKERS and LOAD_WORKERS (worker threads
# of each side; default 0 = one per CPU). Exits with the load generator's
# status: 0 when every round trip came back intact.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
connections=${1:-${CONNECTIONS:-100}}
duration=${2:-${DURATION:-5}}
msg_size=${MSG_SIZE:-512}
server_workers=${SERVER_WORKERS:-0}
load_workers=${LOAD_WORKERS:-0}

tmp=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. Build what the demo runs and nothing else (the "demo" preset: the
#    library, echo_server and echo_load; no tests or benchmarks), on every
#    CPU, with one progress line. The whole log is shown if it fails.
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
if [ -t 2 ]; then cr=$'\r' nl=''; else cr='' nl=$'\n'; fi
printf 'building... configuring (cmake --preset demo)%s' "$nl" >&2
build_status=0
{
    (cd "$root" && cmake --preset demo && cmake --build --preset demo -j "$jobs") 2>&1 || echo "demo-build-failed"
} | tee "$tmp/build.log" | while IFS= read -r line; do
    # Make's "[ 42%] Building C object .../scheduler.c.o": percent and file.
    case $line in
    "["*"%] Building"*)
        pct=${line%%]*}; pct=${pct#[}; pct=${pct// /}
        file=${line##*/}; file=${file%.o}
        [ -t 2 ] && printf '%sbuilding... %4s %-40s' "$cr" "$pct" "$file" >&2 ;;
    esac
done
grep -q '^demo-build-failed$' "$tmp/build.log" && build_status=1
if [ "$build_status" -ne 0 ]; then
    printf '\n' >&2
    cat "$tmp/build.log" >&2
    echo "demo: the build failed" >&2
    exit 1
fi
printf '%sbuilding... done%-40s\n' "$cr" "" >&2
bin=$root/build/demo/examples

# 2. Start the echo server on port 0 (any free port); it names the port it
#    got on its first line of output.
"$bin/echo_server" -w "$server_workers" 127.0.0.1:0 >"$tmp/server.out" &
server_pid=$!
address=
for _ in $(seq 100); do # up to 10 s
    if line=$(grep -m1 '^listening on ' "$tmp/server.out"); then
        address=${line#listening on }
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        wait "$server_pid" || true
        server_pid=
        echo "demo: the echo server failed to start" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$address" ]; then
    echo "demo: the echo server did not start listening within 10 s" >&2
    exit 1
fi
echo "echo_server listening on $address" >&2

# 3. Load it.
status=0
"$bin/echo_load" -c "$connections" -d "$duration" -s "$msg_size" -w "$load_workers" \
    "$address" || status=$?

# 4. Stop the server: SIGTERM makes it close its listener and connections
#    and exit 0.
kill -TERM "$server_pid" 2>/dev/null || true # it may be gone already
server_status=0
wait "$server_pid" || server_status=$?
server_pid=
if [ "$server_status" -ne 0 ]; then
    echo "demo: the echo server exited with status $server_status" >&2
    [ "$status" -ne 0 ] || status=$server_status
fi
exit "$status"
