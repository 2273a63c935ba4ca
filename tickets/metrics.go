package tickets

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// collector counts tickets in the store at scrape time, so the gauges are
// right whichever instance (or tool) changed the tickets.
type collector struct {
	s       *Service
	tickets *prometheus.Desc
	overdue *prometheus.Desc
	up      *prometheus.Desc
}

func newCollector(s *Service) *collector {
	return &collector{
		s: s,
		tickets: prometheus.NewDesc("sanitel_tickets",
			"Supervision tickets by status.", []string{"status"}, nil),
		overdue: prometheus.NewDesc("sanitel_tickets_overdue",
			"Open or acknowledged tickets past their deadline.", nil, nil),
		up: prometheus.NewDesc("sanitel_tickets_store_up",
			"Whether the ticket store answered the last scrape (1) or not (0).", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tickets
	ch <- c.overdue
	ch <- c.up
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.s.store.Counts(ctx, c.s.clock())
	if err != nil {
		c.s.log.Warn("count tickets for metrics", "err", err)
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, st := range Statuses {
		ch <- prometheus.MustNewConstMetric(c.tickets, prometheus.GaugeValue, float64(counts.ByStatus[st]), string(st))
	}
	ch <- prometheus.MustNewConstMetric(c.overdue, prometheus.GaugeValue, float64(counts.Overdue))
}
