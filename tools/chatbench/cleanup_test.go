package main

import (
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

// The outbox-cleanup figure counts only rows whose insert was due while the Cleaner
// deleted, and splits each row's latency at its commit; records of another phase or
// malformed ones are ignored.
func TestCleanupRig_records_and_window(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ph := &relayPhase{id: 7, commits: make([]atomic.Int64, 3)}
	r := &cleanupRig{padding: "pp"}
	r.cur.Store(ph)
	for i := range 3 {
		due := t0.Add(time.Duration(i) * time.Second)
		ph.commits[i].Store(due.Add(2 * time.Millisecond).UnixNano())
		r.onRecord(fmt.Appendf(nil, "%d|7|%d|pp", due.UnixNano(), i), due.Add(10*time.Millisecond*time.Duration(i+1)))
	}
	r.onRecord(fmt.Appendf(nil, "%d|6|0|pp", t0.UnixNano()), t0) // an earlier phase
	r.onRecord([]byte("garbage"), t0)
	r.onRecord(fmt.Appendf(nil, "%d|7|9|pp", t0.UnixNano()), t0) // no such row
	if got := ph.received(); got != 3 {
		t.Fatalf("received %d samples, want 3", got)
	}
	all := latency(time.Time{}, time.Time{}, ph)
	// HdrHistogram keeps 3 significant digits: compare to within 0.1 ms.
	near := func(got, want float64) bool { return math.Abs(got-want) < 0.1 }
	if all.Total.Count != 3 || !near(all.Total.MaxMs, 30) {
		t.Errorf("whole phase: count %d, max %v ms; want 3, 30", all.Total.Count, all.Total.MaxMs)
	}
	// Window [t0+0.5s, t0+1.5s): only row 1 (due t0+1s, fetched 20 ms later).
	w := latency(t0.Add(500*time.Millisecond), t0.Add(1500*time.Millisecond), ph)
	if w.Total.Count != 1 || !near(w.Total.MaxMs, 20) || !near(w.Insert.MaxMs, 2) || !near(w.Relay.MaxMs, 18) {
		t.Errorf("window: count %d, total %v, insert %v, relay %v ms; want 1, 20, 2, 18",
			w.Total.Count, w.Total.MaxMs, w.Insert.MaxMs, w.Relay.MaxMs)
	}
}
