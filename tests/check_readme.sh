#!/usr/bin/env bash
# The README's "A taste" must keep compiling and linking against the
# library as it is: the first ```c block after the "## A taste" heading.
#   check_readme.sh README CC INCLUDE_DIRS LIBRARY [LIBS...]
# INCLUDE_DIRS: colon-separated (netpoll.h and the generated netpoll_version.h).
set -euo pipefail
readme=$1 cc=$2 lib=$4
incs=()
IFS=: read -ra dirs <<<"$3"
for d in "${dirs[@]}"; do incs+=("-I$d"); done
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
"$cc" -std=gnu11 -Wall -Wextra -Werror "${incs[@]}" "$tmp/main.c" "$lib" "$@" -lpthread -o "$tmp/taste"
echo "README taste: compiles and links ($(wc -l <"$tmp/taste.c") lines)"
