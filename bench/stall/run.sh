#!/usr/bin/env bash
# The stall monitor (issue 14, the hand-off): how long one task that keeps
# its thread holds up the others, and what the monitor costs.
#
# Gaps: bench_stall (bench/stall/bench_stall.c) runs a 10 ms ticker task
# beside tasks that keep their threads, with the monitor at its default
# (stall_ns 0) and off (stall_ns < 0, the control), REPEAT times each, the
# two taking turns, each a fresh process:
#   sleep     workers 1, one task in sleep(1)
#   spin      workers 1, one task computing for 1 s
#   usleep2   workers 2, two tasks each in usleep(500 ms)
# The table shows the worst ticker gap of each (the median run, and the
# worst run). Target: ≤ 30 ms with the monitor.
#
# Cost: bench/echo/run.sh with netpoll and netpoll-nomon (the same build,
# echo_server -m off) taking turns: server CPU per round trip at CONNS
# connections. Target: monitor on / off ≤ 1.02.
#
# Environment: REPEAT (5; QUICK=1: 2), ECHO_REPEAT (5; QUICK=1: 2), CONNS
#   ("100 1000"), and those of bench/common.sh. Writes bench/results/stall.md.
set -euo pipefail
notes_file=$(mktemp)
# shellcheck source=../common.sh
. "$(dirname "$0")/../common.sh"
if [ "$QUICK" = 1 ]; then
    : "${REPEAT:=2}" "${ECHO_REPEAT:=2}"
fi
REPEAT=${REPEAT:-5}
ECHO_REPEAT=${ECHO_REPEAT:-5}
CONNS=${CONNS:-"100 1000"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$notes_file"' EXIT
trap 'exit 130' INT TERM

build_netpoll
bin=$npbin/bench_stall
[ -x "$bin" ] || die "build/release/bench/bench_stall is missing"

for rep in $(seq "$REPEAT"); do
    for s in sleep spin usleep2; do
        for mon in default off; do
            progress "stall: $s, monitor $mon, run $rep/$REPEAT"
            arg=()
            [ "$mon" = off ] && arg=(off)
            timeout 60 "$bin" "$s" "${arg[@]}" >>"$tmp/raw" 2>>"$tmp/err" ||
                note "bench_stall $s $mon failed: $(tail -n 1 "$tmp/err")"
        done
    done
done

progress "stall: echo CPU, monitor on and off"
(cd "$bench_root" && OUT=$tmp/echo.md SERVERS="netpoll netpoll-nomon" CONNS=$CONNS REPEAT=$ECHO_REPEAT \
    NO_BUILD=1 bench/echo/run.sh >/dev/null 2>"$tmp/echo.err") ||
    note "bench/echo/run.sh failed: $(tail -n 1 "$tmp/echo.err")"

{
    echo "# Stall: one task that keeps its thread (bench/stall)"
    echo
    echo "Worst gap of a 10 ms ticker task while other tasks keep their threads;"
    echo "median and worst of $REPEAT runs each, monitor at its default and off, taking turns."
    echo
    echo "| scenario | monitor | worst gap, median run (ms) | worst gap, worst run (ms) | stalls | hand-offs | target ≤ 30 ms |"
    echo "|---|---|--:|--:|--:|--:|---|"
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
           k = v["scenario"] " " v["stall"]; n[k]++; g[k, n[k]] = v["worst_gap_ms"] + 0
           st[k] = v["stalls"]; ho[k] = v["handoffs"] }
         END {
           split("sleep spin usleep2", S, " "); split("default off", M, " ")
           for (i = 1; i <= 3; i++) for (j = 1; j <= 2; j++) {
             k = S[i] " " M[j]; if (!(k in n)) continue
             m = n[k]; for (a = 1; a <= m; a++) x[a] = g[k, a]
             for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (x[b] < x[a]) { t = x[a]; x[a] = x[b]; x[b] = t }
             med = x[int((m + 1) / 2)]; worst = x[m]
             verdict = M[j] == "off" ? "(control)" : (worst <= 30 ? "met" : (med <= 30 ? "median met, worst NOT" : "NOT met"))
             printf "| %s | %s | %.1f | %.1f | %s | %s | %s |\n", S[i], M[j], med, worst, st[k], ho[k], verdict
           }
         }' "$tmp/raw"
    echo
    echo "## Cost: echo with the monitor on and off"
    echo
    if [ -s "$tmp/echo.md" ]; then
        awk '/^\| netpoll/ { print } /^\| server/ || /^\|---/ { print }' "$tmp/echo.md"
        echo
        awk -F'|' '/^\| netpoll \|/ { on[$3 + 0] = $7 + 0 } /^\| netpoll-nomon \|/ { off[$3 + 0] = $7 + 0 }
             END { for (c in on) if (c in off && off[c] > 0)
                     printf "- %d conns: CPU per round trip, monitor on / off = %.3f (target ≤ 1.02: %s)\n",
                       c, on[c] / off[c], on[c] / off[c] <= 1.02 ? "met" : "NOT met" }' "$tmp/echo.md"
    fi
    if [ -s "$notes_file" ]; then echo; cat "$notes_file"; fi
    echo
    echo "Raw:"
    echo '```'
    cat "$tmp/raw"
    echo '```'
} >"$results/stall.md"
# The targets, for bench/run's summary.
{
    grep -E '^\| (sleep|spin|usleep2) \| default' "$results/stall.md" |
        awk -F'|' '{ printf "- stall %s: worst ticker gap %s ms (median run), %s ms (worst run); target ≤ 30 ms:%s\n", $2, $4, $5, $8 }'
    grep -E '^- [0-9]+ conns: CPU per round trip, monitor' "$results/stall.md" | sed 's/^- /- stall, echo /'
} >"$results/stall.targets"
echo "(written to bench/results/stall.md)" >&2
