package tickets

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SQLStore is the Store on a SQL database: SQLite (OpenSQLite) or
// PostgreSQL (OpenPostgres). The SQL is written once, with ? placeholders,
// in the part of the language both share; a dialect holds the rest (the
// schema, the placeholders, how writers take turns).
type SQLStore struct {
	db *sql.DB
	d  *dialect
	q  querier // db, speaking the dialect
	// writeMu queues this process's write transactions in Go rather than
	// in the database (SQLite's busy handler polls with sleeps). Other
	// processes still wait in the database: SQLite's busy_timeout, or
	// PostgreSQL's advisory lock.
	writeMu sync.Mutex
}

var _ Store = (*SQLStore)(nil)

// dialect is what differs between the databases.
type dialect struct {
	name string
	// migrations are applied in order; entry i brings the schema to
	// version i+1. Never edit an entry that has shipped: append a new one.
	migrations []string
	// dollar numbers placeholders $1, $2, … instead of ?.
	dollar bool
	// lock, when set, is run first in every write transaction, so that
	// writers in every process sharing the database take turns.
	lock string
}

// rebind rewrites the ? placeholders of query for d.
func (d *dialect) rebind(query string) string {
	if !d.dollar || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] != '?' {
			b.WriteByte(query[i])
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// rebinding is q speaking dialect d.
type rebinding struct {
	q querier
	d *dialect
}

func (r rebinding) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return r.q.ExecContext(ctx, r.d.rebind(query), args...)
}

func (r rebinding) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return r.q.QueryContext(ctx, r.d.rebind(query), args...)
}

func (r rebinding) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return r.q.QueryRowContext(ctx, r.d.rebind(query), args...)
}

// writeTx is a write transaction.
type writeTx struct {
	rebinding
	tx *sql.Tx
}

func (w writeTx) Commit() error { return w.tx.Commit() }

// newSQLStore wraps db and brings its schema up to date.
func newSQLStore(ctx context.Context, db *sql.DB, d *dialect) (*SQLStore, error) {
	s := &SQLStore{db: db, d: d, q: rebinding{db, d}}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open ticket store: %w", err)
	}
	return s, nil
}

// beginWrite starts a write transaction; release must be called after it
// is committed or rolled back.
func (s *SQLStore) beginWrite(ctx context.Context) (tx writeTx, release func(), err error) {
	s.writeMu.Lock()
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		s.writeMu.Unlock()
		return writeTx{}, nil, err
	}
	release = func() {
		t.Rollback()
		s.writeMu.Unlock()
	}
	tx = writeTx{rebinding{t, s.d}, t}
	if s.d.lock != "" {
		if _, err := t.ExecContext(ctx, s.d.lock); err != nil {
			release()
			return writeTx{}, nil, err
		}
	}
	return tx, release, nil
}

// nextNumber returns the next sequence number of day and the ticket
// number made of it (DB-YYYYMMDD-NNNN). Write transactions take turns, so
// no other one takes the same.
func nextNumber(ctx context.Context, q querier, day string) (seq int, number string, err error) {
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM tickets WHERE day = ?`, day).Scan(&seq); err != nil {
		return 0, "", fmt.Errorf("number ticket: %w", err)
	}
	return seq, fmt.Sprintf("DB-%s-%04d", day, seq), nil
}

// DB is the underlying handle, for tests and maintenance.
func (s *SQLStore) DB() *sql.DB { return s.db }

// Dialect names the database behind the store: "sqlite" or "postgres".
func (s *SQLStore) Dialect() string { return s.d.name }

// Ping runs a query, so a broken file, a full lock or a lost server shows.
func (s *SQLStore) Ping(ctx context.Context) error {
	var n int
	return s.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_version`).Scan(&n)
}

// Close closes the database.
func (s *SQLStore) Close() error { return s.db.Close() }

// SchemaVersion is the number of migrations applied.
func (s *SQLStore) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.q.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v)
	return v, err
}

func (s *SQLStore) migrate(ctx context.Context) error {
	for {
		done, err := s.migrateOne(ctx)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next migration, in its own write transaction (so
// that instances starting together on one PostgreSQL take turns), and
// reports whether the schema was already current.
func (s *SQLStore) migrateOne(ctx context.Context) (done bool, err error) {
	tx, release, err := s.beginWrite(ctx)
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	defer release()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    INTEGER PRIMARY KEY,
		applied_at BIGINT  NOT NULL
	)`); err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	var v int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	migrations := s.d.migrations
	if v > len(migrations) {
		return false, fmt.Errorf("migrate: database schema version %d is newer than this sanitel (%d)", v, len(migrations))
	}
	if v == len(migrations) {
		return true, nil
	}
	if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("migrate to version %d: %w", v+1, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, applied_at) VALUES (?, ?)`,
		v+1, time.Now().UnixMilli()); err != nil {
		return false, fmt.Errorf("migrate to version %d: %w", v+1, err)
	}
	return false, tx.Commit()
}

const ticketColumns = `id, number, source, rule, severity, status, device_id, kind, site, street,
	village, org_unit, title, detail, requirement, opened_at, fired_at, deadline, acknowledged_at,
	rectified_at, closed_at, cleared_at, occurrences, escalation_level, auto_close`

type rowScanner interface{ Scan(dest ...any) error }

func scanTicket(r rowScanner, extra ...any) (Ticket, error) {
	var (
		t                                 Ticket
		opened, deadline                  int64
		fired, ack, rect, closed, cleared sql.NullInt64
		source, severity, status          string
	)
	dest := []any{&t.ID, &t.Number, &source, &t.Rule, &severity, &status, &t.DeviceID, &t.Kind,
		&t.Site, &t.Street, &t.Village, &t.OrgUnit, &t.Title, &t.Detail, &t.Requirement, &opened,
		&fired, &deadline, &ack, &rect, &closed, &cleared, &t.Occurrences, &t.EscalationLevel, &t.AutoClose}
	if err := r.Scan(append(dest, extra...)...); err != nil {
		return Ticket{}, err
	}
	t.Source, t.Severity, t.Status = Source(source), Severity(severity), Status(status)
	t.OpenedAt, t.Deadline = fromMillis(opened), fromMillis(deadline)
	t.FiredAt, t.AcknowledgedAt, t.RectifiedAt = nullTime(fired), nullTime(ack), nullTime(rect)
	t.ClosedAt, t.ClearedAt = nullTime(closed), nullTime(cleared)
	return t, nil
}

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func nullTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMillis(v.Int64)
	return &t
}

func millis(t time.Time) int64 { return t.UnixMilli() }

func nullMillis(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

// querier is what a *sql.DB and a *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getTicket(ctx context.Context, q querier, id int64) (Ticket, error) {
	t, err := scanTicket(q.QueryRowContext(ctx, `SELECT `+ticketColumns+` FROM tickets WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Ticket{}, ErrNotFound
	}
	if err != nil {
		return Ticket{}, fmt.Errorf("get ticket %d: %w", id, err)
	}
	rows, err := q.QueryContext(ctx, `SELECT at, by_name, action, note FROM ticket_history
		WHERE ticket_id = ? ORDER BY id`, id)
	if err != nil {
		return Ticket{}, fmt.Errorf("get ticket %d history: %w", id, err)
	}
	defer rows.Close()
	t.History = []HistoryEntry{}
	for rows.Next() {
		var h HistoryEntry
		var at int64
		if err := rows.Scan(&at, &h.By, &h.Action, &h.Note); err != nil {
			return Ticket{}, fmt.Errorf("get ticket %d history: %w", id, err)
		}
		h.At = fromMillis(at)
		t.History = append(t.History, h)
	}
	if err := rows.Err(); err != nil {
		return Ticket{}, fmt.Errorf("get ticket %d history: %w", id, err)
	}
	return t, nil
}

func addHistory(ctx context.Context, q querier, id int64, hs ...HistoryEntry) error {
	for _, h := range hs {
		if _, err := q.ExecContext(ctx, `INSERT INTO ticket_history (ticket_id, at, by_name, action, note)
			VALUES (?, ?, ?, ?, ?)`, id, millis(h.At), h.By, h.Action, h.Note); err != nil {
			return fmt.Errorf("add history to ticket %d: %w", id, err)
		}
	}
	return nil
}

// Get returns a ticket with its history.
func (s *SQLStore) Get(ctx context.Context, id int64) (Ticket, error) {
	return getTicket(ctx, s.q, id)
}

// Raise implements Store.Raise. The one-open-ticket rule is the unique
// index: the insert turns into an update of the open ticket on conflict,
// so concurrent raises (here or from another process) never duplicate.
func (s *SQLStore) Raise(ctx context.Context, in RaiseInput) (Ticket, bool, error) {
	t := in.Ticket
	if t.FiredAt == nil {
		return Ticket{}, false, errors.New("raise: no fired_at")
	}
	fired := millis(*t.FiredAt)
	tx, release, err := s.beginWrite(ctx)
	if err != nil {
		return Ticket{}, false, fmt.Errorf("raise: %w", err)
	}
	defer release()

	res, err := tx.ExecContext(ctx, `INSERT INTO ticket_firings (device_id, rule, fired_at) VALUES (?, ?, ?)
		ON CONFLICT DO NOTHING`, t.DeviceID, t.Rule, fired)
	if err != nil {
		return Ticket{}, false, fmt.Errorf("raise: record firing: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return Ticket{}, false, fmt.Errorf("raise: record firing: %w", err)
	} else if n == 0 {
		// A replay: this firing was handled before.
		var id sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT ticket_id FROM ticket_firings
			WHERE device_id = ? AND rule = ? AND fired_at = ?`, t.DeviceID, t.Rule, fired).Scan(&id); err != nil {
			return Ticket{}, false, fmt.Errorf("raise: find replayed firing: %w", err)
		}
		if !id.Valid {
			return Ticket{}, false, errors.New("raise: replayed firing has no ticket")
		}
		got, err := getTicket(ctx, tx, id.Int64)
		return got, false, err
	}

	// A new ticket is inserted with zero occurrences; on conflict the open
	// one is returned untouched. Either way the update below counts this
	// firing, and zero tells which case it was.
	seq, number, err := nextNumber(ctx, tx, in.Day)
	if err != nil {
		return Ticket{}, false, fmt.Errorf("raise: %w", err)
	}
	var id int64
	var occ int
	err = tx.QueryRowContext(ctx, `INSERT INTO tickets (day, seq, number, source, rule, severity, status,
			device_id, kind, site, street, village, org_unit, title, detail, requirement,
			opened_at, fired_at, last_fired_at, deadline, occurrences, escalation_level, auto_close)
		VALUES (?, ?, ?, 'alert', ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?)
		ON CONFLICT (device_id, rule) WHERE status <> 'closed' AND source = 'alert'
		DO UPDATE SET occurrences = tickets.occurrences
		RETURNING id, occurrences`,
		in.Day, seq, number, t.Rule, string(t.Severity), t.DeviceID, t.Kind, t.Site, t.Street, t.Village,
		t.OrgUnit, t.Title, t.Detail, t.Requirement, millis(t.OpenedAt), fired, fired, millis(t.Deadline), t.AutoClose,
	).Scan(&id, &occ)
	if err != nil {
		return Ticket{}, false, fmt.Errorf("raise: insert ticket: %w", err)
	}
	created := occ == 0
	h := in.Open
	if !created {
		h = in.Repeat
	}
	// A repeat means the condition holds again, so it is no longer cleared.
	// Severity only goes up; the detail follows the severity that fired.
	critical := t.Severity == SeverityCritical
	if _, err := tx.ExecContext(ctx, `UPDATE tickets SET
			occurrences = occurrences + 1,
			last_fired_at = CASE WHEN last_fired_at IS NULL OR last_fired_at < ? THEN ? ELSE last_fired_at END,
			detail = CASE WHEN ? AND severity <> 'critical' THEN ? ELSE detail END,
			severity = CASE WHEN ? THEN 'critical' ELSE severity END,
			cleared_at = NULL
		WHERE id = ?`, fired, fired, critical, t.Detail, critical, id); err != nil {
		return Ticket{}, false, fmt.Errorf("raise: count occurrence: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE ticket_firings SET ticket_id = ?
		WHERE device_id = ? AND rule = ? AND fired_at = ?`, id, t.DeviceID, t.Rule, fired); err != nil {
		return Ticket{}, false, fmt.Errorf("raise: record firing: %w", err)
	}
	if err := addHistory(ctx, tx, id, h); err != nil {
		return Ticket{}, false, fmt.Errorf("raise: %w", err)
	}
	got, err := getTicket(ctx, tx, id)
	if err != nil {
		return Ticket{}, false, fmt.Errorf("raise: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Ticket{}, false, fmt.Errorf("raise: commit: %w", err)
	}
	return got, created, nil
}

// Insert implements Store.Insert.
func (s *SQLStore) Insert(ctx context.Context, t Ticket, day string) (Ticket, error) {
	tx, release, err := s.beginWrite(ctx)
	if err != nil {
		return Ticket{}, fmt.Errorf("insert ticket: %w", err)
	}
	defer release()
	seq, number, err := nextNumber(ctx, tx, day)
	if err != nil {
		return Ticket{}, fmt.Errorf("insert ticket: %w", err)
	}
	var id int64
	err = tx.QueryRowContext(ctx, `INSERT INTO tickets (day, seq, number, source, rule, severity, status,
			device_id, kind, site, street, village, org_unit, title, detail, requirement,
			opened_at, fired_at, last_fired_at, deadline, occurrences, escalation_level, auto_close)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)
		RETURNING id`,
		day, seq, number, string(t.Source), t.Rule, string(t.Severity), string(t.Status), t.DeviceID, t.Kind,
		t.Site, t.Street, t.Village, t.OrgUnit, t.Title, t.Detail, t.Requirement, millis(t.OpenedAt),
		nullMillis(t.FiredAt), nullMillis(t.FiredAt), millis(t.Deadline), max(t.Occurrences, 1), t.AutoClose,
	).Scan(&id)
	if err != nil {
		return Ticket{}, fmt.Errorf("insert ticket: %w", err)
	}
	if err := addHistory(ctx, tx, id, t.History...); err != nil {
		return Ticket{}, fmt.Errorf("insert ticket: %w", err)
	}
	got, err := getTicket(ctx, tx, id)
	if err != nil {
		return Ticket{}, fmt.Errorf("insert ticket: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Ticket{}, fmt.Errorf("insert ticket: commit: %w", err)
	}
	return got, nil
}

// Update implements Store.Update.
func (s *SQLStore) Update(ctx context.Context, id int64, fn UpdateFunc) (Ticket, error) {
	return s.update(ctx, func(querier) (int64, error) { return id, nil }, fn)
}

// UpdateOpen implements Store.UpdateOpen.
func (s *SQLStore) UpdateOpen(ctx context.Context, rule, deviceID string, fn UpdateFunc) (Ticket, error) {
	return s.update(ctx, func(tx querier) (int64, error) {
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM tickets
			WHERE device_id = ? AND rule = ? AND status <> 'closed' AND source = 'alert'`, deviceID, rule).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, ErrNotFound
		}
		return id, err
	}, fn)
}

func (s *SQLStore) update(ctx context.Context, find func(querier) (int64, error), fn UpdateFunc) (Ticket, error) {
	tx, release, err := s.beginWrite(ctx)
	if err != nil {
		return Ticket{}, fmt.Errorf("update ticket: %w", err)
	}
	defer release()
	id, err := find(tx)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return Ticket{}, err
		}
		return Ticket{}, fmt.Errorf("update ticket: %w", err)
	}
	t, err := getTicket(ctx, tx, id)
	if err != nil {
		return Ticket{}, err
	}
	before := len(t.History)
	changed, err := fn(&t)
	if err != nil {
		return Ticket{}, err
	}
	if !changed {
		return t, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE tickets SET severity = ?, status = ?, detail = ?, deadline = ?,
			acknowledged_at = ?, rectified_at = ?, closed_at = ?, cleared_at = ?, escalation_level = ?
		WHERE id = ?`,
		string(t.Severity), string(t.Status), t.Detail, millis(t.Deadline), nullMillis(t.AcknowledgedAt),
		nullMillis(t.RectifiedAt), nullMillis(t.ClosedAt), nullMillis(t.ClearedAt), t.EscalationLevel, id,
	); err != nil {
		return Ticket{}, fmt.Errorf("update ticket %d: %w", id, err)
	}
	if err := addHistory(ctx, tx, id, t.History[before:]...); err != nil {
		return Ticket{}, err
	}
	got, err := getTicket(ctx, tx, id)
	if err != nil {
		return Ticket{}, err
	}
	if err := tx.Commit(); err != nil {
		return Ticket{}, fmt.Errorf("update ticket %d: commit: %w", id, err)
	}
	return got, nil
}

// where turns f into a WHERE clause (without the keyword; "1 = 1" when empty).
func where(f Filter, now time.Time) (string, []any) {
	var conds []string
	var args []any
	in := func(col string, vals []string) {
		if len(vals) == 0 {
			return
		}
		conds = append(conds, col+" IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(vals)), ", ")+")")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	in("status", f.Status)
	in("street", f.Street)
	in("village", f.Village)
	in("org_unit", f.OrgUnit)
	in("rule", f.Rule)
	in("severity", f.Severity)
	in("device_id", f.DeviceID)
	in("source", f.Source)
	if f.Overdue != nil {
		c := `(status IN ('open', 'acknowledged') AND deadline < ?)`
		if !*f.Overdue {
			c = "NOT " + c
		}
		conds = append(conds, c)
		args = append(args, millis(now))
	}
	if !f.From.IsZero() {
		conds = append(conds, "opened_at >= ?")
		args = append(args, millis(f.From))
	}
	if !f.To.IsZero() {
		conds = append(conds, "opened_at < ?")
		args = append(args, millis(f.To))
	}
	if len(conds) == 0 {
		return "1 = 1", nil
	}
	return strings.Join(conds, " AND "), args
}

// List implements Store.List with keyset paging on id.
func (s *SQLStore) List(ctx context.Context, f Filter, now time.Time) ([]Ticket, int, string, error) {
	limit := normLimit(f.Limit)
	cond, args := where(f, now)
	// The count and the page from one snapshot, so that a ticket opened
	// in between is in both or in neither.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, 0, "", fmt.Errorf("list tickets: %w", err)
	}
	defer tx.Rollback()
	q := rebinding{tx, s.d}
	var total int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM tickets WHERE `+cond, args...).Scan(&total); err != nil {
		return nil, 0, "", fmt.Errorf("list tickets: %w", err)
	}
	if f.Cursor != "" {
		after, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, 0, "", err
		}
		cond += " AND id < ?"
		args = append(args, after)
	}
	rows, err := q.QueryContext(ctx, `SELECT `+ticketColumns+` FROM tickets WHERE `+cond+
		` ORDER BY id DESC LIMIT ?`, append(args, limit+1)...)
	if err != nil {
		return nil, 0, "", fmt.Errorf("list tickets: %w", err)
	}
	defer rows.Close()
	items := []Ticket{}
	for rows.Next() {
		t, err := scanTicket(rows)
		if err != nil {
			return nil, 0, "", fmt.Errorf("list tickets: %w", err)
		}
		items = append(items, t)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, "", fmt.Errorf("list tickets: %w", err)
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = encodeCursor(items[limit-1].ID)
	}
	return items, total, next, nil
}

// Each implements Store.Each.
func (s *SQLStore) Each(ctx context.Context, f Filter, now time.Time, fn func(Ticket, Summary) error) error {
	cond, args := where(f, now)
	rows, err := s.q.QueryContext(ctx, `SELECT `+ticketColumns+`,
			(SELECT COUNT(*) FROM ticket_history h WHERE h.ticket_id = tickets.id),
			COALESCE((SELECT action FROM ticket_history h WHERE h.ticket_id = tickets.id ORDER BY h.id DESC LIMIT 1), ''),
			COALESCE((SELECT at FROM ticket_history h WHERE h.ticket_id = tickets.id ORDER BY h.id DESC LIMIT 1), 0)
		FROM tickets WHERE `+cond+` ORDER BY id DESC`, args...)
	if err != nil {
		return fmt.Errorf("read tickets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sum Summary
		var at int64
		t, err := scanTicket(rows, &sum.Entries, &sum.LastAction, &at)
		if err != nil {
			return fmt.Errorf("read tickets: %w", err)
		}
		if at != 0 {
			sum.LastAt = fromMillis(at)
		}
		if err := fn(t, sum); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read tickets: %w", err)
	}
	return nil
}

// Due implements Store.Due.
func (s *SQLStore) Due(ctx context.Context, now time.Time) ([]Ticket, error) {
	rows, err := s.q.QueryContext(ctx, `SELECT `+ticketColumns+` FROM tickets
		WHERE status IN ('open', 'acknowledged') AND deadline < ? ORDER BY id`, millis(now))
	if err != nil {
		return nil, fmt.Errorf("due tickets: %w", err)
	}
	defer rows.Close()
	var out []Ticket
	for rows.Next() {
		t, err := scanTicket(rows)
		if err != nil {
			return nil, fmt.Errorf("due tickets: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("due tickets: %w", err)
	}
	return out, nil
}

// Counts implements Store.Counts.
func (s *SQLStore) Counts(ctx context.Context, now time.Time) (Counts, error) {
	c := Counts{ByStatus: map[Status]int{}}
	rows, err := s.q.QueryContext(ctx, `SELECT status, COUNT(*),
			SUM(CASE WHEN status IN ('open', 'acknowledged') AND deadline < ? THEN 1 ELSE 0 END)
		FROM tickets GROUP BY status`, millis(now))
	if err != nil {
		return c, fmt.Errorf("count tickets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var st string
		var n, overdue int
		if err := rows.Scan(&st, &n, &overdue); err != nil {
			return c, fmt.Errorf("count tickets: %w", err)
		}
		c.ByStatus[Status(st)] = n
		c.Overdue += overdue
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("count tickets: %w", err)
	}
	return c, nil
}

// OpenByDevice implements Store.OpenByDevice.
func (s *SQLStore) OpenByDevice(ctx context.Context) (map[string]int, error) {
	rows, err := s.q.QueryContext(ctx, `SELECT device_id, COUNT(*) FROM tickets
		WHERE status <> 'closed' AND device_id <> '' GROUP BY device_id`)
	if err != nil {
		return nil, fmt.Errorf("count open tickets: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("count open tickets: %w", err)
		}
		out[id] = n
	}
	return out, rows.Err()
}
