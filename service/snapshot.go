package service

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	"github.com/influxdata/influxdb-client-go/v2/api/write"

	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/ingest"
	"github.com/sanitel/sanitel/tickets"
)

// SnapshotEvery is how often the state Grafana reads besides the readings
// is written to InfluxDB.
const SnapshotEvery = 15 * time.Second

// Snapshot measurements. They extend the readings' schema for dashboards:
//
//   - device_state, tags device_id, kind, site, street, village, org_unit;
//     fields lat, lon, toilet_class (from the registry; toilet_class for
//     toilets only), online (1/0), open_tickets;
//   - tickets, tag street (every street of the registry); fields open
//     (open or acknowledged) and overdue.
const (
	measurementDeviceState = "device_state"
	measurementTickets     = "tickets"
)

// snapshotter writes device_state and tickets points to InfluxDB.
type snapshotter struct {
	client   influxdb2.Client
	write    api.WriteAPIBlocking
	registry *devices.Registry
	tracker  *ingest.Tracker
	tickets  *tickets.Service
	now      func() time.Time // wall clock: point times, overdue
	seen     func() time.Time // clock of device times: online
	log      *slog.Logger
}

func (s *Service) newSnapshotter() *snapshotter {
	c := s.cfg.Influx
	opts := influxdb2.DefaultOptions().SetHTTPRequestTimeout(uint(max(c.Timeout/time.Second, 1))).SetLogLevel(0)
	client := influxdb2.NewClientWithOptions(strings.TrimSuffix(c.URL, "/"), c.Token, opts)
	return &snapshotter{
		client: client, write: client.WriteAPIBlocking(c.Org, c.Bucket),
		registry: s.registry, tracker: s.tracker, tickets: s.tickets,
		now: s.opts.Now, seen: s.opts.AlertClock, log: s.log.With("component", "snapshot"),
	}
}

// Run writes a snapshot now and every SnapshotEvery until ctx ends. A
// failed write is logged and retried at the next tick.
func (n *snapshotter) Run(ctx context.Context) error {
	defer n.client.Close()
	tick := time.NewTicker(SnapshotEvery)
	defer tick.Stop()
	for {
		if err := n.writeOnce(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("write dashboard snapshot to InfluxDB; retrying at the next tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (n *snapshotter) writeOnce(ctx context.Context) error {
	points, err := n.points(ctx)
	if err != nil {
		return err
	}
	return n.write.WritePoint(ctx, points...)
}

// points builds one snapshot at the current time.
func (n *snapshotter) points(ctx context.Context) ([]*write.Point, error) {
	now, seen := n.now(), n.seen()
	openBy, err := n.tickets.OpenByDevice(ctx)
	if err != nil {
		return nil, fmt.Errorf("count open tickets by device: %w", err)
	}
	open, overdue, err := n.streetCounts(ctx, now)
	if err != nil {
		return nil, err
	}
	var points []*write.Point
	for _, d := range n.registry.All() {
		online := 0
		if st, ok := n.tracker.Get(d.ID); ok && ingest.Online(st, &d, seen) {
			online = 1
		}
		fields := map[string]any{"lat": d.Lat, "lon": d.Lon, "online": online, "open_tickets": openBy[d.ID]}
		if d.ToiletClass > 0 {
			fields["toilet_class"] = int(d.ToiletClass)
		}
		points = append(points, influxdb2.NewPoint(measurementDeviceState, nonEmpty(map[string]string{
			"device_id": d.ID, "kind": d.Kind.String(), "site": d.Site,
			"street": d.Street, "village": d.Village, "org_unit": d.OrgUnit,
		}), fields, now))
		if _, ok := open[d.Street]; !ok {
			open[d.Street] = 0
		}
	}
	for street, c := range open {
		if street == "" {
			continue
		}
		points = append(points, influxdb2.NewPoint(measurementTickets,
			map[string]string{"street": street},
			map[string]any{"open": c, "overdue": overdue[street]}, now))
	}
	return points, nil
}

// streetCounts counts the open or acknowledged tickets of each street, and
// how many of them are past their deadline at now.
func (n *snapshotter) streetCounts(ctx context.Context, now time.Time) (open, overdue map[string]int, err error) {
	open, overdue = make(map[string]int), make(map[string]int)
	f := tickets.Filter{Status: []string{string(tickets.StatusOpen), string(tickets.StatusAcknowledged)}, Limit: tickets.MaxLimit}
	for {
		items, _, next, err := n.tickets.List(ctx, f)
		if err != nil {
			return nil, nil, fmt.Errorf("list open tickets: %w", err)
		}
		for _, t := range items {
			open[t.Street]++
			if now.After(t.Deadline) {
				overdue[t.Street]++
			}
		}
		if next == "" {
			return open, overdue, nil
		}
		f.Cursor = next
	}
}

// nonEmpty drops empty tags, as the readings' points do.
func nonEmpty(tags map[string]string) map[string]string {
	for k, v := range tags {
		if v == "" {
			delete(tags, k)
		}
	}
	return tags
}
