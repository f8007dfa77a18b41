#!/usr/bin/env bash
# .ci/canaries.sh: prove that the Raft test suite catches each deliberately
# broken core ("canary").
#
# For every build tag in .ci/canaries.txt (and every canary_* tag the code
# uses but the list forgot), run, for each package under ./raft/... that has
# tests (one at a time, so every package gets its chance to catch it),
#
#     go test -tags <tag> -count=1 -failfast -timeout $CANARY_TIMEOUT <pkg>
#
# and judge the result:
#
#   CAUGHT    some package failed with at least one "--- FAIL:" line. We
#             print, per package, the tests that failed and any line
#             mentioning a seed.                                      -> ok
#   SURVIVED  every package passed: the suite cannot tell the broken core
#             from the real one.                                      -> CI fails
#   NO-BUILD  the tagged core does not compile: it proves nothing.    -> CI fails
#   HUNG      a run hit its timeout and no package caught it.         -> CI fails
#   ERROR     go test failed without a failing test (e.g. a panic in
#             TestMain) and no package caught it.                     -> CI fails
#   MISSING   the code does not know the tag yet (no file under
#             ./raft/... changes with it): a loud warning, not a
#             failure, unless CANARIES_STRICT=1.
#
# Environment (all optional):
#   CANARY_PKGS       packages to test           (default ./raft/...)
#   CANARY_TIMEOUT    go test -timeout per tag and package (default 4m)
#   CANARY_WALL       hard wall-clock stop per tag and package, compile
#                     included (default 5m)
#   CANARIES_STRICT   1 (default): a listed tag missing from the code fails CI;
#                     0 only warns (for a branch that removes a canary)
#   CANARY_LOGDIR     where full logs go         (default: a temp dir)
set -euo pipefail

cd "$(dirname "$0")/.."

LIST=.ci/canaries.txt
read -ra PKGS <<<"${CANARY_PKGS:-./raft/...}"
TIMEOUT=${CANARY_TIMEOUT:-4m}
WALL=${CANARY_WALL:-5m}
STRICT=${CANARIES_STRICT:-1}
LOGDIR=${CANARY_LOGDIR:-$(mktemp -d -t cairn-canaries.XXXXXX)}
mkdir -p "$LOGDIR"

die() { echo "canaries: $*" >&2; exit 1; }

[[ -f $LIST ]] || die "$LIST not found"

# --- the list -------------------------------------------------------------
listed=()
while read -r tag; do
	[[ -z $tag ]] && continue
	[[ $tag =~ ^canary_[a-z0-9_]+$ ]] || die "$LIST: '$tag' is not a canary tag (want canary_[a-z0-9_]+)"
	listed+=("$tag")
done < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$LIST")
((${#listed[@]} > 0)) || die "$LIST lists no canaries"

# --- tags the code uses ---------------------------------------------------
# Every canary_* name on a //go:build line anywhere in the module.
mapfile -t in_code < <(
	grep -rhE --include='*.go' --exclude-dir=.git '^//go:build ' . 2>/dev/null |
		grep -oE 'canary_[A-Za-z0-9_]+' | sort -u || true
)

tags=("${listed[@]}")
for t in "${in_code[@]}"; do
	if ! printf '%s\n' "${listed[@]}" | grep -qx -- "$t"; then
		echo "!!! WARNING: build tag $t is used in the code but not listed in $LIST."
		echo "!!!          Running it anyway; add it to $LIST."
		tags+=("$t")
	fi
done

# fingerprint prints which files make up each package under $PKGS with the
# given tags. A tag the code knows changes it.
fingerprint() {
	go list -e -tags "$1" \
		-f '{{.ImportPath}} {{.GoFiles}} {{.CgoFiles}} {{.TestGoFiles}} {{.XTestGoFiles}}' \
		"${PKGS[@]}" 2>/dev/null || true
}
baseline=$(fingerprint "")
[[ -n $baseline ]] || die "no packages match ${PKGS[*]}"

# Each package with tests runs on its own, so that one package catching a
# canary does not hide whether another (the simulator, say) catches it too;
# `go test -failfast` over several packages stops at the first failure.
mapfile -t test_pkgs < <(
	go list -e -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' "${PKGS[@]}" 2>/dev/null | grep . || true
)
((${#test_pkgs[@]} > 0)) || die "no package under ${PKGS[*]} has tests"
module=$(go list -m)

# run_pkg TAG PKG: runs PKG's tests under TAG; sets verdict (caught, passed,
# no-build, hung, error), fails (failing test names) and seeds (seed lines).
run_pkg() {
	local tag=$1 pkg=$2 rc start
	log="$LOGDIR/$tag.$(tr / _ <<<"${pkg#"$module"/}").log"
	start=$(date +%s)
	set +e
	timeout --kill-after=30s "$WALL" \
		go test -tags "$tag" -count=1 -failfast -timeout "$TIMEOUT" "$pkg" >"$log" 2>&1
	rc=$?
	set -e
	secs=$(($(date +%s) - start))
	fails=$(grep -E '^[[:space:]]*--- FAIL: ' "$log" | sed -E 's/^[[:space:]]*--- FAIL: ([^ ]+).*/\1/' |
		awk '!seen[$0]++' | head -4 | paste -sd' ' - || true)
	seeds=$(grep -iE 'seed' "$log" | sed -E 's/^[[:space:]]+//' | cut -c1-200 |
		awk '!seen[$0]++' | head -4 || true)
	if ((rc == 0)); then
		verdict=passed
	elif [[ -n $fails ]]; then
		verdict=caught
	elif ((rc == 124 || rc == 137)) || grep -q '^panic: test timed out' "$log"; then
		verdict=hung
	elif grep -qE '\[(build|setup) failed\]' "$log"; then
		verdict=no-build
	else
		verdict=error
	fi
}

declare -A result caught_by seed_of
failed=0
missing=0

for tag in "${tags[@]}"; do
	echo
	echo "=== canary $tag"
	if [[ "$(fingerprint "$tag")" == "$baseline" ]]; then
		result[$tag]=MISSING
		missing=$((missing + 1))
		echo "!!! WARNING: canary $tag is listed but no file under ${PKGS[*]} uses that build tag."
		echo "!!!          It is NOT being checked. Add the broken variant to the core."
		continue
	fi

	n_caught=0 n_nobuild=0 n_hung=0 n_error=0
	by="" seed=""
	for pkg in "${test_pkgs[@]}"; do
		short=${pkg#"$module"/}
		run_pkg "$tag" "$pkg"
		case $verdict in
		caught)
			n_caught=$((n_caught + 1))
			by+="${by:+; }$short: $fails"
			echo "  $short: caught in ${secs}s by $fails"
			if [[ -n $seeds ]]; then
				while read -r line; do echo "      $line"; done <<<"$seeds"
				# Prefer the line that says how to reproduce the failure.
				# The printed command runs the real core; the canary needs its tag.
				[[ -n $seed ]] || seed=$(grep -m1 -E 'reproduce|go test .*-seed' <<<"$seeds" || head -1 <<<"$seeds")
				seed=${seed//go test /go test -tags $tag }
			else
				echo "      (no seed printed)"
			fi
			;;
		passed)
			echo "  $short: passed in ${secs}s (did not catch it)"
			;;
		hung)
			n_hung=$((n_hung + 1))
			echo "  $short: HUNG: no test failed within the timeout (${secs}s):"
			tail -n 30 "$log" | sed 's/^/      /'
			;;
		no-build)
			n_nobuild=$((n_nobuild + 1))
			echo "  $short: DOES NOT COMPILE under $tag:"
			grep -vE '^(ok|FAIL|\?) ' "$log" | head -n 30 | sed 's/^/      /'
			;;
		error)
			n_error=$((n_error + 1))
			echo "  $short: go test failed without a failing test:"
			tail -n 30 "$log" | sed 's/^/      /'
			;;
		esac
	done

	if ((n_nobuild > 0)); then
		result[$tag]=NO-BUILD
		echo "!!! FAIL: canary $tag does not compile, so it proves nothing."
	elif ((n_caught > 0)) && [[ -z $seed ]]; then
		result[$tag]=NO-SEED
		caught_by[$tag]=$by
		echo "!!! FAIL: canary $tag was caught only by tests that print no seed;"
		echo "!!!       a seeded simulation must catch it too, so the failure reproduces."
	elif ((n_caught > 0)); then
		result[$tag]=CAUGHT
		caught_by[$tag]=$by
		seed_of[$tag]=$seed
		if ((n_hung + n_error > 0)); then
			echo "!!! WARNING: canary $tag was caught, but some package hung or errored (see above)."
		fi
		continue
	elif ((n_hung > 0)); then
		result[$tag]=HUNG
		echo "!!! FAIL: canary $tag HUNG: no test failed before the timeout."
	elif ((n_error > 0)); then
		result[$tag]=ERROR
		echo "!!! FAIL: canary $tag: go test failed, but no test reported the bug."
	else
		result[$tag]=SURVIVED
		echo "!!! FAIL: canary $tag SURVIVED: every test under ${PKGS[*]} passed with it."
		echo "!!!       The suite cannot tell this broken core from the real one."
	fi
	failed=$((failed + 1))
done

# --- summary --------------------------------------------------------------
echo
echo "=== canary summary (full logs in $LOGDIR)"
for tag in "${tags[@]}"; do
	printf '%-32s %-9s %s\n' "$tag" "${result[$tag]}" "${caught_by[$tag]:-}"
	if [[ -n ${seed_of[$tag]:-} ]]; then
		printf '%-32s %-9s %s\n' "" "" "${seed_of[$tag]}"
	fi
done

if ((missing > 0)); then
	echo "!!! WARNING: $missing of ${#tags[@]} canaries do not exist in the code yet and were NOT checked."
	if [[ $STRICT == 1 ]]; then
		echo "!!! CANARIES_STRICT=1: missing canaries fail CI."
		failed=$((failed + missing))
	fi
fi
if ((failed > 0)); then
	echo "canaries: $failed problem(s); see above."
	exit 1
fi
echo "canaries: every canary that exists was caught."
