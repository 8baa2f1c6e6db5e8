#!/usr/bin/env bash
# Task and scheduler benchmarks, netpoll beside Go, built and run together.
# Each side runs RUNS times (default 3); the table shows the best run of
# each, and the ratio netpoll / Go (below 1: netpoll is faster).
# Needs golang-go for the Go column.  Usage: bench/sched.sh [iterations]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
iters=${1:-2000000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --preset release >/dev/null
cmake --build --preset release -j2 --target bench_sched >/dev/null
have_go=0
if command -v go >/dev/null 2>&1; then
    GOCACHE="$tmp/gocache" GO111MODULE=off go build -o "$tmp/go_sched" bench/go/sched_bench.go
    have_go=1
fi
for i in $(seq "$runs"); do
    printf '\rrun %d/%d ...' "$i" "$runs" >&2
    ./build/release/bench/bench_sched "$iters" >>"$tmp/out"
    if [ $have_go = 1 ]; then "$tmp/go_sched" "$iters" >>"$tmp/out"; fi
done
printf '\r' >&2
awk '
    { key = $2; v = $3 + 0
      if (!(($1, key) in best) || v < best[$1, key]) best[$1, key] = v
      if (!(key in seen)) { seen[key] = 1; order[++n] = key } }
    END {
        printf "| %-22s | %12s | %10s | %14s |\n", "operation (ns)", "netpoll", "Go", "netpoll / Go"
        printf "|%s|%s|%s|%s|\n", "------------------------", "--------------", "------------", "----------------"
        for (i = 1; i <= n; i++) {
            k = order[i]; np = best["netpoll", k]; g = best["go", k]
            name = k; sub(/_ns$/, "", name)
            if (g > 0) printf "| %-22s | %12.1f | %10.1f | %14.2f |\n", name, np, g, np / g
            else       printf "| %-22s | %12.1f | %10s | %14s |\n", name, np, "-", "-"
        }
    }' "$tmp/out"
