package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sanitel/sanitel/tickets"
)

var t0 = time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC) // 10:00 in Shanghai

const (
	officeToken = "office-token-0123456789"
	roadsToken  = "roads-token-0123456789"
	parksToken  = "parks-token-0123456789"
	screenToken = "screen-token-0123456789"
	opsToken    = "ops-token-0123456789abc"
)

var testTokens = []Token{
	{Name: "office", Role: "supervisor", Token: officeToken},
	{Name: "roads-unit", Role: "unit", OrgUnit: "区环卫所", Token: roadsToken},
	{Name: "parks-unit", Role: "unit", OrgUnit: "园林所", Token: parksToken},
	{Name: "depot-screen", Role: "viewer", Token: screenToken},
	{Name: "ops", Role: "admin", Token: opsToken},
}

type fakeDevices []DeviceStatus

func (f fakeDevices) Devices() []DeviceStatus { return f }
func (f fakeDevices) Device(id string) (DeviceStatus, bool) {
	for _, d := range f {
		if d.ID == id {
			return d, true
		}
	}
	return DeviceStatus{}, false
}

type fakeDead []DeadLetter

func (f fakeDead) DeadLetters() []DeadLetter { return f }

type env struct {
	t       *testing.T
	svc     *tickets.Service
	handler http.Handler
	now     time.Time
	logs    *bytes.Buffer
}

func newEnv(t *testing.T, mod ...func(*Options)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := tickets.OpenSQLite(ctx, filepath.Join(t.TempDir(), "tickets.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, now: t0, logs: &bytes.Buffer{}}
	now := func() time.Time { return e.now }
	e.svc, err = tickets.New(tickets.Options{Store: st, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	seen := t0.Add(-time.Minute)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "sanitel_test_total", Help: "x"}))
	opts := Options{
		Tickets: e.svc,
		Tokens:  testTokens,
		Devices: fakeDevices{
			{ID: "bin-0002", Kind: "bin", Street: "东湖街道", OrgUnit: "园林所", Online: false},
			{ID: "bin-0001", Kind: "bin", Site: "人民路12号", Street: "城关街道", OrgUnit: "区环卫所", Lat: 30.1, Lon: 120.2,
				LastReading: map[string]float64{"fill_pct": 82}, LastSeen: &seen, Online: true, Status: "online"},
			{ID: "toilet-0001", Kind: "toilet", Street: "城关街道", OrgUnit: "区环卫所", ToiletClass: 2, Online: true},
		},
		DeadLetters: fakeDead{
			{At: t0, Topic: "sanitation/bin/x/telemetry", Reason: "unknown_device", Payload: `{"fill_pct":1}`},
			{At: t0.Add(-time.Minute), Topic: "sanitation/bin/bin-0001/telemetry", Reason: "bad_json", Payload: "{"},
			{At: t0.Add(-2 * time.Minute), Topic: "sanitation/bin/y/telemetry", Reason: "unknown_device", Payload: "{}"},
		},
		Gatherer:     reg,
		Logger:       slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxBodyBytes: 4096,
		Now:          now,
	}
	for _, m := range mod {
		m(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.handler = srv.Handler()
	return e
}

type resp struct {
	code   int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

func (r resp) errMsg(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	if len(m) != 1 {
		t.Errorf("error answer %s", r.body)
	}
	s, _ := m["error"].(string)
	return s
}

// call makes a request; a body is sent as JSON unless a Content-Type is given.
func (e *env) call(method, path, token, body string, header ...string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, req)
	return resp{code: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

func (e *env) raise(device, orgUnit string) tickets.Ticket {
	e.t.Helper()
	tk, _, err := e.svc.Raise(context.Background(), tickets.Alert{
		Rule: "bin_full", Severity: "warning", DeviceID: device, Kind: "bin", Street: "城关街道",
		OrgUnit: orgUnit, Title: "垃圾桶满溢", Detail: "fill_pct 82 ≥ 80", Requirement: "2小时内清运",
		Deadline: 2 * time.Hour, FiredAt: e.now,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return tk
}

const manualBody = `{"street":"城关街道","org_unit":"区环卫所","title":"公厕地面积水","requirement":"当日整改",
	"severity":"warning","deadline":"2026-11-29T18:00:00+08:00"}`

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		name, header string
	}{
		{"no header", ""},
		{"wrong token", "Bearer nope"},
		{"prefix of a token", "Bearer " + officeToken[:10]},
		{"basic auth", "Basic b2ZmaWNlOng="},
		{"empty bearer", "Bearer "},
	} {
		r := e.call("GET", "/api/v1/tickets", "", "", "Authorization", c.header)
		if r.code != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d %v", c.name, r.code, r.header)
		}
		if r.errMsg(t) == "" {
			t.Errorf("%s: no error message", c.name)
		}
	}
	for _, tok := range []string{officeToken, roadsToken, screenToken, opsToken} {
		if r := e.call("GET", "/api/v1/tickets", tok, ""); r.code != http.StatusOK {
			t.Errorf("token %s…: %d", tok[:6], r.code)
		}
	}
	if r := e.call("GET", "/api/v1/tickets", "", "", "Authorization", "bearer "+officeToken); r.code != http.StatusOK {
		t.Errorf("lower-case scheme: %d", r.code)
	}
	// Public endpoints.
	if r := e.call("GET", "/healthz", "", ""); r.code != 200 || r.json(t)["status"] != "ok" {
		t.Errorf("healthz: %d %s", r.code, r.body)
	}
	if r := e.call("GET", "/metrics", "", ""); r.code != 200 || !bytes.Contains(r.body, []byte("sanitel_test_total")) {
		t.Errorf("metrics: %d %s", r.code, r.body)
	}
	if r := e.call("GET", "/readyz", "", ""); r.code != 200 {
		t.Errorf("readyz: %d", r.code)
	}
	if strings.Contains(e.logs.String(), officeToken) {
		t.Error("a token was logged")
	}
	if !strings.Contains(e.logs.String(), "status=401") {
		t.Errorf("no access log: %s", e.logs)
	}
}

func TestNewChecksTokens(t *testing.T) {
	e := newEnv(t)
	for _, bad := range [][]Token{
		{{Name: "x", Role: "root", Token: "t"}},
		{{Name: "", Role: "admin", Token: "t"}},
		{{Name: "u", Role: "unit", Token: "t"}},
		{{Name: "a", Role: "admin", Token: ""}},
		{{Name: "a", Role: "admin", Token: "same"}, {Name: "b", Role: "viewer", Token: "same"}},
	} {
		if _, err := New(Options{Tickets: e.svc, Tokens: bad}); err == nil {
			t.Errorf("tokens %+v accepted", bad)
		}
	}
	if _, err := New(Options{}); err == nil {
		t.Error("no ticket service accepted")
	}
}

func TestRoles(t *testing.T) {
	e := newEnv(t)
	roads := e.raise("bin-0001", "区环卫所")
	parks := e.raise("bin-0002", "园林所")
	cases := []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"viewer creates", "POST", "/api/v1/tickets", screenToken, manualBody, 403},
		{"unit creates", "POST", "/api/v1/tickets", roadsToken, manualBody, 403},
		{"viewer acks", "POST", fmt.Sprintf("/api/v1/tickets/%d/ack", roads.ID), screenToken, "", 403},
		{"unit acks other unit's ticket", "POST", fmt.Sprintf("/api/v1/tickets/%d/ack", parks.ID), roadsToken, "", 403},
		{"unit verifies", "POST", fmt.Sprintf("/api/v1/tickets/%d/verify", roads.ID), roadsToken, "", 403},
		{"unit reopens", "POST", fmt.Sprintf("/api/v1/tickets/%d/reopen", roads.ID), roadsToken, "", 403},
		{"unit reads other unit's ticket", "GET", fmt.Sprintf("/api/v1/tickets/%d", parks.ID), roadsToken, "", 404},
		{"unit reads own ticket", "GET", fmt.Sprintf("/api/v1/tickets/%d", roads.ID), roadsToken, "", 200},
		{"viewer reads", "GET", fmt.Sprintf("/api/v1/tickets/%d", parks.ID), screenToken, "", 200},
		{"unit acks own", "POST", fmt.Sprintf("/api/v1/tickets/%d/ack", roads.ID), roadsToken, "", 200},
		{"supervisor creates", "POST", "/api/v1/tickets", officeToken, manualBody, 201},
		{"admin verifies too early", "POST", fmt.Sprintf("/api/v1/tickets/%d/verify", parks.ID), opsToken, "", 409},
	}
	for _, c := range cases {
		r := e.call(c.method, c.path, c.token, c.body)
		if r.code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, r.code, r.body, c.want)
		}
	}
}

func TestUnitListsOnlyOwnOrgUnit(t *testing.T) {
	e := newEnv(t)
	e.raise("bin-0001", "区环卫所")
	e.raise("bin-0002", "园林所")
	e.raise("bin-0003", "区环卫所")
	ids := func(r resp) []string {
		var l struct {
			Items []tickets.Ticket `json:"items"`
			Total int              `json:"total"`
			Next  *string          `json:"next"`
		}
		if err := json.Unmarshal(r.body, &l); err != nil || l.Next == nil {
			t.Fatalf("list %s: %v", r.body, err)
		}
		var out []string
		for _, it := range l.Items {
			out = append(out, it.DeviceID+"@"+it.OrgUnit)
		}
		if l.Total != len(out) {
			t.Errorf("total %d for %d items", l.Total, len(out))
		}
		return out
	}
	if got := ids(e.call("GET", "/api/v1/tickets", roadsToken, "")); !slices.Equal(got, []string{"bin-0003@区环卫所", "bin-0001@区环卫所"}) {
		t.Errorf("roads unit sees %v", got)
	}
	if got := ids(e.call("GET", "/api/v1/tickets?org_unit=园林所", roadsToken, "")); len(got) != 0 {
		t.Errorf("roads unit asking for parks sees %v", got)
	}
	if got := ids(e.call("GET", "/api/v1/tickets?org_unit=园林所", screenToken, "")); !slices.Equal(got, []string{"bin-0002@园林所"}) {
		t.Errorf("viewer filtering parks sees %v", got)
	}
	if got := ids(e.call("GET", "/api/v1/tickets", screenToken, "")); len(got) != 3 {
		t.Errorf("viewer sees %v", got)
	}
	r := e.call("GET", "/api/v1/tickets.csv", roadsToken, "")
	if n := bytes.Count(r.body, []byte("\n")); n != 3 || bytes.Contains(r.body, []byte("园林所")) {
		t.Errorf("unit export:\n%s", r.body)
	}
}

func TestListQuery(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		e.now = t0.Add(time.Duration(i) * time.Hour)
		e.raise(fmt.Sprintf("bin-%04d", i), "区环卫所")
	}
	tk := e.raise("bin-0009", "区环卫所")
	if r := e.call("POST", fmt.Sprintf("/api/v1/tickets/%d/ack", tk.ID), roadsToken, ""); r.code != 200 {
		t.Fatalf("ack: %d %s", r.code, r.body)
	}
	count := func(q string) (int, string) {
		t.Helper()
		r := e.call("GET", "/api/v1/tickets"+q, screenToken, "")
		if r.code != 200 {
			t.Fatalf("%s: %d %s", q, r.code, r.body)
		}
		m := r.json(t)
		return len(m["items"].([]any)), m["next"].(string)
	}
	for q, want := range map[string]int{
		"?status=open,acknowledged":  6,
		"?status=acknowledged":       1,
		"?status=open&status=closed": 5,
		"?overdue=true":              2, // opened at +0h and +1h, deadline 2h, now +4h
		"?overdue=false":             4,
		"?from=2026-11-28T03:00:00Z": 5,
		"?to=2026-11-28":             6, // a date includes the whole day (Shanghai)
		"?to=2026-11-28T03:00:00Z":   1,
		"?device_id=bin-0001,bin-0002&rule=bin_full&severity=warning&source=alert&street=城关街道": 2,
	} {
		if got, _ := count(q); got != want {
			t.Errorf("%s: %d tickets, want %d", q, got, want)
		}
	}
	n, next := count("?limit=4")
	if n != 4 || next == "" {
		t.Fatalf("first page %d next %q", n, next)
	}
	if n, next2 := count("?limit=4&cursor=" + next); n != 2 || next2 != "" {
		t.Errorf("second page %d next %q", n, next2)
	}
	for q, param := range map[string]string{
		"?overdue=maybe": "overdue", "?limit=0": "limit", "?limit=1001": "limit", "?status=done": "status",
		"?from=yesterday": "from", "?to=2026-13-01": "to", "?cursor=zzz": "cursor", "?severity=high": "severity",
	} {
		r := e.call("GET", "/api/v1/tickets"+q, screenToken, "")
		if msg := r.errMsg(t); r.code != 400 || !strings.HasPrefix(msg, param+":") {
			t.Errorf("%s: %d %q, want 400 naming %s", q, r.code, msg, param)
		}
	}
}

func TestLifecycleOverHTTP(t *testing.T) {
	e := newEnv(t)
	r := e.call("POST", "/api/v1/tickets", officeToken, manualBody)
	if r.code != http.StatusCreated {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	var tk tickets.Ticket
	json.Unmarshal(r.body, &tk)
	if r.header.Get("Location") != fmt.Sprintf("/api/v1/tickets/%d", tk.ID) || tk.Source != "inspection" ||
		tk.Number != "DB-20261128-0001" || tk.Deadline.Format(time.RFC3339) != "2026-11-29T10:00:00Z" {
		t.Errorf("created %+v, Location %q", tk, r.header.Get("Location"))
	}
	base := fmt.Sprintf("/api/v1/tickets/%d/", tk.ID)
	steps := []struct {
		action, token, body string
		status              string
	}{
		{"ack", roadsToken, `{"by":"李师傅","note":"已安排"}`, "acknowledged"},
		{"rectify", roadsToken, "", "rectified"},
		{"reopen", officeToken, `{"note":"仍有积水"}`, "open"},
		{"rectify", roadsToken, `{}`, "rectified"},
		{"verify", officeToken, `{"by":"王科长"}`, "closed"},
		{"verify", opsToken, "", "closed"}, // closing twice is fine
	}
	for _, s := range steps {
		r := e.call("POST", base+s.action, s.token, s.body)
		if r.code != 200 || r.json(t)["status"] != s.status {
			t.Fatalf("%s: %d %s", s.action, r.code, r.body)
		}
	}
	r = e.call("GET", fmt.Sprintf("/api/v1/tickets/%d", tk.ID), screenToken, "")
	var got tickets.Ticket
	json.Unmarshal(r.body, &got)
	var hist []string
	for _, h := range got.History {
		hist = append(hist, h.Action+"/"+h.By)
	}
	want := []string{"open/office", "ack/李师傅", "rectify/roads-unit", "reopen/office", "rectify/roads-unit", "verify/王科长"}
	if !slices.Equal(hist, want) {
		t.Errorf("history %v, want %v", hist, want)
	}
	if r := e.call("POST", base+"close", officeToken, ""); r.code != 404 {
		t.Errorf("unknown action: %d", r.code)
	}
	if r := e.call("POST", "/api/v1/tickets/999/ack", officeToken, ""); r.code != 404 {
		t.Errorf("unknown ticket: %d", r.code)
	}
	if r := e.call("GET", "/api/v1/tickets/abc", officeToken, ""); r.code != 400 || !strings.HasPrefix(r.errMsg(t), "id:") {
		t.Errorf("bad id: %d %s", r.code, r.body)
	}
}

func TestConflictHasReason(t *testing.T) {
	e := newEnv(t)
	tk := e.raise("bin-0001", "区环卫所")
	r := e.call("POST", fmt.Sprintf("/api/v1/tickets/%d/verify", tk.ID), officeToken, `{"note":"看过了"}`)
	if r.code != http.StatusConflict || r.errMsg(t) != "cannot verify a ticket that is open (it must be rectified first)" {
		t.Errorf("%d %s", r.code, r.body)
	}
}

func TestBadBodies(t *testing.T) {
	e := newEnv(t)
	tk := e.raise("bin-0001", "区环卫所")
	ack := fmt.Sprintf("/api/v1/tickets/%d/ack", tk.ID)
	cases := []struct {
		name, path, body string
		header           []string
		want             int
		msgPrefix        string
	}{
		{"bad JSON", "/api/v1/tickets", `{"street":`, nil, 400, "bad JSON"},
		{"not an object", "/api/v1/tickets", `[1,2]`, nil, 400, "bad JSON"},
		{"two values", "/api/v1/tickets", manualBody + manualBody, nil, 400, "bad JSON"},
		{"missing title", "/api/v1/tickets", strings.Replace(manualBody, `"title":"公厕地面积水",`, "", 1), nil, 400, "title:"},
		{"missing deadline", "/api/v1/tickets", strings.Replace(manualBody, `,
	"severity":"warning","deadline":"2026-11-29T18:00:00+08:00"`, `,"severity":"warning"`, 1), nil, 400, "deadline:"},
		{"bad deadline", "/api/v1/tickets", strings.Replace(manualBody, "2026-11-29T18:00:00+08:00", "tomorrow", 1), nil, 400, "deadline:"},
		{"past deadline", "/api/v1/tickets", strings.Replace(manualBody, "2026-11-29T18:00:00+08:00", "2026-11-28T09:00:00+08:00", 1), nil, 400, "deadline:"},
		{"wrong type", "/api/v1/tickets", `{"title": 5}`, nil, 400, "title:"},
		{"unknown field", "/api/v1/tickets", `{"titel":"x"}`, nil, 400, "bad JSON"},
		{"empty body", "/api/v1/tickets", "", []string{"Content-Type", "application/json"}, 400, "bad JSON"},
		{"too large", "/api/v1/tickets", `{"detail":"` + strings.Repeat("长", 2000) + `"}`, nil, 413, ""},
		{"not JSON", "/api/v1/tickets", "street=x", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, ""},
		{"no content type", ack, `{"note":"x"}`, []string{"Content-Type", ""}, 415, ""},
		{"bad transition JSON", ack, `{"note":}`, nil, 400, "bad JSON"},
		{"invalid UTF-8", "/api/v1/tickets", strings.Replace(manualBody, "公厕地面积水", "\xff\xfe", 1), nil, 400, "bad JSON: the body is not valid UTF-8"},
		{"invalid UTF-8 in a transition", ack, "{\"by\":\"\xff\xfe\"}", nil, 400, "bad JSON: the body is not valid UTF-8"},
		{"a second object", ack, `{"note":"x"} {"note":"y"}`, nil, 400, "bad JSON"},
	}
	for _, c := range cases {
		r := e.call("POST", c.path, officeToken, c.body, c.header...)
		msg := r.errMsg(t)
		if r.code != c.want || !strings.HasPrefix(msg, c.msgPrefix) {
			t.Errorf("%s: %d %q, want %d %s…", c.name, r.code, msg, c.want, c.msgPrefix)
		}
	}
	// A chunked body without a length is cut off at the limit too.
	req := httptest.NewRequest("POST", "/api/v1/tickets", io.MultiReader(strings.NewReader(`{"detail":"`), strings.NewReader(strings.Repeat("x", 8000)), strings.NewReader(`"}`)))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+officeToken)
	w := httptest.NewRecorder()
	e.handler.ServeHTTP(w, req)
	if w.Code != 413 {
		t.Errorf("chunked too large: %d %s", w.Code, w.Body)
	}
}

func TestRoutingErrorsAreJSON(t *testing.T) {
	e := newEnv(t)
	r := e.call("DELETE", "/api/v1/tickets", officeToken, "")
	if r.code != 405 || r.errMsg(t) != "method not allowed" || !strings.Contains(r.header.Get("Allow"), "GET") {
		t.Errorf("405: %d %v %s", r.code, r.header, r.body)
	}
	r = e.call("GET", "/api/v1/nothing", officeToken, "")
	if r.code != 404 || r.errMsg(t) != "not found" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("404: %d %v %s", r.code, r.header, r.body)
	}
}

func TestCSVExport(t *testing.T) {
	e := newEnv(t)
	e.raise("bin-0001", "区环卫所")
	r := e.call("GET", "/api/v1/tickets.csv?status=open", screenToken, "")
	if r.code != 200 || r.header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("%d %v", r.code, r.header)
	}
	if cd := r.header.Get("Content-Disposition"); cd != `attachment; filename="sanitel-tickets-20261128.csv"` {
		t.Errorf("Content-Disposition %q", cd)
	}
	if !bytes.HasPrefix(r.body, []byte("\xEF\xBB\xBFid,number,")) || !bytes.Contains(r.body, []byte("城关街道")) {
		t.Errorf("body %q", r.body)
	}
	if r := e.call("GET", "/api/v1/tickets.csv?status=nope", screenToken, ""); r.code != 400 {
		t.Errorf("bad filter: %d", r.code)
	}
}

func TestRankingShape(t *testing.T) {
	e := newEnv(t)
	tk := e.raise("bin-0001", "区环卫所")
	e.now = t0.Add(time.Hour)
	e.call("POST", fmt.Sprintf("/api/v1/tickets/%d/rectify", tk.ID), roadsToken, "")
	r := e.call("GET", "/api/v1/reports/ranking?by=org_unit", screenToken, "")
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	m := r.json(t)
	if m["month"] != "2026-11" || m["by"] != "org_unit" || m["total"] != 1.0 {
		t.Errorf("answer %s", r.body)
	}
	row := m["items"].([]any)[0].(map[string]any)
	var keys []string
	for k := range row {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{"median_hours_to_rectify", "name", "on_time_rate", "opened", "overdue", "rank", "rectified", "rectified_on_time"}
	if !slices.Equal(keys, want) {
		t.Errorf("row keys %v", keys)
	}
	if row["rank"] != 1.0 || row["name"] != "区环卫所" || row["on_time_rate"] != 1.0 || row["median_hours_to_rectify"] != 1.0 {
		t.Errorf("row %v", row)
	}
	r = e.call("GET", "/api/v1/reports/ranking?month=2026-10", screenToken, "")
	if m := r.json(t); m["by"] != "street" || m["total"] != 0.0 || len(m["items"].([]any)) != 0 {
		t.Errorf("empty month: %s", r.body)
	}
	for _, q := range []string{"?month=2026-1", "?by=village"} {
		if r := e.call("GET", "/api/v1/reports/ranking"+q, screenToken, ""); r.code != 400 {
			t.Errorf("%s: %d", q, r.code)
		}
	}
}

func TestReadyz(t *testing.T) {
	var mu sync.Mutex
	brokerErr := errors.New("broker not connected")
	influxErr := errors.New("connection refused")
	e := newEnv(t, func(o *Options) {
		o.Ready = []Check{
			{Name: "store", Fn: func(context.Context) error { return nil }},
			{Name: "broker", Fn: func(context.Context) error { mu.Lock(); defer mu.Unlock(); return brokerErr }},
			{Name: "influxdb", Fn: func(context.Context) error { mu.Lock(); defer mu.Unlock(); return influxErr }, Degrades: true},
		}
	})
	r := e.call("GET", "/readyz", "", "")
	m := r.json(t)
	checks, _ := m["checks"].(map[string]any)
	if r.code != 503 || m["status"] != "not ready" || checks["store"] != "ok" || checks["broker"] != "broker not connected" {
		t.Errorf("%d %s", r.code, r.body)
	}
	mu.Lock()
	brokerErr = nil
	mu.Unlock()
	// InfluxDB down alone leaves sanitel ready (the spool accepts) but says so.
	r = e.call("GET", "/readyz", "", "")
	m = r.json(t)
	checks, _ = m["checks"].(map[string]any)
	if r.code != 200 || m["status"] != "degraded" || checks["influxdb"] != "connection refused" {
		t.Errorf("influx down: %d %s", r.code, r.body)
	}
	mu.Lock()
	influxErr = nil
	mu.Unlock()
	r = e.call("GET", "/readyz", "", "")
	if m := r.json(t); r.code != 200 || m["status"] != "ready" {
		t.Errorf("all ready: %d %s", r.code, r.body)
	}
}

func TestOpenAccessWithoutTokens(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Tokens = nil })
	if !strings.Contains(e.logs.String(), "API is open") {
		t.Errorf("no warning: %s", e.logs)
	}
	r := e.call("POST", "/api/v1/tickets", "", manualBody)
	if r.code != 201 {
		t.Fatalf("create without token: %d %s", r.code, r.body)
	}
	var tk tickets.Ticket
	json.Unmarshal(r.body, &tk)
	if tk.History[0].By != "anonymous" {
		t.Errorf("by %q", tk.History[0].By)
	}
	if r := e.call("GET", "/api/v1/tickets", "whatever", ""); r.code != 200 {
		t.Errorf("list with a stray token: %d", r.code)
	}
}

func TestDevices(t *testing.T) {
	e := newEnv(t)
	e.raise("bin-0001", "区环卫所")
	r := e.call("GET", "/api/v1/devices", screenToken, "")
	var l struct {
		Items []map[string]any `json:"items"`
		Total int              `json:"total"`
		Next  string           `json:"next"`
	}
	json.Unmarshal(r.body, &l)
	if r.code != 200 || l.Total != 3 || len(l.Items) != 3 || l.Items[0]["id"] != "bin-0001" {
		t.Fatalf("%d %s", r.code, r.body)
	}
	d := l.Items[0]
	if d["open_tickets"] != 1.0 || d["org_unit"] != "区环卫所" || d["last_seen"] != "2026-11-28T01:59:00Z" ||
		d["last_reading"].(map[string]any)["fill_pct"] != 82.0 || d["online"] != true || d["lat"] != 30.1 {
		t.Errorf("device %v", d)
	}
	if _, ok := l.Items[1]["dev_eui"]; ok {
		t.Errorf("empty dev_eui not omitted: %v", l.Items[1])
	}
	if l.Items[1]["last_seen"] != nil || l.Items[1]["last_reading"] == nil {
		t.Errorf("never seen device: %v", l.Items[1])
	}
	for q, want := range map[string]int{"?online=true": 2, "?kind=toilet": 1, "?street=城关街道&kind=bin": 1, "?org_unit=园林所": 1} {
		json.Unmarshal(e.call("GET", "/api/v1/devices"+q, screenToken, "").body, &l)
		if l.Total != want {
			t.Errorf("%s: %d devices, want %d", q, l.Total, want)
		}
	}
	json.Unmarshal(e.call("GET", "/api/v1/devices?limit=2", screenToken, "").body, &l)
	if len(l.Items) != 2 || l.Next == "" {
		t.Fatalf("page 1: %+v", l)
	}
	json.Unmarshal(e.call("GET", "/api/v1/devices?limit=2&cursor="+l.Next, screenToken, "").body, &l)
	if len(l.Items) != 1 || l.Items[0]["id"] != "toilet-0001" || l.Next != "" {
		t.Errorf("page 2: %+v", l)
	}
	if r := e.call("GET", "/api/v1/devices/bin-0002", roadsToken, ""); r.code != 200 || r.json(t)["open_tickets"] != 0.0 {
		t.Errorf("one device: %d %s", r.code, r.body)
	}
	if r := e.call("GET", "/api/v1/devices/nope", roadsToken, ""); r.code != 404 {
		t.Errorf("unknown device: %d", r.code)
	}
	if r := e.call("GET", "/api/v1/devices?kind=bin,dog", screenToken, ""); r.code != http.StatusBadRequest || !strings.Contains(string(r.body), `"kind: unknown kind \"dog\"`) {
		t.Errorf("unknown kind filter: %d %s", r.code, r.body)
	}
}

func TestRejected(t *testing.T) {
	e := newEnv(t)
	r := e.call("GET", "/api/v1/rejected", screenToken, "")
	var l struct {
		Items []map[string]any `json:"items"`
		Total int              `json:"total"`
		Next  *string          `json:"next"`
	}
	json.Unmarshal(r.body, &l)
	if r.code != 200 || l.Total != 3 || len(l.Items) != 3 || l.Next == nil || *l.Next != "" {
		t.Fatalf("%d %s", r.code, r.body)
	}
	for _, k := range []string{"at", "topic", "reason", "payload"} {
		if _, ok := l.Items[0][k]; !ok {
			t.Errorf("dead letter lacks %q: %v", k, l.Items[0])
		}
	}
	json.Unmarshal(e.call("GET", "/api/v1/rejected?reason=unknown_device&limit=1", screenToken, "").body, &l)
	if l.Total != 2 || len(l.Items) != 1 || l.Items[0]["topic"] != "sanitation/bin/x/telemetry" {
		t.Errorf("filtered: %+v", l)
	}
	if l.Next == nil || *l.Next == "" {
		t.Fatalf("filtered page 1 of 2 has no next cursor: %+v", l)
	}
	json.Unmarshal(e.call("GET", "/api/v1/rejected?reason=unknown_device&limit=1&cursor="+*l.Next, screenToken, "").body, &l)
	if l.Total != 2 || len(l.Items) != 1 || l.Items[0]["topic"] != "sanitation/bin/y/telemetry" || l.Next == nil || *l.Next != "" {
		t.Errorf("filtered page 2: %+v", l)
	}
	if r := e.call("GET", "/api/v1/rejected?cursor=zzz", screenToken, ""); r.code != http.StatusBadRequest {
		t.Errorf("bad cursor: %d %s", r.code, r.body)
	}
}

// TestRejectedPagesSameInstant pages through dead letters that share one
// timestamp without repeating or skipping any.
func TestRejectedPagesSameInstant(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	var dead fakeDead
	for _, topic := range []string{"a", "b", "c", "d", "e"} {
		dead = append(dead, DeadLetter{At: t0, Topic: topic, Reason: "bad_json"})
	}
	e := newEnv(t, func(o *Options) { o.DeadLetters = dead })
	var got []string
	cursor := ""
	for range 5 {
		var l struct {
			Items []DeadLetter `json:"items"`
			Next  string       `json:"next"`
		}
		json.Unmarshal(e.call("GET", "/api/v1/rejected?limit=2&cursor="+cursor, screenToken, "").body, &l)
		for _, d := range l.Items {
			got = append(got, d.Topic)
		}
		if cursor = l.Next; cursor == "" {
			break
		}
	}
	if strings.Join(got, "") != "abcde" {
		t.Errorf("pages = %q, want abcde", got)
	}
}

// TestMalformedQueriesAreRefused: a query Go cannot parse whole, or a
// filter with too many values, is a 400, never an answer without the
// filters; answers are not cached or sniffed.
func TestMalformedQueriesAreRefused(t *testing.T) {
	e := newEnv(t)
	e.raise("bin-0001", "区环卫所")
	many := strings.Repeat("open,", tickets.MaxFilterValues) + "open"
	for _, c := range []struct{ path, msg string }{
		{"/api/v1/tickets?status=closed;", "bad query string"},
		{"/api/v1/tickets.csv?status=closed;x=1", "bad query string"},
		{"/api/v1/tickets?status=" + many, "status: at most 100 values"},
		{"/api/v1/tickets.csv?status=" + many, "status: at most 100 values"},
	} {
		r := e.call("GET", c.path, officeToken, "")
		if msg := r.errMsg(t); r.code != 400 || !strings.Contains(msg, c.msg) {
			t.Errorf("%.60s: %d %q, want 400 %s", c.path, r.code, msg, c.msg)
		}
	}
	r := e.call("GET", "/api/v1/tickets?status=open", officeToken, "")
	if r.code != 200 || r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("list: %d, headers %v", r.code, r.header)
	}
}
