package alerting

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sanitel/sanitel/devices"
)

// TestSaveLoadKeepsTimers: a restart in the middle of a `for` keeps the
// pending timer; firing alerts, hysteresis timers and device clocks survive.
func TestSaveLoadKeepsTimers(t *testing.T) {
	ctx := context.Background()
	m := time.Minute
	e, _ := newEngine(t, engineOpts{})
	e.Eval(ctx, reading(e.reg, "bin-1", 0, devices.TiltDeg, 50, devices.FillPct, 95))
	e.Eval(ctx, reading(e.reg, "toilet-c2", 0, devices.H2SMgM3, 0.05))
	e.Eval(ctx, reading(e.reg, "toilet-c2", 10*m, devices.H2SMgM3, 0.05))  // fires
	e.Eval(ctx, reading(e.reg, "toilet-c2", 12*m, devices.H2SMgM3, 0.001)) // clear timer from 12m
	stray := &devices.Message{Type: devices.Telemetry, DeviceID: "stray-9", Kind: devices.KindWater, TS: t0.UnixMilli()}
	stray.Values.Set(devices.PH, 4)
	e.Eval(ctx, stray)

	path := filepath.Join(t.TempDir(), "state.bin")
	if err := e.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	r, sink := newEngine(t, engineOpts{reg: e.reg})
	if err := r.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	if got, want := r.Firing(), e.Firing(); !reflect.DeepEqual(got, want) || len(got) != 2 {
		t.Fatalf("firing after load:\n%v\nwant\n%v", got, want)
	}
	if n := testutil.ToFloat64(r.met.firingVec.WithLabelValues("bin_full")); n != 1 {
		t.Errorf("firing gauge %v", n)
	}
	// A reading from before the save is a replay: ignored.
	r.Eval(ctx, reading(r.reg, "bin-1", 0, devices.FillPct, 10))
	// The tilt has been pending since 0: it fires at 5m, not 5m after the restart.
	r.Eval(ctx, reading(r.reg, "bin-1", 5*m, devices.TiltDeg, 50))
	// The H2S clear timer started at 12m: it clears at 22m.
	r.Eval(ctx, reading(r.reg, "toilet-c2", 21*m, devices.H2SMgM3, 0.001))
	r.Eval(ctx, reading(r.reg, "toilet-c2", 22*m, devices.H2SMgM3, 0.001))
	// The unknown device's pending pH keeps its timer too.
	stray.TS = t0.Add(15 * m).UnixMilli()
	r.Eval(ctx, stray)
	got := sink.take()
	want := []string{
		"fire bin_tipped bin-1 warning fired=5m0s | tilt_deg 50 ≥ 45 (warning)",
		"resolve toilet_h2s toilet-c2 warning fired=10m0s resolved=22m0s | h2s_mgm3 0.001 ≤ 0.01 (cleared)",
		"fire water_ph stray-9 warning fired=15m0s | ph 4 outside 6.5–8.5 (warning)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadOwedCalls(t *testing.T) {
	ctx := context.Background()
	e, sink := newEngine(t, engineOpts{})
	sink.fail = func(string, Alert) bool { return true }
	e.Eval(ctx, reading(e.reg, "bin-1", 0, devices.FillPct, 95))
	var buf bytes.Buffer
	if err := e.Save(&buf); err != nil {
		t.Fatal(err)
	}
	r, sink2 := newEngine(t, engineOpts{reg: e.reg})
	if err := r.Load(&buf); err != nil {
		t.Fatal(err)
	}
	// The Fire the sink never acknowledged is made after the restart.
	r.Tick(ctx, t0.Add(time.Minute))
	if got := sink2.take(); len(got) != 1 || !strings.HasPrefix(got[0], "fire bin_full bin-1 critical fired=0s") {
		t.Fatalf("calls %v", got)
	}
}

func TestLoadWithChangedRules(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t, engineOpts{})
	e.Eval(ctx, reading(e.reg, "bin-1", 0, devices.FillPct, 95, devices.TiltDeg, 50))
	var buf bytes.Buffer
	if err := e.Save(&buf); err != nil {
		t.Fatal(err)
	}
	// bin_full is disabled now: its state is dropped; bin_tipped keeps its.
	rules, err := ParseRules([]byte("rules:\n  - name: bin_full\n    enabled: false\n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	r, sink := newEngine(t, engineOpts{reg: e.reg, rules: rules})
	if err := r.Load(&buf); err != nil {
		t.Fatal(err)
	}
	if f := r.Firing(); len(f) != 0 {
		t.Fatalf("firing %v", f)
	}
	r.Eval(ctx, reading(r.reg, "bin-1", 5*time.Minute, devices.TiltDeg, 50))
	if got := sink.take(); len(got) != 1 || !strings.HasPrefix(got[0], "fire bin_tipped bin-1 warning fired=5m0s") {
		t.Fatalf("calls %v", got)
	}
}

func TestLoadBadSnapshot(t *testing.T) {
	ctx := context.Background()
	e, _ := newEngine(t, engineOpts{})
	e.Eval(ctx, reading(e.reg, "bin-1", 0, devices.FillPct, 95))
	var buf bytes.Buffer
	if err := e.Save(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	for name, data := range map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("NOTALERT"), good[8:]...),
		"truncated": good[:len(good)-3],
		"flipped":   flipped,
	} {
		r, _ := newEngine(t, engineOpts{reg: e.reg})
		r.Eval(ctx, reading(r.reg, "bin-2", 0, devices.FillPct, 99))
		err := r.Load(bytes.NewReader(data))
		if !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: err = %v", name, err)
		}
		if f := r.Firing(); len(f) != 1 || f[0].DeviceID != "bin-2" {
			t.Errorf("%s: state changed by a failed load: %v", name, f)
		}
	}
	// Every truncation is refused, none panics.
	for n := range len(good) {
		r, _ := newEngine(t, engineOpts{reg: e.reg})
		if err := r.Load(bytes.NewReader(good[:n])); err == nil {
			t.Fatalf("loaded %d of %d bytes", n, len(good))
		}
	}
	if err := e.LoadFile(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestSnapshotSize: a device that was only seen costs a few bytes.
func TestSnapshotSize(t *testing.T) {
	reg, msgs := benchFleet(t, 10000)
	e, _ := newEngine(t, engineOpts{reg: reg})
	for _, m := range msgs[:10000] {
		e.Eval(context.Background(), m)
	}
	var buf bytes.Buffer
	if err := e.Save(&buf); err != nil {
		t.Fatal(err)
	}
	per := float64(buf.Len()) / 10000
	t.Logf("snapshot of 10000 seen devices: %d bytes (%.1f per device)", buf.Len(), per)
	if per > 12 {
		t.Errorf("%.1f bytes per device", per)
	}
	r, _ := newEngine(t, engineOpts{reg: reg})
	if err := r.Load(&buf); err != nil {
		t.Fatal(err)
	}
	for i := range e.ents {
		if e.ents[i].last != r.ents[i].last {
			t.Fatalf("device %d: last %d, want %d", i, r.ents[i].last, e.ents[i].last)
		}
	}
}
