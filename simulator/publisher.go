package simulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sanitel/sanitel/devices"
)

// Run defaults.
const (
	DefaultConnections = 4
	DefaultInFlight    = 1000
	DefaultClientID    = "sanitel-sim"
	// DefaultBacklog is how far in the past a run starts its simulated
	// clock when its simulated span cannot be known in advance (no Count,
	// and no Speed or Rate to turn Duration into simulated time): inside
	// the 7-day window sanitel accepts readings in.
	DefaultBacklog = 6 * 24 * time.Hour
	acceptWindow   = devices.DefaultAcceptWindow
	// MaxFuture is how far ahead of its clock sanitel accepts a device
	// time (its default devices.max_future); see Summary.Future.
	MaxFuture = devices.DefaultMaxFuture
	// futureGuard: a skewed reading that would reach sanitel less than
	// this beyond MaxFuture waits until it is within it (Summary.Future).
	futureGuard = 3 * time.Second
)

// ConnectionStatusTopic is where connection clientID announces itself:
// retained "online" on connect, "offline" on a clean end, and "offline" as
// its will when it drops. Devices share connections, so a device's own
// status cannot be a will; Run instead publishes every device's retained
// status "online" at the start and "offline" at a clean end. The topic is
// outside the sanitation root so sanitel serve does not take the
// simulator for a device.
func ConnectionStatusTopic(clientID string) string { return "sanitel-sim/" + clientID + "/status" }

// Summary is what a Run did.
type Summary struct {
	// Sent counts stream messages handed to a connection; Acked those
	// acknowledged by the broker (QoS 0: written); Errors those that
	// failed. At the end Acked + Errors = Sent.
	Sent, Acked, Errors int
	// Statuses counts the retained per-device online/offline messages
	// published at the start and the end (not part of Sent);
	// StatusErrors those that failed.
	Statuses, StatusErrors int
	// Reports counts the telemetry reports sent (the second copy of a
	// duplicate not included) and Events the events sent.
	Reports, Events int
	// ByFault counts sent messages by fault.
	ByFault map[string]int
	// Future counts the skewed reports sent with a ts more than MaxFuture
	// ahead of the wall clock: sanitel (with its default max_future)
	// rejects exactly these as bad_timestamp and accepts the other skewed
	// ones. How many there are depends on how far the simulated clock lags
	// the wall clock when they are sent, not on the stream: an accelerated
	// run that ends in the past has none. A skewed report that would arrive
	// less than a few seconds beyond the limit is held back until it is
	// within it, so the count does not race the network.
	Future int
	// Elapsed is the wall-clock time of the stream, from the first
	// message to the last acknowledgement; Rate is Sent / Elapsed.
	Elapsed time.Duration
	Rate    float64
	// SimStart is the simulated start; SimEnd the simulated time of the
	// last message sent.
	SimStart, SimEnd time.Time
}

// String summarises s on one line.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d (acked %d, errors %d) in %s, %s msg/s; reports %d, events %d, statuses %d",
		s.Sent, s.Acked, s.Errors, s.Elapsed.Round(time.Millisecond), thousands(int64(math.Round(s.Rate))), s.Reports, s.Events, s.Statuses)
	if s.StatusErrors > 0 {
		fmt.Fprintf(&b, " (%d failed)", s.StatusErrors)
	}
	if len(s.ByFault) > 0 {
		b.WriteString("; faults")
		for _, n := range faultNames {
			if c := s.ByFault[n]; c > 0 {
				fmt.Fprintf(&b, " %s=%d", n, c)
				if n == FaultSkew {
					fmt.Fprintf(&b, " (%d over %s ahead)", s.Future, formatMinutes(MaxFuture))
				}
			}
		}
	}
	if !s.SimStart.IsZero() {
		fmt.Fprintf(&b, "; simulated %s … %s", s.SimStart.UTC().Format(time.RFC3339), s.SimEnd.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// formatMinutes formats a whole number of minutes as "5m".
func formatMinutes(d time.Duration) string { return strconv.Itoa(int(d/time.Minute)) + "m" }

// thousands formats n with comma separators: 8210 → "8,210".
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// SimRateOf returns the telemetry reports per simulated second devs make.
func SimRateOf(devs []devices.Device) float64 {
	r := 0.0
	for i := range devs {
		iv := devs[i].ReportInterval
		if iv <= 0 {
			iv = DefaultInterval(devs[i].Kind)
		}
		r += 1 / iv.Seconds()
	}
	return r
}

// PlanStart returns where Run starts the simulated clock for devs when
// Options.Start is zero, so that the simulated span the run covers ends
// at about now:
//   - with Count: Count reports take Count / SimRateOf(devs) simulated
//     seconds; a margin (one and a half report intervals plus 2 %) keeps
//     the last of them before now despite the devices' phases and jitter;
//   - with Duration: Duration × the effective speed (Speed, or
//     Rate / SimRateOf(devs) when that is lower or Speed is unset);
//   - with both, the shorter; with neither, DefaultBacklog ago, catching
//     up with the wall clock as it goes;
//   - a real-time run (0 < Speed ≤ 1) starts now whatever its bounds, so
//     that its readings carry the time they are sent.
//
// Whatever the plan, Run never sends a message whose simulated time is
// after the wall clock: it waits for it instead, so a run that catches up
// continues in real time.
func PlanStart(now time.Time, opts Options, devs []devices.Device) time.Time {
	if opts.Speed > 0 && opts.Speed <= 1 {
		return now
	}
	simRate := SimRateOf(devs)
	span := -1.0 // simulated seconds; <0 unknown
	if opts.Count > 0 && simRate > 0 {
		span = float64(opts.Count) / simRate
		span += 0.02*span + 1.5*float64(len(devs))/simRate
	}
	speed := opts.Speed
	if opts.Rate > 0 && simRate > 0 {
		if rs := opts.Rate / simRate; speed <= 0 || rs < speed {
			speed = rs
		}
	}
	if opts.Duration > 0 && speed > 0 {
		if ds := opts.Duration.Seconds() * speed; span < 0 || ds < span {
			span = ds
		}
	}
	if span >= 0 {
		return StartFor(now, time.Duration(span*float64(time.Second)), 1)
	}
	return now.Add(-DefaultBacklog)
}

// Run publishes the simulated stream to opts.Broker until the stream ends,
// Count messages are sent, Duration has passed or ctx is done (a normal
// stop, not an error). In order it: writes RegistryOut, plans the
// simulated start (PlanStart) unless Start is set, connects Connections
// MQTT clients (their will: ConnectionStatusTopic), publishes every
// device's retained status "online", streams, waits for the
// acknowledgements, publishes every device's status "offline" and
// disconnects. A connection that drops is re-established with back-off;
// what it had in flight counts as failed. Errors are returned only for
// what stops a run from starting: bad options, no devices, no broker.
func Run(ctx context.Context, opts Options) (Summary, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkRunOptions(&opts); err != nil {
		return Summary{}, err
	}
	devs, err := resolveDevices(opts)
	if err != nil {
		return Summary{}, err
	}
	if opts.RegistryOut != "" {
		if err := devices.WriteFile(opts.RegistryOut, devs); err != nil {
			return Summary{}, fmt.Errorf("simulator: write registry: %w", err)
		}
	}
	if opts.Start.IsZero() {
		now := time.Now()
		opts.Start = PlanStart(now, opts, devs)
		if now.Sub(opts.Start) > acceptWindow {
			log.Warn("simulated span is longer than sanitel's 7-day accept window: the first readings will be rejected as too old; simulate more devices or fewer messages",
				"start", opts.Start, "devices", len(devs), "reports_per_sim_second", SimRateOf(devs))
		}
	}
	gen, err := newGenerator(opts, devs)
	if err != nil {
		return Summary{}, err
	}

	p := &publisher{opts: opts, log: log, gen: gen}
	if err := p.connect(ctx); err != nil {
		return Summary{}, err
	}
	statuses := p.publishStatuses(ctx, "online")
	start := time.Now()
	stopProgress := p.progress(start)
	sum := p.stream(ctx, start)
	// A clean end, also after ctx is done: wait for the stream's
	// acknowledgements, then mark every device offline.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	drained := p.drain(endCtx)
	sum.Elapsed = time.Since(start)
	stopProgress()
	if drained {
		statuses += p.publishStatuses(endCtx, "offline")
		p.drain(endCtx)
	} else {
		log.Warn("broker did not acknowledge every message in time; devices not marked offline")
	}
	p.close(endCtx)
	sum.Sent = int(p.sent.Load())
	if s := sum.Elapsed.Seconds(); s > 0 {
		sum.Rate = float64(sum.Sent) / s
	}
	sum.Acked = int(p.counts.acked.Load())
	sum.Errors = int(p.counts.errors.Load())
	sum.Statuses = statuses
	sum.StatusErrors = int(p.counts.statusErrors.Load())
	log.Debug("simulation finished", "summary", sum.String())
	return sum, nil
}

func checkRunOptions(o *Options) error {
	switch {
	case o.Broker == "":
		return errors.New("simulator: no broker")
	case o.Speed < 0 || math.IsNaN(o.Speed) || math.IsInf(o.Speed, 0):
		return fmt.Errorf("simulator: speed must be a number ≥ 0 (0: not paced by time), got %v", o.Speed)
	case o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0):
		return fmt.Errorf("simulator: rate must be a number ≥ 0 (0: as fast as the broker acknowledges), got %v", o.Rate)
	case o.Duration < 0:
		return fmt.Errorf("simulator: duration must not be negative, got %s", o.Duration)
	case o.Connections < 0:
		return fmt.Errorf("simulator: connections must be ≥ 1, got %d", o.Connections)
	case o.InFlight < 0 || o.InFlight > 65000:
		return fmt.Errorf("simulator: in-flight window must be within 1–65000, got %d", o.InFlight)
	}
	if o.Connections == 0 {
		o.Connections = DefaultConnections
	}
	if o.InFlight == 0 {
		o.InFlight = DefaultInFlight
	}
	if o.ClientID == "" {
		o.ClientID = DefaultClientID
	}
	return nil
}

// publisher is one Run's connections and counters.
type publisher struct {
	opts    Options
	log     *slog.Logger
	gen     *Generator
	clients []*mqttClient
	counts  counters
	sent    atomic.Int64
}

// connect connects every client; on an error it closes those connected.
func (p *publisher) connect(ctx context.Context) error {
	broker, err := parseBroker(p.opts.Broker)
	if err != nil {
		return err
	}
	for n := 1; n <= p.opts.Connections; n++ {
		id := p.opts.ClientID + "-" + strconv.Itoa(n)
		c := newMQTTClient(id, broker, &p.opts, &p.counts, p.log)
		if err := c.connect(ctx); err != nil {
			c.close(ctx)
			for _, prev := range p.clients {
				prev.close(ctx)
			}
			p.clients = nil
			return fmt.Errorf("simulator: connect to %s as %s: %w", p.opts.Broker, id, err)
		}
		p.log.Debug("connected", "broker", p.opts.Broker, "client_id", id)
		p.clients = append(p.clients, c)
	}
	return nil
}

// publishStatuses publishes every device's retained status, counting them.
func (p *publisher) publishStatuses(ctx context.Context, state string) int {
	payload := []byte(state)
	n := 0
	for i := range p.gen.states {
		if !p.clients[i%len(p.clients)].publish(ctx, p.gen.states[i].topicStatus, 1, true, payload, kindStatus) {
			break
		}
		n++
	}
	return n
}

// stream publishes the generator's messages, paced by Speed, Rate and the
// wall clock, until the stream, Count or Duration ends or ctx is done.
func (p *publisher) stream(ctx context.Context, start time.Time) Summary {
	o := p.opts
	sum := Summary{ByFault: map[string]int{}, SimStart: o.Start}
	var deadline time.Time
	if o.Duration > 0 {
		deadline = start.Add(o.Duration)
	}
	var lim *limiter
	if o.Rate > 0 {
		lim = newLimiter(o.Rate, start)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	wall := time.Now() // refreshed every 256 messages and after every wait
	n := 0
	for ctx.Err() == nil {
		m, ok := p.gen.Next()
		if !ok {
			break
		}
		// Release the message when its simulated time comes (Speed), and
		// never before the wall clock reaches its simulated time.
		release := m.SimTime
		if o.Speed > 0 {
			if r := start.Add(time.Duration(float64(m.SimTime.Sub(o.Start)) / o.Speed)); r.After(release) {
				release = r
			}
		}
		if n++; n%256 == 0 {
			wall = time.Now()
		}
		if !deadline.IsZero() && (release.After(deadline) || !wall.Before(deadline)) {
			// Nothing more falls due within Duration: the run still lasts
			// it, as a device fleet that is quiet for a while would.
			sleepUntil(ctx, timer, deadline)
			break
		}
		if release.After(wall) {
			if !sleepUntil(ctx, timer, release) {
				break
			}
			wall = time.Now()
		}
		if lim != nil {
			at := lim.take(time.Now())
			if !deadline.IsZero() && at.After(deadline) {
				sleepUntil(ctx, timer, deadline)
				break
			}
			if !sleepUntil(ctx, timer, at) {
				break
			}
			wall = at
		}
		// Whether sanitel rejects a skewed reading depends on its clock
		// when the reading arrives: one that would arrive just beyond
		// MaxFuture waits until it is within it, so that Future is exact.
		future := false
		if m.Fault == FaultSkew {
			ahead := m.TS.Sub(time.Now())
			if ahead > MaxFuture && ahead <= MaxFuture+futureGuard {
				if !sleepUntil(ctx, timer, m.TS.Add(-MaxFuture)) {
					break
				}
				wall = time.Now()
				ahead = m.TS.Sub(wall)
			}
			future = ahead > MaxFuture
		}
		// The client copies the payload into its send buffer, so the
		// generator may reuse it at once.
		if !p.clients[int(m.dev)%len(p.clients)].publish(ctx, m.Topic, m.QoS, m.Retained, m.Payload, kindStream) {
			break
		}
		p.sent.Add(1)
		switch {
		case m.Type == devices.Event:
			sum.Events++
		case m.Type == devices.Telemetry && m.Fault != FaultDuplicate:
			sum.Reports++
		}
		if m.Fault != "" {
			sum.ByFault[m.Fault]++
		}
		if future {
			sum.Future++
		}
		sum.SimEnd = m.SimTime
	}
	return sum
}

// drain waits until no publish is unsent or unacknowledged on any
// connection; false if ctx ended or a connection is down.
func (p *publisher) drain(ctx context.Context) bool {
	ok := true
	for _, c := range p.clients {
		ok = c.drain(ctx) && ok
	}
	return ok
}

// close disconnects every client cleanly, within ctx.
func (p *publisher) close(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range p.clients {
		wg.Go(func() { c.close(ctx) })
	}
	wg.Wait()
}

// progress prints a line until the returned func is called, which prints
// the final line: every second on a terminal, where the line is rewritten
// in place, and every ten seconds elsewhere, where each line stays in a log.
func (p *publisher) progress(start time.Time) (stop func()) {
	w := p.opts.Progress
	if w == nil {
		return func() {}
	}
	every := 10 * time.Second
	if p.opts.Terminal {
		every = time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		last, lastAt := int64(0), start
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				sent := p.sent.Load()
				rate := float64(sent-last) / now.Sub(lastAt).Seconds()
				last, lastAt = sent, now
				p.printProgress(w, sent, rate, now.Sub(start), false)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		el := time.Since(start)
		sent := p.sent.Load()
		p.printProgress(w, sent, float64(sent)/max(el.Seconds(), 1e-9), el, true)
	}
}

func (p *publisher) printProgress(w io.Writer, sent int64, rate float64, elapsed time.Duration, final bool) {
	line := fmt.Sprintf("sent %d (%s msg/s) errors %d elapsed %s",
		sent, thousands(int64(math.Round(rate))), p.counts.errors.Load(), elapsed.Round(time.Second))
	switch {
	case p.opts.Terminal && final:
		fmt.Fprintf(w, "\r%-72s\n", line)
	case p.opts.Terminal:
		fmt.Fprintf(w, "\r%-72s", line)
	default:
		fmt.Fprintln(w, line)
	}
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, timer *time.Timer, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer.Reset(d)
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		timer.Stop()
		return false
	}
}

// limiter is a token bucket: rate tokens a second, up to a tenth of a
// second's worth saved up (at least one), so sleeps can be coarser than
// one message's share of a second.
type limiter struct {
	rate, burst, tokens float64
	last                time.Time
}

func newLimiter(rate float64, now time.Time) *limiter {
	b := max(1, rate/10)
	return &limiter{rate: rate, burst: b, tokens: 1, last: now}
}

// take reserves a token and returns when it may be used.
func (l *limiter) take(now time.Time) time.Time {
	if now.After(l.last) {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
		l.last = now
	}
	l.tokens--
	if l.tokens >= 0 {
		return now
	}
	// In debt: the token is ours once the bucket refills to zero.
	return l.last.Add(time.Duration(-l.tokens / l.rate * float64(time.Second)))
}
