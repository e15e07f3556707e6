package routing

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
)

// TestFollower_catchUpAndFollow reads a real compacted topic: not ready until every
// partition was read to its end offset as of start, then keeps applying new records.
func TestFollower_catchUpAndFollow(t *testing.T) {
	t.Parallel()
	env := stacktest.Get(t)
	topic := env.Topics(t)("chat.subscriptions")
	prod, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	write := func(rs ...record) {
		t.Helper()
		msgs := make([]kafka.Message, len(rs))
		for i, r := range rs {
			msgs[i] = kafka.Message{Topic: topic, Key: r.key, Value: r.value}
		}
		if err := prod.Write(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
	}

	// Enough pairs to land on every partition; every third one is removed again, by
	// subscribed=false or by a tombstone, so the end state needs the whole history.
	var before []record
	var want []string
	for i := range 60 {
		gw, room := fmt.Sprintf("gw-%d", i%4), fmt.Sprintf("room-%d", i)
		before = append(before, sub(t, gw, room, true))
		switch i % 6 {
		case 0:
			before = append(before, sub(t, gw, room, false))
		case 3:
			before = append(before, tombstone(gw, room))
		default:
			want = append(want, room)
		}
	}
	before = append(before, record{key: []byte("garbage-key"), value: []byte("not json")})
	write(before...)

	table := NewTable()
	var applied atomic.Int64
	f, err := NewFollower(FollowerConfig{Topic: topic, MaxWait: 100 * time.Millisecond,
		OnApply: func(Change) { applied.Add(1) }}, env.Client(), table)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Ready(context.Background()); err == nil {
		t.Fatal("ready before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	select {
	case <-f.CaughtUp():
	case <-time.After(30 * time.Second):
		t.Fatal("not caught up within 30s")
	}
	if err := f.Ready(context.Background()); err != nil {
		t.Fatalf("Ready after catch-up: %v", err)
	}
	// Caught up means everything written before start is in the table, not eventually.
	if st := table.Stats(); st.Subscriptions != len(want) {
		t.Fatalf("caught up with %d subscriptions, want %d", st.Subscriptions, len(want))
	}
	for _, room := range want {
		if len(table.Gateways(room)) != 1 {
			t.Fatalf("room %s has gateways %v", room, table.Gateways(room))
		}
	}
	if got := applied.Load(); got != int64(len(want)+2*(60-len(want))) {
		t.Errorf("OnApply called %d times", got)
	}

	// Following: later records arrive without a restart.
	write(sub(t, "gw-new", "room-x", true), tombstone("gw-1", "room-1"))
	deadline := time.Now().Add(15 * time.Second)
	for !slices.Equal(table.Gateways("room-x"), []string{"gw-new"}) || len(table.Gateways("room-1")) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("new records not applied: room-x %v, room-1 %v", table.Gateways("room-x"), table.Gateways("room-1"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFollower_emptyTopicIsReadyAtOnce: nothing to read means nothing to wait for.
func TestFollower_emptyTopicIsReadyAtOnce(t *testing.T) {
	t.Parallel()
	env := stacktest.Get(t)
	topic := env.Topics(t)("chat.subscriptions")
	f, err := NewFollower(FollowerConfig{Topic: topic}, env.Client(), NewTable())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	select {
	case <-f.CaughtUp():
	case <-time.After(15 * time.Second):
		t.Fatal("empty topic: not caught up")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestFollower_missingTopicFails: a misconfigured prefix must fail the start, not hang.
func TestFollower_missingTopicFails(t *testing.T) {
	t.Parallel()
	env := stacktest.Get(t)
	f, err := NewFollower(FollowerConfig{Topic: stacktest.UniqueName("missing."), ListAttempts: 2}, env.Client(), NewTable())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := f.Run(ctx); err == nil {
		t.Fatal("Run on a missing topic returned nil")
	}
}
