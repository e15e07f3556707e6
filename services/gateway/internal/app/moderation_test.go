package app_test

import (
	"slices"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// TestModeration_kick_ban: a room admin kicks and bans, in a public and a private room.
// The removed user's open connection stops following the room at once, their history
// access ends, a ban keeps them from joining, being invited or added until it is lifted,
// and each removal is a membership event on chat.submitted naming who made it.
func TestModeration_kick_ban(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	accs := map[string]gwtest.Account{}
	for _, n := range []string{"alice", "bob", "carol"} {
		accs[n] = gwtest.NewAccount(t, h.base, n)
	}
	bobWS := h.dial(t, accs["bob"])
	bobWS.Send(map[string]any{"type": "ping", "ref": "p"}) // settles the automatic subscriptions
	bobWS.Expect("pong", "p")
	// unsubscribed waits for bob's connection to stop following room, told why.
	unsubscribed := func(room, reason string) func(*testing.T, gwtest.Frame) {
		return func(t *testing.T, _ gwtest.Frame) {
			if _, ok := bobWS.Next(func(f gwtest.Frame) bool {
				return f.Type() == "unsubscribed" && f.Str("room") == room && f.Str("reason") == reason
			}, 10*time.Second); !ok {
				t.Fatalf("bob's connection still follows %s: %v", room, bobWS.Buffered())
			}
		}
	}
	subscribed := func(room string) func(*testing.T, gwtest.Frame) {
		return func(t *testing.T, _ gwtest.Frame) {
			if _, ok := bobWS.Next(func(f gwtest.Frame) bool { return f.Type() == "subscribed" && f.Str("room") == room }, 10*time.Second); !ok {
				t.Fatalf("bob's connection does not follow %s: %v", room, bobWS.Buffered())
			}
		}
	}
	who := func(name string) map[string]string { return map[string]string{"username": name} }
	steps := []struct {
		name         string
		as           string
		method, path string
		body         any
		status       int
		code         string
		check        func(*testing.T, gwtest.Frame)
	}{
		{"create club", "alice", "POST", "/api/rooms", map[string]any{"id": "club"}, 201, "", nil},
		{"bob joins", "bob", "POST", "/api/rooms/club/join", nil, 200, "", subscribed("club")},
		{"bob is no admin", "bob", "POST", "/api/rooms/club/kick", who("alice"), 403, "forbidden", nil},
		{"not oneself", "alice", "POST", "/api/rooms/club/kick", who("alice"), 400, "bad_request", nil},
		{"unknown user", "alice", "POST", "/api/rooms/club/kick", who("nobody"), 404, "not_found", nil},
		{"kick bob", "alice", "POST", "/api/rooms/club/kick", who("bob"), 200, "", unsubscribed("club", "kicked")},
		{"kick bob again (retry)", "alice", "POST", "/api/rooms/club/kick", who("bob"), 200, "", func(t *testing.T, f gwtest.Frame) {
			if f["kicked"] != false {
				t.Fatalf("second kick %v", f)
			}
		}},
		{"kicked bob's history", "bob", "GET", "/api/rooms/club/messages", nil, 403, "forbidden", nil},
		{"kicked bob may rejoin", "bob", "POST", "/api/rooms/club/join", nil, 200, "", subscribed("club")},
		{"ban bob", "alice", "POST", "/api/rooms/club/bans", who("bob"), 200, "", unsubscribed("club", "banned")},
		{"banned bob cannot rejoin", "bob", "POST", "/api/rooms/club/join", nil, 403, "forbidden", nil},
		{"banned bob cannot post", "bob", "POST", "/api/rooms/club/messages", map[string]string{"client_msg_id": "x", "text": "hi"}, 403, "forbidden", nil},
		{"ban carol, not a member", "alice", "POST", "/api/rooms/club/bans", who("carol"), 200, "", func(t *testing.T, f gwtest.Frame) {
			if f["removed"] != false || f["banned"] != true {
				t.Fatalf("ban of a non-member %v", f)
			}
		}},
		{"unban bob", "alice", "DELETE", "/api/rooms/club/bans/bob", nil, 200, "", nil},
		{"unbanned bob rejoins", "bob", "POST", "/api/rooms/club/join", nil, 200, "", subscribed("club")},
		{"nor banning oneself", "alice", "POST", "/api/rooms/club/bans", who("alice"), 400, "bad_request", nil},

		{"create den", "alice", "POST", "/api/rooms", map[string]any{"id": "den", "private": true}, 201, "", nil},
		{"invite bob", "alice", "POST", "/api/rooms/den/invites", who("bob"), 201, "", nil},
		{"bob accepts", "bob", "POST", "/api/me/invites/den/accept", nil, 200, "", subscribed("den")},
		{"ban bob from den", "alice", "POST", "/api/rooms/den/bans", who("bob"), 200, "", unsubscribed("den", "banned")},
		{"den is gone for bob", "bob", "GET", "/api/rooms/den/messages", nil, 404, "not_found", nil},
		{"banned bob cannot be invited", "alice", "POST", "/api/rooms/den/invites", who("bob"), 409, "conflict", nil},
		{"banned bob cannot be added", "alice", "POST", "/api/rooms/den/members", who("bob"), 409, "conflict", nil},
		{"unban bob from den", "alice", "DELETE", "/api/rooms/den/bans/bob", nil, 200, "", nil},
		{"invite bob again", "alice", "POST", "/api/rooms/den/invites", who("bob"), 201, "", nil},
	}
	for _, s := range steps {
		st, f := gwtest.Do(t, s.method, h.base+s.path, accs[s.as].Token, s.body)
		if st != s.status || code(f) != s.code {
			t.Fatalf("%s: %s %s as %s: %d %v, want %d %q", s.name, s.method, s.path, s.as, st, f, s.status, s.code)
		}
		if s.check != nil {
			s.check(t, f)
		}
	}

	// The membership events of club, in order, with who made each change.
	type change struct{ user, change, by string }
	var got []change
	for _, e := range h.readEvents(t, topics.Submitted, "club", 6) {
		p, err := event.DecodePayload(e)
		if err != nil {
			t.Fatal(err)
		}
		m := p.(event.MembershipChanged)
		by := m.ByName
		if m.By == m.User {
			by = "self"
		}
		got = append(got, change{m.UserName, m.Change, by})
	}
	want := []change{{"alice", "joined", "self"}, {"bob", "joined", "self"}, {"bob", "kicked", "alice"},
		{"bob", "joined", "self"}, {"bob", "banned", "alice"}, {"bob", "joined", "self"}}
	if !slices.Equal(got, want) {
		t.Fatalf("membership events\n got %v\nwant %v", got, want)
	}
}
