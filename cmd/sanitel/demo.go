package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/sanitel/sanitel/config"
	"github.com/sanitel/sanitel/demo"
)

const demoHelp = `Runs the whole product on this machine with nothing installed: an embedded
MQTT broker, a made-up district of waste bins, public and rural toilets and
drinking-water probes, the service ingesting their readings, alert rules
turning what they see into supervision tickets (督办单) in SQLite, and the
HTTP API. The simulated day is replayed fast (--speed), then the district
runs in real time. Tickets appear within a minute.

Files go to --dir. Each run starts afresh (--keep continues the previous
run's tickets instead); what a run leaves stays after it stops, for
'sanitel report --config DIR/sanitel.yaml'. With --influx-url the readings
are written to InfluxDB as well (InfluxDB 1.8+ or 2.x).

Examples:
  sanitel demo
  sanitel demo --listen 127.0.0.1:9090 --devices 500
  sanitel demo --influx-url http://127.0.0.1:8086 --influx-bucket sanitation/autogen`

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	var o demo.Options
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "HTTP API `address`")
	fs.StringVar(&o.Dir, "dir", "demo-data", "`directory` for the registry, spool, alert state and tickets")
	fs.StringVar(&o.Broker, "broker", "127.0.0.1:1883", "`address` of the embedded MQTT broker (another free port if taken)")
	fs.IntVar(&o.Devices, "devices", 120, "how many devices to make up")
	fs.Int64Var(&o.Seed, "seed", 1, "random `seed` of the district")
	fs.Float64Var(&o.Speed, "speed", 1440, "simulated seconds per real second while the day is replayed")
	fs.DurationVar(&o.Backlog, "backlog", 24*time.Hour, "how much simulated past to replay before running in real time")
	fs.StringVar(&o.Faults, "faults", "all", "faults the simulator injects: `LIST` of name[=rate], all or none")
	fs.StringVar(&o.Influx.URL, "influx-url", "", "also write readings to InfluxDB at `URL`")
	fs.StringVar(&o.Influx.Token, "influx-token", "", "InfluxDB `token` (1.8: user:password)")
	fs.StringVar(&o.Influx.Org, "influx-org", "", "InfluxDB `org` (2.x)")
	fs.StringVar(&o.Influx.Bucket, "influx-bucket", "sanitation", "InfluxDB `bucket` (1.8: db/retention-policy)")
	fs.BoolVar(&o.Keep, "keep", false, "continue the previous run's tickets, alert state and spool in --dir")
	logLevel := fs.String("log-level", "warn", "service log `level`: debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	lc := config.Log{Level: *logLevel, Format: "text"}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lc.SlogLevel()}))
	o.Out = stdout
	o.Terminal = isTerminal(stdout)
	if o.Influx.URL != "" {
		o.Influx.Gzip = true
	}
	return demo.Run(ctx, o)
}
