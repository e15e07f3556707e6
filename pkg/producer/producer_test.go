package producer_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
)

// PublishAsync calls made one after another keep their order within a key, although they
// return before the broker acknowledges and many are in flight at once; each done is
// called exactly once.
func TestEnqueue_keeps_order_per_key_and_reports_each_call_once(t *testing.T) {
	env := stacktest.Get(t)
	topic := env.Topics(t)(topics.Submitted)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	const keys, perKey = 20, 100
	var mu sync.Mutex
	calls := map[int]int{}
	var wg sync.WaitGroup
	for i := range keys * perKey {
		key := fmt.Sprintf("room-%02d", i%keys)
		m := kafka.Message{Topic: topic, Key: []byte(key), Value: []byte(fmt.Sprint(i / keys))}
		wg.Add(1)
		if err := p.Enqueue(ctx, func(err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("message %d: %v", i, err)
			}
			mu.Lock()
			calls[i]++
			mu.Unlock()
		}, m); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i := range keys * perKey {
		if calls[i] != 1 {
			t.Fatalf("done of message %d called %d times", i, calls[i])
		}
	}

	next := map[string]int{}
	readAll(ctx, t, env, topic, keys*perKey, func(m kafka.Message) {
		want := fmt.Sprint(next[string(m.Key)])
		if string(m.Value) != want {
			t.Fatalf("key %s: got %s, want %s (order within a key broken)", m.Key, m.Value, want)
		}
		next[string(m.Key)]++
	})
}

// A message the Writer refuses up front (too large) is an error of the call, and done is
// not called: the caller knows nothing was queued.
func TestEnqueue_refused_message_is_returned_not_reported(t *testing.T) {
	env := stacktest.Get(t)
	topic := env.Topics(t)(topics.Submitted)
	p, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	called := make(chan error, 1)
	err = p.Enqueue(context.Background(), func(err error) { called <- err },
		kafka.Message{Topic: topic, Key: []byte("k"), Value: []byte(strings.Repeat("x", 2<<20))})
	if err == nil {
		t.Fatal("a 2 MiB message was queued")
	}
	select {
	case err := <-called:
		t.Fatalf("done was called (%v) for a refused message", err)
	case <-time.After(200 * time.Millisecond):
	}
	// A write of several keys reports success once all are acknowledged.
	if err := p.Write(context.Background(),
		kafka.Message{Topic: topic, Key: []byte("a"), Value: []byte("1")},
		kafka.Message{Topic: topic, Key: []byte("b"), Value: []byte("2")},
		kafka.Message{Topic: topic, Key: []byte("c"), Value: []byte("3")}); err != nil {
		t.Fatal(err)
	}
}

// readAll reads every partition of topic to its end; n < 0 skips the count check.
func readAll(ctx context.Context, t *testing.T, env *stacktest.Env, topic string, n int, fn func(kafka.Message)) {
	t.Helper()
	brokers := env.Brokers
	conn, err := env.Dialer().DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, part := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Dialer: env.ReaderDialer(), Topic: topic, Partition: part.ID, MaxWait: consumer.ReaderMaxWait(100 * time.Millisecond)})
		c, err := env.Dialer().DialLeader(ctx, "tcp", brokers[0], topic, part.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, err := c.ReadLastOffset()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		for off := int64(0); off < last; off++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			fn(m)
			got++
		}
		r.Close()
	}
	if n >= 0 && got != n {
		t.Fatalf("read %d messages, want %d", got, n)
	}
}
