package ingest

import (
	"sync"
	"time"

	"github.com/sanitel/sanitel/devices"
)

// DefaultOfflineAfter is how long a device without a report interval may
// stay silent before it counts as offline.
const DefaultOfflineAfter = 30 * time.Minute

// DeviceState is what sanitel last heard from one device.
type DeviceState struct {
	LastSeen    time.Time // device time of the newest reading
	LastReading devices.Values
	Status      string // "online" or "offline" as the device last reported it; "" if never
	StatusAt    time.Time
	// statusLast is whether the status arrived after the newest reading:
	// StatusAt is server time and LastSeen device time, which may run
	// ahead of it (up to devices.max_future), so time alone cannot tell.
	statusLast bool
}

// Tracker keeps the last reading and status of every device that has
// reported since start. Safe for concurrent use.
type Tracker struct {
	mu     sync.RWMutex
	states map[string]*DeviceState
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{states: make(map[string]*DeviceState)} }

// Observe records an accepted message.
func (t *Tracker) Observe(m *devices.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.states[m.DeviceID]
	if st == nil {
		st = &DeviceState{}
		t.states[m.DeviceID] = st
	}
	switch m.Type {
	case devices.Status:
		st.Status = "offline"
		if m.Online {
			st.Status = "online"
		}
		st.StatusAt = m.Time()
		st.statusLast = true
	case devices.Telemetry:
		if ts := m.Time(); !ts.Before(st.LastSeen) {
			// Merge, so a device sending fields in several messages shows all.
			for _, f := range m.Kind.Fields() {
				if v, ok := m.Values.Get(f); ok {
					st.LastReading.Set(f, v)
				}
			}
			st.LastSeen, st.statusLast = ts, false
		}
	case devices.Event:
		if ts := m.Time(); ts.After(st.LastSeen) {
			st.LastSeen, st.statusLast = ts, false
		}
	}
}

// Get returns a copy of the device's state.
func (t *Tracker) Get(id string) (DeviceState, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	st, ok := t.states[id]
	if !ok {
		return DeviceState{}, false
	}
	return *st, true
}

// Online reports whether a device counts as online at now: it reported
// within three report intervals (or DefaultOfflineAfter) and did not say
// it went offline after that reading, by arrival or by time (a backlog of
// older readings delivered after a retained "offline" leaves it offline).
func Online(st DeviceState, d *devices.Device, now time.Time) bool {
	if st.LastSeen.IsZero() {
		return st.Status == "online"
	}
	after := DefaultOfflineAfter
	if d != nil && d.ReportInterval > 0 {
		after = 3 * d.ReportInterval
	}
	if st.Status == "offline" && (st.statusLast || st.StatusAt.After(st.LastSeen)) {
		return false
	}
	return now.Sub(st.LastSeen) <= after
}
