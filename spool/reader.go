package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
)

// readBufferSize is a Reader's initial buffer. It also bounds a batch: Read
// returns what the buffer holds rather than move records it already handed out.
const readBufferSize = 256 << 10

// ErrReaderClosed is returned by a Reader's methods after its Close.
var ErrReaderClosed = errors.New("spool: reader closed")

// Record is one record read from the spool. Data is only valid until the next
// Read or Close on the Reader that returned it; copy what must outlive that.
type Record struct {
	Offset Offset
	Data   []byte
}

// span is where a returned record starts and where the next one does.
type span struct{ off, end Offset }

// Reader reads one consumer's view of the spool: committed records after its
// position, which starts at the consumer's checkpoint. Read and Close must not
// be called concurrently with Read; Commit and Lag may be called from any
// goroutine, so a consumer can commit while it reads ahead.
type Reader struct {
	s *Spool
	c *consumer

	mu     sync.Mutex
	closed bool
	pos    Offset   // offset of the next record to return
	f      *os.File // segment being read
	fBase  Offset
	buf    []byte // buf[r:w] holds the log from pos on, within segment fBase
	r, w   int
	recs   []Record
	// recent remembers the last record of recent batches, so that Commit of
	// such a record need not read its length back from disk.
	recent  [64]span
	nrecent int
}

// Reader returns a Reader for the named consumer, positioned at its
// checkpoint. A consumer has at most one open Reader at a time.
func (s *Spool) Reader(name string) (*Reader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	c, ok := s.byName[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownConsumer, name)
	}
	if c.reader != nil {
		return nil, fmt.Errorf("%w: %q", ErrReaderOpen, name)
	}
	r := &Reader{s: s, c: c, pos: Offset(c.ckpt.Load())}
	c.reader = r
	return r, nil
}

// Read returns up to max committed records after the reader's position, at
// least one: it waits until one is committed, ctx ends (ctx.Err()) or the
// spool closes (ErrClosed). A max of 0 or less means as many as the read
// buffer holds. Only fsynced records are ever returned. Reading advances the
// position but not the checkpoint: after a restart the consumer resumes after
// what it committed, not after what it read.
func (r *Reader) Read(ctx context.Context, max int) ([]Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if r.closed {
			return nil, ErrReaderClosed
		}
		base, limit, wait, err := r.s.locate(&r.pos)
		if err != nil {
			r.closeFile()
			return nil, err
		}
		if wait != nil {
			// The reader's lock is released while waiting so that Commit,
			// Lag and Close are not held up by an idle consumer.
			r.mu.Unlock()
			select {
			case <-wait:
				r.mu.Lock()
				continue
			case <-ctx.Done():
				r.mu.Lock()
				return nil, ctx.Err()
			}
		}
		recs, err := r.readSegment(base, limit, max)
		if len(recs) > 0 || err != nil {
			return recs, err
		}
	}
}

// locate moves *pos to the start of the segment holding it, or of the next
// one if *pos is at the end of its segment. It returns that segment's base
// and the end of its committed part, or, when nothing past *pos is committed
// yet, a channel closed at the next commit.
func (s *Spool) locate(pos *Offset) (base, limit Offset, wait <-chan struct{}, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, 0, nil, ErrClosed
	}
	for _, g := range s.segs {
		if *pos >= g.end() {
			continue
		}
		if *pos < g.base {
			// Gaps occur only before the oldest segment (a checkpoint older
			// than what is kept) or after a repaired segment.
			*pos = g.base
		}
		if limit := min(g.end(), s.committed); *pos < limit {
			return g.base, limit, nil, nil
		}
		break
	}
	s.dataWaiting = true
	return 0, 0, s.dataCh, nil
}

// readSegment decodes records from segment base, between r.pos and limit.
func (r *Reader) readSegment(base, limit Offset, most int) ([]Record, error) {
	if r.f == nil || r.fBase != base {
		r.closeFile()
		f, err := os.Open(r.s.segmentPath(base))
		if err != nil {
			return nil, fmt.Errorf("spool: read: %w", err)
		}
		r.f, r.fBase, r.r, r.w = f, base, 0, 0
		if r.buf == nil {
			r.buf = make([]byte, readBufferSize)
		}
	}
	recs := r.recs[:0]
	var err error
	for (most <= 0 || len(recs) < most) && r.pos < limit {
		var ok bool
		if ok, err = r.fill(frameHeaderSize, len(recs) == 0, limit); !ok {
			break
		}
		n := binary.LittleEndian.Uint32(r.buf[r.r:])
		sum := binary.LittleEndian.Uint32(r.buf[r.r+4:])
		fl := frameHeaderSize + int(n)
		if n == 0 || n > MaxRecordSize || r.pos+Offset(fl) > limit {
			err = r.corrupt(fmt.Sprintf("bad record length %d", n))
			break
		}
		if ok, err = r.fill(fl, len(recs) == 0, limit); !ok {
			break
		}
		// The capacity limit keeps a consumer's append to Data from
		// overwriting the next record.
		data := r.buf[r.r+frameHeaderSize : r.r+fl : r.r+fl]
		if crc32.Checksum(data, castagnoli) != sum {
			err = r.corrupt("checksum mismatch")
			break
		}
		recs = append(recs, Record{Offset: r.pos, Data: data})
		r.r += fl
		r.pos += Offset(fl)
	}
	r.recs = recs
	if len(recs) > 0 {
		r.recent[r.nrecent%len(r.recent)] = span{off: recs[len(recs)-1].Offset, end: r.pos}
		r.nrecent++
		// Records already returned are good; the error comes back on the
		// next Read, which starts at the bad frame.
		return recs, nil
	}
	return nil, err
}

func (r *Reader) corrupt(why string) error {
	return fmt.Errorf("%w: segment %s at offset %d: %s", ErrCorrupt, segmentName(r.fBase), r.pos, why)
}

// fill makes buf[r:] hold at least need bytes of the log, reading as much of
// the committed segment as fits. It moves buffered bytes to the front only
// when mayMove is set, i.e. before any record of this batch points into buf;
// otherwise it reports false and the batch ends.
func (r *Reader) fill(need int, mayMove bool, limit Offset) (bool, error) {
	have := r.w - r.r
	if have >= need {
		return true, nil
	}
	if len(r.buf)-r.r < need {
		if !mayMove {
			return false, nil
		}
		if len(r.buf) < need {
			nb := make([]byte, max(need, 2*len(r.buf)))
			copy(nb, r.buf[r.r:r.w])
			r.buf = nb
		} else {
			copy(r.buf, r.buf[r.r:r.w])
		}
		r.r, r.w = 0, have
	}
	next := r.pos + Offset(have) // log offset of buf[w]
	avail := int64(limit - next)
	if avail < int64(need-have) {
		return false, r.corrupt("frame runs past the committed end")
	}
	want := int(min(int64(len(r.buf)-r.w), avail))
	n, err := r.f.ReadAt(r.buf[r.w:r.w+want], int64(next-r.fBase))
	r.w += n
	if n < need-have {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return false, fmt.Errorf("spool: read %s: %w", segmentName(r.fBase), err)
	}
	return true, nil
}

func (r *Reader) closeFile() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.r, r.w = 0, 0
}

// Commit records that the consumer is done with every record up to and
// including the one at through, which must be the Offset of a record this
// Reader returned. The checkpoint is replaced atomically (temporary file,
// fsync, rename, fsync of the directory), so after a crash the consumer
// resumes right after through. Segments all consumers are past are then
// deleted. Committing an offset at or before the checkpoint does nothing.
func (r *Reader) Commit(through Offset) error {
	s := r.s
	// Shared with other commits, exclusive with Close, which closes the
	// directory handle the checkpoint's rename is synced through.
	s.opsMu.RLock()
	defer s.opsMu.RUnlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}

	c := r.c
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	if through < Offset(c.ckpt.Load()) {
		return nil
	}
	end, err := r.recordEnd(through)
	if err != nil {
		return err
	}
	if err := s.storeCheckpoint(c.name, end); err != nil {
		return err
	}
	c.ckpt.Store(int64(end))
	s.collect()
	return nil
}

// recordEnd returns the offset after the record at through.
func (r *Reader) recordEnd(through Offset) (Offset, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, ErrReaderClosed
	}
	pos := r.pos
	for _, sp := range r.recent[:min(r.nrecent, len(r.recent))] {
		if sp.off == through {
			r.mu.Unlock()
			return sp.end, nil
		}
	}
	r.mu.Unlock()
	if through >= pos {
		return 0, fmt.Errorf("spool: commit %d: not yet read (reader at %d)", through, pos)
	}

	// Not a batch end: read the length back. The segment cannot be deleted
	// meanwhile, as the checkpoint is still before through.
	base, ok := r.s.segmentOf(through)
	if !ok {
		return 0, fmt.Errorf("spool: commit %d: no segment holds it", through)
	}
	f, err := os.Open(r.s.segmentPath(base))
	if err != nil {
		return 0, fmt.Errorf("spool: commit: %w", err)
	}
	defer f.Close()
	var hdr [frameHeaderSize]byte
	if _, err := f.ReadAt(hdr[:], int64(through-base)); err != nil {
		return 0, fmt.Errorf("spool: commit %d: %w", through, err)
	}
	n := binary.LittleEndian.Uint32(hdr[:4])
	end := through + frameHeaderSize + Offset(n)
	if n == 0 || n > MaxRecordSize || end > pos {
		return 0, fmt.Errorf("spool: commit %d: not the offset of a record read", through)
	}
	return end, nil
}

// segmentOf returns the base of the segment holding off.
func (s *Spool) segmentOf(off Offset) (Offset, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.segs {
		if off >= g.base && off < g.end() {
			return g.base, true
		}
	}
	return 0, false
}

// Lag returns the bytes committed to the spool that this consumer has not
// yet committed as done: what it would replay after a restart.
func (r *Reader) Lag() int64 {
	r.s.mu.Lock()
	end := r.s.committed
	r.s.mu.Unlock()
	return max(0, int64(end)-r.c.ckpt.Load())
}

// Close releases the Reader's file and its consumer name, so that a new
// Reader may be opened for the consumer. The checkpoint is kept.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.closeFile()
	r.recs, r.buf = nil, nil
	r.s.mu.Lock()
	if r.c.reader == r {
		r.c.reader = nil
	}
	r.s.mu.Unlock()
	return nil
}
