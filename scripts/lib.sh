# shellcheck shell=bash disable=SC2034 # it sets variables for the scripts that source it
#
# scripts/lib.sh — install, start and stop the real servers sanitel's tests
# and benchmarks use: Mosquitto, InfluxDB 1.8.3 and PostgreSQL. Source it
# from bash:
#
#   source "$(dirname "$0")/lib.sh"
#   sanitel_ensure_mosquitto; sanitel_ensure_influxd; sanitel_ensure_postgres
#   dir=$(mktemp -d); trap 'sanitel_stop_servers; rm -rf "$dir"' EXIT
#   sanitel_start_mosquitto "$dir/mosquitto"   # exports SANITEL_TEST_MQTT
#   sanitel_start_influx "$dir/influx"         # exports SANITEL_TEST_INFLUX_URL
#   sanitel_start_postgres "$dir/postgres"     # exports SANITEL_TEST_POSTGRES
#
# The servers are configured like the ones internal/testenv starts (keep the
# two in step): loopback only, persistence on, 1000 messages in flight and
# 1,000,000 queued per client, anonymous access; influxd with Flux on, auth,
# reporting, query logging and profiling off.
#
# Needs only bash, coreutils and go; apt-get (with sudo unless root) to
# install what is missing.

SANITEL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SANITEL_INFLUXD_PACKAGE=github.com/influxdata/influxdb/cmd/influxd@v1.8.3
SANITEL_READY_TIMEOUT=${SANITEL_READY_TIMEOUT:-60} # seconds

# What sanitel_start_* leave for the caller (besides the exported
# SANITEL_TEST_* addresses): server pids, ports and log files.
SANITEL_MOSQUITTO_PID='' SANITEL_MOSQUITTO_PORT='' SANITEL_MOSQUITTO_LOG=''
SANITEL_INFLUX_PID='' SANITEL_INFLUX_PORT='' SANITEL_INFLUX_LOG=''
SANITEL_POSTGRES_PID='' SANITEL_POSTGRES_PORT='' SANITEL_POSTGRES_LOG=''

sanitel_log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
sanitel_die() { sanitel_log "error: $*"; exit 1; }

# sanitel_as_root CMD... runs CMD as root: directly if we are root, else
# through sudo.
sanitel_as_root() {
	if [[ $(id -u) == 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		sanitel_die "need root to run: $*"
	fi
}

# sanitel_apt_install PKG... installs Debian packages, updating the package
# lists once per run.
_sanitel_apt_updated=
sanitel_apt_install() {
	command -v apt-get >/dev/null ||
		sanitel_die "apt-get not found; install $* with your package manager"
	if [[ -z $_sanitel_apt_updated ]]; then
		sanitel_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		_sanitel_apt_updated=1
	fi
	sanitel_log "installing $* (apt-get)"
	sanitel_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# sanitel_ensure_cc makes sure a C compiler is there: go test -race needs cgo.
sanitel_ensure_cc() {
	local cc
	cc=$(go env CC)
	command -v "${cc%% *}" >/dev/null || sanitel_apt_install gcc libc6-dev
}

# sanitel_ensure_mosquitto finds or installs mosquitto and exports its path
# as SANITEL_TEST_MOSQUITTO (an existing value is kept).
sanitel_ensure_mosquitto() {
	local p
	if [[ -n ${SANITEL_TEST_MOSQUITTO:-} ]]; then
		[[ -x $SANITEL_TEST_MOSQUITTO ]] || sanitel_die "SANITEL_TEST_MOSQUITTO=$SANITEL_TEST_MOSQUITTO is not executable"
		return
	fi
	p=$(_sanitel_find_mosquitto) || {
		sanitel_apt_install mosquitto mosquitto-clients
		p=$(_sanitel_find_mosquitto) || sanitel_die "mosquitto still not found after apt-get install"
	}
	export SANITEL_TEST_MOSQUITTO=$p
}

_sanitel_find_mosquitto() {
	local p
	for p in "$(command -v mosquitto || true)" /usr/sbin/mosquitto /usr/local/sbin/mosquitto; do
		[[ -n $p && -x $p ]] && { echo "$p"; return 0; }
	done
	return 1
}

# sanitel_ensure_influxd finds or builds influxd 1.8.3 and exports its path
# as SANITEL_TEST_INFLUXD (an existing value is kept). The build goes to
# <repo>/.cache/bin, once.
sanitel_ensure_influxd() {
	local gobin=$SANITEL_ROOT/.cache/bin
	if [[ -n ${SANITEL_TEST_INFLUXD:-} ]]; then
		[[ -x $SANITEL_TEST_INFLUXD ]] || sanitel_die "SANITEL_TEST_INFLUXD=$SANITEL_TEST_INFLUXD is not executable"
		return
	fi
	if [[ ! -x $gobin/influxd ]]; then
		sanitel_log "building influxd ($SANITEL_INFLUXD_PACKAGE) into $gobin — once, takes ~3 minutes"
		mkdir -p "$gobin"
		GOBIN=$gobin go install "$SANITEL_INFLUXD_PACKAGE"
	fi
	export SANITEL_TEST_INFLUXD=$gobin/influxd
}

# sanitel_ensure_postgres finds or installs PostgreSQL's server programs, the
# newest /usr/lib/postgresql/VERSION/bin (Debian's layout), and exports that
# directory as SANITEL_TEST_PGBIN (an existing value is kept).
sanitel_ensure_postgres() {
	local bin
	if [[ -n ${SANITEL_TEST_PGBIN:-} ]]; then
		_sanitel_pgbin "$SANITEL_TEST_PGBIN" ||
			sanitel_die "SANITEL_TEST_PGBIN=$SANITEL_TEST_PGBIN lacks initdb, postgres or pg_isready"
		return
	fi
	bin=$(_sanitel_find_pgbin) || {
		sanitel_apt_install postgresql
		bin=$(_sanitel_find_pgbin) || sanitel_die "PostgreSQL still not found after apt-get install"
	}
	export SANITEL_TEST_PGBIN=$bin
}

# _sanitel_pgbin DIR succeeds if DIR holds the programs sanitel_start_postgres
# runs.
_sanitel_pgbin() { [[ -x $1/initdb && -x $1/postgres && -x $1/pg_isready ]]; }

_sanitel_find_pgbin() {
	local d
	for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
		_sanitel_pgbin "$d" && { echo "$d"; return 0; }
	done
	return 1
}

# sanitel_ensure_chromium finds or installs chromium and exports its path as
# SANITEL_TEST_CHROMIUM, for browser tests. A CJK font comes with it, so the
# Chinese pages in the tests' screenshots are legible.
sanitel_ensure_chromium() {
	local p
	for p in chromium chromium-browser google-chrome-stable google-chrome; do
		if command -v "$p" >/dev/null; then
			SANITEL_TEST_CHROMIUM=$(command -v "$p")
			export SANITEL_TEST_CHROMIUM
			return
		fi
	done
	sanitel_apt_install chromium fonts-wqy-microhei
	SANITEL_TEST_CHROMIUM=$(command -v chromium) || sanitel_die "chromium still not found after apt-get install"
	export SANITEL_TEST_CHROMIUM
}

# sanitel_port_free PORT succeeds if nothing listens on 127.0.0.1:PORT.
sanitel_port_free() {
	local fd
	if { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
		exec {fd}>&-
		return 1
	fi
	return 0
}

# sanitel_free_port prints a port on which nothing listens. It picks from
# 10000-32767, below Linux's ephemeral range (32768-60999), so neither
# outgoing connections nor the kernel-assigned ports of Go tests
# (testenv.FreePort) collide with it. Another process may still take it
# first; the start functions then retry on another port.
sanitel_free_port() {
	local port i
	for ((i = 0; i < 100; i++)); do
		port=$((10000 + RANDOM % 22768))
		if sanitel_port_free "$port"; then
			echo "$port"
			return 0
		fi
	done
	sanitel_die "no free port found"
}

# sanitel_http_status HOST PORT PATH prints the HTTP status code of a GET.
sanitel_http_status() {
	local fd line
	{ exec {fd}<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
	printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$3" "$1" "$2" >&"$fd"
	IFS= read -r -t 5 line <&"$fd" || line=
	exec {fd}>&-
	line=${line#HTTP/* }
	[[ -n $line ]] || return 1
	echo "${line%% *}"
}

# _sanitel_wait_ready NAME PID LOG CHECK... waits until CHECK succeeds, or the
# process dies (returns 2), or SANITEL_READY_TIMEOUT passes (returns 1).
_sanitel_wait_ready() {
	local name=$1 pid=$2 log=$3 deadline=$((SECONDS + SANITEL_READY_TIMEOUT))
	shift 3
	until "$@"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null || true
			sanitel_log "$name exited before it was ready; last lines of $log:"
			tail -n 20 "$log" >&2
			return 2
		fi
		if ((SECONDS >= deadline)); then
			sanitel_log "$name not ready after ${SANITEL_READY_TIMEOUT}s; last lines of $log:"
			tail -n 20 "$log" >&2
			sanitel_stop "$pid"
			return 1
		fi
		sleep 0.05
	done
}

_sanitel_listening() { ! sanitel_port_free "$1"; }
_sanitel_pinged() { [[ $(sanitel_http_status 127.0.0.1 "$1" /ping 2>/dev/null) == 204 ]]; }

# _sanitel_start NAME LOG READY LAUNCH starts a server on a free port, up to
# three times when it dies at start (another process took the port first):
# LAUNCH PORT starts it in the background and sets _sanitel_pid; READY PORT
# succeeds once it serves. Sets _sanitel_pid and _sanitel_port. LAUNCH runs
# inside the caller, so it sees the caller's locals.
_sanitel_start() {
	local name=$1 log=$2 ready=$3 launch=$4 attempt rc
	for attempt in 1 2 3; do
		_sanitel_port=$(sanitel_free_port)
		"$launch" "$_sanitel_port"
		rc=0
		_sanitel_wait_ready "$name" "$_sanitel_pid" "$log" "$ready" "$_sanitel_port" || rc=$?
		((rc == 0)) && return 0
		((rc == 2 && attempt < 3)) || sanitel_die "cannot start $name"
		sanitel_log "retrying $name on another port"
	done
}

# sanitel_start_mosquitto DIR starts a broker with its config, persistence
# and log (mosquitto.log) in DIR, waits until it listens, and sets
# SANITEL_MOSQUITTO_PID, SANITEL_MOSQUITTO_PORT, SANITEL_MOSQUITTO_LOG and
# exports SANITEL_TEST_MQTT=tcp://127.0.0.1:PORT. Needs
# sanitel_ensure_mosquitto first.
sanitel_start_mosquitto() {
	local dir=$1
	mkdir -p "$dir/data"
	dir=$(cd "$dir" && pwd)
	_sanitel_start mosquitto "$dir/mosquitto.log" _sanitel_listening _sanitel_launch_mosquitto
	SANITEL_MOSQUITTO_PID=$_sanitel_pid
	SANITEL_MOSQUITTO_PORT=$_sanitel_port
	SANITEL_MOSQUITTO_LOG=$dir/mosquitto.log
	export SANITEL_TEST_MQTT=tcp://127.0.0.1:$_sanitel_port
}

_sanitel_launch_mosquitto() {
	_sanitel_mosquitto_conf "$dir" "$1" >"$dir/mosquitto.conf"
	"$SANITEL_TEST_MOSQUITTO" -c "$dir/mosquitto.conf" >>"$dir/mosquitto.log" 2>&1 &
	_sanitel_pid=$!
}

_sanitel_mosquitto_conf() {
	local dir=$1 port=$2
	echo "# Generated by scripts/lib.sh (mirrors internal/testenv)."
	# As root, mosquitto would switch to user "mosquitto", which may not
	# write into our temp dir.
	[[ $(id -u) == 0 ]] && echo "user root"
	cat <<EOF
persistence true
persistence_location $dir/data/
max_inflight_messages 1000
max_queued_messages 1000000
allow_anonymous true
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
log_timestamp_format %Y-%m-%dT%H:%M:%S
connection_messages true

listener $port 127.0.0.1
EOF
}

# sanitel_start_influx DIR starts influxd 1.8 with its config, data and log
# (influxd.log) in DIR, waits until /ping answers 204, and sets
# SANITEL_INFLUX_PID, SANITEL_INFLUX_PORT, SANITEL_INFLUX_LOG and exports
# SANITEL_TEST_INFLUX_URL=http://127.0.0.1:PORT. Needs
# sanitel_ensure_influxd first.
sanitel_start_influx() {
	local dir=$1 var unset=()
	# INFLUXDB_* variables would override the config.
	for var in $(compgen -e); do
		[[ $var != INFLUXDB_* ]] || unset+=(-u "$var")
	done
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	_sanitel_start influxd "$dir/influxd.log" _sanitel_pinged _sanitel_launch_influx
	SANITEL_INFLUX_PID=$_sanitel_pid
	SANITEL_INFLUX_PORT=$_sanitel_port
	SANITEL_INFLUX_LOG=$dir/influxd.log
	export SANITEL_TEST_INFLUX_URL=http://127.0.0.1:$_sanitel_port
}

_sanitel_launch_influx() {
	local rpc
	rpc=$(sanitel_free_port)
	[[ $rpc != "$1" ]] || rpc=$(sanitel_free_port)
	_sanitel_influx_conf "$dir" "$1" "$rpc" >"$dir/influxd.conf"
	env "${unset[@]}" "$SANITEL_TEST_INFLUXD" run -config "$dir/influxd.conf" >>"$dir/influxd.log" 2>&1 &
	_sanitel_pid=$!
}

_sanitel_influx_conf() {
	local dir=$1 port=$2 rpc=$3
	cat <<EOF
# Generated by scripts/lib.sh (mirrors internal/testenv).
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"

[meta]
  dir = "$dir/meta"
  logging-enabled = false

[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
  trace-logging-enabled = false

[coordinator]
  log-queries-after = "0s"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$port"
  auth-enabled = false
  log-enabled = false
  flux-enabled = true
  flux-log-enabled = false
  pprof-enabled = false

[logging]
  level = "info"
  suppress-logo = true

[continuous_queries]
  log-enabled = false
EOF
}

# sanitel_start_postgres DIR creates a cluster in DIR/data (superuser
# "postgres", trust authentication, UTF8), starts it on a free loopback port
# with its socket in DIR and its log in DIR/postgres.log, waits until it
# accepts connections, and sets SANITEL_POSTGRES_PID, SANITEL_POSTGRES_PORT,
# SANITEL_POSTGRES_LOG and exports
# SANITEL_TEST_POSTGRES=postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable.
# fsync is off: the data is thrown away after the run. Needs
# sanitel_ensure_postgres first.
sanitel_start_postgres() {
	local dir=$1 locale=C as=()
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	SANITEL_POSTGRES_LOG=$dir/postgres.log
	if [[ $(id -u) == 0 ]]; then
		# PostgreSQL refuses to run as root: run it as the postgres user
		# Debian's package creates. setpriv, unlike runuser, execs the
		# server itself, so SIGTERM reaches it and a slow shutdown is not
		# cut short with SIGKILL.
		id postgres >/dev/null 2>&1 ||
			sanitel_die "PostgreSQL cannot run as root and there is no postgres user; install postgresql (apt-get install -y postgresql) or run as another user"
		_sanitel_open_parents "$dir"
		chown -R postgres: "$dir"
		as=(setpriv --reuid=postgres --regid=postgres --init-groups)
	fi
	if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then locale=C.UTF-8; fi
	"${as[@]}" "$SANITEL_TEST_PGBIN/initdb" -D "$dir/data" -A trust -U postgres \
		--no-sync -E UTF8 --locale="$locale" >>"$SANITEL_POSTGRES_LOG" 2>&1 || {
		tail -n 20 "$SANITEL_POSTGRES_LOG" >&2
		sanitel_die "initdb failed"
	}
	_sanitel_start postgres "$SANITEL_POSTGRES_LOG" _sanitel_pg_ready _sanitel_launch_postgres
	SANITEL_POSTGRES_PID=$_sanitel_pid
	SANITEL_POSTGRES_PORT=$_sanitel_port
	export SANITEL_TEST_POSTGRES="postgres://postgres@127.0.0.1:$_sanitel_port/postgres?sslmode=disable"
}

_sanitel_launch_postgres() {
	"${as[@]}" "$SANITEL_TEST_PGBIN/postgres" -D "$dir/data" -p "$1" -k "$dir" \
		-c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200 -c log_checkpoints=off \
		>>"$SANITEL_POSTGRES_LOG" 2>&1 &
	_sanitel_pid=$!
}

_sanitel_pg_ready() { "$SANITEL_TEST_PGBIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -t 1; }

# _sanitel_open_parents DIR lets other users pass through the directories
# above DIR (mktemp -d makes them 0700), so a server running as another user
# can reach DIR. It only adds search permission, never read.
_sanitel_open_parents() {
	local p=$1
	while p=$(dirname "$p") && [[ $p != / ]]; do
		[[ $(stat -c %A "$p") == *[xt] ]] || chmod o+x "$p"
	done
}

# sanitel_stop PID [SECONDS] stops a server: SIGTERM, then SIGKILL if it has
# not exited after SECONDS (default 30). Stopping a dead process is fine.
sanitel_stop() {
	local pid=$1 limit=${2:-30} deadline
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	deadline=$((SECONDS + limit))
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			sanitel_log "process $pid ignored SIGTERM for ${limit}s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.05
	done
	wait "$pid" 2>/dev/null || true
}

# sanitel_stop_servers stops whatever sanitel_start_* started.
sanitel_stop_servers() {
	sanitel_stop "${SANITEL_MOSQUITTO_PID:-}"
	sanitel_stop "${SANITEL_INFLUX_PID:-}"
	sanitel_stop "${SANITEL_POSTGRES_PID:-}"
	SANITEL_MOSQUITTO_PID=''
	SANITEL_INFLUX_PID=''
	SANITEL_POSTGRES_PID=''
}

# sanitel_bench_config NAME PORT [PPROF] creates InfluxDB database NAME on
# the started InfluxDB and writes $dir/sanitel.yaml for one benchmark run of
# sanitel into it, against the started broker, with its state under
# $dir/NAME and its HTTP listener on PORT. PPROF=1 turns on /debug/pprof.
sanitel_bench_config() {
	local name=$1 port=$2 pprof=''
	[[ ${3:-0} != 1 ]] || pprof=', pprof: true'
	curl -sf -XPOST "$SANITEL_TEST_INFLUX_URL/query" --data-urlencode "q=CREATE DATABASE $name" >/dev/null
	mkdir -p "$dir/$name"
	cat >"$dir/sanitel.yaml" <<YAML
mqtt: {broker: "$SANITEL_TEST_MQTT", client_id: "bench-$name"}
influx: {url: "$SANITEL_TEST_INFLUX_URL", bucket: $name/autogen}
spool: {dir: $dir/$name/spool}
devices: {registry: $dir/devices.csv}
alerting: {state_dir: $dir/$name/alerting}
tickets: {dsn: $dir/$name/tickets.db}
http: {listen: "127.0.0.1:$port"$pprof}
log: {level: warn}
YAML
}

# sanitel_versions prints one line with the versions of go and the servers.
sanitel_versions() {
	local mq influx
	mq=$("$SANITEL_TEST_MOSQUITTO" -h 2>&1 | sed -n '1s/^mosquitto version //p' || true)
	# A `go install` build reports "unknown" itself; its module version is
	# recorded in the binary.
	influx=$(go version -m "$SANITEL_TEST_INFLUXD" 2>/dev/null | awk '$1 == "mod" { print $3 }' || true)
	[[ -n $influx ]] || influx=$("$SANITEL_TEST_INFLUXD" version 2>/dev/null || true)
	echo "$(go env GOVERSION), mosquitto ${mq:-?}, influxd ${influx:-?}"
}
