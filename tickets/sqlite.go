package tickets

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// sqlite is SQLite: placeholders ?, writers take turns by beginning
// IMMEDIATE transactions (OpenSQLite).
var sqlite = &dialect{name: "sqlite", migrations: []string{
	`CREATE TABLE tickets (
		id               INTEGER PRIMARY KEY AUTOINCREMENT,
		day              TEXT    NOT NULL,
		seq              INTEGER NOT NULL,
		number           TEXT    NOT NULL UNIQUE,
		source           TEXT    NOT NULL CHECK (source IN ('alert', 'inspection')),
		rule             TEXT    NOT NULL DEFAULT '',
		severity         TEXT    NOT NULL CHECK (severity IN ('warning', 'critical')),
		status           TEXT    NOT NULL CHECK (status IN ('open', 'acknowledged', 'rectified', 'closed')),
		device_id        TEXT    NOT NULL DEFAULT '',
		kind             TEXT    NOT NULL DEFAULT '',
		site             TEXT    NOT NULL DEFAULT '',
		street           TEXT    NOT NULL DEFAULT '',
		village          TEXT    NOT NULL DEFAULT '',
		org_unit         TEXT    NOT NULL DEFAULT '',
		title            TEXT    NOT NULL DEFAULT '',
		detail           TEXT    NOT NULL DEFAULT '',
		requirement      TEXT    NOT NULL DEFAULT '',
		opened_at        INTEGER NOT NULL,
		fired_at         INTEGER,
		last_fired_at    INTEGER,
		deadline         INTEGER NOT NULL,
		acknowledged_at  INTEGER,
		rectified_at     INTEGER,
		closed_at        INTEGER,
		cleared_at       INTEGER,
		occurrences      INTEGER NOT NULL DEFAULT 1,
		escalation_level INTEGER NOT NULL DEFAULT 0,
		auto_close       INTEGER NOT NULL DEFAULT 0,
		UNIQUE (day, seq)
	);
	-- The database, not only the code, keeps one open alert ticket per (device, rule).
	CREATE UNIQUE INDEX tickets_one_open_alert ON tickets (device_id, rule)
		WHERE status <> 'closed' AND source = 'alert';
	CREATE INDEX tickets_opened_at ON tickets (opened_at);
	CREATE INDEX tickets_status_deadline ON tickets (status, deadline);
	CREATE INDEX tickets_org_unit ON tickets (org_unit, id);
	CREATE INDEX tickets_street ON tickets (street, id);
	CREATE TABLE ticket_history (
		id        INTEGER PRIMARY KEY AUTOINCREMENT,
		ticket_id INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
		at        INTEGER NOT NULL,
		by_name   TEXT    NOT NULL,
		action    TEXT    NOT NULL,
		note      TEXT    NOT NULL DEFAULT ''
	);
	CREATE INDEX ticket_history_ticket ON ticket_history (ticket_id, id);
	-- Every firing handed to Raise, so that a replayed one changes nothing,
	-- also after its ticket was closed.
	CREATE TABLE ticket_firings (
		device_id TEXT    NOT NULL,
		rule      TEXT    NOT NULL,
		fired_at  INTEGER NOT NULL,
		ticket_id INTEGER REFERENCES tickets (id) ON DELETE CASCADE,
		PRIMARY KEY (device_id, rule, fired_at)
	) WITHOUT ROWID;
	CREATE INDEX ticket_firings_ticket ON ticket_firings (ticket_id);`,
}}

// OpenSQLite opens (creating it if needed) the SQLite database at dsn, a
// file path or a file: URI, in WAL mode with foreign keys on, and brings
// its schema up to date.
func OpenSQLite(ctx context.Context, dsn string) (*SQLStore, error) {
	if dsn == "" {
		return nil, errors.New("open ticket store: empty dsn")
	}
	// Write transactions begin IMMEDIATE so that two writers never both
	// read first and then fail to upgrade; busy_timeout makes the second
	// one wait instead.
	params := url.Values{}
	params.Add("_pragma", "busy_timeout(10000)")
	params.Add("_pragma", "journal_mode(WAL)")
	params.Add("_pragma", "foreign_keys(1)")
	params.Add("_pragma", "synchronous(NORMAL)")
	params.Set("_txlock", "immediate")
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	db, err := sql.Open("sqlite", dsn+sep+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("open ticket store: %w", err)
	}
	return newSQLStore(ctx, db, sqlite)
}
