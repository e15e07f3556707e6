package app_test

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kchat/kchat/pkg/protocol"
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
// a row here fails TestAuthz_covers_every_route_and_frame. Actors a row leaves out answer
// as completeAnswers (authz_actors_test.go) says, and the matrices print their summary
// (authz_summary_test.go).

type actor string

const (
	anon      actor = "anonymous"    // no token at all
	wrongKind actor = "reconnect-tk" // the member's reconnect token used as a bearer token
	owner     actor = "owner"        // created the room, so owns it; an outsider to the DM
	admin     actor = "admin"        // a member the owner made an admin; an outsider to the DM
	member    actor = "member"       // a member of the room; one of the DM's two people
	muted     actor = "muted"        // a member the owner muted; an outsider to the DM
	kicked    actor = "kicked"       // was a member until the owner kicked them
	banned    actor = "banned"       // was a member until the owner banned them
	exMember  actor = "ex-member"    // was a member of the room and left it
	nonMember actor = "non-member"   // registered, not in the room, not in the DM
	peer      actor = "dm-peer"      // the DM's other person; not in the room
	invited   actor = "invited"      // invited to the private room, not accepted (yet)
)

type authzFixture struct {
	h       *harness
	accs    map[actor]gwtest.Account
	dm      string
	private string // a private room of the owner's with every member actor in it and the invited actor invited
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
	for _, a := range []actor{owner, admin, member, muted, kicked, banned, exMember, nonMember, peer, invited} {
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

// freshRoom creates a room of the owner's (private or public) with entry 1 written by the
// member, entry 2 by the owner, entry 3 the owner's reply in the thread of 1 and entry 4
// by the muted member (written before the mute). Every actor of the room joined it (a
// private room: accepted an invitation); then the ex-member left, the owner made the
// admin an admin, muted the muted member, kicked the kicked one and banned the banned
// one. A private room also has the invited actor's pending invitation.
func (fx *authzFixture) freshRoom(t *testing.T, private bool) string {
	t.Helper()
	room := fmt.Sprintf("authz-%d", fx.rooms.Add(1))
	do := func(what string, a actor, method, path string, body any, want int) {
		t.Helper()
		if st, f := gwtest.Do(t, method, fx.h.base+path, fx.accs[a].Token, body); st != want {
			t.Fatalf("%s %s: %d %v", what, room, st, f)
		}
	}
	user := func(a actor) map[string]string { return map[string]string{"username": fx.accs[a].Name} }
	do("create", owner, "POST", "/api/rooms", map[string]any{"id": room, "private": private}, 201)
	for _, a := range []actor{admin, member, muted, kicked, banned, exMember} {
		if private {
			do("invite", owner, "POST", "/api/rooms/"+room+"/invites", user(a), 201)
			do("accept", a, "POST", "/api/me/invites/"+room+"/accept", nil, 200)
		} else {
			do("join", a, "POST", "/api/rooms/"+room+"/join", nil, 200)
		}
	}
	do("leave", exMember, "POST", "/api/rooms/"+room+"/leave", nil, 200)
	do("promote", owner, "POST", "/api/rooms/"+room+"/members/"+fx.accs[admin].Name+"/role", map[string]string{"role": "admin"}, 200)
	do("mute", owner, "POST", "/api/rooms/"+room+"/members/"+fx.accs[muted].Name+"/mute", nil, 200)
	do("kick", owner, "POST", "/api/rooms/"+room+"/kick", user(kicked), 200)
	do("ban", owner, "POST", "/api/rooms/"+room+"/bans", user(banned), 200)
	if private {
		do("invite", owner, "POST", "/api/rooms/"+room+"/invites", user(invited), 201)
	}
	fx.h.store(t, room, 1, 1, fx.accs[member])
	fx.h.store(t, room, 2, 2, fx.accs[owner])
	fx.h.storeReply(t, room, 3, 1, fx.accs[owner])
	fx.h.store(t, room, 4, 4, fx.accs[muted])
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
// private or dm column). Actors a column leaves out answer as completeAnswers says
// (nobody is invited to a public room).
type restCase struct {
	method, path        string
	label               string // tells two rows of one operation apart in the summary
	query               string // appended to the URL
	body                func(fx *authzFixture, a actor) any
	target              actor // the {username} of /members/{username}: the member when unset
	seq                 int64 // the {seq} of the path: 1 (the member's message) when unset
	public, private, dm map[actor]expect
}

// privateAnswers are the answers on a private room: members' (member and owner) as
// given, everyone else's the answer of a room that does not exist.
func privateAnswers(memberGets, ownerGets expect) map[actor]expect {
	return map[actor]expect{anon: noAuth, wrongKind: badToken, member: memberGets, owner: ownerGets,
		invited: hidden, nonMember: hidden, exMember: hidden, kicked: hidden, banned: hidden}
}

// withAnswers is m with the answers of more added or replaced.
func withAnswers[E any](m, more map[actor]E) map[actor]E {
	out := maps.Clone(m)
	maps.Copy(out, more)
	return out
}

// everyone gives the same answer to every authenticated actor, and the usual 401s.
func everyone(e expect) map[actor]expect {
	return map[actor]expect{anon: noAuth, wrongKind: badToken, member: e, nonMember: e, owner: e, peer: e}
}

// restModerated: moderated's answers over REST, where a reconnect token is no bearer
// token.
func restModerated(ownerGets, adminGets expect) (pub, priv, dm map[actor]expect) {
	pub, priv, dm = moderated(ownerGets, adminGets, noAuth, denied, hidden, badReq)
	pub[wrongKind], priv[wrongKind] = badToken, badToken
	return pub, priv, dm
}

func restCases() []restCase {
	msg := func(fx *authzFixture, a actor) any {
		return map[string]string{"client_msg_id": fmt.Sprintf("authz-%s-%d", a, time.Now().UnixNano()), "text": "hi"}
	}
	// Roles (roles.go): only the owner gives roles (an admin may give none: admin is not
	// below admin) and transfers; the owner and admins mute, unmute and change settings.
	rolePub, rolePriv, roleDM := restModerated(ok200, denied)
	mutePub, mutePriv, muteDM := restModerated(ok200, ok200)
	unmutePub, unmutePriv, unmuteDM := restModerated(ok200, ok200)
	transferPub, transferPriv, transferDM := restModerated(ok200, denied)
	settingsPub, settingsPriv, settingsDM := restModerated(ok200, ok200)
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
			// A kicked user may join a public room again, a banned one not until the ban is
			// lifted.
			public: map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: ok200, owner: ok200, banned: denied},
			private: map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, owner: ok200, invited: ok200,
				nonMember: hidden, exMember: hidden},
			dm: map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, owner: hidden}},
		{method: "POST", path: "/api/rooms/{id}/leave",
			// The room's creator owns it and must transfer ownership before leaving; an
			// admin leaves like any member.
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: denied, owner: conflict, admin: ok200},
			private: withAnswers(privateAnswers(ok200, conflict), map[actor]expect{admin: ok200}),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, owner: hidden}},
		{method: "GET", path: "/api/rooms/{id}/members",
			// A public room's member list is public (openapi: "DM and private room members
			// only to their members").
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: ok200, owner: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, owner: hidden}},
		// An admin adds someone (the peer) to a private room directly; other rooms take no
		// additions.
		{method: "POST", path: "/api/rooms/{id}/members", body: func(fx *authzFixture, _ actor) any {
			return map[string]string{"username": fx.accs[peer].Name}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: badReq, nonMember: badReq, owner: badReq},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, owner: hidden}},
		// Invitations: by a private room's admin (the peer is invited; someone who is
		// invited already, the invited actor, is a conflict: see TestPrivateRooms_invite_lifecycle).
		{method: "POST", path: "/api/rooms/{id}/invites", body: func(fx *authzFixture, _ actor) any {
			return map[string]string{"username": fx.accs[peer].Name}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: badReq, nonMember: badReq, owner: badReq},
			private: privateAnswers(denied, ok201),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, owner: hidden}},
		// Revoking the invited actor's invitation.
		{method: "DELETE", path: "/api/rooms/{id}/invites/{username}",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: badReq, nonMember: badReq, owner: badReq},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, owner: hidden}},
		// Everyone lists their own invitations; declining is idempotent and says nothing
		// about the room; accepting needs a usable invitation (a member's retry succeeds).
		{method: "GET", path: "/api/me/invites", public: everyone(ok200)},
		{method: "POST", path: "/api/me/invites/{id}/accept",
			public: map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: hidden, owner: ok200},
			private: map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, owner: ok200, invited: ok200,
				nonMember: hidden, exMember: hidden},
			dm: map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, owner: hidden}},
		{method: "POST", path: "/api/me/invites/{id}/decline",
			public: map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: ok200, owner: ok200},
			private: map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, owner: ok200, invited: ok200,
				nonMember: ok200, exMember: ok200},
			dm: map[actor]expect{member: ok200, peer: ok200, nonMember: ok200, owner: ok200}},
		// Moderation: a room's admins kick and ban (the member); a DM has no admins. Lifting
		// a ban (of the DM peer or the member, who is not banned) is the admins' too.
		{method: "POST", path: "/api/rooms/{id}/kick", body: func(fx *authzFixture, _ actor) any {
			return map[string]string{"username": fx.accs[member].Name}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, nonMember: denied, owner: ok200, peer: denied},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, owner: hidden}},
		{method: "POST", path: "/api/rooms/{id}/bans", body: func(fx *authzFixture, _ actor) any {
			return map[string]string{"username": fx.accs[member].Name}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, nonMember: denied, owner: ok200, peer: denied},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, owner: hidden}},
		{method: "DELETE", path: "/api/rooms/{id}/bans/{username}",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, nonMember: denied, owner: ok200},
			private: privateAnswers(denied, ok200),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, owner: hidden}},
		// Roles, muting and transfers (roles.go): the target is the room's member (the
		// member's target is the owner, whom nobody acts on); unmuting, the muted member.
		{method: "POST", path: "/api/rooms/{id}/members/{username}/role", body: func(fx *authzFixture, _ actor) any {
			return map[string]string{"role": "admin"}
		}, public: rolePub, private: rolePriv, dm: roleDM},
		{method: "POST", path: "/api/rooms/{id}/members/{username}/mute", public: mutePub, private: mutePriv, dm: muteDM},
		{method: "DELETE", path: "/api/rooms/{id}/members/{username}/mute", target: muted,
			public: unmutePub, private: unmutePriv, dm: unmuteDM},
		{method: "POST", path: "/api/rooms/{id}/transfer", body: func(fx *authzFixture, _ actor) any {
			return map[string]string{"username": fx.accs[member].Name}
		}, public: transferPub, private: transferPriv, dm: transferDM},
		{method: "GET", path: "/api/rooms/directory", public: everyone(ok200)},
		{method: "PATCH", path: "/api/rooms/{id}", body: func(*authzFixture, actor) any { return map[string]string{"topic": "t"} },
			public: settingsPub, private: settingsPriv, dm: settingsDM},
		// Reads: members only, muted or not; a kick or a ban ends them with the membership.
		{method: "GET", path: "/api/rooms/{id}/messages",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, muted: ok200, nonMember: denied, owner: ok200, kicked: denied, banned: denied},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, owner: hidden}},
		// Posting: members, except a muted one.
		{method: "POST", path: "/api/rooms/{id}/messages", body: msg,
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok202, muted: denied, nonMember: denied, owner: ok202},
			private: withAnswers(privateAnswers(ok202, ok202), map[actor]expect{muted: denied}),
			dm:      map[actor]expect{member: ok202, peer: ok202, nonMember: hidden, owner: hidden}},
		// A reply in the thread of entry 1: the rules of a message.
		{method: "POST", path: "/api/rooms/{id}/messages", label: "reply", body: func(fx *authzFixture, a actor) any {
			return map[string]any{"client_msg_id": fmt.Sprintf("authz-t-%s-%d", a, time.Now().UnixNano()), "text": "re", "thread_root": 1}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok202, muted: denied, nonMember: denied, owner: ok202},
			private: withAnswers(privateAnswers(ok202, ok202), map[actor]expect{muted: denied}),
			dm:      map[actor]expect{member: ok202, peer: ok202, nonMember: hidden, owner: hidden}},
		// The thread of entry 1 (entry 3 replies in it): read and marked read by members.
		{method: "GET", path: "/api/rooms/{id}/threads/{seq}",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, muted: ok200, nonMember: denied, owner: ok200, kicked: denied, banned: denied},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, owner: hidden}},
		{method: "POST", path: "/api/rooms/{id}/threads/{seq}/read", body: func(*authzFixture, actor) any { return map[string]int64{"seq": 3} },
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: denied, owner: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, owner: hidden}},
		// Edits and deletes of entry 1, written by the member: its author and the room's
		// owner and admins may; a DM has no admin. The muted member is not its author.
		{method: "PATCH", path: "/api/rooms/{id}/messages/{seq}", body: func(fx *authzFixture, a actor) any {
			return map[string]string{"text": "changed by " + string(a)}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok202, muted: denied, nonMember: denied, owner: ok202, peer: denied},
			private: withAnswers(privateAnswers(ok202, ok202), map[actor]expect{muted: denied}),
			dm:      map[actor]expect{member: ok202, peer: denied, nonMember: hidden, owner: hidden}},
		{method: "DELETE", path: "/api/rooms/{id}/messages/{seq}",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok202, muted: denied, nonMember: denied, owner: ok202, peer: denied},
			private: withAnswers(privateAnswers(ok202, ok202), map[actor]expect{muted: denied}),
			dm:      map[actor]expect{member: ok202, peer: denied, nonMember: hidden, owner: hidden}},
		// Entry 4, the muted member's own message: muted, they may no longer edit it, but
		// may still delete it (deleting removes content, never adds any).
		{method: "PATCH", path: "/api/rooms/{id}/messages/{seq}", label: "own, muted", seq: 4, body: func(fx *authzFixture, a actor) any {
			return map[string]string{"text": "changed by " + string(a)}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, muted: denied, nonMember: denied, owner: ok202},
			private: withAnswers(privateAnswers(denied, ok202), map[actor]expect{muted: denied})},
		{method: "DELETE", path: "/api/rooms/{id}/messages/{seq}", label: "own, muted", seq: 4,
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: denied, muted: ok202, nonMember: denied, owner: ok202},
			private: withAnswers(privateAnswers(denied, ok202), map[actor]expect{muted: ok202})},
		// Any member but a muted one may react to entry 1; outsiders as for posting.
		{method: "POST", path: "/api/rooms/{id}/messages/{seq}/reactions", body: func(_ *authzFixture, a actor) any {
			return map[string]any{"emoji": "👍", "on": true, "client_msg_id": fmt.Sprintf("authz-r-%s-%d", a, time.Now().UnixNano())}
		},
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok202, muted: denied, nonMember: denied, owner: ok202, peer: denied},
			private: withAnswers(privateAnswers(ok202, ok202), map[actor]expect{muted: denied}),
			dm:      map[actor]expect{member: ok202, peer: ok202, nonMember: hidden, owner: hidden}},
		// Uploads: outsiders are answered before the body is read; members get past the room
		// check to the body's (a JSON body is not multipart: 400). Downloads are per file:
		// the path's id here is no upload, so everyone gets the same 404; who may download
		// what is TestAttachments_download_authorization's matrix.
		{method: "POST", path: "/api/rooms/{id}/uploads", body: msg,
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: badReq, nonMember: denied, owner: badReq},
			private: privateAnswers(badReq, badReq),
			dm:      map[actor]expect{member: badReq, peer: badReq, nonMember: hidden, owner: hidden}},
		{method: "GET", path: "/api/attachments/{attachment_id}", public: everyone(hidden)},
		{method: "GET", path: "/api/attachments/{attachment_id}/thumbnail", public: everyone(hidden)},
		{method: "POST", path: "/api/rooms/{id}/read", body: func(*authzFixture, actor) any { return map[string]int64{"seq": 1} },
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: denied, owner: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, owner: hidden}},
		// Notifications are per user: every caller sees and marks only their own (see
		// TestAuthz_notifications_are_private).
		{method: "GET", path: "/api/notifications", public: everyone(ok200)},
		{method: "GET", path: "/api/notifications/unread", public: everyone(ok200)},
		{method: "POST", path: "/api/notifications/read", body: func(*authzFixture, actor) any { return map[string]bool{"all": true} },
			public: everyone(ok200)},
		// A room's details, public like its member list.
		{method: "GET", path: "/api/rooms/{id}",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: ok200, owner: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, owner: hidden}},
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
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: denied, owner: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, owner: hidden}},
		{method: "DELETE", path: "/api/rooms/{id}/notification-preferences",
			public:  map[actor]expect{anon: noAuth, wrongKind: badToken, member: ok200, nonMember: denied, owner: ok200},
			private: privateAnswers(ok200, ok200),
			dm:      map[actor]expect{member: ok200, peer: ok200, nonMember: hidden, owner: hidden}},
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
	t.Parallel()
	fx := newAuthzFixture(t)
	sum := newMatrixSummary(t, "REST authorization matrix")
	for _, rc := range restCases() {
		for _, col := range []struct {
			name string
			want map[actor]expect
		}{{"room", completeAnswers("room", rc.public)}, {"private", completeAnswers("private", rc.private)}, {"dm", completeAnswers("dm", rc.dm)}} {
			if col.want == nil {
				continue
			}
			op := rc.method + " " + strings.TrimPrefix(rc.path, "/api")
			if rc.label != "" {
				op += " (" + rc.label + ")"
			}
			row := op + " [" + col.name + "]"
			sum.row(row)
			for _, a := range sortedActors(col.want) {
				want := col.want[a]
				t.Run(fmt.Sprintf("%s/%s/%s", op, col.name, a), func(t *testing.T) {
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
						target := cmp.Or(rc.target, member)
						if a == member {
							target = owner
						}
						path = strings.Replace(path, "{username}", fx.accs[target].Name, 1)
					}
					path = strings.Replace(path, "{username}", fx.other(a).Name, 1)
					path = strings.Replace(path, "{seq}", strconv.FormatInt(cmp.Or(rc.seq, 1), 10), 1)
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
					sum.record(row, a, strconv.Itoa(st))
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

// sortedActors are m's actors in the matrices' column order.
func sortedActors[E any](m map[actor]E) []actor {
	var out []actor
	for _, a := range actorOrder {
		if _, ok := m[a]; ok {
			out = append(out, a)
		}
	}
	if len(out) != len(m) {
		panic(fmt.Sprintf("an actor of %v is missing from actorOrder", m))
	}
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
		if want := a == member || a == owner || a == admin || a == muted; privateVisible != want {
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
	label               string // tells two rows of one frame type apart in the summary
	frame               func(fx *authzFixture, room string, a actor) map[string]any
	public, private, dm map[actor]wsExpect
}

// wsPrivate: the answers on a private room, members' as given, everyone else's as for a
// room that does not exist.
func wsPrivate(memberGets, ownerGets wsExpect) map[actor]wsExpect {
	return map[actor]wsExpect{anon: wsNoAuth, member: memberGets, owner: ownerGets, invited: wsHidden, nonMember: wsHidden,
		exMember: wsHidden, kicked: wsHidden, banned: wsHidden}
}

// wsModerated: moderated's answers over the WebSocket, granted with the reply frame.
func wsModerated(ownerGets, adminGets wsExpect) (pub, priv, dm map[actor]wsExpect) {
	return moderated(ownerGets, adminGets, wsNoAuth, wsDenied, wsHidden, wsBadReq)
}

// target is the user a role or mute frame of a names: the member, or, for the member
// itself, the owner (whom nobody acts on).
func (fx *authzFixture) target(a, usual actor) string {
	if a == member {
		return fx.accs[owner].Name
	}
	return fx.accs[usual].Name
}

// wsEveryone: the same answer for every authenticated actor, unauthorized before auth.
func wsEveryone(reply string) map[actor]wsExpect {
	e := wsExpect{reply, ""}
	return map[actor]wsExpect{anon: wsNoAuth, member: e, nonMember: e, owner: e, peer: e}
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
		return map[actor]wsExpect{anon: wsNoAuth, member: g, owner: g, nonMember: wsDenied},
			wsPrivate(g, g),
			map[actor]wsExpect{member: g, peer: g, nonMember: wsHidden, owner: wsHidden}
	}
	// Posting: members, except a muted one.
	grantPosters := func() (map[actor]wsExpect, map[actor]wsExpect, map[actor]wsExpect) {
		pub, priv, dm := grantMembers("ack")
		pub[muted], priv[muted] = wsDenied, wsDenied
		return pub, priv, dm
	}
	// Reads: members, muted or not; a kick or a ban ends them with the membership.
	grantReaders := func(reply string) (map[actor]wsExpect, map[actor]wsExpect, map[actor]wsExpect) {
		pub, priv, dm := grantMembers(reply)
		pub[muted], priv[muted] = wsExpect{reply, ""}, wsExpect{reply, ""}
		pub[kicked], pub[banned] = wsDenied, wsDenied
		return pub, priv, dm
	}
	sendPub, sendPriv, sendDM := grantPosters()
	reactPub, reactPriv, reactDM := grantPosters()
	replyPub, replyPriv, replyDM := grantPosters()
	threadPub, threadPriv, threadDM := grantReaders("thread")
	threadReadPub, threadReadPriv, threadReadDM := grantMembers("thread_read")
	subPub, subPriv, subDM := grantReaders("subscribed")
	histPub, histPriv, histDM := grantReaders("history")
	roomPrefsPub, roomPrefsPriv, roomPrefsDM := grantMembers("room_notification_prefs")
	typPub, typPriv, typDM := grantMembers("")
	// Edits and deletes of entry 1 (the member's): its author and the room's owner and
	// admins may; other members (the muted one too) and non-members may not. A DM has no
	// admin: only the author.
	authorOrAdmin := func() (map[actor]wsExpect, map[actor]wsExpect, map[actor]wsExpect) {
		return map[actor]wsExpect{anon: wsNoAuth, member: {"ack", ""}, owner: {"ack", ""}, muted: wsDenied, nonMember: wsDenied, peer: wsDenied},
			withAnswers(wsPrivate(wsExpect{"ack", ""}, wsExpect{"ack", ""}), map[actor]wsExpect{muted: wsDenied}),
			map[actor]wsExpect{member: {"ack", ""}, peer: wsDenied, nonMember: wsHidden, owner: wsHidden}
	}
	editPub, editPriv, editDM := authorOrAdmin()
	delPub, delPriv, delDM := authorOrAdmin()
	// Entry 4, the muted member's own: muted, they may delete it but not edit it.
	ownMuted := func(mutedGets wsExpect) (map[actor]wsExpect, map[actor]wsExpect) {
		return map[actor]wsExpect{anon: wsNoAuth, member: wsDenied, muted: mutedGets, owner: {"ack", ""}, nonMember: wsDenied},
			withAnswers(wsPrivate(wsDenied, wsExpect{"ack", ""}), map[actor]wsExpect{muted: mutedGets})
	}
	editOwnPub, editOwnPriv := ownMuted(wsDenied)
	delOwnPub, delOwnPriv := ownMuted(wsExpect{"ack", ""})
	// Roles (roles.go), as over REST.
	rolePub, rolePriv, roleDM := wsModerated(wsExpect{"role_set", ""}, wsDenied)
	mutePub, mutePriv, muteDM := wsModerated(wsExpect{"muted", ""}, wsExpect{"muted", ""})
	unmutePub, unmutePriv, unmuteDM := wsModerated(wsExpect{"unmuted", ""}, wsExpect{"unmuted", ""})
	transferPub, transferPriv, transferDM := wsModerated(wsExpect{"transferred", ""}, wsDenied)
	settingsPub, settingsPriv, settingsDM := wsModerated(wsExpect{"room_updated", ""}, wsExpect{"room_updated", ""})
	return []wsCase{
		{typ: "hello", frame: func(fx *authzFixture, room string, a actor) map[string]any {
			f := map[string]any{"type": "hello", "rooms": map[string]int64{room: 0}}
			if a == anon {
				f["token"] = fx.accs[member].Token // authenticates as the member
			}
			return f
		}, public: map[actor]wsExpect{anon: {"subscribed", ""}, member: {"subscribed", ""}, owner: {"subscribed", ""}, nonMember: wsDenied},
			private: map[actor]wsExpect{anon: {"subscribed", ""}, member: {"subscribed", ""}, owner: {"subscribed", ""},
				invited: wsHidden, nonMember: wsHidden, exMember: wsHidden},
			dm: map[actor]wsExpect{member: {"subscribed", ""}, peer: {"subscribed", ""}, nonMember: wsHidden, owner: wsHidden}},
		// A connection cannot change whose it is: auth with someone else's token fails.
		{typ: "auth", frame: func(fx *authzFixture, _ string, _ actor) map[string]any {
			return map[string]any{"type": "auth", "token": fx.accs[member].Token}
		}, public: map[actor]wsExpect{anon: {"welcome", ""}, member: {"welcome", ""}, muted: wsBadReq, nonMember: wsBadReq, owner: wsBadReq, peer: wsBadReq}},
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
		{typ: "edit", label: "own, muted", frame: func(_ *authzFixture, room string, a actor) map[string]any {
			return map[string]any{"type": "edit", "room": room, "client_msg_id": id(a), "target_seq": 4, "text": "changed"}
		}, public: editOwnPub, private: editOwnPriv},
		{typ: "delete", label: "own, muted", frame: func(_ *authzFixture, room string, a actor) map[string]any {
			return map[string]any{"type": "delete", "room": room, "client_msg_id": id(a), "target_seq": 4}
		}, public: delOwnPub, private: delOwnPriv},
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
			public:  map[actor]wsExpect{anon: wsNoAuth, owner: wsHidden, member: wsHidden, nonMember: wsHidden},
			private: map[actor]wsExpect{anon: wsNoAuth, owner: wsHidden, member: wsHidden, invited: wsHidden, nonMember: wsHidden},
			dm:      map[actor]wsExpect{member: wsHidden, peer: wsHidden, nonMember: wsHidden}},
		{typ: "history", frame: roomFrame("history"), public: histPub, private: histPriv, dm: histDM},
		{typ: "typing", frame: roomFrame("typing"), public: typPub, private: typPriv, dm: typDM},
		// A join of a private room accepts the joiner's invitation; without one, the room
		// does not exist.
		{typ: "join", frame: roomFrame("join"),
			public: map[actor]wsExpect{anon: wsNoAuth, member: {"joined", ""}, nonMember: {"joined", ""}, owner: {"joined", ""}, banned: wsDenied},
			private: map[actor]wsExpect{anon: wsNoAuth, member: {"joined", ""}, owner: {"joined", ""}, invited: {"joined", ""},
				nonMember: wsHidden, exMember: wsHidden},
			dm: map[actor]wsExpect{member: {"joined", ""}, peer: {"joined", ""}, nonMember: wsHidden, owner: wsHidden}},
		{typ: "leave", frame: roomFrame("leave"),
			public:  map[actor]wsExpect{anon: wsNoAuth, member: {"left", ""}, nonMember: wsDenied, owner: {"error", "conflict"}, admin: {"left", ""}},
			private: withAnswers(wsPrivate(wsExpect{"left", ""}, wsExpect{"error", "conflict"}), map[actor]wsExpect{admin: {"left", ""}}),
			dm:      map[actor]wsExpect{member: wsBadReq, peer: wsBadReq, nonMember: wsHidden, owner: wsHidden}},
		{typ: "read", frame: func(_ *authzFixture, room string, _ actor) map[string]any {
			return map[string]any{"type": "read", "room": room, "seq": 1}
		}, public: map[actor]wsExpect{anon: wsNoAuth, member: {"read", ""}, owner: {"read", ""}, nonMember: wsDenied},
			private: wsPrivate(wsExpect{"read", ""}, wsExpect{"read", ""}),
			dm:      map[actor]wsExpect{member: {"read", ""}, peer: {"read", ""}, nonMember: wsHidden, owner: wsHidden}},
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
		// Roles, muting, transfers and settings: the target is the room's member (the
		// member's, the owner); unmuting, the muted member.
		{typ: "set_role", frame: func(fx *authzFixture, room string, a actor) map[string]any {
			return map[string]any{"type": "set_role", "room": room, "user": fx.target(a, member), "role": "admin"}
		}, public: rolePub, private: rolePriv, dm: roleDM},
		{typ: "mute", frame: func(fx *authzFixture, room string, a actor) map[string]any {
			return map[string]any{"type": "mute", "room": room, "user": fx.target(a, member)}
		}, public: mutePub, private: mutePriv, dm: muteDM},
		{typ: "unmute", frame: func(fx *authzFixture, room string, a actor) map[string]any {
			return map[string]any{"type": "unmute", "room": room, "user": fx.target(a, muted)}
		}, public: unmutePub, private: unmutePriv, dm: unmuteDM},
		{typ: "transfer", frame: func(fx *authzFixture, room string, _ actor) map[string]any {
			return map[string]any{"type": "transfer", "room": room, "user": fx.accs[member].Name}
		}, public: transferPub, private: transferPriv, dm: transferDM},
		{typ: "update_room", frame: func(_ *authzFixture, room string, _ actor) map[string]any {
			return map[string]any{"type": "update_room", "room": room, "topic": "t"}
		}, public: settingsPub, private: settingsPriv, dm: settingsDM},
		{typ: "directory", frame: func(*authzFixture, string, actor) map[string]any {
			return map[string]any{"type": "directory", "q": "authz"}
		}, public: wsEveryone("directory")},
		{typ: "rooms", frame: roomFrame("rooms"), public: wsEveryone("rooms")},
		{typ: "users", frame: roomFrame("users"), public: wsEveryone("users")},
		{typ: "stats", frame: roomFrame("stats"), public: wsEveryone("stats")},
		{typ: "token", frame: roomFrame("token"), public: wsEveryone("token")},
		{typ: "quit", frame: roomFrame("quit"), public: map[actor]wsExpect{anon: {"close:1000", ""}, member: {"close:1000", ""}}},
	}
}

func TestAuthz_WebSocket_matrix(t *testing.T) {
	t.Parallel()
	fx := newAuthzFixture(t)
	sum := newMatrixSummary(t, "WebSocket authorization matrix")
	for _, wc := range wsCases() {
		for _, col := range []struct {
			name string
			want map[actor]wsExpect
		}{{"room", completeAnswers("room", wc.public)}, {"private", completeAnswers("private", wc.private)}, {"dm", completeAnswers("dm", wc.dm)}} {
			if col.want == nil {
				continue
			}
			op := wc.typ
			if wc.label != "" {
				op += " (" + wc.label + ")"
			}
			row := op + " [" + col.name + "]"
			sum.row(row)
			for _, a := range sortedActors(col.want) {
				want := col.want[a]
				t.Run(fmt.Sprintf("%s/%s/%s", op, col.name, a), func(t *testing.T) {
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
					got := checkWS(t, c, wc.typ, a, want)
					sum.record(row, a, wsCell(got.reply, got.code))
					if got != want {
						t.Fatalf("%s as %s: got %s %s, want %s %s", wc.typ, a, got.reply, got.code, want.reply, want.code)
					}
				})
			}
		}
	}
}

// checkWS returns what the frame just sent on c got: its reply type (with the code of an
// error), "close:N", or no reply at all when want expects none and none came.
func checkWS(t *testing.T, c *gwtest.Client, typ string, a actor, want wsExpect) wsExpect {
	t.Helper()
	switch {
	case strings.HasPrefix(want.reply, "close:"):
		return wsExpect{fmt.Sprintf("close:%d", c.WaitClosed(10*time.Second)), ""}
	case want.reply == "":
		// No answer: a ping sent after it is answered first, with no error in between
		// (frames of a connection are handled in order).
		c.Send(map[string]any{"type": "ping", "ref": "after"})
		c.Expect("pong", "after")
		for _, f := range c.Buffered() {
			if f.Type() == "error" {
				return wsExpect{"error", f.Str("code")}
			}
		}
		return wsExpect{}
	default:
		got, found := c.Next(func(f gwtest.Frame) bool {
			return f.Str("ref") == "x" && (f.Type() == want.reply || f.Type() == "error")
		}, 15*time.Second)
		if !found {
			t.Fatalf("%s as %s: no %s or error (buffered %v, err %v)", typ, a, want.reply, c.Buffered(), c.Err())
		}
		if got.Type() == "error" {
			return wsExpect{"error", got.Str("code")}
		}
		return wsExpect{got.Type(), ""}
	}
}

// TestAuthz_covers_every_route_and_frame fails when the API or the protocol grows an
// operation or frame type that has no row in the matrices above.
func TestAuthz_covers_every_route_and_frame(t *testing.T) {
	t.Parallel()
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

	// Every operation on a room is answered, in some row of its own, on all three room
	// types by every actor of each: a new row with a column or an actor missing fails.
	// Frames on a room are those the protocol refuses without one.
	missing := map[string][]string{} // operation -> what its most complete row lacks
	full := map[string]bool{}
	note := func(key string, lacks []string) {
		if full[key] = full[key] || len(lacks) == 0; !full[key] && (missing[key] == nil || len(lacks) < len(missing[key])) {
			missing[key] = lacks
		}
	}
	for _, rc := range restCases() {
		if strings.Contains(rc.path, "{id}") {
			note(rc.method+" "+rc.path, lacking(rc.public, rc.private, rc.dm))
		}
	}
	for _, wc := range wsCases() {
		if _, e := protocol.Decode([]byte(`{"type":"`+wc.typ+`"}`), protocol.Limits{}); e != nil && e.Message == "room is required" {
			note(wc.typ, lacking(wc.public, wc.private, wc.dm))
		}
	}
	for key, lacks := range missing {
		if !full[key] {
			t.Errorf("%s: no row answers for every actor on a public room, a private room and the DM: %s", key, strings.Join(lacks, ", "))
		}
	}
}

// lacking lists the actors a row's columns, completed, leave without an answer.
func lacking[E any](public, private, dm map[actor]E) []string {
	var out []string
	for _, col := range []struct {
		name string
		want map[actor]E
		need []actor
	}{
		{"room", public, append([]actor{anon}, roomActors...)},
		{"private", private, append([]actor{anon, invited}, roomActors...)},
		{"dm", dm, append([]actor{member, peer}, dmOutsiders...)},
	} {
		got := completeAnswers(col.name, col.want)
		for _, a := range col.need {
			if _, has := got[a]; !has {
				out = append(out, fmt.Sprintf("%s [%s]", a, col.name))
			}
		}
	}
	return out
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
	t.Parallel()
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
	for _, a := range []actor{peer, nonMember, owner} {
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
