package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sanitel/sanitel/internal/testenv"
)

const exampleConfig = "../configs/sanitel.yaml"

// clearEnv makes a test independent of SANITEL_* variables around it; an
// empty variable counts as unset.
func clearEnv(t testing.TB) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, EnvPrefix+"_") {
			t.Setenv(name, "")
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustLoad(t *testing.T, path string) *Config {
	t.Helper()
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s):\n%v", path, err)
	}
	return cfg
}

func TestDefaultValidates(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate():\n%v", err)
	}
	if err := Default().ValidateServe(); err == nil || !strings.Contains(err.Error(), "devices.registry: required for serve") {
		t.Fatalf("ValidateServe on defaults = %v, want devices.registry required", err)
	}
}

// TestExampleConfig loads the shipped example, so that it cannot rot, and
// checks that it differs from the defaults only where it means to.
func TestExampleConfig(t *testing.T) {
	clearEnv(t)
	cfg := mustLoad(t, exampleConfig)
	if err := cfg.ValidateServe(); err != nil {
		t.Fatal(err)
	}

	dir, err := filepath.Abs(filepath.Dir(exampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Influx.URL = "http://127.0.0.1:8086"
	want.Influx.Org = "sanitel"
	want.Devices.Registry = "devices.yaml"
	want.Alerting.Rules = "rules.yaml"
	want.HTTP.Tokens = []HTTPToken{}
	want.Tickets.Notify.Webhooks = []Webhook{}
	want.resolvePaths(dir)
	if !reflect.DeepEqual(cfg, want) {
		var got, exp bytes.Buffer
		_ = cfg.WriteMasked(&got)
		_ = want.WriteMasked(&exp)
		t.Fatalf("example config:\n%s\nwant:\n%s", got.String(), exp.String())
	}
	if cfg.Devices.Registry != filepath.Join(dir, "devices.yaml") {
		t.Errorf("registry = %q, want it next to the config", cfg.Devices.Registry)
	}
}

func TestLoadWithoutFile(t *testing.T) {
	clearEnv(t)
	cfg := mustLoad(t, "")
	if !reflect.DeepEqual(cfg, Default()) {
		t.Fatalf("Load(\"\") = %+v, want the defaults", cfg)
	}
	t.Setenv("SANITEL_LOG_LEVEL", "DEBUG")
	if cfg := mustLoad(t, ""); cfg.Log.Level != "debug" || cfg.Log.SlogLevel() != slog.LevelDebug {
		t.Fatalf("log level = %q, want debug", cfg.Log.Level)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v, want no such file", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "sanitel.yaml")
	writeFile(t, path, "mqtt:\n  broker: tcp://file.example.org:1883\n  qos: 0\n")
	writeFile(t, filepath.Join(dir, "certs", "ca.pem"), "not checked here\n")

	t.Setenv("SANITEL_MQTT_BROKER", "mqtts://env.example.org:8883") // in the file
	t.Setenv("SANITEL_MQTT_QOS", "2")                               // in the file
	t.Setenv("SANITEL_MQTT_TLS_CA_FILE", "certs/ca.pem")            // nested, absent
	t.Setenv("SANITEL_INFLUX_TOKEN", "influx-env-token")            // absent from the file
	t.Setenv("SANITEL_INFLUX_GZIP", "false")
	t.Setenv("SANITEL_SPOOL_MAX_BYTES", "2GiB")
	t.Setenv("SANITEL_DEVICES_ACCEPT_WINDOW", "3d")
	t.Setenv("SANITEL_DEVICES_REFERENCE_TEMP_C", "20.5")
	t.Setenv("SANITEL_HTTP_TOKENS", `[{"name": "ops", "role": "admin", "token": "0123456789abcdef0123"}]`)
	t.Setenv("SANITEL_TICKETS_NOTIFY_WEBHOOKS", `[{url: "https://hooks.example.org/a", events: "open,close"}]`)

	cfg := mustLoad(t, path)
	checks := []struct {
		name      string
		got, want any
	}{
		{"mqtt.broker", cfg.MQTT.Broker, "mqtts://env.example.org:8883"},
		{"mqtt.qos", cfg.MQTT.QoS, 2},
		{"mqtt.tls.ca_file", cfg.MQTT.TLS.CAFile, filepath.Join(dir, "certs", "ca.pem")},
		{"influx.token", cfg.Influx.Token, "influx-env-token"},
		{"influx.gzip", cfg.Influx.Gzip, false},
		{"spool.max_bytes", cfg.Spool.MaxBytes, int64(2 << 30)},
		{"devices.accept_window", cfg.Devices.AcceptWindow, 72 * time.Hour},
		{"devices.reference_temp_c", cfg.Devices.ReferenceTempC, 20.5},
		{"http.tokens", cfg.HTTP.Tokens, []HTTPToken{{Name: "ops", Role: RoleAdmin, Token: "0123456789abcdef0123"}}},
		{"tickets.notify.webhooks", cfg.Tickets.Notify.Webhooks, []Webhook{{
			URL: "https://hooks.example.org/a", Events: []string{EventOpen, EventClose}, Timeout: 5 * time.Second,
		}}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestEnvBadValueNamesVariable(t *testing.T) {
	clearEnv(t)
	t.Setenv("SANITEL_MQTT_QOS", "5")
	t.Setenv("SANITEL_SPOOL_COMMIT_INTERVAL", "soon")
	t.Setenv("SANITEL_HTTP_TOKENS", `[{"nmae": "ops"}]`)
	_, err := Load("")
	for _, want := range []string{
		"mqtt.qos: must be 0, 1 or 2, got 5 (from SANITEL_MQTT_QOS)",
		`spool.commit_interval: must be a duration such as "30s", "5m" or "7d", got "soon" (from SANITEL_SPOOL_COMMIT_INTERVAL)`,
		`unknown key "http.tokens[0].nmae" (did you mean "http.tokens[0].name"?)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\ndoes not contain %q", err, want)
		}
	}
}

func TestSecretFiles(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "secrets", "mqtt"), "mqtt-pass\n")
	writeFile(t, filepath.Join(dir, "secrets", "influx"), "  influx-token \n")
	writeFile(t, filepath.Join(dir, "secrets", "office"), "office-token-0123456789\n")
	writeFile(t, filepath.Join(dir, "secrets", "hook"), "hook-secret\r\n")
	path := filepath.Join(dir, "sanitel.yaml")
	writeFile(t, path, `
mqtt:
  username: sanitel
  password_file: secrets/mqtt
influx:
  token_file: secrets/influx
http:
  tokens:
    - {name: office, role: supervisor, token_file: secrets/office}
    - {name: ops, role: admin, token: inline-token-0123456789}
tickets:
  notify:
    webhooks:
      - {url: "https://hooks.example.org/x", secret_file: secrets/hook}
`)
	cfg := mustLoad(t, path)
	if got := cfg.MQTT.Password; got != "mqtt-pass" {
		t.Errorf("mqtt.password = %q", got)
	}
	if got := cfg.Influx.Token; got != "influx-token" {
		t.Errorf("influx.token = %q", got)
	}
	if got := cfg.HTTP.Tokens[0].Token; got != "office-token-0123456789" {
		t.Errorf("http.tokens[0].token = %q", got)
	}
	if got := cfg.HTTP.Tokens[0].TokenFile; got != filepath.Join(dir, "secrets", "office") {
		t.Errorf("http.tokens[0].token_file = %q, want it resolved", got)
	}
	if got := cfg.Tickets.Notify.Webhooks[0].Secret; got != "hook-secret" {
		t.Errorf("webhook secret = %q", got)
	}

	t.Run("empty file", func(t *testing.T) {
		writeFile(t, filepath.Join(dir, "secrets", "empty"), " \n")
		p := filepath.Join(dir, "empty.yaml")
		writeFile(t, p, "influx:\n  token_file: secrets/empty\n")
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), "influx.token_file: ") || !strings.Contains(err.Error(), "file is empty") {
			t.Fatalf("err = %v, want influx.token_file: … file is empty", err)
		}
	})
	t.Run("not a regular file", func(t *testing.T) {
		p := filepath.Join(dir, "dir.yaml")
		writeFile(t, p, "mqtt:\n  username: u\n  password_file: secrets\n")
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("err = %v, want not a regular file", err)
		}
	})
	t.Run("env sets the value, file sets the file: env wins", func(t *testing.T) {
		t.Setenv("SANITEL_INFLUX_TOKEN", "from-env")
		if got := mustLoad(t, path).Influx.Token; got != "from-env" {
			t.Errorf("influx.token = %q, want the environment's", got)
		}
	})
	t.Run("file sets the value, env sets the file: env wins", func(t *testing.T) {
		p := filepath.Join(dir, "inline.yaml")
		writeFile(t, p, "influx:\n  token: inline-token\n")
		t.Setenv("SANITEL_INFLUX_TOKEN_FILE", filepath.Join(dir, "secrets", "influx"))
		if got := mustLoad(t, p).Influx.Token; got != "influx-token" {
			t.Errorf("influx.token = %q, want the file's the environment names", got)
		}
	})
	t.Run("both from the file", func(t *testing.T) {
		p := filepath.Join(dir, "both.yaml")
		writeFile(t, p, "influx:\n  token: inline-token\n  token_file: secrets/influx\n")
		_, err := Load(p)
		want := "influx.token: set either token or token_file, not both"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want %q", err, want)
		}
	})
	t.Run("both from the environment", func(t *testing.T) {
		t.Setenv("SANITEL_INFLUX_TOKEN", "from-env")
		t.Setenv("SANITEL_INFLUX_TOKEN_FILE", filepath.Join(dir, "secrets", "influx"))
		_, err := Load(path)
		want := "influx.token: set either token or token_file, not both (from SANITEL_INFLUX_TOKEN)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want %q", err, want)
		}
	})
	t.Run("missing file reported once", func(t *testing.T) {
		p := filepath.Join(dir, "missing.yaml")
		writeFile(t, p, "http:\n  tokens:\n    - {name: x, role: viewer, token_file: nope}\n")
		_, err := Load(p)
		if err == nil || strings.Contains(err.Error(), "http.tokens[0].token: required") {
			t.Fatalf("err = %v, want only the token_file problem", err)
		}
	})
}

func TestRelativePaths(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "etc", "tls", "ca.pem"), "x")
	writeFile(t, filepath.Join(dir, "etc", "tls", "client.pem"), "x")
	writeFile(t, filepath.Join(dir, "etc", "tls", "client.key"), "x")
	path := filepath.Join(dir, "etc", "sanitel.yaml")
	writeFile(t, path, `
mqtt:
  broker: ssl://broker:8883
  tls: {ca_file: tls/ca.pem, cert_file: tls/client.pem, key_file: tls/client.key}
spool: {dir: ../var/spool}
devices: {registry: devices.csv}
alerting: {rules: rules/local.yaml, state_dir: /var/lib/sanitel/alerting}
tickets: {dsn: tickets.db}
`)
	cfg := mustLoad(t, path)
	etc := filepath.Join(dir, "etc")
	checks := map[string][2]string{
		"mqtt.tls.ca_file":   {cfg.MQTT.TLS.CAFile, filepath.Join(etc, "tls", "ca.pem")},
		"mqtt.tls.cert_file": {cfg.MQTT.TLS.CertFile, filepath.Join(etc, "tls", "client.pem")},
		"mqtt.tls.key_file":  {cfg.MQTT.TLS.KeyFile, filepath.Join(etc, "tls", "client.key")},
		"spool.dir":          {cfg.Spool.Dir, filepath.Join(dir, "var", "spool")},
		"devices.registry":   {cfg.Devices.Registry, filepath.Join(etc, "devices.csv")},
		"alerting.rules":     {cfg.Alerting.Rules, filepath.Join(etc, "rules", "local.yaml")},
		"alerting.state_dir": {cfg.Alerting.StateDir, "/var/lib/sanitel/alerting"},
		"tickets.dsn":        {cfg.Tickets.DSN, filepath.Join(etc, "tickets.db")},
	}
	for key, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", key, c[0], c[1])
		}
	}

	for _, dsn := range []string{"file:tickets.db?_pragma=busy_timeout(5000)", "postgres://sanitel@db/tickets", ":memory:"} {
		writeFile(t, path, "tickets: {dsn: \""+dsn+"\"}\n")
		if got := mustLoad(t, path).Tickets.DSN; got != dsn {
			t.Errorf("dsn %q became %q; only plain paths are resolved", dsn, got)
		}
	}
}

// secretConfig has a secret in every place one can be.
const secretConfig = `
mqtt:
  broker: mqtts://broker.example.org:8883
  username: sanitel
  password: mqtt-password-value
influx:
  url: https://influx.example.org
  token: influx-token-value
tickets:
  dsn: postgres://pguser:pg-dsn-pass@db.example.org/tickets?sslmode=verify-full&password=pg-query-pass
  notify:
    webhooks:
      - url: https://oapi.dingtalk.com/robot/send?access_token=dingtalk-token-value&x=1
        secret: webhook-secret-value
http:
  tokens:
    - {name: office, role: supervisor, token: office-token-value-0123}
    - {name: roads, role: unit, org_unit: 区环卫所, token: roads-token-value-0123}
`

var secretValues = []string{
	"mqtt-password-value", "influx-token-value",
	"pg-dsn-pass", "pg-query-pass", "dingtalk-token-value", "webhook-secret-value",
	"office-token-value-0123", "roads-token-value-0123",
}

func TestMaskedHidesSecrets(t *testing.T) {
	clearEnv(t)
	path := filepath.Join(t.TempDir(), "sanitel.yaml")
	writeFile(t, path, secretConfig)
	cfg := mustLoad(t, path)

	var yamlOut bytes.Buffer
	if err := cfg.WriteMasked(&yamlOut); err != nil {
		t.Fatal(err)
	}
	var textLog, jsonLog bytes.Buffer
	slog.New(slog.NewTextHandler(&textLog, nil)).Info("config", "config", cfg)
	slog.New(slog.NewJSONHandler(&jsonLog, nil)).Info("config", "config", cfg,
		"mqtt", cfg.MQTT, "http", cfg.HTTP, "token", cfg.HTTP.Tokens[0], "tickets", cfg.Tickets)
	if !json.Valid(bytes.TrimSpace(jsonLog.Bytes())) {
		t.Errorf("JSON log is not JSON: %s", jsonLog.String())
	}
	outputs := map[string]string{
		"WriteMasked": yamlOut.String(),
		"text log":    textLog.String(),
		"JSON log":    jsonLog.String(),
		"%v":          fmt.Sprintf("%v", *cfg),
		"%+v":         fmt.Sprintf("%+v", cfg.HTTP),
		"%s":          fmt.Sprintf("%s", cfg.MQTT),
	}
	for name, out := range outputs {
		for _, s := range secretValues {
			if strings.Contains(out, s) {
				t.Errorf("%s leaks %q:\n%s", name, s, out)
			}
		}
		if !strings.Contains(out, Mask) {
			t.Errorf("%s shows no %q:\n%s", name, Mask, out)
		}
	}
	for _, want := range []string{
		`password: '***'`,
		`dsn: postgres://***@db.example.org/tickets?sslmode=verify-full&password=***`,
		`url: https://oapi.dingtalk.com/robot/send?access_token=***&x=1`,
		`org_unit: 区环卫所`,
	} {
		if !strings.Contains(yamlOut.String(), want) {
			t.Errorf("masked YAML lacks %q:\n%s", want, yamlOut.String())
		}
	}

	// Durations as the config spells them, not in nanoseconds.
	if want := `"keep_alive":"30s"`; !strings.Contains(jsonLog.String(), want) {
		t.Errorf("JSON log lacks %s:\n%s", want, jsonLog.String())
	}

	// Masking copies: the loaded config keeps its secrets.
	if cfg.HTTP.Tokens[0].Token != "office-token-value-0123" || cfg.MQTT.Password != "mqtt-password-value" {
		t.Fatal("Masked changed the original config")
	}
}

func TestScalarConversions(t *testing.T) {
	clearEnv(t)
	path := filepath.Join(t.TempDir(), "sanitel.yaml")
	writeFile(t, path, `
MQTT:
  Client_ID: 42
  qos: "2"
  clean_session: yes
influx: {gzip: "off", batch_size: 1e3}
devices: {reference_temp_c: 20, max_payload_bytes: 32768, accept_window: 36h}
spool: {commit_interval: 0}
http:
  tokens:
    - {NAME: ops, Role: ADMIN, token: "0123456789012345"}
tickets:
  notify:
    webhooks:
      - {url: "https://h.example.org", events: close}
`)
	cfg := mustLoad(t, path)
	got := []any{cfg.MQTT.ClientID, cfg.MQTT.QoS, cfg.MQTT.CleanSession, cfg.Influx.Gzip, cfg.Influx.BatchSize,
		cfg.Devices.ReferenceTempC, cfg.Devices.MaxPayloadBytes, cfg.Devices.AcceptWindow, cfg.Spool.CommitInterval,
		cfg.HTTP.Tokens[0].Name, cfg.HTTP.Tokens[0].Role, cfg.HTTP.Tokens[0].Token, cfg.Tickets.Notify.Webhooks[0].Events}
	want := []any{"42", 2, true, false, 1000, 20.0, int64(32768), 36 * time.Hour, time.Duration(0),
		"ops", RoleAdmin, "0123456789012345", []string{EventClose}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %#v\nwant %#v", got, want)
	}
}

func TestMaskURL(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://127.0.0.1:1883":                        "tcp://127.0.0.1:1883",
		"tcp://u:p@127.0.0.1:1883":                    "tcp://***@127.0.0.1:1883",
		"u:p@127.0.0.1:1883":                          "***@127.0.0.1:1883",
		"https://h/p@x?a=1&api_key=k&sign=s#frag":     "https://h/p@x?a=1&api_key=***&sign=***#frag",
		"hooks.example.org/send?access_token=abc&b=2": "hooks.example.org/send?access_token=***&b=2",
		"https://u:p@@h:1/x":                          "https://***@h:1/x",
	} {
		if got := maskURL(in); got != want {
			t.Errorf("maskURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMaskDSN(t *testing.T) {
	for in, want := range map[string]string{
		"data/tickets.db":                     "data/tickets.db",
		"host=db user=s password=hunter2 x=1": "host=db user=s password=*** x=1",
		"host=db password='a b' x=1":          "host=db password=*** x=1",
		"postgres://u@db/t":                   "postgres://***@db/t",
	} {
		if got := maskDSN(in); got != want {
			t.Errorf("maskDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWriteMaskedRoundTrip: the printed effective config loads back as
// the same config when it has no secrets.
func TestWriteMaskedRoundTrip(t *testing.T) {
	clearEnv(t)
	cfg := mustLoad(t, exampleConfig)
	cfg.Tickets.Notify.Webhooks = []Webhook{{URL: "https://h.example.org", Events: []string{EventClose}, Timeout: 1500 * time.Millisecond}}
	cfg.HTTP.Tokens = []HTTPToken{}
	cfg.Spool.SegmentBytes = 5_000_000
	cfg.Devices.ReferenceTempC = 20.5
	var buf bytes.Buffer
	if err := cfg.WriteMasked(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "effective.yaml")
	writeFile(t, path, buf.String())
	back := mustLoad(t, path)
	if !reflect.DeepEqual(back, cfg) {
		var got bytes.Buffer
		_ = back.WriteMasked(&got)
		t.Fatalf("round trip changed the config:\n%s\nwant:\n%s", got.String(), buf.String())
	}
	for _, want := range []string{"max_bytes: 1GiB", "segment_bytes: 5MB", "accept_window: 7d", "commit_interval: 2ms", "timeout: 1.5s"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("effective config lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestBadConfigs loads every testdata/*.bad.yaml; its "# want:" lines are
// the substrings the error must contain.
func TestBadConfigs(t *testing.T) {
	clearEnv(t)
	testenv.BadFiles(t, "testdata/*.bad.yaml", ".bad.yaml", 12, func(file string) error {
		_, err := Load(file)
		return err
	})
}

func TestManyErrorsJoined(t *testing.T) {
	clearEnv(t)
	_, err := Load("testdata/many_errors.bad.yaml")
	if err == nil {
		t.Fatal("no error")
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok || len(joined.Unwrap()) != 4 {
		t.Fatalf("want 4 joined errors, got:\n%v", err)
	}
}

func TestParseByteSize(t *testing.T) {
	good := map[string]int64{
		"0": 0, "65536": 65536, "64KiB": 64 << 10, "64kib": 64 << 10, "512MB": 512e6, "1GiB": 1 << 30,
		"1 GiB": 1 << 30, "1.5GiB": 3 << 29, "2TiB": 2 << 40, "10kB": 10000, "7B": 7,
	}
	for in, want := range good {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "KiB", "-1", "1 gigabyte", "1.2.3MB", "99999999999TiB", "1e9", "0x10"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		}
	}
	for n, want := range map[int64]string{0: "0", 1 << 30: "1GiB", 512e6: "512MB", 64 << 10: "64KiB", 1500: "1500", 2000: "2kB"} {
		if got := FormatByteSize(n); got != want {
			t.Errorf("FormatByteSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestByteSizeFields guards the rule decode relies on: every int64 field
// is a byte size, named *_bytes.
func TestByteSizeFields(t *testing.T) {
	for _, lf := range leafKeys(Default()) {
		isInt64 := lf.value.Kind() == reflect.Int64 && lf.value.Type() != durationType
		if isInt64 != strings.HasSuffix(lf.key, "_bytes") {
			t.Errorf("%s: int64 fields and only they must be byte sizes named *_bytes", lf.key)
		}
	}
}

// TestEveryKeyHasEnv checks that every key of the example has its own
// environment variable, which viper would silently shadow otherwise.
func TestEveryKeyHasEnv(t *testing.T) {
	seen := map[string]string{}
	for _, lf := range leafKeys(Default()) {
		name := envName(lf.key)
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s share %s", lf.key, other, name)
		}
		seen[name] = lf.key
	}
	if seen["SANITEL_MQTT_TLS_CA_FILE"] != "mqtt.tls.ca_file" || seen["SANITEL_SPOOL_MAX_BYTES"] != "spool.max_bytes" {
		t.Fatalf("unexpected env names: %v", seen)
	}
}

func TestUnknownEnv(t *testing.T) {
	var got []string
	for _, u := range UnknownEnv([]string{
		"SANITEL_INFLUX_TOKN=x", "SANITEL_INFLUX_TOKEN=y", "SANITEL_CONFIG=/etc/sanitel.yaml",
		"SANITEL_HTTP_TOKENS=[]", "SANITEL_NOTHING_LIKE_IT=1", "HOME=/root", "SANITEL_MQTT_TLS_CA_FILE=ca.pem",
	}) {
		got = append(got, u.String())
	}
	want := []string{
		"SANITEL_INFLUX_TOKN is not a setting and is ignored (did you mean SANITEL_INFLUX_TOKEN?)",
		"SANITEL_NOTHING_LIKE_IT is not a setting and is ignored",
	}
	if !slices.Equal(got, want) {
		t.Errorf("UnknownEnv = %q, want %q", got, want)
	}
}
