#!/usr/bin/env bash
# The errno rule (src/base/sys.h): the library reads errno only in
# src/base/errno.c, through the out-of-line np__errno() that NP__SYS calls.
# A task may switch threads at any call that can park, and a compiler may
# keep errno's address across that point (it did, in np_dial); a call into
# another translation unit is made afresh every time.
#
#   check_errno.sh [SRC_DIR [STATIC_LIB]]
#
# 1. Source: outside sys.h and errno.c, the word errno appears in src/ only
#    in comments (stripped with perl, which every Debian has) and in
#    #include <errno.h>.
# 2. Objects (if STATIC_LIB is given): only errno.c's object refers to
#    __errno_location (glibc's errno), so no macro or inline function
#    slipped an errno read in elsewhere.
# Exit 0 clean, 1 with the offending lines, 2 if it could not check.
set -euo pipefail
src="${1:-$(dirname "$0")/../src}"
lib="${2:-}"
command -v perl >/dev/null || { echo "check_errno: perl is missing" >&2; exit 2; }
bad=0
nfiles=0
while IFS= read -r -d '' f; do
    case "$f" in */base/sys.h | */base/errno.c) continue ;; esac
    nfiles=$((nfiles + 1))
    hits=$(perl -0777 -ne '
        s{/\*.*?\*/}{ my $c = $&; $c =~ tr/\n//cd; $c }gse;   # block comments, keep lines
        s{//[^\n]*}{}g;                                        # line comments
        my $n = 0;
        for my $line (split /\n/, $_, -1) {
            $n++;
            next if $line =~ /^\s*#\s*include/;
            print "$n: $line\n" if $line =~ /\berrno\b/;
        }' "$f")
    if [ -n "$hits" ]; then
        echo "$f: reads errno outside NP__SYS (see src/base/sys.h):"
        echo "$hits" | sed 's/^/    /'
        bad=1
    fi
done < <(find "$src" -name '*.[ch]' -print0)
[ "$nfiles" -gt 0 ] || { echo "check_errno: no sources under $src" >&2; exit 2; }

if [ -n "$lib" ]; then
    nm_tool="${NM:-nm}"
    [ -f "$lib" ] || { echo "check_errno: no library at $lib" >&2; exit 2; }
    refs=$("$nm_tool" -A "$lib" 2>/dev/null | grep -E '__errno_location|__error$|___error$' || true)
    others=$(echo "$refs" | grep -v -E '(^|[:/])errno\.c\.o:' | grep -v '^$' || true)
    if [ -z "$refs" ]; then
        echo "check_errno: no object of $lib refers to errno at all (not glibc? nm failed?)" >&2
        exit 2
    fi
    if [ -n "$others" ]; then
        echo "$lib: objects other than errno.c.o refer to errno's location:"
        echo "$others" | sed 's/^/    /'
        bad=1
    fi
fi
if [ "$bad" -eq 0 ]; then
    echo "errno rule: clean ($nfiles files${lib:+, and the objects of $(basename "$lib")})"
fi
exit "$bad"
