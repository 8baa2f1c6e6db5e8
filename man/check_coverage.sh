#!/bin/sh
# man_coverage: every public function has a page, and every page or link
# names a public function.
#
#   check_coverage.sh MANDIR HEADER...
#
# The public functions are those the headers declare with NP_API. A name
# is covered by MANDIR/<name>.3 or by an "alias target" line of
# MANDIR/links*.txt. Also checked, since the links are what `man <name>`
# finds: each link's target page names the alias in its NAME section (.Nm),
# and each .Nm name of a page is the page itself or one of its links.
# netpoll.3 (the overview) is the one page that is not a function.
set -u
mandir=$1
shift
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# Declarations may span lines: join each header into one line first.
# The name is the identifier right before the first '(' after NP_API
# (a parameter may be a function pointer); a stretch with '#' or ';' before
# any '(' is the macro's own definition, not a declaration.
for h in "$@"; do tr '\n' ' ' <"$h"; echo; done |
    awk '{
        n = split($0, part, "NP_API")
        for (i = 2; i <= n; i++) {
            if (!match(part[i], /^[^(;#]*\(/))
                continue
            s = substr(part[i], 1, RLENGTH - 1)
            sub(/[ \t]+$/, "", s)
            if (match(s, /np_[A-Za-z0-9_]*$/))
                print substr(s, RSTART)
        }
    }' | sort -u >"$tmp/api"
[ -s "$tmp/api" ] || { echo "man_coverage: no NP_API function found in $*" >&2; exit 1; }

: >"$tmp/pages"
: >"$tmp/nm"
for p in "$mandir"/*.3; do
    n=$(basename "$p" .3)
    echo "$n" >>"$tmp/pages"
    sed -n 's/^\.Nm \([A-Za-z0-9_]*\).*/\1/p' "$p" | sed "s/^/$n /" >>"$tmp/nm"
done
cat "$mandir"/links*.txt 2>/dev/null | sed 's/#.*//' | awk 'NF == 2 { print $1, $2 } NF != 2 && NF != 0 { print "BAD", $0 }' |
    sort >"$tmp/links"

fail=0
report() { # title file
    if [ -s "$2" ]; then
        echo "$1:"
        sed 's/^/    /' "$2"
        fail=1
    fi
}

grep '^BAD ' "$tmp/links" | sed 's/^BAD //' >"$tmp/bad"
report "link lines that are not 'alias target'" "$tmp/bad"
grep -v '^BAD ' "$tmp/links" >"$tmp/l" && mv "$tmp/l" "$tmp/links"

{ cat "$tmp/pages"; cut -d' ' -f1 "$tmp/links"; } | grep -vx netpoll | sort >"$tmp/covered_all"
sort -u "$tmp/covered_all" >"$tmp/covered"
uniq -d "$tmp/covered_all" >"$tmp/dup"
report "names with more than one page or link" "$tmp/dup"
comm -23 "$tmp/api" "$tmp/covered" >"$tmp/missing"
report "NP_API functions with no page or link (missing)" "$tmp/missing"
comm -13 "$tmp/api" "$tmp/covered" >"$tmp/extra"
report "pages or links for no NP_API function (extra)" "$tmp/extra"

# links whose target has no page
cut -d' ' -f2 "$tmp/links" | sort -u >"$tmp/targets"
sort "$tmp/pages" >"$tmp/pages_sorted"
comm -23 "$tmp/targets" "$tmp/pages_sorted" | sed 's/$/.3/' >"$tmp/dangling"
report "link targets with no page" "$tmp/dangling"

# "page alias" pairs: links vs the .Nm lines naming another function
awk '{ print $2, $1 }' "$tmp/links" | sort >"$tmp/want"
awk '$1 != $2' "$tmp/nm" | sort -u >"$tmp/have"
comm -23 "$tmp/want" "$tmp/have" | awk '{ print $2 " -> " $1 ".3" }' >"$tmp/unnamed"
report "links whose target page does not name them in .Nm" "$tmp/unnamed"
comm -13 "$tmp/want" "$tmp/have" | awk '{ print $2 " (in " $1 ".3)" }' >"$tmp/unlinked"
report ".Nm names with no link to their page" "$tmp/unlinked"

# SYNOPSIS: each .Ft/.Fn pair must read as the header declares it.
norm='{ gsub(/[ \t]+/, " "); gsub(/\( /, "("); gsub(/ \)/, ")"); gsub(/\* /, "*");
        gsub(/ \(/, "("); gsub(/^ | $/, ""); print }'
for h in "$@"; do tr '\n' ' ' <"$h"; echo; done |
    awk '{
        n = split($0, part, "NP_API")
        for (i = 2; i <= n; i++) {
            d = part[i]
            if (!match(d, /^[^(;#]*\(/) || !match(d, /^[^;]*;/))
                continue
            print substr(d, 1, RLENGTH - 1)
        }
    }' | awk "$norm" | sort -u >"$tmp/decl"
for p in "$mandir"/*.3; do
    awk -v page="$(basename "$p")" '
        /^\.Sh / { syn = ($0 == ".Sh SYNOPSIS"); next }
        syn && /^\.Ft / { ft = substr($0, 5); next }
        syn && /^\.Fn / {
            rest = substr($0, 5)
            name = rest; sub(/ .*/, "", name)
            args = substr(rest, length(name) + 2)
            out = ""
            if (index(args, "\"")) {
                k = split(args, q, "\"")
                for (j = 2; j <= k; j += 2)
                    out = out (out == "" ? "" : ", ") q[j]
            } else {
                out = args
            }
            print ft " " name "(" out ")"
        }' "$p"
done | awk "$norm" | sort -u >"$tmp/syn"
# Only functions both sides know: the lists above report the rest.
awk '{ s = $0; sub(/\(.*/, "", s); sub(/.*[ *]/, "", s); print s "\t" $0 }' "$tmp/decl" | sort >"$tmp/decl_k"
awk '{ s = $0; sub(/\(.*/, "", s); sub(/.*[ *]/, "", s); print s "\t" $0 }' "$tmp/syn" | sort >"$tmp/syn_k"
join -t "$(printf '\t')" "$tmp/decl_k" "$tmp/syn_k" | awk -F '\t' '$2 != $3 { print "header:   " $2; print "man page: " $3 }' >"$tmp/syndiff"
report "SYNOPSIS lines that differ from the header" "$tmp/syndiff"

if [ "$fail" -ne 0 ]; then
    echo "man_coverage: FAILED" >&2
    exit 1
fi
echo "man_coverage: $(wc -l <"$tmp/api") NP_API functions, each with a page or a link"
