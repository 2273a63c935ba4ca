package simulator

import (
	"math"
	"strings"

	"github.com/sanitel/sanitel/devices"
)

// Simulated time is kept in Unix milliseconds. The district keeps China
// Standard Time: daily patterns (mealtimes, collection rounds, visitors)
// follow local hours.
const (
	dayMs      = 86_400_000
	hourMs     = 3_600_000
	minuteMs   = 60_000
	tzOffsetMs = 8 * hourMs
	maxStepMs  = 15 * minuteMs // models advance in steps no longer than this
)

// localHour returns the local hour of day, 0 ≤ h < 24, at ms.
func localHour(ms int64) float64 {
	x := (ms + tzOffsetMs) % dayMs
	if x < 0 {
		x += dayMs
	}
	return float64(x) / hourMs
}

// localDay returns the local calendar day number of ms.
func localDay(ms int64) int64 {
	x := ms + tzOffsetMs
	if x < 0 {
		return (x - dayMs + 1) / dayMs
	}
	return x / dayMs
}

// localMidnight returns the Unix ms of the start of local day d.
func localMidnight(d int64) int64 { return d*dayMs - tzOffsetMs }

// bump is a bell around mu (hours) with width sigma.
func bump(h, mu, sigma float64) float64 {
	z := (h - mu) / sigma
	return math.Exp(-0.5 * z * z)
}

// diurnal is a sine of the day peaking at hour peak, in −1..1.
func diurnal(h, peak float64) float64 { return math.Cos(2 * math.Pi * (h - peak) / 24) }

// Incident and event rates, per device per simulated day. They are the
// district's normal life, not injected faults.
const (
	binFirePerDay      = 0.0005
	binTiltPerDay      = 0.002
	chlorineDropPerDay = 0.01
	rainDayChance      = 0.25
	doorOpenPerDay     = 0.02
	tamperPerDay       = 0.001
)

// incident kinds a device may be in the middle of.
const (
	incNone uint8 = iota
	incFire
	incTilt
	incChlorineDrop
)

// model is a device's physical state between reports. Its fields mean
// different things for different kinds, as noted; everything evolves only
// from the device's own rng and the simulated time.
type model struct {
	level   float64 // bin fill_pct; rural tank_level_pct
	gas     float64 // toilet and rural nh3 in mg/m³
	battery float64 // bin and rural battery_pct
	drain   float64 // battery use, % per day
	rate    float64 // bin: fill % per activity-hour; toilet: visitors/min at the peak; rural: tank rise % per day
	k       float64 // toilet: nh3 mg/m³ per visitor; water: turbidity per unit of rain
	tau     float64 // toilet: ventilation time constant, minutes
	bg      float64 // toilet: background nh3; water: baseline turbidity
	base    float64 // mean temperature °C
	off1    float64 // bin: morning round offset, min; toilet: cleaning offset, min; water: pH offset
	off2    float64 // bin: evening round offset, min; water: chlorine baseline mg/L
	cond    float64 // water: conductivity baseline µS/cm; toilet: humidity baseline
	h2s     float64 // toilet: h2s per nh3

	visitors int     // toilet: visitors since the last report
	inc      uint8   // incident in progress (incFire, …)
	incUntil int64   // when the incident ends, ms
	incVal   float64 // incident magnitude (fire temperature, tilt angle)
	emptyAt  int64   // rural: when the tank is emptied (清掏), 0 if not scheduled
}

// initModel draws a device's parameters and starting state.
func initModel(s *devState) {
	m, r := &s.m, &s.rng
	switch s.kind {
	case devices.KindBin:
		lo, hi := 2.5, 5.5
		switch s.site {
		case siteMarket:
			lo, hi = 3.5, 7
		case siteStation:
			lo, hi = 4, 7
		case siteSchool:
			lo, hi = 3, 6
		case sitePark:
			lo, hi = 3, 6.5
		}
		m.rate = r.between(lo, hi)
		m.level = r.between(0, 50)
		m.base = r.between(13, 19)
		m.off1 = r.between(0, 60)
		m.off2 = r.between(0, 90)
		m.battery, m.drain = initBattery(r)
	case devices.KindToilet:
		lo, hi := 0.4, 1.2
		switch s.site {
		case siteMarket:
			lo, hi = 1.2, 2.5
		case siteStation:
			lo, hi = 1.0, 2.2
		case sitePark:
			lo, hi = 0.6, 1.8
		case siteSchool:
			lo, hi = 0.4, 1.0
		}
		m.rate = r.between(lo, hi)
		switch s.dev.ToiletClass {
		case 1:
			m.k, m.tau, m.bg = r.between(0.003, 0.005), r.between(20, 30), r.between(0.02, 0.05)
		case 3:
			m.k, m.tau, m.bg = r.between(0.02, 0.03), r.between(60, 80), r.between(0.1, 0.3)
		default:
			m.k, m.tau, m.bg = r.between(0.009, 0.014), r.between(35, 45), r.between(0.04, 0.1)
		}
		m.gas = m.bg
		m.h2s = r.between(0.003, 0.005)
		m.base = r.between(18, 24)
		m.cond = r.between(55, 70)
		m.off1 = r.between(0, 40)
	case devices.KindRuralToilet:
		m.rate = r.between(1.5, 5)
		m.level = r.between(5, 75)
		m.battery, m.drain = initBattery(r)
		m.drain /= 2 // LoRaWAN, every 30 minutes
		if m.level >= 85 {
			m.emptyAt = s.last + int64(r.between(0.5, 6)*dayMs)
		}
	case devices.KindWater:
		m.off1 = r.between(-0.25, 0.25)
		if s.dev.Supply == devices.SupplySmall {
			m.bg, m.k = r.between(0.3, 1.5), r.between(2, 12)
			m.off2 = r.between(0.08, 0.4)
		} else {
			m.bg, m.k = r.between(0.08, 0.4), r.between(0.3, 1.2)
			// Chlorine decays along the network: high at the plant, low at
			// the network's ends (末梢).
			dist := r.between(0.3, 0.7)
			switch {
			case strings.Contains(s.dev.Site, "出厂"):
				dist = r.between(0, 0.1)
			case strings.Contains(s.dev.Site, "末梢"):
				dist = r.between(0.7, 1)
			}
			m.off2 = 0.8 * (1 - 0.75*dist)
		}
		m.cond = r.between(250, 700)
		m.base = r.between(14, 20)
	}
}

func initBattery(r *rng) (level, drain float64) {
	level = r.between(35, 100)
	if r.chance(0.03) {
		level = r.between(21, 26) // about to warn
	}
	return level, r.between(0.03, 0.12)
}

// dayTable is a function of the local hour sampled every six minutes,
// read back with linear interpolation: the daily patterns are evaluated
// for every report, and a table is several times cheaper than their
// exponentials.
type dayTable [241]float64

func tabulate(f func(h float64) float64) *dayTable {
	var t dayTable
	for i := range t {
		t[i] = f(float64(i) / 10)
	}
	return &t
}

func (t *dayTable) at(h float64) float64 {
	x := h * 10
	i := int(x)
	if i >= 240 {
		return t[240]
	}
	f := x - float64(i)
	return t[i] + f*(t[i+1]-t[i])
}

var (
	binActivityTables [sitePark + 1]*dayTable
	toiletTable       = tabulate(toiletProfile)
	ruralTable        = tabulate(ruralProfile)
)

func init() {
	for st := range binActivityTables {
		binActivityTables[st] = tabulate(func(h float64) float64 { return binActivity(h, siteType(st)) })
	}
}

// binActivity is how busy the street around a bin is at hour h: quiet at
// night, peaks at breakfast, lunch and dinner; markets are busiest early.
func binActivity(h float64, site siteType) float64 {
	a := 0.12 + 0.9*bump(h, 7.5, 1.2) + 1.0*bump(h, 12, 1.0) + 1.1*bump(h, 18.5, 1.3) + 0.4*bump(h, 15, 3)
	switch site {
	case siteMarket:
		a += 1.6 * bump(h, 8, 1.5)
	case siteSchool:
		a += 0.6*bump(h, 12, 0.8) + 0.5*bump(h, 16.5, 0.7)
	}
	return a
}

// toiletProfile is the share of the peak visitor rate at hour h: a morning
// and an evening peak, a smaller one at noon, almost nobody at night.
func toiletProfile(h float64) float64 {
	p := 0.04 + 1.0*bump(h, 8, 1.3) + 0.55*bump(h, 12.5, 1.5) + 0.9*bump(h, 18.5, 1.6)
	if h > 7 && h < 21 {
		p += 0.2
	}
	return p
}

// ruralProfile is a household's use of its toilet at hour h.
func ruralProfile(h float64) float64 {
	return 0.3 + bump(h, 7, 1.5) + 0.6*bump(h, 12, 1.5) + bump(h, 19, 2)
}

var ruralMean = func() float64 {
	s := 0.0
	for i := range 24 * 60 {
		s += ruralProfile(float64(i) / 60)
	}
	return s / (24 * 60)
}()

// collection rounds of a bin: 06:00 and 18:00 plus the bin's place on the
// route plus a daily delay; markets get a third round at 13:00. About one
// round in 25 is missed, which is when bins overflow.
func (g *Generator) binCollection(s *devState, a, b int64) (int64, bool) {
	for d := localDay(a); d <= localDay(b); d++ {
		mid := localMidnight(d)
		for round := range 3 {
			var t int64
			switch round {
			case 0:
				t = mid + 6*hourMs + int64(s.m.off1*minuteMs)
			case 1:
				t = mid + 18*hourMs + int64(s.m.off2*minuteMs)
			case 2:
				if s.site != siteMarket {
					continue
				}
				t = mid + 13*hourMs + int64(s.m.off1*minuteMs)
			}
			h := hash(g.seed, s.key, uint64(d), uint64(round))
			t += int64((unit(h) - 0.5) * 40 * minuteMs)
			if t > a && t <= b && unit(mix64(h)) >= 0.04 {
				return t, true
			}
		}
	}
	return 0, false
}

// rain is the district's weather: on about one day in four it rains from a
// time of day on, with an intensity 0.3–1. It is a pure function of the
// seed and the day, so every water probe sees the same rain.
func (g *Generator) rain(d int64) (start int64, intensity float64, ok bool) {
	h := hash(g.seed, 0x7261696e, uint64(d)) // "rain"
	if unit(h) >= rainDayChance {
		return 0, 0, false
	}
	return localMidnight(d) + int64(unit(mix64(h))*dayMs), 0.3 + 0.7*unit(mix64(h^1)), true
}

// rainExcess is the extra turbidity, per unit of a probe's sensitivity,
// at ms: it rises over an hour after rain starts and decays over ~8 h.
func (g *Generator) rainExcess(ms int64) float64 {
	x := 0.0
	for d := localDay(ms) - 1; d <= localDay(ms); d++ {
		start, intensity, ok := g.rain(d)
		if !ok || ms <= start {
			continue
		}
		dt := float64(ms - start)
		x += intensity * min(1, dt/hourMs) * math.Exp(-dt/(8*hourMs))
	}
	return x
}

// advance moves a device's physical state from s.last to now.
func (g *Generator) advance(s *devState, now int64) {
	for a := s.last; a < now; {
		b := min(now, a+maxStepMs)
		g.step(s, a, b)
		a = b
	}
	s.last = now
}

func (g *Generator) step(s *devState, a, b int64) {
	m, r := &s.m, &s.rng
	h := localHour(a + (b-a)/2)
	dtMin := float64(b-a) / minuteMs
	dtDay := float64(b-a) / dayMs
	switch s.kind {
	case devices.KindBin:
		if tc, ok := g.binCollection(s, a, b); ok {
			m.level = r.between(0, 4)
			a = tc
		}
		inc := m.rate * binActivityTables[s.site].at(h) * float64(b-a) / hourMs * (1 + 0.3*r.norm())
		m.level = min(100, m.level+max(0, inc))
		drainBattery(m, r, dtDay)
	case devices.KindToilet:
		v := r.poisson(m.rate * toiletTable.at(h) * dtMin)
		m.visitors += v
		m.gas += m.k * float64(v)
		m.gas = m.bg + (m.gas-m.bg)*math.Exp(-dtMin/m.tau)
		// Cleaning at 07:00, 12:00 and 17:00 airs the room out.
		for _, ch := range [...]float64{7, 12, 17} {
			t := localMidnight(localDay(b)) + int64((ch*60+m.off1)*minuteMs)
			if t > a && t <= b {
				m.gas = m.bg + (m.gas-m.bg)*0.4
			}
		}
	case devices.KindRuralToilet:
		m.level += m.rate * dtDay * ruralTable.at(h) / ruralMean * (1 + 0.2*r.norm())
		m.level = min(100, max(0, m.level))
		if m.emptyAt == 0 && m.level >= 85 {
			// Tank full: the town schedules the suction truck (清掏), usually
			// within a day or two, sometimes late enough to overflow.
			m.emptyAt = b + int64(r.between(0.5, 1.5)*dayMs)
			if r.chance(0.2) {
				m.emptyAt += int64(r.between(1, 5) * dayMs)
			}
		}
		if m.emptyAt != 0 && b >= m.emptyAt {
			m.level = r.between(2, 8)
			m.emptyAt = 0
		}
		drainBattery(m, r, dtDay)
	case devices.KindWater:
		// Water state is read directly from time; nothing accumulates.
	}
}

func drainBattery(m *model, r *rng, dtDay float64) {
	m.battery = max(0, m.battery-m.drain*dtDay)
	if m.battery < 10 && r.chance(0.3*dtDay) {
		m.battery = r.between(97, 100) // replaced on a maintenance round
	}
}

// event is an event a report carries besides its telemetry.
type event struct {
	typ    string
	detail string
	value  float64 // appended to detail when not NaN
	unit   string
}

// read fills vals with what the device measures at now (after advance) and
// returns an event to publish with it, if any.
func (g *Generator) read(s *devState, now int64, dtMs int64, vals *devices.Values) (ev event, hasEvent bool) {
	m, r := &s.m, &s.rng
	h := localHour(now)
	*vals = devices.Values{}
	switch s.kind {
	case devices.KindBin:
		prev := s.lastFill
		fill := clamp(m.level+0.5*r.norm(), 0, 100)
		s.lastFill = fill
		temp := m.base + 6*diurnal(h, 15) + 0.4*r.norm() + 0.02*m.level
		tilt := math.Abs(1.5 + r.norm())
		if m.inc != incNone && now >= m.incUntil {
			m.inc = incNone
		}
		switch {
		case m.inc == incNone && r.happens(binFirePerDay, dtMs):
			m.inc, m.incUntil, m.incVal = incFire, now+int64(r.between(20, 60)*minuteMs), r.between(65, 95)
			ev, hasEvent = event{"fire", "桶内温度骤升，疑似起火", m.incVal, "℃"}, true
		case m.inc == incNone && r.happens(binTiltPerDay, dtMs):
			m.inc, m.incUntil, m.incVal = incTilt, now+int64(r.between(1, 8)*hourMs), r.between(50, 90)
			ev, hasEvent = event{"tilt", "垃圾桶倾倒", m.incVal, "°"}, true
		case prev < 95 && fill >= 95 && r.chance(0.5):
			ev, hasEvent = event{"lid_open", "桶满溢，桶盖无法闭合", fill, "%"}, true
		}
		switch m.inc {
		case incFire:
			temp = m.incVal + 3*r.norm()
		case incTilt:
			tilt = m.incVal + r.norm()
		}
		vals.Set(devices.FillPct, fill)
		vals.Set(devices.TempC, temp)
		vals.Set(devices.TiltDeg, clamp(tilt, 0, 180))
		vals.Set(devices.BatteryPct, math.Round(m.battery))
	case devices.KindToilet:
		nh3 := max(0, m.gas*(1+0.05*r.norm()))
		vals.Set(devices.NH3MgM3, nh3)
		vals.Set(devices.H2SMgM3, max(0, nh3*m.h2s+0.0005*r.norm()))
		// The meter reads the flow at the moment of the report: a flush in
		// progress or nothing; a leak adds a steady trickle.
		perMin := m.rate * toiletTable.at(h)
		flow := 0.0
		if r.chance(min(0.9, perMin*8/60)) {
			flow = r.between(6, 12)
		}
		vals.Set(devices.FlowLpm, flow)
		vals.Set(devices.Visitors, float64(m.visitors))
		m.visitors = 0
		vals.Set(devices.TempC, m.base+2*diurnal(h, 15)+0.3*r.norm())
		vals.Set(devices.HumidityPct, clamp(m.cond+8*diurnal(h, 6)+0.8*perMin+2*r.norm(), 20, 99))
		switch {
		case (h >= 23 || h < 5) && r.happens(doorOpenPerDay*4, dtMs): // only in the 6 night hours
			ev, hasEvent = event{"door_open", "夜间门未关闭", math.NaN(), ""}, true
		case r.happens(tamperPerDay, dtMs):
			ev, hasEvent = event{"tamper", "设备外壳被打开", math.NaN(), ""}, true
		}
	case devices.KindRuralToilet:
		vals.Set(devices.TankLevelPct, clamp(m.level+0.3*r.norm(), 0, 100))
		flow := 0.0
		if r.chance(0.06 * ruralTable.at(h)) {
			flow = r.between(3, 8)
		}
		vals.Set(devices.FlowLpm, flow)
		vals.Set(devices.NH3MgM3, max(0.01, 0.05+0.006*m.level+0.03*r.norm()))
		vals.Set(devices.BatteryPct, math.Round(m.battery))
		if r.happens(tamperPerDay, dtMs) {
			ev, hasEvent = event{"tamper", "液位计被移动", math.NaN(), ""}, true
		}
	case devices.KindWater:
		rain := g.rainExcess(now)
		vals.Set(devices.PH, m.off1+7.2+0.05*diurnal(h, 14)+0.03*r.norm())
		vals.Set(devices.TurbidityNTU, max(0.01, m.bg*(1+0.08*r.norm())+m.k*rain))
		if m.inc != incNone && now >= m.incUntil {
			m.inc = incNone
		}
		if m.inc == incNone && r.happens(chlorineDropPerDay, dtMs) {
			// The dosing pump stops: chlorine falls within the hour.
			m.inc, m.incUntil, m.incVal = incChlorineDrop, now+int64(r.between(2, 12)*hourMs), r.between(0.01, 0.04)
		}
		cl := m.off2 * (1 - 0.1*diurnal(h, 15)) * (1 + 0.03*r.norm())
		if m.inc == incChlorineDrop {
			cl = m.incVal * (1 + 0.05*r.norm())
		}
		vals.Set(devices.ChlorineMgL, max(0, cl))
		vals.Set(devices.ConductivityUScm, m.cond*(1+0.01*r.norm())*(1-0.05*min(1, rain)))
		vals.Set(devices.TempC, m.base+0.8*diurnal(h, 15)+0.05*r.norm())
	}
	return ev, hasEvent
}

func clamp(x, lo, hi float64) float64 { return min(hi, max(lo, x)) }
