package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"

	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/spool"
)

// SpoolReader is the writer's view of its spool consumer.
type SpoolReader interface {
	Read(ctx context.Context, max int) ([]spool.Record, error)
	Commit(through spool.Offset) error
}

// WriterOptions configure the InfluxDB writer.
type WriterOptions struct {
	URL, Token, Org, Bucket string
	BatchSize               int           // points per write; default 5000
	FlushInterval           time.Duration // longest a point waits for a batch to fill; default 1s
	Timeout                 time.Duration // per request; default 10s
	Gzip                    bool
	MaxRetryInterval        time.Duration // back-off cap; default 30s
	Reader                  SpoolReader
	Registry                *devices.Registry
	DeadLetters             *DeadLetters
	Metrics                 *Metrics
	Logger                  *slog.Logger
	Now                     func() time.Time
}

// Writer drains the spool to InfluxDB in batches through the v2 write API
// (/api/v2/write, millisecond precision), with influxdb-client-go's HTTP
// service. It advances its spool checkpoint only after InfluxDB accepted a
// batch; what InfluxDB refuses for good (400/422) becomes dead letters.
type Writer struct {
	opts    WriterOptions
	client  influxdb2.Client
	svc     ihttp.Service
	url     string
	lines   []byte
	spans   []span // line boundaries in lines, for splitting
	maxTS   int64
	msg     devices.Message
	zbuf    bytes.Buffer
	zw      *gzip.Writer
	healthy bool
	// failing is the last write error while writes fail, nil once one
	// succeeds; Health reports it.
	failing atomic.Pointer[error]
}

type span struct {
	start, end int
	ts         int64
}

// NewWriter returns a writer; Run drives it.
func NewWriter(opts WriterOptions) (*Writer, error) {
	switch {
	case opts.URL == "":
		return nil, errors.New("ingest: writer needs an InfluxDB URL")
	case opts.Reader == nil:
		return nil, errors.New("ingest: writer needs a spool reader")
	case opts.Metrics == nil || opts.DeadLetters == nil:
		return nil, errors.New("ingest: writer needs metrics and a dead-letter store")
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 5000
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.MaxRetryInterval <= 0 {
		opts.MaxRetryInterval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	copts := influxdb2.DefaultOptions().SetHTTPRequestTimeout(uint(opts.Timeout / time.Second)).SetLogLevel(0)
	client := influxdb2.NewClientWithOptions(strings.TrimSuffix(opts.URL, "/"), opts.Token, copts)
	q := url.Values{}
	q.Set("org", opts.Org)
	q.Set("bucket", opts.Bucket)
	q.Set("precision", "ms")
	w := &Writer{opts: opts, client: client, svc: client.HTTPService()}
	w.url = w.svc.ServerAPIURL() + "write?" + q.Encode()
	w.zw, _ = gzip.NewWriterLevel(&w.zbuf, gzip.BestSpeed)
	return w, nil
}

// Close releases the client's connections.
func (w *Writer) Close() { w.client.Close() }

// Run drains the spool until ctx ends. Failed writes are retried with
// back-off, so Run returns only when ctx is done (or the spool fails).
func (w *Writer) Run(ctx context.Context) error {
	for {
		through, n, err := w.fill(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read spool: %w", err)
		}
		if n == 0 {
			continue
		}
		if err := w.writeAll(ctx); err != nil {
			return nil // ctx ended while retrying; the checkpoint stays put
		}
		if err := w.opts.Reader.Commit(through); err != nil {
			return fmt.Errorf("commit spool checkpoint: %w", err)
		}
	}
}

// fill reads records into one batch of lines: up to BatchSize points, or
// what arrived within FlushInterval of the first.
func (w *Writer) fill(ctx context.Context) (through spool.Offset, points int, err error) {
	w.lines, w.spans = w.lines[:0], w.spans[:0]
	readCtx := ctx
	for points < w.opts.BatchSize {
		recs, rerr := w.opts.Reader.Read(readCtx, w.opts.BatchSize-points)
		if rerr != nil {
			if points > 0 && ctx.Err() == nil {
				return through, points, nil // the flush interval ended
			}
			return through, points, rerr
		}
		for _, r := range recs {
			through = r.Offset
			if err := devices.DecodeRecord(r.Data, w.opts.Registry, &w.msg); err != nil {
				w.opts.Logger.Error("skipping unreadable spool record", "offset", r.Offset, "err", err)
				continue
			}
			start := len(w.lines)
			w.lines = devices.AppendLineProtocol(w.lines, &w.msg)
			if len(w.lines) > start {
				w.spans = append(w.spans, span{start, len(w.lines), w.msg.TS})
				points++
			}
		}
		if readCtx == ctx && len(recs) > 0 {
			if points == 0 {
				return through, 0, w.opts.Reader.Commit(through) // nothing to write
			}
			// Wait at most FlushInterval for the batch to fill.
			var cancel context.CancelFunc
			readCtx, cancel = context.WithTimeout(ctx, w.opts.FlushInterval)
			defer cancel()
		}
	}
	return through, points, nil
}

// writeAll writes the batch, splitting it where InfluxDB says it is too
// large or refuses part of it, and retrying what may succeed later.
func (w *Writer) writeAll(ctx context.Context) error {
	return w.writeSpans(ctx, w.spans)
}

func (w *Writer) writeSpans(ctx context.Context, spans []span) error {
	if len(spans) == 0 {
		return nil
	}
	body := w.lines[spans[0].start:spans[len(spans)-1].end]
	backoff := 100 * time.Millisecond
	for {
		start := time.Now()
		err := w.post(ctx, body)
		if err == nil {
			w.opts.Metrics.WriteSeconds.Observe(time.Since(start).Seconds())
			w.opts.Metrics.Batches.Inc()
			w.opts.Metrics.PointsWritten.Add(float64(len(spans)))
			now := w.opts.Now().UnixMilli()
			for _, s := range spans {
				w.opts.Metrics.Lag.Observe(float64(max(now-s.ts, 0)) / 1000)
			}
			if !w.healthy {
				w.healthy = true
				w.failing.Store(nil)
				w.opts.Logger.Info("writing to InfluxDB", "url", w.opts.URL, "bucket", w.opts.Bucket)
			}
			return nil
		}
		class, retryAfter := classify(err)
		w.opts.Metrics.WriteErrors.WithLabelValues(class).Inc()
		switch class {
		case "too_large", "bad_request":
			if len(spans) > 1 {
				// Split: the halves may fit, and a refused half narrows down
				// the points InfluxDB will not take.
				mid := len(spans) / 2
				if err := w.writeSpans(ctx, spans[:mid]); err != nil {
					return err
				}
				return w.writeSpans(ctx, spans[mid:])
			}
			if class == "bad_request" {
				w.refuse(spans[0], err)
				return nil
			}
			// A single point too large can never be written.
			w.refuse(spans[0], err)
			return nil
		}
		w.healthy = false
		hint := writeHint(class, w.opts.Bucket)
		failed := fmt.Errorf("writes fail (%s): %w", class, err)
		if hint != "" {
			failed = fmt.Errorf("%w; %s", failed, hint)
		}
		w.failing.Store(&failed)
		wait := backoff
		if retryAfter > 0 {
			wait = retryAfter
		}
		wait = min(wait, w.opts.MaxRetryInterval)
		w.opts.Logger.Warn("InfluxDB write failed; keeping the batch in the spool and retrying",
			"class", class, "err", err, "points", len(spans), "retry_in", wait.String(),
			"hint", hint)
		jitter := time.Duration(rand.Int64N(int64(wait)/5 + 1))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait + jitter):
		}
		backoff = min(backoff*2, w.opts.MaxRetryInterval)
	}
}

func (w *Writer) refuse(s span, err error) {
	line := strings.TrimSuffix(string(w.lines[s.start:s.end]), "\n")
	w.opts.Metrics.DeadLettered.Inc()
	w.opts.DeadLetters.Add(w.opts.Now(), "influxdb", "influx_refused", err.Error(), []byte(line))
	w.opts.Logger.Error("InfluxDB refused a point; kept as a dead letter", "err", err, "line", line)
}

func (w *Writer) post(ctx context.Context, body []byte) error {
	var rd *bytes.Reader
	gz := w.opts.Gzip && len(body) > 1024
	if gz {
		w.zbuf.Reset()
		w.zw.Reset(&w.zbuf)
		w.zw.Write(body)
		w.zw.Close()
		rd = bytes.NewReader(w.zbuf.Bytes())
	} else {
		rd = bytes.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	perr := w.svc.DoPostRequest(ctx, w.url, rd, func(req *http.Request) {
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		if gz {
			req.Header.Set("Content-Encoding", "gzip")
		}
	}, func(resp *http.Response) error { return resp.Body.Close() })
	if perr != nil {
		return perr
	}
	return nil
}

// classify sorts a write error into a metric class and says how long the
// server asked us to wait. Decided by type and status code, never by text.
func classify(err error) (class string, retryAfter time.Duration) {
	var he *ihttp.Error
	if !errors.As(err, &he) || he.StatusCode == 0 {
		return "network", 0
	}
	retryAfter = time.Duration(he.RetryAfter) * time.Second
	switch sc := he.StatusCode; {
	case sc == http.StatusRequestEntityTooLarge:
		return "too_large", 0
	case sc == http.StatusBadRequest || sc == http.StatusUnprocessableEntity:
		return "bad_request", 0
	case sc == http.StatusTooManyRequests:
		return "throttled", retryAfter
	case sc == http.StatusServiceUnavailable:
		return "unavailable", retryAfter
	case sc == http.StatusUnauthorized || sc == http.StatusForbidden:
		return "auth", retryAfter
	case sc == http.StatusNotFound:
		return "not_found", retryAfter
	default:
		return "server", retryAfter
	}
}

// writeHint says what to do about a class of write error that retrying
// alone does not mend; empty for the others.
func writeHint(class, bucket string) string {
	switch class {
	case "auth":
		return "check influx.token (InfluxDB 1.8: user:password) and its rights on the bucket"
	case "not_found":
		db, _, _ := strings.Cut(bucket, "/")
		return fmt.Sprintf("create the bucket %q (InfluxDB 1.8: CREATE DATABASE %q), or check influx.org", bucket, db)
	}
	return ""
}

// Health checks, for readiness, that InfluxDB answers and that the last
// write did not fail: a server can answer pings and still refuse every
// write (a missing bucket, a wrong token).
func (w *Writer) Health(ctx context.Context) error {
	ok, err := w.client.Ping(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("InfluxDB ping failed")
	}
	if f := w.failing.Load(); f != nil {
		return *f
	}
	return nil
}
