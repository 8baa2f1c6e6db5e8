#!/usr/bin/env bash
# np_wait_fd ping-pong on two pipes beside a raw epoll ping-pong between two
# threads, all modes of bench/waitfd/bench_waitfd.c (built by CMake,
# release), run in turns:
#
#   epoll   two threads, each blocking in epoll_wait on its own pipe (the
#           baseline)
#   waitfd  two tasks, each waiting with np_wait_fd (workers = placement)
#   conn    the same two tasks on pipes adopted once with np_conn_from_fd,
#           waiting inside np_read: a registration kept for the whole run
#           and no checks on a foreign descriptor, shown as the yardstick
#           (no target)
# Figure: ns per round trip (two waits, two wake-ups).
#
# Two placements, each its own rows and target:
#   1 CPU   the process pinned to SERVER_CPU; netpoll with 1 worker, the
#           epoll pair as two threads on that one CPU
#   2 CPUs  pinned to SERVER_CPU and LOAD_CPU; netpoll with 2 workers, the
#           epoll pair's threads placed by the kernel
# For each placement the modes run in turns (the order rotating), REPEAT
# times each, a fresh process every run; the table shows the median of each
# and the ratio to the epoll pair.
#
# Target (issue): np_wait_fd ≤ 1.3 × the epoll pair, at each placement.
#
# Disturbed runs, as bench/offload/run.sh: on 1 CPU, other processes took
# more than 5% of it; on 2 CPUs, more than MAX_OTHER % of a CPU. Run again
# up to ATTEMPTS times, the least disturbed kept.
#
# Where the time goes: with strace installed (and PROFILE not 0) each mode
# also runs once under `strace -f -c` with a short count, and the page
# lists the system calls per round trip of each.
#
# Environment: REPEAT (5; QUICK=1: 2), SCALE (1; QUICK=1: 0.25: multiplies
#   the round-trip counts, 200,000 on 1 CPU and 100,000 on 2), ATTEMPTS (3;
#   QUICK=1: 1), MAX_OTHER (10), PROFILE (1), and those of bench/common.sh.
#   Writes bench/results/waitfd.{md,dat,raw,targets}.
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
PROFILE=${PROFILE:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$notes_file"' EXIT
trap 'exit 130' INT TERM

modes=(epoll waitfd conn)
iters_1=200000
iters_2=100000

need_two_cpus
build_netpoll
bin=$npbin/bench_waitfd
[ -x "$bin" ] || die "build/release/bench/bench_waitfd is missing"

interference() { # line cpus (see bench/offload/run.sh)
    awk -v c="$2" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        w = v["wall_ns"] + 0; if (w <= 0) { print 999; exit }
        if (c == 1) x = 100 * (1 - v["cpu_ns"] / w)
        else x = (v["busy_ns"] < 0 ? 0 : 100 * (v["busy_ns"] - v["cpu_ns"]) / w)
        printf "%.1f\n", (x < 0 ? 0 : x) }' <<<"$1"
}

run_one() { # mode cpus iterations rep
    local m=$1 c=$2 n=$3 rep=$4 cpus=$SERVER_CPU a line score best='' best_score= limit
    [ "$c" = 2 ] && cpus=$SERVER_CPU,$LOAD_CPU
    limit=$([ "$c" = 1 ] && echo 5 || echo "$MAX_OTHER")
    for a in $(seq "$ATTEMPTS"); do
        if timeout 300 taskset -c "$cpus" "$bin" "$m" -w "$c" -n "$n" >"$tmp/out" 2>"$tmp/err" &&
            grep -q ' check=ok' "$tmp/out"; then
            line=$(cat "$tmp/out")
            score=$(interference "$line" "$c")
            if [ -z "$best" ] || awk -v a="$score" -v b="$best_score" 'BEGIN { exit !(a < b) }'; then
                best=$line best_score=$score
            fi
            awk -v a="$score" -v l="$limit" 'BEGIN { exit !(a <= l) }' && break
        else
            note "$m on $c CPU(s) (run $rep) failed: $(head -c 300 "$tmp/out" "$tmp/err" | tr '\n' ' ')"
            return 0
        fi
    done
    local dist
    dist=$(awk -v a="$best_score" -v l="$limit" 'BEGIN { print (a > l) ? 1 : 0 }')
    echo "rep=$rep cpus=$c attempts=$a disturbed=$dist interference=$best_score $best" >>"$tmp/raw"
}

: >"$tmp/raw"
progress "waitfd: np_wait_fd vs an epoll pair, 1 and 2 CPUs, ${#modes[@]} modes × $REPEAT runs (SCALE=$SCALE)"
for rep in $(seq "$REPEAT"); do
    for c in 1 2; do
        rot=$(((rep + c) % ${#modes[@]}))
        order=("${modes[@]:$rot}" "${modes[@]:0:$rot}")
        progress "waitfd: run $rep/$REPEAT, $c CPU(s) (${order[*]})"
        iters=$([ "$c" = 1 ] && echo $iters_1 || echo $iters_2)
        n=$(awk -v n="$iters" -v f="$SCALE" 'BEGIN { m = int(n * f); print (m < 1000 ? 1000 : m) }')
        for m in "${order[@]}"; do run_one "$m" "$c" "$n" "$rep"; done
    done
done
cp "$tmp/raw" "$results/waitfd.raw"
read -r nruns ndist nretried < <(awk '{ n++; if ($4 == "disturbed=1") d++; if ($3 != "attempts=1") r++ }
    END { print n + 0, d + 0, r + 0 }' "$tmp/raw")
if [ "$ndist" -gt 0 ]; then
    note "$ndist of $nruns kept runs were disturbed by other processes (over 5% of the pinned CPU, or over ${MAX_OTHER}% of a CPU on 2 CPUs) after up to $ATTEMPTS attempts; $nretried runs needed more than one"
elif [ "$nretried" -gt 0 ]; then
    note "$nretried of $nruns runs were disturbed by other processes and run again; every kept run was undisturbed"
fi

awk '
    function kv(line, key) { return match(line, " " key "=[^ ]*") ? substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 2) : "" }
    function sort(x, k, n,   a, b, t) { for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++) if (x[k, b] < x[k, a]) { t = x[k, a]; x[k, a] = x[k, b]; x[k, b] = t } }
    function med(x, k, n) { return n % 2 ? x[k, (n + 1) / 2] : (x[k, n / 2] + x[k, n / 2 + 1]) / 2 }
    { line = " " $0; c = kv(line, "cpus"); m = ""; for (i = 1; i < NF; i++) if ($i == "waitfd") { m = $(i + 1); break }
      k = c SUBSEP m; i = ++cnt[k]; v[k, i] = kv(line, "ns") + 0; cpu[k, i] = kv(line, "cpu_ns") / kv(line, "n")
      sys[k, i] = kv(line, "sys_ns") / kv(line, "n")
      itf[k, i] = kv(line, "interference") + 0; if (kv(line, "disturbed") == 1) d[k]++; w[k] = kv(line, "workers") }
    END {
        split("epoll waitfd conn", M, " ")
        for (c = 1; c <= 2; c++) for (j = 1; j <= 3; j++) {
            k = c SUBSEP M[j]; n = cnt[k]; if (!n) continue
            sort(v, k, n); sort(cpu, k, n); sort(itf, k, n); sort(sys, k, n)
            printf "%d %s %s %.1f %.1f %.1f %.1f %.1f %d %d %.1f\n", c, M[j], w[k], med(v, k, n), v[k, 1], v[k, n], med(cpu, k, n), med(itf, k, n), d[k] + 0, n, med(sys, k, n)
        }
    }' "$tmp/raw" >"$tmp/med"
awk 'FNR == NR { if ($2 == "epoll") { b[$1] = $4; bc[$1] = $7 } next }
     { print $0, (b[$1] > 0 ? sprintf("%.3f", $4 / b[$1]) : "NaN"), (bc[$1] > 0 ? sprintf("%.3f", $7 / bc[$1]) : "NaN") }' \
    "$tmp/med" "$tmp/med" >"$tmp/med2"
{
    echo "# cpus mode workers ns_per_rt_median ns_min ns_max cpu_ns_per_rt interference_pct disturbed runs kernel_ns_per_rt ratio_epoll ratio_epoll_by_cpu"
    cat "$tmp/med2"
} >"$results/waitfd.dat"

awk -v tf="$tmp/targets" '
    function label(m, w) {
        if (m == "epoll") return "epoll pair (2 threads, epoll_wait)"
        if (m == "waitfd") return "np_wait_fd, " w " worker" (w > 1 ? "s" : "")
        return "np_conn_from_fd + np_read, " w " worker" (w > 1 ? "s" : "") " (no target)" }
    BEGIN { print "| placement | program | ns per round trip | ÷ epoll | target | verdict | CPU ns per round trip | of which kernel | ÷ epoll by CPU | runs min–max | interference % | disturbed |"
            print "|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|" }
    { place = ($1 == 1 ? "1 CPU" : "2 CPUs"); tgt = "–"; verdict = "–"
      if ($2 == "waitfd") { tgt = "≤ 1.30"; verdict = ($12 == "NaN" ? "not evaluated" : ($12 + 0 <= 1.3 ? "**met**" : "**MISSED**")) }
      printf "| %s | %s | %.0f | %s | %s | %s | %.0f | %.0f | %s | %.0f–%.0f | %.1f | %d/%d |\n", place, label($2, $3), $4,
          ($12 == "NaN" ? "–" : sprintf("%.2f", $12)), tgt, verdict, $7, $11, ($13 == "NaN" ? "–" : sprintf("%.2f", $13)), $5, $6, $8, $9, $10
      if ($2 == "waitfd") {
          if ($12 == "NaN") printf "- **np_wait_fd ping-pong, %s**: %.0f ns per round trip, epoll pair not measured: **not evaluated**\n", place, $4 >tf
          else {
              printf "- **np_wait_fd ping-pong, %s** (%d worker%s vs two threads in epoll_wait): %.0f vs %.0f ns per round trip: ratio %.2f (target ≤ 1.30): **%s**; by CPU time %.2f", \
                  place, $3, ($3 > 1 ? "s" : ""), $4, $4 / $12, $12, ($12 + 0 <= 1.3 ? "met" : "MISSED"), $13 >tf
              if ($9 > 0) printf " — %d of %d runs disturbed by other load", $9, $10 >tf
              printf "\n" >tf
          }
      } }' "$tmp/med2" >"$tmp/table"
touch "$tmp/targets"
cp "$tmp/targets" "$results/waitfd.targets"

# System calls per round trip of each netpoll mode (strace -f -c).
: >"$tmp/profile"
if [ "$PROFILE" != 0 ] && command -v strace >/dev/null; then
    progress "waitfd: system calls per round trip (strace -c)"
    pn=20000
    {
        echo "System calls per round trip (\`strace -f -c\`, $pn round trips plus the warm-up's $((pn / 10)), 1 CPU; \
strace slows every call, so only the counts mean anything):"
        echo
        echo "| program | system calls per round trip |"
        echo "|---|---|"
    } >"$tmp/profile"
    for m in epoll waitfd conn; do
        if taskset -c "$SERVER_CPU" strace -f -c -o "$tmp/strace.$m" "$bin" "$m" -w 1 -n "$pn" >/dev/null 2>&1; then
            awk -v n=$((pn + pn / 10)) -v m="$m" '
                # "% time, seconds, usecs/call, calls, [errors], syscall"
                $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { c = $4 + 0; tot += c
                    if (c / n >= 0.05) s = s sprintf("%s%s %.2f", (s == "" ? "" : ", "), $NF, c / n) }
                END { printf "| %s | %s (total %.2f) |\n", m, s, tot / n }' "$tmp/strace.$m" >>"$tmp/profile"
        else
            echo "| $m | strace failed |" >>"$tmp/profile"
        fi
    done
fi
if [ "$PROFILE" != 0 ]; then
    # The per-wait system calls alone: the least disturbed (lowest) of 3.
    for _ in 1 2 3; do taskset -c "$SERVER_CPU" "$bin" cycle -n 200000 || true; done >"$tmp/cycle" 2>/dev/null
    if [ -s "$tmp/cycle" ]; then
        awk '
            { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
            !best || v["cycle_ns"] + 0 < best { best = v["cycle_ns"] + 0; p = v["poll_ns"]; f = v["fstat_ns"]; k = v["kcmp_ns"]; e = v["entry_ns"] }
            END { if (!best) exit
                printf "\nThe system calls np_wait_fd adds to a wait that blocks, timed alone on an idle pipe (bench_waitfd cycle, least disturbed of 3, 1 CPU): "
                printf "poll(fd, 0) %.0f ns (twice: before parking and once woken), fstat %.0f ns (fd still names the same file; kcmp, used where fstat cannot tell, %s); the sequence %.0f ns per wait, %.0f ns per round trip (two waits). ", p, f, (k + 0 < 0 ? "unavailable" : sprintf("%.0f ns", k)), best, 2 * best
                printf "Making a cache entry and dropping it (dup, fstat, epoll_ctl ADD and DEL, close), paid once per descriptor number and again after each idle linger: %.0f ns.\n", e }' "$tmp/cycle" >>"$tmp/profile"
    fi
fi

{
    echo "## np_wait_fd ping-pong on two pipes vs an epoll pair (bench/waitfd/run.sh)"
    echo
    echo "bench/waitfd/bench_waitfd.c: two pipes, one byte each way per round trip. Baseline: two threads, each \
blocking in epoll_wait on its own pipe (registered once). np_wait_fd: two tasks, each waiting with \
np_wait_fd(fd, NP_READABLE) and then reading; the first wait on a descriptor duplicates it and registers the \
duplicate, kept for the waits after it, and every wait checks the level (poll) and the file (fstat) before parking \
and the level again when woken (src/net/foreign_wait.c). np_conn_from_fd + np_read: the same tasks on pipes adopted \
once, the yardstick (no checks on a foreign descriptor). 1 CPU: the process pinned to CPU $SERVER_CPU, netpoll with 1 worker; \
2 CPUs: pinned to CPUs $SERVER_CPU and $LOAD_CPU, netpoll with 2 workers. Each figure the median of $REPEAT runs \
(fresh process each, the modes taking turns), after a warm-up of a tenth of the run. \"CPU ns\": the process's \
CPU time (all threads) per round trip; interference as in the offload table. $(run_context)"
    echo
    cat "$tmp/table"
    echo
    cat "$tmp/targets"
    if [ -s "$tmp/profile" ]; then
        echo
        cat "$tmp/profile"
    fi
    cat "$notes_file"
} >"$results/waitfd.md"
cat "$results/waitfd.md"
