package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDeskServed checks that `sanitel serve` serves the desk next to the
// API: / leads to it, signing in works (without tokens the service is
// open and any token is the anonymous admin), and a ticket raised from a
// published reading shows with its device's place and last reading.
func TestDeskServed(t *testing.T) {
	e := NewEnv(t, registryYAML)
	s := e.StartSanitel(e.Config(e.Influx.URL, ""))
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) (int, string, string) {
		t.Helper()
		resp, err := c.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Location"), string(b)
	}

	if code, loc, _ := get("/"); code != http.StatusSeeOther || loc != "/desk/" {
		t.Fatalf("GET /: %d to %q, want 303 to /desk/", code, loc)
	}
	if code, loc, _ := get("/desk/tickets"); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/desk/login") {
		t.Fatalf("GET /desk/tickets signed out: %d to %q, want 303 to the sign-in page", code, loc)
	}
	resp, err := c.PostForm(s.URL+"/desk/login", url.Values{"token": {""}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d, want 303", resp.StatusCode)
	}
	// The API is still the API.
	var list struct{ Total int }
	if code := s.GetJSON("/api/v1/tickets", &list); code != http.StatusOK {
		t.Fatalf("GET /api/v1/tickets: %d", code)
	}

	pub := e.NewPublisher()
	pub.Publish(e.Root+"/bin/bin-001/telemetry", fmt.Sprintf(`{"ts":%q,"fill_pct":95,"battery_pct":77}`, time.Now().UTC().Format(time.RFC3339Nano)))
	number := regexp.MustCompile(`href="/desk/tickets/(\d+)">DB-`)
	var board string
	Eventually(t, 20*time.Second, func() bool {
		_, _, board = get("/desk/tickets")
		return number.MatchString(board)
	}, func() string { return "no ticket on the board:\n" + tail(board, 2000) })
	code, _, page := get("/desk/tickets/" + number.FindStringSubmatch(board)[1])
	if code != http.StatusOK {
		t.Fatalf("ticket page: %d", code)
	}
	for _, want := range []string{"bin_full", "解放路菜市场", "30.27410, 120.15510", "满溢% 95", "anonymous", `id="do-ack"`} {
		if !strings.Contains(page, want) {
			t.Errorf("ticket page lacks %q", want)
		}
	}
}
