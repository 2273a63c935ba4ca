package simulator

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/sanitel/sanitel/devices"
)

// Options configure a Generator and a publishing Run. Fields a Generator
// ignores are marked "Run".
type Options struct {
	// Devices are the devices to simulate. When empty, Generate devices are
	// made up with Generate(Generate, Seed); when that is 0 too, the
	// registry file Registry is loaded.
	Devices  []devices.Device
	Generate int
	Registry string
	// RegistryOut, when set, is where Run writes the registry it simulates
	// (CSV or YAML by extension), so sanitel serve can load the same one.
	RegistryOut string

	// Seed makes the stream reproducible: the same devices, options and
	// seed give a byte-identical stream.
	Seed int64
	// Faults are injected into the stream; see ParseFaults.
	Faults Faults
	// TopicRoot prefixes native topics; default "sanitation".
	TopicRoot string

	// Start is the simulated time of the stream's beginning. NewGenerator
	// requires it; Run chooses it when zero so that the simulated clock
	// ends near the wall clock and never runs ahead of it (see StartFor).
	Start time.Time
	// Until ends the stream at this simulated time (zero: no end).
	Until time.Time
	// Count ends the stream after this many messages (0: no limit).
	// Duplicates, events and status messages count.
	Count int

	// Run: pacing. Speed is simulated seconds per real second: with a
	// Speed each message is released when the wall clock reaches its
	// simulated time scaled by Speed (1 is real time). Rate caps the
	// messages per second over all connections (token bucket). With
	// neither, messages go as fast as the broker acknowledges them, at
	// most InFlight unacknowledged per connection. Both may be set; both
	// limits then apply.
	Speed float64
	Rate  float64
	// Run: Duration ends the run after this much wall-clock (real) time.
	// The simulated time it covers is Duration × Speed, or with a Rate
	// and no Speed about Duration × Rate / SimRate; see PlanStart.
	Duration time.Duration

	// Run: the broker, as tcp://host:port or ssl://host:port (also mqtt://,
	// tls://, mqtts://; a bare host:port is tcp), with optional
	// credentials and TLS settings (for ssl:// without TLS, the system
	// roots verify the broker).
	Broker   string
	Username string
	Password string
	TLS      *tls.Config
	// Run: client ids are ClientID-1 … ClientID-n; default "sanitel-sim".
	// Two simulators on one broker need different ClientIDs.
	ClientID string
	// Run: MQTT connections to spread devices over (device i uses
	// connection i mod Connections); default 4.
	Connections int
	// Run: unacknowledged QoS 1/2 publishes allowed per connection,
	// 1–65000; default 1000.
	InFlight int
	// QoS of telemetry and events; the zero value is QoS 1. Status
	// messages always use QoS 1.
	QoS QoS

	// Run: a progress line every second; nil is quiet. Terminal rewrites
	// one line with \r instead of printing one per second.
	Progress io.Writer
	Terminal bool
	// Logger receives connection events and warnings; nil discards them.
	Logger *slog.Logger
}

// QoS is an MQTT quality of service for Options. The zero value selects
// the default, at least once.
type QoS uint8

// QoS values.
const (
	QoSDefault  QoS = iota // at least once (1)
	AtMostOnce             // MQTT QoS 0
	AtLeastOnce            // MQTT QoS 1
	ExactlyOnce            // MQTT QoS 2
)

// QoSLevel returns the QoS for an MQTT level 0, 1 or 2.
func QoSLevel(level int) (QoS, error) {
	if level < 0 || level > 2 {
		return 0, fmt.Errorf("qos: must be 0, 1 or 2, got %d", level)
	}
	return QoS(level + 1), nil
}

// Level returns the MQTT QoS level, 0–2.
func (q QoS) Level() byte {
	if q == QoSDefault || q > ExactlyOnce {
		return 1
	}
	return byte(q - 1)
}

// String returns "0", "1" or "2".
func (q QoS) String() string { return string('0' + rune(q.Level())) }

// Message is one MQTT message of the simulated stream.
type Message struct {
	Topic string
	// Payload is valid until the next call to Next; copy it to keep it.
	Payload  []byte
	Retained bool
	QoS      byte
	// Type is telemetry, event or status.
	Type devices.MessageType
	// Fault is the fault the message carries (Fault* constants), "" if none.
	Fault string
	// Device is the device's id (also for ChirpStack uplinks).
	Device string
	// SimTime is the simulated time the message is sent at. A skewed
	// message's ts differs from it; nothing else's does.
	SimTime time.Time
	// TS is the device time the message carries (ts; a ChirpStack
	// uplink's time): SimTime, or SimTime moved by the skew fault.
	// Statuses carry none and have SimTime here.
	TS time.Time

	dev int32 // index into the generator's devices
}

// Stats counts what a Generator has produced so far.
type Stats struct {
	Messages int
	// Reports is the number of telemetry reports (not counting the second
	// copy of a duplicate): the population per-message fault rates apply to.
	Reports int
	// ChirpStackEligible is the number of reports by LoRaWAN devices that
	// normally publish native JSON: the population of the chirpstack fault.
	ChirpStackEligible int
	// ByFault counts messages by the fault they carry.
	ByFault map[string]int
	// Episodes counts started state-fault episodes (offline, stuck, leak).
	Episodes map[string]int
}

// StartFor returns the simulated start time for a run of the given real
// duration at speed simulated seconds per real second ending now: now −
// duration × speed. A run started there ends with its simulated clock at
// about now and never ahead of the wall clock.
func StartFor(now time.Time, duration time.Duration, speed float64) time.Time {
	if speed <= 0 {
		speed = 1
	}
	return now.Add(-time.Duration(float64(duration) * speed))
}

// per-device publishing style, fixed by the seed and the device id.
const (
	styleEpochTS  = 1 << iota // ts as epoch milliseconds instead of RFC 3339
	styleSeq                  // sends seq
	styleDeviceID             // repeats its device_id in the body
	stylePPM                  // gases in ppm
	styleChirp                // a LoRaWAN device that publishes through ChirpStack
)

// devState is everything the generator keeps per device.
type devState struct {
	dev   *devices.Device
	kind  devices.Kind
	site  siteType
	style uint8
	key   uint64 // hash of seed and id
	rng   rng    // physics and schedule
	frng  rng    // faults, so the physics do not change with the faults

	// first is the first report (the schedule lives in the heap after
	// that); last is where the physics stand; prevTick the previous
	// scheduled report, silent or not; all Unix ms.
	first, last, prevTick, interval int64
	seq                             int64
	fcnt                            uint32
	m                               model
	lastFill                        float64

	offlineUntil, stuckUntil, leakUntil int64
	leakFlow                            float64
	stuck                               *devices.Values

	topicTel, topicEvent, topicStatus, topicChirp string
}

// pending is a message produced by a report and not yet returned.
type pending struct {
	topic      string
	start, end int
	typ        devices.MessageType
	fault      faultID
	retained   bool
	dev        int32
	t, ts      int64
}

// Generator produces the simulated stream in simulated-time order. It is
// not safe for concurrent use.
type Generator struct {
	seed    uint64
	devs    []devices.Device
	reg     *devices.Registry
	states  []devState
	heap    []slot // devices by next report time
	rates   [numFaults]float64
	qos     byte
	count   int
	untilMs int64
	startMs int64
	simRate float64

	tenantID  string
	appIDs    [devices.KindWater + 1]string
	profileID [devices.KindWater + 1]string

	buf     []byte
	pending []pending
	head    int
	vals    devices.Values

	messages, reports, chirpEligible int
	byFault                          [numFaults]int
	episodes                         [numFaults]int
}

// NewGenerator resolves the devices (Options.Devices, Generate or
// Registry) and returns a generator of their stream from Options.Start.
func NewGenerator(opts Options) (*Generator, error) {
	devs, err := resolveDevices(opts)
	if err != nil {
		return nil, err
	}
	return newGenerator(opts, devs)
}

// resolveDevices returns the devices opts asks for.
func resolveDevices(opts Options) ([]devices.Device, error) {
	switch {
	case len(opts.Devices) > 0:
		return opts.Devices, nil
	case opts.Generate > 0:
		return Generate(opts.Generate, opts.Seed), nil
	case opts.Registry != "":
		reg, err := devices.LoadRegistry(opts.Registry)
		if err != nil {
			return nil, fmt.Errorf("simulator: %w", err)
		}
		if reg.Len() == 0 {
			return nil, fmt.Errorf("simulator: registry %s has no devices", opts.Registry)
		}
		return reg.All(), nil
	}
	return nil, errors.New("simulator: no devices: set Devices, Generate or Registry")
}

func newGenerator(opts Options, devs []devices.Device) (*Generator, error) {
	if opts.Start.IsZero() {
		return nil, errors.New("simulator: Options.Start is required (see StartFor)")
	}
	reg, err := devices.NewRegistry(devs)
	if err != nil {
		return nil, fmt.Errorf("simulator: %w", err)
	}
	rates, err := opts.Faults.rates()
	if err != nil {
		return nil, err
	}
	if opts.Count < 0 {
		return nil, fmt.Errorf("simulator: count must not be negative, got %d", opts.Count)
	}
	root := opts.TopicRoot
	if root == "" {
		root = "sanitation"
	}
	g := &Generator{
		seed:    uint64(opts.Seed),
		devs:    reg.All(),
		reg:     reg,
		rates:   rates,
		qos:     opts.QoS.Level(),
		count:   opts.Count,
		untilMs: math.MaxInt64,
		startMs: opts.Start.UnixMilli(),
	}
	if !opts.Until.IsZero() {
		g.untilMs = opts.Until.UnixMilli()
	}
	g.tenantID = uuidString(hash(g.seed, 0x74656e616e74), hash(g.seed, 0x74656e616e74, 1))
	for _, k := range devices.Kinds {
		g.appIDs[k] = uuidString(hash(g.seed, 0x617070, uint64(k)), hash(g.seed, 0x617070, uint64(k), 1))
		g.profileID[k] = uuidString(hash(g.seed, 0x70726f66, uint64(k)), hash(g.seed, 0x70726f66, uint64(k), 1))
	}
	g.states = make([]devState, len(g.devs))
	g.heap = make([]slot, len(g.devs))
	for i := range g.devs {
		g.initDevice(i, root)
		g.heap[i] = slot{next: g.states[i].first, dev: int32(i)}
		g.simRate += 1 / (float64(g.states[i].interval) / 1000)
	}
	for i := len(g.heap)/2 - 1; i >= 0; i-- {
		g.siftDown(i)
	}
	g.buf = make([]byte, 0, 4096)
	return g, nil
}

func (g *Generator) initDevice(i int, root string) {
	d := &g.devs[i]
	s := &g.states[i]
	s.dev, s.kind, s.site = d, d.Kind, siteTypeOf(d.Site)
	s.key = hash(g.seed, fnv64(d.ID))
	s.rng = rng{s: hash(s.key, 1)}
	s.frng = rng{s: hash(s.key, 2)}
	s.interval = d.ReportInterval.Milliseconds()
	if s.interval <= 0 {
		s.interval = DefaultInterval(d.Kind).Milliseconds()
	}
	st := rng{s: hash(s.key, 3)}
	if st.chance(0.2) {
		s.style |= styleEpochTS
	}
	if st.chance(0.9) {
		s.style |= styleSeq
	}
	if st.chance(0.25) {
		s.style |= styleDeviceID
	}
	if (d.Kind == devices.KindToilet || d.Kind == devices.KindRuralToilet) && st.chance(0.3) {
		s.style |= stylePPM
	}
	if d.DevEUI != "" && st.chance(0.35) {
		s.style |= styleChirp
	}
	base := root + "/" + d.Kind.String() + "/" + d.ID + "/"
	s.topicTel, s.topicEvent, s.topicStatus = base+"telemetry", base+"event", base+"status"
	if d.DevEUI != "" {
		s.topicChirp = "application/" + g.appIDs[d.Kind] + "/device/" + d.DevEUI + "/event/up"
	}
	s.last, s.prevTick = g.startMs, g.startMs
	s.first = g.startMs + int64(s.rng.float()*float64(s.interval))
	initModel(s)
}

// Devices returns the simulated devices, in registry order.
func (g *Generator) Devices() []devices.Device { return g.devs }

// Registry returns the registry of the simulated devices, for decoding
// what the generator produces.
func (g *Generator) Registry() *devices.Registry { return g.reg }

// SimRate returns the telemetry reports per simulated second the devices
// make together (each device once per report interval).
func (g *Generator) SimRate() float64 { return g.simRate }

// Stats returns counts of what has been produced so far.
func (g *Generator) Stats() Stats {
	st := Stats{
		Messages: g.messages, Reports: g.reports, ChirpStackEligible: g.chirpEligible,
		ByFault: map[string]int{}, Episodes: map[string]int{},
	}
	for f := range numFaults {
		if g.byFault[f] > 0 {
			st.ByFault[faultNames[f]] = g.byFault[f]
		}
		if g.episodes[f] > 0 {
			st.Episodes[faultNames[f]] = g.episodes[f]
		}
	}
	return st
}

// Next returns the next message of the stream, or false when the stream
// has ended (Count or Until reached).
func (g *Generator) Next() (Message, bool) {
	for g.head >= len(g.pending) {
		if g.count > 0 && g.messages >= g.count || len(g.heap) == 0 {
			return Message{}, false
		}
		g.pending, g.head, g.buf = g.pending[:0], 0, g.buf[:0]
		i, t := g.heap[0].dev, g.heap[0].next
		s := &g.states[i]
		if t > g.untilMs {
			return Message{}, false
		}
		g.tick(i, t)
		// Devices report every interval, ±5 %.
		g.heap[0].next = t + int64(float64(s.interval)*(0.95+0.1*s.rng.float()))
		g.siftDown(0)
	}
	if g.count > 0 && g.messages >= g.count {
		return Message{}, false
	}
	p := &g.pending[g.head]
	g.head++
	g.messages++
	if p.fault != fNone {
		g.byFault[p.fault]++
	}
	m := Message{
		Topic:    p.topic,
		Payload:  g.buf[p.start:p.end:p.end],
		Retained: p.retained,
		QoS:      g.qos,
		Type:     p.typ,
		Device:   g.devs[p.dev].ID,
		SimTime:  time.UnixMilli(p.t).UTC(),
		TS:       time.UnixMilli(p.ts).UTC(),
		dev:      p.dev,
	}
	if p.fault != fNone {
		m.Fault = faultNames[p.fault]
	}
	if p.typ == devices.Status {
		m.QoS = 1
	}
	return m, true
}

// slot is a heap entry: a device and the time of its next report. The
// key lives in the heap, not in the device's state, so sifting touches
// one compact array.
type slot struct {
	next int64
	dev  int32
}

// less orders the heap by (next report, device index).
func (a slot) less(b slot) bool { return a.next < b.next || a.next == b.next && a.dev < b.dev }

func (g *Generator) siftDown(i int) {
	h := g.heap
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && h[r].less(h[l]) {
			c = r
		}
		if !h[c].less(h[i]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// emit queues a message whose payload is g.buf[start:].
// ts is the device time the payload carries (t unless skewed).
func (g *Generator) emit(i int32, t, ts int64, topic string, typ devices.MessageType, fault faultID, retained bool, start int) {
	g.pending = append(g.pending, pending{topic: topic, start: start, end: len(g.buf), typ: typ, fault: fault, retained: retained, dev: i, t: t, ts: ts})
}

// tick is one scheduled report of device i at simulated time t.
func (g *Generator) tick(i int32, t int64) {
	s := &g.states[i]
	dt := t - s.prevTick
	s.prevTick = t
	// The physics advance and are read at every tick, silent or not, with
	// the device's own rng: faults never change what the district does.
	g.advance(s, t)
	ev, hasEvent := g.read(s, t, dt, &g.vals)

	// Offline episodes: silent ticks, then back online.
	if s.offlineUntil != 0 {
		if t < s.offlineUntil {
			return
		}
		s.offlineUntil = 0
		start := len(g.buf)
		g.buf = append(g.buf, "online"...)
		g.emit(i, t, t, s.topicStatus, devices.Status, fNone, true, start)
		dt = s.interval // the at-risk time restarts now
	}
	fr := &s.frng
	if fr.happens(g.rates[fOffline], dt) {
		g.episodes[fOffline]++
		minDur := max(30*minuteMs, 3*s.interval+s.interval/2)
		s.offlineUntil = t + int64(fr.between(float64(minDur), float64(max(6*hourMs, 2*minDur))))
		start := len(g.buf)
		g.buf = append(g.buf, "offline"...)
		g.emit(i, t, t, s.topicStatus, devices.Status, fOffline, true, start)
		return
	}

	label := fNone
	if s.kind == devices.KindToilet || s.kind == devices.KindRuralToilet {
		if s.leakUntil != 0 && t >= s.leakUntil {
			s.leakUntil = 0
		}
		if s.leakUntil == 0 && fr.happens(g.rates[fLeak], dt) {
			g.episodes[fLeak]++
			s.leakUntil = t + int64(fr.between(2, 8)*hourMs)
			s.leakFlow = fr.between(0.8, 3)
		}
		if s.leakUntil != 0 {
			f, _ := g.vals.Get(devices.FlowLpm)
			g.vals.Set(devices.FlowLpm, f+s.leakFlow*(1+0.05*fr.norm()))
			label = fLeak
		}
	}
	if s.stuck != nil && t >= s.stuckUntil {
		s.stuck = nil
	}
	if s.stuck == nil && fr.happens(g.rates[fStuck], dt) {
		g.episodes[fStuck]++
		s.stuck = new(devices.Values)
		*s.stuck = g.vals
		s.stuckUntil = t + int64(fr.between(2, 12)*hourMs)
	}
	if s.stuck != nil {
		g.vals = *s.stuck
		label = fStuck
	}

	// At most one per-message fault, each owning a slice of [0, 1).
	f := fNone
	u, cum := fr.float(), 0.0
	for k := range numMessageFaults {
		cum += g.rates[k]
		if u < cum {
			f = k
			break
		}
	}
	chirp := s.style&styleChirp != 0
	if s.dev.DevEUI != "" && !chirp {
		g.chirpEligible++
	}
	if f == fChirpStack {
		if s.dev.DevEUI == "" || chirp {
			f = fNone
		} else {
			chirp = true
		}
	}
	g.reports++
	s.seq++
	s.fcnt++

	switch f {
	case fSpike:
		spike(s, fr, &g.vals)
	case fOutOfRange:
		outOfRange(s, fr, &g.vals)
	}
	msgLabel := label
	if f != fNone && f != fDuplicate {
		msgLabel = f
	}
	tsMs := t
	if f == fSkew {
		off := int64(fr.between(1, 20)*60) * 1000
		if fr.chance(0.5) {
			off = -off
		}
		tsMs += off
	}
	start := len(g.buf)
	topic := s.topicTel
	if chirp {
		topic = s.topicChirp
		g.buf = g.appendUplink(g.buf, i, s, tsMs, f == fWrongID)
	} else {
		g.buf = g.appendTelemetry(g.buf, i, s, tsMs, f == fWrongID)
	}
	if f == fMalformed {
		g.buf = g.buf[:start+1+fr.intn(len(g.buf)-start-1)]
	}
	g.emit(i, t, tsMs, topic, devices.Telemetry, msgLabel, false, start)
	if f == fDuplicate {
		// Same bytes again, as a device that missed its PUBACK resends.
		n := len(g.buf) - start
		g.buf = append(g.buf, g.buf[start:start+n]...)
		g.emit(i, t, tsMs, topic, devices.Telemetry, fDuplicate, false, start+n)
	}
	if hasEvent && s.style&styleChirp == 0 {
		start := len(g.buf)
		g.buf = g.appendEvent(g.buf, s, t, ev)
		g.emit(i, t, t, s.topicEvent, devices.Event, fNone, false, start)
	}
}

func (g *Generator) appendTelemetry(b []byte, i int32, s *devState, tsMs int64, wrongID bool) []byte {
	b = append(b, `{"ts":`...)
	b = appendTS(b, tsMs, s.style&styleEpochTS != 0)
	if s.style&styleSeq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendInt(b, s.seq, 10)
	}
	switch {
	case wrongID:
		b = append(b, `,"device_id":`...)
		b = appendString(b, g.otherID(i))
	case s.style&styleDeviceID != 0:
		b = append(b, `,"device_id":"`...)
		b = append(b, s.dev.ID...)
		b = append(b, '"')
	}
	b = appendFields(b, s.kind, &g.vals, s.style&stylePPM != 0, false)
	return append(b, '}')
}

// otherID is the id a misconfigured device i puts in its body: its
// neighbour's, as when a configuration file is copied.
func (g *Generator) otherID(i int32) string {
	id := g.devs[(int(i)+1)%len(g.devs)].ID
	if id == g.devs[i].ID {
		return id + "-2"
	}
	return id
}

func (g *Generator) appendEvent(b []byte, s *devState, t int64, ev event) []byte {
	b = append(b, `{"ts":`...)
	b = appendTS(b, t, s.style&styleEpochTS != 0)
	b = append(b, `,"type":"`...)
	b = append(b, ev.typ...)
	b = append(b, `","detail":"`...)
	b = append(b, ev.detail...)
	if !math.IsNaN(ev.value) {
		b = append(b, ' ')
		b = appendNumber(b, ev.value, 1)
		b = append(b, ev.unit...)
	}
	return append(b, `"}`...)
}

var gateways = [...]string{"0016c001f1500a01", "0016c001f1500a02", "0016c001f1500a03", "0016c001f1500a04", "0016c001f1500a05", "0016c001f1500a06"}

var profileNames = [devices.KindWater + 1]string{
	devices.KindBin:         "LoRa 垃圾桶满溢传感器",
	devices.KindToilet:      "LoRa 公厕环境监测",
	devices.KindRuralToilet: "LoRa 化粪池液位计",
	devices.KindWater:       "LoRa 水质多参数探头",
}

// appendUplink appends a ChirpStack v4 "up" event as its MQTT integration
// publishes it. tsMs is the gateway time; wrongEUI puts another device's
// EUI in deviceInfo (a mis-provisioned device).
func (g *Generator) appendUplink(b []byte, i int32, s *devState, tsMs int64, wrongEUI bool) []byte {
	d := s.dev
	// deduplicationId is unique per uplink, as ChirpStack's are: with the
	// time in it, a second run of the same seed is not taken for repeats.
	h := hash(s.key, uint64(s.fcnt), uint64(tsMs), 0x7570) // "up"
	b = append(b, `{"deduplicationId":"`...)
	b = appendUUID(b, h, mix64(h))
	b = append(b, `","time":"`...)
	b = appendRFC3339(b, tsMs, int(mix64(h^2)%1_000_000))
	b = append(b, `","deviceInfo":{"tenantId":"`...)
	b = append(b, g.tenantID...)
	b = append(b, `","tenantName":"sanitel","applicationId":"`...)
	b = append(b, g.appIDs[d.Kind]...)
	b = append(b, `","applicationName":"`...)
	b = append(b, d.Kind.String()...)
	b = append(b, `","deviceProfileId":"`...)
	b = append(b, g.profileID[d.Kind]...)
	b = append(b, `","deviceProfileName":"`...)
	b = append(b, profileNames[d.Kind]...)
	b = append(b, `","deviceName":"`...)
	b = append(b, d.ID...)
	b = append(b, `","devEui":"`...)
	if wrongEUI {
		// Flip the last hex digit: a valid EUI that is not the topic's.
		b = append(b, d.DevEUI[:len(d.DevEUI)-1]...)
		c := d.DevEUI[len(d.DevEUI)-1]
		if c == '0' {
			c = '1'
		} else {
			c = '0'
		}
		b = append(b, c)
	} else {
		b = append(b, d.DevEUI...)
	}
	b = append(b, `","deviceClassEnabled":"CLASS_A","tags":{"street":`...)
	b = appendString(b, d.Street)
	b = append(b, `,"village":`...)
	b = appendString(b, d.Village)
	b = append(b, `}},"devAddr":"`...)
	b = appendHex(b, s.key>>32, 8)
	b = append(b, `","adr":true,"dr":`...)
	b = strconv.AppendInt(b, int64(2+s.key%4), 10)
	b = append(b, `,"fCnt":`...)
	b = strconv.AppendUint(b, uint64(s.fcnt), 10)
	b = append(b, `,"fPort":2,"confirmed":false,"data":"`...)
	var raw [8]byte
	for k := range raw {
		raw[k] = byte(h >> (8 * k))
	}
	b = appendBase64(b, raw[:])
	b = append(b, `","object":{`...)
	b = appendFields(b, s.kind, &g.vals, s.style&stylePPM != 0, true)
	b = append(b, `},"rxInfo":[{"gatewayId":"`...)
	b = append(b, gateways[s.key%uint64(len(gateways))]...)
	b = append(b, `","uplinkId":`...)
	b = strconv.AppendUint(b, h>>49, 10)
	b = append(b, `,"rssi":`...)
	b = strconv.AppendInt(b, -70-int64(s.key%50)-int64(h%7), 10)
	b = append(b, `,"snr":`...)
	b = appendNumber(b, 9-float64(s.key%20)/2-float64(h%5)/4, 2)
	b = append(b, `,"channel":`...)
	b = strconv.AppendUint(b, h%8, 10)
	b = append(b, `,"location":{},"crcStatus":"CRC_OK"}],"txInfo":{"frequency":`...)
	b = strconv.AppendUint(b, 486300000+200000*(h%8), 10)
	b = append(b, `,"modulation":{"lora":{"bandwidth":125000,"spreadingFactor":`...)
	b = strconv.AppendUint(b, 7+(s.key>>8)%4, 10)
	return append(b, `,"codeRate":"CR_4_5"}}}}`...)
}

// spikeField picks which of the reading's fields a fault hits.
func spikeField(s *devState, r *rng, vals *devices.Values) devices.Field {
	fs := s.kind.Fields()
	for {
		f := fs[r.intn(len(fs))]
		if vals.Present.Has(f) {
			return f
		}
	}
}

// spike makes one field jump to an implausible value inside its range.
func spike(s *devState, r *rng, vals *devices.Values) {
	f := spikeField(s, r, vals)
	v, _ := vals.Get(f)
	rg, _ := s.kind.Range(f)
	switch f {
	case devices.FillPct, devices.TankLevelPct, devices.HumidityPct:
		v += r.between(30, 60)
	case devices.TempC:
		v += r.between(15, 30)
	case devices.TiltDeg:
		v += r.between(30, 60)
	case devices.BatteryPct:
		v -= r.between(40, 80)
	case devices.NH3MgM3, devices.H2SMgM3:
		v = v*r.between(8, 20) + 0.05
	case devices.FlowLpm:
		v += r.between(40, 120)
	case devices.Visitors:
		v += r.between(150, 600)
	case devices.PH:
		v += r.between(2, 3.5) * float64(1-2*r.intn(2))
	case devices.TurbidityNTU:
		v += r.between(20, 100)
	case devices.ChlorineMgL:
		v += r.between(2, 5)
	case devices.ConductivityUScm:
		v *= r.between(3, 6)
	}
	vals.Set(f, clamp(v, rg.Min, rg.Max))
}

// outOfRange puts one field outside its physical range, far enough that
// rounding for the payload cannot bring it back in.
func outOfRange(s *devState, r *rng, vals *devices.Values) {
	f := spikeField(s, r, vals)
	rg, _ := s.kind.Range(f)
	span := rg.Max - rg.Min
	v := rg.Max + span*r.between(0.02, 0.5)
	if r.chance(0.3) {
		v = rg.Min - span*r.between(0.02, 0.2)
	}
	vals.Set(f, v)
}
