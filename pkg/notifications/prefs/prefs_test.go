package prefs_test

import (
	"errors"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/notifications/prefs"
	"github.com/kchat/kchat/pkg/notifications/rules"
)

func mustDND(t *testing.T, start, end, zone string) *prefs.DND {
	t.Helper()
	d, err := prefs.ParseDND(start, end, zone)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDecide(t *testing.T) {
	// 12:00 UTC = 13:00 in Berlin (winter) = 07:00 in New York.
	at := time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC)
	night := mustDND(t, "22:00", "08:00", "America/New_York") // wraps midnight; 07:00 is inside
	lunch := mustDND(t, "13:00", "14:00", "Europe/Berlin")    // 13:00 is inside (start counts)
	evening := mustDND(t, "18:00", "23:00", "UTC")            // not now
	ok, quiet, none := prefs.Decision{Notify: true}, prefs.Decision{Notify: true, Quiet: true}, prefs.Decision{}
	for _, tc := range []struct {
		name      string
		u         prefs.User
		r         prefs.Room
		reason    string
		notifyAll bool
		want      prefs.Decision
	}{
		{name: "defaults dm", reason: event.ReasonDM, want: ok},
		{name: "defaults mention", reason: event.ReasonMention, want: ok},
		{name: "defaults room message in notify_all room", reason: event.ReasonRoom, notifyAll: true, want: ok},
		{name: "defaults room message in quiet room", reason: event.ReasonRoom, want: none},
		{name: "user mentions: dm", u: prefs.User{Level: prefs.LevelMentions}, reason: event.ReasonDM, want: ok},
		{name: "user mentions: mention", u: prefs.User{Level: prefs.LevelMentions}, reason: event.ReasonMention, want: ok},
		{name: "user mentions: notify_all room", u: prefs.User{Level: prefs.LevelMentions}, reason: event.ReasonRoom, notifyAll: true, want: none},
		{name: "user none: dm", u: prefs.User{Level: prefs.LevelNone}, reason: event.ReasonDM, want: none},
		{name: "user none, room all: room message", u: prefs.User{Level: prefs.LevelNone}, r: prefs.Room{Level: prefs.LevelAll}, reason: event.ReasonRoom, want: ok},
		{name: "room all asks for every message", r: prefs.Room{Level: prefs.LevelAll}, reason: event.ReasonRoom, want: ok},
		{name: "room mentions in notify_all room", r: prefs.Room{Level: prefs.LevelMentions}, reason: event.ReasonRoom, notifyAll: true, want: none},
		{name: "room mentions keeps mention", r: prefs.Room{Level: prefs.LevelMentions}, reason: event.ReasonMention, notifyAll: true, want: ok},
		{name: "defaults thread reply", reason: event.ReasonThread, want: ok},
		{name: "user mentions keeps thread reply", u: prefs.User{Level: prefs.LevelMentions}, reason: event.ReasonThread, want: ok},
		{name: "room none drops thread reply", r: prefs.Room{Level: prefs.LevelNone}, reason: event.ReasonThread, want: none},
		{name: "muted room drops thread reply", r: prefs.Room{MutedUntil: at.Add(time.Minute)}, reason: event.ReasonThread, want: none},
		{name: "room none drops mention", u: prefs.User{Level: prefs.LevelAll}, r: prefs.Room{Level: prefs.LevelNone}, reason: event.ReasonMention, want: none},
		{name: "muted until later", r: prefs.Room{MutedUntil: at.Add(time.Minute)}, reason: event.ReasonDM, want: none},
		{name: "muted until exactly now has ended", r: prefs.Room{MutedUntil: at}, reason: event.ReasonDM, want: ok},
		{name: "mute ended", r: prefs.Room{MutedUntil: at.Add(-time.Minute)}, reason: event.ReasonMention, want: ok},
		{name: "mute beats room all", r: prefs.Room{Level: prefs.LevelAll, MutedUntil: at.Add(time.Hour)}, reason: event.ReasonRoom, want: none},
		{name: "dnd wrapping midnight", u: prefs.User{DND: night}, reason: event.ReasonDM, want: quiet},
		{name: "dnd start is inside", u: prefs.User{DND: lunch}, reason: event.ReasonMention, want: quiet},
		{name: "dnd outside the window", u: prefs.User{DND: evening}, reason: event.ReasonDM, want: ok},
		{name: "dnd does not resurrect a filtered one", u: prefs.User{Level: prefs.LevelNone, DND: night}, reason: event.ReasonDM, want: none},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := prefs.Decide(tc.u, tc.r, tc.reason, tc.notifyAll, at); got != tc.want {
				t.Fatalf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestDND_active_follows_daylight_saving(t *testing.T) {
	d := mustDND(t, "09:00", "17:00", "Europe/Berlin")
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{
		{time.Date(2026, 1, 15, 8, 30, 0, 0, time.UTC), true},  // 09:30 CET
		{time.Date(2026, 7, 15, 7, 30, 0, 0, time.UTC), true},  // 09:30 CEST
		{time.Date(2026, 7, 15, 15, 0, 0, 0, time.UTC), false}, // 17:00 CEST: the end is outside
		{time.Date(2026, 1, 15, 7, 59, 0, 0, time.UTC), false}, // 08:59 CET
	} {
		if got := d.Active(tc.at); got != tc.want {
			t.Errorf("Active(%s) = %v, want %v", tc.at, got, tc.want)
		}
	}
	var off *prefs.DND
	if off.Active(time.Now()) {
		t.Error("a nil DND is active")
	}
}

func TestParseDND_rejects(t *testing.T) {
	for _, tc := range []struct{ start, end, zone string }{
		{"22:00", "07:00", "Mars/Olympus"},
		{"22:00", "07:00", ""},
		{"22:00", "07:00", "Local"},
		{"22:00", "07:00", " UTC"},
		{"24:00", "07:00", "UTC"},
		{"7:00", "08:00", "UTC"},
		{"07:60", "08:00", "UTC"},
		{"07:00", "+8:00", "UTC"},
		{"0700", "08:00", "UTC"},
		{"07:00", "07:00", "UTC"},
		{"", "", "UTC"},
	} {
		if _, err := prefs.ParseDND(tc.start, tc.end, tc.zone); !errors.Is(err, prefs.ErrInvalid) {
			t.Errorf("ParseDND(%q, %q, %q) = %v, want ErrInvalid", tc.start, tc.end, tc.zone, err)
		}
	}
	d, err := prefs.ParseDND("22:30", "06:05", "Asia/Kolkata")
	if err != nil || d.Start != 22*60+30 || d.End != 6*60+5 || prefs.Clock(d.Start) != "22:30" || prefs.Clock(d.End) != "06:05" {
		t.Fatalf("ParseDND = %+v, %v", d, err)
	}
}

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"all", "mentions", "none"} {
		if l, err := prefs.ParseLevel(s); err != nil || string(l) != s {
			t.Errorf("ParseLevel(%q) = %q, %v", s, l, err)
		}
	}
	for _, s := range []string{"", "ALL", "mention", "dm", " all"} {
		if _, err := prefs.ParseLevel(s); !errors.Is(err, prefs.ErrInvalid) {
			t.Errorf("ParseLevel(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

// Recipients is what both the service and the rebuild call: the rules widened to every
// message, then Decide per member, at the message's stored time.
func TestRecipients(t *testing.T) {
	stored := time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC)
	room := rules.Room{Kind: event.RoomKindRoom, Members: []rules.Member{
		{ID: "u-ann", Username: "ann"}, {ID: "u-bob", Username: "bob"}, {ID: "u-cat", Username: "cat"},
		{ID: "u-dan", Username: "dan"}, {ID: "u-eve", Username: "eve"},
	}}
	m := event.MessageStored{RoomID: "r1", Seq: 4, Kind: event.KindMessage, Sender: "u-ann", Text: "@bob @cat @dan look", StoredAt: stored}
	set := prefs.Set{
		Users: map[string]prefs.User{
			"u-cat": {DND: mustDND(t, "22:00", "07:00", "UTC")},
			"u-dan": {Level: prefs.LevelNone},
		},
		Rooms: map[prefs.RoomKey]prefs.Room{
			{User: "u-eve", Room: "r1"}: {Level: prefs.LevelAll},
			{User: "u-bob", Room: "r1"}: {MutedUntil: stored.Add(time.Second)},
			{User: "u-bob", Room: "r2"}: {Level: prefs.LevelNone}, // another room: no effect here
		},
	}
	got := prefs.Recipients(m, room, set, time.Now())
	want := []prefs.Recipient{
		{Recipient: rules.Recipient{User: "u-cat", Reason: event.ReasonMention}, Quiet: true},
		{Recipient: rules.Recipient{User: "u-eve", Reason: event.ReasonRoom}},
	}
	if len(got) != len(want) {
		t.Fatalf("Recipients = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Recipients = %+v, want %+v", got, want)
		}
	}
	// Without preferences the rules' answer is unchanged: mentions only (not notify_all).
	if got := prefs.Recipients(m, room, prefs.Set{}, time.Now()); len(got) != 3 || got[0].User != "u-bob" || got[0].Quiet {
		t.Fatalf("Recipients without preferences = %+v", got)
	}
	// Joins never notify, whatever the level.
	join := m
	join.Kind = event.KindJoin
	if got := prefs.Recipients(join, room, set, time.Now()); len(got) != 0 {
		t.Fatalf("a join notifies %+v", got)
	}
}
