// Package tickets keeps supervision tickets (督办单): alerts and inspections
// turned into work for the responsible units, with a checked lifecycle
// (open → acknowledged → rectified → closed, or back to open when the
// verification fails), escalation of overdue tickets, webhooks, a ledger
// export and the monthly ranking.
package tickets

import (
	"errors"
	"fmt"
	"time"
)

// Status is where a ticket is in its lifecycle.
type Status string

// Ticket statuses.
const (
	StatusOpen         Status = "open"
	StatusAcknowledged Status = "acknowledged"
	StatusRectified    Status = "rectified"
	StatusClosed       Status = "closed"
)

// Statuses lists every status in lifecycle order.
var Statuses = []Status{StatusOpen, StatusAcknowledged, StatusRectified, StatusClosed}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case StatusOpen, StatusAcknowledged, StatusRectified, StatusClosed:
		return true
	}
	return false
}

// Severity is how urgent a ticket is.
type Severity string

// Severities, lowest first.
const (
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Valid reports whether s is a known severity.
func (s Severity) Valid() bool { return s == SeverityWarning || s == SeverityCritical }

// Source is what a ticket came from.
type Source string

// Ticket sources.
const (
	SourceAlert      Source = "alert"
	SourceInspection Source = "inspection"
)

// Valid reports whether s is a known source.
func (s Source) Valid() bool { return s == SourceAlert || s == SourceInspection }

// Ticket is a supervision ticket (督办单). Times are UTC; nil times are
// JSON null.
type Ticket struct {
	ID              int64      `json:"id"`
	Number          string     `json:"number"`
	Source          Source     `json:"source"`
	Rule            string     `json:"rule"`
	Severity        Severity   `json:"severity"`
	Status          Status     `json:"status"`
	DeviceID        string     `json:"device_id"`
	Kind            string     `json:"kind"`
	Site            string     `json:"site"`
	Street          string     `json:"street"`
	Village         string     `json:"village"`
	OrgUnit         string     `json:"org_unit"`
	Title           string     `json:"title"`
	Detail          string     `json:"detail"`
	Requirement     string     `json:"requirement"`
	OpenedAt        time.Time  `json:"opened_at"`
	FiredAt         *time.Time `json:"fired_at"`
	Deadline        time.Time  `json:"deadline"`
	AcknowledgedAt  *time.Time `json:"acknowledged_at"`
	RectifiedAt     *time.Time `json:"rectified_at"`
	ClosedAt        *time.Time `json:"closed_at"`
	ClearedAt       *time.Time `json:"cleared_at"`
	Occurrences     int        `json:"occurrences"`
	EscalationLevel int        `json:"escalation_level"`
	Overdue         bool       `json:"overdue"`
	AutoClose       bool       `json:"auto_close"`
	// History is filled by Get, Raise, Create and Transition; lists leave it out.
	History []HistoryEntry `json:"history,omitempty"`
}

// HistoryEntry is one line of a ticket's history.
type HistoryEntry struct {
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	Action string    `json:"action"`
	Note   string    `json:"note"`
}

// History actions besides the transition actions.
const (
	ActionOpen      = "open"
	ActionRepeat    = "repeat"
	ActionAutoClose = "auto_close"
	ActionEscalate  = "escalate"
)

// Transition actions accepted by Service.Transition.
const (
	ActionAck     = "ack"
	ActionRectify = "rectify"
	ActionVerify  = "verify"
	ActionReopen  = "reopen"
)

// Actions lists the transition actions a person may take.
var Actions = []string{ActionAck, ActionRectify, ActionVerify, ActionReopen}

// overdue reports whether t is past its deadline and not yet rectified.
func (t *Ticket) overdue(now time.Time) bool {
	return (t.Status == StatusOpen || t.Status == StatusAcknowledged) && now.After(t.Deadline)
}

// Alert is what the alerting side hands over when a rule fires.
type Alert struct {
	Rule, Severity, DeviceID, Kind, Site, Street, Village, OrgUnit, Title, Detail, Requirement string
	// Deadline is the rectification period (整改时限), counted from opening.
	Deadline time.Duration
	// FiredAt is the device time of the reading that fired.
	FiredAt time.Time
	// AutoClose closes the ticket when the condition clears.
	AutoClose bool
}

// Manual is a ticket raised by hand after an inspection (交办).
type Manual struct {
	DeviceID    string    `json:"device_id"`
	Site        string    `json:"site"`
	Street      string    `json:"street"`
	Village     string    `json:"village"`
	OrgUnit     string    `json:"org_unit"`
	Title       string    `json:"title"`
	Detail      string    `json:"detail"`
	Requirement string    `json:"requirement"`
	Severity    string    `json:"severity"`
	Deadline    time.Time `json:"deadline"`
}

// DeviceInfo is what a DeviceLookup knows about a device.
type DeviceInfo struct {
	Kind, Site, Street, Village, OrgUnit string
}

// Role is what an Actor may do.
type Role string

// Roles, from least to most allowed.
const (
	RoleViewer     Role = "viewer"
	RoleUnit       Role = "unit"
	RoleSupervisor Role = "supervisor"
	RoleAdmin      Role = "admin"

	// roleSystem is sanitel itself: auto-close and escalation.
	roleSystem Role = "system"
)

// Valid reports whether r is one of the four configurable roles.
func (r Role) Valid() bool {
	switch r {
	case RoleViewer, RoleUnit, RoleSupervisor, RoleAdmin:
		return true
	}
	return false
}

// Actor is who asks for a change: a token's name, role and, for a unit,
// its org_unit.
type Actor struct {
	Name    string
	Role    Role
	OrgUnit string
}

var systemActor = Actor{Name: "system", Role: roleSystem}

// Filter selects tickets. Empty fields select everything; several values
// in one field are alternatives.
type Filter struct {
	Status   []string
	Street   []string
	Village  []string
	OrgUnit  []string
	Rule     []string
	Severity []string
	DeviceID []string
	Source   []string
	// Overdue, when set, keeps only tickets that are (or are not) overdue.
	Overdue *bool
	// From (inclusive) and To (exclusive) bound opened_at.
	From, To time.Time
	// Limit is the page size: default 100, at most 1000.
	Limit int
	// Cursor is the opaque next value of the previous page.
	Cursor string
}

// Paging limits.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Errors returned by the package; test with errors.Is.
var (
	ErrNotFound  = errors.New("ticket not found")
	ErrConflict  = errors.New("conflict")
	ErrForbidden = errors.New("forbidden")
	ErrInvalid   = errors.New("invalid")
)

// TransitionError says why a transition is not possible from the ticket's
// status. It matches ErrConflict.
type TransitionError struct {
	Action string
	From   Status
	Reason string
}

// Error is the reason, for the person who asked.
func (e *TransitionError) Error() string { return e.Reason }

// Is makes errors.Is(err, ErrConflict) true.
func (e *TransitionError) Is(target error) bool { return target == ErrConflict }

// ValidationError names the input field that is wrong. It matches ErrInvalid.
type ValidationError struct {
	Field  string
	Reason string
}

// Error is "field: reason".
func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
