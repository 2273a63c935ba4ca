package simulator

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Fault names. A message's Fault is one of these, or "" for a clean message.
//
// Per-message faults: the rate is the probability that a telemetry report
// has the fault (at most one per report; their rates must sum to ≤ 1).
//   - spike: one field jumps to an implausible value that is still within its
//     physical range (accepted; a rule may fire on it).
//   - out_of_range: one field is outside its physical range (the decoder
//     drops that field with reason out_of_range and keeps the rest).
//   - malformed: the JSON is cut short (rejected: bad_json).
//   - duplicate: the report is published twice, byte for byte; the second
//     copy carries the fault (accepted; stored once downstream).
//   - skew: ts is 1–20 minutes off either way. sanitel rejects a ts more
//     than 5 minutes ahead of its own clock (bad_timestamp) and accepts the
//     rest, so which skewed reports are rejected depends on how far the
//     simulated clock lags the wall clock when they are sent: Run counts
//     them in Summary.Future (none in an accelerated run ending well in
//     the past).
//   - wrong_id: the body's device_id (ChirpStack: deviceInfo.devEui) names
//     another device than the topic (rejected: device_mismatch).
//   - chirpstack: a LoRaWAN device's report goes out as a ChirpStack v4
//     uplink instead of native JSON (accepted, same device). Devices without
//     a dev_eui never get it.
//
// State faults: the rate is the expected number of episodes per device per
// simulated day; every message of an episode carries the fault unless it
// also has a per-message fault.
//   - offline: the device publishes a retained "offline" status (carrying the
//     fault), stays silent for 30 min to 6 h (at least three report
//     intervals), then publishes "online" and reports again.
//   - stuck: the sensor freezes: every value repeats the one read at the
//     onset, for 2–12 h (accepted).
//   - leak: toilets and rural toilets only: a cistern leaks, flow_lpm stays
//     between 0.8 and 3 above the flushes for 2–8 h (accepted; toilet_leak).
const (
	FaultOffline    = "offline"
	FaultStuck      = "stuck"
	FaultSpike      = "spike"
	FaultOutOfRange = "out_of_range"
	FaultMalformed  = "malformed"
	FaultDuplicate  = "duplicate"
	FaultSkew       = "skew"
	FaultWrongID    = "wrong_id"
	FaultChirpStack = "chirpstack"
	FaultLeak       = "leak"
)

type faultID uint8

// The order of per-message faults is the order of their slices of [0, 1):
// changing it changes every seeded stream.
const (
	fSpike faultID = iota
	fOutOfRange
	fMalformed
	fDuplicate
	fSkew
	fWrongID
	fChirpStack
	fOffline // first state fault
	fStuck
	fLeak
	numFaults

	numMessageFaults         = fOffline
	fNone            faultID = 255
)

var faultNames = [numFaults]string{
	FaultSpike, FaultOutOfRange, FaultMalformed, FaultDuplicate, FaultSkew,
	FaultWrongID, FaultChirpStack, FaultOffline, FaultStuck, FaultLeak,
}

// Default rates, used for `all` and for a name given without a rate.
var defaultRates = [numFaults]float64{
	fSpike: 0.01, fOutOfRange: 0.005, fMalformed: 0.001, fDuplicate: 0.01,
	fSkew: 0.002, fWrongID: 0.001, fChirpStack: 0.05,
	fOffline: 0.01, fStuck: 0.005, fLeak: 0.01,
}

func (f faultID) String() string {
	if f < numFaults {
		return faultNames[f]
	}
	return ""
}

func faultByName(name string) (faultID, bool) {
	for i, n := range faultNames {
		if n == name {
			return faultID(i), true
		}
	}
	return 0, false
}

// FaultNames returns every fault name, per-message faults first.
func FaultNames() []string { return append([]string(nil), faultNames[:]...) }

// DefaultFaultRate returns the rate `all` or a bare name gives a fault, and
// false for an unknown name.
func DefaultFaultRate(name string) (float64, bool) {
	f, ok := faultByName(name)
	if !ok {
		return 0, false
	}
	return defaultRates[f], true
}

// Faults maps fault names to rates: a probability per message for
// per-message faults, expected episodes per device per simulated day for
// state faults (offline, stuck, leak). A nil or empty Faults injects none.
type Faults map[string]float64

// AllFaults returns every fault at its default rate.
func AllFaults() Faults {
	fs := make(Faults, numFaults)
	for i, n := range faultNames {
		fs[n] = defaultRates[i]
	}
	return fs
}

// ParseFaults parses a comma-separated list such as
// "offline=0.01,stuck,spike=0.02". A name without a rate gets its default
// rate; `all` turns every fault on at its default rate (later entries
// override it); "" and "none" mean no faults.
func ParseFaults(s string) (Faults, error) {
	fs := Faults{}
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return fs, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, val, hasRate := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if name == "all" {
			if hasRate {
				return nil, fmt.Errorf("faults: all takes no rate, got %q", item)
			}
			for k, v := range AllFaults() {
				fs[k] = v
			}
			continue
		}
		f, ok := faultByName(name)
		if !ok {
			return nil, fmt.Errorf("faults: unknown fault %q (known: all, %s)", name, strings.Join(faultNames[:], ", "))
		}
		rate := defaultRates[f]
		if hasRate {
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				return nil, fmt.Errorf("faults: %s: rate %q is not a number", name, val)
			}
			rate = v
		}
		fs[name] = rate
	}
	if err := fs.Validate(); err != nil {
		return nil, err
	}
	return fs, nil
}

// Validate checks names and rates: per-message rates within 0–1 and
// summing to at most 1, state rates finite and not negative.
func (fs Faults) Validate() error {
	_, err := fs.rates()
	return err
}

func (fs Faults) rates() ([numFaults]float64, error) {
	var r [numFaults]float64
	sum := 0.0
	for name, v := range fs {
		f, ok := faultByName(name)
		if !ok {
			return r, fmt.Errorf("faults: unknown fault %q (known: %s)", name, strings.Join(faultNames[:], ", "))
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return r, fmt.Errorf("faults: %s: rate must be a number ≥ 0, got %v", name, v)
		}
		if f < numMessageFaults {
			if v > 1 {
				return r, fmt.Errorf("faults: %s: rate is a probability per message, must be within 0–1, got %v", name, v)
			}
			sum += v
		}
		r[f] = v
	}
	if sum > 1+1e-9 {
		return r, fmt.Errorf("faults: per-message rates add up to %.3g, must be at most 1", sum)
	}
	return r, nil
}

// String returns the faults in ParseFaults form, in a fixed order.
func (fs Faults) String() string {
	var b strings.Builder
	for _, n := range faultNames {
		v, ok := fs[n]
		if !ok {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}
