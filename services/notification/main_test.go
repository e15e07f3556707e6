package main_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
)

// TestBinary runs the built service as a process: flags, readiness, one notification,
// and a clean exit on SIGTERM (the batch in hand committed, the group left).
func TestBinary(t *testing.T) {
	env := stacktest.Get(t)
	names := env.Topics(t)
	dbURL := env.NewDatabase(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `
		INSERT INTO users (id, username, password_hash) VALUES ('u-ann', 'ann', 'x'), ('u-bob', 'bob', 'x');
		INSERT INTO rooms (id, name, kind) VALUES ('dm-ab', 'ann+bob', 'dm');
		INSERT INTO room_members (room_id, user_id) VALUES ('dm-ab', 'u-ann'), ('dm-ab', 'u-bob');`); err != nil {
		t.Fatal(err)
	}

	bin := env.Build(t, "./services/notification")
	port := stacktest.FreePort(t)
	proc := env.Start(t, "notification", bin, nil,
		"-brokers", strings.Join(env.Brokers, ","), "-database-url", dbURL,
		"-http-addr", fmt.Sprintf("127.0.0.1:%d", port), "-topic-prefix", names(""),
		"-group", stacktest.UniqueName("notification-"), "-start-offset", "first",
		"-presence-expiry", "5s", "-log-level", "debug")
	stacktest.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), time.Minute)

	prod, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	now := time.Now()
	e, err := event.New("kchat/persistence", event.MessageStored{RoomID: "dm-ab", Seq: 1, Kind: event.KindMessage,
		MessageID: "m1", Sender: "u-ann", SenderName: "ann", Text: "hi", RoomKind: event.RoomKindDM,
		Members: []string{"u-ann", "u-bob"}, SentAt: now, StoredAt: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := prod.Publish(ctx, names(topics.Stored), "dm-ab", e); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM notifications WHERE user_id = 'u-bob'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no notification for bob within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}

	proc.Signal(syscall.SIGTERM)
	deadline = time.Now().Add(30 * time.Second)
	for !proc.Exited() {
		if time.Now().After(deadline) {
			t.Fatal("still running 30s after SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := proc.Output()
	if code := proc.ExitCode(); code != 0 {
		t.Fatalf("exit code %d\n%s", code, out)
	}
	for _, want := range []string{`"msg":"notification stopped"`, `"event_id":"` + e.ID + `"`, `"service":"notification"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s", want)
		}
	}
}

// TestCrash_SIGKILL_mid_stream kills the service with SIGKILL twice while it works
// through a stream of stored events, restarting it each time under the same group: every
// notification must exist exactly once, with exactly one outbox row, and every event must
// be in the inbox once. Offsets are committed only after a batch's transaction, so a kill
// redelivers at most the batches in flight, and the inbox makes those no-ops.
func TestCrash_SIGKILL_mid_stream(t *testing.T) {
	env := stacktest.Get(t)
	names := env.Topics(t)
	dbURL := env.NewDatabase(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// A notify_all room whose four other members are offline: four notifications per event.
	const members, events = 5, 600
	if _, err := pool.Exec(ctx, `
		INSERT INTO users (id, username, password_hash) SELECT 'u' || g, 'user' || g, 'x' FROM generate_series(0, 4) g;
		INSERT INTO rooms (id, name, kind, notify_all) VALUES ('loud', 'loud', 'room', true);
		INSERT INTO room_members (room_id, user_id) SELECT 'loud', 'u' || g FROM generate_series(0, 4) g;`); err != nil {
		t.Fatal(err)
	}
	bin := env.Build(t, "./services/notification")
	group := stacktest.UniqueName("notification-")
	start := func(name string) (*stacktest.Process, string) {
		port := stacktest.FreePort(t)
		p := env.Start(t, name, bin, nil, "-brokers", strings.Join(env.Brokers, ","), "-database-url", dbURL,
			"-http-addr", fmt.Sprintf("127.0.0.1:%d", port), "-topic-prefix", names(""), "-group", group,
			"-start-offset", "first", "-batch-size", "20", "-presence-expiry", "5s")
		url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
		stacktest.WaitHTTP(t, url, time.Minute)
		return p, url
	}
	count := func(sql string) int {
		var n int
		if err := pool.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	prod, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	proc, _ := start("notification-1")
	// The stream keeps coming while the service is killed and restarted.
	published := make(chan error, 1)
	go func() {
		now := time.Now()
		for seq := int64(1); seq <= events; seq++ {
			e, err := event.New("kchat/persistence", event.MessageStored{RoomID: "loud", Seq: seq, Kind: event.KindMessage,
				MessageID: fmt.Sprint("m", seq), Sender: "u0", SenderName: "user0", Text: fmt.Sprint("message ", seq),
				RoomKind: event.RoomKindRoom, SentAt: now, StoredAt: now})
			if err == nil {
				err = prod.Publish(ctx, names(topics.Stored), "loud", e)
			}
			if err != nil {
				published <- err
				return
			}
			if seq%100 == 0 {
				time.Sleep(200 * time.Millisecond)
			}
		}
		published <- nil
	}()
	for kill := 1; kill <= 2; kill++ {
		want := kill * events / 3 * (members - 1)
		// A restarted member waits for the killed one's session (10 s) to expire before
		// the group rebalances; on a loaded machine that takes a while.
		deadline := time.Now().Add(4 * time.Minute)
		for count(`SELECT count(*) FROM notifications`) < want {
			if time.Now().After(deadline) {
				t.Fatalf("only %d notifications before kill %d", count(`SELECT count(*) FROM notifications`), kill)
			}
			time.Sleep(20 * time.Millisecond)
		}
		proc.Kill()
		t.Logf("SIGKILL %d at %d notifications", kill, count(`SELECT count(*) FROM notifications`))
		proc, _ = start(fmt.Sprintf("notification-%d", kill+1))
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	want := events * (members - 1)
	deadline := time.Now().Add(3 * time.Minute)
	for count(`SELECT count(*) FROM processed_events WHERE consumer = 'notification'`) < events {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d events handled", count(`SELECT count(*) FROM processed_events`), events)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for what, sql := range map[string]string{
		"notifications":                         `SELECT count(*) FROM notifications`,
		"distinct (user, seq)":                  `SELECT count(DISTINCT (user_id, seq)) FROM notifications`,
		"outbox rows":                           `SELECT count(*) FROM outbox`,
		"distinct notification ids in outbox":   `SELECT count(DISTINCT convert_from(payload, 'UTF8')::jsonb->'data'->>'notification_id') FROM outbox`,
		"outbox rows of existing notifications": `SELECT count(*) FROM outbox o JOIN notifications n ON n.id = convert_from(o.payload, 'UTF8')::jsonb->'data'->>'notification_id'`,
	} {
		if n := count(sql); n != want {
			t.Errorf("%s: %d, want %d", what, n, want)
		}
	}
	if n := count(`SELECT count(*) FROM processed_events WHERE consumer = 'notification'`); n != events {
		t.Errorf("inbox holds %d events, want %d", n, events)
	}
}
