#!/usr/bin/env bash
# CI's soak: np_soak for SECONDS (60) at CONNS (1000, the floor the issue
# asks for) on an already configured build directory, e.g.
#     .ci/soak.sh build/release
#     .ci/soak.sh build/asan 60 1000
#     .ci/soak.sh build/tsan
# Builds the np_soak target there if needed. The sanitizer the directory was
# configured with (NP_SANITIZE in its CMakeCache.txt) sets the options:
#   address  ASan + UBSan, leak check at each process's exit
#   thread   TSan; still CONNS connections, but fewer bytes and fewer new
#            tasks per second: TSan costs 5-15x in CPU, and every new task
#            stack is a TSan fiber, made one at a time under TSan's own lock
#            (so the first dials are spread over a quarter of the run, and
#            sessions last longer), and a longer guard
# Exits with np_soak's status: 0 only if every check passed.
set -euo pipefail
usage() { echo "usage: .ci/soak.sh BUILD_DIR [seconds] [conns]" >&2; exit 2; }
if [ $# -lt 1 ] || [ $# -gt 3 ]; then usage; fi
build=$1
seconds=${2:-60}
conns=${3:-1000}
[ -f "$build/CMakeCache.txt" ] || { echo "soak: $build is not a configured build directory" >&2; exit 2; }
if [ "$conns" -lt 1000 ]; then
    echo "soak: CI runs at least 1000 connections (got $conns)" >&2
    exit 2
fi

cmake --build "$build" -j"$(nproc)" --target np_soak >/dev/null
bin=$build/tests/soak/np_soak
san=$(sed -n 's/^NP_SANITIZE:[A-Z]*=//p' "$build/CMakeCache.txt")

# Client processes: at most 4000 connections each (well below the
# descriptor cap), at least two where there is room for them.
procs=$(((conns + 3999) / 4000))
[ "$procs" -ge 2 ] || procs=2
args=(-c "$conns" -d "$seconds" -v)
case "$san" in
address)
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    ;;
thread)
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
    # gcc 12's TSan cannot map its shadow with more than 28 random mmap bits.
    bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0)
    if [ "$bits" -gt 28 ]; then
        echo "soak: vm.mmap_rnd_bits is $bits; TSan needs <= 28 (sysctl -w vm.mmap_rnd_bits=28)" >&2
    fi
    procs=$(((conns + 7999) / 8000))
    ramp=$((seconds * 250)); [ "$ramp" -le 15000 ] || ramp=15000
    args+=(-P 200 -f 1024 -g 30 -r "$ramp")
    ;;
esac
args+=(-p "$procs")
echo "soak: $bin ${args[*]} (sanitizer: ${san:-none})"
exec "$bin" "${args[@]}"
