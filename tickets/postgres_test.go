package tickets

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/sanitel/sanitel/internal/testenv"
)

// TestPostgres runs the store-facing tests on PostgreSQL (the test
// script's server, a fresh database per test) instead of SQLite.
func TestPostgres(t *testing.T) {
	testenv.PostgresFromEnv(t)
	sqliteDSN := fixtureDSN
	fixtureDSN = func(t *testing.T) string { return testenv.TempPostgres(t) }
	t.Cleanup(func() { fixtureDSN = sqliteDSN })
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"NumberingPerDayInShanghai", TestNumberingPerDayInShanghai},
		{"RaiseRepeatAndReplay", TestRaiseRepeatAndReplay},
		{"ConcurrentRaiseMakesOneTicket", TestConcurrentRaiseMakesOneTicket},
		{"ConcurrentRaiseFromTwoProcesses", TestConcurrentRaiseFromTwoProcesses},
		{"DatabaseEnforcesOneOpenAlertTicket", TestDatabaseEnforcesOneOpenAlertTicket},
		{"Lifecycle", TestLifecycle},
		{"WrongTransitions", TestWrongTransitions},
		{"RepeatedTransitionIsNoOp", TestRepeatedTransitionIsNoOp},
		{"RectifyFromOpenAndReopen", TestRectifyFromOpenAndReopen},
		{"Roles", TestRoles},
		{"Clear", TestClear},
		{"Escalation", TestEscalation},
		{"CreateValidation", TestCreateValidation},
		{"ListFiltersAndPaging", TestListFiltersAndPaging},
		{"ListIsOneSnapshot", TestListIsOneSnapshot},
		{"Ranking", TestRanking},
		{"WriteCSV", TestWriteCSV},
		{"MigrationsIdempotent", TestMigrationsIdempotent},
		{"Metrics", TestMetrics},
		{"Ping", TestPing},
	} {
		t.Run(tc.name, tc.test)
	}
}

// TestPostgresConnectErrorsSayWhatToDo: a missing database and a server
// that does not answer each get their own hint.
func TestPostgresConnectErrorsSayWhatToDo(t *testing.T) {
	base, err := url.Parse(testenv.PostgresFromEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	missing := *base
	missing.Path = "/" + testenv.UniqueName(t) + "_missing"
	nobody := *base
	nobody.Host = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	for dsn, want := range map[string]string{
		missing.String(): "the database does not exist",
		nobody.String():  "cannot reach PostgreSQL",
	} {
		s, err := OpenPostgres(context.Background(), dsn)
		if err == nil {
			s.Close()
			t.Errorf("%s: opened", dsn)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want it to say %q", dsn, err, want)
		}
	}
}
