package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
)

// EnvPostgres holds the URL of a shared PostgreSQL, as scripts/test.sh sets
// it: "postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable".
const EnvPostgres = "SANITEL_TEST_POSTGRES"

// postgresTimeout bounds each statement testenv sends to PostgreSQL.
const postgresTimeout = time.Minute

// PostgresFromEnv returns the URL of the shared PostgreSQL named by
// $SANITEL_TEST_POSTGRES, after checking that it answers. Unlike the broker
// and InfluxDB, PostgreSQL is never started privately: the test fails when
// the variable is unset. Other tests use the server at the same time: use
// TempPostgres for a database of your own.
func PostgresFromEnv(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvPostgres)
	if dsn == "" {
		t.Fatalf("testenv: $%s is not set; run the tests with scripts/test.sh, which starts PostgreSQL (installing it with apt-get install -y postgresql if needed)", EnvPostgres)
	}
	if err := postgresExec(dsn, "SELECT 1"); err != nil {
		t.Fatalf("testenv: shared PostgreSQL $%s=%s does not answer (%v); is scripts/test.sh still running?", EnvPostgres, dsn, err)
	}
	return dsn
}

// TempPostgres creates an empty database named with UniqueName on the shared
// PostgreSQL (see PostgresFromEnv) and returns its URL. The database is
// dropped when the test ends, even if connections to it are still open.
func TempPostgres(t testing.TB) string {
	t.Helper()
	dsn := PostgresFromEnv(t)
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("testenv: $%s=%q: want postgres://USER@HOST:PORT/DB?PARAMS", EnvPostgres, dsn)
	}
	name := UniqueName(t)
	ident := pgx.Identifier{name}.Sanitize()
	if err := postgresExec(dsn, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := postgresExec(dsn, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// postgresExec runs one statement on a connection of its own, so that no
// connection to the shared server outlives the call.
func postgresExec(dsn, query string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), postgresTimeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, query); err != nil {
		return fmt.Errorf("%s: %w", query, err)
	}
	return nil
}
