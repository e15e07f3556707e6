package rebuild_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/notifications/rebuild"
	"github.com/kchat/kchat/pkg/stacktest"
)

// The live state the entries below led to: ann, bob and cat are members of r1 today;
// cat joined at seq 3, dan left at seq 5; ann was online for seq 4.
const seed = `
	INSERT INTO users (id, username, password_hash) VALUES
	  ('u-ann', 'ann', 'x'), ('u-bob', 'bob', 'x'), ('u-cat', 'cat', 'x'), ('u-dan', 'dan', 'x');
	INSERT INTO rooms (id, name, kind) VALUES ('r1', 'r1', 'room'), ('dm1', 'ann & bob', 'dm');
	INSERT INTO room_members (room_id, user_id) VALUES
	  ('r1', 'u-ann'), ('r1', 'u-bob'), ('r1', 'u-cat'), ('dm1', 'u-ann'), ('dm1', 'u-bob');
	INSERT INTO processed_events (consumer, event_id) VALUES
	  ('notification', 'e-r1-2'), ('notification', 'e-r1-4'), ('notification', 'e-r1-6'), ('notification', 'e-dm1-1');
	INSERT INTO notification_skips (user_id, room_id, seq, reason) VALUES ('u-ann', 'r1', 4, 'mention');
	INSERT INTO notifications (id, user_id, room_id, seq, reason, sender, preview) VALUES
	  ('0193b2c4-0000-7000-8000-000000000001', 'u-bob', 'r1', 2, 'mention', 'u-ann', 'hi @bob @cat @dan'),
	  ('0193b2c4-0000-7000-8000-000000000002', 'u-dan', 'r1', 2, 'mention', 'u-ann', 'hi @bob @cat @dan'),
	  ('0193b2c4-0000-7000-8000-000000000003', 'u-cat', 'r1', 4, 'mention', 'u-bob', '@cat @ann'),
	  ('0193b2c4-0000-7000-8000-000000000004', 'u-bob', 'dm1', 1, 'dm', 'u-ann', 'psst');`

func entry(room string, seq int64, kind, sender, name, text string, members ...string) rebuild.Entry {
	roomKind := event.RoomKindRoom
	if len(members) > 0 {
		roomKind = event.RoomKindDM
	}
	now := time.Now()
	return rebuild.Entry{EventID: fmt.Sprintf("e-%s-%d", room, seq), Msg: event.MessageStored{
		RoomID: room, Seq: seq, Kind: kind, Sender: sender, SenderName: name, Text: text, RoomKind: roomKind,
		Members: members, SentAt: now, StoredAt: now,
	}}
}

func entries() []rebuild.Entry {
	return []rebuild.Entry{
		entry("r1", 1, event.KindJoin, "u-ann", "ann", ""),
		entry("r1", 2, event.KindMessage, "u-ann", "ann", "hi @bob @cat @dan"), // cat is not a member yet
		entry("r1", 3, event.KindJoin, "u-cat", "cat", ""),
		entry("r1", 4, event.KindMessage, "u-bob", "bob", "@cat @ann"), // ann was online
		entry("r1", 5, event.KindLeave, "u-dan", "dan", ""),
		entry("r1", 6, event.KindMessage, "u-ann", "ann", "@dan are you there"), // dan has left
		entry("r1", 7, event.KindMessage, "u-ann", "ann", "@bob late"),          // not handled live yet
		entry("dm1", 1, event.KindMessage, "u-ann", "ann", "psst", "u-ann", "u-bob"),
		entry("dm1", 1, event.KindMessage, "u-ann", "ann", "psst", "u-ann", "u-bob"), // republished by the relay
		entry("gone", 1, event.KindMessage, "u-ann", "ann", "@bob"),                  // a room deleted since
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name   string
		change string // SQL applied to the live state before the rebuild
		// want: counts of Missing, Extra, Changed
		missing, extra, changed int
	}{
		{name: "the rebuild equals the live table"},
		{name: "a notification the live service lost", change: `DELETE FROM notifications WHERE user_id = 'u-dan'`, missing: 1},
		{name: "a notification it should not have made", change: `INSERT INTO notifications (id, user_id, room_id, seq, reason, sender)
			VALUES ('0193b2c4-0000-7000-8000-000000000009', 'u-dan', 'r1', 6, 'mention', 'u-ann')`, extra: 1},
		{name: "a wrong preview", change: `UPDATE notifications SET preview = 'x' WHERE room_id = 'dm1'`, changed: 1},
		{name: "without the skip decision the online recipient shows up", change: `DELETE FROM notification_skips`, missing: 1},
	}
	env := stacktest.Get(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := env.NewDatabasePool(t, seed)
			if tc.change != "" {
				if _, err := pool.Exec(ctx, tc.change); err != nil {
					t.Fatal(err)
				}
			}
			res, err := rebuild.Run(ctx, pool, entries(), rebuild.Config{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Entries != 10 || res.Duplicates != 1 || res.Messages != 5 || res.Unhandled != 1 || res.UnknownRooms != 1 {
				t.Errorf("counts %+v", res)
			}
			if len(res.Missing) != tc.missing || len(res.Extra) != tc.extra || len(res.Changed) != tc.changed {
				t.Fatalf("missing %v, extra %v, changed %v; want %d, %d, %d", res.Missing, res.Extra, res.Changed, tc.missing, tc.extra, tc.changed)
			}
			if res.Equal() != (tc.missing+tc.extra+tc.changed == 0) {
				t.Fatal("Equal disagrees with the lists")
			}
			var n int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM notifications_rebuild`).Scan(&n); err != nil || n != res.Rebuilt {
				t.Fatalf("notifications_rebuild holds %d rows, Rebuilt says %d (%v)", n, res.Rebuilt, err)
			}
		})
	}
}
