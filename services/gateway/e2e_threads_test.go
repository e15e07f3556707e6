package main_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// threadEntry is what a client sees of a timeline entry, for comparing two gateways.
type threadEntry struct {
	seq         int64
	kind        string
	sender      string
	clientMsgID string
	threadRoot  int64
	target      int64
}

// threadTimelineUntil reads the room's message frames on c, in arrival order, up to the
// entry with client_msg_id until.
func threadTimelineUntil(t *testing.T, c *gwtest.Client, room, until string) []threadEntry {
	t.Helper()
	var out []threadEntry
	deadline := time.Now().Add(60 * time.Second)
	for {
		f, ok := c.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("room") == room }, time.Until(deadline))
		if !ok {
			t.Fatalf("timeline of %s: no entry after %v (want up to %s)", room, out, until)
		}
		out = append(out, threadEntry{f.Int("seq"), f.Str("kind"), f.Str("sender_name"), f.Str("client_msg_id"), f.Int("thread_root"), f.Int("target_seq")})
		if f.Str("client_msg_id") == until {
			return out
		}
	}
}

// TestE2E_threads: replies through the whole platform (two gateways, persistence,
// fanout): sent over WebSocket and REST on both gateways, delivered live in room order
// with thread_root on both, a retried reply stored once; bad roots refused with nothing
// stored; thread pages (REST and WebSocket) paged in order; history roots carry the
// summary with per-user unread counts, which a thread read marker clears; deleting a
// reply lowers the count.
func TestE2E_threads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform")
	}
	s := startStack(t)
	alice := gwtest.NewAccount(t, s.a, "alice")
	bob := gwtest.NewAccount(t, s.b, "bob")
	carol := gwtest.NewAccount(t, s.b, "carol") // never joins
	if st, f := gwtest.Do(t, "POST", s.a+"/api/rooms", alice.Token, map[string]string{"id": "talk"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "POST", s.b+"/api/rooms/talk/join", bob.Token, nil); st != 200 {
		t.Fatalf("join: %d %v", st, f)
	}
	ca := hello(t, s.wsA, alice, map[string]int64{"talk": 0}, nil)
	cb := hello(t, s.wsB, bob, map[string]int64{"talk": 0}, nil)
	sendAll(t, ca, "talk", "m", 2, "root ") // seq 3 and 4, after the two joins
	const root, other = 3, 4
	// An ack means published, not stored: the gateway reads a reply's root from the
	// database, so wait until both roots have come back from persistence.
	headA := threadTimelineUntil(t, ca, "talk", "m-1")
	headB := threadTimelineUntil(t, cb, "talk", "m-1")

	// reply sends a reply over WebSocket and returns the answer to it.
	reply := func(c *gwtest.Client, id string, to int64) gwtest.Frame {
		t.Helper()
		c.Send(map[string]any{"type": "send", "room": "talk", "client_msg_id": id, "text": "re " + id, "thread_root": to, "ref": id})
		f, _ := c.Next(func(f gwtest.Frame) bool { return f.Str("ref") == id }, 30*time.Second)
		return f
	}
	accepted := func(f gwtest.Frame) {
		t.Helper()
		if f.Type() != "ack" {
			t.Fatalf("reply not acknowledged: %v", f)
		}
	}
	refused := func(what string, f gwtest.Frame, code string) {
		t.Helper()
		if f.Type() != "error" || f.Str("code") != code {
			t.Fatalf("%s: got %v, want error %s", what, f, code)
		}
	}
	restReply := func(base string, acc gwtest.Account, id string, to int64) (int, gwtest.Frame) {
		t.Helper()
		return gwtest.Do(t, "POST", base+"/api/rooms/talk/messages", acc.Token,
			map[string]any{"client_msg_id": id, "text": "re " + id, "thread_root": to})
	}

	// Replies from both gateways, over WebSocket and REST, a plain message between them and
	// a retry of r1 that must be stored once. Each waits for its ack, so this is the order
	// they reach the room's partition.
	accepted(reply(cb, "r1", root))
	accepted(reply(ca, "r2", root))
	sendAll(t, ca, "talk", "mid", 1, "plain ")
	if st, f := restReply(s.b, bob, "r3", root); st != 202 {
		t.Fatalf("REST reply: %d %v", st, f)
	}
	accepted(reply(cb, "r1", root))
	accepted(reply(ca, "r4", other))

	// Refusals, before anything is published.
	refused("reply to a join", reply(ca, "bad", 1), "bad_request")
	refused("reply to a missing seq", reply(ca, "bad", 999), "not_found")
	refused("negative thread_root", reply(ca, "bad", -1), "bad_request")
	cc := hello(t, s.wsB, carol, map[string]int64{}, nil)
	refused("non-member", reply(cc, "outsider", root), "forbidden")
	if st, f := restReply(s.b, carol, "outsider", root); st != 403 || f.Str("code") != "forbidden" {
		t.Fatalf("REST non-member: %d %v", st, f)
	}

	// A last message marks the end: everything accepted before it is stored before it.
	sendAll(t, ca, "talk", "end", 1, "the end ")
	ea := append(headA, threadTimelineUntil(t, ca, "talk", "end-0")...)
	eb := append(headB, threadTimelineUntil(t, cb, "talk", "end-0")...)
	if !slices.Equal(ea, eb) {
		t.Fatalf("gateways disagree:\nA %v\nB %v", ea, eb)
	}
	seqOf := map[string]int64{}
	var replies []threadEntry
	for i, e := range ea {
		if e.seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d: %v", i, e.seq, ea)
		}
		seqOf[e.clientMsgID] = e.seq
		if e.threadRoot != 0 {
			e.seq = 0 // compared below by order
			replies = append(replies, e)
		}
	}
	wantReplies := []threadEntry{
		{kind: "message", sender: "bob", clientMsgID: "r1", threadRoot: root},
		{kind: "message", sender: "alice", clientMsgID: "r2", threadRoot: root},
		{kind: "message", sender: "bob", clientMsgID: "r3", threadRoot: root},
		{kind: "message", sender: "alice", clientMsgID: "r4", threadRoot: other},
	}
	if !slices.Equal(replies, wantReplies) {
		t.Fatalf("replies:\n got %v\nwant %v", replies, wantReplies)
	}
	refused("reply to a reply", reply(cb, "bad", seqOf["r1"]), "bad_request")

	// The thread, through the other gateway, in pages of two.
	threadPage := func(base string, acc gwtest.Account, query string) gwtest.Frame {
		t.Helper()
		st, f := gwtest.Do(t, "GET", base+fmt.Sprintf("/api/rooms/talk/threads/%d%s", root, query), acc.Token, nil)
		if st != 200 {
			t.Fatalf("thread page %s: %d %v", query, st, f)
		}
		return f
	}
	pageSeqs := func(f gwtest.Frame) []int64 {
		var out []int64
		for _, m := range f["messages"].([]any) {
			m := gwtest.Frame(m.(map[string]any))
			if m.Int("thread_root") != root {
				t.Fatalf("thread page holds %v", m)
			}
			out = append(out, m.Int("seq"))
		}
		return out
	}
	p1 := threadPage(s.b, alice, "?limit=2")
	if got, want := pageSeqs(p1), []int64{seqOf["r1"], seqOf["r2"]}; !slices.Equal(got, want) || p1["has_more"] != true {
		t.Fatalf("first page: %v has_more %v, want %v and more", got, p1["has_more"], want)
	}
	p2 := threadPage(s.b, alice, fmt.Sprintf("?limit=2&after=%d", seqOf["r2"]))
	if got, want := pageSeqs(p2), []int64{seqOf["r3"]}; !slices.Equal(got, want) || p2["has_more"] != false {
		t.Fatalf("second page: %v has_more %v, want %v and no more", got, p2["has_more"], want)
	}
	summary := func(m any) string {
		th, _ := gwtest.Frame(m.(map[string]any))["thread"].(map[string]any)
		if th == nil {
			return "none"
		}
		return fmt.Sprintf("count=%v last_seq=%v participant=%v unread=%v last_reply_at_set=%v",
			th["reply_count"], th["last_seq"], th["participant"], th["unread"], th["last_reply_at"] != nil)
	}
	// alice replied (r2) after bob's r1: only bob's r3 is unread for her.
	if got, want := summary(p1["root"]), fmt.Sprintf("count=3 last_seq=%d participant=true unread=1 last_reply_at_set=true", seqOf["r3"]); got != want {
		t.Fatalf("alice's root summary: %s, want %s", got, want)
	}
	// Over WebSocket on gateway B, for bob: the same replies; nothing unread after his r3.
	cb.Send(map[string]any{"type": "thread", "room": "talk", "root": root, "ref": "th"})
	tf := cb.Expect("thread", "th")
	if got, want := pageSeqs(tf), []int64{seqOf["r1"], seqOf["r2"], seqOf["r3"]}; !slices.Equal(got, want) {
		t.Fatalf("bob's thread frame: %v, want %v", got, want)
	}
	if got := summary(tf["root"]); got != fmt.Sprintf("count=3 last_seq=%d participant=true unread=0 last_reply_at_set=true", seqOf["r3"]) {
		t.Fatalf("bob's root summary: %s", got)
	}

	// History roots carry the summary; replies and other entries do not.
	historySummaries := func(acc gwtest.Account) map[int64]string {
		t.Helper()
		st, f := gwtest.Do(t, "GET", s.a+"/api/rooms/talk/messages", acc.Token, nil)
		if st != 200 {
			t.Fatalf("history: %d %v", st, f)
		}
		out := map[int64]string{}
		for _, m := range f["messages"].([]any) {
			if sm := summary(m); sm != "none" {
				out[gwtest.Frame(m.(map[string]any)).Int("seq")] = sm
			}
		}
		return out
	}
	if got := historySummaries(alice); len(got) != 2 || got[root] == "" || got[other] == "" {
		t.Fatalf("alice's history summaries: %v", got)
	}

	// alice reads the thread up to r3 (WebSocket, gateway A): nothing unread, and history
	// says so; a seq past the thread's last reply is refused, not clamped.
	ca.Send(map[string]any{"type": "thread_read", "room": "talk", "root": root, "seq": seqOf["r3"], "ref": "tr"})
	if f := ca.Expect("thread_read", "tr"); f.Int("seq") != seqOf["r3"] || f.Int("unread") != 0 {
		t.Fatalf("thread_read: %v", f)
	}
	ca.Send(map[string]any{"type": "thread_read", "room": "talk", "root": root, "seq": 9999, "ref": "tr2"})
	refused("thread_read past the end", ca.Expect("error", "tr2"), "bad_request")
	if got := historySummaries(alice)[root]; got != fmt.Sprintf("count=3 last_seq=%d participant=true unread=0 last_reply_at_set=true", seqOf["r3"]) {
		t.Fatalf("alice's summary after thread_read: %s", got)
	}
	// carol, outside the room, cannot read the thread.
	if st, f := gwtest.Do(t, "GET", s.b+fmt.Sprintf("/api/rooms/talk/threads/%d", root), carol.Token, nil); st != 403 {
		t.Fatalf("carol's thread page: %d %v", st, f)
	}

	// Deleting a reply lowers the count.
	cb.Send(map[string]any{"type": "delete", "room": "talk", "client_msg_id": "del", "target_seq": seqOf["r1"], "ref": "del"})
	cb.Expect("ack", "del")
	if _, ok := ca.Next(func(f gwtest.Frame) bool { return f.Str("kind") == "delete" && f.Int("target_seq") == seqOf["r1"] }, 30*time.Second); !ok {
		t.Fatal("the delete was not delivered")
	}
	if got := summary(threadPage(s.a, bob, "")["root"]); got != fmt.Sprintf("count=2 last_seq=%d participant=true unread=0 last_reply_at_set=true", seqOf["r3"]) {
		t.Fatalf("summary after deleting r1: %s", got)
	}
}
