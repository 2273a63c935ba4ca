package devices

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	protocol "github.com/influxdata/line-protocol"
)

// parseLineProtocol parses lp with the InfluxData line-protocol parser
// (the one Telegraf uses), with millisecond timestamps.
func parseLineProtocol(lp []byte) ([]protocol.Metric, error) {
	h := protocol.NewMetricHandler()
	h.SetTimePrecision(time.Millisecond)
	return protocol.NewParser(h).Parse(lp)
}

// wantTags returns the tags m must be written with: device_id, the
// registry's text attributes that are not empty, and an event's type.
func wantTags(m *Message) map[string]string {
	tags := map[string]string{"device_id": m.DeviceID}
	if d := m.Device; d != nil {
		for k, v := range map[string]string{"site": d.Site, "street": d.Street, "village": d.Village, "org_unit": d.OrgUnit} {
			if v != "" {
				tags[k] = v
			}
		}
	}
	if m.Type == Event {
		tags["type"] = m.EventType
	}
	return tags
}

// lineProtocolProblem parses lp, the output of AppendLineProtocol for m,
// and returns what is wrong with it, or "" when the parsed point carries
// exactly m: measurement, tags (as in reg), fields with their exact values
// and the millisecond timestamp.
func lineProtocolProblem(lp []byte, m *Message, reg *Registry) string {
	if m.Type == Status {
		if len(lp) != 0 {
			return fmt.Sprintf("a status is not a point, got %q", lp)
		}
		return ""
	}
	if len(lp) == 0 || lp[len(lp)-1] != '\n' || bytes.IndexByte(lp, '\n') != len(lp)-1 {
		return fmt.Sprintf("want exactly one line ending in a newline, got %q", lp)
	}
	if !strings.HasPrefix(string(lp), m.Kind.String()) && m.Type == Telemetry {
		return fmt.Sprintf("want measurement %s, got %q", m.Kind, lp)
	}
	metrics, err := parseLineProtocol(lp)
	if err != nil {
		return fmt.Sprintf("line protocol %q does not parse: %v", lp, err)
	}
	if len(metrics) != 1 {
		return fmt.Sprintf("want 1 point from %q, got %d", lp, len(metrics))
	}
	p := metrics[0]
	wantName := m.Kind.String()
	if m.Type == Event {
		wantName = "event"
	}
	if p.Name() != wantName {
		return fmt.Sprintf("measurement %q, want %q in %q", p.Name(), wantName, lp)
	}
	if got := p.Time().UnixMilli(); got != m.TS {
		return fmt.Sprintf("timestamp %d, want %d in %q", got, m.TS, lp)
	}
	tags := map[string]string{}
	for _, tag := range p.TagList() {
		if _, dup := tags[tag.Key]; dup {
			return fmt.Sprintf("tag %s twice in %q", tag.Key, lp)
		}
		tags[tag.Key] = tag.Value
	}
	want := wantTags(m)
	if m.Device != nil && reg != nil {
		if dev, ok := reg.Lookup(m.DeviceID); !ok || dev != m.Device {
			return fmt.Sprintf("message device %q is not the registry's", m.DeviceID)
		}
	}
	if fmt.Sprint(tags) != fmt.Sprint(want) {
		return fmt.Sprintf("tags %v, want %v in %q", tags, want, lp)
	}
	fields := map[string]any{}
	for _, f := range p.FieldList() {
		if _, dup := fields[f.Key]; dup {
			return fmt.Sprintf("field %s twice in %q", f.Key, lp)
		}
		fields[f.Key] = f.Value
	}
	switch m.Type {
	case Event:
		if len(fields) != 2 || fields["count"] != int64(1) || fields["detail"] != m.EventDetail {
			return fmt.Sprintf("event fields %v, want count=1i and detail %q in %q", fields, m.EventDetail, lp)
		}
	case Telemetry:
		n := 0
		for _, f := range m.Kind.Fields() {
			v, ok := m.Values.Get(f)
			if !ok {
				continue
			}
			n++
			got, isFloat := fields[f.String()].(float64)
			if !isFloat || math.Float64bits(got) != math.Float64bits(v) && got != v {
				return fmt.Sprintf("field %s = %#v, want float %v in %q", f, fields[f.String()], v, lp)
			}
		}
		if len(fields) != n {
			return fmt.Sprintf("%d fields in %q, want %d", len(fields), lp, n)
		}
	}
	return ""
}

func checkLineProtocol(tb testing.TB, lp []byte, m *Message, reg *Registry) {
	tb.Helper()
	if p := lineProtocolProblem(lp, m, reg); p != "" {
		tb.Error(p)
	}
}

// TestLineProtocolEscaping writes points whose tags hold every character
// line protocol treats specially and checks the real parser reads back
// exactly the registry's values.
func TestLineProtocolEscaping(t *testing.T) {
	ts := testNow.UnixMilli()
	for _, tc := range []struct {
		name string
		dev  Device
		typ  MessageType
		ev   string
		det  string
		want string
	}{
		{
			name: "chinese",
			dev:  Device{ID: "bin-1", Kind: KindBin, Site: "解放路", Street: "解放街道", Village: "王家村", OrgUnit: "区环卫所"},
			want: "bin,device_id=bin-1,org_unit=区环卫所,site=解放路,street=解放街道,village=王家村 fill_pct=50 1795853100000\n",
		},
		{
			name: "space comma equals",
			dev:  Device{ID: "bin-1", Kind: KindBin, Site: "a b,c=d", Street: " ,=", OrgUnit: "市容=环卫, 一所"},
			want: `bin,device_id=bin-1,org_unit=市容\=环卫\,\ 一所,site=a\ b\,c\=d,street=\ \,\= fill_pct=50 1795853100000` + "\n",
		},
		{
			name: "quotes and hash in tags",
			dev:  Device{ID: "bin-1", Kind: KindBin, Site: `"quoted"`, Street: "#1 街道", OrgUnit: "'单引号'"},
			want: `bin,device_id=bin-1,org_unit='单引号',site="quoted",street=#1\ 街道 fill_pct=50 1795853100000` + "\n",
		},
		{
			name: "no registry attributes",
			dev:  Device{ID: "bin-1", Kind: KindBin},
			want: "bin,device_id=bin-1 fill_pct=50 1795853100000\n",
		},
		{
			name: "event detail quotes backslash newline",
			dev:  Device{ID: "t-1", Kind: KindToilet, Site: "人民公园 公厕"},
			typ:  Event, ev: "fire", det: `烟 "大" C:\x` + "\n\rend",
			want: `event,device_id=t-1,site=人民公园\ 公厕,type=fire count=1i,detail="烟 \"大\" C:\\x  end" 1795853100000` + "\n",
		},
		{
			name: "event detail ends in backslash",
			dev:  Device{ID: "t-1", Kind: KindToilet},
			typ:  Event, ev: "tamper", det: `a\`,
			want: `event,device_id=t-1,type=tamper count=1i,detail="a\\" 1795853100000` + "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := NewRegistry([]Device{tc.dev})
			if err != nil {
				t.Fatal(err)
			}
			dev, _ := reg.Lookup(tc.dev.ID)
			m := Message{Type: Telemetry, DeviceID: dev.ID, Device: dev, Kind: dev.Kind, TS: ts}
			if tc.typ == Event {
				m.Type, m.EventType, m.EventDetail = Event, tc.ev, tc.det
			} else {
				m.Values.Set(FillPct, 50)
			}
			lp := AppendLineProtocol([]byte("keep"), &m)
			if !bytes.HasPrefix(lp, []byte("keep")) {
				t.Fatalf("AppendLineProtocol lost the buffer's contents: %q", lp)
			}
			lp = lp[len("keep"):]
			if string(lp) != tc.want {
				t.Errorf("got  %s\nwant %s", lp, tc.want)
			}
			if tc.typ == Event {
				// The detail is written with newlines as spaces.
				m.EventDetail = strings.NewReplacer("\n", " ", "\r", " ").Replace(m.EventDetail)
			}
			checkLineProtocol(t, lp, &m, reg)
		})
	}
}

// TestAppendLineProtocolNotAPoint: statuses, messages without values and
// records whose values the kind does not carry write nothing.
func TestAppendLineProtocolNotAPoint(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Message
	}{
		{"status", Message{Type: Status, DeviceID: "b", Kind: KindBin, Online: true, TS: 1}},
		{"no values", Message{Type: Telemetry, DeviceID: "b", Kind: KindBin, TS: 1}},
		{"zero message", Message{}},
		{"field of another kind", Message{Type: Telemetry, DeviceID: "b", Kind: KindBin, TS: 1, Values: Values{Present: 1 << PH, V: [NumFields]float64{PH: 7}}}},
		{"invalid kind", Message{Type: Telemetry, DeviceID: "b", TS: 1, Values: Values{Present: 1 << FillPct}}},
		{"not finite", Message{Type: Telemetry, DeviceID: "b", Kind: KindBin, TS: 1, Values: Values{Present: 1 << FillPct, V: [NumFields]float64{FillPct: math.NaN()}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if lp := AppendLineProtocol([]byte("x"), &tc.m); string(lp) != "x" {
				t.Errorf("got %q, want the buffer unchanged", lp)
			}
		})
	}
}

// TestAppendValue: the whole-number path writes what AppendFloat writes.
func TestAppendValue(t *testing.T) {
	for _, v := range []float64{0, math.Copysign(0, -1), 1, -1, 88, 1532, 200000, -40, 0.5, 73.5, 1e15, 1 << 53, 1<<53 + 2, -(1 << 53), 1e21, 9.223372036854775807e18, -9.3e18, 5e-324, math.MaxFloat64} {
		want := strconv.AppendFloat(nil, v, 'f', -1, 64)
		if got := appendValue(nil, v); string(got) != string(want) {
			t.Errorf("appendValue(%v) = %s, want %s", v, got, want)
		}
	}
}
