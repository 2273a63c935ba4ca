#!/usr/bin/env bash
#
# scripts/fuzz.sh — runs every Go fuzz target of sanitel, one after the
# other, each for a fixed time, and prints a summary: target, executions,
# new corpus entries, result.
#
# Usage:
#   scripts/fuzz.sh                      # every target, 5 minutes each
#   scripts/fuzz.sh -t 30s               # every target, 30 seconds each
#   scripts/fuzz.sh -t 10m FuzzDecode    # targets whose name matches a regexp
#   scripts/fuzz.sh -p 2 ./config/       # 2 fuzzing workers; only ./config/
#
# Options:
#   -t DURATION  how long each target runs (go test -fuzztime; default 5m)
#   -p N         fuzzing workers per target (go test -parallel; default 1,
#                which leaves the other cores to whatever else runs)
# Arguments starting with ./ are packages (default: every package with
# fuzz targets); any other argument is a regexp that target names must match.
#
# The seed corpora (golden testdata, testdata/fuzz/<target>) run in every
# `go test`; this script is the long run. A failing input is written by Go
# to <package>/testdata/fuzz/<target>/ — keep it there: it becomes a seed
# that every later `go test` runs. Logs of each run are in $FUZZ_LOG_DIR
# (default: a fresh temporary directory, printed at the end).
#
# Exits non-zero when a target failed.
set -euo pipefail

cd "$(dirname "$0")/.."

fuzztime=5m
parallel=1
pattern='.'
pkgs=()
while (($#)); do
	case "$1" in
	-t) fuzztime=${2:?-t needs a duration}; shift 2 ;;
	-p) parallel=${2:?-p needs a number}; shift 2 ;;
	-h | --help) sed -n '3,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	./* | ../*) pkgs+=("$1"); shift ;;
	*) pattern=$1; shift ;;
	esac
done
if ((${#pkgs[@]} == 0)); then
	mapfile -t pkgs < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)
fi

logdir=${FUZZ_LOG_DIR:-$(mktemp -d -t sanitel-fuzz.XXXXXX)}
mkdir -p "$logdir"
summary=()
failed=0
for pkg in "${pkgs[@]}"; do
	# go test -fuzz takes one target at a time, in one package.
	mapfile -t targets < <(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' | grep -E -- "$pattern" || true)
	for target in "${targets[@]}"; do
		log="$logdir/$target.log"
		printf 'fuzz.sh: %s %s for %s (log %s)\n' "$pkg" "$target" "$fuzztime" "$log" >&2
		result=ok
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel "$parallel" "$pkg" >"$log" 2>&1; then
			result=FAIL
			failed=1
			tail -n 30 "$log" >&2
		fi
		# The last progress line: "fuzz: elapsed: 5m0s, execs: 123 (41/sec), new interesting: 3 (total: 120)".
		last=$(grep -E '^fuzz: elapsed: .*execs: ' "$log" | tail -n 1 || true)
		execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
		newi=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
		summary+=("$(printf '%-10s %-22s %14s %8s  %s' "$pkg" "$target" "${execs:-?}" "${newi:-?}" "$result")")
	done
done

printf '\n%-10s %-22s %14s %8s  %s\n' package target execs new result
printf '%s\n' "${summary[@]}"
printf '\nlogs: %s\n' "$logdir"
exit "$failed"
