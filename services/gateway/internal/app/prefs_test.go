package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// Notification preferences over REST: bad input is a 400 saying what is wrong and stores
// nothing; good input is stored as given and read back; room settings need membership.
func TestNotificationPrefs_REST(t *testing.T) {
	t.Parallel()
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

// The same preferences over WebSocket: bad frames are bad_request errors saying what is
// wrong and store nothing; good ones answer what was stored, which REST then reads back
// (one store, one validation), and a room setting needs membership there too.
func TestNotificationPrefs_WebSocket(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	ann := gwtest.NewAccount(t, h.base, "ann")
	bob := gwtest.NewAccount(t, h.base, "bob")
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", ann.Token, map[string]string{"id": "tea"}); st != 201 {
		t.Fatalf("create room: %d %v", st, f)
	}
	c := h.dial(t, ann)
	c.Send(map[string]any{"type": "notification_prefs", "ref": "get"})
	if f := c.Expect("notification_prefs", "get"); f.Str("level") != "all" || f["dnd"] != nil || len(f["rooms"].([]any)) != 0 || f["email"] == nil {
		t.Fatalf("defaults: %v", f)
	}

	for i, tc := range []struct {
		name  string
		frame map[string]any
		want  string // substring of the error's message
	}{
		{"no level", map[string]any{"type": "set_notification_prefs"}, "level is required"},
		{"unknown level", map[string]any{"type": "set_notification_prefs", "level": "loud"}, `not "loud"`},
		{"level not a string", map[string]any{"type": "set_notification_prefs", "level": 3}, "level must be a string"},
		{"dnd bad time", map[string]any{"type": "set_notification_prefs", "level": "all", "dnd": map[string]string{"start": "25:00", "end": "07:00", "zone": "UTC"}}, "HH:MM"},
		{"dnd unknown zone", map[string]any{"type": "set_notification_prefs", "level": "all", "dnd": map[string]string{"start": "22:00", "end": "07:00", "zone": "Europe/Atlantis"}}, "unknown time zone"},
		{"room missing", map[string]any{"type": "set_room_notification_prefs", "level": "none"}, "room"},
		{"room unknown level", map[string]any{"type": "set_room_notification_prefs", "room": "tea", "level": "some"}, "level must be"},
		{"mute in the past", map[string]any{"type": "set_room_notification_prefs", "room": "tea", "muted_until": "2020-01-01T00:00:00Z"}, "not in the future"},
		{"mute too long", map[string]any{"type": "set_room_notification_prefs", "room": "tea", "muted_until": time.Now().AddDate(2, 0, 0).UTC().Format(time.RFC3339)}, "more than a year"},
		{"mute without zone", map[string]any{"type": "set_room_notification_prefs", "room": "tea", "muted_until": "2030-01-01T00:00:00"}, "RFC 3339"},
		{"mute as a number", map[string]any{"type": "set_room_notification_prefs", "room": "tea", "muted_until": 60}, "muted_until must be a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := fmt.Sprint("bad", i)
			tc.frame["ref"] = ref
			c.Send(tc.frame)
			f := c.Expect("error", ref)
			if f.Str("code") != "bad_request" || !strings.Contains(f.Str("message"), tc.want) {
				t.Fatalf("%v, want bad_request saying %q", f, tc.want)
			}
		})
	}
	var n int
	if err := h.db.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM notification_prefs) + (SELECT count(*) FROM room_notification_prefs)`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("bad frames stored %d rows (%v)", n, err)
	}

	c.Send(map[string]any{"type": "set_notification_prefs", "level": "mentions", "ref": "def",
		"dnd": map[string]string{"start": "22:30", "end": "07:00", "zone": "Europe/Berlin"}})
	if f := c.Expect("notification_prefs", "def"); f.Str("level") != "mentions" || f["dnd"].(map[string]any)["zone"] != "Europe/Berlin" {
		t.Fatalf("set defaults: %v", f)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	c.Send(map[string]any{"type": "set_room_notification_prefs", "room": "tea", "level": "all", "muted_until": future, "ref": "room"})
	if f := c.Expect("room_notification_prefs", "room"); f.Str("room") != "tea" || f.Str("level") != "all" || f.Str("muted_until") != future {
		t.Fatalf("set room: %v (want muted_until %s)", f, future)
	}
	st, f := gwtest.Do(t, "GET", h.base+"/api/me/notification-preferences", ann.Token, nil)
	rooms, _ := f["rooms"].([]any)
	if st != 200 || f["level"] != "mentions" || len(rooms) != 1 || rooms[0].(map[string]any)["muted_until"] != future {
		t.Fatalf("REST after WebSocket: %d %v", st, f)
	}
	// Neither level nor muted_until: back to the defaults, as REST's DELETE.
	c.Send(map[string]any{"type": "set_room_notification_prefs", "room": "tea", "ref": "clear"})
	if f := c.Expect("room_notification_prefs", "clear"); f["level"] != nil || f["muted_until"] != nil {
		t.Fatalf("clear room: %v", f)
	}
	c.Send(map[string]any{"type": "notification_prefs", "ref": "get2"})
	if f := c.Expect("notification_prefs", "get2"); len(f["rooms"].([]any)) != 0 {
		t.Fatalf("room setting not cleared: %v", f)
	}

	cb := h.dial(t, bob)
	cb.Send(map[string]any{"type": "set_room_notification_prefs", "room": "tea", "level": "none", "ref": "x"})
	if f := cb.Expect("error", "x"); f.Str("code") != "forbidden" || f.Str("room") != "tea" {
		t.Fatalf("non-member: %v", f)
	}
	cb.Send(map[string]any{"type": "set_room_notification_prefs", "room": "nope", "level": "none", "ref": "y"})
	if f := cb.Expect("error", "y"); f.Str("code") != "not_found" {
		t.Fatalf("unknown room: %v", f)
	}
}
