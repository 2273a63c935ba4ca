package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/sanitel/sanitel/config"
	"github.com/sanitel/sanitel/service"
	"github.com/sanitel/sanitel/tickets"
)

const serveHelp = `Runs the service: subscribes to the device topics, validates every message,
acknowledges it once it is durable in the local spool, writes readings to
InfluxDB in batches, evaluates the alert rules and turns alerts into
supervision tickets, and serves the HTTP API, /metrics, /healthz and /readyz.

Every config key can be overridden by an environment variable
SANITEL_<SECTION>_<KEY>, e.g. SANITEL_INFLUX_TOKEN or SANITEL_MQTT_BROKER.
SIGINT or SIGTERM stops it in order: HTTP, MQTT, drain the spool, close.`

const checkConfigHelp = `Loads and validates a config file (with environment overrides applied),
checks that the device registry and rules load, and prints the effective
configuration with every secret masked. Exits 1 naming each bad key.`

const reportHelp = `Prints the monthly ranking of streets (街道) or responsible units (责任单位):
tickets opened, rectified, rectified on time, overdue, on-time rate and the
median hours to rectify, best first. Reads the ticket database named by
the config's tickets.dsn.`

func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(cfg.Log.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("config", defaultConfig(), "config `FILE` (YAML)")
	shutdown := fs.Duration("shutdown-timeout", 15*time.Second, "longest an orderly stop may take")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if err := cfg.ValidateServe(); err != nil {
		return fmt.Errorf("config %s: %w", *path, err)
	}
	log := newLogger(cfg, stderr)
	log.Info("starting sanitel", "version", version, "config", *path, "settings", cfg)
	for _, u := range config.UnknownEnv(os.Environ()) {
		log.Warn("environment variable overrides no setting; ignored", "variable", u.Name, "did_you_mean", u.DidYouMean)
	}
	if err := service.CheckBroker(ctx, cfg, log.With("component", "mqtt")); err != nil {
		return err
	}
	svc, err := service.New(cfg, service.Options{Logger: log, ShutdownTimeout: *shutdown})
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

func runCheckConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check-config", stderr)
	path := fs.String("config", defaultConfig(), "config `FILE` (YAML)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if err := service.Check(cfg); err != nil {
		return err
	}
	for _, u := range config.UnknownEnv(os.Environ()) {
		fmt.Fprintf(stderr, "warning: %s\n", u)
	}
	if err := cfg.WriteMasked(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%s: OK\n", *path)
	return nil
}

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("report", stderr)
	path := fs.String("config", defaultConfig(), "config `FILE` (YAML); its tickets.dsn names the database")
	month := fs.String("month", "", "the month, `YYYY-MM` (default: this month, in tickets.timezone)")
	by := fs.String("by", "street", "rank by `street` or org_unit")
	format := fs.String("format", "table", "output `format`: table or json")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if *by != "street" && *by != "org_unit" {
		return fmt.Errorf("--by must be street or org_unit, got %q", *by)
	}
	loc, err := time.LoadLocation(cfg.Tickets.Timezone)
	if err != nil {
		return err
	}
	if *month == "" {
		*month = time.Now().In(loc).Format("2006-01")
	}
	if _, err := time.Parse("2006-01", *month); err != nil {
		return fmt.Errorf("--month must be YYYY-MM, got %q", *month)
	}
	if _, err := os.Stat(cfg.Tickets.DSN); err != nil && !strings.Contains(cfg.Tickets.DSN, ":") {
		return fmt.Errorf("ticket database %s: %w (is tickets.dsn right? run sanitel serve first)", cfg.Tickets.DSN, err)
	}
	store, err := tickets.Open(ctx, cfg.Tickets.DSN)
	if err != nil {
		return err
	}
	defer store.Close()
	svc, err := tickets.New(tickets.Options{Store: store, Location: loc})
	if err != nil {
		return err
	}
	rows, err := svc.Ranking(ctx, *month, *by)
	if err != nil {
		return err
	}
	switch *format {
	case "table":
		return tickets.WriteRankingTable(stdout, rows, *month, *by)
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"month": *month, "by": *by, "items": rows, "total": len(rows)})
	}
	return fmt.Errorf("--format must be table or json, got %q", *format)
}
