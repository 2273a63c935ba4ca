package alerting

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sanitel/sanitel/devices"
)

// at is one reading of a rule's field and what the rule must say to it:
// "" nothing, "fire warning", "fire critical" or "resolve".
type at struct {
	t    time.Duration
	v    float64
	want string
}

// TestDefaultRules drives every shipped rule across its thresholds, with
// the exact boundaries (≥ against >), `for` and clear_for on device time,
// and the thresholds that depend on toilet class and water supply.
func TestDefaultRules(t *testing.T) {
	m := time.Minute
	cases := []struct {
		name, rule, dev string
		field           devices.Field
		steps           []at
	}{
		{"bin_full", "bin_full", "bin-1", devices.FillPct, []at{
			{0, 79.9, ""}, {1 * m, 80, "fire warning"}, {2 * m, 89.9, ""}, {3 * m, 90, "fire critical"},
			{4 * m, 60, ""}, {5 * m, 59.9, "resolve"}, {6 * m, 79, ""}, {7 * m, 91, "fire critical"}}},
		{"bin_fire", "bin_fire", "bin-1", devices.TempC, []at{
			{0, 59.9, ""}, {1 * m, 60, "fire critical"}, {2 * m, 45, ""}, {3 * m, 44.9, "resolve"}}},
		{"bin_tipped", "bin_tipped", "bin-1", devices.TiltDeg, []at{
			{0, 44.9, ""}, {1 * m, 45, ""}, {5*m + 59*time.Second, 90, ""}, {6 * m, 50, "fire warning"},
			{7 * m, 20, ""}, {8 * m, 19.9, "resolve"}}},
		{"toilet_ammonia class 1", "toilet_ammonia", "toilet-c1", devices.NH3MgM3, []at{
			{0, 0.3, ""}, {1 * m, 0.31, ""}, {10 * m, 0.4, ""}, {11 * m, 0.31, "fire warning"},
			{12 * m, 0.3, ""}, {21 * m, 0.1, ""}, {22 * m, 0.29, "resolve"}}},
		{"toilet_ammonia class 2", "toilet_ammonia", "toilet-c2", devices.NH3MgM3, []at{
			{0, 1, ""}, {1 * m, 1.01, ""}, {11 * m, 1.01, "fire warning"}, {12 * m, 1, ""}, {22 * m, 0.5, "resolve"}}},
		{"toilet_ammonia class 3", "toilet_ammonia", "toilet-c3", devices.NH3MgM3, []at{
			{0, 3, ""}, {1 * m, 2.9, ""}, {2 * m, 3.01, ""}, {12 * m, 4, "fire warning"}, {13 * m, 2, ""}, {23 * m, 2, "resolve"}}},
		{"toilet_ammonia no class uses class 2", "toilet_ammonia", "toilet-nc", devices.NH3MgM3, []at{
			{0, 0.9, ""}, {15 * m, 0.9, ""}, {16 * m, 1.5, ""}, {26 * m, 1.5, "fire warning"}}},
		{"toilet_h2s", "toilet_h2s", "toilet-c2", devices.H2SMgM3, []at{
			{0, 0.01, ""}, {1 * m, 0.011, ""}, {10*m + 59*time.Second, 0.02, ""}, {11 * m, 0.02, "fire warning"},
			{12 * m, 0.01, ""}, {17 * m, 0.02, ""}, {18 * m, 0.005, ""}, {27 * m, 0.005, ""}, {28 * m, 0.005, "resolve"}}},
		{"toilet_leak", "toilet_leak", "toilet-c2", devices.FlowLpm, []at{
			{0, 0.5, ""}, {1 * m, 0.6, ""}, {60 * m, 3, ""}, {120*m + 59*time.Second, 0.6, ""},
			{121 * m, 0.6, "fire warning"}, {122 * m, 0.5, "resolve"}}},
		{"rural_tank_full", "rural_tank_full", "rural-1", devices.TankLevelPct, []at{
			{0, 84.9, ""}, {1 * m, 85, "fire warning"}, {2 * m, 100, ""}, {3 * m, 30, ""}, {4 * m, 29.9, "resolve"}}},
		{"water_ph low", "water_ph", "water-c", devices.PH, []at{
			{0, 6.5, ""}, {1 * m, 8.5, ""}, {2 * m, 6.49, ""}, {17 * m, 6.4, "fire warning"},
			{18 * m, 6.5, ""}, {32 * m, 8.5, ""}, {33 * m, 7, "resolve"}}},
		{"water_ph high", "water_ph", "water-s", devices.PH, []at{
			{0, 8.51, ""}, {15 * m, 9, "fire warning"}, {16 * m, 7, ""}, {20 * m, 8.6, ""}, {21 * m, 7, ""}, {36 * m, 7, "resolve"}}},
		{"water_turbidity centralized", "water_turbidity", "water-c", devices.TurbidityNTU, []at{
			{0, 1, ""}, {1 * m, 1.1, ""}, {16 * m, 1.1, "fire warning"}, {17 * m, 1, "resolve"}}},
		{"water_turbidity small", "water_turbidity", "water-s", devices.TurbidityNTU, []at{
			{0, 3, ""}, {1 * m, 2.5, ""}, {16 * m, 2.9, ""}, {17 * m, 3.1, ""}, {32 * m, 3.1, "fire warning"}, {33 * m, 3, "resolve"}}},
		{"water_turbidity no supply uses centralized", "water_turbidity", "water-n", devices.TurbidityNTU, []at{
			{0, 1.1, ""}, {15 * m, 1.1, "fire warning"}}},
		{"water_chlorine_low", "water_chlorine_low", "water-c", devices.ChlorineMgL, []at{
			{0, 0.05, ""}, {1 * m, 0.049, ""}, {30 * m, 0.01, ""}, {31 * m, 0, "fire warning"}, {32 * m, 0.05, "resolve"}}},
		{"water_chlorine_high", "water_chlorine_high", "water-c", devices.ChlorineMgL, []at{
			{0, 2, ""}, {1 * m, 2.01, ""}, {31 * m, 2.5, "fire warning"}, {32 * m, 2, "resolve"}}},
		{"battery_low bin", "battery_low", "bin-1", devices.BatteryPct, []at{
			{0, 20.1, ""}, {1 * m, 20, "fire warning"}, {2 * m, 29.9, ""}, {3 * m, 30, "resolve"}}},
		{"battery_low rural toilet", "battery_low", "rural-1", devices.BatteryPct, []at{
			{0, 21, ""}, {1 * m, 5, "fire warning"}, {2 * m, 35, "resolve"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, sink := newEngine(t, engineOpts{})
			for _, s := range tc.steps {
				e.Eval(context.Background(), reading(e.reg, tc.dev, s.t, tc.field, s.v))
				var got []string
				for _, c := range sink.take() {
					if f := strings.Fields(c); f[1] == tc.rule {
						got = append(got, f[0]+" "+f[3])
					}
				}
				if s.want == "resolve" && len(got) == 1 && strings.HasPrefix(got[0], "resolve") {
					got[0] = "resolve"
				}
				want := []string{}
				if s.want != "" {
					want = []string{s.want}
				}
				if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
					t.Fatalf("%s = %v at %s: got %v, want %v", tc.field, s.v, s.t, got, want)
				}
			}
		})
	}
}

func TestRuleDoesNotApplyToOtherKinds(t *testing.T) {
	e, sink := newEngine(t, engineOpts{})
	// battery_low is for bins and rural toilets; a toilet has no battery
	// field, and water has no fill_pct: such readings fire nothing.
	m := reading(e.reg, "water-c", 0, devices.TempC, 59)
	e.Eval(context.Background(), m)
	if c := sink.take(); len(c) != 0 {
		t.Fatalf("calls %v", c)
	}
}

func TestAlertContents(t *testing.T) {
	e, sink := newEngine(t, engineOpts{})
	ctx := context.Background()
	e.Eval(ctx, reading(e.reg, "bin-1", time.Minute, devices.FillPct, 92))
	e.Eval(ctx, reading(e.reg, "bin-1", 2*time.Minute, devices.FillPct, 45))
	if len(sink.alerts) != 2 {
		t.Fatalf("calls %v", sink.calls)
	}
	f, r := sink.alerts[0], sink.alerts[1]
	if f.Rule != "bin_full" || f.Severity != "critical" || f.DeviceID != "bin-1" || f.Device == nil ||
		f.Device.Street != "东街" || f.Kind != devices.KindBin || f.Title != "垃圾桶满溢" ||
		f.Detail != "fill_pct 92 ≥ 90 (critical)" || f.Value != 92 || f.Threshold != 90 ||
		f.Deadline != 2*time.Hour || !f.AutoClose || !f.FiredAt.Equal(t0.Add(time.Minute)) ||
		!f.ResolvedAt.IsZero() || !strings.Contains(f.Requirement, "清运") {
		t.Errorf("fire: %+v", f)
	}
	if r.Severity != "critical" || r.Detail != "fill_pct 45 < 60 (cleared)" || r.Value != 45 || r.Threshold != 60 ||
		!r.ResolvedAt.Equal(t0.Add(2*time.Minute)) || !r.FiredAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("resolve: %+v", r)
	}

	// Details of the other shapes of rule.
	e, sink = newEngine(t, engineOpts{})
	e.Eval(ctx, reading(e.reg, "water-c", 0, devices.PH, 9.1, devices.TurbidityNTU, 0.5))
	e.Eval(ctx, reading(e.reg, "water-c", 15*time.Minute, devices.PH, 9.2))
	e.Eval(ctx, reading(e.reg, "water-c", 16*time.Minute, devices.PH, 7))
	e.Eval(ctx, reading(e.reg, "water-c", 31*time.Minute, devices.PH, 7.1))
	e.Eval(ctx, reading(e.reg, "toilet-c1", 0, devices.NH3MgM3, 0.2))
	e.Eval(ctx, event(e.reg, "bin-2", time.Minute, "fire", "lid smoking"))
	got := sink.take()
	want := []string{
		"fire water_ph water-c warning fired=15m0s | ph 9.2 outside 6.5–8.5 (warning)",
		"resolve water_ph water-c warning fired=15m0s resolved=31m0s | ph 7.1 inside 6.5–8.5 (cleared)",
		"fire bin_fire bin-2 critical fired=1m0s | event fire: lid smoking (critical)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPendingThatClearsNeverFires(t *testing.T) {
	e, sink := newEngine(t, engineOpts{})
	ctx := context.Background()
	m := time.Minute
	for _, s := range []at{{0, 50, ""}, {4 * m, 50, ""}, {4*m + 30*time.Second, 10, ""}, {6 * m, 50, ""}, {10 * m, 50, ""}} {
		e.Eval(ctx, reading(e.reg, "bin-1", s.t, devices.TiltDeg, s.v))
	}
	if c := sink.take(); len(c) != 0 {
		t.Fatalf("a pending alert that cleared sent %v", c)
	}
	if n := testutil.ToFloat64(e.met.trans[ruleIndex(t, e, "bin_tipped")][StateInactive]); n != 1 {
		t.Errorf("pending → inactive transitions = %v, want 1", n)
	}
	// The timer restarted at 6m: 11m is 5m later.
	e.Eval(ctx, reading(e.reg, "bin-1", 11*m, devices.TiltDeg, 50))
	if c := sink.take(); len(c) != 1 || !strings.HasPrefix(c[0], "fire bin_tipped bin-1 warning fired=11m0s") {
		t.Fatalf("calls %v", c)
	}
}

func ruleIndex(t *testing.T, e *Engine, name string) int {
	t.Helper()
	for i := range e.rules {
		if e.rules[i].Name == name {
			return i
		}
	}
	t.Fatalf("no rule %s", name)
	return -1
}

func TestHysteresisBandRestartsClearTimer(t *testing.T) {
	rules, err := ParseRules([]byte(`
include_defaults: false
rules:
  - name: hot
    kind: bin
    field: temp_c
    op: ">"
    warning: 50
    clear: "< 40"
    clear_for: 10m
    title: 高温
    requirement: 处置
    deadline: 1h
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	e, sink := newEngine(t, engineOpts{rules: rules})
	ctx := context.Background()
	m := time.Minute
	// Fires at 0; clear from 1m; a reading in the band (45: neither over
	// 50 nor under 40) at 5m restarts the clear timer; cleared 10m after 6m.
	for _, s := range []at{{0, 55, ""}, {1 * m, 30, ""}, {5 * m, 45, ""}, {6 * m, 30, ""}, {11 * m, 30, ""}, {15*m + 59*time.Second, 30, ""}, {16 * m, 39, ""}} {
		e.Eval(ctx, reading(e.reg, "bin-1", s.t, devices.TempC, s.v))
	}
	got := sink.take()
	if len(got) != 2 || !strings.HasPrefix(got[1], "resolve hot bin-1 warning fired=0s resolved=16m0s") {
		t.Fatalf("calls %v", got)
	}
}

func TestSeverityEscalation(t *testing.T) {
	e, sink := newEngine(t, engineOpts{})
	ctx := context.Background()
	for i, v := range []float64{85, 95, 85, 99, 50} {
		e.Eval(ctx, reading(e.reg, "bin-1", time.Duration(i)*time.Minute, devices.FillPct, v))
	}
	got := sink.take()
	want := []string{
		"fire bin_full bin-1 warning fired=0s | fill_pct 85 ≥ 80 (warning)",
		"fire bin_full bin-1 critical fired=1m0s | fill_pct 95 ≥ 90 (critical)",
		"resolve bin_full bin-1 critical fired=1m0s resolved=4m0s | fill_pct 50 < 60 (cleared)",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestStaleReadingsIgnored(t *testing.T) {
	e, sink := newEngine(t, engineOpts{})
	ctx := context.Background()
	e.Eval(ctx, reading(e.reg, "bin-1", 10*time.Minute, devices.FillPct, 95))
	// Out of order (older) and duplicate (same time) readings: ignored, so
	// the alert neither clears nor flaps.
	e.Eval(ctx, reading(e.reg, "bin-1", 5*time.Minute, devices.FillPct, 10))
	e.Eval(ctx, reading(e.reg, "bin-1", 10*time.Minute, devices.FillPct, 10))
	e.Eval(ctx, reading(e.reg, "bin-1", 10*time.Minute, devices.FillPct, 95))
	if got := sink.take(); len(got) != 1 {
		t.Fatalf("calls %v", got)
	}
	if n := testutil.ToFloat64(e.met.stale); n != 3 {
		t.Errorf("stale = %v, want 3", n)
	}
	if n := testutil.ToFloat64(e.met.evals); n != 1 {
		t.Errorf("evaluations = %v, want 1", n)
	}
	// Other devices keep their own clocks.
	e.Eval(ctx, reading(e.reg, "bin-2", time.Minute, devices.FillPct, 81))
	if got := sink.take(); len(got) != 1 {
		t.Fatalf("calls %v", got)
	}
	// Status messages are not evaluated.
	e.Eval(ctx, &devices.Message{Type: devices.Status, DeviceID: "bin-1", Kind: devices.KindBin, TS: t0.Add(time.Hour).UnixMilli()})
	if n := testutil.ToFloat64(e.met.evals); n != 2 {
		t.Errorf("evaluations = %v, want 2", n)
	}
}

func TestKindMismatchIgnored(t *testing.T) {
	e, sink := newEngine(t, engineOpts{})
	m := reading(e.reg, "bin-1", 0, devices.FillPct, 95)
	m.Kind, m.Device = devices.KindWater, nil
	e.Eval(context.Background(), m)
	if got := sink.take(); len(got) != 0 {
		t.Fatalf("calls %v", got)
	}
	if n := testutil.ToFloat64(e.met.ignored); n != 1 {
		t.Errorf("ignored = %v", n)
	}
}

func TestEventFires(t *testing.T) {
	e, sink := newEngine(t, engineOpts{})
	ctx := context.Background()
	m := time.Minute
	e.Eval(ctx, reading(e.reg, "bin-1", 0, devices.TempC, 20))
	// An event at the same device time as a reading is still evaluated.
	e.Eval(ctx, event(e.reg, "bin-1", 0, "fire", ""))
	e.Eval(ctx, event(e.reg, "bin-1", 0, "fire", "")) // duplicate
	e.Eval(ctx, event(e.reg, "bin-1", m, "lid_open", ""))
	e.Eval(ctx, reading(e.reg, "bin-1", 2*m, devices.TempC, 50))
	e.Eval(ctx, reading(e.reg, "bin-1", 3*m, devices.TempC, 40))
	// A reading that shares the newest time is not.
	e.Eval(ctx, reading(e.reg, "bin-1", 3*m, devices.TempC, 90))
	got := sink.take()
	want := []string{
		"fire bin_fire bin-1 critical fired=0s | event fire (critical)",
		"resolve bin_fire bin-1 critical fired=0s resolved=3m0s | temp_c 40 < 45 (cleared)",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestUnknownDevice(t *testing.T) {
	e, sink := newEngine(t, engineOpts{})
	ctx := context.Background()
	m := &devices.Message{Type: devices.Telemetry, DeviceID: "stray-1", Kind: devices.KindBin, TS: t0.UnixMilli()}
	m.Values.Set(devices.FillPct, 95)
	e.Eval(ctx, m)
	got := sink.take()
	if len(got) != 1 || sink.alerts[0].Device != nil || sink.alerts[0].DeviceID != "stray-1" {
		t.Fatalf("calls %v", got)
	}
	// Silent for the default 30m (it has no report interval).
	e.Tick(ctx, t0.Add(30*time.Minute+time.Millisecond))
	if got := sink.take(); !slices.ContainsFunc(got, func(c string) bool {
		return strings.HasPrefix(c, "fire device_offline stray-1 warning fired=30m0s | no reading for 30m since")
	}) {
		t.Fatalf("calls %v", got)
	}
}

func TestNoData(t *testing.T) {
	// The engine starts at t0 + 1h; bin-1 reports every 10m (timeout 30m),
	// bin-noiv has no interval (default_after 30m), rural-1 reports hourly
	// (3h). Only bins are fed; the others were never seen.
	start := t0.Add(time.Hour)
	e, sink := newEngine(t, engineOpts{start: start})
	ctx := context.Background()
	m := time.Minute
	e.Eval(ctx, reading(e.reg, "bin-1", 50*m, devices.FillPct, 10))
	e.Eval(ctx, reading(e.reg, "bin-noiv", 55*m, devices.FillPct, 10))

	e.Tick(ctx, t0.Add(80*m)) // bin-1 silent exactly 30m: not longer
	if got := sink.take(); len(got) != 0 {
		t.Fatalf("calls %v", got)
	}
	e.Tick(ctx, t0.Add(80*m+time.Millisecond))
	want := []string{"fire device_offline bin-1 warning fired=1h20m0s | no reading for 30m (3 × report_interval 10m) since 2026-11-28T08:50:00Z (warning)"}
	if got := sink.take(); !slices.Equal(got, want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	e.Tick(ctx, t0.Add(84*m)) // firing already; the others not silent long enough
	if got := sink.take(); len(got) != 0 {
		t.Fatalf("calls %v", got)
	}
	e.Tick(ctx, t0.Add(85*m+time.Millisecond)) // bin-noiv: 55m + the default 30m
	got := sink.take()
	if len(got) != 1 || !strings.HasPrefix(got[0], "fire device_offline bin-noiv warning fired=1h25m0s | no reading for 30m since 2026-11-28T08:55:00Z") {
		t.Fatalf("calls %v", got)
	}
	e.Tick(ctx, t0.Add(91*m)) // the others never seen: counted from start (1h)
	got = sink.take()
	want = []string{
		"fire device_offline bin-2 warning fired=1h30m0s | no reading for 30m (3 × report_interval 10m) since sanitel started (warning)",
		"fire device_offline toilet-c1 warning fired=1h30m0s | no reading for 30m (3 × report_interval 10m) since sanitel started (warning)",
	}
	if len(got) != 8 || !slices.Contains(got, want[0]) || !slices.Contains(got, want[1]) {
		t.Fatalf("calls:\n%s", strings.Join(got, "\n"))
	}
	e.Tick(ctx, t0.Add(4*time.Hour+time.Millisecond)) // rural-1: 1h start + 3 × 1h
	if got := sink.take(); len(got) != 1 || !strings.HasPrefix(got[0], "fire device_offline rural-1 warning fired=4h0m0s") {
		t.Fatalf("calls %v", got)
	}
	// The next reading resolves it, at its device time.
	e.Eval(ctx, reading(e.reg, "bin-1", 3*time.Hour, devices.FillPct, 10))
	got = sink.take()
	if len(got) != 1 || got[0] != "resolve device_offline bin-1 warning fired=1h20m0s resolved=3h0m0s | reporting again after 2h10m silent (cleared)" {
		t.Fatalf("calls %v", got)
	}
	if n := testutil.ToFloat64(e.met.firing[ruleIndex(t, e, "device_offline")]); n != 10 {
		t.Errorf("firing gauge = %v, want 10", n)
	}
}

func TestNoDataDefaultOfflineAfter(t *testing.T) {
	rules, err := ParseRules([]byte(`
include_defaults: false
rules:
  - name: silent
    type: no_data
    kind: bin
    intervals: 2
    severity: critical
    title: 离线
    requirement: 检查
    deadline: {critical: 1h}
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	reg := testRegistry(t)
	e, err := New(Options{Rules: rules, Registry: reg, Sink: sink, Clock: func() time.Time { return t0 }, DefaultOfflineAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e.Tick(ctx, t0.Add(21*time.Minute)) // bins with 10m intervals: 2 × 10m
	if got := sink.take(); len(got) != 2 {
		t.Fatalf("calls %v", got)
	}
	e.Tick(ctx, t0.Add(time.Hour))
	if got := sink.take(); len(got) != 0 {
		t.Fatalf("calls %v", got)
	}
	e.Tick(ctx, t0.Add(time.Hour+time.Millisecond))
	if got := sink.take(); len(got) != 1 || !strings.HasPrefix(got[0], "fire silent bin-noiv critical fired=1h0m0s") {
		t.Fatalf("calls %v", got)
	}
}

// TestNoDataPlainDuration: a no_data rule with default_after and no
// intervals fires after that duration for every device, whatever its
// report interval.
func TestNoDataPlainDuration(t *testing.T) {
	rules, err := ParseRules([]byte(`
include_defaults: false
rules:
  - name: quiet
    type: no_data
    kind: bin
    default_after: 45m
    severity: warning
    title: 久未上报
    requirement: 检查
    deadline: 24h
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	e, err := New(Options{Rules: rules, Registry: testRegistry(t), Sink: sink, Clock: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e.Tick(ctx, t0.Add(45*time.Minute)) // bin-1 reports every 10m: 3 × 10m would have fired
	if got := sink.take(); len(got) != 0 {
		t.Fatalf("calls %v", got)
	}
	e.Tick(ctx, t0.Add(45*time.Minute+time.Millisecond))
	got := sink.take()
	if len(got) != 3 || !slices.ContainsFunc(got, func(c string) bool {
		return strings.HasPrefix(c, "fire quiet bin-1 warning fired=45m0s | no reading for 45m since sanitel started")
	}) {
		t.Fatalf("calls:\n%s", strings.Join(got, "\n"))
	}
}

// TestNoDataGapInBacklog: a silence found between two readings of a
// backlog fires and resolves, as Tick would have live.
func TestNoDataGapInBacklog(t *testing.T) {
	e, sink := newEngine(t, engineOpts{})
	ctx := context.Background()
	e.Eval(ctx, reading(e.reg, "bin-1", 0, devices.FillPct, 10))
	e.Eval(ctx, reading(e.reg, "bin-1", 30*time.Minute, devices.FillPct, 10)) // exactly 30m: fine
	e.Eval(ctx, reading(e.reg, "bin-1", 61*time.Minute, devices.FillPct, 10))
	got := sink.take()
	want := []string{
		"fire device_offline bin-1 warning fired=1h0m0s | no reading for 30m (3 × report_interval 10m) since 2026-11-28T08:30:00Z (warning)",
		"resolve device_offline bin-1 warning fired=1h0m0s resolved=1h1m0s | reporting again after 31m silent (cleared)",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSinkErrorsRetried(t *testing.T) {
	e, sink := newEngine(t, engineOpts{})
	ctx := context.Background()
	down := true
	sink.fail = func(string, Alert) bool { return down }

	e.Eval(ctx, reading(e.reg, "bin-1", 0, devices.FillPct, 85))
	if n := testutil.ToFloat64(e.met.sinkErrors); n != 1 {
		t.Fatalf("sink errors = %v", n)
	}
	if f := e.Firing(); len(f) != 1 || f[0].Rule != "bin_full" {
		t.Fatalf("firing %v", f)
	}
	// Still down: the next evaluation retries, and fails again.
	e.Eval(ctx, reading(e.reg, "bin-1", time.Minute, devices.FillPct, 85))
	if n := testutil.ToFloat64(e.met.sinkErrors); n != 2 {
		t.Fatalf("sink errors = %v", n)
	}
	// Back: a reading that changes nothing still delivers the owed Fire,
	// with the time of the reading that fired.
	down = false
	e.Eval(ctx, reading(e.reg, "bin-1", 2*time.Minute, devices.FillPct, 85))
	if got := sink.take(); len(got) != 1 || !strings.HasPrefix(got[0], "fire bin_full bin-1 warning fired=0s") {
		t.Fatalf("calls %v", got)
	}
	e.Eval(ctx, reading(e.reg, "bin-1", 3*time.Minute, devices.FillPct, 85))
	if got := sink.take(); len(got) != 0 {
		t.Fatalf("delivered twice: %v", got)
	}

	// A Fire that failed and an alert that cleared before the retry: the
	// sink still hears both, in order — on Tick, since the device went quiet.
	down = true
	e.Eval(ctx, reading(e.reg, "bin-2", 0, devices.FillPct, 95))
	e.Eval(ctx, reading(e.reg, "bin-2", time.Minute, devices.FillPct, 10))
	down = false
	e.Tick(ctx, t0.Add(2*time.Minute))
	got := sink.take()
	want := []string{
		"fire bin_full bin-2 critical fired=0s | fill_pct 95 ≥ 90 (critical)",
		"resolve bin_full bin-2 critical fired=0s resolved=1m0s | fill_pct 10 < 60 (cleared)",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(e.owed) != 0 || len(e.info) != 1 {
		t.Errorf("owed %d, info %d", len(e.owed), len(e.info))
	}

	// A failed Resolve is retried too, and a Fire never overtakes it.
	sink.fail = func(call string, _ Alert) bool { return call == "resolve" && down }
	down = true
	e.Eval(ctx, reading(e.reg, "bin-1", 4*time.Minute, devices.FillPct, 10))
	down = false
	e.Tick(ctx, t0.Add(5*time.Minute))
	if got := sink.take(); len(got) != 1 || !strings.HasPrefix(got[0], "resolve bin_full bin-1 warning") {
		t.Fatalf("calls %v", got)
	}
	if n := testutil.ToFloat64(e.met.sinkErrors); n != 5 {
		t.Errorf("sink errors = %v, want 5", n)
	}
}

// TestReplayAfterCrash: state saved mid-stream, then a restart that
// replays the backlog from an earlier checkpoint makes exactly the calls
// an uninterrupted run makes.
func TestReplayAfterCrash(t *testing.T) {
	reg := testRegistry(t)
	msgs := recordedSequence(reg, 3000)
	ctx := context.Background()

	live, liveSink := newEngine(t, engineOpts{reg: reg})
	for _, m := range msgs {
		live.Eval(ctx, m)
	}
	want := liveSink.take()
	if len(want) < 50 {
		t.Fatalf("the sequence fires too little to test much: %d calls", len(want))
	}

	for _, cut := range []int{1, 700, 1500, 2999} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			first, sink1 := newEngine(t, engineOpts{reg: reg})
			for _, m := range msgs[:cut] {
				first.Eval(ctx, m)
			}
			path := t.TempDir() + "/state.bin"
			if err := first.SaveFile(path); err != nil {
				t.Fatal(err)
			}
			before := len(sink1.take())
			// The crash came later: some readings after the save were
			// evaluated (and their calls made) but the state was lost.
			after := min(cut+300, len(msgs))
			for _, m := range msgs[cut:after] {
				first.Eval(ctx, m)
			}
			lost := sink1.take()
			second, sink2 := newEngine(t, engineOpts{reg: reg})
			if err := second.LoadFile(path); err != nil {
				t.Fatal(err)
			}
			// The spool checkpoint matches the save: the backlog is replayed
			// from there, and part of it twice for good measure.
			for _, m := range msgs[cut:] {
				second.Eval(ctx, m)
			}
			for _, m := range msgs[cut:after] {
				second.Eval(ctx, m)
			}
			replayed := sink2.take()
			// The calls made after the save are made again (at least once),
			// the same; with those made before, they are the live run's.
			if !slices.Equal(replayed[:min(len(lost), len(replayed))], lost) {
				t.Fatalf("replay differs from the calls made before the crash: %s", firstDiff(replayed, lost))
			}
			if got := want[before:]; !slices.Equal(replayed, got) {
				t.Fatalf("replay made %d calls, live %d\nfirst difference: %s", len(replayed), len(got), firstDiff(replayed, got))
			}
		})
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("#%d\n got %s\nwant %s", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("length %d vs %d", len(a), len(b))
}

// TestLiveAndBacklogSameCalls: a sequence evaluated live, with Tick
// running on the clock, and the same sequence evaluated as a backlog with
// one Tick at the end give the same calls.
func TestLiveAndBacklogSameCalls(t *testing.T) {
	reg := testRegistry(t)
	msgs := recordedSequence(reg, 3000)
	ctx := context.Background()
	end := time.UnixMilli(msgs[len(msgs)-1].TS).Add(time.Second)

	live, liveSink := newEngine(t, engineOpts{reg: reg})
	next := t0
	for _, m := range msgs {
		for now := m.Time(); !next.After(now); next = next.Add(15 * time.Second) {
			live.Tick(ctx, next)
		}
		live.Eval(ctx, m)
	}
	live.Tick(ctx, end)

	backlog, backlogSink := newEngine(t, engineOpts{reg: reg})
	for _, m := range msgs {
		backlog.Eval(ctx, m)
	}
	backlog.Tick(ctx, end)

	got, want := backlogSink.take(), liveSink.take()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("backlog made %d calls, live %d\nfirst difference: %s", len(got), len(want), firstDiff(got, want))
	}
	offline := 0
	for _, c := range want {
		if strings.Contains(c, "device_offline") {
			offline++
		}
	}
	if offline == 0 {
		t.Error("the sequence has no silences")
	}
}

// recordedSequence is a deterministic stream of n readings and events from
// the test registry, in spool order: values wander across the thresholds,
// some devices go quiet for a while, some readings come twice or late.
func recordedSequence(reg *devices.Registry, n int) []*devices.Message {
	var out []*devices.Message
	x := uint64(12345)
	rnd := func(k int) int { // xorshift, for a fixed sequence
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return int(x % uint64(k))
	}
	ids := []string{"bin-1", "bin-2", "toilet-c1", "toilet-c3", "toilet-nc", "rural-1", "water-c", "water-s", "bin-noiv"}
	clock := time.Duration(0)
	last := map[string]time.Duration{}
	for len(out) < n {
		clock += time.Duration(10+rnd(50)) * time.Second
		id := ids[rnd(len(ids))]
		if id == "bin-2" && clock > 2*time.Hour && clock < 3*time.Hour {
			continue // a silence
		}
		at := clock
		if rnd(20) == 0 && last[id] > 0 {
			at = last[id] - time.Duration(rnd(60))*time.Second // late or duplicate
		}
		last[id] = max(last[id], at)
		d, _ := reg.Lookup(id)
		if d.Kind == devices.KindBin && rnd(60) == 0 {
			out = append(out, event(reg, id, at, "fire", "smoke"))
			continue
		}
		fv := []any{}
		wave := func(lo, hi float64) float64 { return lo + (hi-lo)*float64(rnd(1000))/1000 }
		switch d.Kind {
		case devices.KindBin:
			fv = []any{devices.FillPct, wave(40, 100), devices.TempC, wave(20, 70), devices.TiltDeg, wave(0, 60), devices.BatteryPct, wave(10, 40)}
		case devices.KindToilet:
			fv = []any{devices.NH3MgM3, wave(0, 4), devices.H2SMgM3, wave(0, 0.02), devices.FlowLpm, wave(0, 1)}
		case devices.KindRuralToilet:
			fv = []any{devices.TankLevelPct, wave(20, 95), devices.BatteryPct, wave(15, 35)}
		case devices.KindWater:
			fv = []any{devices.PH, wave(6, 9), devices.TurbidityNTU, wave(0, 4), devices.ChlorineMgL, wave(0, 2.5)}
		}
		out = append(out, reading(reg, id, at, fv...))
	}
	return out
}

func TestNewRejects(t *testing.T) {
	reg := testRegistry(t)
	sink := &recSink{}
	bad := Rule{Name: "x", Type: TypeThreshold, Kinds: []devices.Kind{devices.KindBin}, Field: devices.PH, Op: OpGT,
		Thresholds: map[string]Levels{"": {Warning: &Bound{Lo: 1}}}, Title: "t", Requirement: "r", Deadline: Deadlines{Warning: time.Hour}}
	for name, opts := range map[string]Options{
		"no registry": {Sink: sink},
		"no sink":     {Registry: reg},
		"bad rule":    {Registry: reg, Sink: sink, Rules: []Rule{bad}},
		"twice":       {Registry: reg, Sink: sink, Rules: []Rule{goodRule(), goodRule()}},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := New(Options{Registry: reg, Sink: sink, Rules: []Rule{goodRule()}}); err != nil {
		t.Errorf("good rule: %v", err)
	}
	// Metrics go on the Registerer given: a second engine on the same one
	// is refused.
	pr := prometheus.NewRegistry()
	if _, err := New(Options{Registry: reg, Sink: sink, Registerer: pr}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Registry: reg, Sink: sink, Registerer: pr}); err == nil {
		t.Error("registered the metrics twice")
	}
}

func goodRule() Rule {
	return Rule{Name: "x", Type: TypeThreshold, Kinds: []devices.Kind{devices.KindBin}, Field: devices.FillPct, Op: OpGT,
		Thresholds: map[string]Levels{"": {Warning: &Bound{Lo: 1}}}, Title: "t", Requirement: "r", Deadline: Deadlines{Warning: time.Hour}}
}

func TestMetricsExposed(t *testing.T) {
	pr := prometheus.NewRegistry()
	e, _ := newEngine(t, engineOpts{prom: pr})
	e.Eval(context.Background(), reading(e.reg, "bin-1", 0, devices.FillPct, 95))
	n, err := testutil.GatherAndCount(pr, "sanitel_alerts_firing", "sanitel_alert_evaluations_total",
		"sanitel_alert_transitions_total", "sanitel_alert_sink_errors_total")
	if err != nil {
		t.Fatal(err)
	}
	rules, _ := LoadRules("")
	if want := len(rules) + 1 + 3*len(rules) + 1; n != want {
		t.Errorf("%d series, want %d", n, want)
	}
	if err := testutil.GatherAndCompare(pr, strings.NewReader(`
# HELP sanitel_alert_evaluations_total Messages (telemetry and events) evaluated against the alert rules.
# TYPE sanitel_alert_evaluations_total counter
sanitel_alert_evaluations_total 1
`), "sanitel_alert_evaluations_total"); err != nil {
		t.Error(err)
	}
	if v := testutil.ToFloat64(e.met.firingVec.WithLabelValues("bin_full")); v != 1 {
		t.Errorf("sanitel_alerts_firing{rule=bin_full} = %v", v)
	}
}

func TestConcurrentUse(t *testing.T) {
	e, _ := newEngine(t, engineOpts{})
	msgs := recordedSequence(e.reg, 2000)
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			e.Tick(ctx, t0.Add(time.Duration(i)*10*time.Minute))
			e.Firing()
			var b strings.Builder
			if err := e.Save(&b); err != nil {
				t.Error(err)
			}
		}
	}()
	for _, m := range msgs {
		e.Eval(ctx, m)
	}
	<-done
}
