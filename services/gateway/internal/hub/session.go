package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/kchat/kchat/pkg/protocol"
	"github.com/kchat/kchat/services/gateway/internal/chat"
	"github.com/kchat/kchat/services/gateway/internal/ratelimit"
	"github.com/kchat/kchat/services/gateway/internal/transport"
)

// Outbound is the transport side of a connection as the chat logic sees it
// (*transport.Conn implements it; tests use a fake over a real Queue).
type Outbound interface {
	ID() string
	Queue() *transport.Queue
	Close(code protocol.CloseCode, reason string, final []byte, flush bool)
	Written() map[string]int64
	Done() <-chan struct{}
	CloseCode() protocol.CloseCode
	// Go runs fn on the connection's worker, in call order, or refuses at once with
	// transport.ErrBusy (worker's queue full) or transport.ErrQueueClosed.
	Go(fn func(ctx context.Context)) error
}

var _ Outbound = (*transport.Conn)(nil)

// Session is the chat state of one connection: who it is, which rooms it follows and how
// far each has been delivered. Frames are read, limited and handed on by the connection's
// read loop and handled one at a time, in order, on its worker (so one client's sends are
// published in the order it sent them); deliveries arrive
// from the hub's Kafka goroutine; fills run on the session's own goroutine. Any of them
// may enqueue, none blocks on the network.
//
// The request side is in requests.go, auth.go and limits.go; the delivery side (cursors,
// live entries, fill, overflow, catch-up) in delivery.go.
type Session struct {
	hub  *Hub
	out  Outbound
	id   string
	log  *slog.Logger
	ctx  context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	user    *chat.User
	subs    map[string]*sub
	dropped map[string]bool // rooms the client unsubscribed from: no auto-subscribe
	// followReady is set once the session handled a frame after authenticating. Until
	// then the client may still be about to say (hello) which rooms it follows from where,
	// so rooms the timeline says it entered wait in deferred instead of being followed:
	// an automatic subscription from a join entry would otherwise pre-empt the client's
	// own, with an earlier since_seq, for the same room.
	followReady bool
	deferred    map[string]followRequest
	closing     bool
	filling     bool // the fill goroutine is running
	catchingUp  bool
	catchUpFrom time.Time
	typingLast  map[string]time.Time
	connectedAt time.Time
	lastActive  time.Time
	stats       protocol.ConnStats
	notesSeen   map[string]struct{} // notification ids sent on this connection
	notesOrder  []string            // the same, oldest first, to bound the set

	// Limits. Only HandleFrame touches these, and it runs on the read loop one frame at a
	// time (the worker does not), so they need no lock.
	msgBucket   *ratelimit.Bucket
	frameBucket *ratelimit.Bucket
	msgAbuse    *ratelimit.Abuse
	frameAbuse  *ratelimit.Abuse

	// sendSlots holds one token per send waiting for its Kafka acknowledgement. The worker
	// goes on to the next frame meanwhile, up to maxSendsInFlight, so that a connection is
	// not held to one message per produce round trip; only the worker takes a slot. (A
	// channel of struct{} costs no buffer, so idle connections pay ~100 B.)
	sendSlots chan struct{}
}

// maxSendsInFlight bounds a connection's unacknowledged sends; past it a send waits for a
// slot until sendSlotWait after it arrived and is then refused with `unavailable`, so a
// Kafka stall is answered instead of buffered without end.
const maxSendsInFlight = 64

func newSession(h *Hub, out Outbound) *Session {
	ctx, stop := context.WithCancel(context.Background())
	now := h.cfg.Now()
	cfg := h.cfg
	return &Session{
		hub: h, out: out, id: out.ID(), log: h.log.With("conn_id", out.ID()), ctx: ctx, stop: stop,
		subs: map[string]*sub{}, dropped: map[string]bool{}, typingLast: map[string]time.Time{},
		connectedAt: now, lastActive: now, notesSeen: map[string]struct{}{}, sendSlots: make(chan struct{}, maxSendsInFlight),
		msgBucket: ratelimit.NewBucket(cfg.ConnRate, now), frameBucket: ratelimit.NewBucket(cfg.FrameRate, now),
		msgAbuse:   ratelimit.NewAbuse(cfg.ConnRate, cfg.AbuseFactor, cfg.AbuseWindow),
		frameAbuse: ratelimit.NewAbuse(cfg.FrameRate, cfg.AbuseFactor, cfg.AbuseWindow),
	}
}

// User returns the authenticated user, or nil.
func (s *Session) User() *chat.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}

// pushControlLocked queues a reply or control frame (s.mu held). Control frames are never
// dropped: a full queue first moves the timeline to catch-up, then closes the connection.
func (s *Session) pushControlLocked(typ string, v any) {
	if s.closing {
		return
	}
	it := transport.Item{Data: protocol.Encode(v), Type: typ, Class: transport.Control}
	err := s.out.Queue().Push(it)
	if errors.Is(err, transport.ErrQueueFull) {
		// Replies must not be lost: make room by moving timeline frames to catch-up.
		s.overflowLocked(0, "")
		err = s.out.Queue().Push(it)
	}
	if errors.Is(err, transport.ErrQueueFull) {
		s.slowCloseLocked("control frames backed up")
		return
	}
	if err == nil {
		s.stats.FramesOut++
	}
}

func (s *Session) reply(typ string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushControlLocked(typ, v)
}

func (s *Session) replyErr(ref string, err error) {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		pe = protocol.NewError(protocol.CodeInternal, "internal error")
	}
	e := *pe
	e.Base = protocol.Base{Type: protocol.TypeError, Ref: ref}
	s.reply(protocol.TypeError, &e)
}

// Closed implements transport.Session.
func (s *Session) Closed() {
	s.mu.Lock()
	if !s.closing && s.out.CloseCode() == protocol.CloseSlow {
		// The transport dropped it at the write deadline: slow too, just without the
		// final frame (the socket would not take one).
		s.hub.slowCloses.Add(1)
		s.hub.metrics.Inc(slowClose)
	}
	s.closing = true
	rooms := make([]string, 0, len(s.subs))
	for r := range s.subs {
		rooms = append(rooms, r)
	}
	s.subs = map[string]*sub{}
	s.mu.Unlock()
	s.stop()
	s.hub.unregister(s, rooms)
}

// shutdown sends the reconnect frame and closes 1012, flushing what is queued first.
func (s *Session) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	s.closing = true
	cursors := make(map[string]int64, len(s.subs))
	for room, sb := range s.subs {
		cursors[room] = sb.cursor
	}
	final := protocol.Reconnect{Base: protocol.Base{Type: protocol.TypeReconnect}, Reason: protocol.ReasonShutdown, Cursors: cursors}
	s.out.Close(protocol.CloseServiceRestart, protocol.ReasonShutdown, protocol.Encode(final), true)
}
