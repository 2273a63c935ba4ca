package ingest

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sanitel/sanitel/devices"
)

// Appender is where the pipeline makes accepted readings durable: the
// spool. done is called once the record is durable (nil) or cannot be.
type Appender interface {
	Append(ctx context.Context, rec []byte, done func(error)) error
}

// PipelineOptions configure a Pipeline.
type PipelineOptions struct {
	Decoder     *devices.Decoder
	Spool       Appender
	DeadLetters *DeadLetters
	Tracker     *Tracker // may be nil
	Metrics     *Metrics
	Logger      *slog.Logger
	Now         func() time.Time // default time.Now
}

// Pipeline takes one MQTT delivery at a time: it decodes and validates it,
// keeps a rejected message as a dead letter, and appends an accepted one to
// the spool, acknowledging the delivery only once the spool has it on disk.
// Handle is called from a single goroutine (the MQTT client's router).
type Pipeline struct {
	opts  PipelineOptions
	msg   devices.Message
	buf   []byte
	dedup dedupSet
}

// NewPipeline returns a pipeline, or an error naming a missing dependency.
func NewPipeline(opts PipelineOptions) (*Pipeline, error) {
	switch {
	case opts.Decoder == nil:
		return nil, errors.New("ingest: pipeline needs a decoder")
	case opts.Spool == nil:
		return nil, errors.New("ingest: pipeline needs a spool")
	case opts.DeadLetters == nil:
		return nil, errors.New("ingest: pipeline needs a dead-letter store")
	case opts.Metrics == nil:
		return nil, errors.New("ingest: pipeline needs metrics")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Pipeline{opts: opts, dedup: newDedupSet(8192)}, nil
}

// Handle processes one delivery. retained is the delivery's retain flag: a
// message the broker kept from before the subscription. ack acknowledges
// it to the broker; it is called at once for a message that is rejected, a
// duplicate or a status, and after the spool's group commit for an
// accepted reading. If the spool cannot take the record, ack is not called:
// the broker redelivers it. Handle returns an error only when the spool
// refused the record.
func (p *Pipeline) Handle(ctx context.Context, topic string, payload []byte, retained bool, ack func()) error {
	m := &p.msg
	now := p.opts.Now()
	err := p.opts.Decoder.Decode(topic, payload, now, m)
	if err == nil && retained && m.Received && m.Type != devices.Status {
		// A retained reading without ts comes again with every
		// subscription, from a time it does not say: stored at each
		// receipt it would be a new reading every restart, and make a
		// silent device look alive.
		err = &devices.Rejection{Reason: devices.ReasonBadTimestamp,
			Detail: "a retained message without ts: its time is unknown (publish readings with a ts, or without the retain flag)"}
	}
	if err != nil {
		var rej *devices.Rejection
		reason, detail := "bad_json", err.Error()
		if errors.As(err, &rej) {
			reason, detail = rej.Reason.String(), rej.Detail
		}
		p.opts.Metrics.Rejected.WithLabelValues(reason).Inc()
		p.countDrops(m)
		p.opts.DeadLetters.Add(now, topic, reason, detail, payload)
		p.opts.Logger.Debug("message rejected", "topic", topic, "reason", reason, "detail", detail)
		ack()
		return nil
	}
	p.countDrops(m)
	if m.Type == devices.Status {
		if m.Online {
			p.opts.Metrics.Statuses.WithLabelValues("online").Inc()
		} else {
			p.opts.Metrics.Statuses.WithLabelValues("offline").Inc()
		}
		if p.opts.Tracker != nil {
			p.opts.Tracker.Observe(m)
		}
		ack()
		return nil
	}
	if m.DedupID != "" && !p.dedup.add(m.DedupID) {
		p.opts.Metrics.Duplicates.Inc()
		ack()
		return nil
	}
	p.buf = devices.AppendRecord(p.buf[:0], m)
	p.opts.Metrics.Inflight.Inc()
	inflight := p.opts.Metrics.Inflight
	err = p.opts.Spool.Append(ctx, p.buf, func(err error) {
		inflight.Dec()
		if err == nil {
			ack()
		}
	})
	if err != nil {
		inflight.Dec()
		if m.DedupID != "" {
			p.dedup.remove(m.DedupID)
		}
		return err
	}
	p.opts.Metrics.accepted(m.Kind)
	if p.opts.Tracker != nil {
		p.opts.Tracker.Observe(m)
	}
	return nil
}

func (p *Pipeline) countDrops(m *devices.Message) {
	for _, r := range devices.DropReasons {
		if n := m.Drops[r]; n > 0 {
			p.opts.Metrics.FieldsDropped.WithLabelValues(r.String()).Add(float64(n))
		}
	}
}

// dedupSet remembers the last n ids added, to skip repeated ChirpStack
// uplinks (the same deduplicationId delivered twice).
type dedupSet struct {
	ring []string
	next int
	set  map[string]struct{}
}

func newDedupSet(n int) dedupSet {
	return dedupSet{ring: make([]string, n), set: make(map[string]struct{}, n)}
}

// add reports whether id is new, remembering it.
func (d *dedupSet) add(id string) bool {
	if _, seen := d.set[id]; seen {
		return false
	}
	if old := d.ring[d.next]; old != "" {
		delete(d.set, old)
	}
	d.ring[d.next] = id
	d.set[id] = struct{}{}
	d.next = (d.next + 1) % len(d.ring)
	return true
}

func (d *dedupSet) remove(id string) { delete(d.set, id) }
