package devices

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// randomMessage returns a message as Decode could produce it: a known or
// unknown device, any finite values of the kind's fields, clean event text.
func randomMessage(rng *rand.Rand, reg *Registry) Message {
	var m Message
	devs := reg.All()
	if rng.IntN(4) > 0 {
		d := &devs[rng.IntN(len(devs))]
		m.DeviceID, m.Kind = d.ID, d.Kind
	} else {
		const idChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
		id := make([]byte, 1+rng.IntN(MaxIDLen))
		for i := range id {
			id[i] = idChars[rng.IntN(len(idChars))]
		}
		m.DeviceID, m.Kind = string(id), Kinds[rng.IntN(len(Kinds))]
	}
	m.TS = 1_700_000_000_000 + rng.Int64N(200_000_000_000)
	if rng.IntN(5) == 0 {
		m.TS = rng.Int64() - math.MaxInt64/2
	}
	if rng.IntN(2) == 0 {
		m.Seq, m.HasSeq = rng.Int64()-math.MaxInt64/2, true
	}
	switch rng.IntN(10) {
	case 0, 1:
		m.Type = Event
		if rng.IntN(2) == 0 {
			m.EventType = eventTypes[rng.IntN(len(eventTypes))]
		} else {
			const typeChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
			t := make([]byte, 1+rng.IntN(MaxEventTypeLen))
			for i := range t {
				t[i] = typeChars[rng.IntN(len(typeChars))]
			}
			m.EventType = string(t)
		}
		pieces := []string{"温度", " ", `"`, `\`, "a", "=", ",", "°C", "😀", "x"}
		var b strings.Builder
		for n := rng.IntN(40); n > 0; n-- {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		m.EventDetail = b.String()
	case 2:
		m.Type, m.Online = Status, rng.IntN(2) == 0
		if rng.IntN(3) == 0 {
			m.Kind = 0 // a status on a topic whose kind is unknown
		}
	default:
		m.Type = Telemetry
		for _, f := range m.Kind.Fields() {
			if rng.IntN(2) == 0 {
				continue
			}
			var v float64
			switch rng.IntN(3) {
			case 0:
				v = math.Float64frombits(rng.Uint64())
			case 1:
				v = rng.Float64() * 1000
			default:
				v = float64(rng.IntN(100))
			}
			if !finite(v) {
				v = -0.0
			}
			m.Values.Set(f, v)
		}
		if m.Values.Present == 0 {
			m.Values.Set(m.Kind.Fields()[0], 1)
		}
	}
	if d, ok := reg.Lookup(m.DeviceID); ok && d.Kind == m.Kind {
		m.Device = d
	}
	return m
}

// sameMessage compares two messages, values bit for bit.
func sameMessage(a, b *Message) bool {
	if a.Values.Present != b.Values.Present {
		return false
	}
	for s := a.Values.Present; s != 0; s &= s - 1 {
		f := Field(0)
		for ; s&(1<<f) == 0; f++ {
		}
		if math.Float64bits(a.Values.V[f]) != math.Float64bits(b.Values.V[f]) {
			return false
		}
	}
	a2, b2 := *a, *b
	a2.Values, b2.Values = Values{}, Values{}
	return reflect.DeepEqual(a2, b2)
}

// TestRecordRoundTrip: DecodeRecord(AppendRecord(m)) is m, for many
// generated messages, appended after whatever the buffer held.
func TestRecordRoundTrip(t *testing.T) {
	reg := testRegistry(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	for i := range 20000 {
		m := randomMessage(rng, reg)
		prefix := []byte("spool")[:rng.IntN(6)]
		buf = AppendRecord(append(buf[:0], prefix...), &m)
		if !bytes.HasPrefix(buf, prefix) {
			t.Fatalf("AppendRecord lost the buffer's contents")
		}
		var got Message
		got.FirstDrop = "stale" // DecodeRecord must reset the message
		if err := DecodeRecord(buf[len(prefix):], reg, &got); err != nil {
			t.Fatalf("message %d %+v: %v", i, m, err)
		}
		if !sameMessage(&got, &m) {
			t.Fatalf("message %d:\n got  %+v\n want %+v", i, got, m)
		}
		// The parser reads timestamps as int64 nanoseconds.
		if got.TS > -9e12 && got.TS < 9e12 {
			if p := lineProtocolProblem(AppendLineProtocol(nil, &got), &got, reg); p != "" {
				t.Fatalf("message %d: %s", i, p)
			}
		}
	}
}

// TestRecordRoundTripGolden sends every accepted golden message through
// the spool record and wants the same message and line protocol back
// (a record does not keep drops or the ChirpStack deduplication id).
func TestRecordRoundTripGolden(t *testing.T) {
	d := testDecoder(t)
	reg := testRegistry(t)
	var m, got Message
	for _, c := range goldenCases(t) {
		if d.Decode(c.topic, c.payload, testNow, &m) != nil {
			continue
		}
		if err := DecodeRecord(AppendRecord(nil, &m), reg, &got); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		want := m
		want.Drops, want.FirstDrop, want.DedupID, want.Received = [numReasons]uint8{}, "", "", false
		if !sameMessage(&got, &want) {
			t.Errorf("%s:\n got  %+v\n want %+v", c.name, got, want)
		}
		if a, b := AppendLineProtocol(nil, &got), AppendLineProtocol(nil, &m); !bytes.Equal(a, b) {
			t.Errorf("%s: line protocol after the spool %q, before %q", c.name, a, b)
		}
	}
}

func TestDecodeRecordRefuses(t *testing.T) {
	reg := testRegistry(t)
	event := Message{Type: Event, DeviceID: "bin-001", Kind: KindBin, TS: 1, EventType: "fire", EventDetail: "hot"}
	good := AppendRecord(nil, &event)
	tele := Message{Type: Telemetry, DeviceID: "bin-001", Kind: KindBin, TS: 1}
	tele.Values.Set(FillPct, 50)
	goodTele := AppendRecord(nil, &tele)
	with := func(m Message, change func(*Message)) []byte {
		change(&m)
		return AppendRecord(nil, &m)
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"version 2", append([]byte{2}, good[1:]...)},
		{"type 0", with(event, func(m *Message) { m.Type = 0 })},
		{"type 4", with(event, func(m *Message) { m.Type = 4 })},
		{"kind 0 telemetry", with(tele, func(m *Message) { m.Kind = 0 })},
		{"kind 9 status", with(Message{Type: Status, DeviceID: "x"}, func(m *Message) { m.Kind = 9 })},
		{"unknown flag", append(append([]byte{}, good[:3]...), append([]byte{0x80}, good[4:]...)...)},
		{"trailing byte", append(append([]byte{}, good...), 0)},
		{"empty device id", with(event, func(m *Message) { m.DeviceID = "" })},
		{"device id with space", with(event, func(m *Message) { m.DeviceID = "bin 1" })},
		{"device id too long", with(event, func(m *Message) { m.DeviceID = strings.Repeat("a", 65) })},
		{"event type empty", with(event, func(m *Message) { m.EventType = "" })},
		{"event type with space", with(event, func(m *Message) { m.EventType = "lid open" })},
		{"event detail with newline", with(event, func(m *Message) { m.EventDetail = "a\nb" })},
		{"event detail not UTF-8", with(event, func(m *Message) { m.EventDetail = "a\xffb" })},
		{"event detail too long", with(event, func(m *Message) { m.EventDetail = strings.Repeat("a", MaxEventDetailLen+1) })},
		{"NaN value", with(tele, func(m *Message) { m.Values.V[FillPct] = math.NaN() })},
		{"infinite value", with(tele, func(m *Message) { m.Values.V[FillPct] = math.Inf(-1) })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			if err := DecodeRecord(tc.data, reg, &m); err != ErrBadRecord {
				t.Errorf("DecodeRecord(%x) = %v, want ErrBadRecord", tc.data, err)
			}
		})
	}
	for _, rec := range [][]byte{good, goodTele} {
		for n := range len(rec) {
			var m Message
			if err := DecodeRecord(rec[:n], reg, &m); err != ErrBadRecord {
				t.Errorf("DecodeRecord of %d of %d bytes = %v, want ErrBadRecord", n, len(rec), err)
			}
		}
	}
}

// TestDecodeRecordDevice: a record's device is resolved in the registry
// given to DecodeRecord, and only when the kind agrees.
func TestDecodeRecordDevice(t *testing.T) {
	reg := testRegistry(t)
	m := Message{Type: Telemetry, DeviceID: "toilet-01", Kind: KindToilet, TS: 5}
	m.Values.Set(NH3MgM3, 1)
	var got Message
	if err := DecodeRecord(AppendRecord(nil, &m), reg, &got); err != nil || got.Device == nil || got.Device.Site != "人民公园 公厕" {
		t.Errorf("known device: %v, device %+v", err, got.Device)
	}
	if err := DecodeRecord(AppendRecord(nil, &m), nil, &got); err != nil || got.Device != nil || got.DeviceID != "toilet-01" {
		t.Errorf("no registry: %v, device %+v", err, got.Device)
	}
	m.Kind = KindBin
	m.Values = Values{}
	m.Values.Set(FillPct, 1)
	if err := DecodeRecord(AppendRecord(nil, &m), reg, &got); err != nil || got.Device != nil {
		t.Errorf("kind changed in the registry: %v, device %+v", err, got.Device)
	}
}
