package testenv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

const (
	// readyTimeout bounds how long a server may take to answer after start.
	// influxd opens its shards before it listens, so allow it some time on a
	// loaded CI machine.
	readyTimeout = 60 * time.Second
	// stopTimeout bounds a clean shutdown before the server is killed.
	stopTimeout = 30 * time.Second
	// pollInterval is the pause between readiness probes.
	pollInterval = 25 * time.Millisecond
	// logTail is how much of a server log is copied into a failed test's log.
	logTail = 64 << 10
)

// errExitedEarly marks a server that exited before it became ready, which is
// what a lost race for a free port looks like; the caller may retry on other
// ports.
var errExitedEarly = errors.New("exited before it was ready")

// process runs one server binary: started, probed until ready, stopped.
// Its methods are called from the test goroutine.
type process struct {
	name    string   // for messages: "mosquitto", "influxd"
	bin     string   // path of the binary
	args    []string // arguments
	env     []string // nil: inherit
	logPath string   // stdout and stderr are appended here, across restarts
	ready   func() error

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	err    error         // cmd.Wait's result, valid after exited is closed
}

// start starts the binary and waits until ready reports nil.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s is already running", p.name)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s log: %w", p.name, err)
	}
	// The child gets its own copy of the descriptor; ours can close at once.
	defer logf.Close()
	fmt.Fprintf(logf, "==== testenv: %s starting at %s: %s %q\n",
		p.name, time.Now().Format(time.RFC3339Nano), p.bin, p.args)

	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = p.env
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	// Owned by p: stop and kill wait for exited.
	go func() {
		p.err = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited

	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-exited:
			p.cmd = nil
			return fmt.Errorf("%s %w (%v); see %s", p.name, errExitedEarly, p.err, p.logPath)
		default:
		}
		probeErr := p.ready()
		if probeErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			p.killLocked()
			return fmt.Errorf("%s not ready after %v: %w; see %s", p.name, readyTimeout, probeErr, p.logPath)
		}
		select {
		case <-exited:
		case <-time.After(pollInterval):
		}
	}
}

// running reports whether the server process is alive.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// stop sends SIGTERM and waits; a server that does not exit within
// stopTimeout is killed and reported. Stopping a stopped server does nothing.
func (p *process) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	if err := terminate(p.cmd.Process); err != nil {
		p.killLocked()
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	select {
	case <-p.exited:
		// Sweep the group in case the server left anything behind.
		_ = killGroup(p.cmd.Process)
		p.cmd = nil
		return nil
	case <-time.After(stopTimeout):
		p.killLocked()
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed it", p.name, stopTimeout)
	}
}

// kill sends SIGKILL to the server's process group and waits.
func (p *process) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killLocked()
}

func (p *process) killLocked() {
	if p.cmd == nil {
		return
	}
	_ = killGroup(p.cmd.Process)
	<-p.exited
	p.cmd = nil
}

// cleanup kills the server at the end of a test and, if the test failed,
// copies the tail of the server's log into the test log.
func (p *process) cleanup(t testing.TB) {
	p.kill()
	if !t.Failed() {
		return
	}
	t.Logf("%s log %s:\n%s", p.name, p.logPath, readTail(p.logPath, logTail))
}

// readTail returns up to the last n bytes of a file, or why it could not.
func readTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot stat: %v)", err)
	}
	prefix := ""
	if fi.Size() > n {
		if _, err := f.Seek(-n, io.SeekEnd); err != nil {
			return fmt.Sprintf("(cannot seek: %v)", err)
		}
		prefix = fmt.Sprintf("(… first %d bytes left out)\n", fi.Size()-n)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	return prefix + string(b)
}

// control stops and starts a server a test started itself; Influx and
// Mosquitto embed it. A shared server (from scripts/test.sh) is used by
// other tests at the same time, so it refuses.
//
// Stop sends SIGTERM and waits (Mosquitto saves its persistence database on
// the way out); stopping a stopped server does nothing. Kill sends SIGKILL: a
// crash (InfluxDB keeps what its WAL acknowledged; Mosquitto loses what
// changed since its last autosave). Restart stops the server if it runs and
// starts it again on the same ports with the same data. Start starts a
// stopped or killed server again: the second half of an outage made with
// Stop or Kill. Call them from the test goroutine.
type control struct {
	t         testing.TB
	proc      *process // nil when shared
	shared    string   // why a shared server refuses, for the failure message
	afterStop func()   // optional, after the process is gone (drop idle connections)
}

func (c *control) Stop() {
	c.t.Helper()
	c.mustOwn("Stop")
	if err := c.proc.stop(); err != nil {
		c.t.Fatalf("testenv: %v", err)
	}
	c.stopped()
}

func (c *control) Kill() {
	c.t.Helper()
	c.mustOwn("Kill")
	c.proc.kill()
	c.stopped()
}

func (c *control) Restart() {
	c.t.Helper()
	c.mustOwn("Restart")
	if err := c.proc.stop(); err != nil {
		c.t.Fatalf("testenv: %v", err)
	}
	c.stopped()
	if err := c.proc.start(); err != nil {
		c.t.Fatalf("testenv: restart: %v", err)
	}
}

func (c *control) Start() {
	c.t.Helper()
	c.mustOwn("Start")
	if c.proc.running() {
		return
	}
	if err := c.proc.start(); err != nil {
		c.t.Fatalf("testenv: start: %v", err)
	}
}

func (c *control) stopped() {
	if c.afterStop != nil {
		c.afterStop()
	}
}

func (c *control) mustOwn(op string) {
	c.t.Helper()
	if c.proc == nil {
		c.t.Fatalf("testenv: %s: %s", op, c.shared)
	}
}
