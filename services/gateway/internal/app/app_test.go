package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/blobstore"
	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/event"
	"github.com/kchat/kchat/pkg/outbox"
	"github.com/kchat/kchat/pkg/producer"
	"github.com/kchat/kchat/pkg/route"
	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/app"
	"github.com/kchat/kchat/services/gateway/internal/auth"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
	"github.com/kchat/kchat/services/gateway/internal/hub"
)

// Tests run in parallel (t.Parallel first thing): each starts gateways of its own, with a
// database, a topic set and a gateway id of their own, so nothing they assert is shared.
// The few that stay sequential say why; Go runs every sequential test before it releases
// the parallel ones, so those run with nothing else of this package going on.
//
// harness is one in-process gateway on the real stack, with its own database and topics.
// Persistence and fanout do not run here: tests that need stored messages write them to
// PostgreSQL themselves, the way persistence would. The outbox relay does run, so that
// what the gateway writes through the outbox (membership changes) reaches Kafka.
type harness struct {
	env    *stacktest.Env
	base   string
	ws     string
	db     *pgxpool.Pool
	topic  func(string) string
	id     string
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, mod func(*app.Config)) *harness {
	t.Helper()
	env := stacktest.Get(t)
	dbURL := env.NewDatabase(t)
	topic := env.Topics(t)
	id := stacktest.UniqueName("gw-it-")
	cfg := app.Config{
		ID: id, Addr: "127.0.0.1:0", Brokers: env.Brokers, KafkaSecurity: env.Security, DatabaseURL: dbURL, TopicPrefix: topic(""),
		MaxTextBytes: 100, ReadLimit: 4096, SendQueue: 64, IdleTimeout: time.Minute, PingInterval: 5 * time.Second,
		Password: auth.Params{Memory: 64, Time: 1, Threads: 1},
	}
	// Every gateway under test keeps attachments in a directory of its test (tests of the
	// S3 store, and of two gateways sharing one store, replace it).
	blobs, err := blobstore.NewFS(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Blobs = blobs
	if mod != nil {
		mod(&cfg)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx := context.Background()
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	scheme := "http"
	if cfg.TLSCertFile != "" {
		scheme = "https"
	}
	h := &harness{env: env, base: scheme + "://" + ln.Addr().String(), ws: strings.Replace(scheme, "http", "ws", 1) + "://" + ln.Addr().String() + "/ws",
		topic: topic, id: id, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- a.Serve(sctx, ln) }()
	t.Cleanup(func() { h.stop(t) })
	h.db, err = pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.db.Close)
	startRelay(t, env, h.db)
	if scheme == "http" { // over TLS the test's own client, which trusts its CA, waits
		stacktest.WaitHTTP(t, h.base+"/readyz", time.Minute)
	}
	return h
}

// startRelay publishes the test database's outbox until the test ends.
func startRelay(t *testing.T, env *stacktest.Env, db *pgxpool.Pool) {
	t.Helper()
	prod, err := producer.New(producer.Config{Brokers: env.Brokers, Security: env.Security})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.New(db, prod, outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	// Cleanups run last-in first-out: the relay stops before the pool closes.
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("outbox relay: %v", err)
		}
		_ = prod.Close()
	})
}

func (h *harness) stop(t *testing.T) {
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("gateway stopped with %v", err)
		}
		h.done <- nil
	case <-time.After(30 * time.Second):
		t.Error("gateway did not stop in 30s")
	}
}

func (h *harness) dial(t *testing.T, acc gwtest.Account) *gwtest.Client {
	t.Helper()
	c := gwtest.Dial(t, h.ws, nil)
	c.Send(map[string]any{"type": "auth", "token": acc.Token, "ref": "auth"})
	c.Expect("welcome", "auth")
	return c
}

// store writes timeline entries from..to of room as persistence would.
func (h *harness) store(t *testing.T, room string, from, to int64, sender gwtest.Account) {
	t.Helper()
	ctx := context.Background()
	for seq := from; seq <= to; seq++ {
		_, err := h.db.Exec(ctx, `INSERT INTO messages (room_id, seq, event_id, kind, sender, sender_name, client_msg_id, text, sent_at)
			VALUES ($1, $2, $3, 'message', $4, $5, $6, $7, now())`, room, seq, uuid.Must(uuid.NewV7()).String(), sender.ID, sender.Name,
			fmt.Sprintf("c%d", seq), fmt.Sprintf("m%d", seq))
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.db.Exec(ctx, `UPDATE rooms SET last_seq = greatest(last_seq, $2) WHERE id = $1`, room, to); err != nil {
		t.Fatal(err)
	}
}

// storeReply writes entry seq of room as sender's reply in root's thread, and the thread's
// summary, as persistence would.
func (h *harness) storeReply(t *testing.T, room string, seq, root int64, sender gwtest.Account) {
	t.Helper()
	ctx := context.Background()
	_, err := h.db.Exec(ctx, `INSERT INTO messages (room_id, seq, event_id, kind, sender, sender_name, client_msg_id, text, sent_at, thread_root)
		VALUES ($1, $2, $3, 'message', $4, $5, $6, 'a reply', now(), $7)`, room, seq, uuid.Must(uuid.NewV7()).String(), sender.ID, sender.Name,
		fmt.Sprintf("c%d", seq), root)
	if err == nil {
		_, err = h.db.Exec(ctx, `INSERT INTO threads (room_id, root_seq, reply_count, last_reply_at, last_seq, participants)
			SELECT $1, $2, 1, now(), $3, ARRAY[(SELECT sender FROM messages WHERE room_id = $1 AND seq = $2), $4]
			ON CONFLICT (room_id, root_seq) DO UPDATE SET reply_count = threads.reply_count + 1, last_seq = $3`, room, root, seq, sender.ID)
	}
	if err == nil {
		_, err = h.db.Exec(ctx, `UPDATE rooms SET last_seq = greatest(last_seq, $2) WHERE id = $1`, room, seq)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// readEvents returns the events on a room-keyed topic for key, read from the start.
func (h *harness) readEvents(t *testing.T, declared, key string, want int) []event.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	name := h.topic(declared)
	md, err := h.env.Client().Metadata(ctx, &kafka.MetadataRequest{Topics: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: h.env.Brokers, Dialer: h.env.ReaderDialer(), Topic: name, Partition: route.PartitionFor(key, len(md.Topics[0].Partitions)), MaxWait: consumer.ReaderMaxWait(200 * time.Millisecond)})
	defer r.Close()
	var out []event.Envelope
	for len(out) < want {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %s: %v (have %d of %d)", name, err, len(out), want)
		}
		if string(m.Key) != key {
			continue
		}
		e, err := event.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func code(f gwtest.Frame) string { return f.Str("code") }

func TestAccounts(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	st, f := gwtest.Do(t, "POST", h.base+"/api/register", "", map[string]string{"username": "alice", "password": "correct horse"})
	if st != 201 {
		t.Fatalf("register: %d %v", st, f)
	}
	tests := []struct {
		name   string
		path   string
		body   any
		status int
		code   string
	}{
		{"duplicate username", "/api/register", map[string]string{"username": "alice", "password": "another one"}, 409, "username_taken"},
		{"short username", "/api/register", map[string]string{"username": "al", "password": "password1"}, 400, "bad_request"},
		{"bad username chars", "/api/register", map[string]string{"username": "al ice", "password": "password1"}, 400, "bad_request"},
		{"short password", "/api/register", map[string]string{"username": "bobby", "password": "x"}, 400, "bad_request"},
		{"wrong password", "/api/login", map[string]string{"username": "alice", "password": "wrong horse"}, 401, "invalid_credentials"},
		{"unknown user", "/api/login", map[string]string{"username": "nobody", "password": "wrong horse"}, 401, "invalid_credentials"},
		{"bad json", "/api/login", "{nope", 400, "bad_json"},
		{"wrong field type", "/api/login", `{"username": 5, "password": "x"}`, 400, "bad_request"},
		{"bad reconnect token", "/api/resume", map[string]string{"reconnect_token": strings.Repeat("A", 43)}, 401, "invalid_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, f := gwtest.Do(t, "POST", h.base+tc.path, "", tc.body)
			if st != tc.status || code(f) != tc.code || f.Str("message") == "" {
				t.Fatalf("got %d %v, want %d %s", st, f, tc.status, tc.code)
			}
		})
	}

	st, login := gwtest.Do(t, "POST", h.base+"/api/login", "", map[string]string{"username": "alice", "password": "correct horse"})
	if st != 200 || login.Str("token") == "" || login.Str("reconnect_token") == "" {
		t.Fatalf("login: %d %v", st, login)
	}
	token, reconnect := login.Str("token"), login.Str("reconnect_token")
	if st, f := gwtest.Do(t, "GET", h.base+"/api/me", token, nil); st != 200 || f["user"].(map[string]any)["username"] != "alice" {
		t.Fatalf("me: %d %v", st, f)
	}
	for name, tok := range map[string]string{"forged": strings.Repeat("x", 43), "garbage": "abc", "reconnect token as bearer": reconnect} {
		if st, f := gwtest.Do(t, "GET", h.base+"/api/me", tok, nil); st != 401 || code(f) != "invalid_token" {
			t.Errorf("%s: %d %v", name, st, f)
		}
	}
	if st, f := gwtest.Do(t, "GET", h.base+"/api/me", "", nil); st != 401 || code(f) != "unauthorized" {
		t.Errorf("no token: %d %v", st, f)
	}
	// The session token stored hashed, never in the clear.
	var n int
	_ = h.db.QueryRow(context.Background(), `SELECT count(*) FROM sessions WHERE token_hash = $1`, auth.HashToken(token)).Scan(&n)
	if n != 1 {
		t.Fatalf("session token hash rows: %d", n)
	}

	// A reconnect token resumes, over REST and over WebSocket.
	if st, f := gwtest.Do(t, "POST", h.base+"/api/resume", "", map[string]string{"reconnect_token": reconnect}); st != 200 || f.Str("token") == "" {
		t.Fatalf("resume: %d %v", st, f)
	}
	c := gwtest.Dial(t, h.ws, nil)
	c.Send(map[string]any{"type": "hello", "reconnect_token": reconnect, "ref": "h"})
	if w := c.Expect("welcome", "h"); w.Str("reconnect_token") == "" || w.Str("gateway_id") != h.id {
		t.Fatalf("welcome: %v", w)
	}

	// Expired and wrong reconnect tokens are rejected: 401 on REST, error + 4001 on WebSocket.
	expired, _ := auth.NewToken(auth.KindReconnect, time.Now().Add(-2*time.Hour), time.Hour)
	var uid string
	_ = h.db.QueryRow(context.Background(), `SELECT id FROM users WHERE username = 'alice'`).Scan(&uid)
	if _, err := h.db.Exec(context.Background(), `INSERT INTO sessions (token_hash, user_id, kind, expires_at) VALUES ($1, $2, 'reconnect', $3)`, expired.Hash, uid, expired.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/resume", "", map[string]string{"reconnect_token": expired.Value}); st != 401 || code(f) != "invalid_token" {
		t.Fatalf("expired resume: %d %v", st, f)
	}
	for name, tok := range map[string]string{"expired": expired.Value, "wrong": strings.Repeat("B", 43), "session token as reconnect": token} {
		t.Run("ws "+name, func(t *testing.T) {
			c := gwtest.Dial(t, h.ws, nil)
			c.Send(map[string]any{"type": "hello", "reconnect_token": tok, "ref": "h"})
			if e := c.Expect("error", "h"); code(e) != "invalid_token" {
				t.Fatalf("error: %v", e)
			}
			if cc := c.WaitClosed(10 * time.Second); cc != 4001 {
				t.Fatalf("close code %d, want 4001", cc)
			}
		})
	}
	// ?token= with a forged token closes 4001 too.
	c = gwtest.Dial(t, h.ws+"?token="+strings.Repeat("C", 43), nil)
	if cc := c.WaitClosed(10 * time.Second); cc != 4001 {
		t.Fatalf("forged ?token=: close %d", cc)
	}
	// ?token= with a good token authenticates without a frame.
	c = gwtest.Dial(t, h.ws+"?token="+token, nil)
	c.Expect("welcome")
}

func TestRooms_create_join_leave_members(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	bob := gwtest.NewAccount(t, h.base, "bob")

	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general", "name": "General"}); st != 201 || f.Str("role") != "owner" {
		t.Fatalf("create: %d %v", st, f)
	}
	for _, tc := range []struct {
		body   any
		status int
		code   string
	}{
		{map[string]string{"id": "general", "name": "again"}, 409, "conflict"},
		{map[string]string{"id": "Bad Id"}, 400, "bad_request"},
		{map[string]string{"id": "dm:x:y"}, 400, "bad_request"},
		{"[]", 400, "bad_json"},
	} {
		if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, tc.body); st != tc.status || code(f) != tc.code {
			t.Errorf("create %v: %d %v", tc.body, st, f)
		}
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/general/join", bob.Token, nil); st != 200 {
		t.Fatalf("join: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/nowhere/join", bob.Token, nil); st != 404 || code(f) != "not_found" {
		t.Fatalf("join unknown: %d %v", st, f)
	}
	st, f := gwtest.Do(t, "GET", h.base+"/api/rooms/general/members", bob.Token, nil)
	members, _ := f["members"].([]any)
	if st != 200 || len(members) != 2 {
		t.Fatalf("members: %d %v", st, f)
	}
	roles := map[string]string{}
	for _, m := range members {
		m := m.(map[string]any)
		roles[m["username"].(string)] = m["role"].(string)
	}
	if roles["alice"] != "owner" || roles["bob"] != "member" {
		t.Fatalf("roles: %v", roles)
	}
	st, f = gwtest.Do(t, "GET", h.base+"/api/rooms", bob.Token, nil)
	if mine, _ := f["mine"].([]any); st != 200 || len(mine) != 1 {
		t.Fatalf("rooms: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/general/leave", bob.Token, nil); st != 200 {
		t.Fatalf("leave: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/general/leave", bob.Token, nil); st != 403 || code(f) != "forbidden" {
		t.Fatalf("leave twice: %d %v", st, f)
	}
	_, f = gwtest.Do(t, "GET", h.base+"/api/rooms/general/members", alice.Token, nil)
	if members, _ := f["members"].([]any); len(members) != 1 {
		t.Fatalf("members after leave: %v", f)
	}
	// Creation, join and leave were each announced to persistence, keyed by room.
	evs := h.readEvents(t, topics.Submitted, "general", 3)
	var changes []string
	for _, e := range evs {
		m, err := event.As[event.MembershipChanged](e)
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, m.UserName+":"+m.Change)
	}
	if strings.Join(changes, ",") != "alice:joined,bob:joined,bob:left" {
		t.Fatalf("membership events: %v", changes)
	}
}

func TestHistory_paging(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	carol := gwtest.NewAccount(t, h.base, "carol")
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})
	h.store(t, "general", 1, 25, alice)
	_, _ = h.db.Exec(context.Background(), `UPDATE messages SET text = 'fixed', edited_at = now() WHERE room_id = 'general' AND seq = 3`)

	seqsOf := func(f gwtest.Frame) []int64 {
		var out []int64
		ms, _ := f["messages"].([]any)
		for _, m := range ms {
			out = append(out, int64(m.(map[string]any)["seq"].(float64)))
		}
		return out
	}
	for _, tc := range []struct {
		query    string
		from, to int64
		more     bool
	}{
		{"?limit=10", 16, 25, true},
		{"?before=16&limit=10", 6, 15, true},
		{"?before=6&limit=10", 1, 5, false},
		{"?after=20", 21, 25, false},
		{"?after=0&limit=5", 16, 20, true}, // after=0 means "no after": newest page... of 5
	} {
		st, f := gwtest.Do(t, "GET", h.base+"/api/rooms/general/messages"+tc.query, alice.Token, nil)
		if tc.query == "?after=0&limit=5" {
			tc.from, tc.to = 21, 25
		}
		if err := gwtest.Contiguous(seqsOf(f), tc.from, tc.to); st != 200 || err != nil || f["has_more"] != tc.more {
			t.Errorf("%s: %d %v %v", tc.query, st, err, f["has_more"])
		}
	}
	_, f := gwtest.Do(t, "GET", h.base+"/api/rooms/general/messages?before=4&limit=1", alice.Token, nil)
	if m := f["messages"].([]any)[0].(map[string]any); m["text"] != "fixed" || m["edited_at"] == nil {
		t.Fatalf("edited entry: %v", m)
	}
	for _, tc := range []struct {
		query  string
		status int
		code   string
	}{
		{"?limit=201", 400, "bad_request"},
		{"?before=x", 400, "bad_request"},
		{"?before=5&after=2", 400, "bad_request"},
	} {
		if st, f := gwtest.Do(t, "GET", h.base+"/api/rooms/general/messages"+tc.query, alice.Token, nil); st != tc.status || code(f) != tc.code {
			t.Errorf("%s: %d %v", tc.query, st, f)
		}
	}
	if st, f := gwtest.Do(t, "GET", h.base+"/api/rooms/general/messages", carol.Token, nil); st != 403 || code(f) != "forbidden" {
		t.Fatalf("non-member history: %d %v", st, f)
	}

	// The same over WebSocket: the /history command.
	c := h.dial(t, alice)
	c.Send(map[string]any{"type": "history", "room": "general", "before_seq": 11, "limit": 5, "ref": "h1"})
	if err := gwtest.Contiguous(seqsOf(c.Expect("history", "h1")), 6, 10); err != nil {
		t.Fatal(err)
	}

	// Resume: subscribe from seq 20 gets 21..25 then a synced marker; from 99 is not recoverable.
	c.Send(map[string]any{"type": "subscribe", "room": "general", "since_seq": 20, "ref": "s1"})
	if s := c.Expect("subscribed", "s1"); s["recovered"] != true || s.Int("last_seq") != 25 {
		t.Fatalf("subscribed: %v", s)
	}
	if err := gwtest.Contiguous(c.Messages("general", 25, 10*time.Second), 21, 25); err != nil {
		t.Fatal(err)
	}
	c.Expect("synced")
	c2 := h.dial(t, alice)
	c2.Send(map[string]any{"type": "subscribe", "room": "general", "since_seq": 99, "ref": "s2"})
	if s := c2.Expect("subscribed", "s2"); s["recovered"] != false || s.Str("reason") == "" || s.Int("since_seq") != 25 {
		t.Fatalf("subscribed ahead: %v", s)
	}
	// Purged history: entries 1..5 are gone.
	_, _ = h.db.Exec(context.Background(), `DELETE FROM messages WHERE room_id = 'general' AND seq <= 5`)
	c2.Send(map[string]any{"type": "unsubscribe", "room": "general"})
	c2.Expect("unsubscribed")
	c2.Send(map[string]any{"type": "subscribe", "room": "general", "since_seq": 2, "ref": "s3"})
	if s := c2.Expect("subscribed", "s3"); s["recovered"] != false {
		t.Fatalf("subscribed after purge: %v", s)
	}
	if err := gwtest.Contiguous(c2.Messages("general", 25, 10*time.Second), 6, 25); err != nil {
		t.Fatal(err)
	}
}

func TestDM_private_to_its_two_people(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	bob := gwtest.NewAccount(t, h.base, "bob")
	carol := gwtest.NewAccount(t, h.base, "carol")

	st, f := gwtest.Do(t, "POST", h.base+"/api/dms/bob", alice.Token, nil)
	room, _ := f["room"].(map[string]any)
	if st != 200 || room["kind"] != "dm" {
		t.Fatalf("open dm: %d %v", st, f)
	}
	id := room["id"].(string)
	ids := []string{alice.ID, bob.ID}
	if ids[0] > ids[1] {
		ids[0], ids[1] = ids[1], ids[0]
	}
	if id != "dm:"+ids[0]+":"+ids[1] {
		t.Fatalf("dm id %q", id)
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/dms/alice", bob.Token, nil); st != 200 || f["room"].(map[string]any)["id"] != id {
		t.Fatalf("dm from the other side: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/dms/nobody", alice.Token, nil); st != 404 || code(f) != "not_found" {
		t.Fatalf("dm to unknown: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/dms/alice", alice.Token, nil); st != 400 {
		t.Fatalf("dm to self: %d %v", st, f)
	}
	h.store(t, id, 1, 2, alice)
	for _, acc := range []gwtest.Account{alice, bob} {
		if st, f := gwtest.Do(t, "GET", h.base+"/api/rooms/"+id+"/messages", acc.Token, nil); st != 200 || len(f["messages"].([]any)) != 2 {
			t.Fatalf("%s history: %d %v", acc.Name, st, f)
		}
	}
	// Carol, an outsider, gets what she would get if the DM did not exist.
	for _, path := range []string{"/messages", "/members"} {
		if st, f := gwtest.Do(t, "GET", h.base+"/api/rooms/"+id+path, carol.Token, nil); st != 404 || code(f) != "not_found" {
			t.Fatalf("carol %s: %d %v", path, st, f)
		}
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/"+id+"/messages", carol.Token, map[string]string{"client_msg_id": "x", "text": "hi"}); st != 404 {
		t.Fatalf("carol send: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/"+id+"/join", carol.Token, nil); st != 404 {
		t.Fatalf("carol join: %d %v", st, f)
	}
	c := h.dial(t, carol)
	c.Send(map[string]any{"type": "subscribe", "room": id, "since_seq": 0, "ref": "s"})
	if e := c.Expect("error", "s"); code(e) != "not_found" {
		t.Fatalf("carol subscribe: %v", e)
	}
	c.Send(map[string]any{"type": "history", "room": id, "ref": "hh"})
	if e := c.Expect("error", "hh"); code(e) != "not_found" {
		t.Fatalf("carol ws history: %v", e)
	}
	// A WS dm frame creates and sends: the submitted event is keyed by the DM room.
	a := h.dial(t, alice)
	a.Send(map[string]any{"type": "dm", "to": "carol", "client_msg_id": "d1", "text": "psst", "ref": "d"})
	ack := a.Expect("ack", "d")
	if !strings.HasPrefix(ack.Str("room"), "dm:") || ack.Str("status") != "accepted" {
		t.Fatalf("dm ack: %v", ack)
	}
	evs := h.readEvents(t, topics.Submitted, ack.Str("room"), 1)
	if m, err := event.As[event.MessageSubmitted](evs[0]); err != nil || m.Text != "psst" || evs[0].ID != ack.Str("message_id") {
		t.Fatalf("dm event: %+v %v", m, err)
	}
	// Carol is on this gateway, so she was subscribed to the new DM at once.
	if s := c.Expect("subscribed"); s.Str("room") != ack.Str("room") {
		t.Fatalf("carol subscribed to %v", s)
	}
}

func TestSend_ack_and_idempotency(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})
	c := h.dial(t, alice)
	c.Send(map[string]any{"type": "send", "room": "general", "client_msg_id": "c-1", "text": "hello <world>", "ref": "1"})
	ack := c.Expect("ack", "1")
	if ack.Str("status") != "accepted" || ack.Str("client_msg_id") != "c-1" || ack.Str("message_id") == "" {
		t.Fatalf("ack: %v", ack)
	}
	evs := h.readEvents(t, topics.Submitted, "general", 2) // the creator's join, then the message
	m, err := event.As[event.MessageSubmitted](evs[1])
	if err != nil || evs[1].ID != ack.Str("message_id") || m.Text != "hello <world>" || m.Sender != alice.ID || m.ClientMsgID != "c-1" {
		t.Fatalf("submitted: %+v %v", m, err)
	}
	// Once persistence stored it, a retry is answered from PostgreSQL, not republished.
	_, err = h.db.Exec(context.Background(), `INSERT INTO messages (room_id, seq, event_id, kind, sender, sender_name, client_msg_id, text, sent_at)
		VALUES ('general', 1, $1, 'message', $2, 'alice', 'c-1', 'hello <world>', now())`, ack.Str("message_id"), alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		c.Send(map[string]any{"type": "send", "room": "general", "client_msg_id": "c-1", "text": "hello <world>", "ref": fmt.Sprint("r", i)})
		dup := c.Expect("ack", fmt.Sprint("r", i))
		if dup.Str("status") != "duplicate" || dup.Int("seq") != 1 || dup.Str("message_id") != ack.Str("message_id") {
			t.Fatalf("retry %d: %v", i, dup)
		}
	}
	st, f := gwtest.Do(t, "POST", h.base+"/api/rooms/general/messages", alice.Token, map[string]string{"client_msg_id": "c-1", "text": "hello <world>"})
	if st != 200 || f.Str("status") != "duplicate" || f.Int("seq") != 1 {
		t.Fatalf("REST retry: %d %v", st, f)
	}
	st, f = gwtest.Do(t, "POST", h.base+"/api/rooms/general/messages", alice.Token, map[string]string{"client_msg_id": "c-2", "text": "via rest"})
	if st != 202 || f.Str("status") != "accepted" {
		t.Fatalf("REST send: %d %v", st, f)
	}
	c.Send(map[string]any{"type": "stats", "ref": "st"})
	if s := c.Expect("stats", "st"); s.Int("messages_in") != 2 || s.Str("gateway_id") != h.id {
		t.Fatalf("stats: %v", s)
	}
}

func TestBadInputs_REST(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	bob := gwtest.NewAccount(t, h.base, "bob")
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})
	long := strings.Repeat("x", 101)
	tests := []struct {
		name, method, path, token string
		body                      any
		status                    int
		code                      string
	}{
		{"unknown route", "GET", "/api/nothing", alice.Token, nil, 404, "not_found"},
		{"no auth", "GET", "/api/rooms", "", nil, 401, "unauthorized"},
		{"forged token", "GET", "/api/rooms", strings.Repeat("z", 43), nil, 401, "invalid_token"},
		{"send bad json", "POST", "/api/rooms/general/messages", alice.Token, "{", 400, "bad_json"},
		{"send no client id", "POST", "/api/rooms/general/messages", alice.Token, map[string]string{"text": "x"}, 400, "bad_request"},
		{"send empty text", "POST", "/api/rooms/general/messages", alice.Token, map[string]string{"client_msg_id": "a", "text": ""}, 400, "bad_request"},
		{"send too long", "POST", "/api/rooms/general/messages", alice.Token, map[string]string{"client_msg_id": "a", "text": long}, 413, "too_large"},
		{"send unknown room", "POST", "/api/rooms/nowhere/messages", alice.Token, map[string]string{"client_msg_id": "a", "text": "x"}, 404, "not_found"},
		{"send not member", "POST", "/api/rooms/general/messages", bob.Token, map[string]string{"client_msg_id": "a", "text": "x"}, 403, "forbidden"},
		{"history unknown room", "GET", "/api/rooms/nowhere/messages", alice.Token, nil, 404, "not_found"},
		{"members unknown room", "GET", "/api/rooms/nowhere/members", alice.Token, nil, 404, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, f := gwtest.Do(t, tc.method, h.base+tc.path, tc.token, tc.body)
			if st != tc.status || code(f) != tc.code || f.Str("message") == "" {
				t.Fatalf("got %d %v, want %d %s", st, f, tc.status, tc.code)
			}
		})
	}
	if st, f := gwtest.Do(t, "GET", h.base+"/api/users", alice.Token, nil); st != 200 || f["users"] == nil {
		t.Fatalf("users: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "GET", h.base+"/api/stats", alice.Token, nil); st != 200 || f.Str("gateway_id") != h.id {
		t.Fatalf("stats: %d %v", st, f)
	}
	// The browser page is served from the same server.
	res, err := http.Get(h.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

// Not parallel: the connection under test closes after 3 s without a frame, and a loaded
// machine (other tests' gateways) could stretch a pause between its frames that long.
func TestBadInputs_WebSocket(t *testing.T) {
	h := start(t, func(c *app.Config) { c.IdleTimeout = 3 * time.Second })
	alice := gwtest.NewAccount(t, h.base, "alice")
	bob := gwtest.NewAccount(t, h.base, "bob")
	gwtest.Do(t, "POST", h.base+"/api/rooms", bob.Token, map[string]string{"id": "bobs"})
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})

	// Before authenticating, only hello/auth/ping are served.
	c := gwtest.Dial(t, h.ws, nil)
	c.Send(`{"type":"send","room":"general","client_msg_id":"a","text":"x","ref":"early"}`)
	if e := c.Expect("error", "early"); code(e) != "unauthorized" {
		t.Fatalf("before auth: %v", e)
	}
	c.Send(map[string]any{"type": "auth", "token": alice.Token, "ref": "a"})
	c.Expect("welcome", "a")

	long := strings.Repeat("y", 101)
	tests := []struct {
		name  string
		frame string
		code  string
		cmid  string // a refused message frame names its client_msg_id, whatever refused it
	}{
		{"invalid json", `{"type":`, "bad_json", ""},
		{"not an object", `[]`, "bad_json", ""},
		{"unknown type", `{"type":"fly","ref":"x"}`, "unknown_type", ""},
		{"missing room", `{"type":"send","client_msg_id":"a","text":"x","ref":"x"}`, "bad_request", "a"},
		{"missing client id", `{"type":"send","room":"general","text":"x","ref":"x"}`, "bad_request", ""},
		{"text too long", `{"type":"send","room":"general","client_msg_id":"a","text":"` + long + `","ref":"x"}`, "too_large", "a"},
		{"not a member", `{"type":"send","room":"bobs","client_msg_id":"a","text":"x","ref":"x"}`, "forbidden", "a"},
		{"unknown room", `{"type":"send","room":"nowhere","client_msg_id":"a","text":"x","ref":"x"}`, "not_found", "a"},
		{"subscribe unknown room", `{"type":"subscribe","room":"nowhere","ref":"x"}`, "not_found", ""},
		{"subscribe not member", `{"type":"subscribe","room":"bobs","ref":"x"}`, "forbidden", ""},
		{"history wrong type", `{"type":"history","room":"general","limit":"ten","ref":"x"}`, "bad_request", ""},
		{"unsubscribe not subscribed", `{"type":"unsubscribe","room":"general","ref":"x"}`, "not_found", ""},
		{"typing not member", `{"type":"typing","room":"bobs","ref":"x"}`, "forbidden", ""},
		{"join unknown", `{"type":"join","room":"nowhere","ref":"x"}`, "not_found", ""},
		{"leave not member", `{"type":"leave","room":"bobs","ref":"x"}`, "forbidden", ""},
		{"dm unknown user", `{"type":"dm","to":"nobody","client_msg_id":"a","text":"x","ref":"x"}`, "not_found", "a"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.Send(tc.frame)
			e := c.Expect("error")
			if code(e) != tc.code || e.Str("message") == "" || e.Str("client_msg_id") != tc.cmid {
				t.Fatalf("got %v, want %s naming client_msg_id %q", e, tc.code, tc.cmid)
			}
			// The connection stays usable.
			ref := fmt.Sprint("p", i)
			c.Send(map[string]any{"type": "ping", "ref": ref})
			c.Expect("pong", ref)
		})
	}
	// Replies that need no stack: users, rooms, token, stats.
	for _, typ := range []string{"users", "rooms", "token", "stats"} {
		c.Send(map[string]any{"type": typ, "ref": typ})
		c.Expect(typ, typ)
	}
	t.Run("frame over read limit closes 1009", func(t *testing.T) {
		c := h.dial(t, alice)
		c.Send(`{"type":"ping","pad":"` + strings.Repeat("z", 5000) + `"}`)
		if cc := c.WaitClosed(10 * time.Second); cc != websocket.StatusMessageTooBig {
			t.Fatalf("close %d", cc)
		}
	})
	t.Run("disallowed origin is 403 before upgrade", func(t *testing.T) {
		hdr := http.Header{"Origin": []string{"https://evil.example"}}
		_, err := gwtest.DialErr(h.ws, &websocket.DialOptions{HTTPHeader: hdr})
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("dial with bad origin: %v", err)
		}
		ok := http.Header{"Origin": []string{"http://localhost:5173"}}
		if _, err := gwtest.DialErr(h.ws, &websocket.DialOptions{HTTPHeader: ok}); err != nil {
			t.Fatalf("dial with localhost origin: %v", err)
		}
	})
	t.Run("idle connection closes 4000", func(t *testing.T) {
		c := h.dial(t, alice)
		if cc := c.WaitClosed(15 * time.Second); cc != 4000 {
			t.Fatalf("close %d", cc)
		}
	})
	t.Run("quit closes 1000", func(t *testing.T) {
		c := h.dial(t, alice)
		c.Send(map[string]any{"type": "quit"})
		if cc := c.WaitClosed(10 * time.Second); cc != websocket.StatusNormalClosure {
			t.Fatalf("close %d", cc)
		}
	})
}

func TestShutdown_reconnect_frame_and_unannounce(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})
	h.store(t, "general", 1, 3, alice)
	c := gwtest.Dial(t, h.ws, nil)
	c.Send(map[string]any{"type": "hello", "token": alice.Token, "rooms": map[string]int64{"general": 1}})
	c.Expect("welcome")
	if err := gwtest.Contiguous(c.Messages("general", 3, 10*time.Second), 2, 3); err != nil {
		t.Fatal(err)
	}
	key := route.SubscriptionKey(h.id, "general")
	on := h.readEvents(t, topics.Subscriptions, key, 1)
	if s, _ := event.As[event.SubscriptionChanged](on[0]); !s.Subscribed {
		t.Fatalf("first announcement: %+v", s)
	}

	h.stop(t)
	r := c.Expect("reconnect")
	if r.Str("reason") != "shutdown" || r["cursors"].(map[string]any)["general"] != float64(3) {
		t.Fatalf("reconnect: %v", r)
	}
	if cc := c.WaitClosed(10 * time.Second); cc != websocket.StatusServiceRestart {
		t.Fatalf("close %d", cc)
	}
	evs := h.readEvents(t, topics.Subscriptions, key, 2)
	if s, _ := event.As[event.SubscriptionChanged](evs[len(evs)-1]); s.Subscribed {
		t.Fatalf("last announcement still subscribed: %+v", s)
	}
	// The pseudo-room that draws notifications here while anyone is connected goes too.
	users := h.readEvents(t, topics.Subscriptions, route.SubscriptionKey(h.id, hub.UsersRoom), 2)
	first, _ := event.As[event.SubscriptionChanged](users[0])
	last, _ := event.As[event.SubscriptionChanged](users[len(users)-1])
	if !first.Subscribed || last.Subscribed {
		t.Fatalf("%s announcements: first %+v, last %+v", hub.UsersRoom, first, last)
	}
}
