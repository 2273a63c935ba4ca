package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

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
