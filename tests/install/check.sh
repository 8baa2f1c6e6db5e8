#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds, from outside the
# tree, the consumer (consumer.c) four ways, running each:
#   pkg-config (shared), pkg-config --static, find_package(netpoll) with the
#   shared and with the static component, and add_subdirectory (which must
#   build the library and none of netpoll's tests, benchmarks or examples).
# Also checks what was installed: soname, headers, pkg-config file, CMake
# package, man pages, LICENSE.
#   check.sh SOURCE_DIR BUILD_DIR CC
set -euo pipefail
src=$(cd "$1" && pwd) build=$(cd "$2" && pwd) cc=$3
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "install check: $*" >&2; exit 1; }
# Whether program's ldd lists a library matching pattern. Not `ldd | grep
# -q`: grep leaves at the first match, ldd may then die of SIGPIPE, and
# under pipefail the pipeline is false (2 times in 500 here).
links() { # program pattern
    local deps
    deps=$(ldd "$1")
    grep -q -- "$2" <<<"$deps"
}
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install failed"; }
libdir=$(dirname "$(find "$prefix" -name libnetpoll.a | head -1)")
[ -n "$libdir" ] && [ -d "$libdir" ] || fail "no libnetpoll.a under $prefix"
for f in "$libdir/libnetpoll.so" "$prefix/include/netpoll.h" "$prefix/include/netpoll_version.h" \
         "$libdir/pkgconfig/netpoll.pc" "$libdir/cmake/netpoll/netpollConfig.cmake" \
         "$libdir/cmake/netpoll/netpollConfigVersion.cmake" "$prefix/share/doc/netpoll/LICENSE"; do
    [ -e "$f" ] || fail "not installed: ${f#"$prefix"/}"
done
major=$(sed -n 's/^#define NP_VERSION_MAJOR \([0-9]*\)$/\1/p' "$prefix/include/netpoll_version.h")
soname=$(readelf -d "$libdir/libnetpoll.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libnetpoll.so.$major" ] || fail "soname '$soname', want libnetpoll.so.$major"
[ -e "$libdir/$soname" ] || fail "no $soname link"
if [ -d "$src/man" ]; then
    pages=$(find "$prefix/share/man/man3" -name 'np_*.3' 2>/dev/null | wc -l)
    [ "$pages" -gt 0 ] || fail "no man pages under share/man/man3"
    echo "installed: $soname, headers, netpoll.pc, CMake package, LICENSE, $pages man pages"
fi

run() { # name program
    local out
    out=$("$2" 2>&1) || { echo "$out" >&2; fail "$1: the consumer failed"; }
    echo "$1: $out"
}

# pkg-config, shared: the library found at run time through its rpath.
export PKG_CONFIG_PATH=$libdir/pkgconfig
command -v pkg-config >/dev/null || fail "pkg-config is not installed"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror "$here/consumer.c" -o "$tmp/pc-shared" \
    $(pkg-config --cflags --libs netpoll) -Wl,-rpath,"$libdir"
links "$tmp/pc-shared" "libnetpoll.so.$major" || fail "pkg-config shared: not linked to $soname"
run "pkg-config" "$tmp/pc-shared"

# pkg-config --static: the static archive, with what it needs (-pthread).
static_libs=$(pkg-config --static --libs netpoll)
case " $static_libs " in *" -pthread "*) ;; *) fail "pkg-config --static --libs gave '$static_libs': no -pthread" ;; esac
# shellcheck disable=SC2046,SC2086
"$cc" -std=c11 -Wall -Wextra -Werror "$here/consumer.c" -o "$tmp/pc-static" \
    $(pkg-config --cflags netpoll) -Wl,-Bstatic -lnetpoll -Wl,-Bdynamic \
    $(echo " $static_libs " | sed 's/ -lnetpoll / /')
if links "$tmp/pc-static" libnetpoll; then fail "pkg-config --static: linked the shared library"; fi
run "pkg-config --static" "$tmp/pc-static"

# find_package, both components.
for variant in shared static; do
    cmake -S "$here/find_package" -B "$tmp/fp-$variant" -DCMAKE_C_COMPILER="$cc" \
        -DCMAKE_PREFIX_PATH="$prefix" -DNP_VARIANT=$variant >"$tmp/fp-$variant.log" 2>&1 ||
        { cat "$tmp/fp-$variant.log"; fail "find_package ($variant): configure failed"; }
    cmake --build "$tmp/fp-$variant" >>"$tmp/fp-$variant.log" 2>&1 ||
        { cat "$tmp/fp-$variant.log"; fail "find_package ($variant): build failed"; }
    linked=no
    if links "$tmp/fp-$variant/consumer" libnetpoll; then linked=yes; fi
    { [ $variant = shared ] && [ $linked = yes ]; } || { [ $variant = static ] && [ $linked = no ]; } ||
        fail "find_package ($variant): libnetpoll.so linked: $linked"
    run "find_package ($variant)" "$tmp/fp-$variant/consumer"
done

# add_subdirectory: the library only.
cmake -S "$here/subproject" -B "$tmp/sub" -DCMAKE_C_COMPILER="$cc" -DNP_SOURCE_DIR="$src" \
    >"$tmp/sub.log" 2>&1 || { cat "$tmp/sub.log"; fail "add_subdirectory: configure failed"; }
cmake --build "$tmp/sub" -j "$jobs" >>"$tmp/sub.log" 2>&1 ||
    { cat "$tmp/sub.log"; fail "add_subdirectory: build failed"; }
targets=$(cmake --build "$tmp/sub" --target help | sed -n 's/^\.\.\. \([^ ]*\).*/\1/p')
extra=$(echo "$targets" | grep -vxE 'all|clean|depend|edit_cache|rebuild_cache|install|install/local|install/strip|list_install_components|consumer|netpoll_static|netpoll_shared|np_core|np_poller_[a-z_]+|consumer\.o|.*\.(o|i|s)' || true)
[ -z "$extra" ] || fail "add_subdirectory built targets beyond the library: $(echo $extra)"
pollers=$(echo "$targets" | grep -c '^np_poller_' || true)
[ "$pollers" -eq 1 ] || fail "add_subdirectory: $pollers poller object libraries, want 1"
[ ! -e "$tmp/sub/netpoll/CTestTestfile.cmake" ] || fail "add_subdirectory: netpoll registered tests"
run "add_subdirectory" "$tmp/sub/consumer"
