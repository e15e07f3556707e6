package forward

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the forwarder's counters, labelled by event type.
type Metrics struct {
	eventsIn   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	unrouted   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg (nil: unregistered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		eventsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kchat_fanout_events_total", Help: "Events consumed and handled by fanout, by type.",
		}, []string{"type"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kchat_fanout_deliveries_total", Help: "Copies written to chat.deliveries, by event type.",
		}, []string{"type"}),
		unrouted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kchat_fanout_unrouted_total", Help: "Events no gateway was subscribed to (or of a type fanout does not forward).",
		}, []string{"type"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kchat_fanout_forward_latency_seconds",
			Help:    "Time from the event's time attribute to its deliveries being acknowledged.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"type"}),
	}
	if reg != nil {
		reg.MustRegister(m.eventsIn, m.deliveries, m.unrouted, m.latency)
	}
	return m
}
