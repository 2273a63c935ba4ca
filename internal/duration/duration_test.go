package duration

import (
	"testing"
	"time"
)

func TestParseFormat(t *testing.T) {
	good := map[string]time.Duration{
		"30s": 30 * time.Second, "2ms": 2 * time.Millisecond, "7d": 7 * day, "1d12h": 36 * time.Hour,
		"1.5d": 36 * time.Hour, "0": 0, "-5m": -5 * time.Minute, "+10m": 10 * time.Minute, " 5m ": 5 * time.Minute, "-1d": -day, "0d": 0,
	}
	for in, want := range good {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "30", "d", "7dd", "1h2d", "7d-1h", "1d-2h", "xd", "++1d", "+-1d", "1e3d", "infd", "999999999d", "7 days", "NaNd"} {
		if got, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %v, want an error", in, got)
		}
	}
	for d, want := range map[time.Duration]string{
		7 * day: "7d", 5 * time.Minute: "5m", 90 * time.Minute: "1h30m", 2 * time.Hour: "2h",
		2 * time.Millisecond: "2ms", 0: "0s", 1500 * time.Millisecond: "1.5s", 25 * time.Hour: "25h",
	} {
		if got := Format(d); got != want {
			t.Errorf("Format(%v) = %q, want %q", d, got, want)
		}
	}
}
