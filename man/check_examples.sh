#!/bin/sh
# man_examples: the EXAMPLES of every page compile.
#
#   check_examples.sh CC MANDIR [CFLAG...]
#
# Each page's EXAMPLES section is one translation unit: its literal blocks
# (.Bd -literal ... .Ed), with mdoc's escapes undone (\e is a backslash,
# \& nothing), compiled with -fsyntax-only -Wall -Wextra -Werror (less
# -Wunused-function: a fragment may define a helper it does not call) and the
# given flags (the -I of netpoll.h).
set -u
cc=$1
mandir=$2
shift 2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0
for p in "$mandir"/*.3; do
    name=$(basename "$p" .3)
    awk '
        /^\.Sh / { ex = ($0 == ".Sh EXAMPLES"); lit = 0; next }
        ex && /^\.Bd -literal/ { lit = 1; next }
        ex && /^\.Ed/ { lit = 0; next }
        ex && lit { gsub(/\\e/, "\\"); gsub(/\\&/, ""); print }
    ' "$p" >"$tmp/$name.c"
    if [ ! -s "$tmp/$name.c" ]; then
        echo "$name.3: no example"
        fail=1
        continue
    fi
    n=$((n + 1))
    if ! "$cc" -std=gnu11 -fsyntax-only -Wall -Wextra -Werror -Wno-unused-function "$@" "$tmp/$name.c" 2>"$tmp/err"; then
        echo "$name.3: the example does not compile:"
        sed "s|$tmp/||" "$tmp/err"
        fail=1
    fi
done
[ "$fail" -eq 0 ] || { echo "man_examples: FAILED" >&2; exit 1; }
echo "man_examples: $n examples compile"
