package desk

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sanitel/sanitel/tickets"
)

// chromium finds the browser: $SANITEL_TEST_CHROMIUM (scripts/test.sh
// installs chromium and sets it), else chromium on the PATH. Without one
// the test fails: the desk is only known to work once a browser used it.
func chromium(t *testing.T) string {
	if p := os.Getenv("SANITEL_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium: run scripts/test.sh (it installs Debian's chromium) or set SANITEL_TEST_CHROMIUM")
	return ""
}

// screenshots is where the test saves its PNGs: $SANITEL_DESK_SCREENSHOTS
// when set (kept), else a temporary folder.
func screenshots(t *testing.T) string {
	dir := os.Getenv("SANITEL_DESK_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one headless chromium tab on the fixture's desk.
type browser struct {
	t   *testing.T
	f   *fixture
	ctx context.Context
	dir string
}

func newBrowser(t *testing.T, f *fixture) *browser {
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("lang", "zh-CN"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
	})
	b := &browser{t: t, f: f, ctx: ctx, dir: screenshots(t)}
	b.run("start the browser", chromedp.Navigate("about:blank"))
	return b
}

func (b *browser) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action that answers a value.
func get[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// eval runs a JavaScript expression, awaiting a promise.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	return get(b, "evaluate "+js, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
}

func (b *browser) open(path string, waitFor string) {
	b.t.Helper()
	b.run("open "+path, chromedp.Navigate(b.f.srv.URL+path), chromedp.WaitVisible(waitFor))
}

// shot saves the whole page as name.png.
func (b *browser) shot(name string) {
	b.t.Helper()
	png := get(b, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", path)
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(get(b, "read "+sel, chromedp.Text(sel, chromedp.NodeVisible)))
}

func (b *browser) signIn(token string) {
	b.t.Helper()
	b.open("/desk/tickets", "#token")
	b.run("sign in",
		chromedp.SendKeys("#token", token),
		chromedp.Click(`#login button[type=submit]`),
		chromedp.WaitVisible("#counts"),
	)
}

func (b *browser) signOut() {
	b.t.Helper()
	b.run("sign out", chromedp.Click("#signout"), chromedp.WaitVisible("#token"))
}

// act types note and presses the button of action on the open ticket
// page, then waits for the page showing the ticket in status then.
func (b *browser) act(action, note string, then tickets.Status) {
	b.t.Helper()
	b.run(action,
		chromedp.SetValue("#note", note),
		chromedp.Click("#do-"+action),
		chromedp.WaitVisible("#status."+string(then)),
		chromedp.WaitVisible("#flash"),
	)
}

func (b *browser) buttons() []string {
	b.t.Helper()
	return eval[[]string](b, `Array.from(document.querySelectorAll('button.action')).map(e => e.id.replace('do-', ''))`)
}

// TestBrowser walks the desk in a real chromium: a unit signs in, sees
// only its tickets, acknowledges and rectifies one with notes; a forced
// verify is refused; the supervisor verifies it; the history shows both;
// the ranking has the expected numbers; the board fits a phone.
func TestBrowser(t *testing.T) {
	f := newFixture(t, 0)
	b := newBrowser(t, f)
	full := fmt.Sprintf("/desk/tickets/%d", f.full.ID)

	b.open("/desk/tickets", "#token")
	b.shot("01-sign-in")

	// The roads unit sees its two tickets, the overdue one first.
	b.signIn(roadsToken)
	type row struct{ Number, OrgUnit, Overdue string }
	rows := eval[[]row](b, `Array.from(document.querySelectorAll('tr.ticket')).map(r => ({Number: r.dataset.number, OrgUnit: r.dataset.orgUnit, Overdue: String(r.classList.contains('overdue'))}))`)
	if len(rows) != 2 || rows[0].Number != f.fire.Number || rows[0].Overdue != "true" || rows[1].Number != f.full.Number {
		t.Errorf("unit board rows %+v, want %s (overdue) then %s", rows, f.fire.Number, f.full.Number)
	}
	for _, r := range rows {
		if r.OrgUnit != roads {
			t.Errorf("unit board shows %s of %s", r.Number, r.OrgUnit)
		}
	}
	b.shot("02-board-unit")

	// It acknowledges and, half an hour later, rectifies one.
	b.open(full, "#history")
	if got := b.buttons(); !slices.Equal(got, []string{"ack", "rectify"}) {
		t.Errorf("unit's buttons on an open ticket: %v, want [ack rectify]", got)
	}
	b.act("ack", "已到场，安排清运", tickets.StatusAcknowledged)
	if got := b.text("#status"); got != "已签收" {
		t.Errorf("status after ack: %q, want 已签收", got)
	}
	f.clk.Set(t0.Add(3*time.Hour + 30*time.Minute))
	b.act("rectify", "已清运，桶体复位", tickets.StatusRectified)
	if got := b.text("#status"); got != "已整改" {
		t.Errorf("status after rectify: %q, want 已整改", got)
	}
	if got := b.buttons(); len(got) != 0 {
		t.Errorf("unit's buttons on a rectified ticket: %v, want none", got)
	}
	b.shot("03-ticket-unit-rectified")

	// Verifying is not offered to a unit, and a forced POST (with the
	// page's own CSRF token) is refused.
	code := eval[int](b, fmt.Sprintf(`fetch('%s/verify', {method: 'POST', body: new URLSearchParams({csrf: document.querySelector('input[name=csrf]').value, note: 'forced'})}).then(r => r.status)`, full))
	if code != 403 {
		t.Errorf("forced verify by a unit: %d, want 403", code)
	}
	if st := f.status(t, f.full.ID); st != tickets.StatusRectified {
		t.Errorf("after the forced verify the ticket is %s, want rectified", st)
	}
	b.signOut()

	// The office verifies it.
	f.clk.Set(t0.Add(4 * time.Hour))
	b.signIn(officeToken)
	b.open(full, "#history")
	if got := b.buttons(); !slices.Equal(got, []string{"verify", "reopen"}) {
		t.Errorf("supervisor's buttons on a rectified ticket: %v, want [verify reopen]", got)
	}
	b.act("verify", "现场复核合格", tickets.StatusClosed)
	if got := b.text("#status"); got != "已办结" {
		t.Errorf("status after verify: %q, want 已办结", got)
	}
	type entry struct{ Action, Text string }
	history := eval[[]entry](b, `Array.from(document.querySelectorAll('#history li')).map(li => ({Action: li.dataset.action, Text: li.innerText}))`)
	var actions []string
	for _, h := range history {
		actions = append(actions, h.Action)
	}
	if !slices.Equal(actions, []string{"open", "ack", "rectify", "verify"}) {
		t.Errorf("history actions %v, want [open ack rectify verify]", actions)
	}
	for i, want := range map[int][]string{
		1: {"roads-unit", "已到场，安排清运", "2026-11-28 13:00"},
		2: {"roads-unit", "已清运，桶体复位", "2026-11-28 13:30"},
		3: {"office", "现场复核合格", "2026-11-28 14:00"},
	} {
		for _, w := range want {
			if i >= len(history) || !strings.Contains(history[i].Text, w) {
				t.Errorf("history entry %d lacks %q: %+v", i, w, history)
			}
		}
	}
	b.shot("04-ticket-verified")

	// The board's filters reload it in place (htmx) and keep the URL.
	b.open("/desk/tickets", "#tickets")
	b.run("filter by status",
		chromedp.SetValue(`#filters select[name=status]`, "rectified"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#filters select[name=status]').dispatchEvent(new Event('change', {bubbles: true}))`),
	)
	numbers := get(b, "wait for the filtered board", chromedp.Poll[[]string](
		`location.search.includes('status=rectified') && Array.from(document.querySelectorAll('tr.ticket')).map(r => r.dataset.number)`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if !slices.Equal(numbers, []string{f.smell.Number}) {
		t.Errorf("board filtered to rectified shows %v, want [%s]", numbers, f.smell.Number)
	}

	// The ranking by unit: parks rectified its one ticket on time in 1h;
	// roads rectified one of two on time in 3.5h, the other is overdue.
	b.open("/desk/ranking?month=2026-11&by=org_unit", "#ranking")
	ranking := eval[[][]string](b, `Array.from(document.querySelectorAll('#ranking tbody tr')).map(r => Array.from(r.cells).map(c => c.innerText.trim()))`)
	want := [][]string{
		{"1", parks, "1", "1", "1", "0", "100.0%", "1.0"},
		{"2", roads, "2", "1", "1", "1", "50.0%", "3.5"},
	}
	if !slices.EqualFunc(ranking, want, slices.Equal) {
		t.Errorf("ranking rows %v, want %v", ranking, want)
	}
	csv := eval[string](b, `document.querySelector('#ranking-csv').getAttribute('href')`)
	if csv != "/desk/ranking.csv?by=org_unit&month=2026-11" {
		t.Errorf("ranking CSV link %q", csv)
	}
	b.shot("05-ranking-by-unit")

	b.open("/desk/devices", "#devices")
	b.shot("06-devices")

	// A phone: the board in English, rows as cards.
	b.run("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	b.open("/desk/tickets?lang=en", "#counts")
	title := eval[string](b, `document.querySelector('h1').innerText`)
	width := eval[int](b, `document.documentElement.scrollWidth`)
	if title != "Tickets" || width > 390 {
		t.Errorf("phone board: title %q, page width %d; want English and no sideways scrolling", title, width)
	}
	b.shot("07-board-phone-en")
}
