package push

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of one attempt to push a notification to a device (the outcome label).
const (
	OutcomeSent      = "sent"      // accepted by the push service and recorded
	OutcomeRetry     = "retry"     // 429, 5xx or no answer; tried again after a backoff
	OutcomeFailed    = "failed"    // refused for good (other 4xx), or too many attempts: given up
	OutcomeRemoved   = "removed"   // the push service says the subscription is gone (404, 410): deleted
	OutcomeCancelled = "cancelled" // read, or older than the TTL, before it went out
)

// Metrics counts what the worker did, named like the e-mail worker's
// (kchat_notification_<channel>_...). A nil *Metrics counts nothing.
type Metrics struct {
	attempts *prometheus.CounterVec
	planned  prometheus.Counter
	dbErrors prometheus.Counter
	send     prometheus.Histogram
}

// NewMetrics registers the push metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kchat_notification_push_deliveries_total",
			Help: "Attempts to push a notification to a device, by outcome (sent, retry, failed, removed, cancelled)."}, []string{"outcome"}),
		planned: prometheus.NewCounter(prometheus.CounterOpts{Name: "kchat_notification_push_deliveries_planned_total",
			Help: "Pushes planned, one per notification and device (each is then sent at least once, or given up)."}),
		dbErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "kchat_notification_push_db_errors_total",
			Help: "Push worker scans or updates that failed on PostgreSQL (retried)."}),
		send: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kchat_notification_push_send_seconds",
			Help: "Time of one request to a push service, failures included.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	for _, o := range []string{OutcomeSent, OutcomeRetry, OutcomeFailed, OutcomeRemoved, OutcomeCancelled} {
		m.attempts.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.planned, m.dbErrors, m.send)
	}
	return m
}

// Outcome returns the counter of attempts with outcome.
func (m *Metrics) Outcome(outcome string) prometheus.Counter {
	return m.attempts.WithLabelValues(outcome)
}

// Planned returns the counter of planned deliveries.
func (m *Metrics) Planned() prometheus.Counter { return m.planned }

func (m *Metrics) outcome(o string) {
	if m != nil {
		m.attempts.WithLabelValues(o).Inc()
	}
}

func (m *Metrics) plannedN(n int) {
	if m != nil {
		m.planned.Add(float64(n))
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
