// Package testenv starts the real servers sanitel's integration tests talk
// to — Mosquitto and InfluxDB 1.8 — and offers small helpers to inspect them.
//
// Two ways to get a server:
//
//   - StartMosquitto / StartInflux start a private server for one test, on
//     free loopback ports, storing everything under t.TempDir(). Use these
//     when the test stops, kills or restarts the server, or needs special
//     options (TLS, passwords, ACLs).
//   - MosquittoFromEnv / InfluxFromEnv reuse the servers scripts/test.sh
//     started for the whole run (SANITEL_TEST_MQTT, SANITEL_TEST_INFLUX_URL)
//     and fall back to a private server when those are unset. Tests sharing a
//     server must not see each other's data: name databases, topic roots and
//     client ids with UniqueName, or use Influx.TempDB.
//
// PostgreSQL is only shared: PostgresFromEnv returns the URL of the server
// scripts/test.sh started (SANITEL_TEST_POSTGRES), and TempPostgres a database
// of the test's own on it, dropped when the test ends.
//
// A missing server binary fails the test with the command that installs it;
// it never skips, because a skipped integration test looks like coverage that
// is not there. Server output goes to a log file next to the server's data and
// is copied into the test log when the test fails.
package testenv

// Environment variables set by scripts/test.sh and read by this package.
const (
	// EnvMQTT holds the address of a shared broker, "tcp://127.0.0.1:PORT".
	EnvMQTT = "SANITEL_TEST_MQTT"
	// EnvInfluxURL holds the URL of a shared InfluxDB, "http://127.0.0.1:PORT".
	EnvInfluxURL = "SANITEL_TEST_INFLUX_URL"
	// EnvMosquitto holds the path of the mosquitto binary to use.
	EnvMosquitto = "SANITEL_TEST_MOSQUITTO"
	// EnvInfluxd holds the path of the influxd (1.8) binary to use.
	EnvInfluxd = "SANITEL_TEST_INFLUXD"
)
