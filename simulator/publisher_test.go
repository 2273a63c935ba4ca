package simulator

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/sanitel/sanitel/devices"
)

// received is one message a test subscriber got.
type received struct {
	topic   string
	payload []byte
	at      time.Time
}

// subscriber collects everything published on a broker.
type subscriber struct {
	client mqtt.Client
	mu     sync.Mutex
	msgs   []received
}

func subscribe(t *testing.T, url, clientID string) *subscriber {
	t.Helper()
	s := &subscriber{}
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).SetAutoReconnect(false).SetCleanSession(true).SetOrderMatters(false)
	s.client = mqtt.NewClient(o)
	if tok := s.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	tok := s.client.Subscribe("#", 1, func(_ mqtt.Client, m mqtt.Message) {
		r := received{topic: m.Topic(), payload: append([]byte(nil), m.Payload()...), at: time.Now()}
		s.mu.Lock()
		s.msgs = append(s.msgs, r)
		s.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { s.client.Disconnect(100) })
	return s
}

// wait returns the messages once n have arrived (fails after 20 s).
func (s *subscriber) wait(t *testing.T, n int) []received {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.mu.Lock()
		got := len(s.msgs)
		s.mu.Unlock()
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber got %d messages, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond) // polling a counter, not timing
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

func TestRunCountAgainstMosquitto(t *testing.T) {
	b := startMosquitto(t)
	sub := subscribe(t, b.url, "sub-"+t.Name())
	goroutines := runtime.NumGoroutine()

	regOut := filepath.Join(t.TempDir(), "devices.csv")
	var progress bytes.Buffer
	const devs, count, conns = 300, 5000, 3
	sum, err := Run(context.Background(), Options{
		Broker: b.url, Generate: devs, RegistryOut: regOut, Seed: 21, Count: count,
		Faults: AllFaults(), Connections: conns, Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("summary: %s", sum)
	if sum.Sent != count || sum.Acked != count || sum.Errors != 0 {
		t.Errorf("sent %d, acked %d, errors %d: want %d, %d, 0", sum.Sent, sum.Acked, sum.Errors, count, count)
	}
	if sum.Statuses != 2*devs || sum.StatusErrors != 0 {
		t.Errorf("statuses %d (%d failed), want %d", sum.Statuses, sum.StatusErrors, 2*devs)
	}
	faults := 0
	for _, n := range sum.ByFault {
		faults += n
	}
	if faults == 0 || sum.ByFault[FaultChirpStack] == 0 {
		t.Errorf("by fault %v: want faults", sum.ByFault)
	}
	if sum.SimEnd.After(time.Now()) || sum.SimStart.After(sum.SimEnd) {
		t.Errorf("simulated %s … %s: want it to end before now", sum.SimStart, sum.SimEnd)
	}
	if !strings.Contains(progress.String(), "sent 5000 (") {
		t.Errorf("progress %q lacks the final count", progress.String())
	}

	// Everything arrives: the stream, the statuses, and each connection's
	// online and offline.
	msgs := sub.wait(t, sum.Sent+sum.Statuses+2*conns)
	reg, err := devices.LoadRegistry(regOut)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := devices.NewDecoder(devices.DecoderOptions{Registry: reg})
	var m devices.Message
	stream, connStatus := 0, map[string]int{}
	reasons := map[devices.Reason]int{}
	lastStatus := map[string]string{}
	for _, r := range msgs {
		if strings.HasPrefix(r.topic, "sanitel-sim/") {
			connStatus[string(r.payload)]++
			continue
		}
		stream++
		// Decoded at the time it arrived: nothing may be from the future
		// but the skewed messages.
		err := dec.Decode(r.topic, r.payload, r.at, &m)
		var rej *devices.Rejection
		if errors.As(err, &rej) {
			reasons[rej.Reason]++
		} else if err != nil {
			t.Fatal(err)
		}
		if m.Type == devices.Status {
			lastStatus[m.DeviceID] = string(r.payload)
		}
	}
	if stream != sum.Sent+sum.Statuses {
		t.Errorf("subscriber got %d stream and status messages, want %d", stream, sum.Sent+sum.Statuses)
	}
	if connStatus["online"] != conns || connStatus["offline"] != conns {
		t.Errorf("connection statuses %v, want %d online and offline", connStatus, conns)
	}
	if len(lastStatus) != devs {
		t.Errorf("statuses for %d devices, want %d", len(lastStatus), devs)
	}
	for id, s := range lastStatus {
		if s != "offline" {
			t.Errorf("%s: last status %q, want offline after a clean end", id, s)
		}
	}
	if reasons[devices.ReasonBadJSON] != sum.ByFault[FaultMalformed] ||
		reasons[devices.ReasonDeviceMismatch] != sum.ByFault[FaultWrongID] ||
		reasons[devices.ReasonBadTimestamp] > sum.ByFault[FaultSkew] ||
		len(reasons) > 3 {
		t.Errorf("rejections %v for faults %v", reasons, sum.ByFault)
	}
	checkGoroutines(t, goroutines)
}

// checkGoroutines fails if more goroutines run than before (the test's
// subscriber excepted), once they have had time to stop.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Run, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunPacedBySpeedAndRate(t *testing.T) {
	b := startMosquitto(t)
	sub := subscribe(t, b.url, "sub-"+t.Name())
	for _, tc := range []struct {
		name     string
		opts     Options
		min, max time.Duration
	}{
		// 1.5 s of wall clock at 360×: nine simulated minutes, ending now.
		{"speed", Options{Speed: 360, Duration: 1500 * time.Millisecond}, 1400 * time.Millisecond, 3 * time.Second},
		// 1500 messages at 1000 msg/s (with a tenth of a second of burst).
		{"rate", Options{Rate: 1000, Count: 1500}, 1300 * time.Millisecond, 3 * time.Second},
		// As fast as possible for a second, from six days back.
		{"flood", Options{Duration: time.Second}, time.Second, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub.mu.Lock()
			sub.msgs = nil
			sub.mu.Unlock()
			opts := tc.opts
			opts.Broker, opts.Generate, opts.Seed, opts.ClientID = b.url, 200, 3, "sim-"+tc.name
			began := time.Now()
			sum, err := Run(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(began)
			t.Logf("%s: %s in %s", tc.name, sum, took)
			if took < tc.min || took > tc.max {
				t.Errorf("took %s, want %s–%s", took, tc.min, tc.max)
			}
			if sum.Sent == 0 || sum.Errors != 0 || sum.Acked != sum.Sent {
				t.Errorf("summary %s", sum)
			}
			msgs := sub.wait(t, sum.Sent+sum.Statuses)
			for _, r := range msgs {
				if ts := tsOf(r.payload); !ts.IsZero() && ts.After(r.at) {
					t.Fatalf("message from the future: ts %s arrived %s: %s", ts, r.at, r.payload)
				}
			}
		})
	}
}

// tsOf returns a native telemetry payload's ts, zero for anything else.
func tsOf(p []byte) time.Time {
	s := string(p)
	if !strings.HasPrefix(s, `{"ts":`) {
		return time.Time{}
	}
	s = s[len(`{"ts":`):]
	if strings.HasPrefix(s, `"`) {
		ts, _ := time.Parse(time.RFC3339Nano, s[1:1+strings.IndexByte(s[1:], '"')])
		return ts
	}
	ms, _ := strconv.ParseInt(s[:strings.IndexAny(s, ",}")], 10, 64)
	return time.UnixMilli(ms)
}

// TestRunLastsItsDuration: a quiet fleet (a report every ten minutes or
// so from 20 devices, in real time) still runs for the whole Duration
// instead of stopping when nothing more falls due before it.
func TestRunLastsItsDuration(t *testing.T) {
	b := startMosquitto(t)
	began := time.Now()
	sum, err := Run(context.Background(), Options{Broker: b.url, Generate: 20, Seed: 3, ClientID: "sim-quiet",
		Speed: 1, Duration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < 1500*time.Millisecond {
		t.Errorf("a 1.5 s run stopped after %s (%s)", took, sum)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	b := startMosquitto(t)
	goroutines := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	sum, err := Run(ctx, Options{Broker: b.url, Generate: 100, Seed: 4, Speed: 3600})
	if err != nil {
		t.Fatalf("a cancelled run is a normal stop, got %v", err)
	}
	if sum.Sent == 0 || sum.Statuses != 200 || sum.Errors != 0 {
		t.Errorf("summary %s: want messages and 200 statuses", sum)
	}
	checkGoroutines(t, goroutines)
}

func TestRunErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		err  string
	}{
		{"no broker", Options{Generate: 1}, "no broker"},
		{"no devices", Options{Broker: "tcp://127.0.0.1:1"}, "no devices"},
		{"bad speed", Options{Broker: "tcp://127.0.0.1:1", Generate: 1, Speed: -1}, "speed"},
		{"unreachable", Options{Broker: "tcp://127.0.0.1:1", Generate: 1}, "connect to tcp://127.0.0.1:1 as sanitel-sim-1"},
		{"bad registry out", Options{Broker: "tcp://127.0.0.1:1", Generate: 1, RegistryOut: "/nonexistent/x.csv"}, "write registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
}

func BenchmarkGenerate(b *testing.B) {
	g, err := NewGenerator(Options{Generate: 10_000, Seed: 1, Faults: AllFaults(), Start: testStart})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		m, _ := g.Next()
		n += len(m.Payload)
	}
	b.ReportMetric(float64(n)/float64(b.N), "payload-B/msg")
}

// BenchmarkRun publishes b.N messages (QoS 1, as fast as possible) to a
// local Mosquitto and reports the CPU the simulator and the broker spend
// per message: the simulator must cost little next to the broker.
// go test -run '^$' -bench BenchmarkRun -benchtime 500000x ./simulator/
func BenchmarkRun(b *testing.B) {
	br := startMosquitto(b)
	cpuSelf := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	cpuBroker := func() time.Duration {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(br.pid) + "/stat")
		if err != nil {
			b.Skip("no /proc: cannot measure the broker's CPU")
		}
		f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ 100
	}
	s0, b0 := cpuSelf(), cpuBroker()
	b.ResetTimer()
	sum, err := Run(context.Background(), Options{Broker: br.url, Generate: 10_000, Seed: 1, Count: b.N, Faults: AllFaults()})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if sum.Errors > 0 || sum.Sent != b.N {
		b.Fatalf("summary %s", sum)
	}
	s1, b1 := cpuSelf(), cpuBroker()
	b.ReportMetric(float64(s1-s0)/float64(b.N)/1e3, "sim-cpu-µs/msg")
	b.ReportMetric(float64(b1-b0)/float64(b.N)/1e3, "broker-cpu-µs/msg")
	b.ReportMetric(sum.Rate, "msg/s")
}

func TestRunQoSLevels(t *testing.T) {
	b := startMosquitto(t)
	for level := range 3 {
		t.Run("qos"+strconv.Itoa(level), func(t *testing.T) {
			sub := subscribe(t, b.url, "sub-qos"+strconv.Itoa(level))
			qos, err := QoSLevel(level)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := Run(context.Background(), Options{
				Broker: b.url, Generate: 50, Seed: 5, Count: 2000, QoS: qos, InFlight: 64,
				ClientID: "sim-qos" + strconv.Itoa(level), Faults: AllFaults(),
			})
			if err != nil {
				t.Fatal(err)
			}
			if sum.Sent != 2000 || sum.Acked != 2000 || sum.Errors != 0 || sum.Statuses != 100 {
				t.Fatalf("summary %s", sum)
			}
			sub.wait(t, sum.Sent+sum.Statuses+2)
		})
	}
}

// A broker that goes away and comes back: the simulator reconnects and
// carries on; what was in flight when it died counts as failed.
func TestRunReconnects(t *testing.T) {
	b := startMosquitto(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	type result struct {
		sum Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := Run(ctx, Options{
			Broker: b.url, Generate: 200, Seed: 6, Rate: 2000, Connections: 2,
			Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		done <- result{sum, err}
	}()
	first := subscribe(t, b.url, "sub-before")
	first.wait(t, 500)
	first.client.Disconnect(0)
	b.stop()
	b.start()
	after := subscribe(t, b.url, "sub-after")
	msgs := after.wait(t, 500)
	cancel()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	stream := 0
	for _, m := range msgs {
		if !strings.HasPrefix(m.topic, "sanitel-sim/") {
			stream++
		}
	}
	if stream == 0 {
		t.Fatalf("nothing but connection statuses after the restart")
	}
	if !strings.Contains(logs.String(), "reconnected") {
		t.Errorf("no reconnection logged:\n%s", logs.String())
	}
	if r.sum.Sent == 0 || r.sum.Acked+r.sum.Errors != r.sum.Sent {
		t.Errorf("summary %s: want acked + errors = sent", r.sum)
	}
	t.Logf("summary: %s", r.sum)
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunRefusedByBroker(t *testing.T) {
	b := startMosquitto(t, "allow_anonymous false")
	_, err := Run(context.Background(), Options{Broker: b.url, Generate: 5, Count: 10, Username: "nobody", Password: "wrong"})
	if err == nil || !strings.Contains(err.Error(), "connection refused: not authorised") {
		t.Fatalf("err %v, want the broker's refusal", err)
	}
}

func TestRunOverTLS(t *testing.T) {
	// Mosquitto started as root reads its certificate after dropping to
	// its own user, so the files must be readable to others (a private
	// test key, valid for an hour).
	dir, err := os.MkdirTemp("", "simtls")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	certPEM, keyPEM := selfSignedCert(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	b := startMosquitto(t, "certfile "+certFile, "keyfile "+keyFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	sum, err := Run(context.Background(), Options{
		Broker: "ssl://" + b.addr, TLS: &tls.Config{RootCAs: pool}, Generate: 50, Seed: 8, Count: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 1000 || sum.Acked != 1000 {
		t.Fatalf("summary %s", sum)
	}
	// Without the CA the certificate is refused.
	_, err = Run(context.Background(), Options{Broker: "ssl://" + b.addr, Generate: 5, Count: 10})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err %v, want a certificate error", err)
	}
}

func selfSignedCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestParseBroker(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"tcp://127.0.0.1:1883", "tcp://127.0.0.1:1883", ""},
		{"127.0.0.1:1884", "tcp://127.0.0.1:1884", ""},
		{"mqtt://broker", "tcp://broker:1883", ""},
		{"ssl://broker", "ssl://broker:8883", ""},
		{"mqtts://broker:9883", "ssl://broker:9883", ""},
		{"ws://broker:8080", "", "not supported"},
		{"tcp://", "", "no host"},
	} {
		u, err := parseBroker(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || u.String() != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.in, u, err, tc.want)
		}
	}
}

func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(100, t0) // 100/s, a burst of 10
	var at time.Time
	for range 100 {
		at = l.take(t0) // all asked for at once
	}
	// The first token is there at once; the 99 others come at 10 ms each.
	if want := t0.Add(990 * time.Millisecond); at.Sub(want).Abs() > time.Millisecond {
		t.Fatalf("100th token at %s, want %s", at.Sub(t0), want.Sub(t0))
	}
	// After a long pause, at most a burst is saved up.
	later := at.Add(time.Hour)
	free := 0
	for l.take(later).Equal(later) {
		free++
	}
	if free != 10 {
		t.Fatalf("%d tokens free after a pause, want a burst of 10", free)
	}
}

func TestSummaryString(t *testing.T) {
	s := Summary{Sent: 12345, Acked: 12340, Errors: 5, Reports: 12000, Events: 200, Statuses: 20, Elapsed: 1500 * time.Millisecond, Rate: 8230,
		ByFault: map[string]int{FaultSkew: 3, FaultSpike: 7}, Future: 1}
	want := "sent 12345 (acked 12340, errors 5) in 1.5s, 8,230 msg/s; reports 12000, events 200, statuses 20; faults spike=7 skew=3 (1 over 5m ahead)"
	if got := s.String(); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4321: "-4,321"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	var b bytes.Buffer
	p := &publisher{opts: Options{Progress: &b}}
	p.counts.errors.Store(2)
	p.printProgress(&b, 123456, 8210.4, 15*time.Second+300*time.Millisecond, false)
	if got, want := b.String(), "sent 123456 (8,210 msg/s) errors 2 elapsed 15s\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	b.Reset()
	p.opts.Terminal = true
	p.printProgress(&b, 1, 1, time.Second, false)
	p.printProgress(&b, 2, 1, 2*time.Second, true)
	if got := b.String(); !strings.HasPrefix(got, "\rsent 1 (1 msg/s)") || !strings.Contains(got, "\rsent 2 ") || !strings.HasSuffix(got, "\n") || strings.Count(got, "\n") != 1 {
		t.Errorf("terminal progress %q", got)
	}
}
