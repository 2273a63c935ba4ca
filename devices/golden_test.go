package devices

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the expected files of the golden decode tests (review them by hand)")

// testNow is the time of receipt of every golden message.
var testNow = time.Date(2026, 11, 28, 8, 5, 0, 0, time.UTC)

var (
	testRegOnce sync.Once
	testReg     *Registry
	testRegErr  error
)

// testRegistry returns testdata/registry.yaml, loaded once.
func testRegistry(tb testing.TB) *Registry {
	tb.Helper()
	testRegOnce.Do(func() { testReg, testRegErr = LoadRegistry("testdata/registry.yaml") })
	if testRegErr != nil {
		tb.Fatal(testRegErr)
	}
	return testReg
}

func testDecoder(tb testing.TB) *Decoder {
	tb.Helper()
	d, err := NewDecoder(DecoderOptions{Registry: testRegistry(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// goldenCase is one directory under testdata/decode.
type goldenCase struct {
	name    string
	dir     string
	topic   string
	payload []byte
}

func goldenCases(tb testing.TB) []goldenCase {
	tb.Helper()
	dirs, err := filepath.Glob("testdata/decode/*")
	if err != nil {
		tb.Fatal(err)
	}
	var cases []goldenCase
	for _, dir := range dirs {
		c := goldenCase{name: filepath.Base(dir), dir: dir}
		topic, err := os.ReadFile(filepath.Join(dir, "topic.txt"))
		if err != nil {
			tb.Fatal(err)
		}
		c.topic = strings.TrimRight(string(topic), "\r\n")
		c.payload, err = os.ReadFile(filepath.Join(dir, "payload.json"))
		if errors.Is(err, os.ErrNotExist) {
			c.payload, err = os.ReadFile(filepath.Join(dir, "payload.bin"))
		}
		if err != nil {
			tb.Fatalf("%s: %v", dir, err)
		}
		cases = append(cases, c)
	}
	if len(cases) < 40 {
		tb.Fatalf("only %d golden cases in testdata/decode", len(cases))
	}
	return cases
}

// goldenResult is what a golden case checks, in the form of its files.
type goldenResult struct {
	lp     string // expected.lp; absent when the message is rejected
	err    string // expected.err: the rejection reason
	drops  string // expected.drops: "reason count" lines, absent when none
	status string // expected.status: online/offline for a status message
}

func runGolden(d *Decoder, c goldenCase, m *Message) goldenResult {
	var r goldenResult
	err := d.Decode(c.topic, c.payload, testNow, m)
	if err != nil {
		var rej *Rejection
		if errors.As(err, &rej) {
			r.err = rej.Reason.String() + "\n"
		} else {
			r.err = "not a *Rejection: " + err.Error() + "\n"
		}
	} else {
		r.lp = string(AppendLineProtocol(nil, m))
		if m.Type == Status {
			r.status = "offline\n"
			if m.Online {
				r.status = "online\n"
			}
		}
	}
	r.drops = formatDrops(m)
	return r
}

func formatDrops(m *Message) string {
	var b strings.Builder
	for _, reason := range DropReasons {
		if n := m.Drops[reason]; n > 0 {
			fmt.Fprintf(&b, "%s %d\n", reason, n)
		}
	}
	return b.String()
}

var goldenFiles = []string{"expected.lp", "expected.err", "expected.drops", "expected.status"}

func (r goldenResult) files() map[string]string {
	files := map[string]string{}
	if r.err != "" {
		files["expected.err"] = r.err
	} else {
		files["expected.lp"] = r.lp
	}
	if r.drops != "" {
		files["expected.drops"] = r.drops
	}
	if r.status != "" {
		files["expected.status"] = r.status
	}
	return files
}

// TestDecodeGolden decodes every case in testdata/decode with one decoder
// (so parser reuse between messages is exercised) and compares the line
// protocol, rejection reason, drops and status with the expected files.
func TestDecodeGolden(t *testing.T) {
	d := testDecoder(t)
	var m Message
	for _, c := range goldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			got := runGolden(d, c, &m).files()
			if *update {
				for _, name := range goldenFiles {
					path := filepath.Join(c.dir, name)
					content, ok := got[name]
					if !ok {
						if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
							t.Fatal(err)
						}
						continue
					}
					if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
			for _, name := range goldenFiles {
				want, err := os.ReadFile(filepath.Join(c.dir, name))
				exists := err == nil
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
				content, produced := got[name]
				switch {
				case exists && !produced:
					t.Errorf("%s: want %q, got nothing (result %v)", name, want, got)
				case !exists && produced:
					t.Errorf("%s: unexpected %q (no %s file)", name, content, name)
				case exists && !bytes.Equal(want, []byte(content)):
					t.Errorf("%s:\n got  %q\n want %q", name, content, want)
				}
			}
			if lp := got["expected.lp"]; lp != "" {
				checkLineProtocol(t, []byte(lp), &m, testRegistry(t))
			}
		})
	}
}

// TestGoldenCoverage makes sure the golden cases keep covering every
// rejection and drop reason, every kind, events and statuses.
func TestGoldenCoverage(t *testing.T) {
	d := testDecoder(t)
	var m Message
	seen := map[string]bool{}
	for _, c := range goldenCases(t) {
		err := d.Decode(c.topic, c.payload, testNow, &m)
		var rej *Rejection
		switch {
		case errors.As(err, &rej):
			seen["reject:"+rej.Reason.String()] = true
		case err == nil:
			seen["type:"+m.Type.String()] = true
			seen["kind:"+m.Kind.String()] = true
			if m.DedupID != "" {
				seen["chirpstack:"+m.Kind.String()] = true
			}
		}
		for _, r := range DropReasons {
			if m.Drops[r] > 0 {
				seen["drop:"+r.String()] = true
			}
		}
	}
	var want []string
	for _, r := range RejectReasons {
		want = append(want, "reject:"+r.String())
	}
	for _, r := range DropReasons {
		want = append(want, "drop:"+r.String())
	}
	for _, k := range Kinds {
		want = append(want, "kind:"+k.String())
	}
	want = append(want, "type:telemetry", "type:event", "type:status", "chirpstack:water", "chirpstack:rural_toilet")
	for _, w := range want {
		if !seen[w] {
			t.Errorf("no golden case covers %s", w)
		}
	}
	if t.Failed() {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range seen {
				if !yield(k) {
					return
				}
			}
		})
		t.Logf("covered: %v", keys)
	}
}
