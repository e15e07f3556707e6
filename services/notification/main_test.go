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

	prod, err := producer.New(producer.Config{Brokers: env.Brokers})
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
