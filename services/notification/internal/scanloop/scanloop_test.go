package scanloop_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kchat/kchat/services/notification/internal/scanloop"
)

// A nudge scans at once when the last scan is older than MinGap; a burst of nudges
// inside MinGap is one scan at the end of the gap, not one per nudge.
func TestLoop_nudges_collapse_into_one_scan_per_gap(t *testing.T) {
	scans := make(chan time.Time, 100)
	l := scanloop.New(scanloop.Loop{
		Scan:   func(context.Context) (time.Duration, error) { scans <- time.Now(); return time.Hour, nil },
		MinGap: 200 * time.Millisecond, Rescan: time.Hour,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	first := <-scans // Run scans once at start
	for range 50 {
		l.Nudge()
	}
	second := <-scans
	if gap := second.Sub(first); gap < 200*time.Millisecond {
		t.Errorf("second scan %s after the first, want at least MinGap", gap)
	}
	time.Sleep(300 * time.Millisecond) // a window in which no extra scan may appear
	if n := len(scans); n != 0 {
		t.Errorf("%d more scans after a burst of nudges, want them collapsed into one", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// A failed scan is reported and retried on its own, without a nudge.
func TestLoop_retries_a_failed_scan(t *testing.T) {
	var calls atomic.Int32
	scanned := make(chan struct{})
	reported := make(chan time.Duration, 10)
	l := scanloop.New(scanloop.Loop{
		Scan: func(context.Context) (time.Duration, error) {
			if calls.Add(1) == 1 {
				return 0, errors.New("database down")
			}
			close(scanned)
			return time.Hour, nil
		},
		MinGap: time.Millisecond, Rescan: time.Hour,
		OnError: func(_ error, retryIn time.Duration) { reported <- retryIn },
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = l.Run(ctx) }()
	select {
	case <-scanned:
	case <-time.After(10 * time.Second):
		t.Fatal("the failed scan was not retried")
	}
	if in := <-reported; in <= 0 || in > 2*time.Second {
		t.Errorf("retry announced in %s, want a backoff starting near one second", in)
	}
}
