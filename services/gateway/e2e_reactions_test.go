package main_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// reactionEntry is what a client sees of a timeline entry, for comparing two gateways.
type reactionEntry struct {
	seq         int64
	kind        string
	sender      string
	clientMsgID string
	target      int64
	emoji       string
	on          any // true, false, or nil when absent
}

// timelineUntil reads the room's message frames on c, in arrival order, up to the entry
// with client_msg_id until.
func timelineUntil(t *testing.T, c *gwtest.Client, room string, until string) []reactionEntry {
	t.Helper()
	var out []reactionEntry
	deadline := time.Now().Add(60 * time.Second)
	for {
		f, ok := c.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("room") == room }, time.Until(deadline))
		if !ok {
			t.Fatalf("timeline of %s: no entry after %v (want up to %s)", room, out, until)
		}
		out = append(out, reactionEntry{f.Int("seq"), f.Str("kind"), f.Str("sender_name"), f.Str("client_msg_id"),
			f.Int("target_seq"), f.Str("emoji"), f["on"]})
		if f.Str("client_msg_id") == until {
			return out
		}
	}
}

// TestE2E_reactions: reaction toggles through the whole platform (two gateways,
// persistence, fanout): delivered live in room order on both gateways, a retried toggle
// stored once, counts in history, outsiders and bad emoji refused with nothing stored.
func TestE2E_reactions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform")
	}
	s := startStack(t)
	alice := gwtest.NewAccount(t, s.a, "alice")
	bob := gwtest.NewAccount(t, s.b, "bob")
	carol := gwtest.NewAccount(t, s.b, "carol") // never joins
	if st, f := gwtest.Do(t, "POST", s.a+"/api/rooms", alice.Token, map[string]string{"id": "fun"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "POST", s.b+"/api/rooms/fun/join", bob.Token, nil); st != 200 {
		t.Fatalf("join: %d %v", st, f)
	}
	ca := hello(t, s.wsA, alice, map[string]int64{"fun": 0}, nil)
	cb := hello(t, s.wsB, bob, map[string]int64{"fun": 0}, nil)
	sendAll(t, ca, "fun", "m", 2, "hello ") // seq 3 and 4, after the two joins
	const target, other = 3, 4
	// An ack means published, not stored: the gateway checks a reaction's target in the
	// database, so wait until both messages have come back from persistence.
	headA := timelineUntil(t, ca, "fun", "m-1")
	headB := timelineUntil(t, cb, "fun", "m-1")

	// react sends a toggle and returns its answer (nil if none came).
	react := func(c *gwtest.Client, id string, seq int64, emoji string, on bool) gwtest.Frame {
		t.Helper()
		c.Send(map[string]any{"type": "react", "room": "fun", "client_msg_id": id, "target_seq": seq, "emoji": emoji, "on": on, "ref": id})
		f, _ := c.Next(func(f gwtest.Frame) bool { return f.Str("ref") == id }, 30*time.Second)
		return f
	}
	accepted := func(f gwtest.Frame) {
		t.Helper()
		if f.Type() != "ack" {
			t.Fatalf("toggle not acknowledged: %v", f)
		}
	}
	refused := func(what string, f gwtest.Frame, code string) {
		t.Helper()
		if f.Type() != "error" || f.Str("code") != code {
			t.Fatalf("%s: got %v, want error %s", what, f, code)
		}
	}

	// Toggles from both gateways, over WebSocket and REST, with a retry of r1 that must
	// count once (duplicate if r1 is stored by then; dropped by persistence otherwise).
	accepted(react(ca, "r1", target, "👍", true))
	accepted(react(cb, "r2", target, "👍", true))
	if st, f := gwtest.Do(t, "POST", s.b+fmt.Sprintf("/api/rooms/fun/messages/%d/reactions", target), bob.Token,
		map[string]any{"emoji": "🎉", "on": true, "client_msg_id": "r3"}); st != 202 {
		t.Fatalf("REST reaction: %d %v", st, f)
	}
	accepted(react(ca, "r1", target, "👍", true))
	accepted(react(cb, "r4", other, "❤️", true))
	accepted(react(cb, "r5", target, "🎉", false))
	accepted(react(cb, "r6", target, "🎉", false)) // removing what is not there: stores nothing

	// Refusals: nothing of these may be stored.
	for _, bad := range []string{"👍 ", "a\u200bb", "", "\u202e👍", "👍👍👍👍👍👍👍👍👍"} {
		refused(fmt.Sprintf("emoji %q", bad), react(ca, "bad", target, bad, true), "bad_request")
		if st, f := gwtest.Do(t, "POST", s.a+fmt.Sprintf("/api/rooms/fun/messages/%d/reactions", target), alice.Token,
			map[string]any{"emoji": bad, "on": true}); st != 400 || f.Str("code") != "bad_request" {
			t.Fatalf("REST emoji %q: %d %v", bad, st, f)
		}
	}
	if st, f := gwtest.Do(t, "POST", s.a+fmt.Sprintf("/api/rooms/fun/messages/%d/reactions", target), alice.Token,
		map[string]any{"emoji": "👍"}); st != 400 || f.Str("code") != "bad_request" {
		t.Fatalf("REST without on: %d %v", st, f)
	}
	refused("reaction to a join", react(ca, "join", 1, "👍", true), "bad_request")
	refused("reaction to a missing seq", react(ca, "missing", 999, "👍", true), "not_found")
	cc := hello(t, s.wsB, carol, map[string]int64{}, nil)
	refused("non-member", react(cc, "outsider", target, "👍", true), "forbidden")
	if st, f := gwtest.Do(t, "POST", s.b+fmt.Sprintf("/api/rooms/fun/messages/%d/reactions", target), carol.Token,
		map[string]any{"emoji": "👍", "on": true}); st != 403 || f.Str("code") != "forbidden" {
		t.Fatalf("REST non-member: %d %v", st, f)
	}

	// A last message marks the end: everything accepted before it was published before it
	// to the same partition, so it is stored before it.
	sendAll(t, ca, "fun", "end", 1, "the end ")
	ea := append(headA, timelineUntil(t, ca, "fun", "end-0")...)
	eb := append(headB, timelineUntil(t, cb, "fun", "end-0")...)
	if !slices.Equal(ea, eb) {
		t.Fatalf("gateways disagree:\nA %v\nB %v", ea, eb)
	}
	var got []reactionEntry
	for i, e := range ea {
		if e.seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d: %v", i, e.seq, ea)
		}
		if e.kind == "reaction" {
			e.seq = 0 // compared below by order
			got = append(got, e)
		}
	}
	want := []reactionEntry{
		{kind: "reaction", sender: "alice", clientMsgID: "r1", target: target, emoji: "👍", on: true},
		{kind: "reaction", sender: "bob", clientMsgID: "r2", target: target, emoji: "👍", on: true},
		{kind: "reaction", sender: "bob", clientMsgID: "r3", target: target, emoji: "🎉", on: true},
		{kind: "reaction", sender: "bob", clientMsgID: "r4", target: other, emoji: "❤️", on: true},
		{kind: "reaction", sender: "bob", clientMsgID: "r5", target: target, emoji: "🎉", on: false},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("reaction entries:\n got %v\nwant %v", got, want)
	}

	// History, through the other gateway: current counts per message, "me" per asker.
	reactionsIn := func(acc gwtest.Account) map[int64]string {
		t.Helper()
		st, f := gwtest.Do(t, "GET", s.b+"/api/rooms/fun/messages", acc.Token, nil)
		if st != 200 {
			t.Fatalf("history: %d %v", st, f)
		}
		out := map[int64]string{}
		for _, m := range f["messages"].([]any) {
			m := gwtest.Frame(m.(map[string]any))
			if rs, ok := m["reactions"].([]any); ok {
				out[m.Int("seq")] = fmt.Sprint(rs)
			}
		}
		return out
	}
	if got, want := reactionsIn(alice), map[int64]string{
		target: "[map[count:2 emoji:👍 me:true users:[alice bob]]]",
		other:  "[map[count:1 emoji:❤️ me:false users:[bob]]]",
	}; !maps.Equal(got, want) {
		t.Fatalf("alice's history reactions:\n got %v\nwant %v", got, want)
	}
	if got := reactionsIn(bob)[other]; got != "[map[count:1 emoji:❤️ me:true users:[bob]]]" {
		t.Fatalf("bob's history reactions on %d: %v", other, got)
	}
	if st, f := gwtest.Do(t, "GET", s.b+"/api/rooms/fun/messages", carol.Token, nil); st != 403 {
		t.Fatalf("carol's history: %d %v", st, f)
	}

	// A deleted message loses its reactions and takes no more.
	ca.Send(map[string]any{"type": "delete", "room": "fun", "client_msg_id": "del", "target_seq": other, "ref": "del"})
	ca.Expect("ack", "del")
	if _, ok := ca.Next(func(f gwtest.Frame) bool { return f.Str("kind") == "delete" && f.Int("target_seq") == other }, 30*time.Second); !ok {
		t.Fatal("the delete was not delivered")
	}
	refused("reaction to a deleted message", react(cb, "late", other, "👍", true), "conflict")
	if got := reactionsIn(alice); got[other] != "" || got[target] == "" {
		t.Fatalf("history after the delete: %v", got)
	}
}
