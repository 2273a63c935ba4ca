package spool

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestMain fails the run if a spool goroutine outlives the tests: every
// Spool a test opens must be closed, and Close must stop the committer.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "spool.(*Spool).run") {
				fmt.Fprintf(os.Stderr, "leaked spool goroutine:\n%s\n", g)
				code = 1
			}
		}
	}
	os.Exit(code)
}

// lockedBuffer is a log sink safe for the committer and the test to share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// open opens a spool that the test closes at its end, logging to logs if
// non-nil and to the test log otherwise.
func open(t testing.TB, opts Options, logs *lockedBuffer) *Spool {
	t.Helper()
	if opts.Logger == nil {
		if logs != nil {
			opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		} else {
			opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
		}
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// appendAll appends recs in order and waits until each is durable.
func appendAll(t testing.TB, s *Spool, recs ...string) {
	t.Helper()
	errs := make(chan error, len(recs))
	for _, rec := range recs {
		if err := s.Append(context.Background(), []byte(rec), func(err error) { errs <- err }); err != nil {
			t.Fatalf("Append(%q): %v", rec, err)
		}
	}
	for range recs {
		if err := <-errs; err != nil {
			t.Fatalf("done: %v", err)
		}
	}
}

// readN reads exactly n records, copying them out of the reader's buffer.
func readN(t testing.TB, r *Reader, n int) []Record {
	t.Helper()
	out, err := readRecords(r, n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readRecords is readN for goroutines other than the test's.
func readRecords(r *Reader, n int) ([]Record, error) {
	var out []Record
	for len(out) < n {
		recs, err := r.Read(context.Background(), n-len(out))
		if err != nil {
			return out, fmt.Errorf("read after %d of %d records: %w", len(out), n, err)
		}
		for _, rec := range recs {
			out = append(out, Record{Offset: rec.Offset, Data: bytes.Clone(rec.Data)})
		}
	}
	return out, nil
}

// assertDrained checks that nothing more is committed for r: Read with a
// cancelled context returns what is available, or ctx.Err() when nothing is.
func assertDrained(t testing.TB, r *Reader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if recs, err := r.Read(ctx, 0); err != context.Canceled {
		t.Fatalf("Read at the end = %d records, %v; want context.Canceled", len(recs), err)
	}
}

func datas(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Data)
	}
	return out
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%03d", prefix, i))
	}
	return out
}

// segmentFiles lists the segment files in dir.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), segmentSuffix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func mustReader(t testing.TB, s *Spool, name string) *Reader {
	t.Helper()
	r, err := s.Reader(name)
	if err != nil {
		t.Fatalf("Reader(%q): %v", name, err)
	}
	return r
}
