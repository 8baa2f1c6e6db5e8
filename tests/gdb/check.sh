#!/usr/bin/env bash
# tools/gdb/netpoll.py against a live process and its core file.
#   check.sh GDB_TARGET SCRIPT
# Runs GDB_TARGET under gdb to its breakpoint (tasks parked in np_read,
# np_sleep, np_chan_recv), lists the tasks and prints a parked task's
# backtrace by switching to its saved registers; then does the same on a
# core file written there (gcore), where the script walks the frame
# pointers itself. Exit 77 (skipped) without gdb.
set -euo pipefail
target=$1 script=$2
command -v gdb >/dev/null || { echo "gdb not installed: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; echo "--- live:"; cat "$tmp/live.out"; [ -f "$tmp/core.out" ] && { echo "--- core:"; cat "$tmp/core.out"; }; exit 1; }
has() { grep -qE -- "$2" "$1" || fail "no /$2/ in $(basename "$1")"; }

timeout 120 gdb -nx -batch -x "$script" \
    -ex 'set pagination off' -ex 'set confirm off' \
    -ex 'break gdbtarget_stop' -ex run \
    -ex 'echo ==info\n' -ex 'info np-tasks' \
    -ex 'echo ==bt2\n' -ex 'np-task 2 bt' \
    -ex 'echo ==bt4\n' -ex 'np-task 4 bt' \
    -ex 'echo ==after\n' -ex 'bt 2' \
    -ex "generate-core-file $tmp/core" \
    -ex kill "$target" >"$tmp/live.out" 2>&1 || fail "gdb on the live process exited $?"

info=$(sed -n '/^==info/,/^==bt2/p' "$tmp/live.out")
echo "$info" >"$tmp/info"
has "$tmp/info" '^ +1  running on worker [01] +gdbtarget_main|^ +1  running on worker [01] +main_task'
has "$tmp/info" '^ +2  parked in np_read on conn fd [0-9]+ +gdbtarget_reader\+0x0'
has "$tmp/info" '^ +3  parked in np_sleep +gdbtarget_sleeper\+0x0'
has "$tmp/info" '^ +4  parked in np_chan_recv on chan 0x[0-9a-f]+ +gdbtarget_receiver\+0x0'
has "$tmp/info" '^4 tasks'
sed -n '/^==bt2/,/^==bt4/p' "$tmp/live.out" >"$tmp/bt2"
has "$tmp/bt2" 'task 2: parked in np_read'
has "$tmp/bt2" '^#[0-9]+ .*np__pd_wait_in'
has "$tmp/bt2" '^#[0-9]+ .*gdbtarget_reader'
sed -n '/^==bt4/,/^==after/p' "$tmp/live.out" >"$tmp/bt4"
has "$tmp/bt4" '^#[0-9]+ .*gdbtarget_receiver'
# The selected thread got its own registers back.
sed -n '/^==after/,$p' "$tmp/live.out" >"$tmp/after"
has "$tmp/after" '^#0 .*gdbtarget_stop'

[ -s "$tmp/core" ] || fail "no core file written"
timeout 120 gdb -nx -batch -x "$script" -ex 'info np-tasks' -ex 'echo ==bt2\n' -ex 'np-task 2 bt' \
    "$target" "$tmp/core" >"$tmp/core.out" 2>&1 || fail "gdb on the core exited $?"
has "$tmp/core.out" '^ +2  parked in np_read on conn fd [0-9]+ +gdbtarget_reader\+0x0'
has "$tmp/core.out" '^ +3  parked in np_sleep +gdbtarget_sleeper'
sed -n '/^==bt2/,$p' "$tmp/core.out" >"$tmp/cbt2"
has "$tmp/cbt2" '^#[0-9]+ +0x[0-9a-f]+ in np__pd_wait_in\+0x'
has "$tmp/cbt2" '^#[0-9]+ +0x[0-9a-f]+ in gdbtarget_reader\+0x'
echo "gdb script: live and core checks passed"
