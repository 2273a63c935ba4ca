package ingest

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/internal/atomicfile"
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
	gen    uint64 // counts changes, under mu
	// savedGen is gen as of the last SaveFile (only SaveFile uses it).
	savedGen uint64
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{states: make(map[string]*DeviceState)} }

// Observe records an accepted message.
func (t *Tracker) Observe(m *devices.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
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

// savedTracker is the tracker on disk, JSON: what GET /api/v1/devices
// shows survives a restart instead of every device looking silent until it
// reports again.
type savedTracker struct {
	Version int                    `json:"version"`
	Devices map[string]savedDevice `json:"devices"`
}

type savedDevice struct {
	LastSeen    time.Time          `json:"last_seen,omitzero"`
	LastReading map[string]float64 `json:"last_reading,omitempty"`
	Status      string             `json:"status,omitempty"`
	StatusAt    time.Time          `json:"status_at,omitzero"`
	StatusLast  bool               `json:"status_last,omitempty"`
}

const trackerVersion = 1

// Save writes every device's state as JSON.
func (t *Tracker) Save(w io.Writer) error {
	_, err := t.save(w)
	return err
}

// save writes the states and returns the generation they are of.
func (t *Tracker) save(w io.Writer) (gen uint64, err error) {
	t.mu.RLock()
	gen = t.gen
	out := savedTracker{Version: trackerVersion, Devices: make(map[string]savedDevice, len(t.states))}
	for id, st := range t.states {
		sd := savedDevice{LastSeen: st.LastSeen, Status: st.Status, StatusAt: st.StatusAt, StatusLast: st.statusLast}
		for f := range devices.Field(devices.NumFields) {
			if v, ok := st.LastReading.Get(f); ok {
				if sd.LastReading == nil {
					sd.LastReading = map[string]float64{}
				}
				sd.LastReading[f.String()] = v
			}
		}
		out.Devices[id] = sd
	}
	t.mu.RUnlock()
	return gen, json.NewEncoder(w).Encode(out)
}

// Load replaces the tracker's states with those Save wrote. Fields this
// version does not know are left out.
func (t *Tracker) Load(r io.Reader) error {
	var in savedTracker
	if err := json.NewDecoder(r).Decode(&in); err != nil {
		return fmt.Errorf("device states: %w", err)
	}
	if in.Version != trackerVersion {
		return fmt.Errorf("device states: version %d, want %d", in.Version, trackerVersion)
	}
	states := make(map[string]*DeviceState, len(in.Devices))
	for id, sd := range in.Devices {
		st := &DeviceState{LastSeen: sd.LastSeen, Status: sd.Status, StatusAt: sd.StatusAt, statusLast: sd.StatusLast}
		for name, v := range sd.LastReading {
			if f, ok := devices.ParseField(name); ok {
				st.LastReading.Set(f, v)
			}
		}
		states[id] = st
	}
	t.mu.Lock()
	t.states = states
	t.mu.Unlock()
	return nil
}

// SaveFile writes the states to path atomically, unless nothing changed
// since the last SaveFile. Calls must take turns.
func (t *Tracker) SaveFile(path string) error {
	t.mu.RLock()
	unchanged := t.gen == t.savedGen
	t.mu.RUnlock()
	if unchanged {
		return nil
	}
	var gen uint64
	if err := atomicfile.Write(path, func(w io.Writer) (err error) {
		gen, err = t.save(w)
		return err
	}); err != nil {
		return fmt.Errorf("save device states %s: %w", path, err)
	}
	t.savedGen = gen
	return nil
}

// LoadFile restores the states SaveFile wrote; a missing file is an error
// that matches os.ErrNotExist (a first start).
func (t *Tracker) LoadFile(path string) error {
	return atomicfile.Read(path, t.Load)
}
