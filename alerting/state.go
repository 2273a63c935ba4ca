package alerting

import "fmt"

// State is where one (device, rule) pair is in its alert lifecycle:
// inactive → pending → firing → (resolved) inactive.
type State uint8

// States.
const (
	// StateInactive: the condition does not hold (or held too briefly).
	StateInactive State = iota
	// StatePending: the condition holds, for less than the rule's `for`.
	StatePending
	// StateFiring: the rule fired; it stays firing until the clear
	// condition has held for the rule's `clear_for`.
	StateFiring
	numStates
)

var stateNames = [numStates]string{"inactive", "pending", "firing"}

// String returns "inactive", "pending" or "firing".
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// slot is the state of one (device, rule). It is kept small: a device has
// one slot per rule of its kind, and there may be a million devices.
type slot struct {
	// since is, while pending, the device time (Unix ms) the condition
	// started to hold; while firing, the device time the clear condition
	// started to hold, or 0 when it does not hold.
	since int64
	state State
	// sev is the firing severity, kept after the rule clears until the
	// sink has heard the Resolve.
	sev Severity
	// sent is the highest severity the sink acknowledged a Fire for in
	// this episode; 0 once it acknowledged the Resolve (or never heard).
	sent  Severity
	flags uint8
}

const (
	// flagEnded: an episode cleared and the sink has not acknowledged its
	// Resolve yet.
	flagEnded uint8 = 1 << iota
	// flagOwed: a sink call for this slot failed; it is in Engine.owed and
	// retried on the slot's next evaluation and on Tick.
	flagOwed
)

// transition is what one step did to a slot.
type transition uint8

const (
	tNone      transition = iota
	tPending              // inactive → pending
	tDropped              // pending → inactive: cleared before `for` elapsed; nothing is sent
	tFired                // inactive or pending → firing
	tEscalated            // firing, at a higher severity
	tResolved             // firing → inactive: the clear condition held for clear_for
)

// input is one observation of a (device, rule) condition.
type input struct {
	ts    int64    // device time, Unix ms
	sev   Severity // severity of the threshold crossed at ts; SeverityNone if none
	clear bool     // the clear condition (hysteresis) holds at ts
	// forMs and clearForMs are the rule's `for` and `clear_for`.
	forMs, clearForMs int64
}

// step applies one observation to a slot. Every state change of every
// (device, rule) happens here, on device time:
//   - inactive: a crossed threshold makes it pending from ts, or firing at
//     once when the rule has no `for`;
//   - pending: a reading that crosses no threshold makes it inactive again
//     (nothing was sent, nothing is); one that still crosses fires once
//     ts − since ≥ for;
//   - firing: a higher severity escalates; any crossed threshold restarts
//     the clear timer; the clear condition must hold from `since` for
//     clear_for before the rule clears; a reading between the clear and
//     the firing thresholds (the hysteresis band) also restarts it.
func step(s *slot, in input) transition {
	switch s.state {
	case StateInactive:
		if in.sev == SeverityNone {
			return tNone
		}
		if in.forMs > 0 {
			s.state, s.since = StatePending, in.ts
			return tPending
		}
	case StatePending:
		if in.sev == SeverityNone {
			s.state, s.since = StateInactive, 0
			return tDropped
		}
		if in.ts-s.since < in.forMs {
			return tNone
		}
	case StateFiring:
		switch {
		case in.sev > s.sev:
			s.sev, s.since = in.sev, 0
			return tEscalated
		case in.sev != SeverityNone:
			s.since = 0
		case in.clear:
			if s.since == 0 {
				s.since = in.ts
			}
			if in.ts-s.since >= in.clearForMs {
				s.state, s.since = StateInactive, 0
				s.flags |= flagEnded
				return tResolved
			}
		default:
			s.since = 0
		}
		return tNone
	}
	// Fire. A previous episode whose Resolve the sink has not heard is
	// superseded: the sink still thinks it firing, which it is again.
	s.state, s.sev, s.since = StateFiring, in.sev, 0
	s.flags &^= flagEnded
	return tFired
}
