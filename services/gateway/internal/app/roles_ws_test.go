package app_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// TestRoles_websocket: roles, muting, transfers, settings and the directory over the
// WebSocket frames, step by step as TestRoles_roles_and_mute does over REST: replies carry
// the request's ref and the state after the change; a muted member's send is refused and
// their reads are not; bad settings are refused and leave the room as it was.
func TestRoles_websocket(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	accs := map[string]gwtest.Account{}
	conns := map[string]*gwtest.Client{}
	for _, n := range []string{"olga", "adam", "mia"} {
		accs[n] = gwtest.NewAccount(t, h.base, n)
		conns[n] = h.dial(t, accs[n])
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", accs["olga"].Token, map[string]any{"id": "hall"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	for _, n := range []string{"adam", "mia"} {
		if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/hall/join", accs[n].Token, nil); st != 200 {
			t.Fatalf("%s joins: %d %v", n, st, f)
		}
	}
	tok := fmt.Sprintf("dir%d", time.Now().UnixNano()) // the directory lists every test's rooms
	for _, id := range []string{tok + "-a", tok + "-b", tok + "-c"} {
		if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", accs["mia"].Token, map[string]any{"id": id}); st != 201 {
			t.Fatalf("create %s: %d %v", id, st, f)
		}
	}
	// fields are the reply's fields the step checks; a value "*" only needs to be there.
	type fields map[string]any
	var cursor string
	steps := []struct {
		name  string
		as    string
		frame map[string]any
		reply string // the reply's type, or "error"
		want  fields // for errors: code and message
	}{
		{"owner promotes adam", "olga", map[string]any{"type": "set_role", "room": "hall", "user": "adam", "role": "admin"},
			"role_set", fields{"room": "hall", "user": "adam", "role": "admin", "changed": true}},
		{"again: no change, no error", "olga", map[string]any{"type": "set_role", "room": "hall", "user": "adam", "role": "admin"},
			"role_set", fields{"changed": false}},
		{"an admin makes no admins", "adam", map[string]any{"type": "set_role", "room": "hall", "user": "mia", "role": "admin"},
			"error", fields{"code": "forbidden", "room": "hall"}},
		{"no owner by role", "olga", map[string]any{"type": "set_role", "room": "hall", "user": "adam", "role": "owner"},
			"error", fields{"code": "bad_request", "message": "role: must be admin or member (ownership moves by a transfer)"}},
		{"admin mutes mia", "adam", map[string]any{"type": "mute", "room": "hall", "user": "mia"},
			"muted", fields{"room": "hall", "user": "mia", "muted": true, "changed": true}},
		{"muted mia cannot send", "mia", map[string]any{"type": "send", "room": "hall", "client_msg_id": "m1", "text": "hi"},
			"error", fields{"code": "forbidden", "message": "you are muted in this room", "client_msg_id": "m1"}},
		{"muted mia cannot reply", "mia", map[string]any{"type": "send", "room": "hall", "client_msg_id": "m2", "text": "re", "thread_root": 1},
			"error", fields{"code": "forbidden", "message": "you are muted in this room"}},
		{"muted mia still reads", "mia", map[string]any{"type": "history", "room": "hall"}, "history", fields{"room": "hall"}},
		{"an admin cannot mute the owner", "adam", map[string]any{"type": "mute", "room": "hall", "user": "olga"},
			"error", fields{"code": "forbidden"}},
		{"no such user", "olga", map[string]any{"type": "mute", "room": "hall", "user": "nobody"},
			"error", fields{"code": "not_found", "message": "no such user"}},
		{"owner unmutes mia", "olga", map[string]any{"type": "unmute", "room": "hall", "user": "mia"},
			"unmuted", fields{"user": "mia", "muted": false, "changed": true}},
		{"unmuted mia sends", "mia", map[string]any{"type": "send", "room": "hall", "client_msg_id": "m3", "text": "hi"},
			"ack", fields{"client_msg_id": "m3", "status": "accepted"}},
		{"settings", "adam", map[string]any{"type": "update_room", "room": "hall", "name": "Great Hall", "topic": "all hands"},
			"room_updated", fields{"room": "hall", "name": "Great Hall", "topic": "all hands", "private": false}},
		{"a topic over the limit is refused, not trimmed", "olga", map[string]any{"type": "update_room", "room": "hall", "topic": strings.Repeat("t", 501)},
			"error", fields{"code": "bad_request", "message": "topic: is longer than 500 bytes", "room": "hall"}},
		{"a blank name is refused", "olga", map[string]any{"type": "update_room", "room": "hall", "name": " "},
			"error", fields{"code": "bad_request", "message": "name: must not be empty"}},
		{"no field is refused", "olga", map[string]any{"type": "update_room", "room": "hall", "name": nil},
			"error", fields{"code": "bad_request", "message": "give at least one of name, topic, private"}},
		{"private must be a boolean", "olga", map[string]any{"type": "update_room", "room": "hall", "private": "yes"},
			"error", fields{"code": "bad_request", "message": "private must be a boolean"}},
		{"absent fields stay: the refused topic did not land", "olga", map[string]any{"type": "update_room", "room": "hall", "private": true},
			"room_updated", fields{"name": "Great Hall", "topic": "all hands", "private": true}},
		{"a member changes no settings", "mia", map[string]any{"type": "update_room", "room": "hall", "topic": "mine"},
			"error", fields{"code": "forbidden"}},
		{"only the owner transfers", "adam", map[string]any{"type": "transfer", "room": "hall", "user": "mia"},
			"error", fields{"code": "forbidden", "message": "only the room owner may transfer ownership"}},
		{"olga makes adam owner", "olga", map[string]any{"type": "transfer", "room": "hall", "user": "adam"},
			"transferred", fields{"room": "hall", "owner": "adam"}},
		{"a second transfer: no longer the owner", "olga", map[string]any{"type": "transfer", "room": "hall", "user": "adam"},
			"error", fields{"code": "forbidden"}},
		{"directory, first page", "adam", map[string]any{"type": "directory", "q": strings.ToUpper(tok), "limit": 2},
			"directory", fields{"cursor": "*"}},
		{"directory, bad cursor", "adam", map[string]any{"type": "directory", "cursor": "!!"},
			"error", fields{"code": "bad_request", "message": "cursor: not a cursor this directory gave"}},
		{"directory, limit too big", "adam", map[string]any{"type": "directory", "limit": 101},
			"error", fields{"code": "bad_request", "message": "limit: must be between 1 and 100"}},
	}
	for i, s := range steps {
		c := conns[s.as]
		ref := fmt.Sprintf("s%d", i)
		s.frame["ref"] = ref
		c.Send(s.frame)
		got, ok := c.Next(func(f gwtest.Frame) bool { return f.Str("ref") == ref && f.Type() != "subscribed" }, 15*time.Second)
		if !ok {
			t.Fatalf("%s: no answer (buffered %v)", s.name, c.Buffered())
		}
		if got.Type() != s.reply {
			t.Fatalf("%s: got %v, want %s %v", s.name, got, s.reply, s.want)
		}
		for k, v := range s.want {
			if g, has := got[k]; !has || v != "*" && g != v {
				t.Fatalf("%s: %s is %v, want %v (%v)", s.name, k, got[k], v, got)
			}
		}
		if s.reply == "directory" {
			rooms := got["rooms"].([]any)
			if len(rooms) != 2 || rooms[0].(map[string]any)["id"] != tok+"-a" || rooms[1].(map[string]any)["members"] != float64(1) {
				t.Fatalf("%s: rooms %v", s.name, rooms)
			}
			cursor = got.Str("cursor")
		}
	}
	// The next page, from the cursor: the last room and no cursor.
	conns["mia"].Send(map[string]any{"type": "directory", "q": tok, "limit": 2, "cursor": cursor, "ref": "d2"})
	page := conns["mia"].Expect("directory", "d2")
	if rooms := page["rooms"].([]any); len(rooms) != 1 || rooms[0].(map[string]any)["id"] != tok+"-c" || page.Str("cursor") != "" {
		t.Fatalf("second page: %v", page)
	}
	// What the frames changed reads back over REST.
	_, f := gwtest.Do(t, "GET", h.base+"/api/rooms/hall/members", accs["adam"].Token, nil)
	roles := map[string]string{}
	for _, m := range f["members"].([]any) {
		m := m.(map[string]any)
		roles[m["username"].(string)] = m["role"].(string)
	}
	if roles["adam"] != "owner" || roles["olga"] != "admin" || roles["mia"] != "member" {
		t.Fatalf("roles after the frames: %v", roles)
	}
}

// TestRoles_websocket_errors_match_REST: the same bad request over both channels gets the
// same code and message.
func TestRoles_websocket_errors_match_REST(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	olga, mia := gwtest.NewAccount(t, h.base, "olga"), gwtest.NewAccount(t, h.base, "mia")
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", olga.Token, map[string]any{"id": "hall"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/hall/join", mia.Token, nil); st != 200 {
		t.Fatalf("join: %d %v", st, f)
	}
	c := h.dial(t, olga)
	cases := []struct {
		name         string
		method, path string
		body, frame  map[string]any
		status       int
		code         string
	}{
		{"bad role", "POST", "/api/rooms/hall/members/mia/role", map[string]any{"role": "boss"},
			map[string]any{"type": "set_role", "room": "hall", "user": "mia", "role": "boss"}, 400, "bad_request"},
		{"oneself", "POST", "/api/rooms/hall/members/olga/mute", nil,
			map[string]any{"type": "mute", "room": "hall", "user": "olga"}, 400, "bad_request"},
		{"not a member", "DELETE", "/api/rooms/hall/members/nobody/mute", nil,
			map[string]any{"type": "unmute", "room": "hall", "user": "nobody"}, 404, "not_found"},
		{"no such room", "POST", "/api/rooms/nowhere/transfer", map[string]any{"username": "mia"},
			map[string]any{"type": "transfer", "room": "nowhere", "user": "mia"}, 404, "not_found"},
		{"overlong name", "PATCH", "/api/rooms/hall", map[string]any{"name": strings.Repeat("n", 101)},
			map[string]any{"type": "update_room", "room": "hall", "name": strings.Repeat("n", 101)}, 400, "bad_request"},
		{"NUL in the topic", "PATCH", "/api/rooms/hall", map[string]any{"topic": "a\x00b"},
			map[string]any{"type": "update_room", "room": "hall", "topic": "a\x00b"}, 400, "bad_request"},
		{"overlong q", "GET", "/api/rooms/directory?q=" + strings.Repeat("q", 101), nil,
			map[string]any{"type": "directory", "q": strings.Repeat("q", 101)}, 400, "bad_request"},
	}
	for i, tc := range cases {
		st, rest := gwtest.Do(t, tc.method, h.base+tc.path, olga.Token, tc.body)
		ref := fmt.Sprintf("e%d", i)
		tc.frame["ref"] = ref
		c.Send(tc.frame)
		ws := c.Expect("error", ref)
		if st != tc.status || code(rest) != tc.code || code(ws) != tc.code || ws.Str("message") != rest.Str("message") {
			t.Fatalf("%s: REST %d %v, WebSocket %v; want %d %s and the same message", tc.name, st, rest, ws, tc.status, tc.code)
		}
	}
}
