package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/spool"
)

// Evaluator is what the alert feed hands readings to: the alerting engine.
// Eval is called from one goroutine, in spool order.
type Evaluator interface {
	Eval(ctx context.Context, m *devices.Message)
}

// AlertFeedOptions configure an AlertFeed.
type AlertFeedOptions struct {
	Reader    SpoolReader
	Registry  *devices.Registry
	Evaluator Evaluator
	// SaveState persists the evaluator's state. The feed calls it before it
	// commits its spool checkpoint, so after a crash the evaluator resumes
	// from a state that matches the checkpoint and replays what followed.
	SaveState    func() error
	SaveInterval time.Duration // default 1s
	Logger       *slog.Logger
}

// AlertFeed is the spool consumer that feeds accepted readings to alert
// evaluation. It keeps its own checkpoint, apart from the InfluxDB
// writer's, so an InfluxDB outage does not hold alerts back and a replayed
// backlog is evaluated exactly as it would have been live.
type AlertFeed struct {
	opts     AlertFeedOptions
	msg      devices.Message
	caughtUp atomic.Bool
}

// feedBatch is the most records the feed reads at once.
const feedBatch = 1024

// CaughtUp reports whether the feed's last read found the end of the
// spool: no accepted reading is waiting to be evaluated. no_data checks
// wait for it, so a replayed backlog does not make devices look silent.
func (f *AlertFeed) CaughtUp() bool { return f.caughtUp.Load() }

// NewAlertFeed returns an alert feed; Run drives it.
func NewAlertFeed(opts AlertFeedOptions) (*AlertFeed, error) {
	if opts.Reader == nil || opts.Evaluator == nil || opts.SaveState == nil {
		return nil, errors.New("ingest: alert feed needs a reader, an evaluator and SaveState")
	}
	if opts.SaveInterval <= 0 {
		opts.SaveInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &AlertFeed{opts: opts}, nil
}

// Run feeds readings until ctx ends, then saves state and commits.
func (f *AlertFeed) Run(ctx context.Context) error {
	var through, saved int64 = -1, -1
	lastSave := time.Now()
	checkpoint := func() error {
		if through == saved {
			return nil
		}
		if err := f.opts.SaveState(); err != nil {
			return fmt.Errorf("save alert state: %w", err)
		}
		if err := f.opts.Reader.Commit(spool.Offset(through)); err != nil {
			return fmt.Errorf("commit alert checkpoint: %w", err)
		}
		saved, lastSave = through, time.Now()
		return nil
	}
	for {
		readCtx, cancel := context.WithTimeout(ctx, f.opts.SaveInterval)
		recs, err := f.opts.Reader.Read(readCtx, feedBatch)
		cancel()
		f.caughtUp.Store(len(recs) < feedBatch)
		if err != nil && ctx.Err() != nil {
			// Evaluate nothing more; persist what was evaluated.
			return checkpoint()
		}
		for _, r := range recs {
			through = int64(r.Offset)
			if err := devices.DecodeRecord(r.Data, f.opts.Registry, &f.msg); err != nil {
				f.opts.Logger.Error("skipping unreadable spool record", "offset", r.Offset, "err", err)
				continue
			}
			f.opts.Evaluator.Eval(ctx, &f.msg)
		}
		if time.Since(lastSave) >= f.opts.SaveInterval {
			if err := checkpoint(); err != nil {
				f.opts.Logger.Error("alert checkpoint failed; will retry", "err", err)
			}
		}
	}
}
