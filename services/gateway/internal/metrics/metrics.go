// Package metrics defines the gateway's Prometheus metrics in one place.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds every gateway collector. A nil *Metrics is valid and records nothing, so
// unit tests need not build one.
type Metrics struct {
	Connections    prometheus.Gauge
	FramesIn       *prometheus.CounterVec
	FramesOut      *prometheus.CounterVec
	PublishSeconds *prometheus.HistogramVec
	SlowSwitches   prometheus.Counter
	SlowCloses     prometheus.Counter
	DeliveryLag    prometheus.Histogram
	Duplicates     prometheus.Counter
	GapFills       prometheus.Counter
	Deliveries     *prometheus.CounterVec
	Skipped        prometheus.Counter
	RateLimited    *prometheus.CounterVec
	AbuseCloses    prometheus.Counter

	framesOut sync.Map // frame type -> prometheus.Counter of FramesOut
}

// New registers the collectors with reg (nil: unregistered, for tests).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kchat_gateway_connections", Help: "Open WebSocket connections.",
		}),
		FramesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kchat_gateway_frames_in_total", Help: "Frames received from clients, by type (invalid frames as \"invalid\").",
		}, []string{"type"}),
		FramesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kchat_gateway_frames_out_total", Help: "Frames written to clients, by type.",
		}, []string{"type"}),
		PublishSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kchat_gateway_publish_seconds", Help: "Kafka publish latency (acks=all), by topic.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}, []string{"topic"}),
		SlowSwitches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kchat_gateway_slow_catchup_total", Help: "Connections whose send queue overflowed and were moved to catch-up from PostgreSQL.",
		}),
		SlowCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kchat_gateway_slow_closed_total", Help: "Connections closed with 4008 because they could not keep up even in catch-up.",
		}),
		DeliveryLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kchat_gateway_delivery_lag_seconds", Help: "now - stored_at of message.stored events when the gateway reads them from chat.stored.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kchat_gateway_duplicates_dropped_total", Help: "Live timeline entries dropped because the connection already had them (seq <= cursor).",
		}),
		GapFills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kchat_gateway_gap_fills_total", Help: "Times a room subscription was filled from PostgreSQL (resume, seq jump, overflow).",
		}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kchat_gateway_deliveries_total", Help: "Events read and decoded for this gateway's connections (chat.stored, its chat.deliveries partition), by type.",
		}, []string{"type"}),
		Skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kchat_gateway_timeline_skipped_total", Help: "chat.stored records skipped undecoded: no connection here follows the room or is named in them.",
		}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kchat_gateway_rate_limited_total", Help: "Requests refused with rate_limited, by limit (conn, user, frames, login_account, login_addr).",
		}, []string{"limit"}),
		AbuseCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kchat_gateway_abuse_closed_total", Help: "Connections closed with 1008 for staying far over their rate limits.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.FramesIn, m.FramesOut, m.PublishSeconds, m.SlowSwitches, m.SlowCloses,
			m.DeliveryLag, m.Duplicates, m.GapFills, m.Deliveries, m.Skipped, m.RateLimited, m.AbuseCloses)
	}
	return m
}

// FrameOut implements transport.FrameCounter. It is called for every write on every
// connection, so the labelled counter is looked up once per type, not hashed each time.
func (m *Metrics) FrameOut(t string, n int) {
	if m == nil {
		return
	}
	c, ok := m.framesOut.Load(t)
	if !ok {
		c, _ = m.framesOut.LoadOrStore(t, m.FramesOut.WithLabelValues(t))
	}
	c.(prometheus.Counter).Add(float64(n))
}

// FrameIn counts a received frame.
func (m *Metrics) FrameIn(t string) {
	if m != nil {
		m.FramesIn.WithLabelValues(t).Inc()
	}
}

// Publish observes one Kafka publish.
func (m *Metrics) Publish(topic string, seconds float64) {
	if m != nil {
		m.PublishSeconds.WithLabelValues(topic).Observe(seconds)
	}
}

// Inc increments c when metrics are enabled.
func (m *Metrics) Inc(c func(*Metrics) prometheus.Counter) {
	if m != nil {
		c(m).Inc()
	}
}

// Limited counts one request refused by limit.
func (m *Metrics) Limited(limit string) {
	if m != nil {
		m.RateLimited.WithLabelValues(limit).Inc()
	}
}
