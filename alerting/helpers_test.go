package alerting

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sanitel/sanitel/devices"
)

// t0 is the device time the tests start at.
var t0 = time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC)

// testDevices is a small registry: every kind, toilets of each class and
// none, water of each supply and none.
func testDevices() []devices.Device {
	iv := 10 * time.Minute
	return []devices.Device{
		{ID: "bin-1", Kind: devices.KindBin, Street: "东街", OrgUnit: "环卫所", ReportInterval: iv},
		{ID: "bin-2", Kind: devices.KindBin, ReportInterval: iv},
		{ID: "toilet-c1", Kind: devices.KindToilet, ToiletClass: 1, ReportInterval: iv},
		{ID: "toilet-c2", Kind: devices.KindToilet, ToiletClass: 2, ReportInterval: iv},
		{ID: "toilet-c3", Kind: devices.KindToilet, ToiletClass: 3, ReportInterval: iv},
		{ID: "toilet-nc", Kind: devices.KindToilet, ReportInterval: iv},
		{ID: "rural-1", Kind: devices.KindRuralToilet, ReportInterval: time.Hour},
		{ID: "water-c", Kind: devices.KindWater, Supply: devices.SupplyCentralized, ReportInterval: iv},
		{ID: "water-s", Kind: devices.KindWater, Supply: devices.SupplySmall, ReportInterval: iv},
		{ID: "water-n", Kind: devices.KindWater, ReportInterval: iv},
		{ID: "bin-noiv", Kind: devices.KindBin}, // no report interval
	}
}

func testRegistry(t testing.TB) *devices.Registry {
	t.Helper()
	reg, err := devices.NewRegistry(testDevices())
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// recSink records sink calls as one line each; fail, when set, decides
// which calls fail.
type recSink struct {
	mu    sync.Mutex
	calls []string
	fail  func(call string, a Alert) bool
	// alerts are the alerts of the calls that succeeded.
	alerts []Alert
}

var errSinkDown = errors.New("sink down")

func (s *recSink) record(call string, a Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil && s.fail(call, a) {
		return errSinkDown
	}
	line := fmt.Sprintf("%s %s %s %s fired=%s", call, a.Rule, a.DeviceID, a.Severity, a.FiredAt.Sub(t0))
	if call == "resolve" {
		line += fmt.Sprintf(" resolved=%s", a.ResolvedAt.Sub(t0))
	}
	s.calls = append(s.calls, line+" | "+a.Detail)
	s.alerts = append(s.alerts, a)
	return nil
}

func (s *recSink) Fire(_ context.Context, a Alert) error    { return s.record("fire", a) }
func (s *recSink) Resolve(_ context.Context, a Alert) error { return s.record("resolve", a) }

func (s *recSink) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

type engineOpts struct {
	rules []Rule
	start time.Time
	reg   *devices.Registry
	prom  *prometheus.Registry
}

// newEngine returns an engine with the default rules (unless o.rules),
// started at t0, and its sink.
func newEngine(t testing.TB, o engineOpts) (*Engine, *recSink) {
	t.Helper()
	if o.rules == nil {
		var err error
		if o.rules, err = LoadRules(""); err != nil {
			t.Fatal(err)
		}
	}
	if o.start.IsZero() {
		o.start = t0
	}
	if o.reg == nil {
		o.reg = testRegistry(t)
	}
	if o.prom == nil {
		o.prom = prometheus.NewRegistry()
	}
	sink := &recSink{}
	e, err := New(Options{
		Rules: o.rules, Registry: o.reg, Sink: sink, Registerer: o.prom,
		Clock: func() time.Time { return o.start },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e, sink
}

// reading builds a telemetry message of device id at t0+at.
func reading(reg *devices.Registry, id string, at time.Duration, fv ...any) *devices.Message {
	m := &devices.Message{Type: devices.Telemetry, DeviceID: id, TS: t0.Add(at).UnixMilli()}
	if d, ok := reg.Lookup(id); ok {
		m.Device, m.Kind = d, d.Kind
	}
	for i := 0; i+1 < len(fv); i += 2 {
		m.Values.Set(fv[i].(devices.Field), toFloat(fv[i+1]))
	}
	return m
}

func toFloat(v any) float64 {
	switch v := v.(type) {
	case int:
		return float64(v)
	case float64:
		return v
	}
	panic(fmt.Sprintf("not a number: %v", v))
}

// event builds an event message of device id at t0+at.
func event(reg *devices.Registry, id string, at time.Duration, typ, detail string) *devices.Message {
	m := reading(reg, id, at)
	m.Type, m.EventType, m.EventDetail = devices.Event, typ, detail
	return m
}
