package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/consumer"
	"github.com/kchat/kchat/pkg/route"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/app"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
	"github.com/kchat/kchat/services/gateway/internal/ratelimit"
)

// roomOf returns the entry for room in a rooms answer (REST body or WebSocket frame).
func roomOf(t *testing.T, f gwtest.Frame, room string) map[string]any {
	t.Helper()
	mine, _ := f["mine"].([]any)
	for _, r := range mine {
		if m := r.(map[string]any); m["id"] == room {
			return m
		}
	}
	t.Fatalf("room %s not in %v", room, f)
	return nil
}

func unreadOf(t *testing.T, base string, acc gwtest.Account, room string) (unread, marker int64) {
	t.Helper()
	st, f := gwtest.Do(t, "GET", base+"/api/rooms", acc.Token, nil)
	if st != 200 {
		t.Fatalf("rooms: %d %v", st, f)
	}
	r := roomOf(t, f, room)
	return int64(r["unread"].(float64)), int64(r["last_read_seq"].(float64))
}

func TestReadMarkers_and_unread_counts(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	bob := gwtest.NewAccount(t, h.base, "bob")
	carol := gwtest.NewAccount(t, h.base, "carol")
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})
	gwtest.Do(t, "POST", h.base+"/api/rooms/general/join", bob.Token, nil)
	h.store(t, "general", 1, 5, alice)

	// Bob joined before the five messages: all unread. Alice's own are not unread to her.
	if u, m := unreadOf(t, h.base, bob, "general"); u != 5 || m != 0 {
		t.Fatalf("bob: unread %d marker %d, want 5, 0", u, m)
	}
	if u, _ := unreadOf(t, h.base, alice, "general"); u != 0 {
		t.Fatalf("alice's own messages count as unread to her: %d", u)
	}
	// Carol joins after them: history, not unread.
	gwtest.Do(t, "POST", h.base+"/api/rooms/general/join", carol.Token, nil)
	if u, m := unreadOf(t, h.base, carol, "general"); u != 0 || m != 5 {
		t.Fatalf("carol: unread %d marker %d, want 0, 5", u, m)
	}

	read := func(acc gwtest.Account, room string, body any) (int, gwtest.Frame) {
		return gwtest.Do(t, "POST", h.base+"/api/rooms/"+room+"/read", acc.Token, body)
	}
	tests := []struct {
		name   string
		acc    gwtest.Account
		room   string
		body   any
		status int
		code   string
		marker int64 // on success: the marker after the call
		unread int64
	}{
		{"mark read up to 3", bob, "general", map[string]any{"seq": 3}, 200, "", 3, 2},
		{"again: idempotent", bob, "general", map[string]any{"seq": 3}, 200, "", 3, 2},
		{"an older seq never moves it back", bob, "general", map[string]any{"seq": 1}, 200, "", 3, 2},
		{"past the room's last seq", bob, "general", map[string]any{"seq": 6}, 400, "bad_request", 0, 0},
		{"negative", bob, "general", map[string]any{"seq": -1}, 400, "bad_request", 0, 0},
		{"seq missing", bob, "general", map[string]any{}, 400, "bad_request", 0, 0},
		{"seq not a number", bob, "general", map[string]any{"seq": "3"}, 400, "bad_request", 0, 0},
		{"unknown room", bob, "nowhere", map[string]any{"seq": 1}, 404, "not_found", 0, 0},
		{"not a member", gwtest.NewAccount(t, h.base, "dave"), "general", map[string]any{"seq": 1}, 403, "forbidden", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, f := read(tc.acc, tc.room, tc.body)
			if st != tc.status || code(f) != tc.code {
				t.Fatalf("got %d %v, want %d %s", st, f, tc.status, tc.code)
			}
			if st == 200 && (f.Int("last_read_seq") != tc.marker || f.Int("unread") != tc.unread) {
				t.Fatalf("got %v, want marker %d unread %d", f, tc.marker, tc.unread)
			}
		})
	}
	if _, m := unreadOf(t, h.base, bob, "general"); m != 3 {
		t.Fatalf("refused marks moved the marker to %d", m)
	}

	// Over WebSocket, on one of two tabs: the other tab hears of it.
	tab1, tab2 := h.dial(t, bob), h.dial(t, bob)
	tab1.Send(map[string]any{"type": "read", "room": "general", "seq": 5, "ref": "r1"})
	if r := tab1.Expect("read", "r1"); r.Int("seq") != 5 || r.Int("unread") != 0 {
		t.Fatalf("read reply %v", r)
	}
	if r := tab2.Expect("read"); r.Str("room") != "general" || r.Int("seq") != 5 || r.Str("ref") != "" {
		t.Fatalf("other tab got %v", r)
	}
	tab1.Send(map[string]any{"type": "read", "room": "general", "seq": 99, "ref": "r2"})
	if e := tab1.Expect("error", "r2"); code(e) != "bad_request" || e.Str("room") != "general" {
		t.Fatalf("read past the end: %v", e)
	}
	tab1.Send(map[string]any{"type": "read", "room": "general", "ref": "r3"})
	if e := tab1.Expect("error", "r3"); code(e) != "bad_request" {
		t.Fatalf("read without seq: %v", e)
	}

	// New messages, one of them deleted and one bob's own: only the others count.
	h.store(t, "general", 6, 8, alice)
	h.store(t, "general", 9, 9, bob)
	if _, err := h.db.Exec(context.Background(), `UPDATE messages SET deleted_at = now() WHERE room_id = 'general' AND seq = 7`); err != nil {
		t.Fatal(err)
	}
	tab2.Send(map[string]any{"type": "rooms", "ref": "rooms"})
	if r := roomOf(t, tab2.Expect("rooms", "rooms"), "general"); r["unread"].(float64) != 2 || r["last_read_seq"].(float64) != 5 {
		t.Fatalf("rooms frame: %v", r)
	}
	// A REST read reaches both tabs.
	if st, f := read(bob, "general", map[string]any{"seq": 9}); st != 200 || f.Int("unread") != 0 {
		t.Fatalf("read 9: %d %v", st, f)
	}
	for _, tab := range []*gwtest.Client{tab1, tab2} {
		if r := tab.Expect("read"); r.Int("seq") != 9 {
			t.Fatalf("tab got %v", r)
		}
	}
}

// insertNotification writes a notification as the notification service would.
func (h *harness) insertNotification(t *testing.T, user gwtest.Account, room string, seq int64, reason, preview string) string {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	if _, err := h.db.Exec(context.Background(), `INSERT INTO notifications (id, user_id, room_id, seq, reason, sender, preview)
		VALUES ($1, $2, $3, $4, $5, 'someone', $6)`, id, user.ID, room, seq, reason, preview); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestNotifications_list_pending_and_mark_read(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice")
	bob := gwtest.NewAccount(t, h.base, "bob")
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})
	var ids []string
	for i := range 5 {
		ids = append(ids, h.insertNotification(t, bob, "general", int64(i+1), "mention", fmt.Sprint("hey @bob ", i)))
	}
	other := h.insertNotification(t, alice, "general", 1, "room", "alice's own")

	// Paged, newest first.
	st, p1 := gwtest.Do(t, "GET", h.base+"/api/notifications?limit=2", bob.Token, nil)
	ns, _ := p1["notifications"].([]any)
	if st != 200 || len(ns) != 2 || ns[0].(map[string]any)["notification_id"] != ids[4] || p1["has_more"] != true || p1.Int("unread_count") != 5 {
		t.Fatalf("page 1: %d %v", st, p1)
	}
	_, p3 := gwtest.Do(t, "GET", h.base+"/api/notifications?limit=2&before="+ids[1], bob.Token, nil)
	if ns, _ := p3["notifications"].([]any); len(ns) != 1 || ns[0].(map[string]any)["notification_id"] != ids[0] || p3["has_more"] != false {
		t.Fatalf("last page: %v", p3)
	}

	// At hello the unread ones arrive as notification frames, oldest first, marked pending.
	c := gwtest.Dial(t, h.ws, nil)
	c.Send(map[string]any{"type": "hello", "token": bob.Token, "rooms": map[string]int64{}, "ref": "h"})
	c.Expect("welcome", "h")
	for i := range 5 {
		f := c.Expect("notification")
		if f.Str("notification_id") != ids[i] || f["pending"] != true || f.Str("reason") != "mention" || f.Str("room") != "general" {
			t.Fatalf("pending %d: %v", i, f)
		}
	}
	// Over WebSocket too.
	c.Send(map[string]any{"type": "notifications", "limit": 3, "ref": "n"})
	if f := c.Expect("notifications", "n"); len(f["notifications"].([]any)) != 3 || f.Int("unread_count") != 5 {
		t.Fatalf("notifications frame: %v", f)
	}

	unknown := uuid.Must(uuid.NewV7()).String()
	tests := []struct {
		name           string
		body           any
		status         int
		code           string
		marked, unread int64
	}{
		{"two of mine", map[string]any{"ids": []string{ids[0], ids[1]}}, 200, "", 2, 3},
		{"again: nothing changes, no error", map[string]any{"ids": []string{ids[0]}}, 200, "", 0, 3},
		{"an unknown id marks nothing", map[string]any{"ids": []string{unknown}}, 200, "", 0, 3},
		{"someone else's id marks nothing", map[string]any{"ids": []string{other}}, 200, "", 0, 3},
		{"not an id", map[string]any{"ids": []string{"42"}}, 400, "bad_request", 0, 0},
		{"neither ids nor all", map[string]any{}, 400, "bad_request", 0, 0},
		{"both", map[string]any{"ids": []string{ids[2]}, "all": true}, 400, "bad_request", 0, 0},
		{"all", map[string]any{"all": true}, 200, "", 3, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, f := gwtest.Do(t, "POST", h.base+"/api/notifications/read", bob.Token, tc.body)
			if st != tc.status || code(f) != tc.code {
				t.Fatalf("got %d %v, want %d %s", st, f, tc.status, tc.code)
			}
			if st == 200 && (f.Int("marked") != tc.marked || f.Int("unread_count") != tc.unread) {
				t.Fatalf("got %v, want marked %d unread %d", f, tc.marked, tc.unread)
			}
		})
	}
	if st, f := gwtest.Do(t, "GET", h.base+"/api/notifications/unread", alice.Token, nil); st != 200 || f.Int("unread_count") != 1 {
		t.Fatalf("alice's unread count: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "GET", h.base+"/api/notifications?before=nope", bob.Token, nil); st != 400 || code(f) != "bad_request" {
		t.Fatalf("bad before: %d %v", st, f)
	}
	// Read ones are not delivered at the next hello; a WebSocket mark-read answers the counts.
	h.insertNotification(t, bob, "general", 9, "dm", "new")
	c2 := gwtest.Dial(t, h.ws, nil)
	c2.Send(map[string]any{"type": "hello", "token": bob.Token, "rooms": map[string]int64{}, "ref": "h"})
	c2.Expect("welcome", "h")
	fresh := c2.Expect("notification")
	if fresh.Str("preview") != "new" {
		t.Fatalf("pending after marking read: %v", fresh)
	}
	c2.Send(map[string]any{"type": "read_notifications", "ids": []string{fresh.Str("notification_id")}, "ref": "m"})
	if f := c2.Expect("notifications_read", "m"); f.Int("marked") != 1 || f.Int("unread_count") != 0 {
		t.Fatalf("notifications_read: %v", f)
	}
	if _, more := c2.Next(func(f gwtest.Frame) bool { return f.Type() == "notification" }, 500*time.Millisecond); more {
		t.Fatal("a read notification was delivered at hello")
	}
}

func TestEdit_delete_permissions_REST_and_WebSocket(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	alice := gwtest.NewAccount(t, h.base, "alice") // creates the room: admin
	bob := gwtest.NewAccount(t, h.base, "bob")
	carol := gwtest.NewAccount(t, h.base, "carol")
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})
	for _, u := range []gwtest.Account{bob, carol} {
		gwtest.Do(t, "POST", h.base+"/api/rooms/general/join", u.Token, nil)
	}
	h.store(t, "general", 1, 3, bob)
	if _, err := h.db.Exec(context.Background(), `INSERT INTO messages (room_id, seq, event_id, kind, sender, sender_name, sent_at)
		VALUES ('general', 4, $1, 'join', $2, 'carol', now())`, uuid.Must(uuid.NewV7()).String(), carol.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Exec(context.Background(), `UPDATE rooms SET last_seq = 4 WHERE id = 'general'`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		acc    gwtest.Account
		method string
		room   string
		seq    string
		body   any
		status int
		code   string
	}{
		{"the author edits", bob, "PATCH", "general", "1", map[string]any{"text": "fixed", "client_msg_id": "e-1"}, 202, ""},
		{"another member may not edit", carol, "PATCH", "general", "1", map[string]any{"text": "mine"}, 403, "forbidden"},
		{"another member may not delete", carol, "DELETE", "general", "2", nil, 403, "forbidden"},
		{"an admin deletes someone else's", alice, "DELETE", "general", "2", nil, 202, ""},
		{"the author deletes", bob, "DELETE", "general", "3", nil, 202, ""},
		{"a join entry is not a message", carol, "DELETE", "general", "4", nil, 400, "bad_request"},
		{"no such seq", bob, "DELETE", "general", "99", nil, 404, "not_found"},
		{"not a seq", bob, "DELETE", "general", "x", nil, 400, "bad_request"},
		{"edit without text", bob, "PATCH", "general", "1", map[string]any{}, 400, "bad_request"},
		{"unknown room", bob, "PATCH", "nowhere", "1", map[string]any{"text": "x"}, 404, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, f := gwtest.Do(t, tc.method, h.base+"/api/rooms/"+tc.room+"/messages/"+tc.seq, tc.acc.Token, tc.body)
			if st != tc.status || code(f) != tc.code {
				t.Fatalf("got %d %v, want %d %s", st, f, tc.status, tc.code)
			}
		})
	}
	// Persistence stores the delete of seq 3; then deleting it again is refused.
	if _, err := h.db.Exec(context.Background(), `UPDATE messages SET deleted_at = now(), text = NULL WHERE room_id = 'general' AND seq = 3`); err != nil {
		t.Fatal(err)
	}
	if st, f := gwtest.Do(t, "DELETE", h.base+"/api/rooms/general/messages/3", alice.Token, nil); st != 409 || code(f) != "conflict" {
		t.Fatalf("second delete: %d %v", st, f)
	}
	c := h.dial(t, bob)
	c.Send(map[string]any{"type": "delete", "room": "general", "client_msg_id": "d-again", "target_seq": 3, "ref": "d"})
	if e := c.Expect("error", "d"); code(e) != "conflict" || e.Str("client_msg_id") != "d-again" {
		t.Fatalf("WebSocket second delete: %v", e)
	}
	c.Send(map[string]any{"type": "edit", "room": "general", "client_msg_id": "e-3", "target_seq": 3, "text": "back", "ref": "e"})
	if e := c.Expect("error", "e"); code(e) != "conflict" {
		t.Fatalf("edit of a deleted message: %v", e)
	}
	cc := h.dial(t, carol)
	cc.Send(map[string]any{"type": "edit", "room": "general", "client_msg_id": "e-x", "target_seq": 1, "text": "hijack", "ref": "x"})
	if e := cc.Expect("error", "x"); code(e) != "forbidden" {
		t.Fatalf("WebSocket edit by another member: %v", e)
	}
	// The accepted changes went to Kafka as message.submitted edit and delete events, after
	// the three joins.
	var kinds []string
	for _, e := range h.readEvents(t, topics.Submitted, "general", 6) {
		for _, k := range []string{"edit", "delete"} {
			if strings.Contains(string(e.Data), `"kind":"`+k+`"`) {
				kinds = append(kinds, k)
			}
		}
	}
	if strings.Join(kinds, ",") != "edit,delete,delete" {
		t.Fatalf("published %v", kinds)
	}
	// History: the deleted message keeps its place and marks but shows no text.
	_, hist := gwtest.Do(t, "GET", h.base+"/api/rooms/general/messages", bob.Token, nil)
	for _, m := range hist["messages"].([]any) {
		if e := m.(map[string]any); e["seq"].(float64) == 3 && (e["deleted_at"] == nil || e["text"] != nil) {
			t.Fatalf("deleted entry in history: %v", e)
		}
	}
}

// countEvents counts the events on a room-keyed topic for key, reading for wait.
func (h *harness) countEvents(t *testing.T, declared, key string, wait time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	name := h.topic(declared)
	md, err := h.env.Client().Metadata(ctx, &kafka.MetadataRequest{Topics: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: h.env.Brokers, Dialer: h.env.ReaderDialer(), Topic: name, Partition: route.PartitionFor(key, len(md.Topics[0].Partitions)), MaxWait: consumer.ReaderMaxWait(200 * time.Millisecond)})
	defer r.Close()
	n := 0
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return n
		}
		if string(m.Key) == key {
			n++
		}
	}
}

func limitedApp(c *app.Config) {
	c.Hub.ConnRate = ratelimit.Rate{PerSecond: 5, Burst: 5}
	c.Hub.FrameRate = ratelimit.Rate{PerSecond: 100, Burst: 100}
	c.UserRate = ratelimit.Rate{PerSecond: 5, Burst: 8}
	c.Hub.AbuseFactor, c.Hub.AbuseWindow = 5, 2*time.Second
	c.LoginAccountRate = ratelimit.Rate{PerSecond: 1.0 / 60, Burst: 3}
	c.LoginAddrRate = ratelimit.Rate{PerSecond: 1.0 / 60, Burst: 12}
}

// Not parallel: the limits refill with time (5 sends a second, typing once in 2 s), so
// what the test expects of a burst assumes the burst is not slowed down by other tests.
func TestRateLimits(t *testing.T) {
	h := start(t, limitedApp)
	alice := gwtest.NewAccount(t, h.base, "alice") // 2 of the address's 12 attempts
	gwtest.Do(t, "POST", h.base+"/api/rooms", alice.Token, map[string]string{"id": "general"})

	t.Run("a burst over the connection limit answers retry_after_ms; every ack is in Kafka", func(t *testing.T) {
		c := h.dial(t, alice)
		for i := range 12 {
			c.Send(map[string]any{"type": "send", "room": "general", "client_msg_id": fmt.Sprint("b-", i), "text": "hi", "ref": fmt.Sprint(i)})
		}
		acked, limited := 0, 0
		for i := range 12 {
			f, ok := c.Next(func(f gwtest.Frame) bool { return f.Str("ref") == fmt.Sprint(i) }, 10*time.Second)
			switch {
			case !ok:
				t.Fatalf("no answer to %d", i)
			case f.Type() == "ack":
				acked++
			case code(f) == "rate_limited" && f.Int("retry_after_ms") > 0 && f.Int("retry_after_ms") <= 1000 && f["retryable"] == true:
				limited++
			default:
				t.Fatalf("answer %d: %v", i, f)
			}
		}
		if acked < 5 || limited == 0 || acked+limited != 12 {
			t.Fatalf("%d acked, %d limited", acked, limited)
		}
		// Nothing accepted is dropped: exactly the acked sends were published.
		evs := h.readEvents(t, topics.Submitted, "general", acked)
		ids := map[string]bool{}
		for _, e := range evs {
			ids[e.ID] = true
		}
		if len(ids) < acked {
			t.Fatalf("%d distinct events for %d acks", len(ids), acked)
		}
	})

	t.Run("REST shares the user's bucket: 429 with Retry-After", func(t *testing.T) {
		var last *http.Response
		for i := range 20 {
			req, _ := http.NewRequest("POST", h.base+"/api/rooms/general/messages", strings.NewReader(fmt.Sprintf(`{"client_msg_id":"r-%d","text":"x"}`, i)))
			req.Header.Set("Authorization", "Bearer "+alice.Token)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode == 429 {
				last = res
				break
			}
		}
		if last == nil || last.Header.Get("Retry-After") == "" {
			t.Fatalf("no 429 with Retry-After: %v", last)
		}
	})

	t.Run("logins per account and per address", func(t *testing.T) {
		gwtest.NewAccount(t, h.base, "bob") // 4 of 12
		login := func(user, pw string) (int, gwtest.Frame) {
			return gwtest.Do(t, "POST", h.base+"/api/login", "", map[string]string{"username": user, "password": pw})
		}
		for i := range 3 {
			if st, f := login("bob", "wrong"); st != 401 {
				t.Fatalf("failure %d: %d %v", i, st, f)
			}
		}
		// Three failures used bob's burst: even the right password waits now.
		st, f := login("bob", "password-bob")
		if st != 429 || code(f) != "rate_limited" || f.Int("retry_after_ms") < 1000 {
			t.Fatalf("fourth attempt: %d %v", st, f)
		}
		// Another account is not affected by bob's failures.
		if st, f := login("alice", "password-alice"); st != 200 {
			t.Fatalf("alice: %d %v", st, f)
		}
		// The address has used 9 of its 12; a few more and it is cut off.
		codes := []int{}
		for range 4 {
			st, _ := login("carol", "whatever")
			codes = append(codes, st)
		}
		if codes[len(codes)-1] != 429 {
			t.Fatalf("address limit never hit: %v", codes)
		}
	})

	t.Run("typing spam is throttled and never answered", func(t *testing.T) {
		c := h.dial(t, alice)
		for range 60 {
			c.Send(map[string]any{"type": "typing", "room": "general"})
		}
		c.Send(map[string]any{"type": "ping", "ref": "p"})
		c.Expect("pong", "p") // still open, and nothing else came back
		if b := c.Buffered(); len(b) != 0 {
			t.Fatalf("typing was answered: %v", b)
		}
		if n := h.countEvents(t, topics.Ephemeral, "general", 2*time.Second); n != 1 {
			t.Fatalf("%d typing signals forwarded for 60 sent within the 2 s interval, want 1", n)
		}
	})

	t.Run("a connection far over its limits is closed with 1008", func(t *testing.T) {
		c := h.dial(t, alice)
		// 5 × (5/s × 2 s + 5) = 75 send attempts in the window are tolerated; a client
		// that ignores the rate_limited answers and keeps going is cut off.
		for i := range 200 {
			frame := fmt.Sprintf(`{"type":"send","room":"general","client_msg_id":"a-%d","text":"x"}`, i)
			if err := c.Conn.Write(context.Background(), websocket.MessageText, []byte(frame)); err != nil {
				break
			}
		}
		if cc := c.WaitClosed(15 * time.Second); cc != 1008 {
			t.Fatalf("close code %d, want 1008", cc)
		}
	})
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	for _, path := range []string{"/api/me", "/", "/healthz"} {
		res, err := http.Get(h.base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		for _, hd := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"} {
			if res.Header.Get(hd) == "" {
				t.Errorf("%s: no %s", path, hd)
			}
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "ws:") {
			t.Errorf("%s: CSP %q does not allow the page's WebSocket", path, csp)
		}
		if strings.HasPrefix(path, "/api/") && res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: API answers must not be cached", path)
		}
	}
}
