package producer_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
)

// Acks=all with min.insync.replicas=2 must survive a broker crash: every acknowledged event
// is consumed, in order per key. Retries may duplicate (kafka-go has no idempotent
// producer); deduplication by event id must remove exactly those.
func TestDurability_broker_killed_mid_stream(t *testing.T) {
	env := stacktest.Get(t)
	if env.Stack == nil {
		t.Skip("needs the local stack to kill a broker (KAFKA_BROKERS points elsewhere)")
	}
	env.ExclusiveFaults(t)
	const total, rooms, chunk = 10_000, 50, 100
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	topic := env.Topics(t)(topics.Submitted)

	p, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// Every event carries its key's counter in client_msg_id, to check order per key.
	type sent struct {
		room string
		n    int
	}
	acked := map[string]sent{}
	var ackedCount atomic.Int64
	var crash sync.WaitGroup
	crash.Add(1)
	go func() {
		defer crash.Done()
		for ackedCount.Load() < total/4 {
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("SIGKILL broker 2 after %d acked", ackedCount.Load())
		if err := env.Stack.KillBroker(2); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(3 * time.Second)
		if err := env.Stack.StartBroker(ctx, 2); err != nil {
			t.Error(err)
			return
		}
		t.Logf("broker 2 back after %d acked", ackedCount.Load())
	}()

	counters := make([]int, rooms)
	failedWrites := 0
	for i := 0; i < total; i += chunk {
		msgs := make([]kafka.Message, 0, chunk)
		batch := map[string]sent{}
		for j := i; j < i+chunk; j++ {
			r := j % rooms
			counters[r]++
			room := fmt.Sprintf("room-%02d", r)
			e, err := event.New("kchat/test", event.MessageSubmitted{RoomID: room, Sender: "u", SenderName: "u",
				ClientMsgID: fmt.Sprint(counters[r]), Text: "x", Kind: event.KindMessage, SubmittedAt: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			m, err := producer.Message(topic, room, e)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, m)
			batch[e.ID] = sent{room, counters[r]}
		}
		// A failed write is retried with the same events: what the client would do.
		for attempt := 1; ; attempt++ {
			err := p.Write(ctx, msgs...)
			if err == nil {
				break
			}
			failedWrites++
			if attempt == 20 {
				t.Fatalf("write kept failing: %v", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		for id, s := range batch {
			acked[id] = s
		}
		ackedCount.Add(chunk)
	}
	crash.Wait()

	var mu sync.Mutex
	seen := map[string]int{}
	lastPerRoom := map[string]int{}
	consumed, duplicates, outOfOrder := 0, 0, 0
	done := make(chan struct{})
	runner, err := consumer.New(consumer.Config{Brokers: env.Brokers, Security: env.Security, GroupID: stacktest.UniqueName("durability-"), Topics: []string{topic}},
		func(_ context.Context, m *consumer.Message) error {
			mu.Lock()
			defer mu.Unlock()
			consumed++
			seen[m.Event.ID]++
			if seen[m.Event.ID] > 1 {
				duplicates++ // the dedup by event id: a second copy has no effect
				return nil
			}
			s := acked[m.Event.ID]
			if s.n != lastPerRoom[s.room]+1 {
				outOfOrder++
			}
			lastPerRoom[s.room] = s.n
			if len(seen) == len(acked) {
				select {
				case <-done:
				default:
					close(done)
				}
			}
			return nil
		}, consumer.Decode())
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- runner.Run(rctx) }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
	}
	// Let stragglers (late duplicates) arrive before counting.
	time.Sleep(time.Second)
	stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	missing := 0
	for id := range acked {
		if seen[id] == 0 {
			missing++
		}
	}
	t.Logf("acked=%d consumed=%d unique=%d duplicates=%d failed_writes_retried=%d missing=%d out_of_order=%d",
		len(acked), consumed, len(seen), duplicates, failedWrites, missing, outOfOrder)
	if len(acked) != total {
		t.Fatalf("acked %d of %d", len(acked), total)
	}
	if missing != 0 {
		t.Fatalf("%d acknowledged events were lost", missing)
	}
	if outOfOrder != 0 {
		t.Fatalf("%d events out of order within their key", outOfOrder)
	}
	if len(seen) != total {
		t.Fatalf("after dedup by event id: %d events, want %d", len(seen), total)
	}
}
