package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sanitel/sanitel/internal/atomicfile"
)

const checkpointSuffix = ".ckpt"

// checkpointMagic starts every checkpoint file; the trailing digit is the
// format version.
var checkpointMagic = [4]byte{'S', 'P', 'K', '1'}

// checkpointSize is magic, offset (uint64 LE), CRC-32C of the first 12 bytes.
const checkpointSize = 16

func (s *Spool) checkpointPath(name string) string {
	return filepath.Join(s.opts.Dir, name+checkpointSuffix)
}

// loadCheckpoint returns where the consumer resumes, bounded by the log:
// before the oldest segment (deleted while the consumer was not listed)
// means the oldest record, past the end (a tail lost to corruption) the end.
func (s *Spool) loadCheckpoint(name string) (Offset, error) {
	oldest, end := s.segs[0].base, s.segs[len(s.segs)-1].end()
	b, err := os.ReadFile(s.checkpointPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return oldest, nil
	}
	if err != nil {
		return 0, fmt.Errorf("spool: checkpoint %s: %w", name, err)
	}
	off, ok := decodeCheckpoint(b)
	switch {
	case !ok:
		// Re-delivering from the oldest record is safe (delivery is at least
		// once); refusing to start would stop ingestion.
		s.log.Warn("corrupt checkpoint, consumer restarts at the oldest record", "consumer", name, "offset", oldest)
		return oldest, nil
	case off < oldest:
		return oldest, nil
	case off > end:
		s.log.Warn("checkpoint past the end of the spool, consumer restarts at the end", "consumer", name, "checkpoint", off, "offset", end)
		return end, nil
	}
	return off, nil
}

func decodeCheckpoint(b []byte) (Offset, bool) {
	if len(b) != checkpointSize || [4]byte(b[0:4]) != checkpointMagic {
		return 0, false
	}
	if crc32.Checksum(b[:12], castagnoli) != binary.LittleEndian.Uint32(b[12:16]) {
		return 0, false
	}
	off := int64(binary.LittleEndian.Uint64(b[4:12]))
	return Offset(off), off >= 0
}

// storeCheckpoint replaces the consumer's checkpoint atomically: a crash
// leaves either the old or the new file, never a mix of both.
func (s *Spool) storeCheckpoint(name string, off Offset) error {
	var b [checkpointSize]byte
	copy(b[:4], checkpointMagic[:])
	binary.LittleEndian.PutUint64(b[4:12], uint64(off))
	binary.LittleEndian.PutUint32(b[12:16], crc32.Checksum(b[:12], castagnoli))

	if err := atomicfile.Write(s.checkpointPath(name), func(w io.Writer) error {
		_, err := w.Write(b[:])
		return err
	}); err != nil {
		return fmt.Errorf("spool: checkpoint %s: %w", name, err)
	}
	return nil
}
