// Package duration reads and writes the durations of sanitel's config,
// rules and registry: Go's notation with a leading number of days allowed,
// since deadlines and windows are counted in days ("7d", "1d12h").
package duration

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

const day = 24 * time.Hour

// Parse parses a Go duration ("30s", "1h30m") that may start with a number
// of days ("7d", "1d12h", "1.5d"), surrounding space ignored.
func Parse(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	orig := s
	neg := false
	if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		neg = s[0] == '-'
		s = s[1:]
	}
	var d time.Duration
	// No Go duration unit contains a 'd', so one can only end a day count.
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || s[:i] == "" || strings.ContainsAny(s[:i], "eEnNxXpP_+-") || n < 0 {
			return 0, fmt.Errorf("invalid duration %q", orig)
		}
		if n > float64(math.MaxInt64/int64(day)) {
			return 0, fmt.Errorf("invalid duration %q: too large", orig)
		}
		d = time.Duration(n * float64(day))
		s = s[i+1:]
	} else if s == "" {
		return 0, fmt.Errorf("invalid duration %q", orig)
	}
	if s != "" {
		if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
			return 0, fmt.Errorf("invalid duration %q", orig)
		}
		rest, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", orig)
		}
		if rest > math.MaxInt64-d {
			return 0, fmt.Errorf("invalid duration %q: too large", orig)
		}
		d += rest
	}
	if neg {
		d = -d
	}
	return d, nil
}

// Format renders d the way a person would write it in a config or a rules
// file, and the way Parse reads it back: "7d", "5m", "1h30m", "2ms".
func Format(d time.Duration) string {
	if d != 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
