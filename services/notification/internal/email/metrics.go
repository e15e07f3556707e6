package email

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of one attempt to send a digest (the outcome label).
const (
	OutcomeSent      = "sent"      // accepted by the SMTP server and recorded
	OutcomeRetry     = "retry"     // failed transiently; tried again after a backoff
	OutcomeFailed    = "failed"    // refused permanently, or too many attempts: given up
	OutcomeCancelled = "cancelled" // e-mail was switched off, or nothing left to say
)

// Metrics counts what the worker did. A nil *Metrics counts nothing.
type Metrics struct {
	attempts *prometheus.CounterVec
	planned  prometheus.Counter
	items    prometheus.Counter
	dbErrors prometheus.Counter
	send     prometheus.Histogram
}

// NewMetrics registers the e-mail metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kchat_notification_email_digests_total",
			Help: "Attempts to send an e-mail digest, by outcome (sent, retry, failed, cancelled)."}, []string{"outcome"}),
		planned: prometheus.NewCounter(prometheus.CounterOpts{Name: "kchat_notification_email_digests_planned_total",
			Help: "E-mail digests planned (each is then sent at least once, or given up)."}),
		items: prometheus.NewCounter(prometheus.CounterOpts{Name: "kchat_notification_email_notifications_total",
			Help: "Notifications covered by planned e-mail digests."}),
		dbErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "kchat_notification_email_db_errors_total",
			Help: "E-mail worker scans or updates that failed on PostgreSQL (retried)."}),
		send: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kchat_notification_email_send_seconds",
			Help: "Time of one SMTP conversation, failures included.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
	}
	// Pre-create the outcomes so that dashboards and alerts see zeros rather than gaps.
	for _, o := range []string{OutcomeSent, OutcomeRetry, OutcomeFailed, OutcomeCancelled} {
		m.attempts.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.planned, m.items, m.dbErrors, m.send)
	}
	return m
}

// Outcome returns the counter of attempts with outcome.
func (m *Metrics) Outcome(outcome string) prometheus.Counter {
	return m.attempts.WithLabelValues(outcome)
}

// DBErrors returns the counter of failed PostgreSQL scans and updates.
func (m *Metrics) DBErrors() prometheus.Counter { return m.dbErrors }

func (m *Metrics) outcome(o string) {
	if m != nil {
		m.attempts.WithLabelValues(o).Inc()
	}
}

func (m *Metrics) plannedDigest(items int) {
	if m != nil {
		m.planned.Inc()
		m.items.Add(float64(items))
	}
}

func (m *Metrics) dbError() {
	if m != nil {
		m.dbErrors.Inc()
	}
}

func (m *Metrics) sendTook(seconds float64) {
	if m != nil {
		m.send.Observe(seconds)
	}
}
