package spool

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// benchRecord is about the size of an encoded reading.
var benchRecord = []byte(`{"device":"bin-000417","kind":"bin","ts":1764321000000,"fill_pct":73.5,"temp_c":21.25,"battery_v":3.61}  `)

// BenchmarkAppend appends from parallel goroutines the way the subscriber
// does: without waiting for each record, but with a bound on records in
// flight (the broker's unacknowledged-message window), and counts a record
// only once its done has been called.
func BenchmarkAppend(b *testing.B) {
	// 20 is Mosquitto's default max_inflight_messages: one appender's worth
	// of acknowledgements per commit, which is why the broker configs raise it.
	for _, inflight := range []int{20, 256, 4096} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			s, err := Open(Options{
				Dir:       b.TempDir(),
				MaxBytes:  1 << 40, // no consumer in this benchmark
				Consumers: []string{"influx"},
				Logger:    slog.New(slog.DiscardHandler),
			})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()

			sem := make(chan struct{}, inflight)
			var durable, failed atomic.Int64
			finished := make(chan struct{})
			// One callback for every record: a closure per record would be
			// the benchmark's allocation, not the spool's.
			total := int64(b.N)
			done := func(err error) {
				if err != nil {
					failed.Add(1)
				}
				<-sem
				if durable.Add(1) == total {
					close(finished)
				}
			}
			ctx := context.Background()
			b.SetBytes(int64(len(benchRecord)))
			b.ReportAllocs()
			b.SetParallelism(4) // 4×GOMAXPROCS appenders, like several subscriber callbacks
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					sem <- struct{}{}
					if err := s.Append(ctx, benchRecord, done); err != nil {
						b.Error(err)
						return
					}
				}
			})
			<-finished
			b.StopTimer()
			elapsed := time.Since(start)
			if failed.Load() > 0 {
				b.Fatalf("%d records failed", failed.Load())
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
		})
	}
}

// BenchmarkRead reads committed records with one reader, in batches of 1024
// as the InfluxDB writer would. A fixed log of 64 Ki records (about 7 MiB,
// several segments) is written once and read again by a fresh Reader as
// often as b.N asks, so the benchmark does not write gigabytes first.
func BenchmarkRead(b *testing.B) {
	const records = 64 << 10
	s, err := Open(Options{
		Dir:          b.TempDir(),
		SegmentBytes: 2 << 20,
		Consumers:    []string{"influx"},
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	errs := make(chan error, 1)
	var n atomic.Int64
	done := func(err error) {
		if err != nil {
			select {
			case errs <- err:
			default:
			}
		}
		if n.Add(1) == records {
			close(errs)
		}
	}
	for range records {
		if err := s.Append(context.Background(), benchRecord, done); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-errs; err != nil {
		b.Fatal(err)
	}

	b.SetBytes(int64(len(benchRecord)))
	b.ReportAllocs()
	start := time.Now()
	b.ResetTimer()
	var r *Reader
	left := 0 // records r has yet to return
	for read := 0; read < b.N; {
		if left == 0 {
			// The checkpoint never moves, so each Reader starts at the oldest record.
			if r != nil {
				r.Close()
			}
			if r, err = s.Reader("influx"); err != nil {
				b.Fatal(err)
			}
			left = records
		}
		recs, err := r.Read(context.Background(), min(1024, b.N-read))
		if err != nil {
			b.Fatal(err)
		}
		for _, rec := range recs {
			if len(rec.Data) != len(benchRecord) {
				b.Fatalf("record of %d bytes", len(rec.Data))
			}
		}
		read += len(recs)
		left -= len(recs)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
