// Package backoff is the one retry-wait policy of kchat: exponential growth from an
// initial delay up to a cap, with jitter so that callers that failed together (a broker
// restart, a gateway going away) spread out instead of retrying in lockstep, and a wait
// that ends early with its context.
//
// A Backoff is a sequence of waits for one retry loop and is not safe for concurrent use;
// Policy.Delay is stateless and safe anywhere.
package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Jitter says how a step d is turned into a wait.
type Jitter int

const (
	// Equal draws the wait uniformly from [d/2, d]: spread out, yet never shorter than
	// half the step. The default.
	Equal Jitter = iota
	// Full draws the wait uniformly from [0, d] (the widest spread).
	Full
	// None waits exactly d (for tests and deterministic tools).
	None
)

// Defaults for a zero Policy.
const (
	DefaultInitial = 100 * time.Millisecond
	DefaultMax     = 10 * time.Second
)

// Policy describes the waits: the n-th step (from 0) is min(Initial·2ⁿ, Max), jittered.
// Zero fields take the defaults (Initial 100ms, Max 10s, Equal jitter); a Max below
// Initial is raised to Initial.
type Policy struct {
	Initial time.Duration
	Max     time.Duration
	Jitter  Jitter
}

func (p Policy) withDefaults() Policy {
	if p.Initial <= 0 {
		p.Initial = DefaultInitial
	}
	if p.Max <= 0 {
		p.Max = max(DefaultMax, p.Initial)
	}
	p.Max = max(p.Max, p.Initial)
	return p
}

// Step is the un-jittered step before retry number attempt (from 0): min(Initial·2ⁿ, Max).
func (p Policy) Step(attempt int) time.Duration {
	p = p.withDefaults()
	d := p.Initial
	for i := 0; i < attempt && d < p.Max; i++ {
		d *= 2 // d < Max, so no overflow before the cap
	}
	return min(d, p.Max)
}

// Delay is the jittered wait before retry number attempt (from 0).
func (p Policy) Delay(attempt int) time.Duration {
	return p.jitter(p.Step(attempt))
}

func (p Policy) jitter(d time.Duration) time.Duration {
	switch p.Jitter {
	case Full:
		return rand.N(d + 1)
	case None:
		return d
	default:
		half := d / 2
		return half + rand.N(d-half+1)
	}
}

// Backoff is the sequence of waits of one retry loop.
type Backoff struct {
	p       Policy
	attempt int
}

// New returns a Backoff from initial up to max with equal jitter.
func New(initial, max time.Duration) *Backoff {
	return &Backoff{p: Policy{Initial: initial, Max: max}.withDefaults()}
}

// NewPolicy returns a Backoff following p.
func NewPolicy(p Policy) *Backoff {
	return &Backoff{p: p.withDefaults()}
}

// Next returns the next wait and advances the sequence.
func (b *Backoff) Next() time.Duration {
	d := b.p.Delay(b.attempt)
	b.attempt++
	return d
}

// Reset starts the sequence again from Initial (after a success).
func (b *Backoff) Reset() { b.attempt = 0 }

// Attempts is how many waits Next has returned since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Wait sleeps for the next wait (Next), or returns ctx's error as soon as ctx ends.
func (b *Backoff) Wait(ctx context.Context) error {
	return Sleep(ctx, b.Next())
}

// Sleep waits for d, or returns ctx's error as soon as ctx ends (at once if it has
// already ended, even for d <= 0).
func Sleep(ctx context.Context, d time.Duration) error {
	return SleepOr(ctx, d, nil)
}

// ErrStopped is returned by SleepOr when its stop channel closed first.
var ErrStopped = errors.New("backoff: stopped")

// SleepOr is Sleep that also returns early, with ErrStopped, once stop closes: a shutdown
// signal that must end waits without cancelling ctx (work in hand goes on). A nil stop
// never closes.
func SleepOr(ctx context.Context, d time.Duration, stop <-chan struct{}) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-stop:
		return ErrStopped
	default:
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return ErrStopped
	}
}
