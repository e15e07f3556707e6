package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/backoff"
)

const ms = time.Millisecond

func TestPolicy_Step(t *testing.T) {
	tests := []struct {
		name string
		p    backoff.Policy
		want []time.Duration // steps for attempts 0, 1, 2, ...
	}{
		{"doubles up to max", backoff.Policy{Initial: 100 * ms, Max: time.Second},
			[]time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second}},
		{"max not a power of two of initial", backoff.Policy{Initial: 200 * ms, Max: 5 * time.Second},
			[]time.Duration{200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5 * time.Second, 5 * time.Second}},
		{"zero is the default", backoff.Policy{},
			[]time.Duration{backoff.DefaultInitial, 2 * backoff.DefaultInitial}},
		{"max below initial", backoff.Policy{Initial: time.Second, Max: 10 * ms},
			[]time.Duration{time.Second, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for attempt, want := range tt.want {
				if got := tt.p.Step(attempt); got != want {
					t.Errorf("Step(%d) = %s, want %s", attempt, got, want)
				}
			}
		})
	}
}

func TestPolicy_Step_does_not_overflow(t *testing.T) {
	p := backoff.Policy{Initial: time.Second, Max: 24 * time.Hour}
	if got := p.Step(1 << 20); got != 24*time.Hour {
		t.Fatalf("Step(huge) = %s, want the max", got)
	}
}

func TestPolicy_Delay_bounds(t *testing.T) {
	tests := []struct {
		jitter backoff.Jitter
		lo     func(step time.Duration) time.Duration
	}{
		{backoff.Equal, func(d time.Duration) time.Duration { return d / 2 }},
		{backoff.Full, func(time.Duration) time.Duration { return 0 }},
		{backoff.None, func(d time.Duration) time.Duration { return d }},
	}
	for _, tt := range tests {
		p := backoff.Policy{Initial: 10 * ms, Max: 300 * ms, Jitter: tt.jitter}
		for attempt := range 8 {
			step := p.Step(attempt)
			lo, spread := tt.lo(step), map[time.Duration]bool{}
			for range 200 {
				d := p.Delay(attempt)
				if d < lo || d > step {
					t.Fatalf("jitter %d attempt %d: %s outside [%s, %s]", tt.jitter, attempt, d, lo, step)
				}
				spread[d] = true
			}
			if tt.jitter != backoff.None && len(spread) < 2 {
				t.Errorf("jitter %d attempt %d: 200 draws gave one value", tt.jitter, attempt)
			}
		}
	}
}

func TestBackoff_Next_and_Reset(t *testing.T) {
	b := backoff.NewPolicy(backoff.Policy{Initial: 50 * ms, Max: 250 * ms, Jitter: backoff.None})
	for i, want := range []time.Duration{50 * ms, 100 * ms, 200 * ms, 250 * ms, 250 * ms} {
		if got := b.Next(); got != want {
			t.Fatalf("wait %d = %s, want %s", i, got, want)
		}
	}
	if b.Attempts() != 5 {
		t.Fatalf("Attempts = %d, want 5", b.Attempts())
	}
	b.Reset()
	if got := b.Next(); got != 50*ms {
		t.Fatalf("after Reset: %s, want 50ms", got)
	}
}

func TestNew_equal_jitter(t *testing.T) {
	b := backoff.New(100*ms, time.Second)
	for i, step := range []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second} {
		if d := b.Next(); d < step/2 || d > step {
			t.Fatalf("wait %d: %s outside [%s, %s]", i, d, step/2, step)
		}
	}
}

func TestSleep(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		d       time.Duration
		wantErr error
		atMost  time.Duration
	}{
		{"sleeps", context.Background(), 20 * ms, nil, 5 * time.Second},
		{"zero", context.Background(), 0, nil, time.Second},
		{"ended before", cancelled, time.Hour, context.Canceled, time.Second},
		{"ended before, zero wait", cancelled, 0, context.Canceled, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := backoff.Sleep(tt.ctx, tt.d)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			took := time.Since(start)
			if tt.wantErr == nil && took < tt.d {
				t.Fatalf("returned after %s, before %s", took, tt.d)
			}
			if took > tt.atMost {
				t.Fatalf("took %s", took)
			}
		})
	}
}

func TestBackoff_Wait_ends_with_ctx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b := backoff.New(time.Hour, time.Hour)
	done := make(chan error, 1)
	go func() { done <- b.Wait(ctx) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return when ctx ended")
	}
}

func TestBackoff_Wait_deadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*ms)
	defer cancel()
	if err := backoff.New(time.Hour, time.Hour).Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestSleepOr(t *testing.T) {
	closed := make(chan struct{})
	close(closed)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		stop    <-chan struct{}
		d       time.Duration
		wantErr error
	}{
		{"nil stop sleeps", context.Background(), nil, 10 * ms, nil},
		{"open stop sleeps", context.Background(), make(chan struct{}), 10 * ms, nil},
		{"closed stop", context.Background(), closed, time.Hour, backoff.ErrStopped},
		{"closed stop, zero wait", context.Background(), closed, 0, backoff.ErrStopped},
		{"ended ctx wins", cancelled, closed, time.Hour, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := backoff.SleepOr(tt.ctx, tt.d, tt.stop); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestSleepOr_stop_while_waiting(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- backoff.SleepOr(context.Background(), time.Hour, stop) }()
	close(stop)
	select {
	case err := <-done:
		if !errors.Is(err, backoff.ErrStopped) {
			t.Fatalf("err = %v, want ErrStopped", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SleepOr did not return when stop closed")
	}
}
