package main_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kchat/kchat/pkg/stacktest"
	"github.com/kchat/kchat/services/gateway/internal/gwtest"
)

// stack is the whole platform as real processes: persistence, fanout and two gateways.
type stack struct {
	env    *stacktest.Env
	a, b   string // gateway base URLs
	wsA    string
	wsB    string
	prefix string
	fanout *stacktest.Process
	// files is the attachments' directory both gateways share (their blob store).
	files string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	env := stacktest.Get(t)
	db := env.NewDatabase(t)
	topic := env.Topics(t)
	prefix := topic("")
	brokers := strings.Join(env.Brokers, ",")
	bins := map[string]string{}
	for _, svc := range []string{"persistence", "fanout", "gateway"} {
		bins[svc] = env.Build(t, "./services/"+svc)
	}
	common := []string{"-brokers", brokers, "-topic-prefix", prefix}
	var ready []string
	addr := func() string {
		a := fmt.Sprintf("127.0.0.1:%d", stacktest.FreePort(t))
		ready = append(ready, "http://"+a+"/readyz")
		return a
	}
	env.Start(t, "persistence", bins["persistence"], nil, append(common, "-database-url", db, "-http-addr", addr())...)
	fanout := env.Start(t, "fanout", bins["fanout"], nil, append(common, "-http-addr", addr(), "-start-offset", "first", "-group", stacktest.UniqueName("fanout-"))...)
	s := &stack{env: env, prefix: prefix, fanout: fanout, files: t.TempDir()}
	for _, gw := range []struct {
		id  string
		dst *string
	}{{"gw-a", &s.a}, {"gw-b", &s.b}} {
		a := addr()
		*gw.dst = "http://" + a
		// A small send queue and a short catch-up make the slow-client path easy to reach.
		// These tests stream hundreds of messages from one connection to exercise delivery;
		// rate limits would only get in the way (e2e_features_test.go tests them).
		env.Start(t, gw.id, bins["gateway"], nil, append(common, "-id", gw.id, "-addr", a, "-database-url", db,
			"-send-queue", "16", "-write-timeout", "30s", "-catchup-timeout", "60s", "-max-text-bytes", "15000", "-log-level", "info",
			"-rate-limits=false", "-attachment-dir", s.files)...)
	}
	s.wsA, s.wsB = strings.Replace(s.a, "http", "ws", 1)+"/ws", strings.Replace(s.b, "http", "ws", 1)+"/ws"
	for _, u := range ready {
		stacktest.WaitHTTP(t, u, 2*time.Minute)
	}
	return s
}

func hello(t *testing.T, wsURL string, acc gwtest.Account, rooms map[string]int64, opts *websocket.DialOptions) *gwtest.Client {
	t.Helper()
	c := gwtest.Dial(t, wsURL, opts)
	f := map[string]any{"type": "hello", "token": acc.Token, "ref": "hello"}
	if rooms != nil {
		f["rooms"] = rooms
	}
	c.Send(f)
	c.Expect("welcome", "hello")
	return c
}

type entry struct {
	seq  int64
	id   string
	text string
}

// collect reads message frames of room until seq `until`, in arrival order.
func collect(t *testing.T, c *gwtest.Client, room string, until int64, timeout time.Duration) []entry {
	t.Helper()
	var out []entry
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		f, ok := c.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("room") == room }, time.Until(deadline))
		if !ok {
			break
		}
		out = append(out, entry{f.Int("seq"), f.Str("message_id"), f.Str("text")})
		if f.Int("seq") >= until {
			break
		}
	}
	return out
}

func seqs(es []entry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.seq
	}
	return out
}

func sendAll(t *testing.T, c *gwtest.Client, room, prefix string, n int, text string) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		c.Send(map[string]any{"type": "send", "room": room, "client_msg_id": id, "text": text + id, "ref": id})
		if a := c.Expect("ack", id); a.Str("status") != "accepted" {
			t.Fatalf("send %s: %v", id, a)
		}
	}
}

func lastSeq(t *testing.T, base, token, room string) int64 {
	t.Helper()
	_, f := gwtest.Do(t, "GET", base+"/api/rooms/"+room+"/messages?limit=1", token, nil)
	ms, _ := f["messages"].([]any)
	if len(ms) == 0 {
		return 0
	}
	return int64(ms[0].(map[string]any)["seq"].(float64))
}

func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole platform")
	}
	s := startStack(t)
	alice := gwtest.NewAccount(t, s.a, "alice")
	bob := gwtest.NewAccount(t, s.b, "bob")
	carol := gwtest.NewAccount(t, s.b, "carol")
	dave := gwtest.NewAccount(t, s.b, "dave")
	if st, f := gwtest.Do(t, "POST", s.a+"/api/rooms", alice.Token, map[string]string{"id": "general"}); st != 201 {
		t.Fatalf("create: %d %v", st, f)
	}
	if st, f := gwtest.Do(t, "POST", s.b+"/api/rooms/general/join", bob.Token, nil); st != 200 {
		t.Fatalf("join: %d %v", st, f)
	}

	t.Run("same messages in the same order on both gateways", func(t *testing.T) {
		ca := hello(t, s.wsA, alice, map[string]int64{"general": 0}, nil)
		cb := hello(t, s.wsB, bob, map[string]int64{"general": 0}, nil)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); sendAll(t, ca, "general", "a", 20, "from alice ") }()
		go func() { defer wg.Done(); sendAll(t, cb, "general", "b", 20, "from bob ") }()
		wg.Wait()
		want := int64(2 + 40) // two join entries, forty messages
		ea := collect(t, ca, "general", want, 30*time.Second)
		eb := collect(t, cb, "general", want, 30*time.Second)
		if err := gwtest.Contiguous(seqs(ea), 1, want); err != nil {
			t.Fatalf("alice on A: %v", err)
		}
		if !slices.Equal(ea, eb) {
			t.Fatalf("gateways disagree:\nA %v\nB %v", ea, eb)
		}
		if ea[0].text != "" || !strings.HasPrefix(ea[2].text, "from ") {
			t.Fatalf("timeline shape: %v", ea[:3])
		}
	})

	t.Run("DM reaches only its two people and is in history", func(t *testing.T) {
		cc := hello(t, s.wsB, carol, nil, nil) // all my rooms: none yet
		cd := hello(t, s.wsB, dave, nil, nil)
		ca := hello(t, s.wsA, alice, map[string]int64{}, nil)
		ca.Send(map[string]any{"type": "dm", "to": "carol", "client_msg_id": "dm-1", "text": "secret", "ref": "dm"})
		ack := ca.Expect("ack", "dm")
		room := ack.Str("room")
		// Alice's connection (gateway A) and Carol's (gateway B, from the DM's entry on chat.stored) both get it.
		for name, c := range map[string]*gwtest.Client{"alice": ca, "carol": cc} {
			es := collect(t, c, room, 1, 20*time.Second)
			if len(es) != 1 || es[0].text != "secret" || es[0].id != ack.Str("message_id") {
				t.Fatalf("%s got %v", name, es)
			}
		}
		if _, leaked := cd.Next(func(f gwtest.Frame) bool { return f.Str("room") == room }, 2*time.Second); leaked {
			t.Fatal("dave received the DM")
		}
		for _, acc := range []gwtest.Account{alice, carol} {
			_, f := gwtest.Do(t, "GET", s.b+"/api/rooms/"+room+"/messages", acc.Token, nil)
			if ms, _ := f["messages"].([]any); len(ms) != 1 {
				t.Fatalf("%s history: %v", acc.Name, f)
			}
		}
		// Dave, an outsider, is answered as if the DM did not exist.
		if st, _ := gwtest.Do(t, "GET", s.a+"/api/rooms/"+room+"/messages", dave.Token, nil); st != 404 {
			t.Fatalf("dave history: %d", st)
		}
		cd.Send(map[string]any{"type": "subscribe", "room": room, "since_seq": 0, "ref": "x"})
		if e := cd.Expect("error", "x"); e.Str("code") != "not_found" {
			t.Fatalf("dave subscribe: %v", e)
		}
	})

	t.Run("reconnect to the other gateway resumes without gaps or duplicates", func(t *testing.T) {
		start := lastSeq(t, s.a, alice.Token, "general")
		ca := hello(t, s.wsA, alice, map[string]int64{}, nil)
		cb := hello(t, s.wsB, bob, map[string]int64{"general": start}, nil)
		done := make(chan struct{})
		go func() { defer close(done); sendAll(t, ca, "general", "r", 40, "stream ") }()
		first := collect(t, cb, "general", start+10, 30*time.Second)
		_ = cb.Conn.CloseNow() // Bob's network drops mid-stream
		cursor := first[len(first)-1].seq
		// Bob resumes on gateway A with his reconnect token and his cursor.
		cb2 := gwtest.Dial(t, s.wsA, nil)
		cb2.Send(map[string]any{"type": "hello", "reconnect_token": bob.Reconnect, "rooms": map[string]int64{"general": cursor}, "ref": "h"})
		cb2.Expect("welcome", "h")
		<-done
		end := start + 40
		second := collect(t, cb2, "general", end, 30*time.Second)
		if err := gwtest.Contiguous(append(seqs(first), seqs(second)...), start+1, end); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("idempotent send returns the same seq twice", func(t *testing.T) {
		ca := hello(t, s.wsA, alice, map[string]int64{"general": lastSeq(t, s.a, alice.Token, "general")}, nil)
		ca.Send(map[string]any{"type": "send", "room": "general", "client_msg_id": "idem-1", "text": "once", "ref": "1"})
		first := ca.Expect("ack", "1")
		m, ok := ca.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("client_msg_id") == "idem-1" }, 20*time.Second)
		if !ok {
			t.Fatal("message never delivered")
		}
		for i := range 2 {
			ref := fmt.Sprint("retry", i)
			ca.Send(map[string]any{"type": "send", "room": "general", "client_msg_id": "idem-1", "text": "once", "ref": ref})
			a := ca.Expect("ack", ref)
			if a.Str("status") != "duplicate" || a.Int("seq") != m.Int("seq") || a.Str("message_id") != first.Str("message_id") {
				t.Fatalf("retry %d: %v (stored seq %d)", i, a, m.Int("seq"))
			}
		}
		_, f := gwtest.Do(t, "GET", s.a+"/api/rooms/general/messages?after="+fmt.Sprint(m.Int("seq")-1), alice.Token, nil)
		n := 0
		for _, x := range f["messages"].([]any) {
			if x.(map[string]any)["client_msg_id"] == "idem-1" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("stored %d times", n)
		}
	})

	t.Run("a stalled reader delays nobody and catches up", func(t *testing.T) {
		eve := gwtest.NewAccount(t, s.b, "eve")
		frank := gwtest.NewAccount(t, s.b, "frank")
		gwtest.Do(t, "POST", s.a+"/api/rooms", alice.Token, map[string]string{"id": "flood"})
		gwtest.Do(t, "POST", s.b+"/api/rooms/flood/join", eve.Token, nil)
		gwtest.Do(t, "POST", s.b+"/api/rooms/flood/join", frank.Token, nil)
		base := lastSeq(t, s.a, alice.Token, "flood")
		// Eve's socket gets a tiny receive buffer so that the gateway's writes back up soon.
		small := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			if err != nil {
				return err
			}
			return serr
		}}
		opts := &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: small.DialContext}}}
		ce := hello(t, s.wsB, eve, map[string]int64{"flood": base}, opts)
		cf := hello(t, s.wsB, frank, map[string]int64{"flood": base}, nil)
		ca := hello(t, s.wsA, alice, map[string]int64{}, nil)
		resume := ce.Stall()

		// 400 x 14 KB is more than the kernel's largest socket send buffer (4 MiB), so
		// the gateway's writer really blocks and its queue overflows.
		const n = 400
		text := strings.Repeat("x", 14000) + " "
		sendAll(t, ca, "flood", "f", n, text)
		end := base + n
		got := collect(t, cf, "flood", end, 60*time.Second)
		if err := gwtest.Contiguous(seqs(got), base+1, end); err != nil {
			t.Fatalf("frank was held up by eve: %v", err)
		}
		resume()
		es := collect(t, ce, "flood", end, 60*time.Second)
		all := seqs(es)
		if len(all) == 0 || all[len(all)-1] < end {
			// The gateway gave up on her: with close 4008 and a final frame naming the
			// cursor, or (stalled past the write deadline) by dropping the socket. Either
			// way her own last seq is where she resumes, as any client would.
			cursor := base
			if len(all) > 0 {
				cursor = all[len(all)-1]
			}
			if final, ok := ce.Next(func(f gwtest.Frame) bool { return f.Type() == "error" && f.Str("code") == "slow" }, time.Second); ok {
				if c := int64(final["cursors"].(map[string]any)["flood"].(float64)); c > cursor {
					t.Fatalf("final frame cursor %d is past what eve received (%d)", c, cursor)
				}
			}
			if ce.Err() == nil {
				t.Fatalf("eve neither caught up nor was disconnected: %v", all)
			}
			t.Logf("eve was disconnected (%v) at seq %d; resuming", ce.Err(), cursor)
			ce2 := hello(t, s.wsB, eve, map[string]int64{"flood": cursor}, nil)
			all = append(all, seqs(collect(t, ce2, "flood", end, 60*time.Second))...)
		}
		if err := gwtest.Contiguous(all, base+1, end); err != nil {
			t.Fatalf("eve lost or repeated entries: %v", err)
		}
		m := metric(t, s.b, "kchat_gateway_slow_")
		t.Logf("slow-client metrics on gw-b: %s", m)
		if strings.Contains(m, "kchat_gateway_slow_catchup_total 0") && strings.Contains(m, "kchat_gateway_slow_closed_total 0") {
			t.Fatal("eve never overflowed: the test did not exercise the slow-client path")
		}
	})

	t.Run("latency A to B", func(t *testing.T) {
		ca := hello(t, s.wsA, alice, map[string]int64{}, nil)
		cb := hello(t, s.wsB, bob, map[string]int64{"general": lastSeq(t, s.a, alice.Token, "general")}, nil)
		var lat []time.Duration
		for i := range 100 {
			id := fmt.Sprint("lat-", i)
			t0 := time.Now()
			ca.Send(map[string]any{"type": "send", "room": "general", "client_msg_id": id, "text": "ping", "ref": id})
			if _, ok := cb.Next(func(f gwtest.Frame) bool { return f.Type() == "message" && f.Str("client_msg_id") == id }, 10*time.Second); !ok {
				t.Fatalf("%s not delivered", id)
			}
			lat = append(lat, time.Since(t0))
			ca.Expect("ack", id)
		}
		slices.Sort(lat)
		t.Logf("send on A -> message on B: p50 %v, p99 %v, max %v (n=%d)", lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], len(lat))
	})

	t.Run("typing reaches the room on the other gateway", func(t *testing.T) {
		ca := hello(t, s.wsA, alice, map[string]int64{}, nil)
		cb := hello(t, s.wsB, bob, nil, nil) // follows general live
		cb.Expect("subscribed")
		deadline := time.Now().Add(20 * time.Second)
		for {
			// The first signal may race the subscription announcement; typing is not
			// replayed, so send again (past the 2 s throttle) until one arrives.
			ca.Send(map[string]any{"type": "typing", "room": "general"})
			if f, ok := cb.Next(func(f gwtest.Frame) bool { return f.Type() == "typing" }, 2500*time.Millisecond); ok {
				if f.Str("user_name") != "alice" || f.Str("room") != "general" {
					t.Fatalf("typing: %v", f)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no typing frame on gateway B")
			}
		}
	})

	t.Run("who is online across gateways", func(t *testing.T) {
		hello(t, s.wsA, alice, map[string]int64{}, nil)
		hello(t, s.wsB, bob, map[string]int64{}, nil)
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, f := gwtest.Do(t, "GET", s.a+"/api/users", alice.Token, nil)
			names := map[string]bool{}
			for _, u := range f["users"].([]any) {
				names[u.(map[string]any)["username"].(string)] = true
			}
			if names["alice"] && names["bob"] {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway A does not see bob online: %v", f)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	// Gateways read the timeline from chat.stored and learn of memberships from its
	// entries: with fanout gone, a join made through the other gateway and a brand-new DM
	// still reach the user's open connection, each announced by a subscribed frame, then
	// the entries themselves. (Last: fanout stays down.)
	t.Run("timeline and memberships need no fanout", func(t *testing.T) {
		s.fanout.Kill()
		gina := gwtest.NewAccount(t, s.a, "gina")
		cg := hello(t, s.wsB, gina, map[string]int64{}, nil) // follows nothing yet
		if st, f := gwtest.Do(t, "POST", s.a+"/api/rooms", alice.Token, map[string]string{"id": "quiet"}); st != 201 {
			t.Fatalf("create: %d %v", st, f)
		}
		if st, f := gwtest.Do(t, "POST", s.a+"/api/rooms/quiet/join", gina.Token, nil); st != 200 {
			t.Fatalf("join through gateway A: %d %v", st, f)
		}
		sub, ok := cg.Next(func(f gwtest.Frame) bool { return f.Type() == "subscribed" && f.Str("room") == "quiet" }, 30*time.Second)
		if !ok {
			t.Fatal("gina's connection on gateway B never followed the room she joined through gateway A")
		}
		joined := sub.Int("last_seq")
		ca := hello(t, s.wsA, alice, map[string]int64{}, nil)
		sendAll(t, ca, "quiet", "q", 3, "after the join ")
		got := collect(t, cg, "quiet", joined+3, 30*time.Second)
		if err := gwtest.Contiguous(seqs(got), joined, joined+3); err != nil {
			t.Fatalf("gina on B, from her join entry on: %v", err)
		}

		ca.Send(map[string]any{"type": "dm", "to": "gina", "client_msg_id": "dm-quiet", "text": "psst", "ref": "dm"})
		room := ca.Expect("ack", "dm").Str("room")
		if _, ok := cg.Next(func(f gwtest.Frame) bool { return f.Type() == "subscribed" && f.Str("room") == room }, 30*time.Second); !ok {
			t.Fatal("gina's connection never followed the new DM")
		}
		if es := collect(t, cg, room, 1, 30*time.Second); len(es) != 1 || es[0].text != "psst" {
			t.Fatalf("DM on gateway B: %v", es)
		}
	})
}

func metric(t *testing.T, base, prefix string) string {
	res, err := http.Get(base + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}
