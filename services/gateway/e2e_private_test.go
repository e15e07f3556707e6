package main_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// TestE2E_private_rooms: a private room through the whole platform (two gateways,
// persistence, fanout). Accepting an invitation is a join entry with its own seq, stored
// by persistence (which checks the accepted invitation again) and delivered on both
// gateways; an invitee accepting on the other gateway than their open connection gets
// the room followed there; an outsider connected all along receives nothing of it. A
// kick through one gateway stops the kicked user's connection on the other.
func TestE2E_private_rooms(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform")
	}
	s := startStack(t)
	alice := gwtest.NewAccount(t, s.a, "alice")
	bob := gwtest.NewAccount(t, s.b, "bob")
	carol := gwtest.NewAccount(t, s.a, "carol")
	dave := gwtest.NewAccount(t, s.a, "dave") // never invited
	if st, f := gwtest.Do(t, "POST", s.a+"/api/rooms", alice.Token, map[string]any{"id": "vault", "private": true}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	ca := hello(t, s.wsA, alice, map[string]int64{"vault": 0}, nil)
	cb := hello(t, s.wsB, bob, nil, nil)
	cc := hello(t, s.wsA, carol, nil, nil) // carol accepts over REST on gateway B
	cd := hello(t, s.wsA, dave, nil, nil)
	for _, c := range []*gwtest.Client{cb, cc, cd} { // settle the automatic subscriptions
		c.Send(map[string]any{"type": "ping", "ref": "p"})
		c.Expect("pong", "p")
	}

	for _, who := range []string{"bob", "carol"} {
		if st, f := gwtest.Do(t, "POST", s.a+"/api/rooms/vault/invites", alice.Token, map[string]string{"username": who}); st != 201 {
			t.Fatalf("invite %s: %d %v", who, st, f)
		}
	}
	if st, f := gwtest.Do(t, "POST", s.b+"/api/rooms/vault/join", dave.Token, nil); st != 404 || f.Str("code") != "not_found" {
		t.Fatalf("dave joins without an invitation: %d %v", st, f)
	}
	for _, acc := range []gwtest.Account{bob, carol} {
		if st, f := gwtest.Do(t, "POST", s.b+"/api/me/invites/vault/accept", acc.Token, nil); st != 200 {
			t.Fatalf("%s accepts: %d %v", acc.Name, st, f)
		}
	}
	cb.Send(map[string]any{"type": "send", "room": "vault", "client_msg_id": "b1", "text": "hello vault", "ref": "b1"})
	cb.Expect("ack", "b1")

	// Everyone in the room sees the same timeline: three joins (alice's at creation, then
	// bob's and carol's acceptances) and bob's message, each with its seq.
	type line struct {
		seq        int64
		kind, name string
	}
	want := []line{{1, "join", "alice"}, {2, "join", "bob"}, {3, "join", "carol"}, {4, "message", "bob"}}
	// read returns what c receives of the room up to the last entry of want, from seq
	// from on: a connection that follows the room from a join may also get the entries
	// before it that were not stored yet when the join read the room's last seq.
	read := func(c *gwtest.Client, who string, from int64) []line {
		t.Helper()
		var got []line
		for len(got) == 0 || got[len(got)-1].seq < want[len(want)-1].seq {
			f, ok := c.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("room") == "vault" }, 60*time.Second)
			if !ok {
				t.Fatalf("%s: timeline so far %v (buffered %v)", who, got, c.Buffered())
			}
			if f.Int("seq") >= from {
				got = append(got, line{f.Int("seq"), f.Str("kind"), f.Str("sender_name")})
			}
		}
		return got
	}
	if got := read(ca, "alice on A", 1); !slices.Equal(got, want) {
		t.Fatalf("alice on A: %v, want %v", got, want)
	}
	// bob's connection on B follows from before his join (the accept on B subscribed it).
	if got := read(cb, "bob on B", 2); !slices.Equal(got, want[1:]) {
		t.Fatalf("bob on B: %v, want %v", got, want[1:])
	}
	// carol accepted on B; her connection on A follows the room from her join entry.
	if got := read(cc, "carol on A", 3); !slices.Equal(got, want[2:]) {
		t.Fatalf("carol on A: %v, want %v", got, want[2:])
	}
	// History through either gateway, for members; the room does not exist for dave.
	st, f := gwtest.Do(t, "GET", s.b+"/api/rooms/vault/messages", carol.Token, nil)
	if st != 200 || len(f["messages"].([]any)) != len(want) {
		t.Fatalf("carol's history on B: %d %v", st, f)
	}
	for _, base := range []string{s.a, s.b} {
		if st, f := gwtest.Do(t, "GET", base+"/api/rooms/vault/messages", dave.Token, nil); st != 404 || f.Str("message") != "no such room" {
			t.Fatalf("dave's history: %d %v", st, f)
		}
	}
	// alice (through gateway A) kicks bob, whose connection is on gateway B: the leave
	// entry, naming alice, reaches B and bob's connection stops following the room there;
	// what alice says next reaches carol and not bob, and bob's history access has ended.
	if st, f := gwtest.Do(t, "POST", s.a+"/api/rooms/vault/kick", alice.Token, map[string]string{"username": "bob"}); st != 200 || f["kicked"] != true {
		t.Fatalf("kick: %d %v", st, f)
	}
	if f, ok := cb.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("room") == "vault" }, 60*time.Second); !ok ||
		f.Str("kind") != "leave" || f.Str("sender_name") != "bob" || f.Str("text") != "kicked by alice" {
		t.Fatalf("bob on B after the kick: %v %v", f, cb.Buffered())
	}
	if _, ok := cb.Next(func(f gwtest.Frame) bool { return f.Type() == "unsubscribed" && f.Str("room") == "vault" }, 10*time.Second); !ok {
		t.Fatalf("bob's connection on B still follows the room: %v", cb.Buffered())
	}
	ca.Send(map[string]any{"type": "send", "room": "vault", "client_msg_id": "a-after", "text": "bob is gone", "ref": "a-after"})
	ca.Expect("ack", "a-after")
	if f, ok := cc.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("client_msg_id") == "a-after" }, 60*time.Second); !ok || f.Int("seq") != 6 {
		t.Fatalf("carol after the kick: %v %v", f, cc.Buffered())
	}
	cb.Send(map[string]any{"type": "ping", "ref": "after-kick"})
	cb.Expect("pong", "after-kick")
	for _, g := range cb.Buffered() {
		if g.Type() == "message" && g.Str("room") == "vault" && g.Int("seq") > 5 {
			t.Fatalf("bob received %v after the kick", g)
		}
	}
	for _, base := range []string{s.a, s.b} {
		if st, f := gwtest.Do(t, "GET", base+"/api/rooms/vault/messages", bob.Token, nil); st != 404 {
			t.Fatalf("kicked bob's history: %d %v", st, f)
		}
	}

	// dave's connection, open throughout, got nothing of the room: a ping answered now
	// comes after anything delivered before it.
	cd.Send(map[string]any{"type": "ping", "ref": "end"})
	cd.Expect("pong", "end")
	for _, g := range cd.Buffered() {
		if strings.Contains(fmt.Sprint(g), "vault") {
			t.Fatalf("dave received %v", g)
		}
	}
}
