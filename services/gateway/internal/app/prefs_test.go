package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// Notification preferences over REST: bad input is a 400 saying what is wrong and stores
// nothing; good input is stored as given and read back; room settings need membership.
func TestNotificationPrefs_REST(t *testing.T) {
	h := start(t, nil)
	ann := gwtest.NewAccount(t, h.base, "ann")
	bob := gwtest.NewAccount(t, h.base, "bob")
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", ann.Token, map[string]string{"id": "tea"}); st != 201 {
		t.Fatalf("create room: %d %v", st, f)
	}
	me := h.base + "/api/me/notification-preferences"
	room := h.base + "/api/rooms/tea/notification-preferences"

	st, f := gwtest.Do(t, "GET", me, ann.Token, nil)
	if st != 200 || f["level"] != "all" || f["dnd"] != nil || len(f["rooms"].([]any)) != 0 || f["email"] == nil {
		t.Fatalf("defaults: %d %v", st, f)
	}

	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		name, method, url string
		body              any
		want              string // substring of the 400's message
	}{
		{"no level", "PUT", me, map[string]any{}, "level is required"},
		{"unknown level", "PUT", me, map[string]any{"level": "loud"}, `not "loud"`},
		{"level not a string", "PUT", me, map[string]any{"level": 3}, ""},
		{"dnd bad time", "PUT", me, map[string]any{"level": "all", "dnd": map[string]string{"start": "25:00", "end": "07:00", "zone": "UTC"}}, "HH:MM"},
		{"dnd one-digit hour", "PUT", me, map[string]any{"level": "all", "dnd": map[string]string{"start": "7:00", "end": "08:00", "zone": "UTC"}}, "HH:MM"},
		{"dnd unknown zone", "PUT", me, map[string]any{"level": "all", "dnd": map[string]string{"start": "22:00", "end": "07:00", "zone": "Europe/Atlantis"}}, "unknown time zone"},
		{"dnd no zone", "PUT", me, map[string]any{"level": "all", "dnd": map[string]string{"start": "22:00", "end": "07:00"}}, "IANA"},
		{"dnd empty window", "PUT", me, map[string]any{"level": "all", "dnd": map[string]string{"start": "22:00", "end": "22:00", "zone": "UTC"}}, "empty"},
		{"room unknown level", "PUT", room, map[string]any{"level": "some"}, "level must be"},
		{"mute in the past", "PUT", room, map[string]any{"muted_until": "2020-01-01T00:00:00Z"}, "not in the future"},
		{"mute too long", "PUT", room, map[string]any{"muted_until": time.Now().AddDate(2, 0, 0).UTC().Format(time.RFC3339)}, "more than a year"},
		{"mute without zone", "PUT", room, map[string]any{"muted_until": "2030-01-01T00:00:00"}, "RFC 3339"},
		{"mute as a number", "PUT", room, map[string]any{"muted_until": 60}, "RFC 3339"},
		{"not JSON", "PUT", room, "level=none", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, f := gwtest.Do(t, tc.method, tc.url, ann.Token, tc.body)
			if st != 400 {
				t.Fatalf("%d %v, want 400", st, f)
			}
			if msg, _ := f["message"].(string); tc.want != "" && !strings.Contains(msg, tc.want) {
				t.Fatalf("message %q lacks %q", msg, tc.want)
			}
		})
	}
	var n int
	if err := h.db.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM notification_prefs) + (SELECT count(*) FROM room_notification_prefs)`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("bad input stored %d rows (%v)", n, err)
	}

	// Good input, read back as stored.
	st, f = gwtest.Do(t, "PUT", me, ann.Token, map[string]any{"level": "mentions", "dnd": map[string]string{"start": "22:30", "end": "07:00", "zone": "Europe/Berlin"}})
	if st != 200 || f["level"] != "mentions" {
		t.Fatalf("put defaults: %d %v", st, f)
	}
	if d := f["dnd"].(map[string]any); d["start"] != "22:30" || d["end"] != "07:00" || d["zone"] != "Europe/Berlin" {
		t.Fatalf("dnd read back as %v", d)
	}
	st, f = gwtest.Do(t, "PUT", room, ann.Token, map[string]any{"level": "all", "muted_until": future})
	if st != 200 || f["room"] != "tea" || f["level"] != "all" || f["muted_until"] != future {
		t.Fatalf("put room: %d %v (want muted_until %s)", st, f, future)
	}
	st, f = gwtest.Do(t, "GET", me, ann.Token, nil)
	rooms, _ := f["rooms"].([]any)
	if st != 200 || len(rooms) != 1 || rooms[0].(map[string]any)["room"] != "tea" {
		t.Fatalf("get after put: %d %v", st, f)
	}
	// Clearing the DND with null, and the room with DELETE.
	if st, f = gwtest.Do(t, "PUT", me, ann.Token, map[string]any{"level": "none", "dnd": nil}); st != 200 || f["dnd"] != nil || f["level"] != "none" {
		t.Fatalf("clear dnd: %d %v", st, f)
	}
	if st, f = gwtest.Do(t, "DELETE", room, ann.Token, nil); st != 200 || f["level"] != nil || f["muted_until"] != nil {
		t.Fatalf("delete room setting: %d %v", st, f)
	}
	if st, f = gwtest.Do(t, "GET", me, ann.Token, nil); st != 200 || len(f["rooms"].([]any)) != 0 {
		t.Fatalf("room setting not deleted: %v", f)
	}

	// Room settings need membership: bob is not in tea; nobody can set an unknown room.
	if st, f = gwtest.Do(t, "PUT", room, bob.Token, map[string]any{"level": "none"}); st != 403 {
		t.Fatalf("non-member: %d %v", st, f)
	}
	if st, f = gwtest.Do(t, "PUT", h.base+"/api/rooms/nope/notification-preferences", ann.Token, map[string]any{"level": "none"}); st != 404 {
		t.Fatalf("unknown room: %d %v", st, f)
	}
}
