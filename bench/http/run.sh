#!/usr/bin/env bash
# HTTP: wrk against examples/http_hello (netpoll, one worker) beside a Go
# net/http hello server (GOMAXPROCS=1, the baseline) and libevent's evhttp,
# all answering the same 14-byte "Hello, world!\n" with keep-alive.
#
# Each server pinned to SERVER_CPU, wrk (-t1 -c50, keep-alive) pinned to
# LOAD_CPU for DURATION s; the servers take turns, REPEAT runs each, a fresh
# server process each run. Figures: requests/s, wrk's latency percentiles,
# and the server's CPU time per request (utime + stime from /proc/PID/stat
# over the wrk run, 10 ms resolution). The table shows the median run by
# requests/s. No target in the issue: the ratio to Go is reported.
#
# Environment: DURATION (5), REPEAT (3), WRK_CONNS (50), SERVERS ("netpoll go
#   libevent"), and those of bench/common.sh. Writes
#   bench/results/http.{md,dat,raw,targets}.
set -euo pipefail
notes_file=$(mktemp)
# shellcheck source=../common.sh
. "$(dirname "$0")/../common.sh"
if [ "$QUICK" = 1 ]; then
    : "${DURATION:=2}" "${REPEAT:=1}"
fi
DURATION=${DURATION:-5}
REPEAT=${REPEAT:-3}
WRK_CONNS=${WRK_CONNS:-50}
SERVERS=${SERVERS:-"netpoll go libevent"}
tmp=$(mktemp -d)
trap 'stop_server; rm -rf "$tmp" "$notes_file"' EXIT
trap 'exit 130' INT TERM

need_two_cpus
build_netpoll
build_peers
: >"$tmp/raw"
if ! command -v wrk >/dev/null; then
    note "HTTP scenario skipped: wrk is not installed (apt-get install wrk)"
    servers=()
else
    servers=()
    for s in $SERVERS; do
        if echo_server_cmd "http-$s"; then servers+=("$s"); else note "$s skipped: not built"; fi
    done
fi

# wrk's latency figures to µs: "812.00us", "2.61ms", "1.02s".
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
                                   else if (v ~ /m$/) print n * 60e6; else if (v ~ /s$/) print n * 1e6; else print n }'; }

k=0
nruns=$((REPEAT * ${#servers[@]}))
for rep in $(seq "$REPEAT"); do
    for s in "${servers[@]}"; do
        k=$((k + 1))
        progress "http: run $k/$nruns: $s (wrk -t1 -c$WRK_CONNS -d${DURATION}s)"
        echo_server_cmd "http-$s"
        if ! start_server "${cmd[@]}"; then
            note "$s: $srv_err"
            continue
        fi
        c0=$(proc_cpu_ns "$srv_pid")
        if taskset -c "$LOAD_CPU" wrk -t1 -c"$WRK_CONNS" -d"${DURATION}s" --latency \
                "http://$srv_addr/" >"$tmp/wrk" 2>&1; then
            c1=$(proc_cpu_ns "$srv_pid")
            rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk")
            total=$(awk '/requests in/ { print $1 }' "$tmp/wrk")
            p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$tmp/wrk")")
            p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$tmp/wrk")")
            errs=$(awk '/Socket errors|Non-2xx/ { $1 = $1; printf "%s; ", $0 }' "$tmp/wrk")
            cpu_per=$(awk -v c="$((c1 - c0))" -v n="$total" 'BEGIN { printf "%.0f", (n > 0 ? c / n : 0) }')
            echo "server=$s rep=$rep rps=$rps requests=$total p50_us=$p50 p99_us=$p99 server_cpu_ns=$((c1 - c0)) server_cpu_ns_per_req=$cpu_per" >>"$tmp/raw"
            [ -n "$errs" ] && note "$s (run $rep): wrk reported errors: $errs"
        else
            note "$s (run $rep): wrk failed: $(head -c 300 "$tmp/wrk")"
        fi
        stop_server
    done
done
cp "$tmp/raw" "$results/http.raw"

awk -v order="${servers[*]}" '
    function kv(line, key) { return match(line, " " key "=[^ ]*") ? substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 2) : "" }
    { line = " " $0; s = kv(line, "server"); n = ++cnt[s]; v[s, n] = kv(line, "rps") + 0; l[s, n] = line }
    END {
        ns = split(order, S, " ")
        for (i = 1; i <= ns; i++) {
            s = S[i]; n = cnt[s]
            if (!n) continue
            for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++)
                if (v[s, b] < v[s, a]) { t = v[s, a]; v[s, a] = v[s, b]; v[s, b] = t
                                         t = l[s, a]; l[s, a] = l[s, b]; l[s, b] = t }
            r = l[s, int((n + 1) / 2)]
            printf "%s %s %s %s %s %s %s\n", s, kv(r, "rps"), kv(r, "p50_us"), kv(r, "p99_us"), kv(r, "server_cpu_ns_per_req"), v[s, 1], v[s, n]
        }
    }' "$tmp/raw" >"$tmp/med"
{
    echo "# server requests_per_s p50_us p99_us server_cpu_ns_per_req rps_min rps_max"
    cat "$tmp/med"
} >"$results/http.dat"

table=$(awk '
    { rps[$1] = $2; p50[$1] = $3; p99[$1] = $4; cpu[$1] = $5; lo[$1] = $6; hi[$1] = $7; order[++n] = $1 }
    END {
        what["netpoll"] = "examples/http_hello -w 1"; what["go"] = "net/http, GOMAXPROCS=1"; what["libevent"] = "evhttp"
        print "| server | program | requests/s | min–max | ÷ Go | p50 µs | p99 µs | server CPU µs/request | CPU ÷ Go |"
        print "|---|---|--:|--:|--:|--:|--:|--:|--:|"
        g = rps["go"]; gc = cpu["go"]
        for (i = 1; i <= n; i++) {
            s = order[i]
            printf "| %s | %s | %.0f | %.0f–%.0f | %s | %.0f | %.0f | %.2f | %s |\n", s, what[s], rps[s], lo[s], hi[s],
                (g > 0 ? sprintf("%.2f", rps[s] / g) : "–"), p50[s], p99[s], cpu[s] / 1000,
                (gc > 0 ? sprintf("%.2f", cpu[s] / gc) : "–")
        }
    }' "$tmp/med")

awk '{ rps[$1] = $2 } END {
        if (rps["netpoll"] > 0 && rps["go"] > 0)
            printf "- **HTTP** (no target set): netpoll http_hello %.0f requests/s, Go net/http %.0f: ratio %.2f\n", rps["netpoll"], rps["go"], rps["netpoll"] / rps["go"]
        else print "- **HTTP** (no target set): not measured"
    }' "$tmp/med" >"$results/http.targets"

{
    echo "## HTTP: wrk against a hello server"
    echo
    # shellcheck disable=SC2028  # the \n is meant literally
    echo "wrk -t1 -c$WRK_CONNS -d${DURATION}s (keep-alive, no pipelining) on CPU $LOAD_CPU against each server on CPU \
$SERVER_CPU; every server answers 200 with \"Hello, world!\\n\" (text/plain). Median of $REPEAT run(s) by \
requests/s, servers taking turns. Ratios are against Go's net/http, same run. $(run_context)"
    echo
    echo "$table"
    echo
    cat "$results/http.targets"
    cat "$notes_file"
} >"$results/http.md"
cat "$results/http.md"
