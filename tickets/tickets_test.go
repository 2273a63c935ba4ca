package tickets

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// recorder is a Notifier that keeps the events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Notify(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Event+":"+e.Ticket.Number)
	}
	return out
}

type fixture struct {
	svc   *Service
	store *SQLStore
	clock *testClock
	rec   *recorder
	reg   *prometheus.Registry
	dsn   string
}

var (
	t0         = time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC) // 10:00 in Shanghai
	supervisor = Actor{Name: "office", Role: RoleSupervisor}
	admin      = Actor{Name: "ops", Role: RoleAdmin}
	roadsUnit  = Actor{Name: "roads-unit", Role: RoleUnit, OrgUnit: "区环卫所"}
	otherUnit  = Actor{Name: "parks-unit", Role: RoleUnit, OrgUnit: "园林所"}
	viewer     = Actor{Name: "depot-screen", Role: RoleViewer}
)

// fixtureDSN gives each fixture an empty database: a SQLite file, or in
// TestPostgres a PostgreSQL database.
var fixtureDSN = func(t *testing.T) string { return filepath.Join(t.TempDir(), "tickets.db") }

// open opens another store on the fixture's database, as a second sanitel
// process would; it is closed when the test ends.
func (f *fixture) open(t *testing.T) *SQLStore {
	t.Helper()
	var st *SQLStore
	var err error
	if IsPostgres(f.dsn) {
		st, err = OpenPostgres(context.Background(), f.dsn)
	} else {
		st, err = OpenSQLite(context.Background(), f.dsn)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newFixture(t *testing.T, mod ...func(*Options)) *fixture {
	t.Helper()
	f := &fixture{clock: &testClock{t: t0}, rec: &recorder{}, reg: prometheus.NewRegistry()}
	f.dsn = fixtureDSN(t)
	f.store = f.open(t)
	opts := Options{Store: f.store, Now: f.clock.Now, Notifier: f.rec, Registerer: f.reg}
	for _, m := range mod {
		m(&opts)
	}
	var err error
	f.svc, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func binFull(device string, fired time.Time) Alert {
	return Alert{
		Rule: "bin_full", Severity: "warning", DeviceID: device, Kind: "bin", Site: "人民路12号",
		Street: "城关街道", Village: "", OrgUnit: "区环卫所", Title: "垃圾桶满溢",
		Detail: "fill_pct 82 ≥ 80", Requirement: "2小时内清运", Deadline: 2 * time.Hour,
		FiredAt: fired, AutoClose: true,
	}
}

func (f *fixture) raise(t *testing.T, a Alert) Ticket {
	t.Helper()
	tk, _, err := f.svc.Raise(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func (f *fixture) do(t *testing.T, id int64, action string, actor Actor) Ticket {
	t.Helper()
	tk, err := f.svc.Transition(context.Background(), id, action, "", "", actor)
	if err != nil {
		t.Fatalf("%s: %v", action, err)
	}
	return tk
}

func actions(tk Ticket) []string {
	var out []string
	for _, h := range tk.History {
		out = append(out, h.Action)
	}
	return out
}

func manual(deadline time.Time) Manual {
	return Manual{
		Street: "城关街道", OrgUnit: "区环卫所", Title: "公厕地面积水", Detail: "巡查发现",
		Requirement: "当日整改", Severity: "warning", Deadline: deadline,
	}
}

func TestNumberingPerDayInShanghai(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	steps := []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 11, 28, 15, 59, 59, 0, time.UTC), "DB-20261128-0001"}, // 23:59:59 in Shanghai
		{time.Date(2026, 11, 28, 16, 0, 0, 0, time.UTC), "DB-20261129-0001"},   // midnight there
		{time.Date(2026, 11, 28, 17, 0, 0, 0, time.UTC), "DB-20261129-0002"},
	}
	for i, s := range steps {
		f.clock.Set(s.at)
		tk := f.raise(t, binFull(fmt.Sprintf("bin-%d", i), s.at))
		if tk.Number != s.want {
			t.Errorf("ticket opened at %s: number %s, want %s", s.at, tk.Number, s.want)
		}
	}
	// Manual tickets share the day's sequence.
	m, err := f.svc.Create(ctx, manual(steps[2].at.Add(24*time.Hour)), supervisor)
	if err != nil {
		t.Fatal(err)
	}
	if m.Number != "DB-20261129-0003" {
		t.Errorf("manual number %s, want DB-20261129-0003", m.Number)
	}
}

func TestRaiseRepeatAndReplay(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	fired1 := t0.Add(-time.Minute)
	a := binFull("bin-0001", fired1)
	tk, created, err := f.svc.Raise(ctx, a)
	if err != nil || !created {
		t.Fatalf("first raise: created %v, err %v", created, err)
	}
	if tk.Status != StatusOpen || tk.Source != SourceAlert || tk.Occurrences != 1 ||
		!tk.OpenedAt.Equal(t0) || !tk.Deadline.Equal(t0.Add(2*time.Hour)) ||
		tk.FiredAt == nil || !tk.FiredAt.Equal(fired1) || !tk.AutoClose || tk.Severity != SeverityWarning {
		t.Fatalf("new ticket: %+v", tk)
	}
	if got := actions(tk); !slices.Equal(got, []string{"open"}) || tk.History[0].By != "system" {
		t.Fatalf("history %v", tk.History)
	}

	// A repeat, now critical.
	f.clock.Add(10 * time.Minute)
	fired2 := fired1.Add(10 * time.Minute)
	a2 := a
	a2.FiredAt, a2.Severity, a2.Detail = fired2, "critical", "fill_pct 93 ≥ 90"
	tk2, created, err := f.svc.Raise(ctx, a2)
	if err != nil || created {
		t.Fatalf("repeat: created %v, err %v", created, err)
	}
	if tk2.ID != tk.ID || tk2.Occurrences != 2 || tk2.Severity != SeverityCritical || tk2.Detail != a2.Detail {
		t.Fatalf("after repeat: %+v", tk2)
	}
	if !tk2.OpenedAt.Equal(t0) || !tk2.FiredAt.Equal(fired1) {
		t.Errorf("repeat moved opened_at/fired_at: %v %v", tk2.OpenedAt, tk2.FiredAt)
	}
	last := tk2.History[len(tk2.History)-1]
	if last.Action != "repeat" || last.Note != a2.Detail {
		t.Errorf("repeat history %+v", last)
	}

	// A warning repeat does not lower the severity.
	f.clock.Add(time.Minute)
	a3 := a
	a3.FiredAt = fired2.Add(time.Minute)
	tk3 := f.raise(t, a3)
	if tk3.Severity != SeverityCritical || tk3.Occurrences != 3 {
		t.Errorf("warning repeat: severity %s occurrences %d", tk3.Severity, tk3.Occurrences)
	}

	// Replays of firings already handled change nothing.
	for _, replay := range []Alert{a, a2, a3} {
		got, created, err := f.svc.Raise(ctx, replay)
		if err != nil || created {
			t.Fatalf("replay: created %v err %v", created, err)
		}
		if got.ID != tk.ID || got.Occurrences != 3 || len(got.History) != 3 {
			t.Errorf("replay changed the ticket: occurrences %d, history %v", got.Occurrences, actions(got))
		}
	}

	// Closed, the ticket still swallows replays; a new firing opens a new one.
	f.do(t, tk.ID, ActionRectify, supervisor)
	f.do(t, tk.ID, ActionVerify, supervisor)
	if got, created, err := f.svc.Raise(ctx, a3); err != nil || created || got.ID != tk.ID {
		t.Errorf("replay after close: id %d created %v err %v", got.ID, created, err)
	}
	a4 := a
	a4.FiredAt = fired2.Add(time.Hour)
	tk4, created, err := f.svc.Raise(ctx, a4)
	if err != nil || !created || tk4.ID == tk.ID || tk4.Number != "DB-20261128-0002" {
		t.Errorf("raise after close: %+v created %v err %v", tk4, created, err)
	}
	if got := f.rec.names(); !slices.Equal(got, []string{"open:DB-20261128-0001", "close:DB-20261128-0001", "open:DB-20261128-0002"}) {
		t.Errorf("events %v", got)
	}
}

func TestConcurrentRaiseMakesOneTicket(t *testing.T) {
	f := newFixture(t)
	const n = 50
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[int64]bool{}
		created int
		errs    []error
	)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tk, c, err := f.svc.Raise(context.Background(), binFull("bin-0001", t0.Add(time.Duration(i)*time.Second)))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ids[tk.ID] = true
			if c {
				created++
			}
		}()
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d raises failed, first: %v", len(errs), errs[0])
	}
	if len(ids) != 1 || created != 1 {
		t.Fatalf("ids %v, created %d; want one ticket created once", ids, created)
	}
	items, total, _, err := f.svc.List(context.Background(), Filter{DeviceID: []string{"bin-0001"}})
	if err != nil {
		t.Fatal(err)
	}
	if total != 1 || items[0].Occurrences != n {
		t.Fatalf("total %d, occurrences %d; want 1 ticket with %d", total, items[0].Occurrences, n)
	}
	tk, err := f.svc.Get(context.Background(), items[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(tk.History) != n {
		t.Errorf("history has %d entries, want %d", len(tk.History), n)
	}
}

// Two stores on one database stand for two sanitel processes: they do not
// share the in-process write queue, so only the database's locking and the
// unique index keep the ticket single.
func TestConcurrentRaiseFromTwoProcesses(t *testing.T) {
	f := newFixture(t)
	svc2, err := New(Options{Store: f.open(t), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		svc := f.svc
		if i%2 == 1 {
			svc = svc2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := svc.Raise(context.Background(), binFull("bin-0001", t0.Add(time.Duration(i)*time.Second))); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	items, total, _, err := f.svc.List(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if total != 1 || items[0].Occurrences != 20 {
		t.Fatalf("total %d, occurrences %d; want one ticket with 20", total, items[0].Occurrences)
	}
}

func TestDatabaseEnforcesOneOpenAlertTicket(t *testing.T) {
	f := newFixture(t)
	tk := f.raise(t, binFull("bin-0001", t0))
	_, err := f.store.DB().Exec(`INSERT INTO tickets (day, seq, number, source, rule, severity, status,
		device_id, opened_at, deadline) VALUES ('20261128', 99, 'DB-20261128-0099', 'alert', 'bin_full',
		'warning', 'acknowledged', 'bin-0001', 0, 0)`)
	if err == nil || !strings.Contains(strings.ToUpper(err.Error()), "UNIQUE") {
		t.Fatalf("second open ticket for (bin-0001, bin_full) inserted, err %v", err)
	}
	// An inspection ticket and a closed one are not limited.
	for _, q := range []string{
		`INSERT INTO tickets (day, seq, number, source, rule, severity, status, device_id, opened_at, deadline)
			VALUES ('20261128', 98, 'x1', 'inspection', 'bin_full', 'warning', 'open', 'bin-0001', 0, 0)`,
		`INSERT INTO tickets (day, seq, number, source, rule, severity, status, device_id, opened_at, deadline)
			VALUES ('20261128', 97, 'x2', 'alert', 'bin_full', 'warning', 'closed', 'bin-0001', 0, 0)`,
	} {
		if _, err := f.store.DB().Exec(q); err != nil {
			t.Errorf("%v", err)
		}
	}
	_ = tk
}

func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	a := binFull("bin-0001", t0)
	a.AutoClose = false
	tk := f.raise(t, a)

	f.clock.Add(5 * time.Minute)
	tk, err := f.svc.Transition(context.Background(), tk.ID, ActionAck, "李师傅", "已派车", roadsUnit)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Status != StatusAcknowledged || !tk.AcknowledgedAt.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("after ack: %s %v", tk.Status, tk.AcknowledgedAt)
	}
	f.clock.Add(30 * time.Minute)
	tk = f.do(t, tk.ID, ActionRectify, roadsUnit)
	if tk.Status != StatusRectified || !tk.RectifiedAt.Equal(t0.Add(35*time.Minute)) {
		t.Fatalf("after rectify: %s %v", tk.Status, tk.RectifiedAt)
	}
	f.clock.Add(time.Hour)
	tk = f.do(t, tk.ID, ActionVerify, supervisor)
	if tk.Status != StatusClosed || !tk.ClosedAt.Equal(t0.Add(95*time.Minute)) {
		t.Fatalf("after verify: %s %v", tk.Status, tk.ClosedAt)
	}
	// Closing twice is not an error and adds nothing.
	tk = f.do(t, tk.ID, ActionVerify, admin)
	got, err := f.svc.Get(context.Background(), tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"open", "ack", "rectify", "verify"}; !slices.Equal(actions(got), want) {
		t.Fatalf("history %v, want %v", actions(got), want)
	}
	ack := got.History[1]
	if ack.By != "李师傅" || ack.Note != "已派车" || !ack.At.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("ack entry %+v", ack)
	}
	if got.History[2].By != "roads-unit" {
		t.Errorf("by defaults to the actor: %+v", got.History[2])
	}
	if ev := f.rec.names(); !slices.Equal(ev, []string{"open:" + tk.Number, "close:" + tk.Number}) {
		t.Errorf("events %v", ev)
	}
	// JSON shape: UTC times, nulls, history.
	b, _ := json.Marshal(got)
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"id", "number", "source", "rule", "severity", "status", "device_id", "kind", "site",
		"street", "village", "org_unit", "title", "detail", "requirement", "opened_at", "fired_at", "deadline",
		"acknowledged_at", "rectified_at", "closed_at", "cleared_at", "occurrences", "escalation_level",
		"overdue", "auto_close", "history"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if m["cleared_at"] != nil || m["opened_at"] != "2026-11-28T02:00:00Z" {
		t.Errorf("JSON times: cleared_at %v opened_at %v", m["cleared_at"], m["opened_at"])
	}
}

// ticketIn brings a fresh alert ticket to status st.
func (f *fixture) ticketIn(t *testing.T, device string, st Status) Ticket {
	t.Helper()
	a := binFull(device, f.clock.Now())
	a.AutoClose = false
	tk := f.raise(t, a)
	switch st {
	case StatusAcknowledged:
		tk = f.do(t, tk.ID, ActionAck, supervisor)
	case StatusRectified:
		tk = f.do(t, tk.ID, ActionRectify, supervisor)
	case StatusClosed:
		f.do(t, tk.ID, ActionRectify, supervisor)
		tk = f.do(t, tk.ID, ActionVerify, supervisor)
	}
	return tk
}

func TestWrongTransitions(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		from   Status
		action string
		reason string
	}{
		{StatusRectified, ActionAck, "cannot ack a ticket that is rectified (it is waiting for verification)"},
		{StatusClosed, ActionAck, "cannot ack a ticket that is closed"},
		{StatusClosed, ActionRectify, "cannot rectify a ticket that is closed"},
		{StatusOpen, ActionVerify, "cannot verify a ticket that is open (it must be rectified first)"},
		{StatusAcknowledged, ActionVerify, "cannot verify a ticket that is acknowledged (it must be rectified first)"},
		{StatusOpen, ActionReopen, "cannot reopen a ticket that is open (only a rectified ticket can be reopened)"},
		{StatusAcknowledged, ActionReopen, "cannot reopen a ticket that is acknowledged (only a rectified ticket can be reopened)"},
		{StatusClosed, ActionReopen, "cannot reopen a ticket that is closed (only a rectified ticket can be reopened)"},
	}
	for i, c := range cases {
		t.Run(c.action+"_from_"+string(c.from), func(t *testing.T) {
			tk := f.ticketIn(t, fmt.Sprintf("bin-%d", i), c.from)
			_, err := f.svc.Transition(context.Background(), tk.ID, c.action, "", "", supervisor)
			var te *TransitionError
			if !errors.Is(err, ErrConflict) || !errors.As(err, &te) {
				t.Fatalf("err %v, want a TransitionError", err)
			}
			if te.Reason != c.reason || err.Error() != c.reason {
				t.Errorf("reason %q, want %q", te.Reason, c.reason)
			}
			got, _ := f.svc.Get(context.Background(), tk.ID)
			if got.Status != c.from || len(got.History) != len(tk.History) {
				t.Errorf("a refused transition changed the ticket: %s %v", got.Status, actions(got))
			}
		})
	}
	if _, err := f.svc.Transition(context.Background(), 1, "close", "", "", supervisor); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown action: %v", err)
	}
	if _, err := f.svc.Transition(context.Background(), 9999, ActionAck, "", "", supervisor); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown ticket: %v", err)
	}
	// "system" signs sanitel's own steps only.
	tk := f.ticketIn(t, "bin-system", StatusOpen)
	if _, err := f.svc.Transition(context.Background(), tk.ID, ActionAck, " System ", "", supervisor); !errors.Is(err, ErrInvalid) {
		t.Errorf("by system from a person: %v, want invalid", err)
	}
}

func TestRepeatedTransitionIsNoOp(t *testing.T) {
	f := newFixture(t)
	for i, c := range []struct {
		from   Status
		action string
	}{
		{StatusAcknowledged, ActionAck},
		{StatusRectified, ActionRectify},
		{StatusClosed, ActionVerify},
	} {
		tk := f.ticketIn(t, fmt.Sprintf("bin-%d", i), c.from)
		got, err := f.svc.Transition(context.Background(), tk.ID, c.action, "", "", supervisor)
		if err != nil || got.Status != c.from || len(got.History) != len(tk.History) {
			t.Errorf("%s on %s: err %v, status %s, history %v", c.action, c.from, err, got.Status, actions(got))
		}
	}
}

func TestRectifyFromOpenAndReopen(t *testing.T) {
	f := newFixture(t)
	tk := f.ticketIn(t, "bin-1", StatusOpen)
	f.clock.Add(time.Minute)
	tk = f.do(t, tk.ID, ActionRectify, roadsUnit)
	if tk.AcknowledgedAt == nil || !tk.AcknowledgedAt.Equal(*tk.RectifiedAt) {
		t.Fatalf("rectify from open must set acknowledged_at: %v %v", tk.AcknowledgedAt, tk.RectifiedAt)
	}
	f.clock.Add(time.Minute)
	tk, err := f.svc.Transition(context.Background(), tk.ID, ActionReopen, "王科长", "现场仍有异味", supervisor)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Status != StatusOpen || tk.RectifiedAt != nil || tk.AcknowledgedAt == nil {
		t.Fatalf("after reopen: %s rectified_at %v", tk.Status, tk.RectifiedAt)
	}
	if want := []string{"open", "rectify", "reopen"}; !slices.Equal(actions(tk), want) {
		t.Fatalf("history %v", actions(tk))
	}
	// Reopening again is a no-op; the work goes on from open.
	tk = f.do(t, tk.ID, ActionReopen, supervisor)
	if len(tk.History) != 3 {
		t.Errorf("second reopen added history: %v", actions(tk))
	}
	f.clock.Add(time.Minute)
	tk = f.do(t, tk.ID, ActionRectify, roadsUnit)
	tk = f.do(t, tk.ID, ActionVerify, supervisor)
	if tk.Status != StatusClosed || tk.RectifiedAt == nil {
		t.Errorf("rectify and verify after reopen: %s", tk.Status)
	}
}

func TestRoles(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tk := f.ticketIn(t, "bin-1", StatusOpen) // org_unit 区环卫所
	for _, c := range []struct {
		name   string
		actor  Actor
		action string
	}{
		{"viewer ack", viewer, ActionAck},
		{"other unit ack", otherUnit, ActionAck},
		{"other unit rectify", otherUnit, ActionRectify},
		{"unit verify", roadsUnit, ActionVerify},
		{"unit reopen", roadsUnit, ActionReopen},
		{"unit without org_unit", Actor{Name: "x", Role: RoleUnit}, ActionAck},
		{"unknown role", Actor{Name: "x", Role: "root"}, ActionAck},
	} {
		if _, err := f.svc.Transition(ctx, tk.ID, c.action, "", "", c.actor); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: err %v, want ErrForbidden", c.name, err)
		}
	}
	f.do(t, tk.ID, ActionAck, roadsUnit)
	for _, a := range []Actor{viewer, roadsUnit} {
		if _, err := f.svc.Create(ctx, manual(t0.Add(time.Hour)), a); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s creates: err %v, want ErrForbidden", a.Role, err)
		}
	}
}

func TestClear(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	auto := f.raise(t, binFull("bin-auto", t0))
	a := binFull("bin-manual", t0)
	a.Rule, a.AutoClose = "bin_fire", false
	keep := f.raise(t, a)

	f.clock.Add(40 * time.Minute)
	cleared := t0.Add(39 * time.Minute)
	if err := f.svc.Clear(ctx, "bin_full", "bin-auto", cleared); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Clear(ctx, "bin_fire", "bin-manual", cleared); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Clear(ctx, "bin_full", "no-such-bin", cleared); err != nil {
		t.Errorf("clear without a ticket: %v", err)
	}

	got, _ := f.svc.Get(ctx, auto.ID)
	last := got.History[len(got.History)-1]
	if got.Status != StatusClosed || !got.ClosedAt.Equal(t0.Add(40*time.Minute)) || !got.ClearedAt.Equal(cleared) ||
		last.Action != "auto_close" || last.Note != "condition cleared" || last.By != "system" {
		t.Errorf("auto-close: status %s closed_at %v cleared_at %v last %+v", got.Status, got.ClosedAt, got.ClearedAt, last)
	}
	got, _ = f.svc.Get(ctx, keep.ID)
	if got.Status != StatusOpen || got.ClosedAt != nil || !got.ClearedAt.Equal(cleared) || len(got.History) != 1 {
		t.Errorf("no auto-close: status %s cleared_at %v history %v", got.Status, got.ClearedAt, actions(got))
	}
	if ev := f.rec.names(); !slices.Contains(ev, "close:"+auto.Number) || slices.Contains(ev, "close:"+keep.Number) {
		t.Errorf("events %v", ev)
	}

	// Firing again while still open is a repeat, and no longer cleared.
	f.clock.Add(time.Minute)
	a.FiredAt = t0.Add(41 * time.Minute)
	again := f.raise(t, a)
	if again.ID != keep.ID || again.ClearedAt != nil || again.Occurrences != 2 {
		t.Errorf("repeat after clear: id %d cleared_at %v occurrences %d", again.ID, again.ClearedAt, again.Occurrences)
	}

	// A rectified ticket waits for verification even when its rule auto-closes.
	r := f.raise(t, binFull("bin-rect", f.clock.Now()))
	f.do(t, r.ID, ActionRectify, roadsUnit)
	if err := f.svc.Clear(ctx, "bin_full", "bin-rect", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.svc.Get(ctx, r.ID); got.Status != StatusRectified || got.ClearedAt == nil {
		t.Errorf("rectified ticket on clear: %s %v", got.Status, got.ClearedAt)
	}
}

func TestEscalation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := binFull("bin-1", t0)
	a.Deadline = 4 * time.Hour
	tk := f.raise(t, a)
	short := binFull("bin-2", t0)
	short.Deadline = 10 * time.Minute // escalates at most hourly
	tkShort := f.raise(t, short)
	done := f.ticketIn(t, "bin-3", StatusRectified)

	steps := []struct {
		after           time.Duration
		n               int
		level, levelShr int
	}{
		{3 * time.Hour, 1, 0, 3},               // short: 1 + floor(2h50m / 1h)
		{4 * time.Hour, 1, 0, 4},               // the 4h one exactly at its deadline: not yet
		{4*time.Hour + time.Minute, 1, 1, 4},   // now it is
		{4*time.Hour + 2*time.Minute, 0, 1, 4}, // nothing new
		{8*time.Hour + time.Minute, 2, 2, 8},   // one more deadline period
		{20 * time.Hour, 2, 5, 20},             // 1 + floor(16h / 4h)
	}
	for _, s := range steps {
		f.clock.Set(t0.Add(s.after))
		n, err := f.svc.Escalate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := f.svc.Get(ctx, tk.ID)
		gotShort, _ := f.svc.Get(ctx, tkShort.ID)
		if n != s.n || got.EscalationLevel != s.level || gotShort.EscalationLevel != s.levelShr {
			t.Errorf("at +%s: escalated %d, levels %d/%d; want %d, %d/%d",
				s.after, n, got.EscalationLevel, gotShort.EscalationLevel, s.n, s.level, s.levelShr)
		}
	}
	got, _ := f.svc.Get(ctx, tk.ID)
	var notes []string
	for _, h := range got.History {
		if h.Action == "escalate" {
			notes = append(notes, h.Note)
		}
	}
	if want := []string{"overdue, level 1", "overdue, level 2", "overdue, level 5"}; !slices.Equal(notes, want) {
		t.Errorf("escalation notes %v, want %v", notes, want)
	}
	if !got.Overdue {
		t.Error("ticket past its deadline is not overdue")
	}
	if d, _ := f.svc.Get(ctx, done.ID); d.EscalationLevel != 0 || d.Overdue {
		t.Errorf("rectified ticket escalated: level %d overdue %v", d.EscalationLevel, d.Overdue)
	}
	count := 0
	for _, e := range f.rec.names() {
		if e == "escalate:"+tk.Number {
			count++
		}
	}
	if count != 3 {
		t.Errorf("%d escalate events for the 4h ticket, want 3", count)
	}
}

func TestCreateValidation(t *testing.T) {
	lookup := func(id string) (DeviceInfo, bool) {
		if id == "toilet-0007" {
			return DeviceInfo{Kind: "toilet", Site: "西门公厕", Street: "西城街道", Village: "", OrgUnit: "区环卫所"}, true
		}
		return DeviceInfo{}, false
	}
	f := newFixture(t, func(o *Options) { o.DeviceLookup = lookup })
	ctx := context.Background()
	future := t0.Add(24 * time.Hour)
	cases := []struct {
		name  string
		mod   func(*Manual)
		field string
	}{
		{"no street", func(m *Manual) { m.Street = " " }, "street"},
		{"no org_unit", func(m *Manual) { m.OrgUnit = "" }, "org_unit"},
		{"no title", func(m *Manual) { m.Title = "" }, "title"},
		{"no requirement", func(m *Manual) { m.Requirement = "" }, "requirement"},
		{"no severity", func(m *Manual) { m.Severity = "" }, "severity"},
		{"bad severity", func(m *Manual) { m.Severity = "urgent" }, "severity"},
		{"no deadline", func(m *Manual) { m.Deadline = time.Time{} }, "deadline"},
		{"past deadline", func(m *Manual) { m.Deadline = t0.Add(-time.Minute) }, "deadline"},
		{"deadline now", func(m *Manual) { m.Deadline = t0 }, "deadline"},
		{"bad device id", func(m *Manual) { m.DeviceID = "bin/1" }, "device_id"},
		{"long title", func(m *Manual) { m.Title = strings.Repeat("长", 201) }, "title"},
		{"control chars", func(m *Manual) { m.Site = "a\x00b" }, "site"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := manual(future)
			c.mod(&m)
			_, err := f.svc.Create(ctx, m, supervisor)
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) || ve.Field != c.field {
				t.Fatalf("err %v, want a ValidationError on %s", err, c.field)
			}
		})
	}
	tk, err := f.svc.Create(ctx, Manual{DeviceID: "toilet-0007", Title: "洗手池损坏", Requirement: "三日内修复",
		Severity: "warning", Deadline: future.In(DefaultLocation())}, supervisor)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Source != SourceInspection || tk.FiredAt != nil || tk.Rule != "" || tk.Kind != "toilet" ||
		tk.Site != "西门公厕" || tk.Street != "西城街道" || tk.OrgUnit != "区环卫所" || !tk.Deadline.Equal(future) ||
		tk.Occurrences != 1 || tk.Status != StatusOpen {
		t.Errorf("manual ticket from a known device: %+v", tk)
	}
	if len(tk.History) != 1 || tk.History[0].Action != "open" || tk.History[0].By != "office" {
		t.Errorf("history %+v", tk.History)
	}
	// An unknown device is fine; the place must then be given.
	m := manual(future)
	m.DeviceID = "bin-9999"
	if _, err := f.svc.Create(ctx, m, admin); err != nil {
		t.Errorf("unknown device: %v", err)
	}
}

func TestListFiltersAndPaging(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// Seven tickets, one per hour; every other one on 东湖街道 for 园林所.
	var ids []int64
	for i := range 7 {
		f.clock.Set(t0.Add(time.Duration(i) * time.Hour))
		a := binFull(fmt.Sprintf("bin-%d", i), f.clock.Now())
		a.Deadline = 90 * time.Minute
		if i%2 == 1 {
			a.Street, a.OrgUnit = "东湖街道", "园林所"
		}
		tk := f.raise(t, a)
		ids = append(ids, tk.ID)
	}
	f.clock.Set(t0.Add(6*time.Hour + 30*time.Minute))
	f.do(t, ids[0], ActionRectify, supervisor)
	f.do(t, ids[1], ActionAck, supervisor)
	m, err := f.svc.Create(ctx, manual(f.clock.Now().Add(time.Hour)), supervisor)
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	shanghai := DefaultLocation()
	cases := []struct {
		name string
		f    Filter
		want []int64
	}{
		{"all, newest first", Filter{}, []int64{m.ID, ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{"status", Filter{Status: []string{"acknowledged", "rectified"}}, []int64{ids[1], ids[0]}},
		{"street", Filter{Street: []string{"东湖街道"}}, []int64{ids[5], ids[3], ids[1]}},
		{"org_unit and status", Filter{OrgUnit: []string{"区环卫所"}, Status: []string{"open"}}, []int64{m.ID, ids[6], ids[4], ids[2]}},
		// Deadlines are opened_at + 90 min; now is t0 + 6h30m.
		{"overdue", Filter{Overdue: &yes}, []int64{ids[4], ids[3], ids[2], ids[1]}},
		{"not overdue", Filter{Overdue: &no}, []int64{m.ID, ids[6], ids[5], ids[0]}},
		{"source", Filter{Source: []string{"inspection"}}, []int64{m.ID}},
		{"rule and device", Filter{Rule: []string{"bin_full"}, DeviceID: []string{"bin-3"}}, []int64{ids[3]}},
		{"from to", Filter{From: t0.Add(2 * time.Hour), To: t0.Add(4 * time.Hour)}, []int64{ids[3], ids[2]}},
		{"to in Shanghai", Filter{To: time.Date(2026, 11, 28, 12, 0, 0, 0, shanghai)}, []int64{ids[1], ids[0]}},
		{"severity", Filter{Severity: []string{"critical"}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			items, total, next, err := f.svc.List(ctx, c.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, it := range items {
				got = append(got, it.ID)
				if it.History != nil {
					t.Errorf("list item %d has history", it.ID)
				}
			}
			if !slices.Equal(got, c.want) || total != len(c.want) || next != "" {
				t.Errorf("got %v total %d next %q, want %v", got, total, next, c.want)
			}
		})
	}

	// Paging three at a time walks all eight, each once.
	var walked []int64
	cursor := ""
	for page := 0; ; page++ {
		items, total, next, err := f.svc.List(ctx, Filter{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		if total != 8 {
			t.Fatalf("page %d total %d", page, total)
		}
		for _, it := range items {
			walked = append(walked, it.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if !slices.Equal(walked, cases[0].want) {
		t.Errorf("paged %v, want %v", walked, cases[0].want)
	}
	for _, bad := range []Filter{
		{Cursor: "nonsense"}, {Status: []string{"done"}}, {Limit: 1001}, {Source: []string{"x"}},
		{From: t0, To: t0},
	} {
		if _, _, _, err := f.svc.List(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("filter %+v: err %v, want ErrInvalid", bad, err)
		}
	}
}

func TestRanking(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sh := DefaultLocation()
	at := func(day, hour int) time.Time { return time.Date(2026, 11, day, hour, 0, 0, 0, sh) }
	type step struct {
		after  time.Duration
		action string
	}
	open := func(device, street, org string, opened time.Time, deadline time.Duration, steps ...step) Ticket {
		t.Helper()
		f.clock.Set(opened)
		a := binFull(device, opened)
		a.Street, a.OrgUnit, a.Deadline = street, org, deadline
		a.AutoClose = slices.ContainsFunc(steps, func(s step) bool { return s.action == "clear" })
		tk := f.raise(t, a)
		for _, s := range steps {
			f.clock.Set(opened.Add(s.after))
			if s.action == "clear" {
				if err := f.svc.Clear(ctx, "bin_full", device, f.clock.Now()); err != nil {
					t.Fatal(err)
				}
				continue
			}
			f.do(t, tk.ID, s.action, supervisor)
		}
		return tk
	}
	// 城关街道: on time (10 h), late (30 h, then verified), never rectified.
	open("a1", "城关街道", "区环卫所", at(2, 10), 24*time.Hour, step{10 * time.Hour, ActionRectify})
	open("a2", "城关街道", "区环卫所", at(3, 10), 24*time.Hour, step{30 * time.Hour, ActionRectify}, step{31 * time.Hour, ActionVerify})
	open("a3", "城关街道", "区环卫所", at(5, 10), 24*time.Hour)
	// 东湖街道: on time (6 h), on time (2 h, verified), auto-closed in time
	// (1 h: the condition cleared, which counts as rectified then).
	open("b1", "东湖街道", "园林所", at(10, 9), 48*time.Hour, step{6 * time.Hour, ActionRectify})
	open("b2", "东湖街道", "园林所", at(11, 9), 48*time.Hour, step{2 * time.Hour, ActionAck}, step{2 * time.Hour, ActionRectify}, step{3 * time.Hour, ActionVerify})
	open("b3", "东湖街道", "园林所", at(12, 9), 48*time.Hour, step{time.Hour, "clear"})
	// 西城街道: rectified late (2 h against 1 h).
	open("c1", "西城街道", "园林所", at(20, 9), time.Hour, step{2 * time.Hour, ActionRectify})
	// No street: opened at 01:00 on 1 November in Shanghai (still October in UTC), never rectified.
	open("n1", "", "区环卫所", at(1, 1), 24*time.Hour)
	// Outside the month: 00:30 on 1 December in Shanghai (30 November in UTC).
	open("x1", "城关街道", "区环卫所", time.Date(2026, 12, 1, 0, 30, 0, 0, sh), time.Hour)

	f.clock.Set(time.Date(2026, 12, 5, 0, 0, 0, 0, sh))
	rows, err := f.svc.Ranking(ctx, "2026-11", ByStreet)
	if err != nil {
		t.Fatal(err)
	}
	h := func(x float64) *float64 { return &x }
	want := []RankingRow{
		{Rank: 1, Name: "东湖街道", Opened: 3, Rectified: 3, RectifiedOnTime: 3, Overdue: 0, OnTimeRate: 1, MedianHoursToRectify: h(2)},
		{Rank: 2, Name: "城关街道", Opened: 3, Rectified: 2, RectifiedOnTime: 1, Overdue: 2, OnTimeRate: 0.3333, MedianHoursToRectify: h(20)},
		{Rank: 3, Name: "西城街道", Opened: 1, Rectified: 1, RectifiedOnTime: 0, Overdue: 1, OnTimeRate: 0, MedianHoursToRectify: h(2)},
		{Rank: 4, Name: "(none)", Opened: 1, Rectified: 0, RectifiedOnTime: 0, Overdue: 1, OnTimeRate: 0, MedianHoursToRectify: nil},
	}
	if a, b := mustJSON(t, rows), mustJSON(t, want); a != b {
		t.Errorf("ranking by street\n got %s\nwant %s", a, b)
	}
	rows, err = f.svc.Ranking(ctx, "2026-11", ByOrgUnit)
	if err != nil {
		t.Fatal(err)
	}
	// 园林所: b1 6h, b2 2h, b3 1h (auto-closed), c1 2h late → 3 on time of 4, median 2 h.
	// 区环卫所: a1, a2, a3, n1 → 1 of 4, median 20 h.
	want = []RankingRow{
		{Rank: 1, Name: "园林所", Opened: 4, Rectified: 4, RectifiedOnTime: 3, Overdue: 1, OnTimeRate: 0.75, MedianHoursToRectify: h(2)},
		{Rank: 2, Name: "区环卫所", Opened: 4, Rectified: 2, RectifiedOnTime: 1, Overdue: 3, OnTimeRate: 0.25, MedianHoursToRectify: h(20)},
	}
	if a, b := mustJSON(t, rows), mustJSON(t, want); a != b {
		t.Errorf("ranking by org_unit\n got %s\nwant %s", a, b)
	}
	if !strings.Contains(mustJSON(t, rows[0]), `"median_hours_to_rectify":2`) {
		t.Errorf("row JSON %s", mustJSON(t, rows[0]))
	}
	for _, bad := range [][2]string{{"2026-13", ByStreet}, {"2026/11", ByStreet}, {"2026-11", "village"}} {
		if _, err := f.svc.Ranking(ctx, bad[0], bad[1]); !errors.Is(err, ErrInvalid) {
			t.Errorf("Ranking(%q, %q): %v", bad[0], bad[1], err)
		}
	}

	var buf bytes.Buffer
	if err := WriteRankingTable(&buf, rows, "2026-11", ByOrgUnit); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("table:\n%s", buf.String())
	}
	// Every row ends in the right-aligned last column, so all rows are as
	// wide on screen only if the Chinese names were measured as wide.
	for _, l := range lines[1:] {
		if DisplayWidth(l) != DisplayWidth(lines[1]) {
			t.Errorf("misaligned table:\n%s", buf.String())
			break
		}
	}
	if !strings.Contains(lines[3], "园林所  ") || !strings.Contains(lines[3], "75.00%") {
		t.Errorf("row %q", lines[3])
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDisplayWidth(t *testing.T) {
	for s, want := range map[string]int{
		"": 0, "abc": 3, "城关街道": 8, "(none)": 6, "区环卫所 A": 10, "ｆｕｌｌ": 8, "e\u0301": 1, "한글": 4,
	} {
		if got := DisplayWidth(s); got != want {
			t.Errorf("DisplayWidth(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestWriteCSV(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m := manual(t0.Add(24 * time.Hour))
	m.Title = "公厕\"洗手池\"损坏, 请修复"
	m.Detail = "第一行\n第二行"
	m.Requirement = "=HYPERLINK(\"x\")"
	mt, err := f.svc.Create(ctx, m, supervisor)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Minute)
	at := f.raise(t, binFull("bin-1", f.clock.Now()))
	f.do(t, at.ID, ActionAck, roadsUnit)

	var buf bytes.Buffer
	if err := f.svc.WriteCSV(ctx, &buf, Filter{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte{0xEF, 0xBB, 0xBF}) {
		t.Fatalf("no BOM: % x", buf.Bytes()[:8])
	}
	recs, err := csv.NewReader(bytes.NewReader(buf.Bytes()[3:])).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || !slices.Equal(recs[0], LedgerColumns) {
		t.Fatalf("records %v", recs)
	}
	col := func(rec []string, name string) string { return rec[slices.Index(LedgerColumns, name)] }
	ack, man := recs[1], recs[2]
	if col(man, "id") != fmt.Sprint(mt.ID) || col(man, "title") != m.Title || col(man, "detail") != m.Detail ||
		col(man, "street") != "城关街道" || col(man, "org_unit") != "区环卫所" {
		t.Errorf("Chinese text did not survive: %q", man)
	}
	if col(man, "requirement") != "'"+m.Requirement {
		t.Errorf("formula not defused: %q", col(man, "requirement"))
	}
	if col(man, "opened_at") != "2026-11-28T10:00:00+08:00" || col(man, "fired_at") != "" || col(man, "source") != "inspection" {
		t.Errorf("times: opened_at %q fired_at %q", col(man, "opened_at"), col(man, "fired_at"))
	}
	if col(ack, "status") != "acknowledged" || col(ack, "history_entries") != "2" || col(ack, "last_action") != "ack" ||
		col(ack, "acknowledged_at") != "2026-11-28T10:01:00+08:00" || col(ack, "overdue") != "false" {
		t.Errorf("alert row %q", ack)
	}
	buf.Reset()
	if err := f.svc.WriteCSV(ctx, &buf, Filter{Source: []string{"alert"}}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Errorf("filtered export has %d lines", n)
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tk := f.raise(t, binFull("bin-1", t0))
	f.store.Close()
	for range 2 {
		st := f.open(t)
		v, err := st.SchemaVersion(ctx)
		if err != nil || v != len(st.d.migrations) {
			t.Fatalf("schema version %d, err %v", v, err)
		}
		var n int
		st.DB().QueryRow(`SELECT COUNT(*) FROM schema_version`).Scan(&n)
		if n != len(st.d.migrations) {
			t.Errorf("%d schema_version rows", n)
		}
		got, err := st.Get(ctx, tk.ID)
		if err != nil || got.Number != tk.Number {
			t.Fatalf("ticket after reopen: %+v %v", got, err)
		}
		if st.Dialect() == "sqlite" {
			var mode string
			st.DB().QueryRow(`PRAGMA journal_mode`).Scan(&mode)
			var fk int
			st.DB().QueryRow(`PRAGMA foreign_keys`).Scan(&fk)
			if mode != "wal" || fk != 1 {
				t.Errorf("journal_mode %s foreign_keys %d", mode, fk)
			}
		}
		st.Close()
	}
}

// The file: URI form of a SQLite DSN opens the same database.
func TestSQLiteFileURI(t *testing.T) {
	f := newFixture(t)
	tk := f.raise(t, binFull("bin-1", t0))
	st, err := OpenSQLite(context.Background(), "file:"+f.dsn+"?mode=rwc")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got, err := st.Get(context.Background(), tk.ID); err != nil || got.Number != tk.Number {
		t.Fatalf("ticket through file: URI: %+v %v", got, err)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	a := binFull("bin-1", t0)
	f.raise(t, a)
	tk := f.raise(t, binFull("bin-2", t0))
	f.do(t, tk.ID, ActionAck, roadsUnit)
	f.clock.Add(3 * time.Hour)
	f.raise(t, binFull("bin-3", f.clock.Now()))
	want := `
# HELP sanitel_tickets Supervision tickets by status.
# TYPE sanitel_tickets gauge
sanitel_tickets{status="acknowledged"} 1
sanitel_tickets{status="closed"} 0
sanitel_tickets{status="open"} 2
sanitel_tickets{status="rectified"} 0
# HELP sanitel_tickets_overdue Open or acknowledged tickets past their deadline.
# TYPE sanitel_tickets_overdue gauge
sanitel_tickets_overdue 2
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "sanitel_tickets", "sanitel_tickets_overdue"); err != nil {
		t.Error(err)
	}
}

func TestPing(t *testing.T) {
	f := newFixture(t)
	if err := f.svc.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.store.Close()
	if err := f.svc.Ping(context.Background()); err == nil {
		t.Error("closed store answers")
	}
}

func TestNewRejectsMissingStore(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a store succeeded")
	}
	// Nothing listens on port 1: the error says what to check.
	if _, err := Open(context.Background(), "postgres://sanitel@127.0.0.1:1/sanitel"); err == nil ||
		!strings.Contains(err.Error(), "cannot reach PostgreSQL") {
		t.Errorf("postgres on a closed port: %v", err)
	}
}

func TestRunEscalation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Inside the bubble time.Now is the fake clock the ticker runs on.
		st, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "t.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		svc, err := New(Options{Store: st})
		if err != nil {
			t.Fatal(err)
		}
		a := binFull("bin-1", time.Now())
		a.Deadline = time.Hour
		tk, _, err := svc.Raise(context.Background(), a)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			svc.RunEscalation(ctx, 10*time.Minute)
			close(done)
		}()
		level := func() int {
			got, err := svc.Get(context.Background(), tk.ID)
			if err != nil {
				t.Fatal(err)
			}
			return got.EscalationLevel
		}
		time.Sleep(71 * time.Minute) // ticks at 70m, 10m past the deadline
		synctest.Wait()
		if l := level(); l != 1 {
			t.Errorf("after 71m: level %d, want 1", l)
		}
		time.Sleep(60 * time.Minute)
		synctest.Wait()
		if l := level(); l != 2 {
			t.Errorf("after 131m: level %d, want 2", l)
		}
		cancel()
		<-done
	})
}

// A list's total and items come from one snapshot, while tickets open.
func TestListIsOneSnapshot(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		for i := range 200 {
			if _, _, err := f.svc.Raise(ctx, binFull(fmt.Sprintf("bin-%04d", i), t0)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for {
		items, total, _, err := f.svc.List(ctx, Filter{Limit: MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != total {
			t.Fatalf("%d items but total %d", len(items), total)
		}
		if total == 200 {
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
