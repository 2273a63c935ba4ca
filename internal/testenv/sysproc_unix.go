//go:build unix && !linux

package testenv

import "syscall"

// sysProcAttr puts the server in its own process group, so that stopping it
// reaches anything it spawned.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
