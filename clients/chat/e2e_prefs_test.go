package main_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// /notify and /mute against a real gateway: each is stored as the notification service
// will read it, and one setting never clears another.
func TestNotifyAndMute(t *testing.T) {
	p := startPlatform(t, "gw-a")
	const wait = 30 * time.Second
	ann := p.chatRun(t, "ann", "-url", p.ws("gw-a"), "-user", "ann", "-password", "ann-secret", "-register", "-connect-timeout", "20s")
	ann.expectErr("connected to gw-a", wait)
	ann.say("/mute 30")
	ann.expectErr("/mute: no current room", wait)
	ann.say("/join general")
	ann.expectErr("created #general", wait)
	ann.say("/notify mentions")
	ann.expectErr("notifications: mentions", wait)
	ann.say("/mute 30")
	ann.expectErr("#general: muted until", wait)
	ann.say("/notify all #general")
	ann.expectErr("#general: all", wait)
	ann.say("/notify loud")
	ann.expectErr(`not "loud"`, wait)
	ann.say("/mute 10 nowhere")
	ann.expectErr("/mute: no such room", wait)

	pool, err := pgxpool.New(context.Background(), p.db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var level, roomLevel string
	var mutedFor time.Duration
	var secs float64
	if err := pool.QueryRow(context.Background(), `
		SELECT p.level, r.level, extract(epoch FROM r.muted_until - now())::float8
		FROM notification_prefs p JOIN users u ON u.id = p.user_id
		JOIN room_notification_prefs r ON r.user_id = u.id AND r.room_id = 'general'
		WHERE u.username = 'ann'`).Scan(&level, &roomLevel, &secs); err != nil {
		t.Fatal(err)
	}
	mutedFor = time.Duration(secs * float64(time.Second))
	if level != "mentions" || roomLevel != "all" || mutedFor < 28*time.Minute || mutedFor > 31*time.Minute {
		t.Fatalf("stored level %q, room level %q, muted for %s", level, roomLevel, mutedFor)
	}
	ann.say("/mute 0", "/notify default general")
	ann.expectErr("#general: unmuted", wait)
	ann.expectErr("#general: your default level", wait)
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM room_notification_prefs WHERE level IS NOT NULL OR muted_until IS NOT NULL`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("room settings left: %d (%v)", n, err)
	}
	ann.say("/quit")
	if code := ann.exit(wait); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
