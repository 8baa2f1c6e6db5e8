#!/usr/bin/env bash
# A million tasks: N (1,000,000) tasks parked in np_sleep beside as many
# goroutines parked in time.Sleep, in the same run.
#
#   bench/million/bench_million.c  netpoll (built by CMake, release)
#   bench/million/go_million.go    Go (Debian golang-go), the same program
#
# Each program spawns N tasks / goroutines that each count themselves and
# park until a common deadline; reads VmRSS, VmPTE and the mapping count
# once all are parked, then again until VmRSS is steady; lets the deadline
# pass (every sleep ends at once) and times the finish. See
# bench_million.c for the method and the output line.
#
# Configurations (rows):
#   default   netpoll as configured out of the box: 256 KiB stacks, idle
#             stacks off (a parked task keeps its stack's touched page)
#   16k       np_config.stack_size = 16 KiB (Go starts a goroutine on a
#             2 KiB stack and grows it by copying; C cannot move a stack)
#   tuned     16 KiB stacks and np_config.idle_stack_ns = IDLE_MS (50 ms):
#             a task parked that long has the used part of its stack copied
#             to the heap and the stack's pages released
#   go        GOMAXPROCS=2, default GOGC
# netpoll runs 2 workers; both programs are pinned to SERVER_CPU and
# LOAD_CPU (taskset). The programs take turns (the order alternates),
# REPEAT times each; the table shows medians and the ratio netpoll ÷ Go.
#
# Figures per task: (reading - baseline) / N, in bytes. "spawn": from the
# first spawn until every task has parked; "wake": from the deadline until
# the last task has finished; "total" = spawn + wake (the deliberate wait
# between them is left out); CPU: the process's CPU time (all threads) over
# the whole run, the settling sweeps and Go's garbage collection included.
#
# Targets (issue): RSS per parked task ≤ 2.5 KiB and ≤ Go's, and total time
# ≤ Go's; judged for the tuned configuration, the default shown beside.
#
# Environment: N (1000000; QUICK=1: 200000), REPEAT (3; QUICK=1: 1),
#   CONFIGS ("default 16k tuned"), IDLE_MS (50), DEADLINE (seconds to the
#   common deadline: 20 without idle stacks, 30 with, as the sweep moves
#   most stacks once the spawning is over (1-2 s for a million); scaled
#   down with N), and those
#   of bench/common.sh. Writes bench/results/million.{md,dat,raw,targets}.
set -euo pipefail
notes_file=$(mktemp)
# shellcheck source=../common.sh
. "$(dirname "$0")/../common.sh"
if [ "$QUICK" = 1 ]; then
    : "${N:=200000}" "${REPEAT:=1}"
fi
N=${N:-1000000}
REPEAT=${REPEAT:-3}
CONFIGS=${CONFIGS:-"default 16k tuned"}
IDLE_MS=${IDLE_MS:-50}
DEADLINE=${DEADLINE:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$notes_file"' EXIT
trap 'exit 130' INT TERM

need_two_cpus
build_netpoll
[ -x "$npbin/bench_million" ] || die "build/release/bench/bench_million is missing"
if ! command -v go >/dev/null; then
    if [ "$(id -u)" = 0 ] && [ "${NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null; then
        progress "million: installing golang-go"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends golang-go >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 || true
              apt-get install -y -qq --no-install-recommends golang-go >/dev/null 2>&1 || true; }
    fi
fi
have_go=0
if command -v go >/dev/null; then
    if _build_if_stale go_million "$bench_root/bench/million/go_million.go" env GOCACHE="$bench_root/build/gocache" \
        GO111MODULE=off GOFLAGS="" go build -o "$peers/go_million" "$bench_root/bench/million/go_million.go"; then
        have_go=1
    fi
else
    note "Go column skipped: no go toolchain (apt-get install golang-go)"
fi

# Seconds to the deadline: room to spawn (a few µs a task) and, with idle
# stacks, for the sweep to move every stack out.
deadline_for() { # config
    if [ -n "$DEADLINE" ]; then echo "$DEADLINE"; return; fi
    local base=20
    [ "$1" = tuned ] && base=30
    awk -v b="$base" -v n="$N" 'BEGIN { d = b * n / 1000000; printf "%d\n", (d < 5 ? 5 : d) }'
}

args_for() { # config
    case $1 in
        default) echo "" ;;
        16k) echo "-s 16384" ;;
        tuned) echo "-s 16384 -i $((IDLE_MS * 1000000))" ;;
        *) die "unknown configuration '$1' (known: default 16k tuned)" ;;
    esac
}

run_one() { # impl config rep
    local impl=$1 c=$2 rep=$3 d
    d=$(deadline_for "$c")
    local cmd extra
    if [ "$impl" = netpoll ]; then
        read -r -a extra <<<"$(args_for "$c")"
        cmd=("$npbin/bench_million" -n "$N" -w 2 -d "$d" -c "$c" "${extra[@]}")
    else
        cmd=(env GOMAXPROCS=2 "$peers/go_million" -n "$N" -d "$d" -c go)
    fi
    local la
    la=$(cut -d' ' -f1 /proc/loadavg)
    if timeout $((d + 300)) taskset -c "$SERVER_CPU,$LOAD_CPU" "${cmd[@]}" >"$tmp/out" 2>"$tmp/err" &&
        grep -q ' check=ok' "$tmp/out"; then
        echo "rep=$rep load=$la $(cat "$tmp/out")" >>"$tmp/raw"
    else
        note "$impl $c (run $rep) failed: $(head -c 300 "$tmp/out" "$tmp/err" | tr '\n' ' ')"
    fi
}

: >"$tmp/raw"
progs=()
for c in $CONFIGS; do progs+=("netpoll:$c"); done
[ $have_go = 1 ] && progs+=("go:go")
progress "million: N=$N, ${#progs[@]} programs × $REPEAT runs"
for rep in $(seq "$REPEAT"); do
    order=("${progs[@]}")
    if [ $((rep % 2)) = 0 ]; then # reversed every other round
        order=()
        for ((i = ${#progs[@]} - 1; i >= 0; i--)); do order+=("${progs[$i]}"); done
    fi
    for p in "${order[@]}"; do
        progress "million: run $rep/$REPEAT: ${p#*:}"
        run_one "${p%%:*}" "${p#*:}" "$rep"
    done
done
cp "$tmp/raw" "$results/million.raw"
awk '$2 ~ /^load=/ { split($2, a, "="); if (a[2] + 0 > 2.5) busy++ } END { exit !(busy > 0) }' "$tmp/raw" &&
    note "other processes were running: the 1-minute load average was above 2.5 (on $(nproc) CPUs) at the start of some runs (see million.raw); times are less reliable than memory"

# Medians per configuration: per task (bytes), times (s), CPU (s).
awk -v n="$N" '
    function kv(line, key) { return match(line, " " key "=[^ ]*") ? substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 2) : "" }
    function med(k, f,   c, a, b, t, x) {
        c = cnt[k]; if (!c) return "NaN"
        for (a = 1; a <= c; a++) x[a] = v[k, f, a]
        for (a = 1; a <= c; a++) for (b = a + 1; b <= c; b++) if (x[b] < x[a]) { t = x[a]; x[a] = x[b]; x[b] = t }
        return (c % 2 ? x[(c + 1) / 2] : (x[c / 2] + x[c / 2 + 1]) / 2) }
    { line = " " $0; k = kv(line, "config"); c = ++cnt[k]; if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
      nn = kv(line, "n")
      v[k, "rss", c] = (kv(line, "rss_settled_kb") - kv(line, "rss_base_kb")) * 1024 / nn
      v[k, "rss_parked", c] = (kv(line, "rss_parked_kb") - kv(line, "rss_base_kb")) * 1024 / nn
      v[k, "pte", c] = (kv(line, "pte_settled_kb") - kv(line, "pte_base_kb")) * 1024 / nn
      v[k, "maps", c] = kv(line, "maps_parked")
      v[k, "spawn", c] = kv(line, "spawn_ns") / 1e9
      v[k, "settle", c] = kv(line, "settle_ns") / 1e9
      v[k, "wake", c] = kv(line, "wake_ns") / 1e9
      v[k, "total", c] = kv(line, "total_ns") / 1e9
      v[k, "cpu", c] = kv(line, "cpu_ns") / 1e9
      v[k, "cpu_spawn", c] = kv(line, "cpu_spawn_ns") / 1e9
      v[k, "cpu_idle", c] = kv(line, "cpu_idle_ns") / 1e9
      v[k, "cpu_wake", c] = kv(line, "cpu_wake_ns") / 1e9
      stack[k] = kv(line, "stack"); idle[k] = kv(line, "idle_ns") }
    END {
        for (i = 1; i <= nk; i++) {
            k = order[i]
            printf "%s %s %s %d", k, stack[k], idle[k], cnt[k]
            split("rss rss_parked pte maps spawn settle wake total cpu cpu_spawn cpu_idle cpu_wake", f, " ")
            for (j = 1; j <= 12; j++) printf " %s", med(k, f[j])
            printf "\n"
        }
    }' "$tmp/raw" >"$tmp/med"
{
    echo "# config stack idle_ns runs rss_per_task_B rss_parked_per_task_B pte_per_task_B maps_parked spawn_s settle_s wake_s total_s cpu_s cpu_spawn_s cpu_idle_s cpu_wake_s (medians; N=$N)"
    cat "$tmp/med"
} >"$results/million.dat"

# The table and the targets.
awk -v target_file="$tmp/targets" -v n="$N" '
    function kib(b) { return b == "NaN" ? "–" : sprintf("%.2f KiB", b / 1024) }
    function s(x) { return x == "NaN" ? "–" : sprintf("%.2f s", x) }
    function r(a, b) { return (a == "NaN" || b == "NaN" || b + 0 == 0) ? "–" : sprintf("%.2f", a / b) }
    function label(k) {
        if (k == "default") return "netpoll, default (256 KiB stacks)"
        if (k == "16k") return "netpoll, 16 KiB stacks"
        if (k == "tuned") return "netpoll, 16 KiB stacks + idle_stack_ns"
        if (k == "go") return "Go (GOMAXPROCS=2)"
        return k }
    { k = $1; row[++nr] = k; for (i = 1; i <= NF; i++) f[k, i] = $i }
    END {
        g = 0
        for (i = 1; i <= nr; i++) if (row[i] == "go") g = 1
        print "| configuration | runs | RSS per parked task | RSS + page tables per task | ÷ Go (RSS) | ÷ Go (RSS + PT) | mappings | spawn | wake | total | ÷ Go (total) | CPU | ÷ Go (CPU) |"
        print "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        for (i = 1; i <= nr; i++) {
            k = row[i]
            rss = f[k, 5]; pte = f[k, 7]; both = (rss == "NaN" ? "NaN" : rss + pte)
            grss = g ? f["go", 5] : "NaN"; gboth = g ? f["go", 5] + f["go", 7] : "NaN"
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label(k), f[k, 4], kib(rss), kib(both),
                (k == "go" ? "1" : r(rss, grss)), (k == "go" ? "1" : r(both, gboth)), f[k, 8],
                s(f[k, 9]), s(f[k, 11]), s(f[k, 12]), (k == "go" ? "1" : r(f[k, 12], g ? f["go", 12] : "NaN")),
                s(f[k, 13]), (k == "go" ? "1" : r(f[k, 13], g ? f["go", 13] : "NaN"))
        }
        for (i = 1; i <= nr; i++) {
            k = row[i]; if (k == "go") continue
            rss = f[k, 5]
            if (!g) { printf "- **million, %s**: RSS per parked task %s; Go not measured: **not evaluated**\n", label(k), kib(rss) >target_file; continue }
            okm = (rss <= 2560 && rss <= f["go", 5]); okt = (f[k, 12] <= f["go", 12])
            printf "- **million, %s**%s: RSS per parked task %s vs Go %s (ratio %s; target ≤ 2.50 KiB and ≤ Go): **%s**; total time %s vs Go %s (ratio %s; target ≤ 1.00): **%s**\n",
                label(k), (k == "tuned" ? " (the target configuration)" : ""), kib(rss), kib(f["go", 5]), r(rss, f["go", 5]),
                (okm ? "met" : "MISSED"), s(f[k, 12]), s(f["go", 12]), r(f[k, 12], f["go", 12]), (okt ? "met" : "MISSED") >target_file
        }
    }' "$tmp/med" >"$tmp/table"
touch "$tmp/targets"
cp "$tmp/targets" "$results/million.targets"

# Phases, for the record.
awk '
    function s(x) { return x == "NaN" ? "–" : sprintf("%.2f", x) }
    BEGIN { print "| configuration | RSS per task when all had just parked | settle (s) | CPU: spawn | CPU: parked (sweeps, GC) | CPU: wake |"
            print "|---|--:|--:|--:|--:|--:|" }
    { printf "| %s | %s | %s | %s s | %s s | %s s |\n", $1, ($6 == "NaN" ? "–" : sprintf("%.2f KiB", $6 / 1024)), s($10), s($14), s($15), s($16) }' \
    "$tmp/med" >"$tmp/phases"

{
    echo "## A million tasks parked in np_sleep vs goroutines in time.Sleep (bench/million/run.sh)"
    echo
    echo "bench/million/bench_million.c beside bench/million/go_million.go, built and run here, $N tasks / goroutines \
each parked until a common deadline; 2 netpoll workers, GOMAXPROCS=2, both pinned to CPUs $SERVER_CPU and $LOAD_CPU; \
medians of $REPEAT runs each, the programs taking turns. Per task: (VmRSS, or VmRSS + VmPTE, once steady with all \
parked − at the start) ÷ $N. spawn: until every task has parked; wake: from the deadline until the last has finished; \
total = spawn + wake; CPU: the whole process's CPU time, run to end. Ratios are netpoll ÷ Go (below 1: netpoll smaller \
or faster). idle_stack_ns (the tuned row) = ${IDLE_MS} ms. $(run_context)"
    echo
    cat "$tmp/table"
    echo
    cat "$tmp/phases"
    echo
    cat "$tmp/targets"
    cat "$notes_file"
} >"$results/million.md"
cat "$results/million.md"
