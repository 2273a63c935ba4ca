// Command sanitel-bench holds the measuring parts of scripts/bench.sh that a
// shell does badly: the bare MQTT subscriber that only counts messages (the
// ceiling sanitel is compared with), the reading of sanitel's metrics, and a
// write sink that stands in for an InfluxDB on another machine. It is not
// part of the sanitel binary.
//
//	sanitel-bench prime   --broker URL --client-id ID        # create a persistent session
//	sanitel-bench count   --broker URL --client-id ID --want N
//	sanitel-bench metrics --url http://HOST:PORT/metrics
//	sanitel-bench sink    --listen 127.0.0.1:PORT --out FILE [--measurements a,b]  # until SIGTERM
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sanitel-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: sanitel-bench prime|count|metrics|sink [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	broker := fs.String("broker", "tcp://127.0.0.1:1883", "broker `URL`")
	clientID := fs.String("client-id", "sanitel-bench", "MQTT client `id` of the persistent session")
	topic := fs.String("topic-root", "sanitation", "topic `root` of telemetry and events")
	want := fs.Int64("want", 0, "stop after `N` messages")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this `time`")
	url := fs.String("url", "", "metrics `URL` of sanitel")
	listen := fs.String("listen", "127.0.0.1:8086", "sink: `address` to serve the write API on")
	out := fs.String("out", "", "sink: write the tally to this `file` at exit (default stdout)")
	only := fs.String("measurements", "", "sink: tally only these comma-separated `names` (default all)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "prime":
		return prime(*broker, *clientID, *topic)
	case "count":
		if *want <= 0 {
			return errors.New("count: --want N is required")
		}
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		return count(ctx, stdout, *broker, *clientID, *topic, *want)
	case "metrics":
		return metrics(stdout, *url)
	case "sink":
		var names []string
		if *only != "" {
			names = strings.Split(*only, ",")
		}
		return serveSink(ctx, stdout, *listen, *out, names)
	}
	return fmt.Errorf("unknown command %q: want prime, count, metrics or sink", args[0])
}

// connect opens a persistent (clean session off) QoS 1 subscription, the
// same session shape sanitel uses, so the broker queues while it is away.
func connect(broker, clientID, root string, handler mqtt.MessageHandler) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker(broker).SetClientID(clientID).
		SetCleanSession(false).SetAutoReconnect(false).SetOrderMatters(false).
		SetDefaultPublishHandler(handler)
	c := mqtt.NewClient(o)
	if t := c.Connect(); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v (is the broker running?)", broker, t.Error())
	}
	// Telemetry, events and ChirpStack uplinks, as sanitel subscribes them;
	// not the retained statuses, which the simulator does not count.
	filters := map[string]byte{root + "/+/+/telemetry": 1, root + "/+/+/event": 1, "application/+/device/+/event/up": 1}
	if t := c.SubscribeMultiple(filters, handler); !t.WaitTimeout(30*time.Second) || t.Error() != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("subscribe under %s: %v", root, t.Error())
	}
	return c, nil
}

func prime(broker, clientID, root string) error {
	c, err := connect(broker, clientID, root, func(mqtt.Client, mqtt.Message) {})
	if err != nil {
		return err
	}
	c.Disconnect(250)
	return nil
}

// count receives until want messages arrived and prints one line: the
// messages, the seconds from the first message and from connecting, its CPU
// time and its peak RSS.
func count(ctx context.Context, stdout io.Writer, broker, clientID, root string, want int64) error {
	var n atomic.Int64
	var first atomic.Int64
	done := make(chan struct{})
	handler := func(_ mqtt.Client, _ mqtt.Message) {
		first.CompareAndSwap(0, time.Now().UnixNano())
		if n.Add(1) == want {
			close(done)
		}
	}
	start := time.Now()
	c, err := connect(broker, clientID, root, handler)
	if err != nil {
		return err
	}
	defer c.Disconnect(250)
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("received %d of %d messages: %w", n.Load(), want, ctx.Err())
	}
	end := time.Now()
	from := start
	if f := first.Load(); f != 0 {
		from = time.Unix(0, f)
	}
	// The process' own CPU and peak RSS, in the units bench.sh reads from
	// /proc for sanitel: clock ticks (100 per second) and MB.
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return fmt.Errorf("getrusage: %w", err)
	}
	ticks := (time.Duration(ru.Utime.Nano()) + time.Duration(ru.Stime.Nano())) / (10 * time.Millisecond)
	_, err = fmt.Fprintf(stdout, "messages %d seconds %.3f connect_seconds %.3f cpu_ticks %d rss_mb %d\n",
		n.Load(), end.Sub(from).Seconds(), end.Sub(start).Seconds(), ticks, ru.Maxrss/1024)
	return err
}

// metrics prints the counters the benchmark needs and the lag quantiles,
// interpolated linearly inside the histogram's buckets as Prometheus'
// histogram_quantile does.
func metrics(stdout io.Writer, url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return fmt.Errorf("metrics: %w (is sanitel running?)", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return fmt.Errorf("metrics %s: %w", url, err)
	}
	sum := func(name string) float64 {
		var v float64
		if f := fams[name]; f != nil {
			for _, m := range f.Metric {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return v
	}
	p50, p99 := math.NaN(), math.NaN()
	if f := fams["sanitel_ingest_lag_seconds"]; f != nil && len(f.Metric) == 1 {
		h := f.Metric[0].GetHistogram()
		p50, p99 = quantile(h, 0.5), quantile(h, 0.99)
	}
	_, err = fmt.Fprintf(stdout, "accepted %.0f rejected %.0f written %.0f lag_p50 %.3f lag_p99 %.3f\n",
		sum("sanitel_ingest_messages_total"), sum("sanitel_ingest_rejected_total"),
		sum("sanitel_points_written_total"), p50, p99)
	return err
}

func quantile(h *dto.Histogram, q float64) float64 {
	total := float64(h.GetSampleCount())
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range h.Bucket {
		c := float64(b.GetCumulativeCount())
		if c >= rank {
			if c == below {
				return b.GetUpperBound()
			}
			return lower + (b.GetUpperBound()-lower)*(rank-below)/(c-below)
		}
		lower, below = b.GetUpperBound(), c
	}
	return math.Inf(1)
}
