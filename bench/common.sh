# shellcheck shell=bash
# Shared by bench/run and the scenario scripts (bench/*/run.sh): paths,
# progress lines, notes, building the peers, starting and stopping servers.
# Source it; it does not run anything by itself.
#
# Environment understood everywhere:
#   BENCH_T0    start time (epoch seconds) the progress lines count from
#               (bench/run sets it for the whole run)
#   SERVER_CPU  CPU the server under test is pinned to (default 0)
#   LOAD_CPU    CPU the load generator is pinned to (default 1)
#   QUICK=1     shorter measurements everywhere (a smoke run, e.g. for CI)
#   NO_BUILD=1  use the binaries already built (bench/run sets it after
#               building once, so the scenario scripts do not rebuild)

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
results=$bench_root/bench/results
npbin=$bench_root/build/release/bench        # netpoll bench programs (cmake)
exbin=$bench_root/build/release/examples     # netpoll examples (cmake)
peers=$bench_root/build/release/bench/peers  # peers and helpers (cc, go)
: "${BENCH_T0:=$(date +%s)}"
export BENCH_T0
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
QUICK=${QUICK:-0}
CC=${CC:-cc}
mkdir -p "$results" "$peers"

# One line to stderr: "[mm:ss] what", mm:ss counted from BENCH_T0.
progress() {
    local e=$(($(date +%s) - BENCH_T0))
    printf '[%02d:%02d] %s\n' $((e / 60)) $((e % 60)) "$*" >&2
}

# Notes of the current scenario: shown as they happen, and kept in
# $notes_file (set by the scenario) for its results page.
notes_file=${notes_file:-/dev/null}
note() {
    echo "note: $*" >&2
    echo "- note: $*" >>"$notes_file"
}

die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

# Median of the numbers on stdin (one per line); empty input prints nothing.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

# Value of key=... in a line of key=value pairs.
kv() { # line key
    local line=" $1 " key=$2
    line=${line#* "$key"=}
    [ "$line" = " $1 " ] && return 0
    printf '%s\n' "${line%% *}"
}

# Busy time of the machine, in clock ticks (for "was it quiet?" checks).
machine_busy() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# CPU time (user + system, all threads) of a process, in ns; from /proc/PID/stat.
proc_cpu_ns() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.0f\n", ($12 + $13) * (1000000000 / hz) }' \
        "/proc/$1/stat" 2>/dev/null
}

# A /proc/PID/status field in kB (VmRSS, VmPTE, ...).
proc_status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }

# ---- building ----------------------------------------------------------------

# cmake release build of everything (the library, tests, benchmarks,
# examples), unless NO_BUILD=1. Output goes to build/release/bench-build.log.
build_netpoll() {
    [ "${NO_BUILD:-0}" = 1 ] && return 0
    command -v cmake >/dev/null || die "cmake is not installed (apt-get install cmake)"
    local log=$bench_root/build/bench-build.log
    mkdir -p "$bench_root/build"
    if ! { (cd "$bench_root" && cmake --preset release) >"$log" 2>&1 &&
           (cd "$bench_root" && cmake --build --preset release -j"$(nproc)") >>"$log" 2>&1; }; then
        tail -n 30 "$log" >&2
        die "the release build failed (log: $log)"
    fi
}

# Builds $peers/NAME from SOURCE with CMD... if the binary is missing or
# older than its source. Returns 1 (after a note) if the build fails.
_build_if_stale() { # name source cmd...
    local name=$1 src=$2
    shift 2
    if [ -x "$peers/$name" ] && [ "$peers/$name" -nt "$src" ]; then return 0; fi
    if ! "$@" >"$peers/$name.log" 2>&1; then
        note "$name skipped: build failed: $(head -c 300 "$peers/$name.log")"
        rm -f "$peers/$name"
        return 1
    fi
}

# The peers and helper programs, each built once (plain cc, go, pkg-config).
# A peer whose toolchain or library is missing is skipped with a note; its
# binary is then absent, and have PEER says so.
build_peers() {
    [ "${NO_BUILD:-0}" = 1 ] && return 0
    local b=$bench_root/bench cflags=(-O2 -Wall -Wextra)
    command -v "$CC" >/dev/null || die "no C compiler ($CC); install gcc"
    _build_if_stale load "$b/echo/load.c" "$CC" "${cflags[@]}" -o "$peers/load" "$b/echo/load.c" || true
    _build_if_stale epoll_echo "$b/echo/epoll_echo.c" \
        "$CC" "${cflags[@]}" -o "$peers/epoll_echo" "$b/echo/epoll_echo.c" || true
    _build_if_stale idle_client "$b/idle/idle_client.c" \
        "$CC" "${cflags[@]}" -o "$peers/idle_client" "$b/idle/idle_client.c" || true
    if command -v go >/dev/null; then
        local g
        for g in echo/go_echo churn/go_echo_deadline http/go_hello; do
            _build_if_stale "${g#*/}" "$b/$g.go" env GOCACHE="$bench_root/build/gocache" \
                GO111MODULE=off GOFLAGS="" go build -o "$peers/${g#*/}" "$b/$g.go" || true
        done
    else
        rm -f "$peers/go_echo" "$peers/go_echo_deadline" "$peers/go_hello"
        note "Go peers skipped: no go toolchain (apt-get install golang-go)"
    fi
    if command -v pkg-config >/dev/null && pkg-config --exists libuv; then
        # shellcheck disable=SC2046  # pkg-config output is meant to be split
        _build_if_stale uv_echo "$b/echo/uv_echo.c" "$CC" "${cflags[@]}" $(pkg-config --cflags libuv) \
            -o "$peers/uv_echo" "$b/echo/uv_echo.c" $(pkg-config --libs libuv) || true
    else
        rm -f "$peers/uv_echo"
        note "libuv peer skipped: libuv not found by pkg-config (apt-get install libuv1-dev pkg-config)"
    fi
    if command -v pkg-config >/dev/null && pkg-config --exists libevent; then
        local e
        for e in scale/event_echo http/event_hello; do
            # shellcheck disable=SC2046
            _build_if_stale "${e#*/}" "$b/$e.c" "$CC" "${cflags[@]}" $(pkg-config --cflags libevent) \
                -o "$peers/${e#*/}" "$b/$e.c" $(pkg-config --libs libevent) || true
        done
    else
        rm -f "$peers/event_echo" "$peers/event_hello"
        note "libevent peers skipped: libevent not found by pkg-config (apt-get install libevent-dev pkg-config)"
    fi
}

# ---- servers ----------------------------------------------------------------

# The command line of an echo server by name (in the array cmd), or return 1
# if that server is not available.
echo_server_cmd() {
    case $1 in
        epoll) cmd=("$peers/epoll_echo" 127.0.0.1:0) ;;
        netpoll) cmd=("$exbin/echo_server" -w 1 127.0.0.1:0) ;;
        netpoll-buf) cmd=("$npbin/np_idle_echo" -m buf -w 1 127.0.0.1:0) ;;
        netpoll-wait) cmd=("$npbin/np_idle_echo" -m wait -w 1 127.0.0.1:0) ;;
        netpoll-buf-idle) cmd=("$npbin/np_idle_echo" -m buf -i 100 -w 1 127.0.0.1:0) ;;
        netpoll-wait-idle) cmd=("$npbin/np_idle_echo" -m wait -i 100 -w 1 127.0.0.1:0) ;;
        netpoll-nodl) cmd=("$npbin/np_echo_deadline" -w 1 127.0.0.1:0) ;;
        netpoll-dl) cmd=("$npbin/np_echo_deadline" -d -w 1 127.0.0.1:0) ;;
        go) cmd=("$peers/go_echo" 127.0.0.1:0) ;;
        go-nodl) cmd=("$peers/go_echo_deadline" 127.0.0.1:0) ;;
        go-dl) cmd=("$peers/go_echo_deadline" -d 127.0.0.1:0) ;;
        libuv) cmd=("$peers/uv_echo" 127.0.0.1:0) ;;
        libevent) cmd=("$peers/event_echo" 127.0.0.1:0) ;;
        http-netpoll) cmd=("$exbin/http_hello" -w 1 127.0.0.1:0) ;;
        http-go) cmd=("$peers/go_hello" 127.0.0.1:0) ;;
        http-libevent) cmd=("$peers/event_hello" 127.0.0.1:0) ;;
        *) return 1 ;;
    esac
    [ -x "${cmd[0]}" ]
}

# Starts CMD... pinned to SERVER_CPU (GOMAXPROCS=1 for Go servers), waits
# for its "listening on ADDR" line. Sets srv_pid and srv_addr; returns 1
# (leaving the reason in srv_err) if it does not come up within 5 s.
srv_pid=
srv_addr=
srv_err=
start_server() {
    local out err _
    out=$(mktemp) err=$(mktemp)
    GOMAXPROCS=1 taskset -c "$SERVER_CPU" "$@" >"$out" 2>"$err" &
    srv_pid=$! srv_addr='' srv_err=''
    for _ in $(seq 100); do
        srv_addr=$(sed -n 's/^listening on //p' "$out")
        [ -n "$srv_addr" ] && break
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$srv_addr" ]; then
        # shellcheck disable=SC2034  # read by the callers
        srv_err="no 'listening on' line within 5 s: $(head -c 300 "$err")"
        stop_server
    fi
    rm -f "$out" "$err"
    [ -n "$srv_addr" ]
}

stop_server() {
    if [ -n "$srv_pid" ]; then
        kill "$srv_pid" 2>/dev/null || true
        wait "$srv_pid" 2>/dev/null || true
    fi
    srv_pid=
}

# Raise the open-file limit to at least N (fails with a message if it cannot).
need_fds() {
    local n=$1 lim
    lim=$(ulimit -n)
    [ "$lim" = unlimited ] && return 0
    [ "$lim" -ge "$n" ] && return 0
    ulimit -n "$n" 2>/dev/null || die "open-file limit $lim is below $n (raise ulimit -n)"
}

# Checks two CPUs to pin to.
need_two_cpus() {
    command -v taskset >/dev/null || die "no taskset; install util-linux"
    [ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (server on one, load on the other); this machine has $(nproc)"
    local c
    for c in "$SERVER_CPU" "$LOAD_CPU"; do
        taskset -c "$c" true 2>/dev/null || die "cannot pin to CPU $c"
    done
}

# Header line for a results page: commit, kernel, CPU, date.
run_context() {
    local commit
    commit=$(git -C "$bench_root" rev-parse --short HEAD 2>/dev/null || echo unknown)
    printf 'Commit %s%s, Linux %s, %s, %s CPUs, %s.' "$commit" \
        "$(git -C "$bench_root" diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')" \
        "$(uname -r)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
        "$(nproc)" "$(date -u +%Y-%m-%dT%H:%MZ)"
}
