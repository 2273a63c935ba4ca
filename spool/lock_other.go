//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package spool

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir creates dir/LOCK but cannot lock it on this platform: running two
// spools on one directory is then the operator's mistake to avoid.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return f, nil
}

// unlockDir closes the lock file.
func unlockDir(f *os.File) error {
	return f.Close()
}
