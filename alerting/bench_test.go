package alerting

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sanitel/sanitel/devices"
)

// benchFleet returns a registry of n devices of every kind (toilets of
// every class, water of every supply) and one ordinary reading of each,
// none crossing a threshold.
func benchFleet(tb testing.TB, n int) (*devices.Registry, []*devices.Message) {
	tb.Helper()
	devs := make([]devices.Device, n)
	for i := range devs {
		devs[i] = devices.Device{ID: fmt.Sprintf("dev-%06d", i), Kind: devices.Kinds[i%4], ReportInterval: 10 * time.Minute}
		switch devs[i].Kind {
		case devices.KindToilet:
			devs[i].ToiletClass = uint8(i / 4 % 4)
		case devices.KindWater:
			devs[i].Supply = devices.Supply(i / 4 % 3)
		}
	}
	reg, err := devices.NewRegistry(devs)
	if err != nil {
		tb.Fatal(err)
	}
	msgs := make([]*devices.Message, n)
	for i := range devs {
		var fv []any
		switch devs[i].Kind {
		case devices.KindBin:
			fv = []any{devices.FillPct, 30.0, devices.TempC, 20.0, devices.TiltDeg, 2.0, devices.BatteryPct, 80.0}
		case devices.KindToilet:
			fv = []any{devices.NH3MgM3, 0.1, devices.H2SMgM3, 0.001, devices.FlowLpm, 0.0, devices.Visitors, 3.0, devices.TempC, 20.0, devices.HumidityPct, 60.0}
		case devices.KindRuralToilet:
			fv = []any{devices.TankLevelPct, 40.0, devices.FlowLpm, 0.0, devices.NH3MgM3, 0.1, devices.BatteryPct, 80.0}
		case devices.KindWater:
			fv = []any{devices.PH, 7.2, devices.TurbidityNTU, 0.3, devices.ChlorineMgL, 0.3, devices.ConductivityUScm, 300.0, devices.TempC, 15.0}
		}
		msgs[i] = reading(reg, devs[i].ID, time.Duration(i)*time.Millisecond, fv...)
	}
	return reg, msgs
}

// BenchmarkEval evaluates ordinary readings (nothing transitions) of a
// 10k-device mixed fleet, each device reporting every 10 minutes.
func BenchmarkEval(b *testing.B) {
	reg, msgs := benchFleet(b, 10000)
	e, _ := newEngine(b, engineOpts{reg: reg})
	ctx := context.Background()
	step := (10 * time.Minute).Milliseconds()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		m := msgs[i]
		m.TS += step
		e.Eval(ctx, m)
		if i++; i == len(msgs) {
			i = 0
		}
	}
}

// BenchmarkTick sweeps the no_data rules of a 10k-device fleet.
func BenchmarkTick(b *testing.B) {
	reg, msgs := benchFleet(b, 10000)
	e, _ := newEngine(b, engineOpts{reg: reg})
	ctx := context.Background()
	for _, m := range msgs {
		e.Eval(ctx, m)
	}
	now := t0.Add(time.Minute)
	b.ReportAllocs()
	for b.Loop() {
		e.Tick(ctx, now)
	}
}

// TestEvalDoesNotAllocate: a reading that changes no state allocates nothing.
func TestEvalDoesNotAllocate(t *testing.T) {
	reg, msgs := benchFleet(t, 100)
	e, _ := newEngine(t, engineOpts{reg: reg})
	ctx := context.Background()
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		m := msgs[i%len(msgs)]
		m.TS += 60000
		e.Eval(ctx, m)
		i++
	})
	if allocs != 0 {
		t.Errorf("%v allocations per reading", allocs)
	}
}
