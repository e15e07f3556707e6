// Package sender hands committed notifications to outside channels (e-mail, push, a
// webhook). Those are best effort: the notification is already in PostgreSQL and on
// chat.notifications when a Sender sees it, so a failure here is logged and counted and
// never holds up the consumer.
package sender

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kchat/kchat/pkg/notifications"
)

// Sender delivers one notification through an outside channel. Implementations must be
// safe for concurrent use when the Dispatcher runs more than one worker.
type Sender interface {
	Send(ctx context.Context, n notifications.Notification) error
}

// Log is a Sender that only logs; it stands in until a real channel exists.
type Log struct {
	Logger *slog.Logger
}

var _ Sender = Log{}

// Send logs n at info level.
func (l Log) Send(ctx context.Context, n notifications.Notification) error {
	l.Logger.InfoContext(ctx, "notification", "notification_id", n.ID, "user", n.UserID, "room_id", n.RoomID,
		"seq", n.Seq, "reason", n.Reason, "sender", n.Sender)
	return nil
}

// Metrics counts what the dispatcher did. A nil *Metrics counts nothing.
type Metrics struct {
	sent, failed, dropped prometheus.Counter
}

// NewMetrics registers the sender metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "kchat_notification_sender_sent_total",
			Help: "Notifications handed to the outside sender successfully."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "kchat_notification_sender_failures_total",
			Help: "Notifications the outside sender failed to deliver (not retried)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "kchat_notification_sender_dropped_total",
			Help: "Notifications not handed to the outside sender because its queue was full or it was stopping."}),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.failed, m.dropped)
	}
	return m
}

// Sent, Failures and Dropped expose the counters (for tests and dashboards in-process).
func (m *Metrics) Sent() prometheus.Counter     { return m.sent }
func (m *Metrics) Failures() prometheus.Counter { return m.failed }
func (m *Metrics) Dropped() prometheus.Counter  { return m.dropped }

func (m *Metrics) inc(c func(*Metrics) prometheus.Counter) {
	if m != nil {
		c(m).Inc()
	}
}

// DispatcherConfig configures a Dispatcher. Zero values mean the defaults given on each field.
type DispatcherConfig struct {
	QueueSize   int           // default 1024
	Workers     int           // default 1
	SendTimeout time.Duration // bounds one Send (default 10s)
	// DrainTimeout bounds sending what is queued once Run's context ends (default 5s).
	DrainTimeout time.Duration
	Logger       *slog.Logger
	Metrics      *Metrics
}

// Dispatcher runs a Sender off the consumer's path: Enqueue never blocks, and a full queue
// drops (and counts) rather than slowing the consumer down.
type Dispatcher struct {
	s     Sender
	cfg   DispatcherConfig
	queue chan notifications.Notification

	mu      sync.RWMutex
	stopped bool
}

// NewDispatcher returns a dispatcher for s; nothing is sent until Run.
func NewDispatcher(s Sender, cfg DispatcherConfig) *Dispatcher {
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 10 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{s: s, cfg: cfg, queue: make(chan notifications.Notification, cfg.QueueSize)}
}

// Enqueue queues n for sending and reports whether it was queued. It never blocks.
func (d *Dispatcher) Enqueue(n notifications.Notification) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if !d.stopped {
		select {
		case d.queue <- n:
			return true
		default:
		}
	}
	d.cfg.Metrics.inc(func(m *Metrics) prometheus.Counter { return m.dropped })
	d.cfg.Logger.Warn("outside sender queue full; notification not sent outside", "notification_id", n.ID, "user", n.UserID)
	return false
}

// Run sends queued notifications until ctx ends, then for at most DrainTimeout sends what
// is still queued, and returns nil.
func (d *Dispatcher) Run(ctx context.Context) error {
	drain, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		d.mu.Lock()
		d.stopped = true
		close(d.queue) // no Enqueue can run now: they hold the read lock while sending
		d.mu.Unlock()
		time.AfterFunc(d.cfg.DrainTimeout, cancel)
	})
	defer stop()
	var wg sync.WaitGroup
	for range d.cfg.Workers {
		wg.Go(func() {
			for n := range d.queue {
				if drain.Err() != nil {
					d.cfg.Metrics.inc(func(m *Metrics) prometheus.Counter { return m.dropped })
					continue
				}
				d.send(drain, n)
			}
		})
	}
	wg.Wait()
	return nil
}

func (d *Dispatcher) send(ctx context.Context, n notifications.Notification) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
	defer cancel()
	if err := d.s.Send(ctx, n); err != nil {
		d.cfg.Metrics.inc(func(m *Metrics) prometheus.Counter { return m.failed })
		d.cfg.Logger.Warn("outside sender failed", "notification_id", n.ID, "user", n.UserID, "error", err)
		return
	}
	d.cfg.Metrics.inc(func(m *Metrics) prometheus.Counter { return m.sent })
}
