package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sanitel/sanitel/alerting"
	"github.com/sanitel/sanitel/config"
	"github.com/sanitel/sanitel/service"
)

// The alerting suite drives readings through the real broker into a real
// `sanitel serve` with the shipped default rules (configs/rules.yaml) and
// reads the outcome back as users do: tickets through GET /api/v1/tickets
// (with a viewer token), sanitel_alerts_firing and sanitel_tickets through
// /metrics. Every reading carries its device time, and the sequences span
// minutes to hours of device time, so `for`, `clear_for` and hysteresis are
// exercised without waiting: a rule's timers run on device time only.
//
// The table's devices report every 24h (report_interval), so device_offline
// (3 × report_interval) cannot fire for them while the test runs: their
// device times lie up to a few hours in the past, and sanitel's no_data
// check compares them with the wall clock. device_offline has its own test
// on a service with a clock the test controls.

// alertToken is the viewer token the suite reads tickets with.
const alertToken = "alerting-suite-viewer-token-7c1e5a"

// alertConfig is e's sanitel config with the suite's viewer token.
func alertConfig(e *Env) string {
	return withKeys(e.Config(e.Influx.URL, ""), "http",
		"tokens:", fmt.Sprintf("  - {name: depot-screen, role: viewer, token: %q}", alertToken))
}

// alertGet GETs path from the API at base with the suite's token and
// decodes the answer into v; anything but 200 fails the test.
func alertGet(t *testing.T, base, path string, v any) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+alertToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// apiTickets lists every ticket, by device id.
func apiTickets(t *testing.T, base string) map[string][]apiTicket {
	t.Helper()
	var list struct {
		Items []apiTicket `json:"items"`
		Total int         `json:"total"`
		Next  string      `json:"next"`
	}
	alertGet(t, base, "/api/v1/tickets?limit=1000", &list)
	if list.Total != len(list.Items) || list.Next != "" {
		t.Fatalf("ticket list: %d items, total %d, next %q: want everything on one page", len(list.Items), list.Total, list.Next)
	}
	out := map[string][]apiTicket{}
	for _, tk := range list.Items {
		out[tk.DeviceID] = append(out[tk.DeviceID], tk)
	}
	for _, ts := range out {
		sort.Slice(ts, func(i, j int) bool {
			if !ts[i].FiredAt.Equal(*ts[j].FiredAt) {
				return ts[i].FiredAt.Before(*ts[j].FiredAt)
			}
			return ts[i].Rule < ts[j].Rule
		})
	}
	return out
}

// alertEvaluated is how many messages sanitel's alert evaluation has taken
// (evaluated, or skipped as stale or ignored).
func alertEvaluated(s *Sanitel) int {
	mf := s.Metrics()
	return int(metricValue(mf, "sanitel_alert_evaluations_total") +
		metricValue(mf, "sanitel_alert_stale_messages_total") +
		metricValue(mf, "sanitel_alert_ignored_messages_total"))
}

// alertWaitEvaluated waits until the instances together have taken n
// messages. The alert feed evaluates in spool order and makes each
// reading's ticket calls before it takes the next, so once a message
// published after the others is counted, their tickets are written.
func alertWaitEvaluated(t *testing.T, n int, ss ...*Sanitel) {
	t.Helper()
	got := 0
	Eventually(t, 30*time.Second, func() bool {
		got = 0
		for _, s := range ss {
			got += alertEvaluated(s)
		}
		return got >= n
	}, func() string { return fmt.Sprintf("alert evaluation took %d of %d messages", got, n) })
}

// alertStep is one reading (or event) of a case, or a check of the
// device's tickets after the readings before it.
type alertStep struct {
	at     time.Duration // device time after the case's start
	fields string        // telemetry members, e.g. `"fill_pct":80`
	event  string        // an event of this type instead of telemetry
	check  bool
	want   []alertWant
}

// alertWant is one ticket a device should have: its rule, severity and
// status, the device times (minutes after the case's start) it fired and
// cleared at (cleared < 0: not cleared), its occurrences, and text its
// detail must hold.
type alertWant struct {
	rule, severity, status string
	fired, cleared         float64
	occurrences            int
	detail                 string
}

func alertMinutes(m float64) time.Duration { return time.Duration(m * float64(time.Minute)) }

// alertRead is telemetry at minute m of the case.
func alertRead(m float64, fields string) alertStep {
	return alertStep{at: alertMinutes(m), fields: fields}
}

// alertEvent is an event of type typ at minute m of the case.
func alertEvent(m float64, typ string) alertStep { return alertStep{at: alertMinutes(m), event: typ} }

// alertExpect checks that the device has exactly the tickets w (none if empty).
func alertExpect(w ...alertWant) alertStep { return alertStep{check: true, want: w} }

// alertFired is an open ticket of rule that fired at minute m, once.
func alertFired(rule, severity string, m float64) alertWant {
	return alertWant{rule: rule, severity: severity, status: "open", fired: m, cleared: -1, occurrences: 1}
}

// clearedAt: the condition cleared at minute m; the ticket stays open for
// a person to verify.
func (w alertWant) clearedAt(m float64) alertWant { w.cleared = m; return w }

// closedAt: the condition cleared at minute m and the ticket closed itself.
func (w alertWant) closedAt(m float64) alertWant { w.cleared, w.status = m, "closed"; return w }

func (w alertWant) times(n int) alertWant { w.occurrences = n; return w }

func (w alertWant) as(severity string) alertWant { w.severity = severity; return w }

func (w alertWant) saying(detail string) alertWant { w.detail = detail; return w }

// firing reports whether the rule is firing in the engine in this state:
// an open ticket whose condition has not cleared.
func (w alertWant) firing() bool { return w.status == "open" && w.cleared < 0 }

// alertCase is one device and the readings it sends.
type alertCase struct {
	name   string
	device string
	kind   string
	attrs  string // registry attributes, e.g. "toilet_class: 1"
	steps  []alertStep
}

// phases splits the steps at each check: phase i ends with check i.
func (c *alertCase) phases() [][]alertStep {
	var out [][]alertStep
	start := 0
	for i, s := range c.steps {
		if s.check {
			out = append(out, c.steps[start:i+1])
			start = i + 1
		}
	}
	if start != len(c.steps) {
		panic(c.name + ": the last step must be a check")
	}
	return out
}

func (c *alertCase) span() time.Duration {
	var d time.Duration
	for _, s := range c.steps {
		d = max(d, s.at)
	}
	return d
}

// alertCases are the default rules of configs/rules.yaml (contract §7),
// each fired and cleared at its thresholds, on device time. device_offline
// is in TestAlertDeviceOffline.
var alertCases = []alertCase{
	{name: "bin_full warning, critical, hysteresis, auto-close when emptied, a new ticket when full again",
		device: "af-bin-full", kind: "bin", steps: []alertStep{
			alertRead(0, `"fill_pct":79`), alertExpect(),
			alertRead(1, `"fill_pct":80`), alertExpect(alertFired("bin_full", "warning", 1).saying("fill_pct 80 ≥ 80 (warning)")),
			alertRead(2, `"fill_pct":70`), alertExpect(alertFired("bin_full", "warning", 1)),
			alertRead(3, `"fill_pct":92`), alertExpect(alertFired("bin_full", "critical", 1).times(2).saying("fill_pct 92 ≥ 90 (critical)")),
			alertRead(4, `"fill_pct":60`), alertExpect(alertFired("bin_full", "critical", 1).times(2)),
			alertRead(5, `"fill_pct":59`), alertExpect(alertFired("bin_full", "critical", 1).times(2).closedAt(5)),
			alertRead(6, `"fill_pct":85`), alertExpect(alertFired("bin_full", "critical", 1).times(2).closedAt(5), alertFired("bin_full", "warning", 6)),
		}},
	{name: "bin_fire on temperature; cleared, not closed; a repeat while open",
		device: "af-bin-hot", kind: "bin", steps: []alertStep{
			alertRead(0, `"temp_c":59`), alertExpect(),
			alertRead(1, `"temp_c":60`), alertExpect(alertFired("bin_fire", "critical", 1).saying("temp_c 60 ≥ 60 (critical)")),
			alertRead(2, `"temp_c":50`), alertExpect(alertFired("bin_fire", "critical", 1)),
			alertRead(3, `"temp_c":44`), alertExpect(alertFired("bin_fire", "critical", 1).clearedAt(3)),
			alertRead(4, `"temp_c":65`), alertExpect(alertFired("bin_fire", "critical", 1).times(2)),
		}},
	{name: "bin_fire on a fire event",
		device: "af-bin-smoke", kind: "bin", steps: []alertStep{
			alertEvent(0, "fire"), alertExpect(alertFired("bin_fire", "critical", 0).saying("event fire: smoke from the lid")),
			alertRead(1, `"temp_c":20`), alertExpect(alertFired("bin_fire", "critical", 0).clearedAt(1)),
		}},
	{name: "bin_tipped for 5m, restarted by an upright reading, hysteresis, auto-close",
		device: "af-bin-tilt", kind: "bin", steps: []alertStep{
			alertRead(0, `"tilt_deg":50`), alertRead(3, `"tilt_deg":10`), alertRead(6, `"tilt_deg":50`), alertRead(10, `"tilt_deg":50`), alertExpect(),
			alertRead(11, `"tilt_deg":45`), alertExpect(alertFired("bin_tipped", "warning", 11)),
			alertRead(12, `"tilt_deg":30`), alertExpect(alertFired("bin_tipped", "warning", 11)),
			alertRead(13, `"tilt_deg":19`), alertExpect(alertFired("bin_tipped", "warning", 11).closedAt(13)),
		}},
	{name: "battery_low on a bin, hysteresis, auto-close",
		device: "af-bin-batt", kind: "bin", steps: []alertStep{
			alertRead(0, `"battery_pct":21`), alertExpect(),
			alertRead(1, `"battery_pct":20`), alertExpect(alertFired("battery_low", "warning", 1).saying("battery_pct 20 ≤ 20 (warning)")),
			alertRead(2, `"battery_pct":29`), alertExpect(alertFired("battery_low", "warning", 1)),
			alertRead(3, `"battery_pct":30`), alertExpect(alertFired("battery_low", "warning", 1).closedAt(3)),
		}},
	{name: "toilet_ammonia class 1 (> 0.3) for 10m, clear_for 10m restarted by a high reading",
		device: "af-toilet-c1", kind: "toilet", attrs: "toilet_class: 1", steps: []alertStep{
			alertRead(0, `"nh3_mgm3":0.3`), alertRead(1, `"nh3_mgm3":0.5`), alertRead(10, `"nh3_mgm3":0.5`), alertExpect(),
			alertRead(11, `"nh3_mgm3":0.5`), alertExpect(alertFired("toilet_ammonia", "warning", 11).saying("nh3_mgm3 0.5 > 0.3 (warning)")),
			alertRead(12, `"nh3_mgm3":0.2`), alertRead(16, `"nh3_mgm3":0.4`), alertRead(17, `"nh3_mgm3":0.2`), alertRead(26, `"nh3_mgm3":0.3`),
			alertExpect(alertFired("toilet_ammonia", "warning", 11)),
			alertRead(27, `"nh3_mgm3":0.2`), alertExpect(alertFired("toilet_ammonia", "warning", 11).clearedAt(27)),
		}},
	{name: "toilet_ammonia class 2 (> 1): quiet at 0.8, fires at 1.5",
		device: "af-toilet-c2", kind: "toilet", attrs: "toilet_class: 2", steps: []alertStep{
			alertRead(0, `"nh3_mgm3":0.8`), alertRead(10, `"nh3_mgm3":0.8`), alertExpect(),
			alertRead(11, `"nh3_mgm3":1.5`), alertRead(21, `"nh3_mgm3":1.5`), alertExpect(alertFired("toilet_ammonia", "warning", 21).saying("> 1 (warning)")),
			alertRead(22, `"nh3_mgm3":1`), alertRead(32, `"nh3_mgm3":0.9`), alertExpect(alertFired("toilet_ammonia", "warning", 21).clearedAt(32)),
		}},
	{name: "toilet_ammonia class 3 (> 3): quiet at 2.5, fires at 3.5",
		device: "af-toilet-c3", kind: "toilet", attrs: "toilet_class: 3", steps: []alertStep{
			alertRead(0, `"nh3_mgm3":2.5`), alertRead(10, `"nh3_mgm3":2.5`), alertExpect(),
			alertRead(11, `"nh3_mgm3":3.5`), alertRead(20, `"nh3_mgm3":3.5`), alertExpect(),
			alertRead(21, `"nh3_mgm3":3.5`), alertExpect(alertFired("toilet_ammonia", "warning", 21).saying("> 3 (warning)")),
		}},
	{name: "toilet_ammonia without a class uses class 2, in ppm converted",
		device: "af-toilet-nc", kind: "toilet", steps: []alertStep{
			alertRead(0, `"nh3_ppm":1.4`), alertRead(10, `"nh3_ppm":1.4`), alertExpect(), // 0.97 mg/m³
			alertRead(11, `"nh3_ppm":1.5`), alertRead(21, `"nh3_ppm":1.5`), alertExpect(alertFired("toilet_ammonia", "warning", 21).saying("> 1 (warning)")), // 1.04 mg/m³
		}},
	{name: "toilet_h2s (> 0.01) for 10m, clear_for 10m",
		device: "af-toilet-h2s", kind: "toilet", attrs: "toilet_class: 2", steps: []alertStep{
			alertRead(0, `"h2s_mgm3":0.02`), alertRead(9, `"h2s_mgm3":0.02`), alertExpect(),
			alertRead(10, `"h2s_mgm3":0.02`), alertExpect(alertFired("toilet_h2s", "warning", 10).saying("h2s_mgm3 0.02 > 0.01 (warning)")),
			alertRead(11, `"h2s_mgm3":0.01`), alertRead(20, `"h2s_mgm3":0.005`), alertExpect(alertFired("toilet_h2s", "warning", 10)),
			alertRead(21, `"h2s_mgm3":0.005`), alertExpect(alertFired("toilet_h2s", "warning", 10).clearedAt(21)),
		}},
	{name: "toilet_leak: flow > 0.5 for 2h, cleared when the flow stops",
		device: "af-toilet-leak", kind: "toilet", steps: []alertStep{
			alertRead(0, `"flow_lpm":1`), alertRead(15, `"flow_lpm":1`), alertRead(30, `"flow_lpm":1`), alertRead(45, `"flow_lpm":1`),
			alertRead(60, `"flow_lpm":1`), alertRead(75, `"flow_lpm":1`), alertRead(90, `"flow_lpm":1`), alertRead(105, `"flow_lpm":1`),
			alertRead(119, `"flow_lpm":1`), alertExpect(),
			alertRead(120, `"flow_lpm":1`), alertExpect(alertFired("toilet_leak", "warning", 120).saying("flow_lpm 1 > 0.5 (warning)")),
			alertRead(135, `"flow_lpm":0`), alertExpect(alertFired("toilet_leak", "warning", 120).clearedAt(135)),
		}},
	{name: "toilet_leak: a pause in the flow starts the 2h over",
		device: "af-toilet-drip", kind: "toilet", steps: []alertStep{
			alertRead(0, `"flow_lpm":2`), alertRead(15, `"flow_lpm":2`), alertRead(30, `"flow_lpm":0.5`),
			alertRead(45, `"flow_lpm":2`), alertRead(60, `"flow_lpm":2`), alertRead(90, `"flow_lpm":2`), alertRead(120, `"flow_lpm":2`),
			alertRead(150, `"flow_lpm":2`), alertExpect(),
			alertRead(165, `"flow_lpm":2`), alertExpect(alertFired("toilet_leak", "warning", 165)),
		}},
	{name: "rural_tank_full (≥ 85), hysteresis (< 30), cleared, not closed",
		device: "af-rural-tank", kind: "rural_toilet", steps: []alertStep{
			alertRead(0, `"tank_level_pct":84`), alertExpect(),
			alertRead(1, `"tank_level_pct":85`), alertExpect(alertFired("rural_tank_full", "warning", 1).saying("tank_level_pct 85 ≥ 85 (warning)")),
			alertRead(2, `"tank_level_pct":50`), alertExpect(alertFired("rural_tank_full", "warning", 1)),
			alertRead(3, `"tank_level_pct":29`), alertExpect(alertFired("rural_tank_full", "warning", 1).clearedAt(3)),
		}},
	{name: "battery_low on a rural toilet",
		device: "af-rural-batt", kind: "rural_toilet", steps: []alertStep{
			alertRead(0, `"battery_pct":15`), alertExpect(alertFired("battery_low", "warning", 0)),
			alertRead(1, `"battery_pct":31`), alertExpect(alertFired("battery_low", "warning", 0).closedAt(1)),
		}},
	{name: "water_ph below 6.5 for 15m, clear_for 15m",
		device: "af-water-ph-lo", kind: "water", steps: []alertStep{
			alertRead(0, `"ph":6.4`), alertRead(14, `"ph":6`), alertExpect(),
			alertRead(15, `"ph":6.4`), alertExpect(alertFired("water_ph", "warning", 15).saying("ph 6.4 outside 6.5–8.5 (warning)")),
			alertRead(16, `"ph":7`), alertRead(30, `"ph":7`), alertExpect(alertFired("water_ph", "warning", 15)),
			alertRead(31, `"ph":7`), alertExpect(alertFired("water_ph", "warning", 15).clearedAt(31)),
		}},
	{name: "water_ph above 8.5 for 15m; the range's ends are inside",
		device: "af-water-ph-hi", kind: "water", steps: []alertStep{
			alertRead(0, `"ph":8.5`), alertRead(1, `"ph":8.6`), alertRead(15, `"ph":8.6`), alertExpect(),
			alertRead(16, `"ph":8.6`), alertExpect(alertFired("water_ph", "warning", 16).saying("ph 8.6 outside 6.5–8.5 (warning)")),
			alertRead(17, `"ph":6.5`), alertRead(32, `"ph":8.5`), alertExpect(alertFired("water_ph", "warning", 16).clearedAt(32)),
		}},
	{name: "water_turbidity centralized supply (> 1) for 15m",
		device: "af-water-tu-c", kind: "water", attrs: "supply: centralized", steps: []alertStep{
			alertRead(0, `"turbidity_ntu":2`), alertRead(14, `"turbidity_ntu":2`), alertExpect(),
			alertRead(15, `"turbidity_ntu":2`), alertExpect(alertFired("water_turbidity", "warning", 15).saying("turbidity_ntu 2 > 1 (warning)")),
			alertRead(16, `"turbidity_ntu":1`), alertExpect(alertFired("water_turbidity", "warning", 15).clearedAt(16)),
		}},
	{name: "water_turbidity small supply (> 3): quiet at 2, fires at 3.5",
		device: "af-water-tu-s", kind: "water", attrs: "supply: small", steps: []alertStep{
			alertRead(0, `"turbidity_ntu":2`), alertRead(15, `"turbidity_ntu":2`), alertRead(30, `"turbidity_ntu":2`), alertExpect(),
			alertRead(31, `"turbidity_ntu":3.5`), alertRead(46, `"turbidity_ntu":3.5`), alertExpect(alertFired("water_turbidity", "warning", 46).saying("> 3 (warning)")),
			alertRead(47, `"turbidity_ntu":3`), alertExpect(alertFired("water_turbidity", "warning", 46).clearedAt(47)),
		}},
	{name: "water_turbidity without a supply type uses centralized",
		device: "af-water-tu-n", kind: "water", steps: []alertStep{
			alertRead(0, `"turbidity_ntu":1.5`), alertRead(15, `"turbidity_ntu":1.5`), alertExpect(alertFired("water_turbidity", "warning", 15).saying("> 1 (warning)")),
		}},
	{name: "water_chlorine_low (< 0.05) for 30m",
		device: "af-water-cl-lo", kind: "water", steps: []alertStep{
			alertRead(0, `"chlorine_mgl":0.04`), alertRead(29, `"chlorine_mgl":0.04`), alertExpect(),
			alertRead(30, `"chlorine_mgl":0.04`), alertExpect(alertFired("water_chlorine_low", "warning", 30).saying("chlorine_mgl 0.04 < 0.05 (warning)")),
			alertRead(31, `"chlorine_mgl":0.05`), alertExpect(alertFired("water_chlorine_low", "warning", 30).clearedAt(31)),
		}},
	{name: "water_chlorine_high (> 2) for 30m",
		device: "af-water-cl-hi", kind: "water", steps: []alertStep{
			alertRead(0, `"chlorine_mgl":2.5`), alertRead(29, `"chlorine_mgl":2.5`), alertExpect(),
			alertRead(30, `"chlorine_mgl":2.5`), alertExpect(alertFired("water_chlorine_high", "warning", 30).saying("chlorine_mgl 2.5 > 2 (warning)")),
			alertRead(31, `"chlorine_mgl":2`), alertExpect(alertFired("water_chlorine_high", "warning", 30).clearedAt(31)),
		}},
}

// alertBarrierDevice is a bin whose readings (fill 0) change nothing; one
// is published after each phase, so that its evaluation shows that
// everything before it was evaluated.
const alertBarrierDevice = "af-barrier"

// alertRegistry is a registry of the cases' devices (and the barrier).
func alertRegistry(cases []alertCase) string {
	var b strings.Builder
	b.WriteString("devices:\n")
	line := func(id, kind, attrs string) {
		fmt.Fprintf(&b, "  - {id: %s, kind: %s, site: %s 站点, street: 解放街道, org_unit: 区环卫所, lat: 30.27, lon: 120.15, report_interval: 24h", id, kind, id)
		if attrs != "" {
			b.WriteString(", " + attrs)
		}
		b.WriteString("}\n")
	}
	for _, c := range cases {
		line(c.device, c.kind, c.attrs)
	}
	line(alertBarrierDevice, "bin", "")
	return b.String()
}

// alertTimes are the device times of a play of the cases: each case's
// minute zero, chosen so its last reading is a minute before now, and the
// time of the first barrier reading (the next ones follow a second apart).
type alertTimes struct {
	starts  []time.Time
	barrier time.Time
}

func newAlertTimes(cases []alertCase) alertTimes {
	now := time.Now().Truncate(time.Second)
	at := alertTimes{starts: make([]time.Time, len(cases)), barrier: now.Add(-time.Minute)}
	for i := range cases {
		at.starts[i] = now.Add(-time.Minute - cases[i].span())
	}
	return at
}

// alertSend publishes the cases' readings phase by phase, each phase
// followed by a reading of the barrier device, and calls after(phase, n)
// with the number of messages sent so far after each phase. It returns
// that number.
func alertSend(e *Env, pub *Publisher, cases []alertCase, at alertTimes, after func(phase, n int)) int {
	n := 0
	for phase := 0; ; phase++ {
		more := false
		for i := range cases {
			ph := cases[i].phases()
			if phase >= len(ph) {
				continue
			}
			more = true
			for _, st := range ph[phase] {
				if !st.check {
					alertPublish(pub, e, &cases[i], at.starts[i], st)
					n++
				}
			}
		}
		if !more {
			return n
		}
		ts := at.barrier.Add(time.Duration(phase) * time.Second)
		pub.Publish(e.Root+"/bin/"+alertBarrierDevice+"/telemetry", fmt.Sprintf(`{"ts":%d,"fill_pct":0}`, ts.UnixMilli()))
		n++
		if after != nil {
			after(phase, n)
		}
	}
}

// alertPlay plays the cases live: after each phase it waits until sanitel
// has evaluated everything sent, then calls check(phase) if not nil.
func alertPlay(t *testing.T, e *Env, pub *Publisher, s *Sanitel, cases []alertCase, at alertTimes, check func(phase int)) int {
	t.Helper()
	return alertSend(e, pub, cases, at, func(phase, n int) {
		alertWaitEvaluated(t, n, s)
		if check != nil {
			check(phase)
		}
	})
}

func alertPublish(pub *Publisher, e *Env, c *alertCase, start time.Time, st alertStep) {
	ts := start.Add(st.at).UnixMilli()
	if st.event != "" {
		pub.Publish(fmt.Sprintf("%s/%s/%s/event", e.Root, c.kind, c.device),
			fmt.Sprintf(`{"ts":%d,"type":%q,"detail":"smoke from the lid"}`, ts, st.event))
		return
	}
	pub.Publish(fmt.Sprintf("%s/%s/%s/telemetry", e.Root, c.kind, c.device), fmt.Sprintf(`{"ts":%d,%s}`, ts, st.fields))
}

// wantAt returns the tickets case c should have after phase (its last
// check once its phases are over).
func (c *alertCase) wantAt(phase int) []alertWant {
	ph := c.phases()
	p := ph[min(phase, len(ph)-1)]
	return p[len(p)-1].want
}

func TestAlertDefaultRulesFireAndClearOnDeviceTime(t *testing.T) {
	rules, err := alerting.LoadRules("")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]alerting.Rule{}
	for _, r := range rules {
		byName[r.Name] = r
	}
	// Every shipped rule but device_offline (TestAlertDeviceOffline) is
	// exercised here.
	covered := map[string]bool{"device_offline": true}
	for _, c := range alertCases {
		for _, st := range c.steps {
			for _, w := range st.want {
				covered[w.rule] = true
			}
		}
	}
	for _, r := range rules {
		if !covered[r.Name] {
			t.Errorf("shipped rule %s has no case", r.Name)
		}
	}

	e := NewEnv(t, alertRegistry(alertCases))
	s := e.StartSanitel(alertConfig(e))
	pub := e.NewPublisher()
	times := newAlertTimes(alertCases)
	var last map[string][]apiTicket
	check := func(phase int) {
		t.Helper()
		got := apiTickets(t, s.URL)
		last = got
		firing := map[string]int{}
		status := map[string]int{}
		for i := range alertCases {
			c := &alertCases[i]
			want := c.wantAt(phase)
			alertCompare(t, fmt.Sprintf("%s, after phase %d", c.name, phase+1), c, times.starts[i], got[c.device], want, byName)
			for _, w := range want {
				if w.firing() {
					firing[w.rule]++
				}
				status[w.status]++
			}
		}
		if n := len(got[alertBarrierDevice]); n != 0 {
			t.Errorf("the barrier device has %d tickets", n)
		}
		// The metrics tell the same story as the tickets.
		mf := s.Metrics()
		for _, r := range rules {
			if g := metricValue(mf, "sanitel_alerts_firing", "rule", r.Name); g != float64(firing[r.Name]) {
				t.Errorf("after phase %d: sanitel_alerts_firing{rule=%q} = %v, want %d", phase+1, r.Name, g, firing[r.Name])
			}
		}
		for _, st := range []string{"open", "acknowledged", "rectified", "closed"} {
			if g := metricValue(mf, "sanitel_tickets", "status", st); g != float64(status[st]) {
				t.Errorf("after phase %d: sanitel_tickets{status=%q} = %v, want %d", phase+1, st, g, status[st])
			}
		}
	}
	sent := alertPlay(t, e, pub, s, alertCases, times, check)

	// Every reading came in device-time order: none was skipped as stale.
	if g := s.Metric("sanitel_alert_stale_messages_total"); g != 0 {
		t.Errorf("sanitel_alert_stale_messages_total = %v, want 0", g)
	}
	if g := s.Metric("sanitel_alert_evaluations_total"); g != float64(sent) {
		t.Errorf("sanitel_alert_evaluations_total = %v, want %d", g, sent)
	}
	// A ticket that closed itself says so in its history.
	for _, ts := range last {
		for _, tk := range ts {
			if tk.Status != "closed" {
				continue
			}
			var full apiTicket
			alertGet(t, s.URL, fmt.Sprintf("/api/v1/tickets/%d", tk.ID), &full)
			h := full.History
			if len(h) == 0 || h[len(h)-1].Action != "auto_close" || h[len(h)-1].By != "system" || h[0].Action != "open" {
				t.Errorf("%s %s: history %+v, want open … auto_close by system", tk.DeviceID, tk.Rule, h)
			}
		}
	}
}

// alertCompare checks a device's tickets against what is wanted.
func alertCompare(t *testing.T, what string, c *alertCase, start time.Time, got []apiTicket, want []alertWant, rules map[string]alerting.Rule) {
	t.Helper()
	at := func(m float64) time.Time { return start.Add(alertMinutes(m)).UTC() }
	if len(got) != len(want) {
		t.Errorf("%s: %d tickets, want %d:\n%s", what, len(got), len(want), alertDescribe(got, start))
		return
	}
	for i, w := range want {
		g := got[i]
		var bad []string
		if g.Rule != w.rule || g.Severity != w.severity || g.Status != w.status || g.Occurrences != w.occurrences {
			bad = append(bad, fmt.Sprintf("rule %s severity %s status %s occurrences %d, want %s %s %s %d",
				g.Rule, g.Severity, g.Status, g.Occurrences, w.rule, w.severity, w.status, w.occurrences))
		}
		if g.FiredAt == nil || !g.FiredAt.Equal(at(w.fired)) {
			bad = append(bad, fmt.Sprintf("fired_at %v, want minute %v (%v)", g.FiredAt, w.fired, at(w.fired)))
		}
		switch {
		case w.cleared < 0 && g.ClearedAt != nil:
			bad = append(bad, fmt.Sprintf("cleared_at %v, want none", g.ClearedAt))
		case w.cleared >= 0 && (g.ClearedAt == nil || !g.ClearedAt.Equal(at(w.cleared))):
			bad = append(bad, fmt.Sprintf("cleared_at %v, want minute %v", g.ClearedAt, w.cleared))
		}
		if (w.status == "closed") != (g.ClosedAt != nil) {
			bad = append(bad, fmt.Sprintf("closed_at %v with status %s", g.ClosedAt, w.status))
		}
		if !strings.Contains(g.Detail, w.detail) {
			bad = append(bad, fmt.Sprintf("detail %q, want it to hold %q", g.Detail, w.detail))
		}
		if g.Source != "alert" || g.Kind != c.kind || g.Site != c.device+" 站点" || g.Street != "解放街道" || g.OrgUnit != "区环卫所" {
			bad = append(bad, fmt.Sprintf("source %s kind %s site %s street %s org_unit %s: not the alert and the registry's device",
				g.Source, g.Kind, g.Site, g.Street, g.OrgUnit))
		}
		if r, ok := rules[w.rule]; ok {
			// The deadline is set when the ticket opens, by the severity
			// it opened at: the wanted one, unless it escalated since.
			dl := r.Deadline.Warning
			if w.severity == "critical" && w.occurrences == 1 {
				dl = r.Deadline.Critical
			}
			if g.Title != r.Title || g.Requirement != r.Requirement || g.AutoClose != r.AutoClose || g.Deadline.Sub(g.OpenedAt) != dl {
				bad = append(bad, fmt.Sprintf("title %q, requirement %q, auto_close %v, deadline %s after opening: not the rule's (%q, %v, %s)",
					g.Title, g.Requirement, g.AutoClose, g.Deadline.Sub(g.OpenedAt), r.Title, r.AutoClose, dl))
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s: ticket %d (%s):\n  %s\nall:\n%s", what, i, g.Number, strings.Join(bad, "\n  "), alertDescribe(got, start))
		}
	}
}

func alertDescribe(ts []apiTicket, start time.Time) string {
	var b strings.Builder
	rel := func(p *time.Time) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("m%g", p.Sub(start).Minutes())
	}
	for _, tk := range ts {
		fmt.Fprintf(&b, "  %s %s %s %s fired %s cleared %s occurrences %d: %s\n",
			tk.Number, tk.Rule, tk.Severity, tk.Status, rel(tk.FiredAt), rel(tk.ClearedAt), tk.Occurrences, tk.Detail)
	}
	if b.Len() == 0 {
		return "  (none)\n"
	}
	return b.String()
}

// alertComparable is what a ticket must share with its twin from another
// run: everything but ids, numbers and server times (opened_at, closed_at
// and the history's times are when sanitel handled it; deadline is kept as
// its distance from opened_at).
func alertComparable(tk apiTicket) string {
	ts := func(p *time.Time) string {
		if p == nil {
			return "-"
		}
		return p.UTC().Format(time.RFC3339Nano)
	}
	var h []string
	for _, e := range tk.History {
		h = append(h, e.By+"/"+e.Action+"/"+e.Note)
	}
	return fmt.Sprintf("%s %s %s %s %s fired %s cleared %s closed %v occurrences %d escalation %d deadline +%s detail %q history %v",
		tk.DeviceID, tk.Rule, tk.Severity, tk.Status, tk.Kind, ts(tk.FiredAt), ts(tk.ClearedAt), tk.ClosedAt != nil,
		tk.Occurrences, tk.EscalationLevel, tk.Deadline.Sub(tk.OpenedAt), tk.Detail, h)
}

// alertSnapshot lists every ticket comparably (with its history), sorted.
func alertSnapshot(t *testing.T, s *Sanitel) []string {
	t.Helper()
	var out []string
	for _, ts := range apiTickets(t, s.URL) {
		for _, tk := range ts {
			var full apiTicket
			alertGet(t, s.URL, fmt.Sprintf("/api/v1/tickets/%d", tk.ID), &full)
			out = append(out, alertComparable(full))
		}
	}
	sort.Strings(out)
	return out
}

// TestAlertBacklogReplayMatchesLive plays the rule cases twice with the
// same device times: live (each phase evaluated before the next is sent)
// and as a backlog the broker kept for sanitel's persistent session while
// sanitel was stopped. Both must end with the same tickets and the same
// alert state.
func TestAlertBacklogReplayMatchesLive(t *testing.T) {
	times := newAlertTimes(alertCases)

	live := NewEnv(t, alertRegistry(alertCases))
	ls := live.StartSanitel(alertConfig(live))
	sent := alertPlay(t, live, live.NewPublisher(), ls, alertCases, times, nil)

	backlog := NewEnv(t, alertRegistry(alertCases))
	bs := backlog.StartSanitel(alertConfig(backlog)) // subscribes: the broker keeps the session from now on
	bs.Stop()
	// The same messages in the same order, without pauses.
	n := alertSend(backlog, backlog.NewPublisher(), alertCases, times, nil)
	if n != sent {
		t.Fatalf("backlog of %d messages, live run sent %d", n, sent)
	}
	bs.Restart()
	alertWaitEvaluated(t, n, bs)
	if g := bs.Metric("sanitel_ingest_messages_total"); g != float64(n) {
		t.Errorf("after the restart sanitel took %v messages, want the whole backlog of %d", g, n)
	}

	want, got := alertSnapshot(t, ls), alertSnapshot(t, bs)
	if len(want) < len(alertCases) {
		t.Fatalf("the live run has only %d tickets", len(want))
	}
	if !slices.Equal(want, got) {
		t.Errorf("tickets differ between live and replayed backlog\nlive:\n  %s\nreplayed:\n  %s",
			strings.Join(want, "\n  "), strings.Join(got, "\n  "))
	}
	lm, bm := ls.Metrics(), bs.Metrics()
	for _, name := range []string{"sanitel_alerts_firing", "sanitel_tickets", "sanitel_alert_transitions_total", "sanitel_alert_evaluations_total"} {
		for _, m := range lm[name].GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName(), lp.GetValue())
			}
			if l, b := metricValue(lm, name, labels...), metricValue(bm, name, labels...); l != b {
				t.Errorf("%s%v: live %v, replayed %v", name, labels, l, b)
			}
		}
	}
	if g := bs.Metric("sanitel_alert_stale_messages_total"); g != 0 {
		t.Errorf("replay: sanitel_alert_stale_messages_total = %v, want 0", g)
	}
}

// TestAlertConcurrentRepeatsOneOpenTicket has many publishers send readings
// of the same two bins at once, to two sanitel instances sharing the
// subscription and the ticket database. Each (device, rule) must have one
// ticket, whose occurrences are the firings the two instances made.
func TestAlertConcurrentRepeatsOneOpenTicket(t *testing.T) {
	const (
		publishers = 8
		perPub     = 15
		full       = "af-bin-full"  // fill 95 always: bin_full fires once per instance
		flaky      = "af-bin-flaky" // temp 70 / 20 alternately: bin_fire fires and clears
	)
	e := NewEnv(t, `devices:
  - {id: af-bin-full, kind: bin, site: 站点 A, street: 解放街道, org_unit: 区环卫所, lat: 30.27, lon: 120.15, report_interval: 24h}
  - {id: af-bin-flaky, kind: bin, site: 站点 B, street: 解放街道, org_unit: 区环卫所, lat: 30.27, lon: 120.15, report_interval: 24h}
`)
	cfgA := withKeys(alertConfig(e), "mqtt", "shared_group: sanitel")
	cfgB := strings.NewReplacer(
		"client_id: "+e.Root, "client_id: "+e.Root+"-b",
		e.Dir+"/spool", e.Dir+"/spool-b",
		e.Dir+"/alerting", e.Dir+"/alerting-b",
	).Replace(withKeys(alertConfig(e), "mqtt", "shared_group: sanitel"))
	a := e.StartSanitel(cfgA)
	b := e.StartSanitel(cfgB)

	pubs := make([]*Publisher, publishers)
	for i := range pubs {
		pubs[i] = e.NewPublisher()
	}
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for p, pub := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perPub {
				// Distinct device times across publishers; arrival order is
				// whatever the race makes it.
				ts := start.Add(time.Duration(i*publishers+p) * time.Second).UnixMilli()
				temp := 70
				if i%2 == 1 {
					temp = 20
				}
				for _, m := range []struct{ dev, body string }{
					{full, fmt.Sprintf(`{"ts":%d,"fill_pct":95}`, ts)},
					{flaky, fmt.Sprintf(`{"ts":%d,"temp_c":%d}`, ts, temp)},
				} {
					tok := pub.c.Publish(e.Root+"/bin/"+m.dev+"/telemetry", 1, false, m.body)
					if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
						failed.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d publishes failed", n)
	}
	total := publishers * perPub * 2
	alertWaitEvaluated(t, total, a, b)

	cases := []struct{ dev, rule string }{{full, "bin_full"}, {flaky, "bin_fire"}}
	fires := func(rule string) float64 {
		return a.Metric("sanitel_alert_transitions_total", "rule", rule, "to", "firing") +
			b.Metric("sanitel_alert_transitions_total", "rule", rule, "to", "firing")
	}
	// Every message is evaluated; the ticket calls of the last ones may
	// still be under way.
	var got map[string][]apiTicket
	Eventually(t, 15*time.Second, func() bool {
		got = apiTickets(t, a.URL)
		for _, c := range cases {
			if ts := got[c.dev]; len(ts) != 1 || float64(ts[0].Occurrences) != fires(c.rule) {
				return false
			}
		}
		return true
	}, func() string {
		return fmt.Sprintf("want one ticket per bin, with the firings as occurrences (bin_full %v, bin_fire %v):\n%s%s",
			fires("bin_full"), fires("bin_fire"), alertDescribe(got[full], start), alertDescribe(got[flaky], start))
	})
	for _, c := range cases {
		fires := fires(c.rule)
		ts := got[c.dev]
		if len(ts) != 1 {
			t.Errorf("%s: %d tickets, want exactly 1:\n%s", c.dev, len(ts), alertDescribe(ts, start))
			continue
		}
		tk := ts[0]
		if tk.Rule != c.rule || tk.Status != "open" {
			t.Errorf("%s: ticket %s %s, want an open %s", c.dev, tk.Rule, tk.Status, c.rule)
		}
		// Each firing of either instance is one occurrence of the one ticket.
		if fires < 1 || float64(tk.Occurrences) != fires {
			t.Errorf("%s: occurrences %d, the instances fired %s %v times", c.dev, tk.Occurrences, c.rule, fires)
		}
		var full apiTicket
		alertGet(t, a.URL, fmt.Sprintf("/api/v1/tickets/%d", tk.ID), &full)
		opens, repeats := 0, 0
		for _, h := range full.History {
			switch h.Action {
			case "open":
				opens++
			case "repeat":
				repeats++
			}
		}
		if opens != 1 || opens+repeats != tk.Occurrences {
			t.Errorf("%s: history has %d open and %d repeat entries for %d occurrences", c.dev, opens, repeats, tk.Occurrences)
		}
		t.Logf("%s: %s fired %v times over both instances (A %v, B %v); one ticket, occurrences %d", c.dev, c.rule, fires,
			a.Metric("sanitel_alert_transitions_total", "rule", c.rule, "to", "firing"),
			b.Metric("sanitel_alert_transitions_total", "rule", c.rule, "to", "firing"), tk.Occurrences)
	}
	if n := a.Metric("sanitel_alert_sink_errors_total") + b.Metric("sanitel_alert_sink_errors_total"); n != 0 {
		t.Errorf("sanitel_alert_sink_errors_total = %v, want 0", n)
	}
	if g := a.Metric("sanitel_tickets", "status", "open"); g != 2 {
		t.Errorf("sanitel_tickets{status=open} = %v, want 2", g)
	}
}

// alertBarrier makes a reading's evaluation observable across restarts
// (when counters start again from zero): each sync sends the barrier bin
// a battery reading, low and fine in turn, and waits until battery_low's
// tickets on it show it (a new one opened, or the last one closed).
type alertBarrier struct {
	e   *Env
	pub *Publisher
	n   int
}

func (b *alertBarrier) sync(t *testing.T, s *Sanitel) {
	t.Helper()
	b.n++
	battery := 50
	if b.n%2 == 1 {
		battery = 10
	}
	b.pub.Publish(b.e.Root+"/bin/"+alertBarrierDevice+"/telemetry", fmt.Sprintf(`{"ts":%d,"battery_pct":%d}`, time.Now().UnixMilli(), battery))
	wantOpen := b.n%2 == 1
	var ts []apiTicket
	Eventually(t, 30*time.Second, func() bool {
		ts = apiTickets(t, s.URL)[alertBarrierDevice]
		return len(ts) == (b.n+1)/2 && (ts[len(ts)-1].Status == "open") == wantOpen
	}, func() string {
		return fmt.Sprintf("barrier %d never evaluated:\n%s", b.n, alertDescribe(ts, time.Time{}))
	})
}

// TestAlertRestartKeepsPendingAndFiringState stops sanitel (SIGTERM) and
// kills it (SIGKILL) in the middle of toilet_ammonia's 10-minute `for`:
// the rule must still fire 10 minutes of device time after the condition
// began, not 10 minutes after the restart. A bin_full alert firing before
// the restarts stays firing across them: its gauge is restored and a
// further full reading is not a new occurrence.
func TestAlertRestartKeepsPendingAndFiringState(t *testing.T) {
	e := NewEnv(t, `devices:
  - {id: af-toilet-c1, kind: toilet, site: 公厕, street: 解放街道, org_unit: 区环卫所, lat: 30.27, lon: 120.15, toilet_class: 1, report_interval: 24h}
  - {id: af-bin-full, kind: bin, site: 站点, street: 解放街道, org_unit: 区环卫所, lat: 30.27, lon: 120.15, report_interval: 24h}
  - {id: af-barrier, kind: bin, site: 站点, street: 解放街道, org_unit: 区环卫所, lat: 30.27, lon: 120.15, report_interval: 24h}
`)
	s := e.StartSanitel(alertConfig(e))
	pub := e.NewPublisher()
	bar := &alertBarrier{e: e, pub: pub}
	t0 := time.Now().Add(-20 * time.Minute).Truncate(time.Second)
	nh3 := func(m float64, v float64) {
		pub.Publish(e.Root+"/toilet/af-toilet-c1/telemetry", fmt.Sprintf(`{"ts":%d,"nh3_mgm3":%g}`, t0.Add(alertMinutes(m)).UnixMilli(), v))
	}
	fill := func(m float64, v float64) {
		pub.Publish(e.Root+"/bin/af-bin-full/telemetry", fmt.Sprintf(`{"ts":%d,"fill_pct":%g}`, t0.Add(alertMinutes(m)).UnixMilli(), v))
	}
	tickets := func(dev string) []apiTicket { return apiTickets(t, s.URL)[dev] }

	fill(0, 95)
	for m := 0.0; m <= 6; m += 2 {
		nh3(m, 0.5)
	}
	bar.sync(t, s)
	if ts := tickets("af-toilet-c1"); len(ts) != 0 {
		t.Fatalf("toilet_ammonia fired before its 10 minutes:\n%s", alertDescribe(ts, t0))
	}

	s.Stop()
	s.Restart()
	if g := s.Metric("sanitel_alerts_firing", "rule", "bin_full"); g != 1 {
		t.Errorf("after a restart sanitel_alerts_firing{rule=bin_full} = %v, want 1", g)
	}
	nh3(7, 0.5)
	nh3(8, 0.5)
	nh3(9, 0.5)
	fill(9, 96)
	bar.sync(t, s)
	if ts := tickets("af-toilet-c1"); len(ts) != 0 {
		t.Fatalf("toilet_ammonia fired before its 10 minutes (after a restart):\n%s", alertDescribe(ts, t0))
	}

	// A crash right after: whatever the last checkpoint holds, the replay
	// from it must come to the same state.
	s.Kill()
	s.Restart()
	nh3(10, 0.5)
	bar.sync(t, s)
	ts := tickets("af-toilet-c1")
	if len(ts) != 1 || ts[0].Rule != "toilet_ammonia" || !ts[0].FiredAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("toilet_ammonia: want one ticket fired at minute 10 (10 minutes after the condition began, across two restarts):\n%s",
			alertDescribe(ts, t0))
	}
	nh3(11, 0.5)
	fill(11, 97)
	bar.sync(t, s)
	ts = tickets("af-toilet-c1")
	if len(ts) != 1 || ts[0].Occurrences != 1 {
		t.Errorf("toilet_ammonia after one more high reading:\n%s", alertDescribe(ts, t0))
	}
	bins := tickets("af-bin-full")
	if len(bins) != 1 || bins[0].Status != "open" || bins[0].Occurrences != 1 || !bins[0].FiredAt.Equal(t0) {
		t.Errorf("bin_full: want one open ticket fired at minute 0, one occurrence (the restarts do not fire it again):\n%s",
			alertDescribe(bins, t0))
	}
	if g := s.Metric("sanitel_alerts_firing", "rule", "toilet_ammonia"); g != 1 {
		t.Errorf("sanitel_alerts_firing{rule=toilet_ammonia} = %v, want 1", g)
	}
	if g := s.Metric("sanitel_alerts_firing", "rule", "bin_full"); g != 1 {
		t.Errorf("sanitel_alerts_firing{rule=bin_full} = %v, want 1", g)
	}
	fill(12, 50)
	bar.sync(t, s)
	bins = tickets("af-bin-full")
	if len(bins) != 1 || bins[0].Status != "closed" || !bins[0].ClearedAt.Equal(t0.Add(12*time.Minute)) {
		t.Errorf("bin_full: want its ticket closed at minute 12:\n%s", alertDescribe(bins, t0))
	}
	if g := s.Metric("sanitel_alerts_firing", "rule", "bin_full"); g != 0 {
		t.Errorf("sanitel_alerts_firing{rule=bin_full} = %v after it cleared, want 0", g)
	}
}

// alertClock is a clock the test sets.
type alertClock struct{ ms atomic.Int64 }

func (c *alertClock) Now() time.Time  { return time.UnixMilli(c.ms.Load()) }
func (c *alertClock) Set(t time.Time) { c.ms.Store(t.UnixMilli()) }

// alertStartInProcess runs sanitel in this process on e's config, with clk
// as the clock of the no_data rules, checked every interval. It returns the
// running instance (for its HTTP API and metrics) and a function that
// stops it in order, as SIGTERM does; the test's end stops it too.
func alertStartInProcess(t *testing.T, e *Env, clk *alertClock, every time.Duration) (*Sanitel, func()) {
	t.Helper()
	path := filepath.Join(e.Dir, "sanitel.yaml")
	if err := os.WriteFile(path, []byte(alertConfig(e)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	svc, err := service.New(cfg, service.Options{
		Logger:      slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AlertClock:  clk.Now,
		NoDataEvery: every,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("service: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("sanitel log:\n%s", tail(logs.String(), 8000))
		}
	})
	s := &Sanitel{t: t, URL: "http://" + svc.Addr(), log: logs}
	s.WaitReady()
	return s, stop
}

// TestAlertDeviceOffline runs sanitel in this process with a no_data clock
// the test sets (`sanitel serve` checks no_data rules against the wall
// clock), on the real broker, InfluxDB and a SQLite file. device_offline
// fires after 3 × report_interval of silence — or 30 minutes for a device
// without one — and closes itself with the next reading: when the silence
// is seen by the clock, and when it is found as a gap between two
// readings (as in a replayed backlog).
func TestAlertDeviceOffline(t *testing.T) {
	e := NewEnv(t, `devices:
  - {id: af-off-bin, kind: bin, site: 站点 A, street: 解放街道, org_unit: 区环卫所, lat: 30.27, lon: 120.15, report_interval: 2m}
  - {id: af-off-water, kind: water, site: 水厂, street: 解放街道, org_unit: 水务公司, lat: 30.27, lon: 120.15}
  - {id: af-off-never, kind: toilet, site: 公厕, street: 解放街道, org_unit: 区环卫所, lat: 30.27, lon: 120.15, report_interval: 1m}
  - {id: af-barrier, kind: bin, site: 站点 B, street: 解放街道, org_unit: 区环卫所, lat: 30.27, lon: 120.15, report_interval: 24h}
`)
	// Device time zero, two hours ago; the no_data clock starts there too
	// (registered devices never heard from count as silent from the start).
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	clk := &alertClock{}
	clk.Set(t0)
	s, _ := alertStartInProcess(t, e, clk, 10*time.Millisecond)
	pub := e.NewPublisher()
	at := func(m float64) time.Time { return t0.Add(alertMinutes(m)).UTC() }
	send := func(kind, dev string, m float64, fields string) {
		pub.Publish(fmt.Sprintf("%s/%s/%s/telemetry", e.Root, kind, dev), fmt.Sprintf(`{"ts":%d,%s}`, at(m).UnixMilli(), fields))
	}
	tickets := func() map[string][]apiTicket { return apiTickets(t, s.URL) }
	// wait sends the barrier device a reading and waits until it is
	// evaluated: then so are the readings before it, with their tickets.
	sent := 0
	wait := func() {
		t.Helper()
		sent += 2
		send("bin", alertBarrierDevice, 100+float64(sent)/60, `"fill_pct":0`)
		alertWaitEvaluated(t, sent, s)
	}

	send("bin", "af-off-bin", 0, `"fill_pct":10`)
	wait()
	send("water", "af-off-water", 0, `"ph":7`)
	wait()

	// Six minutes after the bin's reading: silent exactly 3 × 2m, not
	// longer, so not offline yet. The toilet that never reported is
	// (3 × 1m since the start), and that it fired shows the check ran at
	// this time for every device.
	clk.Set(at(6))
	var got map[string][]apiTicket
	Eventually(t, 10*time.Second, func() bool { got = tickets(); return len(got["af-off-never"]) == 1 },
		func() string { return "af-off-never did not go offline" })
	if n := len(got["af-off-bin"]) + len(got["af-off-water"]); n != 0 {
		t.Fatalf("offline too early: %v", got)
	}
	never := got["af-off-never"][0]
	if never.Rule != "device_offline" || never.Status != "open" || !never.FiredAt.Equal(at(3)) ||
		!strings.Contains(never.Detail, "no reading for 3m (3 × report_interval 1m) since sanitel started") {
		t.Errorf("af-off-never: %+v", never)
	}

	// A second later the bin is offline, as of 6 minutes after its reading.
	clk.Set(at(6).Add(time.Second))
	Eventually(t, 10*time.Second, func() bool { got = tickets(); return len(got["af-off-bin"]) == 1 },
		func() string { return "af-off-bin did not go offline" })
	bin := got["af-off-bin"][0]
	if bin.Rule != "device_offline" || bin.Status != "open" || bin.Severity != "warning" || !bin.FiredAt.Equal(at(6)) ||
		!strings.Contains(bin.Detail, "no reading for 6m (3 × report_interval 2m) since "+at(0).Format(time.RFC3339)) {
		t.Errorf("af-off-bin: %+v", bin)
	}
	if len(got["af-off-water"]) != 0 {
		t.Errorf("af-off-water offline after 6 minutes: %+v", got["af-off-water"])
	}
	if g := s.Metric("sanitel_alerts_firing", "rule", "device_offline"); g != 2 {
		t.Errorf("sanitel_alerts_firing{rule=device_offline} = %v, want 2", g)
	}
	if g := s.Metric("sanitel_tickets", "status", "open"); g != 2 {
		t.Errorf("sanitel_tickets{status=open} = %v, want 2", g)
	}

	// The bin reports again: its ticket closes itself.
	send("bin", "af-off-bin", 10, `"fill_pct":10`)
	wait()
	bin = tickets()["af-off-bin"][0]
	if bin.Status != "closed" || bin.ClearedAt == nil || !bin.ClearedAt.Equal(at(10)) || bin.Occurrences != 1 {
		t.Errorf("af-off-bin after its next reading: want closed, cleared at minute 10: %+v", bin)
	}
	var full apiTicket
	alertGet(t, s.URL, fmt.Sprintf("/api/v1/tickets/%d", bin.ID), &full)
	if h := full.History; len(h) != 2 || h[1].Action != "auto_close" {
		t.Errorf("af-off-bin history: %+v, want open, auto_close", h)
	}

	// The water probe has no report interval: 30 minutes. Found as gaps
	// between readings (the clock stays at minute 6): a gap of exactly
	// 30 minutes is not offline, one of 31 is, from minute 30 of the gap
	// until the reading that ends it.
	send("water", "af-off-water", 30, `"ph":7`)
	wait()
	if ts := tickets()["af-off-water"]; len(ts) != 0 {
		t.Errorf("af-off-water offline after a 30-minute gap: %s", alertDescribe(ts, t0))
	}
	send("water", "af-off-water", 61, `"ph":7`)
	wait()
	ts := tickets()["af-off-water"]
	if len(ts) != 1 || ts[0].Rule != "device_offline" || ts[0].Status != "closed" || !ts[0].FiredAt.Equal(at(60)) ||
		ts[0].ClearedAt == nil || !ts[0].ClearedAt.Equal(at(61)) || !strings.Contains(ts[0].Detail, "no reading for 30m since "+at(30).Format(time.RFC3339)) {
		t.Errorf("af-off-water: want one device_offline ticket fired at minute 60, closed at 61:\n%s", alertDescribe(ts, t0))
	}
	if g := s.Metric("sanitel_alerts_firing", "rule", "device_offline"); g != 1 {
		t.Errorf("sanitel_alerts_firing{rule=device_offline} = %v, want 1 (af-off-never)", g)
	}
	if o, c := s.Metric("sanitel_tickets", "status", "open"), s.Metric("sanitel_tickets", "status", "closed"); o != 1 || c != 2 {
		t.Errorf("sanitel_tickets open %v closed %v, want 1 and 2", o, c)
	}
}

// TestAlertDeviceOfflineNotFromAQueuedBacklog stops sanitel while devices
// keep reporting every minute, so the broker queues their readings for
// sanitel's session, and starts it again later: readings queued at the
// broker are not silence. As live, no device may go offline (the no_data
// clock already stands at the end of the outage when sanitel starts).
func TestAlertDeviceOfflineNotFromAQueuedBacklog(t *testing.T) {
	const bins = 40
	var reg strings.Builder
	reg.WriteString("devices:\n")
	for i := range bins {
		fmt.Fprintf(&reg, "  - {id: af-q-%02d, kind: bin, site: 站点 %d, street: 解放街道, org_unit: 区环卫所, lat: 30.27, lon: 120.15, report_interval: 1m}\n", i, i)
	}
	e := NewEnv(t, reg.String())
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	clk := &alertClock{}
	clk.Set(t0)
	pub := e.NewPublisher()
	report := func(m int) {
		for i := range bins {
			pub.Publish(fmt.Sprintf("%s/bin/af-q-%02d/telemetry", e.Root, i), fmt.Sprintf(`{"ts":%d,"fill_pct":%d}`, at(m).UnixMilli(), 10+m%50))
		}
	}

	// Live: every minute each bin reports and the clock moves on with it.
	s, stop := alertStartInProcess(t, e, clk, 200*time.Millisecond)
	for m := range 5 {
		report(m)
		alertWaitEvaluated(t, (m+1)*bins, s)
		clk.Set(at(m).Add(30 * time.Second))
	}
	stop()

	// Sanitel is down for 75 minutes; the bins report on, into its
	// session at the broker. It starts again at the end of it.
	const down = 75
	for m := 5; m < 5+down; m++ {
		report(m)
	}
	clk.Set(at(5 + down - 1).Add(30 * time.Second))
	s, _ = alertStartInProcess(t, e, clk, 200*time.Millisecond)
	// A bin found silent while its readings were still queued gets a
	// ticket before the reading that ends the silence is evaluated, so
	// once the backlog is, any such ticket is there.
	alertWaitEvaluated(t, down*bins, s)
	got := apiTickets(t, s.URL)
	for dev, ts := range got {
		t.Errorf("%s: tickets after the backlog, want none (it never stopped reporting):\n%s", dev, alertDescribe(ts, t0))
	}
}
