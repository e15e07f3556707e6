package main_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// roleEntry is what a client sees of a timeline entry, room change fields included.
type roleEntry struct {
	seq         int64
	kind        string
	sender      string
	clientMsgID string
	change      string
	target      string
	role        string
	settings    string // the settings object as JSON, keys sorted
}

func (e roleEntry) String() string {
	if e.kind == "room_change" {
		return fmt.Sprintf("%d %s %s %s %s %s %s", e.seq, e.sender, e.change, e.target, e.role, e.settings, e.clientMsgID)
	}
	return fmt.Sprintf("%d %s %s %s", e.seq, e.kind, e.sender, e.clientMsgID)
}

func roleEntryOf(t *testing.T, f gwtest.Frame) roleEntry {
	t.Helper()
	e := roleEntry{seq: f.Int("seq"), kind: f.Str("kind"), sender: f.Str("sender_name"), clientMsgID: f.Str("client_msg_id"),
		change: f.Str("change"), target: f.Str("target_name"), role: f.Str("role")}
	if s, ok := f["settings"]; ok {
		b, err := json.Marshal(s) // a map: encoding/json sorts its keys
		if err != nil {
			t.Fatal(err)
		}
		e.settings = string(b)
	}
	if e.kind == "room_change" && (f.Str("text") != "" || (e.change != "settings") != (f.Str("target") != "")) {
		t.Errorf("room_change entry %v: text or target wrong", f)
	}
	return e
}

// roleTimelineUntil reads the room's message frames on c, in arrival order, up to the
// entry with client_msg_id until.
func roleTimelineUntil(t *testing.T, c *gwtest.Client, room, until string) []roleEntry {
	t.Helper()
	var out []roleEntry
	deadline := time.Now().Add(60 * time.Second)
	for {
		f, ok := c.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("room") == room }, time.Until(deadline))
		if !ok {
			t.Fatalf("timeline of %s: no entry after %v (want up to %s)", room, out, until)
		}
		out = append(out, roleEntryOf(t, f))
		if f.Str("client_msg_id") == until {
			return out
		}
	}
}

// TestE2E_roles: role changes, mutes, settings and ownership transfers through the whole
// platform (two gateways, persistence, fanout) are timeline entries: each made over REST
// on one gateway reaches the room's subscribers on both live, with its own seq between
// the messages around it, in the same order; a mute takes effect on the other gateway; a
// request that changes nothing stores nothing; the owner leaves only naming a successor
// (the transfer's entry, then the leave's); history (REST and WebSocket) returns every
// entry with its fields, in seq order.
func TestE2E_roles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform")
	}
	s := startStack(t)
	gw1, gw2 := s.a, s.b
	alice := gwtest.NewAccount(t, gw2, "alice")
	bob := gwtest.NewAccount(t, gw1, "bob")
	carol := gwtest.NewAccount(t, gw2, "carol")
	if st, f := gwtest.Do(t, "POST", gw2+"/api/rooms", alice.Token, map[string]string{"id": "crew"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	for _, j := range []struct {
		base string
		acc  gwtest.Account
	}{{gw1, bob}, {gw2, carol}} {
		if st, f := gwtest.Do(t, "POST", j.base+"/api/rooms/crew/join", j.acc.Token, nil); st != 200 {
			t.Fatalf("join %s: %d %v", j.acc.Name, st, f)
		}
	}
	ca := hello(t, s.wsB, alice, map[string]int64{"crew": 0}, nil)
	cc := hello(t, s.wsB, carol, map[string]int64{"crew": 0}, nil)
	cb := hello(t, s.wsA, bob, map[string]int64{"crew": 0}, nil)

	// rest makes a REST request that must answer want.
	rest := func(method, base string, acc gwtest.Account, path string, body any, want int) gwtest.Frame {
		t.Helper()
		st, f := gwtest.Do(t, method, base+"/api/rooms/crew"+path, acc.Token, body)
		if st != want {
			t.Fatalf("%s %s: %d %v, want %d", method, path, st, f, want)
		}
		return f
	}
	changed := func(f gwtest.Frame, want bool) {
		t.Helper()
		if f["changed"] != want {
			t.Fatalf("answer %v: changed %v, want %v", f, f["changed"], want)
		}
	}
	send := func(c *gwtest.Client, id string) gwtest.Frame {
		t.Helper()
		c.Send(map[string]any{"type": "send", "room": "crew", "client_msg_id": id, "text": "text " + id, "ref": id})
		f, ok := c.Next(func(f gwtest.Frame) bool { return f.Str("ref") == id }, 30*time.Second)
		if !ok {
			t.Fatalf("send %s: no answer", id)
		}
		return f
	}
	accepted := func(c *gwtest.Client, id string) {
		t.Helper()
		if f := send(c, id); f.Type() != "ack" {
			t.Fatalf("send %s: %v", id, f)
		}
	}
	// Every change made over REST on gateway 1 is acknowledged after its event is in the
	// room's partition, so the messages around it bracket its entry.
	accepted(ca, "before")
	changed(rest("POST", gw1, alice, "/members/bob/role", map[string]string{"role": "admin"}, 200), true)
	accepted(ca, "after")
	// Carol, on gateway 2, sees the promotion live between the two messages.
	live := roleTimelineUntil(t, cc, "crew", "after")
	if n := len(live); n < 3 || live[n-2].change != "role" || live[n-3].clientMsgID != "before" ||
		live[n-2].seq != live[n-3].seq+1 || live[n-1].seq != live[n-2].seq+1 {
		t.Fatalf("carol's timeline around the promotion: %v", live)
	}

	// Muting carol over gateway 1 stops her sends on gateway 2; unmuting lets them through.
	changed(rest("POST", gw1, alice, "/members/carol/mute", nil, 200), true)
	if f := send(cc, "muted"); f.Type() != "error" || f.Str("code") != "forbidden" || !strings.Contains(f.Str("message"), "muted") {
		t.Fatalf("muted send: %v", f)
	}
	changed(rest("DELETE", gw1, alice, "/members/carol/mute", nil, 200), true)
	accepted(cc, "unmuted")

	// Settings: a rename with a topic, then privacy; then requests that change nothing.
	changed(rest("PATCH", gw1, alice, "", map[string]any{"name": "The Crew", "topic": "shipping"}, 200), true)
	changed(rest("PATCH", gw1, alice, "", map[string]any{"private": true, "topic": "shipping"}, 200), true)
	changed(rest("PATCH", gw1, alice, "", map[string]any{"topic": "shipping"}, 200), false)
	changed(rest("POST", gw1, alice, "/members/bob/role", map[string]string{"role": "admin"}, 200), false)
	changed(rest("DELETE", gw1, alice, "/members/carol/mute", nil, 200), false)

	// The owner's leave without a successor stays refused, naming the option; with bob as
	// successor, over WebSocket on gateway 2, bob becomes the owner and alice leaves.
	if f := rest("POST", gw2, alice, "/leave", nil, 409); !strings.Contains(f.Str("message"), "successor") {
		t.Fatalf("owner's leave: %v", f)
	}
	ca.Send(map[string]any{"type": "leave", "room": "crew", "successor": "bob", "ref": "bye"})
	ca.Expect("left", "bye")
	members := rest("GET", gw1, bob, "/members", nil, 200)
	roles := map[string]string{}
	for _, m := range members["members"].([]any) {
		m := gwtest.Frame(m.(map[string]any))
		roles[m.Str("username")] = m.Str("role")
	}
	if want := map[string]string{"bob": "owner", "carol": "member"}; fmt.Sprint(roles) != fmt.Sprint(want) {
		t.Fatalf("members after the handover: %v, want %v", roles, want)
	}
	accepted(cc, "end")

	// Both gateways delivered the same timeline; it is the one expected, and history
	// returns it too.
	onB := roleTimelineUntil(t, cb, "crew", "end")
	onC := append(live, roleTimelineUntil(t, cc, "crew", "end")...)
	if !slices.Equal(onB, onC) {
		t.Fatalf("gateways disagree:\n1 %v\n2 %v", onB, onC)
	}
	want := []string{
		"1 join alice ", "2 join bob ", "3 join carol ",
		"4 message alice before",
		`5 alice role bob admin  `,
		"6 message alice after",
		`7 alice muted carol   `,
		`8 alice unmuted carol   `,
		"9 message carol unmuted",
		`10 alice settings   {"name":"The Crew","topic":"shipping"} `,
		`11 alice settings   {"private":true} `,
		`12 alice owner bob owner  `,
		"13 leave alice ",
		"14 message carol end",
	}
	got := make([]string, len(onC))
	for i, e := range onC {
		got[i] = e.String()
	}
	if !slices.Equal(got, want) {
		t.Fatalf("timeline:\n got %q\nwant %q", got, want)
	}
	page := rest("GET", gw2, carol, "/messages?limit=50", nil, 200)
	var history []string
	for _, m := range page["messages"].([]any) {
		history = append(history, roleEntryOf(t, gwtest.Frame(m.(map[string]any))).String())
	}
	if !slices.Equal(history, want) {
		t.Fatalf("history:\n got %q\nwant %q", history, want)
	}
	// And over WebSocket, on the other gateway.
	cb.Send(map[string]any{"type": "history", "room": "crew", "limit": 50, "ref": "h"})
	history = nil
	for _, m := range cb.Expect("history", "h")["messages"].([]any) {
		history = append(history, roleEntryOf(t, gwtest.Frame(m.(map[string]any))).String())
	}
	if !slices.Equal(history, want) {
		t.Fatalf("WebSocket history:\n got %q\nwant %q", history, want)
	}
}
