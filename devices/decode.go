package devices

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Reason is why a message was rejected or a field dropped. Reasons are
// short snake_case words; they label metrics and dead letters.
type Reason uint8

// Rejection and drop reasons (contract section 4). The first group rejects
// a whole message; the last three drop one field.
const (
	ReasonNone Reason = iota
	ReasonBadJSON
	ReasonTooLarge
	ReasonBadTopic
	ReasonUnknownDevice
	ReasonKindMismatch
	ReasonDeviceMismatch
	ReasonBadTimestamp
	ReasonNoFields
	ReasonBadEvent
	ReasonOutOfRange
	ReasonNotFinite
	ReasonUnknownField
	numReasons
)

var reasonNames = [numReasons]string{
	"", "bad_json", "too_large", "bad_topic", "unknown_device", "kind_mismatch",
	"device_mismatch", "bad_timestamp", "no_fields", "bad_event",
	"out_of_range", "not_finite", "unknown_field",
}

// String returns the reason's snake_case name.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// RejectReasons lists the reasons a whole message can be rejected for.
var RejectReasons = []Reason{ReasonBadJSON, ReasonTooLarge, ReasonBadTopic, ReasonUnknownDevice,
	ReasonKindMismatch, ReasonDeviceMismatch, ReasonBadTimestamp, ReasonNoFields, ReasonBadEvent}

// DropReasons lists the reasons a single field can be dropped for.
var DropReasons = []Reason{ReasonOutOfRange, ReasonNotFinite, ReasonUnknownField}

// Rejection is the error Decode returns for a message that cannot be
// accepted at all.
type Rejection struct {
	Reason Reason
	Detail string
}

func (e *Rejection) Error() string {
	if e.Detail == "" {
		return e.Reason.String()
	}
	return e.Reason.String() + ": " + e.Detail
}

func reject(r Reason, format string, args ...any) *Rejection {
	detail := fmt.Sprintf(format, args...)
	if len(detail) > MaxDetailLen {
		detail = truncate(detail, MaxDetailLen-len("…")) + "…"
	}
	return &Rejection{Reason: r, Detail: detail}
}

// MaxDetailLen bounds a rejection's Detail in bytes: it quotes the input
// (a topic may be 64 KiB long) and is logged and kept with dead letters.
const MaxDetailLen = 512

// MessageType tells what a message carries.
type MessageType uint8

// Message types, by topic.
const (
	Telemetry MessageType = iota + 1
	Event
	Status
)

// String returns "telemetry", "event" or "status".
func (t MessageType) String() string {
	switch t {
	case Telemetry:
		return "telemetry"
	case Event:
		return "event"
	case Status:
		return "status"
	}
	return "unknown"
}

// Message is one decoded, validated message. Decode fills it in place so a
// subscriber can reuse one Message for every delivery.
type Message struct {
	Type     MessageType
	DeviceID string
	Device   *Device // nil for an unknown device accepted by Options.AcceptUnknown
	Kind     Kind
	TS       int64 // device time, Unix milliseconds
	// Received tells that the message carried no time, so TS is the time
	// of receipt.
	Received bool
	Seq      int64
	HasSeq   bool
	Values   Values // telemetry
	// EventType and EventDetail describe an event.
	EventType   string
	EventDetail string
	// Online is a status message's state.
	Online bool
	// DedupID is a ChirpStack uplink's deduplicationId.
	DedupID string
	// Drops counts the fields dropped from this message, by reason.
	Drops [numReasons]uint8
	// FirstDrop describes the first dropped field, for logs.
	FirstDrop string
}

// Time returns the message's device time.
func (m *Message) Time() time.Time { return time.UnixMilli(m.TS) }

func (m *Message) reset() {
	*m = Message{}
}

func (m *Message) drop(r Reason, name string) {
	if m.Drops[r] < math.MaxUint8 {
		m.Drops[r]++
	}
	if m.FirstDrop == "" {
		m.FirstDrop = name + ": " + r.String()
	}
}

// dropKey drops a member whose key is not a field of the message's kind.
func (m *Message) dropKey(r Reason, key []byte) {
	if m.Drops[r] < math.MaxUint8 {
		m.Drops[r]++
	}
	if m.FirstDrop == "" {
		m.FirstDrop = cleanText(string(truncate(key, 64))) + ": " + r.String()
	}
}

// clearReading forgets the values and drops of a message that is rejected
// for a reason other than its fields.
func (m *Message) clearReading() {
	m.Values = Values{}
	m.Drops = [numReasons]uint8{}
	m.FirstDrop = ""
}

// DecoderOptions configure a Decoder.
type DecoderOptions struct {
	Registry      *Registry
	AcceptUnknown bool          // accept devices missing from the registry (no registry tags)
	TopicRoot     string        // default "sanitation"
	MaxPayload    int           // bytes; default 64 KiB
	AcceptWindow  time.Duration // oldest accepted device time; default DefaultAcceptWindow
	// MaxFuture is how far ahead of now a device time may be; nil:
	// DefaultMaxFuture. Zero accepts nothing ahead.
	MaxFuture *time.Duration
	// RefTempC is the ppm → mg/m³ reference temperature, °C; nil:
	// DefaultRefTempC. Zero is 0 °C.
	RefTempC *float64
}

// The contract's default limits on a reading's device time: up to
// DefaultAcceptWindow old, up to DefaultMaxFuture ahead of the server.
const (
	DefaultAcceptWindow = 7 * 24 * time.Hour
	DefaultMaxFuture    = 5 * time.Minute
)

// DefaultRefTempC is the contract's reference temperature for converting
// ammonia and hydrogen sulfide from ppm to mg/m³.
const DefaultRefTempC = 25.0

// Limits on what one message may carry. A message whose object (the body,
// or a ChirpStack uplink's object) has more than MaxFieldsPerMessage
// members is rejected as too_large.
const (
	MaxFieldsPerMessage = 64
	MaxEventTypeLen     = 64
	MaxEventDetailLen   = 1024
	// MaxDedupIDLen bounds a ChirpStack deduplicationId (a UUID, 36 bytes);
	// a longer one is ignored, so remembering recent ids stays small.
	MaxDedupIDLen = 64
)

// Decoder turns MQTT deliveries into validated Messages. A Decoder reuses
// its memory between calls, so it is not safe for concurrent use: give
// each goroutine its own.
type Decoder struct {
	opts      DecoderOptions
	root      string // topic root followed by '/'
	maxFuture time.Duration
	refTempC  float64
	nh3, h2s  float64
	scratch   []byte // unescaped JSON strings, reused from call to call
}

// NewDecoder returns a decoder with the given options, defaults filled in.
func NewDecoder(opts DecoderOptions) (*Decoder, error) {
	if opts.Registry == nil && !opts.AcceptUnknown {
		return nil, errors.New("devices: decoder needs a registry (or AcceptUnknown)")
	}
	if opts.TopicRoot == "" {
		opts.TopicRoot = "sanitation"
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = 64 << 10
	}
	if opts.AcceptWindow <= 0 {
		opts.AcceptWindow = DefaultAcceptWindow
	}
	d := &Decoder{opts: opts, root: strings.TrimSuffix(opts.TopicRoot, "/") + "/",
		maxFuture: DefaultMaxFuture, refTempC: DefaultRefTempC}
	if opts.MaxFuture != nil {
		if *opts.MaxFuture < 0 {
			return nil, fmt.Errorf("devices: max future %s is negative", *opts.MaxFuture)
		}
		d.maxFuture = *opts.MaxFuture
	}
	if opts.RefTempC != nil {
		d.refTempC = *opts.RefTempC
	}
	if !finite(d.refTempC) || d.refTempC <= -273.15 {
		return nil, fmt.Errorf("devices: reference temperature %v °C is below absolute zero", d.refTempC)
	}
	d.nh3, d.h2s = PpmFactors(d.refTempC)
	return d, nil
}

// Topics returns the MQTT topic filters a subscriber needs for the
// decoder's topic root (telemetry, events and status of every kind).
func (d *Decoder) Topics() []string {
	return []string{d.root + "+/+/telemetry", d.root + "+/+/event", d.root + "+/+/status"}
}

// Decode parses and validates one message into m. now is the time of
// receipt. It returns a *Rejection when the message must be rejected as a
// whole; dropped fields are counted in m.Drops and do not fail the message.
//
// When several things are wrong, the reason reported is the first of:
// too_large, bad_topic, bad_json, unknown_device or kind_mismatch,
// device_mismatch, bad_timestamp, bad_event, no_fields. A rejected
// message carries field drops only when it is rejected for no_fields.
func (d *Decoder) Decode(topic string, payload []byte, now time.Time, m *Message) error {
	m.reset()
	if len(payload) > d.opts.MaxPayload {
		return reject(ReasonTooLarge, "%d bytes, limit %d", len(payload), d.opts.MaxPayload)
	}
	if strings.HasPrefix(topic, d.root) {
		return d.decodeNative(topic[len(d.root):], payload, now, m)
	}
	if strings.HasPrefix(topic, "application/") {
		return d.decodeChirpStack(topic, payload, now, m)
	}
	return reject(ReasonBadTopic, "topic %q is outside %s and application/", topic, cleanText(d.root))
}

// splitTopic splits "kind/id/suffix".
func splitTopic(rest string) (kind, id, suffix string, ok bool) {
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return
	}
	kind, rest = rest[:i], rest[i+1:]
	j := strings.IndexByte(rest, '/')
	if j < 0 {
		return
	}
	id, suffix = rest[:j], rest[j+1:]
	return kind, id, suffix, strings.IndexByte(suffix, '/') < 0
}

// ParseTopic splits a native topic below root into its kind name, device
// id and message type. It does not look the device up.
func ParseTopic(root, topic string) (kind, id string, typ MessageType, err error) {
	root = strings.TrimSuffix(root, "/") + "/"
	if !strings.HasPrefix(topic, root) {
		return "", "", 0, reject(ReasonBadTopic, "topic %q is outside %s", topic, cleanText(root))
	}
	return parseRest(root, topic[len(root):])
}

// parseRest parses the part of a native topic after the root.
func parseRest(root, rest string) (kind, id string, typ MessageType, err error) {
	kind, id, suffix, ok := splitTopic(rest)
	if !ok {
		return "", "", 0, reject(ReasonBadTopic, "topic %q: want %s{kind}/{device_id}/{telemetry|event|status}", root+rest, cleanText(root))
	}
	switch suffix {
	case "telemetry":
		typ = Telemetry
	case "event":
		typ = Event
	case "status":
		typ = Status
	default:
		return "", "", 0, reject(ReasonBadTopic, "topic %q: unknown message type %q", root+rest, suffix)
	}
	if !ValidID(id) {
		return "", "", 0, reject(ReasonBadTopic, "topic %q: device id must be 1-64 characters of A-Z a-z 0-9 - _ .", root+rest)
	}
	return kind, id, typ, nil
}

// str returns the content of v, a JSON string, unescaped. The result may
// live in d.scratch: it is valid until the next call of str or keyName.
func (d *Decoder) str(v jsonValue) []byte {
	if !v.esc {
		return v.raw
	}
	d.scratch = appendUnescaped(d.scratch[:0], v.raw)
	return d.scratch
}

// describe returns v's JSON text, shortened, for a rejection's detail.
func (d *Decoder) describe(v jsonValue) string {
	if v.kind == jsonString {
		return strconv.Quote(string(truncate(d.str(v), 80)))
	}
	return string(truncate(v.raw, 80))
}

// notObject is the rejection of a payload that is not one JSON object.
func notObject(payload []byte, k jsonKind) error {
	if k == jsonInvalid {
		if len(bytes.TrimSpace(payload)) == 0 {
			return reject(ReasonBadJSON, "empty payload")
		}
		return reject(ReasonBadJSON, "payload is not JSON")
	}
	return reject(ReasonBadJSON, "payload is a JSON %s, want an object", k)
}

// nativeBody holds the members of a native message's body that are not
// fields: the first occurrence of each, kind jsonInvalid when absent.
type nativeBody struct {
	ts, seq, typ, detail jsonValue
	badID                jsonValue // a device_id that differs from the topic's
	mismatch             bool
}

func (d *Decoder) decodeNative(rest string, payload []byte, now time.Time, m *Message) error {
	kindName, id, typ, err := parseRest(d.root, rest)
	if err != nil {
		return err
	}
	m.Type = typ
	m.DeviceID = id
	if typ == Status {
		// A status is recorded, never rejected: devices set it as their will
		// and brokers replay it retained on every subscription.
		return d.decodeStatus(kindName, payload, now, m)
	}
	// The device is looked up before the body is read, so fields can be
	// checked as they are met; a body that is not JSON is still reported
	// as such first.
	idErr := d.identify(kindName, id, m)
	obj, jk := openObject(payload)
	if jk != jsonObject {
		return notObject(payload, jk)
	}
	var body nativeBody
	var ki *kindInfo
	if typ == Telemetry && idErr == nil {
		ki = &kinds[m.Kind]
	}
	for {
		key, val, ok := obj.next()
		if !ok {
			break
		}
		if obj.n > MaxFieldsPerMessage {
			ki = nil // still validate the rest, but stop counting drops
		}
		name := d.keyName(key)
		switch string(name) {
		case "ts":
			if body.ts.kind == jsonInvalid {
				body.ts = val
			}
			continue
		case "seq":
			if body.seq.kind == jsonInvalid {
				body.seq = val
			}
			continue
		case "device_id":
			// null is as good as absent.
			if val.kind != jsonNull && (val.kind != jsonString || string(d.str(val)) != id) {
				if !body.mismatch {
					body.mismatch, body.badID = true, val
				}
			}
			continue
		}
		switch {
		case typ == Event && string(name) == "type":
			if body.typ.kind == jsonInvalid {
				body.typ = val
			}
		case typ == Event && string(name) == "detail":
			if body.detail.kind == jsonInvalid {
				body.detail = val
			}
		case typ == Event && obj.n <= MaxFieldsPerMessage:
			m.dropKey(ReasonUnknownField, name)
		case ki != nil:
			d.field(m, ki, name, val)
		}
	}
	if !obj.finish() {
		m.clearReading()
		return reject(ReasonBadJSON, "payload is not JSON")
	}
	if obj.n > MaxFieldsPerMessage {
		m.clearReading()
		return reject(ReasonTooLarge, "%d members in one object, limit %d", obj.n, MaxFieldsPerMessage)
	}
	if idErr != nil {
		return idErr
	}
	if body.mismatch {
		m.clearReading()
		return reject(ReasonDeviceMismatch, "body device_id %s does not match topic device %q", d.describe(body.badID), id)
	}
	m.Received = body.ts.kind == jsonInvalid || body.ts.kind == jsonNull
	if m.TS, err = d.timestamp(body.ts, now); err != nil {
		m.clearReading()
		return err
	}
	if body.seq.kind == jsonNumber {
		m.Seq, m.HasSeq = parseInt(body.seq.raw)
	}
	if typ == Event {
		return d.event(body.typ, body.detail, m)
	}
	return m.noFields()
}

// keyName returns a member's key, unescaped (see str).
func (d *Decoder) keyName(key jsonValue) []byte { return d.str(key) }

// identify looks the device up and checks the topic's kind against it.
func (d *Decoder) identify(kindName, id string, m *Message) error {
	kind, kindOK := ParseKind(kindName)
	dev, known := d.opts.Registry.Lookup(id)
	switch {
	case known && (!kindOK || kind != dev.Kind):
		return reject(ReasonKindMismatch, "topic kind %q, registry says %s is a %s", kindName, id, dev.Kind)
	case known:
		m.Device, m.Kind = dev, dev.Kind
	case !d.opts.AcceptUnknown:
		return reject(ReasonUnknownDevice, "device %q is not in the registry", id)
	case !kindOK:
		return reject(ReasonKindMismatch, "unknown kind %q", kindName)
	default:
		m.Kind = kind
	}
	return nil
}

func (d *Decoder) decodeStatus(kindName string, payload []byte, now time.Time, m *Message) error {
	m.TS, m.Received = now.UnixMilli(), true
	if k, ok := ParseKind(kindName); ok {
		m.Kind = k
	}
	if dev, ok := d.opts.Registry.Lookup(m.DeviceID); ok {
		m.Device, m.Kind = dev, dev.Kind
	}
	s := bytes.Trim(bytes.TrimSpace(payload), `"`)
	if len(s) > 0 && s[0] == '{' {
		s = d.statusMember(payload)
	}
	m.Online = bytes.EqualFold(s, []byte("online")) || bytes.Equal(s, []byte("1")) ||
		bytes.EqualFold(s, []byte("true")) || bytes.EqualFold(s, []byte("connected"))
	return nil
}

// statusMember returns the "status" (or else "state") string of a JSON
// status payload, or nil.
func (d *Decoder) statusMember(payload []byte) []byte {
	obj, jk := openObject(payload)
	if jk != jsonObject {
		return nil
	}
	var status, state jsonValue
	for key, val, ok := obj.next(); ok; key, val, ok = obj.next() {
		switch string(d.keyName(key)) {
		case "status":
			if status.kind == jsonInvalid {
				status = val
			}
		case "state":
			if state.kind == jsonInvalid {
				state = val
			}
		}
	}
	if !obj.finish() {
		return nil
	}
	if status.kind == jsonString && len(status.raw) > 0 {
		return d.str(status)
	}
	if state.kind == jsonString {
		return d.str(state)
	}
	return nil
}

// timestamp parses ts (RFC 3339 or epoch milliseconds) and checks it
// against the accept window. An absent or null ts means the time of receipt.
func (d *Decoder) timestamp(v jsonValue, now time.Time) (int64, error) {
	var ms int64
	switch v.kind {
	case jsonInvalid, jsonNull:
		return now.UnixMilli(), nil
	case jsonNumber:
		f := parseNumber(v.raw)
		if !finite(f) || f < 0 || f > 1e15 {
			return 0, reject(ReasonBadTimestamp, "ts %s is not epoch milliseconds", string(truncate(v.raw, 40)))
		}
		ms = int64(f)
	case jsonString:
		b := d.str(v)
		var ok bool
		if ms, ok = parseRFC3339Millis(b); !ok {
			n, err := strconv.ParseInt(string(b), 10, 64)
			if err != nil || n < 0 || n > 1e15 {
				return 0, reject(ReasonBadTimestamp, "ts %q is neither RFC 3339 nor epoch milliseconds", string(truncate(b, 40)))
			}
			ms = n
		}
	default:
		return 0, reject(ReasonBadTimestamp, "ts must be an RFC 3339 string or epoch milliseconds, got a %s", v.kind)
	}
	nowMS := now.UnixMilli()
	if ms > nowMS+d.maxFuture.Milliseconds() {
		return 0, reject(ReasonBadTimestamp, "ts %s is more than %s in the future", time.UnixMilli(ms).UTC().Format(time.RFC3339Nano), d.maxFuture)
	}
	if ms < nowMS-d.opts.AcceptWindow.Milliseconds() {
		return 0, reject(ReasonBadTimestamp, "ts %s is older than the accept window of %s", time.UnixMilli(ms).UTC().Format(time.RFC3339Nano), d.opts.AcceptWindow)
	}
	return ms, nil
}

// parseRFC3339Millis parses an RFC 3339 time as time.Parse with
// time.RFC3339Nano does, except that a lower-case t and z are accepted as
// RFC 3339 (section 5.6) allows, and returns it in Unix milliseconds. The
// usual form, 2006-01-02T15:04:05[.frac](Z|±07:00), is read without
// allocating; anything else is left to time.Parse.
func parseRFC3339Millis(s []byte) (int64, bool) {
	if ms, ok := fastRFC3339Millis(s); ok {
		return ms, true
	}
	t, err := time.Parse(time.RFC3339Nano, upperTZ(string(s)))
	if err != nil {
		return 0, false
	}
	return t.UnixMilli(), true
}

// upperTZ upper-cases the date-time separator t and a final zone z, which
// time.Parse takes only in upper case.
func upperTZ(s string) string {
	if len(s) > 10 && s[10] == 't' {
		s = s[:10] + "T" + s[11:]
	}
	if n := len(s); n > 0 && s[n-1] == 'z' {
		s = s[:n-1] + "Z"
	}
	return s
}

// fastRFC3339Millis accepts what the standard library's own RFC 3339 fast
// path (time.parseRFC3339) accepts, and a lower-case t and z.
func fastRFC3339Millis(s []byte) (int64, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' && s[10] != 't' || s[13] != ':' || s[16] != ':' {
		return 0, false
	}
	// Each digit minus '0'; a byte above 9 (or wrapped around) is not a digit.
	var d [19]byte
	for i := range d {
		if d[i] = s[i] - '0'; d[i] > 9 && i != 4 && i != 7 && i != 10 && i != 13 && i != 16 {
			return 0, false
		}
	}
	year := int(d[0])*1000 + int(d[1])*100 + int(d[2])*10 + int(d[3])
	month := int(d[5])*10 + int(d[6])
	day := int(d[8])*10 + int(d[9])
	hour := int(d[11])*10 + int(d[12])
	minute := int(d[14])*10 + int(d[15])
	sec := int(d[17])*10 + int(d[18])
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	s = s[19:]
	var ms int64
	if len(s) >= 2 && s[0] == '.' && s[1] >= '0' && s[1] <= '9' {
		n := 1
		for ; n < len(s) && s[n] >= '0' && s[n] <= '9'; n++ {
			if n <= 3 {
				ms = ms*10 + int64(s[n]-'0')
			}
		}
		for k := n; k <= 3; k++ {
			ms *= 10
		}
		s = s[n:]
	}
	var offset int64
	switch {
	case len(s) == 1 && (s[0] == 'Z' || s[0] == 'z'):
	case len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':':
		h1, h2, m1, m2 := s[1]-'0', s[2]-'0', s[4]-'0', s[5]-'0'
		if h1 > 9 || h2 > 9 || m1 > 9 || m2 > 9 {
			return 0, false
		}
		hh, mm := int(h1)*10+int(h2), int(m1)*10+int(m2)
		if hh > 23 || mm > 59 {
			return 0, false
		}
		offset = int64(hh*60+mm) * 60
		if s[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}
	unix := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - offset
	return unix*1000 + ms, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days from 1970-01-01 to the given date of the
// proleptic Gregorian calendar, year >= 0 (Howard Hinnant's algorithm).
func daysFromCivil(year, month, day int) int64 {
	y := int64(year) + 400 // keep the era non-negative for year 0
	if month <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := int64((month + 9) % 12)
	doy := (153*mp+2)/5 + int64(day) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468 - 146097
}

// fieldByName returns the field with the given name, whatever the kind.
func fieldByName(name []byte) (Field, bool) {
	switch string(name) {
	case "fill_pct":
		return FillPct, true
	case "temp_c":
		return TempC, true
	case "tilt_deg":
		return TiltDeg, true
	case "battery_pct":
		return BatteryPct, true
	case "nh3_mgm3":
		return NH3MgM3, true
	case "h2s_mgm3":
		return H2SMgM3, true
	case "flow_lpm":
		return FlowLpm, true
	case "visitors":
		return Visitors, true
	case "humidity_pct":
		return HumidityPct, true
	case "tank_level_pct":
		return TankLevelPct, true
	case "ph":
		return PH, true
	case "turbidity_ntu":
		return TurbidityNTU, true
	case "chlorine_mgl":
		return ChlorineMgL, true
	case "conductivity_uscm":
		return ConductivityUScm, true
	case "nh3_ppm":
		return NH3Ppm, true
	case "h2s_ppm":
		return H2SPpm, true
	}
	return 0, false
}

// field checks one member of a reading and stores it, or drops it.
func (d *Decoder) field(m *Message, ki *kindInfo, name []byte, v jsonValue) {
	f, ok := fieldByName(name)
	if !ok || !ki.accepts.Has(f) {
		m.dropKey(ReasonUnknownField, name)
		return
	}
	if v.kind != jsonNumber {
		m.drop(ReasonNotFinite, f.String())
		return
	}
	x := parseNumber(v.raw)
	if !finite(x) {
		m.drop(ReasonNotFinite, f.String())
		return
	}
	if x == 0 {
		x = 0 // -0 is stored as 0
	}
	d.setField(m, ki, f, x)
}

// noFields rejects a reading left without a valid field.
func (m *Message) noFields() error {
	if m.Values.Present != 0 {
		return nil
	}
	detail := "no known field with a valid value"
	if m.FirstDrop != "" {
		detail += " (" + m.FirstDrop + ")"
	}
	return reject(ReasonNoFields, "%s for a %s", detail, m.Kind)
}

// setField range-checks x and stores it; ppm values are converted to mg/m³
// and kept raw beside the converted value.
func (d *Decoder) setField(m *Message, ki *kindInfo, f Field, x float64) {
	switch f {
	case NH3Ppm, H2SPpm:
		target, factor := NH3MgM3, d.nh3
		if f == H2SPpm {
			target, factor = H2SMgM3, d.h2s
		}
		mg := x * factor
		if r := ki.ranges[target]; x < 0 || mg < r.Min || mg > r.Max {
			m.drop(ReasonOutOfRange, f.String())
			return
		}
		m.Values.Set(f, x)
		if !m.Values.Present.Has(target) {
			m.Values.Set(target, roundTo(mg, 6))
		}
	default:
		if r := ki.ranges[f]; x < r.Min || x > r.Max {
			m.drop(ReasonOutOfRange, f.String())
			return
		}
		m.Values.Set(f, x)
	}
}

// roundTo rounds x to n decimal places, so converted values read cleanly.
func roundTo(x float64, n int) float64 {
	p := math.Pow10(n)
	return math.Round(x*p) / p
}

// eventTypes are the usual event types, kept as constants so decoding
// them does not allocate.
var eventTypes = []string{"fire", "tilt", "lid_open", "door_open", "tamper", "smoke", "leak", "overflow", "power_loss", "low_battery"}

// internEventType returns b as a string, without allocating for the
// usual types.
func internEventType(b []byte) string {
	for _, et := range eventTypes {
		if string(b) == et {
			return et
		}
	}
	return string(b)
}

func (d *Decoder) event(t, detail jsonValue, m *Message) error {
	if t.kind == jsonInvalid {
		return reject(ReasonBadEvent, "event without a type")
	}
	var b []byte
	if t.kind == jsonString {
		b = d.str(t)
	}
	if len(b) == 0 || len(b) > MaxEventTypeLen || !validEventType(b) {
		return reject(ReasonBadEvent, "event type must be 1-%d characters of a-z A-Z 0-9 _ -, got %s", MaxEventTypeLen, d.describe(t))
	}
	m.EventType = internEventType(b)
	switch detail.kind {
	case jsonInvalid, jsonNull:
	case jsonString:
		m.EventDetail = cleanText(string(truncate(d.str(detail), MaxEventDetailLen)))
	default:
		m.EventDetail = cleanText(string(truncate(detail.raw, MaxEventDetailLen)))
	}
	return nil
}

func validEventType(b []byte) bool {
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// cleanText replaces control characters and invalid UTF-8 with spaces.
func cleanText(s string) string {
	clean := utf8.ValidString(s) && !strings.ContainsRune(s, utf8.RuneError)
	for i := 0; clean && i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			clean = false
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, " "))
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate[T string | []byte](s T, n int) T {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ChirpStackTopic is the default MQTT topic filter for ChirpStack v4 uplinks.
const ChirpStackTopic = "application/+/device/+/event/up"

// chirpStackEUI returns the dev_eui of a topic
// application/{app_id}/device/{dev_eui}/event/up.
func chirpStackEUI(topic string) (string, bool) {
	rest := strings.TrimPrefix(topic, "application/")
	i := strings.IndexByte(rest, '/')
	if i < 0 || !strings.HasPrefix(rest[i+1:], "device/") {
		return "", false
	}
	rest = rest[i+1+len("device/"):]
	j := strings.IndexByte(rest, '/')
	if j < 0 || rest[j:] != "/event/up" {
		return "", false
	}
	return rest[:j], true
}

// decodeChirpStack decodes a ChirpStack v4 uplink event: the device is found
// by deviceInfo.devEui, the reading taken from the codec's `object`, the
// time from `time`.
func (d *Decoder) decodeChirpStack(topic string, payload []byte, now time.Time, m *Message) error {
	topicEUI, ok := chirpStackEUI(topic)
	if !ok {
		return reject(ReasonBadTopic, "topic %q: want application/{app_id}/device/{dev_eui}/event/up", topic)
	}
	m.Type = Telemetry
	obj, jk := openObject(payload)
	if jk != jsonObject {
		return notObject(payload, jk)
	}
	// The first occurrence of each member counts; deviceInfo and object
	// may come in any order.
	var dedup, ts, fcnt, object, eui jsonValue
	seenInfo := false
	for {
		key, ok := obj.nextKey()
		if !ok {
			break
		}
		name := d.keyName(key)
		if string(name) == "deviceInfo" && !seenInfo {
			seenInfo = true
			// Read deviceInfo in place rather than skip it and read it again.
			if info, isObj := obj.enter(); isObj {
				for k, v, ok := info.next(); ok; k, v, ok = info.next() {
					if string(d.keyName(k)) == "devEui" && eui.kind == jsonInvalid {
						eui = v
					}
				}
				if !obj.leave(&info) {
					break
				}
				continue
			}
		}
		val, ok := obj.value()
		if !ok {
			break
		}
		switch string(name) {
		case "deduplicationId":
			if dedup.kind == jsonInvalid {
				dedup = val
			}
		case "time":
			if ts.kind == jsonInvalid {
				ts = val
			}
		case "fCnt":
			if fcnt.kind == jsonInvalid {
				fcnt = val
			}
		case "object":
			if object.kind == jsonInvalid {
				object = val
			}
		}
	}
	if !obj.finish() {
		return reject(ReasonBadJSON, "payload is not JSON")
	}
	if eui.kind != jsonString || len(eui.raw) == 0 {
		return reject(ReasonUnknownDevice, "uplink without deviceInfo.devEui")
	}
	euiB := d.str(eui)
	if !sameEUI(euiB, topicEUI) {
		return reject(ReasonDeviceMismatch, "deviceInfo.devEui %q does not match topic %q", string(truncate(euiB, 32)), topicEUI)
	}
	dev, ok := d.opts.Registry.lookupEUI(euiB)
	if !ok {
		return reject(ReasonUnknownDevice, "no device with dev_eui %q in the registry", string(truncate(euiB, 32)))
	}
	m.Device, m.DeviceID, m.Kind = dev, dev.ID, dev.Kind
	// Unescaping never lengthens a string, so the raw length bounds it.
	if dedup.kind == jsonString && len(dedup.raw) <= MaxDedupIDLen {
		m.DedupID = string(d.str(dedup))
	}
	var err error
	m.Received = ts.kind == jsonInvalid || ts.kind == jsonNull
	if m.TS, err = d.timestamp(ts, now); err != nil {
		return err
	}
	if fcnt.kind == jsonNumber {
		m.Seq, m.HasSeq = parseInt(fcnt.raw)
	}
	if object.kind != jsonObject {
		return reject(ReasonNoFields, "uplink has no decoded object (is a codec set on the device profile?)")
	}
	ki := &kinds[m.Kind]
	fields := obj.subObject(object)
	for key, val, ok := fields.next(); ok; key, val, ok = fields.next() {
		if fields.n > MaxFieldsPerMessage {
			m.clearReading()
			return reject(ReasonTooLarge, "more than %d members in the uplink's object", MaxFieldsPerMessage)
		}
		d.field(m, ki, d.keyName(key), val)
	}
	return m.noFields()
}
