package routing

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// clock is a settable Now for tables under test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func subAt(t *testing.T, tab *Table, gw, room string, subscribed bool, at time.Time) {
	t.Helper()
	tab.setRecord(gw, room, &subRecord{subscribed: subscribed, at: at})
}

func TestTable_routesExpireWithHeartbeats(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	c := &clock{now: start}
	tab := NewTableWith(TableConfig{Expiry: 30 * time.Second, Now: c.Now})
	run1 := start.Add(-time.Minute)

	tab.Heartbeat("gw-a", start, run1)
	subAt(t, tab, "gw-a", "r1", true, run1.Add(time.Second))
	subAt(t, tab, "gw-a", "r2", true, run1.Add(time.Second))
	tab.Set("gw-x", "r1", true) // never heartbeats: keeps its routes
	if got := tab.Gateways("r1"); !slices.Equal(got, []string{"gw-a", "gw-x"}) {
		t.Fatalf("r1 = %v", got)
	}

	// Within the expiry nothing changes; past it, gw-a's routes go, gw-x's stay.
	c.add(30 * time.Second)
	if got := tab.Expire(); got != nil {
		t.Fatalf("expired at the limit: %v", got)
	}
	c.add(time.Millisecond)
	if got := tab.Expire(); !slices.Equal(got, []string{"gw-a"}) {
		t.Fatalf("Expire = %v", got)
	}
	if got := tab.Gateways("r1"); !slices.Equal(got, []string{"gw-x"}) {
		t.Fatalf("r1 after expiry = %v", got)
	}
	if st := tab.Stats(); st.Subscriptions != 1 || st.GatewaysDown != 1 || st.Keys != 3 {
		t.Fatalf("stats after expiry %+v", st)
	}
	// Not stale before the grace; then every key of gw-a.
	if got := tab.Stale(10 * time.Second); len(got) != 0 {
		t.Fatalf("stale before grace: %v", got)
	}
	c.add(10 * time.Second)
	if got := tab.Stale(10 * time.Second); !slices.Equal(got, []Key{{"gw-a", "r1"}, {"gw-a", "r2"}}) {
		t.Fatalf("Stale = %v", got)
	}

	// The same run heartbeats again (a stall, not a crash): its routes come back.
	tab.Heartbeat("gw-a", c.Now(), run1)
	if got := tab.Gateways("r2"); !slices.Equal(got, []string{"gw-a"}) {
		t.Fatalf("r2 after the heartbeat came back = %v", got)
	}

	// A new run under the same id: the previous run's routes stop at once; what the new
	// run announces routes; the old keys are stale once the new run was seen for the grace.
	run2 := c.Now()
	tab.Heartbeat("gw-a", run2, run2)
	if got := tab.Gateways("r1"); !slices.Equal(got, []string{"gw-x"}) {
		t.Fatalf("r1 after restart = %v", got)
	}
	subAt(t, tab, "gw-a", "r2", true, run2.Add(time.Millisecond))
	if got := tab.Gateways("r2"); !slices.Equal(got, []string{"gw-a"}) {
		t.Fatalf("r2 re-announced by the new run = %v", got)
	}
	if got := tab.Stale(time.Second); len(got) != 0 {
		t.Fatalf("stale within the new run's grace: %v", got)
	}
	c.add(time.Second)
	if got := tab.Stale(time.Second); !slices.Equal(got, []Key{{"gw-a", "r1"}}) {
		t.Fatalf("Stale after restart = %v", got)
	}
	// The tombstone read back removes the key for good.
	if _, _, err := tab.Apply([]byte("gw-a/r1"), nil); err != nil {
		t.Fatal(err)
	}
	if got := tab.Stale(time.Second); len(got) != 0 {
		t.Fatalf("Stale after the tombstone = %v", got)
	}

	// A clean stop (heartbeat tombstone) drops the routes at once.
	if n, err := tab.ApplyPresence([]byte("gw/gw-a"), nil); err != nil || n != 1 {
		t.Fatalf("ApplyPresence(tombstone) = %d, %v", n, err)
	}
	if got := tab.Gateways("r2"); len(got) != 0 {
		t.Fatalf("r2 after clean stop = %v", got)
	}
	// Users' presence records are ignored.
	if n, err := tab.ApplyPresence([]byte("alice@gw-a"), []byte("{}")); err != nil || n != 0 {
		t.Fatalf("ApplyPresence(user) = %d, %v", n, err)
	}
	if st := tab.Stats(); st.Subscriptions != 1 || st.Gateways != 1 {
		t.Fatalf("final stats %+v", st)
	}
}

// TestTable_replayOrder: a dead gateway's records replayed before or after its (old)
// heartbeat end the same way: no routes.
func TestTable_replayOrder(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, heartbeatFirst := range []bool{true, false} {
		tab := NewTableWith(TableConfig{Expiry: 30 * time.Second, Now: func() time.Time { return now }})
		hb := func() { tab.Heartbeat("gw-a", now.Add(-time.Hour), now.Add(-2*time.Hour)) }
		if heartbeatFirst {
			hb()
		}
		subAt(t, tab, "gw-a", "r1", true, now.Add(-90*time.Minute))
		if !heartbeatFirst {
			hb()
		}
		if st := tab.Stats(); st.Subscriptions != 0 || st.GatewaysDown != 1 || st.Keys != 1 {
			t.Fatalf("heartbeat first %v: %+v", heartbeatFirst, st)
		}
	}
}
