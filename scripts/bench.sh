#!/usr/bin/env bash
#
# scripts/bench.sh — sanitel's end-to-end benchmark. Starts one Mosquitto and
# one InfluxDB 1.8 as scripts/test.sh does (scripts/lib.sh), makes up a
# registry of devices, and measures, for sanitel (alerting on, default rules)
# and for a bare paho subscriber that only counts (the ceiling):
#
#   drain  a backlog of BENCH_MESSAGES QoS 1 messages queued by the broker
#          for a persistent session while the subscriber was away; sanitel
#          drains it twice: into the InfluxDB on these cores, and into a
#          write sink that stands in for an InfluxDB on another machine
#   live   BENCH_RATE msg/s for BENCH_SECONDS seconds
#
# and prints one table. Usage:
#
#   scripts/bench.sh                              # 10k devices, 500k backlog, 10k msg/s × 60 s
#   BENCH_MESSAGES=100000 BENCH_SECONDS=10 scripts/bench.sh   # quick try
#
# Settings (environment): BENCH_DEVICES (10000), BENCH_MESSAGES (500000),
# BENCH_RATE (10000), BENCH_SECONDS (60), BENCH_DIR (a temp dir, removed
# unless BENCH_KEEP=1), BENCH_PPROF=1 (serve net/http/pprof on sanitel's HTTP
# listener and save a CPU profile and an allocation profile of the drain into
# BENCH_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

devices=${BENCH_DEVICES:-10000}
messages=${BENCH_MESSAGES:-500000}
rate=${BENCH_RATE:-10000}
seconds=${BENCH_SECONDS:-60}
live=$((rate * seconds))
dir=${BENCH_DIR:-$(mktemp -d -t sanitel-bench.XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
hz=$(getconf CLK_TCK)
sanitel_pid=''
sink_pid=''

cleanup() {
	sanitel_stop "$sanitel_pid"
	[[ -z $sink_pid ]] || kill "$sink_pid" 2>/dev/null || true
	sanitel_stop_servers
	[[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$dir"
}
trap cleanup EXIT

sanitel_ensure_mosquitto
sanitel_ensure_influxd
sanitel_log "building into $dir"
go build -o "$dir/sanitel" ./cmd/sanitel
go build -o "$dir/sanitel-bench" ./cmd/sanitel-bench
sanitel_start_mosquitto "$dir/mosquitto"
sanitel_start_influx "$dir/influx"
influx=$SANITEL_TEST_INFLUX_URL
mqtt=$SANITEL_TEST_MQTT
http_port=$(sanitel_free_port)

# cpu_ticks PID prints the process' user+sys CPU time in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# hwm_mb PID prints its peak resident set size in MB.
hwm_mb() { awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }
influxql() {
	curl -sf -XPOST "$influx/query" --data-urlencode "db=${2:-}" --data-urlencode "q=$1"
}
# points DB prints the number of readings and events stored in DB: per
# measurement the largest field count (every simulated reading carries all
# fields of its kind). The dashboards' snapshot measurements are left out.
points() {
	influxql 'SELECT count(*) FROM bin, toilet, rural_toilet, water, event' "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(max(v for v in s["values"][0][1:] if v is not None)
          for r in d["results"] for s in r.get("series", [])))'
}
# simulate ARGS publishes the same stream (seed 1) over the benchmark's broker.
simulate() {
	"$dir/sanitel" simulate --config "$dir/sanitel.yaml" --broker "$mqtt" --quiet --seed 1 "$@" 2>>"$dir/simulate.log"
}

write_config() { sanitel_bench_config "$1" "$http_port" "${BENCH_PPROF:-0}"; }
start_sanitel() {
	local name=$1
	"$dir/sanitel" serve --config "$dir/sanitel.yaml" 2>>"$dir/$name/serve.log" &
	sanitel_pid=$!
}
wait_ready() {
	local i
	for i in $(seq 300); do
		[[ $(sanitel_http_status 127.0.0.1 "$http_port" /readyz 2>/dev/null) == 200 ]] && return 0
		kill -0 "$sanitel_pid" 2>/dev/null || sanitel_die "sanitel exited; see $dir/*/serve.log"
		sleep 0.1
	done
	sanitel_die "sanitel not ready after 30 s"
}
# wait_written N waits until sanitel has written N points and prints the time.
wait_written() {
	local want=$1 deadline=$((SECONDS + 1200)) written
	while :; do
		written=$("$dir/sanitel-bench" metrics --url "http://127.0.0.1:$http_port/metrics" | awk '{print $6}')
		((written >= want)) && break
		((SECONDS < deadline)) || sanitel_die "sanitel wrote $written of $want points in 20 min"
		kill -0 "$sanitel_pid" 2>/dev/null || sanitel_die "sanitel exited; see $dir/*/serve.log"
		sleep 0.05
	done
	now
}

rows=()
fmt='%-14s %8s %9s %7s %8s %8s %7s %9s %9s %6s'
# row NAME MSGS SECONDS CPU_TICKS RSS_MB LAG50 LAG99 TAIL INFLUX_TICKS ACCEPTED LOST
row() {
	rows+=("$(printf "$fmt" "$1" \
		"$(calc %.0f "$2 / $3")" "$(calc %.2f "$4 / $hz / $2 * 100000")" "$5" "$6" "$7" "$8" \
		"$(calc %.2f "$9 / $hz")" "${10}" "${11}")")
}

# Registry: one simulated message so the simulator writes it; nobody
# subscribes yet, so the broker drops it.
write_config registry
simulate --devices "$devices" --registry-out "$dir/devices.csv" --count 1

# --- drain: bare subscriber --------------------------------------------------
sanitel_log "drain: ceiling, $messages messages"
"$dir/sanitel-bench" prime --broker "$mqtt" --client-id bench-ceiling
simulate --count "$messages"
i0=$(cpu_ticks "$SANITEL_INFLUX_PID")
"$dir/sanitel-bench" count --broker "$mqtt" --client-id bench-ceiling --want "$messages" >"$dir/ceiling-drain.out" &
cpid=$!
t0=$(now)
wait "$cpid" || sanitel_die "ceiling drain failed"
t1=$(now)
read -r _ _ _ _ _ _ _ c _ r <"$dir/ceiling-drain.out"
ceil_drain_s=$(calc %.3f "$t1 - $t0")
ceil_drain_cpu=$c
row "ceiling drain" "$messages" "$ceil_drain_s" "$c" "$r" - - - "$(($(cpu_ticks "$SANITEL_INFLUX_PID") - i0))" "$messages" -

# --- drain: sanitel -----------------------------------------------------------
sanitel_log "drain: sanitel, $messages messages"
write_config drain
start_sanitel drain
wait_ready
sanitel_stop "$sanitel_pid"
simulate --count "$messages"
i0=$(cpu_ticks "$SANITEL_INFLUX_PID")
t0=$(now)
start_sanitel drain
wait_ready
if [[ ${BENCH_PPROF:-0} == 1 ]]; then
	curl -sf "http://127.0.0.1:$http_port/debug/pprof/profile?seconds=${BENCH_PPROF_SECONDS:-10}" -o "$dir/drain.cpu.pprof" &
	profiler=$!
fi
t1=$(wait_written "$messages")
cpu=$(cpu_ticks "$sanitel_pid")
rss=$(hwm_mb "$sanitel_pid")
ic=$(($(cpu_ticks "$SANITEL_INFLUX_PID") - i0))
if [[ ${BENCH_PPROF:-0} == 1 ]]; then
	wait "$profiler" || sanitel_die "CPU profile failed"
	curl -sf "http://127.0.0.1:$http_port/debug/pprof/allocs" -o "$dir/drain.allocs.pprof"
fi
read -r _ accepted _ rejected _ _ _ p50 _ p99 < <("$dir/sanitel-bench" metrics --url "http://127.0.0.1:$http_port/metrics")
stored=$(points drain)
drain_s=$(calc %.3f "$t1 - $t0")
row "sanitel drain" "$messages" "$drain_s" "$cpu" "$rss" "$p50" "$p99" - "$ic" "$accepted" "$((messages - stored))"
drain_cpu=$cpu
sanitel_stop "$sanitel_pid"
sanitel_pid=''
[[ $rejected == 0 && $accepted == "$messages" ]] || sanitel_log "drain: accepted $accepted rejected $rejected of $messages"

# --- drain: sanitel, InfluxDB elsewhere ---------------------------------------
# The same drain with sanitel writing to a sink that answers the write API
# and tallies the points (sanitel-bench sink), as when InfluxDB runs on its
# own machine: here InfluxDB needs about as much CPU for the points as
# sanitel for the messages, on the same two cores.
sanitel_log "drain: sanitel, InfluxDB elsewhere (a write sink), $messages messages"
sink_port=$(sanitel_free_port)
"$dir/sanitel-bench" sink --listen "127.0.0.1:$sink_port" --out "$dir/sink.out" \
	--measurements bin,toilet,rural_toilet,water,event 2>>"$dir/sink.log" &
sink_pid=$!
for i in $(seq 100); do
	curl -sf -o /dev/null "http://127.0.0.1:$sink_port/ping" && break
	sleep 0.1
done
SANITEL_TEST_INFLUX_URL=http://127.0.0.1:$sink_port write_config sink
start_sanitel sink
wait_ready
sanitel_stop "$sanitel_pid"
simulate --count "$messages"
s0=$(cpu_ticks "$sink_pid")
t0=$(now)
start_sanitel sink
wait_ready
t1=$(wait_written "$messages")
cpu=$(cpu_ticks "$sanitel_pid")
rss=$(hwm_mb "$sanitel_pid")
sc=$(($(cpu_ticks "$sink_pid") - s0))
read -r _ accepted _ rejected _ _ _ p50 _ p99 < <("$dir/sanitel-bench" metrics --url "http://127.0.0.1:$http_port/metrics")
sanitel_stop "$sanitel_pid"
sanitel_pid=''
kill -TERM "$sink_pid"
wait "$sink_pid" || sanitel_die "the write sink failed; see $dir/sink.log"
sink_pid=''
read -r _ _ _ _ _ stored _ _ _ _ <"$dir/sink.out"
sink_s=$(calc %.3f "$t1 - $t0")
row "sanitel sink" "$messages" "$sink_s" "$cpu" "$rss" "$p50" "$p99" - "$sc" "$accepted" "$((messages - stored))"
sink_cpu=$cpu

# --- live: bare subscriber ----------------------------------------------------
# Live readings carry the time they are sent, so that the lag is what a
# device sees: the same devices report every devices/rate seconds (1 s for
# 10k devices at 10k msg/s), in real time (--speed 1).
awk -F, -v OFS=, -v iv="$((devices * 1000 / rate))ms" 'NR > 1 { $12 = iv } 1' "$dir/devices.csv" >"$dir/devices-live.csv"
mv "$dir/devices-live.csv" "$dir/devices.csv"
live_simulate() { simulate --speed 1 --rate "$rate" --count "$live"; }
sanitel_log "live: ceiling, $rate msg/s for $seconds s"
"$dir/sanitel-bench" count --broker "$mqtt" --client-id bench-ceiling-live --want "$live" >"$dir/ceiling-live.out" &
cpid=$!
sleep 1
i0=$(cpu_ticks "$SANITEL_INFLUX_PID")
t0=$(now)
live_simulate
tp=$(now)
wait "$cpid" || sanitel_die "ceiling live run failed"
t1=$(now)
read -r _ _ _ _ _ _ _ c _ r <"$dir/ceiling-live.out"
ceil_live_cpu=$c
row "ceiling live" "$live" "$(calc %.3f "$t1 - $t0")" "$c" "$r" - - "$(calc %.2f "$t1 - $tp")" "$(($(cpu_ticks "$SANITEL_INFLUX_PID") - i0))" "$live" -

# --- live: sanitel ------------------------------------------------------------
sanitel_log "live: sanitel, $rate msg/s for $seconds s"
write_config live
start_sanitel live
wait_ready
c0=$(cpu_ticks "$sanitel_pid")
i0=$(cpu_ticks "$SANITEL_INFLUX_PID")
t0=$(now)
live_simulate
tp=$(now)
t1=$(wait_written "$live")
cpu=$(($(cpu_ticks "$sanitel_pid") - c0))
rss=$(hwm_mb "$sanitel_pid")
ic=$(($(cpu_ticks "$SANITEL_INFLUX_PID") - i0))
read -r _ accepted _ rejected _ _ _ p50 _ p99 < <("$dir/sanitel-bench" metrics --url "http://127.0.0.1:$http_port/metrics")
stored=$(points live)
row "sanitel live" "$live" "$(calc %.3f "$t1 - $t0")" "$cpu" "$rss" "$p50" "$p99" "$(calc %.2f "$t1 - $tp")" "$ic" "$accepted" "$((live - stored))"
live_cpu=$cpu
sanitel_stop "$sanitel_pid"
sanitel_pid=''

# --- table --------------------------------------------------------------------
echo
echo "sanitel benchmark: $devices devices, drain $messages messages, live $rate msg/s × $seconds s, $(nproc) cores"
printf "$fmt\n" run msg/s cpu/100k rss_MB lag_p50 lag_p99 tail_s influx_s accepted lost
for r in "${rows[@]}"; do echo "$r"; done
echo "drain throughput sanitel/ceiling: $(calc %.2f "$ceil_drain_s / $drain_s")   (target ≥ 0.90)"
echo "drain CPU per message sanitel/ceiling: $(calc %.2f "$drain_cpu / $ceil_drain_cpu")   (target ≤ 1.40)"
echo "drain with InfluxDB elsewhere (sanitel sink)/ceiling: throughput $(calc %.2f "$ceil_drain_s / $sink_s"), CPU per message $(calc %.2f "$sink_cpu / $ceil_drain_cpu")"
echo "live CPU per message sanitel/ceiling: $(calc %.2f "$live_cpu / $ceil_live_cpu")"
echo "msg/s: until the last point is in InfluxDB (sanitel sink: has reached the write sink; ceiling: until the last message arrived),"
echo "  from process start; cpu/100k: CPU-seconds (user+sys) per 100k messages; rss_MB: peak (VmHWM); lag: sanitel_ingest_lag_seconds,"
echo "  seconds (device time → written; a backlog's readings are as old as the backlog, live ones are stamped when sent); tail_s: last"
echo "  publish acknowledged → last point written (ceiling: → last message received); influx_s: InfluxDB CPU-seconds during the run"
echo "  (sanitel sink: the write sink's); accepted: messages sanitel accepted; lost: acknowledged to the publisher minus points stored"
echo "  (distinct device and time)"
