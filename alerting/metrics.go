package alerting

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus metrics. Per-rule children are made
// up front, so evaluation looks nothing up by label.
type metrics struct {
	evals      prometheus.Counter
	stale      prometheus.Counter
	ignored    prometheus.Counter
	sinkErrors prometheus.Counter
	firing     []prometheus.Gauge              // by rule index
	trans      [][numStates]prometheus.Counter // by rule index, then target state
	firingVec  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer, rules []compiled) (*metrics, error) {
	m := &metrics{
		evals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sanitel_alert_evaluations_total",
			Help: "Messages (telemetry and events) evaluated against the alert rules.",
		}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sanitel_alert_stale_messages_total",
			Help: "Messages not evaluated because their device time was not after the newest one of their device (duplicates, out of order, replays).",
		}),
		ignored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sanitel_alert_ignored_messages_total",
			Help: "Messages not evaluated because their kind did not match their device's, or too many unknown devices had state.",
		}),
		sinkErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sanitel_alert_sink_errors_total",
			Help: "Fire and Resolve calls to the alert sink that failed (they are retried).",
		}),
		firingVec: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sanitel_alerts_firing",
			Help: "(Device, rule) pairs currently firing, by rule.",
		}, []string{"rule"}),
	}
	transVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sanitel_alert_transitions_total",
		Help: "Alert state transitions, by rule and the state entered.",
	}, []string{"rule", "to"})
	for i := range rules {
		name := rules[i].Name
		m.firing = append(m.firing, m.firingVec.WithLabelValues(name))
		var t [numStates]prometheus.Counter
		for s := range numStates {
			t[s] = transVec.WithLabelValues(name, s.String())
		}
		m.trans = append(m.trans, t)
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.evals, m.stale, m.ignored, m.sinkErrors, m.firingVec, transVec} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}
