package main_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// TestE2E_role_frames: the role frames through the whole platform, alternating gateways:
// what one gateway's frame changes, the other gateway's frames and REST see at once (the
// state is PostgreSQL's, not a gateway's), and a mute given on one gateway stops a send on
// the other.
func TestE2E_role_frames(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform")
	}
	s := startStack(t)
	olga := gwtest.NewAccount(t, s.a, "olga")
	adam := gwtest.NewAccount(t, s.b, "adam")
	mia := gwtest.NewAccount(t, s.a, "mia")
	if st, f := gwtest.Do(t, "POST", s.a+"/api/rooms", olga.Token, map[string]string{"id": "hall"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	for _, acc := range []gwtest.Account{adam, mia} {
		if st, f := gwtest.Do(t, "POST", s.b+"/api/rooms/hall/join", acc.Token, nil); st != 200 {
			t.Fatalf("%s joins: %d %v", acc.Name, st, f)
		}
	}
	conns := map[string]*gwtest.Client{
		"olga@a": hello(t, s.wsA, olga, map[string]int64{}, nil),
		"adam@b": hello(t, s.wsB, adam, map[string]int64{}, nil),
		"mia@a":  hello(t, s.wsA, mia, map[string]int64{}, nil),
		"mia@b":  hello(t, s.wsB, mia, map[string]int64{}, nil),
	}
	steps := []struct {
		name  string
		conn  string
		frame map[string]any
		reply string
		code  string
	}{
		{"olga on A promotes adam", "olga@a", map[string]any{"type": "set_role", "room": "hall", "user": "adam", "role": "admin"}, "role_set", ""},
		{"adam on B is an admin there: mutes mia", "adam@b", map[string]any{"type": "mute", "room": "hall", "user": "mia"}, "muted", ""},
		{"mia's send on A is refused", "mia@a", map[string]any{"type": "send", "room": "hall", "client_msg_id": "m1", "text": "hi"}, "error", "forbidden"},
		{"and on B", "mia@b", map[string]any{"type": "send", "room": "hall", "client_msg_id": "m2", "text": "hi"}, "error", "forbidden"},
		{"olga on A unmutes her", "olga@a", map[string]any{"type": "unmute", "room": "hall", "user": "mia"}, "unmuted", ""},
		{"mia's send on B is accepted", "mia@b", map[string]any{"type": "send", "room": "hall", "client_msg_id": "m3", "text": "hi"}, "ack", ""},
		{"adam on B sets the topic", "adam@b", map[string]any{"type": "update_room", "room": "hall", "topic": "release day"}, "room_updated", ""},
		{"mia on A finds it in the directory", "mia@a", map[string]any{"type": "directory", "q": "release"}, "directory", ""},
		{"olga on A hands the room to adam", "olga@a", map[string]any{"type": "transfer", "room": "hall", "user": "adam"}, "transferred", ""},
		{"adam on B, the owner now, demotes olga", "adam@b", map[string]any{"type": "set_role", "room": "hall", "user": "olga", "role": "member"}, "role_set", ""},
		{"olga on A may no longer change settings", "olga@a", map[string]any{"type": "update_room", "room": "hall", "name": "Mine"}, "error", "forbidden"},
	}
	for i, st := range steps {
		c := conns[st.conn]
		ref := fmt.Sprintf("s%d", i)
		st.frame["ref"] = ref
		c.Send(st.frame)
		got, ok := c.Next(func(f gwtest.Frame) bool { return f.Str("ref") == ref }, 30*time.Second)
		if !ok || got.Type() != st.reply || got.Str("code") != st.code {
			t.Fatalf("%s: got %v (buffered %v), want %s %s", st.name, got, c.Buffered(), st.reply, st.code)
		}
		if st.reply == "directory" {
			rooms, _ := got["rooms"].([]any)
			if len(rooms) != 1 || rooms[0].(map[string]any)["id"] != "hall" || rooms[0].(map[string]any)["topic"] != "release day" {
				t.Fatalf("%s: %v", st.name, got)
			}
		}
	}
	_, f := gwtest.Do(t, "GET", s.a+"/api/rooms/hall/members", mia.Token, nil)
	roles := map[string]string{}
	for _, m := range f["members"].([]any) {
		m := m.(map[string]any)
		roles[m["username"].(string)] = m["role"].(string)
	}
	if roles["adam"] != "owner" || roles["olga"] != "member" || roles["mia"] != "member" {
		t.Fatalf("roles read over REST on A: %v", roles)
	}
}
