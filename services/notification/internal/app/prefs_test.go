package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/notifications/rebuild"
	"github.com/kchat/kchat/pkg/stacktest"
)

// Preferences through the whole chain: a muted room, a level that drops room messages, a
// room's own level all, and do-not-disturb hours (the notification is created but quiet).
// The rebuild, fed the same events, reaches the same rows with the same function.
func TestNotification_preferences(t *testing.T) {
	f := newFixture(t)
	seedChat(f)
	now := time.Now().UTC()
	minute := now.Hour()*60 + now.Minute()
	f.exec(`INSERT INTO room_notification_prefs (user_id, room_id, level, muted_until) VALUES
		('u-bob', 'r-general', NULL, $1), ('u-cat', 'r-general', 'all', NULL)`, now.Add(time.Hour))
	f.exec(`INSERT INTO notification_prefs (user_id, level, dnd_start, dnd_end, dnd_zone) VALUES
		('u-cat', 'mentions', NULL, NULL, NULL), ('u-dan', 'all', $1, $2, 'UTC')`,
		(minute+24*60-60)%(24*60), (minute+60)%(24*60))

	group := stacktest.UniqueName("notification-")
	startApp(f, group)
	es := []event.Envelope{
		f.stored("r-general", 1, event.KindMessage, "u-ann", "hey @bob and @dan", event.RoomKindRoom),
		f.stored("r-loud", 1, event.KindMessage, "u-ann", "pizza", event.RoomKindRoom),
		f.stored("dm-ab", 1, event.KindMessage, "u-ann", "lunch?", event.RoomKindDM, "u-ann", "u-bob"),
	}
	f.publish(es...)
	f.waitConsumed(group, time.Minute)

	type row struct {
		user, room, reason string
		quiet              bool
	}
	rows, err := f.pool.Query(context.Background(), `SELECT user_id, room_id, reason, quiet FROM notifications ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.user, &r.room, &r.reason, &r.quiet); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	want := []row{
		{"u-bob", "dm-ab", "dm", false},         // the mute is r-general's only
		{"u-bob", "r-loud", "room", false},      // default all follows notify_all
		{"u-cat", "r-general", "room", false},   // the room's own all: every message
		{"u-dan", "r-general", "mention", true}, // during do-not-disturb: in the app only
	}
	// Not there: bob's mention in muted r-general; cat in r-loud (level mentions).
	if len(got) != len(want) {
		t.Fatalf("notifications %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("notifications %v, want %v", got, want)
		}
	}

	entries := make([]rebuild.Entry, len(es))
	for i, e := range es {
		m, err := event.As[event.MessageStored](e)
		if err != nil {
			t.Fatal(err)
		}
		entries[i] = rebuild.Entry{EventID: e.ID, Msg: m}
	}
	res, err := rebuild.Run(context.Background(), f.pool, entries, rebuild.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Equal() || res.Rebuilt != len(want) {
		t.Fatalf("rebuild disagrees: rebuilt %d, missing %v, extra %v, changed %v", res.Rebuilt, res.Missing, res.Extra, res.Changed)
	}
	// A preference changed since is what a rebuild reports: unmuting bob makes his
	// mention in r-general missing from the live table.
	f.exec(`DELETE FROM room_notification_prefs WHERE user_id = 'u-bob'`)
	if res, err = rebuild.Run(context.Background(), f.pool, entries, rebuild.Config{}); err != nil {
		t.Fatal(err)
	}
	if len(res.Missing) != 1 || res.Missing[0].User != "u-bob" || res.Missing[0].Reason != "mention" {
		t.Fatalf("after unmuting, rebuild reports missing %v", res.Missing)
	}
}
