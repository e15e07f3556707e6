package app

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/route"
	"github.com/kchat/kchat/pkg/stacktest"
)

// heartbeat writes one gateway.heartbeat as a gateway's presence announcer does.
func (s *stack) heartbeat(gw string, startedAt time.Time) {
	s.t.Helper()
	now := time.Now().UTC()
	e, err := event.New("kchat/gateway/"+gw, event.GatewayHeartbeat{GatewayID: gw, Addr: "127.0.0.1:1", StartedAt: startedAt, At: now})
	if err != nil {
		s.t.Fatal(err)
	}
	m, err := producer.Message(s.topic("chat.presence"), presence.GatewayKey(gw), e)
	if err != nil {
		s.t.Fatal(err)
	}
	s.write(m)
}

// heartbeating writes gw's heartbeats every 200ms until the returned stop is called (or the
// test ends), like a live gateway.
func (s *stack) heartbeating(gw string, startedAt time.Time) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			now := time.Now().UTC()
			e, _ := event.New("kchat/gateway/"+gw, event.GatewayHeartbeat{GatewayID: gw, Addr: "127.0.0.1:1", StartedAt: startedAt, At: now})
			m, _ := producer.Message(s.topic("chat.presence"), presence.GatewayKey(gw), e)
			_ = s.prod.Write(ctx, m)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	stop = func() { cancel(); <-done }
	s.t.Cleanup(stop)
	return stop
}

// TestFanout_routesExpireWithHeartbeats: a gateway whose heartbeats stop loses its routes
// after the expiry, a cleanly stopped one (heartbeat tombstone) at once, a restarted one
// the routes its previous run announced; a gateway that never heartbeats keeps its routes.
// Fanout then tombstones every stale key in chat.subscriptions and nothing else.
func TestFanout_routesExpireWithHeartbeats(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	subs := s.watch("chat.subscriptions")

	// Before fanout starts: gw-restart ran once (announcing rA), restarted and announced rB.
	runA := time.Now().UTC()
	s.heartbeat("gw-restart", runA)
	s.subscribe("gw-restart", "rA", true)
	runB := time.Now().UTC()
	s.heartbeating("gw-restart", runB)
	s.subscribe("gw-restart", "rB", true)
	s.subscribe("gw-live", "r1", true) // never heartbeats

	f := s.startFanoutWith(stacktest.UniqueName("fanout-"), func(c *Config) {
		c.PresenceExpiry = 2 * time.Second
		c.StaleGrace = 500 * time.Millisecond
	})
	f.waitMetric(t, "kchat_fanout_routing_subscriptions", 2) // gw-live/r1, gw-restart/rB

	// Two gateways come up, announce rooms and are routed.
	stopDead := s.heartbeating("gw-dead", time.Now().UTC())
	s.heartbeat("gw-stop", time.Now().UTC())
	s.subscribe("gw-dead", "r1", true)
	s.subscribe("gw-dead", "r2", true)
	s.subscribe("gw-stop", "r1", true)
	f.waitMetric(t, "kchat_fanout_routing_subscriptions", 5)

	// gw-stop stops cleanly: its heartbeat is deleted. gw-dead dies without a word.
	s.write(kafka.Message{Topic: s.topic("chat.presence"), Key: []byte(presence.GatewayKey("gw-stop"))})
	stopDead()
	f.waitMetric(t, "kchat_fanout_routing_gateways_down", 2)
	f.waitMetric(t, "kchat_fanout_routing_subscriptions", 2)
	f.waitMetric(t, "kchat_fanout_gateways_expired_total", 1)

	// Their keys and gw-restart's previous run's are tombstoned, read back and forgotten;
	// the live keys stay.
	f.waitMetric(t, "kchat_fanout_routing_keys", 2)
	if n := f.metric(t, "kchat_fanout_subscription_tombstones_total"); n != 4 {
		t.Fatalf("%v tombstones written, want 4", n)
	}
	want := map[string]bool{
		route.SubscriptionKey("gw-dead", "r1"): true, route.SubscriptionKey("gw-dead", "r2"): true,
		route.SubscriptionKey("gw-stop", "r1"): true, route.SubscriptionKey("gw-restart", "rA"): true,
	}
	got := subs.waitUntil("the stale keys' tombstones", 30*time.Second, func(ds []delivery) bool {
		n := 0
		for _, d := range ds {
			if d.Value == nil && want[d.Gateway] {
				n++
			}
		}
		return n >= len(want)
	})
	for _, d := range got {
		if d.Value == nil && !want[d.Gateway] {
			t.Errorf("tombstone for a live key %s", d.Gateway)
		}
	}
}
