package ingest

import (
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
