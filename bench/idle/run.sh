#!/usr/bin/env bash
# Idle memory: resident memory per idle connection at CONNS (10,000)
# connections, netpoll beside Go (the baseline), libuv and libevent.
#
# Servers (each an echo server, pinned to SERVER_CPU; netpoll one worker, Go
# GOMAXPROCS=1):
#   netpoll-buf   bench/idle/np_idle_echo -m buf: a task per connection
#                 blocked in np_read with a 4 KiB buffer on its stack
#   netpoll-wait  bench/idle/np_idle_echo -m wait: a task per connection
#                 blocked in np_wait_readable, holding no buffer; it reads
#                 into a 4 KiB buffer malloc'ed only while data is there
#   netpoll-buf-idle, netpoll-wait-idle
#                 the same with np_config.idle_stack_ns = 100 ms (-i 100):
#                 a task blocked that long has the used part of its stack
#                 copied to the heap and the stack's pages released
#   go            bench/echo/go_echo.go: a goroutine per connection blocked
#                 in conn.Read with a 4 KiB buffer (make([]byte, 4096))
#   libuv         bench/echo/uv_echo.c: uv_read_start; libuv asks for a
#                 buffer (alloc callback) only when data is there, and this
#                 server hands out one static buffer: idle connections hold
#                 no buffer at all by construction
#   libevent      bench/scale/event_echo.c: one persistent read event per
#                 connection, one static buffer: no per-connection buffer
#
# For each server: start it, wait 0.5 s, read VmRSS (before); the client
# (bench/idle/idle_client.c, pinned to LOAD_CPU) opens CONNS connections and
# on each sends 64 bytes and reads the echo (so every connection has carried
# traffic and touched its buffer, as a real one would have), then leaves
# them idle; once it reports ready and the server holds CONNS more
# descriptors, wait SETTLE s and read VmRSS again (after). Per connection =
# (after - before) / CONNS. VmPTE (page tables, not part of VmRSS) is shown
# beside it: each netpoll task stack is its own mapping, which costs page
# tables that a Go heap does not.
#
# Targets (issue): netpoll-buf no more than Go; netpoll-wait at most half of
# Go. Each is judged for the default configuration and for idle_stack_ns.
#
# Environment: CONNS (10000), SERVERS ("netpoll-buf netpoll-wait go libuv
#   libevent"), SETTLE (1), REPEAT (1; the median run by RSS per connection
#   is shown), and those of bench/common.sh. Writes
#   bench/results/idle.{md,dat,raw,targets}.
set -euo pipefail
notes_file=$(mktemp)
# shellcheck source=../common.sh
. "$(dirname "$0")/../common.sh"
if [ "$QUICK" = 1 ]; then
    : "${CONNS:=2000}" "${SETTLE:=0.5}"
fi
CONNS=${CONNS:-10000}
SERVERS=${SERVERS:-"netpoll-buf netpoll-wait netpoll-buf-idle netpoll-wait-idle go libuv libevent"}
SETTLE=${SETTLE:-1}
REPEAT=${REPEAT:-1}
tmp=$(mktemp -d)
cl_pid=
cleanup() {
    if [ -n "$cl_pid" ]; then kill "$cl_pid" 2>/dev/null || true; wait "$cl_pid" 2>/dev/null || true; fi
    stop_server
    rm -rf "$tmp" "$notes_file"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_two_cpus
need_fds $((CONNS + 64))
build_netpoll
build_peers
[ -x "$peers/idle_client" ] || die "bench/idle/idle_client.c did not build"

servers=()
for s in $SERVERS; do
    if echo_server_cmd "$s"; then servers+=("$s"); else note "$s skipped: not built"; fi
done

nfds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

# Resident kB in the mappings that come one per connection (netpoll's task
# stacks: the mapping size that occurs at least CONNS/2 times); 0 if none.
per_conn_maps_kb() { # pid
    awk -v min=$((CONNS / 2)) '
        function hex(h,   i, v) { v = 0; h = tolower(h); for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789abcdef", substr(h, i, 1)) - 1; return v }
        /^[0-9a-f]+-[0-9a-f]+ / { split($1, a, "-"); sz = hex(a[2]) - hex(a[1]); named = (NF >= 6); next }
        /^Rss:/ { if (!named) { cnt[sz]++; rss[sz] += $2 } }
        END { best = 0; for (z in cnt) if (cnt[z] >= min && cnt[z] > cnt[best]) best = z; print (best in rss) ? rss[best] : 0 }' \
        "/proc/$1/smaps" 2>/dev/null || echo 0
}

: >"$tmp/raw"
k=0
nruns=$((REPEAT * ${#servers[@]}))
for rep in $(seq "$REPEAT"); do
    for s in "${servers[@]}"; do
        k=$((k + 1))
        progress "idle: run $k/$nruns: $s, $CONNS idle connections"
        echo_server_cmd "$s"
        if ! start_server "${cmd[@]}"; then
            note "$s: $srv_err"
            continue
        fi
        sleep 0.5
        rss0=$(proc_status_kb "$srv_pid" VmRSS) pte0=$(proc_status_kb "$srv_pid" VmPTE) fd0=$(nfds "$srv_pid")
        taskset -c "$LOAD_CPU" "$peers/idle_client" -c "$CONNS" "$srv_addr" >"$tmp/cl.out" 2>"$tmp/cl.err" &
        cl_pid=$!
        ok=0
        for _ in $(seq 1200); do # up to 120 s
            if grep -q '^ready' "$tmp/cl.out"; then ok=1; break; fi
            kill -0 "$cl_pid" 2>/dev/null || break
            sleep 0.1
        done
        if [ $ok = 1 ]; then
            for _ in $(seq 100); do
                [ "$(nfds "$srv_pid")" -ge $((fd0 + CONNS)) ] && break
                sleep 0.1
            done
            sleep "$SETTLE"
            rss1=$(proc_status_kb "$srv_pid" VmRSS) pte1=$(proc_status_kb "$srv_pid" VmPTE) fd1=$(nfds "$srv_pid")
            stk=$(per_conn_maps_kb "$srv_pid")
            echo "server=$s rep=$rep conns=$CONNS rss0_kb=$rss0 rss1_kb=$rss1 pte0_kb=$pte0 pte1_kb=$pte1 fds0=$fd0 fds1=$fd1 stacks_kb=$stk" >>"$tmp/raw"
        else
            note "$s: the client did not get all $CONNS connections up: $(head -c 300 "$tmp/cl.err")"
        fi
        kill "$cl_pid" 2>/dev/null || true
        wait "$cl_pid" 2>/dev/null || true
        cl_pid=
        stop_server
    done
done
cp "$tmp/raw" "$results/idle.raw"

# Per server: the median run by RSS per connection.
awk -v order="${servers[*]}" '
    function kv(line, key) { return match(line, " " key "=[^ ]*") ? substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 2) : "" }
    { line = " " $0; s = kv(line, "server"); c = kv(line, "conns") + 0
      n = ++cnt[s]; per[s, n] = (kv(line, "rss1_kb") - kv(line, "rss0_kb")) / c
      pt[s, n] = (kv(line, "pte1_kb") - kv(line, "pte0_kb")) / c
      r0[s, n] = kv(line, "rss0_kb"); r1[s, n] = kv(line, "rss1_kb"); st[s, n] = kv(line, "stacks_kb") / c }
    END {
        ns = split(order, S, " ")
        for (i = 1; i <= ns; i++) {
            s = S[i]; n = cnt[s]
            if (!n) continue
            for (a = 1; a <= n; a++) idx[a] = a
            for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++)
                if (per[s, idx[b]] < per[s, idx[a]]) { t = idx[a]; idx[a] = idx[b]; idx[b] = t }
            m = idx[int((n + 1) / 2)]
            printf "%s %.3f %.3f %d %d %.3f\n", s, per[s, m], pt[s, m], r0[s, m], r1[s, m], st[s, m]
        }
    }' "$tmp/raw" >"$tmp/med"
{
    echo "# conns=$CONNS"
    echo "# server rss_kib_per_conn pte_kib_per_conn rss_before_kib rss_after_kib task_stack_kib_per_conn"
    cat "$tmp/med"
} >"$results/idle.dat"

table=$(awk -v conns="$CONNS" '
    { per[$1] = $2; pt[$1] = $3; r0[$1] = $4; r1[$1] = $5; st[$1] = $6; order[++n] = $1 }
    END {
        g = per["go"]; gpt = per["go"] + pt["go"]
        print "| server | idle connection holds | RSS before MiB | RSS after MiB | RSS KiB/conn | ÷ Go | of which task stacks | page tables KiB/conn | RSS + page tables KiB/conn | ÷ Go |"
        print "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"
        what["netpoll-buf"] = "task blocked in np_read, 4 KiB buffer on its stack"
        what["netpoll-wait"] = "task blocked in np_wait_readable, no buffer"
        what["netpoll-buf-idle"] = "as netpoll-buf, idle_stack_ns = 100 ms"
        what["netpoll-wait-idle"] = "as netpoll-wait, idle_stack_ns = 100 ms"
        what["go"] = "goroutine blocked in Read, 4 KiB buffer"
        what["libuv"] = "uv_read_start, no buffer (alloc callback)"
        what["libevent"] = "read event, no buffer"
        for (i = 1; i <= n; i++) {
            s = order[i]
            printf "| %s | %s | %.1f | %.1f | %.2f | %s | %s | %.2f | %.2f | %s |\n", s, what[s], r0[s] / 1024, r1[s] / 1024,
                per[s], (g > 0 ? sprintf("%.2f", per[s] / g) : "–"), (s ~ /^netpoll/ ? sprintf("%.2f", st[s]) : "–"), pt[s], per[s] + pt[s],
                (gpt > 0 ? sprintf("%.2f", (per[s] + pt[s]) / gpt) : "–")
        }
    }' "$tmp/med")

awk '{ per[$1] = $2; pt[$1] = $3 }
    END {
        g = per["go"]
        if (!(g > 0)) { print "- **idle memory**: Go not measured: **not evaluated**"; exit }
        n = split("netpoll-buf 1.0 default|netpoll-wait 0.5 default|netpoll-buf-idle 1.0 idle_stack_ns|netpoll-wait-idle 0.5 idle_stack_ns", T, "|")
        for (i = 1; i <= n; i++) {
            split(T[i], f, " "); s = f[1]; lim = f[2] + 0
            if (!(s in per)) continue
            r = per[s] / g
            printf "- **idle memory, %s, %s**: netpoll %.2f KiB/conn, Go %.2f KiB/conn: ratio %.2f (target ≤ %.2f): **%s** (with page tables: %.2f vs %.2f KiB, ratio %.2f)\n",
                (s ~ /buf/ ? "4 KiB buffer held" : "np_wait_readable, no buffer"), f[3], per[s], g, r, lim, (r <= lim ? "met" : "MISSED"),
                per[s] + pt[s], g + pt["go"], (per[s] + pt[s]) / (g + pt["go"])
        }
    }' "$tmp/med" >"$results/idle.targets"

{
    echo "## Idle memory: resident memory per idle connection"
    echo
    echo "$CONNS connections, each having echoed one 64-byte message, then idle; server on CPU $SERVER_CPU \
(netpoll one worker, default 256 KiB task stacks committed as touched; Go GOMAXPROCS=1). \
Per connection = (VmRSS with the connections idle − VmRSS before) / $CONNS; KiB = 1024 bytes. \
Page tables (VmPTE) are not part of VmRSS and are shown apart. \"Of which task stacks\": resident KiB per connection in the task-stack mappings (from /proc/PID/smaps; netpoll only). Ratios are against Go, same run. $(run_context)"
    echo
    echo "$table"
    echo
    cat "$results/idle.targets"
    cat "$notes_file"
} >"$results/idle.md"
cat "$results/idle.md"
