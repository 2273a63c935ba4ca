package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"

	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/simulator"
)

// Grafana's Flux time variables and template variables, as the dashboard
// test substitutes them: the last day, every street, village and device.
var dashboardVars = strings.NewReplacer(
	"v.timeRangeStart", "-24h",
	"v.timeRangeStop", "now()",
	"v.windowPeriod", "10m",
	"${street:regex}", ".*",
	"${village:regex}", ".*",
	"${device:regex}", ".*",
	"${hours}", "8",
)

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string      `json:"name"`
			Type       string      `json:"type"`
			Query      any         `json:"query"`
			Datasource *datasource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Type        string      `json:"type"`
		Title       string      `json:"title"`
		Description string      `json:"description"`
		Datasource  *datasource `json:"datasource"`
		Targets     []struct {
			Datasource *datasource `json:"datasource"`
			Query      string      `json:"query"`
			Expr       string      `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

var (
	varRef    = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)
	metricRef = regexp.MustCompile(`\bsanitel_[a-z_]+`)
	hasHan    = regexp.MustCompile(`\p{Han}`)
)

// loadDashboards reads every dashboard shipped in configs/grafana/dashboards.
func loadDashboards(t *testing.T, root string) map[string]dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "configs", "grafana", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in configs/grafana/dashboards: %v", err)
	}
	out := make(map[string]dashboard)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

// provisionedUIDs reads the datasource uids Grafana is provisioned with.
func provisionedUIDs(t *testing.T, root string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "configs", "grafana", "provisioning", "datasources", "sanitel.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Datasources []struct{ UID, Type string }
	}
	if err := yaml.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	uids := make(map[string]string)
	for _, d := range p.Datasources {
		uids[d.UID] = d.Type
	}
	return uids
}

// TestDashboardsAreConsistent checks, without servers, that every panel
// and variable uses a provisioned datasource, that every variable a query
// names is defined, that shared variables are the same on every dashboard,
// and that titles are Chinese with English descriptions.
func TestDashboardsAreConsistent(t *testing.T) {
	root := repoRoot(t)
	uids := provisionedUIDs(t, root)
	shared := make(map[string]string) // variable name → its query, across dashboards
	seenUID := make(map[string]string)
	for file, d := range loadDashboards(t, root) {
		if d.UID == "" || seenUID[d.UID] != "" {
			t.Errorf("%s: uid %q empty or also used by %s", file, d.UID, seenUID[d.UID])
		}
		seenUID[d.UID] = file
		defined := make(map[string]bool)
		for _, v := range d.Templating.List {
			defined[v.Name] = true
			if v.Datasource != nil && uids[v.Datasource.UID] != v.Datasource.Type {
				t.Errorf("%s: variable %s uses datasource %+v, not a provisioned one", file, v.Name, *v.Datasource)
			}
			if v.Name == "device" {
				continue // each dashboard lists its own kind's devices
			}
			q, _ := json.Marshal(v.Query)
			if prev, ok := shared[v.Name]; ok && prev != string(q) {
				t.Errorf("%s: variable %s differs from its definition on another dashboard", file, v.Name)
			}
			shared[v.Name] = string(q)
		}
		for _, p := range d.Panels {
			if !hasHan.MatchString(p.Title) || p.Description == "" || hasHan.MatchString(p.Description) {
				t.Errorf("%s: panel %q: want a Chinese title and an English description, got %q", file, p.Title, p.Description)
			}
			if p.Datasource == nil || uids[p.Datasource.UID] != p.Datasource.Type {
				t.Errorf("%s: panel %q: datasource %+v is not provisioned (%v)", file, p.Title, p.Datasource, uids)
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Datasource == nil || *tg.Datasource != *p.Datasource {
					t.Errorf("%s: panel %q: a target's datasource differs from the panel's", file, p.Title)
				}
				for _, m := range varRef.FindAllStringSubmatch(tg.Query+tg.Expr+p.Title, -1) {
					if !defined[m[1]] && !strings.HasPrefix(m[1], "__") {
						t.Errorf("%s: panel %q uses undefined variable $%s", file, p.Title, m[1])
					}
				}
			}
		}
	}
}

// TestDashboardsShowRealData fills InfluxDB through the simulator and a real
// `sanitel serve`, then runs every Flux query of every dashboard (panels and
// variables) with Grafana's variables substituted and requires rows from
// each; the Prometheus panels' metrics must be ones sanitel exposes.
func TestDashboardsShowRealData(t *testing.T) {
	root := repoRoot(t)
	devs := simulator.Generate(60, 7)
	for i := range devs {
		devs[i].DevEUI = "" // native topics only, under this test's root
	}
	var reg bytes.Buffer
	if err := devices.WriteYAML(&reg, devs); err != nil {
		t.Fatal(err)
	}
	e := NewEnv(t, reg.String())
	s := e.StartSanitel(e.Config(e.Influx.URL, ""))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	now := time.Now()
	sum, err := simulator.Run(ctx, simulator.Options{
		Devices: devs, Seed: 7, TopicRoot: e.Root, Broker: e.MQTT.Addr, ClientID: e.Root + "-sim",
		Start: now.Add(-12 * time.Hour), Until: now.Add(-time.Minute),
	})
	if err != nil {
		t.Fatalf("simulate: %v", err)
	}
	if sum.Acked == 0 {
		t.Fatalf("simulator published nothing: %+v", sum)
	}
	// Bad input, so the rejection counters have series.
	pub := e.NewPublisher()
	pub.Publish(e.Root+"/bin/"+devs[0].ID+"/telemetry", "{not json")
	pub.Publish(e.Root+"/bin/no-such-bin/telemetry", `{"fill_pct": 1}`)
	// A full bin now, so that at least one ticket is open whatever the
	// simulated half day brought (its readings depend on the time of day).
	full := -1
	for i, d := range devs {
		if d.Kind == devices.KindBin {
			full = i
			break
		}
	}
	if full < 0 {
		t.Fatal("the generated registry has no bin")
	}
	pub.Publish(e.Root+"/bin/"+devs[full].ID+"/telemetry", fmt.Sprintf(`{"ts": %d, "fill_pct": 95}`, time.Now().UnixMilli()))
	Eventually(t, 60*time.Second, func() bool {
		return s.Metric("sanitel_ingest_messages_total")+s.Metric("sanitel_ingest_rejected_total") >= float64(sum.Acked)+3 &&
			s.Metric("sanitel_ingest_rejected_total") >= 2 && s.Metric("sanitel_tickets", "status", "open") >= 1
	}, func() string { return "sanitel did not take every simulated message, or opened no ticket" })
	// Wait for a snapshot taken after every reading was taken.
	after := time.Now().UTC().Format(time.RFC3339Nano)
	Eventually(t, 60*time.Second, func() bool {
		rows := e.Influx.Flux(t, `from(bucket: "`+e.DB+`/autogen") |> range(start: time(v: "`+after+`")) |> filter(fn: (r) => r._measurement == "tickets") |> limit(n: 1)`)
		return len(rows) > 0
	}, func() string { return "no tickets snapshot after the readings" })

	checkTicketSnapshot(t, e, s, after)

	sub := strings.NewReplacer("${bucket}", e.DB+"/autogen")
	exposed := s.Metrics()
	var report []string
	dashboards := loadDashboards(t, root)
	files := make([]string, 0, len(dashboards))
	for f := range dashboards {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, file := range files {
		d := dashboards[file]
		var rows []string
		total := 0
		for _, v := range d.Templating.List {
			q, ok := v.Query.(string)
			if !ok || v.Datasource == nil || v.Datasource.UID != "sanitel-influx" {
				continue
			}
			n := len(runPanelFlux(t, e, sub.Replace(q), file+" variable "+v.Name))
			if n == 0 {
				t.Errorf("%s: variable %s: no values", file, v.Name)
			}
		}
		for _, p := range d.Panels {
			n := 0
			for _, tg := range p.Targets {
				switch {
				case tg.Query != "":
					recs := runPanelFlux(t, e, sub.Replace(tg.Query), file+" panel "+p.Title)
					if p.Type == "geomap" {
						for _, r := range recs {
							if r["lat"] == "" || r["lon"] == "" || r["device_id"] == "" {
								t.Errorf("%s: map %q: a row without device_id, lat or lon: %v", file, p.Title, r)
								break
							}
						}
					}
					n += len(recs)
				case tg.Expr != "":
					for _, m := range metricRef.FindAllString(tg.Expr, -1) {
						if !metricExposed(exposed, m) && !slices.Contains(eventOnlyMetrics, m) {
							t.Errorf("%s: panel %q: metric %s is not in sanitel's /metrics", file, p.Title, m)
						}
						n++
					}
				}
			}
			if n == 0 {
				t.Errorf("%s: panel %q returned no rows", file, p.Title)
			}
			total += n
			rows = append(rows, p.Title+"="+strconv.Itoa(n))
		}
		report = append(report, file+": "+strconv.Itoa(total)+" ("+strings.Join(rows, ", ")+")")
	}
	for _, m := range alertRuleMetrics(t, root) {
		if !metricExposed(exposed, m) && !slices.Contains(eventOnlyMetrics, m) {
			t.Errorf("configs/prometheus/sanitel-alerts.yml: metric %s is not in sanitel's /metrics", m)
		}
	}
	t.Logf("rows per dashboard (Prometheus panels: metrics checked):\n%s", strings.Join(report, "\n"))
}

// eventOnlyMetrics are labelled series sanitel exposes only after their
// first event (an InfluxDB write error, a webhook call, an alert);
// TestEventOnlyMetricsAreDeclared checks that sanitel declares them.
var eventOnlyMetrics = []string{
	"sanitel_influx_write_errors_total",
	"sanitel_notify_failures_total",
	"sanitel_notify_dropped_total",
	"sanitel_notify_sent_total",
	"sanitel_alerts_firing",
}

// runPanelFlux runs one substituted Flux query and returns its records.
func runPanelFlux(t *testing.T, e *Env, q, what string) []map[string]string {
	t.Helper()
	q = dashboardVars.Replace(q)
	if strings.Contains(q, "${") || strings.Contains(q, "v.timeRange") || strings.Contains(q, "v.windowPeriod") {
		t.Fatalf("%s: variable left after substitution:\n%s", what, q)
	}
	return e.Influx.Flux(t, q)
}

// metricExposed reports whether name (or a histogram's series) is scraped.
func metricExposed(mf map[string]*dto.MetricFamily, name string) bool {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if _, ok := mf[base]; ok {
				return true
			}
		}
	}
	_, ok := mf[name]
	return ok
}

// alertRuleMetrics returns the sanitel metrics the shipped Prometheus alert
// rules use.
func alertRuleMetrics(t *testing.T, root string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "configs", "prometheus", "sanitel-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("sanitel-alerts.yml: %v", err)
	}
	var names []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			m := metricRef.FindAllString(r.Expr, -1)
			if r.Alert == "" || len(m) == 0 {
				t.Errorf("sanitel-alerts.yml: rule %q must name an alert and use a sanitel metric", r.Alert)
			}
			names = append(names, m...)
		}
	}
	if len(names) == 0 {
		t.Fatal("sanitel-alerts.yml has no rules")
	}
	return names
}

// TestEventOnlyMetricsAreDeclared checks that the metrics the live test
// cannot see before their first event are declared in sanitel's source.
func TestEventOnlyMetricsAreDeclared(t *testing.T) {
	root := repoRoot(t)
	var src strings.Builder
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".cache" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			b, err := os.ReadFile(path)
			src.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range eventOnlyMetrics {
		if !strings.Contains(src.String(), strconv.Quote(m)) {
			t.Errorf("metric %s is not declared in sanitel's source", m)
		}
	}
}

// checkTicketSnapshot compares the open tickets of the latest tickets
// snapshot with the ticket API: some are open (the simulated bins fill up),
// and the snapshot counts no more than the API lists now.
func checkTicketSnapshot(t *testing.T, e *Env, s *Sanitel, after string) {
	t.Helper()
	rows := e.Influx.Flux(t, `from(bucket: "`+e.DB+`/autogen") |> range(start: time(v: "`+after+`"))
  |> filter(fn: (r) => r._measurement == "tickets" and r._field == "open") |> last() |> group() |> sum()`)
	if len(rows) != 1 {
		t.Fatalf("tickets snapshot: %d rows, want 1 sum", len(rows))
	}
	snap, err := strconv.Atoi(rows[0]["_value"])
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Total int }
	if code := s.GetJSON("/api/v1/tickets?status=open,acknowledged", &list); code != 200 {
		t.Fatalf("GET /api/v1/tickets: %d", code)
	}
	if snap == 0 || snap > list.Total {
		t.Errorf("tickets snapshot counts %d open tickets, the API %d", snap, list.Total)
	}
	t.Logf("open tickets: snapshot %d, API %d", snap, list.Total)
}
