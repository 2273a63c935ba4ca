package ingest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sanitel/sanitel/devices"
)

// holdAppender keeps appended records and their callbacks until the test
// decides whether they became durable.
type holdAppender struct {
	recs  [][]byte
	dones []func(error)
	err   error
}

func (h *holdAppender) Append(_ context.Context, rec []byte, done func(error)) error {
	if h.err != nil {
		return h.err
	}
	h.recs = append(h.recs, append([]byte(nil), rec...))
	h.dones = append(h.dones, done)
	return nil
}

func newTestPipeline(t *testing.T, app Appender) (*Pipeline, *Metrics, *DeadLetters, time.Time) {
	t.Helper()
	now := time.Date(2026, 11, 28, 8, 5, 0, 0, time.UTC)
	dec, err := devices.NewDecoder(devices.DecoderOptions{Registry: testRegistry(t)})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(nil)
	dl := NewDeadLetters(10)
	p, err := NewPipeline(PipelineOptions{Decoder: dec, Spool: app, DeadLetters: dl, Metrics: m, Tracker: NewTracker(),
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return p, m, dl, now
}

func TestPipelineAcksOnlyDurableReadings(t *testing.T) {
	app := &holdAppender{}
	p, m, dl, _ := newTestPipeline(t, app)
	acks := 0
	ack := func() { acks++ }

	if err := p.Handle(context.Background(), "sanitation/bin/bin-1/telemetry", []byte(`{"fill_pct":50}`), false, ack); err != nil {
		t.Fatal(err)
	}
	if acks != 0 {
		t.Fatal("acknowledged before the spool made the reading durable")
	}
	if got := testutil.ToFloat64(m.Inflight); got != 1 {
		t.Errorf("inflight = %v, want 1", got)
	}
	app.dones[0](errors.New("disk full"))
	if acks != 0 {
		t.Fatal("acknowledged a reading the spool failed to store")
	}
	p.Handle(context.Background(), "sanitation/bin/bin-1/telemetry", []byte(`{"fill_pct":51}`), false, ack)
	app.dones[1](nil)
	if acks != 1 {
		t.Fatalf("acks = %d after a durable append, want 1", acks)
	}
	if got := testutil.ToFloat64(m.Inflight); got != 0 {
		t.Errorf("inflight = %v, want 0", got)
	}

	// A rejected message is acknowledged at once (the broker must not
	// redeliver it forever) and kept as a dead letter.
	p.Handle(context.Background(), "sanitation/bin/nobody/telemetry", []byte(`{"fill_pct":1}`), false, ack)
	if acks != 2 {
		t.Fatalf("rejected message not acknowledged")
	}
	if l := dl.List(); len(l) != 1 || l[0].Reason != "unknown_device" {
		t.Fatalf("dead letters = %+v", l)
	}
	if got := testutil.ToFloat64(m.Rejected.WithLabelValues("unknown_device")); got != 1 {
		t.Errorf("rejected{unknown_device} = %v", got)
	}
	if len(app.recs) != 2 {
		t.Errorf("spooled %d records, want 2", len(app.recs))
	}
}

func TestPipelineSpoolRefusalIsNotAcknowledged(t *testing.T) {
	app := &holdAppender{err: errors.New("spool: read-only file system")}
	p, m, _, _ := newTestPipeline(t, app)
	acked := false
	err := p.Handle(context.Background(), "sanitation/bin/bin-1/telemetry", []byte(`{"fill_pct":50}`), false, func() { acked = true })
	if err == nil || acked {
		t.Fatalf("err = %v, acked = %v; want the error and no ack", err, acked)
	}
	if got := testutil.ToFloat64(m.Inflight); got != 0 {
		t.Errorf("inflight = %v, want 0", got)
	}
}

func TestPipelineSkipsRepeatedChirpStackUplinks(t *testing.T) {
	app := &holdAppender{}
	reg, err := devices.NewRegistry([]devices.Device{{ID: "w-1", Kind: devices.KindWater, DevEUI: "0102030405060708"}})
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := devices.NewDecoder(devices.DecoderOptions{Registry: reg})
	m := NewMetrics(nil)
	p, _ := NewPipeline(PipelineOptions{Decoder: dec, Spool: app, DeadLetters: NewDeadLetters(1), Metrics: m})
	up := []byte(`{"deduplicationId":"x1","deviceInfo":{"devEui":"0102030405060708"},"object":{"ph":7.1}}`)
	acks := 0
	for i := 0; i < 3; i++ {
		p.Handle(context.Background(), "application/a/device/0102030405060708/event/up", up, false, func() { acks++ })
	}
	if len(app.recs) != 1 || acks != 2 {
		t.Fatalf("spooled %d, acked %d; want 1 spooled and the 2 repeats acknowledged", len(app.recs), acks)
	}
	if got := testutil.ToFloat64(m.Duplicates); got != 2 {
		t.Errorf("duplicates = %v, want 2", got)
	}
}

func TestDeadLettersBounded(t *testing.T) {
	d := NewDeadLetters(3)
	big := make([]byte, 10<<10)
	for i := range big {
		big[i] = 'a'
	}
	for i := 0; i < 5; i++ {
		d.Add(time.Unix(int64(i), 0), "t", "bad_json", "", big)
	}
	l := d.List()
	if len(l) != 3 || d.Total() != 5 {
		t.Fatalf("kept %d of total %d, want 3 of 5", len(l), d.Total())
	}
	if l[0].At.Unix() != 4 || l[2].At.Unix() != 2 {
		t.Errorf("order: %v %v, want newest first", l[0].At, l[2].At)
	}
	if len(l[0].Payload) != MaxDeadLetterPayload {
		t.Errorf("payload kept %d bytes, want %d", len(l[0].Payload), MaxDeadLetterPayload)
	}
	d.Add(time.Now(), "t", "bad_json", "", []byte("ok\xff\xfe"))
	if p := d.List()[0].Payload; p != "ok\uFFFD\uFFFD" {
		t.Errorf("invalid UTF-8 kept as %q", p)
	}
}
