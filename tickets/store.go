package tickets

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Store keeps tickets and their history. All SQL lives in a Store; the
// Service decides what changes. Implementations must enforce, in the
// database, that there is at most one not-closed ticket with source alert
// per (device_id, rule).
type Store interface {
	// Raise records that in.Ticket's (DeviceID, Rule) fired at
	// in.Ticket.FiredAt. A firing already recorded changes nothing (replay).
	// Otherwise the open ticket of (DeviceID, Rule) counts one more
	// occurrence (severity only ever goes up, cleared_at is reset) and gets
	// in.Repeat in its history, or, when there is none, in.Ticket is
	// inserted with status open, numbered within in.Day, with in.Open as its
	// first history entry. It returns the ticket, with history, and whether
	// it was created.
	Raise(ctx context.Context, in RaiseInput) (t Ticket, created bool, err error)
	// Insert adds a ticket that is not an alert's (an inspection), numbered
	// within day, with its History as given.
	Insert(ctx context.Context, t Ticket, day string) (Ticket, error)
	// Get returns a ticket with its history, or ErrNotFound.
	Get(ctx context.Context, id int64) (Ticket, error)
	// Update runs fn on the ticket (with history) inside a transaction;
	// when fn reports a change the store writes the mutable fields and the
	// history entries fn appended. ErrNotFound when there is no such ticket.
	Update(ctx context.Context, id int64, fn UpdateFunc) (Ticket, error)
	// UpdateOpen is Update on the not-closed alert ticket of (rule, deviceID).
	UpdateOpen(ctx context.Context, rule, deviceID string, fn UpdateFunc) (Ticket, error)
	// List returns one page of tickets matching f, newest first, without
	// history; total counts all matches, next is the cursor of the next
	// page or "" on the last one. now decides what is overdue.
	List(ctx context.Context, f Filter, now time.Time) (items []Ticket, total int, next string, err error)
	// Each calls fn for every ticket matching f (Limit and Cursor ignored),
	// newest first, with a summary of its history.
	Each(ctx context.Context, f Filter, now time.Time, fn func(Ticket, Summary) error) error
	// Due returns the open and acknowledged tickets whose deadline is before now.
	Due(ctx context.Context, now time.Time) ([]Ticket, error)
	// Counts counts tickets by status, and the overdue ones, as of now.
	Counts(ctx context.Context, now time.Time) (Counts, error)
	// OpenByDevice counts the not-closed tickets of each device.
	OpenByDevice(ctx context.Context) (map[string]int, error)
	// Ping checks that the store answers (for readiness).
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// RaiseInput is an alert firing for Store.Raise.
type RaiseInput struct {
	// Ticket is the ticket to create when none is open: status and source
	// are set by the store, ID, Number and History are ignored.
	Ticket Ticket
	// Day is the opening day in the office time zone, YYYYMMDD.
	Day string
	// Open is the first history entry of a new ticket, Repeat the entry
	// added to an open one.
	Open, Repeat HistoryEntry
}

// UpdateFunc changes t in place (appending to t.History what it did) and
// reports whether anything changed; an error aborts the update.
type UpdateFunc func(t *Ticket) (changed bool, err error)

// Summary is what a ledger row tells of a ticket's history.
type Summary struct {
	Entries    int
	LastAction string
	LastAt     time.Time
}

// Counts is the number of tickets by status, and of overdue ones.
type Counts struct {
	ByStatus map[Status]int
	Overdue  int
}

// Open selects a Store by DSN: a postgres:// (or postgresql://) URL is
// PostgreSQL, anything else a SQLite file path or file: URI.
func Open(ctx context.Context, dsn string) (Store, error) {
	if IsPostgres(dsn) {
		return OpenPostgres(ctx, dsn)
	}
	return OpenSQLite(ctx, dsn)
}

// IsPostgres reports whether dsn names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// cursor encodes the keyset position after id.
func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("id:" + strconv.FormatInt(id, 10)))
}

func decodeCursor(s string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		if rest, ok := strings.CutPrefix(string(b), "id:"); ok {
			if id, err := strconv.ParseInt(rest, 10, 64); err == nil && id > 0 {
				return id, nil
			}
		}
	}
	return 0, invalid("cursor", "not a cursor from this API")
}

func normLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}
