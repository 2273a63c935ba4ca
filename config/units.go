package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

const day = 24 * time.Hour

// ParseDuration parses a Go duration ("30s", "1h30m") that may start with
// a number of days ("7d", "1d12h", "1.5d").
func ParseDuration(s string) (time.Duration, error) {
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
		if err != nil || s[:i] == "" || strings.ContainsAny(s[:i], "eEnNxXpP_") || n < 0 {
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

// FormatDuration renders d the way a config would spell it: "7d", "5m",
// "1h30m", "2ms".
func FormatDuration(d time.Duration) string {
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

// byteUnits are ordered from the largest, as FormatByteSize picks the
// largest unit that divides a size exactly.
var byteUnits = []struct {
	name string
	size int64
}{
	{"TiB", 1 << 40}, {"TB", 1e12},
	{"GiB", 1 << 30}, {"GB", 1e9},
	{"MiB", 1 << 20}, {"MB", 1e6},
	{"KiB", 1 << 10}, {"kB", 1e3},
	{"B", 1},
}

// ParseByteSize parses a byte count: a plain integer or a number with a
// unit, binary (KiB, MiB, GiB, TiB) or decimal (kB, MB, GB, TB); units
// ignore case and may follow a space ("64KiB", "512 MB", "1.5GiB").
func ParseByteSize(s string) (int64, error) {
	orig := s
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(s)
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	if num == "" {
		return 0, fmt.Errorf("invalid byte size %q", orig)
	}
	mult := int64(0)
	for _, u := range byteUnits {
		if strings.EqualFold(unit, u.name) {
			mult = u.size
		}
	}
	if unit == "" {
		mult = 1
	}
	if mult == 0 {
		return 0, fmt.Errorf("invalid byte size %q: unknown unit %q", orig, unit)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return 0, fmt.Errorf("invalid byte size %q", orig)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*float64(mult) >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid byte size %q", orig)
	}
	return int64(f * float64(mult)), nil
}

// FormatByteSize renders n with the largest unit that divides it exactly:
// "1GiB", "512MB", "1500".
func FormatByteSize(n int64) string {
	if n == 0 {
		return "0"
	}
	for _, u := range byteUnits[:len(byteUnits)-1] {
		if n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}
