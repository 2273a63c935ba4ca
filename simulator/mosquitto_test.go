package simulator

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// broker is a Mosquitto started for one test. internal/testenv will offer
// this to the whole project; the simulator keeps its own few lines so it
// depends on nothing but devices.
type broker struct {
	t       testing.TB
	url     string // tcp://127.0.0.1:PORT (ssl:// with TLS)
	addr    string
	bin     string
	conf    string
	logPath string
	cmd     *exec.Cmd
	exited  chan error
	pid     int
}

// startMosquitto starts a private Mosquitto on a free loopback port.
// extra is appended to its configuration (after the listener line, so
// listener options such as certfile apply). A missing binary fails the
// test: a skipped integration test looks like coverage that is not there.
func startMosquitto(t testing.TB, extra ...string) *broker {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("mosquitto not found in PATH or /usr/sbin: install it with `sudo apt-get install -y mosquitto`")
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	b := &broker{t: t, bin: bin, addr: fmt.Sprintf("127.0.0.1:%d", port), logPath: filepath.Join(dir, "mosquitto.log")}
	b.url = "tcp://" + b.addr
	conf := fmt.Sprintf("listener %d 127.0.0.1\n", port)
	for _, e := range extra {
		conf += e + "\n"
	}
	if !strings.Contains(conf, "allow_anonymous") {
		conf += "allow_anonymous true\n"
	}
	conf += fmt.Sprintf(`max_inflight_messages 1000
max_queued_messages 1000000
persistence false
log_dest file %s
`, b.logPath)
	b.conf = filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(b.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			if data, err := os.ReadFile(b.logPath); err == nil {
				t.Logf("mosquitto log:\n%s", data)
			}
		}
	})
	return b
}

// start runs the broker and waits until it accepts connections.
func (b *broker) start() {
	b.t.Helper()
	b.cmd = exec.Command(b.bin, "-c", b.conf)
	if err := b.cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	b.pid = b.cmd.Process.Pid
	b.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, exited chan error) { exited <- cmd.Wait() }(b.cmd, b.exited)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-b.exited:
			b.cmd = nil
			b.t.Fatalf("mosquitto exited at start: %v", err)
		case <-time.After(20 * time.Millisecond): // polling a port, not timing
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto did not listen on %s within 10s", b.addr)
		}
	}
}

// stop kills the broker (as a crash would) and waits for it.
func (b *broker) stop() {
	if b.cmd == nil {
		return
	}
	b.cmd.Process.Kill()
	<-b.exited
	b.cmd = nil
}
