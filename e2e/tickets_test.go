package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sanitel/sanitel/config"
	"github.com/sanitel/sanitel/service"
	"github.com/sanitel/sanitel/tickets"
)

// The tickets suite works supervision tickets (督办单) the way the office
// and the units do: through the HTTP API of a sanitel on the real
// Mosquitto and InfluxDB, with a real SQLite file. The lifecycle runs
// against `sanitel serve`; escalation, webhooks, the ranking, the ledger
// and the list filters run sanitel in this process with a clock the test
// sets (service.Options.Now), since `sanitel serve` only has the wall clock.

// Bearer tokens of the suite, one per role of the contract (§8).
const (
	tkOffice = "office-supervisor-token-5b1f0c9e" // supervisor, read from a token_file
	tkRoads  = "roads-unit-token-8e3a61f4d2c0"    // unit 区环卫所
	tkSouth  = "south-unit-token-47c2d9b0a1e5"    // unit 城南环卫站
	tkOps    = "ops-admin-token-c0ffee12345678"   // admin
	tkViewer = "depot-screen-token-99aa77bb66cc"  // viewer
)

// tkRegistry: two bins and a toilet of 区环卫所 in two streets, a toilet
// of 城南环卫站. Report intervals of a day keep device_offline quiet.
const tkRegistry = `devices:
  - {id: tk-bin-jf, kind: bin, site: 解放路菜市场, street: 解放街道, village: 和平社区, org_unit: 区环卫所, lat: 30.2741, lon: 120.1551, report_interval: 24h}
  - {id: tk-bin-jf2, kind: bin, site: 解放路 12 号, street: 解放街道, org_unit: 区环卫所, lat: 30.2745, lon: 120.1560, report_interval: 24h}
  - {id: tk-bin-dh, kind: bin, site: 东湖公园南门, street: 东湖街道, org_unit: 区环卫所, lat: 30.2601, lon: 120.1702, report_interval: 24h}
  - {id: tk-toilet-cn, kind: toilet, site: 城南公厕, street: 城南街道, org_unit: 城南环卫站, lat: 30.2400, lon: 120.1500, toilet_class: 2, report_interval: 24h}
`

// tkConfig is e's config with the suite's tokens (the supervisor's from a
// file) and extra lines for the tickets section.
func tkConfig(t *testing.T, e *Env, ticketLines ...string) string {
	t.Helper()
	officeFile := filepath.Join(e.Dir, "office.token")
	if err := os.WriteFile(officeFile, []byte(tkOffice+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := withKeys(e.Config(e.Influx.URL, ""), "http",
		"tokens:",
		fmt.Sprintf("  - {name: office, role: supervisor, token_file: %s}", officeFile),
		fmt.Sprintf("  - {name: roads-unit, role: unit, org_unit: 区环卫所, token: %q}", tkRoads),
		fmt.Sprintf("  - {name: south-unit, role: unit, org_unit: 城南环卫站, token: %q}", tkSouth),
		fmt.Sprintf("  - {name: ops, role: admin, token: %q}", tkOps),
		fmt.Sprintf("  - {name: depot-screen, role: viewer, token: %q}", tkViewer))
	if len(ticketLines) > 0 {
		cfg = withKeys(cfg, "tickets", ticketLines...)
	}
	return cfg
}

// tkClock is a clock the test sets.
type tkClock struct{ ms atomic.Int64 }

func (c *tkClock) Now() time.Time  { return time.UnixMilli(c.ms.Load()) }
func (c *tkClock) Set(t time.Time) { c.ms.Store(t.UnixMilli()) }

// tkStartInProcess runs sanitel in this process on cfg with clk as its
// clock for tickets (deadlines, escalation, reports); no_data rules are
// not checked while the test runs.
func tkStartInProcess(t *testing.T, e *Env, cfg string, clk *tkClock) *Sanitel {
	t.Helper()
	path := filepath.Join(e.Dir, "sanitel.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	svc, err := service.New(c, service.Options{
		Logger:      slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:         clk.Now,
		NoDataEvery: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service: %v", err)
		}
		if t.Failed() {
			t.Logf("sanitel log:\n%s", tail(logs.String(), 8000))
		}
	})
	s := &Sanitel{t: t, URL: "http://" + svc.Addr(), log: logs, cfgPath: path}
	s.WaitReady()
	return s
}

func (tk apiTicket) actions() []string {
	var out []string
	for _, h := range tk.History {
		out = append(out, h.Action)
	}
	return out
}

type tkList struct {
	Items []apiTicket `json:"items"`
	Total int         `json:"total"`
	Next  string      `json:"next"`
}

// tkAPI calls sanitel's HTTP API.
type tkAPI struct {
	t    *testing.T
	base string
}

// do sends a request with the bearer token (none when empty) and a JSON
// body (none when nil).
func (a tkAPI) do(token, method, path string, body any) (int, []byte, http.Header) {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

// must sends the request, fails unless the answer has status want, and
// decodes it into v (when not nil).
func (a tkAPI) must(token, method, path string, body any, want int, v any) {
	a.t.Helper()
	code, b, _ := a.do(token, method, path, body)
	if code != want {
		a.t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// fails checks that the request is refused with status want and a JSON
// error that contains msg.
func (a tkAPI) fails(token, method, path string, body any, want int, msg string) {
	a.t.Helper()
	code, b, _ := a.do(token, method, path, body)
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || code != want || !strings.Contains(e.Error, msg) {
		a.t.Errorf("%s %s: %d %s, want %d with an error containing %q", method, path, code, b, want, msg)
	}
}

func (a tkAPI) get(token string, id int64) apiTicket {
	a.t.Helper()
	var tk apiTicket
	a.must(token, "GET", fmt.Sprintf("/api/v1/tickets/%d", id), nil, http.StatusOK, &tk)
	return tk
}

func (a tkAPI) list(token, query string) tkList {
	a.t.Helper()
	var l tkList
	a.must(token, "GET", "/api/v1/tickets?"+query, nil, http.StatusOK, &l)
	return l
}

// act takes a transition and returns the ticket as the answer shows it.
func (a tkAPI) act(token string, id int64, action, by, note string) apiTicket {
	a.t.Helper()
	var tk apiTicket
	a.must(token, "POST", fmt.Sprintf("/api/v1/tickets/%d/%s", id, action), map[string]string{"by": by, "note": note}, http.StatusOK, &tk)
	return tk
}

// waitTicket waits until a ticket of (device, rule) is listed whose state
// satisfies ok, and returns it (with history).
func (a tkAPI) waitTicket(device, rule string, ok func(apiTicket) bool) apiTicket {
	a.t.Helper()
	var got []apiTicket
	Eventually(a.t, 20*time.Second, func() bool {
		got = a.list(tkOffice, "device_id="+device+"&rule="+rule).Items
		return len(got) > 0 && ok(got[0])
	}, func() string { return fmt.Sprintf("no %s ticket of %s as wanted: %+v", rule, device, got) })
	return a.get(tkOffice, got[0].ID)
}

// tkPublish sends a bin reading with the device time now.
func tkPublish(e *Env, pub *Publisher, kind, device, fields string) {
	pub.Publish(fmt.Sprintf("%s/%s/%s/telemetry", e.Root, kind, device), fmt.Sprintf(`{"ts":%d,%s}`, time.Now().UnixMilli(), fields))
}

var tkNumber = regexp.MustCompile(`^DB-(\d{8})-(\d{4})$`)

// tkCheckHistory compares a ticket's history with the wanted actions, who
// took them and their notes, and checks each time lies in [from, to].
func tkCheckHistory(t *testing.T, what string, tk apiTicket, from, to time.Time, want ...apiHistory) {
	t.Helper()
	if len(tk.History) != len(want) {
		t.Errorf("%s: history %v, want %d entries", what, tk.History, len(want))
		return
	}
	for i, w := range want {
		h := tk.History[i]
		if h.Action != w.Action || h.By != w.By || h.Note != w.Note {
			t.Errorf("%s: history[%d] = %s by %q (%q), want %s by %q (%q)", what, i, h.Action, h.By, h.Note, w.Action, w.By, w.Note)
		}
		if h.At.Before(from.Truncate(time.Millisecond)) || h.At.After(to) {
			t.Errorf("%s: history[%d] %s at %s, not within [%s, %s]", what, i, h.Action, h.At, from, to)
		}
		if i > 0 && h.At.Before(tk.History[i-1].At) {
			t.Errorf("%s: history[%d] at %s before the entry above it", what, i, h.At)
		}
	}
}

// TestTicketLifecycleOverHTTP works an alert ticket (a reading over MQTT)
// and an inspection ticket through `sanitel serve`'s API with the roles of
// the contract: open → acknowledged → rectified → closed, rectified → open
// when verification fails, a history of who did what when, 409 for a wrong
// transition, 401 without a token and 403 for a role that may not act.
func TestTicketLifecycleOverHTTP(t *testing.T) {
	e := NewEnv(t, tkRegistry)
	s := e.StartSanitel(tkConfig(t, e))
	api := tkAPI{t: t, base: s.URL}
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}

	// Without a token, or with an unknown one: 401, a JSON reason and a challenge.
	for _, tok := range []string{"", "not-a-configured-token-123456"} {
		code, b, h := api.do(tok, "GET", "/api/v1/tickets", nil)
		if code != http.StatusUnauthorized || !strings.Contains(string(b), `"error":"missing or unknown bearer token"`) ||
			!strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("GET /api/v1/tickets with token %q: %d %s %v, want 401", tok, code, b, h)
		}
	}
	api.fails("", "POST", "/api/v1/tickets/1/ack", map[string]string{}, http.StatusUnauthorized, "missing or unknown bearer token")

	// A bin overheats: bin_fire opens a ticket for 区环卫所.
	before := time.Now()
	pub := e.NewPublisher()
	tkPublish(e, pub, "bin", "tk-bin-jf", `"temp_c":65,"fill_pct":20`)
	fire := api.waitTicket("tk-bin-jf", "bin_fire", func(apiTicket) bool { return true })
	opened := time.Now()
	if fire.Source != "alert" || fire.Severity != "critical" || fire.Status != "open" || fire.Kind != "bin" ||
		fire.Site != "解放路菜市场" || fire.Street != "解放街道" || fire.Village != "和平社区" || fire.OrgUnit != "区环卫所" ||
		fire.Title != "垃圾桶起火或高温" || !strings.Contains(fire.Detail, "temp_c 65 ≥ 60") ||
		!strings.HasPrefix(fire.Requirement, "立即到场处置") || fire.Occurrences != 1 || fire.EscalationLevel != 0 ||
		fire.AutoClose || fire.Overdue || fire.AcknowledgedAt != nil || fire.RectifiedAt != nil || fire.ClosedAt != nil {
		t.Errorf("bin_fire ticket: %+v", fire)
	}
	if m := tkNumber.FindStringSubmatch(fire.Number); m == nil || m[1] != fire.OpenedAt.In(sh).Format("20060102") {
		t.Errorf("number %q, want DB-<opening day in Shanghai>-NNNN (opened %s)", fire.Number, fire.OpenedAt)
	}
	if !fire.Deadline.Equal(fire.OpenedAt.Add(time.Hour)) {
		t.Errorf("deadline %s, want opened_at %s + 1h (bin_fire)", fire.Deadline, fire.OpenedAt)
	}
	tkCheckHistory(t, "bin_fire opened", fire, before, opened, apiHistory{By: "system", Action: "open", Note: fire.Detail})
	path := func(id int64, action string) string { return fmt.Sprintf("/api/v1/tickets/%d/%s", id, action) }

	// Who may not: a viewer, another unit, a unit verifying, anyone
	// skipping a step.
	api.fails(tkViewer, "POST", path(fire.ID, "ack"), map[string]string{}, http.StatusForbidden, "a viewer may not change tickets")
	api.fails(tkSouth, "POST", path(fire.ID, "ack"), map[string]string{}, http.StatusForbidden, "ticket belongs to another org_unit")
	api.fails(tkSouth, "POST", path(fire.ID, "rectify"), map[string]string{}, http.StatusForbidden, "ticket belongs to another org_unit")
	api.fails(tkRoads, "POST", path(fire.ID, "verify"), map[string]string{}, http.StatusForbidden, "a unit may only ack or rectify")
	api.fails(tkOffice, "POST", path(fire.ID, "verify"), map[string]string{}, http.StatusConflict,
		"cannot verify a ticket that is open (it must be rectified first)")
	api.fails(tkOffice, "POST", path(fire.ID, "reopen"), map[string]string{}, http.StatusConflict,
		"cannot reopen a ticket that is open (only a rectified ticket can be reopened)")
	api.fails(tkOffice, "POST", path(fire.ID, "close"), map[string]string{}, http.StatusNotFound, `unknown action "close"`)
	api.fails(tkSouth, "GET", fmt.Sprintf("/api/v1/tickets/%d", fire.ID), nil, http.StatusNotFound, "ticket not found")
	if got := api.get(tkOffice, fire.ID); got.Status != "open" || len(got.History) != 1 {
		t.Fatalf("refused requests changed the ticket: %+v", got)
	}

	// The unit acknowledges (naming who went), again (no change), rectifies;
	// the office verifies.
	t1 := time.Now()
	ack := api.act(tkRoads, fire.ID, "ack", "张师傅", "已派人到场")
	if ack.Status != "acknowledged" || ack.AcknowledgedAt == nil || ack.AcknowledgedAt.Before(t1.Truncate(time.Millisecond)) {
		t.Errorf("after ack: %+v", ack)
	}
	if again := api.act(tkRoads, fire.ID, "ack", "", "又点了一次"); again.Status != "acknowledged" || len(again.History) != 2 ||
		!again.AcknowledgedAt.Equal(*ack.AcknowledgedAt) {
		t.Errorf("a repeated ack changed the ticket: %+v", again)
	}
	api.fails(tkOffice, "POST", path(fire.ID, "verify"), map[string]string{}, http.StatusConflict,
		"cannot verify a ticket that is acknowledged (it must be rectified first)")
	rect := api.act(tkRoads, fire.ID, "rectify", "", "明火已扑灭，桶体已更换")
	if rect.Status != "rectified" || rect.RectifiedAt == nil || rect.RectifiedAt.Before(*ack.AcknowledgedAt) {
		t.Errorf("after rectify: %+v", rect)
	}
	api.fails(tkRoads, "POST", path(fire.ID, "ack"), map[string]string{}, http.StatusConflict,
		"cannot ack a ticket that is rectified (it is waiting for verification)")
	closed := api.act(tkOffice, fire.ID, "verify", "李科长", "现场复核合格")
	if closed.Status != "closed" || closed.ClosedAt == nil || closed.RectifiedAt == nil || !closed.RectifiedAt.Equal(*rect.RectifiedAt) {
		t.Errorf("after verify: %+v", closed)
	}
	api.fails(tkOffice, "POST", path(fire.ID, "reopen"), map[string]string{}, http.StatusConflict,
		"cannot reopen a ticket that is closed (only a rectified ticket can be reopened)")
	api.fails(tkRoads, "POST", path(fire.ID, "rectify"), map[string]string{}, http.StatusConflict, "cannot rectify a ticket that is closed")
	tkCheckHistory(t, "bin_fire worked", api.get(tkViewer, fire.ID), before, time.Now(),
		apiHistory{By: "system", Action: "open", Note: fire.Detail},
		apiHistory{By: "张师傅", Action: "ack", Note: "已派人到场"},
		apiHistory{By: "roads-unit", Action: "rectify", Note: "明火已扑灭，桶体已更换"},
		apiHistory{By: "李科长", Action: "verify", Note: "现场复核合格"})

	// An inspection ticket (交办): only the office and admins open one.
	manual := map[string]string{
		"site": "城南路口", "street": "城南街道", "org_unit": "城南环卫站", "title": "公厕地面积水",
		"detail": "巡查发现男厕地面积水", "requirement": "清理积水，检修冲水阀", "severity": "warning",
		"deadline": time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339),
	}
	api.fails(tkViewer, "POST", "/api/v1/tickets", manual, http.StatusForbidden, "only a supervisor or admin may create tickets")
	api.fails(tkSouth, "POST", "/api/v1/tickets", manual, http.StatusForbidden, "only a supervisor or admin may create tickets")
	bad := map[string]string{}
	for k, v := range manual {
		bad[k] = v
	}
	delete(bad, "title")
	api.fails(tkOffice, "POST", "/api/v1/tickets", bad, http.StatusBadRequest, "title: required")
	bad["title"], bad["deadline"] = "x", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	api.fails(tkOffice, "POST", "/api/v1/tickets", bad, http.StatusBadRequest, "deadline: must be in the future")
	t2 := time.Now()
	code, body, hdr := api.do(tkOffice, "POST", "/api/v1/tickets", manual)
	var insp apiTicket
	if code != http.StatusCreated || json.Unmarshal(body, &insp) != nil {
		t.Fatalf("POST /api/v1/tickets: %d %s", code, body)
	}
	if hdr.Get("Location") != fmt.Sprintf("/api/v1/tickets/%d", insp.ID) || insp.Source != "inspection" || insp.Status != "open" ||
		insp.Rule != "" || insp.Street != "城南街道" || insp.OrgUnit != "城南环卫站" || insp.Title != "公厕地面积水" ||
		!tkNumber.MatchString(insp.Number) || insp.Number == fire.Number || insp.Deadline.Format(time.RFC3339) != manual["deadline"] {
		t.Errorf("inspection ticket: %+v (Location %q)", insp, hdr.Get("Location"))
	}
	tkCheckHistory(t, "inspection opened", insp, t2, time.Now(), apiHistory{By: "office", Action: "open", Note: "inspection"})

	// The unit reports it done; the office finds it is not (rectified →
	// open), the unit does it again, an admin verifies.
	api.fails(tkRoads, "POST", path(insp.ID, "ack"), map[string]string{}, http.StatusForbidden, "ticket belongs to another org_unit")
	api.act(tkSouth, insp.ID, "ack", "", "")
	api.act(tkSouth, insp.ID, "rectify", "", "已清理")
	reopened := api.act(tkOffice, insp.ID, "reopen", "", "复查仍有积水")
	if reopened.Status != "open" || reopened.RectifiedAt != nil || reopened.AcknowledgedAt == nil {
		t.Errorf("after reopen: %+v, want open, rectified_at null, acknowledged_at kept", reopened)
	}
	api.fails(tkOffice, "POST", path(insp.ID, "verify"), map[string]string{}, http.StatusConflict,
		"cannot verify a ticket that is open (it must be rectified first)")
	api.act(tkSouth, insp.ID, "rectify", "", "更换冲水阀")
	done := api.act(tkOps, insp.ID, "verify", "", "")
	if done.Status != "closed" || done.ClosedAt == nil || done.RectifiedAt == nil {
		t.Errorf("after verify: %+v", done)
	}
	tkCheckHistory(t, "inspection worked", done, t2, time.Now(),
		apiHistory{By: "office", Action: "open", Note: "inspection"},
		apiHistory{By: "south-unit", Action: "ack"},
		apiHistory{By: "south-unit", Action: "rectify", Note: "已清理"},
		apiHistory{By: "office", Action: "reopen", Note: "复查仍有积水"},
		apiHistory{By: "south-unit", Action: "rectify", Note: "更换冲水阀"},
		apiHistory{By: "ops", Action: "verify"})

	// A unit sees only its own tickets; others see both.
	if l := api.list(tkRoads, ""); l.Total != 1 || l.Items[0].ID != fire.ID {
		t.Errorf("roads-unit lists %+v, want only the bin_fire ticket", l)
	}
	if l := api.list(tkRoads, "org_unit=城南环卫站"); l.Total != 0 {
		t.Errorf("roads-unit asking for 城南环卫站 lists %d tickets, want 0", l.Total)
	}
	if l := api.list(tkViewer, "status=closed"); l.Total != 2 {
		t.Errorf("viewer lists %d closed tickets, want 2", l.Total)
	}
	api.fails(tkOffice, "GET", "/api/v1/tickets/999999", nil, http.StatusNotFound, "ticket not found")
	api.fails(tkOffice, "GET", "/api/v1/tickets/abc", nil, http.StatusBadRequest, "id: must be a positive integer")
	if g := s.Metric("sanitel_tickets", "status", "closed"); g != 2 {
		t.Errorf("sanitel_tickets{status=closed} = %v, want 2", g)
	}
}

// tkHookServer records the webhook requests it gets; fail decides, per
// request number (from 1), whether to answer 500.
type tkHookServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []tkHookRequest
	fail func(n int) bool
}

type tkHookRequest struct {
	at     time.Time
	header http.Header
	body   []byte
	status int
}

func tkNewHookServer(t *testing.T, fail func(n int) bool) *tkHookServer {
	h := &tkHookServer{fail: fail}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		status := http.StatusOK
		if h.fail != nil && h.fail(len(h.reqs)+1) {
			status = http.StatusInternalServerError
		}
		h.reqs = append(h.reqs, tkHookRequest{at: time.Now(), header: r.Header.Clone(), body: b, status: status})
		w.WriteHeader(status)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *tkHookServer) requests() []tkHookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.reqs)
}

// tkEvent is a webhook body.
type tkEvent struct {
	Event  string    `json:"event"`
	At     time.Time `json:"at"`
	Ticket apiTicket `json:"ticket"`
}

// events decodes the bodies of the requests answered 200.
func (h *tkHookServer) events(t *testing.T) []tkEvent {
	t.Helper()
	var out []tkEvent
	for _, r := range h.requests() {
		if r.status != http.StatusOK {
			continue
		}
		var ev tkEvent
		if err := json.Unmarshal(r.body, &ev); err != nil {
			t.Fatalf("webhook body %s: %v", r.body, err)
		}
		out = append(out, ev)
	}
	return out
}

// TestTicketEscalationAndWebhooks runs sanitel in this process with a clock
// the test sets. An overdue bin_full ticket (critical: 2 h to rectify)
// escalates one level per 2 h past its deadline, recorded in its history,
// shown by the overdue field, filter and metric, and sent to a webhook;
// rectifying it stops the escalation. Webhooks get open, escalate and close
// bodies, signed; a webhook answering 500 is retried with a growing wait,
// counted in sanitel_notify_failures_total, while ingestion and the other
// webhook go on.
func TestTicketEscalationAndWebhooks(t *testing.T) {
	e := NewEnv(t, tkRegistry)
	good := tkNewHookServer(t, nil)
	var failing atomic.Bool
	failing.Store(true)
	flaky := tkNewHookServer(t, func(int) bool { return failing.Load() })
	const secret = "webhook-signing-secret-31f7"
	clk := &tkClock{}
	c0 := time.Now().UTC().Truncate(time.Second)
	clk.Set(c0)
	s := tkStartInProcess(t, e, tkConfig(t, e,
		"escalation_check: 50ms",
		"notify:",
		"  webhooks:",
		fmt.Sprintf("    - {url: %q, secret: %q}", good.URL+"/hook?access_token=abc", secret),
		fmt.Sprintf("    - {url: %q, events: [open]}", flaky.URL)), clk)
	api := tkAPI{t: t, base: s.URL}
	pub := e.NewPublisher()

	// A full bin opens a critical bin_full ticket at c0, due at c0+2h.
	tkPublish(e, pub, "bin", "tk-bin-jf", `"fill_pct":95`)
	full := api.waitTicket("tk-bin-jf", "bin_full", func(apiTicket) bool { return true })
	if full.Severity != "critical" || !full.OpenedAt.Equal(c0) || !full.Deadline.Equal(c0.Add(2*time.Hour)) || !full.AutoClose {
		t.Fatalf("bin_full ticket: %+v, want critical, opened at %s, due 2h later, auto_close", full, c0)
	}

	// The flaky webhook answers 500: wait for its first retry.
	Eventually(t, 20*time.Second, func() bool { return len(flaky.requests()) >= 2 },
		func() string {
			return fmt.Sprintf("flaky webhook got %d requests, want a retry", len(flaky.requests()))
		})

	// Meanwhile ingestion goes on: another bin's readings reach InfluxDB,
	// its ticket opens and closes itself, and the good webhook hears of it.
	tkPublish(e, pub, "bin", "tk-bin-jf2", `"fill_pct":85`)
	other := api.waitTicket("tk-bin-jf2", "bin_full", func(apiTicket) bool { return true })
	tkPublish(e, pub, "bin", "tk-bin-jf2", `"fill_pct":10`)
	other = api.waitTicket("tk-bin-jf2", "bin_full", func(tk apiTicket) bool { return tk.Status == "closed" })
	if other.Severity != "warning" || !slices.Equal(other.actions(), []string{"open", "auto_close"}) ||
		other.History[1].By != "system" || other.History[1].Note != "condition cleared" {
		t.Errorf("auto-closed ticket: %+v", other)
	}
	Eventually(t, 20*time.Second, func() bool { return len(e.points("bin", `"device_id"='tk-bin-jf2'`)) == 2 },
		func() string { return "tk-bin-jf2's readings did not reach InfluxDB while a webhook failed" })
	Eventually(t, 20*time.Second, func() bool { return len(good.events(t)) == 3 },
		func() string {
			return fmt.Sprintf("good webhook got %d events, want 3 while the flaky one fails", len(good.events(t)))
		})
	if n := len(flaky.requests()); n < 2 {
		t.Fatalf("flaky webhook: %d requests", n)
	}

	// The flaky webhook recovers: the open event is delivered at the next
	// try, then the second open event. Each wait was at least the back-off
	// (1 s, doubling).
	failing.Store(false)
	Eventually(t, 30*time.Second, func() bool {
		n := 0
		for _, r := range flaky.requests() {
			if r.status == http.StatusOK {
				n++
			}
		}
		return n == 2
	}, func() string {
		return fmt.Sprintf("flaky webhook: %d requests, want both open events delivered", len(flaky.requests()))
	})
	reqs := flaky.requests()
	failures := 0
	for i, r := range reqs {
		if r.status != http.StatusOK {
			failures++
		}
		if i > 0 && r.status == http.StatusOK && reqs[i-1].status == http.StatusOK {
			continue // the next event, not a retry
		}
		if i > 0 {
			if gap, min := r.at.Sub(reqs[i-1].at), time.Second<<(i-1); gap < min-50*time.Millisecond {
				t.Errorf("flaky webhook: try %d came %s after the one before, want at least %s", i+1, gap, min)
			}
		}
	}
	if failures < 2 || reqs[len(reqs)-2].status != http.StatusOK {
		t.Errorf("flaky webhook requests: %d failures, statuses %v", failures, func() (st []int) {
			for _, r := range reqs {
				st = append(st, r.status)
			}
			return st
		}())
	}
	var first, second tkEvent
	json.Unmarshal(reqs[len(reqs)-2].body, &first)
	json.Unmarshal(reqs[len(reqs)-1].body, &second)
	if first.Event != "open" || first.Ticket.ID != full.ID || second.Event != "open" || second.Ticket.ID != other.ID {
		t.Errorf("flaky webhook delivered %s #%d then %s #%d, want open #%d then open #%d",
			first.Event, first.Ticket.ID, second.Event, second.Ticket.ID, full.ID, other.ID)
	}
	if g := s.Metric("sanitel_notify_failures_total", "event", "open"); g != float64(failures) {
		t.Errorf("sanitel_notify_failures_total{event=open} = %v, want %d (the 500s answered)", g, failures)
	}
	// open: 2 to the good webhook, 2 to the flaky one; close: 1.
	if g := s.Metric("sanitel_notify_sent_total", "event", "open"); g != 4 {
		t.Errorf("sanitel_notify_sent_total{event=open} = %v, want 4", g)
	}
	if g := s.Metric("sanitel_notify_sent_total", "event", "close"); g != 1 {
		t.Errorf("sanitel_notify_sent_total{event=close} = %v, want 1", g)
	}

	// Escalation. Still before the deadline: nothing.
	clk.Set(c0.Add(2 * time.Hour))
	time.Sleep(200 * time.Millisecond) // several escalation checks (every 50 ms)
	if tk := api.get(tkOffice, full.ID); tk.EscalationLevel != 0 || tk.Overdue {
		t.Fatalf("escalated at its deadline: %+v", tk)
	}
	if g := s.Metric("sanitel_tickets_overdue"); g != 0 {
		t.Errorf("sanitel_tickets_overdue = %v at the deadline, want 0", g)
	}
	// One level per deadline period (2 h) past the deadline; the unit
	// acknowledging does not stop it, rectifying does.
	var escalatedAt []time.Time
	for level := 1; level <= 3; level++ {
		now := c0.Add(time.Duration(2*level)*time.Hour + time.Minute)
		clk.Set(now)
		escalatedAt = append(escalatedAt, now)
		var tk apiTicket
		Eventually(t, 10*time.Second, func() bool { tk = api.get(tkOffice, full.ID); return tk.EscalationLevel == level },
			func() string {
				return fmt.Sprintf("escalation level %d, want %d at deadline+%s", tk.EscalationLevel, level, now.Sub(full.Deadline))
			})
		time.Sleep(150 * time.Millisecond) // more checks at the same time change nothing
		tk = api.get(tkOffice, full.ID)
		last := tk.History[len(tk.History)-1]
		if tk.EscalationLevel != level || !tk.Overdue || last.Action != "escalate" || last.By != "system" ||
			last.Note != fmt.Sprintf("overdue, level %d", level) || !last.At.Equal(now) {
			t.Errorf("level %d: %+v, last history %+v", level, tk, last)
		}
		if l := api.list(tkOffice, "overdue=true"); l.Total != 1 || l.Items[0].ID != full.ID || !l.Items[0].Overdue {
			t.Errorf("overdue=true lists %+v, want the bin_full ticket", l)
		}
		if g := s.Metric("sanitel_tickets_overdue"); g != 1 {
			t.Errorf("sanitel_tickets_overdue = %v, want 1", g)
		}
		if level == 1 {
			api.act(tkRoads, full.ID, "ack", "", "清运车辆故障，正在调度")
		}
	}
	clk.Set(c0.Add(6*time.Hour + 2*time.Minute))
	rect := api.act(tkRoads, full.ID, "rectify", "", "已清运")
	if rect.Overdue || rect.EscalationLevel != 3 {
		t.Errorf("after rectify: %+v", rect)
	}
	clk.Set(c0.Add(12 * time.Hour))
	time.Sleep(200 * time.Millisecond)
	if tk := api.get(tkOffice, full.ID); tk.EscalationLevel != 3 || tk.Overdue {
		t.Errorf("a rectified ticket escalated: %+v", tk)
	}
	if g := s.Metric("sanitel_tickets_overdue"); g != 0 {
		t.Errorf("sanitel_tickets_overdue = %v after rectify, want 0", g)
	}
	closed := api.act(tkOffice, full.ID, "verify", "", "")
	if got := closed.actions(); !slices.Equal(got, []string{"open", "escalate", "ack", "escalate", "escalate", "rectify", "verify"}) {
		t.Errorf("history %v", got)
	}

	// What the good webhook got, in order, each body signed.
	var evs []tkEvent
	Eventually(t, 10*time.Second, func() bool { evs = good.events(t); return len(evs) == 7 },
		func() string { return fmt.Sprintf("good webhook got %d events, want 7", len(evs)) })
	type seen struct {
		event  string
		id     int64
		status string
		level  int
		at     time.Time
	}
	want := []seen{
		{"open", full.ID, "open", 0, c0},
		{"open", other.ID, "open", 0, c0},
		{"close", other.ID, "closed", 0, c0},
		{"escalate", full.ID, "open", 1, escalatedAt[0]},
		{"escalate", full.ID, "acknowledged", 2, escalatedAt[1]},
		{"escalate", full.ID, "acknowledged", 3, escalatedAt[2]},
		{"close", full.ID, "closed", 3, c0.Add(12 * time.Hour)},
	}
	for i, ev := range evs {
		w := want[i]
		got := seen{ev.Event, ev.Ticket.ID, ev.Ticket.Status, ev.Ticket.EscalationLevel, ev.At}
		if got.event != w.event || got.id != w.id || got.status != w.status || got.level != w.level || !got.at.Equal(w.at) {
			t.Errorf("webhook event %d: %+v, want %+v", i, got, w)
		}
		tk := ev.Ticket
		if tk.Number == "" || tk.Rule != "bin_full" || tk.Source != "alert" || tk.Street != "解放街道" ||
			tk.OrgUnit != "区环卫所" || tk.Site == "" || tk.Title != "垃圾桶满溢" || tk.Requirement == "" ||
			tk.Deadline.IsZero() || tk.FiredAt == nil || len(tk.History) == 0 {
			t.Errorf("webhook event %d ticket: %+v", i, tk)
		}
		switch ev.Event {
		case "escalate":
			if !tk.Overdue || tk.History[len(tk.History)-1].Action != "escalate" {
				t.Errorf("escalate event %d: overdue %v, last history %+v", i, tk.Overdue, tk.History[len(tk.History)-1])
			}
		case "close":
			if tk.ClosedAt == nil || !tk.ClosedAt.Equal(ev.At) {
				t.Errorf("close event %d: closed_at %v, at %s", i, tk.ClosedAt, ev.At)
			}
		}
	}
	for i, r := range good.requests() {
		var ev tkEvent
		json.Unmarshal(r.body, &ev)
		if sig := r.header.Get("X-Sanitel-Signature"); sig != tickets.Sign(secret, r.body) ||
			r.header.Get("X-Sanitel-Event") != ev.Event || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("good webhook request %d: headers %v", i, r.header)
		}
	}
	if g := s.Metric("sanitel_notify_sent_total", "event", "escalate"); g != 3 {
		t.Errorf("sanitel_notify_sent_total{event=escalate} = %v, want 3", g)
	}
}

// tkShanghai is the office time zone (tickets.timezone's default).
var tkShanghai = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		panic(err)
	}
	return loc
}()

// TestTicketRankingLedgerAndFilters builds a month of tickets with times
// the test sets — inspections through the API, two bin_full alerts through
// MQTT that close themselves — and checks the monthly ranking by street and
// by org_unit against numbers worked out by hand, the ledger CSV, and the
// list's filters and paging.
func TestTicketRankingLedgerAndFilters(t *testing.T) {
	e := NewEnv(t, tkRegistry)
	clk := &tkClock{}
	at := func(month time.Month, day, hour, min int) time.Time {
		return time.Date(2026, month, day, hour, min, 0, 0, tkShanghai)
	}
	clk.Set(at(10, 1, 0, 0))
	// No escalation while the clock jumps about.
	s := tkStartInProcess(t, e, tkConfig(t, e, "escalation_check: 24h"), clk)
	api := tkAPI{t: t, base: s.URL}
	pub := e.NewPublisher()

	type step struct {
		after  time.Duration
		token  string
		action string
		note   string
	}
	ids := map[string]int64{}
	// inspect opens an inspection ticket at opened, due after deadline,
	// then takes the steps at their times.
	inspect := func(name, street, unit string, opened time.Time, deadline time.Duration, extra map[string]string, steps ...step) {
		t.Helper()
		clk.Set(opened)
		body := map[string]string{
			"site": name + " 现场", "street": street, "org_unit": unit, "title": "巡查 " + name,
			"requirement": "按要求整改", "severity": "warning", "deadline": opened.Add(deadline).Format(time.RFC3339),
		}
		for k, v := range extra {
			body[k] = v
		}
		var tk apiTicket
		api.must(tkOffice, "POST", "/api/v1/tickets", body, http.StatusCreated, &tk)
		ids[name] = tk.ID
		for _, st := range steps {
			clk.Set(opened.Add(st.after))
			api.act(st.token, tk.ID, st.action, "", st.note)
		}
	}
	// alert fills a bin at opened (bin_full, critical: due in 2 h) and
	// empties it after clearAfter: the ticket closes itself.
	alert := func(name, device string, opened time.Time, clearAfter time.Duration) {
		t.Helper()
		clk.Set(opened)
		tkPublish(e, pub, "bin", device, `"fill_pct":96`)
		tk := api.waitTicket(device, "bin_full", func(tk apiTicket) bool { return tk.Status == "open" && tk.OpenedAt.Equal(opened) })
		ids[name] = tk.ID
		clk.Set(opened.Add(clearAfter))
		tkPublish(e, pub, "bin", device, `"fill_pct":5`)
		api.waitTicket(device, "bin_full", func(tk apiTicket) bool { return tk.ID == ids[name] && tk.Status == "closed" })
	}
	h := time.Hour
	rectify := func(after time.Duration, token string) step { return step{after, token, "rectify", ""} }
	verify := func(after time.Duration) step { return step{after, tkOffice, "verify", ""} }

	// The month, ticket by ticket (times in Shanghai; "h" after opening):
	// N1 城南街道/城南环卫站  10-01 00:30 (still 09-30 in UTC), due 24h, rectified 1h, verified
	inspect("N1", "城南街道", "城南环卫站", at(10, 1, 0, 30), 24*h, nil, rectify(h, tkSouth), verify(2*h))
	// A1 解放街道/区环卫所  10-05 09:00, due 24h, rectified 6h (on time), verified
	inspect("A1", "解放街道", "区环卫所", at(10, 5, 9, 0), 24*h, nil, rectify(6*h, tkRoads), verify(7*h))
	// A2 解放街道/区环卫所  10-06 09:00, due 24h, rectified 30h (late), not verified
	inspect("A2", "解放街道", "区环卫所", at(10, 6, 9, 0), 24*h, nil, rectify(30*h, tkRoads))
	// A3 解放街道/区环卫所  10-07 09:00, due 24h, acknowledged, never rectified: overdue
	inspect("A3", "解放街道", "区环卫所", at(10, 7, 9, 0), 24*h, nil, step{2 * h, tkRoads, "ack", ""})
	// A4 bin_full 解放街道/区环卫所  10-08 09:00, due 2h, emptied after 1h: closed itself in time
	alert("A4", "tk-bin-jf", at(10, 8, 9, 0), h)
	// B1 城南街道/城南环卫站  10-10 08:00, due 48h, rectified 12h
	inspect("B1", "城南街道", "城南环卫站", at(10, 10, 8, 0), 48*h, nil, rectify(12*h, tkSouth))
	// B2 城南街道/城南环卫站  10-11 08:00, due 48h, rectified 4h, verification failed 5h
	//    (reopened: that rectification no longer counts), rectified again 20h, verified
	inspect("B2", "城南街道", "城南环卫站", at(10, 11, 8, 0), 48*h, nil,
		rectify(4*h, tkSouth), step{5 * h, tkOffice, "reopen", "复查不合格"}, rectify(20*h, tkSouth), verify(21*h))
	// B3 城南街道/城南环卫站  10-12 08:00, due in 60 days, acknowledged: pending, not overdue
	inspect("B3", "城南街道", "城南环卫站", at(10, 12, 8, 0), 60*24*h, nil, step{h, tkSouth, "ack", ""})
	// C1 东湖街道/区环卫所  10-20 10:00, due 4h, rectified 8h (late). Its texts
	//    look like spreadsheet formulas, for the ledger.
	inspect("C1", "东湖街道", "区环卫所", at(10, 20, 10, 0), 4*h, map[string]string{
		"title": `=HYPERLINK("http://evil.example","点我")`, "detail": "+86 138 0000 0000 报告", "requirement": "-清理现场",
		"site": "@东湖公园", "village": "=SUM(A1:A9)",
	}, rectify(8*h, tkRoads))
	// C2 东湖街道/城南环卫站  10-21 10:00, due 4h, rectified 2h, verified
	inspect("C2", "东湖街道", "城南环卫站", at(10, 21, 10, 0), 4*h, nil, rectify(2*h, tkSouth), verify(3*h))
	// A5 bin_full 东湖街道/区环卫所  10-22 09:00, due 2h, emptied after 3h: closed itself late
	alert("A5", "tk-bin-dh", at(10, 22, 9, 0), 3*h)
	// X1 解放街道/区环卫所  11-01 00:30 (still 10-31 in UTC): November, due 24h, open
	inspect("X1", "解放街道", "区环卫所", at(11, 1, 0, 30), 24*h, nil)

	// Reports and lists as of 2 December, 12:00.
	clk.Set(at(12, 2, 12, 0))

	type row struct {
		Rank            int      `json:"rank"`
		Name            string   `json:"name"`
		Opened          int      `json:"opened"`
		Rectified       int      `json:"rectified"`
		RectifiedOnTime int      `json:"rectified_on_time"`
		Overdue         int      `json:"overdue"`
		OnTimeRate      float64  `json:"on_time_rate"`
		Median          *float64 `json:"median_hours_to_rectify"`
	}
	type ranking struct {
		Month string `json:"month"`
		By    string `json:"by"`
		Items []row  `json:"items"`
		Total int    `json:"total"`
	}
	hours := func(x float64) *float64 { return &x }
	check := func(query, month, by string, want []row) {
		t.Helper()
		var got ranking
		api.must(tkViewer, "GET", "/api/v1/reports/ranking"+query, nil, http.StatusOK, &got)
		a, _ := json.Marshal(got.Items)
		b, _ := json.Marshal(want)
		if got.Month != month || got.By != by || got.Total != len(want) || string(a) != string(b) {
			t.Errorf("ranking%s: month %q by %q total %d\n got %s\nwant %s", query, got.Month, got.By, got.Total, a, b)
		}
	}
	// A ticket counts as rectified when it has a rectified_at, or when it
	// closed itself because its condition cleared (the bin was emptied:
	// the work was done, at closed_at); on time when that is not after
	// the deadline. Overdue = rectified late + still pending past the
	// deadline (as of 12-02 12:00). on_time_rate = on time / opened.
	//
	// By street, October:
	//   城南街道 N1 1h ✓, B1 12h ✓, B2 20h ✓ (the reopened 4h does not count), B3 pending, not due
	//     opened 4, rectified 3, on time 3, overdue 0, rate 3/4 = 0.75, median(1, 12, 20) = 12
	//   解放街道 A1 6h ✓, A2 30h late, A3 pending past due, A4 1h ✓ (auto-closed)
	//     opened 4, rectified 3, on time 2, overdue 2, rate 2/4 = 0.5, median(1, 6, 30) = 6
	//   东湖街道 C1 8h late, C2 2h ✓, A5 3h late (auto-closed after its deadline)
	//     opened 3, rectified 3, on time 1, overdue 2, rate 1/3 = 0.3333, median(2, 3, 8) = 3
	//   (completion, rectified/opened: 3/4, 3/4, 3/3.) X1 is November's.
	check("?month=2026-10&by=street", "2026-10", "street", []row{
		{1, "城南街道", 4, 3, 3, 0, 0.75, hours(12)},
		{2, "解放街道", 4, 3, 2, 2, 0.5, hours(6)},
		{3, "东湖街道", 3, 3, 1, 2, 0.3333, hours(3)},
	})
	// By org_unit, October:
	//   城南环卫站 N1 1h ✓, B1 12h ✓, B2 20h ✓, B3 pending, C2 2h ✓
	//     opened 5, rectified 4, on time 4, overdue 0, rate 4/5 = 0.8, median(1, 2, 12, 20) = (2+12)/2 = 7
	//   区环卫所 A1 6h ✓, A2 30h late, A3 pending past due, A4 1h ✓, C1 8h late, A5 3h late
	//     opened 6, rectified 5, on time 2, overdue 4, rate 2/6 = 0.3333, median(1, 3, 6, 8, 30) = 6
	check("?month=2026-10&by=org_unit", "2026-10", "org_unit", []row{
		{1, "城南环卫站", 5, 4, 4, 0, 0.8, hours(7)},
		{2, "区环卫所", 6, 5, 2, 4, 0.3333, hours(6)},
	})
	// `sanitel report` reads the same ticket database: the same October rows,
	// as JSON and as a table.
	for _, by := range []string{"street", "org_unit"} {
		var fromAPI, fromCLI ranking
		api.must(tkViewer, "GET", "/api/v1/reports/ranking?month=2026-10&by="+by, nil, http.StatusOK, &fromAPI)
		out, err := exec.Command(sanitelBin, "report", "--config", s.cfgPath, "--month", "2026-10", "--by", by, "--format", "json").Output()
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			t.Fatalf("sanitel report --by %s: %v\n%s", by, err, ee.Stderr)
		} else if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &fromCLI); err != nil {
			t.Fatalf("sanitel report --format json: %v\n%s", err, out)
		}
		a, _ := json.Marshal(fromAPI)
		c, _ := json.Marshal(fromCLI)
		if string(a) != string(c) {
			t.Errorf("sanitel report --by %s:\n%s\nthe API:\n%s", by, c, a)
		}
		table, err := exec.Command(sanitelBin, "report", "--config", s.cfgPath, "--month", "2026-10", "--by", by).Output()
		if err != nil {
			t.Fatalf("sanitel report table: %v", err)
		}
		for _, it := range fromAPI.Items {
			if !strings.Contains(string(table), it.Name) {
				t.Errorf("the report table lacks %s:\n%s", it.Name, table)
			}
		}
	}
	// November: 解放街道 X1 open, due 11-02 00:30: opened 1, overdue 1, rate 0, no median.
	check("?month=2026-11&by=street", "2026-11", "street", []row{{1, "解放街道", 1, 0, 0, 1, 0, nil}})
	// Without month and by: the month of sanitel's clock (December: no
	// tickets), by street.
	check("", "2026-12", "street", []row{})
	api.fails(tkViewer, "GET", "/api/v1/reports/ranking?month=2026-13", nil, http.StatusBadRequest, `month: must be YYYY-MM, got "2026-13"`)
	api.fails(tkViewer, "GET", "/api/v1/reports/ranking?month=2026-10&by=village", nil, http.StatusBadRequest, `by: must be street or org_unit, got "village"`)

	t.Run("filters and paging", func(t *testing.T) {
		api := tkAPI{t: t, base: s.URL}
		names := map[int64]string{}
		for n, id := range ids {
			names[id] = n
		}
		// Statuses as of 12-02 12:00:
		//   open: X1; acknowledged: A3, B3; rectified: A2, B1, C1;
		//   closed: N1, A1, A4, B2, C2, A5. Overdue (open or acknowledged,
		//   past the deadline): A3, X1.
		cases := []struct {
			query string
			want  string // names, newest first
		}{
			{"", "X1 A5 C2 C1 B3 B2 B1 A4 A3 A2 A1 N1"},
			{"status=open", "X1"},
			{"status=open,acknowledged", "X1 B3 A3"},
			{"status=rectified&status=acknowledged", "C1 B3 B1 A3 A2"},
			{"street=解放街道", "X1 A4 A3 A2 A1"},
			{"org_unit=城南环卫站", "C2 B3 B2 B1 N1"},
			{"org_unit=区环卫所&street=东湖街道", "A5 C1"},
			{"rule=bin_full", "A5 A4"},
			{"source=inspection&status=closed", "C2 B2 A1 N1"},
			{"device_id=tk-bin-dh", "A5"},
			{"overdue=true", "X1 A3"},
			{"overdue=false&status=acknowledged", "B3"},
			{"from=2026-10-01&to=2026-10-31", "A5 C2 C1 B3 B2 B1 A4 A3 A2 A1 N1"},
			{"from=2026-11-01", "X1"},
			{"to=2026-10-01", "N1"},
			{"from=2026-10-20T00:00:00%2B08:00&to=2026-10-22T00:00:00%2B08:00", "C2 C1"},
			{"street=解放街道&overdue=true&from=2026-10-01&to=2026-10-31", "A3"},
			{"severity=critical", "A5 A4"},
			{"status=closed&street=城南街道", "B2 N1"},
			{"street=无此街道", ""},
		}
		for _, c := range cases {
			l := api.list(tkOffice, c.query)
			var got []string
			for _, it := range l.Items {
				got = append(got, names[it.ID])
			}
			if strings.Join(got, " ") != c.want || l.Total != len(got) || l.Next != "" {
				t.Errorf("?%s: %q (total %d, next %q), want %q", c.query, strings.Join(got, " "), l.Total, l.Next, c.want)
			}
		}
		for _, it := range api.list(tkOffice, "").Items {
			if want := it.ID == ids["A3"] || it.ID == ids["X1"]; it.Overdue != want || it.History != nil {
				t.Errorf("%s listed with overdue %v (want %v) and history %v (lists leave it out)", names[it.ID], it.Overdue, want, it.History)
			}
		}

		// Pages of 5 under a filter: total is every match, next is the
		// cursor, the last page has none, nothing is repeated or skipped.
		page := func(query string, size int) []string {
			var all []string
			cursor := ""
			for n := 0; ; n++ {
				l := api.list(tkOffice, query+fmt.Sprintf("&limit=%d&cursor=%s", size, cursor))
				matching := api.list(tkOffice, query).Total
				if l.Total != matching || len(l.Items) > size {
					t.Fatalf("?%s page %d: %d items, total %d, want ≤ %d and %d", query, n, len(l.Items), l.Total, size, matching)
				}
				for _, it := range l.Items {
					all = append(all, names[it.ID])
				}
				if l.Next == "" {
					if len(all) != matching {
						t.Errorf("?%s: pages ended after %d of %d", query, len(all), matching)
					}
					return all
				}
				if len(l.Items) != size {
					t.Fatalf("?%s page %d: %d items and a next cursor", query, n, len(l.Items))
				}
				cursor = l.Next
			}
		}
		if got := strings.Join(page("source=inspection,alert", 5), " "); got != "X1 A5 C2 C1 B3 B2 B1 A4 A3 A2 A1 N1" {
			t.Errorf("pages of 5: %s", got)
		}
		if got := strings.Join(page("org_unit=区环卫所", 4), " "); got != "X1 A5 C1 A4 A3 A2 A1" {
			t.Errorf("区环卫所 in pages of 4: %s", got)
		}
		if got := strings.Join(page("status=closed", 6), " "); got != "A5 C2 B2 A4 A1 N1" {
			t.Errorf("closed in one full page of 6: %s", got)
		}
		// A unit sees its own tickets only, whatever it asks for.
		if l := api.list(tkRoads, "limit=1000"); l.Total != 7 {
			t.Errorf("roads-unit lists %d tickets, want 7", l.Total)
		}
		if l := api.list(tkSouth, "org_unit=区环卫所"); l.Total != 0 || len(l.Items) != 0 {
			t.Errorf("south-unit asking for 区环卫所: %d tickets, want none", l.Total)
		}
		for _, bad := range []struct{ query, msg string }{
			{"status=bogus", `status: unknown status "bogus"`},
			{"severity=high", `severity: unknown severity "high"`},
			{"source=phone", `source: unknown source "phone"`},
			{"overdue=maybe", `overdue: must be true or false, got "maybe"`},
			{"limit=0", `limit: must be 1..1000, got "0"`},
			{"limit=1001", `limit: must be 1..1000, got "1001"`},
			{"cursor=not-a-cursor", "cursor: not a cursor from this API"},
			{"from=yesterday", `from: must be RFC 3339 or YYYY-MM-DD, got "yesterday"`},
			{"from=2026-10-05&to=2026-10-01", "to: must be after from"},
		} {
			api.fails(tkOffice, "GET", "/api/v1/tickets?"+bad.query, nil, http.StatusBadRequest, bad.msg)
		}
	})

	t.Run("ledger", func(t *testing.T) {
		api := tkAPI{t: t, base: s.URL}
		code, body, hdr := api.do(tkViewer, "GET", "/api/v1/tickets.csv?from=2026-10-01&to=2026-10-31", nil)
		if code != http.StatusOK || hdr.Get("Content-Type") != "text/csv; charset=utf-8" ||
			hdr.Get("Content-Disposition") != `attachment; filename="sanitel-tickets-20261202.csv"` {
			t.Fatalf("GET /api/v1/tickets.csv: %d %v", code, hdr)
		}
		if !bytes.HasPrefix(body, []byte("\xEF\xBB\xBF")) {
			t.Fatalf("ledger does not start with a UTF-8 BOM: % x", body[:min(8, len(body))])
		}
		records, err := csv.NewReader(bytes.NewReader(body[3:])).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(records[0], tickets.LedgerColumns) {
			t.Errorf("header %v", records[0])
		}
		col := map[string]int{}
		for i, c := range records[0] {
			col[c] = i
		}
		rows := map[string][]string{}
		byID := map[string]string{}
		for n, id := range ids {
			byID[fmt.Sprint(id)] = n
		}
		for _, r := range records[1:] {
			rows[byID[r[col["id"]]]] = r
		}
		if len(records) != 12 || rows["X1"] != nil {
			t.Errorf("ledger of October: %d rows, want 11 (X1 is November's)", len(records)-1)
		}
		c1 := rows["C1"]
		want := map[string]string{
			"title": `'=HYPERLINK("http://evil.example","点我")`, "detail": "'+86 138 0000 0000 报告",
			"requirement": "'-清理现场", "site": "'@东湖公园", "village": "'=SUM(A1:A9)", "street": "东湖街道", "org_unit": "区环卫所",
			"source": "inspection", "status": "rectified", "opened_at": "2026-10-20T10:00:00+08:00",
			"deadline": "2026-10-20T14:00:00+08:00", "rectified_at": "2026-10-20T18:00:00+08:00", "overdue": "false",
			"last_action": "rectify", "last_action_at": "2026-10-20T18:00:00+08:00", "history_entries": "2",
		}
		for k, v := range want {
			if c1 == nil || c1[col[k]] != v {
				t.Errorf("ledger C1 %s = %q, want %q", k, c1[col[k]], v)
			}
		}
		// The API keeps the text as it was given.
		if tk := api.get(tkOffice, ids["C1"]); tk.Title != `=HYPERLINK("http://evil.example","点我")` || tk.Site != "@东湖公园" {
			t.Errorf("C1 over the API: title %q site %q", tk.Title, tk.Site)
		}
		a4 := rows["A4"]
		if a4 == nil || a4[col["rule"]] != "bin_full" || a4[col["status"]] != "closed" || a4[col["site"]] != "解放路菜市场" ||
			a4[col["village"]] != "和平社区" || a4[col["device_id"]] != "tk-bin-jf" || a4[col["auto_close"]] != "true" ||
			a4[col["closed_at"]] != "2026-10-08T10:00:00+08:00" || a4[col["last_action"]] != "auto_close" ||
			!tkNumber.MatchString(a4[col["number"]]) || !strings.Contains(a4[col["number"]], "-20261008-") {
			t.Errorf("ledger A4: %v", a4)
		}
		if n1 := rows["N1"]; n1 == nil || !strings.Contains(n1[col["number"]], "-20261001-") || n1[col["opened_at"]] != "2026-10-01T00:30:00+08:00" {
			t.Errorf("ledger N1 (numbered by its day in Shanghai): %v", n1)
		}
		// A unit's ledger has only its own tickets; a filter applies.
		code, body, _ = api.do(tkSouth, "GET", "/api/v1/tickets.csv?status=closed", nil)
		records, err = csv.NewReader(bytes.NewReader(bytes.TrimPrefix(body, []byte("\xEF\xBB\xBF")))).ReadAll()
		if err != nil || code != http.StatusOK {
			t.Fatalf("south-unit ledger: %d %v", code, err)
		}
		var got []string
		for _, r := range records[1:] {
			got = append(got, byID[r[col["id"]]]+"/"+r[col["org_unit"]])
		}
		if strings.Join(got, " ") != "C2/城南环卫站 B2/城南环卫站 N1/城南环卫站" {
			t.Errorf("south-unit's closed tickets in the ledger: %v", got)
		}
		api.fails(tkViewer, "GET", "/api/v1/tickets.csv?status=bogus", nil, http.StatusBadRequest, `status: unknown status "bogus"`)
		api.fails("", "GET", "/api/v1/tickets.csv", nil, http.StatusUnauthorized, "missing or unknown bearer token")
	})
}
