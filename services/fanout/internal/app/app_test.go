package app

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/route"
	"github.com/kchat/kchat/pkg/stacktest"
)

// TestFanout_endToEnd runs fanout against real Kafka through its life: routing from the
// compacted subscriptions topic, an unsubscribe, and a restart that rebuilds the table.
// Typing (chat.ephemeral, room-keyed) goes to the gateways subscribed to its room;
// notification.created (chat.notifications, user-keyed) to every gateway with a
// subscription. The steps share topics and state, so they run in sequence in one test.
func TestFanout_endToEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	nDeliveries := s.partitions("chat.deliveries")
	nEphemeral := s.partitions("chat.ephemeral")
	deliveries := s.watch("chat.deliveries")
	group := stacktest.UniqueName("fanout-")

	// Subscriptions exist before fanout starts: it must read them before forwarding.
	s.subscribe("gw-a", "r1", true)
	s.subscribe("gw-a", "r2", true)
	s.subscribe("gw-b", "r2", true)
	sentinel := roomOnPartitionOf("r3", nEphemeral)
	s.subscribe("gw-b", sentinel, true)
	f := s.startFanout(group)
	f.waitMetric(t, "kchat_fanout_routing_subscriptions", 4)

	// Interleaved rooms in one write; r3 has no subscriber. The sentinel shares r3's
	// partition and comes last, so once it arrives every r3 event has been handled. The
	// notifications for u-1 go to both gateways, whatever rooms they follow.
	var msgs []kafka.Message
	original := map[string][]byte{} // event id -> bytes as published
	for n := int64(1); n <= 5; n++ {
		batch := []kafka.Message{s.typingMsg("r1", n), s.typingMsg("r2", n), s.typingMsg("r3", n), s.notificationMsg("u-1", n)}
		for _, m := range batch {
			e, _ := event.Decode(m.Value)
			original[e.ID] = m.Value
		}
		msgs = append(msgs, batch...)
	}
	msgs = append(msgs, s.typingMsg(sentinel, 1))
	s.write(msgs...)

	recs := deliveries.waitUntil("first deliveries", 60*time.Second, func(r []delivery) bool {
		return typed(r, "gw-a", "r1", 5) && typed(r, "gw-a", "r2", 5) && typed(r, "gw-b", "r2", 5) && typed(r, "gw-b", sentinel, 1) &&
			notified(r, "gw-a", "u-1", 5) && notified(r, "gw-b", "u-1", 5)
	})
	for _, c := range []struct {
		gateway, eventType, subject string
		want                        []int64
	}{
		{"gw-a", event.TypeTyping, "r1", nRange(1, 5)},
		{"gw-a", event.TypeTyping, "r2", nRange(1, 5)},
		{"gw-b", event.TypeTyping, "r2", nRange(1, 5)},
		{"gw-b", event.TypeTyping, "r1", nil},
		{"gw-a", event.TypeTyping, "r3", nil},
		{"gw-b", event.TypeTyping, "r3", nil},
		{"gw-a", event.TypeNotificationCreated, "u-1", nRange(1, 5)},
		{"gw-b", event.TypeNotificationCreated, "u-1", nRange(1, 5)},
	} {
		got := ns(recs, c.gateway, c.eventType, c.subject)
		if !inOrder(got) || !slices.Equal(dedupe(got), c.want) {
			t.Errorf("%s got %s %s %v, want %v in order", c.gateway, c.subject, c.eventType, got, c.want)
		}
	}
	for _, d := range recs {
		if want := route.PartitionFor(d.Gateway, nDeliveries); d.Partition != want {
			t.Errorf("delivery for %s on partition %d, route.PartitionFor says %d", d.Gateway, d.Partition, want)
		}
		if d.Header != d.Gateway {
			t.Errorf("kchat_gateway header %q on a record keyed %q", d.Header, d.Gateway)
		}
		if d.Subject == "r3" {
			t.Errorf("r3 event delivered to %s", d.Gateway)
		}
		if orig, ok := original[d.Event.ID]; ok && !bytes.Equal(orig, d.Value) {
			t.Errorf("delivered value differs from the published bytes for %s", d.Event.ID)
		}
		if id, _ := event.HeaderValue(toEventHeaders(d.Headers), event.HeaderID); id != d.Event.ID {
			t.Errorf("original ce_id header lost: %q, event %s", id, d.Event.ID)
		}
	}

	// Unsubscribe gw-a from r2 (subscribed=false) and gw-b from the sentinel (tombstone).
	// Both still follow a room, so both still get notifications.
	s.subscribe("gw-a", "r2", false)
	s.write(kafka.Message{Topic: s.topic("chat.subscriptions"), Key: []byte(route.SubscriptionKey("gw-b", sentinel))})
	f.waitMetric(t, "kchat_fanout_routing_subscriptions", 2)
	var more []kafka.Message
	for n := int64(6); n <= 8; n++ {
		more = append(more, s.typingMsg("r1", n), s.typingMsg("r2", n))
	}
	more = append(more, s.notificationMsg("u-1", 6))
	s.write(more...)
	recs = deliveries.waitUntil("deliveries after unsubscribe", 60*time.Second, func(r []delivery) bool {
		return typed(r, "gw-a", "r1", 8) && typed(r, "gw-b", "r2", 8) && notified(r, "gw-a", "u-1", 6) && notified(r, "gw-b", "u-1", 6)
	})
	if got := dedupe(ns(recs, "gw-a", event.TypeTyping, "r2")); !slices.Equal(got, nRange(1, 5)) {
		t.Errorf("after unsubscribing, gw-a still got r2 typing %v", got)
	}

	// Restart: a new instance (same group) rebuilds the table from the compacted topic alone,
	// and resumes both topics where the first one committed.
	f.stop(t)
	s.write(s.typingMsg("r1", 9), s.typingMsg("r2", 9), s.notificationMsg("u-1", 7)) // published while fanout is down
	f = s.startFanout(group)
	if n := f.metric(t, "kchat_fanout_routing_subscriptions"); n != 2 {
		t.Fatalf("after restart the table has %v subscriptions, want 2 (ready must mean caught up)", n)
	}
	s.write(s.typingMsg("r1", 10), s.typingMsg("r2", 10), s.typingMsg("r3", 10), s.notificationMsg("u-1", 8))
	recs = deliveries.waitUntil("deliveries after restart", 60*time.Second, func(r []delivery) bool {
		return typed(r, "gw-a", "r1", 10) && typed(r, "gw-b", "r2", 10) && notified(r, "gw-a", "u-1", 8) && notified(r, "gw-b", "u-1", 8)
	})
	for _, c := range []struct {
		gateway, eventType, subject string
		want                        []int64
	}{
		{"gw-a", event.TypeTyping, "r1", nRange(1, 10)},
		{"gw-b", event.TypeTyping, "r2", nRange(1, 10)},
		{"gw-a", event.TypeTyping, "r2", nRange(1, 5)},
		{"gw-a", event.TypeNotificationCreated, "u-1", nRange(1, 8)},
		{"gw-b", event.TypeNotificationCreated, "u-1", nRange(1, 8)},
	} {
		got := ns(recs, c.gateway, c.eventType, c.subject)
		if !inOrder(got) || !slices.Equal(dedupe(got), c.want) {
			t.Errorf("after restart %s got %s %s %v, want %v in order", c.gateway, c.subject, c.eventType, got, c.want)
		}
	}
	for _, d := range recs {
		if d.Subject == "r3" {
			t.Errorf("r3 event delivered to %s", d.Gateway)
		}
	}
}

func toEventHeaders(hs []kafka.Header) []event.Header {
	out := make([]event.Header, len(hs))
	for i, h := range hs {
		out[i] = event.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

// TestFanout_deadLetter: garbage on chat.ephemeral goes to chat.dlq with its origin, and the
// events behind it in the same partition are still forwarded.
func TestFanout_deadLetter(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	deliveries := s.watch("chat.deliveries")
	dlq := s.watch("chat.dlq")
	s.subscribe("gw-a", "r1", true)
	s.startFanout(stacktest.UniqueName("fanout-"))

	garbage := []byte("{this is not an event")
	s.write(s.typingMsg("r1", 1), kafka.Message{Topic: s.topic("chat.ephemeral"), Key: []byte("r1"), Value: garbage}, s.typingMsg("r1", 2))

	deliveries.waitUntil("r1 typing 2 after the garbage", 60*time.Second, func(r []delivery) bool { return typed(r, "gw-a", "r1", 2) })
	dead := dlq.waitUntil("the dead letter", 30*time.Second, func(r []delivery) bool { return len(r) > 0 })
	if len(dead) != 1 || !bytes.Equal(dead[0].Value, garbage) || dead[0].Gateway != "r1" {
		t.Fatalf("dead letters = %+v, want the garbage record keyed r1", dead)
	}
	hs := toEventHeaders(dead[0].Headers)
	for key, want := range map[string]string{consumer.HeaderDLQTopic: s.topic("chat.ephemeral"), consumer.HeaderDLQConsumer: "fanout"} {
		if got, _ := event.HeaderValue(hs, key); got != want {
			t.Errorf("dead letter header %s = %q, want %q", key, got, want)
		}
	}
	if reason, _ := event.HeaderValue(hs, consumer.HeaderDLQReason); reason == "" {
		t.Error("dead letter has no reason")
	}
	if got := dedupe(ns(deliveries.all(), "gw-a", event.TypeTyping, "r1")); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("gw-a got r1 typing %v, want [1 2]", got)
	}
}
