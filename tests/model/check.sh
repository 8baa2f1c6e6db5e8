#!/usr/bin/env bash
# check.sh -- model-check the protocols in tests/model with SPIN:
#   pollsem.pml  the read semaphore of a poll descriptor
#   chan.pml     channel send / receive / close / select under the
#                coordination-wait protocol of src/sync/wait.h
#
# Passes (exit 0) only if
#   pollsem:
#   * the correct model has no errors (assertions, invariants, invalid end
#     states) at the default bounds and at wider bounds,
#   * no actor of the correct model has unreachable code (the model is not
#     vacuous),
#   * the liveness formula [] (parked -> <> !parked) holds (-DLTL, pan -a),
#   * every deliberately broken variant (BROKEN=1..4) IS reported as wrong;
#     for 1..3 the invalid-end-state check alone (pan -A) must catch it too.
#   handoff:
#   * the correct model (a processor retaken by the monitor and handed to a
#     spare thread) has no errors and no unreachable code,
#   * every mutant (MUTANT=1..4) IS caught, by the property it breaks.
#   chan:
#   * every scenario (SCENARIO=1..4) of the correct model has no errors,
#     searched exhaustively, and the liveness formula holds (-DLTL, pan -a;
#     scenario 4 only: the model has no cycles, so a lost wake-up is already
#     an invalid end state in the safety runs),
#   * every coverage point (COVERPT=n) is reached: the interesting paths
#     (a claim before the commit, a dropped node, a buffered hand-over, an
#     element delivered after close, ...) are really explored,
#   * every mutant IS caught, and by the property it breaks: a waker or the
#     timer that does not ready (invalid end state, and with LTL an
#     acceptance cycle), a timer CAS without seq, a finish that does not
#     wait while CLAIMING, a timed-out owner that skips the lock, and
#     wait.h's finish read literally (a select's losing node left linked).
# Exit 1 on any failure, 77 (the ctest skip code) if spin or a C compiler is
# missing.  Runs in a private temp dir; works from any cwd.  Independent
# checks run in parallel, JOBS at a time (default 2).
#
# Usage: bash tests/model/check.sh [-v] [pollsem] [chan] [handoff]
#        (-v prints pan's full output; naming models checks only those)

# The check functions are called through check(): not unreachable.
# shellcheck disable=SC2317
set -u

src=${BASH_SOURCE[0]}
case $src in */*) here=${src%/*} ;; *) here=. ;; esac
here=$(cd -- "$here" && pwd) || exit 1
verbose=0
do_pollsem=0
do_chan=0
do_handoff=0
for arg in "$@"; do
	case $arg in
	-v) verbose=1 ;;
	pollsem) do_pollsem=1 ;;
	chan) do_chan=1 ;;
	handoff) do_handoff=1 ;;
	*) echo "usage: bash $src [-v] [pollsem] [chan] [handoff]" >&2; exit 2 ;;
	esac
done
if [ "$do_pollsem" = 0 ] && [ "$do_chan" = 0 ] && [ "$do_handoff" = 0 ]; then
	do_pollsem=1; do_chan=1; do_handoff=1
fi
JOBS=${JOBS:-2}

if ! command -v spin >/dev/null 2>&1; then
	echo "check.sh: spin not found on PATH (apt-get install -y spin); skipping" >&2
	exit 77
fi
CC=${CC:-cc}
if ! command -v "$CC" >/dev/null 2>&1; then
	echo "check.sh: C compiler '$CC' not found; skipping" >&2
	exit 77
fi
for m in pollsem chan handoff; do
	if [ ! -r "$here/$m.pml" ]; then
		echo "check.sh: cannot read $here/$m.pml" >&2
		exit 1
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/model.XXXXXX") || exit 1
failures=0
# Keep the work dir (pan trails) when something failed, or if KEEP=1.
cleanup() {
	local p
	for p in $(jobs -p); do kill "$p" 2>/dev/null; done
	if [ "$failures" -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
		rm -rf -- "$work"
	else
		echo "check.sh: work files kept in $work" >&2
	fi
}
trap cleanup EXIT
trap 'failures=1; exit 1' INT TERM
cd "$work" || exit 1
t_start=$SECONDS

# Every check runs in its own directory $work/NAME, with the model of the
# current batch ($model) copied to NAME.pml (the trail is NAME.pml.trail).

# build NAME "spin defines" "cc flags"  -> ./pan in $work/NAME
build() {
	local name=$1 sdefs=$2 cflags=$3
	mkdir -p "$work/$name" && cd "$work/$name" || return 1
	cp -- "$model" "$name.pml" || return 1
	# shellcheck disable=SC2086
	if ! spin $sdefs -a "$name.pml" >spin.log 2>&1; then
		echo "FAIL [$name] spin -a failed:"
		cat spin.log
		return 1
	fi
	# shellcheck disable=SC2086
	if ! "$CC" $cflags -o pan pan.c >cc.log 2>&1; then
		echo "FAIL [$name] compiling pan failed:"
		cat cc.log
		return 1
	fi
}

# run NAME "pan args" -> sets $out (pan's output) and $errs (error count)
run() {
	local name=$1 args=$2
	local t0=$SECONDS
	# shellcheck disable=SC2086
	out=$(./pan $args 2>&1)
	errs=$(printf '%s\n' "$out" | sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' | tail -n 1)
	elapsed=$((SECONDS - t0))
	[ "$verbose" = 1 ] && printf '%s\n' "----- pan.$name $args" "$out"
	if [ -z "$errs" ]; then
		echo "FAIL [$name] no 'errors:' line in pan output:"
		printf '%s\n' "$out" | tail -n 20
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

# expect_clean NAME "spin defines" "cc flags" "pan args" [unreached]
# Returns non-zero on failure.
expect_clean() {
	local name=$1
	build "$1" "$2" "$3" && run "$1" "$4" || return 1
	if [ "$errs" != 0 ]; then
		echo "FAIL [$name] expected errors: 0, got errors: $errs"
		printf '%s\n' "$out" | grep -E '^pan:[0-9]' | head -n 5
		echo "  replay: cd $work/$name && spin $2 -t -p $name.pml"
		return 1
	fi
	if printf '%s\n' "$out" | grep -q 'max search depth too small'; then
		echo "FAIL [$name] search was truncated (depth bound too small)"
		return 1
	fi
	if [ "${5:-}" = unreached ] || [ "${5:-}" = hunreached ]; then
		# Every actor except pollsem's Monitor (whose assertions must stay
		# unreached) has to report "(0 of N states)".
		local p bad=0 actors="Waiter Poller Closer Timer Setter"
		[ "$5" = hunreached ] && actors="Thread Monitor"
		for p in $actors; do
			if ! printf '%s\n' "$out" |
				sed -n "/unreached in proctype $p\$/{n;p;}" | grep -q '(0 of '; then
				echo "FAIL [$name] proctype $p has unreachable code:"
				printf '%s\n' "$out" | sed -n "/unreached in proctype $p\$/,/of .* states)/p"
				bad=1
			fi
		done
		[ "$bad" = 0 ] || return 1
	fi
	printf 'ok   %-13s errors: 0   (%s)\n' "$name" "$(stat_line)"
}

# expect_caught NAME "spin defines" "cc flags" "pan args" [endstate] [regex]
# The variant must be reported as wrong; with a regex, pan's first error
# must match it (caught by the property it breaks, not by accident).
expect_caught() {
	local name=$1 what
	build "$1" "$2" "$3" && run "$1" "$4" || return 1
	if [ "$errs" = 0 ]; then
		echo "FAIL [$name] the broken variant was NOT caught (errors: 0)"
		return 1
	fi
	what=$(printf '%s\n' "$out" | sed -n 's/^pan:1: \(.*\) (at depth.*/\1/p' | head -n 1)
	if [ -n "${6:-}" ] && ! printf '%s\n' "$what" | grep -qE -- "$6"; then
		echo "FAIL [$name] caught, but not as expected (/$6/): ${what:-errors: $errs}"
		echo "  replay: cd $work/$name && spin $2 -t -p $name.pml"
		return 1
	fi
	printf 'ok   %-13s caught: %s (%ss)\n' "$name" "${what:-errors: $errs}" "$elapsed"
	if [ "${5:-}" = endstate ]; then
		# -A: ignore assertion violations; the lost wake-up must still show
		# up as an invalid end state (a waiter asleep with nobody to wake it).
		run "$name" "$4 -A" || return 1
		if [ "$errs" = 0 ] || ! printf '%s\n' "$out" | grep -q 'invalid end state'; then
			echo "FAIL [$name] with -A no invalid end state was reported"
			return 1
		fi
		printf 'ok   %-13s caught: invalid end state (assertions off)\n' "$name"
	fi
}

# ---- a small job pool: checks run in the background, JOBS at a time, and
# their reports are printed in the order the checks were listed.
names=()
check() {   # check NAME expect_clean|expect_caught args...
	local name=$1 m=$model
	shift
	while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
		wait -n 2>/dev/null || true
	done
	(
		model=$m
		"$@" >"$work/$name.report" 2>&1
		echo $? >"$work/$name.rc"
	) &
	names+=("$name")
}
collect() {
	wait
	local n rc
	for n in ${names[@]+"${names[@]}"}; do
		rc=$(cat "$work/$n.rc" 2>/dev/null || echo 1)
		if [ "$rc" = 0 ]; then
			cat "$work/$n.report"
		else
			cat "$work/$n.report" >&2
			[ -s "$work/$n.report" ] || echo "FAIL [$n] no report (status $rc)" >&2
			failures=$((failures + 1))
		fi
	done
	names=()
}

echo "model check ($(spin -V 2>/dev/null | head -n 1), $JOBS jobs)"

# ---- pollsem.pml ----------------------------------------------------------
# Clean runs explore everything: optimise pan.  Broken variants stop at the
# first counterexample within a few thousand states: -O0 compiles 4x faster.
SAFE="-O2 -DSAFETY"
QUICK="-O0 -DSAFETY"
PAN="-m20000 -w22"
WIDE="-DNWAITS=3 -DNREADY=3 -DNEXPIRE=3 -DNUNEXPIRE=2"

if [ "$do_pollsem" = 1 ]; then
	model="$here/pollsem.pml"
	check default  expect_clean  default  ""                 "$SAFE"  "$PAN" unreached
	check wide     expect_clean  wide     "$WIDE"            "$SAFE"  "-m20000 -w24"
	check liveness expect_clean  liveness "-DLTL"            "-O2"    "-a $PAN"
	check broken1  expect_caught broken1  "-DBROKEN=1"       "$QUICK" "$PAN" endstate
	check broken2  expect_caught broken2  "-DBROKEN=2"       "$QUICK" "$PAN" endstate
	check broken3  expect_caught broken3  "-DBROKEN=3"       "$QUICK" "$PAN" endstate
	check broken4  expect_caught broken4  "-DBROKEN=4"       "$QUICK" "$PAN"
	check live-b1  expect_caught live-b1  "-DLTL -DBROKEN=1" "-O0"    "-a -A $PAN"
	echo "-- pollsem.pml"
	collect
fi

# ---- chan.pml -------------------------------------------------------------
# pan.c of this model is large: -O2 takes ~20 s to compile per variant, more
# than the search itself, so everything is built at -O0.  COLLAPSE keeps the
# exhaustive runs (up to ~3M states of 232 bytes) near 300 MB, and is faster
# than no compression here.
CSAFE="-O0 -DSAFETY -DCOLLAPSE"
CLIVE="-O0 -DCOLLAPSE"
CPAN="-m2000 -w24"

if [ "$do_chan" = 1 ]; then
	model="$here/chan.pml"
	# the longest first, so that the pool stays busy
	check chan-s3      expect_clean  chan-s3 "-DSCENARIO=3"        "$CSAFE" "$CPAN"
	check chan-s2      expect_clean  chan-s2 "-DSCENARIO=2"        "$CSAFE" "$CPAN"
	check chan-s1      expect_clean  chan-s1 "-DSCENARIO=1"        "$CSAFE" "$CPAN"
	check chan-s4      expect_clean  chan-s4 "-DSCENARIO=4"        "$CSAFE" "$CPAN"
	check chan-live4   expect_clean  chan-live4 "-DSCENARIO=4 -DLTL" "$CLIVE" "-a $CPAN"
	# coverage: each point must be reached (its assertion must fail)
	for cp in 1:1 2:4 3:3 5:2 6:4 7:1 8:2 9:2; do
		n=${cp%:*} s=${cp#*:}
		check "chan-cov$n-s$s" expect_caught "chan-cov$n-s$s" \
			"-DSCENARIO=$s -DCOVERPT=$n" "$QUICK" "$CPAN" "" "\\($n!=$n\\)"
	done
	# mutants: each must be caught, by the property it breaks
	check chan-noready  expect_caught chan-noready  "-DSCENARIO=4 -DMUTANT_NO_READY" \
		"$QUICK" "$CPAN" endstate 'invalid end state'
	check chan-notimer  expect_caught chan-notimer  "-DSCENARIO=4 -DMUTANT_NO_TIMER_READY" \
		"$QUICK" "$CPAN" endstate 'invalid end state'
	check chan-live-nt  expect_caught chan-live-nt  "-DSCENARIO=4 -DLTL -DMUTANT_NO_TIMER_READY" \
		"-O0" "-a -A $CPAN" "" 'acceptance cycle'
	check chan-noseq    expect_caught chan-noseq    "-DSCENARIO=2 -DMUTANT_CLAIM_NO_SEQ" \
		"$QUICK" "$CPAN" "" 'dl\['
	check chan-nospin   expect_caught chan-nospin   "-DSCENARIO=4 -DMUTANT_NO_SPIN" \
		"$QUICK" "$CPAN" "" 'ndead'
	check chan-peek     expect_caught chan-peek     "-DSCENARIO=2 -DMUTANT_PEEK_UNLINKED" \
		"$QUICK" "$CPAN" "" 'ndead'
	check chan-literal  expect_caught chan-literal  "-DSCENARIO=4 -DSPEC_DONE_NO_UNLINK" \
		"$QUICK" "$CPAN" "" 'nlinked|ndead'
	check chan-literal2 expect_caught chan-literal2 "-DSCENARIO=4 -DSPEC_DONE_NO_UNLINK -DNO_RETURN_CHECK" \
		"$QUICK" "$CPAN" "" 'ndead'
	echo "-- chan.pml"
	collect
fi

# ---- handoff.pml ----------------------------------------------------------
# Small (about 10^5 states): every check takes about a second.
if [ "$do_handoff" = 1 ]; then
	model="$here/handoff.pml"
	check handoff    expect_clean  handoff    ""            "$SAFE"  "$PAN" hunreached
	check handoff-m1 expect_caught handoff-m1 "-DMUTANT=1"  "$QUICK" "$PAN" "" 'kind==.*owner==me|inside==1'
	check handoff-m2 expect_caught handoff-m2 "-DMUTANT=2"  "$QUICK" "$PAN" "" 'kind==.*owner==me|inside==1'
	check handoff-m3 expect_caught handoff-m3 "-DMUTANT=3"  "$QUICK" "$PAN" "" 'invalid end state'
	check handoff-m4 expect_caught handoff-m4 "-DMUTANT=4"  "$QUICK" "$PAN" "" 'invalid end state'
	echo "-- handoff.pml"
	collect
fi

total=$((SECONDS - t_start))
if [ "$failures" -ne 0 ]; then
	echo "model check: $failures FAILURE(S) (${total}s)" >&2
	exit 1
fi
echo "model check: all passed (${total}s)"
exit 0
