package cli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/presence"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/tools/chatctl/internal/cli"
	"github.com/kchat/kchat/tools/chatctl/internal/logread"
)

// storedEvent builds a message.stored as the outbox relay publishes it.
func storedEvent(t *testing.T, room string, seq int64, kind, sender, text string, members ...string) kafkaEvent {
	t.Helper()
	roomKind := event.RoomKindRoom
	if len(members) > 0 {
		roomKind = event.RoomKindDM
	}
	now := time.Now().UTC()
	e, err := event.New("kchat/persistence", event.MessageStored{RoomID: room, Seq: seq, Kind: kind, MessageID: fmt.Sprintf("m-%s-%d", room, seq),
		Sender: sender, SenderName: strings.TrimPrefix(sender, "u-"), Text: text, RoomKind: roomKind, Members: members, SentAt: now, StoredAt: now})
	if err != nil {
		t.Fatal(err)
	}
	return kafkaEvent{room: room, env: e}
}

type kafkaEvent struct {
	room string
	env  event.Envelope
}

func publish(t *testing.T, prod *producer.Producer, topic string, es ...kafkaEvent) {
	t.Helper()
	msgs := make([]kafka.Message, len(es))
	for i, e := range es {
		m, err := producer.Message(topic, e.room, e.env)
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = m
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := prod.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// replayedSeqs runs chatctl replay -json and returns the seqs and offsets it printed.
func replayedSeqs(t *testing.T, vars map[string]string, args ...string) (seqs, offsets []int64) {
	t.Helper()
	code, out, errs := runLive(t, vars, append([]string{"replay", "-json"}, args...)...)
	if code != 0 {
		t.Fatalf("replay %v: exit %d\n%s%s", args, code, out, errs)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var line struct {
			Offset int64          `json:"offset"`
			Event  event.Envelope `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("replay -json line %q: %v", sc.Text(), err)
		}
		m, err := event.As[event.MessageStored](line.Event)
		if err != nil {
			t.Fatal(err)
		}
		seqs, offsets = append(seqs, m.Seq), append(offsets, line.Offset)
	}
	return seqs, offsets
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func TestLive_replay_room_by_time_and_offset(t *testing.T) {
	env := stacktest.Get(t)
	names := env.Topics(t)
	vars := withKafka(env, map[string]string{"KAFKA_BROKERS": strings.Join(env.Brokers, ","), "TOPIC_PREFIX": names("")})
	prod, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	stored := names(topics.Stored)
	// Two batches of the room, a second apart, interleaved with other rooms' events (some
	// of which share its partition).
	for seq := int64(1); seq <= 5; seq++ {
		publish(t, prod, stored, storedEvent(t, "replay-room", seq, event.KindMessage, "u-ann", fmt.Sprint("early ", seq)),
			storedEvent(t, fmt.Sprint("noise-", seq), 1, event.KindMessage, "u-bob", "noise"))
	}
	time.Sleep(1500 * time.Millisecond)
	since := time.Now().UTC()
	time.Sleep(10 * time.Millisecond)
	for seq := int64(6); seq <= 10; seq++ {
		publish(t, prod, stored, storedEvent(t, "replay-room", seq, event.KindMessage, "u-ann", fmt.Sprint("late ", seq)),
			storedEvent(t, fmt.Sprint("noise-", seq), 1, event.KindMessage, "u-bob", "noise"))
	}

	all, offsets := replayedSeqs(t, vars, "-room", "replay-room", "-since", "2000-01-01T00:00:00Z")
	if fmt.Sprint(all) != fmt.Sprint(seqRange(1, 10)) {
		t.Fatalf("-since long ago: seqs %v", all)
	}
	late, _ := replayedSeqs(t, vars, "-room", "replay-room", "-since", since.Format(time.RFC3339Nano))
	if fmt.Sprint(late) != fmt.Sprint(seqRange(6, 10)) {
		t.Fatalf("-since %s: seqs %v, want 6..10", since.Format(time.RFC3339Nano), late)
	}
	fromThird, _ := replayedSeqs(t, vars, "-room", "replay-room", "-offset", fmt.Sprint(offsets[2]))
	if fmt.Sprint(fromThird) != fmt.Sprint(seqRange(3, 10)) {
		t.Fatalf("-offset %d: seqs %v", offsets[2], fromThird)
	}
	future, _ := replayedSeqs(t, vars, "-room", "replay-room", "-since", time.Now().Add(time.Hour).Format(time.RFC3339))
	if len(future) != 0 {
		t.Fatalf("-since the future: %v", future)
	}

	// The table output and re-emitting into another topic.
	target := names(topics.Deliveries)
	code, out, errs := runLive(t, vars, "replay", "-room", "replay-room", "-offset", fmt.Sprint(offsets[0]), "-reemit", target)
	if code != 0 || !strings.Contains(out, "late 10") || !strings.Contains(errs, "10 events of room replay-room") {
		t.Fatalf("replay -reemit: exit %d\n%s%s", code, out, errs)
	}
	client := env.Client()
	ctx := context.Background()
	n, err := logread.Partitions(ctx, client, target)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for p := range n {
		first, end, err := logread.Bounds(ctx, client, target, p)
		if err != nil {
			t.Fatal(err)
		}
		total += end - first
	}
	if total != 10 {
		t.Fatalf("%d records re-emitted, want 10", total)
	}

	for _, bad := range [][]string{
		{"replay", "-since", "2000-01-01T00:00:00Z"},                               // no room
		{"replay", "-room", "r"},                                                   // neither -since nor -offset
		{"replay", "-room", "r", "-offset", "0", "-since", "2000-01-01T00:00:00Z"}, // both
		{"replay", "-room", "r", "-since", "yesterday"},                            // not RFC 3339
		{"replay", "-room", "r", "-offset", "0", "-reemit", names(topics.Stored)},  // into itself
		{"rebuild", "messages"},                                                    // unknown model
	} {
		if code, _, errs := runLive(t, vars, bad...); code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", bad, code, cli.ExitUsage, errs)
		}
	}
}

// TestLive_rebuild_notifications runs the real notification service over a stream of
// stored events (DMs, mentions, a notify_all room, joins and leaves, one recipient online),
// then rebuilds the read model from the log: it must equal the live table. Then a live row
// is removed, and the rebuild must say so.
func TestLive_rebuild_notifications(t *testing.T) {
	env := stacktest.Get(t)
	names := env.Topics(t)
	dbURL := env.NewDatabase(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	const rooms, perRoom = 8, 250 // 2000 message events, plus joins and leaves
	var seed strings.Builder
	seed.WriteString(`INSERT INTO users (id, username, password_hash) VALUES ('u-ann','ann','x'), ('u-bob','bob','x'), ('u-cat','cat','x'), ('u-dan','dan','x');
		INSERT INTO rooms (id, name, kind) VALUES ('dm-ab', 'ann & bob', 'dm');
		INSERT INTO room_members (room_id, user_id) VALUES ('dm-ab', 'u-ann'), ('dm-ab', 'u-bob');`)
	for r := range rooms {
		fmt.Fprintf(&seed, `INSERT INTO rooms (id, name, kind, notify_all) VALUES ('room-%d', 'room %d', 'room', %v);
			INSERT INTO room_members (room_id, user_id) VALUES ('room-%d', 'u-ann'), ('room-%d', 'u-bob'), ('room-%d', 'u-cat');`,
			r, r, r%2 == 0, r, r, r)
	}
	if _, err := pool.Exec(ctx, seed.String()); err != nil {
		t.Fatal(err)
	}
	prod, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	// cat has a tab open: the service records her as skipped, and the rebuild must agree.
	gw, err := presence.NewAnnouncer(prod, presence.AnnouncerConfig{GatewayID: "gw-test", Addr: "127.0.0.1:1", Topic: names(topics.Presence), Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stopPresence := context.WithCancel(ctx)
	defer stopPresence()
	go func() { _ = gw.Run(pctx) }()
	gw.Set("u-cat", "cat", 1)
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	if err := gw.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	cancel()

	bin := env.Build(t, "./services/notification")
	port := stacktest.FreePort(t)
	group := stacktest.UniqueName("notification-")
	env.Start(t, "notification", bin, nil, "-brokers", strings.Join(env.Brokers, ","), "-database-url", dbURL,
		"-http-addr", fmt.Sprintf("127.0.0.1:%d", port), "-topic-prefix", names(""), "-group", group, "-start-offset", "first")
	stacktest.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), time.Minute)

	// Two phases, as the gateways produce them: dan is added to every room (the gateway
	// writes room_members, then publishes the join) and is mentioned; then he leaves (the
	// row goes, then the leave entry) and is mentioned again, which must not notify him.
	seqs := map[string]int64{}
	next := func(room string) int64 { seqs[room]++; return seqs[room] }
	total := 0
	phase := func(membership string, change string, from, to int) {
		if _, err := pool.Exec(ctx, membership); err != nil {
			t.Fatal(err)
		}
		var es []kafkaEvent
		if from == 0 {
			es = append(es, storedEvent(t, "dm-ab", 1, event.KindMessage, "u-ann", "psst", "u-ann", "u-bob"))
		}
		for r := range rooms {
			room := fmt.Sprintf("room-%d", r)
			es = append(es, storedEvent(t, room, next(room), change, "u-dan", ""))
			for i := from; i < to; i++ {
				text := fmt.Sprintf("message %d", i)
				switch i % 4 {
				case 0:
					text += " @bob @dan"
				case 1:
					text += " @cat"
				case 2:
					text += " @nobody" // not a user: no notification, no error
				}
				es = append(es, storedEvent(t, room, next(room), event.KindMessage, []string{"u-ann", "u-bob"}[i%2], text))
			}
		}
		publish(t, prod, names(topics.Stored), es...)
		waitGroupDone(t, env, group, names(topics.Stored), 3*time.Minute)
		total += len(es)
	}
	phase(`INSERT INTO room_members (room_id, user_id) SELECT id, 'u-dan' FROM rooms WHERE kind = 'room'`, event.KindJoin, 0, perRoom/2)
	phase(`DELETE FROM room_members WHERE user_id = 'u-dan'`, event.KindLeave, perRoom/2, perRoom)

	vars := withKafka(env, map[string]string{"KAFKA_BROKERS": strings.Join(env.Brokers, ","), "TOPIC_PREFIX": names(""), "DATABASE_URL": dbURL})
	start := time.Now()
	code, out, errs := runLive(t, vars, "rebuild", "notifications")
	took := time.Since(start)
	if code != 0 || !strings.Contains(out, "no differences") {
		t.Fatalf("rebuild: exit %d\n%s%s", code, out, errs)
	}
	var live, skips int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM notifications`).Scan(&live)
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM notification_skips`).Scan(&skips)
	if live == 0 || skips == 0 {
		t.Fatalf("the scenario made %d notifications and %d skips; it should make both", live, skips)
	}
	t.Logf("rebuild of %d stored events (%d live notifications, %d skip decisions) took %s:\n%s", total, live, skips, took.Round(time.Millisecond), out)

	if _, err := pool.Exec(ctx, `DELETE FROM notifications WHERE id = (SELECT min(id) FROM notifications)`); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runLive(t, vars, "rebuild", "notifications", "-json")
	if code != cli.ExitError || !strings.Contains(errs, "1 missing, 0 extra, 0 changed") {
		t.Fatalf("rebuild after losing a row: exit %d\n%s%s", code, out, errs)
	}
}

// waitGroupDone waits until group has committed everything in topic.
func waitGroupDone(t *testing.T, env *stacktest.Env, group, topic string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := env.Client()
	n, err := logread.Partitions(ctx, client, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends := map[int]int64{}
	parts := make([]int, n)
	for p := range n {
		parts[p] = p
		if _, ends[p], err = logread.Bounds(ctx, client, topic, p); err != nil {
			t.Fatal(err)
		}
	}
	for {
		res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
		behind := int64(-1)
		if err == nil {
			behind = 0
			for _, p := range res.Topics[topic] {
				if end := ends[p.Partition]; end > 0 && p.CommittedOffset < end {
					behind += end - p.CommittedOffset
				}
			}
		}
		if behind == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("group %s still %d behind (%v)", group, behind, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
