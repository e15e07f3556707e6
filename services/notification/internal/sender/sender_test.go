package sender_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kchat/kchat/pkg/notifications"
	"github.com/kchat/kchat/services/notification/internal/sender"
)

// fake records sends; it fails for ids in fail and blocks while gate is open.
type fake struct {
	mu   sync.Mutex
	sent []string
	fail map[string]bool
	gate chan struct{}
}

func (f *fake) Send(ctx context.Context, n notifications.Notification) error {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[n.ID] {
		return errors.New("smtp says no")
	}
	f.sent = append(f.sent, n.ID)
	return nil
}

func (f *fake) count() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.sent) }

func TestDispatcher(t *testing.T) {
	cases := []struct {
		name                                  string
		queue                                 int
		ids                                   []string
		fail                                  map[string]bool
		blocked                               bool // the sender hangs until shutdown
		wantQueued                            int
		wantSent, wantFailures, wantDroppedGE float64
	}{
		{name: "all sent", queue: 10, ids: []string{"a", "b", "c"}, wantQueued: 3, wantSent: 3},
		{name: "failures are counted, not retried", queue: 10, ids: []string{"a", "b"}, fail: map[string]bool{"b": true},
			wantQueued: 2, wantSent: 1, wantFailures: 1},
		// The send in flight at shutdown is cut off by the drain deadline (a failure); the
		// one still queued and the three that did not fit are dropped.
		{name: "a full queue drops instead of blocking", queue: 2, ids: []string{"a", "b", "c", "d", "e"}, blocked: true,
			wantQueued: 2, wantFailures: 1, wantDroppedGE: 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fake{fail: tc.fail}
			if tc.blocked {
				f.gate = make(chan struct{})
			}
			m := sender.NewMetrics(prometheus.NewRegistry())
			d := sender.NewDispatcher(f, sender.DispatcherConfig{QueueSize: tc.queue, Metrics: m,
				DrainTimeout: 200 * time.Millisecond})
			queued := 0
			start := time.Now()
			for _, id := range tc.ids {
				if d.Enqueue(notifications.Notification{ID: id}) {
					queued++
				}
			}
			if time.Since(start) > 100*time.Millisecond {
				t.Error("Enqueue blocked")
			}
			if queued != tc.wantQueued {
				t.Errorf("queued %d, want %d", queued, tc.wantQueued)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = d.Run(ctx); close(done) }()
			if !tc.blocked {
				deadline := time.Now().Add(5 * time.Second)
				for f.count()+int(tc.wantFailures) < len(tc.ids) && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
			}
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after the drain timeout")
			}
			if got := testutil.ToFloat64(m.Sent()); got != tc.wantSent {
				t.Errorf("sent %v, want %v", got, tc.wantSent)
			}
			if got := testutil.ToFloat64(m.Failures()); got != tc.wantFailures {
				t.Errorf("failures %v, want %v", got, tc.wantFailures)
			}
			if got := testutil.ToFloat64(m.Dropped()); got < tc.wantDroppedGE {
				t.Errorf("dropped %v, want at least %v", got, tc.wantDroppedGE)
			}
			if d.Enqueue(notifications.Notification{ID: "late"}) {
				t.Error("Enqueue after Run returned must refuse")
			}
		})
	}
}
