package app_test

import (
	"testing"

	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// TestRoles_roles_and_mute: the creator owns the room; owners and admins act only on
// roles below their own; a muted member reads but cannot post, edit or react until
// unmuted, and may still delete their own message; DMs have no roles.
func TestRoles_roles_and_mute(t *testing.T) {
	h := start(t, nil)
	accs := map[string]gwtest.Account{}
	for _, n := range []string{"olga", "adam", "mia", "max"} {
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
	_, f := gwtest.Do(t, "GET", h.base+"/api/rooms/hall/members", accs["olga"].Token, nil)
	got := map[string]string{}
	for _, m := range f["members"].([]any) {
		m := m.(map[string]any)
		got[m["username"].(string)] = m["role"].(string)
		if m["muted"] != false {
			t.Fatalf("member %v still muted", m)
		}
	}
	if want := map[string]string{"olga": "owner", "adam": "member", "mia": "member", "max": "member"}; len(got) != 4 || got["olga"] != want["olga"] || got["adam"] != "member" {
		t.Fatalf("members %v, want %v", got, want)
	}
}
