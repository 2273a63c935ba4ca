package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sanitel/sanitel/config"
	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/service"
	"github.com/sanitel/sanitel/simulator"
	"github.com/sanitel/sanitel/tickets"
)

// Options configure a demo.
type Options struct {
	// Dir holds the demo's registry, spool, alert state and ticket
	// database; default "demo-data".
	Dir string
	// Listen is the HTTP API's address; default 127.0.0.1:8080.
	Listen string
	// Broker is where the embedded broker listens; default 127.0.0.1:1883
	// (another free port when that one is taken).
	Broker string
	// Devices is how many devices to make up; default 120.
	Devices int
	// Seed makes the district reproducible; default 1.
	Seed int64
	// Speed is simulated seconds per real second while the demo replays
	// the Backlog; then it runs in real time. Default 1440 (a day a minute).
	Speed float64
	// Backlog is how far in the past the simulated day starts; default 24h.
	Backlog time.Duration
	// Faults injected by the simulator; default "all" at their default rates.
	Faults string
	// Influx, when its URL is set, also writes readings to InfluxDB.
	Influx config.Influx
	// Out receives the demo's messages for its user; Logger the service's logs.
	Out    io.Writer
	Logger *slog.Logger
	// Terminal makes the simulator's progress one rewritten line.
	Terminal bool
	// Keep continues the previous run's tickets, alert state and spool in
	// Dir; by default a run starts afresh (what it leaves stays after it
	// stops, for sanitel report).
	Keep bool
}

// runFiles are what a demo run leaves in its directory.
var runFiles = []string{"spool", "alerting", "tickets.db", "tickets.db-wal", "tickets.db-shm", "devices.csv", "sanitel.yaml"}

// clearPrevious removes what an earlier run left in dir, and nothing else:
// dir may be a directory the user keeps other things in. It reports
// whether there was anything.
func clearPrevious(dir string) (bool, error) {
	found := false
	for _, name := range runFiles {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		found = true
		if err := os.RemoveAll(p); err != nil {
			return found, fmt.Errorf("clear the previous demo run: %w", err)
		}
	}
	return found, nil
}

func (o *Options) defaults() {
	if o.Dir == "" {
		o.Dir = "demo-data"
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8080"
	}
	if o.Broker == "" {
		o.Broker = "127.0.0.1:1883"
	}
	if o.Devices <= 0 {
		o.Devices = 120
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Speed <= 0 {
		o.Speed = 1440
	}
	if o.Backlog <= 0 {
		o.Backlog = 24 * time.Hour
	}
	if o.Faults == "" {
		o.Faults = "all"
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Config returns the service config the demo runs: defaults, with every
// file under dir and the embedded broker's URL.
func Config(dir, brokerURL, listen string, influx config.Influx) *config.Config {
	cfg := config.Default()
	cfg.MQTT.Broker = brokerURL
	cfg.MQTT.ClientID = "sanitel-demo"
	cfg.Devices.Registry = filepath.Join(dir, "devices.csv")
	cfg.Spool.Dir = filepath.Join(dir, "spool")
	cfg.Alerting.StateDir = filepath.Join(dir, "alerting")
	cfg.Tickets.DSN = filepath.Join(dir, "tickets.db")
	cfg.HTTP.Listen = listen
	if influx.URL != "" {
		def := cfg.Influx
		cfg.Influx = influx
		if cfg.Influx.Bucket == "" {
			cfg.Influx.Bucket = def.Bucket
		}
		if cfg.Influx.BatchSize == 0 {
			cfg.Influx.BatchSize = def.BatchSize
		}
		if cfg.Influx.FlushInterval == 0 {
			cfg.Influx.FlushInterval = def.FlushInterval
		}
		if cfg.Influx.Timeout == 0 {
			cfg.Influx.Timeout = def.Timeout
		}
		if cfg.Influx.MaxRetryInterval == 0 {
			cfg.Influx.MaxRetryInterval = def.MaxRetryInterval
		}
	}
	return cfg
}

// Run runs the demo until ctx ends: an embedded broker, a made-up district
// publishing to it (a simulated day replayed fast, then real time), and
// the service ingesting, evaluating alerts and keeping tickets.
func Run(ctx context.Context, opts Options) error {
	opts.defaults()
	out, log := opts.Out, opts.Logger
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return fmt.Errorf("demo directory: %w", err)
	}
	if abs, err := filepath.Abs(opts.Dir); err == nil {
		opts.Dir = abs
	}
	if !opts.Keep {
		if cleared, err := clearPrevious(opts.Dir); err != nil {
			return err
		} else if cleared {
			log.Info("previous demo run cleared; --keep continues it instead", "dir", opts.Dir)
		}
	}
	fl, err := simulator.ParseFaults(opts.Faults)
	if err != nil {
		return err
	}
	devs := simulator.Generate(opts.Devices, opts.Seed)
	cfg := Config(opts.Dir, "", opts.Listen, opts.Influx)
	if err := devices.WriteFile(cfg.Devices.Registry, devs); err != nil {
		return fmt.Errorf("write demo registry: %w", err)
	}

	broker, err := StartBroker(opts.Broker, log)
	if err != nil {
		return err
	}
	defer broker.Close()
	cfg.MQTT.Broker = broker.URL()
	if err := cfg.Validate(); err != nil {
		return err
	}

	// The alerts' no_data clock follows the simulated one, so that devices
	// are not called silent while the day is replayed faster than real time.
	wallStart := time.Now()
	simStart := wallStart.Add(-opts.Backlog)
	simNow := func() time.Time {
		t := simStart.Add(time.Duration(float64(time.Since(wallStart)) * opts.Speed))
		if now := time.Now(); t.After(now) {
			return now
		}
		return t
	}
	svc, err := service.New(cfg, service.Options{Logger: log, AlertClock: simNow, NoDataEvery: 5 * time.Second})
	if err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	svcErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		svcErr <- svc.Run(runCtx)
	}()

	base := "http://" + svc.Addr()
	fmt.Fprintf(out, `sanitel demo: %d devices in %d streets, a simulated day replayed at %gx, then real time.

  MQTT broker    %s   (mosquitto_sub -h %s -p %s -t 'sanitation/#' -v)
  desk           %s/desk/   (the demo has no tokens: sign in with any word)
  tickets        %s/api/v1/tickets?status=open
  devices        %s/api/v1/devices
  rejected input %s/api/v1/rejected
  metrics        %s/metrics
  ranking        sanitel report --config %s --by street
  files          %s

Press Ctrl-C to stop.

`, len(devs), countStreets(devs), opts.Speed, broker.URL(), host(broker.Addr()), port(broker.Addr()),
		base, base, base, base, base, filepath.Join(opts.Dir, "sanitel.yaml"), opts.Dir)
	if err := writeConfig(filepath.Join(opts.Dir, "sanitel.yaml"), cfg); err != nil {
		log.Warn("cannot write the demo's config file", "err", err)
	}

	simErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		sum, err := simulator.Run(runCtx, simulator.Options{
			Devices: devs, Seed: opts.Seed, Faults: fl, Start: simStart, Speed: opts.Speed,
			Broker: broker.URL(), ClientID: "sanitel-demo-sim", Connections: 2,
			Progress: out, Terminal: opts.Terminal, Logger: log.With("component", "simulator"),
		})
		if err == nil {
			fmt.Fprintf(out, "simulator: %s\n", sum)
		}
		simErr <- err
	}()

	wg.Add(1)
	go func() {
		defer wg.Done()
		reportTickets(runCtx, svc.Tickets(), out)
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-svcErr:
		svcErr <- runErr
	case err := <-simErr:
		if err != nil {
			runErr = fmt.Errorf("simulator: %w", err)
		} else {
			<-ctx.Done()
		}
	}
	cancel()
	wg.Wait()
	if err := <-svcErr; err != nil && runErr == nil {
		runErr = err
	}
	if errors.Is(runErr, context.Canceled) {
		runErr = nil
	}
	return runErr
}

// reportTickets prints the open tickets every 15 seconds when they change.
func reportTickets(ctx context.Context, ts *tickets.Service, out io.Writer) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	last := -1
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, open, _, err := ts.List(ctx, tickets.Filter{Status: []string{"open", "acknowledged"}, Limit: 1})
		if err != nil || open == last {
			continue
		}
		last = open
		_, all, _, _ := ts.List(ctx, tickets.Filter{Limit: 1})
		fmt.Fprintf(out, "\ntickets: %d open, %d in all\n", open, all)
	}
}

func host(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func countStreets(devs []devices.Device) int {
	seen := map[string]bool{}
	for _, d := range devs {
		seen[d.Street] = true
	}
	return len(seen)
}

func writeConfig(path string, cfg *config.Config) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := cfg.WriteMasked(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
