package push

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	webpushgo "github.com/SherClockHolmes/webpush-go"

	"github.com/kchat/kchat/pkg/notifications"
	"github.com/kchat/kchat/services/notification/internal/scanloop"
)

// recordTimeout bounds writing an attempt's outcome, which happens even while shutting
// down: an unrecorded success is sent again.
const recordTimeout = 10 * time.Second

// Worker plans and sends pushes. Run it once per process; several processes may run at
// once: the leases in PostgreSQL keep them from sending the same push together.
type Worker struct {
	cfg   Config
	store store
	loop  *scanloop.Loop
	// subscriber is the VAPID subject as webpush-go wants it: it prefixes "mailto:" to
	// anything that does not start with "https:".
	subscriber string
}

// New returns a worker on db; nothing is sent until Run.
func New(db DB, cfg Config) (*Worker, error) {
	if db == nil {
		return nil, errors.New("push: a database is required")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	w := &Worker{cfg: cfg, store: store{db: db}, subscriber: strings.TrimPrefix(cfg.Keys.Subject, "mailto:")}
	w.loop = scanloop.New(scanloop.Loop{Scan: w.cycle, MinGap: cfg.MinGap, Rescan: cfg.Rescan, OnError: func(err error, retryIn time.Duration) {
		w.cfg.Metrics.dbError()
		w.cfg.Logger.Warn("web push: database error, retrying", "error", err, "retry_in", retryIn)
	}})
	return w, nil
}

// Enqueue tells the worker that n was committed, so that it plans now rather than at the
// next rescan. It never blocks and always reports true; the notification itself is read
// from PostgreSQL. It makes the worker a handler.Dispatcher.
func (w *Worker) Enqueue(notifications.Notification) bool {
	w.loop.Nudge()
	return true
}

// Run plans and sends pushes until ctx ends, then returns nil once the pushes in flight
// are sent and recorded (SendTimeout bounds them). It sleeps until the next push is due,
// a nudge, or Rescan, whichever comes first; PostgreSQL errors are retried with a backoff.
func (w *Worker) Run(ctx context.Context) error {
	w.cfg.Logger.Info("web push on", "subject", w.cfg.Keys.Subject, "ttl", w.cfg.TTL, "concurrency", w.cfg.Concurrency)
	return w.loop.Run(ctx)
}

// cycle plans, sends every due push with Concurrency senders, and returns how long until
// the next is due (Rescan when none is).
func (w *Worker) cycle(ctx context.Context) (time.Duration, error) {
	n, err := w.store.plan(ctx, w.cfg.TTL)
	if err != nil {
		return 0, err
	}
	if n > 0 {
		w.cfg.Metrics.plannedN(n)
		w.cfg.Logger.Debug("pushes planned", "count", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, w.cfg.Concurrency)
	for range w.cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, ok, err := w.store.claim(ctx, w.cfg.Lease)
				if err != nil {
					errs <- err
					return
				}
				if !ok {
					return
				}
				w.send(ctx, c)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	wait := w.cfg.Rescan
	if next, ok, err := w.store.nextAttempt(ctx); err != nil {
		return 0, err
	} else if ok {
		wait = min(wait, next)
	}
	return wait, nil
}

// send makes one attempt at a claimed push and records its outcome. The request and the
// record outlive ctx (bounded by SendTimeout and recordTimeout): a shutdown finishes the
// attempt in hand rather than leave an accepted push unrecorded. What fails to be
// recorded is sent again once the lease expires, with the same notification id.
func (w *Worker) send(ctx context.Context, c claimed) {
	log := w.cfg.Logger.With("notification_id", c.notificationID, "subscription_id", c.subscriptionID, "attempt", c.attempts)
	// Each database step gets its own recordTimeout, counted from when it starts: one
	// deadline for all of them would expire during a send longer than recordTimeout
	// and leave an accepted send unrecorded, to be sent again when its lease expires.
	dbCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	}
	record := func(outcome string, retryIn time.Duration, cause error) {
		rctx, cancel := dbCtx()
		defer cancel()
		if err := w.store.settle(rctx, c, outcome, retryIn, cause); err != nil {
			w.cfg.Metrics.dbError()
			log.Warn("web push: cannot record the outcome; it is retried when its lease expires", "outcome", outcome, "error", err)
			return
		}
		w.cfg.Metrics.outcome(outcome)
	}

	lctx, cancelLoad := dbCtx()
	d, ok, err := w.store.load(lctx, c)
	cancelLoad()
	if err != nil {
		w.cfg.Metrics.dbError()
		log.Warn("web push: cannot read the push; retried when its lease expires", "error", err)
		return
	}
	if !ok {
		return // its subscription was removed meanwhile
	}
	if d.Read || d.Age > w.cfg.TTL {
		log.Debug("web push cancelled", "read", d.Read, "age", d.Age)
		record(OutcomeCancelled, 0, nil)
		return
	}
	body, err := d.Message.payload()
	if err != nil {
		record(OutcomeFailed, 0, err)
		return
	}
	sctx, cancelSend := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.SendTimeout)
	start := time.Now()
	res, err := webpushgo.SendNotificationWithContext(sctx, body,
		&webpushgo.Subscription{Endpoint: d.Endpoint, Keys: webpushgo.Keys{P256dh: d.P256dh, Auth: d.Auth}},
		&webpushgo.Options{
			HTTPClient: w.cfg.HTTPClient, Subscriber: w.subscriber,
			VAPIDPublicKey: w.cfg.Keys.Public, VAPIDPrivateKey: w.cfg.Keys.Private,
			TTL: int(w.cfg.TTL / time.Second), Topic: Topic(d.ID), Urgency: webpushgo.Urgency(urgency(d.Reason)),
		})
	status, retryAfter := 0, time.Duration(0)
	if err == nil {
		status = res.StatusCode
		retryAfter = parseRetryAfter(res.Header.Get("Retry-After"))
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
		res.Body.Close()
	}
	cancelSend()
	w.cfg.Metrics.sendTook(time.Since(start).Seconds())

	outcome := classify(status)
	if err != nil {
		outcome = OutcomeRetry // no answer: the push service may be down or slow
	} else if outcome != OutcomeSent {
		err = fmt.Errorf("push service answered %d", status)
	}
	switch outcome {
	case OutcomeSent:
		log.Debug("web push sent", "status", status)
		record(OutcomeSent, 0, nil)
	case OutcomeRemoved:
		log.Info("web push subscription gone; removed", "status", status)
		record(OutcomeRemoved, 0, nil)
	case OutcomeRetry:
		if c.attempts >= w.cfg.MaxAttempts {
			log.Warn("web push given up", "error", err, "attempts", c.attempts)
			record(OutcomeFailed, 0, err)
			return
		}
		retryIn := max(w.cfg.Retry.Delay(c.attempts-1), retryAfter)
		log.Warn("web push not sent; retrying", "error", err, "retry_in", retryIn)
		record(OutcomeRetry, retryIn, err)
	default:
		log.Warn("web push refused; given up", "error", err)
		record(OutcomeFailed, 0, err)
	}
}

// classify maps a push service's answer to an outcome (RFC 8030 §5, §7.3, §8.4).
func classify(status int) string {
	switch {
	case status >= 200 && status < 300:
		return OutcomeSent
	case status == http.StatusNotFound || status == http.StatusGone:
		return OutcomeRemoved
	case status == http.StatusTooManyRequests || status >= 500:
		return OutcomeRetry
	default: // 400 malformed, 401/403 VAPID refused, 413 too large: sending again is refused again
		return OutcomeFailed
	}
}

// parseRetryAfter reads delay-seconds (a date is rare from push services and ignored).
func parseRetryAfter(v string) time.Duration {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return min(time.Duration(n)*time.Second, time.Hour)
	}
	return 0
}
