package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
)

type fixture struct {
	env        *stacktest.Env
	topic, dlq string
	prod       *producer.Producer
}

func newFixture(t *testing.T) *fixture {
	env := stacktest.Get(t)
	names := env.Topics(t)
	p, err := producer.New(producer.Config{Brokers: env.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &fixture{env: env, topic: names(topics.Submitted), dlq: names(topics.DLQ), prod: p}
}

// publish writes n events for one room and returns their ids in order.
func (f *fixture) publish(t *testing.T, room string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	msgs := make([]kafka.Message, n)
	for i := range n {
		e, err := event.New("kchat/test", event.MessageSubmitted{RoomID: room, Sender: "u1", SenderName: "ann",
			ClientMsgID: fmt.Sprint(i), Text: fmt.Sprint("hello ", i), Kind: event.KindMessage, SubmittedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if msgs[i], err = producer.Message(f.topic, room, e); err != nil {
			t.Fatal(err)
		}
		ids[i] = e.ID
	}
	if err := f.prod.Write(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	return ids
}

func (f *fixture) config(group string) consumer.Config {
	return consumer.Config{Brokers: f.env.Brokers, GroupID: group, Topics: []string{f.topic}, SessionTimeout: 6 * time.Second}
}

func (f *fixture) middleware(name string) []consumer.Middleware {
	return []consumer.Middleware{
		consumer.DeadLetter(f.prod, f.dlq, name, nil),
		consumer.Retry{MaxAttempts: 3, InitialInterval: 10 * time.Millisecond}.Middleware,
		consumer.Recover(),
		consumer.Decode(),
	}
}

// readDLQ returns the first n dead letters.
func (f *fixture) readDLQ(t *testing.T, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: f.env.Brokers, GroupID: stacktest.UniqueName("dlq-reader-"), Topic: f.dlq, StartOffset: kafka.FirstOffset, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading dead letters: got %d of %d: %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// runUntil runs the runner until cond holds (checked after every message) or a minute passes.
func runUntil(t *testing.T, r *consumer.Runner, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			cancel()
			<-errc
			t.Fatal("condition not reached within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestRunner_failing_handler_is_retried_then_dead_lettered(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(t, "room-1", 3)
	var mu sync.Mutex
	attempts := map[string]int{}
	handled := []string{}
	r, err := consumer.New(f.config(stacktest.UniqueName("g-")), func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[m.Event.ID]++
		if m.Event.ID == ids[1] {
			return errors.New("database says no")
		}
		handled = append(handled, m.Event.ID)
		return nil
	}, f.middleware("test-consumer")...)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, r, func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 2 })

	mu.Lock()
	if attempts[ids[1]] != 3 {
		t.Errorf("poison message tried %d times, want 3", attempts[ids[1]])
	}
	if handled[0] != ids[0] || handled[1] != ids[2] {
		t.Errorf("handled %v, want %v then %v", handled, ids[0], ids[2])
	}
	mu.Unlock()
	dl := f.readDLQ(t, 1)[0]
	if got := header(dl, event.HeaderID); got != ids[1] {
		t.Errorf("dead letter carries ce_id %q, want %q (original headers kept)", got, ids[1])
	}
	want := map[string]string{
		consumer.HeaderDLQReason: "database says no", consumer.HeaderDLQTopic: f.topic,
		consumer.HeaderDLQAttempts: "3", consumer.HeaderDLQConsumer: "test-consumer",
	}
	for k, v := range want {
		if got := header(dl, k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if string(dl.Key) != "room-1" {
		t.Errorf("dead letter key %q, want the original room-1", dl.Key)
	}
	if e, err := event.Decode(dl.Value); err != nil || e.ID != ids[1] {
		t.Errorf("dead letter value is not the original event: %v", err)
	}
}

func TestRunner_undecodable_message_is_dead_lettered_and_consumer_carries_on(t *testing.T) {
	f := newFixture(t)
	garbage := []kafka.Message{
		{Topic: f.topic, Key: []byte("room-2"), Value: []byte("\x00not json")},
		{Topic: f.topic, Key: []byte("room-2"), Value: []byte(`{"specversion":"1.0","id":"x","type":"no.such.type"}`)},
	}
	if err := f.prod.Write(context.Background(), garbage...); err != nil {
		t.Fatal(err)
	}
	ids := f.publish(t, "room-2", 1)
	var mu sync.Mutex
	var got []string
	r, err := consumer.New(f.config(stacktest.UniqueName("g-")), func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m.Event.ID)
		return nil
	}, f.middleware("decoder")...)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, r, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	if got[0] != ids[0] {
		t.Fatalf("handled %v, want the valid event %s", got, ids[0])
	}
	dls := f.readDLQ(t, 2)
	for i, dl := range dls {
		if string(dl.Value) != string(garbage[i].Value) {
			t.Errorf("dead letter %d value %q, want the original bytes %q", i, dl.Value, garbage[i].Value)
		}
		if header(dl, consumer.HeaderDLQAttempts) != "1" {
			t.Errorf("undecodable message was retried: attempts %q", header(dl, consumer.HeaderDLQAttempts))
		}
		if r := header(dl, consumer.HeaderDLQReason); r == "" {
			t.Error("no reason on dead letter")
		}
	}
}

func TestRunner_shutdown_mid_stream_loses_nothing(t *testing.T) {
	f := newFixture(t)
	const n = 300
	ids := f.publish(t, "room-3", n)
	group := stacktest.UniqueName("g-")
	var mu sync.Mutex
	count := map[string]int{}
	handler := func(_ context.Context, m *consumer.Message) error {
		time.Sleep(time.Millisecond) // slow enough to be stopped mid-stream
		mu.Lock()
		defer mu.Unlock()
		count[m.Event.ID]++
		return nil
	}
	first, err := consumer.New(f.config(group), handler, f.middleware("shutdown")...)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, first, func() bool { mu.Lock(); defer mu.Unlock(); return len(count) >= n/3 })
	mu.Lock()
	stoppedAt := len(count)
	mu.Unlock()
	if stoppedAt >= n {
		t.Fatalf("first consumer finished everything (%d); the test did not stop it mid-stream", stoppedAt)
	}

	second, err := consumer.New(f.config(group), handler, f.middleware("shutdown")...)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, second, func() bool { mu.Lock(); defer mu.Unlock(); return len(count) == n })
	mu.Lock()
	defer mu.Unlock()
	redelivered := 0
	for _, id := range ids {
		if count[id] == 0 {
			t.Fatalf("event %s lost across the restart", id)
		}
		redelivered += count[id] - 1
	}
	t.Logf("stopped after %d of %d; redelivered after restart: %d", stoppedAt, n, redelivered)
	if redelivered > 1 {
		t.Fatalf("%d events handled twice; a graceful stop may redeliver at most the in-flight one", redelivered)
	}
}

func TestBatchRunner_poison_message_is_isolated(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(t, "room-4", 20)
	poison := ids[7]
	var mu sync.Mutex
	stored := map[string]bool{}
	batches := 0
	bh := func(_ context.Context, ms []*consumer.Message) error {
		for _, m := range ms {
			if m.Event.ID == poison {
				return consumer.Permanent(errors.New("constraint violated"))
			}
		}
		mu.Lock()
		defer mu.Unlock()
		batches++
		for _, m := range ms {
			stored[m.Event.ID] = true
		}
		return nil
	}
	cfg := f.config(stacktest.UniqueName("g-"))
	cfg.BatchLinger = 200 * time.Millisecond // gather the whole burst into one batch
	r, err := consumer.NewBatch(cfg, bh, consumer.Retry{MaxAttempts: 2, InitialInterval: 10 * time.Millisecond}, f.middleware("batch")...)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, r, func() bool { mu.Lock(); defer mu.Unlock(); return len(stored) == 19 })
	mu.Lock()
	defer mu.Unlock()
	if stored[poison] {
		t.Fatal("poison message was stored")
	}
	dl := f.readDLQ(t, 1)[0]
	if header(dl, event.HeaderID) != poison {
		t.Fatalf("dead letter is %q, want the poison message %s", header(dl, event.HeaderID), poison)
	}
}

// A dependency outage (transient error) must not dead-letter accepted messages: the batch
// is retried until the dependency is back.
func TestBatchRunner_transient_failure_retries_without_dead_lettering(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(t, "room-5", 10)
	var mu sync.Mutex
	calls := 0
	stored := map[string]bool{}
	bh := func(_ context.Context, ms []*consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls <= 6 { // more failures than Retry allows for one round
			return errors.New("connection refused")
		}
		for _, m := range ms {
			stored[m.Event.ID] = true
		}
		return nil
	}
	cfg := f.config(stacktest.UniqueName("g-"))
	cfg.BatchLinger = 200 * time.Millisecond
	r, err := consumer.NewBatch(cfg, bh, consumer.Retry{MaxAttempts: 2, InitialInterval: 10 * time.Millisecond}, f.middleware("outage")...)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, r, func() bool { mu.Lock(); defer mu.Unlock(); return len(stored) == len(ids) })

	client := f.env.Client()
	for p := 0; p < 3; p++ {
		res, err := client.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{f.dlq: {kafka.LastOffsetOf(p)}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, po := range res.Topics[f.dlq] {
			if po.LastOffset != 0 {
				t.Fatalf("dead-letter partition %d has %d messages after a transient outage", po.Partition, po.LastOffset)
			}
		}
	}
}
