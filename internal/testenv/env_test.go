package testenv

import (
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestTestenvFromEnv uses the servers scripts/test.sh shares, or private ones
// when run without it, the way other packages' tests will.
func TestTestenvFromEnv(t *testing.T) {
	t.Parallel()
	m := MosquittoFromEnv(t)
	topic := UniqueName(t) + "/telemetry"
	c := connect(t, clientOpts(m.Addr, UniqueName(t)))
	in := newInbox()
	subscribe(t, c, topic, in)
	publish(t, c, topic, "shared", false)
	if got := in.next(t); got.topic != topic || got.payload != "shared" {
		t.Errorf("got %+v", got)
	}

	i := InfluxFromEnv(t)
	db := i.TempDB(t)
	writeV2(t, i, db+"/autogen", fmt.Sprintf("event,device_id=d1,type=tilt count=1i,detail=\"x\" %d\n", time.Now().UnixMilli()))
	if n := i.Count(t, db, "event"); n != 1 {
		t.Errorf("Count(event) = %d, want 1", n)
	}
}

func TestTestenvUniqueName(t *testing.T) {
	t.Parallel()
	a, b := UniqueName(t), UniqueName(t)
	if a == b {
		t.Errorf("UniqueName twice = %q", a)
	}
	if !regexp.MustCompile(`^[a-z0-9_]+$`).MatchString(a) {
		t.Errorf("UniqueName = %q, want [a-z0-9_]+", a)
	}
}

// recorder is a testing.TB that records a fatal failure or a skip instead of
// acting on it, so a test can check how testenv fails.
type recorder struct {
	testing.TB
	failed  string
	skipped string
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) { r.failed = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) FailNow()          { r.failed = "FailNow"; runtime.Goexit() }
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Skip(args ...any) { r.skipped = fmt.Sprint(args...); runtime.Goexit() }
func (r *recorder) SkipNow()         { r.skipped = "SkipNow"; runtime.Goexit() }

// run calls f with the recorder on its own goroutine, as Goexit needs.
func (r *recorder) run(f func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
}

// TestTestenvMissingBinaryFails checks that a missing server binary fails the
// test with the command that installs it, and never skips it.
func TestTestenvMissingBinaryFails(t *testing.T) {
	tests := []struct {
		name  string
		env   string
		start func(testing.TB)
		want  string
	}{
		{"mosquitto", EnvMosquitto, func(tb testing.TB) { StartMosquitto(tb, MosquittoOptions{}) }, "apt-get install -y mosquitto"},
		{"influxd", EnvInfluxd, func(tb testing.TB) { StartInflux(tb) }, "go install " + InfluxdPackage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.env, "/nonexistent/"+tt.name)
			r := &recorder{TB: t}
			r.run(tt.start)
			if r.skipped != "" {
				t.Fatalf("skipped: %s", r.skipped)
			}
			if !strings.Contains(r.failed, tt.want) || !strings.Contains(r.failed, "scripts/test.sh") {
				t.Errorf("failure = %q, want it to mention scripts/test.sh and %q", r.failed, tt.want)
			}
		})
	}
}

// TestTestenvSharedServersCannotBeStopped checks that a test cannot stop the
// servers other tests share.
func TestTestenvSharedServersCannotBeStopped(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{})
	i := StartInfluxWith(t, InfluxOptions{WithoutFlux: true})
	t.Setenv(EnvMQTT, m.Addr)
	t.Setenv(EnvInfluxURL, i.URL)

	for name, op := range map[string]func(testing.TB){
		"Mosquitto.Stop":    func(tb testing.TB) { MosquittoFromEnv(tb).Stop() },
		"Mosquitto.Restart": func(tb testing.TB) { MosquittoFromEnv(tb).Restart() },
		"Influx.Kill":       func(tb testing.TB) { InfluxFromEnv(tb).Kill() },
		"Influx.Restart":    func(tb testing.TB) { InfluxFromEnv(tb).Restart() },
	} {
		r := &recorder{TB: t}
		r.run(op)
		if !strings.Contains(r.failed, "shared") {
			t.Errorf("%s on a shared server: failure = %q, want one saying it is shared", name, r.failed)
		}
	}
	// Still up.
	connect(t, clientOpts(m.Addr, "still-up"))
	if err := i.ping(); err != nil {
		t.Errorf("influxd: %v", err)
	}
}
