// Package metadata makes a kafka-go Transport forget its cached cluster layout when a
// request shows that layout to be wrong.
//
// kafka-go's Transport looks leaders up in metadata it refreshes only on a timer (a
// random time within MetadataTTL), and a refresh that happened to ask a dead broker leaves
// it with an error until the next one. So after a broker dies or a leader moves, requests
// keep going to the old leader for seconds on top of the failover Kafka itself needs.
// Closing the Transport's idle connections drops that layout: the next request starts
// from fresh metadata. Requests in flight keep their connections.
package metadata

import (
	"sync"
	"time"
)

// Refresher drops a transport's cached layout at most once per interval: during a
// failover every partition of the dead broker fails at once, and one refresh serves all.
type Refresher struct {
	transport interface{ CloseIdleConnections() } // nil: nothing to drop
	interval  time.Duration

	mu   sync.Mutex
	last time.Time
}

// NewRefresher returns a Refresher for transport, which is a kafka-go RoundTripper: one
// without CloseIdleConnections (a test's fake) makes Refresh do nothing.
func NewRefresher(transport any, interval time.Duration) *Refresher {
	t, _ := transport.(interface{ CloseIdleConnections() })
	return &Refresher{transport: t, interval: interval}
}

// Refresh drops the cached layout unless it was dropped less than the interval ago.
func (r *Refresher) Refresh() {
	if r.transport == nil {
		return
	}
	r.mu.Lock()
	if time.Since(r.last) < r.interval {
		r.mu.Unlock()
		return
	}
	r.last = time.Now()
	r.mu.Unlock()
	r.transport.CloseIdleConnections()
}
