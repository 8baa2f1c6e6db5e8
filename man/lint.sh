#!/bin/sh
# man_lint: mandoc -T lint -W warning over the pages and the link pages;
# any message fails the test.
#
#   lint.sh MANDOC TREE PAGE...
#
# TREE is the build's man directory: TREE/man3 holds every page and link
# page, so a link page's ".so man3/<target>.3" resolves from it (mandoc
# reads .so paths relative to the current directory, as man(1) does from
# the root of a manpath). PAGE paths must be absolute.
#
# One message is expected and dropped: mandoc calls every .so "fragile"
# and prefers ln(1). The link pages are .so pages on purpose (one portable
# file each, installable anywhere, what man-db and groff resolve); a .so
# that does not resolve is still reported, as an ERROR.
set -u
mandoc=$1
tree=$2
shift 2
cd "$tree" || exit 1
out=$("$mandoc" -T lint -W warning "$@" 2>&1)
rc=$?
left=$(printf '%s\n' "$out" | grep -v -e ': WARNING: \.so is fragile, better use ln(1): so man3/' -e '^$')
if [ -n "$left" ]; then
    printf '%s\n' "$left"
    echo "man_lint: mandoc reported the lines above" >&2
    exit 1
fi
# mandoc exits 2 for the dropped warnings; more means errors or a failure.
if [ "$rc" -gt 2 ]; then
    echo "man_lint: mandoc exited $rc" >&2
    exit 1
fi
echo "man_lint: $# pages clean"
