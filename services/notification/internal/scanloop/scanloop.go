// Package scanloop runs the outside channels' workers (e-mail digests, Web Push): each
// reads what is due from PostgreSQL in a scan, and scans again when the next item falls
// due, when the consumer has committed something new, or at the latest after Rescan. The
// consumer only nudges; it never waits for a channel.
package scanloop

import (
	"context"
	"time"

	"github.com/kchat/kchat/pkg/backoff"
)

// Loop schedules scans. Nudges arriving in a burst (one per committed notification)
// collapse into one scan no sooner than MinGap after the previous one.
type Loop struct {
	// Scan does one pass and returns how long until something is due next.
	Scan   func(ctx context.Context) (time.Duration, error)
	MinGap time.Duration
	Rescan time.Duration
	// OnError is told of a failed scan and when the next is tried (a backoff from one
	// second up to Rescan).
	OnError func(err error, retryIn time.Duration)

	nudge chan struct{}
}

// New returns a loop; Nudge may be called before Run.
func New(l Loop) *Loop {
	l.nudge = make(chan struct{}, 1)
	return &l
}

// Nudge asks for a scan. It never blocks: a nudge already pending covers this one.
func (l *Loop) Nudge() {
	select {
	case l.nudge <- struct{}{}:
	default:
	}
}

// Run scans at once, then whenever due, until ctx ends; it returns nil then, after the
// scan in progress (which sees ctx end) has returned.
func (l *Loop) Run(ctx context.Context) error {
	retry := backoff.New(time.Second, l.Rescan)
	timer := time.NewTimer(0)
	defer timer.Stop()
	deadline := time.Now()
	var lastScan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.nudge:
			// Something was committed: scan, but no sooner than MinGap after the last
			// scan, and never later than the scan already planned.
			if at := lastScan.Add(l.MinGap); at.After(time.Now()) {
				if at.Before(deadline) {
					deadline = at
					timer.Reset(time.Until(at))
				}
				continue
			}
		case <-timer.C:
		}
		lastScan = time.Now()
		wait, err := l.Scan(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait = retry.Next()
			if l.OnError != nil {
				l.OnError(err, wait)
			}
		} else {
			retry.Reset()
		}
		wait = max(0, min(wait, l.Rescan))
		deadline = time.Now().Add(wait)
		timer.Reset(wait)
	}
}
