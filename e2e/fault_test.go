package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sanitel/sanitel/internal/testenv"
)

// The fault suite runs each test on its own Mosquitto (persistence on) and
// InfluxDB, so it can stop, kill and restart them. Every test streams bin
// readings with distinct (device, ts) and checks that InfluxDB ends up with
// every reading the broker acknowledged: a point is keyed by its series and
// time, so COUNT over the measurement is the number of distinct (device, ts).

const faultDevices = 20

// newFaultEnv prepares a world on private servers with faultDevices bins.
func newFaultEnv(t *testing.T) *Env {
	t.Helper()
	e := &Env{
		T:      t,
		MQTT:   testenv.StartMosquitto(t, testenv.MosquittoOptions{}),
		Influx: testenv.StartInflux(t),
		Dir:    t.TempDir(),
	}
	e.DB = e.Influx.TempDB(t)
	e.Root = "fault-" + testenv.UniqueName(t)
	e.Registry = filepath.Join(e.Dir, "devices.yaml")
	var b strings.Builder
	b.WriteString("devices:\n")
	for i := range faultDevices {
		fmt.Fprintf(&b, "  - {id: %s, kind: bin, site: site-%d, street: 解放街道, org_unit: 区环卫所, lat: 30.27, lon: 120.15}\n", faultDevice(i), i)
	}
	if err := os.WriteFile(e.Registry, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func faultDevice(i int) string { return fmt.Sprintf("bin-%03d", i) }

// withKeys inserts YAML lines at the top of a section of cfg.
func withKeys(cfg, section string, lines ...string) string {
	head := section + ":\n"
	cfg = "\n" + cfg
	cfg = strings.Replace(cfg, "\n"+head, "\n"+head+"  "+strings.Join(lines, "\n  ")+"\n", 1)
	return cfg[1:]
}

// stream publishes readings at QoS 1 from its own client and counts what
// the broker acknowledged. Reading i is for device i%faultDevices at
// base+i ms; the first hot devices report fill_pct 95 (bin_full fires),
// the others 10.
type stream struct {
	sent, acked atomic.Int64
	done        chan struct{}
}

func startStream(t *testing.T, e *Env, n, hot int) *stream {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(e.MQTT.Addr).SetClientID("pub-" + testenv.UniqueName(t)).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(time.Second)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect publisher: %v", tok.Error())
	}
	st := &stream{done: make(chan struct{})}
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Millisecond)
	var wg sync.WaitGroup
	window := make(chan struct{}, 256)
	go func() {
		defer close(st.done)
		defer c.Disconnect(100)
		defer wg.Wait()
		for i := range n {
			for !c.IsConnectionOpen() {
				time.Sleep(20 * time.Millisecond)
			}
			fill := 10.0
			if i%faultDevices < hot {
				fill = 95
			}
			d := i % faultDevices
			payload := fmt.Sprintf(`{"ts":%d,"seq":%d,"fill_pct":%g,"battery_pct":90}`, base.Add(time.Duration(i)*time.Millisecond).UnixMilli(), i/faultDevices, fill)
			window <- struct{}{}
			tok := c.Publish(e.Root+"/bin/"+faultDevice(d)+"/telemetry", 1, false, payload)
			st.sent.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-window }()
				if tok.WaitTimeout(30*time.Second) && tok.Error() == nil {
					st.acked.Add(1)
				}
			}()
		}
	}()
	t.Cleanup(func() { <-st.done })
	return st
}

// waitAcked waits until the broker acknowledged at least n readings.
func (st *stream) waitAcked(t *testing.T, n int64) {
	t.Helper()
	Eventually(t, 60*time.Second, func() bool { return st.acked.Load() >= n },
		func() string { return fmt.Sprintf("broker acknowledged %d of %d", st.acked.Load(), n) })
}

// wait waits until every reading was sent and answered.
func (st *stream) wait(t *testing.T) {
	t.Helper()
	select {
	case <-st.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("stream did not finish: sent %d, acked %d", st.sent.Load(), st.acked.Load())
	}
}

// checkNoLoss waits for the stream to end and for InfluxDB to hold every
// acknowledged reading, and fails if it holds fewer, or more than were
// sent. It logs and returns the figures.
func (e *Env) checkNoLoss(st *stream, timeout time.Duration) (sent, acked, stored int) {
	e.T.Helper()
	st.wait(e.T)
	sent, acked = int(st.sent.Load()), int(st.acked.Load())
	if acked == 0 {
		e.T.Fatal("the broker acknowledged nothing")
	}
	Eventually(e.T, timeout, func() bool {
		stored = e.Influx.Count(e.T, e.DB, "bin")
		return stored >= acked
	}, func() string { return fmt.Sprintf("stored %d of %d acknowledged readings", stored, acked) })
	if stored > sent {
		e.T.Errorf("stored %d distinct (device, ts), more than the %d sent", stored, sent)
	}
	e.T.Logf("sent %d, acknowledged %d, stored %d distinct (device, ts)", sent, acked, stored)
	return sent, acked, stored
}

// checkOneTicketPerDevice asserts that each of the first hot devices has
// exactly one bin_full ticket (its repeats raise occurrences).
func (s *Sanitel) checkOneTicketPerDevice(t *testing.T, hot int) {
	t.Helper()
	var list struct {
		Items []struct {
			DeviceID    string `json:"device_id"`
			Occurrences int    `json:"occurrences"`
		} `json:"items"`
	}
	if code := s.GetJSON("/api/v1/tickets?rule=bin_full", &list); code != 200 {
		t.Fatalf("GET tickets: %d", code)
	}
	per := map[string]int{}
	for _, it := range list.Items {
		per[it.DeviceID]++
	}
	for i := range hot {
		if n := per[faultDevice(i)]; n != 1 {
			t.Errorf("%s has %d bin_full tickets, want 1 (all: %v)", faultDevice(i), n, per)
		}
	}
	if len(per) != hot {
		t.Errorf("bin_full tickets for %d devices, want %d: %v", len(per), hot, per)
	}
}

func TestFaultKill9MidStream(t *testing.T) {
	e := newFaultEnv(t)
	s := e.StartSanitel(e.Config(e.Influx.URL, ""))
	st := startStream(t, e, 50_000, 0)
	st.waitAcked(t, 15_000)
	s.Kill()
	s.Restart()
	e.checkNoLoss(st, 90*time.Second)
}

func TestFaultBrokerRestartMidStream(t *testing.T) {
	e := newFaultEnv(t)
	s := e.StartSanitel(e.Config(e.Influx.URL, ""))
	st := startStream(t, e, 10_000, 0)
	st.waitAcked(t, 3_000)
	reconnects := s.Metric("sanitel_mqtt_connects_total")
	e.MQTT.Restart()
	e.checkNoLoss(st, 60*time.Second)
	if got := s.Metric("sanitel_mqtt_connects_total"); got <= reconnects {
		t.Errorf("sanitel_mqtt_connects_total = %v after the broker restarted, was %v", got, reconnects)
	}
	s.WaitReady()
}

func TestFaultInfluxDownMidStream(t *testing.T) {
	const hot = 3
	e := newFaultEnv(t)
	s := e.StartSanitel(e.Config(e.Influx.URL, ""))
	st := startStream(t, e, 8_000, hot)
	st.waitAcked(t, 2_000)
	e.Influx.Stop()
	st.wait(t)
	// Readings keep being accepted into the spool while InfluxDB is away.
	Eventually(t, 30*time.Second, func() bool {
		return s.Metric("sanitel_spool_bytes") > 0 && s.Metric("sanitel_influx_write_errors_total") > 0
	}, func() string { return "spool did not grow / no write errors counted while InfluxDB was down" })
	// /readyz stays 200 (the spool accepts; the broker need not hold
	// anything back) but reports the outage.
	var ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	code := s.GetJSON("/readyz", &ready)
	t.Logf("while InfluxDB is down: /readyz %d %v, spool %v bytes", code, ready, s.Metric("sanitel_spool_bytes"))
	if code != 200 || ready.Status != "degraded" || ready.Checks["influxdb"] == "ok" || ready.Checks["influxdb"] == "" {
		t.Errorf("/readyz while InfluxDB is down = %d %+v, want 200 degraded with the influxdb error", code, ready)
	}
	time.Sleep(15 * time.Second) // an outage of some length: the writer backs off and retries
	e.Influx.Start()
	e.checkNoLoss(st, 60*time.Second)
	s.checkOneTicketPerDevice(t, hot)
}

func TestFaultSpoolBoundReached(t *testing.T) {
	e := newFaultEnv(t)
	cfg := withKeys(e.Config(e.Influx.URL, ""), "spool", "max_bytes: 1MiB", "segment_bytes: 1MiB")
	s := e.StartSanitel(cfg)
	e.Influx.Stop()
	const n = 40_000 // ≈ 1.8 MiB of records: well over the bound
	st := startStream(t, e, n, 0)
	st.wait(t)
	// Once the spool is full sanitel stops taking (and acknowledging)
	// readings; the broker holds the rest of the backlog.
	var accepted float64
	Eventually(t, 30*time.Second, func() bool {
		prev := accepted
		accepted = s.Metric("sanitel_ingest_messages_total")
		time.Sleep(time.Second)
		return accepted > 0 && accepted == prev
	}, func() string { return "sanitel kept accepting readings" })
	if accepted >= n {
		t.Fatalf("sanitel accepted all %d readings into a 1 MiB spool while InfluxDB was down", n)
	}
	t.Logf("spool full: accepted %v of %d, spool %v bytes", accepted, n, s.Metric("sanitel_spool_bytes"))
	e.Influx.Start()
	e.checkNoLoss(st, 90*time.Second)
}

func TestFaultSpoolDirUnusable(t *testing.T) {
	e := newFaultEnv(t)
	cfg := e.Config(e.Influx.URL, "")
	s := e.StartSanitel(cfg) // creates the persistent session
	s.Stop()
	st := startStream(t, e, 2_000, 0) // queued by the broker meanwhile
	st.wait(t)

	// A file where the spool directory should be: no directory can be made
	// there, even by root. sanitel must refuse to start, naming it.
	blocker := filepath.Join(e.Dir, "blocked")
	if err := os.WriteFile(blocker, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(e.Dir, "blocked.yaml")
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(cfg, e.Dir+"/spool", blocker, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sanitelBin, "serve", "--config", cfgPath).CombinedOutput()
	if err == nil {
		t.Fatalf("sanitel serve started with an unusable spool directory:\n%s", tail(string(out), 2000))
	}
	if strings.Contains(string(out), "panic") || !strings.Contains(string(out), "spool") || !strings.Contains(string(out), blocker) {
		t.Errorf("the error does not name the spool directory %s:\n%s", blocker, tail(string(out), 2000))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Logf("refused to start: %s", lines[len(lines)-1])
	if n := e.Influx.Count(t, e.DB, "bin"); n != 0 {
		t.Errorf("%d readings stored by a sanitel that could not start", n)
	}
	// It acknowledged nothing: with a usable directory, the broker's
	// backlog arrives in full.
	s.Restart()
	e.checkNoLoss(st, 30*time.Second)
}

// TestFaultSpoolDiskFull fills the spool's file system while InfluxDB is
// down. It needs to mount a tmpfs (root with CAP_SYS_ADMIN) and is skipped
// where that is not allowed.
func TestFaultSpoolDiskFull(t *testing.T) {
	e := newFaultEnv(t)
	disk := filepath.Join(e.Dir, "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", disk).Run() })
	cfg := withKeys(strings.Replace(e.Config(e.Influx.URL, ""), e.Dir+"/spool", disk+"/spool", 1), "spool", "segment_bytes: 1MiB")
	s := e.StartSanitel(cfg)
	e.Influx.Stop()
	st := startStream(t, e, 60_000, 0) // ≈ 2.7 MiB of records for a 2 MiB disk
	st.wait(t)
	var ready struct {
		Checks map[string]string `json:"checks"`
	}
	Eventually(t, 30*time.Second, func() bool { return s.GetJSON("/readyz", &ready) == 503 && ready.Checks["spool"] != "ok" },
		func() string { return fmt.Sprintf("/readyz does not report the full disk: %v", ready.Checks) })
	t.Logf("disk full: /readyz spool: %s; accepted %v of %d", ready.Checks["spool"], s.Metric("sanitel_ingest_messages_total"), st.sent.Load())
	if !strings.Contains(ready.Checks["spool"], "no space left") {
		t.Errorf("/readyz spool check does not say the disk is full: %q", ready.Checks["spool"])
	}
	// What was not stored was not acknowledged: once the operator frees
	// space (here: grows the file system) and restarts sanitel with InfluxDB
	// back, the spool drains and the broker redelivers the rest.
	e.Influx.Start()
	s.Kill()
	if out, err := exec.Command("mount", "-o", "remount,size=16m", disk).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs: %v: %s", err, out)
	}
	s.Restart()
	e.checkNoLoss(st, 90*time.Second)
}

func TestFaultSIGTERMWithBacklog(t *testing.T) {
	e := newFaultEnv(t)
	s := e.StartSanitel(e.Config(e.Influx.URL, ""))
	e.Influx.Stop()
	st := startStream(t, e, 5_000, 0)
	st.wait(t)
	Eventually(t, 30*time.Second, func() bool { return s.Metric("sanitel_ingest_messages_total") >= float64(st.acked.Load()) },
		func() string { return "sanitel did not take the stream into its spool" })
	e.Influx.Start()
	// Stop at once, with the whole stream still in the spool: the
	// shutdown drains it to InfluxDB before it exits.
	s.Stop()
	log := s.Log()
	if strings.Contains(log, "shutdown timeout") {
		t.Errorf("shutdown did not drain the spool in time:\n%s", tail(log, 3000))
	}
	_, acked, _ := e.checkNoLoss(st, 10*time.Second)
	// The subscription survived the stop (no unsubscribe): readings sent
	// while sanitel is down arrive after it starts again.
	st2 := startStream(t, e, 1_000, 0)
	st2.wait(t)
	s.Restart()
	Eventually(t, 60*time.Second, func() bool { return e.Influx.Count(t, e.DB, "bin") >= acked+int(st2.acked.Load()) },
		func() string { return "readings sent while sanitel was stopped did not arrive" })
	i := strings.Index(log, `"msg":"stopping"`)
	j := strings.Index(log, `"msg":"stopped"`)
	if i < 0 || j < i {
		t.Errorf("shutdown not logged as stopping … stopped:\n%s", tail(log, 3000))
	}
}

// Two instances in one shared-subscription group split the stream and share
// one ticket store: a SQLite file (on one machine) or PostgreSQL.
func TestFaultSharedSubscriptionTwoInstances(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { sharedSubscriptionTwoInstances(t, "") })
	t.Run("postgres", func(t *testing.T) { sharedSubscriptionTwoInstances(t, testenv.TempPostgres(t)) })
}

// sharedSubscriptionTwoInstances runs the test with the tickets in dsn, or
// in the default SQLite file when it is empty.
func sharedSubscriptionTwoInstances(t *testing.T, dsn string) {
	const hot = 3
	e := newFaultEnv(t)
	// Each config has its own HTTP port.
	config := func() string {
		cfg := withKeys(e.Config(e.Influx.URL, ""), "mqtt", "shared_group: sanitel")
		if dsn != "" {
			cfg = strings.Replace(cfg, "dsn: "+e.Dir+"/tickets.db", fmt.Sprintf("dsn: %q", dsn), 1)
		}
		return cfg
	}
	cfgA := config()
	cfgB := strings.NewReplacer(
		"client_id: "+e.Root, "client_id: "+e.Root+"-b",
		e.Dir+"/spool", e.Dir+"/spool-b",
		e.Dir+"/alerting", e.Dir+"/alerting-b",
	).Replace(config())
	a := e.StartSanitel(cfgA)
	b := e.StartSanitel(cfgB)
	st := startStream(t, e, 6_000, hot)
	e.checkNoLoss(st, 60*time.Second)
	ma, mb := a.Metric("sanitel_ingest_messages_total"), b.Metric("sanitel_ingest_messages_total")
	t.Logf("instance A took %v readings, B %v", ma, mb)
	if ma == 0 || mb == 0 || ma+mb > 6_000+1_000 {
		t.Errorf("the shared group did not split the readings: A %v, B %v of 6000", ma, mb)
	}
	if a.URL == b.URL {
		t.Fatalf("both instances answer at %s", a.URL)
	}
	a.checkOneTicketPerDevice(t, hot)
	b.checkOneTicketPerDevice(t, hot) // the same store, seen from B
	resp, err := http.Get(b.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("instance B unhealthy: %v", err)
	} else {
		resp.Body.Close()
	}
}
