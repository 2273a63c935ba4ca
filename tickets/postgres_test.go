package tickets

import (
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
