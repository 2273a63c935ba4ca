package devices

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// AppendLineProtocol appends m to b as one InfluxDB line-protocol line
// (millisecond timestamp, trailing newline) and returns the extended buffer.
// Telemetry goes to the kind's measurement; events to "event" with a
// count=1i and detail field. Status messages are not points, nor is a
// reading without a finite value of one of its kind's fields: b is then
// returned unchanged. Tags come from the registry and are written in key
// order.
func AppendLineProtocol(b []byte, m *Message) []byte {
	switch m.Type {
	case Telemetry:
		if m.Values.Present == 0 || !m.Kind.Valid() {
			return b
		}
		start := len(b)
		b = append(b, m.Kind.String()...)
		b = appendTags(b, m, "")
		sep := byte(' ')
		for _, f := range m.Kind.Fields() {
			// Only the kind's fields, and only finite values: anything else
			// would make InfluxDB refuse the whole batch.
			if v, ok := m.Values.Get(f); ok && finite(v) {
				b = append(b, sep)
				b = append(b, fieldNames[f]...)
				b = append(b, '=')
				b = appendValue(b, v)
				sep = ','
			}
		}
		if sep == ' ' {
			return b[:start] // no field: not a point
		}
	case Event:
		b = append(b, "event"...)
		b = appendTags(b, m, m.EventType)
		b = append(b, " count=1i,detail=\""...)
		b = appendFieldString(b, m.EventDetail)
		b = append(b, '"')
	default:
		return b
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, m.TS, 10)
	return append(b, '\n')
}

// appendTags appends the tag set in key order: device_id, org_unit, site,
// street, type (events only), village. Empty values are left out, as line
// protocol has no empty tag values.
func appendTags(b []byte, m *Message, eventType string) []byte {
	b = appendTag(b, "device_id", m.DeviceID)
	if d := m.Device; d != nil {
		b = appendTag(b, "org_unit", d.OrgUnit)
		b = appendTag(b, "site", d.Site)
		b = appendTag(b, "street", d.Street)
		b = appendTag(b, "type", eventType)
		return appendTag(b, "village", d.Village)
	}
	return appendTag(b, "type", eventType)
}

func appendTag(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',')
	b = append(b, key...)
	b = append(b, '=')
	// Copy the runs between characters that need a backslash.
	start := 0
	for i := 0; i < len(value); i++ {
		if c := value[i]; tagEscaped[c] {
			b = append(b, value[start:i]...)
			b = append(b, '\\', c)
			start = i + 1
		}
	}
	return append(b, value[start:]...)
}

// tagEscaped marks the bytes a tag value escapes with a backslash.
var tagEscaped = [256]bool{',': true, '=': true, ' ': true}

// appendValue appends a float field value as strconv.AppendFloat(b, v,
// 'f', -1, 64) does; whole numbers, common in readings, take a faster path.
func appendValue(b []byte, v float64) []byte {
	if i := int64(v); float64(i) == v && i > -1<<53 && i < 1<<53 && (i != 0 || !math.Signbit(v)) {
		return strconv.AppendInt(b, i, 10)
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

func appendFieldString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n', '\r':
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return b
}

// recordVersion is the first byte of every spool record written by
// AppendRecord; a reader refuses versions it does not know.
const recordVersion = 1

const (
	recHasSeq = 1 << iota
	recOnline
)

// AppendRecord appends m's compact binary form (what the spool stores) to b.
// It keeps what the consumers need: the device id (tags are looked up again
// on the way out), kind, device time, sequence, values, event and status.
func AppendRecord(b []byte, m *Message) []byte {
	var flags byte
	if m.HasSeq {
		flags |= recHasSeq
	}
	if m.Online {
		flags |= recOnline
	}
	b = append(b, recordVersion, byte(m.Type), byte(m.Kind), flags)
	b = binary.AppendVarint(b, m.TS)
	if m.HasSeq {
		b = binary.AppendVarint(b, m.Seq)
	}
	b = appendString(b, m.DeviceID)
	b = binary.AppendUvarint(b, uint64(m.Values.Present))
	for s := m.Values.Present; s != 0; s &= s - 1 {
		f := Field(bits.TrailingZeros32(uint32(s)))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(m.Values.V[f]))
	}
	if m.Type == Event {
		b = appendString(b, m.EventType)
		b = appendString(b, m.EventDetail)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// ErrBadRecord is returned by DecodeRecord for data AppendRecord did not write.
var ErrBadRecord = errors.New("devices: malformed spool record")

// DecodeRecord decodes a record written by AppendRecord into m, resolving
// the device in reg (m.Device stays nil for a device reg does not know, or
// knows as another kind). It refuses data AppendRecord cannot have written
// for a decoded message (an unknown type or kind, an invalid device id or
// event type, a value that is not finite, bytes left over) with
// ErrBadRecord, so what it returns is safe to write as line protocol.
// Field ranges are not checked again: a record stays readable when the
// ranges change.
func DecodeRecord(data []byte, reg *Registry, m *Message) error {
	m.reset()
	if len(data) < 4 || data[0] != recordVersion {
		return ErrBadRecord
	}
	m.Type, m.Kind = MessageType(data[1]), Kind(data[2])
	flags := data[3]
	if m.Type < Telemetry || m.Type > Status || flags&^(recHasSeq|recOnline) != 0 ||
		!m.Kind.Valid() && (m.Type != Status || m.Kind != 0) {
		return ErrBadRecord
	}
	m.HasSeq, m.Online = flags&recHasSeq != 0, flags&recOnline != 0
	p := data[4:]
	var ok bool
	if m.TS, p, ok = readVarint(p); !ok {
		return ErrBadRecord
	}
	if m.HasSeq {
		if m.Seq, p, ok = readVarint(p); !ok {
			return ErrBadRecord
		}
	}
	var id []byte
	if id, p, ok = readBytes(p); !ok || !validID(id) {
		return ErrBadRecord
	}
	// A registered device's id is taken from the registry: no allocation.
	if dev, found := reg.lookupBytes(id); found {
		m.DeviceID = dev.ID
		if dev.Kind == m.Kind {
			m.Device = dev
		}
	} else {
		m.DeviceID = string(id)
	}
	present, n := binary.Uvarint(p)
	if n <= 0 || present >= 1<<NumFields {
		return ErrBadRecord
	}
	p = p[n:]
	m.Values.Present = FieldSet(present)
	for s := m.Values.Present; s != 0; s &= s - 1 {
		if len(p) < 8 {
			return ErrBadRecord
		}
		v := math.Float64frombits(binary.LittleEndian.Uint64(p))
		if !finite(v) {
			return ErrBadRecord
		}
		m.Values.V[bits.TrailingZeros32(uint32(s))] = v
		p = p[8:]
	}
	if m.Type == Event {
		var typ, detail []byte
		if typ, p, ok = readBytes(p); !ok || len(typ) == 0 || len(typ) > MaxEventTypeLen || !validEventType(typ) {
			return ErrBadRecord
		}
		if detail, p, ok = readBytes(p); !ok || len(detail) > MaxEventDetailLen || !cleanBytes(detail) {
			return ErrBadRecord
		}
		m.EventType = internEventType(typ)
		m.EventDetail = string(detail)
	}
	if len(p) != 0 {
		return ErrBadRecord
	}
	return nil
}

// cleanBytes reports whether b is what cleanText leaves: valid UTF-8
// without control characters.
func cleanBytes(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.Valid(b) && !bytes.ContainsRune(b, utf8.RuneError)
}

func readVarint(p []byte) (int64, []byte, bool) {
	v, n := binary.Varint(p)
	if n <= 0 {
		return 0, p, false
	}
	return v, p[n:], true
}

func readBytes(p []byte) ([]byte, []byte, bool) {
	l, n := binary.Uvarint(p)
	if n <= 0 || uint64(len(p)-n) < l {
		return nil, p, false
	}
	return p[n : n+int(l)], p[n+int(l):], true
}
