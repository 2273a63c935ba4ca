#!/usr/bin/env bash
#
# scripts/test.sh — sanitel's test command: installs what the tests need,
# starts one Mosquitto, one InfluxDB 1.8 and one PostgreSQL for the whole
# run, then runs go vet and go test -race.
#
# Usage:
#   scripts/test.sh                                # vet and test ./...
#   scripts/test.sh -run TestIngest                # extra go test flags
#   scripts/test.sh ./ingest/ ./internal/testenv/  # only these packages
#   scripts/test.sh -run TestTestenv -v ./internal/testenv/
#
# Arguments starting with ./ ../ or github.com/sanitel/ are packages: they
# replace the default ./... for both go vet and go test. Everything else is
# passed to go test as is, so a flag's value must not start with ./ (write
# -coverprofile=cover.out, not -coverprofile ./cover.out).
#
# What it installs when missing (apt-get, with sudo unless root):
#   mosquitto, mosquitto-clients    (apt-get install -y mosquitto mosquitto-clients)
#   gcc, libc6-dev                  (the race detector needs cgo)
#   influxd 1.8.3 into .cache/bin   (go install, once, ~3 minutes)
#   postgresql                      (apt-get install -y postgresql; the newest
#                                   /usr/lib/postgresql/*/bin is used; as root
#                                   the server runs as the postgres user)
#   chromium, fonts-wqy-microhei    (the desk's browser tests; SANITEL_TEST_BROWSER=0
#                                   skips installing them, and those tests then fail)
#
# What the tests get (internal/testenv reads these):
#   SANITEL_TEST_MQTT=tcp://127.0.0.1:PORT        the shared broker
#   SANITEL_TEST_INFLUX_URL=http://127.0.0.1:PORT the shared InfluxDB
#   SANITEL_TEST_POSTGRES=postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable
#                                                 the shared PostgreSQL (trust
#                                                 auth, fsync off; tests make
#                                                 their own databases in it)
#   SANITEL_TEST_PGBIN                            its bin directory (initdb,
#                                                 postgres, pg_isready)
#   SANITEL_TEST_MOSQUITTO, SANITEL_TEST_INFLUXD  the binaries, for tests that
#                                                 start private servers
#   SANITEL_TEST_CHROMIUM                         the browser, for desk/ tests
# Set SANITEL_TEST_MQTT, SANITEL_TEST_INFLUX_URL or SANITEL_TEST_POSTGRES
# yourself to use a server of your own instead of starting one (PostgreSQL:
# a user allowed to create databases).
#
# Exits with go vet's status if vet fails, else with go test's.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

packages=()
flags=()
for arg in "$@"; do
	case $arg in
	./* | ../* | github.com/sanitel/*) packages+=("$arg") ;;
	*) flags+=("$arg") ;;
	esac
done
((${#packages[@]})) || packages=(./...)

start=$SECONDS
sanitel_ensure_cc
sanitel_ensure_mosquitto
sanitel_ensure_influxd
sanitel_ensure_postgres
if [[ ${SANITEL_TEST_BROWSER:-1} != 0 ]]; then
	sanitel_ensure_chromium
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/sanitel-test.XXXXXX")
status=0
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	sanitel_stop_servers
	if ((status != 0)); then
		for log in "${SANITEL_MOSQUITTO_LOG:-}" "${SANITEL_INFLUX_LOG:-}" "${SANITEL_POSTGRES_LOG:-}"; do
			[[ -n $log && -s $log ]] || continue
			echo "---- last lines of $log" >&2
			tail -n 30 "$log" >&2
		done
	fi
	rm -rf "$workdir"
}
trap 'status=$?; cleanup' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${SANITEL_TEST_MQTT:-} ]]; then
	sanitel_start_mosquitto "$workdir/mosquitto"
fi
if [[ -z ${SANITEL_TEST_INFLUX_URL:-} ]]; then
	sanitel_start_influx "$workdir/influx"
fi
if [[ -z ${SANITEL_TEST_POSTGRES:-} ]]; then
	sanitel_start_postgres "$workdir/postgres"
fi

cat <<EOF
==== sanitel tests: $(sanitel_versions)
  mosquitto  $SANITEL_TEST_MQTT  ($SANITEL_TEST_MOSQUITTO)
  influxdb   $SANITEL_TEST_INFLUX_URL  ($SANITEL_TEST_INFLUXD)
  postgres   $SANITEL_TEST_POSTGRES  ($("$SANITEL_TEST_PGBIN/postgres" --version))
  servers up in $((SECONDS - start))s; data in $workdir
  go vet ${packages[*]}
  go test -race -count=1 -timeout 20m ${packages[*]} ${flags[*]}
EOF

go vet "${packages[@]}"

# go test runs in a process group of its own, waited for in the background,
# so that a SIGTERM or SIGINT sent to this script alone (a cancelled CI job)
# is handled at once and reaches the test binaries too; they take their
# private servers down with them.
setsid=()
if command -v setsid >/dev/null; then setsid=(setsid); fi
"${setsid[@]}" go test -race -count=1 -timeout 20m "${packages[@]}" "${flags[@]}" &
test_pid=$!
# shellcheck disable=SC2317 # called by the traps
forward() {
	if ((${#setsid[@]})); then kill "-$1" -- "-$test_pid" 2>/dev/null || true; fi
	kill "-$1" "$test_pid" 2>/dev/null || true
	wait "$test_pid" 2>/dev/null || true
}
trap 'forward INT; exit 130' INT
trap 'forward TERM; exit 143' TERM
set +e
wait "$test_pid"
status=$?
set -e
echo "==== go test exited $status after $((SECONDS - start))s"
exit "$status"
