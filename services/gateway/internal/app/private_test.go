package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/app"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// clock is the gateway's request clock in these tests: time.Now plus an offset the test
// moves, so that invitations expire without waiting.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// TestPrivateRooms_invite_lifecycle: a private room's invitations from creation to
// acceptance, declines, revocations, expiry (with a moved clock) and an admin's direct
// add; every way in is a join entry on chat.submitted, keyed by the room, naming who
// made it.
func TestPrivateRooms_invite_lifecycle(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	// Sessions live 24h; invitations 1h, so moving the clock 2h expires only them.
	h := start(t, func(c *app.Config) { c.InviteTTL = time.Hour; c.Now = clk.now })
	accs := map[string]gwtest.Account{}
	for _, n := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		accs[n] = gwtest.NewAccount(t, h.base, n)
	}
	type step struct {
		name         string
		as           string
		method, path string
		body         any
		status       int
		code         string // error code, or "" for a success
		check        func(t *testing.T, f gwtest.Frame)
	}
	invite := func(who string) map[string]string { return map[string]string{"username": who} }
	pending := func(who string, want ...string) step {
		return step{name: who + " lists " + fmt.Sprint(want), as: who, method: "GET", path: "/api/me/invites", status: 200,
			check: func(t *testing.T, f gwtest.Frame) {
				var got []string
				for _, i := range f["invites"].([]any) {
					inv := gwtest.Frame(i.(map[string]any))
					if inv.Str("invited_by") != "alice" || inv.Str("room_name") == "" {
						t.Fatalf("invite %v", inv)
					}
					got = append(got, inv.Str("room"))
				}
				if !slices.Equal(got, want) {
					t.Fatalf("pending invites %v, want %v", got, want)
				}
			}}
	}
	var bobWS *gwtest.Client
	steps := []step{
		{name: "create", as: "alice", method: "POST", path: "/api/rooms", body: map[string]any{"id": "secret", "name": "Secret", "private": true},
			status: 201, check: func(t *testing.T, f gwtest.Frame) {
				if f["private"] != true || f.Str("role") != "owner" {
					t.Fatalf("created %v", f)
				}
			}},
		{name: "not listed for bob", as: "bob", method: "GET", path: "/api/rooms", status: 200, check: func(t *testing.T, f gwtest.Frame) {
			if s := fmt.Sprint(f); strings.Contains(s, "secret") {
				t.Fatalf("bob's room list shows the private room: %v", s)
			}
		}},
		{name: "listed as private for alice", as: "alice", method: "GET", path: "/api/rooms", status: 200, check: func(t *testing.T, f gwtest.Frame) {
			mine := f["mine"].([]any)
			if len(mine) != 1 || mine[0].(map[string]any)["private"] != true || len(f["public"].([]any)) != 0 {
				t.Fatalf("alice's rooms %v", f)
			}
		}},
		{name: "unknown user", as: "alice", method: "POST", path: "/api/rooms/secret/invites", body: invite("nobody"), status: 404, code: "not_found"},
		{name: "invite a member", as: "alice", method: "POST", path: "/api/rooms/secret/invites", body: invite("alice"), status: 409, code: "conflict"},
		{name: "invite bob", as: "alice", method: "POST", path: "/api/rooms/secret/invites", body: invite("bob"), status: 201,
			check: func(t *testing.T, f gwtest.Frame) {
				exp, err := time.Parse(time.RFC3339Nano, f.Str("expires_at"))
				if err != nil || f.Str("username") != "bob" || exp.Sub(clk.now()) > time.Hour || exp.Sub(clk.now()) < 50*time.Minute {
					t.Fatalf("invite %v (%v)", f, err)
				}
			}},
		{name: "invite bob again", as: "alice", method: "POST", path: "/api/rooms/secret/invites", body: invite("bob"), status: 409, code: "conflict"},
		pending("bob", "secret"),
		{name: "bob's welcome lists it", as: "bob", method: "GET", path: "/api/me", status: 200, check: func(t *testing.T, _ gwtest.Frame) {
			c := gwtest.Dial(t, h.ws, nil)
			c.Send(map[string]any{"type": "auth", "token": accs["bob"].Token, "ref": "w"})
			w := c.Expect("welcome", "w")
			invs, _ := w["invites"].([]any)
			if len(invs) != 1 || invs[0].(map[string]any)["room"] != "secret" || invs[0].(map[string]any)["invited_by"] != "alice" {
				t.Fatalf("welcome %v", w)
			}
		}},
		{name: "invited bob cannot read yet", as: "bob", method: "GET", path: "/api/rooms/secret/messages", status: 404, code: "not_found"},
		{name: "bob accepts", as: "bob", method: "POST", path: "/api/me/invites/secret/accept", status: 200},
		{name: "bob's connection follows the room", as: "bob", method: "GET", path: "/api/me", status: 200, check: func(t *testing.T, _ gwtest.Frame) {
			bobWS.Expect("subscribed")
		}},
		{name: "bob accepts again (retry)", as: "bob", method: "POST", path: "/api/me/invites/secret/accept", status: 200},
		pending("bob"),
		{name: "bob reads", as: "bob", method: "GET", path: "/api/rooms/secret/members", status: 200, check: func(t *testing.T, f gwtest.Frame) {
			if n := len(f["members"].([]any)); n != 2 {
				t.Fatalf("members %v", f)
			}
		}},
		{name: "bob is no admin", as: "bob", method: "POST", path: "/api/rooms/secret/invites", body: invite("carol"), status: 403, code: "forbidden"},
		{name: "invite carol", as: "alice", method: "POST", path: "/api/rooms/secret/invites", body: invite("carol"), status: 201},
		{name: "carol declines", as: "carol", method: "POST", path: "/api/me/invites/secret/decline", status: 200},
		{name: "carol declines again (retry)", as: "carol", method: "POST", path: "/api/me/invites/secret/decline", status: 200},
		pending("carol"),
		{name: "carol cannot accept a declined invite", as: "carol", method: "POST", path: "/api/me/invites/secret/accept", status: 404, code: "not_found"},
		{name: "invite dave", as: "alice", method: "POST", path: "/api/rooms/secret/invites", body: invite("dave"), status: 201},
		{name: "revoke dave", as: "alice", method: "DELETE", path: "/api/rooms/secret/invites/dave", status: 200, check: func(t *testing.T, f gwtest.Frame) {
			if f["revoked"] != true {
				t.Fatalf("revoke %v", f)
			}
		}},
		{name: "revoke dave again (retry)", as: "alice", method: "DELETE", path: "/api/rooms/secret/invites/dave", status: 200, check: func(t *testing.T, f gwtest.Frame) {
			if f["revoked"] != false {
				t.Fatalf("revoke %v", f)
			}
		}},
		{name: "dave cannot accept a revoked invite", as: "dave", method: "POST", path: "/api/me/invites/secret/accept", status: 404, code: "not_found"},
		{name: "dave cannot join", as: "dave", method: "POST", path: "/api/rooms/secret/join", status: 404, code: "not_found"},
		{name: "invite erin", as: "alice", method: "POST", path: "/api/rooms/secret/invites", body: invite("erin"), status: 201},
		pending("erin", "secret"),
		{name: "two hours pass", as: "erin", method: "GET", path: "/api/me", status: 200, check: func(*testing.T, gwtest.Frame) { clk.advance(2 * time.Hour) }},
		pending("erin"),
		{name: "erin cannot accept an expired invite", as: "erin", method: "POST", path: "/api/me/invites/secret/accept", status: 404, code: "not_found"},
		{name: "erin cannot join with an expired invite", as: "erin", method: "POST", path: "/api/rooms/secret/join", status: 404, code: "not_found"},
		{name: "invite erin again", as: "alice", method: "POST", path: "/api/rooms/secret/invites", body: invite("erin"), status: 201},
		{name: "erin joins, which accepts", as: "erin", method: "POST", path: "/api/rooms/secret/join", status: 200},
		{name: "alice adds frank", as: "alice", method: "POST", path: "/api/rooms/secret/members", body: invite("frank"), status: 200},
		{name: "alice adds frank again (retry)", as: "alice", method: "POST", path: "/api/rooms/secret/members", body: invite("frank"), status: 200},
		{name: "frank reads", as: "frank", method: "GET", path: "/api/rooms/secret/messages", status: 200},
		{name: "invite a public room", as: "alice", method: "POST", path: "/api/rooms", body: map[string]any{"id": "open"}, status: 201},
		{name: "public rooms take no invites", as: "alice", method: "POST", path: "/api/rooms/open/invites", body: invite("bob"), status: 400, code: "bad_request"},
	}
	bobWS = h.dial(t, accs["bob"])
	bobWS.Send(map[string]any{"type": "ping", "ref": "p"}) // settles the session's automatic subscriptions
	bobWS.Expect("pong", "p")
	for _, s := range steps {
		st, f := gwtest.Do(t, s.method, h.base+s.path, accs[s.as].Token, s.body)
		if st != s.status || code(f) != s.code {
			t.Fatalf("%s: %s %s as %s: %d %v, want %d %q", s.name, s.method, s.path, s.as, st, f, s.status, s.code)
		}
		if s.check != nil {
			s.check(t, f)
		}
	}

	// Every way in is a join entry of the room, in order, naming who made it.
	type join struct{ user, by string }
	var got []join
	for _, e := range h.readEvents(t, topics.Submitted, "secret", 4) {
		p, err := event.DecodePayload(e)
		if err != nil {
			t.Fatal(err)
		}
		m, ok := p.(event.MembershipChanged)
		if !ok || m.Change != event.ChangeJoined {
			t.Fatalf("unexpected event %s %v", e.Type, p)
		}
		got = append(got, join{m.UserName, accsByID(accs)[m.By]})
	}
	want := []join{{"alice", "alice"}, {"bob", "bob"}, {"erin", "erin"}, {"frank", "alice"}}
	if !slices.Equal(got, want) {
		t.Fatalf("join events %v, want %v", got, want)
	}
}

func accsByID(accs map[string]gwtest.Account) map[string]string {
	out := map[string]string{}
	for n, a := range accs {
		out[a.ID] = n
	}
	return out
}

// TestPrivateRooms_hidden_like_missing: to someone outside it, a private room answers
// every request exactly as a room that does not exist does, byte for byte apart from the
// room id, over REST and WebSocket: nothing tells them apart.
func TestPrivateRooms_hidden_like_missing(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	mallory := gwtest.NewAccount(t, h.base, "mallory")
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]any{"id": "hideout", "private": true}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	h.store(t, "hideout", 1, 1, alice)
	const missing = "nowhere" // same length: a body echoing the id must not differ in length either

	raw := func(method, path string, body any) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, h.base+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+mallory.Token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	for _, op := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/rooms/{id}/join", nil},
		{"POST", "/api/rooms/{id}/leave", nil},
		{"GET", "/api/rooms/{id}/members", nil},
		{"POST", "/api/rooms/{id}/members", map[string]string{"username": "mallory"}},
		{"GET", "/api/rooms/{id}/messages", nil},
		{"POST", "/api/rooms/{id}/messages", map[string]string{"client_msg_id": "m1", "text": "hi"}},
		{"PATCH", "/api/rooms/{id}/messages/1", map[string]string{"text": "x"}},
		{"DELETE", "/api/rooms/{id}/messages/1", nil},
		{"POST", "/api/rooms/{id}/messages/1/reactions", map[string]any{"emoji": "👍", "on": true}},
		{"POST", "/api/rooms/{id}/read", map[string]int64{"seq": 1}},
		{"POST", "/api/rooms/{id}/invites", map[string]string{"username": "alice"}},
		{"DELETE", "/api/rooms/{id}/invites/alice", nil},
		{"POST", "/api/me/invites/{id}/accept", nil},
		{"POST", "/api/me/invites/{id}/decline", nil},
		{"POST", "/api/rooms/{id}/kick", map[string]string{"username": "alice"}},
		{"POST", "/api/rooms/{id}/bans", map[string]string{"username": "alice"}},
		{"DELETE", "/api/rooms/{id}/bans/alice", nil},
		{"PUT", "/api/rooms/{id}/notification-preferences", map[string]string{"level": "none"}},
		{"DELETE", "/api/rooms/{id}/notification-preferences", nil},
	} {
		t.Run(op.method+" "+op.path, func(t *testing.T) {
			st1, b1 := raw(op.method, strings.Replace(op.path, "{id}", "hideout", 1), op.body)
			st2, b2 := raw(op.method, strings.Replace(op.path, "{id}", missing, 1), op.body)
			if st1 != st2 || !bytes.Equal(bytes.ReplaceAll(b1, []byte("hideout"), []byte(missing)), b2) {
				t.Fatalf("private room: %d %s\nmissing room: %d %s", st1, b1, st2, b2)
			}
			if op.path != "/api/me/invites/{id}/decline" && st1 != 404 {
				t.Fatalf("answer %d %s, want 404", st1, b1)
			}
		})
	}

	c := h.dial(t, mallory)
	ws := func(f map[string]any) []byte {
		t.Helper()
		c.Send(f)
		got, ok := c.Next(func(g gwtest.Frame) bool { return g.Str("ref") == f["ref"] }, 10*time.Second)
		if !ok {
			t.Fatalf("no answer to %v", f)
		}
		b, _ := json.Marshal(got)
		return b
	}
	for _, f := range []map[string]any{
		{"type": "subscribe", "since_seq": 0},
		{"type": "join"},
		{"type": "leave"},
		{"type": "history"},
		{"type": "send", "client_msg_id": "w1", "text": "hi"},
		{"type": "edit", "client_msg_id": "w2", "target_seq": 1, "text": "x"},
		{"type": "delete", "client_msg_id": "w3", "target_seq": 1},
		{"type": "react", "client_msg_id": "w4", "target_seq": 1, "emoji": "👍", "on": true},
		{"type": "read", "seq": 1},
		{"type": "typing"},
	} {
		t.Run("ws "+f["type"].(string), func(t *testing.T) {
			a, b := map[string]any{"room": "hideout", "ref": "a"}, map[string]any{"room": missing, "ref": "a"}
			for k, v := range f {
				a[k], b[k] = v, v
			}
			got1, got2 := ws(a), ws(b)
			if !bytes.Equal(bytes.ReplaceAll(got1, []byte("hideout"), []byte(missing)), got2) || !bytes.Contains(got1, []byte(`"not_found"`)) {
				t.Fatalf("private room: %s\nmissing room: %s", got1, got2)
			}
		})
	}
	// hello with the room among its subscriptions.
	for _, room := range []string{"hideout", missing} {
		hc := gwtest.Dial(t, h.ws, nil)
		hc.Send(map[string]any{"type": "hello", "token": mallory.Token, "rooms": map[string]int64{room: 0}, "ref": "h"})
		f, ok := hc.Next(func(g gwtest.Frame) bool { return g.Type() == "error" && g.Str("room") == room }, 10*time.Second)
		if !ok || f.Str("code") != "not_found" || f.Str("message") != "no such room" {
			t.Fatalf("hello subscribing %s: %v (buffered %v)", room, f, hc.Buffered())
		}
	}
}
