#!/usr/bin/env bash
# CI: the fuzzers (tests/fuzz/). About 4 minutes on 2 cores.
#
#   .ci/fuzz.sh [ASAN_BUILD_DIR [TSAN_BUILD_DIR]]     (default build/asan build/tsan)
#
# 1. addr_fuzz, the libFuzzer target for the address parser and formatter:
#    built with clang in build/fuzz, run for FUZZ_SECONDS (30) from
#    tests/fuzz/corpus. New inputs go to build/fuzz/corpus, a crashing one
#    to build/fuzz/artifacts/ (replay: build/fuzz/tests/fuzz/addr_fuzz FILE).
# 2. api_fuzz over the seeds SEEDS (1-100) in the ASan+UBSan and the TSan
#    build directories, which CI has built already (the presets asan and
#    tsan), with --dns-local: names that need DNS too, asked of a closed
#    port on loopback (c-ares builds: no query leaves the host).
#    API_FUZZ_ARGS replaces --dns-local (e.g. --skip np_signal_stop).
#
# Needs clang and libclang-rt-14-dev (libFuzzer); TSan with gcc 12 needs
# vm.mmap_rnd_bits <= 28 (.ci/run lowers it). Any failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

asan_dir=${1:-build/asan}
tsan_dir=${2:-build/tsan}
fuzz_seconds=${FUZZ_SECONDS:-30}
seeds=${SEEDS:-1-100}
read -r -a api_args <<<"${API_FUZZ_ARGS:---dns-local}"

step() { printf '\n==== %s ====\n' "$*"; }
start=$(date +%s)

step "addr_fuzz (libFuzzer, clang): build"
CC=clang cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNP_WERROR=ON >/dev/null
cmake --build build/fuzz -j"$(nproc)" --target addr_fuzz >/dev/null
target=build/fuzz/tests/fuzz/addr_fuzz
if [ ! -x "$target" ]; then
    echo "fuzz.sh: clang here cannot build a libFuzzer target (install libclang-rt-14-dev)"
    exit 1
fi

step "addr_fuzz: ${fuzz_seconds} s from tests/fuzz/corpus"
mkdir -p build/fuzz/corpus build/fuzz/artifacts
rc=0
"$target" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/ \
    build/fuzz/corpus tests/fuzz/corpus >build/fuzz/addr_fuzz.log 2>&1 || rc=$?
grep -E '^(addr_fuzz:|SUMMARY|Done|stat::number_of_executed_units|stat::peak_rss_mb)' \
    build/fuzz/addr_fuzz.log || true
if [ "$rc" -ne 0 ]; then
    tail -n 40 build/fuzz/addr_fuzz.log
    echo "addr_fuzz: failed ($rc); the input is in build/fuzz/artifacts/"
    exit 1
fi

run_api_fuzz() { # NAME DIR ENV...
    local name=$1 dir=$2
    shift 2
    step "api_fuzz --seeds $seeds ($name, $dir)"
    if [ ! -d "$dir" ]; then
        echo "fuzz.sh: no build directory $dir (build the $name preset first)"
        exit 1
    fi
    cmake --build "$dir" -j"$(nproc)" --target api_fuzz >/dev/null
    local log="$dir/api_fuzz.log" code=0
    env "$@" "$dir/tests/fuzz/api_fuzz" "${api_args[@]}" --seeds "$seeds" >"$log" 2>&1 || code=$?
    # the summary, and every failure line (with its seed)
    grep -E '^(api_fuzz|FAIL|HANG)|ThreadSanitizer|AddressSanitizer|runtime error' "$log" |
        head -n 60 || true
    if [ "$code" -ne 0 ]; then
        # The first sanitizer report whole: CI keeps only what is printed.
        awk '/^(WARNING: ThreadSanitizer|==[0-9]+==ERROR|.*runtime error)/ {on = 1}
             on {print; if (++n >= 120) exit}
             on && /^SUMMARY/ {exit}' "$log"
        echo "api_fuzz ($name): failed ($code); full output in $log"
        exit 1
    fi
}

run_api_fuzz asan "$asan_dir" \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_api_fuzz tsan "$tsan_dir" TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

step "fuzzing done in $(( $(date +%s) - start )) s"
