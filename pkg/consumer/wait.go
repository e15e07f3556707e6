package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/kchat/kchat/pkg/backoff"
)

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
	if err := backoff.SleepOr(ctx, d, stopping); !errors.Is(err, backoff.ErrStopped) {
		return err
	}
	return errStopping
}
