//go:build linux

package testenv

import "syscall"

// sysProcAttr puts the server in its own process group, so that stopping it
// reaches anything it spawned, and asks the kernel to kill it if the test
// binary dies first (a -timeout panic runs no cleanups).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
