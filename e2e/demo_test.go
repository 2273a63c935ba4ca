package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/sanitel/sanitel/internal/testenv"
)

// TestDemoShowsOpenTickets runs `sanitel demo` as a newcomer would, with its
// own embedded broker and nothing else, checks that open tickets appear at
// /api/v1/tickets within the minute the README promises, and that Ctrl-C
// stops it with status 0.
func TestDemoShowsOpenTickets(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	broker := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	var out lockedBuffer
	cmd := exec.Command(sanitelBin, "demo", "--dir", t.TempDir(), "--listen", addr, "--broker", broker)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	open := func() int {
		resp, err := http.Get("http://" + addr + "/api/v1/tickets?status=open")
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		var list struct {
			Items []map[string]any `json:"items"`
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&list) != nil {
			return 0
		}
		return len(list.Items)
	}
	// The deadline is the functional promise of the README, not a speed
	// measurement.
	Eventually(t, 60*time.Second, func() bool { return open() > 0 },
		func() string { return "no open ticket; demo output:\n" + tail(out.String(), 3000) })

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("demo exited with %v after Ctrl-C; output:\n%s", err, tail(out.String(), 3000))
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Signal(os.Kill)
		t.Fatalf("demo still running 30s after Ctrl-C; output:\n%s", tail(out.String(), 3000))
	}
}
