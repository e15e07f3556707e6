package metadata

import (
	"testing"
	"time"
)

type countingTransport struct{ closes int }

func (c *countingTransport) CloseIdleConnections() { c.closes++ }

func TestRefresher(t *testing.T) {
	tests := []struct {
		name      string
		interval  time.Duration
		calls     int
		wantDrops int
	}{
		{"a burst of failures drops the layout once", time.Hour, 12, 1},
		{"no interval: every failure drops it", 0, 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := &countingTransport{}
			r := NewRefresher(tr, tc.interval)
			for range tc.calls {
				r.Refresh()
			}
			if tr.closes != tc.wantDrops {
				t.Fatalf("%d drops, want %d", tr.closes, tc.wantDrops)
			}
		})
	}
}

func TestRefresher_transport_without_connections(t *testing.T) {
	NewRefresher(struct{}{}, 0).Refresh() // must not panic: a fake RoundTripper has nothing to drop
}
