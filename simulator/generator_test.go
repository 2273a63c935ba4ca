package simulator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sanitel/sanitel/devices"
)

var testStart = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func newTestGenerator(t testing.TB, opts Options) *Generator {
	t.Helper()
	if opts.Start.IsZero() {
		opts.Start = testStart
	}
	g, err := NewGenerator(opts)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// streamDigest hashes the first n messages of a stream, everything a
// subscriber or a test can see of them.
func streamDigest(t *testing.T, opts Options, n int) [32]byte {
	g := newTestGenerator(t, opts)
	h := sha256.New()
	var num [8]byte
	for i := range n {
		m, ok := g.Next()
		if !ok {
			t.Fatalf("stream ended after %d messages", i)
		}
		h.Write([]byte(m.Topic))
		h.Write(m.Payload)
		h.Write([]byte(m.Fault + m.Device + m.Type.String()))
		binary.LittleEndian.PutUint64(num[:], uint64(m.SimTime.UnixMilli()))
		h.Write(num[:])
		if m.Retained {
			h.Write([]byte{1})
		}
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func TestStreamDeterministic(t *testing.T) {
	opts := Options{Generate: 500, Seed: 42, Faults: AllFaults()}
	a := streamDigest(t, opts, 10_000)
	if b := streamDigest(t, opts, 10_000); a != b {
		t.Fatal("same seed gave different streams")
	}
	opts.Seed = 43
	if c := streamDigest(t, opts, 10_000); a == c {
		t.Fatal("different seeds gave the same stream")
	}
}

func TestStreamOrderedBySimTime(t *testing.T) {
	g := newTestGenerator(t, Options{Generate: 200, Seed: 1, Faults: AllFaults()})
	var last time.Time
	for range 20_000 {
		m, _ := g.Next()
		if m.SimTime.Before(last) {
			t.Fatalf("message at %s after one at %s", m.SimTime, last)
		}
		last = m.SimTime
	}
}

// Faults must not change what the district does: a device's readings are
// the same with and without faults (where the faulty stream has a clean
// reading at all).
func TestFaultsDoNotChangePhysics(t *testing.T) {
	read := func(f Faults) map[string]string {
		g := newTestGenerator(t, Options{Generate: 100, Seed: 5, Faults: f, Until: testStart.Add(12 * time.Hour)})
		out := map[string]string{}
		for {
			m, ok := g.Next()
			if !ok {
				return out
			}
			if m.Fault == "" && m.Type == devices.Telemetry && strings.HasPrefix(m.Topic, "sanitation/") {
				out[m.Device+m.SimTime.String()] = string(m.Payload)
			}
		}
	}
	clean := read(nil)
	faulty := read(Faults{FaultSpike: 0.05, FaultMalformed: 0.05, FaultDuplicate: 0.05})
	same := 0
	for k, v := range faulty {
		if c, ok := clean[k]; ok {
			if c != v {
				t.Fatalf("reading %s differs:\nclean  %s\nfaulty %s", k, c, v)
			}
			same++
		}
	}
	if same < len(clean)*8/10 {
		t.Fatalf("only %d of %d clean readings found again", same, len(clean))
	}
}

func TestGenerate(t *testing.T) {
	devs := Generate(1000, 7)
	if !reflect.DeepEqual(devs, Generate(1000, 7)) {
		t.Fatal("Generate is not deterministic")
	}
	if reflect.DeepEqual(devs, Generate(1000, 8)) {
		t.Fatal("Generate ignores the seed")
	}
	if _, err := devices.NewRegistry(devs); err != nil {
		t.Fatalf("generated registry is invalid: %v", err)
	}
	byKind := map[devices.Kind]int{}
	streets, villages, units := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, d := range devs {
		byKind[d.Kind]++
		streets[d.Street], villages[d.Village], units[d.OrgUnit] = true, true, true
		if d.ReportInterval != DefaultInterval(d.Kind) {
			t.Errorf("%s: report interval %s", d.ID, d.ReportInterval)
		}
		if math.Abs(d.Lat-DistrictLat) > 0.3 || math.Abs(d.Lon-DistrictLon) > 0.3 {
			t.Errorf("%s: at %v,%v, far from the district", d.ID, d.Lat, d.Lon)
		}
		switch d.Kind {
		case devices.KindBin:
			if !strings.HasPrefix(d.ID, "bin-") || len(d.ID) != len("bin-000123") {
				t.Errorf("bin id %q", d.ID)
			}
		case devices.KindToilet:
			if d.ToiletClass < 1 || d.ToiletClass > 3 {
				t.Errorf("%s: toilet class %d", d.ID, d.ToiletClass)
			}
		case devices.KindRuralToilet:
			if d.DevEUI == "" {
				t.Errorf("%s: rural toilet without dev_eui", d.ID)
			}
		case devices.KindWater:
			if d.Supply == devices.SupplyUnknown {
				t.Errorf("%s: water probe without supply", d.ID)
			}
		}
	}
	if byKind[devices.KindBin] <= byKind[devices.KindRuralToilet] || byKind[devices.KindRuralToilet] == 0 ||
		byKind[devices.KindToilet] == 0 || byKind[devices.KindWater] == 0 {
		t.Errorf("kind mix %v: want every kind, bins the most", byKind)
	}
	if len(streets) < 5 || len(villages) < 20 || len(units) < 8 {
		t.Errorf("%d streets, %d villages, %d org units: want a district", len(streets), len(villages), len(units))
	}
	for n := range 6 {
		if got := len(Generate(n, 1)); got != n {
			t.Errorf("Generate(%d) returned %d devices", n, got)
		}
	}
	four := Generate(4, 1)
	for i, k := range devices.Kinds {
		if four[i].Kind != k {
			t.Errorf("Generate(4): device %d is a %s, want one of each kind", i, four[i].Kind)
		}
	}
}

func TestGeneratedRegistryRoundTrip(t *testing.T) {
	devs := Generate(300, 3)
	for _, ext := range []string{"csv", "yaml"} {
		path := filepath.Join(t.TempDir(), "devices."+ext)
		if err := devices.WriteFile(path, devs); err != nil {
			t.Fatal(err)
		}
		reg, err := devices.LoadRegistry(path)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(reg.All(), devs) {
			t.Errorf("%s: registry read back differs", ext)
		}
		// The same registry loaded from the file gives the same stream.
		a := streamDigest(t, Options{Devices: devs, Seed: 9, Faults: AllFaults()}, 2000)
		b := streamDigest(t, Options{Registry: path, Seed: 9, Faults: AllFaults()}, 2000)
		if a != b {
			t.Errorf("%s: stream from the file differs from the stream from the slice", ext)
		}
	}
}

// devicesOf returns n generated devices of one kind.
func devicesOf(kind devices.Kind, n int, seed int64) []devices.Device {
	var out []devices.Device
	for _, d := range Generate(n*12, seed) {
		if d.Kind == kind && len(out) < n {
			out = append(out, d)
		}
	}
	return out
}

// readings decodes every clean telemetry message until until, per device.
type reading struct {
	t time.Time
	v devices.Values
}

func collect(t *testing.T, opts Options) map[string][]reading {
	t.Helper()
	g := newTestGenerator(t, opts)
	dec, err := devices.NewDecoder(devices.DecoderOptions{Registry: g.Registry(), AcceptWindow: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]reading{}
	var m devices.Message
	for {
		msg, ok := g.Next()
		if !ok {
			return out
		}
		if msg.Type != devices.Telemetry || msg.Fault != "" {
			continue
		}
		if err := dec.Decode(msg.Topic, msg.Payload, msg.SimTime.Add(time.Second), &m); err != nil {
			t.Fatalf("%s %s: %v", msg.Topic, msg.Payload, err)
		}
		out[m.DeviceID] = append(out[m.DeviceID], reading{m.Time(), m.Values})
	}
}

func TestBinsFillAndAreEmptied(t *testing.T) {
	bins := devicesOf(devices.KindBin, 60, 1)
	got := collect(t, Options{Devices: bins, Seed: 1, Until: testStart.Add(3 * 24 * time.Hour)})
	emptiedInDay, over90, busyPeaks := 0, 0, 0
	for id, rs := range got {
		maxFill, emptied := 0.0, false
		for i := 1; i < len(rs); i++ {
			prev, _ := rs[i-1].v.Get(devices.FillPct)
			cur, _ := rs[i].v.Get(devices.FillPct)
			maxFill = max(maxFill, cur)
			if cur > prev+15 {
				t.Errorf("%s: fill jumped from %.1f to %.1f in one report", id, prev, cur)
			}
			if prev-cur > 20 && rs[i].t.Sub(testStart) < 24*time.Hour {
				emptied = true
			}
			if temp, _ := rs[i].v.Get(devices.TempC); temp < -10 || temp > 45 {
				if temp < 60 { // a fire reads ≥ 60
					t.Errorf("%s: implausible temperature %.1f", id, temp)
				}
			}
		}
		if emptied {
			emptiedInDay++
		}
		if maxFill > 90 {
			over90++
		}
		if maxFill > 50 {
			busyPeaks++
		}
	}
	if emptiedInDay < len(got)*9/10 {
		t.Errorf("only %d of %d bins were emptied within the first simulated day", emptiedInDay, len(got))
	}
	if busyPeaks < len(got)/3 {
		t.Errorf("only %d of %d bins ever got half full", busyPeaks, len(got))
	}
	if over90 == 0 {
		t.Errorf("no bin overflowed above 90 in 3 days")
	}
	t.Logf("%d bins: %d emptied on day 1, %d over 50, %d over 90", len(got), emptiedInDay, busyPeaks, over90)
}

func TestBinFillFollowsTheDay(t *testing.T) {
	bins := devicesOf(devices.KindBin, 100, 2)
	got := collect(t, Options{Devices: bins, Seed: 2, Until: testStart.Add(4 * 24 * time.Hour)})
	var gain [24]float64
	var n [24]int
	for _, rs := range got {
		for i := 1; i < len(rs); i++ {
			prev, _ := rs[i-1].v.Get(devices.FillPct)
			cur, _ := rs[i].v.Get(devices.FillPct)
			if cur-prev > -5 && cur < 99 { // not emptied, not full
				h := int(localHour(rs[i].t.UnixMilli()))
				gain[h] += cur - prev
				n[h]++
			}
		}
	}
	avg := func(hs ...int) float64 {
		s, c := 0.0, 0
		for _, h := range hs {
			s, c = s+gain[h], c+n[h]
		}
		return s / float64(c)
	}
	night, lunch, dinner := avg(1, 2, 3, 4), avg(11, 12), avg(18, 19)
	if lunch < 3*night || dinner < 3*night {
		t.Errorf("fill gain per report: night %.2f, lunch %.2f, dinner %.2f: want mealtimes busier", night, lunch, dinner)
	}
}

func TestRuralTanksRiseAndAreEmptied(t *testing.T) {
	tanks := devicesOf(devices.KindRuralToilet, 30, 3)
	got := collect(t, Options{Devices: tanks, Seed: 3, Until: testStart.Add(60 * 24 * time.Hour)})
	emptied := 0
	for id, rs := range got {
		for i := 1; i < len(rs); i++ {
			prev, _ := rs[i-1].v.Get(devices.TankLevelPct)
			cur, _ := rs[i].v.Get(devices.TankLevelPct)
			if prev-cur > 40 {
				emptied++
				if prev < 84 {
					t.Errorf("%s: emptied at %.1f %%, before it was full", id, prev)
				}
				if cur > 15 {
					t.Errorf("%s: emptied only down to %.1f %%", id, cur)
				}
			} else if prev-cur > 2 {
				t.Errorf("%s: level fell from %.1f to %.1f without emptying", id, prev, cur)
			}
		}
		// Over any two days without emptying, the level rises.
		const twoDays = 2 * 48
		for i := 0; i+twoDays < len(rs); i += twoDays {
			a, _ := rs[i].v.Get(devices.TankLevelPct)
			b, _ := rs[i+twoDays].v.Get(devices.TankLevelPct)
			if b < a-40 || a > 98 {
				continue // emptied in between, or full
			}
			if b <= a {
				t.Errorf("%s: level %.1f on %s, %.1f two days later", id, a, rs[i].t, b)
			}
		}
	}
	if emptied < len(got)/2 {
		t.Errorf("only %d emptyings (清掏) of %d tanks in 60 days", emptied, len(got))
	}
}

func TestToiletVisitorsPeakMorningAndEvening(t *testing.T) {
	toilets := devicesOf(devices.KindToilet, 40, 4)
	got := collect(t, Options{Devices: toilets, Seed: 4, Until: testStart.Add(3 * 24 * time.Hour)})
	var sum [24]float64
	var n [24]int
	for _, rs := range got {
		for _, r := range rs {
			v, _ := r.v.Get(devices.Visitors)
			h := int(localHour(r.t.UnixMilli()))
			sum[h] += v
			n[h]++
		}
	}
	avg := func(hs ...int) float64 {
		s, c := 0.0, 0
		for _, h := range hs {
			s, c = s+sum[h], c+n[h]
		}
		return s / float64(c)
	}
	night, morning, evening, afternoon := avg(1, 2, 3, 4), avg(7, 8, 9), avg(18, 19), avg(15)
	t.Logf("visitors per report: night %.2f, morning %.2f, afternoon %.2f, evening %.2f", night, morning, afternoon, evening)
	if morning < 5*night || evening < 5*night || morning < 1.3*afternoon || evening < 1.3*afternoon {
		t.Errorf("visitors per report: night %.2f, morning %.2f, afternoon %.2f, evening %.2f: want morning and evening peaks", night, morning, afternoon, evening)
	}
}

func TestToiletAmmoniaByClass(t *testing.T) {
	toilets := devicesOf(devices.KindToilet, 120, 5)
	got := collect(t, Options{Devices: toilets, Seed: 5, Until: testStart.Add(2 * 24 * time.Hour)})
	reg, _ := devices.NewRegistry(toilets)
	var sum [4]float64
	var n [4]int
	for id, rs := range got {
		d, _ := reg.Lookup(id)
		for _, r := range rs {
			v, _ := r.v.Get(devices.NH3MgM3)
			sum[d.ToiletClass] += v
			n[d.ToiletClass]++
			if h2s, _ := r.v.Get(devices.H2SMgM3); h2s > 0.05 {
				t.Errorf("%s: h2s %.4f is not small", id, h2s)
			}
		}
	}
	c1, c3 := sum[1]/float64(n[1]), sum[3]/float64(n[3])
	if c3 < 3*c1 {
		t.Errorf("mean nh3 class 1 %.3f, class 3 %.3f: want class 3 sites much worse", c1, c3)
	}
}

func TestWaterPlausible(t *testing.T) {
	probes := devicesOf(devices.KindWater, 40, 6)
	got := collect(t, Options{Devices: probes, Seed: 6, Until: testStart.Add(20 * 24 * time.Hour)})
	reg, _ := devices.NewRegistry(probes)
	maxSmallTurbidity, lowChlorine := 0.0, 0
	for id, rs := range got {
		d, _ := reg.Lookup(id)
		for _, r := range rs {
			ph, _ := r.v.Get(devices.PH)
			if ph < 6.6 || ph > 7.8 {
				t.Fatalf("%s: pH %.2f outside a plausible band", id, ph)
			}
			cl, _ := r.v.Get(devices.ChlorineMgL)
			if cl < 0 || cl > 1.2 {
				t.Fatalf("%s: chlorine %.3f", id, cl)
			}
			if cl < 0.05 {
				lowChlorine++
			}
			tu, _ := r.v.Get(devices.TurbidityNTU)
			if d.Supply == devices.SupplySmall {
				maxSmallTurbidity = max(maxSmallTurbidity, tu)
			}
			if c, _ := r.v.Get(devices.ConductivityUScm); c < 100 || c > 1000 {
				t.Fatalf("%s: conductivity %.0f", id, c)
			}
		}
	}
	if maxSmallTurbidity < 3 {
		t.Errorf("small-supply turbidity never passed 3 NTU in 20 days (rain): max %.2f", maxSmallTurbidity)
	}
	if lowChlorine == 0 {
		t.Errorf("chlorine never dropped below 0.05 in 20 days")
	}
}

// Every message decodes as its fault says it should.
func TestDecoderAcceptsWhatItShould(t *testing.T) {
	faults := Faults{
		FaultSpike: 0.03, FaultOutOfRange: 0.03, FaultMalformed: 0.03, FaultDuplicate: 0.03,
		FaultSkew: 0.05, FaultWrongID: 0.03, FaultChirpStack: 0.1,
		FaultOffline: 0.5, FaultStuck: 0.5, FaultLeak: 0.5,
	}
	g := newTestGenerator(t, Options{Generate: 400, Seed: 11, Faults: faults})
	dec, err := devices.NewDecoder(devices.DecoderOptions{Registry: g.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	var m devices.Message
	seen := map[string]int{}
	for range 60_000 {
		msg, _ := g.Next()
		now := msg.SimTime.Add(time.Second)
		err := dec.Decode(msg.Topic, msg.Payload, now, &m)
		var rej *devices.Rejection
		errors.As(err, &rej)
		want := devices.ReasonNone
		switch msg.Fault {
		case FaultMalformed:
			want = devices.ReasonBadJSON
		case FaultWrongID:
			want = devices.ReasonDeviceMismatch
		case FaultSkew:
			if ts := payloadTS(t, msg); ts.Sub(now) > 5*time.Minute {
				want = devices.ReasonBadTimestamp
				seen["skew_rejected"]++
			}
		}
		got := devices.ReasonNone
		if rej != nil {
			got = rej.Reason
		} else if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if got != want {
			t.Fatalf("fault %q: got %q, want %q\n%s %s", msg.Fault, got, want, msg.Topic, msg.Payload)
		}
		seen[msg.Fault]++
		if got != devices.ReasonNone {
			continue
		}
		if m.DeviceID != msg.Device {
			t.Fatalf("decoded device %q, message is %q", m.DeviceID, msg.Device)
		}
		if m.Type != msg.Type {
			t.Fatalf("decoded %s, message is %s", m.Type, msg.Type)
		}
		drops := 0
		for _, r := range devices.DropReasons {
			drops += int(m.Drops[r])
		}
		wantDrops := 0
		if msg.Fault == FaultOutOfRange {
			wantDrops = 1
			if m.Drops[devices.ReasonOutOfRange] != 1 {
				t.Fatalf("out_of_range: drops %v (%s)", m.Drops, msg.Payload)
			}
		}
		if drops != wantDrops {
			t.Fatalf("fault %q: %d fields dropped (%s): %s", msg.Fault, drops, m.FirstDrop, msg.Payload)
		}
		switch {
		case msg.Type == devices.Status:
			if m.Online != (string(msg.Payload) == "online") || !msg.Retained {
				t.Fatalf("status %q decoded online=%v retained=%v", msg.Payload, m.Online, msg.Retained)
			}
			seen["status_"+string(msg.Payload)]++
		case msg.Type == devices.Event:
			seen["event_"+m.EventType]++
		case strings.HasPrefix(msg.Topic, "application/"):
			seen["chirpstack_topic"]++
			if m.DedupID == "" || !m.HasSeq {
				t.Fatalf("uplink without deduplicationId or fCnt: %s", msg.Payload)
			}
		case msg.Fault != FaultSkew && m.TS != msg.SimTime.UnixMilli():
			t.Fatalf("ts %d, sim time %d", m.TS, msg.SimTime.UnixMilli())
		}
		if err == nil && msg.Type != devices.Status && m.TS != msg.TS.UnixMilli() {
			t.Fatalf("ts %d, Message.TS %s: %s", m.TS, msg.TS, msg.Payload)
		}
	}
	t.Logf("seen: %v", seen)
	for _, k := range []string{"", FaultSpike, FaultOutOfRange, FaultMalformed, FaultDuplicate, FaultSkew,
		"skew_rejected", FaultWrongID, FaultChirpStack, FaultOffline, FaultStuck, FaultLeak,
		"status_online", "status_offline", "chirpstack_topic", "event_lid_open"} {
		if seen[k] == 0 {
			t.Errorf("no message of kind %q in 60k", k)
		}
	}
}

// payloadTS reads a message's own timestamp (ts or ChirpStack time).
func payloadTS(t *testing.T, msg Message) time.Time {
	t.Helper()
	p := string(msg.Payload)
	if i := strings.Index(p, `"time":"`); i >= 0 && strings.HasPrefix(msg.Topic, "application/") {
		p = p[i+8:]
		ts, err := time.Parse(time.RFC3339Nano, p[:strings.IndexByte(p, '"')])
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	i := strings.Index(p, `"ts":`)
	p = p[i+5:]
	if p[0] == '"' {
		ts, err := time.Parse(time.RFC3339Nano, p[1:1+strings.IndexByte(p[1:], '"')])
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	var ms int64
	for _, c := range []byte(p) {
		if c < '0' || c > '9' {
			break
		}
		ms = ms*10 + int64(c-'0')
	}
	return time.UnixMilli(ms)
}

func TestFaultRates(t *testing.T) {
	faults := Faults{
		FaultSpike: 0.02, FaultOutOfRange: 0.01, FaultMalformed: 0.01, FaultDuplicate: 0.03,
		FaultSkew: 0.01, FaultWrongID: 0.005, FaultChirpStack: 0.1,
		FaultOffline: 0.3, FaultStuck: 0.2, FaultLeak: 0.3,
	}
	devs := Generate(300, 12)
	days := 4.0
	g := newTestGenerator(t, Options{Devices: devs, Seed: 12, Faults: faults, Until: testStart.Add(time.Duration(days * 24 * float64(time.Hour)))})
	offlineSince := map[string]time.Time{}
	offlineTime := time.Duration(0)
	for {
		m, ok := g.Next()
		if !ok {
			break
		}
		if m.Type == devices.Status {
			if string(m.Payload) == "offline" {
				offlineSince[m.Device] = m.SimTime
			} else {
				offlineTime += m.SimTime.Sub(offlineSince[m.Device])
				delete(offlineSince, m.Device)
			}
		}
	}
	for _, since := range offlineSince {
		offlineTime += testStart.Add(time.Duration(days * 24 * float64(time.Hour))).Sub(since)
	}
	st := g.Stats()
	check := func(name string, got, n int, p float64) {
		t.Helper()
		want := float64(n) * p
		sd := math.Sqrt(float64(n) * p * (1 - p))
		if math.Abs(float64(got)-want) > 5*sd+1 {
			t.Errorf("%s: %d in %d, want %.0f ± %.0f", name, got, n, want, 5*sd)
		}
	}
	for _, f := range []string{FaultSpike, FaultOutOfRange, FaultMalformed, FaultDuplicate, FaultSkew, FaultWrongID} {
		check(f, st.ByFault[f], st.Reports, faults[f])
	}
	check(FaultChirpStack, st.ByFault[FaultChirpStack], st.ChirpStackEligible, faults[FaultChirpStack])
	if st.ByFault[FaultOffline] != st.Episodes[FaultOffline] {
		t.Errorf("%d offline statuses for %d offline episodes", st.ByFault[FaultOffline], st.Episodes[FaultOffline])
	}
	// State faults: episodes per device-day, within the time a device
	// could start one (offline time excluded), loosely: episodes last hours.
	deviceDays := float64(len(devs))*days - offlineTime.Hours()/24
	var flowDevices float64
	for _, d := range devs {
		if d.Kind == devices.KindToilet || d.Kind == devices.KindRuralToilet {
			flowDevices++
		}
	}
	flowDays := flowDevices / float64(len(devs)) * deviceDays
	for _, c := range []struct {
		name string
		days float64
		busy float64 // mean episode length in days, which is not at risk
	}{
		{FaultOffline, deviceDays, 0},
		{FaultStuck, deviceDays, 7.0 / 24},
		{FaultLeak, flowDays, 5.0 / 24},
	} {
		exposure := c.days / (1 + faults[c.name]*c.busy)
		want := faults[c.name] * exposure
		got := float64(st.Episodes[c.name])
		if math.Abs(got-want) > 5*math.Sqrt(want)+0.1*want {
			t.Errorf("%s: %v episodes, want about %.0f", c.name, got, want)
		}
	}
	t.Logf("stats: %+v", st)
}

func TestParseFaults(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Faults
		err      string
	}{
		{name: "empty", in: "", want: Faults{}},
		{name: "none", in: "none", want: Faults{}},
		{name: "brief", in: "offline=0.01,stuck=0.005,spike=0.01,out_of_range=0.005,malformed=0.001,duplicate=0.01,skew=0.002,wrong_id=0.001,chirpstack=0.05,leak=0.01", want: AllFaults()},
		{name: "all", in: "all", want: AllFaults()},
		{name: "default rate", in: "spike, skew=0.5", want: Faults{FaultSpike: 0.01, FaultSkew: 0.5}},
		{name: "all then override", in: "all,leak=2", want: func() Faults { f := AllFaults(); f[FaultLeak] = 2; return f }()},
		{name: "unknown", in: "spikes=0.1", err: `unknown fault "spikes"`},
		{name: "bad number", in: "spike=lots", err: "not a number"},
		{name: "negative", in: "offline=-1", err: "≥ 0"},
		{name: "probability", in: "spike=1.5", err: "within 0–1"},
		{name: "sum", in: "spike=0.6,skew=0.6", err: "add up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFaults(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			again, err := ParseFaults(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("String %q does not parse back: %v %v", got.String(), again, err)
			}
		})
	}
}

func TestNeverAheadOfTheWallClock(t *testing.T) {
	now := time.Now()
	devs := Generate(200, 13)
	// A paced run: Duration at Speed, released on the scaled clock.
	const speed, dur = 3600.0, 10 * time.Second
	start := StartFor(now, dur, speed)
	if want := now.Add(-10 * time.Hour); !start.Equal(want) {
		t.Fatalf("StartFor = %s, want %s", start, want)
	}
	g := newTestGenerator(t, Options{Devices: devs, Seed: 13, Start: start, Faults: AllFaults()})
	n := 0
	for {
		m, _ := g.Next()
		release := now.Add(time.Duration(float64(m.SimTime.Sub(start)) / speed))
		if release.After(now.Add(dur)) {
			break
		}
		if m.SimTime.After(release) {
			t.Fatalf("message at %s released at %s", m.SimTime, release)
		}
		n++
	}
	if n < 1000 {
		t.Fatalf("only %d messages in 10 simulated hours", n)
	}
	// A counted run as fast as possible: PlanStart puts the start so that
	// Count messages end before now.
	for _, tc := range []struct {
		count  int
		faults Faults
	}{{100, nil}, {1500, nil}, {5000, AllFaults()}, {50_000, nil}} {
		count := tc.count
		opts := Options{Devices: devs, Seed: 13, Count: count, Faults: tc.faults}
		opts.Start = PlanStart(now, opts, devs)
		g := newTestGenerator(t, opts)
		var last Message
		for {
			m, ok := g.Next()
			if !ok {
				break
			}
			last = m
		}
		if last.SimTime.After(now) {
			t.Errorf("count %d: last message at %s, after now %s", count, last.SimTime, now)
		}
		if now.Sub(last.SimTime) > time.Duration(float64(time.Hour)*(1+float64(count)/5000)) {
			t.Errorf("count %d: last message at %s, long before now %s", count, last.SimTime, now)
		}
	}
}

func TestPlanStart(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	// Ten bins: one report a minute together.
	devs := make([]devices.Device, 10)
	for i := range devs {
		devs[i] = devices.Device{ID: "bin-" + strconv.Itoa(i), Kind: devices.KindBin}
	}
	margin := func(span time.Duration) time.Duration { return span + span/50 + 15*time.Minute }
	for _, tc := range []struct {
		name string
		opts Options
		want time.Duration // before now
	}{
		{"count", Options{Count: 60}, margin(time.Hour)},
		{"duration at speed", Options{Duration: time.Minute, Speed: 60}, time.Hour},
		{"duration at rate", Options{Duration: time.Minute, Rate: 1}, time.Hour},
		{"rate slower than speed", Options{Duration: time.Minute, Rate: 1, Speed: 600}, time.Hour},
		{"duration shorter than count", Options{Count: 600, Duration: time.Minute, Speed: 60}, time.Hour},
		{"real time, unbounded", Options{Speed: 1}, 0},
		{"real time, counted", Options{Speed: 1, Count: 600, Rate: 5}, 0},
		{"real time for a while", Options{Speed: 1, Duration: time.Minute}, 0},
		{"accelerated, unbounded", Options{Speed: 60}, DefaultBacklog},
		{"flood, unbounded", Options{}, DefaultBacklog},
		{"flood for a while", Options{Duration: time.Minute}, DefaultBacklog},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := now.Sub(PlanStart(now, tc.opts, devs)); got != tc.want {
				t.Errorf("start %s before now, want %s", got, tc.want)
			}
		})
	}
}

func TestNewGeneratorErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		err  string
	}{
		{"no devices", Options{Start: testStart}, "no devices"},
		{"no start", Options{Generate: 3}, "Start is required"},
		{"bad faults", Options{Generate: 3, Start: testStart, Faults: Faults{"fire": 1}}, "unknown fault"},
		{"bad device", Options{Start: testStart, Devices: []devices.Device{{ID: "a b", Kind: devices.KindBin}}}, "id"},
		{"missing registry", Options{Start: testStart, Registry: "/nonexistent/devices.yaml"}, "device registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewGenerator(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
}

func TestCountAndUntil(t *testing.T) {
	g := newTestGenerator(t, Options{Generate: 50, Seed: 1, Count: 777})
	n := 0
	for {
		if _, ok := g.Next(); !ok {
			break
		}
		n++
	}
	if n != 777 || g.Stats().Messages != 777 {
		t.Fatalf("%d messages, want 777", n)
	}
	until := testStart.Add(2 * time.Hour)
	g = newTestGenerator(t, Options{Generate: 50, Seed: 1, Until: until})
	for {
		m, ok := g.Next()
		if !ok {
			break
		}
		if m.SimTime.After(until) {
			t.Fatalf("message at %s after Until %s", m.SimTime, until)
		}
	}
}

func TestPayloadEncoding(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		prec int
		want string
	}{
		{73.5, 1, "73.5"}, {7.2, 2, "7.2"}, {88, 0, "88"}, {0.0004, 4, "0.0004"}, {0.00004, 4, "0"},
		{-0.01, 1, "0"}, {-12.34, 1, "-12.3"}, {100, 1, "100"}, {1e5, 0, "100000"},
	} {
		if got := string(appendNumber(nil, tc.v, tc.prec)); got != tc.want {
			t.Errorf("appendNumber(%v, %d) = %q, want %q", tc.v, tc.prec, got, tc.want)
		}
	}
	// Against strconv: the same value, give or take the last digit at a tie.
	r := rng{s: 1}
	for range 100_000 {
		v := (r.float() - 0.3) * math.Pow(10, float64(r.intn(9)-3))
		prec := r.intn(5)
		got, _ := strconv.ParseFloat(string(appendNumber(nil, v, prec)), 64)
		want, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', prec, 64), 64)
		if math.Abs(got-want) > 1.0001/math.Pow(10, float64(prec)) || (got == 0) != (want == 0) && math.Abs(want) >= 1/math.Pow(10, float64(prec)) {
			t.Fatalf("appendNumber(%v, %d) = %v, strconv says %v", v, prec, got, want)
		}
	}
	for _, ms := range []int64{0, 1795824055818, 951782400000, 4102444799999, -1} {
		want := time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
		if got := string(appendRFC3339(nil, ms, -1)); got != want {
			t.Errorf("appendRFC3339(%d) = %s, want %s", ms, got, want)
		}
	}
	if got := string(appendString(nil, "a\"b\\c\n解放")); got != `"a\"b\\c\u000a解放"` {
		t.Errorf("appendString = %s", got)
	}
	u := string(appendUUID(nil, 0x0123456789abcdef, 0xfedcba9876543210))
	if len(u) != 36 || u[14] != '4' || !bytes.ContainsAny([]byte{u[19]}, "89ab") {
		t.Errorf("uuid %s", u)
	}
}

// TestDedupIDsDifferAcrossRuns: a second run of the same seed (a later
// start) sends ChirpStack uplinks with new deduplicationIds, as ChirpStack
// does, so that sanitel does not skip them as repeats; within one stream
// they are unique too.
func TestDedupIDsDifferAcrossRuns(t *testing.T) {
	ids := func(start time.Time) map[string]bool {
		g := newTestGenerator(t, Options{Generate: 200, Seed: 5, Faults: Faults{FaultChirpStack: 0.5}, Start: start})
		dec, err := devices.NewDecoder(devices.DecoderOptions{Registry: g.Registry(), AcceptWindow: 365 * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		var m devices.Message
		for range 5000 {
			msg, _ := g.Next()
			if !strings.HasPrefix(msg.Topic, "application/") || msg.Fault == FaultDuplicate {
				continue
			}
			if err := dec.Decode(msg.Topic, msg.Payload, msg.SimTime.Add(time.Second), &m); err != nil {
				t.Fatalf("%v: %s", err, msg.Payload)
			}
			if out[m.DedupID] {
				t.Fatalf("deduplicationId %s twice in one stream", m.DedupID)
			}
			out[m.DedupID] = true
		}
		return out
	}
	first, second := ids(testStart), ids(testStart.Add(time.Hour))
	if len(first) < 100 {
		t.Fatalf("only %d uplinks", len(first))
	}
	for id := range second {
		if first[id] {
			t.Fatalf("deduplicationId %s in both runs", id)
		}
	}
}
