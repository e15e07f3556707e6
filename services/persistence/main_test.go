package main_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"

	"github.com/kchat/kchat/services/persistence/internal/chattest"
)

// stack is one test's database, topics and persistence binary.
type stack struct {
	env    *stacktest.Env
	dbURL  string
	pool   *pgxpool.Pool
	topic  func(string) string
	group  string
	bin    string
	rooms  []string
	sent   []event.Envelope
	prod   *producer.Producer
	sentMu sync.Mutex
}

func newStack(t *testing.T, rooms int) *stack {
	t.Helper()
	env := stacktest.Get(t)
	s := &stack{env: env, dbURL: env.NewDatabase(t), topic: env.Topics(t), group: stacktest.UniqueName("persistence-")}
	s.pool = chattest.Pool(t, s.dbURL)
	users := []string{"u-0", "u-1", "u-2", "u-3", "u-4"}
	var rs []chattest.Room
	for i := range rooms {
		id := fmt.Sprintf("room-%02d", i)
		s.rooms = append(s.rooms, id)
		rs = append(rs, chattest.Room{ID: id, Members: users})
	}
	chattest.Seed(t, s.pool, rs...)
	prod, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prod.Close() })
	s.prod = prod
	s.bin = env.Build(t, "./services/persistence")
	return s
}

// produce submits n messages round-robin over the rooms, each room's in order.
func (s *stack) produce(t *testing.T, n int) {
	t.Helper()
	if err := s.send(n); err != nil {
		t.Fatal(err)
	}
}

// send is produce for goroutines, which must not call t.Fatal.
func (s *stack) send(n int) error {
	s.sentMu.Lock()
	defer s.sentMu.Unlock()
	msgs := make([]kafka.Message, 0, n)
	var es []event.Envelope
	for k := range n {
		i := len(s.sent) + k
		room := s.rooms[i%len(s.rooms)]
		e, err := event.New("kchat/gateway/test", event.MessageSubmitted{
			RoomID: room, Sender: fmt.Sprintf("u-%d", i%5), SenderName: "User", ClientMsgID: strconv.Itoa(i),
			Text: fmt.Sprintf("message %d <&> in %s", i, room), Kind: event.KindMessage, SubmittedAt: time.Now(),
		})
		if err != nil {
			return err
		}
		m, err := producer.Message(s.topic(topics.Submitted), room, e)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
		es = append(es, e)
	}
	for chunk := range slices.Chunk(msgs, 500) {
		if err := s.prod.Write(context.Background(), chunk...); err != nil {
			return err
		}
	}
	s.sent = append(s.sent, es...)
	return nil
}

// start runs persistence on this stack's database and topics.
func (s *stack) start(t *testing.T, name string, args ...string) (*stacktest.Process, string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
	args = append([]string{
		"-brokers", strings.Join(s.env.Brokers, ","),
		"-database-url", s.dbURL,
		"-topic-prefix", s.topic(""),
		"-group", s.group,
		"-http-addr", addr,
		"-batch-size", "100",
	}, args...)
	bin := s.bin
	for _, a := range args {
		if strings.HasPrefix(a, "-fault-") {
			// The fault flags exist only in builds with the faults tag (faults.go).
			bin = s.env.Build(t, "./services/persistence", "faults")
		}
	}
	p := s.env.Start(t, name, bin, nil, args...)
	return p, addr
}

// TestFaultFlagsOnlyInTestBuilds: a production build (no faults tag) has no fault flags.
func TestFaultFlagsOnlyInTestBuilds(t *testing.T) {
	env := stacktest.Get(t)
	out, err := exec.Command(env.Build(t, "./services/persistence"), "-fault-crash-in-batch", "1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "flag provided but not defined: -fault-crash-in-batch") {
		t.Fatalf("production build accepted a fault flag (err %v):\n%s", err, out)
	}
}

func waitExit(t *testing.T, p *stacktest.Process, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !p.Exited() {
		if time.Now().After(deadline) {
			t.Fatalf("process still running after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *stack) count(t *testing.T, sql string) int { return chattest.Count(t, s.pool, sql) }

func (s *stack) waitCount(t *testing.T, sql string, want int, timeout time.Duration) {
	t.Helper()
	chattest.Eventually(t, timeout, func() error {
		if n := s.count(t, sql); n != want {
			return fmt.Errorf("%s = %d, want %d", sql, n, want)
		}
		return nil
	})
}

// checkStored asserts that every submitted event is stored exactly once, that every
// room's timeline is 1..k without gaps in the order the room's events were submitted,
// and that each entry has exactly one outbox row carrying its message.stored event.
func (s *stack) checkStored(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	type entry struct {
		room string
		seq  int64
	}
	stored := map[string]entry{}
	rows, err := s.pool.Query(ctx, `SELECT event_id, room_id, seq FROM messages ORDER BY room_id, seq`)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]int64{}
	lastSent := map[string]int{}
	index := map[string]int{}
	for i, e := range s.sent {
		index[e.ID] = i
	}
	for rows.Next() {
		var id string
		var e entry
		if err := rows.Scan(&id, &e.room, &e.seq); err != nil {
			t.Fatal(err)
		}
		stored[id] = e
		if e.seq != last[e.room]+1 {
			t.Errorf("room %s: seq %d follows %d", e.room, e.seq, last[e.room])
		}
		last[e.room] = e.seq
		i, ok := index[id]
		if !ok {
			t.Errorf("stored event %s was never submitted", id)
		} else if e.seq > 1 && i <= lastSent[e.room] {
			t.Errorf("room %s: seq %d holds submission #%d, submitted before #%d at seq %d", e.room, e.seq, i, lastSent[e.room], e.seq-1)
		}
		lastSent[e.room] = i
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(s.sent) {
		t.Errorf("%d events stored, %d submitted", len(stored), len(s.sent))
	}

	perEntry := map[string]int{}
	rows, err = s.pool.Query(ctx, `SELECT payload FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			t.Fatal(err)
		}
		p := storedPayload(t, payload)
		if want, ok := stored[p.MessageID]; !ok || want != (entry{p.RoomID, p.Seq}) {
			t.Errorf("outbox event for %s at %s/%d does not match its timeline entry %+v", p.MessageID, p.RoomID, p.Seq, want)
		}
		perEntry[p.MessageID]++
	}
	for id := range stored {
		if perEntry[id] != 1 {
			t.Errorf("entry %s has %d outbox rows", id, perEntry[id])
		}
	}
}

func storedPayload(t *testing.T, b []byte) event.MessageStored {
	t.Helper()
	e, err := event.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	p, err := event.As[event.MessageStored](e)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A SIGKILL in the middle of a batch transaction loses nothing and duplicates nothing:
// the transaction rolls back, its offsets were never committed, and the restarted
// process stores the batch again.
func TestCrash_store_mid_batch(t *testing.T) {
	const events = 2000
	s := newStack(t, 20)
	s.produce(t, events)

	p1, _ := s.start(t, "persistence-crashing", "-fault-crash-in-batch", "3")
	waitExit(t, p1, 2*time.Minute)
	if code := p1.ExitCode(); code != -1 || !strings.Contains(p1.Output(), "fault injection") {
		t.Fatalf("first run exited with %d, want death by SIGKILL from the fault\n%s", code, p1.Output())
	}
	atCrash := s.count(t, "SELECT count(*) FROM messages")
	if n := s.count(t, "SELECT count(*) FROM processed_events"); n != atCrash {
		t.Errorf("after the crash: %d inbox entries for %d messages", n, atCrash)
	}
	if n := s.count(t, "SELECT count(*) FROM outbox"); n != atCrash {
		t.Errorf("after the crash: %d outbox rows for %d messages", n, atCrash)
	}
	t.Logf("crashed in batch 3 with %d of %d events stored", atCrash, events)

	s.start(t, "persistence")
	s.waitCount(t, "SELECT count(*) FROM messages", events, 3*time.Minute)
	// Anything that would wrongly store twice does so before its offset is committed: once
	// the group has committed every offset, nothing more will be stored.
	s.waitCommitted(t, time.Minute)
	s.checkStored(t)
}

// A SIGKILL between the Kafka ack and marking the rows published republishes those rows:
// consumers see duplicates, byte-identical to the first copies, and deduplicating by
// (room_id, seq) gives exactly the stored timeline with no gaps. Both publishing paths:
// the relay alone, and the direct publish after commit whose rows the relay takes over
// once their relay_after passes.
func TestCrash_after_publish(t *testing.T) {
	tests := []struct {
		name  string
		crash func(t *testing.T, s *stack)
		// wantDups: the crash point guarantees republished rows.
		wantDups bool
	}{
		{name: "relay", wantDups: true, crash: func(t *testing.T, s *stack) {
			p1, _ := s.start(t, "persistence-crashing", "-direct-publish=false", "-fault-crash-after-publish", "2")
			waitExit(t, p1, 2*time.Minute)
			if code := p1.ExitCode(); code != -1 || !strings.Contains(p1.Output(), "fault injection") {
				t.Fatalf("first run exited with %d, want death by SIGKILL from the fault\n%s", code, p1.Output())
			}
		}},
		{name: "direct", crash: func(t *testing.T, s *stack) {
			p1, _ := s.start(t, "persistence-crashing", "-relay-grace", "1s")
			// Killed while it stores and publishes: some transactions committed, some of
			// those acknowledged by Kafka, few of them marked yet.
			s.waitCount(t, "SELECT least(count(*), 1) FROM outbox WHERE published_at IS NOT NULL", 1, 2*time.Minute)
			p1.Kill()
			waitExit(t, p1, time.Minute)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testCrashAfterPublish(t, tt.crash, tt.wantDups) })
	}
}

func testCrashAfterPublish(t *testing.T, crash func(*testing.T, *stack), wantDups bool) {
	const events = 2000
	s := newStack(t, 20)
	c := chattest.Collect(t, s.env, s.topic(topics.Stored))
	s.produce(t, events)

	crash(t, s)
	s.start(t, "persistence", "-relay-grace", "1s")
	s.waitCount(t, "SELECT count(*) FROM messages", events, 3*time.Minute)
	s.waitCount(t, "SELECT count(*) FROM outbox WHERE published_at IS NULL", 0, time.Minute)
	s.checkStored(t)

	type key struct {
		room string
		seq  int64
	}
	unique := func(rs []kafka.Message) map[key]kafka.Message {
		first := map[key]kafka.Message{}
		for _, m := range rs {
			p := storedPayload(t, m.Value)
			if _, ok := first[key{p.RoomID, p.Seq}]; !ok {
				first[key{p.RoomID, p.Seq}] = m
			}
		}
		return first
	}
	c.WaitFor(t, time.Minute, "every stored entry on chat.stored", func(rs []kafka.Message) bool { return len(unique(rs)) >= events })
	// Every outbox row published: each write of it (a republished copy too) was
	// acknowledged, so reading up to the end offsets sees them all.
	chattest.Eventually(t, time.Minute, func() error {
		if n := s.count(t, "SELECT count(*) FROM outbox WHERE published_at IS NULL"); n > 0 {
			return fmt.Errorf("%d outbox rows pending", n)
		}
		return nil
	})
	rs := c.CaughtUp(t, time.Minute)
	first := unique(rs)

	// Walk each partition as a consumer with a per-room cursor would.
	cursor := map[string]int64{}
	dups := 0
	for _, m := range rs {
		p := storedPayload(t, m.Value)
		k := key{p.RoomID, p.Seq}
		if p.Seq <= cursor[p.RoomID] {
			dups++
			f := first[k]
			if !bytes.Equal(f.Value, m.Value) || !slices.EqualFunc(f.Headers, m.Headers, headerEqual) {
				t.Errorf("duplicate of %s/%d differs from the first copy:\n%s\n%s", k.room, k.seq, f.Value, m.Value)
			}
			continue
		}
		if p.Seq != cursor[p.RoomID]+1 {
			t.Errorf("room %s: gap, seq %d after %d", p.RoomID, p.Seq, cursor[p.RoomID])
		}
		cursor[p.RoomID] = p.Seq
	}
	t.Logf("chat.stored: %d records for %d stored events: %d duplicates from the relay crash", len(rs), events, dups)
	if wantDups && dups == 0 {
		t.Error("expected the relay crash to republish the rows of its last write")
	}
	if dups != len(rs)-len(first) {
		t.Errorf("%d duplicates by cursor, %d by (room, seq)", dups, len(rs)-len(first))
	}

	// Deduplicated, the topic is exactly the stored timeline.
	rows, err := s.pool.Query(context.Background(), `SELECT room_id, seq, event_id FROM messages`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var k key
		var id string
		if err := rows.Scan(&k.room, &k.seq, &id); err != nil {
			t.Fatal(err)
		}
		n++
		m, ok := first[k]
		if !ok {
			t.Errorf("%s/%d (%s) is missing from chat.stored", k.room, k.seq, id)
		} else if p := storedPayload(t, m.Value); p.MessageID != id {
			t.Errorf("%s/%d on chat.stored is message %s, stored %s", k.room, k.seq, p.MessageID, id)
		}
	}
	if n != len(first) {
		t.Errorf("%d stored entries, %d distinct on chat.stored", n, len(first))
	}
}

func headerEqual(a, b kafka.Header) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }

// SIGTERM while events keep arriving: the process finishes and commits its batch and
// exits 0, and the committed offsets cover exactly what it stored, so a restart finds
// nothing redelivered.
func TestGracefulShutdown_commits_what_it_stored(t *testing.T) {
	s := newStack(t, 20)
	s.produce(t, 500)
	p1, _ := s.start(t, "persistence-1", "-batch-size", "20")
	s.waitCount(t, "SELECT least(count(*), 500) FROM messages", 500, 2*time.Minute)

	// Keep producing while the signal arrives.
	ctx, stopProducing := context.WithCancel(context.Background())
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for ctx.Err() == nil {
			if err := s.send(50); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	// The signal arrives while the new events are being stored.
	s.waitCount(t, "SELECT least(count(*), 600) FROM messages", 600, time.Minute)
	p1.Signal(syscall.SIGTERM)
	waitExit(t, p1, 45*time.Second)
	stopProducing()
	<-produced
	if code := p1.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	stored := s.count(t, "SELECT count(*) FROM processed_events")
	total := len(s.sent)
	t.Logf("stopped with %d of %d submitted events stored", stored, total)
	if stored >= total {
		t.Log("warning: everything was stored before the signal; the test proves less than it should")
	}

	committed, records := s.offsets(t)
	if records != total {
		t.Fatalf("chat.submitted holds %d records for %d submitted events (producer retries?)", records, total)
	}
	if committed != stored {
		t.Errorf("committed offsets cover %d records, %d were stored", committed, stored)
	}

	_, addr := s.start(t, "persistence-2")
	s.waitCount(t, "SELECT count(*) FROM messages", total, 2*time.Minute)
	s.checkStored(t)
	if dup := metric(t, addr, `kchat_persistence_duplicates_total{reason="redelivered"}`); dup != 0 {
		t.Errorf("restart saw %v redelivered events", dup)
	}
}

// waitCommitted waits until the group has committed the end offset of every partition of
// chat.submitted: everything produced so far was handled.
func (s *stack) waitCommitted(t *testing.T, timeout time.Duration) {
	t.Helper()
	chattest.Eventually(t, timeout, func() error {
		if committed, end := s.offsets(t); committed < end {
			return fmt.Errorf("group committed %d of %d offsets", committed, end)
		}
		return nil
	})
}

// offsets returns the sum of the group's committed offsets and of the end offsets of
// chat.submitted (every partition starts at 0 in a fresh topic).
func (s *stack) offsets(t *testing.T) (committed, end int) {
	t.Helper()
	ctx := context.Background()
	client := s.env.Client()
	topic := s.topic(topics.Submitted)
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	var parts []int
	var offReqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		parts = append(parts, p.ID)
		offReqs = append(offReqs, kafka.LastOffsetOf(p.ID))
	}
	of, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: s.group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range of.Topics[topic] {
		if p.Error != nil {
			t.Fatal(p.Error)
		}
		if p.CommittedOffset > 0 {
			committed += int(p.CommittedOffset)
		}
	}
	lo, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: offReqs}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range lo.Topics[topic] {
		if p.Error != nil {
			t.Fatal(p.Error)
		}
		end += int(p.LastOffset)
	}
	return committed, end
}

// metric scrapes one sample from /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	stacktest.WaitHTTP(t, "http://"+addr+"/readyz", 30*time.Second)
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// An event that can never be stored goes to the dead-letter topic with its reason, and
// the rest of its batch is stored: one poison event does not block its partition.
func TestPoisonEvent_dead_lettered(t *testing.T) {
	s := newStack(t, 4)
	dlq := chattest.Collect(t, s.env, s.topic(topics.DLQ))
	s.produce(t, 100)
	poison := chattest.Message(t, "room-that-does-not-exist", "u-0", "p-1", "hello?")
	m, err := producer.Message(s.topic(topics.Submitted), poison.Subject, poison)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.prod.Write(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	s.produce(t, 100)

	s.start(t, "persistence")
	s.waitCount(t, "SELECT count(*) FROM messages", 200, 2*time.Minute)
	rs := dlq.WaitFor(t, 30*time.Second, "the dead letter", func(rs []kafka.Message) bool { return len(rs) > 0 })
	s.checkStored(t)
	if len(rs) != 1 || !bytes.Equal(rs[0].Value, m.Value) {
		t.Fatalf("dead letters: %d, want the poison event", len(rs))
	}
	hs := map[string]string{}
	for _, h := range rs[0].Headers {
		hs[h.Key] = string(h.Value)
	}
	if !strings.Contains(hs["dlq_reason"], "unknown room") || hs["dlq_consumer"] != "persistence" || hs[event.HeaderID] != poison.ID {
		t.Errorf("dead-letter headers %v", hs)
	}
}
