package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// waitLimit bounds every wait for a message or an acknowledgement; reaching
// it means the test failed, not that it was slow.
const waitLimit = 20 * time.Second

// clientOpts are options for a test client of broker addr.
func clientOpts(addr, id string) *mqtt.ClientOptions {
	return mqtt.NewClientOptions().
		AddBroker(addr).
		SetClientID(id).
		SetAutoReconnect(false).
		SetConnectTimeout(waitLimit).
		SetWriteTimeout(waitLimit)
}

// connect connects a client, failing the test if it cannot, and disconnects
// it when the test ends.
func connect(t *testing.T, opts *mqtt.ClientOptions) mqtt.Client {
	t.Helper()
	c, err := tryConnect(opts)
	if err != nil {
		t.Fatalf("connect %s: %v", opts.ClientID, err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func tryConnect(opts *mqtt.ClientOptions) (mqtt.Client, error) {
	c := mqtt.NewClient(opts)
	if err := await(c.Connect()); err != nil {
		return nil, err
	}
	return c, nil
}

// await waits for a token and returns its error.
func await(tok mqtt.Token) error {
	if !tok.WaitTimeout(waitLimit) {
		return fmt.Errorf("no answer within %v", waitLimit)
	}
	return tok.Error()
}

type message struct {
	topic    string
	payload  string
	retained bool
}

// inbox collects messages delivered to a handler.
type inbox chan message

func newInbox() inbox { return make(inbox, 100) }

func (in inbox) handler(_ mqtt.Client, m mqtt.Message) {
	in <- message{topic: m.Topic(), payload: string(m.Payload()), retained: m.Retained()}
}

// next returns the next message, failing the test if none comes.
func (in inbox) next(t *testing.T) message {
	t.Helper()
	select {
	case m := <-in:
		return m
	case <-time.After(waitLimit):
		t.Fatalf("no message within %v", waitLimit)
		return message{}
	}
}

func subscribe(t *testing.T, c mqtt.Client, topic string, in inbox) {
	t.Helper()
	if err := await(c.Subscribe(topic, 1, in.handler)); err != nil {
		t.Fatalf("subscribe %s: %v", topic, err)
	}
}

func publish(t *testing.T, c mqtt.Client, topic, payload string, retained bool) {
	t.Helper()
	if err := await(c.Publish(topic, 1, retained, payload)); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

func TestTestenvMosquittoPubSub(t *testing.T) {
	t.Parallel()
	m := StartMosquitto(t, MosquittoOptions{})
	if want := fmt.Sprintf("tcp://127.0.0.1:%d", m.Port); m.Addr != want {
		t.Errorf("Addr = %q, want %q", m.Addr, want)
	}

	sub := connect(t, clientOpts(m.Addr, "sub"))
	in := newInbox()
	subscribe(t, sub, "sanitation/bin/+/telemetry", in)
	pub := connect(t, clientOpts(m.Addr, "pub"))
	publish(t, pub, "sanitation/bin/bin-0001/telemetry", `{"fill_pct":73.5}`, false)

	got := in.next(t)
	if got.topic != "sanitation/bin/bin-0001/telemetry" || got.payload != `{"fill_pct":73.5}` {
		t.Errorf("got %+v", got)
	}

	conf, err := os.ReadFile(m.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"persistence true", "max_inflight_messages 1000", "max_queued_messages 1000000", "allow_anonymous true"} {
		if !strings.Contains(string(conf), "\n"+line+"\n") {
			t.Errorf("config lacks %q:\n%s", line, conf)
		}
	}
}

// TestTestenvMosquittoRestartKeepsState checks that a restarted broker still
// has its retained messages and a persistent session with its subscription
// and the messages queued for it, before and after the restart.
func TestTestenvMosquittoRestartKeepsState(t *testing.T) {
	t.Parallel()
	m := StartMosquitto(t, MosquittoOptions{})

	durable := clientOpts(m.Addr, "durable").SetCleanSession(false)
	c := connect(t, durable)
	subscribe(t, c, "queue/+", newInbox())
	c.Disconnect(100)

	pub := connect(t, clientOpts(m.Addr, "pub"))
	publish(t, pub, "sanitation/bin/bin-0001/status", "online", true)
	publish(t, pub, "queue/1", "before restart", false)
	pub.Disconnect(100)

	m.Restart()

	pub = connect(t, clientOpts(m.Addr, "pub2"))
	publish(t, pub, "queue/2", "after restart", false)

	// The session, not a new subscription, delivers the queued messages.
	queued := newInbox()
	connect(t, durable.SetDefaultPublishHandler(queued.handler))
	for _, want := range []message{{"queue/1", "before restart", false}, {"queue/2", "after restart", false}} {
		if got := queued.next(t); got != want {
			t.Errorf("queued message = %+v, want %+v", got, want)
		}
	}

	in := newInbox()
	subscribe(t, connect(t, clientOpts(m.Addr, "late")), "sanitation/bin/+/status", in)
	if got, want := in.next(t), (message{"sanitation/bin/bin-0001/status", "online", true}); got != want {
		t.Errorf("retained message = %+v, want %+v", got, want)
	}

	// A killed broker comes back on the same port.
	m.Kill()
	m.Start()
	connect(t, clientOpts(m.Addr, "after-kill"))
}

func TestTestenvMosquittoTLS(t *testing.T) {
	t.Parallel()
	ca, srvCert, srvKey, cliCert, cliKey := GenerateTLS(t, t.TempDir())
	m := StartMosquitto(t, MosquittoOptions{TLS: &MosquittoTLS{
		CAFile: ca, CertFile: srvCert, KeyFile: srvKey, RequireCertificate: true,
	}})
	if want := fmt.Sprintf("ssl://127.0.0.1:%d", m.TLSPort); m.TLSAddr != want || m.TLSPort == m.Port {
		t.Fatalf("TLSAddr = %q (plain port %d), want %q", m.TLSAddr, m.Port, want)
	}

	caPEM, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in", ca)
	}
	pair, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}

	c := connect(t, clientOpts(m.TLSAddr, "tls").SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}))
	in := newInbox()
	subscribe(t, c, "tls/test", in)
	publish(t, c, "tls/test", "over tls", false)
	if got := in.next(t); got.payload != "over tls" {
		t.Errorf("got %+v", got)
	}

	// The listener requires a client certificate.
	if c, err := tryConnect(clientOpts(m.TLSAddr, "no-cert").SetTLSConfig(&tls.Config{RootCAs: roots})); err == nil {
		c.Disconnect(0)
		t.Error("connected without a client certificate")
	}
}

// TestTestenvShippedMosquittoConfig starts a broker from
// configs/mosquitto/mosquitto.conf and acl.example, with only ports, paths
// and log destination rewritten, and checks what the ACL promises.
func TestTestenvShippedMosquittoConfig(t *testing.T) {
	t.Parallel()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile(filepath.Join(root, "configs", "mosquitto", "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := t.TempDir()
	passwd := filepath.Join(secrets, "passwd")
	WritePasswordFile(t, passwd, map[string]string{
		"sanitel":    "s3cret",
		"chirpstack": "cs-pass",
		"bin-0001":   "pw-0001",
		"bin-0002":   "pw-0002",
	})

	m := startMosquittoConf(t, false, func(dir string, port, _ int) string {
		conf, missing := rewriteConf(string(shipped), map[string]string{
			"listener":             fmt.Sprintf("%d 127.0.0.1", port),
			"persistence_location": filepath.Join(dir, "data") + "/",
			"password_file":        passwd,
			"acl_file":             filepath.Join(root, "configs", "mosquitto", "acl.example"),
			"log_dest":             "stderr",
		})
		if len(missing) > 0 {
			t.Fatalf("shipped mosquitto.conf lacks %v", missing)
		}
		if isRoot() {
			conf += "\nuser root\n"
		}
		return conf
	})

	login := func(user, pass string) *mqtt.ClientOptions {
		return clientOpts(m.Addr, user).SetUsername(user).SetPassword(pass)
	}
	if c, err := tryConnect(clientOpts(m.Addr, "anonymous")); err == nil {
		c.Disconnect(0)
		t.Error("anonymous client connected")
	}
	if c, err := tryConnect(login("bin-0001", "wrong")); err == nil {
		c.Disconnect(0)
		t.Error("client with a wrong password connected")
	}

	sanitel := connect(t, login("sanitel", "s3cret"))
	in := newInbox()
	subscribe(t, sanitel, "sanitation/#", in)
	subscribe(t, sanitel, "application/+/device/+/event/up", in)

	// A device cannot publish under another device's id. Mosquitto drops a
	// denied publish silently; delivery is in order, so the forged message
	// would arrive before the device's own one.
	dev := connect(t, login("bin-0001", "pw-0001"))
	publish(t, dev, "sanitation/bin/bin-0002/telemetry", "forged", false)
	publish(t, dev, "sanitation/bin/bin-0001/telemetry", "own", false)
	if got, want := in.next(t), (message{"sanitation/bin/bin-0001/telemetry", "own", false}); got != want {
		t.Errorf("sanitel got %+v, want %+v", got, want)
	}

	cs := connect(t, login("chirpstack", "cs-pass"))
	publish(t, cs, "application/7/device/0011223344556677/event/up", "uplink", false)
	if got, want := in.next(t), (message{"application/7/device/0011223344556677/event/up", "uplink", false}); got != want {
		t.Errorf("sanitel got %+v, want %+v", got, want)
	}
}

// rewriteConf replaces the value of the first uncommented line of each key
// and reports the keys it did not find.
func rewriteConf(conf string, values map[string]string) (string, []string) {
	done := map[string]bool{}
	lines := strings.Split(conf, "\n")
	for n, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if v, ok := values[f[0]]; ok && !done[f[0]] {
			lines[n] = f[0] + " " + v
			done[f[0]] = true
		}
	}
	var missing []string
	for k := range values {
		if !done[k] {
			missing = append(missing, k)
		}
	}
	return strings.Join(lines, "\n"), missing
}
