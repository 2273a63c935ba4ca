#!/usr/bin/env bash
#
# scripts/bench-ab.sh — compare builds of sanitel on the backlog drain of
# scripts/bench.sh, in one run, so that a noisy machine affects them alike:
#
#   scripts/bench-ab.sh LABEL DIR_A DIR_B ...   # DIR: a copy of the source tree
#
# It builds sanitel from each DIR, then REPS times (default 2): the bare
# subscriber's drain (the ceiling), then each build's drain, on one Mosquitto
# and one InfluxDB; it prints a line per drain with CPU-seconds per 100k
# messages, msg/s, the ratios to the ceiling of the same repetition and
# InfluxDB's CPU-seconds. The measurement is bench.sh's (from process start
# until the last point is written). Settings: BENCH_DEVICES (10000),
# BENCH_MESSAGES (200000), REPS, PPROF=SECONDS (save a CPU profile of each
# drain and its binary as LABEL-N.cpu.pprof / LABEL-N.bin in the current
# directory).
set -euo pipefail
label=${1:?usage: bench-ab.sh LABEL DIR...}; shift
srcs=()
for s in "$@"; do srcs+=("$(cd "$s" && pwd)"); done
out=$(pwd)
cd "$(dirname "$0")/.."
source scripts/lib.sh
devices=${BENCH_DEVICES:-10000}
messages=${BENCH_MESSAGES:-200000}
reps=${REPS:-2}
dir=$(mktemp -d -t ab.XXXXXX)
hz=$(getconf CLK_TCK)
sanitel_pid=''
cleanup() { sanitel_stop "$sanitel_pid"; sanitel_stop_servers; rm -rf "$dir"; }
trap cleanup EXIT
sanitel_ensure_mosquitto; sanitel_ensure_influxd
for i in "${!srcs[@]}"; do (cd "${srcs[$i]}" && go build -o "$dir/sanitel$i" ./cmd/sanitel); done
go build -o "$dir/sanitel-bench" ./cmd/sanitel-bench
sanitel_start_mosquitto "$dir/mosquitto"; sanitel_start_influx "$dir/influx"
influx=$SANITEL_TEST_INFLUX_URL; mqtt=$SANITEL_TEST_MQTT; http_port=$(sanitel_free_port)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_mb() { awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }
influxql() { curl -sf -XPOST "$influx/query" --data-urlencode "db=${2:-}" --data-urlencode "q=$1"; }
simulate() { "$dir/sanitel0" simulate --config "$dir/sanitel.yaml" --broker "$mqtt" --quiet --seed 1 "$@" 2>>"$dir/simulate.log"; }
write_config() { sanitel_bench_config "$1" "$http_port" "${PPROF:+1}"; }
wait_ready() {
	for _ in $(seq 300); do
		[[ $(sanitel_http_status 127.0.0.1 "$http_port" /readyz 2>/dev/null) == 200 ]] && return 0
		sleep 0.1
	done
	sanitel_die "not ready"
}
wait_written() {
	local want=$1 written
	while :; do
		written=$("$dir/sanitel-bench" metrics --url "http://127.0.0.1:$http_port/metrics" | awk '{print $6}')
		((written >= want)) && break
		kill -0 "$sanitel_pid" 2>/dev/null || sanitel_die "sanitel exited; see $dir/serve.log"
		sleep 0.05
	done
	now
}
write_config registry
simulate --devices "$devices" --registry-out "$dir/devices.csv" --count 1
for rep in $(seq "$reps"); do
	"$dir/sanitel-bench" prime --broker "$mqtt" --client-id "ceil$rep"
	simulate --count "$messages"
	"$dir/sanitel-bench" count --broker "$mqtt" --client-id "ceil$rep" --want "$messages" >"$dir/c.out"
	# seconds from connecting, CPU ticks, peak RSS
	read -r _ _ _ _ _ cs _ c _ r <"$dir/c.out"
	ccpu=$(calc %.2f "$c / $hz / $messages * 100000")
	printf '%-8s rep%d ceiling   msg/s %6.0f cpu/100k %s rss %s\n' "$label" "$rep" "$(calc %.0f "$messages / $cs")" "$ccpu" "$r"
	for i in "${!srcs[@]}"; do
		name="d${rep}_$i"
		write_config "$name"
		"$dir/sanitel$i" serve --config "$dir/sanitel.yaml" 2>>"$dir/serve.log" & sanitel_pid=$!
		wait_ready; sanitel_stop "$sanitel_pid"
		simulate --count "$messages"
		i0=$(cpu_ticks "$SANITEL_INFLUX_PID")
		t0=$(now)
		"$dir/sanitel$i" serve --config "$dir/sanitel.yaml" 2>>"$dir/serve.log" & sanitel_pid=$!
		wait_ready
		if [[ -n ${PPROF:-} ]]; then curl -sf "http://127.0.0.1:$http_port/debug/pprof/profile?seconds=${PPROF}" -o "$out/$label-$i.cpu.pprof" & prof=$!; fi
		t1=$(wait_written "$messages")
		cpu=$(cpu_ticks "$sanitel_pid"); rss=$(hwm_mb "$sanitel_pid"); ic=$(calc %.2f "($(cpu_ticks "$SANITEL_INFLUX_PID") - $i0) / $hz")
		[[ -z ${PPROF:-} ]] || { wait "$prof"; cp "$dir/sanitel$i" "$out/$label-$i.bin"; }
		sanitel_stop "$sanitel_pid"; sanitel_pid=''
		s=$(calc %.3f "$t1 - $t0")
		scpu=$(calc %.2f "$cpu / $hz / $messages * 100000")
		printf '%-8s rep%d sanitel%d  msg/s %6.0f cpu/100k %s rss %s   ratio thr %.2f cpu %.2f influx_s %s (%s)\n' "$label" "$rep" "$i" \
			"$(calc %.0f "$messages / $s")" "$scpu" "$rss" "$(calc %.3f "$cs / $s")" "$(calc %.3f "$scpu / $ccpu")" "$ic" "${srcs[$i]}"
	done
done
