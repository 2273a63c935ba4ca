package devices

import (
	"runtime"
	"strings"
	"testing"
)

type hostile struct {
	topic, payload string
	// linear marks a payload whose decoding may allocate up to twice its
	// size: a number longer than 15 digits is copied for strconv.ParseFloat
	// (and again into its error when it overflows).
	linear bool
}

// hostilePayloads are messages at the size limit built to make a parser
// work hard: deep nesting, many members, long strings full of escapes.
func hostilePayloads() map[string]hostile {
	const limit = 64 << 10
	fill := func(prefix, unit, suffix string) string {
		n := (limit - len(prefix) - len(suffix)) / len(unit)
		return prefix + strings.Repeat(unit, n) + suffix
	}
	nest := func(prefix, open, close, suffix string) string {
		n := (limit - len(prefix) - len(suffix)) / (len(open) + len(close))
		return prefix + strings.Repeat(open, n) + strings.Repeat(close, n) + suffix
	}
	const tel, ev, cs = "sanitation/bin/bin-001/telemetry", "sanitation/bin/bin-001/event", "application/1/device/0004a30b001c0530/event/up"
	return map[string]hostile{
		"nested arrays":         {tel, nest(`{"fill_pct": 5, "x": `, "[", "]", `}`), false},
		"nested objects":        {tel, nest(`{"fill_pct": 5, "x": `, `{"a":`, "}", `}`), false},
		"many members":          {tel, fill(`{`, `"k": 1, `, `"fill_pct": 5}`), false},
		"escaped key":           {tel, fill(`{"fill_pct": 5, "`, `\u00e9`, `": 1}`), false},
		"escaped string value":  {tel, fill(`{"fill_pct": 5, "x": "`, `\u00e9`, `"}`), false},
		"long number":           {tel, fill(`{"fill_pct": 5`, `0`, `}`), true},
		"long event detail":     {ev, fill(`{"type": "fire", "detail": "`, `\u00e9`, `"}`), false},
		"long event type":       {ev, fill(`{"detail": "x", "type": "`, `a`, `"}`), false},
		"long ts":               {tel, fill(`{"fill_pct": 5, "ts": "2026-11-28T08:00:00.`, `1`, `Z"}`), false},
		"long device_id":        {tel, fill(`{"fill_pct": 5, "device_id": "`, `b`, `"}`), false},
		"chirpstack long dedup": {cs, fill(`{"deviceInfo": {"devEui": "0004a30b001c0530"}, "object": {"ph": 7}, "deduplicationId": "`, `\u00e9`, `"}`), false},
		"chirpstack many rx":    {cs, fill(`{"deviceInfo": {"devEui": "0004a30b001c0530"}, "object": {"ph": 7}, "rxInfo": [`, `{"rssi": -80}, `, `{}]}`), false},
		"chirpstack long eui":   {cs, fill(`{"object": {"ph": 7}, "deviceInfo": {"devEui": "`, `0`, `"}}`), false},
	}
}

// TestDecodeHostileAllocation: whatever a message at the size limit holds,
// decoding it allocates a small, fixed amount (long numbers aside), not
// something that grows with the payload's nesting, members or escapes.
func TestDecodeHostileAllocation(t *testing.T) {
	d := testDecoder(t)
	var m Message
	for name, c := range hostilePayloads() {
		payload := []byte(c.payload)
		if len(payload) > 64<<10 {
			t.Fatalf("%s: %d bytes, over the limit", name, len(payload))
		}
		d.Decode(c.topic, payload, testNow, &m) // warm the decoder's buffers
		var before, after runtime.MemStats
		const runs = 20
		runtime.ReadMemStats(&before)
		for range runs {
			d.Decode(c.topic, payload, testNow, &m)
		}
		runtime.ReadMemStats(&after)
		perRun := (after.TotalAlloc - before.TotalAlloc) / runs
		t.Logf("%-22s %6d bytes allocated per decode", name, perRun)
		bound := uint64(4096)
		if c.linear {
			bound += 2 * uint64(len(payload))
		}
		if perRun > bound {
			t.Errorf("%s: %d bytes allocated per decode of %d bytes, want at most %d", name, perRun, len(payload), bound)
		}
	}
}
