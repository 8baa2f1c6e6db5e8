#!/usr/bin/env bash
# Echo ping-pong benchmark: netpoll beside a hand-written edge-triggered epoll
# server (the baseline), Go's net (GOMAXPROCS=1) and libuv, all built and run
# here, all driven by the same load generator (load.c, plain epoll).
#
# For every server and connection count: the server runs pinned to one CPU
# (netpoll with one worker), the load generator pinned to another; each
# connection sends a 512-byte message, waits for all of it to come back
# (checked byte for byte), and sends the next. After WARMUP seconds the load
# generator measures for DURATION seconds: round trips, latency, and the CPU
# time the server process used in exactly that window (user + system, all
# threads, read through the process CPU clock, clock_getcpuclockid(2); the
# raw lines also carry utime+stime from /proc/PID/stat as a cross-check).
# Server CPU ns per round trip = that CPU time / round trips in the window.
#
# Every (server, conns) pair is measured REPEAT times, the servers taking
# turns, each time with a fresh server process; the table shows the run with
# the median CPU ns/RT (its throughput and latency beside it) and the
# min-max of CPU ns/RT over the repeats. Ratios are against the epoll server
# measured in the same run.
#
# Needs: cc, taskset, 2+ CPUs; cmake for netpoll; golang-go and libuv1-dev
# for those columns (a missing one is skipped with a note, never installed).
#
# Environment: DURATION (s, default 5), WARMUP (s, 1), REPEAT (3),
#   CONNS ("100 1000"), SERVERS ("epoll netpoll go libuv"; also "epoll-s":
#   the epoll server stopping after a short read, and "netpoll-nomon":
#   netpoll without its stall monitor, bench/stall's control), SIZE (512),
#   SERVER_CPU (0), LOAD_CPU (1), MAX_OTHER (10), RETRIES (2).
# Beside the figures: the server's and the load generator's CPU use (% of
# one CPU) and "other CPU %", busy time of the machine charged to neither
# (other processes). A run whose "other CPU %" is over MAX_OTHER is done
# again, up to RETRIES times; if it stays disturbed the last one is kept
# and counted in the "disturbed" column.
# Writes the table, notes and raw lines to bench/results/echo.md (or OUT).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
REPEAT=${REPEAT:-3}
CONNS=${CONNS:-"100 1000"}
SERVERS=${SERVERS:-"epoll netpoll go libuv"}
SIZE=${SIZE:-512}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
MAX_OTHER=${MAX_OTHER:-10}
RETRIES=${RETRIES:-2}
CC=${CC:-cc}
CFLAGS=(-O2 -Wall -Wextra)

tmp=$(mktemp -d)
srv_pid=
cleanup() {
    if [ -n "$srv_pid" ]; then kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

notes=()
note() { notes+=("$*"); echo "note: $*" >&2; }
die() { echo "bench/echo/run.sh: $*" >&2; exit 1; }

# --- tools --------------------------------------------------------------------
command -v "$CC" >/dev/null || die "no C compiler ($CC); install gcc"
command -v taskset >/dev/null || die "no taskset; install util-linux"
ncpu=$(nproc)
[ "$ncpu" -ge 2 ] || die "needs 2 CPUs (server on one, load on the other); this machine has $ncpu"
for c in "$SERVER_CPU" "$LOAD_CPU"; do
    taskset -c "$c" true 2>/dev/null || die "cannot pin to CPU $c"
done
maxconns=0
for n in $CONNS; do [ "$n" -gt "$maxconns" ] && maxconns=$n; done
need_fds=$((maxconns + 64))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
    ulimit -n "$need_fds" 2>/dev/null ||
        die "open-file limit $(ulimit -n) is below $need_fds (CONNS up to $maxconns); raise ulimit -n"
fi

# --- is the machine quiet? -----------------------------------------------------
busy() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
t0=$(date +%s%N); b0=$(busy); sleep 1; b1=$(busy); t1=$(date +%s%N)
bg=$(( (b1 - b0) * 100 * 1000000000 / $(getconf CLK_TCK) / (t1 - t0) ))
if [ "$bg" -gt 10 ]; then
    note "the machine was busy before the run (${bg}% of a CPU used by other processes over 1 s)"
fi

# --- build --------------------------------------------------------------------
echo "building ..." >&2
"$CC" "${CFLAGS[@]}" -o "$tmp/load" bench/echo/load.c
"$CC" "${CFLAGS[@]}" -o "$tmp/epoll_echo" bench/echo/epoll_echo.c
declare -A have=([epoll]=1 [epoll-s]=1)

netpoll_bin=$root/build/release/examples/echo_server
if ! command -v cmake >/dev/null; then
    note "netpoll skipped: cmake not installed"
elif ! { cmake --preset release >"$tmp/cmake.log" 2>&1 &&
         cmake --build --preset release -j2 --target echo_server >>"$tmp/cmake.log" 2>&1; }; then
    tail -n 15 "$tmp/cmake.log" >&2
    note "netpoll skipped: building the echo_server target failed: $(grep -m1 -E 'error|Error' "$tmp/cmake.log" | head -c 200)"
elif [ ! -x "$netpoll_bin" ]; then
    note "netpoll skipped: $netpoll_bin was not built"
else
    have[netpoll]=1
    have[netpoll-nomon]=1
fi

if command -v go >/dev/null; then
    if GOCACHE="$tmp/gocache" GO111MODULE=off GOFLAGS="" \
        go build -o "$tmp/go_echo" bench/echo/go_echo.go; then
        have[go]=1
    else
        note "go skipped: go build failed"
    fi
else
    note "go skipped: no go toolchain (apt-get install golang-go)"
fi

if command -v pkg-config >/dev/null && pkg-config --exists libuv; then
    # shellcheck disable=SC2046  # pkg-config output is meant to be split
    "$CC" "${CFLAGS[@]}" $(pkg-config --cflags libuv) -o "$tmp/uv_echo" bench/echo/uv_echo.c \
        $(pkg-config --libs libuv)
    have[libuv]=1
else
    note "libuv skipped: libuv not found by pkg-config (apt-get install libuv1-dev pkg-config)"
fi

server_cmd() { # name -> command line, in the array cmd
    case $1 in
        epoll) cmd=("$tmp/epoll_echo" 127.0.0.1:0) ;;
        epoll-s) cmd=("$tmp/epoll_echo" -s 127.0.0.1:0) ;;
        netpoll) cmd=("$netpoll_bin" -w 1 127.0.0.1:0) ;;
        netpoll-nomon) cmd=("$netpoll_bin" -w 1 -m off 127.0.0.1:0) ;;
        go) cmd=("$tmp/go_echo" 127.0.0.1:0) ;;
        libuv) cmd=("$tmp/uv_echo" 127.0.0.1:0) ;;
        *) die "unknown server $1" ;;
    esac
}

# --- measure ------------------------------------------------------------------
run_one() { # server conns rep
    local name=$1 conns=$2 rep=$3 addr="" _
    server_cmd "$name"
    rm -f "$tmp/srv.out" "$tmp/result" # not the previous server's address
    # GOMAXPROCS only matters to the Go server; taskset execs, so $! is the server.
    GOMAXPROCS=1 taskset -c "$SERVER_CPU" "${cmd[@]}" >"$tmp/srv.out" 2>"$tmp/srv.err" &
    srv_pid=$!
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening on //p' "$tmp/srv.out" 2>/dev/null)
        [ -n "$addr" ] && break
        kill -0 "$srv_pid" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$addr" ]; then
        echo "server=$name conns=$conns rep=$rep error=no-listening-line" >"$tmp/result"
        note "$name (conns $conns, run $rep): no 'listening on' line within 5 s: $(head -c 300 "$tmp/srv.err")"
    elif taskset -c "$LOAD_CPU" "$tmp/load" -c "$conns" -d "$DURATION" -w "$WARMUP" -s "$SIZE" \
            -p "$srv_pid" "$addr" >"$tmp/load.out" 2>"$tmp/load.err"; then
        echo "server=$name rep=$rep $(cat "$tmp/load.out")" >"$tmp/result"
    else
        echo "server=$name conns=$conns rep=$rep error=load-failed" >"$tmp/result"
        note "$name (conns $conns, run $rep): load generator failed: $(head -c 300 "$tmp/load.err")"
    fi
    kill "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=
}

# run_one, again while another process disturbed the measured window.
measure() { # server conns rep
    local attempt other
    for attempt in $(seq $((RETRIES + 1))); do
        run_one "$@"
        other=$(sed -n 's/.* other_pct=\([-0-9.]*\).*/\1/p' "$tmp/result")
        [ -z "$other" ] && break # failed, or no /proc/stat
        awk -v o="$other" -v m="$MAX_OTHER" 'BEGIN { exit !(o > m) }' || break
        if [ "$attempt" -le "$RETRIES" ]; then
            echo "$(cat "$tmp/result") retried=1" >>"$tmp/raw.disturbed"
            sleep 1
        else
            sed -i 's/$/ disturbed=1/' "$tmp/result"
        fi
    done
    cat "$tmp/result" >>"$tmp/raw"
}

servers=()
for s in $SERVERS; do [ -n "${have[$s]:-}" ] && servers+=("$s"); done
nruns=$((REPEAT * ${#servers[@]} * $(echo "$CONNS" | wc -w)))
k=0
for rep in $(seq "$REPEAT"); do
    for conns in $CONNS; do
        for s in "${servers[@]}"; do
            k=$((k + 1))
            printf '\rrun %d/%d: %-8s %5s conns ...' "$k" "$nruns" "$s" "$conns" >&2
            measure "$s" "$conns" "$rep"
        done
    done
done
printf '\r%60s\r' '' >&2
echo >&2

# --- report -------------------------------------------------------------------
table=$(awk -v order="${servers[*]}" -v conns_list="$CONNS" '
    function kv(line, key,   m) { return match(line, " " key "=[^ ]*") ? substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 2) : "" }
    { line = " " $0; s = kv(line, "server"); c = kv(line, "conns")
      if (kv(line, "error") != "") { failed[s, c]++; next }
      if (kv(line, "disturbed") != "") dist[s, c]++
      n = ++cnt[s, c]; v[s, c, n] = kv(line, "server_cpu_ns_per_rt") + 0; l[s, c, n] = line }
    END {
        ns = split(order, S, " "); nc = split(conns_list, C, " ")
        for (j = 1; j <= nc; j++) for (i = 1; i <= ns; i++) {
            s = S[i]; c = C[j]; n = cnt[s, c]
            if (!n) continue
            for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++)   # sort by CPU/RT
                if (v[s, c, b] < v[s, c, a]) { t = v[s, c, a]; v[s, c, a] = v[s, c, b]; v[s, c, b] = t
                                               t = l[s, c, a]; l[s, c, a] = l[s, c, b]; l[s, c, b] = t }
            m = int((n + 1) / 2); med[s, c] = v[s, c, m]; row[s, c] = l[s, c, m]
            lo[s, c] = v[s, c, 1]; hi[s, c] = v[s, c, n]
        }
        printf "| server | conns | round trips/s | p50 µs | p99 µs | server CPU ns/RT | CPU ratio vs epoll | CPU ns/RT min–max | server CPU %% | load CPU %% | other CPU %% | disturbed |\n"
        printf "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
        for (j = 1; j <= nc; j++) for (i = 1; i <= ns; i++) {
            s = S[i]; c = C[j]
            if (!((s, c) in med)) {
                if ((s, c) in failed) printf "| %s | %s | failed | | | | | | | | | |\n", s, c
                continue
            }
            r = row[s, c]; base = med["epoll", c]; n = cnt[s, c]
            ratio = base > 0 ? sprintf("%.3f", med[s, c] / base) : "–"
            printf "| %s | %s | %.0f | %s | %s | %.0f | %s | %.0f–%.0f | %s | %s | %s | %d/%d |\n", s, c,
                kv(r, "rt_per_s"), kv(r, "p50_us"), kv(r, "p99_us"), med[s, c], ratio,
                lo[s, c], hi[s, c], kv(r, "server_cpu_pct"), kv(r, "client_cpu_pct"), kv(r, "other_pct"), dist[s, c], n
            if (s == "netpoll" && base > 0) {
                verdict = verdict sprintf("- %s conns: netpoll / epoll CPU per round trip = %.3f (target ≤ 1.05: %s)", c, med[s, c] / base, med[s, c] / base <= 1.05 ? "met" : "NOT met")
                if (("go", c) in med) verdict = verdict sprintf("; netpoll / Go = %.3f (target < 1: %s)", med[s, c] / med["go", c], med[s, c] < med["go", c] ? "met" : "NOT met")
                verdict = verdict "\n"
            }
        }
        if (verdict != "") printf "\n%s", verdict
    }' "$tmp/raw")

ndist=$(grep -c ' disturbed=1' "$tmp/raw" || true)
touch "$tmp/raw.disturbed"
nretried=$(wc -l <"$tmp/raw.disturbed")
if [ "$ndist" -gt 0 ]; then
    note "the machine was not quiet: $ndist of the kept runs had other processes using over ${MAX_OTHER}% of a CPU in the measured window, even after $RETRIES retries ($nretried disturbed runs were redone). Round trips/s and latency suffer most, but CPU ns/RT moves too (a server given less CPU finds more ready connections per wakeup and spends less per round trip): rerun on a quiet machine"
elif [ "$nretried" -gt 0 ]; then
    note "$nretried runs disturbed by other processes (over ${MAX_OTHER}% of a CPU) were redone"
fi
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
header="Echo ping-pong, ${SIZE}-byte messages; server pinned to CPU $SERVER_CPU, load generator to CPU $LOAD_CPU; \
${WARMUP} s warm-up then ${DURATION} s measured; each row: median of $REPEAT runs by server CPU ns per round trip. \
Commit $commit, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $ncpu CPUs, $(date -u +%Y-%m-%dT%H:%MZ)."
{
    echo "$header"
    echo
    echo "$table"
    for n in "${notes[@]}"; do echo "- note: $n"; done
}
mkdir -p "$root/bench/results"
{
    echo "# bench/echo"
    echo
    echo "$header"
    echo
    echo "$table"
    echo
    for n in "${notes[@]}"; do echo "- note: $n"; done
    echo
    echo "Raw runs (load generator output; cpu in ns, server_stat_cpu_ns from /proc/PID/stat):"
    echo
    echo '```'
    cat "$tmp/raw"
    echo '```'
    if [ -s "$tmp/raw.disturbed" ]; then
        echo
        echo "Runs redone because other processes disturbed them:"
        echo
        echo '```'
        cat "$tmp/raw.disturbed"
        echo '```'
    fi
} >"${OUT:-$root/bench/results/echo.md}"
echo "(written to ${OUT:-bench/results/echo.md})" >&2
