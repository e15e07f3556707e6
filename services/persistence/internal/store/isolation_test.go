package store_test

import (
	"context"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"

	"github.com/kchat/kchat/services/persistence/internal/chattest"
)

// PostgreSQL restarts while the runner isolates the messages of a batch that failed
// permanently (one event of an unknown room): the isolation meets connection errors, which
// are transient, so only the poison event is dead-lettered and every valid one is stored
// exactly once. Before, each isolated message had a bounded retry and then went to the
// dead-letter topic, so the restart dead-lettered accepted messages.
func TestBatchRunner_postgres_restart_during_isolation_dead_letters_nothing_valid(t *testing.T) {
	env := stacktest.Get(t)
	if env.Stack == nil {
		t.Skip("restarts PostgreSQL: only on the repository's own local stack")
	}
	env.ExclusiveFaults(t)
	st, pool := newStore(t)
	names := env.Topics(t)
	submitted, dlq := names(topics.Submitted), names(topics.DLQ)
	prod, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prod.Close() })

	const n = 20
	var es []event.Envelope
	for i := range n {
		if i == 5 {
			es = append(es, chattest.Message(t, "room-nowhere", "u-alice", "poison", "lost")) // ErrUnknownRoom
			continue
		}
		es = append(es, chattest.Message(t, "room-a", "u-alice", string(rune('a'+i)), "hello"))
	}
	poison := es[5].ID
	msgs := make([]kafka.Message, len(es))
	for i, e := range es {
		if msgs[i], err = producer.Message(submitted, "room-a", e); err != nil { // one partition, one batch
			t.Fatal(err)
		}
	}
	if err := prod.Write(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}

	pg, err := url.Parse(env.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	isolating, restarted := false, false
	transient := 0
	restartDone := make(chan error, 1)
	bh := func(ctx context.Context, ms []*consumer.Message) error {
		mu.Lock()
		restart := isolating && !restarted
		restarted = restarted || restart
		mu.Unlock()
		if restart {
			go func() { restartDone <- env.Stack.RestartPostgres(context.Background(), false) }()
			waitRefused(t, pg.Host)
		}
		err := st.HandleBatch(ctx, ms)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case consumer.IsPermanent(err) && len(ms) > 1:
			isolating = true
		case err != nil && !consumer.IsPermanent(err):
			transient++
		}
		return err
	}
	// Fast retries: a bounded retry budget would be spent long before PostgreSQL is back.
	retry := consumer.Retry{InitialInterval: 10 * time.Millisecond, MaxInterval: 200 * time.Millisecond}
	r, err := consumer.NewBatch(consumer.Config{Brokers: env.Brokers, Security: env.Security, GroupID: stacktest.UniqueName("g-"), Topics: []string{submitted},
		BatchSize: 100, BatchLinger: 300 * time.Millisecond, SessionTimeout: 6 * time.Second}, bh, retry,
		consumer.DeadLetter(prod, dlq, "persistence", nil), retry.Middleware, consumer.Recover(), consumer.Decode())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	stored := func() int {
		var c int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM messages`).Scan(&c); err != nil {
			return -1 // PostgreSQL is restarting
		}
		return c
	}
	// Done when every event is accounted for: stored, or dead-lettered.
	deadline := time.Now().Add(2 * time.Minute)
	for stored()+len(readAll(t, env, dlq)) < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if !restarted {
		t.Fatal("the batch was never isolated, so PostgreSQL was not restarted during an isolation")
	}
	if transient == 0 {
		t.Error("no transient failure seen: the restart did not hit the isolation")
	}
	mu.Unlock()
	if err := <-restartDone; err != nil {
		t.Fatalf("restarting PostgreSQL: %v", err)
	}
	if got := chattest.Count(t, pool, `SELECT count(*) FROM messages`); got != n-1 {
		t.Errorf("%d messages stored, want %d", got, n-1)
	}
	if got := chattest.Count(t, pool, `SELECT count(DISTINCT event_id) FROM messages`); got != n-1 {
		t.Errorf("%d distinct events stored, want %d", got, n-1)
	}
	dls := readAll(t, env, dlq)
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want only the poison event", len(dls))
	}
	for _, h := range dls[0].Headers {
		if h.Key == event.HeaderID && string(h.Value) != poison {
			t.Fatalf("dead letter %s, want the poison event %s", h.Value, poison)
		}
	}
}

// waitRefused waits until nothing accepts connections on addr (PostgreSQL is down).
func waitRefused(t *testing.T, addr string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	t.Error("PostgreSQL did not go down within 30s")
}

// readAll returns every record of topic up to its end offsets at the time of the call.
func readAll(t *testing.T, env *stacktest.Env, topic string) []kafka.Message {
	t.Helper()
	client := env.Client()
	md, err := client.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	var out []kafka.Message
	for _, p := range md.Topics[0].Partitions {
		res, err := client.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
			topic: {kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID)}}})
		if err != nil {
			t.Fatal(err)
		}
		po := res.Topics[topic][0]
		if po.LastOffset == po.FirstOffset {
			continue
		}
		rd := kafka.NewReader(kafka.ReaderConfig{Brokers: env.Brokers, Dialer: env.ReaderDialer(), Topic: topic, Partition: p.ID, MaxWait: consumer.ReaderMaxWait(200 * time.Millisecond)})
		if err := rd.SetOffset(po.FirstOffset); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for off := po.FirstOffset; off < po.LastOffset; off++ {
			m, err := rd.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("reading %s/%d: %v", topic, p.ID, err)
			}
			out = append(out, m)
		}
		cancel()
		rd.Close()
	}
	return out
}
