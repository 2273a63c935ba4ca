package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// frameOf is the on-disk size of a record of n bytes.
func frameOf(n int) int64 { return frameHeaderSize + int64(n) }

func TestAppendReadConcurrent(t *testing.T) {
	const appenders, perAppender = 4, 500
	for _, tc := range []struct {
		name         string
		segmentBytes int64
	}{
		{"one segment", 0},
		{"many segments", 4 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, Options{Dir: t.TempDir(), SegmentBytes: tc.segmentBytes, Consumers: []string{"influx", "alerts"}}, nil)

			// Readers run while appenders append, so they meet segment
			// rolls and wait for commits.
			got := make(map[string][]Record)
			var mu sync.Mutex
			var readers sync.WaitGroup
			for _, name := range []string{"influx", "alerts"} {
				r := mustReader(t, s, name)
				readers.Go(func() {
					recs, err := readRecords(r, appenders*perAppender)
					if err != nil {
						t.Errorf("%s: %v", name, err)
					}
					mu.Lock()
					got[name] = recs
					mu.Unlock()
				})
			}

			calls := make([]atomic.Int32, appenders*perAppender)
			var appending, dones sync.WaitGroup
			dones.Add(appenders * perAppender)
			for a := range appenders {
				appending.Go(func() {
					for i := range perAppender {
						rec := fmt.Sprintf("%d %06d %s", a, i, strings.Repeat("x", 100))
						n := &calls[a*perAppender+i]
						err := s.Append(context.Background(), []byte(rec), func(err error) {
							if err != nil {
								t.Errorf("done(%q): %v", rec[:8], err)
							}
							n.Add(1)
							dones.Done()
						})
						if err != nil {
							t.Errorf("Append: %v", err)
							dones.Done()
						}
					}
				})
			}
			appending.Wait()
			dones.Wait()
			readers.Wait()
			for i := range calls {
				if n := calls[i].Load(); n != 1 {
					t.Fatalf("done of record %d called %d times", i, n)
				}
			}

			if !slices.EqualFunc(got["influx"], got["alerts"], func(a, b Record) bool {
				return a.Offset == b.Offset && bytes.Equal(a.Data, b.Data)
			}) {
				t.Fatal("the two readers saw different logs")
			}
			next := make([]int, appenders)
			for i, rec := range got["influx"] {
				if i > 0 && rec.Offset <= got["influx"][i-1].Offset {
					t.Fatalf("offset %d after %d", rec.Offset, got["influx"][i-1].Offset)
				}
				var a, seq int
				if _, err := fmt.Sscanf(string(rec.Data), "%d %d", &a, &seq); err != nil {
					t.Fatalf("record %q: %v", rec.Data, err)
				}
				if seq != next[a] {
					t.Fatalf("appender %d: record %d, want %d (order lost)", a, seq, next[a])
				}
				next[a]++
			}
			if tc.segmentBytes > 0 {
				if n := len(segmentFiles(t, s.opts.Dir)); n < 2 {
					t.Errorf("%d segment files; the test meant to roll", n)
				}
			}
		})
	}
}

func TestRecoverTornTail(t *testing.T) {
	recs := numbered("reading-", 0, 5)
	frame := frameOf(len(recs[0]))
	full := 5 * frame
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
		keep   int // records that survive
	}{
		{"clean", func(*testing.T, string) {}, 5},
		{"garbage appended", appendBytes([]byte("\xde\xad\xbe\xef garbage")), 5},
		{"zeros appended", appendBytes(make([]byte, 64)), 5},
		{"huge length appended", appendBytes([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1}), 5},
		{"truncated mid-record", truncateTo(full - 3), 4},
		{"truncated mid-header", truncateTo(4*frame + 5), 4},
		{"flipped byte in last record", flipByte(full - 1), 4},
		{"flipped byte in last checksum", flipByte(4*frame + 5), 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, Consumers: []string{"influx"}}
			s := open(t, opts, nil)
			appendAll(t, s, recs...)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, segmentName(0))
			tc.damage(t, path)

			var logs lockedBuffer
			s = open(t, opts, &logs)
			if warned := strings.Contains(logs.String(), "truncated torn tail"); warned != (tc.name != "clean") {
				t.Errorf("warning logged = %v, logs:\n%s", warned, logs.String())
			}
			if info, err := os.Stat(path); err != nil || info.Size() != int64(tc.keep)*frame {
				t.Fatalf("segment after recovery: %v, %v; want %d bytes", info.Size(), err, int64(tc.keep)*frame)
			}
			if got := s.Bytes(); got != int64(tc.keep)*frame {
				t.Errorf("Bytes() = %d, want %d", got, int64(tc.keep)*frame)
			}

			appendAll(t, s, "after-crash")
			r := mustReader(t, s, "influx")
			want := append(slices.Clone(recs[:tc.keep]), "after-crash")
			if got := datas(readN(t, r, len(want))); !slices.Equal(got, want) {
				t.Fatalf("read %q, want %q", got, want)
			}
			assertDrained(t, r)
		})
	}
}

func appendBytes(b []byte) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
	}
}

func truncateTo(size int64) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
	}
}

func flipByte(at int64) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[at] ^= 0x40
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckpointSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Consumers: []string{"influx", "alerts"}}
	recs := numbered("r", 0, 10)

	s := open(t, opts, nil)
	appendAll(t, s, recs...)
	r := mustReader(t, s, "influx")
	got := readN(t, r, 5)
	if err := r.Commit(got[4].Offset); err != nil {
		t.Fatal(err)
	}
	if want := 5 * frameOf(len(recs[0])); r.Lag() != want {
		t.Errorf("Lag() = %d, want %d", r.Lag(), want)
	}
	// Read ahead without committing: a restart must replay these.
	readN(t, r, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, opts, nil)
	if got := datas(readN(t, mustReader(t, s, "influx"), 5)); !slices.Equal(got, recs[5:]) {
		t.Errorf("influx resumed with %q, want %q", got, recs[5:])
	}
	if got := datas(readN(t, mustReader(t, s, "alerts"), 10)); !slices.Equal(got, recs) {
		t.Errorf("alerts (no checkpoint) read %q, want %q", got, recs)
	}
}

// TestCommitInsideBatch commits a record that is not the last of a Read, so
// its length must be read back from the segment.
func TestCommitInsideBatch(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Consumers: []string{"influx"}}
	recs := []string{"a", "bb", "ccc", "dddd", "eeeee", "ffffff"}

	s := open(t, opts, nil)
	appendAll(t, s, recs...)
	r := mustReader(t, s, "influx")
	got := readN(t, r, 4)
	if err := r.Commit(got[1].Offset); err != nil {
		t.Fatal(err)
	}
	// Older than the checkpoint: nothing to do.
	if err := r.Commit(got[0].Offset); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(got[3].Offset + Offset(frameOf(4))); err == nil {
		t.Error("Commit of a record not yet read succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, opts, nil)
	r = mustReader(t, s, "influx")
	if got := datas(readN(t, r, 4)); !slices.Equal(got, recs[2:]) {
		t.Errorf("resumed with %q, want %q", got, recs[2:])
	}
}

// twenty returns records of exactly 20 bytes, numbered from to to-1.
func twenty(from, to int) []string { return numbered("20-byte-record-n-", from, to) }

// gcLayout appends ten 20-byte records with three frames per segment, which
// gives segments at 0, 84, 168 (84 bytes each) and 252 (one record).
func gcLayout(t *testing.T, opts Options) (*Spool, []string) {
	t.Helper()
	opts.SegmentBytes = 3 * frameOf(20)
	s := open(t, opts, nil)
	recs := twenty(0, 10)
	appendAll(t, s, recs...)
	return s, recs
}

func TestSegmentGC(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Consumers: []string{"influx", "alerts"}}
	s, recs := gcLayout(t, opts)
	seg := func(bases ...Offset) []string {
		var out []string
		for _, b := range bases {
			out = append(out, segmentName(b))
		}
		return out
	}
	check := func(wantFiles []string, wantBytes int64) {
		t.Helper()
		if got := segmentFiles(t, dir); !slices.Equal(got, wantFiles) {
			t.Errorf("segments %v, want %v", got, wantFiles)
		}
		if got := s.Bytes(); got != wantBytes {
			t.Errorf("Bytes() = %d, want %d", got, wantBytes)
		}
	}
	check(seg(0, 84, 168, 252), 280)

	influx := mustReader(t, s, "influx")
	all := readN(t, influx, 10)
	if err := influx.Commit(all[9].Offset); err != nil {
		t.Fatal(err)
	}
	check(seg(0, 84, 168, 252), 280) // alerts has not moved

	alerts := mustReader(t, s, "alerts")
	got := readN(t, alerts, 7)
	if err := alerts.Commit(got[4].Offset); err != nil { // into segment 84
		t.Fatal(err)
	}
	check(seg(84, 168, 252), 196)
	if err := alerts.Commit(got[6].Offset); err != nil { // the first record of 168
		t.Fatal(err)
	}
	check(seg(168, 252), 112)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, opts, nil)
	check(seg(168, 252), 112)
	alerts = mustReader(t, s, "alerts")
	if got := datas(readN(t, alerts, 3)); !slices.Equal(got, recs[7:]) {
		t.Errorf("alerts resumed with %q, want %q", got, recs[7:])
	}
	assertDrained(t, mustReader(t, s, "influx"))
}

func TestCheckpointIntoDeletedSegment(t *testing.T) {
	dir := t.TempDir()
	both := Options{Dir: dir, Consumers: []string{"influx", "alerts"}}
	s, recs := gcLayout(t, both)
	alerts := mustReader(t, s, "alerts")
	if err := alerts.Commit(readN(t, alerts, 2)[1].Offset); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Without alerts listed, influx alone decides what is kept.
	s = open(t, Options{Dir: dir, Consumers: []string{"influx"}}, nil)
	influx := mustReader(t, s, "influx")
	if err := influx.Commit(readN(t, influx, 10)[9].Offset); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, both, nil)
	alerts = mustReader(t, s, "alerts")
	if got := datas(readN(t, alerts, 1)); !slices.Equal(got, recs[9:]) {
		t.Errorf("alerts restarted with %q, want the oldest kept record %q", got, recs[9:])
	}
	assertDrained(t, alerts)
}

// TestReadCorruptSegment damages a segment recovery does not scan (only the
// last one is): the reader must refuse it rather than return bad data.
func TestReadCorruptSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, Consumers: []string{"influx"}}
	s, recs := gcLayout(t, opts)
	s.Close()
	flipByte(frameHeaderSize+3)(t, filepath.Join(dir, segmentName(84)))

	s = open(t, opts, nil)
	r := mustReader(t, s, "influx")
	if got := datas(readN(t, r, 3)); !slices.Equal(got, recs[:3]) {
		t.Fatalf("read %q, want %q", got, recs[:3])
	}
	if recs, err := r.Read(context.Background(), 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read of a damaged record = %d records, %v; want ErrCorrupt", len(recs), err)
	}
}

func TestBackpressure(t *testing.T) {
	// Ten 20-byte records make 280 bytes; an eleventh would pass 300.
	for _, tc := range []struct {
		name         string
		segmentBytes int64
	}{
		{"segments smaller than the bound", 3 * frameOf(20)},
		{"one segment as large as the bound", 0}, // needs a roll on demand
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, Options{Dir: t.TempDir(), MaxBytes: 300, SegmentBytes: tc.segmentBytes, Consumers: []string{"influx"}}, nil)
			waiting := make(chan struct{}, 10)
			s.onWait = func() { waiting <- struct{}{} }
			appendAll(t, s, twenty(0, 10)...)

			done := make(chan error, 1)
			returned := make(chan error, 1)
			go func() {
				returned <- s.Append(context.Background(), []byte("20-byte-record-n-010"), func(err error) { done <- err })
			}()
			<-waiting // the Append is waiting for space
			if !s.Full() {
				t.Errorf("Full() = false with an Append waiting, %d bytes", s.Bytes())
			}

			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := s.Append(ctx, []byte(twenty(99, 100)[0]), func(error) { t.Error("done of a cancelled Append called") }); err != context.Canceled {
				t.Errorf("Append with a cancelled ctx = %v, want context.Canceled", err)
			}
			<-waiting

			r := mustReader(t, s, "influx")
			recs := readN(t, r, 10)
			select {
			case err := <-returned:
				t.Fatalf("Append returned %v while the spool was full", err)
			default:
			}

			if err := r.Commit(recs[9].Offset); err != nil {
				t.Fatal(err)
			}
			if err := <-returned; err != nil {
				t.Fatalf("Append after a commit: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("done: %v", err)
			}
			if got := datas(readN(t, r, 1)); got[0] != "20-byte-record-n-010" {
				t.Errorf("read %q after the blocked Append", got)
			}
			if s.Full() {
				t.Errorf("Full() with %d bytes", s.Bytes())
			}
		})
	}
}

func TestAppendCancelledWhileWaiting(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir(), MaxBytes: 100, Consumers: []string{"influx"}}, nil)
	waiting := make(chan struct{}, 1)
	s.onWait = func() { waiting <- struct{}{} }
	appendAll(t, s, strings.Repeat("x", 90))

	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan error, 1)
	go func() {
		returned <- s.Append(ctx, []byte("blocked"), func(error) { t.Error("done of a cancelled Append called") })
	}()
	<-waiting
	cancel()
	if err := <-returned; err != context.Canceled {
		t.Fatalf("Append = %v, want context.Canceled", err)
	}
}

func TestCloseWakesBlockedAppend(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir(), MaxBytes: 100, Consumers: []string{"influx"}}, nil)
	waiting := make(chan struct{}, 1)
	s.onWait = func() { waiting <- struct{}{} }
	appendAll(t, s, strings.Repeat("x", 90))
	returned := make(chan error, 1)
	go func() {
		returned <- s.Append(context.Background(), []byte("blocked"), func(error) { t.Error("done of a refused Append called") })
	}()
	<-waiting
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-returned; !errors.Is(err, ErrClosed) {
		t.Fatalf("Append = %v, want ErrClosed", err)
	}
}

func TestWriteFailure(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir(), Consumers: []string{"influx"}}, nil)
	appendAll(t, s, "stored")
	// The committer owns the file; closing it under it makes the next write
	// fail as a full or failing disk would.
	s.active.Close()

	done := make(chan error, 3)
	for _, rec := range []string{"lost-1", "lost-2"} {
		if err := s.Append(context.Background(), []byte(rec), func(err error) { done <- err }); err != nil {
			t.Fatalf("Append before the failure is known: %v", err)
		}
	}
	for range 2 {
		if err := <-done; err == nil {
			t.Fatal("done(nil) for a record that was not written")
		}
	}
	if s.Err() == nil {
		t.Fatal("Err() = nil after a failed write")
	}
	if err := s.Append(context.Background(), []byte("refused"), func(error) { t.Error("done of a refused Append called") }); err == nil {
		t.Fatal("Append accepted a record after a write failure")
	}
	if err := s.Close(); err == nil {
		t.Error("Close() = nil after a write failure")
	}
}

func TestCloseFlushesPending(t *testing.T) {
	dir := t.TempDir()
	// Neither the interval nor the count can trigger a commit in this test.
	opts := Options{Dir: dir, CommitInterval: time.Hour, CommitRecords: 1 << 20, Consumers: []string{"influx"}}
	s := open(t, opts, nil)
	recs := numbered("pending-", 0, 10)
	var calls, failed atomic.Int32
	for _, rec := range recs {
		err := s.Append(context.Background(), []byte(rec), func(err error) {
			if err != nil {
				failed.Add(1)
			}
			calls.Add(1)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d done calls before any commit was due", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 10 || failed.Load() != 0 {
		t.Fatalf("after Close: %d done calls, %d failed; want 10, 0", calls.Load(), failed.Load())
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Append(context.Background(), []byte("late"), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}

	s = open(t, opts, nil)
	if got := datas(readN(t, mustReader(t, s, "influx"), 10)); !slices.Equal(got, recs) {
		t.Fatalf("read %q, want %q", got, recs)
	}
}

func TestCommitByCount(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir(), CommitInterval: time.Hour, CommitRecords: 5, Consumers: []string{"influx"}}, nil)
	// Five records make a batch although the interval is an hour away.
	appendAll(t, s, numbered("r", 0, 5)...)
	var calls atomic.Int32
	for _, rec := range numbered("r", 5, 8) {
		if err := s.Append(context.Background(), []byte(rec), func(error) { calls.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d of 3 records committed before a batch was due", n)
	}
	r := mustReader(t, s, "influx")
	readN(t, r, 5)
	assertDrained(t, r) // uncommitted records are never read
}

func TestCommitInterval(t *testing.T) {
	// synctest's clock moves only when every goroutine of the bubble is
	// blocked, so the interval is observed exactly, without real waiting.
	synctest.Test(t, func(t *testing.T) {
		s, err := Open(Options{Dir: t.TempDir(), CommitInterval: 2 * time.Millisecond, Consumers: []string{"influx"}})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var committed atomic.Bool
		if err := s.Append(context.Background(), []byte("r"), func(err error) { committed.Store(err == nil) }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if committed.Load() {
			t.Fatal("committed before CommitInterval")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if !committed.Load() {
			t.Fatal("not committed after CommitInterval")
		}
	})
}

func TestRecordSizes(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir(), SegmentBytes: 1 << 20, Consumers: []string{"influx"}}, nil)
	sizes := []int{1, 100, 4096, 300 << 10, MaxRecordSize, 7, readBufferSize - frameHeaderSize, readBufferSize, 3}
	var want []string
	for i, n := range sizes {
		want = append(want, strings.Repeat(string(rune('a'+i)), n))
	}
	appendAll(t, s, want...)
	r := mustReader(t, s, "influx")
	// Batches of two make the reader refill and grow its buffer mid-stream.
	var got []string
	for len(got) < len(want) {
		recs, err := r.Read(context.Background(), 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, datas(recs)...)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d: %d bytes %.8q…, want %d bytes %.8q…", i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
}

func TestAppendErrors(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir(), Consumers: []string{"influx"}}, nil)
	for _, tc := range []struct {
		name string
		rec  []byte
		want error
	}{
		{"empty", nil, ErrEmptyRecord},
		{"too large", make([]byte, MaxRecordSize+1), ErrRecordTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Append(context.Background(), tc.rec, func(error) { t.Error("done called") }); !errors.Is(err, tc.want) {
				t.Fatalf("Append = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no dir", Options{Consumers: []string{"influx"}}, "Dir is required"},
		{"no consumers", Options{Dir: t.TempDir()}, "at least one consumer"},
		{"path in name", Options{Dir: t.TempDir(), Consumers: []string{"../influx"}}, `consumer "../influx"`},
		{"duplicate", Options{Dir: t.TempDir(), Consumers: []string{"influx", "influx"}}, "listed twice"},
		{"negative", Options{Dir: t.TempDir(), MaxBytes: -1, Consumers: []string{"influx"}}, "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestOpenLocksDir(t *testing.T) {
	opts := Options{Dir: t.TempDir(), Consumers: []string{"influx"}}
	open(t, opts, nil)
	if s, err := Open(opts); err == nil {
		s.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
}

func TestReaderErrors(t *testing.T) {
	s := open(t, Options{Dir: t.TempDir(), Consumers: []string{"influx"}}, nil)
	if _, err := s.Reader("nobody"); !errors.Is(err, ErrUnknownConsumer) {
		t.Errorf("Reader(nobody) = %v, want ErrUnknownConsumer", err)
	}
	r := mustReader(t, s, "influx")
	if _, err := s.Reader("influx"); !errors.Is(err, ErrReaderOpen) {
		t.Errorf("second Reader = %v, want ErrReaderOpen", err)
	}
	r.Close()
	if _, err := r.Read(context.Background(), 1); !errors.Is(err, ErrReaderClosed) {
		t.Errorf("Read after Reader.Close = %v, want ErrReaderClosed", err)
	}
	r = mustReader(t, s, "influx") // the name is free again

	// A Read waiting for data ends with ErrClosed when the spool closes.
	read := make(chan error, 1)
	go func() {
		_, err := r.Read(context.Background(), 1)
		read <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-read; !errors.Is(err, ErrClosed) {
		t.Errorf("waiting Read after Close = %v, want ErrClosed", err)
	}
	if err := r.Commit(0); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Reader("influx"); !errors.Is(err, ErrClosed) {
		t.Errorf("Reader after Close = %v, want ErrClosed", err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := Options{Dir: t.TempDir(), Consumers: []string{"influx"}, Registerer: reg}
	s := open(t, opts, nil)
	appendAll(t, s, "a", "bb", "ccc")

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]*dto.Metric)
	for _, f := range families {
		got[f.GetName()] = f.GetMetric()[0]
	}
	if v := got["sanitel_spool_records_total"].GetCounter().GetValue(); v != 3 {
		t.Errorf("records_total = %v, want 3", v)
	}
	commits := got["sanitel_spool_commits_total"].GetCounter().GetValue()
	if commits < 1 || commits > 3 {
		t.Errorf("commits_total = %v, want 1 to 3", commits)
	}
	if n := got["sanitel_spool_commit_seconds"].GetHistogram().GetSampleCount(); float64(n) != commits {
		t.Errorf("commit_seconds count = %d, want %v", n, commits)
	}
	if v := got["sanitel_spool_bytes"].GetGauge().GetValue(); v != float64(3*frameHeaderSize+6) {
		t.Errorf("spool_bytes = %v, want %d", v, 3*frameHeaderSize+6)
	}

	// Close unregisters, so the spool can be opened again on one registry.
	s.Close()
	open(t, opts, nil)
}
