package ingest

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/spool"
)

// fakeReader serves fixed records once and records commits.
type fakeReader struct {
	mu      sync.Mutex
	recs    []spool.Record
	pos     int
	commits []spool.Offset
	done    chan struct{}
}

func (f *fakeReader) Read(ctx context.Context, max int) ([]spool.Record, error) {
	f.mu.Lock()
	if f.pos < len(f.recs) {
		n := min(max, len(f.recs)-f.pos)
		out := f.recs[f.pos : f.pos+n]
		f.pos += n
		f.mu.Unlock()
		return out, nil
	}
	f.mu.Unlock()
	<-ctx.Done()
	return nil, ctx.Err()
}

func (f *fakeReader) Commit(through spool.Offset) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commits = append(f.commits, through)
	if int(through) == len(f.recs)-1 && f.done != nil {
		close(f.done)
		f.done = nil
	}
	return nil
}

func testRegistry(t *testing.T) *devices.Registry {
	t.Helper()
	reg, err := devices.NewRegistry([]devices.Device{{ID: "bin-1", Kind: devices.KindBin, Street: "解放街道", OrgUnit: "区环卫所"}})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func records(t *testing.T, n int) []spool.Record {
	t.Helper()
	var recs []spool.Record
	for i := 0; i < n; i++ {
		m := devices.Message{Type: devices.Telemetry, DeviceID: "bin-1", Kind: devices.KindBin, TS: int64(1_700_000_000_000 + i)}
		m.Values.Set(devices.FillPct, float64(i))
		recs = append(recs, spool.Record{Offset: spool.Offset(i), Data: devices.AppendRecord(nil, &m)})
	}
	return recs
}

// influxFake answers each write with the status the test chooses and
// remembers the lines it accepted.
type influxFake struct {
	mu       sync.Mutex
	lines    []string
	requests int
	answer   func(n int, lines []string) (status int, retryAfter string)
}

func (f *influxFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = zr
	}
	b, _ := io.ReadAll(body)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	f.mu.Lock()
	f.requests++
	status, ra := f.answer(f.requests, lines)
	if status == 204 {
		f.lines = append(f.lines, lines...)
	}
	f.mu.Unlock()
	if ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	if status != 204 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"code":"invalid","message":"test says no"}`)
		return
	}
	w.WriteHeader(204)
}

func runWriter(t *testing.T, fake *influxFake, n, batch int) (*fakeReader, *Metrics, *DeadLetters) {
	t.Helper()
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	rd := &fakeReader{recs: records(t, n), done: make(chan struct{})}
	done := rd.done
	m := NewMetrics(nil)
	dl := NewDeadLetters(100)
	w, err := NewWriter(WriterOptions{
		URL: srv.URL, Token: "user:pass", Bucket: "db/autogen", BatchSize: batch, FlushInterval: 10 * time.Millisecond,
		Gzip: true, MaxRetryInterval: 50 * time.Millisecond, Reader: rd, Registry: testRegistry(t),
		DeadLetters: dl, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("writer never committed the last record")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	w.Close()
	return rd, m, dl
}

func TestWriterRetriesThrottlingAndOutages(t *testing.T) {
	fake := &influxFake{answer: func(n int, _ []string) (int, string) {
		switch n {
		case 1:
			return 429, "0"
		case 2:
			return 503, ""
		case 3:
			return 500, ""
		}
		return 204, ""
	}}
	_, m, dl := runWriter(t, fake, 10, 100)
	if len(fake.lines) != 10 {
		t.Fatalf("InfluxDB got %d lines, want 10", len(fake.lines))
	}
	for class, want := range map[string]float64{"throttled": 1, "unavailable": 1, "server": 1} {
		if got := testutil.ToFloat64(m.WriteErrors.WithLabelValues(class)); got != want {
			t.Errorf("write errors{%s} = %v, want %v", class, got, want)
		}
	}
	if got := testutil.ToFloat64(m.PointsWritten); got != 10 {
		t.Errorf("points written = %v, want 10", got)
	}
	if len(dl.List()) != 0 {
		t.Errorf("dead letters after retryable errors: %v", dl.List())
	}
}

func TestWriterSplitsTooLargeBatches(t *testing.T) {
	fake := &influxFake{answer: func(_ int, lines []string) (int, string) {
		if len(lines) > 3 {
			return 413, ""
		}
		return 204, ""
	}}
	_, m, _ := runWriter(t, fake, 16, 16)
	if len(fake.lines) != 16 {
		t.Fatalf("InfluxDB got %d lines, want 16", len(fake.lines))
	}
	if got := testutil.ToFloat64(m.WriteErrors.WithLabelValues("too_large")); got == 0 {
		t.Error("no too_large error counted")
	}
}

func TestWriterDeadLettersRefusedPoints(t *testing.T) {
	// InfluxDB refuses any batch holding the point with fill_pct=3.
	fake := &influxFake{answer: func(_ int, lines []string) (int, string) {
		for _, l := range lines {
			if strings.Contains(l, "fill_pct=3 ") {
				return 400, ""
			}
		}
		return 204, ""
	}}
	rd, m, dl := runWriter(t, fake, 8, 8)
	if len(fake.lines) != 7 {
		t.Fatalf("InfluxDB got %d lines, want the 7 good ones", len(fake.lines))
	}
	list := dl.List()
	if len(list) != 1 || !strings.Contains(list[0].Payload, "fill_pct=3 ") || list[0].Reason != "influx_refused" {
		t.Fatalf("dead letters = %+v, want the refused point", list)
	}
	if !strings.Contains(list[0].Detail, "test says no") {
		t.Errorf("dead letter detail %q lacks the server's reason", list[0].Detail)
	}
	if got := testutil.ToFloat64(m.DeadLettered); got != 1 {
		t.Errorf("refused points = %v, want 1", got)
	}
	if last := rd.commits[len(rd.commits)-1]; last != 7 {
		t.Errorf("last commit %d, want 7", last)
	}
}

func TestWriterCommitsOnlyAfterSuccess(t *testing.T) {
	var rd *fakeReader
	fake := &influxFake{}
	fake.answer = func(n int, _ []string) (int, string) {
		if n == 1 {
			rd.mu.Lock()
			commits := len(rd.commits)
			rd.mu.Unlock()
			if commits != 0 {
				t.Errorf("committed %d times before InfluxDB accepted anything", commits)
			}
			return 503, ""
		}
		return 204, ""
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	rd = &fakeReader{recs: records(t, 5), done: make(chan struct{})}
	done := rd.done
	w, err := NewWriter(WriterOptions{URL: srv.URL, Bucket: "b", BatchSize: 5, MaxRetryInterval: 10 * time.Millisecond,
		Reader: rd, Registry: testRegistry(t), DeadLetters: NewDeadLetters(1), Metrics: NewMetrics(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go w.Run(ctx)
	<-done
	cancel()
	if len(fake.lines) != 5 {
		t.Errorf("lines = %d, want 5", len(fake.lines))
	}
}

// TestWriterHealthReportsFailingWrites: InfluxDB answers pings but refuses
// writes with 404 (the bucket is missing). Health says so, with what to
// do, until a write succeeds; the error is counted as not_found.
func TestWriterHealthReportsFailingWrites(t *testing.T) {
	var missing sync.Mutex
	bucketMissing := true
	fake := &influxFake{answer: func(int, []string) (int, string) {
		missing.Lock()
		defer missing.Unlock()
		if bucketMissing {
			return 404, ""
		}
		return 204, ""
	}}
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
	mux.Handle("/", fake)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	rd := &fakeReader{recs: records(t, 5), done: make(chan struct{})}
	done := rd.done
	m := NewMetrics(nil)
	w, err := NewWriter(WriterOptions{
		URL: srv.URL, Token: "user:pass", Bucket: "db/autogen", BatchSize: 100, FlushInterval: 10 * time.Millisecond,
		MaxRetryInterval: 20 * time.Millisecond, Reader: rd, Registry: testRegistry(t),
		DeadLetters: NewDeadLetters(10), Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		err := w.Health(ctx)
		if err != nil && strings.Contains(err.Error(), `CREATE DATABASE "db"`) && strings.Contains(err.Error(), "not_found") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Health = %v, want the failing write with its hint", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	missing.Lock()
	bucketMissing = false
	missing.Unlock()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writer never committed after the bucket appeared")
	}
	if err := w.Health(ctx); err != nil {
		t.Errorf("Health after a successful write: %v", err)
	}
	if got := testutil.ToFloat64(m.WriteErrors.WithLabelValues("not_found")); got < 1 {
		t.Errorf("write errors{not_found} = %v, want ≥ 1", got)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
