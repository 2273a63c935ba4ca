// Package spool is sanitel's durable local log: the MQTT subscriber appends
// each decoded reading, and the InfluxDB writer and the alert evaluator read
// it back, each at its own pace and from its own checkpoint.
//
// A message is acknowledged to the broker only once its record is fsynced
// here, so the spool is the point where a reading stops being the broker's
// problem. To make that cheap, appenders never fsync: one committer goroutine
// gathers whatever is pending into one write and one fsync (group commit)
// and then reports to every appender of the batch, in order.
//
// On disk the log is a directory of segment files, each named by the logical
// offset of its first byte (00000000000000000000.seg), holding frames of
//
//	length uint32 LE | CRC-32C(data) uint32 LE | data
//
// and one checkpoint file per consumer (<name>.ckpt). A segment is deleted
// once every consumer's checkpoint is past it, which is what bounds the spool
// on disk; when it is full anyway (InfluxDB down for long), Append blocks and
// the back-pressure reaches the broker through unacknowledged messages.
package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxRecordSize is the largest record Append accepts, in bytes. Readings are
// far smaller; the bound keeps a corrupt length field from making recovery or
// a reader allocate gigabytes.
const MaxRecordSize = 1 << 20

// frameHeaderSize is the length and checksum in front of every record.
const frameHeaderSize = 8

// maxPendingBytes bounds the bytes queued for the committer but not yet
// written, so a slow disk holds back appenders instead of growing memory.
const maxPendingBytes = 16 << 20

// Defaults for zero Options fields.
const (
	// DefaultMaxBytes bounds the spool to 1 GiB: hours of readings at the
	// contract's rates, while InfluxDB is down.
	DefaultMaxBytes = 1 << 30
	// DefaultSegmentBytes makes 16 segments of a full default spool, so space
	// is freed in steps of 1/16th as consumers catch up.
	DefaultSegmentBytes = 64 << 20
	// DefaultCommitInterval is the longest a record waits for its fsync.
	DefaultCommitInterval = 2 * time.Millisecond
	// DefaultCommitRecords caps a batch, so a burst is not held for the interval.
	DefaultCommitRecords = 4096
)

// Errors returned by the spool; match them with errors.Is.
var (
	// ErrClosed is returned by every operation after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrRecordTooLarge is returned by Append for a record over MaxRecordSize.
	ErrRecordTooLarge = errors.New("spool: record too large")
	// ErrEmptyRecord is returned by Append for an empty record. Empty records
	// are refused because a zero-filled tail, which a crash can leave behind,
	// would otherwise read as a run of valid empty frames.
	ErrEmptyRecord = errors.New("spool: empty record")
	// ErrCorrupt is returned by Read when committed data fails its checksum.
	ErrCorrupt = errors.New("spool: corrupt record")
	// ErrUnknownConsumer is returned by Reader for a name not in Options.Consumers.
	ErrUnknownConsumer = errors.New("spool: unknown consumer")
	// ErrReaderOpen is returned by Reader when the consumer already has an
	// open Reader: two readers would race on one checkpoint.
	ErrReaderOpen = errors.New("spool: consumer already has an open reader")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// consumerName restricts names to what is safe as a file name.
var consumerName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)

// Options configures a Spool. Zero values take the defaults above.
type Options struct {
	// Dir holds the segments and checkpoints; it is created if missing.
	Dir string
	// MaxBytes bounds the bytes on disk (default 1 GiB). When reached,
	// Append blocks until consumers commit and a segment can be deleted.
	MaxBytes int64
	// SegmentBytes is the size past which a new segment is started (default
	// 64 MiB). A segment is the unit of deletion, so it is lowered to
	// MaxBytes when larger.
	SegmentBytes int64
	// CommitInterval is the longest a record waits for its fsync (default 2ms).
	CommitInterval time.Duration
	// CommitRecords fsyncs at the latest after this many pending records
	// (default 4096).
	CommitRecords int
	// Consumers names every consumer (at least one). A segment is deleted only
	// once all of them have committed past it, including those with no open
	// Reader. Names are file names: letters, digits, '_', '.', '-'.
	Consumers []string
	// Logger receives warnings (a truncated tail) and errors; nil discards.
	Logger *slog.Logger
	// Registerer receives the spool's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("spool: Dir is required")
	}
	if o.MaxBytes < 0 || o.SegmentBytes < 0 || o.CommitInterval < 0 || o.CommitRecords < 0 {
		return o, errors.New("spool: MaxBytes, SegmentBytes, CommitInterval and CommitRecords must not be negative")
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	o.SegmentBytes = min(o.SegmentBytes, o.MaxBytes)
	if o.CommitInterval == 0 {
		o.CommitInterval = DefaultCommitInterval
	}
	if o.CommitRecords == 0 {
		o.CommitRecords = DefaultCommitRecords
	}
	if len(o.Consumers) == 0 {
		// Without a consumer nothing would ever free a segment, or, read the
		// other way, everything could be deleted at once; neither is useful.
		return o, errors.New("spool: at least one consumer is required")
	}
	seen := make(map[string]bool, len(o.Consumers))
	for _, name := range o.Consumers {
		if !consumerName.MatchString(name) {
			return o, fmt.Errorf("spool: consumer %q: must be 1-64 of A-Z a-z 0-9 _ . - and not start with '.' or '-'", name)
		}
		if seen[name] {
			return o, fmt.Errorf("spool: consumer %q listed twice", name)
		}
		seen[name] = true
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Offset is a logical byte position in the log. It increases monotonically
// across segments: a segment named N holds offsets N up to N+size.
type Offset int64

// segment is one file of the log, as far as the spool has written it.
type segment struct {
	base Offset
	size int64 // bytes written, including any not yet fsynced
}

func (g segment) end() Offset { return g.base + Offset(g.size) }

// consumer is the durable progress of one named consumer.
type consumer struct {
	name string
	// ckpt is the offset after the last record the consumer committed. It is
	// written under commitMu and read by the collector without it.
	ckpt     atomic.Int64
	commitMu sync.Mutex // serializes checkpoint file writes
	reader   *Reader    // the open Reader, if any; guarded by Spool.mu
}

// Spool is a durable append-only log with group commit and per-consumer
// checkpoints. Its methods are safe for concurrent use.
type Spool struct {
	opts    Options
	log     *slog.Logger
	dir     *os.File // kept open to fsync renames and new segments
	lock    *os.File // holds the directory lock for the spool's lifetime
	metrics *metrics

	consumers []*consumer
	byName    map[string]*consumer

	wake    chan struct{} // capacity 1: something changed for the committer
	runDone chan struct{} // closed when the committer has returned

	mu           sync.Mutex
	closed       bool
	err          error     // sticky write error
	segs         []segment // oldest first; the last one is written to
	diskBytes    int64     // sum of segs sizes
	queued       int64     // bytes appended but not yet on disk
	committed    Offset    // end of the fsynced log; readers stop here
	pendBuf      []byte    // framed records waiting for the committer
	pendDone     []func(error)
	firstPending time.Time     // when the oldest pending record arrived
	spaceCh      chan struct{} // closed and replaced when appenders may retry
	spaceWaiters int
	diskWaiters  int           // appenders waiting because MaxBytes is reached
	dataCh       chan struct{} // closed and replaced when committed advances
	dataWaiting  bool          // a reader holds dataCh
	rollReq      bool          // the committer should start a new segment

	// Owned by the committer goroutine, and by Open and Close while it is not
	// running.
	active     *os.File
	activeBase Offset
	activeSize int64
	spareBuf   []byte
	spareDone  []func(error)

	// opsMu is held shared by Reader.Commit and exclusively by Close before
	// it closes the directory handle a commit syncs through.
	opsMu     sync.RWMutex
	closeOnce sync.Once
	closeErr  error

	// onWait, when set before the appender's goroutine starts, is called as
	// Append begins to wait for space. Tests use it to know an Append blocks.
	onWait func()
}

// Open opens the spool in opts.Dir, creating it if needed. It recovers from a
// crash by truncating a torn or corrupt tail of the last segment, loads every
// consumer's checkpoint, deletes segments all consumers are past, and starts
// the committer. Only one Spool may have a directory open at a time.
func Open(opts Options) (*Spool, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{
		opts:    opts,
		log:     opts.Logger.With("component", "spool"),
		byName:  make(map[string]*consumer, len(opts.Consumers)),
		wake:    make(chan struct{}, 1),
		runDone: make(chan struct{}),
		spaceCh: make(chan struct{}),
		dataCh:  make(chan struct{}),
	}
	ok := false
	defer func() {
		if !ok {
			s.closeFiles()
		}
	}()
	if s.lock, err = lockDir(opts.Dir); err != nil {
		return nil, err
	}
	if s.dir, err = os.Open(opts.Dir); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := s.recover(); err != nil {
		return nil, err
	}
	for _, name := range opts.Consumers {
		c := &consumer{name: name}
		off, err := s.loadCheckpoint(name)
		if err != nil {
			return nil, err
		}
		c.ckpt.Store(int64(off))
		s.consumers = append(s.consumers, c)
		s.byName[name] = c
	}
	if s.metrics, err = newMetrics(opts.Registerer, func() float64 { return float64(s.Bytes()) }); err != nil {
		return nil, err
	}
	ok = true
	s.collect()
	go s.run()
	return s, nil
}

// Append copies rec and queues it for the next group commit. done is called
// exactly once, from the committer goroutine, after the record is durable
// (nil) or once it cannot be made durable (the error); it must not block, as
// the whole batch's callbacks run one after another. A nil done is allowed.
//
// Append blocks while the spool holds MaxBytes, until a consumer commit frees
// a segment or ctx ends; it then returns ctx.Err() and done is not called. It
// also waits, briefly, while 16 MiB are queued for the committer. After a
// write error it returns that error, and after Close it returns ErrClosed.
func (s *Spool) Append(ctx context.Context, rec []byte, done func(error)) error {
	if len(rec) == 0 {
		return ErrEmptyRecord
	}
	if len(rec) > MaxRecordSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrRecordTooLarge, len(rec), MaxRecordSize)
	}
	// The checksum is computed before taking the lock so appenders on
	// different cores compute theirs in parallel.
	sum := crc32.Checksum(rec, castagnoli)
	frame := int64(frameHeaderSize + len(rec))

	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return err
		}
		used := s.diskBytes + s.queued
		// An empty spool takes any record, so a bound below MaxRecordSize
		// slows appenders down but never wedges them.
		diskFull := used > 0 && used+frame > s.opts.MaxBytes
		queueFull := len(s.pendBuf) > 0 && int64(len(s.pendBuf))+frame > maxPendingBytes
		if !diskFull && !queueFull {
			break
		}
		if err := s.waitForSpace(ctx, diskFull); err != nil {
			return err
		}
	}
	s.pendBuf = binary.LittleEndian.AppendUint32(s.pendBuf, uint32(len(rec)))
	s.pendBuf = binary.LittleEndian.AppendUint32(s.pendBuf, sum)
	s.pendBuf = append(s.pendBuf, rec...)
	s.pendDone = append(s.pendDone, done)
	s.queued += frame
	n := len(s.pendDone)
	if n == 1 {
		s.firstPending = time.Now()
	}
	s.mu.Unlock()
	// The committer needs to hear only of the first record (to start the
	// interval) and of a full batch; it picks up the others on its own.
	if n == 1 || n == s.opts.CommitRecords {
		s.signal()
	}
	return nil
}

// waitForSpace waits, with s.mu held on entry and on a nil return, until
// appenders may retry. On a ctx error it returns with s.mu released.
func (s *Spool) waitForSpace(ctx context.Context, diskFull bool) error {
	ch := s.spaceCh
	s.spaceWaiters++
	if diskFull {
		s.diskWaiters++
		// Consumers may already be past everything but the segment being
		// written to, which can never be deleted while it is active.
		s.requestRollLocked()
	}
	hook := s.onWait
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	var err error
	select {
	case <-ch:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	s.spaceWaiters--
	if diskFull {
		s.diskWaiters--
	}
	if err != nil {
		s.mu.Unlock()
	}
	return err
}

// signal wakes the committer without blocking; one token is enough because
// the committer re-reads all state when it wakes.
func (s *Spool) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// broadcastSpaceLocked lets waiting appenders retry.
func (s *Spool) broadcastSpaceLocked() {
	if s.spaceWaiters > 0 {
		close(s.spaceCh)
		s.spaceCh = make(chan struct{})
	}
}

// broadcastDataLocked wakes readers waiting for committed data.
func (s *Spool) broadcastDataLocked() {
	if s.dataWaiting {
		close(s.dataCh)
		s.dataCh = make(chan struct{})
		s.dataWaiting = false
	}
}

// Bytes returns the bytes currently on disk in segments.
func (s *Spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.diskBytes
}

// Full reports whether the spool has reached MaxBytes, so that the next
// Append is likely to block.
func (s *Spool) Full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.diskWaiters > 0 || s.diskBytes+s.queued >= s.opts.MaxBytes
}

// Err returns the sticky write or fsync error that stopped the spool, or nil
// while it is healthy. Readiness checks report it.
func (s *Spool) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// fail records the first write error. From then on nothing is acknowledged:
// the committer fails every queued record and Append refuses new ones,
// because after a failed write or fsync what the disk holds is unknown.
func (s *Spool) fail(err error) {
	s.mu.Lock()
	first := s.err == nil
	if first {
		s.err = err
		s.broadcastSpaceLocked()
	}
	s.mu.Unlock()
	if first {
		s.log.Error("spool stopped accepting records", "err", err)
	}
}

// Close stops accepting records, commits and fsyncs those already queued
// (calling their done), stops the committer and closes all files, including
// those of open Readers, whose Read then returns ErrClosed. It returns the
// sticky write error, if any. Calling it again returns the same result.
func (s *Spool) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Spool) close() error {
	s.mu.Lock()
	s.closed = true
	// Waiting appenders wake, see closed and return ErrClosed.
	close(s.spaceCh)
	s.spaceCh = make(chan struct{})
	s.mu.Unlock()

	// The committer drains what was queued before closed was set, so every
	// accepted record gets its done.
	s.signal()
	<-s.runDone

	s.mu.Lock()
	close(s.dataCh)
	s.dataCh = make(chan struct{})
	var readers []*Reader
	for _, c := range s.consumers {
		if c.reader != nil {
			readers = append(readers, c.reader)
		}
	}
	sticky := s.err
	s.mu.Unlock()

	// Readers are closed after the spool lock is released: a Read holds its
	// reader's lock while it takes the spool's, never the other way round.
	for _, r := range readers {
		r.mu.Lock()
		r.closeFile()
		r.mu.Unlock()
	}
	s.metrics.unregister()
	s.opsMu.Lock()
	err := s.closeFiles()
	s.opsMu.Unlock()
	if sticky != nil {
		return sticky
	}
	return err
}

// closeFiles closes what Open opened; the lock goes last so another process
// cannot open the directory while files are still being closed.
func (s *Spool) closeFiles() error {
	var errs []error
	if s.active != nil {
		if err := s.active.Close(); err != nil && s.err == nil {
			errs = append(errs, fmt.Errorf("spool: close segment: %w", err))
		}
		s.active = nil
	}
	if s.dir != nil {
		errs = append(errs, s.dir.Close())
		s.dir = nil
	}
	if s.lock != nil {
		errs = append(errs, unlockDir(s.lock))
		s.lock = nil
	}
	return errors.Join(errs...)
}

// run is the committer: it waits until a batch is due — CommitRecords
// pending, CommitInterval since the oldest pending record, or Close — then
// writes and fsyncs the batch and reports to its appenders.
func (s *Spool) run() {
	defer close(s.runDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		s.mu.Lock()
		n := len(s.pendDone)
		closing := s.closed
		roll := s.rollReq && !closing
		first := s.firstPending
		s.rollReq = false
		s.mu.Unlock()

		if roll {
			s.rollOnRequest()
			continue
		}
		if n == 0 {
			if closing {
				return
			}
			<-s.wake
			continue
		}
		if n < s.opts.CommitRecords && !closing {
			if wait := s.opts.CommitInterval - time.Since(first); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-s.wake:
					// A full batch, Close or a roll request: look again.
					timer.Stop()
					continue
				}
			}
		}
		s.commit()
	}
}

// commit writes and fsyncs everything pending as one batch.
func (s *Spool) commit() {
	s.mu.Lock()
	buf, dones := s.pendBuf, s.pendDone
	s.pendBuf, s.pendDone = s.spareBuf[:0], s.spareDone[:0]
	err := s.err
	// The queue is empty again: appenders held back by maxPendingBytes go on.
	s.broadcastSpaceLocked()
	s.mu.Unlock()

	if err == nil {
		start := time.Now()
		err = s.write(buf)
		if err == nil {
			s.metrics.commitSeconds.Observe(time.Since(start).Seconds())
			s.metrics.commits.Inc()
			s.metrics.records.Add(float64(len(dones)))
		} else {
			s.fail(err)
		}
	}

	s.mu.Lock()
	s.queued -= int64(len(buf))
	if err == nil {
		s.committed += Offset(len(buf))
		s.broadcastDataLocked()
	}
	s.mu.Unlock()

	for _, done := range dones {
		if done != nil {
			done(err)
		}
	}
	clear(dones) // drop the callbacks' closures until the slice is reused
	s.spareBuf, s.spareDone = buf[:0], dones[:0]

	// Rolling after the callbacks keeps a segment's creation out of the
	// batch's latency; rolling at all lets a full segment be deleted.
	if err == nil && s.activeSize >= s.opts.SegmentBytes {
		if err := s.roll(); err != nil {
			s.fail(err)
			return
		}
		s.collect()
	}
}

// requestRollLocked asks the committer to start a new segment when every
// consumer is past all of the active one: only then can a roll free space.
func (s *Spool) requestRollLocked() {
	last := s.segs[len(s.segs)-1]
	if s.rollReq || last.size == 0 || s.err != nil || s.minCheckpointLocked() < last.end() {
		return
	}
	s.rollReq = true
	s.signal()
}

// rollOnRequest rolls on behalf of an appender blocked on MaxBytes; collect
// then deletes the old, fully consumed segment and wakes the appender.
func (s *Spool) rollOnRequest() {
	s.mu.Lock()
	failed := s.err != nil
	s.mu.Unlock()
	if failed || s.activeSize == 0 {
		return
	}
	if err := s.roll(); err != nil {
		s.fail(err)
		return
	}
	s.collect()
}

// minCheckpointLocked is the offset every consumer has committed up to.
func (s *Spool) minCheckpointLocked() Offset {
	m := Offset(s.consumers[0].ckpt.Load())
	for _, c := range s.consumers[1:] {
		m = min(m, Offset(c.ckpt.Load()))
	}
	return m
}

// collect deletes the segments every consumer has committed past. The
// active segment is never deleted; while appenders wait for space, collect
// asks for it to be rolled so that it can be.
func (s *Spool) collect() {
	s.mu.Lock()
	floor := s.minCheckpointLocked()
	var dead []Offset
	for len(s.segs) > 1 && s.segs[0].end() <= floor {
		dead = append(dead, s.segs[0].base)
		s.diskBytes -= s.segs[0].size
		s.segs = s.segs[1:]
	}
	if len(dead) > 0 {
		s.broadcastSpaceLocked()
	}
	if s.diskWaiters > 0 {
		s.requestRollLocked()
	}
	s.mu.Unlock()

	// Files are removed outside the lock: no reader can need them, since
	// every reader is at or past its own checkpoint. A removal lost in a
	// crash only means the segment is found and deleted again on Open.
	for _, base := range dead {
		if err := os.Remove(s.segmentPath(base)); err != nil {
			s.log.Warn("cannot delete consumed segment", "segment", segmentName(base), "err", err)
			continue
		}
		s.log.Debug("deleted consumed segment", "segment", segmentName(base))
	}
}
