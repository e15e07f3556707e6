package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/kchat/kchat/pkg/backoff"
	"github.com/kchat/kchat/pkg/protocol"
)

// User is one simulated person with one WebSocket at a time. It behaves like the
// documented client: it keeps a per-room cursor (the last seq shown) and drops entries
// at or below it; sends carry a client_msg_id and are retried with the same id until
// acknowledged (after a lost connection, a silent 15 s, or a retryable refusal such as
// `unavailable`, with a back-off growing per send, at least the given `retry_after_ms`); a lost
// connection is replaced, on any gateway, by `hello{reconnect_token, rooms: cursors}`.
type User struct {
	Name, ID  string
	Token     string
	Gateways  []string // WebSocket URLs; the first is preferred
	Rooms     []string // every room the user is a member of (DMs included)
	reconnect string
	rec       *Recorder

	mu      sync.Mutex
	cursor  map[string]int64
	pending []*pendingSend
	conn    *websocket.Conn
	gw      string
	epoch   int
	welcome bool
	kick    chan struct{}
}

type pendingSend struct {
	cmid, room, to, text string
	written              bool      // written on the current connection, ack awaited
	writtenAt            time.Time // when, for the ack timeout
	notBefore            time.Time // retry backoff after `unavailable`
	attempts             int
	refusals             int // retryable refusals so far: the backoff's step
}

// refusedRetry is the wait before a refused send is written again. It grows with each
// refusal of the same send: with a flat 300 ms, a user with a backlog after a fault
// rewrote all of it three times a second into a gateway answering "connection busy",
// and at 200 msg/s the suite measured that storm (2.0 M refusals in one run, worst
// send→ack 123 s) more than the platform.
var refusedRetry = backoff.Policy{Initial: 300 * time.Millisecond, Max: 2 * time.Second}

// maxUnacked is how many sends a user keeps written and unanswered on its connection, as
// many as a gateway takes from one connection before it refuses with "connection busy"
// (the hub's maxSendsInFlight). Without a bound a user rewrote its whole backlog after a
// fault: in the mixed run at 200 msg/s 2.1 M writes for 94,285 sends, a storm that
// starved the brokers' own recovery (a restarted broker unreachable for 2 min). The rest
// waits, still timed from when it was scheduled, so a stall shows as latency.
const maxUnacked = 64

// ackTimeout is how long a written send may wait for its ack before it is written
// again: a gateway that hangs (not dies) must not strand a send.
const ackTimeout = 15 * time.Second

// NewUser prepares a user; Run connects it.
func NewUser(name, id, token string, gateways, rooms []string, rec *Recorder) *User {
	u := &User{Name: name, ID: id, Token: token, Gateways: gateways, Rooms: rooms, rec: rec,
		cursor: map[string]int64{}, kick: make(chan struct{}, 1)}
	for _, r := range rooms {
		u.cursor[r] = 0
	}
	return u
}

// Send schedules a send to a room (to == "") or a DM to a username. It never blocks: the
// generator is open loop, so a slow or absent connection must not slow the schedule.
func (u *User) Send(cmid, room, to, text string) {
	u.rec.Add(Op{Kind: OpSend, User: u.Name, Room: room, To: to, CMID: cmid})
	u.mu.Lock()
	u.pending = append(u.pending, &pendingSend{cmid: cmid, room: room, to: to, text: text})
	u.mu.Unlock()
	u.poke()
}

func (u *User) poke() {
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// Pending is the number of sends not yet acknowledged.
func (u *User) Pending() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.pending)
}

// Cursors returns a copy of the per-room cursors.
func (u *User) Cursors() map[string]int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]int64, len(u.cursor))
	for r, s := range u.cursor {
		out[r] = s
	}
	return out
}

// Gateway is the WebSocket URL of the current connection ("" while disconnected).
func (u *User) Gateway() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn == nil || !u.welcome {
		return ""
	}
	return u.gw
}

// Run keeps the user connected until ctx ends.
func (u *User) Run(ctx context.Context) {
	b := backoff.New(100*time.Millisecond, 2*time.Second)
	next := 0
	for ctx.Err() == nil {
		gw := u.Gateways[next%len(u.Gateways)]
		err := u.session(ctx, gw)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// Try the next gateway: the one we were on may be the one that died.
			next++
			if b.Wait(ctx) != nil {
				return
			}
			continue
		}
		b.Reset()
	}
}

// session runs one connection: dial, hello with the cursors, then read until it ends.
// It returns nil if the connection was established (welcomed) and later lost.
func (u *User) session(ctx context.Context, gw string) error {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	conn, _, err := websocket.Dial(dctx, gw, nil)
	cancel()
	if err != nil {
		return err
	}
	conn.SetReadLimit(1 << 20)
	u.mu.Lock()
	u.epoch++
	epoch := u.epoch
	u.conn, u.gw, u.welcome = conn, gw, false
	hello := &protocol.Hello{Base: protocol.Base{Type: protocol.TypeHello, Ref: "hello"}, Rooms: u.copyCursorsLocked()}
	if u.reconnect != "" {
		hello.ReconnectToken = u.reconnect
	} else {
		hello.Token = u.Token
	}
	for _, p := range u.pending {
		p.written = false // whatever was in flight on the old connection is resent
	}
	u.mu.Unlock()

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	welcomed := false
	defer func() {
		u.mu.Lock()
		if u.epoch == epoch {
			u.conn, u.welcome = nil, false
		}
		u.mu.Unlock()
		_ = conn.CloseNow()
		if welcomed {
			u.rec.Add(Op{Kind: OpDisconnect, User: u.Name, Conn: epoch, Gw: gw})
		}
	}()
	if err := u.write(sctx, conn, hello); err != nil {
		return err
	}
	go u.writer(sctx, conn, epoch)
	for {
		_, data, err := conn.Read(sctx)
		if err != nil {
			if welcomed {
				return nil
			}
			return err
		}
		f, err := protocol.DecodeServer(data)
		if err != nil {
			continue
		}
		if w, ok := f.(*protocol.Welcome); ok && w.Ref == "hello" {
			welcomed = true
			u.mu.Lock()
			u.reconnect, u.welcome = w.ReconnectToken, true
			u.mu.Unlock()
			u.rec.Add(Op{Kind: OpConnect, User: u.Name, Conn: epoch, Gw: gw})
			u.poke()
			continue
		}
		u.handle(epoch, gw, f)
	}
}

func (u *User) copyCursorsLocked() map[string]int64 {
	out := make(map[string]int64, len(u.cursor))
	for r, s := range u.cursor {
		out[r] = s
	}
	return out
}

func (u *User) handle(epoch int, gw string, f protocol.Frame) {
	switch f := f.(type) {
	case *protocol.Message:
		u.mu.Lock()
		cur, known := u.cursor[f.Room]
		switch {
		case f.Seq <= cur:
			u.mu.Unlock()
			u.rec.Add(Op{Kind: OpDup, User: u.Name, Conn: epoch, Gw: gw, Room: f.Room, Seq: f.Seq, MsgID: f.MessageID})
			return
		case f.Seq > cur+1 && known:
			u.rec.Add(Op{Kind: OpGap, User: u.Name, Conn: epoch, Gw: gw, Room: f.Room, Seq: f.Seq, Note: fmt.Sprintf("cursor %d", cur)})
		}
		u.cursor[f.Room] = f.Seq
		u.mu.Unlock()
		u.rec.Add(Op{Kind: OpDeliver, User: u.Name, Conn: epoch, Gw: gw, Room: f.Room, Seq: f.Seq, MsgID: f.MessageID,
			Sender: f.Sender, CMID: f.ClientMsgID, Note: f.Kind})
	case *protocol.Ack:
		u.mu.Lock()
		u.dropPendingLocked(f.Ref)
		u.mu.Unlock()
		u.rec.Add(Op{Kind: OpAck, User: u.Name, Conn: epoch, Gw: gw, Room: f.Room, CMID: f.ClientMsgID, MsgID: f.MessageID,
			Status: f.Status, Seq: f.Seq})
	case *protocol.Error:
		u.rec.Add(Op{Kind: OpError, User: u.Name, Conn: epoch, Gw: gw, Room: f.Room, CMID: f.ClientMsgID, Code: f.Code, Note: f.Message})
		u.mu.Lock()
		for _, p := range u.pending {
			if p.cmid == f.Ref {
				if f.Retryable || f.Code == protocol.CodeUnavailable || f.Code == protocol.CodeRateLimited || f.Code == protocol.CodeInternal {
					wait := refusedRetry.Delay(p.refusals)
					p.refusals++
					if after := time.Duration(f.RetryAfter) * time.Millisecond; after > wait {
						wait = after // a rate limit knows when it lets the send through
					}
					p.written, p.notBefore = false, time.Now().Add(wait)
				} else {
					u.dropPendingLocked(f.Ref) // a permanent refusal: never stored, never acked
				}
				break
			}
		}
		u.mu.Unlock()
	case *protocol.Subscribed:
		if !f.Recovered {
			u.rec.Add(Op{Kind: OpSubscribed, User: u.Name, Conn: epoch, Gw: gw, Room: f.Room, Note: f.Reason})
		}
	case *protocol.Notification:
		u.rec.Add(Op{Kind: OpNotify, User: u.Name, Conn: epoch, Gw: gw, Room: f.Room, Seq: f.Seq, MsgID: f.NotificationID, Note: f.Reason})
	}
}

func (u *User) dropPendingLocked(cmid string) {
	for i, p := range u.pending {
		if p.cmid == cmid {
			u.pending = append(u.pending[:i:i], u.pending[i+1:]...)
			return
		}
	}
}

// writer writes pending sends in the order they were made, on this connection only.
func (u *User) writer(ctx context.Context, conn *websocket.Conn, epoch int) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.kick:
		case <-tick.C:
		}
		for {
			u.mu.Lock()
			if u.epoch != epoch || !u.welcome {
				u.mu.Unlock()
				break
			}
			now := time.Now()
			var p *pendingSend
			unacked := 0
			for _, q := range u.pending {
				if q.written && now.Sub(q.writtenAt) > ackTimeout {
					q.written = false
				}
				if q.written {
					unacked++
				} else if p == nil && !now.Before(q.notBefore) {
					p = q
				}
			}
			if unacked >= maxUnacked {
				p = nil // the next tick looks again, when acks have made room
			}
			if p == nil {
				u.mu.Unlock()
				break
			}
			p.written, p.writtenAt = true, now
			p.attempts++
			attempt := p.attempts
			var f protocol.Frame = &protocol.Send{Base: protocol.Base{Type: protocol.TypeSend, Ref: p.cmid}, Room: p.room, ClientMsgID: p.cmid, Text: p.text}
			if p.to != "" {
				f = &protocol.DM{Base: protocol.Base{Type: protocol.TypeDM, Ref: p.cmid}, To: p.to, ClientMsgID: p.cmid, Text: p.text}
			}
			u.mu.Unlock()
			u.rec.Add(Op{Kind: OpWrite, User: u.Name, Conn: epoch, Room: p.room, To: p.to, CMID: p.cmid, Note: fmt.Sprint(attempt)})
			if err := u.write(ctx, conn, f); err != nil {
				_ = conn.CloseNow() // the read loop ends the session
				return
			}
		}
	}
}

func (u *User) write(ctx context.Context, conn *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := conn.Write(wctx, websocket.MessageText, b); err != nil {
		return errors.Join(errors.New("write"), err)
	}
	return nil
}
