package desk

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sanitel/sanitel/api"
	"github.com/sanitel/sanitel/tickets"
)

// t0 is 10:00 on 28 November 2026 in Shanghai.
var t0 = time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)

const (
	officeToken = "office-token-0123456789"
	roadsToken  = "roads-token-0123456789"
	parksToken  = "parks-token-0123456789"
	screenToken = "screen-token-0123456789"
)

const (
	roads = "区环卫所"
	parks = "园林所"
)

var testTokens = []api.Token{
	{Name: "office", Role: "supervisor", Token: officeToken},
	{Name: "roads-unit", Role: "unit", OrgUnit: roads, Token: roadsToken},
	{Name: "parks-unit", Role: "unit", OrgUnit: parks, Token: parksToken},
	{Name: "depot-screen", Role: "viewer", Token: screenToken},
}

// clock is the tickets' and the desk's time, moved by the test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// registry is a device source of three devices whose open ticket counts
// come from the ticket store.
type registry struct {
	svc  *tickets.Service
	list []api.DeviceStatus
}

func (r *registry) Devices() []api.DeviceStatus {
	open, _ := r.svc.OpenByDevice(context.Background())
	out := make([]api.DeviceStatus, len(r.list))
	for i, d := range r.list {
		d.OpenTickets = open[d.ID]
		out[i] = d
	}
	return out
}

func (r *registry) Device(id string) (api.DeviceStatus, bool) {
	for _, d := range r.Devices() {
		if d.ID == id {
			return d, true
		}
	}
	return api.DeviceStatus{}, false
}

// fixture is a desk on a real SQLite ticket store with three tickets
// opened at t0:
//   - full: bin_full on bin-001 (区环卫所, 东街), 4h to rectify
//   - fire: bin_fire on bin-002 (区环卫所, 东街), 2h to rectify
//   - smell: toilet_ammonia on wc-001 (园林所, 西街), 24h, rectified by
//     the unit at t0+1h
//
// The clock is then at t0+3h: fire is overdue.
type fixture struct {
	svc                *tickets.Service
	clk                *clock
	srv                *httptest.Server
	full, fire, smell  tickets.Ticket
	parksActor, office tickets.Actor
}

func newFixture(t *testing.T, pageSize int) *fixture {
	t.Helper()
	ctx := context.Background()
	clk := &clock{now: t0}
	store, err := tickets.OpenSQLite(ctx, filepath.Join(t.TempDir(), "tickets.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	svc, err := tickets.New(tickets.Options{Store: store, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	seen := t0.Add(-5 * time.Minute)
	reg := &registry{svc: svc, list: []api.DeviceStatus{
		{ID: "bin-001", Kind: "bin", Site: "东街口", Street: "东街", Village: "东村", OrgUnit: roads, Lat: 31.23041, Lon: 121.47370,
			LastReading: map[string]float64{"fill_pct": 92, "battery_pct": 80}, LastSeen: &seen, Online: true},
		{ID: "bin-002", Kind: "bin", Site: "东街菜场", Street: "东街", Village: "东村", OrgUnit: roads, Lat: 31.23100, Lon: 121.47400,
			LastReading: map[string]float64{"temp_c": 65}, LastSeen: &seen, Online: true},
		{ID: "wc-001", Kind: "toilet", Site: "西街公厕", Street: "西街", Village: "西村", OrgUnit: parks, Lat: 31.22000, Lon: 121.46000,
			LastReading: map[string]float64{"nh3_mgm3": 1.4}},
	}}
	apiSrv, err := api.New(api.Options{Tickets: svc, Tokens: testTokens, Devices: reg})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Options{Tickets: svc, Auth: apiSrv, Devices: reg, Now: clk.Now, PageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{svc: svc, clk: clk, srv: httptest.NewServer(Mount(apiSrv.Handler(), d))}
	t.Cleanup(f.srv.Close)
	f.parksActor = tickets.Actor{Name: "parks-unit", Role: tickets.RoleUnit, OrgUnit: parks}
	f.office = tickets.Actor{Name: "office", Role: tickets.RoleSupervisor}
	raise := func(rule, id, detail string, deadline time.Duration) tickets.Ticket {
		dev, _ := reg.Device(id)
		tk, _, err := svc.Raise(ctx, tickets.Alert{
			Rule: rule, Severity: "critical", DeviceID: id, Kind: dev.Kind, Site: dev.Site, Street: dev.Street,
			Village: dev.Village, OrgUnit: dev.OrgUnit, Title: rule + " " + id, Detail: detail,
			Requirement: "立即处置并上报", Deadline: deadline,
		})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	f.full = raise("bin_full", "bin-001", "fill_pct 92 ≥ 90", 4*time.Hour)
	f.fire = raise("bin_fire", "bin-002", "temp_c 65 ≥ 60", 2*time.Hour)
	f.smell = raise("toilet_ammonia", "wc-001", "nh3_mgm3 1.4 > 1", 24*time.Hour)
	clk.Set(t0.Add(time.Hour))
	if _, err := svc.Transition(ctx, f.smell.ID, tickets.ActionRectify, "", "通风除臭", f.parksActor); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(3 * time.Hour))
	return f
}

// status is the ticket's status now.
func (f *fixture) status(t *testing.T, id int64) tickets.Status {
	t.Helper()
	tk, err := f.svc.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tk.Status
}

// client is a browser-like HTTP client that keeps cookies and does not
// follow redirects.
type client struct {
	t   *testing.T
	f   *fixture
	hc  *http.Client
	jar *cookiejar.Jar
}

func (f *fixture) client(t *testing.T) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, f: f, jar: jar, hc: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type answer struct {
	code int
	body string
	hdr  http.Header
}

func (c *client) do(method, path string, form url.Values, hdr ...string) answer {
	c.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, c.f.srv.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return answer{code: resp.StatusCode, body: string(b), hdr: resp.Header}
}

func (c *client) get(path string) answer { c.t.Helper(); return c.do(http.MethodGet, path, nil) }

// signIn signs in with token and returns the session's CSRF token.
func (c *client) signIn(token string) string {
	c.t.Helper()
	a := c.do(http.MethodPost, "/desk/login", url.Values{"token": {token}})
	if a.code != http.StatusSeeOther {
		c.t.Fatalf("sign in: got %d, want 303: %s", a.code, a.body)
	}
	return c.csrf("/desk/tickets")
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token from the forms of the page at path.
func (c *client) csrf(path string) string {
	c.t.Helper()
	a := c.get(path)
	m := csrfField.FindStringSubmatch(a.body)
	if m == nil {
		c.t.Fatalf("no CSRF field on %s (%d)", path, a.code)
	}
	return m[1]
}
