package store

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics describes what the batch handler does. A nil *Metrics records nothing.
type Metrics struct {
	batchSize  prometheus.Histogram
	batchTime  prometheus.Histogram
	stored     *prometheus.CounterVec
	duplicates *prometheus.CounterVec
}

// NewMetrics registers the store metrics with reg (nil: unregistered, e.g. in tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kchat_persistence_batch_size", Help: "Events per stored batch (one transaction).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kchat_persistence_batch_seconds", Help: "Time to store one batch, transaction included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kchat_persistence_stored_total", Help: "Timeline entries stored, by kind.",
		}, []string{"kind"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kchat_persistence_duplicates_total",
			Help: "Events stored no entry for: reason redelivered (event id seen before), client_retry (client_msg_id seen before) already_deleted (a delete of a deleted message, or a reaction to one) or reaction_unchanged (a reaction toggled to the state it was in).",
		}, []string{"reason"}),
	}
	// Pre-create the label values so that dashboards see zeros rather than gaps.
	for _, r := range []string{"redelivered", "client_retry", "already_deleted", "reaction_unchanged"} {
		m.duplicates.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.batchSize, m.batchTime, m.stored, m.duplicates)
	}
	return m
}

func (m *Metrics) observe(size int, res result, took time.Duration) {
	if m == nil {
		return
	}
	m.batchSize.Observe(float64(size))
	m.batchTime.Observe(took.Seconds())
	for _, s := range res.stored {
		m.stored.WithLabelValues(s.kind).Inc()
	}
	m.duplicates.WithLabelValues("redelivered").Add(float64(res.redelivered))
	m.duplicates.WithLabelValues("client_retry").Add(float64(res.retried))
	m.duplicates.WithLabelValues("already_deleted").Add(float64(res.alreadyDeleted))
	m.duplicates.WithLabelValues("reaction_unchanged").Add(float64(res.unchanged))
}
