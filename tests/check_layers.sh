#!/usr/bin/env bash
# Includes point only down the layers (shared design: each layer knows only
# the ones below it). src/<folder>/ ranks, bottom to top:
#   base, os < poller < pd < runtime < sync < net
# (os, the platform unit, is base's peer: each uses the other.)
# A file may include headers of its own folder or of a lower one. Exit 0
# clean, 1 with the offending lines.
set -euo pipefail
src="${1:-$(dirname "$0")/../src}"
rank() {
    case "$1" in
    base | os) echo 0 ;; poller) echo 1 ;; pd) echo 2 ;; runtime) echo 3 ;; sync) echo 4 ;; net) echo 5 ;;
    *) echo "unknown layer folder: $1" >&2; echo 99 ;;
    esac
}
bad=0
while IFS= read -r -d '' f; do
    from=$(basename "$(dirname "$f")")
    rf=$(rank "$from")
    while IFS= read -r line; do
        to=${line#*\"}; to=${to%%/*}
        rt=$(rank "$to")
        if [ "$rt" -gt "$rf" ]; then
            echo "$f: includes upward ($from -> $to): $line"
            bad=1
        fi
    done < <(grep -E '^#include "[a-z_]+/' "$f" || true)
done < <(find "$src" -mindepth 2 -name '*.[chS]' -print0)
[ "$bad" -eq 0 ] && echo "layers: every include points down"
exit "$bad"
