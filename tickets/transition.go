package tickets

import (
	"fmt"
	"slices"
	"time"
)

// apply checks that actor may take action on t and that t's status allows
// it, then changes t and appends the history entry. It is the one place a
// ticket's status changes. Repeating the transition that led to the current
// status (ack when acknowledged, verify when closed, …) is a no-op:
// changed is false and err nil.
func apply(t *Ticket, action string, actor Actor, by, note string, now time.Time) (changed bool, err error) {
	if err := authorize(t, action, actor); err != nil {
		return false, err
	}
	from := t.Status
	switch action {
	case ActionAck:
		switch from {
		case StatusOpen:
			t.Status = StatusAcknowledged
			setOnce(&t.AcknowledgedAt, now)
		case StatusAcknowledged:
			return false, nil
		case StatusRectified:
			return false, conflict(action, from, "it is waiting for verification")
		default:
			return false, conflict(action, from, "")
		}
	case ActionRectify:
		switch from {
		case StatusOpen, StatusAcknowledged:
			// A unit may report the work done without acknowledging first;
			// the acknowledgement is then implied.
			t.Status = StatusRectified
			setOnce(&t.AcknowledgedAt, now)
			t.RectifiedAt = timePtr(now)
		case StatusRectified:
			return false, nil
		default:
			return false, conflict(action, from, "")
		}
	case ActionVerify:
		switch from {
		case StatusRectified:
			t.Status = StatusClosed
			t.ClosedAt = timePtr(now)
		case StatusClosed:
			return false, nil
		default:
			return false, conflict(action, from, "it must be rectified first")
		}
	case ActionReopen:
		switch {
		case from == StatusRectified:
			// Verification failed: the rectification no longer counts, the
			// history keeps when it was reported.
			t.Status = StatusOpen
			t.RectifiedAt = nil
		case from == StatusOpen && lastStatusAction(t.History) == ActionReopen:
			return false, nil
		default:
			return false, conflict(action, from, "only a rectified ticket can be reopened")
		}
	case ActionAutoClose:
		switch from {
		case StatusOpen, StatusAcknowledged:
			t.Status = StatusClosed
			t.ClosedAt = timePtr(now)
		case StatusClosed:
			return false, nil
		default:
			return false, conflict(action, from, "it is waiting for verification")
		}
	default:
		return false, invalid("action", "must be one of ack, rectify, verify, reopen, got %q", action)
	}
	t.History = append(t.History, HistoryEntry{At: now, By: by, Action: action, Note: note})
	return true, nil
}

// authorize checks the role rules: a unit may ack and rectify its own
// org_unit's tickets, a supervisor or admin may take every action, a viewer
// none; only sanitel itself auto-closes.
func authorize(t *Ticket, action string, a Actor) error {
	public := slices.Contains(Actions, action)
	switch a.Role {
	case RoleAdmin, RoleSupervisor:
		if public {
			return nil
		}
	case RoleUnit:
		if action != ActionAck && action != ActionRectify {
			if !public {
				break
			}
			return fmt.Errorf("%w: a unit may only ack or rectify", ErrForbidden)
		}
		if a.OrgUnit == "" || t.OrgUnit != a.OrgUnit {
			return fmt.Errorf("%w: ticket belongs to another org_unit", ErrForbidden)
		}
		return nil
	case RoleViewer:
		if public {
			return fmt.Errorf("%w: a viewer may not change tickets", ErrForbidden)
		}
	case roleSystem:
		if action == ActionAutoClose {
			return nil
		}
	}
	if !public {
		return invalid("action", "must be one of ack, rectify, verify, reopen, got %q", action)
	}
	return fmt.Errorf("%w: role %q may not %s", ErrForbidden, a.Role, action)
}

func conflict(action string, from Status, why string) *TransitionError {
	reason := fmt.Sprintf("cannot %s a ticket that is %s", action, from)
	if why != "" {
		reason += " (" + why + ")"
	}
	return &TransitionError{Action: action, From: from, Reason: reason}
}

// lastStatusAction is the latest history action that changed the status.
func lastStatusAction(h []HistoryEntry) string {
	for i := len(h) - 1; i >= 0; i-- {
		switch h[i].Action {
		case ActionRepeat, ActionEscalate:
			continue
		}
		return h[i].Action
	}
	return ""
}

func setOnce(p **time.Time, now time.Time) {
	if *p == nil {
		*p = timePtr(now)
	}
}

func timePtr(t time.Time) *time.Time {
	t = t.UTC()
	return &t
}
