//go:build unix

package testenv

import (
	"os"
	"syscall"
)

// terminate asks the server to shut down cleanly.
func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }

// killGroup kills the server's whole process group.
func killGroup(p *os.Process) error {
	err := syscall.Kill(-p.Pid, syscall.SIGKILL)
	if err == syscall.ESRCH {
		return nil
	}
	return err
}

// isRoot reports whether the test runs as root.
func isRoot() bool { return os.Geteuid() == 0 }
