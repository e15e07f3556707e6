package consumer

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// backoff is exponential backoff with jitter, the one wait policy of this package (Retry,
// dead-letter writes, the runner's own retries). The n-th wait is drawn uniformly from
// [d/2, d], d = min(initial·2ⁿ, max): consumers that failed together (a database restart)
// spread out instead of retrying in lockstep, and no wait is shorter than half its step.
type backoff struct {
	initial, max time.Duration
	step         time.Duration
}

func newBackoff(initial, max time.Duration) *backoff {
	return &backoff{initial: initial, max: max}
}

// next returns the next wait.
func (b *backoff) next() time.Duration {
	if b.step == 0 {
		b.step = b.initial
	} else {
		b.step = min(b.step*2, b.max)
	}
	half := b.step / 2
	return half + rand.N(b.step-half+1)
}

// errStopping is returned by wait when the runner is shutting down: a transient failure is
// not retried then, its message is left uncommitted and redelivered after the restart.
var errStopping = errors.New("consumer is stopping")

type stoppingKey struct{}

// withStopping marks ctx (the context handlers run in, which outlives the shutdown signal
// so that work in hand can finish) with the shutdown signal, for wait.
func withStopping(ctx context.Context, stopping <-chan struct{}) context.Context {
	return context.WithValue(ctx, stoppingKey{}, stopping)
}

// wait sleeps for d, or returns early with ctx's error or errStopping.
func wait(ctx context.Context, d time.Duration) error {
	stopping, _ := ctx.Value(stoppingKey{}).(<-chan struct{})
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stopping:
		return errStopping
	}
}
