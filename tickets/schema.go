package tickets

import "strings"

// schemaV1 is the first migration, written once for both dialects in the
// types of one: key is an auto-numbered primary key, bigint a 64-bit
// integer (times are Unix milliseconds), boolean a flag that defaults to
// false, noRowID what follows a table keyed by its primary key alone. It has
// shipped: change the schema by appending migrations to the dialects.
func schemaV1(key, bigint, boolean, noRowID string) string {
	return strings.NewReplacer("{{KEY}}", key, "{{INT64}}", bigint, "{{BOOL}}", boolean, "{{NOROWID}}", noRowID).
		Replace(schemaV1Template)
}

const schemaV1Template = `CREATE TABLE tickets (
		id               {{KEY}},
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
		opened_at        {{INT64}} NOT NULL,
		fired_at         {{INT64}},
		last_fired_at    {{INT64}},
		deadline         {{INT64}} NOT NULL,
		acknowledged_at  {{INT64}},
		rectified_at     {{INT64}},
		closed_at        {{INT64}},
		cleared_at       {{INT64}},
		occurrences      INTEGER NOT NULL DEFAULT 1,
		escalation_level INTEGER NOT NULL DEFAULT 0,
		auto_close       {{BOOL}},
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
		id        {{KEY}},
		ticket_id {{INT64}} NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
		at        {{INT64}} NOT NULL,
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
		fired_at  {{INT64}} NOT NULL,
		ticket_id {{INT64}} REFERENCES tickets (id) ON DELETE CASCADE,
		PRIMARY KEY (device_id, rule, fired_at)
	){{NOROWID}};
	CREATE INDEX ticket_firings_ticket ON ticket_firings (ticket_id);`
