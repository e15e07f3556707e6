package outbox

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics describes the relay. A nil *Metrics records nothing.
type Metrics struct {
	relayed prometheus.Counter
	latency prometheus.Histogram
	direct  prometheus.Counter
	directT prometheus.Histogram
	lag     prometheus.Gauge
	active  prometheus.Gauge
}

// NewMetrics registers the relay metrics with reg (nil: unregistered, e.g. in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		relayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kchat_outbox_relayed_total", Help: "Outbox rows published to Kafka (republished rows count again).",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kchat_outbox_publish_seconds", Help: "Time for Kafka to acknowledge one relayed batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		direct: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kchat_outbox_direct_total", Help: "Outbox rows published by their writer right after its commit.",
		}),
		directT: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kchat_outbox_direct_publish_seconds", Help: "Time for Kafka to acknowledge one directly published transaction.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kchat_outbox_lag_seconds", Help: "Age of the oldest unpublished outbox row, as last seen by the active relay; 0 when none is pending.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kchat_outbox_relay_active", Help: "1 while this instance holds the relay lock and relays.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.relayed, m.latency, m.direct, m.directT, m.lag, m.active)
	}
	return m
}

func (m *Metrics) published(n int, took time.Duration) {
	if m == nil {
		return
	}
	m.relayed.Add(float64(n))
	m.latency.Observe(took.Seconds())
}

func (m *Metrics) publishedDirect(n int, took time.Duration) {
	if m == nil {
		return
	}
	m.direct.Add(float64(n))
	m.directT.Observe(took.Seconds())
}

func (m *Metrics) setLag(d time.Duration) {
	if m != nil {
		m.lag.Set(d.Seconds())
	}
}

func (m *Metrics) setActive(on bool) {
	if m == nil {
		return
	}
	if on {
		m.active.Set(1)
	} else {
		m.active.Set(0)
		m.lag.Set(0) // a standby reports no lag; the active instance does
	}
}
