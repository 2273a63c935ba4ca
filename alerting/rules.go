// Package alerting evaluates alert rules on device readings and hands what
// fires and clears to a Sink (the supervision tickets). Each (device, rule)
// has a small state machine — inactive → pending → firing → inactive —
// driven by device time, so a backlog replayed after a crash gives the same
// calls as it did live. The rules come from a YAML file on top of shipped
// defaults (configs/rules.yaml, embedded here as rules.yaml).
package alerting

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/sanitel/sanitel/devices"

	"github.com/sanitel/sanitel/internal/duration"
)

// RuleType says what a rule watches.
type RuleType uint8

// Rule types.
const (
	// TypeThreshold rules compare one field of each reading with thresholds
	// (and may also fire on events).
	TypeThreshold RuleType = iota + 1
	// TypeNoData rules fire when a device has been silent too long.
	TypeNoData
)

// String returns "threshold" or "no_data".
func (t RuleType) String() string {
	switch t {
	case TypeThreshold:
		return "threshold"
	case TypeNoData:
		return "no_data"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Op is a comparison of a reading with a threshold.
type Op uint8

// Comparisons. OpInside is only a clear condition (of OpOutside rules).
const (
	OpGT      Op = iota + 1 // value > threshold
	OpGE                    // value ≥ threshold
	OpLT                    // value < threshold
	OpLE                    // value ≤ threshold
	OpOutside               // value < lo or value > hi
	OpInside                // lo ≤ value ≤ hi
)

var opNames = [...]string{"", ">", ">=", "<", "<=", "outside", "inside"}

// String returns the operator as rules files spell it: ">", ">=", "<", "<=",
// "outside" or "inside".
func (o Op) String() string {
	if int(o) < len(opNames) && o != 0 {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// symbol is the operator as alert details print it.
func (o Op) symbol() string {
	switch o {
	case OpGE:
		return "≥"
	case OpLE:
		return "≤"
	}
	return o.String()
}

// upward reports whether o fires on high values (> or ≥).
func (o Op) upward() bool { return o == OpGT || o == OpGE }

// Severity is how urgent an alert is. Its order is its urgency.
type Severity uint8

// Severities. SeverityNone is "no threshold crossed".
const (
	SeverityNone Severity = iota
	SeverityWarning
	SeverityCritical
	numSeverities
)

// String returns "warning", "critical", or "" for SeverityNone.
func (s Severity) String() string {
	switch s {
	case SeverityWarning:
		return "warning"
	case SeverityCritical:
		return "critical"
	case SeverityNone:
		return ""
	}
	return fmt.Sprintf("severity(%d)", uint8(s))
}

// Attribute is a registry attribute thresholds may depend on.
type Attribute uint8

// Attributes.
const (
	AttrNone        Attribute = iota
	AttrToiletClass           // devices.Device.ToiletClass: "1", "2", "3"
	AttrSupply                // devices.Device.Supply: "centralized", "small"
)

// String returns "", "toilet_class" or "supply".
func (a Attribute) String() string {
	switch a {
	case AttrNone:
		return ""
	case AttrToiletClass:
		return "toilet_class"
	case AttrSupply:
		return "supply"
	}
	return fmt.Sprintf("attribute(%d)", uint8(a))
}

// values lists the attribute's values as rules files spell them, in the
// order of their numeric codes (1, 2, …).
func (a Attribute) values() []string {
	switch a {
	case AttrToiletClass:
		return []string{"1", "2", "3"}
	case AttrSupply:
		return []string{"centralized", "small"}
	}
	return nil
}

// Bound is a threshold: Lo alone for >, >=, <, <=; the range [Lo, Hi] for
// outside and inside.
type Bound struct {
	Lo, Hi float64
}

// Condition is a comparison with a bound, used as a clear condition.
type Condition struct {
	Op    Op
	Bound Bound
}

// Levels are one set of thresholds of a rule.
type Levels struct {
	// Warning and Critical fire the rule at that severity; nil when the
	// rule has no such level. Critical is checked first.
	Warning, Critical *Bound
	// Clear is the hysteresis: a firing rule clears only when it holds.
	// nil clears as soon as no level is crossed.
	Clear *Condition
}

// Deadlines are the rectification periods (整改时限) by severity.
type Deadlines struct {
	Warning, Critical time.Duration
}

// of returns the deadline of severity s.
func (d Deadlines) of(s Severity) time.Duration {
	if s == SeverityCritical {
		return d.Critical
	}
	return d.Warning
}

// Rule is one alert rule. LoadRules returns valid rules; New validates
// rules built in code the same way.
type Rule struct {
	Name string
	Type RuleType
	// Kinds the rule applies to, in the order given.
	Kinds []devices.Kind

	// Field, Op, By, Thresholds, Fallback, Events, For and ClearFor are
	// for TypeThreshold rules.
	Field devices.Field
	Op    Op
	// By names the registry attribute the thresholds depend on.
	By Attribute
	// Thresholds by attribute value ("1", "2", "3" for toilet_class;
	// "centralized", "small" for supply); the only key is "" when By is
	// AttrNone.
	Thresholds map[string]Levels
	// Fallback is the key of Thresholds used for a device whose attribute
	// is not set (or has no entry).
	Fallback string
	// Events are event types that fire the rule at once, at its highest
	// severity.
	Events []string
	// For is how long (device time) the condition must hold before the
	// rule fires; until then it is pending. 0 fires at once.
	For time.Duration
	// ClearFor is how long the clear condition must hold before a firing
	// rule clears.
	ClearFor time.Duration

	// Intervals, DefaultAfter and Severity are for TypeNoData rules: the
	// rule fires when a device has sent nothing for Intervals × its report
	// interval, or DefaultAfter when it has none or Intervals is 0 (a plain
	// duration for every device); with neither, the engine's
	// Options.DefaultOfflineAfter.
	Intervals    int
	DefaultAfter time.Duration
	Severity     Severity

	Title       string
	Requirement string // 整改要求
	Deadline    Deadlines
	// AutoClose asks the sink to close the ticket when the condition clears.
	AutoClose bool
}

// severities returns the severities the rule can fire at.
func (r *Rule) severities() (warning, critical bool) {
	if r.Type == TypeNoData {
		return r.Severity == SeverityWarning, r.Severity == SeverityCritical
	}
	for _, lv := range r.Thresholds {
		warning = warning || lv.Warning != nil
		critical = critical || lv.Critical != nil
	}
	return warning, critical
}

// ruleError is a problem with one key of a rule.
type ruleError struct {
	key string // e.g. "clear", "thresholds.2.warning"; "" for the rule itself
	msg string
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// eventRE matches event types as devices.Decoder accepts them.
var eventRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// validate checks r and returns every problem found.
func (r *Rule) validate() []ruleError {
	var errs []ruleError
	bad := func(key, format string, args ...any) {
		errs = append(errs, ruleError{key, fmt.Sprintf(format, args...)})
	}
	if !nameRE.MatchString(r.Name) {
		if r.Name == "" {
			bad("name", "required")
		} else {
			bad("name", "must be 1-64 characters of a-z 0-9 _ starting with a letter, got %q", r.Name)
		}
	}
	if len(r.Kinds) == 0 {
		bad("kind", "required")
	}
	for i, k := range r.Kinds {
		if !k.Valid() {
			bad("kind", "invalid kind %d", uint8(k))
		} else if slices.Index(r.Kinds, k) != i {
			bad("kind", "%s listed twice", k)
		}
	}
	if r.Title == "" {
		bad("title", "required")
	}
	if r.Requirement == "" {
		bad("requirement", "required (整改要求)")
	}
	if r.For < 0 {
		bad("for", "must not be negative, got %s", duration.Format(r.For))
	}
	if r.ClearFor < 0 {
		bad("clear_for", "must not be negative, got %s", duration.Format(r.ClearFor))
	}
	switch r.Type {
	case TypeThreshold:
		r.validateThreshold(bad)
	case TypeNoData:
		if r.Op != 0 || r.Thresholds != nil || r.By != AttrNone || r.Fallback != "" {
			bad("type", "a no_data rule has no field, op or thresholds")
		}
		if len(r.Events) > 0 {
			bad("events", "only for threshold rules")
		}
		if r.For != 0 || r.ClearFor != 0 {
			bad("for", "only for threshold rules (a no_data rule fires after intervals × report_interval and clears on the next reading)")
		}
		switch {
		case r.Intervals < 0:
			bad("intervals", "must not be negative, got %d", r.Intervals)
		case r.DefaultAfter < 0:
			bad("default_after", "must not be negative, got %s", duration.Format(r.DefaultAfter))
		case r.Intervals == 0 && r.DefaultAfter == 0:
			bad("intervals", "give intervals (silent for that many report intervals), default_after (silent for a duration), or both")
		}
		if r.Severity != SeverityWarning && r.Severity != SeverityCritical {
			bad("severity", "must be warning or critical")
		}
	default:
		bad("type", "must be threshold or no_data")
	}
	if r.Type == TypeThreshold && (r.Intervals != 0 || r.DefaultAfter != 0 || r.Severity != SeverityNone) {
		bad("type", "intervals, default_after and severity are for no_data rules; a threshold rule's severity comes from its warning and critical thresholds")
	}
	warning, critical := r.severities()
	for _, d := range []struct {
		key  string
		d    time.Duration
		used bool
	}{{"deadline.warning", r.Deadline.Warning, warning}, {"deadline.critical", r.Deadline.Critical, critical}} {
		switch {
		case !d.used: // a single deadline: sets both; only those used matter
		case d.d < 0:
			bad(d.key, "must not be negative, got %s", duration.Format(d.d))
		case d.d == 0:
			bad(d.key, "required: the rule fires at %s (整改时限)", d.key[len("deadline."):])
		}
	}
	return errs
}

func (r *Rule) validateThreshold(bad func(key, format string, args ...any)) {
	if r.Field >= devices.NumFields {
		bad("field", "required")
	} else {
		for _, k := range r.Kinds {
			if k.Valid() && !k.Accepts(r.Field) {
				bad("field", "%s is not a field of kind %s (%s has %s)", r.Field, k, k, fieldList(k))
			}
		}
	}
	if r.Op < OpGT || r.Op > OpOutside {
		bad("op", "must be one of >, >=, <, <=, outside")
		return
	}
	for _, e := range r.Events {
		if !eventRE.MatchString(e) {
			bad("events", "event type must be 1-64 characters of a-z A-Z 0-9 _ -, got %q", e)
		}
	}
	if len(r.Thresholds) == 0 {
		bad("warning", "a threshold rule needs a warning or critical threshold")
		return
	}
	switch r.By {
	case AttrNone:
		if _, ok := r.Thresholds[""]; !ok || len(r.Thresholds) != 1 || r.Fallback != "" {
			bad("thresholds", "only with by: toilet_class or by: supply")
			return
		}
		r.Thresholds[""].validate(r.Op, "", bad)
	case AttrToiletClass, AttrSupply:
		vals := r.By.values()
		keys := make([]string, 0, len(r.Thresholds))
		for k := range r.Thresholds {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !slices.Contains(vals, k) {
				bad("thresholds."+k, "%q is not a value of %s (want %s)", k, r.By, joinOr(vals))
				continue
			}
			r.Thresholds[k].validate(r.Op, "thresholds."+k+".", bad)
		}
		if r.Fallback == "" {
			bad("fallback", "required with by: the thresholds for devices whose %s is not set", r.By)
		} else if _, ok := r.Thresholds[r.Fallback]; !ok {
			bad("fallback", "%q has no entry in thresholds", r.Fallback)
		}
	default:
		bad("by", "unknown attribute (want toilet_class or supply)")
	}
}

// validate checks one set of thresholds of a rule with operator op; key
// prefixes the keys it names.
func (lv Levels) validate(op Op, key string, bad func(key, format string, args ...any)) {
	if lv.Warning == nil && lv.Critical == nil {
		bad(key+"warning", "a threshold rule needs a warning or critical threshold")
		return
	}
	ok := true
	for _, l := range []struct {
		name string
		b    *Bound
	}{{"warning", lv.Warning}, {"critical", lv.Critical}} {
		if l.b == nil {
			continue
		}
		if !finite(l.b.Lo) || (op == OpOutside && !finite(l.b.Hi)) {
			bad(key+l.name, "must be a finite number")
			ok = false
		} else if op == OpOutside && l.b.Lo >= l.b.Hi {
			bad(key+l.name, "range [%s, %s]: lo must be below hi", num(l.b.Lo), num(l.b.Hi))
			ok = false
		} else if op != OpOutside && l.b.Hi != 0 {
			bad(key+l.name, "a range is only for op outside")
			ok = false
		}
	}
	if !ok {
		return
	}
	if w, c := lv.Warning, lv.Critical; w != nil && c != nil {
		switch {
		case op == OpOutside && !(c.Lo <= w.Lo && c.Hi >= w.Hi && *c != *w):
			bad(key+"critical", "range [%s, %s] must contain the warning range [%s, %s] and be wider", num(c.Lo), num(c.Hi), num(w.Lo), num(w.Hi))
		case op.upward() && c.Lo <= w.Lo:
			bad(key+"critical", "%s must be above the warning threshold %s (op %s)", num(c.Lo), num(w.Lo), op)
		case (op == OpLT || op == OpLE) && c.Lo >= w.Lo:
			bad(key+"critical", "%s must be below the warning threshold %s (op %s)", num(c.Lo), num(w.Lo), op)
		}
	}
	if lv.Clear == nil {
		return
	}
	// The clear condition must never hold where the least severe level
	// fires, or a rule could fire and clear on the same reading.
	least, name := lv.Warning, "warning"
	if least == nil {
		least, name = lv.Critical, "critical"
	}
	c, t := lv.Clear, least.Lo
	if !finite(c.Bound.Lo) || (c.Op == OpInside && !finite(c.Bound.Hi)) {
		bad(key+"clear", "must be a finite number")
		return
	}
	wrong := func(want string) {
		bad(key+"clear", "%s is on the wrong side of the %s threshold %s (op %s): want %s", c.describe(), name, num(t), op, want)
	}
	switch op {
	case OpGE, OpGT:
		switch {
		case c.Op != OpLT && c.Op != OpLE:
			bad(key+"clear", "a rule with op %s clears with < or <=, got %s", op, c.Op)
		case c.Op == OpLT && c.Bound.Lo > t:
			wrong("a value ≤ " + num(t))
		case c.Op == OpLE && (c.Bound.Lo > t || (op == OpGE && c.Bound.Lo == t)):
			if op == OpGE {
				wrong("a value < " + num(t))
			} else {
				wrong("a value ≤ " + num(t))
			}
		}
	case OpLE, OpLT:
		switch {
		case c.Op != OpGT && c.Op != OpGE:
			bad(key+"clear", "a rule with op %s clears with > or >=, got %s", op, c.Op)
		case c.Op == OpGT && c.Bound.Lo < t:
			wrong("a value ≥ " + num(t))
		case c.Op == OpGE && (c.Bound.Lo < t || (op == OpLE && c.Bound.Lo == t)):
			if op == OpLE {
				wrong("a value > " + num(t))
			} else {
				wrong("a value ≥ " + num(t))
			}
		}
	case OpOutside:
		switch {
		case c.Op != OpInside:
			bad(key+"clear", "a rule with op outside clears with a range [lo, hi] (inside), got %s", c.Op)
		case c.Bound.Lo > c.Bound.Hi:
			bad(key+"clear", "range [%s, %s]: lo must not be above hi", num(c.Bound.Lo), num(c.Bound.Hi))
		case c.Bound.Lo < least.Lo || c.Bound.Hi > least.Hi:
			bad(key+"clear", "%s is on the wrong side of the %s range [%s, %s]: want a range inside it", c.describe(), name, num(least.Lo), num(least.Hi))
		}
	}
}

// describe renders a clear condition: "< 60", "inside [6.5, 8.5]".
func (c *Condition) describe() string {
	if c.Op == OpInside {
		return "inside [" + num(c.Bound.Lo) + ", " + num(c.Bound.Hi) + "]"
	}
	return c.Op.String() + " " + num(c.Bound.Lo)
}

func fieldList(k devices.Kind) string {
	s := ""
	for i, f := range k.Fields() {
		if i > 0 {
			s += ", "
		}
		s += f.String()
	}
	return s
}

func joinOr(vals []string) string {
	switch len(vals) {
	case 0:
		return ""
	case 1:
		return vals[0]
	}
	s := ""
	for i, v := range vals[:len(vals)-1] {
		if i > 0 {
			s += ", "
		}
		s += v
	}
	return s + " or " + vals[len(vals)-1]
}

// num formats a number the shortest way that reads back the same.
func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
