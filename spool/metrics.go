package spool

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the spool's Prometheus collectors. They exist even without a
// Registerer so the hot path never checks for nil.
type metrics struct {
	reg           prometheus.Registerer
	registered    []prometheus.Collector
	commits       prometheus.Counter
	records       prometheus.Counter
	commitSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, bytes func() float64) (*metrics, error) {
	m := &metrics{
		reg: reg,
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sanitel_spool_commits_total",
			Help: "Group commits (one write and one fsync each) of the spool.",
		}),
		records: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sanitel_spool_records_total",
			Help: "Records made durable in the spool.",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sanitel_spool_commit_seconds",
			Help: "Time to write and fsync one group commit of the spool.",
			// 100µs to about 1.6s: an SSD fsync to a stalled disk.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 15),
		}),
	}
	if reg == nil {
		return m, nil
	}
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sanitel_spool_bytes",
		Help: "Bytes on disk in spool segments.",
	}, bytes)
	for _, c := range []prometheus.Collector{size, m.commits, m.records, m.commitSeconds} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			return nil, fmt.Errorf("spool: register metrics: %w", err)
		}
		m.registered = append(m.registered, c)
	}
	return m, nil
}

// unregister removes the collectors, so that a spool reopened in the same
// process (a test, a restart of the pipeline) can register again.
func (m *metrics) unregister() {
	if m == nil || m.reg == nil {
		return
	}
	for _, c := range m.registered {
		m.reg.Unregister(c)
	}
	m.registered = nil
}
