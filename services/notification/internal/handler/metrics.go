package handler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kchat/kchat/pkg/event"
)

// Metrics counts what the handler did. A nil *Metrics counts nothing.
type Metrics struct {
	created    *prometheus.CounterVec
	duplicates *prometheus.CounterVec
	online     prometheus.Counter
	batch      prometheus.Histogram
}

// Values of the duplicates metric's kind label.
const (
	DuplicateEvent        = "event"        // an event id already in the inbox (a redelivery)
	DuplicateNotification = "notification" // a (user, room, seq, reason) already notified
)

// NewMetrics registers the handler metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		created: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kchat_notification_created_total",
			Help: "Notifications created, by reason."}, []string{"reason"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kchat_notification_duplicates_skipped_total",
			Help: "Redelivered events and already existing notifications skipped, by kind."}, []string{"kind"}),
		online: prometheus.NewCounter(prometheus.CounterOpts{Name: "kchat_notification_skipped_online_total",
			Help: "Recipients not notified because they were online."}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kchat_notification_batch_seconds",
			Help: "Time to handle one batch, transaction included.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	// Pre-create the label values so that dashboards show zeros rather than gaps.
	for _, r := range []string{event.ReasonDM, event.ReasonMention, event.ReasonThread, event.ReasonRoom} {
		m.created.WithLabelValues(r)
	}
	m.duplicates.WithLabelValues(DuplicateEvent)
	m.duplicates.WithLabelValues(DuplicateNotification)
	if reg != nil {
		reg.MustRegister(m.created, m.duplicates, m.online, m.batch)
	}
	return m
}

// Created returns the counter of notifications created for reason.
func (m *Metrics) Created(reason string) prometheus.Counter { return m.created.WithLabelValues(reason) }

// Duplicates returns the counter of duplicates skipped of kind.
func (m *Metrics) Duplicates(kind string) prometheus.Counter {
	return m.duplicates.WithLabelValues(kind)
}

// SkippedOnline returns the counter of recipients skipped because they were online.
func (m *Metrics) SkippedOnline() prometheus.Counter { return m.online }

func (m *Metrics) observe(res result, took time.Duration) {
	if m == nil {
		return
	}
	for _, n := range res.created {
		m.created.WithLabelValues(n.Reason).Inc()
	}
	m.duplicates.WithLabelValues(DuplicateEvent).Add(float64(res.redelivered))
	m.duplicates.WithLabelValues(DuplicateNotification).Add(float64(res.existing))
	m.online.Add(float64(res.suppressedOnline))
	m.batch.Observe(took.Seconds())
}
