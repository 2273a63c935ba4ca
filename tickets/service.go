package tickets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Notifier is told about ticket events ("open", "escalate", "close"). It
// must not block.
type Notifier interface {
	Notify(Event)
}

// Event is a ticket event as a webhook receives it.
type Event struct {
	Event  string    `json:"event"`
	At     time.Time `json:"at"`
	Ticket Ticket    `json:"ticket"`
}

// Notification events.
const (
	EventOpen     = "open"
	EventEscalate = "escalate"
	EventClose    = "close"
)

// Options configure a Service.
type Options struct {
	// Store keeps the tickets; required.
	Store Store
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Location is the office time zone for numbers, months and exports;
	// default Asia/Shanghai.
	Location *time.Location
	// Notifier receives events; optional.
	Notifier Notifier
	// DeviceLookup fills a manual ticket's place from the registry; optional.
	DeviceLookup func(id string) (DeviceInfo, bool)
	// Logger; default discards.
	Logger *slog.Logger
	// Registerer gets the ticket gauges; optional.
	Registerer prometheus.Registerer
}

// Service is the ticket lifecycle: raising from alerts, manual tickets,
// checked transitions, escalation and reports.
type Service struct {
	store  Store
	now    func() time.Time
	loc    *time.Location
	notify Notifier
	lookup func(string) (DeviceInfo, bool)
	log    *slog.Logger
}

// New returns a Service on opts.Store.
func New(opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, errors.New("tickets: no store")
	}
	s := &Service{
		store:  opts.Store,
		now:    opts.Now,
		loc:    opts.Location,
		notify: opts.Notifier,
		lookup: opts.DeviceLookup,
		log:    opts.Logger,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.loc == nil {
		s.loc = DefaultLocation()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(newCollector(s)); err != nil {
			return nil, fmt.Errorf("tickets: register metrics: %w", err)
		}
	}
	return s, nil
}

// DefaultLocation is Asia/Shanghai, or UTC+8 where the zone database is
// missing (China has no daylight saving time).
func DefaultLocation() *time.Location {
	if loc, err := time.LoadLocation("Asia/Shanghai"); err == nil {
		return loc
	}
	return time.FixedZone("CST", 8*3600)
}

// Location is the office time zone.
func (s *Service) Location() *time.Location { return s.loc }

// clock returns now at the store's millisecond precision.
func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Millisecond) }

func (s *Service) day(t time.Time) string { return t.In(s.loc).Format("20060102") }

func (s *Service) emit(event string, t Ticket, at time.Time) {
	if s.notify != nil {
		s.notify.Notify(Event{Event: event, At: at, Ticket: t})
	}
}

func (s *Service) finish(t Ticket, now time.Time) Ticket {
	t.Overdue = t.overdue(now)
	return t
}

// Raise turns a firing alert into a ticket: a new one when (device, rule)
// has no open ticket, otherwise one more occurrence on the open one. A
// replayed firing (same device, rule and FiredAt as one already handled)
// changes nothing. created reports whether a ticket was opened.
func (s *Service) Raise(ctx context.Context, a Alert) (Ticket, bool, error) {
	if a.Rule == "" {
		return Ticket{}, false, invalid("rule", "required")
	}
	if a.DeviceID == "" {
		return Ticket{}, false, invalid("device_id", "required")
	}
	sev := Severity(a.Severity)
	if sev == "" {
		sev = SeverityWarning
	}
	if !sev.Valid() {
		return Ticket{}, false, invalid("severity", "must be warning or critical, got %q", a.Severity)
	}
	now := s.clock()
	fired := a.FiredAt.UTC().Truncate(time.Millisecond)
	if a.FiredAt.IsZero() {
		fired = now
	}
	title := a.Title
	if title == "" {
		title = a.Rule
	}
	deadline := a.Deadline
	if deadline <= 0 {
		// A rule without a rectification period still gets a ticket that
		// is not overdue the moment it opens.
		deadline = DefaultDeadline
	}
	in := RaiseInput{
		Ticket: Ticket{
			Rule: a.Rule, Severity: sev, DeviceID: a.DeviceID, Kind: a.Kind, Site: a.Site,
			Street: a.Street, Village: a.Village, OrgUnit: a.OrgUnit, Title: title,
			Detail: a.Detail, Requirement: a.Requirement, OpenedAt: now, FiredAt: &fired,
			Deadline: now.Add(deadline), AutoClose: a.AutoClose,
		},
		Day:    s.day(now),
		Open:   HistoryEntry{At: now, By: "system", Action: ActionOpen, Note: a.Detail},
		Repeat: HistoryEntry{At: now, By: "system", Action: ActionRepeat, Note: a.Detail},
	}
	t, created, err := s.store.Raise(ctx, in)
	if err != nil {
		return Ticket{}, false, err
	}
	t = s.finish(t, now)
	if created {
		s.log.Info("ticket opened", "ticket", t.Number, "rule", t.Rule, "device_id", t.DeviceID, "severity", t.Severity)
		s.emit(EventOpen, t, now)
	}
	return t, created, nil
}

// Clear records that (rule, deviceID)'s condition cleared at clearedAt
// (device time). A ticket whose rule auto-closes is closed when it is open
// or acknowledged; others only get cleared_at. Without an open ticket it
// does nothing.
func (s *Service) Clear(ctx context.Context, rule, deviceID string, clearedAt time.Time) error {
	now := s.clock()
	if clearedAt.IsZero() {
		clearedAt = now
	}
	closed := false
	t, err := s.store.UpdateOpen(ctx, rule, deviceID, func(t *Ticket) (bool, error) {
		t.ClearedAt = timePtr(clearedAt.Truncate(time.Millisecond))
		if t.AutoClose && (t.Status == StatusOpen || t.Status == StatusAcknowledged) {
			changed, err := apply(t, ActionAutoClose, systemActor, "system", "condition cleared", now)
			closed = changed
			return true, err
		}
		return true, nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clear %s on %s: %w", rule, deviceID, err)
	}
	if closed {
		s.log.Info("ticket auto-closed", "ticket", t.Number, "rule", rule, "device_id", deviceID)
		s.emit(EventClose, s.finish(t, now), now)
	}
	return nil
}

// Transition takes action (ack, rectify, verify or reopen) on ticket id for
// actor, recording by and note in the history (by defaults to the actor's
// name). A wrong transition is a *TransitionError (ErrConflict), a role
// that may not act ErrForbidden.
func (s *Service) Transition(ctx context.Context, id int64, action, by, note string, actor Actor) (Ticket, error) {
	if by == "" {
		by = actor.Name
	}
	if err := checkText("by", by, 100); err != nil {
		return Ticket{}, err
	}
	if actor.Role != roleSystem && strings.EqualFold(strings.TrimSpace(by), systemActor.Name) {
		return Ticket{}, invalid("by", "%q is kept for sanitel's own steps (auto-close, escalation)", by)
	}
	if err := checkText("note", note, 2000); err != nil {
		return Ticket{}, err
	}
	now := s.clock()
	var changed bool
	t, err := s.store.Update(ctx, id, func(t *Ticket) (bool, error) {
		var err error
		changed, err = apply(t, action, actor, by, note, now)
		return changed, err
	})
	if err != nil {
		return Ticket{}, err
	}
	t = s.finish(t, now)
	if changed {
		// by is what the caller wrote; token is who it authenticated as.
		s.log.Info("ticket "+action, "ticket", t.Number, "by", by, "token", actor.Name, "status", t.Status)
		if t.Status == StatusClosed {
			s.emit(EventClose, t, now)
		}
	}
	return t, nil
}

// Create opens a ticket from an inspection (source inspection) for actor,
// who must be a supervisor or admin. Invalid input is a *ValidationError
// naming the field.
func (s *Service) Create(ctx context.Context, m Manual, actor Actor) (Ticket, error) {
	if actor.Role != RoleSupervisor && actor.Role != RoleAdmin {
		return Ticket{}, fmt.Errorf("%w: only a supervisor or admin may create tickets", ErrForbidden)
	}
	now := s.clock()
	m.DeviceID = strings.TrimSpace(m.DeviceID)
	if m.DeviceID != "" {
		if !validDeviceID(m.DeviceID) {
			return Ticket{}, invalid("device_id", "must be 1-64 characters of A-Z a-z 0-9 - _ .")
		}
	}
	var kind string
	if m.DeviceID != "" && s.lookup != nil {
		if d, ok := s.lookup(m.DeviceID); ok {
			kind = d.Kind
			fill(&m.Site, d.Site)
			fill(&m.Street, d.Street)
			fill(&m.Village, d.Village)
			fill(&m.OrgUnit, d.OrgUnit)
		}
	}
	for _, f := range []struct {
		name, val string
		required  bool
		max       int
	}{
		{"site", m.Site, false, 200},
		{"street", m.Street, true, 200},
		{"village", m.Village, false, 200},
		{"org_unit", m.OrgUnit, true, 200},
		{"title", m.Title, true, 200},
		{"detail", m.Detail, false, 4000},
		{"requirement", m.Requirement, true, 4000},
	} {
		if f.required && strings.TrimSpace(f.val) == "" {
			return Ticket{}, invalid(f.name, "required")
		}
		if err := checkText(f.name, f.val, f.max); err != nil {
			return Ticket{}, err
		}
	}
	if m.Severity == "" {
		return Ticket{}, invalid("severity", "required")
	}
	if !Severity(m.Severity).Valid() {
		return Ticket{}, invalid("severity", "must be warning or critical, got %q", m.Severity)
	}
	if m.Deadline.IsZero() {
		return Ticket{}, invalid("deadline", "required")
	}
	if !m.Deadline.After(now) {
		return Ticket{}, invalid("deadline", "must be in the future")
	}
	t := Ticket{
		Source: SourceInspection, Severity: Severity(m.Severity), Status: StatusOpen,
		DeviceID: m.DeviceID, Kind: kind, Site: strings.TrimSpace(m.Site), Street: strings.TrimSpace(m.Street),
		Village: strings.TrimSpace(m.Village), OrgUnit: strings.TrimSpace(m.OrgUnit),
		Title: strings.TrimSpace(m.Title), Detail: m.Detail, Requirement: m.Requirement,
		OpenedAt: now, Deadline: m.Deadline.UTC().Truncate(time.Millisecond), Occurrences: 1,
		History: []HistoryEntry{{At: now, By: actor.Name, Action: ActionOpen, Note: "inspection"}},
	}
	t, err := s.store.Insert(ctx, t, s.day(now))
	if err != nil {
		return Ticket{}, err
	}
	t = s.finish(t, now)
	s.log.Info("ticket opened", "ticket", t.Number, "source", t.Source, "by", actor.Name)
	s.emit(EventOpen, t, now)
	return t, nil
}

func fill(dst *string, v string) {
	if strings.TrimSpace(*dst) == "" {
		*dst = v
	}
}

func checkText(field, s string, maxRunes int) error {
	if !utf8.ValidString(s) {
		return invalid(field, "not valid UTF-8")
	}
	if utf8.RuneCountInString(s) > maxRunes {
		return invalid(field, "longer than %d characters", maxRunes)
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\t' && r != '\r' || r == 0x7f {
			return invalid(field, "contains control characters")
		}
	}
	return nil
}

func validDeviceID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// Get returns ticket id with its history, or ErrNotFound.
func (s *Service) Get(ctx context.Context, id int64) (Ticket, error) {
	t, err := s.store.Get(ctx, id)
	if err != nil {
		return Ticket{}, err
	}
	return s.finish(t, s.clock()), nil
}

// List returns a page of tickets matching f, newest first (without
// history), the number of all matches, and the cursor of the next page
// ("" on the last).
func (s *Service) List(ctx context.Context, f Filter) (items []Ticket, total int, next string, err error) {
	if err := f.Validate(); err != nil {
		return nil, 0, "", err
	}
	now := s.clock()
	items, total, next, err = s.store.List(ctx, f, now)
	if err != nil {
		return nil, 0, "", err
	}
	for i := range items {
		items[i] = s.finish(items[i], now)
	}
	return items, total, next, nil
}

// MaxFilterValues bounds the values of one filter: each is an SQL
// parameter, and a few thousand of them cost seconds.
const MaxFilterValues = 100

// Validate checks the values of f; errors are *ValidationError.
func (f Filter) Validate() error {
	for _, c := range []struct {
		name string
		vs   []string
	}{
		{"status", f.Status}, {"street", f.Street}, {"village", f.Village}, {"org_unit", f.OrgUnit},
		{"rule", f.Rule}, {"severity", f.Severity}, {"device_id", f.DeviceID}, {"source", f.Source},
	} {
		if len(c.vs) > MaxFilterValues {
			return invalid(c.name, "at most %d values, got %d", MaxFilterValues, len(c.vs))
		}
	}
	for _, v := range f.Status {
		if !Status(v).Valid() {
			return invalid("status", "unknown status %q", v)
		}
	}
	for _, v := range f.Severity {
		if !Severity(v).Valid() {
			return invalid("severity", "unknown severity %q", v)
		}
	}
	for _, v := range f.Source {
		if !Source(v).Valid() {
			return invalid("source", "unknown source %q", v)
		}
	}
	if f.Limit < 0 || f.Limit > MaxLimit {
		return invalid("limit", "must be 1..%d", MaxLimit)
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return invalid("to", "must be after from")
	}
	if f.Cursor != "" {
		if _, err := decodeCursor(f.Cursor); err != nil {
			return err
		}
	}
	return nil
}

// Ping checks that the ticket store answers; use it as a readiness check.
func (s *Service) Ping(ctx context.Context) error { return s.store.Ping(ctx) }

// OpenByDevice counts the not-closed tickets of each device.
func (s *Service) OpenByDevice(ctx context.Context) (map[string]int, error) {
	return s.store.OpenByDevice(ctx)
}

// DefaultDeadline is the rectification period of an alert that names none.
const DefaultDeadline = 24 * time.Hour

// minEscalationPeriod bounds how often an overdue ticket escalates.
const minEscalationPeriod = time.Hour

// escalationLevel is the level a ticket should have at now: 1 once past
// its deadline, one more each deadline period after that.
func escalationLevel(t *Ticket, now time.Time) int {
	if !now.After(t.Deadline) {
		return 0
	}
	period := max(t.Deadline.Sub(t.OpenedAt), minEscalationPeriod)
	return 1 + int(now.Sub(t.Deadline)/period)
}

// Escalate raises the escalation level of every overdue ticket that is
// due for it, recording and notifying each, and returns how many it raised.
func (s *Service) Escalate(ctx context.Context) (int, error) {
	now := s.clock()
	due, err := s.store.Due(ctx, now)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range due {
		if escalationLevel(&d, now) <= d.EscalationLevel {
			continue
		}
		var changed bool
		t, err := s.store.Update(ctx, d.ID, func(t *Ticket) (bool, error) {
			// Re-checked inside the transaction: the ticket may have been
			// rectified since it was listed.
			changed = false
			if t.Status != StatusOpen && t.Status != StatusAcknowledged {
				return false, nil
			}
			level := escalationLevel(t, now)
			if level <= t.EscalationLevel {
				return false, nil
			}
			t.EscalationLevel = level
			t.History = append(t.History, HistoryEntry{At: now, By: "system", Action: ActionEscalate,
				Note: fmt.Sprintf("overdue, level %d", level)})
			changed = true
			return true, nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return n, err
			}
			s.log.Error("escalate ticket", "id", d.ID, "err", err)
			continue
		}
		if changed {
			n++
			t = s.finish(t, now)
			s.log.Warn("ticket escalated", "ticket", t.Number, "level", t.EscalationLevel, "org_unit", t.OrgUnit)
			s.emit(EventEscalate, t, now)
		}
	}
	return n, nil
}

// RunEscalation escalates now and then every period until ctx is done.
// The caller owns it: run it in a goroutine and wait for it to return.
func (s *Service) RunEscalation(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Minute
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if _, err := s.Escalate(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("escalate tickets", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
