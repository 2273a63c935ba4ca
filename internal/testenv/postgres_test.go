package testenv

import (
	"context"
	"database/sql"
	"strings"
	"testing"
)

// openPostgres opens dsn and closes it when the test ends.
func openPostgres(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// queryInt runs a query that returns one integer.
func queryInt(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestTestenvTempPostgres checks that each TempPostgres is a working, empty
// database of its own, and that it is gone once its test has ended.
func TestTestenvTempPostgres(t *testing.T) {
	t.Parallel()
	var names []string
	t.Run("databases", func(t *testing.T) {
		a, b := openPostgres(t, TempPostgres(t)), openPostgres(t, TempPostgres(t))
		const userTables = `SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`
		for _, db := range []*sql.DB{a, b} {
			var name string
			if err := db.QueryRow("SELECT current_database()").Scan(&name); err != nil {
				t.Fatalf("current_database(): %v", err)
			}
			names = append(names, name)
			if n := queryInt(t, db, userTables); n != 0 {
				t.Errorf("database %s has %d tables, want none", name, n)
			}
		}
		if names[0] == names[1] {
			t.Fatalf("TempPostgres twice gave the same database %s", names[0])
		}

		if _, err := a.Exec("CREATE TABLE probe (id int PRIMARY KEY); INSERT INTO probe VALUES (1)"); err != nil {
			t.Fatalf("create table in %s: %v", names[0], err)
		}
		if n := queryInt(t, a, "SELECT count(*) FROM probe"); n != 1 {
			t.Errorf("%s: probe has %d rows, want 1", names[0], n)
		}
		if n := queryInt(t, b, "SELECT count(*) FROM pg_tables WHERE tablename = 'probe'"); n != 0 {
			t.Errorf("table probe, created in %s, is in %s too", names[0], names[1])
		}
	})
	if len(names) != 2 {
		t.Fatal("the subtest did not get two databases")
	}

	admin := openPostgres(t, PostgresFromEnv(t))
	for _, name := range names {
		if n := queryInt(t, admin, "SELECT count(*) FROM pg_database WHERE datname = $1", name); n != 0 {
			t.Errorf("database %s still exists after its test ended", name)
		}
	}
}

// TestTestenvPostgresUnsetFails checks that a test asking for PostgreSQL
// without one fails, saying how to get one, and never skips.
func TestTestenvPostgresUnsetFails(t *testing.T) {
	t.Setenv(EnvPostgres, "")
	r := &recorder{TB: t}
	r.run(func(tb testing.TB) { TempPostgres(tb) })
	if r.skipped != "" {
		t.Fatalf("skipped: %s", r.skipped)
	}
	if !strings.Contains(r.failed, EnvPostgres) || !strings.Contains(r.failed, "scripts/test.sh") {
		t.Errorf("failure = %q, want it to mention $%s and scripts/test.sh", r.failed, EnvPostgres)
	}
}
