package email

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/kchat/kchat/pkg/notifications"
	"github.com/kchat/kchat/services/notification/internal/scanloop"
)

// scanLimit is how many due users one scan plans; more are planned by the next scan,
// which follows at once.
const scanLimit = 100

// recordTimeout bounds writing an attempt's outcome, which happens even while shutting
// down: an unrecorded success is sent again.
const recordTimeout = 10 * time.Second

// Worker plans and sends e-mail digests. Run it once per process; several processes
// (instances of the service) may run at once: the row locks and leases in PostgreSQL keep
// them from planning or sending the same digest together.
type Worker struct {
	cfg    Config
	store  store
	links  links
	domain string
	loop   *scanloop.Loop
}

// New returns a worker on db; nothing is sent until Run.
func New(db DB, cfg Config) (*Worker, error) {
	if db == nil {
		return nil, errors.New("email: a database is required")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	domain, _ := fromDomain(cfg.From) // Validate checked it
	base, _ := url.Parse(cfg.BaseURL)
	if cfg.Mailer == nil {
		m, err := NewSMTPMailer(cfg.SMTP, cfg.SendTimeout)
		if err != nil {
			return nil, fmt.Errorf("email: %w", err)
		}
		cfg.Mailer = m
	}
	w := &Worker{cfg: cfg, store: store{db: db}, links: links{base: base, key: cfg.TokenKey}, domain: domain}
	w.loop = scanloop.New(scanloop.Loop{Scan: w.cycle, MinGap: cfg.MinGap, Rescan: cfg.Rescan, OnError: func(err error, retryIn time.Duration) {
		w.cfg.Metrics.dbError()
		w.cfg.Logger.Warn("e-mail digests: database error, retrying", "error", err, "retry_in", retryIn)
	}})
	return w, nil
}

// Enqueue tells the worker that n was committed, so that it works out the digest's due
// time now rather than at the next rescan. It never blocks (a wake-up already pending
// covers this one) and always reports true; the notification itself is read from
// PostgreSQL. It makes the worker a handler.Dispatcher.
func (w *Worker) Enqueue(notifications.Notification) bool {
	w.Nudge()
	return true
}

// Nudge wakes the worker to scan (not sooner than MinGap after its last scan). It never
// blocks.
func (w *Worker) Nudge() { w.loop.Nudge() }

// Run plans and sends digests until ctx ends, then returns nil once the digest in flight,
// if any, is sent and recorded (SendTimeout bounds it). It sleeps until the next digest is
// due, a Nudge, or Rescan, whichever comes first; PostgreSQL errors are retried with a
// backoff.
func (w *Worker) Run(ctx context.Context) error {
	w.cfg.Logger.Info("e-mail digests on", "smtp_host", w.cfg.SMTP.Host, "smtp_port", w.cfg.SMTP.Port, "tls", w.cfg.SMTP.TLS,
		"from", w.cfg.From)
	return w.loop.Run(ctx)
}

// cycle plans every due digest, sends every due one, and returns how long until the next
// is due (Rescan when nothing is).
func (w *Worker) cycle(ctx context.Context) (time.Duration, error) {
	for {
		users, err := w.store.dueUsers(ctx, scanLimit)
		if err != nil {
			return 0, err
		}
		planned := 0
		for _, u := range users {
			if u.wait > 0 {
				break // sorted: the rest are not due either
			}
			id, n, err := w.store.plan(ctx, u.userID, w.cfg.MaxItems)
			if err != nil {
				return 0, err
			}
			if id != "" {
				planned++
				w.cfg.Metrics.plannedDigest(n)
				w.cfg.Logger.Debug("e-mail digest planned", "digest_id", id, "user", u.userID, "notifications", n)
			}
		}
		if planned == 0 || len(users) < scanLimit {
			break
		}
	}
	for ctx.Err() == nil {
		c, ok, err := w.store.claim(ctx, w.cfg.Lease)
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		w.send(ctx, c)
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	wait := w.cfg.Rescan
	if users, err := w.store.dueUsers(ctx, 1); err != nil {
		return 0, err
	} else if len(users) > 0 {
		wait = min(wait, users[0].wait)
	}
	if next, ok, err := w.store.nextAttempt(ctx); err != nil {
		return 0, err
	} else if ok {
		wait = min(wait, next)
	}
	return wait, nil
}

// send makes one attempt at a claimed digest and records its outcome. The SMTP
// conversation and the record outlive ctx (bounded by SendTimeout and recordTimeout): a
// shutdown finishes the attempt in hand rather than leave an accepted e-mail unrecorded.
// Whatever fails to be recorded is retried once the lease expires, with the same
// Message-ID.
func (w *Worker) send(ctx context.Context, c claimed) {
	log := w.cfg.Logger.With("digest_id", c.id, "user", c.userID, "attempt", c.attempts)
	// Each database step gets its own recordTimeout, counted from when it starts: one
	// deadline for all of them would expire during a send longer than recordTimeout
	// and leave an accepted send unrecorded, to be sent again when its lease expires.
	dbCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	}
	record := func(outcome string, retryIn time.Duration, cause error) {
		rctx, cancel := dbCtx()
		defer cancel()
		if err := w.store.settle(rctx, c.id, outcome, retryIn, cause); err != nil {
			w.cfg.Metrics.dbError()
			log.Warn("e-mail digest: cannot record the outcome; it is retried when its lease expires",
				"outcome", outcome, "error", err)
			return
		}
		w.cfg.Metrics.outcome(outcome)
	}

	lctx, cancelLoad := dbCtx()
	d, enabled, err := w.store.load(lctx, c.id)
	cancelLoad()
	if err != nil {
		w.cfg.Metrics.dbError()
		log.Warn("e-mail digest: cannot read it; retried when its lease expires", "error", err)
		return
	}
	if !enabled || d.Address == "" || len(d.Items) == 0 {
		// Switched off since it was planned (the unsubscribe link was followed), or its
		// notifications are gone with their room: nothing to send.
		log.Info("e-mail digest cancelled", "enabled", enabled, "notifications", len(d.Items))
		record(OutcomeCancelled, 0, nil)
		return
	}
	msg, err := build(d, w.cfg.From, w.domain, w.links)
	if err != nil {
		log.Warn("e-mail digest cannot be built; given up", "error", err)
		record(OutcomeFailed, 0, err)
		return
	}
	sctx, cancelSend := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.SendTimeout)
	start := time.Now()
	err = w.cfg.Mailer.Send(sctx, msg)
	cancelSend()
	w.cfg.Metrics.sendTook(time.Since(start).Seconds())
	switch {
	case err == nil:
		log.Info("e-mail digest sent", "notifications", len(d.Items))
		record(OutcomeSent, 0, nil)
	case Permanent(err) || c.attempts >= w.cfg.MaxAttempts:
		log.Warn("e-mail digest given up", "error", err, "permanent", Permanent(err))
		record(OutcomeFailed, 0, err)
	default:
		retryIn := w.cfg.Retry.Delay(c.attempts - 1)
		log.Warn("e-mail digest not sent; retrying", "error", err, "retry_in", retryIn)
		record(OutcomeRetry, retryIn, err)
	}
}
