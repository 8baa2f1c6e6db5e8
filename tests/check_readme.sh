#!/usr/bin/env bash
# The README's "A taste" must keep compiling and linking against the
# library as it is: the first ```c block after the "## A taste" heading.
#   check_readme.sh README CC INCLUDE_DIR LIBRARY [LIBS...]
set -euo pipefail
readme=$1 cc=$2 inc=$3 lib=$4
shift 4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk '/^## A taste/ { on = 1; next }
     on && /^```c/ { code = 1; next }
     code && /^```/ { exit }
     code { print }' "$readme" >"$tmp/taste.c"
[ -s "$tmp/taste.c" ] || { echo "check_readme: no C block under '## A taste' in $readme" >&2; exit 1; }
# The taste shows the body; the includes a real file would have come first.
{ printf '#include <stdlib.h>\n#include <netpoll.h>\n'; cat "$tmp/taste.c"; } >"$tmp/main.c"
"$cc" -std=gnu11 -Wall -Wextra -Werror -I"$inc" "$tmp/main.c" "$lib" "$@" -lpthread -o "$tmp/taste"
echo "README taste: compiles and links ($(wc -l <"$tmp/taste.c") lines)"
