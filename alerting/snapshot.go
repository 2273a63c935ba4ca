package alerting

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"

	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/internal/atomicfile"
)

// The snapshot is a compact binary file:
//
//	magic "SNTLALR1"
//	uvarint n, then n rule names (uvarint length + bytes): slots name their
//	  rule by its position here, so a changed rules file maps by name
//	per device that was seen or has a slot not inactive, in engine order:
//	  byte 1
//	  id: uvarint bytes shared with the previous id, uvarint length + rest
//	  byte kind
//	  varint last device time − the previous device's (Unix ms)
//	  uvarint number of slots, each:
//	    uvarint rule, bytes state sev sent flags, varint since,
//	    byte 1 + firing info, or byte 0:
//	      varint firedAt, 8-byte value, 8-byte threshold, string event,
//	      string event detail, varint silentSince, varint resolvedAt,
//	      8-byte resolved value
//	byte 0
//	4 bytes little-endian CRC-32 (IEEE) of everything before
const snapMagic = "SNTLALR1"

// ErrBadSnapshot is returned by Load for a snapshot it cannot read.
var ErrBadSnapshot = errors.New("bad alert state snapshot")

// Save writes a snapshot of the alert state: every device's newest
// evaluated time and every (device, rule) that is not inactive, with its
// timers, so Load after a restart resumes pending and firing alerts where
// they were.
func (e *Engine) Save(w io.Writer) error {
	e.mu.Lock()
	buf := e.appendSnapshot(make([]byte, 0, e.snapSize+e.snapSize/8))
	e.snapSize = len(buf)
	e.mu.Unlock()
	_, err := w.Write(buf)
	return err
}

// SaveFile writes a snapshot to path atomically: to a temporary file in
// the same directory, synced, then renamed over path.
func (e *Engine) SaveFile(path string) error {
	if err := atomicfile.Write(path, e.Save); err != nil {
		return fmt.Errorf("save alert state %s: %w", path, err)
	}
	return nil
}

// LoadFile restores a snapshot written by SaveFile. A missing file is an
// error that matches os.ErrNotExist (a first start).
func (e *Engine) LoadFile(path string) error {
	return atomicfile.Read(path, e.Load)
}

func (e *Engine) appendSnapshot(b []byte) []byte {
	b = append(b, snapMagic...)
	b = binary.AppendUvarint(b, uint64(len(e.rules)))
	for i := range e.rules {
		b = appendString(b, e.rules[i].Name)
	}
	var prevID string
	var prevLast int64
	for i := range e.ents {
		ent := &e.ents[i]
		n := 0
		if ent.off != 0 {
			for _, s := range e.pool[ent.off-1:][:len(e.kinds[ent.kind].rules)] {
				if s != (slot{}) {
					n++
				}
			}
		}
		if ent.last == 0 && n == 0 {
			continue
		}
		id := e.id(uint32(i))
		shared := 0
		for shared < len(id) && shared < len(prevID) && id[shared] == prevID[shared] {
			shared++
		}
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(shared))
		b = appendString(b, id[shared:])
		b = append(b, byte(ent.kind))
		b = binary.AppendVarint(b, ent.last-prevLast)
		prevID, prevLast = id, ent.last
		b = binary.AppendUvarint(b, uint64(n))
		if n == 0 {
			continue
		}
		kr := &e.kinds[ent.kind]
		for j, s := range e.pool[ent.off-1:][:len(kr.rules)] {
			if s == (slot{}) {
				continue
			}
			b = binary.AppendUvarint(b, uint64(kr.rules[j]))
			b = append(b, byte(s.state), byte(s.sev), byte(s.sent), s.flags)
			b = binary.AppendVarint(b, s.since)
			inf := e.info[key(uint32(i), j)]
			if inf == nil {
				b = append(b, 0)
				continue
			}
			b = append(b, 1)
			b = binary.AppendVarint(b, inf.firedAt)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(inf.value))
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(inf.thr))
			b = appendString(b, inf.event)
			b = appendString(b, inf.eventDetail)
			b = binary.AppendVarint(b, inf.silentSince)
			b = binary.AppendVarint(b, inf.resolvedAt)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(inf.resValue))
		}
	}
	b = append(b, 0)
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Load replaces the alert state with a snapshot written by Save. States of
// rules no longer defined (by name) or no longer applying to the device's
// kind, and devices whose kind changed, are left out. Calls the sink may
// not have heard are made on the next evaluation or Tick. On error the
// state is unchanged.
func (e *Engine) Load(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read alert state: %w", err)
	}
	if len(data) < len(snapMagic)+5 || string(data[:len(snapMagic)]) != snapMagic {
		return fmt.Errorf("%w: not a sanitel alert state file", ErrBadSnapshot)
	}
	body := data[:len(data)-4]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(data[len(data)-4:]) {
		return fmt.Errorf("%w: checksum mismatch (truncated or damaged)", ErrBadSnapshot)
	}
	// Decode twice: once to check everything, once to apply, so a bad
	// snapshot leaves the state as it was.
	if err := e.decodeSnapshot(body[len(snapMagic):], nil); err != nil {
		return err
	}
	e.deliverMu.Lock()
	defer e.deliverMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reset()
	return e.decodeSnapshot(body[len(snapMagic):], e.restore)
}

// reset makes every state inactive and every device unseen.
func (e *Engine) reset() {
	e.ents = e.ents[:len(e.all)]
	for i := range e.ents {
		e.ents[i] = entry{kind: e.all[i].Kind}
	}
	e.pool = nil
	e.unknown = map[string]uint32{}
	e.unknownIDs = nil
	e.info = map[uint64]*firing{}
	e.owed = map[uint64]struct{}{}
	for _, g := range e.met.firing {
		g.Set(0)
	}
}

// snapDevice is one device as decoded from a snapshot.
type snapDevice struct {
	id    string
	kind  devices.Kind
	last  int64
	slots []snapSlot
}

type snapSlot struct {
	rule string
	s    slot
	inf  *firing
}

// restore applies one decoded device to the state. The caller holds mu.
func (e *Engine) restore(d *snapDevice) {
	var idx uint32
	if dev, ok := e.reg.Lookup(d.id); ok {
		if dev.Kind != d.kind {
			return
		}
		idx, _ = e.registryIndex(dev)
	} else if i, ok := e.unknown[d.id]; ok {
		idx = i // listed twice: the later record wins
		if e.ents[idx].kind != d.kind {
			return
		}
	} else {
		if len(e.unknown) >= e.maxUnk {
			return
		}
		idx = uint32(len(e.ents))
		e.ents = append(e.ents, entry{kind: d.kind})
		e.unknown[d.id] = idx
		e.unknownIDs = append(e.unknownIDs, d.id)
	}
	ent := &e.ents[idx]
	ent.last = d.last
	kr := &e.kinds[d.kind]
	for _, ss := range d.slots {
		j := -1
		for jj, ri := range kr.rules {
			if e.rules[ri].Name == ss.rule {
				j = jj
				break
			}
		}
		if j < 0 || ss.s == (slot{}) {
			continue
		}
		r := &e.rules[kr.rules[j]]
		if r.Type == TypeNoData && ss.s.state == StatePending {
			continue
		}
		if ent.off == 0 {
			e.pool = append(e.pool, make([]slot, len(kr.rules))...)
			ent.off = uint32(len(e.pool) - len(kr.rules) + 1)
		}
		s := ss.s
		k := key(idx, j)
		if ss.inf != nil && (s.state == StateFiring || s.flags&flagEnded != 0) {
			e.info[k] = ss.inf
		}
		if s.state == StateFiring {
			e.met.firing[kr.rules[j]].Inc()
		}
		// A call decided before the snapshot may not have been made.
		if (s.state == StateFiring && s.sent < s.sev) || s.flags&flagEnded != 0 {
			s.flags |= flagOwed
		}
		if s.flags&flagOwed != 0 {
			e.owed[k] = struct{}{}
		}
		e.pool[int(ent.off)-1+j] = s
	}
}

// decodeSnapshot decodes a snapshot body (after the magic, before the
// checksum), calling apply, when not nil, for each device.
func (e *Engine) decodeSnapshot(b []byte, apply func(*snapDevice)) error {
	d := snapDecoder{b: b}
	names := make([]string, d.uvarint())
	if len(names) > 1<<16 {
		return fmt.Errorf("%w: %d rules", ErrBadSnapshot, len(names))
	}
	for i := range names {
		names[i] = d.str()
	}
	var dev snapDevice
	var prevID string
	for d.err == nil {
		switch d.byte() {
		case 0:
			if d.err == nil && len(d.b) != 0 {
				return fmt.Errorf("%w: %d bytes after the end", ErrBadSnapshot, len(d.b))
			}
			return d.err
		case 1:
		default:
			return fmt.Errorf("%w: bad record", ErrBadSnapshot)
		}
		shared := d.uvarint()
		if shared > uint64(len(prevID)) {
			return fmt.Errorf("%w: bad device id", ErrBadSnapshot)
		}
		dev.id = prevID[:shared] + d.str()
		dev.kind = devices.Kind(d.byte())
		dev.last += d.varint()
		prevID = dev.id
		if d.err == nil && (!dev.kind.Valid() || !devices.ValidID(dev.id) || dev.last < 0) {
			return fmt.Errorf("%w: bad device %q", ErrBadSnapshot, dev.id)
		}
		n := d.uvarint()
		if n > maxSlotsPerKind {
			return fmt.Errorf("%w: device %q: %d slots", ErrBadSnapshot, dev.id, n)
		}
		dev.slots = dev.slots[:0]
		for range n {
			var ss snapSlot
			ri := d.uvarint()
			ss.s.state, ss.s.sev, ss.s.sent, ss.s.flags = State(d.byte()), Severity(d.byte()), Severity(d.byte()), d.byte()
			ss.s.since = d.varint()
			if d.err != nil {
				break
			}
			if ri >= uint64(len(names)) || ss.s.state >= numStates || ss.s.sev >= numSeverities ||
				ss.s.sent >= numSeverities || ss.s.flags&^(flagEnded|flagOwed) != 0 {
				return fmt.Errorf("%w: device %q: bad state", ErrBadSnapshot, dev.id)
			}
			ss.rule = names[ri]
			switch d.byte() {
			case 0:
				if ss.s.state == StateFiring || ss.s.flags&flagEnded != 0 {
					return fmt.Errorf("%w: device %q: firing without details", ErrBadSnapshot, dev.id)
				}
			case 1:
				inf := &firing{firedAt: d.varint(), value: d.float(), thr: d.float(), event: d.str(),
					eventDetail: d.str(), silentSince: d.varint(), resolvedAt: d.varint(), resValue: d.float()}
				ss.inf = inf
			default:
				return fmt.Errorf("%w: device %q: bad record", ErrBadSnapshot, dev.id)
			}
			dev.slots = append(dev.slots, ss)
		}
		if d.err == nil && apply != nil {
			apply(&dev)
		}
	}
	return d.err
}

// snapDecoder reads snapshot values; the first error sticks.
type snapDecoder struct {
	b   []byte
	err error
}

func (d *snapDecoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated", ErrBadSnapshot)
	}
	d.b = nil
}

func (d *snapDecoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *snapDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *snapDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *snapDecoder) float() float64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *snapDecoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
