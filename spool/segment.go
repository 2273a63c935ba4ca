package spool

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

const segmentSuffix = ".seg"

// segmentName is the file name of the segment starting at base. Zero padding
// makes the lexical order of names the order of the log.
func segmentName(base Offset) string {
	return fmt.Sprintf("%020d%s", base, segmentSuffix)
}

func parseSegmentName(name string) (Offset, bool) {
	digits, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return Offset(n), true
}

func (s *Spool) segmentPath(base Offset) string {
	return filepath.Join(s.opts.Dir, segmentName(base))
}

// recover loads the segment list, repairs the tail of the last segment and
// opens it for appending. Only the last segment is scanned: earlier ones were
// fsynced before the next was created, so only the last can be torn.
func (s *Spool) recover() error {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, checkpointSuffix+".tmp") {
			// A checkpoint write that never reached its rename; the previous
			// checkpoint is still in place.
			_ = os.Remove(filepath.Join(s.opts.Dir, name))
			continue
		}
		if !strings.HasSuffix(name, segmentSuffix) || !e.Type().IsRegular() {
			continue
		}
		base, ok := parseSegmentName(name)
		if !ok {
			s.log.Warn("ignoring file with a segment suffix but no offset name", "file", name)
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.segs = append(s.segs, segment{base: base, size: info.Size()})
	}
	slices.SortFunc(s.segs, func(a, b segment) int { return cmp.Compare(a.base, b.base) })
	for i := 1; i < len(s.segs); i++ {
		if prev := s.segs[i-1]; prev.end() > s.segs[i].base {
			return fmt.Errorf("spool: segment %s overlaps %s", segmentName(prev.base), segmentName(s.segs[i].base))
		}
	}

	if len(s.segs) == 0 {
		f, err := s.createSegment(0)
		if err != nil {
			return err
		}
		s.segs = []segment{{base: 0}}
		s.active = f
	} else {
		last := &s.segs[len(s.segs)-1]
		f, err := os.OpenFile(s.segmentPath(last.base), os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.active = f
		valid, reason, err := scanSegment(f)
		if err != nil {
			return fmt.Errorf("spool: scan %s: %w", f.Name(), err)
		}
		if valid < last.size {
			// The tail was never acknowledged: a record is acknowledged only
			// after its fsync, and fsynced frames are whole. Dropping the
			// tail loses nothing that was promised.
			if err := f.Truncate(valid); err != nil {
				return fmt.Errorf("spool: truncate %s: %w", f.Name(), err)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("spool: sync %s: %w", f.Name(), err)
			}
			s.log.Warn("truncated torn tail of the spool",
				"segment", segmentName(last.base), "offset", int64(last.base)+valid,
				"dropped_bytes", last.size-valid, "reason", reason)
			last.size = valid
		}
		if _, err := f.Seek(valid, io.SeekStart); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	last := s.segs[len(s.segs)-1]
	s.activeBase, s.activeSize = last.base, last.size
	s.committed = last.end()
	for _, g := range s.segs {
		s.diskBytes += g.size
	}
	return nil
}

// scanSegment reads frames from the start of f and returns the length of the
// longest valid prefix and, if shorter than the file, why it stops there.
func scanSegment(f *os.File) (valid int64, reason string, err error) {
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 1<<20)
	var hdr [frameHeaderSize]byte
	data := make([]byte, 64<<10)
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			switch {
			case errors.Is(err, io.EOF):
				return valid, "", nil
			case errors.Is(err, io.ErrUnexpectedEOF):
				return valid, "short frame header", nil
			}
			return 0, "", err
		}
		n := binary.LittleEndian.Uint32(hdr[0:4])
		if n == 0 || n > MaxRecordSize {
			return valid, fmt.Sprintf("bad record length %d", n), nil
		}
		if int(n) > len(data) {
			data = make([]byte, n)
		}
		if _, err := io.ReadFull(br, data[:n]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return valid, "short record", nil
			}
			return 0, "", err
		}
		if crc32.Checksum(data[:n], castagnoli) != binary.LittleEndian.Uint32(hdr[4:8]) {
			return valid, "checksum mismatch", nil
		}
		valid += frameHeaderSize + int64(n)
	}
}

// createSegment creates an empty segment and makes its name durable, so a
// record written into it cannot vanish with a lost directory entry.
func (s *Spool) createSegment(base Offset) (*os.File, error) {
	f, err := os.OpenFile(s.segmentPath(base), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("spool: create segment: %w", err)
	}
	if err := s.dir.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: sync dir: %w", err)
	}
	return f, nil
}

// roll closes the active segment, which the caller has fsynced, and starts a
// new one at the end of the log. Committer only.
func (s *Spool) roll() error {
	base := s.activeBase + Offset(s.activeSize)
	f, err := s.createSegment(base)
	if err != nil {
		return err
	}
	if err := s.active.Close(); err != nil {
		s.log.Warn("close segment", "segment", segmentName(s.activeBase), "err", err)
	}
	s.active, s.activeBase, s.activeSize = f, base, 0
	s.mu.Lock()
	s.segs = append(s.segs, segment{base: base})
	s.mu.Unlock()
	return nil
}

// write appends a batch of frames to the log and fsyncs it, starting new
// segments where the batch would overflow SegmentBytes. Committer only.
func (s *Spool) write(buf []byte) error {
	for len(buf) > 0 {
		n := fitFrames(buf, s.activeSize, s.opts.SegmentBytes)
		if n > 0 {
			w, err := s.active.Write(buf[:n])
			s.grew(int64(w))
			if err != nil {
				return fmt.Errorf("spool: write %s: %w", segmentName(s.activeBase), err)
			}
		}
		buf = buf[n:]
		if len(buf) == 0 {
			break
		}
		// The rest goes to a new segment; this one must be durable first,
		// because recovery scans only the last segment.
		if err := s.active.Sync(); err != nil {
			return fmt.Errorf("spool: sync %s: %w", segmentName(s.activeBase), err)
		}
		if err := s.roll(); err != nil {
			return err
		}
	}
	if err := s.active.Sync(); err != nil {
		return fmt.Errorf("spool: sync %s: %w", segmentName(s.activeBase), err)
	}
	return nil
}

// grew accounts n bytes written to the active segment.
func (s *Spool) grew(n int64) {
	s.activeSize += n
	s.mu.Lock()
	s.segs[len(s.segs)-1].size = s.activeSize
	s.diskBytes += n
	s.mu.Unlock()
}

// fitFrames returns how many leading bytes of buf, whole frames only, fit in
// a segment of size bytes without passing limit. A frame larger than a whole
// segment still goes into an empty one.
func fitFrames(buf []byte, size, limit int64) int {
	n := 0
	for n < len(buf) {
		fl := frameHeaderSize + int(binary.LittleEndian.Uint32(buf[n:]))
		if size+int64(n) > 0 && size+int64(n+fl) > limit {
			break
		}
		n += fl
	}
	return n
}
