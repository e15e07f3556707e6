package app_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// TestRoles_roles_and_mute: the creator owns the room; owners and admins act only on
// roles below their own; a muted member reads but cannot post, edit or react until
// unmuted; the owner cannot leave before transferring ownership (or naming a successor
// who is another member), after which they are an admin; DMs have no roles.
func TestRoles_roles_and_mute(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	accs := map[string]gwtest.Account{}
	for _, n := range []string{"olga", "adam", "mia", "max", "zoe"} { // zoe never joins
		accs[n] = gwtest.NewAccount(t, h.base, n)
	}
	role := func(r string) map[string]string { return map[string]string{"role": r} }
	msg := func(id string) map[string]string { return map[string]string{"client_msg_id": id, "text": "hi"} }
	steps := []struct {
		name         string
		as           string
		method, path string
		body         any
		status       int
		code         string
	}{
		{"create hall", "olga", "POST", "/api/rooms", map[string]any{"id": "hall"}, 201, ""},
		{"adam joins", "adam", "POST", "/api/rooms/hall/join", nil, 200, ""},
		{"mia joins", "mia", "POST", "/api/rooms/hall/join", nil, 200, ""},
		{"max joins", "max", "POST", "/api/rooms/hall/join", nil, 200, ""},
		{"member cannot promote", "mia", "POST", "/api/rooms/hall/members/max/role", role("admin"), 403, "forbidden"},
		{"unknown role", "olga", "POST", "/api/rooms/hall/members/adam/role", role("boss"), 400, "bad_request"},
		{"no owner by role", "olga", "POST", "/api/rooms/hall/members/adam/role", role("owner"), 400, "bad_request"},
		{"owner promotes adam", "olga", "POST", "/api/rooms/hall/members/adam/role", role("admin"), 200, ""},
		{"admin cannot make admins", "adam", "POST", "/api/rooms/hall/members/mia/role", role("admin"), 403, "forbidden"},
		{"admin cannot demote the owner", "adam", "POST", "/api/rooms/hall/members/olga/role", role("member"), 403, "forbidden"},
		{"admin cannot kick the owner", "adam", "POST", "/api/rooms/hall/kick", map[string]string{"username": "olga"}, 403, "forbidden"},
		{"admin cannot mute the owner", "adam", "POST", "/api/rooms/hall/members/olga/mute", nil, 403, "forbidden"},
		{"non-member cannot be muted", "olga", "POST", "/api/rooms/hall/members/nobody/mute", nil, 404, "not_found"},
		{"mia posts", "mia", "POST", "/api/rooms/hall/messages", msg("m1"), 202, ""},
		{"admin mutes mia", "adam", "POST", "/api/rooms/hall/members/mia/mute", nil, 200, ""},
		{"muted mia cannot post", "mia", "POST", "/api/rooms/hall/messages", msg("m2"), 403, "forbidden"},
		{"muted mia cannot reply", "mia", "POST", "/api/rooms/hall/messages", map[string]any{"client_msg_id": "m3", "text": "re", "thread_root": 1}, 403, "forbidden"},
		{"muted mia still reads", "mia", "GET", "/api/rooms/hall/messages", nil, 200, ""},
		{"owner demotes adam", "olga", "POST", "/api/rooms/hall/members/adam/role", role("member"), 200, ""},
		{"ex-admin cannot unmute", "adam", "DELETE", "/api/rooms/hall/members/mia/mute", nil, 403, "forbidden"},
		{"owner unmutes mia", "olga", "DELETE", "/api/rooms/hall/members/mia/mute", nil, 200, ""},
		{"unmuted mia posts", "mia", "POST", "/api/rooms/hall/messages", msg("m4"), 202, ""},
		{"member cannot rename", "mia", "PATCH", "/api/rooms/hall", map[string]any{"name": "Mine"}, 403, "forbidden"},
		{"empty patch", "olga", "PATCH", "/api/rooms/hall", map[string]any{}, 400, "bad_request"},
		{"empty name", "olga", "PATCH", "/api/rooms/hall", map[string]any{"name": " "}, 400, "bad_request"},
		{"overlong topic", "olga", "PATCH", "/api/rooms/hall", map[string]any{"topic": strings.Repeat("t", 501)}, 400, "bad_request"},
		{"private must be a boolean", "olga", "PATCH", "/api/rooms/hall", map[string]any{"private": "yes"}, 400, "bad_request"},
		{"owner renames and sets the topic", "olga", "PATCH", "/api/rooms/hall", map[string]any{"name": "Great Hall", "topic": "all hands"}, 200, ""},
		{"the owner cannot leave", "olga", "POST", "/api/rooms/hall/leave", nil, 409, "conflict"},
		{"the owner's successor must be a member", "olga", "POST", "/api/rooms/hall/leave", map[string]string{"successor": "zoe"}, 404, "not_found"},
		{"the owner's successor must exist", "olga", "POST", "/api/rooms/hall/leave?successor=nobody", nil, 404, "not_found"},
		{"the owner cannot succeed herself", "olga", "POST", "/api/rooms/hall/leave", map[string]string{"successor": "olga"}, 400, "bad_request"},
		{"a successor must be a username", "olga", "POST", "/api/rooms/hall/leave", map[string]string{"successor": "no one"}, 400, "bad_request"},
		{"only the owner transfers", "adam", "POST", "/api/rooms/hall/transfer", map[string]string{"username": "mia"}, 403, "forbidden"},
		{"no transfer to a non-member", "olga", "POST", "/api/rooms/hall/transfer", map[string]string{"username": "nobody"}, 404, "not_found"},
		{"olga makes adam owner", "olga", "POST", "/api/rooms/hall/transfer", map[string]string{"username": "adam"}, 200, ""},
		{"ex-owner, now admin, cannot demote the owner", "olga", "POST", "/api/rooms/hall/members/adam/role", role("member"), 403, "forbidden"},
		{"the ex-owner may leave", "olga", "POST", "/api/rooms/hall/leave", nil, 200, ""},
	}
	for _, s := range steps {
		st, f := gwtest.Do(t, s.method, h.base+s.path, accs[s.as].Token, s.body)
		if st != s.status || code(f) != s.code {
			t.Fatalf("%s: %s %s as %s: %d %v, want %d %q", s.name, s.method, s.path, s.as, st, f, s.status, s.code)
		}
	}
	st, dm := gwtest.Do(t, "POST", h.base+"/api/dms/max", accs["olga"].Token, nil)
	if st >= 300 {
		t.Fatalf("open dm: %d %v", st, dm)
	}
	dmRoom, _ := dm["room"].(map[string]any)["id"].(string)
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/"+dmRoom+"/members/max/mute", accs["olga"].Token, nil); st != 400 || code(f) != "bad_request" {
		t.Fatalf("mute in a dm (%s): %d %v", dmRoom, st, f)
	}
	if st, f := gwtest.Do(t, "PATCH", h.base+"/api/rooms/hall", accs["adam"].Token, map[string]any{"private": true}); st != 200 ||
		f.Str("name") != "Great Hall" || f.Str("topic") != "all hands" || f["private"] != true {
		t.Fatalf("settings after going private: %d %v", st, f)
	}
	_, f := gwtest.Do(t, "GET", h.base+"/api/rooms/hall/members", accs["adam"].Token, nil)
	got := map[string]string{}
	for _, m := range f["members"].([]any) {
		m := m.(map[string]any)
		got[m["username"].(string)] = m["role"].(string)
		if m["muted"] != false {
			t.Fatalf("member %v still muted", m)
		}
	}
	if want := map[string]string{"adam": "owner", "mia": "member", "max": "member"}; !maps.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
}

// TestRoles_directory: public rooms matching q by id, name or topic, paged by cursor with
// member counts; private rooms and DMs never appear; bad input is refused.
func TestRoles_directory(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	ann, ben := gwtest.NewAccount(t, h.base, "ann"), gwtest.NewAccount(t, h.base, "ben")
	tok := fmt.Sprintf("d%d", time.Now().UnixNano()) // the database outlives the test
	for _, r := range []map[string]any{
		{"id": tok + "-a", "name": "Alpha"},
		{"id": "x" + tok, "name": "Bravo"},
		{"id": tok + "-secret", "private": true},
	} {
		if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", ann.Token, r); st != 201 {
			t.Fatalf("create %v: %d %v", r, st, f)
		}
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", ann.Token, map[string]any{"id": "t" + tok[1:] + "-c"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "PATCH", h.base+"/api/rooms/t"+tok[1:]+"-c", ann.Token, map[string]any{"topic": "about " + tok}); st != 200 {
		t.Fatalf("topic: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/x"+tok+"/join", ben.Token, nil); st != 200 {
		t.Fatalf("join: %d %v", st, f)
	}
	type entry struct {
		id      string
		members float64
	}
	page := func(q string) ([]entry, string) {
		st, f := gwtest.Do(t, "GET", h.base+"/api/rooms/directory?"+q, ben.Token, nil)
		if st != 200 {
			t.Fatalf("directory?%s: %d %v", q, st, f)
		}
		var es []entry
		for _, r := range f["rooms"].([]any) {
			r := r.(map[string]any)
			es = append(es, entry{r["id"].(string), r["members"].(float64)})
		}
		return es, f.Str("cursor")
	}
	first, cursor := page("limit=2&q=" + strings.ToUpper(tok))
	if want := []entry{{tok + "-a", 1}, {"t" + tok[1:] + "-c", 1}}; !slices.Equal(first, want) || cursor == "" {
		t.Fatalf("first page %v %q, want %v and a cursor", first, cursor, want)
	}
	second, cursor := page("limit=2&q=" + tok + "&cursor=" + cursor)
	if want := []entry{{"x" + tok, 2}}; !slices.Equal(second, want) || cursor != "" {
		t.Fatalf("second page %v %q, want %v and no cursor", second, cursor, want)
	}
	for _, bad := range []string{"limit=101", "limit=-1", "cursor=%21%21", "q=" + strings.Repeat("q", 101)} {
		if st, f := gwtest.Do(t, "GET", h.base+"/api/rooms/directory?"+bad, ben.Token, nil); st != 400 || code(f) != "bad_request" {
			t.Fatalf("directory?%s: %d %v", bad, st, f)
		}
	}
}
