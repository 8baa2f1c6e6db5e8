#!/usr/bin/env bash
# Scale: echo round trips per second and latency as the number of connections
# grows (10, 100, 1,000, 10,000), netpoll beside the hand-written epoll server
# (the baseline), Go's net, libuv and libevent.
#
# Each server runs pinned to SERVER_CPU (netpoll with one worker, Go with
# GOMAXPROCS=1), the load generator (bench/echo/load.c: plain epoll, 512-byte
# ping-pong, every echo checked) pinned to LOAD_CPU. For each connection
# count the servers take turns, a fresh server process each time; after
# WARMUP s the load generator measures DURATION s: round trips/s, p50/p99
# latency, and the server's CPU time per round trip. REPEAT runs per pair;
# the table shows the run with the median round trips/s.
#
# Target (issue): at 10,000 connections netpoll's round trips/s stay within
# 10% of its figure at 100.
#
# Environment: CONNS ("10 100 1000 10000"), SERVERS ("epoll netpoll go libuv
#   libevent"), DURATION (3), WARMUP (1), REPEAT (3), SIZE (512), ACTIVE
#   (unset: every connection has a message in flight; N: at most N messages
#   in flight, the connections taking turns; see load.c), and those of
#   bench/common.sh. Writes bench/results/scale.{md,dat,raw,targets}.
set -euo pipefail
notes_file=$(mktemp)
# shellcheck source=../common.sh
. "$(dirname "$0")/../common.sh"
if [ "$QUICK" = 1 ]; then
    : "${DURATION:=1}" "${WARMUP:=0.5}" "${REPEAT:=1}"
fi
CONNS=${CONNS:-"10 100 1000 10000"}
SERVERS=${SERVERS:-"epoll netpoll go libuv libevent"}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
REPEAT=${REPEAT:-3}
SIZE=${SIZE:-512}
tmp=$(mktemp -d)
trap 'stop_server; rm -rf "$tmp" "$notes_file"' EXIT
trap 'exit 130' INT TERM

need_two_cpus
maxc=0
for n in $CONNS; do [ "$n" -gt "$maxc" ] && maxc=$n; done
need_fds $((maxc + 64))
build_netpoll
build_peers
[ -x "$peers/load" ] || die "the load generator (bench/echo/load.c) did not build"

servers=()
for s in $SERVERS; do
    if echo_server_cmd "$s"; then servers+=("$s"); else note "$s skipped: not built"; fi
done

: >"$tmp/raw"
nruns=$((REPEAT * ${#servers[@]} * $(wc -w <<<"$CONNS")))
k=0
for rep in $(seq "$REPEAT"); do
    for conns in $CONNS; do
        for s in "${servers[@]}"; do
            k=$((k + 1))
            progress "scale: run $k/$nruns: $s, $conns connections"
            echo_server_cmd "$s"
            if ! start_server "${cmd[@]}"; then
                note "$s ($conns conns): $srv_err"
                continue
            fi
            if taskset -c "$LOAD_CPU" "$peers/load" -c "$conns" ${ACTIVE:+-a "$ACTIVE"} -d "$DURATION" -w "$WARMUP" \
                    -s "$SIZE" -p "$srv_pid" "$srv_addr" >"$tmp/out" 2>"$tmp/err"; then
                echo "server=$s rep=$rep $(cat "$tmp/out")" >>"$tmp/raw"
            else
                note "$s ($conns conns, run $rep): load generator failed: $(head -c 300 "$tmp/err")"
            fi
            stop_server
        done
    done
done

# ---- report -----------------------------------------------------------------
# Per (server, conns): the run with the median round trips/s.
awk -v order="${servers[*]}" -v conns_list="$CONNS" '
    function kv(line, key) { return match(line, " " key "=[^ ]*") ? substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 2) : "" }
    function nz(x) { return x == "" ? "-" : x }
    { line = " " $0; s = kv(line, "server"); c = kv(line, "conns")
      n = ++cnt[s, c]; v[s, c, n] = kv(line, "rt_per_s") + 0; l[s, c, n] = line }
    END {
        ns = split(order, S, " "); nc = split(conns_list, C, " ")
        for (i = 1; i <= ns; i++) for (j = 1; j <= nc; j++) {
            s = S[i]; c = C[j]; n = cnt[s, c]
            if (!n) continue
            for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++)
                if (v[s, c, b] < v[s, c, a]) { t = v[s, c, a]; v[s, c, a] = v[s, c, b]; v[s, c, b] = t
                                               t = l[s, c, a]; l[s, c, a] = l[s, c, b]; l[s, c, b] = t }
            r = l[s, c, int((n + 1) / 2)]
            printf "%s %s %s %s %s %s %s %s %s\n", s, c, kv(r, "rt_per_s"), kv(r, "p50_us"), kv(r, "p99_us"),
                kv(r, "server_cpu_ns_per_rt"), kv(r, "other_pct"), nz(kv(r, "server_sys_ns_per_rt")),
                nz(kv(r, "tcp_segs_per_rt"))
        }
    }' "$tmp/raw" >"$tmp/med"

{
    echo "# server conns rt_per_s p50_us p99_us server_cpu_ns_per_rt other_cpu_pct server_sys_ns_per_rt tcp_segs_per_rt"
    cat "$tmp/med"
} >"$results/scale.dat"
cp "$tmp/raw" "$results/scale.raw"

table=$(awk -v order="${servers[*]}" -v conns_list="$CONNS" '
    { rt[$1, $2] = $3; p50[$1, $2] = $4; p99[$1, $2] = $5; cpu[$1, $2] = $6; oth[$1, $2] = $7
      sys[$1, $2] = $8; segs[$1, $2] = $9 }
    function r(x, b) { return (b > 0 && x != "") ? sprintf("%.2f", x / b) : "–" }
    function f(x, fmt) { return x == "-" ? "–" : sprintf(fmt, x) }
    END {
        print "| conns | server | round trips/s | ÷ epoll | p50 µs | p99 µs | p99 ÷ epoll | server CPU ns/RT | CPU ÷ epoll | of which kernel ns/RT | TCP segments/RT | other CPU % |"
        print "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        ns = split(order, S, " "); nc = split(conns_list, C, " ")
        for (j = 1; j <= nc; j++) for (i = 1; i <= ns; i++) {
            s = S[i]; c = C[j]
            if (!((s, c) in rt)) { printf "| %s | %s | failed | | | | | | | | | |\n", c, s; continue }
            printf "| %s | %s | %.0f | %s | %.0f | %.0f | %s | %.0f | %s | %s | %s | %.0f |\n", c, s, rt[s, c],
                r(rt[s, c], rt["epoll", c]), p50[s, c], p99[s, c], r(p99[s, c], p99["epoll", c]),
                cpu[s, c], r(cpu[s, c], cpu["epoll", c]), f(sys[s, c], "%.0f"), f(segs[s, c], "%.2f"), oth[s, c]
        }
    }' "$tmp/med")

# Target: netpoll at 10,000 vs at 100. Beside it, what the kernel alone
# allows: the server runs flat out at both counts, so round trips/s go as
# 1 / (CPU per round trip), and the kernel's share of that CPU (stime) is
# beyond the server's code. Were netpoll's own time per round trip the same
# at 10,000 as at 100, its ratio would be cpu100 / (cpu100 + sys10k - sys100);
# that bound, and epoll's ratio in the same run, are quoted with the target.
get() { awk -v s="$1" -v c="$2" -v k="$3" '$1 == s && $2 == c { print $k }' "$tmp/med"; }
r100=$(get netpoll 100 3) r10k=$(get netpoll 10000 3)
if [ -n "$r100" ] && [ -n "$r10k" ]; then
    awk -v a="$r10k" -v b="$r100" -v c100="$(get netpoll 100 6)" \
        -v k100="$(get netpoll 100 8)" -v k10k="$(get netpoll 10000 8)" \
        -v g100="$(get netpoll 100 9)" -v g10k="$(get netpoll 10000 9)" \
        -v e100="$(get epoll 100 3)" -v e10k="$(get epoll 10000 3)" 'BEGIN {
        r = a / b
        bound = (k100 != "-" && k10k != "-" && c100 > 0) ? c100 / (c100 + k10k - k100) : 0
        verdict = r >= 0.9 ? "met" : (bound > 0 && bound < 0.9 ? "MISSED, out of reach in this run: the growth of the kernel time alone caps it below 0.90 (see below)" : "MISSED")
        printf "- **scale**: netpoll round trips/s at 10,000 connections = %.0f, at 100 = %.0f: ratio %.2f (target ≥ 0.90, within 10%%): **%s**",
            a, b, r, verdict
        if (e100 > 0 && e10k > 0) printf "; the hand-written epoll server in the same run: %.2f", e10k / e100
        if (bound > 0) {
            printf ". The server'"'"'s kernel time per round trip went from %.0f to %.0f ns", k100, k10k
            if (g100 != "-" && g10k != "-") printf " (TCP segments per round trip %.2f → %.2f: bare ACKs, for messages whose ACK could not ride on the next message or answer in time)", g100, g10k
            printf "; with netpoll'"'"'s own time per round trip unchanged from 100 connections, the ratio could reach at most %.2f",
                bound
        }
        printf "\n" }' >"$results/scale.targets"
else
    echo "- **scale**: netpoll at 100 or 10,000 connections not measured: **not evaluated**" >"$results/scale.targets"
fi

other=$(awk '{ if ($7 + 0 > m) m = $7 + 0 } END { printf "%.0f", m }' "$tmp/med")
if [ "${other:-0}" -gt 10 ]; then
    note "the machine was not quiet: other processes used up to ${other}% of a CPU during a measured window (other CPU % column); round trips/s and latency suffer first"
fi
{
    echo "## Scale: echo round trips at 10 to 10,000 connections"
    echo
    if [ -n "${ACTIVE:-}" ]; then inflight="at most $ACTIVE messages in flight, the connections taking turns"
    else inflight="one message in flight per connection"; fi
    echo "${SIZE}-byte echo ping-pong, $inflight; server on CPU $SERVER_CPU \
(netpoll: examples/echo_server -w 1; Go: GOMAXPROCS=1), load generator (bench/echo/load.c) on CPU $LOAD_CPU; \
${WARMUP} s warm-up, ${DURATION} s measured, median of $REPEAT run(s) by round trips/s. \
Ratios (÷ epoll) are against the hand-written epoll server at the same connection count, same run. $(run_context)"
    echo
    echo "$table"
    echo
    cat "$results/scale.targets"
    cat "$notes_file"
} >"$results/scale.md"
cat "$results/scale.md"
