package devices

import (
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func mustDecoder(t *testing.T, opts DecoderOptions) *Decoder {
	t.Helper()
	d, err := NewDecoder(opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func reason(err error) string {
	var rej *Rejection
	if errors.As(err, &rej) {
		return rej.Reason.String()
	}
	if err != nil {
		return "not a rejection: " + err.Error()
	}
	return ""
}

// TestDecoderOptions decodes messages that only the options decide.
func TestDecoderOptions(t *testing.T) {
	reg := testRegistry(t)
	for _, tc := range []struct {
		name    string
		opts    DecoderOptions
		topic   string
		payload string
		want    string // line protocol, or the rejection reason
	}{
		{"unknown device accepted", DecoderOptions{AcceptUnknown: true}, "sanitation/bin/new-1/telemetry", `{"fill_pct": 5}`,
			"bin,device_id=new-1 fill_pct=5 1795853100000\n"},
		{"unknown device accepted beside a registry", DecoderOptions{Registry: reg, AcceptUnknown: true}, "sanitation/water/new-2/event", `{"type": "leak"}`,
			`event,device_id=new-2,type=leak count=1i,detail="" 1795853100000` + "\n"},
		{"known device still checked", DecoderOptions{Registry: reg, AcceptUnknown: true}, "sanitation/water/bin-001/telemetry", `{"ph": 7}`, "kind_mismatch"},
		{"unknown device of an unknown kind", DecoderOptions{AcceptUnknown: true}, "sanitation/truck/new-1/telemetry", `{"fill_pct": 5}`, "kind_mismatch"},
		{"unknown ChirpStack device", DecoderOptions{AcceptUnknown: true}, "application/1/device/0102030405060708/event/up",
			`{"deviceInfo": {"devEui": "0102030405060708"}, "object": {"ph": 7}}`, "unknown_device"},
		{"topic root", DecoderOptions{Registry: reg, TopicRoot: "city/sanitation/"}, "city/sanitation/bin/bin-001/telemetry", `{"fill_pct": 5}`,
			"bin,device_id=bin-001,org_unit=区环卫所,site=解放路\\ 1号箱,street=解放街道 fill_pct=5 1795853100000\n"},
		{"default root not used with another root", DecoderOptions{Registry: reg, TopicRoot: "city"}, "sanitation/bin/bin-001/telemetry", `{"fill_pct": 5}`, "bad_topic"},
		{"max payload", DecoderOptions{Registry: reg, MaxPayload: 16}, "sanitation/bin/bin-001/telemetry", `{"fill_pct":   5}`, "too_large"},
		{"max payload exactly", DecoderOptions{Registry: reg, MaxPayload: 15}, "sanitation/bin/bin-001/telemetry", `{"fill_pct": 5}`,
			"bin,device_id=bin-001,org_unit=区环卫所,site=解放路\\ 1号箱,street=解放街道 fill_pct=5 1795853100000\n"},
		{"accept window", DecoderOptions{Registry: reg, AcceptWindow: time.Hour}, "sanitation/bin/bin-001/telemetry", `{"ts": "2026-11-28T07:04:59Z", "fill_pct": 5}`, "bad_timestamp"},
		{"max future", DecoderOptions{Registry: reg, MaxFuture: new(time.Second)}, "sanitation/bin/bin-001/telemetry", `{"ts": "2026-11-28T08:05:01.001Z", "fill_pct": 5}`, "bad_timestamp"},
		{"max future exactly", DecoderOptions{Registry: reg, MaxFuture: new(time.Second)}, "sanitation/bin/bin-001/telemetry", `{"ts": "2026-11-28T08:05:01Z", "fill_pct": 5}`,
			"bin,device_id=bin-001,org_unit=区环卫所,site=解放路\\ 1号箱,street=解放街道 fill_pct=5 1795853101000\n"},
		{"max future zero", DecoderOptions{Registry: reg, MaxFuture: new(time.Duration(0))}, "sanitation/bin/bin-001/telemetry", `{"ts": "2026-11-28T08:05:00.001Z", "fill_pct": 5}`, "bad_timestamp"},
		{"max future zero, now", DecoderOptions{Registry: reg, MaxFuture: new(time.Duration(0))}, "sanitation/bin/bin-001/telemetry", `{"ts": "2026-11-28T08:05:00Z", "fill_pct": 5}`,
			"bin,device_id=bin-001,org_unit=区环卫所,site=解放路\\ 1号箱,street=解放街道 fill_pct=5 1795853100000\n"},
		{"reference temperature 0 °C", DecoderOptions{Registry: reg, RefTempC: new(0.0)}, "sanitation/toilet/toilet-03/telemetry", `{"nh3_ppm": 10, "h2s_ppm": 1}`,
			"toilet,device_id=toilet-03,org_unit=区环卫所,site=农贸市场,street=清波街道 nh3_mgm3=7.597013,h2s_mgm3=1.520494,nh3_ppm=10,h2s_ppm=1 1795853100000\n"},
		// At 20 °C a ppm of NH3 weighs 0.696 × 298.15 / 293.15 mg/m³.
		{"reference temperature", DecoderOptions{Registry: reg, RefTempC: new(20.0)}, "sanitation/toilet/toilet-03/telemetry", `{"nh3_ppm": 10, "h2s_ppm": 1}`,
			"toilet,device_id=toilet-03,org_unit=区环卫所,site=农贸市场,street=清波街道 nh3_mgm3=7.078711,h2s_mgm3=1.416759,nh3_ppm=10,h2s_ppm=1 1795853100000\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustDecoder(t, tc.opts)
			var m Message
			err := d.Decode(tc.topic, []byte(tc.payload), testNow, &m)
			got := reason(err)
			if err == nil {
				got = string(AppendLineProtocol(nil, &m))
				checkLineProtocol(t, []byte(got), &m, tc.opts.Registry)
			}
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestNewDecoder(t *testing.T) {
	if _, err := NewDecoder(DecoderOptions{}); err == nil {
		t.Error("a decoder without a registry or AcceptUnknown: no error")
	}
	for _, temp := range []float64{-273.15, -300, math.NaN(), math.Inf(1)} {
		if _, err := NewDecoder(DecoderOptions{AcceptUnknown: true, RefTempC: &temp}); err == nil {
			t.Errorf("reference temperature %v: no error", temp)
		}
	}
	d := mustDecoder(t, DecoderOptions{AcceptUnknown: true, TopicRoot: "a/b/"})
	want := []string{"a/b/+/+/telemetry", "a/b/+/+/event", "a/b/+/+/status"}
	if got := d.Topics(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Topics() = %v, want %v", got, want)
	}
}

func TestPpmFactors(t *testing.T) {
	nh3, h2s := PpmFactors(25)
	if nh3 != 0.696 || h2s != 1.393 {
		t.Errorf("PpmFactors(25) = %v, %v; want the contract's 0.696, 1.393", nh3, h2s)
	}
	nh3, _ = PpmFactors(0)
	if math.Abs(nh3-0.696*298.15/273.15) > 1e-12 {
		t.Errorf("PpmFactors(0) = %v", nh3)
	}
}

// TestDecodeReusesMessage: nothing of one message survives into the next
// decoded into the same Message.
func TestDecodeReusesMessage(t *testing.T) {
	d := testDecoder(t)
	var m Message
	if err := d.Decode("application/1/device/0004a30b001c0530/event/up",
		[]byte(`{"deduplicationId": "x", "fCnt": 3, "deviceInfo": {"devEui": "0004a30b001c0530"}, "object": {"ph": 7, "x": 1}}`), testNow, &m); err != nil {
		t.Fatal(err)
	}
	if err := d.Decode("sanitation/bin/bin-001/event", []byte(`{"type": "fire", "detail": "d"}`), testNow, &m); err != nil {
		t.Fatal(err)
	}
	if err := d.Decode("sanitation/rural_toilet/rt-002/telemetry", []byte(`{"tank_level_pct": 1}`), testNow, &m); err != nil {
		t.Fatal(err)
	}
	want := Message{Type: Telemetry, DeviceID: "rt-002", Kind: KindRuralToilet, TS: testNow.UnixMilli(), Received: true}
	want.Device, _ = testRegistry(t).Lookup("rt-002")
	want.Values.Set(TankLevelPct, 1)
	if !sameMessage(&m, &want) {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
}

// TestDecodeDetails checks what the golden files do not show: sequence
// numbers, the deduplication id, FirstDrop and rejection details.
func TestDecodeDetails(t *testing.T) {
	d := testDecoder(t)
	var m Message
	if err := d.Decode("sanitation/bin/bin-001/telemetry", []byte(`{"seq": 1841, "fill_pct": 500, "temp_c": 1}`), testNow, &m); err != nil {
		t.Fatal(err)
	}
	if !m.HasSeq || m.Seq != 1841 || m.FirstDrop != "fill_pct: out_of_range" {
		t.Errorf("seq %v %d, first drop %q", m.HasSeq, m.Seq, m.FirstDrop)
	}
	for _, seq := range []string{`1.5`, `"7"`, `1e3`, `99999999999999999999`} {
		if err := d.Decode("sanitation/bin/bin-001/telemetry", []byte(`{"seq": `+seq+`, "fill_pct": 5}`), testNow, &m); err != nil || m.HasSeq {
			t.Errorf("seq %s: %v, HasSeq %v", seq, err, m.HasSeq)
		}
	}
	if err := d.Decode("sanitation/bin/bin-001/telemetry", []byte(`{"seq": -9223372036854775808, "x\n\u00ff": 1, "fill_pct": 5}`), testNow, &m); err != nil || m.Seq != math.MinInt64 {
		t.Errorf("seq: %v %d", err, m.Seq)
	}
	if m.FirstDrop != "x ÿ: unknown_field" {
		t.Errorf("first drop %q", m.FirstDrop)
	}
	payload := `{"deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d", "fCnt": 4294967295, "deviceInfo": {"devEui": "0004a30b001c0530"}, "object": {"ph": 7}}`
	if err := d.Decode("application/1/device/0004a30b001c0530/event/up", []byte(payload), testNow, &m); err != nil {
		t.Fatal(err)
	}
	if m.DedupID != "3ac7e3c4-4401-4b8d-9386-a5c902f9202d" || m.Seq != 4294967295 || m.DeviceID != "water-c1" {
		t.Errorf("dedup %q seq %d device %q", m.DedupID, m.Seq, m.DeviceID)
	}
	// A rejection quoting a 64 KiB topic stays short.
	err := d.Decode("sanitation/bin/"+strings.Repeat("x", 64<<10)+"/telemetry", []byte(`{"fill_pct": 5}`), testNow, &m)
	if rej, ok := err.(*Rejection); !ok || rej.Reason != ReasonBadTopic || len(rej.Detail) > MaxDetailLen || !strings.HasSuffix(rej.Detail, "…") {
		t.Errorf("long topic: %v", err)
	}
	// An over-long deduplicationId is not kept: the reading is.
	long := strings.Repeat("d", MaxDedupIDLen+1)
	if err := d.Decode("application/1/device/0004a30b001c0530/event/up", []byte(strings.Replace(payload, "3ac7e3c4-4401-4b8d-9386-a5c902f9202d", long, 1)), testNow, &m); err != nil || m.DedupID != "" {
		t.Errorf("deduplicationId of %d bytes: %v, kept %d bytes", len(long), err, len(m.DedupID))
	}
	for _, tc := range []struct{ topic, payload, want string }{
		{"sanitation/bin/bin-001/telemetry", `[1]`, "bad_json: payload is a JSON array, want an object"},
		{"sanitation/bin/bin-001/telemetry", ` `, "bad_json: empty payload"},
		{"sanitation/bin/bin-001/telemetry", `{"fill_pct": NaN}`, "bad_json: payload is not JSON"},
		{"sanitation/bin/bin-001/telemetry", `{"device_id": "bin-002"}`, `device_mismatch: body device_id "bin-002" does not match topic device "bin-001"`},
		{"sanitation/bin/bin-001/telemetry", `{"fill_pct": 101}`, "no_fields: no known field with a valid value (fill_pct: out_of_range) for a bin"},
		{"sanitation/bin/bin-001/event", `{"type": "a b"}`, `bad_event: event type must be 1-64 characters of a-z A-Z 0-9 _ -, got "a b"`},
		{"sanitation/bin/bin-001/telemetry", `{"ts": "2026-11-28T08:11:00Z", "fill_pct": 5}`, "bad_timestamp: ts 2026-11-28T08:11:00Z is more than 5m0s in the future"},
		{"sanitation/bin/bin-001/telemetry", `{"ts": "now"}`, `bad_timestamp: ts "now" is neither RFC 3339 nor epoch milliseconds`},
	} {
		if err := d.Decode(tc.topic, []byte(tc.payload), testNow, &m); err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %v, want %s", tc.payload, err, tc.want)
		}
	}
	// A rejected message keeps its field drops only for no_fields.
	if err := d.Decode("sanitation/bin/bin-001/telemetry", []byte(`{"ts": "soon", "fill_pct": 500, "x": 1}`), testNow, &m); reason(err) != "bad_timestamp" || formatDrops(&m) != "" {
		t.Errorf("%v, drops %q", err, formatDrops(&m))
	}
}

func TestParseTopic(t *testing.T) {
	for _, tc := range []struct {
		root, topic    string
		kind, id, want string
	}{
		{"sanitation", "sanitation/bin/bin-1/telemetry", "bin", "bin-1", "telemetry"},
		{"sanitation/", "sanitation/toilet/t.1/event", "toilet", "t.1", "event"},
		{"a/b", "a/b/water/W_1/status", "water", "W_1", "status"},
		{"sanitation", "sanitation/anything/x/status", "anything", "x", "status"},
		{"sanitation", "sanitation//x/status", "", "x", "status"},
		{"sanitation", "sanitation/bin/x/telemetry/", "", "", "bad_topic"},
		{"sanitation", "sanitation/bin/x", "", "", "bad_topic"},
		{"sanitation", "sanitation/bin//telemetry", "", "", "bad_topic"},
		{"sanitation", "sanitation/bin/a+b/telemetry", "", "", "bad_topic"},
		{"sanitation", "sanitation/bin/" + strings.Repeat("x", 65) + "/telemetry", "", "", "bad_topic"},
		{"sanitation", "sanitationx/bin/x/telemetry", "", "", "bad_topic"},
		{"sanitation", "sanitation/bin/x/Telemetry", "", "", "bad_topic"},
	} {
		kind, id, typ, err := ParseTopic(tc.root, tc.topic)
		got := typ.String()
		if err != nil {
			got = reason(err)
		}
		if kind != tc.kind || id != tc.id || got != tc.want {
			t.Errorf("ParseTopic(%q, %q) = %q, %q, %s; want %q, %q, %s", tc.root, tc.topic, kind, id, got, tc.kind, tc.id, tc.want)
		}
	}
}

func TestReasons(t *testing.T) {
	seen := map[string]bool{}
	for r := ReasonNone + 1; r < numReasons; r++ {
		s := r.String()
		if s == "" || s != strings.ToLower(s) || strings.ContainsAny(s, " -") || seen[s] {
			t.Errorf("reason %d: %q is not a unique snake_case word", r, s)
		}
		seen[s] = true
	}
	if len(RejectReasons)+len(DropReasons) != int(numReasons)-1 {
		t.Errorf("%d reject and %d drop reasons, want %d in all", len(RejectReasons), len(DropReasons), numReasons-1)
	}
	// The contract's words, section 4.
	for _, w := range []string{"bad_json", "too_large", "unknown_device", "kind_mismatch", "device_mismatch", "bad_timestamp", "no_fields", "out_of_range", "not_finite", "unknown_field"} {
		if !seen[w] {
			t.Errorf("no reason %q", w)
		}
	}
	if got := (&Rejection{Reason: ReasonBadJSON}).Error(); got != "bad_json" {
		t.Errorf("Error() = %q", got)
	}
}

// TestParseRFC3339Millis compares the timestamp parser with time.Parse (on
// the string with t and z upper-cased, which time.Parse requires).
func TestParseRFC3339Millis(t *testing.T) {
	for _, s := range rfc3339Seeds {
		checkRFC3339(t, s)
	}
}

var rfc3339Seeds = []string{
	"2026-11-28T08:00:00Z", "2026-11-28T16:00:00+08:00", "2029-09-29T19:59:59.999-09:39", "1999-12-31T23:59:59+23:59", "2026-11-28T08:00:00.250Z", "2026-11-28T16:00:00+08:00",
	"2026-11-28T08:00:00.123456789-09:30", "2026-11-28T08:00:00.1234567891234Z",
	"2024-02-29T23:59:59.999Z", "2023-02-29T00:00:00Z", "0000-01-01T00:00:00Z", "0000-03-01T00:00:00Z",
	"9999-12-31T23:59:59.999999999+23:59", "1969-12-31T23:59:59.999Z", "1600-02-29T12:00:00Z",
	"2026-11-28T24:00:00Z", "2026-11-28T08:60:00Z", "2026-11-28T08:00:60Z", "2026-13-01T00:00:00Z",
	"2026-11-28T08:00:00+24:00", "2026-11-28T08:00:00+08:60", "2026-11-28T8:00:00Z",
	"2026-11-28T08:00:00,5Z", "2026-11-28t08:00:00Z", "2026-11-28T08:00:00.Z", "2026-11-28T08:00:00",
	"2026-11-28T08:00:00z", "2026-11-28t08:00:00.5z", "2026-11-28t16:00:00+08:00", "2026-11-28 08:00:00Z", "+2026-11-28T08:00:00Z", "2026-11-28T08:00:00+0800",
	"", "yesterday",
}

// canonicalRFC3339 is the form the fast path must take (within range).
var canonicalRFC3339 = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$`)

func checkRFC3339(t *testing.T, s string) {
	t.Helper()
	ms, ok := parseRFC3339Millis([]byte(s))
	tm, err := time.Parse(time.RFC3339Nano, upperTZ(s))
	if ok != (err == nil) || ok && ms != tm.UnixMilli() {
		t.Errorf("%q: got %d, %v; time.Parse says %d, %v", s, ms, ok, tm.UnixMilli(), err)
	}
	// The usual form must not fall back to time.Parse (which allocates).
	if _, fast := fastRFC3339Millis([]byte(s)); err == nil && canonicalRFC3339.MatchString(upperTZ(s)) && !fast {
		t.Errorf("%q: the fast path refuses it", s)
	}
}

// TestParseNumber compares the number parser with strconv.ParseFloat.
func TestParseNumber(t *testing.T) {
	for _, s := range numberSeeds {
		checkNumber(t, s)
	}
}

var numberSeeds = []string{
	"0", "-0", "1", "73.5", "0.1", "0.3", "-40", "200000", "1e999", "-1e400", "1e-400", "4.9e-324",
	"1.7976931348623157e308", "1.7976931348623159e308", "123456789012345", "1234567890123456",
	"9007199254740993", "0.000000000000000000001", "0.0000000000000000000001", "1E+22", "1e23",
	"3.14159265358979323846", "100000000000000000000000", "0.696", "2.5e2", "7.5e0", "1E-3",
	"12345678901234567890e-20", "0e100", "1e00000000000000000001",
}

func checkNumber(t *testing.T, s string) {
	t.Helper()
	b := []byte(s)
	if scanNumber(b, 0) != len(b) {
		return
	}
	want, _ := strconv.ParseFloat(s, 64)
	if got := parseNumber(b); math.Float64bits(got) != math.Float64bits(want) {
		t.Errorf("parseNumber(%q) = %v, strconv says %v", s, got, want)
	}
}

// TestJSONScanner compares the scanner's verdict with encoding/json.
func TestJSONScanner(t *testing.T) {
	for _, s := range jsonSeeds {
		checkJSON(t, []byte(s))
	}
	deep := strings.Repeat("[", 9999) + strings.Repeat("]", 9999)
	checkJSON(t, []byte(`{"a":`+deep+`}`))
	deeper := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	checkJSON(t, []byte(`{"a":`+deeper+`}`))
}

var jsonSeeds = []string{
	`{}`, ` { } `, `{"a":1}`, `{"a":[1,2,{"b":null}],"c":"\u00e9\n"}`, `{"a":-0.5e-3}`, `{"a":true,"b":false}`,
	`{"a":01}`, `{"a":1.}`, `{"a":.1}`, `{"a":+1}`, `{"a":1e}`, `{"a":NaN}`, `{"a":Infinity}`, `{"a":-}`,
	`{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, "{\"a\":\"\x01\"}", "{\"a\":\"\x7f\xff\"}", `{"a":1,}`,
	`{,"a":1}`, `{"a" 1}`, `{"a":1 "b":2}`, `{"a":[1,]}`, `{"a":[,1]}`, `{"a":[1 2]}`, `{"a":tru}`, `{"a":nul}`,
	`{"a":1}}`, `{"a":1}{}`, `{'a':1}`, `{a:1}`, `[]`, `"x"`, `1`, `null`, ``, ` `, `{`, `{"a"`, `{"a":`,
	`{"a":"`, `{"a":"\`, `{"a":[`, `{"a":{`, `{"a":{"b":1]}`, `{"a":[1}]`, "\t{\"a\":1}\r\n", `{"\ud83d\ude00":1}`,
	`{"a":"\ud800"}`, `{"a":1}` + "\x00",
}

func checkJSON(t *testing.T, b []byte) {
	t.Helper()
	obj, kind := openObject(b)
	valid := kind != jsonInvalid
	if kind == jsonObject {
		for _, _, ok := obj.next(); ok; _, _, ok = obj.next() {
		}
		valid = obj.finish()
	}
	if want := json.Valid(b); valid != want {
		t.Errorf("%.80q: scanner says valid=%v, encoding/json says %v", b, valid, want)
	}
	if kind == jsonObject && valid {
		// The members and their values are what encoding/json reads.
		var want map[string]json.RawMessage
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		obj, _ := openObject(b)
		got := map[string]json.RawMessage{}
		for k, v, ok := obj.next(); ok; k, v, ok = obj.next() {
			raw := v.raw
			if v.kind == jsonString { // put the quotes back
				off := cap(b) - cap(v.raw)
				raw = b[off-1 : off+len(v.raw)+1]
			}
			got[coerceUTF8(appendUnescaped(nil, k.raw))] = raw
		}
		if len(got) != len(want) {
			t.Errorf("%.80q: %d members, encoding/json finds %d", b, len(got), len(want))
		}
		for k, w := range want {
			if string(got[k]) != string(w) {
				t.Errorf("%.80q: member %q = %s, encoding/json says %s", b, k, got[k], w)
			}
		}
	}
}

// coerceUTF8 replaces each byte that is not UTF-8 with U+FFFD, as
// encoding/json does when it decodes a string.
func coerceUTF8(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		sb.WriteRune(r)
		b = b[n:]
	}
	return sb.String()
}
