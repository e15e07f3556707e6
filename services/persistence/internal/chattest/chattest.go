// Package chattest holds the fixtures persistence tests share: users and rooms in a
// test database (the gateway creates them in production), submitted events, and a
// reader that collects everything a topic receives.
package chattest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/stacktest"
)

// Room is a room to create, with its members (created as users too).
type Room struct {
	ID      string
	Kind    string // event.RoomKindRoom (default) or event.RoomKindDM
	Members []string
	Admins  []string // members with the admin role (also listed in Members)
}

// Pool opens a pool on url, closed when the test ends.
func Pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Seed creates the rooms, their members and the users they need.
func Seed(t testing.TB, pool *pgxpool.Pool, rooms ...Room) {
	t.Helper()
	ctx := context.Background()
	for _, r := range rooms {
		kind := r.Kind
		if kind == "" {
			kind = event.RoomKindRoom
		}
		for _, u := range r.Members {
			if _, err := pool.Exec(ctx, `INSERT INTO users (id, username, password_hash) VALUES ($1, $1, 'x')
				ON CONFLICT DO NOTHING`, u); err != nil {
				t.Fatalf("seed user %s: %v", u, err)
			}
		}
		if _, err := pool.Exec(ctx, `INSERT INTO rooms (id, name, kind) VALUES ($1, $1, $2)`, r.ID, kind); err != nil {
			t.Fatalf("seed room %s: %v", r.ID, err)
		}
		for _, u := range r.Members {
			role := "member"
			if slices.Contains(r.Admins, u) {
				role = "admin"
			}
			if _, err := pool.Exec(ctx, `INSERT INTO room_members (room_id, user_id, role) VALUES ($1, $2, $3)`, r.ID, u, role); err != nil {
				t.Fatalf("seed member %s/%s: %v", r.ID, u, err)
			}
		}
	}
}

// Submitted builds a message.submitted event of kind message, edit or delete.
func Submitted(t testing.TB, room, sender, clientMsgID, kind, text string, target int64) event.Envelope {
	t.Helper()
	e, err := event.New("kchat/gateway/test", event.MessageSubmitted{
		RoomID: room, Sender: sender, SenderName: "Name of " + sender, ClientMsgID: clientMsgID,
		Text: text, Kind: kind, TargetSeq: target, SubmittedAt: time.Now().UTC(),
	}, event.WithTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Reaction builds a message.submitted event toggling sender's emoji on the message at target.
func Reaction(t testing.TB, room, sender, clientMsgID string, target int64, emoji string, on bool) event.Envelope {
	t.Helper()
	e, err := event.New("kchat/gateway/test", event.MessageSubmitted{
		RoomID: room, Sender: sender, SenderName: "Name of " + sender, ClientMsgID: clientMsgID,
		Kind: event.KindReaction, TargetSeq: target, Emoji: emoji, On: on, SubmittedAt: time.Now().UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Reply builds a message.submitted event of a reply in the thread rooted at root.
func Reply(t testing.TB, room, sender, clientMsgID, text string, root int64) event.Envelope {
	t.Helper()
	e, err := event.New("kchat/gateway/test", event.MessageSubmitted{
		RoomID: room, Sender: sender, SenderName: "Name of " + sender, ClientMsgID: clientMsgID,
		Text: text, Kind: event.KindMessage, ThreadRoot: root, SubmittedAt: time.Now().UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Message is Submitted for a plain message.
func Message(t testing.TB, room, sender, clientMsgID, text string) event.Envelope {
	t.Helper()
	return Submitted(t, room, sender, clientMsgID, event.KindMessage, text, 0)
}

// Membership builds a membership.changed event (change event.ChangeJoined or ChangeLeft).
func Membership(t testing.TB, room, user, change string) event.Envelope {
	t.Helper()
	e, err := event.New("kchat/gateway/test", event.MembershipChanged{
		RoomID: room, User: user, UserName: "Name of " + user, Change: change, By: user, ChangedAt: time.Now().UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Consumed wraps envelopes as the consumer runner hands them to a batch handler.
func Consumed(t testing.TB, es ...event.Envelope) []*consumer.Message {
	t.Helper()
	ms := make([]*consumer.Message, len(es))
	for i, e := range es {
		b, err := event.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = &consumer.Message{Topic: "chat.submitted", Offset: int64(i), Key: []byte(e.Subject), Value: b, Event: e}
	}
	return ms
}

// Collector reads every partition of a topic from the beginning, without a consumer group.
type Collector struct {
	brokers []string
	rt      kafka.RoundTripper // env.Transport()
	topic   string
	mu      sync.Mutex
	records []kafka.Message
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Collect starts reading topic of env's cluster, with env's security; it stops when the
// test ends.
func Collect(t testing.TB, env *stacktest.Env, topic string) *Collector {
	t.Helper()
	brokers := env.Brokers
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second, Transport: env.Transport()}
	md, err := client.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Collector{brokers: brokers, rt: env.Transport(), topic: topic, cancel: cancel}
	for _, p := range md.Topics[0].Partitions {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: brokers, Dialer: env.ReaderDialer(), Topic: topic, Partition: p.ID, MinBytes: 1, MaxBytes: 10 << 20,
			MaxWait: consumer.ReaderMaxWait(100 * time.Millisecond), StartOffset: kafka.FirstOffset,
		})
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				c.mu.Lock()
				c.records = append(c.records, m)
				c.mu.Unlock()
			}
		}()
	}
	t.Cleanup(c.Stop)
	return c
}

// Stop ends reading; Records stays available.
func (c *Collector) Stop() {
	c.cancel()
	c.wg.Wait()
}

// Records returns a copy of what was read so far: in offset order within a partition,
// partitions interleaved.
func (c *Collector) Records() []kafka.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.records)
}

// WaitFor polls until done holds for the records read so far.
func (c *Collector) WaitFor(t testing.TB, timeout time.Duration, what string, done func([]kafka.Message) bool) []kafka.Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rs := c.Records()
		if done(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (%d records read)", timeout, what, len(rs))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CaughtUp reads the topic's end offsets now and waits until every record below them
// has been read, then returns the records. Everything written (and acknowledged) before
// the call is then in hand: a test that checks that nothing extra (a duplicate) was
// written waits for this positive signal instead of sleeping and hoping.
func (c *Collector) CaughtUp(t testing.TB, timeout time.Duration) []kafka.Message {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(c.brokers...), Timeout: 10 * time.Second, Transport: c.rt}
	md, err := client.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{c.topic}})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
		t.Fatalf("metadata of %s: %v", c.topic, err)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	res, err := client.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{c.topic: reqs}})
	if err != nil {
		t.Fatalf("end offsets of %s: %v", c.topic, err)
	}
	end := map[int]int64{}
	for _, po := range res.Topics[c.topic] {
		if po.Error != nil {
			t.Fatalf("end offset of %s/%d: %v", c.topic, po.Partition, po.Error)
		}
		end[po.Partition] = po.LastOffset
	}
	return c.WaitFor(t, timeout, fmt.Sprintf("%s read up to its end offsets %v", c.topic, end), func(rs []kafka.Message) bool {
		next := map[int]int64{}
		for _, m := range rs {
			next[m.Partition] = max(next[m.Partition], m.Offset+1)
		}
		for p, e := range end {
			if next[p] < e {
				return false
			}
		}
		return true
	})
}

// Eventually polls cond until it returns nil or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Count runs a count query.
func Count(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}
