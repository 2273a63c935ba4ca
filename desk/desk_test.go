package desk

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sanitel/sanitel/tickets"
)

func TestSignInSessionCookie(t *testing.T) {
	f := newFixture(t, 0)
	c := f.client(t)

	a := c.get("/desk/tickets?status=open")
	if a.code != http.StatusSeeOther || a.hdr.Get("Location") != "/desk/login?next="+url.QueryEscape("/desk/tickets?status=open") {
		t.Fatalf("signed out board: %d to %q, want 303 to the sign-in page", a.code, a.hdr.Get("Location"))
	}
	if a := c.get("/"); a.code != http.StatusSeeOther || a.hdr.Get("Location") != "/desk/" {
		t.Errorf("GET /: %d to %q, want 303 to /desk/", a.code, a.hdr.Get("Location"))
	}

	a = c.do(http.MethodPost, "/desk/login", url.Values{"token": {"not-a-token-at-all"}})
	if a.code != http.StatusUnauthorized || len(a.hdr.Values("Set-Cookie")) != 0 {
		t.Fatalf("bad token: %d, cookies %q; want 401 and no cookie", a.code, a.hdr.Values("Set-Cookie"))
	}

	a = c.do(http.MethodPost, "/desk/login", url.Values{"token": {roadsToken}, "next": {"/desk/ranking"}})
	if a.code != http.StatusSeeOther || a.hdr.Get("Location") != "/desk/ranking" {
		t.Fatalf("sign in: %d to %q, want 303 to /desk/ranking", a.code, a.hdr.Get("Location"))
	}
	cookies := (&http.Response{Header: a.hdr}).Cookies()
	if len(cookies) != 1 {
		t.Fatalf("sign in set %d cookies, want 1", len(cookies))
	}
	ck := cookies[0]
	if ck.Name != sessionCookie || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/desk/" || len(ck.Value) < 40 {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/desk/ and a long random value", ck)
	}
	if a := c.get("/desk/tickets"); a.code != http.StatusOK || !strings.Contains(a.body, "roads-unit") {
		t.Errorf("signed in board: %d, name shown %v", a.code, strings.Contains(a.body, "roads-unit"))
	}

	// A redirect after sign-in stays on the desk.
	a = c.do(http.MethodPost, "/desk/login", url.Values{"token": {roadsToken}, "next": {"//evil.example/"}})
	if a.hdr.Get("Location") != "/desk/tickets" {
		t.Errorf("next=//evil.example/ redirected to %q", a.hdr.Get("Location"))
	}

	csrf := c.csrf("/desk/tickets")
	if a := c.do(http.MethodPost, "/desk/logout", url.Values{"csrf": {csrf}}); a.code != http.StatusSeeOther {
		t.Fatalf("sign out: %d", a.code)
	}
	// The old cookie no longer works, even replayed.
	c.jar.SetCookies(mustURL(t, f.srv.URL+"/desk/"), []*http.Cookie{ck})
	if a := c.get("/desk/tickets"); a.code != http.StatusSeeOther {
		t.Errorf("board after sign-out: %d, want 303 to sign in", a.code)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestCSRF(t *testing.T) {
	f := newFixture(t, 0)
	c := f.client(t)
	csrf := c.signIn(roadsToken)
	path := fmt.Sprintf("/desk/tickets/%d/ack", f.full.ID)
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  []string
		want int
	}{
		{"no token", url.Values{"note": {"x"}}, nil, http.StatusForbidden},
		{"wrong token", url.Values{"csrf": {csrf + "x"}}, nil, http.StatusForbidden},
		{"other session's token", url.Values{"csrf": {f.client(t).signIn(officeToken)}}, nil, http.StatusForbidden},
		{"cross-site", url.Values{"csrf": {csrf}}, []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, http.StatusForbidden},
		{"cross origin", url.Values{"csrf": {csrf}}, []string{"Origin", "https://evil.example"}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a := c.do(http.MethodPost, path, tc.form, tc.hdr...); a.code != tc.want {
				t.Errorf("got %d, want %d", a.code, tc.want)
			}
			if st := f.status(t, f.full.ID); st != tickets.StatusOpen {
				t.Errorf("ticket is %s after a refused form, want open", st)
			}
		})
	}
	a := c.do(http.MethodPost, path, url.Values{"csrf": {csrf}, "note": {"到场"}}, "Sec-Fetch-Site", "same-origin")
	if a.code != http.StatusSeeOther {
		t.Fatalf("ack with the CSRF token: %d: %s", a.code, a.body)
	}
	if st := f.status(t, f.full.ID); st != tickets.StatusAcknowledged {
		t.Errorf("ticket is %s, want acknowledged", st)
	}
	// Signed out, a form is refused outright.
	anon := f.client(t)
	if a := anon.do(http.MethodPost, path, url.Values{"csrf": {csrf}}); a.code != http.StatusUnauthorized {
		t.Errorf("signed-out POST: %d, want 401", a.code)
	}
}

// actionButtons lists the transition buttons a ticket page offers.
var actionButton = regexp.MustCompile(`id="do-([a-z]+)"`)

func actionButtons(body string) []string {
	var out []string
	for _, m := range actionButton.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

func TestRoles(t *testing.T) {
	f := newFixture(t, 0)
	roadsC, parksC, office, screen := f.client(t), f.client(t), f.client(t), f.client(t)
	roadsCSRF, parksCSRF, officeCSRF, screenCSRF := roadsC.signIn(roadsToken), parksC.signIn(parksToken),
		office.signIn(officeToken), screen.signIn(screenToken)
	ticketPath := func(tk tickets.Ticket, rest string) string { return fmt.Sprintf("/desk/tickets/%d%s", tk.ID, rest) }

	t.Run("buttons follow role and status", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			c    *client
			tk   tickets.Ticket
			want []string
		}{
			{"unit on its open ticket", roadsC, f.full, []string{"ack", "rectify"}},
			{"unit on its rectified ticket", parksC, f.smell, nil},
			{"supervisor on an open ticket", office, f.full, []string{"ack", "rectify"}},
			{"supervisor on a rectified ticket", office, f.smell, []string{"verify", "reopen"}},
			{"viewer", screen, f.full, nil},
		} {
			a := tc.c.get(ticketPath(tc.tk, ""))
			if a.code != http.StatusOK {
				t.Fatalf("%s: %d", tc.name, a.code)
			}
			if got := actionButtons(a.body); !slices.Equal(got, tc.want) {
				t.Errorf("%s: buttons %v, want %v", tc.name, got, tc.want)
			}
		}
	})

	t.Run("unit sees only its own", func(t *testing.T) {
		a := roadsC.get("/desk/tickets?org_unit=" + url.QueryEscape(parks))
		if strings.Contains(a.body, f.smell.Number) || !strings.Contains(a.body, f.full.Number) {
			t.Errorf("roads unit asking for parks tickets: smell shown %v, own shown %v",
				strings.Contains(a.body, f.smell.Number), strings.Contains(a.body, f.full.Number))
		}
		if a := roadsC.get(ticketPath(f.smell, "")); a.code != http.StatusNotFound {
			t.Errorf("roads unit opening a parks ticket: %d, want 404", a.code)
		}
		if a := roadsC.do(http.MethodPost, ticketPath(f.smell, "/reopen"), url.Values{"csrf": {roadsCSRF}}); a.code != http.StatusNotFound {
			t.Errorf("roads unit acting on a parks ticket: %d, want 404", a.code)
		}
		a = roadsC.get("/desk/devices")
		if strings.Contains(a.body, "wc-001") || !strings.Contains(a.body, "bin-001") {
			t.Errorf("roads unit's devices page shows wc-001 %v, bin-001 %v", strings.Contains(a.body, "wc-001"), strings.Contains(a.body, "bin-001"))
		}
		a = roadsC.get("/desk/tickets.csv")
		if strings.Contains(a.body, f.smell.Number) || !strings.Contains(a.body, f.fire.Number) {
			t.Errorf("roads unit's ledger: %q", a.body)
		}
	})

	t.Run("forced forbidden actions are refused", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			c    *client
			form url.Values
			path string
			want int
		}{
			{"unit verifies", parksC, url.Values{"csrf": {parksCSRF}}, ticketPath(f.smell, "/verify"), http.StatusForbidden},
			{"unit reopens", parksC, url.Values{"csrf": {parksCSRF}}, ticketPath(f.smell, "/reopen"), http.StatusForbidden},
			{"viewer acks", screen, url.Values{"csrf": {screenCSRF}}, ticketPath(f.full, "/ack"), http.StatusForbidden},
			{"unit creates", roadsC, url.Values{"csrf": {roadsCSRF}, "title": {"x"}}, "/desk/tickets", http.StatusForbidden},
			{"unknown action", office, url.Values{"csrf": {officeCSRF}}, ticketPath(f.full, "/auto_close"), http.StatusNotFound},
			{"wrong status", office, url.Values{"csrf": {officeCSRF}, "note": {"kept"}}, ticketPath(f.full, "/verify"), http.StatusConflict},
		} {
			a := tc.c.do(http.MethodPost, tc.path, tc.form)
			if a.code != tc.want {
				t.Errorf("%s: %d, want %d", tc.name, a.code, tc.want)
			}
		}
		if st := f.status(t, f.smell.ID); st != tickets.StatusRectified {
			t.Errorf("smell is %s, want still rectified", st)
		}
		if st := f.status(t, f.full.ID); st != tickets.StatusOpen {
			t.Errorf("full is %s, want still open", st)
		}
		if a := screen.get("/desk/tickets/new"); a.code != http.StatusForbidden {
			t.Errorf("viewer opening the new ticket form: %d, want 403", a.code)
		}
	})

	t.Run("supervisor opens a ticket", func(t *testing.T) {
		a := office.do(http.MethodPost, "/desk/tickets", url.Values{
			"csrf": {officeCSRF}, "device_id": {"bin-002"}, "street": {"东街"}, "org_unit": {roads},
			"title": {"桶体破损"}, "requirement": {"三日内更换"}, "severity": {"warning"}, "deadline": {"2026-11-30T18:00"},
		})
		if a.code != http.StatusSeeOther || !strings.Contains(a.hdr.Get("Location"), "done=created") {
			t.Fatalf("create: %d to %q: %s", a.code, a.hdr.Get("Location"), a.body)
		}
		page := office.get(a.hdr.Get("Location"))
		// The deadline was read in Shanghai time and is shown in it.
		for _, want := range []string{"桶体破损", "巡查交办", "2026-11-30 18:00", "已交办"} {
			if !strings.Contains(page.body, want) {
				t.Errorf("new ticket page lacks %q", want)
			}
		}
		a = office.do(http.MethodPost, "/desk/tickets", url.Values{
			"csrf": {officeCSRF}, "street": {"东街"}, "org_unit": {roads}, "title": {"缺要求"}, "severity": {"warning"},
			"deadline": {"2026-11-30T18:00"},
		})
		if a.code != http.StatusBadRequest || !strings.Contains(a.body, "requirement") || !strings.Contains(a.body, "缺要求") {
			t.Errorf("create without requirement: %d, want 400 naming the field and keeping the input", a.code)
		}
	})
}

func TestBoardOverdueFirstAndPaging(t *testing.T) {
	f := newFixture(t, 2)
	c := f.client(t)
	c.signIn(officeToken)
	number := regexp.MustCompile(`data-number="([^"]+)"`)
	next := regexp.MustCompile(`href="([^"]+)" id="next"`)
	var seen []string
	path := "/desk/tickets"
	for range 5 {
		a := c.get(path)
		if a.code != http.StatusOK {
			t.Fatalf("%s: %d", path, a.code)
		}
		for _, m := range number.FindAllStringSubmatch(a.body, -1) {
			seen = append(seen, m[1])
		}
		m := next.FindStringSubmatch(a.body)
		if m == nil {
			break
		}
		path = strings.ReplaceAll(m[1], "&amp;", "&")
	}
	// fire is the one overdue ticket; the others follow newest first.
	want := []string{f.fire.Number, f.smell.Number, f.full.Number}
	if !slices.Equal(seen, want) {
		t.Errorf("board pages show %v, want %v", seen, want)
	}
	a := c.get("/desk/tickets?status=open")
	for _, want := range []string{`data-key="status.open"`, `已超期 1小时`, `剩余 1小时`} {
		if !strings.Contains(a.body, want) {
			t.Errorf("board lacks %q", want)
		}
	}
	counts := regexp.MustCompile(`data-key="([a-z.]+)">[^<]*<b>(\d+)</b>`)
	got := map[string]string{}
	for _, m := range counts.FindAllStringSubmatch(a.body, -1) {
		got[m[1]] = m[2]
	}
	wantCounts := map[string]string{"status.open": "2", "status.acknowledged": "0", "status.rectified": "1", "status.closed": "0", "overdue": "1"}
	for k, v := range wantCounts {
		if got[k] != v {
			t.Errorf("count %s = %q, want %s (all: %v)", k, got[k], v, got)
		}
	}
}

func TestLanguageAndTimeZone(t *testing.T) {
	f := newFixture(t, 0)
	c := f.client(t)
	c.signIn(officeToken)
	page := fmt.Sprintf("/desk/tickets/%d", f.full.ID)
	a := c.get(page)
	// Opened at 02:00 UTC, shown in Shanghai time; Chinese by default.
	for _, want := range []string{`lang="zh-CN"`, "整改要求", "2026-11-28 10:00", "Asia/Shanghai"} {
		if !strings.Contains(a.body, want) {
			t.Errorf("default page lacks %q", want)
		}
	}
	a = c.get(page + "?lang=en")
	if !strings.Contains(a.body, `lang="en"`) || !strings.Contains(a.body, "Requirement") {
		t.Errorf("?lang=en page is not English")
	}
	if a := c.get(page); !strings.Contains(a.body, "Requirement") {
		t.Errorf("the language choice was not remembered")
	}
	if a := c.get(page + "?lang=zh"); !strings.Contains(a.body, "整改要求") {
		t.Errorf("?lang=zh did not switch back")
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t, 0)
	a := f.client(t).get("/desk/login")
	for k, want := range map[string]string{
		"X-Frame-Options": "DENY", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
	} {
		if got := a.hdr.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if csp := a.hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if a := f.client(t).get("/desk/static/htmx.min.js"); a.code != http.StatusOK || !strings.Contains(a.body, "htmx") {
		t.Errorf("vendored htmx: %d", a.code)
	}
}

func TestExports(t *testing.T) {
	f := newFixture(t, 0)
	c := f.client(t)
	c.signIn(officeToken)
	a := c.get("/desk/ranking.csv?month=2026-11&by=org_unit")
	want := "\uFEFFrank,name,opened,rectified,rectified_on_time,overdue,on_time_rate,median_hours_to_rectify\n" +
		"1," + parks + ",1,1,1,0,1,1\n" +
		"2," + roads + ",2,0,0,1,0,\n"
	if a.code != http.StatusOK || a.body != want || !strings.HasPrefix(a.hdr.Get("Content-Type"), "text/csv") {
		t.Errorf("ranking CSV: %d %q\n%q, want\n%q", a.code, a.hdr.Get("Content-Type"), a.body, want)
	}
	a = c.get("/desk/tickets.csv?month=2026-11")
	if lines := strings.Count(a.body, "\n"); a.code != http.StatusOK || lines != 4 || !strings.HasPrefix(a.body, "\uFEFFid,number,") {
		t.Errorf("November ledger: %d, %d lines, want the header and 3 tickets", a.code, lines)
	}
	if a := c.get("/desk/tickets.csv?month=2026-10"); strings.Count(a.body, "\n") != 1 {
		t.Errorf("October ledger has %d lines, want the header only", strings.Count(a.body, "\n"))
	}
	if a := c.get("/desk/ranking.csv?month=2026-13"); a.code != http.StatusBadRequest {
		t.Errorf("bad month: %d, want 400", a.code)
	}
}

func TestFailedSignInsAreThrottled(t *testing.T) {
	f := newFixture(t, 0)
	c := f.client(t)
	for i := range maxFailedSignIns {
		if a := c.do(http.MethodPost, "/desk/login", url.Values{"token": {fmt.Sprintf("wrong-token-%02d-xxxxxxxx", i)}}); a.code != http.StatusUnauthorized {
			t.Fatalf("failed sign-in %d: %d, want 401", i+1, a.code)
		}
	}
	// Even the right token is refused now, from this address, with a reason.
	a := c.do(http.MethodPost, "/desk/login", url.Values{"token": {roadsToken}})
	if a.code != http.StatusTooManyRequests || !strings.Contains(a.body, "一分钟") {
		t.Fatalf("after %d failures: %d, want 429 saying to wait a minute", maxFailedSignIns, a.code)
	}

	// The window ends.
	var fl failures
	start := time.Now()
	for range maxFailedSignIns {
		fl.fail("192.0.2.1", start)
	}
	if !fl.blocked("192.0.2.1", start.Add(time.Second)) || fl.blocked("192.0.2.2", start) {
		t.Error("the failing host is not blocked, or another host is")
	}
	if fl.blocked("192.0.2.1", start.Add(failedSignInWindow)) {
		t.Error("still blocked after the window")
	}
}

// TestMalformedQueryIsRefused: a query Go cannot parse whole would reach
// the board as no filters at all; it is a 400 page instead.
func TestMalformedQueryIsRefused(t *testing.T) {
	f := newFixture(t, 2)
	c := f.client(t)
	c.signIn(officeToken)
	if a := c.get("/desk/tickets?status=closed;x=1"); a.code != http.StatusBadRequest || strings.Contains(a.body, "data-number=") {
		t.Errorf("malformed query: %d, tickets listed: %v", a.code, strings.Contains(a.body, "data-number="))
	}
	if a := c.get("/desk/tickets?status=closed"); a.code != http.StatusOK {
		t.Errorf("well-formed query: %d", a.code)
	}
}
