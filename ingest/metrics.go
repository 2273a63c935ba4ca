package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sanitel/sanitel/devices"
)

// Metrics are the ingestion metrics of contract section 11. One set is
// shared by the pipeline, the subscriber and the writer.
type Metrics struct {
	Messages      *prometheus.CounterVec // accepted messages by kind
	Rejected      *prometheus.CounterVec // rejected messages by reason
	FieldsDropped *prometheus.CounterVec // dropped fields by reason
	Duplicates    prometheus.Counter
	Statuses      *prometheus.CounterVec
	Inflight      prometheus.Gauge
	Connected     prometheus.Gauge
	Reconnects    prometheus.Counter
	PointsWritten prometheus.Counter
	WriteErrors   *prometheus.CounterVec // InfluxDB write errors by class
	Batches       prometheus.Counter
	WriteSeconds  prometheus.Histogram
	DeadLettered  prometheus.Counter // points InfluxDB refused for good
	Lag           prometheus.Histogram
	messages      [devices.KindWater + 1]prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sanitel_ingest_messages_total", Help: "Messages accepted, by device kind.",
		}, []string{"kind"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sanitel_ingest_rejected_total", Help: "Messages rejected as a whole, by reason.",
		}, []string{"reason"}),
		FieldsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sanitel_ingest_fields_dropped_total", Help: "Fields dropped from accepted messages, by reason.",
		}, []string{"reason"}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sanitel_ingest_duplicates_total", Help: "ChirpStack uplinks skipped as repeats of a deduplicationId already taken.",
		}),
		Statuses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sanitel_ingest_status_total", Help: "Device status messages recorded, by status.",
		}, []string{"status"}),
		Inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sanitel_ingest_inflight", Help: "Messages received but not yet durable in the spool (not yet acknowledged).",
		}),
		Connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sanitel_mqtt_connected", Help: "1 while connected to the MQTT broker with every subscription acknowledged.",
		}),
		Reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sanitel_mqtt_connects_total", Help: "Successful connections to the MQTT broker.",
		}),
		PointsWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sanitel_points_written_total", Help: "Points InfluxDB accepted.",
		}),
		WriteErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sanitel_influx_write_errors_total", Help: "Failed InfluxDB writes, by class (bad_request, too_large, throttled, unavailable, server, auth, network).",
		}, []string{"class"}),
		Batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sanitel_influx_batches_total", Help: "Batches InfluxDB accepted.",
		}),
		WriteSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sanitel_influx_write_seconds", Help: "Time to write one batch to InfluxDB.",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 14),
		}),
		DeadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sanitel_influx_points_refused_total", Help: "Points InfluxDB refused for good (400/422); kept as dead letters.",
		}),
		Lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sanitel_ingest_lag_seconds", Help: "Time from a reading's device time to its point being written to InfluxDB.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400, 604800},
		}),
	}
	for _, k := range devices.Kinds {
		m.messages[k] = m.Messages.WithLabelValues(k.String())
	}
	for _, r := range devices.RejectReasons {
		m.Rejected.WithLabelValues(r.String())
	}
	for _, r := range devices.DropReasons {
		m.FieldsDropped.WithLabelValues(r.String())
	}
	for _, c := range []string{"bad_request", "too_large", "throttled", "unavailable", "server", "auth", "network"} {
		m.WriteErrors.WithLabelValues(c)
	}
	if reg != nil {
		reg.MustRegister(m.Messages, m.Rejected, m.FieldsDropped, m.Duplicates, m.Statuses,
			m.Inflight, m.Connected, m.Reconnects, m.PointsWritten, m.WriteErrors, m.Batches,
			m.WriteSeconds, m.DeadLettered, m.Lag)
	}
	return m
}

func (m *Metrics) accepted(k devices.Kind) {
	if k.Valid() {
		m.messages[k].Inc()
	}
}
