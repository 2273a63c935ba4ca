package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sanitel/sanitel/config"
	"github.com/sanitel/sanitel/service"
	"github.com/sanitel/sanitel/simulator"
)

const simulateHelpFmt = `Publishes simulated device readings to the MQTT broker of the config
(mqtt.broker, credentials, TLS and topic_root), the way a district's bins,
toilets, rural toilets and water probes report: daily patterns, collection
rounds, septic tanks filling over weeks, rain and chlorine incidents.

Without --devices it simulates the config's device registry. With
--devices N it makes up N devices (deterministic for --seed) and
--registry-out writes them where 'sanitel serve' can load them.

Simulated timestamps never run ahead of the wall clock: an accelerated run
(--speed above 1, or --count or --rate without --speed) starts its clock in
the past and catches up; a real-time run (--speed 1) stamps readings with
the time they are sent.
A progress line (sent, rate, errors) is rewritten every second on a
terminal and printed every 10 s otherwise; the summary at the end counts
what was sent, acknowledged and failed, and which faults were injected.

Faults (--faults): a comma-separated list of name or name=rate, "all" or
"none". Names: ` + "%s" + `.

Examples:
  sanitel simulate --config configs/sanitel.yaml --speed 60 --duration 5m
  sanitel simulate --devices 2000 --registry-out devices.csv --count 100000
  sanitel simulate --faults all --rate 500 --duration 1m`

func runSimulate(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlags("simulate", stderr)
	path := fs.String("config", defaultConfig(), "config `FILE`: its mqtt section and devices.registry")
	broker := fs.String("broker", "", "broker `URL` instead of the config's mqtt.broker")
	n := fs.Int("devices", 0, "make up `N` devices instead of simulating the config's registry")
	regOut := fs.String("registry-out", "", "write the simulated registry to `FILE` (.csv or .yaml)")
	rate := fs.Float64("rate", 0, "at most `MSG/S` messages per second (0: as fast as the broker acknowledges)")
	duration := fs.Duration("duration", 0, "stop after this wall-clock `time` (0: until the stream ends)")
	count := fs.Int("count", 0, "stop after `N` readings and events (0: no limit; the retained statuses come on top)")
	speed := fs.Float64("speed", 0, "simulated seconds per real second, e.g. 60 (0: not paced by time)")
	seed := fs.Int64("seed", 1, "random `seed`: the same seed gives the same devices, publishing styles and fault draws")
	faults := fs.String("faults", "none", "faults to inject: `LIST` of name[=rate], all or none")
	qos := fs.Int("qos", 1, "MQTT `QoS` of telemetry and events (0, 1 or 2)")
	conns := fs.Int("connections", simulator.DefaultConnections, "`N` MQTT connections to spread the devices over")
	inflight := fs.Int("inflight", simulator.DefaultInFlight, "unacknowledged publishes per connection")
	clientID := fs.String("client-id", simulator.DefaultClientID, "client id `prefix`; two simulators on one broker need different ones")
	quiet := fs.Bool("quiet", false, "no progress line")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *n < 0 {
		return fmt.Errorf("--devices must not be negative, got %d", *n)
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	q, err := simulator.QoSLevel(*qos)
	if err != nil {
		return fmt.Errorf("--qos: %w", err)
	}
	fl, err := simulator.ParseFaults(*faults)
	if err != nil {
		return fmt.Errorf("--%s", err) // "--faults: …"
	}
	tlsConf, err := service.MQTTTLS(cfg)
	if err != nil {
		return err
	}
	opts := simulator.Options{
		Generate: *n, Registry: cfg.Devices.Registry, RegistryOut: *regOut,
		Seed: *seed, Faults: fl, TopicRoot: cfg.MQTT.TopicRoot,
		Count: *count, Speed: *speed, Rate: *rate, Duration: *duration,
		Broker: cfg.MQTT.Broker, Username: cfg.MQTT.Username, Password: cfg.MQTT.Password, TLS: tlsConf,
		ClientID: *clientID, Connections: *conns, InFlight: *inflight, QoS: q,
		Logger: log.With("component", "simulator"),
	}
	if *broker != "" {
		opts.Broker = *broker
	}
	if *n == 0 && cfg.Devices.Registry == "" {
		return fmt.Errorf("no devices: give --devices N, or a config whose devices.registry names a registry")
	}
	if !*quiet {
		opts.Progress = stderr
		opts.Terminal = isTerminal(stderr)
	}
	log.Info("simulating", "broker", opts.Broker, "devices", describeDevices(*n, cfg.Devices.Registry),
		"speed", *speed, "rate", *rate, "count", *count, "duration", *duration, "faults", *faults, "seed", *seed)
	sum, err := simulator.Run(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, sum.String())
	if sum.Errors > 0 {
		log.Warn("some messages were not acknowledged by the broker", "errors", sum.Errors)
	}
	return nil
}

func describeDevices(n int, registry string) string {
	if n > 0 {
		return fmt.Sprintf("%d made up", n)
	}
	return registry
}

// simulateHelp is the help text with the fault names filled in.
var simulateHelp = fmt.Sprintf(simulateHelpFmt, strings.Join(simulator.FaultNames(), ", "))

// isTerminal reports whether w is a terminal, for progress lines that
// rewrite themselves.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
