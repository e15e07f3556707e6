package chat_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// downPub is a publisher whose Kafka is unreachable: every publish fails.
type downPub struct{ calls int }

func (p *downPub) Publish(context.Context, string, string, ...event.Envelope) error {
	p.calls++
	return errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
}

func (p *downPub) PublishAsync(ctx context.Context, topic, key string, e event.Envelope, done func(error)) error {
	done(p.Publish(ctx, topic, key, e))
	return nil
}

// TestMembership_outbox_kafkaDown: with the gateway's Kafka unreachable, creating a room,
// joining and leaving it still commit, each with its membership.changed in the outbox
// (the publish tried after the commit fails and hands the row to the relay); retries write
// nothing twice; once persistence's relay runs, each event reaches chat.submitted exactly
// once, keyed by room.
func TestMembership_outbox_kafkaDown(t *testing.T) {
	t.Parallel()
	env := stacktest.Get(t)
	db := env.NewDatabase(t)
	topic := env.Topics(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st := store.New(pool)
	t.Cleanup(st.Close)
	pub := &downPub{}
	svc, err := chat.New(chat.Config{GatewayID: "gw-1", Password: cheapPassword, Topic: topic}, st, pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := svc.Register(ctx, "alice", "secret-password")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := svc.Register(ctx, "bob", "secret-password")
	if err != nil {
		t.Fatal(err)
	}

	if _, err := svc.CreateRoom(ctx, alice, "r1", "Room 1", false); err != nil {
		t.Fatalf("CreateRoom with Kafka down: %v", err)
	}
	if _, err := svc.Join(ctx, bob, "r1"); err != nil {
		t.Fatalf("Join with Kafka down: %v", err)
	}
	assertMember(ctx, t, st, "r1", bob.ID, true)
	if _, err := svc.Join(ctx, bob, "r1"); err != nil {
		t.Fatalf("repeated Join: %v", err)
	}
	if err := svc.Leave(ctx, bob, "r1", ""); err != nil {
		t.Fatalf("Leave with Kafka down: %v", err)
	}
	assertMember(ctx, t, st, "r1", bob.ID, false)
	// A retried Leave after a success is a non-member's request: refused, nothing written.
	var pe *protocol.Error
	if err := svc.Leave(ctx, bob, "r1", ""); !errors.As(err, &pe) || pe.Code != protocol.CodeForbidden {
		t.Fatalf("retried Leave: %v, want forbidden", err)
	}
	// One publish attempt per committed change, after its commit; each failed, so each
	// row was handed to the relay at once (relay_after cleared).
	if pub.calls != 3 {
		t.Fatalf("%d publish attempts, want one per committed membership change (3)", pub.calls)
	}
	var held int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE relay_after IS NOT NULL`).Scan(&held); err != nil || held != 0 {
		t.Fatalf("%d rows still held from the relay after their publish failed (%v)", held, err)
	}

	want := []string{alice.ID + " " + event.ChangeJoined, bob.ID + " " + event.ChangeJoined, bob.ID + " " + event.ChangeLeft}
	var rows []string
	r, err := pool.Query(ctx, `SELECT topic, key, payload, headers->>'ce_type' FROM outbox ORDER BY txid, id`)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var tp, key, typ string
		var payload []byte
		if err := r.Scan(&tp, &key, &payload, &typ); err != nil {
			t.Fatal(err)
		}
		if tp != topic(topics.Submitted) || key != "r1" || typ != event.TypeMembershipChanged {
			t.Fatalf("outbox row topic %q key %q type %q", tp, key, typ)
		}
		rows = append(rows, membershipOf(t, payload))
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(rows, ",") != strings.Join(want, ",") {
		t.Fatalf("outbox rows %v, want %v", rows, want)
	}

	// The relay (persistence) publishes the rows; once every one is marked sent, the topic
	// up to its end holds them, each once.
	addr := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
	env.Start(t, "persistence", env.Build(t, "./services/persistence"), nil, "-brokers", strings.Join(env.Brokers, ","),
		"-topic-prefix", topic(""), "-database-url", db, "-http-addr", addr, "-migrate=false")
	for {
		var pending int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE published_at IS NULL AND topic = $1`, topic(topics.Submitted)).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d outbox rows still unpublished", pending)
		case <-time.After(50 * time.Millisecond):
		}
	}
	got := readAll(ctx, t, env, topic(topics.Submitted))
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("chat.submitted holds %v, want %v (each once)", got, want)
	}
}

var cheapPassword = auth.Params{Memory: 8, Time: 1, Threads: 1}

func assertMember(ctx context.Context, t *testing.T, st *store.Store, room, user string, want bool) {
	t.Helper()
	r, err := st.Room(ctx, room, user)
	if err != nil {
		t.Fatal(err)
	}
	if r.Member() != want {
		t.Fatalf("member of %s: %v, want %v", room, r.Member(), want)
	}
}

func membershipOf(t *testing.T, payload []byte) string {
	t.Helper()
	e, err := event.Decode(payload)
	if err != nil {
		t.Fatal(err)
	}
	m, err := event.As[event.MembershipChanged](e)
	if err != nil {
		t.Fatal(err)
	}
	return m.User + " " + m.Change
}

// readAll returns the membership changes on every partition of topic up to its current end,
// as "user change", in offset order per partition (all of this test's are on one: key r1).
func readAll(ctx context.Context, t *testing.T, env *stacktest.Env, topic string) []string {
	t.Helper()
	client := env.Client()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		t.Fatalf("metadata: %v", err)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, po := range res.Topics[topic] {
		if po.LastOffset == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: env.Brokers, Dialer: env.ReaderDialer(), Topic: topic, Partition: po.Partition, MaxWait: consumer.ReaderMaxWait(100 * time.Millisecond)})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read %s/%d: %v", topic, po.Partition, err)
			}
			out = append(out, membershipOf(t, m.Value))
			if m.Offset+1 >= po.LastOffset {
				break
			}
		}
		_ = r.Close()
	}
	return out
}
