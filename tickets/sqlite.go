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
	schemaV1("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER", "INTEGER NOT NULL DEFAULT 0", " WITHOUT ROWID"),
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
