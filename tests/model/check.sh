#!/usr/bin/env bash
# check.sh -- model-check the read-semaphore protocol in pollsem.pml with SPIN.
#
# Passes (exit 0) only if
#   * the correct model has no errors (assertions, invariants, invalid end
#     states) at the default bounds and at wider bounds,
#   * no actor of the correct model has unreachable code (the model is not
#     vacuous),
#   * the liveness formula [] (parked -> <> !parked) holds (-DLTL, pan -a),
#   * every deliberately broken variant (BROKEN=1..4) IS reported as wrong;
#     for 1..3 the invalid-end-state check alone (pan -A) must catch it too.
# Exit 1 on any failure, 77 (the ctest skip code) if spin or a C compiler is
# missing.  Runs in a private temp dir; works from any cwd.
#
# Usage: bash tests/model/check.sh [-v]     (-v prints pan's full output)

set -u

src=${BASH_SOURCE[0]}
case $src in */*) here=${src%/*} ;; *) here=. ;; esac
here=$(cd -- "$here" && pwd) || exit 1
model="$here/pollsem.pml"
verbose=0
[ "${1:-}" = "-v" ] && verbose=1

if ! command -v spin >/dev/null 2>&1; then
	echo "check.sh: spin not found on PATH (apt-get install -y spin); skipping" >&2
	exit 77
fi
CC=${CC:-cc}
if ! command -v "$CC" >/dev/null 2>&1; then
	echo "check.sh: C compiler '$CC' not found; skipping" >&2
	exit 77
fi
if [ ! -r "$model" ]; then
	echo "check.sh: cannot read $model" >&2
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pollsem.XXXXXX") || exit 1
failures=0
# Keep the work dir (pan trails) when something failed, or if KEEP=1.
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
	if [ "$failures" -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
		rm -rf -- "$work"
	else
		echo "check.sh: work files kept in $work" >&2
	fi
}
trap cleanup EXIT
cd "$work" || exit 1
t_start=$SECONDS

# build NAME "spin defines" "cc flags"  -> ./pan.NAME
build() {
	local name=$1 sdefs=$2 cflags=$3
	rm -f pan.c pan.h pan.m pan.b pan.t pan.p
	cp -- "$model" "$name.pml" || return 1     # trail becomes $name.pml.trail
	# shellcheck disable=SC2086
	if ! spin $sdefs -a "$name.pml" >"spin.$name.log" 2>&1; then
		echo "FAIL [$name] spin -a failed:" >&2
		cat "spin.$name.log" >&2
		return 1
	fi
	# shellcheck disable=SC2086
	if ! "$CC" $cflags -o "pan.$name" pan.c >"cc.$name.log" 2>&1; then
		echo "FAIL [$name] compiling pan failed:" >&2
		cat "cc.$name.log" >&2
		return 1
	fi
}

# run NAME "pan args" -> sets $out (pan's output) and $errs (error count)
run() {
	local name=$1 args=$2
	local t0=$SECONDS
	# shellcheck disable=SC2086
	out=$("./pan.$name" $args 2>&1)
	errs=$(printf '%s\n' "$out" | sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' | tail -n 1)
	elapsed=$((SECONDS - t0))
	[ "$verbose" = 1 ] && printf '%s\n' "----- pan.$name $args" "$out"
	if [ -z "$errs" ]; then
		echo "FAIL [$name] no 'errors:' line in pan output:" >&2
		printf '%s\n' "$out" | tail -n 20 >&2
		errs=unknown
		return 1
	fi
	return 0
}

stat_line() {
	local stored trans depth
	stored=$(printf '%s\n' "$out" | sed -n 's/^ *\([0-9][0-9]*\) states, stored.*/\1/p' | head -n 1)
	trans=$(printf '%s\n' "$out" | sed -n 's/^ *\([0-9][0-9]*\) transitions.*/\1/p' | head -n 1)
	depth=$(printf '%s\n' "$out" | sed -n 's/.*depth reached \([0-9][0-9]*\).*/\1/p' | head -n 1)
	printf '%s states, %s transitions, depth %s, %ss' \
		"${stored:-?}" "${trans:-?}" "${depth:-?}" "$elapsed"
}

# expect_clean NAME "spin defines" "cc flags" "pan args" [check-unreached]
expect_clean() {
	local name=$1
	if ! build "$1" "$2" "$3" || ! run "$1" "$4"; then
		failures=$((failures + 1)); return
	fi
	if [ "$errs" != 0 ]; then
		echo "FAIL [$name] expected errors: 0, got errors: $errs" >&2
		printf '%s\n' "$out" | grep -E '^pan:[0-9]' | head -n 5 >&2
		echo "  replay: cd $work && spin $2 -t -p $name.pml" >&2
		failures=$((failures + 1)); return
	fi
	if printf '%s\n' "$out" | grep -q 'max search depth too small'; then
		echo "FAIL [$name] search was truncated (depth bound too small)" >&2
		failures=$((failures + 1)); return
	fi
	if [ "${5:-}" = unreached ]; then
		# Every actor except the Monitor (whose assertions must stay
		# unreached) has to report "(0 of N states)".
		local p bad=0
		for p in Waiter Poller Closer Timer Setter; do
			if ! printf '%s\n' "$out" |
				sed -n "/unreached in proctype $p\$/{n;p;}" | grep -q '(0 of '; then
				echo "FAIL [$name] proctype $p has unreachable code:" >&2
				printf '%s\n' "$out" | sed -n "/unreached in proctype $p\$/,/of .* states)/p" >&2
				bad=1
			fi
		done
		if [ "$bad" = 1 ]; then failures=$((failures + 1)); return; fi
	fi
	printf 'ok   %-10s errors: 0   (%s)\n' "$name" "$(stat_line)"
}

# expect_caught NAME "spin defines" "cc flags" "pan args" [also-end-state]
expect_caught() {
	local name=$1 what
	if ! build "$1" "$2" "$3" || ! run "$1" "$4"; then
		failures=$((failures + 1)); return
	fi
	if [ "$errs" = 0 ]; then
		echo "FAIL [$name] the broken variant was NOT caught (errors: 0)" >&2
		failures=$((failures + 1)); return
	fi
	what=$(printf '%s\n' "$out" | sed -n 's/^pan:1: \(.*\) (at depth.*/\1/p' | head -n 1)
	printf 'ok   %-10s caught: %s\n' "$name" "${what:-errors: $errs}"
	if [ "${5:-}" = endstate ]; then
		# -A: ignore assertion violations; the lost wake-up must still show
		# up as an invalid end state (a waiter asleep with nobody to wake it).
		if ! run "$name" "$4 -A"; then failures=$((failures + 1)); return; fi
		if [ "$errs" = 0 ] || ! printf '%s\n' "$out" | grep -q 'invalid end state'; then
			echo "FAIL [$name] with -A no invalid end state was reported" >&2
			failures=$((failures + 1)); return
		fi
		printf 'ok   %-10s caught: invalid end state (assertions off)\n' "$name"
	fi
}

# Clean runs explore everything: optimise pan.  Broken variants stop at the
# first counterexample within a few thousand states: -O0 compiles 4x faster.
SAFE="-O2 -DSAFETY"
QUICK="-O0 -DSAFETY"
PAN="-m20000 -w22"
WIDE="-DNWAITS=3 -DNREADY=3 -DNEXPIRE=3 -DNUNEXPIRE=2"

echo "pollsem model check ($(spin -V 2>/dev/null | head -n 1))"
expect_clean  default  ""                   "$SAFE" "$PAN" unreached
expect_clean  wide     "$WIDE"              "$SAFE" "-m20000 -w24"
expect_clean  liveness "-DLTL"              "-O2"    "-a $PAN"
expect_caught broken1  "-DBROKEN=1"         "$QUICK" "$PAN" endstate
expect_caught broken2  "-DBROKEN=2"         "$QUICK" "$PAN" endstate
expect_caught broken3  "-DBROKEN=3"         "$QUICK" "$PAN" endstate
expect_caught broken4  "-DBROKEN=4"         "$QUICK" "$PAN"
expect_caught live-b1  "-DLTL -DBROKEN=1"   "-O0"    "-a -A $PAN"

total=$((SECONDS - t_start))
if [ "$failures" -ne 0 ]; then
	echo "pollsem model check: $failures FAILURE(S) (${total}s)" >&2
	exit 1
fi
echo "pollsem model check: all passed (${total}s)"
exit 0
