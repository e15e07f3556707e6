package main_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/topics"

	"github.com/kchat/kchat/services/persistence/internal/chattest"
)

// A join forged into chat.submitted for a private room (no accepted invitation) and a
// message from someone outside it are refused by persistence itself: both go to the
// dead-letter topic with the reason, and the members' messages around them in the same
// partition are stored.
func TestPrivateRoom_forged_events_dead_lettered(t *testing.T) {
	s := newStack(t, 2)
	if _, err := s.pool.Exec(context.Background(), `UPDATE rooms SET private = true WHERE id = $1`, s.rooms[1]); err != nil {
		t.Fatal(err)
	}
	dlq := chattest.Collect(t, s.env, s.topic(topics.DLQ))
	s.produce(t, 50)
	forged := []event.Envelope{
		chattest.Membership(t, s.rooms[1], "u-intruder", event.ChangeJoined),
		chattest.Message(t, s.rooms[1], "u-intruder", "x-1", "let me in"),
	}
	for _, e := range forged {
		m, err := producer.Message(s.topic(topics.Submitted), e.Subject, e)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.prod.Write(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	s.produce(t, 50)

	s.start(t, "persistence")
	s.waitCount(t, "SELECT count(*) FROM messages", 100, 2*time.Minute)
	rs := dlq.WaitFor(t, 30*time.Second, "the two dead letters", func(rs []kafka.Message) bool { return len(rs) >= 2 })
	s.checkStored(t)
	var reasons []string
	for _, r := range rs {
		hs := map[string]string{}
		for _, h := range r.Headers {
			hs[h.Key] = string(h.Value)
		}
		if hs["dlq_consumer"] != "persistence" {
			t.Errorf("dead letter headers %v", hs)
		}
		switch hs[event.HeaderID] {
		case forged[0].ID:
			reasons = append(reasons, "join: "+hs["dlq_reason"])
		case forged[1].ID:
			reasons = append(reasons, "message: "+hs["dlq_reason"])
		default:
			t.Errorf("unexpected dead letter %v", hs)
		}
	}
	slices.Sort(reasons)
	if len(reasons) != 2 || !strings.Contains(reasons[0], "without an accepted invitation") || !strings.Contains(reasons[1], "not a member of the private room") {
		t.Fatalf("dead-letter reasons %q", reasons)
	}
	if n := s.count(t, "SELECT count(*) FROM messages WHERE sender = 'u-intruder'"); n != 0 {
		t.Fatalf("%d entries of the intruder stored", n)
	}
}
