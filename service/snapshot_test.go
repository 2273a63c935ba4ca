package service

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/ingest"
	"github.com/sanitel/sanitel/tickets"
)

// TestSnapshotPoints checks the device_state and tickets points: registry
// place and coordinates per device, open tickets per device, and open and
// overdue tickets for every street, those without tickets included.
func TestSnapshotPoints(t *testing.T) {
	reg, err := devices.NewRegistry([]devices.Device{
		{ID: "bin-1", Kind: devices.KindBin, Street: "东湖街道", OrgUnit: "区环卫所", Lat: 30.5, Lon: 114.3},
		{ID: "bin-2", Kind: devices.KindBin, Street: "东湖街道", OrgUnit: "区环卫所", Lat: 30.6, Lon: 114.4},
		{ID: "toilet-1", Kind: devices.KindToilet, Street: "城关街道", OrgUnit: "园林所", Lat: 30.7, Lon: 114.5, ToiletClass: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store, err := tickets.Open(ctx, filepath.Join(t.TempDir(), "tickets.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	svc, err := tickets.New(tickets.Options{Store: store, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	raise := func(rule string, deadline time.Duration) {
		t.Helper()
		if _, _, err := svc.Raise(ctx, tickets.Alert{Rule: rule, Severity: "warning", DeviceID: "bin-1", Kind: "bin",
			Street: "东湖街道", OrgUnit: "区环卫所", Title: rule, Requirement: "clear it", Deadline: deadline, FiredAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	raise("bin_full", time.Hour)
	raise("bin_fire", 24*time.Hour)
	now = now.Add(2 * time.Hour) // bin_full is overdue now

	tracker := ingest.NewTracker()
	n := &snapshotter{registry: reg, tracker: tracker, tickets: svc, now: clock, seen: clock, log: slog.New(slog.DiscardHandler)}
	points, err := n.points(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type fields = map[string]any
	states := make(map[string]fields)
	streets := make(map[string]fields)
	for _, p := range points {
		tags := make(map[string]string)
		for _, tg := range p.TagList() {
			tags[tg.Key] = tg.Value
		}
		if _, ok := tags["village"]; ok {
			t.Errorf("%s %v: empty tag written", p.Name(), tags)
		}
		f := make(fields)
		for _, fl := range p.FieldList() {
			f[fl.Key] = fl.Value
		}
		if !p.Time().Equal(now) {
			t.Errorf("%s: time %v, want %v", p.Name(), p.Time(), now)
		}
		switch p.Name() {
		case measurementDeviceState:
			states[tags["device_id"]] = f
		case measurementTickets:
			streets[tags["street"]] = f
		default:
			t.Errorf("unexpected measurement %q", p.Name())
		}
	}
	want := map[string]fields{
		"bin-1":    {"lat": 30.5, "lon": 114.3, "online": int64(0), "open_tickets": int64(2)},
		"bin-2":    {"lat": 30.6, "lon": 114.4, "online": int64(0), "open_tickets": int64(0)},
		"toilet-1": {"lat": 30.7, "lon": 114.5, "online": int64(0), "open_tickets": int64(0), "toilet_class": int64(2)},
	}
	for id, w := range want {
		if len(states[id]) != len(w) {
			t.Errorf("device_state %s: %v, want %v", id, states[id], w)
			continue
		}
		for k, v := range w {
			if states[id][k] != v {
				t.Errorf("device_state %s: %s = %v (%T), want %v", id, k, states[id][k], states[id][k], v)
			}
		}
	}
	wantStreets := map[string]fields{
		"东湖街道": {"open": int64(2), "overdue": int64(1)},
		"城关街道": {"open": int64(0), "overdue": int64(0)},
	}
	if len(streets) != len(wantStreets) {
		t.Errorf("tickets points for %v, want %v", streets, wantStreets)
	}
	for s, w := range wantStreets {
		for k, v := range w {
			if streets[s][k] != v {
				t.Errorf("tickets %s: %s = %v, want %v", s, k, streets[s][k], v)
			}
		}
	}
}
