package main_test

import (
	"context"
	"fmt"
	"os/exec"
	"path"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/pkg/topics"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// platform is every service as a real process, notification included, with presence
// timers short enough for a test: heartbeats every 500 ms, a gateway dead after 3 s.
type platform struct {
	t          *testing.T // the test the processes live as long as
	env        *stacktest.Env
	dbURL      string
	pool       *pgxpool.Pool
	names      func(string) string
	bins       map[string]string
	common     []string
	a, b       string // gateway base URLs
	wsA, wsB   string
	gwA        *stacktest.Process
	fanout     *stacktest.Process
	notif      *stacktest.Process
	notifGroup string
	notifAddr  string
}

const presenceExpiry = 3 * time.Second

func startPlatform(t *testing.T) *platform {
	t.Helper()
	env := stacktest.Get(t)
	p := &platform{t: t, env: env, dbURL: env.NewDatabase(t), names: env.Topics(t), bins: map[string]string{}}
	var err error
	if p.pool, err = pgxpool.New(context.Background(), p.dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.pool.Close)
	for _, svc := range []string{"services/persistence", "services/fanout", "services/gateway", "services/notification", "tools/chatctl"} {
		p.bins[path.Base(svc)] = env.Build(t, "./"+svc)
	}
	p.common = []string{"-brokers", strings.Join(env.Brokers, ","), "-topic-prefix", p.names("")}
	var ready []string
	addr := func() string {
		a := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
		ready = append(ready, "http://"+a+"/readyz")
		return a
	}
	env.Start(t, "persistence", p.bins["persistence"], nil, append(p.common, "-database-url", p.dbURL, "-http-addr", addr())...)
	p.fanout = env.Start(t, "fanout", p.bins["fanout"], nil, append(p.common, "-http-addr", addr(), "-start-offset", "first",
		"-group", stacktest.UniqueName("fanout-"))...)
	for _, gw := range []struct {
		id   string
		base *string
		ws   *string
		proc **stacktest.Process
	}{{"gw-a", &p.a, &p.wsA, &p.gwA}, {"gw-b", &p.b, &p.wsB, nil}} {
		a := addr()
		*gw.base, *gw.ws = "http://"+a, "ws://"+a+"/ws"
		// Default rate limits: the binary's own defaults are what is tested here.
		proc := env.Start(t, gw.id, p.bins["gateway"], nil, append(p.common, "-id", gw.id, "-addr", a, "-database-url", p.dbURL,
			"-presence-interval", "500ms", "-presence-expiry", presenceExpiry.String(), "-log-level", "info")...)
		if gw.proc != nil {
			*gw.proc = proc
		}
	}
	for _, u := range ready {
		stacktest.WaitHTTP(t, u, 2*time.Minute)
	}
	p.notifGroup = stacktest.UniqueName("notification-")
	p.startNotification("notification")
	return p
}

// startNotification starts (or restarts) the notification service under the test's group.
// It runs until the whole test ends, whichever subtest started it.
func (p *platform) startNotification(name string) {
	p.t.Helper()
	a := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(p.t))
	p.notifAddr = "http://" + a
	p.notif = p.env.Start(p.t, name, p.bins["notification"], nil, append(p.common, "-database-url", p.dbURL, "-http-addr", a,
		"-group", p.notifGroup, "-start-offset", "first", "-presence-expiry", presenceExpiry.String())...)
	stacktest.WaitHTTP(p.t, "http://"+a+"/readyz", 2*time.Minute)
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

func (p *platform) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := p.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// poll is count for waitFor conditions: an error (the shared database restarting under
// another package's fault test) counts as "not yet" instead of failing the test.
func (p *platform) poll(sql string, args ...any) int {
	var n int
	if err := p.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		return -1
	}
	return n
}

// notificationsOf lists a user's notifications over REST (which does not make them online).
func notificationsOf(t *testing.T, base string, acc gwtest.Account) []map[string]any {
	t.Helper()
	st, f := gwtest.Do(t, "GET", base+"/api/notifications?limit=200", acc.Token, nil)
	if st != 200 {
		t.Fatalf("notifications: %d %v", st, f)
	}
	var out []map[string]any
	for _, n := range f["notifications"].([]any) {
		out = append(out, n.(map[string]any))
	}
	return out
}

// onlineOn reports user's connection count as the users list of base shows it (0: offline).
func onlineOn(t *testing.T, base string, asker gwtest.Account, user string) int64 {
	t.Helper()
	_, f := gwtest.Do(t, "GET", base+"/api/users", asker.Token, nil)
	us, _ := f["users"].([]any)
	for _, u := range us {
		if m := u.(map[string]any); m["username"] == user {
			return int64(m["connections"].(float64))
		}
	}
	return 0
}

// resetGroup moves a stopped consumer group back to the start of topic: the next member
// gets every event again, as after an operator's offset reset or a lost commit.
func resetGroup(t *testing.T, env *stacktest.Env, group, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := env.Client()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	var commits []kafka.OffsetCommit
	for _, part := range md.Topics[0].Partitions {
		commits = append(commits, kafka.OffsetCommit{Partition: part.ID, Offset: 0})
	}
	for {
		// An empty group accepts commits outside any generation (-1). Right after its last
		// member left the coordinator may still be rebalancing; retry until it settles.
		res, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{topic: commits}})
		ok := err == nil
		if ok {
			for _, ps := range res.Topics[topic] {
				if ps.Error != nil {
					ok, err = false, ps.Error
				}
			}
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("cannot reset group %s: %v", group, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func TestE2E_notifications_presence_reads_edits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform")
	}
	p := startPlatform(t)
	alice := gwtest.NewAccount(t, p.a, "alice") // creates lobby: admin
	bob := gwtest.NewAccount(t, p.b, "bob")
	carol := gwtest.NewAccount(t, p.b, "carol")
	if st, f := gwtest.Do(t, "POST", p.a+"/api/rooms", alice.Token, map[string]string{"id": "lobby"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	for _, u := range []gwtest.Account{bob, carol} {
		if st, f := gwtest.Do(t, "POST", p.b+"/api/rooms/lobby/join", u.Token, nil); st != 200 {
			t.Fatalf("join: %d %v", st, f)
		}
	}
	ca := hello(t, p.wsA, alice, nil, nil)
	waitFor(t, 60*time.Second, "alice sees her join entries", func() bool { return lastSeq(t, p.a, alice.Token, "lobby") >= 3 })

	t.Run("a DM and a mention to an offline user: one notification each, seen at login, marked read", func(t *testing.T) {
		ca.Send(map[string]any{"type": "dm", "to": "bob", "client_msg_id": "dm-1", "text": "are you there, bob?", "ref": "dm"})
		if a := ca.Expect("ack", "dm"); a.Str("status") != "accepted" {
			t.Fatalf("dm: %v", a)
		}
		// A mention of a user who does not exist is no error and notifies nobody.
		ca.Send(map[string]any{"type": "send", "room": "lobby", "client_msg_id": "m-1", "text": "hi @bob, and @ghost", "ref": "m"})
		if a := ca.Expect("ack", "m"); a.Str("status") != "accepted" {
			t.Fatalf("mention: %v", a)
		}
		waitFor(t, 90*time.Second, "bob's two notifications", func() bool { return len(notificationsOf(t, p.b, bob)) >= 2 })
		time.Sleep(time.Second) // nothing more may come
		ns := notificationsOf(t, p.b, bob)
		reasons := []string{}
		for _, n := range ns {
			reasons = append(reasons, n["reason"].(string))
		}
		slices.Sort(reasons)
		if strings.Join(reasons, ",") != "dm,mention" {
			t.Fatalf("bob's notifications: %v", ns)
		}
		if n := notificationsOf(t, p.b, carol); len(n) != 0 {
			t.Fatalf("carol was notified: %v", n)
		}

		// The same events again (the group's offsets reset to the start): nothing new.
		p.notif.Stop(30 * time.Second)
		resetGroup(t, p.env, p.notifGroup, p.names(topics.Stored))
		p.startNotification("notification-redelivered")
		waitFor(t, 2*time.Minute, "the redelivered events handled", func() bool {
			return groupBehind(t, p.env, p.notifGroup, p.names(topics.Stored)) == 0
		})
		if m := metric(t, p.notifAddr, `kchat_notification_duplicates_skipped_total{kind="event"}`); m == "" ||
			strings.HasSuffix(m, " 0") {
			t.Fatalf("the restarted service saw no redelivered events: %q", m)
		}
		if got := p.count(t, `SELECT count(*) FROM notifications WHERE user_id = $1`, bob.ID); got != 2 {
			t.Fatalf("after redelivery bob has %d notifications", got)
		}
		if got := p.count(t, `SELECT count(*) FROM notifications`); got != 2 {
			t.Fatalf("after redelivery %d notifications in all", got)
		}

		// Bob logs in: both arrive as pending notification frames; he marks them read.
		cb := hello(t, p.wsB, bob, map[string]int64{}, nil)
		// (Seen online from the other gateway, so that the next subtest's wait for him to be
		// offline there means something.)
		waitFor(t, 60*time.Second, "bob online as gw-a sees it", func() bool { return onlineOn(t, p.a, alice, "bob") == 1 })
		var ids []string
		for range 2 {
			f := cb.Expect("notification")
			if f["pending"] != true {
				t.Fatalf("login notification: %v", f)
			}
			ids = append(ids, f.Str("notification_id"))
		}
		cb.Send(map[string]any{"type": "read_notifications", "ids": append(ids, "0193b2c4-0000-7000-8000-00000000dead"), "ref": "r"})
		if f := cb.Expect("notifications_read", "r"); f.Int("marked") != 2 || f.Int("unread_count") != 0 {
			t.Fatalf("mark read: %v", f)
		}
		if _, f := gwtest.Do(t, "GET", p.a+"/api/notifications/unread", bob.Token, nil); f.Int("unread_count") != 0 {
			t.Fatalf("unread after marking: %v", f)
		}
		_ = cb.Conn.CloseNow()
	})

	t.Run("a notification created while the user was away arrives live when they connect", func(t *testing.T) {
		waitFor(t, 60*time.Second, "bob offline", func() bool { return onlineOn(t, p.a, alice, "bob") == 0 })
		// Fanout sends notifications to the gateways that have any subscription; a gateway
		// announces one (the _users pseudo-room) while anyone is connected to it. carol keeps
		// gw-b in fanout's table, so that whether bob's own connection is announced before
		// fanout handles the notification does not matter.
		keep := gwtest.Dial(t, p.wsB, nil)
		keep.Send(map[string]any{"type": "auth", "token": carol.Token, "ref": "a"})
		keep.Expect("welcome", "a")
		// The notification service follows the presence topic with its own reader, which
		// may apply a record a fetch (up to 500 ms) later than gw-a's; fanout reads
		// chat.subscriptions as promptly.
		time.Sleep(2 * time.Second)
		// Fanout is held so that the notification is stored before bob connects and is
		// forwarded after: the live path, not the login path, must deliver it.
		p.fanout.Signal(syscall.SIGSTOP)
		resumed := false
		defer func() {
			if !resumed {
				p.fanout.Signal(syscall.SIGCONT)
			}
		}()
		ca.Send(map[string]any{"type": "dm", "to": "bob", "client_msg_id": "dm-2", "text": "ping", "ref": "dm2"})
		ca.Expect("ack", "dm2")
		waitFor(t, 90*time.Second, "the third notification stored", func() bool {
			return p.poll(`SELECT count(*) FROM notifications WHERE user_id = $1`, bob.ID) == 3
		})
		// auth only: no login delivery of pending notifications.
		cb := gwtest.Dial(t, p.wsB, nil)
		cb.Send(map[string]any{"type": "auth", "token": bob.Token, "ref": "a"})
		cb.Expect("welcome", "a")
		p.fanout.Signal(syscall.SIGCONT)
		resumed = true
		f, ok := cb.Next(func(f gwtest.Frame) bool { return f.Type() == "notification" }, 60*time.Second)
		if !ok || f.Str("reason") != "dm" || f["pending"] == true || f.Str("preview") != "ping" {
			t.Fatalf("live notification: %v %v", ok, f)
		}
		_ = cb.Conn.CloseNow()
		_ = keep.Conn.CloseNow()
	})

	t.Run("unread counts across gateways and reconnects", func(t *testing.T) {
		// carol has not read lobby: alice's mention is unread for her (joins are not).
		cc := hello(t, p.wsA, carol, nil, nil)
		cc.Send(map[string]any{"type": "rooms", "ref": "r"})
		lobby := roomOf(t, cc.Expect("rooms", "r"), "lobby")
		last := int64(lobby["last_seq"].(float64))
		if lobby["unread"].(float64) != 1 {
			t.Fatalf("carol's lobby on gw-a: %v", lobby)
		}
		cc.Send(map[string]any{"type": "read", "room": "lobby", "seq": last, "ref": "read"})
		if f := cc.Expect("read", "read"); f.Int("unread") != 0 {
			t.Fatalf("read: %v", f)
		}
		if st, f := gwtest.Do(t, "POST", p.b+"/api/rooms/lobby/read", carol.Token, map[string]any{"seq": last + 1000}); st != 400 || f.Str("code") != "bad_request" {
			t.Fatalf("read past the end: %d %v", st, f)
		}
		_, f := gwtest.Do(t, "GET", p.b+"/api/rooms", carol.Token, nil)
		if r := roomOf(t, f, "lobby"); r["unread"].(float64) != 0 || int64(r["last_read_seq"].(float64)) != last {
			t.Fatalf("gw-b after reading on gw-a: %v", r)
		}
		_ = cc.Conn.CloseNow()
		sendAll(t, ca, "lobby", "u", 2, "more ")
		waitFor(t, 60*time.Second, "two new entries", func() bool { return lastSeq(t, p.a, alice.Token, "lobby") >= last+2 })
		// carol reconnects, to the other gateway: two unread.
		cc2 := hello(t, p.wsB, carol, nil, nil)
		cc2.Send(map[string]any{"type": "rooms", "ref": "r"})
		if r := roomOf(t, cc2.Expect("rooms", "r"), "lobby"); r["unread"].(float64) != 2 {
			t.Fatalf("after reconnecting on gw-b: %v", r)
		}
		_ = cc2.Conn.CloseNow()
	})

	t.Run("edit and delete: author and admin may, another member may not; history and live", func(t *testing.T) {
		cb := hello(t, p.wsB, bob, map[string]int64{}, nil)
		cc := hello(t, p.wsA, carol, map[string]int64{"lobby": lastSeq(t, p.a, alice.Token, "lobby")}, nil)
		cb.Send(map[string]any{"type": "send", "room": "lobby", "client_msg_id": "orig", "text": "teh original", "ref": "o"})
		cb.Expect("ack", "o")
		orig, ok := cc.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("client_msg_id") == "orig" }, 60*time.Second)
		if !ok {
			t.Fatal("the original never arrived")
		}
		seq := orig.Int("seq")
		cc.Send(map[string]any{"type": "edit", "room": "lobby", "client_msg_id": "hijack", "target_seq": seq, "text": "carol was here", "ref": "x"})
		if e := cc.Expect("error", "x"); e.Str("code") != "forbidden" {
			t.Fatalf("carol's edit: %v", e)
		}
		cb.Send(map[string]any{"type": "edit", "room": "lobby", "client_msg_id": "fix", "target_seq": seq, "text": "the original", "ref": "e"})
		cb.Expect("ack", "e")
		edit, ok := cc.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("kind") == "edit" }, 60*time.Second)
		if !ok || edit.Int("target_seq") != seq || edit.Str("text") != "the original" || edit.Int("seq") != seq+1 {
			t.Fatalf("live edit: %v", edit)
		}
		ca.Send(map[string]any{"type": "delete", "room": "lobby", "client_msg_id": "mod", "target_seq": seq, "ref": "d"})
		ca.Expect("ack", "d")
		del, ok := cc.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("kind") == "delete" }, 60*time.Second)
		if !ok || del.Int("target_seq") != seq || del.Str("sender_name") != "alice" || del.Int("seq") != seq+2 {
			t.Fatalf("live delete: %v", del)
		}
		cb.Send(map[string]any{"type": "delete", "room": "lobby", "client_msg_id": "again", "target_seq": seq, "ref": "d2"})
		if e := cb.Expect("error", "d2"); e.Str("code") != "conflict" {
			t.Fatalf("second delete: %v", e)
		}
		_, h := gwtest.Do(t, "GET", fmt.Sprintf("%s/api/rooms/lobby/messages?after=%d", p.b, seq-1), carol.Token, nil)
		ms := h["messages"].([]any)
		target := ms[0].(map[string]any)
		if target["edited_at"] == nil || target["deleted_at"] == nil || target["text"] != nil {
			t.Fatalf("history of the deleted message: %v", target)
		}
		if len(ms) < 3 || ms[1].(map[string]any)["kind"] != "edit" || ms[2].(map[string]any)["kind"] != "delete" {
			t.Fatalf("history: %v", ms)
		}
		_ = cb.Conn.CloseNow()
		_ = cc.Conn.CloseNow()
	})

	t.Run("rate limit: a burst is answered with retry_after_ms, every ack is stored", func(t *testing.T) {
		erin := gwtest.NewAccount(t, p.a, "erin")
		gwtest.Do(t, "POST", p.a+"/api/rooms", erin.Token, map[string]string{"id": "burst"})
		ce := hello(t, p.wsA, erin, map[string]int64{}, nil)
		// A connection's frames are handled one after the other, and a send waits for
		// Kafka's acks=all, so how many of a burst of real sends fit the default limit
		// (10/s, burst 20) depends on this machine's publish latency. Cheap frames that
		// count the same (edits of a seq that does not exist) empty the bucket for sure.
		answers := func(prefix string, n int) (acked, limited, other int, wait int64) {
			for i := range n {
				f, ok := ce.Next(func(f gwtest.Frame) bool { return f.Str("ref") == fmt.Sprint(prefix, i) }, 60*time.Second)
				switch {
				case !ok:
					t.Fatalf("no answer to %s%d", prefix, i)
				case f.Type() == "ack":
					acked++
				case f.Str("code") == "rate_limited" && f.Int("retry_after_ms") > 0 && f["retryable"] == true:
					limited++
					wait = f.Int("retry_after_ms")
				case f.Str("code") == "not_found":
					// The cheap edits' target does not exist: they were not limited.
				case f.Str("code") == "unavailable" && f["retryable"] == true:
					// Kafka refused the write (another package's fault test may be holding a
					// broker down): not accepted, so not stored either; counted as neither.
				default:
					t.Logf("unexpected answer to %s%d: %v", prefix, i, f)
					other++
				}
			}
			return
		}
		const n = 40
		for i := range n {
			ce.Send(map[string]any{"type": "send", "room": "burst", "client_msg_id": fmt.Sprint("b", i), "text": "x", "ref": fmt.Sprint("s", i)})
		}
		acked, limited, other, _ := answers("s", n)
		if other != 0 || acked == 0 {
			t.Fatalf("real sends: %d acked, %d rate_limited, %d other", acked, limited, other)
		}
		for i := range n {
			ce.Send(map[string]any{"type": "edit", "room": "burst", "client_msg_id": fmt.Sprint("e", i), "target_seq": 999999, "text": "x", "ref": fmt.Sprint("e", i)})
		}
		_, limitedEdits, _, wait := answers("e", n)
		if limitedEdits == 0 || wait > 1000 {
			t.Fatalf("a burst of %d edits was not limited (retry_after_ms %d)", n, wait)
		}
		// Retrying after retry_after_ms succeeds, when nothing was sent after the refusal:
		// an edit of the burst answered after its last refusal may have taken the token
		// that refusal's wait promised, so probe one edit at a time until one is refused.
		wait = 0
		for i := 0; wait == 0; i++ {
			if i == 10 {
				t.Fatal("ten edits in a row, one at a time, right after a burst: none was limited")
			}
			ref := fmt.Sprint("p", i)
			ce.Send(map[string]any{"type": "edit", "room": "burst", "client_msg_id": ref, "target_seq": 999999, "text": "x", "ref": ref})
			f, ok := ce.Next(func(f gwtest.Frame) bool { return f.Str("ref") == ref }, 60*time.Second)
			if !ok {
				t.Fatalf("no answer to %s", ref)
			}
			if f.Str("code") == "rate_limited" {
				wait = f.Int("retry_after_ms")
			}
		}
		time.Sleep(time.Duration(wait) * time.Millisecond)
		ce.Send(map[string]any{"type": "send", "room": "burst", "client_msg_id": "after", "text": "x", "ref": "after"})
		if a := ce.Expect("ack", "after"); a.Str("status") != "accepted" {
			t.Fatalf("retry after retry_after_ms: %v", a)
		}
		acked++
		// Nothing accepted is dropped: every ack is a stored message, and nothing else is.
		waitFor(t, 90*time.Second, "every accepted message stored", func() bool {
			return p.poll(`SELECT count(*) FROM messages WHERE room_id = 'burst' AND kind = 'message'`) >= acked
		})
		time.Sleep(time.Second)
		if got := p.count(t, `SELECT count(*) FROM messages WHERE room_id = 'burst' AND kind = 'message'`); got != acked {
			t.Fatalf("%d stored for %d acks", got, acked)
		}
		t.Logf("burst of %d sends: %d accepted, %d rate_limited; burst of %d cheap frames: %d rate_limited (retry_after_ms %d)",
			n, acked-1, limited, n, limitedEdits, wait)
	})

	t.Run("notification lag and rebuild from the log", func(t *testing.T) {
		// dave is offline and mentioned 100 times, at a rate the limits allow.
		dave := gwtest.NewAccount(t, p.b, "dave")
		gwtest.Do(t, "POST", p.b+"/api/rooms/lobby/join", dave.Token, nil)
		for i := range 100 {
			id := fmt.Sprint("lag-", i)
			ca.Send(map[string]any{"type": "send", "room": "lobby", "client_msg_id": id, "text": "@dave " + id, "ref": id})
			ca.Expect("ack", id)
			time.Sleep(110 * time.Millisecond)
		}
		waitFor(t, 2*time.Minute, "100 mentions of dave", func() bool {
			return p.poll(`SELECT count(*) FROM notifications WHERE user_id = $1`, dave.ID) == 100
		})
		rows, err := p.pool.Query(context.Background(), `SELECT n.created_at - m.stored_at FROM notifications n
			JOIN messages m ON m.room_id = n.room_id AND m.seq = n.seq WHERE n.user_id = $1`, dave.ID)
		if err != nil {
			t.Fatal(err)
		}
		var lags []time.Duration
		for rows.Next() {
			var d time.Duration
			if err := rows.Scan(&d); err != nil {
				t.Fatal(err)
			}
			lags = append(lags, d)
		}
		rows.Close()
		t.Logf("notification lag, message stored -> notification row (n=%d): p50 %v, p99 %v, max %v",
			len(lags), percentile(lags, 0.5), percentile(lags, 0.99), percentile(lags, 1))

		cmd := exec.Command(p.bins["chatctl"], "rebuild", "notifications")
		cmd.Env = p.env.Environ("KAFKA_BROKERS="+strings.Join(p.env.Brokers, ","), "TOPIC_PREFIX="+p.names(""), "DATABASE_URL="+p.dbURL)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "no differences") {
			t.Fatalf("chatctl rebuild notifications: %v\n%s", err, out)
		}
		t.Logf("chatctl rebuild notifications in %s:\n%s", time.Since(start).Round(time.Millisecond), out)
	})

	t.Run("presence: two tabs on two gateways", func(t *testing.T) {
		frank := gwtest.NewAccount(t, p.a, "frank")
		tabA := hello(t, p.wsA, frank, map[string]int64{}, nil)
		tabB := hello(t, p.wsB, frank, map[string]int64{}, nil)
		waitFor(t, 10*time.Second, "two connections seen from gw-a", func() bool { return onlineOn(t, p.a, alice, "frank") == 2 })
		_ = tabA.Conn.Close(1000, "")
		waitFor(t, 10*time.Second, "one connection left", func() bool { return onlineOn(t, p.a, alice, "frank") == 1 })
		time.Sleep(2 * presenceExpiry) // still online, well past any expiry: the other tab lives
		if n := onlineOn(t, p.a, alice, "frank"); n != 1 {
			t.Fatalf("frank with one tab open shows %d connections on gw-a", n)
		}
		_ = tabB.Conn.Close(1000, "")
		took := waitFor(t, 10*time.Second, "offline after the last tab", func() bool { return onlineOn(t, p.a, alice, "frank") == 0 })
		t.Logf("offline %s after the last tab closed", took.Round(time.Millisecond))
	})

	t.Run("a killed gateway's users go offline after the heartbeat expiry", func(t *testing.T) {
		gina := gwtest.NewAccount(t, p.a, "gina")
		hello(t, p.wsA, gina, map[string]int64{}, nil)
		waitFor(t, 10*time.Second, "gina online on gw-b's view", func() bool { return onlineOn(t, p.b, bob, "gina") == 1 })
		p.gwA.Kill()
		took := waitFor(t, 4*presenceExpiry, "gina offline after gw-a died", func() bool { return onlineOn(t, p.b, bob, "gina") == 0 })
		t.Logf("gina offline %s after SIGKILL of gw-a (expiry %s)", took.Round(time.Millisecond), presenceExpiry)
		if took < presenceExpiry/2 {
			t.Fatalf("offline after %s: sooner than a heartbeat expiry can explain", took)
		}
		// The notification service sees it too: a DM to gina now notifies her.
		cb := hello(t, p.wsB, bob, map[string]int64{}, nil)
		cb.Send(map[string]any{"type": "dm", "to": "gina", "client_msg_id": "to-gina", "text": "you dropped", "ref": "g"})
		cb.Expect("ack", "g")
		waitFor(t, 90*time.Second, "gina notified", func() bool { return len(notificationsOf(t, p.b, gina)) == 1 })
	})
}

// groupBehind is how many records of topic group has not committed (-1: unknown yet).
func groupBehind(t *testing.T, env *stacktest.Env, group, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := env.Client()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		return -1
	}
	var parts []int
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		parts = append(parts, p.ID)
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	lo, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return -1
	}
	ends := map[int]int64{}
	for _, po := range lo.Topics[topic] {
		ends[po.Partition] = po.LastOffset
	}
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return -1
	}
	behind := int64(0)
	for _, p := range res.Topics[topic] {
		if end := ends[p.Partition]; end > 0 && p.CommittedOffset < end {
			behind += end - p.CommittedOffset
		}
	}
	return behind
}

// roomOf returns the entry of room in a rooms answer.
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
