// Package configs_test checks the shipped deployment files: the
// docker-compose stack, its mounts and environment, and the config it
// mounts for sanitel.
package configs_test

import (
	"bufio"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sanitel/sanitel/config"
	"github.com/sanitel/sanitel/devices"
)

// compose is the part of docker-compose.yml the tests read.
type compose struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Profiles    []string          `yaml:"profiles"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// uncommitted are mounted files the operator creates (secrets).
const uncommitted = "./secrets/"

func loadCompose(t *testing.T) compose {
	t.Helper()
	data, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	return c
}

// envKeys lists every SANITEL_* variable config.Load reads: one per leaf
// key of config.Config (SANITEL_<SECTION>_<KEY>, dots as underscores).
func envKeys() map[string]bool {
	keys := make(map[string]bool)
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if name == "" || name == "-" {
				continue
			}
			key := prefix + "_" + strings.ToUpper(name)
			if f.Type.Kind() == reflect.Struct && f.Type.String() != "time.Duration" {
				walk(key, f.Type)
				continue
			}
			keys[key] = true
		}
	}
	walk(config.EnvPrefix, reflect.TypeOf(config.Config{}))
	return keys
}

// envExample reads .env.example as KEY=VALUE lines.
func envExample(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf(".env.example: %q is not KEY=VALUE", line)
		}
		env[k] = v
	}
	return env
}

// TestComposeMountsAndEnvironment checks that docker-compose.yml parses,
// that every file it mounts is shipped (secrets aside), that named volumes
// are declared, that every long-running service has a health check, that
// every SANITEL_* variable is a real config key and that .env.example sets
// every variable the file requires.
func TestComposeMountsAndEnvironment(t *testing.T) {
	c := loadCompose(t)
	keys := envKeys()
	if !keys["SANITEL_INFLUX_TOKEN"] || !keys["SANITEL_MQTT_TLS_CA_FILE"] {
		t.Fatalf("config key list is wrong: %d keys", len(keys))
	}
	example := envExample(t)
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			switch {
			case strings.HasPrefix(src, uncommitted):
			case strings.HasPrefix(src, "./"):
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("%s: mounts %s: %v", name, src, err)
				}
			default:
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("%s: volume %q is not declared under volumes:", name, src)
				}
			}
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, config.EnvPrefix+"_") && !keys[k] {
				t.Errorf("%s: %s is not a sanitel config key", name, k)
			}
		}
		if s.Healthcheck == nil && !slices.Contains(s.Profiles, "demo") {
			t.Errorf("%s: no healthcheck", name)
		}
		if s.Image == "" && s.Build == nil {
			t.Errorf("%s: neither image nor build", name)
		}
	}
	if sim := c.Services["simulator"]; !slices.Contains(sim.Profiles, "demo") {
		t.Errorf("simulator: want profile demo, got %v", sim.Profiles)
	}
	// Every ${VAR:?…} the file requires must be in .env.example.
	for _, part := range strings.Split(string(raw), "${")[1:] {
		ref, _, _ := strings.Cut(part, "}")
		if v, _, ok := strings.Cut(ref, ":?"); ok {
			if _, ok := example[v]; !ok {
				t.Errorf(".env.example does not set %s, which docker-compose.yml requires", v)
			}
		}
	}
}

// TestComposeSanitelConfigLoads loads the config the compose file mounts for
// sanitel, with its mounted neighbours and the environment .env.example
// gives it, through config.Load (which validates).
func TestComposeSanitelConfigLoads(t *testing.T) {
	c := loadCompose(t)
	example := envExample(t)
	for _, name := range []string{"sanitel", "simulator"} {
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("no %s service", name)
		}
		dir := t.TempDir()
		var cfgPath string
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 || !strings.HasPrefix(parts[0], "./") || !strings.HasPrefix(parts[1], "/etc/sanitel/") {
				continue
			}
			data, err := os.ReadFile(filepath.Join("..", parts[0]))
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(dir, strings.TrimPrefix(parts[1], "/etc/sanitel/"))
			if err := os.WriteFile(dst, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if filepath.Base(dst) == "sanitel.yaml" {
				cfgPath = dst
			}
		}
		if cfgPath == "" {
			t.Fatalf("%s: no config mounted at /etc/sanitel/sanitel.yaml", name)
		}
		for k, v := range s.Environment {
			if !strings.HasPrefix(k, config.EnvPrefix+"_") {
				continue
			}
			if strings.HasPrefix(v, "${") {
				ref, _, _ := strings.Cut(strings.Trim(v, "${}"), ":")
				v = example[ref]
			}
			t.Setenv(k, v)
		}
		cfg, err := config.Load(cfgPath)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cfg.Influx.Bucket != "sanitation" || cfg.Influx.Org != "sanitel" {
			t.Errorf("%s: influx org/bucket %q/%q, want the ones docker-compose.yml initialises (sanitel/sanitation)", name, cfg.Influx.Org, cfg.Influx.Bucket)
		}
		if name == "sanitel" && (cfg.MQTT.Password == "" || cfg.Influx.Token == "" || len(cfg.HTTP.Tokens) == 0) {
			t.Errorf("sanitel: secrets from .env.example did not reach the config")
		}
	}
}

// TestComposeGrafanaAndPrometheusPaths checks that the paths the Grafana
// and Prometheus configs name are where docker-compose.yml mounts files.
func TestComposeGrafanaAndPrometheusPaths(t *testing.T) {
	c := loadCompose(t)
	mounted := func(service, dst string) bool {
		for _, v := range c.Services[service].Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == dst {
				return true
			}
		}
		return false
	}
	for service, want := range map[string][]string{
		"grafana":    {"/var/lib/grafana/dashboards/sanitel", "/etc/grafana/provisioning"},
		"prometheus": {"/etc/prometheus/prometheus.yml", "/etc/prometheus/sanitel-alerts.yml"},
	} {
		for _, dst := range want {
			if !mounted(service, dst) {
				t.Errorf("%s: nothing mounted at %s", service, dst)
			}
		}
	}
	prov, err := os.ReadFile("grafana/provisioning/dashboards/sanitel.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(prov), "path: /var/lib/grafana/dashboards/sanitel") {
		t.Error("grafana dashboard provider does not read /var/lib/grafana/dashboards/sanitel")
	}
	prom, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(prom), "/etc/prometheus/sanitel-alerts.yml") {
		t.Error("prometheus.yml does not load /etc/prometheus/sanitel-alerts.yml")
	}
}

// TestShippedConfigLoads checks what the README's "Running it for real"
// starts from: configs/sanitel.yaml validates and the registry it names
// (configs/devices.yaml) loads, with a device of every kind.
func TestShippedConfigLoads(t *testing.T) {
	cfg, err := config.Load("sanitel.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := devices.LoadRegistry(cfg.Devices.Registry)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[devices.Kind]int{}
	for _, d := range reg.All() {
		kinds[d.Kind]++
	}
	for _, k := range devices.Kinds {
		if kinds[k] == 0 {
			t.Errorf("%s has no %s device", cfg.Devices.Registry, k)
		}
	}
}

// TestAPIExampleConfigLoads checks the config of the README's HTTP API
// walkthrough with token files made as the README shows.
func TestAPIExampleConfigLoads(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"api-example.yaml", "devices.yaml"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"office", "roads", "ops", "depot"} {
		if err := os.WriteFile(filepath.Join(dir, "secrets", n), []byte("token-of-"+n+"-0123456789\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(filepath.Join(dir, "api-example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ValidateServe(); err != nil {
		t.Fatal(err)
	}
	if len(cfg.HTTP.Tokens) != 4 || cfg.HTTP.Tokens[0].Token != "token-of-office-0123456789" {
		t.Errorf("tokens: %d, first %q", len(cfg.HTTP.Tokens), cfg.HTTP.Tokens[0].Token)
	}
	reg, err := devices.LoadRegistry(cfg.Devices.Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"bin-000001", "toilet-000001"} {
		if _, ok := reg.Lookup(id); !ok {
			t.Errorf("the walkthrough's %s is not in %s", id, cfg.Devices.Registry)
		}
	}
}
