package simulator

import (
	"encoding/base64"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/sanitel/sanitel/devices"
)

// Payloads are appended to a reused buffer with strconv rather than built
// with fmt or encoding/json: the simulator must cost little next to the
// broker it loads.

// precision is the number of decimals each field is sent with.
var precision = [devices.NumFields]int{
	devices.FillPct: 1, devices.TempC: 1, devices.TiltDeg: 1, devices.BatteryPct: 0,
	devices.NH3MgM3: 3, devices.H2SMgM3: 4, devices.FlowLpm: 2, devices.Visitors: 0,
	devices.HumidityPct: 1, devices.TankLevelPct: 1, devices.PH: 2,
	devices.TurbidityNTU: 2, devices.ChlorineMgL: 3, devices.ConductivityUScm: 0,
	devices.NH3Ppm: 3, devices.H2SPpm: 4,
}

// ppm factors at 25 °C (contract section 3).
const (
	nh3MgPerPpm = 0.696
	h2sMgPerPpm = 1.393
)

var pow10 = [...]float64{1, 10, 100, 1000, 10000, 100000, 1e6}

// appendNumber appends v with prec decimals (at most 6), trailing zeros
// trimmed. It formats a scaled integer, several times faster than
// strconv's float formatting, which only the rare huge value needs.
func appendNumber(b []byte, v float64, prec int) []byte {
	x := math.Round(v * pow10[prec])
	if !(math.Abs(x) < 1e15) {
		return strconv.AppendFloat(b, v, 'f', prec, 64)
	}
	n := int64(x)
	if n == 0 {
		return append(b, '0') // also for -0
	}
	if n < 0 {
		b = append(b, '-')
		n = -n
	}
	for prec > 0 && n%10 == 0 {
		n /= 10
		prec--
	}
	if prec == 0 {
		return strconv.AppendInt(b, n, 10)
	}
	var tmp [24]byte
	i := len(tmp)
	for range prec {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	i--
	tmp[i] = '.'
	if n == 0 {
		i--
		tmp[i] = '0'
	}
	for ; n > 0; n /= 10 {
		i--
		tmp[i] = byte('0' + n%10)
	}
	return append(b, tmp[i:]...)
}

// appendFields appends `"name":value` pairs for the kind's fields present
// in vals, in table order, gases in ppm when ppm is set.
func appendFields(b []byte, kind devices.Kind, vals *devices.Values, ppm bool, first bool) []byte {
	for _, f := range kind.Fields() {
		v, ok := vals.Get(f)
		if !ok {
			continue
		}
		name := f
		if ppm {
			switch f {
			case devices.NH3MgM3:
				name, v = devices.NH3Ppm, v/nh3MgPerPpm
			case devices.H2SMgM3:
				name, v = devices.H2SPpm, v/h2sMgPerPpm
			}
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name.String()...)
		b = append(b, '"', ':')
		b = appendNumber(b, v, precision[name])
	}
	return b
}

// appendTS appends a JSON timestamp: epoch milliseconds or an RFC 3339
// string with milliseconds in UTC.
func appendTS(b []byte, ms int64, epoch bool) []byte {
	if epoch {
		return strconv.AppendInt(b, ms, 10)
	}
	b = append(b, '"')
	b = appendRFC3339(b, ms, -1)
	return append(b, '"')
}

// appendRFC3339 appends ms as 2006-01-02T15:04:05.000Z. With nanos ≥ 0 it
// instead writes nine fraction digits (ms's millisecond plus nanos below
// it) and a +00:00 offset, as ChirpStack does.
func appendRFC3339(b []byte, ms int64, nanos int) []byte {
	days := ms / dayMs
	rem := ms % dayMs
	if rem < 0 {
		rem += dayMs
		days--
	}
	y, mo, d := civil(days)
	b = append4(b, y)
	b = append(b, '-')
	b = append2(b, mo)
	b = append(b, '-')
	b = append2(b, d)
	b = append(b, 'T')
	b = append2(b, int(rem/hourMs))
	b = append(b, ':')
	b = append2(b, int(rem/minuteMs%60))
	b = append(b, ':')
	b = append2(b, int(rem/1000%60))
	b = append(b, '.')
	milli := int(rem % 1000)
	b = append(b, byte('0'+milli/100), byte('0'+milli/10%10), byte('0'+milli%10))
	if nanos < 0 {
		return append(b, 'Z')
	}
	b = append(b, byte('0'+nanos/100000%10), byte('0'+nanos/10000%10), byte('0'+nanos/1000%10),
		byte('0'+nanos/100%10), byte('0'+nanos/10%10), byte('0'+nanos%10))
	return append(b, "+00:00"...)
}

// civil converts days since 1970-01-01 to a proleptic Gregorian date
// (Howard Hinnant's days_from_civil, inverted).
func civil(z int64) (year, month, day int) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return int(y), int(m), int(d)
}

func append2(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }

func append4(b []byte, v int) []byte {
	return append(b, byte('0'+v/1000%10), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10))
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
			i++
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			i++
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
		}
	}
	return append(b, '"')
}

// appendUUID appends h1, h2 as a version-4-shaped UUID string.
func appendUUID(b []byte, h1, h2 uint64) []byte {
	const hex = "0123456789abcdef"
	h1 = h1&^0xf000 | 0x4000         // version 4
	h2 = h2&^(0xc<<60) | (0x8 << 60) // RFC 4122 variant
	for i, shift := 0, 60; i < 16; i, shift = i+1, shift-4 {
		if i == 8 || i == 12 {
			b = append(b, '-')
		}
		b = append(b, hex[(h1>>shift)&0xf])
	}
	for i, shift := 0, 60; i < 16; i, shift = i+1, shift-4 {
		if i == 0 || i == 4 {
			b = append(b, '-')
		}
		b = append(b, hex[(h2>>shift)&0xf])
	}
	return b
}

func uuidString(h1, h2 uint64) string { return string(appendUUID(nil, h1, h2)) }

func appendHex(b []byte, v uint64, digits int) []byte {
	const hex = "0123456789abcdef"
	for shift := (digits - 1) * 4; shift >= 0; shift -= 4 {
		b = append(b, hex[(v>>shift)&0xf])
	}
	return b
}

func appendBase64(b []byte, data []byte) []byte {
	return base64.StdEncoding.AppendEncode(b, data)
}
