// Package service assembles a running sanitel from its configuration: the
// MQTT subscriber, the spool, the InfluxDB writer, alert evaluation, the
// ticket store and the HTTP API, and stops them in order.
package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sanitel/sanitel/alerting"
	"github.com/sanitel/sanitel/api"
	"github.com/sanitel/sanitel/config"
	"github.com/sanitel/sanitel/desk"
	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/ingest"
	"github.com/sanitel/sanitel/spool"
	"github.com/sanitel/sanitel/tickets"
)

// Spool consumer names. Each keeps its own checkpoint.
const (
	consumerInflux = "influx"
	consumerAlerts = "alerts"
)

// Options are what a Service needs besides its config.
type Options struct {
	Logger *slog.Logger
	// Now is the clock for alerting's no_data rules, ticket deadlines and
	// escalation; default time.Now.
	Now func() time.Time
	// AlertClock is the clock of the no_data rules; default Now. The demo
	// passes the simulator's clock, which runs faster than the wall's.
	AlertClock func() time.Time
	// NoDataEvery is how often no_data rules are checked; default 15s.
	NoDataEvery time.Duration
	// Listener, when set, serves the HTTP API instead of listening on
	// cfg.HTTP.Listen (tests pass one bound to 127.0.0.1:0).
	Listener net.Listener
	// ShutdownTimeout bounds the orderly stop; default 15s.
	ShutdownTimeout time.Duration
}

// Service is a running sanitel.
type Service struct {
	cfg  *config.Config
	opts Options
	log  *slog.Logger
	reg  *prometheus.Registry

	registry        *devices.Registry
	spool           *spool.Spool
	deadLetters     *ingest.DeadLetters
	tracker         *ingest.Tracker
	metrics         *ingest.Metrics
	subscriber      *ingest.Subscriber
	writer          *ingest.Writer
	feed            *ingest.AlertFeed
	engine          *alerting.Engine
	evaluated       *watermark
	store           tickets.Store
	tickets         *tickets.Service
	notifier        *tickets.WebhookNotifier
	readers         []*spool.Reader
	api             *api.Server
	httpSrv         *http.Server
	listener        net.Listener
	statePath       string
	trackerPath     string // the devices' last readings and statuses
	deadLettersPath string
	closers         []func()
}

// New opens everything the config names. Nothing runs until Run.
func New(cfg *config.Config, opts Options) (s *Service, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AlertClock == nil {
		opts.AlertClock = opts.Now
	}
	if opts.NoDataEvery <= 0 {
		opts.NoDataEvery = 15 * time.Second
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 15 * time.Second
	}
	s = &Service{cfg: cfg, opts: opts, log: opts.Logger, reg: prometheus.NewRegistry()}
	// Each `return nil, err` sets s to nil before deferred calls run, so the
	// clean-up holds its own reference to what was opened so far.
	opened := s
	defer func() {
		if err != nil {
			opened.close()
		}
	}()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if s.registry, err = devices.LoadRegistry(cfg.Devices.Registry); err != nil {
		return nil, err
	}
	s.log.Info("device registry loaded", "path", cfg.Devices.Registry, "devices", s.registry.Len())

	decoder, err := devices.NewDecoder(devices.DecoderOptions{
		Registry:      s.registry,
		AcceptUnknown: cfg.Devices.Unknown == "accept",
		TopicRoot:     cfg.MQTT.TopicRoot,
		MaxPayload:    int(cfg.Devices.MaxPayloadBytes),
		AcceptWindow:  cfg.Devices.AcceptWindow,
		MaxFuture:     &cfg.Devices.MaxFuture,
		RefTempC:      &cfg.Devices.ReferenceTempC,
	})
	if err != nil {
		return nil, err
	}

	var consumers []string
	if cfg.Influx.URL != "" {
		consumers = append(consumers, consumerInflux)
	}
	if cfg.Alerting.Evaluate {
		consumers = append(consumers, consumerAlerts)
	}
	if len(consumers) == 0 {
		return nil, errors.New("nothing consumes the spool: set influx.url or alerting.evaluate")
	}
	if s.spool, err = spool.Open(spool.Options{
		Dir:            cfg.Spool.Dir,
		MaxBytes:       int64(cfg.Spool.MaxBytes),
		SegmentBytes:   int64(cfg.Spool.SegmentBytes),
		CommitInterval: cfg.Spool.CommitInterval,
		Consumers:      consumers,
		Logger:         s.log.With("component", "spool"),
		Registerer:     s.reg,
	}); err != nil {
		return nil, fmt.Errorf("open spool %s: %w", cfg.Spool.Dir, err)
	}
	sp := s.spool // not s: it is nil when a later step fails and the clean-up runs
	s.closers = append(s.closers, func() { sp.Close() })

	s.metrics = ingest.NewMetrics(s.reg)
	s.deadLetters = ingest.NewDeadLetters(1000)
	s.tracker = ingest.NewTracker()
	if err := s.openTracker(); err != nil {
		return nil, err
	}

	if err := s.openTickets(); err != nil {
		return nil, err
	}
	if cfg.Alerting.Evaluate {
		if err := s.openAlerting(); err != nil {
			return nil, err
		}
	}
	if cfg.Influx.URL != "" {
		rd, err := s.spool.Reader(consumerInflux)
		if err != nil {
			return nil, err
		}
		s.readers = append(s.readers, rd)
		if s.writer, err = ingest.NewWriter(ingest.WriterOptions{
			URL: cfg.Influx.URL, Token: cfg.Influx.Token, Org: cfg.Influx.Org, Bucket: cfg.Influx.Bucket,
			BatchSize: cfg.Influx.BatchSize, FlushInterval: cfg.Influx.FlushInterval,
			Timeout: cfg.Influx.Timeout, MaxRetryInterval: cfg.Influx.MaxRetryInterval,
			Gzip:   cfg.Influx.Gzip && !loopbackURL(cfg.Influx.URL),
			Reader: rd, Registry: s.registry, DeadLetters: s.deadLetters, Metrics: s.metrics,
			Logger: s.log.With("component", "influx"),
		}); err != nil {
			return nil, err
		}
		s.closers = append(s.closers, s.writer.Close)
	} else {
		s.log.Warn("influx.url is empty: readings are spooled and evaluated but not written to InfluxDB")
	}

	pipeline, err := ingest.NewPipeline(ingest.PipelineOptions{
		Decoder: decoder, Spool: s.spool, DeadLetters: s.deadLetters, Tracker: s.tracker,
		Metrics: s.metrics, Logger: s.log.With("component", "ingest"),
	})
	if err != nil {
		return nil, err
	}
	tlsConf, err := MQTTTLS(cfg)
	if err != nil {
		return nil, err
	}
	topics := decoder.Topics()
	if cfg.MQTT.ChirpStackTopic != "" {
		topics = append(topics, cfg.MQTT.ChirpStackTopic)
	}
	if s.subscriber, err = ingest.NewSubscriber(ingest.SubscriberOptions{
		Broker: cfg.MQTT.Broker, ClientID: cfg.MQTT.ClientID,
		Username: cfg.MQTT.Username, Password: cfg.MQTT.Password, TLS: tlsConf,
		QoS: byte(cfg.MQTT.QoS), SharedGroup: cfg.MQTT.SharedGroup, Topics: topics,
		CleanSession: cfg.MQTT.CleanSession, KeepAlive: cfg.MQTT.KeepAlive, ConnectTimeout: cfg.MQTT.ConnectTimeout,
		Pipeline: pipeline, Metrics: s.metrics, Logger: s.log.With("component", "mqtt"),
	}); err != nil {
		return nil, err
	}

	if err := s.openAPI(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Service) openTickets() error {
	cfg := s.cfg
	loc, err := time.LoadLocation(cfg.Tickets.Timezone)
	if err != nil {
		return fmt.Errorf("tickets.timezone: %w", err)
	}
	if dir := filepath.Dir(cfg.Tickets.DSN); dir != "" && !isURI(cfg.Tickets.DSN) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("tickets.dsn: %w", err)
		}
	}
	openCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.store, err = tickets.Open(openCtx, cfg.Tickets.DSN); err != nil {
		return fmt.Errorf("tickets.dsn %s: %w", cfg.Masked().Tickets.DSN, err)
	}
	s.closers = append(s.closers, func() { s.store.Close() })
	var hooks []tickets.Webhook
	for _, w := range cfg.Tickets.Notify.Webhooks {
		hooks = append(hooks, tickets.Webhook{URL: w.URL, Events: w.Events, Secret: w.Secret, Timeout: w.Timeout})
	}
	var notifier tickets.Notifier
	if len(hooks) > 0 {
		if s.notifier, err = tickets.NewWebhookNotifier(tickets.WebhookOptions{
			Webhooks: hooks, Logger: s.log.With("component", "notify"), Registerer: s.reg,
		}); err != nil {
			return err
		}
		notifier = s.notifier
	}
	s.tickets, err = tickets.New(tickets.Options{
		Store: s.store, Now: s.opts.Now, Location: loc, Notifier: notifier,
		Logger: s.log.With("component", "tickets"), Registerer: s.reg,
		DeviceLookup: s.lookupDevice,
	})
	return err
}

func isURI(dsn string) bool {
	return strings.HasPrefix(dsn, "file:") || tickets.IsPostgres(dsn)
}

func (s *Service) lookupDevice(id string) (tickets.DeviceInfo, bool) {
	d, ok := s.registry.Lookup(id)
	if !ok {
		return tickets.DeviceInfo{}, false
	}
	return tickets.DeviceInfo{Kind: d.Kind.String(), Site: d.Site, Street: d.Street, Village: d.Village, OrgUnit: d.OrgUnit}, true
}

// trackerSaveEvery is how often the devices' last readings and statuses
// are saved while running (and at every stop), so that after a crash the
// device list is at most this old until devices report again.
const trackerSaveEvery = time.Minute

// openTracker restores the devices' last readings and statuses as they
// were saved before the last stop.
func (s *Service) openTracker() error {
	dir := s.cfg.Alerting.StateDir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("alerting.state_dir: %w", err)
	}
	s.trackerPath = filepath.Join(dir, "devices.json")
	if err := s.tracker.LoadFile(s.trackerPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		// It costs only what the device list shows until devices report.
		s.log.Warn("ignoring the saved device states; devices show as silent until they report",
			"path", s.trackerPath, "err", err)
	}
	s.deadLettersPath = filepath.Join(dir, "rejected.json")
	if err := s.deadLetters.LoadFile(s.deadLettersPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("ignoring the saved dead letters; /api/v1/rejected starts empty",
			"path", s.deadLettersPath, "err", err)
	}
	return nil
}

// saveTracker saves the devices' states and the dead letters every
// trackerSaveEvery until ctx ends.
func (s *Service) saveTracker(ctx context.Context) error {
	t := time.NewTicker(trackerSaveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.saveState()
		}
	}
}

// saveState saves what the API shows of past input: the devices' states
// and the dead letters.
func (s *Service) saveState() {
	if err := s.tracker.SaveFile(s.trackerPath); err != nil {
		s.log.Error("saving device states failed; will retry", "err", err)
	}
	if err := s.deadLetters.SaveFile(s.deadLettersPath); err != nil {
		s.log.Error("saving dead letters failed; will retry", "err", err)
	}
}

func (s *Service) openAlerting() error {
	cfg := s.cfg
	rules, err := alerting.LoadRules(cfg.Alerting.Rules)
	if err != nil {
		return err
	}
	rulesFrom := cfg.Alerting.Rules
	if rulesFrom == "" {
		rulesFrom = "the shipped defaults"
	}
	s.log.Info("alert rules loaded; edits take effect at the next start", "rules", rulesFrom, "count", len(rules))
	if s.engine, err = alerting.New(alerting.Options{
		Rules: rules, Registry: s.registry, Sink: ticketSink{s.tickets},
		Clock: s.opts.AlertClock, Logger: s.log.With("component", "alerting"), Registerer: s.reg,
	}); err != nil {
		return err
	}
	s.statePath = filepath.Join(cfg.Alerting.StateDir, "state.bin") // openTracker made the directory
	if err := s.engine.LoadFile(s.statePath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("load alert state %s: %w", s.statePath, err)
	}
	rd, err := s.spool.Reader(consumerAlerts)
	if err != nil {
		return err
	}
	s.readers = append(s.readers, rd)
	s.evaluated = &watermark{Evaluator: s.engine}
	s.feed, err = ingest.NewAlertFeed(ingest.AlertFeedOptions{
		Reader: rd, Registry: s.registry, Evaluator: s.evaluated,
		SaveState: func() error { return s.engine.SaveFile(s.statePath) },
		Logger:    s.log.With("component", "alerting"),
	})
	return err
}

// loopbackURL reports whether u names a loopback host (localhost,
// 127.0.0.0/8, ::1). Writes to such an InfluxDB are not gzipped, whatever
// influx.gzip says: nothing crosses a network, so compressing only spends
// CPU in both processes — about a tenth of sanitel's CPU in a backlog
// drain (scripts/bench.sh), and InfluxDB's to inflate it.
func loopbackURL(u string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	host := pu.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ticketSink turns alerts into tickets.
type ticketSink struct{ t *tickets.Service }

func (k ticketSink) Fire(ctx context.Context, a alerting.Alert) error {
	ta := tickets.Alert{
		Rule: a.Rule, Severity: a.Severity, DeviceID: a.DeviceID, Kind: a.Kind.String(),
		Title: a.Title, Detail: a.Detail, Requirement: a.Requirement,
		Deadline: a.Deadline, FiredAt: a.FiredAt, AutoClose: a.AutoClose,
	}
	if d := a.Device; d != nil {
		ta.Site, ta.Street, ta.Village, ta.OrgUnit = d.Site, d.Street, d.Village, d.OrgUnit
	}
	_, _, err := k.t.Raise(ctx, ta)
	return err
}

func (k ticketSink) Resolve(ctx context.Context, a alerting.Alert) error {
	return k.t.Clear(ctx, a.Rule, a.DeviceID, a.ResolvedAt)
}

func (s *Service) openAPI() error {
	cfg := s.cfg
	var toks []api.Token
	for _, t := range cfg.HTTP.Tokens {
		toks = append(toks, api.Token{Name: t.Name, Role: t.Role, OrgUnit: t.OrgUnit, Token: t.Token})
	}
	loc, _ := time.LoadLocation(cfg.Tickets.Timezone)
	checks := []api.Check{
		{Name: "mqtt", Fn: s.subscriber.Ready},
		{Name: "spool", Fn: func(context.Context) error { return s.spool.Err() }},
		{Name: "tickets", Fn: s.store.Ping},
	}
	if s.writer != nil {
		checks = append(checks, api.Check{Name: "influxdb", Fn: s.writer.Health, Degrades: true})
	}
	var err error
	s.api, err = api.New(api.Options{
		Tickets: s.tickets, Tokens: toks, Devices: deviceSource{s}, DeadLetters: deadLetterSource{s.deadLetters},
		Ready: checks, Gatherer: s.reg, Logger: s.log.With("component", "http"),
		MaxBodyBytes: int64(cfg.HTTP.MaxBodyBytes), Location: loc, Now: s.opts.Now,
	})
	if err != nil {
		return err
	}
	s.listener = s.opts.Listener
	if s.listener == nil {
		if s.listener, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
			return fmt.Errorf("http.listen: %w", err)
		}
	}
	web, err := desk.New(desk.Options{
		Tickets: s.tickets, Auth: s.api, Devices: deviceSource{s}, Location: loc, Now: s.opts.Now,
		Logger: s.log.With("component", "desk"),
	})
	if err != nil {
		return err
	}
	handler := desk.Mount(s.api.Handler(), web)
	if cfg.HTTP.Pprof {
		handler = withPprof(handler)
	}
	// Bounded reads and idle connections: a slow or idle client cannot hold
	// a connection (and its goroutine) for ever. No WriteTimeout: a large
	// CSV ledger export may legitimately take a while to stream.
	s.httpSrv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	return nil
}

// withPprof serves net/http/pprof under /debug/pprof/ and everything else
// with next (http.pprof, for profiling the ingestion path under load).
func withPprof(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", next)
	return mux
}

// Addr returns the address the HTTP API listens on.
func (s *Service) Addr() string { return s.listener.Addr().String() }

// Registry returns the device registry.
func (s *Service) Registry() *devices.Registry { return s.registry }

// Tickets returns the ticket service.
func (s *Service) Tickets() *tickets.Service { return s.tickets }

// Gatherer returns sanitel's metrics registry.
func (s *Service) Gatherer() prometheus.Gatherer { return s.reg }

// Run runs every part until ctx ends, then stops them in order: HTTP,
// MQTT (without unsubscribing, so the broker keeps the session), then the
// spool consumers drain what was acknowledged, then the spool and the
// ticket store close. It returns the first error that stopped a part.
func (s *Service) Run(ctx context.Context) error {
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	goRun := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(runCtx); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	if s.writer != nil {
		goRun("influx writer", s.writer.Run)
		goRun("dashboard snapshot", s.newSnapshotter().Run)
	}
	if s.feed != nil {
		goRun("alert feed", s.feed.Run)
		goRun("no-data check", s.tickNoData)
	}
	goRun("device states", s.saveTracker)
	goRun("escalation", func(ctx context.Context) error {
		s.tickets.RunEscalation(ctx, s.cfg.Tickets.EscalationCheck)
		return nil
	})
	httpErr := make(chan error, 1)
	go func() {
		if err := s.httpSrv.Serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			httpErr <- err
		}
		close(httpErr)
	}()
	s.subscriber.Start()
	s.log.Info("sanitel running", "http", s.Addr(), "broker", s.cfg.MQTT.Broker, "influx", s.cfg.Influx.URL != "")

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		runErr = err
	case err := <-httpErr:
		runErr = fmt.Errorf("http: %w", err)
	}
	s.log.Info("stopping")
	deadline := time.Now().Add(s.opts.ShutdownTimeout)
	shutCtx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	s.httpSrv.Shutdown(shutCtx)
	s.subscriber.Stop()
	// What was acknowledged is on disk; give the consumers until the
	// deadline to catch up, so a planned stop leaves nothing behind.
	s.drain(shutCtx)
	cancelRun()
	wg.Wait()
	s.saveState()
	s.close()
	s.log.Info("stopped")
	return runErr
}

// lag is how many spooled bytes some consumer has not yet committed.
func (s *Service) lag() int64 {
	var n int64
	for _, r := range s.readers {
		n += r.Lag()
	}
	return n
}

// drain waits until every spool consumer has caught up, or ctx ends.
func (s *Service) drain(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if s.lag() == 0 {
			return
		}
		select {
		case <-ctx.Done():
			s.log.Warn("shutdown timeout: readings left in the spool will be sent on the next start", "bytes", s.lag())
			return
		case <-t.C:
		}
	}
}

// freshWithin is how close to the no_data clock a reading's device time
// must be for sanitel to count as caught up with its devices. It must stay
// well below every no_data timeout (3 × report_interval).
const freshWithin = time.Minute

// tickNoData checks the no_data rules, but only while no backlog is being
// evaluated — devices whose readings are still queued would look silent:
// the alert feed has caught up with the spool, and the broker has
// delivered what it queued for sanitel's session. The broker says nothing
// of its queue; it delivers the queue first, so the queue is through once
// a reading stamped within freshWithin of the clock has been evaluated, or
// once nothing at all has arrived for a whole check interval.
func (s *Service) tickNoData(ctx context.Context) error {
	t := time.NewTicker(s.opts.NoDataEvery)
	defer t.Stop()
	var received uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			n := s.subscriber.Received()
			quiet := n == received
			received = n
			now := s.opts.AlertClock()
			fresh := s.evaluated.newest.Load() >= now.Add(-freshWithin).UnixMilli()
			if s.feed.CaughtUp() && s.subscriber.Connected() && (fresh || quiet) {
				s.engine.Tick(ctx, now)
			}
		}
	}
}

// watermark is the alert engine as the alert feed calls it, remembering
// the newest device time evaluated.
type watermark struct {
	ingest.Evaluator
	newest atomic.Int64 // Unix ms
}

func (w *watermark) Eval(ctx context.Context, m *devices.Message) {
	w.Evaluator.Eval(ctx, m)
	if m.TS > w.newest.Load() {
		w.newest.Store(m.TS)
	}
}

func (s *Service) close() {
	if s.notifier != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.notifier.Close(ctx)
		cancel()
	}
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// MQTTTLS returns the TLS settings of cfg.MQTT, nil for plain TCP.
func MQTTTLS(cfg *config.Config) (*tls.Config, error) {
	t := cfg.MQTT.TLS
	if t.CAFile == "" && t.CertFile == "" && !t.InsecureSkipVerify && t.ServerName == "" {
		return nil, nil
	}
	tc := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt.tls.ca_file: no PEM certificate in %s", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt.tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Check loads what the config points to (registry, rules) without opening
// anything, for check-config.
func Check(cfg *config.Config) error {
	var errs []error
	if _, err := devices.LoadRegistry(cfg.Devices.Registry); err != nil {
		errs = append(errs, fmt.Errorf("devices.registry: %w", err))
	}
	if _, err := alerting.LoadRules(cfg.Alerting.Rules); err != nil {
		errs = append(errs, fmt.Errorf("alerting.rules: %w", err))
	}
	if _, err := time.LoadLocation(cfg.Tickets.Timezone); err != nil {
		errs = append(errs, fmt.Errorf("tickets.timezone: %w", err))
	}
	return errors.Join(errs...)
}
