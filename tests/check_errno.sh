#!/usr/bin/env bash
# The errno rule (src/base/sys.h): no code in src/ reads errno except through
# NP__SYS, whose definition is the only place the word may appear outside
# comments. A task may switch threads at any call that can park, and a
# compiler may keep errno's address across that point (it did, in np_dial):
# the only errno read that is safe by construction is one in the same
# expression as its syscall.
#
# Comments are stripped with the C preprocessor (-fpreprocessed keeps macros
# unexpanded); what is left must not name errno. Exit 0 clean, 1 otherwise.
set -euo pipefail
src="${1:-$(dirname "$0")/../src}"
cc="${CC:-cc}"
bad=0
while IFS= read -r -d '' f; do
    case "$f" in */base/sys.h) continue ;; esac
    # -P: no line markers; -dD: keep #defines; -x c for headers and .S alike.
    hits=$("$cc" -fpreprocessed -dD -E -P -x c "$f" 2>/dev/null |
        grep -vE '^[[:space:]]*#[[:space:]]*include' | grep -nwE 'errno' || true)
    if [ -n "$hits" ]; then
        echo "$f: reads errno outside NP__SYS (see src/base/sys.h):"
        echo "$hits" | sed 's/^/    /'
        bad=1
    fi
done < <(find "$src" -name '*.[ch]' -print0)
if [ "$bad" -eq 0 ]; then
    echo "errno rule: clean ($(find "$src" -name '*.[ch]' | wc -l) files)"
fi
exit "$bad"
