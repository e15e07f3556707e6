package hub

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
)

// heldChat keeps every send's completion until the test releases it, as a slow Kafka would.
type heldChat struct {
	nopChat
	mu    sync.Mutex
	held  []func()
	order []string // client_msg_ids in the order SendAsync saw them
}

func (c *heldChat) SendAsync(_ context.Context, _ chat.User, req chat.SendRequest, done func(protocol.Ack, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order = append(c.order, req.ClientMsgID)
	c.held = append(c.held, func() {
		done(protocol.Ack{Base: protocol.Base{Type: protocol.TypeAck}, Room: req.Room, ClientMsgID: req.ClientMsgID, Status: protocol.AckAccepted}, nil)
	})
}

func (c *heldChat) release(n int) {
	c.mu.Lock()
	held := c.held[:n]
	c.held = c.held[n:]
	c.mu.Unlock()
	for _, f := range held {
		f()
	}
}

func (c *heldChat) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.order)
}

// heldSession is an authenticated session whose sends wait for the test to release them.
func heldSession(t *testing.T, queue int) (*heldChat, *Session, *fakeOut) {
	t.Helper()
	c := &heldChat{}
	pr := &fakePresence{sets: map[string]int{}}
	h, err := New(Config{GatewayID: "gw-test"}, c, &fakeTimeline{last: map[string]int64{}}, nopAnnouncer{}, pr, pr, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := newFakeOut(queue)
	s := h.Attach(out)
	s.mu.Lock()
	s.user = &chat.User{ID: "u1", Username: "alice"}
	s.mu.Unlock()
	return c, s, out
}

func sendJSON(i int) []byte {
	return fmt.Appendf(nil, `{"type":"send","ref":"r%d","room":"lobby","client_msg_id":"c%04d","text":"hi"}`, i, i)
}

// A connection's sends do not wait for each other's Kafka acknowledgement: the worker
// takes the next frame at once, up to maxSendsInFlight. Past it a send waits for a slot
// for at most sendSlotWait after it arrived and is then refused with `unavailable` (Kafka
// stalled: answered, not held). Every accepted send gets its ack, and the sends reach
// chat in the order they were read.
func TestSession_sends_are_pipelined_and_bounded(t *testing.T) {
	c, s, out := heldSession(t, 4*maxSendsInFlight)

	for i := range maxSendsInFlight {
		s.HandleFrame(context.Background(), sendJSON(i)) // returns although nothing is acked
	}
	if n := len(s.sendSlots); n != maxSendsInFlight {
		t.Fatalf("%d sends in flight, want %d", n, maxSendsInFlight)
	}
	// One more is refused once it has waited sendSlotWait: no slot frees.
	start := time.Now()
	s.HandleFrame(context.Background(), sendJSON(maxSendsInFlight))
	waited := time.Since(start)
	if waited < sendSlotWait || waited > sendSlotWait+2*time.Second {
		t.Fatalf("refused after %v, want about %v", waited, sendSlotWait)
	}
	refused := false
	for _, f := range frames(out) {
		if f["type"] == "error" && f["code"] == protocol.CodeUnavailable && f["client_msg_id"] == fmt.Sprintf("c%04d", maxSendsInFlight) {
			refused = true
		}
	}
	if !refused || c.count() != maxSendsInFlight {
		t.Fatalf("send past the limit: refused %v, %d reached chat; frames %v", refused, c.count(), frames(out))
	}
	// A send that finds a slot freed while it waits goes on.
	extra := make(chan struct{})
	go func() {
		s.HandleFrame(context.Background(), sendJSON(maxSendsInFlight+1))
		close(extra)
	}()
	c.release(1)
	select {
	case <-extra:
	case <-time.After(2 * time.Second):
		t.Fatal("the waiting send did not proceed after a slot freed")
	}
	c.release(maxSendsInFlight)
	if n := len(s.sendSlots); n != 0 {
		t.Fatalf("%d sends still in flight after every ack", n)
	}
	acks := 0
	for _, f := range frames(out) {
		if f["type"] == "ack" {
			acks++
		}
	}
	if acks != maxSendsInFlight+1 {
		t.Fatalf("%d acks, want %d", acks, maxSendsInFlight+1)
	}
	for i, id := range c.order {
		want := fmt.Sprintf("c%04d", i)
		if i == maxSendsInFlight {
			want = fmt.Sprintf("c%04d", i+1) // the refused one never reached chat
		}
		if id != want {
			t.Fatalf("send %d reached chat as %s: order changed", i, id)
		}
	}
}

// A frame the worker cannot take (its queue full: Kafka or PostgreSQL stalled) is answered
// at once with a retryable `unavailable` naming the message; ping is answered on the read
// loop itself, and typing is dropped without a word.
func TestSession_busy_worker_refuses_at_once(t *testing.T) {
	c, s, out := heldSession(t, 64)
	out.mu.Lock()
	out.busy = true
	out.mu.Unlock()
	s.HandleFrame(context.Background(), sendJSON(1))
	s.HandleFrame(context.Background(), []byte(`{"type":"ping","ref":"p"}`))
	s.HandleFrame(context.Background(), []byte(`{"type":"typing","room":"lobby"}`))
	fs := frames(out)
	if len(fs) != 2 {
		t.Fatalf("frames %v, want an error and a pong", fs)
	}
	if e := fs[0]; e["type"] != "error" || e["code"] != protocol.CodeUnavailable || e["ref"] != "r1" ||
		e["client_msg_id"] != "c0001" || e["room"] != "lobby" || e["retryable"] != true {
		t.Fatalf("refusal %v", e)
	}
	if p := fs[1]; p["type"] != "pong" || p["ref"] != "p" {
		t.Fatalf("ping answered with %v", p)
	}
	if c.count() != 0 {
		t.Fatalf("%d refused sends reached chat", c.count())
	}
}

// quit waits for outstanding acks, so a client that sends and quits learns what was accepted.
func TestSession_quit_waits_for_outstanding_acks(t *testing.T) {
	c, s, out := heldSession(t, 64)
	for i := range 3 {
		s.HandleFrame(context.Background(), sendJSON(i))
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		c.release(3)
	}()
	s.HandleFrame(context.Background(), []byte(`{"type":"quit"}`))
	code, _ := out.closed()
	if code != protocol.CloseNormal {
		t.Fatalf("close code %d, want %d", code, protocol.CloseNormal)
	}
	if got := c.count(); got != 3 {
		t.Fatalf("%d sends reached chat, want 3", got)
	}
	if n := len(s.sendSlots); n != 0 {
		t.Fatalf("closed with %d sends unacknowledged", n)
	}
}
