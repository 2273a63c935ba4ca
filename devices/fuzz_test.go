package devices

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// The fuzz targets' seed corpora are the golden cases and the test
// registry, so every `go test` runs them; inputs the fuzzer found are in
// testdata/fuzz/<target>.

// messageProblem returns what is wrong with a message Decode accepted, or "".
func messageProblem(d *Decoder, m *Message, reg *Registry) string {
	if m.Type < Telemetry || m.Type > Status {
		return fmt.Sprintf("type %d", m.Type)
	}
	if !ValidID(m.DeviceID) {
		return fmt.Sprintf("device id %q", m.DeviceID)
	}
	if m.Device != nil {
		if dev, ok := reg.Lookup(m.DeviceID); !ok || dev != m.Device || dev.Kind != m.Kind {
			return fmt.Sprintf("device %q is not the registry's %s", m.DeviceID, m.Kind)
		}
	} else if dev, ok := reg.Lookup(m.DeviceID); ok && m.Type != Status {
		return fmt.Sprintf("registered device %q decoded without its registry entry %v", m.DeviceID, dev)
	}
	if len(m.DedupID) > MaxDedupIDLen || len(m.DeviceID) > MaxIDLen {
		return fmt.Sprintf("dedup id of %d bytes, device id of %d", len(m.DedupID), len(m.DeviceID))
	}
	now := testNow.UnixMilli()
	if m.Type == Status {
		if m.TS != now || m.Values.Present != 0 {
			return fmt.Sprintf("status with ts %d, values %b", m.TS, m.Values.Present)
		}
		return lineProtocolProblem(AppendLineProtocol(nil, m), m, reg)
	}
	if !m.Kind.Valid() {
		return fmt.Sprintf("kind %d", m.Kind)
	}
	if m.TS > now+d.maxFuture.Milliseconds() || m.TS < now-d.opts.AcceptWindow.Milliseconds() {
		return fmt.Sprintf("ts %d outside the accept window", m.TS)
	}
	switch m.Type {
	case Telemetry:
		if m.Values.Present == 0 {
			return "telemetry without values"
		}
		for f := range NumFields {
			v, ok := m.Values.Get(f)
			if !ok {
				continue
			}
			if !m.Kind.Accepts(f) || !finite(v) {
				return fmt.Sprintf("field %s = %v for a %s", f, v, m.Kind)
			}
			r, hasRange := m.Kind.Range(f)
			switch {
			case f == NH3Ppm || f == H2SPpm:
				nh3, h2s := PpmFactors(d.refTempC)
				target, factor := NH3MgM3, nh3
				if f == H2SPpm {
					target, factor = H2SMgM3, h2s
				}
				tr, _ := m.Kind.Range(target)
				if v < 0 || v*factor < tr.Min || v*factor > tr.Max {
					return fmt.Sprintf("%s = %v converts outside %v", f, v, tr)
				}
			case !hasRange || v < r.Min || v > r.Max:
				return fmt.Sprintf("field %s = %v outside %v", f, v, r)
			}
		}
	case Event:
		if m.EventType == "" || len(m.EventType) > MaxEventTypeLen || !validEventType([]byte(m.EventType)) {
			return fmt.Sprintf("event type %q", m.EventType)
		}
		if len(m.EventDetail) > MaxEventDetailLen || !cleanBytes([]byte(m.EventDetail)) {
			return fmt.Sprintf("event detail %q", m.EventDetail)
		}
	}
	if p := lineProtocolProblem(AppendLineProtocol(nil, m), m, reg); p != "" {
		return p
	}
	var back Message
	if err := DecodeRecord(AppendRecord(nil, m), reg, &back); err != nil {
		return fmt.Sprintf("spool record: %v", err)
	}
	want := *m
	want.Drops, want.FirstDrop, want.DedupID, want.Received = [numReasons]uint8{}, "", "", false
	if !sameMessage(&back, &want) {
		return fmt.Sprintf("spool record gives %+v", back)
	}
	return ""
}

func rejectionProblem(err error) string {
	var rej *Rejection
	if !errors.As(err, &rej) {
		return fmt.Sprintf("error %v is not a *Rejection", err)
	}
	if !slices.Contains(RejectReasons, rej.Reason) {
		return fmt.Sprintf("rejected for %s, not a rejection reason", rej.Reason)
	}
	if len(rej.Detail) > MaxDetailLen || !utf8.ValidString(rej.Detail) {
		return fmt.Sprintf("detail of %d bytes: %q", len(rej.Detail), rej.Detail)
	}
	return ""
}

func FuzzDecode(f *testing.F) {
	for _, c := range goldenCases(f) {
		if len(c.payload) < 4096 {
			f.Add(c.topic, c.payload)
		}
	}
	reg := testRegistry(f)
	strict := testDecoder(f)
	lenient, err := NewDecoder(DecoderOptions{Registry: reg, AcceptUnknown: true})
	if err != nil {
		f.Fatal(err)
	}
	var m Message
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		for _, d := range []*Decoder{strict, lenient} {
			err := d.Decode(topic, payload, testNow, &m)
			if err != nil {
				if p := rejectionProblem(err); p != "" {
					t.Fatal(p)
				}
				continue
			}
			if p := messageProblem(d, &m, reg); p != "" {
				t.Fatalf("%q %q: %s\n%+v", topic, payload, p, m)
			}
		}
		// Whether a native reading or event is JSON is decided as
		// encoding/json decides it.
		if _, _, typ, err := ParseTopic("sanitation", topic); err == nil && typ != Status && len(payload) <= 64<<10 {
			err := lenient.Decode(topic, payload, testNow, &m)
			isBadJSON := reason(err) == "bad_json"
			var obj map[string]json.RawMessage
			if wantBad := json.Unmarshal(payload, &obj) != nil || obj == nil; isBadJSON != wantBad {
				t.Fatalf("%q: rejected as bad_json: %v; encoding/json says not an object: %v (%v)", payload, isBadJSON, wantBad, err)
			}
		}
	})
}

func FuzzDecodeChirpStack(f *testing.F) {
	for _, c := range goldenCases(f) {
		if eui, ok := chirpStackEUI(c.topic); ok && strings.HasPrefix(c.topic, "application/") {
			app := strings.Split(c.topic, "/")[1]
			f.Add(app, eui, c.payload)
		}
	}
	reg := testRegistry(f)
	d := testDecoder(f)
	var m Message
	f.Fuzz(func(t *testing.T, app, eui string, payload []byte) {
		topic := "application/" + app + "/device/" + eui + "/event/up"
		err := d.Decode(topic, payload, testNow, &m)
		if err != nil {
			if p := rejectionProblem(err); p != "" {
				t.Fatal(p)
			}
			return
		}
		if strings.Contains(app, "/") || strings.Contains(eui, "/") {
			t.Fatalf("accepted topic %q", topic)
		}
		var key [16]byte
		if m.Device == nil || !euiKey(&key, eui) || m.Device.DevEUI != string(key[:]) || m.DeviceID != m.Device.ID {
			t.Fatalf("topic dev_eui %q decoded as device %+v", eui, m.Device)
		}
		if p := messageProblem(d, &m, reg); p != "" {
			t.Fatalf("%q %q: %s\n%+v", topic, payload, p, m)
		}
	})
}

func FuzzParseTopic(f *testing.F) {
	for _, c := range goldenCases(f) {
		f.Add("sanitation", c.topic)
	}
	f.Add("a/b/", "a/b/bin/x/status")
	f.Add("", "/bin/x/event")
	f.Fuzz(func(t *testing.T, root, topic string) {
		kind, id, typ, err := ParseTopic(root, topic)
		if err != nil {
			if p := rejectionProblem(err); p != "" {
				t.Fatal(p)
			}
			return
		}
		if !ValidID(id) || strings.Contains(kind, "/") || typ < Telemetry || typ > Status {
			t.Fatalf("ParseTopic(%q, %q) = %q, %q, %v", root, topic, kind, id, typ)
		}
		if want := strings.TrimSuffix(root, "/") + "/" + kind + "/" + id + "/" + typ.String(); want != topic {
			t.Fatalf("ParseTopic(%q, %q) = %q, %q, %v: that is topic %q", root, topic, kind, id, typ, want)
		}
	})
}

func FuzzReadCSV(f *testing.F) {
	for _, name := range []string{"testdata/registry.csv"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(csvHeader + "a,bin,\"x, \"\"y\"\"=z\",,,,1.5,-2,00-04-A3-0B-00-1C-05-30,,,90s\n"))
	f.Add([]byte("id,kind\r\nw,water\r\nw,bin\r\n"))
	f.Add([]byte("\xef\xbb\xbfkind,id,supply\nwater,a,small\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		devs, err := ReadCSV(bytes.NewReader(data))
		if err == nil {
			checkReadDevices(t, devs)
		}
	})
}

func FuzzReadYAML(f *testing.F) {
	b, err := os.ReadFile("testdata/registry.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("devices:\n  - {id: a, kind: bin, site: \"x: \\\"y\\\"=z\", lat: 1.5, lon: -2, dev_eui: 00-04-A3-0B-00-1C-05-30, report_interval: 90s}\n"))
	f.Add([]byte("devices:\n  - &d {id: w, kind: water, supply: small}\n  - *d\n"))
	f.Add([]byte("devices:\n  - {id: t, kind: toilet, toilet_class: 3, org_unit: 区环卫所}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		devs, err := ReadYAML(bytes.NewReader(data))
		if err == nil {
			checkReadDevices(t, devs)
		}
	})
}

// checkReadDevices checks devices a registry reader returned: each valid,
// each written and read back unchanged as CSV and as YAML, and a registry
// of them finds each by id and dev_eui.
func checkReadDevices(t *testing.T, devs []Device) {
	t.Helper()
	for i := range devs {
		if err := devs[i].validate(); err != nil {
			t.Fatalf("reader returned an invalid device %+v: %v", devs[i], err)
		}
	}
	var csvOut, yamlOut bytes.Buffer
	if err := WriteCSV(&csvOut, devs); err != nil {
		t.Fatal(err)
	}
	if back, err := ReadCSV(&csvOut); err != nil || !reflect.DeepEqual(back, devs) && len(devs) > 0 {
		t.Fatalf("CSV round trip: %v\n got  %+v\n want %+v", err, back, devs)
	}
	if err := WriteYAML(&yamlOut, devs); err != nil {
		t.Fatal(err)
	}
	if back, err := ReadYAML(&yamlOut); err != nil || !reflect.DeepEqual(back, devs) && len(devs) > 0 {
		t.Fatalf("YAML round trip of %q: %v\n got  %+v\n want %+v", yamlOut.String(), err, back, devs)
	}
	reg, err := NewRegistry(devs)
	if err != nil {
		return // duplicate ids or dev_euis
	}
	if reg.Len() != len(devs) {
		t.Fatalf("registry of %d devices has %d", len(devs), reg.Len())
	}
	for i := range devs {
		if d, ok := reg.Lookup(devs[i].ID); !ok || *d != devs[i] {
			t.Fatalf("Lookup(%q) = %v, %v", devs[i].ID, d, ok)
		}
		if eui := devs[i].DevEUI; eui != "" {
			if d, ok := reg.LookupEUI(strings.ToUpper(eui)); !ok || d.ID != devs[i].ID {
				t.Fatalf("LookupEUI(%q) = %v, %v", eui, d, ok)
			}
		}
	}
}

func FuzzRecord(f *testing.F) {
	d := testDecoder(f)
	var m Message
	for _, c := range goldenCases(f) {
		if d.Decode(c.topic, c.payload, testNow, &m) == nil {
			f.Add(AppendRecord(nil, &m))
		}
	}
	f.Add([]byte{1, 3, 0, 2, 0, 1, 'x', 0})
	reg := testRegistry(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var m, back Message
		if err := DecodeRecord(data, reg, &m); err != nil {
			if err != ErrBadRecord {
				t.Fatalf("error %v, want ErrBadRecord", err)
			}
			return
		}
		if err := DecodeRecord(AppendRecord(nil, &m), reg, &back); err != nil || !sameMessage(&back, &m) {
			t.Fatalf("record %x decodes to %+v, which re-encodes to %+v (%v)", data, m, back, err)
		}
		if !ValidID(m.DeviceID) {
			t.Fatalf("device id %q", m.DeviceID)
		}
		// What a record holds can always be written to InfluxDB: one
		// parseable line, or nothing.
		lp := AppendLineProtocol(nil, &m)
		if len(lp) > 0 && m.TS > -9e12 && m.TS < 9e12 {
			if _, err := parseLineProtocol(lp); err != nil {
				t.Fatalf("record %x: line protocol %q: %v", data, lp, err)
			}
		}
		if bytes.Count(lp, []byte{'\n'}) > 1 {
			t.Fatalf("record %x: %q is more than one line", data, lp)
		}
	})
}

// FuzzJSON checks the scanner against encoding/json.
func FuzzJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	for _, c := range goldenCases(f) {
		if len(c.payload) < 4096 {
			f.Add(c.payload)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkJSON(t, b)
		if obj, k := openObject(b); k == jsonObject {
			for key, val, ok := obj.next(); ok; key, val, ok = obj.next() {
				if key.esc {
					var s string
					if json.Unmarshal(append(append([]byte{'"'}, key.raw...), '"'), &s) == nil && s != coerceUTF8(appendUnescaped(nil, key.raw)) {
						t.Fatalf("key %q unescapes to %q, encoding/json says %q", key.raw, appendUnescaped(nil, key.raw), s)
					}
				}
				if val.kind == jsonNumber {
					checkNumber(t, string(val.raw))
				}
			}
		}
	})
}

// FuzzTimestamp checks the RFC 3339 parser against time.Parse.
func FuzzTimestamp(f *testing.F) {
	for _, s := range rfc3339Seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkRFC3339(t, s)
	})
}

// FuzzNumber checks the number parser against strconv.ParseFloat.
func FuzzNumber(f *testing.F) {
	for _, s := range numberSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkNumber(t, s)
		if scanNumber([]byte(s), 0) == len(s) {
			n, ok := parseInt([]byte(s))
			want, err := strconv.ParseInt(s, 10, 64)
			if ok != (err == nil) || n != want {
				t.Fatalf("parseInt(%q) = %d, %v; strconv says %d, %v", s, n, ok, want, err)
			}
		}
	})
}
