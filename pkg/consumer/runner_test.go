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
	p, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
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
	return consumer.Config{Brokers: f.env.Brokers, Security: f.env.Security, GroupID: group, Topics: []string{f.topic}, SessionTimeout: 6 * time.Second}
}

func (f *fixture) middleware(name string) []consumer.Middleware {
	return []consumer.Middleware{
		consumer.DeadLetter(f.prod, f.dlq, name, nil),
		consumer.Retry{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond}.Middleware,
		consumer.Recover(),
		consumer.Decode(),
	}
}

// readDLQ returns the first n dead letters.
func (f *fixture) readDLQ(t *testing.T, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: f.env.Brokers, Dialer: f.env.ReaderDialer(), GroupID: stacktest.UniqueName("dlq-reader-"), Topic: f.dlq, StartOffset: kafka.FirstOffset, MaxWait: consumer.ReaderMaxWait(200 * time.Millisecond)})
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

// dlqCount returns how many dead letters the fixture's DLQ topic holds.
func (f *fixture) dlqCount(t *testing.T) int64 {
	t.Helper()
	res, err := f.env.Client().ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		f.dlq: {kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0), kafka.FirstOffsetOf(1), kafka.LastOffsetOf(1), kafka.FirstOffsetOf(2), kafka.LastOffsetOf(2)}}})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, po := range res.Topics[f.dlq] {
		if po.Error != nil {
			t.Fatalf("offsets of %s/%d: %v", f.dlq, po.Partition, po.Error)
		}
		n += po.LastOffset - po.FirstOffset
	}
	return n
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

// flakyWriter fails its first failures writes, as a producer does whose metadata does not
// know a freshly created topic yet (Unknown Topic Or Partition).
type flakyWriter struct {
	w        consumer.Writer
	mu       sync.Mutex
	failures int
}

func (w *flakyWriter) Write(ctx context.Context, msgs ...kafka.Message) error {
	w.mu.Lock()
	fail := w.failures > 0
	w.failures--
	w.mu.Unlock()
	if fail {
		return kafka.UnknownTopicOrPartition
	}
	return w.w.Write(ctx, msgs...)
}

// A message fails transiently twice, then permanently: it is tried exactly three times
// and dead-lettered once, even though the dead-letter write itself fails twice first (the
// flake this test had: a failed dead-letter write sent the message back through the
// runner's retry, which ran the handler again, so the path decided the attempt count).
func TestRunner_failing_handler_is_retried_then_dead_lettered(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(t, "room-1", 3)
	var mu sync.Mutex
	attempts := map[string]int{}
	handled := []string{}
	dlq := &flakyWriter{w: f.prod, failures: 2}
	r, err := consumer.New(f.config(stacktest.UniqueName("g-")), func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[m.Event.ID]++
		if m.Event.ID == ids[1] {
			if attempts[m.Event.ID] < 3 {
				return errors.New("database says no") // transient: retried
			}
			return consumer.Permanent(errors.New("rule says no"))
		}
		handled = append(handled, m.Event.ID)
		return nil
	}, append([]consumer.Middleware{consumer.DeadLetter(dlq, f.dlq, "test-consumer", nil)}, f.middleware("test-consumer")[1:]...)...)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, r, func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 2 })

	mu.Lock()
	if attempts[ids[1]] != 3 {
		t.Errorf("poison message tried %d times, want 3", attempts[ids[1]])
	}
	if len(handled) != 2 || handled[0] != ids[0] || handled[1] != ids[2] {
		t.Errorf("handled %v, want %v then %v", handled, ids[0], ids[2])
	}
	mu.Unlock()
	if n := f.dlqCount(t); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}
	dl := f.readDLQ(t, 1)[0]
	if got := header(dl, event.HeaderID); got != ids[1] {
		t.Errorf("dead letter carries ce_id %q, want %q (original headers kept)", got, ids[1])
	}
	want := map[string]string{
		consumer.HeaderDLQReason: "rule says no", consumer.HeaderDLQTopic: f.topic,
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
	r, err := consumer.NewBatch(cfg, bh, consumer.Retry{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond}, f.middleware("batch")...)
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
	r, err := consumer.NewBatch(cfg, bh, consumer.Retry{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond}, f.middleware("outage")...)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, r, func() bool { mu.Lock(); defer mu.Unlock(); return len(stored) == len(ids) })

	if n := f.dlqCount(t); n != 0 {
		t.Fatalf("%d dead letters after a transient outage", n)
	}
}

// More transient failures than any fixed budget: the message is retried until it
// succeeds, stored once and never dead-lettered.
func TestRunner_transient_failure_is_retried_until_it_succeeds(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(t, "room-6", 2)
	var mu sync.Mutex
	attempts := map[string]int{}
	handled := map[string]int{}
	r, err := consumer.New(f.config(stacktest.UniqueName("g-")), func(_ context.Context, m *consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[m.Event.ID]++
		if m.Event.ID == ids[0] && attempts[m.Event.ID] <= 8 {
			return errors.New("connection refused")
		}
		if m.Attempt != attempts[m.Event.ID] {
			t.Errorf("Attempt %d on invocation %d", m.Attempt, attempts[m.Event.ID])
		}
		handled[m.Event.ID]++
		return nil
	}, f.middleware("transient")...)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, r, func() bool { mu.Lock(); defer mu.Unlock(); return handled[ids[1]] == 1 })
	mu.Lock()
	defer mu.Unlock()
	if attempts[ids[0]] != 9 || handled[ids[0]] != 1 {
		t.Errorf("first message tried %d times and handled %d, want 9 and 1", attempts[ids[0]], handled[ids[0]])
	}
	if n := f.dlqCount(t); n != 0 {
		t.Errorf("%d dead letters after transient failures", n)
	}
}

// A batch fails permanently (one poison message) and, while its messages are isolated,
// the store fails transiently for a valid one: only the poison message is dead-lettered,
// every other message is stored once.
func TestBatchRunner_transient_failure_during_isolation_is_not_dead_lettered(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(t, "room-7", 10)
	poison, victim := ids[3], ids[6]
	var mu sync.Mutex
	stored := map[string]int{}
	victimCalls := 0
	bh := func(_ context.Context, ms []*consumer.Message) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range ms {
			if m.Event.ID == poison {
				return consumer.Permanent(errors.New("constraint violated"))
			}
		}
		if len(ms) == 1 && ms[0].Event.ID == victim {
			victimCalls++
			if victimCalls <= 8 {
				return errors.New("connection refused") // the database restarts
			}
		}
		for _, m := range ms {
			stored[m.Event.ID]++
		}
		return nil
	}
	cfg := f.config(stacktest.UniqueName("g-"))
	cfg.BatchLinger = 200 * time.Millisecond
	r, err := consumer.NewBatch(cfg, bh, consumer.Retry{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond}, f.middleware("isolation")...)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, r, func() bool { mu.Lock(); defer mu.Unlock(); return len(stored) == len(ids)-1 })
	mu.Lock()
	defer mu.Unlock()
	if victimCalls <= 8 {
		t.Fatalf("the victim was handled alone %d times: the batch was not isolated", victimCalls)
	}
	for _, id := range ids {
		if id != poison && stored[id] != 1 {
			t.Errorf("event %s stored %d times, want once", id, stored[id])
		}
	}
	if n := f.dlqCount(t); n != 1 {
		t.Fatalf("%d dead letters, want only the poison message", n)
	}
	if got := header(f.readDLQ(t, 1)[0], event.HeaderID); got != poison {
		t.Fatalf("dead letter is %s, want the poison message %s", got, poison)
	}
}

func TestIsPermanent(t *testing.T) {
	_, decodeErr := event.Decode([]byte("\x00not json"))
	_, payloadErr := event.DecodePayload(event.Envelope{Type: "no.such.type"})
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain error", errors.New("connection refused"), false},
		{"context", context.DeadlineExceeded, false},
		{"marked", consumer.Permanent(errors.New("rule")), true},
		{"marked and wrapped", fmt.Errorf("batch: %w", consumer.Permanent(errors.New("rule"))), true},
		{"undecodable event", decodeErr, true},
		{"unknown type", fmt.Errorf("event x: %w", payloadErr), true},
		{"invalid field", &event.FieldError{Field: "id", Reason: "is required"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := consumer.IsPermanent(tt.err); got != tt.want {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestRecover_panic_is_permanent(t *testing.T) {
	h := consumer.Recover()(func(context.Context, *consumer.Message) error { panic("boom") })
	if err := h(context.Background(), &consumer.Message{}); !consumer.IsPermanent(err) {
		t.Fatalf("panic gave %v, want a permanent error", err)
	}
}
