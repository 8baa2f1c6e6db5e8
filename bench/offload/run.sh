#!/usr/bin/env bash
# np_offload round trip beside libuv's uv_queue_work, built and run in turns.
#
#   bench/offload/bench_offload.c  netpoll: one task, np_offload(empty fn) n
#                                  times, 1 worker (built by CMake, release)
#   bench/offload/uv_offload.c     libuv: uv_queue_work(empty work cb) on the
#                                  default loop, the next one queued from the
#                                  after-work callback (Debian libuv1-dev)
# Figure: ns per round trip (wall time / n). A round trip is the same on
# both sides: hand the job to a pool thread, which runs the empty function,
# and get control back on the calling task / the loop thread.
#
# Two placements, each its own table row and target:
#   1 CPU   the process pinned to SERVER_CPU: caller and pool thread share
#           one CPU, every hand-off is a switch on that CPU
#   2 CPUs  the process pinned to SERVER_CPU and LOAD_CPU: the kernel places
#           the threads; hand-offs cross CPUs and wake a sleeping one
# For each placement the two programs run alternately (which goes first
# alternates too), REPEAT times each, a fresh process every run; the table
# shows the median of each and the ratio netpoll ÷ libuv.
#
# Target (issue): ≤ 1.0 × libuv.
#
# Disturbed runs: each program reports its CPU time and the machine's busy
# time over the timed part. On 1 CPU a run is disturbed when other
# processes took more than 5% of that CPU's time (the process ran less
# than 95% of the wall time: one of its threads is always runnable); on 2
# CPUs when other processes used more than MAX_OTHER % of a CPU. A
# disturbed run is run again, up to ATTEMPTS times, keeping the least
# disturbed; the page says how many stayed disturbed.
#
# Environment: REPEAT (5; QUICK=1: 2), SCALE (1; QUICK=1: 0.25: multiplies
#   the call counts, 200,000 on 1 CPU and 50,000 on 2), ATTEMPTS (3;
#   QUICK=1: 1), MAX_OTHER (10), and those of bench/common.sh.
#   Writes bench/results/offload.{md,dat,raw,targets}.
set -euo pipefail
notes_file=$(mktemp)
# shellcheck source=../common.sh
. "$(dirname "$0")/../common.sh"
if [ "$QUICK" = 1 ]; then
    : "${REPEAT:=2}" "${SCALE:=0.25}" "${ATTEMPTS:=1}"
fi
REPEAT=${REPEAT:-5}
SCALE=${SCALE:-1}
ATTEMPTS=${ATTEMPTS:-3}
MAX_OTHER=${MAX_OTHER:-10}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$notes_file"' EXIT
trap 'exit 130' INT TERM

# cpus impl iterations (at SCALE 1: about 1–3 s per run here)
rows=(
    "1 netpoll 200000"
    "1 libuv 200000"
    "2 netpoll 50000"
    "2 libuv 50000"
)

need_two_cpus
build_netpoll
[ -x "$npbin/bench_offload" ] || die "build/release/bench/bench_offload is missing"
if ! { command -v pkg-config >/dev/null && pkg-config --exists libuv; } &&
    [ "$(id -u)" = 0 ] && [ "${NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null; then
    progress "offload: installing libuv1-dev pkg-config"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends libuv1-dev pkg-config >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 || true
          apt-get install -y -qq --no-install-recommends libuv1-dev pkg-config >/dev/null 2>&1 || true; }
fi
have_uv=0
if command -v pkg-config >/dev/null && pkg-config --exists libuv; then
    # shellcheck disable=SC2046  # pkg-config output is meant to be split
    _build_if_stale uv_offload "$bench_root/bench/offload/uv_offload.c" "$CC" -O2 -Wall -Wextra \
        $(pkg-config --cflags libuv) -o "$peers/uv_offload" "$bench_root/bench/offload/uv_offload.c" \
        $(pkg-config --libs libuv) && have_uv=1
else
    note "libuv column skipped: libuv not found by pkg-config (apt-get install libuv1-dev pkg-config)"
fi

# How disturbed a run was, in percent (see the header): 1 CPU: the share of
# the wall time the process did not run; 2 CPUs: other processes' busy time
# as a share of one CPU.
interference() { # line cpus
    awk -v c="$2" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        w = v["wall_ns"] + 0; if (w <= 0) { print 999; exit }
        if (c == 1) x = 100 * (1 - v["cpu_ns"] / w)
        else x = (v["busy_ns"] < 0 ? 0 : 100 * (v["busy_ns"] - v["cpu_ns"]) / w)
        printf "%.1f\n", (x < 0 ? 0 : x) }' <<<"$1"
}

run_one() { # impl cpus iterations rep
    local impl=$1 c=$2 n=$3 rep=$4 cpus=$SERVER_CPU bin a line score best='' best_score= limit
    [ "$c" = 2 ] && cpus=$SERVER_CPU,$LOAD_CPU
    limit=$([ "$c" = 1 ] && echo 5 || echo "$MAX_OTHER")
    if [ "$impl" = netpoll ]; then bin=$npbin/bench_offload; else bin=$peers/uv_offload; fi
    for a in $(seq "$ATTEMPTS"); do
        if timeout 300 taskset -c "$cpus" "$bin" -w 1 -n "$n" >"$tmp/out" 2>"$tmp/err" &&
            grep -q ' check=ok' "$tmp/out"; then
            line=$(cat "$tmp/out")
            score=$(interference "$line" "$c")
            if [ -z "$best" ] || awk -v a="$score" -v b="$best_score" 'BEGIN { exit !(a < b) }'; then
                best=$line best_score=$score
            fi
            awk -v a="$score" -v l="$limit" 'BEGIN { exit !(a <= l) }' && break
        else
            note "$impl on $c CPU(s) (run $rep) failed: $(head -c 300 "$tmp/out" "$tmp/err" | tr '\n' ' ')"
            return 0
        fi
    done
    local dist
    dist=$(awk -v a="$best_score" -v l="$limit" 'BEGIN { print (a > l) ? 1 : 0 }')
    echo "rep=$rep cpus=$c attempts=$a disturbed=$dist interference=$best_score $best" >>"$tmp/raw"
}

impls=(netpoll)
[ $have_uv = 1 ] && impls+=(libuv)
: >"$tmp/raw"
progress "offload: np_offload vs uv_queue_work, 1 and 2 CPUs, ${#impls[@]} programs × $REPEAT runs (SCALE=$SCALE)"
for rep in $(seq "$REPEAT"); do
    for c in 1 2; do
        order=("${impls[@]}")
        if [ ${#impls[@]} = 2 ] && [ $(((rep + c) % 2)) = 0 ]; then order=(libuv netpoll); fi
        progress "offload: run $rep/$REPEAT, $c CPU(s) (${order[*]})"
        for impl in "${order[@]}"; do
            for r in "${rows[@]}"; do
                read -r rc ri iters <<<"$r"
                [ "$rc" = "$c" ] && [ "$ri" = "$impl" ] || continue
                n=$(awk -v n="$iters" -v f="$SCALE" 'BEGIN { m = int(n * f); print (m < 1000 ? 1000 : m) }')
                run_one "$impl" "$c" "$n" "$rep"
            done
        done
    done
done
cp "$tmp/raw" "$results/offload.raw"
read -r nruns ndist nretried < <(awk '{ n++; if ($4 == "disturbed=1") d++; if ($3 != "attempts=1") r++ }
    END { print n + 0, d + 0, r + 0 }' "$tmp/raw")
if [ "$ndist" -gt 0 ]; then
    note "$ndist of $nruns kept runs were disturbed by other processes (over 5% of the pinned CPU, or over ${MAX_OTHER}% of a CPU on 2 CPUs) after up to $ATTEMPTS attempts; $nretried runs needed more than one"
elif [ "$nretried" -gt 0 ]; then
    note "$nretried of $nruns runs were disturbed by other processes and run again; every kept run was undisturbed"
fi

# Per (cpus, impl): median, min, max of ns; median CPU ns per call; median
# interference; disturbed count.
awk '
    function kv(line, key) { return match(line, " " key "=[^ ]*") ? substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 2) : "" }
    function sort(x, k, n,   a, b, t) { for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++) if (x[k, b] < x[k, a]) { t = x[k, a]; x[k, a] = x[k, b]; x[k, b] = t } }
    function med(x, k, n) { return n % 2 ? x[k, (n + 1) / 2] : (x[k, n / 2] + x[k, n / 2 + 1]) / 2 }
    { line = " " $0; c = kv(line, "cpus"); impl = kv(line, "impl"); k = c SUBSEP impl
      i = ++cnt[k]; v[k, i] = kv(line, "ns") + 0; cpu[k, i] = kv(line, "cpu_ns") / kv(line, "n")
      itf[k, i] = kv(line, "interference") + 0; if (kv(line, "disturbed") == 1) d[k]++ }
    END {
        for (c = 1; c <= 2; c++) for (j = 1; j <= 2; j++) {
            impl = (j == 1 ? "netpoll" : "libuv"); k = c SUBSEP impl; n = cnt[k]; if (!n) continue
            sort(v, k, n); sort(cpu, k, n); sort(itf, k, n)
            printf "%d %s %.1f %.1f %.1f %.1f %.1f %d %d\n", c, impl, med(v, k, n), v[k, 1], v[k, n], med(cpu, k, n), med(itf, k, n), d[k] + 0, n
        }
    }' "$tmp/raw" >"$tmp/med"
awk 'FNR == NR { if ($2 == "libuv") { b[$1] = $3; bc[$1] = $6 } next }
     { print $0, (b[$1] > 0 ? sprintf("%.3f", $3 / b[$1]) : "NaN"), (bc[$1] > 0 ? sprintf("%.3f", $6 / bc[$1]) : "NaN") }' \
    "$tmp/med" "$tmp/med" >"$tmp/med2"
{
    echo "# cpus impl ns_per_call_median ns_min ns_max cpu_ns_per_call interference_pct disturbed runs ratio_libuv ratio_libuv_by_cpu"
    cat "$tmp/med2"
} >"$results/offload.dat"

awk -v tf="$tmp/targets" '
    BEGIN { print "| placement | program | ns per round trip | ÷ libuv | target | verdict | CPU ns per round trip | ÷ libuv by CPU | runs min–max | interference % | disturbed |"
            print "|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|" }
    { place = ($1 == 1 ? "1 CPU" : "2 CPUs"); prog = ($2 == "netpoll" ? "np_offload (1 worker)" : "uv_queue_work")
      tgt = "–"; verdict = "–"
      if ($2 == "netpoll") { tgt = "≤ 1.00"; verdict = ($10 == "NaN" ? "not evaluated" : ($10 + 0 <= 1.0 ? "**met**" : "**MISSED**")) }
      printf "| %s | %s | %.0f | %s | %s | %s | %.0f | %s | %.0f–%.0f | %.1f | %d/%d |\n", place, prog, $3,
          ($10 == "NaN" ? "–" : sprintf("%.2f", $10)), tgt, verdict, $6, ($11 == "NaN" ? "–" : sprintf("%.2f", $11)), $4, $5, $7, $8, $9
      if ($2 == "netpoll") {
          if ($10 == "NaN") printf "- **offload round trip, %s**: np_offload %.0f ns, libuv not measured: **not evaluated**\n", place, $3 >tf
          else {
              printf "- **offload round trip, %s** (np_offload from one task, 1 worker, vs uv_queue_work on the default loop): %.0f vs %.0f ns: ratio %.2f (target ≤ 1.00): **%s**; by CPU time %.2f", \
                  place, $3, $3 / $10, $10, ($10 + 0 <= 1.0 ? "met" : "MISSED"), $11 >tf
              if ($8 > 0) printf " — %d of %d netpoll runs disturbed by other load", $8, $9 >tf
              printf "\n" >tf
          }
      } }' "$tmp/med2" >"$tmp/table"
touch "$tmp/targets"
cp "$tmp/targets" "$results/offload.targets"

{
    echo "## Offload round trip: np_offload vs libuv's uv_queue_work (bench/offload/run.sh)"
    echo
    echo "bench/offload/bench_offload.c (one task calling np_offload on an empty function, 1 worker) beside \
bench/offload/uv_offload.c (uv_queue_work with an empty work callback on libuv's default loop, the next queued \
from the after-work callback; libuv's default pool of 4 threads). ns per round trip = wall time ÷ calls; each \
figure the median of $REPEAT runs (fresh process each, the two taking turns), each run after a warm-up of a \
tenth of its size. 1 CPU: the process pinned to CPU $SERVER_CPU; 2 CPUs: to CPUs $SERVER_CPU and $LOAD_CPU. \
\"CPU ns\": the process's CPU time (all threads) per round trip. Interference: on 1 CPU the share of the \
wall time the process did not run, on 2 CPUs other processes' busy time as a share of one CPU (medians). \
$(run_context)"
    echo
    cat "$tmp/table"
    echo
    cat "$tmp/targets"
    cat "$notes_file"
} >"$results/offload.md"
cat "$results/offload.md"
