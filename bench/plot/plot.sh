#!/usr/bin/env bash
# Draws the PNG plots of bench/results/ from the .dat files the scenario
# scripts wrote (each plot is skipped if its data is missing):
#   scale_rtps.png   round trips/s against connections, one line per server
#   scale_p99.png    p99 latency against connections, one line per server
#   scale_cpu.png    server CPU per round trip against connections
#   idle_memory.png  resident memory per idle connection, per server
#   churn.png        server CPU per round trip, with and without deadlines
#   wake.png         np_go wake latency beside the eventfd ping-pong
#   http.png         requests/s per HTTP server
# Needs gnuplot (Debian: gnuplot-nox); without it, prints a note and exits 0.
set -euo pipefail
# shellcheck source=../common.sh
. "$(dirname "$0")/../common.sh"
if ! command -v gnuplot >/dev/null; then
    echo "note: no gnuplot (apt-get install gnuplot-nox): plots skipped" >&2
    exit 0
fi
if gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1; then
    term="pngcairo size 900,540 font 'sans,10'"
else
    term="png size 900,540"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
made=()

plot() { # name script (gnuplot commands after the terminal and output)
    local name=$1
    if printf 'set terminal %s noenhanced\nset output "%s"\n%s\n' "$term" "$results/$name" "$2" |
        gnuplot 2>"$tmp/err"; then
        made+=("$name")
    else
        echo "note: $name failed: $(head -c 300 "$tmp/err")" >&2
    fi
}

# ---- scale: one column per server, one row per connection count ------------
if [ -s "$results/scale.dat" ]; then
    for col in 3:rtps 5:p99 6:cpu; do
        awk -v c="${col%%:*}" '
            /^#/ { next }
            { if (!($1 in seen)) { seen[$1] = 1; S[++ns] = $1 }
              if (!($2 in cs)) { cs[$2] = 1; C[++nc] = $2 }
              v[$1, $2] = $c }
            END {
                printf "conns"; for (i = 1; i <= ns; i++) printf " %s", S[i]; printf "\n"
                for (j = 1; j <= nc; j++) {
                    printf "%s", C[j]
                    for (i = 1; i <= ns; i++) printf " %s", ((S[i], C[j]) in v ? v[S[i], C[j]] : "NaN")
                    printf "\n"
                }
            }' "$results/scale.dat" >"$tmp/scale_${col#*:}.dat"
    done
    n=$(head -1 "$tmp/scale_rtps.dat" | wc -w)
    common="set key outside right top; set grid; set logscale x; set xrange [7:14000]; set xlabel 'connections'
set xtics ('10' 10, '100' 100, '1,000' 1000, '10,000' 10000); set datafile missing 'NaN'
set style data linespoints"
    plot scale_rtps.png "$common
set title 'Echo round trips per second (512 B ping-pong, server on one CPU)'
set ylabel 'round trips / s'; set yrange [0:*]
plot for [i=2:$n] '$tmp/scale_rtps.dat' using 1:i title columnheader(i) lw 2 pt 7"
    plot scale_p99.png "$common
set title 'Echo round trip p99 latency'
set ylabel 'p99 latency (µs, log scale)'; set logscale y; set format y '%.0f'
plot for [i=2:$n] '$tmp/scale_p99.dat' using 1:i title columnheader(i) lw 2 pt 7"
    plot scale_cpu.png "$common
set title 'Server CPU time per echo round trip'
set ylabel 'server CPU ns / round trip'; set yrange [0:*]
plot for [i=2:$n] '$tmp/scale_cpu.dat' using 1:i title columnheader(i) lw 2 pt 7"
fi

bars="set style data histograms; set style histogram clustered gap 1; set style fill solid 0.8 border -1
set boxwidth 0.8; set grid ytics; set yrange [0:*]; set key top left"

# ---- idle memory -------------------------------------------------------------
if [ -s "$results/idle.dat" ]; then
    grep -v '^#' "$results/idle.dat" >"$tmp/idle.dat"
    conns=$(sed -n 's/^# conns=//p' "$results/idle.dat")
    go=$(awk '$1 == "go" { print $2 }' "$tmp/idle.dat" | head -1)
    lines=
    if [ -n "$go" ]; then
        lines=", $go with lines dt 2 lw 2 lc 'black' title 'Go (target for the 4 KiB-buffer form)', \
            $go / 2 with lines dt 3 lw 2 lc 'red' title 'Go ÷ 2 (target for np_wait_readable)'"
    fi
    plot idle_memory.png "$bars
set key top right
set title 'Resident memory per idle connection (${conns:-?} connections)'
set ylabel 'KiB per connection'
plot '$tmp/idle.dat' using 2:xtic(1) title 'VmRSS', '' using 3 title 'page tables (VmPTE)'$lines"
fi

# ---- churn -------------------------------------------------------------------
if [ -s "$results/churn.dat" ]; then
    grep -v '^#' "$results/churn.dat" >"$tmp/churn.dat"
    plot churn.png "$bars
set title 'Deadline churn: server CPU per echo round trip (median; error bars: min-max)'
set ylabel 'server CPU ns / round trip'
set style histogram errorbars gap 1 lw 1
plot '$tmp/churn.dat' using 2:3:4:xtic(1) title 'CPU ns / round trip'"
fi

# ---- wake ----------------------------------------------------------------------
if [ -s "$results/wake.dat" ]; then
    awk '!/^#/ { name = ($1 == "eventfd" ? "eventfd" : "np_go " $3 "w") " " $2; printf "\"%s\" %s %s\n", name, $4 / 1000, $5 / 1000 }' \
        "$results/wake.dat" >"$tmp/wake.dat"
    plot wake.png "$bars
set title 'Wake latency, one-way median: np_go from a foreign thread vs eventfd ping-pong'
set ylabel 'µs'
plot '$tmp/wake.dat' using 2:xtic(1) title 'median one-way'"
fi

# ---- http ----------------------------------------------------------------------
if [ -s "$results/http.dat" ]; then
    grep -v '^#' "$results/http.dat" >"$tmp/http.dat"
    plot http.png "$bars
set title 'HTTP hello: wrk -t1 -c50, server on one CPU'
set ylabel 'requests / s'
plot '$tmp/http.dat' using 2:xtic(1) title 'requests/s'"
fi

echo "${made[*]:-}"
