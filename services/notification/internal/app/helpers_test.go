package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
)

// fixture is one test's share of the real stack: its own topics, a fresh database, a
// producer, and a gateway's presence announcer.
type fixture struct {
	t      *testing.T
	env    *stacktest.Env
	names  func(string) string
	dbURL  string
	pool   *pgxpool.Pool
	prod   *producer.Producer
	client *kafka.Client
	gw     *presence.Announcer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := stacktest.Get(t)
	f := &fixture{t: t, env: env, names: env.Topics(t), dbURL: env.NewDatabase(t), client: env.Client()}
	var err error
	if f.pool, err = pgxpool.New(context.Background(), f.dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.pool.Close)
	if f.prod, err = producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.prod.Close() })
	f.gw, err = presence.NewAnnouncer(f.prod, presence.AnnouncerConfig{GatewayID: "gw-1", Addr: "127.0.0.1:8081",
		Topic: f.names(topics.Presence), Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f.background(f.gw.Run)
	return f
}

// background runs fn until the test ends and fails the test if it returns an error.
func (f *fixture) background(fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				f.t.Errorf("background run: %v", err)
			}
		case <-time.After(45 * time.Second):
			f.t.Error("background run did not stop within 45s")
		}
	}
	f.t.Cleanup(stop)
	return stop
}

func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.pool.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatalf("%v\n%s", err, sql)
	}
}

// online marks users online on gw-1 and waits until the announcer wrote it.
func (f *fixture) online(users ...string) {
	f.t.Helper()
	for _, u := range users {
		f.gw.Set(u, u, 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.gw.Flush(ctx); err != nil {
		f.t.Fatal(err)
	}
}

// stored builds a message.stored envelope as the outbox relay publishes it.
func (f *fixture) stored(room string, seq int64, kind, sender, text, roomKind string, members ...string) event.Envelope {
	f.t.Helper()
	now := time.Now()
	e, err := event.New("kchat/persistence", event.MessageStored{RoomID: room, Seq: seq, Kind: kind,
		MessageID: fmt.Sprintf("msg-%s-%d", room, seq), Sender: sender, SenderName: sender, Text: text,
		RoomKind: roomKind, Members: members, SentAt: now, StoredAt: now})
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

// publish writes envelopes to the test's chat.stored, keyed by room like the relay.
func (f *fixture) publish(es ...event.Envelope) {
	f.t.Helper()
	msgs := make([]kafka.Message, len(es))
	for i, e := range es {
		m, err := producer.Message(f.names(topics.Stored), e.Subject, e)
		if err != nil {
			f.t.Fatal(err)
		}
		msgs[i] = m
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.prod.Write(ctx, msgs...); err != nil {
		f.t.Fatal(err)
	}
}

// waitConsumed waits until group has committed everything written to chat.stored so far:
// then every event, including redeliveries that change nothing, has been handled.
func (f *fixture) waitConsumed(group string, timeout time.Duration) {
	f.t.Helper()
	topic := f.names(topics.Stored)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	md, err := f.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		f.t.Fatalf("metadata: %v", err)
	}
	var parts []int
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		parts = append(parts, p.ID)
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	lo, err := f.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		f.t.Fatal(err)
	}
	ends := map[int]int64{}
	for _, po := range lo.Topics[topic] {
		ends[po.Partition] = po.LastOffset
	}
	for {
		res, err := f.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
		behind := -1
		if err == nil {
			behind = 0
			for _, p := range res.Topics[topic] {
				if end := ends[p.Partition]; end > 0 && p.CommittedOffset < end {
					behind += int(end - p.CommittedOffset)
				}
			}
		}
		if behind == 0 {
			return
		}
		select {
		case <-ctx.Done():
			f.t.Fatalf("group %s not caught up within %s: %d behind (last error: %v)", group, timeout, behind, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (f *fixture) count(sql string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("%v\n%s", err, sql)
	}
	return n
}
