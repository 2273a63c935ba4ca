package ingest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sanitel/sanitel/devices"
)

// TestOnlineFollowsArrivalOrder checks that a device's "offline" will counts
// when it arrives after the device's last reading, even if that reading
// carries a device time a little ahead of the server clock (accepted up to
// devices.max_future), and that a reading arriving after it brings the device
// back online.
func TestOnlineFollowsArrivalOrder(t *testing.T) {
	now := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	fill, _ := devices.ParseField("fill_pct")
	reading := func(ts time.Time) *devices.Message {
		m := &devices.Message{Type: devices.Telemetry, DeviceID: "bin-1", Kind: devices.KindBin, TS: ts.UnixMilli()}
		m.Values.Set(fill, 50)
		return m
	}
	status := func(online bool, at time.Time) *devices.Message {
		return &devices.Message{Type: devices.Status, DeviceID: "bin-1", Kind: devices.KindBin, TS: at.UnixMilli(), Online: online}
	}
	tr := NewTracker()
	online := func() bool {
		st, _ := tr.Get("bin-1")
		return Online(st, nil, now)
	}

	tr.Observe(reading(now.Add(2 * time.Minute))) // device clock 2 min ahead
	if !online() {
		t.Fatal("a device that just reported is offline")
	}
	tr.Observe(status(false, now))
	if online() {
		t.Error("the device said offline after its last reading, but it counts as online")
	}
	tr.Observe(reading(now.Add(3 * time.Minute)))
	if !online() {
		t.Error("a reading after the offline status did not bring the device back online")
	}
	tr.Observe(reading(now.Add(-time.Hour))) // a late, older reading changes nothing
	if !online() {
		t.Error("an older reading made the device offline")
	}

	// A retained "offline" delivered on reconnect, then a backlog of
	// readings older than it: the device stays offline.
	tr = NewTracker()
	tr.Observe(status(false, now))
	tr.Observe(reading(now.Add(-10 * time.Minute)))
	if online() {
		t.Error("a backlog reading older than the offline status brought the device online")
	}
}

func TestTrackerSaveLoad(t *testing.T) {
	at := time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)
	fill, _ := devices.ParseField("fill_pct")
	battery, _ := devices.ParseField("battery_pct")
	m := &devices.Message{Type: devices.Telemetry, DeviceID: "bin-1", Kind: devices.KindBin, TS: at.UnixMilli()}
	m.Values.Set(fill, 61.5)
	m.Values.Set(battery, 0)
	tr := NewTracker()
	tr.Observe(m)
	tr.Observe(&devices.Message{Type: devices.Status, DeviceID: "bin-1", Kind: devices.KindBin, TS: at.UnixMilli(), Online: false})
	tr.Observe(&devices.Message{Type: devices.Status, DeviceID: "unregistered", TS: at.UnixMilli(), Online: true})

	path := filepath.Join(t.TempDir(), "devices.json")
	if err := tr.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	back := NewTracker()
	if err := back.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"bin-1", "unregistered"} {
		want, _ := tr.Get(id)
		got, ok := back.Get(id)
		if !ok || !got.LastSeen.Equal(want.LastSeen) || !got.StatusAt.Equal(want.StatusAt) ||
			got.LastReading != want.LastReading || got.Status != want.Status || got.statusLast != want.statusLast {
			t.Errorf("%s: loaded %+v, saved %+v", id, got, want)
		}
	}
	if st, _ := back.Get("bin-1"); Online(st, nil, at) {
		t.Error("bin-1 said offline after its reading, but counts as online once loaded")
	}

	// Unchanged since the last save: nothing is written.
	os.Remove(path)
	if err := tr.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an unchanged tracker was saved again: %v", err)
	}

	if err := os.WriteFile(path, []byte(`{"version":99,"devices":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := back.LoadFile(path); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("a file of another version: %v", err)
	}
	if err := back.LoadFile(filepath.Join(t.TempDir(), "none.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v, want os.ErrNotExist", err)
	}
}
