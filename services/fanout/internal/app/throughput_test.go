package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/stacktest"
)

// BenchmarkFanout_backlog measures forwarding of a backlog: typing events published before
// fanout starts, three gateways subscribed to every room, counted by the end offsets of
// chat.deliveries. It needs the local stack and is not part of the race run:
//
//	go test -run '^$' -bench Fanout_backlog -benchtime 3x ./internal/app
//
// Each iteration starts a fanout in a new consumer group that forwards the whole backlog
// again; ns/op is one iteration from start to the last delivery. Start-up and the group
// join are not forwarding: events/s, deliveries/s and ns/event count from an iteration's
// first delivery to its last.
func BenchmarkFanout_backlog(b *testing.B) {
	s := newStack(b)
	const events, rooms = 20000, 50
	gateways := []string{"gw-a", "gw-b", "gw-c"}
	for r := range rooms {
		for _, gw := range gateways {
			s.subscribe(gw, fmt.Sprintf("room-%d", r), true)
		}
	}
	msgs := make([]kafka.Message, 0, events)
	for i := range events {
		msgs = append(msgs, s.typingMsg(fmt.Sprintf("room-%d", i%rooms), int64(i/rooms+1)))
	}
	for batch := range sliceChunks(msgs, 5000) {
		s.write(batch...)
	}

	perRun := int64(events * len(gateways))
	var forwarding time.Duration
	iterations := 0
	for b.Loop() {
		b.StopTimer()
		base := s.endOffsets("chat.deliveries")
		b.StartTimer()
		begin := time.Now()
		f := s.startFanout(stacktest.UniqueName("fanout-"))
		ready := time.Now()
		deadline := time.Now().Add(3 * time.Minute)
		var first time.Time
		for {
			n := s.endOffsets("chat.deliveries") - base
			if n > 0 && first.IsZero() {
				first = time.Now()
			}
			if n >= perRun {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d deliveries after 3 minutes", n, perRun)
			}
			time.Sleep(20 * time.Millisecond) // polling the end offsets, not waiting for an event
		}
		took := time.Since(first)
		forwarding += took
		iterations++
		b.Logf("forwarded %d events as %d deliveries in %s (start to ready %s, ready to first delivery %s)",
			events, perRun, took.Round(time.Millisecond), ready.Sub(begin).Round(time.Millisecond), first.Sub(ready).Round(time.Millisecond))
		b.StopTimer()
		f.stop(b)
		b.StartTimer()
	}
	secs := forwarding.Seconds()
	b.ReportMetric(float64(events*iterations)/secs, "events/s")
	b.ReportMetric(float64(perRun)*float64(iterations)/secs, "deliveries/s")
	b.ReportMetric(float64(forwarding.Nanoseconds())/float64(events*iterations), "ns/event")
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
