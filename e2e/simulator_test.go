package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"

	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/internal/testenv"
	"github.com/sanitel/sanitel/simulator"
)

// simSummary is what `sanitel simulate` printed at the end: the counts of
// its summary line.
type simSummary struct {
	sent, acked, errors, reports, events, statuses int
	byFault                                        map[string]int
	future                                         int // skewed reports over 5 min ahead
	line                                           string
}

var (
	summaryHead  = regexp.MustCompile(`^sent (\d+) \(acked (\d+), errors (\d+)\) in \S+, \S+ msg/s; reports (\d+), events (\d+), statuses (\d+)`)
	summaryFault = regexp.MustCompile(`^(\w+)=(\d+)(?: \((\d+) over 5m ahead\))?`)
)

// parseSummary finds the summary line in what `sanitel simulate` wrote to
// stderr (between its JSON log lines) and reads its counts.
func parseSummary(t *testing.T, stderr string) simSummary {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		m := summaryHead.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
		s := simSummary{sent: n(1), acked: n(2), errors: n(3), reports: n(4), events: n(5), statuses: n(6),
			byFault: map[string]int{}, line: line}
		for part := range strings.SplitSeq(line, "; ") {
			rest, ok := strings.CutPrefix(part, "faults ")
			if !ok {
				continue
			}
			for rest != "" {
				f := summaryFault.FindStringSubmatch(rest)
				if f == nil {
					t.Fatalf("summary faults %q: cannot read %q", part, rest)
				}
				s.byFault[f[1]], _ = strconv.Atoi(f[2])
				if f[3] != "" {
					s.future, _ = strconv.Atoi(f[3])
				}
				rest = strings.TrimPrefix(rest[len(f[0]):], " ")
			}
		}
		return s
	}
	t.Fatalf("no summary line in the simulator's output:\n%s", tail(stderr, 4000))
	return simSummary{}
}

// uplink is a ChirpStack uplink seen on the broker during the run.
type uplink struct {
	topic   string
	payload []byte
	at      time.Time
}

// captureUplinks subscribes to every ChirpStack uplink on the test broker
// and keeps what it sees, as a second pair of eyes beside sanitel's.
func (e *Env) captureUplinks() func() []uplink {
	e.T.Helper()
	var mu sync.Mutex
	var got []uplink
	o := mqtt.NewClientOptions().AddBroker(e.MQTT.Addr).SetClientID("cap-" + testenv.UniqueName(e.T)).SetCleanSession(true)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		e.T.Fatalf("connect capture client: %v", tok.Error())
	}
	e.T.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(devices.ChirpStackTopic, 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, uplink{topic: m.Topic(), payload: bytes.Clone(m.Payload()), at: time.Now()})
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		e.T.Fatalf("subscribe %s: %v", devices.ChirpStackTopic, tok.Error())
	}
	return func() []uplink {
		mu.Lock()
		defer mu.Unlock()
		return append([]uplink(nil), got...)
	}
}

// TestSimulatorFaultsAgainstServe runs `sanitel simulate` with faults
// against a real `sanitel serve`, Mosquitto and InfluxDB, and checks that
// sanitel's accounting matches what the simulator says it injected: every
// fault rejected or dropped with the contract's reason, duplicates stored
// once, ChirpStack uplinks stored as the same points plain JSON gives, and
// every valid reading acknowledged in InfluxDB.
func TestSimulatorFaultsAgainstServe(t *testing.T) {
	const (
		nDevices = 400
		seed     = 7
		// Every per-message fault, at rates that give each a few dozen
		// messages, and the state faults often enough to start episodes.
		faults = "spike=0.02,out_of_range=0.02,malformed=0.02,duplicate=0.03,skew=0.05,wrong_id=0.02,chirpstack=0.2,offline=2,stuck=2,leak=2"
	)
	e := NewEnv(t, "devices: []\n")
	devs := simulator.Generate(nDevices, seed)
	if err := devices.WriteFile(e.Registry, devs); err != nil {
		t.Fatal(err)
	}
	s := e.StartSanitel(e.Config(e.Influx.URL, ""))
	uplinks := e.captureUplinks()

	// 100 simulated minutes in 10 s ending at the wall clock: the last
	// minutes' skewed reports are ahead of it, the earlier ones are not.
	cmd := exec.Command(sanitelBin, "simulate", "--config", s.cfgPath, "--seed", strconv.Itoa(seed),
		"--faults", faults, "--speed", "600", "--duration", "10s", "--client-id", e.Root+"-sim", "--quiet")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sanitel simulate: %v\n%s", err, tail(stderr.String(), 4000))
	}
	sum := parseSummary(t, stderr.String())
	t.Logf("simulator: %s", sum.line)

	// The run is large enough to mean something, every fault asked for was
	// injected, and the broker took every message.
	if sum.reports < 2000 || sum.errors != 0 || sum.acked != sum.sent {
		t.Fatalf("simulator: %d reports, sent %d, acked %d, errors %d; want ≥ 2000 reports, all acked", sum.reports, sum.sent, sum.acked, sum.errors)
	}
	for _, f := range []string{simulator.FaultSpike, simulator.FaultOutOfRange, simulator.FaultMalformed, simulator.FaultDuplicate,
		simulator.FaultSkew, simulator.FaultWrongID, simulator.FaultChirpStack, simulator.FaultOffline, simulator.FaultStuck} {
		if sum.byFault[f] == 0 {
			t.Errorf("simulator injected no %s fault: %s", f, sum.line)
		}
	}
	if sum.future == 0 || sum.future >= sum.byFault[simulator.FaultSkew] {
		t.Errorf("%d of %d skewed reports over 5 min ahead; want some but not all", sum.future, sum.byFault[simulator.FaultSkew])
	}

	// Every message the broker acknowledged reaches sanitel once and is
	// accounted for: rejected, a status, a skipped ChirpStack repeat, or
	// accepted; then every accepted one is written.
	reasons := []string{"bad_json", "too_large", "bad_topic", "unknown_device", "kind_mismatch", "device_mismatch",
		"bad_timestamp", "no_fields", "bad_event"}
	handled := func(mf map[string]*dto.MetricFamily) float64 {
		return metricValue(mf, "sanitel_ingest_rejected_total") + metricValue(mf, "sanitel_ingest_status_total") +
			metricValue(mf, "sanitel_ingest_duplicates_total") + metricValue(mf, "sanitel_ingest_messages_total")
	}
	delivered := float64(sum.sent + sum.statuses)
	Eventually(t, 30*time.Second, func() bool {
		mf := s.Metrics()
		return handled(mf) >= delivered && metricValue(mf, "sanitel_ingest_inflight") == 0 &&
			metricValue(mf, "sanitel_points_written_total") >= metricValue(mf, "sanitel_ingest_messages_total")
	}, func() string {
		mf := s.Metrics()
		return fmt.Sprintf("sanitel handled %v of %v messages, wrote %v of %v points", handled(mf), delivered,
			metricValue(mf, "sanitel_points_written_total"), metricValue(mf, "sanitel_ingest_messages_total"))
	})
	mf := s.Metrics()
	if got := handled(mf); got != delivered {
		t.Errorf("sanitel handled %v messages, the broker acknowledged %v", got, delivered)
	}

	// 1. Rejections and drops, by the contract's reasons, match the faults.
	wantRejected := map[string]int{
		"bad_json":        sum.byFault[simulator.FaultMalformed],
		"device_mismatch": sum.byFault[simulator.FaultWrongID],
		"bad_timestamp":   sum.future,
	}
	for _, r := range reasons {
		if got := metricValue(mf, "sanitel_ingest_rejected_total", "reason", r); got != float64(wantRejected[r]) {
			t.Errorf("sanitel_ingest_rejected_total{reason=%q} = %v, want %d", r, got, wantRejected[r])
		}
	}
	wantDropped := map[string]int{"out_of_range": sum.byFault[simulator.FaultOutOfRange]}
	for _, r := range []string{"out_of_range", "not_finite", "unknown_field"} {
		if got := metricValue(mf, "sanitel_ingest_fields_dropped_total", "reason", r); got != float64(wantDropped[r]) {
			t.Errorf("sanitel_ingest_fields_dropped_total{reason=%q} = %v, want %d", r, got, wantDropped[r])
		}
	}
	// A duplicate's second copy is accepted again (native: the same point
	// rewritten) or skipped by its deduplicationId (ChirpStack).
	repeats := metricValue(mf, "sanitel_ingest_duplicates_total")
	if repeats > float64(sum.byFault[simulator.FaultDuplicate]) {
		t.Errorf("%v ChirpStack repeats skipped, but only %d duplicates sent", repeats, sum.byFault[simulator.FaultDuplicate])
	}
	valid := sum.reports - wantRejected["bad_json"] - wantRejected["device_mismatch"] - wantRejected["bad_timestamp"]
	wantAccepted := float64(valid+sum.byFault[simulator.FaultDuplicate]+sum.events) - repeats
	if got := metricValue(mf, "sanitel_ingest_messages_total"); got != wantAccepted {
		t.Errorf("sanitel_ingest_messages_total = %v, want %v (%d valid reports + %d duplicate copies + %d events − %v ChirpStack repeats)",
			got, wantAccepted, valid, sum.byFault[simulator.FaultDuplicate], sum.events, repeats)
	}

	// 3. Every valid reading is in InfluxDB once: distinct (device, ts)
	// equals the valid reports sent; every event is there too.
	byID := map[string]*devices.Device{}
	byEUI := map[string]*devices.Device{}
	for i := range devs {
		byID[devs[i].ID] = &devs[i]
		if devs[i].DevEUI != "" {
			byEUI[strings.ToLower(devs[i].DevEUI)] = &devs[i]
		}
	}
	type key struct {
		device string
		ts     int64
	}
	stored := map[key]point{}
	rows := 0
	for _, k := range devices.Kinds {
		for _, p := range e.points(k.String(), "") {
			rows++
			id, _ := p["device_id"].(string)
			d := byID[id]
			if d == nil || d.Kind != k {
				t.Fatalf("%s point of device %q, which is not a %s of the registry: %v", k, id, k, p)
			}
			stored[key{id, p["time"].(time.Time).UnixMilli()}] = p
		}
	}
	if len(stored) != rows {
		t.Errorf("InfluxDB has %d rows but %d distinct (device, ts)", rows, len(stored))
	}
	if len(stored) != valid {
		t.Errorf("InfluxDB has %d distinct (device, ts), want %d valid reports (%d reports − %d malformed − %d wrong id − %d over 5 min ahead)",
			len(stored), valid, sum.reports, wantRejected["bad_json"], wantRejected["device_mismatch"], wantRejected["bad_timestamp"])
	}
	if n := len(e.points("event", "")); n != sum.events {
		t.Errorf("InfluxDB has %d events, the simulator sent %d", n, sum.events)
	}

	// 2. ChirpStack uplinks are stored as the points plain JSON gives:
	// measurement = kind, the registry's tags, the object's fields with
	// ppm converted to mg/m³ and kept.
	var landed, converted, outside, rejected int
	var sample []point // one landed uplink per kind, to send again as plain JSON
	seenKind := map[devices.Kind]bool{}
	for _, u := range uplinks() {
		var up struct {
			Time       time.Time `json:"time"`
			DeviceInfo struct {
				DevEUI string `json:"devEui"`
			} `json:"deviceInfo"`
			Object map[string]float64 `json:"object"`
		}
		if json.Unmarshal(u.payload, &up) != nil {
			continue // malformed: counted above
		}
		parts := strings.Split(u.topic, "/")
		topicEUI := strings.ToLower(parts[3])
		if strings.ToLower(up.DeviceInfo.DevEUI) != topicEUI {
			continue // wrong id: counted above
		}
		d := byEUI[topicEUI]
		if d == nil {
			t.Fatalf("uplink on %s from a device not in the registry", u.topic)
		}
		p, ok := stored[key{d.ID, up.Time.UnixMilli()}]
		if !ok {
			// Only a reading too far ahead of sanitel's clock may be missing.
			if up.Time.Sub(u.at) < 4*time.Minute {
				t.Errorf("uplink of %s at %s (received %s) is not in InfluxDB: %s", d.ID, up.Time, u.at, u.payload)
			}
			rejected++
			continue
		}
		landed++
		want := map[string]any{"time": up.Time.Truncate(time.Millisecond), "device_id": d.ID, "site": tag(d.Site),
			"street": tag(d.Street), "village": tag(d.Village), "org_unit": tag(d.OrgUnit)}
		for name, v := range up.Object {
			f, ok := devices.ParseField(name)
			if !ok || !d.Kind.Accepts(f) {
				t.Fatalf("uplink of %s has field %q, not one of a %s", d.ID, name, d.Kind)
			}
			// A field outside its range (the out_of_range fault) is
			// dropped; gases in ppm are checked converted.
			target, mg := f, v
			switch f {
			case devices.NH3Ppm:
				target, mg = devices.NH3MgM3, math.Round(v*0.696*1e6)/1e6
			case devices.H2SPpm:
				target, mg = devices.H2SMgM3, math.Round(v*1.393*1e6)/1e6
			}
			if r, _ := d.Kind.Range(target); v < 0 || mg < r.Min || mg > r.Max {
				outside++
				continue
			}
			want[name] = v
			if target != f {
				want[target.String()] = mg
				converted++
			}
		}
		checkPoint(t, "uplink of "+d.ID, p, want)
		if !seenKind[d.Kind] {
			seenKind[d.Kind] = true
			sample = append(sample, p)
		}
	}
	if landed < 100 || converted == 0 || outside == 0 {
		t.Errorf("%d ChirpStack uplinks checked in InfluxDB, %d with ppm converted, %d fields out of range; want ≥ 100, some, some", landed, converted, outside)
	}
	if rejected > sum.future {
		t.Errorf("%d uplinks over 5 min ahead, but the simulator counted %d skewed reports so", rejected, sum.future)
	}
	t.Logf("InfluxDB: %d distinct (device, ts), %d events; %d ChirpStack uplinks checked (%d converted from ppm, %d fields out of range), %d too far ahead",
		len(stored), sum.events, landed, converted, outside, rejected)

	// The same reading sent as plain JSON a millisecond later is the same
	// point but for its time.
	pub := e.NewPublisher()
	for _, p := range sample {
		id := p["device_id"].(string)
		d := byID[id]
		ts := p["time"].(time.Time).Add(time.Millisecond)
		body := map[string]any{"ts": ts.UnixMilli()}
		for _, f := range d.Kind.Fields() {
			if v, ok := p[f.String()]; ok && v != nil {
				body[f.String()] = v
			}
		}
		for _, f := range []string{"nh3_ppm", "h2s_ppm"} {
			if v := p[f]; v != nil {
				// As the device would send it: in ppm, not also in mg/m³.
				body[f] = v
				delete(body, strings.TrimSuffix(f, "_ppm")+"_mgm3")
			}
		}
		b, _ := json.Marshal(body)
		pub.Publish(e.Root+"/"+d.Kind.String()+"/"+id+"/telemetry", string(b))
		where := fmt.Sprintf("device_id = '%s' AND time = '%s'", id, ts.UTC().Format(time.RFC3339Nano))
		var got []point
		Eventually(t, 20*time.Second, func() bool { got = e.points(d.Kind.String(), where); return len(got) == 1 },
			func() string { return fmt.Sprintf("plain JSON %s never reached InfluxDB", b) })
		want := map[string]any{}
		for k, v := range p {
			want[k] = v
		}
		want["time"] = ts
		checkPoint(t, "plain JSON twin of "+id+"'s uplink", got[0], want)
	}
	if len(sample) < 2 {
		t.Errorf("landed uplinks of %d kinds, want rural toilets and water probes", len(sample))
	}
}

// tag is what InfluxDB returns for a registry attribute: an empty one is
// no tag at all.
func tag(v string) any {
	if v == "" {
		return nil
	}
	return v
}
