package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"

	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/notifications"
	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/api"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/store"
)

// FuzzREST drives the real Echo handlers and the real chat logic with arbitrary paths,
// queries, bodies and credentials. Only PostgreSQL and Kafka are replaced, by an
// in-memory store and publisher that also check what reaches them. Properties:
//   - no panic, and every answer is JSON with a status that api/openapi.yaml documents
//     for the route (a 500 is never documented, so any bug shows up);
//   - error bodies carry a documented code whose status is api.Status(code);
//   - nothing unvalidated reaches the store or Kafka: usernames, passwords, room ids,
//     texts and client_msg_ids are within the protocol's limits when they get there;
//   - only members publish to a room, and only with a session token.
func FuzzREST(f *testing.F) {
	docs := openapiStatuses(f)
	seeds := []struct {
		route     uint8
		id, query string
		body      string
		auth      uint8
	}{
		{0, "", "", `{"username":"carol","password":"long enough"}`, 0},
		{1, "", "", `{"username":"alice","password":"password-alice"}`, 0},
		{1, "", "", `{"username":"alice","password":5}`, 0},
		{2, "", "", `{"reconnect_token":"` + strings.Repeat("A", 43) + `"}`, 0},
		{3, "", "", ``, 1},
		{4, "", "", ``, 1},
		{5, "", "", `{"id":"new-room","name":" New "}`, 1},
		{6, "general", "", ``, 2},
		{7, "general", "", ``, 1},
		{8, "general", "", ``, 1},
		{9, "general", "before=10&limit=5", ``, 1},
		{9, "general", "after=-1", ``, 1},
		{10, "general", "", `{"client_msg_id":"c-1","text":"<script>alert(1)</script>"}`, 1},
		{10, "dm:u-alice:u-bob", "", `{"client_msg_id":"c-2","text":"hi"}`, 2},
		{10, "general", "", `{"client_msg_id":"c-3","text":"x"}`, 2},
		{10, "general", "", `{"client_msg_id":"c-4","text":"x"}`, 3},
		{11, "bob", "", ``, 1},
		{11, "alice", "", ``, 1},
		{12, "", "", ``, 1},
		{13, "", "", ``, 4},
		{10, "general", "", `{"client_msg_id":"` + strings.Repeat("x", 65) + `","text":"x"}`, 1},
		{10, "general", "", `{"client_msg_id":"c","text":"` + strings.Repeat("y", 5000) + `"}`, 1},
		{10, "general", "", "{\"client_msg_id\":\"c\",\"text\":\"\xff\"}", 1},
		{5, "", "", `{"id":"Bad Id"}`, 1},
		{5, "", "", `[]`, 1},
		{0, "", "", `{"username":"a b","password":"x"}`, 0},
		{14, "general", "1", `{"text":"edited <b>"}`, 1},
		{14, "general", "1", `{"text":"edited"}`, 2},
		{15, "dm:u-alice:u-bob", "2", ``, 2},
		{15, "general", "x", ``, 1},
		{16, "general", "", `{"seq":2}`, 1},
		{16, "general", "", `{"seq":99}`, 1},
		{17, "", "limit=5&before=0190a000-0000-7000-8000-000000000000", ``, 1},
		{18, "", "", ``, 2},
		{19, "", "", `{"ids":["0190a000-0000-7000-8000-000000000000"]}`, 1},
		{19, "", "", `{"all":true,"ids":[]}`, 2},
	}
	for _, s := range seeds {
		f.Add(s.route, s.id, s.query, []byte(s.body), s.auth)
	}
	f.Fuzz(func(t *testing.T, routeNo uint8, id, query string, body []byte, authNo uint8) {
		env := newFuzzEnv(t)
		r := routes[int(routeNo)%len(routes)]
		path := strings.Replace(r.path, "{id}", url.PathEscape(id), 1)
		path = strings.Replace(path, "{username}", url.PathEscape(id), 1)
		if strings.Contains(path, "{seq}") {
			// The query string doubles as the seq: the corpus format (the fuzz
			// arguments) stays the same as routes are added.
			path, query = strings.Replace(path, "{seq}", url.PathEscape(query), 1), ""
		}
		target := path
		if query != "" {
			target += "?" + query
		}
		req, err := http.NewRequest(r.method, "http://gw.test"+target, bytes.NewReader(body))
		if err != nil {
			return // not a request a client could send
		}
		req.Header.Set("Content-Type", "application/json")
		switch authNo % 5 {
		case 1:
			req.Header.Set("Authorization", "Bearer "+env.aliceSession)
		case 2:
			req.Header.Set("Authorization", "Bearer "+env.bobSession)
		case 3:
			req.Header.Set("Authorization", "Bearer "+env.aliceReconnect) // wrong kind for REST
		case 4:
			req.Header.Set("Authorization", "Bearer "+id)
		}
		rec := httptest.NewRecorder()
		env.e.ServeHTTP(rec, req)

		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s: answer is not a JSON object: %d %q", r.method, target, rec.Code, rec.Body.String())
		}
		// An id that Echo splits differently (an empty segment, say) may land on no route:
		// then only Echo's own 404/405 are expected.
		allowed := docs[r.method+" "+r.path]
		intact := req.URL.EscapedPath() == path && id != ""
		if !allowed[rec.Code] && (intact || rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed) {
			t.Fatalf("%s %s -> %d %v: status not documented for %s %s", r.method, target, rec.Code, out, r.method, r.path)
		}
		if rec.Code >= 500 {
			t.Fatalf("%s %s -> %d %v (the fakes never fail)", r.method, target, rec.Code, out)
		}
		if rec.Code >= 400 {
			code, _ := out["code"].(string)
			msg, _ := out["message"].(string)
			if !documentedCodes[code] || msg == "" {
				t.Fatalf("%s %s -> %d: error body %v", r.method, target, rec.Code, out)
			}
			if api.Status(code) != rec.Code {
				t.Fatalf("%s %s -> %d with code %s (Status says %d)", r.method, target, rec.Code, code, api.Status(code))
			}
		}
		session := authNo%5 == 1 || authNo%5 == 2
		if r.authed && !session && intact && rec.Code != http.StatusUnauthorized {
			t.Fatalf("%s %s without a session token got %d %v, want 401", r.method, target, rec.Code, out)
		}
		env.mu.Lock()
		defer env.mu.Unlock()
		for _, p := range env.published {
			if p.topic != "chat.submitted" {
				t.Fatalf("published to %s", p.topic)
			}
			switch pl := p.payload.(type) {
			case event.MessageSubmitted:
				if !env.isMember(pl.RoomID, pl.Sender) || p.key != pl.RoomID {
					t.Fatalf("published a message by %s to %s (key %s) who is not a member", pl.Sender, pl.RoomID, p.key)
				}
				if pl.Kind == event.KindDelete {
					// A delete carries no text; the event's own Validate says so.
					if err := pl.Validate(); err != nil {
						t.Fatalf("published an invalid delete: %v", err)
					}
				} else if e := protocol.ValidateText(pl.ClientMsgID, pl.Text, protocol.Limits{}); e != nil {
					t.Fatalf("published an invalid message: %v", e)
				}
				if pgText(pl.Text, pl.ClientMsgID, pl.SenderName) != nil {
					t.Fatalf("published a message persistence cannot store (NUL): %q", pl.Text)
				}
			case event.MembershipChanged:
				// Published only after it was committed with its membership.
				if !env.inOutbox(p.id) {
					t.Fatalf("membership event for %s published, not written to the outbox with the membership first", pl.RoomID)
				}
			default:
				t.Fatalf("published %T", pl)
			}
		}
		for _, row := range env.outbox {
			e, err := event.Decode(row.Payload)
			if err != nil {
				t.Fatalf("outbox row that does not decode: %v", err)
			}
			pl, err := event.As[event.MembershipChanged](e)
			if err != nil {
				t.Fatalf("outbox row of type %s: %v", e.Type, err)
			}
			if row.Topic != "chat.submitted" || row.Key != pl.RoomID || !protocol.ValidSlug(pl.RoomID) {
				t.Fatalf("membership event for room %q on %s key %q", pl.RoomID, row.Topic, row.Key)
			}
			if member := env.isMember(pl.RoomID, pl.User); member != (pl.Change == event.ChangeJoined) {
				t.Fatalf("outbox holds %s %s of %s, but membership is %v", pl.User, pl.Change, pl.RoomID, member)
			}
		}
	})
}

// route is one REST operation of api/openapi.yaml; authed ones need a session token.
type route struct {
	method, path string
	authed       bool
}

var routes = []route{
	{"POST", "/api/register", false},
	{"POST", "/api/login", false},
	{"POST", "/api/resume", false},
	{"GET", "/api/me", true},
	{"GET", "/api/rooms", true},
	{"POST", "/api/rooms", true},
	{"POST", "/api/rooms/{id}/join", true},
	{"POST", "/api/rooms/{id}/leave", true},
	{"GET", "/api/rooms/{id}/members", true},
	{"GET", "/api/rooms/{id}/messages", true},
	{"POST", "/api/rooms/{id}/messages", true},
	{"POST", "/api/dms/{username}", true},
	{"GET", "/api/users", true},
	{"GET", "/api/stats", true},
	{"PATCH", "/api/rooms/{id}/messages/{seq}", true},
	{"DELETE", "/api/rooms/{id}/messages/{seq}", true},
	{"POST", "/api/rooms/{id}/messages/{seq}/reactions", true},
	{"POST", "/api/rooms/{id}/read", true},
	{"GET", "/api/rooms/{id}/threads/{seq}", true},
	{"POST", "/api/rooms/{id}/threads/{seq}/read", true},
	{"GET", "/api/notifications", true},
	{"GET", "/api/notifications/unread", true},
	{"POST", "/api/notifications/read", true},
}

var documentedCodes = map[string]bool{}

func init() {
	for _, c := range []string{protocol.CodeBadJSON, protocol.CodeBadRequest, protocol.CodeTooLarge, protocol.CodeUnauthorized,
		protocol.CodeInvalidToken, protocol.CodeInvalidCredentials, protocol.CodeForbidden, protocol.CodeNotFound,
		protocol.CodeUsernameTaken, protocol.CodeConflict, protocol.CodeRateLimited, protocol.CodeUnavailable, protocol.CodeInternal} {
		documentedCodes[c] = true
	}
}

// openapiStatuses reads, per "METHOD /path", the response statuses api/openapi.yaml
// documents; "*" is their union. A line scanner is enough for the file's fixed layout
// and keeps a YAML library out of the gateway's dependencies.
func openapiStatuses(t testing.TB) map[string]map[int]bool {
	t.Helper()
	fh, err := os.Open("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	pathRe := regexp.MustCompile(`^  (/\S*):\s*$`)
	methodRe := regexp.MustCompile(`^    (get|post|put|patch|delete):`)
	statusRe := regexp.MustCompile(`^\s+"(\d{3})":`)
	out := map[string]map[int]bool{"*": {}}
	var path, key string
	inPaths := false
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		if line == "paths:" {
			inPaths = true
			continue
		}
		if !inPaths {
			continue
		}
		if m := pathRe.FindStringSubmatch(line); m != nil {
			path = m[1]
			continue
		}
		if m := methodRe.FindStringSubmatch(line); m != nil {
			key = strings.ToUpper(m[1]) + " " + path
			out[key] = map[int]bool{}
			continue
		}
		if m := statusRe.FindStringSubmatch(line); m != nil && key != "" {
			n, _ := strconv.Atoi(m[1])
			out[key][n] = true
			out["*"][n] = true
		}
	}
	for _, r := range routes {
		if out[r.method+" "+r.path] == nil {
			t.Fatalf("openapi.yaml does not document %s %s", r.method, r.path)
		}
	}
	return out
}

// fuzzEnv is one gateway API over in-memory fakes; a fresh one per input keeps inputs
// independent (the fuzzer's minimiser needs that).
type fuzzEnv struct {
	e                                        *echo.Echo
	aliceSession, bobSession, aliceReconnect string

	// chat.Store is embedded (nil) so that this file keeps compiling when the store
	// grows; a call to a method not implemented below panics, and the fuzzer reports it.
	chat.Store

	mu        sync.Mutex
	t         *testing.T
	users     map[string]store.User // by name
	sessions  map[string]fakeSession
	rooms     map[string]*fakeRoom
	published []published  // through the publisher
	outbox    []outbox.Row // committed with a membership change
}

type fakeSession struct {
	user store.User
	kind string
	exp  time.Time
}

type fakeRoom struct {
	id, name, kind string
	lastSeq        int64
	members        map[string]string // user id -> role
	messages       []store.Message
}

type published struct {
	topic, key, id string
	payload        event.Payload
}

var cheap = auth.Params{Memory: 8, Time: 1, Threads: 1}

var hashes = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"alice", "bob"} {
		h, err := auth.HashPassword("password-"+n, cheap)
		if err != nil {
			panic(err)
		}
		m[n] = h
	}
	return m
})

func newFuzzEnv(t *testing.T) *fuzzEnv {
	env := &fuzzEnv{t: t, users: map[string]store.User{}, sessions: map[string]fakeSession{}, rooms: map[string]*fakeRoom{}}
	for _, n := range []string{"alice", "bob"} {
		env.users[n] = store.User{ID: "u-" + n, Username: n, PasswordHash: hashes()[n]}
	}
	env.rooms["general"] = &fakeRoom{id: "general", name: "General", kind: "room", members: map[string]string{"u-alice": "admin"}}
	dm := &fakeRoom{id: "dm:u-alice:u-bob", name: "alice & bob", kind: "dm", members: map[string]string{"u-alice": "member", "u-bob": "member"}}
	env.rooms[dm.id] = dm
	for i := int64(1); i <= 3; i++ {
		for _, r := range []*fakeRoom{env.rooms["general"], dm} {
			r.lastSeq = i
			r.messages = append(r.messages, store.Message{RoomID: r.id, Seq: i, EventID: "e", Kind: "message", Sender: "u-alice", SenderName: "alice", Text: "t"})
		}
	}
	mint := func(user, kind string) string {
		tok, err := auth.NewToken(kind, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		env.sessions[string(tok.Hash)] = fakeSession{user: env.users[user], kind: kind, exp: tok.ExpiresAt}
		return tok.Value
	}
	env.aliceSession, env.bobSession, env.aliceReconnect = mint("alice", auth.KindSession), mint("bob", auth.KindSession), mint("alice", auth.KindReconnect)

	svc, err := chat.New(chat.Config{GatewayID: "gw-fuzz", Password: cheap, Notifications: (*fakeNotes)(env)},
		(*fakeStore)(env), (*fakePub)(env), nil)
	if err != nil {
		t.Fatal(err)
	}
	env.e = echo.New()
	env.e.HTTPErrorHandler = api.ErrorHandler
	api.New(svc, fakeHub{}).Register(env.e)
	return env
}

// inOutbox reports whether the event with id was committed to the outbox.
func (env *fuzzEnv) inOutbox(id string) bool {
	for _, row := range env.outbox {
		if e, err := event.Decode(row.Payload); err == nil && e.ID == id {
			return true
		}
	}
	return false
}

func (env *fuzzEnv) isMember(room, user string) bool {
	r := env.rooms[room]
	return r != nil && r.members[user] != ""
}

// userByIDLocked is userByID for callers that do not hold env.mu.
func (env *fuzzEnv) userByIDLocked(id string) store.User {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.userByID(id)
}

func (env *fuzzEnv) userByID(id string) store.User {
	for _, u := range env.users {
		if u.ID == id {
			return u
		}
	}
	return store.User{}
}

// fakeStore is the in-memory chat.Store.
type fakeStore fuzzEnv

var _ chat.Store = (*fakeStore)(nil)

func (s *fakeStore) env() *fuzzEnv { return (*fuzzEnv)(s) }

func (s *fakeStore) CreateUser(_ context.Context, u store.User) error {
	if err := pgText(u.Username, u.PasswordHash); err != nil {
		return err
	}
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	if !protocol.ValidUsername(u.Username) || !strings.HasPrefix(u.PasswordHash, "$argon2id$") || u.ID == "" {
		env.t.Fatalf("CreateUser reached with %+v", u)
	}
	if _, ok := env.users[u.Username]; ok {
		return store.ErrUsernameTaken
	}
	env.users[u.Username] = u
	return nil
}

func (s *fakeStore) UserByName(_ context.Context, name string) (store.User, error) {
	if err := pgText(name); err != nil {
		return store.User{}, err
	}
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	u, ok := env.users[name]
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	return u, nil
}

func (s *fakeStore) CreateSession(_ context.Context, userID string, hash []byte, kind string, exp time.Time) error {
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	if len(hash) != 32 {
		env.t.Fatalf("CreateSession with a %d-byte hash: tokens must be stored hashed", len(hash))
	}
	env.sessions[string(hash)] = fakeSession{user: env.userByID(userID), kind: kind, exp: exp}
	return nil
}

func (s *fakeStore) SessionUser(_ context.Context, hash []byte) (store.User, string, time.Time, error) {
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	ss, ok := env.sessions[string(hash)]
	if !ok {
		return store.User{}, "", time.Time{}, store.ErrNotFound
	}
	return ss.user, ss.kind, ss.exp, nil
}

// CreateRoomAnnounced creates the room and records announce in the outbox, both or
// neither, like the store's transaction.
func (s *fakeStore) CreateRoomAnnounced(_ context.Context, id, name, kind, creator string, announce ...outbox.Row) error {
	if err := pgText(id, name); err != nil {
		return err
	}
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	if !protocol.ValidSlug(id) || name == "" || len(name) > 100 || kind != "room" {
		env.t.Fatalf("CreateRoomAnnounced reached with id %q name %q kind %q", id, name, kind)
	}
	if env.rooms[id] != nil {
		return store.ErrRoomExists
	}
	if err := checkRows(announce); err != nil {
		return err
	}
	env.rooms[id] = &fakeRoom{id: id, name: name, kind: kind, members: map[string]string{creator: "admin"}}
	env.outbox = append(env.outbox, announce...)
	return nil
}

// SettleOutbox accepts the outcome of a publish of committed rows.
func (s *fakeStore) SettleOutbox(context.Context, bool, ...string) error { return nil }

// checkRows fails like outbox.Insert for a row the relay could not route; the store's
// transaction then rolls back, so the caller changes nothing.
func checkRows(rows []outbox.Row) error {
	for _, r := range rows {
		if r.Topic == "" || r.Key == "" {
			return outbox.ErrEmpty
		}
	}
	return nil
}

func (s *fakeStore) EnsureDM(_ context.Context, id, name, a, b string) (bool, error) {
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	if a == b || !strings.HasPrefix(id, "dm:") {
		env.t.Fatalf("EnsureDM(%q, %q, %q)", id, a, b)
	}
	if env.rooms[id] != nil {
		return false, nil
	}
	env.rooms[id] = &fakeRoom{id: id, name: name, kind: "dm", members: map[string]string{a: "member", b: "member"}}
	return true, nil
}

func (s *fakeStore) room(roomID, userID string) (store.Room, error) {
	r := s.env().rooms[roomID]
	if r == nil {
		return store.Room{}, store.ErrNotFound
	}
	out := store.Room{ID: r.id, Name: r.name, Kind: r.kind, LastSeq: r.lastSeq, Role: r.members[userID]}
	if len(r.messages) > 0 {
		out.MinSeq = r.messages[0].Seq
	}
	return out, nil
}

func (s *fakeStore) Room(_ context.Context, roomID, userID string) (store.Room, error) {
	if err := pgText(roomID); err != nil {
		return store.Room{}, err
	}
	s.env().mu.Lock()
	defer s.env().mu.Unlock()
	return s.room(roomID, userID)
}

func (s *fakeStore) CheckSend(_ context.Context, roomID, userID, clientMsgID string) (store.SendCheck, error) {
	if err := pgText(roomID, clientMsgID); err != nil {
		return store.SendCheck{}, err
	}
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	if clientMsgID == "" {
		env.t.Fatal("CheckSend reached without a client_msg_id")
	}
	r := env.rooms[roomID]
	if r == nil {
		return store.SendCheck{}, nil
	}
	c := store.SendCheck{Kind: r.kind, Name: r.name, RoomFound: true, Member: r.members[userID] != ""}
	for _, m := range r.messages {
		if m.Sender == userID && m.ClientMsgID == clientMsgID && clientMsgID != "" {
			c.DupSeq, c.DupID = m.Seq, m.EventID
		}
	}
	return c, nil
}

func (s *fakeStore) MessageAt(_ context.Context, roomID string, seq int64) (store.Message, error) {
	if err := pgText(roomID); err != nil {
		return store.Message{}, err
	}
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	if r := env.rooms[roomID]; r != nil {
		for _, m := range r.messages {
			if m.Seq == seq {
				return m, nil
			}
		}
	}
	return store.Message{}, store.ErrNotFound
}

// AddMemberAnnounced adds the member and records announce in the outbox only if the
// membership changed, like the store's transaction: a repeated join writes nothing.
func (s *fakeStore) AddMemberAnnounced(_ context.Context, roomID, userID string, announce ...outbox.Row) (bool, error) {
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	r := env.rooms[roomID]
	if r == nil || r.kind == "dm" {
		env.t.Fatalf("AddMemberAnnounced(%q): unknown room or a DM", roomID)
	}
	if r.members[userID] != "" {
		return false, nil
	}
	if err := checkRows(announce); err != nil {
		return false, err
	}
	r.members[userID] = "member"
	env.outbox = append(env.outbox, announce...)
	return true, nil
}

// RemoveMemberAnnounced removes the member and records announce in the outbox only if
// there was a membership to end.
func (s *fakeStore) RemoveMemberAnnounced(_ context.Context, roomID, userID string, announce ...outbox.Row) (bool, error) {
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	r := env.rooms[roomID]
	if r == nil || r.kind == "dm" {
		env.t.Fatalf("RemoveMemberAnnounced(%q): unknown room or a DM", roomID)
	}
	if r.members[userID] == "" {
		return false, nil
	}
	if err := checkRows(announce); err != nil {
		return false, err
	}
	delete(r.members, userID)
	env.outbox = append(env.outbox, announce...)
	return true, nil
}

func (s *fakeStore) Members(_ context.Context, roomID string) ([]store.Membership, error) {
	if err := pgText(roomID); err != nil {
		return nil, err
	}
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	var out []store.Membership
	if r := env.rooms[roomID]; r != nil {
		for id, role := range r.members {
			out = append(out, store.Membership{RoomID: roomID, UserID: id, Username: env.userByID(id).Username, Role: role})
		}
	}
	return out, nil
}

func (s *fakeStore) RoomsOf(_ context.Context, userID string) ([]store.Room, error) {
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	var out []store.Room
	for id, r := range env.rooms {
		if r.members[userID] != "" {
			rr, _ := s.room(id, userID)
			out = append(out, rr)
		}
	}
	return out, nil
}

func (s *fakeStore) PublicRooms(_ context.Context, limit int) ([]store.Room, error) {
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	var out []store.Room
	for id, r := range env.rooms {
		if r.kind == "room" && len(out) < limit {
			rr, _ := s.room(id, "")
			out = append(out, rr)
		}
	}
	return out, nil
}

func (s *fakeStore) messages(roomID string, keep func(int64) bool, limit int) []store.Message {
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	if limit < 1 || limit > 1000 {
		env.t.Fatalf("history limit %d reached the store", limit)
	}
	var out []store.Message
	if r := env.rooms[roomID]; r != nil {
		for _, m := range r.messages {
			if keep(m.Seq) && len(out) < limit {
				out = append(out, m)
			}
		}
	}
	return out
}

func (s *fakeStore) MessagesAfter(_ context.Context, roomID string, after int64, limit int) ([]store.Message, error) {
	return s.messages(roomID, func(seq int64) bool { return seq > after }, limit), nil
}

func (s *fakeStore) MessagesBefore(_ context.Context, roomID string, before int64, limit int) ([]store.Message, error) {
	ms := s.messages(roomID, func(seq int64) bool { return seq < before }, 1000)
	// Newest first, as the real store returns them.
	for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
		ms[i], ms[j] = ms[j], ms[i]
	}
	return ms[:min(len(ms), limit)], nil
}

// Reactions: nothing here stores reaction entries (persistence does not run), so there
// are none; the real query is covered by the stack tests.
func (s *fakeStore) Reactions(context.Context, string, string, []int64, int) ([]store.Reaction, error) {
	return nil, nil
}

func (s *fakeStore) MarkRead(_ context.Context, userID, roomID string, seq int64) (int64, int64, error) {
	if err := pgText(roomID); err != nil {
		return 0, 0, err
	}
	env := s.env()
	env.mu.Lock()
	defer env.mu.Unlock()
	r := env.rooms[roomID]
	switch {
	case r == nil:
		return 0, 0, store.ErrNotFound
	case r.members[userID] == "":
		return 0, 0, store.ErrNotMember
	case seq < 0:
		env.t.Fatalf("MarkRead reached with seq %d", seq)
	case seq > r.lastSeq:
		return 0, 0, &store.PastEndError{LastSeq: r.lastSeq}
	}
	return seq, r.lastSeq - seq, nil
}

// fakeNotes is the in-memory notification store: alice has one notification.
type fakeNotes fuzzEnv

const aliceNote = "0190a000-0000-7000-8000-000000000001"

func (n *fakeNotes) check(userID string) {
	env := (*fuzzEnv)(n)
	if env.userByIDLocked(userID).Username == "" {
		env.t.Fatalf("notifications read for unknown user %q", userID)
	}
}

func (n *fakeNotes) List(_ context.Context, userID, beforeID string, limit int) ([]notifications.Notification, error) {
	n.check(userID)
	if beforeID != "" && !protocol.ValidNotificationID(beforeID) || limit < 1 || limit > 1000 {
		(*fuzzEnv)(n).t.Fatalf("List reached with before %q limit %d", beforeID, limit)
	}
	if userID != "u-alice" {
		return nil, nil
	}
	return []notifications.Notification{{ID: aliceNote, UserID: userID, RoomID: "dm:u-alice:u-bob", Seq: 1, Reason: "dm", Sender: "u-bob"}}, nil
}

func (n *fakeNotes) Pending(_ context.Context, userID string) ([]notifications.Notification, error) {
	return n.List(context.Background(), userID, "", 50)
}

func (n *fakeNotes) UnreadCount(_ context.Context, userID string) (int, error) {
	n.check(userID)
	if userID == "u-alice" {
		return 1, nil
	}
	return 0, nil
}

func (n *fakeNotes) MarkRead(_ context.Context, userID string, ids []string) (int, error) {
	n.check(userID)
	if len(ids) == 0 || len(ids) > protocol.MaxNotificationIDs {
		(*fuzzEnv)(n).t.Fatalf("MarkRead reached with %d ids", len(ids))
	}
	marked := 0
	for _, id := range ids {
		if !protocol.ValidNotificationID(id) {
			(*fuzzEnv)(n).t.Fatalf("MarkRead reached with id %q", id)
		}
		if id == aliceNote && userID == "u-alice" {
			marked = 1
		}
	}
	return marked, nil
}

func (n *fakeNotes) MarkAllRead(_ context.Context, userID string) (int, error) {
	n.check(userID)
	return 0, nil
}

// pgText fails like PostgreSQL does for a text parameter holding NUL (SQLSTATE 22021):
// input that can reach the database must not hold one, or the caller sees a 503.
func pgText(vals ...string) error {
	for _, v := range vals {
		if strings.ContainsRune(v, 0) {
			return &pgconn.PgError{Code: "22021", Message: "invalid byte sequence for encoding \"UTF8\": 0x00"}
		}
	}
	return nil
}

// fakePub records what would have gone to Kafka.
type fakePub fuzzEnv

func (p *fakePub) PublishAsync(ctx context.Context, declared, key string, e event.Envelope, done func(error)) error {
	done(p.Publish(ctx, declared, key, e))
	return nil
}

func (p *fakePub) Publish(_ context.Context, declared, key string, events ...event.Envelope) error {
	env := (*fuzzEnv)(p)
	env.mu.Lock()
	defer env.mu.Unlock()
	for _, e := range events {
		pl, err := event.DecodePayload(e)
		if err != nil {
			env.t.Fatalf("published an event that does not decode: %v", err)
		}
		env.published = append(env.published, published{topic: declared, key: key, id: e.ID, payload: pl})
	}
	return nil
}

type fakeHub struct{}

func (fakeHub) UserJoined(string, string, int64)            {}
func (fakeHub) UserLeft(string, string)                     {}
func (fakeHub) Users(context.Context) []protocol.OnlineUser { return []protocol.OnlineUser{} }
func (fakeHub) Stats() protocol.StatsReply                  { return protocol.StatsReply{GatewayID: "gw-fuzz"} }
