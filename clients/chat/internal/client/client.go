// Package client is the terminal client's connection to the gateways: one WebSocket at a
// time, authenticated with the session token first and the reconnect token afterwards,
// re-established with back-off (and on the next gateway of the list) whenever it drops.
//
// What it guarantees to its caller: timeline entries of a room arrive in seq order with
// none twice, across any number of reconnects (it resumes every room from the last seq it
// passed on and drops anything at or below it); a message handed to Send is resent with the
// same client_msg_id until a gateway acknowledges it, so it is stored exactly once.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/kchat/kchat/pkg/backoff"
	"github.com/kchat/kchat/pkg/protocol"
)

// Synthetic event types, sent on Events beside the server's frames (pkg/protocol's typed
// frames: *protocol.Message, *protocol.Ack, ...).
const (
	EventConnected    = "client.connected"    // *Connected
	EventDisconnected = "client.disconnected" // *Disconnected
	EventSendFailed   = "client.send_failed"  // *SendFailed
)

// Connected: a connection is authenticated. Resumed is set after a reconnect.
type Connected struct {
	protocol.Base
	GatewayID string
	URL       string
	User      protocol.User
	Resumed   bool
}

// Disconnected: the connection ended; Why says why. A reconnect follows.
type Disconnected struct {
	protocol.Base
	GatewayID string
	Why       string
}

// SendFailed: a send was refused for good; Err is the gateway's error frame (Code,
// Message, Room, ClientMsgID).
type SendFailed struct {
	protocol.Base
	Err *protocol.Error
}

// Request is a client frame that has a reply; Client.Request sets its ref.
type Request interface {
	protocol.Frame
	SetRef(ref string)
}

// Config configures a Client. Zero durations take the defaults noted.
type Config struct {
	URLs           []string      // WebSocket URLs, tried in turn (see NormalizeURL)
	ConnectTimeout time.Duration // longest time without a connection before giving up (30s)
	BackoffMin     time.Duration // first retry delay (250ms)
	BackoffMax     time.Duration // largest retry delay (5s)
	PingInterval   time.Duration // ping frames keep the connection from the idle timeout (60s)
	WriteTimeout   time.Duration // per frame (10s)
	SendRetries    int           // retries of a send refused as retryable ("unavailable", "rate_limited") (8)
	// Logf reports connection trouble for people (stderr); nil discards it.
	Logf func(format string, args ...any)
	// Reauth is called when both the reconnect token and the session token are refused.
	// It returns a new session token (logging in again) or an error that ends the client.
	Reauth func(ctx context.Context) (string, error)
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ConnectTimeout, 30*time.Second)
	def(&c.BackoffMin, 250*time.Millisecond)
	def(&c.BackoffMax, 5*time.Second)
	def(&c.PingInterval, 60*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	if c.SendRetries <= 0 {
		c.SendRetries = 8
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
}

// ServerError is an error frame answering a request.
type ServerError struct{ Frame *protocol.Error }

func (e *ServerError) Error() string { return e.Frame.Message }

// Code is the error's protocol code.
func (e *ServerError) Code() string { return e.Frame.Code }

// initRef marks the ping that follows the first hello.
const initRef = "init"

// ErrClosed is returned by requests after Close or a fatal error.
var ErrClosed = errors.New("client closed")

// link is one authenticated connection.
type link struct {
	conn    *websocket.Conn
	gateway string
	lost    chan struct{} // closed when the connection ends
}

type outgoing struct {
	frame   protocol.Frame
	cmid    string
	room    string // "" for a DM until the ack names its room
	retries int
	timer   *time.Timer
}

// Client is a resumable connection. Create with New, then Start.
type Client struct {
	cfg    Config
	events chan protocol.Frame
	done   chan struct{}

	mu         sync.Mutex
	cur        *link         // nil while not connected and authenticated
	readyCh    chan struct{} // closed when cur becomes non-nil
	session    string
	reconnect  string
	user       protocol.User
	cursors    map[string]int64 // room -> last seq passed on to Events
	subscribed map[string]bool  // rooms with a subscribed frame on the current connection
	pending    []*outgoing      // unacknowledged sends, in the order they were made
	waiters    map[string]chan protocol.Frame
	refs       int
	msgIDs     int
	idPrefix   string
	closing    bool
	err        error
	cancel     context.CancelFunc
	// haveAll is set once the first connection's "all my rooms" subscription is complete
	// (the pong to a ping sent right after hello: the gateway handles frames in order).
	// Until then a reconnect must subscribe to all rooms again, not resume from cursors
	// that may be missing rooms.
	haveAll bool
}

// New returns a client; nothing connects until Start.
func New(cfg Config) *Client {
	cfg.setDefaults()
	return &Client{
		cfg: cfg, events: make(chan protocol.Frame, 256), done: make(chan struct{}),
		readyCh: make(chan struct{}), cursors: map[string]int64{}, subscribed: map[string]bool{},
		waiters: map[string]chan protocol.Frame{},
		// client_msg_ids must not repeat across runs of the client (the gateway would
		// answer "duplicate"), so they start with a random per-process prefix.
		idPrefix: strconv.FormatUint(rand.Uint64(), 36),
	}
}

// Events delivers server frames that are not replies to requests (messages, subscribed,
// typing, notifications, acks, unsolicited errors) and the synthetic events above.
// It is closed when the client ends; read it until then.
func (c *Client) Events() <-chan protocol.Frame { return c.events }

// Done is closed when the client has ended (Close, or a fatal error: see Err).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the client ended, nil after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// User is the account once connected.
func (c *Client) User() protocol.User {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// Cursors returns, per room, the last seq delivered on Events.
func (c *Client) Cursors() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.cursors))
	for k, v := range c.cursors {
		out[k] = v
	}
	return out
}

// Start connects with a session token (from REST login) and runs until Close or a fatal
// error. The first connection subscribes to all of the user's rooms from now on; later
// ones resume every room from its cursor.
func (c *Client) Start(ctx context.Context, sessionToken string) {
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	c.session = sessionToken
	c.cancel = cancel
	c.mu.Unlock()
	go c.run(ctx)
}

func (c *Client) logf(format string, args ...any) { c.cfg.Logf(format, args...) }

func (c *Client) emit(f protocol.Frame) {
	select {
	case c.events <- f:
	case <-c.done:
	}
}

type authStage int

const (
	useReconnect authStage = iota // the reconnect token from the last welcome
	useSession                    // the session token
	useReauth                     // both refused: ask Reauth for a new session token
)

func (c *Client) run(ctx context.Context) {
	var fatal error
	defer func() {
		c.mu.Lock()
		c.err = fatal
		c.closing = true
		for _, p := range c.pending {
			if p.timer != nil {
				p.timer.Stop()
			}
		}
		c.mu.Unlock()
		close(c.done)
		close(c.events)
	}()
	stage := useSession
	start := 0
	for {
		if stage == useReauth {
			if c.cfg.Reauth == nil {
				fatal = errors.New("the gateway refused the reconnect and session tokens (expired?); log in again")
				return
			}
			tok, err := c.cfg.Reauth(ctx)
			if err != nil {
				fatal = fmt.Errorf("cannot log in again: %w", err)
				return
			}
			c.mu.Lock()
			c.session = tok
			c.mu.Unlock()
			stage = useSession
		}
		conn, idx, err := c.dial(ctx, start)
		if err != nil {
			if !c.isClosing() {
				fatal = err
			}
			return
		}
		end := c.serve(ctx, conn, c.cfg.URLs[idx], stage)
		if c.isClosing() || ctx.Err() != nil {
			return
		}
		switch {
		case end.authRefused:
			// Fall back one step: the reconnect token may have expired while the session
			// token still works, and a password login may still work after that.
			if stage == useReconnect {
				c.logf("the reconnect token was refused; trying the session token")
				stage = useSession
			} else {
				stage = useReauth
			}
			start = idx
		case end.welcomed:
			stage = useReconnect
			// Prefer another gateway: this one just went away, and any gateway can resume.
			start = (idx + 1) % len(c.cfg.URLs)
			c.emit(&Disconnected{Base: protocol.Base{Type: EventDisconnected}, GatewayID: end.gateway, Why: end.why})
			if !end.restart {
				// A drop without a goodbye: wait a moment so a flapping gateway is not hammered.
				if backoff.Sleep(ctx, c.backoff().Delay(0)) != nil {
					return
				}
			}
		default:
			// The connection ended before welcome: treat it like a failed dial.
			start = (idx + 1) % len(c.cfg.URLs)
			if backoff.Sleep(ctx, c.backoff().Delay(0)) != nil {
				return
			}
		}
	}
}

func (c *Client) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// backoff is the retry delay policy: exponential from BackoffMin, capped at BackoffMax,
// with equal jitter (uniform in [d/2, d]) so clients dropped together by one gateway do
// not all come back at the same instant.
func (c *Client) backoff() backoff.Policy {
	return backoff.Policy{Initial: c.cfg.BackoffMin, Max: c.cfg.BackoffMax}
}

// dial tries the URLs in turn from start, backing off after each full round, until one
// accepts or ConnectTimeout has passed without a connection.
func (c *Client) dial(ctx context.Context, start int) (*websocket.Conn, int, error) {
	deadline := time.Now().Add(c.cfg.ConnectTimeout)
	n := len(c.cfg.URLs)
	var last error
	for attempt := 0; ; attempt++ {
		for i := range n {
			idx := (start + i) % n
			dctx, cancel := context.WithDeadline(ctx, deadline)
			conn, _, err := websocket.Dial(dctx, c.cfg.URLs[idx], nil)
			cancel()
			if err == nil {
				conn.SetReadLimit(8 << 20) // a history page of 200 entries of 4 KiB each
				return conn, idx, nil
			}
			if ctx.Err() != nil {
				return nil, 0, ctx.Err()
			}
			if timedOut := !time.Now().Before(deadline); !timedOut || last == nil {
				// A dial cut short by our own deadline says less than the error before it.
				last = fmt.Errorf("%s: %s", c.cfg.URLs[idx], DialProblem(err))
				c.logf("cannot reach %v", last)
			}
			if !time.Now().Before(deadline) {
				return nil, 0, fmt.Errorf("no gateway answered within %s (last: %v)", c.cfg.ConnectTimeout, last)
			}
		}
		wait := c.backoff().Delay(attempt)
		if left := time.Until(deadline); wait > left {
			if left <= 0 {
				return nil, 0, fmt.Errorf("no gateway answered within %s (last: %v)", c.cfg.ConnectTimeout, last)
			}
			wait = left
		}
		c.logf("retrying in %s", wait.Round(10*time.Millisecond))
		if err := backoff.Sleep(ctx, wait); err != nil {
			return nil, 0, err
		}
	}
}

// DialProblem shortens a dial error to what a person can act on ("connection refused",
// "handshake status 404") instead of the library's nested description.
func DialProblem(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		s := oe.Err.Error()
		if i := strings.LastIndex(s, ": "); i >= 0 {
			s = s[i+2:]
		}
		return s
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	s := err.Error()
	if i := strings.Index(s, "expected handshake response status code 101 but got "); i >= 0 {
		return "not a WebSocket endpoint (HTTP " + strings.TrimSpace(s[i+len("expected handshake response status code 101 but got "):]) + ")"
	}
	return s
}

type ending struct {
	welcomed    bool
	authRefused bool
	restart     bool // the gateway said goodbye (reconnect frame / 1012)
	why         string
	gateway     string
}

// serve authenticates conn with hello and reads it until it ends.
func (c *Client) serve(ctx context.Context, conn *websocket.Conn, url string, stage authStage) (end ending) {
	lk := &link{conn: conn, lost: make(chan struct{})}
	defer func() {
		c.mu.Lock()
		if c.cur == lk {
			c.cur = nil
			c.readyCh = make(chan struct{})
		}
		close(lk.lost)
		clear(c.subscribed)
		c.mu.Unlock()
		_ = conn.CloseNow()
	}()

	c.mu.Lock()
	hello := &protocol.Hello{Base: protocol.Base{Type: protocol.TypeHello, Ref: "hello"}}
	if stage == useReconnect && c.reconnect != "" {
		hello.ReconnectToken = c.reconnect
	} else {
		hello.Token = c.session
	}
	resumed := c.haveAll
	if resumed {
		rooms := make(map[string]int64, len(c.cursors))
		for r, s := range c.cursors {
			rooms[r] = s
		}
		hello.Rooms = rooms // {} when following nothing: subscribe to nothing (nil: to all)
	}
	c.mu.Unlock()
	if err := c.write(ctx, conn, hello); err != nil {
		end.why = "cannot send hello: " + err.Error()
		return end
	}
	if !resumed {
		if err := c.write(ctx, conn, &protocol.Ping{Base: protocol.Base{Type: protocol.TypePing, Ref: initRef}}); err != nil {
			end.why = "cannot send ping: " + err.Error()
			return end
		}
	}

	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			code := protocol.CloseCode(websocket.CloseStatus(err))
			switch {
			case code == protocol.CloseUnauthorized:
				end.authRefused = true
			case code == protocol.CloseServiceRestart:
				end.restart = true
				end.why = "the gateway is shutting down"
			case code == protocol.CloseSlow:
				end.why = "the connection fell too far behind"
			case code == protocol.CloseNormal:
				end.why = "the gateway closed the connection"
			case code != -1:
				end.why = fmt.Sprintf("closed with code %d", code)
			default:
				end.why = "connection lost: " + DialProblem(err)
			}
			return end
		}
		f, err := protocol.DecodeServer(data)
		if err != nil {
			c.logf("ignoring an undecodable frame: %v", err)
			// A request waiting for this frame would wait forever: answer it with an error.
			var head struct {
				Ref string `json:"ref"`
			}
			if json.Unmarshal(data, &head) == nil && head.Ref != "" {
				c.onError(ctx, &protocol.Error{Base: protocol.Base{Type: protocol.TypeError, Ref: head.Ref}, Code: "undecodable", Message: "the reply could not be read: " + err.Error()})
			}
			continue
		}
		switch f := f.(type) {
		case *protocol.Welcome:
			end.welcomed, end.gateway, lk.gateway = true, f.GatewayID, f.GatewayID
			c.onWelcome(ctx, lk, f)
			c.emit(&Connected{Base: protocol.Base{Type: EventConnected}, GatewayID: f.GatewayID, URL: url, User: f.User, Resumed: resumed})
		case *protocol.Reconnect:
			end.restart = true
		case *protocol.Error:
			if f.Code == protocol.CodeInvalidToken && !end.welcomed {
				end.authRefused = true
				continue
			}
			c.onError(ctx, f)
		default:
			c.onFrame(ctx, f)
		}
	}
}

// onWelcome records the fresh reconnect token, then resends every unacknowledged message
// in its original order before anything new can be sent (both happen under mu).
func (c *Client) onWelcome(ctx context.Context, lk *link, f *protocol.Welcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.ReconnectToken != "" {
		c.reconnect = f.ReconnectToken
	}
	if f.User.ID != "" {
		c.user = f.User
	}
	for _, p := range c.pending {
		if p.timer != nil {
			p.timer.Stop()
			p.timer = nil
		}
	}
	c.cur = lk
	c.writeHeadLocked(ctx)
	close(c.readyCh)
	go c.pinger(ctx, lk)
}

func (c *Client) pinger(ctx context.Context, lk *link) {
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			// A ping frame, not a WebSocket ping: only frames count as activity for the
			// gateway's idle timeout.
			_ = c.write(ctx, lk.conn, &protocol.Ping{Base: protocol.Base{Type: protocol.TypePing}})
		case <-lk.lost:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (c *Client) write(ctx context.Context, conn *websocket.Conn, frame protocol.Frame) error {
	b, err := json.Marshal(frame)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
	defer cancel()
	return conn.Write(wctx, websocket.MessageText, b)
}

func (c *Client) onFrame(ctx context.Context, f protocol.Frame) {
	c.mu.Lock()
	ref := f.RefID()
	if ch, ok := c.waiters[ref]; ok && ref != "" && f.FrameType() != protocol.TypeSubscribed {
		delete(c.waiters, ref)
		c.mu.Unlock()
		ch <- f
		return
	}
	switch f := f.(type) {
	case *protocol.Pong:
		if ref == initRef {
			c.haveAll = true
		}
		c.mu.Unlock()
		return
	case *protocol.Message:
		if f.Seq <= c.cursors[f.Room] {
			// Already passed on (before a reconnect, or by an earlier subscription).
			c.mu.Unlock()
			return
		}
		c.cursors[f.Room] = f.Seq
	case *protocol.Subscribed:
		if !c.subscribed[f.Room] {
			// The first subscribed frame of a room on this connection says where its
			// stream starts: our cursor when resuming, the room's tail when new, or
			// where the gateway could start (recovered:false).
			c.subscribed[f.Room] = true
			c.cursors[f.Room] = f.SinceSeq
		}
	case *protocol.Unsubscribed:
		delete(c.cursors, f.Room)
		delete(c.subscribed, f.Room)
	case *protocol.Ack:
		if c.removePendingLocked(f.ClientMsgID) != nil {
			c.writeHeadLocked(ctx)
		}
	}
	c.mu.Unlock()
	c.emit(f)
}

func (c *Client) removePendingLocked(cmid string) *outgoing {
	for i, p := range c.pending {
		if p.cmid == cmid {
			if p.timer != nil {
				p.timer.Stop()
			}
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			return p
		}
	}
	return nil
}

// onError handles an error frame: a request's answer, a failed send (retried if the
// gateway says it may be), or a notice for the caller.
func (c *Client) onError(ctx context.Context, f *protocol.Error) {
	c.mu.Lock()
	if ch, ok := c.waiters[f.Ref]; ok && f.Ref != "" {
		delete(c.waiters, f.Ref)
		c.mu.Unlock()
		ch <- f
		return
	}
	if f.ClientMsgID != "" {
		for _, p := range c.pending {
			if p.cmid != f.ClientMsgID {
				continue
			}
			if f.Retryable && p.retries < c.cfg.SendRetries {
				p.retries++
				wait := c.backoff().Delay(p.retries)
				if f.RetryAfter > 0 {
					// The gateway knows when its rate limit lets the message through.
					wait = time.Duration(f.RetryAfter) * time.Millisecond
				}
				c.logf("message %s not accepted yet (%s); retrying in %s", p.cmid, f.Message, wait.Round(10*time.Millisecond))
				p.timer = time.AfterFunc(wait, func() { c.resend(ctx, p) })
				c.mu.Unlock()
				return
			}
			c.removePendingLocked(p.cmid)
			c.writeHeadLocked(ctx)
			c.mu.Unlock()
			c.emit(&SendFailed{Base: protocol.Base{Type: EventSendFailed}, Err: f})
			return
		}
	}
	c.mu.Unlock()
	c.emit(f)
}

func (c *Client) resend(ctx context.Context, p *outgoing) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p.timer = nil
	still := false
	for _, q := range c.pending {
		still = still || q == p
	}
	if still && c.cur != nil {
		_ = c.write(ctx, c.cur.conn, p.frame)
	}
}

func (c *Client) newMsgIDLocked() string {
	c.msgIDs++
	return fmt.Sprintf("%s-%d", c.idPrefix, c.msgIDs)
}

// Send queues a message to room and returns its client_msg_id. It is written once every
// earlier send is acknowledged or has failed (see writeHeadLocked), on this connection or
// the next; its ack (or EventSendFailed) arrives on Events.
func (c *Client) Send(ctx context.Context, room, text string) (string, error) {
	return c.enqueue(ctx, func(id string) protocol.Frame {
		return &protocol.Send{Base: protocol.Base{Type: protocol.TypeSend, Ref: "s:" + id}, Room: room, ClientMsgID: id, Text: text}
	}, room)
}

// SendReply queues a reply in the thread rooted at root of room, like Send.
func (c *Client) SendReply(ctx context.Context, room string, root int64, text string) (string, error) {
	return c.enqueue(ctx, func(id string) protocol.Frame {
		return &protocol.Send{Base: protocol.Base{Type: protocol.TypeSend, Ref: "s:" + id}, Room: room, ClientMsgID: id, Text: text,
			ThreadRoot: root}
	}, room)
}

// SendReaction queues a reaction to message target of room, on (added) or off (taken
// back), like Send.
func (c *Client) SendReaction(ctx context.Context, room string, target int64, emoji string, on bool) (string, error) {
	return c.enqueue(ctx, func(id string) protocol.Frame {
		return &protocol.React{Base: protocol.Base{Type: protocol.TypeReact, Ref: "s:" + id}, Room: room, ClientMsgID: id, TargetSeq: target,
			Emoji: emoji, On: &on}
	}, room)
}

// SendDM queues a direct message to a username, like Send.
func (c *Client) SendDM(ctx context.Context, to, text string) (string, error) {
	return c.enqueue(ctx, func(id string) protocol.Frame {
		return &protocol.DM{Base: protocol.Base{Type: protocol.TypeDM, Ref: "s:" + id}, To: to, ClientMsgID: id, Text: text}
	}, "")
}

func (c *Client) enqueue(ctx context.Context, build func(id string) protocol.Frame, room string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return "", ErrClosed
	}
	id := c.newMsgIDLocked()
	p := &outgoing{frame: build(id), cmid: id, room: room}
	c.pending = append(c.pending, p)
	if len(c.pending) == 1 {
		c.writeHeadLocked(ctx)
	}
	return id, nil
}

// writeHeadLocked writes the oldest unacknowledged send, the only one on the wire: the
// next is written when it is acknowledged or has failed for good. With several in
// flight, a later message could be accepted while an earlier one is refused (over a
// rate limit, say) and waits for its retry, and the room would show them swapped; one
// at a time costs nothing a user notices, since a connection may send only about ten
// messages a second anyway. A failed write means the connection is going; the head is
// written again on the next one.
func (c *Client) writeHeadLocked(ctx context.Context) {
	if c.cur == nil || len(c.pending) == 0 || c.pending[0].timer != nil {
		return
	}
	_ = c.write(ctx, c.cur.conn, c.pending[0].frame)
}

// Pending is the number of sends not yet acknowledged.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// WaitPending blocks until every send is acknowledged (or failed), ctx ends, or the
// client ends. It reports how many are still unacknowledged.
func (c *Client) WaitPending(ctx context.Context) int {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if n := c.Pending(); n == 0 {
			return 0
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return c.Pending()
		case <-c.done:
			return c.Pending()
		}
	}
}

// Request sends a frame that has a reply (join, leave, rooms, users, history, stats,
// token) and waits for the reply. If the connection drops first, it is sent again on the
// next one: every such request can safely be repeated. An error frame is a *ServerError.
// Request sets frame's ref (a new one per attempt); the reply is pkg/protocol's typed
// frame for it (see protocol.DecodeServer).
func (c *Client) Request(ctx context.Context, frame Request) (protocol.Frame, error) {
	for {
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		lk, ready := c.cur, c.readyCh
		c.mu.Unlock()
		if lk == nil {
			select {
			case <-ready:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-c.done:
				return nil, ErrClosed
			}
		}
		c.mu.Lock()
		c.refs++
		ref := "r" + strconv.Itoa(c.refs)
		ch := make(chan protocol.Frame, 1)
		c.waiters[ref] = ch
		c.mu.Unlock()
		frame.SetRef(ref)
		err := c.write(ctx, lk.conn, frame)
		if err == nil {
			select {
			case f := <-ch:
				if e, ok := f.(*protocol.Error); ok {
					return f, &ServerError{Frame: e}
				}
				return f, nil
			case <-lk.lost:
			case <-ctx.Done():
				err = ctx.Err()
			case <-c.done:
				err = ErrClosed
			}
		}
		c.mu.Lock()
		delete(c.waiters, ref)
		c.mu.Unlock()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		// The connection went away: wait for the next one and ask again.
		select {
		case <-lk.lost:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close says goodbye (quit), waits briefly for the gateway to close, and ends the client.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.done
		return
	}
	c.closing = true
	lk, stop := c.cur, c.cancel
	c.mu.Unlock()
	if lk != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = c.write(ctx, lk.conn, &protocol.Quit{Base: protocol.Base{Type: protocol.TypeQuit}})
		select {
		case <-lk.lost:
		case <-ctx.Done():
		}
		cancel()
		_ = lk.conn.CloseNow()
	}
	if stop != nil {
		stop() // ends a dial or back-off in progress
		<-c.done
	}
}

// NormalizeURL accepts ws(s):// URLs and, for convenience, http(s):// ones or a bare
// host:port, and returns the WebSocket URL (path /ws unless one is given).
func NormalizeURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty URL")
	}
	if !strings.Contains(s, "://") {
		s = "ws://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("bad URL %q: %w", s, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("bad URL %q: scheme must be ws, wss, http or https", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("bad URL %q: no host", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ws"
	}
	return u.String(), nil
}

// HTTPBase is the REST base URL of the gateway serving a WebSocket URL.
func HTTPBase(wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil {
		return wsURL
	}
	if u.Scheme == "wss" {
		u.Scheme = "https"
	} else {
		u.Scheme = "http"
	}
	u.Path, u.RawQuery, u.Fragment = "", "", ""
	return u.String()
}
