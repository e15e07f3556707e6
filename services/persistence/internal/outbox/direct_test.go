package outbox_test

import (
	"context"
	"errors"
	"fmt"
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
	c := chattest.Collect(t, f.env, f.topic)
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
	c := chattest.Collect(t, f.env, f.topic)
	_, relayed := f.startRelay(t, "relay", outbox.Config{PollInterval: time.Hour})
	st := f.startDirect(t, failingEnqueuer{}, time.Hour)
	f.handle(t, st, f.batch(t, 30))
	f.checkTopic(t, c)
	if n := relayed.n.Load(); n != 30 {
		t.Errorf("the relay published %d rows, want the 30 whose direct publish failed", n)
	}
}

// Rows handed over while an older transaction runs are held back until it ends, and its
// end notifies nobody: the relay must come back to them on its own, long before
// PollInterval. The open transaction may be in any database of the server (transaction
// ids are cluster-wide), which is how this test once hung on a shared stack.
func TestDirect_handed_rows_held_back_by_a_running_transaction(t *testing.T) {
	f := newFixture(t, 2)
	c := chattest.Collect(t, f.env, f.topic)
	ctx := context.Background()
	blocker, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx)
	if _, err := blocker.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil { // takes a txid
		t.Fatal(err)
	}
	_, relayed := f.startRelay(t, "relay", outbox.Config{PollInterval: time.Hour})
	st := f.startDirect(t, failingEnqueuer{}, time.Hour)
	f.handle(t, st, f.batch(t, 10))
	// The handover has happened (no row still waits for relay_after) and the relay has
	// had its notification; it can publish nothing while the blocker runs.
	chattest.Eventually(t, 30*time.Second, func() error {
		if n := chattest.Count(t, f.pool, "SELECT count(*) FROM outbox WHERE relay_after IS NOT NULL"); n != 0 {
			return fmt.Errorf("%d rows not handed over yet", n)
		}
		return nil
	})
	if n := relayed.n.Load(); n != 0 {
		t.Fatalf("the relay published %d rows past a running older transaction", n)
	}
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	f.checkTopic(t, c)
	if n := relayed.n.Load(); n != 10 {
		t.Errorf("the relay published %d rows, want 10", n)
	}
}

// Rows whose publisher died (never marked, never handed over) are the relay's once
// relay_after passes.
func TestDirect_relay_takes_over_after_grace(t *testing.T) {
	f := newFixture(t, 2)
	c := chattest.Collect(t, f.env, f.topic)
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
