package app_test

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// say stores a message in room as persistence would, and returns its seq.
func (h *harness) say(t *testing.T, room string, from gwtest.Account, text string) int64 {
	t.Helper()
	var seq int64
	err := h.db.QueryRow(context.Background(), `WITH r AS (UPDATE rooms SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq)
		INSERT INTO messages (room_id, seq, event_id, kind, sender, sender_name, text, sent_at)
		SELECT $1, r.last_seq, $2, 'message', $3, $4, $5, now() FROM r RETURNING seq`,
		room, uuid.Must(uuid.NewV7()).String(), from.ID, from.Name, text).Scan(&seq)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// searchREST calls GET /api/search with the given parameters.
func searchREST(t *testing.T, base string, acc gwtest.Account, params map[string]string) (int, gwtest.Frame) {
	t.Helper()
	v := url.Values{}
	for k, p := range params {
		v.Set(k, p)
	}
	return gwtest.Do(t, "GET", base+"/api/search?"+v.Encode(), acc.Token, nil)
}

// hitRooms returns the room of each hit, sorted.
func hitRooms(f gwtest.Frame) []string {
	hits, _ := f["hits"].([]any)
	out := []string{}
	for _, h := range hits {
		out = append(out, h.(map[string]any)["room"].(string))
	}
	slices.Sort(out)
	return out
}

// TestSearch_REST_authorization: GET /api/search never returns a message of a room the
// caller is not a member of now: a public room not joined, a private room invited to but
// not entered, a room left (over REST, as a user leaves), other users' DMs. Every room says
// the word, so any extra room is a leak.
func TestSearch_REST_authorization(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	bob := gwtest.NewAccount(t, h.base, "bob")
	carol := gwtest.NewAccount(t, h.base, "carol")
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})
	gwtest.Do(t, "POST", h.base+"/api/rooms/general/join", bob.Token, nil)
	gwtest.Do(t, "POST", h.base+"/api/rooms", carol.Token, map[string]string{"id": "carols"})
	dm := func(a gwtest.Account, with string) string {
		st, f := gwtest.Do(t, "POST", h.base+"/api/dms/"+with, a.Token, nil)
		if st != 200 {
			t.Fatalf("dm: %d %v", st, f)
		}
		return f["room"].(map[string]any)["id"].(string)
	}
	dmAB, dmBC := dm(alice, "bob"), dm(bob, "carol")
	// A private room of carol's: bob accepts an invitation, alice's stays pending.
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", carol.Token, map[string]any{"id": "hush", "private": true}); st != 201 {
		t.Fatalf("create private room: %d %v", st, f)
	}
	for _, who := range []string{"bob", "alice"} {
		if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/hush/invites", carol.Token, map[string]string{"username": who}); st != 201 {
			t.Fatalf("invite %s: %d %v", who, st, f)
		}
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/me/invites/hush/accept", bob.Token, nil); st != 200 {
		t.Fatalf("accept: %d %v", st, f)
	}
	h.say(t, "hush", carol, "the walrus in private")
	h.say(t, "general", alice, "the walrus in general")
	h.say(t, "carols", carol, "the walrus in carol's room")
	h.say(t, dmAB, bob, "the walrus between alice and bob")
	h.say(t, dmBC, carol, "the walrus between bob and carol")

	sortedRooms := func(rs ...string) []string { slices.Sort(rs); return rs }
	tests := []struct {
		name string
		acc  gwtest.Account
		room string
		want []string
	}{
		{"alice: her room and her DM", alice, "", sortedRooms("general", dmAB)},
		{"bob: joined room, accepted private room, both DMs", bob, "", sortedRooms("general", "hush", dmAB, dmBC)},
		{"carol: her rooms and her DM", carol, "", sortedRooms("carols", "hush", dmBC)},
		{"alice filters on a room she is not in", alice, "carols", []string{}},
		{"alice filters on bob and carol's DM", alice, dmBC, []string{}},
		{"carol filters on general", carol, "general", []string{}},
		{"alice, invited but not accepted, filters on the private room", alice, "hush", []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := map[string]string{"q": "walrus"}
			if tc.room != "" {
				p["room"] = tc.room
			}
			st, f := searchREST(t, h.base, tc.acc, p)
			if st != 200 {
				t.Fatalf("%d %v", st, f)
			}
			if got := hitRooms(f); !slices.Equal(got, tc.want) {
				t.Fatalf("found walrus in %v, want %v", got, tc.want)
			}
		})
	}

	// Bob leaves general: its messages, his own time there included, are gone for him.
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/general/leave", bob.Token, nil); st != 200 {
		t.Fatalf("leave: %d %v", st, f)
	}
	if _, f := searchREST(t, h.base, bob, map[string]string{"q": "walrus"}); !slices.Equal(hitRooms(f), sortedRooms("hush", dmAB, dmBC)) {
		t.Fatalf("after leaving general bob finds walrus in %v", hitRooms(f))
	}
	if _, f := searchREST(t, h.base, bob, map[string]string{"q": "walrus", "room": "general"}); len(hitRooms(f)) != 0 {
		t.Fatalf("after leaving general bob finds %v in it", hitRooms(f))
	}
}

// TestSearch_REST_hits_and_errors: the shape of a hit, paging over REST, and a 400 with
// a message saying what is wrong for every bad parameter.
func TestSearch_REST_hits_and_errors(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general", "name": "General"})
	seq := h.say(t, "general", alice, `<img src=x onerror=alert(1)> narwhal & co`)
	for range 3 {
		h.say(t, "general", alice, "another narwhal")
	}

	st, f := searchREST(t, h.base, alice, map[string]string{"q": "narwhal co", "sender": "alice"})
	if st != 200 {
		t.Fatalf("%d %v", st, f)
	}
	hits, _ := f["hits"].([]any)
	if len(hits) != 1 {
		t.Fatalf("hits %v", f)
	}
	hit := gwtest.Frame(hits[0].(map[string]any))
	if hit.Str("room") != "general" || hit.Str("room_name") != "General" || hit.Str("room_kind") != "room" || hit.Int("seq") != seq ||
		hit.Str("sender") != alice.ID || hit.Str("sender_name") != "alice" || hit.Str("sent_at") == "" {
		t.Fatalf("hit %v", hit)
	}
	// The snippet is the stored text, in segments; matches marked, nothing escaped or dropped.
	var text strings.Builder
	var marked []string
	for _, s := range hit["snippet"].([]any) {
		seg := s.(map[string]any)
		text.WriteString(seg["text"].(string))
		if seg["match"] == true {
			marked = append(marked, seg["text"].(string))
		}
	}
	if text.String() != `<img src=x onerror=alert(1)> narwhal & co` || !slices.Equal(marked, []string{"narwhal", "co"}) {
		t.Fatalf("snippet %q, marked %q", text.String(), marked)
	}

	// Two pages of two.
	st, p1 := searchREST(t, h.base, alice, map[string]string{"q": "narwhal", "limit": "2"})
	if st != 200 || len(p1["hits"].([]any)) != 2 || p1.Str("next_cursor") == "" {
		t.Fatalf("page 1: %d %v", st, p1)
	}
	st, p2 := searchREST(t, h.base, alice, map[string]string{"q": "narwhal", "limit": "2", "cursor": p1.Str("next_cursor")})
	if st != 200 || len(p2["hits"].([]any)) != 2 || p2.Str("next_cursor") != "" {
		t.Fatalf("page 2: %d %v", st, p2)
	}

	bad := []struct {
		name   string
		params map[string]string
		msg    string
	}{
		{"no q", map[string]string{}, "q is required"},
		{"blank q", map[string]string{"q": "   "}, "q is required"},
		{"q too long", map[string]string{"q": strings.Repeat("x", 257)}, "longer than 256 bytes"},
		{"no words", map[string]string{"q": "?!"}, "no words"},
		{"limit 0", map[string]string{"q": "narwhal", "limit": "0"}, "limit must be"},
		{"limit 51", map[string]string{"q": "narwhal", "limit": "51"}, "limit must be"},
		{"limit not a number", map[string]string{"q": "narwhal", "limit": "ten"}, "limit must be"},
		{"from not a time", map[string]string{"q": "narwhal", "from": "yesterday"}, "from must be an RFC 3339 time"},
		{"to not a time", map[string]string{"q": "narwhal", "to": "2026-13-01"}, "to must be an RFC 3339 time"},
		{"from after to", map[string]string{"q": "narwhal", "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from must be before to"},
		{"bad cursor", map[string]string{"q": "narwhal", "cursor": "!!"}, "cursor"},
		{"cursor of another query", map[string]string{"q": "walrus", "cursor": p1.Str("next_cursor")}, "another query"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			st, f := searchREST(t, h.base, alice, tc.params)
			if st != 400 || code(f) != "bad_request" || !strings.Contains(f.Str("message"), tc.msg) {
				t.Fatalf("got %d %v, want 400 bad_request saying %q", st, f, tc.msg)
			}
		})
	}
	if st, f := gwtest.Do(t, "GET", h.base+"/api/search?q=narwhal", "", nil); st != 401 {
		t.Fatalf("without a token: %d %v", st, f)
	}
}
