package alerting

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sanitel/sanitel/devices"

	"github.com/sanitel/sanitel/internal/duration"
)

// Sink receives what the engine decides: the supervision tickets.
//
// Calls are made one at a time, in the order the engine decided them, and
// never while the engine's state lock is held; Eval and Tick wait for them.
// A call that returns an error is counted, logged and made again on the
// (device, rule)'s next evaluation or on the next Tick. Calls are at least
// once: after a crash a call may be repeated, with the same Rule, DeviceID
// and FiredAt, so the sink must treat a repeat as a replay.
type Sink interface {
	// Fire says a rule fired, or fired again at a higher severity.
	Fire(ctx context.Context, a Alert) error
	// Resolve says the condition of a fired rule cleared.
	Resolve(ctx context.Context, a Alert) error
}

// Alert is a rule firing (or clearing) for one device.
type Alert struct {
	Rule     string
	Severity string // "warning" or "critical"
	DeviceID string
	Device   *devices.Device // nil when the device is not in the registry
	Kind     devices.Kind
	Title    string
	// Detail is the value and the threshold, e.g. "fill_pct 92 ≥ 90 (critical)".
	Detail      string
	Requirement string // 整改要求
	// Value and Threshold are the reading and the threshold it crossed
	// (for a Resolve: the clearing reading and the clear threshold; for
	// no_data rules, the silence and the timeout in seconds).
	Value, Threshold float64
	Deadline         time.Duration // rectification period (整改时限) for this severity
	AutoClose        bool
	// FiredAt is the device time of the reading that fired (or escalated);
	// for a no_data rule, the last reading's time plus the timeout.
	FiredAt time.Time
	// ResolvedAt is the device time of the reading that cleared it; zero
	// in a Fire.
	ResolvedAt time.Time
}

// Options configure an Engine.
type Options struct {
	// Rules to evaluate, e.g. from LoadRules. They are validated again.
	Rules []Rule
	// Registry of devices: thresholds by attribute, report intervals, and
	// the devices counted as silent from the engine's start. Required.
	Registry *devices.Registry
	// Sink receives firings and resolutions. Required.
	Sink Sink
	// Clock gives the engine's start, from which registered devices that
	// never reported count as silent. Default time.Now.
	Clock func() time.Time
	// Logger; default discards.
	Logger *slog.Logger
	// Registerer gets the engine's metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	// DefaultOfflineAfter is the silence after which no_data rules without
	// default_after fire for a device without a report interval. Default 30m.
	DefaultOfflineAfter time.Duration
	// MaxUnknownDevices bounds how many devices missing from the registry
	// get alert state (when ingestion accepts them); readings of further
	// ones are ignored. Default 100000.
	MaxUnknownDevices int
}

// Engine evaluates rules on readings, per (device, rule), on device time.
// Its methods are safe for concurrent use.
type Engine struct {
	// deliverMu is held by Eval, Tick and Load from the first state change
	// to the last sink call it leads to, so sink calls happen in the order
	// of the changes. It is taken before mu.
	deliverMu sync.Mutex
	// mu guards everything below; it is not held during sink calls, so
	// Firing and Save do not wait for a slow sink.
	mu sync.Mutex

	sink    Sink
	log     *slog.Logger
	met     *metrics
	rules   []compiled
	kinds   [devices.KindWater + 1]kindRules
	all     []devices.Device // the registry's devices; entry i is all[i]
	reg     *devices.Registry
	startMs int64
	offline time.Duration
	maxUnk  int

	// ents has one entry per registered device, then per unknown one.
	ents []entry
	// pool holds the slots of the devices that ever left inactive: entry
	// e's slots are pool[e.off-1:][:len(kinds[e.kind].rules)].
	pool       []slot
	unknown    map[string]uint32
	unknownIDs []string // id of entry len(all)+i
	// info holds what a Fire or Resolve needs to say, for every slot that
	// is firing or owes the sink a call, by slot key.
	info map[uint64]*firing
	// owed holds the keys of slots with a failed sink call.
	owed map[uint64]struct{}
	// retryFrom is where Tick's retries of owed calls resume.
	retryFrom uint64
	// notes are the sink calls decided and not yet made.
	notes []note
	// snapSize is the size of the last snapshot, to size the next.
	snapSize int
}

// entry is one device's alert state.
type entry struct {
	last int64  // device time (Unix ms) of the newest message evaluated; 0: never seen
	off  uint32 // 1 + index of its first slot in pool; 0: all slots inactive
	kind devices.Kind
}

// kindRules are the rules of one kind: slot j of a device of the kind is
// the state of rule rules[j].
type kindRules struct {
	rules  []uint16
	noData []uint8 // slots of no_data rules
}

// firing is what the sink is told about one episode of a slot.
type firing struct {
	firedAt     int64 // device time, Unix ms
	value, thr  float64
	event       string // the event type that fired it; "" for a reading
	eventDetail string
	silentSince int64 // no_data: the last reading before the silence (0: engine start)
	resolvedAt  int64
	resValue    float64
}

// note is one sink call to make.
type note struct {
	key     uint64
	resolve bool
	sev     Severity
	alert   Alert
	failed  bool
}

// compiled is a rule prepared for evaluation.
type compiled struct {
	Rule
	// lv are the thresholds by attribute code (toilet class 1–3, supply
	// 1–2); lv[0] and codes without an entry hold the fallback.
	lv                [4]levels
	maxSev            Severity
	forMs, clearForMs int64
}

// levels are one set of thresholds, ready to compare.
type levels struct {
	set    [numSeverities]bool
	lo, hi [numSeverities]float64
	clear  Condition // Op 0: clears when no threshold is crossed
	least  Severity  // the least severe level set
}

// maxSlotsPerKind bounds the rules of one kind: a slot key keeps the slot
// index in 8 bits.
const maxSlotsPerKind = 255

// New returns an engine for opts.Rules. It validates the rules, registers
// the metrics and starts every registered device's silence clock at
// opts.Clock().
func New(opts Options) (*Engine, error) {
	if opts.Registry == nil {
		return nil, errors.New("alerting: no device registry")
	}
	if opts.Sink == nil {
		return nil, errors.New("alerting: no sink")
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DefaultOfflineAfter < 0 {
		return nil, fmt.Errorf("alerting: DefaultOfflineAfter must not be negative, got %s", opts.DefaultOfflineAfter)
	}
	if opts.DefaultOfflineAfter == 0 {
		opts.DefaultOfflineAfter = 30 * time.Minute
	}
	if opts.MaxUnknownDevices <= 0 {
		opts.MaxUnknownDevices = 100000
	}
	e := &Engine{
		sink:    opts.Sink,
		log:     opts.Logger,
		all:     opts.Registry.All(),
		reg:     opts.Registry,
		startMs: opts.Clock().UnixMilli(),
		offline: opts.DefaultOfflineAfter,
		maxUnk:  opts.MaxUnknownDevices,
		unknown: map[string]uint32{},
		info:    map[uint64]*firing{},
		owed:    map[uint64]struct{}{},
	}
	var errs []error
	names := map[string]bool{}
	for i := range opts.Rules {
		r := &opts.Rules[i]
		for _, re := range r.validate() {
			msg := re.msg
			if re.key != "" {
				msg = re.key + ": " + msg
			}
			errs = append(errs, fmt.Errorf("rule %q: %s", r.Name, msg))
		}
		if names[r.Name] {
			errs = append(errs, fmt.Errorf("rule %q: defined twice", r.Name))
		}
		names[r.Name] = true
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("alerting: %w", errors.Join(errs...))
	}
	if len(opts.Rules) > 1<<16 {
		return nil, fmt.Errorf("alerting: %d rules, at most %d", len(opts.Rules), 1<<16)
	}
	e.rules = make([]compiled, len(opts.Rules))
	for i := range opts.Rules {
		e.rules[i] = compile(opts.Rules[i])
		for _, k := range e.rules[i].Kinds {
			kr := &e.kinds[k]
			if len(kr.rules) == maxSlotsPerKind {
				return nil, fmt.Errorf("alerting: more than %d rules for kind %s", maxSlotsPerKind, k)
			}
			if e.rules[i].Type == TypeNoData {
				kr.noData = append(kr.noData, uint8(len(kr.rules)))
			}
			kr.rules = append(kr.rules, uint16(i))
		}
	}
	var err error
	if e.met, err = newMetrics(opts.Registerer, e.rules); err != nil {
		return nil, fmt.Errorf("alerting: register metrics: %w", err)
	}
	e.ents = make([]entry, len(e.all))
	for i := range e.all {
		e.ents[i].kind = e.all[i].Kind
	}
	return e, nil
}

func compile(r Rule) compiled {
	r.Kinds = slices.Clone(r.Kinds)
	r.Events = slices.Clone(r.Events)
	c := compiled{Rule: r, forMs: r.For.Milliseconds(), clearForMs: r.ClearFor.Milliseconds()}
	if r.Type == TypeNoData {
		c.maxSev = r.Severity
		return c
	}
	key := r.Fallback
	if r.By == AttrNone {
		key = ""
	}
	fallback := prepare(r.Thresholds[key])
	for i := range c.lv {
		c.lv[i] = fallback
	}
	for code, v := range r.By.values() {
		if lv, ok := r.Thresholds[v]; ok {
			c.lv[code+1] = prepare(lv)
		}
	}
	for _, lv := range c.lv {
		for s := SeverityCritical; s > c.maxSev; s-- {
			if lv.set[s] {
				c.maxSev = s
			}
		}
	}
	return c
}

func prepare(lv Levels) levels {
	var p levels
	for s, b := range map[Severity]*Bound{SeverityWarning: lv.Warning, SeverityCritical: lv.Critical} {
		if b != nil {
			p.set[s], p.lo[s], p.hi[s] = true, b.Lo, b.Hi
		}
	}
	p.least = SeverityWarning
	if !p.set[SeverityWarning] {
		p.least = SeverityCritical
	}
	if lv.Clear != nil {
		p.clear = *lv.Clear
	}
	return p
}

// levelsFor returns the thresholds that apply to device d (nil: unknown).
func (c *compiled) levelsFor(d *devices.Device) *levels {
	if d != nil {
		switch c.By {
		case AttrToiletClass:
			if d.ToiletClass >= 1 && d.ToiletClass <= 3 {
				return &c.lv[d.ToiletClass]
			}
		case AttrSupply:
			if d.Supply == devices.SupplyCentralized || d.Supply == devices.SupplySmall {
				return &c.lv[d.Supply]
			}
		}
	}
	return &c.lv[0]
}

func crosses(op Op, lo, hi, v float64) bool {
	switch op {
	case OpGT:
		return v > lo
	case OpGE:
		return v >= lo
	case OpLT:
		return v < lo
	case OpLE:
		return v <= lo
	case OpOutside:
		return v < lo || v > hi
	case OpInside:
		return v >= lo && v <= hi
	}
	return false
}

// check returns the most severe level v crosses, and its threshold.
func (l *levels) check(op Op, v float64) (Severity, float64) {
	for s := SeverityCritical; s > SeverityNone; s-- {
		if l.set[s] && crosses(op, l.lo[s], l.hi[s], v) {
			thr := l.lo[s]
			if op == OpOutside && v > l.hi[s] {
				thr = l.hi[s]
			}
			return s, thr
		}
	}
	return SeverityNone, 0
}

// cleared reports whether v meets the clear condition.
func (l *levels) cleared(op Op, v float64) bool {
	if l.clear.Op == 0 {
		return !crosses(op, l.lo[l.least], l.hi[l.least], v)
	}
	return crosses(l.clear.Op, l.clear.Bound.Lo, l.clear.Bound.Hi, v)
}

// clearCondition returns the clear condition as a Condition, for details.
func (l *levels) clearCondition(op Op) Condition {
	if l.clear.Op != 0 {
		return l.clear
	}
	b := Bound{l.lo[l.least], l.hi[l.least]}
	neg := map[Op]Op{OpGT: OpLE, OpGE: OpLT, OpLT: OpGE, OpLE: OpGT, OpOutside: OpInside}
	return Condition{Op: neg[op], Bound: b}
}

// Eval evaluates one decoded message: telemetry against the threshold
// rules of its kind, an event against the rules it fires, and either as a
// sign of life for no_data rules. Status messages are ignored, and so is a
// message whose device time is not after the newest one evaluated for its
// device (an event may share that time): duplicates, readings that arrive
// out of order, and a backlog replayed after a restart change nothing.
func (e *Engine) Eval(ctx context.Context, m *devices.Message) {
	if m.Type != devices.Telemetry && m.Type != devices.Event {
		return
	}
	e.deliverMu.Lock()
	defer e.deliverMu.Unlock()
	e.mu.Lock()
	e.eval(m)
	n := len(e.notes)
	e.mu.Unlock()
	if n > 0 {
		e.deliver(ctx)
	}
}

func (e *Engine) eval(m *devices.Message) {
	idx, ok := e.index(m)
	if !ok {
		e.met.ignored.Inc()
		return
	}
	ent := &e.ents[idx]
	ts, isEvent := m.TS, m.Type == devices.Event
	if ts <= 0 || ts < ent.last || (ts == ent.last && !isEvent) {
		e.met.stale.Inc()
		return
	}
	e.met.evals.Inc()
	prev := ent.last
	ent.last = ts
	kr := &e.kinds[ent.kind]
	dev := e.device(idx)
	for j, ri := range kr.rules {
		r := &e.rules[ri]
		changed := false
		switch {
		case r.Type == TypeNoData:
			// A gap longer than the timeout is a silence Tick reports live;
			// found here it is reported the same way, so a backlog replay
			// says what live evaluation said.
			if to := e.timeoutMs(r, dev); prev > 0 && ts-prev > to && e.slotAt(ent, j).state != StateFiring {
				changed = e.apply(idx, j, r, input{ts: prev + to, sev: r.Severity},
					&firing{value: float64(to) / 1000, thr: float64(to) / 1000, silentSince: prev})
			}
			silent := ts - prev
			if prev == 0 {
				silent = max(ts-e.startMs, 0)
			}
			changed = e.apply(idx, j, r, input{ts: ts, clear: true}, &firing{resValue: float64(silent) / 1000}) || changed
		case isEvent:
			if !slices.Contains(r.Events, m.EventType) {
				break
			}
			changed = e.apply(idx, j, r, input{ts: ts, sev: r.maxSev},
				&firing{event: m.EventType, eventDetail: m.EventDetail})
		default:
			v, ok := m.Values.Get(r.Field)
			if !ok {
				break
			}
			lv := r.levelsFor(dev)
			sev, thr := lv.check(r.Op, v)
			in := input{ts: ts, sev: sev, forMs: r.forMs, clearForMs: r.clearForMs}
			if sev == SeverityNone {
				in.clear = lv.cleared(r.Op, v)
			}
			changed = e.apply(idx, j, r, in, &firing{value: v, thr: thr, resValue: v})
		}
		if changed || (ent.off != 0 && e.pool[int(ent.off)-1+j].flags&flagOwed != 0) {
			e.reconcile(key(idx, j))
		}
	}
}

func key(idx uint32, j int) uint64 { return uint64(idx)<<8 | uint64(j) }

func splitKey(k uint64) (uint32, int) { return uint32(k >> 8), int(k & 0xff) }

// slotAt returns slot j of ent (the zero slot when ent has none).
func (e *Engine) slotAt(ent *entry, j int) slot {
	if ent.off == 0 {
		return slot{}
	}
	return e.pool[int(ent.off)-1+j]
}

// apply runs step on slot j of device idx, records what it did, and
// reports whether the sink may need to hear of it. obs is what was
// observed; it is kept (copied) only when the rule fires or clears.
func (e *Engine) apply(idx uint32, j int, r *compiled, in input, obs *firing) bool {
	ent := &e.ents[idx]
	s := e.slotAt(ent, j)
	before := s
	t := step(&s, in)
	if s != before {
		if ent.off == 0 {
			n := len(e.kinds[ent.kind].rules)
			e.pool = append(e.pool, make([]slot, n)...)
			ent.off = uint32(len(e.pool) - n + 1)
		}
		e.pool[int(ent.off)-1+j] = s
	}
	if t == tNone {
		return false
	}
	ri := e.kinds[ent.kind].rules[j]
	k := key(idx, j)
	switch t {
	case tPending:
		e.met.trans[ri][StatePending].Inc()
	case tDropped:
		e.met.trans[ri][StateInactive].Inc()
	case tFired, tEscalated:
		if t == tFired {
			e.met.trans[ri][StateFiring].Inc()
			e.met.firing[ri].Inc()
		}
		inf := e.info[k]
		if inf == nil {
			inf = new(firing)
			e.info[k] = inf
		}
		*inf = firing{firedAt: in.ts, value: obs.value, thr: obs.thr, event: obs.event,
			eventDetail: obs.eventDetail, silentSince: obs.silentSince}
	case tResolved:
		e.met.trans[ri][StateInactive].Inc()
		e.met.firing[ri].Dec()
		if inf := e.info[k]; inf != nil {
			inf.resolvedAt, inf.resValue = in.ts, obs.resValue
		}
	}
	return t >= tFired
}

// reconcile decides the sink calls slot k needs: a Fire when the sink has
// not heard the severity it fires (or fired) at, then a Resolve when the
// episode has ended.
func (e *Engine) reconcile(k uint64) {
	idx, j := splitKey(k)
	ent := &e.ents[idx]
	if ent.off == 0 {
		return
	}
	s := &e.pool[int(ent.off)-1+j]
	inf := e.info[k]
	if inf == nil || (s.state != StateFiring && s.flags&flagEnded == 0) || (s.state == StateFiring && s.sent >= s.sev) {
		// Nothing to tell the sink (any longer).
		s.flags &^= flagOwed
		delete(e.owed, k)
		return
	}
	r := &e.rules[e.kinds[ent.kind].rules[j]]
	if s.sent < s.sev {
		e.notes = append(e.notes, note{key: k, sev: s.sev, alert: e.alert(idx, r, s.sev, inf, false)})
	}
	if s.state != StateFiring {
		e.notes = append(e.notes, note{key: k, resolve: true, sev: s.sev, alert: e.alert(idx, r, s.sev, inf, true)})
	}
}

// maxSinkFailures is how many sink calls in a row may fail before the rest
// of a batch is left for later: the sink is probably down.
const maxSinkFailures = 8

// deliver makes the sink calls in e.notes, in order, then records which
// the sink acknowledged. The caller holds deliverMu, not mu.
func (e *Engine) deliver(ctx context.Context) {
	var failedKeys []uint64
	inARow := 0
	for i := range e.notes {
		n := &e.notes[i]
		// A Resolve must not overtake the Fire before it.
		if inARow >= maxSinkFailures || slices.Contains(failedKeys, n.key) || ctx.Err() != nil {
			n.failed = true
			continue
		}
		var err error
		if n.resolve {
			err = e.sink.Resolve(ctx, n.alert)
		} else {
			err = e.sink.Fire(ctx, n.alert)
		}
		if err != nil {
			n.failed = true
			failedKeys = append(failedKeys, n.key)
			inARow++
			e.met.sinkErrors.Inc()
			call := "fire"
			if n.resolve {
				call = "resolve"
			}
			e.log.Warn("alert sink failed; will retry", "call", call, "rule", n.alert.Rule,
				"device_id", n.alert.DeviceID, "severity", n.alert.Severity, "err", err)
			continue
		}
		inARow = 0
	}
	e.mu.Lock()
	for i := range e.notes {
		k := e.notes[i].key
		idx, j := splitKey(k)
		e.pool[int(e.ents[idx].off)-1+j].flags &^= flagOwed
		delete(e.owed, k)
	}
	for i := range e.notes {
		n := &e.notes[i]
		idx, j := splitKey(n.key)
		s := &e.pool[int(e.ents[idx].off)-1+j]
		switch {
		case n.failed:
			s.flags |= flagOwed
			e.owed[n.key] = struct{}{}
		case n.resolve:
			s.sent = 0
			s.flags &^= flagEnded
			if s.state == StateFiring {
				// A new episode fired after the one resolved; the sink
				// now thinks nothing fires, so it must hear the Fire.
				s.flags |= flagOwed
				e.owed[n.key] = struct{}{}
			} else {
				s.sev = 0
				delete(e.info, n.key)
			}
		case n.sev > s.sent:
			s.sent = n.sev
		}
	}
	e.mu.Unlock()
	clear(e.notes)
	e.notes = e.notes[:0]
}

// alert builds what the sink is told about slot (idx, r) at severity sev.
func (e *Engine) alert(idx uint32, r *compiled, sev Severity, inf *firing, resolve bool) Alert {
	dev := e.device(idx)
	a := Alert{
		Rule: r.Name, Severity: sev.String(), DeviceID: e.id(idx), Device: dev, Kind: e.ents[idx].kind,
		Title: r.Title, Requirement: r.Requirement, Deadline: r.Deadline.of(sev), AutoClose: r.AutoClose,
		Value: inf.value, Threshold: inf.thr, FiredAt: time.UnixMilli(inf.firedAt).UTC(),
	}
	var b strings.Builder
	switch {
	case r.Type == TypeNoData && !resolve:
		timeout := time.Duration(inf.thr * float64(time.Second))
		fmt.Fprintf(&b, "no reading for %s", duration.Format(timeout))
		if r.Intervals > 0 && dev != nil && dev.ReportInterval > 0 {
			fmt.Fprintf(&b, " (%d × report_interval %s)", r.Intervals, duration.Format(dev.ReportInterval))
		}
		if inf.silentSince > 0 {
			fmt.Fprintf(&b, " since %s", time.UnixMilli(inf.silentSince).UTC().Format(time.RFC3339))
		} else {
			b.WriteString(" since sanitel started")
		}
	case r.Type == TypeNoData:
		a.Value = inf.resValue
		b.WriteString("reporting again")
		if inf.silentSince > 0 || inf.resValue > 0 {
			fmt.Fprintf(&b, " after %s silent", duration.Format(time.Duration(inf.resValue*float64(time.Second)).Round(time.Second)))
		}
	case resolve:
		c := r.levelsFor(dev).clearCondition(r.Op)
		a.Value, a.Threshold = inf.resValue, c.Bound.Lo
		fmt.Fprintf(&b, "%s %s %s", r.Field, num(inf.resValue), describeBound(c.Op, c.Bound))
	case inf.event != "":
		fmt.Fprintf(&b, "event %s", inf.event)
		if inf.eventDetail != "" {
			fmt.Fprintf(&b, ": %s", inf.eventDetail)
		}
	default:
		lv := r.levelsFor(dev)
		fmt.Fprintf(&b, "%s %s %s", r.Field, num(inf.value), describeBound(r.Op, Bound{lv.lo[sev], lv.hi[sev]}))
	}
	if resolve {
		a.ResolvedAt = time.UnixMilli(inf.resolvedAt).UTC()
		b.WriteString(" (cleared)")
	} else {
		fmt.Fprintf(&b, " (%s)", sev)
	}
	a.Detail = b.String()
	return a
}

// describeBound renders a comparison for a detail: "≥ 90", "outside 6.5–8.5".
func describeBound(op Op, b Bound) string {
	if op == OpOutside || op == OpInside {
		return op.String() + " " + num(b.Lo) + "–" + num(b.Hi)
	}
	return op.symbol() + " " + num(b.Lo)
}

// index returns the entry of m's device, adding one for a device missing
// from the registry. It reports false when m's kind is not the device's.
func (e *Engine) index(m *devices.Message) (uint32, bool) {
	if !m.Kind.Valid() {
		return 0, false
	}
	if m.Device != nil {
		if i, ok := e.registryIndex(m.Device); ok {
			return i, e.ents[i].kind == m.Kind
		}
	}
	if d, ok := e.reg.Lookup(m.DeviceID); ok {
		i, _ := e.registryIndex(d)
		return i, d.Kind == m.Kind
	}
	if i, ok := e.unknown[m.DeviceID]; ok {
		return i, e.ents[i].kind == m.Kind
	}
	if len(e.unknown) >= e.maxUnk || !devices.ValidID(m.DeviceID) {
		return 0, false
	}
	i := uint32(len(e.ents))
	id := strings.Clone(m.DeviceID)
	e.ents = append(e.ents, entry{kind: m.Kind})
	e.unknown[id] = i
	e.unknownIDs = append(e.unknownIDs, id)
	return i, true
}

// registryIndex returns the position of d in the registry, when d points
// into it (as Registry.Lookup and the decoder's Message.Device do). The
// registry keeps its devices in one slice and offers no index, so the
// position is found from the address, then checked: a pointer elsewhere
// is reported as not found, never misread.
func (e *Engine) registryIndex(d *devices.Device) (uint32, bool) {
	if len(e.all) == 0 {
		return 0, false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(e.all)))
	p := uintptr(unsafe.Pointer(d))
	size := unsafe.Sizeof(devices.Device{})
	if p < base {
		return 0, false
	}
	off := p - base
	i := off / size
	if off%size != 0 || i >= uintptr(len(e.all)) || &e.all[i] != d {
		return 0, false
	}
	return uint32(i), true
}

func (e *Engine) device(idx uint32) *devices.Device {
	if int(idx) < len(e.all) {
		return &e.all[idx]
	}
	return nil
}

func (e *Engine) id(idx uint32) string {
	if int(idx) < len(e.all) {
		return e.all[idx].ID
	}
	return e.unknownIDs[int(idx)-len(e.all)]
}

// timeoutMs is how long device d may stay silent under no_data rule r.
func (e *Engine) timeoutMs(r *compiled, d *devices.Device) int64 {
	if r.Intervals > 0 && d != nil && d.ReportInterval > 0 {
		return int64(r.Intervals) * d.ReportInterval.Milliseconds()
	}
	if r.DefaultAfter > 0 {
		return r.DefaultAfter.Milliseconds()
	}
	return e.offline.Milliseconds()
}

// tickChunk is how many devices Tick checks per hold of the locks, so a
// million-device sweep does not hold Eval up in one piece.
const tickChunk = 16384

// maxRetriesPerTick bounds the owed sink calls one Tick retries.
const maxRetriesPerTick = 1024

// Tick checks the no_data rules against now (server time): a device whose
// newest message is older than its timeout — registered devices never
// heard from count from the engine's start — fires them, with FiredAt its
// last device time plus the timeout. The device's next message resolves
// them. Tick also retries sink calls that failed. Call it periodically;
// not while a backlog is being replayed, or devices whose readings are
// still queued look silent.
func (e *Engine) Tick(ctx context.Context, now time.Time) {
	nowMs := now.UnixMilli()
	for start := 0; ; start += tickChunk {
		e.deliverMu.Lock()
		e.mu.Lock()
		if start == 0 {
			e.retryOwed()
		}
		end := min(start+tickChunk, len(e.ents))
		for i := start; i < end; i++ {
			e.tickDevice(uint32(i), nowMs)
		}
		more := end < len(e.ents)
		n := len(e.notes)
		e.mu.Unlock()
		if n > 0 {
			e.deliver(ctx)
		}
		e.deliverMu.Unlock()
		if !more || ctx.Err() != nil {
			return
		}
	}
}

func (e *Engine) tickDevice(idx uint32, nowMs int64) {
	ent := &e.ents[idx]
	kr := &e.kinds[ent.kind]
	if len(kr.noData) == 0 {
		return
	}
	last := ent.last
	if last == 0 {
		last = e.startMs
	}
	dev := e.device(idx)
	for _, j := range kr.noData {
		r := &e.rules[kr.rules[j]]
		to := e.timeoutMs(r, dev)
		if nowMs-last <= to || e.slotAt(ent, int(j)).state == StateFiring {
			continue
		}
		if e.apply(idx, int(j), r, input{ts: last + to, sev: r.Severity},
			&firing{value: float64(to) / 1000, thr: float64(to) / 1000, silentSince: ent.last}) {
			e.reconcile(key(idx, int(j)))
		}
	}
}

// retryOwed queues again the sink calls that failed, up to
// maxRetriesPerTick of them, taking turns when there are more.
func (e *Engine) retryOwed() {
	if len(e.owed) == 0 {
		return
	}
	keys := make([]uint64, 0, len(e.owed))
	for k := range e.owed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	i, _ := slices.BinarySearch(keys, e.retryFrom)
	keys = append(keys[i:], keys[:i]...)
	if len(keys) > maxRetriesPerTick {
		keys = keys[:maxRetriesPerTick]
	}
	for _, k := range keys {
		e.reconcile(k)
	}
	e.retryFrom = keys[len(keys)-1] + 1
}

// Firing returns the alerts currently firing, by device id then rule.
func (e *Engine) Firing() []Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Alert
	for k, inf := range e.info {
		idx, j := splitKey(k)
		ent := &e.ents[idx]
		s := e.slotAt(ent, j)
		if s.state != StateFiring {
			continue
		}
		out = append(out, e.alert(idx, &e.rules[e.kinds[ent.kind].rules[j]], s.sev, inf, false))
	}
	slices.SortFunc(out, func(a, b Alert) int {
		return cmp.Or(strings.Compare(a.DeviceID, b.DeviceID), strings.Compare(a.Rule, b.Rule))
	})
	return out
}
