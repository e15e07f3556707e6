package app_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/stacktest"
)

// TestNotification_thread_replies: a stored reply notifies the thread's participants it
// names (reason thread) who are members and offline, never its sender; a mention beats
// thread; a muted room's participant is not notified (preferences apply as to mentions).
func TestNotification_thread_replies(t *testing.T) {
	f := newFixture(t)
	seedChat(f)
	f.online("u-cat")
	f.exec(`INSERT INTO room_notification_prefs (user_id, room_id, muted_until) VALUES ('u-dan', 'r-general', now() + interval '1 hour')`)
	group := stacktest.UniqueName("notification-")
	startApp(f, group)

	reply := func(seq int64, sender, text string, participants ...string) event.Envelope {
		t.Helper()
		now := time.Now()
		e, err := event.New("kchat/persistence", event.MessageStored{RoomID: "r-general", Seq: seq, Kind: event.KindMessage,
			MessageID: fmt.Sprintf("msg-r-general-%d", seq), Sender: sender, SenderName: sender, Text: text,
			RoomKind: event.RoomKindRoom, SentAt: now, StoredAt: now, ThreadRoot: 1, ThreadParticipants: participants})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	f.publish(
		f.stored("r-general", 1, event.KindMessage, "u-ann", "ship it?", event.RoomKindRoom),
		// bob replies: ann (the root's author, offline) is told.
		reply(2, "u-bob", "yes", "u-ann"),
		// cat replies: ann and bob are; cat is online anyway.
		reply(3, "u-cat", "agreed", "u-ann", "u-bob"),
		// ann replies mentioning bob: bob by mention, cat by thread (online: skipped).
		reply(4, "u-ann", "@bob thanks", "u-ann", "u-bob", "u-cat"),
		// dan, a participant who muted the room: nothing.
		reply(5, "u-bob", "done", "u-ann", "u-bob", "u-cat", "u-dan"),
	)
	f.waitConsumed(group, time.Minute)
	checkRows(t, f, []row{
		{"u-ann", "r-general", 2, event.ReasonThread},
		{"u-ann", "r-general", 3, event.ReasonThread},
		{"u-ann", "r-general", 5, event.ReasonThread},
		{"u-bob", "r-general", 3, event.ReasonThread},
		{"u-bob", "r-general", 4, event.ReasonMention},
	})
}
