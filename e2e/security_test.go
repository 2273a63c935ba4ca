package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sanitel/sanitel/internal/testenv"
)

// secureBroker is a private Mosquitto as configs/mosquitto/ sets one up for
// production: a TLS listener that wants a client certificate, a password
// for every client, and the shipped ACL (devices publish only under their
// own id).
type secureBroker struct {
	*testenv.Mosquitto
	CA, ClientCert, ClientKey string
}

// Passwords of the broker's users; sanitel's doubles as a secret the
// secret test looks for in logs.
const (
	sanitelMQTTPassword = "mqtt-pw-Kq8vZ3xW"
	devicePassword      = "device-pw-Jt5mR2"
)

func startSecureBroker(t *testing.T, root string) *secureBroker {
	t.Helper()
	dir := t.TempDir()
	ca, srvCert, srvKey, cliCert, cliKey := testenv.GenerateTLS(t, dir)
	passwd := filepath.Join(dir, "passwd")
	testenv.WritePasswordFile(t, passwd, map[string]string{
		"sanitel": sanitelMQTTPassword, "bin-001": devicePassword, "bin-002": devicePassword,
	})
	acl, err := os.ReadFile(filepath.Join(repoRoot(t), "configs", "mosquitto", "acl.example"))
	if err != nil {
		t.Fatal(err)
	}
	// The shipped ACL names the default topic root; the test's root is
	// unique, as the ACL's comment says to change it.
	aclFile := filepath.Join(dir, "acl")
	if err := os.WriteFile(aclFile, []byte(strings.ReplaceAll(string(acl), "sanitation/", root+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	m := testenv.StartMosquitto(t, testenv.MosquittoOptions{
		TLS:          &testenv.MosquittoTLS{CAFile: ca, CertFile: srvCert, KeyFile: srvKey, RequireCertificate: true},
		PasswordFile: passwd, ACLFile: aclFile, DenyAnonymous: true,
	})
	return &secureBroker{Mosquitto: m, CA: ca, ClientCert: cliCert, ClientKey: cliKey}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// mqttSection is the mqtt section of a config for this broker's TLS
// listener, with the given CA and password.
func (b *secureBroker) mqttSection(e *Env, ca, password string) string {
	return fmt.Sprintf(`mqtt:
  broker: %s
  client_id: %s
  topic_root: %s
  username: sanitel
  password: %q
  tls:
    ca_file: %s
    cert_file: %s
    key_file: %s
    server_name: localhost
`, b.TLSAddr, e.Root, e.Root, password, ca, b.ClientCert, b.ClientKey)
}

// withMQTT replaces the mqtt section of a config from Env.Config.
func withMQTT(cfg, section string) string {
	rest := cfg[strings.Index(cfg, "\ninflux:")+1:]
	return section + rest
}

// devicePublisher connects to the broker's TLS listener as a device.
func (b *secureBroker) devicePublisher(t *testing.T, user string) *Publisher {
	t.Helper()
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(b.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(b.ClientCert, b.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	o := mqtt.NewClientOptions().AddBroker(b.TLSAddr).SetClientID(user + "-" + testenv.UniqueName(t)).
		SetUsername(user).SetPassword(devicePassword).SetCleanSession(true).
		SetTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s over TLS: %v", user, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &Publisher{t: t, c: c}
}

const twoBins = `devices:
  - {id: bin-001, kind: bin, site: 解放路菜市场, street: 解放街道, org_unit: 区环卫所}
  - {id: bin-002, kind: bin, site: 和平路, street: 解放街道, org_unit: 区环卫所}
`

// TestMQTTOverTLSWithPasswordAndACL: sanitel ingests through a TLS listener
// with a client certificate and a password; a device can publish only as
// itself (the broker's ACL refuses another id in the topic, sanitel
// refuses another id in the body).
func TestMQTTOverTLSWithPasswordAndACL(t *testing.T) {
	e := NewEnv(t, twoBins)
	b := startSecureBroker(t, e.Root)
	s := e.StartSanitel(withMQTT(e.Config(e.Influx.URL, ""), b.mqttSection(e, b.CA, sanitelMQTTPassword)))
	if got := s.Metric("sanitel_mqtt_connected"); got != 1 {
		t.Fatalf("sanitel_mqtt_connected = %v, want 1", got)
	}
	pub := b.devicePublisher(t, "bin-001")
	ts := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	reading := func(i int, extra string) string {
		return fmt.Sprintf(`{"ts":%d,%s"fill_pct":%d}`, ts.Add(time.Duration(i)*time.Second).UnixMilli(), extra, 10+i)
	}
	r := e.Root
	// bin-001 forging bin-002: in the topic (the broker drops it), in the
	// body (sanitel rejects it); then its own reading, which must land.
	pub.Publish(r+"/bin/bin-002/telemetry", reading(0, ""))
	pub.Publish(r+"/bin/bin-001/telemetry", reading(1, `"device_id":"bin-002",`))
	pub.Publish(r+"/bin/bin-001/telemetry", reading(2, ""))

	Eventually(t, 20*time.Second, func() bool { return len(e.points("bin", "")) > 0 },
		func() string { return "the reading sent over TLS never reached InfluxDB\n" + tail(s.Log(), 3000) })
	bins := e.points("bin", "")
	if len(bins) != 1 {
		t.Fatalf("%d bin points, want only bin-001's own reading: %v", len(bins), bins)
	}
	checkPoint(t, "bin", bins[0], map[string]any{"time": ts.Add(2 * time.Second), "device_id": "bin-001",
		"site": "解放路菜市场", "street": "解放街道", "org_unit": "区环卫所", "fill_pct": 12.0})
	// Messages from one client arrive in order, so the forgeries before
	// the reading that landed were handled by now.
	if got := s.Metric("sanitel_ingest_rejected_total", "reason", "device_mismatch"); got != 1 {
		t.Errorf("rejected device_mismatch = %v, want 1", got)
	}
	if got := s.Metric("sanitel_ingest_messages_total"); got != 1 {
		t.Errorf("sanitel_ingest_messages_total = %v, want 1 (the broker must drop the forged topic)", got)
	}
}

// TestMQTTRefusedConnectionStopsStartUp: with a CA that did not sign the
// broker's certificate, or a wrong password, `sanitel serve` exits at once
// and names the keys to fix.
func TestMQTTRefusedConnectionStopsStartUp(t *testing.T) {
	e := NewEnv(t, twoBins)
	b := startSecureBroker(t, e.Root)
	otherCA, _, _, _, _ := testenv.GenerateTLS(t, t.TempDir())
	for _, c := range []struct {
		name, ca, password string
		want               []string
	}{
		{"wrong CA", otherCA, sanitelMQTTPassword, []string{"certificate signed by unknown authority", "check mqtt.tls.ca_file"}},
		{"wrong password", b.CA, "not-the-password", []string{"refused the login of user \"sanitel\"", "check mqtt.username and mqtt.password"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sanitel.yaml")
			cfg := withMQTT(e.Config(e.Influx.URL, ""), b.mqttSection(e, c.ca, c.password))
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, sanitelBin, "serve", "--config", path).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("sanitel serve: %v, want exit status 1\n%s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), c.password) {
				t.Errorf("the password is in the output:\n%s", out)
			}
		})
	}
}

// TestSecretsStayOutOfLogsAndCheckConfig runs sanitel with every kind of
// secret — the MQTT password, the InfluxDB token, HTTP tokens inline and
// from a file, a webhook secret — exercises the API (401, 403, a ticket
// that fires the webhook) and the broker, and then looks for the secrets in
// everything sanitel printed and in `sanitel check-config`.
func TestSecretsStayOutOfLogsAndCheckConfig(t *testing.T) {
	e := NewEnv(t, twoBins)
	b := startSecureBroker(t, e.Root)
	const (
		influxToken   = "influx-user:influx-tok-Hn4wQ9"
		officeToken   = "office-token-Vb7pL1xC2z"
		screenToken   = "screen-token-Gd3sT8yE6k"
		webhookSecret = "webhook-secret-Ur5nM0aF"
		accessToken   = "access-token-Pz6cW4qS"
	)
	secrets := []string{sanitelMQTTPassword, influxToken, "influx-tok-Hn4wQ9", officeToken, screenToken, webhookSecret, accessToken}

	var hookMu sync.Mutex
	var hookBodies []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		hookMu.Lock()
		hookBodies = append(hookBodies, fmt.Sprint(r.Header)+string(body))
		hookMu.Unlock()
	}))
	t.Cleanup(hook.Close)

	tokenFile := filepath.Join(e.Dir, "office.token")
	if err := os.WriteFile(tokenFile, []byte(officeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := withMQTT(e.Config(e.Influx.URL, ""), b.mqttSection(e, b.CA, sanitelMQTTPassword))
	cfg = strings.Replace(cfg, `  token: "user:pass"`, fmt.Sprintf("  token: %q", influxToken), 1)
	cfg = strings.Replace(cfg, "http:\n", fmt.Sprintf(`http:
  tokens:
    - {name: office, role: supervisor, token_file: %s}
    - {name: depot-screen, role: viewer, token: %q}
`, tokenFile, screenToken), 1)
	cfg = strings.Replace(cfg, "tickets:\n", fmt.Sprintf(`tickets:
  notify:
    webhooks:
      - {url: %q, secret: %q}
      - {url: "http://127.0.0.1:%d/robot/send?access_token=%s"}
`, hook.URL, webhookSecret, testenv.FreePort(t), accessToken), 1)
	for _, s := range []string{influxToken, "token_file", webhookSecret} {
		if !strings.Contains(cfg, s) {
			t.Fatalf("config lacks %q:\n%s", s, cfg)
		}
	}

	s := e.StartSanitel(cfg)
	pub := b.devicePublisher(t, "bin-001")
	pub.Publish(e.Root+"/bin/bin-001/telemetry", fmt.Sprintf(`{"ts":%d,"fill_pct":50}`, time.Now().Add(-time.Second).UnixMilli()))
	Eventually(t, 20*time.Second, func() bool { return len(e.points("bin", "")) == 1 },
		func() string { return "the reading never reached InfluxDB\n" + tail(s.Log(), 3000) })

	// The API: no token, an unknown token (a near miss of a real one), a
	// viewer creating a ticket, and the supervisor doing so.
	manual := fmt.Sprintf(`{"street":"解放街道","org_unit":"区环卫所","title":"垃圾满溢","requirement":"当日清运","severity":"warning","deadline":%q}`,
		time.Now().Add(24*time.Hour).UTC().Format(time.RFC3339))
	for _, c := range []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"no token", "GET", "/api/v1/tickets", "", "", 401},
		{"unknown token", "GET", "/api/v1/tickets", officeToken[:len(officeToken)-1] + "X", "", 401},
		{"viewer reads", "GET", "/api/v1/tickets", screenToken, "", 200},
		{"viewer creates", "POST", "/api/v1/tickets", screenToken, manual, 403},
		{"supervisor (token from a file) creates", "POST", "/api/v1/tickets", officeToken, manual, 201},
	} {
		req, err := http.NewRequest(c.method, s.URL+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.want)
		}
	}
	Eventually(t, 20*time.Second, func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		return len(hookBodies) > 0
	}, func() string { return "the webhook was never called\n" + tail(s.Log(), 3000) })
	// The second webhook has nobody listening: its failure is logged.
	Eventually(t, 20*time.Second, func() bool { return strings.Contains(s.Log(), "webhook delivery failed") },
		func() string { return "no failed webhook delivery logged\n" + tail(s.Log(), 3000) })
	s.Stop()

	out, err := exec.Command(sanitelBin, "check-config", "--config", s.cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "'***'"); n < 5 {
		t.Errorf("check-config shows %d masked secrets, want 5 (password, influx token, 2 http tokens, webhook secret):\n%s", n, out)
	}
	if !strings.Contains(string(out), "access_token=***") {
		t.Errorf("check-config does not mask the webhook's access_token:\n%s", out)
	}
	hookMu.Lock()
	hooks := strings.Join(hookBodies, "\n")
	hookMu.Unlock()
	for name, text := range map[string]string{"sanitel serve's log": s.Log(), "check-config": string(out), "the webhook request": hooks} {
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains the secret %q", name, secret)
			}
		}
	}
	if !strings.Contains(s.Log(), `"status":401`) && !strings.Contains(s.Log(), "status=401") {
		t.Errorf("the log shows no 401: the test looked at too little\n%s", tail(s.Log(), 2000))
	}
}
