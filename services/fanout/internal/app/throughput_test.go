package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/stacktest"
)

// TestFanout_throughput measures forwarding of a backlog: events published before fanout
// starts, three gateways subscribed to every room, counted by the end offsets of
// chat.deliveries. It logs events/s; it fails only if forwarding does not finish.
func TestFanout_throughput(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement; skipped with -short")
	}
	t.Parallel()
	s := newStack(t)
	const events, rooms = 20000, 50
	gateways := []string{"gw-a", "gw-b", "gw-c"}
	for r := range rooms {
		for _, gw := range gateways {
			s.subscribe(gw, fmt.Sprintf("room-%d", r), true)
		}
	}
	msgs := make([]kafka.Message, 0, events)
	for i := range events {
		msgs = append(msgs, s.storedMsg(fmt.Sprintf("room-%d", i%rooms), int64(i/rooms+1)))
	}
	for batch := range sliceChunks(msgs, 5000) {
		s.write(batch...)
	}

	want := int64(events * len(gateways))
	begin := time.Now()
	s.startFanout(stacktest.UniqueName("fanout-"))
	ready := time.Now()
	deadline := time.Now().Add(3 * time.Minute)
	var first time.Time // the group join is not forwarding: measure from the first delivery
	for {
		n := s.endOffsets("chat.deliveries")
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		if n >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d deliveries after 3 minutes", n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(first)
	t.Logf("forwarded %d events as %d deliveries in %s (start to ready %s, ready to first delivery %s): %.0f events/s, %.0f deliveries/s",
		events, want, took.Round(time.Millisecond), ready.Sub(begin).Round(time.Millisecond), first.Sub(ready).Round(time.Millisecond),
		float64(events)/took.Seconds(), float64(want)/took.Seconds())
}

func sliceChunks[T any](s []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for i := 0; i < len(s); i += n {
			if !yield(s[i:min(i+n, len(s))]) {
				return
			}
		}
	}
}

// endOffsets sums the high-water marks of a topic's partitions.
func (s *stack) endOffsets(name string) int64 {
	s.t.Helper()
	var reqs []kafka.OffsetRequest
	for p := range s.partitions(name) {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	res, err := s.client.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{s.topic(name): reqs}})
	if err != nil {
		s.t.Fatal(err)
	}
	var sum int64
	for _, po := range res.Topics[s.topic(name)] {
		sum += po.LastOffset
	}
	return sum
}
