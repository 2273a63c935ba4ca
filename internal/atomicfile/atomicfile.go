// Package atomicfile replaces files so that a crash leaves either the old
// content or the new, never a mix.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write replaces path with what write writes: into path+".tmp" (a leftover
// of a crash is overwritten by the next Write), synced, renamed over path,
// and the directory synced so that the rename itself survives a power cut.
// Writers of one path must take turns. write gets the file unbuffered:
// whoever writes in small pieces buffers them.
func Write(path string, write func(io.Writer) error) error {
	tmp := path + ".tmp"
	// 0600: the state holds readings and rejected payloads, for the service
	// alone (also when a crash's leftover had another mode).
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Read opens path and hands it to read, the counterpart of Write for
// loading. A missing file is an error matching os.ErrNotExist (a first
// start); what read returns is prefixed with the path.
func Read(path string, read func(io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := read(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
