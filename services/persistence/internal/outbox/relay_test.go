package outbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"

	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/services/persistence/internal/chattest"
	"github.com/kchat/kchat/services/persistence/internal/store"
)

// fixture is a test database with rooms, a stored topic, and helpers to fill the outbox
// through the real store and to watch the topic.
type fixture struct {
	env     *stacktest.Env
	pool    *pgxpool.Pool
	topic   string
	prod    *producer.Producer
	rooms   []string
	counter atomic.Int64
}

func newFixture(t *testing.T, rooms int) *fixture {
	t.Helper()
	env := stacktest.Get(t)
	f := &fixture{env: env, pool: chattest.Pool(t, env.NewDatabase(t)), topic: env.Topics(t)(topics.Stored)}
	var rs []chattest.Room
	for i := range rooms {
		id := fmt.Sprintf("room-%02d", i)
		f.rooms = append(f.rooms, id)
		rs = append(rs, chattest.Room{ID: id, Members: []string{"u-alice"}})
	}
	chattest.Seed(t, f.pool, rs...)
	prod, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prod.Close() })
	f.prod = prod
	return f
}

func (f *fixture) store(t *testing.T, beforeCommit func(int64)) *store.Store {
	t.Helper()
	st, err := store.New(f.pool, store.Config{Topic: f.topic, BeforeCommit: beforeCommit})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// batch builds n message events spread over the given rooms.
func (f *fixture) batch(t *testing.T, n int, rooms ...string) []event.Envelope {
	t.Helper()
	if len(rooms) == 0 {
		rooms = f.rooms
	}
	es := make([]event.Envelope, n)
	for i := range es {
		c := f.counter.Add(1)
		es[i] = chattest.Message(t, rooms[int(c)%len(rooms)], "u-alice", fmt.Sprint(c), "hello")
	}
	return es
}

// countingPublisher counts what one relay wrote.
type countingPublisher struct {
	outbox.Publisher
	n atomic.Int64
}

func (c *countingPublisher) Write(ctx context.Context, msgs ...kafka.Message) error {
	err := c.Publisher.Write(ctx, msgs...)
	if err == nil {
		c.n.Add(int64(len(msgs)))
	}
	return err
}

// startRelay runs a relay until the test ends.
func (f *fixture) startRelay(t *testing.T, name string, cfg outbox.Config) (*outbox.Relay, *countingPublisher) {
	t.Helper()
	pub := &countingPublisher{Publisher: f.prod}
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("relay", name)
	r, err := outbox.New(f.pool, pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay %s: %v", name, err)
		}
	})
	return r, pub
}

func (f *fixture) pending(t *testing.T) int {
	return chattest.Count(t, f.pool, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
}

// gauge reads a gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// checkTopic asserts that the topic holds every stored entry exactly once, in seq order
// per room, and returns how many records it read.
func (f *fixture) checkTopic(t *testing.T, c *chattest.Collector) {
	t.Helper()
	chattest.Eventually(t, 30*time.Second, func() error {
		if n := f.pending(t); n > 0 {
			return fmt.Errorf("%d rows pending", n)
		}
		return nil
	})
	want := chattest.Count(t, f.pool, "SELECT count(*) FROM messages")
	// Every row is marked published, so every write of it (a duplicate too) was acknowledged
	// before now: reading up to the end offsets sees them all.
	rs := c.CaughtUp(t, 30*time.Second)
	if len(rs) != want {
		t.Errorf("topic holds %d records for %d stored entries", len(rs), want)
	}
	last := map[string]int64{}
	for _, m := range rs {
		e, err := event.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		p, err := event.As[event.MessageStored](e)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != p.RoomID {
			t.Errorf("record key %q for room %s", m.Key, p.RoomID)
		}
		if p.Seq != last[p.RoomID]+1 {
			t.Errorf("room %s: seq %d after %d", p.RoomID, p.Seq, last[p.RoomID])
		}
		last[p.RoomID] = p.Seq
	}
}

// Rows become visible in commit order, not in id or txid order. The relay must hold back
// rows of a later transaction while an earlier one is still open, then publish all of
// them exactly once, each room in seq order.
func TestRelay_out_of_order_commits(t *testing.T) {
	f := newFixture(t, 6)
	c := chattest.Collect(t, f.env, f.topic)
	reg := prometheus.NewRegistry()
	f.startRelay(t, "only", outbox.Config{Metrics: outbox.NewMetrics(reg)})
	ctx := context.Background()

	// tx1 writes its rows (room-00) and stops before COMMIT; tx2 (room-01) commits first.
	inTx1, release := make(chan struct{}), make(chan struct{})
	slow := f.store(t, func(int64) { close(inTx1); <-release })
	tx1 := make(chan error, 1)
	go func() { tx1 <- slow.HandleBatch(ctx, chattest.Consumed(t, f.batch(t, 5, "room-00")...)) }()
	<-inTx1
	if err := f.store(t, nil).HandleBatch(ctx, chattest.Consumed(t, f.batch(t, 5, "room-01")...)); err != nil {
		t.Fatal(err)
	}
	// The relay reports room-01's committed rows as pending for a second: it ran rounds
	// after their commit (woken by it, then every poll interval) and held them back.
	chattest.Eventually(t, 20*time.Second, func() error {
		if lag := gauge(t, reg, "kchat_outbox_lag_seconds"); lag < 1 {
			return fmt.Errorf("relay lag %.2fs, want a second of held-back rows", lag)
		}
		return nil
	})
	if rs := c.CaughtUp(t, 10*time.Second); len(rs) != 0 {
		t.Fatalf("%d records published while an older transaction was still open", len(rs))
	}
	close(release)
	if err := <-tx1; err != nil {
		t.Fatal(err)
	}
	chattest.Eventually(t, 10*time.Second, func() error {
		if n := f.pending(t); n > 0 {
			return fmt.Errorf("%d rows pending", n)
		}
		return nil
	})

	// Many concurrent transactions on shared rooms, committing in random order.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		batches := make([][]event.Envelope, 10)
		for i := range batches {
			batches[i] = f.batch(t, 10)
		}
		st := f.store(t, func(int64) { time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, b := range batches {
				if err := st.HandleBatch(ctx, chattest.Consumed(t, b...)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	f.checkTopic(t, c)
	if n := chattest.Count(t, f.pool, "SELECT count(*) FROM messages"); n != 810 {
		t.Errorf("%d stored, want 810", n)
	}
}

// Two relays on one database: only the lock holder publishes.
func TestRelay_single_active(t *testing.T) {
	f := newFixture(t, 10)
	c := chattest.Collect(t, f.env, f.topic)
	ra, pa := f.startRelay(t, "a", outbox.Config{})
	rb, pb := f.startRelay(t, "b", outbox.Config{})
	st := f.store(t, nil)
	for range 20 {
		if err := st.HandleBatch(context.Background(), chattest.Consumed(t, f.batch(t, 25)...)); err != nil {
			t.Fatal(err)
		}
	}
	chattest.Eventually(t, 20*time.Second, func() error {
		if n := f.pending(t); n > 0 {
			return fmt.Errorf("%d rows pending", n)
		}
		return nil
	})
	f.checkTopic(t, c)
	if ra.Active() == rb.Active() {
		t.Errorf("active: a=%v b=%v, want exactly one", ra.Active(), rb.Active())
	}
	if a, b := pa.n.Load(), pb.n.Load(); (a == 0) == (b == 0) || a+b != 500 {
		t.Errorf("published: a=%d b=%d, want 500 by exactly one of them", a, b)
	}
}

// When the holder's session dies, PostgreSQL releases its lock and the standby takes over.
func TestRelay_failover_when_holder_connection_dies(t *testing.T) {
	f := newFixture(t, 10)
	c := chattest.Collect(t, f.env, f.topic)
	// a reconnects slowly, so that the standby's next lock attempt (every second) wins.
	ra, pa := f.startRelay(t, "a", outbox.Config{ReconnectDelay: 10 * time.Second})
	chattest.Eventually(t, 10*time.Second, func() error {
		if !ra.Active() {
			return fmt.Errorf("relay a not active")
		}
		return nil
	})
	rb, pb := f.startRelay(t, "b", outbox.Config{})
	st := f.store(t, nil)
	storeAndRelay := func(n int) {
		for range n {
			if err := st.HandleBatch(context.Background(), chattest.Consumed(t, f.batch(t, 20)...)); err != nil {
				t.Fatal(err)
			}
		}
		chattest.Eventually(t, 20*time.Second, func() error {
			if n := f.pending(t); n > 0 {
				return fmt.Errorf("%d rows pending", n)
			}
			return nil
		})
	}
	storeAndRelay(5)
	if pa.n.Load() != 100 || pb.n.Load() != 0 || rb.Active() {
		t.Fatalf("before the failure: a published %d, b %d (active %v); want 100 by a", pa.n.Load(), pb.n.Load(), rb.Active())
	}

	// Kill a's session from the server side, as a crashed host's connection would end.
	var pid int
	if err := f.pool.QueryRow(context.Background(), `
		SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND (classid::bigint << 32 | objid::bigint) = $1`, outbox.DefaultLockKey).Scan(&pid); err != nil {
		t.Fatalf("finding the lock holder: %v", err)
	}
	killed := time.Now()
	if _, err := f.pool.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	chattest.Eventually(t, 5*time.Second, func() error {
		if !rb.Active() {
			return fmt.Errorf("relay b did not take over")
		}
		return nil
	})
	t.Logf("relay b took over %s after the holder's backend was terminated", time.Since(killed).Round(10*time.Millisecond))
	storeAndRelay(5)
	if pa.n.Load() != 100 || pb.n.Load() != 100 {
		t.Errorf("after the failover: a published %d, b %d; want 100 each", pa.n.Load(), pb.n.Load())
	}
	f.checkTopic(t, c)
}

// flakyPublisher fails its first writes, as Kafka does while unavailable.
type flakyPublisher struct {
	outbox.Publisher
	failures atomic.Int64
}

func (f *flakyPublisher) Write(ctx context.Context, msgs ...kafka.Message) error {
	if f.failures.Add(-1) >= 0 {
		return fmt.Errorf("kafka unavailable (injected)")
	}
	return f.Publisher.Write(ctx, msgs...)
}

// While Kafka fails the relay keeps its lock (a standby could do no better) and retries;
// nothing is lost or duplicated.
func TestRelay_kafka_failure_keeps_lock(t *testing.T) {
	f := newFixture(t, 4)
	c := chattest.Collect(t, f.env, f.topic)
	pub := &flakyPublisher{Publisher: f.prod}
	pub.failures.Store(3)
	r, err := outbox.New(f.pool, pub, outbox.Config{ReconnectDelay: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if err := f.store(t, nil).HandleBatch(context.Background(), chattest.Consumed(t, f.batch(t, 40)...)); err != nil {
		t.Fatal(err)
	}
	chattest.Eventually(t, 20*time.Second, func() error {
		if n := f.pending(t); n > 0 {
			return fmt.Errorf("%d rows pending", n)
		}
		return nil
	})
	if !r.Active() {
		t.Error("relay gave up its lock")
	}
	if n := pub.failures.Load(); n >= 0 {
		t.Errorf("injected failures left unused: %d", n+1)
	}
	// The holder's backend is still the first one: the session survived the failures.
	if n := chattest.Count(t, f.pool, `SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'kchat-persistence-relay' AND datname = current_database()`); n != 1 {
		t.Errorf("%d relay sessions, want the original one", n)
	}
	f.checkTopic(t, c)
}
