package app_test

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/webpush"
	"github.com/kchat/kchat/services/gateway/internal/app"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// The authorization matrix: for every REST operation of api/openapi.yaml and every client
// frame type of docs/protocol.md, what each kind of caller may do, asserting the denials
// as well as the grants. Rooms are public rooms (anyone may join, only members read and
// write), private rooms (invisible to everyone outside them: the answer of a room that
// does not exist; entered by accepting an invitation) and DMs (exactly their two people,
// nobody can join). Each case gets a fresh room so that cases cannot influence each
// other; the DM is shared and never changed.
//
// Both documents are read at run time: an operation or frame type added to them without
// a row here fails TestAuthz_covers_every_route_and_frame.

type actor string

const (
	anon      actor = "anonymous"    // no token at all
	wrongKind actor = "reconnect-tk" // the member's reconnect token used as a bearer token
	member    actor = "member"       // a member of the room; one of the DM's two people
	nonMember actor = "non-member"   // registered, not in the room, not in the DM
	admin     actor = "room-admin"   // created the room; an outsider to the DM
	peer      actor = "dm-peer"      // the DM's other person; not in the room
	invited   actor = "invited"      // invited to the private room, not accepted (yet)
	exMember  actor = "ex-member"    // was a member of the room and left it
)

type authzFixture struct {
	h       *harness
	accs    map[actor]gwtest.Account
	dm      string
	private string // a private room of the admin's with the member in it and the invited actor invited
	rooms   atomic.Int64
	users   atomic.Int64
}

func newAuthzFixture(t *testing.T) *authzFixture {
	t.Helper()
	// With an unsubscribe key, so that the e-mail link answers for its token, not 503;
	// with a VAPID key, so that the push routes answer rather than 503.
	vapid, err := webpush.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, func(c *app.Config) {
		c.EmailTokenKey = []byte(strings.Repeat("k", 32))
		c.VAPIDPublicKey = vapid.Public
	})
	fx := &authzFixture{h: h, accs: map[actor]gwtest.Account{}}
	for _, a := range []actor{member, nonMember, admin, peer, invited, exMember} {
		fx.accs[a] = gwtest.NewAccount(t, h.base, strings.ReplaceAll(string(a), "-", "_"))
	}
	st, f := gwtest.Do(t, "POST", h.base+"/api/dms/"+fx.accs[peer].Name, fx.accs[member].Token, nil)
	if st != 200 {
		t.Fatalf("open dm: %d %v", st, f)
	}
	fx.dm = f["room"].(map[string]any)["id"].(string)
	fx.private = fx.freshRoom(t, true)
	// seq 1 by the member, seq 2 by the peer: edit/delete targets; seq 3 the peer's reply
	// in the thread of 1.
	h.store(t, fx.dm, 1, 1, fx.accs[member])
	h.store(t, fx.dm, 2, 2, fx.accs[peer])
	h.storeReply(t, fx.dm, 3, 1, fx.accs[peer])
	return fx
}

// freshRoom creates a room of the admin (private or public) with entry 1 written by
// the member, entry 2 by the admin and entry 3, the admin's reply in the thread of 1. The member and the ex-member joined it (a private
// room: accepted an invitation), the ex-member left again; a private room also has the
// invited actor's pending invitation.
func (fx *authzFixture) freshRoom(t *testing.T, private bool) string {
	t.Helper()
	room := fmt.Sprintf("authz-%d", fx.rooms.Add(1))
	do := func(what string, a actor, method, path string, body any, want int) {
		t.Helper()
		if st, f := gwtest.Do(t, method, fx.h.base+path, fx.accs[a].Token, body); st != want {
			t.Fatalf("%s %s: %d %v", what, room, st, f)
		}
	}
	do("create", admin, "POST", "/api/rooms", map[string]any{"id": room, "private": private}, 201)
	for _, a := range []actor{member, exMember} {
		if private {
			do("invite", admin, "POST", "/api/rooms/"+room+"/invites", map[string]string{"username": fx.accs[a].Name}, 201)
			do("accept", a, "POST", "/api/me/invites/"+room+"/accept", nil, 200)
		} else {
			do("join", a, "POST", "/api/rooms/"+room+"/join", nil, 200)
		}
	}
	do("leave", exMember, "POST", "/api/rooms/"+room+"/leave", nil, 200)
	if private {
		do("invite", admin, "POST", "/api/rooms/"+room+"/invites", map[string]string{"username": fx.accs[invited].Name}, 201)
	}
	fx.h.store(t, room, 1, 1, fx.accs[member])
	fx.h.store(t, room, 2, 2, fx.accs[admin])
	fx.h.storeReply(t, room, 3, 1, fx.accs[admin])
	return room
}

// other is someone the actor may open a DM with.
func (fx *authzFixture) other(a actor) gwtest.Account {
	if a == peer {
		return fx.accs[member]
	}
	return fx.accs[peer]
}

type expect struct {
	status int
	code   string
}

var (
	ok200    = expect{200, ""}
	ok201    = expect{201, ""}
	ok202    = expect{202, ""}
	noAuth   = expect{401, "unauthorized"}
	badToken = expect{401, "invalid_token"}
	denied   = expect{403, "forbidden"}
	hidden   = expect{404, "not_found"} // outsiders of a DM or private room: as if it did not exist
	badReq   = expect{400, "bad_request"}
	conflict = expect{409, "conflict"}
)

// restCase is one operation; public holds the answers on a fresh public room, private
// those on a fresh private room, dm those on the DM (operations without a room id have no
// private or dm column). In the public column, an actor without an answer of its own
// answers as the non-member does (the ex-member has left; nobody is invited to a public
// room).
type restCase struct {
	method, path        string
	query               string // appended to the URL
	body                func(fx *authzFixture, a actor) any
	public, private, dm map[actor]expect
}

// privateAnswers are the answers on a private room: members' (member and admin) as
// given, everyone else's the answer of a room that does not exist.
func privateAnswers(memberGets, adminGets expect) map[actor]expect {
	return map[actor]expect{anon: noAuth, wrongKind: badToken, member: memberGets, admin: adminGets,
		invited: hidden, nonMember: hidden, exMember: hidden}
}

// everyone gives the same answer to every authenticated actor, and the usual 401s.
func everyone(e expect) map[actor]expect {
	return map[actor]expect{anon: noAuth, wrongKind: badToken, member: e, nonMember: e, admin: e, peer: e}
}

func restCases() []restCase {
	msg := func(fx *authzFixture, a actor) any {
		return map[string]string{"client_msg_id": fmt.Sprintf("authz-%s-%d", a, time.Now().UnixNano()), "text": "hi"}
	}
	return []restCase{
		{method: "POST", path: "/api/register", body: func(fx *authzFixture, a actor) any {
			return map[string]string{"username": fmt.Sprintf("fresh_%d", fx.users.Add(1)), "password": "long enough"}
		}, public: map[actor]expect{anon: ok201, wrongKind: ok201, member: ok201, nonMember: ok201}},
		{method: "POST", path: "/api/login", body: func(fx *authzFixture, a actor) any {
			return map[string]string{"username": fx.accs[member].Name, "password": "password-" + fx.accs[member].Name}
		}, public: map[actor]expect{anon: ok200, wrongKind: ok200, nonMember: ok200}},
		{method: "POST", path: "/api/resume", body: func(fx *authzFixture, a actor) any {
			return map[string]string{"reconnect_token": fx.accs[member].Reconnect}
		}, public: map[actor]expect{anon: ok200, nonMember: ok200}},
		{method: "GET", path: "/api/me", public: everyone(ok200)},
		{method: "GET", path: "/api/rooms", public: everyone(ok200)},
		{method: "POST", path: "/api/rooms", body: func(fx *authzFixture, a actor) any {
			return map[string]string{"id": fmt.Sprintf("made-%d", fx.rooms.Add(1))}
		}, public: everyone(ok201)},
		{method: "POST", path: "/api/rooms/{id}/join",
			// Public rooms: anyone may join. Private rooms: only through an invitation (a
			// join accepts it). DMs: nobody may; its people are members already.
			public: map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: ok200, admin: ok200},
			private: map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, admin: ok200, invited: ok200,
				nonMember: hidden, exMember: hidden},
			dm: map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, admin: hidden}},
		{method: "POST", path: "/api/rooms/{id}/leave",
			// The room's creator owns it and must transfer ownership before leaving.
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: denied, admin: conflict},
			private: privateAnswers(ok200, conflict),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		{method: "GET", path: "/api/rooms/{id}/members",
			// A public room's member list is public (openapi: "DM and private room members
			// only to their members").
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: ok200, admin: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, admin: hidden}},
		// An admin adds someone (the peer) to a private room directly; other rooms take no
		// additions.
		{method: "POST", path: "/api/rooms/{id}/members", body: func(fx *authzFixture, _ actor) any {
			return map[string]string{"username": fx.accs[peer].Name}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: badReq, nonMember: badReq, admin: badReq},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		// Invitations: by a private room's admin (the peer is invited; someone who is
		// invited already, the invited actor, is a conflict: see TestPrivateRooms_invite_lifecycle).
		{method: "POST", path: "/api/rooms/{id}/invites", body: func(fx *authzFixture, _ actor) any {
			return map[string]string{"username": fx.accs[peer].Name}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: badReq, nonMember: badReq, admin: badReq},
			private: privateAnswers(denied, ok201),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		// Revoking the invited actor's invitation.
		{method: "DELETE", path: "/api/rooms/{id}/invites/{username}",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: badReq, nonMember: badReq, admin: badReq},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		// Everyone lists their own invitations; declining is idempotent and says nothing
		// about the room; accepting needs a usable invitation (a member's retry succeeds).
		{method: "GET", path: "/api/me/invites", public: everyone(ok200)},
		{method: "POST", path: "/api/me/invites/{id}/accept",
			public: map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: hidden, admin: ok200},
			private: map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, admin: ok200, invited: ok200,
				nonMember: hidden, exMember: hidden},
			dm: map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, admin: hidden}},
		{method: "POST", path: "/api/me/invites/{id}/decline",
			public: map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: ok200, admin: ok200},
			private: map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, admin: ok200, invited: ok200,
				nonMember: ok200, exMember: ok200},
			dm: map[actor]expect{member: ok200, peer: ok200, nonMember: ok200, admin: ok200}},
		// Moderation: a room's admins kick and ban (the member); a DM has no admins. Lifting
		// a ban (of the DM peer or the member, who is not banned) is the admins' too.
		{method: "POST", path: "/api/rooms/{id}/kick", body: func(fx *authzFixture, _ actor) any {
			return map[string]string{"username": fx.accs[member].Name}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, nonMember: denied, admin: ok200, peer: denied},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		{method: "POST", path: "/api/rooms/{id}/bans", body: func(fx *authzFixture, _ actor) any {
			return map[string]string{"username": fx.accs[member].Name}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, nonMember: denied, admin: ok200, peer: denied},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		{method: "DELETE", path: "/api/rooms/{id}/bans/{username}",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, nonMember: denied, admin: ok200},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		// Roles, muting and transfers (roles.go): the target is the room's member (the
		// member's target is the owner, whom nobody acts on).
		{method: "POST", path: "/api/rooms/{id}/members/{username}/role", body: func(fx *authzFixture, _ actor) any {
			return map[string]string{"role": "admin"}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, nonMember: denied, admin: ok200, peer: denied},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		{method: "POST", path: "/api/rooms/{id}/members/{username}/mute",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, nonMember: denied, admin: ok200, peer: denied},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		{method: "DELETE", path: "/api/rooms/{id}/members/{username}/mute",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, nonMember: denied, admin: ok200, peer: denied},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		{method: "POST", path: "/api/rooms/{id}/transfer", body: func(fx *authzFixture, _ actor) any {
			return map[string]string{"username": fx.accs[member].Name}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, nonMember: denied, admin: ok200, peer: denied},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		{method: "GET", path: "/api/rooms/directory", public: everyone(ok200)},
		{method: "PATCH", path: "/api/rooms/{id}", body: func(*authzFixture, actor) any { return map[string]string{"topic": "t"} },
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, nonMember: denied, admin: ok200, peer: denied},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		{method: "GET", path: "/api/rooms/{id}/messages",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: denied, admin: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, admin: hidden}},
		{method: "POST", path: "/api/rooms/{id}/messages", body: msg,
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok202, nonMember: denied, admin: ok202},
			private: privateAnswers(ok202, ok202),
			dm:      map[actor]expect{member: ok202, peer: ok202, nonMember: hidden, admin: hidden}},
		// A reply in the thread of entry 1: the rules of a message.
		{method: "POST", path: "/api/rooms/{id}/messages", body: func(fx *authzFixture, a actor) any {
			return map[string]any{"client_msg_id": fmt.Sprintf("authz-t-%s-%d", a, time.Now().UnixNano()), "text": "re", "thread_root": 1}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok202, nonMember: denied, admin: ok202},
			private: privateAnswers(ok202, ok202),
			dm:      map[actor]expect{member: ok202, peer: ok202, nonMember: hidden, admin: hidden}},
		// The thread of entry 1 (entry 3 replies in it): read and marked read by members.
		{method: "GET", path: "/api/rooms/{id}/threads/{seq}",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: denied, admin: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, admin: hidden}},
		{method: "POST", path: "/api/rooms/{id}/threads/{seq}/read", body: func(*authzFixture, actor) any { return map[string]int64{"seq": 3} },
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: denied, admin: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, admin: hidden}},
		// Edits and deletes of entry 1, written by the member: its author and the room's
		// admin may; a DM has no admin.
		{method: "PATCH", path: "/api/rooms/{id}/messages/{seq}", body: func(fx *authzFixture, a actor) any {
			return map[string]string{"text": "changed by " + string(a)}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok202, nonMember: denied, admin: ok202, peer: denied},
			private: privateAnswers(ok202, ok202),
			dm:      map[actor]expect{member: ok202, peer: denied, nonMember: hidden, admin: hidden}},
		{method: "DELETE", path: "/api/rooms/{id}/messages/{seq}",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok202, nonMember: denied, admin: ok202, peer: denied},
			private: privateAnswers(ok202, ok202),
			dm:      map[actor]expect{member: ok202, peer: denied, nonMember: hidden, admin: hidden}},
		// Any member may react to entry 1; outsiders as for posting.
		{method: "POST", path: "/api/rooms/{id}/messages/{seq}/reactions", body: func(_ *authzFixture, a actor) any {
			return map[string]any{"emoji": "👍", "on": true, "client_msg_id": fmt.Sprintf("authz-r-%s-%d", a, time.Now().UnixNano())}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok202, nonMember: denied, admin: ok202, peer: denied},
			private: privateAnswers(ok202, ok202),
			dm:      map[actor]expect{member: ok202, peer: ok202, nonMember: hidden, admin: hidden}},
		// Uploads: outsiders are answered before the body is read; members get past the room
		// check to the body's (a JSON body is not multipart: 400). Downloads are per file:
		// the path's id here is no upload, so everyone gets the same 404; who may download
		// what is TestAttachments_download_authorization's matrix.
		{method: "POST", path: "/api/rooms/{id}/uploads", body: msg,
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: badReq, nonMember: denied, admin: badReq},
			private: privateAnswers(badReq, badReq),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, admin: hidden}},
		{method: "GET", path: "/api/attachments/{attachment_id}", public: everyone(hidden)},
		{method: "GET", path: "/api/attachments/{attachment_id}/thumbnail", public: everyone(hidden)},
		{method: "POST", path: "/api/rooms/{id}/read", body: func(*authzFixture, actor) any { return map[string]int64{"seq": 1} },
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: denied, admin: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, admin: hidden}},
		// Notifications are per user: every caller sees and marks only their own (see
		// TestAuthz_notifications_are_private).
		{method: "GET", path: "/api/notifications", public: everyone(ok200)},
		{method: "GET", path: "/api/notifications/unread", public: everyone(ok200)},
		{method: "POST", path: "/api/notifications/read", body: func(*authzFixture, actor) any { return map[string]bool{"all": true} },
			public: everyone(ok200)},
		// A room's details, public like its member list.
		{method: "GET", path: "/api/rooms/{id}",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: ok200, admin: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, admin: hidden}},
		// E-mail settings are per user, like notifications. The unsubscribe link needs no
		// session (its signed token authorizes it): without a token nobody gets anywhere.
		{method: "GET", path: "/api/me/email", public: everyone(ok200)},
		{method: "PUT", path: "/api/me/email", body: func(_ *authzFixture, a actor) any {
			return map[string]any{"address": strings.ReplaceAll(string(a), "-", "") + "@example.com", "enabled": true}
		}, public: everyone(ok200)},
		{method: "GET", path: "/api/email/unsubscribe",
			public: map[actor]expect{anon: badReq, wrongKind: badReq, member: badReq, nonMember: badReq}},
		// Notification preferences: the defaults are per user; a room's setting needs
		// membership, as reading the room does.
		{method: "GET", path: "/api/me/notification-preferences", public: everyone(ok200)},
		{method: "PUT", path: "/api/me/notification-preferences", body: func(*authzFixture, actor) any {
			return map[string]any{"level": "mentions"}
		}, public: everyone(ok200)},
		{method: "PUT", path: "/api/rooms/{id}/notification-preferences", body: func(*authzFixture, actor) any {
			return map[string]any{"level": "none"}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: denied, admin: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, admin: hidden}},
		{method: "DELETE", path: "/api/rooms/{id}/notification-preferences",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: denied, admin: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, admin: hidden}},
		// Push: the VAPID public key is public; subscriptions are per user (the same
		// endpoint again replaces, so a fresh one per call).
		{method: "GET", path: "/api/push/vapid-public-key",
			public: map[actor]expect{anon: ok200, wrongKind: ok200, member: ok200, nonMember: ok200}},
		{method: "POST", path: "/api/me/push-subscriptions", body: func(fx *authzFixture, a actor) any {
			k, _ := webpush.GenerateKeys()
			return map[string]any{"endpoint": fmt.Sprintf("https://push.example.com/authz/%s-%d", a, fx.users.Add(1)),
				"keys": map[string]string{"p256dh": k.Public, "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}
		}, public: everyone(ok200)},
		{method: "DELETE", path: "/api/me/push-subscriptions", body: func(*authzFixture, actor) any {
			return map[string]string{"endpoint": "https://push.example.com/authz/none"}
		}, public: everyone(ok200)},
		{method: "POST", path: "/api/dms/{username}", public: everyone(ok200)},
		{method: "GET", path: "/api/users", public: everyone(ok200)},
		{method: "GET", path: "/api/stats", public: everyone(ok200)},
		// Search runs over the caller's own rooms only: everyone may search, and checkGrant
		// fails any hit from a room the caller is not a member of (every fresh room and the
		// DM say "m1"). TestSearch_REST_authorization covers leaving and room filters.
		{method: "GET", path: "/api/search", query: "?q=m1&limit=50", public: everyone(ok200)},
	}
}

// operationalPaths are served to anyone (load balancers and Prometheus have no
// accounts); /ws upgrades anyone and then demands authentication (see the WS matrix).
var operationalPaths = []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /ws"}

func TestAuthz_REST_matrix(t *testing.T) {
	fx := newAuthzFixture(t)
	for _, rc := range restCases() {
		for _, col := range []struct {
			name string
			want map[actor]expect
		}{{"room", withExMember(rc.public)}, {"private", rc.private}, {"dm", rc.dm}} {
			actors := make([]actor, 0, len(col.want))
			for a := range col.want {
				actors = append(actors, a)
			}
			slices.Sort(actors)
			for _, a := range actors {
				want := col.want[a]
				t.Run(fmt.Sprintf("%s %s/%s/%s", rc.method, rc.path, col.name, a), func(t *testing.T) {
					t.Parallel() // every case has a room of its own; the DM is only read
					room := fx.dm
					if col.name != "dm" && strings.Contains(rc.path, "{id}") {
						room = fx.freshRoom(t, col.name == "private")
					}
					path := strings.Replace(rc.path, "{id}", room, 1)
					if strings.Contains(path, "/invites/{username}") {
						path = strings.Replace(path, "{username}", fx.accs[invited].Name, 1)
					}
					if strings.Contains(path, "/members/{username}") {
						target := member
						if a == member {
							target = admin
						}
						path = strings.Replace(path, "{username}", fx.accs[target].Name, 1)
					}
					path = strings.Replace(path, "{username}", fx.other(a).Name, 1)
					path = strings.Replace(path, "{seq}", "1", 1)
					var body any
					if rc.body != nil {
						body = rc.body(fx, a)
					}
					token := ""
					switch a {
					case anon:
					case wrongKind:
						token = fx.accs[member].Reconnect
					default:
						token = fx.accs[a].Token
					}
					st, f := gwtest.Do(t, rc.method, fx.h.base+path+rc.query, token, body)
					if st != want.status || code(f) != want.code {
						t.Fatalf("%s %s as %s: got %d %v, want %d %q", rc.method, path, a, st, f, want.status, want.code)
					}
					checkGrant(t, fx, rc, path, room, a, st, f)
				})
			}
		}
	}
	for _, p := range operationalPaths[:3] {
		path := strings.TrimPrefix(p, "GET ")
		res, err := http.Get(fx.h.base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%s without a token: %d", p, res.StatusCode)
		}
	}
}

// withExMember completes a public room's answers: the ex-member answers as the
// non-member does, unless given an answer of its own.
func withExMember[E any](m map[actor]E) map[actor]E {
	e, ok := m[nonMember]
	if _, has := m[exMember]; has || !ok {
		return m
	}
	out := maps.Clone(m)
	out[exMember] = e
	return out
}

// checkGrant looks inside granted answers for data the actor must not see: other
// people's DMs in room lists, or a DM among the public rooms.
func checkGrant(t *testing.T, fx *authzFixture, rc restCase, path, room string, a actor, st int, f gwtest.Frame) {
	t.Helper()
	if st >= 300 {
		return
	}
	switch {
	case rc.method == "GET" && rc.path == "/api/rooms":
		dmVisible, privateVisible := false, false
		for _, list := range []string{"mine", "public"} {
			rs, _ := f[list].([]any)
			for _, r := range rs {
				switch id := r.(map[string]any)["id"]; {
				case id == fx.dm && list == "public":
					t.Fatalf("the DM is listed among public rooms for %s", a)
				case id == fx.private && list == "public":
					t.Fatalf("the private room is listed among public rooms for %s", a)
				case id == fx.dm:
					dmVisible = true
				case id == fx.private:
					privateVisible = true
				}
			}
		}
		if want := a == member || a == peer; dmVisible != want {
			t.Fatalf("%s sees the DM in its rooms: %v, want %v", a, dmVisible, want)
		}
		if want := a == member || a == admin; privateVisible != want {
			t.Fatalf("%s sees the private room in its rooms: %v, want %v", a, privateVisible, want)
		}
	case rc.method == "GET" && rc.path == "/api/search":
		for _, h := range f["hits"].([]any) {
			r := h.(map[string]any)["room"].(string)
			var isMember bool
			if err := fx.h.db.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2)`,
				r, fx.accs[a].ID).Scan(&isMember); err != nil {
				t.Fatal(err)
			}
			if !isMember {
				t.Fatalf("search as %s returned a hit of %s, which %s is not a member of", a, r, a)
			}
		}
		// The DM's two people find the peer's "m2" there (the only message the peer sends
		// anywhere); nobody else does.
		st, g := gwtest.Do(t, "GET", fx.h.base+"/api/search?q=m2&sender="+fx.accs[peer].Name, fx.accs[a].Token, nil)
		hits, _ := g["hits"].([]any)
		found := len(hits) == 1 && hits[0].(map[string]any)["room"] == fx.dm
		if want := a == member || a == peer; st != 200 || found != want || !want && len(hits) != 0 {
			t.Fatalf("search as %s for the DM's message: %d %v, want found %v", a, st, g, want)
		}
	case rc.method == "GET" && strings.HasSuffix(rc.path, "/messages"):
		for _, m := range f["messages"].([]any) {
			if r := m.(map[string]any)["room"]; r != room {
				t.Fatalf("history of %s returned an entry of %v", room, r)
			}
		}
	}
}

// wsExpect is the answer to a frame: the reply type (or "error" with a code); reply ""
// means "no answer at all" (typing).
type wsExpect struct {
	reply, code string
}

var (
	wsNoAuth = wsExpect{"error", "unauthorized"}
	wsDenied = wsExpect{"error", "forbidden"}
	wsHidden = wsExpect{"error", "not_found"} // outsiders of a DM: as if it did not exist
	wsBadReq = wsExpect{"error", "bad_request"}
)

// wsCase is one frame type, with columns as for restCase.
type wsCase struct {
	typ                 string
	frame               func(fx *authzFixture, room string, a actor) map[string]any
	public, private, dm map[actor]wsExpect
}

// wsPrivate: the answers on a private room, members' as given, everyone else's as for a
// room that does not exist.
func wsPrivate(memberGets, adminGets wsExpect) map[actor]wsExpect {
	return map[actor]wsExpect{anon: wsNoAuth, member: memberGets, admin: adminGets, invited: wsHidden, nonMember: wsHidden, exMember: wsHidden}
}

// wsEveryone: the same answer for every authenticated actor, unauthorized before auth.
func wsEveryone(reply string) map[actor]wsExpect {
	e := wsExpect{reply, ""}
	return map[actor]wsExpect{anon: wsNoAuth, member: e, nonMember: e, admin: e, peer: e}
}

func wsCases() []wsCase {
	id := func(a actor) string { return fmt.Sprintf("ws-%s-%d", a, time.Now().UnixNano()) }
	roomFrame := func(typ string) func(*authzFixture, string, actor) map[string]any {
		return func(_ *authzFixture, room string, _ actor) map[string]any {
			return map[string]any{"type": typ, "room": room}
		}
	}
	grantMembers := func(reply string) (map[actor]wsExpect, map[actor]wsExpect, map[actor]wsExpect) {
		g := wsExpect{reply, ""}
		return map[actor]wsExpect{anon: wsNoAuth, member: g, admin: g, nonMember: wsDenied},
			wsPrivate(g, g),
			map[actor]wsExpect{member: g, peer: g, nonMember: wsHidden, admin: wsHidden}
	}
	sendPub, sendPriv, sendDM := grantMembers("ack")
	reactPub, reactPriv, reactDM := grantMembers("ack")
	replyPub, replyPriv, replyDM := grantMembers("ack")
	threadPub, threadPriv, threadDM := grantMembers("thread")
	threadReadPub, threadReadPriv, threadReadDM := grantMembers("thread_read")
	subPub, subPriv, subDM := grantMembers("subscribed")
	histPub, histPriv, histDM := grantMembers("history")
	roomPrefsPub, roomPrefsPriv, roomPrefsDM := grantMembers("room_notification_prefs")
	typPub, typPriv, typDM := grantMembers("")
	// Edits and deletes of entry 1 (the member's): its author and the room's admin may;
	// other members and non-members may not. A DM has no admin: only the author.
	authorOrAdmin := func() (map[actor]wsExpect, map[actor]wsExpect, map[actor]wsExpect) {
		return map[actor]wsExpect{anon: wsNoAuth, member: {"ack", ""}, admin: {"ack", ""}, nonMember: wsDenied, peer: wsDenied},
			wsPrivate(wsExpect{"ack", ""}, wsExpect{"ack", ""}),
			map[actor]wsExpect{member: {"ack", ""}, peer: wsDenied, nonMember: wsHidden, admin: wsHidden}
	}
	editPub, editPriv, editDM := authorOrAdmin()
	delPub, delPriv, delDM := authorOrAdmin()
	return []wsCase{
		{typ: "hello", frame: func(fx *authzFixture, room string, a actor) map[string]any {
			f := map[string]any{"type": "hello", "rooms": map[string]int64{room: 0}}
			if a == anon {
				f["token"] = fx.accs[member].Token // authenticates as the member
			}
			return f
		}, public: map[actor]wsExpect{anon: {"subscribed", ""}, member: {"subscribed", ""}, admin: {"subscribed", ""}, nonMember: wsDenied},
			private: map[actor]wsExpect{anon: {"subscribed", ""}, member: {"subscribed", ""}, admin: {"subscribed", ""},
				invited: wsHidden, nonMember: wsHidden, exMember: wsHidden},
			dm: map[actor]wsExpect{member: {"subscribed", ""}, peer: {"subscribed", ""}, nonMember: wsHidden, admin: wsHidden}},
		// A connection cannot change whose it is: auth with someone else's token fails.
		{typ: "auth", frame: func(fx *authzFixture, _ string, _ actor) map[string]any {
			return map[string]any{"type": "auth", "token": fx.accs[member].Token}
		}, public: map[actor]wsExpect{anon: {"welcome", ""}, member: {"welcome", ""}, nonMember: wsBadReq, admin: wsBadReq, peer: wsBadReq}},
		{typ: "ping", frame: roomFrame("ping"), public: map[actor]wsExpect{anon: {"pong", ""}, member: {"pong", ""}, nonMember: {"pong", ""}}},
		{typ: "send", frame: func(_ *authzFixture, room string, a actor) map[string]any {
			return map[string]any{"type": "send", "room": room, "client_msg_id": id(a), "text": "hi"}
		}, public: sendPub, private: sendPriv, dm: sendDM},
		{typ: "edit", frame: func(_ *authzFixture, room string, a actor) map[string]any {
			return map[string]any{"type": "edit", "room": room, "client_msg_id": id(a), "target_seq": 1, "text": "changed"}
		}, public: editPub, private: editPriv, dm: editDM},
		{typ: "delete", frame: func(_ *authzFixture, room string, a actor) map[string]any {
			return map[string]any{"type": "delete", "room": room, "client_msg_id": id(a), "target_seq": 1}
		}, public: delPub, private: delPriv, dm: delDM},
		{typ: "react", frame: func(_ *authzFixture, room string, a actor) map[string]any {
			return map[string]any{"type": "react", "room": room, "client_msg_id": id(a), "target_seq": 1, "emoji": "👍", "on": true}
		}, public: reactPub, private: reactPriv, dm: reactDM},
		// A reply: a send with a thread_root, under the rules of a send.
		{typ: "send", frame: func(_ *authzFixture, room string, a actor) map[string]any {
			return map[string]any{"type": "send", "room": room, "client_msg_id": id(a), "text": "re", "thread_root": 1}
		}, public: replyPub, private: replyPriv, dm: replyDM},
		{typ: "thread", frame: func(_ *authzFixture, room string, _ actor) map[string]any {
			return map[string]any{"type": "thread", "room": room, "root": 1}
		}, public: threadPub, private: threadPriv, dm: threadDM},
		{typ: "thread_read", frame: func(_ *authzFixture, room string, _ actor) map[string]any {
			return map[string]any{"type": "thread_read", "room": room, "root": 1, "seq": 3}
		}, public: threadReadPub, private: threadReadPriv, dm: threadReadDM},
		{typ: "dm", frame: func(fx *authzFixture, _ string, a actor) map[string]any {
			return map[string]any{"type": "dm", "to": fx.other(a).Name, "client_msg_id": id(a), "text": "psst"}
		}, public: wsEveryone("ack")},
		{typ: "subscribe", frame: func(_ *authzFixture, room string, _ actor) map[string]any {
			return map[string]any{"type": "subscribe", "room": room, "since_seq": 0}
		}, public: subPub, private: subPriv, dm: subDM},
		// Unsubscribing a room the connection does not follow is not_found for anyone,
		// so it reveals nothing about rooms.
		{typ: "unsubscribe", frame: roomFrame("unsubscribe"),
			public:  map[actor]wsExpect{anon: wsNoAuth, member: {"error", "not_found"}, nonMember: {"error", "not_found"}},
			private: map[actor]wsExpect{member: {"error", "not_found"}, invited: {"error", "not_found"}, nonMember: {"error", "not_found"}},
			dm:      map[actor]wsExpect{member: {"error", "not_found"}, nonMember: {"error", "not_found"}}},
		{typ: "history", frame: roomFrame("history"), public: histPub, private: histPriv, dm: histDM},
		{typ: "typing", frame: roomFrame("typing"), public: typPub, private: typPriv, dm: typDM},
		// A join of a private room accepts the joiner's invitation; without one, the room
		// does not exist.
		{typ: "join", frame: roomFrame("join"),
			public: map[actor]wsExpect{anon: wsNoAuth, member: {"joined", ""}, nonMember: {"joined", ""}, admin: {"joined", ""}},
			private: map[actor]wsExpect{anon: wsNoAuth, member: {"joined", ""}, admin: {"joined", ""}, invited: {"joined", ""},
				nonMember: wsHidden, exMember: wsHidden},
			dm: map[actor]wsExpect{member: {"joined", ""}, peer: {"joined", ""}, nonMember: wsHidden, admin: wsHidden}},
		{typ: "leave", frame: roomFrame("leave"),
			public:  map[actor]wsExpect{anon: wsNoAuth, member: {"left", ""}, nonMember: wsDenied, admin: {"error", "conflict"}},
			private: wsPrivate(wsExpect{"left", ""}, wsExpect{"error", "conflict"}),
			dm:      map[actor]wsExpect{member: wsBadReq, peer: wsBadReq, nonMember: wsHidden, admin: wsHidden}},
		{typ: "read", frame: func(_ *authzFixture, room string, _ actor) map[string]any {
			return map[string]any{"type": "read", "room": room, "seq": 1}
		}, public: map[actor]wsExpect{anon: wsNoAuth, member: {"read", ""}, admin: {"read", ""}, nonMember: wsDenied},
			private: wsPrivate(wsExpect{"read", ""}, wsExpect{"read", ""}),
			dm:      map[actor]wsExpect{member: {"read", ""}, peer: {"read", ""}, nonMember: wsHidden, admin: wsHidden}},
		{typ: "notifications", frame: roomFrame("notifications"), public: wsEveryone("notifications")},
		{typ: "read_notifications", frame: func(*authzFixture, string, actor) map[string]any {
			return map[string]any{"type": "read_notifications", "all": true}
		}, public: wsEveryone("notifications_read")},
		// Notification preferences, as over REST: the defaults are per user; a room's
		// setting needs membership.
		{typ: "notification_prefs", frame: roomFrame("notification_prefs"), public: wsEveryone("notification_prefs")},
		{typ: "set_notification_prefs", frame: func(*authzFixture, string, actor) map[string]any {
			return map[string]any{"type": "set_notification_prefs", "level": "mentions"}
		}, public: wsEveryone("notification_prefs")},
		{typ: "set_room_notification_prefs", frame: func(_ *authzFixture, room string, _ actor) map[string]any {
			return map[string]any{"type": "set_room_notification_prefs", "room": room, "level": "none"}
		}, public: roomPrefsPub, private: roomPrefsPriv, dm: roomPrefsDM},
		{typ: "rooms", frame: roomFrame("rooms"), public: wsEveryone("rooms")},
		{typ: "users", frame: roomFrame("users"), public: wsEveryone("users")},
		{typ: "stats", frame: roomFrame("stats"), public: wsEveryone("stats")},
		{typ: "token", frame: roomFrame("token"), public: wsEveryone("token")},
		{typ: "quit", frame: roomFrame("quit"), public: map[actor]wsExpect{anon: {"close:1000", ""}, member: {"close:1000", ""}}},
	}
}

func TestAuthz_WebSocket_matrix(t *testing.T) {
	fx := newAuthzFixture(t)
	for _, wc := range wsCases() {
		for _, col := range []struct {
			name string
			want map[actor]wsExpect
		}{{"room", withExMember(wc.public)}, {"private", wc.private}, {"dm", wc.dm}} {
			actors := make([]actor, 0, len(col.want))
			for a := range col.want {
				actors = append(actors, a)
			}
			slices.Sort(actors)
			for _, a := range actors {
				want := col.want[a]
				t.Run(fmt.Sprintf("%s/%s/%s", wc.typ, col.name, a), func(t *testing.T) {
					t.Parallel()
					room := fx.dm
					if col.name != "dm" {
						room = fx.freshRoom(t, col.name == "private")
					}
					var c *gwtest.Client
					if a == anon {
						c = gwtest.Dial(t, fx.h.ws, nil)
					} else {
						c = fx.h.dial(t, fx.accs[a])
					}
					f := wc.frame(fx, room, a)
					f["ref"] = "x"
					c.Send(f)
					checkWS(t, c, wc.typ, a, want)
				})
			}
		}
	}
}

func checkWS(t *testing.T, c *gwtest.Client, typ string, a actor, want wsExpect) {
	t.Helper()
	switch {
	case strings.HasPrefix(want.reply, "close:"):
		if cc := c.WaitClosed(10 * time.Second); fmt.Sprintf("close:%d", cc) != want.reply {
			t.Fatalf("%s as %s: closed %d, want %s", typ, a, cc, want.reply)
		}
	case want.reply == "":
		// No answer: a ping sent after it is answered first, with no error in between
		// (frames of a connection are handled in order).
		c.Send(map[string]any{"type": "ping", "ref": "after"})
		c.Expect("pong", "after")
		for _, f := range c.Buffered() {
			if f.Type() == "error" {
				t.Fatalf("%s as %s: unexpected error %v", typ, a, f)
			}
		}
	default:
		got, found := c.Next(func(f gwtest.Frame) bool {
			return f.Str("ref") == "x" && (f.Type() == want.reply || f.Type() == "error")
		}, 15*time.Second)
		if !found {
			t.Fatalf("%s as %s: no %s or error (buffered %v, err %v)", typ, a, want.reply, c.Buffered(), c.Err())
		}
		if got.Type() != want.reply || want.code != "" && got.Str("code") != want.code {
			t.Fatalf("%s as %s: got %v, want %s %s", typ, a, got, want.reply, want.code)
		}
	}
}

// TestAuthz_covers_every_route_and_frame fails when the API or the protocol grows an
// operation or frame type that has no row in the matrices above.
func TestAuthz_covers_every_route_and_frame(t *testing.T) {
	root, err := stacktest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, rc := range restCases() {
		have[rc.method+" "+rc.path] = true
	}
	for _, p := range operationalPaths {
		have[p] = true
	}
	for _, op := range openapiOperations(t, root+"/services/gateway/api/openapi.yaml") {
		if !have[op] {
			t.Errorf("openapi.yaml documents %s but the authorization matrix has no row for it", op)
		}
	}
	frames := map[string]bool{}
	for _, wc := range wsCases() {
		frames[wc.typ] = true
	}
	for _, typ := range clientFrameTypes(t, root+"/docs/protocol.md") {
		if !frames[typ] {
			t.Errorf("docs/protocol.md documents client frame %q but the authorization matrix has no row for it", typ)
		}
	}
}

func openapiOperations(t *testing.T, file string) []string {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	pathRe := regexp.MustCompile(`^  (/\S*):\s*$`)
	methodRe := regexp.MustCompile(`^    (get|post|put|patch|delete):`)
	var out []string
	var path string
	inPaths := false
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		if line == "paths:" {
			inPaths = true
		} else if inPaths {
			if m := pathRe.FindStringSubmatch(line); m != nil {
				path = m[1]
			} else if m := methodRe.FindStringSubmatch(line); m != nil {
				out = append(out, strings.ToUpper(m[1])+" "+path)
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("read only %d operations from %s: has its layout changed?", len(out), file)
	}
	return out
}

// clientFrameTypes reads the first column of the "client → server" tables.
func clientFrameTypes(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rowRe := regexp.MustCompile("^\\| `(\\w+)` \\|")
	var out []string
	inTable := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "| client → server"):
			inTable = true
		case !strings.HasPrefix(line, "|"):
			inTable = false
		case inTable:
			if m := rowRe.FindStringSubmatch(line); m != nil {
				out = append(out, m[1])
			}
		}
	}
	if len(out) < 15 {
		t.Fatalf("read only %d client frame types from %s: has its layout changed?", len(out), file)
	}
	return out
}

// A notification is its recipient's alone: nobody else lists it, counts it or can mark
// it read (an id of someone else's notification marks nothing and is no error, so that
// probing learns nothing either).
func TestAuthz_notifications_are_private(t *testing.T) {
	fx := newAuthzFixture(t)
	id := uuid.Must(uuid.NewV7()).String()
	if _, err := fx.h.db.Exec(context.Background(), `INSERT INTO notifications (id, user_id, room_id, seq, reason, sender, preview)
		VALUES ($1, $2, $3, 1, 'dm', $4, 'psst')`, id, fx.accs[member].ID, fx.dm, fx.accs[peer].ID); err != nil {
		t.Fatal(err)
	}
	listed := func(a actor) bool {
		t.Helper()
		st, f := gwtest.Do(t, "GET", fx.h.base+"/api/notifications", fx.accs[a].Token, nil)
		if st != 200 {
			t.Fatalf("list as %s: %d %v", a, st, f)
		}
		ns, _ := f["notifications"].([]any)
		for _, n := range ns {
			if n.(map[string]any)["notification_id"] == id || n.(map[string]any)["id"] == id {
				return true
			}
		}
		return false
	}
	unread := func(a actor) int64 {
		t.Helper()
		_, f := gwtest.Do(t, "GET", fx.h.base+"/api/notifications/unread", fx.accs[a].Token, nil)
		return f.Int("unread_count")
	}
	if !listed(member) || unread(member) != 1 {
		t.Fatalf("the recipient does not see it: listed %v, unread %d", listed(member), unread(member))
	}
	for _, a := range []actor{peer, nonMember, admin} {
		if listed(a) || unread(a) != 0 {
			t.Fatalf("%s sees the member's notification", a)
		}
		st, f := gwtest.Do(t, "POST", fx.h.base+"/api/notifications/read", fx.accs[a].Token, map[string]any{"ids": []string{id}})
		if st != 200 || f.Int("marked") != 0 {
			t.Fatalf("%s marking it read: %d %v", a, st, f)
		}
		c := fx.h.dial(t, fx.accs[a])
		c.Send(map[string]any{"type": "read_notifications", "ids": []string{id}, "ref": "r"})
		if r := c.Expect("notifications_read", "r"); r.Int("marked") != 0 {
			t.Fatalf("%s marking it read over WebSocket: %v", a, r)
		}
	}
	if unread(member) != 1 {
		t.Fatal("someone else marked the member's notification read")
	}
	if st, f := gwtest.Do(t, "POST", fx.h.base+"/api/notifications/read", fx.accs[member].Token, map[string]any{"ids": []string{id}}); st != 200 || f.Int("marked") != 1 {
		t.Fatalf("the recipient marking it read: %d %v", st, f)
	}
}
