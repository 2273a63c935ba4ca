// Package e2e tests sanitel from outside, as its users meet it: a real
// `sanitel serve` process, a real Mosquitto and a real InfluxDB (started by
// scripts/test.sh or by internal/testenv), driven through MQTT and read back
// through InfluxDB, the HTTP API and /metrics.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sanitel/sanitel/internal/testenv"
)

var sanitelBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sanitel-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sanitelBin = filepath.Join(dir, "sanitel")
	build := exec.Command("go", "build", "-o", sanitelBin, "./cmd/sanitel")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build sanitel:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Env is one test's world: a broker, an InfluxDB database, a work dir.
type Env struct {
	T        *testing.T
	MQTT     *testenv.Mosquitto
	Influx   *testenv.Influx
	DB       string
	Dir      string
	Root     string // MQTT topic root, unique per test
	Registry string // registry file path
}

// NewEnv prepares a world on the shared servers with the given registry.
func NewEnv(t *testing.T, registryYAML string) *Env {
	t.Helper()
	e := &Env{T: t, MQTT: testenv.MosquittoFromEnv(t), Influx: testenv.InfluxFromEnv(t), Dir: t.TempDir()}
	e.DB = e.Influx.TempDB(t)
	e.Root = "e2e-" + testenv.UniqueName(t)
	e.Registry = filepath.Join(e.Dir, "devices.yaml")
	if err := os.WriteFile(e.Registry, []byte(registryYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// Config returns a sanitel config for this world; extra YAML is appended
// to sections by the caller through overrides of the defaults below.
func (e *Env) Config(influxURL string, extra string) string {
	return fmt.Sprintf(`mqtt:
  broker: %s
  client_id: %s
  topic_root: %s
influx:
  url: %s
  token: "user:pass"
  bucket: %s/autogen
  batch_size: 1000
  flush_interval: 100ms
spool:
  dir: %s/spool
devices:
  registry: %s
alerting:
  state_dir: %s/alerting
tickets:
  dsn: %s/tickets.db
http:
  listen: 127.0.0.1:%d
log:
  level: debug
  format: json
%s`, e.MQTT.Addr, e.Root, e.Root, influxURL, e.DB, e.Dir, e.Registry, e.Dir, e.Dir, testenv.FreePort(e.T), extra)
}

// Sanitel is a running `sanitel serve`.
type Sanitel struct {
	t       *testing.T
	cfgPath string
	URL     string
	log     *lockedBuffer
	logFrom int // where the current process's log begins
	cmd     *exec.Cmd
	done    chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartSanitel writes cfg to a file and runs `sanitel serve` with it,
// waiting until /readyz answers 200.
func (e *Env) StartSanitel(cfg string) *Sanitel {
	e.T.Helper()
	path := filepath.Join(e.Dir, fmt.Sprintf("sanitel-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		e.T.Fatal(err)
	}
	s := &Sanitel{t: e.T, cfgPath: path, log: &lockedBuffer{}}
	for _, line := range strings.Split(cfg, "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "listen:") {
			s.URL = "http://" + strings.TrimSpace(strings.TrimPrefix(l, "listen:"))
		}
	}
	e.T.Cleanup(func() {
		s.Kill()
		if e.T.Failed() {
			e.T.Logf("sanitel log (%s):\n%s", path, tail(s.log.String(), 8000))
		}
	})
	s.start()
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func (s *Sanitel) start() {
	s.t.Helper()
	s.cmd = exec.Command(sanitelBin, "serve", "--config", s.cfgPath)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.logFrom = len(s.log.String())
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(s.cmd, s.done)
	s.WaitReady()
}

// WaitReady waits until this process has said it runs and /readyz answers
// 200 (not another one that answers at the same address).
func (s *Sanitel) WaitReady() {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.done <- err // for Kill, which waits on it too
			s.t.Fatalf("sanitel exited before it was ready: %v\n%s", err, tail(s.log.String(), 4000))
		default:
		}
		resp, err := http.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(s.log.String()[s.logFrom:], `"sanitel running"`) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("sanitel not ready within 30s\n%s", tail(s.log.String(), 4000))
}

// Kill sends SIGKILL and waits: a crash.
func (s *Sanitel) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	s.done <- nil // keep later waits from blocking
	s.cmd = nil
}

// Stop sends SIGTERM and waits for an orderly exit, which must succeed.
func (s *Sanitel) Stop() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			s.t.Errorf("sanitel exited with %v after SIGTERM", err)
		}
	case <-time.After(60 * time.Second):
		s.t.Fatalf("sanitel did not stop within 60s of SIGTERM")
	}
	s.cmd = nil
}

// Restart starts the same config again.
func (s *Sanitel) Restart() {
	s.t.Helper()
	s.start()
}

// Log returns what sanitel logged so far.
func (s *Sanitel) Log() string { return s.log.String() }

// Metrics scrapes /metrics.
func (s *Sanitel) Metrics() map[string]*dto.MetricFamily {
	s.t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return mf
}

// Metric returns the value of a counter or gauge sample whose labels
// include the given ones (name=value pairs); 0 if there is none.
func (s *Sanitel) Metric(name string, labels ...string) float64 {
	s.t.Helper()
	return metricValue(s.Metrics(), name, labels...)
}

func metricValue(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	mf := mfs[name]
	if mf == nil {
		return 0
	}
	sum := 0.0
outer:
	for _, m := range mf.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue outer
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// GetJSON GETs path and decodes the answer into v, returning the status.
func (s *Sanitel) GetJSON(path string, v any) int {
	s.t.Helper()
	resp, err := http.Get(s.URL + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			s.t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	return resp.StatusCode
}

// Publisher is an MQTT client playing the devices.
type Publisher struct {
	t *testing.T
	c mqtt.Client
}

// NewPublisher connects a device-side client to the test broker.
func (e *Env) NewPublisher() *Publisher {
	e.T.Helper()
	o := mqtt.NewClientOptions().AddBroker(e.MQTT.Addr).SetClientID("pub-" + testenv.UniqueName(e.T)).SetCleanSession(true)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		e.T.Fatalf("connect publisher: %v", tok.Error())
	}
	e.T.Cleanup(func() { c.Disconnect(100) })
	return &Publisher{t: e.T, c: c}
}

// Publish sends one message at QoS 1 and waits for the broker's ack.
func (p *Publisher) Publish(topic string, payload string) {
	p.t.Helper()
	p.PublishRetained(topic, payload, false)
}

// PublishRetained sends one message at QoS 1, retained or not.
func (p *Publisher) PublishRetained(topic string, payload string, retained bool) {
	p.t.Helper()
	tok := p.c.Publish(topic, 1, retained, []byte(payload))
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		p.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// Eventually polls cond until it holds or the timeout passes, then fails
// with the message msg() gives.
func Eventually(t *testing.T, timeout time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %s", timeout, msg())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apiTicket is a ticket as the HTTP API answers it, decoded on its own
// rather than into tickets.Ticket so that the suites check the wire shape.
type apiTicket struct {
	ID              int64        `json:"id"`
	Number          string       `json:"number"`
	Source          string       `json:"source"`
	Rule            string       `json:"rule"`
	Severity        string       `json:"severity"`
	Status          string       `json:"status"`
	DeviceID        string       `json:"device_id"`
	Kind            string       `json:"kind"`
	Site            string       `json:"site"`
	Street          string       `json:"street"`
	Village         string       `json:"village"`
	OrgUnit         string       `json:"org_unit"`
	Title           string       `json:"title"`
	Detail          string       `json:"detail"`
	Requirement     string       `json:"requirement"`
	OpenedAt        time.Time    `json:"opened_at"`
	FiredAt         *time.Time   `json:"fired_at"`
	Deadline        time.Time    `json:"deadline"`
	AcknowledgedAt  *time.Time   `json:"acknowledged_at"`
	RectifiedAt     *time.Time   `json:"rectified_at"`
	ClosedAt        *time.Time   `json:"closed_at"`
	ClearedAt       *time.Time   `json:"cleared_at"`
	Occurrences     int          `json:"occurrences"`
	EscalationLevel int          `json:"escalation_level"`
	Overdue         bool         `json:"overdue"`
	AutoClose       bool         `json:"auto_close"`
	History         []apiHistory `json:"history"`
}

type apiHistory struct {
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	Action string    `json:"action"`
	Note   string    `json:"note"`
}
