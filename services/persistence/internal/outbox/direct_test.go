package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"

	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/services/persistence/internal/chattest"
	"github.com/kchat/kchat/services/persistence/internal/store"
)

// failingEnqueuer acknowledges nothing: every publish fails, as when Kafka refuses a
// partition for longer than the producer retries.
type failingEnqueuer struct{}

func (failingEnqueuer) Enqueue(_ context.Context, done func(error), _ ...kafka.Message) error {
	go done(errors.New("kafka write failed: test"))
	return nil
}

// startDirect runs a Direct publisher until the test ends and returns a store that
// publishes through it.
func (f *fixture) startDirect(t *testing.T, pub outbox.Enqueuer, grace time.Duration) *store.Store {
	t.Helper()
	d, err := outbox.NewDirect(f.pool, pub, outbox.DirectConfig{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("direct: %v", err)
		}
	})
	st, err := store.New(f.pool, store.Config{Topic: f.topic, Direct: d, RelayGrace: grace})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (f *fixture) handle(t *testing.T, st *store.Store, es []event.Envelope) {
	t.Helper()
	ms := make([]*consumer.Message, len(es))
	for i, e := range es {
		p, err := event.DecodePayload(e)
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = &consumer.Message{Event: e, Payload: p}
	}
	if err := st.HandleBatch(context.Background(), ms); err != nil {
		t.Fatal(err)
	}
}

// The direct path publishes each committed batch itself, in seq order per room, and marks
// its rows: the relay, running beside it, publishes nothing, so nothing is duplicated.
func TestDirect_publishes_and_marks(t *testing.T) {
	f := newFixture(t, 4)
	c := chattest.Collect(t, f.env.Brokers, f.topic)
	_, relayed := f.startRelay(t, "relay", outbox.Config{PollInterval: 50 * time.Millisecond})
	st := f.startDirect(t, f.prod, time.Hour)
	for range 5 {
		f.handle(t, st, f.batch(t, 40))
	}
	chattest.Eventually(t, 30*time.Second, func() error {
		if n := f.pending(t); n != 0 {
			return errors.New("rows still pending")
		}
		return nil
	})
	f.checkTopic(t, c)
	if n := relayed.n.Load(); n != 0 {
		t.Errorf("the relay published %d rows the direct path owned", n)
	}
}

// A failed publish hands the rows to the relay at once, long before relay_after.
func TestDirect_failure_hands_rows_to_relay(t *testing.T) {
	f := newFixture(t, 2)
	c := chattest.Collect(t, f.env.Brokers, f.topic)
	_, relayed := f.startRelay(t, "relay", outbox.Config{PollInterval: time.Hour})
	st := f.startDirect(t, failingEnqueuer{}, time.Hour)
	f.handle(t, st, f.batch(t, 30))
	f.checkTopic(t, c)
	if n := relayed.n.Load(); n != 30 {
		t.Errorf("the relay published %d rows, want the 30 whose direct publish failed", n)
	}
}

// Rows whose publisher died (never marked, never handed over) are the relay's once
// relay_after passes.
func TestDirect_relay_takes_over_after_grace(t *testing.T) {
	f := newFixture(t, 2)
	c := chattest.Collect(t, f.env.Brokers, f.topic)
	st, err := store.New(f.pool, store.Config{Topic: f.topic, Direct: lostPublisher{}, RelayGrace: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.handle(t, st, f.batch(t, 20))
	if n := chattest.Count(t, f.pool, "SELECT count(*) FROM outbox WHERE relay_after IS NULL"); n != 0 {
		t.Fatalf("%d rows without relay_after; the direct path should own all", n)
	}
	_, relayed := f.startRelay(t, "relay", outbox.Config{PollInterval: 50 * time.Millisecond})
	f.checkTopic(t, c)
	if n := relayed.n.Load(); n != 20 {
		t.Errorf("the relay published %d rows, want 20", n)
	}
}

// lostPublisher is a publisher that died right after the commit.
type lostPublisher struct{}

func (lostPublisher) Publish(context.Context, string, []kafka.Message) {}
