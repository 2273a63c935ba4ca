package devices

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The decoder reads payloads with the strict, allocation-free JSON scanner
// below rather than a general parser: a payload is validated and its
// members visited in one pass, and values stay spans of the payload.
// It accepts exactly what encoding/json.Valid accepts: the RFC 8259
// grammar (no NaN, no leading zeros, no bad escapes, no raw control
// characters in strings), nesting up to 10000 levels; like encoding/json
// it does not require strings to be valid UTF-8.

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

// jsonKind is the type of a JSON value, known from its first byte.
type jsonKind uint8

const (
	jsonInvalid jsonKind = iota
	jsonString
	jsonNumber
	jsonObject
	jsonArray
	jsonBool
	jsonNull
)

var jsonKindNames = [...]string{"invalid value", "string", "number", "object", "array", "boolean", "null"}

func (k jsonKind) String() string { return jsonKindNames[k] }

func kindOf(c byte) jsonKind {
	switch c {
	case '"':
		return jsonString
	case '{':
		return jsonObject
	case '[':
		return jsonArray
	case 't', 'f':
		return jsonBool
	case 'n':
		return jsonNull
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return jsonNumber
	}
	return jsonInvalid
}

// jsonValue is a value inside a payload. For a string, raw excludes the
// quotes and esc tells whether it holds escapes (see appendUnescaped).
type jsonValue struct {
	raw  []byte
	kind jsonKind
	esc  bool
}

func skipWS(b []byte, i int) int {
	if i < len(b) && b[i] > ' ' {
		return i
	}
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// scanString scans the string whose opening quote is at b[i]. It returns
// the index after the closing quote (-1 if the string is invalid) and
// whether the string holds escapes.
func scanString(b []byte, i int) (end int, esc bool) {
	i++
	for {
		for i < len(b) && !strSpecial[b[i]] {
			i++
		}
		if i >= len(b) {
			return -1, esc
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, esc
		case c == '\\':
			esc = true
			if i++; i >= len(b) {
				return -1, esc
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return -1, esc
				}
				i += 4
			default:
				return -1, esc
			}
			i++
		default: // a control character
			return -1, esc
		}
	}
}

// strSpecial marks the bytes that end a run of plain string characters.
var strSpecial = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// scanNumber scans the number starting at b[i] and returns the index
// after it, or -1 if it is not a JSON number.
func scanNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return -1
		}
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return -1
		}
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		}
	}
	return i
}

func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// skipValue scans the value starting at b[i], inside containers nested
// depth deep, and returns the index after it or -1 if it is invalid.
func skipValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := scanString(b, i)
		return end
	case '{':
		return skipObject(b, i, depth+1)
	case '[':
		return skipArray(b, i, depth+1)
	case 't':
		return scanLiteral(b, i, "true")
	case 'f':
		return scanLiteral(b, i, "false")
	case 'n':
		return scanLiteral(b, i, "null")
	}
	return scanNumber(b, i)
}

func skipObject(b []byte, i, depth int) int {
	if depth > maxJSONDepth {
		return -1
	}
	if i = skipWS(b, i+1); i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		if i, _ = scanString(b, i); i < 0 {
			return -1
		}
		if i = skipWS(b, i); i >= len(b) || b[i] != ':' {
			return -1
		}
		if i = skipValue(b, skipWS(b, i+1), depth); i < 0 {
			return -1
		}
		if i = skipWS(b, i); i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return i + 1
		default:
			return -1
		}
	}
}

func skipArray(b []byte, i, depth int) int {
	if depth > maxJSONDepth {
		return -1
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for {
		if i = skipValue(b, i, depth); i < 0 {
			return -1
		}
		if i = skipWS(b, i); i >= len(b) {
			return -1
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case ']':
			return i + 1
		default:
			return -1
		}
	}
}

// jsonObj iterates the members of an object, validating as it goes.
type jsonObj struct {
	b     []byte
	i     int // after the '{', then after the last value read, then after the '}'
	depth int // nesting depth of the object, 1 at the top level
	n     int // members read
	bad   bool
}

// next reads the next member. It returns ok == false at the end of the
// object, or on invalid JSON, which it records in o.bad.
func (o *jsonObj) next() (key, val jsonValue, ok bool) {
	if key, ok = o.nextKey(); ok {
		val, ok = o.value()
	}
	return key, val, ok
}

// nextKey reads the next member's key; its value must then be read with
// value, or with enter and leave when it is an object.
func (o *jsonObj) nextKey() (key jsonValue, ok bool) {
	b := o.b
	i := skipWS(b, o.i)
	if i >= len(b) {
		o.bad = true
		return
	}
	if b[i] == '}' {
		o.i = i + 1
		return
	}
	if o.n > 0 {
		if b[i] != ',' {
			o.bad = true
			return
		}
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		o.bad = true
		return
	}
	end, esc := scanString(b, i)
	if end < 0 {
		o.bad = true
		return
	}
	key = jsonValue{raw: b[i+1 : end-1], kind: jsonString, esc: esc}
	if i = skipWS(b, end); i >= len(b) || b[i] != ':' {
		o.bad = true
		return
	}
	if o.i = skipWS(b, i+1); o.i >= len(b) {
		o.bad = true
		return
	}
	o.n++
	return key, true
}

// value reads the value of the member whose key nextKey read.
func (o *jsonObj) value() (val jsonValue, ok bool) {
	b, i := o.b, o.i
	var end int
	if b[i] == '"' {
		var esc bool
		end, esc = scanString(b, i)
		val = jsonValue{raw: b[i+1 : max(end-1, i+1)], kind: jsonString, esc: esc}
	} else {
		end = skipValue(b, i, o.depth)
		val = jsonValue{raw: b[i:max(end, i)], kind: kindOf(b[i])}
	}
	if end < 0 {
		o.bad = true
		return val, false
	}
	o.i = end
	return val, true
}

// enter starts iterating the members of the value of the member whose key
// nextKey read, if it is an object; the caller iterates them to the end
// and then calls leave.
func (o *jsonObj) enter() (jsonObj, bool) {
	if o.b[o.i] != '{' || o.depth+1 > maxJSONDepth {
		return jsonObj{}, false
	}
	return jsonObj{b: o.b, i: o.i + 1, depth: o.depth + 1}, true
}

// leave continues after the object value sub, entered and read to its end.
func (o *jsonObj) leave(sub *jsonObj) bool {
	if sub.bad {
		o.bad = true
		return false
	}
	o.i = sub.i
	return true
}

// openObject starts reading b as a payload that must be one JSON object.
// It returns the kind of the payload's value (jsonInvalid when it is not
// JSON at all); only for jsonObject is the iterator usable.
func openObject(b []byte) (jsonObj, jsonKind) {
	i := skipWS(b, 0)
	if i >= len(b) {
		return jsonObj{}, jsonInvalid
	}
	if b[i] == '{' {
		return jsonObj{b: b, i: i + 1, depth: 1}, jsonObject
	}
	if end := skipValue(b, i, 0); end < 0 || skipWS(b, end) != len(b) {
		return jsonObj{}, jsonInvalid
	}
	return jsonObj{}, kindOf(b[i])
}

// finish reports whether nothing but white space follows the object.
func (o *jsonObj) finish() bool {
	return !o.bad && skipWS(o.b, o.i) == len(o.b)
}

// subObject iterates the members of v, an object the scanner already
// validated, nested inside o.
func (o *jsonObj) subObject(v jsonValue) jsonObj {
	return jsonObj{b: v.raw, i: 1, depth: o.depth + 1}
}

// appendUnescaped appends the content of a valid JSON string (without its
// quotes) to dst with its escapes decoded. A lone UTF-16 surrogate becomes
// U+FFFD, as with encoding/json; other bytes are copied as they are.
func appendUnescaped(dst, raw []byte) []byte {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(raw[i+1:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
					r2 = hex4(raw[i+3:])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, raw[i])
		}
	}
	return dst
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseNumber returns the value of a number scanNumber accepted, as
// strconv.ParseFloat does (±Inf when it overflows). Numbers of at most 15
// significant digits and a small exponent take an exact fast path: both
// the mantissa and the power of ten are exact float64s, so one division or
// multiplication rounds correctly.
func parseNumber(b []byte) float64 {
	i, neg := 0, false
	if b[0] == '-' {
		neg, i = true, 1
	}
	var mant uint64
	digits, exp := 0, 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if mant != 0 || b[i] != '0' {
			if digits++; digits > 15 {
				return slowParseNumber(b)
			}
		}
		mant = mant*10 + uint64(b[i]-'0')
	}
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if mant != 0 || b[i] != '0' {
				if digits++; digits > 15 {
					return slowParseNumber(b)
				}
			}
			mant = mant*10 + uint64(b[i]-'0')
			exp--
		}
	}
	if i < len(b) { // exponent
		i++
		eneg := false
		if b[i] == '+' || b[i] == '-' {
			eneg = b[i] == '-'
			i++
		}
		e := 0
		for ; i < len(b); i++ {
			if e = e*10 + int(b[i]-'0'); e > 1000 {
				return slowParseNumber(b)
			}
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	f := float64(mant)
	switch {
	case mant == 0:
	case exp < 0 && exp >= -22:
		f /= pow10[-exp]
	case exp >= 0 && exp <= 22:
		f *= pow10[exp]
	default:
		return slowParseNumber(b)
	}
	if neg {
		f = -f
	}
	return f
}

func slowParseNumber(b []byte) float64 {
	// A range error leaves ±Inf or 0, which is what we want; the syntax
	// was checked by scanNumber.
	f, _ := strconv.ParseFloat(string(b), 64)
	return f
}

// parseInt returns the value of a JSON number that is an integer in the
// int64 range written without fraction or exponent.
func parseInt(b []byte) (int64, bool) {
	i, neg := 0, false
	if len(b) > 0 && b[0] == '-' {
		neg, i = true, 1
	}
	if i >= len(b) {
		return 0, false
	}
	if len(b)-i > 18 {
		n, err := strconv.ParseInt(string(b), 10, 64)
		return n, err == nil
	}
	var n int64
	for ; i < len(b); i++ {
		if b[i] < '0' || b[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(b[i]-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}
